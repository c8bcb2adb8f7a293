// test_gguf_quant.c: GGUF block decoding and the exact affine repack. Decoding of all 13 types is
// checked bit for bit against gguf-py (fixture: tests/ref/make_gguf_quant_fixture.py); the repack
// of Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K against the decoder, on fresh random blocks and on the
// real SmolLM2 Q4_1 file when it is present.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/half.h"
#include "io/gguf.h"
#include "quant/affine.h"
#include "quant/gguf_dequant.h"
#include "quant/gguf_repack.h"
#include "testlib.h"

// The byte offsets of each block type's f16 fields (d, dmin, m): random blocks get finite values there.
typedef struct {
    gguf_dtype type;
    int f16_fields[2]; // byte offsets; -1 when unused
} block_layout;

static const block_layout layouts[] = {
    {GGUF_DTYPE_Q4_0, {0, -1}}, {GGUF_DTYPE_Q4_1, {0, 2}},    {GGUF_DTYPE_Q5_0, {0, -1}},   {GGUF_DTYPE_Q5_1, {0, 2}},
    {GGUF_DTYPE_Q8_0, {0, -1}}, {GGUF_DTYPE_Q2_K, {80, 82}},  {GGUF_DTYPE_Q3_K, {108, -1}}, {GGUF_DTYPE_Q4_K, {0, 2}},
    {GGUF_DTYPE_Q5_K, {0, 2}},  {GGUF_DTYPE_Q6_K, {208, -1}},
};

static const block_layout *layout_of(gguf_dtype type) {
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++)
        if (layouts[i].type == type) return &layouts[i];
    return NULL;
}

static const gguf_dtype repack_types[] = {GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1, GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_1,
                                          GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q6_K};

// A random finite f16: any finite value, a subnormal (or zero), or a typical weight scale; either sign.
static uint16_t random_finite_f16(void) {
    uint64_t r = test_rand_u64();
    uint16_t sign = (uint16_t)((r >> 40) & 1) << 15, bits;
    switch (r % 3) {
    case 0: bits = (uint16_t)((r >> 8) % 0x7C00); break;
    case 1: bits = (uint16_t)((r >> 8) % 0x0400); break;
    default: bits = f32_to_f16(test_rand_uniform(1e-4f, 0.1f)); break;
    }
    return sign | bits;
}

// Fills n_blocks blocks of `type` with random bytes and random finite f16 scales.
static void random_blocks(gguf_dtype type, uint8_t *dst, uint64_t n_blocks) {
    const gguf_dtype_traits *tr = gguf_dtype_info(type);
    const block_layout *lay = layout_of(type);
    for (uint64_t i = 0; i < n_blocks * tr->block_bytes; i++)
        dst[i] = (uint8_t)test_rand_u64();
    for (uint64_t b = 0; b < n_blocks; b++)
        for (int f = 0; f < 2; f++) {
            if (lay->f16_fields[f] < 0) continue;
            uint16_t h = random_finite_f16();
            uint8_t *p = dst + b * tr->block_bytes + lay->f16_fields[f];
            p[0] = (uint8_t)h;
            p[1] = (uint8_t)(h >> 8);
        }
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

// ---- decoding vs gguf-py ----

static void test_decode_equals_gguf_py_bit_for_bit_for_all_13_types(void **state) {
    static const gguf_dtype types[] = {
        GGUF_DTYPE_F32,  GGUF_DTYPE_F16,  GGUF_DTYPE_BF16, GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1,
        GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_1, GGUF_DTYPE_Q8_0, GGUF_DTYPE_Q2_K, GGUF_DTYPE_Q3_K,
        GGUF_DTYPE_Q4_K, GGUF_DTYPE_Q5_K, GGUF_DTYPE_Q6_K,
    };
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const char *name = gguf_dtype_info(types[t])->name;
        char rel[64];
        size_t n_raw = 0, n_want = 0;
        snprintf(rel, sizeof rel, "gguf_quant/%s.bin", name);
        uint8_t *raw = read_all(test_data_path(rel), &n_raw);
        snprintf(rel, sizeof rel, "gguf_quant/%s.f32", name);
        uint8_t *want = read_all(test_data_path(rel), &n_want);
        assert_non_null(raw);
        assert_non_null(want);
        assert_true(n_want > 0 && n_want % 4 == 0);
        uint64_t n = n_want / 4;
        float *got = malloc(n_want);
        test_poison_f32(got, n);
        rill_status st = gguf_dequantize(types[t], raw, n_raw, got, n);
        if (st != RILL_OK) fail_msg("%s: %s", name, rill_last_error());
        for (uint64_t i = 0; i < n; i++)
            if (memcmp(got + i, want + 4 * i, 4) != 0) {
                float w;
                memcpy(&w, want + 4 * i, 4);
                fail_msg("%s element %llu: rill %.9g (0x%08x), gguf-py %.9g (0x%08x)", name, (unsigned long long)i,
                         got[i], f32_bits(got[i]), w, f32_bits(w));
            }
        free(raw);
        free(want);
        free(got);
    }
}

