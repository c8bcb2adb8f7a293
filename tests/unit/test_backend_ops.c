// test_backend_ops.c: every op of every compiled backend against the reference (backend/ref.c),
// the way ggml's test-backend-ops does: fresh random inputs, outputs poisoned with NaN before the
// op runs, results compared by relative norm with a bound set by the activation dtype. A new
// backend (CUDA) is covered by being listed in backend_names().
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "backend/ref.h"
#include "base/half.h"
#include "base/threadpool.h"
#include "testlib.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static rill_backend *be;
static rill_stream *st;
static const char *be_name;

// ---- device tensors with a host mirror ----

typedef struct {
    rill_tensor host; // f32 or the tensor's dtype, on the host
    rill_tensor dev;  // same shape in the backend's memory
} pair;

static size_t bytes_of(const rill_tensor *t) { return (size_t)(t->rows * t->stride) * dtype_size(t->dtype); }

// A [rows][cols] tensor of dtype dt filled with N(0, scale^2) (rounded to dt), on both sides.
static pair make(rill_dtype dt, int64_t rows, int64_t cols, float scale) {
    pair p;
    p.host = rill_tensor_2d(dt, rows, cols, malloc((size_t)(rows * cols) * dtype_size(dt) + 1));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            ref_store(&p.host, r, c, test_rand_normal() * scale);
    p.dev = p.host;
    p.dev.data = be->ops->alloc(be, bytes_of(&p.host) + 1);
    be->ops->upload(st, p.dev.data, p.host.data, bytes_of(&p.host));
    return p;
}

static pair make_i32(int64_t rows, int32_t lo, int32_t hi) {
    pair p;
    p.host = rill_tensor_2d(DTYPE_I32, rows, 1, malloc((size_t)rows * 4));
    for (int64_t r = 0; r < rows; r++)
        ((int32_t *)p.host.data)[r] = lo + (int32_t)(test_rand_u64() % (uint64_t)(hi - lo + 1));
    p.dev = p.host;
    p.dev.data = be->ops->alloc(be, (size_t)rows * 4);
    be->ops->upload(st, p.dev.data, p.host.data, (size_t)rows * 4);
    return p;
}

// An output: host side for the reference, device side poisoned with NaN.
static pair make_out(rill_dtype dt, int64_t rows, int64_t cols) {
    pair p = make(dt, rows, cols, 1.0f);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            ref_store(&p.host, r, c, NAN);
    be->ops->upload(st, p.dev.data, p.host.data, bytes_of(&p.host));
    return p;
}

static void drop(pair *p) {
    be->ops->free(be, p->dev.data);
    free(p->host.data);
}

static void *dev_copy(const void *src, size_t n) {
    void *d = be->ops->alloc(be, n + 1);
    be->ops->upload(st, d, src, n);
    return d;
}

// RoPE's angle per position of pair i < half, base^(-2i / (2 half)): the host table (malloc'd),
// with its device copy in *dev.
static float *rope_inv_freq(int half, double base, float **dev) {
    float *inv = malloc((size_t)half * 4);
    for (int i = 0; i < half; i++)
        inv[i] = (float)pow(base, -2.0 * i / (2 * half));
    *dev = dev_copy(inv, (size_t)half * 4);
    return inv;
}

// Relative norm of (device result - host reference); fails on NaN anywhere.
static double rel_err(const pair *p) {
    size_t n = bytes_of(&p->host);
    rill_tensor got = p->host;
    got.data = malloc(n);
    be->ops->download(st, got.data, p->dev.data, n);
    be->ops->sync(st);
    double num = 0, den = 0;
    for (int64_t r = 0; r < got.rows; r++)
        for (int64_t c = 0; c < got.cols; c++) {
            double a = ref_load(&got, r, c), b = ref_load(&p->host, r, c);
            if (isnan(a) || isnan(b)) {
                free(got.data);
                return INFINITY;
            }
            num += (a - b) * (a - b);
            den += b * b;
        }
    free(got.data);
    return sqrt(num / (den > 0 ? den : 1e-30));
}

// The largest error seen per op, printed at the end of each test (the figures the report quotes).
static double worst_err;

static double bound(void) { return be->act_dtype == DTYPE_F32 ? 2e-5 : 1e-2; }

#define CHECK(p, what, ...)                                                                                            \
    do {                                                                                                               \
        double e_ = rel_err(p);                                                                                        \
        if (e_ > worst_err) worst_err = e_;                                                                            \
        if (!(e_ <= bound())) {                                                                                        \
            print_error("%s: " what ": relative error %.3g > %.3g\n", be_name, __VA_ARGS__, e_, bound());              \
            fail();                                                                                                    \
        }                                                                                                              \
    } while (0)

