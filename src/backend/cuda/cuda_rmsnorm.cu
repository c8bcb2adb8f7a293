// cuda_rmsnorm.cu: RMSNorm, one block per row: the sum of squares in f32 (block reduction), then
// out = x / sqrt(mean(x^2) + eps) * (w + add_one). Each thread rereads the elements it summed, so
// out may alias x.
#include "backend/cuda/cuda_common.cuh"

// x, out: [rows][cols] (strides sx, so); w: [cols] f32
template <typename T>
__global__ void rmsnorm_kernel(T *out, int64_t so, const T *x, int64_t sx, const float *w, int64_t cols, float eps,
                               float add) {
    __shared__ float part[32]; // [warps] partial sums
    const T *xr = x + blockIdx.x * sx;
    float ss = 0.0f;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
        float v = to_f32(xr[c]);
        ss += v * v;
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        v = warp_sum(v);
        if (threadIdx.x == 0) part[0] = v;
    }
    __syncthreads();
    float inv = rsqrtf(part[0] / (float)cols + eps);
    T *outr = out + blockIdx.x * so;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
        outr[c] = from_f32<T>(to_f32(xr[c]) * inv * (w[c] + add));
}

extern "C" void cuda_rmsnorm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const float *w, float eps,
                             bool add_one) {
    if (out->rows != x->rows || out->cols != x->cols || out->dtype != x->dtype) {
        cuda_reject(s, RILL_EINVAL, "rmsnorm", "out and x differ in shape or dtype");
        return;
    }
    if (x->rows == 0) return;
    if (x->rows > 0x7fffffff) {
        cuda_reject(s, RILL_ERANGE, "rmsnorm", "too many rows");
        return;
    }
    int threads = x->cols >= 4096 ? 1024 : x->cols >= 1024 ? 512 : 256;
    CUDA_DISPATCH(s, "rmsnorm", x->dtype, T,
                  rmsnorm_kernel<T>
                  <<<(unsigned)x->rows, threads, 0, s->cs>>>((T *)out->data, out->stride, (const T *)x->data, x->stride,
                                                             w, x->cols, eps, add_one ? 1.0f : 0.0f));
    cuda_launched(s, "rmsnorm");
}
