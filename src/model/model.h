// model.h: a loaded model: its config, its architecture's traits, and its weights bound to a
// backend (mapped in place on the CPU), plus the shared decoder that runs it (decoder.c). The
// decoder issues backend ops only (rule 1) and talks to its cache only through cache.h (rule 3).
#pragma once
#include <stdbool.h>

#include "backend/backend.h"
#include "cache/cache.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "model/config.h"

// Where architectures differ; everything else is the shared decoder. Switches that a config
// states (q/k/v biases, qk-norm, softcaps, sliding layers, activation) are read from the config.
typedef struct {
    bool sandwich_norms;     // gemma3: norms on the attention and MLP outputs before each residual add
    bool norm_add_one;       // gemma: RMSNorm scales by (1 + w) as HF stores w (GGUF files store 1 + w)
    bool embed_scale;        // gemma: embeddings times sqrt(hidden_size)
    const char *hf_ffn_norm; // HF name of the pre-MLP norm: "post_attention_layernorm" (llama)
} decoder_traits;

typedef struct {
    rill_weight q, k, v, o;     // [n_heads*hd][hidden], [n_kv*hd][hidden] x2, [hidden][n_heads*hd]
    rill_weight gate, up, down; // [ffn][hidden] x2, [hidden][ffn]
    // Stacked rows (fuse_projections backends; rows 0 otherwise, and then q/k/v or gate/up are
    // shape only): qkv [n_heads*hd + 2*n_kv*hd][hidden], gate_up [2*ffn][hidden]
    rill_weight qkv, gate_up;
    float *attn_norm, *ffn_norm; // [hidden] device f32
    float *post_attn_norm;       // [hidden]; sandwich norms only
    float *post_ffn_norm;        // [hidden]; sandwich norms only
    float *q_norm, *k_norm;      // [head_dim]; qk-norm only
    // MLA (deepseek_v3): low-rank q (q_a then q_b; `q` when q_lora_rank is 0) and kv (kv_a then kv_b)
    rill_weight q_a, q_b;   // [q_lora][hidden], [n_heads*(nope+rope)][q_lora]
    rill_weight kv_a, kv_b; // [kv_lora+rope][hidden], [n_heads*(nope+v)][kv_lora] (kv_b: host, shape only
                            // after loading: the decoder uses its absorbed form below)
    // MLA absorbed (mla_weights.c), one weight per head: embed_q[h] [kv_lora][nope] = head h's key
    // rows of kv_b transposed (the query's nope part into latent space), unembed[h] [v][kv_lora] =
    // head h's value rows (the attention output back out of it)
    rill_weight *mla_embed_q, *mla_unembed; // [n_heads] each
    float *q_a_norm, *kv_a_norm;            // [q_lora], [kv_lora]
    // MoE (deepseek_v3 layers past first_k_dense_replace): router, routed and shared experts
    bool moe;
    rill_weight router;                  // [n_experts][hidden]
    float *router_bias;                  // [n_experts] e_score_correction_bias, or NULL
    rill_weight *ex_gate, *ex_up;        // [n_experts] weights [moe_inter][hidden]
    rill_weight *ex_down;                // [n_experts] weights [hidden][moe_inter]
    rill_weight sh_gate, sh_up, sh_down; // shared experts: [shared_inter][hidden] x2, [hidden][shared_inter]
    int window;                          // sliding window of this layer, 0 = global
    const float *inv_freq;               // [head_dim / 2] device: this layer's RoPE frequencies
} layer_weights;

// Per-step scratch on the device: every activation of one forward pass (rule 7: sized for the
// largest chunk, reused step after step, released after prefill).
typedef struct {
    void *buf; // device memory
    size_t bytes;
    int64_t n_tok;    // tokens the buffer is laid out for
    int64_t n_logits; // rows of logits it holds
    int32_t *pos;     // [n_tok] host: positions staged for upload (kept, so no wait on the upload)
} decoder_scratch;

