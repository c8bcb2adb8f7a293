// test_cache.c: the cache kinds behind cache.h on the tiny models (tests/data/tiny): a restored
// prompt cache continues exactly like no saved cache; trim then generate equals generating from
// the shorter prefix; MLA's latent cache (deepseek_v3) keeps one [latent | rope key] row per
// position and round-trips through mlx-lm's layout; a rotating cache larger than the run equals KVCache, stays flat
// once it wraps and keeps its first tokens; 8-bit KV stays close to the plain cache; bad cache files fail with a
// reason. Interop with mlx-lm's files: tests/interop/check_prompt_cache.py.
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
static rill_model *llama, *gemma, *deepseek;

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
    deepseek = load_tiny("deepseek_v3");
    return 0;
}

static int teardown(void **state) {
    model_free(llama);
    model_free(gemma);
    model_free(deepseek);
    be->ops->stream_destroy(st);
    backend_close(be);
    return 0;
}

static cache_shape shape_of(const rill_model *m) { return model_cache_shape(m); }

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
        cache_shape sh = shape_of(m);
        if (prompt_cache_save(path, c, st, &sh, keys, vals, 1) != RILL_OK) fail_msg("%s", rill_last_error());
        cache_free(c);
        prompt_cache_meta meta;
        if (prompt_cache_load(path, &sh, st, &c, &meta) != RILL_OK) fail_msg("%s", rill_last_error());
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

// The latent cache of the tiny deepseek_v3: one row of kv_lora_rank + rope dims per position and no
// values; a run cut by a save and a load continues as one uninterrupted run; the file holds mlx-lm's
// deepseek_v3 layout (keys = latent [1, 1, S, 32], values = rope key [1, 1, S, 8]); a rotating cache
// works on it too.
static void test_mla_latent_cache_round_trips_in_mlx_layout(void **state) {
    rill_model *m = deepseek;
    const rill_model_config *c = &m->cfg;
    cache_shape sh = shape_of(m);
    assert_int_equal(sh.k_dim, c->kv_lora_rank + c->qk_rope_head_dim);
    assert_int_equal(sh.v_dim, 0);
    int32_t prompt[40], one[12], got[12], dummy;
    prompt_of(prompt, 40, c->vocab_size);
    rill_cache *kv;
    assert_int_equal(model_make_prompt_cache(m, 0, &kv), RILL_OK);
    greedy(m, kv, prompt, 40, 12, one, NULL, NULL);
    assert_int_equal(cache_nbytes(kv), (size_t)c->n_layers * 256 * (size_t)sh.k_dim * sizeof(float));
    cache_free(kv);
    for (int64_t mx = 0; mx <= 64; mx += 64) { // KVCache, then a RotatingKVCache that does not wrap
        assert_int_equal(model_make_prompt_cache(m, mx, &kv), RILL_OK);
        greedy(m, kv, prompt, 30, 1, &dummy, NULL, NULL);
        const char *path = test_tmp_path(".safetensors");
        assert_int_equal(prompt_cache_save(path, kv, st, &sh, NULL, NULL, 0), RILL_OK);
        cache_free(kv);
        safetensors_file *f;
        assert_int_equal(safetensors_open(path, &f), RILL_OK);
        const safetensors_tensor *k0 = safetensors_find(f, "0.0"), *v0 = safetensors_find(f, "0.1");
        assert_non_null(k0);
        assert_non_null(v0);
        assert_int_equal(k0->n_dims, 4);
        assert_int_equal(k0->shape[1], 1);
        assert_int_equal(k0->shape[3], c->kv_lora_rank);
        assert_int_equal(v0->shape[3], c->qk_rope_head_dim);
        assert_int_equal(k0->shape[2], v0->shape[2]);
        safetensors_close(f);
        assert_int_equal(prompt_cache_load(path, &sh, st, &kv, NULL), RILL_OK);
        assert_int_equal(cache_offset(kv), 30);
        greedy(m, kv, prompt + 30, 10, 12, got, NULL, NULL);
        cache_free(kv);
        assert_memory_equal(got, one, sizeof got);
    }
}