// A backend that lacks an op fails the op's test with its name (rather than crashing).
#define NEED_OP(op)                                                                                                    \
    do {                                                                                                               \
        if (!be->ops->op) fail_msg("%s: op %s is missing", be_name, #op);                                              \
    } while (0)

// ---- weights ----

typedef struct {
    rill_weight host; // host arrays, for the reference
    rill_weight up;   // the same arrays uploaded (freed by drop_weight)
    rill_weight dev;  // what the backend's weight_load made of `up`
    void *bufs[4];    // host arrays to free
} wpair;

static void *fill_scalars(rill_dtype dt, size_t n, float lo, float hi) {
    void *p = malloc(n * dtype_size(dt));
    rill_tensor t = rill_tensor_2d(dt, 1, (int64_t)n, p);
    for (size_t i = 0; i < n; i++)
        ref_store(&t, 0, (int64_t)i, test_rand_uniform(lo, hi));
    return p;
}

// bits == 0: dense of dtype dt; else affine with scales of dtype dt.
static wpair make_weight(int64_t rows, int64_t cols, int bits, int group, rill_dtype dt, bool bias) {
    wpair w;
    memset(&w, 0, sizeof w);
    rill_weight *h = &w.host;
    h->rows = rows;
    h->cols = cols;
    h->dtype = dt;
    if (bits == 0) {
        h->kind = WEIGHT_DENSE;
        h->data = w.bufs[0] = fill_scalars(dt, (size_t)(rows * cols), -0.1f, 0.1f);
    } else {
        h->kind = WEIGHT_AFFINE;
        h->bits = bits;
        h->group_size = group;
        size_t words = (size_t)(rows * cols * bits / 32), groups = (size_t)(rows * cols / group);
        uint32_t *pk = malloc(words * 4);
        for (size_t i = 0; i < words; i++)
            pk[i] = (uint32_t)test_rand_u64();
        h->packed = w.bufs[0] = pk;
        float top = (float)((1 << bits) - 1);
        h->scales = w.bufs[1] = fill_scalars(dt, groups, 0.01f / top, 0.2f / top);
        h->biases = w.bufs[2] = fill_scalars(dt, groups, -0.1f, 0.0f);
    }
    if (bias) h->bias = w.bufs[3] = fill_scalars(DTYPE_F32, (size_t)rows, -1.0f, 1.0f);
    // the device copy: every array uploaded
    rill_weight up = *h;
    if (bits == 0)
        up.data = dev_copy(h->data, (size_t)(rows * cols) * dtype_size(dt));
    else {
        up.packed = dev_copy(h->packed, (size_t)(rows * cols * bits / 32) * 4);
        up.scales = dev_copy(h->scales, (size_t)(rows * cols / group) * dtype_size(dt));
        up.biases = dev_copy(h->biases, (size_t)(rows * cols / group) * dtype_size(dt));
    }
    if (bias) up.bias = dev_copy(h->bias, (size_t)rows * 4);
    w.up = up;
    assert_int_equal(be->ops->weight_load(be, &w.up, &w.dev), RILL_OK);
    return w;
}

// The device arrays behind a weight, freed after use (weight_free only forgets the view).
static void free_dev_arrays(const rill_weight *w) {
    if (w->kind == WEIGHT_DENSE)
        be->ops->free(be, (void *)w->data);
    else {
        be->ops->free(be, (void *)w->packed);
        be->ops->free(be, (void *)w->scales);
        be->ops->free(be, (void *)w->biases);
    }
    if (w->bias) be->ops->free(be, (void *)w->bias);
}

static void drop_weight(wpair *w) {
    be->ops->weight_free(be, &w->dev);
    free_dev_arrays(&w->up);
    for (int i = 0; i < 4; i++)
        free(w->bufs[i]);
}

typedef struct {
    int bits, group;
    rill_dtype dt;
} wkind;

static const wkind weight_kinds[] = {
    {0, 0, DTYPE_F32},    {0, 0, DTYPE_F16},  {0, 0, DTYPE_BF16},  {4, 32, DTYPE_F32},   {4, 64, DTYPE_F16},
    {4, 128, DTYPE_BF16}, {8, 32, DTYPE_F32}, {8, 64, DTYPE_BF16}, {2, 64, DTYPE_F16},   {3, 32, DTYPE_F16},
    {5, 32, DTYPE_F32},   {6, 16, DTYPE_F32}, {6, 64, DTYPE_BF16}, {3, 128, DTYPE_BF16}, {5, 128, DTYPE_F16},
};

// ---- the ops ----

static void test_matmul(void **state) {
    NEED_OP(matmul);
    static const int64_t toks[] = {1, 3, 8, 37}; // 8 and 37: whole and partial 6-token tiles of the CPU GEMM
    for (size_t k = 0; k < N_OF(weight_kinds); k++)
        for (size_t t = 0; t < N_OF(toks); t++) {
            const wkind *wk = &weight_kinds[k];
            int64_t n_out = 21 + (int64_t)(test_rand_u64() % 40), n_in = 256 + 128 * (int64_t)(test_rand_u64() % 3);
            bool bias = (k + t) % 2;
            wpair w = make_weight(n_out, n_in, wk->bits, wk->group, wk->dt, bias);
            pair x = make(be->act_dtype, toks[t], n_in, 1.0f), out = make_out(be->act_dtype, toks[t], n_out);
            be->ops->matmul(st, &out.dev, &x.dev, &w.dev);
            ref_matmul(&out.host, &x.host, &w.host);
            CHECK(&out, "matmul bits %d group %d %s, %lld x %lld x %lld, bias %d", wk->bits, wk->group,
                  dtype_name(wk->dt), (long long)toks[t], (long long)n_in, (long long)n_out, bias);
            drop(&x);
            drop(&out);
            drop_weight(&w);
        }
}

static void test_embed(void **state) {
    NEED_OP(embed);
    for (size_t k = 0; k < N_OF(weight_kinds); k++) {
        const wkind *wk = &weight_kinds[k];
        int64_t vocab = 50, dim = 128 * (1 + (int64_t)(k % 3));
        wpair w = make_weight(vocab, dim, wk->bits, wk->group, wk->dt, false);
        pair ids = make_i32(9, 0, (int32_t)vocab - 1), out = make_out(be->act_dtype, 9, dim);
        float scale = k % 2 ? 1.0f : 24.0f;
        be->ops->embed(st, &out.dev, &ids.dev, &w.dev, scale);
        ref_embed(&out.host, &ids.host, &w.host, scale);
        CHECK(&out, "embed bits %d group %d %s", wk->bits, wk->group, dtype_name(wk->dt));
        drop(&ids);
        drop(&out);
        drop_weight(&w);
    }
}

static void test_rmsnorm(void **state) {
    NEED_OP(rmsnorm);
    for (int add_one = 0; add_one < 2; add_one++)
        for (int in_place = 0; in_place < 2; in_place++) {
            int64_t rows = 5, cols = 576;
            pair x = make(be->act_dtype, rows, cols, 3.0f), out = make_out(be->act_dtype, rows, cols);
            float *w = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
            float *wd = dev_copy(w, (size_t)cols * 4);
            pair *dst = in_place ? &x : &out;
            rill_tensor xin = x.host;
            xin.data = malloc(bytes_of(&x.host));
            memcpy(xin.data, x.host.data, bytes_of(&x.host));
            be->ops->rmsnorm(st, &dst->dev, &x.dev, wd, 1e-6f, add_one);
            ref_rmsnorm(&dst->host, &xin, w, 1e-6f, add_one);
            CHECK(dst, "rmsnorm add_one %d in_place %d", add_one, in_place);
            free(xin.data);
            free(w);
            be->ops->free(be, wd);
            drop(&x);
            drop(&out);
        }
}

// The residual add fused into the norm: both the updated residual x and the normed out are checked.
static void test_add_rmsnorm(void **state) {
    NEED_OP(add_rmsnorm);
    int64_t shapes[2][2] = {{5, 576}, {1, 4096}}; // [rows, cols]: a prefill chunk, a decode step
    for (int i = 0; i < 2; i++)
        for (int add_one = 0; add_one < 2; add_one++) {
            int64_t rows = shapes[i][0], cols = shapes[i][1];
            pair x = make(be->act_dtype, rows, cols, 3.0f), r = make(be->act_dtype, rows, cols, 1.0f);
            pair out = make_out(be->act_dtype, rows, cols);
            float *w = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
            float *wd = dev_copy(w, (size_t)cols * 4);
            be->ops->add_rmsnorm(st, &out.dev, &x.dev, &r.dev, wd, 1e-6f, add_one);
            ref_add_rmsnorm(&out.host, &x.host, &r.host, w, 1e-6f, add_one);
            CHECK(&x, "add_rmsnorm residual %lld x %lld add_one %d", (long long)rows, (long long)cols, add_one);
            CHECK(&out, "add_rmsnorm %lld x %lld add_one %d", (long long)rows, (long long)cols, add_one);
            free(w);
            be->ops->free(be, wd);
            drop(&x);
            drop(&r);
            drop(&out);
        }
}

// Whether a fused op must take one-token cases of these bits (the GPU's quantized-input GEMVs).
static bool dp4a_bits(int bits) { return bits == 4 || bits == 8; }

// Weights the fused ops meet: 4-bit (the GPU's quantized-input GEMV) with each scale dtype, 8-bit,
// and others (where the backend runs the two ops apart).
static const wkind fused_kinds[] = {
    {4, 32, DTYPE_F16}, {4, 64, DTYPE_BF16}, {4, 128, DTYPE_F32}, {8, 64, DTYPE_BF16}, {0, 0, DTYPE_F16}};

// Frees what a fused-norm case made: the norm weights (host and device) and its four tensors.
static void drop_norm_case(float *nw, float *nwd, pair *x, pair *r, pair *h, pair *out) {
    free(nw);
    be->ops->free(be, nwd);
    drop(x);
    drop(r);
    drop(h);
    drop(out);
}

// norm_matmul against add_rmsnorm (or rmsnorm) then matmul: h, the updated residual x and out.
static void test_norm_matmul(void **state) {
    if (!be->ops->norm_matmul) {
        print_message("%s: no norm_matmul (the decoder runs the two ops)\n", be_name);
        return;
    }
    static const int64_t toks[] = {1, 3, 8, 12}; // 12: past the decode GEMV
    for (size_t k = 0; k < N_OF(fused_kinds); k++)
        for (size_t t = 0; t < N_OF(toks); t++)
            for (int with_r = 0; with_r < 2; with_r++) {
                const wkind *wk = &fused_kinds[k];
                int64_t n = toks[t], cols = k % 2 ? 576 : 1024, n_out = 40 + (int64_t)(test_rand_u64() % 90);
                bool add_one = (k + t) % 2, bias = (k + t + with_r) % 2;
                wpair w = make_weight(n_out, cols, wk->bits, wk->group, wk->dt, bias);
                pair x = make(be->act_dtype, n, cols, 3.0f), r = make(be->act_dtype, n, cols, 1.0f);
                pair h = make_out(be->act_dtype, n, cols), out = make_out(be->act_dtype, n, n_out);
                float *nw = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
                float *nwd = dev_copy(nw, (size_t)cols * 4);
                be->ops->norm_matmul(st, &out.dev, &h.dev, &x.dev, with_r ? &r.dev : NULL, nwd, 1e-6f, add_one, &w.dev);
                if (with_r)
                    ref_add_rmsnorm(&h.host, &x.host, &r.host, nw, 1e-6f, add_one);
                else
                    ref_rmsnorm(&h.host, &x.host, nw, 1e-6f, add_one);
                ref_matmul(&out.host, &h.host, &w.host);
                CHECK(&x, "norm_matmul residual, %lld tokens, residual %d", (long long)n, with_r);
                CHECK(&h, "norm_matmul norm, %lld tokens, residual %d", (long long)n, with_r);
                CHECK(&out, "norm_matmul bits %d group %d %s, %lld x %lld x %lld, residual %d, bias %d", wk->bits,
                      wk->group, dtype_name(wk->dt), (long long)n, (long long)cols, (long long)n_out, with_r, bias);
                drop_norm_case(nw, nwd, &x, &r, &h, &out);
                drop_weight(&w);
            }
}

// norm_mlp against add_rmsnorm (or rmsnorm), matmul over the stacked gate/up weight, act_mul of its
// halves, then matmul over down: h, the updated residual x, g and out, wherever the backend takes the
// call. A backend with the op takes one token on 4- or 8-bit weights with 16-bit activations and a small
// down matrix, the decode case it is for; a call it declines is the decoder's to run as norm_matmul
// and act_matmul (tested above and below). The large shape (ffn 1024, down over 2^20 weights) it
// may take or decline (CUDA declines: there, down's GEMV would quantize g, and pairing saves nothing).
// A declined call must leave the residual as it was; one case writes out over r, as the decoder does.
static void test_norm_mlp(void **state) {
    if (!be->ops->norm_mlp) {
        print_message("%s: no norm_mlp (the decoder runs the ops)\n", be_name);
        return;
    }
    static const int64_t toks[] = {1, 3, 1};
    int taken = 0, one_token_dp4a = 0;
    for (size_t k = 0; k < N_OF(fused_kinds); k++)
        for (size_t t = 0; t < N_OF(toks); t++) {
            const wkind *wk = &fused_kinds[k];
            rill_act act = (k + t) % 2 ? ACT_GELU_TANH : ACT_SILU;
            bool with_r = (k + t) % 2, add_one = t % 2, bias = (k + t) % 3 == 0, large = t >= 2;
            bool out_is_r = k == 1 && t == 0; // (with_r: 1 token, 576 columns)
            int64_t n = toks[t], cols = k % 2 ? 576 : 1024;
            int64_t ffn = large ? 1024 : (wk->group ? wk->group : 64) * (1 + (int64_t)(test_rand_u64() % 3));
            int64_t n_out = large ? 1040 : out_is_r ? cols : 40 + (int64_t)(test_rand_u64() % 90);
            wpair w = make_weight(2 * ffn, cols, wk->bits, wk->group, wk->dt, bias);
            wpair wd = make_weight(n_out, ffn, wk->bits, wk->group, wk->dt, !bias);
            pair x = make(be->act_dtype, n, cols, 3.0f), r = make(be->act_dtype, n, cols, 1.0f);
            pair h = make_out(be->act_dtype, n, cols), g = make_out(be->act_dtype, n, ffn);
            pair out = make_out(be->act_dtype, n, n_out);
            float *nw = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
            float *nwd = dev_copy(nw, (size_t)cols * 4);
            bool took = be->ops->norm_mlp(st, out_is_r ? &r.dev : &out.dev, &g.dev, &h.dev, &x.dev,
                                          with_r ? &r.dev : NULL, nwd, 1e-6f, add_one, &w.dev, act, &wd.dev, NULL);
            one_token_dp4a += n == 1 && dp4a_bits(wk->bits) && !large;
            taken += took && n == 1 && dp4a_bits(wk->bits) && !large;
            if (took) {
                if (with_r)
                    ref_add_rmsnorm(&h.host, &x.host, &r.host, nw, 1e-6f, add_one);
                else
                    ref_rmsnorm(&h.host, &x.host, nw, 1e-6f, add_one);
                rill_tensor gu = rill_tensor_2d(be->act_dtype, n, 2 * ffn, malloc((size_t)(n * 2 * ffn) * 4));
                ref_matmul(&gu, &h.host, &w.host);
                rill_tensor hg = rill_tensor_cols(&gu, 0, ffn), hu = rill_tensor_cols(&gu, ffn, ffn);
                ref_act_mul(&g.host, &hg, &hu, act);
                free(gu.data);
                ref_matmul(&out.host, &g.host, &wd.host);
                CHECK(&x, "norm_mlp residual, %lld tokens, residual %d", (long long)n, with_r);
                CHECK(&h, "norm_mlp norm, %lld tokens, residual %d", (long long)n, with_r);
                CHECK(&g, "norm_mlp act(gate) * up, %s bits %d group %d %s, %lld x %lld x 2 x %lld",
                      act == ACT_SILU ? "silu" : "gelu_tanh", wk->bits, wk->group, dtype_name(wk->dt), (long long)n,
                      (long long)cols, (long long)ffn);
                pair got = {out.host, out_is_r ? r.dev : out.dev};
                CHECK(&got, "norm_mlp %s bits %d group %d %s, %lld x %lld x 2 x %lld, down %lld, residual %d, bias %d",
                      act == ACT_SILU ? "silu" : "gelu_tanh", wk->bits, wk->group, dtype_name(wk->dt), (long long)n,
                      (long long)cols, (long long)ffn, (long long)n_out, with_r, bias);
            } else
                CHECK(&x, "norm_mlp declined, %lld tokens, %d bits: the residual is as it was", (long long)n, wk->bits);
            drop_norm_case(nw, nwd, &x, &r, &h, &out);
            drop(&g);
            drop_weight(&w);
            drop_weight(&wd);
        }
    print_message("%s: norm_mlp took %d of the %d one-token 4- and 8-bit cases with a small down\n", be_name, taken,
                  one_token_dp4a);
    if (be->act_dtype != DTYPE_F32) assert_int_equal(taken, one_token_dp4a);
}

// norm_qkv_rope against add_rmsnorm (or rmsnorm), matmul over a stacked q/k/v weight, then rope over
// its first heads (q's and k's), at a position read from the device: h, the residual x and out. A
// backend with the op takes one token on 4- or 8-bit weights with 16-bit activations (CUDA: the GEMV turns
// each pair of rows in its epilogue); a declined call must leave x as it was.
static void test_norm_qkv_rope(void **state) {
    if (!be->ops->norm_qkv_rope) {
        print_message("%s: no norm_qkv_rope (the decoder runs norm_matmul and rope)\n", be_name);
        return;
    }
    static const struct {
        int64_t cols;
        int heads, kv, hd, rot;
        rill_rope_layout layout;
        float mscale;
        int bits, group;
        bool bias, with_r;
    } cases[] = {
        {576, 9, 3, 64, 64, ROPE_NEOX, 1.0f, 4, 64, false, true},         // SmolLM2's shape
        {1024, 8, 2, 128, 128, ROPE_NEOX, 1.0f, 4, 64, true, false},      // Llama-like, q/k/v bias
        {512, 4, 4, 64, 32, ROPE_INTERLEAVED, 1.25f, 4, 32, false, true}, // partial, interleaved
        {576, 9, 3, 64, 64, ROPE_NEOX, 1.0f, 8, 64, false, true},         // 8-bit
    };
    int taken = 0, eligible = 0;
    for (size_t k = 0; k < N_OF(cases); k++) {
        int64_t cols = cases[k].cols, rot_rows = (int64_t)(cases[k].heads + cases[k].kv) * cases[k].hd;
        int64_t n_out = rot_rows + (int64_t)cases[k].kv * cases[k].hd;
        wpair w = make_weight(n_out, cols, cases[k].bits, cases[k].group,
                              be->act_dtype == DTYPE_F16 ? DTYPE_F16 : DTYPE_BF16, cases[k].bias);
        pair x = make(be->act_dtype, 1, cols, 3.0f), r = make(be->act_dtype, 1, cols, 1.0f);
        pair h = make_out(be->act_dtype, 1, cols), out = make_out(be->act_dtype, 1, n_out);
        pair pos = make_i32(1, 0, 40000);
        float *nw = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
        float *nwd = dev_copy(nw, (size_t)cols * 4);
        int half = cases[k].rot / 2;
        float *inv_d, *inv = rope_inv_freq(half, 10000.0, &inv_d);
        rill_rope_params p = {
            cases[k].heads + cases[k].kv, cases[k].hd, cases[k].rot, cases[k].layout, inv_d, cases[k].mscale};
        bool with_r = cases[k].with_r;
        bool took = be->ops->norm_qkv_rope(st, &out.dev, &h.dev, &x.dev, with_r ? &r.dev : NULL, nwd, 1e-6f, false,
                                           &w.dev, &pos.dev, &p);
        eligible += dp4a_bits(cases[k].bits);
        taken += took && dp4a_bits(cases[k].bits);
        if (took) {
            if (with_r)
                ref_add_rmsnorm(&h.host, &x.host, &r.host, nw, 1e-6f, false);
            else
                ref_rmsnorm(&h.host, &x.host, nw, 1e-6f, false);
            ref_matmul(&out.host, &h.host, &w.host);
            rill_tensor qk = rill_tensor_cols(&out.host, 0, rot_rows);
            p.inv_freq = inv;
            ref_rope(&qk, &pos.host, &p);
            CHECK(&x, "norm_qkv_rope residual, case %zu", k);
            CHECK(&h, "norm_qkv_rope norm, case %zu", k);
            CHECK(&out, "norm_qkv_rope case %zu (%d + %d heads of %d, rot %d, %s)", k, cases[k].heads, cases[k].kv,
                  cases[k].hd, cases[k].rot, cases[k].layout == ROPE_NEOX ? "neox" : "interleaved");
        } else
            CHECK(&x, "norm_qkv_rope declined, case %zu: the residual is as it was", k);
        free(inv);
        be->ops->free(be, inv_d);
        drop(&pos);
        drop_norm_case(nw, nwd, &x, &r, &h, &out);
        drop_weight(&w);
    }
    print_message("%s: norm_qkv_rope took %d of the %d one-token 4- and 8-bit cases\n", be_name, taken, eligible);
    if (be->act_dtype != DTYPE_F32) assert_int_equal(taken, eligible);
}

// x += other on both sides, between two steps of a folded-norm chain: the norm the first step
// prepared no longer fits x, and the next step must not take it.
static void change_between_steps(pair *x, const pair *other) {
    be->ops->add(st, &x->dev, &x->dev, &other->dev);
    ref_add(&x->host, &x->host, &other->host);
}

// The q/k/v step of the folded-norm chains: norm_qkv_rope of x (norm weights nw, nwd on the
// device) into qkv, or where it declines norm_matmul then rope, as the decoder runs them; and the
// reference of the ops apart into qkv.host (h.host: the norm). p's inv_freq is the device copy of
// inv. Returns whether norm_qkv_rope took it; the caller checks.
static bool qkv_rope_step(pair *qkv, pair *h, pair *x, const float *nw, const float *nwd, bool add_one,
                          const wpair *wqkv, const pair *pos, rill_rope_params p, const float *inv, int64_t rot_rows) {
    bool took = be->ops->norm_qkv_rope && be->ops->norm_qkv_rope(st, &qkv->dev, &h->dev, &x->dev, NULL, nwd, 1e-6f,
                                                                 add_one, &wqkv->dev, &pos->dev, &p);
    if (!took) {
        rill_tensor qk = rill_tensor_cols(&qkv->dev, 0, rot_rows);
        be->ops->norm_matmul(st, &qkv->dev, &h->dev, &x->dev, NULL, nwd, 1e-6f, add_one, &wqkv->dev);
        be->ops->rope(st, &qk, &pos->dev, &p);
    }
    ref_rmsnorm(&h->host, &x->host, nw, 1e-6f, add_one);
    ref_matmul(&qkv->host, &h->host, &wqkv->host);
    rill_tensor qk = rill_tensor_cols(&qkv->host, 0, rot_rows);
    p.inv_freq = inv;
    ref_rope(&qk, &pos->host, &p);
    return took;
}

// The norm folded into the GEMVs around it: matmul_add_norm (x += a . W^T, preparing the norm
// after it), then norm_mlp taking that norm (r NULL) and adding its own output into x with the next
// norm prepared, then norm_qkv_rope taking that one; each against the reference of the ops apart
// (matmul, add, rmsnorm, ...). Where a step is declined the test runs it apart, as the decoder does,
// and x must be as it was. Variants: 1 adds to x between the steps, so a prepared norm taken anyway
// (not dropped by that launch) would give the wrong results; 2 runs step 1 as a plain matmul whose
// output norm_mlp adds in as r (with next); 3 calls norm_mlp without next, so it takes the prepared
// norm and writes down's output apart, which the test adds. A backend with matmul_add_norm takes
// every one-token 4- or 8-bit case with 16-bit activations (CUDA: where the f32 GEMV is matmul's path).
static void test_norm_folded(void **state) {
    if (!be->ops->matmul_add_norm) {
        print_message("%s: no matmul_add_norm (the decoder runs matmul and adds in the norm)\n", be_name);
        return;
    }
    static const struct {
        int bits, group;
        rill_dtype dt;
        int64_t cols, ffn;
        int heads, kv, hd;
    } cases[] = {
        {4, 32, DTYPE_F16, 576, 1536, 9, 3, 64},    // SmolLM2's shapes
        {4, 64, DTYPE_BF16, 576, 1536, 9, 3, 64},   //
        {4, 128, DTYPE_F32, 1024, 1024, 8, 2, 128}, // 2^20 weights: o and down at the f32 GEMV's bound
        {8, 64, DTYPE_BF16, 576, 1536, 9, 3, 64},   // 8-bit
    };
    int taken = 0, eligible = 0;
    for (size_t k = 0; k < N_OF(cases); k++)
        for (int variant = 0; variant < 4; variant++) { // (above)
            int64_t cols = cases[k].cols, ffn = cases[k].ffn;
            int64_t rot_rows = (int64_t)(cases[k].heads + cases[k].kv) * cases[k].hd;
            int64_t n_qkv = rot_rows + (int64_t)cases[k].kv * cases[k].hd;
            bool add_one = (k + variant) % 2, bias = k % 2 == 0;
            rill_act act = variant % 2 ? ACT_GELU_TANH : ACT_SILU;
            wpair wo = make_weight(cols, cols, cases[k].bits, cases[k].group, cases[k].dt, bias);
            wpair wgu = make_weight(2 * ffn, cols, cases[k].bits, cases[k].group, cases[k].dt, !bias);
            wpair wd = make_weight(cols, ffn, cases[k].bits, cases[k].group, cases[k].dt, bias);
            wpair wqkv = make_weight(n_qkv, cols, cases[k].bits, cases[k].group, cases[k].dt, !bias);
            pair x = make(be->act_dtype, 1, cols, 3.0f), a = make(be->act_dtype, 1, cols, 1.0f);
            pair o = make_out(be->act_dtype, 1, cols), h = make_out(be->act_dtype, 1, cols);
            pair g = make_out(be->act_dtype, 1, ffn), qkv = make_out(be->act_dtype, 1, n_qkv);
            pair other = make(be->act_dtype, 1, cols, 1.0f), pos = make_i32(1, 0, 40000);
            float *nw1 = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f),
                  *nw2 = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
            float *nw1d = dev_copy(nw1, (size_t)cols * 4), *nw2d = dev_copy(nw2, (size_t)cols * 4);
            int half = cases[k].hd / 2;
            float *inv_d, *inv = rope_inv_freq(half, 10000.0, &inv_d);
            rill_rope_params p = {cases[k].heads + cases[k].kv, cases[k].hd, cases[k].hd, ROPE_NEOX, inv_d, 1.0f};
            rill_norm_next next1 = {nw1d, 1e-6f, add_one, &wgu.dev, &wd.dev},
                           next2 = {nw2d, 1e-6f, add_one, NULL, NULL};

            // step 1: x += a . Wo^T (variant 2: o = a . Wo^T, added by step 2)
            bool took1 = variant != 2 && be->ops->matmul_add_norm(st, &x.dev, &a.dev, &wo.dev, &next1);
            if (!took1) CHECK(&x, "matmul_add_norm declined, case %zu: the residual is as it was", k);
            if (!took1) be->ops->matmul(st, &o.dev, &a.dev, &wo.dev);
            ref_matmul(&o.host, &a.host, &wo.host);
            ref_add(&x.host, &x.host, &o.host);
            if (!took1 && variant != 2) be->ops->add(st, &x.dev, &x.dev, &o.dev);
            if (variant != 2) CHECK(&x, "matmul_add_norm residual, case %zu", k);
            if (variant == 1) change_between_steps(&x, &other);
            // step 2: the MLP of norm(x, nw1) (variant 2: of norm(x + o)), its output into x (variant 3:
            // into o, then added)
            const rill_tensor *r2 = variant == 2 ? &o.dev : NULL;
            bool took2 =
                be->ops->norm_mlp && be->ops->norm_mlp(st, &o.dev, &g.dev, &h.dev, &x.dev, r2, nw1d, 1e-6f, add_one,
                                                       &wgu.dev, act, &wd.dev, variant == 3 ? NULL : &next2);
            ref_rmsnorm(&h.host, &x.host, nw1, 1e-6f, add_one);
            rill_tensor gu = rill_tensor_2d(be->act_dtype, 1, 2 * ffn, malloc((size_t)(2 * ffn) * 4));
            ref_matmul(&gu, &h.host, &wgu.host);
            rill_tensor hg = rill_tensor_cols(&gu, 0, ffn), hu = rill_tensor_cols(&gu, ffn, ffn);
            ref_act_mul(&g.host, &hg, &hu, act);
            free(gu.data);
            ref_matmul(&o.host, &g.host, &wd.host);
            if (took2)
                CHECK(&g, "norm_mlp (prepared norm) act(gate) * up, case %zu variant %d", k, variant);
            else {
                if (variant != 2) CHECK(&x, "norm_mlp with next declined, case %zu: the residual is as it was", k);
                if (variant == 2) be->ops->add(st, &x.dev, &x.dev, &o.dev);
                be->ops->rmsnorm(st, &h.dev, &x.dev, nw1d, 1e-6f, add_one);
                pair gate = make_out(be->act_dtype, 1, 2 * ffn);
                be->ops->matmul(st, &gate.dev, &h.dev, &wgu.dev);
                rill_tensor dg = rill_tensor_cols(&gate.dev, 0, ffn), du = rill_tensor_cols(&gate.dev, ffn, ffn);
                be->ops->act_mul(st, &g.dev, &dg, &du, act);
                be->ops->matmul(st, &o.dev, &g.dev, &wd.dev);
                be->ops->add(st, &x.dev, &x.dev, &o.dev);
                drop(&gate);
            }
            if (took2 && variant == 3) be->ops->add(st, &x.dev, &x.dev, &o.dev);
            ref_add(&x.host, &x.host, &o.host);
            CHECK(&x, "norm_mlp (next prepared) residual, case %zu variant %d", k, variant);
            if (variant == 1) change_between_steps(&x, &other);
            // step 3: q/k/v of norm(x, nw2), roped
            bool took3 = qkv_rope_step(&qkv, &h, &x, nw2, nw2d, add_one, &wqkv, &pos, p, inv, rot_rows);
            CHECK(&qkv, "norm_qkv_rope (prepared norm), case %zu variant %d", k, variant);
            CHECK(&x, "the residual after the steps, case %zu variant %d", k, variant);
            eligible += dp4a_bits(cases[k].bits);
            taken += (took1 || variant == 2) && took2 && took3 && dp4a_bits(cases[k].bits);

            free(inv);
            be->ops->free(be, inv_d);
            free(nw2);
            be->ops->free(be, nw2d);
            drop(&other);
            drop(&pos);
            drop(&g);
            drop(&qkv);
            drop_norm_case(nw1, nw1d, &x, &a, &h, &o);
            drop_weight(&wo);
            drop_weight(&wgu);
            drop_weight(&wd);
            drop_weight(&wqkv);
        }
    print_message("%s: the folded norms took %d of the %d one-token 4- and 8-bit chains\n", be_name, taken, eligible);
    if (be->act_dtype != DTYPE_F32) assert_int_equal(taken, eligible);
}

