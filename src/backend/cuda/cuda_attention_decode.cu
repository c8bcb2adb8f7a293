// cuda_attention_decode.cu: decode attention (few queries, long caches) on the tensor cores. One
// block per (kv head, key split, query) serves the G query heads of the GQA group, so each key and
// value is read once for all of them; each warp takes 16 keys at a time with mma.sync m16n8k16
// (f16/bf16 operands, f32 accumulators):
//   S[16][16] = Q[16 rows: the G heads, the rest zero][d] . K[16 keys][d]^T
//   O^T[d][8 cols: the G heads] += V[16 keys][d]^T . P^T[16 keys][8 heads]
// S's accumulator layout is P^T's operand layout, so P stays in registers. Every load is 16 bytes:
// the order of the d terms of Q.K^T and of the 16 keys of P.V is free as long as both operands use
// the same one, so each lane reads 8 consecutive dims of a key row (K: as they are; V: two keys'
// halves paired with byte permutes). Online softmax per 16 keys in f32. Caches of up to 64 keys: one
// block merges its warps. Caches of 65 to 2,048 keys are split over 2-8 blocks that form one thread
// block cluster and merge every warp's state in the block that owns the head, through distributed
// shared memory (pushed there with st.async; cluster_merge_store); longer ones split wider, each block merges its
// warps, and attention_merge merges the splits in a second launch.
#include <cooperative_groups.h>

#include "backend/cuda/cuda_attention.cuh"
#include "backend/cuda/cuda_mma.cuh"
#include "base/env_switch.h"

namespace cg = cooperative_groups;

enum { MMA_WARPS = 4 };

__device__ __forceinline__ uint32_t word(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

// The pushed merge (a.cluster == 2, the default; RILL_CUDA_ATTN_PUSH=0: the barrier's): every state
// goes to its owner's box with st.async, which counts its bytes on an mbarrier in the owner's
// shared memory; the owner waits on that barrier alone, so no cluster barrier stands between the
// last key and the output, and a block that owns no head ends once its stores are issued (H100,
// 2026-11-27, alternated in one call: SmolLM2 2,260 -> 2,330 tok/s, +3.1%; Llama-3-8B short +0.3%).
__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ uint32_t cluster_addr(uint32_t local, int rank) {
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(local), "r"(rank));
    return r;
}
__device__ __forceinline__ void push_float2(uint32_t dst, float x, float y, uint32_t bar) {
    asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f32 [%0], {%1, %2}, [%3];" ::"r"(dst),
                 "f"(x), "f"(y), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void wait_parity0(uint32_t bar) {
    asm volatile("{\n\t.reg .pred done;\n"
                 "W:\n\tmbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [%0], 0;\n"
                 "\t@!done bra W;\n}" ::"r"(bar)
                 : "memory");
}

// A cluster-merged launch (a.cluster: the n splits of one kv head as a cluster of n = 2, 4 or 8
// blocks) merges through distributed shared memory, each head in the block that owns it: rank g /
// hpr owns head g (hpr = ceil(G / n) heads per rank, so n x hpr <= 8). Every warp writes its state
// of head g (acc [HD], max, sum) into slot ((rank x MMA_WARPS + warp) x hpr + g % hpr) of the
// owner's box [n][MMA_WARPS][hpr][HD + 2]; once they are all there (the pushed merge above, or one
// cluster barrier) each owner merges its heads' n x MMA_WARPS states from its own shared memory.
// Nothing reads a block's shared memory after that, so nothing holds the blocks back (H100: this
// replaced a merge of the warps in each block, then reads of every block's merged state through
// DSMEM between two barriers).

// The owner's half: head g's output from the n x MMA_WARPS <= 32 states in box (lane j weighs
// state j); with qo.codes also quantized (a warp's 32 dims are a block of 32: lane = d % 32).
template <int G, int HD>
__device__ __forceinline__ void cluster_merge_store(const att_args &a, const cuda_qx &qo, const float *box, int kh,
                                                    int64_t qi, int rank, int n) {
    static_assert(HD <= MMA_WARPS * 32 && HD % 32 == 0, "a thread per dim, whole warps");
    const int hpr = (G + n - 1) / n, states = n * MMA_WARPS, lane = threadIdx.x & 31, d = threadIdx.x;
    const int64_t stride = (int64_t)hpr * (HD + 2); // from one state of a head to the next
    for (int slot = 0; slot < hpr; slot++) {
        const int g = rank * hpr + slot;
        if (g >= G || d >= HD) return; // (uniform per warp: HD is a multiple of 32)
        const float *st = box + slot * (HD + 2);
        float mj = -INFINITY, lj = 0.0f;
        if (lane < states) mj = st[lane * stride + HD], lj = st[lane * stride + HD + 1];
        const float mx = warp_max(lj > 0.0f ? mj : -INFINITY);
        const float f = lj > 0.0f ? __expf(mj - mx) : 0.0f, sum = warp_sum(lj * f);
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < 32; j++) // (f is 0 past the states: a repeated last state adds nothing)
            acc += st[min(j, states - 1) * stride + d] * __shfl_sync(0xffffffffu, f, j);
        const int64_t col = (int64_t)(kh * G + g) * HD + d;
        const float v = store_dt(a.out, a.q_dt, qi * a.so + col, sum > 0.0f ? acc / sum : 0.0f); // (as stored)
        if (qo.codes) qx_store_warp(qo.codes, qo.scale, qo.sum, col / 32, qo.n_blk, lane, v);
    }
}

