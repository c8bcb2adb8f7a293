// prompt_cache.c: prompt-cache files as mlx-lm 0.32 writes them (save_prompt_cache):
//   tensors  "<layer>.<path>" for every item of the layer's state tuple ("0", "1", "0.2" ...), arrays
//            in [1, H, S, D]; integers as 0-d int32 arrays; strings as int32 code points;
//   metadata "0.<key>" user metadata, "1.<layer>" class names, "2.0" = "" and, for each integer or
//            string item k (from 1), "2.k.0" = "<layer>.<path>" and "2.k.1" = "scalar" / "string".
// The older layout ("0.<layer>[.j]" meta states as strings, "1.<key>" user metadata, "2.<layer>"
// class names, arrays cut to the offset) is read as well.
#include "cache/prompt_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/half.h"
#include "cache/kv_store.h"
#include "io/safetensors.h"

rill_status quantized_cache_load(rill_backend *be, rill_stream *s, rill_dtype scale_dtype, int64_t k_dim, int64_t v_dim,
                                 int group_size, int bits, int64_t offset, const void *const host[6],
                                 cache_layer **out);
rill_status rotating_cache_load(cache_layer *base, rill_stream *s, int64_t len, int64_t offset, int64_t idx,
                                const void *const host[6]);

static char *rill_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = rill_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

// ---- save ----

typedef struct {
    safetensors_entry *e;
    size_t n, cap;
    char **names;     // owned
    uint64_t *shapes; // [cap][4]
    void **owned;
    size_t n_owned;
    char **mk, **mv; // metadata
    size_t n_meta, cap_meta;
} writer;

static bool grow_ptr(void **p, size_t *cap, size_t need, size_t es) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need)
        c *= 2;
    void *q = rill_realloc(*p, c * es);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static rill_status add_meta(writer *w, const char *k, const char *v) {
    size_t cap = w->cap_meta;
    if (!grow_ptr((void **)&w->mk, &cap, w->n_meta + 1, sizeof(char *))) return RILL_ENOMEM;
    cap = w->cap_meta;
    if (!grow_ptr((void **)&w->mv, &cap, w->n_meta + 1, sizeof(char *))) return RILL_ENOMEM;
    w->cap_meta = cap;
    w->mk[w->n_meta] = rill_strdup(k);
    w->mv[w->n_meta] = rill_strdup(v);
    if (!w->mk[w->n_meta] || !w->mv[w->n_meta]) return RILL_ENOMEM;
    w->n_meta++;
    return RILL_OK;
}

static rill_status add_tensor(writer *w, const char *name, rill_dtype dt, int n_dims, const uint64_t *shape,
                              const void *data) {
    if (w->n == w->cap) {
        size_t c = w->cap ? w->cap * 2 : 64;
        safetensors_entry *e = rill_realloc(w->e, c * sizeof *e);
        if (!e) return RILL_ENOMEM;
        w->e = e;
        char **nm = rill_realloc(w->names, c * sizeof *nm);
        if (!nm) return RILL_ENOMEM;
        w->names = nm;
        uint64_t *sh = rill_realloc(w->shapes, c * 4 * sizeof *sh);
        if (!sh) return RILL_ENOMEM;
        w->shapes = sh;
        w->cap = c;
        for (size_t i = 0; i < w->n; i++)
            w->e[i].shape = w->shapes + 4 * i;
    }
    w->names[w->n] = rill_strdup(name);
    if (!w->names[w->n]) return RILL_ENOMEM;
    memcpy(w->shapes + 4 * w->n, shape, (size_t)n_dims * sizeof *shape);
    w->e[w->n] = (safetensors_entry){w->names[w->n], dt, n_dims, w->shapes + 4 * w->n, data};
    w->n++;
    return RILL_OK;
}

static void *own(writer *w, size_t bytes) {
    void **o = rill_realloc(w->owned, (w->n_owned + 1) * sizeof *o);
    if (!o) return NULL;
    w->owned = o;
    void *p = rill_malloc(bytes ? bytes : 1);
    if (p) w->owned[w->n_owned++] = p;
    return p;
}

