// cpu_matmul_q8.c: DESIGN.md's CPU matmul on affine weights, for decode-sized inputs (a few
// tokens): activations quantized per block of 32 to int8 (x ~ d * q1, d = amax / 127), integer
// dot products against the weight codes, the affine bias added through exact f32 sums of x per
// group, accumulation in f32. Weight codes are used in place (the mapped file).
// Two planes (the default): the rounding residual is quantized again, x ~ d * q1 + d / 254 * q2
// (|x - d q1| <= d / 2, so q2 fits in int8), and the integer sums combine as 254 * s1 + s2: about
// 15 bits of activation precision (logits within ~1e-4 instead of ~1e-2) for two more maddubs per
// 32 codes; decode reads the weights from DRAM either way. One plane: RILL_CPU_MATMUL=int8.
// - 4-bit: byte j of a 64-element chunk holds elements 2j (low nibble) and 2j+1 (high). The
//   activations are stored de-interleaved to match ([evens][odds] per chunk), so the codes need
//   only a mask and a shift: maddubs(lo, x_even) + maddubs(hi, x_odd).
// - 8-bit, one plane: codes recentred to signed (q - 128; the bias absorbs 128 * scale), sign trick
//   for maddubs; codes the backend widened from 2-6 bits are < 128 already and stay as they are
//   (recentring them would only lose precision to the cancellation). 8-bit with the default
//   precision: the activations are one plane of int16 codes
//   (x ~ d * q, d = amax / 32767: the two int8 planes' ~15 bits), multiplied with the unsigned codes
//   widened to int16 by madd: 10 instructions per 32 weights instead of the two planes' 18.
// Paths: AVX2 (maddubs), VNNI (the 4-bit dots through dpbusd: 4 products summed into an int32 lane
// in one instruction, where AVX2 needs maddubs, add and madd) and scalar; all give the same
// integers, so the same result up to f32 summation order. The scalar path is the fallback and the
// one the tests compare the others against.
// One plane on weights from GGUF Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 blocks (w->act_quant) rounds as llama.cpp
// does: d rounded to f16 in the products, and the bias term through the block sums llama.cpp keeps,
// f16(d * sum q) for Q8_1 and f16(d) * sum q for Q8_0; for any number of tokens (prefill too).
// Each dot then equals llama.cpp's vec_dot up to f32 summation order (checked against its
// libggml-cpu through ctypes: within 1 ulp). Not the default: docs/performance.md shows why.
#include <math.h>

#include "backend/cpu/cpu.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define Q8_AVX2 1
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#define Q8_VNNI 1
#endif
#endif

#define QB               32   // activation block
#define ROW_TASK         16   // output rows whose scales are converted together
#define PREFETCH_AHEAD   2048 // bytes past a row's codes that are prefetched as the row starts
#define TASKS_PER_THREAD 6    // a matmul's rows are split into about this many tasks per thread
#define MAX_NT           4    // tokens dotted against one weight row at a time
#define TOK_CHUNK        16   // tokens run over a task's rows before the next ones (activations stay in L1)

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_weight *w;
    int64_t n_tok;
    int path, planes;
    bool wide;         // 8-bit weights at the default precision: qx holds int16 codes, one plane
    int centre;        // 8-bit codes with int8 planes: 128 (recentred to signed), or 0 (widened codes < 128)
    const int8_t *qx;  // [n_tok][planes][cols] codes (4-bit: de-interleaved per 64); wide: int16 [n_tok][cols]
    const float *dx;   // [n_tok][cols / 32] scale of the combined integer (d, or d / 254 with 2 planes)
    const float *dx4;  // [n_tok][cols / 32 * 4] the same, each 4 times (the AVX2 4-bit lanes)
    const float *xsum; // [n_tok][cols / group_size] sums of x per weight group (exact, or llama.cpp's)
    int64_t rows_per_task;
} q8_job;

bool cpu_q8_supports(const rill_weight *w) {
    if (w->kind != WEIGHT_AFFINE || w->cols % QB) return false;
    if (w->bits == 4) return w->group_size % QB == 0 && w->cols % 64 == 0;
    return w->bits == 8 && (w->group_size % QB == 0 || w->group_size == 16); // 16: int16 activations only
}

