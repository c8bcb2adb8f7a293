// backend.c: the registry of backends compiled into this build. A backend adds one line here.
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"

rill_status cpu_backend_open(int threads, rill_backend **out);
void cpu_backend_close(rill_backend *be);
#ifdef RILL_CUDA
rill_status cuda_backend_open(int threads, rill_backend **out);
void cuda_backend_close(rill_backend *be);
#define CUDA_ENTRY {"cuda", cuda_backend_open, cuda_backend_close},
#define CUDA_NAME "cuda",
#else
#define CUDA_ENTRY
#define CUDA_NAME
#endif

typedef struct {
    const char *name;
    rill_status (*open)(int threads, rill_backend **out);
    void (*close)(rill_backend *be);
} backend_entry;

static const backend_entry entries[] = {
    {"cpu", cpu_backend_open, cpu_backend_close},
    CUDA_ENTRY
};

static const char *const names[] = {"cpu", CUDA_NAME NULL};

const char *const *backend_names(void) { return names; }

rill_status backend_open(const char *name, int threads, rill_backend **out) {
    *out = NULL;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        if (!strcmp(name, entries[i].name)) return entries[i].open(threads, out);
    char have[128] = "";
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", i ? ", " : "", entries[i].name);
    return rill_fail(RILL_EUNSUPPORTED, "backend '%s' is not compiled into this build (have: %s)", name, have);
}

void backend_close(rill_backend *be) {
    if (!be) return;
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        if (!strcmp(be->ops->name, entries[i].name)) {
            entries[i].close(be); // be is gone now
            return;
        }
}