static void writer_free(writer *w) {
    for (size_t i = 0; i < w->n; i++)
        rill_free(w->names[i]);
    for (size_t i = 0; i < w->n_owned; i++)
        rill_free(w->owned[i]);
    for (size_t i = 0; i < w->n_meta; i++) {
        rill_free(w->mk[i]);
        rill_free(w->mv[i]);
    }
    rill_free(w->e);
    rill_free(w->names);
    rill_free(w->shapes);
    rill_free(w->owned);
    rill_free(w->mk);
    rill_free(w->mv);
}

// MLA's latent cache keeps [latent | RoPE key] rows and no values; mlx-lm's files hold the latent as
// keys and the RoPE key as values. Each key item ("0", "0.j": [1, 1, S, D]) is split at the latent's
// share of D into itself and the value item of the same place ("1", "1.j"), which was empty.
static rill_status mla_split_state(cache_state *st, const cache_shape *sh) {
    for (int i = 0; i < st->n_items; i++) {
        cache_item *k = &st->items[i];
        if (k->scalar || k->dtype == DTYPE_INVALID || k->path[0] != '0' || (k->path[1] && k->path[1] != '.')) continue;
        cache_item *v = NULL;
        for (int j = 0; j < st->n_items; j++)
            if (st->items[j].path[0] == '1' && !strcmp(st->items[j].path + 1, k->path + 1)) v = &st->items[j];
        int64_t D = (int64_t)k->shape[3], S = (int64_t)k->shape[2], Dl = D * sh->latent_dim / sh->k_dim;
        if (!v || v->shape[3] != 0 || k->shape[1] != 1 || Dl * sh->k_dim != D * sh->latent_dim)
            return rill_fail(RILL_EINVAL, "prompt cache: item '%s' is not an MLA latent row", k->path);
        size_t es = dtype_size(k->dtype);
        char *lat = rill_malloc((size_t)(S * Dl) * es + 1), *rope = rill_malloc((size_t)(S * (D - Dl)) * es + 1);
        if (!lat || !rope) {
            rill_free(lat);
            rill_free(rope);
            return RILL_ENOMEM;
        }
        for (int64_t t = 0; t < S; t++) {
            memcpy(lat + (size_t)(t * Dl) * es, (char *)k->data + (size_t)(t * D) * es, (size_t)Dl * es);
            memcpy(rope + (size_t)(t * (D - Dl)) * es, (char *)k->data + (size_t)(t * D + Dl) * es,
                   (size_t)(D - Dl) * es);
        }
        rill_free(k->data);
        rill_free(v->data);
        k->data = lat;
        k->shape[3] = (uint64_t)Dl;
        v->data = rope;
        v->dtype = k->dtype;
        v->shape[2] = (uint64_t)S;
        v->shape[3] = (uint64_t)(D - Dl);
    }
    return RILL_OK;
}

