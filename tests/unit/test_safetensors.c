// test_safetensors.c: the safetensors reader, writer and sets. Round trips of every dtype with
// fresh random bytes; every crafted hostile file under tests/data/bad/safetensors rejected with a
// message that names its defect; random corruption never crashes; sharded folders and bad indexes;
// and interop both ways with the reference implementation (tests/ref/*safetensors*.py).
#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "base/sha256.h"
#include "io/safetensors.h"
#include "testlib.h"

enum { MAX_TEST_TENSORS = 32, MAX_TEST_BYTES = 4096 };

// Tensors to write, with their own storage.
typedef struct {
    size_t n;
    safetensors_entry e[MAX_TEST_TENSORS];
    char names[MAX_TEST_TENSORS][64];
    uint64_t shapes[MAX_TEST_TENSORS][SAFETENSORS_MAX_DIMS];
    uint8_t data[MAX_TEST_TENSORS][MAX_TEST_BYTES]; // [n][n_bytes of each]
} tensor_list;

static uint64_t n_bytes_of(const safetensors_entry *e) {
    uint64_t n = dtype_size(e->dtype);
    for (int d = 0; d < e->n_dims; d++)
        n *= e->shape[d];
    return n;
}

// The pattern that tests/ref/check_safetensors.py expects: byte j = 7j + s (mod 256), or (j + s) & 1 for
// BOOL, where s is the sum of the name's bytes.
static void fill_pattern(const char *name, rill_dtype dt, uint8_t *p, size_t n) {
    unsigned s = 0;
    for (const char *c = name; *c; c++)
        s += (uint8_t)*c;
    for (size_t j = 0; j < n; j++)
        p[j] = (uint8_t)(dt == DTYPE_BOOL ? (j + s) & 1 : (7 * j + s) & 0xff);
}

static void fill_random(rill_dtype dt, uint8_t *p, size_t n) {
    for (size_t j = 0; j < n; j++)
        p[j] = (uint8_t)(test_rand_u64() >> 56) & (dt == DTYPE_BOOL ? 1 : 0xff);
}

// Appends a tensor; its bytes are random (random = true) or the pattern.
static void add(tensor_list *l, const char *name, rill_dtype dt, int n_dims, const uint64_t *shape, bool random) {
    assert_true(l->n < MAX_TEST_TENSORS);
    size_t i = l->n++;
    snprintf(l->names[i], sizeof l->names[i], "%s", name);
    if (n_dims) memcpy(l->shapes[i], shape, (size_t)n_dims * sizeof *shape);
    l->e[i] = (safetensors_entry){l->names[i], dt, n_dims, l->shapes[i], l->data[i]};
    uint64_t n = n_bytes_of(&l->e[i]);
    assert_true(n <= MAX_TEST_BYTES);
    if (random)
        fill_random(dt, l->data[i], n);
    else
        fill_pattern(name, dt, l->data[i], n);
}

// One tensor of every dtype, plus a scalar, an empty tensor and one with the most dimensions.
static void add_every_kind(tensor_list *l, bool random) {
    for (int t = 1; t < DTYPE_COUNT; t++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%d.%s", t, dtype_name((rill_dtype)t));
        uint64_t shape[2] = {2 + (uint64_t)(test_rand_u64() % 3), (uint64_t)t};
        add(l, name, (rill_dtype)t, 2, shape, random);
    }
    add(l, "scalar", DTYPE_F32, 0, NULL, random);
    add(l, "empty", DTYPE_F16, 2, (const uint64_t[]){0, 5}, random);
    add(l, "eight.dims", DTYPE_U8, 8, (const uint64_t[]){1, 2, 1, 2, 1, 2, 1, 3}, random);
    add(l, "caf\xc3\xa9.w", DTYPE_BF16, 1, (const uint64_t[]){3}, random);
}

static const char *const meta_keys[] = {"format", "rill.version", "note"};
static const char *const meta_values[] = {"pt", "0.1", "\xc3\xbcnicode \xe2\x9c\x93"};

