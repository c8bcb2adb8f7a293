// cuda_gemv_dp4a.cu: the 4- and 8-bit decode GEMV (matmul for a few tokens) on the integer units. x is
// quantized to int8 per 32 values in two planes (the rounding residual quantized again, ~15 bits: as
// the CPU does), by its own launch or by the op that produces x (cuda_qx, cuda.h); then dp4a against
// the weights' nibbles or bytes (an 8-bit block's bytes permuted into x's order), a warp per 1-4
// rows, with a ring of 1-4 blocks of 32 values per row in flight and the first ones loaded before
// pdl_wait (programmatic dependent launch: they overlap the kernel before). One token on a matrix of
// 6144 rows or more (stacked q/k/v and gate/up, lm_head): the same arithmetic on a grid of resident
// blocks whose warps stream row after row. Also act(gate) * up written by the gate/up GEMV itself
// (norm_mlp).
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"
#include "base/env_switch.h"

// x [n_tok][n_in] -> int8 blocks of 32 for the dp4a GEMV (cuda_qx, cuda.h), one warp per
// block, a value per lane; xq [2][n_tok * n_in / 32][32] bytes, ordered per 8 values as
// (0,2,4,6),(1,3,5,7) to match the low and high nibbles of a packed word; xs: d / 254, the scale of
// 254 * s1 + s2; xsum: the exact f32 sum of the block. ACT >= 0: x is act(x) * u, rounded to TX as
// act_mul stores it (u: [n_tok][n_in], stride su); ACT < 0: x itself.
template <typename TX, int ACT>
__global__ void quant_x_kernel(int8_t *xq, float *xs, float *xsum, const TX *x, int64_t sx, const TX *u, int64_t su,
                               int64_t n_in, int n_tok) {
    pdl_wait();
    pdl_trigger();
    int64_t blk = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5), n_blk = n_in / 32;
    int64_t all = n_blk * n_tok;
    if (blk >= all) return;
    int lane = threadIdx.x & 31;
    int64_t t = blk / n_blk, b = blk % n_blk;
    float v = to_f32(x[t * sx + b * 32 + lane]);
    if (ACT >= 0) v = to_f32(from_f32<TX>(act_times<ACT>(v, to_f32(u[t * su + b * 32 + lane]))));
    qx_store_warp(xq, xs, xsum, blk, all, lane, v);
}

