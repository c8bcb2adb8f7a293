// hbm_read.cu: how fast this GPU reads memory it has not cached, the ceiling for a decode GEMV that
// reads each weight once. A kernel reads a slice of a 4.5 GB buffer (a Llama-3-8B 4-bit model's
// size, so nothing is left in L2 from one launch to the next) with 16-byte streaming loads, U per
// thread in flight, and folds them into one word so that no load is dropped; back-to-back launches
// over consecutive slices, as a decode step's GEMVs read consecutive matrices. Prints, per slice size
// (a 4-bit Llama-3-8B layer's matrices with their scales and biases, and 1 GB for the steady rate)
// and per launch shape, the mean microseconds per slice (launch gaps included) and TB/s; then 16
// layers' matrices in one launch with a grid-wide barrier between matrices (layers_kernel,
// layers_ring_kernel, and layers_bulk_kernel: one block an SM fed by a bulk-copy ring), the barrier
// entered and left five ways (fenced, unfenced, release/acquire, acq_rel fences, or no barrier but
// each next input handed over as tagged words): the rate a kernel that streams weights across a
// layer could reach, and what each way of waiting for a matrix's output costs. Build and run on the device:
// `nvcc -O3 -arch=sm_90 -o /tmp/hbm_read bench/hbm_read.cu && /tmp/hbm_read`.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>

#define CHECK(x)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (x);                                                                                          \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "hbm_read: %s: %s\n", #x, cudaGetErrorString(e_));                                         \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)

// Folds words i, i + stride, ... below end of p into acc, U 16-byte loads per thread in flight.
template <int U>
__device__ __forceinline__ unsigned read_range(const uint4 *p, int64_t i, int64_t end, int64_t stride, unsigned acc) {
    for (; i + (U - 1) * stride < end; i += U * stride) {
        uint4 v[U];
#pragma unroll
        for (int u = 0; u < U; u++)
            v[u] = __ldcs(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < U; u++)
            acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < end; i += stride) {
        uint4 v = __ldcs(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    return acc;
}

// Reads words [0, n) of p (a grid-stride loop).
template <int U> __global__ void read_kernel(const uint4 *p, int64_t n, unsigned *sink) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    unsigned acc = read_range<U>(p, (int64_t)blockIdx.x * blockDim.x + threadIdx.x, n, stride, 0u);
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u); // (never true for the zeroed buffer: keeps the loads)
}

// How a block arrives at and leaves a grid-wide barrier (set before each run):
// 0: __threadfence (fence.sc.gpu) before the atomic and after the wait;
// 1: no fence (orders nothing: the cost of the barrier alone);
// 2: a release atomic to arrive, an acquire load to wait (what a data handoff needs, no full fence);
// 3: fence.acq_rel.gpu before the atomic and after the wait.
__device__ int barrier_kind;

// Thread's arrival at *bar, then its wait until `target` blocks have arrived.
__device__ void arrive_and_wait(unsigned *bar, unsigned target) {
    const int kind = barrier_kind;
    if (kind == 0) __threadfence();
    if (kind == 3) asm volatile("fence.acq_rel.gpu;" ::: "memory");
    if (kind == 2)
        asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(bar) : "memory");
    else
        atomicAdd(bar, 1u);
    if (kind == 2) {
        unsigned v;
        do
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
        while (v < target);
    } else
        while (*(volatile unsigned *)bar < target) {
        }
    if (kind == 0) __threadfence();
    if (kind == 3) asm volatile("fence.acq_rel.gpu;" ::: "memory");
}

// Waits until `target` blocks have arrived at *bar (a grid-wide barrier; every block resident).
__device__ void grid_barrier(unsigned *bar, unsigned target) {
    __syncthreads();
    if (threadIdx.x == 0) arrive_and_wait(bar, target);
    __syncthreads();
}

