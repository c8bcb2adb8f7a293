// gemv_f16.cu: can a one-token 4-bit GEMV that takes x in f16 (codes unpacked to f16, HFMA2) keep up
// with the weight stream, as the dp4a GEMV (x in two int8 planes, which a launch before it must
// write) does? bench/gemv_precision.py showed its precision is fine when a lane's f16 sum covers one
// 32-bit word of codes; this times it. One kernel, three modes over the same loop and the same bytes:
//   READ  loads the weights and scales and folds them into a word (the ceiling for this loop);
//   DP4A  x as two int8 planes per word (x ~ d q1 + d/254 q2 per 32 values), codes as bytes, dp4a;
//   F16   x in f16 (pairs (0,4), (1,5), (2,6), (3,7) of each 8), codes to f16 by the 0x6400 trick,
//         centred (q - 8, exact), 4 HFMA2 a word from zero, the two halves summed in f32; the group's
//         scale times that plus (bias + 8 scale) times the exact sum of x, in f32.
// A warp owns ROWS rows; lane l takes the 16-byte chunks (32 codes, half a group of 64) l, l + 32, ...
// of each, ROWS loads in flight a step, the loop unrolled twice (declared for 4 blocks an SM: without
// that nvcc gave DP4A 64 registers and a spill, CUDA 13.0); x and its per-32 sums in shared
// memory, filled by every block from global memory (the modes' own formats, prepared once: what a
// launch before the GEMV or the block itself would make). Launches go back to back over fresh slices
// of a buffer of ~2 GB, so nothing is left in L2. Prints per matrix (Llama-3-8B's, 4-bit, groups of
// 64, f16 scales) the microseconds a launch and the TB/s of each mode, and DP4A's and F16's relative
// error against a float64 product of the first slice's first rows. Build and run on the device:
// `nvcc -O3 -arch=sm_90 -o /tmp/gemv_f16 bench/gemv_f16.cu && /tmp/gemv_f16`.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "gemv_f16: %s: %s\n", #x, cudaGetErrorString(e_));                                         \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

enum { WARPS = 4, ROWS = 4, GROUP = 64 };
enum Mode { READ, DP4A, F16 };

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int k) {
    return k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w;
}

// Codes 4i + j (j = 0, 1) of word w's pair p as f16 q - 8: nibbles p and p + 4 (bits 4p, 4p + 16).
__device__ __forceinline__ __half2 centred_pair(uint32_t w, int p) {
    const uint32_t h = ((w >> (4 * p)) & 0x000F000Fu) | 0x64006400u; // (1024 + q) in each half
    return __hsub2(*reinterpret_cast<const __half2 *>(&h), __half2half2(__ushort_as_half(0x6408))); // - 1032
}

