// decoder.c: the one layer loop every architecture shares (DESIGN.md rule 2). It issues backend
// ops over per-step device scratch; the architecture's traits and the config decide the few
// places that differ (qk-norm, sandwich norms, (1 + w) norms, embedding scale, activation,
// sliding layers). The cache is reached only through cache.h.
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/env_switch.h"
#include "model/model.h"

typedef struct {
    rill_tensor x, h, q, k, v, a, o, g, u, logits, pos; // [n][...] activations; pos [n][1] I32
    // MLA only (0 columns otherwise): q_a output, q_b output ([nope, rope] per head), the nope and
    // rope parts of each head ([n * H][nope], [n * H][rope]), the nope part in latent space and
    // later the attention output ([n * H][kv_lora] both), head ids 0..H-1 per token ([n][H] I32)
    rill_tensor qa, qraw, qn, qpe, qlat, heads;
    // stacked projections only (fuse_projections backends): [q | k | v] and [gate | up] outputs,
    // over the storage of q, k, v and of u (see layout)
    rill_tensor qkv, gu;
    // MoE only: router logits [n][E], routes [n][k] (I32 ids, F32 weights), expert activations
    // [n * k][moe_inter] x2 and [n * k][hidden], shared experts [n][shared_inter] x2
    rill_tensor rl, ridx, rw, eg, eu, ed, sg, su;
} acts;

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

// Lays out (or only measures, when base is NULL) the activations of n tokens, with logits for
// n_logits of them (1 in generation: [2048][262144] floats would be 2 GiB).
static size_t layout(const rill_model *m, int64_t n, int64_t n_logits, char *base, acts *a) {
    const rill_model_config *c = &m->cfg;
    rill_dtype dt = m->be->act_dtype;
    size_t es = dtype_size(dt), at = 0;
    int64_t q_dim = (int64_t)c->n_heads * c->head_dim, kv_dim = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t o_dim = (int64_t)c->n_heads * m->v_head_dim, v_dim = (int64_t)c->n_kv_heads * m->v_head_dim;
    bool mla = m->mla;
    int64_t H = c->n_heads, rope = c->qk_rope_head_dim, lat = c->kv_lora_rank;
    if (mla) { // queries [latent | rope] per head against one key row [latent | rope]; no values
        q_dim = H * (lat + rope);
        kv_dim = lat + rope;
        v_dim = 0;
    }
    int64_t E = c->n_routed_experts, moe_k = E ? c->num_experts_per_tok : 0;
    int64_t shared = (int64_t)c->moe_intermediate_size * (c->n_shared_experts > 0 ? c->n_shared_experts : 1);
    // Stacked outputs share storage with the separate ones (a layer uses one form or the other): qkv
    // lies over q, k and v; gu over u and one more [n][ffn] after it (g stays apart: act_mul writes
    // it from gu's halves).
    bool fused = m->be->ops->fuse_projections;
    struct {
        rill_tensor *t;
        int64_t cols;
    } parts[] = {{&a->x, c->hidden_size},
                 {&a->h, c->hidden_size},
                 {&a->q, q_dim},
                 {&a->k, kv_dim},
                 {&a->v, v_dim},
                 {&a->a, o_dim},
                 {&a->o, c->hidden_size},
                 {&a->g, c->intermediate_size},
                 {&a->u, c->intermediate_size},
                 {&a->gu, fused ? c->intermediate_size : 0}, // (gu's second half; laid over u below)
                 {&a->logits, c->vocab_size},
                 {&a->qa, mla ? c->q_lora_rank : 0},
                 {&a->qraw, mla ? H * (c->qk_nope_head_dim + rope) : 0},
                 {&a->qn, mla ? H * c->qk_nope_head_dim : 0},
                 {&a->qpe, mla ? H * rope : 0},
                 {&a->qlat, mla ? H * lat : 0},
                 {&a->rl, E},
                 {&a->eg, moe_k * c->moe_intermediate_size},
                 {&a->eu, moe_k * c->moe_intermediate_size},
                 {&a->ed, moe_k * c->hidden_size},
                 {&a->sg, E ? shared : 0},
                 {&a->su, E ? shared : 0}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int64_t rows = parts[i].t == &a->logits ? n_logits : n;
        *parts[i].t = rill_tensor_2d(dt, rows, parts[i].cols, base ? base + at : NULL);
        at += align64((size_t)(rows * parts[i].cols) * es);
    }
    a->qkv = rill_tensor_2d(dt, n, fused && !mla && v_dim == kv_dim ? q_dim + 2 * kv_dim : 0, a->q.data);
    a->gu = rill_tensor_2d(dt, n, fused ? 2 * c->intermediate_size : 0, a->u.data);
    a->pos = rill_tensor_2d(DTYPE_I32, n, 1, base ? base + at : NULL);
    at += align64((size_t)n * sizeof(int32_t));
    a->ridx = rill_tensor_2d(DTYPE_I32, n, moe_k, base ? base + at : NULL);
    at += align64((size_t)(n * moe_k) * sizeof(int32_t));
    a->rw = rill_tensor_2d(DTYPE_F32, n, moe_k, base ? base + at : NULL);
    at += align64((size_t)(n * moe_k) * sizeof(float));
    a->heads = rill_tensor_2d(DTYPE_I32, n, mla ? H : 0, base ? base + at : NULL);
    at += align64((size_t)(n * a->heads.cols) * sizeof(int32_t));
    // the expert activations are [n * k] rows
    a->eg.rows = a->eu.rows = a->ed.rows = n * moe_k;
    a->eg.cols = a->eg.stride = a->eu.cols = a->eu.stride = c->moe_intermediate_size;
    a->ed.cols = a->ed.stride = c->hidden_size;
    return at;
}