static void write_list(const char *path, const tensor_list *l) {
    assert_int_equal(safetensors_write(path, l->e, l->n, meta_keys, meta_values, 3), RILL_OK);
}

static void assert_tensor_equals(const safetensors_tensor *t, const safetensors_entry *e) {
    assert_non_null(t);
    assert_string_equal(t->name, e->name);
    assert_int_equal(t->dtype, e->dtype);
    assert_int_equal(t->n_dims, e->n_dims);
    for (int d = 0; d < e->n_dims; d++)
        assert_int_equal(t->shape[d], e->shape[d]);
    assert_int_equal(t->n_bytes, n_bytes_of(e));
    assert_memory_equal(t->data, e->data, t->n_bytes);
}

static void test_round_trip_every_dtype_with_metadata(void **state) {
    static tensor_list l;
    l.n = 0;
    add_every_kind(&l, true);
    const char *path = test_tmp_path(".safetensors");
    write_list(path, &l);
    safetensors_file *f;
    assert_int_equal(safetensors_open(path, &f), RILL_OK);
    assert_int_equal(f->n_tensors, l.n);
    for (size_t i = 0; i < l.n; i++)
        assert_tensor_equals(safetensors_find(f, l.names[i]), &l.e[i]);
    assert_null(safetensors_find(f, "absent"));
    assert_int_equal(f->n_meta, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(f->meta_keys[i], meta_keys[i]);
        assert_string_equal(safetensors_meta(f, meta_keys[i]), meta_values[i]);
    }
    assert_null(safetensors_meta(f, "absent"));
    safetensors_close(f);
}

static void test_writer_aligns_like_the_reference_writer(void **state) {
    static tensor_list l;
    l.n = 0;
    add(&l, "a.u8", DTYPE_U8, 1, (const uint64_t[]){3}, true);
    add(&l, "b.f32", DTYPE_F32, 1, (const uint64_t[]){3}, true);
    add(&l, "c.f16", DTYPE_F16, 1, (const uint64_t[]){1}, true);
    add(&l, "d.f64", DTYPE_F64, 1, (const uint64_t[]){1}, true);
    add(&l, "e.i32", DTYPE_I32, 1, (const uint64_t[]){2}, true);
    const char *path = test_tmp_path(".safetensors");
    write_list(path, &l);
    safetensors_file *f;
    assert_int_equal(safetensors_open(path, &f), RILL_OK);
    assert_int_equal(f->header_len % 8, 0);
    assert_int_equal(f->map.data[8 + f->header_len - 1], ' ');
    // largest element size first, the given order among equal sizes, no gaps
    const char *want[] = {"d.f64", "b.f32", "e.i32", "c.f16", "a.u8"};
    uint64_t pos = 0;
    for (int i = 0; i < 5; i++) {
        assert_string_equal(f->tensors[i].name, want[i]);
        assert_int_equal(f->tensors[i].data_offset, pos);
        assert_int_equal((uintptr_t)(f->tensors[i].data - f->map.data) % dtype_size(f->tensors[i].dtype), 0);
        pos += f->tensors[i].n_bytes;
    }
    safetensors_close(f);
}

