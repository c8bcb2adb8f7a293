// cuda_backend.c: the CUDA backend's table: opening the device, streams (cudaStream_t + cuBLAS
// handle), events, launch (the host program runs inline: its ops only enqueue), copies, and the
// error plumbing every op shares. Without a device, opening fails with the runtime's reason.
#ifdef RILL_CUDA
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "base/alloc.h"
#include "base/progress.h"

bool cuda_ok(rill_stream *s, cudaError_t err, const char *op) {
    if (err == cudaSuccess) return true;
    rill_status st = rill_fail(RILL_EIO, "cuda %s: %s (%s)", op, cudaGetErrorString(err), cudaGetErrorName(err));
    if (s && s->status == RILL_OK) {
        s->status = st;
        snprintf(s->error, sizeof s->error, "%s", rill_last_error());
    }
    return false;
}

void cuda_reject(rill_stream *s, rill_status st, const char *op, const char *why) {
    rill_fail(st, "cuda %s: %s", op, why);
    if (s && s->status == RILL_OK) {
        s->status = st;
        snprintf(s->error, sizeof s->error, "%s", rill_last_error());
    }
}

static void cuda_upload(rill_stream *s, void *dst, const void *src, size_t bytes) {
    cuda_forget_prepared(s); // (it may write the prepared residual)
    cuda_ok(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->cs), "upload");
}

static void cuda_download(rill_stream *s, void *dst, const void *src, size_t bytes) {
    cuda_ok(s, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->cs), "download");
}

static void cuda_stream_destroy(rill_stream *s) {
    if (!s) return;
    cudaStreamSynchronize(s->cs);
#ifdef RILL_CUDA_TIMELINE
    cuda_timeline_report(s);
#endif
    if (s->blas) cublasDestroy(s->blas);
    if (s->scratch) cuda_free(s->be, s->scratch);
    cudaStreamDestroy(s->cs);
    rill_free(s);
}