// Multi-head latent attention (deepseek_v3), absorbed (mla_weights.c): every head attends with
// query [q_nope W_k(h) | q_rope] over the one key row [latent | rope key] that the latent cache keeps
// per position, and its output, a mix of latents, leaves through W_v(h). The scores equal those of
// the expanded form (q_nope . W_k(h) latent + q_rope . k_rope); nothing per head is ever cached.
// This sets a->q [n][H * (lat + rope)] and a->k [n][lat + rope]; mla_out finishes a->a.
static void mla_qk(rill_model *m, rill_stream *s, const layer_weights *L, acts *a, float eps) {
    const rill_backend_ops *op = m->be->ops;
    const rill_model_config *c = &m->cfg;
    int64_t H = c->n_heads, nope = c->qk_nope_head_dim, rope = c->qk_rope_head_dim, lat = c->kv_lora_rank;
    if (c->q_lora_rank > 0) {
        op->matmul(s, &a->qa, &a->h, &L->q_a);
        op->rmsnorm(s, &a->qa, &a->qa, L->q_a_norm, eps, false);
        op->matmul(s, &a->qraw, &a->qa, &L->q_b);
    } else
        op->matmul(s, &a->qraw, &a->h, &L->q);
    rill_tensor qh = rill_tensor_reshape(&a->qraw, nope + rope); // [n * H][nope + rope]
    rill_tensor qn = rill_tensor_reshape(&a->qn, nope), qpe = rill_tensor_reshape(&a->qpe, rope);
    rill_tensor src = rill_tensor_cols(&qh, 0, nope);
    op->copy(s, &qn, &src);
    src = rill_tensor_cols(&qh, nope, rope);
    op->copy(s, &qpe, &src);
    rill_rope_params rq = {(int)H, (int)rope, (int)rope, ROPE_INTERLEAVED, L->inv_freq, m->rope_mscale};
    op->rope(s, &a->qpe, &a->pos, &rq);
    rill_tensor ql = rill_tensor_reshape(&a->qlat, lat);
    op->moe_matmul(s, &ql, &qn, L->mla_embed_q, &a->heads); // each head's rows through its own W_k(h)^T
    rill_tensor Qh = rill_tensor_reshape(&a->q, lat + rope), dst = rill_tensor_cols(&Qh, 0, lat);
    op->copy(s, &dst, &ql);
    dst = rill_tensor_cols(&Qh, lat, rope);
    op->copy(s, &dst, &qpe);

    op->matmul(s, &a->k, &a->h, &L->kv_a); // [latent | rope key]
    rill_tensor latent = rill_tensor_cols(&a->k, 0, lat), kpe = rill_tensor_cols(&a->k, lat, rope);
    op->rmsnorm(s, &latent, &latent, L->kv_a_norm, eps, false);
    rill_rope_params rk = {1, (int)rope, (int)rope, ROPE_INTERLEAVED, L->inv_freq, m->rope_mscale};
    op->rope(s, &kpe, &a->pos, &rk);
}