rill_status prompt_cache_save(const char *path, const rill_cache *c, rill_stream *s, const cache_shape *shape,
                              const char *const *meta_keys, const char *const *meta_values, size_t n_meta) {
    int n_kv_heads = shape->n_kv_heads;
    writer w = {0};
    cache_state *states = rill_calloc((size_t)c->n_layers + 1, sizeof *states);
    if (!states) return RILL_ENOMEM;
    rill_status st = RILL_OK;
    char key[64], val[64];
    for (size_t i = 0; i < n_meta && st == RILL_OK; i++) {
        snprintf(key, sizeof key, "0.%s", meta_keys[i]);
        st = add_meta(&w, key, meta_values[i]);
    }
    int n_scalars = 0;
    if (st == RILL_OK) st = add_meta(&w, "2.0", "");
    for (int l = 0; l < c->n_layers && st == RILL_OK; l++) {
        cache_layer *cl = c->layers[l];
        if (!cl->ops->get_state) {
            st = rill_fail(RILL_EUNSUPPORTED, "prompt cache: layer %d (%s) cannot be saved", l, cl->ops->class_name);
            break;
        }
        st = cl->ops->get_state(cl, s, n_kv_heads, &states[l]);
        if (st == RILL_OK && shape->latent_dim > 0) st = mla_split_state(&states[l], shape);
        if (st != RILL_OK) {
            rill_error_prefix("prompt cache: layer %d", l);
            break;
        }
        snprintf(key, sizeof key, "1.%d", l);
        if ((st = add_meta(&w, key, cl->ops->class_name)) != RILL_OK) break;
        for (int i = 0; i < states[l].n_items && st == RILL_OK; i++) {
            cache_item *it = &states[l].items[i];
            char name[64];
            snprintf(name, sizeof name, "%d.%s", l, it->path);
            if (it->scalar || it->dtype == DTYPE_INVALID) { // an integer, or a string (a class name)
                const char *kind = it->scalar ? "scalar" : "string";
                size_t n = it->scalar ? 1 : strlen(it->data);
                int32_t *v = own(&w, n * sizeof *v);
                if (!v) {
                    st = RILL_ENOMEM;
                    break;
                }
                if (it->scalar)
                    v[0] = (int32_t)it->value;
                else
                    for (size_t j = 0; j < n; j++)
                        v[j] = (unsigned char)((char *)it->data)[j];
                uint64_t dims[1] = {n};
                st = add_tensor(&w, name, DTYPE_I32, it->scalar ? 0 : 1, dims, v);
                n_scalars++;
                snprintf(key, sizeof key, "2.%d.0", n_scalars);
                if (st == RILL_OK) st = add_meta(&w, key, name);
                snprintf(key, sizeof key, "2.%d.1", n_scalars);
                snprintf(val, sizeof val, "%s", kind);
                if (st == RILL_OK) st = add_meta(&w, key, val);
            } else
                st = add_tensor(&w, name, it->dtype, it->n_dims, it->shape, it->data);
        }
    }
    if (st == RILL_OK)
        st = safetensors_write(path, w.e, w.n, (const char *const *)w.mk, (const char *const *)w.mv, w.n_meta);
    for (int l = 0; l < c->n_layers; l++)
        cache_state_free(&states[l]);
    rill_free(states);
    writer_free(&w);
    return st;
}

// ---- load ----

void prompt_cache_meta_free(prompt_cache_meta *m) {
    for (size_t i = 0; i < m->n; i++) {
        rill_free(m->keys[i]);
        rill_free(m->values[i]);
    }
    rill_free(m->keys);
    rill_free(m->values);
    memset(m, 0, sizeof *m);
}

const char *prompt_cache_meta_get(const prompt_cache_meta *m, const char *key) {
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->keys[i], key)) return m->values[i];
    return NULL;
}

typedef struct {
    const char *path;
    const safetensors_file *f;
    int layer;
    bool old;        // the older layout
    const char *cls; // class name
} layer_src;

// An integer item of the layer's state: a 0-d int array (new layout) or a meta-state string (old).
static rill_status get_int(const layer_src *L, const char *item, int old_index, int64_t *out) {
    char name[64];
    if (L->old) {
        snprintf(name, sizeof name, "0.%d.%d", L->layer, old_index);
        const char *v = safetensors_meta(L->f, name);
        char *end;
        if (!v || !*v || (*out = strtoll(v, &end, 10), *end))
            return rill_fail(RILL_EFORMAT, "%s: layer %d (%s): metadata '%s' is %s%s%s, not an integer", L->path,
                             L->layer, L->cls, name, v ? "'" : "missing", v ? v : "", v ? "'" : "");
        return RILL_OK;
    }
    snprintf(name, sizeof name, "%d.%s", L->layer, item);
    const safetensors_tensor *t = safetensors_find(L->f, name);
    if (!t || t->n_elements != 1 || (t->dtype != DTYPE_I32 && t->dtype != DTYPE_I64 && t->dtype != DTYPE_U32))
        return rill_fail(RILL_EFORMAT, "%s: layer %d (%s): '%s' is %s, not an integer", L->path, L->layer, L->cls, name,
                         t ? "not a single integer" : "missing");
    int32_t v32;
    int64_t v64;
    if (t->dtype == DTYPE_I64) {
        memcpy(&v64, t->data, 8);
        *out = v64;
    } else {
        memcpy(&v32, t->data, 4);
        *out = t->dtype == DTYPE_U32 ? (int64_t)(uint32_t)v32 : v32;
    }
    return RILL_OK;
}

