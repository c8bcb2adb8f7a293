// cache.c: prompt caches as lists of per-layer caches, and the helpers that act on every layer
// (mlx-lm's make_prompt_cache, can_trim_prompt_cache, trim_prompt_cache).
#include "cache/cache.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "cache/kv_store.h"

// An empty list of n_layers layer slots (NULL on allocation failure).
static rill_cache *cache_alloc(int n_layers) {
    rill_cache *c = rill_calloc(1, sizeof *c);
    if (!c) return NULL;
    c->layers = rill_calloc((size_t)n_layers, sizeof *c->layers);
    if (!c->layers) {
        rill_free(c);
        return NULL;
    }
    c->n_layers = n_layers;
    return c;
}

rill_status cache_make_kv(const cache_shape *shape, rill_cache **out) {
    *out = NULL;
    rill_cache *c = cache_alloc(shape->n_layers);
    if (!c) return RILL_ENOMEM;
    for (int l = 0; l < shape->n_layers; l++) {
        rill_status st =
            kv_cache_create(shape->be, shape->dtype, shape->k_dim, shape->v_dim, shape->step, &c->layers[l]);
        if (st != RILL_OK) {
            cache_free(c);
            return st;
        }
    }
    *out = c;
    return RILL_OK;
}

void cache_free(rill_cache *c) {
    if (!c) return;
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l]) c->layers[l]->ops->destroy(c->layers[l]);
    rill_free(c->layers);
    rill_free(c);
}

int64_t cache_offset(const rill_cache *c) { return c->n_layers ? c->layers[0]->ops->offset(c->layers[0]) : 0; }

bool cache_can_trim(const rill_cache *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (!c->layers[l]->ops->is_trimmable(c->layers[l])) return false;
    return true;
}

int64_t cache_trim(rill_cache *c, int64_t n) {
    if (!cache_can_trim(c)) return 0;
    int64_t done = 0;
    for (int l = 0; l < c->n_layers; l++)
        done = c->layers[l]->ops->trim(c->layers[l], n);
    return done;
}

size_t cache_position_bytes(rill_dtype dtype, int64_t k_dim, int64_t v_dim, int bits, int group_size) {
    return kv_row_bytes(bits ? cache_kv_scale_dtype(dtype) : dtype, k_dim, v_dim, bits, group_size);
}

size_t cache_nbytes(const rill_cache *c) {
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        n += c->layers[l]->ops->nbytes(c->layers[l]);
    return n;
}

rill_status cache_bind_device(rill_cache *c, rill_stream *s, const int32_t *dev_offset, int64_t reserve) {
    for (int l = 0; l < c->n_layers; l++)
        if (!c->layers[l]->ops->bind_device)
            return rill_fail(RILL_EUNSUPPORTED, "cache: layer %d (%s) cannot run under a device offset", l,
                             c->layers[l]->ops->class_name);
    for (int l = 0; l < c->n_layers; l++) {
        rill_status st = c->layers[l]->ops->bind_device(c->layers[l], s, dev_offset, reserve);
        if (st != RILL_OK) {
            rill_error_prefix("layer %d", l);
            return st;
        }
    }
    return RILL_OK;
}

void cache_unbind_device(rill_cache *c, int64_t offset) {
    for (int l = 0; l < c->n_layers; l++)
        if (c->layers[l]->ops->unbind_device) c->layers[l]->ops->unbind_device(c->layers[l], offset);
}

// ---- the kinds' shared helpers (cache.h, kv_store.h) ----

void cache_state_free(cache_state *st) {
    for (int i = 0; i < st->n_items; i++)
        rill_free(st->items[i].data);
    st->n_items = 0;
}

void kv_to_heads(const void *src, void *dst, int64_t S, int64_t H, int64_t D, size_t es) {
    for (int64_t t = 0; t < S; t++)
        for (int64_t h = 0; h < H; h++)
            memcpy((char *)dst + (size_t)((h * S + t) * D) * es, (const char *)src + (size_t)((t * H + h) * D) * es,
                   (size_t)D * es);
}

