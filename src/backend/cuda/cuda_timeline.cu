// cuda_timeline.cu: the device half of the decode step's timeline (cuda_timeline.c): after each
// replay, the differences of consecutive stamps are added to the sums. RILL_CUDA_TIMELINE builds only.
#include "backend/cuda/cuda_common.cuh"

#ifdef RILL_CUDA_TIMELINE
// sums[i] += t[i + 1] - t[i] over the replay's stamps; sums[cap]: replays, [cap + 1]: first stamp
// to last, [cap + 2]: stamps (of the last replay). Launched without PDL: the replay has ended.
__global__ void timeline_accumulate_kernel(const unsigned long long *t, const unsigned *n, double *sums, unsigned cap) {
    unsigned m = *n < cap ? *n : cap;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i + 1 < m; i += gridDim.x * blockDim.x)
        sums[i] += (double)(t[i + 1] - t[i]);
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        sums[cap] += 1.0;
        sums[cap + 1] += m >= 2 ? (double)(t[m - 1] - t[0]) : 0.0;
        sums[cap + 2] = (double)m;
    }
}

extern "C" void cuda_timeline_accumulate(rill_stream *s, const unsigned long long *t, const unsigned *n, double *sums,
                                         unsigned cap) {
    timeline_accumulate_kernel<<<8, 256, 0, s->cs>>>(t, n, sums, cap);
    cudaGetLastError();
}
#endif
