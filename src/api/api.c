// api.c: the public model, cache and generation API of rill.h. A rill_model is the internal model
// (model.h) plus what the API owns with it (struct api_model: backend, stream, tokenizer); a
// rill_cache is the internal prompt cache; rill_generate_* wrap generate_step and
// rill_stream_generate wraps stream_generate with a text callback.
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cache/prompt_cache.h"
#include "tokenizer/tokenizer_api.h"

rill_status api_prompt_ids(tokenizer *tok, const char *text, size_t len, int32_t **ids, int64_t *n) {
    size_t bl = 0;
    int32_t b = tokenizer_bos(tok);
    const char *bos = b >= 0 ? tokenizer_piece(tok, b, &bl) : NULL;
    unsigned flags = TOKENIZER_PARSE_SPECIAL;
    if (!(bos && bl && len >= bl && !strncmp(text, bos, bl))) flags |= TOKENIZER_ADD_SPECIAL;
    size_t k = 0;
    rill_status st = tokenizer_encode(tok, text, len, flags, ids, &k);
    *n = (int64_t)k;
    return st;
}

rill_status api_xtc_special(tokenizer *tok, const int32_t *extra, int n_extra, int32_t **ids, int *n) {
    *ids = NULL;
    *n = 0;
    int32_t *nl = NULL;
    size_t n_nl = 0, n_eos = 0;
    const int32_t *eos = NULL;
    if (tok) {
        rill_status st = tokenizer_encode(tok, "\n", 1, 0, &nl, &n_nl);
        if (st != RILL_OK) return st;
        eos = tokenizer_eos(tok, &n_eos);
    }
    int32_t *v = rill_malloc((n_nl + n_eos + (size_t)n_extra + 1) * sizeof *v);
    if (!v) {
        rill_free(nl);
        return RILL_ENOMEM;
    }
    int k = 0;
    for (size_t i = 0; i < n_nl; i++)
        v[k++] = nl[i];
    for (size_t i = 0; i < n_eos; i++)
        v[k++] = eos[i];
    for (int i = 0; i < n_extra; i++)
        v[k++] = extra[i];
    rill_free(nl);
    *ids = v;
    *n = k;
    return RILL_OK;
}

// ---- Models and caches --------------------------------------------------------------------------

rill_model_options rill_model_default_options(void) { return (rill_model_options){0, "cpu"}; }

rill_status rill_model_load(const char *path, const rill_model_options *opts, rill_model **out) {
    if (!out) return rill_fail(RILL_EINVAL, "rill_model_load: out is NULL");
    *out = NULL;
    if (!path) return rill_fail(RILL_EINVAL, "rill_model_load: path is NULL");
    rill_model_options o = opts ? *opts : rill_model_default_options();
    if (o.threads < 0 || o.threads > 1024)
        return rill_fail(RILL_ERANGE, "rill_model_load: threads %d must lie in [0, 1024]", o.threads);
    struct api_model *a = rill_calloc(1, sizeof *a);
    if (!a) return RILL_ENOMEM;
    a->path = strdup(path);
    rill_status st = a->path ? RILL_OK : rill_fail(RILL_ENOMEM, "out of memory");
    if (st == RILL_OK) st = backend_open(o.backend ? o.backend : "cpu", o.threads, &a->be);
    if (st == RILL_OK) st = a->be->ops->stream_create(a->be, &a->s);
    rill_model *m = NULL;
    if (st == RILL_OK) st = model_load(path, a->be, &m);
    if (st != RILL_OK) {
        if (a->s) a->be->ops->stream_destroy(a->s);
        backend_close(a->be);
        free(a->path);
        rill_free(a);
        return st;
    }
    m->api = a;
    *out = m;
    return RILL_OK;
}

void rill_model_free(rill_model *m) {
    if (!m) return;
    struct api_model *a = m->api;
    model_free(m);
    if (!a) return;
    rill_tokenizer_free(a->tok);
    if (a->s) a->be->ops->stream_destroy(a->s);
    backend_close(a->be);
    free(a->path);
    rill_free(a);
}

rill_status rill_model_tokenizer(rill_model *m, rill_tokenizer **out) {
    *out = NULL;
    if (!m->api) return rill_fail(RILL_EINVAL, "rill_model_tokenizer: the model was not loaded by rill_model_load");
    if (!m->api->tok) {
        rill_status st = rill_tokenizer_load(m->api->path, &m->api->tok);
        if (st != RILL_OK) return st;
    }
    *out = m->api->tok;
    return RILL_OK;
}

int32_t rill_model_vocab_size(const rill_model *m) { return m->cfg.vocab_size; }
int64_t rill_model_context_length(const rill_model *m) { return m->cfg.max_position_embeddings; }
size_t rill_model_weight_bytes(const rill_model *m) { return m->weight_bytes; }

