// test_api_generate.c: the public model and generation API of rill.h on SmolLM2: the iterator
// (rill_generate_start/next) and rill_stream_generate give the same greedy tokens, every EOS id
// (the tokenizer's and extra ones) ends a stream with "stop", a cache carries over from one
// generation to the next, bad arguments are errors, and examples/generate.c (rill.h only) runs.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <math.h>

#include "rill.h"
#include "testlib.h"

// Under AddressSanitizer a SmolLM2 run is ~30x slower: only the short runs stay.
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static const char *PROMPT =
    SANITIZED ? "<|im_start|>user\nHi" : "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n";

typedef struct {
    int32_t tokens[256];
    int n;
    char text[4096];
    size_t len;
    rill_generation_stats last;
    int calls;
} collected;

static int collect(void *user, const char *text, size_t len, int32_t token, const rill_generation_stats *s) {
    collected *c = user;
    c->calls++;
    if (token >= 0 && c->n < 256) c->tokens[c->n++] = token;
    if (c->len + len < sizeof c->text) {
        memcpy(c->text + c->len, text, len);
        c->len += len;
        c->text[c->len] = 0;
    }
    c->last = *s;
    return 0;
}

static int setup(void **state) {
    const char *path = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    *state = NULL;
    if (!path) return 0;
    rill_model *m;
    if (rill_model_load(path, NULL, &m) != RILL_OK) return -1;
    *state = m;
    return 0;
}

static int teardown(void **state) {
    rill_model_free(*state);
    return 0;
}

static void test_iterator_and_stream_generate_agree(void **state) {
    rill_model *m = *state;
    if (!m || SANITIZED) skip();
    rill_tokenizer *tok;
    assert_int_equal(rill_model_tokenizer(m, &tok), RILL_OK);
    int32_t *ids;
    size_t n;
    assert_int_equal(rill_tokenize(tok, PROMPT, strlen(PROMPT), RILL_TOKENIZE_PARSE_SPECIAL, &ids, &n), RILL_OK);

    rill_generate_params p = rill_generate_default_params();
    assert_int_equal(p.max_tokens, 256);
    p.max_tokens = 12;
    rill_generation *g;
    assert_int_equal(rill_generate_start(m, NULL, ids, n, &p, &g), RILL_OK);
    int32_t iter[12];
    int k = 0;
    for (;;) {
        int32_t t;
        const float *lp;
        bool done;
        assert_int_equal(rill_generate_next(g, &t, &lp, &done), RILL_OK);
        if (done) break;
        assert_true(k < 12);
        assert_non_null(lp);
        float mx = -INFINITY; // log-softmax: the greedy token is the most likely, and mass sums to 1
        double sum = 0;
        for (int v = 0; v < rill_model_vocab_size(m); v++) {
            if (lp[v] > mx) mx = lp[v];
            sum += exp(lp[v]);
        }
        assert_true(lp[t] == mx);
        assert_true(fabs(sum - 1) < 1e-3);
        iter[k++] = t;
    }
    assert_int_equal(k, 12);
    rill_generate_free(g);

    collected c = {0};
    assert_int_equal(rill_stream_generate(m, NULL, PROMPT, &p, collect, &c), RILL_OK);
    assert_non_null(c.last.finish_reason);
    assert_int_equal(c.last.prompt_tokens, (int64_t)n); // the text starts with BOS: none added
    assert_true(c.last.peak_memory_gb > 0);
    assert_true(c.n >= 1);
    for (int i = 0; i < c.n && i < k; i++)
        assert_int_equal(c.tokens[i], iter[i]);
    if (!strcmp(c.last.finish_reason, "length"))
        assert_int_equal(c.n, 12);
    else
        assert_string_equal(c.last.finish_reason, "stop");
    assert_true(c.len > 0);
    rill_free_buffer(ids);
}

static void test_every_eos_id_ends_the_stream(void **state) {
    rill_model *m = *state;
    if (!m) skip();
    rill_tokenizer *tok;
    assert_int_equal(rill_model_tokenizer(m, &tok), RILL_OK);
    size_t n_eos;
    const int32_t *eos = rill_token_eos(tok, &n_eos);
    assert_true(n_eos >= 1);
    int32_t ids[8];
    size_t n_ids = 0;
    for (size_t i = 0; i < n_eos && n_ids < 7; i++)
        ids[n_ids++] = eos[i];
    ids[n_ids++] = 42; // an ordinary token, given as an extra EOS
    for (size_t i = 0; i < n_ids; i++) {
        rill_generate_params p = rill_generate_default_params();
        float bias = 1000; // forces the token at the first step
        p.n_logit_bias = 1;
        p.logit_bias_ids = &ids[i];
        p.logit_bias_values = &bias;
        p.max_tokens = 8;
        if (i == n_ids - 1) {
            p.n_extra_eos = 1;
            p.extra_eos = &ids[i];
        }
        collected c = {0};
        assert_int_equal(rill_stream_generate(m, tok, PROMPT, &p, collect, &c), RILL_OK);
        assert_int_equal(c.calls, 1);
        assert_string_equal(c.last.finish_reason, "stop");
        assert_int_equal(c.tokens[0], ids[i]);
        assert_int_equal(c.last.generation_tokens, 1);
        assert_int_equal(c.len, 0); // EOS is never text
    }
}