// c + the dot of the 4 unsigned bytes of a with the 4 signed bytes of b.
__device__ __forceinline__ int dp4a_us(unsigned a, unsigned b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

// The dp4a dot of 32 codes with one plane of x codes at a, b: lo[i] and hi[i] hold values 8i + (0, 2,
// 4, 6) and 8i + (1, 3, 5, 7), as x's planes order them; signed dp4a for 4-bit codes (0..15),
// unsigned-by-signed for 8-bit ones.
template <int BITS> __device__ __forceinline__ int dot32(const int lo[4], const int hi[4], uint4 a, uint4 b) {
    auto dp = [](int w, unsigned xv, int c) { return BITS == 8 ? dp4a_us((unsigned)w, xv, c) : __dp4a(w, (int)xv, c); };
    int d = dp(lo[0], a.x, 0);
    d = dp(hi[0], a.y, d);
    d = dp(lo[1], a.z, d);
    d = dp(hi[1], a.w, d);
    d = dp(lo[2], b.x, d);
    d = dp(hi[2], b.y, d);
    d = dp(lo[3], b.z, d);
    return dp(hi[3], b.w, d);
}

// A row's codes for one block of 32 values of x (cuda_qx): BITS / 4 16-byte words, values packed low
// bits first (MLX's order), so that word k of an 8-bit block holds values 16k..16k+15.
template <int BITS> struct qblock { uint4 u[BITS / 4]; };

// b = the block at 16-byte word `at` of the packed weights (streamed: read once).
template <int BITS> __device__ __forceinline__ void load_block(qblock<BITS> &b, const uint4 *packed, int64_t at) {
#pragma unroll
    for (int i = 0; i < BITS / 4; i++)
        b.u[i] = __ldcs(packed + at + i);
}

// A block's 32 codes in x's plane order: lo[i] values 8i + (0, 2, 4, 6), hi[i] 8i + (1, 3, 5, 7). A
// 4-bit word's low and high nibbles are that order already; an 8-bit block's bytes are permuted.
template <int BITS> __device__ __forceinline__ void block_codes(const qblock<BITS> &w, int lo[4], int hi[4]) {
    if constexpr (BITS == 4) {
        const uint4 v = w.u[0];
        lo[0] = (int)(v.x & 0x0f0f0f0fu), lo[1] = (int)(v.y & 0x0f0f0f0fu), lo[2] = (int)(v.z & 0x0f0f0f0fu),
        lo[3] = (int)(v.w & 0x0f0f0f0fu);
        hi[0] = (int)((v.x >> 4) & 0x0f0f0f0fu), hi[1] = (int)((v.y >> 4) & 0x0f0f0f0fu),
        hi[2] = (int)((v.z >> 4) & 0x0f0f0f0fu), hi[3] = (int)((v.w >> 4) & 0x0f0f0f0fu);
    } else {
        const unsigned v[8] = {w.u[0].x, w.u[0].y, w.u[0].z, w.u[0].w, w.u[1].x, w.u[1].y, w.u[1].z, w.u[1].w};
#pragma unroll
        for (int i = 0; i < 4; i++)
            lo[i] = (int)__byte_perm(v[2 * i], v[2 * i + 1], 0x6420),
            hi[i] = (int)__byte_perm(v[2 * i], v[2 * i + 1], 0x7531);
    }
}

// acc + the dot of a row's block of 32 codes (scale wsc, bias wbi) with its x block (planes a0 a1 and
// b0 b1, scale xsc, sum xsm). |254 s1 + s2| <= 254 x 32 x 255 x 127 < 2^31; at 4 bits < 2^24 (exact
// in f32), at 8 bits its f32 conversion rounds (2^-24 relative).
template <int BITS>
__device__ __forceinline__ float block_dot(const qblock<BITS> &w, uint4 a0, uint4 a1, uint4 b0, uint4 b1, float wsc,
                                           float wbi, float xsc, float xsm, float acc) {
    int lo[4], hi[4];
    block_codes(w, lo, hi);
    int d = 254 * dot32<BITS>(lo, hi, a0, a1) + dot32<BITS>(lo, hi, b0, b1);
    return fmaf(wsc * xsc, (float)d, fmaf(wbi, xsm, acc));
}

// A ring slot's words, scales and biases (one per row) taken out for use, before the slot is refilled.
template <typename W, int ROWS>
__device__ __forceinline__ void ring_take(const W (&ring)[ROWS], const float (&sc)[ROWS], const float (&bi)[ROWS],
                                          W (&w)[ROWS], float (&wsc)[ROWS], float (&wbi)[ROWS]) {
#pragma unroll
    for (int r = 0; r < ROWS; r++)
        w[r] = ring[r], wsc[r] = sc[r], wbi[r] = bi[r];
}

// Blocks per SM that the registers of gemv_dp4a_kernel are capped for (64K registers, 256 threads):
// 4 (64 registers) for up to 2 words in flight per lane, 3 (85) for 4 words on up to 2 rows, else 2.
constexpr int dp4a_min_blocks(int rows, int maxt, int d) {
    return maxt > 1 ? 1 : rows * d <= 2 ? 4 : rows * d == 4 && rows < 4 ? 3 : 2;
}

// 4- or 8-bit weights (packed, scales, biases as in gemv_affine_kernel) against two-plane int8 x blocks:
// acc += w_scale * x_scale * (254 * sum(q * xq1) + sum(q * xq2)) + w_bias * sum(x), per block of 32
// values (|254 * s1 + s2| < 2^24: exact in f32). Each warp takes ROWS rows (each lane's x block,
// read once, serves all of them: the x reads, not the weights, were what kept the L1 busy - ncu on
// H200, 4096 x 14336: L1 63% busy, DRAM 49%) or, with SPLIT > 1, a share of one row's columns
// (summed in shared memory), so that matrices with few rows still put warps on every SM. MAXT:
// the most tokens (1 for plain decode, which frees the registers of the other seven). D: 16-byte
// words per row and lane in flight (a ring: a word's slot is refilled with the word D steps ahead
// before the word is used); the first D are loaded before pdl_wait, overlapping the kernel before.
// ACT >= 0 (with SPLIT 1, ROWS 2, MAXT 1): a warp's two rows are gate row p and up row p + n_out / 2
// of a stacked gate/up weight, and it writes out[p] = act(gate) * up, each rounded as act_mul rounds.
// ACT == DP4A_ROPE (the same shape): a warp's two rows are the pair RoPE rotates together (rope_pair),
// written rotated as the rope op would leave them (each rounded, rotated, rounded again). Both take
// ne: with ne.ss set, x was prepared unnormalized and the dot products are scaled by its norm first.
enum { DP4A_ROPE = -2 };

// Pair p of RoPE mode's rows: within the rotated heads, (e, e + head_dim / 2) of a head, or (2i,
// 2i + 1) interleaved; past them, consecutive rows, not rotated (*i = -1); else *i: the angle's index.
__device__ __forceinline__ void rope_pair(const cuda_rope_epi &re, int64_t p, int64_t *r0, int64_t *r1, int *i) {
    int64_t rot_pairs = re.n_rot_rows / 2, hh = re.head_dim / 2;
    if (p < rot_pairs) {
        int64_t head = p / hh, k = p - head * hh;
        *r0 = head * re.head_dim + (re.interleaved ? 2 * k : k);
        *r1 = re.interleaved ? *r0 + 1 : *r0 + hh;
        *i = re.interleaved ? (2 * k < re.rot_dims ? (int)k : -1) : (int)k;
    } else {
        *r0 = re.n_rot_rows + 2 * (p - rot_pairs);
        *r1 = *r0 + 1;
        *i = -1;
    }
}

template <typename TX, typename TS, int BITS, int SPLIT, int ROWS, int MAXT, int D, int ACT = -1>
__global__ void __launch_bounds__(GEMV_WARPS * 32, dp4a_min_blocks(ROWS, MAXT, D *BITS / 4))
    gemv_dp4a_kernel(TX *out, int64_t so, const uint4 *xq, const float *xs, const float *xsum, const uint4 *packed,
                     const TS *scales, const TS *biases, const float *bias, int64_t n_out, int64_t n_in, int gs,
                     int n_tok, cuda_rope_epi re, cuda_norm_epi ne) {
    __shared__ float part[GEMV_WARPS][MAXT];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, share = warp % SPLIT;
    int64_t row0 = ((int64_t)blockIdx.x * (GEMV_WARPS / SPLIT) + warp / SPLIT) * ROWS;
    int64_t n_vec = n_in / 32, groups = n_in / gs, plane2 = 2 * n_vec * n_tok; // uint4 offset of plane 2
    int gsh = __ffs(gs) - 1;
    bool gs_pow2 = (gs & (gs - 1)) == 0;
    constexpr bool PAIRS = ACT >= 0 || ACT == DP4A_ROPE;
    static_assert(!PAIRS || (SPLIT == 1 && ROWS == 2 && MAXT == 1), "act(gate) * up and RoPE take a row pair per warp");
    const int64_t pair = (int64_t)blockIdx.x * GEMV_WARPS + warp, half = n_out / 2; // (PAIRS)
    int64_t rows[ROWS]; // clamped: a row past the end is computed and dropped (it stays for the barrier)
    int rope_i = -1;    // (DP4A_ROPE) the pair's angle index, -1: not rotated
    if constexpr (ACT == DP4A_ROPE) {
        rope_pair(re, pair < half ? pair : half - 1, &rows[0], &rows[ROWS - 1], &rope_i);
    } else {
#pragma unroll
        for (int r = 0; r < ROWS; r++)
            rows[r] = ACT >= 0 ? (pair < half ? pair : half - 1) + r * half : row0 + r < n_out ? row0 + r : n_out - 1;
    }
    float acc[ROWS][MAXT];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
#pragma unroll
        for (int t = 0; t < MAXT; t++)
            acc[r][t] = 0.0f;
    // word indices and row offsets in 32 bits (the caller keeps n_in under 2^26 and n_out x n_in / 32 under
    // 2^31): fewer registers
    const int nv = (int)n_vec, step = 32 * SPLIT, v0 = share * 32 + lane; // this lane's words: v0, v0 + step, ...
    constexpr int BW = BITS / 4;                                          // 16-byte words per block of 32 values
    int wofs[ROWS], sofs[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
        wofs[r] = (int)rows[r] * nv * BW, sofs[r] = (int)rows[r] * (int)groups;
    qblock<BITS> wq[D][ROWS]; // a ring of D blocks per row: slot p holds block v0 + (k D + p) step
    float sc[D][ROWS], bi[D][ROWS];
    auto load = [&](int p, int v) { // (p is a constant once the loops are unrolled)
        if (v >= nv) return;
        int g = gs_pow2 ? (v * 32) >> gsh : v * 32 / gs;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            load_block(wq[p][r], packed, wofs[r] + v * BW);
            sc[p][r] = to_f32(scales[sofs[r] + g]), bi[p][r] = group_bias(biases, sofs[r] + g, sc[p][r], BITS);
        }
    };
#pragma unroll
    for (int p = 0; p < D; p++) // weights only: nothing an earlier kernel wrote
        load(p, v0 + p * step);
    pdl_wait();
    pdl_trigger();
    float ss0 = 0.0f; // (PAIRS, ne.ss) this lane's first partial sum of squares, asked for now, used last
    if constexpr (PAIRS) {
        if (ne.ss && lane < ne.n_ss) ss0 = load_early(ne.ss + lane);
    }
    float rope_c = 1.0f, rope_s = 0.0f; // (DP4A_ROPE) cos and sin times mscale, while the weights stream
    if constexpr (ACT == DP4A_ROPE) {
        if (rope_i >= 0) rope_cos_sin(*re.pos, re.inv_freq[rope_i], re.mscale, &rope_c, &rope_s);
    }
    for (int vb = v0; vb < nv; vb += D * step) {
#pragma unroll
        for (int p = 0; p < D; p++) {
            int v = vb + p * step;
            if (v >= nv) break;
            qblock<BITS> w[ROWS];
            float wsc[ROWS], wbi[ROWS];
            ring_take(wq[p], sc[p], bi[p], w, wsc, wbi);
            load(p, v + D * step); // the slot's next block is in flight while this one is used
#pragma unroll
            for (int t = 0; t < MAXT; t++) {
                if (t >= n_tok) break;
                int xb = t * nv + v;
                uint4 a0 = xq[2 * xb], a1 = xq[2 * xb + 1], b0 = xq[plane2 + 2 * xb], b1 = xq[plane2 + 2 * xb + 1];
                float xsc = xs[xb], xsm = xsum[xb];
#pragma unroll
                for (int r = 0; r < ROWS; r++)
                    acc[r][t] = block_dot(w[r], a0, a1, b0, b1, wsc[r], wbi[r], xsc, xsm, acc[r][t]);
            }
        }
    }
    float inv = 1.0f; // (PAIRS) the prepared norm's factor
    if constexpr (PAIRS) {
        if (ne.ss) inv = prepared_norm_scale(ne, ss0, lane);
    }
    if constexpr (ACT == DP4A_ROPE) {
        float x0 = warp_sum(acc[0][0]) * inv, x1 = warp_sum(acc[ROWS - 1][0]) * inv;
        if (lane == 0 && pair < half) {
            x0 = to_f32(from_f32<TX>(x0 + (bias ? bias[rows[0]] : 0.0f)));
            x1 = to_f32(from_f32<TX>(x1 + (bias ? bias[rows[ROWS - 1]] : 0.0f)));
            out[rows[0]] = from_f32<TX>(rope_i >= 0 ? x0 * rope_c - x1 * rope_s : x0);
            out[rows[ROWS - 1]] = from_f32<TX>(rope_i >= 0 ? x1 * rope_c + x0 * rope_s : x1);
        }
    } else if constexpr (ACT >= 0) {
        float g = warp_sum(acc[0][0]) * inv, u = warp_sum(acc[ROWS - 1][0]) * inv;
        if (lane == 0 && pair < half) {
            g = to_f32(from_f32<TX>(g + (bias ? bias[rows[0]] : 0.0f)));
            u = to_f32(from_f32<TX>(u + (bias ? bias[rows[ROWS - 1]] : 0.0f)));
            out[pair] = from_f32<TX>(act_times<ACT>(g, u));
        }
    } else {
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            bool live = row0 + r < n_out;
#pragma unroll
            for (int t = 0; t < MAXT; t++) {
                if (t >= n_tok) break;
                float x = warp_sum(acc[r][t]);
                if (SPLIT == 1) {
                    if (lane == 0 && live) out[t * so + rows[r]] = from_f32<TX>(x + (bias ? bias[rows[r]] : 0.0f));
                } else if (lane == 0)
                    part[warp][t] = x;
            }
        }
        if (SPLIT == 1) return;
        __syncthreads(); // (SPLIT > 1 comes with ROWS 1)
        if (share == 0 && lane < n_tok && row0 < n_out) {
            float x = 0.0f;
#pragma unroll
            for (int k = 0; k < SPLIT; k++)
                x += part[warp + k][lane];
            out[lane * so + row0] = from_f32<TX>(x + (bias ? bias[row0] : 0.0f));
        }
    }
}

