// test_cache.c: the cache kinds behind cache.h on the tiny models (tests/data/tiny): a restored
// prompt cache continues exactly like no saved cache; trim then generate equals generating from
// the shorter prefix; a rotating cache larger than the run equals KVCache, stays flat once it
// wraps and keeps its first tokens; 8-bit KV stays close to the plain cache; bad cache files fail
// with a reason. Interop with mlx-lm's files: tests/interop/check_prompt_cache.py.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/prompt_cache.h"
#include "generate/generate.h"
#include "io/safetensors.h"
#include "testlib.h"

static rill_backend *be;
static rill_stream *st;
static rill_model *llama, *gemma;

static rill_model *load_tiny(const char *arch) {
    char dir[512];
    rill_model *m;
    snprintf(dir, sizeof dir, "%s/%s", test_data_path("tiny"), arch);
    if (model_load(dir, be, &m) != RILL_OK) fail_msg("%s", rill_last_error());
    return m;
}

static int setup(void **state) {
    if (backend_open("cpu", 2, &be) || be->ops->stream_create(be, &st)) return -1;
    llama = load_tiny("llama");
    gemma = load_tiny("gemma3");
    return 0;
}

static int teardown(void **state) {
    model_free(llama);
    model_free(gemma);
    be->ops->stream_destroy(st);
    backend_close(be);
    return 0;
}

static cache_shape shape_of(const rill_model *m) {
    cache_shape sh = {m->be,
                      m->be->act_dtype,
                      m->cfg.n_layers,
                      (int64_t)m->cfg.n_kv_heads * m->cfg.head_dim,
                      (int64_t)m->cfg.n_kv_heads * m->v_head_dim,
                      256};
    return sh;
}

static void prompt_of(int32_t *p, int n, int vocab) {
    for (int i = 0; i < n; i++)
        p[i] = (int32_t)((i * 37 + 11) % vocab);
}

// Greedy: runs prompt[n] into cache (which may hold earlier tokens), returns max tokens in out;
// lp0 (or NULL) gets the first step's logprobs.
static void greedy(rill_model *m, rill_cache *cache, const int32_t *prompt, int64_t n, int max, int32_t *out,
                   generate_params *pp, float *lp0) {
    generate_params p = pp ? *pp : generate_defaults();
    p.max_tokens = max;
    generator *g;
    if (generate_start(m, cache, st, prompt, n, &p, &g) != RILL_OK) fail_msg("%s", rill_last_error());
    for (int i = 0;; i++) {
        bool done;
        const float *lp;
        int32_t t;
        if (generate_next(g, &t, &lp, &done) != RILL_OK) fail_msg("%s", rill_last_error());
        if (done) break;
        if (i == 0 && lp0) memcpy(lp0, lp, sizeof(float) * (size_t)m->cfg.vocab_size);
        out[i] = t;
    }
    generate_free(g);
}

static void test_restored_cache_continues_like_no_saved_cache(void **state) {
    const char *kinds[] = {"kv", "rot", "q8"};
    for (int k = 0; k < 3; k++) {
        rill_model *m = k == 2 ? gemma : llama; // gemma3's head_dim 32 holds a group of 32
        int32_t prompt[40], want[12], got[12];
        prompt_of(prompt, 40, m->cfg.vocab_size);
        int64_t mx = k == 1 ? 24 : 0; // the ring wraps inside the prompt
        generate_params p = generate_defaults();
        if (k == 2) {
            p.kv_bits = 8;
            p.kv_group_size = 32;
        }
        // the same run without a file: 30 tokens into the cache (as cache-prompt fills it), then 10
        // more (a rotating cache depends on where the chunks fall, so the runs share boundaries)
        rill_cache *c;
        int32_t dummy;
        assert_int_equal(model_make_prompt_cache(m, mx, &c), RILL_OK);
        greedy(m, c, prompt, 30, 1, &dummy, &p, NULL);
        greedy(m, c, prompt + 30, 10, 12, want, &p, NULL);
        cache_free(c);
        if (k != 1) { // KVCache and the quantized cache: also equal to one uninterrupted run
            int32_t one[12];
            assert_int_equal(model_make_prompt_cache(m, mx, &c), RILL_OK);
            greedy(m, c, prompt, 40, 12, one, &p, NULL);
            cache_free(c);
            assert_memory_equal(one, want, sizeof one);
        }

        // the first 30 tokens into a cache, saved, loaded, continued
        assert_int_equal(model_make_prompt_cache(m, mx, &c), RILL_OK);
        greedy(m, c, prompt, 30, 1, &dummy, &p, NULL);
        assert_int_equal(cache_offset(c), 30);
        const char *path = test_tmp_path(".safetensors");
        const char *keys[1] = {"model"}, *vals[1] = {kinds[k]};
        if (prompt_cache_save(path, c, st, m->cfg.n_kv_heads, keys, vals, 1) != RILL_OK)
            fail_msg("%s", rill_last_error());
        cache_free(c);
        cache_shape sh = shape_of(m);
        prompt_cache_meta meta;
        if (prompt_cache_load(path, &sh, m->cfg.n_kv_heads, st, &c, &meta) != RILL_OK)
            fail_msg("%s", rill_last_error());
        assert_string_equal(prompt_cache_meta_get(&meta, "model"), kinds[k]);
        prompt_cache_meta_free(&meta);
        assert_int_equal(cache_offset(c), 30);
        greedy(m, c, prompt + 30, 10, 12, got, &p, NULL);
        cache_free(c);
        for (int i = 0; i < 12; i++)
            if (got[i] != want[i])
                fail_msg("%s: token %d is %d after a restore, %d without", kinds[k], i, got[i], want[i]);
    }
}