// ---- activation quantization ----

// Block of 32 -> plane codes q1 (and q2: the residual) in element order; returns the block's d.
// fmaf and the vector fnmadd round the residual once, so both paths give the same integers.
// (d = amax / 127 and codes round(x * 127 / amax), ties to even: llama.cpp's Q8_0/Q8_1 as well.)
static float quant_block(const float *x, int32_t *q1, int32_t *q2) {
    float amax = 0;
    for (int i = 0; i < QB; i++)
        amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, inv = d > 0 ? 127.0f / amax : 0.0f, inv2 = d > 0 ? 254.0f / d : 0.0f;
    for (int i = 0; i < QB; i++) {
        q1[i] = (int32_t)lrintf(x[i] * inv);
        if (q2) {
            long r = lrintf(fmaf(-(float)q1[i], d, x[i]) * inv2);
            q2[i] = (int32_t)(r > 127 ? 127 : r < -127 ? -127 : r);
        }
    }
    return d;
}

// One plane of 64 (4-bit: de-interleaved [evens][odds]) or 32 codes into qx.
static void put_codes(const int32_t *q, int n, int bits, int8_t *qx) {
    if (bits == 4 && n == 64)
        for (int j = 0; j < 32; j++)
            qx[j] = (int8_t)q[2 * j], qx[32 + j] = (int8_t)q[2 * j + 1];
    else
        for (int i = 0; i < n; i++)
            qx[i] = (int8_t)q[i];
}

// Quantizes one row: codes into qx, each block's d into dx (d / 254 with 2 planes) and the sum of
// its first-plane codes into qs [cols / 32].
static void quant_row_scalar(const float *x, int64_t cols, int bits, int planes, int8_t *qx, float *dx, int32_t *qs) {
    for (int64_t c = 0; c < cols; c += 64) {
        int32_t q1[64], q2[64];
        int nb = cols - c >= 64 ? 2 : 1;
        for (int b = 0; b < nb; b++) {
            float d = quant_block(x + c + b * QB, q1 + b * QB, planes == 2 ? q2 + b * QB : NULL);
            dx[c / QB + b] = planes == 2 ? d / 254.0f : d;
            int32_t sum = 0;
            for (int i = 0; i < QB; i++)
                sum += q1[b * QB + i];
            qs[c / QB + b] = sum;
        }
        put_codes(q1, nb * QB, bits, qx + c);
        if (planes == 2) put_codes(q2, nb * QB, bits, qx + cols + c);
    }
}

// One row as int16 codes per block of 32 (d = amax / 32767 into dx), for 8-bit weights.
static void quant_row16_scalar(const float *x, int64_t cols, int16_t *q, float *dx) {
    for (int64_t c = 0; c < cols; c += QB) {
        float amax = 0;
        for (int i = 0; i < QB; i++)
            amax = fmaxf(amax, fabsf(x[c + i]));
        float inv = amax > 0 ? 32767.0f / amax : 0.0f;
        for (int i = 0; i < QB; i++) {
            long r = lrintf(x[c + i] * inv);
            q[c + i] = (int16_t)(r > 32767 ? 32767 : r < -32767 ? -32767 : r);
        }
        dx[c / QB] = amax / 32767.0f;
    }
}

