// qwen3.c: Qwen3 = llama + RMSNorm per head on q and k before RoPE (the config sets qk_norm).
#include "model/model.h"

const decoder_traits arch_qwen3_traits = {
    .hf_ffn_norm = "post_attention_layernorm",
};
