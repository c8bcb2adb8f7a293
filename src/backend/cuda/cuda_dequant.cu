// cuda_dequant.cu: weights into the activation dtype for the cuBLAS GEMM of prefill (rows of a dense
// or affine W, any bits, into a scratch tile), and the bias added after that GEMM.
#include "backend/cuda/cuda_common.cuh"

// dst: [n][w.cols] of TO = dequant(w) rows [r0, r0 + n)
template <typename TO> __global__ void dequant_kernel(TO *dst, rill_weight w, int64_t r0, int64_t n) {
    int64_t total = n * w.cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<TO>(weight_at(w, r0 + i / w.cols, i % w.cols));
}

extern "C" void cuda_dequant_rows(rill_stream *s, void *dst, rill_dtype dt, const rill_weight *w, int64_t r0,
                                  int64_t n) {
    if (n * w->cols == 0) return;
    CUDA_DISPATCH(s, "matmul (dequantize)", dt, TO,
                  dequant_kernel<TO><<<cuda_blocks(n * w->cols, 256), 256, 0, s->cs>>>((TO *)dst, *w, r0, n));
    cuda_launched(s, "matmul (dequantize)");
}

// out: [rows][cols] (stride so); bias: [cols] f32
template <typename T> __global__ void bias_kernel(T *out, int64_t so, const float *bias, int64_t rows, int64_t cols) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * cols;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        out[r * so + c] = from_f32<T>(to_f32(out[r * so + c]) + bias[c]);
    }
}

extern "C" void cuda_add_bias(rill_stream *s, rill_tensor *out, const float *bias) {
    if (out->rows * out->cols == 0) return;
    CUDA_DISPATCH(s, "matmul (bias)", out->dtype, T,
                  bias_kernel<T><<<cuda_blocks(out->rows * out->cols, 256), 256, 0, s->cs>>>(
                      (T *)out->data, out->stride, bias, out->rows, out->cols));
    cuda_launched(s, "matmul (bias)");
}
