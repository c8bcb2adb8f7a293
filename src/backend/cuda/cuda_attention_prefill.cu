// cuda_attention_prefill.cu: attention for many queries (prefill) in one kernel on the tensor cores,
// flash-attention style: S and P never leave the registers. One block of 4 warps takes 64 queries
// of one query head (16 per warp); the keys its queries see (causal end, window start) stream
// through shared memory in tiles of 64 keys and their values, copied with cp.async two tiles deep.
// Per tile and warp, with mma.sync m16n8k16 (f16/bf16 operands, f32 accumulators):
//   S[16 queries][64 keys] = Q[16][d] . K[64][d]^T    (K's fragments by ldmatrix)
//   online softmax of S's rows in f32 (masked keys -inf, scale and softcap applied first)
//   O[16][d] += P[16][64] . V[64][d]                  (P from S's accumulators, V by ldmatrix.trans)
// and O / rowsum at the end (a row that sees no key is 0). Query blocks run latest first, so the
// longest (causal) blocks start in the first wave. RILL_CUDA_PREFILL_ATTN=gemm leaves prefill to
// cuda_attention_gemm.cu (cuBLAS with S and P through memory), to compare.
#include <math.h>

#include "backend/cuda/cuda_mma.cuh"

enum { FA_WARPS = 4, FA_BQ = 16 * FA_WARPS, FA_BK = 64, FA_PAD = 8 }; // FA_PAD: 16 bytes, no bank conflicts

typedef struct {
    const void *q, *k, *v; // q [n_q][n_heads * HD], k and v [n_k][n_kv_heads * HD] (strides sq, sk, sv)
    void *out;             // [n_q][n_heads * HD] (stride so)
    int64_t sq, sk, sv, so, n_q, n_k;
    int64_t q_pos0, k_pos0; // positions of query row 0 and key row 0
    int window, group;      // window 0: unlimited; group: query heads per kv head
    float scale, softcap;
} fa_args;

// Shared memory of one block: [2 stages][K, V][FA_BK keys][HD + FA_PAD] of T.
template <typename T, int HD> static constexpr size_t fa_smem() { return 2 * 2 * FA_BK * (HD + FA_PAD) * sizeof(T); }

// Keys j0 .. j0 + FA_BK - 1 of kv head kh into stage st of the shared tiles; rows past hi (the last
// key the block sees) repeat row hi, so nothing past it is read (a cache's rows there may be NaN,
// and 0 * NaN would reach O) and they are masked.
template <typename T, int HD>
__device__ __forceinline__ void fa_load_tile(T *sm, int st, const fa_args &a, int kh, int64_t j0, int64_t hi) {
    constexpr int CH = HD / 8; // 16-byte chunks per row
    for (int c = threadIdx.x; c < 2 * FA_BK * CH; c += FA_WARPS * 32) {
        int which = c / (FA_BK * CH), rem = c - which * (FA_BK * CH), row = rem / CH, ch = rem - row * CH;
        int64_t key = min(j0 + row, hi);
        const T *src = which ? (const T *)a.v + key * a.sv : (const T *)a.k + key * a.sk;
        cp_async16(sm + ((st * 2 + which) * FA_BK + row) * (HD + FA_PAD) + ch * 8, src + (int64_t)kh * HD + ch * 8);
    }
}

