// cuda_attention.cu: attention for any number of queries: causal + sliding-window mask, GQA,
// softcap. One block per (head, key split, query); each warp walks its keys with an online softmax,
// the block merges its warps, and with several splits (flash-decoding, for long caches and few
// queries) a second kernel merges the splits' (max, sum, acc) partials. Scores and sums in f32.
#include <math.h>

#include "backend/cuda/cuda_common.cuh"

enum { ATT_WARPS = 4, ATT_MAX_DIM = 512, ATT_VPL = ATT_MAX_DIM / 32 };

typedef struct {
    rill_attn_params p;
    const void *q; // [n_q][n_heads * head_dim] of q_dt (stride sq)
    void *out;     // [n_q][n_heads * v_head_dim] of q_dt (stride so)
    rill_dtype q_dt;
    int64_t sq, so, sk, sv, n_k;
    int n_splits, split_len;
    float *part; // [n_q][n_heads][n_splits][v_head_dim + 2]: acc..., max, sum (n_splits > 1)
} att_args;

template <typename TKV>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_kernel(att_args a, const TKV *k, const TKV *v) {
    extern __shared__ float sm[]; // q [head_dim], then per warp [v_head_dim + 2]
    const rill_attn_params &p = a.p;
    int h = blockIdx.x, split = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t qi = blockIdx.z, kh = h / (p.n_heads / p.n_kv_heads);
    float *qs = sm, *ws = sm + p.head_dim;
    for (int e = threadIdx.x; e < p.head_dim; e += blockDim.x)
        qs[e] = load_dt(a.q, a.q_dt, qi * a.sq + (int64_t)h * p.head_dim + e);
    __syncthreads();
    // keys this query sees, within this split
    int64_t q0 = p.mask.q_pos_dev ? (int64_t)*p.mask.q_pos_dev : p.mask.q_pos0;
    int64_t qp = q0 + qi, hi = qp - p.mask.k_pos0, lo = 0;
    if (p.mask.window > 0) lo = hi - p.mask.window + 1;
    int64_t split_len = a.split_len;
    if (p.mask.q_pos_dev) { // k and v may be a whole cache: split only the keys the last query sees
        int64_t n_eff = q0 + gridDim.z - p.mask.k_pos0;
        if (n_eff > a.n_k) n_eff = a.n_k;
        if (n_eff < 1) n_eff = 1;
        split_len = (n_eff + a.n_splits - 1) / a.n_splits;
    }
    int64_t s0 = (int64_t)split * split_len, s1 = s0 + split_len;
    if (lo < s0) lo = s0;
    if (hi > s1 - 1) hi = s1 - 1;
    if (hi > a.n_k - 1) hi = a.n_k - 1;
    float m = -INFINITY, l = 0.0f, acc[ATT_VPL];
#pragma unroll
    for (int i = 0; i < ATT_VPL; i++)
        acc[i] = 0.0f;
    for (int64_t j = lo + warp; j <= hi; j += ATT_WARPS) {
        const TKV *kr = k + j * a.sk + kh * p.head_dim;
        float d = 0.0f;
        for (int e = lane; e < p.head_dim; e += 32)
            d = fmaf(qs[e], to_f32(kr[e]), d);
        d = warp_sum(d) * p.scale;
        if (p.softcap > 0.0f) d = p.softcap * tanhf(d / p.softcap);
        float mn = fmaxf(m, d), corr = __expf(m - mn), pr = __expf(d - mn);
        l = l * corr + pr;
        const TKV *vr = v + j * a.sv + kh * p.v_head_dim;
#pragma unroll
        for (int i = 0; i < ATT_VPL; i++) {
            int e = lane + 32 * i;
            if (e < p.v_head_dim) acc[i] = acc[i] * corr + pr * to_f32(vr[e]);
        }
        m = mn;
    }
    // merge the warps
    float *mine = ws + warp * (p.v_head_dim + 2);
#pragma unroll
    for (int i = 0; i < ATT_VPL; i++)
        if (lane + 32 * i < p.v_head_dim) mine[lane + 32 * i] = acc[i];
    if (lane == 0) mine[p.v_head_dim] = m, mine[p.v_head_dim + 1] = l;
    __syncthreads();
    float mx = -INFINITY;
    for (int w = 0; w < ATT_WARPS; w++)
        mx = fmaxf(mx, ws[w * (p.v_head_dim + 2) + p.v_head_dim]);
    float sum = 0.0f;
    for (int w = 0; w < ATT_WARPS; w++) {
        const float *o = ws + w * (p.v_head_dim + 2);
        if (o[p.v_head_dim + 1] > 0.0f) sum += o[p.v_head_dim + 1] * __expf(o[p.v_head_dim] - mx);
    }
    for (int e = threadIdx.x; e < p.v_head_dim; e += blockDim.x) {
        float r = 0.0f;
        for (int w = 0; w < ATT_WARPS; w++) {
            const float *o = ws + w * (p.v_head_dim + 2);
            if (o[p.v_head_dim + 1] > 0.0f) r += o[e] * __expf(o[p.v_head_dim] - mx);
        }
        if (a.n_splits == 1) {
            store_dt(a.out, a.q_dt, qi * a.so + (int64_t)h * p.v_head_dim + e, sum > 0.0f ? r / sum : 0.0f);
        } else {
            float *pt = a.part + ((qi * p.n_heads + h) * a.n_splits + split) * (p.v_head_dim + 2);
            pt[e] = r;
            if (e == 0) pt[p.v_head_dim] = mx, pt[p.v_head_dim + 1] = sum;
        }
    }
}