// The dp4a GEMV for one token on a grid of resident blocks (gemv_dp4a_kernel's arithmetic and
// data, other scheduling): warp gw of nw takes row groups gw, gw + nw, ... of ROWS rows each, and its
// ring of D words per row runs on from one row group into the next, so the next rows' words are in
// flight while it reduces the last ones, and no block ends (and frees its SM slot) before the
// matrix is done. The caller keeps n_out x n_in / 32 under 2^31.
template <typename TX, typename TS, int BITS, int ROWS, int D>
__global__ void __launch_bounds__(GEMV_WARPS * 32, dp4a_min_blocks(ROWS, 1, D *BITS / 4))
    gemv_dp4a_stream_kernel(TX *out, const uint4 *xq, const float *xs, const float *xsum, const uint4 *packed,
                            const TS *scales, const TS *biases, const float *bias, int64_t n_out, int64_t n_in,
                            int gs) {
    const int lane = threadIdx.x & 31, nw = (int)gridDim.x * GEMV_WARPS;
    const int gw = (int)blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    const int nv = (int)(n_in / 32), wpl = (nv + 31) / 32, groups = (int)(n_in / gs), last = (int)n_out - 1;
    const int n_groups = (int)((n_out + ROWS - 1) / ROWS);
    const int total = gw < n_groups ? (n_groups - gw + nw - 1) / nw * wpl : 0; // (row group, word) items
    const int gsh = __ffs(gs) - 1, plane2 = 2 * nv;
    const bool gs_pow2 = (gs & (gs - 1)) == 0;
    qblock<BITS> wq[D][ROWS]; // a ring of D items: slot p holds item k D + p
    float sc[D][ROWS], bi[D][ROWS];
    int lg = gw, lj = 0; // the next item to load: row group lg, the lane's block lj
    auto load = [&](int p) {
        if (lg >= n_groups) return;
        int v = lane + 32 * lj;
        if (v < nv) {
            int g = gs_pow2 ? (v * 32) >> gsh : v * 32 / gs;
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                int row = min(lg * ROWS + r, last);
                load_block(wq[p][r], packed, (row * nv + v) * (BITS / 4));
                sc[p][r] = to_f32(scales[row * groups + g]),
                bi[p][r] = group_bias(biases, row * groups + g, sc[p][r], BITS);
            }
        }
        if (++lj == wpl) lj = 0, lg += nw;
    };
