// cuda_rmsnorm.cu: RMSNorm, one block per row: the sum of squares in f32 (block reduction), then
// out = x / sqrt(mean(x^2) + eps) * (w + add_one). Each thread rereads the elements it summed (the
// 8-wide kernel keeps its first word in registers instead), so out may alias x. add_rmsnorm first
// adds the residual r into x (rounded to the dtype, as the add op stores it) in the same pass: one
// launch instead of two per residual add of a decoder layer. f16/bf16 rows of whole 16-byte words
// take 8 values per thread (rmsnorm8_kernel).
#include "backend/cuda/cuda_common.cuh"

// The sum of v over the block (every thread gets it); part: [32] shared floats, written once (a
// kernel calls this once). Every warp sums the warps' partials itself, in the same order as the
// others: one barrier, and no second pass through warp 0 and shared memory.
__device__ __forceinline__ float block_sum(float v, float *part) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    return warp_sum(lane < (int)(blockDim.x / 32) ? part[lane] : 0.0f);
}

// x, out: [rows][cols] (strides sx, so); w: [cols] f32
template <typename T>
__global__ void rmsnorm_kernel(T *out, int64_t so, const T *x, int64_t sx, const float *w, int64_t cols, float eps,
                               float add) {
    __shared__ float part[32]; // [warps] partial sums
    pdl_wait();
    pdl_trigger();
    const T *xr = x + blockIdx.x * sx;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = to_f32(xr[c]);
        ss += v * v;
    }
    float inv = rsqrtf(block_sum(ss, part) / (float)cols + eps);
    T *outr = out + blockIdx.x * so;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        outr[c] = from_f32<T>(to_f32(xr[c]) * inv * (w[c] + add));
}

// x <- x + r, then out = rmsnorm(x)   x, r, out: [rows][cols] (strides sx, sr, so); w: [cols] f32
template <typename T>
__global__ void add_rmsnorm_kernel(T *out, int64_t so, T *x, int64_t sx, const T *r, int64_t sr, const float *w,
                                   int64_t cols, float eps, float add) {
    __shared__ float part[32]; // [warps] partial sums
    pdl_wait();
    pdl_trigger();
    T *xr = x + blockIdx.x * sx;
    const T *rr = r + blockIdx.x * sr;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        T v = from_f32<T>(to_f32(xr[c]) + to_f32(rr[c]));
        xr[c] = v;
        float f = to_f32(v);
        ss += f * f;
    }
    float inv = rsqrtf(block_sum(ss, part) / (float)cols + eps);
    T *outr = out + blockIdx.x * so;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) // (this thread's own stores above)
        outr[c] = from_f32<T>(to_f32(xr[c]) * inv * (w[c] + add));
}