#ifdef Q8_AVX2
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum_max8(__m256 m) { // the largest of 8 lanes
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static inline __m256i pack32(const __m256i q[4]) { // 4 x 8 int32 -> 32 int8 in element order
    __m256i ab = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(ab, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// 32 floats -> plane codes in element order (*c2 only with 2 planes) and the sum of the first
// plane's codes (*qs); returns the block's d.
static inline float quant32(const float *x, __m256i *c1, __m256i *c2, int32_t *qs) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4], m = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
    }
    float amax = hsum_max8(m), d = amax / 127.0f;
    __m256 inv = _mm256_set1_ps(d > 0 ? 127.0f / amax : 0.0f), inv2 = _mm256_set1_ps(d > 0 ? 254.0f / d : 0.0f);
    __m256 vd = _mm256_set1_ps(d);
    __m256i q[4], r[4];
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    for (int k = 0; k < 4; k++) {
        q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], inv)); // nearest even, like lrintf
        if (c2) {
            __m256 res = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(q[k]), vd, v[k]);
            r[k] = _mm256_max_epi32(nlim, _mm256_min_epi32(lim, _mm256_cvtps_epi32(_mm256_mul_ps(res, inv2))));
        }
    }
    *c1 = pack32(q);
    if (c2) *c2 = pack32(r);
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i h4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    h4 = _mm_add_epi32(h4, _mm_shuffle_epi32(h4, 0x4e));
    *qs = _mm_cvtsi128_si32(_mm_add_epi32(h4, _mm_shuffle_epi32(h4, 0xb1)));
    return d;
}

// Two blocks of codes (elements 0..63) -> [evens][odds] as the 4-bit kernel reads them.
static inline void deinterleave_store(__m256i v0, __m256i v1, int8_t *qx) {
    const __m256i deint = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12,
                                           14, 1, 3, 5, 7, 9, 11, 13, 15);
    // per 128-bit lane [evens | odds], then qwords [ev lo, ev hi, od lo, od hi]
    v0 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v0, deint), 0xD8);
    v1 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v1, deint), 0xD8);
    _mm256_storeu_si256((__m256i *)qx, _mm256_permute2x128_si256(v0, v1, 0x20));
    _mm256_storeu_si256((__m256i *)(qx + 32), _mm256_permute2x128_si256(v0, v1, 0x31));
}

static void quant_row_avx2(const float *x, int64_t cols, int bits, int planes, int8_t *qx, float *dx, int32_t *qs) {
    if (bits == 4)
        for (int64_t c = 0; c + 64 <= cols; c += 64) {
            __m256i a1, a2 = _mm256_setzero_si256(), b1, b2 = _mm256_setzero_si256();
            float da = quant32(x + c, &a1, planes == 2 ? &a2 : NULL, qs + c / QB);
            float db = quant32(x + c + 32, &b1, planes == 2 ? &b2 : NULL, qs + c / QB + 1);
            dx[c / QB] = planes == 2 ? da / 254.0f : da;
            dx[c / QB + 1] = planes == 2 ? db / 254.0f : db;
            deinterleave_store(a1, b1, qx + c);
            if (planes == 2) deinterleave_store(a2, b2, qx + cols + c);
        }
    else
        for (int64_t c = 0; c + 32 <= cols; c += 32) {
            __m256i a1, a2 = _mm256_setzero_si256();
            float d = quant32(x + c, &a1, planes == 2 ? &a2 : NULL, qs + c / QB);
            dx[c / QB] = planes == 2 ? d / 254.0f : d;
            _mm256_storeu_si256((__m256i *)(qx + c), a1);
            if (planes == 2) _mm256_storeu_si256((__m256i *)(qx + cols + c), a2);
        }
}

static void quant_row16_avx2(const float *x, int64_t cols, int16_t *q, float *dx) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t c = 0; c < cols; c += QB) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + c + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        float amax = hsum_max8(m);
        __m256 inv = _mm256_set1_ps(amax > 0 ? 32767.0f / amax : 0.0f);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], inv)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], inv));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], inv)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], inv));
        // packs works per 128-bit lane: [0-3, 8-11, 4-7, 12-15] -> element order by qwords 0, 2, 1, 3
        _mm256_storeu_si256((__m256i *)(q + c), _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8));
        _mm256_storeu_si256((__m256i *)(q + c + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(i2, i3), 0xD8));
        dx[c / QB] = amax / 32767.0f;
    }
}

