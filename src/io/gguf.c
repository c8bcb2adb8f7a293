// gguf.c: opens a GGUF file (v2/v3) and validates it as hostile input: the header, counts
// against the file size, the metadata (values parsed in gguf_kv.c), general.alignment, the tensor
// infos, data ranges, overlaps and duplicate names. Lookups by name use open-addressing tables.
#include "io/gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "io/gguf_internal.h"

// Smallest possible encodings: the header; a key/value (empty key, a one-byte value); a tensor
// info (empty name, one dimension).
enum { HEADER_BYTES = 24, KV_MIN_BYTES = 8 + 4 + 1, TENSOR_MIN_BYTES = 8 + 4 + 8 + 4 + 8 };

typedef unsigned long long ull;

// ---- cursor ----

static rill_status vfail(rill_status st, const gguf_cursor *c, uint64_t at, const char *fmt, va_list ap) {
    char reason[512];
    vsnprintf(reason, sizeof reason, fmt, ap);
    return rill_fail(st, "%s: %s at byte %llu: %s", c->path, c->where, (ull)at, reason);
}

rill_status gguf_bad(const gguf_cursor *c, uint64_t at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rill_status st = vfail(RILL_EFORMAT, c, at, fmt, ap);
    va_end(ap);
    return st;
}

__attribute__((format(printf, 3, 4))) static rill_status unsupported(const gguf_cursor *c, uint64_t at, const char *fmt,
                                                                     ...) {
    va_list ap;
    va_start(ap, fmt);
    rill_status st = vfail(RILL_EUNSUPPORTED, c, at, fmt, ap);
    va_end(ap);
    return st;
}

void gguf_set_where(gguf_cursor *c, const char *kind, gguf_string name) {
    enum { SHOW = 96 };
    char shown[SHOW + 4];
    size_t n = name.len < SHOW ? (size_t)name.len : SHOW;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)name.ptr[i];
        shown[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (name.len > SHOW) {
        memcpy(shown + n, "...", 3);
        n += 3;
    }
    shown[n] = '\0';
    snprintf(c->where, sizeof c->where, "%s '%s'", kind, shown);
}