void kv_from_heads(const void *src, void *dst, int64_t S, int64_t H, int64_t D, size_t es) {
    for (int64_t t = 0; t < S; t++)
        for (int64_t h = 0; h < H; h++)
            memcpy((char *)dst + (size_t)((t * H + h) * D) * es, (const char *)src + (size_t)((h * S + t) * D) * es,
                   (size_t)D * es);
}

rill_status kv_state_array(cache_state *st, rill_backend *be, rill_stream *s, const char *path, rill_dtype dt,
                           const void *dev, int64_t S, int64_t H, int64_t D) {
    assert(st->n_items < CACHE_STATE_MAX);
    size_t es = dtype_size(dt), bytes = (size_t)(S * H * D) * es;
    void *tmp = rill_malloc(bytes + 1), *out = rill_malloc(bytes + 1);
    if (!tmp || !out) {
        rill_free(tmp);
        rill_free(out);
        return RILL_ENOMEM;
    }
    if (bytes) be->ops->download(s, tmp, dev, bytes);
    be->ops->sync(s);
    kv_to_heads(tmp, out, S, H, D, es);
    rill_free(tmp);
    cache_item *it = &st->items[st->n_items++];
    memset(it, 0, sizeof *it);
    snprintf(it->path, sizeof it->path, "%s", path);
    it->dtype = dt;
    it->n_dims = 4;
    it->shape[0] = 1;
    it->shape[1] = (uint64_t)H;
    it->shape[2] = (uint64_t)S;
    it->shape[3] = (uint64_t)D;
    it->data = out;
    return RILL_OK;
}

void kv_state_int(cache_state *st, const char *path, int64_t v) {
    assert(st->n_items < CACHE_STATE_MAX);
    cache_item *it = &st->items[st->n_items++];
    memset(it, 0, sizeof *it);
    snprintf(it->path, sizeof it->path, "%s", path);
    it->scalar = true;
    it->value = v;
}

rill_status cache_layer_attend(cache_layer *c, rill_backend *be, rill_stream *s, const rill_tensor *k,
                               const rill_tensor *v, const rill_tensor *q, const rill_attn_params *p,
                               rill_tensor *out) {
    if (c->ops->attend) return c->ops->attend(c, s, k, v, q, p, out);
    rill_tensor keys, values;
    rill_status st = c->ops->update_and_fetch(c, s, k, v, &keys, &values);
    if (st != RILL_OK) return st;
    be->ops->attention(s, out, q, &keys, &values, p);
    return RILL_OK;
}

rill_status cache_maybe_quantize(rill_cache *c, rill_stream *s, int64_t start, int group_size, int bits) {
    if (bits <= 0) return RILL_OK;
    for (int l = 0; l < c->n_layers; l++) {
        cache_layer *cl = c->layers[l];
        if (!cl->ops->to_quantized || cl->ops->offset(cl) < start) continue;
        cache_layer *q;
        rill_status st = cl->ops->to_quantized(cl, s, group_size, bits, &q);
        if (st != RILL_OK) {
            rill_error_prefix("layer %d", l);
            return st;
        }
        cl->ops->destroy(cl);
        c->layers[l] = q;
    }
    return RILL_OK;
}

rill_status cache_make_prompt(const cache_shape *shape, const cache_options *o, rill_cache **out) {
    *out = NULL;
    rill_cache *c = cache_alloc(shape->n_layers);
    if (!c) return RILL_ENOMEM;
    int64_t mx = o ? o->max_kv_size : 0;
    for (int l = 0; l < shape->n_layers; l++) {
        int w = o && o->windows ? o->windows[l] : 0;
        rill_status st;
        if (w > 0 && (mx <= 0 || w <= mx)) // mlx-lm's make_cache for sliding layers: RotatingKVCache(window)
            st = rotating_cache_create(shape->be, shape->dtype, shape->k_dim, shape->v_dim, w, 0, 0, 0, &c->layers[l]);
        else if (mx > 0)
            st = rotating_cache_create(shape->be, shape->dtype, shape->k_dim, shape->v_dim, mx, o->keep, 0, 0,
                                       &c->layers[l]);
        else
            st = kv_cache_create(shape->be, shape->dtype, shape->k_dim, shape->v_dim, shape->step, &c->layers[l]);
        if (st != RILL_OK) {
            cache_free(c);
            return st;
        }
    }
    *out = c;
    return RILL_OK;
}
