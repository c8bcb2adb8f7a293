// normalizer.c: HF tokenizers' normalizers over UTF-8 strings: NFC, NFD, NFKC, NFKD (utf8proc),
// Lowercase (Rust's char::to_lowercase per character: U+0130 becomes
// "i\u0307", no final-sigma rule), Prepend, Replace, Strip and
// Sequence. Offsets are not tracked: rill only needs the normalized text.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/alloc.h"
#include "tokenizer/pipeline.h"

static rill_status unicode_form(norm_kind k, const char *s, size_t n, tok_buf *out) {
    int opt = UTF8PROC_STABLE;
    if (k == NORM_NFC || k == NORM_NFKC)
        opt |= UTF8PROC_COMPOSE;
    else
        opt |= UTF8PROC_DECOMPOSE;
    if (k == NORM_NFKC || k == NORM_NFKD) opt |= UTF8PROC_COMPAT;
    if (n == 0) return RILL_OK;
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, opt);
    if (r < 0) return rill_fail(RILL_EINVAL, "normalizer: %s", utf8proc_errmsg(r));
    rill_status st = tokbuf_put(out, dst, (size_t)r);
    free(dst);
    return st;
}

static rill_status lowercase(const char *s, size_t n, tok_buf *out) {
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            char c = (char)u[i];
            if (tokbuf_putc(out, c >= 'A' && c <= 'Z' ? (char)(c + 32) : c)) return RILL_ENOMEM;
            i++;
            continue;
        }
        uint32_t c;
        int l = tok_utf8_decode(u + i, n - i, &c);
        if (!l) c = 0xFFFD, l = 1;
        rill_status st;
        if (c == 0x130)
            st = tokbuf_put(out, "i\xCC\x87", 3);
        else
            st = tokbuf_put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
        if (st) return st;
        i += (size_t)l;
    }
    return RILL_OK;
}

static rill_status replace(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
    size_t from = 0, last = 0, ms, me;
    while (pattern_next(&nm->pat, s, n, &from, &ms, &me)) {
        if (tokbuf_put(out, s + last, ms - last) || tokbuf_put(out, nm->str, nm->str_len)) return RILL_ENOMEM;
        last = me;
    }
    return tokbuf_put(out, s + last, n - last);
}

static rill_status strip(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
    const uint8_t *u = (const uint8_t *)s;
    size_t a = 0, b = n;
    uint32_t c;
    int l;
    while (nm->left && a < b && (l = tok_utf8_decode(u + a, b - a, &c)) && tok_is_whitespace(c))
        a += (size_t)l;
    while (nm->right && b > a) {
        size_t k = b - 1;
        while (k > a && (u[k] & 0xC0) == 0x80)
            k--;
        if (!tok_utf8_decode(u + k, b - k, &c) || !tok_is_whitespace(c)) break;
        b = k;
    }
    return tokbuf_put(out, s + a, b - a);
}

static rill_status apply_one(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
    switch (nm->kind) {
    case NORM_NFC:
    case NORM_NFD:
    case NORM_NFKC:
    case NORM_NFKD: return unicode_form(nm->kind, s, n, out);
    case NORM_LOWERCASE: return lowercase(s, n, out);
    case NORM_PREPEND:
        if (n && tokbuf_put(out, nm->str, nm->str_len)) return RILL_ENOMEM;
        return tokbuf_put(out, s, n);
    case NORM_REPLACE: return replace(nm, s, n, out);
    case NORM_STRIP: return strip(nm, s, n, out);
    case NORM_SEQUENCE: break;
    }
    tok_buf a = {0}, b = {0};
    rill_status st = tokbuf_put(&a, s, n);
    for (size_t i = 0; !st && i < nm->n_items; i++) {
        b.n = 0;
        st = normalizer_apply(&nm->items[i], a.p, a.n, &b);
        tok_buf t = a;
        a = b, b = t;
    }
    if (!st) st = tokbuf_put(out, a.p, a.n);
    tokbuf_free(&a), tokbuf_free(&b);
    return st;
}

rill_status normalizer_apply(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out) {
    out->n = 0;
    rill_status st = apply_one(nm, s, n, out);
    if (!st) st = tokbuf_reserve(out, 0);
    if (!st) out->p[out->n] = '\0';
    return st;
}

void normalizer_free(tok_normalizer *nm) {
    if (!nm) return;
    for (size_t i = 0; i < nm->n_items; i++)
        normalizer_free(&nm->items[i]);
    rill_free(nm->items);
    rill_free(nm->str);
    pattern_free(&nm->pat);
    *nm = (tok_normalizer){0};
}
