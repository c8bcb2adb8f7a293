// estimate.c: the memory budget of a run (estimate.h). Weights come from the loader itself
// (model_measure); the KV cache is the guide's 2 * batch * n_kv_heads * seq_len * head_dim *
// dtype_bytes per layer, played through generate's schedule (prefill chunks, growth in steps of
// 256, quantization past quantized_kv_start, rotation) so that its transients count; LoRA is the
// guide's 2 * rank * (in + out) per adapted layer (adapter and gradients, f32) plus Adam's moments.
#include "model/estimate.h"

#include <string.h>

#include "base/alloc.h"
#include "tokenizer/tokenizer.h"

estimate_params estimate_defaults(void) {
    estimate_params p = {0};
    p.context = 4096;
    p.batch = 1;
    p.kv_group_size = 64;
    p.quantized_kv_start = 5000;
    p.prefill_step_size = 2048;
    return p;
}

// ---- the KV cache, played through generate's schedule ----

enum { KV_STEP = 256 };             // growth of KVCache, QuantizedKVCache and a rotating cache below its size
#define MAX_LAYER_STEPS 300000000LL // chunks x layers the playback takes on (a second or so)

typedef struct {
    bool rotating;
    int64_t max_size; // rotating: positions kept (its `keep` leading ones change no size)
    bool quantized;
    int64_t cap;    // positions allocated
    int64_t len;    // rotating: rows in use
    int64_t offset; // positions seen
} sim_layer;

typedef struct {
    sim_layer *layers; // [n]
    int n;
    size_t plain_row, quant_row; // bytes of one position of one layer, every sequence of the batch
    size_t live;                 // bytes every layer holds now
    size_t most;                 // the most they ever held at once
} kv_sim;

static size_t layer_bytes(const kv_sim *k, const sim_layer *l) {
    return (size_t)l->cap * (l->quantized ? k->quant_row : k->plain_row);
}

// The layer's buffers become `cap` positions (quantized or not); the old ones are freed only after
// the new ones are filled, so both count at that moment.
static void reallocate(kv_sim *k, sim_layer *l, int64_t cap, bool quantized) {
    size_t old = layer_bytes(k, l);
    l->cap = cap;
    l->quantized = quantized;
    size_t now = layer_bytes(k, l);
    if (k->live + now > k->most) k->most = k->live + now;
    k->live = k->live - old + now;
}

static int64_t round_up(int64_t n, int64_t step) { return (n + step - 1) / step * step; }

// KVCache and QuantizedKVCache: n positions appended, growing in steps of 256.
static void kv_update(kv_sim *k, sim_layer *l, int64_t n) {
    if (l->offset + n > l->cap) reallocate(k, l, round_up(l->offset + n, KV_STEP), l->quantized);
    l->offset += n;
}

// RotatingKVCache (rotating_cache.c): a chunk puts the ring in order and keeps max_size - 1 rows
// before it; one token is written in place, the ring growing in steps of 256 up to max_size.
static void rot_update(kv_sim *k, sim_layer *l, int64_t n) {
    if (n > 1) {
        int64_t rows = l->len > l->max_size - 1 ? l->max_size - 1 : l->len;
        reallocate(k, l, rows + n, l->quantized);
        l->len = rows + n;
        l->offset += n;
        return;
    }
    if (l->len == 0 || (l->offset >= l->len && l->len < l->max_size)) {
        int64_t add = l->max_size - l->offset < KV_STEP ? l->max_size - l->offset : KV_STEP;
        if (add > 0) {
            if (l->len + add > l->cap) reallocate(k, l, l->len + add, l->quantized);
            l->len += add;
        }
    }
    if (l->len > l->max_size) { // keep the first `keep` and the newest rows: max_size in all
        reallocate(k, l, l->max_size, l->quantized);
        l->len = l->max_size;
    }
    l->offset += 1;
}

// One forward of n tokens: every layer stores them, in layer order.
static void kv_forward(kv_sim *k, int64_t n) {
    for (int i = 0; i < k->n; i++) {
        if (k->layers[i].rotating)
            rot_update(k, &k->layers[i], n);
        else
            kv_update(k, &k->layers[i], n);
    }
}

// cache_maybe_quantize: a layer that holds `start` positions becomes quantized, its rows copied
// into a new buffer (256-position steps; a rotating cache keeps its capacity) before the old goes.
static void kv_maybe_quantize(kv_sim *k, int bits, int64_t start) {
    if (!bits) return;
    for (int i = 0; i < k->n; i++) {
        sim_layer *l = &k->layers[i];
        if (l->quantized || l->offset < start) continue;
        int64_t cap = l->rotating ? (l->len > 0 ? l->cap : 0) : round_up(l->offset, KV_STEP);
        reallocate(k, l, cap, true); // counts plain + quantized at once
    }
}

