// gguf_dequant.h: decodes GGUF tensor data (F32, F16, BF16 and the block-quantized types Q4_0 ..
// Q6_K) to f32, value for value as gguf-py's gguf.quants.dequantize (ggml's reference
// dequantizers) computes it, float operation for float operation. Also exposes the unpacking of
// one quantized block into codes and per-group factors, which the affine repacker shares.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "io/gguf_types.h"

#define GGUF_QBLOCK_MAX  256 // most elements in one block (the K-quants' QK_K)
#define GGUF_QGROUPS_MAX 16  // most groups (sub-blocks) in one block

// One quantized block, unpacked. Element i lies in group g = i / group_size and decodes as
//   zero == 0 (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K):       w = fl(fl(scale[g] * q[i]) + bias[g])
//   zero  > 0 (Q4_0, Q5_0, Q8_0, Q3_K, Q6_K):       w = fl(scale[g] * (float)(q[i] - zero))
// where every factor is already the f32 value that gguf-py computes (e.g. d * sc for K-quants,
// bias = -(dmin * m)), so that decoding is one or two f32 operations per element.
typedef struct {
    int block_size;                // elements in the block: 32 or 256
    int group_size;                // elements per group: 16, 32 (or the whole block)
    int zero;                      // code of 0.0 for symmetric types; 0 for the others
    uint8_t q[GGUF_QBLOCK_MAX];    // [block_size] unsigned codes, q < 2^bits
    float scale[GGUF_QGROUPS_MAX]; // [block_size / group_size]
    float bias[GGUF_QGROUPS_MAX];  // [block_size / group_size]; unused (0) when zero > 0
} gguf_qblock;

// True for the types gguf_dequantize decodes.
bool gguf_dequant_supported(gguf_dtype type);
// True for the block-quantized types that gguf_qblock_unpack handles.
bool gguf_qblock_supported(gguf_dtype type);

// Unpacks one block of `type` (gguf_qblock_supported) from src [block_bytes of the type].
void gguf_qblock_unpack(gguf_dtype type, const uint8_t *src, gguf_qblock *out);
// Decodes an unpacked block into dst [b->block_size].
void gguf_qblock_decode(const gguf_qblock *b, float *dst);

// Decodes n_elements values of `type` from src [src_bytes] into dst [n_elements].
// n_elements must be a whole number of blocks and src_bytes exactly their size.
// RILL_EUNSUPPORTED (naming the type) for types not listed above; RILL_EINVAL for bad sizes.
rill_status gguf_dequantize(gguf_dtype type, const void *src, size_t src_bytes, float *dst, uint64_t n_elements);