static void test_decode_rejects_bad_sizes_and_names_unsupported_types(void **state) {
    uint8_t raw[2 * 144] = {0};
    float out[512];
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_IQ2_XXS, raw, 66, out, 256), RILL_EUNSUPPORTED);
    assert_non_null(strstr(rill_last_error(), "IQ2_XXS"));
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_Q8_K, raw, 292, out, 256), RILL_EUNSUPPORTED);
    assert_non_null(strstr(rill_last_error(), "Q8_K"));
    assert_int_equal(gguf_dequantize((gguf_dtype)77, raw, 4, out, 1), RILL_EUNSUPPORTED);
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_Q4_K, raw, 144, out, 200), RILL_EINVAL); // not whole blocks
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_Q4_K, raw, 143, out, 256), RILL_EINVAL); // short data
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_Q4_K, raw, 288, out, 256), RILL_EINVAL); // extra data
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_Q4_K, raw, 288, out, 512), RILL_OK);
    assert_int_equal(gguf_dequantize(GGUF_DTYPE_F16, raw, 6, out, 3), RILL_OK);
}

// ---- the affine repack ----

// Equal bits, or both zeros: a signed zero is the one thing affine cannot always reproduce.
static bool same_value(float a, float b) { return f32_bits(a) == f32_bits(b) || (a == 0.0f && b == 0.0f); }

// Checks that affine dequantization of the repack of src [rows][cols] equals gguf_dequantize,
// row by row. Returns the number of zeros whose sign differs (0 for the types without zero point).
static uint64_t check_repack(gguf_dtype type, const uint8_t *src, uint64_t rows, uint64_t cols, const char *what) {
    const gguf_dtype_traits *tr = gguf_dtype_info(type);
    size_t row_bytes = (size_t)(cols / tr->block_size * tr->block_bytes);
    affine_tensor a;
    rill_status st = gguf_repack_affine(type, src, row_bytes * rows, rows, cols, &a);
    if (st != RILL_OK) fail_msg("%s: %s", what, rill_last_error());
    assert_int_equal(a.scale_dtype, DTYPE_F32);
    float *want = malloc(cols * sizeof(float)), *got = malloc(cols * sizeof(float));
    uint64_t zero_signs = 0;
    for (uint64_t r = 0; r < rows; r++) {
        test_poison_f32(want, cols);
        test_poison_f32(got, cols);
        assert_int_equal(gguf_dequantize(type, src + r * row_bytes, row_bytes, want, cols), RILL_OK);
        affine_dequantize_row(&a, r, got);
        for (uint64_t c = 0; c < cols; c++) {
            if (!same_value(got[c], want[c]))
                fail_msg("%s %s [%llu][%llu]: affine %.9g (0x%08x), gguf %.9g (0x%08x)", what, tr->name,
                         (unsigned long long)r, (unsigned long long)c, got[c], f32_bits(got[c]), want[c],
                         f32_bits(want[c]));
            zero_signs += f32_bits(got[c]) != f32_bits(want[c]);
        }
    }
    free(want);
    free(got);
    affine_free(&a);
    return zero_signs;
}