// Plays generate_start and one decode step: the prompt of `context` tokens less the last in
// chunks, then the last token; quantization after each forward.
static rill_status simulate_kv(const rill_model *m, const estimate_params *p, memory_estimate *e) {
    const rill_model_config *c = &m->cfg;
    cache_shape sh = model_cache_shape(m);
    int64_t k_dim = sh.k_dim, v_dim = sh.v_dim; // MLA: the latent cache
    kv_sim k = {0};
    k.n = c->n_layers;
    k.plain_row = (size_t)p->batch * cache_position_bytes(e->kv_dtype, k_dim, v_dim, 0, 0);
    k.quant_row = p->kv_bits
                      ? (size_t)p->batch * cache_position_bytes(e->kv_dtype, k_dim, v_dim, p->kv_bits, p->kv_group_size)
                      : k.plain_row;
    k.layers = rill_calloc((size_t)k.n, sizeof *k.layers);
    if (!k.layers) return RILL_ENOMEM;
    for (int i = 0; i < k.n; i++) { // cache_make_prompt's choice per layer
        sim_layer *l = &k.layers[i];
        int64_t w = m->layers[i].window, mx = p->max_kv_size;
        if (w > 0 && (mx <= 0 || w <= mx))
            *l = (sim_layer){.rotating = true, .max_size = w};
        else if (mx > 0)
            *l = (sim_layer){.rotating = true, .max_size = mx};
    }
    int64_t done = 0, prefill = p->context - 1;
    while (done < prefill) {
        int64_t n = prefill - done < p->prefill_step_size ? prefill - done : p->prefill_step_size;
        kv_forward(&k, n);
        kv_maybe_quantize(&k, p->kv_bits, p->quantized_kv_start);
        done += n;
    }
    kv_forward(&k, 1);
    kv_maybe_quantize(&k, p->kv_bits, p->quantized_kv_start);
    e->kv_cache = k.live;
    e->kv_transient = k.most - k.live;
    e->kv_position_bytes = (size_t)k.n *
                           (p->kv_bits && p->context >= p->quantized_kv_start ? k.quant_row : k.plain_row) /
                           (size_t)p->batch;
    e->kv_f16_bytes = (size_t)p->batch * (size_t)(k_dim + v_dim) * (size_t)p->context * 2 * (size_t)k.n;
    rill_free(k.layers);
    return RILL_OK;
}

// ---- LoRA ----

static int64_t lora_params_of(const rill_weight *w, int rank) { return w->rows > 0 ? rank * (w->rows + w->cols) : 0; }

// Every linear layer of the block (mlx-lm's default keys): attention, MLP, shared and routed
// experts (one adapter per expert, as LoRASwitchLinear has); the MoE router is not a linear layer.
static int64_t lora_params_of_layer(const rill_model *m, const layer_weights *L, int rank) {
    const rill_weight *ws[] = {&L->q,   &L->k,   &L->v,    &L->o,    &L->gate,    &L->up,    &L->down,
                               &L->q_a, &L->q_b, &L->kv_a, &L->kv_b, &L->sh_gate, &L->sh_up, &L->sh_down};
    int64_t n = 0;
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        n += lora_params_of(ws[i], rank);
    if (L->moe)
        for (int e = 0; e < m->cfg.n_routed_experts; e++)
            n += lora_params_of(&L->ex_gate[e], rank) + lora_params_of(&L->ex_up[e], rank) +
                 lora_params_of(&L->ex_down[e], rank);
    return n;
}

static void estimate_lora(const rill_model *m, const estimate_params *p, memory_estimate *e) {
    if (p->lora_rank <= 0 || p->lora_layers <= 0) return;
    int n = m->cfg.n_layers;
    for (int l = n - p->lora_layers; l < n; l++)
        e->lora_params += lora_params_of_layer(m, &m->layers[l], p->lora_rank);
    e->lora_adapter = (size_t)e->lora_params * sizeof(float);
    e->lora_gradients = e->lora_adapter;
    e->lora_optimizer = 2 * e->lora_adapter;
    e->lora = e->lora_adapter + e->lora_gradients + e->lora_optimizer;
}

// ---- the rest ----

