// gguf_internal.h: what gguf.c (header, tensor infos, lookups) and gguf_kv.c (metadata values,
// getters) share: a bounds-checked cursor over the mapped file and the value parser.
// Not for use outside src/io/gguf*.c.
#pragma once
#include "io/gguf.h"

typedef struct {
    const uint8_t *data; // [size] the mapped file
    uint64_t size;       // bytes
    uint64_t pos;        // next byte to read
    const char *path;    // for messages
    char where[192];     // the entry being read ("key 'general.name'"), for messages
} gguf_cursor;

// Fails with RILL_EFORMAT and "<path>: <where> at byte <at>: <reason>".
rill_status gguf_bad(const gguf_cursor *c, uint64_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Sets c->where to "<kind> '<name>'", with unprintable bytes as '?' and long names cut.
void gguf_set_where(gguf_cursor *c, const char *kind, gguf_string name);

uint64_t gguf_load_le(const uint8_t *p, size_t n); // an n-byte little-endian unsigned integer
rill_status gguf_rd_u32(gguf_cursor *c, uint32_t *v, const char *what);
rill_status gguf_rd_u64(gguf_cursor *c, uint64_t *v, const char *what);
rill_status gguf_skip(gguf_cursor *c, uint64_t n, const char *what);
// A length-prefixed string of at most `limit` bytes; `idx` numbers array elements in messages
// (UINT64_MAX: not an element).
rill_status gguf_rd_str(gguf_cursor *c, gguf_string *s, uint64_t limit, const char *what, uint64_t idx);

// Reads the value type and the value of one key/value pair into kv (the key is already set).
rill_status gguf_read_value(gguf_cursor *c, gguf_kv *kv);
void gguf_kv_release(gguf_kv *kv); // frees what gguf_read_value allocated
