// cuda_attention.cu: attention for any number of queries: causal + sliding-window mask, GQA,
// softcap. One block per (head, key split, query); each warp walks its keys with an online softmax,
// the block merges its warps, and with several splits (flash-decoding, for long caches and few
// queries) a second kernel merges the splits' (max, sum, acc) partials. Scores and sums in f32.
// Keys and values come through a loader: plain rows of a dtype, or a quantized cache (rill_qkv,
// MLX affine groups) read element by element from its packed words, never dequantized whole;
// kv_quantize fills such a cache bit for bit as the reference does. Decode over long f16/bf16
// caches goes to the tensor-core kernel of cuda_attention_decode.cu where its shapes allow.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_attention.cuh"

enum { ATT_WARPS = 4, ATT_MAX_DIM = 512, ATT_VPL = ATT_MAX_DIM / 32 };

// RILL_CUDA_ATTENTION=warp keeps decode on the one-key-per-warp kernel (to measure one against the other).
static bool getenv_is(const char *name, const char *value) {
    const char *e = getenv(name);
    return e && !strcmp(e, value);
}

// The attention kernels are programmatic dependent launches unless RILL_CUDA_PDL_ATTENTION=0. (They
// were plain launches until 2026-11-26 21:20Z: the CUDA-core kernel of that time lost at 16k keys
// with PDL, 229 -> 212 tok/s. With the tensor-core decode kernel, H200, alternated: SmolLM2 1,604
// -> 1,638 tok/s, Llama-3-8B short 463.6 -> 466.1, 16k 353.3 -> 352.4.)
static bool attention_pdl(void) { return cuda_pdl_on() && !getenv_is("RILL_CUDA_PDL_ATTENTION", "0"); }

// Decode kernels for long caches: the tensor-core one (cuda_attention_decode.cu) or the CUDA-core one
// below (RILL_CUDA_ATTENTION=cores).
enum { DECODE_CORES = 1, DECODE_MMA = 2 };

// Splits per (kv head, query) of the tensor-core decode kernel: one split (no merge) for caches of up
// to 512 keys (H200, Llama-3-8B decode at 272 keys: 411 tok/s vs 410 with 5 splits; since then up
// to 2,048 keys take attention_decode_cluster's plan where it applies), else at most 2 of its blocks
// per SM in splits of at least 64 keys (H200, 32/8 heads, 32k keys: 51 us with splits of 256 keys,
// two waves; 43 us with 512, one wave). RILL_CUDA_ATTN_SPLIT=N (64..8192) asks for splits of N keys.
static int64_t mma_splits(int64_t n_k, int64_t groups) {
    static int sms = 0;
    if (!sms) {
        int dev = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
            sms = 132;
    }
    const char *e = getenv("RILL_CUDA_ATTN_SPLIT");
    int per = e ? atoi(e) : 0;
    if (per >= 64 && per <= 8192) return (n_k + per - 1) / per;
    if (n_k <= 512) return 1;
    // at most 2 blocks per SM: at 16k keys (Llama-3-8B, H100) 33 splits of ~500 keys ran 316.6 tok/s
    // against 306.9 with 66 of ~250 (4 per SM) and 288.9 with 128 of 128
    int64_t want = (n_k + 63) / 64, wave = 2 * (int64_t)sms / groups;
    return want < wave ? want : wave > 1 ? wave : 1;
}

// Decode (at most 8 queries) takes the tensor-core kernel at any cache length where its shapes fit;
// the CUDA-core GQA kernel only over caches of 2,048 keys or more (below that it lost to the
// warp-per-key kernel: H200, 272 keys, Llama-3-8B decode 15% slower), or RILL_CUDA_ATTN_MIN_KEYS
// for both (the tensor-core kernel from 2,048 keys: Llama-3-8B short-context decode 398 tok/s
// against 409-411 from 0).
static int64_t decode_min_keys(bool mma) {
    const char *e = getenv("RILL_CUDA_ATTN_MIN_KEYS");
    return e ? atoll(e) : mma ? 0 : 2048;
}

