// ref.c: reference ops, written for clarity, not speed: every element through ref_load/ref_store,
// sums in double where a sum is long, softmax in two passes. The CPU backend may call these for
// ops whose speed does not matter yet; the op tests hold every backend to them.
#include "backend/ref.h"

#include <math.h>
#include <stdlib.h>

#include "base/half.h"

float ref_scalar(rill_dtype dt, const void *p, int64_t i) {
    switch (dt) {
    case DTYPE_F32: return ((const float *)p)[i];
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)p)[i]);
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)p)[i]);
    default: abort(); // programmer error: not a float dtype
    }
}

float ref_load(const rill_tensor *t, int64_t r, int64_t c) { return ref_scalar(t->dtype, t->data, r * t->stride + c); }

void ref_store(rill_tensor *t, int64_t r, int64_t c, float v) {
    int64_t i = r * t->stride + c;
    switch (t->dtype) {
    case DTYPE_F32: ((float *)t->data)[i] = v; break;
    case DTYPE_F16: ((uint16_t *)t->data)[i] = f32_to_f16(v); break;
    case DTYPE_BF16: ((uint16_t *)t->data)[i] = f32_to_bf16(v); break;
    default: abort();
    }
}

static int32_t load_i32(const rill_tensor *t, int64_t r) { return ((const int32_t *)t->data)[r * t->stride]; }

void ref_weight_row(const rill_weight *w, int64_t row, float *out) {
    if (w->kind == WEIGHT_DENSE) {
        for (int64_t c = 0; c < w->cols; c++)
            out[c] = ref_scalar(w->dtype, w->data, row * w->cols + c);
        return;
    }
    int64_t words = w->cols * w->bits / 32, groups = w->cols / w->group_size;
    const uint32_t *p = w->packed + row * words;
    unsigned mask = (1u << w->bits) - 1;
    for (int64_t c = 0; c < w->cols; c++) {
        uint64_t bit = (uint64_t)c * (uint64_t)w->bits;
        uint64_t lo = p[bit / 32];
        uint64_t hi = bit % 32 + (uint64_t)w->bits > 32 ? p[bit / 32 + 1] : 0;
        unsigned q = (unsigned)(((lo | hi << 32) >> (bit % 32)) & mask);
        int64_t g = row * groups + c / w->group_size;
        out[c] = ref_scalar(w->dtype, w->scales, g) * (float)q + ref_scalar(w->dtype, w->biases, g);
    }
}

void ref_embed(rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale) {
    float *row = malloc(sizeof(float) * (size_t)w->cols);
    for (int64_t t = 0; t < out->rows; t++) {
        ref_weight_row(w, load_i32(ids, t), row);
        for (int64_t c = 0; c < out->cols; c++)
            ref_store(out, t, c, row[c] * scale);
    }
    free(row);
}

void ref_matmul(rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    float *row = malloc(sizeof(float) * (size_t)w->cols);
    for (int64_t o = 0; o < w->rows; o++) {
        ref_weight_row(w, o, row);
        for (int64_t t = 0; t < x->rows; t++) {
            double acc = 0;
            for (int64_t i = 0; i < w->cols; i++)
                acc += (double)ref_load(x, t, i) * row[i];
            if (w->bias) acc += w->bias[o];
            ref_store(out, t, o, (float)acc);
        }
    }
    free(row);
}

void ref_rmsnorm(rill_tensor *out, const rill_tensor *x, const float *w, float eps, bool add_one) {
    for (int64_t t = 0; t < x->rows; t++) {
        double ss = 0;
        for (int64_t c = 0; c < x->cols; c++)
            ss += (double)ref_load(x, t, c) * ref_load(x, t, c);
        float inv = (float)(1.0 / sqrt(ss / (double)x->cols + eps));
        for (int64_t c = 0; c < x->cols; c++)
            ref_store(out, t, c, ref_load(x, t, c) * inv * (w[c] + (add_one ? 1.0f : 0.0f)));
    }
}

