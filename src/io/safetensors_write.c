// safetensors_write.c: writes tensors and __metadata__ to a safetensors file, atomically (temporary
// file + fsync + rename). The layout is the reference writer's: data contiguous, tensors sorted by
// element size from largest to smallest (so each one is aligned to its element size), and the JSON
// header padded with spaces to a multiple of 8 bytes. Inputs are checked before anything is written.
#include "io/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/atomic_file.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

// The first name that appears twice in names[0..n), or NULL.
static const char *find_duplicate(const char *const *names, size_t n) {
    if (n < 2) return NULL;
    const char **s = malloc(n * sizeof *s);
    if (!s) return NULL;
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(s[i - 1], s[i])) dup = s[i];
    free(s);
    return dup;
}

static rill_status check_entry(const char *path, size_t i, const safetensors_entry *e, uint64_t *n_bytes) {
    if (!e->name || !e->name[0] || !strcmp(e->name, "__metadata__"))
        return rill_fail(RILL_EINVAL, "%s: tensor %zu: the name is missing, empty or '__metadata__'", path, i);
    if (e->dtype <= DTYPE_INVALID || e->dtype >= DTYPE_COUNT)
        return rill_fail(RILL_EINVAL, "%s: tensor '%s': bad dtype %d", path, e->name, (int)e->dtype);
    if (e->n_dims < 0 || e->n_dims > SAFETENSORS_MAX_DIMS || (e->n_dims > 0 && !e->shape))
        return rill_fail(RILL_EINVAL, "%s: tensor '%s': %d dimensions (at most %d, with a shape)", path, e->name,
                         e->n_dims, SAFETENSORS_MAX_DIMS);
    uint64_t n = dtype_size(e->dtype);
    for (int d = 0; d < e->n_dims; d++)
        if (e->shape[d] > INT64_MAX || __builtin_mul_overflow(n, e->shape[d], &n))
            return rill_fail(RILL_EINVAL, "%s: tensor '%s': dimension %d (%llu) makes the size overflow", path, e->name,
                             d, (unsigned long long)e->shape[d]);
    if (n > 0 && !e->data) return rill_fail(RILL_EINVAL, "%s: tensor '%s': no data", path, e->name);
    *n_bytes = n;
    return RILL_OK;
}

static rill_status check_inputs(const char *path, const safetensors_entry *t, size_t n, const char *const *keys,
                                const char *const *values, size_t n_meta, uint64_t *n_bytes) {
    for (size_t i = 0; i < n; i++) {
        rill_status st = check_entry(path, i, &t[i], &n_bytes[i]);
        if (st != RILL_OK) return st;
    }
    for (size_t i = 0; i < n_meta; i++)
        if (!keys[i] || !values[i]) return rill_fail(RILL_EINVAL, "%s: __metadata__ entry %zu is NULL", path, i);
    const char **names = malloc((n + 1) * sizeof *names);
    if (!names) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        names[i] = t[i].name;
    const char *dup = find_duplicate(names, n);
    free(names);
    if (dup) return rill_fail(RILL_EINVAL, "%s: tensor name '%s' appears twice", path, dup);
    if ((dup = find_duplicate(keys, n_meta)) != NULL)
        return rill_fail(RILL_EINVAL, "%s: __metadata__ key '%s' appears twice", path, dup);
    return RILL_OK;
}

// order[0..n): the tensors by element size, largest first, in the given order among equal sizes.
static void layout_order(const safetensors_entry *t, size_t n, size_t *order) {
    size_t k = 0;
    for (size_t size = 8; size >= 1; size /= 2)
        for (size_t i = 0; i < n; i++)
            if (dtype_size(t[i].dtype) == size) order[k++] = i;
}

// Adds key: value to obj and takes value; false when either is invalid (NULL or bad UTF-8).
static bool put(json_t *obj, const char *key, json_t *value) { return value && !json_object_set_new(obj, key, value); }

