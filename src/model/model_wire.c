// model_wire.c: --wired: pins a loaded model's weights in RAM with mlock, so that decode never waits
// on a page the kernel evicted (mlx-lm's wired limit plays this part on Apple GPUs). Pinned: the
// mapped model files and every host block loading made (converted and repacked tensors). When the
// memlock limit (RLIMIT_MEMLOCK) or the kernel refuses, whatever was pinned is released and the
// reason names the limit and the bytes wanted; the model stays usable, unpinned. The pins last as
// long as the memory: unmapping or freeing it at model_free releases them.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "base/alloc.h"
#include "model/model.h"
#include "quant/affine.h"

enum { MAX_REGIONS = 4096 };

typedef struct {
    const void *p[MAX_REGIONS];
    size_t n[MAX_REGIONS];
    int count;
    size_t bytes;
    bool overflow;
} region_list;

static void add(region_list *r, const void *p, size_t n) {
    if (!p || !n) return;
    if (r->count == MAX_REGIONS) {
        r->overflow = true;
        return;
    }
    r->p[r->count] = p;
    r->n[r->count++] = n;
    r->bytes += n;
}

static void collect(const rill_model *m, region_list *r) {
    if (m->gguf) add(r, m->gguf->map.data, m->gguf->map.size);
    if (m->st)
        for (size_t i = 0; i < m->st->n_files; i++)
            add(r, m->st->files[i]->map.data, m->st->files[i]->map.size);
    for (int i = 0; i < m->n_owned; i++)
        add(r, m->owned[i], rill_alloc_size(m->owned[i]));
    const affine_tensor *a = m->affine_owned;
    for (int i = 0; i < m->n_affine; i++) {
        add(r, a[i].packed, rill_alloc_size(a[i].packed));
        add(r, a[i].scales, rill_alloc_size(a[i].scales));
        add(r, a[i].biases, rill_alloc_size(a[i].biases));
    }
}

rill_status model_wire(const rill_model *m, size_t *bytes) {
    region_list *r = rill_calloc(1, sizeof *r);
    if (!r) return RILL_ENOMEM;
    collect(m, r);
    *bytes = r->bytes;
    for (int i = 0; i < r->count; i++) {
        if (mlock(r->p[i], r->n[i]) == 0) continue;
        int err = errno;
        for (int k = 0; k < i; k++)
            munlock(r->p[k], r->n[k]);
        struct rlimit lim;
        char limit[64] = "unknown";
        if (getrlimit(RLIMIT_MEMLOCK, &lim) == 0) {
            if (lim.rlim_cur == RLIM_INFINITY)
                snprintf(limit, sizeof limit, "unlimited");
            else
                snprintf(limit, sizeof limit, "%.1f MB", (double)lim.rlim_cur / 1e6);
        }
        size_t want = r->bytes;
        rill_free(r);
        return rill_fail(RILL_ERANGE,
                         "--wired: cannot pin %.1f MB of weights: mlock: %s (RLIMIT_MEMLOCK %s; raise it with "
                         "`ulimit -l` or run with CAP_IPC_LOCK); going on unpinned",
                         (double)want / 1e6, strerror(err), limit);
    }
    bool overflow = r->overflow;
    rill_free(r);
    if (overflow)
        return rill_fail(RILL_ERANGE, "--wired: more than %d weight blocks; pinned the first ones", MAX_REGIONS);
    return RILL_OK;
}
