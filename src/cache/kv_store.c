// kv_store.c: row storage for the rotating and quantized caches (kv_store.h). Row copies go through
// the backend's copy op: plain rows in their dtype; packed words as f32 views (a same-dtype copy
// moves the bits unchanged) and scales and biases in their own dtype.
#include "cache/kv_store.h"

#include "base/dtype.h"

static rill_qkv qkv_at(const rill_qkv *t, int64_t r0, int64_t n) {
    rill_qkv v = *t;
    size_t es = dtype_size(t->scale_dtype);
    v.rows = n;
    v.packed = t->packed + r0 * (t->cols * t->bits / 32);
    v.scales = (char *)t->scales + (size_t)(r0 * (t->cols / t->group_size)) * es;
    v.biases = (char *)t->biases + (size_t)(r0 * (t->cols / t->group_size)) * es;
    return v;
}

rill_status kv_store_init(kv_store *st, rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int bits,
                          int group_size) {
    *st = (kv_store){be, k_dim, v_dim, dtype, bits, group_size, 0, NULL, NULL, {0}, {0}};
    if (bits) {
        if (!be->ops->kv_quantize || !be->ops->attention_q)
            return rill_fail(RILL_EUNSUPPORTED, "QuantizedKVCache: backend %s has no quantized attention",
                             be->ops->name);
        if (bits != 4 && bits != 8)
            return rill_fail(RILL_EINVAL, "QuantizedKVCache: %d bits (4 or 8 are supported)", bits);
        if (group_size != 32 && group_size != 64 && group_size != 128)
            return rill_fail(RILL_EINVAL, "QuantizedKVCache: group size %d (32, 64 or 128)", group_size);
        if (k_dim % group_size || v_dim % group_size)
            return rill_fail(RILL_EINVAL, "QuantizedKVCache: rows of %lld and %lld elements are not whole groups of %d",
                             (long long)k_dim, (long long)v_dim, group_size);
        st->qk = (rill_qkv){bits, group_size, dtype, 0, k_dim, NULL, NULL, NULL};
        st->qv = (rill_qkv){bits, group_size, dtype, 0, v_dim, NULL, NULL, NULL};
    }
    return RILL_OK;
}

size_t kv_row_bytes(rill_dtype dtype, int64_t k_dim, int64_t v_dim, int bits, int group_size) {
    if (!bits) return (size_t)(k_dim + v_dim) * dtype_size(dtype);
    int64_t d = k_dim + v_dim;
    return (size_t)(d * bits / 8) + (size_t)(2 * d / group_size) * dtype_size(dtype);
}

size_t kv_store_row_bytes(const kv_store *st) {
    return kv_row_bytes(st->dtype, st->k_dim, st->v_dim, st->bits, st->group_size);
}

size_t kv_store_nbytes(const kv_store *st) { return (size_t)st->cap * kv_store_row_bytes(st); }

static void release(rill_backend *be, void **p) {
    for (int i = 0; i < 6; i++)
        if (p[i]) be->ops->free(be, p[i]);
}

rill_status kv_store_resize(kv_store *st, rill_stream *s, int64_t cap, int64_t keep) {
    kv_store n = *st;
    rill_backend *be = st->be;
    size_t es = dtype_size(st->dtype);
    void *bufs[6] = {0};
    bool ok = true;
    if (!st->bits) {
        bufs[0] = n.k = be->ops->alloc(be, (size_t)(cap * st->k_dim) * es + 1);
        bufs[1] = n.v = be->ops->alloc(be, (size_t)(cap * st->v_dim) * es + 1);
        ok = n.k && n.v;
    } else {
        rill_qkv *q[2] = {&n.qk, &n.qv};
        for (int i = 0; i < 2; i++) {
            int64_t d = q[i]->cols;
            bufs[3 * i] = q[i]->packed = be->ops->alloc(be, (size_t)(cap * d * st->bits / 32) * 4 + 1);
            bufs[3 * i + 1] = q[i]->scales = be->ops->alloc(be, (size_t)(cap * d / st->group_size) * es + 1);
            bufs[3 * i + 2] = q[i]->biases = be->ops->alloc(be, (size_t)(cap * d / st->group_size) * es + 1);
            ok = ok && q[i]->packed && q[i]->scales && q[i]->biases;
            q[i]->rows = cap;
        }
    }
    if (!ok) {
        release(be, bufs);
        return rill_fail(RILL_ENOMEM, "KV cache: cannot allocate %lld positions", (long long)cap);
    }
    n.cap = cap;
    if (keep > 0) kv_store_copy(&n, 0, st, 0, keep < cap ? keep : cap, s);
    be->ops->sync(s); // the old buffers may still be read by queued work
    kv_store_free(st);
    *st = n;
    return RILL_OK;
}

