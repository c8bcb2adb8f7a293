// detokenizer.c: the streaming detokenizer. Each push decodes the pending tokens together with a
// few tokens of context before them, and emits what the context's own text does not already
// cover. Text is held back while it ends in U+FFFD (an incomplete UTF-8 character or byte-fallback
// sequence that later tokens may complete). The context makes leading-space rules (Metaspace's
// first token, Strip) apply as they do when the whole sequence is decoded at once.
#include <string.h>

#include "base/alloc.h"
#include "tokenizer/tokenizer_internal.h"

enum { CTX_MIN = 1, CTX_MAX = 16 }; // tokens of context: at least one, more while its text is empty

struct tokenizer_stream {
    tokenizer *t;
    bool skip_special;
    tok_ids ids;    // [ids.n] tokens from `ctx` on: ids.p[0] is token number `base`
    size_t start;   // index in ids of the first token whose text is not all emitted
    size_t ctx;     // index in ids where the context starts (ctx <= start)
    size_t emitted; // bytes of the window's text already returned
    tok_buf prefix; // decode(ids[ctx:start])
    tok_buf full;   // scratch: decode(ids[ctx:])
    tok_buf out;    // the text returned by the last call
};

rill_status tokenizer_stream_new(tokenizer *t, bool skip_special, tokenizer_stream **out) {
    tokenizer_stream *s = rill_calloc(1, sizeof *s);
    if (!s) return RILL_ENOMEM;
    s->t = t, s->skip_special = skip_special;
    *out = s;
    return RILL_OK;
}

void tokenizer_stream_reset(tokenizer_stream *s) {
    s->ids.n = s->start = s->ctx = s->emitted = 0;
    s->prefix.n = 0;
}

void tokenizer_stream_free(tokenizer_stream *s) {
    if (!s) return;
    tokids_free(&s->ids);
    tokbuf_free(&s->prefix), tokbuf_free(&s->full), tokbuf_free(&s->out);
    rill_free(s);
}

// Bytes of s[0..n) that can be emitted now: all but a trailing run of U+FFFD.
static size_t settled(const char *s, size_t n) {
    while (n >= 3 && !memcmp(s + n - 3, "\xEF\xBF\xBD", 3))
        n -= 3;
    return n;
}

// Starts a new window after every token so far. Its context is the window just finished (which
// began and ended on character boundaries), or more tokens while the context's text is empty.
static rill_status new_window(tokenizer_stream *s) {
    size_t n = s->ids.n, ctx = s->start;
    if (ctx >= n || n - ctx > CTX_MAX) ctx = n >= CTX_MIN ? n - CTX_MIN : 0;
    rill_status st = tokenizer_decode_into(s->t, s->ids.p + ctx, n - ctx, s->skip_special, &s->prefix);
    while (!st && s->prefix.n == 0 && ctx > 0 && n - ctx < CTX_MAX) {
        ctx--;
        st = tokenizer_decode_into(s->t, s->ids.p + ctx, n - ctx, s->skip_special, &s->prefix);
    }
    if (st) return st;
    // Drop the ids before the context.
    if (n > ctx) memmove(s->ids.p, s->ids.p + ctx, (n - ctx) * sizeof *s->ids.p); // ids.p is NULL before any push
    s->ids.n = n - ctx;
    s->ctx = 0, s->start = s->ids.n, s->emitted = 0;
    return RILL_OK;
}

// Decodes the window with its context and appends up to the settled end (everything with `all`).
static rill_status step(tokenizer_stream *s, bool all) {
    s->out.n = 0;
    rill_status st = tokenizer_decode_into(s->t, s->ids.p + s->ctx, s->ids.n - s->ctx, s->skip_special, &s->full);
    if (st) return st;
    if (s->full.n < s->prefix.n || (s->prefix.n && memcmp(s->full.p, s->prefix.p, s->prefix.n))) {
        // The context's text changed with what followed (byte-fallback bytes of the window joined
        // the context's last bytes while incomplete): decode the window alone.
        s->ctx = s->start, s->prefix.n = 0;
        st = tokenizer_decode_into(s->t, s->ids.p + s->ctx, s->ids.n - s->ctx, s->skip_special, &s->full);
        if (st) return st;
    }
    const char *w = s->full.p + s->prefix.n;
    size_t wn = s->full.n - s->prefix.n, end = all ? wn : settled(w, wn);
    if (end > s->emitted && tokbuf_put(&s->out, w + s->emitted, end - s->emitted)) return RILL_ENOMEM;
    if (end > s->emitted) s->emitted = end;
    if (tokbuf_reserve(&s->out, 0)) return RILL_ENOMEM;
    s->out.p[s->out.n] = '\0';
    if (end == wn) return new_window(s);
    return RILL_OK;
}

rill_status tokenizer_stream_push(tokenizer_stream *s, int32_t id, const char **text, size_t *len) {
    if (tokids_push(&s->ids, id)) return RILL_ENOMEM;
    rill_status st = step(s, false);
    *text = st ? "" : s->out.p, *len = st ? 0 : s->out.n;
    return st;
}

rill_status tokenizer_stream_finish(tokenizer_stream *s, const char **text, size_t *len) {
    rill_status st = step(s, true);
    *text = st ? "" : s->out.p, *len = st ? 0 : s->out.n;
    if (!st) tokenizer_stream_reset(s);
    return st;
}
