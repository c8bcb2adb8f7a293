// test_cuda_model.c: the tiny model of every architecture (tests/data/tiny) on the GPU against the
// CPU: logits of a prompt within 1e-2 relative norm and the same 64 greedy tokens with f32 and with
// f16 activations (issue 7's bound); with bf16 activations (8 bits of mantissa: rounding every
// activation over random weights lands at 0.6-1.0e-2) logits within 1.5e-2 and the first 32 greedy
// tokens the same (random tiny models have near-ties that bf16 flips later); and the device decode
// loop's replayed graph giving exactly
// the tokens of the same steps issued as plain launches (greedy and temp/top-k). The tiny models'
// weights are dense; a 4-bit model made by `rill synth`'s writer (shapes that take the decode GEMVs
// on quantized x, their fused norms and the norms folded into them) is checked one token per step,
// the path a decode step takes. Skips without a GPU.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "generate/generate.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/synth.h"
#include "testlib.h"

#define LOGIT_BOUND      1e-2
#define LOGIT_BOUND_BF16 1.5e-2
#define SAME_BF16        32
#define N_GEN            64

// A CUDA backend with activations of `dtype` ("bf16", "f32"), or NULL (no GPU, or not built).
static rill_backend *open_cuda(const char *dtype) {
    setenv("RILL_CUDA_DTYPE", dtype, 1);
    rill_backend *be = NULL;
    if (backend_open("cuda", 0, &be) != RILL_OK) be = NULL;
    unsetenv("RILL_CUDA_DTYPE");
    return be;
}

static void model_dir(const char *model, char *dir, size_t cap) {
    snprintf(dir, cap, "%s/%s", test_data_path("tiny"), model);
}

// The prompt p0 of tiny/<ref>/logits.safetensors: ids [*n] (malloc'd).
static int32_t *prompt_of(const char *ref, int64_t *n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s/logits.safetensors", test_data_path("tiny"), ref);
    safetensors_file *f;
    assert_int_equal(safetensors_open(path, &f), RILL_OK);
    const safetensors_tensor *t = safetensors_find(f, "p0.ids");
    assert_non_null(t);
    *n = (int64_t)t->shape[0];
    int32_t *ids = malloc((size_t)*n * sizeof(int32_t));
    memcpy(ids, t->data, (size_t)*n * sizeof(int32_t));
    safetensors_close(f);
    return ids;
}

// All logits of ids [n] as f32 on the host: [n][vocab] (malloc'd), fed `chunk` tokens per forward
// pass: n at once (a prefill), or 1 per step (the decode path: one-token ops, no graph).
static float *logits_of(rill_model *m, rill_stream *s, const int32_t *ids, int64_t n, int64_t chunk) {
    const rill_backend_ops *op = m->be->ops;
    rill_cache *cache;
    assert_int_equal(model_make_cache(m, &cache), RILL_OK);
    int64_t vocab = m->cfg.vocab_size;
    int32_t *ids_dev = op->alloc(m->be, (size_t)chunk * sizeof(int32_t));
    float *l32d = op->alloc(m->be, (size_t)(chunk * vocab) * sizeof(float)), *out = malloc((size_t)(n * vocab) * 4);
    test_poison_f32(out, (size_t)(n * vocab));
    for (int64_t i = 0; i < n; i += chunk) {
        int64_t k = n - i < chunk ? n - i : chunk;
        op->upload(s, ids_dev, ids + i, (size_t)k * sizeof(int32_t));
        rill_tensor it = rill_tensor_2d(DTYPE_I32, k, 1, ids_dev), lg;
        if (decoder_forward(m, cache, s, &it, true, &lg) != RILL_OK) fail_msg("%s", rill_last_error());
        assert_int_equal(lg.cols, vocab);
        rill_tensor l32 = rill_tensor_2d(DTYPE_F32, k, vocab, l32d);
        op->copy(s, &l32, &lg);
        op->download(s, out + i * vocab, l32d, (size_t)(k * vocab) * sizeof(float));
        op->sync(s);
        if (op->stream_status && op->stream_status(s) != RILL_OK) fail_msg("%s", rill_last_error());
    }
    op->free(m->be, l32d);
    op->free(m->be, ids_dev);
    cache_free(cache);
    return out;
}