// Lane (r = lane / 4, t = lane % 4) holds rows r and r + 8 of its warp's 16 queries: S tile n's
// s[n][0..1] are row r, keys 8n + 2t + {0, 1}, s[n][2..3] row r + 8; O's o[n][..] likewise for
// dims 8n + 2t + {0, 1}.
template <typename T, int HD> __global__ void __launch_bounds__(FA_WARPS * 32, 2) attention_prefill_kernel(fa_args a) {
    extern __shared__ __align__(16) unsigned char fa_smem_raw[];
    T *sm = (T *)fa_smem_raw;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 2, t = lane & 3;
    const int h = blockIdx.x, kh = h / a.group;
    const int64_t q0 = (int64_t)(gridDim.y - 1 - blockIdx.y) * FA_BQ, wq = q0 + warp * 16;
    const float LOG2E = 1.4426950408889634f;

    // the keys some query of the block sees: [lo, hi]
    int64_t q_last = min(q0 + FA_BQ, a.n_q) - 1;
    int64_t hi = min(a.q_pos0 + q_last - a.k_pos0, a.n_k - 1), lo = 0;
    if (a.window > 0) lo = max((int64_t)0, a.q_pos0 + q0 - a.k_pos0 - a.window + 1);
    int n_tiles = hi >= lo ? (int)((hi - lo) / FA_BK + 1) : 0;
    if (n_tiles > 0) fa_load_tile<T, HD>(sm, 0, a, kh, lo, hi);
    cp_async_commit();

    uint32_t qa[HD / 16][4]; // Q's A fragments per k-step of 16 dims
    {
        int64_t r0 = min(wq + r, a.n_q - 1), r1 = min(wq + r + 8, a.n_q - 1); // (rows past n_q: not stored)
        const T *p0 = (const T *)a.q + r0 * a.sq + (int64_t)h * HD, *p1 = (const T *)a.q + r1 * a.sq + (int64_t)h * HD;
#pragma unroll
        for (int ks = 0; ks < HD / 16; ks++) {
            qa[ks][0] = *(const uint32_t *)(p0 + 16 * ks + 2 * t);
            qa[ks][1] = *(const uint32_t *)(p1 + 16 * ks + 2 * t);
            qa[ks][2] = *(const uint32_t *)(p0 + 16 * ks + 2 * t + 8);
            qa[ks][3] = *(const uint32_t *)(p1 + 16 * ks + 2 * t + 8);
        }
    }
    // row i (0: r, 1: r + 8) sees key indices [klo[i], khi[i]]
    int64_t khi[2], klo[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int64_t qk = a.q_pos0 + wq + r + 8 * i - a.k_pos0; // the row's newest key index
        khi[i] = min(qk, a.n_k - 1);
        klo[i] = a.window > 0 ? qk - a.window + 1 : (int64_t)INT64_MIN / 2;
    }
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // running max (log2 units) and this lane's sum
    float o[HD / 8][4];
#pragma unroll
    for (int n = 0; n < HD / 8; n++)
        o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int it = 0; it < n_tiles; it++) {
        int64_t j0 = lo + (int64_t)it * FA_BK;
        if (it + 1 < n_tiles) fa_load_tile<T, HD>(sm, (it + 1) & 1, a, kh, j0 + FA_BK, hi);
        cp_async_commit();
        cp_async_wait<1>(); // this thread's copies of tile it are done; the barrier makes everyone's visible
        __syncthreads();
        const T *ks_ = sm + (size_t)((it & 1) * 2) * FA_BK * (HD + FA_PAD), *vs_ = ks_ + FA_BK * (HD + FA_PAD);

        float s[FA_BK / 8][4];
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++) {
            s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int k2 = 0; k2 < HD / 32; k2++) { // matrices: keys 8n + 0..7, dims 32 k2 + 8 (lane / 8)
                uint32_t b[4];
                ldmatrix_x4(b, ks_ + (8 * n + (lane & 7)) * (HD + FA_PAD) + 32 * k2 + 8 * (lane >> 3));
                mma16816<T>(s[n], qa[2 * k2], b[0], b[1]);
                mma16816<T>(s[n], qa[2 * k2 + 1], b[2], b[3]);
            }
        }
        // mask, scale, softcap (log2 units), then the online softmax step per row
        int lim[2], low[2]; // visible columns c of this tile: low <= c <= lim
#pragma unroll
        for (int i = 0; i < 2; i++) {
            lim[i] = (int)max(min(khi[i] - j0, (int64_t)FA_BK), (int64_t)-1);
            low[i] = (int)max(min(klo[i] - j0, (int64_t)FA_BK), (int64_t)-1);
        }
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int c = 8 * n + 2 * t + (e & 1), i = e >> 1;
                float x = s[n][e] * a.scale;
                if (a.softcap > 0.0f) x = a.softcap * tanhf(x / a.softcap);
                x = c >= low[i] && c <= lim[i] ? x * LOG2E : -INFINITY;
                s[n][e] = x;
                mx[i] = fmaxf(mx[i], x);
            }
        float base[2];
#pragma unroll
        for (int i = 0; i < 2; i++) {
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
            mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
            float mn = fmaxf(m[i], mx[i]);
            base[i] = mn == -INFINITY ? 0.0f : mn; // (no key seen yet: every term is exp2(-inf) = 0)
            float corr = exp2f(m[i] - base[i]);
            m[i] = mn;
            l[i] *= corr;
#pragma unroll
            for (int n = 0; n < HD / 8; n++)
                o[n][2 * i] *= corr, o[n][2 * i + 1] *= corr;
        }
