// cuda_common.cuh: device helpers shared by the CUDA kernels: f32 <-> f16/bf16 conversions, loads
// by run-time dtype, one element of an MLX affine row, warp sums, and the host-side dispatch from a
// rill_dtype to a C++ element type. Kernels compute in f32 whatever they load or store. Also the
// launch helper for programmatic dependent launch (cuda_launch_pdl, pdl_wait, pdl_trigger).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <type_traits>
#include <utility>

#include "backend/cuda/cuda.h"

typedef __nv_bfloat16 bf16;
typedef __half f16;

template <typename T> __device__ __forceinline__ float to_f32(T v);
template <> __device__ __forceinline__ float to_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f32<f16>(f16 v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f32<bf16>(bf16 v) { return __bfloat162float(v); }

// The f16 scales of an affine weight whose biases the upload left out (cuda_weight_load): a type of
// their own, so that the 4-bit GEMVs derive each bias at compile time (group_bias) and their
// instances for stored biases compile exactly as before (a run-time test there cost registers, and
// o's and down's kernel spilled).
struct f16_zp {
    f16 v;
};
template <> __device__ __forceinline__ float to_f32<f16_zp>(f16_zp v) { return __half2float(v.v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ f16 from_f32<f16>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float v) { return __float2bfloat16_rn(v); }

// RoPE's cos and sin (times mscale) at position pos for inverse frequency inv_freq: the angle and
// its sincos in double (positions reach 10^5, where an f32 angle is off by more than the f32
// tolerance of the op tests). The rope op and the q/k/v GEMV's RoPE epilogue both turn with it.
__device__ __forceinline__ void rope_cos_sin(int32_t pos, float inv_freq, float mscale, float *c, float *s) {
    double sn, cs;
    sincos((double)pos * (double)inv_freq, &sn, &cs);
    *c = (float)cs * mscale, *s = (float)sn * mscale;
}

// Element i of an array whose dtype is known only at run time (F32, F16 or BF16).
__device__ __forceinline__ float load_dt(const void *p, rill_dtype dt, int64_t i) {
    if (dt == DTYPE_F32) return ((const float *)p)[i];
    if (dt == DTYPE_F16) return __half2float(((const f16 *)p)[i]);
    return __bfloat162float(((const bf16 *)p)[i]);
}

// Stores v rounded to the dtype of an array known only at run time; returns the value as stored.
__device__ __forceinline__ float store_dt(void *p, rill_dtype dt, int64_t i, float v) {
    if (dt == DTYPE_F32) {
        ((float *)p)[i] = v;
        return v;
    }
    if (dt == DTYPE_F16) {
        const f16 h = __float2half_rn(v);
        ((f16 *)p)[i] = h;
        return __half2float(h);
    }
    const bf16 b = __float2bfloat16_rn(v);
    ((bf16 *)p)[i] = b;
    return __bfloat162float(b);
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

// Group g's bias of an affine weight of `bits` bits (scale sc): stored, or, where the upload left the
// biases out (biases NULL: every one was -2^(bits-1) x its scale, as GGUF's Q4_0, Q5_0 and Q8_0
// blocks make them; cuda_weight_load), derived, to the same f32 value. group_bias decides by the
// scales' type (f16_zp: derived), any_bias at run time (for kernels dispatched on the dtype alone).
__device__ __forceinline__ float derived_bias(float sc, int bits) { return -(float)(1 << (bits - 1)) * sc; }
template <typename TS> __device__ __forceinline__ float group_bias(const TS *biases, int64_t g, float sc, int bits) {
    if constexpr (std::is_same<TS, f16_zp>::value)
        return derived_bias(sc, bits);
    else
        return to_f32(biases[g]);
}
template <typename TS> __device__ __forceinline__ float any_bias(const TS *biases, int64_t g, float sc, int bits) {
    return biases ? to_f32(biases[g]) : derived_bias(sc, bits);
}

// Element (r, c) of W dequantized to f32, for any weight kind and dtype.
__device__ __forceinline__ float weight_at(const rill_weight &w, int64_t r, int64_t c) {
    if (w.kind == WEIGHT_DENSE) return load_dt(w.data, w.dtype, r * w.cols + c);
    int64_t words = w.cols * w.bits / 32, g = r * (w.cols / w.group_size) + c / w.group_size;
    unsigned q = affine_q(w.packed + r * words, c, w.bits);
    float sc = load_dt(w.scales, w.dtype, g);
    return sc * (float)q + (w.biases ? load_dt(w.biases, w.dtype, g) : derived_bias(sc, w.bits));
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

// act(g) * u, as act_mul computes it: silu(g) = g / (1 + e^-g), or gelu with the tanh approximation.
template <int ACT> __device__ __forceinline__ float act_times(float g, float u) {
    if (ACT == ACT_SILU) return g / (1.0f + __expf(-g)) * u;
    const float s = 0.7978845608028654f; // sqrt(2 / pi)
    return 0.5f * g * (1.0f + tanhf(s * (g + 0.044715f * g * g * g))) * u;
}

// The two int8 codes of v in a block of x quantized for the 4-bit GEMV (cuda_qx in cuda.h), whose
// largest magnitude is amax: x ~ d q1 + d / 254 q2 with d = amax / 127 (|v - d q1| <= d / 2, so q2
// fits int8). A block of zeros gets zeros.
// The scale stored per block: d / 254, the weight of 254 * (q1 . w) + (q2 . w).
__device__ __forceinline__ float qx_scale(float amax) { return amax / 127.0f / 254.0f; }

__device__ __forceinline__ void qx_codes(float v, float amax, int &q1, int &q2) {
    float d = amax / 127.0f;
    q1 = d > 0.0f ? __float2int_rn(v * (127.0f / amax)) : 0;
    q2 = d > 0.0f ? __float2int_rn(fmaf(-(float)q1, d, v) * (254.0f / d)) : 0;
    q2 = max(-127, min(127, q2));
}

// A warp stores block blk of x quantized as cuda_qx lays it out (cuda.h), lane i holding value i of
// the block: its codes in both planes (all: the blocks in a plane), d / 254 and the exact sum.
__device__ __forceinline__ void qx_store_warp(int8_t *xq, float *xs, float *xsum, int64_t blk, int64_t all, int lane,
                                              float v) {
    float amax = warp_max(fabsf(v)), sum = warp_sum(v);
    int q1, q2;
    qx_codes(v, amax, q1, q2);
    int i = lane >> 3, k = lane & 7, at = (2 * i + (k & 1)) * 4 + (k >> 1); // (0,2,4,6),(1,3,5,7) per 8
    xq[blk * 32 + at] = (int8_t)q1;
    xq[(all + blk) * 32 + at] = (int8_t)q2;
    if (lane == 0) xs[blk] = qx_scale(amax), xsum[blk] = sum;
}

// A warp's part of preparing the norm after x (cuda_res_epi), lane i holding value f (as stored in
// T) of block blk of x and the norm's weight nw there: x's block stored, its values times (nw + add)
// quantized, its sum of squares in q.ss[blk].
template <typename T>
__device__ __forceinline__ void prepare_block(const cuda_res_epi &re, int64_t blk, float f, float nw, int lane) {
    ((T *)re.x)[blk * 32 + lane] = from_f32<T>(f);
    float ss = warp_sum(f * f);
    qx_store_warp(re.q.codes, re.q.scale, re.q.sum, blk, re.q.n_blk, lane, f * (nw + re.add));
    if (lane == 0) re.q.ss[blk] = ss;
}

// The residual epilogue of a one-token GEMV block that owns rows [32 b, 32 b + 32), b = blockIdx.x
// (cuda_res_epi): warp 0, lane i holding row 32 b + i's output v (bias added), its residual value x
// and the next norm's weight nw (both loaded early), adds v into the residual (rounded to T as
// matmul stores it, then the sum as add stores it) and stores block b of the residual times (nw +
// add) quantized, with its sum of squares in q.ss[b].
template <typename T>
__device__ __forceinline__ void residual_prepare(const cuda_res_epi &re, float v, float x, float nw, int lane) {
    prepare_block<T>(re, blockIdx.x, to_f32(from_f32<T>(x + to_f32(from_f32<T>(v)))), nw, lane);
}

// *p as f32, loaded where the call stands: the asm keeps the compiler from sinking the load to
// its first use, so that its latency passes while other work runs (the values that a kernel needs
// only at its end, right after pdl_wait).
__device__ __forceinline__ float load_early(const float *p) {
    float v;
    asm volatile("ld.global.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}
template <typename T> __device__ __forceinline__ float load_early(const T *p) {
    unsigned short u;
    asm volatile("ld.global.u16 %0, [%1];" : "=h"(u) : "l"(p));
    return to_f32(*reinterpret_cast<const T *>(&u));
}

// The factor a GEMV's dot products over an x prepared unnormalized take (cuda_norm_epi): every lane
// of the warp gets rsqrt(mean(x^2) + eps), summed in the same order every time. s0: lane's first
// partial sum (ne.ss[lane] or 0), loaded early (right after pdl_wait) so that its latency hides.
__device__ __forceinline__ float prepared_norm_scale(const cuda_norm_epi &ne, float s0, int lane) {
    for (int i = lane + 32; i < ne.n_ss; i += 32)
        s0 += ne.ss[i];
    return rsqrtf(warp_sum(s0) / (float)(32 * ne.n_ss) + ne.eps);
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

// Whether p is 16-byte aligned (the vector loads and stores need it).
static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// After a launch: records a launch failure of `op` (and, in a timeline build, the launch's name).
static inline bool cuda_launched(rill_stream *s, const char *op) {
    cuda_forget_prepared(s); // (a launch may write x: an op that prepares sets it after its own)
#ifdef RILL_CUDA_TIMELINE
    cuda_timeline_name(s, op);
#endif
    return cuda_ok(s, cudaGetLastError(), op);
}

#ifdef RILL_CUDA_TIMELINE
// The timeline (cuda_timeline.c; builds with -DRILL_CUDA_TIMELINE=ON only): block (0, 0, 0) of every
// kernel stamps %globaltimer once its pdl_wait returns, into slot atomicAdd(n, 1) of t. Each .cu
// file has its own copy of these symbols; the setter below, registered at start-up, points them at
// the buffers (NULL: off).
static __device__ unsigned long long *timeline_t;      // [timeline_cap] stamps
static __device__ unsigned *timeline_n;                // stamps taken (the host zeroes it per step)
static __device__ unsigned timeline_cap;               // t's length
static __device__ unsigned long long *timeline_phases; // [CUDA_TIMELINE_PHASES][2]: ns summed, marks
static void timeline_attach(unsigned long long *t, unsigned *n, unsigned cap, unsigned long long *phases) {
    cudaMemcpyToSymbol(timeline_t, &t, sizeof t);
    cudaMemcpyToSymbol(timeline_n, &n, sizeof n);
    cudaMemcpyToSymbol(timeline_cap, &cap, sizeof cap);
    cudaMemcpyToSymbol(timeline_phases, &phases, sizeof phases);
}
// When block (0, 0, 0)'s pdl_wait returned (its thread 0 writes and reads it).
__device__ __forceinline__ unsigned long long &timeline_wait_at() {
    __shared__ unsigned long long at;
    return at;
}
[[maybe_unused]] static const int timeline_registered = cuda_timeline_register(timeline_attach);
__device__ __forceinline__ void timeline_stamp() {
    if (threadIdx.x | threadIdx.y | threadIdx.z | blockIdx.x | blockIdx.y | blockIdx.z) return;
    unsigned long long *t = timeline_t;
    if (!t) return;
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    unsigned i = atomicAdd(timeline_n, 1u);
    if (i < timeline_cap) t[i] = now;
    timeline_wait_at() = now;
}
// Phase k of this launch ends now: its time since the wait joins phase k's sum (block (0, 0, 0)).
__device__ __forceinline__ void timeline_phase(int k) {
    if (threadIdx.x | threadIdx.y | threadIdx.z | blockIdx.x | blockIdx.y | blockIdx.z) return;
    unsigned long long *ph = timeline_phases;
    if (!ph || !timeline_t || k < 0 || k >= CUDA_TIMELINE_PHASES) return;
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    atomicAdd(&ph[2 * k], now - timeline_wait_at());
    atomicAdd(&ph[2 * k + 1], 1ull);
}
#define TIMELINE_PHASE(k) timeline_phase(k)
#else
#define TIMELINE_PHASE(k) ((void)0)
#endif

enum { GEMV_WARPS = 8 }; // warps (rows, or row groups) per block of the decode GEMVs

// Programmatic dependent launch (Hopper): a kernel launched through cuda_launch_pdl may be scheduled
// while the kernel before it on the stream is still running, so the launch latency (and whatever
// the kernel does before pdl_wait, such as loading weights) overlaps the tail of its predecessor.
// Every such kernel calls pdl_wait() before it reads anything an earlier kernel wrote and before
// it writes anything: that waits until the predecessor has completed and its writes are visible
// (and, transitively, all kernels before it). pdl_trigger() then lets the next kernel be scheduled.
// Both are no-ops in a kernel launched without the attribute.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
#ifdef RILL_CUDA_TIMELINE
    timeline_stamp();
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// RILL_CUDA_PDL=0 launches without the attribute (to measure one against the other).
static inline bool cuda_pdl_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("RILL_CUDA_PDL");
        on = !(e && !strcmp(e, "0"));
    }
    return on != 0;
}

// kernel<<<grid, block, smem, s->cs>>>(args...), as a programmatic dependent launch when pdl, and
// with cluster_y > 1 as thread block clusters of cluster_y blocks along y. The kernel must follow
// the pdl_wait rule above; its first launch sets its L1/shared split (cuda_kernel_carveout). Errors
// surface through cudaGetLastError (cuda_launched).
template <typename... KP, typename... A>
static inline void cuda_launch_cluster(rill_stream *s, bool pdl, unsigned cluster_y, void (*kernel)(KP...), dim3 grid,
                                       dim3 block, size_t smem, A &&...args) {
    cudaLaunchAttribute at[2];
    unsigned n = 0;
    if (pdl) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n++].val.programmaticStreamSerializationAllowed = 1;
    }
    if (cluster_y > 1) {
        at[n].id = cudaLaunchAttributeClusterDimension;
        at[n].val.clusterDim.x = 1, at[n].val.clusterDim.y = cluster_y, at[n++].val.clusterDim.z = 1;
    }
    cuda_kernel_carveout((const void *)kernel);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s->cs;
    cfg.attrs = at;
    cfg.numAttrs = n;
    cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
}

// The two halves of a cluster barrier, for a kernel that arrives as its first act (so that a later
// wait means every block of the cluster has started and DSMEM writes into any of them are safe)
// and waits only where it needs that.
__device__ __forceinline__ void cluster_arrive_relaxed() {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.aligned;" ::: "memory"); }

// The same without clusters.
template <typename... KP, typename... A>
static inline void cuda_launch_as(rill_stream *s, bool pdl, void (*kernel)(KP...), dim3 grid, dim3 block, size_t smem,
                                  A &&...args) {
    cuda_launch_cluster(s, pdl, 1, kernel, grid, block, smem, std::forward<A>(args)...);
}

// The same, as a programmatic dependent launch unless RILL_CUDA_PDL=0.
template <typename... KP, typename... A>
static inline void cuda_launch_pdl(rill_stream *s, void (*kernel)(KP...), dim3 grid, dim3 block, size_t smem,
                                   A &&...args) {
    cuda_launch_as(s, cuda_pdl_on(), kernel, grid, block, smem, std::forward<A>(args)...);
}

static inline unsigned cuda_blocks(int64_t n, int per_block) {
    int64_t b = (n + per_block - 1) / per_block;
    return (unsigned)(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}
