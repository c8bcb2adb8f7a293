// test_cli_chat_template.c: `rill chat-template` end to end. Every real template x conversation of
// the transformers fixture (tests/ref/make_chat_template_fixtures.py) is rendered through the CLI
// from a model folder (tokenizer_config.json) and must equal transformers' text byte for byte; the
// SmolLM2 GGUF's own template renders too, and bad input exits 1 or 2 with a message.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <jansson.h>

#include "testlib.h"

static char output[1 << 20];

static const char *rill_bin(void) {
    const char *bin = getenv("RILL_BIN");
    return bin ? bin : "build/bin/rill";
}

static void write_json(const char *path, const json_t *j) { assert_int_equal(json_dump_file(j, path, 0), 0); }

// A folder holding only tokenizer_config.json with the template and its special tokens.
static const char *make_folder(const char *template_name, const json_t *settings) {
    char path[4096];
    snprintf(path, sizeof path, "chat_templates/%s.jinja", template_name);
    FILE *f = fopen(test_data_path(path), "rb");
    assert_non_null(f);
    static char src[1 << 18];
    size_t n = fread(src, 1, sizeof src - 1, f);
    fclose(f);
    src[n] = '\0';
    const char *dir = test_tmp_path("-tpl");
    assert_int_equal(mkdir(dir, 0755), 0);
    json_t *cfg = json_object();
    json_object_set_new(cfg, "chat_template", json_stringn(src, n));
    json_object_set(cfg, "bos_token", json_object_get(settings, "bos_token"));
    json_object_set(cfg, "eos_token", json_object_get(settings, "eos_token"));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_json(path, cfg);
    json_decref(cfg);
    return dir;
}

// Appends " --var k=<json>" for each extra variable.
static void append_vars(char *cmd, size_t cap, const json_t *vars) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)vars, key, v) {
        char *text = json_dumps(v, JSON_ENCODE_ANY);
        size_t len = strlen(cmd);
        snprintf(cmd + len, cap - len, " --var '%s=%s'", key, text);
        free(text);
    }
}

static void test_cli_renders_every_fixture_like_transformers(void **state) {
    json_t *cases = json_load_file(test_data_path("chat_templates/cases.json"), 0, NULL);
    json_t *expected = json_load_file(test_data_path("chat_templates/expected.json"), 0, NULL);
    assert_non_null(cases);
    assert_non_null(expected);
    const char *tname;
    json_t *settings;
    int rendered = 0, failed = 0;
    json_object_foreach(json_object_get(cases, "templates"), tname, settings) {
        const char *dir = make_folder(tname, settings);
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(cases, "cases"), i, c) {
            const char *cname = json_string_value(json_object_get(c, "name"));
            const json_t *want = json_object_get(json_object_get(expected, tname), cname);
            if (!want) continue;
            char msgs[4200];
            snprintf(msgs, sizeof msgs, "%s/%s.json", dir, cname);
            write_json(msgs, c);
            char cmd[16384];
            snprintf(cmd, sizeof cmd, "'%s' chat-template --model '%s' --messages '%s'%s", rill_bin(), dir, msgs,
                     json_is_true(json_object_get(c, "add_generation_prompt")) ? " --add-generation-prompt" : "");
            append_vars(cmd, sizeof cmd, json_object_get(settings, "vars"));
            append_vars(cmd, sizeof cmd, json_object_get(c, "vars"));
            strncat(cmd, " 2>/dev/null", sizeof cmd - strlen(cmd) - 1);
            int rc = test_run(cmd, output, sizeof output);
            const char *want_text = json_string_value(json_object_get(want, "output"));
            if (want_text ? rc != 0 || strcmp(output, want_text) : rc != 1) {
                fprintf(stderr, "%s / %s: exit %d, output differs:\n%s\n--- want ---\n%s\n", tname, cname, rc, output,
                        want_text ? want_text : "(an error)");
                failed++;
            }
            rendered++;
        }
    }
    json_decref(cases);
    json_decref(expected);
    assert_int_equal(failed, 0);
    assert_true(rendered >= 90);
}

static void test_cli_renders_the_smollm2_gguf_template(void **state) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model) skip();
    const char *msgs = test_tmp_path(".json");
    FILE *f = fopen(msgs, "w");
    fputs("[{\"role\": \"user\", \"content\": \"Hi\"}]", f);
    fclose(f);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' chat-template --model '%s' --messages '%s' --add-generation-prompt", rill_bin(),
             model, msgs);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    assert_string_equal(output, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
                                "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

static void test_cli_chat_template_bad_input(void **state) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' chat-template --messages x.json 2>&1", rill_bin());
    assert_int_equal(test_run(cmd, output, sizeof output), 2);
    const char *bad = test_write_tmp(".json", "[{\"role\": ", 10);
    snprintf(cmd, sizeof cmd, "'%s' chat-template --model /nonexistent --messages '%s' 2>&1", rill_bin(), bad);
    assert_int_equal(test_run(cmd, output, sizeof output), 1);
    assert_non_null(strstr(output, "line 1"));
    const char *dir = test_tmp_path("-badtpl");
    assert_int_equal(mkdir(dir, 0755), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"chat_template\": \"{% if %}\"}", f);
    fclose(f);
    const char *msgs = test_write_tmp(".json", "[]", 2);
    snprintf(cmd, sizeof cmd, "'%s' chat-template --model '%s' --messages '%s' 2>&1", rill_bin(), dir, msgs);
    assert_int_equal(test_run(cmd, output, sizeof output), 1);
    assert_non_null(strstr(output, "line 1, column"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_renders_every_fixture_like_transformers),
        cmocka_unit_test(test_cli_renders_the_smollm2_gguf_template),
        cmocka_unit_test(test_cli_chat_template_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
