// affine.c: MLX-layout affine quantization: parameter checks, allocation, the quantizer and the
// dequantizer (bit-exact with mx.dequantize). Packing lives in affine_pack.c.
// Float arithmetic must not be contracted into FMAs (ISO C mode, -std=c11, is GCC's
// -ffp-contract=off; each product is its own statement for compilers that contract within one).
#include "quant/affine.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/half.h"

#define AFFINE_EPS     1e-7f // smallest scale of a min/max candidate, as in MLX
#define MAX_GROUP      128
#define MAX_CANDIDATES 8 // 1 min/max + 5 edge scales + 2 clipped ranges

// ---- parameters and storage ----

static bool bits_ok(int bits) { return bits >= 2 && bits <= 8 && bits != 7; }
static bool group_ok(int g) { return g == 16 || g == 32 || g == 64 || g == 128; }
static bool dtype_ok(rill_dtype t) { return t == DTYPE_F16 || t == DTYPE_BF16 || t == DTYPE_F32; }

static unsigned gcd_u(unsigned a, unsigned b) { return b ? gcd_u(b, a % b) : a; }

rill_status affine_check_params(uint64_t rows, uint64_t cols, int bits, int group_size, rill_dtype scale_dtype) {
    if (!bits_ok(bits)) return rill_fail(RILL_EINVAL, "affine: bits %d not supported (2, 3, 4, 5, 6 or 8)", bits);
    if (!group_ok(group_size))
        return rill_fail(RILL_EINVAL, "affine: group size %d not supported (16, 32, 64 or 128)", group_size);
    if (!dtype_ok(scale_dtype))
        return rill_fail(RILL_EINVAL, "affine: scale dtype %s not supported (F16, BF16 or F32)",
                         dtype_name(scale_dtype));
    if (cols == 0 || cols % (uint64_t)group_size)
        return rill_fail(RILL_EINVAL, "affine: cols %llu is not a positive multiple of the group size %d",
                         (unsigned long long)cols, group_size);
    unsigned per_word = 32 / gcd_u((unsigned)bits, 32);
    if (cols % per_word)
        return rill_fail(RILL_EINVAL,
                         "affine: cols %llu at %d bits does not fill whole 32-bit words (needs a multiple of %u)",
                         (unsigned long long)cols, bits, per_word);
    uint64_t words = cols / 32 * (uint64_t)bits + cols % 32 * (uint64_t)bits / 32;
    if (rows && (words > SIZE_MAX / 4 / rows || cols > SIZE_MAX / rows))
        return rill_fail(RILL_EINVAL, "affine: shape [%llu][%llu] is too large", (unsigned long long)rows,
                         (unsigned long long)cols);
    return RILL_OK;
}

static void set_params(affine_tensor *t, uint64_t rows, uint64_t cols, int bits, int group_size, rill_dtype dt) {
    memset(t, 0, sizeof *t);
    t->bits = bits;
    t->group_size = group_size;
    t->scale_dtype = dt;
    t->rows = rows;
    t->cols = cols;
}

size_t affine_words_per_row(const affine_tensor *t) { return (size_t)(t->cols * (uint64_t)t->bits / 32); }
size_t affine_groups_per_row(const affine_tensor *t) { return (size_t)(t->cols / (uint64_t)t->group_size); }

rill_status affine_alloc(affine_tensor *t, uint64_t rows, uint64_t cols, int bits, int group_size,
                         rill_dtype scale_dtype) {
    memset(t, 0, sizeof *t);
    rill_status st = affine_check_params(rows, cols, bits, group_size, scale_dtype);
    if (st != RILL_OK) return st;
    set_params(t, rows, cols, bits, group_size, scale_dtype);
    // each array one element longer than it needs (affine_alloc_bytes counts the same)
    size_t n_groups = (size_t)rows * affine_groups_per_row(t);
    t->packed = rill_malloc(((size_t)rows * affine_words_per_row(t) + 1) * sizeof(uint32_t));
    t->scales = rill_malloc((n_groups + 1) * dtype_size(scale_dtype));
    t->biases = rill_malloc((n_groups + 1) * dtype_size(scale_dtype));
    t->owned = true;
    if (!t->packed || !t->scales || !t->biases) {
        affine_free(t);
        return rill_fail(RILL_ENOMEM, "affine: cannot allocate [%llu][%llu] at %d bits", (unsigned long long)rows,
                         (unsigned long long)cols, bits);
    }
    return RILL_OK;
}