// One launch reads matrices [0, n_mat) in turn (word ranges ending at ends[m]) with a grid-wide
// barrier after each, the dependency of a decode layer's GEMVs on each other's outputs; PRE words
// per thread of the next matrix are asked for before the barrier, as a kernel that knows its
// weights ahead of its input can.
template <int U, int PRE>
__global__ void layers_kernel(const uint4 *p, const int64_t *ends, int n_mat, unsigned *bar, unsigned *sink) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x, tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    uint4 pre[PRE > 0 ? PRE : 1];
#pragma unroll
    for (int u = 0; u < (PRE > 0 ? PRE : 1); u++)
        pre[u] = make_uint4(0, 0, 0, 0);
    int64_t begin = 0;
    for (int m = 0; m < n_mat; m++) {
        const int64_t end = ends[m];
        int64_t i = begin + tid;
#pragma unroll
        for (int u = 0; u < PRE; u++) // (the words asked for before the last barrier; zero past the end)
            acc ^= pre[u].x ^ pre[u].y ^ pre[u].z ^ pre[u].w;
        acc = read_range<U>(p, i + PRE * stride, end, stride, acc);
        if (m + 1 < n_mat)
#pragma unroll
            for (int u = 0; u < PRE; u++) {
                int64_t j = end + tid + u * stride;
                pre[u] = j < ends[m + 1] ? __ldcs(p + j) : make_uint4(0, 0, 0, 0);
            }
        grid_barrier(bar, (unsigned)(m + 1) * gridDim.x);
        begin = end;
    }
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u);
}

// layers_kernel with each thread's loads in a ring of D words that runs on from one matrix into the
// next (the stream GEMV's ring, across matrices): at a barrier a thread already has its first D words
// of the next matrix in flight, and refills each slot as it uses it. Every thread takes counts[m]
// words of matrix m (masked past its end), so all of a block reach each barrier together.
template <int D>
__global__ void layers_ring_kernel(const uint4 *p, const int64_t *ends, const int *counts, int n_mat, int total,
                                   unsigned *bar, unsigned *sink) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x, tid = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    uint4 ring[D];
    int lm = 0, lk = 0; // the next word to ask for: matrix lm, the thread's k-th word of it
    auto load = [&](int slot) {
        if (lm >= n_mat) return;
        int64_t j = (lm ? ends[lm - 1] : 0) + tid + lk * stride;
        ring[slot] = j < ends[lm] ? __ldcs(p + j) : make_uint4(0, 0, 0, 0);
        if (++lk == counts[lm]) lk = 0, lm++;
    };
#pragma unroll
    for (int slot = 0; slot < D; slot++)
        load(slot);
    int um = 0, uk = 0; // the word in use
    for (int i0 = 0; i0 < total; i0 += D)
#pragma unroll
        for (int slot = 0; slot < D; slot++) {
            if (i0 + slot >= total) break;
            if (uk == 0 && um > 0) grid_barrier(bar, (unsigned)um * gridDim.x); // matrix um's input is ready
            uint4 w = ring[slot];
            load(slot);
            acc ^= w.x ^ w.y ^ w.z ^ w.w;
            if (++uk == counts[um]) uk = 0, um++;
        }
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u);
}

// Milliseconds of the second of two runs of launch(rep) (the first warms up), *bar zeroed before each.
template <typename F> static int time_second(unsigned *bar, float *ms, F launch) {
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    for (int rep = 0; rep < 2; rep++) {
        CHECK(cudaMemset(bar, 0, 4));
        CHECK(cudaEventRecord(a));
        launch(rep);
        CHECK(cudaEventRecord(b));
        CHECK(cudaEventSynchronize(b));
        CHECK(cudaGetLastError());
        CHECK(cudaEventElapsedTime(ms, a, b));
    }
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return 0;
}

