// ref.h: the plain-C reference of every backend op: host memory, f32 arithmetic, obvious loops.
// It defines what each op means; the op tests compare every backend against it. Inputs may be
// F32, F16 or BF16 (converted on load); outputs are written in their own dtype.
#pragma once
#include "backend/backend.h"

void ref_embed(rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale);
void ref_matmul(rill_tensor *out, const rill_tensor *x, const rill_weight *w);
void ref_rmsnorm(rill_tensor *out, const rill_tensor *x, const float *w, float eps, bool add_one);
void ref_add_rmsnorm(rill_tensor *out, rill_tensor *x, const rill_tensor *r, const float *w, float eps, bool add_one);
void ref_rope(rill_tensor *x, const rill_tensor *pos, const rill_rope_params *p);
void ref_attention(rill_tensor *out, const rill_tensor *q, const rill_tensor *k, const rill_tensor *v,
                   const rill_attn_params *p);
// Quantized KV (rill_qkv): mx.quantize's rule, and attention that reads the packed rows. The
// reference dequantizes into a temporary (it defines the meaning; backends must not).
void ref_kv_quantize(rill_qkv *out, const rill_tensor *x);
void ref_attention_q(rill_tensor *out, const rill_tensor *q, const rill_qkv *k, const rill_qkv *v,
                     const rill_attn_params *p);
float ref_qkv_load(const rill_qkv *t, int64_t r, int64_t c); // element (r, c) dequantized
void ref_act_mul(rill_tensor *out, const rill_tensor *gate, const rill_tensor *up, rill_act act);
void ref_add(rill_tensor *out, const rill_tensor *a, const rill_tensor *b);
void ref_scale(rill_tensor *out, const rill_tensor *x, float scale);
void ref_softcap(rill_tensor *out, const rill_tensor *x, float cap);
void ref_copy(rill_tensor *out, const rill_tensor *x);
void ref_moe_route(rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits, const float *bias,
                   const rill_moe_params *p);
void ref_moe_matmul(rill_tensor *out, const rill_tensor *x, const rill_weight *experts, const rill_tensor *idx);
void ref_moe_combine(rill_tensor *out, const rill_tensor *y, const rill_tensor *weights);

// Row `row` of w dequantized to f32: out [w->cols]. Shared by the reference and the loaders' tests.
void ref_weight_row(const rill_weight *w, int64_t row, float *out);
// Element (r, c) of a float tensor as f32, and a store that rounds to the tensor's dtype.
float ref_load(const rill_tensor *t, int64_t r, int64_t c);
void ref_store(rill_tensor *t, int64_t r, int64_t c, float v);
// Value i of an array of dtype F32, F16 or BF16.
float ref_scalar(rill_dtype dt, const void *p, int64_t i);