// One row of 8-bit codes against NT tokens of int16 codes: codes widened to int16, madd, per block
// one convert and one FMA with the product of the two scales.
// G16: groups of 16 (ws [blocks * 2]: each half of a 32-block has its own scale).
static inline __attribute__((always_inline)) void row16(const q8_job *j, const uint8_t *p, const float *ws,
                                                        int64_t cols, int64_t t0, float *res, const int NT,
                                                        const int G16) {
    int64_t blocks = cols / QB;
    __m256 acc[MAX_NT];
    for (int t = 0; t < NT; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m256i w0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + b * QB)));
        __m256i w1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + b * QB + 16)));
        for (int t = 0; t < NT; t++) {
            const int16_t *qx = (const int16_t *)j->qx + (t0 + t) * cols + b * QB;
            __m256i s0 = _mm256_madd_epi16(w0, _mm256_loadu_si256((const __m256i *)qx));
            __m256i s1 = _mm256_madd_epi16(w1, _mm256_loadu_si256((const __m256i *)(qx + 16)));
            float d = j->dx[(t0 + t) * blocks + b];
            if (G16) {
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(ws[2 * b] * d), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(ws[2 * b + 1] * d), acc[t]);
            } else
                acc[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(ws[b] * d), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        res[t] = hsum8(acc[t]);
}

#ifdef Q8_VNNI
static inline __m256i dpbusd(__m256i acc, __m256i u8, __m256i s8) { // acc += 4-byte dot products
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u8, s8);
#else
    return _mm256_dpbusd_avx_epi32(acc, u8, s8);
#endif
}
#endif

// One row of 4-bit codes against NT tokens from token t0. ws: [blocks] the weight scale of each 32-block.
// VNNI: the integer dots through dpbusd (the same int32 lanes: lane k sums bytes 4k..4k+3 of the low
// and the high nibbles), else maddubs + madd.
static inline __attribute__((always_inline)) void row4(const q8_job *j, const uint8_t *p, const float *ws, int64_t cols,
                                                       int64_t t0, float *res, const int NT, const int PL,
                                                       const int VNNI) {
    const __m256i m = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1), k254 = _mm256_set1_epi16(254);
    int64_t blocks = cols / QB;
    (void)VNNI; // builds without VNNI have only the maddubs form
    __m256 acc[MAX_NT];
    for (int t = 0; t < NT; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t e = 0; e < cols; e += 64) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + e / 2));
        __m256i lo = _mm256_and_si256(v, m), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m);
        __m256 wv = _mm256_set_m128(_mm_broadcast_ss(ws + e / 32 + 1), _mm_broadcast_ss(ws + e / 32));
        for (int t = 0; t < NT; t++) {
            const int8_t *qx = j->qx + (t0 + t) * PL * cols + e;
            __m256i s32;
#ifdef Q8_VNNI
            if (VNNI) {
                const __m256i z = _mm256_setzero_si256();
                s32 = dpbusd(dpbusd(z, lo, _mm256_loadu_si256((const __m256i *)qx)), hi,
                             _mm256_loadu_si256((const __m256i *)(qx + 32)));
                if (PL == 2) { // 254 * s1 + s2: |s1| <= 64 * 15 * 127, so the product fits in int32
                    const int8_t *q2 = qx + cols;
                    __m256i r32 = dpbusd(dpbusd(z, lo, _mm256_loadu_si256((const __m256i *)q2)), hi,
                                         _mm256_loadu_si256((const __m256i *)(q2 + 32)));
                    s32 = _mm256_add_epi32(_mm256_mullo_epi32(s32, _mm256_set1_epi32(254)), r32);
                }
            } else
#endif
            {
                __m256i s16 =
                    _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)qx)),
                                     _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(qx + 32))));
                if (PL == 2) {
                    const int8_t *q2 = qx + cols;
                    __m256i r16 =
                        _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)q2)),
                                         _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q2 + 32))));
                    s32 = _mm256_add_epi32(_mm256_madd_epi16(s16, k254), _mm256_madd_epi16(r16, ones));
                } else
                    s32 = _mm256_madd_epi16(s16, ones);
            }
            __m256 sc = _mm256_mul_ps(wv, _mm256_loadu_ps(j->dx4 + (t0 + t) * blocks * 4 + e / 8));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), sc, acc[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        res[t] = hsum8(acc[t]);
}