void ref_add_rmsnorm(rill_tensor *out, rill_tensor *x, const rill_tensor *r, const float *w, float eps, bool add_one) {
    ref_add(x, x, r);
    ref_rmsnorm(out, x, w, eps, add_one);
}

void ref_rope(rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p) {
    int half = p->rot_dims / 2;
    for (int64_t t = 0; t < x->rows; t++) {
        double position = load_i32(pos, t);
        for (int h = 0; h < p->n_heads; h++) {
            int64_t base = (int64_t)h * p->head_dim;
            for (int i = 0; i < half; i++) {
                double angle = position * p->inv_freq[i];
                float c = (float)cos(angle) * p->mscale, s = (float)sin(angle) * p->mscale;
                int64_t a = p->layout == ROPE_INTERLEAVED ? base + 2 * i : base + i;
                int64_t b = p->layout == ROPE_INTERLEAVED ? base + 2 * i + 1 : base + i + half;
                float x0 = ref_load(x, t, a), x1 = ref_load(x, t, b);
                ref_store(x, t, a, x0 * c - x1 * s);
                ref_store(x, t, b, x1 * c + x0 * s);
            }
        }
    }
}

static bool visible(const rill_attn_mask *m, int64_t qi, int64_t kj) {
    int64_t qp = m->q_pos0 + qi, kp = m->k_pos0 + kj;
    if (kp > qp) return false;
    return m->window <= 0 || qp - kp < m->window;
}

void ref_attention(rill_tensor *out, const rill_tensor *q, const rill_tensor *k, const rill_tensor *v,
                   const rill_attn_params *p) {
    int group = p->n_heads / p->n_kv_heads;
    double *sc = malloc(sizeof(double) * (size_t)(k->rows ? k->rows : 1));
    for (int64_t i = 0; i < q->rows; i++) {
        for (int h = 0; h < p->n_heads; h++) {
            int kh = h / group;
            double mx = -INFINITY;
            for (int64_t j = 0; j < k->rows; j++) {
                if (!visible(&p->mask, i, j)) {
                    sc[j] = -INFINITY;
                    continue;
                }
                double d = 0;
                for (int e = 0; e < p->head_dim; e++)
                    d += (double)ref_load(q, i, (int64_t)h * p->head_dim + e) *
                         ref_load(k, j, (int64_t)kh * p->head_dim + e);
                d *= p->scale;
                if (p->softcap > 0) d = p->softcap * tanh(d / p->softcap);
                sc[j] = d;
                if (d > mx) mx = d;
            }
            double sum = 0;
            for (int64_t j = 0; j < k->rows; j++) {
                sc[j] = sc[j] == -INFINITY ? 0 : exp(sc[j] - mx);
                sum += sc[j];
            }
            for (int e = 0; e < p->v_head_dim; e++) {
                double acc = 0;
                for (int64_t j = 0; j < k->rows; j++)
                    if (sc[j] != 0) acc += sc[j] * ref_load(v, j, (int64_t)kh * p->v_head_dim + e);
                ref_store(out, i, (int64_t)h * p->v_head_dim + e, sum > 0 ? (float)(acc / sum) : 0.0f);
            }
        }
    }
    free(sc);
}

static float act(rill_act a, float g) {
    if (a == ACT_SILU) return g / (1.0f + expf(-g));
    const float k = 0.7978845608028654f; // sqrt(2 / pi)
    return 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)));
}

void ref_act_mul(rill_tensor *out, const rill_tensor *gate, const rill_tensor *up, rill_act a) {
    for (int64_t t = 0; t < out->rows; t++)
        for (int64_t c = 0; c < out->cols; c++)
            ref_store(out, t, c, act(a, ref_load(gate, t, c)) * ref_load(up, t, c));
}

void ref_add(rill_tensor *out, const rill_tensor *a, const rill_tensor *b) {
    for (int64_t t = 0; t < out->rows; t++)
        for (int64_t c = 0; c < out->cols; c++)
            ref_store(out, t, c, ref_load(a, t, c) + ref_load(b, t, c));
}

