// model.c: opening a model: the file or folder, its config, its architecture's traits, the
// per-model constants the decoder uses (RoPE layout and frequencies, attention and embedding
// scales), and the weights bound to the backend. Also the model's prompt cache.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "model/model.h"
#include "quant/affine.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static rill_status open_source(rill_model *m, const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0) return rill_fail(RILL_ENOTFOUND, "%s: no such file or folder", path);
    if (S_ISREG(sb.st_mode) && !ends_with(path, ".json")) {
        rill_status st = gguf_open(path, &m->gguf);
        if (st != RILL_OK) return st;
        return model_config_from_gguf(m->gguf, path, &m->cfg);
    }
    char dir[4096], cfg[4200];
    snprintf(dir, sizeof dir, "%s", path);
    if (S_ISREG(sb.st_mode)) { // a config.json: its folder holds the weights
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(dir, sizeof dir, ".");
    }
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    rill_status st = model_config_from_json_file(cfg, &m->cfg);
    if (st != RILL_OK) return st;
    return safetensors_set_open(dir, &m->st);
}

rill_status model_upload_vector(rill_model *m, const float *host, int64_t n, float **out) {
    float *d = m->be->ops->alloc(m->be, (size_t)n * sizeof(float));
    if (!d) return RILL_ENOMEM;
    if (m->n_dev == m->cap_dev) {
        int cap = m->cap_dev ? 2 * m->cap_dev : 64;
        void **nv = rill_realloc(m->dev_owned, (size_t)cap * sizeof *nv);
        if (!nv) {
            m->be->ops->free(m->be, d);
            return RILL_ENOMEM;
        }
        m->dev_owned = nv;
        m->cap_dev = cap;
    }
    m->dev_owned[m->n_dev++] = d;
    rill_stream *s;
    rill_status st = m->be->ops->stream_create(m->be, &s);
    if (st != RILL_OK) return st;
    m->be->ops->upload(s, d, host, (size_t)n * sizeof(float));
    m->be->ops->sync(s);
    m->be->ops->stream_destroy(s);
    *out = d;
    return RILL_OK;
}

static rill_status setup(rill_model *m, const char *path) {
    rill_model_config *c = &m->cfg;
    m->traits = arch_traits(c->arch);
    if (!m->traits)
        return rill_fail(RILL_EUNSUPPORTED, "%s: architecture '%s' is not supported by the decoder yet", path,
                         c->model_type);
    if (c->n_routed_experts > 0 && c->n_group > 1 && c->n_routed_experts / c->n_group < 2)
        return rill_fail(RILL_EUNSUPPORTED, "%s: MoE groups of one expert", path);
    m->mla = c->kv_lora_rank > 0;
    m->rope_dims = m->mla ? c->qk_rope_head_dim : c->head_dim;
    m->v_head_dim = m->mla ? c->v_head_dim : c->head_dim;
    if (strcmp(c->hidden_act, "silu") && strcmp(c->hidden_act, "swish") && strcmp(c->hidden_act, "gelu_pytorch_tanh") &&
        strcmp(c->hidden_act, "gelu_tanh"))
        return rill_fail(RILL_EUNSUPPORTED, "%s: activation '%s' is not supported", path, c->hidden_act);
    if (c->head_dim % 2) return rill_fail(RILL_EUNSUPPORTED, "%s: odd head_dim %d", path, c->head_dim);
    // llama.cpp's converter permutes the Q and K rows of llama-family models for its "normal"
    // (interleaved-pair) RoPE; every other source keeps HF's half-split (NEOX) layout.
    m->rope_layout =
        m->gguf && (c->arch == MODEL_ARCH_LLAMA || c->arch == MODEL_ARCH_MISTRAL) ? ROPE_INTERLEAVED : ROPE_NEOX;
    m->norm_add_one = m->traits->norm_add_one && !m->gguf; // GGUF stores gemma's norms as 1 + w
    double qpas = c->query_pre_attn_scalar > 0 ? c->query_pre_attn_scalar : c->head_dim;
    m->attn_scale = (float)(1.0 / sqrt(qpas));
    const rope_scaling *rs = &c->rope_scaling;
    if (m->mla && rs->type != ROPE_SCALING_NONE && rs->mscale_all_dim > 0 && rs->factor > 1) { // yarn's softmax scale
        double ms = 0.1 * rs->mscale_all_dim * log(rs->factor) + 1.0;
        m->attn_scale = (float)(m->attn_scale * ms * ms);
    }
    m->embed_scale = m->traits->embed_scale ? sqrtf((float)c->hidden_size) : 1.0f;

    int half = m->rope_dims / 2;
    float freqs[1024], mscale_local;
    if (half > 1024 || m->rope_dims % 2)
        return rill_fail(RILL_EUNSUPPORTED, "%s: RoPE over %d dims", path, m->rope_dims);
    rope_inv_freq(c, c->rope_theta, true, m->rope_dims, freqs, &m->rope_mscale);
    // Llama 3 GGUF files carry the llama3 scaling as per-frequency divisors (rope_freqs.weight)
    const gguf_tensor *ff = m->gguf ? gguf_find_tensor(m->gguf, "rope_freqs.weight") : NULL;
    if (ff && c->rope_scaling.type == ROPE_SCALING_NONE) {
        if (ff->type != GGUF_DTYPE_F32 || ff->n_elements != (uint64_t)half)
            return rill_fail(RILL_EFORMAT, "%s: tensor 'rope_freqs.weight' has %llu elements, RoPE needs %d f32", path,
                             (unsigned long long)ff->n_elements, half);
        for (int i = 0; i < half; i++) {
            float d;
            memcpy(&d, ff->data + 4 * i, 4);
            if (!(d > 0)) return rill_fail(RILL_EFORMAT, "%s: rope_freqs.weight[%d] = %g", path, i, d);
            freqs[i] /= d;
        }
    }
    rill_status st = model_upload_vector(m, freqs, half, &m->inv_freq_global);
    if (st != RILL_OK) return st;
    rope_inv_freq(c, c->rope_local_theta > 0 ? c->rope_local_theta : c->rope_theta, false, m->rope_dims, freqs,
                  &mscale_local);
    if ((st = model_upload_vector(m, freqs, half, &m->inv_freq_local)) != RILL_OK) return st;

    m->layers = rill_calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return RILL_ENOMEM;
    for (int l = 0; l < c->n_layers; l++) {
        bool sliding = c->layer_attn && c->layer_attn[l] == ATTN_SLIDING;
        m->layers[l].window = sliding ? c->sliding_window : 0;
        m->layers[l].inv_freq = sliding ? m->inv_freq_local : m->inv_freq_global;
    }
    return weights_bind(m, path);
}

