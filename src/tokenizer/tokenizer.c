// tokenizer.c: encode and decode. Encode runs HF tokenizers' pipeline: added tokens on the raw
// text, then per segment normalizer -> added tokens on the normalized text -> pre-tokenizer ->
// BPE per word, then the post-processor's BOS / EOS. Decode maps ids to pieces and runs the
// decoder chain.
#include <string.h>

#include "base/alloc.h"
#include "tokenizer/tokenizer_internal.h"

char *tok_strdup(const char *s, size_t n) {
    char *d = rill_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

rill_status tokenizer_alloc(tokenizer **out) {
    tokenizer *t = rill_calloc(1, sizeof *t);
    if (!t) return RILL_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    t->bos = t->pad = -1;
    *out = t;
    return RILL_OK;
}

rill_status tokenizer_add_token(tokenizer *t, int32_t id, const char *content, size_t len, bool special, bool lstrip,
                                bool rstrip, bool normalized, bool single_word) {
    if (id < 0 || id >= t->vocab.n) return rill_fail(RILL_ERANGE, "added token id %d outside the vocabulary", id);
    added_token a = {id, 0, 0, special, lstrip, rstrip, normalized, single_word};
    if (normalized && t->normalizer) {
        if (normalizer_apply(t->normalizer, content, len, &t->norm)) return RILL_ENOMEM;
        content = t->norm.p ? t->norm.p : "", len = t->norm.n;
    }
    if (special) t->special[id] = 1;
    return added_add(&t->added, &a, content, len);
}

rill_status tokenizer_add_eos(tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->vocab.n) return RILL_OK;
    for (size_t i = 0; i < t->eos.n; i++)
        if (t->eos.p[i] == id) return RILL_OK;
    return tokids_push(&t->eos, id);
}

rill_status tokenizer_finish(tokenizer *t) { return added_build(&t->added); }

void tokenizer_free(tokenizer *t) {
    if (!t) return;
    vocab_free(&t->vocab);
    bpe_free(&t->bpe);
    added_free(&t->added);
    rill_free(t->special);
    if (t->normalizer) normalizer_free(t->normalizer), rill_free(t->normalizer);
    if (t->pretok) pretok_free(t->pretok), rill_free(t->pretok);
    if (t->decoder) decoder_free(t->decoder), rill_free(t->decoder);
    tokids_free(&t->prefix), tokids_free(&t->suffix), tokids_free(&t->eos), tokids_free(&t->out);
    rill_free(t->chat_template);
    tokbuf_free(&t->clean), tokbuf_free(&t->norm);
    rill_free(t->seg_raw.v), rill_free(t->seg_norm.v);
    pieces_free(&t->pieces), pieces_free(&t->tmp);
    pthread_mutex_destroy(&t->lock);
    rill_free(t);
}

// Pre-tokenizes one text segment and runs BPE on each word.
static rill_status encode_words(tokenizer *t, const char *s, size_t n, bool at_start) {
    if (n == 0) return RILL_OK;
    pieces_reset(&t->pieces);
    if (pieces_add(&t->pieces, s, n, at_start)) return RILL_ENOMEM;
    if (t->pretok && pretok_apply(t->pretok, &t->pieces, &t->tmp)) return RILL_ENOMEM;
    for (size_t i = 0; i < t->pieces.n; i++)
        if (bpe_encode_word(&t->bpe, &t->vocab, piece_ptr(&t->pieces, i), t->pieces.s[i].len, &t->out))
            return RILL_ENOMEM;
    return RILL_OK;
}

static rill_status encode_segment(tokenizer *t, const char *s, size_t n, bool at_start, bool parse_special) {
    if (t->normalizer) {
        if (normalizer_apply(t->normalizer, s, n, &t->norm)) return RILL_ENOMEM;
        s = t->norm.p ? t->norm.p : "", n = t->norm.n;
    }
    if (!t->added.trie[1].n_nodes || t->added.trie[1].n_nodes == 1) return encode_words(t, s, n, at_start);
    if (added_split(&t->added, 1, s, n, parse_special, &t->seg_norm)) return RILL_ENOMEM;
    for (size_t i = 0; i < t->seg_norm.n; i++) {
        added_seg g = t->seg_norm.v[i];
        rill_status st =
            g.id >= 0 ? tokids_push(&t->out, g.id) : encode_words(t, s + g.a, g.b - g.a, at_start && g.a == 0);
        if (st) return st;
    }
    return RILL_OK;
}