rill_status rill_cache_make(rill_model *m, rill_cache **out) { return model_make_cache(m, out); }
void rill_cache_free(rill_cache *c) { cache_free(c); }
int64_t rill_cache_offset(const rill_cache *c) { return cache_offset(c); }
int64_t rill_cache_trim(rill_cache *c, int64_t n) { return n <= 0 ? 0 : cache_trim(c, n); }
size_t rill_cache_nbytes(const rill_cache *c) { return cache_nbytes(c); }
rill_status rill_cache_make_prompt(rill_model *m, int64_t max_kv_size, rill_cache **out) {
    if (max_kv_size < 0) return rill_fail(RILL_EINVAL, "max_kv_size %lld must be >= 0", (long long)max_kv_size);
    return model_make_prompt_cache(m, max_kv_size, out);
}
bool rill_cache_can_trim(const rill_cache *c) { return cache_can_trim(c); }

rill_status rill_prompt_cache_save(rill_model *m, const rill_cache *c, const char *path, const char *const *keys,
                                   const char *const *values, size_t n_meta) {
    if (!m->api) return rill_fail(RILL_EINVAL, "prompt cache: the model was not loaded by rill_model_load");
    if (m->api->busy) return rill_fail(RILL_EINVAL, "prompt cache: a generation holds the model's stream");
    cache_shape sh = model_cache_shape(m);
    return prompt_cache_save(path, c, m->api->s, &sh, keys, values, n_meta);
}

rill_status rill_prompt_cache_load(rill_model *m, const char *path, rill_cache **out, rill_metadata *meta) {
    if (!m->api) return rill_fail(RILL_EINVAL, "prompt cache: the model was not loaded by rill_model_load");
    if (m->api->busy) return rill_fail(RILL_EINVAL, "prompt cache: a generation holds the model's stream");
    cache_shape sh = model_cache_shape(m);
    prompt_cache_meta pm;
    rill_status st = prompt_cache_load(path, &sh, m->api->s, out, meta ? &pm : NULL);
    if (st == RILL_OK && meta) *meta = (rill_metadata){pm.n, pm.keys, pm.values};
    return st;
}

void rill_metadata_free(rill_metadata *meta) {
    if (!meta) return;
    prompt_cache_meta pm = {meta->n, meta->keys, meta->values};
    prompt_cache_meta_free(&pm);
    memset(meta, 0, sizeof *meta);
}

// ---- Generation ---------------------------------------------------------------------------------

rill_generate_params rill_generate_default_params(void) {
    generate_params g = generate_defaults();
    rill_generate_params p = {0};
    p.max_tokens = g.max_tokens;
    p.prefill_step_size = g.prefill_step_size;
    p.temp = g.sampling.temp;
    p.top_p = g.sampling.top_p;
    p.min_p = g.sampling.min_p;
    p.min_tokens_to_keep = g.sampling.min_tokens_to_keep;
    p.top_k = g.sampling.top_k;
    p.xtc_probability = g.sampling.xtc_probability;
    p.xtc_threshold = g.sampling.xtc_threshold;
    p.seed = g.sampling.seed;
    p.repetition_penalty = g.processing.repetition_penalty;
    p.repetition_context_size = g.processing.repetition_context_size;
    p.presence_penalty = g.processing.presence_penalty;
    p.presence_context_size = g.processing.presence_context_size;
    p.frequency_penalty = g.processing.frequency_penalty;
    p.frequency_context_size = g.processing.frequency_context_size;
    return p;
}

static generate_params to_internal(const rill_generate_params *p) {
    generate_params g = generate_defaults();
    g.max_tokens = p->max_tokens;
    g.prefill_step_size = p->prefill_step_size;
    g.sampling.temp = p->temp;
    g.sampling.top_p = p->top_p;
    g.sampling.min_p = p->min_p;
    g.sampling.min_tokens_to_keep = p->min_tokens_to_keep;
    g.sampling.top_k = p->top_k;
    g.sampling.xtc_probability = p->xtc_probability;
    g.sampling.xtc_threshold = p->xtc_threshold;
    g.sampling.seed = p->seed;
    g.processing.n_bias = p->n_logit_bias;
    g.processing.bias_ids = p->logit_bias_ids;
    g.processing.bias_values = p->logit_bias_values;
    g.processing.repetition_penalty = p->repetition_penalty;
    g.processing.repetition_context_size = p->repetition_context_size;
    g.processing.presence_penalty = p->presence_penalty;
    g.processing.presence_context_size = p->presence_context_size;
    g.processing.frequency_penalty = p->frequency_penalty;
    g.processing.frequency_context_size = p->frequency_context_size;
    return g;
}

static rill_status check_params(const rill_model *m, const rill_generate_params *p) {
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && (!p->logit_bias_ids || !p->logit_bias_values)))
        return rill_fail(RILL_EINVAL, "generate: %d logit biases without ids or values", p->n_logit_bias);
    if (p->n_extra_eos < 0 || (p->n_extra_eos > 0 && !p->extra_eos))
        return rill_fail(RILL_EINVAL, "generate: %d extra EOS ids without an array", p->n_extra_eos);
    for (int i = 0; i < p->n_extra_eos; i++)
        if (p->extra_eos[i] < 0 || p->extra_eos[i] >= m->cfg.vocab_size)
            return rill_fail(RILL_ERANGE, "generate: extra EOS id %d is outside the vocabulary (%d)", p->extra_eos[i],
                             m->cfg.vocab_size);
    return RILL_OK;
}

