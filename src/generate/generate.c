// generate.c: generate_step's double buffer. Step k (a program launched on the stream) reads its
// input token (the last prompt token, or token k-1 from the ring), runs the decoder, applies the
// processors, takes logprobs and samples token k into ring slot k % 2. generate_next submits step
// k+1 before it waits for step k, so the compute thread is never idle while the caller consumes.
// On a backend with graph ops (CUDA) the device loop runs instead where the sampling allows it:
// the cache is bound to a device position counter, step k reads its input token where step k-1's
// sampler wrote it on the device, and from the second step on a step is one replay of a graph
// captured once; only the token (4 bytes) comes back: the sampler writes it into a mapped host
// ring itself, so nothing but the graphs is queued on the stream (a 4-byte copy and its own counter
// launch between two replays kept the GPU idle ~12 us a step, median, on an H100).
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
    float *logits32; // [vocab] device f32: the logits converted for the download (activations not f32)

    // The device loop (generate_on_device)
    bool dev, use_graph;
    int32_t *dev_state;  // device I32 [2]: [0] the position of the running step's token, [1] its input token
    int32_t *tok_ring;   // [2] mapped host: token of step k in tok_ring[(pos0 + k) & 1], written by the sampler
    int32_t dev_init[2]; // host staging of dev_state's first values
    int64_t pos0;        // the cache's offset when the loop began
    int64_t reserve;     // positions the cache holds room for
    int warm;            // steps run since the cache was (re)bound: the first runs uncaptured
    rill_graph *graph;   // the captured step, or NULL
};

generate_params generate_defaults(void) {
    generate_params p = {0};
    p.max_tokens = 256;
    p.prefill_step_size = 2048;
    p.kv_group_size = 64;
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
    if (st == RILL_OK) // mlx-lm quantizes inside every step too, once the offset passes the start
        st = cache_maybe_quantize(g->cache, g->s, g->p.quantized_kv_start, g->p.kv_group_size, g->p.kv_bits);
    if (st != RILL_OK) {
        g->step_status[slot] = st;
        snprintf(g->step_error[slot], sizeof g->step_error[slot], "%s", rill_last_error());
        return;
    }
    float *lp = g->logprobs[slot];
    if (logits.dtype != DTYPE_F32) { // GPU activations: convert on the device, then copy
        rill_tensor l32 = rill_tensor_2d(DTYPE_F32, 1, g->vocab, g->logits32);
        op->copy(g->s, &l32, &logits);
        logits = l32;
    }
    op->download(g->s, lp, logits.data, (size_t)g->vocab * sizeof(float));
    op->sync(g->s);
    logits_process(&g->smp, &g->p.processing, g->history, g->n_hist, lp);
    log_softmax(lp, g->vocab, lp);
    g->tokens[slot] = sampler_sample(&g->smp, lp);
    g->step_status[slot] = RILL_OK;
}

// The ops of one device-loop step: forward the token in dev_state[1] at position dev_state[0],
// sample the next token into dev_state[1] and the host ring, advance the position.
static rill_status dev_ops(generator *g) {
    const rill_backend_ops *op = g->m->be->ops;
    rill_tensor ids = rill_tensor_2d(DTYPE_I32, 1, 1, g->dev_state + 1), logits;
    rill_status st = decoder_forward(g->m, g->cache, g->s, &ids, false, &logits);
    if (st != RILL_OK) return st;
    const sampler_params *sp = &g->p.sampling;
    op->sample(g->s, &ids, &logits, sp->temp, sp->top_k, sp->seed, g->dev_state, g->tok_ring);
    return op->stream_status ? op->stream_status(g->s) : RILL_OK;
}

static rill_status dev_submit(generator *g) {
    const rill_backend_ops *op = g->m->be->ops;
    int64_t k = g->submitted;
    int slot = (int)(k % 2);
    rill_status st = RILL_OK;
    if (g->pos0 + k >= g->reserve) { // out of room: grow while nothing runs, capture again
        op->sync(g->s);
        op->graph_destroy(g->graph);
        g->graph = NULL;
        g->reserve = g->pos0 + k + 4096;
        int64_t ctx = g->m->cfg.max_position_embeddings;
        if (ctx > 0 && g->reserve > ctx && ctx > g->pos0 + k) g->reserve = ctx;
        if ((st = cache_bind_device(g->cache, g->s, g->dev_state, g->reserve)) != RILL_OK) return st;
        g->warm = 0;
    }
    if (!g->use_graph || g->warm == 0) { // plain launches (the first step also sizes every scratch)
        st = dev_ops(g);
        g->warm = 1;
    } else {
        if (!g->graph) {
            if ((st = op->graph_begin(g->s)) != RILL_OK) return st;
            rill_status st_ops = dev_ops(g);
            rill_graph *gr = NULL;
            st = op->graph_end(g->s, &gr);
            if (st_ops != RILL_OK) {
                op->graph_destroy(gr);
                return st_ops;
            }
            if (st != RILL_OK) return st;
            g->graph = gr;
        }
        st = op->graph_launch(g->s, g->graph);
    }
    if (st != RILL_OK) return st;
    op->event_record(g->s, g->events[slot]);
    g->submitted++;
    return RILL_OK;
}

