// cuda_matmul_fused.c: the norm (norm_matmul) and act_mul (act_matmul) ops with the matmul after
// them. For a decode step on 4-bit weights the op before writes x already quantized for the GEMV
// (cuda_qx), so the GEMV's own quantization launch goes: the norm quantizes the row it has just
// normed, and act(gate) * up is quantized where it is computed, without being stored. Otherwise, or
// with RILL_CUDA_FUSE_QX=0 (to measure), the two ops run apart.
#ifdef RILL_CUDA
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "base/env_switch.h"

static bool fuse_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_CUDA_FUSE_QX", &on);
}

// out [n][w.rows] = x [n][w.cols] . W^T, with x in the activation dtype, taken by the 4-bit GEMV.
static bool gemv_q4_takes(const rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    return fuse_allowed() && x->cols == w->cols && out->cols == w->rows && out->rows == x->rows &&
           out->dtype == x->dtype && cuda_gemv_q4_fits(w, x->dtype, x->rows);
}

void cuda_norm_matmul(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                      const float *norm_w, float eps, bool add_one, const rill_weight *w) {
    if (gemv_q4_takes(out, x, w)) {
        cuda_qx q;
        if (!cuda_qx_scratch(s, x->rows, x->cols, &q, "norm_matmul")) return;
        if (cuda_norm_quantize(s, h, x, r, norm_w, eps, add_one, &q)) {
            if (s->status == RILL_OK) cuda_gemv_q4(s, out, &q, w);
            return;
        }
    }
    if (r)
        cuda_add_rmsnorm(s, h, x, r, norm_w, eps, add_one);
    else
        cuda_rmsnorm(s, h, x, norm_w, eps, add_one);
    if (s->status == RILL_OK) cuda_matmul(s, out, h, w);
}

// RILL_CUDA_PAIR_ACT=0 declines every norm_matmul_act, so the decoder runs norm_matmul and
// act_matmul (to measure).
static bool pair_act_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_CUDA_PAIR_ACT", &on);
}

// One token on 4-bit weights: the norm writes x quantized, and the GEMV's warps each take a gate row
// and its up row and write act(gate) * up (gate and up are never stored). Anything else: false.
bool cuda_norm_matmul_act(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                          const float *norm_w, float eps, bool add_one, const rill_weight *w, rill_act act) {
    rill_tensor gu = {x->dtype, 1, w->rows, w->rows, NULL}; // (the shape the GEMV would write)
    if (!(x->rows == 1 && pair_act_allowed() && w->rows % 2 == 0 && out->rows == 1 && out->cols == w->rows / 2 &&
          out->dtype == x->dtype && gemv_q4_takes(&gu, x, w)))
        return false;
    cuda_qx q;
    if (!cuda_qx_scratch(s, 1, x->cols, &q, "norm_matmul_act")) return true; // (the stream holds the error)
    if (!cuda_norm_quantize(s, h, x, r, norm_w, eps, add_one, &q)) return false;
    if (s->status == RILL_OK) cuda_gemv_q4_act(s, out, &q, w, act);
    return true;
}

void cuda_act_matmul(rill_stream *s, rill_tensor *out, rill_tensor *gate, const rill_tensor *up, rill_act act,
                     const rill_weight *w) {
    if (gemv_q4_takes(out, gate, w) && up->rows == gate->rows && up->cols == gate->cols && up->dtype == gate->dtype) {
        cuda_qx q;
        if (!cuda_qx_scratch(s, gate->rows, gate->cols, &q, "act_matmul")) return;
        cuda_quantize_act(s, &q, gate, up, act);
        if (s->status == RILL_OK) cuda_gemv_q4(s, out, &q, w);
        return;
    }
    cuda_act_mul(s, gate, gate, up, act);
    if (s->status == RILL_OK) cuda_matmul(s, out, gate, w);
}
#endif
