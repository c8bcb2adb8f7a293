// cuda_attention_gemm.cu: attention for many queries (prefill) on the tensor cores, through cuBLAS.
// Per chunk of queries: S = Q K^T for every head (strided batched GEMMs over the kv heads, one call
// per place in the GQA group, so each query head meets its kv head's keys in place), a masked
// softmax kernel that writes P = softmax(mask(scale * S)) normalized in the activation dtype, then
// O = P V straight into the output rows. S is f32; P is f16/bf16 as flash attention keeps it. Only
// the keys some query of the chunk sees take part (causal end, sliding-window start). Chunks are
// sized so that S and P stay under ATT_GEMM_SCRATCH bytes. Since the flash kernel
// (cuda_attention_prefill.cu) this path takes the head dims it does not (not 64 or 128), or every
// prefill with RILL_CUDA_PREFILL_ATTN=gemm.
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

enum { ATT_GEMM_SCRATCH = 384 << 20, SOFTMAX_THREADS = 256 };

__device__ __forceinline__ float block_reduce(float v, bool is_max, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads(); // red is reused from the previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < SOFTMAX_THREADS / 32; w++)
        r = is_max ? fmaxf(r, red[w]) : r + red[w];
    return r;
}

// Row (h, i) of S [n_heads][nc][L] -> P (same layout, T): query position qp0 + i; column c is key
// index k_lo + c (position k_pos0 + k_lo + c). Keys the mask hides get 0; a row that sees none is 0.
template <typename T>
__global__ void __launch_bounds__(SOFTMAX_THREADS)
    attn_softmax_kernel(const float *S, T *P, int64_t L, int nc, int64_t qp0, int64_t k_lo, rill_attn_params p) {
    __shared__ float red[SOFTMAX_THREADS / 32];
    int64_t row = (int64_t)blockIdx.y * nc + blockIdx.x;
    const float *sr = S + row * L;
    T *pr = P + row * L;
    int64_t qpos = qp0 + blockIdx.x, kpos0 = p.mask.k_pos0 + k_lo;
    float mx = -INFINITY;
    for (int64_t c = threadIdx.x; c < L; c += SOFTMAX_THREADS) {
        int64_t kp = kpos0 + c;
        if (kp > qpos || (p.mask.window > 0 && qpos - kp >= p.mask.window)) continue;
        float x = sr[c] * p.scale;
        if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
        mx = fmaxf(mx, x);
    }
    mx = block_reduce(mx, true, red);
    float sum = 0.0f;
    for (int64_t c = threadIdx.x; c < L; c += SOFTMAX_THREADS) {
        int64_t kp = kpos0 + c;
        if (kp > qpos || (p.mask.window > 0 && qpos - kp >= p.mask.window)) continue;
        float x = sr[c] * p.scale;
        if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
        sum += __expf(x - mx);
    }
    sum = block_reduce(sum, false, red);
    float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t c = threadIdx.x; c < L; c += SOFTMAX_THREADS) {
        int64_t kp = kpos0 + c;
        float e = 0.0f;
        if (kp <= qpos && !(p.mask.window > 0 && qpos - kp >= p.mask.window)) {
            float x = sr[c] * p.scale;
            if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
            e = __expf(x - mx) * inv;
        }
        pr[c] = from_f32<T>(e);
    }
}

static bool blas_ok(rill_stream *s, cublasStatus_t st) {
    if (st == CUBLAS_STATUS_SUCCESS) return true;
    cuda_reject(s, RILL_EIO, "attention (cuBLAS)", cublasGetStatusString(st));
    return false;
}

