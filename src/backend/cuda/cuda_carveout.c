// cuda_carveout.c: the L1/shared-memory split that every kernel launched through
// cuda_launch_cluster (all of a decode step's) asks for. An SM changes its split only when it has no
// block left, so where two kernels in a row ask for different splits (the driver's own pick follows
// each kernel's shared memory: the decode attention needed more than the GEMVs around it), the later
// one's blocks cannot start beside the earlier one's, and programmatic dependent launch loses its
// overlap. One preference for all keeps a decode step's split the same: 28% of the most shared
// memory (64 KB on an H100, 192 KB left to L1). H100, alternated: SmolLM2-135M 2,056 -> 2,134 tok/s,
// Llama-3-8B 456.5 -> 457.6 (16k 322.7 -> 324.5, prefill the same); from 86% (L1 down to 60 KB)
// SmolLM2 ran 2,179 but Llama-3-8B fell to 427. RILL_CUDA_CARVEOUT=P (0-100) asks for another
// share, -1 for none (the driver's pick), to measure.
#ifdef RILL_CUDA
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cuda/cuda.h"

enum { SEEN_SLOTS = 1024 }; // kernels seen (open addressing; a full table only stops the asking)

static const void *seen[SEEN_SLOTS];
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static int carveout_percent(void) {
    static int pct = -2; // (read once)
    if (pct == -2) {
        const char *e = getenv("RILL_CUDA_CARVEOUT");
        char *end = NULL;
        long v = e ? strtol(e, &end, 10) : 28;
        pct = e && (end == e || *end || v < -1 || v > 100) ? 28 : (int)v;
    }
    return pct;
}

// The slot that holds kernel, or the empty one where it would go; -1: the table is full. Slots only
// ever go from empty to a kernel, so a look without the lock is safe.
static long seen_slot(const void *kernel) {
    size_t h = ((uintptr_t)kernel >> 4) % SEEN_SLOTS;
    for (size_t i = 0; i < SEEN_SLOTS; i++, h = (h + 1) % SEEN_SLOTS) {
        const void *k = __atomic_load_n(&seen[h], __ATOMIC_ACQUIRE);
        if (k == kernel || !k) return (long)h;
    }
    return -1;
}

void cuda_kernel_carveout(const void *kernel) {
    int pct = carveout_percent();
    if (pct < 0 || !kernel) return;
    long i = seen_slot(kernel); // (every launch: no lock)
    if (i < 0 || __atomic_load_n(&seen[i], __ATOMIC_ACQUIRE) == kernel) return;
    pthread_mutex_lock(&seen_lock); // the kernel's first launch (or a race for it)
    i = seen_slot(kernel);
    bool first = i >= 0 && !seen[i];
    if (first) __atomic_store_n(&seen[i], kernel, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&seen_lock);
    // (a hint: a kernel that needs more shared memory still gets it; a failure leaves the driver's pick)
    if (first && cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, pct) != cudaSuccess)
        cudaGetLastError();
}
#endif
