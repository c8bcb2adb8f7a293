// kv_cache.c: mlx-lm's KVCache. Keys and values live in device buffers of `capacity` positions,
// grown in steps of `step` (256 unless set); a write lands at [offset, offset + n) and the views
// returned cover [0, offset + n). trim(n) only moves the offset back: O(1).
#include <stdlib.h>

#include "base/alloc.h"
#include "cache/cache.h"
#include "cache/kv_store.h"

typedef struct {
    cache_layer base;
    rill_backend *be;
    rill_dtype dtype;
    int64_t k_dim, v_dim; // elements per position
    int step;
    int64_t capacity;          // positions allocated (a multiple of step)
    int64_t offset;            // positions filled
    void *k;                   // [capacity][k_dim] of dtype
    void *v;                   // [capacity][v_dim] of dtype (v_dim 0: values are read from the keys, cache.h)
    const int32_t *dev_offset; // device I32 [1] while bound (bind_device), else NULL
} kv_cache;

static rill_tensor view(const kv_cache *c, void *data, int64_t dim, int64_t rows) {
    return rill_tensor_2d(c->dtype, rows, dim, data);
}

static rill_status grow(kv_cache *c, rill_stream *s, int64_t need) {
    int64_t cap = (need + c->step - 1) / c->step * c->step;
    size_t es = dtype_size(c->dtype);
    void *k = c->be->ops->alloc(c->be, (size_t)(cap * c->k_dim) * es);
    void *v = k ? c->be->ops->alloc(c->be, (size_t)(cap * c->v_dim) * es + 1) : NULL;
    if (!k || !v) {
        c->be->ops->free(c->be, k);
        return rill_fail(RILL_ENOMEM, "KVCache: cannot grow to %lld positions", (long long)cap);
    }
    if (c->offset > 0) {
        rill_tensor src = view(c, c->k, c->k_dim, c->offset), dst = view(c, k, c->k_dim, c->offset);
        c->be->ops->copy(s, &dst, &src);
        if (c->v_dim) {
            src = view(c, c->v, c->v_dim, c->offset);
            dst = view(c, v, c->v_dim, c->offset);
            c->be->ops->copy(s, &dst, &src);
        }
    }
    c->be->ops->sync(s); // the old buffers may still be read by queued work
    c->be->ops->free(c->be, c->k);
    c->be->ops->free(c->be, c->v);
    c->k = k;
    c->v = v;
    c->capacity = cap;
    return RILL_OK;
}

static rill_status kv_update(cache_layer *base, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                             rill_tensor *keys, rill_tensor *values) {
    kv_cache *c = (kv_cache *)base;
    int64_t n = k->rows;
    if (k->cols != c->k_dim || v->cols != c->v_dim || v->rows != n)
        return rill_fail(RILL_EINVAL,
                         "KVCache: update of [%lld][%lld] keys and [%lld][%lld] values, cache holds %lld and %lld",
                         (long long)n, (long long)k->cols, (long long)v->rows, (long long)v->cols, (long long)c->k_dim,
                         (long long)c->v_dim);
    if (c->dev_offset) { // a captured step: the row comes from the device counter
        rill_tensor dk = view(c, c->k, c->k_dim, c->capacity), dv = view(c, c->v, c->v_dim, c->capacity);
        c->be->ops->copy_at(s, &dk, k, c->v_dim ? &dv : NULL, c->v_dim ? v : NULL, c->dev_offset);
        *keys = dk;
        *values = c->v_dim ? dv : dk;
        return RILL_OK;
    }
    if (c->offset + n > c->capacity) {
        rill_status st = grow(c, s, c->offset + n);
        if (st != RILL_OK) return st;
    }
    size_t es = dtype_size(c->dtype);
    rill_tensor dk = view(c, (char *)c->k + (size_t)(c->offset * c->k_dim) * es, c->k_dim, n);
    rill_tensor dv = view(c, (char *)c->v + (size_t)(c->offset * c->v_dim) * es, c->v_dim, n);
    c->be->ops->copy(s, &dk, k);
    if (c->v_dim) c->be->ops->copy(s, &dv, v);
    c->offset += n;
    *keys = view(c, c->k, c->k_dim, c->offset);
    *values = c->v_dim ? view(c, c->v, c->v_dim, c->offset) : *keys;
    return RILL_OK;
}

// A captured step's write of k and v and its attention in one backend op where the backend has it
// (attention_append); otherwise update_and_fetch, then attention, as every cache does.
static rill_status kv_attend(cache_layer *base, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                             const rill_tensor *q, const rill_attn_params *p, rill_tensor *out) {
    kv_cache *c = (kv_cache *)base;
    const rill_backend_ops *op = c->be->ops;
    rill_tensor keys, values;
    if (c->dev_offset && c->v_dim && op->attention_append && k->rows == 1 && k->cols == c->k_dim &&
        v->cols == c->v_dim && v->rows == 1) {
        keys = view(c, c->k, c->k_dim, c->capacity);
        values = view(c, c->v, c->v_dim, c->capacity);
        op->attention_append(s, out, q, k, v, &keys, &values, c->dev_offset, p);
        return RILL_OK;
    }
    rill_status st = kv_update(base, s, k, v, &keys, &values);
    if (st != RILL_OK) return st;
    op->attention(s, out, q, &keys, &values, p);
    return RILL_OK;
}

