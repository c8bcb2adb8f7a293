// tokenizer_internal.h: the tokenizer object shared by tokenizer.c (encode / decode) and the two
// loaders (tokenizer_json.c, tokenizer_gguf.c), which fill it in and then call tokenizer_finish.
#pragma once
#include <pthread.h>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

struct tokenizer {
    tok_vocab vocab; // model vocabulary plus added tokens
    tok_bpe bpe;
    tok_added added;
    uint8_t *special;           // [vocab.n] 1 for special added tokens
    tok_normalizer *normalizer; // NULL: none
    tok_pretokenizer *pretok;   // NULL: none (the whole text is one word)
    tok_decoder *decoder;       // NULL: pieces joined with spaces, as HF does
    tok_ids prefix, suffix;     // ids the post-processor puts around the text
    int32_t bos, pad;           // -1 when absent
    tok_ids eos;                // every end-of-sequence id, without repeats
    char *chat_template;        // NULL when absent

    pthread_mutex_t lock;         // serializes encode / decode (the word cache and scratch)
    tok_buf clean, norm;          // scratch: repaired input, normalized segment
    added_segs seg_raw, seg_norm; // scratch: added-token splits
    tok_pieces pieces, tmp;       // scratch: pre-tokenized words, decoder strings
    tok_ids out;                  // scratch: ids of one encode
};

rill_status tokenizer_alloc(tokenizer **out); // zeroed, lock ready, bos = pad = -1
// Adds an added token (content as given; normalized tokens are normalized here) and marks
// special ones. Call after the normalizer is set; then tokenizer_finish builds the tries.
rill_status tokenizer_add_token(tokenizer *t, int32_t id, const char *content, size_t len, bool special, bool lstrip,
                                bool rstrip, bool normalized, bool single_word);
rill_status tokenizer_finish(tokenizer *t);
rill_status tokenizer_add_eos(tokenizer *t, int32_t id); // ignores repeats and ids out of range
// tokenizer_decode into a reusable buffer (cleared first; NUL-terminated).
rill_status tokenizer_decode_into(tokenizer *t, const int32_t *ids, size_t n, bool skip_special, tok_buf *out);
char *tok_strdup(const char *s, size_t n); // rill_malloc'd copy, NUL-terminated

rill_status tokenizer_load_json_file(const char *json_path, const char *dir, tokenizer **out);