void kv_store_free(kv_store *st) {
    void *bufs[6] = {st->k, st->v, st->qk.packed, st->qk.scales, st->qk.biases, st->qv.packed};
    release(st->be, bufs);
    if (st->qv.scales) st->be->ops->free(st->be, st->qv.scales);
    if (st->qv.biases) st->be->ops->free(st->be, st->qv.biases);
    st->k = st->v = NULL;
    st->qk.packed = st->qv.packed = NULL;
    st->qk.scales = st->qk.biases = st->qv.scales = st->qv.biases = NULL;
    st->cap = 0;
}

static void copy2d(rill_stream *s, const rill_backend *be, rill_dtype dt, void *dst, const void *src, int64_t rows,
                   int64_t cols) {
    if (rows <= 0 || cols <= 0) return;
    rill_tensor d = rill_tensor_2d(dt, rows, cols, dst), x = rill_tensor_2d(dt, rows, cols, (void *)src);
    be->ops->copy(s, &d, &x);
}

void kv_store_copy(kv_store *dst, int64_t d0, const kv_store *src, int64_t s0, int64_t n, rill_stream *s) {
    if (n <= 0) return;
    size_t es = dtype_size(src->dtype);
    if (!src->bits) {
        copy2d(s, src->be, src->dtype, (char *)dst->k + (size_t)(d0 * src->k_dim) * es,
               (const char *)src->k + (size_t)(s0 * src->k_dim) * es, n, src->k_dim);
        copy2d(s, src->be, src->dtype, (char *)dst->v + (size_t)(d0 * src->v_dim) * es,
               (const char *)src->v + (size_t)(s0 * src->v_dim) * es, n, src->v_dim);
        return;
    }
    const rill_qkv *from[2] = {&src->qk, &src->qv};
    rill_qkv *to[2] = {&dst->qk, &dst->qv};
    for (int i = 0; i < 2; i++) {
        rill_qkv a = qkv_at(to[i], d0, n), b = qkv_at(from[i], s0, n);
        int64_t words = b.cols * b.bits / 32, groups = b.cols / b.group_size;
        copy2d(s, src->be, DTYPE_F32, a.packed, b.packed, n, words);
        copy2d(s, src->be, src->dtype, a.scales, b.scales, n, groups);
        copy2d(s, src->be, src->dtype, a.biases, b.biases, n, groups);
    }
}

void kv_store_write(kv_store *st, rill_stream *s, int64_t r0, const rill_tensor *k, const rill_tensor *v) {
    int64_t n = k->rows;
    if (!st->bits) {
        size_t es = dtype_size(st->dtype);
        rill_tensor dk = rill_tensor_2d(st->dtype, n, st->k_dim, (char *)st->k + (size_t)(r0 * st->k_dim) * es);
        rill_tensor dv = rill_tensor_2d(st->dtype, n, st->v_dim, (char *)st->v + (size_t)(r0 * st->v_dim) * es);
        st->be->ops->copy(s, &dk, k);
        if (st->v_dim) st->be->ops->copy(s, &dv, v);
        return;
    }
    rill_qkv qk = qkv_at(&st->qk, r0, n), qv = qkv_at(&st->qv, r0, n);
    st->be->ops->kv_quantize(s, &qk, k);
    if (st->v_dim) st->be->ops->kv_quantize(s, &qv, v);
}

rill_tensor kv_store_view(const kv_store *st, bool values, int64_t n) {
    return rill_tensor_2d(st->dtype, n, values ? st->v_dim : st->k_dim, values ? st->v : st->k);
}

rill_qkv kv_store_qview(const kv_store *st, bool values, int64_t n) { return qkv_at(values ? &st->qv : &st->qk, 0, n); }

void kv_store_attend(const kv_store *st, rill_stream *s, int64_t n, rill_tensor *out, const rill_tensor *q,
                     const rill_attn_params *p) {
    bool vk = !st->v_dim; // values read from the keys (cache.h)
    if (!st->bits) {
        rill_tensor k = kv_store_view(st, false, n), v = kv_store_view(st, !vk, n);
        st->be->ops->attention(s, out, q, &k, &v, p);
    } else {
        rill_qkv k = kv_store_qview(st, false, n), v = kv_store_qview(st, !vk, n);
        st->be->ops->attention_q(s, out, q, &k, &v, p);
    }
}
