// cpu_moe.c: mixture-of-experts ops on the CPU. Routing is a few dozen scores per token and uses the
// reference; the expert matmul gathers, for each expert, the rows routed to it and runs the
// ordinary matmul kernel on them, then scatters the results back to their slots.
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/ref.h"
#include "base/alloc.h"

void cpu_moe_route(rill_stream *s, rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits, const float *bias,
                   const rill_moe_params *p) {
    cpu_enter(s);
    ref_moe_route(idx, weights, logits, bias, p);
}

void cpu_moe_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *experts,
                    const rill_tensor *idx) {
    cpu_enter(s);
    if (out->dtype != DTYPE_F32 || x->dtype != DTYPE_F32) {
        ref_moe_matmul(out, x, experts, idx);
        return;
    }
    int64_t slots = out->rows, k = idx->cols, n_in = x->cols, n_out = out->cols;
    int32_t *rows = rill_malloc((size_t)slots * sizeof(int32_t));
    float *xin = rill_malloc((size_t)(slots * n_in) * sizeof(float));
    float *res = rill_malloc((size_t)(slots * n_out) * sizeof(float));
    if (!rows || !xin || !res) abort(); // scratch of the op's own size
    const int32_t *ids = idx->data;
    int32_t n_experts = 0;
    for (int64_t sl = 0; sl < slots; sl++) {
        int32_t e = ids[(sl / k) * idx->stride + sl % k];
        if (e + 1 > n_experts) n_experts = e + 1;
    }
    for (int32_t e = 0; e < n_experts; e++) {
        int64_t m = 0;
        for (int64_t sl = 0; sl < slots; sl++)
            if (ids[(sl / k) * idx->stride + sl % k] == e) {
                int64_t r = x->rows == slots ? sl : sl / k;
                memcpy(xin + m * n_in, (const float *)x->data + r * x->stride, (size_t)n_in * sizeof(float));
                rows[m++] = (int32_t)sl;
            }
        if (!m) continue;
        rill_tensor xt = rill_tensor_2d(DTYPE_F32, m, n_in, xin), ot = rill_tensor_2d(DTYPE_F32, m, n_out, res);
        cpu_matmul(s, &ot, &xt, &experts[e]);
        for (int64_t i = 0; i < m; i++)
            memcpy((float *)out->data + rows[i] * out->stride, res + i * n_out, (size_t)n_out * sizeof(float));
    }
    rill_free(rows);
    rill_free(xin);
    rill_free(res);
}

void cpu_moe_combine(rill_stream *s, rill_tensor *out, const rill_tensor *y, const rill_tensor *weights) {
    cpu_enter(s);
    if (out->dtype != DTYPE_F32 || y->dtype != DTYPE_F32) {
        ref_moe_combine(out, y, weights);
        return;
    }
    int64_t k = weights->cols;
    for (int64_t t = 0; t < out->rows; t++) {
        float *o = (float *)out->data + t * out->stride;
        for (int64_t j = 0; j < k; j++)
            cpu_axpy(o, ((const float *)weights->data)[t * weights->stride + j],
                     (const float *)y->data + (t * k + j) * y->stride, out->cols);
    }
}