size_t affine_alloc_bytes(uint64_t rows, uint64_t cols, int bits, int group_size, rill_dtype scale_dtype) {
    size_t words = (size_t)rows * (size_t)(cols * (uint64_t)bits / 32);
    size_t n_groups = (size_t)rows * (size_t)(cols / (uint64_t)group_size);
    return (words + 1) * sizeof(uint32_t) + 2 * (n_groups + 1) * dtype_size(scale_dtype);
}

rill_status affine_wrap(affine_tensor *t, uint64_t rows, uint64_t cols, int bits, int group_size,
                        rill_dtype scale_dtype, const uint32_t *packed, const void *scales, const void *biases) {
    memset(t, 0, sizeof *t);
    rill_status st = affine_check_params(rows, cols, bits, group_size, scale_dtype);
    if (st != RILL_OK) return st;
    set_params(t, rows, cols, bits, group_size, scale_dtype);
    // The view never writes through these; the struct is shared with owned tensors.
    t->packed = (uint32_t *)packed;
    t->scales = (void *)scales;
    t->biases = (void *)biases;
    return RILL_OK;
}

void affine_free(affine_tensor *t) {
    if (t->owned) {
        rill_free(t->packed);
        rill_free(t->scales);
        rill_free(t->biases);
    }
    memset(t, 0, sizeof *t);
}

rill_status affine_narrow_to_f16(affine_tensor *t, bool *narrowed) {
    *narrowed = false;
    if (!t->owned || t->scale_dtype != DTYPE_F32) return RILL_OK;
    size_t n = (size_t)t->rows * affine_groups_per_row(t);
    const float *arrays[2] = {t->scales, t->biases};
    for (int a = 0; a < 2; a++)
        for (size_t i = 0; i < n; i++)
            if (f32_bits(f16_to_f32(f32_to_f16(arrays[a][i]))) != f32_bits(arrays[a][i])) return RILL_OK;
    uint16_t *h[2] = {rill_malloc((n + 1) * sizeof(uint16_t)), rill_malloc((n + 1) * sizeof(uint16_t))};
    if (!h[0] || !h[1]) {
        rill_free(h[0]);
        rill_free(h[1]);
        return rill_fail(RILL_ENOMEM, "affine: cannot allocate f16 factors for [%llu][%llu]",
                         (unsigned long long)t->rows, (unsigned long long)t->cols);
    }
    for (int a = 0; a < 2; a++) {
        for (size_t i = 0; i < n; i++)
            h[a][i] = f32_to_f16(arrays[a][i]);
        h[a][n] = 0;
    }
    rill_free(t->scales);
    rill_free(t->biases);
    t->scales = h[0];
    t->biases = h[1];
    t->scale_dtype = DTYPE_F16;
    *narrowed = true;
    return RILL_OK;
}

// ---- values of the scale dtype ----

float affine_factor_at(rill_dtype dt, const void *a, size_t i) {
    if (dt == DTYPE_F32) return ((const float *)a)[i];
    uint16_t h = ((const uint16_t *)a)[i];
    return dt == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h);
}

static uint16_t to_16(rill_dtype dt, float x) { return dt == DTYPE_F16 ? f32_to_f16(x) : f32_to_bf16(x); }
static float from_16(rill_dtype dt, uint16_t h) { return dt == DTYPE_F16 ? f16_to_f32(h) : bf16_to_f32(h); }

static void store_scalar(rill_dtype dt, void *a, size_t i, float x) {
    if (dt == DTYPE_F32)
        ((float *)a)[i] = x;
    else
        ((uint16_t *)a)[i] = to_16(dt, x);
}

// x rounded to the nearest value of dt (ties to even).
static float round_to(rill_dtype dt, float x) { return dt == DTYPE_F32 ? x : from_16(dt, to_16(dt, x)); }

