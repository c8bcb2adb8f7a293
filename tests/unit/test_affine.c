// test_affine.c: MLX affine quantization: pack/unpack round trips, dequantization bit for bit
// against mx.dequantize (the fixture from tests/ref/make_mlx_affine_fixture.py and, when python3
// can import mlx, a live run of tests/ref/mlx_quantize_live.py on fresh random inputs), a
// quantizer whose squared error is no worse than mx.quantize's, error bounds on fresh random
// matrices, and rejected parameters.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/half.h"
#include "io/safetensors.h"
#include "quant/affine.h"
#include "testlib.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const int all_bits[] = {2, 3, 4, 5, 6, 8};
static const int mlx_groups[] = {32, 64, 128};
static const int all_groups[] = {16, 32, 64, 128};
static const rill_dtype scale_dtypes[] = {DTYPE_F16, DTYPE_BF16, DTYPE_F32};

// ---- values and names ----

static const char *short_name(rill_dtype dt) { return dt == DTYPE_F16 ? "f16" : dt == DTYPE_BF16 ? "bf16" : "f32"; }

// "b4_g64_f16.<key>", as the fixture scripts name tensors (one buffer: use before the next call).
static const char *tensor_name(int bits, int group, rill_dtype dt, const char *key) {
    static char buf[64];
    snprintf(buf, sizeof buf, "b%d_g%d_%s.%s", bits, group, short_name(dt), key);
    return buf;
}

static void to_f32(rill_dtype dt, const void *data, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) {
        if (dt == DTYPE_F32)
            memcpy(&out[i], (const char *)data + 4 * i, 4);
        else {
            uint16_t h;
            memcpy(&h, (const char *)data + 2 * i, 2);
            out[i] = dt == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
    }
}

static void from_f32(rill_dtype dt, const float *x, size_t n, void *out) {
    for (size_t i = 0; i < n; i++) {
        if (dt == DTYPE_F32)
            ((float *)out)[i] = x[i];
        else
            ((uint16_t *)out)[i] = dt == DTYPE_F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
    }
}

// Unit roundoff of the scale dtype, and its smallest step near zero.
static double roundoff(rill_dtype dt) { return dt == DTYPE_F16 ? 0x1p-11 : dt == DTYPE_BF16 ? 0x1p-8 : 0x1p-24; }
static double tiny(rill_dtype dt) { return dt == DTYPE_F16 ? 0x1p-24 : 0x1p-126; }

// Allowance for the roundings of one dequantized value whose operands have magnitude `mag`.
static double slack(rill_dtype dt, double mag) { return 2 * roundoff(dt) * mag + tiny(dt); }

static double mse(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return s / (double)n;
}

// ---- (a) packing ----

// An independent reference for the layout: sets the stream's bits one at a time.
static void pack_bit_by_bit(const uint8_t *q, size_t n, int bits, uint32_t *out) {
    memset(out, 0, n * (size_t)bits / 8);
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < bits; j++)
            if ((q[i] >> j) & 1) out[(i * bits + j) / 32] |= 1u << ((i * bits + j) % 32);
}

static void test_pack_unpack_round_trips_every_bit_width(void **state) {
    enum { N = 32 * 40 }; // whole words at every width
    uint8_t q[N], back[N];
    uint32_t packed[N / 4], expect[N / 4];
    for (size_t b = 0; b < N_OF(all_bits); b++) {
        int bits = all_bits[b];
        for (size_t i = 0; i < N; i++)
            q[i] = (uint8_t)(test_rand_u64() & ((1u << bits) - 1));
        pack_bit_by_bit(q, N, bits, expect);
        memset(packed, 0xA5, sizeof packed);
        affine_pack(q, N, bits, packed);
        assert_memory_equal(packed, expect, N * (size_t)bits / 8);
        memset(back, 0xFF, sizeof back);
        affine_unpack(packed, N, bits, back);
        assert_memory_equal(back, q, N);
        for (int k = 0; k < 20; k++) { // any sub-range, at any bit offset
            size_t first = test_rand_u64() % N, len = test_rand_u64() % (N - first + 1);
            memset(back, 0xFF, sizeof back);
            affine_unpack_at(packed, first, len, bits, back);
            assert_memory_equal(back, q + first, len);
        }
    }
}

// ---- checks shared by the fixture, live and fresh-random tests ----

