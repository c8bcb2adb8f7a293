// cuda_matmul_fused.c: the norm (norm_matmul) and act_mul (act_matmul) ops with the matmul after
// them, and the whole MLP after its norm (norm_mlp). For a decode step on 4- or 8-bit weights the op
// before writes x already quantized for the GEMV (cuda_qx), so the GEMV's own quantization launch
// goes: the norm quantizes the row it has just normed, and act(gate) * up is quantized where it is
// computed. Otherwise, or with RILL_CUDA_FUSE_QX=0 (to measure), the two ops run apart. And the
// norm folded into the GEMVs around it (matmul_add_norm, norm_mlp with next): the GEMV whose output
// joins the residual adds it there and prepares the next norm (x * w quantized, sums of squares per
// block of 32), and the GEMV after that norm scales its dot products by 1 / rms: no norm launch.
// A decode step's embedding prepares the first layer's norm the same way (embed_norm).
#ifdef RILL_CUDA
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "base/env_switch.h"

static bool fuse_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_CUDA_FUSE_QX", &on);
}

// out [n][w.rows] = x [n][w.cols] . W^T, with x in the activation dtype, taken by the dp4a GEMV.
static bool gemv_q4_takes(const rill_tensor *out, const rill_tensor *x, const rill_weight *w) {
    return fuse_allowed() && x->cols == w->cols && out->cols == w->rows && out->rows == x->rows &&
           out->dtype == x->dtype && cuda_gemv_dp4a_fits(w, x->dtype, x->rows);
}

// RILL_CUDA_FOLD_NORM=0 declines every matmul_add_norm and norm_mlp with next (to measure).
static bool fold_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_CUDA_FOLD_NORM", &on);
}

// The norm of x with these weights as the op before prepared it, taken (the stream holds no more),
// into *q and *ne; false where there is none for it (then run the norm).
static bool take_prepared(rill_stream *s, const rill_tensor *x, const rill_tensor *r, const float *w, float eps,
                          bool add_one, cuda_qx *q, cuda_norm_epi *ne) {
    if (r || !s->prep.x || s->prep.x != x->data || s->prep.w != w || s->prep.eps != eps || s->prep.add_one != add_one ||
        x->rows != 1 || x->cols != s->prep.cols)
        return false;
    *q = s->prep.q;
    *ne = (cuda_norm_epi){q->ss, (int)(x->cols / 32), eps};
    s->prep.x = NULL;
    return true;
}

// The norm `next` of x, just prepared into q by the launch before, for the norm op after it.
static void remember_prepared(rill_stream *s, const rill_tensor *x, const rill_norm_next *next, const cuda_qx *q) {
    s->prep.x = x->data, s->prep.w = next->w, s->prep.eps = next->eps, s->prep.add_one = next->add_one;
    s->prep.cols = x->cols, s->prep.q = *q;
}

// RILL_CUDA_PAIR_ACT=0 declines every norm_mlp, so the decoder runs norm_matmul and act_matmul;
// RILL_CUDA_PAIR_ACT=always takes it for large down matrices too (both to measure).
static int pair_act_mode(void) {
    static int mode = -1;
    if (mode < 0) {
        const char *e = getenv("RILL_CUDA_PAIR_ACT");
        mode = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "always") ? 2 : 1;
    }
    return mode;
}

// Whether norm_mlp pairs gate/up for one token of x: the gate/up GEMV writes act(gate) * up, and
// down reads it unquantized (the f32 GEMV of a small matrix; or any with RILL_CUDA_PAIR_ACT=always).
static bool mlp_pairs(const rill_tensor *x, const rill_weight *gate_up, const rill_weight *down) {
    int mode = pair_act_mode();
    rill_tensor gu = {x->dtype, 1, gate_up->rows, gate_up->rows, NULL}; // (the shape the GEMV would write)
    return x->rows == 1 && mode && gate_up->rows % 2 == 0 && gemv_q4_takes(&gu, x, gate_up) &&
           down->cols == gate_up->rows / 2 && (mode == 2 || !cuda_gemv_wants_qx(down, x->dtype, 1));
}

// Whether x += a . W^T can run with the norm next prepared (cuda_gemv_add_norm): that GEMV takes it
// and, if the norm feeds an MLP, norm_mlp would take the prepared norm (else the residual GEMV costs
// more than the plain one and saves nothing).
static bool add_norm_fits(const rill_tensor *x, const rill_tensor *a, const rill_weight *w,
                          const rill_norm_next *next) {
    return fold_allowed() && fuse_allowed() && next->w && cuda_gemv_add_norm_fits(x, a, w) &&
           !(next->mlp_gate_up && next->mlp_down && !mlp_pairs(x, next->mlp_gate_up, next->mlp_down));
}

