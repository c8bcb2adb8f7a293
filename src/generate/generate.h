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
    // KV quantization (mlx-lm's kv_bits, kv_group_size, quantized_kv_start): after each prefill
    // chunk and each decode step, every layer whose offset is >= quantized_kv_start becomes a
    // quantized cache. kv_bits 0: never.
    int kv_bits;                // 0, 4 or 8
    int kv_group_size;          // 64
    int64_t quantized_kv_start; // 0 (the CLI's default is 5000)
    // The device decode loop (backends with graph ops: CUDA): the sampler runs on the device and
    // each step is one replay of a captured graph. It serves greedy and temp/top-k sampling
    // without processors; otherwise, or with host_sampling, the logits come to the host.
    bool host_sampling; // always the host path (logprobs for every token)
    bool no_graphs;     // the device loop with plain launches (to check graphs against)
    bool ignore_eos;    // stream_generate runs on through EOS ids, to max_tokens (llama.cpp's --ignore-eos)
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
// The next token and its logprobs [vocab] (after the processors; valid until the next call;
// NULL on the device loop, which never brings the logits to the host).
// *done becomes true, with no token, once max_tokens have been returned.
rill_status generate_next(generator *g, int32_t *token, const float **logprobs, bool *done);
// Waits for any step in flight, then frees. The cache keeps every token that was returned (and
// one more when a step was in flight: mlx-lm's cache is likewise one ahead).
void generate_free(generator *g);

// For tests: steps handed to the stream so far, and returned to the caller so far.
int64_t generate_submitted(const generator *g);
int64_t generate_returned(const generator *g);
// Whether this generator runs the device loop, and whether its steps replay a captured graph.
bool generate_on_device(const generator *g);
bool generate_uses_graph(const generator *g);
// Seconds spent in prefill, and from the first decode submission to the latest token.
double generate_prompt_seconds(const generator *g);
double generate_decode_seconds(const generator *g);
