// bpe.h: the BPE model: merge ranks keyed by (left id, right id), the merge loop over one word
// (a heap of candidate pairs over a linked list of symbols: O(n log n) per word), byte fallback
// to <0xNN> tokens, unknown tokens, ignore_merges, and a cache of whole words.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/tok_util.h"
#include "tokenizer/vocab.h"

typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len; // word bytes in cache_keys
    uint32_t ids_off, n_ids;   // ids in cache_ids
} bpe_cache_slot;

typedef struct {
    // Merges: open addressing keyed by (left << 32 | right) + 1 (0 = empty slot).
    uint64_t *merge_keys; // [merge_mask + 1]
    uint32_t *merge_rank; // [merge_mask + 1] lower merges first
    int32_t *merge_into;  // [merge_mask + 1] id of the merged piece
    uint64_t merge_mask;
    uint64_t n_merges;

    int32_t unk_id;        // -1: none (unknown characters are then dropped, as in HF)
    bool fuse_unk;         // consecutive unknown characters become one unk token
    bool byte_fallback;    // unknown characters become <0xNN> tokens when all their bytes exist
    bool ignore_merges;    // a word that is a whole vocabulary piece is taken as it is
    int32_t byte_ids[256]; // id of "<0xNN>", -1 when absent

    // Word cache: words up to BPE_CACHE_MAX_WORD bytes; emptied when full.
    bpe_cache_slot *cache; // [BPE_CACHE_SLOTS]
    uint32_t cache_used;   // occupied slots
    tok_buf cache_keys;    // word bytes back to back
    tok_ids cache_ids;     // ids back to back

    // Scratch of the merge loop, kept between words.
    void *sym;  // [sym_cap] symbols of the current word
    void *heap; // [heap_cap] candidate merges
    size_t sym_cap, heap_cap;
} tok_bpe;

#define BPE_CACHE_SLOTS    (1u << 16)
#define BPE_CACHE_MAX_WORD 256

rill_status bpe_init(tok_bpe *m, const tok_vocab *v); // finds the <0xNN> ids; no merges yet
// Adds merge number `rank` (left, right) -> into. A pair given twice keeps the later rank.
rill_status bpe_add_merge(tok_bpe *m, int32_t left, int32_t right, int32_t into, uint32_t rank);
// Appends the ids of one pre-tokenized word to out.
rill_status bpe_encode_word(tok_bpe *m, const tok_vocab *v, const char *w, size_t n, tok_ids *out);
void bpe_free(tok_bpe *m);
