// cuda_elementwise.cu: the elementwise ops on strided 2-D tensors: act_mul (silu, gelu_tanh),
// add, scale, softcap in the activation dtype, and copy between any two of F32/F16/BF16. One
// kernel per element-type pair; the op is a run-time switch (uniform across the grid).
#include "backend/cuda/cuda_common.cuh"

enum ew_op { EW_ADD, EW_SILU_MUL, EW_GELU_MUL, EW_SCALE, EW_SOFTCAP };

// out[r][c] = f(a[r][c], b[r][c])   a, b, out: [rows][cols] with their own row strides
template <typename T>
__global__ void ew_kernel(ew_op op, T *out, int64_t so, const T *a, int64_t sa, const T *b, int64_t sb, int64_t rows,
                          int64_t cols, float k) {
    pdl_wait();
    pdl_trigger();
    int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        float x = to_f32(a[r * sa + c]), y;
        switch (op) {
        case EW_ADD: y = x + to_f32(b[r * sb + c]); break;
        case EW_SILU_MUL: y = act_times<ACT_SILU>(x, to_f32(b[r * sb + c])); break;
        case EW_GELU_MUL: y = act_times<ACT_GELU_TANH>(x, to_f32(b[r * sb + c])); break;
        case EW_SCALE: y = x * k; break;
        default: y = k * tanhf(x / k); break; // EW_SOFTCAP
        }
        out[r * so + c] = from_f32<T>(y);
    }
}

// The same, 8 elements per thread (16-bit T: one 16-byte word): every row of every tensor starts
// 16-byte aligned and cols % 8 == 0; n8 = rows * cols / 8 < 2^31 words.
template <typename T>
__global__ void ew8_kernel(ew_op op, T *out, int64_t so, const T *a, int64_t sa, const T *b, int64_t sb, int n8,
                           int cols8, float k) {
    pdl_wait();
    pdl_trigger();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n8; i += gridDim.x * blockDim.x) {
        int r = i / cols8, c = (i - r * cols8) * 8;
        float x[8], y[8];
        alignas(16) T res[8];
        load8(a + r * sa + c, x);
        if (op == EW_ADD || op == EW_SILU_MUL || op == EW_GELU_MUL) load8(b + r * sb + c, y);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            float v;
            switch (op) {
            case EW_ADD: v = x[e] + y[e]; break;
            case EW_SILU_MUL: v = act_times<ACT_SILU>(x[e], y[e]); break;
            case EW_GELU_MUL: v = act_times<ACT_GELU_TANH>(x[e], y[e]); break;
            case EW_SCALE: v = x[e] * k; break;
            default: v = k * tanhf(x[e] / k); break; // EW_SOFTCAP
            }
            res[e] = from_f32<T>(v);
        }
#pragma unroll
        for (int w = 0; w < (int)(sizeof res / 16); w++)
            ((uint4 *)(out + r * so + c))[w] = ((const uint4 *)res)[w];
    }
}

static bool rows16(const rill_tensor *t) { return ((uintptr_t)t->data & 15) == 0 && t->stride % 8 == 0; }

static bool same_shape(rill_stream *s, const char *op, const rill_tensor *out, const rill_tensor *a) {
    if (out->rows == a->rows && out->cols == a->cols && out->dtype == a->dtype) return true;
    cuda_reject(s, RILL_EINVAL, op, "tensors differ in shape or dtype");
    return false;
}

static void ew(rill_stream *s, const char *op, ew_op kind, rill_tensor *out, const rill_tensor *a, const rill_tensor *b,
               float k) {
    if (!same_shape(s, op, out, a) || (b && !same_shape(s, op, out, b))) return;
    if (out->rows * out->cols == 0) return;
    const rill_tensor *bb = b ? b : a;
    if (out->dtype != DTYPE_F32 && out->cols % 8 == 0 && rows16(out) && rows16(a) && rows16(bb) &&
        out->rows * out->cols / 8 < 0x7fffffff) {
        int64_t n8 = out->rows * out->cols / 8;
        CUDA_DISPATCH(s, op, out->dtype, T,
                      cuda_launch_pdl(s, ew8_kernel<T>, cuda_blocks(n8, 256), 256, 0, kind, (T *)out->data, out->stride,
                                      (const T *)a->data, a->stride, (const T *)bb->data, bb->stride, (int)n8,
                                      (int)(out->cols / 8), k));
        cuda_launched(s, op);
        return;
    }
    unsigned grid = cuda_blocks(out->rows * out->cols, 256);
    CUDA_DISPATCH(s, op, out->dtype, T,
                  cuda_launch_pdl(s, ew_kernel<T>, grid, 256, 0, kind, (T *)out->data, out->stride, (const T *)a->data,
                                  a->stride, (const T *)bb->data, bb->stride, out->rows, out->cols, k));
    cuda_launched(s, op);
}

extern "C" void cuda_act_mul(rill_stream *s, rill_tensor *out, const rill_tensor *gate, const rill_tensor *up,
                             rill_act act) {
    ew(s, "act_mul", act == ACT_SILU ? EW_SILU_MUL : EW_GELU_MUL, out, gate, up, 0.0f);
}

extern "C" void cuda_add(rill_stream *s, rill_tensor *out, const rill_tensor *a, const rill_tensor *b) {
    ew(s, "add", EW_ADD, out, a, b, 0.0f);
}

extern "C" void cuda_scale(rill_stream *s, rill_tensor *out, const rill_tensor *x, float scale) {
    ew(s, "scale", EW_SCALE, out, x, NULL, scale);
}

extern "C" void cuda_softcap(rill_stream *s, rill_tensor *out, const rill_tensor *x, float cap) {
    ew(s, "softcap", EW_SOFTCAP, out, x, NULL, cap);
}

// out[r][c] = (To)x[r][c]   x: [rows][cols] of Ti (stride sx), out: [rows][cols] of To (stride so)
template <typename Ti, typename To>
__global__ void copy_kernel(To *out, int64_t so, const Ti *x, int64_t sx, int64_t rows, int64_t cols) {
    pdl_wait();
    pdl_trigger();
    int64_t n = rows * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cols, c = i % cols;
        out[r * so + c] = from_f32<To>(to_f32(x[r * sx + c]));
    }
}

extern "C" void cuda_copy(rill_stream *s, rill_tensor *out, const rill_tensor *x) {
    if (out->rows != x->rows || out->cols != x->cols) {
        cuda_reject(s, RILL_EINVAL, "copy", "tensors differ in shape");
        return;
    }
    if (out->rows * out->cols == 0) return;
    unsigned grid = cuda_blocks(out->rows * out->cols, 256);
    CUDA_DISPATCH(s, "copy", x->dtype, Ti,
                  CUDA_DISPATCH(s, "copy", out->dtype, To,
                                cuda_launch_pdl(s, copy_kernel<Ti, To>, grid, 256, 0, (To *)out->data, out->stride,
                                                (const Ti *)x->data, x->stride, out->rows, out->cols)));
    cuda_launched(s, "copy");
}
