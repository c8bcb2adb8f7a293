// cuda_decode.cu: the ops a captured decode step needs beside the model's: a copy into rows
// chosen by a device counter (the KV cache write), and sampling on the GPU (argmax, or a Gumbel-max
// draw from softmax(logits / temp) over the top k) that also publishes the token into mapped host
// memory and advances the counter, so that a step reads its input token where the step before wrote
// it, the host never touches the logits, and no copy or extra launch stands between two replays.
#include <math.h>

#include <cooperative_groups.h>

#include "backend/cuda/cuda_common.cuh"
#include "base/env_switch.h"

namespace cg = cooperative_groups;

// ARGMAX_CLUSTER blocks share a greedy step's argmax: Llama-3's 128,256 logits are 2 loads of 8 a
// thread, not 16 (the one-block sampler moved an H100 step's end by 8.7 us).
enum { SAMPLE_THREADS = 1024, ARGMAX_CLUSTER = 8 };

// Rows [*row, *row + rows) of out = x, and of out2 = x2 when cols2 > 0 (one launch for a cache's
// keys and values): element i < rows * cols is x's, the next rows * cols2 are x2's.
template <typename TO, typename TI>
__global__ void copy_at_kernel(TO *out, int64_t so, TO *out2, int64_t so2, int64_t out_rows, const TI *x, int64_t sx,
                               const TI *x2, int64_t sx2, int64_t rows, int64_t cols, int64_t cols2,
                               const int32_t *row) {
    pdl_wait();
    pdl_trigger();
    int64_t r0 = *row, n1 = rows * cols, n = n1 + rows * cols2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        bool second = i >= n1;
        int64_t j = second ? i - n1 : i, w = second ? cols2 : cols, r = j / w, c = j % w;
        if (r0 + r < 0 || r0 + r >= out_rows) continue;
        if (second)
            out2[(r0 + r) * so2 + c] = from_f32<TO>(to_f32(x2[r * sx2 + c]));
        else
            out[(r0 + r) * so + c] = from_f32<TO>(to_f32(x[r * sx + c]));
    }
}

static void copy_at_one(rill_stream *s, rill_tensor *out, const rill_tensor *x, rill_tensor *out2,
                        const rill_tensor *x2, const int32_t *row) {
    const char *op = "copy_at";
    int64_t cols2 = out2 ? x2->cols : 0;
    if (x->rows * (x->cols + cols2) == 0) return;
    unsigned grid = cuda_blocks(x->rows * (x->cols + cols2), 256);
    CUDA_DISPATCH(s, op, out->dtype, TO,
                  CUDA_DISPATCH(s, op, x->dtype, TI,
                                cuda_launch_pdl(s, copy_at_kernel<TO, TI>, grid, 256, 0, (TO *)out->data, out->stride,
                                                (TO *)(out2 ? out2->data : NULL), out2 ? out2->stride : 0, out->rows,
                                                (const TI *)x->data, x->stride, (const TI *)(x2 ? x2->data : NULL),
                                                x2 ? x2->stride : 0, x->rows, x->cols, cols2, row)));
    cuda_launched(s, op);
}

extern "C" void cuda_copy_at(rill_stream *s, rill_tensor *out, const rill_tensor *x, rill_tensor *out2,
                             const rill_tensor *x2, const int32_t *row) {
    if (out->cols != x->cols || (out2 && (!x2 || out2->cols != x2->cols || x2->rows != x->rows))) {
        cuda_reject(s, RILL_EINVAL, "copy_at", "out and x differ in columns (or x2 in rows)");
        return;
    }
    if (out2 && out2->dtype == out->dtype && x2->dtype == x->dtype && out2->rows == out->rows)
        copy_at_one(s, out, x, out2, x2, row);
    else {
        copy_at_one(s, out, x, NULL, NULL, row);
        if (out2) copy_at_one(s, out2, x2, NULL, NULL, row);
    }
}

// A uniform draw in (0, 1) from (seed, step, i): splitmix64 of the three.
__device__ __forceinline__ float uniform01(uint64_t seed, uint64_t step, uint64_t i) {
    uint64_t z = seed ^ (step * 0x9E3779B97F4A7C15ull) ^ (i * 0xD1B54A32D192ED03ull);
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((float)(z >> 40) + 0.5f) * (1.0f / 16777216.0f);
}

