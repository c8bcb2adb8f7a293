// backend.h: the op interface (DESIGN.md rule 1). A backend is a table of ops over tensors in its
// own memory, plus buffers, streams and events. Model code issues ops; it never loops over
// elements. Every op is ordered on a stream; a host program (a decode step) is handed to the
// stream with `launch`: the CPU backend runs it on its compute thread, where ops run at once; a
// GPU backend runs it inline, where ops only enqueue. Either way the caller waits on an event.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"

typedef struct rill_backend rill_backend;
typedef struct rill_stream rill_stream;
typedef struct rill_event rill_event;
typedef struct rill_graph rill_graph;

// A 2-D view of device memory. Rows may be strided (a head's slice, a window of a cache).
typedef struct {
    rill_dtype dtype; // F32 (CPU activations), F16/BF16 (GPU activations), I32 (token ids, positions)
    int64_t rows, cols;
    int64_t stride; // elements from one row to the next (>= cols)
    void *data;     // [rows][stride] elements of dtype in the backend's memory
} rill_tensor;

// A linear layer's weight W [rows = n_out][cols = n_in], dense or MLX affine, with an optional bias.
typedef enum { WEIGHT_DENSE, WEIGHT_AFFINE } rill_weight_kind;

// How llama.cpp rounds the activations that meet a weight of a GGUF block type before its integer
// dot products (its "vec_dot_type"): Q8_0 (blocks of 32, d = amax / 127 kept as f16) for Q4_0,
// Q5_0 and Q8_0; Q8_1 (Q8_0 plus the f16 sum d * sum(q)) for Q4_1 and Q5_1. The CPU backend
// reproduces it for these weights, so that a GGUF model computes what llama.cpp computes.
typedef enum { ACT_QUANT_NONE, ACT_QUANT_Q8_0, ACT_QUANT_Q8_1 } rill_act_quant;

typedef struct {
    rill_weight_kind kind;
    int64_t rows, cols;       // [n_out][n_in]
    rill_dtype dtype;         // dense: F32, F16 or BF16; affine: the dtype of scales and biases
    const void *data;         // dense: [rows][cols]
    int bits, group_size;     // affine
    const uint32_t *packed;   // affine: [rows][cols * bits / 32]
    const void *scales;       // affine: [rows][cols / group_size] of dtype
    const void *biases;       // affine: [rows][cols / group_size] of dtype; NULL in a device copy whose biases
                              // were all -2^(bits-1) x scale (GGUF Q4_0/Q5_0/Q8_0), which the kernels derive
    const float *bias;        // [rows] f32 added to every output row, or NULL
    rill_act_quant act_quant; // GGUF weights: llama.cpp's activation rounding (affine, groups of 32)
    void *owned;              // storage the backend's weight_load made for this weight (weight_free releases it)
} rill_weight;

typedef enum { ACT_SILU, ACT_GELU_TANH } rill_act;
typedef enum { ROPE_INTERLEAVED, ROPE_NEOX } rill_rope_layout; // pairs (2i, 2i+1) or (i, i + d/2)

typedef struct {
    int n_heads;  // heads in x: x is [n_tok][n_heads * head_dim]
    int head_dim; // elements per head
    int rot_dims; // leading elements of each head that rotate (even, <= head_dim)
    rill_rope_layout layout;
    const float *inv_freq; // [rot_dims / 2] device f32: angle of pair i at position p = p * inv_freq[i]
    float mscale;          // cos and sin are multiplied by this (yarn); 1 otherwise
} rill_rope_params;

// Which keys a query sees. Query row i sits at position q_pos0 + i, key row j at k_pos0 + j.
// A key is visible when its position is <= the query's (causal) and, with window > 0, when
// q_pos - k_pos < window (sliding window).
typedef struct {
    int64_t q_pos0, k_pos0;
    int window; // 0: unlimited
    // Device I32 [1] or NULL. When set, q_pos0 is read from here when the stream reaches the op
    // (a replayed graph), and keys past the last query's position are not read, so k and v may
    // be views of a whole preallocated cache. Set only on backends with graph ops (see below).
    const int32_t *q_pos_dev;
} rill_attn_mask;