#pragma unroll
    for (int p = 0; p < D; p++) // weights only: nothing an earlier kernel wrote
        load(p);
    pdl_wait();
    pdl_trigger();
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
        acc[r] = 0.0f;
    int cg = gw, cj = 0;  // the item in use
    auto finish = [&]() { // row group cg is done
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            float x = warp_sum(acc[r]);
            acc[r] = 0.0f;
            int row = cg * ROWS + r;
            if (lane == 0 && row <= last) out[row] = from_f32<TX>(x + (bias ? bias[row] : 0.0f));
        }
        cg += nw;
    };
    for (int i0 = 0; i0 < total; i0 += D) {
#pragma unroll
        for (int p = 0; p < D; p++) {
            if (i0 + p >= total) break;
            qblock<BITS> w[ROWS];
            float wsc[ROWS], wbi[ROWS];
            ring_take(wq[p], sc[p], bi[p], w, wsc, wbi);
            load(p); // the slot's next item is in flight while this one is used
            int v = lane + 32 * cj;
            if (v < nv) {
                uint4 a0 = xq[2 * v], a1 = xq[2 * v + 1], b0 = xq[plane2 + 2 * v], b1 = xq[plane2 + 2 * v + 1];
                float xsc = xs[v], xsm = xsum[v];
#pragma unroll
                for (int r = 0; r < ROWS; r++)
                    acc[r] = block_dot(w[r], a0, a1, b0, b1, wsc[r], wbi[r], xsc, xsm, acc[r]);
            }
            if (++cj == wpl) cj = 0, finish();
        }
    }
}

// The dp4a GEMV for one token whose output joins the residual (cuda_gemv_add_norm): a block of
// 32 / ROWS warps owns 32 rows, ROWS per warp. Every block quantizes the whole of x (a, the
// activation dtype) into its shared memory itself, so no launch before it does; then
// gemv_dp4a_kernel's arithmetic with a ring of D words per row and lane (the first before
// pdl_wait), and residual_prepare at the end: x += out, the next norm prepared. Shared memory: x's
// two planes [2][n_vec][32] int8, then its scales and sums [n_vec] f32 (cuda_qx's layout, one token).
template <typename TX, typename TS, int BITS, int ROWS, int D>
__global__ void __launch_bounds__(32 / ROWS * 32)
    gemv_dp4a_res_kernel(const TX *a, const uint4 *packed, const TS *scales, const TS *biases, const float *bias,
                         int n_in, int gs, cuda_res_epi re) {
    constexpr int WARPS = 32 / ROWS;
    extern __shared__ uint4 xq[]; // [2][nv][2] words of codes, then [nv] scales and [nv] sums
    __shared__ float outs[32];    // the block's rows
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nv = n_in / 32, groups = n_in / gs;
    const int row0 = (int)blockIdx.x * 32 + warp * ROWS, gsh = __ffs(gs) - 1;
    const bool gs_pow2 = (gs & (gs - 1)) == 0;
    qblock<BITS> wq[D][ROWS]; // a ring: slot p holds block lane + (k D + p) 32 of each row
    float sc[D][ROWS], bi[D][ROWS];
    auto load = [&](int p, int v) {
        if (v >= nv) return;
        int g = gs_pow2 ? (v * 32) >> gsh : v * 32 / gs;
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            int64_t row = row0 + r;
            load_block(wq[p][r], packed, (row * nv + v) * (BITS / 4));
            sc[p][r] = to_f32(scales[row * groups + g]),
            bi[p][r] = group_bias(biases, row * groups + g, sc[p][r], BITS);
        }
    };
