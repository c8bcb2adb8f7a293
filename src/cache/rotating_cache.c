// rotating_cache.c: mlx-lm's RotatingKVCache(max_size, keep). A ring buffer whose first `keep`
// positions (attention sinks) are never evicted; wrapping goes back to index `keep`. One token is
// written in place; a chunk of several first puts the buffer in temporal order and drops the oldest
// non-kept rows so that the buffer holds max_size - 1 + S rows and every query of the chunk sees
// max_size positions. Rows may be plain or quantized (kv_store): rill quantizes a rotating cache,
// which mlx-lm cannot. The views the attention sees are in buffer order, masked in buffer coordinates
// as mlx-lm masks them.
#include <stdio.h>

#include "base/alloc.h"
#include "cache/cache.h"
#include "cache/kv_store.h"

typedef struct {
    cache_layer base;
    kv_store st;      // rows [0, len) in use, st.cap allocated
    int64_t len;      // mlx-lm's keys.shape[2]
    int64_t offset;   // positions seen
    int64_t idx;      // mlx-lm's _idx: where the next in-place write goes
    int64_t max_size; // positions kept
    int keep;         // leading positions never evicted
    int step;         // growth while below max_size (256)
} rot_cache;

// Replaces the buffer by the concatenation of row ranges of the old one (plus room for `extra`).
static rill_status gather(rot_cache *c, rill_stream *s, const int64_t (*ranges)[2], int n_ranges, int64_t extra) {
    int64_t rows = 0;
    for (int i = 0; i < n_ranges; i++)
        rows += ranges[i][1] - ranges[i][0];
    kv_store n = c->st;
    n.cap = 0;
    n.k = n.v = NULL;
    n.qk.packed = n.qv.packed = NULL;
    n.qk.scales = n.qk.biases = n.qv.scales = n.qv.biases = NULL;
    rill_status st = kv_store_resize(&n, s, rows + extra > 0 ? rows + extra : 1, 0);
    if (st != RILL_OK) return st;
    int64_t at = 0;
    for (int i = 0; i < n_ranges; i++) {
        kv_store_copy(&n, at, &c->st, ranges[i][0], ranges[i][1] - ranges[i][0], s);
        at += ranges[i][1] - ranges[i][0];
    }
    c->st.be->ops->sync(s);
    kv_store_free(&c->st);
    c->st = n;
    c->len = rows;
    return RILL_OK;
}

// Temporal order (mlx-lm's _temporal_order), then keep max_size - 1 rows, then room for n more.
static rill_status update_concat(rot_cache *c, rill_stream *s, const rill_tensor *k, const rill_tensor *v) {
    int64_t n = k->rows;
    rill_status st;
    if (c->len == 0) {
        if ((st = kv_store_resize(&c->st, s, n, 0)) != RILL_OK) return st;
    } else {
        int64_t r[3][2];
        int nr = 0;
        if (c->idx == c->len) {
            r[nr][0] = 0, r[nr][1] = c->len, nr++;
        } else if (c->idx < c->offset) {
            r[nr][0] = 0, r[nr][1] = c->keep, nr++;
            r[nr][0] = c->idx, r[nr][1] = c->len, nr++;
            r[nr][0] = c->keep, r[nr][1] = c->idx, nr++;
        } else {
            r[nr][0] = 0, r[nr][1] = c->idx, nr++;
        }
        int64_t L = 0;
        for (int i = 0; i < nr; i++)
            L += r[i][1] - r[i][0];
        int64_t trim = L - c->max_size + 1;
        if (trim > 0) { // drop the oldest non-kept rows: re-cut the ordered ranges
            int64_t cut[6][2], m = 0, pos = 0;
            for (int i = 0; i < nr; i++)
                for (int64_t a = r[i][0]; a < r[i][1];) {
                    int64_t b = r[i][1];
                    // logical rows [pos, pos + b - a); keep logical [0, keep) and [keep + trim, L)
                    int64_t lo = pos, hi = pos + (b - a);
                    int64_t k0 = lo, k1 = hi < c->keep ? hi : c->keep; // part in [0, keep)
                    if (k1 > k0) cut[m][0] = a + (k0 - lo), cut[m][1] = a + (k1 - lo), m++;
                    int64_t t0 = lo > c->keep + trim ? lo : c->keep + trim;
                    if (hi > t0) cut[m][0] = a + (t0 - lo), cut[m][1] = b, m++;
                    pos = hi;
                    a = b;
                }
            st = gather(c, s, (const int64_t(*)[2])cut, (int)m, n);
        } else
            st = gather(c, s, (const int64_t(*)[2])r, nr, n);
        if (st != RILL_OK) return st;
    }
    kv_store_write(&c->st, s, c->len, k, v);
    c->len += n;
    c->offset += n;
    c->idx = c->len;
    return RILL_OK;
}