static void test_trim_then_generate_equals_shorter_prefix(void **state) {
    int32_t prompt[20], full[16], got[16];
    prompt_of(prompt, 20, llama->cfg.vocab_size);
    rill_cache *c;
    assert_int_equal(model_make_prompt_cache(llama, 0, &c), RILL_OK);
    greedy(llama, c, prompt, 20, 16, full, NULL, NULL);
    // the cache holds the prompt and some of the 16 tokens; cut back to prompt + full[0..5)
    int64_t have = cache_offset(c), keep = 20 + 5;
    assert_true(cache_can_trim(c));
    assert_int_equal(cache_trim(c, have - keep), have - keep);
    assert_int_equal(cache_offset(c), keep);
    greedy(llama, c, &full[5], 1, 10, got, NULL, NULL); // input full[5]: the next is full[6]
    for (int i = 0; i < 10; i++)
        assert_int_equal(got[i], full[6 + i]);
    cache_free(c);
}

static void test_rotating_cache_larger_than_the_run_equals_kvcache(void **state) {
    int32_t prompt[30], a[40], b[40];
    prompt_of(prompt, 30, llama->cfg.vocab_size);
    rill_cache *c;
    generate_params p = generate_defaults();
    p.prefill_step_size = 7; // chunks: the concat path, then the in-place path
    assert_int_equal(model_make_prompt_cache(llama, 0, &c), RILL_OK);
    greedy(llama, c, prompt, 30, 40, a, &p, NULL);
    cache_free(c);
    assert_int_equal(model_make_prompt_cache(llama, 100, &c), RILL_OK);
    assert_string_equal(c->layers[0]->ops->class_name, "RotatingKVCache");
    greedy(llama, c, prompt, 30, 40, b, &p, NULL);
    assert_true(cache_can_trim(c)); // offset < max_size
    cache_free(c);
    assert_memory_equal(a, b, sizeof a);
}

static void test_rotating_cache_stays_flat_and_is_not_trimmable_once_full(void **state) {
    int32_t prompt[10], out[300];
    prompt_of(prompt, 10, llama->cfg.vocab_size);
    rill_cache *c;
    assert_int_equal(model_make_prompt_cache(llama, 32, &c), RILL_OK);
    greedy(llama, c, prompt, 10, 300, out, NULL, NULL);
    size_t bytes = cache_nbytes(c);
    size_t row =
        (size_t)(2 * llama->cfg.n_kv_heads * llama->cfg.head_dim) * sizeof(float) * (size_t)llama->cfg.n_layers;
    assert_true(bytes <= 32 * row); // never more than max_size positions once the ring is full
    assert_false(cache_can_trim(c));
    assert_int_equal(cache_trim(c, 3), 0);
    cache_free(c);
}