static void test_writer_rejects_bad_inputs_and_keeps_the_old_file(void **state) {
    static tensor_list l;
    l.n = 0;
    add(&l, "w", DTYPE_F32, 1, (const uint64_t[]){2}, true);
    add(&l, "v", DTYPE_F32, 1, (const uint64_t[]){2}, true);
    const char *p = test_tmp_path(".safetensors");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    write_list(path, &l);
    struct {
        const char *name;
        rill_dtype dt;
        int n_dims;
        const char *want;
    } bad[] = {
        {"w", DTYPE_F32, 1, "appears twice"},
        {"x", DTYPE_INVALID, 1, "bad dtype"},
        {"x", DTYPE_COUNT, 1, "bad dtype"},
        {"x", DTYPE_F32, SAFETENSORS_MAX_DIMS + 1, "dimensions"},
        {"__metadata__", DTYPE_F32, 1, "__metadata__"},
        {"", DTYPE_F32, 1, "empty"},
        {"\xff\xfe", DTYPE_F32, 1, "UTF-8"},
    };
    uint64_t shape[SAFETENSORS_MAX_DIMS + 1] = {2, 1, 1, 1, 1, 1, 1, 1, 1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        safetensors_entry e[2] = {l.e[0], {bad[i].name, bad[i].dt, bad[i].n_dims, shape, l.data[0]}};
        assert_int_not_equal(safetensors_write(path, e, 2, NULL, NULL, 0), RILL_OK);
        assert_non_null(strstr(rill_last_error(), bad[i].want));
    }
    const char *dup_keys[] = {"k", "k"};
    assert_int_not_equal(safetensors_write(path, l.e, 1, dup_keys, dup_keys, 2), RILL_OK);
    assert_non_null(strstr(rill_last_error(), "appears twice"));
    safetensors_file *f; // the file saved before is whole
    assert_int_equal(safetensors_open(path, &f), RILL_OK);
    assert_int_equal(f->n_tensors, 2);
    assert_tensor_equals(safetensors_find(f, "v"), &l.e[1]);
    safetensors_close(f);
}

// Builds a file by hand: an 8-byte length, the header text as given, then data.
static const char *write_raw(const char *header, const void *data, size_t n) {
    static uint8_t buf[8192];
    size_t h = strlen(header);
    assert_true(8 + h + n <= sizeof buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    if (n) memcpy(buf + 8 + h, data, n);
    return test_write_tmp(".safetensors", buf, 8 + h + n);
}

static void test_reader_accepts_padding_whitespace_and_any_order(void **state) {
    const uint8_t data[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    const char *path = write_raw("{\n  \"b\": {\"data_offsets\": [8, 12], \"shape\": [2], \"dtype\": \"I16\"},\n"
                                 "  \"a\": {\"dtype\": \"U8\", \"shape\": [2, 4], \"data_offsets\": [0, 8]},\n"
                                 "  \"z\": {\"dtype\": \"F32\", \"shape\": [3, 0], \"data_offsets\": [12, 12]}\n}     ",
                                 data, sizeof data);
    safetensors_file *f;
    assert_int_equal(safetensors_open(path, &f), RILL_OK);
    assert_int_equal(f->n_tensors, 3);
    assert_string_equal(f->tensors[0].name, "b"); // header order kept
    const safetensors_tensor *b = safetensors_find(f, "b");
    assert_int_equal(b->n_elements, 2);
    assert_memory_equal(b->data, data + 8, 4);
    assert_int_equal(safetensors_find(f, "z")->n_bytes, 0);
    assert_int_equal(f->n_meta, 0);
    safetensors_close(f);
    assert_int_equal(safetensors_open(write_raw("{}", NULL, 0), &f), RILL_OK); // no tensors at all
    assert_int_equal(f->n_tensors, 0);
    safetensors_close(f);
}

// Each committed hostile file (tests/ref/make_bad_safetensors.py) and what its message must say.
static const struct {
    const char *file;
    const char *want;
} bad_files[] = {
    {"truncated_header", "truncated header"},
    {"header_past_eof", "past the end of the file"},
    {"absurd_header_length", "exceeds the limit"},
    {"empty_header", "not a JSON object"},
    {"bad_json", "line 1 column 23"},
    {"non_object_header", "not a JSON object"},
    {"invalid_utf8_name", "header JSON, line 1"},
    {"duplicate_tensor_name", "duplicate object key"},
    {"tensor_not_object", "entry is not a JSON object"},
    {"missing_dtype", "'dtype' is missing"},
    {"dtype_not_string", "'dtype' is missing or not a string"},
    {"unknown_dtype", "unknown dtype 'F128'"},
    {"unsupported_dtype_f8", "'F8_E4M3' is not supported"},
    {"missing_shape", "'shape' is missing"},
    {"negative_shape", "dimension 0 is negative"},
    {"non_integer_shape", "dimension 0 is not an integer"},
    {"too_many_dims", "too many dimensions"},
    {"shape_overflow", "overflows"},
    {"missing_offsets", "'data_offsets' is missing"},
    {"offsets_not_pair", "not [begin, end]"},
    {"offsets_negative", "not [begin, end]"},
    {"offsets_reversed", "begin 8 > end 0"},
    {"offset_too_big_integer", "too big"},
    {"offsets_past_end", "past the end of the data section"},
    {"shape_bytes_mismatch", "holds 12 bytes but shape [2, 2] of F32 needs 16"},
    {"overlapping_offsets", "overlap tensor 'a'"},
    {"empty_tensor_inside_another", "overlap tensor 'a'"},
    {"offsets_gap", "a gap of 4 bytes"},
    {"trailing_bytes", "trailing bytes"},
    {"metadata_not_object", "'__metadata__'"},
    {"metadata_value_not_string", "key 'k' at byte"},
};
enum { N_BAD_FILES = sizeof bad_files / sizeof bad_files[0] };

static void test_reader_rejects_every_hostile_file_and_names_the_defect(void **state) {
    for (size_t i = 0; i < N_BAD_FILES; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "bad/safetensors/%s.safetensors", bad_files[i].file);
        const char *path = test_data_path(rel);
        safetensors_file *f = (safetensors_file *)&f;
        rill_clear_error();
        rill_status st = safetensors_open(path, &f);
        const char *msg = rill_last_error();
        if (st == RILL_OK || !strstr(msg, bad_files[i].want) || !strstr(msg, path))
            fail_msg("%s: status %d, message '%s' (want '%s' and the path)", rel, st, msg, bad_files[i].want);
        assert_null(f);
    }
}

static void test_every_committed_bad_file_has_an_expectation(void **state) {
    DIR *d = opendir(test_data_path("bad/safetensors"));
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        bool known = false;
        for (size_t i = 0; i < N_BAD_FILES && !known; i++)
            known = !strncmp(e->d_name, bad_files[i].file, strlen(bad_files[i].file)) &&
                    !strcmp(e->d_name + strlen(bad_files[i].file), ".safetensors");
        if (!known) fail_msg("bad/safetensors/%s has no entry in bad_files", e->d_name);
        n++;
    }
    closedir(d);
    assert_int_equal(n, N_BAD_FILES);
}

