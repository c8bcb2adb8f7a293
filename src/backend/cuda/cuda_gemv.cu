// cuda_gemv.cu: matmul for a few tokens (decode), one warp per output row: each weight byte is read
// once per call (16-byte streaming loads) for all n_tok <= CUDA_GEMV_MAX_TOK rows of x. 4- and 8-bit
// affine weights with bf16/f16 activations go to the dp4a GEMV (cuda_gemv_dp4a.cu) unless the f32 path
// pays; other 4/8-bit: dequantized in registers to f32 (acc += scale * q.x + bias * sum(x)); dense: 8-wide
// FMA; other bits or unaligned shapes: a plain per-element path.
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

// Quantized value k of a word holding 32 / BITS of them, as f32 (exact: the integer is placed in
// the mantissa of 2^23 and 2^23 is subtracted, which avoids the slow int-to-float unit).
template <int BITS> __device__ __forceinline__ float qval(unsigned w, int k) {
    unsigned q = (w >> (k * BITS)) & ((1u << BITS) - 1u);
    return __uint_as_float(0x4b000000u | q) - 8388608.0f;
}

// Affine 4- or 8-bit weights. packed: [n_out][n_in * BITS / 32] words, 16-byte aligned rows;
// scales, biases: [n_out][n_in / gs] of TS (biases may be NULL: any_bias); x: [n_tok][n_in] of TX
// (stride sx); out: [n_tok][n_out].
template <typename TX, typename TS, int BITS>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_affine_kernel(TX *out, int64_t so, const TX *x, int64_t sx, const uint4 *packed, const TS *scales,
                       const TS *biases, const float *bias, int64_t n_out, int64_t n_in, int gs, int n_tok) {
    constexpr int VALS = 128 / BITS; // values per 16-byte load
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    int64_t n_vec = n_in / VALS, groups = n_in / gs;
    int gsh = __ffs(gs) - 1;
    bool gs_pow2 = (gs & (gs - 1)) == 0;
    const uint4 *prow = packed + row * n_vec;
    const TS *srow = scales + row * groups, *brow = biases ? biases + row * groups : nullptr;
    // a lane's next word with its scale and bias, in flight while the one before is used; the first
    // is asked before pdl_wait (weights: nothing an earlier kernel wrote), overlapping that kernel
    uint4 q4n = make_uint4(0, 0, 0, 0);
    float scn = 0.0f, bin = 0.0f;
    auto load = [&](int64_t v) {
        if (row >= n_out || v >= n_vec) return;
        int64_t c0 = v * VALS, g = gs_pow2 ? c0 >> gsh : c0 / gs; // no 64-bit division when gs is 2^k
        q4n = __ldcs(prow + v);
        scn = to_f32(srow[g]), bin = any_bias(brow, g, scn, BITS);
    };
    load(lane);
    pdl_wait();
    pdl_trigger();
    if (row >= n_out) return;
    float acc[CUDA_GEMV_MAX_TOK];
#pragma unroll
    for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++)
        acc[t] = 0.0f;
    for (int64_t v = lane; v < n_vec; v += 32) {
        uint4 q4 = q4n;
        float sc = scn, bi = bin;
        load(v + 32);
        unsigned qw[4] = {q4.x, q4.y, q4.z, q4.w};
        int64_t c0 = v * VALS;
#pragma unroll
        for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++) {
            if (t >= n_tok) break;
            const TX *xr = x + t * sx + c0;
            float dot = 0.0f, sum = 0.0f;
#pragma unroll
            for (int j = 0; j < VALS / 8; j++) { // 8 values of x per step
                float xf[8];
                load8(xr + 8 * j, xf);
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    int idx = 8 * j + k; // value index within the 16 bytes
                    dot = fmaf(qval<BITS>(qw[idx / (32 / BITS)], idx % (32 / BITS)), xf[k], dot);
                    sum += xf[k];
                }
            }
            acc[t] = fmaf(sc, dot, fmaf(bi, sum, acc[t]));
        }
    }
#pragma unroll
    for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++) {
        if (t >= n_tok) break;
        float r = warp_sum(acc[t]);
        if (lane == 0) out[t * so + row] = from_f32<TX>(r + (bias ? bias[row] : 0.0f));
    }
}

// Dense weights of TW: w [n_out][n_in], 16-byte aligned rows, n_in a multiple of 8.
template <typename TX, typename TW>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_dense_kernel(TX *out, int64_t so, const TX *x, int64_t sx, const TW *w, const float *bias, int64_t n_out,
                      int64_t n_in, int n_tok) {
    pdl_wait();
    pdl_trigger();
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= n_out) return;
    const TW *wr = w + row * n_in;
    float acc[CUDA_GEMV_MAX_TOK];