#pragma unroll
    for (int p = 0; p < D; p++) // weights only: nothing an earlier kernel wrote
        load(p, lane + 32 * p);
    const int own = (int)blockIdx.x * 32 + lane; // (warp 0) the residual row this lane ends with
    float nw = warp == 0 ? re.w[own] : 0.0f;
    pdl_wait();
    pdl_trigger();
    int8_t *codes = (int8_t *)xq;
    float *xs = (float *)(codes + (int64_t)64 * nv), *xsum = xs + nv;
    for (int b0 = warp; b0 < nv; b0 += 4 * WARPS) { // 4 blocks of x per warp and step: their loads in flight together
        float v[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
            v[k] = b0 + k * WARPS < nv ? load_early(a + (b0 + k * WARPS) * 32 + lane) : 0.0f;
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (b0 + k * WARPS < nv) qx_store_warp(codes, xs, xsum, b0 + k * WARPS, nv, lane, v[k]);
    }
    float xr = warp == 0 ? load_early((const TX *)re.x + own) : 0.0f; // (used last)
    __syncthreads();
    float acc[ROWS];
#pragma unroll
    for (int r = 0; r < ROWS; r++)
        acc[r] = 0.0f;
    for (int vb = lane; vb < nv; vb += D * 32) {
#pragma unroll
        for (int p = 0; p < D; p++) {
            int v = vb + p * 32;
            if (v >= nv) break;
            qblock<BITS> w[ROWS];
            float wsc[ROWS], wbi[ROWS];
            ring_take(wq[p], sc[p], bi[p], w, wsc, wbi);
            load(p, v + D * 32); // the slot's next block is in flight while this one is used
            uint4 a0 = xq[2 * v], a1 = xq[2 * v + 1], b0 = xq[2 * nv + 2 * v], b1 = xq[2 * nv + 2 * v + 1];
#pragma unroll
            for (int r = 0; r < ROWS; r++)
                acc[r] = block_dot(w[r], a0, a1, b0, b1, wsc[r], wbi[r], xs[v], xsum[v], acc[r]);
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        float x = warp_sum(acc[r]);
        if (lane == 0) outs[warp * ROWS + r] = x + (bias ? bias[row0 + r] : 0.0f);
    }
    __syncthreads();
    if (warp == 0) residual_prepare<TX>(re, outs[lane], xr, nw, lane);
}

// Rows per warp of the dp4a GEMV on matrices of 2048 rows or more: 2 for one token, 4 for more
// (H200, Llama-3-8B layer per token: 56.5 us with 2, 57.2 with 4, 69.4 with 1; 8 tokens of 14336 x
// 4096: 45.9 us with 4, 57.2 with 2, 79.9 with 1). RILL_CUDA_GEMV_ROWS=1, 2 or 4 sets it, for
// measuring one against the other.
static int gemv_rows(int n_tok) {
    static int forced = -1; // (read once: 0 for none)
    if (forced < 0) {
        const char *e = getenv("RILL_CUDA_GEMV_ROWS");
        forced = e && (!strcmp(e, "1") || !strcmp(e, "2") || !strcmp(e, "4")) ? atoi(e) : 0;
    }
    return forced ? forced : n_tok > 1 ? 4 : 2;
}

// Words per row and lane in flight in the dp4a GEMV for one token (the kernel's D), by shape: rows
// where a lane has more than 4 words (down: 14336 columns), matrices of 16384 rows or more (gate/up
// stacked, lm_head), and the others (q/k/v, o). RILL_CUDA_GEMV_DEPTH=L,T,S (each 1, 2 or 4) sets
// the three; 1,1,1 is a word loaded while the one before is used, as before 2026-11-26's change.
// The others went from 1 to 4 on 2026-11-27 (H100, alternated: Llama-3-8B short 468.0-469.3 ->
// 477.6-478.7 tok/s, its o's 4 words a lane all in flight at once; SmolLM2, whose block-kernel
// rows have one word a lane, even).
static int gemv_depth(int rows, int64_t n_out, int64_t words_per_lane) {
    static int d[3] = {0, 0, 0}; // (read once)
    if (!d[0]) {
        int v[3] = {4, 1, 4};
        const char *e = getenv("RILL_CUDA_GEMV_DEPTH");
        if (e && strlen(e) == 5)
            for (int k = 0; k < 3; k++)
                if (e[2 * k] == '1' || e[2 * k] == '2' || e[2 * k] == '4') v[k] = e[2 * k] - '0';
        d[1] = v[1], d[2] = v[2], d[0] = v[0];
    }
    int depth = words_per_lane > 4 ? d[0] : n_out >= 16384 ? d[1] : d[2];
    return rows == 4 && depth > 2 ? 2 : depth;
}

// One-token GEMVs of stream_min_rows() rows or more run on gemv_dp4a_stream_kernel with 4 rows per
// warp and 1 word in flight. Against the block kernel from 16384 rows, alternated: Llama-3-8B (its
// stacked gate/up and lm_head) H100 416.1 -> 424.5 tok/s (2 rows: 420.8), H200 465 -> 479.5 (2
// rows: 477.9); SmolLM2 (its lm_head) H100 1,658 -> 1,670 (2 rows: 1,665), H200 1,694 -> 1,697 (2
// rows: 1,705). On q/k/v, o and down it lost (H200: 419 tok/s with every matrix of 2048 rows or
// more). RILL_CUDA_GEMV_STREAM=R,D sets rows per warp and words in flight (1,4 2,1 2,2 2,4 4,1 or
// 4,2), 0 keeps gemv_dp4a_kernel (both for measuring).
static bool stream_mode(int *rows, int *depth) {
    static int r = -1, d = 0; // r 0: off
    if (r < 0) {
        const char *e = getenv("RILL_CUDA_GEMV_STREAM");
        static const char *const pairs[] = {"1,4", "2,1", "2,2", "2,4", "4,1", "4,2"}; // (instantiated)
        r = 4, d = 1;
        if (e && !strcmp(e, "0")) r = 0;
        for (size_t i = 0; e && i < sizeof pairs / sizeof pairs[0]; i++)
            if (!strcmp(e, pairs[i])) r = e[0] - '0', d = e[2] - '0';
    }
    *rows = r, *depth = d;
    return r > 0;
}

// The fewest rows a matrix has for the stream kernel: RILL_CUDA_GEMV_STREAM_ROWS, else 6144 (H100,
// Llama-3-8B: with its stacked q/k/v too, 425.4 -> 429.3 tok/s; o and down, 4096 rows, lost).
static int64_t stream_min_rows(void) {
    static int64_t rows = -1;
    return env_count("RILL_CUDA_GEMV_STREAM_ROWS", 6144, &rows);
}

// Blocks of kernel k that fit on the whole card at once (a failed query counts 1 block on each of
// 132 SMs, and its error is cleared).
static int resident_blocks(const void *k) {
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1) {
        cudaGetLastError();
        sms = 132;
    }
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, GEMV_WARPS * 32, 0) != cudaSuccess || per_sm < 1) {
        cudaGetLastError();
        per_sm = 1;
    }
    return sms * per_sm;
}

// CUDA_DISPATCH on w's scale dtype, with TS = f16_zp where the upload left w's biases out, and B
// bound to w's bits (4 or 8).
#define SCALE_DISPATCH(s, op, w, TS, ...)                                                                              \
    do {                                                                                                               \
        if (!(w)->biases && (w)->dtype == DTYPE_F16) {                                                                 \
            typedef f16_zp TS;                                                                                         \
            __VA_ARGS__;                                                                                               \
        } else                                                                                                         \
            CUDA_DISPATCH(s, op, (w)->dtype, TS, __VA_ARGS__);                                                         \
    } while (0)
