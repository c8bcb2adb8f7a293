// deepseek_v3.c: DeepSeek V2/V3 = llama + multi-head latent attention (low-rank q and kv, a RoPE
// part shared by all heads, interleaved pairs) stated by the config's MLA sizes; the decoder reads
// them. Routed experts (MoE) are not wired yet: a model with MoE layers is refused at load.
#include "model/model.h"

const decoder_traits arch_deepseek_v3_traits = {
    .hf_ffn_norm = "post_attention_layernorm",
};
