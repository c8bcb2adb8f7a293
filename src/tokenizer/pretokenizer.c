// pretokenizer.c: HF tokenizers' pre-tokenizers: Split (pattern + behaviour + invert), ByteLevel
// (prefix space, GPT-2 regex, byte -> character map), Metaspace (replacement, prepend scheme,
// split), Digits, WhitespaceSplit and Sequence. Each turns every piece into its sub-pieces.
#include <string.h>

#include "base/alloc.h"
#include "tokenizer/pipeline.h"

const char TOK_GPT2_REGEX[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    uint32_t a, b; // bytes [a, b) of the piece
    bool match;
} seg;

typedef struct {
    seg *v; // [cap]
    size_t n, cap;
} segs;

static rill_status seg_push(segs *s, uint32_t a, uint32_t b, bool m) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        seg *v = rill_realloc(s->v, cap * sizeof *v);
        if (!v) return RILL_ENOMEM;
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = (seg){a, b, m};
    return RILL_OK;
}

// The (match / no match) segments covering s[0..n), as HF's Pattern::find_matches gives them.
static rill_status find_segments(const tok_pretokenizer *pt, const char *s, size_t n, segs *out) {
    out->n = 0;
    if (pt->kind == PRE_SPLIT || pt->kind == PRE_BYTELEVEL) {
        size_t from = 0, prev = 0, ms, me;
        while (pattern_next(&pt->pat, s, n, &from, &ms, &me)) {
            if (prev != ms && seg_push(out, (uint32_t)prev, (uint32_t)ms, false)) return RILL_ENOMEM;
            if (seg_push(out, (uint32_t)ms, (uint32_t)me, true)) return RILL_ENOMEM;
            prev = me;
        }
        if (prev != n && seg_push(out, (uint32_t)prev, (uint32_t)n, false)) return RILL_ENOMEM;
        return RILL_OK;
    }
    // Character predicates: each matching character is a match of its own.
    size_t last = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = tok_utf8_decode((const uint8_t *)s + i, n - i, &c);
        if (!l) c = 0xFFFD, l = 1;
        bool hit;
        if (pt->kind == PRE_DIGITS)
            hit = tok_is_numeric(c);
        else if (pt->kind == PRE_WHITESPACE_SPLIT)
            hit = tok_is_whitespace(c);
        else
            hit = l == pt->rep_len && !memcmp(s + i, pt->rep, (size_t)l); // Metaspace
        if (hit) {
            if (last < i && seg_push(out, (uint32_t)last, (uint32_t)i, false)) return RILL_ENOMEM;
            if (seg_push(out, (uint32_t)i, (uint32_t)(i + (size_t)l), true)) return RILL_ENOMEM;
            last = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (last < n && seg_push(out, (uint32_t)last, (uint32_t)n, false)) return RILL_ENOMEM;
    return RILL_OK;
}

// Applies a split behaviour in place (HF's NormalizedString::split); afterwards every segment
// with match == false is kept and the others are dropped.
static void apply_behavior(segs *s, split_behavior b, bool invert) {
    if (invert)
        for (size_t i = 0; i < s->n; i++)
            s->v[i].match = !s->v[i].match;
    size_t k = 0;
    bool prev_match = false;
    switch (b) {
    case SPLIT_REMOVED:
        for (size_t i = 0; i < s->n; i++)
            if (!s->v[i].match) s->v[k++] = s->v[i];
        break;
    case SPLIT_ISOLATED:
        for (size_t i = 0; i < s->n; i++)
            s->v[k++] = (seg){s->v[i].a, s->v[i].b, false};
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < s->n; i++) {
            seg g = s->v[i];
            if (g.match && !prev_match && k > 0)
                s->v[k - 1].b = g.b;
            else
                s->v[k++] = (seg){g.a, g.b, false};
            prev_match = g.match;
        }
        break;
    case SPLIT_MERGED_NEXT: // the same walk from the right, merging into the following piece
        k = s->n;
        for (size_t i = s->n; i-- > 0;) {
            seg g = s->v[i];
            if (g.match && !prev_match && k < s->n)
                s->v[k].a = g.a;
            else
                s->v[--k] = (seg){g.a, g.b, false};
            prev_match = g.match;
        }
        memmove(s->v, s->v + k, (s->n - k) * sizeof *s->v);
        k = s->n - k;
        break;
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < s->n; i++) {
            seg g = s->v[i];
            if (g.match == prev_match && k > 0)
                s->v[k - 1].b = g.b;
            else
                s->v[k++] = (seg){g.a, g.b, false};
            prev_match = g.match;
        }
        break;
    }
    s->n = k;
}

