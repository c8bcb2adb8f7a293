// estimate.h: the memory budget of a run before it starts (`rill estimate`): the seed guide's
// formulas (REFERENCE.md "Memory budget") with the sizes rill really allocates: the weights as the
// loader keeps them (model_measure), the KV cache as generate_step grows and quantizes it, LoRA
// adapters with their gradients and Adam state, and the decoder's scratch for one prefill chunk.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "model/model.h"

typedef struct {
    int64_t context;            // positions the cache holds at the end (prompt + generated tokens)
    int batch;                  // sequences, each with its own cache, prefilled and decoded together
    int kv_bits;                // 0: plain, in the backend's activation dtype; 4 or 8: quantized
    int kv_group_size;          // 64
    int64_t quantized_kv_start; // a layer is quantized once it holds this many positions (generate's rule)
    int64_t max_kv_size;        // > 0: RotatingKVCache(max_kv_size, keep 4) for every global layer
    int prefill_step_size;      // 2048
    int lora_rank;              // 0: no LoRA
    int lora_layers;            // LoRA on every linear layer of the last lora_layers blocks
    size_t tokenizer_bytes;     // what the run's tokenizer holds (estimate_tokenizer_bytes); 0: token ids only
} estimate_params;

// context 4096, batch 1, plain KV, group 64, quantized_kv_start 5000 (the CLI's), no rotation,
// prefill_step_size 2048, no LoRA.
estimate_params estimate_defaults(void);

typedef struct {
    // The parts; total is their sum.
    size_t weights;      // what loading keeps: repacked, decoded and mapped tensors, norms, file metadata
    size_t kv_cache;     // the cache holding `context` positions (every sequence of the batch)
    size_t kv_transient; // the most the cache holds beyond that on the way: a layer's old buffer while it
                         // grows, the plain rows of a layer while they are quantized
    size_t lora;         // lora_adapter + lora_gradients + lora_optimizer
    size_t scratch;      // the decoder's activations for the largest chunk, and its logits
    size_t runtime;      // generate's host buffers: token history, logprob rings, sampler, chunk ids
    size_t tokenizer;    // the tokenizer, when the run tokenizes text (params.tokenizer_bytes)
    size_t total;        // the budget: the peak memory the run should reach

    // How the parts were made.
    size_t kv_position_bytes;   // one position in every layer as stored (global layers' steady state)
    size_t kv_f16_bytes;        // the guide's formula at dtype_bytes 2: batch * (k_dim + v_dim) * context * 2 * layers
    rill_dtype kv_dtype;        // of a plain cache (the backend's activations)
    size_t lora_adapter;        // A [in][r] and B [r][out] of every adapted layer, f32
    size_t lora_gradients;      // their gradients, f32 (the guide's formula: adapter + gradients)
    size_t lora_optimizer;      // Adam's first and second moments, f32
    int64_t lora_params;        // adapter parameters
    int64_t scratch_tokens;     // rows of the largest chunk
    bool exceeds_model_context; // context > max_position_embeddings (generate refuses such prompts)
} memory_estimate;

// The budget of generating with model m (from model_measure or model_load) on its backend with
// parameters p: a prompt of `context` tokens prefilled in chunks of prefill_step_size, then one
// decode step, every allocation as generate_start and the cache kinds make it. RILL_EINVAL names a
// parameter out of range.
rill_status estimate_memory(const rill_model *m, const estimate_params *p, memory_estimate *out);

// The bytes the tokenizer of the model at path holds once loaded (it is loaded, measured and freed:
// vocabulary, merges and added tokens are what they are). The loader's error when there is none.
rill_status estimate_tokenizer_bytes(const char *path, size_t *out);
