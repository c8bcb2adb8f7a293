// added_tokens.c: added-token tries and the split around matches (added_tokens.h). Matching is
// leftmost-longest and non-overlapping; lstrip / rstrip widen a match over Unicode whitespace and
// single_word rejects a match that touches a word character, as HF tokenizers does.
#include "tokenizer/added_tokens.h"

#include <string.h>

#include "base/alloc.h"

rill_status added_add(tok_added *a, const added_token *t, const char *content, size_t len) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        added_token *v = rill_realloc(a->tok, cap * sizeof *v);
        if (!v) return RILL_ENOMEM;
        a->tok = v, a->cap = cap;
    }
    added_token x = *t;
    x.off = (uint32_t)a->pool.n, x.len = (uint32_t)len;
    if (tokbuf_put(&a->pool, content, len)) return RILL_ENOMEM;
    a->tok[a->n++] = x;
    return RILL_OK;
}

static rill_status new_node(added_trie *t, int32_t *out) {
    if (t->n_nodes == t->cap_nodes) {
        size_t cap = t->cap_nodes ? t->cap_nodes * 2 : 256;
        trie_node *v = rill_realloc(t->nodes, cap * sizeof *v);
        if (!v) return RILL_ENOMEM;
        t->nodes = v, t->cap_nodes = cap;
    }
    t->nodes[t->n_nodes] = (trie_node){-1, -1};
    *out = (int32_t)t->n_nodes++;
    return RILL_OK;
}

static int32_t child_of(const added_trie *t, int32_t node, uint8_t b) {
    if (node == 0) return t->root[b];
    for (int32_t e = t->nodes[node].first_edge; e >= 0; e = t->edges[e].next)
        if (t->edges[e].byte == b) return t->edges[e].child;
    return -1;
}

static rill_status insert(added_trie *t, const char *s, size_t n, int32_t token) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = child_of(t, node, b);
        if (c < 0) {
            if (new_node(t, &c)) return RILL_ENOMEM;
            if (node == 0)
                t->root[b] = c;
            else {
                if (t->n_edges == t->cap_edges) {
                    size_t cap = t->cap_edges ? t->cap_edges * 2 : 256;
                    trie_edge *v = rill_realloc(t->edges, cap * sizeof *v);
                    if (!v) return RILL_ENOMEM;
                    t->edges = v, t->cap_edges = cap;
                }
                t->edges[t->n_edges] = (trie_edge){b, c, t->nodes[node].first_edge};
                t->nodes[node].first_edge = (int32_t)t->n_edges++;
            }
        }
        node = c;
    }
    if (t->nodes[node].token < 0) t->nodes[node].token = token; // the first of equal contents wins
    return RILL_OK;
}

rill_status added_build(tok_added *a) {
    for (int w = 0; w < 2; w++) {
        added_trie *t = &a->trie[w];
        rill_free(t->nodes), rill_free(t->edges);
        *t = (added_trie){0};
        memset(t->root, 0xFF, sizeof t->root);
        int32_t root;
        if (new_node(t, &root)) return RILL_ENOMEM;
        for (size_t i = 0; i < a->n; i++)
            if (a->tok[i].normalized == (w == 1) && a->tok[i].len &&
                insert(t, a->pool.p + a->tok[i].off, a->tok[i].len, (int32_t)i))
                return RILL_ENOMEM;
    }
    return RILL_OK;
}

// Leftmost-longest match at or after `from`: token index, and [*ms, *me); -1 when none.
static int32_t next_match(const added_trie *t, const char *s, size_t n, size_t from, size_t *ms, size_t *me) {
    for (size_t p = from; p < n; p++) {
        int32_t node = t->root[(uint8_t)s[p]];
        if (node < 0) continue;
        int32_t best = -1;
        size_t end = 0;
        for (size_t q = p + 1;; q++) {
            if (t->nodes[node].token >= 0) best = t->nodes[node].token, end = q;
            if (q >= n) break;
            node = child_of(t, node, (uint8_t)s[q]);
            if (node < 0) break;
        }
        if (best >= 0) {
            *ms = p, *me = end;
            return best;
        }
    }
    return -1;
}

static bool is_word_char(uint32_t c) { return c == '_' || tok_is_alphanumeric(c); }

static uint32_t char_before(const char *s, size_t i) { // the character ending at byte i (i > 0)
    size_t k = i - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80)
        k--;
    uint32_t c;
    return tok_utf8_decode((const uint8_t *)s + k, i - k, &c) ? c : 0xFFFD;
}

static size_t char_start_before(const char *s, size_t i) {
    size_t k = i - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

static rill_status push(added_segs *o, size_t a, size_t b, int32_t id) {
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 32;
        added_seg *v = rill_realloc(o->v, cap * sizeof *v);
        if (!v) return RILL_ENOMEM;
        o->v = v, o->cap = cap;
    }
    o->v[o->n++] = (added_seg){(uint32_t)a, (uint32_t)b, id};
    return RILL_OK;
}

rill_status added_split(const tok_added *a, int which, const char *s, size_t n, bool parse_special, added_segs *out) {
    out->n = 0;
    const added_trie *t = &a->trie[which];
    size_t pos = 0, done = 0, ms, me;
    int32_t k;
    while (t->nodes && (k = next_match(t, s, n, pos, &ms, &me)) >= 0) {
        pos = me;
        const added_token *tk = &a->tok[k];
        if (tk->special && !parse_special) continue;
        uint32_t c;
        if (tk->single_word) {
            bool left_ok = ms == 0 || !is_word_char(char_before(s, ms));
            bool right_ok = me == n || !tok_utf8_decode((const uint8_t *)s + me, n - me, &c) || !is_word_char(c);
            if (!left_ok || !right_ok) continue;
        }
        size_t start = ms, stop = me;
        if (tk->lstrip) {
            while (start > 0 && tok_is_whitespace(char_before(s, start)))
                start = char_start_before(s, start);
            if (start < done) start = done;
        }
        if (tk->rstrip) {
            int l;
            while (stop < n && (l = tok_utf8_decode((const uint8_t *)s + stop, n - stop, &c)) && tok_is_whitespace(c))
                stop += (size_t)l;
        }
        if (done < start && push(out, done, start, -1)) return RILL_ENOMEM;
        if (push(out, start, stop, tk->id)) return RILL_ENOMEM;
        done = stop;
    }
    if (done < n && push(out, done, n, -1)) return RILL_ENOMEM;
    return RILL_OK;
}

void added_free(tok_added *a) {
    rill_free(a->tok);
    tokbuf_free(&a->pool);
    for (int w = 0; w < 2; w++)
        rill_free(a->trie[w].nodes), rill_free(a->trie[w].edges);
    *a = (tok_added){0};
}