static rill_status emit_bytelevel(tok_pieces *out, const char *s, size_t n, bool at_start) {
    if (pieces_add_empty(out, at_start) || tokbuf_reserve(&out->text, 2 * n)) return RILL_ENOMEM;
    char *d = out->text.p + out->text.n;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = bytelevel_cp((uint8_t)s[i]);
        if (cp < 0x80)
            *d++ = (char)cp;
        else
            *d++ = (char)(0xC0 | cp >> 6), *d++ = (char)(0x80 | (cp & 0x3F));
    }
    size_t len = (size_t)(d - (out->text.p + out->text.n));
    out->text.n += len;
    out->text.p[out->text.n] = '\0';
    out->s[out->n - 1].len = (uint32_t)len;
    return RILL_OK;
}

// Splits one piece into `out`, keeping `at_start` only on a sub-piece that begins at byte 0.
static rill_status split_piece(const tok_pretokenizer *pt, const char *s, size_t n, bool at_start, segs *sg,
                               tok_pieces *out) {
    if (find_segments(pt, s, n, sg)) return RILL_ENOMEM;
    apply_behavior(sg,
                   pt->kind == PRE_SPLIT              ? pt->behavior
                   : pt->kind == PRE_METASPACE        ? SPLIT_MERGED_NEXT
                   : pt->kind == PRE_DIGITS           ? (pt->individual_digits ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS)
                   : pt->kind == PRE_WHITESPACE_SPLIT ? SPLIT_REMOVED
                                                      : SPLIT_ISOLATED,
                   pt->kind == PRE_SPLIT && pt->invert);
    for (size_t i = 0; i < sg->n; i++) {
        seg g = sg->v[i];
        if (g.b <= g.a) continue;
        rill_status st = pt->kind == PRE_BYTELEVEL ? emit_bytelevel(out, s + g.a, g.b - g.a, at_start && g.a == 0)
                                                   : pieces_add(out, s + g.a, g.b - g.a, at_start && g.a == 0);
        if (st) return st;
    }
    return RILL_OK;
}

static rill_status one_piece(const tok_pretokenizer *pt, const char *s, size_t n, bool at_start, segs *sg, tok_buf *tmp,
                             tok_pieces *out) {
    switch (pt->kind) {
    case PRE_SPLIT:
    case PRE_DIGITS:
    case PRE_WHITESPACE_SPLIT: return split_piece(pt, s, n, at_start, sg, out);
    case PRE_BYTELEVEL:
        if (pt->add_prefix_space && (n == 0 || s[0] != ' ')) {
            tmp->n = 0;
            if (tokbuf_putc(tmp, ' ') || tokbuf_put(tmp, s, n)) return RILL_ENOMEM;
            s = tmp->p, n = tmp->n;
        }
        if (pt->use_regex) return split_piece(pt, s, n, at_start, sg, out);
        return n ? emit_bytelevel(out, s, n, at_start) : RILL_OK;
    case PRE_METASPACE: {
        tmp->n = 0;
        bool starts = (n && s[0] == ' ') || (n >= (size_t)pt->rep_len && !memcmp(s, pt->rep, (size_t)pt->rep_len));
        if (!starts && (pt->prepend == PREPEND_ALWAYS || (pt->prepend == PREPEND_FIRST && at_start)))
            if (tokbuf_put(tmp, pt->rep, (size_t)pt->rep_len)) return RILL_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            rill_status st = s[i] == ' ' ? tokbuf_put(tmp, pt->rep, (size_t)pt->rep_len) : tokbuf_putc(tmp, s[i]);
            if (st) return st;
        }
        if (pt->split) return split_piece(pt, tmp->p, tmp->n, at_start, sg, out);
        return tmp->n ? pieces_add(out, tmp->p, tmp->n, at_start) : RILL_OK;
    }
    case PRE_SEQUENCE: break;
    }
    return RILL_OK;
}

rill_status pretok_apply(const tok_pretokenizer *pt, tok_pieces *p, tok_pieces *tmp) {
    if (pt->kind == PRE_SEQUENCE) {
        for (size_t i = 0; i < pt->n_items; i++)
            if (pretok_apply(&pt->items[i], p, tmp)) return RILL_ENOMEM;
        return RILL_OK;
    }
    segs sg = {0};
    tok_buf scratch = {0};
    pieces_reset(tmp);
    rill_status st = RILL_OK;
    for (size_t i = 0; !st && i < p->n; i++)
        st = one_piece(pt, piece_ptr(p, i), p->s[i].len, p->s[i].at_start, &sg, &scratch, tmp);
    rill_free(sg.v);
    tokbuf_free(&scratch);
    tok_pieces t = *p;
    *p = *tmp, *tmp = t;
    return st;
}

void pretok_free(tok_pretokenizer *pt) {
    if (!pt) return;
    for (size_t i = 0; i < pt->n_items; i++)
        pretok_free(&pt->items[i]);
    rill_free(pt->items);
    pattern_free(&pt->pat);
    *pt = (tok_pretokenizer){0};
}
