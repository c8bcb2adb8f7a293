// test_gguf.c: the GGUF reader. A real model (SmolLM2-135M Q4_1, skipped when absent); files of
// every value type built here for v2 and v3 with custom alignments; a fixture written by gguf-py
// (tests/ref/make_gguf_fixture.py); the hostile files of tests/ref/make_bad_gguf.py, each
// rejected with its own message; and every truncation plus random corruptions of a valid file.
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/alloc.h"
#include "base/status.h"
#include "io/gguf.h"
#include "testlib.h"

// ---- an in-memory GGUF writer ----

typedef struct {
    uint8_t *p; // [cap] bytes, n used
    size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_le(buf *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t byte = (uint8_t)(v >> (8 * i));
        put(b, &byte, 1);
    }
}
static void put_u8(buf *b, uint8_t v) { put_le(b, v, 1); }
static void put_u16(buf *b, uint16_t v) { put_le(b, v, 2); }
static void put_u32(buf *b, uint32_t v) { put_le(b, v, 4); }
static void put_u64(buf *b, uint64_t v) { put_le(b, v, 8); }
static void put_f32(buf *b, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    put_u32(b, bits);
}
static void put_f64(buf *b, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8);
    put_u64(b, bits);
}
static void put_str(buf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_key(buf *b, const char *key, gguf_value_type t) {
    put_str(b, key);
    put_u32(b, t);
}
static void put_arr_head(buf *b, gguf_value_type et, uint64_t n) {
    put_u32(b, et);
    put_u64(b, n);
}
static void put_tensor_info(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne, gguf_dtype t,
                            uint64_t offset) {
    put_str(b, name);
    put_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        put_u64(b, ne[d]);
    put_u32(b, t);
    put_u64(b, offset);
}
static void pad_to(buf *b, size_t align) {
    while (b->n % align)
        put_u8(b, 0);
}

// Writes the bytes to a temporary file, opens it and removes the file (the mapping stays).
static rill_status open_bytes(const void *data, size_t n, gguf_file **f) {
    const char *path = test_write_tmp(".gguf", data, n);
    assert_non_null(path);
    rill_status st = gguf_open(path, f);
    unlink(path);
    return st;
}

// ---- a valid file with every value type ----

enum { N_ALL_KV = 25 };
static const uint64_t NE_F32[2] = {8, 2}, NE_Q8[2] = {64, 3};

static uint8_t tensor_byte(int tensor, size_t i) { return (uint8_t)(tensor * 101 + i * 7 + 3); }

// alignment 0: no general.alignment key (the default, 32).
static void build_all_types(buf *b, uint32_t version, uint64_t alignment) {
    put(b, "GGUF", 4);
    put_u32(b, version);
    put_u64(b, 2);                              // tensors
    put_u64(b, N_ALL_KV - (alignment ? 0 : 1)); // key/values
    put_key(b, "general.architecture", GGUF_VAL_STRING), put_str(b, "llama");
    if (alignment) {
        put_key(b, "general.alignment", GGUF_VAL_UINT32);
        put_u32(b, (uint32_t)alignment);
    }
    put_key(b, "t.u8", GGUF_VAL_UINT8), put_u8(b, 0xAB);
    put_key(b, "t.i8", GGUF_VAL_INT8), put_u8(b, (uint8_t)-5);
    put_key(b, "t.u16", GGUF_VAL_UINT16), put_u16(b, 65000);
    put_key(b, "t.i16", GGUF_VAL_INT16), put_u16(b, (uint16_t)-30000);
    put_key(b, "t.u32", GGUF_VAL_UINT32), put_u32(b, 4000000000u);
    put_key(b, "t.i32", GGUF_VAL_INT32), put_u32(b, (uint32_t)-2000000000);
    put_key(b, "t.f32", GGUF_VAL_FLOAT32), put_f32(b, 1.5f);
    put_key(b, "t.bool", GGUF_VAL_BOOL), put_u8(b, 1);
    put_key(b, "t.bool0", GGUF_VAL_BOOL), put_u8(b, 0);
    put_key(b, "t.str", GGUF_VAL_STRING), put_str(b, "h\xc3\xa9llo");
    put_key(b, "t.u64", GGUF_VAL_UINT64), put_u64(b, (1ull << 63) + 5);
    put_key(b, "t.i64", GGUF_VAL_INT64), put_u64(b, (uint64_t) - (1ll << 62));
    put_key(b, "t.f64", GGUF_VAL_FLOAT64), put_f64(b, 3.141592653589793);
    put_key(b, "t.arr_i32", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_INT32, 3);
    put_u32(b, 1), put_u32(b, (uint32_t)-2), put_u32(b, 3);
    put_key(b, "t.arr_f32", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_FLOAT32, 3);
    put_f32(b, 0.25f), put_f32(b, -4.0f), put_f32(b, 2.5f);
    put_key(b, "t.arr_u8", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_UINT8, 2), put_u8(b, 0), put_u8(b, 255);
    put_key(b, "t.arr_u64", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_UINT64, 1), put_u64(b, UINT64_MAX);
    put_key(b, "t.arr_i16", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_INT16, 1), put_u16(b, (uint16_t)-7);
    put_key(b, "t.arr_f64", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_FLOAT64, 1), put_f64(b, -0.125);
    put_key(b, "t.arr_bool", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_BOOL, 2), put_u8(b, 1), put_u8(b, 0);
    put_key(b, "t.arr_str", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_STRING, 3);
    put_str(b, "a"), put_str(b, ""), put_str(b, "ccc");
    put_key(b, "t.arr_empty", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_UINT32, 0);
    put_key(b, "t.nested", GGUF_VAL_ARRAY), put_arr_head(b, GGUF_VAL_ARRAY, 2); // [[1, 2], ["x"]]
    put_arr_head(b, GGUF_VAL_INT32, 2), put_u32(b, 1), put_u32(b, 2);
    put_arr_head(b, GGUF_VAL_STRING, 1), put_str(b, "x");
    uint64_t align = alignment ? alignment : 32, q8_off = (8 * 2 * 4 + align - 1) / align * align;
    put_tensor_info(b, "w.f32", 2, NE_F32, GGUF_DTYPE_F32, 0);
    put_tensor_info(b, "w.q8", 2, NE_Q8, GGUF_DTYPE_Q8_0, q8_off);
    pad_to(b, align);
    size_t data0 = b->n;
    for (size_t i = 0; i < 64; i++)
        put_u8(b, tensor_byte(0, i));
    while (b->n < data0 + q8_off)
        put_u8(b, 0xEE);
    for (size_t i = 0; i < 3 * 2 * 34; i++)
        put_u8(b, tensor_byte(1, i));
}

static void check_scalars(const gguf_file *f) {
    uint64_t u;
    int64_t i;
    double d;
    bool b;
    gguf_string s;
    assert_true(gguf_get_str(f, "general.architecture", &s));
    assert_int_equal(s.len, 5);
    assert_memory_equal(s.ptr, "llama", 5);
    assert_true(gguf_get_u64(f, "t.u8", &u) && u == 0xAB);
    assert_true(gguf_get_i64(f, "t.i8", &i) && i == -5);
    assert_false(gguf_get_u64(f, "t.i8", &u)); // negative: does not fit
    assert_true(gguf_get_u64(f, "t.u16", &u) && u == 65000);
    assert_true(gguf_get_i64(f, "t.i16", &i) && i == -30000);
    assert_true(gguf_get_u64(f, "t.u32", &u) && u == 4000000000u);
    assert_true(gguf_get_i64(f, "t.u32", &i) && i == 4000000000);
    assert_true(gguf_get_i64(f, "t.i32", &i) && i == -2000000000);
    assert_true(gguf_get_f64(f, "t.f32", &d) && d == 1.5);
    assert_true(gguf_get_f64(f, "t.i32", &d) && d == -2000000000.0);
    assert_false(gguf_get_u64(f, "t.f32", &u)); // floats are not integers
    assert_true(gguf_get_bool(f, "t.bool", &b) && b);
    assert_true(gguf_get_bool(f, "t.bool0", &b) && !b);
    assert_false(gguf_get_bool(f, "t.u8", &b));
    assert_true(gguf_get_str(f, "t.str", &s) && s.len == 6 && memcmp(s.ptr, "h\xc3\xa9llo", 6) == 0);
    assert_false(gguf_get_str(f, "t.u8", &s));
    assert_true(gguf_get_u64(f, "t.u64", &u) && u == (1ull << 63) + 5);
    assert_false(gguf_get_i64(f, "t.u64", &i)); // too large for int64
    assert_true(gguf_get_i64(f, "t.i64", &i) && i == -(1ll << 62));
    assert_true(gguf_get_f64(f, "t.f64", &d) && d == 3.141592653589793);
    assert_false(gguf_get_u64(f, "t.absent", &u));
    assert_null(gguf_find_kv(f, "t.absent"));
    assert_null(gguf_find_kv(f, "t.u"));
}

static void check_arrays(const gguf_file *f) {
    int64_t i;
    double d;
    gguf_string s;
    const gguf_kv *kv = gguf_get_arr(f, "t.arr_i32", GGUF_VAL_INT32);
    assert_non_null(kv);
    assert_int_equal(kv->arr_len, 3);
    assert_int_equal(kv->arr_bytes, 12);
    assert_true(gguf_arr_i64(kv, 1, &i) && i == -2);
    assert_true(gguf_arr_f64(kv, 2, &d) && d == 3.0);
    assert_false(gguf_arr_i64(kv, 3, &i)); // out of range
    assert_null(gguf_get_arr(f, "t.arr_i32", GGUF_VAL_UINT32));
    kv = gguf_get_arr(f, "t.arr_f32", GGUF_VAL_FLOAT32);
    assert_true(gguf_arr_f64(kv, 1, &d) && d == -4.0);
    assert_true(gguf_arr_i64(kv, 1, &i) && i == -4);
    assert_false(gguf_arr_i64(kv, 2, &i)); // 2.5 is not a whole number
    kv = gguf_get_arr(f, "t.arr_u8", GGUF_VAL_UINT8);
    assert_true(gguf_arr_i64(kv, 1, &i) && i == 255);
    kv = gguf_get_arr(f, "t.arr_u64", GGUF_VAL_UINT64);
    assert_false(gguf_arr_i64(kv, 0, &i));
    assert_true(gguf_arr_f64(kv, 0, &d) && d == 18446744073709551615.0);
    kv = gguf_get_arr(f, "t.arr_i16", GGUF_VAL_INT16);
    assert_true(gguf_arr_i64(kv, 0, &i) && i == -7);
    kv = gguf_get_arr(f, "t.arr_f64", GGUF_VAL_FLOAT64);
    assert_true(gguf_arr_f64(kv, 0, &d) && d == -0.125);
    kv = gguf_get_arr(f, "t.arr_bool", GGUF_VAL_BOOL);
    assert_true(gguf_arr_i64(kv, 0, &i) && i == 1);
    assert_true(gguf_arr_i64(kv, 1, &i) && i == 0);
    kv = gguf_get_arr(f, "t.arr_str", GGUF_VAL_STRING);
    assert_non_null(kv);
    assert_int_equal(kv->arr_len, 3);
    assert_true(gguf_arr_str(kv, 0, &s) && s.len == 1 && s.ptr[0] == 'a');
    assert_true(gguf_arr_str(kv, 1, &s) && s.len == 0);
    assert_true(gguf_arr_str(kv, 2, &s) && s.len == 3 && memcmp(s.ptr, "ccc", 3) == 0);
    assert_false(gguf_arr_str(kv, 3, &s));
    assert_false(gguf_arr_i64(kv, 0, &i));
    kv = gguf_get_arr(f, "t.arr_empty", GGUF_VAL_UINT32);
    assert_non_null(kv);
    assert_int_equal(kv->arr_len, 0);
    assert_false(gguf_arr_i64(kv, 0, &i));
    kv = gguf_get_arr(f, "t.nested", GGUF_VAL_ARRAY);
    assert_non_null(kv);
    assert_int_equal(kv->arr_len, 2);
    assert_int_equal(kv->arr_bytes, (4 + 8 + 8) + (4 + 8 + 8 + 1));
    assert_int_equal(kv->arr_data[0], GGUF_VAL_INT32);
    assert_false(gguf_arr_i64(kv, 0, &i));
    assert_false(gguf_arr_str(kv, 0, &s));
}

static void check_tensors(const gguf_file *f, uint64_t align) {
    assert_int_equal(f->n_tensors, 2);
    const gguf_tensor *t = gguf_find_tensor(f, "w.f32");
    assert_non_null(t);
    assert_ptr_equal(t, &f->tensors[0]);
    assert_int_equal(t->type, GGUF_DTYPE_F32);
    assert_int_equal(t->n_dims, 2);
    assert_true(t->ne[0] == 8 && t->ne[1] == 2 && t->ne[2] == 1 && t->ne[3] == 1);
    assert_int_equal(t->n_elements, 16);
    assert_int_equal(t->n_bytes, 64);
    assert_int_equal(f->data_offset % align, 0);
    for (size_t i = 0; i < 64; i++)
        assert_int_equal(t->data[i], tensor_byte(0, i));
    t = gguf_find_tensor(f, "w.q8");
    assert_non_null(t);
    assert_int_equal(t->type, GGUF_DTYPE_Q8_0);
    assert_int_equal(t->n_bytes, 3 * 2 * 34);
    assert_int_equal(t->offset % align, 0);
    assert_ptr_equal(t->data, f->map.data + f->data_offset + t->offset);
    for (size_t i = 0; i < t->n_bytes; i++)
        assert_int_equal(t->data[i], tensor_byte(1, i));
    assert_null(gguf_find_tensor(f, "w"));
}

static void test_every_value_type_reads_back_in_v2_and_v3(void **state) {
    static const uint64_t aligns[] = {0, 8, 64, 4096};
    size_t mem0 = rill_memory_current();
    for (uint32_t version = 2; version <= 3; version++) {
        for (size_t a = 0; a < sizeof aligns / sizeof *aligns; a++) {
            buf b = {0};
            build_all_types(&b, version, aligns[a]);
            gguf_file *f = NULL;
            rill_status st = open_bytes(b.p, b.n, &f);
            if (st != RILL_OK)
                fail_msg("v%u align %llu: %s", version, (unsigned long long)aligns[a], rill_last_error());
            assert_int_equal(f->version, version);
            uint64_t align = aligns[a] ? aligns[a] : 32;
            assert_int_equal(f->alignment, align);
            assert_int_equal(f->n_kv, N_ALL_KV - (aligns[a] ? 0 : 1));
            check_scalars(f);
            check_arrays(f);
            check_tensors(f, align);
            gguf_close(f);
            free(b.p);
        }
    }
    assert_int_equal(rill_memory_current(), mem0);
}

// GGUF allows dimensions of 0 (an empty tensor takes no bytes and overlaps nothing) and files
// with no tensors and no key/values at all.
static void test_empty_tensors_and_empty_files_are_valid(void **state) {
    buf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, 0);
    put_u64(&b, 0);
    gguf_file *f = NULL;
    if (open_bytes(b.p, b.n, &f) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(f->n_kv + f->n_tensors, 0);
    assert_null(gguf_find_kv(f, "general.architecture"));
    assert_null(gguf_find_tensor(f, ""));
    gguf_close(f);

    static const uint64_t ne_empty[2] = {0, 4}, ne_w[1] = {4};
    b.n = 8;
    put_u64(&b, 2);
    put_u64(&b, 0);
    put_tensor_info(&b, "empty", 2, ne_empty, GGUF_DTYPE_Q4_0, 0);
    put_tensor_info(&b, "w", 1, ne_w, GGUF_DTYPE_F32, 0);
    pad_to(&b, 32);
    put_f32(&b, 1), put_f32(&b, 2), put_f32(&b, 3), put_f32(&b, 4);
    if (open_bytes(b.p, b.n, &f) != RILL_OK) fail_msg("%s", rill_last_error());
    const gguf_tensor *t = gguf_find_tensor(f, "empty");
    assert_non_null(t);
    assert_int_equal(t->n_elements, 0);
    assert_int_equal(t->n_bytes, 0);
    assert_int_equal(gguf_find_tensor(f, "w")->n_bytes, 16);
    gguf_close(f);
    gguf_close(NULL);
    free(b.p);
}

// ---- the real model ----

static void test_smollm2_q4_1_metadata_and_tensors(void **state) {
    const char *path = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!path) {
        fprintf(stderr, "skipped: SmolLM2-135M-Instruct.Q4_1.gguf is not in $RILL_MODELS\n");
        skip();
    }
    gguf_file *f = NULL;
    if (gguf_open(path, &f) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(f->version, 3);
    assert_int_equal(f->alignment, 32);
    gguf_string s;
    assert_true(gguf_get_str(f, "general.architecture", &s) && s.len == 5 && memcmp(s.ptr, "llama", 5) == 0);
    uint64_t u;
    assert_true(gguf_get_u64(f, "llama.block_count", &u) && u == 30);
    assert_true(gguf_get_u64(f, "llama.embedding_length", &u) && u == 576);
    assert_true(gguf_get_u64(f, "llama.attention.head_count", &u) && u == 9);
    assert_true(gguf_get_u64(f, "llama.attention.head_count_kv", &u) && u == 3);
    double d;
    assert_true(gguf_get_f64(f, "llama.rope.freq_base", &d) && d == 100000.0);
    const gguf_kv *tok = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VAL_STRING);
    assert_non_null(tok);
    assert_int_equal(tok->arr_len, 49152);
    assert_true(gguf_arr_str(tok, 0, &s) && s.len == 13 && memcmp(s.ptr, "<|endoftext|>", 13) == 0);
    assert_true(gguf_arr_str(tok, 49151, &s) && s.len == 7 && memcmp(s.ptr, "ectable", 7) == 0);
    const gguf_kv *merges = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VAL_STRING);
    assert_non_null(merges);
    assert_int_equal(merges->arr_len, 48900);
    assert_non_null(gguf_get_arr(f, "tokenizer.ggml.token_type", GGUF_VAL_INT32));
    assert_int_equal(f->n_kv, 33);
    assert_int_equal(f->n_tensors, 272);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGUF_DTYPE_Q8_0);
    assert_int_equal(t->n_dims, 2);
    assert_true(t->ne[0] == 576 && t->ne[1] == 49152);
    assert_int_equal(t->n_bytes, 576 / 32 * 34 * 49152ull);
    t = gguf_find_tensor(f, "blk.0.attn_q.weight");
    assert_non_null(t);
    assert_int_equal(t->type, GGUF_DTYPE_Q4_1);
    assert_int_equal(t->n_bytes, 576 / 32 * 20 * 576);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *ti = &f->tensors[i];
        assert_true(ti->data >= f->map.data && ti->data + ti->n_bytes <= f->map.data + f->map.size);
        assert_ptr_equal(gguf_find_tensor(f, ti->name), ti);
    }
    gguf_close(f);
}

