// test_model_formats.c: loading the model formats other than GGUF. From the tiny llama fixture it
// writes (1) an MLX affine-quantized folder (4-bit group 32, one module overridden to 8-bit group 64,
// bf16 scales, embeddings and lm_head quantized too) in two shards with an index, and (2) the same
// weights dequantized into a plain bf16/f32 HF folder; both must give the same logits. Bad folders
// (a missing tensor, a wrong shape, an unknown architecture) fail with messages naming the cause.
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "backend/ref.h"
#include "base/half.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "quant/affine.h"
#include "testlib.h"

typedef struct {
    char name[160];
    rill_dtype dtype;
    int n_dims;
    uint64_t shape[2];
    void *data;
} owned_entry;

static owned_entry entries[2][256]; // [0]: quantized model, [1]: dequantized model
static int n_entries[2];

static owned_entry *add(int which, const char *name, rill_dtype dt, int n_dims, uint64_t r, uint64_t c, size_t bytes) {
    owned_entry *e = &entries[which][n_entries[which]++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->dtype = dt;
    e->n_dims = n_dims;
    e->shape[0] = r;
    e->shape[1] = c;
    e->data = malloc(bytes);
    return e;
}

static bool is_linear(const char *name) {
    return strstr(name, "_proj.weight") || strstr(name, "embed_tokens.weight") || strstr(name, "lm_head.weight");
}

// Builds both models' tensors from the f32 fixture.
static void build(const safetensors_set *src) {
    n_entries[0] = n_entries[1] = 0;
    for (size_t i = 0; i < src->n_tensors; i++) {
        const safetensors_tensor *t = src->tensors[i];
        const float *w = (const float *)t->data;
        if (!is_linear(t->name)) { // norms: bf16 in both
            for (int k = 0; k < 2; k++) {
                owned_entry *e = add(k, t->name, DTYPE_BF16, 1, t->shape[0], 0, t->shape[0] * 2);
                for (uint64_t j = 0; j < t->shape[0]; j++)
                    ((uint16_t *)e->data)[j] = f32_to_bf16(w[j]);
            }
            continue;
        }
        uint64_t rows = t->shape[0], cols = t->shape[1];
        bool eight = strstr(t->name, "layers.1.mlp.down_proj") != NULL;
        int bits = eight ? 8 : 4, group = 32; // down_proj rows are 96 wide: the override changes bits only
        affine_tensor a;
        assert_int_equal(affine_alloc(&a, rows, cols, bits, group, DTYPE_BF16), RILL_OK);
        assert_int_equal(affine_quantize(w, &a), RILL_OK);
        char module[128];
        snprintf(module, sizeof module, "%.*s", (int)(strlen(t->name) - strlen(".weight")), t->name);
        char nm[160];
        size_t words = affine_words_per_row(&a), groups = affine_groups_per_row(&a);
        owned_entry *e = add(0, t->name, DTYPE_U32, 2, rows, words, rows * words * 4);
        memcpy(e->data, a.packed, rows * words * 4);
        snprintf(nm, sizeof nm, "%s.scales", module);
        e = add(0, nm, DTYPE_BF16, 2, rows, groups, rows * groups * 2);
        memcpy(e->data, a.scales, rows * groups * 2);
        snprintf(nm, sizeof nm, "%s.biases", module);
        e = add(0, nm, DTYPE_BF16, 2, rows, groups, rows * groups * 2);
        memcpy(e->data, a.biases, rows * groups * 2);
        // f32 arithmetic (mx.dequantize would round to bf16; rill computes in f32)
        e = add(1, t->name, DTYPE_F32, 2, rows, cols, rows * cols * 4);
        rill_weight rw = {WEIGHT_AFFINE, (int64_t)rows, (int64_t)cols, DTYPE_BF16, NULL, bits,
                          group,         a.packed,      a.scales,      a.biases,   NULL};
        for (uint64_t r = 0; r < rows; r++)
            ref_weight_row(&rw, (int64_t)r, (float *)e->data + r * cols);
        affine_free(&a);
    }
}

static void write_file(int which, const char *path, int from, int to) {
    safetensors_entry es[256];
    for (int i = from; i < to; i++) {
        owned_entry *e = &entries[which][i];
        es[i - from] = (safetensors_entry){e->name, e->dtype, e->n_dims, e->shape, e->data};
    }
    assert_int_equal(safetensors_write(path, es, (size_t)(to - from), NULL, NULL, 0), RILL_OK);
}

static char *make_dir(const char *tag) {
    char *dir = strdup(test_tmp_path(tag));
    assert_int_equal(mkdir(dir, 0755), 0);
    return dir;
}

// config.json of the fixture, with the MLX quantization block when quantized.
static void write_config(const char *dir, bool quantized, const char *model_type) {
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/llama/config.json", test_data_path("tiny"));
    json_error_t err;
    json_t *cfg = json_load_file(src, 0, &err);
    assert_non_null(cfg);
    if (quantized) {
        json_t *q = json_pack("{s:i,s:i,s:s,s:{s:i,s:i}}", "group_size", 32, "bits", 4, "mode", "affine",
                              "model.layers.1.mlp.down_proj", "group_size", 32, "bits", 8);
        json_object_set(cfg, "quantization", q);
        json_object_set_new(cfg, "quantization_config", q);
    }
    if (model_type) json_object_set_new(cfg, "model_type", json_string(model_type));
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    assert_int_equal(json_dump_file(cfg, dst, JSON_INDENT(2)), 0);
    json_decref(cfg);
}

static void logits_of(const char *dir, int32_t *ids, int n, float *out, int vocab) {
    rill_backend *be;
    rill_stream *s;
    rill_model *m;
    rill_cache *c;
    assert_int_equal(backend_open("cpu", 2, &be), RILL_OK);
    assert_int_equal(be->ops->stream_create(be, &s), RILL_OK);
    if (model_load(dir, be, &m) != RILL_OK) fail_msg("%s: %s", dir, rill_last_error());
    assert_int_equal(model_make_cache(m, &c), RILL_OK);
    rill_tensor it = rill_tensor_2d(DTYPE_I32, n, 1, ids), lg;
    assert_int_equal(decoder_forward(m, c, s, &it, true, &lg), RILL_OK);
    be->ops->sync(s);
    for (int t = 0; t < n; t++)
        memcpy(out + (size_t)t * vocab, (float *)lg.data + t * lg.stride, sizeof(float) * vocab);
    cache_free(c);
    model_free(m);
    be->ops->stream_destroy(s);
    backend_close(be);
}

static safetensors_set *fixture(void) {
    char src[512];
    snprintf(src, sizeof src, "%s/llama", test_data_path("tiny"));
    safetensors_set *set;
    assert_int_equal(safetensors_set_open(src, &set), RILL_OK);
    return set;
}

static void test_mlx_quantized_sharded_folder_equals_its_dequantized_weights(void **state) {
    safetensors_set *set = fixture();
    build(set);
    safetensors_set_close(set);
    // the quantized model in two shards with an index
    char *qdir = make_dir("mlx"), path[600];
    write_config(qdir, true, NULL);
    int half = n_entries[0] / 2;
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", qdir);
    write_file(0, path, 0, half);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", qdir);
    write_file(0, path, half, n_entries[0]);
    json_t *map = json_object();
    for (int i = 0; i < n_entries[0]; i++)
        json_object_set_new(
            map, entries[0][i].name,
            json_string(i < half ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors"));
    json_t *index = json_pack("{s:{},s:o}", "metadata", "weight_map", map);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", qdir);
    assert_int_equal(json_dump_file(index, path, 0), 0);
    json_decref(index);
    // the dequantized model
    char *ddir = make_dir("deq");
    write_config(ddir, false, NULL);
    snprintf(path, sizeof path, "%s/model.safetensors", ddir);
    write_file(1, path, 0, n_entries[1]);

    int32_t ids[20];
    for (int i = 0; i < 20; i++)
        ids[i] = (int32_t)(test_rand_u64() % 256);
    float *a = malloc(sizeof(float) * 20 * 256), *b = malloc(sizeof(float) * 20 * 256);
    logits_of(qdir, ids, 20, a, 256);
    logits_of(ddir, ids, 20, b, 256);
    double num = 0, den = 0;
    for (int i = 0; i < 20 * 256; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    printf("MLX 4/8-bit folder vs dequantized f32: relative error %.3g\n", sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-5);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < n_entries[k]; i++)
            free(entries[k][i].data);
    free(a);
    free(b);
    free(qdir);
    free(ddir);
}

// A folder from the fixture with one tensor changed (or dropped, when shape is NULL).
static char *broken_folder(const char *tensor, const uint64_t *shape, const char *model_type) {
    safetensors_set *set = fixture();
    char *dir = make_dir("bad"), path[600];
    write_config(dir, false, model_type);
    safetensors_entry es[256];
    uint64_t shapes[256][2];
    size_t n = 0;
    static float zeros[1 << 16];
    for (size_t i = 0; i < set->n_tensors; i++) {
        const safetensors_tensor *t = set->tensors[i];
        if (!strcmp(t->name, tensor) && !shape) continue;
        shapes[n][0] = t->shape[0];
        shapes[n][1] = t->n_dims > 1 ? t->shape[1] : 0;
        es[n] = (safetensors_entry){t->name, t->dtype, t->n_dims, shapes[n], t->data};
        if (!strcmp(t->name, tensor)) {
            shapes[n][0] = shape[0];
            shapes[n][1] = shape[1];
            es[n].data = zeros;
        }
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(safetensors_write(path, es, n, NULL, NULL, 0), RILL_OK);
    safetensors_set_close(set);
    return dir;
}

static void expect_failure(const char *dir, rill_status want, const char *needle) {
    rill_backend *be;
    rill_model *m;
    assert_int_equal(backend_open("cpu", 1, &be), RILL_OK);
    rill_status st = model_load(dir, be, &m);
    assert_int_equal(st, want);
    if (!strstr(rill_last_error(), needle)) fail_msg("message '%s' does not name '%s'", rill_last_error(), needle);
    backend_close(be);
}

static void test_bad_folders_fail_with_the_tensor_named(void **state) {
    char *d = broken_folder("model.layers.2.mlp.up_proj.weight", NULL, NULL);
    expect_failure(d, RILL_ENOTFOUND, "model.layers.2.mlp.up_proj.weight");
    free(d);
    uint64_t shape[2] = {64, 60};
    d = broken_folder("model.layers.0.self_attn.k_proj.weight", shape, NULL);
    expect_failure(d, RILL_EFORMAT, "model.layers.0.self_attn.k_proj.weight");
    free(d);
    d = broken_folder("model.norm.weight", NULL, "gpt_neox");
    expect_failure(d, RILL_EUNSUPPORTED, "gpt_neox");
    free(d);
    expect_failure("/nonexistent/model", RILL_ENOTFOUND, "/nonexistent/model");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlx_quantized_sharded_folder_equals_its_dequantized_weights),
        cmocka_unit_test(test_bad_folders_fail_with_the_tensor_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
