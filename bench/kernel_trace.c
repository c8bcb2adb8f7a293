// kernel_trace.c: a library to LD_PRELOAD into a CUDA program (bench/gpu_trace.sh) that records when
// every kernel ran on the GPU, graph nodes included, through CUPTI's activity API: the GPU's own
// start and end times, with nothing added to the kernels (unlike RILL_CUDA_TIMELINE's stamps). At
// exit it writes one line per kernel to $RILL_KTRACE_OUT (default /tmp/ktrace.csv):
//   correlation,graph_node,start_ns,end_ns,grid_x,grid_y,grid_z,block_x,name
// A graph launch's kernels share the launch's correlation id, so one replay is one id. Build:
//   cc -O2 -shared -fPIC -I/usr/local/cuda/include bench/kernel_trace.c -L/usr/local/cuda/lib64 -lcupti
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

enum { TRACE_BUFFER_BYTES = 16 << 20 };

static FILE *trace_out;
static unsigned long long trace_dropped;

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = aligned_alloc(ACTIVITY_RECORD_ALIGNMENT, TRACE_BUFFER_BYTES);
    *size = *buffer ? TRACE_BUFFER_BYTES : 0;
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buffer, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || !trace_out) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        fprintf(trace_out, "%u,%llu,%llu,%llu,%d,%d,%d,%d,%s\n", k->correlationId, (unsigned long long)k->graphNodeId,
                (unsigned long long)k->start, (unsigned long long)k->end, k->gridX, k->gridY, k->gridZ, k->blockX,
                k->name ? k->name : "?");
    }
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) == CUPTI_SUCCESS) trace_dropped += dropped;
    free(buffer);
}

__attribute__((constructor)) static void trace_start(void) {
    const char *path = getenv("RILL_KTRACE_OUT");
    trace_out = fopen(path ? path : "/tmp/ktrace.csv", "w");
    if (!trace_out) {
        perror("kernel_trace: the output file");
        return;
    }
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS)
        fprintf(stderr, "kernel_trace: CUPTI would not start; nothing is recorded\n");
}

__attribute__((destructor)) static void trace_stop(void) {
    cuptiActivityFlushAll(1);
    if (trace_out) fclose(trace_out);
    trace_out = NULL;
    if (trace_dropped) fprintf(stderr, "kernel_trace: %llu records dropped\n", trace_dropped);
}