typedef struct rill_model {
    rill_model_config cfg;
    const decoder_traits *traits;
    rill_backend *be;
    bool norm_add_one;            // traits->norm_add_one, unless the file stores 1 + w (GGUF)
    rill_rope_layout rope_layout; // NEOX for HF checkpoints; GGUF llama's Q/K rows are permuted: INTERLEAVED
    float rope_mscale;            // yarn attention factor; 1 otherwise
    float attn_scale;             // 1 / sqrt(query_pre_attn_scalar or head_dim)
    float embed_scale;            // sqrt(hidden) or 1
    rill_weight embed;            // [vocab][hidden]
    rill_weight lm_head;          // [vocab][hidden]; a copy of embed when tied
    float *final_norm;            // [hidden] device
    layer_weights *layers;        // [n_layers]
    bool mla;                     // deepseek_v3 attention (kv_lora_rank > 0)
    int rope_dims;                // rotated elements per head: head_dim, or qk_rope_head_dim (MLA)
    int v_head_dim;               // head_dim, or MLA's v_head_dim
    float *inv_freq_global;       // [rope_dims / 2] device
    float *inv_freq_local;        // [rope_dims / 2] device (sliding layers; rope_local_theta)
    decoder_scratch scratch;
    size_t scratch_high_water; // the most bytes the scratch held at once since loading
    size_t weight_bytes;       // accounted bytes the loaded model holds (weights mapped in use, converted
                               // and repacked copies, norms): rill_memory_current() after loading minus before
                               // (model_measure: plus the planned_bytes it did not allocate)
    struct api_model *api;     // what the public API (src/api) owns with this model; NULL otherwise
    bool measure_only;         // model_measure: names and shapes bound, no tensor data (cannot run)
    size_t planned_bytes;      // measure_only: tensor bytes loading would allocate or map (weights.c)

    // Sources, kept open while weights point into them (rule 5), and what loading allocated.
    gguf_file *gguf;
    safetensors_set *st;
    int n_owned, cap_owned;
    void **owned; // [n_owned] host blocks from rill_malloc (converted tensors)
    int n_affine, cap_affine;
    void *affine_owned;  // [n_affine] affine_tensor repacked from GGUF blocks
    size_t mapped_bytes; // weight bytes used in place from a mapping (accounted: rule 7)
    int n_dev, cap_dev;
    void **dev_owned; // [n_dev] device blocks (norm vectors, frequencies)
} rill_model;

// Loads a GGUF file, a folder with config.json + safetensors (HF or MLX), or a config.json path.
rill_status model_load(const char *path, rill_backend *be, rill_model **out);
void model_free(rill_model *m); // NULL is allowed
// Opens path as model_load does (config, traits, RoPE tables, every tensor name and shape checked)
// but allocates no tensor: nothing is repacked, decoded or uploaded, so it is quick for any size.
// weight_bytes is what model_load would report for the same file and backend (CPU: exact up to the
// loader's small pointer arrays). Every weight has its rows and cols and no data: the model cannot run.
rill_status model_measure(const char *path, rill_backend *be, rill_model **out);

// What this model's caches hold per position (cache.h): n_kv_heads * head_dim keys and n_kv_heads *
// v_head_dim values, or for MLA the latent cache (latent + RoPE key, no values).
cache_shape model_cache_shape(const rill_model *m);
// A prompt cache for this model: one KVCache per layer in the backend's activation dtype.
rill_status model_make_cache(const rill_model *m, rill_cache **out);
// mlx-lm's make_prompt_cache (model_cache.c): sliding layers get a RotatingKVCache of their window;
// max_kv_size > 0 makes every other layer a RotatingKVCache(max_kv_size, keep = 4); else KVCache.
rill_status model_make_prompt_cache(const rill_model *m, int64_t max_kv_size, rill_cache **out);

// Runs n tokens through the model on stream s. ids: device I32 [n][1]. The tokens take positions
// cache_offset .. + n; their keys and values are appended to the cache. On success *logits is a
// view of device scratch, [n][vocab] when all_logits, else [1][vocab] (the last token), valid until
// the next forward. Runs on the stream (call it from a launched program, or sync afterwards).
rill_status decoder_forward(rill_model *m, rill_cache *cache, rill_stream *s, const rill_tensor *ids, bool all_logits,
                            rill_tensor *logits);
// --wired (model_wire.c): pins the weights in RAM (mlock): the mapped files and the blocks loading
// made. *bytes: what was to be pinned. RILL_ERANGE (message names RLIMIT_MEMLOCK) when the limit
// forbids it: then nothing stays pinned and the model is usable as before.
rill_status model_wire(const rill_model *m, size_t *bytes);
// Loading internals shared by weights.c and mla_weights.c: keeps a host block for model_free.
rill_status weights_keep(rill_model *m, void *p);
// A copy of host [n] f32 on the model's backend, freed with the model (norm vectors, frequencies).
rill_status model_upload_vector(rill_model *m, const float *host, int64_t n, float **out);
// MLA's absorbed per-head projections from kv_b in host memory (host: shape only when m->measure_only,
// which then only adds the bytes it would allocate to m->planned_bytes).
rill_status mla_absorb(rill_model *m, const rill_weight *kv_b, layer_weights *L);
// Frees the scratch (mlx's clear_cache): the next forward allocates what it needs.
void decoder_release_scratch(rill_model *m);
// Bytes the scratch of a forward over n tokens with n_logits rows of logits takes (device buffer
// and host positions), as decoder_forward allocates it.
size_t decoder_scratch_bytes(const rill_model *m, int64_t n, int64_t n_logits);

// Whether layer `layer` has routed experts (deepseek_v3: past first_k_dense_replace, every moe_layer_freq).
bool model_layer_is_moe(const rill_model_config *c, int layer);

// The traits of an architecture (model/archs/*.c).
const decoder_traits *arch_traits(model_arch arch);

// RoPE frequencies (rope.c): inv_freq [head_dim / 2] for base `theta` with the config's scaling
// (scaled = false: plain, as sliding layers use); *mscale gets the yarn attention factor.
void rope_inv_freq(const rill_model_config *cfg, double theta, bool scaled, int dims, float *inv_freq, float *mscale);

// Weight binding (weights.c): fills every weight of m from its open source.
rill_status weights_bind(rill_model *m, const char *path);
