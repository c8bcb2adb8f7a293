// cuda_timeline.c: where a captured decode step's time goes inside the graph, launch by launch
// (builds with -DRILL_CUDA_TIMELINE=ON, and RILL_CUDA_TIMELINE=1 at run time; docs/cuda.md). Block
// (0, 0, 0) of every kernel stamps %globaltimer when its pdl_wait returns (cuda_common.cuh), and a
// kernel's wait returns when the one before has completed, so the time from one stamp to the next is
// what a launch adds to the step's critical path, overlap included (ncu times each kernel alone).
// The names are the cuda_launched calls of the last capture; the sums of each replay's differences
// are read when the stream goes, and printed to stderr: per launch name, then the first launches in
// order. Other builds keep only the registration the kernel files call.
#ifdef RILL_CUDA
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"

enum { TIMELINE_CAP = 8192, TIMELINE_FILES = 32, TIMELINE_ORDER = 40, TIMELINE_GROUPS = 64 };
#define PHASE_BYTES (2 * CUDA_TIMELINE_PHASES * sizeof(unsigned long long))

static cuda_timeline_attach_fn attachers[TIMELINE_FILES]; // one per .cu file
static int n_attachers;

int cuda_timeline_register(cuda_timeline_attach_fn attach) {
    if (n_attachers < TIMELINE_FILES) attachers[n_attachers++] = attach;
    return n_attachers;
}

#ifdef RILL_CUDA_TIMELINE
struct cuda_timeline {
    unsigned long long *t;          // [TIMELINE_CAP] device stamps of one replay
    unsigned *n;                    // device: stamps taken
    double *sums;                   // device [TIMELINE_CAP + 3]: differences summed, replays, span, stamps
    unsigned long long *phases;     // device [CUDA_TIMELINE_PHASES][2]: ns since the wait summed, marks
    const char *name[TIMELINE_CAP]; // the last capture's launches, in order
    int n_names;
};

// s's timeline, made at the first use when RILL_CUDA_TIMELINE is set (NULL otherwise).
static struct cuda_timeline *timeline_of(rill_stream *s) {
    if (s->timeline) return s->timeline;
    const char *e = getenv("RILL_CUDA_TIMELINE");
    if (!e || !*e || !strcmp(e, "0")) return NULL;
    struct cuda_timeline *tl = calloc(1, sizeof *tl);
    if (!tl) return NULL;
    if (cudaMalloc((void **)&tl->t, TIMELINE_CAP * sizeof *tl->t) != cudaSuccess ||
        cudaMalloc((void **)&tl->n, sizeof *tl->n) != cudaSuccess ||
        cudaMalloc((void **)&tl->sums, (TIMELINE_CAP + 3) * sizeof *tl->sums) != cudaSuccess ||
        cudaMalloc((void **)&tl->phases, PHASE_BYTES) != cudaSuccess) {
        cudaGetLastError();
        fprintf(stderr, "cuda timeline: no device memory for the stamps; off\n");
        cudaFree(tl->t), cudaFree(tl->n), cudaFree(tl->sums);
        free(tl);
        return NULL;
    }
    cudaMemset(tl->sums, 0, (TIMELINE_CAP + 3) * sizeof *tl->sums);
    cudaMemset(tl->phases, 0, PHASE_BYTES);
    cudaMemset(tl->n, 0x7f, sizeof *tl->n); // (stamps outside a replay land past the cap)
    for (int i = 0; i < n_attachers; i++)
        attachers[i](tl->t, tl->n, TIMELINE_CAP, tl->phases);
    s->timeline = tl;
    return tl;
}

void cuda_timeline_name(rill_stream *s, const char *op) {
    struct cuda_timeline *tl = s->capturing ? timeline_of(s) : NULL;
    if (tl && tl->n_names < TIMELINE_CAP) tl->name[tl->n_names++] = op;
}