// q: [rows][chunks] uint4 (8 codes a word, code i at bits 4i); sc: [rows][cols / 64] (scale, bias) f16;
// xg: the mode's x (F16: [cols / 8] uint4 of half2 pairs; DP4A: [cols / 8] uint4 (plane 1 codes 0,2,4,6
// and 1,3,5,7, then plane 2's) followed by [cols / 32] float d); xsum: [cols / 32] exact sums of x.
template <int M>
__global__ void __launch_bounds__(WARPS * 32, 4)
    gemv_kernel(const uint4 *q, const __half2 *sc, const uint4 *xg, const float *xsum_g, int cols, float *y) {
    extern __shared__ uint4 sm[];
    const int chunks = cols / 32, words = cols / 8;
    uint4 *xs = sm;                    // [words]
    float *xd = (float *)(sm + words); // [chunks] (DP4A) d per 32 values
    float *xsum = xd + chunks;         // [chunks]
    for (int i = threadIdx.x; i < words; i += blockDim.x)
        xs[i] = xg[i];
    for (int i = threadIdx.x; i < chunks; i += blockDim.x) {
        xd[i] = M == DP4A ? ((const float *)(xg + words))[i] : 0.0f;
        xsum[i] = xsum_g[i];
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t row0 = ((int64_t)blockIdx.x * WARPS + warp) * ROWS;
    float acc[ROWS] = {};
    unsigned fold = 0;
#pragma unroll 2
    for (int ch = lane; ch < chunks; ch += 32) {
        uint4 w[ROWS];
        __half2 g[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++) {
            w[r] = __ldcs(q + (row0 + r) * chunks + ch);
            g[r] = sc[(row0 + r) * (cols / GROUP) + ch / 2];
        }
        if (M == READ) {
#pragma unroll
            for (int r = 0; r < ROWS; r++)
                fold ^= w[r].x ^ w[r].y ^ w[r].z ^ w[r].w ^ *reinterpret_cast<const uint32_t *>(&g[r]);
            continue;
        }
        const float xsm = xsum[ch];
        if (M == F16) {
            uint4 xv[4];
#pragma unroll
            for (int k = 0; k < 4; k++)
                xv[k] = xs[ch * 4 + k];
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                float dot = 0.0f;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const uint32_t wd = word_of(w[r], k);
                    const __half2 *xp = reinterpret_cast<const __half2 *>(&xv[k]);
                    __half2 a = __hmul2(centred_pair(wd, 0), xp[0]);
                    a = __hfma2(centred_pair(wd, 1), xp[1], a);
                    a = __hfma2(centred_pair(wd, 2), xp[2], a);
                    a = __hfma2(centred_pair(wd, 3), xp[3], a);
                    dot += __low2float(a) + __high2float(a);
                }
                const float2 f = __half22float2(g[r]); // (scale, bias)
                acc[r] += f.x * dot + (f.y + 8.0f * f.x) * xsm;
            }
        } else {
            uint4 xv[4];
#pragma unroll
            for (int k = 0; k < 4; k++)
                xv[k] = xs[ch * 4 + k];
            const float d = xd[ch];
#pragma unroll
            for (int r = 0; r < ROWS; r++) {
                int i1 = 0, i2 = 0;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const uint32_t wd = word_of(w[r], k);
                    const int lo = (int)(wd & 0x0F0F0F0Fu), hi = (int)((wd >> 4) & 0x0F0F0F0Fu);
                    i1 = __dp4a(lo, (int)xv[k].x, i1);
                    i1 = __dp4a(hi, (int)xv[k].y, i1);
                    i2 = __dp4a(lo, (int)xv[k].z, i2);
                    i2 = __dp4a(hi, (int)xv[k].w, i2);
                }
                const float2 f = __half22float2(g[r]);
                acc[r] += f.x * (d * ((float)i1 + (float)i2 * (1.0f / 254.0f))) + f.y * xsm;
            }
        }
    }
#pragma unroll
    for (int r = 0; r < ROWS; r++) {
        float v = acc[r];
        for (int o = 16; o > 0; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
        if (M == READ) v = (float)(fold & 1u) * 0.0f + (fold == 0x9e3779b9u ? 1.0f : 0.0f); // keeps the loads
        if (lane == 0) y[row0 + r] = v;
    }
}

// Deterministic fill: word i of p from a hash of (seed, i).
__global__ void fill_kernel(uint32_t *p, int64_t n, uint32_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = (uint64_t)i * 0x9E3779B97F4A7C15ull + seed;
        z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
        p[i] = (uint32_t)(z >> 32);
    }
}

// (scale, bias) pairs: scale in [1e-3, 9e-3), bias = -8 scale (1 +- 0.1): mlx-lm's affine groups.
__global__ void scales_kernel(__half2 *sc, int64_t n, uint32_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint64_t z = (uint64_t)i * 0xD1B54A32D192ED03ull + seed;
        z = (z ^ (z >> 29)) * 0x94D049BB133111EBull;
        float u = (float)(z >> 40) / 16777216.0f, v = (float)((z >> 8) & 0xFFFF) / 65536.0f;
        float s = 1e-3f + 8e-3f * u;
        sc[i] = __floats2half2_rn(s, -8.0f * s * (0.9f + 0.2f * v));
    }
}