uint64_t gguf_load_le(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

rill_status gguf_skip(gguf_cursor *c, uint64_t n, const char *what) {
    uint64_t left = c->size - c->pos;
    if (n > left)
        return gguf_bad(c, c->pos, "%s needs %llu bytes, only %llu left in the file (truncated?)", what, (ull)n,
                        (ull)left);
    c->pos += n;
    return RILL_OK;
}

rill_status gguf_rd_u32(gguf_cursor *c, uint32_t *v, const char *what) {
    rill_status st = gguf_skip(c, 4, what);
    if (st == RILL_OK) *v = (uint32_t)gguf_load_le(c->data + c->pos - 4, 4);
    return st;
}

rill_status gguf_rd_u64(gguf_cursor *c, uint64_t *v, const char *what) {
    rill_status st = gguf_skip(c, 8, what);
    if (st == RILL_OK) *v = gguf_load_le(c->data + c->pos - 8, 8);
    return st;
}

rill_status gguf_rd_str(gguf_cursor *c, gguf_string *s, uint64_t limit, const char *what, uint64_t idx) {
    uint64_t at = c->pos, len;
    rill_status st = gguf_rd_u64(c, &len, "string length");
    if (st != RILL_OK) return st;
    uint64_t left = c->size - c->pos;
    if (len <= limit && len <= left) {
        s->ptr = (const char *)c->data + c->pos;
        s->len = len;
        c->pos += len;
        return RILL_OK;
    }
    char label[96]; // formatted only on failure: arrays of strings take this path per element
    if (idx == UINT64_MAX)
        snprintf(label, sizeof label, "%s", what);
    else
        snprintf(label, sizeof label, "%s %llu", what, (ull)idx);
    if (len > limit)
        return gguf_bad(c, at, "%s length %llu exceeds the limit of %llu bytes", label, (ull)len, (ull)limit);
    return gguf_bad(c, at, "%s length %llu runs past the end of the file (%llu bytes left)", label, (ull)len,
                    (ull)left);
}

// A key or tensor name: bounded, and without NUL bytes (we hand out NUL-terminated copies).
static rill_status read_name(gguf_cursor *c, gguf_string *s, const char *what) {
    uint64_t at = c->pos;
    rill_status st = gguf_rd_str(c, s, GGUF_MAX_NAME, what, UINT64_MAX);
    if (st == RILL_OK && memchr(s->ptr, 0, s->len)) return gguf_bad(c, at, "%s contains a NUL byte", what);
    return st;
}

// ---- header ----

static rill_status read_version(gguf_cursor *c, gguf_file *f) {
    rill_status st = gguf_rd_u32(c, &f->version, "version");
    if (st != RILL_OK || f->version == 2 || f->version == 3) return st;
    uint32_t swapped = __builtin_bswap32(f->version);
    if (swapped >= 1 && swapped <= 3)
        return unsupported(c, 4, "big-endian GGUF (version %u when byte-swapped) is not supported", swapped);
    if (f->version == 1) return unsupported(c, 4, "GGUF version 1 is not supported (rill reads versions 2 and 3)");
    return unsupported(c, 4, "GGUF version %u is not supported (rill reads versions 2 and 3)", f->version);
}

static rill_status read_header(gguf_cursor *c, gguf_file *f, uint64_t *n_kv, uint64_t *n_tensors) {
    snprintf(c->where, sizeof c->where, "header");
    rill_status st = gguf_skip(c, 4, "magic");
    if (st != RILL_OK) return st;
    const uint8_t *m = c->data;
    if (memcmp(m, "GGUF", 4) != 0)
        return gguf_bad(c, 0, "bad magic %02x %02x %02x %02x, expected 'GGUF' (47 47 55 46): not a GGUF file", m[0],
                        m[1], m[2], m[3]);
    st = read_version(c, f);
    if (st == RILL_OK) st = gguf_rd_u64(c, n_tensors, "tensor count");
    if (st == RILL_OK) st = gguf_rd_u64(c, n_kv, "key/value count");
    if (st != RILL_OK) return st;
    if (*n_tensors > GGUF_MAX_TENSORS)
        return gguf_bad(c, 8, "tensor count %llu exceeds the limit of %u", (ull)*n_tensors, GGUF_MAX_TENSORS);
    if (*n_kv > GGUF_MAX_KV)
        return gguf_bad(c, 16, "key/value count %llu exceeds the limit of %u", (ull)*n_kv, GGUF_MAX_KV);
    uint64_t left = c->size - HEADER_BYTES, need_t = *n_tensors * TENSOR_MIN_BYTES;
    if (need_t > left)
        return gguf_bad(c, 8,
                        "tensor count %llu is impossible: the tensor infos need at least %llu bytes, only %llu "
                        "follow the header",
                        (ull)*n_tensors, (ull)need_t, (ull)left);
    if (*n_kv * KV_MIN_BYTES > left - need_t)
        return gguf_bad(c, 16,
                        "key/value count %llu is impossible: it needs at least %llu bytes, only %llu follow the "
                        "header and the tensor infos",
                        (ull)*n_kv, (ull)(*n_kv * KV_MIN_BYTES), (ull)(left - need_t));
    return RILL_OK;
}

// ---- name pools and lookup tables ----

static const char *entry_name(const gguf_file *f, bool tensors, uint64_t i) {
    return tensors ? f->tensors[i].name : f->kv[i].key;
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 14695981039346656037ull; // FNV-1a
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

// The slot that holds `name`, or the empty slot where it would go.
static uint64_t probe(const gguf_file *f, bool tensors, const char *name) {
    const uint32_t *slots = tensors ? f->tensor_slots : f->kv_slots;
    uint64_t mask = tensors ? f->tensor_mask : f->kv_mask;
    for (uint64_t h = hash_name(name) & mask;; h = (h + 1) & mask)
        if (!slots[h] || strcmp(entry_name(f, tensors, slots[h] - 1), name) == 0) return h;
}

// Copies the names into one pool, points the entries at it, and indexes them (duplicates fail).
static rill_status index_names(gguf_cursor *c, gguf_file *f, bool tensors, const gguf_string *names, uint64_t n) {
    uint64_t total = 1;
    for (uint64_t i = 0; i < n; i++)
        total += names[i].len + 1;
    char *pool = rill_malloc(total);
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *slots = rill_calloc(cap, sizeof *slots);
    *(tensors ? &f->tensor_names : &f->kv_names) = pool;
    *(tensors ? &f->tensor_slots : &f->kv_slots) = slots;
    *(tensors ? &f->tensor_mask : &f->kv_mask) = cap - 1;
    if (!pool || !slots) return RILL_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(pool, names[i].ptr, names[i].len);
        pool[names[i].len] = '\0';
        *(tensors ? &f->tensors[i].name : &f->kv[i].key) = pool;
        pool += names[i].len + 1;
        uint64_t h = probe(f, tensors, entry_name(f, tensors, i));
        if (slots[h]) {
            uint64_t first = slots[h] - 1;
            gguf_set_where(c, tensors ? "tensor" : "key", names[i]);
            return gguf_bad(c, tensors ? f->tensors[i].file_pos : f->kv[i].file_pos,
                            "duplicate %s (first at byte %llu)", tensors ? "tensor name" : "key",
                            (ull)(tensors ? f->tensors[first].file_pos : f->kv[first].file_pos));
        }
        slots[h] = (uint32_t)(i + 1);
    }
    return RILL_OK;
}

// ---- metadata ----

static rill_status read_kvs(gguf_cursor *c, gguf_file *f, gguf_string *names) {
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        snprintf(c->where, sizeof c->where, "key #%llu", (ull)i);
        kv->file_pos = c->pos;
        rill_status st = read_name(c, &names[i], "key");
        if (st != RILL_OK) return st;
        gguf_set_where(c, "key", names[i]);
        st = gguf_read_value(c, kv);
        if (st != RILL_OK) return st;
    }
    return index_names(c, f, false, names, f->n_kv);
}

