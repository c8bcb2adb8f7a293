// rill.h: the public C API of librill, the only header a user includes.
// Every fallible function returns a rill_status; rill_last_error() then says what failed and
// where (file, field or tensor, byte offset, reason). Library functions never print or exit.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rill_status {
    RILL_OK = 0,
    RILL_EINVAL,       // bad argument from the caller
    RILL_EIO,          // the operating system refused (open, read, write, mmap)
    RILL_EFORMAT,      // a file's contents are malformed or hostile
    RILL_ENOMEM,       // an allocation failed or a size limit was exceeded
    RILL_EUNSUPPORTED, // well-formed, but not something rill handles (yet)
    RILL_ENOTFOUND,    // a named file, key or tensor is absent
    RILL_ERANGE,       // a value lies outside its allowed range
} rill_status;

// The message of the last failure on this thread ("" if none).
const char *rill_last_error(void);
void rill_clear_error(void);
const char *rill_status_name(rill_status st);

// Memory accounting: every large allocation in rill goes through one accounted allocator.
size_t rill_memory_current(void); // bytes allocated now
size_t rill_memory_peak(void);    // highest value of rill_memory_current since the last reset
void rill_memory_reset_peak(void);

// Buffers that rill hands to the caller (token ids, text) are freed with this.
void rill_free_buffer(void *p);

// ---- Tokenizers -------------------------------------------------------------------------------
// Loaded from a model folder (tokenizer.json + tokenizer_config.json + generation_config.json), a
// tokenizer.json file or a GGUF file (tokenizer.ggml.*). Ids equal Hugging Face tokenizers' ids.
typedef struct rill_tokenizer rill_tokenizer;

enum {
    RILL_TOKENIZE_ADD_SPECIAL = 1,   // add BOS/EOS as the model's configuration says
    RILL_TOKENIZE_PARSE_SPECIAL = 2, // match special tokens written in the text
};

rill_status rill_tokenizer_load(const char *path, rill_tokenizer **out);
void rill_tokenizer_free(rill_tokenizer *t); // NULL is allowed

// *ids: [*n_ids] token ids; free with rill_free_buffer.
rill_status rill_tokenize(rill_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                          size_t *n_ids);
// *text: NUL-terminated, *len bytes; free with rill_free_buffer.
rill_status rill_detokenize(rill_tokenizer *t, const int32_t *ids, size_t n_ids, bool skip_special, char **text,
                            size_t *len);
const char *rill_token_piece(const rill_tokenizer *t, int32_t id, size_t *len); // NULL for a bad id
int32_t rill_vocab_size(const rill_tokenizer *t);
int32_t rill_token_bos(const rill_tokenizer *t);                  // -1 when none
const int32_t *rill_token_eos(const rill_tokenizer *t, size_t *n); // every EOS id

// Renders the model's chat template as transformers' apply_chat_template(tokenize=False) does.
// messages_json: a JSON list of messages; tools_json and extra_vars_json (an object of extra
// template variables, e.g. {"enable_thinking": false}) may be NULL. *prompt: free with
// rill_free_buffer. Fails with RILL_ENOTFOUND when the model has no chat template.
rill_status rill_apply_chat_template(rill_tokenizer *t, const char *messages_json, const char *tools_json,
                                     bool add_generation_prompt, const char *extra_vars_json, char **prompt,
                                     size_t *len);

#define RILL_VERSION "0.1.0"

#ifdef __cplusplus
}
#endif