// The latent cache's attention, plain and quantized (latent 64 + rope 32: whole groups of 32 in each
// part), against the backend's attention over explicit values (the latent copied out); a quantized
// cache saved and loaded attends exactly as before.
static void test_mla_latent_cache_reads_values_from_its_keys(void **state) {
    enum { LAT = 64, ROPE = 32, D = LAT + ROPE, HQ = 4, N = 20 };
    cache_shape sh = {.be = be,
                      .dtype = DTYPE_F32,
                      .n_layers = 1,
                      .k_dim = D,
                      .v_dim = 0,
                      .step = 256,
                      .n_kv_heads = 1,
                      .latent_dim = LAT};
    static float k[N][D], v[N][LAT], q[N][HQ * D], want[N][HQ * LAT], got[N][HQ * LAT], again[HQ * LAT];
    test_fill_normal(&k[0][0], sizeof k / sizeof(float), 1.0f);
    test_fill_normal(&q[0][0], sizeof q / sizeof(float), 0.3f);
    for (int i = 0; i < N; i++)
        memcpy(v[i], k[i], sizeof v[i]);
    rill_tensor K = rill_tensor_2d(DTYPE_F32, N, D, k), V = rill_tensor_2d(DTYPE_F32, N, LAT, v);
    rill_tensor Q = rill_tensor_2d(DTYPE_F32, N, HQ * D, q), W = rill_tensor_2d(DTYPE_F32, N, HQ * LAT, want);
    rill_attn_params ap = {HQ, 1, D, LAT, 0.1f, 0, {0, 0, 0, NULL}};
    be->ops->attention(st, &W, &Q, &K, &V, &ap);
    static const int kinds[3] = {0, 8, 4};
    for (int ki = 0; ki < 3; ki++) {
        int bits = kinds[ki];
        rill_cache *c;
        assert_int_equal(cache_make_kv(&sh, &c), RILL_OK);
        test_poison_f32(&got[0][0], sizeof got / sizeof(float));
        rill_tensor none = rill_tensor_2d(DTYPE_F32, N, 0, v);
        for (int part = 0; part < 2; part++) { // 12 positions, (quantize), 8 more
            int r0 = part ? 12 : 0, n = part ? N - 12 : 12;
            rill_tensor kk = rill_tensor_rows(&K, r0, n), qq = rill_tensor_rows(&Q, r0, n), vv = none;
            rill_tensor out = rill_tensor_2d(DTYPE_F32, n, HQ * LAT, got[r0]);
            vv.rows = n;
            rill_attn_params p = ap;
            p.mask = c->layers[0]->ops->make_mask(c->layers[0], n, 0);
            assert_int_equal(cache_layer_attend(c->layers[0], be, st, &kk, &vv, &qq, &p, &out), RILL_OK);
            if (!part && bits) assert_int_equal(cache_maybe_quantize(c, st, 0, 32, bits), RILL_OK);
        }
        be->ops->sync(st);
        double worst = 0;
        for (int i = 12; i < N; i++)
            for (int e = 0; e < HQ * LAT; e++)
                worst = fmax(worst, fabs(got[i][e] - want[i][e]));
        print_message("latent cache, %d bits: worst |out - expanded| %.3g\n", bits, worst);
        assert_true(worst < (bits == 8 ? 3e-2 : bits ? 0.3 : 1e-5));
        if (bits) { // save, load, attend the last query again: the same bits
            const char *path = test_tmp_path(".safetensors");
            assert_int_equal(prompt_cache_save(path, c, st, &sh, NULL, NULL, 0), RILL_OK);
            rill_cache *d;
            assert_int_equal(prompt_cache_load(path, &sh, st, &d, NULL), RILL_OK);
            assert_string_equal(d->layers[0]->ops->class_name, "QuantizedKVCache");
            assert_int_equal(cache_trim(d, 1), 1);
            assert_int_equal(cache_trim(c, 1), 1);
            rill_tensor kk = rill_tensor_rows(&K, N - 1, 1), qq = rill_tensor_rows(&Q, N - 1, 1), vv = none;
            vv.rows = 1;
            rill_tensor out = rill_tensor_2d(DTYPE_F32, 1, HQ * LAT, again);
            rill_attn_params p = ap;
            p.mask = d->layers[0]->ops->make_mask(d->layers[0], 1, 0);
            assert_int_equal(cache_layer_attend(d->layers[0], be, st, &kk, &vv, &qq, &p, &out), RILL_OK);
            be->ops->sync(st);
            assert_memory_equal(again, got[N - 1], sizeof again);
            cache_free(d);
        }
        cache_free(c);
    }
}

static void expect_load_error(const char *path, rill_model *m, const char *needle) {
    cache_shape sh = shape_of(m);
    rill_cache *c = (rill_cache *)1;
    rill_status s = prompt_cache_load(path, &sh, st, &c, NULL);
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
    cache_shape lsh = shape_of(llama);
    assert_int_equal(prompt_cache_save(good, c, st, &lsh, NULL, NULL, 0), RILL_OK);
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
        cmocka_unit_test(test_mla_latent_cache_round_trips_in_mlx_layout),
        cmocka_unit_test(test_mla_latent_cache_reads_values_from_its_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
