// cpu_matmul_q8.c: DESIGN.md's CPU matmul on affine weights: activations quantized per block of 32
// to int8 (x ~ d * qx), integer dot products with AVX2 maddubs against the weight codes, the
// affine bias added through exact f32 activation sums per group, accumulation in f32. 4-bit
// codes are unsigned (0..15) and go straight into maddubs; 8-bit codes are recentred to signed
// (q - 128, the bias absorbing 128 * scale) and multiplied with the sign trick. Opt-in
// (RILL_CPU_MATMUL=int8) until its accuracy is settled: it trades ~1e-3 of logit error for speed.
#include <math.h>

#include "backend/cpu/cpu.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define QBLOCK 32

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_weight *w;
    int64_t n_tok;
    const int8_t *qx;  // [n_tok][cols] activation codes
    const float *dx;   // [n_tok][cols / 32] activation block scales
    const float *xsum; // [n_tok][cols / group_size] exact sums of x per weight group
} q8_job;

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// 32 weight codes as bytes in element order: 4-bit unsigned, or 8-bit recentred to signed.
static inline __m256i codes(const uint8_t *p, int bits) {
    if (bits == 8) return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)p), _mm256_set1_epi8((char)0x80));
    const __m128i m = _mm_set1_epi8(0x0f);
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    return _mm256_set_m128i(_mm_unpackhi_epi8(lo, hi), _mm_unpacklo_epi8(lo, hi));
}

// 8 partial i32 sums of codes . qx over 32 elements.
static inline __m256i idot(__m256i q, __m256i x, int bits) {
    __m256i prod =
        bits == 8 ? _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q)) : _mm256_maddubs_epi16(q, x);
    return _mm256_madd_epi16(prod, _mm256_set1_epi16(1));
}

static void q8_task(void *arg, int task, int thread) {
    q8_job *j = arg;
    const rill_weight *w = j->w;
    int bits = w->bits;
    int64_t gs = w->group_size, groups = w->cols / gs, blocks = w->cols / QBLOCK, bpg = gs / QBLOCK;
    int64_t o0 = (int64_t)task * 16, o1 = o0 + 16 < w->rows ? o0 + 16 : w->rows;
    for (int64_t o = o0; o < o1; o++) {
        const uint8_t *p = (const uint8_t *)(w->packed + o * (w->cols * bits / 32));
        for (int64_t t = 0; t < j->n_tok; t++) {
            const int8_t *qx = j->qx + t * w->cols;
            const float *dx = j->dx + t * blocks, *xs = j->xsum + t * groups;
            __m256 acc = _mm256_setzero_ps();
            float bsum = 0;
            for (int64_t g = 0; g < groups; g++) {
                float sc = cpu_scalar(w->dtype, w->scales, o * groups + g);
                float bi = cpu_scalar(w->dtype, w->biases, o * groups + g);
                if (bits == 8) bi += 128.0f * sc;
                __m256 gacc = _mm256_setzero_ps();
                for (int64_t b = 0; b < bpg; b++) {
                    int64_t blk = g * bpg + b;
                    __m256i q = codes(p + blk * QBLOCK * bits / 8, bits);
                    __m256i x = _mm256_loadu_si256((const __m256i *)(qx + blk * QBLOCK));
                    gacc = _mm256_fmadd_ps(_mm256_set1_ps(dx[blk]), _mm256_cvtepi32_ps(idot(q, x, bits)), gacc);
                }
                acc = _mm256_fmadd_ps(_mm256_set1_ps(sc), gacc, acc);
                bsum += bi * xs[g];
            }
            float b = w->bias ? w->bias[o] : 0.0f;
            ((float *)j->out->data)[t * j->out->stride + o] = hsum8(acc) + bsum + b;
        }
    }
}

bool cpu_matmul_q8(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    if (w->kind != WEIGHT_AFFINE || (w->bits != 4 && w->bits != 8) || w->group_size % QBLOCK) return false;
    int64_t n = x->rows, cols = w->cols, blocks = cols / QBLOCK, groups = cols / w->group_size;
    // one scratch block: codes, block scales, group sums
    size_t floats = (size_t)(n * cols) / 4 + 1 + (size_t)(n * blocks) + (size_t)(n * groups);
    float *buf = cpu_scratch(s, CPU_MAX_THREADS - 1, floats);
    int8_t *qx = (int8_t *)buf;
    float *dx = buf + (size_t)(n * cols) / 4 + 1, *xsum = dx + n * blocks;
    for (int64_t t = 0; t < n; t++) {
        const float *xr = (const float *)x->data + t * x->stride;
        for (int64_t b = 0; b < blocks; b++) {
            const float *xb = xr + b * QBLOCK;
            float amax = 0;
            for (int i = 0; i < QBLOCK; i++)
                amax = fmaxf(amax, fabsf(xb[i]));
            float d = amax / 127.0f, inv = d > 0 ? 1.0f / d : 0.0f;
            dx[t * blocks + b] = d;
            for (int i = 0; i < QBLOCK; i++)
                qx[t * cols + b * QBLOCK + i] = (int8_t)lrintf(xb[i] * inv);
        }
        for (int64_t g = 0; g < groups; g++) {
            float sum = 0;
            for (int64_t i = 0; i < w->group_size; i++)
                sum += xr[g * w->group_size + i];
            xsum[t * groups + g] = sum;
        }
    }
    q8_job j = {s, out, w, n, qx, dx, xsum};
    threadpool_run(s->pool, (int)((w->rows + 15) / 16), q8_task, &j);
    return true;
}
#else
bool cpu_matmul_q8(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) { return false; }
#endif