// A valid file with random bytes flipped or cut short must open cleanly or fail cleanly; under
// ASan this is a small fuzz test of the reader's bounds.
static void test_random_corruption_opens_or_fails_cleanly(void **state) {
    static tensor_list l;
    l.n = 0;
    add_every_kind(&l, true);
    const char *p = test_tmp_path(".safetensors");
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    write_list(path, &l);
    static uint8_t good[65536], buf[65536];
    FILE *fp = fopen(path, "rb");
    size_t n = fread(good, 1, sizeof good, fp);
    fclose(fp);
    uint64_t hdr = 8 + (good[0] | (uint64_t)good[1] << 8);
    int n_ok = 0;
    for (int iter = 0; iter < 2000; iter++) {
        memcpy(buf, good, n);
        size_t len = iter % 8 == 0 ? test_rand_u64() % n : n;
        for (int k = 0, flips = 1 + (int)(test_rand_u64() % 4); k < flips; k++)
            buf[test_rand_u64() % (iter % 2 ? hdr : len ? len : 1)] = (uint8_t)test_rand_u64();
        fp = fopen(path, "wb");
        fwrite(buf, 1, len, fp);
        fclose(fp);
        safetensors_file *f;
        if (safetensors_open(path, &f) != RILL_OK) continue;
        n_ok++;
        for (size_t i = 0; i < f->n_tensors; i++) {
            const safetensors_tensor *t = &f->tensors[i];
            assert_true(t->data >= f->data && t->data + t->n_bytes <= f->data + f->data_size);
            assert_int_equal(t->n_bytes, t->n_elements * dtype_size(t->dtype));
            assert_ptr_equal(safetensors_find(f, t->name), t);
        }
        safetensors_close(f);
    }
    assert_true(n_ok < 2000); // the corruption was seen at least sometimes
}

