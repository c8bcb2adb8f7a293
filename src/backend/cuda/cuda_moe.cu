// cuda_moe.cu: mixture-of-experts ops on the GPU. moe_route runs one thread per token (a few
// dozen to a few hundred scores, in double as the reference does, so the chosen ids match it);
// moe_matmul reads the routes back and runs one GEMV per (token, slot) with its expert's weight
// (it syncs the stream, so a MoE step cannot be captured as a graph); moe_combine is elementwise.
#include <math.h>
#include <stdlib.h>

#include "backend/cuda/cuda_common.cuh"

enum { MOE_MAX_E = 512, MOE_MAX_G = 64 };

// idx [n][top_k] I32, w [n][top_k] F32 from logits [n][E] of TL (+ bias [E] f32 or NULL)
template <typename TL>
__global__ void moe_route_kernel(int32_t *idx, int64_t si, float *w, int64_t sw, const TL *logits, int64_t sl,
                                 const float *bias, rill_moe_params p, int64_t n) {
    int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (t >= n) return;
    int E = p.n_experts, G = p.n_group > 1 ? p.n_group : 1, per = E / G;
    double sc[MOE_MAX_E], choice[MOE_MAX_E], gs[MOE_MAX_G];
    bool taken[MOE_MAX_E], gkeep[MOE_MAX_G];
    const TL *lr = logits + t * sl;
    double mx = -INFINITY, sum = 0;
    for (int e = 0; e < E; e++)
        mx = fmax(mx, (double)to_f32(lr[e]));
    for (int e = 0; e < E; e++) {
        double l = (double)to_f32(lr[e]);
        sc[e] = p.softmax ? exp(l - mx) : 1.0 / (1.0 + exp(-l));
        sum += sc[e];
    }
    for (int e = 0; e < E; e++) {
        if (p.softmax) sc[e] /= sum;
        choice[e] = sc[e] + (bias ? (double)bias[e] : 0.0);
    }
    for (int g = 0; g < G; g++) {
        double a = -INFINITY, b = -INFINITY;
        for (int e = g * per; e < (g + 1) * per; e++) {
            if (choice[e] > a)
                b = a, a = choice[e];
            else if (choice[e] > b)
                b = choice[e];
        }
        gs[g] = per > 1 ? a + b : a;
        gkeep[g] = G == 1;
    }
    if (G > 1) {
        bool gt[MOE_MAX_G];
        for (int g = 0; g < G; g++)
            gt[g] = false;
        for (int k = 0; k < p.topk_group; k++) {
            int best = -1;
            for (int g = 0; g < G; g++)
                if (!gt[g] && (best < 0 || gs[g] > gs[best])) best = g;
            if (best >= 0) gt[best] = gkeep[best] = true;
        }
    }
    for (int e = 0; e < E; e++)
        taken[e] = !gkeep[e / per];
    double wsum = 0;
    int32_t *ids = idx + t * si;
    for (int k = 0; k < p.top_k; k++) {
        int best = -1;
        for (int e = 0; e < E; e++)
            if (!taken[e] && (best < 0 || choice[e] > choice[best])) best = e;
        if (best >= 0) taken[best] = true;
        ids[k] = best;
        wsum += best >= 0 ? sc[best] : 0.0;
    }
    for (int k = 0; k < p.top_k; k++) {
        double s = ids[k] >= 0 ? sc[ids[k]] : 0.0;
        w[t * sw + k] = (float)((p.norm ? s / (wsum + 1e-20) : s) * p.scale);
    }
}

extern "C" void cuda_moe_route(rill_stream *s, rill_tensor *idx, rill_tensor *weights, const rill_tensor *logits,
                               const float *bias, const rill_moe_params *p) {
    const char *op = "moe_route";
    int G = p->n_group > 1 ? p->n_group : 1;
    if (p->n_experts < 1 || p->n_experts > MOE_MAX_E || G > MOE_MAX_G || p->n_experts % G || p->top_k < 1 ||
        p->top_k > p->n_experts) {
        cuda_reject(s, RILL_EUNSUPPORTED, op, "experts must number 1..512 in at most 64 equal groups");
        return;
    }
    if (idx->dtype != DTYPE_I32 || weights->dtype != DTYPE_F32 || idx->rows != logits->rows ||
        weights->rows != logits->rows || idx->cols < p->top_k || weights->cols < p->top_k ||
        logits->cols < p->n_experts) {
        cuda_reject(s, RILL_EINVAL, op, "idx, weights and logits do not fit");
        return;
    }
    if (logits->rows == 0) return;
    unsigned grid = cuda_blocks(logits->rows, 32);
    CUDA_DISPATCH(s, op, logits->dtype, TL,
                  moe_route_kernel<TL><<<grid, 32, 0, s->cs>>>((int32_t *)idx->data, idx->stride,
                                                              (float *)weights->data, weights->stride,
                                                              (const TL *)logits->data, logits->stride, bias, *p,
                                                              logits->rows));
    cuda_launched(s, op);
}

