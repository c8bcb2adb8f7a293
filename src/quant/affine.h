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

// Checks bits, group size, scale dtype and that cols is a multiple of the group size and of
// 32 / gcd(bits, 32) elements (whole words per row).
rill_status affine_check_params(uint64_t rows, uint64_t cols, int bits, int group_size, rill_dtype scale_dtype);
rill_status affine_alloc(affine_tensor *t, uint64_t rows, uint64_t cols, int bits, int group_size,
                         rill_dtype scale_dtype);
void affine_free(affine_tensor *t);

size_t affine_words_per_row(const affine_tensor *t); // cols * bits / 32

// Quantizes w [rows][cols] into t (already allocated with its parameters).
rill_status affine_quantize(const float *w, affine_tensor *t);
// Dequantizes row `row` of t into out [cols].
void affine_dequantize_row(const affine_tensor *t, uint64_t row, float *out);
// Dequantizes all of t into out [rows][cols].
void affine_dequantize(const affine_tensor *t, float *out);

// Packs n values q[i] < 2^bits into words, little-end first; n * bits must be a multiple of 32.
void affine_pack(const uint8_t *q, size_t n, int bits, uint32_t *out);
void affine_unpack(const uint32_t *packed, size_t n, int bits, uint8_t *q);