// Lane (r = lane / 4, t = lane % 4). Dims: k-step 2s + u of Q.K^T takes, in lane (r, t), dims
// 32s + 8t + 4u + {0,1} as the fragment's columns 2t, 2t+1 and + {2,3} as 2t+8, 2t+9; so a key's
// 16-byte word at dims 32s + 8t serves two k-steps. Keys: P's 16 columns are keys j0 + 0..15 as S
// left them; in P.V lane (r, t) supplies keys 2t, 2t+1, 2t+8, 2t+9 at output rows r (dim
// 64h + 8r + 2i) and r + 8 (that dim + 1) of m-tile 4h + i: the low and high halves of the words
// at dims 64h + 8r of two keys, paired.
// Knew, Vnew (one query, a cache on a device position; else NULL): the newest key and value, not yet
// in K and V: row q_pos of the cache is read from them, and block (kv head, split 0) writes them into
// that row of K and V for the steps after (the cache's copy_at, in the same launch).
// qo.codes (one query and a cluster merge; else NULL): the owners also store the output quantized
// for the 4-bit GEMV after it (cuda_qx), from each value as stored in T: the bytes quant_x_kernel
// would make of the output, with no launch for them.
// Timeline builds (bench/gpu_timeline.sh) mark phases 0-4 in block (0, 0, 0): keys walked, every
// block of the cluster started, states written, barrier passed, output stored.
// Registers: 128-dim heads get enough for 2 blocks per SM (the most the long-cache plan puts on one,
// mma_splits), where a bound of 4 spilled 76 bytes (H100, Llama-3-8B, alternated against it: 16k
// 316.5 -> 322.6 tok/s, short 437.7 -> 442.4); 64-dim heads fit 4 without spilling.
template <typename T, int G, int HD>
__global__ void __launch_bounds__(MMA_WARPS * 32, HD == 128 ? 2 : 4)
    attention_decode_mma_kernel(att_args a, const T *K, int64_t sk, const T *V, int64_t sv, const T *Knew,
                                const T *Vnew, cuda_qx qo) {
    // per warp and head: acc [HD], max, sum (MMA_WARPS x G states); a cluster's box
    // (cluster_merge_store: 8 x MMA_WARPS states at most) in the same room (mma_smem)
    extern __shared__ float4 smem4[];
    float *ws = (float *)smem4;
    cg::cluster_group cl = cg::this_cluster();
    const int n = a.cluster ? (int)cl.num_blocks() : 1, rank = a.cluster ? (int)cl.block_rank() : 0;
    const int hpr = (G + n - 1) / n;           // heads per rank (cluster merges)
    __shared__ __align__(8) uint64_t box_full; // (pushed merge) every state of this block's heads has arrived
    if (a.cluster == 2 && threadIdx.x == 0) {  // expects n blocks x MMA_WARPS warps x (HD + 2) floats a head
        const int owned = max(0, min(G, (rank + 1) * hpr) - rank * hpr);
        asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&box_full)) : "memory");
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(&box_full)),
                     "r"(owned * n * MMA_WARPS * (HD + 2) * 4)
                     : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    if (a.cluster == 2) // (release: a block that has waited for this arrive sees the barrier's init)
        asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
    else if (a.cluster)
        cluster_arrive_relaxed(); // (this block has started: waited for before DSMEM writes)
    const rill_attn_params &p = a.p;
    // The position is read before pdl_wait: a device counter advances at the end of a step, never
    // in the launch just before this one (the only one that may still run: every kernel waits
    // before it triggers), so the key and value loads need not wait for a load after pdl_wait.
    const int64_t q0 = first_query_pos(a);
    pdl_wait();
    pdl_trigger();
    const int kh = blockIdx.x, split = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = lane >> 2, t = lane & 3;
    const int64_t qi = blockIdx.z;
    // the row of K and V that Knew and Vnew stand for; split 0 copies them there after its keys
    // (nothing in this launch reads that row from K or V), so that no load waits behind the stores
    const int64_t newest = Knew ? q0 - p.mask.k_pos0 : -1;
    const bool copies = Knew && split == 0 && newest >= 0 && newest < a.n_k && (int)threadIdx.x < HD;
    T new_k = T(), new_v = T();
    if (copies) new_k = Knew[(int64_t)kh * HD + threadIdx.x], new_v = Vnew[(int64_t)kh * HD + threadIdx.x];
    uint32_t qa[HD / 16][2]; // Q's rows r < G (rows r + 8 are zero): fragment registers 0 and 2 per k-step
