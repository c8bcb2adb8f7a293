// mla_weights.c: multi-head latent attention's absorbed projections (deepseek_v3), made once at
// load from kv_b. kv_b [n_heads * (nope + v)][kv_lora] maps the latent to each head's [nope key |
// value] rows. The decoder never expands the cache through it: a query's nope part goes into latent
// space (embed_q[h] = head h's key rows transposed, [kv_lora][nope]) and meets the latent itself,
// and the attention output, a mix of latents, comes back out (unembed[h] = head h's value rows,
// [v][kv_lora]). The value rows are views of kv_b; the transposed key rows are new: in kv_b's float
// dtype when it is dense (an exact copy), in f32 when it is quantized (its exact dequantization),
// kept on the host only for a backend that reads weights in place (one that copies has its own).
#include <string.h>

#include "base/alloc.h"
#include "model/model.h"
#include "quant/affine.h"

// Rows [r0, r0 + n) of w, a view.
static rill_weight weight_rows(const rill_weight *w, int64_t r0, int64_t n) {
    rill_weight v = *w;
    v.rows = n;
    v.bias = NULL;
    if (w->kind == WEIGHT_DENSE)
        v.data = (const char *)w->data + (size_t)(r0 * w->cols) * dtype_size(w->dtype);
    else {
        size_t groups = (size_t)(w->cols / w->group_size), es = dtype_size(w->dtype);
        v.packed = w->packed + (size_t)r0 * (size_t)(w->cols * w->bits / 32);
        v.scales = (const char *)w->scales + (size_t)r0 * groups * es;
        v.biases = w->biases ? (const char *)w->biases + (size_t)r0 * groups * es : NULL;
    }
    return v;
}

// out [cols][n] = the transpose of rows [r0, r0 + n) of w, in w's dtype (dense) or f32 (affine).
static rill_status transpose_rows(const rill_weight *w, int64_t r0, int64_t n, rill_dtype dt, void *out) {
    int64_t cols = w->cols;
    size_t es = dtype_size(dt);
    if (w->kind == WEIGHT_DENSE) {
        for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < cols; c++)
                memcpy((char *)out + (size_t)(c * n + r) * es,
                       (const char *)w->data + (size_t)((r0 + r) * cols + c) * es, es);
        return RILL_OK;
    }
    affine_tensor a;
    rill_status st = affine_wrap(&a, (uint64_t)w->rows, (uint64_t)cols, w->bits, w->group_size, w->dtype, w->packed,
                                 w->scales, w->biases);
    float *row = st == RILL_OK ? rill_malloc((size_t)cols * sizeof(float)) : NULL;
    if (st != RILL_OK) return st;
    if (!row) return RILL_ENOMEM;
    for (int64_t r = 0; r < n; r++) {
        affine_dequantize_row(&a, (uint64_t)(r0 + r), row);
        for (int64_t c = 0; c < cols; c++)
            ((float *)out)[c * n + r] = row[c];
    }
    rill_free(row);
    return RILL_OK;
}

rill_status mla_absorb(rill_model *m, const rill_weight *kv_b, layer_weights *L) {
    const rill_model_config *c = &m->cfg;
    int64_t H = c->n_heads, nope = c->qk_nope_head_dim, vd = c->v_head_dim, lat = c->kv_lora_rank;
    rill_dtype dt = kv_b->kind == WEIGHT_DENSE ? kv_b->dtype : DTYPE_F32;
    size_t head_bytes = (size_t)(lat * nope) * dtype_size(dt);
    if (m->measure_only) { // what loading keeps: the transposed key rows (the value rows are views), where
                           // the backend reads them in place
        m->planned_bytes +=
            (m->be->ops->weights_in_place ? (size_t)H * head_bytes : 0) + 2 * (size_t)H * sizeof(rill_weight);
        return RILL_OK;
    }
    rill_weight *ws = rill_calloc((size_t)(2 * H), sizeof *ws);
    if (!ws) return RILL_ENOMEM;
    rill_status st = weights_keep(m, ws);
    if (st != RILL_OK) {
        rill_free(ws);
        return st;
    }
    L->mla_embed_q = ws;
    L->mla_unembed = ws + H;
    for (int64_t h = 0; h < H && st == RILL_OK; h++) {
        int64_t r0 = h * (nope + vd);
        void *t = rill_malloc(head_bytes);
        if (!t) return RILL_ENOMEM;
        bool in_place = m->be->ops->weights_in_place; // (else the backend copies t, and t goes at once)
        if (in_place && (st = weights_keep(m, t)) != RILL_OK) {
            rill_free(t);
            return st;
        }
        if ((st = transpose_rows(kv_b, r0, nope, dt, t)) == RILL_OK) {
            rill_weight q = {.kind = WEIGHT_DENSE, .rows = lat, .cols = nope, .dtype = dt, .data = t};
            rill_weight u = weight_rows(kv_b, r0 + nope, vd);
            st = m->be->ops->weight_load(m->be, &q, &L->mla_embed_q[h]);
            if (st == RILL_OK) st = m->be->ops->weight_load(m->be, &u, &L->mla_unembed[h]);
        }
        if (!in_place) rill_free(t);
    }
    if (st != RILL_OK) rill_error_prefix("MLA absorbed projections");
    return st;
}