// embed_norm (the embedding of one token preparing the first norm), then norm_qkv_rope taking that
// norm: the row against ref_embed, q/k/v against the reference of the ops apart, and h still the
// poison where the prepared norm was to be taken (the op that takes it writes no h). The embedding is
// dense or quantized (embed_norm's rows are any weight's), the q/k/v 4-bit. Variant 1 adds to x
// between the two, so a prepared norm taken anyway would give the wrong q/k/v; variant 2 takes the
// last row. Where embed_norm declines the test runs
// embed, as the decoder does. CUDA takes every case with 16-bit activations.
static void test_embed_norm(void **state) {
    if (!be->ops->embed_norm) {
        print_message("%s: no embed_norm (the decoder runs embed, and the norm reads x)\n", be_name);
        return;
    }
    static const struct {
        int ebits, egroup, bits, group;
        rill_dtype dt;
        int64_t cols;
        int heads, kv, hd;
    } cases[] = {
        {0, 0, 4, 32, DTYPE_F16, 576, 9, 3, 64},      // SmolLM2's shapes, a dense embedding
        {4, 64, 4, 64, DTYPE_BF16, 576, 9, 3, 64},    // a 4-bit embedding
        {8, 32, 4, 128, DTYPE_F32, 1024, 8, 2, 128},  //
        {4, 64, 4, 64, DTYPE_BF16, 4096, 32, 8, 128}, // Llama-3-8B's: q/k/v on the stream kernel (declined)
    };
    int taken = 0, eligible = 0;
    for (size_t k = 0; k < N_OF(cases); k++)
        for (int variant = 0; variant < 3; variant++) { // (above)
            int64_t cols = cases[k].cols, vocab = 97;
            int64_t rot_rows = (int64_t)(cases[k].heads + cases[k].kv) * cases[k].hd;
            int64_t n_qkv = rot_rows + (int64_t)cases[k].kv * cases[k].hd;
            bool add_one = (k + variant) % 2;
            float scale = variant == 1 ? 1.0f : 4.5f;
            wpair we = make_weight(vocab, cols, cases[k].ebits, cases[k].egroup, cases[k].dt, false);
            wpair wqkv = make_weight(n_qkv, cols, cases[k].bits, cases[k].group, cases[k].dt, k % 2);
            pair ids = make_i32(1, variant == 2 ? (int32_t)vocab - 1 : 0, (int32_t)vocab - 1);
            pair x = make_out(be->act_dtype, 1, cols), h = make_out(be->act_dtype, 1, cols);
            pair qkv = make_out(be->act_dtype, 1, n_qkv), other = make(be->act_dtype, 1, cols, 1.0f);
            pair pos = make_i32(1, 0, 40000);
            float *nw = fill_scalars(DTYPE_F32, (size_t)cols, -1.0f, 2.0f);
            float *nwd = dev_copy(nw, (size_t)cols * 4);
            int half = cases[k].hd / 2;
            float *inv_d, *inv = rope_inv_freq(half, 10000.0, &inv_d);
            rill_rope_params p = {cases[k].heads + cases[k].kv, cases[k].hd, cases[k].hd, ROPE_NEOX, inv_d, 1.0f};
            rill_norm_next next = {nwd, 1e-6f, add_one, NULL, NULL, &wqkv.dev, &p};

            bool took = be->ops->embed_norm(st, &x.dev, &ids.dev, &we.dev, scale, &next);
            if (!took) be->ops->embed(st, &x.dev, &ids.dev, &we.dev, scale);
            ref_embed(&x.host, &ids.host, &we.host, scale);
            CHECK(&x, "embed_norm row, case %zu variant %d", k, variant);
            if (variant == 1) change_between_steps(&x, &other);
            bool took2 = qkv_rope_step(&qkv, &h, &x, nw, nwd, add_one, &wqkv, &pos, p, inv, rot_rows);
            CHECK(&qkv, "q/k/v after embed_norm, case %zu variant %d", k, variant);
            if (took && took2 && variant != 1) { // the prepared norm was what q/k/v read: h left as poisoned
                rill_tensor hh = h.host;
                hh.data = malloc(bytes_of(&h.host));
                be->ops->download(st, hh.data, h.dev.data, bytes_of(&h.host));
                be->ops->sync(st);
                for (int64_t c = 0; c < cols; c++)
                    if (!isnan(ref_load(&hh, 0, c)))
                        fail_msg("%s: norm_qkv_rope after embed_norm wrote h (case %zu variant %d): the prepared "
                                 "norm was not taken",
                                 be_name, k, variant);
                free(hh.data);
            }
            CHECK(&x, "the residual after the steps, case %zu variant %d", k, variant);
            bool counts = cases[k].cols < 4096 && be->act_dtype != DTYPE_F32;
            eligible += counts;
            taken += counts && took && took2;
            if (cases[k].cols >= 4096 && took) fail_msg("%s: embed_norm took a q/k/v it does not feed", be_name);

            free(inv);
            be->ops->free(be, inv_d);
            drop(&pos);
            drop(&other);
            drop(&qkv);
            drop(&ids);
            free(nw);
            be->ops->free(be, nwd);
            drop(&x);
            drop(&h);
            drop_weight(&we);
            drop_weight(&wqkv);
        }
    print_message("%s: embed_norm took %d of the %d cases it should\n", be_name, taken, eligible);
    assert_int_equal(taken, eligible);
}