struct rill_generation {
    rill_model *m;
    rill_cache *own; // the cache made for this generation, or NULL
    generator *g;
    int32_t *xtc_special; // [n] ids XTC keeps (the sampler points at them)
};

rill_status rill_generate_start(rill_model *m, rill_cache *cache, const int32_t *prompt, size_t n,
                                const rill_generate_params *p, rill_generation **out) {
    *out = NULL;
    if (!m->api) return rill_fail(RILL_EINVAL, "rill_generate_start: the model was not loaded by rill_model_load");
    if (m->api->busy) return rill_fail(RILL_EINVAL, "rill_generate_start: another generation of this model is running");
    if (!prompt && n) return rill_fail(RILL_EINVAL, "rill_generate_start: prompt is NULL");
    rill_generate_params dp = rill_generate_default_params();
    if (!p) p = &dp;
    rill_status st = check_params(m, p);
    if (st != RILL_OK) return st;
    rill_generation *g = rill_calloc(1, sizeof *g);
    if (!g) return RILL_ENOMEM;
    g->m = m;
    generate_params gp = to_internal(p);
    if (p->xtc_probability > 0) { // the tokenizer names newline and EOS; without one, only extra_eos
        rill_tokenizer *t = NULL;
        if (rill_model_tokenizer(m, &t) != RILL_OK) rill_clear_error();
        st = api_xtc_special(t ? rill_tokenizer_inner(t) : NULL, p->extra_eos, p->n_extra_eos, &g->xtc_special,
                             &gp.sampling.n_xtc_special);
        gp.sampling.xtc_special = g->xtc_special;
    }
    if (st == RILL_OK && !cache) st = model_make_cache(m, &g->own);
    if (st == RILL_OK) st = generate_start(m, cache ? cache : g->own, m->api->s, prompt, (int64_t)n, &gp, &g->g);
    if (st != RILL_OK) {
        rill_generate_free(g);
        return st;
    }
    m->api->busy = true;
    *out = g;
    return RILL_OK;
}

rill_status rill_generate_next(rill_generation *g, int32_t *token, const float **logprobs, bool *done) {
    return generate_next(g->g, token, logprobs, done);
}

void rill_generate_free(rill_generation *g) {
    if (!g) return;
    if (g->g) {
        generate_free(g->g);
        g->m->api->busy = false;
    }
    cache_free(g->own);
    rill_free(g->xtc_special);
    rill_free(g);
}

typedef struct {
    rill_text_callback cb;
    void *user;
} stream_ctx;

static int on_response(void *v, const stream_response *r) {
    stream_ctx *c = v;
    rill_generation_stats s = {r->prompt_tokens,  r->prompt_tps,     r->generation_tokens,
                               r->generation_tps, r->peak_memory_gb, r->finish_reason};
    return c->cb(c->user, r->text ? r->text : "", r->text_len, r->token, &s);
}

rill_status rill_stream_generate(rill_model *m, rill_tokenizer *tok, const char *prompt, const rill_generate_params *p,
                                 rill_text_callback cb, void *user) {
    if (!m->api) return rill_fail(RILL_EINVAL, "rill_stream_generate: the model was not loaded by rill_model_load");
    if (!prompt || !cb) return rill_fail(RILL_EINVAL, "rill_stream_generate: prompt and callback are required");
    if (m->api->busy)
        return rill_fail(RILL_EINVAL, "rill_stream_generate: another generation of this model is running");
    rill_generate_params dp = rill_generate_default_params();
    if (!p) p = &dp;
    rill_status st = check_params(m, p);
    if (st == RILL_OK && !tok) st = rill_model_tokenizer(m, &tok);
    if (st != RILL_OK) return st;
    tokenizer *t = rill_tokenizer_inner(tok);
    int32_t *ids = NULL, *xtc = NULL;
    int64_t n = 0;
    rill_cache *cache = NULL;
    generate_params gp = to_internal(p);
    st = api_prompt_ids(t, prompt, strlen(prompt), &ids, &n);
    if (st == RILL_OK && p->xtc_probability > 0) {
        st = api_xtc_special(t, p->extra_eos, p->n_extra_eos, &xtc, &gp.sampling.n_xtc_special);
        gp.sampling.xtc_special = xtc;
    }
    if (st == RILL_OK) st = model_make_cache(m, &cache);
    if (st == RILL_OK) {
        stream_ctx c = {cb, user};
        m->api->busy = true;
        st = stream_generate(m, t, cache, m->api->s, ids, n, &gp, p->extra_eos, p->n_extra_eos, on_response, &c);
        m->api->busy = false;
    }
    cache_free(cache);
    rill_free(ids);
    rill_free(xtc);
    return st;
}