// Block reduction of (value, index) to the largest value, ties to the lowest index.
__device__ __forceinline__ void arg_better(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

__device__ void block_argmax(float &v, int &i, float *sv, int *si) {
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        int i2 = __shfl_xor_sync(0xffffffffu, i, o);
        arg_better(v, i, v2, i2);
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sv[warp] = v, si[warp] = i;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? sv[lane] : -INFINITY;
        i = lane < (int)(blockDim.x >> 5) ? si[lane] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1) {
            float v2 = __shfl_xor_sync(0xffffffffu, v, o);
            int i2 = __shfl_xor_sync(0xffffffffu, i, o);
            arg_better(v, i, v2, i2);
        }
        if (lane == 0) sv[0] = v, si[0] = i;
    }
    __syncthreads();
    v = sv[0];
    i = si[0];
    __syncthreads();
}

__device__ int block_count(int c, int *sc) {
    for (int o = 16; o > 0; o >>= 1)
        c += __shfl_xor_sync(0xffffffffu, c, o);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sc[warp] = c;
    __syncthreads();
    int t = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++)
        t += sc[w];
    __syncthreads();
    return t;
}

// Thread 0's end of sampling: the token, and with publish the device loop's step ends here too
// (the host's copy of the token, the position advanced).
__device__ void sample_done(int32_t *token, int32_t t, int32_t *step, int32_t *publish) {
    token[0] = t;
    if (publish) {
        int32_t p = *step;
        publish[p & 1] = t;
        *step = p + 1;
    }
}

// This thread's share of the argmax of logits [lo, hi), lo a multiple of 8; VEC (16-bit T, logits
// 16-byte aligned): 8 logits per load up to the last whole word.
template <typename T, bool VEC>
__device__ __forceinline__ void argmax_part(const T *logits, int lo, int hi, float &best, int &bi) {
    int head = VEC ? lo + (hi - lo) / 8 * 8 : lo;
    if (VEC)
        for (int j = lo / 8 + (int)threadIdx.x; j < head / 8; j += blockDim.x) {
            float f[8];
            load8(logits + 8 * j, f);
#pragma unroll
            for (int e = 0; e < 8; e++)
                arg_better(best, bi, f[e], 8 * j + e);
        }
    for (int i = head + threadIdx.x; i < hi; i += blockDim.x)
        arg_better(best, bi, to_f32(logits[i]), i);
}

// Greedy sampling by a cluster of blocks along y: rank r takes the r-th slice of the logits (a
// multiple of 8 long), puts its (value, index) into rank 0's shared memory, and after one barrier
// rank 0's first warp takes the best (ties: the lowest index, as in the one-block kernel).
template <typename T, bool VEC>
__global__ void __launch_bounds__(SAMPLE_THREADS)
    argmax_cluster_kernel(int32_t *token, const T *logits, int vocab, int32_t *step, int32_t *publish) {
    __shared__ float sv[32], part_v[ARGMAX_CLUSTER];
    __shared__ int si[32], part_i[ARGMAX_CLUSTER];
    cluster_arrive_relaxed(); // this block has started: waited for before the DSMEM writes
    pdl_wait();
    pdl_trigger();
    cg::cluster_group cl = cg::this_cluster();
    const int rank = (int)cl.block_rank(), n = (int)cl.num_blocks();
    const int64_t per = ((int64_t)vocab + 8 * n - 1) / (8 * n) * 8; // (64-bit: vocab may be near 2^31)
    const int lo = (int)min((int64_t)rank * per, (int64_t)vocab), hi = (int)min(lo + per, (int64_t)vocab);
    float best = -INFINITY;
    int bi = 0x7fffffff;
    argmax_part<T, VEC>(logits, lo, hi, best, bi);
    block_argmax(best, bi, sv, si);
    cluster_wait();
    if (threadIdx.x == 0) {
        cl.map_shared_rank(part_v, 0)[rank] = best;
        cl.map_shared_rank(part_i, 0)[rank] = bi;
    }
    cl.sync();
    if (rank != 0 || threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    float v = lane < n ? part_v[lane] : -INFINITY;
    int i = lane < n ? part_i[lane] : 0x7fffffff;
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        int i2 = __shfl_xor_sync(0xffffffffu, i, o);
        arg_better(v, i, v2, i2);
    }
    if (lane == 0) sample_done(token, i < vocab ? i : 0, step, publish);
}

