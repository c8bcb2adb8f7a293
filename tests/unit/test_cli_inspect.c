// test_cli_inspect.c: `rill inspect` end to end: the real SmolLM2 GGUF reports the right
// architecture and shapes, and every crafted bad file under tests/data/bad gets a clear message
// and an exit code of 1 or 2, never a signal.
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include <sys/stat.h>

#include "io/safetensors.h"
#include "quant/affine.h"
#include "testlib.h"

static char output[1 << 20];

static const char *rill_bin(void) {
    const char *bin = getenv("RILL_BIN");
    return bin ? bin : "build/bin/rill";
}

static json_int_t config_int(const json_t *report, const char *key) {
    return json_integer_value(json_object_get(json_object_get(report, "config"), key));
}

static void test_inspect_smollm2_reports_llama_shapes(void **state) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model) skip();
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' inspect --json '%s'", rill_bin(), model);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    json_error_t err;
    json_t *r = json_loads(output, 0, &err);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "format")), "gguf");
    assert_string_equal(json_string_value(json_object_get(r, "architecture")), "llama");
    assert_int_equal(config_int(r, "n_layers"), 30);
    assert_int_equal(config_int(r, "hidden_size"), 576);
    assert_int_equal(config_int(r, "n_heads"), 9);
    assert_int_equal(config_int(r, "n_kv_heads"), 3);
    assert_int_equal(config_int(r, "vocab_size"), 49152);
    assert_true(json_integer_value(json_object_get(r, "parameter_count")) > 100000000);
    assert_true(json_is_true(json_object_get(r, "chat_template")));
    assert_non_null(json_object_get(json_object_get(r, "bytes_by_type"), "Q4_1"));
    json_decref(r);

    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", rill_bin(), model);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    assert_non_null(strstr(output, "architecture:    llama"));
    assert_non_null(strstr(output, "layers:          30"));
}

static void test_inspect_gemma3_reports_sliding_window(void **state) {
    const char *model = test_model_path("gemma-3-270m-Q4_K_M.gguf");
    if (!model) skip();
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' inspect --json '%s'", rill_bin(), model);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    json_t *r = json_loads(output, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "architecture")), "gemma3");
    assert_int_equal(config_int(r, "n_layers"), 18);
    assert_true(config_int(r, "sliding_window") > 0);
    assert_non_null(json_object_get(json_object_get(r, "bytes_by_type"), "Q4_K"));
    json_decref(r);
}