// x += a . W^T with the norm next prepared, where add_norm_fits; false, with nothing issued,
// otherwise. true with the stream's status set where the scratch failed.
bool cuda_matmul_add_norm(rill_stream *s, rill_tensor *x, const rill_tensor *a, const rill_weight *w,
                          const rill_norm_next *next) {
    if (!add_norm_fits(x, a, w, next)) return false;
    cuda_qx q;
    if (!cuda_qx_scratch(s, 1, x->cols, &q, "matmul_add_norm")) return true;
    cuda_res_epi re = {x->data, next->w, next->add_one ? 1.0f : 0.0f, q};
    cuda_gemv_add_norm(s, a, w, &re);
    if (s->status == RILL_OK) remember_prepared(s, x, next, &q);
    return true;
}

void cuda_norm_matmul(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                      const float *norm_w, float eps, bool add_one, const rill_weight *w) {
    if (gemv_q4_takes(out, x, w)) {
        cuda_qx q;
        if (!cuda_qx_scratch(s, x->rows, x->cols, &q, "norm_matmul")) return;
        if (cuda_norm_quantize(s, h, x, r, norm_w, eps, add_one, &q)) {
            if (s->status == RILL_OK) cuda_gemv_dp4a(s, out, &q, w);
            return;
        }
    }
    if (r)
        cuda_add_rmsnorm(s, h, x, r, norm_w, eps, add_one);
    else
        cuda_rmsnorm(s, h, x, norm_w, eps, add_one);
    if (s->status == RILL_OK) cuda_matmul(s, out, h, w);
}

// RILL_CUDA_QKV_ROPE=0 declines every norm_qkv_rope (to measure).
static bool qkv_rope_allowed(void) {
    static int on = -1;
    return env_switch_on("RILL_CUDA_QKV_ROPE", &on);
}

// Whether norm_qkv_rope takes one token of x into the stacked q/k/v w with RoPE p (its output and
// position tensors aside: the decoder's are a whole row and I32).
static bool qkv_rope_takes(const rill_tensor *x, const rill_weight *w, const rill_rope_params *p) {
    rill_tensor out = {x->dtype, 1, w->rows, w->rows, NULL}; // (the shape the GEMV would write)
    int64_t rot_rows = (int64_t)p->n_heads * p->head_dim;
    return qkv_rope_allowed() && x->rows == 1 && gemv_q4_takes(&out, x, w) && !cuda_gemv_dp4a_streams(w, 1) &&
           w->rows % 2 == 0 && rot_rows <= w->rows && p->head_dim % 2 == 0 && p->rot_dims % 2 == 0 && p->rot_dims > 0 &&
           p->rot_dims <= p->head_dim && (p->layout == ROPE_INTERLEAVED || p->rot_dims == p->head_dim);
}

// The embedding of one token with the first layer's norm prepared (a decode step's first launch),
// where norm_qkv_rope would take that norm; false, with nothing issued, otherwise.
bool cuda_embed_norm(rill_stream *s, rill_tensor *out, const rill_tensor *ids, const rill_weight *w, float scale,
                     const rill_norm_next *next) {
    if (!fold_allowed() || !next->w || !next->qkv || out->rows != 1 || out->cols != w->cols || out->cols % 32 ||
        out->cols > 0x7fffffff || ids->dtype != DTYPE_I32 || ids->rows < 1 || !next->qkv_rope ||
        !qkv_rope_takes(out, next->qkv, next->qkv_rope))
        return false;
    cuda_qx q;
    if (!cuda_qx_scratch(s, 1, out->cols, &q, "embed_norm")) return true;
    cuda_res_epi re = {out->data, next->w, next->add_one ? 1.0f : 0.0f, q};
    cuda_embed_prepare(s, ids, w, scale, out->dtype, &re);
    if (s->status == RILL_OK) remember_prepared(s, out, next, &q);
    return true;
}

