// cpu_attention_q.c: attention over a quantized KV cache (rill_qkv, MLX affine layout) and the
// quantizer that fills it. One task per (query, head), online softmax as in cpu_attention.c; scores
// and value sums are computed on the 4- or 8-bit codes themselves (the affine scale and bias taken
// out per group), so the cache is never dequantized, and an 8-bit cache reads a quarter of the
// bytes of an f32 one.
#include <math.h>

#include "backend/cpu/cpu.h"
#include "backend/ref.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define Q_AVX2 1
#endif

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_tensor *q;
    const rill_qkv *k, *v;
    const rill_attn_params *p;
} attn_q_job;

// 16 codes of a 4-bit group (8 bytes, element 2i in the low nibble of byte i) or 8 of an 8-bit one,
// as floats in element order.
#ifdef Q_AVX2
static inline void codes16_4bit(const uint8_t *p, __m256 *a, __m256 *b) {
    __m128i v = _mm_loadl_epi64((const __m128i *)p), m = _mm_set1_epi8(0x0f);
    __m128i e = _mm_unpacklo_epi8(_mm_and_si128(v, m), _mm_and_si128(_mm_srli_epi16(v, 4), m));
    *a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(e));
    *b = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(e, 8)));
}
static inline __m256 codes8_8bit(const uint8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
#endif

// sum_e x[e] * code[e] over n codes of one group (n a multiple of 16); bytes: the group's codes.
static float codes_dot(const uint8_t *bytes, int bits, const float *x, int n) {
    int e = 0;
    float sum = 0;
#ifdef Q_AVX2
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (; e + 16 <= n; e += 16) {
        __m256 a, b;
        if (bits == 4)
            codes16_4bit(bytes + e / 2, &a, &b);
        else
            a = codes8_8bit(bytes + e), b = codes8_8bit(bytes + e + 8);
        s0 = _mm256_fmadd_ps(a, _mm256_loadu_ps(x + e), s0);
        s1 = _mm256_fmadd_ps(b, _mm256_loadu_ps(x + e + 8), s1);
    }
    __m256 t = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    sum = _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
#endif
    for (; e < n; e++)
        sum += x[e] * (float)(bits == 4 ? (bytes[e / 2] >> (4 * (e % 2))) & 15 : bytes[e]);
    return sum;
}

// y[e] += a * code[e] over n codes of one group (n a multiple of 16).
static void codes_axpy(float *y, float a, const uint8_t *bytes, int bits, int n) {
    int e = 0;
#ifdef Q_AVX2
    __m256 va = _mm256_set1_ps(a);
    for (; e + 16 <= n; e += 16) {
        __m256 c0, c1;
        if (bits == 4)
            codes16_4bit(bytes + e / 2, &c0, &c1);
        else
            c0 = codes8_8bit(bytes + e), c1 = codes8_8bit(bytes + e + 8);
        _mm256_storeu_ps(y + e, _mm256_fmadd_ps(va, c0, _mm256_loadu_ps(y + e)));
        _mm256_storeu_ps(y + e + 8, _mm256_fmadd_ps(va, c1, _mm256_loadu_ps(y + e + 8)));
    }
#endif
    for (; e < n; e++)
        y[e] += a * (float)(bits == 4 ? (bytes[e / 2] >> (4 * (e % 2))) & 15 : bytes[e]);
}

// One (query, head): scores on the codes, q . (s c + b) = s (q . c) + b sum(q) per group; values
// as acc += (p s) c per group, with the biases gathered per group, bacc[g] += p b, and added at the
// end. The online softmax rescales both.
static void attn_q_task(void *arg, int task, int thread) {
    attn_q_job *jb = arg;
    const rill_attn_params *p = jb->p;
    const rill_qkv *K = jb->k, *V = jb->v;
    int64_t i = task / p->n_heads;
    int h = task % p->n_heads, kh = h / (p->n_heads / p->n_kv_heads);
    int dk = p->head_dim, dv = p->v_head_dim, kgs = K->group_size, vgs = V->group_size;
    int kg = dk / kgs, vg = dv / vgs; // groups per head
    float *acc = cpu_scratch(jb->s, thread, (size_t)(dv + vg + kg)), *bacc = acc + dv, *qsum = bacc + vg;
    for (int e = 0; e < dv; e++)
        acc[e] = 0;
    for (int g = 0; g < vg; g++)
        bacc[g] = 0;
    const float *q = (const float *)jb->q->data + i * jb->q->stride + (int64_t)h * dk;
    for (int g = 0; g < kg; g++) {
        float sq = 0;
        for (int e = 0; e < kgs; e++)
            sq += q[g * kgs + e];
        qsum[g] = sq;
    }
    int64_t lo, hi;
    cpu_attn_visible(p, i, K->rows, &lo, &hi);
    int64_t kwords = K->cols * K->bits / 32, vwords = V->cols * V->bits / 32;
    int64_t kgr = K->cols / kgs, vgr = V->cols / vgs; // groups per row
    int64_t kg0 = (int64_t)kh * dk / kgs, vg0 = (int64_t)kh * dv / vgs;
    float mx = -INFINITY, sum = 0;
    for (int64_t j = lo; j <= hi; j++) {
        const uint8_t *kb = (const uint8_t *)(K->packed + j * kwords) + (int64_t)kh * dk * K->bits / 8;
        float sc = 0;
        for (int g = 0; g < kg; g++) {
            int64_t gi = j * kgr + kg0 + g;
            float s = cpu_scalar(K->scale_dtype, K->scales, gi), b = cpu_scalar(K->scale_dtype, K->biases, gi);
            sc += s * codes_dot(kb + g * kgs * K->bits / 8, K->bits, q + g * kgs, kgs) + b * qsum[g];
        }
        sc *= p->scale;
        if (p->softcap > 0) sc = p->softcap * tanhf(sc / p->softcap);
        if (sc > mx) {
            float r = expf(mx - sc); // 0 on the first key
            for (int e = 0; e < dv; e++)
                acc[e] *= r;
            for (int g = 0; g < vg; g++)
                bacc[g] *= r;
            sum *= r;
            mx = sc;
        }
        float w = expf(sc - mx);
        sum += w;
        const uint8_t *vb = (const uint8_t *)(V->packed + j * vwords) + (int64_t)kh * dv * V->bits / 8;
        for (int g = 0; g < vg; g++) {
            int64_t gi = j * vgr + vg0 + g;
            float s = cpu_scalar(V->scale_dtype, V->scales, gi), b = cpu_scalar(V->scale_dtype, V->biases, gi);
            codes_axpy(acc + g * vgs, w * s, vb + g * vgs * V->bits / 8, V->bits, vgs);
            bacc[g] += w * b;
        }
    }
    float *o = (float *)jb->out->data + i * jb->out->stride + (int64_t)h * dv;
    float inv = sum > 0 ? 1.0f / sum : 0.0f;
    for (int e = 0; e < dv; e++)
        o[e] = (acc[e] + bacc[e / vgs]) * inv;
}

void cpu_attention_q(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                     const rill_attn_params *p) {
    cpu_enter(s);
    bool fast = out->dtype == DTYPE_F32 && q->dtype == DTYPE_F32 && (k->bits == 4 || k->bits == 8) &&
                (v->bits == 4 || v->bits == 8) && p->head_dim % k->group_size == 0 &&
                p->v_head_dim % v->group_size == 0 && k->group_size % 16 == 0 && v->group_size % 16 == 0;
    if (!fast) {
        ref_attention_q(out, q, k, v, p);
        return;
    }
    attn_q_job j = {s, out, q, k, v, p};
    threadpool_run(s->pool, (int)(q->rows * p->n_heads), attn_q_task, &j);
}

void cpu_kv_quantize(rill_stream *s, rill_qkv *out, const rill_tensor *x) {
    cpu_enter(s);
    ref_kv_quantize(out, x); // a few rows per step: not worth a kernel yet
}