static json_t *load_json(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) fail_msg("%s: %s", path, err.text);
    return j;
}

// tests/data/safetensors/all_dtypes.safetensors, written by the reference writer, against its sidecar.
static void test_reads_the_reference_writers_fixture(void **state) {
    safetensors_file *f;
    assert_int_equal(safetensors_open(test_data_path("safetensors/all_dtypes.safetensors"), &f), RILL_OK);
    json_t *want = load_json(test_data_path("safetensors/all_dtypes.json"));
    json_t *tensors = json_object_get(want, "tensors"), *meta = json_object_get(want, "metadata"), *v;
    const char *name;
    assert_int_equal(f->n_tensors, json_object_size(tensors));
    bool seen[DTYPE_COUNT] = {false};
    json_object_foreach(tensors, name, v) {
        const safetensors_tensor *t = safetensors_find(f, name);
        if (!t) fail_msg("tensor '%s' not found", name);
        assert_string_equal(dtype_name(t->dtype), json_string_value(json_object_get(v, "dtype")));
        json_t *shape = json_object_get(v, "shape");
        assert_int_equal(t->n_dims, json_array_size(shape));
        for (int d = 0; d < t->n_dims; d++)
            assert_int_equal(t->shape[d], json_integer_value(json_array_get(shape, d)));
        assert_int_equal(t->n_bytes, json_integer_value(json_object_get(v, "n_bytes")));
        uint8_t digest[SHA256_BYTES];
        char hex[2 * SHA256_BYTES + 1];
        sha256(t->data, t->n_bytes, digest);
        sha256_hex(digest, hex);
        assert_string_equal(hex, json_string_value(json_object_get(v, "sha256")));
        seen[t->dtype] = true;
    }
    for (int t = 1; t < DTYPE_COUNT; t++)
        assert_true(seen[t]);
    assert_int_equal(f->n_meta, json_object_size(meta));
    json_object_foreach(meta, name, v) assert_string_equal(safetensors_meta(f, name), json_string_value(v));
    json_decref(want);
    safetensors_close(f);
}

// The reverse: the reference reader checks a file that rill wrote (skipped without Python).
static void test_reference_reader_reads_what_rill_writes(void **state) {
    static char out[16384];
    if (test_run("python3 -c 'import safetensors, numpy' 2>/dev/null", NULL, 0) != 0) skip();
    static tensor_list l;
    l.n = 0;
    add_every_kind(&l, false);
    const char *p = test_tmp_path(".safetensors");
    char path[4096], cmd[8192];
    snprintf(path, sizeof path, "%s", p);
    write_list(path, &l);
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' 2>&1", test_data_path("../ref/check_safetensors.py"), path);
    int rc = test_run(cmd, out, sizeof out);
    if (rc != 0) fail_msg("check_safetensors.py exited %d:\n%s", rc, out);
    for (size_t i = 0; i < l.n; i++) {
        char line[256];
        int k = snprintf(line, sizeof line, "%s %s [", l.names[i], dtype_name(l.e[i].dtype));
        for (int d = 0; d < l.e[i].n_dims; d++)
            k += snprintf(line + k, sizeof line - (size_t)k, "%s%llu", d ? ", " : "",
                          (unsigned long long)l.e[i].shape[d]);
        snprintf(line + k, sizeof line - (size_t)k, "]\n");
        if (!strstr(out, line)) fail_msg("'%s' not in the output:\n%s", line, out);
    }
    for (int i = 0; i < 3; i++) {
        char line[256];
        snprintf(line, sizeof line, "meta %s=%s\n", meta_keys[i], meta_values[i]);
        assert_non_null(strstr(out, line));
    }
}

// --- sets: folders, indexes, single files ---

typedef struct {
    char dir[4096];
} tmp_dir;

static void make_dir(tmp_dir *d) {
    snprintf(d->dir, sizeof d->dir, "%s", test_tmp_path(".d"));
    assert_int_equal(mkdir(d->dir, 0755), 0);
}

static void remove_dir(const tmp_dir *d) {
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->dir);
    test_run(cmd, NULL, 0);
}