static rill_status read_alignment(gguf_cursor *c, gguf_file *f) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv) return RILL_OK;
    snprintf(c->where, sizeof c->where, "key 'general.alignment'");
    if (!gguf_get_u64(f, "general.alignment", &f->alignment))
        return gguf_bad(c, kv->file_pos, "has type %s, expected an unsigned integer", gguf_value_type_name(kv->type));
    if (f->alignment == 0 || (f->alignment & (f->alignment - 1)) != 0)
        return gguf_bad(c, kv->file_pos, "alignment %llu is not a nonzero power of two", (ull)f->alignment);
    return RILL_OK;
}

// ---- tensor infos ----

static rill_status read_shape(gguf_cursor *c, gguf_tensor *t) {
    uint64_t at = c->pos;
    rill_status st = gguf_rd_u32(c, &t->n_dims, "n_dims");
    if (st != RILL_OK) return st;
    if (t->n_dims < 1 || t->n_dims > 4) return gguf_bad(c, at, "n_dims %u is outside 1..4", t->n_dims);
    t->n_elements = 1;
    for (uint32_t d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = c->pos;
        if ((st = gguf_rd_u64(c, &t->ne[d], "dimension")) != RILL_OK) return st;
        if (t->ne[d] > INT64_MAX) return gguf_bad(c, at, "ne[%u] = %llu exceeds 2^63-1", d, (ull)t->ne[d]);
        if (__builtin_mul_overflow(t->n_elements, t->ne[d], &t->n_elements) || t->n_elements > INT64_MAX)
            return gguf_bad(c, at, "the element count overflows at ne[%u] = %llu", d, (ull)t->ne[d]);
    }
    return RILL_OK;
}

static rill_status read_type(gguf_cursor *c, gguf_tensor *t) {
    uint64_t at = c->pos;
    uint32_t type;
    rill_status st = gguf_rd_u32(c, &type, "tensor type");
    if (st != RILL_OK) return st;
    const gguf_dtype_traits *info = gguf_dtype_info(type);
    if (!info) return gguf_bad(c, at, "unknown tensor type %u", type);
    t->type = (gguf_dtype)type;
    if (t->ne[0] % info->block_size != 0)
        return gguf_bad(c, at, "ne[0] = %llu is not a multiple of the %s block size %u", (ull)t->ne[0], info->name,
                        info->block_size);
    if (__builtin_mul_overflow(t->n_elements / info->block_size, (uint64_t)info->block_bytes, &t->n_bytes))
        return gguf_bad(c, at, "the byte size of %llu %s elements overflows", (ull)t->n_elements, info->name);
    return RILL_OK;
}

static rill_status read_tensor_info(gguf_cursor *c, gguf_file *f, uint64_t i, gguf_string *name) {
    gguf_tensor *t = &f->tensors[i];
    snprintf(c->where, sizeof c->where, "tensor #%llu", (ull)i);
    t->file_pos = c->pos;
    rill_status st = read_name(c, name, "tensor name");
    if (st != RILL_OK) return st;
    gguf_set_where(c, "tensor", *name);
    if ((st = read_shape(c, t)) != RILL_OK || (st = read_type(c, t)) != RILL_OK) return st;
    uint64_t at = c->pos;
    if ((st = gguf_rd_u64(c, &t->offset, "data offset")) != RILL_OK) return st;
    if (t->offset % f->alignment != 0)
        return gguf_bad(c, at, "data offset %llu is not a multiple of the alignment %llu", (ull)t->offset,
                        (ull)f->alignment);
    return RILL_OK;
}

// ---- tensor data ----

