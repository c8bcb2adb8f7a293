// threadpool.h: a fixed pool of worker threads that split one parallel loop at a time.
// The calling thread takes part, so a pool of n threads starts n - 1 workers. Workers spin
// briefly between loops (decode issues hundreds of small loops per token), then sleep.
#pragma once
#include "base/status.h"

typedef struct threadpool threadpool;

// fn(arg, task, thread): runs task `task` in [0, n_tasks) on thread `thread` in [0, n_threads).
typedef void (*threadpool_fn)(void *arg, int task, int thread);

rill_status threadpool_create(int n_threads, threadpool **out); // n_threads >= 1
void threadpool_destroy(threadpool *p);                         // NULL is allowed
int threadpool_size(const threadpool *p);
// Runs every task once and returns when all are done. Not reentrant: one loop at a time.
void threadpool_run(threadpool *p, int n_tasks, threadpool_fn fn, void *arg);