// 16 layers of a 4-bit Llama-3-8B (q/k/v, o, gate/up, down) through layers_kernel<U, PRE> (D 0) or
// layers_ring_kernel<D> on `per_sm` blocks of 256 threads per SM (at most what fits), timed on the
// second of two launches.
template <int U, int PRE, int D>
static int run_layers(const uint4 *buf, const int64_t *mat_bytes, int sms, int per_sm, unsigned *sink) {
    enum { LAYERS = 16, PER_LAYER = 4 };
    int64_t ends[LAYERS * PER_LAYER], at = 0;
    for (int m = 0; m < LAYERS * PER_LAYER; m++)
        ends[m] = at += mat_bytes[m % PER_LAYER] / 16;
    int64_t *ends_d;
    int *counts_d, counts[LAYERS * PER_LAYER], total = 0;
    unsigned *bar;
    int fit = 0;
    if (D)
        CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, layers_ring_kernel < D ? D : 1 >, 256, 0));
    else
        CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, layers_kernel < U ? U : 1, PRE >, 256, 0));
    if (per_sm > fit) per_sm = fit;
    int64_t threads = (int64_t)sms * per_sm * 256;
    for (int m = 0; m < LAYERS * PER_LAYER; m++)
        total += counts[m] = (int)((ends[m] - (m ? ends[m - 1] : 0) + threads - 1) / threads);
    CHECK(cudaMalloc(&ends_d, sizeof ends));
    CHECK(cudaMalloc(&counts_d, sizeof counts));
    CHECK(cudaMalloc(&bar, 4));
    CHECK(cudaMemcpy(ends_d, ends, sizeof ends, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(counts_d, counts, sizeof counts, cudaMemcpyHostToDevice));
    float ms = 0;
    if (time_second(bar, &ms, [&](int) {
            if (D)
                layers_ring_kernel<D ? D : 1>
                    <<<sms * per_sm, 256>>>(buf, ends_d, counts_d, LAYERS * PER_LAYER, total, bar, sink);
            else
                layers_kernel<U ? U : 1, PRE><<<sms * per_sm, 256>>>(buf, ends_d, LAYERS * PER_LAYER, bar, sink);
        }))
        return 1;
    double us = ms * 1e3 / LAYERS;
    if (D)
        printf("layers     %8.1f MB  %4d blocks x  256 threads, a ring of %d across the barriers:  %8.2f us per "
               "layer  %5.3f TB/s\n",
               at * 16 / 1e6 / LAYERS, sms * per_sm, D, us, at * 16 / (double)LAYERS / us / 1e6);
    else
        printf("layers     %8.1f MB  %4d blocks x  256 threads, %d in flight, %d before each barrier: %8.2f us per "
               "layer  %5.3f TB/s\n",
               at * 16 / 1e6 / LAYERS, sms * per_sm, U, PRE, us, at * 16 / (double)LAYERS / us / 1e6);
    CHECK(cudaFree(ends_d));
    CHECK(cudaFree(counts_d));
    CHECK(cudaFree(bar));
    return 0;
}

// The bulk-copy ring: one block an SM, a producer warp whose lane 0 asks the copy engine for the
// block's share of each matrix in CHUNK-byte pieces (`cp.async.bulk`, counted on a full mbarrier a
// slot) into a ring of STAGES slots, and 8 consumer warps that fold each slot and free it (an empty
// mbarrier a slot). Only the consumers wait at the grid-wide barriers (and then for stall_ns more,
// the dependent work a layer does between its matrices): the producer goes on into the next
// matrices' weights while they wait, as far as the ring reaches. Block b reads bytes
// [b * n / G, (b + 1) * n / G) of each matrix (16-byte aligned), so the blocks' shares differ by at
// most 16 bytes.
__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    asm volatile("{\n\t.reg .pred done;\n"
                 "W:\n\tmbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
                 "\t@!done bra W;\n}" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}

// The consumer warps' grid-wide barrier (named barrier 1 among them; the producer warp is not in it).
__device__ void consumer_barrier(unsigned *bar, unsigned target, unsigned stall_ns) {
    asm volatile("bar.sync 1, 256;" ::: "memory");
    if (threadIdx.x == 32 && bar) arrive_and_wait(bar, target);
    if (threadIdx.x == 32) {
        if (stall_ns) {
            unsigned long long t0, t;
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
            do
                asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
            while (t - t0 < stall_ns);
        }
    }
    asm volatile("bar.sync 1, 256;" ::: "memory");
}

