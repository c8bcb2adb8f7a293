// test_model_tiny.c: logits of the tiny random models of every architecture (tests/data/tiny,
// made by tests/ref/make_tiny_models.py with transformers; the llama also as a GGUF file, made by
// tests/ref/make_tiny_gguf.py as llama.cpp converts) at every position of 3 prompts, within
// 1e-4 relative norm: once as one prefill, once in chunks followed by one-token decode steps (the
// cache carries the positions between calls).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "testlib.h"

#define BOUND 1e-4

static double rel_err(const float *got, int64_t stride, const float *want, int64_t rows, int64_t cols) {
    double num = 0, den = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            double a = got[r * stride + c], b = want[r * cols + c];
            if (isnan(a)) return INFINITY;
            num += (a - b) * (a - b);
            den += b * b;
        }
    return sqrt(num / den);
}

// Runs ids [n] through the model in chunks of `chunk` tokens and compares all logits.
static double run_prompt(rill_model *m, rill_stream *s, const int32_t *ids, int64_t n, const float *want,
                         int64_t chunk) {
    rill_cache *cache;
    assert_int_equal(model_make_cache(m, &cache), RILL_OK);
    double worst = 0;
    for (int64_t at = 0; at < n; at += chunk) {
        int64_t k = n - at < chunk ? n - at : chunk;
        rill_tensor it = rill_tensor_2d(DTYPE_I32, k, 1, (void *)(ids + at)), lg;
        rill_status st = decoder_forward(m, cache, s, &it, true, &lg);
        if (st != RILL_OK) fail_msg("%s", rill_last_error());
        m->be->ops->sync(s);
        double e = rel_err(lg.data, lg.stride, want + at * lg.cols, k, lg.cols);
        if (e > worst) worst = e;
    }
    assert_int_equal(cache_offset(cache), n);
    cache_free(cache);
    return worst;
}

// The model at tiny/<model> against the reference logits of tiny/<ref_arch>.
static void check_model(const char *arch, const char *model, const char *ref_arch) {
    char dir[512], ref[600], name[32];
    snprintf(dir, sizeof dir, "%s/%s", test_data_path("tiny"), model);
    snprintf(ref, sizeof ref, "%s/%s/logits.safetensors", test_data_path("tiny"), ref_arch);
    rill_backend *be;
    rill_stream *s;
    rill_model *m;
    assert_int_equal(backend_open("cpu", 2, &be), RILL_OK);
    assert_int_equal(be->ops->stream_create(be, &s), RILL_OK);
    if (model_load(dir, be, &m) != RILL_OK) fail_msg("%s", rill_last_error());
    safetensors_file *f;
    assert_int_equal(safetensors_open(ref, &f), RILL_OK);
    double worst = 0;
    for (int p = 0; p < 3; p++) {
        snprintf(name, sizeof name, "p%d.ids", p);
        const safetensors_tensor *ti = safetensors_find(f, name);
        snprintf(name, sizeof name, "p%d.logits", p);
        const safetensors_tensor *tl = safetensors_find(f, name);
        assert_non_null(ti);
        assert_non_null(tl);
        int64_t n = (int64_t)ti->shape[0];
        const int32_t *ids = (const int32_t *)ti->data;
        const float *want = (const float *)tl->data;
        static const int64_t chunks[] = {1 << 30, 5, 1};
        for (size_t c = 0; c < 3; c++) {
            double e = run_prompt(m, s, ids, n, want, chunks[c]);
            if (e > worst) worst = e;
            if (!(e <= BOUND))
                fail_msg("%s prompt %d (%lld tokens, chunks of %lld): relative error %.3g > %g", arch, p, (long long)n,
                         (long long)chunks[c], e, BOUND);
        }
    }
    printf("%s: worst relative error %.3g\n", arch, worst);
    safetensors_close(f);
    model_free(m);
    be->ops->stream_destroy(s);
    backend_close(be);
}

static void check_arch(const char *arch) { check_model(arch, arch, arch); }

