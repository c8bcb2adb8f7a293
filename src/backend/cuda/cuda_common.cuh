// cuda_common.cuh: device helpers shared by the CUDA kernels: f32 <-> f16/bf16 conversions, loads
// by run-time dtype, one element of an MLX affine row, warp sums, and the host-side dispatch from a
// rill_dtype to a C++ element type. Kernels compute in f32 whatever they load or store.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "backend/cuda/cuda.h"

typedef __nv_bfloat16 bf16;
typedef __half f16;

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<f16>(f16 v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<bf16>(bf16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ f16 from_f32<f16>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// Element i of an array whose dtype is known only at run time (F32, F16 or BF16).
__device__ __forceinline__ float load_dt(const void *p, rill_dtype dt, int64_t i) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    if (dt == DTYPE_F16) return __half2float(((const f16 *)p)[i]);
    return __bfloat162float(((const bf16 *)p)[i]);
}

// Stores v rounded to the dtype of an array known only at run time.
__device__ __forceinline__ void store_dt(void *p, rill_dtype dt, int64_t i, float v) {
    if (dt == DTYPE_F32)
        ((float *)p)[i] = v;
    else if (dt == DTYPE_F16)
        ((f16 *)p)[i] = __float2half_rn(v);
    else
        ((bf16 *)p)[i] = __float2bfloat16_rn(v);
}

// The quantized value of column c in a packed affine row (bits 2..8, values packed low bit
// first as one bit stream, as MLX does): row [cols * bits / 32] words.
__device__ __forceinline__ unsigned affine_q(const uint32_t *row, int64_t c, int bits) {
    uint64_t bit = (uint64_t)c * (uint64_t)bits;
    uint64_t w = row[bit >> 5];
    unsigned sh = (unsigned)(bit & 31);
    if (sh + (unsigned)bits > 32) w |= (uint64_t)row[(bit >> 5) + 1] << 32;
    return (unsigned)(w >> sh) & ((1u << bits) - 1u);
}

// Element (r, c) of W dequantized to f32, for any weight kind and dtype.
__device__ __forceinline__ float weight_at(const rill_weight &w, int64_t r, int64_t c) {
    if (w.kind == WEIGHT_DENSE) return load_dt(w.data, w.dtype, r * w.cols + c);
    int64_t words = w.cols * w.bits / 32, g = r * (w.cols / w.group_size) + c / w.group_size;
    unsigned q = affine_q(w.packed + r * words, c, w.bits);
    return load_dt(w.scales, w.dtype, g) * (float)q + load_dt(w.biases, w.dtype, g);
}

// 8 consecutive values at p (16-byte aligned) as f32.
__device__ __forceinline__ void load8(const bf16 *p, float f[8]) {
    uint4 r = *(const uint4 *)p;
    unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
__device__ __forceinline__ void load8(const f16 *p, float f[8]) {
    uint4 r = *(const uint4 *)p;
    unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 v = __half22float2(*(const __half2 *)&w[i]);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}
__device__ __forceinline__ void load8(const float *p, float f[8]) {
    float4 a = *(const float4 *)p, b = *(const float4 *)(p + 4);
    f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Runs the trailing statement with T bound to the element type of dtype dt; other dtypes are rejected.
#define CUDA_DISPATCH(s, op, dt, T, ...)                                                                               \
    do {                                                                                                               \
        switch (dt) {                                                                                                  \
        case DTYPE_F32: {                                                                                              \
            typedef float T;                                                                                           \
            __VA_ARGS__;                                                                                               \
        } break;                                                                                                       \
        case DTYPE_F16: {                                                                                              \
            typedef f16 T;                                                                                             \
            __VA_ARGS__;                                                                                               \
        } break;                                                                                                       \
        case DTYPE_BF16: {                                                                                             \
            typedef bf16 T;                                                                                            \
            __VA_ARGS__;                                                                                               \
        } break;                                                                                                       \
        default: cuda_reject(s, RILL_EUNSUPPORTED, op, "tensor dtype is not F32, F16 or BF16");                        \
        }                                                                                                              \
    } while (0)

// After a launch: records a launch failure of `op`.
static inline bool cuda_launched(rill_stream *s, const char *op) { return cuda_ok(s, cudaGetLastError(), op); }

static inline unsigned cuda_blocks(int64_t n, int per_block) {
    int64_t b = (n + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}
