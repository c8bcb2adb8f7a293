// cpu_attention_q.c: attention over a quantized KV cache (rill_qkv, MLX affine layout) and the
// quantizer that fills it. One task per (query, head), online softmax as in cpu_attention.c; each
// visible key's and value's head slice is unpacked from its 4- or 8-bit groups into a few floats on
// the task's scratch, so the cache is never dequantized whole.
#include <math.h>

#include "backend/cpu/cpu.h"
#include "backend/ref.h"

typedef struct {
    rill_stream *s;
    rill_tensor *out;
    const rill_tensor *q;
    const rill_qkv *k, *v;
    const rill_attn_params *p;
} attn_q_job;

// Elements [c0, c0 + n) of row r of t, dequantized into out [n]; c0 and n are multiples of the group.
static void unpack_slice(const rill_qkv *t, int64_t r, int64_t c0, int n, float *out) {
    int64_t gpr = t->cols / t->group_size, gs = t->group_size;
    const uint8_t *bytes = (const uint8_t *)(t->packed + r * (t->cols * t->bits / 32));
    for (int64_t g = 0; g < n / gs; g++) {
        int64_t gi = r * gpr + (c0 / gs) + g;
        float s = cpu_scalar(t->scale_dtype, t->scales, gi), b = cpu_scalar(t->scale_dtype, t->biases, gi);
        float *o = out + g * gs;
        int64_t e0 = c0 + g * gs;
        if (t->bits == 8) {
            const uint8_t *src = bytes + e0;
            for (int64_t e = 0; e < gs; e++)
                o[e] = s * (float)src[e] + b;
        } else { // 4 bits: element e in byte e / 2, low nibble first
            const uint8_t *src = bytes + e0 / 2;
            for (int64_t e = 0; e < gs / 2; e++) {
                o[2 * e] = s * (float)(src[e] & 15) + b;
                o[2 * e + 1] = s * (float)(src[e] >> 4) + b;
            }
        }
    }
}

static void attn_q_task(void *arg, int task, int thread) {
    attn_q_job *jb = arg;
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
        unpack_slice(jb->k, j, (int64_t)kh * dk, dk, kt);
        unpack_slice(jb->v, j, (int64_t)kh * dv, dv, vt);
        cpu_attn_fold(p, p->scale * cpu_dot(q, kt, dk), vt, dv, acc, &mx, &sum);
    }
    float *o = (float *)jb->out->data + i * jb->out->stride + (int64_t)h * dv;
    float inv = sum > 0 ? 1.0f / sum : 0.0f;
    for (int e = 0; e < dv; e++)
        o[e] = acc[e] * inv;
}

void cpu_attention_q(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                     const rill_attn_params *p) {
    cpu_enter(s);
    bool fast = out->dtype == DTYPE_F32 && q->dtype == DTYPE_F32 && k->bits == v->bits &&
                (k->bits == 4 || k->bits == 8) && p->head_dim % k->group_size == 0 &&
                p->v_head_dim % v->group_size == 0;
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
