// config.h: one model configuration, filled from an HF/MLX config.json or from GGUF metadata.
// It holds what the shared decoder and the architecture files read: sizes, the attention kind of
// every layer, RoPE and its scaling, family extras (Gemma 3, MoE, MLA), special token ids and the
// MLX quantization block with its per-module overrides. Defaults follow transformers' config
// classes; every value is range-checked on the way in and errors name the file and the field.
#pragma once
#include <stdbool.h>

#include "base/status.h"
#include "io/gguf.h"

typedef enum {
    MODEL_ARCH_LLAMA,
    MODEL_ARCH_MISTRAL,
    MODEL_ARCH_QWEN2,
    MODEL_ARCH_QWEN3,
    MODEL_ARCH_GEMMA3,
    MODEL_ARCH_DEEPSEEK_V3, // also GGUF "deepseek2" (DeepSeek V2/V3: MLA + MoE)
    MODEL_ARCH_COUNT
} model_arch;

typedef enum {
    ROPE_SCALING_NONE,
    ROPE_SCALING_LINEAR,
    ROPE_SCALING_DYNAMIC,
    ROPE_SCALING_LLAMA3,
    ROPE_SCALING_YARN,
} rope_scaling_type;

typedef struct {
    rope_scaling_type type;
    double factor;                        // 1 when type is none
    double low_freq_factor;               // llama3: 1
    double high_freq_factor;              // llama3: 4
    int original_max_position_embeddings; // llama3 (8192), yarn; 0 when not given
    double beta_fast, beta_slow;          // yarn: 32, 1
    double mscale, mscale_all_dim;        // yarn (DeepSeek): 1, 0
} rope_scaling;

typedef enum { ATTN_GLOBAL, ATTN_SLIDING } attn_kind;

// One module path whose quantization differs from the block's defaults.
typedef struct {
    char *module;   // e.g. "model.layers.0.mlp.down_proj"
    bool quantized; // false: the module keeps the model dtype ("path": false)
    int bits, group_size;
} quant_override;

// MLX's "quantization" block (mirrored as "quantization_config").
typedef struct {
    bool enabled;         // an MLX block was present: modules are quantized unless overridden
    int group_size, bits; // defaults for every quantized module
    char mode[16];        // "affine"
    char method[32];      // a foreign scheme's quant_method (fp8, gptq, awq...); "" for MLX
    int n_overrides;
    quant_override *overrides; // [n_overrides]
} quant_config;

typedef struct rill_model_config {
    model_arch arch;
    char model_type[32]; // as written: config.json model_type or GGUF general.architecture

    int vocab_size, hidden_size, intermediate_size;
    int n_layers, n_heads, n_kv_heads;
    int head_dim; // explicit, else hidden_size / n_heads; MLA: qk_nope + qk_rope
    double rms_norm_eps;
    char hidden_act[32]; // "silu", "gelu_pytorch_tanh"
    int max_position_embeddings;
    bool tie_word_embeddings;
    char torch_dtype[16]; // "bfloat16", "float16", "float32"; "" when unknown (GGUF)

    // RoPE. The scaling applies to global layers; sliding layers use rope_local_theta unscaled.
    double rope_theta;
    double rope_local_theta; // gemma3 rope_local_base_freq; else equal to rope_theta
    rope_scaling rope_scaling;

    // Attention layout.
    int sliding_window;         // tokens a sliding layer sees; 0 = no layer slides
    attn_kind *layer_attn;      // [n_layers]
    int sliding_window_pattern; // gemma3: every n-th layer is global (0 = not used)
    bool use_sliding_window;    // qwen2/qwen3: sliding only with this set ...
    int max_window_layers;      // ... and only for layers at or past this index

    // Family switches and extras.
    bool attention_bias; // o_proj has a bias (config.json attention_bias: q, k, v and o)
    bool qkv_bias;       // q, k, v have biases: qwen2 always, attention_bias, or GGUF tensors
    bool mlp_bias;
    bool qk_norm;                   // RMSNorm per head on q and k (qwen3, gemma3)
    double query_pre_attn_scalar;   // gemma3: scores scale by 1/sqrt(this); 0 = head_dim
    double final_logit_softcapping; // gemma3; 0 = none
    double attn_logit_softcapping;  // gemma3; 0 = none

    // MoE (deepseek_v3); n_routed_experts == 0 means a dense model.
    int n_routed_experts, n_shared_experts, num_experts_per_tok;
    int moe_intermediate_size;
    int first_k_dense_replace; // the first k layers keep a dense MLP
    int moe_layer_freq;        // then every n-th layer is MoE
    int n_group, topk_group;   // group-limited routing
    double routed_scaling_factor;
    bool norm_topk_prob;
    char scoring_func[16]; // "sigmoid", "softmax"
    char topk_method[24];  // "noaux_tc", "greedy", "group_limited_greedy"

    // MLA (deepseek_v3); kv_lora_rank == 0 means ordinary attention.
    int q_lora_rank; // 0: q_proj is a plain projection
    int kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;

    int bos_id; // -1 when none
    int n_eos;
    int *eos_ids; // [n_eos]

    quant_config quant;
} rill_model_config;

// `path` is the config.json file. On failure *cfg is left empty (nothing to free).
rill_status model_config_from_json_file(const char *path, rill_model_config *cfg);
// `text` is the JSON document; `name` (may be NULL) names it in messages.
rill_status model_config_from_json_string(const char *text, const char *name, rill_model_config *cfg);
// Reads the GGUF metadata of an open file; `path` names it in messages.
rill_status model_config_from_gguf(const gguf_file *f, const char *path, rill_model_config *cfg);
void model_config_free(rill_model_config *cfg);

const char *model_arch_name(model_arch arch);
const char *rope_scaling_name(rope_scaling_type t);

// Whether the module at `module_path` (e.g. "model.layers.3.self_attn.q_proj") is stored
// quantized, and if so with which bits and group size (per-module overrides honoured). The caller
// asks only for modules that MLX would quantize (linear layers and embeddings).
bool model_config_quant_for(const rill_model_config *cfg, const char *module_path, int *bits, int *group_size);