// Every element is dequantized to the level nearest to it (up to rounding); within the range of
// the levels the error is at most |scale| / 2; and each group's squared error is no worse than the
// min/max quantizer's bound G * (step / 2)^2, so clipping can only have helped.
static void check_levels(const float *w, const affine_tensor *t, const float *deq) {
    int n_levels = (1 << t->bits) - 1;
    size_t g_size = (size_t)t->group_size;
    rill_dtype dt = t->scale_dtype;
    float level[256];
    for (uint64_t r = 0; r < t->rows; r++) {
        for (size_t g = 0; g < affine_groups_per_row(t); g++) {
            size_t at = r * t->cols + g * g_size;
            float s, b, lo = w[at], hi = w[at];
            affine_group_params(t, r, g, &s, &b);
            float lmin = INFINITY, lmax = -INFINITY;
            for (int k = 0; k <= n_levels; k++) {
                level[k] = affine_level(dt, s, b, (unsigned)k);
                lmin = fminf(lmin, level[k]);
                lmax = fmaxf(lmax, level[k]);
            }
            double sse = 0;
            for (size_t i = 0; i < g_size; i++) {
                float x = w[at + i];
                lo = fminf(lo, x);
                hi = fmaxf(hi, x);
                double err = fabs((double)deq[at + i] - x), nearest = INFINITY;
                for (int k = 0; k <= n_levels; k++)
                    nearest = fmin(nearest, fabs((double)level[k] - x));
                double sl = slack(dt, fabs(s) * n_levels + fabs(b) + fabs(x));
                if (!(err <= nearest + sl) || (x >= lmin && x <= lmax && !(err <= fabs(s) / 2 + sl)))
                    fail_msg("%d bits, group %d, %s: [%llu][%zu]: w %a -> %a, nearest level %g away, scale %a", t->bits,
                             t->group_size, short_name(dt), (unsigned long long)r, g * g_size + i, (double)x,
                             (double)deq[at + i], nearest, (double)s);
                sse += err * err;
            }
            double mag = 2 * fmax(fabs(lo), fabs(hi));
            double step =
                (fmax((double)hi - lo, n_levels * 1e-7) + roundoff(dt) * fabs(lo)) / n_levels * (1 + 2 * roundoff(dt));
            double bound = step / 2 + slack(dt, mag + step * n_levels);
            assert_true(sse <= (double)g_size * bound * bound);
        }
    }
}

// Quantizes w [rows][cols] with rill, checks the result and returns its mean squared error.
static double quantize_and_check(const float *w, uint64_t rows, uint64_t cols, int bits, int group, rill_dtype dt) {
    affine_tensor t;
    assert_int_equal(affine_alloc(&t, rows, cols, bits, group, dt), RILL_OK);
    assert_int_equal(affine_quantize(w, &t), RILL_OK);
    float *deq = malloc(rows * cols * sizeof *deq);
    test_poison_f32(deq, rows * cols);
    affine_dequantize(&t, deq);
    check_levels(w, &t, deq);
    double e = mse(deq, w, rows * cols);
    free(deq);
    affine_free(&t);
    return e;
}

// One matrix quantized by mlx: its input and outputs, converted or copied into aligned memory.
typedef struct {
    uint64_t rows, cols;
    float *w, *deq;     // [rows][cols]
    uint32_t *packed;   // [rows][cols * bits / 32]
    void *scales;       // [rows][cols / group] of the scale dtype
    void *biases;       // same
    affine_tensor t;    // a view of packed, scales, biases
    float mse_reported; // mlx_quantize_live.py's figure
} mlx_case;

static const safetensors_tensor *need(const safetensors_file *f, int bits, int group, rill_dtype dt, const char *key,
                                      rill_dtype want, uint64_t d0, uint64_t d1) {
    const char *name = tensor_name(bits, group, dt, key);
    const safetensors_tensor *x = safetensors_find(f, name);
    if (!x) fail_msg("tensor %s is missing", name);
    if (x->dtype != want || x->n_dims != (d1 ? 2 : 1) || x->shape[0] != d0 || (d1 && x->shape[1] != d1))
        fail_msg("tensor %s: dtype %s, %d dims, shape [%llu]...", name, dtype_name(x->dtype), x->n_dims,
                 (unsigned long long)x->shape[0]);
    return x;
}

