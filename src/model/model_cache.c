// model_cache.c: a model's prompt cache as mlx-lm's make_prompt_cache builds it (sliding layers get
// a RotatingKVCache of their window; --max-kv-size makes every other layer a RotatingKVCache with
// keep 4), and the identity of a model that a prompt-cache file is checked against.
#include "base/alloc.h"
#include "model/model.h"

cache_shape model_cache_shape(const rill_model *m) {
    const rill_model_config *c = &m->cfg;
    cache_shape sh = {.be = m->be, .dtype = m->be->act_dtype, .n_layers = c->n_layers, .step = 256};
    if (m->mla) { // the latent cache: [latent | RoPE key] per position, values read from the latent
        sh.k_dim = (int64_t)c->kv_lora_rank + c->qk_rope_head_dim;
        sh.v_dim = 0;
        sh.n_kv_heads = 1;
        sh.latent_dim = c->kv_lora_rank;
    } else {
        sh.k_dim = (int64_t)c->n_kv_heads * c->head_dim;
        sh.v_dim = (int64_t)c->n_kv_heads * m->v_head_dim;
        sh.n_kv_heads = c->n_kv_heads;
    }
    return sh;
}

rill_status model_make_prompt_cache(const rill_model *m, int64_t max_kv_size, rill_cache **out) {
    int n = m->cfg.n_layers;
    int *windows = rill_calloc((size_t)n, sizeof *windows);
    if (!windows) return RILL_ENOMEM;
    for (int l = 0; l < n; l++)
        windows[l] = m->layers[l].window;
    cache_shape sh = model_cache_shape(m);
    cache_options o = {max_kv_size, 4, windows};
    rill_status st = cache_make_prompt(&sh, &o, out);
    rill_free(windows);
    return st;
}
