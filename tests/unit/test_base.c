// test_base.c: the base layer: error messages, the accounted allocator, arenas, file mapping,
// atomic writes, the f16/bf16 conversions and the environment switches and counts.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/arena.h"
#include "base/atomic_file.h"
#include "base/dtype.h"
#include "base/env_switch.h"
#include "base/half.h"
#include "base/mapfile.h"
#include "base/status.h"
#include "testlib.h"

static void test_fail_sets_message_and_returns_status(void **state) {
    rill_clear_error();
    rill_status st = rill_fail(RILL_EFORMAT, "%s: tensor '%s' at byte %d: %s", "a.gguf", "w", 42, "bad");
    assert_int_equal(st, RILL_EFORMAT);
    assert_string_equal(rill_last_error(), "a.gguf: tensor 'w' at byte 42: bad");
    rill_error_prefix("loading %s", "model");
    assert_string_equal(rill_last_error(), "loading model: a.gguf: tensor 'w' at byte 42: bad");
}

static void test_allocator_tracks_current_and_peak(void **state) {
    size_t base = rill_memory_current();
    rill_memory_reset_peak();
    char *a = rill_malloc(1000);
    char *b = rill_malloc(3000);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(((uintptr_t)a & 63) == 0);
    assert_int_equal(rill_memory_current(), base + 4000);
    rill_free(a);
    assert_int_equal(rill_memory_current(), base + 3000);
    assert_int_equal(rill_memory_peak(), base + 4000);
    b = rill_realloc(b, 10000);
    memset(b, 1, 10000);
    assert_int_equal(rill_memory_current(), base + 10000);
    rill_free(b);
    assert_int_equal(rill_memory_current(), base);
    assert_null(rill_malloc(SIZE_MAX - 8));
    assert_true(strstr(rill_last_error(), "too large") != NULL);
}

static void test_arena_reset_releases_all_but_one_block(void **state) {
    size_t base = rill_memory_current();
    arena a;
    arena_init(&a, 4096);
    for (int i = 0; i < 100; i++) {
        char *p = arena_alloc(&a, 1000, 16);
        assert_non_null(p);
        assert_true(((uintptr_t)p & 15) == 0);
        memset(p, i, 1000);
    }
    assert_true(rill_memory_current() - base >= 100000);
    assert_int_equal(a.high_water, 100000);
    arena_reset(&a);
    assert_true(rill_memory_current() - base < 8192);
    assert_non_null(arena_alloc(&a, 100000, 64));
    arena_release(&a);
    assert_int_equal(rill_memory_current(), base);
}

static void test_atomic_write_replaces_whole_file_or_nothing(void **state) {
    const char *path = test_tmp_path(".bin");
    assert_int_equal(atomic_file_write_all(path, "first", 5), RILL_OK);
    atomic_file f;
    assert_int_equal(atomic_file_open(&f, path), RILL_OK);
    assert_int_equal(atomic_file_write(&f, "second version", 14), RILL_OK);
    atomic_file_abort(&f); // an aborted write leaves the old file intact
    mapped_file mf;
    assert_int_equal(mapped_file_open(&mf, path, MAP_FILE_WILLNEED), RILL_OK);
    assert_int_equal(mf.size, 5);
    assert_memory_equal(mf.data, "first", 5);
    mapped_file_close(&mf);
    assert_int_equal(atomic_file_write_all(path, "second", 6), RILL_OK);
    assert_int_equal(mapped_file_open(&mf, path, MAP_FILE_PIN), RILL_OK);
    assert_memory_equal(mf.data, "second", 6);
    mapped_file_close(&mf);
    unlink(path);
}

static void test_map_missing_file_names_it(void **state) {
    mapped_file mf;
    assert_int_equal(mapped_file_open(&mf, "/nonexistent/x.gguf", 0), RILL_ENOTFOUND);
    assert_non_null(strstr(rill_last_error(), "/nonexistent/x.gguf"));
    assert_int_not_equal(mapped_file_open(&mf, "/tmp", 0), RILL_OK); // a directory
}

static void test_half_conversions_round_to_nearest_even(void **state) {
    // every f16 bit pattern survives f16 -> f32 -> f16
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(f32_to_f16(f), h);
    }
    assert_float_equal(f16_to_f32(0x3c00), 1.0f, 0);
    assert_float_equal(f16_to_f32(0x0001), 5.9604645e-8f, 1e-14);
    assert_int_equal(f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); // tie -> even
    assert_int_equal(f32_to_f16(1.0f + 3.0f / 2048), 0x3c02); // tie -> even (up)
    assert_int_equal(f32_to_f16(70000.0f), 0x7c00);           // overflow -> inf
    assert_int_equal(f32_to_bf16(1.0f + 1.0f / 256), 0x3f80); // tie -> even
    assert_int_equal(f32_to_bf16(1.0f + 3.0f / 256), 0x3f82);
    for (int i = 0; i < 10000; i++) {
        float x = test_rand_normal() * 100;
        float y = bf16_to_f32(f32_to_bf16(x));
        assert_true(fabsf(x - y) <= fabsf(x) / 256);
    }
}

static void test_dtype_names_round_trip(void **state) {
    for (int t = 1; t < DTYPE_COUNT; t++)
        assert_int_equal(dtype_from_name(dtype_name((rill_dtype)t)), t);
    assert_int_equal(dtype_from_name("F8_E4M3X"), DTYPE_INVALID);
    assert_int_equal(dtype_size(DTYPE_BF16), 2);
}

// A switch is off only at "0"; a count takes a number >= 0 and falls back on anything else; both
// keep their first answer.
static void test_env_switches_and_counts(void **state) {
    int sw = -1;
    setenv("RILL_TEST_SWITCH", "0", 1);
    assert_false(env_switch_on("RILL_TEST_SWITCH", &sw));
    setenv("RILL_TEST_SWITCH", "1", 1);
    assert_false(env_switch_on("RILL_TEST_SWITCH", &sw)); // (read once)
    sw = -1;
    assert_true(env_switch_on("RILL_TEST_SWITCH", &sw));
    static const struct {
        const char *value; // NULL: unset
        int64_t want;
    } cases[] = {{NULL, 77}, {"0", 0}, {"2048", 2048}, {"-5", 77}, {"12x", 77}, {"", 77}, {"4294967296", 4294967296}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t st = -1;
        if (cases[i].value)
            setenv("RILL_TEST_COUNT", cases[i].value, 1);
        else
            unsetenv("RILL_TEST_COUNT");
        assert_int_equal(env_count("RILL_TEST_COUNT", 77, &st), cases[i].want);
        setenv("RILL_TEST_COUNT", "9", 1);
        assert_int_equal(env_count("RILL_TEST_COUNT", 77, &st), cases[i].want); // (read once)
    }
    unsetenv("RILL_TEST_SWITCH");
    unsetenv("RILL_TEST_COUNT");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_sets_message_and_returns_status),
        cmocka_unit_test(test_allocator_tracks_current_and_peak),
        cmocka_unit_test(test_arena_reset_releases_all_but_one_block),
        cmocka_unit_test(test_atomic_write_replaces_whole_file_or_nothing),
        cmocka_unit_test(test_map_missing_file_names_it),
        cmocka_unit_test(test_half_conversions_round_to_nearest_even),
        cmocka_unit_test(test_dtype_names_round_trip),
        cmocka_unit_test(test_env_switches_and_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
