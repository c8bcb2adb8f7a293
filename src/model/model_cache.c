// model_cache.c: a model's prompt cache as mlx-lm's make_prompt_cache builds it (sliding layers get
// a RotatingKVCache of their window; --max-kv-size makes every other layer a RotatingKVCache with
// keep 4), and the identity of a model that a prompt-cache file is checked against.
#include "base/alloc.h"
#include "model/model.h"

rill_status model_make_prompt_cache(const rill_model *m, int64_t max_kv_size, rill_cache **out) {
    int n = m->cfg.n_layers;
    int *windows = rill_calloc((size_t)n, sizeof *windows);
    if (!windows) return RILL_ENOMEM;
    for (int l = 0; l < n; l++)
        windows[l] = m->layers[l].window;
    cache_shape sh = {m->be,
                      m->be->act_dtype,
                      n,
                      (int64_t)m->cfg.n_kv_heads * m->cfg.head_dim,
                      (int64_t)m->cfg.n_kv_heads * m->v_head_dim, // MLA: v_head_dim, not the q/k head size
                      256};
    cache_options o = {max_kv_size, 4, windows};
    rill_status st = cache_make_prompt(&sh, &o, out);
    rill_free(windows);
    return st;
}
