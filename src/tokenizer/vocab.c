// vocab.c: the piece <-> id maps (vocab.h): a pool of pieces, and an open-addressing table
// keyed by the piece bytes that doubles when it is half full.
#include "tokenizer/vocab.h"

#include <string.h>

#include "base/alloc.h"

rill_status vocab_init(tok_vocab *v, int32_t n_ids) {
    *v = (tok_vocab){0};
    if (n_ids < 0) return rill_fail(RILL_EINVAL, "vocabulary: negative size");
    v->n = n_ids;
    v->off = rill_malloc((size_t)(n_ids ? n_ids : 1) * sizeof *v->off);
    v->len = rill_malloc((size_t)(n_ids ? n_ids : 1) * sizeof *v->len);
    uint32_t cap = 1024;
    while (cap < (uint32_t)n_ids * 2u + 2u && cap < (1u << 30))
        cap *= 2;
    v->slots = rill_malloc(cap * sizeof *v->slots);
    if (!v->off || !v->len || !v->slots) return vocab_free(v), RILL_ENOMEM;
    memset(v->len, 0xFF, (size_t)n_ids * sizeof *v->len);
    memset(v->slots, 0xFF, cap * sizeof *v->slots);
    v->mask = cap - 1;
    return RILL_OK;
}

static bool same(const tok_vocab *v, int32_t id, const char *s, size_t len) {
    return v->len[id] == len && !memcmp(v->pool.p + v->off[id], s, len);
}

// The slot holding `s`, or the empty slot where it would go.
static uint32_t probe(const tok_vocab *v, const char *s, size_t len) {
    uint32_t i = (uint32_t)tok_hash(s, len) & v->mask;
    while (v->slots[i] >= 0 && !same(v, v->slots[i], s, len))
        i = (i + 1) & v->mask;
    return i;
}

static rill_status grow(tok_vocab *v) {
    uint32_t cap = (v->mask + 1) * 2;
    int32_t *old = v->slots;
    uint32_t old_cap = v->mask + 1;
    v->slots = rill_malloc(cap * sizeof *v->slots);
    if (!v->slots) return v->slots = old, RILL_ENOMEM;
    memset(v->slots, 0xFF, cap * sizeof *v->slots);
    v->mask = cap - 1;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i] >= 0) {
            int32_t id = old[i];
            v->slots[probe(v, v->pool.p + v->off[id], v->len[id])] = id;
        }
    rill_free(old);
    return RILL_OK;
}

rill_status vocab_set(tok_vocab *v, int32_t id, const char *s, size_t len) {
    if (id < 0 || id >= v->n) return rill_fail(RILL_ERANGE, "vocabulary: id %d outside [0, %d)", id, v->n);
    if (len >= UINT32_MAX || v->pool.n + len + 1 >= UINT32_MAX)
        return rill_fail(RILL_ENOMEM, "vocabulary: pieces exceed 4 GiB");
    if (v->len[id] != UINT32_MAX) { // the id changes its piece: drop the old key if it maps here
        uint32_t i = probe(v, v->pool.p + v->off[id], v->len[id]);
        if (v->slots[i] == id) {
            // Deleting from linear probing: re-insert the cluster that follows.
            v->slots[i] = -1;
            v->n_keys--;
            for (uint32_t j = (i + 1) & v->mask; v->slots[j] >= 0; j = (j + 1) & v->mask) {
                int32_t o = v->slots[j];
                v->slots[j] = -1;
                v->slots[probe(v, v->pool.p + v->off[o], v->len[o])] = o;
            }
        }
    }
    uint32_t off = (uint32_t)v->pool.n;
    if (tokbuf_put(&v->pool, s, len) || tokbuf_putc(&v->pool, '\0')) return RILL_ENOMEM;
    v->off[id] = off, v->len[id] = (uint32_t)len;
    if ((v->n_keys + 1) * 2 > v->mask + 1 && grow(v)) return RILL_ENOMEM;
    uint32_t i = probe(v, s, len);
    if (v->slots[i] < 0) v->n_keys++;
    v->slots[i] = id;
    return RILL_OK;
}

int32_t vocab_find(const tok_vocab *v, const char *s, size_t len) {
    if (!v->slots) return -1;
    return v->slots[probe(v, s, len)];
}

void vocab_free(tok_vocab *v) {
    rill_free(v->off);
    rill_free(v->len);
    rill_free(v->slots);
    tokbuf_free(&v->pool);
    *v = (tok_vocab){0};
}