// The smallest value of dt that is >= x (x itself for f32).
static float round_up(rill_dtype dt, float x) {
    if (dt == DTYPE_F32) return x;
    uint16_t h = to_16(dt, x);
    if (!(from_16(dt, h) < x)) return from_16(dt, h);
    // one step up: larger magnitude when positive, smaller when negative (sign-magnitude format)
    return from_16(dt, (uint16_t)(h & 0x8000 ? h - 1 : h + 1));
}

static float round_down(rill_dtype dt, float x) { return -round_up(dt, -x); }

float affine_level(rill_dtype scale_dtype, float scale, float bias, unsigned q) {
    float prod = (float)q * scale;
    prod = round_to(scale_dtype, prod);
    float sum = prod + bias;
    return round_to(scale_dtype, sum);
}

void affine_group_params(const affine_tensor *t, uint64_t row, uint64_t group, float *scale, float *bias) {
    size_t i = (size_t)(row * affine_groups_per_row(t) + group);
    *scale = affine_factor_at(t->scale_dtype, t->scales, i);
    *bias = affine_factor_at(t->scale_dtype, t->biases, i);
}

// ---- dequantization ----

void affine_dequantize_row(const affine_tensor *t, uint64_t row, float *out) {
    const uint32_t *words = t->packed + row * affine_words_per_row(t);
    size_t g_size = (size_t)t->group_size;
    uint8_t q[MAX_GROUP];
    for (size_t g = 0; g < affine_groups_per_row(t); g++) {
        float s, b;
        affine_group_params(t, row, g, &s, &b);
        affine_unpack_at(words, g * g_size, g_size, t->bits, q);
        for (size_t i = 0; i < g_size; i++)
            out[g * g_size + i] = affine_level(t->scale_dtype, s, b, q[i]);
    }
}

void affine_dequantize(const affine_tensor *t, float *out) {
    for (uint64_t r = 0; r < t->rows; r++)
        affine_dequantize_row(t, r, out + r * t->cols);
}

// ---- quantization ----

typedef struct {
    float scale[MAX_CANDIDATES], bias[MAX_CANDIDATES]; // values of the scale dtype
    int n;
} candidates;

static void add_candidate(candidates *c, rill_dtype dt, float scale, float bias) {
    scale = round_to(dt, scale);
    bias = round_to(dt, bias);
    if (c->n < MAX_CANDIDATES && isfinite(scale) && isfinite(bias)) {
        c->scale[c->n] = scale;
        c->bias[c->n] = bias;
        c->n++;
    }
}

// Every element lies within [bias, bias + n_levels * scale]: error at most scale / 2 (plus
// rounding), never clipped. The bias rounds down and the scale up so that the range still covers.
static void add_min_max(candidates *c, rill_dtype dt, float lo, float hi, int n_levels) {
    float bias = round_down(dt, lo);
    float scale = round_up(dt, fmaxf((hi - bias) / (float)n_levels, AFFINE_EPS));
    add_candidate(c, dt, scale, bias);
}

// MLX's choice and its neighbours: the edge of larger magnitude is level 0 exactly, and the scale
// is edge / k for an integer k near edge / ((hi - lo) / n_levels), so that 0 is level -k. The
// far edge may clip by up to a few steps; this wins on bell-shaped groups at low bits.
static void add_edge_scales(candidates *c, rill_dtype dt, float lo, float hi, int n_levels) {
    bool low_edge = fabsf(lo) > fabsf(hi);
    float edge = round_to(dt, low_edge ? lo : hi);
    float step = fmaxf((hi - lo) / (float)n_levels, AFFINE_EPS);
    float k0 = rintf(edge / (low_edge ? step : -step));
    if (k0 == 0) return;
    for (int dk = -2; dk <= 2; dk++) {
        float k = k0 + (k0 > 0 ? (float)dk : (float)-dk);
        if (k * k0 > 0) add_candidate(c, dt, edge / k, edge);
    }
}

// Centered ranges 10% and 20% narrower than min/max: both tails clip a little.
static void add_clipped(candidates *c, rill_dtype dt, float lo, float hi, int n_levels) {
    if (!(hi > lo)) return;
    for (int i = 1; i <= 2; i++) {
        float scale = (1.0f - 0.1f * (float)i) * (hi - lo) / (float)n_levels;
        add_candidate(c, dt, scale, lo + 0.5f * ((hi - lo) - (float)n_levels * scale));
    }
}

