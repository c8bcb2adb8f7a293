// cpu.h: internal to the CPU backend. A stream is a compute thread that runs launched host
// programs in order and owns a worker pool; ops called on a stream run at once on the calling
// thread, using the stream's pool for their parallel loops. Activations are f32.
#pragma once
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "base/half.h"

#include "backend/backend.h"
#include "base/threadpool.h"

#define CPU_MAX_THREADS 256

// Kernel paths (cpu_matmul*.c); the tests force each one the build can run.
// CPU_PATH_VNNI: the AVX2 kernels, with the 4-bit int8 dots through VNNI's dpbusd (AVX512-VNNI with
// AVX512VL, or AVX-VNNI), when the build targets a CPU that has it.
enum { CPU_PATH_SCALAR = 0, CPU_PATH_AVX2 = 1, CPU_PATH_VNNI = 2 };

typedef struct {
    int n_threads; // threads per stream, the compute thread included
    bool int8;     // decode-sized affine matmuls quantize activations to int8 (default; RILL_CPU_MATMUL=f32: off)
    int q8_path;   // CPU_PATH_* of the int8 kernels (the best the build has)
    int q8_planes; // int8 planes per activation: 2 (default: ~15 bits) or 1 (RILL_CPU_MATMUL=int8: llama.cpp's)
    int gemm_path; // CPU_PATH_* of the f32 matmul used for prefill (the best the build has)
} cpu_backend;

typedef struct {
    void (*fn)(void *arg);
    void *arg;
} cpu_task;

struct rill_stream {
    rill_backend *be;
    threadpool *pool;
    pthread_t thread; // the compute thread
    pthread_mutex_t mu;
    pthread_cond_t changed;
    cpu_task *queue; // [cap] ring of launched programs
    int cap, head, count;
    uint64_t submitted, completed; // programs launched and finished
    int stop;
    // Per-thread scratch of the ops (grow-only): [n_threads] blocks of scratch_floats[i] floats.
    float *scratch[CPU_MAX_THREADS];
    size_t scratch_floats[CPU_MAX_THREADS];
};

struct rill_event {
    rill_stream *s;
    uint64_t seq; // the stream has passed the mark when completed >= seq
};

// Called at the start of every op: when the caller is not the stream's compute thread, waits until
// the stream has drained, so that ops keep stream order.
void cpu_enter(rill_stream *s);
// Scratch of at least n floats for pool thread `thread` (NULL on allocation failure, which the
// ops treat as fatal: scratch is sized by the op's own shapes).
float *cpu_scratch(rill_stream *s, int thread, size_t n);

// The ops (cpu_ops.c, cpu_matmul.c, cpu_attention.c).
void cpu_embed(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale);
void cpu_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w);
void cpu_rmsnorm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const float *w, float eps, bool add_one);
void cpu_rope(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p);
void cpu_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k, const rill_tensor *v,
                   const rill_attn_params *p);
void cpu_attention_q(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                     const rill_attn_params *p); // cpu_attention_q.c
void cpu_kv_quantize(rill_stream *s, rill_qkv *out, const rill_tensor *x);
void cpu_act_mul(rill_stream *s, rill_tensor *out, const rill_tensor *gate, const rill_tensor *up, rill_act act);
void cpu_add(rill_stream *s, rill_tensor *out, const rill_tensor *a, const rill_tensor *b);
void cpu_scale(rill_stream *s, rill_tensor *out, const rill_tensor *x, float scale);
void cpu_softcap(rill_stream *s, rill_tensor *out, const rill_tensor *x, float cap);
void cpu_copy(rill_stream *s, rill_tensor *out, const rill_tensor *x);
void cpu_moe_route(rill_stream *s, rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits, const float *bias,
                   const rill_moe_params *p);
void cpu_moe_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *experts,
                    const rill_tensor *idx);
void cpu_moe_combine(rill_stream *s, rill_tensor *out, const rill_tensor *y, const rill_tensor *weights);

// Value i of a scale/bias array of dtype F32, F16 or BF16.
static inline float cpu_scalar(rill_dtype dt, const void *p, int64_t i) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (dt == DTYPE_BF16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return f16_to_f32(h);
}

// The int8-activation matmul (cpu_matmul_q8.c) on 4-bit (cols % 64 == 0) or 8-bit affine weights
// with groups of 32k: up to 4 tokens, or, with one plane, any number for weights with llama.cpp's
// activation rounding (w->act_quant, groups of 32); false when it does not handle the case.
bool cpu_matmul_q8(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w, int path);
bool cpu_q8_supports(const rill_weight *w);
// True for an 8-bit weight whose codes cpu_weight_load widened from 2-6 bits (so they are < 64):
// the only storage the CPU's weight_load makes, and so the only weights with `owned` set.
static inline bool cpu_codes_widened(const rill_weight *w) { return w->owned != NULL; }
int cpu_q8_best_path(void);
int cpu_gemm_best_path(void);
// The prefill matmul (cpu_gemm.c): exact f32 GEMM on AVX2 + FMA builds; false without them.
bool cpu_gemm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w);

// n values of dtype F32, F16 or BF16 as f32 (F16C/AVX2 when compiled for them).
void cpu_to_f32(rill_dtype dt, const void *data, int64_t n, float *out);
// Row `row` of w as f32 into out [w->cols] (vectorized for dense and 4/8-bit affine).
void cpu_weight_row(const rill_weight *w, int64_t row, float *out);
// sum_i a[i] * b[i] in f32 (AVX2 + FMA when compiled for it).
float cpu_dot(const float *a, const float *b, int64_t n);
// out[k] = w . x[k * x_stride ..] for k < 4 (four tokens against one weight row).
void cpu_dot4(const float *w, const float *x, int64_t x_stride, int64_t n, float out[4]);
// y[i] += a * x[i]
void cpu_axpy(float *y, float a, const float *x, int64_t n);

// The key rows [*lo, *hi] that query row i sees under p's mask (causal, and the sliding window when
// set) in a cache of `rows` rows; empty when *hi < *lo. Shared by every CPU attention kernel.
static inline void cpu_attn_visible(const rill_attn_params *p, int64_t i, int64_t rows, int64_t *lo, int64_t *hi) {
    int64_t qp = p->mask.q_pos0 + i;
    *hi = qp - p->mask.k_pos0;
    if (*hi > rows - 1) *hi = rows - 1;
    *lo = 0;
    if (p->mask.window > 0 && qp - p->mask.window + 1 - p->mask.k_pos0 > 0)
        *lo = qp - p->mask.window + 1 - p->mask.k_pos0;
}
