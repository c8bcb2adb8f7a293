// cuda_matmul.c: the matmul op. A few tokens (decode) go to the fused GEMV (cuda_gemv.cu), which
// reads each weight once; more tokens (prefill) go to cuBLAS in the activation dtype with f32
// accumulation, after affine or other-dtype weights are dequantized into a scratch tile of rows.
// RILL_CUDA_TRACE=1 names the cuBLAS calls that hold the host (first-call kernel loading).
#ifdef RILL_CUDA
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda.h"
#include "base/progress.h"

enum { TILE_BYTES = 128 << 20 }; // most scratch a dequantized weight tile takes

static cudaDataType blas_type(rill_dtype dt) {
    return dt == DTYPE_F32 ? CUDA_R_32F : dt == DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
}

// RILL_CUDA_TRACE=1: each cuBLAS call that holds the host for more than 1 ms (its first call for a
// shape loads kernels and picks one) is named on stderr, to see where a process's first prefill goes.
static bool trace_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("RILL_CUDA_TRACE");
        on = e && *e && *e != '0';
    }
    return on != 0;
}

// out[:, r0 : r0 + n] = x . W[r0 : r0 + n]^T   with W rows of dtype dt: [n][k] contiguous
static bool gemm(rill_stream *s, rill_tensor *out, const rill_tensor *x, const void *wrows, int64_t r0, int64_t n) {
    const float one = 1.0f, zero = 0.0f;
    size_t es = dtype_size(out->dtype);
    cudaDataType t = blas_type(x->dtype);
    double t0 = trace_on() ? rill_now() : 0.0;
    // column-major view: C [n][n_tok] = W [k][n]^T . x [k][n_tok]
    cublasStatus_t st = cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)x->rows, (int)x->cols, &one, wrows,
                                     t, (int)x->cols, x->data, t, (int)x->stride, &zero, (char *)out->data + r0 * es, t,
                                     (int)out->stride, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (trace_on() && rill_now() - t0 > 1e-3)
        fprintf(stderr, "cuda trace: cublasGemmEx %lld x %lld x %lld held the host %.1f ms\n", (long long)x->rows,
                (long long)n, (long long)x->cols, (rill_now() - t0) * 1e3);
    if (st == CUBLAS_STATUS_SUCCESS) return true;
    cuda_reject(s, RILL_EIO, "matmul (cuBLAS)", cublasGetStatusString(st));
    return false;
}

void cuda_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    if (x->cols != w->cols || out->cols != w->rows || out->rows != x->rows || out->dtype != x->dtype) {
        cuda_reject(s, RILL_EINVAL, "matmul", "x, weight and out do not fit");
        return;
    }
    if (x->rows == 0) return;
    if (x->rows <= CUDA_GEMV_MAX_TOK) {
        cuda_gemv(s, out, x, w);
        return;
    }
    cuda_forget_prepared(s); // (cuBLAS writes out without cuda_launched)
    if (x->rows > INT_MAX || w->rows > INT_MAX || w->cols > INT_MAX || x->stride > INT_MAX || out->stride > INT_MAX) {
        cuda_reject(s, RILL_ERANGE, "matmul", "dimensions exceed cuBLAS's int range");
        return;
    }
    if (w->kind == WEIGHT_DENSE && w->dtype == x->dtype) {
        if (!gemm(s, out, x, w->data, 0, w->rows)) return;
    } else {
        size_t row_bytes = (size_t)w->cols * dtype_size(x->dtype);
        int64_t tile = (int64_t)(TILE_BYTES / row_bytes);
        if (tile < 1) tile = 1;
        if (tile > w->rows) tile = w->rows;
        void *buf = cuda_scratch(s, (size_t)tile * row_bytes, "matmul");
        if (!buf) return;
        for (int64_t r0 = 0; r0 < w->rows; r0 += tile) {
            int64_t n = w->rows - r0 < tile ? w->rows - r0 : tile;
            cuda_dequant_rows(s, buf, x->dtype, w, r0, n);
            if (!gemm(s, out, x, buf, r0, n)) return;
        }
    }
    if (w->bias) cuda_add_bias(s, out, w->bias);
}
#endif