static void *copy_of(const safetensors_tensor *x) {
    void *p = malloc(x->n_bytes);
    memcpy(p, x->data, x->n_bytes);
    return p;
}

static void load_case(const safetensors_file *f, int bits, int group, rill_dtype dt, mlx_case *c) {
    const safetensors_tensor *w = safetensors_find(f, tensor_name(bits, group, dt, "w"));
    if (!w || w->n_dims != 2) fail_msg("tensor %s is missing or not a matrix", tensor_name(bits, group, dt, "w"));
    c->rows = w->shape[0];
    c->cols = w->shape[1];
    size_t n = c->rows * c->cols;
    c->w = malloc(n * sizeof(float));
    c->deq = malloc(n * sizeof(float));
    to_f32(dt, need(f, bits, group, dt, "w", dt, c->rows, c->cols)->data, n, c->w);
    to_f32(dt, need(f, bits, group, dt, "deq", dt, c->rows, c->cols)->data, n, c->deq);
    to_f32(DTYPE_F32, need(f, bits, group, dt, "mse", DTYPE_F32, 1, 0)->data, 1, &c->mse_reported);
    c->packed = copy_of(need(f, bits, group, dt, "weight", DTYPE_U32, c->rows, c->cols * bits / 32));
    c->scales = copy_of(need(f, bits, group, dt, "scales", dt, c->rows, c->cols / group));
    c->biases = copy_of(need(f, bits, group, dt, "biases", dt, c->rows, c->cols / group));
    assert_int_equal(affine_wrap(&c->t, c->rows, c->cols, bits, group, dt, c->packed, c->scales, c->biases), RILL_OK);
}

static void free_case(mlx_case *c) {
    affine_free(&c->t); // a view: frees nothing
    free(c->w);
    free(c->deq);
    free(c->packed);
    free(c->scales);
    free(c->biases);
}

// rill's dequantization of mlx's packed weight equals mx.dequantize bit for bit.
static void check_dequantize_bit_exact(const mlx_case *c) {
    size_t n = c->rows * c->cols;
    float *out = malloc(n * sizeof *out);
    test_poison_f32(out, n);
    affine_dequantize(&c->t, out);
    for (size_t i = 0; i < n; i++)
        if (f32_bits(out[i]) != f32_bits(c->deq[i]))
            fail_msg("%d bits, group %d, %s: element [%zu][%zu]: rill %a, mlx %a", c->t.bits, c->t.group_size,
                     short_name(c->t.scale_dtype), i / c->cols, i % c->cols, (double)out[i], (double)c->deq[i]);
    free(out);
}

// For every bits x group x dtype in the mlx output file at `path`: bit-exact dequantization of mlx's
// tensors, and rill's quantizer on the same input with a squared error no worse than mlx's.
static void check_against_mlx(const char *path) {
    safetensors_file *f = NULL;
    if (safetensors_open(path, &f) != RILL_OK) fail_msg("%s", rill_last_error());
    double worst = 0;
    for (size_t d = 0; d < N_OF(scale_dtypes); d++)
        for (size_t b = 0; b < N_OF(all_bits); b++)
            for (size_t g = 0; g < N_OF(mlx_groups); g++) {
                mlx_case c;
                load_case(f, all_bits[b], mlx_groups[g], scale_dtypes[d], &c);
                check_dequantize_bit_exact(&c);
                double theirs = mse(c.deq, c.w, c.rows * c.cols);
                assert_true(fabs(theirs - c.mse_reported) <= 1e-6 * theirs + 1e-30);
                double ours = quantize_and_check(c.w, c.rows, c.cols, all_bits[b], mlx_groups[g], scale_dtypes[d]);
                if (!(ours <= theirs))
                    fail_msg("%d bits, group %d, %s: rill's MSE %.6g > mlx's %.6g", all_bits[b], mlx_groups[g],
                             short_name(scale_dtypes[d]), ours, theirs);
                worst = fmax(worst, ours / theirs);
                free_case(&c);
            }
    fprintf(stderr, "%s: rill MSE / mlx MSE <= %.3f over all bits x groups x dtypes\n", path, worst);
    safetensors_close(f);
}

// ---- (b), (c) the committed fixture ----

static void test_fixture_dequantizes_bit_exact_and_quantizer_beats_mlx(void **state) {
    check_against_mlx(test_data_path("mlx_affine/fixture.safetensors"));
}