// Barrier kind 4, no barrier at all: each block writes its share of the vector matrix m - 1 made
// (as a GEMV's input for the next matrix: int8 values 4 to a word and one scale a 32 values) as
// 8-byte words, the value in the low half and a tag in the high half (one store, so a reader sees
// both or neither; no fence), then reads the whole vector, asking again for each word whose tag is
// not yet this step's. Words per vector by the matrix it feeds: q/k/v, o and gate/up take 4,096
// values, down 14,336.
__device__ unsigned handoff(unsigned long long *vec, int m, unsigned tag, unsigned acc) {
    const int t = threadIdx.x - 32, G = gridDim.x, b = blockIdx.x;
    const int n_in = m % 4 == 3 ? 14336 : 4096, W = n_in / 4 + n_in / 32;
    unsigned long long *v = vec + (size_t)(m % 4) * 4096;
    for (int i = b * W / G + t; i < (b + 1) * W / G; i += 256)
        asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(v + i),
                     "l"((unsigned long long)tag << 32 | (unsigned)i)
                     : "memory");
    enum { PER = 16 }; // at most ceil(4032 / 256) words a thread
    unsigned long long w[PER];
#pragma unroll
    for (int j = 0; j < PER; j++)
        if (t + j * 256 < W)
            asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w[j]) : "l"(v + t + j * 256) : "memory");
#pragma unroll
    for (int j = 0; j < PER; j++)
        if (t + j * 256 < W) {
            while ((unsigned)(w[j] >> 32) != tag)
                asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(w[j]) : "l"(v + t + j * 256) : "memory");
            acc ^= (unsigned)w[j];
        }
    asm volatile("bar.sync 1, 256;" ::: "memory"); // (the block's input is whole)
    return acc;
}

template <int STAGES, int CHUNK, bool INTERLEAVE>
__global__ void __launch_bounds__(288)
    layers_bulk_kernel(const char *p, const int64_t *ends, int n_mat, unsigned stall_ns, unsigned *bar,
                       unsigned long long *vec, unsigned tag, unsigned *sink) {
    extern __shared__ __align__(128) uint4 ring[]; // [STAGES][CHUNK / 16]
    __shared__ __align__(8) unsigned long long full[STAGES], empty[STAGES];
    const int G = gridDim.x, b = blockIdx.x;
    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) {
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(&full[s])) : "memory");
            asm volatile("mbarrier.init.shared::cta.b64 [%0], 8;" ::"r"(smem_u32(&empty[s])) : "memory");
        }
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x < 32) { // the producer
        if (threadIdx.x) return;
        int k = 0;
        for (int m = 0; m < n_mat; m++) {
            const int64_t begin = m ? ends[m - 1] : 0, n = (ends[m] - begin) / 16;
            int64_t off = INTERLEAVE ? begin + (int64_t)b * CHUNK : begin + b * n / G * 16;
            const int64_t stop = INTERLEAVE ? ends[m] : begin + (b + 1) * n / G * 16;
            for (; off < stop; off += INTERLEAVE ? (int64_t)G * CHUNK : CHUNK, k++) {
                const int s = k % STAGES;
                const unsigned bytes = (unsigned)(stop - off < CHUNK ? stop - off : CHUNK);
                mbar_wait(smem_u32(&empty[s]), ((k / STAGES) & 1) ^ 1);
                asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(&full[s])),
                             "r"(bytes)
                             : "memory");
                asm volatile(
                    "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                        smem_u32(ring + (size_t)s * (CHUNK / 16))),
                    "l"(p + off), "r"(bytes), "r"(smem_u32(&full[s]))
                    : "memory");
            }
        }
        return;
    }
    unsigned acc = 0;
    int k = 0;
    const int t = threadIdx.x - 32;
    for (int m = 0; m < n_mat; m++) {
        if (m && barrier_kind == 4 && bar) acc = handoff(vec, m, tag + m, acc);
        if (m && (barrier_kind != 4 || !bar)) // matrix m's input is ready
            consumer_barrier(barrier_kind == 4 ? NULL : bar, (unsigned)m * G, stall_ns);
        else if (m && stall_ns)
            consumer_barrier(NULL, 0, stall_ns);
        const int64_t begin = m ? ends[m - 1] : 0, n = (ends[m] - begin) / 16;
        int64_t off = INTERLEAVE ? begin + (int64_t)b * CHUNK : begin + b * n / G * 16;
        const int64_t stop = INTERLEAVE ? ends[m] : begin + (b + 1) * n / G * 16;
        for (; off < stop; off += INTERLEAVE ? (int64_t)G * CHUNK : CHUNK, k++) {
            const int s = k % STAGES;
            const int words = (int)((stop - off < CHUNK ? stop - off : CHUNK) / 16);
            mbar_wait(smem_u32(&full[s]), (k / STAGES) & 1);
            const uint4 *w = ring + (size_t)s * (CHUNK / 16);
            for (int i = t; i < words; i += 256) {
                uint4 v = w[i];
                acc ^= v.x ^ v.y ^ v.z ^ v.w;
            }
            __syncwarp();
            if ((t & 31) == 0)
                asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_u32(&empty[s])) : "memory");
        }
    }
    if (acc == 0x9e3779b9u) atomicAdd(sink, 1u);
}

