// test_cuda.c: what the CUDA backend adds beyond the op harness (test_backend_ops covers every op):
// the message when no device is present, weights uploaded from host memory and released, Llama-sized
// decode matmuls, long-cache split-K attention, prefill attention and RoPE over many tokens against
// the reference, GGUF zero-point biases derived instead of uploaded, and errors that name the op.
// Without a GPU (CI) the device tests skip. `test_cuda bench` times the decode GEMV and friends on
// the GPU (bench/gpu.sh runs it); ctest never times anything.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef RILL_CUDA
#include "backend/cuda/cuda.h"
#include "backend/ref.h"
#include "base/alloc.h"
#include "testlib.h"

static rill_backend *be;
static rill_stream *st;

static int setup(void **state) {
    if (cuda_backend_open(0, &be) != RILL_OK) return 0; // the tests skip
    return be->ops->stream_create(be, &st) == RILL_OK ? 0 : -1;
}

static int teardown(void **state) {
    if (be) {
        be->ops->stream_destroy(st);
        cuda_backend_close(be);
    }
    be = NULL;
    return 0;
}

static void need_gpu(void) {
    if (!be) skip();
}

static size_t tensor_bytes(const rill_tensor *t) { return (size_t)(t->rows * t->stride) * dtype_size(t->dtype); }

// A host tensor of N(0, 1) values in dtype dt, and its device copy.
static rill_tensor host_rand(rill_dtype dt, int64_t rows, int64_t cols) {
    rill_tensor t = rill_tensor_2d(dt, rows, cols, malloc((size_t)(rows * cols) * dtype_size(dt)));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            ref_store(&t, r, c, test_rand_normal());
    return t;
}

static rill_tensor to_dev(const rill_tensor *h) {
    rill_tensor d = *h;
    d.data = be->ops->alloc(be, tensor_bytes(h));
    be->ops->upload(st, d.data, h->data, tensor_bytes(h));
    return d;
}

static rill_tensor dev_poisoned(rill_dtype dt, int64_t rows, int64_t cols) {
    rill_tensor h = rill_tensor_2d(dt, rows, cols, malloc((size_t)(rows * cols) * dtype_size(dt)));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            ref_store(&h, r, c, NAN);
    rill_tensor d = to_dev(&h);
    be->ops->sync(st);
    free(h.data);
    return d;
}

