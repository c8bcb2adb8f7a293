// added_tokens.h: added tokens (special and normal) with their lstrip / rstrip / normalized /
// single_word flags, and the split of a text around them: leftmost-longest matching over a trie,
// the same matches HF tokenizers' AddedVocabulary finds with Aho-Corasick.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tokenizer/tok_util.h"

typedef struct {
    int32_t id;
    uint32_t off, len; // content, bytes in tok_added.pool (for normalized tokens: the normalized form)
    bool special, lstrip, rstrip, normalized, single_word;
} added_token;

typedef struct {
    int32_t first_edge; // index into edges, -1: none
    int32_t token;      // index into tok[] ending here, -1: none
} trie_node;

typedef struct {
    uint8_t byte;
    int32_t child, next; // node reached; next edge of the same parent (-1: last)
} trie_edge;

typedef struct {
    trie_node *nodes; // [n_nodes]; node 0 is the root
    trie_edge *edges; // [n_edges]
    size_t n_nodes, n_edges, cap_nodes, cap_edges;
    int32_t root[256]; // child of the root for each first byte, -1: none
} added_trie;

typedef struct {
    added_token *tok; // [n]
    size_t n, cap;
    tok_buf pool;       // contents back to back
    added_trie trie[2]; // [0]: matched on the raw text (normalized == false); [1]: on normalized text
} tok_added;

typedef struct {
    uint32_t a, b; // bytes [a, b) of the text
    int32_t id;    // the added token's id, or -1 for text in between
} added_seg;

typedef struct {
    added_seg *v; // [cap]
    size_t n, cap;
} added_segs;

// Adds a token; `content` is what the trie matches (already normalized for normalized tokens).
rill_status added_add(tok_added *a, const added_token *t, const char *content, size_t len);
rill_status added_build(tok_added *a); // builds both tries (call after the last added_add)
// Splits s[0..n) into text and token segments using trie `which` (0 raw, 1 normalized). With
// parse_special false, special tokens are not matched (they stay text), as HF's
// encode_special_tokens does.
rill_status added_split(const tok_added *a, int which, const char *s, size_t n, bool parse_special, added_segs *out);
void added_free(tok_added *a);