// One row of 8-bit codes against NT tokens from token t0. ws: [blocks] the weight scale of each block.
static inline __attribute__((always_inline)) void row8(const q8_job *j, const uint8_t *p, const float *ws, int64_t cols,
                                                       int64_t t0, float *res, const int NT, const int PL) {
    const __m256i ones = _mm256_set1_epi16(1), k254 = _mm256_set1_epi16(254);
    const __m256i flip = _mm256_set1_epi8(j->centre ? (char)0x80 : 0);
    int64_t blocks = cols / QB;
    __m256 acc[MAX_NT];
    for (int t = 0; t < NT; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; b++) {
        __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + b * QB)), flip);
        __m256i aq = _mm256_sign_epi8(q, q);
        for (int t = 0; t < NT; t++) {
            const int8_t *qx = j->qx + (t0 + t) * PL * cols + b * QB;
            __m256i x = _mm256_loadu_si256((const __m256i *)qx);
            __m256i s16 = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(x, q)), s32;
            if (PL == 2) {
                __m256i x2 = _mm256_loadu_si256((const __m256i *)(qx + cols));
                s32 = _mm256_add_epi32(_mm256_madd_epi16(s16, k254),
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(x2, q)), ones));
            } else
                s32 = _mm256_madd_epi16(s16, ones);
            acc[t] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_set1_ps(ws[b] * j->dx[(t0 + t) * blocks + b]), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++)
        res[t] = hsum8(acc[t]);
}
#endif

