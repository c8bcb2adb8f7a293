// cuda_dequant.cu: weights into the activation dtype for the cuBLAS GEMM of prefill (rows of a dense
// or affine W, any bits, into a scratch tile), and the bias added after that GEMM.
#include "backend/cuda/cuda_common.cuh"

// dst: [n][w.cols] of TO = dequant(w) rows [r0, r0 + n)
template <typename TO> __global__ void dequant_kernel(TO *dst, rill_weight w, int64_t r0, int64_t n) {
    int64_t total = n * w.cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<TO>(weight_at(w, r0 + i / w.cols, i % w.cols));
}

// 4- or 8-bit affine rows, 8 values per thread: BITS bytes of codes in, one 16-byte word of TO out,
// so a warp's loads and stores are both contiguous. vpr = cols / 8 words per row, groups of gs
// values (a multiple of 8; one scale and bias per word); dst rows as above. Same value as weight_at:
// scale * q + bias in f32, rounded once to TO.
template <typename TO, typename TS, int BITS>
__global__ void dequant_affine_kernel(uint4 *dst, const uint32_t *packed, const TS *scales, const TS *biases, int vpr,
                                      int groups, int words_per_group, int total) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    int row = i / vpr, g = row * groups + (i - row * vpr) / words_per_group;
    unsigned qw[BITS / 4]; // 8 codes
    if (BITS == 4)
        qw[0] = __ldcs(packed + i);
    else {
        uint2 q2 = __ldcs((const uint2 *)packed + i);
        qw[0] = q2.x, qw[BITS / 4 - 1] = q2.y;
    }
    float sc = to_f32(scales[g]), bi = any_bias(biases, g, sc, BITS);
    alignas(16) TO vals[8];
#pragma unroll
    for (int k = 0; k < 8; k++)
        vals[k] = from_f32<TO>(
            fmaf(sc, (float)((qw[k / (32 / BITS)] >> ((k % (32 / BITS)) * BITS)) & ((1u << BITS) - 1u)), bi));
    if (sizeof(TO) == 2)
        dst[i] = *(const uint4 *)vals;
    else {
        dst[2 * (int64_t)i] = ((const uint4 *)vals)[0];
        dst[2 * (int64_t)i + 1] = ((const uint4 *)vals)[1];
    }
}

extern "C" void cuda_dequant_rows(rill_stream *s, void *dst, rill_dtype dt, const rill_weight *w, int64_t r0,
                                  int64_t n) {
    if (n * w->cols == 0) return;
    int64_t vpr = w->cols / 8; // 8-value words per row
    bool fast = w->kind == WEIGHT_AFFINE && (w->bits == 4 || w->bits == 8) && w->cols % 8 == 0 &&
                w->group_size % 8 == 0 && ((uintptr_t)w->packed & 7) == 0 && ((uintptr_t)dst & 15) == 0 &&
                n * vpr < ((int64_t)1 << 31);
    if (fast) {
        int total = (int)(n * vpr), groups = (int)(w->cols / w->group_size), wpg = (int)(w->group_size / 8);
        const uint32_t *pk = w->packed + r0 * w->cols * w->bits / 32;
        size_t ses = w->dtype == DTYPE_F32 ? 4 : 2;
        const char *sc = (const char *)w->scales + (size_t)(r0 * groups) * ses;
        const char *bi = w->biases ? (const char *)w->biases + (size_t)(r0 * groups) * ses : NULL;
        unsigned grid = (unsigned)((total + 255) / 256);
#define DQ(BITS)                                                                                                       \
    CUDA_DISPATCH(s, "matmul (dequantize)", dt, TO,                                                                    \
                  CUDA_DISPATCH(s, "matmul (dequantize)", w->dtype, TS,                                                \
                                dequant_affine_kernel<TO, TS, BITS><<<grid, 256, 0, s->cs>>>(                          \
                                    (uint4 *)dst, pk, (const TS *)sc, (const TS *)bi, (int)vpr, groups, wpg, total)))
        if (w->bits == 4)
            DQ(4);
        else
            DQ(8);
#undef DQ
    } else
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