// ---- the gguf-py fixture ----

static uint64_t fnv1a64(const uint8_t *p, uint64_t n) {
    uint64_t h = 14695981039346656037ull;
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

// One expected element (or scalar) against what the reader decoded.
static void check_json_number(const char *key, gguf_value_type t, json_t *want, bool have_i, int64_t i, double d,
                              uint64_t u) {
    if (t == GGUF_VAL_FLOAT32 || t == GGUF_VAL_FLOAT64) {
        if (!json_is_number(want) || json_number_value(want) != d) fail_msg("%s: float %.17g", key, d);
    } else if (t == GGUF_VAL_BOOL) {
        if (!json_is_boolean(want) || json_is_true(want) != (u != 0))
            fail_msg("%s: bool %llu", key, (unsigned long long)u);
    } else if (t == GGUF_VAL_UINT8 || t == GGUF_VAL_UINT16 || t == GGUF_VAL_UINT32 || t == GGUF_VAL_UINT64) {
        if (strtoull(json_string_value(want), NULL, 10) != u) fail_msg("%s: %llu", key, (unsigned long long)u);
    } else {
        assert_true(have_i);
        if (strtoll(json_string_value(want), NULL, 10) != i) fail_msg("%s: %lld", key, (long long)i);
    }
}

static void check_json_string(const char *key, json_t *want, gguf_string s) {
    const char *w = json_string_value(want);
    assert_non_null(w);
    if (strlen(w) != s.len || memcmp(w, s.ptr, s.len) != 0) fail_msg("%s: string '%.*s'", key, (int)s.len, s.ptr);
}

static uint64_t read_u(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

// The nested int32 arrays, walked by hand from the raw bytes.
static void check_json_nested(const gguf_kv *kv, json_t *want) {
    const uint8_t *p = kv->arr_data, *end = p + kv->arr_bytes;
    assert_int_equal(kv->arr_len, json_array_size(want));
    for (size_t k = 0; k < kv->arr_len; k++) {
        json_t *inner = json_array_get(want, k);
        assert_true(p + 12 <= end);
        assert_int_equal(read_u(p, 4), GGUF_VAL_INT32);
        assert_int_equal(read_u(p + 4, 8), json_array_size(inner));
        p += 12;
        for (size_t j = 0; j < json_array_size(inner); j++, p += 4)
            assert_int_equal((int32_t)read_u(p, 4), strtol(json_string_value(json_array_get(inner, j)), NULL, 10));
    }
    assert_ptr_equal(p, end);
}

static void check_json_kv(const gguf_file *f, json_t *e) {
    const char *key = json_string_value(json_object_get(e, "key"));
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) fail_msg("missing key %s", key);
    assert_string_equal(gguf_value_type_name(kv->type), json_string_value(json_object_get(e, "type")));
    if (kv->type == GGUF_VAL_STRING) return check_json_string(key, json_object_get(e, "value"), kv->v.str);
    if (kv->type != GGUF_VAL_ARRAY) {
        bool is_signed = kv->type == GGUF_VAL_INT8 || kv->type == GGUF_VAL_INT16 || kv->type == GGUF_VAL_INT32 ||
                         kv->type == GGUF_VAL_INT64;
        return check_json_number(key, kv->type, json_object_get(e, "value"), is_signed, kv->v.i64, kv->v.f64,
                                 kv->v.u64);
    }
    assert_string_equal(gguf_value_type_name(kv->arr_type), json_string_value(json_object_get(e, "elem")));
    json_t *vals = json_object_get(e, "values");
    if (kv->arr_type == GGUF_VAL_ARRAY) return check_json_nested(kv, vals);
    assert_int_equal(kv->arr_len, json_array_size(vals));
    size_t esz = gguf_value_type_size(kv->arr_type);
    for (size_t k = 0; k < kv->arr_len; k++) {
        json_t *w = json_array_get(vals, k);
        gguf_string s;
        int64_t i = 0;
        double d = 0;
        if (kv->arr_type == GGUF_VAL_STRING) {
            assert_true(gguf_arr_str(kv, k, &s));
            check_json_string(key, w, s);
            continue;
        }
        bool have_i = gguf_arr_i64(kv, k, &i);
        assert_true(gguf_arr_f64(kv, k, &d));
        check_json_number(key, kv->arr_type, w, have_i, i, d, read_u(kv->arr_data + k * esz, (int)esz));
    }
}

static void test_gguf_py_fixture_reads_back_exactly(void **state) {
    json_error_t jerr;
    json_t *root = json_load_file(test_data_path("gguf/all_types.json"), 0, &jerr);
    if (!root) fail_msg("all_types.json line %d: %s", jerr.line, jerr.text);
    gguf_file *f = NULL;
    if (gguf_open(test_data_path("gguf/all_types.gguf"), &f) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(f->version, json_integer_value(json_object_get(root, "version")));
    assert_int_equal(f->alignment, json_integer_value(json_object_get(root, "alignment")));
    json_t *kvs = json_object_get(root, "kv"), *tensors = json_object_get(root, "tensors");
    assert_int_equal(f->n_kv, json_array_size(kvs));
    for (size_t k = 0; k < json_array_size(kvs); k++)
        check_json_kv(f, json_array_get(kvs, k));
    assert_int_equal(f->n_tensors, json_array_size(tensors));
    for (size_t k = 0; k < json_array_size(tensors); k++) {
        json_t *e = json_array_get(tensors, k);
        const gguf_tensor *t = gguf_find_tensor(f, json_string_value(json_object_get(e, "name")));
        assert_non_null(t);
        assert_int_equal(t->type, json_integer_value(json_object_get(e, "type")));
        json_t *ne = json_object_get(e, "ne");
        assert_int_equal(t->n_dims, json_array_size(ne));
        for (size_t d = 0; d < t->n_dims; d++)
            assert_int_equal(t->ne[d], json_integer_value(json_array_get(ne, d)));
        assert_int_equal(t->n_bytes, json_integer_value(json_object_get(e, "n_bytes")));
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a64(t->data, t->n_bytes));
        assert_string_equal(hex, json_string_value(json_object_get(e, "fnv1a64")));
    }
    gguf_close(f);
    json_decref(root);
}

// ---- hostile files ----

typedef struct {
    const char *file;   // under tests/data/bad/gguf/
    rill_status status; // expected
    const char *msg;    // a substring of the expected message
} bad_case;

static const bad_case bad_cases[] = {
    {"empty_file", RILL_EFORMAT, "header at byte 0: magic needs 4 bytes, only 0 left"},
    {"bad_magic", RILL_EFORMAT, "bad magic 47 47 4d 4c"},
    {"truncated_header", RILL_EFORMAT, "tensor count needs 8 bytes, only 5 left in the file (truncated?)"},
    {"version_1", RILL_EUNSUPPORTED, "GGUF version 1 is not supported"},
    {"version_99", RILL_EUNSUPPORTED, "GGUF version 99 is not supported"},
    {"big_endian", RILL_EUNSUPPORTED, "big-endian GGUF (version 3 when byte-swapped)"},
    {"tensor_count_impossible", RILL_EFORMAT, "header at byte 8: tensor count 1000000 is impossible"},
    {"tensor_count_absurd", RILL_EFORMAT, "tensor count 1099511627776 exceeds the limit"},
    {"kv_count_impossible", RILL_EFORMAT, "header at byte 16: key/value count 1000000 is impossible"},
    {"kv_count_absurd", RILL_EFORMAT, "key/value count 18446744073709551615 exceeds the limit"},
    {"key_past_eof", RILL_EFORMAT, "key #0 at byte 24: key length 5000 runs past the end of the file"},
    {"key_with_nul", RILL_EFORMAT, "key contains a NUL byte"},
    {"string_past_eof", RILL_EFORMAT, "key 'general.name' at byte 48: string length 1000 runs past the end"},
    {"string_absurd", RILL_EFORMAT, "key 'general.name' at byte 48: string length 99999999999 exceeds the limit"},
    {"unknown_value_type", RILL_EFORMAT, "key 'general.name' at byte 44: unknown value type 13"},
    {"bool_not_0_or_1", RILL_EFORMAT, "key 't.flag' at byte 42: bool value 7 is neither 0 nor 1"},
    {"scalar_past_eof", RILL_EFORMAT, "key 't.u64' at byte 86: uint64 needs 8 bytes, only 3 left"},
    {"unknown_array_type", RILL_EFORMAT, "key 't.arr' at byte 41: unknown array element type 42"},
    {"array_past_eof", RILL_EFORMAT, "array of 1000000 uint32 elements needs at least 4000000 bytes"},
    {"array_absurd", RILL_EFORMAT, "array length 1099511627776 exceeds the limit"},
    {"array_string_past_eof", RILL_EFORMAT, "string element 1 length 77 runs past the end"},
    {"array_nested_too_deep", RILL_EFORMAT, "arrays nested deeper than 8 levels"},
    {"duplicate_key", RILL_EFORMAT, "key 'llama.block_count' at byte 102: duplicate key (first at byte 69)"},
    {"alignment_not_pow2", RILL_EFORMAT, "alignment 48 is not a nonzero power of two"},
    {"alignment_zero", RILL_EFORMAT, "alignment 0 is not a nonzero power of two"},
    {"alignment_string", RILL_EFORMAT, "key 'general.alignment' at byte 69: has type string"},
    {"tensor_name_past_eof", RILL_EFORMAT, "tensor #0 at byte 69: tensor name length 900 runs past the end"},
    {"tensor_unknown_type", RILL_EFORMAT, "tensor 'w' at byte 90: unknown tensor type 77"},
    {"tensor_n_dims_0", RILL_EFORMAT, "tensor 'w' at byte 78: n_dims 0 is outside 1..4"},
    {"tensor_n_dims_5", RILL_EFORMAT, "n_dims 5 is outside 1..4"},
    {"tensor_dim_negative", RILL_EFORMAT, "ne[0] = 18446744073709551600 exceeds 2^63-1"},
    {"tensor_dims_overflow", RILL_EFORMAT, "the element count overflows at ne[1] = 4294967296"},
    {"tensor_block_misfit", RILL_EFORMAT, "ne[0] = 33 is not a multiple of the Q4_0 block size 32"},
    {"tensor_data_past_eof", RILL_EFORMAT, "tensor 'w' at byte 69: data at offset 0 + 4096 bytes runs past the end"},
    {"tensor_offset_past_eof", RILL_EFORMAT, "data at offset 4611686018427387904 + 64 bytes runs past the end"},
    {"tensor_misaligned", RILL_EFORMAT, "tensor 'v' at byte 127: data offset 36 is not a multiple of the alignment 32"},
    {"tensor_overlap", RILL_EFORMAT, "tensor 'v' at byte 102: data [192, 256) overlaps tensor 'w' data [160, 224)"},
    {"duplicate_tensor", RILL_EFORMAT, "tensor 'w' at byte 102: duplicate tensor name (first at byte 69)"},
};
enum { N_BAD = sizeof bad_cases / sizeof *bad_cases };

static void test_hostile_files_fail_with_their_message(void **state) {
    size_t mem0 = rill_memory_current(), n_wrong = 0;
    for (size_t k = 0; k < N_BAD; k++) {
        char rel[256];
        snprintf(rel, sizeof rel, "bad/gguf/%s.gguf", bad_cases[k].file);
        const char *path = test_data_path(rel);
        gguf_file *f = (gguf_file *)&f; // poison: must come back NULL
        rill_clear_error();
        rill_status st = gguf_open(path, &f);
        const char *msg = rill_last_error();
        if (st != bad_cases[k].status || !strstr(msg, bad_cases[k].msg) || !strstr(msg, path))
            print_error("%s: status %s, message \"%s\"; expected %s and \"%s\"\n", bad_cases[k].file,
                        rill_status_name(st), msg, rill_status_name(bad_cases[k].status), bad_cases[k].msg),
                n_wrong++;
        assert_null(f);
    }
    assert_int_equal(n_wrong, 0);
    assert_int_equal(rill_memory_current(), mem0);
}

// Every file that make_bad_gguf.py writes has an expectation above (and the reverse).
static void test_every_bad_file_is_covered(void **state) {
    DIR *dir = opendir(test_data_path("bad/gguf"));
    assert_non_null(dir);
    size_t n = 0;
    for (struct dirent *de; (de = readdir(dir));) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".gguf") != 0) continue;
        bool known = false;
        for (size_t k = 0; k < N_BAD && !known; k++)
            known = strlen(bad_cases[k].file) == len - 5 && strncmp(bad_cases[k].file, de->d_name, len - 5) == 0;
        if (!known) fail_msg("tests/data/bad/gguf/%s has no expected message in test_gguf.c", de->d_name);
        n++;
    }
    closedir(dir);
    assert_int_equal(n, N_BAD);
}

