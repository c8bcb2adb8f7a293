// generate.h: generate_step as mlx-lm runs it. The prompt is prefilled in chunks of
// prefill_step_size (scratch released after), then decode is pipelined: each call first hands
// step N+1 to the stream (the CPU compute thread), then waits for token N and returns it
// (DESIGN.md rule 4). Processors and sampler run inside the step, so a step needs nothing from
// the caller: step N+1 reads token N where step N wrote it.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "cache/cache.h"
#include "generate/sampler.h"
#include "model/model.h"

typedef struct {
    int max_tokens;        // -1: no limit (mlx-lm: 256 in the API, 100 in the CLI)
    int prefill_step_size; // 2048
    sampler_params sampling;
    logits_params processing;
    // Called after each prefill chunk with (tokens done, total).
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} generate_params;

generate_params generate_defaults(void);

typedef struct generator generator;

// Prefills prompt [n] (n >= 1) into cache, which may already hold earlier tokens, then prepares the
// decode. The stream must be idle and used by nobody else until generate_free.
rill_status generate_start(rill_model *m, rill_cache *cache, rill_stream *s, const int32_t *prompt, int64_t n,
                           const generate_params *p, generator **out);
// The next token and its logprobs [vocab] (after the processors; valid until the next call).
// *done becomes true, with no token, once max_tokens have been returned.
rill_status generate_next(generator *g, int32_t *token, const float **logprobs, bool *done);
// Waits for any step in flight, then frees. The cache keeps every token that was returned (and
// one more when a step was in flight: mlx-lm's cache is likewise one ahead).
void generate_free(generator *g);

// For tests: steps handed to the stream so far, and returned to the caller so far.
int64_t generate_submitted(const generator *g);
int64_t generate_returned(const generator *g);
// Seconds spent in prefill, and from the first decode submission to the latest token.
double generate_prompt_seconds(const generator *g);
double generate_decode_seconds(const generator *g);