static bool has_zero_point(gguf_dtype type) {
    return type == GGUF_DTYPE_Q4_0 || type == GGUF_DTYPE_Q5_0 || type == GGUF_DTYPE_Q8_0 || type == GGUF_DTYPE_Q6_K;
}

static void test_repack_reproduces_decode_on_random_blocks(void **state) {
    for (size_t t = 0; t < sizeof repack_types / sizeof repack_types[0]; t++) {
        gguf_dtype type = repack_types[t];
        const gguf_dtype_traits *tr = gguf_dtype_info(type);
        assert_true(gguf_repack_supported(type));
        for (int trial = 0; trial < 20; trial++) {
            uint64_t rows = 1 + test_rand_u64() % 4, blocks_per_row = 1 + test_rand_u64() % 3;
            if (tr->block_size == 32) blocks_per_row *= 3; // 96, 192 or 288 columns: words span rows' groups
            uint64_t cols = blocks_per_row * tr->block_size;
            uint8_t *src = malloc(rows * blocks_per_row * tr->block_bytes);
            random_blocks(type, src, rows * blocks_per_row);
            uint64_t zero_signs = check_repack(type, src, rows, cols, "random");
            // Types that decode as fl(fl(s*q)+b) are exact to the last bit, signed zeros included.
            if (!has_zero_point(type)) assert_int_equal(zero_signs, 0);
            free(src);
        }
    }
}

// The simple block types' factors narrow to f16 exactly (each f16 factor equals the f32 one, codes
// untouched); a factor that is not an f16 value (here one set by hand; in a file, -128 d past f16's
// range) leaves the tensor as it was.
static void test_repack_factors_narrow_to_f16_exactly(void **state) {
    (void)state;
    static const gguf_dtype simple[] = {GGUF_DTYPE_Q4_0, GGUF_DTYPE_Q4_1, GGUF_DTYPE_Q5_0, GGUF_DTYPE_Q5_1,
                                        GGUF_DTYPE_Q8_0};
    for (size_t t = 0; t < sizeof simple / sizeof simple[0]; t++) {
        const gguf_dtype_traits *tr = gguf_dtype_info(simple[t]);
        uint64_t rows = 3, cols = 6 * tr->block_size;
        uint8_t *src = malloc(rows * 6 * tr->block_bytes);
        random_blocks(simple[t], src, rows * 6);
        const block_layout *lay = layout_of(simple[t]); // factors of a real model's size (|d| < 1: -128 d fits f16)
        for (uint64_t k = 0; k < rows * 6; k++)
            for (int f = 0; f < 2; f++)
                if (lay->f16_fields[f] >= 0) {
                    uint16_t h = f32_to_f16(test_rand_uniform(-1.0f, 1.0f));
                    memcpy(src + k * tr->block_bytes + lay->f16_fields[f], &h, 2);
                }
        affine_tensor a, b;
        assert_int_equal(gguf_repack_affine(simple[t], src, rows * 6 * tr->block_bytes, rows, cols, &a), RILL_OK);
        assert_int_equal(gguf_repack_affine(simple[t], src, rows * 6 * tr->block_bytes, rows, cols, &b), RILL_OK);
        bool narrowed = false;
        assert_int_equal(affine_narrow_to_f16(&b, &narrowed), RILL_OK);
        assert_true(narrowed);
        assert_int_equal(b.scale_dtype, DTYPE_F16);
        for (size_t i = 0; i < rows * cols / (size_t)a.group_size; i++) {
            assert_true(f32_bits(f16_to_f32(((uint16_t *)b.scales)[i])) == f32_bits(((float *)a.scales)[i]));
            assert_true(f32_bits(f16_to_f32(((uint16_t *)b.biases)[i])) == f32_bits(((float *)a.biases)[i]));
        }
        assert_memory_equal(a.packed, b.packed, rows * affine_words_per_row(&a) * sizeof(uint32_t));
        affine_free(&b);
        ((float *)a.scales)[4] = 1.0f + 1.0f / 4096; // 13 significant bits: not an f16
        assert_int_equal(affine_narrow_to_f16(&a, &narrowed), RILL_OK);
        assert_false(narrowed);
        assert_int_equal(a.scale_dtype, DTYPE_F32);
        affine_free(&a);
        free(src);
    }
}