// N_GEN tokens after ids [n] (tok [N_GEN]); returns whether the device loop ran, and with a graph.
static void gen(rill_model *m, rill_stream *s, const int32_t *ids, int64_t n, float temp, int top_k, bool no_graphs,
                int32_t *tok, bool *on_device, bool *graph) {
    rill_cache *cache;
    assert_int_equal(model_make_cache(m, &cache), RILL_OK);
    generate_params p = generate_defaults();
    p.max_tokens = N_GEN;
    p.sampling.temp = temp;
    p.sampling.top_k = top_k;
    p.sampling.seed = 1234;
    p.no_graphs = no_graphs;
    generator *g;
    if (generate_start(m, cache, s, ids, n, &p, &g) != RILL_OK) fail_msg("%s", rill_last_error());
    for (int i = 0; i < N_GEN; i++) {
        bool done;
        tok[i] = -1;
        if (generate_next(g, &tok[i], NULL, &done) != RILL_OK) fail_msg("step %d: %s", i, rill_last_error());
        assert_false(done);
    }
    if (on_device) *on_device = generate_on_device(g);
    if (graph) *graph = generate_uses_graph(g);
    generate_free(g);
    assert_int_equal(cache_offset(cache), n - 1 + N_GEN); // the prefill, then one position per step
    cache_free(cache);
}

static int first_diff(const int32_t *a, const int32_t *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return -1;
}

// Relative L2 error of got against want [n]; infinite where got has a NaN.
static double rel_diff(const float *got, const float *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i])) return INFINITY;
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    return sqrt(num / den);
}

// The model in dir loaded on each of the n backends, each with a stream of its own.
static void load_on_each(const char *dir, int n, rill_backend **bes, rill_stream **s, rill_model **m) {
    for (int i = 0; i < n; i++) {
        assert_int_equal(bes[i]->ops->stream_create(bes[i], &s[i]), RILL_OK);
        if (model_load(dir, bes[i], &m[i]) != RILL_OK) fail_msg("%s", rill_last_error());
    }
}

// A model on the GPU holds its matrices there only: of its host storage, no block repacked from GGUF
// and mapped bytes that are at most a tenth of those the CPU model (m[0], which reads them in place)
// counts: the vectors left (the norms) and nothing of the matrices.
static void check_no_host_copies(const char *model, int n, rill_model **m) {
    for (int i = 1; i < n; i++) {
        if (m[i]->n_affine != 0)
            fail_msg("%s: the GPU model keeps %d repacked blocks on the host", model, m[i]->n_affine);
        if (!(m[i]->mapped_bytes * 10 <= m[0]->mapped_bytes))
            fail_msg("%s: the GPU model counts %zu mapped bytes on the host (the CPU model %zu)", model,
                     m[i]->mapped_bytes, m[0]->mapped_bytes);
    }
}

static void close_each(int n, rill_backend **bes, rill_stream **s, rill_model **m) {
    for (int i = 0; i < n; i++) {
        model_free(m[i]);
        bes[i]->ops->stream_destroy(s[i]);
        backend_close(bes[i]);
    }
}

