// tokenizer.h: rill's tokenizer API (internal for now; include/rill.h will expose it). A tokenizer
// loads from a tokenizer.json folder (with tokenizer_config.json and generation_config.json) or
// from GGUF metadata (tokenizer.ggml.*), encodes text to ids exactly as HF tokenizers does, and
// decodes ids to text, at once or as a stream (a token at a time, never splitting a character).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct tokenizer tokenizer;
typedef struct gguf_file gguf_file;

// `path`: a folder holding tokenizer.json (tokenizer_config.json and generation_config.json are
// read when present), a tokenizer.json file (configs looked up beside it), or a .gguf file.
rill_status tokenizer_load(const char *path, tokenizer **out);
rill_status tokenizer_load_gguf(const gguf_file *f, const char *name, tokenizer **out); // name: for messages
void tokenizer_free(tokenizer *t);                                                      // NULL is allowed

enum {
    TOKENIZER_ADD_SPECIAL = 1,   // add BOS / EOS as the post-processor or the GGUF flags say
    TOKENIZER_PARSE_SPECIAL = 2, // match special tokens in the text (off: they are plain text)
};

// Encodes text[0..len) (any bytes: invalid UTF-8 is first repaired by replacing each maximal
// invalid subsequence with U+FFFD, as Python's bytes.decode("utf-8", "replace") does). *ids is
// allocated with rill_malloc (never NULL on success) and freed by the caller with rill_free.
// Thread-safe: calls on one tokenizer are serialized by its lock.
rill_status tokenizer_encode(tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids, size_t *n_ids);
// Decodes ids to NUL-terminated text (*text from rill_malloc). Ids outside the vocabulary are
// skipped, as HF does; with skip_special, special tokens are too.
rill_status tokenizer_decode(tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text, size_t *len);

int32_t tokenizer_vocab_size(const tokenizer *t); // ids are 0 .. size-1
// The vocabulary's own spelling of a token ("Ġthe", "▁the", "<0x0A>"), or NULL for an unknown id.
const char *tokenizer_piece(const tokenizer *t, int32_t id, size_t *len);
int32_t tokenizer_token_id(const tokenizer *t, const char *piece, size_t len); // -1 when absent
bool tokenizer_is_special(const tokenizer *t, int32_t id);
int32_t tokenizer_bos(const tokenizer *t); // -1 when the model has none
int32_t tokenizer_pad(const tokenizer *t); // -1 when the model has none
// End-of-sequence ids: the tokenizer's eos first, then those of generation_config.json (or the
// GGUF eot / eom ids); *n may be 0.
const int32_t *tokenizer_eos(const tokenizer *t, size_t *n);
bool tokenizer_is_eos(const tokenizer *t, int32_t id);
// The default chat template (tokenizer_config.json or tokenizer.chat_template), or NULL.
const char *tokenizer_chat_template(const tokenizer *t);

// ---- streaming detokenizer (detokenizer.c) ------------------------------------------------------
// Feeds ids one at a time and returns the text that has become final. The concatenation of every
// piece returned (push..., then finish) equals tokenizer_decode of all the ids. Text is held back
// while it ends in an incomplete UTF-8 character or byte-fallback sequence.
typedef struct tokenizer_stream tokenizer_stream;
rill_status tokenizer_stream_new(tokenizer *t, bool skip_special, tokenizer_stream **out);
// *text (NUL-terminated, possibly empty) stays valid until the next call on the stream.
rill_status tokenizer_stream_push(tokenizer_stream *s, int32_t id, const char **text, size_t *len);
rill_status tokenizer_stream_finish(tokenizer_stream *s, const char **text, size_t *len); // the rest
void tokenizer_stream_reset(tokenizer_stream *s);                                         // start a new sequence
void tokenizer_stream_free(tokenizer_stream *s);
