// cpu_attention.c: attention over a cache on the CPU, with an online softmax over blocks of keys.
// A task is one query row, one KV head and one chunk of its visible keys: the query heads of the
// KV head's GQA group share each key and value row while it is in L1, and keys are taken 32 at a
// time (scores, one max and rescale per block, the exponentials 8 at a time, then the weighted
// values). Decode (few query rows) splits the keys into chunks so that every thread has work, and a
// task then takes every KV head of its chunk (it streams whole cache rows, not a head's slice of
// each); the chunks' partial results (max, sum, weighted values) are merged afterwards, as
// flash-decoding does.
// The mask is a range of key rows per query (causal, then the sliding window), so masked keys cost
// nothing. f16 / bf16 caches are converted a block at a time.
#include <math.h>

#include "backend/cpu/cpu.h"
#include "base/simd_exp.h"
#include "backend/ref.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ATTN_AVX2 1
#endif

#define KEY_BLOCK   32 // keys scored, exponentiated and folded together
#define CHUNK_MIN   64 // fewest keys per chunk when decode splits the keys
#define TASKS_PER_T 4  // decode: aim for this many tasks per thread

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_tensor *q, *k, *v;
    const rill_attn_params *p;
    int group;          // query heads per KV head
    int kv_per_task;    // KV heads per task: 1, or all of them (decode: each task then reads whole cache rows)
    int64_t chunk_keys; // keys per chunk (0: one chunk, the whole visible range)
    int n_chunks;       // chunks per (query, KV head)
    float *part;        // [n_q][n_heads][n_chunks][2 + dv] max, sum, weighted values (chunked only)
} attn_job;

#ifdef ATTN_AVX2
// s[0..7] = scale * (q . k_r) for the 8 key rows k + r * ld, d % 8 == 0: eight accumulators across
// the dimensions (named, so that they stay in registers), then one transposing reduction (hadd
// pairs, then the two 128-bit halves), instead of eight separate horizontal sums.
static inline void dots8(const float *q, const float *k, int64_t ld, int d, float scale, float *s) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int e = 0; e < d; e += 8) {
        __m256 qv = _mm256_loadu_ps(q + e);
        a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + e), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + ld + e), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 2 * ld + e), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 3 * ld + e), a3);
        a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 4 * ld + e), a4);
        a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 5 * ld + e), a5);
        a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 6 * ld + e), a6);
        a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 7 * ld + e), a7);
    }
    // per 128-bit half: [r0 r1 r2 r3] partial sums, then the halves added
    __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    __m256 sum = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
    _mm256_storeu_ps(s, _mm256_mul_ps(sum, _mm256_set1_ps(scale)));
}
#endif

// p[j] = e^(s[j] - m) for j < n; returns their sum.
static float exp_block(const float *s, float m, int n, float *p) {
    int j = 0;
    float sum = 0;
#ifdef ATTN_AVX2
    __m256 vm = _mm256_set1_ps(m), acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
        __m256 e = simd_exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(p + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float t[8];
    _mm256_storeu_ps(t, acc);
    sum = ((t[0] + t[4]) + (t[1] + t[5])) + ((t[2] + t[6]) + (t[3] + t[7]));
#endif
    for (; j < n; j++)
        sum += p[j] = expf(s[j] - m);
    return sum;
}

// acc [dv] += sum_j p[j] * v[j * ld ..] over n rows.
static void fold_values(float *acc, const float *p, const float *v, int64_t ld, int n, int dv) {
    int e = 0;
#ifdef ATTN_AVX2
    for (; e + 32 <= dv; e += 32) { // 4 accumulators in registers across the block's rows
        __m256 a0 = _mm256_loadu_ps(acc + e), a1 = _mm256_loadu_ps(acc + e + 8);
        __m256 a2 = _mm256_loadu_ps(acc + e + 16), a3 = _mm256_loadu_ps(acc + e + 24);
        for (int j = 0; j < n; j++) {
            const float *vr = v + j * ld + e;
            __m256 w = _mm256_broadcast_ss(p + j);
            a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr), a0);
            a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 8), a1);
            a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 16), a2);
            a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 24), a3);
        }
        _mm256_storeu_ps(acc + e, a0), _mm256_storeu_ps(acc + e + 8, a1);
        _mm256_storeu_ps(acc + e + 16, a2), _mm256_storeu_ps(acc + e + 24, a3);
    }
    for (; e + 8 <= dv; e += 8) {
        __m256 a = _mm256_loadu_ps(acc + e);
        for (int j = 0; j < n; j++)
            a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(v + j * ld + e), a);
        _mm256_storeu_ps(acc + e, a);
    }