// a->a [n][H * v] = each head's latent-space output (a->qlat) through its W_v(h).
static void mla_out(rill_model *m, rill_stream *s, const layer_weights *L, acts *a) {
    rill_tensor ol = rill_tensor_reshape(&a->qlat, m->cfg.kv_lora_rank), o = rill_tensor_reshape(&a->a, m->v_head_dim);
    m->be->ops->moe_matmul(s, &o, &ol, L->mla_unembed, &a->heads);
}

// A MoE MLP (deepseek_v3): out = sum over the routed experts of weight * expert(h), plus the
// shared experts' output.
static void moe_mlp(rill_model *m, rill_stream *s, const layer_weights *L, acts *a, rill_act act) {
    const rill_backend_ops *op = m->be->ops;
    const rill_model_config *c = &m->cfg;
    rill_moe_params mp = {c->n_routed_experts,
                          c->num_experts_per_tok,
                          c->n_group,
                          c->topk_group,
                          !strcmp(c->scoring_func, "softmax"),
                          c->norm_topk_prob,
                          c->routed_scaling_factor > 0 ? (float)c->routed_scaling_factor : 1.0f};
    op->matmul(s, &a->rl, &a->h, &L->router);
    op->moe_route(s, &a->ridx, &a->rw, &a->rl, L->router_bias, &mp);
    op->moe_matmul(s, &a->eg, &a->h, L->ex_gate, &a->ridx);
    op->moe_matmul(s, &a->eu, &a->h, L->ex_up, &a->ridx);
    op->act_mul(s, &a->eg, &a->eg, &a->eu, act);
    op->moe_matmul(s, &a->ed, &a->eg, L->ex_down, &a->ridx);
    if (c->n_shared_experts > 0) {
        op->matmul(s, &a->sg, &a->h, &L->sh_gate);
        op->matmul(s, &a->su, &a->h, &L->sh_up);
        op->act_mul(s, &a->sg, &a->sg, &a->su, act);
        op->matmul(s, &a->o, &a->sg, &L->sh_down);
    } else
        op->scale(s, &a->o, &a->h, 0.0f); // (h * 0: the combine adds onto zeros)
    op->moe_combine(s, &a->o, &a->ed, &a->rw);
}

static rill_status scratch_for(rill_model *m, int64_t n, int64_t n_logits, acts *a) {
    decoder_scratch *sc = &m->scratch;
    if (sc->n_tok < n || sc->n_logits < n_logits) {
        if (sc->n_tok > n) n = sc->n_tok; // grow, never shrink: a later call may need the old size again
        if (sc->n_logits > n_logits) n_logits = sc->n_logits;
        decoder_release_scratch(m);
        size_t bytes = layout(m, n, n_logits, NULL, a);
        sc->buf = m->be->ops->alloc(m->be, bytes);
        sc->pos = rill_malloc((size_t)n * sizeof(int32_t));
        if (!sc->buf || !sc->pos) {
            decoder_release_scratch(m);
            return RILL_ENOMEM;
        }
        sc->bytes = bytes;
        if (m->mla) { // the head ids 0..H-1 of every token (moe_matmul's routes for the per-head weights)
            layout(m, n, n_logits, sc->buf, a);
            int64_t H = m->cfg.n_heads, cnt = n * H;
            int32_t *ids = rill_malloc((size_t)cnt * sizeof(int32_t));
            if (!ids) {
                decoder_release_scratch(m);
                return RILL_ENOMEM;
            }
            for (int64_t i = 0; i < cnt; i++)
                ids[i] = (int32_t)(i % H);
            rill_stream *up;
            rill_status st = m->be->ops->stream_create(m->be, &up);
            if (st == RILL_OK) {
                m->be->ops->upload(up, a->heads.data, ids, (size_t)cnt * sizeof(int32_t));
                m->be->ops->sync(up);
                m->be->ops->stream_destroy(up);
            }
            rill_free(ids);
            if (st != RILL_OK) {
                decoder_release_scratch(m);
                return st;
            }
        }
        size_t held = bytes + (size_t)n * sizeof(int32_t);
        if (held > m->scratch_high_water) m->scratch_high_water = held;
        sc->n_tok = n;
        sc->n_logits = n_logits;
    }
    layout(m, sc->n_tok, sc->n_logits, sc->buf, a);
    a->x.rows = a->h.rows = a->q.rows = a->k.rows = a->v.rows = a->a.rows = a->o.rows = a->g.rows = a->u.rows = n;
    a->qa.rows = a->qraw.rows = a->qn.rows = a->qpe.rows = a->qlat.rows = a->rl.rows = a->sg.rows = a->su.rows = n;
    a->pos.rows = a->ridx.rows = a->rw.rows = a->heads.rows = a->qkv.rows = a->gu.rows = n;
    a->logits.rows = n_logits;
    a->eg.rows = a->eu.rows = a->ed.rows = n * a->ridx.cols;
    return RILL_OK;
}