static void test_llama_with_llama3_rope_matches_transformers(void **state) { check_arch("llama"); }
static void test_mistral_sliding_window_matches_transformers(void **state) { check_arch("mistral"); }
static void test_qwen2_qkv_bias_matches_transformers(void **state) { check_arch("qwen2"); }
static void test_qwen3_qk_norm_matches_transformers(void **state) { check_arch("qwen3"); }
static void test_gemma3_matches_transformers(void **state) { check_arch("gemma3"); }
static void test_deepseek_v3_mla_matches_transformers(void **state) { check_arch("deepseek_v3"); }
// The same llama as llama.cpp's converter writes it (permuted Q/K rows, rope_freqs.weight).
static void test_llama_gguf_matches_transformers(void **state) {
    check_model("llama (GGUF)", "llama_gguf/model.gguf", "llama");
}

// The CPU stacks q/k/v and gate/up at load (fuse_projections): the stacked model gives the same
// logits, bit for bit, as the parts loaded apart (RILL_FUSE=0), and holds no more memory (the
// parts' storage is released), up to the bookkeeping of the blocks it keeps.
static void check_stacking(const char *model) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", test_data_path("tiny"), model);
    rill_backend *be;
    rill_stream *s;
    assert_int_equal(backend_open("cpu", 2, &be), RILL_OK);
    assert_int_equal(be->ops->stream_create(be, &s), RILL_OK);
    int32_t ids[7];
    for (int i = 0; i < 7; i++)
        ids[i] = (int32_t)(test_rand_u64() % 100);
    float *logits[2] = {NULL, NULL};
    size_t bytes[2], n_logits = 0;
    for (int fused = 0; fused < 2; fused++) {
        setenv("RILL_FUSE", fused ? "1" : "0", 1);
        rill_model *m;
        if (model_load(dir, be, &m) != RILL_OK) fail_msg("%s", rill_last_error());
        const layer_weights *L = &m->layers[0]; // (qk-norm keeps q, k and v apart)
        assert_true(fused ? L->gate_up.rows > 0 && (L->qkv.rows > 0) == !m->cfg.qk_norm
                          : L->gate_up.rows == 0 && L->qkv.rows == 0);
        bytes[fused] = m->weight_bytes;
        rill_cache *cache;
        assert_int_equal(model_make_cache(m, &cache), RILL_OK);
        rill_tensor it = rill_tensor_2d(DTYPE_I32, 7, 1, ids), lg;
        if (decoder_forward(m, cache, s, &it, true, &lg) != RILL_OK) fail_msg("%s", rill_last_error());
        be->ops->sync(s);
        n_logits = (size_t)(lg.rows * lg.cols);
        logits[fused] = malloc(n_logits * sizeof(float));
        for (int64_t r = 0; r < lg.rows; r++)
            memcpy(logits[fused] + r * lg.cols, (float *)lg.data + r * lg.stride, (size_t)lg.cols * sizeof(float));
        cache_free(cache);
        model_free(m);
    }
    unsetenv("RILL_FUSE");
    assert_memory_equal(logits[0], logits[1], n_logits * sizeof(float));
    if (bytes[1] > bytes[0] + 4096) // (the list of kept blocks may grow by a few pointers)
        fail_msg("%s: stacked %zu bytes, apart %zu", model, bytes[1], bytes[0]);
    free(logits[0]);
    free(logits[1]);
    be->ops->stream_destroy(s);
    backend_close(be);
}

static void test_stacked_projections_give_the_same_logits(void **state) {
    check_stacking("llama");                 // f32 safetensors, mapped
    check_stacking("llama_gguf/model.gguf"); // GGUF
    check_stacking("gemma3");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_with_llama3_rope_matches_transformers),
        cmocka_unit_test(test_mistral_sliding_window_matches_transformers),
        cmocka_unit_test(test_qwen2_qkv_bias_matches_transformers),
        cmocka_unit_test(test_qwen3_qk_norm_matches_transformers),
        cmocka_unit_test(test_gemma3_matches_transformers),
        cmocka_unit_test(test_deepseek_v3_mla_matches_transformers),
        cmocka_unit_test(test_llama_gguf_matches_transformers),
        cmocka_unit_test(test_stacked_projections_give_the_same_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
