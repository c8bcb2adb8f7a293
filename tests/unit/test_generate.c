// test_generate.c: generate_step on the tiny llama (tests/data/tiny): greedy tokens equal the
// argmax of a full forward over the same sequence; step N+1 is submitted before token N is
// returned; chunked prefill gives the same tokens; the same seed gives the same samples; and the
// sampler's filters and processors keep exactly mlx-lm's sets on crafted logits.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "generate/generate.h"
#include "testlib.h"

static rill_backend *be;
static rill_stream *st;
static rill_model *model;

static int setup(void **state) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama", test_data_path("tiny"));
    if (backend_open("cpu", 2, &be) || be->ops->stream_create(be, &st)) return -1;
    if (model_load(dir, be, &model) != RILL_OK) {
        fprintf(stderr, "%s\n", rill_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    model_free(model);
    be->ops->stream_destroy(st);
    backend_close(be);
    return 0;
}

static const int32_t prompt[] = {5, 77, 130, 9, 250, 31, 64, 2};
#define N_PROMPT ((int64_t)(sizeof prompt / sizeof prompt[0]))

// Generates up to max tokens into out; returns how many.
static int gen(const generate_params *p, int32_t *out, int max, float *first_logprobs) {
    rill_cache *cache;
    generator *g;
    assert_int_equal(model_make_cache(model, &cache), RILL_OK);
    if (generate_start(model, cache, st, prompt, N_PROMPT, p, &g) != RILL_OK) fail_msg("%s", rill_last_error());
    int n = 0;
    for (;;) {
        bool done;
        const float *lp;
        int32_t tok;
        if (generate_next(g, &tok, &lp, &done) != RILL_OK) fail_msg("%s", rill_last_error());
        if (done || n == max) break;
        if (n == 0 && first_logprobs) memcpy(first_logprobs, lp, sizeof(float) * (size_t)model->cfg.vocab_size);
        out[n++] = tok;
    }
    generate_free(g);
    cache_free(cache);
    return n;
}

static void test_greedy_tokens_are_the_argmax_of_a_full_forward(void **state) {
    generate_params p = generate_defaults();
    p.max_tokens = 24;
    int32_t toks[64];
    int vocab = model->cfg.vocab_size;
    float *lp0 = malloc(sizeof(float) * (size_t)vocab);
    int n = gen(&p, toks, 64, lp0);
    assert_int_equal(n, 24);
    // the whole sequence in one forward
    int32_t seq[128];
    memcpy(seq, prompt, sizeof prompt);
    memcpy(seq + N_PROMPT, toks, sizeof(int32_t) * (size_t)n);
    rill_cache *cache;
    assert_int_equal(model_make_cache(model, &cache), RILL_OK);
    rill_tensor ids = rill_tensor_2d(DTYPE_I32, N_PROMPT + n, 1, seq), lg;
    assert_int_equal(decoder_forward(model, cache, st, &ids, true, &lg), RILL_OK);
    be->ops->sync(st);
    for (int i = 0; i < n; i++) {
        const float *row = (const float *)lg.data + (N_PROMPT - 1 + i) * lg.stride;
        int best = 0;
        for (int v = 1; v < vocab; v++)
            if (row[v] > row[best]) best = v;
        assert_int_equal(toks[i], best);
        if (i == 0) { // logprobs = log_softmax(logits)
            float *ref = malloc(sizeof(float) * (size_t)vocab);
            log_softmax(row, vocab, ref);
            for (int v = 0; v < vocab; v++)
                assert_float_equal(lp0[v], ref[v], 1e-4);
            free(ref);
        }
    }
    cache_free(cache);
    free(lp0);
}

static void test_step_n_plus_1_is_submitted_before_token_n_is_returned(void **state) {
    generate_params p = generate_defaults();
    p.max_tokens = 10;
    rill_cache *cache;
    generator *g;
    assert_int_equal(model_make_cache(model, &cache), RILL_OK);
    assert_int_equal(generate_start(model, cache, st, prompt, N_PROMPT, &p, &g), RILL_OK);
    for (int k = 0; k < 10; k++) {
        bool done;
        int32_t tok;
        assert_int_equal(generate_next(g, &tok, NULL, &done), RILL_OK);
        assert_false(done);
        // token k is in hand; step k+1 was already on the stream (none past max_tokens)
        assert_int_equal(generate_returned(g), k + 1);
        assert_int_equal(generate_submitted(g), k + 1 < 10 ? k + 2 : 10);
    }
    bool done;
    int32_t tok;
    assert_int_equal(generate_next(g, &tok, NULL, &done), RILL_OK);
    assert_true(done);
    generate_free(g);
    cache_free(cache);
}

static void test_chunked_prefill_gives_the_same_tokens(void **state) {
    generate_params p = generate_defaults();
    p.max_tokens = 12;
    int32_t a[16], b[16];
    gen(&p, a, 16, NULL);
    p.prefill_step_size = 3;
    gen(&p, b, 16, NULL);
    assert_memory_equal(a, b, sizeof a[0] * 12);
}

static void test_unlimited_generation_grows_the_cache_past_its_step(void **state) {
    generate_params p = generate_defaults();
    p.max_tokens = -1;
    int32_t toks[300];
    assert_int_equal(gen(&p, toks, 300, NULL), 300);
}

static void test_same_seed_gives_the_same_samples(void **state) {
    generate_params p = generate_defaults();
    p.max_tokens = 32;
    p.sampling.temp = 1.5f;
    p.sampling.seed = 7;
    int32_t a[32], b[32], c[32];
    gen(&p, a, 32, NULL);
    gen(&p, b, 32, NULL);
    p.sampling.seed = 8;
    gen(&p, c, 32, NULL);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

// ---- the sampler on crafted logits ----

static void logprobs_of(const float *logits, int n, float *lp) { log_softmax(logits, n, lp); }

static int kept(const float *lp, int n, int *ids) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (lp[i] != -INFINITY) ids[k++] = i;
    return k;
}

static void test_filters_keep_mlx_lm_sets(void **state) {
    // probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625
    float logits[5] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.0625f), logf(0.0625f)}, lp[5];
    int ids[5];
    sampler s;
    sampler_params p = sampler_defaults();
    p.temp = 1;

    p.top_p = 0.7f; // ascending cumsum: .0625 .125 .25 .5 1 -> keep those > 0.3: {0, 1}
    assert_int_equal(sampler_init(&s, &p, 5), RILL_OK);
    logprobs_of(logits, 5, lp);
    sampler_filter(&s, lp);
    assert_int_equal(kept(lp, 5, ids), 2);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[1], 1);
    sampler_free(&s);

    p = sampler_defaults();
    p.temp = 1;
    p.min_p = 0.2f; // keep p >= 0.2 * 0.5 = 0.1: {0, 1, 2}
    assert_int_equal(sampler_init(&s, &p, 5), RILL_OK);
    logprobs_of(logits, 5, lp);
    sampler_filter(&s, lp);
    assert_int_equal(kept(lp, 5, ids), 3);
    sampler_free(&s);
    p.min_p = 0.9f;
    p.min_tokens_to_keep = 2; // only 0 passes, but two are kept
    assert_int_equal(sampler_init(&s, &p, 5), RILL_OK);
    logprobs_of(logits, 5, lp);
    sampler_filter(&s, lp);
    assert_int_equal(kept(lp, 5, ids), 2);
    sampler_free(&s);

    p = sampler_defaults();
    p.temp = 1;
    p.top_k = 3;
    assert_int_equal(sampler_init(&s, &p, 5), RILL_OK);
    logprobs_of(logits, 5, lp);
    sampler_filter(&s, lp);
    assert_int_equal(kept(lp, 5, ids), 3);
    assert_int_equal(ids[2], 2);
    sampler_free(&s);

    p = sampler_defaults();
    p.temp = 1;
    p.xtc_probability = 1;
    p.xtc_threshold = 0.1f; // above: 0.5, 0.25, 0.125 -> remove all but the least likely (2)
    int32_t special[1] = {0};
    assert_int_equal(sampler_init(&s, &p, 5), RILL_OK);
    logprobs_of(logits, 5, lp);
    sampler_filter(&s, lp);
    assert_int_equal(kept(lp, 5, ids), 3);
    assert_int_equal(ids[0], 2);
    sampler_free(&s);
    p.n_xtc_special = 1;
    p.xtc_special = special; // token 0 (say, EOS) is never removed
    assert_int_equal(sampler_init(&s, &p, 5), RILL_OK);
    logprobs_of(logits, 5, lp);
    sampler_filter(&s, lp);
    assert_int_equal(kept(lp, 5, ids), 4);
    assert_int_equal(ids[0], 0);
    sampler_free(&s);
}