static void test_a_cache_carries_over_and_trims(void **state) {
    rill_model *m = *state;
    if (!m || SANITIZED) skip();
    rill_cache *cache;
    assert_int_equal(rill_cache_make(m, &cache), RILL_OK);
    assert_int_equal(rill_cache_offset(cache), 0);
    int32_t a[] = {1, 4093, 198, 30575, 1664, 6521, 30, 2, 198, 1, 520, 9531, 198};
    size_t na = sizeof a / sizeof a[0];
    rill_generate_params p = rill_generate_default_params();
    p.max_tokens = 4;
    rill_generation *g, *g2;
    assert_int_equal(rill_generate_start(m, cache, a, na, &p, &g), RILL_OK);
    // one generation per model at a time
    assert_int_equal(rill_generate_start(m, NULL, a, na, &p, &g2), RILL_EINVAL);
    int32_t t[4];
    bool done;
    for (int i = 0; i < 4; i++)
        assert_int_equal(rill_generate_next(g, &t[i], NULL, &done), RILL_OK);
    assert_int_equal(rill_generate_next(g, &t[0], NULL, &done), RILL_OK);
    assert_true(done);
    rill_generate_free(g);
    // the prompt and every token but the last were run through the model
    assert_int_equal(rill_cache_offset(cache), (int64_t)na + 3);
    assert_true(rill_cache_nbytes(cache) > 0);

    // trimming back to the prompt and regenerating from its last token gives the same tokens
    assert_int_equal(rill_cache_trim(cache, 4), 4);
    int32_t last = a[na - 1];
    assert_int_equal(rill_generate_start(m, cache, &last, 1, &p, &g), RILL_OK);
    for (int i = 0; i < 4; i++) {
        int32_t u;
        assert_int_equal(rill_generate_next(g, &u, NULL, &done), RILL_OK);
        assert_false(done);
        assert_int_equal(u, t[i]);
    }
    rill_generate_free(g);
    rill_cache_free(cache);
}

static void generate_n(rill_model *m, rill_cache *c, const int32_t *prompt, size_t n, int max, int32_t *out) {
    rill_generate_params p = rill_generate_default_params();
    p.max_tokens = max;
    rill_generation *g;
    bool done;
    assert_int_equal(rill_generate_start(m, c, prompt, n, &p, &g), RILL_OK);
    for (int i = 0; i < max; i++)
        assert_int_equal(rill_generate_next(g, &out[i], NULL, &done), RILL_OK);
    rill_generate_free(g);
}

// A prompt cache saved through the API and loaded back continues like the uninterrupted run, with
// its user metadata; a file for another model or no file is an error with the reason.
static void test_prompt_cache_files_through_the_api(void **state) {
    rill_model *m, *other;
    assert_int_equal(rill_model_load(test_data_path("tiny/llama"), NULL, &m), RILL_OK);
    int32_t prompt[20], want[8], got[8], first;
    for (int i = 0; i < 20; i++)
        prompt[i] = (i * 37 + 11) % rill_model_vocab_size(m);
    generate_n(m, NULL, prompt, 20, 8, want);
    rill_cache *c;
    assert_int_equal(rill_cache_make_prompt(m, 0, &c), RILL_OK);
    generate_n(m, c, prompt, 19, 1, &first); // the cache holds the 19 prompt tokens
    assert_int_equal(rill_cache_offset(c), 19);
    assert_true(rill_cache_can_trim(c));
    const char *path = test_tmp_path(".safetensors");
    const char *keys[1] = {"model"}, *values[1] = {"tiny llama"};
    assert_int_equal(rill_prompt_cache_save(m, c, path, keys, values, 1), RILL_OK);
    rill_cache_free(c);
    rill_metadata meta;
    assert_int_equal(rill_prompt_cache_load(m, path, &c, &meta), RILL_OK);
    assert_int_equal(meta.n, 1);
    assert_string_equal(meta.keys[0], "model");
    assert_string_equal(meta.values[0], "tiny llama");
    rill_metadata_free(&meta);
    assert_int_equal(rill_cache_offset(c), 19);
    generate_n(m, c, &prompt[19], 1, 8, got);
    assert_memory_equal(got, want, sizeof got);
    rill_cache_free(c);

    assert_int_equal(rill_model_load(test_data_path("tiny/gemma3"), NULL, &other), RILL_OK);
    c = (rill_cache *)1;
    assert_int_not_equal(rill_prompt_cache_load(other, path, &c, NULL), RILL_OK);
    assert_null(c);
    assert_non_null(strstr(rill_last_error(), "another model"));
    assert_int_not_equal(rill_prompt_cache_load(m, "/nonexistent/cache.safetensors", &c, NULL), RILL_OK);
    rill_model_free(other);
    rill_model_free(m);
}