static void test_every_truncation_fails_cleanly(void **state) {
    buf b = {0};
    build_all_types(&b, 3, 64);
    size_t mem0 = rill_memory_current();
    for (size_t n = 0; n < b.n; n++) {
        gguf_file *f = NULL;
        rill_status st = open_bytes(b.p, n, &f);
        if (st == RILL_OK) fail_msg("a file cut to %zu of %zu bytes was accepted", n, b.n);
        assert_null(f);
        assert_true(strstr(rill_last_error(), " at byte ") != NULL);
    }
    assert_int_equal(rill_memory_current(), mem0);
    free(b.p);
}

static void test_random_corruption_never_crashes(void **state) {
    buf b = {0};
    build_all_types(&b, 3, 32);
    uint8_t *copy = malloc(b.n);
    size_t mem0 = rill_memory_current(), accepted = 0;
    for (int round = 0; round < 1500; round++) {
        memcpy(copy, b.p, b.n);
        int flips = 1 + (int)(test_rand_u64() % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = test_rand_u64() % b.n;
            copy[at] = (test_rand_u64() & 1) ? (uint8_t)test_rand_u64() : (uint8_t)(copy[at] ^ 0x80);
        }
        gguf_file *f = NULL;
        rill_status st = open_bytes(copy, b.n, &f);
        if (st == RILL_OK) {
            accepted++;
            for (uint64_t i = 0; i < f->n_tensors; i++)
                assert_true(f->tensors[i].data + f->tensors[i].n_bytes <= f->map.data + f->map.size);
            gguf_close(f);
        } else {
            assert_true(strlen(rill_last_error()) > 0);
        }
    }
    assert_int_equal(rill_memory_current(), mem0);
    assert_true(accepted > 0); // flips inside tensor data are harmless
    free(copy);
    free(b.p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_value_type_reads_back_in_v2_and_v3),
        cmocka_unit_test(test_empty_tensors_and_empty_files_are_valid),
        cmocka_unit_test(test_smollm2_q4_1_metadata_and_tensors),
        cmocka_unit_test(test_gguf_py_fixture_reads_back_exactly),
        cmocka_unit_test(test_hostile_files_fail_with_their_message),
        cmocka_unit_test(test_every_bad_file_is_covered),
        cmocka_unit_test(test_every_truncation_fails_cleanly),
        cmocka_unit_test(test_random_corruption_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
