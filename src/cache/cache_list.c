// cache_list.c: mlx-lm's CacheList: several caches serving one layer (MLA plus an indexer, a hybrid
// layer). Trimmable only when every part is; trim trims each. The decoder reaches the first part
// (the attention cache); the others belong to whatever layer code owns them.
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "cache/cache.h"

typedef struct {
    cache_layer base;
    int n;
    cache_layer **parts; // [n], owned
} cache_list;

static cache_layer *first(const cache_layer *b) { return ((const cache_list *)b)->parts[0]; }

static rill_status cl_update(cache_layer *b, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                             rill_tensor *keys, rill_tensor *values) {
    cache_layer *f = first(b);
    return f->ops->update_and_fetch(f, s, k, v, keys, values);
}

static rill_attn_mask cl_make_mask(const cache_layer *b, int n, int window) {
    const cache_layer *f = first(b);
    return f->ops->make_mask(f, n, window);
}

static int64_t cl_offset(const cache_layer *b) {
    const cache_layer *f = first(b);
    return f->ops->offset(f);
}

static bool cl_is_trimmable(const cache_layer *b) {
    const cache_list *c = (const cache_list *)b;
    for (int i = 0; i < c->n; i++)
        if (!c->parts[i]->ops->is_trimmable(c->parts[i])) return false;
    return true;
}

static int64_t cl_trim(cache_layer *b, int64_t n) {
    cache_list *c = (cache_list *)b;
    int64_t m = 0;
    for (int i = 0; i < c->n; i++)
        m = c->parts[i]->ops->trim(c->parts[i], n);
    return m;
}

static size_t cl_nbytes(const cache_layer *b) {
    const cache_list *c = (const cache_list *)b;
    size_t t = 0;
    for (int i = 0; i < c->n; i++)
        t += c->parts[i]->ops->nbytes(c->parts[i]);
    return t;
}

static void cl_destroy(cache_layer *b) {
    cache_list *c = (cache_list *)b;
    for (int i = 0; i < c->n; i++)
        c->parts[i]->ops->destroy(c->parts[i]);
    rill_free(c->parts);
    rill_free(c);
}

// mlx-lm's state: [(part state, part class name), ...] -> items "j.0.<k>" and the name at "j.1"
// (a string; prompt_cache.c writes it as mlx-lm does).
static rill_status cl_get_state(const cache_layer *b, rill_stream *s, int H, cache_state *out) {
    const cache_list *c = (const cache_list *)b;
    for (int i = 0; i < c->n; i++) {
        cache_state part = {0};
        rill_status st = c->parts[i]->ops->get_state ? c->parts[i]->ops->get_state(c->parts[i], s, H, &part)
                                                     : rill_fail(RILL_EUNSUPPORTED, "CacheList: a part has no state");
        if (st != RILL_OK || out->n_items + part.n_items + 1 > CACHE_STATE_MAX) {
            cache_state_free(&part);
            return st != RILL_OK ? st : rill_fail(RILL_ERANGE, "CacheList: too many state items");
        }
        for (int j = 0; j < part.n_items; j++) {
            cache_item *it = &out->items[out->n_items++];
            *it = part.items[j];
            char tmp[sizeof it->path];
            memcpy(tmp, it->path, sizeof tmp);
            if (snprintf(it->path, sizeof it->path, "%d.0.%s", i, tmp) >= (int)sizeof it->path)
                return rill_fail(RILL_ERANGE, "CacheList: state path too long");
        }
        cache_item *name = &out->items[out->n_items++];
        memset(name, 0, sizeof *name);
        snprintf(name->path, sizeof name->path, "%d.1", i);
        name->dtype = DTYPE_INVALID; // a string: the class name, in data
        name->data = rill_malloc(strlen(c->parts[i]->ops->class_name) + 1);
        if (!name->data) return RILL_ENOMEM;
        strcpy(name->data, c->parts[i]->ops->class_name);
    }
    return RILL_OK;
}

static const cache_ops cl_ops = {
    .class_name = "CacheList",
    .update_and_fetch = cl_update,
    .make_mask = cl_make_mask,
    .offset = cl_offset,
    .is_trimmable = cl_is_trimmable,
    .trim = cl_trim,
    .nbytes = cl_nbytes,
    .destroy = cl_destroy,
    .get_state = cl_get_state,
};

rill_status cache_list_create(cache_layer **parts, int n, cache_layer **out) {
    *out = NULL;
    if (n < 1) return rill_fail(RILL_EINVAL, "CacheList: no caches");
    cache_list *c = rill_calloc(1, sizeof *c);
    cache_layer **p = rill_calloc((size_t)n, sizeof *p);
    if (!c || !p) {
        rill_free(c);
        rill_free(p);
        return RILL_ENOMEM;
    }
    memcpy(p, parts, (size_t)n * sizeof *p);
    c->base.ops = &cl_ops;
    c->n = n;
    c->parts = p;
    *out = &c->base;
    return RILL_OK;
}
