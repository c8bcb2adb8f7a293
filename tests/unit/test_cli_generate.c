// test_cli_generate.c: `rill generate` end to end. Bad input (a missing or corrupt model file, an
// unknown architecture, a missing tensor, a shape that does not match the config, a prompt longer
// than the context) gets one line naming the cause and exit 1; flags out of range get exit 2;
// nothing crashes. Every EOS id ends generation (config, tokenizer, --extra-eos-token), --max-tokens
// -1 runs to EOS, and the peak memory --json reports lies within 15% of weights + KV + scratch.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include <sys/stat.h>
#include <unistd.h>

#include "base/alloc.h"
#include "generate/generate.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "testlib.h"

// Under AddressSanitizer a SmolLM2 run is ~30x slower: only the short runs stay.
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static char output[1 << 16];

static const char *rill_bin(void) {
    const char *bin = getenv("RILL_BIN");
    return bin ? bin : "build/bin/rill";
}

// Runs `rill generate ARGS` and keeps only stderr in output; returns the exit status.
static int run_stderr(const char *args) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' generate %s 2>&1 >/dev/null", rill_bin(), args);
    return test_run(cmd, output, sizeof output);
}

// Runs `rill generate ARGS --json` and parses stdout.
static json_t *run_json(const char *args) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' generate %s --json 2>/dev/null", rill_bin(), args);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    json_error_t err;
    json_t *o = json_loads(output, 0, &err);
    if (!o) fail_msg("not JSON (%s): %s", err.text, output);
    return o;
}

// Bad input: exit 1, exactly one line "rill: ..." that contains `cause`.
static void expect_bad_input(const char *args, const char *cause) {
    int rc = run_stderr(args);
    if (rc != 1 || strncmp(output, "rill: ", 6) || !strstr(output, cause) ||
        strchr(output, '\n') != strrchr(output, '\n') || output[strlen(output) - 1] != '\n')
        fail_msg("rill generate %s: exit %d, expected 1 and one line naming '%s'; got: %s", args, rc, cause, output);
}

// A fresh folder holding the tiny llama's config with `key` set to the JSON value `value` (or the
// config as it is) and its weights, less the tensor `drop` (NULL: all of them).
static const char *tiny_variant(const char *key, const char *value, const char *drop) {
    const char *dir = test_tmp_path("_tiny");
    assert_int_equal(mkdir(dir, 0755), 0);
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s", test_data_path("tiny/llama/config.json"));
    json_error_t err;
    json_t *cfg = json_load_file(src, 0, &err);
    assert_non_null(cfg);
    if (key) json_object_set_new(cfg, key, json_loads(value, JSON_DECODE_ANY, &err));
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    assert_int_equal(json_dump_file(cfg, dst, JSON_INDENT(2)), 0);
    json_decref(cfg);

    safetensors_file *f;
    assert_int_equal(safetensors_open(test_data_path("tiny/llama/model.safetensors"), &f), RILL_OK);
    safetensors_entry *e = calloc(f->n_tensors, sizeof *e);
    size_t n = 0;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const safetensors_tensor *t = &f->tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        e[n++] = (safetensors_entry){t->name, t->dtype, t->n_dims, t->shape, t->data};
    }
    assert_int_equal(n, drop ? f->n_tensors - 1 : f->n_tensors);
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    assert_int_equal(safetensors_write(dst, e, n, NULL, NULL, 0), RILL_OK);
    free(e);
    safetensors_close(f);
    return dir;
}

static void drop_variant(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    remove(path);
    rmdir(dir);
}

