// cuda_memory.c: device memory of the CUDA backend. Every cudaMalloc is recorded in a table
// (pointer -> bytes) and counted through rill_memory_account (rule 7), so peak memory includes the
// GPU. Weights given in host memory are uploaded once into one block that weight_free releases;
// weights already in device memory are used as they are (a view, like the CPU backend's).
#ifdef RILL_CUDA
#include <pthread.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "base/alloc.h"
#include "base/env_switch.h"
#include "quant/affine.h"

typedef struct {
    void *p;
    size_t bytes;
    bool weight; // uploaded by weight_load: weight_free releases it
} block;

typedef struct {
    pthread_mutex_t mu;
    block *blocks; // [cap], the first n in use
    size_t n, cap;
} mem_table;

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;

static mem_table *table(rill_backend *be) {
    pthread_mutex_lock(&init_mu);
    if (!be->impl) {
        mem_table *t = rill_calloc(1, sizeof *t);
        if (t) pthread_mutex_init(&t->mu, NULL);
        be->impl = t;
    }
    pthread_mutex_unlock(&init_mu);
    return be->impl;
}

static bool remember(rill_backend *be, void *p, size_t bytes, bool weight) {
    mem_table *t = table(be);
    if (!t) return false;
    pthread_mutex_lock(&t->mu);
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        block *b = rill_realloc(t->blocks, cap * sizeof *b);
        if (!b) {
            pthread_mutex_unlock(&t->mu);
            return false;
        }
        t->blocks = b;
        t->cap = cap;
    }
    t->blocks[t->n++] = (block){p, bytes, weight};
    pthread_mutex_unlock(&t->mu);
    return true;
}

// Removes p from the table; returns its entry (p == NULL when it was not there).
static block forget(rill_backend *be, const void *p, bool weights_only) {
    block found = {0};
    mem_table *t = table(be);
    if (!t || !p) return found;
    pthread_mutex_lock(&t->mu);
    for (size_t i = t->n; i-- > 0;)
        if (t->blocks[i].p == p && (!weights_only || t->blocks[i].weight)) {
            found = t->blocks[i];
            t->blocks[i] = t->blocks[--t->n];
            break;
        }
    pthread_mutex_unlock(&t->mu);
    return found;
}

static void *device_alloc(rill_backend *be, size_t bytes, bool weight) {
    void *p = NULL;
    if (bytes == 0) bytes = 1;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
        rill_fail(RILL_ENOMEM, "cuda alloc: %zu bytes: %s", bytes, cudaGetErrorString(err));
        return NULL;
    }
    if (!remember(be, p, bytes, weight)) {
        cudaFree(p);
        return NULL;
    }
    rill_memory_account((ptrdiff_t)bytes);
    return p;
}

static void release(block b) {
    if (!b.p) return;
    cudaFree(b.p);
    rill_memory_account(-(ptrdiff_t)b.bytes);
}

void *cuda_alloc(rill_backend *be, size_t bytes) { return device_alloc(be, bytes, false); }

void cuda_free(rill_backend *be, void *p) {
    if (!p) return;
    block b = forget(be, p, false);
    if (!b.p) {
        rill_fail(RILL_EINVAL, "cuda free: %p is not a live block of this backend", p);
        return;
    }
    release(b);
}

void cuda_memory_close(rill_backend *be) {
    mem_table *t = be->impl;
    if (!t) return;
    for (size_t i = 0; i < t->n; i++)
        release(t->blocks[i]);
    pthread_mutex_destroy(&t->mu);
    rill_free(t->blocks);
    rill_free(t);
    be->impl = NULL;
}

