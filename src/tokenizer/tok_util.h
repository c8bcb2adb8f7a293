// tok_util.h: helpers shared by the tokenizer files: growable byte and id buffers, UTF-8
// decoding and encoding, lossy repair of invalid UTF-8 (the way Python and Rust do it), and the
// Unicode character classes that HF tokenizers relies on (Rust's char::is_whitespace etc.).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct {
    char *p;       // [cap] bytes; p[n] is always '\0' once anything was put
    size_t n, cap; // bytes used, bytes allocated
} tok_buf;

typedef struct {
    int32_t *p;    // [cap] token ids
    size_t n, cap; // ids used, ids allocated
} tok_ids;

rill_status tokbuf_reserve(tok_buf *b, size_t extra); // room for `extra` more bytes plus a NUL
rill_status tokbuf_put(tok_buf *b, const void *s, size_t n);
rill_status tokbuf_putc(tok_buf *b, char c);
rill_status tokbuf_put_cp(tok_buf *b, uint32_t cp); // appends the UTF-8 encoding of cp
void tokbuf_free(tok_buf *b);

rill_status tokids_push(tok_ids *v, int32_t id);
rill_status tokids_put(tok_ids *v, const int32_t *ids, size_t n);
void tokids_free(tok_ids *v);

// Decodes one UTF-8 sequence at s[0..n): its length (1..4) and *cp, or 0 when the bytes there do
// not start a valid, complete sequence (overlong, surrogate, > U+10FFFF or truncated).
int tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
// The length of the valid character at s (input known valid: no checks beyond the lead byte).
static inline int tok_utf8_len(uint8_t lead) { return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4; }
int tok_utf8_encode(uint32_t cp, char out[4]); // bytes written (1..4)
// Bytes of s[0..n) that form valid UTF-8 from the start (n when all valid).
size_t tok_utf8_valid_prefix(const char *s, size_t n);
// Appends s[0..n) to out with every maximal invalid subsequence replaced by U+FFFD, exactly like
// Python's bytes.decode("utf-8", "replace") and Rust's String::from_utf8_lossy.
rill_status tok_utf8_append_lossy(tok_buf *out, const char *s, size_t n);

bool tok_is_whitespace(uint32_t cp);   // Rust char::is_whitespace (Unicode White_Space)
bool tok_is_py_space(uint32_t cp);     // Python str.isspace
bool tok_is_numeric(uint32_t cp);      // Rust char::is_numeric (Nd, Nl, No)
bool tok_is_alphanumeric(uint32_t cp); // Rust char::is_alphanumeric (approximated by L*, N*)

// 64-bit hash of a byte string (for the vocabulary, the added tokens and the word cache).
static inline uint64_t tok_hash(const void *s, size_t n) {
    const uint8_t *p = s;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8, n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++)
        w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    return h ^ (h >> 29);
}