// Takes the call when it fits this path (more than 8 queries, positions on the host, q, k, v and out
// all f16 or all bf16) and returns true; false leaves it to the caller's kernel.
extern "C" bool cuda_attention_gemm(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                                    const rill_tensor *v, const rill_attn_params *p) {
    rill_dtype dt = q->dtype;
    if (q->rows <= 8 || p->mask.q_pos_dev || (dt != DTYPE_F16 && dt != DTYPE_BF16) || k->dtype != dt ||
        v->dtype != dt || out->dtype != dt || k->rows < 1)
        return false;
    int64_t n_q = q->rows, n_k = k->rows, H = p->n_heads, KV = p->n_kv_heads, G = H / KV;
    int64_t hd = p->head_dim, vd = p->v_head_dim;
    int64_t last_key = p->mask.q_pos0 + n_q - 1 - p->mask.k_pos0; // the last query's newest key
    if (last_key < 0) return false;                               // (no query sees a key: the kernel writes zeros)
    int64_t nc = ATT_GEMM_SCRATCH / (6 * H * n_k);
    if (nc < 1) nc = 1;
    if (nc > n_q) nc = n_q;
    char *buf = (char *)cuda_scratch(s, (size_t)(H * nc * n_k) * 6, "attention (prefill)");
    if (!buf) return true;
    float *S = (float *)buf;
    void *P = buf + (size_t)(H * nc * n_k) * 4;
    cudaDataType t = dt == DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
    size_t es = 2;
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < n_q; r0 += nc) {
        int64_t rows = n_q - r0 < nc ? n_q - r0 : nc, qp0 = p->mask.q_pos0 + r0;
        int64_t hi = qp0 + rows - 1 - p->mask.k_pos0, lo = 0;
        if (hi > n_k - 1) hi = n_k - 1;
        if (p->mask.window > 0) lo = qp0 - p->mask.k_pos0 - p->mask.window + 1;
        if (lo < 0) lo = 0;
        if (hi < lo) { // no query of this chunk sees a key: P = 0 gives zeros
            hi = lo < n_k ? lo : n_k - 1;
            lo = hi;
        }
        int64_t L = hi - lo + 1;
        for (int64_t g = 0; g < G; g++) { // S[h] = Q[h] K[kh]^T for h = kh * G + g, batched over kh
            const char *A = (const char *)k->data + (size_t)(lo * k->stride) * es;
            const char *B = (const char *)q->data + (size_t)(r0 * q->stride + g * hd) * es;
            if (!blas_ok(s, cublasGemmStridedBatchedEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)L, (int)rows, (int)hd,
                                                       &one, A, t, (int)k->stride, (long long)hd, B, t, (int)q->stride,
                                                       (long long)(G * hd), &zero, S + g * rows * L, CUDA_R_32F, (int)L,
                                                       (long long)(G * rows * L), (int)KV, CUBLAS_COMPUTE_32F,
                                                       CUBLAS_GEMM_DEFAULT)))
                return true;
        }
        dim3 grid((unsigned)rows, (unsigned)H);
        if (dt == DTYPE_F16)
            attn_softmax_kernel<f16><<<grid, SOFTMAX_THREADS, 0, s->cs>>>(S, (f16 *)P, L, (int)rows, qp0, lo, *p);
        else
            attn_softmax_kernel<bf16><<<grid, SOFTMAX_THREADS, 0, s->cs>>>(S, (bf16 *)P, L, (int)rows, qp0, lo, *p);
        if (!cuda_launched(s, "attention (softmax)")) return true;
        for (int64_t g = 0; g < G; g++) { // O[h] = P[h] V[kh], into the output rows
            const char *A = (const char *)v->data + (size_t)(lo * v->stride) * es;
            const char *B = (const char *)P + (size_t)(g * rows * L) * es;
            char *C = (char *)out->data + (size_t)(r0 * out->stride + g * vd) * es;
            if (!blas_ok(s, cublasGemmStridedBatchedEx(s->blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)vd, (int)rows, (int)L,
                                                       &one, A, t, (int)v->stride, (long long)vd, B, t, (int)L,
                                                       (long long)(G * rows * L), &zero, C, t, (int)out->stride,
                                                       (long long)(G * vd), (int)KV, CUBLAS_COMPUTE_32F,
                                                       CUBLAS_GEMM_DEFAULT)))
                return true;
        }
    }
    return true;
}
