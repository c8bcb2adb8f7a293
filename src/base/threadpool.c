// threadpool.c: workers wait on a generation counter; a loop hands out tasks through an atomic
// index. Spinning then sleeping on a condition variable keeps the per-loop cost to a few
// microseconds while the pool is busy and zero CPU while it is idle.
#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "base/alloc.h"

#define SPIN_ROUNDS 20000

struct threadpool {
    int n_threads;
    pthread_t *threads; // [n_threads - 1]
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint generation; // bumped once per loop (and at shutdown)
    atomic_int next_task;   // next task index to hand out
    atomic_int pending;     // workers still inside the current loop
    int n_tasks;
    threadpool_fn fn;
    void *arg;
    atomic_bool stop;
};

typedef struct {
    threadpool *p;
    int id;
} worker_arg;

static void drain(threadpool *p, int thread) {
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= p->n_tasks) break;
        p->fn(p->arg, t, thread);
    }
}

static void *worker(void *v) {
    worker_arg wa = *(worker_arg *)v;
    rill_free(v);
    threadpool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen) {
            if (++spins < SPIN_ROUNDS) continue;
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = g;
        if (atomic_load(&p->stop)) return NULL;
        drain(p, wa.id);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

rill_status threadpool_create(int n_threads, threadpool **out) {
    *out = NULL;
    if (n_threads < 1) return rill_fail(RILL_EINVAL, "threadpool: %d threads (need at least 1)", n_threads);
    threadpool *p = rill_calloc(1, sizeof *p);
    if (!p) return RILL_ENOMEM;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (n_threads > 1) {
        p->threads = rill_calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
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
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    rill_free(p->threads);
    rill_free(p);
}

int threadpool_size(const threadpool *p) { return p->n_threads; }

void threadpool_run(threadpool *p, int n_tasks, threadpool_fn fn, void *arg) {
    if (n_tasks <= 0) return;
    if (p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, p->n_threads - 1, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    drain(p, 0);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
        sched_yield();
}