#endif
    for (; e < dv; e++) {
        float a = acc[e];
        for (int j = 0; j < n; j++)
            a += p[j] * v[j * ld + e];
        acc[e] = a;
    }
}

// Rows [j0, j0 + n) of a cache tensor, head slice at `off` (n_el wide), as f32: in place (with the
// tensor's row stride in *ld) when the cache is f32, else converted into tmp [n][n_el].
static const float *kv_block(const rill_tensor *t, int64_t j0, int n, int64_t off, int n_el, float *tmp, int64_t *ld) {
    if (t->dtype == DTYPE_F32) {
        *ld = t->stride;
        return (const float *)t->data + j0 * t->stride + off;
    }
    size_t es = dtype_size(t->dtype);
    for (int j = 0; j < n; j++)
        cpu_to_f32(t->dtype, (const char *)t->data + ((size_t)((j0 + j) * t->stride + off)) * es, n_el, tmp + j * n_el);
    *ld = n_el;
    return tmp;
}

static void attn_task(void *arg, int task, int thread) {
    attn_job *jb = arg;
    const rill_attn_params *p = jb->p;
    int n_kv = p->n_kv_heads, dk = p->head_dim, dv = p->v_head_dim, n_kt = jb->kv_per_task;
    int c = task % jb->n_chunks, kh0 = task / jb->n_chunks % (n_kv / n_kt) * n_kt, g_n = jb->group;
    int64_t i = task / jb->n_chunks / (n_kv / n_kt);
    int n_h = n_kt * g_n; // query heads of this task: those of KV heads kh0 .. kh0 + n_kt - 1

    // thread scratch: acc [n_h][dv], running max and sum [n_h] each, scores and weights [KEY_BLOCK]
    // each, the converted K and V blocks [KEY_BLOCK][dk] and [KEY_BLOCK][dv]
    float *acc = cpu_scratch(jb->s, thread, (size_t)(n_h * (dv + 2) + 2 * KEY_BLOCK + KEY_BLOCK * (dk + dv)));
    float *mx = acc + n_h * dv, *sum = mx + n_h, *sc = sum + n_h, *pw = sc + KEY_BLOCK;
    float *kt = pw + KEY_BLOCK, *vt = kt + KEY_BLOCK * dk;
    for (int g = 0; g < n_h; g++)
        mx[g] = -INFINITY, sum[g] = 0;
    for (int64_t e = 0; e < (int64_t)n_h * dv; e++)
        acc[e] = 0;

    int64_t lo, hi;
    cpu_attn_visible(p, i, jb->k->rows, &lo, &hi);
    if (jb->chunk_keys) { // this chunk's share of the visible keys
        int64_t a = lo + c * jb->chunk_keys, b = a + jb->chunk_keys - 1;
        lo = a, hi = b < hi ? b : hi;
    }
    const float *q = (const float *)jb->q->data + i * jb->q->stride;
    for (int64_t j0 = lo; j0 <= hi; j0 += KEY_BLOCK) {
        int n = hi - j0 + 1 < KEY_BLOCK ? (int)(hi - j0 + 1) : KEY_BLOCK;
        for (int kh = kh0; kh < kh0 + n_kt; kh++) {
            int64_t kld, vld;
            const float *kb = kv_block(jb->k, j0, n, (int64_t)kh * dk, dk, kt, &kld);
            const float *vb = kv_block(jb->v, j0, n, (int64_t)kh * dv, dv, vt, &vld);
            for (int g = (kh - kh0) * g_n; g < (kh - kh0 + 1) * g_n; g++) {
                const float *qh = q + (int64_t)(kh0 * g_n + g) * dk;
                float bm = -INFINITY;
                int j = 0;
#ifdef ATTN_AVX2
                if (dk % 8 == 0)
                    for (; j + 8 <= n; j += 8)
                        dots8(qh, kb + j * kld, kld, dk, p->scale, sc + j);
#endif
                for (; j < n; j++)
                    sc[j] = p->scale * cpu_dot(qh, kb + j * kld, dk);
                for (j = 0; j < n; j++) {
                    if (p->softcap > 0) sc[j] = p->softcap * tanhf(sc[j] / p->softcap);
                    bm = sc[j] > bm ? sc[j] : bm;
                }
                float *a = acc + g * dv;
                if (bm > mx[g]) {               // rescale what came before to the new maximum
                    float r = expf(mx[g] - bm); // 0 on the first block
                    for (int e = 0; e < dv; e++)
                        a[e] *= r;
                    sum[g] *= r;
                    mx[g] = bm;
                }
                sum[g] += exp_block(sc, mx[g], n, pw);
                fold_values(a, pw, vb, vld, n, dv);
            }
        }
    }
    for (int g = 0; g < n_h; g++) {
        const float *a = acc + g * dv;
        int h = kh0 * g_n + g;
        if (jb->part) { // this chunk's partial result, merged by merge_chunks
            float *pt = jb->part + ((i * p->n_heads + h) * jb->n_chunks + c) * (2 + dv);
            pt[0] = mx[g], pt[1] = sum[g];
            memcpy(pt + 2, a, (size_t)dv * sizeof(float));
        } else {
            float *o = (float *)jb->out->data + i * jb->out->stride + (int64_t)h * dv;
            float inv = sum[g] > 0 ? 1.0f / sum[g] : 0.0f;
            for (int e = 0; e < dv; e++)
                o[e] = a[e] * inv;
        }
    }
}

