// safetensors_read.c: opens a safetensors file as hostile input. It maps the file, checks the
// 8-byte header length, parses the JSON header with jansson, validates every tensor entry and
// __metadata__, and checks that the data offsets tile the data section exactly (no overlap, no
// gap, no overrun), as the format's reference reader does. Tensor data stay in the mapping.
#include "io/safetensors.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"

// What the validators need to word their messages.
typedef struct {
    const char *path;
    const char *hdr;    // [hdr_len] the JSON text, at file byte 8
    size_t hdr_len;     // bytes
    uint64_t data_size; // bytes of the data section
} header_ctx;

static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

// The file byte where `"key"` appears as an object key in the header, or 0 when not found (a key
// with JSON escapes in it is not found). Only used to word messages.
static size_t key_byte(const header_ctx *c, const char *key) {
    size_t k = strlen(key);
    const char *p = c->hdr, *end = c->hdr + c->hdr_len;
    while ((p = memchr(p, '"', (size_t)(end - p))) != NULL) {
        const char *q = p + 1 + k;
        if (q < end && !memcmp(p + 1, key, k) && *q == '"') {
            const char *r = q + 1;
            while (r < end && (*r == ' ' || *r == '\t' || *r == '\n' || *r == '\r'))
                r++;
            if (r < end && *r == ':') return 8 + (size_t)(p - c->hdr);
        }
        p++;
    }
    return 0;
}

// Fails with "<path>: tensor '<name>' at byte <n>: <reason>"; `what` names the kind of entry.
static rill_status fail_entry(const header_ctx *c, rill_status st, const char *what, const char *name, const char *fmt,
                              ...) __attribute__((format(printf, 5, 6)));
static rill_status fail_entry(const header_ctx *c, rill_status st, const char *what, const char *name, const char *fmt,
                              ...) {
    char reason[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    size_t at = key_byte(c, name);
    if (at) return rill_fail(st, "%s: %s '%s' at byte %zu: %s", c->path, what, name, at, reason);
    return rill_fail(st, "%s: %s '%s': %s", c->path, what, name, reason);
}

#define fail_tensor(c, st, name, ...) fail_entry(c, st, "tensor", name, __VA_ARGS__)

// Dtypes of the format that rill does not handle (as opposed to names that are not dtypes at all).
static bool dtype_is_known_unsupported(const char *s) {
    static const char *const names[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i])) return true;
    return false;
}

static rill_status parse_dtype(const header_ctx *c, const char *name, const json_t *v, safetensors_tensor *t) {
    if (!json_is_string(v)) return fail_tensor(c, RILL_EFORMAT, name, "field 'dtype' is missing or not a string");
    const char *s = json_string_value(v);
    t->dtype = dtype_from_name(s);
    if (t->dtype != DTYPE_INVALID) return RILL_OK;
    if (dtype_is_known_unsupported(s))
        return fail_tensor(c, RILL_EUNSUPPORTED, name, "field 'dtype': dtype '%.32s' is not supported by rill", s);
    return fail_tensor(c, RILL_EFORMAT, name, "field 'dtype': unknown dtype '%.32s'", s);
}

static rill_status parse_shape(const header_ctx *c, const char *name, const json_t *v, safetensors_tensor *t) {
    if (!json_is_array(v)) return fail_tensor(c, RILL_EFORMAT, name, "field 'shape' is missing or not an array");
    size_t n = json_array_size(v);
    if (n > SAFETENSORS_MAX_DIMS)
        return fail_tensor(c, RILL_EFORMAT, name, "field 'shape': too many dimensions (%zu > %d)", n,
                           SAFETENSORS_MAX_DIMS);
    t->n_dims = (int)n;
    t->n_elements = 1;
    for (size_t i = 0; i < n; i++) {
        const json_t *d = json_array_get(v, i);
        if (!json_is_integer(d))
            return fail_tensor(c, RILL_EFORMAT, name, "field 'shape': dimension %zu is not an integer", i);
        json_int_t x = json_integer_value(d);
        if (x < 0)
            return fail_tensor(c, RILL_EFORMAT, name, "field 'shape': dimension %zu is negative (%lld)", i,
                               (long long)x);
        t->shape[i] = (uint64_t)x;
        if (__builtin_mul_overflow(t->n_elements, t->shape[i], &t->n_elements))
            return fail_tensor(c, RILL_EFORMAT, name, "field 'shape': the element count overflows 64 bits");
    }
    if (__builtin_mul_overflow(t->n_elements, (uint64_t)dtype_size(t->dtype), &t->n_bytes))
        return fail_tensor(c, RILL_EFORMAT, name, "field 'shape': the byte count overflows 64 bits");
    return RILL_OK;
}