static rill_attn_mask kv_make_mask(const cache_layer *base, int n, int window) {
    const kv_cache *c = (const kv_cache *)base;
    rill_attn_mask m = {c->offset, 0, window, c->dev_offset};
    return m;
}

static rill_status kv_bind_device(cache_layer *base, rill_stream *s, const int32_t *dev_offset, int64_t reserve) {
    kv_cache *c = (kv_cache *)base;
    if (!c->be->ops->copy_at)
        return rill_fail(RILL_EUNSUPPORTED, "KVCache: backend %s has no copy_at", c->be->ops->name);
    if (reserve > c->capacity) {
        int64_t keep = c->offset;
        if (c->dev_offset) c->offset = c->capacity; // bound already: the host offset is stale, keep every row
        rill_status st = grow(c, s, reserve);
        c->offset = keep;
        if (st != RILL_OK) return st;
    }
    c->dev_offset = dev_offset;
    return RILL_OK;
}

static void kv_unbind_device(cache_layer *base, int64_t offset) {
    kv_cache *c = (kv_cache *)base;
    c->dev_offset = NULL;
    c->offset = offset < 0 ? 0 : offset > c->capacity ? c->capacity : offset;
}

static int64_t kv_offset(const cache_layer *base) { return ((const kv_cache *)base)->offset; }
static bool kv_is_trimmable(const cache_layer *base) { return true; }

static int64_t kv_trim(cache_layer *base, int64_t n) {
    kv_cache *c = (kv_cache *)base;
    if (n > c->offset) n = c->offset;
    if (n < 0) n = 0;
    c->offset -= n;
    return n;
}

static size_t kv_nbytes(const cache_layer *base) {
    const kv_cache *c = (const kv_cache *)base;
    return (size_t)(c->capacity * (c->k_dim + c->v_dim)) * dtype_size(c->dtype);
}

static void kv_destroy(cache_layer *base) {
    kv_cache *c = (kv_cache *)base;
    c->be->ops->free(c->be, c->k);
    c->be->ops->free(c->be, c->v);
    rill_free(c);
}

static rill_status kv_to_quantized(cache_layer *base, rill_stream *s, int group_size, int bits, cache_layer **out) {
    kv_cache *c = (kv_cache *)base;
    if (c->dev_offset) return rill_fail(RILL_EINVAL, "KVCache: cannot quantize while bound to a device offset");
    rill_tensor k = view(c, c->k, c->k_dim, c->offset), v = view(c, c->v, c->v_dim, c->offset);
    return quantized_cache_create(c->be, s, cache_kv_scale_dtype(c->dtype), c->k_dim, c->v_dim, group_size, bits, &k,
                                  &v, out);
}

// mlx-lm's KVCache.state: (keys, values, offset), the arrays cut to the offset.
static rill_status kv_get_state(const cache_layer *base, rill_stream *s, int n_kv_heads, cache_state *out) {
    const kv_cache *c = (const kv_cache *)base;
    rill_status st = kv_state_array(out, c->be, s, "0", c->dtype, c->k, c->offset, n_kv_heads, c->k_dim / n_kv_heads);
    if (st == RILL_OK)
        st = kv_state_array(out, c->be, s, "1", c->dtype, c->v, c->offset, n_kv_heads, c->v_dim / n_kv_heads);
    kv_state_int(out, "2", c->offset);
    return st;
}

static const cache_ops kv_ops = {
    .class_name = "KVCache",
    .update_and_fetch = kv_update,
    .attend = kv_attend,
    .make_mask = kv_make_mask,
    .offset = kv_offset,
    .is_trimmable = kv_is_trimmable,
    .trim = kv_trim,
    .nbytes = kv_nbytes,
    .destroy = kv_destroy,
    .bind_device = kv_bind_device,
    .unbind_device = kv_unbind_device,
    .to_quantized = kv_to_quantized,
    .get_state = kv_get_state,
};

rill_status kv_cache_create(rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int step,
                            cache_layer **out) {
    *out = NULL;
    if (step < 0 || k_dim <= 0 || v_dim < 0)
        return rill_fail(RILL_EINVAL, "KVCache: step %d, key width %lld, value width %lld", step, (long long)k_dim,
                         (long long)v_dim);
    kv_cache *c = rill_calloc(1, sizeof *c);
    if (!c) return RILL_ENOMEM;
    c->base.ops = &kv_ops;
    c->be = be;
    c->dtype = dtype;
    c->k_dim = k_dim;
    c->v_dim = v_dim;
    c->step = step ? step : 256;
    *out = &c->base;
    return RILL_OK;
}