// Row r of t, as a one-row view (rill_tensor_rows calls the C dtype_size, which C++ cannot link).
static rill_tensor row_of(const rill_tensor *t, int64_t r) {
    rill_tensor v = *t;
    size_t es = t->dtype == DTYPE_F32 || t->dtype == DTYPE_I32 ? 4 : 2;
    v.rows = 1;
    v.data = (char *)t->data + (size_t)(r * t->stride) * es;
    return v;
}

extern "C" void cuda_moe_matmul(rill_stream *s, rill_tensor *out, const rill_tensor *x, const rill_weight *experts,
                                const rill_tensor *idx) {
    const char *op = "moe_matmul";
    int64_t k = idx->cols, n = idx->rows;
    if (idx->dtype != DTYPE_I32 || out->rows != n * k || (x->rows != n && x->rows != n * k)) {
        cuda_reject(s, RILL_EINVAL, op, "out, x and idx do not fit");
        return;
    }
    if (out->rows == 0) return;
    // the routes, on the host (each slot's expert decides which weight its GEMV reads)
    int32_t *ids = (int32_t *)malloc((size_t)(n * k) * sizeof(int32_t));
    if (!ids) {
        cuda_reject(s, RILL_ENOMEM, op, "no host memory for the routes");
        return;
    }
    bool ok = cuda_ok(s, cudaMemcpy2DAsync(ids, (size_t)k * 4, idx->data, (size_t)idx->stride * 4, (size_t)k * 4,
                                           (size_t)n, cudaMemcpyDeviceToHost, s->cs),
                      op) &&
              cuda_ok(s, cudaStreamSynchronize(s->cs), op);
    for (int64_t slot = 0; ok && slot < n * k; slot++) {
        int32_t e = ids[slot];
        if (e < 0) {
            cuda_reject(s, RILL_EINVAL, op, "a route names no expert");
            break;
        }
        rill_tensor xr = row_of(x, x->rows == out->rows ? slot : slot / k), o = row_of(out, slot);
        cuda_matmul(s, &o, &xr, &experts[e]);
    }
    free(ids);
}

// out[t][c] += sum_j w[t][j] * y[t * k + j][c]
template <typename T>
__global__ void moe_combine_kernel(T *out, int64_t so, const T *y, int64_t sy, const float *w, int64_t sw, int64_t n,
                                   int64_t d, int64_t k) {
    int64_t total = n * d;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / d, c = i % d;
        float acc = to_f32(out[t * so + c]);
        for (int64_t j = 0; j < k; j++)
            acc += w[t * sw + j] * to_f32(y[(t * k + j) * sy + c]);
        out[t * so + c] = from_f32<T>(acc);
    }
}

extern "C" void cuda_moe_combine(rill_stream *s, rill_tensor *out, const rill_tensor *y, const rill_tensor *weights) {
    const char *op = "moe_combine";
    int64_t k = weights->cols;
    if (weights->dtype != DTYPE_F32 || y->dtype != out->dtype || weights->rows != out->rows ||
        y->rows != out->rows * k || y->cols != out->cols) {
        cuda_reject(s, RILL_EINVAL, op, "out, y and weights do not fit");
        return;
    }
    if (out->rows * out->cols == 0) return;
    unsigned grid = cuda_blocks(out->rows * out->cols, 256);
    CUDA_DISPATCH(s, op, out->dtype, T,
                  moe_combine_kernel<T><<<grid, 256, 0, s->cs>>>((T *)out->data, out->stride, (const T *)y->data,
                                                                y->stride, (const float *)weights->data,
                                                                weights->stride, out->rows, out->cols, k));
    cuda_launched(s, op);
}