// An MLX-style quantized folder: one 4-bit layer, one 8-bit override, one dense norm, made with
// rill's own quantizer and writer. inspect counts each quantized layer by its logical size.
static void test_inspect_mlx_folder_counts_quantized_layers(void **state) {
    const char *dir = test_tmp_path("-mlx");
    assert_int_equal(mkdir(dir, 0755), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, "{\"model_type\": \"llama\", \"vocab_size\": 64, \"hidden_size\": 128,"
                " \"intermediate_size\": 256, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                " \"quantization\": {\"group_size\": 64, \"bits\": 4,"
                " \"model.layers.0.mlp.up_proj\": {\"group_size\": 32, \"bits\": 8}}}");
    fclose(fp);
    enum { ROWS = 256, COLS = 128 };
    static float w[ROWS * COLS];
    affine_tensor q4, q8;
    test_fill_normal(w, ROWS * COLS, 0.02f);
    assert_int_equal(affine_alloc(&q4, ROWS, COLS, 4, 64, DTYPE_F16), RILL_OK);
    assert_int_equal(affine_alloc(&q8, ROWS, COLS, 8, 32, DTYPE_F16), RILL_OK);
    assert_int_equal(affine_quantize(w, &q4), RILL_OK);
    assert_int_equal(affine_quantize(w, &q8), RILL_OK);
    uint64_t s4w[2] = {ROWS, COLS * 4 / 32}, s4s[2] = {ROWS, COLS / 64};
    uint64_t s8w[2] = {ROWS, COLS * 8 / 32}, s8s[2] = {ROWS, COLS / 32}, snorm[1] = {COLS};
    const safetensors_entry entries[] = {
        {"model.layers.0.mlp.gate_proj.weight", DTYPE_U32, 2, s4w, q4.packed},
        {"model.layers.0.mlp.gate_proj.scales", DTYPE_F16, 2, s4s, q4.scales},
        {"model.layers.0.mlp.gate_proj.biases", DTYPE_F16, 2, s4s, q4.biases},
        {"model.layers.0.mlp.up_proj.weight", DTYPE_U32, 2, s8w, q8.packed},
        {"model.layers.0.mlp.up_proj.scales", DTYPE_F16, 2, s8s, q8.scales},
        {"model.layers.0.mlp.up_proj.biases", DTYPE_F16, 2, s8s, q8.biases},
        {"model.norm.weight", DTYPE_F32, 1, snorm, w},
    };
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(safetensors_write(path, entries, 7, NULL, NULL, 0), RILL_OK);
    affine_free(&q4);
    affine_free(&q8);

    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' inspect --json '%s'", rill_bin(), dir);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    json_t *r = json_loads(output, 0, NULL);
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "format")), "folder");
    assert_int_equal(json_integer_value(json_object_get(r, "tensor_count")), 7);
    assert_int_equal(json_integer_value(json_object_get(r, "parameter_count")), 2 * ROWS * COLS + COLS);
    json_t *by = json_object_get(r, "bytes_by_type");
    assert_int_equal(json_integer_value(json_object_get(by, "affine-q4-g64")), ROWS * COLS / 2 + 2 * ROWS * 2 * 2);
    assert_int_equal(json_integer_value(json_object_get(by, "affine-q8-g32")), ROWS * COLS + 2 * ROWS * 4 * 2);
    assert_int_equal(json_integer_value(json_object_get(by, "F32")), COLS * 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "config"), "n_layers")), 1);
    json_decref(r);
}

// Runs `rill inspect` on one bad file: it must fail with 1 or 2 and say why on stderr.
static int check_bad_file(const char *path) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s' 2>&1 >/dev/null", rill_bin(), path);
    int rc = test_run(cmd, output, sizeof output);
    if (rc != 1 && rc != 2) {
        fprintf(stderr, "%s: exit %d, output: %s\n", path, rc, output);
        return 0;
    }
    if (strncmp(output, "rill: ", 6) != 0 || strlen(output) < 20) {
        fprintf(stderr, "%s: unclear message: %s\n", path, output);
        return 0;
    }
    return 1;
}

static int check_bad_dir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    if (!d) return 1;
    int ok = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_type == DT_DIR) {
            ok &= check_bad_dir(path, count);
        } else {
            ok &= check_bad_file(path);
            (*count)++;
        }
    }
    closedir(d);
    return ok;
}

static void test_inspect_rejects_every_bad_file_cleanly(void **state) {
    int count = 0;
    assert_true(check_bad_dir(test_data_path("bad"), &count));
    assert_true(count >= 12);
}

static void test_inspect_usage_errors_exit_2(void **state) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' inspect 2>&1", rill_bin());
    assert_int_equal(test_run(cmd, output, sizeof output), 2);
    snprintf(cmd, sizeof cmd, "'%s' inspect --bogus x 2>&1", rill_bin());
    assert_int_equal(test_run(cmd, output, sizeof output), 2);
    snprintf(cmd, sizeof cmd, "'%s' inspect /nonexistent/model.gguf 2>&1", rill_bin());
    assert_int_equal(test_run(cmd, output, sizeof output), 1);
    assert_non_null(strstr(output, "/nonexistent/model.gguf"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect_smollm2_reports_llama_shapes),
        cmocka_unit_test(test_inspect_gemma3_reports_sliding_window),
        cmocka_unit_test(test_inspect_mlx_folder_counts_quantized_layers),
        cmocka_unit_test(test_inspect_rejects_every_bad_file_cleanly),
        cmocka_unit_test(test_inspect_usage_errors_exit_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
