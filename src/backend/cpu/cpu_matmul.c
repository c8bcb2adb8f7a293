// cpu_matmul.c: out[t][o] = x[t] . W[o] + bias[o] on the CPU, choosing a kernel by shape:
// - decode (up to 4 tokens), 4/8-bit affine: int8 activations, integer dots (cpu_matmul_q8.c);
//   with RILL_CPU_MATMUL=f32, the exact fused f32 kernel below instead;
// - with RILL_CPU_MATMUL=int8, weights from GGUF Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks at any number of
//   tokens: the one-plane int8 kernel with llama.cpp's activation rounding;
// - prefill (more tokens): the f32 GEMM of cpu_gemm.c (16-row panels, 6 x 16 register tiles),
//   exact to f32 rounding, so prefill logits match the reference (the issue-4 acceptance);
// - anything else: rows to f32, then dot products (also the scalar fallback).
#include "backend/cpu/cpu.h"
#include "backend/ref.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define CPU_AVX2 1
#endif

#define ROW_BLOCK  16 // output rows turned into f32 together
#define TOKEN_TILE 32 // tokens dotted against one row block at a time

#define FUSED_MAX_TOK 4 // up to this many tokens, 4- and 8-bit affine rows are dotted without a dequantized copy

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_tensor *x;
    const rill_weight *w;
    const float *xsum; // [n_tok][cols / group_size]: sums of x per group (fused path)
} matmul_job;

#ifdef CPU_AVX2
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 32 codes of a 4-bit (8 bytes per 16 codes) or 8-bit row as four vectors of 8 floats.
static inline void codes32(const uint8_t *p, int bits, __m256 q[4]) {
    if (bits == 4) {
        const __m128i m = _mm_set1_epi8(0x0f);
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
        __m128i a = _mm_unpacklo_epi8(lo, hi), c = _mm_unpackhi_epi8(lo, hi);
        q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a));
        q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
        q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
        q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(c, 8)));
    } else {
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8 * k))));
    }
}

// out[t] = sum_g s_g * (x_g . q_g) + b_g * xsum_g for one 4- or 8-bit row, groups multiples of 32.
// Inlined with a constant n_tok, so that the accumulators live in registers.
static inline __attribute__((always_inline)) void fused_row(const matmul_job *j, int64_t row, float *acc_out,
                                                            const int64_t n_tok) {
    const rill_weight *w = j->w;
    int64_t groups = w->cols / w->group_size, gs = w->group_size;
    int bits = w->bits;
    const uint8_t *p = (const uint8_t *)(w->packed + row * (w->cols * bits / 32));
    __m256 tot[FUSED_MAX_TOK];
    float bsum[FUSED_MAX_TOK];
    for (int64_t t = 0; t < n_tok; t++)
        tot[t] = _mm256_setzero_ps(), bsum[t] = 0;
    for (int64_t g = 0; g < groups; g++) {
        float sc = cpu_scalar(w->dtype, w->scales, row * groups + g);
        float bi = cpu_scalar(w->dtype, w->biases, row * groups + g);
        __m256 acc[FUSED_MAX_TOK];
        for (int64_t t = 0; t < n_tok; t++)
            acc[t] = _mm256_setzero_ps();
        for (int64_t i = 0; i < gs; i += 32) {
            __m256 q[4];
            codes32(p + (g * gs + i) * bits / 8, bits, q);
            __m256 q0 = q[0], q1 = q[1], q2 = q[2], q3 = q[3];
            for (int64_t t = 0; t < n_tok; t++) {
                const float *x = (const float *)j->x->data + t * j->x->stride + g * gs + i;
                __m256 s0 = _mm256_mul_ps(q0, _mm256_loadu_ps(x)), s1 = _mm256_mul_ps(q1, _mm256_loadu_ps(x + 8));
                s0 = _mm256_fmadd_ps(q2, _mm256_loadu_ps(x + 16), s0);
                s1 = _mm256_fmadd_ps(q3, _mm256_loadu_ps(x + 24), s1);
                acc[t] = _mm256_add_ps(acc[t], _mm256_add_ps(s0, s1));
            }
        }
        __m256 vs = _mm256_set1_ps(sc);
        for (int64_t t = 0; t < n_tok; t++) {
            tot[t] = _mm256_fmadd_ps(vs, acc[t], tot[t]);
            bsum[t] += bi * j->xsum[t * groups + g];
        }
    }
    for (int64_t t = 0; t < n_tok; t++)
        acc_out[t] = hsum8(tot[t]) + bsum[t];
}

