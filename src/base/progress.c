// progress.c: a throttled one-line progress bar, drawn with carriage returns.
#include "base/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double rill_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_begin(progress *p, const char *label, uint64_t total) {
    p->label = label;
    p->total = total ? total : 1;
    p->start = p->last_draw = rill_now();
    p->tty = isatty(fileno(stderr));
    p->drawn = false;
}

void progress_update(progress *p, uint64_t done) {
    if (!p->tty) return;
    double now = rill_now();
    if (now - p->start < 1.0 || now - p->last_draw < 0.1) return;
    p->last_draw = now;
    p->drawn = true;
    double frac = done >= p->total ? 1.0 : (double)done / (double)p->total;
    int width = 30, fill = (int)(frac * width);
    char bar[31];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r%s [%s] %5.1f%% %.1fs", p->label, bar, 100.0 * frac, now - p->start);
    fflush(stderr);
}

void progress_end(progress *p) {
    if (p->drawn) {
        p->last_draw = 0; // the final state is always drawn
        progress_update(p, p->total);
        fputc('\n', stderr);
    }
    p->drawn = false;
}