// out = the chunks' weighted values, each rescaled to the common maximum, over the common sum.
static void merge_chunks(attn_job *jb) {
    const rill_attn_params *p = jb->p;
    int dv = p->v_head_dim;
    for (int64_t i = 0; i < jb->q->rows; i++)
        for (int h = 0; h < p->n_heads; h++) {
            const float *pt = jb->part + (i * p->n_heads + h) * jb->n_chunks * (2 + dv);
            float m = -INFINITY, sum = 0;
            for (int c = 0; c < jb->n_chunks; c++)
                m = pt[c * (2 + dv)] > m ? pt[c * (2 + dv)] : m;
            float *o = (float *)jb->out->data + i * jb->out->stride + (int64_t)h * dv;
            for (int e = 0; e < dv; e++)
                o[e] = 0;
            if (m == -INFINITY) continue; // no visible key
            for (int c = 0; c < jb->n_chunks; c++) {
                const float *pc = pt + c * (2 + dv);
                if (pc[0] == -INFINITY) continue;
                float r = expf(pc[0] - m);
                sum += pc[1] * r;
                cpu_axpy(o, r, pc + 2, dv);
            }
            float inv = 1.0f / sum;
            for (int e = 0; e < dv; e++)
                o[e] *= inv;
        }
}

void cpu_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k, const rill_tensor *v,
                   const rill_attn_params *p) {
    cpu_enter(s);
    if (out->dtype != DTYPE_F32 || q->dtype != DTYPE_F32) {
        ref_attention(out, q, k, v, p);
        return;
    }
    attn_job j = {s, out, q, k, v, p, p->n_heads / p->n_kv_heads, 1, 0, 1, NULL};
    // few (query, KV head) tasks: split the keys into chunks so that every thread has several, and
    // let each task take every KV head, so that it streams whole rows of the cache (a head's slice
    // is a fraction of a row: one head per task read the cache at ~2/3 of the rate, cold)
    int64_t base = q->rows * p->n_kv_heads, want = (int64_t)TASKS_PER_T * threadpool_size(s->pool);
    if (base < want && k->rows >= 2 * CHUNK_MIN) {
        j.kv_per_task = p->n_kv_heads;
        base = q->rows;
        int64_t chunks = (want + base - 1) / base, most = k->rows / CHUNK_MIN;
        if (chunks > most) chunks = most;
        j.chunk_keys = (k->rows + chunks - 1) / chunks;
        j.chunk_keys = (j.chunk_keys + KEY_BLOCK - 1) / KEY_BLOCK * KEY_BLOCK;
        j.n_chunks = (int)((k->rows + j.chunk_keys - 1) / j.chunk_keys);
        j.part = cpu_scratch(s, CPU_MAX_THREADS - 1, (size_t)(q->rows * p->n_heads * j.n_chunks * (2 + p->v_head_dim)));
    }
    threadpool_run(s->pool, (int)(base * j.n_chunks), attn_task, &j);
    if (j.part) merge_chunks(&j);
}