static void fused_task(void *arg, int task, int thread) {
    matmul_job *j = arg;
    const rill_weight *w = j->w;
    int64_t o0 = (int64_t)task * ROW_BLOCK, n = w->rows - o0 < ROW_BLOCK ? w->rows - o0 : ROW_BLOCK;
    float r[FUSED_MAX_TOK];
    for (int64_t o = o0; o < o0 + n; o++) {
        switch (j->x->rows) {
        case 1: fused_row(j, o, r, 1); break;
        case 2: fused_row(j, o, r, 2); break;
        case 3: fused_row(j, o, r, 3); break;
        default: fused_row(j, o, r, 4); break;
        }
        float b = w->bias ? w->bias[o] : 0.0f;
        for (int64_t t = 0; t < j->x->rows; t++)
            ((float *)j->out->data)[t * j->out->stride + o] = r[t] + b;
    }
}
#endif

static void matmul_task(void *arg, int task, int thread) {
    matmul_job *j = arg;
    const rill_weight *w = j->w;
    int64_t o0 = (int64_t)task * ROW_BLOCK, n = w->rows - o0 < ROW_BLOCK ? w->rows - o0 : ROW_BLOCK;
    float *rows = cpu_scratch(j->s, thread, (size_t)(ROW_BLOCK * w->cols));
    for (int64_t r = 0; r < n; r++)
        cpu_weight_row(w, o0 + r, rows + r * w->cols);
    const float *x = j->x->data;
    float *out = j->out->data;
    for (int64_t t0 = 0; t0 < j->x->rows; t0 += TOKEN_TILE) {
        int64_t t1 = t0 + TOKEN_TILE < j->x->rows ? t0 + TOKEN_TILE : j->x->rows;
        for (int64_t r = 0; r < n; r++) {
            float b = w->bias ? w->bias[o0 + r] : 0.0f;
            int64_t t = t0;
            for (; t + 4 <= t1; t += 4) {
                float d[4];
                cpu_dot4(rows + r * w->cols, x + t * j->x->stride, j->x->stride, w->cols, d);
                for (int k = 0; k < 4; k++)
                    out[(t + k) * j->out->stride + o0 + r] = d[k] + b;
            }
            for (; t < t1; t++)
                out[t * j->out->stride + o0 + r] = cpu_dot(x + t * j->x->stride, rows + r * w->cols, w->cols) + b;
        }
    }
}

void cpu_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    cpu_enter(s);
    if (out->dtype != DTYPE_F32 || x->dtype != DTYPE_F32) {
        ref_matmul(out, x, w);
        return;
    }
    cpu_backend *cb = s->be->impl;
    // int8 activations: decode-sized inputs; with one plane, GGUF weights at any size (llama.cpp's rounding)
    if (cb->int8 && (x->rows <= FUSED_MAX_TOK || (cb->q8_planes == 1 && w->act_quant != ACT_QUANT_NONE)) &&
        cpu_matmul_q8(s, out, x, w, cb->q8_path))
        return;
    matmul_job j = {s, out, x, w, NULL};
    if (x->rows > FUSED_MAX_TOK && cb->gemm_path == CPU_PATH_AVX2 && cpu_gemm(s, out, x, w)) return;
#ifdef CPU_AVX2
    if (w->kind == WEIGHT_AFFINE && (w->bits == 4 || w->bits == 8) && w->group_size % 32 == 0 &&
        x->rows <= FUSED_MAX_TOK) {
        int64_t groups = w->cols / w->group_size;
        float *xs = cpu_scratch(s, 0, (size_t)(x->rows * groups));
        for (int64_t t = 0; t < x->rows; t++)
            for (int64_t g = 0; g < groups; g++) {
                const float *xg = (const float *)x->data + t * x->stride + g * w->group_size;
                float sum = 0;
                for (int64_t i = 0; i < w->group_size; i++)
                    sum += xg[i];
                xs[t * groups + g] = sum;
            }
        j.xsum = xs;
        threadpool_run(s->pool, (int)((w->rows + ROW_BLOCK - 1) / ROW_BLOCK), fused_task, &j);
        return;
    }
#endif
    threadpool_run(s->pool, (int)((w->rows + ROW_BLOCK - 1) / ROW_BLOCK), matmul_task, &j);
}
