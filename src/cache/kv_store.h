// kv_store.h: the rows of keys and values that the rotating and quantized caches keep, plain (a
// float dtype) or quantized (MLX affine: packed uint32 + scales + biases per group), in backend
// memory, token-major: row t is one position, [k_dim] keys and [v_dim] values. Internal to cache/.
#pragma once
#include "backend/backend.h"

struct cache_state;

typedef struct {
    rill_backend *be;
    int64_t k_dim, v_dim; // elements per position
    rill_dtype dtype;     // plain: of the elements; quantized: of the scales and biases
    int bits, group_size; // bits 0: plain
    int64_t cap;          // rows allocated
    void *k, *v;          // plain: [cap][k_dim], [cap][v_dim] of dtype
    rill_qkv qk, qv;      // quantized: rows = cap
} kv_store;

// An empty store of that kind (no rows yet). Quantized needs the backend's kv_quantize and
// attention_q (RILL_EUNSUPPORTED otherwise, naming the backend).
rill_status kv_store_init(kv_store *st, rill_backend *be, rill_dtype dtype, int64_t k_dim, int64_t v_dim, int bits,
                          int group_size);
// New buffers of cap rows, the first `keep` rows copied from the old ones, which are freed.
rill_status kv_store_resize(kv_store *st, rill_stream *s, int64_t cap, int64_t keep);
void kv_store_free(kv_store *st);
// Rows [d0, d0 + n) of dst = rows [s0, s0 + n) of src (same kind; dst may not be src).
void kv_store_copy(kv_store *dst, int64_t d0, const kv_store *src, int64_t s0, int64_t n, rill_stream *s);
// Rows [r0, r0 + k.rows) = k and v (quantized on the way in when the store is quantized).
void kv_store_write(kv_store *st, rill_stream *s, int64_t r0, const rill_tensor *k, const rill_tensor *v);
// Views of rows [0, n).
rill_tensor kv_store_view(const kv_store *st, bool values, int64_t n);
rill_qkv kv_store_qview(const kv_store *st, bool values, int64_t n);
// Bytes per row (keys and values together), and bytes held. kv_row_bytes: the same for a store of
// that kind (dtype: of the elements when plain, of the scales and biases when quantized).
size_t kv_row_bytes(rill_dtype dtype, int64_t k_dim, int64_t v_dim, int bits, int group_size);
size_t kv_store_row_bytes(const kv_store *st);
size_t kv_store_nbytes(const kv_store *st);
// Attention of q over rows [0, n) with mask/params p (attention or attention_q).
void kv_store_attend(const kv_store *st, rill_stream *s, int64_t n, rill_tensor *out, const rill_tensor *q,
                     const rill_attn_params *p);

// Token-major [S][H * D] <-> mlx-lm's head-major [H][S][D] (es bytes per element), on the host.
void kv_to_heads(const void *src, void *dst, int64_t S, int64_t H, int64_t D, size_t es);
void kv_from_heads(const void *src, void *dst, int64_t S, int64_t H, int64_t D, size_t es);
// A state item: an array copied from device memory `dev` ([S][H * D] of es-byte elements) into
// mlx-lm's [1, H, S, D], or an integer.
rill_status kv_state_array(struct cache_state *st, rill_backend *be, rill_stream *s, const char *path, rill_dtype dt,
                           const void *dev, int64_t S, int64_t H, int64_t D);
void kv_state_int(struct cache_state *st, const char *path, int64_t v);