// cuBLAS's first GEMM in a process holds the host for 75-100 ms (library start and kernel loading;
// seen with RILL_CUDA_TRACE=1 on an H200): the process's first stream runs one n x n x n GEMM in
// the activation dtype, so that cost falls on backend start (like loading the weights) rather than
// on the first prefill. n = 2048 also loads the kernel that prefill's large GEMMs use (n = 256
// leaves 3-4 ms on the first of them). RILL_CUDA_WARMUP=N sets n; 0 skips the warm-up.
static void blas_warmup(rill_stream *s) {
    static bool done = false;
    const char *e = getenv("RILL_CUDA_WARMUP");
    int n = e && *e ? atoi(e) : 2048;
    if (done || n <= 0) return;
    done = true;
    rill_dtype dt = s->be->act_dtype;
    cudaDataType t = dt == DTYPE_F32 ? CUDA_R_32F : dt == DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
    size_t bytes = (size_t)n * (size_t)n * dtype_size(dt);
    char *buf = cuda_alloc(s->be, 3 * bytes);
    if (!buf) return;
    double t0 = rill_now();
    const float one = 1.0f, zero = 0.0f;
    cudaMemsetAsync(buf, 0, 3 * bytes, s->cs);
    cublasGemmEx(s->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, buf, t, n, buf + bytes, t, n, &zero, buf + 2 * bytes,
                 t, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    cudaStreamSynchronize(s->cs);
    cuda_free(s->be, buf);
    const char *tr = getenv("RILL_CUDA_TRACE");
    if (tr && *tr && *tr != '0')
        fprintf(stderr, "cuda trace: cuBLAS warm-up (%d x %d x %d) took %.1f ms\n", n, n, n, (rill_now() - t0) * 1e3);
}

static rill_status cuda_stream_create(rill_backend *be, rill_stream **out) {
    *out = NULL;
    rill_stream *s = rill_calloc(1, sizeof *s);
    if (!s) return RILL_ENOMEM;
    s->be = be;
    if (!cuda_ok(NULL, cudaStreamCreateWithFlags(&s->cs, cudaStreamNonBlocking), "stream_create")) {
        rill_free(s);
        return RILL_EIO;
    }
    cublasStatus_t bs = cublasCreate(&s->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(s->blas, s->cs);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        rill_status st = rill_fail(RILL_EIO, "cuda stream_create: cuBLAS: %s", cublasGetStatusString(bs));
        cuda_stream_destroy(s);
        return st;
    }
    blas_warmup(s);
    *out = s;
    return RILL_OK;
}

static void cuda_launch(rill_stream *s, void (*fn)(void *), void *arg) { fn(arg); }

static void cuda_sync(rill_stream *s) { cuda_ok(s, cudaStreamSynchronize(s->cs), "sync"); }

static rill_status cuda_event_create(rill_backend *be, rill_event **out) {
    *out = rill_calloc(1, sizeof **out);
    if (!*out) return RILL_ENOMEM;
    if (!cuda_ok(NULL, cudaEventCreateWithFlags(&(*out)->ev, cudaEventDisableTiming), "event_create")) {
        rill_free(*out);
        *out = NULL;
        return RILL_EIO;
    }
    return RILL_OK;
}

static void cuda_event_destroy(rill_event *e) {
    if (!e) return;
    cudaEventDestroy(e->ev);
    rill_free(e);
}

static void cuda_event_record(rill_stream *s, rill_event *e) {
    cuda_ok(s, cudaEventRecord(e->ev, s->cs), "event_record");
}
static void cuda_event_wait(rill_event *e) { cuda_ok(NULL, cudaEventSynchronize(e->ev), "event_wait"); }
static bool cuda_event_done(rill_event *e) { return cudaEventQuery(e->ev) == cudaSuccess; }

static rill_status cuda_stream_status(rill_stream *s) {
    if (s->status != RILL_OK) rill_fail(s->status, "%s", s->error);
    return s->status;
}

// Capture in thread-local mode: other threads' CUDA calls go on as usual.
static rill_status cuda_graph_begin(rill_stream *s) {
    cuda_forget_prepared(s); // (nothing prepared is carried into or out of a graph)
#ifdef RILL_CUDA_TIMELINE
    cuda_timeline_capture(s);
#endif
    if (!cuda_ok(s, cudaStreamBeginCapture(s->cs, cudaStreamCaptureModeThreadLocal), "graph_begin")) return RILL_EIO;
    s->capturing = true;
    return RILL_OK;
}

static rill_status cuda_graph_end(rill_stream *s, rill_graph **out) {
    *out = NULL;
    cudaGraph_t graph = NULL;
    cudaError_t err = cudaStreamEndCapture(s->cs, &graph);
    s->capturing = false;
    if (s->status != RILL_OK) { // an op failed while recording: its message says which
        if (graph) cudaGraphDestroy(graph);
        return cuda_stream_status(s);
    }
    if (!cuda_ok(s, err, "graph_end")) return RILL_EIO;
    rill_graph *g = rill_calloc(1, sizeof *g);
    if (!g) {
        cudaGraphDestroy(graph);
        return RILL_ENOMEM;
    }
    err = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (!cuda_ok(s, err, "graph_end (instantiate)")) {
        rill_free(g);
        return RILL_EIO;
    }
    *out = g;
    return RILL_OK;
}

static rill_status cuda_graph_launch(rill_stream *s, rill_graph *g) {
    cuda_forget_prepared(s);
#ifdef RILL_CUDA_TIMELINE
    cuda_timeline_before_replay(s);
    bool ok = cuda_ok(s, cudaGraphLaunch(g->exec, s->cs), "graph_launch");
    cuda_timeline_after_replay(s);
    return ok ? RILL_OK : RILL_EIO;
#else
    return cuda_ok(s, cudaGraphLaunch(g->exec, s->cs), "graph_launch") ? RILL_OK : RILL_EIO;
#endif
}

static void cuda_graph_destroy(rill_graph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    rill_free(g);
}

static void *cuda_host_alloc(rill_backend *be, size_t bytes) {
    void *p = NULL;
    // mapped: under unified addressing a kernel may write it at the same address (sample's publish)
    if (!cuda_ok(NULL, cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocMapped), "host_alloc")) return NULL;
    return p;
}

