// vocab.h: the token <-> id maps of a tokenizer. Pieces are byte strings kept back to back in one
// pool; a hash table (open addressing) maps a piece to its id. When two ids share a piece, the
// one added last wins the piece -> id direction (as a HashMap insert does in HF tokenizers).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tokenizer/tok_util.h"

typedef struct {
    int32_t n;       // ids 0..n-1 (some may be unset: len == UINT32_MAX)
    uint32_t *off;   // [n] byte offset of each piece in pool.p
    uint32_t *len;   // [n] bytes of each piece; UINT32_MAX when the id has no piece
    tok_buf pool;    // pieces back to back, each followed by a NUL
    int32_t *slots;  // [mask + 1] ids; -1 = empty
    uint32_t mask;   // table size - 1 (a power of two)
    uint32_t n_keys; // distinct pieces in the table
} tok_vocab;

rill_status vocab_init(tok_vocab *v, int32_t n_ids);
// Gives `id` the piece s[0..len) and maps the piece to `id` (replacing an earlier mapping).
rill_status vocab_set(tok_vocab *v, int32_t id, const char *s, size_t len);
int32_t vocab_find(const tok_vocab *v, const char *s, size_t len); // -1 when absent
// The piece of `id`, or NULL when id is out of range or unset.
static inline const char *vocab_piece(const tok_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n || v->len[id] == UINT32_MAX) return NULL;
    *len = v->len[id];
    return v->pool.p + v->off[id];
}
void vocab_free(tok_vocab *v);
