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
int32_t rill_token_bos(const rill_tokenizer *t);                   // -1 when none
const int32_t *rill_token_eos(const rill_tokenizer *t, size_t *n); // every EOS id

// Renders the model's chat template as transformers' apply_chat_template(tokenize=False) does.
// messages_json: a JSON list of messages; tools_json and extra_vars_json (an object of extra
// template variables, e.g. {"enable_thinking": false}) may be NULL. *prompt: free with
// rill_free_buffer. Fails with RILL_ENOTFOUND when the model has no chat template.
rill_status rill_apply_chat_template(rill_tokenizer *t, const char *messages_json, const char *tools_json,
                                     bool add_generation_prompt, const char *extra_vars_json, char **prompt,
                                     size_t *len);

// ---- Models ----------------------------------------------------------------------------------
// A model loaded from a GGUF file or a model folder (config.json + safetensors, HF or MLX), bound
// to a backend, with the compute stream it runs on. One generation at a time per model.
typedef struct rill_model rill_model;
typedef struct rill_cache rill_cache;

typedef struct rill_model_options {
    int threads;         // CPU worker threads; 0: one per core
    const char *backend; // "cpu" (also when NULL) or "cuda" where built in
} rill_model_options;

rill_model_options rill_model_default_options(void);
// opts may be NULL (the defaults).
rill_status rill_model_load(const char *path, const rill_model_options *opts, rill_model **out);
void rill_model_free(rill_model *m); // NULL is allowed; free the model's caches and generations first
// The model's tokenizer, loaded from the model's path on the first call; the model owns it.
rill_status rill_model_tokenizer(rill_model *m, rill_tokenizer **out);
int32_t rill_model_vocab_size(const rill_model *m);
int64_t rill_model_context_length(const rill_model *m); // max_position_embeddings; 0 when unknown
size_t rill_model_weight_bytes(const rill_model *m);    // accounted bytes the loaded weights hold

// ---- Prompt caches ----------------------------------------------------------------------------
// One KV cache per layer (mlx-lm's make_prompt_cache). A cache may be reused from one generation
// to the next: a new prompt then only carries the tokens beyond what the cache holds.
rill_status rill_cache_make(rill_model *m, rill_cache **out);
void rill_cache_free(rill_cache *c);               // NULL is allowed
int64_t rill_cache_offset(const rill_cache *c);    // positions held
int64_t rill_cache_trim(rill_cache *c, int64_t n); // drops the last n positions; returns how many
size_t rill_cache_nbytes(const rill_cache *c);
// mlx-lm's make_prompt_cache(model, max_kv_size): sliding-window layers get a RotatingKVCache of
// their window, and max_kv_size > 0 makes every other layer a RotatingKVCache(max_kv_size, keep 4).
rill_status rill_cache_make_prompt(rill_model *m, int64_t max_kv_size, rill_cache **out);
bool rill_cache_can_trim(const rill_cache *c); // mlx-lm's can_trim_prompt_cache

// Prompt-cache files: mlx-lm's save_prompt_cache / load_prompt_cache (safetensors in mlx-lm's
// layout, readable by mlx-lm and back; docs/formats.md). metadata: user key/value strings
// (mlx_lm.cache_prompt writes "model" and "tokenizer_config"); n_meta 0 for none. The write is
// atomic. Loading checks the file against the model's shape and fails with the reason for a cache
// made for another model, a truncated or malformed file, or an unknown cache class.
typedef struct rill_metadata {
    size_t n;
    char **keys, **values; // [n] NUL-terminated
} rill_metadata;
rill_status rill_prompt_cache_save(rill_model *m, const rill_cache *c, const char *path, const char *const *keys,
                                   const char *const *values, size_t n_meta);
// *meta (may be NULL) receives the user metadata; free it with rill_metadata_free.
rill_status rill_prompt_cache_load(rill_model *m, const char *path, rill_cache **out, rill_metadata *meta);
void rill_metadata_free(rill_metadata *meta);

// ---- Generation -------------------------------------------------------------------------------
// mlx-lm's sampler and logits processors (REFERENCE.md "Samplers and logits processors").
typedef struct rill_generate_params {
    int max_tokens;         // -1: no limit (default 256, as mlx-lm's API)
    int prefill_step_size;  // prompt tokens per prefill chunk (2048)
    float temp;             // 0: argmax, every filter ignored
    float top_p;            // 1: off
    float min_p;            // 0: off
    int min_tokens_to_keep; // 1
    int top_k;              // 0: off
    float xtc_probability;  // 0: off
    float xtc_threshold;    // in [0, 0.5]; 0.1
    uint64_t seed;
    float repetition_penalty;    // 0 or 1: off
    int repetition_context_size; // 20
    float presence_penalty;      // 0: off
    int presence_context_size;   // 20
    float frequency_penalty;     // 0: off
    int frequency_context_size;  // 20
    int n_logit_bias;
    const int32_t *logit_bias_ids;  // [n_logit_bias]
    const float *logit_bias_values; // [n_logit_bias], added to the logits
    int n_extra_eos;
    const int32_t *extra_eos; // [n_extra_eos] ids that end rill_stream_generate besides the tokenizer's
} rill_generate_params;

rill_generate_params rill_generate_default_params(void);

// generate_step: prefills prompt [n] (n >= 1) into cache (which may hold earlier tokens; NULL: a
// fresh cache that the generation owns), then each rill_generate_next returns one token with its
// logprobs [vocab] (after the processors; valid until the next call). Decode is pipelined: step
// N+1 is running before token N is returned. *done becomes true, with no token, after max_tokens;
// like mlx-lm's generate_step it does not stop at EOS (rill_stream_generate does).
typedef struct rill_generation rill_generation;
rill_status rill_generate_start(rill_model *m, rill_cache *cache, const int32_t *prompt, size_t n,
                                const rill_generate_params *p, rill_generation **out);
rill_status rill_generate_next(rill_generation *g, int32_t *token, const float **logprobs, bool *done);
void rill_generate_free(rill_generation *g); // NULL is allowed

typedef struct rill_generation_stats {
    int64_t prompt_tokens;
    double prompt_tps; // prompt tokens per second of prefill
    int64_t generation_tokens;
    double generation_tps;
    double peak_memory_gb;     // rill_memory_peak() in units of 1e9 bytes
    const char *finish_reason; // NULL while streaming; "stop" (an EOS id) or "length" at the end
} rill_generation_stats;

// Called with each new piece of text (may be empty; never splits a UTF-8 character), its token
// and the stats so far. The last call has stats->finish_reason set: "stop" carries the EOS id
// (never emitted as text), "length" carries -1. A nonzero return stops the generation.
typedef int (*rill_text_callback)(void *user, const char *text, size_t len, int32_t token,
                                  const rill_generation_stats *stats);

// mlx-lm's stream_generate: tokenizes prompt (BOS added unless the text starts with it; special
// tokens written in the text are parsed; no chat template: see rill_apply_chat_template), runs
// generate_step on a fresh cache and streams the detokenized text to cb until an EOS id or
// max_tokens. tok may be NULL (the model's tokenizer).
rill_status rill_stream_generate(rill_model *m, rill_tokenizer *tok, const char *prompt, const rill_generate_params *p,
                                 rill_text_callback cb, void *user);

#define RILL_VERSION "0.1.0"

#ifdef __cplusplus
}
#endif
