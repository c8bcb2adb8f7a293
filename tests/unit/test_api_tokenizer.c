// test_api_tokenizer.c: the public tokenizer API of rill.h, used as an application would (only
// rill.h): ids equal HF tokenizers' (the committed corpus fixture), decode inverts encode, special
// ids, and apply_chat_template equals transformers' rendering (the chat-template fixture).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rill.h"
#include "testlib.h"

static rill_tokenizer *open_smollm2(void) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model) return NULL;
    rill_tokenizer *t;
    assert_int_equal(rill_tokenizer_load(model, &t), RILL_OK);
    return t;
}

// Line `k` of the corpus (a JSON string) and of the SmolLM2 ids file.
static void corpus_line(int k, char **text, int32_t *ids, size_t *n_ids) {
    FILE *fc = fopen(test_data_path("tokenizers/corpus.jsonl"), "r");
    FILE *fi = fopen(test_data_path("tokenizers/smollm2.ids"), "r");
    assert_non_null(fc);
    assert_non_null(fi);
    static char line[1 << 16], idline[1 << 16];
    for (int i = 0; i <= k; i++) {
        assert_non_null(fgets(line, sizeof line, fc));
        assert_non_null(fgets(idline, sizeof idline, fi));
    }
    fclose(fc);
    fclose(fi);
    json_t *s = json_loads(line, JSON_DECODE_ANY, NULL);
    assert_true(json_is_string(s));
    *text = strdup(json_string_value(s));
    json_decref(s);
    *n_ids = 0;
    for (char *p = idline, *end; *p && *p != '\n'; p = end) {
        ids[(*n_ids)++] = (int32_t)strtol(p, &end, 10);
        if (end == p) break;
    }
}

static void test_api_tokenize_equals_hf_and_round_trips(void **state) {
    rill_tokenizer *t = open_smollm2();
    if (!t) skip();
    assert_int_equal(rill_vocab_size(t), 49152);
    for (int k = 0; k < 200; k += 7) {
        char *text;
        static int32_t want[1 << 14];
        size_t n_want;
        corpus_line(k, &text, want, &n_want);
        int32_t *ids;
        size_t n;
        assert_int_equal(rill_tokenize(t, text, strlen(text), RILL_TOKENIZE_PARSE_SPECIAL, &ids, &n), RILL_OK);
        assert_int_equal(n, n_want);
        assert_memory_equal(ids, want, n * sizeof *ids);
        char *back;
        size_t len;
        assert_int_equal(rill_detokenize(t, ids, n, false, &back, &len), RILL_OK);
        assert_string_equal(back, text);
        rill_free_buffer(back);
        rill_free_buffer(ids);
        free(text);
    }
    size_t n_eos;
    const int32_t *eos = rill_token_eos(t, &n_eos);
    assert_true(n_eos >= 1);
    size_t len;
    const char *piece = rill_token_piece(t, eos[0], &len);
    assert_non_null(piece);
    assert_int_equal(len, strlen("<|im_end|>"));
    assert_memory_equal(piece, "<|im_end|>", len);
    assert_null(rill_token_piece(t, 1 << 20, &len));
    rill_tokenizer_free(t);
}

static void test_api_chat_template_equals_transformers(void **state) {
    rill_tokenizer *t = open_smollm2();
    if (!t) skip();
    json_t *cases = json_load_file(test_data_path("chat_templates/cases.json"), 0, NULL);
    json_t *expected = json_load_file(test_data_path("chat_templates/expected.json"), 0, NULL);
    size_t i;
    json_t *c;
    int checked = 0;
    json_array_foreach(json_object_get(cases, "cases"), i, c) {
        const json_t *want = json_object_get(json_object_get(expected, "smollm2"), json_string_value(json_object_get(c, "name")));
        const char *want_text = json_string_value(json_object_get(want, "output"));
        if (!want_text || json_object_get(c, "vars")) continue;
        char *messages = json_dumps(json_object_get(c, "messages"), 0);
        const json_t *tools_v = json_object_get(c, "tools");
        char *tools = tools_v ? json_dumps(tools_v, 0) : NULL;
        char *prompt;
        size_t len;
        assert_int_equal(rill_apply_chat_template(t, messages, tools, json_is_true(json_object_get(c, "add_generation_prompt")),
                                                  NULL, &prompt, &len),
                         RILL_OK);
        assert_string_equal(prompt, want_text);
        rill_free_buffer(prompt);
        free(messages);
        free(tools);
        checked++;
    }
    assert_true(checked >= 8);
    char *prompt;
    assert_int_equal(rill_apply_chat_template(t, "{\"role\": 1}", NULL, true, NULL, &prompt, NULL), RILL_EINVAL);
    assert_int_equal(rill_apply_chat_template(t, "[", NULL, true, NULL, &prompt, NULL), RILL_EINVAL);
    assert_non_null(strstr(rill_last_error(), "line 1"));
    json_decref(cases);
    json_decref(expected);
    rill_tokenizer_free(t);
}

static void test_api_tokenizer_load_errors_name_the_file(void **state) {
    rill_tokenizer *t;
    assert_int_not_equal(rill_tokenizer_load("/nonexistent/tokenizer.json", &t), RILL_OK);
    assert_non_null(strstr(rill_last_error(), "/nonexistent"));
    assert_null(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_tokenize_equals_hf_and_round_trips),
        cmocka_unit_test(test_api_chat_template_equals_transformers),
        cmocka_unit_test(test_api_tokenizer_load_errors_name_the_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
