// cpu_backend.c: the CPU backend's table: accounted host memory, streams as compute threads with
// a queue of launched host programs, events as sequence marks in a stream. Weights are used in
// place (mapped files stay mapped: rule 5).
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "quant/affine.h"
#include "base/alloc.h"

static _Thread_local rill_stream *tls_stream; // the stream whose compute thread this is

static void *cpu_alloc(rill_backend *be, size_t bytes) { return rill_malloc(bytes ? bytes : 1); }
static void cpu_free(rill_backend *be, void *p) { rill_free(p); }

static void stream_drain(rill_stream *s) {
    pthread_mutex_lock(&s->mu);
    while (s->completed < s->submitted)
        pthread_cond_wait(&s->changed, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void cpu_enter(rill_stream *s) {
    if (tls_stream != s) stream_drain(s);
}

float *cpu_scratch(rill_stream *s, int thread, size_t n) {
    if (s->scratch_floats[thread] < n) {
        rill_free(s->scratch[thread]);
        s->scratch[thread] = rill_malloc(n * sizeof(float));
        s->scratch_floats[thread] = s->scratch[thread] ? n : 0;
        if (!s->scratch[thread]) abort(); // out of memory for a few rows of scratch
    }
    return s->scratch[thread];
}

static void cpu_upload(rill_stream *s, void *dst, const void *src, size_t bytes) {
    cpu_enter(s);
    memcpy(dst, src, bytes);
}

static void cpu_download(rill_stream *s, void *dst, const void *src, size_t bytes) {
    cpu_enter(s);
    memcpy(dst, src, bytes);
}

// Affine weights of 2, 3, 5 or 6 bits (GGUF Q5_0, Q5_1, Q6_K, ...), whose codes weight_load widens.
static bool widens(const rill_weight *w) {
    return w->kind == WEIGHT_AFFINE && w->bits != 4 && w->bits != 8 && w->group_size % 16 == 0 &&
           (w->cols * w->bits) % 32 == 0;
}

static size_t cpu_weight_load_bytes(rill_backend *be, const rill_weight *host) {
    (void)be;
    return widens(host) ? (size_t)(host->rows * host->cols) + 1 : 0;
}

// A view of the host arrays, except for the weights `widens` names: their codes become one byte each,
// an 8-bit affine weight with the same scales and biases, which the int8 decode matmul takes (its
// kernels read 4- and 8-bit codes); the host copy stays as it is. One byte per weight more memory.
static rill_status cpu_weight_load(rill_backend *be, const rill_weight *host, rill_weight *dev) {
    (void)be;
    *dev = *host;
    dev->owned = NULL;
    if (!widens(host)) return RILL_OK;
    size_t n = (size_t)(host->rows * host->cols);
    uint8_t *codes = rill_malloc(n + 1);
    if (!codes) return rill_fail(RILL_ENOMEM, "cpu backend: %zu bytes for a weight's widened codes", n);
    int64_t words = host->cols * host->bits / 32; // per row
    for (int64_t r = 0; r < host->rows; r++)
        affine_unpack_at(host->packed + r * words, 0, (size_t)host->cols, host->bits, codes + r * host->cols);
    dev->packed = (const uint32_t *)codes;
    dev->bits = 8;
    dev->owned = codes;
    return RILL_OK;
}

static void cpu_weight_free(rill_backend *be, rill_weight *dev) {
    (void)be;
    rill_free(dev->owned);
    memset(dev, 0, sizeof *dev);
}

static void *compute_thread(void *v) {
    rill_stream *s = v;
    tls_stream = s;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->count && !s->stop)
            pthread_cond_wait(&s->changed, &s->mu);
        if (!s->count && s->stop) break;
        cpu_task t = s->queue[s->head];
        s->head = (s->head + 1) % s->cap;
        s->count--;
        pthread_cond_broadcast(&s->changed); // room in the queue
        pthread_mutex_unlock(&s->mu);
        t.fn(t.arg);
        pthread_mutex_lock(&s->mu);
        s->completed++;
        pthread_cond_broadcast(&s->changed);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void cpu_stream_destroy(rill_stream *s);

static rill_status cpu_stream_create(rill_backend *be, rill_stream **out) {
    cpu_backend *cb = be->impl;
    rill_stream *s = rill_calloc(1, sizeof *s);
    if (!s) return RILL_ENOMEM;
    s->be = be;
    s->cap = 64;
    s->queue = rill_calloc((size_t)s->cap, sizeof *s->queue);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->changed, NULL);
    rill_status st = s->queue ? threadpool_create(cb->n_threads, &s->pool) : RILL_ENOMEM;
    if (st != RILL_OK) {
        rill_free(s->queue);
        rill_free(s);
        return st;
    }
    if (pthread_create(&s->thread, NULL, compute_thread, s) != 0) {
        threadpool_destroy(s->pool);
        rill_free(s->queue);
        rill_free(s);
        return rill_fail(RILL_EIO, "cpu backend: cannot start the compute thread");
    }
    *out = s;
    return RILL_OK;
}

static void cpu_stream_destroy(rill_stream *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    threadpool_destroy(s->pool);
    for (int i = 0; i < CPU_MAX_THREADS; i++)
        rill_free(s->scratch[i]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->changed);
    rill_free(s->queue);
    rill_free(s);
}

static void cpu_launch(rill_stream *s, void (*fn)(void *), void *arg) {
    if (tls_stream == s) { // a program that launches another: it runs next, in order
        fn(arg);
        return;
    }
    pthread_mutex_lock(&s->mu);
    while (s->count == s->cap)
        pthread_cond_wait(&s->changed, &s->mu);
    s->queue[(s->head + s->count) % s->cap] = (cpu_task){fn, arg};
    s->count++;
    s->submitted++;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->mu);
}