// ---- live mlx on fresh random inputs ----

static bool mlx_importable(void) { return test_run("python3 -c 'import mlx.core' >/dev/null 2>&1", NULL, 0) == 0; }

enum { LIVE_ROWS = 16, LIVE_COLS = 512, LIVE_CASES = N_OF(scale_dtypes) * N_OF(all_bits) * N_OF(mlx_groups) };

static void test_live_mlx_agrees_on_fresh_random_inputs(void **state) {
    if (!mlx_importable()) {
        fprintf(stderr, "python3 cannot import mlx: live check skipped\n");
        skip();
    }
    static const uint64_t shape[2] = {LIVE_ROWS, LIVE_COLS};
    static char names[LIVE_CASES][64];
    safetensors_entry entries[LIVE_CASES];
    void *data[LIVE_CASES];
    float w[LIVE_ROWS * LIVE_COLS];
    size_t n = 0;
    for (size_t d = 0; d < N_OF(scale_dtypes); d++)
        for (size_t b = 0; b < N_OF(all_bits); b++)
            for (size_t g = 0; g < N_OF(mlx_groups); g++, n++) {
                test_fill_normal(w, N_OF(w), 0.05f);
                for (size_t i = 0; i < LIVE_COLS; i++)
                    w[i] = fabsf(w[i]); // one row of one sign
                data[n] = malloc(N_OF(w) * dtype_size(scale_dtypes[d]));
                from_f32(scale_dtypes[d], w, N_OF(w), data[n]);
                snprintf(names[n], sizeof names[n], "%s",
                         tensor_name(all_bits[b], mlx_groups[g], scale_dtypes[d], "w"));
                entries[n] = (safetensors_entry){names[n], scale_dtypes[d], 2, shape, data[n]};
            }
    const char *in = test_tmp_path(".in.safetensors");
    char in_path[4096], out_path[4096], cmd[3 * 4096], output[4096];
    snprintf(in_path, sizeof in_path, "%s", in);
    snprintf(out_path, sizeof out_path, "%s", test_tmp_path(".out.safetensors"));
    if (safetensors_write(in_path, entries, n, NULL, NULL, 0) != RILL_OK) fail_msg("%s", rill_last_error());
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' '%s' 2>&1", test_data_path("../ref/mlx_quantize_live.py"), in_path,
             out_path);
    int rc = test_run(cmd, output, sizeof output);
    if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, output);
    check_against_mlx(out_path);
    for (size_t i = 0; i < n; i++)
        free(data[i]);
    remove(in_path);
    remove(out_path);
}

// ---- (d) fresh random matrices, every bits x group x dtype ----

// Rows of normals at two magnitudes, one shifted row (one sign), one row of constant groups.
static void fill_matrix(float *w, uint64_t rows, uint64_t cols) {
    for (uint64_t r = 0; r < rows; r++)
        test_fill_normal(w + r * cols, cols, r % 2 ? 2.0f : 0.02f);
    for (uint64_t i = 0; i < cols; i++)
        w[(rows - 2) * cols + i] = fabsf(w[(rows - 2) * cols + i]) + 1.0f;
    float c = test_rand_uniform(-1, 1);
    for (uint64_t i = 0; i < cols; i++)
        w[(rows - 1) * cols + i] = i < cols / 2 ? 0.0f : c;
}

static void test_quantize_error_is_within_half_a_step_of_the_nearest_level(void **state) {
    enum { ROWS = 6, COLS = 256 };
    static float w[ROWS * COLS];
    for (size_t d = 0; d < N_OF(scale_dtypes); d++)
        for (size_t b = 0; b < N_OF(all_bits); b++)
            for (size_t g = 0; g < N_OF(all_groups); g++) {
                fill_matrix(w, ROWS, COLS);
                quantize_and_check(w, ROWS, COLS, all_bits[b], all_groups[g], scale_dtypes[d]);
            }
}