// act_matmul against act_mul then matmul, with gate and up the two halves of one tensor (as the
// stacked gate/up projection leaves them).
static void test_act_matmul(void **state) {
    if (!be->ops->act_matmul) {
        print_message("%s: no act_matmul (the decoder runs the two ops)\n", be_name);
        return;
    }
    static const int64_t toks[] = {1, 2, 8, 12};
    for (size_t k = 0; k < N_OF(fused_kinds); k++)
        for (size_t t = 0; t < N_OF(toks); t++) {
            const wkind *wk = &fused_kinds[k];
            rill_act act = (k + t) % 2 ? ACT_GELU_TANH : ACT_SILU;
            int64_t n = toks[t], inter = k % 2 ? 1536 : 512, n_out = 40 + (int64_t)(test_rand_u64() % 90);
            wpair w = make_weight(n_out, inter, wk->bits, wk->group, wk->dt, k % 2 == 0);
            pair gu = make(be->act_dtype, n, 2 * inter, 2.0f), out = make_out(be->act_dtype, n, n_out);
            rill_tensor g = rill_tensor_cols(&gu.dev, 0, inter), u = rill_tensor_cols(&gu.dev, inter, inter);
            be->ops->act_matmul(st, &out.dev, &g, &u, act, &w.dev);
            rill_tensor hg = rill_tensor_cols(&gu.host, 0, inter), hu = rill_tensor_cols(&gu.host, inter, inter);
            rill_tensor a = rill_tensor_2d(be->act_dtype, n, inter, malloc((size_t)(n * inter) * 4));
            ref_act_mul(&a, &hg, &hu, act);
            ref_matmul(&out.host, &a, &w.host);
            CHECK(&out, "act_matmul %s bits %d group %d %s, %lld x %lld x %lld", act == ACT_SILU ? "silu" : "gelu_tanh",
                  wk->bits, wk->group, dtype_name(wk->dt), (long long)n, (long long)inter, (long long)n_out);
            free(a.data);
            drop(&gu);
            drop(&out);
            drop_weight(&w);
        }
}