// Both norms for 16-bit T on rows of whole 16-byte words (cols % 8 == 0, every row 16-byte aligned):
// one word of 8 values per thread and step, loaded and stored 16 bytes at a time. ADD: x <- x + r
// first (rounded to T), as add_rmsnorm_kernel; otherwise r is unused and out may alias x. QX (cols %
// 32 == 0): out is also written quantized for the 4-bit GEMV (cuda_qx, as quant_x_kernel writes it:
// the 4 lanes of a block of 32 share its largest magnitude and sum through shuffles), which saves
// the GEMV its own pass over x.
template <typename T, bool ADD, bool QX>
__global__ void rmsnorm8_kernel(T *out, int64_t so, T *x, int64_t sx, const T *r, int64_t sr, const float *w, int cols,
                                float eps, float add, int8_t *qc, float *qs, float *qsum, int64_t q_all) {
    __shared__ float part[32]; // [warps] partial sums
    // the norm weights of this thread's first word, read while the kernel before still runs (no
    // kernel writes them); rows up to 8 * blockDim values have no other word
    float w0f[8];
    if (threadIdx.x * 8 < cols) {
        float4 a = *(const float4 *)(w + threadIdx.x * 8), b = *(const float4 *)(w + threadIdx.x * 8 + 4);
        w0f[0] = a.x, w0f[1] = a.y, w0f[2] = a.z, w0f[3] = a.w, w0f[4] = b.x, w0f[5] = b.y, w0f[6] = b.z, w0f[7] = b.w;
    }
    pdl_wait();
    pdl_trigger();
    T *xr = x + blockIdx.x * sx;
    float ss = 0.0f;
    float f0[8]; // this thread's first word (as stored), kept for the second pass
    for (int c = threadIdx.x * 8; c < cols; c += blockDim.x * 8) {
        float f[8];
        load8(xr + c, f);
        if (ADD) {
            float g[8];
            alignas(16) T v[8];
            load8(r + blockIdx.x * sr + c, g);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                v[e] = from_f32<T>(f[e] + g[e]);
                f[e] = to_f32(v[e]);
            }
            *(uint4 *)(xr + c) = *(const uint4 *)v;
        }
#pragma unroll
        for (int e = 0; e < 8; e++)
            ss += f[e] * f[e];
        if (c == threadIdx.x * 8)
#pragma unroll
            for (int e = 0; e < 8; e++)
                f0[e] = f[e];
    }
    float inv = rsqrtf(block_sum(ss, part) / (float)cols + eps);
    T *outr = out + blockIdx.x * so;
    // every lane takes the same number of steps (the shuffles of QX); a word past the row is idle
    for (int w0 = 0; w0 < cols / 8; w0 += blockDim.x) { // (this thread's own words above)
        int word = w0 + threadIdx.x, c = word * 8;
        bool live = c < cols;
        float f[8];
        alignas(16) T v[8];
        if (live) {
            if (w0 == 0) // (the word held since the first pass: no second trip to memory)
#pragma unroll
                for (int e = 0; e < 8; e++)
                    f[e] = f0[e];
            else
                load8(xr + c, f);
#pragma unroll
            for (int e = 0; e < 8; e++)
                v[e] = from_f32<T>(f[e] * inv * ((w0 == 0 ? w0f[e] : w[c + e]) + add));
            *(uint4 *)(outr + c) = *(const uint4 *)v;
        }
        if (QX) { // lanes 4k .. 4k + 3 hold the 4 words of one block (blockDim and cols / 8 are multiples of 4)
            float amax = 0.0f, sum = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                f[e] = live ? to_f32(v[e]) : 0.0f;
                amax = fmaxf(amax, fabsf(f[e]));
                sum += f[e];
            }
#pragma unroll
            for (int o = 1; o < 4; o <<= 1) {
                amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
                sum += __shfl_xor_sync(0xffffffffu, sum, o);
            }
            if (live) {
                int64_t blk = (int64_t)blockIdx.x * (cols / 32) + word / 4;
                unsigned p1[2] = {0, 0}, p2[2] = {0, 0}; // even values, then odd ones, a byte each
#pragma unroll
                for (int e = 0; e < 8; e++) {
                    int q1, q2;
                    qx_codes(f[e], amax, q1, q2);
                    p1[e & 1] |= (unsigned)(q1 & 0xff) << (8 * (e >> 1));
                    p2[e & 1] |= (unsigned)(q2 & 0xff) << (8 * (e >> 1));
                }
                int at = (word & 3) * 8;
                *(uint2 *)(qc + blk * 32 + at) = make_uint2(p1[0], p1[1]);
                *(uint2 *)(qc + (q_all + blk) * 32 + at) = make_uint2(p2[0], p2[1]);
                if ((word & 3) == 0) qs[blk] = qx_scale(amax), qsum[blk] = sum;
            }
        }
    }
}

static bool rows16(const rill_tensor *t) {
    return t->dtype != DTYPE_F32 && ((uintptr_t)t->data & 15) == 0 && t->stride % 8 == 0 && t->cols % 8 == 0 &&
           t->cols < 0x7fffffff;
}

// Threads for rows of cols values, 8 per thread: a multiple of 32, at most 1024.
static int norm8_threads(int64_t cols) {
    int64_t words = (cols / 8 + 31) / 32 * 32;
    return words > 1024 ? 1024 : words < 32 ? 32 : (int)words;
}

static bool norm_fits(rill_stream *s, const char *op, const rill_tensor *out, const rill_tensor *x) {
    if (out->rows != x->rows || out->cols != x->cols || out->dtype != x->dtype) {
        cuda_reject(s, RILL_EINVAL, op, "out and x differ in shape or dtype");
        return false;
    }
    if (x->rows > 0x7fffffff) {
        cuda_reject(s, RILL_ERANGE, op, "too many rows");
        return false;
    }
    return true;
}

static int norm_threads(int64_t cols) { return cols >= 4096 ? 1024 : cols >= 1024 ? 512 : 256; }