// Whether the device loop can serve these parameters: the sampler's argmax, or temp with top-k,
// and no processors.
static bool device_loop_fits(const rill_model *m, const generate_params *p) {
    const rill_backend_ops *op = m->be->ops;
    if (p->host_sampling || !op->sample || !op->copy_at || !op->host_alloc) return false;
    const logits_params *lp = &p->processing;
    if (lp->n_bias > 0 || (lp->repetition_penalty != 0 && lp->repetition_penalty != 1) || lp->presence_penalty != 0 ||
        lp->frequency_penalty != 0)
        return false;
    const sampler_params *sp = &p->sampling;
    if (sp->temp == 0) return true;
    return (sp->top_p <= 0 || sp->top_p >= 1) && sp->min_p <= 0 && sp->xtc_probability <= 0;
}

static rill_status dev_begin(generator *g) {
    rill_model *m = g->m;
    const rill_backend_ops *op = m->be->ops;
    g->dev_state = op->alloc(m->be, 2 * sizeof(int32_t));
    g->tok_ring = op->host_alloc(m->be, 2 * sizeof(int32_t));
    if (!g->dev_state || !g->tok_ring) return RILL_ENOMEM;
    g->pos0 = cache_offset(g->cache);
    int64_t max = g->p.max_tokens;
    g->reserve = g->pos0 + (max >= 0 ? max + 1 : 4096);
    int64_t ctx = m->cfg.max_position_embeddings;
    if (ctx > 0 && g->reserve > ctx && ctx > g->pos0) g->reserve = ctx;
    rill_status st = cache_bind_device(g->cache, g->s, g->dev_state, g->reserve);
    if (st != RILL_OK) return st;
    g->dev_init[0] = (int32_t)g->pos0;
    g->dev_init[1] = g->history[g->n_hist - 1];
    op->upload(g->s, g->dev_state, g->dev_init, sizeof g->dev_init);
    op->sync(g->s);
    g->dev = true;
    g->use_graph = !g->p.no_graphs && op->graph_begin && m->cfg.n_routed_experts == 0; // moe_matmul syncs
    return RILL_OK;
}

static rill_status submit(generator *g) {
    if (g->dev) return dev_submit(g);
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
    if (p->kv_bits && ((p->kv_bits != 4 && p->kv_bits != 8) ||
                       (p->kv_group_size != 32 && p->kv_group_size != 64 && p->kv_group_size != 128)))
        return rill_fail(RILL_ERANGE, "kv_bits %d with kv_group_size %d: 4 or 8 bits, groups of 32, 64 or 128",
                         p->kv_bits, p->kv_group_size);
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
    if (m->be->act_dtype != DTYPE_F32) {
        g->logits32 = m->be->ops->alloc(m->be, (size_t)vocab * sizeof(float));
        if (!g->logits32) st = RILL_ENOMEM;
    }
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
        if (st == RILL_OK) st = cache_maybe_quantize(cache, s, p->quantized_kv_start, p->kv_group_size, p->kv_bits);
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
    if (device_loop_fits(m, p)) {
        st = dev_begin(g);
        if (st == RILL_EUNSUPPORTED && !g->dev) st = RILL_OK; // a cache kind without device binding: the host path
        if (st != RILL_OK) {
            generate_free(g);
            return st;
        }
    }
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
    if (g->dev) {
        const rill_backend_ops *op = g->m->be->ops;
        rill_status st = op->stream_status ? op->stream_status(g->s) : RILL_OK;
        if (st != RILL_OK) return st;
        *token = g->tok_ring[(g->pos0 + k) & 1];
        if (logprobs) *logprobs = NULL;
        g->returned++;
        g->t_last = rill_now();
        return RILL_OK;
    }
    if (g->step_status[slot] != RILL_OK) return rill_fail(g->step_status[slot], "%s", g->step_error[slot]);
    *token = g->tokens[slot];
    if (logprobs) *logprobs = g->logprobs[slot];
    g->returned++;
    g->t_last = rill_now();
    return RILL_OK;
}

void generate_free(generator *g) {
    if (!g) return;
    const rill_backend_ops *op = g->m->be->ops;
    if (g->submitted || g->dev_state) op->sync(g->s);
    if (g->dev) { // the cache keeps every position a step wrote
        cache_unbind_device(g->cache, g->pos0 + g->submitted);
        if (op->graph_destroy) op->graph_destroy(g->graph);
    }
    if (g->dev_state) op->free(g->m->be, g->dev_state);
    if (g->tok_ring) op->host_free(g->m->be, g->tok_ring);
    if (g->logits32) op->free(g->m->be, g->logits32);
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
bool generate_on_device(const generator *g) { return g->dev; }
bool generate_uses_graph(const generator *g) { return g->dev && g->use_graph; }
double generate_prompt_seconds(const generator *g) { return g->t_prompt; }
double generate_decode_seconds(const generator *g) { return g->t_last > g->t_decode0 ? g->t_last - g->t_decode0 : 0; }
