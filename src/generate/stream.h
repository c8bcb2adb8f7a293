// stream.h: mlx-lm's stream_generate: generate_step plus the streaming detokenizer, the stop on
// any EOS id (never emitted as text), the finish reason and the stats of a run (prompt and
// generation tokens and tok/s, peak memory from the accounted allocator).
#pragma once
#include "generate/generate.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *text; // the new piece of text (may be empty), NUL-terminated
    size_t text_len;
    int32_t token;         // -1 in the final response when it carries no token
    const float *logprobs; // [vocab], NULL in a final response without a token
    int64_t prompt_tokens;
    double prompt_tps;
    int64_t generation_tokens;
    double generation_tps;
    double peak_memory_gb;
    const char *finish_reason; // NULL while streaming; "stop" or "length" in the last response
} stream_response;

// Called once per response; a nonzero return stops the run (finish_reason stays NULL).
typedef int (*stream_callback)(void *ctx, const stream_response *r);

// Stops at any EOS id: the tokenizer's, the model config's eos_token_id, and extra_eos [n_extra].
rill_status stream_generate(rill_model *m, tokenizer *tok, rill_cache *cache, rill_stream *s, const int32_t *prompt,
                            int64_t n, const generate_params *p, const int32_t *extra_eos, int n_extra,
                            stream_callback cb, void *ctx);