// An array item [1, H, S, D] with H and D as expected (S returned); float arrays come back converted
// to `want` in token-major order [S][H * D] (rill_malloc'd, *host), uint32 ones as they are.
static rill_status get_array(const layer_src *L, const char *item, int64_t H, int64_t D, rill_dtype want, int64_t *S,
                             void **host) {
    char name[64];
    snprintf(name, sizeof name, "%d.%s", L->layer, item);
    const safetensors_tensor *t = safetensors_find(L->f, name);
    *host = NULL;
    if (!t)
        return rill_fail(RILL_EFORMAT, "%s: layer %d (%s): tensor '%s' is missing", L->path, L->layer, L->cls, name);
    bool is_float = t->dtype == DTYPE_F32 || t->dtype == DTYPE_F16 || t->dtype == DTYPE_BF16;
    if (want == DTYPE_U32 ? t->dtype != DTYPE_U32 : !is_float)
        return rill_fail(RILL_EFORMAT, "%s: tensor '%s' has dtype %s, expected %s", L->path, name, dtype_name(t->dtype),
                         want == DTYPE_U32 ? "U32" : "a float");
    if (t->n_dims != 4 || t->shape[0] != 1 || t->shape[1] != (uint64_t)H || t->shape[3] != (uint64_t)D)
        return rill_fail(
            RILL_EFORMAT,
            "%s: tensor '%s' has shape [%llu, %llu, %llu, %llu] (%d dims); this model needs [1, %lld, S, %lld]"
            " - a cache made for another model?",
            L->path, name, t->n_dims > 0 ? (unsigned long long)t->shape[0] : 0ULL,
            t->n_dims > 1 ? (unsigned long long)t->shape[1] : 0ULL,
            t->n_dims > 2 ? (unsigned long long)t->shape[2] : 0ULL,
            t->n_dims > 3 ? (unsigned long long)t->shape[3] : 0ULL, t->n_dims, (long long)H, (long long)D);
    *S = (int64_t)t->shape[2];
    size_t n = (size_t)(*S * H * D), es = dtype_size(want);
    void *tmp = rill_malloc(n * es + 1), *out = rill_malloc(n * es + 1);
    if (!tmp || !out) {
        rill_free(tmp);
        rill_free(out);
        return RILL_ENOMEM;
    }
    if (t->dtype == want)
        memcpy(tmp, t->data, n * es);
    else
        for (size_t i = 0; i < n; i++) {
            float x;
            uint16_t h;
            if (t->dtype == DTYPE_F32)
                memcpy(&x, t->data + 4 * i, 4);
            else {
                memcpy(&h, t->data + 2 * i, 2);
                x = t->dtype == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
            }
            if (want == DTYPE_F32)
                ((float *)tmp)[i] = x;
            else
                ((uint16_t *)tmp)[i] = want == DTYPE_F16 ? f32_to_f16(x) : f32_to_bf16(x);
        }
    kv_from_heads(tmp, out, *S, H, D, es);
    rill_free(tmp);
    *host = out;
    return RILL_OK;
}

// A key item and its value item ("0" and "1", or "0.j" and "1.j") with Dk and Dv elements per head,
// as get_array reads them (S positions). For MLA's latent cache the file's keys (the latent) and
// values (the RoPE key) are joined into key rows of Dk, and the values are empty (Dv is 0).
static rill_status get_kv_arrays(const layer_src *L, const cache_shape *sh, const char *kitem, const char *vitem,
                                 int64_t H, int64_t Dk, int64_t Dv, rill_dtype want, int64_t *S, void **hk, void **hv) {
    int64_t S1 = 0;
    rill_status st;
    *hk = *hv = NULL;
    if (sh->latent_dim <= 0) {
        st = get_array(L, kitem, H, Dk, want, S, hk);
        if (st == RILL_OK) st = get_array(L, vitem, H, Dv, want, &S1, hv);
    } else {
        int64_t Dl = Dk * sh->latent_dim / sh->k_dim;
        if (Dl * sh->k_dim != Dk * sh->latent_dim)
            return rill_fail(RILL_EFORMAT, "%s: layer %d (%s): rows of %lld cannot split at the latent's %lld of %lld",
                             L->path, L->layer, L->cls, (long long)Dk, (long long)sh->latent_dim, (long long)sh->k_dim);
        void *lat = NULL, *rope = NULL;
        st = get_array(L, kitem, 1, Dl, want, S, &lat);
        if (st == RILL_OK) st = get_array(L, vitem, 1, Dk - Dl, want, &S1, &rope);
        size_t es = dtype_size(want);
        if (st == RILL_OK && S1 == *S) {
            *hk = rill_malloc((size_t)(*S * Dk) * es + 1);
            *hv = rill_malloc(1);
            if (!*hk || !*hv) st = RILL_ENOMEM;
            for (int64_t t = 0; st == RILL_OK && t < *S; t++) {
                memcpy((char *)*hk + (size_t)(t * Dk) * es, (char *)lat + (size_t)(t * Dl) * es, (size_t)Dl * es);
                memcpy((char *)*hk + (size_t)(t * Dk + Dl) * es, (char *)rope + (size_t)(t * (Dk - Dl)) * es,
                       (size_t)(Dk - Dl) * es);
            }
        }
        rill_free(lat);
        rill_free(rope);
    }
    if (st == RILL_OK && S1 != *S)
        st = rill_fail(RILL_EFORMAT, "%s: layer %d: '%s' holds %lld positions, '%s' %lld", L->path, L->layer, kitem,
                       (long long)*S, vitem, (long long)S1);
    if (st != RILL_OK) {
        rill_free(*hk);
        rill_free(*hv);
        *hk = *hv = NULL;
    }
    return st;
}