static void cuda_host_free(rill_backend *be, void *p) {
    if (p) cudaFreeHost(p);
}

static const rill_backend_ops cuda_ops = {
    .name = "cuda",
    .fuse_projections = true,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .weight_load = cuda_weight_load,
    .weight_free = cuda_weight_free,
    .stream_create = cuda_stream_create,
    .stream_destroy = cuda_stream_destroy,
    .launch = cuda_launch,
    .sync = cuda_sync,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_wait = cuda_event_wait,
    .event_done = cuda_event_done,
    .embed = cuda_embed,
    .matmul = cuda_matmul,
    .rmsnorm = cuda_rmsnorm,
    .add_rmsnorm = cuda_add_rmsnorm,
    .norm_matmul = cuda_norm_matmul,
    .act_matmul = cuda_act_matmul,
    .norm_mlp = cuda_norm_mlp,
    .matmul_add_norm = cuda_matmul_add_norm,
    .embed_norm = cuda_embed_norm,
    .norm_qkv_rope = cuda_norm_qkv_rope,
    .rope = cuda_rope,
    .attention = cuda_attention,
    .attention_q = cuda_attention_q,
    .kv_quantize = cuda_kv_quantize,
    .act_mul = cuda_act_mul,
    .add = cuda_add,
    .scale = cuda_scale,
    .softcap = cuda_softcap,
    .moe_route = cuda_moe_route,
    .moe_matmul = cuda_moe_matmul,
    .moe_combine = cuda_moe_combine,
    .copy = cuda_copy,
    .copy_at = cuda_copy_at,
    .attention_append = cuda_attention_append,
    .sample = cuda_sample,
    .graph_begin = cuda_graph_begin,
    .graph_end = cuda_graph_end,
    .graph_launch = cuda_graph_launch,
    .graph_destroy = cuda_graph_destroy,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .stream_status = cuda_stream_status,
};

rill_status cuda_backend_open_dtype(rill_dtype act, rill_backend **out) {
    *out = NULL;
    if (act != DTYPE_BF16 && act != DTYPE_F16 && act != DTYPE_F32)
        return rill_fail(RILL_EINVAL, "cuda: activations must be BF16, F16 or F32, not %s", dtype_name(act));
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) return rill_fail(RILL_EUNSUPPORTED, "cuda: no CUDA device: %s", cudaGetErrorString(err));
    if (n == 0) return rill_fail(RILL_EUNSUPPORTED, "cuda: no CUDA device: the runtime sees none");
    if (!cuda_ok(NULL, cudaSetDevice(0), "open")) return RILL_EIO;
    rill_backend *be = rill_calloc(1, sizeof *be);
    if (!be) return RILL_ENOMEM;
    be->ops = &cuda_ops;
    be->act_dtype = act;
    be->impl = NULL; // the allocation table (cuda_memory.c)
    *out = be;
    return RILL_OK;
}

rill_status cuda_backend_open(int threads, rill_backend **out) {
    const char *env = getenv("RILL_CUDA_DTYPE");
    rill_dtype act = DTYPE_BF16;
    if (env && *env) {
        if (!strcmp(env, "bf16"))
            act = DTYPE_BF16;
        else if (!strcmp(env, "f16"))
            act = DTYPE_F16;
        else if (!strcmp(env, "f32"))
            act = DTYPE_F32;
        else
            return rill_fail(RILL_EINVAL, "cuda: RILL_CUDA_DTYPE='%s' (want bf16, f16 or f32)", env);
    }
    return cuda_backend_open_dtype(act, out);
}

void cuda_backend_close(rill_backend *be) {
    if (!be) return;
    cuda_memory_close(be);
    rill_free(be);
}
#endif
