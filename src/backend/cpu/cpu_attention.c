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

    // Visible key rows: k_pos0 + j <= q_pos, and q_pos - (k_pos0 + j) < window.
    int64_t qp = p->mask.q_pos0 + i;
    int64_t hi = qp - p->mask.k_pos0; // last visible row
    if (hi > jb->k->rows - 1) hi = jb->k->rows - 1;
    int64_t lo = 0;
    if (p->mask.window > 0 && qp - p->mask.window + 1 - p->mask.k_pos0 > 0)
        lo = qp - p->mask.window + 1 - p->mask.k_pos0;

    const float *q = (const float *)jb->q->data + i * jb->q->stride + (int64_t)h * dk;
    float mx = -INFINITY, sum = 0;
    for (int64_t j = lo; j <= hi; j++) {
        float sc = p->scale * cpu_dot(q, kv_row(jb->k, j, (int64_t)kh * dk, dk, kt), dk);
        if (p->softcap > 0) sc = p->softcap * tanhf(sc / p->softcap);
        if (sc > mx) {
            float r = expf(mx - sc); // 0 on the first key
            for (int e = 0; e < dv; e++)
                acc[e] *= r;
            sum *= r;
            mx = sc;
        }
        float w = expf(sc - mx);
        sum += w;
        cpu_axpy(acc, w, kv_row(jb->v, j, (int64_t)kh * dv, dv, vt), dv);
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
