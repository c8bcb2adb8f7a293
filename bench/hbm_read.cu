// hbm_read.cu: how fast this GPU reads memory it has not cached, the ceiling for a decode GEMV that
// reads each weight once. A kernel reads a slice of a 4.5 GB buffer (a Llama-3-8B 4-bit model's
// size, so nothing is left in L2 from one launch to the next) with 16-byte streaming loads, U per
// thread in flight, and folds them into one word so that no load is dropped; back-to-back launches
// over consecutive slices, as a decode step's GEMVs read consecutive matrices. Prints, per slice size
// (a 4-bit Llama-3-8B layer's matrices with their scales and biases, and 1 GB for the steady rate)
// and per launch shape, the mean microseconds per slice (launch gaps included) and TB/s. Build and
// run on the device: `nvcc -O3 -arch=sm_90 -o /tmp/hbm_read bench/hbm_read.cu && /tmp/hbm_read`.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "hbm_read: %s: %s\n", #x, cudaGetErrorString(e_));                                         \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

// Reads words [0, n) of p, U 16-byte words per thread in flight (a grid-stride loop).
template <int U> __global__ void read_kernel(const uint4 *p, int64_t n, unsigned *sink) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    for (; i + (U - 1) * stride < n; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            v[u] = __ldcs(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; u++)
            acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) {
        uint4 v = __ldcs(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u); // (never true for the zeroed buffer: keeps the loads)
}

template <int U>
static int run(const char *name, const uint4 *buf, int64_t buf_words, int64_t slice_bytes, int blocks, int threads,
               unsigned *sink) {
    int64_t words = slice_bytes / 16, slices = buf_words / words;
    if (slices > 64) slices = 64;
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    for (int64_t k = 0; k < slices; k++) // warm-up pass (launch paths, clocks)
        read_kernel<U><<<blocks, threads>>>(buf + k * words, words, sink);
    CHECK(cudaEventRecord(a));
    for (int64_t k = 0; k < slices; k++)
        read_kernel<U><<<blocks, threads>>>(buf + k * words, words, sink);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    double us = ms * 1e3 / (double)slices;
    printf("%-10s %8.1f MB  %4d blocks x %4d threads, %d in flight: %8.2f us per slice  %5.3f TB/s\n", name,
           slice_bytes / 1e6, blocks, threads, U, us, slice_bytes / us / 1e6);
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return 0;
}

int main(void) {
    int dev = 0, sms = 0;
    cudaDeviceProp prop;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaGetDeviceProperties(&prop, dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    printf("%s, %d SMs, L2 %.0f MB\n", prop.name, sms, prop.l2CacheSize / 1e6);
    const int64_t buf_bytes = (int64_t)4608 << 20; // 4.5 GiB
    uint4 *buf;
    unsigned *sink;
    CHECK(cudaMalloc(&buf, buf_bytes));
    CHECK(cudaMalloc(&sink, 4));
    CHECK(cudaMemset(buf, 0, buf_bytes));
    CHECK(cudaMemset(sink, 0, 4));
    static const struct {
        const char *name;
        int64_t bytes;
    } slices[] = {{"gate/up", 66060288}, {"down", 33030144}, {"q/k/v", 14155776}, {"o", 9437184}, {"1 GB", 1 << 30}};
    for (size_t s = 0; s < sizeof slices / sizeof slices[0]; s++) {
        const char *n = slices[s].name;
        int64_t b = slices[s].bytes, w = buf_bytes / 16;
        if (run<1>(n, buf, w, b, sms * 8, 256, sink) || run<2>(n, buf, w, b, sms * 8, 256, sink) ||
            run<4>(n, buf, w, b, sms * 8, 256, sink) || run<8>(n, buf, w, b, sms * 8, 256, sink) ||
            run<4>(n, buf, w, b, sms * 4, 512, sink) || run<4>(n, buf, w, b, sms * 2, 256, sink) ||
            run<8>(n, buf, w, b, sms * 2, 256, sink))
            return 1;
    }
    CHECK(cudaFree(buf));
    CHECK(cudaFree(sink));
    return 0;
}
