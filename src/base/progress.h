// progress.h: a progress bar on stderr for work that takes more than about a second.
// It draws only when stderr is a terminal and the work has run for over a second.
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *label;
    uint64_t total;     // units of work (bytes, tensors, tokens)
    double start;       // seconds, monotonic
    double last_draw;   // seconds, monotonic
    bool tty, drawn;
} progress;

double rill_now(void); // monotonic seconds

void progress_begin(progress *p, const char *label, uint64_t total);
void progress_update(progress *p, uint64_t done);
void progress_end(progress *p);
