// cache.h: the interface every KV cache kind answers to (DESIGN.md rule 3), modelled on mlx-lm's
// cache.py: one object per layer with update_and_fetch, make_mask, offset, trim, is_trimmable and
// nbytes; a prompt cache is the list of a model's layers. The model never knows which kind it holds.
// Keys and values are token-major device tensors: row t is position t, [n_kv_heads * head_dim].
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct cache_layer cache_layer;

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
} cache_ops;

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
    int64_t k_dim, v_dim; // per position: n_kv_heads * head_dim, n_kv_heads * v_head_dim
    int step;             // growth in positions; 0 = 256
} cache_shape;

// One KVCache per layer (mlx-lm's make_prompt_cache without max_kv_size).
rill_status cache_make_kv(const cache_shape *shape, rill_cache **out);
void cache_free(rill_cache *c); // NULL is allowed

int64_t cache_offset(const rill_cache *c); // the first layer's offset
bool cache_can_trim(const rill_cache *c);
// Trims every layer by n; returns the number trimmed, 0 when the cache cannot be trimmed.
int64_t cache_trim(rill_cache *c, int64_t n);
size_t cache_nbytes(const rill_cache *c);

// KVCache (kv_cache.c): preallocated in steps of `step` positions; trim only moves the offset.
rill_status kv_cache_create(rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int step,
                            cache_layer **out);