void ref_scale(rill_tensor *out, const rill_tensor *x, float scale) {
    for (int64_t t = 0; t < out->rows; t++)
        for (int64_t c = 0; c < out->cols; c++)
            ref_store(out, t, c, ref_load(x, t, c) * scale);
}

void ref_softcap(rill_tensor *out, const rill_tensor *x, float cap) {
    for (int64_t t = 0; t < out->rows; t++)
        for (int64_t c = 0; c < out->cols; c++)
            ref_store(out, t, c, cap * tanhf(ref_load(x, t, c) / cap));
}

void ref_copy(rill_tensor *out, const rill_tensor *x) {
    for (int64_t t = 0; t < out->rows; t++)
        for (int64_t c = 0; c < out->cols; c++)
            ref_store(out, t, c, ref_load(x, t, c));
}

// Index of the largest of v[0..n) not yet taken (ties: the lower index), marking it taken.
static int take_max(const double *v, bool *taken, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
    if (best >= 0) taken[best] = true;
    return best;
}

void ref_moe_route(rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits, const float *bias,
                   const rill_moe_params *p) {
    int E = p->n_experts, G = p->n_group > 1 ? p->n_group : 1, per = E / G;
    double *sc = malloc(sizeof(double) * (size_t)E * 2), *choice = sc + E, gs[256];
    bool taken[1024], gkeep[256];
    for (int64_t t = 0; t < logits->rows; t++) {
        double mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++)
            mx = fmax(mx, ref_load(logits, t, e));
        for (int e = 0; e < E; e++) {
            double l = ref_load(logits, t, e);
            sc[e] = p->softmax ? exp(l - mx) : 1.0 / (1.0 + exp(-l));
            sum += sc[e];
        }
        for (int e = 0; e < E; e++) {
            if (p->softmax) sc[e] /= sum;
            choice[e] = sc[e] + (bias ? bias[e] : 0.0);
        }
        // groups: the sum of each group's two best choices; keep the best topk_group groups
        for (int g = 0; g < G; g++) {
            double a = -INFINITY, b = -INFINITY;
            for (int e = g * per; e < (g + 1) * per; e++) {
                if (choice[e] > a)
                    b = a, a = choice[e];
                else if (choice[e] > b)
                    b = choice[e];
            }
            gs[g] = per > 1 ? a + b : a;
            gkeep[g] = G == 1;
        }
        if (G > 1) {
            bool gt[256] = {false};
            for (int k = 0; k < p->topk_group; k++)
                gkeep[take_max(gs, gt, G)] = true;
        }
        for (int e = 0; e < E; e++)
            taken[e] = !gkeep[e / per];
        double wsum = 0;
        int32_t *ids = (int32_t *)idx->data + t * idx->stride;
        float *w = (float *)weights->data + t * weights->stride;
        for (int k = 0; k < p->top_k; k++) {
            ids[k] = take_max(choice, taken, E);
            wsum += sc[ids[k]];
        }
        for (int k = 0; k < p->top_k; k++)
            w[k] = (float)((p->norm ? sc[ids[k]] / (wsum + 1e-20) : sc[ids[k]]) * p->scale);
    }
    free(sc);
}

void ref_moe_matmul(rill_tensor *out, const rill_tensor *x, const rill_weight *experts, const rill_tensor *idx) {
    int64_t k = idx->cols;
    for (int64_t slot = 0; slot < out->rows; slot++) {
        int64_t t = slot / k, j = slot % k;
        const rill_weight *w = &experts[((const int32_t *)idx->data)[t * idx->stride + j]];
        rill_tensor xr = rill_tensor_rows(x, x->rows == out->rows ? slot : t, 1), o = rill_tensor_rows(out, slot, 1);
        ref_matmul(&o, &xr, w);
    }
}

void ref_moe_combine(rill_tensor *out, const rill_tensor *y, const rill_tensor *weights) {
    int64_t k = weights->cols;
    for (int64_t t = 0; t < out->rows; t++)
        for (int64_t c = 0; c < out->cols; c++) {
            double acc = ref_load(out, t, c);
            for (int64_t j = 0; j < k; j++)
                acc += (double)((const float *)weights->data)[t * weights->stride + j] * ref_load(y, t * k + j, c);
            ref_store(out, t, c, (float)acc);
        }
}