static void check_model(const char *model, const char *ref) {
    rill_backend *gpu = open_cuda("bf16");
    if (!gpu) skip();
    rill_backend *gpu32 = open_cuda("f32"), *gpu16 = open_cuda("f16"), *cpu;
    assert_non_null(gpu32);
    assert_non_null(gpu16);
    assert_int_equal(backend_open("cpu", 2, &cpu), RILL_OK);
    char dir[512];
    model_dir(model, dir, sizeof dir);
    rill_backend *bes[4] = {cpu, gpu, gpu32, gpu16};
    rill_stream *s[4];
    rill_model *m[4];
    load_on_each(dir, 4, bes, s, m);
    check_no_host_copies(model, 4, m);
    int64_t n;
    int32_t *ids = prompt_of(ref, &n);

    // logits of the whole prompt
    int64_t vocab = m[0]->cfg.vocab_size;
    float *want = logits_of(m[0], s[0], ids, n, n);
    double rels[4] = {0};
    for (int b = 1; b < 4; b++) {
        float *got = logits_of(m[b], s[b], ids, n, n);
        rels[b] = rel_diff(got, want, n * vocab);
        if (isinf(rels[b])) fail_msg("%s: a GPU logit is NaN (backend %d)", model, b);
        free(got);
    }
    double rel = rels[1];
    printf("%s: GPU logits vs CPU: relative error %.3g (bf16), %.3g (f16), %.3g (f32) over %lld positions\n", model,
           rels[1], rels[3], rels[2], (long long)n);

    // greedy tokens: CPU, GPU bf16 (graph), GPU f32 (graph), GPU bf16 plain launches
    int32_t t_cpu[N_GEN], t_gpu[N_GEN], t_gpu32[N_GEN], t_gpu16[N_GEN], t_plain[N_GEN];
    bool dev, graph, dev0, graph0;
    gen(m[0], s[0], ids, n, 0, 0, false, t_cpu, &dev0, NULL);
    gen(m[1], s[1], ids, n, 0, 0, false, t_gpu, &dev, &graph);
    gen(m[2], s[2], ids, n, 0, 0, false, t_gpu32, NULL, NULL);
    gen(m[3], s[3], ids, n, 0, 0, false, t_gpu16, NULL, NULL);
    gen(m[1], s[1], ids, n, 0, 0, true, t_plain, NULL, &graph0);
    assert_false(dev0);
    assert_true(dev);
    assert_false(graph0);
    int dbf = first_diff(t_cpu, t_gpu, N_GEN), d32 = first_diff(t_cpu, t_gpu32, N_GEN),
        d16 = first_diff(t_cpu, t_gpu16, N_GEN);
    printf("%s: %d greedy tokens; graph %s; GPU bf16 %s (first differs at %d), f16 %s (at %d), f32 %s (at %d)\n", model,
           N_GEN, graph ? "yes" : "no (MoE)", dbf < 0 ? "same" : "differs", dbf, d16 < 0 ? "same" : "differs", d16,
           d32 < 0 ? "same" : "differs", d32);
    assert_memory_equal(t_gpu, t_plain, sizeof t_gpu); // the graph replays what plain launches give
    // sampled: the device sampler with a graph and without gives the same draws
    int32_t s_graph[N_GEN], s_plain[N_GEN];
    gen(m[1], s[1], ids, n, 0.8f, 20, false, s_graph, NULL, NULL);
    gen(m[1], s[1], ids, n, 0.8f, 20, true, s_plain, NULL, NULL);
    assert_memory_equal(s_graph, s_plain, sizeof s_graph);
    int distinct = 0;
    for (int i = 0; i < N_GEN; i++)
        distinct += i == 0 || s_graph[i] != s_graph[i - 1];
    printf("%s: sampled (temp 0.8, top-k 20): graph == plain; %d changes of token\n", model, distinct);
    if (!(rels[2] <= LOGIT_BOUND)) fail_msg("%s: GPU f32 logits relative error %.3g > %g", model, rels[2], LOGIT_BOUND);
    if (!(rels[3] <= LOGIT_BOUND)) fail_msg("%s: GPU f16 logits relative error %.3g > %g", model, rels[3], LOGIT_BOUND);
    if (!(rel <= LOGIT_BOUND_BF16))
        fail_msg("%s: GPU bf16 logits relative error %.3g > %g", model, rel, LOGIT_BOUND_BF16);
    if (d32 >= 0) fail_msg("%s: GPU f32 greedy tokens differ from the CPU's at %d", model, d32);
    if (d16 >= 0) fail_msg("%s: GPU f16 greedy tokens differ from the CPU's at %d", model, d16);
    if (dbf >= 0 && dbf < SAME_BF16) fail_msg("%s: GPU bf16 greedy tokens differ from the CPU's at %d", model, dbf);

    free(want);
    free(ids);
    close_each(4, bes, s, m);
}

static void test_llama_on_gpu_matches_cpu(void **state) { check_model("llama", "llama"); }
static void test_mistral_on_gpu_matches_cpu(void **state) { check_model("mistral", "mistral"); }
static void test_qwen2_on_gpu_matches_cpu(void **state) { check_model("qwen2", "qwen2"); }
static void test_qwen3_on_gpu_matches_cpu(void **state) { check_model("qwen3", "qwen3"); }
static void test_gemma3_on_gpu_matches_cpu(void **state) { check_model("gemma3", "gemma3"); }
static void test_deepseek_v3_on_gpu_matches_cpu(void **state) { check_model("deepseek_v3", "deepseek_v3"); }
static void test_llama_gguf_on_gpu_matches_cpu(void **state) { check_model("llama_gguf/model.gguf", "llama"); }