static void test_repack_chooses_bits_and_groups_per_type(void **state) {
    static const struct {
        gguf_dtype type;
        int bits, group;
    } want[] = {{GGUF_DTYPE_Q4_0, 4, 32}, {GGUF_DTYPE_Q4_1, 4, 32}, {GGUF_DTYPE_Q5_0, 5, 32}, {GGUF_DTYPE_Q5_1, 5, 32},
                {GGUF_DTYPE_Q8_0, 8, 32}, {GGUF_DTYPE_Q4_K, 4, 32}, {GGUF_DTYPE_Q5_K, 5, 32}, {GGUF_DTYPE_Q6_K, 6, 16}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const gguf_dtype_traits *tr = gguf_dtype_info(want[i].type);
        uint8_t *src = malloc(2 * tr->block_bytes);
        random_blocks(want[i].type, src, 2);
        affine_tensor a;
        assert_int_equal(gguf_repack_affine(want[i].type, src, 2 * tr->block_bytes, 2, tr->block_size, &a), RILL_OK);
        assert_int_equal(a.bits, want[i].bits);
        assert_int_equal(a.group_size, want[i].group);
        assert_int_equal(a.rows, 2);
        assert_int_equal(a.cols, tr->block_size);
        affine_free(&a);
        free(src);
    }
}

static void test_repack_rejects_other_types_bad_shapes_and_infinite_scales(void **state) {
    uint8_t raw[4 * 34];
    random_blocks(GGUF_DTYPE_Q8_0, raw, 4);
    affine_tensor a;
    assert_false(gguf_repack_supported(GGUF_DTYPE_Q3_K));
    assert_int_equal(gguf_repack_affine(GGUF_DTYPE_Q3_K, raw, 110, 1, 256, &a), RILL_EUNSUPPORTED);
    assert_non_null(strstr(rill_last_error(), "Q3_K"));
    assert_int_equal(gguf_repack_affine(GGUF_DTYPE_Q8_0, raw, 4 * 34, 1, 100, &a), RILL_EINVAL); // not whole blocks
    assert_int_equal(gguf_repack_affine(GGUF_DTYPE_Q8_0, raw, 4 * 34, 3, 32, &a), RILL_EINVAL);  // size mismatch
    raw[2 * 34] = 0x00;
    raw[2 * 34 + 1] = 0x7C; // block 2's d = +inf
    assert_int_equal(gguf_repack_affine(GGUF_DTYPE_Q8_0, raw, 4 * 34, 2, 64, &a), RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "row 1"));
}

static void test_repack_reproduces_decode_on_smollm2(void **state) {
    const char *path = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!path) {
        print_message("SmolLM2-135M-Instruct.Q4_1.gguf not found under $RILL_MODELS: skipped\n");
        skip();
    }
    gguf_file *f;
    if (gguf_open(path, &f) != RILL_OK) fail_msg("%s", rill_last_error());
    int n_checked = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (!gguf_repack_supported(t->type)) continue;
        uint64_t zero_signs = check_repack(t->type, t->data, t->n_elements / t->ne[0], t->ne[0], t->name);
        // gguf's quantizers write positive scales, so even the zero-point types match to the bit here.
        assert_int_equal(zero_signs, 0);
        n_checked++;
    }
    assert_int_equal(n_checked, 211); // 210 Q4_1 tensors and the Q8_0 token embedding
    gguf_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_equals_gguf_py_bit_for_bit_for_all_13_types),
        cmocka_unit_test(test_decode_rejects_bad_sizes_and_names_unsupported_types),
        cmocka_unit_test(test_repack_reproduces_decode_on_random_blocks),
        cmocka_unit_test(test_repack_chooses_bits_and_groups_per_type),
        cmocka_unit_test(test_repack_factors_narrow_to_f16_exactly),
        cmocka_unit_test(test_repack_rejects_other_types_bad_shapes_and_infinite_scales),
        cmocka_unit_test(test_repack_reproduces_decode_on_smollm2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