// Writes "[d0, d1, ...]" into buf.
static const char *shape_str(const safetensors_tensor *t, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->n_dims && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

static rill_status parse_offsets(const header_ctx *c, const char *name, const json_t *v, safetensors_tensor *t) {
    const json_t *b = json_array_get(v, 0), *e = json_array_get(v, 1);
    if (!json_is_array(v) || json_array_size(v) != 2 || !json_is_integer(b) || !json_is_integer(e) ||
        json_integer_value(b) < 0 || json_integer_value(e) < 0)
        return fail_tensor(c, RILL_EFORMAT, name,
                           "field 'data_offsets' is missing or not [begin, end] with integers >= 0");
    uint64_t begin = (uint64_t)json_integer_value(b), end = (uint64_t)json_integer_value(e);
    uint64_t base = 8 + (uint64_t)c->hdr_len;
    if (begin > end)
        return fail_tensor(c, RILL_EFORMAT, name, "field 'data_offsets': begin %llu > end %llu",
                           (unsigned long long)begin, (unsigned long long)end);
    if (end > c->data_size)
        return fail_tensor(c, RILL_EFORMAT, name,
                           "field 'data_offsets': end %llu (file byte %llu) is past the end of the data section "
                           "(%llu bytes)",
                           (unsigned long long)end, (unsigned long long)(base + end), (unsigned long long)c->data_size);
    if (end - begin != t->n_bytes) {
        char s[256];
        return fail_tensor(c, RILL_EFORMAT, name,
                           "field 'data_offsets': [%llu, %llu) holds %llu bytes but shape %s of %s needs %llu",
                           (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin),
                           shape_str(t, s, sizeof s), dtype_name(t->dtype), (unsigned long long)t->n_bytes);
    }
    t->data_offset = begin;
    return RILL_OK;
}

static rill_status parse_tensor(const header_ctx *c, const char *name, const json_t *v, safetensors_tensor *t) {
    if (!json_is_object(v)) return fail_tensor(c, RILL_EFORMAT, name, "the entry is not a JSON object");
    rill_status st = parse_dtype(c, name, json_object_get(v, "dtype"), t);
    if (st == RILL_OK) st = parse_shape(c, name, json_object_get(v, "shape"), t);
    if (st == RILL_OK) st = parse_offsets(c, name, json_object_get(v, "data_offsets"), t);
    if (st == RILL_OK && !(t->name = strdup(name))) st = rill_fail(RILL_ENOMEM, "%s: out of memory", c->path);
    return st;
}

static rill_status parse_meta(const header_ctx *c, const json_t *v, safetensors_file *f) {
    if (!json_is_object(v))
        return fail_entry(c, RILL_EFORMAT, "field", "__metadata__", "not an object of string values");
    size_t n = json_object_size(v);
    f->meta_keys = calloc(n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc(n + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return rill_fail(RILL_ENOMEM, "%s: out of memory", c->path);
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (!json_is_string(val))
            return fail_entry(c, RILL_EFORMAT, "__metadata__ key", key, "the value is not a string");
        size_t i = f->n_meta++;
        f->meta_keys[i] = strdup(key);
        f->meta_values[i] = strdup(json_string_value(val));
        if (!f->meta_keys[i] || !f->meta_values[i]) return rill_fail(RILL_ENOMEM, "%s: out of memory", c->path);
    }
    return RILL_OK;
}

static rill_status check_prefix(const mapped_file *m, uint64_t *hdr_len) {
    if (m->size < 8)
        return rill_fail(RILL_EFORMAT,
                         "%s: truncated header: the file has %zu bytes, fewer than the 8 of the header length", m->path,
                         m->size);
    uint64_t n = load_le64(m->data);
    if (n > SAFETENSORS_MAX_HEADER)
        return rill_fail(RILL_EFORMAT, "%s: byte 0: header length %llu exceeds the limit of %u bytes", m->path,
                         (unsigned long long)n, SAFETENSORS_MAX_HEADER);
    if (n > m->size - 8)
        return rill_fail(RILL_EFORMAT, "%s: byte 0: header length %llu runs past the end of the file (%zu bytes)",
                         m->path, (unsigned long long)n, m->size);
    if (n == 0 || m->data[8] != '{')
        return rill_fail(RILL_EFORMAT, "%s: byte 8: the header is not a JSON object (it does not start with '{')",
                         m->path);
    *hdr_len = n;
    return RILL_OK;
}

typedef const safetensors_tensor *tensor_ptr;

static int by_offset(const void *a, const void *b) {
    tensor_ptr x = *(const tensor_ptr *)a, y = *(const tensor_ptr *)b;
    if (x->data_offset != y->data_offset) return x->data_offset < y->data_offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const tensor_ptr *)a)->name, (*(const tensor_ptr *)b)->name);
}