// One block. The top-k threshold is found by bisection on the value (the k-th largest logit). VEC
// (16-bit T, logits 16-byte aligned): the argmax pass reads 8 logits per load (greedy decoding reads
// nothing else; Llama-3's 128,256 logits: 16 independent loads per thread instead of 125).
template <typename T, bool VEC>
__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int32_t *token, const T *logits, int vocab, float temp, int top_k, uint64_t seed, int32_t *step,
                  int32_t *publish) {
    __shared__ float sv[32];
    __shared__ int si[32], sc[32];
    pdl_wait();
    pdl_trigger();
    float best = -INFINITY;
    int bi = 0x7fffffff;
    argmax_part<T, VEC>(logits, 0, vocab, best, bi);
    block_argmax(best, bi, sv, si);
    if (temp <= 0.0f || !(best > -INFINITY)) {
        if (threadIdx.x == 0) sample_done(token, bi < vocab ? bi : 0, step, publish);
        return;
    }
    float thr = -INFINITY;
    if (top_k > 0 && top_k < vocab) {
        float lo = -INFINITY, hi = best; // count(>= hi) >= 1; find the largest t with count(>= t) >= top_k
        float mn = INFINITY;
        for (int i = threadIdx.x; i < vocab; i += blockDim.x)
            mn = fminf(mn, to_f32(logits[i]));
        // the minimum, through the argmax of the negation
        float nv = -mn;
        int ni = 0;
        block_argmax(nv, ni, sv, si);
        lo = -nv; // count(>= lo) == vocab >= top_k
        for (int it = 0; it < 40 && lo < hi; it++) {
            float mid = 0.5f * (lo + hi);
            if (mid <= lo || mid >= hi) break;
            int c = 0;
            for (int i = threadIdx.x; i < vocab; i += blockDim.x)
                c += to_f32(logits[i]) >= mid;
            if (block_count(c, sc) >= top_k)
                lo = mid;
            else
                hi = mid;
        }
        thr = lo;
    }
    uint64_t st = step ? (uint64_t)(uint32_t)*step : 0;
    float gv = -INFINITY;
    int gi = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float l = to_f32(logits[i]);
        if (l < thr || !(l > -INFINITY)) continue;
        float u = uniform01(seed, st, (uint64_t)i);
        arg_better(gv, gi, (l - best) / temp - logf(-logf(u)), i);
    }
    block_argmax(gv, gi, sv, si); // its barriers: every thread has read *step before it changes
    if (threadIdx.x == 0) sample_done(token, gi < vocab ? gi : bi, step, publish);
}

// One sampling launch: greedy on the cluster kernel (cluster), else the one-block kernel.
template <typename T, bool VEC>
static void launch_sample(rill_stream *s, int32_t *token, const T *logits, int vocab, float temp, int top_k,
                          uint64_t seed, int32_t *step, int32_t *publish, bool cluster) {
    if (cluster)
        cuda_launch_cluster(s, cuda_pdl_on(), ARGMAX_CLUSTER, argmax_cluster_kernel<T, VEC>, dim3(1, ARGMAX_CLUSTER),
                            SAMPLE_THREADS, 0, token, logits, vocab, step, publish);
    else
        cuda_launch_pdl(s, sample_kernel<T, VEC>, 1, SAMPLE_THREADS, 0, token, logits, vocab, temp, top_k, seed, step,
                        publish);
}

extern "C" void cuda_sample(rill_stream *s, rill_tensor *token, const rill_tensor *logits, float temp, int top_k,
                            uint64_t seed, int32_t *step, int32_t *publish) {
    const char *op = "sample";
    if (token->dtype != DTYPE_I32 || logits->rows != 1 || logits->cols < 1 || logits->cols > 0x7fffffff) {
        cuda_reject(s, RILL_EINVAL, op, "token must be I32 and logits one row");
        return;
    }
    if (publish && !step) {
        cuda_reject(s, RILL_EINVAL, op, "publish needs the step counter");
        return;
    }
    bool vec = logits->dtype != DTYPE_F32 && ((uintptr_t)logits->data & 15) == 0;
    static int cluster_on = -1; // RILL_CUDA_ARGMAX_CLUSTER=0: greedy on the one-block kernel (to compare)
    bool cluster = temp <= 0.0f && env_switch_on("RILL_CUDA_ARGMAX_CLUSTER", &cluster_on);
    int32_t *tok = (int32_t *)token->data;
    int vocab = (int)logits->cols;
    if (vec)
        CUDA_DISPATCH(
            s, op, logits->dtype, T,
            launch_sample<T, true>(s, tok, (const T *)logits->data, vocab, temp, top_k, seed, step, publish, cluster));
    else
        CUDA_DISPATCH(
            s, op, logits->dtype, T,
            launch_sample<T, false>(s, tok, (const T *)logits->data, vocab, temp, top_k, seed, step, publish, cluster));
    cuda_launched(s, op);
}