static rill_status encode_locked(tokenizer *t, const char *text, size_t len, unsigned flags) {
    t->out.n = 0;
    if (tok_utf8_valid_prefix(text, len) != len) { // repair invalid UTF-8 first (see tokenizer.h)
        t->clean.n = 0;
        if (tok_utf8_append_lossy(&t->clean, text, len)) return RILL_ENOMEM;
        text = t->clean.p, len = t->clean.n;
    }
    bool add_special = flags & TOKENIZER_ADD_SPECIAL, parse_special = flags & TOKENIZER_PARSE_SPECIAL;
    if (add_special && tokids_put(&t->out, t->prefix.p, t->prefix.n)) return RILL_ENOMEM;
    if (added_split(&t->added, 0, text, len, parse_special, &t->seg_raw)) return RILL_ENOMEM;
    for (size_t i = 0; i < t->seg_raw.n; i++) {
        added_seg g = t->seg_raw.v[i];
        rill_status st =
            g.id >= 0 ? tokids_push(&t->out, g.id) : encode_segment(t, text + g.a, g.b - g.a, g.a == 0, parse_special);
        if (st) return st;
    }
    if (add_special && tokids_put(&t->out, t->suffix.p, t->suffix.n)) return RILL_ENOMEM;
    return RILL_OK;
}

rill_status tokenizer_encode(tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids, size_t *n_ids) {
    *ids = NULL, *n_ids = 0;
    if (!text && len) return rill_fail(RILL_EINVAL, "tokenizer_encode: text is NULL");
    pthread_mutex_lock(&t->lock);
    rill_status st = encode_locked(t, text ? text : "", len, flags);
    if (!st) {
        *ids = rill_malloc((t->out.n ? t->out.n : 1) * sizeof **ids);
        if (!*ids)
            st = RILL_ENOMEM;
        else {
            if (t->out.n) memcpy(*ids, t->out.p, t->out.n * sizeof **ids);
            *n_ids = t->out.n;
        }
    }
    if (t->out.cap > (1u << 20)) tokids_free(&t->out); // do not keep a huge scratch around
    pthread_mutex_unlock(&t->lock);
    return st;
}

static rill_status decode_locked(tokenizer *t, const int32_t *ids, size_t n, bool skip_special, tok_buf *out) {
    pieces_reset(&t->pieces);
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = vocab_piece(&t->vocab, ids[i], &len);
        if (!p || (skip_special && t->special[ids[i]])) continue;
        if (pieces_add(&t->pieces, p, len, false)) return RILL_ENOMEM;
    }
    if (t->decoder && decoder_apply(t->decoder, &t->pieces, &t->tmp)) return RILL_ENOMEM;
    for (size_t i = 0; i < t->pieces.n; i++) {
        if (!t->decoder && i && tokbuf_putc(out, ' ')) return RILL_ENOMEM;
        if (tokbuf_put(out, piece_ptr(&t->pieces, i), t->pieces.s[i].len)) return RILL_ENOMEM;
    }
    return tokbuf_reserve(out, 0);
}

rill_status tokenizer_decode_into(tokenizer *t, const int32_t *ids, size_t n, bool skip_special, tok_buf *out) {
    out->n = 0;
    pthread_mutex_lock(&t->lock);
    rill_status st = decode_locked(t, ids, n, skip_special, out);
    pthread_mutex_unlock(&t->lock);
    if (!st) out->p[out->n] = '\0';
    return st;
}

rill_status tokenizer_decode(tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text, size_t *len) {
    tok_buf out = {0};
    rill_status st = tokenizer_decode_into(t, ids, n, skip_special, &out);
    if (st) return tokbuf_free(&out), st;
    out.p[out.n] = '\0';
    *text = out.p, *len = out.n;
    return RILL_OK;
}

int32_t tokenizer_vocab_size(const tokenizer *t) { return t->vocab.n; }
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len) { return vocab_piece(&t->vocab, id, len); }
int32_t tokenizer_token_id(const tokenizer *t, const char *piece, size_t len) {
    return vocab_find(&t->vocab, piece, len);
}
bool tokenizer_is_special(const tokenizer *t, int32_t id) { return id >= 0 && id < t->vocab.n && t->special[id]; }
int32_t tokenizer_bos(const tokenizer *t) { return t->bos; }
int32_t tokenizer_pad(const tokenizer *t) { return t->pad; }
const int32_t *tokenizer_eos(const tokenizer *t, size_t *n) {
    *n = t->eos.n;
    return t->eos.p;
}
bool tokenizer_is_eos(const tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->eos.n; i++)
        if (t->eos.p[i] == id) return true;
    return false;
}
const char *tokenizer_chat_template(const tokenizer *t) { return t->chat_template; }