static rill_status update_in_place(rot_cache *c, rill_stream *s, const rill_tensor *k, const rill_tensor *v) {
    rill_status st;
    int64_t prev = c->offset;
    if (c->len == 0 || (prev >= c->len && c->len < c->max_size)) {
        int64_t add = c->max_size - prev < c->step ? c->max_size - prev : c->step;
        if (c->len + add > c->st.cap && (st = kv_store_resize(&c->st, s, c->len + add, c->len)) != RILL_OK) return st;
        c->len += add;
        c->idx = prev;
    }
    int64_t trim = c->len - c->max_size;
    if (trim > 0) {
        int64_t r[2][2] = {{0, c->keep}, {trim + c->keep, c->len}};
        if ((st = gather(c, s, (const int64_t(*)[2])r, 2, 0)) != RILL_OK) return st;
        c->idx = c->max_size;
    }
    if (c->idx == c->max_size) c->idx = c->keep;
    kv_store_write(&c->st, s, c->idx, k, v);
    c->offset += 1;
    c->idx += 1;
    return RILL_OK;
}

static rill_status rot_attend(cache_layer *base, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                              const rill_tensor *q, const rill_attn_params *p, rill_tensor *out) {
    rot_cache *c = (rot_cache *)base;
    int64_t n = k->rows;
    if (k->cols != c->st.k_dim || v->cols != c->st.v_dim || v->rows != n)
        return rill_fail(RILL_EINVAL, "RotatingKVCache: update of %lld x %lld keys, cache rows hold %lld", (long long)n,
                         (long long)k->cols, (long long)c->st.k_dim);
    rill_attn_params ap = *p;
    rill_status st;
    if (n == 1) {
        if (p->mask.window > 0 && p->mask.window < c->max_size && c->offset >= p->mask.window)
            return rill_fail(RILL_EUNSUPPORTED, "RotatingKVCache: a window of %d inside a ring of %lld", p->mask.window,
                             (long long)c->max_size);
        if ((st = update_in_place(c, s, k, v)) != RILL_OK) return st;
        int64_t rows = c->offset < c->len ? c->offset : c->len;
        ap.mask = (rill_attn_mask){rows - 1, 0, 0, NULL}; // every kept row is visible
        kv_store_attend(&c->st, s, rows, out, q, &ap);
        return RILL_OK;
    }
    if ((st = update_concat(c, s, k, v)) != RILL_OK) return st;
    // mlx-lm: create_causal_mask(N, offset = L - N, window = window or max_size), in buffer order
    int w = p->mask.window > 0 ? p->mask.window : (int)c->max_size;
    ap.mask = (rill_attn_mask){c->len - n, 0, w, NULL};
    kv_store_attend(&c->st, s, c->len, out, q, &ap);
    return RILL_OK;
}

static rill_status rot_update(cache_layer *base, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                              rill_tensor *keys, rill_tensor *values) {
    return rill_fail(RILL_EUNSUPPORTED, "RotatingKVCache: its rows are in ring order; attention goes through attend");
}

static rill_attn_mask rot_make_mask(const cache_layer *base, int n, int window) {
    const rot_cache *c = (const rot_cache *)base;
    int64_t o = c->offset < c->max_size - 1 ? c->offset : c->max_size - 1;
    rill_attn_mask m = {o, 0, window, NULL}; // attend() sets the exact mask after the update
    return m;
}

static int64_t rot_offset(const cache_layer *base) { return ((const rot_cache *)base)->offset; }
static bool rot_is_trimmable(const cache_layer *base) {
    const rot_cache *c = (const rot_cache *)base;
    return c->offset < c->max_size;
}

static int64_t rot_trim(cache_layer *base, int64_t n) {
    rot_cache *c = (rot_cache *)base;
    if (n > c->offset) n = c->offset;
    if (n < 0) n = 0;
    c->offset -= n;
    c->idx -= n;
    return n;
}

static size_t rot_nbytes(const cache_layer *base) { return kv_store_nbytes(&((const rot_cache *)base)->st); }

static void rot_destroy(cache_layer *base) {
    rot_cache *c = (rot_cache *)base;
    kv_store_free(&c->st);
    rill_free(c);
}

static rill_status rot_to_quantized(cache_layer *base, rill_stream *s, int group_size, int bits, cache_layer **out) {
    rot_cache *c = (rot_cache *)base;
    rill_status st = rotating_cache_create(c->st.be, cache_kv_scale_dtype(c->st.dtype), c->st.k_dim, c->st.v_dim,
                                           c->max_size, c->keep, bits, group_size, out);
    if (st != RILL_OK) return st;
    rot_cache *q = (rot_cache *)*out;
    if (c->len > 0) {
        if ((st = kv_store_resize(&q->st, s, c->st.cap, 0)) != RILL_OK) {
            rot_destroy(*out);
            *out = NULL;
            return st;
        }
        rill_tensor k = kv_store_view(&c->st, false, c->len), v = kv_store_view(&c->st, true, c->len);
        kv_store_write(&q->st, s, 0, &k, &v);
    }
    q->len = c->len;
    q->offset = c->offset;
    q->idx = c->idx;
    return RILL_OK;
}