// `layers` layers of per_layer matrices through layers_bulk_kernel<STAGES, CHUNK, INTERLEAVE> on per_sm blocks an
// SM, timed on the second of two launches; stall_ns (bits 0-29) after each barrier, and with bit 30
// set no barrier at all (the blocks never wait for each other).
template <int STAGES, int CHUNK, bool INTERLEAVE>
static int run_layers_bulk(const uint4 *buf, const int64_t *mat_bytes, int per_layer, int layers, int sms, int per_sm,
                           unsigned stall_ns, unsigned *sink) {
    enum { MAX = 64 };
    int64_t ends[MAX], at = 0;
    const int LAYERS = layers, n_mat = layers * per_layer;
    if (n_mat > MAX) return 1;
    for (int m = 0; m < n_mat; m++)
        ends[m] = at += mat_bytes[m % per_layer];
    int64_t *ends_d;
    unsigned *bar;
    unsigned long long *vec;
    const int smem = STAGES * CHUNK;
    CHECK(cudaMalloc(&vec, 4 * 4096 * 8));
    CHECK(cudaMemset(vec, 0, 4 * 4096 * 8));
    CHECK(cudaFuncSetAttribute(layers_bulk_kernel<STAGES, CHUNK, INTERLEAVE>,
                               cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    CHECK(cudaMalloc(&ends_d, sizeof ends));
    CHECK(cudaMalloc(&bar, 4));
    CHECK(cudaMemcpy(ends_d, ends, sizeof ends, cudaMemcpyHostToDevice));
    float ms = 0;
    if (time_second(bar, &ms, [&](int rep) {
            layers_bulk_kernel<STAGES, CHUNK, INTERLEAVE>
                <<<sms * per_sm, 288, smem>>>((const char *)buf, ends_d, n_mat, stall_ns & 0x3fffffffu,
                                              stall_ns >> 30 & 1 ? NULL : bar, vec, (unsigned)(rep + 1) << 8, sink);
        }))
        return 1;
    double us = ms * 1e3 / LAYERS;
    printf("layers     %8.1f MB  %4d blocks, a bulk-copy ring of %2d x %5d bytes%s, %4u ns after each %s: "
           "%8.2f us per layer  %5.3f TB/s\n",
           at / 1e6 / LAYERS, sms * per_sm, STAGES, CHUNK, INTERLEAVE ? " interleaved" : "", stall_ns & 0x3fffffffu,
           stall_ns >> 30 & 1 ? "matrix (no barrier)" : "barrier", us, at / (double)LAYERS / us / 1e6);
    CHECK(cudaFree(ends_d));
    CHECK(cudaFree(bar));
    CHECK(cudaFree(vec));
    return 0;
}

template <int U>
static int run(const char *name, const uint4 *buf, int64_t buf_words, int64_t slice_bytes, int blocks, int threads,
               unsigned *sink) {
    int64_t words = slice_bytes / 16, slices = buf_words / words;
    if (slices > 64) slices = 64;
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    for (int64_t k = 0; k < slices; k++) // warm-up pass (launch paths, clocks)
        read_kernel<U><<<blocks, threads>>>(buf + k * words, words, sink);
    CHECK(cudaEventRecord(a));
    for (int64_t k = 0; k < slices; k++)
        read_kernel<U><<<blocks, threads>>>(buf + k * words, words, sink);
    CHECK(cudaEventRecord(b));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    double us = ms * 1e3 / (double)slices;
    printf("%-10s %8.1f MB  %4d blocks x %4d threads, %d in flight: %8.2f us per slice  %5.3f TB/s\n", name,
           slice_bytes / 1e6, blocks, threads, U, us, slice_bytes / us / 1e6);
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));
    return 0;
}

