// decoder.c: HF tokenizers' decoders, each a transformation of the list of token strings
// (decode_chain): ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and Sequence.
#include <string.h>

#include "base/alloc.h"
#include "tokenizer/pipeline.h"

static rill_status bytelevel(tok_pieces *p, tok_pieces *out) {
    tok_buf bytes = {0};
    rill_status st = RILL_OK;
    for (size_t i = 0; !st && i < p->n; i++) {
        const uint8_t *s = (const uint8_t *)piece_ptr(p, i);
        size_t n = p->s[i].len, mark = bytes.n;
        bool all = true;
        for (size_t j = 0; j < n && all;) { // every character must stand for a byte, else raw bytes
            uint32_t c;
            int l = tok_utf8_decode(s + j, n - j, &c);
            int b = l ? bytelevel_byte(c) : -1;
            if (b < 0)
                all = false;
            else
                st = st ? st : tokbuf_putc(&bytes, (char)b), j += (size_t)l;
        }
        if (!all) {
            bytes.n = mark;
            st = st ? st : tokbuf_put(&bytes, s, n);
        }
    }
    if (!st) st = pieces_add_empty(out, false);
    if (!st) {
        size_t mark = out->text.n;
        st = tok_utf8_append_lossy(&out->text, bytes.p ? bytes.p : "", bytes.n);
        out->s[out->n - 1].len = (uint32_t)(out->text.n - mark);
    }
    tokbuf_free(&bytes);
    return st;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') return (c | 0x20) - 'a' + 10;
    return -1;
}

// "<0xNN>" -> NN (Rust's u8::from_str_radix also takes "+N"), else -1.
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    if (s[3] == '+') return hexval(s[4]);
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

static rill_status flush_bytes(tok_buf *bytes, tok_pieces *out) {
    if (!bytes->n) return RILL_OK;
    rill_status st = RILL_OK;
    if (tok_utf8_valid_prefix(bytes->p, bytes->n) == bytes->n)
        st = pieces_add(out, bytes->p, bytes->n, false);
    else // invalid UTF-8: one U+FFFD per byte, as HF's ByteFallback does
        for (size_t i = 0; !st && i < bytes->n; i++)
            st = pieces_add(out, "\xEF\xBF\xBD", 3, false);
    bytes->n = 0;
    return st;
}

static rill_status bytefallback(tok_pieces *p, tok_pieces *out) {
    tok_buf bytes = {0};
    rill_status st = RILL_OK;
    for (size_t i = 0; !st && i < p->n; i++) {
        int b = byte_token(piece_ptr(p, i), p->s[i].len);
        if (b >= 0)
            st = tokbuf_putc(&bytes, (char)b);
        else {
            st = flush_bytes(&bytes, out);
            if (!st) st = pieces_add(out, piece_ptr(p, i), p->s[i].len, false);
        }
    }
    if (!st) st = flush_bytes(&bytes, out);
    tokbuf_free(&bytes);
    return st;
}

static rill_status metaspace(const tok_decoder *d, tok_pieces *p, tok_pieces *out) {
    for (size_t i = 0; i < p->n; i++) {
        const char *s = piece_ptr(p, i);
        size_t n = p->s[i].len;
        if (pieces_add_empty(out, false)) return RILL_ENOMEM;
        for (size_t j = 0; j < n;) {
            if (n - j >= (size_t)d->rep_len && !memcmp(s + j, d->rep, (size_t)d->rep_len)) {
                // The first token loses every replacement character (HF drops them all there).
                if (!(i == 0 && d->prepend != PREPEND_NEVER) && pieces_grow(out, " ", 1)) return RILL_ENOMEM;
                j += (size_t)d->rep_len;
            } else {
                if (pieces_grow(out, s + j, 1)) return RILL_ENOMEM;
                j++;
            }
        }
    }
    return RILL_OK;
}

static rill_status strip(const tok_decoder *d, tok_pieces *p, tok_pieces *out) {
    char enc[4];
    size_t cl = (size_t)tok_utf8_encode(d->content, enc);
    for (size_t i = 0; i < p->n; i++) {
        const char *s = piece_ptr(p, i);
        size_t a = 0, b = p->s[i].len;
        for (size_t k = 0; k < d->start && b - a >= cl && !memcmp(s + a, enc, cl); k++)
            a += cl;
        for (size_t k = 0; k < d->stop && b - a >= cl && !memcmp(s + b - cl, enc, cl); k++)
            b -= cl;
        if (pieces_add(out, s + a, b - a, false)) return RILL_ENOMEM;
    }
    return RILL_OK;
}

static rill_status replace(const tok_decoder *d, tok_pieces *p, tok_pieces *out) {
    for (size_t i = 0; i < p->n; i++) {
        const char *s = piece_ptr(p, i);
        size_t n = p->s[i].len, from = 0, last = 0, ms, me;
        if (pieces_add_empty(out, false)) return RILL_ENOMEM;
        while (pattern_next(&d->pat, s, n, &from, &ms, &me)) {
            if (pieces_grow(out, s + last, ms - last) || pieces_grow(out, d->str, d->str_len)) return RILL_ENOMEM;
            last = me;
        }
        if (pieces_grow(out, s + last, n - last)) return RILL_ENOMEM;
    }
    return RILL_OK;
}

static rill_status fuse(tok_pieces *p, tok_pieces *out) {
    if (pieces_add_empty(out, false)) return RILL_ENOMEM;
    for (size_t i = 0; i < p->n; i++)
        if (pieces_grow(out, piece_ptr(p, i), p->s[i].len)) return RILL_ENOMEM;
    return RILL_OK;
}

rill_status decoder_apply(const tok_decoder *d, tok_pieces *p, tok_pieces *tmp) {
    if (d->kind == DEC_SEQUENCE) {
        for (size_t i = 0; i < d->n_items; i++)
            if (decoder_apply(&d->items[i], p, tmp)) return RILL_ENOMEM;
        return RILL_OK;
    }
    pieces_reset(tmp);
    rill_status st = RILL_OK;
    switch (d->kind) {
    case DEC_BYTELEVEL: st = bytelevel(p, tmp); break;
    case DEC_METASPACE: st = metaspace(d, p, tmp); break;
    case DEC_BYTEFALLBACK: st = bytefallback(p, tmp); break;
    case DEC_FUSE: st = fuse(p, tmp); break;
    case DEC_STRIP: st = strip(d, p, tmp); break;
    case DEC_REPLACE: st = replace(d, p, tmp); break;
    case DEC_SEQUENCE: break;
    }
    tok_pieces t = *p;
    *p = *tmp, *tmp = t;
    return st;
}

void decoder_free(tok_decoder *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_items; i++)
        decoder_free(&d->items[i]);
    rill_free(d->items);
    rill_free(d->str);
    pattern_free(&d->pat);
    *d = (tok_decoder){0};
}