static void test_bad_model_files_get_one_line_and_exit_1(void **state) {
    char args[8192];
    expect_bad_input("--model /nonexistent/model.gguf --prompt-ids 1,2", "/nonexistent/model.gguf");

    // a GGUF cut in half, and bytes that are no GGUF at all
    FILE *f = fopen(test_data_path("tiny/llama_gguf/model.gguf"), "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(n > 1000);
    const char *cut = test_write_tmp(".gguf", buf, n / 2);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2", cut);
    expect_bad_input(args, "past the end of the file");
    const char *junk = test_write_tmp(".gguf", "this is not a model file, only words", 36);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2", junk);
    expect_bad_input(args, "not a GGUF file");
    remove(cut);
    remove(junk);

    const char *dir = tiny_variant("model_type", "\"unknown_arch\"", NULL);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2", dir);
    expect_bad_input(args, "unknown_arch");
    drop_variant(dir);

    dir = tiny_variant(NULL, NULL, "model.layers.1.mlp.down_proj.weight");
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2", dir);
    expect_bad_input(args, "model.layers.1.mlp.down_proj.weight");
    drop_variant(dir);

    dir = tiny_variant("intermediate_size", "128", NULL);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2", dir);
    expect_bad_input(args, "[128, 64]");
    drop_variant(dir);

    dir = tiny_variant("num_hidden_layers", "0", NULL);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2", dir);
    expect_bad_input(args, "num_hidden_layers");
    drop_variant(dir);
}

static void test_a_prompt_longer_than_the_context_is_bad_input(void **state) {
    char args[8192];
    const char *dir = tiny_variant("max_position_embeddings", "8", NULL);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3,4,5,6,7,8,9", dir);
    expect_bad_input(args, "exceeds the context of 8");
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3,4,5,6,7,8 --max-tokens 1", dir);
    assert_int_equal(run_stderr(args), 0); // exactly the context fits
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,300", dir);
    expect_bad_input(args, "outside the vocabulary");
    drop_variant(dir);
}

static void test_flags_out_of_range_are_usage_errors(void **state) {
    const char *model = test_data_path("tiny/llama");
    const char *bad[][2] = {
        {"--temp -1", "--temp"},
        {"--temp nan", "--temp"},
        {"--top-p 2", "--top-p"},
        {"--max-tokens abc", "--max-tokens"},
        {"--max-tokens -2", "--max-tokens"},
        {"--min-p 1.5", "--min-p"},
        {"--top-k -3", "--top-k"},
        {"--xtc-threshold 0.7", "--xtc-threshold"},
        {"--xtc-probability 1.5", "--xtc-probability"},
        {"--min-tokens-to-keep 0", "--min-tokens-to-keep"},
        {"--repetition-penalty 0", "--repetition-penalty"},
        {"--threads 0", "--threads"},
        {"--logprobs 65", "--logprobs"},
        {"--seed -4", "--seed"},
        {"--extra-eos-token -1", "--extra-eos-token"},
        {"--extra-eos-token 256", "--extra-eos-token"}, // the tiny vocabulary has 256 ids
        {"--prefill-step-size 0", "--prefill-step-size"},
        {"--bogus 1", "--bogus"},
        {"--temp", "--temp"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char args[8192];
        snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2 %s", model, bad[i][0]);
        int rc = run_stderr(args);
        if (rc != 2 || strncmp(output, "rill: ", 6) || !strstr(output, bad[i][1]))
            fail_msg("rill generate %s: exit %d, expected 2 and a message naming %s; got: %s", bad[i][0], rc, bad[i][1],
                     output);
    }
    char args[8192];
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,x", model);
    assert_int_equal(run_stderr(args), 2);
    snprintf(args, sizeof args, "--model '%s'", model);
    assert_int_equal(run_stderr(args), 2);
}

static json_t *tokens_of(json_t *o) { return json_object_get(o, "tokens"); }

// Greedy ids from the tiny model; the first position whose id did not come earlier.
static int first_fresh(json_t *toks) {
    for (size_t i = 1; i < json_array_size(toks); i++) {
        json_int_t v = json_integer_value(json_array_get(toks, i));
        bool seen = false;
        for (size_t j = 0; j < i; j++)
            seen |= json_integer_value(json_array_get(toks, j)) == v;
        if (!seen) return (int)i;
    }
    return -1;
}

static void test_every_eos_id_ends_generation(void **state) {
    char args[8192];
    const char *tiny = test_data_path("tiny/llama");
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3 --max-tokens 12", tiny);
    json_t *ref = run_json(args);
    json_t *toks = tokens_of(ref);
    assert_int_equal(json_array_size(toks), 12);
    int at = first_fresh(toks);
    assert_true(at > 0);
    long long stop = json_integer_value(json_array_get(toks, (size_t)at));

    // --extra-eos-token (also with no limit: --max-tokens -1)
    const char *limits[] = {"12", "-1"};
    for (int l = 0; l < 2; l++) {
        snprintf(args, sizeof args,
                 "--model '%s' --prompt-ids 1,2,3 --max-tokens %s --extra-eos-token 0 --extra-eos-token %lld", tiny,
                 limits[l], stop);
        json_t *o = run_json(args);
        assert_string_equal(json_string_value(json_object_get(o, "finish_reason")), "stop");
        assert_int_equal(json_array_size(tokens_of(o)), (size_t)at); // the EOS is not a token of the reply
        for (int i = 0; i < at; i++)
            assert_int_equal(json_integer_value(json_array_get(tokens_of(o), (size_t)i)),
                             json_integer_value(json_array_get(toks, (size_t)i)));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "stats"), "generation_tokens")), at + 1);
        json_decref(o);
    }
    // the config's eos_token_id, as a list
    char value[64];
    snprintf(value, sizeof value, "[250, %lld]", stop);
    const char *dir = tiny_variant("eos_token_id", value, NULL);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3 --max-tokens 12", dir);
    json_t *o = run_json(args);
    assert_string_equal(json_string_value(json_object_get(o, "finish_reason")), "stop");
    assert_int_equal(json_array_size(tokens_of(o)), (size_t)at);
    json_decref(o);
    // --ignore-eos runs on to max_tokens
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3 --max-tokens 12 --ignore-eos", dir);
    o = run_json(args);
    assert_string_equal(json_string_value(json_object_get(o, "finish_reason")), "length");
    assert_true(json_equal(tokens_of(o), toks));
    json_decref(o);
    drop_variant(dir);
    json_decref(ref);

    // SmolLM2's own EOS (<|im_end|>) ends a chat reply, with no limit on the length
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model || SANITIZED) return;
    snprintf(args, sizeof args, "--model '%s' --prompt 'What is the capital of France?' --max-tokens -1", model);
    o = run_json(args);
    assert_string_equal(json_string_value(json_object_get(o, "finish_reason")), "stop");
    assert_true(json_array_size(tokens_of(o)) > 0 && json_array_size(tokens_of(o)) < 64);
    assert_non_null(strstr(json_string_value(json_object_get(o, "text")), "Paris"));
    json_decref(o);
}