// ||dev - ref|| / ||ref||, INFINITY on any NaN.
static double rel_err(const rill_tensor *dev, const rill_tensor *ref) {
    rill_tensor got = *ref;
    got.data = malloc(tensor_bytes(ref));
    be->ops->download(st, got.data, dev->data, tensor_bytes(ref));
    be->ops->sync(st);
    double num = 0, den = 0;
    for (int64_t r = 0; r < ref->rows; r++)
        for (int64_t c = 0; c < ref->cols; c++) {
            double a = ref_load(&got, r, c), b = ref_load(ref, r, c);
            if (isnan(a) || isnan(b)) num = INFINITY;
            num += (a - b) * (a - b);
            den += b * b;
        }
    free(got.data);
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static double bound(void) { return be->act_dtype == DTYPE_F32 ? 2e-5 : 1e-2; }

// The largest relative error (as rel_err) of any 64 consecutive values in a row of dev against ref,
// so that one wrong output of a large matmul is not averaged away among thousands; INFINITY on NaN.
static double worst_row_err(const rill_tensor *dev, const rill_tensor *ref) {
    rill_tensor got = *ref;
    got.data = malloc(tensor_bytes(ref));
    be->ops->download(st, got.data, dev->data, tensor_bytes(ref));
    be->ops->sync(st);
    double worst = 0;
    for (int64_t r = 0; r < ref->rows; r++)
        for (int64_t c0 = 0; c0 < ref->cols; c0 += 64) {
            double num = 0, den = 0;
            for (int64_t c = c0; c < c0 + 64 && c < ref->cols; c++) {
                double a = ref_load(&got, r, c), b = ref_load(ref, r, c);
                num += isnan(a) || isnan(b) ? INFINITY : (a - b) * (a - b);
                den += b * b;
            }
            double e = sqrt(num / (den > 0 ? den : 1e-30));
            if (isnan(e) || e > worst) worst = isnan(e) ? INFINITY : e;
        }
    free(got.data);
    return worst;
}

// An affine weight in host memory: packed random words, scales and biases of dtype dt.
static rill_weight host_affine(int64_t rows, int64_t cols, int bits, int group, rill_dtype dt) {
    rill_weight w = {WEIGHT_AFFINE, rows, cols, dt, NULL, bits, group, NULL, NULL, NULL, NULL};
    size_t words = (size_t)(rows * cols * bits / 32), groups = (size_t)(rows * cols / group);
    uint32_t *pk = malloc(words * 4);
    for (size_t i = 0; i < words; i++)
        pk[i] = (uint32_t)test_rand_u64();
    rill_tensor s = rill_tensor_2d(dt, 1, (int64_t)groups, malloc(groups * dtype_size(dt)));
    rill_tensor b = rill_tensor_2d(dt, 1, (int64_t)groups, malloc(groups * dtype_size(dt)));
    float top = (float)((1 << bits) - 1);
    for (size_t i = 0; i < groups; i++) {
        ref_store(&s, 0, (int64_t)i, test_rand_uniform(0.01f, 0.2f) / top);
        ref_store(&b, 0, (int64_t)i, test_rand_uniform(-0.1f, 0.0f));
    }
    w.packed = pk;
    w.scales = s.data;
    w.biases = b.data;
    return w;
}

static void host_affine_free(rill_weight *w) {
    free((void *)w->packed);
    free((void *)w->scales);
    free((void *)w->biases);
    free((void *)w->bias);
}

static void test_open_without_device_names_the_reason(void **state) {
    if (be) skip(); // a device is present: nothing to check here
    rill_backend *b = NULL;
    assert_int_not_equal(cuda_backend_open(0, &b), RILL_OK);
    assert_null(b);
    assert_non_null(strstr(rill_last_error(), "cuda: no CUDA device: "));
}

static void test_weights_from_host_are_uploaded_once_and_released(void **state) {
    need_gpu();
    // n_out 0: 1032 rows of 4096 (the 4-bit GEMV's column split); 2056 x 4096: 2 rows per warp, the
    // last rows past a whole block, all 4 of a lane's words in flight; 2056 x 14336 (down's rows: 14
    // words a lane, a ring of 4); 6150 x 2048, 6400 x 1600 (a lane's second word only for 18 of the
    // 32 lanes), 16391 x 1024 and 16391 x 576 (fewer words than lanes): the resident-grid GEMV of
    // 6144 rows or more, its last row group short. The same paths with 8-bit blocks (two words each,
    // half as many in flight). Each row is held to the bound on its own.
    static const struct {
        int bits, group;
        rill_dtype dt;
        int n_tok, n_out, n_in;
    } cases[] = {
        {4, 64, DTYPE_BF16, 1, 0, 0},       {4, 32, DTYPE_F16, 4, 0, 0},         {8, 64, DTYPE_BF16, 2, 0, 0},
        {4, 128, DTYPE_F32, 8, 0, 0},       {4, 64, DTYPE_BF16, 40, 0, 0},       {3, 64, DTYPE_F16, 1, 0, 0},
        {4, 64, DTYPE_BF16, 1, 2056, 4096}, {4, 32, DTYPE_F16, 1, 6150, 2048},   {4, 64, DTYPE_BF16, 1, 16391, 1024},
        {4, 32, DTYPE_F16, 1, 16391, 576},  {4, 32, DTYPE_BF16, 1, 6400, 1600},  {4, 64, DTYPE_BF16, 1, 2056, 14336},
        {8, 32, DTYPE_F16, 1, 0, 0},        {8, 64, DTYPE_BF16, 1, 2056, 4096},  {8, 32, DTYPE_F16, 1, 6150, 2048},
        {8, 32, DTYPE_F16, 1, 16391, 576},  {8, 64, DTYPE_BF16, 1, 2056, 14336}, {8, 128, DTYPE_BF16, 5, 2056, 4096}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t n_out = cases[k].n_out ? cases[k].n_out : 1024 + 8, n_in = cases[k].n_in ? cases[k].n_in : 4096;
        rill_weight hw = host_affine(n_out, n_in, cases[k].bits, cases[k].group, cases[k].dt);
        hw.bias = malloc((size_t)n_out * 4);
        for (int64_t i = 0; i < n_out; i++)
            ((float *)hw.bias)[i] = test_rand_uniform(-1, 1);
        size_t before = rill_memory_current();
        rill_weight dw;
        assert_int_equal(be->ops->weight_load(be, &hw, &dw), RILL_OK);
        size_t packed_bytes = (size_t)(n_out * n_in * cases[k].bits / 8);
        assert_true(rill_memory_current() - before >= packed_bytes); // the upload block is accounted
        rill_tensor xh = host_rand(be->act_dtype, cases[k].n_tok, n_in), x = to_dev(&xh);
        rill_tensor out = dev_poisoned(be->act_dtype, cases[k].n_tok, n_out);
        rill_tensor ref = rill_tensor_2d(be->act_dtype, cases[k].n_tok, n_out, malloc(tensor_bytes(&out)));
        be->ops->matmul(st, &out, &x, &dw);
        ref_matmul(&ref, &xh, &hw);
        double e = worst_row_err(&out, &ref);
        if (!(e <= bound()))
            fail_msg("matmul %d-bit group %d, %d tokens, %lld x %lld: relative error %.3g in a row", cases[k].bits,
                     cases[k].group, cases[k].n_tok, (long long)n_out, (long long)n_in, e);
        be->ops->free(be, x.data);
        be->ops->free(be, out.data);
        size_t mid = rill_memory_current();
        be->ops->weight_free(be, &dw);
        assert_true(mid - rill_memory_current() >= packed_bytes); // and released by weight_free
        free(xh.data);
        free(ref.data);
        host_affine_free(&hw);
    }
}

// A host tensor of NaN rows past `valid` (rows a decode step must not read), and its device copy.
static rill_tensor host_rand_tail_nan(rill_dtype dt, int64_t rows, int64_t cols, int64_t valid) {
    rill_tensor t = host_rand(dt, rows, cols);
    for (int64_t r = valid; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            ref_store(&t, r, c, NAN);
    return t;
}

// Frees one attention case's device tensors (q, k, v, out) and host ones (q, k, v, reference).
static void free_attention_case(rill_tensor *q, rill_tensor *k, rill_tensor *v, rill_tensor *out, rill_tensor *qh,
                                rill_tensor *kh, rill_tensor *vh, rill_tensor *ref) {
    rill_tensor *dev[] = {q, k, v, out}, *host[] = {qh, kh, vh, ref};
    for (int i = 0; i < 4; i++) {
        be->ops->free(be, dev[i]->data);
        free(host[i]->data);
    }
}

// Decode attention (few queries): the tensor-core kernel where q, K and V share an f16/bf16 dtype and
// head dims are 64 or 128 (any cache length; GQA groups 1 to 8), the CUDA-core one over 2,048 keys
// or more for the rest (head dim 256, f32 or mixed caches), with the keys split and the splits
// merged. kvt 0: the activation dtype. dev_pos: the query's position read from the device (a
// replayed decode step) over a cache whose rows past it are NaN. Caches of 65 to 2,048 keys split
// into 2-8 blocks that merge as one cluster (attention_decode_cluster; every block pushes its
// states to the blocks that own the heads: the last two cases have ranks that own several heads and
// ranks that own none), longer ones through attention_merge.
static void test_long_cache_attention_splits_keys_and_matches(void **state) {
    need_gpu();
    static const struct {
        int n_q, n_k, window;
        float softcap;
        int heads, kv, hd; // GQA groups 1 to 8 (the CUDA-core kernel: 1, 2, 4, 8)
        rill_dtype kvt;
        int dev_pos; // > 0: the query position on the device; the cache holds n_k rows
    } cases[] = {{1, 5000, 0, 0, 32, 8, 128, 0, 0},         {1, 5000, 1000, 0, 32, 8, 128, 0, 0},
                 {3, 4099, 0, 30.0f, 32, 8, 128, 0, 0},     {2, 20000, 0, 0, 32, 8, 128, 0, 0},
                 {1, 3000, 0, 0, 8, 8, 64, 0, 0},           {4, 2500, 700, 0, 6, 3, 256, 0, 0},
                 {1, 9000, 0, 50.0f, 16, 2, 64, 0, 0},      {1, 16400, 0, 0, 32, 8, 128, DTYPE_F16, 0},
                 {2, 6001, 0, 0, 16, 4, 128, DTYPE_F16, 0}, {1, 4000, 0, 0, 32, 8, 128, DTYPE_F32, 0},
                 {1, 6000, 0, 0, 32, 8, 128, 0, 4500},      {1, 17000, 0, 0, 16, 2, 64, 0, 2051},
                 {1, 3000, 0, 0, 32, 4, 128, 0, 2999},      {1, 2100, 0, 0, 9, 3, 64, 0, 0},
                 {2, 2500, 300, 0, 12, 2, 128, 0, 0},       {1, 300, 0, 0, 9, 3, 64, 0, 0},
                 {1, 1000, 0, 0, 32, 8, 128, 0, 0},         {2, 800, 200, 0, 12, 2, 128, 0, 0},
                 {1, 2000, 0, 0, 9, 3, 64, 0, 700},         {1, 130, 0, 30.0f, 8, 1, 64, 0, 0},
                 {1, 100, 0, 0, 16, 2, 64, 0, 0},           {2, 250, 0, 0, 10, 2, 128, 0, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int heads = cases[k].heads, kv = cases[k].kv, hd = cases[k].hd, n_k = cases[k].n_k;
        int dev_pos = cases[k].dev_pos, valid = dev_pos > 0 ? dev_pos + 1 : n_k; // rows the query may see
        rill_dtype kvt = cases[k].kvt ? cases[k].kvt : be->act_dtype;
        rill_tensor qh = host_rand(be->act_dtype, cases[k].n_q, heads * hd), q = to_dev(&qh);
        rill_tensor kh = host_rand_tail_nan(kvt, n_k, kv * hd, valid), kd = to_dev(&kh);
        rill_tensor vh = host_rand_tail_nan(kvt, n_k, kv * hd, valid), vd = to_dev(&vh);
        rill_tensor out = dev_poisoned(be->act_dtype, cases[k].n_q, heads * hd);
        rill_tensor ref = rill_tensor_2d(be->act_dtype, cases[k].n_q, heads * hd, malloc(tensor_bytes(&out)));
        rill_attn_params p = {
            heads, kv, hd, hd, 1.0f / sqrtf((float)hd), cases[k].softcap, {valid - cases[k].n_q, 0, cases[k].window}};
        int32_t *pos = NULL;
        if (dev_pos > 0) { // the device position; the host's q_pos0 says something else
            int32_t hp = dev_pos;
            pos = be->ops->alloc(be, sizeof hp);
            be->ops->upload(st, pos, &hp, sizeof hp);
            p.mask.q_pos_dev = pos;
            p.mask.q_pos0 = 7;
        }
        be->ops->attention(st, &out, &q, &kd, &vd, &p);
        rill_tensor kr = kh, vr = vh; // the reference sees the valid rows only
        kr.rows = vr.rows = valid;
        p.mask.q_pos_dev = NULL;
        p.mask.q_pos0 = valid - cases[k].n_q;
        ref_attention(&ref, &qh, &kr, &vr, &p);
        double e = rel_err(&out, &ref);
        if (!(e <= bound()))
            fail_msg("attention case %zu (n_k %d window %d): relative error %.3g", k, n_k, cases[k].window, e);
        assert_int_equal(st->status, RILL_OK);
        if (pos) be->ops->free(be, pos);
        free_attention_case(&q, &kd, &vd, &out, &qh, &kh, &vh, &ref);
    }
}

// Prefill attention (more than 8 queries): the flash kernel of cuda_attention_prefill.cu where q, K,
// V share an f16/bf16 dtype and head dims are 64 or 128 (cuda_attention_gemm.cu otherwise, or with
// RILL_CUDA_PREFILL_ATTN=gemm): query counts off the 64-query block, chunks after a prefix, GQA
// groups 1 to 4 and MQA, windows, softcap, keys that start past the first queries (their rows are
// zero), and cache rows past the last query's position that are NaN (never read).
static void test_prefill_attention_matches(void **state) {
    need_gpu();
    static const struct {
        int n_q, n_k, heads, kv, hd, window, nan_tail; // nan_tail: cache rows past the last query's key
        int64_t q_pos0, k_pos0;
        float softcap;
    } cases[] = {{300, 500, 8, 2, 128, 0, 0, 200, 0, 0},  {130, 130, 6, 3, 64, 77, 0, 0, 0, 0},
                 {70, 90, 4, 4, 128, 0, 0, 20, 0, 30.0f}, {65, 40, 4, 1, 64, 0, 0, 0, 25, 0},
                 {1000, 1000, 4, 1, 128, 0, 0, 0, 0, 0},  {200, 333, 8, 2, 128, 50, 64, 69, 0, 0},
                 {9, 9, 2, 1, 64, 0, 0, 0, 0, 0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int heads = cases[k].heads, kv = cases[k].kv, hd = cases[k].hd, n_k = cases[k].n_k;
        int valid = n_k - cases[k].nan_tail;
        rill_tensor qh = host_rand(be->act_dtype, cases[k].n_q, heads * hd), q = to_dev(&qh);
        rill_tensor kh = host_rand_tail_nan(be->act_dtype, n_k, kv * hd, valid), kd = to_dev(&kh);
        rill_tensor vh = host_rand_tail_nan(be->act_dtype, n_k, kv * hd, valid), vd = to_dev(&vh);
        rill_tensor out = dev_poisoned(be->act_dtype, cases[k].n_q, heads * hd);
        rill_tensor ref = rill_tensor_2d(be->act_dtype, cases[k].n_q, heads * hd, malloc(tensor_bytes(&out)));
        rill_attn_params p = {heads,
                              kv,
                              hd,
                              hd,
                              1.0f / sqrtf((float)hd),
                              cases[k].softcap,
                              {cases[k].q_pos0, cases[k].k_pos0, cases[k].window}};
        be->ops->attention(st, &out, &q, &kd, &vd, &p);
        rill_tensor kr = kh, vr = vh; // the reference sees the valid rows only
        kr.rows = vr.rows = valid;
        ref_attention(&ref, &qh, &kr, &vr, &p);
        double e = rel_err(&out, &ref);
        if (!(e <= bound()))
            fail_msg("prefill attention case %zu (%d queries, %d keys, hd %d): relative error %.3g", k, cases[k].n_q,
                     n_k, hd, e);
        assert_int_equal(st->status, RILL_OK);
        free_attention_case(&q, &kd, &vd, &out, &qh, &kh, &vh, &ref);
    }
}

// RoPE over many tokens (prefill: one sincos serves 8 heads of a thread) and few (decode: a thread
// per head and pair), head counts on and off the group of 8 (Llama's q + k: 40), both layouts.
static void test_rope_prefill_and_decode_match(void **state) {
    need_gpu();
    static const struct {
        int n_tok, heads, hd, rot;
        rill_rope_layout layout;
    } cases[] = {{100, 40, 128, 128, ROPE_NEOX},
                 {300, 12, 64, 64, ROPE_INTERLEAVED},
                 {65, 5, 128, 64, ROPE_NEOX},
                 {8, 40, 128, 128, ROPE_NEOX},
                 {3, 9, 64, 32, ROPE_INTERLEAVED}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int n = cases[k].n_tok, half = cases[k].rot / 2;
        rill_tensor xh = host_rand(be->act_dtype, n, cases[k].heads * cases[k].hd), x = to_dev(&xh);
        rill_tensor ph = rill_tensor_2d(DTYPE_I32, n, 1, malloc((size_t)n * 4));
        for (int i = 0; i < n; i++)
            ((int32_t *)ph.data)[i] = (int32_t)(test_rand_u64() % 40000);
        rill_tensor pd = to_dev(&ph);
        float *inv = malloc((size_t)half * 4);
        for (int i = 0; i < half; i++)
            inv[i] = (float)pow(500000.0, -2.0 * i / cases[k].rot);
        float *inv_d = be->ops->alloc(be, (size_t)half * 4);
        be->ops->upload(st, inv_d, inv, (size_t)half * 4);
        rill_rope_params p = {cases[k].heads, cases[k].hd, cases[k].rot, cases[k].layout, inv_d, 1.0f};
        be->ops->rope(st, &x, &pd, &p);
        p.inv_freq = inv;
        ref_rope(&xh, &ph, &p);
        double e = rel_err(&x, &xh);
        if (!(e <= bound()))
            fail_msg("rope case %zu (%d tokens, %d heads): relative error %.3g", k, n, cases[k].heads, e);
        assert_int_equal(st->status, RILL_OK);
        be->ops->free(be, x.data);
        be->ops->free(be, pd.data);
        be->ops->free(be, inv_d);
        free(xh.data);
        free(ph.data);
        free(inv);
    }
}

// copy_at writes keys and values (column views of one stacked q/k/v row block, as a decode step
// has them) into the rows of two caches that a device counter names, in one launch or, when the
// pair's dtypes differ, in two; every other row keeps its values.
static void test_copy_at_writes_both_caches_at_the_device_row(void **state) {
    need_gpu();
    for (int mixed = 0; mixed < 2; mixed++) {
        int64_t cap = 11, n = 2, kd = 24, vd = 40;
        rill_dtype vdt = mixed ? DTYPE_F32 : be->act_dtype;
        rill_tensor qkvh = host_rand(be->act_dtype, n, 16 + kd + vd), qkv = to_dev(&qkvh);
        rill_tensor kch = host_rand(be->act_dtype, cap, kd), kc = to_dev(&kch);
        rill_tensor vch = host_rand(vdt, cap, vd), vc = to_dev(&vch);
        int32_t row = 7, *rowd = be->ops->alloc(be, 4);
        be->ops->upload(st, rowd, &row, 4);
        rill_tensor k = rill_tensor_cols(&qkv, 16, kd), v = rill_tensor_cols(&qkv, 16 + kd, vd);
        be->ops->copy_at(st, &kc, &k, &vc, &v, rowd);
        rill_tensor hk = rill_tensor_cols(&qkvh, 16, kd), hv = rill_tensor_cols(&qkvh, 16 + kd, vd);
        for (int64_t r = 0; r < n; r++)
            for (int64_t c = 0; c < kd + vd; c++) {
                if (c < kd)
                    ref_store(&kch, row + r, c, ref_load(&hk, r, c));
                else
                    ref_store(&vch, row + r, c - kd, ref_load(&hv, r, c - kd));
            }
        assert_true(rel_err(&kc, &kch) == 0.0);
        assert_true(rel_err(&vc, &vch) == 0.0);
        assert_int_equal(st->status, RILL_OK);
        be->ops->free(be, qkv.data);
        be->ops->free(be, kc.data);
        be->ops->free(be, vc.data);
        be->ops->free(be, rowd);
        free(qkvh.data);
        free(kch.data);
        free(vch.data);
    }
}

static bool same_bytes(const rill_tensor *a, const rill_tensor *b) {
    size_t n = tensor_bytes(a);
    char *x = malloc(n), *y = malloc(n);
    be->ops->download(st, x, a->data, n);
    be->ops->download(st, y, b->data, n);
    be->ops->sync(st);
    bool same = memcmp(x, y, n) == 0;
    free(x);
    free(y);
    return same;
}

// One decode query's attention over a cache of 1/sqrt(hd)-scaled heads, at device position row
// (pos: its value).
static rill_attn_params decode_params(int n_heads, int n_kv, int hd, int pos, const int32_t *row) {
    return (rill_attn_params){n_heads, n_kv, hd, hd, 1.0f / sqrtf((float)hd), 0.0f, {pos, 0, 0, row}, NULL};
}

// attention_append (a captured step's KV write and attention in one launch) gives exactly what
// copy_at then attention give: the output and both caches, whose row at the device position holds
// the new key and value; GQA groups 3, 4 and 8, head dims 64 and 128, one key split and several.
static void test_attention_append_equals_copy_then_attention(void **state) {
    need_gpu();
    static const struct {
        int group, n_kv, hd, cap, row;
    } cases[] = {{4, 2, 128, 300, 257}, {3, 3, 64, 2000, 1500}, {8, 1, 128, 700, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int kvd = cases[c].n_kv * cases[c].hd, nh = cases[c].group * cases[c].n_kv;
        rill_dtype dt = be->act_dtype;
        rill_tensor kh = host_rand(dt, cases[c].cap, kvd), vh = host_rand(dt, cases[c].cap, kvd);
        rill_tensor qh = host_rand(dt, 1, nh * cases[c].hd), knh = host_rand(dt, 1, kvd), vnh = host_rand(dt, 1, kvd);
        rill_tensor k1 = to_dev(&kh), v1 = to_dev(&vh), k2 = to_dev(&kh), v2 = to_dev(&vh);
        rill_tensor q = to_dev(&qh), kn = to_dev(&knh), vn = to_dev(&vnh);
        rill_tensor o1 = dev_poisoned(dt, 1, nh * cases[c].hd), o2 = dev_poisoned(dt, 1, nh * cases[c].hd);
        int32_t *row = be->ops->alloc(be, 4);
        be->ops->upload(st, row, &cases[c].row, 4);
        rill_attn_params p = decode_params(nh, cases[c].n_kv, cases[c].hd, cases[c].row, row);
        be->ops->attention_append(st, &o1, &q, &kn, &vn, &k1, &v1, row, &p);
        be->ops->copy_at(st, &k2, &kn, &v2, &vn, row);
        be->ops->attention(st, &o2, &q, &k2, &v2, &p);
        be->ops->sync(st);
        assert_int_equal(st->status, RILL_OK);
        if (!same_bytes(&o1, &o2) || !same_bytes(&k1, &k2) || !same_bytes(&v1, &v2))
            fail_msg("attention_append case %zu: output or cache differs from copy_at + attention", c);
        rill_tensor oh = rill_tensor_2d(dt, 1, o1.cols, malloc(tensor_bytes(&o1)));
        be->ops->download(st, oh.data, o1.data, tensor_bytes(&o1));
        be->ops->sync(st);
        for (int64_t i = 0; i < oh.cols; i++) // (the poison is gone)
            assert_false(isnan(ref_load(&oh, 0, i)));
        free(oh.data);
        void *bufs[] = {k1.data, v1.data, k2.data, v2.data, q.data, kn.data, vn.data, o1.data, o2.data, row};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            be->ops->free(be, bufs[i]);
        free(kh.data);
        free(vh.data);
        free(qh.data);
        free(knh.data);
        free(vnh.data);
    }
}

// The decode attention whose key splits merge leaves its output quantized for the 4-bit GEMV after
// it (p.out_w) into qx_ready: the planes, scales and sums are the bytes quant_x_kernel makes of the
// output, and o's matmul takes them (no launch of its own) for the same result to the bit. 128-dim
// heads in groups of 4 (o 2048 columns) and 64-dim in groups of 3 (576: SmolLM2's) merging in a
// cluster, and a cache too long for one, whose splits merge in attention_merge_kernel; each o large
// enough that the 4-bit GEMV, not the f32 one, runs.
static void test_attention_quantizes_its_output_for_the_gemv(void **state) {
    need_gpu();
    if (be->act_dtype == DTYPE_F32) skip(); // (the tensor-core decode kernel is 16-bit only)
    static const struct {
        int group, n_kv, hd, cap, row, n_out;
    } cases[] = {{4, 4, 128, 300, 257, 1024}, {3, 3, 64, 1000, 600, 2048}, {4, 2, 128, 3000, 2500, 2048}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int kvd = cases[c].n_kv * cases[c].hd, nh = cases[c].group * cases[c].n_kv, cols = nh * cases[c].hd;
        rill_dtype dt = be->act_dtype;
        rill_tensor kh = host_rand(dt, cases[c].cap, kvd), vh = host_rand(dt, cases[c].cap, kvd);
        rill_tensor qh = host_rand(dt, 1, cols), knh = host_rand(dt, 1, kvd), vnh = host_rand(dt, 1, kvd);
        rill_tensor k = to_dev(&kh), v = to_dev(&vh), q = to_dev(&qh), kn = to_dev(&knh), vn = to_dev(&vnh);
        rill_tensor o = dev_poisoned(dt, 1, cols);
        rill_tensor y1 = dev_poisoned(dt, 1, cases[c].n_out), y2 = dev_poisoned(dt, 1, cases[c].n_out);
        int32_t *row = be->ops->alloc(be, 4);
        be->ops->upload(st, row, &cases[c].row, 4);
        rill_weight hw = host_affine(cases[c].n_out, cols, 4, 64, DTYPE_BF16), w;
        assert_int_equal(be->ops->weight_load(be, &hw, &w), RILL_OK);
        rill_attn_params p = decode_params(nh, cases[c].n_kv, cases[c].hd, cases[c].row, row);
        be->ops->attention_append(st, &o, &q, &kn, &vn, &k, &v, row, &p); // (no out_w: no planes)
        assert_null(st->qx_ready.x);
        p.out_w = &w;
        // the planes against quant_x_kernel's of the stored output
        int64_t n_blk = cols / 32;
        char *mine = be->ops->alloc(be, (size_t)n_blk * 76);
        cuda_qx ref = {(int8_t *)mine, (float *)(mine + n_blk * 64), (float *)(mine + n_blk * 68), NULL, n_blk};
        be->ops->attention_append(st, &o, &q, &kn, &vn, &k, &v, row, &p);
        if (st->qx_ready.x != o.data || st->qx_ready.cols != cols)
            fail_msg("case %zu: the attention left no quantized output", c);
        cuda_qx got = st->qx_ready.q;
        cuda_quantize_x(st, &ref, &o);
        assert_null(st->qx_ready.x); // (any launch drops them: it may write o)
        be->ops->sync(st);
        assert_int_equal(st->status, RILL_OK);
        size_t n = (size_t)n_blk * 72; // codes, scales, sums (contiguous in both)
        char *a = malloc(n), *b = malloc(n);
        be->ops->download(st, a, got.codes, n);
        be->ops->download(st, b, ref.codes, n);
        be->ops->sync(st);
        if (memcmp(a, b, n)) fail_msg("case %zu: the attention's planes differ from quant_x_kernel's", c);
        free(a);
        free(b);
        // o's GEMV takes them: the same output as from its own quantization
        be->ops->attention_append(st, &o, &q, &kn, &vn, &k, &v, row, &p);
        be->ops->matmul(st, &y1, &o, &w);
        assert_null(st->qx_ready.x); // (taken)
        be->ops->matmul(st, &y2, &o, &w);
        be->ops->sync(st);
        assert_int_equal(st->status, RILL_OK);
        if (!same_bytes(&y1, &y2)) fail_msg("case %zu: o from the attention's planes differs from its own", c);
        void *bufs[] = {k.data, v.data, q.data, kn.data, vn.data, o.data, y1.data, y2.data, row, mine};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            be->ops->free(be, bufs[i]);
        be->ops->weight_free(be, &w);
        host_affine_free(&hw);
        free(kh.data);
        free(vh.data);
        free(qh.data);
        free(knh.data);
        free(vnh.data);
    }
}

// A GGUF Q4_0 or Q8_0 weight (act_quant set, every bias -2^(bits-1) x its group's scale) goes to the
// device without its biases, and every matmul path derives them: the same output to the bit as the
// same weight uploaded with them (act_quant none), for one token (the block and stream GEMVs, 4- and
// 8-bit) and for 64 (dequantized tiles); a weight whose biases are not so keeps them.
static void test_zero_point_biases_are_derived_not_uploaded(void **state) {
    need_gpu();
    static const struct {
        int64_t rows, cols;
        int bits;
    } cases[] = {{1024, 2048, 4}, {6144, 1024, 4}, {1024, 2048, 8}, {6144, 1024, 8}};
    rill_dtype dt = be->act_dtype;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rill_weight h = host_affine(cases[c].rows, cases[c].cols, cases[c].bits, 32, DTYPE_F16), d1, d2;
        int64_t groups = cases[c].rows * cases[c].cols / 32;
        rill_tensor sc = rill_tensor_2d(DTYPE_F16, 1, groups, (void *)h.scales);
        rill_tensor bi = rill_tensor_2d(DTYPE_F16, 1, groups, (void *)h.biases);
        for (int64_t g = 0; g < groups; g++)
            ref_store(&bi, 0, g, -(float)(1 << (cases[c].bits - 1)) * ref_load(&sc, 0, g));
        rill_weight hq = h;
        hq.act_quant = ACT_QUANT_Q8_0;
        assert_int_equal(be->ops->weight_load(be, &hq, &d1), RILL_OK);
        assert_int_equal(be->ops->weight_load(be, &h, &d2), RILL_OK);
        assert_null(d1.biases);
        assert_non_null(d2.biases);
        for (int n = 1; n <= 64; n += 63) {
            rill_tensor xh = host_rand(dt, n, cases[c].cols), x = to_dev(&xh);
            rill_tensor y1 = dev_poisoned(dt, n, cases[c].rows), y2 = dev_poisoned(dt, n, cases[c].rows);
            be->ops->matmul(st, &y1, &x, &d1);
            be->ops->matmul(st, &y2, &x, &d2);
            be->ops->sync(st);
            assert_int_equal(st->status, RILL_OK);
            if (!same_bytes(&y1, &y2)) fail_msg("case %zu, %d tokens: derived biases give another output", c, n);
            void *bufs[] = {x.data, y1.data, y2.data};
            for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
                be->ops->free(be, bufs[i]);
            free(xh.data);
        }
        be->ops->weight_free(be, &d1);
        be->ops->weight_free(be, &d2);
        host_affine_free(&h);
    }
    rill_weight h = host_affine(256, 512, 4, 32, DTYPE_F16), d; // (random biases: a Q4_1 block's kind)
    h.act_quant = ACT_QUANT_Q8_1;
    assert_int_equal(be->ops->weight_load(be, &h, &d), RILL_OK);
    assert_non_null(d.biases);
    be->ops->weight_free(be, &d);
    host_affine_free(&h);
}

// A decode-loop step's end (sample with publish): the token lands in dev token[0] and in the mapped
// host ring at slot step & 1, the step counter advances by one, and the other slot is left alone;
// greedy (the cluster kernel) and sampled (the one-block kernel, top-k 1: the argmax too), at an
// even and an odd step; and a draw over all ids the same with publish as without.
static void test_sample_publishes_the_token(void **state) {
    need_gpu();
    int vocab = 50257;
    for (int c = 0; c < 4; c++) {
        rill_tensor h = host_rand(be->act_dtype, 1, vocab);
        int best = 1000 + 9973 * c;
        ref_store(&h, 0, best, 9.0f);
        rill_tensor logits = to_dev(&h);
        int32_t *state_d = be->ops->alloc(be, 8), *ring = be->ops->host_alloc(be, 8);
        int32_t init[2] = {41 + c, -5}; // [0] the step counter, [1] the token
        be->ops->upload(st, state_d, init, sizeof init);
        ring[0] = ring[1] = -7;
        rill_tensor token = rill_tensor_2d(DTYPE_I32, 1, 1, state_d + 1);
        float temp = c < 2 ? 0.0f : 0.7f;
        be->ops->sample(st, &token, &logits, temp, temp > 0 ? 1 : 0, 3, state_d, ring);
        int32_t got[2] = {0, 0};
        be->ops->download(st, got, state_d, sizeof got);
        be->ops->sync(st);
        assert_int_equal(st->status, RILL_OK);
        int slot = init[0] & 1;
        if (got[1] != best || ring[slot] != best || ring[1 - slot] != -7 || got[0] != init[0] + 1)
            fail_msg("sample case %d: token %d, ring {%d, %d} (slot %d), step %d: expected token %d, step %d", c,
                     got[1], ring[0], ring[1], slot, got[0], best, init[0] + 1);
        be->ops->free(be, logits.data);
        be->ops->free(be, state_d);
        be->ops->host_free(be, ring);
        free(h.data);
    }
    // a draw over flat logits (every id in play): the same with publish as without, so the draw
    // read the step before the op advanced it
    rill_tensor h = host_rand(be->act_dtype, 1, vocab);
    rill_tensor logits = to_dev(&h);
    int32_t *state_d = be->ops->alloc(be, 16), *ring = be->ops->host_alloc(be, 8);
    int32_t init[4] = {77, -5, 77, -5}, got[4];
    be->ops->upload(st, state_d, init, sizeof init);
    rill_tensor t1 = rill_tensor_2d(DTYPE_I32, 1, 1, state_d + 1), t2 = rill_tensor_2d(DTYPE_I32, 1, 1, state_d + 3);
    be->ops->sample(st, &t1, &logits, 1.0f, 0, 5, state_d, ring);
    be->ops->sample(st, &t2, &logits, 1.0f, 0, 5, state_d + 2, NULL);
    be->ops->download(st, got, state_d, sizeof got);
    be->ops->sync(st);
    assert_int_equal(st->status, RILL_OK);
    if (got[1] != got[3] || ring[77 & 1] != got[1] || got[0] != 78 || got[2] != 77)
        fail_msg("sampled draw: %d with publish (ring %d, step %d), %d without (step %d)", got[1], ring[77 & 1], got[0],
                 got[3], got[2]);
    be->ops->free(be, logits.data);
    be->ops->free(be, state_d);
    be->ops->host_free(be, ring);
    free(h.data);
}

// Greedy sampling is the argmax of the logits, ties to the lowest id, read 8 at a time from an aligned
// row and one at a time otherwise: the best value placed in the tail past the last whole word, in the
// middle, and twice (the lower id wins), over a vocabulary that is not a multiple of 8.
static void test_greedy_sample_is_the_first_argmax(void **state) {
    need_gpu();
    int vocab = 128261;
    for (int shift = 0; shift < 2; shift++) // 0: 16-byte aligned row; 1: one element on (the scalar pass)
        for (int c = 0; c < 3; c++) {
            rill_tensor h = host_rand(be->act_dtype, 1, vocab + 1);
            int at[3][2] = {{vocab - 3, -1}, {70001, -1}, {90000, 5003}}, want = c == 2 ? 5003 : at[c][0];
            for (int k = 0; k < 2; k++)
                if (at[c][k] >= 0) ref_store(&h, 0, shift + at[c][k], 9.0f);
            rill_tensor d = to_dev(&h), logits = rill_tensor_cols(&d, shift, vocab);
            int32_t *tok = be->ops->alloc(be, 4), got = -1;
            rill_tensor token = rill_tensor_2d(DTYPE_I32, 1, 1, tok);
            be->ops->sample(st, &token, &logits, 0.0f, 0, 1, NULL, NULL);
            be->ops->download(st, &got, tok, 4);
            be->ops->sync(st);
            assert_int_equal(st->status, RILL_OK);
            if (got != want) fail_msg("greedy sample, shift %d case %d: token %d, expected %d", shift, c, got, want);
            be->ops->free(be, d.data);
            be->ops->free(be, tok);
            free(h.data);
        }
}

static void test_bad_shapes_name_the_op_and_stick_to_the_stream(void **state) {
    need_gpu();
    rill_weight hw = host_affine(64, 256, 4, 64, DTYPE_BF16), dw;
    assert_int_equal(be->ops->weight_load(be, &hw, &dw), RILL_OK);
    rill_tensor x = dev_poisoned(be->act_dtype, 1, 128), out = dev_poisoned(be->act_dtype, 1, 64);
    rill_clear_error();
    be->ops->matmul(st, &out, &x, &dw); // x has 128 columns, W 256
    assert_int_equal(st->status, RILL_EINVAL);
    assert_non_null(strstr(rill_last_error(), "cuda matmul"));
    rill_weight bad = hw;
    bad.bits = 7;
    rill_weight dummy;
    assert_int_equal(be->ops->weight_load(be, &bad, &dummy), RILL_EUNSUPPORTED);
    be->ops->free(be, x.data);
    be->ops->free(be, out.data);
    be->ops->weight_free(be, &dw);
    host_affine_free(&hw);
}

// ---- bench mode: not a test; prints one line per measurement ----

// `test_cuda bench` times everything; `test_cuda bench attention` (or gemv, gemm) only the lines
// whose name holds that word, to compare variants (RILL_CUDA_* switches) in one device call.
static const char *bench_only;

static bool bench_wanted(const char *what) { return !bench_only || strstr(what, bench_only); }

static float time_ms(void (*fn)(void *), void *arg, int reps) {
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (int i = 0; i < 3; i++)
        fn(arg);
    cudaEventRecord(a, st->cs);
    for (int i = 0; i < reps; i++)
        fn(arg);
    cudaEventRecord(b, st->cs);
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return ms / (float)reps;
}

enum { ROT = 6 }; // weight copies rotated through, so that L2 (50 MB) does not hold them

typedef struct {
    rill_weight w[ROT];
    rill_tensor x, out;
    int next;
    const rill_tensor *k, *v;
    rill_attn_params ap;
} bench_case;

static void run_matmul(void *arg) {
    bench_case *c = arg;
    be->ops->matmul(st, &c->out, &c->x, &c->w[c->next++ % ROT]);
}

static void run_attention(void *arg) {
    bench_case *c = arg;
    be->ops->attention(st, &c->out, &c->x, c->k, c->v, &c->ap);
}

static void bench_matmul(const char *what, int64_t n_out, int64_t n_in, int bits, int n_tok, double copy_tbs) {
    if (!bench_wanted(what)) return;
    bench_case c = {0};
    rill_weight hw = bits ? host_affine(n_out, n_in, bits, 64, DTYPE_BF16) : (rill_weight){0};
    if (!bits) { // dense bf16 weights
        rill_tensor d = host_rand(DTYPE_BF16, n_out, n_in);
        hw = (rill_weight){WEIGHT_DENSE, n_out, n_in, DTYPE_BF16, d.data, 0, 0, NULL, NULL, NULL, NULL};
    }
    for (int i = 0; i < ROT; i++)
        if (be->ops->weight_load(be, &hw, &c.w[i]) != RILL_OK) {
            printf("bench %s: %s\n", what, rill_last_error());
            return;
        }
    rill_tensor xh = host_rand(be->act_dtype, n_tok, n_in);
    c.x = to_dev(&xh);
    c.out = dev_poisoned(be->act_dtype, n_tok, n_out);
    int reps = n_tok > CUDA_GEMV_MAX_TOK ? 20 : 300;
    float ms = time_ms(run_matmul, &c, reps);
    double wbytes = bits ? (double)n_out * (double)n_in * bits / 8 + 2.0 * (double)n_out * (double)(n_in / 64) * 2
                         : (double)n_out * (double)n_in * 2;
    double bytes = wbytes + (double)n_tok * (double)(n_in + n_out) * dtype_size(be->act_dtype);
    double tbs = bytes / (ms * 1e-3) / 1e12, tflops = 2.0 * (double)n_tok * n_out * n_in / (ms * 1e-3) / 1e12;
    printf("bench %-34s %6lld x %-6lld tok %5d: %9.2f us  %6.3f TB/s (%5.1f%% of copy %.2f)  %7.1f TFLOP/s  [%s]\n",
           what, (long long)n_out, (long long)n_in, n_tok, ms * 1e3, tbs, 100 * tbs / copy_tbs, copy_tbs, tflops,
           st->status == RILL_OK ? "ok" : rill_last_error());
    for (int i = 0; i < ROT; i++)
        be->ops->weight_free(be, &c.w[i]);
    be->ops->free(be, c.x.data);
    be->ops->free(be, c.out.data);
    free(xh.data);
    if (bits)
        host_affine_free(&hw);
    else
        free((void *)hw.data);
}

static void bench_attention(int n_k, double copy_tbs) {
    if (!bench_wanted("attention decode")) return;
    bench_case c = {0};
    int heads = 32, kv = 8, hd = 128;
    rill_tensor qh = host_rand(be->act_dtype, 1, heads * hd), kh = host_rand(be->act_dtype, n_k, kv * hd);
    c.x = to_dev(&qh);
    rill_tensor k = to_dev(&kh), v = to_dev(&kh);
    c.k = &k;
    c.v = &v;
    c.out = dev_poisoned(be->act_dtype, 1, heads * hd);
    c.ap = (rill_attn_params){heads, kv, hd, hd, 0.088f, 0, {n_k - 1, 0, 0}};
    float ms = time_ms(run_attention, &c, 200);
    double bytes = 2.0 * n_k * kv * hd * dtype_size(be->act_dtype);
    double tbs = bytes / (ms * 1e-3) / 1e12;
    printf("bench %-34s ctx %6d (32/8 heads, d 128): %9.2f us  %6.3f TB/s (%5.1f%% of copy)  [%s]\n",
           "attention decode (one layer)", n_k, ms * 1e3, tbs, 100 * tbs / copy_tbs,
           st->status == RILL_OK ? "ok" : rill_last_error());
    rill_tensor none = {0}; // (k and v share one host tensor; no reference)
    free_attention_case(&c.x, &k, &v, &c.out, &qh, &kh, &none, &none);
}

// One Llama-3-8B layer of prefill attention: n causal queries over themselves (32/8 heads, d 128).
// TFLOP/s counts the causal half of S = QK^T and O = PV (4 n^2 d flops per head, halved).
static void bench_prefill_attention(int n) {
    if (!bench_wanted("attention prefill")) return;
    bench_case c = {0};
    int heads = 32, kv = 8, hd = 128;
    rill_tensor qh = host_rand(be->act_dtype, n, heads * hd), kh = host_rand(be->act_dtype, n, kv * hd);
    c.x = to_dev(&qh);
    rill_tensor k = to_dev(&kh), v = to_dev(&kh);
    c.k = &k;
    c.v = &v;
    c.out = dev_poisoned(be->act_dtype, n, heads * hd);
    c.ap = (rill_attn_params){heads, kv, hd, hd, 0.088f, 0, {0, 0, 0}};
    float ms = time_ms(run_attention, &c, 20);
    double tflops = 2.0 * (double)n * n * hd * heads / (ms * 1e-3) / 1e12;
    printf("bench %-34s n %6d (32/8 heads, d 128): %9.2f us  %7.1f TFLOP/s  [%s]\n", "attention prefill (one layer)", n,
           ms * 1e3, tflops, st->status == RILL_OK ? "ok" : rill_last_error());
    rill_tensor none = {0}; // (k and v share one host tensor; no reference)
    free_attention_case(&c.x, &k, &v, &c.out, &qh, &kh, &none, &none);
}

// Device-to-device copy bandwidth, counting bytes read and written (the KINDS.md convention).
static double copy_tbs(void) {
    size_t n = (size_t)1 << 30;
    void *a = be->ops->alloc(be, n), *b = be->ops->alloc(be, n);
    cudaMemsetAsync(a, 1, n, st->cs);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st->cs);
    cudaEventRecord(e0, st->cs);
    for (int i = 0; i < 10; i++)
        cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, st->cs);
    cudaEventRecord(e1, st->cs);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    be->ops->free(be, a);
    be->ops->free(be, b);
    return 2.0 * (double)n * 10 / (ms * 1e-3) / 1e12;
}

static int bench(void) {
    if (setup(NULL) != 0 || !be) {
        printf("bench: %s\n", rill_last_error());
        return 1;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("bench device: %s, %d SMs, activations %s\n", prop.name, prop.multiProcessorCount,
           dtype_name(be->act_dtype));
    double bw = copy_tbs();
    printf("bench device-to-device copy: %.3f TB/s (read + write)\n", bw);
    // Llama-3-8B's layer shapes: q/o 4096x4096, k/v 1024x4096, gate/up 14336x4096, down 4096x14336
    bench_matmul("gemv 4-bit g64 (gate/up)", 14336, 4096, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (down)", 4096, 14336, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (q/o)", 4096, 4096, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (k/v)", 1024, 4096, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (stacked qkv)", 6144, 4096, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (stacked gate_up)", 28672, 4096, 4, 1, bw);
    // SmolLM2-135M: stacked q/k/v 960x576, o 576x576, stacked gate/up 3072x576, down 576x1536
    bench_matmul("gemv 4-bit g64 (smollm2 qkv)", 960, 576, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (smollm2 o)", 576, 576, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (smollm2 gate_up)", 3072, 576, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (smollm2 down)", 576, 1536, 4, 1, bw);
    bench_matmul("gemv 4-bit g64 (gate/up) 4 tokens", 14336, 4096, 4, 4, bw);
    bench_matmul("gemv 4-bit g64 (gate/up) 8 tokens", 14336, 4096, 4, 8, bw);
    bench_matmul("gemv 8-bit g64 (gate/up)", 14336, 4096, 8, 1, bw);
    bench_matmul("gemv dense bf16 (gate/up)", 14336, 4096, 0, 1, bw);
    bench_matmul("gemm 4-bit g64 prefill (gate/up)", 14336, 4096, 4, 2048, bw);
    bench_matmul("gemm dense bf16 prefill (gate/up)", 14336, 4096, 0, 2048, bw);
    bench_prefill_attention(2048);
    bench_prefill_attention(8192);
    bench_attention(1024, bw);
    bench_attention(4096, bw);
    bench_attention(16384, bw);
    bench_attention(32768, bw);
    teardown(NULL);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "bench")) {
        bench_only = argc > 2 ? argv[2] : NULL;
        return bench();
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_without_device_names_the_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weights_from_host_are_uploaded_once_and_released, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_cache_attention_splits_keys_and_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefill_attention_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rope_prefill_and_decode_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_at_writes_both_caches_at_the_device_row, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_append_equals_copy_then_attention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_quantizes_its_output_for_the_gemv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_point_biases_are_derived_not_uploaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_greedy_sample_is_the_first_argmax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_publishes_the_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_shapes_name_the_op_and_stick_to_the_stream, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
static void test_cuda_not_built(void **state) { skip(); }

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cuda_not_built)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