static void test_bad_arguments_are_errors(void **state) {
    rill_model *m;
    rill_model_options o = rill_model_default_options();
    assert_int_equal(rill_model_load("/nonexistent/model.gguf", &o, &m), RILL_ENOTFOUND);
    assert_non_null(strstr(rill_last_error(), "/nonexistent/model.gguf"));
    o.threads = -1;
    assert_int_equal(rill_model_load(test_data_path("tiny/llama"), &o, &m), RILL_ERANGE);
    o = rill_model_default_options();
    o.backend = "tpu";
    assert_int_equal(rill_model_load(test_data_path("tiny/llama"), &o, &m), RILL_EUNSUPPORTED);
    assert_int_equal(rill_model_load(test_data_path("tiny/llama"), NULL, &m), RILL_OK);
    assert_int_equal(rill_model_vocab_size(m), 256);
    assert_int_equal(rill_model_context_length(m), 512);
    assert_true(rill_model_weight_bytes(m) > 0);
    int32_t ids[] = {1, 2, 3};
    rill_generate_params p = rill_generate_default_params();
    rill_generation *g;
    p.temp = -1;
    assert_int_equal(rill_generate_start(m, NULL, ids, 3, &p, &g), RILL_ERANGE);
    p = rill_generate_default_params();
    int32_t big = 256;
    p.n_extra_eos = 1;
    p.extra_eos = &big;
    assert_int_equal(rill_generate_start(m, NULL, ids, 3, &p, &g), RILL_ERANGE);
    p = rill_generate_default_params();
    ids[1] = 999;
    assert_int_equal(rill_generate_start(m, NULL, ids, 3, &p, &g), RILL_ERANGE);
    rill_tokenizer *tok;
    assert_int_not_equal(rill_model_tokenizer(m, &tok), RILL_OK); // the tiny folder has no tokenizer
    rill_model_free(m);
}

static void test_example_program_streams_16_tokens(void **state) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    // examples/generate.c includes nothing of rill but rill.h
    char src[4096];
    snprintf(src, sizeof src, "%s/../../examples/generate.c", test_data_path("."));
    FILE *f = fopen(src, "r");
    assert_non_null(f);
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "#include \"", 10)) assert_string_equal(line, "#include \"rill.h\"\n");
    fclose(f);
    if (!model || SANITIZED) skip();
    const char *bin = getenv("RILL_BIN");
    char exe[4096], cmd[8192], out[1 << 14];
    snprintf(exe, sizeof exe, "%s", bin ? bin : "build/bin/rill");
    char *slash = strrchr(exe, '/');
    snprintf(slash ? slash + 1 : exe, sizeof exe - (size_t)(slash ? slash + 1 - exe : 0), "example-generate");
    snprintf(cmd, sizeof cmd, "'%s' '%s' 'Name three colors.' 16 2>&1", exe, model);
    assert_int_equal(test_run(cmd, out, sizeof out), 0);
    long long gen = -1;
    const char *g = strstr(out, "Generation: ");
    assert_non_null(g);
    assert_int_equal(sscanf(g, "Generation: %lld tokens", &gen), 1);
    assert_true(gen >= 1 && gen <= 16);
    assert_true(g - out > 2); // some text came before the stats
    assert_non_null(strstr(out, "Finish reason: "));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_iterator_and_stream_generate_agree),
        cmocka_unit_test(test_every_eos_id_ends_the_stream),
        cmocka_unit_test(test_a_cache_carries_over_and_trims),
        cmocka_unit_test(test_bad_arguments_are_errors),
        cmocka_unit_test(test_example_program_streams_16_tokens),
        cmocka_unit_test(test_prompt_cache_files_through_the_api),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