typedef struct {
    int n_heads, n_kv_heads; // GQA: query head h reads kv head h / (n_heads / n_kv_heads)
    int head_dim;            // of q and k
    int v_head_dim;          // of v and of the output
    float scale;             // scores = scale * q.k
    float softcap;           // scores = softcap * tanh(scores / softcap) when > 0
    rill_attn_mask mask;
    // The weight the output is multiplied by next (a layer's o), or NULL: a backend may leave the
    // output prepared for that matmul (CUDA: one token's output quantized for the 4-bit GEMV).
    const rill_weight *out_w;
} rill_attn_params;

// The norm that will read an op's output next, which the op may prepare (matmul_add_norm,
// norm_mlp): the norm's weights, eps and add_one, as rmsnorm takes them; and, where that norm feeds
// an MLP (norm_mlp's), its two weights, or the stacked q/k/v with its RoPE, so that a backend
// prepares it only where the op after it would take the prepared norm (NULL: unknown).
typedef struct {
    const float *w; // [cols] f32
    float eps;
    bool add_one;
    const rill_weight *mlp_gate_up, *mlp_down; // (or NULL)
    // embed_norm: the stacked q/k/v the norm feeds (norm_qkv_rope) and its RoPE (or NULL)
    const rill_weight *qkv;
    const rill_rope_params *qkv_rope;
} rill_norm_next;

// Routing of a mixture of experts (DeepSeek V3's group-limited top-k): scores = sigmoid(logits)
// (or softmax); choice = scores + bias; the n_group groups ranked by the sum of their two best
// choices, experts outside the best topk_group groups excluded; the top_k choices picked; their
// weights = scores (normalised to sum 1 when norm), times scale.
typedef struct {
    int n_experts, top_k;
    int n_group, topk_group; // n_group 0 or 1: no group limit
    bool softmax;            // scoring: softmax instead of sigmoid
    bool norm;               // normalise the top-k weights
    float scale;             // routed_scaling_factor
} rill_moe_params;

// K or V of a quantized KV cache in MLX's affine layout: row t = position t, quantized in groups of
// group_size consecutive elements (groups never straddle a head: head_dim is a multiple of the group).
typedef struct {
    int bits, group_size;   // 4 or 8 (any of 2..8 in the reference); 32, 64 or 128
    rill_dtype scale_dtype; // F32, F16 or BF16 (the activation dtype)
    int64_t rows, cols;     // positions, n_kv_heads * head_dim
    uint32_t *packed;       // [rows][cols * bits / 32]
    void *scales;           // [rows][cols / group_size] of scale_dtype
    void *biases;           // [rows][cols / group_size] of scale_dtype
} rill_qkv;

