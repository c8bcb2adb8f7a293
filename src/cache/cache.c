// cache.c: prompt caches as lists of per-layer caches, and the helpers that act on every layer
// (mlx-lm's make_prompt_cache, can_trim_prompt_cache, trim_prompt_cache).
#include "cache/cache.h"

#include "base/alloc.h"

rill_status cache_make_kv(const cache_shape *shape, rill_cache **out) {
    *out = NULL;
    rill_cache *c = rill_calloc(1, sizeof *c);
    if (!c) return RILL_ENOMEM;
    c->layers = rill_calloc((size_t)shape->n_layers, sizeof *c->layers);
    if (!c->layers) {
        rill_free(c);
        return RILL_ENOMEM;
    }
    c->n_layers = shape->n_layers;
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

size_t cache_nbytes(const rill_cache *c) {
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        n += c->layers[l]->ops->nbytes(c->layers[l]);
    return n;
}
