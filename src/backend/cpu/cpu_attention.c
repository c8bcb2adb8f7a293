// cpu_attention.c: attention over a cache on the CPU, one task per (query, head), with an online
// softmax (one pass over the keys, rescaling the running sum when the maximum grows). The mask is
// a range of key rows per query (causal, then the sliding window), so masked keys cost nothing.
#include <math.h>

#include "backend/cpu/cpu.h"
#include "backend/ref.h"

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_tensor *q, *k, *v;
    const rill_attn_params *p;
} attn_job;

// Row j of a cache tensor, head slice at `off`, as f32 (in place when it already is).
static const float *kv_row(const rill_tensor *t, int64_t j, int64_t off, int n, float *tmp) {
    if (t->dtype == DTYPE_F32) return (const float *)t->data + j * t->stride + off;
    for (int e = 0; e < n; e++)
        tmp[e] = ref_load(t, j, off + e);
    return tmp;
}

static void attn_task(void *arg, int task, int thread) {
    attn_job *jb = arg;
    const rill_attn_params *p = jb->p;
    int64_t i = task / p->n_heads;
    int h = task % p->n_heads, kh = h / (p->n_heads / p->n_kv_heads);
    int dk = p->head_dim, dv = p->v_head_dim;
    float *acc = cpu_scratch(jb->s, thread, (size_t)(dv + dk + dv)), *kt = acc + dv, *vt = kt + dk;
    for (int e = 0; e < dv; e++)
        acc[e] = 0;

    int64_t lo, hi;
    cpu_attn_visible(p, i, jb->k->rows, &lo, &hi);
    const float *q = (const float *)jb->q->data + i * jb->q->stride + (int64_t)h * dk;
    float mx = -INFINITY, sum = 0;
    for (int64_t j = lo; j <= hi; j++) {
        float sc = p->scale * cpu_dot(q, kv_row(jb->k, j, (int64_t)kh * dk, dk, kt), dk);
        cpu_attn_fold(p, sc, kv_row(jb->v, j, (int64_t)kh * dv, dv, vt), dv, acc, &mx, &sum);
    }
    float *o = (float *)jb->out->data + i * jb->out->stride + (int64_t)h * dv;
    float inv = sum > 0 ? 1.0f / sum : 0.0f;
    for (int e = 0; e < dv; e++)
        o[e] = acc[e] * inv;
}

void cpu_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k, const rill_tensor *v,
                   const rill_attn_params *p) {
    cpu_enter(s);
    if (out->dtype != DTYPE_F32 || q->dtype != DTYPE_F32) {
        ref_attention(out, q, k, v, p);
        return;
    }
    attn_job j = {s, out, q, k, v, p};
    threadpool_run(s->pool, (int)(q->rows * p->n_heads), attn_task, &j);
}