#define DP4A_DISPATCH(s, op, w, TS, B, ...)                                                                            \
    do {                                                                                                               \
        if ((w)->bits == 8) {                                                                                          \
            constexpr int B = 8;                                                                                       \
            SCALE_DISPATCH(s, op, w, TS, __VA_ARGS__);                                                                 \
        } else {                                                                                                       \
            constexpr int B = 4;                                                                                       \
            SCALE_DISPATCH(s, op, w, TS, __VA_ARGS__);                                                                 \
        }                                                                                                              \
    } while (0)

// Blocks of 32 values per row and lane in flight for `words` 16-byte words (the depth the 4-bit
// GEMV was tuned in): an 8-bit block is two words, so half as many, and at least one.
constexpr int block_depth(int bits, int words) { return bits == 8 ? (words > 1 ? words / 2 : 1) : words; }

template <typename TX, typename TS, int BITS, int ROWS, int D>
static void gemv_dp4a_stream(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w) {
    auto k = gemv_dp4a_stream_kernel<TX, TS, BITS, ROWS, block_depth(BITS, D)>;
    int64_t want = (w->rows + (int64_t)ROWS * GEMV_WARPS - 1) / ((int64_t)ROWS * GEMV_WARPS);
    static const int64_t most = resident_blocks((const void *)k); // (once per kernel, thread-safe)
    cuda_launch_pdl(s, k, (unsigned)(want < most ? want : most), GEMV_WARPS * 32, 0, (TX *)out->data,
                    (const uint4 *)q->codes, (const float *)q->scale, (const float *)q->sum, (const uint4 *)w->packed,
                    (const TS *)w->scales, (const TS *)w->biases, (const float *)w->bias, w->rows, w->cols,
                    w->group_size);
}

// The dp4a GEMV splits each row's columns over 4 warps for matrices of fewer rows than this (and
// 2048 columns or more), so that they still put warps on every SM: 2048 unless
// RILL_CUDA_GEMV_SPLIT_BELOW says (for measuring).
static int64_t gemv_split_below(void) {
    static int64_t rows = -1;
    return env_count("RILL_CUDA_GEMV_SPLIT_BELOW", 2048, &rows);
}

extern "C" bool cuda_gemv_dp4a_streams(const rill_weight *w, int64_t n_tok) {
    int r, d;
    return n_tok == 1 && w->rows >= stream_min_rows() && !(w->rows < gemv_split_below() && w->cols >= 2048) &&
           stream_mode(&r, &d);
}

// RILL_CUDA_GEMV=float keeps 4- and 8-bit weights on the f32 path (for measuring one against the other).
static bool float_only(void) {
    static int on = -1; // (read once)
    if (on < 0) {
        const char *e = getenv("RILL_CUDA_GEMV");
        on = e && !strcmp(e, "float");
    }
    return on != 0;
}

// A small 4- or 8-bit matrix whose x comes unquantized (o after attention, q/k/v apart) takes the f32 path:
// one launch instead of two, for more instructions per weight. Up to 2^20 weights (H200: SmolLM2's o,
// 576 x 576: decode 1,567 -> 1,599 tok/s; Llama-3-8B's o, 4096 x 4096, would lose 464 -> 437).
// RILL_CUDA_GEMV_FLOAT_MAX sets the most weights (rows x columns) for which it does; 0 turns it off.
static bool float_pays(const rill_weight *w, int nt) {
    static int64_t most = -1;
    return nt == 1 && w->rows * w->cols <= env_count("RILL_CUDA_GEMV_FLOAT_MAX", (int64_t)1 << 20, &most);
}

extern "C" bool cuda_gemv_wants_qx(const rill_weight *w, rill_dtype dt, int64_t n_tok) {
    return cuda_gemv_dp4a_fits(w, dt, n_tok) && !float_pays(w, (int)n_tok);
}

extern "C" bool cuda_gemv_dp4a_fits(const rill_weight *w, rill_dtype dt, int64_t n_tok) {
    return dt != DTYPE_F32 && n_tok >= 1 && n_tok <= CUDA_GEMV_MAX_TOK && w->kind == WEIGHT_AFFINE &&
           (w->bits == 4 || w->bits == 8) && w->group_size >= 32 && w->group_size % 32 == 0 && w->cols % 32 == 0 &&
           aligned16(w->packed) && w->cols < ((int64_t)1 << 26) &&
           w->rows * (w->cols / 32) * (w->bits / 4) < ((int64_t)1 << 31) && !float_only();
}

// Columns the residual GEMV takes: its x planes in shared memory (72 bytes per 32 values) stay
// within the 48 KB a launch gets without asking. It takes the small matrices for which matmul runs
// the f32 GEMV (2^20 weights or fewer: no launch quantizes their x): on Llama-3-8B's o (4096 x 4096,
// the norm after it not folded, H100) it lost 464 -> 432 tok/s.
enum { RES_MAX_IN = 16384 };

extern "C" bool cuda_gemv_add_norm_fits(const rill_tensor *x, const rill_tensor *a, const rill_weight *w) {
    return x->rows == 1 && a->rows == 1 && x->dtype == a->dtype && w->rows == x->cols && w->cols == a->cols &&
           w->rows % 32 == 0 && w->rows / 32 < 0x7fffffff && w->cols <= RES_MAX_IN &&
           !cuda_gemv_wants_qx(w, a->dtype, 1) && cuda_gemv_dp4a_fits(w, a->dtype, 1);
}

// Rows per warp of the residual GEMV: RILL_CUDA_RES_ROWS (1, 2 or 4; to measure), else 2: blocks of
// 512 threads. H100, SmolLM2-135M, alternated: 1 row 2,176 tok/s (1024-thread blocks: one takes a
// whole SM's registers, so it cannot start beside the kernel before it), 2 rows 2,213, 4 rows 2,066
// (8 warps quantize x: twice the steps per warp), the norms unfolded 2,102.
static int res_rows(void) {
    static int rows = 0;
    if (!rows) {
        const char *e = getenv("RILL_CUDA_RES_ROWS");
        rows = e && (!strcmp(e, "1") || !strcmp(e, "4")) ? e[0] - '0' : 2;
    }
    return rows;
}