static void cpu_sync(rill_stream *s) { cpu_enter(s); }

static rill_status cpu_event_create(rill_backend *be, rill_event **out) {
    *out = rill_calloc(1, sizeof **out);
    return *out ? RILL_OK : RILL_ENOMEM;
}

static void cpu_event_destroy(rill_event *e) { rill_free(e); }

static void cpu_event_record(rill_stream *s, rill_event *e) {
    pthread_mutex_lock(&s->mu);
    e->s = s;
    e->seq = s->submitted;
    pthread_mutex_unlock(&s->mu);
}

static void cpu_event_wait(rill_event *e) {
    rill_stream *s = e->s;
    if (!s || tls_stream == s) return;
    pthread_mutex_lock(&s->mu);
    while (s->completed < e->seq)
        pthread_cond_wait(&s->changed, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static bool cpu_event_done(rill_event *e) {
    rill_stream *s = e->s;
    if (!s) return true;
    pthread_mutex_lock(&s->mu);
    bool done = s->completed >= e->seq;
    pthread_mutex_unlock(&s->mu);
    return done;
}

// The residual add and the norm after it: the two ops as they were, one after the other.
static void cpu_add_rmsnorm(rill_stream *s, rill_tensor *out, rill_tensor *x, const rill_tensor *r, const float *w,
                            float eps, bool add_one) {
    cpu_add(s, x, x, r);
    cpu_rmsnorm(s, out, x, w, eps, add_one);
}

static const rill_backend_ops cpu_ops = {
    .name = "cpu",
    .fuse_projections = true,
    .weights_in_place = true,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_upload,
    .download = cpu_download,
    .weight_load = cpu_weight_load,
    .weight_load_bytes = cpu_weight_load_bytes,
    .weight_free = cpu_weight_free,
    .stream_create = cpu_stream_create,
    .stream_destroy = cpu_stream_destroy,
    .launch = cpu_launch,
    .sync = cpu_sync,
    .event_create = cpu_event_create,
    .event_destroy = cpu_event_destroy,
    .event_record = cpu_event_record,
    .event_wait = cpu_event_wait,
    .event_done = cpu_event_done,
    .embed = cpu_embed,
    .matmul = cpu_matmul,
    .rmsnorm = cpu_rmsnorm,
    .add_rmsnorm = cpu_add_rmsnorm,
    .rope = cpu_rope,
    .attention = cpu_attention,
    .act_mul = cpu_act_mul,
    .add = cpu_add,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .copy = cpu_copy,
    .moe_route = cpu_moe_route,
    .moe_matmul = cpu_moe_matmul,
    .moe_combine = cpu_moe_combine,
    .kv_quantize = cpu_kv_quantize,
    .attention_q = cpu_attention_q,
};

rill_status cpu_backend_open(int threads, rill_backend **out) {
    *out = NULL;
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > CPU_MAX_THREADS)
        return rill_fail(RILL_ERANGE, "cpu backend: %d threads (at most %d)", threads, CPU_MAX_THREADS);
    rill_backend *be = rill_calloc(1, sizeof *be);
    cpu_backend *cb = rill_calloc(1, sizeof *cb);
    if (!be || !cb) {
        rill_free(be);
        rill_free(cb);
        return RILL_ENOMEM;
    }
    cb->n_threads = threads;
    const char *mm = getenv("RILL_CPU_MATMUL");
    cb->int8 = !(mm && !strcmp(mm, "f32"));
    cb->q8_path = cpu_q8_best_path();
    cb->q8_planes = mm && !strcmp(mm, "int8") ? 1 : 2;
    cb->gemm_path = cpu_gemm_best_path();
    const char *kp = getenv("RILL_CPU_PATH"); // "scalar": the portable kernels (same integers, other f32 sum order)
    if (kp && !strcmp(kp, "scalar")) cb->q8_path = cb->gemm_path = CPU_PATH_SCALAR;
    be->ops = &cpu_ops;
    be->act_dtype = DTYPE_F32;
    be->impl = cb;
    *out = be;
    return RILL_OK;
}

void cpu_backend_close(rill_backend *be) {
    rill_free(be->impl);
    rill_free(be);
}