static rill_status check_params(const rill_model *m, const estimate_params *p) {
    const rill_model_config *c = &m->cfg;
    cache_shape sh = model_cache_shape(m);
    int64_t kv_dim = sh.k_dim, v_dim = sh.v_dim;
    if (p->context < 1) return rill_fail(RILL_EINVAL, "estimate: context %lld must be >= 1", (long long)p->context);
    if (p->batch < 1) return rill_fail(RILL_EINVAL, "estimate: batch %d must be >= 1", p->batch);
    if (p->kv_bits != 0 && p->kv_bits != 4 && p->kv_bits != 8)
        return rill_fail(RILL_EINVAL, "estimate: kv_bits %d (4 or 8; 0 for a plain cache)", p->kv_bits);
    if (p->kv_group_size != 32 && p->kv_group_size != 64 && p->kv_group_size != 128)
        return rill_fail(RILL_EINVAL, "estimate: kv_group_size %d (32, 64 or 128)", p->kv_group_size);
    if (p->kv_bits && (kv_dim % p->kv_group_size || v_dim % p->kv_group_size))
        return rill_fail(RILL_EINVAL, "estimate: rows of %lld keys and %lld values are not whole groups of %d",
                         (long long)kv_dim, (long long)v_dim, p->kv_group_size);
    if (p->quantized_kv_start < 0)
        return rill_fail(RILL_EINVAL, "estimate: quantized_kv_start %lld must be >= 0",
                         (long long)p->quantized_kv_start);
    if (p->max_kv_size < 0)
        return rill_fail(RILL_EINVAL, "estimate: max_kv_size %lld must be >= 0", (long long)p->max_kv_size);
    if (p->prefill_step_size < 1)
        return rill_fail(RILL_EINVAL, "estimate: prefill_step_size %d must be >= 1", p->prefill_step_size);
    if (p->context / p->prefill_step_size * c->n_layers > MAX_LAYER_STEPS)
        return rill_fail(RILL_EINVAL, "estimate: context %lld in chunks of %d is more than %lld layer steps to play",
                         (long long)p->context, p->prefill_step_size, (long long)MAX_LAYER_STEPS);
    if (p->lora_rank < 0) return rill_fail(RILL_EINVAL, "estimate: lora_rank %d must be >= 0", p->lora_rank);
    if (p->lora_layers < 0 || p->lora_layers > c->n_layers)
        return rill_fail(RILL_EINVAL, "estimate: lora_layers %d: the model has %d layers", p->lora_layers, c->n_layers);
    return RILL_OK;
}

// generate_start's host buffers for one sequence: the token history (prompt + 256), two logprob
// rings and the sampler's four [vocab] arrays, the chunk's ids, and the f32 copy of the logits on
// backends whose activations are not f32.
static size_t runtime_bytes(const rill_model *m, const estimate_params *p) {
    size_t vocab = (size_t)m->cfg.vocab_size;
    int64_t chunk = p->context - 1 < p->prefill_step_size ? p->context - 1 : p->prefill_step_size;
    size_t b = (size_t)(p->context + 256) * sizeof(int32_t) + 2 * vocab * sizeof(float) + 4 * vocab * sizeof(float) +
               64 * sizeof(int32_t) + (size_t)chunk * sizeof(int32_t);
    if (m->be->act_dtype != DTYPE_F32) b += vocab * sizeof(float);
    if (p->tokenizer_bytes) b += (size_t)p->context * sizeof(int32_t); // the encoded prompt
    return b * (size_t)p->batch;
}

rill_status estimate_tokenizer_bytes(const char *path, size_t *out) {
    *out = 0;
    size_t before = rill_memory_current();
    tokenizer *t;
    rill_status st = tokenizer_load(path, &t);
    if (st != RILL_OK) return st;
    size_t after = rill_memory_current();
    tokenizer_free(t);
    *out = after > before ? after - before : 0;
    return RILL_OK;
}

rill_status estimate_memory(const rill_model *m, const estimate_params *p, memory_estimate *out) {
    memset(out, 0, sizeof *out);
    rill_status st = check_params(m, p);
    if (st != RILL_OK) return st;
    memory_estimate e = {0};
    e.kv_dtype = m->be->act_dtype;
    e.weights = m->weight_bytes;
    if ((st = simulate_kv(m, p, &e)) != RILL_OK) return st;
    estimate_lora(m, p, &e);
    // the scratch grows to the largest chunk (the first) and is released after prefill; the decode
    // step's is smaller unless the batch is larger than a chunk
    int64_t chunk = p->context - 1 < p->prefill_step_size ? p->context - 1 : p->prefill_step_size;
    int64_t rows = (int64_t)p->batch * (chunk > 1 ? chunk : 1);
    e.scratch_tokens = rows;
    e.scratch = decoder_scratch_bytes(m, rows, p->batch);
    e.runtime = runtime_bytes(m, p);
    e.tokenizer = p->tokenizer_bytes;
    e.exceeds_model_context = m->cfg.max_position_embeddings > 0 && p->context > m->cfg.max_position_embeddings;
    e.total = e.weights + e.kv_cache + e.kv_transient + e.lora + e.scratch + e.runtime + e.tokenizer;
    *out = e;
    return RILL_OK;
}