static double rand_normal(void) {
    double u = (rand() + 1.0) / (RAND_MAX + 2.0), v = (rand() + 1.0) / (RAND_MAX + 2.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

struct Shape {
    const char *name;
    int rows, cols;
};

int main(void) {
    const Shape shapes[] = {{"q/k/v  6144 x 4096", 6144, 4096},
                            {"o      4096 x 4096", 4096, 4096},
                            {"gate/up 28672 x 4096", 28672, 4096},
                            {"down   4096 x 14336", 4096, 14336}};
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("%s; one token, 4-bit, groups of %d, %d warps x %d rows a block; back-to-back launches over fresh slices\n",
           prop.name, GROUP, WARPS, ROWS);
    printf("%-22s %26s %26s %26s %9s %9s\n", "matrix", "READ us (TB/s)", "DP4A us (TB/s)", "F16 us (TB/s)", "DP4A err",
           "F16 err");
    for (const Shape &sh : shapes) {
        const int rows = sh.rows, cols = sh.cols, chunks = cols / 32, words = cols / 8, groups = cols / GROUP;
        const size_t qbytes = (size_t)rows * cols / 2, sbytes = (size_t)rows * groups * 4, slice = qbytes + sbytes;
        const int n_slices = (int)((2ull << 30) / slice) + 1;
        uint4 *q;
        __half2 *sc;
        CHECK(cudaMalloc(&q, qbytes * n_slices));
        CHECK(cudaMalloc(&sc, sbytes * n_slices));
        fill_kernel<<<1024, 256>>>((uint32_t *)q, (int64_t)(qbytes / 4) * n_slices, 12345u);
        scales_kernel<<<1024, 256>>>(sc, (int64_t)rows * groups * n_slices, 777u);
        CHECK(cudaGetLastError());

        // x: a norm's output (N(0, 1), a few dims x 20), rounded to f16; both modes' formats
        float *x = (float *)malloc(sizeof(float) * cols);
        for (int i = 0; i < cols; i++)
            x[i] = __half2float(__float2half((float)(rand_normal() * (i % 500 == 7 ? 20.0 : 1.0))));
        uint4 *xf16 = (uint4 *)malloc(16 * (size_t)words), *xdp = (uint4 *)malloc(16 * (size_t)words + 4 * chunks);
        float *xsum = (float *)malloc(sizeof(float) * chunks), *xd = (float *)(xdp + words);
        for (int c = 0; c < chunks; c++) {
            float amax = 0.0f;
            double sum = 0.0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[32 * c + j])), sum += x[32 * c + j];
            xsum[c] = (float)sum;
            const float d = amax / 127.0f;
            xd[c] = d;
            for (int k = 0; k < 4; k++) {
                const float *v = x + 32 * c + 8 * k;
                __half2 h[4];
                int8_t p1[8], p2[8];
                for (int j = 0; j < 4; j++)
                    h[j] = __floats2half2_rn(v[j], v[j + 4]);
                for (int j = 0; j < 8; j++) {
                    int a = d > 0.0f ? (int)lrintf(v[j] / d) : 0;
                    int b = d > 0.0f ? (int)lrintf((v[j] - a * d) * 254.0f / d) : 0;
                    p1[j] = (int8_t)a, p2[j] = (int8_t)(b < -127 ? -127 : b > 127 ? 127 : b);
                }
                memcpy(&xf16[4 * c + k], h, 16);
                // plane 1 codes 0,2,4,6 then 1,3,5,7; plane 2 the same (the code bytes' order)
                int8_t o[16] = {p1[0], p1[2], p1[4], p1[6], p1[1], p1[3], p1[5], p1[7],
                                p2[0], p2[2], p2[4], p2[6], p2[1], p2[3], p2[5], p2[7]};
                memcpy(&xdp[4 * c + k], o, 16);
            }
        }
        uint4 *d_xf16, *d_xdp;
        float *d_xsum, *d_y;
        CHECK(cudaMalloc(&d_xf16, 16 * (size_t)words));
        CHECK(cudaMalloc(&d_xdp, 16 * (size_t)words + 4 * chunks));
        CHECK(cudaMalloc(&d_xsum, 4 * (size_t)chunks));
        CHECK(cudaMalloc(&d_y, 4 * (size_t)rows * 3));
        CHECK(cudaMemcpy(d_xf16, xf16, 16 * (size_t)words, cudaMemcpyHostToDevice));
        CHECK(cudaMemcpy(d_xdp, xdp, 16 * (size_t)words + 4 * chunks, cudaMemcpyHostToDevice));
        CHECK(cudaMemcpy(d_xsum, xsum, 4 * (size_t)chunks, cudaMemcpyHostToDevice));

        const unsigned grid = rows / (WARPS * ROWS);
        const size_t smem = 16 * (size_t)words + 8 * (size_t)chunks;
        auto launch = [&](int mode, int s, float *out) {
            const uint4 *qs = q + (size_t)s * (qbytes / 16);
            const __half2 *ss = sc + (size_t)s * rows * groups;
            if (mode == READ)
                gemv_kernel<READ><<<grid, WARPS * 32, smem>>>(qs, ss, d_xf16, d_xsum, cols, out);
            else if (mode == DP4A)
                gemv_kernel<DP4A><<<grid, WARPS * 32, smem>>>(qs, ss, d_xdp, d_xsum, cols, out);
            else
                gemv_kernel<F16><<<grid, WARPS * 32, smem>>>(qs, ss, d_xf16, d_xsum, cols, out);
        };
        for (int mode = 0; mode < 3; mode++) {
            void *k = mode == READ   ? (void *)gemv_kernel<READ>
                      : mode == DP4A ? (void *)gemv_kernel<DP4A>
                                     : (void *)gemv_kernel<F16>;
            CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        }
        double us[3];
        cudaEvent_t e0, e1;
        CHECK(cudaEventCreate(&e0));
        CHECK(cudaEventCreate(&e1));
        for (int mode = 0; mode < 3; mode++) {
            for (int s = 0; s < n_slices; s++) // warm
                launch(mode, s, d_y + (size_t)rows * mode);
            const int reps = 3;
            CHECK(cudaEventRecord(e0));
            for (int r = 0; r < reps; r++)
                for (int s = 0; s < n_slices; s++)
                    launch(mode, s, d_y + (size_t)rows * mode);
            CHECK(cudaEventRecord(e1));
            CHECK(cudaEventSynchronize(e1));
            float ms;
            CHECK(cudaEventElapsedTime(&ms, e0, e1));
            us[mode] = 1e3 * ms / (reps * n_slices);
        }
        CHECK(cudaGetLastError());
        // the last launch of each compute mode read slice n_slices - 1: check its first rows
        const int check = 64;
        float *y = (float *)malloc(4 * (size_t)rows * 3);
        uint32_t *qh = (uint32_t *)malloc((size_t)check * cols / 2);
        __half2 *sh_h = (__half2 *)malloc(4 * (size_t)check * groups);
        CHECK(cudaMemcpy(y, d_y, 4 * (size_t)rows * 3, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(qh, q + (size_t)(n_slices - 1) * (qbytes / 16), (size_t)check * cols / 2,
                         cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(sh_h, sc + (size_t)(n_slices - 1) * rows * groups, 4 * (size_t)check * groups,
                         cudaMemcpyDeviceToHost));
        double num[2] = {0, 0}, den = 0;
        for (int r = 0; r < check; r++) {
            double ref = 0.0;
            for (int c = 0; c < cols; c++) {
                const uint32_t wd = qh[(size_t)r * cols / 8 + c / 8];
                const int code = (wd >> (4 * (c % 8))) & 15;
                const float2 f = __half22float2(sh_h[(size_t)r * groups + c / GROUP]);
                ref += ((double)f.x * code + f.y) * x[c];
            }
            den += ref * ref;
            for (int m = 0; m < 2; m++) {
                const double e = y[(size_t)rows * (m + 1) + r] - ref;
                num[m] += e * e;
            }
        }
        const double gb = (double)slice / 1e3;
        printf("%-22s %14.2f (%5.2f) %19.2f (%5.2f) %19.2f (%5.2f) %9.2e %9.2e\n", sh.name, us[0], gb / us[0] / 1e3,
               us[1], gb / us[1] / 1e3, us[2], gb / us[2] / 1e3, sqrt(num[0] / den), sqrt(num[1] / den));
        free(y);
        free(qh);
        free(sh_h);
        free(x);
        free(xf16);
        free(xdp);
        free(xsum);
        CHECK(cudaFree(q));
        CHECK(cudaFree(sc));
        CHECK(cudaFree(d_xf16));
        CHECK(cudaFree(d_xdp));
        CHECK(cudaFree(d_xsum));
        CHECK(cudaFree(d_y));
        CHECK(cudaEventDestroy(e0));
        CHECK(cudaEventDestroy(e1));
    }
    return 0;
}
