// bpe.c: the BPE merge loop (bpe.h). A word starts as one symbol per character (or per byte for
// byte fallback); a min-heap holds candidate pairs ordered by (rank, position) and stale entries
// are skipped when popped, as HF tokenizers' Word::merge_all does. Results are cached per word.
#include "tokenizer/bpe.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"

typedef struct {
    int32_t id;
    int32_t prev, next; // neighbours in the word; -1 at the ends
    uint32_t len;       // bytes covered; 0 once merged into the left neighbour
} sym;

typedef struct {
    uint32_t rank, pos;
    int32_t into;
} cand;

rill_status bpe_init(tok_bpe *m, const tok_vocab *v) {
    *m = (tok_bpe){0};
    m->unk_id = -1;
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        m->byte_ids[b] = vocab_find(v, s, 6);
    }
    m->merge_mask = 1023;
    m->merge_keys = rill_calloc(m->merge_mask + 1, sizeof *m->merge_keys);
    m->merge_rank = rill_malloc((m->merge_mask + 1) * sizeof *m->merge_rank);
    m->merge_into = rill_malloc((m->merge_mask + 1) * sizeof *m->merge_into);
    m->cache = rill_calloc(BPE_CACHE_SLOTS, sizeof *m->cache);
    if (!m->merge_keys || !m->merge_rank || !m->merge_into || !m->cache) return bpe_free(m), RILL_ENOMEM;
    return RILL_OK;
}

static inline uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static inline uint64_t slot_of(uint64_t key, uint64_t mask) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (h ^ (h >> 32)) & mask;
}

static uint64_t find_slot(const tok_bpe *m, uint64_t key) {
    uint64_t i = slot_of(key, m->merge_mask);
    while (m->merge_keys[i] && m->merge_keys[i] != key)
        i = (i + 1) & m->merge_mask;
    return i;
}

static rill_status grow_merges(tok_bpe *m) {
    uint64_t old_cap = m->merge_mask + 1, cap = old_cap * 2;
    uint64_t *ok = m->merge_keys;
    uint32_t *orank = m->merge_rank;
    int32_t *ointo = m->merge_into;
    m->merge_keys = rill_calloc(cap, sizeof *ok);
    m->merge_rank = rill_malloc(cap * sizeof *orank);
    m->merge_into = rill_malloc(cap * sizeof *ointo);
    if (!m->merge_keys || !m->merge_rank || !m->merge_into) {
        rill_free(m->merge_keys), rill_free(m->merge_rank), rill_free(m->merge_into);
        m->merge_keys = ok, m->merge_rank = orank, m->merge_into = ointo;
        return RILL_ENOMEM;
    }
    m->merge_mask = cap - 1;
    for (uint64_t i = 0; i < old_cap; i++)
        if (ok[i]) {
            uint64_t j = find_slot(m, ok[i]);
            m->merge_keys[j] = ok[i], m->merge_rank[j] = orank[i], m->merge_into[j] = ointo[i];
        }
    rill_free(ok), rill_free(orank), rill_free(ointo);
    return RILL_OK;
}

rill_status bpe_add_merge(tok_bpe *m, int32_t left, int32_t right, int32_t into, uint32_t rank) {
    if ((m->n_merges + 1) * 2 > m->merge_mask + 1 && grow_merges(m)) return RILL_ENOMEM;
    uint64_t key = pair_key(left, right), i = find_slot(m, key);
    if (!m->merge_keys[i]) m->n_merges++;
    m->merge_keys[i] = key, m->merge_rank[i] = rank, m->merge_into[i] = into;
    return RILL_OK;
}

static inline bool lookup(const tok_bpe *m, int32_t a, int32_t b, uint32_t *rank, int32_t *into) {
    uint64_t i = find_slot(m, pair_key(a, b));
    if (!m->merge_keys[i]) return false;
    *rank = m->merge_rank[i], *into = m->merge_into[i];
    return true;
}

static inline bool cand_less(cand a, cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(c, h[p])) break;
        h[i] = h[p], i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= *n) break;
        if (l + 1 < *n && cand_less(h[l + 1], h[l])) l++;
        if (!cand_less(h[l], last)) break;
        h[i] = h[l], i = l;
    }
    h[i] = last;
    return top;
}

static rill_status reserve(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return RILL_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *q = rill_realloc(*p, c * elem);
    if (!q) return RILL_ENOMEM;
    *p = q, *cap = c;
    return RILL_OK;
}