static void test_level_is_two_roundings_in_the_scale_dtype(void **state) {
    // 0.1 * 3 = 0.30000001192 in f32; in f16 0.0999755859375 * 3 rounds to 0.2998046875, and
    // 0.2998046875 + 0.0001 (f16 0.0001000165939) = 0.299904704 rounds to 0.2998046875 again.
    float s16 = f16_to_f32(f32_to_f16(0.1f)), b16 = f16_to_f32(f32_to_f16(0.0001f));
    assert_true(affine_level(DTYPE_F16, s16, b16, 3) == 0.2998046875f);
    // f32: the product and the sum each rounded once, computed here through doubles (exact).
    for (int i = 0; i < 1000; i++) {
        float s = test_rand_uniform(-1, 1), b = test_rand_uniform(-1, 1);
        unsigned q = (unsigned)(test_rand_u64() % 256);
        float prod = (float)((double)q * s), expect = (float)((double)prod + b);
        assert_true(f32_bits(affine_level(DTYPE_F32, s, b, q)) == f32_bits(expect));
    }
}

// ---- (e) bad parameters ----

static void expect_rejected(uint64_t rows, uint64_t cols, int bits, int group, rill_dtype dt, const char *why) {
    rill_clear_error();
    assert_int_equal(affine_check_params(rows, cols, bits, group, dt), RILL_EINVAL);
    if (!strstr(rill_last_error(), why)) fail_msg("message '%s' does not say '%s'", rill_last_error(), why);
    affine_tensor t;
    assert_int_equal(affine_alloc(&t, rows, cols, bits, group, dt), RILL_EINVAL);
    assert_null(t.packed);
    assert_int_equal(affine_wrap(&t, rows, cols, bits, group, dt, NULL, NULL, NULL), RILL_EINVAL);
}

static void test_bad_params_are_rejected_with_the_reason(void **state) {
    expect_rejected(4, 256, 7, 64, DTYPE_F16, "bits 7");
    expect_rejected(4, 256, 1, 64, DTYPE_F16, "bits 1");
    expect_rejected(4, 256, 16, 64, DTYPE_F16, "bits 16");
    expect_rejected(4, 256, 4, 48, DTYPE_F16, "group size 48");
    expect_rejected(4, 512, 4, 256, DTYPE_F16, "group size 256");
    expect_rejected(4, 256, 4, 64, DTYPE_I8, "scale dtype I8");
    expect_rejected(4, 256, 4, 64, DTYPE_INVALID, "scale dtype");
    expect_rejected(4, 100, 4, 64, DTYPE_F16, "multiple of the group size 64");
    expect_rejected(4, 0, 4, 64, DTYPE_F16, "cols 0");
    expect_rejected(4, 16, 3, 16, DTYPE_F16, "whole 32-bit words");
    expect_rejected(UINT64_MAX / 2, 1024, 4, 64, DTYPE_F16, "too large");
    assert_int_equal(affine_check_params(4, 16, 2, 16, DTYPE_BF16), RILL_OK);
    assert_int_equal(affine_check_params(0, 96, 3, 32, DTYPE_F32), RILL_OK);
}

static void expect_quantize_fails(float bad, rill_dtype dt, const char *why) {
    float w[2 * 64];
    test_fill_normal(w, N_OF(w), 1.0f);
    w[64 + 10] = bad;
    affine_tensor t;
    assert_int_equal(affine_alloc(&t, 2, 64, 4, 32, dt), RILL_OK);
    rill_clear_error();
    assert_int_equal(affine_quantize(w, &t), RILL_ERANGE);
    if (!strstr(rill_last_error(), why)) fail_msg("message '%s' does not say '%s'", rill_last_error(), why);
    affine_free(&t);
}

static void test_quantize_rejects_values_the_scales_cannot_hold(void **state) {
    expect_quantize_fails(NAN, DTYPE_F32, "row 1, group 0");
    expect_quantize_fails(INFINITY, DTYPE_BF16, "row 1, group 0");
    expect_quantize_fails(1e6f, DTYPE_F16, "do not fit F16 scales");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_unpack_round_trips_every_bit_width),
        cmocka_unit_test(test_level_is_two_roundings_in_the_scale_dtype),
        cmocka_unit_test(test_fixture_dequantizes_bit_exact_and_quantizer_beats_mlx),
        cmocka_unit_test(test_quantize_error_is_within_half_a_step_of_the_nearest_level),
        cmocka_unit_test(test_bad_params_are_rejected_with_the_reason),
        cmocka_unit_test(test_quantize_rejects_values_the_scales_cannot_hold),
        cmocka_unit_test(test_live_mlx_agrees_on_fresh_random_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