void *cuda_scratch(rill_stream *s, size_t bytes, const char *op) {
    if (s->scratch_bytes >= bytes) return s->scratch;
    if (s->capturing) { // a graph must never see its scratch move: run the step once uncaptured first
        cuda_reject(s, RILL_EINVAL, op, "scratch would grow during graph capture");
        return NULL;
    }
    cuda_forget_prepared(s); // (its planes go with the old block)
    // the kernels already queued may still read the old block
    if (!cuda_ok(s, cudaStreamSynchronize(s->cs), op)) return NULL;
    if (s->scratch) cuda_free(s->be, s->scratch);
    s->scratch_bytes = 0;
    size_t want = (bytes + bytes / 4 + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
    s->scratch = cuda_alloc(s->be, want);
    if (!s->scratch) {
        if (s->status == RILL_OK) s->status = RILL_ENOMEM;
        return NULL;
    }
    s->scratch_bytes = want;
    return s->scratch;
}

static bool on_device(const void *p) {
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        cudaGetLastError(); // clear: a plain host pointer is not an error
        return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

static rill_status check_weight(const rill_weight *w) {
    if (w->rows <= 0 || w->cols <= 0)
        return rill_fail(RILL_EINVAL, "cuda weight_load: shape %lld x %lld", (long long)w->rows, (long long)w->cols);
    if (w->dtype != DTYPE_F32 && w->dtype != DTYPE_F16 && w->dtype != DTYPE_BF16)
        return rill_fail(RILL_EUNSUPPORTED, "cuda weight_load: dtype %s", dtype_name(w->dtype));
    if (w->kind == WEIGHT_DENSE) return RILL_OK;
    if (w->kind != WEIGHT_AFFINE) return rill_fail(RILL_EINVAL, "cuda weight_load: kind %d", (int)w->kind);
    bool bits_ok = w->bits >= 2 && w->bits <= 8 && w->bits != 7;
    bool group_ok = w->group_size == 16 || w->group_size == 32 || w->group_size == 64 || w->group_size == 128;
    if (!bits_ok || !group_ok || w->cols % w->group_size || (w->cols * w->bits) % 32)
        return rill_fail(RILL_EUNSUPPORTED, "cuda weight_load: affine bits %d group %d with %lld columns", w->bits,
                         w->group_size, (long long)w->cols);
    return RILL_OK;
}

// RILL_CUDA_DERIVE_BIAS=0 uploads every bias (to measure against).
static bool derive_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_CUDA_DERIVE_BIAS", &on);
}

// Whether an affine weight from a GGUF file (act_quant set) has every bias equal to -2^(bits-1) x its
// group's scale, as Q4_0, Q5_0 and Q8_0 blocks repack (gguf_repack.c): then the upload leaves the
// biases out and the kernels derive them (group_bias), 4.5 bits a weight for Q4_0 instead of 5. The
// first group that differs (Q4_1, Q5_1, K-quants) ends the look. f16 scales only (GGUF's, narrowed:
// weights.c), the type the 4-bit GEMVs have an instance for (f16_zp).
static bool biases_derivable(const rill_weight *w, size_t groups) {
    if (!derive_allowed() || w->kind != WEIGHT_AFFINE || w->act_quant == ACT_QUANT_NONE || w->dtype != DTYPE_F16 ||
        !w->biases || on_device(w->biases) || on_device(w->scales))
        return false;
    const float z = (float)(1 << (w->bits - 1));
    for (size_t g = 0; g < groups; g++)
        if (affine_factor_at(w->dtype, w->biases, g) != -z * affine_factor_at(w->dtype, w->scales, g)) return false;
    return true;
}

// Appends one array to the upload block when it lives on the host: offsets rounded to 256 bytes.
typedef enum { F_DATA, F_PACKED, F_SCALES, F_BIASES, F_BIAS } field;

typedef struct {
    field f; // which of the dev weight's pointers to redirect
    const void *src;
    size_t bytes, offset;
} piece;

rill_status cuda_weight_load(rill_backend *be, const rill_weight *host, rill_weight *dev) {
    rill_status st = check_weight(host);
    if (st != RILL_OK) return st;
    *dev = *host;
    size_t groups = (size_t)(host->rows * (host->cols / (host->kind == WEIGHT_AFFINE ? host->group_size : 1)));
    size_t ds = dtype_size(host->dtype);
    piece pieces[5];
    int n = 0;
    size_t total = 0;
#define PIECE(fld, ptr, nbytes)                                                                                        \
    if ((ptr) && !on_device(ptr)) {                                                                                    \
        pieces[n] = (piece){fld, (ptr), (nbytes), total};                                                              \
        total += ((nbytes) + 255) & ~(size_t)255;                                                                      \
        n++;                                                                                                           \
    }
    if (host->kind == WEIGHT_DENSE) {
        PIECE(F_DATA, host->data, (size_t)(host->rows * host->cols) * ds)
    } else {
        PIECE(F_PACKED, host->packed, (size_t)(host->rows * host->cols * host->bits / 32) * 4)
        PIECE(F_SCALES, host->scales, groups * ds)
        if (biases_derivable(host, groups))
            dev->biases = NULL;
        else
            PIECE(F_BIASES, host->biases, groups * ds)
    }
    PIECE(F_BIAS, host->bias, (size_t)host->rows * 4)
#undef PIECE
    if (n == 0) return RILL_OK; // already on this device: a view
    char *blk = device_alloc(be, total, true);
    if (!blk) return RILL_ENOMEM;
    for (int i = 0; i < n; i++) {
        cudaError_t err = cudaMemcpy(blk + pieces[i].offset, pieces[i].src, pieces[i].bytes, cudaMemcpyHostToDevice);
        if (err != cudaSuccess) {
            release(forget(be, blk, true));
            return rill_fail(RILL_EIO, "cuda weight_load: upload of %zu bytes: %s", pieces[i].bytes,
                             cudaGetErrorString(err));
        }
        char *at = blk + pieces[i].offset;
        switch (pieces[i].f) {
        case F_DATA: dev->data = at; break;
        case F_PACKED: dev->packed = (const uint32_t *)at; break;
        case F_SCALES: dev->scales = at; break;
        case F_BIASES: dev->biases = at; break;
        case F_BIAS: dev->bias = (const float *)at; break;
        }
    }
    return RILL_OK;
}

void cuda_weight_free(rill_backend *be, rill_weight *dev) {
    // the upload block starts at the first array that was uploaded; views free nothing
    const void *arrays[] = {dev->data, dev->packed, dev->scales, dev->biases, dev->bias};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        block b = forget(be, arrays[i], true);
        if (b.p) {
            release(b);
            break;
        }
    }
    memset(dev, 0, sizeof *dev);
}
#endif