// Splits the word into initial symbols (HF BPE::merge_word before the merges).
static rill_status initial_symbols(tok_bpe *m, const tok_vocab *v, const char *w, size_t n, size_t *n_sym) {
    if (reserve(&m->sym, &m->sym_cap, n + 1, sizeof(sym))) return RILL_ENOMEM;
    sym *s = m->sym;
    size_t k = 0;
    int32_t unk_pending = -1; // bytes of a pending unk run, -1: none
    for (size_t i = 0; i < n;) {
        size_t cl = (size_t)tok_utf8_len((uint8_t)w[i]);
        if (cl > n - i) cl = n - i;
        int32_t id = vocab_find(v, w + i, cl);
        if (id >= 0) {
            if (unk_pending >= 0) s[k++] = (sym){m->unk_id, -1, -1, (uint32_t)unk_pending}, unk_pending = -1;
            s[k++] = (sym){id, -1, -1, (uint32_t)cl};
        } else {
            bool done = false;
            if (m->byte_fallback) {
                bool all = true;
                for (size_t j = 0; j < cl; j++)
                    all = all && m->byte_ids[(uint8_t)w[i + j]] >= 0;
                if (all) {
                    if (unk_pending >= 0) s[k++] = (sym){m->unk_id, -1, -1, (uint32_t)unk_pending}, unk_pending = -1;
                    for (size_t j = 0; j < cl; j++)
                        s[k++] = (sym){m->byte_ids[(uint8_t)w[i + j]], -1, -1, 1};
                    done = true;
                }
            }
            if (!done && m->unk_id >= 0) {
                if (unk_pending >= 0 && m->fuse_unk)
                    unk_pending += (int32_t)cl;
                else {
                    if (unk_pending >= 0) s[k++] = (sym){m->unk_id, -1, -1, (uint32_t)unk_pending};
                    unk_pending = (int32_t)cl;
                }
            }
        }
        i += cl;
    }
    if (unk_pending >= 0) s[k++] = (sym){m->unk_id, -1, -1, (uint32_t)unk_pending};
    for (size_t i = 0; i < k; i++)
        s[i].prev = (int32_t)i - 1, s[i].next = i + 1 < k ? (int32_t)i + 1 : -1;
    *n_sym = k;
    return RILL_OK;
}

static rill_status merge_all(tok_bpe *m, size_t n_sym) {
    if (reserve(&m->heap, &m->heap_cap, 2 * n_sym + 2, sizeof(cand))) return RILL_ENOMEM;
    sym *s = m->sym;
    cand *h = m->heap;
    size_t nh = 0;
    uint32_t rank;
    int32_t into;
    for (size_t i = 0; i + 1 < n_sym; i++)
        if (lookup(m, s[i].id, s[i + 1].id, &rank, &into)) heap_push(h, &nh, (cand){rank, (uint32_t)i, into});
    while (nh) {
        cand top = heap_pop(h, &nh);
        sym *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        sym *right = &s[cur->next];
        if (!lookup(m, cur->id, right->id, &rank, &into) || into != top.into) continue;
        cur->id = top.into;
        cur->len += right->len;
        right->len = 0;
        cur->next = right->next;
        if (cur->next >= 0) s[cur->next].prev = (int32_t)top.pos;
        // Each merge removes a symbol and pushes at most two candidates: the heap stays bounded
        // by 2 * n_sym, which `reserve` above guarantees.
        if (cur->prev >= 0 && lookup(m, s[cur->prev].id, cur->id, &rank, &into))
            heap_push(h, &nh, (cand){rank, (uint32_t)cur->prev, into});
        if (cur->next >= 0 && lookup(m, cur->id, s[cur->next].id, &rank, &into))
            heap_push(h, &nh, (cand){rank, top.pos, into});
    }
    return RILL_OK;
}

static void cache_clear(tok_bpe *m) {
    memset(m->cache, 0, BPE_CACHE_SLOTS * sizeof *m->cache);
    m->cache_used = 0;
    m->cache_keys.n = 0;
    m->cache_ids.n = 0;
}

rill_status bpe_encode_word(tok_bpe *m, const tok_vocab *v, const char *w, size_t n, tok_ids *out) {
    if (n == 0) return RILL_OK;
    bool cacheable = n <= BPE_CACHE_MAX_WORD;
    uint64_t hash = 0;
    uint32_t slot = 0;
    if (cacheable) {
        hash = tok_hash(w, n) | 1; // 0 marks an empty slot
        slot = (uint32_t)hash & (BPE_CACHE_SLOTS - 1);
        for (;;) {
            bpe_cache_slot *c = &m->cache[slot];
            if (!c->hash) break;
            if (c->hash == hash && c->key_len == n && !memcmp(m->cache_keys.p + c->key_off, w, n))
                return tokids_put(out, m->cache_ids.p + c->ids_off, c->n_ids);
            slot = (slot + 1) & (BPE_CACHE_SLOTS - 1);
        }
    }
    size_t start = out->n;
    int32_t whole = m->ignore_merges ? vocab_find(v, w, n) : -1;
    if (whole >= 0) {
        if (tokids_push(out, whole)) return RILL_ENOMEM;
    } else {
        size_t n_sym;
        if (initial_symbols(m, v, w, n, &n_sym) || merge_all(m, n_sym)) return RILL_ENOMEM;
        const sym *s = m->sym;
        for (size_t i = 0; i < n_sym; i++)
            if (s[i].len && tokids_push(out, s[i].id)) return RILL_ENOMEM;
    }
    if (cacheable) {
        if (m->cache_used * 2 >= BPE_CACHE_SLOTS || m->cache_keys.n > (16u << 20)) {
            cache_clear(m);
            slot = (uint32_t)hash & (BPE_CACHE_SLOTS - 1);
        }
        size_t n_ids = out->n - start;
        bpe_cache_slot c = {hash, (uint32_t)m->cache_keys.n, (uint32_t)n, (uint32_t)m->cache_ids.n, (uint32_t)n_ids};
        if (tokbuf_put(&m->cache_keys, w, n) || tokids_put(&m->cache_ids, out->p + start, n_ids)) return RILL_ENOMEM;
        m->cache[slot] = c;
        m->cache_used++;
    }
    return RILL_OK;
}

void bpe_free(tok_bpe *m) {
    rill_free(m->merge_keys);
    rill_free(m->merge_rank);
    rill_free(m->merge_into);
    rill_free(m->cache);
    tokbuf_free(&m->cache_keys);
    tokids_free(&m->cache_ids);
    rill_free(m->sym);
    rill_free(m->heap);
    *m = (tok_bpe){0};
}
