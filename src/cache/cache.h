// cache.h: the interface every KV cache kind answers to (DESIGN.md rule 3), modelled on mlx-lm's
// cache.py: one object per layer with update_and_fetch, make_mask, offset, trim, is_trimmable and
// nbytes; a prompt cache is the list of a model's layers. The model never knows which kind it holds.
// Keys and values are token-major device tensors: row t is position t, [n_kv_heads * head_dim].
// A cache made with v_dim 0 stores keys only, and attention reads each value from the leading
// columns of its key (p->v_head_dim of them): MLA's latent cache (cache_shape.latent_dim).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct cache_layer cache_layer;
struct cache_state;

typedef struct {
    const char *class_name; // mlx-lm's class name: "KVCache", ...
    // Stores k [n][kv_dim] and v [n][v_dim] (activations) after the cached positions and returns
    // views of every position the new queries may attend to: keys [len][kv_dim], values [len][v_dim].
    rill_status (*update_and_fetch)(cache_layer *c, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                                    rill_tensor *keys, rill_tensor *values);
    // The mask of n new queries against the views the next update_and_fetch returns; window 0 =
    // global attention. Call it before update_and_fetch.
    rill_attn_mask (*make_mask)(const cache_layer *c, int n, int window);
    int64_t (*offset)(const cache_layer *c); // positions seen
    bool (*is_trimmable)(const cache_layer *c);
    int64_t (*trim)(cache_layer *c, int64_t n); // drops the last n positions; returns how many it dropped
    size_t (*nbytes)(const cache_layer *c);     // bytes held
    void (*destroy)(cache_layer *c);
    // Optional, for a decode step captured as a graph (NULL: this kind cannot serve one).
    // bind_device allocates room for `reserve` positions now, so no later update allocates, and
    // hands the offset to a device counter (I32 [1]): until unbind_device, update_and_fetch writes
    // at the position the counter holds when the stream gets there, returns views of all reserved
    // positions, and leaves the host offset alone; make_mask's q_pos_dev points at the counter.
    // The counter's owner advances it. unbind_device sets the offset to `offset` (<= reserve).
    rill_status (*bind_device)(cache_layer *c, rill_stream *s, const int32_t *dev_offset, int64_t reserve);
    void (*unbind_device)(cache_layer *c, int64_t offset);
    // Optional (NULL: the default). attend stores k and v and writes out = attention of q over
    // every position the layer keeps, with p's mask as make_mask made it; the default is
    // update_and_fetch then the backend's attention op (cache_layer_attend). Kinds whose storage the
    // plain op cannot read (quantized) or whose order it cannot mask (rotating) provide it.
    rill_status (*attend)(cache_layer *c, rill_stream *s, const rill_tensor *k, const rill_tensor *v,
                          const rill_tensor *q, const rill_attn_params *p, rill_tensor *out);
    // mlx-lm's to_quantized: a new quantized cache with the same contents (NULL: this kind cannot).
    // The caller destroys the original.
    rill_status (*to_quantized)(cache_layer *c, rill_stream *s, int group_size, int bits, cache_layer **out);
    // The state as mlx-lm's `state` lists it, copied to the host in its [1, H, S, D] layout
    // (prompt_cache.c writes it). n_kv_heads splits rows into heads.
    rill_status (*get_state)(const cache_layer *c, rill_stream *s, int n_kv_heads, struct cache_state *out);
} cache_ops;

// One layer's state for a prompt-cache file: items named by their place in mlx-lm's state tuple
// ("0", "1", "0.2", ...): arrays on the host in mlx-lm's layout, or integers (offset, keep, ...).
#define CACHE_STATE_MAX 16
typedef struct {
    char path[16];
    bool scalar;
    int64_t value; // scalar
    rill_dtype dtype;
    int n_dims;
    uint64_t shape[4];
    void *data; // [prod(shape)] of dtype, host, owned by the state (rill_malloc)
} cache_item;

typedef struct cache_state {
    char class_name[40];
    int n_items;
    cache_item items[CACHE_STATE_MAX];
} cache_state;
void cache_state_free(cache_state *st);

struct cache_layer {
    const cache_ops *ops;
};

// A prompt cache: one cache per layer (mlx-lm's list of caches).
typedef struct rill_cache {
    int n_layers;
    cache_layer **layers; // [n_layers]
} rill_cache;

typedef struct {
    rill_backend *be;
    rill_dtype dtype; // of the stored keys and values
    int n_layers;
    int64_t k_dim, v_dim; // per position: n_kv_heads * head_dim, n_kv_heads * v_head_dim (0: see above)
    int step;             // growth in positions; 0 = 256
    int n_kv_heads;       // heads a prompt-cache file splits each position into ([1, H, S, D])
    // > 0: MLA's latent cache (deepseek_v3). Each position keeps one row of k_dim = latent_dim +
    // RoPE dims: the normed latent, then the RoPE key shared by all heads; v_dim is 0, since the
    // values are the latent. Files keep mlx-lm's layout for it: keys = the latent [1, 1, S,
    // latent_dim], values = the RoPE key [1, 1, S, k_dim - latent_dim] (quantized: each of the packed
    // words, scales and biases split at the same place).
    int64_t latent_dim;
} cache_shape;