static void sort_tensors(safetensors_file *f, int (*cmp)(const void *, const void *)) {
    for (size_t i = 0; i < f->n_tensors; i++)
        f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n_tensors, sizeof *f->by_name, cmp);
}

// The tensors' byte ranges, sorted by offset, must follow one another exactly from 0 to data_size.
// Uses f->by_name as scratch.
static rill_status check_tiling(const header_ctx *c, safetensors_file *f) {
    sort_tensors(f, by_offset);
    uint64_t base = 8 + (uint64_t)c->hdr_len, pos = 0;
    const safetensors_tensor *prev = NULL;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const safetensors_tensor *t = f->by_name[i];
        if (t->data_offset < pos)
            return fail_tensor(c, RILL_EFORMAT, t->name,
                               "bytes [%llu, %llu) of the data section overlap tensor '%s' at [%llu, %llu)",
                               (unsigned long long)t->data_offset, (unsigned long long)(t->data_offset + t->n_bytes),
                               prev->name, (unsigned long long)prev->data_offset, (unsigned long long)pos);
        if (t->data_offset > pos)
            return fail_tensor(c, RILL_EFORMAT, t->name,
                               "a gap of %llu bytes at file byte %llu before it (offsets must tile the data section)",
                               (unsigned long long)(t->data_offset - pos), (unsigned long long)(base + pos));
        pos = t->data_offset + t->n_bytes;
        prev = t;
    }
    if (pos != c->data_size)
        return rill_fail(RILL_EFORMAT, "%s: byte %llu: %llu trailing bytes after the last tensor belong to no tensor",
                         c->path, (unsigned long long)(base + pos), (unsigned long long)(c->data_size - pos));
    return RILL_OK;
}

static rill_status parse_header(const header_ctx *c, const json_t *root, safetensors_file *f) {
    const json_t *meta = json_object_get(root, "__metadata__");
    size_t n = json_object_size(root) - (meta != NULL);
    f->tensors = rill_calloc(n + 1, sizeof *f->tensors);
    f->by_name = rill_calloc(n + 1, sizeof *f->by_name);
    if (!f->tensors || !f->by_name) return rill_fail(RILL_ENOMEM, "%s: no memory for %zu tensors", c->path, n);
    rill_status st = meta ? parse_meta(c, meta, f) : RILL_OK;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)root, key, val) {
        if (st != RILL_OK) return st;
        if (val == meta) continue;
        safetensors_tensor *t = &f->tensors[f->n_tensors++];
        st = parse_tensor(c, key, val, t);
        t->data = f->data + t->data_offset;
    }
    if (st == RILL_OK) st = check_tiling(c, f);
    if (st == RILL_OK) sort_tensors(f, by_name);
    return st;
}

static rill_status open_mapped(safetensors_file *f) {
    rill_status st = check_prefix(&f->map, &f->header_len);
    if (st != RILL_OK) return st;
    header_ctx c = {f->map.path, (const char *)f->map.data + 8, (size_t)f->header_len, f->map.size - 8 - f->header_len};
    f->data = f->map.data + 8 + f->header_len;
    f->data_size = c.data_size;
    json_error_t err;
    json_t *root = json_loadb(c.hdr, c.hdr_len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return rill_fail(RILL_EFORMAT, "%s: header JSON, line %d column %d (byte %lld): %s", c.path, err.line,
                         err.column, 8 + (long long)err.position, err.text);
    st = json_is_object(root) ? parse_header(&c, root, f)
                              : rill_fail(RILL_EFORMAT, "%s: byte 8: the header is not a JSON object", c.path);
    json_decref(root);
    return st;
}

rill_status safetensors_open(const char *path, safetensors_file **out) {
    *out = NULL;
    safetensors_file *f = calloc(1, sizeof *f);
    if (!f) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    rill_status st = mapped_file_open(&f->map, path, 0);
    if (st == RILL_OK) st = open_mapped(f);
    if (st != RILL_OK) {
        safetensors_close(f);
        return st;
    }
    *out = f;
    return RILL_OK;
}

void safetensors_close(safetensors_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    rill_free(f->tensors);
    rill_free(f->by_name);
    mapped_file_close(&f->map);
    free(f);
}

const safetensors_tensor *safetensors_lookup(const safetensors_tensor *const *sorted, size_t n, const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, sorted[mid]->name);
        if (c == 0) return sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const safetensors_tensor *safetensors_find(const safetensors_file *f, const char *name) {
    return safetensors_lookup(f->by_name, f->n_tensors, name);
}

const char *safetensors_meta(const safetensors_file *f, const char *key) {
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_values[i];
    return NULL;
}