// mlx-lm's state: (keys, values, offset, keep, max_size, _idx), the buffer as it lies. The
// quantized variant (rill only) stores each of keys and values as (packed, scales, biases).
static rill_status rot_get_state(const cache_layer *base, rill_stream *s, int H, cache_state *out) {
    const rot_cache *c = (const rot_cache *)base;
    rill_status st = RILL_OK;
    if (!c->st.bits) {
        st = kv_state_array(out, c->st.be, s, "0", c->st.dtype, c->st.k, c->len, H, c->st.k_dim / H);
        if (st == RILL_OK) st = kv_state_array(out, c->st.be, s, "1", c->st.dtype, c->st.v, c->len, H, c->st.v_dim / H);
    } else {
        const rill_qkv *t[2] = {&c->st.qk, &c->st.qv};
        for (int i = 0; i < 2 && st == RILL_OK; i++) {
            char p[3][8];
            for (int j = 0; j < 3; j++)
                snprintf(p[j], sizeof p[j], "%d.%d", i, j);
            int64_t D = t[i]->cols / H;
            st = kv_state_array(out, c->st.be, s, p[0], DTYPE_U32, t[i]->packed, c->len, H, D * t[i]->bits / 32);
            if (st == RILL_OK)
                st = kv_state_array(out, c->st.be, s, p[1], t[i]->scale_dtype, t[i]->scales, c->len, H,
                                    D / t[i]->group_size);
            if (st == RILL_OK)
                st = kv_state_array(out, c->st.be, s, p[2], t[i]->scale_dtype, t[i]->biases, c->len, H,
                                    D / t[i]->group_size);
        }
    }
    kv_state_int(out, "2", c->offset);
    kv_state_int(out, "3", c->keep);
    kv_state_int(out, "4", c->max_size);
    kv_state_int(out, "5", c->idx);
    if (c->st.bits) {
        kv_state_int(out, "6", c->st.group_size);
        kv_state_int(out, "7", c->st.bits);
    }
    return st;
}

static const cache_ops rot_ops = {
    .class_name = "RotatingKVCache",
    .update_and_fetch = rot_update,
    .make_mask = rot_make_mask,
    .offset = rot_offset,
    .is_trimmable = rot_is_trimmable,
    .trim = rot_trim,
    .nbytes = rot_nbytes,
    .destroy = rot_destroy,
    .attend = rot_attend,
    .to_quantized = rot_to_quantized,
    .get_state = rot_get_state,
};

static const cache_ops rot_q_ops = {
    .class_name = "QuantizedRotatingKVCache",
    .update_and_fetch = rot_update,
    .make_mask = rot_make_mask,
    .offset = rot_offset,
    .is_trimmable = rot_is_trimmable,
    .trim = rot_trim,
    .nbytes = rot_nbytes,
    .destroy = rot_destroy,
    .attend = rot_attend,
    .get_state = rot_get_state,
};

rill_status rotating_cache_create(rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int64_t max_size,
                                  int keep, int bits, int group_size, cache_layer **out) {
    *out = NULL;
    if (max_size < 1 || keep < 0 || keep >= max_size)
        return rill_fail(RILL_EINVAL, "RotatingKVCache: max_size %lld with keep %d", (long long)max_size, keep);
    rot_cache *c = rill_calloc(1, sizeof *c);
    if (!c) return RILL_ENOMEM;
    c->base.ops = bits ? &rot_q_ops : &rot_ops;
    c->max_size = max_size;
    c->keep = keep;
    c->step = 256;
    rill_status st = kv_store_init(&c->st, be, dtype, k_dim, v_dim, bits, group_size);
    if (st != RILL_OK) {
        rill_free(c);
        return st;
    }
    *out = &c->base;
    return RILL_OK;
}

// For the prompt-cache loader: the buffer's `len` rows from host arrays in token-major order
// (plain: k, v; quantized: k packed, scales, biases, then v's), and the ring's counters.
rill_status rotating_cache_load(cache_layer *base, rill_stream *s, int64_t len, int64_t offset, int64_t idx,
                                const void *const host[6]) {
    rot_cache *c = (rot_cache *)base;
    rill_status st = len > 0 ? kv_store_resize(&c->st, s, len, 0) : RILL_OK;
    if (st != RILL_OK) return st;
    rill_backend *be = c->st.be;
    size_t es = dtype_size(c->st.dtype);
    if (!c->st.bits) {
        be->ops->upload(s, c->st.k, host[0], (size_t)(len * c->st.k_dim) * es);
        be->ops->upload(s, c->st.v, host[1], (size_t)(len * c->st.v_dim) * es);
    } else {
        const rill_qkv *t[2] = {&c->st.qk, &c->st.qv};
        for (int i = 0; i < 2; i++) {
            be->ops->upload(s, t[i]->packed, host[3 * i], (size_t)(len * t[i]->cols * t[i]->bits / 32) * 4);
            be->ops->upload(s, t[i]->scales, host[3 * i + 1], (size_t)(len * t[i]->cols / t[i]->group_size) * es);
            be->ops->upload(s, t[i]->biases, host[3 * i + 2], (size_t)(len * t[i]->cols / t[i]->group_size) * es);
        }
    }
    be->ops->sync(s);
    c->len = len;
    c->offset = offset;
    c->idx = idx;
    return RILL_OK;
}