template <typename TX>
static void gemv_add_norm(rill_stream *s, const rill_tensor *a, const rill_weight *w, const cuda_res_epi *re) {
    int rows = res_rows(), deep = w->cols > 32 * 32; // (more than one word per lane: two in flight)
    size_t smem = (size_t)(w->cols / 32) * 72;
#define RES_LAUNCH(R, D)                                                                                               \
    DP4A_DISPATCH(s, "matmul_add_norm", w, TS, B,                                                                      \
                  cuda_launch_pdl(s, gemv_dp4a_res_kernel<TX, TS, B, R, block_depth(B, D)>, (unsigned)(w->rows / 32),  \
                                  32 / R * 32, smem, (const TX *)a->data, (const uint4 *)w->packed,                    \
                                  (const TS *)w->scales, (const TS *)w->biases, (const float *)w->bias, (int)w->cols,  \
                                  w->group_size, *re))
    if (rows == 4 && deep)
        RES_LAUNCH(4, 2);
    else if (rows == 4)
        RES_LAUNCH(4, 1);
    else if (rows == 2 && deep)
        RES_LAUNCH(2, 2);
    else if (rows == 2)
        RES_LAUNCH(2, 1);
    else if (deep)
        RES_LAUNCH(1, 2);
    else
        RES_LAUNCH(1, 1);
#undef RES_LAUNCH
    cuda_launched(s, "matmul_add_norm (gemv)");
}

extern "C" void cuda_gemv_add_norm(rill_stream *s, const rill_tensor *a, const rill_weight *w, const cuda_res_epi *re) {
    if (a->dtype == DTYPE_BF16)
        gemv_add_norm<bf16>(s, a, w, re);
    else
        gemv_add_norm<f16>(s, a, w, re);
}

extern "C" bool cuda_qx_scratch(rill_stream *s, int64_t n_tok, int64_t n_in, cuda_qx *q, const char *op) {
    q->n_blk = n_in / 32 * n_tok;
    char *buf = (char *)cuda_scratch(s, (size_t)q->n_blk * 76, op);
    if (!buf) return false;
    q->codes = (int8_t *)buf;
    q->scale = (float *)(buf + q->n_blk * 64);
    q->sum = q->scale + q->n_blk;
    q->ss = q->sum + q->n_blk;
    return true;
}

template <typename TX, int ACT>
static void quantize(rill_stream *s, const cuda_qx *q, const rill_tensor *x, const rill_tensor *u) {
    cuda_launch_pdl(s, quant_x_kernel<TX, ACT>, (unsigned)((q->n_blk + 7) / 8), 256, 0, q->codes, q->scale, q->sum,
                    (const TX *)x->data, x->stride, (const TX *)(u ? u->data : NULL), u ? u->stride : 0, x->cols,
                    (int)x->rows);
    cuda_launched(s, "matmul (quantize x)");
}

extern "C" void cuda_quantize_x(rill_stream *s, const cuda_qx *q, const rill_tensor *x) {
    CUDA_DISPATCH(s, "matmul (quantize x)", x->dtype, TX, quantize<TX, -1>(s, q, x, NULL));
}

extern "C" bool cuda_take_quantized(rill_stream *s, const rill_tensor *x, cuda_qx *q) {
    if (!s->qx_ready.x || s->qx_ready.x != x->data || x->rows != 1 || x->cols != s->qx_ready.cols) return false;
    *q = s->qx_ready.q;
    s->qx_ready.x = NULL;
    return true;
}

extern "C" void cuda_quantize_act(rill_stream *s, const cuda_qx *q, const rill_tensor *gate, const rill_tensor *up,
                                  rill_act act) {
    if (act == ACT_SILU)
        CUDA_DISPATCH(s, "act_matmul (quantize)", gate->dtype, TX, quantize<TX, ACT_SILU>(s, q, gate, up));
    else
        CUDA_DISPATCH(s, "act_matmul (quantize)", gate->dtype, TX, quantize<TX, ACT_GELU_TANH>(s, q, gate, up));
}

// The dp4a GEMV from x quantized in q (TX: f16 or bf16, the dtype of out).
template <typename TX> static void gemv_dp4a(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w) {
    dim3 block(GEMV_WARPS * 32);
    TX *o = (TX *)out->data;
    int nt = (int)out->rows;
    const int8_t *xq = q->codes;
    const float *xs = q->scale, *xsum = q->sum;
    // warps per row: enough rows x warps to fill the SMs several times over (H100/H200: 132 SMs)
    // measured (H200): 1024 x 4096 10.0 -> 8.8 us with 4; a split of 2 made 4096 x 14336 slower (16.2 ->
    // 19.6 us) and SmolLM2 (576-1536 columns) lost 10% with 4. Large matrices: 2 or 4 rows per warp.
    int split = w->rows < gemv_split_below() && w->cols >= 2048 ? 4 : 1;
    int rows = split == 1 && w->rows >= 2048 ? gemv_rows(nt) : 1;
    int depth = nt == 1 ? gemv_depth(rows, w->rows, (w->cols / 32 + 32 * split - 1) / (32 * split)) : 1;
    unsigned per_block = (unsigned)(GEMV_WARPS / split * rows);
    unsigned g = (unsigned)((w->rows + per_block - 1) / per_block);
    int s_rows, s_depth;
    if (nt == 1 && split == 1 && w->rows >= stream_min_rows() && stream_mode(&s_rows, &s_depth)) {
#define DP4A_STREAM(R, D) DP4A_DISPATCH(s, "matmul", w, TS, B, (gemv_dp4a_stream<TX, TS, B, R, D>(s, out, q, w)))
        if (s_rows == 1)
            DP4A_STREAM(1, 4);
        else if (s_rows == 2 && s_depth == 1)
            DP4A_STREAM(2, 1);
        else if (s_rows == 2 && s_depth == 2)
            DP4A_STREAM(2, 2);
        else if (s_rows == 2)
            DP4A_STREAM(2, 4);
        else if (s_depth == 1)
            DP4A_STREAM(4, 1);
        else
            DP4A_STREAM(4, 2);
#undef DP4A_STREAM
        cuda_launched(s, "matmul (gemv)");
        return;
    }
#define DP4A_LAUNCH(SPL, RW, MT, D)                                                                                    \
    DP4A_DISPATCH(s, "matmul", w, TS, B,                                                                               \
                  cuda_launch_pdl(s, gemv_dp4a_kernel<TX, TS, B, SPL, RW, MT, block_depth(B, D)>, g, block, 0, o,      \
                                  out->stride, (const uint4 *)xq, (const float *)xs, (const float *)xsum,              \
                                  (const uint4 *)w->packed, (const TS *)w->scales, (const TS *)w->biases,              \
                                  (const float *)w->bias, w->rows, w->cols, w->group_size, nt, cuda_rope_epi{},        \
                                  cuda_norm_epi{}))
#define DP4A_LAUNCH_D(SPL, RW)                                                                                         \
    do {                                                                                                               \
        if (depth == 4)                                                                                                \
            DP4A_LAUNCH(SPL, RW, 1, (RW == 4 ? 2 : 4));                                                                \
        else if (depth == 2)                                                                                           \
            DP4A_LAUNCH(SPL, RW, 1, 2);                                                                                \
        else                                                                                                           \
            DP4A_LAUNCH(SPL, RW, 1, 1);                                                                                \
    } while (0)
    if (split == 4 && nt == 1)
        DP4A_LAUNCH_D(4, 1);
    else if (split == 4)
        DP4A_LAUNCH(4, 1, CUDA_GEMV_MAX_TOK, 1);
    else if (rows == 4 && nt == 1)
        DP4A_LAUNCH_D(1, 4);
    else if (rows == 4)
        DP4A_LAUNCH(1, 4, CUDA_GEMV_MAX_TOK, 1);
    else if (rows == 2 && nt == 1)
        DP4A_LAUNCH_D(1, 2);
    else if (rows == 2)
        DP4A_LAUNCH(1, 2, CUDA_GEMV_MAX_TOK, 1);
    else if (nt == 1)
        DP4A_LAUNCH_D(1, 1);
    else
        DP4A_LAUNCH(1, 1, CUDA_GEMV_MAX_TOK, 1);
#undef DP4A_LAUNCH_D
#undef DP4A_LAUNCH
    cuda_launched(s, "matmul (gemv)");
}