static void test_rope(void **state) {
    NEED_OP(rope);
    static const struct {
        int heads, head_dim, rot;
        rill_rope_layout layout;
        float mscale;
    } cases[] = {
        {9, 64, 64, ROPE_INTERLEAVED, 1.0f},   {4, 256, 256, ROPE_NEOX, 1.0f}, {3, 64, 32, ROPE_NEOX, 1.0f},
        {2, 128, 64, ROPE_INTERLEAVED, 1.25f}, {1, 8, 8, ROPE_NEOX, 0.9f},
    };
    for (size_t k = 0; k < N_OF(cases); k++) {
        int64_t n = 7;
        pair x = make(be->act_dtype, n, (int64_t)cases[k].heads * cases[k].head_dim, 1.0f);
        pair pos = make_i32(n, 0, 40000);
        int half = cases[k].rot / 2;
        float *inv_d, *inv = rope_inv_freq(half, 10000.0 + 90000.0 * (double)k, &inv_d);
        rill_rope_params p = {cases[k].heads, cases[k].head_dim, cases[k].rot, cases[k].layout, inv_d, cases[k].mscale};
        be->ops->rope(st, &x.dev, &pos.dev, &p);
        p.inv_freq = inv;
        ref_rope(&x.host, &pos.host, &p);
        CHECK(&x, "rope case %zu", k);
        free(inv);
        be->ops->free(be, inv_d);
        drop(&x);
        drop(&pos);
    }
}