typedef struct rill_backend_ops {
    const char *name;
    // The model should hand this backend q/k/v and gate/up as one weight each (their rows stacked),
    // so a decode step issues fewer, larger matmuls (each launch, or each parallel loop, costs).
    bool fuse_projections;
    // weight_load uses the host arrays in place (the CPU) instead of copying them: the model then
    // keeps the stacked rows it makes and releases the parts' own storage (weights.c).
    bool weights_in_place;

    // Memory. alloc returns NULL (message set) on failure; memory is accounted (rule 7).
    void *(*alloc)(rill_backend *be, size_t bytes);
    void (*free)(rill_backend *be, void *p);
    // Copies ordered on the stream; the host side must stay valid until the stream passes them.
    void (*upload)(rill_stream *s, void *dst, const void *src, size_t bytes);
    void (*download)(rill_stream *s, void *dst, const void *src, size_t bytes);
    // Prepares a weight for this backend. `host` points at host memory (often a mapped file) that
    // stays valid while the weight is in use; the CPU backend uses it in place (rule 5).
    rill_status (*weight_load)(rill_backend *be, const rill_weight *host, rill_weight *dev);
    // Host bytes weight_load allocates for a weight of this shape and format (for rill estimate;
    // host->packed etc. may be NULL). Optional: NULL means none.
    size_t (*weight_load_bytes)(rill_backend *be, const rill_weight *host);
    void (*weight_free)(rill_backend *be, rill_weight *dev);

    // Streams and events.
    rill_status (*stream_create)(rill_backend *be, rill_stream **out);
    void (*stream_destroy)(rill_stream *s);
    // Runs fn(arg) in stream order. fn issues ops on the same stream.
    void (*launch)(rill_stream *s, void (*fn)(void *arg), void *arg);
    void (*sync)(rill_stream *s); // waits until everything issued so far is done
    rill_status (*event_create)(rill_backend *be, rill_event **out);
    void (*event_destroy)(rill_event *e);
    void (*event_record)(rill_stream *s, rill_event *e); // marks the current end of the stream
    void (*event_wait)(rill_event *e);                   // the host waits for that mark
    bool (*event_done)(rill_event *e);                   // without waiting

    // Ops. Unless said otherwise, out may not alias an input, all float tensors share one dtype
    // (the activation dtype), and rows of x map to rows of out.
    // out[t][:] = dequant(w)[ids[t]][:] * scale               ids: [n_tok][1] I32, out [n_tok][w.cols]
    void (*embed)(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale);
    // embed_norm (optional): embed of one token, preparing the norm `next` of out as matmul_add_norm
    // does (next->qkv and next->qkv_rope: the matmul that norm feeds and its RoPE, so that a backend
    // prepares it only where its norm_qkv_rope would take it). false, having issued nothing, where it
    // cannot: run embed.
    bool (*embed_norm)(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale,
                       const rill_norm_next *next);
    // out[t][o] = sum_i x[t][i] * dequant(w)[o][i] + bias[o]   x [n_tok][n_in], out [n_tok][n_out]
    void (*matmul)(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w);
    // out[t][:] = x[t][:] / sqrt(mean(x[t]^2) + eps) * (w + (add_one ? 1 : 0))   w: [cols] f32
    // out may alias x.
    void (*rmsnorm)(rill_stream *s, rill_tensor *out, const rill_tensor *x, const float *w, float eps, bool add_one);
    // x = x + r (rounded to x's dtype), then out = rmsnorm(x) as above: the residual add fused into
    // the norm that follows it. x, r, out: [n_tok][cols]; out may not alias x or r. NULL where a
    // backend lacks it: the caller runs add, then rmsnorm, which compute the same.
    void (*add_rmsnorm)(rill_stream *s, rill_tensor *out, rill_tensor *x, const rill_tensor *r, const float *w,
                        float eps, bool add_one);
    // Optional fusions of an op into the matmul after it (NULL where a backend lacks them: the caller
    // runs the two ops, which compute the same but for the rounding of the matmul's input). On a GPU
    // they save the launch that prepares x for a decode GEMV.
    // norm_matmul: add_rmsnorm(h, x, r, norm_w, eps, add_one) (rmsnorm(h, x, ...) when r is NULL),
    // then matmul(out, h, w). h is written too (unless the op before prepared this norm: see
    // matmul_add_norm); out, h, x and r may not alias.
    void (*norm_matmul)(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                        const float *norm_w, float eps, bool add_one, const rill_weight *w);
    // norm_qkv_rope (optional): norm_matmul, then rope(out's first p->n_heads heads, pos, p), as one
    // op where the backend can (one token); false, having issued nothing, where it cannot: the caller
    // then runs norm_matmul and rope.
    bool (*norm_qkv_rope)(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                          const float *norm_w, float eps, bool add_one, const rill_weight *w, const rill_tensor *pos,
                          const rill_rope_params *p);
    // norm_mlp: the norm of norm_matmul (h and x written as there), then the MLP after it:
    // g [n][ffn] = act(h . gate^T) * (h . up^T) as act_mul computes it, gate_up's rows the gate rows
    // then the up rows ([2 ffn][cols]), and out [n][down.rows] = matmul(g, down). gate and up need
    // never be stored; g is written but may be rounded for down as act_matmul's matmul rounds it.
    // out may be r (it is written last); no other two alias. With next (not NULL) the MLP's output
    // goes into the residual instead, as matmul_add_norm puts it there: x = x + out (out is not
    // written), preparing the norm next of x.
    // Returns false, having issued nothing, where the backend has no such path for these shapes and
    // formats (or, with next, no such path that adds): the caller then runs it without next, or
    // norm_matmul and act_matmul.
    bool (*norm_mlp)(rill_stream *s, rill_tensor *out, rill_tensor *g, rill_tensor *h, rill_tensor *x,
                     const rill_tensor *r, const float *norm_w, float eps, bool add_one, const rill_weight *gate_up,
                     rill_act act, const rill_weight *down, const rill_norm_next *next);
    // matmul_add_norm (optional): x = x + matmul(a, w) (the product rounded to x's dtype, then the
    // sum; a may be quantized for it as the backend's matmul would), for one token where the backend
    // can also prepare the norm `next` of x as it writes x. The op after it that norms x with those
    // weights (norm_matmul, norm_qkv_rope or norm_mlp with r NULL) then need not read x again, and
    // may leave its h unwritten. x and a may not alias. Returns false, having issued nothing, where
    // it cannot: the caller then runs matmul and passes its output to that norm as r.
    bool (*matmul_add_norm)(rill_stream *s, rill_tensor *x, const rill_tensor *a, const rill_weight *w,
                            const rill_norm_next *next);
    // act_matmul: matmul(out, act(gate) * up, w). gate may be overwritten (with act(gate) * up).
    void (*act_matmul)(rill_stream *s, rill_tensor *out, rill_tensor *gate, const rill_tensor *up, rill_act act,
                       const rill_weight *w);
    // In place on x [n_tok][n_heads * head_dim]; pos: [n_tok][1] I32 absolute positions.
    void (*rope)(rill_stream *s, rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p);
    // out [n_q][n_heads * v_head_dim] = softmax(mask(scale * q k^T)) v, per head.
    // q [n_q][n_heads * head_dim], k [n_k][n_kv_heads * head_dim], v [n_k][n_kv_heads * v_head_dim].
    // k and v may have another dtype than q (the cache's). A query that sees no key gets zeros.
    void (*attention)(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                      const rill_tensor *v, const rill_attn_params *p);
    // out = act(gate) * up, elementwise. out may alias gate or up.
    void (*act_mul)(rill_stream *s, rill_tensor *out, const rill_tensor *gate, const rill_tensor *up, rill_act act);
    // out = a + b, elementwise. out may alias a or b.
    void (*add)(rill_stream *s, rill_tensor *out, const rill_tensor *a, const rill_tensor *b);
    // out = x * scale; out may alias x.
    void (*scale)(rill_stream *s, rill_tensor *out, const rill_tensor *x, float scale);
    // out = cap * tanh(x / cap); out may alias x.
    void (*softcap)(rill_stream *s, rill_tensor *out, const rill_tensor *x, float cap);
    // Mixture of experts. moe_route: logits [n][n_experts] (+ bias [n_experts] f32 or NULL) ->
    // idx [n][top_k] I32 and weights [n][top_k] F32.
    void (*moe_route)(rill_stream *s, rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits,
                      const float *bias, const rill_moe_params *p);
    // out[t * top_k + j] = x[r] . experts[idx[t][j]]^T, with r = t when x has n rows, else t * top_k + j
    // (x has n * top_k rows). experts: [n_experts] weights of one shape. out [n * top_k][n_out].
    void (*moe_matmul)(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *experts,
                       const rill_tensor *idx);
    // out[t] += sum_j weights[t][j] * y[t * top_k + j]      out [n][d], y [n * top_k][d]
    void (*moe_combine)(rill_stream *s, rill_tensor *out, const rill_tensor *y, const rill_tensor *weights);
    // out = x converted to out's dtype (any of F32, F16, BF16); same shape, strides may differ.
    void (*copy)(rill_stream *s, rill_tensor *out, const rill_tensor *x);

    // Optional, for a device decode loop (NULL where a backend has none: the CPU's steps cost
    // nothing to issue). A captured graph replays a step with no host work, so whatever changes
    // from step to step is read from device memory when the stream gets there.
    // Rows [*row, *row + x.rows) of out = x, converted to out's dtype; the same for out2 = x2 unless
    // they are NULL (a cache's keys and values in one op: one launch). row: device I32 [1].
    void (*copy_at)(rill_stream *s, rill_tensor *out, const rill_tensor *x, rill_tensor *out2, const rill_tensor *x2,
                    const int32_t *row);
    // Optional: copy_at(keys, k_new, values, v_new, row), then attention(out, q, keys, values, p) (one
    // query, p->mask.q_pos_dev == row): a captured step's KV write and attention, which a backend may
    // run as one launch. NULL: the cache runs the two.
    void (*attention_append)(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k_new,
                             const rill_tensor *v_new, rill_tensor *keys, rill_tensor *values, const int32_t *row,
                             const rill_attn_params *p);
    // token [1][1] I32 = argmax of logits [1][vocab] when temp == 0 (ties: the lowest id), else a
    // draw from softmax(logits / temp) over the top_k largest (top_k 0: all), with randomness
    // from (seed, *step); step: device I32 [1], or NULL (step 0). With publish (host_alloc memory,
    // [2] I32) the op also ends a device-loop step: publish[*step & 1] = the token, then *step += 1,
    // both from the device, so that no copy stands between two replays (the host reads the token
    // once an event recorded after the op has completed).
    void (*sample)(rill_stream *s, rill_tensor *token, const rill_tensor *logits, float temp, int top_k, uint64_t seed,
                   int32_t *step, int32_t *publish);
    // Capture: the ops issued on s between graph_begin and graph_end are recorded, not run (no
    // allocation, sync or host-side read may happen in between); graph_launch replays them.
    rill_status (*graph_begin)(rill_stream *s);
    rill_status (*graph_end)(rill_stream *s, rill_graph **out);
    rill_status (*graph_launch)(rill_stream *s, rill_graph *g);
    void (*graph_destroy)(rill_graph *g); // NULL is allowed
    // Host memory that copies to and from the device can use asynchronously (pinned), and that
    // kernels may write at the same address (mapped: sample's publish).
    void *(*host_alloc)(rill_backend *be, size_t bytes);
    void (*host_free)(rill_backend *be, void *p);
    // The first failure on s since it was created (RILL_OK if none), with its message set again.
    rill_status (*stream_status)(rill_stream *s);

    // Optional, for the quantized KV cache (NULL where a backend has none: the cache then refuses
    // to be made, saying so; the op test skips them). See rill_qkv above.
    // Rows [0, x.rows) of out = x quantized as mx.quantize does: per group, scale = (max - min) /
    // (2^bits - 1), the edge of larger magnitude made exact (bias = edge, scale = edge / round(edge /
    // scale), or bias 0 when that rounds to 0), q = clamp(round((x - bias) / scale)). x: [n][out.cols].
    void (*kv_quantize)(rill_stream *s, rill_qkv *out, const rill_tensor *x);
    // attention (above) with k and v quantized: each key and value is read from its packed groups,
    // the cache is never dequantized whole. Same q, out, params and mask meaning.
    void (*attention_q)(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                        const rill_attn_params *p);
} rill_backend_ops;

