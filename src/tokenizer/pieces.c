// pieces.c: the list of byte-string pieces that flows through the pre-tokenizers and decoders.
#include "tokenizer/pipeline.h"

#include "base/alloc.h"

rill_status pieces_add_empty(tok_pieces *p, bool at_start) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        tok_span *s = rill_realloc(p->s, cap * sizeof *s);
        if (!s) return RILL_ENOMEM;
        p->s = s, p->cap = cap;
    }
    if (p->text.n >= UINT32_MAX / 2) return rill_fail(RILL_ENOMEM, "tokenizer: input too large");
    p->s[p->n++] = (tok_span){(uint32_t)p->text.n, 0, at_start};
    return RILL_OK;
}

rill_status pieces_grow(tok_pieces *p, const char *s, size_t n) {
    if (tokbuf_put(&p->text, s, n)) return RILL_ENOMEM;
    p->s[p->n - 1].len += (uint32_t)n;
    return RILL_OK;
}

rill_status pieces_add(tok_pieces *p, const char *s, size_t n, bool at_start) {
    if (pieces_add_empty(p, at_start)) return RILL_ENOMEM;
    return pieces_grow(p, s, n);
}

void pieces_free(tok_pieces *p) {
    tokbuf_free(&p->text);
    rill_free(p->s);
    *p = (tok_pieces){0};
}