// A 4-bit llama of small, GPU-friendly shapes (hidden 256) made by synth's writer with random
// weights, intermediate size ffn: its per-step logits on the GPU (bf16, f16) against the CPU's, and
// greedy tokens from the graph equal to those of plain launches.
static void check_4bit_decode(int ffn, const char *what) {
    rill_backend *gpu = open_cuda("bf16");
    if (!gpu) skip();
    rill_backend *gpu16 = open_cuda("f16"), *cpu;
    assert_non_null(gpu16);
    assert_int_equal(backend_open("cpu", 4, &cpu), RILL_OK);
    char config[512];
    snprintf(config, sizeof config,
             "{\"model_type\":\"llama\",\"vocab_size\":512,\"hidden_size\":256,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"rms_norm_eps\":1e-05,"
             "\"tie_word_embeddings\":true,\"hidden_act\":\"silu\"}",
             ffn);
    const char *dir = test_tmp_path("-q4");
    synth_options o = {4, 64, test_rand_u64(), 1 << 30};
    assert_int_equal(synth_write_folder(config, "tiny-q4", &o, dir), RILL_OK);
    rill_backend *bes[3] = {cpu, gpu, gpu16};
    rill_stream *s[3];
    rill_model *m[3];
    load_on_each(dir, 3, bes, s, m);
    check_no_host_copies(what, 3, m);
    int32_t ids[12];
    for (int i = 0; i < 12; i++)
        ids[i] = (int32_t)(test_rand_u64() % 512);
    float *want = logits_of(m[0], s[0], ids, 12, 1);
    float *got = logits_of(m[1], s[1], ids, 12, 1), *got16 = logits_of(m[2], s[2], ids, 12, 1);
    double rbf = rel_diff(got, want, 12 * 512), r16 = rel_diff(got16, want, 12 * 512);
    int32_t t_graph[N_GEN], t_plain[N_GEN];
    bool graph;
    gen(m[1], s[1], ids, 12, 0, 0, false, t_graph, NULL, &graph);
    gen(m[1], s[1], ids, 12, 0, 0, true, t_plain, NULL, NULL);
    printf("4-bit llama (hidden 256, ffn %d: %s), one token per step: GPU logits vs CPU: relative error %.3g (bf16), "
           "%.3g (f16); graph %s\n",
           ffn, what, rbf, r16, graph ? "yes" : "no");
    assert_true(graph);
    assert_memory_equal(t_graph, t_plain, sizeof t_graph);
    if (!(r16 <= LOGIT_BOUND)) fail_msg("4-bit: GPU f16 logits relative error %.3g > %g", r16, LOGIT_BOUND);
    if (!(rbf <= LOGIT_BOUND_BF16)) fail_msg("4-bit: GPU bf16 logits relative error %.3g > %g", rbf, LOGIT_BOUND_BF16);
    free(want);
    free(got);
    free(got16);
    close_each(3, bes, s, m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    test_run(cmd, NULL, 0);
}

// ffn 768: o and down take the folded norm, q/k/v and gate/up the pair GEMVs.
static void test_4bit_decode_on_gpu_matches_cpu(void **state) { check_4bit_decode(768, "o and down folded"); }
// ffn 4352: down (256 x 4352) is over 2^20 weights, so its GEMV takes x quantized, by the launch
// after gate/up (act_matmul), as on Llama-3-8B.
static void test_4bit_large_down_on_gpu_matches_cpu(void **state) { check_4bit_decode(4352, "down takes g quantized"); }

// Without a GPU, asking for the cuda backend fails with a reason (what `--device cuda` prints).
static void test_cuda_without_gpu_fails_with_a_reason(void **state) {
    rill_backend *be = NULL;
    rill_status st = backend_open("cuda", 0, &be);
    if (st == RILL_OK) {
        backend_close(be);
        skip(); // a GPU is present
    }
    assert_int_equal(st, RILL_EUNSUPPORTED);
    assert_non_null(strstr(rill_last_error(), "cuda"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_on_gpu_matches_cpu),
        cmocka_unit_test(test_mistral_on_gpu_matches_cpu),
        cmocka_unit_test(test_qwen2_on_gpu_matches_cpu),
        cmocka_unit_test(test_qwen3_on_gpu_matches_cpu),
        cmocka_unit_test(test_gemma3_on_gpu_matches_cpu),
        cmocka_unit_test(test_deepseek_v3_on_gpu_matches_cpu),
        cmocka_unit_test(test_llama_gguf_on_gpu_matches_cpu),
        cmocka_unit_test(test_4bit_decode_on_gpu_matches_cpu),
        cmocka_unit_test(test_4bit_large_down_on_gpu_matches_cpu),
        cmocka_unit_test(test_cuda_without_gpu_fails_with_a_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
