// test_model_smollm2.c: real GGUF models against transformers running the dequantized GGUF in f32
// (tests/ref/make_smollm2_logits.py): SmolLM2-135M-Instruct Q4_1 (repacked to affine at load) and
// Gemma 3 270M Q4_K_M (K-quants repacked, Q5_0 decoded; sliding layers, a prompt past the window).
// At every position of 3 prompts: the top-10 logits within 1e-3 relative norm and the same top-1
// token. Skips when a model is not under $RILL_MODELS.
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

// chunk: tokens per forward for prompt p (the cache carries positions between chunks)
static void check_gguf(const char *model, const char *fixture, rill_rope_layout layout,
                       int64_t (*chunk_of)(int p, int64_t n)) {
    const char *path = test_model_path(model);
    if (!path) skip();
    rill_backend *be;
    rill_stream *s;
    rill_model *m;
    assert_int_equal(backend_open("cpu", 2, &be), RILL_OK);
    assert_int_equal(be->ops->stream_create(be, &s), RILL_OK);
    if (model_load(path, be, &m) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(m->rope_layout, layout);
    safetensors_file *f;
    assert_int_equal(safetensors_open(test_data_path(fixture), &f), RILL_OK);
    double worst = 0;
    for (int p = 0; p < 3; p++) {
        char name[32];
        snprintf(name, sizeof name, "p%d.ids", p);
        const safetensors_tensor *ti = safetensors_find(f, name);
        snprintf(name, sizeof name, "p%d.top_ids", p);
        const safetensors_tensor *tt = safetensors_find(f, name);
        snprintf(name, sizeof name, "p%d.top_logits", p);
        const safetensors_tensor *tl = safetensors_find(f, name);
        assert_true(ti && tt && tl);
        int64_t n = (int64_t)ti->shape[0], k = (int64_t)tt->shape[1];
        const int32_t *ids = (const int32_t *)ti->data, *top = (const int32_t *)tt->data;
        const float *want = (const float *)tl->data;
        int64_t chunk = chunk_of(p, n);
        rill_cache *cache;
        assert_int_equal(model_make_cache(m, &cache), RILL_OK);
        double num = 0, den = 0;
        for (int64_t at = 0; at < n; at += chunk) {
            int64_t c = n - at < chunk ? n - at : chunk;
            rill_tensor it = rill_tensor_2d(DTYPE_I32, c, 1, (void *)(ids + at)), lg;
            if (decoder_forward(m, cache, s, &it, true, &lg) != RILL_OK) fail_msg("%s", rill_last_error());
            be->ops->sync(s);
            for (int64_t t = 0; t < c; t++) {
                const float *row = (const float *)lg.data + t * lg.stride;
                int64_t pos = at + t, best = 0;
                for (int64_t v = 1; v < lg.cols; v++)
                    if (row[v] > row[best]) best = v;
                if (best != top[pos * k])
                    fail_msg("prompt %d position %lld: top-1 %lld, transformers %d (logits %.4f vs %.4f)", p,
                             (long long)pos, (long long)best, top[pos * k], row[best], row[top[pos * k]]);
                for (int64_t j = 0; j < k; j++) {
                    double a = row[top[pos * k + j]], b = want[pos * k + j];
                    num += (a - b) * (a - b);
                    den += b * b;
                }
            }
        }
        double e = sqrt(num / den);
        printf("prompt %d (%lld tokens): top-%lld logits relative error %.3g\n", p, (long long)n, (long long)k, e);
        if (e > worst) worst = e;
        assert_true(e <= 1e-3);
        cache_free(cache);
    }
    printf("worst relative error %.3g\n", worst);
    safetensors_close(f);
    model_free(m);
    be->ops->stream_destroy(s);
    backend_close(be);
}

static int64_t smollm2_chunks(int p, int64_t n) { return p == 2 ? 16 : n; } // the last prompt in chunks
static int64_t gemma3_chunks(int p, int64_t n) { return p == 2 ? 100 : n; } // logits of 262144 per token

static void test_smollm2_logits_match_transformers(void **state) {
    check_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2_logits.safetensors", ROPE_INTERLEAVED, smollm2_chunks);
}

static void test_gemma3_logits_match_transformers(void **state) {
    const char *fx = test_data_path("gemma3_logits.safetensors");
    FILE *f = fopen(fx, "rb");
    if (!f) skip();
    fclose(f);
    check_gguf("gemma-3-270m-Q4_K_M.gguf", "gemma3_logits.safetensors", ROPE_NEOX, gemma3_chunks);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smollm2_logits_match_transformers),
        cmocka_unit_test(test_gemma3_logits_match_transformers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
