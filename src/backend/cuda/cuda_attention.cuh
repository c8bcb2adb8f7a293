// cuda_attention.cuh: what the attention kernels of cuda_attention.cu and cuda_attention_decode.cu
// share: the launch arguments and split plan (att_args), the keys a query sees within its key
// split, the end of a decode block (its warps' partial softmax states merged, then the output or the
// split's partial written), and the launch of the kernel that merges the key splits.
#pragma once
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

typedef struct {
    rill_attn_params p;
    const void *q; // [n_q][n_heads * head_dim] of q_dt (stride sq)
    void *out;     // [n_q][n_heads * v_head_dim] of q_dt (stride so)
    rill_dtype q_dt;
    // The tensor-core decode kernel only: its n_splits blocks of one (kv head, query) are a thread
    // block cluster, which merges the splits through distributed shared memory (no part, no merge
    // launch). (Beside q_dt: att_args has no room for padding.)
    int cluster;
    int64_t sq, so, n_k;
    int n_splits, split_len;
    float *part; // [n_q][n_heads][n_splits][v_head_dim + 2]: acc..., max, sum (n_splits > 1, not cluster)
} att_args;
// Every attention kernel takes att_args by value. At 184 bytes nvcc compiled the decode kernel
// differently (its merge loops no longer doubled) and the decode lost 3-7% (bench/RESULTS.md,
// 2026-11-27 08:03Z): anything more a kernel needs goes in an argument of its own.
static_assert(sizeof(att_args) <= 128, "att_args: at most 128 bytes");

// The first query's position: the device counter's, or the host's.
__device__ __forceinline__ int64_t first_query_pos(const att_args &a) {
    return a.p.mask.q_pos_dev ? (int64_t)*a.p.mask.q_pos_dev : a.p.mask.q_pos0;
}

// Keys [lo, hi] that query qi sees within key split `split` (causal end, window start), the first
// query at position q0 (first_query_pos). With the query position on the device, k and v may be a
// whole cache: only the keys the last query sees are split (gridDim.z queries).
__device__ __forceinline__ void visible_keys_at(const att_args &a, int64_t q0, int64_t qi, int split, int64_t *lo_out,
                                                int64_t *hi_out) {
    const rill_attn_params &p = a.p;
    int64_t hi = q0 + qi - p.mask.k_pos0, lo = 0;
    if (p.mask.window > 0) lo = hi - p.mask.window + 1;
    int64_t split_len = a.split_len;
    if (p.mask.q_pos_dev) {
        int64_t n_eff = q0 + gridDim.z - p.mask.k_pos0;
        if (n_eff > a.n_k) n_eff = a.n_k;
        if (n_eff < 1) n_eff = 1;
        split_len = (n_eff + a.n_splits - 1) / a.n_splits;
    }
    int64_t s0 = (int64_t)split * split_len;
    if (lo < s0) lo = s0;
    if (hi > s0 + split_len - 1) hi = s0 + split_len - 1;
    if (hi > a.n_k - 1) hi = a.n_k - 1;
    *lo_out = lo;
    *hi_out = hi;
}

__device__ __forceinline__ void visible_keys(const att_args &a, int64_t qi, int split, int64_t *lo_out,
                                             int64_t *hi_out) {
    visible_keys_at(a, first_query_pos(a), qi, split, lo_out, hi_out);
}

// The merge of W warps' softmax states of head g, ws [W][G][vd + 2] each (acc [vd], max, sum; sum
// 0: the warp saw no key): the largest max of the warps that saw keys, and the sum rescaled to it.
template <int W, int G>
__device__ __forceinline__ void merge_warps_head(const float *ws, int g, int vd, float *mx_out, float *sum_out) {
    float mx = -INFINITY, sum = 0.0f;
    for (int w = 0; w < W; w++) {
        const float *o = ws + (w * G + g) * (vd + 2);
        if (o[vd + 1] > 0.0f) mx = fmaxf(mx, o[vd]);
    }
    for (int w = 0; w < W; w++) {
        const float *o = ws + (w * G + g) * (vd + 2);
        if (o[vd + 1] > 0.0f) sum += o[vd + 1] * __expf(o[vd] - mx);
    }
    *mx_out = mx, *sum_out = sum;
}