// out[qi][h][e] = sum_s acc_s[e] e^(m_s - M) / sum_s l_s e^(m_s - M); grid (n_heads, n_q)
__global__ void attention_merge_kernel(att_args a) {
    int h = blockIdx.x, vd = a.p.v_head_dim;
    int64_t qi = blockIdx.y;
    const float *pt = a.part + (qi * a.p.n_heads + h) * a.n_splits * (vd + 2);
    float mx = -INFINITY, sum = 0.0f;
    for (int sp = 0; sp < a.n_splits; sp++)
        if (pt[sp * (vd + 2) + vd + 1] > 0.0f) mx = fmaxf(mx, pt[sp * (vd + 2) + vd]);
    for (int sp = 0; sp < a.n_splits; sp++)
        if (pt[sp * (vd + 2) + vd + 1] > 0.0f) sum += pt[sp * (vd + 2) + vd + 1] * __expf(pt[sp * (vd + 2) + vd] - mx);
    for (int e = threadIdx.x; e < vd; e += blockDim.x) {
        float r = 0.0f;
        for (int sp = 0; sp < a.n_splits; sp++)
            if (pt[sp * (vd + 2) + vd + 1] > 0.0f) r += pt[sp * (vd + 2) + e] * __expf(pt[sp * (vd + 2) + vd] - mx);
        store_dt(a.out, a.q_dt, qi * a.so + (int64_t)h * vd + e, sum > 0.0f ? r / sum : 0.0f);
    }
}

extern "C" void cuda_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                               const rill_tensor *v, const rill_attn_params *p) {
    const char *op = "attention";
    if (p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads || p->head_dim > ATT_MAX_DIM || p->v_head_dim > ATT_MAX_DIM ||
        p->head_dim <= 0 || p->v_head_dim <= 0) {
        cuda_reject(s, RILL_EUNSUPPORTED, op, "heads must divide evenly and head dims lie in 1..512");
        return;
    }
    if (q->dtype != out->dtype || k->dtype != v->dtype || k->rows != v->rows || q->rows != out->rows ||
        q->cols < (int64_t)p->n_heads * p->head_dim || out->cols < (int64_t)p->n_heads * p->v_head_dim ||
        k->cols < (int64_t)p->n_kv_heads * p->head_dim || v->cols < (int64_t)p->n_kv_heads * p->v_head_dim) {
        cuda_reject(s, RILL_EINVAL, op, "q, k, v and out do not fit the head counts and dims");
        return;
    }
    if (q->rows == 0) return;
    if (q->rows > 65535 || p->n_heads > 65535) {
        cuda_reject(s, RILL_ERANGE, op, "more than 65535 queries or heads in one call");
        return;
    }
    att_args a = {*p, q->data, out->data, q->dtype, q->stride, out->stride, k->stride, v->stride, k->rows, 1, 0, NULL};
    // split the keys when queries x heads alone leave the GPU idle (decode)
    int64_t blocks = q->rows * p->n_heads, want = 1;
    // Each warp walks its keys one dependent load after another (latency-bound), so short splits
    // (64 keys) and many blocks in flight pay; past 32 splits the merge and the GQA re-reads cost
    // more than they save (H100, 16k keys: 32 splits 174 us, 128 splits 218 us).
    if (blocks < 264 && k->rows > 64) {
        want = (k->rows + 63) / 64;
        int64_t fill = (4096 + blocks - 1) / blocks;
        if (want > fill) want = fill;
        if (want > 32) want = 32;
    }
    a.split_len = (int)((k->rows + want - 1) / want);
    if (a.split_len < 1) a.split_len = 1;
    a.n_splits = (int)((k->rows + a.split_len - 1) / a.split_len);
    if (a.n_splits < 1) a.n_splits = 1;
    if (a.n_splits > 1) {
        size_t bytes = (size_t)(q->rows * p->n_heads * a.n_splits) * (size_t)(p->v_head_dim + 2) * sizeof(float);
        a.part = (float *)cuda_scratch(s, bytes, op);
        if (!a.part) return;
    }
    dim3 grid((unsigned)p->n_heads, (unsigned)a.n_splits, (unsigned)q->rows);
    size_t smem = (size_t)(p->head_dim + ATT_WARPS * (p->v_head_dim + 2)) * sizeof(float);
    CUDA_DISPATCH(s, op, k->dtype, TKV,
                  attention_kernel<TKV>
                  <<<grid, ATT_WARPS * 32, smem, s->cs>>>(a, (const TKV *)k->data, (const TKV *)v->data));
    if (!cuda_launched(s, op) || a.n_splits == 1) return;
    attention_merge_kernel<<<dim3((unsigned)p->n_heads, (unsigned)q->rows), 128, 0, s->cs>>>(a);
    cuda_launched(s, "attention (merge)");
}