static const char *in_dir(const tmp_dir *d, const char *name) {
    static char p[4][4200];
    static int slot;
    char *r = p[slot++ % 4];
    snprintf(r, sizeof p[0], "%s/%s", d->dir, name);
    return r;
}

// Writes dir/file with F32 [4] pattern tensors of the given names.
static void write_shard(const tmp_dir *d, const char *file, const char *const *names, size_t n) {
    static tensor_list l;
    l.n = 0;
    for (size_t i = 0; i < n; i++)
        add(&l, names[i], DTYPE_F32, 1, (const uint64_t[]){4}, false);
    assert_int_equal(safetensors_write(in_dir(d, file), l.e, l.n, NULL, NULL, 0), RILL_OK);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void assert_pattern_tensor(const safetensors_set *s, const char *name) {
    const safetensors_tensor *t = safetensors_set_find(s, name);
    if (!t) fail_msg("tensor '%s' not found in the set", name);
    uint8_t want[16];
    fill_pattern(name, DTYPE_F32, want, 16);
    assert_int_equal(t->n_bytes, 16);
    assert_memory_equal(t->data, want, 16);
}

static const char *const shard1[] = {"model.embed.weight", "layers.0.w"};
static const char *const shard2[] = {"layers.1.w", "lm_head.weight"};
#define INDEX_JSON(s1, s2)                                                                                             \
    "{\"metadata\": {\"total_size\": 64}, \"weight_map\": {\"model.embed.weight\": \"" s1 "\", "                       \
    "\"layers.0.w\": \"" s1 "\", \"layers.1.w\": \"" s2 "\", \"lm_head.weight\": \"" s2 "\"}}"

static void make_sharded(tmp_dir *d) {
    make_dir(d);
    write_shard(d, "model-00001-of-00002.safetensors", shard1, 2);
    write_shard(d, "model-00002-of-00002.safetensors", shard2, 2);
}

static void test_set_loads_a_sharded_folder_through_its_index(void **state) {
    tmp_dir d;
    make_sharded(&d);
    write_shard(&d, "stray.safetensors", (const char *const[]){"stray"}, 1); // not in the index: ignored
    write_text(in_dir(&d, "model.safetensors.index.json"),
               INDEX_JSON("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"));
    const char *opens[] = {d.dir, in_dir(&d, "model.safetensors.index.json")};
    for (int k = 0; k < 2; k++) {
        safetensors_set *s;
        assert_int_equal(safetensors_set_open(opens[k], &s), RILL_OK);
        assert_int_equal(s->n_files, 2);
        assert_int_equal(s->n_tensors, 4);
        for (int i = 0; i < 2; i++) {
            assert_pattern_tensor(s, shard1[i]);
            assert_pattern_tensor(s, shard2[i]);
        }
        for (size_t i = 1; i < s->n_tensors; i++)
            assert_true(strcmp(s->tensors[i - 1]->name, s->tensors[i]->name) < 0);
        for (size_t i = 0; i < s->n_tensors; i++)
            assert_ptr_equal(safetensors_find(s->owners[i], s->tensors[i]->name), s->tensors[i]);
        assert_null(safetensors_set_find(s, "stray"));
        assert_null(safetensors_set_find(s, "absent"));
        safetensors_set_close(s);
    }
    remove_dir(&d);
}

static void test_set_rejects_bad_indexes(void **state) {
    tmp_dir d;
    make_sharded(&d);
    const char *index = in_dir(&d, "model.safetensors.index.json");
    struct {
        const char *json;
        const char *want;
    } bad[] = {
        {INDEX_JSON("model-00001-of-00002.safetensors", "model-00003-of-00003.safetensors"),
         "shard 'model-00003-of-00003.safetensors'"},
        {INDEX_JSON("model-00002-of-00002.safetensors", "model-00002-of-00002.safetensors"),
         "weight_map['model.embed.weight']: the tensor is not in shard"},
        {INDEX_JSON("model-00001-of-00002.safetensors", "../model-00002-of-00002.safetensors"),
         "not a plain file name"},
        {INDEX_JSON("/etc/passwd", "model-00002-of-00002.safetensors"), "not a plain file name"},
        {INDEX_JSON("model-00001-of-00002.safetensors", ".."), "not a plain file name"},
        {INDEX_JSON("", "model-00002-of-00002.safetensors"), "not a plain file name"},
        {"{\"weight_map\": {\"a\": 5}}", "weight_map['a']"},
        {"{\"weight_map\": [1]}", "'weight_map' is missing or not an object"},
        {"{\"metadata\": {}}", "'weight_map' is missing or not an object"},
        {"{\"weight_map\": {\"a\": \"x\",}}", "line 1 column"},
        {"{\"weight_map\": {\"a\": \"x\", \"a\": \"y\"}}", "duplicate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(index, bad[i].json);
        safetensors_set *s = (safetensors_set *)&s;
        rill_status st = safetensors_set_open(d.dir, &s);
        if (st == RILL_OK || !strstr(rill_last_error(), bad[i].want) || !strstr(rill_last_error(), "index.json"))
            fail_msg("index %zu: status %d, message '%s' (want '%s')", i, st, rill_last_error(), bad[i].want);
        assert_null(s);
    }
    remove_dir(&d);
}

static void test_set_without_index_opens_every_file_and_rejects_a_name_twice(void **state) {
    tmp_dir d;
    make_sharded(&d);
    write_text(in_dir(&d, "notes.txt"), "not a model file");
    safetensors_set *s;
    assert_int_equal(safetensors_set_open(d.dir, &s), RILL_OK);
    assert_int_equal(s->n_files, 2);
    assert_int_equal(s->n_tensors, 4);
    assert_true(strstr(s->files[0]->map.path, "model-00001") != NULL); // files sorted by name
    assert_pattern_tensor(s, "lm_head.weight");
    safetensors_set_close(s);

    write_shard(&d, "extra.safetensors", (const char *const[]){"layers.1.w"}, 1);
    assert_int_equal(safetensors_set_open(d.dir, &s), RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "tensor 'layers.1.w' is in both"));
    assert_null(s);
    remove_dir(&d);

    make_dir(&d);
    assert_int_equal(safetensors_set_open(d.dir, &s), RILL_ENOTFOUND); // an empty folder
    assert_non_null(strstr(rill_last_error(), "no model.safetensors.index.json"));
    remove_dir(&d);
}

static void test_set_opens_a_single_file(void **state) {
    tmp_dir d;
    make_sharded(&d);
    safetensors_set *s;
    assert_int_equal(safetensors_set_open(in_dir(&d, "model-00002-of-00002.safetensors"), &s), RILL_OK);
    assert_int_equal(s->n_files, 1);
    assert_int_equal(s->n_tensors, 2);
    assert_pattern_tensor(s, "layers.1.w");
    assert_null(safetensors_set_find(s, "layers.0.w"));
    safetensors_set_close(s);
    assert_int_equal(safetensors_set_open(in_dir(&d, "absent"), &s), RILL_ENOTFOUND);
    remove_dir(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_dtype_with_metadata),
        cmocka_unit_test(test_writer_aligns_like_the_reference_writer),
        cmocka_unit_test(test_writer_rejects_bad_inputs_and_keeps_the_old_file),
        cmocka_unit_test(test_reader_accepts_padding_whitespace_and_any_order),
        cmocka_unit_test(test_reader_rejects_every_hostile_file_and_names_the_defect),
        cmocka_unit_test(test_every_committed_bad_file_has_an_expectation),
        cmocka_unit_test(test_random_corruption_opens_or_fails_cleanly),
        cmocka_unit_test(test_reads_the_reference_writers_fixture),
        cmocka_unit_test(test_reference_reader_reads_what_rill_writes),
        cmocka_unit_test(test_set_loads_a_sharded_folder_through_its_index),
        cmocka_unit_test(test_set_rejects_bad_indexes),
        cmocka_unit_test(test_set_without_index_opens_every_file_and_rejects_a_name_twice),
        cmocka_unit_test(test_set_opens_a_single_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