static json_t *tensor_json(const safetensors_entry *e, uint64_t begin, uint64_t end) {
    json_t *o = json_object(), *shape = json_array(), *offs = json_array();
    bool ok = o && shape && offs;
    for (int d = 0; ok && d < e->n_dims; d++)
        ok = !json_array_append_new(shape, json_integer((json_int_t)e->shape[d]));
    ok = ok && !json_array_append_new(offs, json_integer((json_int_t)begin)) &&
         !json_array_append_new(offs, json_integer((json_int_t)end));
    ok = ok && put(o, "dtype", json_string(dtype_name(e->dtype))) && put(o, "shape", json_incref(shape)) &&
         put(o, "data_offsets", json_incref(offs));
    json_decref(shape);
    json_decref(offs);
    if (!ok) json_decref(o);
    return ok ? o : NULL;
}

// The header text, without padding; NULL when a name or value is not valid UTF-8 (or no memory).
static char *header_text(const safetensors_entry *t, const size_t *order, const uint64_t *n_bytes, size_t n,
                         const char *const *keys, const char *const *values, size_t n_meta, const char **bad) {
    json_t *root = json_object(), *meta = n_meta ? json_object() : NULL;
    bool ok = root && (!n_meta || put(root, "__metadata__", meta));
    for (size_t i = 0; ok && i < n_meta; i++)
        if (!(ok = put(meta, keys[i], json_string(values[i])))) *bad = keys[i];
    uint64_t pos = 0;
    for (size_t k = 0; ok && k < n; k++) {
        const safetensors_entry *e = &t[order[k]];
        if (!(ok = put(root, e->name, tensor_json(e, pos, pos + n_bytes[order[k]])))) *bad = e->name;
        pos += n_bytes[order[k]];
    }
    char *s = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

static void store_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static rill_status write_all(const char *path, const char *hdr, const safetensors_entry *t, const size_t *order,
                             const uint64_t *n_bytes, size_t n) {
    size_t len = strlen(hdr), pad = (8 - len % 8) % 8;
    uint8_t prefix[8];
    store_le64(prefix, len + pad);
    atomic_file f;
    rill_status st = atomic_file_open(&f, path);
    if (st != RILL_OK) return st;
    atomic_file_write(&f, prefix, 8);
    atomic_file_write(&f, hdr, len);
    atomic_file_write(&f, "       ", pad);
    for (size_t k = 0; k < n; k++)
        atomic_file_write(&f, t[order[k]].data, n_bytes[order[k]]);
    return atomic_file_commit(&f);
}

rill_status safetensors_write(const char *path, const safetensors_entry *tensors, size_t n_tensors,
                              const char *const *meta_keys, const char *const *meta_values, size_t n_meta) {
    uint64_t *n_bytes = rill_calloc(n_tensors + 1, sizeof *n_bytes); // [n_tensors]
    size_t *order = rill_calloc(n_tensors + 1, sizeof *order);       // [n_tensors] indices in layout order
    if (!n_bytes || !order) {
        rill_free(n_bytes);
        rill_free(order);
        return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    }
    rill_status st = check_inputs(path, tensors, n_tensors, meta_keys, meta_values, n_meta, n_bytes);
    char *hdr = NULL;
    if (st == RILL_OK) {
        const char *bad = NULL;
        layout_order(tensors, n_tensors, order);
        hdr = header_text(tensors, order, n_bytes, n_tensors, meta_keys, meta_values, n_meta, &bad);
        if (!hdr && bad)
            st = rill_fail(RILL_EINVAL, "%s: '%s' (or its value) is not valid UTF-8", path, bad);
        else if (!hdr)
            st = rill_fail(RILL_ENOMEM, "%s: out of memory building the header", path);
    }
    if (st == RILL_OK) st = write_all(path, hdr, tensors, order, n_bytes, n_tensors);
    free(hdr);
    rill_free(n_bytes);
    rill_free(order);
    return st;
}