// Keys or values stored as plain rows: [n_k][stride] of T.
template <typename T> struct plain_kv {
    const T *p;
    int64_t stride;
    __device__ __forceinline__ float operator()(int64_t row, int64_t col) const {
        return to_f32(p[row * stride + col]);
    }
};

// Keys or values of a quantized cache: [n_k][cols * BITS / 32] words, groups of gs with scales and
// biases of TS: value = scale * q + bias.
template <int BITS, typename TS> struct quant_kv {
    const uint32_t *packed;
    const TS *scales, *biases;
    int64_t words, groups; // per row
    int gshift;            // log2 of the group size (32, 64 or 128)
    __device__ __forceinline__ float operator()(int64_t row, int64_t col) const {
        unsigned c = (unsigned)col; // a column within one row: shifts, no 64-bit division
        uint32_t w = packed[row * words + (c * BITS >> 5)];
        float q = (float)((w >> (c * BITS & 31)) & ((1u << BITS) - 1u));
        int64_t g = row * groups + (c >> gshift);
        return fmaf(to_f32(scales[g]), q, to_f32(biases[g]));
    }
};

template <typename KV> __global__ void __launch_bounds__(ATT_WARPS * 32) attention_kernel(att_args a, KV k, KV v) {
    extern __shared__ float sm[]; // q [head_dim], then per warp [v_head_dim + 2]
    pdl_wait();
    pdl_trigger();
    const rill_attn_params &p = a.p;
    int h = blockIdx.x, split = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t qi = blockIdx.z, kh = h / (p.n_heads / p.n_kv_heads);
    float *qs = sm, *ws = sm + p.head_dim;
    for (int e = threadIdx.x; e < p.head_dim; e += blockDim.x)
        qs[e] = load_dt(a.q, a.q_dt, qi * a.sq + (int64_t)h * p.head_dim + e);
    __syncthreads();
    int64_t lo, hi;
    visible_keys(a, qi, split, &lo, &hi);
    float m = -INFINITY, l = 0.0f, acc[ATT_VPL];
#pragma unroll
    for (int i = 0; i < ATT_VPL; i++)
        acc[i] = 0.0f;
    for (int64_t j = lo + warp; j <= hi; j += ATT_WARPS) {
        float d = 0.0f;
        for (int e = lane; e < p.head_dim; e += 32)
            d = fmaf(qs[e], k(j, kh * p.head_dim + e), d);
        d = warp_sum(d) * p.scale;
        if (p.softcap > 0.0f) d = p.softcap * tanhf(d / p.softcap);
        float mn = fmaxf(m, d), corr = __expf(m - mn), pr = __expf(d - mn);
        l = l * corr + pr;
#pragma unroll
        for (int i = 0; i < ATT_VPL; i++) {
            int e = lane + 32 * i;
            if (e < p.v_head_dim) acc[i] = acc[i] * corr + pr * v(j, kh * p.v_head_dim + e);
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

// out[qi][h][e] = sum_s acc_s[e] e^(m_s - M) / sum_s l_s e^(m_s - M); grid (n_heads, n_q). The
// serial merge: each thread walks every split for its dims (RILL_CUDA_ATTN_MERGE=serial; 32 blocks
// for Llama-3-8B decode, 40 us at 66 splits on an H200).
__global__ void attention_merge_serial_kernel(att_args a) {
    pdl_wait();
    pdl_trigger();
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

// The same merge with the splits spread over the block, in one pass: warp w folds splits w, w + 8,
// ... into a running (max, sum, acc) as the online softmax does (each lane a 32-strided share of
// the dims; a split's loads do not wait on the fold before), then the block combines its warps.
enum { MERGE_WARPS = 8, MERGE_THREADS = MERGE_WARPS * 32 };

// qo.codes (one query, 16-bit out, v_head_dim a multiple of 32; else NULL): the output also stored
// quantized for the 4-bit GEMV after it, a warp per block of 32 dims (as the decode kernel's cluster
// merge does).
__global__ void __launch_bounds__(MERGE_THREADS) attention_merge_kernel(att_args a, cuda_qx qo) {
    extern __shared__ float msm[]; // [MERGE_WARPS][vd + 2]: acc..., max, sum
    pdl_wait();
    pdl_trigger();
    int h = blockIdx.x, vd = a.p.v_head_dim, ns = a.n_splits, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t qi = blockIdx.y;
    const float *pt = a.part + (qi * a.p.n_heads + h) * ns * (vd + 2);
    float m = -INFINITY, l = 0.0f, acc[ATT_VPL];
#pragma unroll
    for (int i = 0; i < ATT_VPL; i++)
        acc[i] = 0.0f;
#pragma unroll 2
    for (int sp = warp; sp < ns; sp += MERGE_WARPS) {
        const float *ps = pt + (int64_t)sp * (vd + 2);
        float ms = ps[vd], ls = ps[vd + 1], v[ATT_VPL];
#pragma unroll
        for (int i = 0; i < ATT_VPL; i++)
            v[i] = lane + 32 * i < vd ? ps[lane + 32 * i] : 0.0f;
        if (!(ls > 0.0f)) continue; // a split that saw no key (the same in every lane)
        float mn = fmaxf(m, ms), c = __expf(m - mn), f = __expf(ms - mn);
        l = l * c + ls * f;
#pragma unroll
        for (int i = 0; i < ATT_VPL; i++)
            acc[i] = fmaf(acc[i], c, v[i] * f);
        m = mn;
    }
    float *mine = msm + warp * (vd + 2);
#pragma unroll
    for (int i = 0; i < ATT_VPL; i++)
        if (lane + 32 * i < vd) mine[lane + 32 * i] = acc[i];
    if (lane == 0) mine[vd] = m, mine[vd + 1] = l;
    __syncthreads();
    float mx = -INFINITY, sum = 0.0f;
    for (int w = 0; w < MERGE_WARPS; w++)
        if (msm[w * (vd + 2) + vd + 1] > 0.0f) mx = fmaxf(mx, msm[w * (vd + 2) + vd]);
    for (int w = 0; w < MERGE_WARPS; w++)
        if (msm[w * (vd + 2) + vd + 1] > 0.0f) sum += msm[w * (vd + 2) + vd + 1] * __expf(msm[w * (vd + 2) + vd] - mx);
    for (int e = threadIdx.x; e < vd; e += MERGE_THREADS) {
        float r = 0.0f;
        for (int w = 0; w < MERGE_WARPS; w++)
            if (msm[w * (vd + 2) + vd + 1] > 0.0f) r += msm[w * (vd + 2) + e] * __expf(msm[w * (vd + 2) + vd] - mx);
        const float v = store_dt(a.out, a.q_dt, qi * a.so + (int64_t)h * vd + e, sum > 0.0f ? r / sum : 0.0f);
        if (qo.codes) qx_store_warp(qo.codes, qo.scale, qo.sum, ((int64_t)h * vd + e) / 32, qo.n_blk, lane, v);
    }
}

// The merge is a programmatic dependent launch (its launch overlaps the attention kernel) unless
// RILL_CUDA_PDL_MERGE=0 or RILL_CUDA_PDL=0.
bool attention_merge(rill_stream *s, const att_args &a, int64_t n_q, bool pdl, const cuda_qx *qo) {
    dim3 grid((unsigned)a.p.n_heads, (unsigned)n_q);
    pdl = pdl || (cuda_pdl_on() && !getenv_is("RILL_CUDA_PDL_MERGE", "0"));
    bool serial = getenv_is("RILL_CUDA_ATTN_MERGE", "serial");
    if (serial) {
        cuda_launch_as(s, pdl, attention_merge_serial_kernel, grid, 128, 0, a);
    } else {
        size_t smem = (size_t)(MERGE_WARPS * (a.p.v_head_dim + 2)) * sizeof(float);
        cuda_launch_as(s, pdl, attention_merge_kernel, grid, MERGE_THREADS, smem, a, qo ? *qo : cuda_qx{});
    }
    return cuda_launched(s, "attention (merge)") && qo && !serial;
}

// Decode attention (few queries) over plain K/V rows, flash-decoding style: one block per (kv head,
// key split, query) serves the G query heads of its GQA group, so each key and value is read once
// for all of them. A warp takes 32 keys at a time: lane i computes key i's scores for the G heads
// from its whole row (16-byte loads, all in flight at once), one online-softmax step covers the 32
// keys, then the warp adds their values (coalesced rows, each lane a 32-strided share of the dims).
// Scores, sums and accumulators in f32; the block merges its warps; splits merge as above.
enum { DEC_WARPS = 4, DEC_MAX_DIM = 256 };

template <typename T, int G, int VPL> // VPL: value dims per lane, >= v_head_dim / 32
__global__ void __launch_bounds__(DEC_WARPS * 32)
    attention_decode_kernel(att_args a, const T *K, int64_t sk, const T *V, int64_t sv) {
    extern __shared__ float sm[]; // q [G][head_dim], then per warp and head [v_head_dim + 2]
    pdl_wait();
    pdl_trigger();
    const rill_attn_params &p = a.p;
    int kh = blockIdx.x, split = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int hd = p.head_dim, vd = p.v_head_dim;
    int64_t qi = blockIdx.z;
    float *qs = sm, *ws = sm + G * hd;
    for (int e = threadIdx.x; e < G * hd; e += blockDim.x) // the group's heads are adjacent in q
        qs[e] = load_dt(a.q, a.q_dt, qi * a.sq + (int64_t)kh * G * hd + e);
    __syncthreads();
    int64_t lo, hi;
    visible_keys(a, qi, split, &lo, &hi);
    float m[G], l[G], acc[G][VPL];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY, l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < VPL; i++)
            acc[g][i] = 0.0f;
    }
    for (int64_t j0 = lo + warp * 32; j0 <= hi; j0 += DEC_WARPS * 32) {
        int64_t j = j0 + lane;
        bool on = j <= hi;
        float sc[G];
#pragma unroll
        for (int g = 0; g < G; g++)
            sc[g] = 0.0f;
        if (on) {
            const T *kr = K + j * sk + (int64_t)kh * hd;
            for (int e = 0; e < hd; e += 8) {
                float kf[8];
                load8(kr + e, kf);
#pragma unroll
                for (int g = 0; g < G; g++)
#pragma unroll
                    for (int t = 0; t < 8; t++)
                        sc[g] = fmaf(qs[g * hd + e + t], kf[t], sc[g]);
            }
        }
        float pr[G];
#pragma unroll
        for (int g = 0; g < G; g++) {
            float x = sc[g] * p.scale;
            if (p.softcap > 0.0f) x = p.softcap * tanhf(x / p.softcap);
            x = on ? x : -INFINITY;
            float mn = fmaxf(m[g], warp_max(x)), corr = __expf(m[g] - mn); // lane 0's key is always on
            pr[g] = on ? __expf(x - mn) : 0.0f;
            l[g] = l[g] * corr + warp_sum(pr[g]);
#pragma unroll
            for (int i = 0; i < VPL; i++)
                acc[g][i] *= corr;
            m[g] = mn;
        }
        int nk = hi - j0 + 1 < 32 ? (int)(hi - j0 + 1) : 32;
#pragma unroll 16
        for (int kk = 0; kk < nk; kk++) { // (16 value rows in flight per lane)
            const T *vr = V + (j0 + kk) * sv + (int64_t)kh * vd;
            float vv[VPL];
#pragma unroll
            for (int i = 0; i < VPL; i++)
                vv[i] = lane + 32 * i < vd ? to_f32(vr[lane + 32 * i]) : 0.0f;
#pragma unroll
            for (int g = 0; g < G; g++) {
                float pk = __shfl_sync(0xffffffffu, pr[g], kk);
#pragma unroll
                for (int i = 0; i < VPL; i++)
                    acc[g][i] = fmaf(pk, vv[i], acc[g][i]);
            }
        }
    }
    // merge the warps, head by head
#pragma unroll
    for (int g = 0; g < G; g++) {
        float *mine = ws + (warp * G + g) * (vd + 2);
#pragma unroll
        for (int i = 0; i < VPL; i++)
            if (lane + 32 * i < vd) mine[lane + 32 * i] = acc[g][i];
        if (lane == 0) mine[vd] = m[g], mine[vd + 1] = l[g];
    }
    __syncthreads();
    decode_block_store<DEC_WARPS, G>(a, ws, kh, qi, split);
}

// Checks the shapes (false: rejected, message set) and fills a's split plan and scratch.
static bool attention_plan(rill_stream *s, const char *op, const rill_tensor *out, const rill_tensor *q, int64_t n_k,
                           const rill_attn_params *p, att_args *a, int decode_kernel = 0) {
    if (p->n_kv_heads <= 0 || p->n_heads % p->n_kv_heads || p->head_dim > ATT_MAX_DIM || p->v_head_dim > ATT_MAX_DIM ||
        p->head_dim <= 0 || p->v_head_dim <= 0) {
        cuda_reject(s, RILL_EUNSUPPORTED, op, "heads must divide evenly and head dims lie in 1..512");
        return false;
    }
    if (q->dtype != out->dtype || q->rows != out->rows || q->cols < (int64_t)p->n_heads * p->head_dim ||
        out->cols < (int64_t)p->n_heads * p->v_head_dim) {
        cuda_reject(s, RILL_EINVAL, op, "q and out do not fit the head counts and dims");
        return false;
    }
    if (q->rows > 65535 || p->n_heads > 65535) {
        cuda_reject(s, RILL_ERANGE, op, "more than 65535 queries or heads in one call");
        return false;
    }
    *a = att_args{*p, q->data, out->data, q->dtype, 0, q->stride, out->stride, n_k, 1, 0, NULL};
    // split the keys when queries x heads alone leave the GPU idle (decode)
    int64_t blocks = q->rows * p->n_heads, want = 1;
    // Each warp walks its keys one dependent load after another (latency-bound), so short splits
    // (64 keys) and many blocks in flight pay; past 32 splits the merge and the GQA re-reads cost
    // more than they save (H100, 16k keys: 32 splits 174 us, 128 splits 218 us).
    int cluster = 0;
    if (decode_kernel == DECODE_MMA) {
        cluster = getenv("RILL_CUDA_ATTN_SPLIT") ? 0 : attention_decode_cluster(n_k);
        want = cluster ? cluster : mma_splits(n_k, q->rows * p->n_kv_heads);
    } else if (decode_kernel ==
               DECODE_CORES) { // blocks per (kv head, query) walk 128 keys per step: splits of >= 128 keys, ~528 blocks
        int64_t groups = q->rows * p->n_kv_heads;
        want = (n_k + 127) / 128;
        int64_t fill = (528 + groups - 1) / groups;
        if (want > fill) want = fill;
    } else if (blocks < 264 && n_k > 64) {
        want = (n_k + 63) / 64;
        int64_t fill = (4096 + blocks - 1) / blocks;
        if (want > fill) want = fill;
        if (want > 32) want = 32;
    }
    a->split_len = (int)((n_k + want - 1) / want);
    if (a->split_len < 1) a->split_len = 1;
    a->n_splits = (int)((n_k + a->split_len - 1) / a->split_len);
    if (a->n_splits < 1) a->n_splits = 1;
    a->cluster = cluster > 1 && a->n_splits == cluster;
    if (a->n_splits > 1 && !a->cluster) {
        size_t bytes = (size_t)(q->rows * p->n_heads * a->n_splits) * (size_t)(p->v_head_dim + 2) * sizeof(float);
        a->part = (float *)cuda_scratch(s, bytes, op);
        if (!a->part) return false;
    }
    return true;
}

template <typename KV>
static void attention_launch(rill_stream *s, const char *op, const att_args &a, int64_t n_q, KV k, KV v) {
    const rill_attn_params &p = a.p;
    dim3 grid((unsigned)p.n_heads, (unsigned)a.n_splits, (unsigned)n_q);
    size_t smem = (size_t)(p.head_dim + ATT_WARPS * (p.v_head_dim + 2)) * sizeof(float);
    cuda_launch_as(s, attention_pdl(), attention_kernel<KV>, grid, ATT_WARPS * 32, smem, a, k, v);
    if (!cuda_launched(s, op) || a.n_splits == 1) return;
    attention_merge(s, a, n_q, attention_pdl());
}

extern "C" void cuda_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                               const rill_tensor *v, const rill_attn_params *p) {
    const char *op = "attention";
    if (k->dtype != v->dtype || k->rows != v->rows || k->cols < (int64_t)p->n_kv_heads * p->head_dim ||
        v->cols < (int64_t)p->n_kv_heads * p->v_head_dim) {
        cuda_reject(s, RILL_EINVAL, op, "k and v do not fit the head counts and dims");
        return;
    }
    if (!getenv_is("RILL_CUDA_ATTENTION", "warp") && p->n_kv_heads > 0 && p->n_heads % p->n_kv_heads == 0 &&
        (cuda_attention_prefill(s, out, q, k, v, p) || cuda_attention_gemm(s, out, q, k, v, p)))
        return;
    att_args a;
    int group = p->n_kv_heads > 0 ? p->n_heads / p->n_kv_heads : 0;
    size_t es = k->dtype == DTYPE_F32 ? 4 : 2; // (F32, F16 or BF16; CUDA_DISPATCH rejects others)
    bool few = q->rows <= 8 && group >= 1 && group <= 8 && !getenv_is("RILL_CUDA_ATTENTION", "warp");
    bool mma = few && !getenv_is("RILL_CUDA_ATTENTION", "cores") && attention_decode_mma_fits(p, q, k, v) &&
               k->rows >= decode_min_keys(true);
    bool decode = !mma && few && (group == 1 || group == 2 || group == 4 || group == 8) &&
                  k->rows >= decode_min_keys(false) && p->head_dim % 8 == 0 && p->head_dim <= DEC_MAX_DIM &&
                  p->v_head_dim <= DEC_MAX_DIM && ((uintptr_t)k->data & 15) == 0 && (k->stride * es) % 16 == 0 &&
                  (p->head_dim * es) % 16 == 0;
    if (!attention_plan(s, op, out, q, k->rows, p, &a, mma ? DECODE_MMA : decode ? DECODE_CORES : 0) || q->rows == 0)
        return;
    if (mma) {
        attention_decode_mma(s, a, q->rows, out, k, v, NULL, NULL, attention_pdl());
        return;
    }
    if (!decode) {
        CUDA_DISPATCH(s, op, k->dtype, TKV,
                      attention_launch(s, op, a, q->rows, plain_kv<TKV>{(const TKV *)k->data, k->stride},
                                       plain_kv<TKV>{(const TKV *)v->data, v->stride}));
        return;
    }
    dim3 grid((unsigned)p->n_kv_heads, (unsigned)a.n_splits, (unsigned)q->rows);
    size_t smem = (size_t)(group * p->head_dim + DEC_WARPS * group * (p->v_head_dim + 2)) * sizeof(float);
#define DEC_LAUNCH(G, VPL)                                                                                             \
    CUDA_DISPATCH(s, op, k->dtype, TKV,                                                                                \
                  cuda_launch_as(s, attention_pdl(), attention_decode_kernel<TKV, G, VPL>, grid, DEC_WARPS * 32, smem, \
                                 a, (const TKV *)k->data, k->stride, (const TKV *)v->data, v->stride))
#define DEC_LAUNCH_G(VPL)                                                                                              \
    do {                                                                                                               \
        if (group == 1)                                                                                                \
            DEC_LAUNCH(1, VPL);                                                                                        \
        else if (group == 2)                                                                                           \
            DEC_LAUNCH(2, VPL);                                                                                        \
        else if (group == 4)                                                                                           \
            DEC_LAUNCH(4, VPL);                                                                                        \
        else                                                                                                           \
            DEC_LAUNCH(8, VPL);                                                                                        \
    } while (0)
    if (p->v_head_dim <= 128)
        DEC_LAUNCH_G(4);
    else
        DEC_LAUNCH_G(8);
#undef DEC_LAUNCH_G
#undef DEC_LAUNCH
    if (!cuda_launched(s, op) || a.n_splits == 1) return;
    attention_merge(s, a, q->rows, attention_pdl());
}

template <int BITS, typename TS> static quant_kv<BITS, TS> quant_view(const rill_qkv *t) {
    return quant_kv<BITS, TS>{
        t->packed,           (const TS *)t->scales,   (const TS *)t->biases,
        t->cols * BITS / 32, t->cols / t->group_size, t->group_size == 32 ? 5 : t->group_size == 64 ? 6 : 7};
}

extern "C" void cuda_attention_q(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k,
                                 const rill_qkv *v, const rill_attn_params *p) {
    const char *op = "attention (quantized KV)";
    if (k->bits != v->bits || (k->bits != 4 && k->bits != 8) || k->scale_dtype != v->scale_dtype ||
        k->rows != v->rows || (k->group_size != 32 && k->group_size != 64 && k->group_size != 128) ||
        (v->group_size != 32 && v->group_size != 64 && v->group_size != 128) || k->cols % k->group_size ||
        v->cols % v->group_size || k->cols < (int64_t)p->n_kv_heads * p->head_dim ||
        v->cols < (int64_t)p->n_kv_heads * p->v_head_dim) {
        cuda_reject(s, RILL_EINVAL, op, "k and v must be 4- or 8-bit caches (groups 32, 64, 128) that fit the heads");
        return;
    }
    att_args a;
    if (!attention_plan(s, op, out, q, k->rows, p, &a) || q->rows == 0) return;
    if (k->bits == 4)
        CUDA_DISPATCH(s, op, k->scale_dtype, TS,
                      attention_launch(s, op, a, q->rows, quant_view<4, TS>(k), quant_view<4, TS>(v)));
    else
        CUDA_DISPATCH(s, op, k->scale_dtype, TS,
                      attention_launch(s, op, a, q->rows, quant_view<8, TS>(k), quant_view<8, TS>(v)));
}

// x [rows][cols] (stride sx) -> a quantized cache's rows, one warp per (row, group): the group's
// range, then scale and bias exactly as the reference computes them (IEEE division and rintf, the
// stored 16-bit values reloaded), then each lane packs whole words.
template <typename TX, typename TS>
__global__ void kv_quantize_kernel(uint32_t *packed, TS *scales, TS *biases, const TX *x, int64_t sx, int64_t rows,
                                   int64_t cols, int gs, int bits) {
    int64_t gpr = cols / gs, gi = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (gi >= rows * gpr) return;
    int lane = threadIdx.x & 31;
    int64_t r = gi / gpr, g = gi % gpr;
    const TX *xg = x + r * sx + g * gs;
    float lo = INFINITY, hi = -INFINITY;
    for (int e = lane; e < gs; e += 32) {
        float v = to_f32(xg[e]);
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    lo = -warp_max(-lo);
    hi = warp_max(hi);
    int n_levels = (1 << bits) - 1;
    float scale = (hi - lo) / (float)n_levels;
    if (!(scale > 1e-7f)) scale = 1e-7f;
    bool low = fabsf(lo) > fabsf(hi);
    if (!low) scale = -scale;
    float edge = low ? lo : hi, q0 = rintf(edge / scale), bias = 0.0f;
    if (q0 != 0.0f) {
        scale = edge / q0;
        bias = edge;
    }
    TS ss = from_f32<TS>(scale), bs = from_f32<TS>(bias);
    if (lane == 0) scales[gi] = ss, biases[gi] = bs;
    scale = to_f32(ss);
    bias = to_f32(bs);
    int per = 32 / bits, words = gs / per;
    for (int wi = lane; wi < words; wi += 32) {
        uint32_t w = 0;
        for (int k = 0; k < per; k++) {
            float v = rintf((to_f32(xg[wi * per + k]) - bias) / scale);
            unsigned q = v < 0.0f ? 0u : v > (float)n_levels ? (unsigned)n_levels : (unsigned)v;
            w |= q << (k * bits);
        }
        packed[r * (cols * bits / 32) + g * words + wi] = w;
    }
}

template <typename TX> static void kv_quantize_typed(rill_stream *s, rill_qkv *out, const rill_tensor *x) {
    int64_t n = x->rows * (out->cols / out->group_size);
    CUDA_DISPATCH(s, "kv_quantize", out->scale_dtype, TS,
                  kv_quantize_kernel<TX, TS><<<(unsigned)((n + 7) / 8), 256, 0, s->cs>>>(
                      out->packed, (TS *)out->scales, (TS *)out->biases, (const TX *)x->data, x->stride, x->rows,
                      out->cols, out->group_size, out->bits));
    cuda_launched(s, "kv_quantize");
}

extern "C" void cuda_kv_quantize(rill_stream *s, rill_qkv *out, const rill_tensor *x) {
    if ((out->bits != 4 && out->bits != 8) || out->group_size < 32 || out->group_size % 32 ||
        out->cols % out->group_size || x->cols != out->cols || x->rows > out->rows) {
        cuda_reject(s, RILL_EINVAL, "kv_quantize",
                    "4 or 8 bits, groups of 32k dividing the columns, x within the cache");
        return;
    }
    if (x->rows == 0) return;
    CUDA_DISPATCH(s, "kv_quantize", x->dtype, TX, kv_quantize_typed<TX>(s, out, x));
}

// The KV write of a captured decode step and the attention after it, in one launch when the
// tensor-core decode kernel takes them (it reads the newest key and value from k_new and v_new and
// stores them into the cache row); otherwise copy_at, then attention. RILL_CUDA_ATTN_APPEND=0 keeps
// the two launches (to measure).
extern "C" void cuda_attention_append(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k_new,
                                      const rill_tensor *v_new, rill_tensor *keys, rill_tensor *values,
                                      const int32_t *row, const rill_attn_params *p) {
    const char *op = "attention";
    bool fits = !getenv_is("RILL_CUDA_ATTN_APPEND", "0") && !getenv_is("RILL_CUDA_ATTENTION", "warp") &&
                !getenv_is("RILL_CUDA_ATTENTION", "cores") && q->rows == 1 && k_new->rows == 1 && v_new->rows == 1 &&
                p->mask.q_pos_dev == row && k_new->dtype == keys->dtype && v_new->dtype == values->dtype &&
                k_new->cols == keys->cols && v_new->cols == values->cols && ((uintptr_t)k_new->data & 15) == 0 &&
                ((uintptr_t)v_new->data & 15) == 0 && keys->cols == (int64_t)p->n_kv_heads * p->head_dim &&
                values->cols == (int64_t)p->n_kv_heads * p->v_head_dim &&
                attention_decode_mma_fits(p, q, keys, values) && keys->rows >= decode_min_keys(true) &&
                keys->rows == values->rows;
    if (!fits) {
        cuda_copy_at(s, keys, k_new, values, v_new, row);
        if (s->status == RILL_OK) cuda_attention(s, out, q, keys, values, p);
        return;
    }
    att_args a;
    if (!attention_plan(s, op, out, q, keys->rows, p, &a, DECODE_MMA)) return;
    attention_decode_mma(s, a, 1, out, keys, values, k_new, v_new, attention_pdl());
}