extern "C" void cuda_rmsnorm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const float *w, float eps,
                             bool add_one) {
    if (!norm_fits(s, "rmsnorm", out, x) || x->rows == 0) return;
    if (rows16(out) && rows16(x) && aligned16(w)) {
        CUDA_DISPATCH(s, "rmsnorm", x->dtype, T,
                      cuda_launch_pdl(s, rmsnorm8_kernel<T, false, false>, (unsigned)x->rows, norm8_threads(x->cols), 0,
                                      (T *)out->data, out->stride, (T *)x->data, x->stride, (const T *)NULL, (int64_t)0,
                                      w, (int)x->cols, eps, add_one ? 1.0f : 0.0f, (int8_t *)NULL, (float *)NULL,
                                      (float *)NULL, (int64_t)0));
        cuda_launched(s, "rmsnorm");
        return;
    }
    CUDA_DISPATCH(s, "rmsnorm", x->dtype, T,
                  cuda_launch_pdl(s, rmsnorm_kernel<T>, (unsigned)x->rows, norm_threads(x->cols), 0, (T *)out->data,
                                  out->stride, (const T *)x->data, x->stride, w, x->cols, eps, add_one ? 1.0f : 0.0f));
    cuda_launched(s, "rmsnorm");
}

extern "C" void cuda_add_rmsnorm(rill_stream *s, rill_tensor *out, rill_tensor *x, const rill_tensor *r, const float *w,
                                 float eps, bool add_one) {
    const char *op = "add_rmsnorm";
    if (!norm_fits(s, op, out, x) || !norm_fits(s, op, r, x) || x->rows == 0) return;
    if (rows16(out) && rows16(x) && rows16(r) && aligned16(w)) {
        CUDA_DISPATCH(s, op, x->dtype, T,
                      cuda_launch_pdl(s, rmsnorm8_kernel<T, true, false>, (unsigned)x->rows, norm8_threads(x->cols), 0,
                                      (T *)out->data, out->stride, (T *)x->data, x->stride, (const T *)r->data,
                                      r->stride, w, (int)x->cols, eps, add_one ? 1.0f : 0.0f, (int8_t *)NULL,
                                      (float *)NULL, (float *)NULL, (int64_t)0));
        cuda_launched(s, op);
        return;
    }
    CUDA_DISPATCH(s, op, x->dtype, T,
                  cuda_launch_pdl(s, add_rmsnorm_kernel<T>, (unsigned)x->rows, norm_threads(x->cols), 0, (T *)out->data,
                                  out->stride, (T *)x->data, x->stride, (const T *)r->data, r->stride, w, x->cols, eps,
                                  add_one ? 1.0f : 0.0f));
    cuda_launched(s, op);
}

extern "C" bool cuda_norm_quantize(rill_stream *s, rill_tensor *h, rill_tensor *x, const rill_tensor *r, const float *w,
                                   float eps, bool add_one, const cuda_qx *q) {
    const char *op = r ? "add_rmsnorm" : "rmsnorm";
    if (!rows16(h) || !rows16(x) || (r && !rows16(r)) || !aligned16(w) || x->cols % 32 || x->rows == 0 ||
        q->n_blk != x->rows * (x->cols / 32))
        return false;
    if (!norm_fits(s, op, h, x) || (r && !norm_fits(s, op, r, x))) return true; // (rejected: nothing more to run)
    float add = add_one ? 1.0f : 0.0f;
    const void *rd = r ? r->data : NULL;
    int64_t sr = r ? r->stride : 0;
    if (r)
        CUDA_DISPATCH(s, op, x->dtype, T,
                      cuda_launch_pdl(s, rmsnorm8_kernel<T, true, true>, (unsigned)x->rows, norm8_threads(x->cols), 0,
                                      (T *)h->data, h->stride, (T *)x->data, x->stride, (const T *)rd, sr, w,
                                      (int)x->cols, eps, add, q->codes, q->scale, q->sum, q->n_blk));
    else
        CUDA_DISPATCH(s, op, x->dtype, T,
                      cuda_launch_pdl(s, rmsnorm8_kernel<T, false, true>, (unsigned)x->rows, norm8_threads(x->cols), 0,
                                      (T *)h->data, h->stride, (T *)x->data, x->stride, (const T *)rd, sr, w,
                                      (int)x->cols, eps, add, q->codes, q->scale, q->sum, q->n_blk));
    cuda_launched(s, op);
    return true;
}
