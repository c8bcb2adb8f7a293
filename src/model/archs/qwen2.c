// qwen2.c: Qwen2 = llama + biases on q, k and v (the config sets qkv_bias for this family).
#include "model/model.h"

const decoder_traits arch_qwen2_traits = {
    .hf_ffn_norm = "post_attention_layernorm",
};
