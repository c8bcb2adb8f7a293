// gguf_repack.h: repacks GGUF block-quantized tensors into MLX affine groups at load time, so
// that affine dequantization fl(fl(scale * q) + bias) gives exactly gguf_dequantize's f32 values
// (the only possible difference: the sign of a zero, see gguf_repack.c). Scales and biases are
// f32. Q4_0, Q4_1, Q8_0, Q4_K and Q5_K become groups of 32; Q6_K becomes groups of 16.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "io/gguf_types.h"
#include "quant/affine.h"

// True for Q4_0, Q4_1, Q8_0, Q4_K, Q5_K and Q6_K.
bool gguf_repack_supported(gguf_dtype type);
// The affine format a repacked tensor of `type` has (false when the type is not supported).
bool gguf_repack_format(gguf_dtype type, int *bits, int *group_size);
// The bytes gguf_repack_affine allocates for (and keeps with) a [rows][cols] tensor of `type`
// (0 when the type is not supported); the row buffer it uses on the way is freed before it returns.
size_t gguf_repack_bytes(gguf_dtype type, uint64_t rows, uint64_t cols);

// Repacks a GGUF tensor of `type` with GGUF shape ne = {cols, rows} (ne[0] = cols fastest) from
// src [src_bytes] into out, which this allocates (affine_alloc; release with affine_free).
// cols must be a multiple of the type's block size and src_bytes the exact size of the data.
// RILL_EUNSUPPORTED for other types; RILL_EINVAL for bad sizes; RILL_EFORMAT for a block whose
// scale or min is not finite (its decoded values could not be reproduced).
rill_status gguf_repack_affine(gguf_dtype type, const void *src, size_t src_bytes, uint64_t rows, uint64_t cols,
                               affine_tensor *out);
