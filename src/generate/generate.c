// generate.c: generate_step's double buffer. Step k (a program launched on the stream) reads its
// input token (the last prompt token, or token k-1 from the ring), runs the decoder, applies the
// processors, takes logprobs and samples token k into ring slot k % 2. generate_next submits step
// k+1 before it waits for step k, so the compute thread is never idle while the caller consumes.
#include "generate/generate.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/progress.h"

typedef struct {
    generator *g;
    int64_t k; // step index
} step_arg;

struct generator {
    rill_model *m;
    rill_cache *cache;
    rill_stream *s;
    generate_params p;
    sampler smp;
    int vocab;
    int32_t *history;         // [cap_hist] prompt then generated tokens (written by the steps)
    int64_t n_hist, cap_hist; // n_hist is written by the steps only
    int64_t n_prompt;
    int32_t tokens[2];  // ring: token of step k in tokens[k % 2]
    float *logprobs[2]; // ring: [vocab] of step k in logprobs[k % 2]
    int32_t *ids_dev;   // [1] device: the input of the step being run
    step_arg args[2];
    rill_event *events[2];
    rill_status step_status[2];
    char step_error[2][256];
    int64_t submitted, returned;
    double t_prompt, t_decode0, t_last;
};

generate_params generate_defaults(void) {
    generate_params p = {0};
    p.max_tokens = 256;
    p.prefill_step_size = 2048;
    p.sampling = sampler_defaults();
    p.processing = logits_defaults();
    return p;
}

static void step(void *v) {
    step_arg *a = v;
    generator *g = a->g;
    int slot = (int)(a->k % 2);
    const rill_backend_ops *op = g->m->be->ops;
    int32_t input = a->k == 0 ? g->history[g->n_hist - 1] : g->tokens[(a->k - 1) % 2];
    if (a->k > 0) g->history[g->n_hist++] = input;
    op->upload(g->s, g->ids_dev, &input, sizeof input);
    rill_tensor ids = rill_tensor_2d(DTYPE_I32, 1, 1, g->ids_dev), logits;
    rill_status st = decoder_forward(g->m, g->cache, g->s, &ids, false, &logits);
    if (st != RILL_OK) {
        g->step_status[slot] = st;
        snprintf(g->step_error[slot], sizeof g->step_error[slot], "%s", rill_last_error());
        return;
    }
    float *lp = g->logprobs[slot];
    op->download(g->s, lp, logits.data, (size_t)g->vocab * sizeof(float));
    op->sync(g->s);
    logits_process(&g->smp, &g->p.processing, g->history, g->n_hist, lp);
    log_softmax(lp, g->vocab, lp);
    g->tokens[slot] = sampler_sample(&g->smp, lp);
    g->step_status[slot] = RILL_OK;
}

static rill_status submit(generator *g) {
    int64_t k = g->submitted;
    int slot = (int)(k % 2);
    if (g->n_prompt + k > g->cap_hist) { // step k appends token k - 1: grow while no step runs
        g->m->be->ops->sync(g->s);
        int64_t cap = g->cap_hist * 2;
        int32_t *h = rill_realloc(g->history, (size_t)cap * sizeof(int32_t));
        if (!h) return RILL_ENOMEM;
        g->history = h;
        g->cap_hist = cap;
    }
    g->args[slot] = (step_arg){g, k};
    g->m->be->ops->launch(g->s, step, &g->args[slot]);
    g->m->be->ops->event_record(g->s, g->events[slot]);
    g->submitted++;
    return RILL_OK;
}