static void free_all(void **p, int n) {
    for (int i = 0; i < n; i++)
        rill_free(p[i]);
}

// One layer of class L->cls from the file.
static rill_status load_layer(const layer_src *L, const cache_shape *sh, rill_stream *s, cache_layer **out) {
    *out = NULL;
    int H = sh->n_kv_heads;
    int64_t Dk = sh->k_dim / H, Dv = sh->v_dim / H, S0 = 0;
    void *host[6] = {0};
    rill_status st;
    bool rot = !strcmp(L->cls, "RotatingKVCache"), qrot = !strcmp(L->cls, "QuantizedRotatingKVCache");
    if (!strcmp(L->cls, "KVCache") || rot) {
        int64_t offset, keep = 0, max_size = 0, idx = 0;
        st = get_kv_arrays(L, sh, "0", "1", H, Dk, Dv, sh->dtype, &S0, &host[0], &host[1]);
        if (st == RILL_OK && !rot) {
            if (L->old)
                offset = S0;
            else
                st = get_int(L, "2", 0, &offset);
            if (st == RILL_OK && (offset < 0 || offset > S0))
                st = rill_fail(RILL_EFORMAT, "%s: layer %d: offset %lld outside the %lld stored positions", L->path,
                               L->layer, (long long)offset, (long long)S0);
            if (st == RILL_OK) st = kv_cache_create(sh->be, sh->dtype, sh->k_dim, sh->v_dim, sh->step, out);
            if (st == RILL_OK && offset > 0) { // through update_and_fetch: the data go to the device
                size_t es = dtype_size(sh->dtype);
                void *dk = sh->be->ops->alloc(sh->be, (size_t)(offset * sh->k_dim) * es + 1);
                void *dv = sh->be->ops->alloc(sh->be, (size_t)(offset * sh->v_dim) * es + 1);
                if (!dk || !dv)
                    st = RILL_ENOMEM;
                else {
                    sh->be->ops->upload(s, dk, host[0], (size_t)(offset * sh->k_dim) * es);
                    sh->be->ops->upload(s, dv, host[1], (size_t)(offset * sh->v_dim) * es);
                    rill_tensor k = rill_tensor_2d(sh->dtype, offset, sh->k_dim, dk);
                    rill_tensor v = rill_tensor_2d(sh->dtype, offset, sh->v_dim, dv);
                    rill_tensor kk, vv;
                    st = (*out)->ops->update_and_fetch(*out, s, &k, &v, &kk, &vv);
                    sh->be->ops->sync(s);
                }
                if (dk) sh->be->ops->free(sh->be, dk);
                if (dv) sh->be->ops->free(sh->be, dv);
            }
        } else if (st == RILL_OK) {
            if (L->old) { // meta_state (keep, max_size, offset, idx)
                st = get_int(L, NULL, 0, &keep);
                if (st == RILL_OK) st = get_int(L, NULL, 1, &max_size);
                if (st == RILL_OK) st = get_int(L, NULL, 2, &offset);
                if (st == RILL_OK) st = get_int(L, NULL, 3, &idx);
            } else {
                st = get_int(L, "2", 0, &offset);
                if (st == RILL_OK) st = get_int(L, "3", 0, &keep);
                if (st == RILL_OK) st = get_int(L, "4", 0, &max_size);
                if (st == RILL_OK) st = get_int(L, "5", 0, &idx);
            }
            if (st == RILL_OK && (max_size < 1 || keep < 0 || keep >= max_size || offset < 0 || idx < 0 || idx > S0 ||
                                  S0 > max_size + 65536 || (offset < S0 && offset != idx && S0 > max_size)))
                st = rill_fail(RILL_EFORMAT,
                               "%s: layer %d: RotatingKVCache with keep %lld, max_size %lld, offset %lld,"
                               " index %lld over %lld stored positions is inconsistent",
                               L->path, L->layer, (long long)keep, (long long)max_size, (long long)offset,
                               (long long)idx, (long long)S0);
            if (st == RILL_OK)
                st = rotating_cache_create(sh->be, sh->dtype, sh->k_dim, sh->v_dim, max_size, (int)keep, 0, 0, out);
            if (st == RILL_OK) st = rotating_cache_load(*out, s, S0, offset, idx, (const void *const *)host);
        }
    } else if (!strcmp(L->cls, "QuantizedKVCache") || qrot) {
        int64_t offset, gs, bits, keep = 0, max_size = 0, idx = 0;
        if (L->old) {
            st = get_int(L, NULL, 0, &offset);
            if (st == RILL_OK) st = get_int(L, NULL, 1, &gs);
            if (st == RILL_OK) st = get_int(L, NULL, 2, &bits);
        } else {
            st = get_int(L, "2", 0, &offset);
            if (st == RILL_OK && qrot) {
                st = get_int(L, "3", 0, &keep);
                if (st == RILL_OK) st = get_int(L, "4", 0, &max_size);
                if (st == RILL_OK) st = get_int(L, "5", 0, &idx);
                if (st == RILL_OK) st = get_int(L, "6", 0, &gs);
                if (st == RILL_OK) st = get_int(L, "7", 0, &bits);
            } else {
                if (st == RILL_OK) st = get_int(L, "3", 0, &gs);
                if (st == RILL_OK) st = get_int(L, "4", 0, &bits);
            }
        }
        if (st == RILL_OK && ((bits != 4 && bits != 8) || (gs != 32 && gs != 64 && gs != 128) || Dk % gs || Dv % gs))
            st = rill_fail(RILL_EFORMAT,
                           "%s: layer %d: %lld bits in groups of %lld (4 or 8 bits, groups 32/64/128 "
                           "dividing the head size %lld)",
                           L->path, L->layer, (long long)bits, (long long)gs, (long long)Dk);
        // scales and biases keep the file's dtype (mlx-lm writes the model's), so the values are exact
        char sn[64];
        snprintf(sn, sizeof sn, "%d.0.1", L->layer);
        const safetensors_tensor *sc = safetensors_find(L->f, sn);
        rill_dtype sdt = sc && (sc->dtype == DTYPE_F16 || sc->dtype == DTYPE_BF16) ? sc->dtype : DTYPE_F32;
        int64_t S[3];
        static const char *const items[6] = {"0.0", "0.1", "0.2", "1.0", "1.1", "1.2"};
        for (int i = 0; i < 3 && st == RILL_OK; i++) { // packed words, scales, biases of keys and values
            int64_t dk = i == 0 ? Dk * bits / 32 : Dk / gs, dv = i == 0 ? Dv * bits / 32 : Dv / gs;
            st = get_kv_arrays(L, sh, items[i], items[i + 3], H, dk, dv, i == 0 ? DTYPE_U32 : sdt, &S[i], &host[i],
                               &host[i + 3]);
            if (st == RILL_OK && S[i] != S[0])
                st = rill_fail(RILL_EFORMAT, "%s: layer %d: '%s' holds %lld positions, '%s' %lld", L->path, L->layer,
                               items[i], (long long)S[i], items[0], (long long)S[0]);
        }
        if (st == RILL_OK && (offset < 0 || (!qrot && offset > S[0])))
            st = rill_fail(RILL_EFORMAT, "%s: layer %d: offset %lld outside the %lld stored positions", L->path,
                           L->layer, (long long)offset, (long long)S[0]);
        if (st == RILL_OK && !qrot)
            st = quantized_cache_load(sh->be, s, sdt, sh->k_dim, sh->v_dim, (int)gs, (int)bits, offset,
                                      (const void *const *)host, out);
        else if (st == RILL_OK) {
            if (max_size < 1 || keep < 0 || keep >= max_size || idx < 0 || idx > S[0])
                st = rill_fail(RILL_EFORMAT, "%s: layer %d: inconsistent ring counters", L->path, L->layer);
            if (st == RILL_OK)
                st = rotating_cache_create(sh->be, sdt, sh->k_dim, sh->v_dim, max_size, (int)keep, (int)bits, (int)gs,
                                           out);
            if (st == RILL_OK) st = rotating_cache_load(*out, s, S[0], offset, idx, (const void *const *)host);
        }
    } else
        st = rill_fail(RILL_EUNSUPPORTED, "%s: layer %d: unknown cache class '%s'", L->path, L->layer, L->cls);
    free_all(host, 6);
    if (st != RILL_OK && *out) {
        (*out)->ops->destroy(*out);
        *out = NULL;
    }
    return st;
}