static void test_attention(void **state) {
    NEED_OP(attention);
    static const struct {
        int n_q, n_k, heads, kv_heads, hd, vd;
        int64_t q_pos0, k_pos0;
        int window;
        float softcap;
        rill_dtype kv;
    } cases[] = {
        {1, 300, 9, 3, 64, 64, 299, 0, 0, 0, DTYPE_F32},   // decode, GQA 3
        {17, 17, 4, 1, 256, 256, 0, 0, 0, 0, DTYPE_F32},   // prefill, MQA, gemma head size
        {16, 40, 4, 4, 32, 32, 24, 0, 8, 0, DTYPE_F32},    // chunk after a prefix, sliding window 8
        {5, 20, 2, 1, 64, 64, 15, 0, 0, 50.0f, DTYPE_F32}, // softcap
        {3, 64, 8, 2, 64, 32, 61, 0, 0, 0, DTYPE_F16},     // f16 cache, v_head_dim != head_dim
        {4, 30, 2, 2, 16, 16, 100, 80, 10, 0, DTYPE_BF16}, // keys starting past 0 (a window of a cache)
        {2, 10, 2, 2, 16, 16, 0, 5, 0, 0, DTYPE_F32},      // a query that sees no key
        // more than 8 queries (CUDA f16/bf16: the tensor-core prefill path)
        {40, 60, 8, 2, 128, 128, 20, 0, 0, 30.0f, DTYPE_F16}, // a chunk after a prefix, softcap, GQA 4
        {12, 10, 2, 2, 16, 16, 0, 5, 0, 0, DTYPE_F32},        // the first queries see no key
        {300, 300, 8, 2, 64, 64, 0, 0, 100, 0, DTYPE_F32},    // a longer prefill, sliding window 100
        // decode with the keys split into chunks (CPU): a window that leaves the last chunks empty
        {1, 400, 4, 1, 64, 64, 399, 0, 100, 0, DTYPE_F16},
        {2, 700, 12, 2, 80, 80, 698, 0, 0, 0, DTYPE_BF16}, // two queries, GQA 6, head dim 80
    };
    for (size_t k = 0; k < N_OF(cases); k++) {
        rill_dtype kvt = be->act_dtype == DTYPE_F32 ? cases[k].kv : be->act_dtype;
        pair q = make(be->act_dtype, cases[k].n_q, (int64_t)cases[k].heads * cases[k].hd, 1.0f);
        pair kk = make(kvt, cases[k].n_k, (int64_t)cases[k].kv_heads * cases[k].hd, 1.0f);
        pair v = make(kvt, cases[k].n_k, (int64_t)cases[k].kv_heads * cases[k].vd, 1.0f);
        pair out = make_out(be->act_dtype, cases[k].n_q, (int64_t)cases[k].heads * cases[k].vd);
        rill_attn_params p = {cases[k].heads,
                              cases[k].kv_heads,
                              cases[k].hd,
                              cases[k].vd,
                              1.0f / sqrtf((float)cases[k].hd),
                              cases[k].softcap,
                              {cases[k].q_pos0, cases[k].k_pos0, cases[k].window}};
        be->ops->attention(st, &out.dev, &q.dev, &kk.dev, &v.dev, &p);
        ref_attention(&out.host, &q.host, &kk.host, &v.host, &p);
        CHECK(&out, "attention case %zu", k);
        drop(&q);
        drop(&kk);
        drop(&v);
        drop(&out);
    }
}

// Quantized KV (optional ops: a backend without them is skipped, and the quantized cache refuses
// to be made on it). The backend's kv_quantize must produce the reference's bytes exactly, and its
// attention over the packed rows must match the reference's (which dequantizes first).
static rill_qkv qkv_alloc(bool dev, int bits, int gs, rill_dtype sdt, int64_t rows, int64_t cols) {
    rill_qkv t = {bits, gs, sdt, rows, cols, NULL, NULL, NULL};
    size_t pb = (size_t)(rows * cols * bits / 32) * 4, sb = (size_t)(rows * cols / gs) * dtype_size(sdt);
    t.packed = dev ? be->ops->alloc(be, pb) : malloc(pb);
    t.scales = dev ? be->ops->alloc(be, sb) : malloc(sb);
    t.biases = dev ? be->ops->alloc(be, sb) : malloc(sb);
    return t;
}

static void qkv_drop(rill_qkv *t, bool dev) {
    void *p[3] = {t->packed, t->scales, t->biases};
    for (int i = 0; i < 3; i++)
        dev ? be->ops->free(be, p[i]) : free(p[i]);
}

static void test_attention_q(void **state) {
    if (!be->ops->kv_quantize || !be->ops->attention_q) {
        print_message("[  SKIPPED ] %s: optional ops kv_quantize / attention_q are not implemented\n", be_name);
        skip();
    }
    static const struct {
        int n_q, n_k, heads, kv_heads, hd, bits, gs;
        int64_t q_pos0;
        int window;
    } cases[] = {
        {1, 300, 9, 3, 64, 8, 64, 299, 0},  // decode, 8-bit, GQA 3 (SmolLM2's shape)
        {1, 257, 4, 2, 128, 4, 32, 256, 0}, // decode, 4-bit, group 32
        {12, 40, 4, 4, 64, 4, 64, 28, 9},   // a chunk after a prefix, sliding window
        {5, 5, 2, 1, 128, 8, 128, 0, 0},    // prefill, group 128
    };
    for (size_t c = 0; c < N_OF(cases); c++) {
        int64_t kc = (int64_t)cases[c].kv_heads * cases[c].hd;
        rill_dtype sdt = be->act_dtype;
        pair q = make(be->act_dtype, cases[c].n_q, (int64_t)cases[c].heads * cases[c].hd, 1.0f);
        pair kx = make(be->act_dtype, cases[c].n_k, kc, 2.0f), vx = make(be->act_dtype, cases[c].n_k, kc, 1.0f);
        rill_qkv kh = qkv_alloc(false, cases[c].bits, cases[c].gs, sdt, cases[c].n_k, kc);
        rill_qkv vh = qkv_alloc(false, cases[c].bits, cases[c].gs, sdt, cases[c].n_k, kc);
        rill_qkv kd = qkv_alloc(true, cases[c].bits, cases[c].gs, sdt, cases[c].n_k, kc);
        rill_qkv vd = qkv_alloc(true, cases[c].bits, cases[c].gs, sdt, cases[c].n_k, kc);
        ref_kv_quantize(&kh, &kx.host);
        ref_kv_quantize(&vh, &vx.host);
        be->ops->kv_quantize(st, &kd, &kx.dev);
        be->ops->kv_quantize(st, &vd, &vx.dev);
        size_t pb = (size_t)(cases[c].n_k * kc * cases[c].bits / 32) * 4;
        uint32_t *got = malloc(pb);
        be->ops->download(st, got, kd.packed, pb);
        be->ops->sync(st);
        if (memcmp(got, kh.packed, pb)) fail_msg("%s: kv_quantize case %zu: packed keys differ", be_name, c);
        free(got);
        // the quantized values are close to the input (a test that can fail: not all zeros)
        double err = 0, ref = 0;
        for (int64_t r = 0; r < cases[c].n_k; r++)
            for (int64_t e = 0; e < kc; e++) {
                double a = ref_qkv_load(&kh, r, e), b = ref_load(&kx.host, r, e);
                err += (a - b) * (a - b);
                ref += b * b;
            }
        assert_true(ref > 0 && sqrt(err / ref) < (cases[c].bits == 8 ? 0.01 : 0.15));
        pair out = make_out(be->act_dtype, cases[c].n_q, (int64_t)cases[c].heads * cases[c].hd);
        rill_attn_params p = {cases[c].heads,
                              cases[c].kv_heads,
                              cases[c].hd,
                              cases[c].hd,
                              1.0f / sqrtf((float)cases[c].hd),
                              0,
                              {cases[c].q_pos0, 0, cases[c].window, NULL}};
        be->ops->attention_q(st, &out.dev, &q.dev, &kd, &vd, &p);
        ref_attention_q(&out.host, &q.host, &kh, &vh, &p);
        CHECK(&out, "attention_q case %zu", c);
        qkv_drop(&kh, false);
        qkv_drop(&vh, false);
        qkv_drop(&kd, true);
        qkv_drop(&vd, true);
        drop(&q);
        drop(&kx);
        drop(&vx);
        drop(&out);
    }
}

