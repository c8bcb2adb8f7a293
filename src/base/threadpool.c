// threadpool.c: one parallel loop at a time, tasks claimed dynamically. A loop is published as one
// 64-bit word {generation, n_tasks, next task}; a thread claims a task with one fetch_add on that
// word, so a late worker can never take a task of the wrong loop, and the caller waits for the
// loop's tasks to be done, not for every worker to wake: a descheduled worker costs nothing
// unless it holds a task. Workers spin (pause) a while between loops, then sleep on a futex.
// No allocation per loop.
#include "base/threadpool.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

// The loop word: generation [63:40], n_tasks [39:20], next task [19:0].
#define GEN_SHIFT 40 // 24 bits of generation
#define NT_SHIFT  20 // 20 bits of n_tasks (loops of more than MAX_TASKS run serially)
#define NEXT_MASK ((UINT64_C(1) << NT_SHIFT) - 1)
#define NT_MASK   ((UINT64_C(1) << (GEN_SHIFT - NT_SHIFT)) - 1)
#define MAX_TASKS ((int)(NEXT_MASK >> 1)) // leaves headroom for claims past the end
#define SPIN_NS   200000                  // a worker spins this long after its last task, then sleeps

struct threadpool {
    int n_threads;
    pthread_t *threads;                 // [n_threads - 1]
    _Alignas(64) _Atomic uint64_t loop; // {generation, n_tasks, next}
    _Alignas(64) atomic_int done;       // tasks of the current loop finished
    _Alignas(64) _Atomic uint32_t wake; // futex word: bumped for each loop while a worker sleeps
    atomic_int sleepers;
    threadpool_fn fn; // of the current loop: written before the loop word is published
    void *arg;
    atomic_bool stop;
};

typedef struct {
    threadpool *p;
    int id;
} worker_arg;

static void futex_wait(_Atomic uint32_t *w, uint32_t seen) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}
static void futex_wake_all(_Atomic uint32_t *w) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// Claims and runs tasks until the loop has none left; returns how many it ran. A claim may land in
// a newer loop than the one that woke us (the caller published it meanwhile): the word says which
// loop, its fn and arg were published before it, and a task claimed is a task run.
static int drain(threadpool *p, int thread) {
    int ran = 0;
    for (;;) {
        uint64_t w = atomic_fetch_add_explicit(&p->loop, 1, memory_order_acquire);
        int n = (int)((w >> NT_SHIFT) & NT_MASK), t = (int)(w & NEXT_MASK);
        if (t >= n) break;
        p->fn(p->arg, t, thread);
        ran++;
    }
    if (ran) atomic_fetch_add_explicit(&p->done, ran, memory_order_release);
    return ran;
}

static void *worker(void *v) {
    worker_arg wa = *(worker_arg *)v;
    rill_free(v);
    threadpool *p = wa.p;
    uint64_t seen = atomic_load_explicit(&p->loop, memory_order_acquire) >> GEN_SHIFT;
    for (;;) {
        uint64_t w, t0 = 0;
        int spins = 0;
        while ((w = atomic_load_explicit(&p->loop, memory_order_acquire)) >> GEN_SHIFT == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
            cpu_relax();
            if (++spins % 256) continue;
            uint64_t t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 < SPIN_NS) continue;
            // sleep until the next loop: announce, then re-check before waiting (no lost wake-up)
            uint32_t ws = atomic_load_explicit(&p->wake, memory_order_seq_cst);
            atomic_fetch_add_explicit(&p->sleepers, 1, memory_order_seq_cst);
            if (atomic_load_explicit(&p->loop, memory_order_seq_cst) >> GEN_SHIFT == seen &&
                !atomic_load_explicit(&p->stop, memory_order_seq_cst))
                futex_wait(&p->wake, ws);
            atomic_fetch_sub_explicit(&p->sleepers, 1, memory_order_seq_cst);
            t0 = 0;
        }
        seen = w >> GEN_SHIFT;
        if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
        drain(p, wa.id);
    }
}

rill_status threadpool_create(int n_threads, threadpool **out) {
    *out = NULL;
    if (n_threads < 1) return rill_fail(RILL_EINVAL, "threadpool: %d threads (need at least 1)", n_threads);
    threadpool *p = rill_calloc(1, sizeof *p);
    if (!p) return RILL_ENOMEM;
    p->n_threads = n_threads;
    if (n_threads > 1) {
        p->threads = rill_calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            p->n_threads = 1;
            threadpool_destroy(p);
            return RILL_ENOMEM;
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = rill_malloc(sizeof *wa);
        if (!wa) {
            p->n_threads = i;
            threadpool_destroy(p);
            return RILL_ENOMEM;
        }
        wa->p = p;
        wa->id = i;
        if (pthread_create(&p->threads[i - 1], NULL, worker, wa) != 0) {
            rill_free(wa);
            p->n_threads = i;
            threadpool_destroy(p);
            return rill_fail(RILL_EIO, "threadpool: cannot start thread %d of %d", i + 1, n_threads);
        }
    }
    *out = p;
    return RILL_OK;
}

void threadpool_destroy(threadpool *p) {
    if (!p) return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->wake, 1);
    futex_wake_all(&p->wake);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    rill_free(p->threads);
    rill_free(p);
}

int threadpool_size(const threadpool *p) { return p->n_threads; }

static void run_serial(int n_tasks, threadpool_fn fn, void *arg) {
    for (int t = 0; t < n_tasks; t++)
        fn(arg, t, 0);
}

void threadpool_run(threadpool *p, int n_tasks, threadpool_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        run_serial(n_tasks, fn, arg);
        return;
    }
    if (n_tasks > MAX_TASKS) { // (callers split work into a few thousand tasks; this keeps the word's fields apart)
        run_serial(n_tasks, fn, arg);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint64_t gen =
        ((atomic_load_explicit(&p->loop, memory_order_relaxed) >> GEN_SHIFT) + 1) & ((UINT64_C(1) << 24) - 1);
    // publish: fn, arg and done are visible to whoever sees the new word (release)
    atomic_store_explicit(&p->loop, gen << GEN_SHIFT | (uint64_t)n_tasks << NT_SHIFT, memory_order_seq_cst);
    if (atomic_load_explicit(&p->sleepers, memory_order_seq_cst) > 0) {
        atomic_fetch_add_explicit(&p->wake, 1, memory_order_seq_cst);
        futex_wake_all(&p->wake);
    }
    drain(p, 0);
    // wait for tasks still held by workers (a worker that never woke holds none)
    int spins = 0;
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n_tasks)
        if (++spins % 1024)
            cpu_relax();
        else
            sched_yield();
}