size_t decoder_scratch_bytes(const rill_model *m, int64_t n, int64_t n_logits) {
    acts a;
    return layout(m, n, n_logits, NULL, &a) + (size_t)n * sizeof(int32_t);
}

void decoder_release_scratch(rill_model *m) {
    if (m->scratch.buf) m->be->ops->free(m->be, m->scratch.buf);
    rill_free(m->scratch.pos);
    memset(&m->scratch, 0, sizeof m->scratch);
}

// RILL_FUSE_ADD=0 keeps the residual add and the norm after it apart; read once per process.
static bool fuse_add_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_FUSE_ADD", &on);
}

// h = rmsnorm(x), after x += r when r is given (the residual add fused into the norm); then, when w
// is given, out = h . W^T, through the backend's norm_matmul where it has one (it may hand the matmul
// its input already quantized).
static void norm_then(const rill_backend_ops *op, rill_stream *s, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                      const float *norm_w, float eps, bool add1, rill_tensor *out, const rill_weight *w) {
    if (w && op->norm_matmul) {
        op->norm_matmul(s, out, h, x, r, norm_w, eps, add1, w);
        return;
    }
    if (r)
        op->add_rmsnorm(s, h, x, r, norm_w, eps, add1);
    else
        op->rmsnorm(s, h, x, norm_w, eps, add1);
    if (w) op->matmul(s, out, h, w);
}

// The MLP after the attention: a.o = down(act(gate) * up) of the norm of a.x (after a.x += r when
// r is given), or the MoE; in one backend op (norm_mlp) where the backend takes it. Given next, the
// backend may add the MLP's output into a.x itself and prepare that norm (true: a.o is not written).
static bool mlp(rill_model *m, rill_stream *s, const layer_weights *L, acts *a, const rill_tensor *r, rill_act act,
                const rill_norm_next *next) {
    const rill_backend_ops *op = m->be->ops;
    float eps = (float)m->cfg.rms_norm_eps;
    bool add1 = m->norm_add_one, stacked_gu = !L->moe && L->gate_up.rows;
    if (stacked_gu && op->norm_mlp) {
        if (next &&
            op->norm_mlp(s, &a->o, &a->g, &a->h, &a->x, r, L->ffn_norm, eps, add1, &L->gate_up, act, &L->down, next))
            return true;
        if (op->norm_mlp(s, &a->o, &a->g, &a->h, &a->x, r, L->ffn_norm, eps, add1, &L->gate_up, act, &L->down, NULL))
            return false;
    }
    norm_then(op, s, &a->h, &a->x, r, L->ffn_norm, eps, add1, stacked_gu ? &a->gu : NULL,
              stacked_gu ? &L->gate_up : NULL);
    if (L->moe) {
        moe_mlp(m, s, L, a, act);
        return false;
    }
    rill_tensor g = a->g, u = a->u;
    if (stacked_gu) { // (its matmul ran with the norm)
        g = rill_tensor_cols(&a->gu, 0, a->g.cols);
        u = rill_tensor_cols(&a->gu, a->g.cols, a->g.cols);
    } else {
        op->matmul(s, &g, &a->h, &L->gate);
        op->matmul(s, &u, &a->h, &L->up);
    }
    if (op->act_matmul) // (the backend may quantize act(g) * u for the matmul as it computes it)
        op->act_matmul(s, &a->o, &g, &u, act, &L->down);
    else {
        op->act_mul(s, &a->g, &g, &u, act);
        op->matmul(s, &a->o, &a->g, &L->down);
    }
    return false;
}

