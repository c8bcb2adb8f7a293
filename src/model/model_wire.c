// model_wire.c: --wired: pins a loaded model's weights in RAM with mlock, so that decode never waits
// on a page the kernel evicted (mlx-lm's wired limit plays this part on Apple GPUs). Pinned: every
// host block loading made (converted and repacked tensors) and, of the mapped model files, only the
// tensors the model reads in place (a GGUF whose blocks were all repacked pins none of its map). When the
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

// True when p lies in one of the model's mapped files.
static bool in_map(const rill_model *m, const void *p) {
    const char *c = p;
    if (m->gguf && c >= (const char *)m->gguf->map.data && c < (const char *)m->gguf->map.data + m->gguf->map.size)
        return true;
    for (size_t i = 0; m->st && i < m->st->n_files; i++) {
        const mapped_file *f = &m->st->files[i]->map;
        if (c >= (const char *)f->data && c < (const char *)f->data + f->size) return true;
    }
    return false;
}

// w's arrays that the model reads in place from a mapped file (blocks loading made are added apart).
static void add_mapped(const rill_model *m, region_list *r, const rill_weight *w) {
    if (w->rows <= 0) return;
    size_t es = dtype_size(w->dtype);
    if (w->kind == WEIGHT_DENSE) {
        if (w->data && in_map(m, w->data)) add(r, w->data, (size_t)(w->rows * w->cols) * es);
        return;
    }
    size_t groups = (size_t)(w->rows * (w->cols / w->group_size));
    if (w->packed && in_map(m, w->packed)) add(r, w->packed, (size_t)(w->rows * w->cols * w->bits / 8));
    if (w->scales && in_map(m, w->scales)) add(r, w->scales, groups * es);
    if (w->biases && in_map(m, w->biases)) add(r, w->biases, groups * es);
}

static void collect(const rill_model *m, region_list *r) {
    add_mapped(m, r, &m->embed);
    if (m->lm_head.data != m->embed.data || m->lm_head.packed != m->embed.packed) add_mapped(m, r, &m->lm_head);
    const rill_model_config *c = &m->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *L = &m->layers[l];
        const rill_weight *ws[] = {&L->q,     &L->k,       &L->v,   &L->o,      &L->gate,   &L->up,
                                   &L->down,  &L->q_a,     &L->q_b, &L->kv_a,   &L->router, &L->sh_gate,
                                   &L->sh_up, &L->sh_down, &L->qkv, &L->gate_up};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            add_mapped(m, r, ws[i]);
        for (int e = 0; L->moe && e < c->n_routed_experts; e++) {
            add_mapped(m, r, &L->ex_gate[e]);
            add_mapped(m, r, &L->ex_up[e]);
            add_mapped(m, r, &L->ex_down[e]);
        }
        for (int h = 0; L->mla_unembed && h < c->n_heads; h++) // (embed_q are blocks loading made)
            add_mapped(m, r, &L->mla_unembed[h]);
    }
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
