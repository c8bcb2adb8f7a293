// prompt_cache.h: mlx-lm's save_prompt_cache / load_prompt_cache. One safetensors file holds every
// layer's state in mlx-lm's [B, H, S, D] layout with its class name and user metadata, laid out as
// the mlx-lm release rill targets writes it (docs/formats.md); the older layout ("0.i" meta states,
// "1.key" user metadata, "2.i" class names) is read too.
#pragma once
#include "cache/cache.h"

// Writes c to path (atomically). meta_keys/values [n_meta]: user metadata (mlx-lm's cache_prompt
// writes "model" and "tokenizer_config"). The model's shape says how rows split into heads (and
// how an MLA latent row splits into mlx-lm's keys and values).
rill_status prompt_cache_save(const char *path, const rill_cache *c, rill_stream *s, const cache_shape *shape,
                              const char *const *meta_keys, const char *const *meta_values, size_t n_meta);

typedef struct {
    size_t n;
    char **keys, **values; // [n] user metadata, NUL-terminated copies
} prompt_cache_meta;
void prompt_cache_meta_free(prompt_cache_meta *m);
const char *prompt_cache_meta_get(const prompt_cache_meta *m, const char *key); // NULL when absent

// Reads path into a new cache for a model of `shape` (layers, widths, heads, the activation dtype).
// A file made for another shape, a truncated or malformed file, an unknown class
// or inconsistent metadata fail with the reason; *out stays NULL. meta may be NULL.
rill_status prompt_cache_load(const char *path, const cache_shape *shape, rill_stream *s, rill_cache **out,
                              prompt_cache_meta *meta);