static void test_quantized_kv_stays_close_to_the_plain_cache(void **state) {
    int32_t prompt[40], a[8], b[8];
    prompt_of(prompt, 40, gemma->cfg.vocab_size);
    int V = gemma->cfg.vocab_size;
    float *lpa = malloc(sizeof(float) * (size_t)V), *lpb = malloc(sizeof(float) * (size_t)V);
    for (int bits = 8; bits >= 4; bits -= 4) {
        rill_cache *c;
        generate_params p = generate_defaults();
        assert_int_equal(model_make_prompt_cache(gemma, 0, &c), RILL_OK);
        greedy(gemma, c, prompt, 40, 8, a, &p, lpa);
        cache_free(c);
        p.kv_bits = bits;
        p.kv_group_size = 32;
        p.quantized_kv_start = 16; // converted after the prefill crosses 16 positions
        assert_int_equal(model_make_prompt_cache(gemma, 0, &c), RILL_OK);
        greedy(gemma, c, prompt, 40, 8, b, &p, lpb);
        int n_q = 0;
        for (int l = 0; l < c->n_layers; l++)
            n_q += strstr(c->layers[l]->ops->class_name, "Quantized") != NULL;
        assert_int_equal(n_q, c->n_layers); // the sliding layers too (a quantized rotating cache)
        cache_free(c);
        double kl = 0, diff = 0;
        for (int i = 0; i < V; i++) {
            kl += exp(lpa[i]) * (lpa[i] - lpb[i]);
            diff += fabs(lpa[i] - lpb[i]);
        }
        print_message("%d-bit KV: KL %.3g, mean |dlogprob| %.3g\n", bits, kl, diff / V);
        assert_true(diff > 0); // it did quantize
        assert_true(kl < (bits == 8 ? 1e-3 : 3e-2));
    }
    free(lpa);
    free(lpb);
}

static void expect_load_error(const char *path, rill_model *m, const char *needle) {
    cache_shape sh = shape_of(m);
    rill_cache *c = (rill_cache *)1;
    rill_status s = prompt_cache_load(path, &sh, m->cfg.n_kv_heads, st, &c, NULL);
    assert_int_not_equal(s, RILL_OK);
    assert_null(c);
    if (!strstr(rill_last_error(), needle)) fail_msg("error '%s' does not say '%s'", rill_last_error(), needle);
}

static void test_bad_cache_files_fail_with_a_reason(void **state) {
    int32_t prompt[12], t;
    prompt_of(prompt, 12, llama->cfg.vocab_size);
    rill_cache *c;
    assert_int_equal(model_make_prompt_cache(llama, 0, &c), RILL_OK);
    greedy(llama, c, prompt, 12, 1, &t, NULL, NULL);
    const char *good = test_tmp_path(".safetensors");
    assert_int_equal(prompt_cache_save(good, c, st, llama->cfg.n_kv_heads, NULL, NULL, 0), RILL_OK);
    cache_free(c);
    // another model: gemma3 has other layer counts / widths
    expect_load_error(good, gemma, "another model");
    // truncated
    FILE *f = fopen(good, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    expect_load_error(test_write_tmp(".safetensors", buf, (size_t)(n - 100)), llama, good ? "" : "");
    // an unknown class name: rewrite the metadata
    char *hdr = strstr(buf + 8, "\"KVCache\"");
    assert_non_null(hdr);
    memcpy(hdr + 1, "XXCache", 7);
    expect_load_error(test_write_tmp(".safetensors", buf, (size_t)n), llama, "unknown cache class 'XXCache'");
    free(buf);
    // metadata that does not match: an offset past the stored positions
    safetensors_file *sf;
    assert_int_equal(safetensors_open(good, &sf), RILL_OK);
    safetensors_entry e[64];
    int32_t big = 999;
    size_t ne = 0;
    for (size_t i = 0; i < sf->n_tensors; i++) {
        const safetensors_tensor *x = &sf->tensors[i];
        e[ne++] = (safetensors_entry){x->name, x->dtype, x->n_dims, x->shape,
                                      !strcmp(x->name, "1.2") ? (const void *)&big : x->data};
    }
    const char *bad = test_tmp_path(".safetensors");
    assert_int_equal(safetensors_write(bad, e, ne, (const char *const *)sf->meta_keys,
                                       (const char *const *)sf->meta_values, sf->n_meta),
                     RILL_OK);
    safetensors_close(sf);
    expect_load_error(bad, llama, "offset 999 outside");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restored_cache_continues_like_no_saved_cache),
        cmocka_unit_test(test_trim_then_generate_equals_shorter_prefix),
        cmocka_unit_test(test_rotating_cache_larger_than_the_run_equals_kvcache),
        cmocka_unit_test(test_rotating_cache_stays_flat_and_is_not_trimmable_once_full),
        cmocka_unit_test(test_quantized_kv_stays_close_to_the_plain_cache),
        cmocka_unit_test(test_bad_cache_files_fail_with_a_reason),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