// Layer L's RoPE: of q, of k, and of the adjacent q and k heads of the stacked q/k/v (qk).
static void layer_rope(const rill_model *m, const layer_weights *L, rill_rope_params *q, rill_rope_params *k,
                       rill_rope_params *qk) {
    const rill_model_config *c = &m->cfg;
    *q = (rill_rope_params){c->n_heads,     c->head_dim, m->rope_dims,
                            m->rope_layout, L->inv_freq, L->window ? 1.0f : m->rope_mscale};
    *k = *q;
    k->n_heads = c->n_kv_heads;
    *qk = *q;
    qk->n_heads += k->n_heads;
}

rill_status decoder_forward(rill_model *m, rill_cache *cache, rill_stream *s, const rill_tensor *ids, bool all_logits,
                            rill_tensor *logits) {
    const rill_backend_ops *op = m->be->ops;
    const rill_model_config *c = &m->cfg;
    int64_t n = ids->rows;
    if (n <= 0) return rill_fail(RILL_EINVAL, "decoder: no tokens to run");
    if (cache->n_layers != c->n_layers)
        return rill_fail(RILL_EINVAL, "decoder: a cache of %d layers for a model of %d", cache->n_layers, c->n_layers);
    acts a;
    rill_status st = scratch_for(m, n, all_logits ? n : 1, &a);
    if (st != RILL_OK) return st;

    // Positions continue the cache: counted on the host, or (a cache bound to a device counter,
    // for a captured step) read from the device.
    rill_attn_mask m0 = cache->layers[0]->ops->make_mask(cache->layers[0], (int)n, 0);
    if (m0.q_pos_dev) {
        if (n != 1) return rill_fail(RILL_EINVAL, "decoder: a cache on a device offset takes one token per step");
        a.pos.data = (void *)m0.q_pos_dev;
    } else {
        int64_t pos0 = cache_offset(cache);
        int32_t *pos = m->scratch.pos;
        for (int64_t i = 0; i < n; i++)
            pos[i] = (int32_t)(pos0 + i);
        op->upload(s, a.pos.data, pos, (size_t)n * sizeof(int32_t));
    }

    float eps = (float)c->rms_norm_eps;
    bool add1 = m->norm_add_one;
    rill_act act = strncmp(c->hidden_act, "gelu", 4) ? ACT_SILU : ACT_GELU_TANH;
    // one token: the embedding may prepare the first norm for the stacked q/k/v matmul after it
    const layer_weights *L0 = c->n_layers > 0 ? &m->layers[0] : NULL;
    rill_rope_params rq0, rk0, rqk0;
    if (L0) layer_rope(m, L0, &rq0, &rk0, &rqk0);
    rill_norm_next norm0 = {
        L0 ? L0->attn_norm : NULL, eps, add1, NULL, NULL, L0 && L0->qkv.rows && !m->mla ? &L0->qkv : NULL, &rqk0};
    if (!(n == 1 && op->embed_norm && norm0.qkv && op->embed_norm(s, &a.x, ids, &m->embed, m->embed_scale, &norm0)))
        op->embed(s, &a.x, ids, &m->embed, m->embed_scale);

    // Residual adds go into the norm after them (add_rmsnorm), unless RILL_FUSE_ADD=0 (to measure),
    // or into the matmul before them where the backend takes matmul_add_norm (or norm_mlp with the
    // next norm): that matmul then prepares the norm.
    bool fuse_add = op->add_rmsnorm != NULL && fuse_add_allowed();
    const rill_tensor *r = NULL; // a.o while the residual a.x still lacks it (the next norm adds it)
    for (int l = 0; l < c->n_layers; l++) {
        const layer_weights *L = &m->layers[l];
        cache_layer *cl = cache->layers[l];
        bool last_layer = l == c->n_layers - 1;
        // the previous layer's MLP output joins the residual in this norm (r) unless it did already;
        // the stacked q/k/v matmul runs with it
        bool stacked_qkv = L->qkv.rows && !m->mla;
        rill_rope_params rq, rk, rqk;
        layer_rope(m, L, &rq, &rk, &rqk);
        // stacked: one matmul with the norm, and one rope over q and k (inside the matmul where the
        // backend takes norm_qkv_rope)
        bool roped = stacked_qkv && op->norm_qkv_rope &&
                     op->norm_qkv_rope(s, &a.qkv, &a.h, &a.x, r, L->attn_norm, eps, add1, &L->qkv, &a.pos, &rqk);
        if (!roped)
            norm_then(op, s, &a.h, &a.x, r, L->attn_norm, eps, add1, stacked_qkv ? &a.qkv : NULL,
                      stacked_qkv ? &L->qkv : NULL);
        rill_tensor q = a.q, k = a.k, v = a.v; // views of a.qkv when the projections are stacked
        if (m->mla)
            mla_qk(m, s, L, &a, eps);
        else {
            if (stacked_qkv) {
                int64_t qd = q.cols, kd = k.cols;
                q = rill_tensor_cols(&a.qkv, 0, qd);
                k = rill_tensor_cols(&a.qkv, qd, kd);
                v = rill_tensor_cols(&a.qkv, qd + kd, kd);
                rill_tensor qk = rill_tensor_cols(&a.qkv, 0, qd + kd);
                if (!roped) op->rope(s, &qk, &a.pos, &rqk);
            } else {
                op->matmul(s, &q, &a.h, &L->q);
                op->matmul(s, &k, &a.h, &L->k);
                op->matmul(s, &v, &a.h, &L->v);
                if (L->q_norm) { // per head: [n * heads][head_dim]
                    rill_tensor qh = rill_tensor_reshape(&q, c->head_dim), kh = rill_tensor_reshape(&k, c->head_dim);
                    op->rmsnorm(s, &qh, &qh, L->q_norm, eps, add1);
                    op->rmsnorm(s, &kh, &kh, L->k_norm, eps, add1);
                }
                op->rope(s, &q, &a.pos, &rq);
                op->rope(s, &k, &a.pos, &rk);
            }
        }

        rill_attn_params ap = {c->n_heads,
                               c->n_kv_heads,
                               c->head_dim,
                               m->v_head_dim,
                               m->attn_scale,
                               (float)c->attn_logit_softcapping,
                               cl->ops->make_mask(cl, (int)n, L->window),
                               m->mla ? NULL : &L->o};
        rill_tensor *att_out = &a.a;
        if (m->mla) { // one shared key row per position; the values are its latent (cache.h)
            ap.n_kv_heads = 1;
            ap.head_dim = c->kv_lora_rank + c->qk_rope_head_dim;
            ap.v_head_dim = c->kv_lora_rank;
            att_out = &a.qlat;
        }
        // the cache stores k and v and runs the attention its storage needs (cache.h)
        if ((st = cache_layer_attend(cl, m->be, s, &k, &v, &q, &ap, att_out)) != RILL_OK) {
            rill_error_prefix("layer %d", l);
            return st;
        }
        if (m->mla) mla_out(m, s, L, &a);
        // o adds into the residual itself where the backend then also takes the MLP's norm prepared
        bool stacked_gu = !L->moe && L->gate_up.rows;
        rill_norm_next ffn_next = {L->ffn_norm, eps, add1, &L->gate_up, &L->down};
        bool o_added = fuse_add && stacked_gu && !L->post_attn_norm && op->matmul_add_norm &&
                       op->matmul_add_norm(s, &a.x, &a.a, &L->o, &ffn_next);
        if (!o_added) {
            op->matmul(s, &a.o, &a.a, &L->o);
            if (L->post_attn_norm) op->rmsnorm(s, &a.o, &a.o, L->post_attn_norm, eps, add1);
            if (!fuse_add) op->add(s, &a.x, &a.x, &a.o);
        }
        rill_norm_next next = {last_layer ? m->final_norm : m->layers[l + 1].attn_norm, eps, add1, NULL, NULL};
        bool mlp_added =
            mlp(m, s, L, &a, fuse_add && !o_added ? &a.o : NULL, act, fuse_add && !L->post_ffn_norm ? &next : NULL);
        r = NULL;
        if (!mlp_added) {
            if (L->post_ffn_norm) op->rmsnorm(s, &a.o, &a.o, L->post_ffn_norm, eps, add1);
            if (!fuse_add || last_layer)
                op->add(s, &a.x, &a.x, &a.o);
            else
                r = &a.o; // (the next layer's norm adds it)
        }
    }

    int64_t first = all_logits ? 0 : n - 1, rows = n - first;
    rill_tensor last = rill_tensor_rows(&a.x, first, rows), h = rill_tensor_rows(&a.h, 0, rows);
    *logits = rill_tensor_rows(&a.logits, 0, rows);
    norm_then(op, s, &h, &last, NULL, m->final_norm, eps, add1, logits, &m->lm_head);
    if (c->final_logit_softcapping > 0) op->softcap(s, logits, logits, (float)c->final_logit_softcapping);
    return RILL_OK;
}
