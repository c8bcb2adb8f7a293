// gemma3.c: Gemma 3 = llama + norms before and after both attention and MLP, (1 + w) RMSNorm,
// embeddings scaled by sqrt(hidden_size), gelu-tanh, qk-norm, and interleaved sliding/global
// layers with two RoPE bases (the config states the last four).
#include "model/model.h"

const decoder_traits arch_gemma3_traits = {
    .sandwich_norms = true,
    .norm_add_one = true,
    .embed_scale = true,
    .hf_ffn_norm = "pre_feedforward_layernorm",
};