// One KVCache per layer (mlx-lm's make_prompt_cache without max_kv_size).
rill_status cache_make_kv(const cache_shape *shape, rill_cache **out);
void cache_free(rill_cache *c); // NULL is allowed

int64_t cache_offset(const rill_cache *c); // the first layer's offset
bool cache_can_trim(const rill_cache *c);
// Trims every layer by n; returns the number trimmed, 0 when the cache cannot be trimmed.
int64_t cache_trim(rill_cache *c, int64_t n);
size_t cache_nbytes(const rill_cache *c);
// Every layer's bind_device / unbind_device; RILL_EUNSUPPORTED (nothing bound) when a layer's kind
// has none.
rill_status cache_bind_device(rill_cache *c, rill_stream *s, const int32_t *dev_offset, int64_t reserve);
void cache_unbind_device(rill_cache *c, int64_t offset);

// Attention through layer c: its attend, or update_and_fetch then be's attention op.
rill_status cache_layer_attend(cache_layer *c, rill_backend *be, rill_stream *s, const rill_tensor *k,
                               const rill_tensor *v, const rill_tensor *q, const rill_attn_params *p, rill_tensor *out);
// mlx-lm's maybe_quantize_kv_cache: every layer whose offset is >= start and whose kind can be
// quantized becomes a QuantizedKVCache (RotatingKVCache: a quantized rotating cache). bits 0: nothing.
rill_status cache_maybe_quantize(rill_cache *c, rill_stream *s, int64_t start, int group_size, int bits);
// What make_prompt_cache builds (cache_make_prompt).
typedef struct {
    int64_t max_kv_size; // > 0: a RotatingKVCache(max_kv_size, keep) per global layer
    int keep;            // 4 in mlx-lm's make_prompt_cache
    const int *windows;  // [n_layers] sliding window per layer (0 = global), or NULL
} cache_options;
// mlx-lm's make_prompt_cache (and its models' make_cache): a sliding layer gets a
// RotatingKVCache(window) (or max_kv_size when smaller, with keep), a global layer a
// RotatingKVCache(max_kv_size, keep) when max_kv_size is set, else a KVCache. Unlike mlx-lm, which
// lets a model's make_cache ignore max_kv_size, rill honours it for every model.
rill_status cache_make_prompt(const cache_shape *shape, const cache_options *o, rill_cache **out);

// KVCache (kv_cache.c): preallocated in steps of `step` positions; trim only moves the offset.
rill_status kv_cache_create(rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int step,
                            cache_layer **out);
// The dtype of the scales and biases when a cache of `dtype` is quantized: bf16 for a bf16 cache,
// else f16 (mlx-lm keeps the model's dtype; on the CPU, whose activations are f32, f16 scales are
// what make 8-bit KV 1.88x smaller than an f16 cache rather than 1.78x).
static inline rill_dtype cache_kv_scale_dtype(rill_dtype dtype) { return dtype == DTYPE_BF16 ? DTYPE_BF16 : DTYPE_F16; }
// Bytes one position of one layer takes in a cache of `dtype` (k_dim keys and v_dim values), plain
// (bits 0) or quantized (bits 4 or 8: packed codes plus cache_kv_scale_dtype scales and biases per
// group of group_size).
size_t cache_position_bytes(rill_dtype dtype, int64_t k_dim, int64_t v_dim, int bits, int group_size);
// QuantizedKVCache (quantized_cache.c): K and V as MLX affine groups along each row; attention
// reads the packed rows (the backend's attention_q). `rows_k`/`rows_v` (or NULL): initial contents.
rill_status quantized_cache_create(rill_backend *be, rill_stream *s, rill_dtype scale_dtype, int64_t k_dim,
                                   int64_t v_dim, int group_size, int bits, const rill_tensor *rows_k,
                                   const rill_tensor *rows_v, cache_layer **out);
// RotatingKVCache (rotating_cache.c): a ring of max_size positions whose first `keep` are never
// evicted; bits > 0 stores them quantized (rill's QuantizedRotatingKVCache; mlx-lm has none).
rill_status rotating_cache_create(rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int64_t max_size,
                                  int keep, int bits, int group_size, cache_layer **out);
// CacheList (cache_list.c): several caches serving one layer; takes ownership of parts[n].
rill_status cache_list_create(cache_layer **parts, int n, cache_layer **out);
// Rebuilds a layer from a prompt-cache file's state (prompt_cache.c), checked against the shape.
rill_status cache_layer_from_state(const cache_shape *shape, int n_kv_heads, rill_stream *s, const cache_state *st,
                                   cache_layer **out);