static void test_processors_follow_mlx_lm(void **state) {
    float logits[6] = {2, -2, 1, 0.5f, -1, 3};
    int32_t hist[] = {0, 1, 1, 3, 5};
    sampler s;
    sampler_params sp = sampler_defaults();
    assert_int_equal(sampler_init(&s, &sp, 6), RILL_OK);
    logits_params p = logits_defaults();
    int32_t bias_ids[1] = {4};
    float bias_vals[1] = {10};
    p.n_bias = 1;
    p.bias_ids = bias_ids;
    p.bias_values = bias_vals;
    p.repetition_penalty = 2;
    p.repetition_context_size = 4; // last four: 1, 1, 3, 5
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    logits_process(&s, &p, hist, 5, logits);
    assert_float_equal(logits[0], 2 - 0.5f - 0.25f, 1e-6);     // no repetition (outside 4)
    assert_float_equal(logits[1], -2 * 2 - 0.5f - 0.5f, 1e-6); // negative: times 2; seen twice
    assert_float_equal(logits[2], 1, 1e-6);                    // untouched
    assert_float_equal(logits[3], 0.5f / 2 - 0.5f - 0.25f, 1e-6);
    assert_float_equal(logits[4], 9, 1e-6); // bias only
    assert_float_equal(logits[5], 3.0f / 2 - 0.5f - 0.25f, 1e-6);
    sampler_free(&s);
}