// ---- quantized KV (rill_qkv) ----

float ref_qkv_load(const rill_qkv *t, int64_t r, int64_t c) {
    int64_t wpr = t->cols * t->bits / 32, gpr = t->cols / t->group_size;
    int64_t bit = c * t->bits;
    const uint32_t *w = t->packed + r * wpr;
    uint64_t two = (uint64_t)w[bit / 32] | (bit / 32 + 1 < wpr ? (uint64_t)w[bit / 32 + 1] << 32 : 0);
    unsigned q = (unsigned)(two >> (bit % 32)) & ((1u << t->bits) - 1);
    int64_t g = r * gpr + c / t->group_size;
    float s = ref_scalar(t->scale_dtype, t->scales, g), b = ref_scalar(t->scale_dtype, t->biases, g);
    return s * (float)q + b;
}

static void store_param(rill_dtype dt, void *p, int64_t i, float v) {
    rill_tensor t = rill_tensor_2d(dt, 1, i + 1, p);
    ref_store(&t, 0, i, v);
}

void ref_kv_quantize(rill_qkv *out, const rill_tensor *x) {
    int n_levels = (1 << out->bits) - 1;
    int64_t wpr = out->cols * out->bits / 32, gpr = out->cols / out->group_size;
    for (int64_t r = 0; r < x->rows; r++) {
        uint32_t *w = out->packed + r * wpr;
        for (int64_t i = 0; i < wpr; i++)
            w[i] = 0;
        for (int64_t g = 0; g < gpr; g++) {
            float lo = INFINITY, hi = -INFINITY;
            for (int e = 0; e < out->group_size; e++) {
                float v = ref_load(x, r, g * out->group_size + e);
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
            float scale = (hi - lo) / (float)n_levels;
            if (!(scale > 1e-7f)) scale = 1e-7f;
            bool low = fabsf(lo) > fabsf(hi);
            if (!low) scale = -scale;
            float edge = low ? lo : hi, q0 = rintf(edge / scale), bias = 0;
            if (q0 != 0) {
                scale = edge / q0;
                bias = edge;
            }
            // the stored (rounded) parameters are the ones the levels are fitted to
            store_param(out->scale_dtype, out->scales, r * gpr + g, scale);
            store_param(out->scale_dtype, out->biases, r * gpr + g, bias);
            scale = ref_scalar(out->scale_dtype, out->scales, r * gpr + g);
            bias = ref_scalar(out->scale_dtype, out->biases, r * gpr + g);
            for (int e = 0; e < out->group_size; e++) {
                float v = rintf((ref_load(x, r, g * out->group_size + e) - bias) / scale);
                unsigned q = v < 0 ? 0 : v > (float)n_levels ? (unsigned)n_levels : (unsigned)v;
                int64_t bit = (g * out->group_size + e) * out->bits;
                w[bit / 32] |= q << (bit % 32);
                if (bit % 32 + out->bits > 32) w[bit / 32 + 1] |= q >> (32 - bit % 32);
            }
        }
    }
}

void ref_attention_q(rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                     const rill_attn_params *p) {
    // Dequantize one head's keys and values at a time into f32 views, then the plain reference.
    rill_tensor kd = rill_tensor_2d(DTYPE_F32, k->rows, k->cols, malloc(sizeof(float) * (size_t)(k->rows * k->cols + 1)));
    rill_tensor vd = rill_tensor_2d(DTYPE_F32, v->rows, v->cols, malloc(sizeof(float) * (size_t)(v->rows * v->cols + 1)));
    for (int64_t r = 0; r < k->rows; r++) {
        for (int64_t c = 0; c < k->cols; c++)
            ref_store(&kd, r, c, ref_qkv_load(k, r, c));
        for (int64_t c = 0; c < v->cols; c++)
            ref_store(&vd, r, c, ref_qkv_load(v, r, c));
    }
    ref_attention(out, q, &kd, &vd, p);
    free(kd.data);
    free(vd.data);
}