// Peak memory: the CLI's figure against the weights as loaded + the KV cache + the decoder's scratch
// high water of the same run, measured in this process.
// --wired pins the weights, or says why it could not (the memlock limit) and goes on: either way
// the same tokens, exit 0.
static void test_wired_pins_or_says_why(void **state) {
    char args[8192];
    const char *tiny = test_data_path("tiny/llama");
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3 --max-tokens 6", tiny);
    json_t *ref = run_json(args);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3 --max-tokens 6 --wired --verbose", tiny);
    assert_int_equal(run_stderr(args), 0);
    if (!strstr(output, "wired") || !(strstr(output, "MB of weights (mlock)") || strstr(output, "RLIMIT_MEMLOCK")))
        fail_msg("--wired said neither what it pinned nor why it could not: %s", output);
    snprintf(args, sizeof args, "--model '%s' --prompt-ids 1,2,3 --max-tokens 6 --wired", tiny);
    json_t *o = run_json(args);
    assert_true(json_equal(json_object_get(o, "tokens"), json_object_get(ref, "tokens")));
    json_decref(o);
    json_decref(ref);
}

static void test_peak_memory_is_weights_plus_kv_plus_scratch(void **state) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model || SANITIZED) skip();
    char args[8192];
    snprintf(args, sizeof args, "--model '%s' --prompt 'Write a short poem about the sea.' --max-tokens 24", model);
    json_t *o = run_json(args);
    json_t *stats = json_object_get(o, "stats");
    double cli_gb = json_real_value(json_object_get(stats, "peak_memory_gb"));
    json_t *pt = json_object_get(o, "prompt_tokens");
    int64_t n = (int64_t)json_array_size(pt);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(pt, (size_t)i));
    int n_gen = (int)json_array_size(tokens_of(o));

    // --verbose reports the same stats
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' generate %s --verbose 2>&1 >/dev/null", rill_bin(), args);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    double verbose_gb = 0;
    const char *pm = strstr(output, "Peak memory: ");
    assert_non_null(pm);
    assert_int_equal(sscanf(pm, "Peak memory: %lf GB", &verbose_gb), 1);
    assert_non_null(strstr(output, "Prompt: "));
    assert_non_null(strstr(output, "Generation: "));

    rill_backend *be;
    rill_stream *s;
    rill_model *m;
    rill_cache *cache;
    assert_int_equal(backend_open("cpu", 0, &be), RILL_OK);
    assert_int_equal(be->ops->stream_create(be, &s), RILL_OK);
    assert_int_equal(model_load(model, be, &m), RILL_OK);
    assert_int_equal(model_make_cache(m, &cache), RILL_OK);
    generate_params p = generate_defaults();
    p.max_tokens = n_gen;
    generator *g;
    assert_int_equal(generate_start(m, cache, s, ids, n, &p, &g), RILL_OK);
    for (;;) {
        int32_t t;
        bool done;
        assert_int_equal(generate_next(g, &t, NULL, &done), RILL_OK);
        if (done) break;
    }
    generate_free(g);
    double expected = (double)m->weight_bytes + (double)cache_nbytes(cache) + (double)m->scratch_high_water;
    double here = (double)rill_memory_peak();
    print_message("peak: cli %.1f MB, verbose %.1f MB, in process %.1f MB; weights %.1f MB + KV %.1f MB + scratch "
                  "%.1f MB = %.1f MB\n",
                  cli_gb * 1e3, verbose_gb * 1e3, here / 1e6, m->weight_bytes / 1e6, cache_nbytes(cache) / 1e6,
                  m->scratch_high_water / 1e6, expected / 1e6);
    assert_true(m->weight_bytes > 50e6 && cache_nbytes(cache) > 0 && m->scratch_high_water > 0);
    assert_true(cli_gb * 1e9 > 0.85 * expected && cli_gb * 1e9 < 1.15 * expected);
    assert_true(here > 0.85 * expected && here < 1.15 * expected);
    assert_true(verbose_gb * 1e9 > 0.85 * expected && verbose_gb * 1e9 < 1.15 * expected);
    cache_free(cache);
    model_free(m);
    be->ops->stream_destroy(s);
    backend_close(be);
    free(ids);
    json_decref(o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_model_files_get_one_line_and_exit_1),
        cmocka_unit_test(test_a_prompt_longer_than_the_context_is_bad_input),
        cmocka_unit_test(test_flags_out_of_range_are_usage_errors),
        cmocka_unit_test(test_every_eos_id_ends_generation),
        cmocka_unit_test(test_peak_memory_is_weights_plus_kv_plus_scratch),
        cmocka_unit_test(test_wired_pins_or_says_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
