// tok_util.c: growable buffers, UTF-8 coding and lossy repair, and the Unicode predicates that
// the normalizers, pre-tokenizers and added-token matching share (see tok_util.h).
#include "tokenizer/tok_util.h"

#include <string.h>
#include <utf8proc.h>

#include "base/alloc.h"

rill_status tokbuf_reserve(tok_buf *b, size_t extra) {
    if (b->n + extra + 1 <= b->cap) return RILL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *p = rill_realloc(b->p, cap);
    if (!p) return RILL_ENOMEM;
    b->p = p, b->cap = cap;
    return RILL_OK;
}

rill_status tokbuf_put(tok_buf *b, const void *s, size_t n) {
    if (tokbuf_reserve(b, n)) return RILL_ENOMEM;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return RILL_OK;
}

rill_status tokbuf_putc(tok_buf *b, char c) { return tokbuf_put(b, &c, 1); }

rill_status tokbuf_put_cp(tok_buf *b, uint32_t cp) {
    char tmp[4];
    return tokbuf_put(b, tmp, (size_t)tok_utf8_encode(cp, tmp));
}

void tokbuf_free(tok_buf *b) {
    rill_free(b->p);
    *b = (tok_buf){0};
}

rill_status tokids_put(tok_ids *v, const int32_t *ids, size_t n) {
    if (v->n + n > v->cap) {
        size_t cap = v->cap ? v->cap : 32;
        while (cap < v->n + n)
            cap *= 2;
        int32_t *p = rill_realloc(v->p, cap * sizeof *p);
        if (!p) return RILL_ENOMEM;
        v->p = p, v->cap = cap;
    }
    if (n) memcpy(v->p + v->n, ids, n * sizeof *ids);
    v->n += n;
    return RILL_OK;
}

rill_status tokids_push(tok_ids *v, int32_t id) { return tokids_put(v, &id, 1); }

void tokids_free(tok_ids *v) {
    rill_free(v->p);
    *v = (tok_ids){0};
}

int tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    uint8_t c = s[0];
    if (c < 0x80) return *cp = c, 1;
    int len;
    uint32_t v, lo = 0x80, hi = 0xBF; // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if ((size_t)len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    v = v << 6 | (s[1] & 0x3F);
    for (int i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    *cp = v;
    return len;
}

int tok_utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tok_utf8_valid_prefix(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = tok_utf8_decode(u + i, n - i, &cp);
        if (!l) break;
        i += (size_t)l;
    }
    return i;
}

// Length of the longest prefix of a valid sequence at s (the "maximal subpart"), at least 1.
static size_t maximal_subpart(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 1;
    size_t i = 1;
    if (i < n && s[i] >= lo && s[i] <= hi) {
        i++;
        while (i < (size_t)len && i < n && (s[i] & 0xC0) == 0x80)
            i++;
    }
    return i;
}

rill_status tok_utf8_append_lossy(tok_buf *out, const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        size_t ok = tok_utf8_valid_prefix(s + i, n - i);
        if (tokbuf_put(out, s + i, ok)) return RILL_ENOMEM;
        i += ok;
        if (i >= n) break;
        if (tokbuf_put(out, "\xEF\xBF\xBD", 3)) return RILL_ENOMEM;
        i += maximal_subpart(u + i, n - i);
    }
    if (tokbuf_reserve(out, 0)) return RILL_ENOMEM;
    out->p[out->n] = '\0';
    return RILL_OK;
}

bool tok_is_whitespace(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return false;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

bool tok_is_py_space(uint32_t c) {
    if (c < 0x80) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return tok_is_whitespace(c);
}

bool tok_is_numeric(uint32_t c) {
    if (c < 0x80) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool tok_is_alphanumeric(uint32_t c) {
    if (c < 0x80) return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}