// out [1][w.rows / 2] = act(gate) * up for one token, gate and up the halves of the dp4a GEMV over
// w from x quantized in q: a warp per (gate row, up row) pair (gemv_dp4a_kernel with ACT).
template <typename TX, int ACT>
static void gemv_dp4a_act(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w,
                          const cuda_norm_epi *ne) {
    int64_t half = w->rows / 2;
    unsigned g = (unsigned)((half + GEMV_WARPS - 1) / GEMV_WARPS);
    int depth = gemv_depth(2, w->rows, (w->cols / 32 + 31) / 32);
#define DP4A_ACT_LAUNCH(D)                                                                                             \
    DP4A_DISPATCH(s, "norm_mlp", w, TS, B,                                                                             \
                  cuda_launch_pdl(s, gemv_dp4a_kernel<TX, TS, B, 1, 2, 1, block_depth(B, D), ACT>, g, GEMV_WARPS * 32, \
                                  0, (TX *)out->data, out->stride, (const uint4 *)q->codes, (const float *)q->scale,   \
                                  (const float *)q->sum, (const uint4 *)w->packed, (const TS *)w->scales,              \
                                  (const TS *)w->biases, (const float *)w->bias, w->rows, w->cols, w->group_size, 1,   \
                                  cuda_rope_epi{}, ne ? *ne : cuda_norm_epi{}))
    if (depth == 4)
        DP4A_ACT_LAUNCH(4);
    else if (depth == 2)
        DP4A_ACT_LAUNCH(2);
    else
        DP4A_ACT_LAUNCH(1);
#undef DP4A_ACT_LAUNCH
    cuda_launched(s, "norm_mlp (gemv)");
}

// out [1][w.rows] for one token with RoPE in the epilogue (gemv_dp4a_kernel with DP4A_ROPE): a warp
// per rotated pair of rows, as the gate/up pairs are taken.
template <typename TX>
static void gemv_dp4a_rope(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w,
                           const cuda_rope_epi *re, const cuda_norm_epi *ne) {
    unsigned g = (unsigned)((w->rows / 2 + GEMV_WARPS - 1) / GEMV_WARPS);
    DP4A_DISPATCH(s, "norm_matmul (rope)", w, TS, B,
                  cuda_launch_pdl(s, gemv_dp4a_kernel<TX, TS, B, 1, 2, 1, 1, DP4A_ROPE>, g, GEMV_WARPS * 32, 0,
                                  (TX *)out->data, out->stride, (const uint4 *)q->codes, (const float *)q->scale,
                                  (const float *)q->sum, (const uint4 *)w->packed, (const TS *)w->scales,
                                  (const TS *)w->biases, (const float *)w->bias, w->rows, w->cols, w->group_size, 1,
                                  *re, ne ? *ne : cuda_norm_epi{}));
    cuda_launched(s, "norm_matmul (rope)");
}

extern "C" void cuda_gemv_dp4a_rope(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w,
                                    const cuda_rope_epi *re, const cuda_norm_epi *ne) {
    if (out->dtype == DTYPE_BF16)
        gemv_dp4a_rope<bf16>(s, out, q, w, re, ne);
    else
        gemv_dp4a_rope<f16>(s, out, q, w, re, ne);
}

extern "C" void cuda_gemv_dp4a_act(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w,
                                   rill_act act, const cuda_norm_epi *ne) {
    if (out->dtype == DTYPE_BF16)
        act == ACT_SILU ? gemv_dp4a_act<bf16, ACT_SILU>(s, out, q, w, ne)
                        : gemv_dp4a_act<bf16, ACT_GELU_TANH>(s, out, q, w, ne);
    else
        act == ACT_SILU ? gemv_dp4a_act<f16, ACT_SILU>(s, out, q, w, ne)
                        : gemv_dp4a_act<f16, ACT_GELU_TANH>(s, out, q, w, ne);
}

extern "C" void cuda_gemv_dp4a(rill_stream *s, rill_tensor *out, const cuda_qx *q, const rill_weight *w) {
    if (out->dtype == DTYPE_BF16)
        gemv_dp4a<bf16>(s, out, q, w);
    else if (out->dtype == DTYPE_F16)
        gemv_dp4a<f16>(s, out, q, w);
    else
        cuda_reject(s, RILL_EINVAL, "matmul (gemv)", "the dp4a GEMV takes f16 or bf16 activations");
}