// The index of the level of (bias, 1 / inv) nearest to x, clamped to [0, top]; NaN gives 0.
static inline float nearest_level(float x, float bias, float inv, float top) {
    float k = rintf((x - bias) * inv); // inv is inf when the scale is 0: all levels are `bias`
    k = k > 0 ? k : 0.0f;              // comparisons, not fminf: they vectorize
    return k < top ? k : top;
}

// The squared error of w [n] (n a multiple of 16) at its nearest levels; 16 partial sums so that
// the loop vectorizes.
static float fit_error(const float *w, size_t n, float scale, float bias, int n_levels) {
    float inv = 1.0f / scale, top = (float)n_levels, acc[16] = {0}, sum = 0;
    for (size_t i = 0; i < n; i += 16)
        for (size_t j = 0; j < 16; j++) {
            float k = nearest_level(w[i + j], bias, inv, top);
            float prod = k * scale;
            float err = w[i + j] - (bias + prod);
            acc[j] += err * err;
        }
    for (size_t j = 0; j < 16; j++)
        sum += acc[j];
    return sum;
}

static void fit_levels(const float *w, size_t n, float scale, float bias, int n_levels, uint8_t *q) {
    float inv = 1.0f / scale;
    for (size_t i = 0; i < n; i++)
        q[i] = (uint8_t)nearest_level(w[i], bias, inv, (float)n_levels);
}

static rill_status quantize_group(const float *w, affine_tensor *t, uint64_t row, size_t g, uint8_t *q_out) {
    size_t n = (size_t)t->group_size;
    int n_levels = (1 << t->bits) - 1;
    rill_dtype dt = t->scale_dtype;
    float lo = w[0], hi = w[0];
    for (size_t i = 1; i < n; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    candidates c = {.n = 0};
    bool finite = true;
    for (size_t i = 0; i < n; i++)
        finite = finite && isfinite(w[i]);
    if (finite) add_min_max(&c, dt, lo, hi, n_levels);
    if (c.n == 0)
        return rill_fail(RILL_ERANGE, "affine: row %llu, group %zu: values in [%g, %g] do not fit %s scales",
                         (unsigned long long)row, g, (double)lo, (double)hi, dtype_name(dt));
    add_edge_scales(&c, dt, lo, hi, n_levels);
    add_clipped(&c, dt, lo, hi, n_levels);

    int best = 0;
    float best_sse = fit_error(w, n, c.scale[0], c.bias[0], n_levels);
    for (int k = 1; k < c.n; k++) {
        float sse = fit_error(w, n, c.scale[k], c.bias[k], n_levels);
        if (sse < best_sse) {
            best_sse = sse;
            best = k;
        }
    }
    fit_levels(w, n, c.scale[best], c.bias[best], n_levels, q_out);
    size_t i = (size_t)row * affine_groups_per_row(t) + g;
    store_scalar(dt, t->scales, i, c.scale[best]);
    store_scalar(dt, t->biases, i, c.bias[best]);
    return RILL_OK;
}

rill_status affine_quantize(const float *w, affine_tensor *t) {
    rill_status st = affine_check_params(t->rows, t->cols, t->bits, t->group_size, t->scale_dtype);
    if (st != RILL_OK) return st;
    uint8_t *q = rill_malloc((size_t)t->cols);
    if (!q) return rill_fail(RILL_ENOMEM, "affine: cannot allocate a row of %llu levels", (unsigned long long)t->cols);
    size_t g_size = (size_t)t->group_size;
    for (uint64_t r = 0; r < t->rows && st == RILL_OK; r++) {
        const float *w_row = w + r * t->cols;
        for (size_t g = 0; g < affine_groups_per_row(t) && st == RILL_OK; g++)
            st = quantize_group(w_row + g * g_size, t, r, g, q + g * g_size);
        if (st == RILL_OK) affine_pack(q, (size_t)t->cols, t->bits, t->packed + r * affine_words_per_row(t));
    }
    rill_free(q);
    return st;
}
