// kv_cache.c: mlx-lm's KVCache. Keys and values live in device buffers of `capacity` positions,
// grown in steps of `step` (256 unless set); a write lands at [offset, offset + n) and the views
// returned cover [0, offset + n). trim(n) only moves the offset back: O(1).
#include <stdlib.h>

#include "base/alloc.h"
#include "cache/cache.h"

typedef struct {
    cache_layer base;
    rill_backend *be;
    rill_dtype dtype;
    int64_t k_dim, v_dim; // elements per position
    int step;
    int64_t capacity; // positions allocated (a multiple of step)
    int64_t offset;   // positions filled
    void *k;          // [capacity][k_dim] of dtype
    void *v;          // [capacity][v_dim] of dtype
} kv_cache;

static rill_tensor view(const kv_cache *c, void *data, int64_t dim, int64_t rows) {
    return rill_tensor_2d(c->dtype, rows, dim, data);
}

static rill_status grow(kv_cache *c, rill_stream *s, int64_t need) {
    int64_t cap = (need + c->step - 1) / c->step * c->step;
    size_t es = dtype_size(c->dtype);
    void *k = c->be->ops->alloc(c->be, (size_t)(cap * c->k_dim) * es);
    void *v = k ? c->be->ops->alloc(c->be, (size_t)(cap * c->v_dim) * es) : NULL;
    if (!k || !v) {
        c->be->ops->free(c->be, k);
        return rill_fail(RILL_ENOMEM, "KVCache: cannot grow to %lld positions", (long long)cap);
    }
    if (c->offset > 0) {
        rill_tensor src = view(c, c->k, c->k_dim, c->offset), dst = view(c, k, c->k_dim, c->offset);
        c->be->ops->copy(s, &dst, &src);
        src = view(c, c->v, c->v_dim, c->offset);
        dst = view(c, v, c->v_dim, c->offset);
        c->be->ops->copy(s, &dst, &src);
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
    if (c->offset + n > c->capacity) {
        rill_status st = grow(c, s, c->offset + n);
        if (st != RILL_OK) return st;
    }
    size_t es = dtype_size(c->dtype);
    rill_tensor dk = view(c, (char *)c->k + (size_t)(c->offset * c->k_dim) * es, c->k_dim, n);
    rill_tensor dv = view(c, (char *)c->v + (size_t)(c->offset * c->v_dim) * es, c->v_dim, n);
    c->be->ops->copy(s, &dk, k);
    c->be->ops->copy(s, &dv, v);
    c->offset += n;
    *keys = view(c, c->k, c->k_dim, c->offset);
    *values = view(c, c->v, c->v_dim, c->offset);
    return RILL_OK;
}

static rill_attn_mask kv_make_mask(const cache_layer *base, int n, int window) {
    const kv_cache *c = (const kv_cache *)base;
    rill_attn_mask m = {c->offset, 0, window};
    return m;
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

static const cache_ops kv_ops = {
    .class_name = "KVCache",
    .update_and_fetch = kv_update,
    .make_mask = kv_make_mask,
    .offset = kv_offset,
    .is_trimmable = kv_is_trimmable,
    .trim = kv_trim,
    .nbytes = kv_nbytes,
    .destroy = kv_destroy,
};

rill_status kv_cache_create(rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int step,
                            cache_layer **out) {
    *out = NULL;
    if (step < 0 || k_dim <= 0 || v_dim <= 0)
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