int main(void) {
    int dev = 0, sms = 0;
    cudaDeviceProp prop;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaGetDeviceProperties(&prop, dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    printf("%s, %d SMs, L2 %.0f MB\n", prop.name, sms, prop.l2CacheSize / 1e6);
    const int64_t buf_bytes = (int64_t)4608 << 20; // 4.5 GiB
    uint4 *buf;
    unsigned *sink;
    CHECK(cudaMalloc(&buf, buf_bytes));
    CHECK(cudaMalloc(&sink, 4));
    CHECK(cudaMemset(buf, 0, buf_bytes));
    CHECK(cudaMemset(sink, 0, 4));
    static const struct {
        const char *name;
        int64_t bytes;
    } slices[] = {{"gate/up", 66060288}, {"down", 33030144}, {"q/k/v", 14155776}, {"o", 9437184}, {"1 GB", 1 << 30}};
    for (size_t s = 0; s < sizeof slices / sizeof slices[0]; s++) {
        const char *n = slices[s].name;
        int64_t b = slices[s].bytes, w = buf_bytes / 16;
        if (run<1>(n, buf, w, b, sms * 8, 256, sink) || run<2>(n, buf, w, b, sms * 8, 256, sink) ||
            run<4>(n, buf, w, b, sms * 8, 256, sink) || run<8>(n, buf, w, b, sms * 8, 256, sink) ||
            run<4>(n, buf, w, b, sms * 4, 512, sink) || run<4>(n, buf, w, b, sms * 2, 256, sink) ||
            run<8>(n, buf, w, b, sms * 2, 256, sink))
            return 1;
    }
    // a layer's matrices in one launch, a grid-wide barrier between them (q/k/v, o, gate/up, down),
    // arriving and leaving each barrier in each of the four ways
    static const int64_t layer[4] = {14155776, 9437184, 66060288, 33030144};
    static const char *kinds[5] = {"__threadfence", "no fence", "release atomic, acquire load", "fence.acq_rel",
                                   "none: the tagged handoff of each next input (bulk ring only)"};
    const unsigned NO_BARRIER = 0x40000000u;
    for (int kind = 0; kind < 5; kind++) {
        CHECK(cudaMemcpyToSymbol(barrier_kind, &kind, sizeof kind));
        printf("barriers: %s\n", kinds[kind]);
        if (kind < 4 &&
            (run_layers<4, 4, 0>(buf, layer, sms, 2, sink) || run_layers<4, 4, 0>(buf, layer, sms, 4, sink) ||
             run_layers<0, 0, 4>(buf, layer, sms, 2, sink) || run_layers<0, 0, 8>(buf, layer, sms, 2, sink) ||
             run_layers<0, 0, 16>(buf, layer, sms, 2, sink)))
            return 1;
        for (unsigned stall = 0; stall <= 1000; stall += 1000)
            if (run_layers_bulk<12, 16384, true>(buf, layer, 4, 16, sms, 1, stall, sink) ||
                run_layers_bulk<6, 16384, true>(buf, layer, 4, 16, sms, 2, stall, sink))
                return 1;
    }
    // the bulk-copy ring's own rate (one 1 GB matrix), and with a stall but no barrier
    static const int64_t gb[1] = {1 << 30};
    if (run_layers_bulk<12, 16384, false>(buf, gb, 1, 1, sms, 1, 0, sink) ||
        run_layers_bulk<12, 16384, true>(buf, gb, 1, 1, sms, 1, 0, sink) ||
        run_layers_bulk<24, 8192, true>(buf, gb, 1, 1, sms, 1, 0, sink) ||
        run_layers_bulk<6, 16384, true>(buf, gb, 1, 1, sms, 2, 0, sink) ||
        run_layers_bulk<12, 16384, true>(buf, layer, 4, 16, sms, 1, 1000 | NO_BARRIER, sink))
        return 1;
    CHECK(cudaFree(buf));
    CHECK(cudaFree(sink));
    return 0;
}