// log_softmax (vector exponentials in f32, summed per 256 entries) against the formula in double, on
// a Gemma-sized vocabulary plus a tail past the vectors, with a -inf entry.
static void test_log_softmax_matches_double_precision(void **state) {
    (void)state;
    int n = 262144 + 5;
    float *x = malloc((size_t)n * sizeof(float)), *lp = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    assert_non_null(lp);
    test_fill_normal(x, (size_t)n, 4.0f);
    x[17] = -INFINITY;
    x[n - 2] = -INFINITY; // (in the scalar tail)
    x[1000] = 30.0f;      // a clear maximum
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    for (int i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    double lse = mx + log(sum);
    for (int i = 0; i < n; i++)
        lp[i] = NAN; // poisoned: every entry must be written
    log_softmax(x, n, lp);
    for (int i = 0; i < n; i++) {
        if (i == n - 2 || i == 17) continue; // -inf: checked below
        assert_true(fabs(lp[i] - (x[i] - lse)) <= 4e-6 * (1 + fabs(x[i] - lse)));
    }
    assert_true(isinf(lp[17]) && lp[17] < 0 && isinf(lp[n - 2]) && lp[n - 2] < 0);
    free(x);
    free(lp);
}

// Samples at temp 0.8 after top-k 3 follow softmax(lp / 0.8) over the kept set (chi-square).
static void test_samples_follow_the_filtered_softmax(void **state) {
    float logits[6] = {1.0f, 0.2f, 0.7f, -0.5f, 0.9f, -2}, lp[6];
    sampler s;
    sampler_params p = sampler_defaults();
    p.temp = 0.8f;
    p.top_k = 3;
    p.seed = test_rand_u64();
    assert_int_equal(sampler_init(&s, &p, 6), RILL_OK);
    log_softmax(logits, 6, lp);
    int counts[6] = {0}, n = 20000;
    for (int i = 0; i < n; i++)
        counts[sampler_sample(&s, lp)]++;
    assert_int_equal(counts[1] + counts[3] + counts[5], 0);
    int keep[3] = {0, 2, 4};
    double z = 0, e[3], chi = 0;
    for (int i = 0; i < 3; i++)
        z += e[i] = exp(lp[keep[i]] / 0.8);
    for (int i = 0; i < 3; i++) {
        double want = n * e[i] / z;
        chi += (counts[keep[i]] - want) * (counts[keep[i]] - want) / want;
    }
    assert_true(chi < 13.8); // chi-square, 2 degrees of freedom, p = 0.001
    sampler_free(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_tokens_are_the_argmax_of_a_full_forward),
        cmocka_unit_test(test_step_n_plus_1_is_submitted_before_token_n_is_returned),
        cmocka_unit_test(test_chunked_prefill_gives_the_same_tokens),
        cmocka_unit_test(test_unlimited_generation_grows_the_cache_past_its_step),
        cmocka_unit_test(test_same_seed_gives_the_same_samples),
        cmocka_unit_test(test_filters_keep_mlx_lm_sets),
        cmocka_unit_test(test_processors_follow_mlx_lm),
        cmocka_unit_test(test_samples_follow_the_filtered_softmax),
        cmocka_unit_test(test_log_softmax_matches_double_precision),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