struct rill_backend {
    const rill_backend_ops *ops;
    rill_dtype act_dtype; // the dtype of activations this backend computes in
    void *impl;           // the backend's own state
};

// Backends compiled into this build, by name ("cpu"). threads: 0 = one per core.
rill_status backend_open(const char *name, int threads, rill_backend **out);
void backend_close(rill_backend *be); // NULL is allowed
// Names of the compiled backends, NULL-terminated.
const char *const *backend_names(void);

// A contiguous [rows][cols] tensor view of data.
static inline rill_tensor rill_tensor_2d(rill_dtype dt, int64_t rows, int64_t cols, void *data) {
    rill_tensor t = {dt, rows, cols, cols, data};
    return t;
}
// Rows [r0, r0 + n) of t.
static inline rill_tensor rill_tensor_rows(const rill_tensor *t, int64_t r0, int64_t n) {
    rill_tensor v = *t;
    v.rows = n;
    v.data = (char *)t->data + (size_t)(r0 * t->stride) * dtype_size(t->dtype);
    return v;
}
// Columns [c0, c0 + n) of t (rows keep t's stride).
static inline rill_tensor rill_tensor_cols(const rill_tensor *t, int64_t c0, int64_t n) {
    rill_tensor v = *t;
    v.cols = n;
    v.data = (char *)t->data + (size_t)c0 * dtype_size(t->dtype);
    return v;
}
// The same memory seen as [rows * cols / new_cols][new_cols]; t must be contiguous.
static inline rill_tensor rill_tensor_reshape(const rill_tensor *t, int64_t new_cols) {
    rill_tensor v = *t;
    v.rows = t->rows * t->cols / new_cols;
    v.cols = v.stride = new_cols;
    return v;
}
