// cpu_kernels.c: the inner loops the CPU ops share: dot, axpy, and one weight row to f32 (dense
// f32/f16/bf16; affine with fast 4- and 8-bit unpacking). AVX2 + FMA + F16C when the compiler
// targets them, plain C otherwise; both paths give the reference's values within rounding.
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/ref.h"
#include "base/half.h"
#include "quant/affine.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define CPU_AVX2 1
#endif

#ifdef CPU_AVX2
static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

float cpu_dot(const float *a, const float *b, int64_t n) {
    int64_t i = 0;
    float sum = 0;
#ifdef CPU_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    sum = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
#else
    float s[8] = {0};
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    for (int j = 0; j < 8; j++)
        sum += s[j];
#endif
    for (; i < n; i++)
        sum += a[i] * b[i];
    return sum;
}

void cpu_dot4(const float *w, const float *x, int64_t x_stride, int64_t n, float out[4]) {
    const float *x0 = x, *x1 = x + x_stride, *x2 = x + 2 * x_stride, *x3 = x + 3 * x_stride;
    int64_t i = 0;
    float s[4] = {0, 0, 0, 0};
#ifdef CPU_AVX2
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 wv = _mm256_loadu_ps(w + i);
        a0 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x0 + i), a0);
        a1 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x1 + i), a1);
        a2 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x2 + i), a2);
        a3 = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x3 + i), a3);
    }
    s[0] = hsum(a0), s[1] = hsum(a1), s[2] = hsum(a2), s[3] = hsum(a3);
#endif
    for (; i < n; i++)
        s[0] += w[i] * x0[i], s[1] += w[i] * x1[i], s[2] += w[i] * x2[i], s[3] += w[i] * x3[i];
    for (int k = 0; k < 4; k++)
        out[k] = s[k];
}

void cpu_axpy(float *y, float a, const float *x, int64_t n) {
    int64_t i = 0;
#ifdef CPU_AVX2
    __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
    for (; i < n; i++)
        y[i] += a * x[i];
}

// Codes q of one group of 4-bit values (32 * k elements, little-end first) scaled: out = s*q + b.
static void group4(const uint32_t *p, int n, float s, float b, float *out) {
    int i = 0;
#ifdef CPU_AVX2
    __m256 vs = _mm256_set1_ps(s), vb = _mm256_set1_ps(b);
    const __m128i m = _mm_set1_epi8(0x0f);
    for (; i + 32 <= n; i += 32) {
        __m128i v = _mm_loadu_si128((const __m128i *)((const uint8_t *)p + i / 2));
        __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
        __m128i a = _mm_unpacklo_epi8(lo, hi), c = _mm_unpackhi_epi8(lo, hi); // elements 0..15, 16..31
        __m128i parts[4] = {a, _mm_srli_si128(a, 8), c, _mm_srli_si128(c, 8)};
        for (int k = 0; k < 4; k++) {
            __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(parts[k]));
            _mm256_storeu_ps(out + i + 8 * k, _mm256_fmadd_ps(vs, q, vb));
        }
    }
#endif
    const uint8_t *bytes = (const uint8_t *)p;
    for (; i < n; i++)
        out[i] = s * (float)((bytes[i / 2] >> (4 * (i & 1))) & 15) + b;
}

static void group8(const uint32_t *p, int n, float s, float b, float *out) {
    const uint8_t *bytes = (const uint8_t *)p;
    int i = 0;
#ifdef CPU_AVX2
    __m256 vs = _mm256_set1_ps(s), vb = _mm256_set1_ps(b);
    for (; i + 8 <= n; i += 8) {
        __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(bytes + i))));
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(vs, q, vb));
    }
#endif
    for (; i < n; i++)
        out[i] = s * (float)bytes[i] + b;
}

void cpu_to_f32(rill_dtype dt, const void *data, int64_t n, float *out) {
    int64_t i = 0;
    if (dt == DTYPE_F32) {
        memcpy(out, data, (size_t)n * sizeof(float));
        return;
    }
    const uint16_t *h = data;
#ifdef CPU_AVX2
    if (dt == DTYPE_F16)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    else
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h + i)));
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
        }
#endif
    for (; i < n; i++)
        out[i] = dt == DTYPE_F16 ? f16_to_f32(h[i]) : bf16_to_f32(h[i]);
}

void cpu_weight_row(const rill_weight *w, int64_t row, float *out) {
    if (w->kind == WEIGHT_DENSE) {
        cpu_to_f32(w->dtype, (const char *)w->data + (size_t)(row * w->cols) * dtype_size(w->dtype), w->cols, out);
        return;
    }
    int64_t words = w->cols * w->bits / 32, groups = w->cols / w->group_size, gs = w->group_size;
    const uint32_t *p = w->packed + row * words;
    for (int64_t g = 0; g < groups; g++) {
        float s = cpu_scalar(w->dtype, w->scales, row * groups + g);
        float b = cpu_scalar(w->dtype, w->biases, row * groups + g);
        float *o = out + g * gs;
        if (w->bits == 4)
            group4(p + g * gs / 8, (int)gs, s, b, o);
        else if (w->bits == 8)
            group8(p + g * gs / 4, (int)gs, s, b, o);
        else {
            uint8_t q[128];
            affine_unpack_at(p, (size_t)(g * gs), (size_t)gs, w->bits, q);
            for (int64_t i = 0; i < gs; i++)
                o[i] = s * (float)q[i] + b;
        }
    }
}