rill_status prompt_cache_load(const char *path, const cache_shape *shape, rill_stream *s, rill_cache **out,
                              prompt_cache_meta *meta) {
    *out = NULL;
    if (meta) memset(meta, 0, sizeof *meta);
    safetensors_file *f;
    rill_status st = safetensors_open(path, &f);
    if (st != RILL_OK) return st;
    // Which layout: new files have "2.0" = "" and class names under "1.<i>"; old ones class names
    // under "2.<i>".
    const char *m20 = safetensors_meta(f, "2.0");
    bool old = m20 && *m20;
    const char *cls_prefix = old ? "2." : "1.", *user_prefix = old ? "1." : "0.";
    int n_layers = 0;
    char key[64];
    for (;; n_layers++) {
        snprintf(key, sizeof key, "%s%d", cls_prefix, n_layers);
        if (!safetensors_meta(f, key)) break;
    }
    if (n_layers == 0)
        st = rill_fail(RILL_EFORMAT, "%s: not a prompt cache (no class names in the metadata)", path);
    else if (n_layers != shape->n_layers)
        st = rill_fail(RILL_EINVAL, "%s: the cache has %d layers, this model %d: it was made for another model", path,
                       n_layers, shape->n_layers);
    rill_cache *c = NULL;
    if (st == RILL_OK) {
        c = rill_calloc(1, sizeof *c);
        if (c) c->layers = rill_calloc((size_t)n_layers, sizeof *c->layers);
        if (!c || !c->layers) st = RILL_ENOMEM;
        if (c) c->n_layers = n_layers;
    }
    int64_t offset0 = -1;
    for (int l = 0; st == RILL_OK && l < n_layers; l++) {
        snprintf(key, sizeof key, "%s%d", cls_prefix, l);
        layer_src L = {path, f, l, old, safetensors_meta(f, key)};
        st = load_layer(&L, shape, s, &c->layers[l]);
        if (st != RILL_OK) break;
        int64_t o = c->layers[l]->ops->offset(c->layers[l]);
        if (offset0 >= 0 && o != offset0)
            st = rill_fail(RILL_EFORMAT, "%s: layer %d holds %lld positions, layer 0 %lld", path, l, (long long)o,
                           (long long)offset0);
        offset0 = o;
    }
    if (st == RILL_OK && meta) {
        size_t pl = strlen(user_prefix);
        for (size_t i = 0; i < f->n_meta && st == RILL_OK; i++) {
            if (strncmp(f->meta_keys[i], user_prefix, pl)) continue;
            char **k = rill_realloc(meta->keys, (meta->n + 1) * sizeof *k);
            if (k) meta->keys = k;
            char **v = rill_realloc(meta->values, (meta->n + 1) * sizeof *v);
            if (v) meta->values = v;
            if (!k || !v) {
                st = RILL_ENOMEM;
                break;
            }
            meta->keys[meta->n] = rill_strdup(f->meta_keys[i] + pl);
            meta->values[meta->n] = rill_strdup(f->meta_values[i]);
            meta->n++;
        }
    }
    safetensors_close(f);
    if (st != RILL_OK) {
        cache_free(c);
        if (meta) prompt_cache_meta_free(meta);
        return st;
    }
    *out = c;
    return RILL_OK;
}