rill_status generate_start(rill_model *m, rill_cache *cache, rill_stream *s, const int32_t *prompt, int64_t n,
                           const generate_params *p, generator **out) {
    *out = NULL;
    int vocab = m->cfg.vocab_size;
    if (n < 1) return rill_fail(RILL_EINVAL, "generate: the prompt is empty");
    for (int64_t i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return rill_fail(RILL_ERANGE, "generate: prompt token %lld is %d, outside the vocabulary (%d)",
                             (long long)i, prompt[i], vocab);
    if (p->prefill_step_size < 1)
        return rill_fail(RILL_ERANGE, "prefill_step_size %d must be >= 1", p->prefill_step_size);
    if (p->max_tokens < -1) return rill_fail(RILL_ERANGE, "max_tokens %d must be >= -1", p->max_tokens);
    int64_t ctx = m->cfg.max_position_embeddings;
    if (ctx > 0 && cache_offset(cache) + n > ctx)
        return rill_fail(RILL_ERANGE,
                         "generate: a prompt of %lld tokens (after %lld cached) exceeds the context of %lld",
                         (long long)n, (long long)cache_offset(cache), (long long)ctx);
    rill_status st = logits_check(&p->processing, vocab);
    if (st != RILL_OK) return st;

    generator *g = rill_calloc(1, sizeof *g);
    if (!g) return RILL_ENOMEM;
    g->m = m;
    g->cache = cache;
    g->s = s;
    g->p = *p;
    g->vocab = vocab;
    g->cap_hist = n + 256;
    g->history = rill_malloc((size_t)g->cap_hist * sizeof(int32_t));
    g->logprobs[0] = rill_malloc((size_t)vocab * sizeof(float));
    g->logprobs[1] = rill_malloc((size_t)vocab * sizeof(float));
    g->ids_dev = m->be->ops->alloc(m->be, sizeof(int32_t) * 64);
    if (!g->history || !g->logprobs[0] || !g->logprobs[1] || !g->ids_dev) st = RILL_ENOMEM;
    if (st == RILL_OK) st = sampler_init(&g->smp, &p->sampling, vocab);
    for (int i = 0; i < 2 && st == RILL_OK; i++)
        st = m->be->ops->event_create(m->be, &g->events[i]);
    if (st != RILL_OK) {
        generate_free(g);
        return st;
    }
    memcpy(g->history, prompt, (size_t)n * sizeof(int32_t));
    g->n_hist = g->n_prompt = n;

    // Prefill all but the last token, in chunks; the last one is the first decode step's input.
    double t0 = rill_now();
    int64_t chunk = p->prefill_step_size, done = 0;
    int32_t *ids_dev = NULL;
    if (n > 1) {
        int64_t most = n - 1 < chunk ? n - 1 : chunk;
        ids_dev = m->be->ops->alloc(m->be, (size_t)most * sizeof(int32_t));
        if (!ids_dev) st = RILL_ENOMEM;
    }
    while (st == RILL_OK && done < n - 1) {
        int64_t k = n - 1 - done < chunk ? n - 1 - done : chunk;
        m->be->ops->upload(s, ids_dev, prompt + done, (size_t)k * sizeof(int32_t));
        rill_tensor ids = rill_tensor_2d(DTYPE_I32, k, 1, ids_dev), logits;
        st = decoder_forward(m, cache, s, &ids, false, &logits);
        m->be->ops->sync(s);
        done += k;
        if (st == RILL_OK && p->progress) p->progress(p->progress_ctx, done, n);
    }
    if (ids_dev) m->be->ops->free(m->be, ids_dev);
    decoder_release_scratch(m); // our mx.clear_cache(): prefill-sized scratch goes back
    if (st != RILL_OK) {
        generate_free(g);
        return st;
    }
    g->t_prompt = rill_now() - t0;
    *out = g;
    return RILL_OK;
}

rill_status generate_next(generator *g, int32_t *token, const float **logprobs, bool *done) {
    *done = false;
    int64_t max = g->p.max_tokens;
    if (max >= 0 && g->returned >= max) {
        *done = true;
        return RILL_OK;
    }
    if (g->submitted == 0) {
        g->t_decode0 = rill_now();
        rill_status st = submit(g);
        if (st != RILL_OK) return st;
    }
    int64_t k = g->returned;
    if (max < 0 || k + 1 < max) { // step k+1 goes to the stream before token k comes back
        rill_status st = submit(g);
        if (st != RILL_OK) return st;
    }
    int slot = (int)(k % 2);
    g->m->be->ops->event_wait(g->events[slot]);
    if (g->step_status[slot] != RILL_OK) return rill_fail(g->step_status[slot], "%s", g->step_error[slot]);
    *token = g->tokens[slot];
    if (logprobs) *logprobs = g->logprobs[slot];
    g->returned++;
    g->t_last = rill_now();
    return RILL_OK;
}

void generate_free(generator *g) {
    if (!g) return;
    if (g->submitted) g->m->be->ops->sync(g->s);
    for (int i = 0; i < 2; i++)
        if (g->events[i]) g->m->be->ops->event_destroy(g->events[i]);
    if (g->ids_dev) g->m->be->ops->free(g->m->be, g->ids_dev);
    sampler_free(&g->smp);
    rill_free(g->history);
    rill_free(g->logprobs[0]);
    rill_free(g->logprobs[1]);
    rill_free(g);
}

int64_t generate_submitted(const generator *g) { return g->submitted; }
int64_t generate_returned(const generator *g) { return g->returned; }
double generate_prompt_seconds(const generator *g) { return g->t_prompt; }
double generate_decode_seconds(const generator *g) { return g->t_last > g->t_decode0 ? g->t_last - g->t_decode0 : 0; }
