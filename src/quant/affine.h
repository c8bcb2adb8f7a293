// affine.h: MLX's affine quantization: w = scale * q + bias for each group of `group_size`
// consecutive elements of a row, q an unsigned `bits`-bit integer. Packed little-end first into
// uint32 words, as mlx.core.quantize writes it: weight [rows][cols*bits/32], scales and biases
// [rows][cols/group_size] in f16, bf16 or f32. Bits 2,3,4,5,6,8; groups 32, 64, 128, and 16 for
// exact repacks of GGUF K-quants.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/status.h"

typedef struct {
    int bits;               // 2, 3, 4, 5, 6 or 8
    int group_size;         // 16, 32, 64 or 128
    rill_dtype scale_dtype; // DTYPE_F16, DTYPE_BF16 or DTYPE_F32; biases use the same
    uint64_t rows, cols;    // logical shape [rows][cols]
    uint32_t *packed;       // [rows][cols * bits / 32]
    void *scales;           // [rows][cols / group_size] of scale_dtype
    void *biases;           // [rows][cols / group_size] of scale_dtype
    bool owned;             // true when the three arrays came from affine_alloc
} affine_tensor;

// Checks bits, group size, scale dtype, that cols is a positive multiple of the group size and of
// 32 / gcd(bits, 32) elements (whole words per row), and that the arrays' sizes fit in size_t.
// Fails with RILL_EINVAL and a message that names the parameter and the reason.
rill_status affine_check_params(uint64_t rows, uint64_t cols, int bits, int group_size, rill_dtype scale_dtype);
rill_status affine_alloc(affine_tensor *t, uint64_t rows, uint64_t cols, int bits, int group_size,
                         rill_dtype scale_dtype);
// The bytes affine_alloc takes from the accounted allocator for these (checked) parameters.
size_t affine_alloc_bytes(uint64_t rows, uint64_t cols, int bits, int group_size, rill_dtype scale_dtype);
// A view of arrays owned by someone else (a mapped safetensors file): checks the parameters and
// fills t with owned = false.
rill_status affine_wrap(affine_tensor *t, uint64_t rows, uint64_t cols, int bits, int group_size,
                        rill_dtype scale_dtype, const uint32_t *packed, const void *scales, const void *biases);
void affine_free(affine_tensor *t); // frees owned arrays; zeroes t either way
// Owned f32 scales and biases that are all exactly f16 values (those repacked from GGUF Q4_0, Q4_1,
// Q5_0, Q5_1 and Q8_0 blocks: the file's f16 factors, times 8, 16 or 128) are stored again in f16,
// half the bytes; *narrowed says whether they were (false: t unchanged). Note that an f16 scale
// dtype means MLX's arithmetic to affine_level (the product rounded to f16); the backends compute
// scale * q + bias in f32, which for these factors gives the f32 tensor's values exactly.
rill_status affine_narrow_to_f16(affine_tensor *t, bool *narrowed);

size_t affine_words_per_row(const affine_tensor *t);  // cols * bits / 32
size_t affine_groups_per_row(const affine_tensor *t); // cols / group_size

// Quantizes w [rows][cols] into t (already allocated with its parameters). Per group, it tries a
// few (scale, bias) candidates (min/max without clipping, MLX's zero-exact edge scales, two
// clipped ranges), each rounded to scale_dtype, gives every element its nearest level, and keeps
// the candidate with the least squared error. Deterministic. Fails with RILL_ERANGE (row and group
// named) when w holds a NaN or infinity, or a scale or bias does not fit in scale_dtype.
rill_status affine_quantize(const float *w, affine_tensor *t);
// Dequantizes row `row` of t into out [cols].
void affine_dequantize_row(const affine_tensor *t, uint64_t row, float *out);
// Dequantizes all of t into out [rows][cols].
void affine_dequantize(const affine_tensor *t, float *out);

// The value of level q, computed exactly as mx.dequantize does (bit for bit): the product
// scale * q rounded to scale_dtype, then plus bias rounded to scale_dtype (two roundings, no FMA;
// the arithmetic itself is f32). scale and bias are values of scale_dtype.
float affine_level(rill_dtype scale_dtype, float scale, float bias, unsigned q);
// Element i of an array of factors (scales or biases) of dtype dt (F32, F16 or BF16), as f32.
float affine_factor_at(rill_dtype dt, const void *factors, size_t i);
// Scale and bias of group `group` of row `row`, as f32.
void affine_group_params(const affine_tensor *t, uint64_t row, uint64_t group, float *scale, float *bias);

// Packs n values q[i] < 2^bits into words, little-end first; n * bits must be a multiple of 32.
void affine_pack(const uint8_t *q, size_t n, int bits, uint32_t *out);
void affine_unpack(const uint32_t *packed, size_t n, int bits, uint8_t *q);
// Unpacks values [first, first + n) of the stream that starts at packed[0] (any alignment).
void affine_unpack_at(const uint32_t *packed, size_t first, size_t n, int bits, uint8_t *q);