bool model_layer_is_moe(const rill_model_config *c, int layer) {
    int freq = c->moe_layer_freq > 0 ? c->moe_layer_freq : 1;
    return c->n_routed_experts > 0 && layer >= c->first_k_dense_replace && layer % freq == 0;
}

static rill_status load(const char *path, rill_backend *be, bool measure_only, rill_model **out) {
    *out = NULL;
    size_t before = rill_memory_current();
    rill_model *m = rill_calloc(1, sizeof *m);
    if (!m) return RILL_ENOMEM;
    m->be = be;
    m->measure_only = measure_only;
    rill_status st = open_source(m, path);
    if (st == RILL_OK) st = setup(m, path);
    if (st != RILL_OK) {
        model_free(m);
        return st;
    }
    size_t after = rill_memory_current();
    m->weight_bytes = (after > before ? after - before : 0) + m->planned_bytes;
    *out = m;
    return RILL_OK;
}

rill_status model_load(const char *path, rill_backend *be, rill_model **out) { return load(path, be, false, out); }
rill_status model_measure(const char *path, rill_backend *be, rill_model **out) { return load(path, be, true, out); }

void model_free(rill_model *m) {
    if (!m) return;
    decoder_release_scratch(m);
    if (m->layers && !m->measure_only) // (measured weights never went to the backend)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            layer_weights *L = &m->layers[l];
            rill_weight *ws[] = {&L->q,     &L->k,       &L->v,   &L->o,      &L->gate,   &L->up,
                                 &L->down,  &L->q_a,     &L->q_b, &L->kv_a,   &L->router, &L->sh_gate,
                                 &L->sh_up, &L->sh_down, &L->qkv, &L->gate_up};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
                m->be->ops->weight_free(m->be, ws[i]);
            for (int h = 0; L->mla_embed_q && h < m->cfg.n_heads; h++) {
                m->be->ops->weight_free(m->be, &L->mla_embed_q[h]);
                m->be->ops->weight_free(m->be, &L->mla_unembed[h]);
            }
            for (int e = 0; L->moe && e < m->cfg.n_routed_experts; e++) {
                m->be->ops->weight_free(m->be, &L->ex_gate[e]);
                m->be->ops->weight_free(m->be, &L->ex_up[e]);
                m->be->ops->weight_free(m->be, &L->ex_down[e]);
            }
        }
    if (!m->measure_only) {
        if (m->lm_head.packed != m->embed.packed || m->lm_head.data != m->embed.data)
            m->be->ops->weight_free(m->be, &m->lm_head);
        m->be->ops->weight_free(m->be, &m->embed);
    }
    for (int i = 0; i < m->n_dev; i++)
        m->be->ops->free(m->be, m->dev_owned[i]);
    rill_free(m->dev_owned);
    for (int i = 0; i < m->n_owned; i++)
        rill_free(m->owned[i]);
    rill_free(m->owned);
    for (int i = 0; i < m->n_affine; i++)
        affine_free(&((affine_tensor *)m->affine_owned)[i]);
    rill_free(m->affine_owned);
    rill_free(m->layers);
    rill_memory_account(-(ptrdiff_t)m->mapped_bytes);
    gguf_close(m->gguf);
    safetensors_set_close(m->st);
    model_config_free(&m->cfg);
    rill_free(m);
}

rill_status model_make_cache(const rill_model *m, rill_cache **out) {
    cache_shape sh = model_cache_shape(m);
    return cache_make_kv(&sh, out);
}
