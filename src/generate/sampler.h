// sampler.h: mlx-lm's logits processors and sampler (sample_utils.py) on one row of logits in
// host memory. Processors (logit bias, repetition, presence and frequency penalties) change the
// logits; the sampler turns log-probabilities into a token: argmax when temp == 0, else the
// filters top-p, min-p, XTC and top-k, in that order, then a draw from softmax(logprobs / temp).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

typedef struct {
    float temp;             // 0: argmax and every filter is ignored
    float top_p;            // keep the smallest set with mass above p when 0 < p < 1
    float min_p;            // keep logprob >= max + log(min_p) when > 0
    int min_tokens_to_keep; // min-p always keeps this many (1)
    int top_k;              // keep the k largest when > 0
    float xtc_probability;  // chance of applying XTC per step (0 = off)
    float xtc_threshold;    // in [0, 0.5]
    int n_xtc_special;
    const int32_t *xtc_special; // [n_xtc_special] ids XTC never removes (newline, EOS)
    uint64_t seed;
} sampler_params;

typedef struct {
    int n_bias;
    const int32_t *bias_ids;     // [n_bias]
    const float *bias_values;    // [n_bias], added to the logits
    float repetition_penalty;    // 0 or 1 = off
    int repetition_context_size; // 20
    float presence_penalty;      // 0 = off
    int presence_context_size;   // 20
    float frequency_penalty;     // 0 = off
    int frequency_context_size;  // 20
} logits_params;

// mlx-lm's defaults: temp 0, top_p 1, min_p 0, top_k 0, keep 1, xtc off (threshold 0.1), contexts 20.
sampler_params sampler_defaults(void);
logits_params logits_defaults(void);
// Checks ranges; RILL_ERANGE naming the parameter.
rill_status sampler_check(const sampler_params *p, int vocab);
rill_status logits_check(const logits_params *p, int vocab);

typedef struct {
    sampler_params p;
    uint64_t rng[4]; // xoshiro256** state
    int vocab;
    float *work;     // [vocab] scratch
    int32_t *order;  // [vocab] scratch: token ids sorted by logprob
    int32_t *counts; // [vocab] scratch for the penalties
    float *filtered; // [vocab] the filtered copy of the logprobs a draw uses
} sampler;

rill_status sampler_init(sampler *s, const sampler_params *p, int vocab);
void sampler_free(sampler *s);

// Applies the processors in mlx-lm's order to logits [vocab], given the tokens so far
// (prompt and generated) history [n_hist].
void logits_process(sampler *s, const logits_params *p, const int32_t *history, int64_t n_hist, float *logits);
// logprobs [vocab] = logits - logsumexp(logits)
void log_softmax(const float *logits, int vocab, float *logprobs);
// Draws a token from logprobs [vocab] (left untouched).
int32_t sampler_sample(sampler *s, const float *logprobs);
// The filters alone, in place: every removed token's logprob becomes -inf (for tests).
void sampler_filter(sampler *s, float *logprobs);
// A uniform draw in [0, 1) from the sampler's generator.
double sampler_uniform(sampler *s);