// norm_matmul, then RoPE on out's first p->n_heads heads, for one token whose stacked q/k/v weight
// the dp4a GEMV takes: the norm writes x quantized, and the GEMV's warps each take the two rows
// that RoPE turns together and write them rotated (cuda_gemv_dp4a_rope): the rope launch goes (H100,
// SmolLM2 1,737 -> 1,838 tok/s). It declines where the stream kernel takes the matrix (Llama-3-8B's
// 6144-row q/k/v: on the pair kernel 440.9 vs 441.3 tok/s, 16k 306.8 vs 313.3), and anything else:
// false, with nothing issued.
bool cuda_norm_qkv_rope(rill_stream *s, rill_tensor *out, rill_tensor *h, rill_tensor *x, const rill_tensor *r,
                        const float *norm_w, float eps, bool add_one, const rill_weight *w, const rill_tensor *pos,
                        const rill_rope_params *p) {
    int64_t rot_rows = (int64_t)p->n_heads * p->head_dim;
    if (!qkv_rope_takes(x, w, p) || !gemv_q4_takes(out, x, w) || pos->dtype != DTYPE_I32 || pos->rows < 1 ||
        out->stride != out->cols)
        return false;
    cuda_qx q;
    cuda_norm_epi ne;
    bool prepared = take_prepared(s, x, r, norm_w, eps, add_one, &q, &ne);
    if (!prepared) {
        if (!cuda_qx_scratch(s, x->rows, x->cols, &q, "norm_matmul (rope)")) return true; // (status set)
        if (!cuda_norm_quantize(s, h, x, r, norm_w, eps, add_one, &q)) return false;
    }
    cuda_rope_epi re = {(const int32_t *)pos->data,    p->inv_freq,   p->rot_dims, p->head_dim,
                        p->layout == ROPE_INTERLEAVED, (int)rot_rows, p->mscale};
    if (s->status == RILL_OK) cuda_gemv_dp4a_rope(s, out, &q, w, &re, prepared ? &ne : NULL);
    return true;
}

// One token on 4- or 8-bit weights, where down's GEMV reads its x unquantized (the f32 GEMV of a small
// matrix): the norm writes x quantized, the GEMV's warps each take a gate row and its up row and
// write g = act(gate) * up (gate and up are never stored), and down reads g. That is one launch
// fewer than norm_matmul + act_matmul (SmolLM2 +4-5%). Where down's GEMV would quantize g first, as
// act_matmul's quantization does, the launches are as many and a warp's two rows lie far apart
// (Llama-3-8B 467 -> 462 tok/s, H200), so it declines; also writing g quantized for down from the
// gate/up GEMV (the last of 4 blocks to finish, told by an atomic ticket, quantizing 32 values)
// cost every block a fence and an atomic: 462 -> 447. Anything else: false.
bool cuda_norm_mlp(rill_stream *s, rill_tensor *out, rill_tensor *g, rill_tensor *h, rill_tensor *x,
                   const rill_tensor *r, const float *norm_w, float eps, bool add_one, const rill_weight *gate_up,
                   rill_act act, const rill_weight *down, const rill_norm_next *next) {
    int64_t ffn = gate_up->rows / 2;
    if (!(mlp_pairs(x, gate_up, down) && g->rows == 1 && g->cols == ffn && g->dtype == x->dtype && out->rows == 1 &&
          out->cols == down->rows))
        return false;
    // with next: down's GEMV adds into x (which down's input g never aliases)
    if (next && !add_norm_fits(x, g, down, next)) return false;
    cuda_qx q;
    cuda_norm_epi ne;
    bool prepared = take_prepared(s, x, r, norm_w, eps, add_one, &q, &ne);
    if (!prepared) {
        if (!cuda_qx_scratch(s, 1, x->cols, &q, "norm_mlp")) return true; // (the stream holds the error)
        if (!cuda_norm_quantize(s, h, x, r, norm_w, eps, add_one, &q)) return false;
    }
    if (s->status == RILL_OK) cuda_gemv_dp4a_act(s, g, &q, gate_up, act, prepared ? &ne : NULL);
    if (s->status != RILL_OK) return true;
    if (!next)
        cuda_matmul(s, out, g, down);
    else
        cuda_matmul_add_norm(s, x, g, down, next); // (it fits: checked above)
    return true;
}

void cuda_act_matmul(rill_stream *s, rill_tensor *out, rill_tensor *gate, const rill_tensor *up, rill_act act,
                     const rill_weight *w) {
    if (gemv_q4_takes(out, gate, w) && up->rows == gate->rows && up->cols == gate->cols && up->dtype == gate->dtype) {
        cuda_qx q;
        if (!cuda_qx_scratch(s, gate->rows, gate->cols, &q, "act_matmul")) return;
        cuda_quantize_act(s, &q, gate, up, act);
        if (s->status == RILL_OK) cuda_gemv_dp4a(s, out, &q, w);
        return;
    }
    cuda_act_mul(s, gate, gate, up, act);
    if (s->status == RILL_OK) cuda_matmul(s, out, gate, w);
}
#endif