#pragma unroll
    for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++)
        acc[t] = 0.0f;
    for (int64_t c = 8 * lane; c < n_in; c += 8 * 32) {
        float wf[8];
        load8(wr + c, wf);
#pragma unroll
        for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++) {
            if (t >= n_tok) break;
            float xf[8];
            load8(x + t * sx + c, xf);
#pragma unroll
            for (int k = 0; k < 8; k++)
                acc[t] = fmaf(wf[k], xf[k], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++) {
        if (t >= n_tok) break;
        float r = warp_sum(acc[t]);
        if (lane == 0) out[t * so + row] = from_f32<TX>(r + (bias ? bias[row] : 0.0f));
    }
}

// Any weight, any alignment: one element at a time (bits 2, 3, 5, 6; odd strides).
template <typename TX>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_generic_kernel(TX *out, int64_t so, const TX *x, int64_t sx, rill_weight w, int n_tok) {
    pdl_wait();
    pdl_trigger();
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= w.rows) return;
    float acc[CUDA_GEMV_MAX_TOK];
#pragma unroll
    for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++)
        acc[t] = 0.0f;
    for (int64_t c = lane; c < w.cols; c += 32) {
        float wv = weight_at(w, row, c);
#pragma unroll
        for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++) {
            if (t >= n_tok) break;
            acc[t] = fmaf(wv, to_f32(x[t * sx + c]), acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < CUDA_GEMV_MAX_TOK; t++) {
        if (t >= n_tok) break;
        float r = warp_sum(acc[t]);
        if (lane == 0) out[t * so + row] = from_f32<TX>(r + (w.bias ? w.bias[row] : 0.0f));
    }
}

template <typename TX>
static void gemv_typed(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    unsigned grid = (unsigned)((w->rows + GEMV_WARPS - 1) / GEMV_WARPS);
    dim3 block(GEMV_WARPS * 32);
    TX *o = (TX *)out->data;
    const TX *xp = (const TX *)x->data;
    int nt = (int)x->rows;
    bool x_vec = aligned16(xp) && (x->stride * (int64_t)sizeof(TX)) % 16 == 0 && w->cols % 8 == 0;
    bool fused = w->kind == WEIGHT_AFFINE && (w->bits == 4 || w->bits == 8) && w->group_size >= 128 / w->bits &&
                 x_vec && aligned16(w->packed) && (w->cols * w->bits / 32) % 4 == 0;
    if (x_vec && cuda_gemv_wants_qx(w, x->dtype, nt)) {
        cuda_qx q;
        if (!cuda_take_quantized(s, x, &q)) {
            if (!cuda_qx_scratch(s, nt, w->cols, &q, "matmul (gemv)")) return;
            cuda_quantize_x(s, &q, x);
        }
        if (s->status == RILL_OK) cuda_gemv_dp4a(s, out, &q, w);
        return;
    }
    if (fused) {
        const uint4 *pk = (const uint4 *)w->packed;
        if (w->bits == 4)
            CUDA_DISPATCH(s, "matmul", w->dtype, TS,
                          cuda_launch_pdl(s, gemv_affine_kernel<TX, TS, 4>, grid, block, 0, o, out->stride, xp,
                                          x->stride, pk, (const TS *)w->scales, (const TS *)w->biases,
                                          (const float *)w->bias, w->rows, w->cols, w->group_size, nt));
        else
            CUDA_DISPATCH(s, "matmul", w->dtype, TS,
                          cuda_launch_pdl(s, gemv_affine_kernel<TX, TS, 8>, grid, block, 0, o, out->stride, xp,
                                          x->stride, pk, (const TS *)w->scales, (const TS *)w->biases,
                                          (const float *)w->bias, w->rows, w->cols, w->group_size, nt));
    } else if (w->kind == WEIGHT_DENSE && x_vec && aligned16(w->data) && w->cols % 8 == 0) {
        CUDA_DISPATCH(s, "matmul", w->dtype, TW,
                      cuda_launch_pdl(s, gemv_dense_kernel<TX, TW>, grid, block, 0, o, out->stride, xp, x->stride,
                                      (const TW *)w->data, (const float *)w->bias, w->rows, w->cols, nt));
    } else {
        cuda_launch_pdl(s, gemv_generic_kernel<TX>, grid, block, 0, o, out->stride, xp, x->stride, *w, nt);
    }
    cuda_launched(s, "matmul (gemv)");
}

extern "C" void cuda_gemv(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    if (x->rows > CUDA_GEMV_MAX_TOK || x->rows < 1) {
        cuda_reject(s, RILL_EINVAL, "matmul (gemv)", "token count outside 1..CUDA_GEMV_MAX_TOK");
        return;
    }
    CUDA_DISPATCH(s, "matmul", x->dtype, TX, gemv_typed<TX>(s, out, x, w));
}