// sum a[i] * b[i] over a short vector (a row's groups): 8 lanes and two accumulators, so the sum
// is not one chain of dependent adds. Inline, unlike cpu_dot: the call per row cost 3-6% of a
// matmul (same-process A/B, 2026-11-26).
static inline float dot_f32(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float r = 0;
#ifdef Q8_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= n) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0), i += 8;
    r = hsum8(_mm256_add_ps(s0, s1));
#else
    float s[4] = {0, 0, 0, 0};
    for (; i + 4 <= n; i += 4)
        for (int k = 0; k < 4; k++)
            s[k] += a[i + k] * b[i + k];
    r = (s[0] + s[2]) + (s[1] + s[3]);
#endif
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

// Scalar: the same integer sums, block by block.
static void row_scalar(const q8_job *j, const uint8_t *p, const float *ws, int64_t cols, int64_t t0, int nt,
                       float *res) {
    int bits = j->w->bits, PL = j->planes;
    int64_t blocks = cols / QB;
    for (int64_t t = t0; t < t0 + nt; t++) {
        float acc = 0;
        for (int64_t b = 0; b < blocks; b++) {
            int32_t isum = 0;
            if (j->wide) { // unsigned codes times int16 codes: |sum| <= 32 * 255 * 32767 < 2^31
                const int16_t *qx = (const int16_t *)j->qx + t * cols + b * QB;
                int32_t half[2] = {0, 0};
                for (int i = 0; i < QB; i++)
                    half[i / 16] += (int32_t)p[b * QB + i] * qx[i];
                float d = j->dx[t * blocks + b];
                if (j->w->group_size == 16) // each half of the block has its own scale
                    acc += (float)half[0] * (ws[2 * b] * d) + (float)half[1] * (ws[2 * b + 1] * d);
                else
                    acc += (float)(half[0] + half[1]) * (ws[b] * d);
                continue;
            }
            for (int pl = 0; pl < PL; pl++) {
                const int8_t *qx = j->qx + t * PL * cols + pl * cols;
                int32_t s1 = 0;
                if (bits == 4) { // chunk c = b / 2 holds bytes [32c, 32c + 32); this block is its half b % 2
                    int64_t c = b / 2 * 64;
                    for (int k = 0; k < 16; k++) {
                        int jj = (int)(b % 2) * 16 + k;
                        uint8_t byte = p[c / 2 + jj];
                        s1 += (byte & 15) * qx[c + jj] + (byte >> 4) * qx[c + 32 + jj];
                    }
                } else
                    for (int i = 0; i < QB; i++)
                        s1 += ((int)p[b * QB + i] - j->centre) * qx[b * QB + i];
                isum += PL == 2 && pl == 0 ? 254 * s1 : s1;
            }
            acc += (float)isum * (ws[b] * j->dx[t * blocks + b]);
        }
        res[t - t0] = acc;
    }
}

// res [nt] = the integer-dot part of one row against tokens t0 .. t0 + nt - 1 (nt <= MAX_NT).
static void row_dots(const q8_job *j, const uint8_t *p, const float *ws, int64_t t0, int nt, float *res) {
    int64_t cols = j->w->cols;
#ifdef Q8_AVX2
    if (j->path >= CPU_PATH_AVX2) {
        bool g16 = j->w->group_size == 16;
#define row4_avx2(j, p, ws, cols, t0, res, NT, PL) row4(j, p, ws, cols, t0, res, NT, PL, 0)
#define row4_vnni(j, p, ws, cols, t0, res, NT, PL) row4(j, p, ws, cols, t0, res, NT, PL, 1)
// the row kernel instantiated for this token count (1..MAX_NT) and plane count (1, 2)
#define ROW_DOTS(ROW)                                                                                                  \
    switch (nt * 2 + j->planes - 1) {                                                                                  \
    case 2: ROW(j, p, ws, cols, t0, res, 1, 1); break;                                                                 \
    case 3: ROW(j, p, ws, cols, t0, res, 1, 2); break;                                                                 \
    case 4: ROW(j, p, ws, cols, t0, res, 2, 1); break;                                                                 \
    case 5: ROW(j, p, ws, cols, t0, res, 2, 2); break;                                                                 \
    case 6: ROW(j, p, ws, cols, t0, res, 3, 1); break;                                                                 \
    case 7: ROW(j, p, ws, cols, t0, res, 3, 2); break;                                                                 \
    case 8: ROW(j, p, ws, cols, t0, res, 4, 1); break;                                                                 \
    default: ROW(j, p, ws, cols, t0, res, 4, 2); break;                                                                \
    }
        if (j->wide) {
            switch (nt) {
            case 1: g16 ? row16(j, p, ws, cols, t0, res, 1, 1) : row16(j, p, ws, cols, t0, res, 1, 0); break;
            case 2: g16 ? row16(j, p, ws, cols, t0, res, 2, 1) : row16(j, p, ws, cols, t0, res, 2, 0); break;
            case 3: g16 ? row16(j, p, ws, cols, t0, res, 3, 1) : row16(j, p, ws, cols, t0, res, 3, 0); break;
            default: g16 ? row16(j, p, ws, cols, t0, res, 4, 1) : row16(j, p, ws, cols, t0, res, 4, 0); break;
            }
        }
#ifdef Q8_VNNI
        else if (j->w->bits == 4 && j->path == CPU_PATH_VNNI)
            ROW_DOTS(row4_vnni)
#endif
        else if (j->w->bits == 4)
            ROW_DOTS(row4_avx2)
        else
            ROW_DOTS(row8)
#undef ROW_DOTS
#undef row4_avx2
#undef row4_vnni
        return;
    }
#endif
    row_scalar(j, p, ws, cols, t0, nt, res);
}

// Output rows [o0, o1) (at most ROW_TASK) for every token.
static void q8_rows(q8_job *j, int64_t o0, int64_t o1, int thread) {
    const rill_weight *w = j->w;
    int bits = w->bits;
    int64_t cols = w->cols, gs = w->group_size, groups = cols / gs, blocks = cols / QB;
    // the task's rows (contiguous in the weight, so converted in one pass each): scales as f32
    // [rows][groups] (in place when they are f32), the coefficients of the sums of x [rows][groups]
    // (the biases; bias + 128 * scale for 8-bit codes recentred to signed), the scale of each
    // 32-block [rows][blocks]
    int64_t nr = o1 - o0, ng = nr * groups;
    float *buf = cpu_scratch(j->s, thread, (size_t)((groups * 2 + blocks) * ROW_TASK + 16));
    size_t es = dtype_size(w->dtype);
    const float *sc = (const float *)w->scales + o0 * groups, *bc = (const float *)w->biases + o0 * groups, *ws;
    if (w->dtype != DTYPE_F32) {
        cpu_to_f32(w->dtype, (const char *)w->scales + (size_t)(o0 * groups) * es, ng, buf);
        sc = buf;
    }
    bool recentred = bits == 8 && j->centre;
    if (w->dtype != DTYPE_F32 || recentred) {
        float *bias = buf + ROW_TASK * groups;
        cpu_to_f32(w->dtype, (const char *)w->biases + (size_t)(o0 * groups) * es, ng, bias);
        if (recentred)
            for (int64_t g = 0; g < ng; g++)
                bias[g] += 128.0f * sc[g];
        bc = bias;
    }
    // each 32-block's scale (the scales themselves for groups of 32; for groups of 16, which only the
    // int16 kernel takes, each 16-block's: the scales themselves). (Tried: each 4 times, so that
    // the 4-bit kernel loads its two scales as one vector: the scalar expansion cost more than the
    // broadcasts it saved, 1.3-2x slower on [1536 x 576].)
    ws = sc;
    if (gs > QB) {
        float *e = buf + 2 * ROW_TASK * groups;
        int64_t n = gs / QB; // copies of each group's scale
        for (int64_t g = 0; g < ng; g++)
            for (int64_t k = 0; k < n; k++)
                e[g * n + k] = sc[g];
        ws = e;
    }
    float *out = j->out->data;
    for (int64_t c0 = 0; c0 < j->n_tok; c0 += TOK_CHUNK) {
        int64_t c1 = c0 + TOK_CHUNK < j->n_tok ? c0 + TOK_CHUNK : j->n_tok;
        for (int64_t o = o0; o < o1; o++) {
            int r = (int)(o - o0);
            const uint8_t *p = (const uint8_t *)(w->packed + o * (cols * bits / 32));
            float b = w->bias ? w->bias[o] : 0.0f;
#ifdef Q8_AVX2
            // the codes PREFETCH_AHEAD bytes on, one row's worth: the hardware prefetcher alone lets a
            // thread stream a cold [49152 x 576] 8-bit weight at ~2/3 of the rate of plain loads
            // (same-process A/B: 0.77-0.82x the time with it; 1024 / 4096 / 8192 bytes measured worse
            // or equal; 4-bit weights 0.97-1.0x)
            if (c0 == 0)
                for (int64_t off = 0; off < cols * bits / 8; off += 64)
                    _mm_prefetch((const char *)p + PREFETCH_AHEAD + off, _MM_HINT_T0);
#endif
            for (int64_t t0 = c0; t0 < c1; t0 += MAX_NT) {
                int nt = c1 - t0 < MAX_NT ? (int)(c1 - t0) : MAX_NT;
                float res[MAX_NT];
                row_dots(j, p, ws + r * (gs == 16 ? groups : blocks), t0, nt, res);
                for (int t = 0; t < nt; t++) // the affine bias through the sums of x
                    out[(t0 + t) * j->out->stride + o] =
                        res[t] + dot_f32(bc + r * groups, j->xsum + (t0 + t) * groups, groups) + b;
            }
        }
    }
}

// A task is a contiguous range of rows_per_task rows (a multiple of ROW_TASK): few tasks, so that
// claiming one costs little next to its work (a 16-row task of SmolLM2 is ~1 us), and each thread
// streams long runs of the weight, which the hardware prefetcher follows.
static void q8_task(void *arg, int task, int thread) {
    q8_job *j = arg;
    int64_t a = (int64_t)task * j->rows_per_task,
            b = a + j->rows_per_task < j->w->rows ? a + j->rows_per_task : j->w->rows;
    for (int64_t o = a; o < b; o += ROW_TASK)
        q8_rows(j, o, o + ROW_TASK < b ? o + ROW_TASK : b, thread);
}

int cpu_q8_best_path(void) {
#if defined(Q8_VNNI)
    return CPU_PATH_VNNI;
#elif defined(Q8_AVX2)
    return CPU_PATH_AVX2;
#else
    return CPU_PATH_SCALAR;
#endif
}

bool cpu_matmul_q8(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w, int path) {
    int planes = ((cpu_backend *)s->be->impl)->q8_planes == 1 ? 1 : 2;
    bool ggml = planes == 1 && w->act_quant != ACT_QUANT_NONE && w->group_size == QB;
    bool wide = planes == 2 && w->bits == 8; // int16 activations, the only kernel for groups of 16
    if (!cpu_q8_supports(w) || (!ggml && x->rows > MAX_NT) || (w->group_size % QB && !wide)) return false;
#ifndef Q8_AVX2
    path = CPU_PATH_SCALAR;
#endif
    int64_t n = x->rows, cols = w->cols, blocks = cols / QB, groups = cols / w->group_size;
    // one scratch block: codes, block scales (once and 4 times), group sums, code sums
    size_t floats =
        (size_t)(n * planes * cols) / 4 + 1 + (size_t)(n * blocks) * 5 + (size_t)(n * groups) + (size_t)blocks;
    float *buf = cpu_scratch(s, CPU_MAX_THREADS - 1, floats);
    int8_t *qx = (int8_t *)buf;
    float *dx = buf + (size_t)(n * planes * cols) / 4 + 1, *dx4 = dx + n * blocks, *xsum = dx4 + n * blocks * 4;
    int32_t *qs = (int32_t *)(xsum + n * groups);
    for (int64_t t = 0; t < n; t++) {
        const float *xr = (const float *)x->data + t * x->stride;
        float *d = dx + t * blocks, *xs = xsum + t * groups;
        int16_t *q16 = (int16_t *)qx + t * cols; // wide: the same bytes as two int8 planes
#ifdef Q8_AVX2
        if (path >= CPU_PATH_AVX2)
            wide ? quant_row16_avx2(xr, cols, q16, d)
                 : quant_row_avx2(xr, cols, w->bits, planes, qx + t * planes * cols, d, qs);
        else
#endif
            wide ? quant_row16_scalar(xr, cols, q16, d)
                 : quant_row_scalar(xr, cols, w->bits, planes, qx + t * planes * cols, d, qs);
        if (ggml) // groups are the 32-blocks: llama.cpp's f16 scale and its rounded block sums
            for (int64_t b = 0; b < blocks; b++) {
                float dr = f16_to_f32(f32_to_f16(d[b]));
                xs[b] =
                    w->act_quant == ACT_QUANT_Q8_1 ? f16_to_f32(f32_to_f16(d[b] * (float)qs[b])) : dr * (float)qs[b];
                d[b] = dr;
            }
        else
            for (int64_t g = 0; g < groups; g++) { // exact f32 sums
                const float *xg = xr + g * w->group_size;
                float s8[8] = {0};
                for (int64_t i = 0; i < w->group_size; i += 8)
                    for (int k = 0; k < 8; k++)
                        s8[k] += xg[i + k];
                xs[g] = ((s8[0] + s8[4]) + (s8[1] + s8[5])) + ((s8[2] + s8[6]) + (s8[3] + s8[7]));
            }
        for (int64_t b = 0; b < blocks; b++)
            for (int k = 0; k < 4; k++)
                dx4[t * blocks * 4 + b * 4 + k] = d[b];
    }
    int centre = w->bits == 8 && !wide && !cpu_codes_widened(w) ? 128 : 0;
    q8_job j = {s, out, w, n, path, wide ? 1 : planes, wide, centre, qx, dx, dx4, xsum, 0};
    int64_t want = (int64_t)TASKS_PER_THREAD * threadpool_size(s->pool);
    j.rows_per_task = ((w->rows + want - 1) / want + ROW_TASK - 1) / ROW_TASK * ROW_TASK;
    threadpool_run(s->pool, (int)((w->rows + j.rows_per_task - 1) / j.rows_per_task), q8_task, &j);
    return true;
}
