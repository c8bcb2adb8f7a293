// llama.c: Llama 2/3 and SmolLM2 (and Mistral, which is llama with a sliding window that the config
// states): the baseline the shared decoder implements. Nothing differs.
#include "model/model.h"

const decoder_traits arch_llama_traits = {
    .hf_ffn_norm = "post_attention_layernorm",
};