static void test_elementwise(void **state) {
    NEED_OP(act_mul);
    NEED_OP(add);
    NEED_OP(scale);
    NEED_OP(softcap);
    int64_t rows = 21, cols = 1540; // the CPU: two row tasks, a tail after the 8-lane vectors
    for (int a = 0; a < 2; a++) {
        pair g = make(be->act_dtype, rows, cols, 2.0f), u = make(be->act_dtype, rows, cols, 1.0f);
        pair out = make_out(be->act_dtype, rows, cols);
        be->ops->act_mul(st, &out.dev, &g.dev, &u.dev, a ? ACT_GELU_TANH : ACT_SILU);
        ref_act_mul(&out.host, &g.host, &u.host, a ? ACT_GELU_TANH : ACT_SILU);
        CHECK(&out, "act_mul %s", a ? "gelu_tanh" : "silu");
        be->ops->add(st, &out.dev, &g.dev, &u.dev);
        ref_add(&out.host, &g.host, &u.host);
        CHECK(&out, "add%s", "");
        be->ops->scale(st, &out.dev, &g.dev, 0.125f);
        ref_scale(&out.host, &g.host, 0.125f);
        CHECK(&out, "scale%s", "");
        be->ops->softcap(st, &out.dev, &g.dev, 3.0f);
        ref_softcap(&out.host, &g.host, 3.0f);
        CHECK(&out, "softcap%s", "");
        drop(&g);
        drop(&u);
        drop(&out);
    }
}

static void test_copy_casts(void **state) {
    NEED_OP(copy);
    static const rill_dtype dts[] = {DTYPE_F32, DTYPE_F16, DTYPE_BF16};
    for (size_t a = 0; a < N_OF(dts); a++)
        for (size_t b = 0; b < N_OF(dts); b++) {
            pair x = make(dts[a], 4, 100, 5.0f), out = make_out(dts[b], 4, 100);
            // a strided destination: every other row of a taller buffer
            rill_tensor dst = out.dev, dsth = out.host;
            dst.rows = dsth.rows = 2;
            dst.stride = dsth.stride = 200;
            rill_tensor src = x.dev, srch = x.host;
            src.rows = srch.rows = 2;
            src.stride = srch.stride = 200;
            be->ops->copy(st, &dst, &src);
            ref_copy(&dsth, &srch);
            // rows not written keep their NaN on both sides; compare only the written rows
            out.host.rows = out.dev.rows = 1;
            CHECK(&out, "copy %s -> %s", dtype_name(dts[a]), dtype_name(dts[b]));
            drop(&x);
            drop(&out);
        }
}

static void test_moe(void **state) {
    NEED_OP(moe_route);
    NEED_OP(moe_matmul);
    NEED_OP(moe_combine);
    static const struct {
        int E, k, groups, topk_group, n_tok;
        bool softmax, norm, per_slot_x;
    } cases[] = {
        {8, 2, 4, 2, 5, false, true, false},
        {16, 4, 1, 1, 3, true, false, true},
        {6, 1, 3, 1, 1, false, false, false},
    };
    for (size_t c = 0; c < N_OF(cases); c++) {
        int E = cases[c].E, k = cases[c].k, n = cases[c].n_tok;
        rill_moe_params p = {E, k, cases[c].groups, cases[c].topk_group, cases[c].softmax, cases[c].norm, 2.5f};
        pair logits = make(be->act_dtype, n, E, 2.0f);
        float *bias = fill_scalars(DTYPE_F32, (size_t)E, -0.5f, 0.5f);
        float *bias_d = dev_copy(bias, (size_t)E * 4);
        pair idx = make_i32((int64_t)n * k, -1, -1), w = make_out(DTYPE_F32, n, k); // ids poisoned with -1
        idx.host.rows = idx.dev.rows = n;
        idx.host.cols = idx.dev.cols = idx.host.stride = idx.dev.stride = k;
        be->ops->moe_route(st, &idx.dev, &w.dev, &logits.dev, bias_d, &p);
        ref_moe_route(&idx.host, &w.host, &logits.host, bias, &p);
        int32_t *got = malloc((size_t)(n * k) * 4);
        be->ops->download(st, got, idx.dev.data, (size_t)(n * k) * 4);
        be->ops->sync(st);
        assert_memory_equal(got, idx.host.data, (size_t)(n * k) * 4);
        CHECK(&w, "moe_route case %zu", c);
        free(got);
        // experts: one shape, mixed kinds across cases
        int64_t n_in = 128, n_out = 40;
        wpair ws[16];
        rill_weight hostw[16], devw[16];
        for (int e = 0; e < E; e++) {
            ws[e] = make_weight(n_out, n_in, c == 1 ? 0 : 4, 32, DTYPE_F16, false);
            hostw[e] = ws[e].host;
            devw[e] = ws[e].dev;
        }
        pair x = make(be->act_dtype, cases[c].per_slot_x ? (int64_t)n * k : n, n_in, 1.0f);
        pair out = make_out(be->act_dtype, (int64_t)n * k, n_out);
        be->ops->moe_matmul(st, &out.dev, &x.dev, devw, &idx.dev);
        ref_moe_matmul(&out.host, &x.host, hostw, &idx.host);
        CHECK(&out, "moe_matmul case %zu", c);
        pair acc = make(be->act_dtype, n, n_out, 1.0f);
        be->ops->moe_combine(st, &acc.dev, &out.dev, &w.dev);
        ref_moe_combine(&acc.host, &out.host, &w.host);
        CHECK(&acc, "moe_combine case %zu", c);
        for (int e = 0; e < E; e++)
            drop_weight(&ws[e]);
        drop(&logits);
        drop(&idx);
        drop(&w);
        drop(&x);
        drop(&out);
        drop(&acc);
        free(bias);
        be->ops->free(be, bias_d);
    }
}

// Programs launched on a stream run in order, and an event marks a point in it.
static int order_log[8], order_n;
static void append(void *arg) { order_log[order_n++] = (int)(intptr_t)arg; }