typedef struct {
    uint64_t start, end; // absolute file bytes [start, end)
    uint64_t idx;        // tensor index
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

// Every tensor's data lies inside the file; no two tensors share a byte.
static rill_status check_data(gguf_cursor *c, gguf_file *f) {
    span *spans = rill_malloc((f->n_tensors + 1) * sizeof *spans);
    if (!spans) return RILL_ENOMEM;
    uint64_t n = 0;
    rill_status st = RILL_OK;
    for (uint64_t i = 0; i < f->n_tensors && st == RILL_OK; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t start, end;
        if (__builtin_add_overflow(f->data_offset, t->offset, &start) ||
            __builtin_add_overflow(start, t->n_bytes, &end) || end > c->size) {
            gguf_set_where(c, "tensor", (gguf_string){t->name, strlen(t->name)});
            st = gguf_bad(c, t->file_pos, "data at offset %llu + %llu bytes runs past the end of the file (%llu bytes)",
                          (ull)t->offset, (ull)t->n_bytes, (ull)c->size);
            break;
        }
        t->data = c->data + start;
        if (t->n_bytes > 0) spans[n++] = (span){start, end, i};
    }
    if (st == RILL_OK) qsort(spans, n, sizeof *spans, span_cmp);
    for (uint64_t k = 1; k < n && st == RILL_OK; k++) {
        if (spans[k].start >= spans[k - 1].end) continue;
        const gguf_tensor *a = &f->tensors[spans[k - 1].idx], *b = &f->tensors[spans[k].idx];
        gguf_set_where(c, "tensor", (gguf_string){b->name, strlen(b->name)});
        st = gguf_bad(c, b->file_pos, "data [%llu, %llu) overlaps tensor '%s' data [%llu, %llu)", (ull)spans[k].start,
                      (ull)spans[k].end, a->name, (ull)spans[k - 1].start, (ull)spans[k - 1].end);
    }
    rill_free(spans);
    return st;
}

static rill_status read_tensors(gguf_cursor *c, gguf_file *f, gguf_string *names) {
    rill_status st = RILL_OK;
    for (uint64_t i = 0; i < f->n_tensors && st == RILL_OK; i++)
        st = read_tensor_info(c, f, i, &names[i]);
    if (st == RILL_OK) st = index_names(c, f, true, names, f->n_tensors);
    if (st != RILL_OK) return st;
    snprintf(c->where, sizeof c->where, "tensor data");
    uint64_t pad = (f->alignment - c->pos % f->alignment) % f->alignment;
    if (__builtin_add_overflow(c->pos, pad, &f->data_offset))
        return gguf_bad(c, c->pos, "aligning the data section to %llu overflows", (ull)f->alignment);
    return check_data(c, f);
}

// ---- open, close, find ----

static rill_status parse(gguf_cursor *c, gguf_file *f) {
    uint64_t n_kv = 0, n_tensors = 0;
    rill_status st = read_header(c, f, &n_kv, &n_tensors);
    if (st != RILL_OK) return st;
    f->kv = rill_calloc(n_kv + 1, sizeof *f->kv);
    f->tensors = rill_calloc(n_tensors + 1, sizeof *f->tensors);
    gguf_string *names = rill_malloc((n_kv + n_tensors + 1) * sizeof *names); // [n_kv + n_tensors]
    if (!f->kv || !f->tensors || !names) {
        rill_free(names);
        return RILL_ENOMEM;
    }
    f->n_kv = n_kv;
    f->n_tensors = n_tensors;
    st = read_kvs(c, f, names);
    if (st == RILL_OK) st = read_alignment(c, f);
    if (st == RILL_OK) st = read_tensors(c, f, names + n_kv);
    rill_free(names);
    return st;
}

rill_status gguf_open(const char *path, gguf_file **out) {
    *out = NULL;
    gguf_file *f = rill_calloc(1, sizeof *f);
    if (!f) return RILL_ENOMEM;
    rill_status st = mapped_file_open(&f->map, path, 0);
    if (st != RILL_OK) {
        rill_free(f);
        return st;
    }
    gguf_cursor c = {.data = f->map.data, .size = f->map.size, .path = path};
    st = parse(&c, f);
    if (st != RILL_OK) {
        gguf_close(f);
        return st;
    }
    *out = f;
    return RILL_OK;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (uint64_t i = 0; i < f->n_kv; i++)
        gguf_kv_release(&f->kv[i]);
    rill_free(f->kv);
    rill_free(f->tensors);
    rill_free(f->kv_names);
    rill_free(f->tensor_names);
    rill_free(f->kv_slots);
    rill_free(f->tensor_slots);
    mapped_file_close(&f->map);
    rill_free(f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    if (!f || !key || !f->kv_slots) return NULL;
    uint32_t s = f->kv_slots[probe(f, false, key)];
    return s ? &f->kv[s - 1] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    if (!f || !name || !f->tensor_slots) return NULL;
    uint32_t s = f->tensor_slots[probe(f, true, name)];
    return s ? &f->tensors[s - 1] : NULL;
}