#pragma unroll
        for (int n = 0; n < FA_BK / 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float pe = exp2f(s[n][e] - base[e >> 1]);
                s[n][e] = pe;
                l[e >> 1] += pe;
            }
            // O += P . V, 16 keys per k-step; matrices: keys 16 kk + 0..7 / 8..15, dims 16 dn + 0..7 / 8..15
#pragma unroll
        for (int kk = 0; kk < FA_BK / 16; kk++) {
            uint32_t pa[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]), pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                              pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dn = 0; dn < HD / 16; dn++) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, vs_ + (16 * kk + (lane & 7) + 8 * ((lane >> 3) & 1)) * (HD + FA_PAD) + 16 * dn +
                                         8 * (lane >> 4));
                mma16816<T>(o[2 * dn], pa, b[0], b[1]);
                mma16816<T>(o[2 * dn + 1], pa, b[2], b[3]);
            }
        }
        __syncthreads(); // the next iteration's copies overwrite this stage
    }
    cp_async_wait<0>();

#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
        int64_t row = wq + r + 8 * i;
        if (row >= a.n_q) continue;
        T *dst = (T *)a.out + row * a.so + (int64_t)h * HD + 2 * t;
#pragma unroll
        for (int n = 0; n < HD / 8; n++)
            *(uint32_t *)(dst + 8 * n) = pack2<T>(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    }
}

template <typename T, int HD> static void fa_launch(rill_stream *s, const fa_args &a, int n_heads) {
    static bool attr_set = false; // (the opt-in above 48 KB of shared memory, once per kernel)
    constexpr size_t smem = fa_smem<T, HD>();
    if (!attr_set) {
        if (!cuda_ok(s,
                     cudaFuncSetAttribute(attention_prefill_kernel<T, HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          (int)smem),
                     "attention (prefill)"))
            return;
        attr_set = true;
    }
    dim3 grid((unsigned)n_heads, (unsigned)((a.n_q + FA_BQ - 1) / FA_BQ));
    attention_prefill_kernel<T, HD><<<grid, FA_WARPS * 32, smem, s->cs>>>(a);
    cuda_launched(s, "attention (prefill)");
}

static bool rows_aligned(const rill_tensor *t, int64_t align_elems) {
    return ((uintptr_t)t->data & (2 * align_elems - 1)) == 0 && t->stride % align_elems == 0;
}

// RILL_CUDA_PREFILL_ATTN=gemm: prefill attention through cuBLAS (cuda_attention_gemm.cu) instead.
static bool prefill_flash_on(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("RILL_CUDA_PREFILL_ATTN");
        on = !(e && !strcmp(e, "gemm"));
    }
    return on != 0;
}

extern "C" bool cuda_attention_prefill(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                                       const rill_tensor *v, const rill_attn_params *p) {
    rill_dtype dt = q->dtype;
    if (!prefill_flash_on() || q->rows <= 8 || p->mask.q_pos_dev || (dt != DTYPE_F16 && dt != DTYPE_BF16) ||
        k->dtype != dt || v->dtype != dt || out->dtype != dt || k->rows < 1 || p->n_kv_heads < 1 ||
        p->n_heads % p->n_kv_heads != 0 || p->head_dim != p->v_head_dim || (p->head_dim != 64 && p->head_dim != 128) ||
        q->rows / FA_BQ >= 65535 || !rows_aligned(q, 2) || !rows_aligned(out, 2) || !rows_aligned(k, 8) ||
        !rows_aligned(v, 8))
        return false;
    fa_args a = {
        q->data,     k->data,   v->data, out->data,      q->stride,      k->stride,      v->stride,
        out->stride, q->rows,   k->rows, p->mask.q_pos0, p->mask.k_pos0, p->mask.window, p->n_heads / p->n_kv_heads,
        p->scale,    p->softcap};
    if (dt == DTYPE_BF16) {
        if (p->head_dim == 64)
            fa_launch<bf16, 64>(s, a, p->n_heads);
        else
            fa_launch<bf16, 128>(s, a, p->n_heads);
    } else {
        if (p->head_dim == 64)
            fa_launch<f16, 64>(s, a, p->n_heads);
        else
            fa_launch<f16, 128>(s, a, p->n_heads);
    }
    return true;
}
