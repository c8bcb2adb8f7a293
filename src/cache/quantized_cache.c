// quantized_cache.c: mlx-lm's QuantizedKVCache. Keys and values are stored as affine-quantized groups
// (MLX layout: packed uint32 + scales + biases per group of `group_size` along each row), grown in
// steps of 256 positions. attend() quantizes the new rows (the backend's kv_quantize) and runs the
// backend's attention_q on the packed rows; nothing here dequantizes the whole cache.
#include <stdio.h>

#include "base/alloc.h"
#include "cache/cache.h"
#include "cache/kv_store.h"

typedef struct {
    cache_layer base;
    kv_store st;    // quantized rows [cap]
    int64_t offset; // positions filled
    int step;       // growth in positions (256)
} q_cache;

static rill_status ensure(q_cache *c, rill_stream *s, int64_t need) {
    if (need <= c->st.cap) return RILL_OK;
    int64_t cap = (need + c->step - 1) / c->step * c->step;
    return kv_store_resize(&c->st, s, cap, c->offset);
}

static rill_status q_attend(cache_layer *base, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                            const rill_tensor *q, const rill_attn_params *p, rill_tensor *out) {
    q_cache *c = (q_cache *)base;
    int64_t n = k->rows;
    if (k->cols != c->st.k_dim || v->cols != c->st.v_dim || v->rows != n)
        return rill_fail(RILL_EINVAL, "QuantizedKVCache: update of %lld x %lld keys, cache rows hold %lld",
                         (long long)n, (long long)k->cols, (long long)c->st.k_dim);
    rill_status st = ensure(c, s, c->offset + n);
    if (st != RILL_OK) return st;
    kv_store_write(&c->st, s, c->offset, k, v);
    c->offset += n;
    kv_store_attend(&c->st, s, c->offset, out, q, p);
    return RILL_OK;
}

static rill_status q_update(cache_layer *base, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                            rill_tensor *keys, rill_tensor *values) {
    return rill_fail(RILL_EUNSUPPORTED, "QuantizedKVCache: its rows are packed; attention goes through attend");
}

static rill_attn_mask q_make_mask(const cache_layer *base, int n, int window) {
    rill_attn_mask m = {((const q_cache *)base)->offset, 0, window, NULL};
    return m;
}

static int64_t q_offset(const cache_layer *base) { return ((const q_cache *)base)->offset; }
static bool q_is_trimmable(const cache_layer *base) { return true; }

static int64_t q_trim(cache_layer *base, int64_t n) {
    q_cache *c = (q_cache *)base;
    if (n > c->offset) n = c->offset;
    if (n < 0) n = 0;
    c->offset -= n;
    return n;
}

static size_t q_nbytes(const cache_layer *base) { return kv_store_nbytes(&((const q_cache *)base)->st); }

static void q_destroy(cache_layer *base) {
    q_cache *c = (q_cache *)base;
    kv_store_free(&c->st);
    rill_free(c);
}

// mlx-lm's state: ((k packed, k scales, k biases), (v ...), offset, group_size, bits), cut to offset.
static rill_status q_get_state(const cache_layer *base, rill_stream *s, int H, cache_state *out) {
    const q_cache *c = (const q_cache *)base;
    const rill_qkv *t[2] = {&c->st.qk, &c->st.qv};
    rill_status st = RILL_OK;
    for (int i = 0; i < 2 && st == RILL_OK; i++) {
        char p0[8], p1[8], p2[8];
        snprintf(p0, sizeof p0, "%d.0", i);
        snprintf(p1, sizeof p1, "%d.1", i);
        snprintf(p2, sizeof p2, "%d.2", i);
        int64_t D = t[i]->cols / H;
        st = kv_state_array(out, c->st.be, s, p0, DTYPE_U32, t[i]->packed, c->offset, H, D * t[i]->bits / 32);
        if (st == RILL_OK)
            st = kv_state_array(out, c->st.be, s, p1, t[i]->scale_dtype, t[i]->scales, c->offset, H,
                                D / t[i]->group_size);
        if (st == RILL_OK)
            st = kv_state_array(out, c->st.be, s, p2, t[i]->scale_dtype, t[i]->biases, c->offset, H,
                                D / t[i]->group_size);
    }
    kv_state_int(out, "2", c->offset);
    kv_state_int(out, "3", c->st.group_size);
    kv_state_int(out, "4", c->st.bits);
    return st;
}

static const cache_ops q_ops = {
    .class_name = "QuantizedKVCache",
    .update_and_fetch = q_update,
    .make_mask = q_make_mask,
    .offset = q_offset,
    .is_trimmable = q_is_trimmable,
    .trim = q_trim,
    .nbytes = q_nbytes,
    .destroy = q_destroy,
    .attend = q_attend,
    .get_state = q_get_state,
};

rill_status quantized_cache_create(rill_backend *be, rill_stream *s, rill_dtype scale_dtype, int64_t k_dim,
                                   int64_t v_dim, int group_size, int bits, const rill_tensor *rows_k,
                                   const rill_tensor *rows_v, cache_layer **out) {
    *out = NULL;
    q_cache *c = rill_calloc(1, sizeof *c);
    if (!c) return RILL_ENOMEM;
    c->base.ops = &q_ops;
    c->step = 256;
    rill_status st = kv_store_init(&c->st, be, scale_dtype, k_dim, v_dim, bits, group_size);
    int64_t n = rows_k ? rows_k->rows : 0;
    if (st == RILL_OK && n > 0) st = ensure(c, s, n);
    if (st != RILL_OK) {
        q_destroy(&c->base);
        return st;
    }
    if (n > 0) {
        kv_store_write(&c->st, s, 0, rows_k, rows_v);
        c->offset = n;
    }
    *out = &c->base;
    return RILL_OK;
}

// For the prompt-cache loader: a cache of `offset` rows whose packed rows, scales and biases are
// set from host arrays in token-major order (k then v; [offset][...] each).
rill_status quantized_cache_load(rill_backend *be, rill_stream *s, rill_dtype scale_dtype, int64_t k_dim, int64_t v_dim,
                                 int group_size, int bits, int64_t offset, const void *const host[6],
                                 cache_layer **out) {
    rill_status st = quantized_cache_create(be, s, scale_dtype, k_dim, v_dim, group_size, bits, NULL, NULL, out);
    if (st != RILL_OK) return st;
    q_cache *c = (q_cache *)*out;
    if (offset > 0 && (st = ensure(c, s, offset)) != RILL_OK) {
        q_destroy(*out);
        *out = NULL;
        return st;
    }
    const rill_qkv *t[2] = {&c->st.qk, &c->st.qv};
    size_t es = dtype_size(scale_dtype);
    for (int i = 0; i < 2; i++) {
        be->ops->upload(s, t[i]->packed, host[3 * i], (size_t)(offset * t[i]->cols * bits / 32) * 4);
        be->ops->upload(s, t[i]->scales, host[3 * i + 1], (size_t)(offset * t[i]->cols / group_size) * es);
        be->ops->upload(s, t[i]->biases, host[3 * i + 2], (size_t)(offset * t[i]->cols / group_size) * es);
    }
    be->ops->sync(s);
    c->offset = offset;
    return RILL_OK;
}