static void test_stream_order_and_events(void **state) {
    rill_event *ev;
    assert_int_equal(be->ops->event_create(be, &ev), RILL_OK);
    order_n = 0;
    for (int i = 0; i < 5; i++)
        be->ops->launch(st, append, (void *)(intptr_t)i);
    be->ops->event_record(st, ev);
    be->ops->event_wait(ev);
    assert_true(be->ops->event_done(ev));
    assert_int_equal(order_n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(order_log[i], i);
    be->ops->event_destroy(ev);
}

// The CPU's int8-activation matmul (the default for decode-sized inputs): activations quantized per
// 32 to int8, so its bound is that of 8-bit rounding (5e-2: rounding of ~0.4% per element,
// amplified where the random outputs cancel), not f32's; a wrong code order or scale gives errors
// near 1. Every path the build can run (scalar, AVX2) is checked against the reference, and the
// SIMD paths against the scalar one, which computes the same integer sums (bound 1e-5).
static void test_cpu_int8_matmul(void **state) {
    if (strcmp(be_name, "cpu")) skip();
    cpu_backend *cb = be->impl;
    bool was = cb->int8;
    int path_was = cb->q8_path;
    cb->int8 = true;
    // 5-, 6- and 3-bit weights: the CPU widens their codes to 8 bits at load (groups of 16: the int16 kernel)
    static const wkind kinds[] = {{4, 32, DTYPE_F32},  {4, 64, DTYPE_F16},  {4, 128, DTYPE_BF16}, {8, 32, DTYPE_F32},
                                  {8, 64, DTYPE_BF16}, {8, 128, DTYPE_F16}, {5, 32, DTYPE_F16},   {6, 16, DTYPE_F32},
                                  {3, 64, DTYPE_BF16}, {8, 16, DTYPE_F16}};
    static const int64_t toks[] = {1, 2, 3, 4}; // the sizes that take the int8 path (decode)
    int best = cpu_q8_best_path(), planes_was = cb->q8_planes;
    double worst[3] = {0, 0, 0}, worst_simd = 0;
    for (int planes = 1; planes <= 2; planes++)
        for (size_t k = 0; k < N_OF(kinds); k++)
            for (size_t t = 0; t < N_OF(toks); t++) {
                // one plane: 8-bit rounding; two planes (the default): ~15 bits
                double lim = planes == 1 ? 5e-2 : 1e-3;
                cb->q8_planes = planes;
                // 4-bit needs cols % 64 (one chunk of packed bytes); 8-bit takes any multiple of the group
                int64_t n_in = kinds[k].bits == 4 ? 384 + 256 * (int64_t)(t % 2) : 128 * (int64_t)(3 + t % 3);
                int64_t n_out = 45 + (int64_t)t;
                wpair w = make_weight(n_out, n_in, kinds[k].bits, kinds[k].group, kinds[k].dt, t % 2);
                pair x = make(DTYPE_F32, toks[t], n_in, 1.0f);
                pair out_s = make_out(DTYPE_F32, toks[t], n_out);
                cb->q8_path = CPU_PATH_SCALAR;
                be->ops->matmul(st, &out_s.dev, &x.dev, &w.dev);
                ref_matmul(&out_s.host, &x.host, &w.host);
                double e = rel_err(&out_s);
                if (e > worst[planes]) worst[planes] = e;
                if (!(e <= lim))
                    fail_msg("int8 matmul (scalar, %d planes) bits %d group %d, %lld tokens: relative error %.3g",
                             planes, kinds[k].bits, kinds[k].group, (long long)toks[t], e);
                for (int path = CPU_PATH_AVX2; path <= best; path++) { // every SIMD path the build has
                    pair out_v = make_out(DTYPE_F32, toks[t], n_out);
                    cb->q8_path = path;
                    be->ops->matmul(st, &out_v.dev, &x.dev, &w.dev);
                    ref_matmul(&out_v.host, &x.host, &w.host);
                    double ev = rel_err(&out_v);
                    if (!(ev <= lim))
                        fail_msg("int8 matmul (path %d, %d planes) bits %d group %d: relative error %.3g", path, planes,
                                 kinds[k].bits, kinds[k].group, ev);
                    // against the scalar path: the same integers, only the f32 summation order differs
                    be->ops->download(st, out_v.host.data, out_s.dev.data, bytes_of(&out_v.host));
                    be->ops->sync(st);
                    double es = rel_err(&out_v);
                    if (es > worst_simd) worst_simd = es;
                    if (!(es <= 1e-5))
                        fail_msg("int8 matmul path %d vs scalar, bits %d group %d: relative difference %.3g", path,
                                 kinds[k].bits, kinds[k].group, es);
                    drop(&out_v);
                }
                drop(&x);
                drop(&out_s);
                drop_weight(&w);
            }
    printf("cpu int8 matmul: largest relative error vs reference %.3g (1 plane), %.3g (2 planes); %.3g SIMD vs "
           "scalar\n",
           worst[1], worst[2], worst_simd);
    cb->q8_planes = planes_was;
    cb->int8 = was;
    cb->q8_path = path_was;
}

// llama.cpp's activation rounding, written out from the GGUF block definitions (Q8_0: d = amax / 127
// stored as f16, codes round(x * 127 / amax); Q8_1 adds s = f16(d * sum of codes)) and its dot
// products (sum over blocks of d_w * d_x * integer dot + m_w * s), in f64. The CPU's one-plane
// kernel on a weight marked with act_quant must give this up to f32 summation order, at any
// number of tokens (prefill goes through it too), on every path the build can run.
static double llama_rounded_dot(const rill_weight *w, int64_t row, const float *x) {
    int64_t blocks = w->cols / 32;
    const uint8_t *p = (const uint8_t *)(w->packed + row * (w->cols * w->bits / 32));
    double acc = 0;
    for (int64_t b = 0; b < blocks; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++)
            amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        float d = amax / 127.0f, inv = amax > 0 ? 127.0f / amax : 0.0f;
        float dr = f16_to_f32(f32_to_f16(d));
        int64_t dot = 0, sum = 0;
        for (int i = 0; i < 32; i++) {
            int64_t e = b * 32 + i;
            int qx = (int)nearbyintf(x[e] * inv);
            int qw = w->bits == 4 ? (p[e / 2] >> (4 * (e % 2))) & 15 : p[e];
            dot += (int64_t)qw * qx;
            sum += qx;
        }
        double s = w->act_quant == ACT_QUANT_Q8_1 ? f16_to_f32(f32_to_f16(d * (float)sum)) : (double)dr * (double)sum;
        float sc = ((const float *)w->scales)[row * blocks + b], bi = ((const float *)w->biases)[row * blocks + b];
        acc += (double)sc * dr * (double)dot + (double)bi * s;
    }
    return acc + (w->bias ? w->bias[row] : 0.0f);
}

static void test_cpu_int8_matmul_llama_rounding(void **state) {
    if (strcmp(be_name, "cpu")) skip();
    cpu_backend *cb = be->impl;
    bool was = cb->int8;
    int path_was = cb->q8_path, planes_was = cb->q8_planes;
    cb->int8 = true;
    cb->q8_planes = 1;
    static const struct {
        int bits;
        rill_act_quant aq;
    } kinds[] = {{4, ACT_QUANT_Q8_1}, {4, ACT_QUANT_Q8_0}, {8, ACT_QUANT_Q8_0}};
    static const int64_t toks[] = {1, 3, 5, 17}; // decode sizes and prefill sizes
    int n_paths = cpu_q8_best_path() + 1;        // scalar and every SIMD path the build has
    double worst = 0;
    for (size_t k = 0; k < N_OF(kinds); k++)
        for (size_t t = 0; t < N_OF(toks); t++) {
            int64_t n_in = 64 * (int64_t)(5 + t), n_out = 37 + (int64_t)t;
            wpair w = make_weight(n_out, n_in, kinds[k].bits, 32, DTYPE_F32, t % 2);
            w.host.act_quant = w.dev.act_quant = kinds[k].aq;
            pair x = make(DTYPE_F32, toks[t], n_in, 1.0f);
            for (int path = CPU_PATH_SCALAR; path < n_paths; path++) {
                cb->q8_path = path;
                pair out = make_out(DTYPE_F32, toks[t], n_out);
                be->ops->matmul(st, &out.dev, &x.dev, &w.dev);
                for (int64_t r = 0; r < toks[t]; r++)
                    for (int64_t o = 0; o < n_out; o++)
                        ((float *)out.host.data)[r * out.host.stride + o] =
                            (float)llama_rounded_dot(&w.host, o, (const float *)x.host.data + r * x.host.stride);
                double e = rel_err(&out);
                if (e > worst) worst = e;
                if (!(e <= 1e-5))
                    fail_msg(
                        "llama-rounded int8 matmul (path %d) bits %d act_quant %d, %lld tokens: relative error %.3g",
                        path, kinds[k].bits, (int)kinds[k].aq, (long long)toks[t], e);
                drop(&out);
            }
            drop(&x);
            drop_weight(&w);
        }
    printf("cpu int8 matmul with llama.cpp's rounding: largest relative difference %.3g\n", worst);
    cb->q8_planes = planes_was;
    cb->int8 = was;
    cb->q8_path = path_was;
}

// The exact (f32) matmul paths of the CPU other than the best: the scalar row-dot fallback that
// builds without AVX2 use for prefill (the AVX2 GEMM is what test_matmul runs).
static void test_cpu_matmul_scalar_fallback(void **state) {
    if (strcmp(be_name, "cpu")) skip();
    cpu_backend *cb = be->impl;
    int was = cb->gemm_path;
    cb->gemm_path = CPU_PATH_SCALAR;
    test_matmul(state);
    cb->gemm_path = was;
}

// The pool runs every task exactly once, on valid thread ids, loop after loop.
static int hits[1000];
static void count_task(void *arg, int task, int thread) {
    if (thread >= 0 && thread < *(int *)arg) __atomic_fetch_add(&hits[task], 1, __ATOMIC_RELAXED);
}

static void test_threadpool_runs_each_task_once(void **state) {
    for (int threads = 1; threads <= 3; threads++) {
        threadpool *p;
        assert_int_equal(threadpool_create(threads, &p), RILL_OK);
        for (int loop = 0; loop < 200; loop++) {
            int n = 1 + loop * 5 % 1000;
            memset(hits, 0, sizeof hits);
            threadpool_run(p, n, count_task, &threads);
            for (int i = 0; i < n; i++)
                assert_int_equal(hits[i], 1);
        }
        threadpool_destroy(p);
    }
}

static int setup(void **state) {
    be_name = *(const char **)*state;
    if (backend_open(be_name, 2, &be) != RILL_OK) return -1;
    // the CPU's int8 decode matmul has its own test and bound; the others hold it to f32's
    if (!strcmp(be_name, "cpu")) ((cpu_backend *)be->impl)->int8 = false;
    return be->ops->stream_create(be, &st) == RILL_OK ? 0 : -1;
}

static int teardown(void **state) {
    printf("%s: largest relative error %.3g\n", be_name, worst_err);
    worst_err = 0;
    be->ops->stream_destroy(st);
    backend_close(be);
    return 0;
}

int main(void) {
    int failed = 0;
    for (const char *const *n = backend_names(); *n; n++) {
        const char *name = *n;
        rill_backend *probe = NULL; // a compiled backend without its device (CUDA on CI) is skipped
        if (backend_open(name, 1, &probe) != RILL_OK) {
            print_message("[  SKIPPED ] backend %s: %s\n", name, rill_last_error());
            continue;
        }
        backend_close(probe);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_prestate_setup_teardown(test_matmul, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_embed, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_rmsnorm, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_add_rmsnorm, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_norm_matmul, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_act_matmul, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_norm_mlp, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_norm_qkv_rope, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_norm_folded, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_embed_norm, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_rope, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_attention, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_attention_q, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_elementwise, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_copy_casts, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_moe, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_stream_order_and_events, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_threadpool_runs_each_task_once, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_cpu_int8_matmul, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_cpu_int8_matmul_llama_rounding, setup, teardown, &name),
            cmocka_unit_test_prestate_setup_teardown(test_cpu_matmul_scalar_fallback, setup, teardown, &name),
        };
        failed += _cmocka_run_group_tests(name, tests, N_OF(tests), NULL, NULL);
    }
    return failed;
}