#pragma unroll
    for (int s = 0; s < HD / 32; s++)
#pragma unroll
        for (int u = 0; u < 2; u++) {
            float f[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            if (r < G) {
                int64_t at = qi * a.sq + (int64_t)(kh * G + r) * HD + 32 * s + 8 * t + 4 * u;
#pragma unroll
                for (int i = 0; i < 4; i++)
                    f[i] = load_dt(a.q, a.q_dt, at + i);
            }
            qa[2 * s + u][0] = pack2<T>(f[0], f[1]);
            qa[2 * s + u][1] = pack2<T>(f[2], f[3]);
        }
    int64_t lo, hi;
    visible_keys_at(a, q0, qi, split, &lo, &hi);
    const T *kb = K + (int64_t)kh * HD, *vb = V + (int64_t)kh * HD;
    float m = -INFINITY, l = 0.0f; // head r's running max (same in its 4 lanes) and this lane's share of the sum
    float o[HD / 16][4];           // O^T m-tiles: rows as above, columns heads 2t, 2t+1
#pragma unroll
    for (int i = 0; i < HD / 16; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    for (int64_t j0 = lo + warp * 16; j0 <= hi; j0 += MMA_WARPS * 16) {
        uint4 kw[2][HD / 32], vw[4][HD / 64]; // keys j0 + 8n + r; keys j0 + 2t + {0, 1, 8, 9}
#pragma unroll
        for (int n = 0; n < 2; n++) {
            int64_t j = min(j0 + 8 * n + r, hi); // (keys past hi: a valid row, masked below)
            const T *kr = j == newest ? Knew + (int64_t)kh * HD : kb + j * sk;
#pragma unroll
            for (int s = 0; s < HD / 32; s++)
                kw[n][s] = __ldcs((const uint4 *)(kr + 32 * s + 8 * t));
        }
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int64_t j = min(j0 + 2 * t + (c & 1) + 8 * (c >> 1), hi);
            const T *vr = j == newest ? Vnew + (int64_t)kh * HD : vb + j * sv;
#pragma unroll
            for (int h = 0; h < HD / 64; h++)
                vw[c][h] = __ldcs((const uint4 *)(vr + 64 * h + 8 * r));
        }
        float sc[2][4]; // S tiles of 8 keys: [0], [1] are head r's keys 8n + 2t, 8n + 2t + 1
#pragma unroll
        for (int n = 0; n < 2; n++) {
            sc[n][0] = sc[n][1] = sc[n][2] = sc[n][3] = 0.0f;
#pragma unroll
            for (int s = 0; s < HD / 32; s++) {
                uint32_t a0[4] = {qa[2 * s][0], 0u, qa[2 * s][1], 0u},
                         a1[4] = {qa[2 * s + 1][0], 0u, qa[2 * s + 1][1], 0u};
                mma16816<T>(sc[n], a0, kw[n][s].x, kw[n][s].y);
                mma16816<T>(sc[n], a1, kw[n][s].z, kw[n][s].w);
            }
        }
        float x[4], mx = -INFINITY;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float v = sc[e >> 1][e & 1] * p.scale;
            if (p.softcap > 0.0f) v = p.softcap * tanhf(v / p.softcap);
            x[e] = j0 + 8 * (e >> 1) + 2 * t + (e & 1) <= hi ? v : -INFINITY;
            mx = fmaxf(mx, x[e]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float mn = fmaxf(m, mx), corr = __expf(m - mn); // (key j0 is always seen: mn is finite)
        float pr[4];
#pragma unroll
        for (int e = 0; e < 4; e++)
            pr[e] = __expf(x[e] - mn);
        l = l * corr + (pr[0] + pr[1]) + (pr[2] + pr[3]);
        m = mn;
        float c0 = __shfl_sync(0xffffffffu, corr, 8 * t), c1 = __shfl_sync(0xffffffffu, corr, 8 * t + 4);
        uint32_t b0 = pack2<T>(pr[0], pr[1]), b1 = pack2<T>(pr[2], pr[3]);
#pragma unroll
        for (int h = 0; h < HD / 64; h++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float *oi = o[4 * h + i];
                oi[0] *= c0, oi[1] *= c1, oi[2] *= c0, oi[3] *= c1;
                uint32_t w0 = word(vw[0][h], i), w1 = word(vw[1][h], i), w2 = word(vw[2][h], i), w3 = word(vw[3][h], i);
                uint32_t av[4] = {__byte_perm(w0, w1, 0x5410), __byte_perm(w0, w1, 0x7632), __byte_perm(w2, w3, 0x5410),
                                  __byte_perm(w2, w3, 0x7632)};
                mma16816<T>(oi, av, b0, b1);
            }
    }
    TIMELINE_PHASE(0); // (timeline builds) keys walked
    if (copies) {
        ((T *)K)[newest * sk + (int64_t)kh * HD + threadIdx.x] = new_k;
        ((T *)V)[newest * sv + (int64_t)kh * HD + threadIdx.x] = new_v;
    }
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    // this warp's state of head g at state(g): ws (slot warp x G + g) for the block's merge, or
    // the owner's box of a cluster
    auto state = [&](int g) -> float * {
        if (!a.cluster) return ws + (warp * G + g) * (HD + 2);
        return cl.map_shared_rank(ws, g / hpr) + ((rank * MMA_WARPS + warp) * hpr + g % hpr) * (HD + 2);
    };
    if (a.cluster) cluster_wait(); // every block of the cluster has started (its arrive was the first thing it did)
    TIMELINE_PHASE(1);
    if (a.cluster == 2) {             // pushed: st.async into the owner's box, counted on its barrier
        auto at = [&](int g, int k) { // (k: the float within the state)
            return cluster_addr(smem_addr(ws + ((rank * MMA_WARPS + warp) * hpr + g % hpr) * (HD + 2) + k), g / hpr);
        };
        const uint32_t bar0 = smem_addr(&box_full);
#pragma unroll
        for (int c = 0; c < 2; c++) {
            const int g = 2 * t + c;
            if (g >= G) continue;
            const uint32_t bar = cluster_addr(bar0, g / hpr), dst = at(g, 0);
#pragma unroll
            for (int h = 0; h < HD / 64; h++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                    push_float2(dst + 4 * (64 * h + 8 * r + 2 * i), o[4 * h + i][c], o[4 * h + i][2 + c], bar);
        }
        if (t == 0 && r < G) push_float2(at(r, HD), m, l, cluster_addr(bar0, r / hpr));
    } else {
        float *mine[2] = {state(min(2 * t, G - 1)), state(min(2 * t + 1, G - 1))}; // heads 2t, 2t + 1
#pragma unroll
        for (int h = 0; h < HD / 64; h++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int d = 64 * h + 8 * r + 2 * i;
#pragma unroll
                for (int c = 0; c < 2; c++)
                    if (2 * t + c < G) *(float2 *)(mine[c] + d) = make_float2(o[4 * h + i][c], o[4 * h + i][2 + c]);
            }
        if (t == 0 && r < G) *(float2 *)(state(r) + HD) = make_float2(m, l);
    }
    TIMELINE_PHASE(2); // states written
    if (a.cluster == 2) {
        // A block that owns no head ends here: its stores were issued, and their bytes are counted
        // on their owners' barriers (no cluster barrier keeps a block alive for them). An owner
        // waits for its own barrier's count alone.
        if (rank * hpr >= G) return;
        wait_parity0(smem_addr(&box_full));
        TIMELINE_PHASE(3);
        cluster_merge_store<G, HD>(a, qo, ws, kh, qi, rank, n);
    } else if (a.cluster) {
        cl.sync(); // every state in its owner's box
        TIMELINE_PHASE(3);
        cluster_merge_store<G, HD>(a, qo, ws, kh, qi, rank, n);
    } else {
        __syncthreads();
        TIMELINE_PHASE(3);
        decode_block_store<MMA_WARPS, G>(a, ws, kh, qi, split);
    }
    TIMELINE_PHASE(4); // output (or the split's partial) stored
}

// Dynamic shared memory of attention_decode_mma_kernel: no more than the launch uses (a kernel that
// asks for more may need the SM's L1/shared split changed, which waits for the kernel before it).
static size_t mma_smem(const att_args &a, int group, int hd) {
    int n = a.cluster ? a.n_splits : 1, states = a.cluster ? n * ((group + n - 1) / n) : group;
    return (size_t)MMA_WARPS * states * (hd + 2) * sizeof(float);
}

template <typename T, int G>
static void launch_g(rill_stream *s, const att_args &a, dim3 grid, int hd, const rill_tensor *k, const rill_tensor *v,
                     const rill_tensor *k_new, const rill_tensor *v_new, const cuda_qx &qo, bool pdl) {
    const T *kn = k_new ? (const T *)k_new->data : NULL, *vn = v_new ? (const T *)v_new->data : NULL;
    unsigned cluster = a.cluster ? (unsigned)a.n_splits : 1; // (the splits of one kv head: blocks along y)
    if (hd == 64)
        cuda_launch_cluster(s, pdl, cluster, attention_decode_mma_kernel<T, G, 64>, grid, MMA_WARPS * 32,
                            mma_smem(a, G, hd), a, (const T *)k->data, k->stride, (const T *)v->data, v->stride, kn, vn,
                            qo);
    else
        cuda_launch_cluster(s, pdl, cluster, attention_decode_mma_kernel<T, G, 128>, grid, MMA_WARPS * 32,
                            mma_smem(a, G, hd), a, (const T *)k->data, k->stride, (const T *)v->data, v->stride, kn, vn,
                            qo);
}

template <typename T>
static void launch_t(rill_stream *s, const att_args &a, dim3 grid, int group, int hd, const rill_tensor *k,
                     const rill_tensor *v, const rill_tensor *k_new, const rill_tensor *v_new, const cuda_qx &qo,
                     bool pdl) {
    switch (group) {
    case 1: launch_g<T, 1>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    case 2: launch_g<T, 2>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    case 3: launch_g<T, 3>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    case 4: launch_g<T, 4>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    case 5: launch_g<T, 5>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    case 6: launch_g<T, 6>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    case 7: launch_g<T, 7>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl); break;
    default: launch_g<T, 8>(s, a, grid, hd, k, v, k_new, v_new, qo, pdl);
    }
}

static bool aligned_rows(const rill_tensor *t) { return ((uintptr_t)t->data & 15) == 0 && (t->stride * 2) % 16 == 0; }

bool attention_decode_mma_fits(const rill_attn_params *p, const rill_tensor *q, const rill_tensor *k,
                               const rill_tensor *v) {
    int group = p->n_kv_heads > 0 && p->n_heads % p->n_kv_heads == 0 ? p->n_heads / p->n_kv_heads : 0;
    return q->dtype == k->dtype && k->dtype == v->dtype && (k->dtype == DTYPE_BF16 || k->dtype == DTYPE_F16) &&
           (p->head_dim == 64 || p->head_dim == 128) && p->v_head_dim == p->head_dim && group >= 1 && group <= 8 &&
           aligned_rows(k) && aligned_rows(v);
}

// Whether the merge quantizes the output for the GEMV after it (RILL_CUDA_ATTN_QX=0: never, to
// measure): the matmul after it (p.out_w) would quantize one token of x for the 4-bit GEMV (not the
// residual GEMV of a small o, which quantizes x itself: H100, SmolLM2 lost 1.8% to planes no one
// took), the splits merge (in the cluster, or in attention_merge_kernel: the paths that store the
// output a warp per 32 dims), and the output row is exactly the heads. Then scratch for the planes
// (where it fails: false, with the stream's status set).
static bool quantizes_output(rill_stream *s, const att_args &a, int64_t n_q, const rill_tensor *out, cuda_qx *qo) {
    static int on = -1;
    const rill_weight *w = a.p.out_w;
    return w && a.n_splits >= 2 && n_q == 1 && out->cols == (int64_t)a.p.n_heads * a.p.v_head_dim &&
           out->cols % 32 == 0 && w->cols == out->cols && cuda_gemv_wants_qx(w, out->dtype, 1) &&
           env_switch_on("RILL_CUDA_ATTN_QX", &on) && cuda_qx_scratch(s, 1, out->cols, qo, "attention");
}

void attention_decode_mma(rill_stream *s, const att_args &a, int64_t n_q, const rill_tensor *out, const rill_tensor *k,
                          const rill_tensor *v, const rill_tensor *k_new, const rill_tensor *v_new, bool pdl) {
    const rill_attn_params &p = a.p;
    dim3 grid((unsigned)p.n_kv_heads, (unsigned)a.n_splits, (unsigned)n_q);
    int group = p.n_heads / p.n_kv_heads;
    static int push = -1; // RILL_CUDA_ATTN_PUSH=0: the merge behind a cluster barrier
    att_args b = a;
    if (b.cluster && env_switch_on("RILL_CUDA_ATTN_PUSH", &push)) b.cluster = 2;
    cuda_qx qo = {};
    bool quantized = quantizes_output(s, a, n_q, out, &qo);
    if (s->status != RILL_OK) return;
    const cuda_qx kq = a.cluster ? qo : cuda_qx{}; // (else the merge launch quantizes)
    if (k->dtype == DTYPE_BF16)
        launch_t<bf16>(s, b, grid, group, p.head_dim, k, v, k_new, v_new, kq, pdl);
    else
        launch_t<f16>(s, b, grid, group, p.head_dim, k, v, k_new, v_new, kq, pdl);
    if (!cuda_launched(s, "attention")) return;
    if (!a.cluster && a.n_splits > 1) quantized = attention_merge(s, a, n_q, pdl, quantized ? &qo : NULL);
    if (quantized) s->qx_ready.x = out->data, s->qx_ready.cols = out->cols, s->qx_ready.q = qo;
}

int attention_decode_cluster(int64_t n_k) {
    static int64_t state = -1; // keys per split, at most (RILL_CUDA_ATTN_CLUSTER=N; 0: no cluster)
    int64_t max_keys = env_count("RILL_CUDA_ATTN_CLUSTER", 256, &state);
    if (!max_keys) return 0;
    int64_t want = (n_k + 63) / 64;
    if (want <= 1) return 0;
    int c = 2;
    while (c < want && c < 8)
        c *= 2;
    return (n_k + c - 1) / c <= max_keys ? c : 0;
}