// Element e of head g's acc over the W warps, rescaled to mx (merge_warps_head's).
template <int W, int G>
__device__ __forceinline__ float merge_warps_elem(const float *ws, int g, int vd, float mx, int e) {
    float r = 0.0f;
    for (int w = 0; w < W; w++) {
        const float *o = ws + (w * G + g) * (vd + 2);
        if (o[vd + 1] > 0.0f) r += o[e] * __expf(o[vd] - mx);
    }
    return r;
}

// The end of a decode block of W warps serving the G query heads of kv head kh: ws [W][G][vd + 2]
// holds each warp's (acc[vd], max, sum) per head (sum 0: the warp saw no key); they are merged, then
// written as the output (one split) or as this split's partial. Call after a __syncthreads().
template <int W, int G>
__device__ __forceinline__ void decode_block_store(const att_args &a, const float *ws, int kh, int64_t qi, int split) {
    const rill_attn_params &p = a.p;
    int vd = p.v_head_dim;
    for (int g = 0; g < G; g++) {
        int h = kh * G + g;
        float mx, sum;
        merge_warps_head<W, G>(ws, g, vd, &mx, &sum);
        for (int e = threadIdx.x; e < vd; e += blockDim.x) {
            float r = merge_warps_elem<W, G>(ws, g, vd, mx, e);
            if (a.n_splits == 1) {
                store_dt(a.out, a.q_dt, qi * a.so + (int64_t)h * vd + e, sum > 0.0f ? r / sum : 0.0f);
            } else {
                float *pt = a.part + ((qi * p.n_heads + h) * a.n_splits + split) * (vd + 2);
                pt[e] = r;
                if (e == 0) pt[vd] = mx, pt[vd + 1] = sum;
            }
        }
    }
}

// Merges a.n_splits > 1 key splits' partials into a.out for n_q queries (cuda_attention.cu).
// qo (or NULL): also store one query's output quantized there (n_q 1, 16-bit out, v_head_dim a
// multiple of 32). True where it did so (not with RILL_CUDA_ATTN_MERGE=serial).
bool attention_merge(rill_stream *s, const att_args &a, int64_t n_q, bool pdl, const cuda_qx *qo = NULL);

// The decode attention on the tensor cores (cuda_attention_decode.cu): whether it takes these q, K
// and V (f16/bf16 rows of one dtype, K and V 16-byte aligned; head dims 64 or 128, v_head_dim =
// head_dim; GQA groups 1 to 8), and its launch over a's split plan (then attention_merge when a
// has several splits).
bool attention_decode_mma_fits(const rill_attn_params *p, const rill_tensor *q, const rill_tensor *k,
                               const rill_tensor *v);
// Splits of the tensor-core decode kernel for n_k keys (65 to 2,048) when they merge as one cluster:
// a power of two, 2 to 8 (the portable cluster size), of at most 256 keys each; else 0, the split
// plan of mma_splits and attention_merge. Clusters of 16 lost to that plan (H100, SmolLM2 at 1,040
// keys: 1,602 vs 1,665 tok/s); 8 splits of 130 keys won (1,740). RILL_CUDA_ATTN_CLUSTER=N sets the
// keys per split, at most (0: no cluster, to measure); under RILL_CUDA_ATTN_SPLIT the caller does not ask.
int attention_decode_cluster(int64_t n_k);
// k_new, v_new (or NULL): one query's newest key and value, which the kernel reads for the cache row
// at the device position and writes into it (attention_append). out: a.out's tensor; one query with
// a cluster merge also leaves out quantized for the GEMV after it (s->qx_ready).
void attention_decode_mma(rill_stream *s, const att_args &a, int64_t n_q, const rill_tensor *out, const rill_tensor *k,
                          const rill_tensor *v, const rill_tensor *k_new, const rill_tensor *v_new, bool pdl);