void cuda_timeline_capture(rill_stream *s) {
    struct cuda_timeline *tl = timeline_of(s);
    if (!tl) return;
    tl->n_names = 0;
    cudaMemsetAsync(tl->sums, 0, (TIMELINE_CAP + 3) * sizeof *tl->sums, s->cs);
    cudaMemsetAsync(tl->phases, 0, PHASE_BYTES, s->cs);
}

void cuda_timeline_before_replay(rill_stream *s) {
    struct cuda_timeline *tl = timeline_of(s);
    if (tl) cudaMemsetAsync(tl->n, 0, sizeof *tl->n, s->cs);
}

void cuda_timeline_after_replay(rill_stream *s) {
    struct cuda_timeline *tl = timeline_of(s);
    if (!tl) return;
    cuda_timeline_accumulate(s, tl->t, tl->n, tl->sums, TIMELINE_CAP);
    cudaMemsetAsync(tl->n, 0x7f, sizeof *tl->n, s->cs);
}

void cuda_timeline_report(rill_stream *s) {
    struct cuda_timeline *tl = s->timeline;
    if (!tl) return;
    static double sums[TIMELINE_CAP + 3];
    if (cudaMemcpy(sums, tl->sums, sizeof sums, cudaMemcpyDeviceToHost) == cudaSuccess && sums[TIMELINE_CAP] > 0) {
        double replays = sums[TIMELINE_CAP], stamps = sums[TIMELINE_CAP + 2];
        int n = tl->n_names < (int)stamps ? tl->n_names : (int)stamps;
        fprintf(stderr,
                "cuda timeline: %.0f replays; %.0f stamps and %d names per replay%s; first stamp to last %.1f us\n",
                replays, stamps, tl->n_names, (int)stamps == tl->n_names ? "" : " (they differ: names unreliable)",
                sums[TIMELINE_CAP + 1] / replays / 1e3);
        const char *gname[TIMELINE_GROUPS];
        double gsum[TIMELINE_GROUPS] = {0};
        int gcount[TIMELINE_GROUPS] = {0}, ng = 0;
        for (int i = 0; i + 1 < n; i++) {
            int g = 0;
            while (g < ng && strcmp(gname[g], tl->name[i]))
                g++;
            if (g == ng && ng < TIMELINE_GROUPS) gname[ng++] = tl->name[i];
            if (g < ng) gsum[g] += sums[i] / replays / 1e3, gcount[g]++;
        }
        fprintf(stderr, "  %-28s %8s %6s %9s\n", "launch (cuda_launched name)", "us/step", "n", "us each");
        for (int g = 0; g < ng; g++)
            fprintf(stderr, "  %-28s %8.1f %6d %9.2f\n", gname[g], gsum[g], gcount[g], gsum[g] / gcount[g]);
        fprintf(stderr, "  the first %d launches in order (us each):\n", TIMELINE_ORDER);
        for (int i = 0; i + 1 < n && i < TIMELINE_ORDER; i++)
            fprintf(stderr, "  %4d %-28s %7.2f\n", i, tl->name[i], sums[i] / replays / 1e3);
    }
    unsigned long long ph[2 * CUDA_TIMELINE_PHASES];
    if (cudaMemcpy(ph, tl->phases, PHASE_BYTES, cudaMemcpyDeviceToHost) == cudaSuccess)
        for (int k = 0; k < CUDA_TIMELINE_PHASES; k++)
            if (ph[2 * k + 1])
                fprintf(stderr, "  phase %2d ends %7.2f us after the wait (block (0, 0, 0), mean of %llu marks)\n", k,
                        (double)ph[2 * k] / (double)ph[2 * k + 1] / 1e3, ph[2 * k + 1]);
    cudaFree(tl->t);
    cudaFree(tl->n);
    cudaFree(tl->sums);
    cudaFree(tl->phases);
    free(tl);
    s->timeline = NULL;
}
#endif
#endif
