// test_gguf_decode_smollm2.c: decodes every tensor of the real SmolLM2-135M-Instruct Q4_1 GGUF file
// (GGUF reader + gguf_dequantize) and checks it against gguf-py's decoding, fingerprinted per
// tensor by tests/ref/make_smollm2_hashes.py: the sha256 of the f32 values must match; if it does
// not, the tensor's sum and sum of squares must still agree within 1e-6 relative (and it is reported).
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/sha256.h"
#include "io/gguf.h"
#include "quant/gguf_dequant.h"
#include "testlib.h"

#define MODEL_FILE      "SmolLM2-135M-Instruct.Q4_1.gguf"
#define STATS_TOLERANCE 1e-6

static double rel_err(double got, double want) { return fabs(got - want) / fmax(fabs(want), 1e-30); }

// Compares the fingerprint `want` (one JSON entry) with tensor t decoded into x [n_elements].
// Returns false (after printing why) when they differ beyond the tolerance.
static bool matches_fingerprint(const gguf_tensor *t, const float *x, json_t *want) {
    uint8_t digest[SHA256_BYTES];
    char hex[2 * SHA256_BYTES + 1];
    sha256(x, t->n_elements * sizeof(float), digest);
    sha256_hex(digest, hex);
    if (strcmp(hex, json_string_value(json_object_get(want, "sha256"))) == 0) return true;
    double sum = 0, sumsq = 0;
    for (uint64_t i = 0; i < t->n_elements; i++) {
        sum += x[i];
        sumsq += (double)x[i] * x[i];
    }
    double e_sum = rel_err(sum, json_number_value(json_object_get(want, "sum")));
    double e_sumsq = rel_err(sumsq, json_number_value(json_object_get(want, "sumsq")));
    print_message("%s: sha256 differs from gguf-py; relative error of sum %.3g, of sum of squares %.3g\n", t->name,
                  e_sum, e_sumsq);
    return e_sum <= STATS_TOLERANCE && e_sumsq <= STATS_TOLERANCE;
}

// Checks the name's tensor exists with the fingerprint's type and shape.
static const gguf_tensor *find_described(const gguf_file *f, json_t *want) {
    const char *name = json_string_value(json_object_get(want, "name"));
    assert_non_null(name);
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) fail_msg("tensor %s is missing from the file", name);
    const gguf_dtype_traits *tr = gguf_dtype_info(t->type);
    assert_non_null(tr);
    assert_string_equal(tr->name, json_string_value(json_object_get(want, "type")));
    json_t *shape = json_object_get(want, "shape");
    assert_int_equal(json_array_size(shape), t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++)
        assert_int_equal(json_integer_value(json_array_get(shape, d)), t->ne[d]);
    return t;
}

static void test_every_tensor_decodes_as_gguf_py_does(void **state) {
    const char *path = test_model_path(MODEL_FILE);
    if (!path) {
        print_message(MODEL_FILE " not found under $RILL_MODELS: skipped\n");
        skip();
    }
    json_error_t jerr;
    json_t *doc = json_load_file(test_data_path("smollm2_q4_1_tensors.json"), 0, &jerr);
    if (!doc) fail_msg("smollm2_q4_1_tensors.json:%d:%d: %s", jerr.line, jerr.column, jerr.text);
    json_t *list = json_object_get(doc, "tensors");
    gguf_file *f;
    if (gguf_open(path, &f) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(json_array_size(list), f->n_tensors);

    int n_bad = 0;
    size_t i;
    json_t *want;
    json_array_foreach(list, i, want) {
        const gguf_tensor *t = find_described(f, want);
        float *x = malloc(t->n_elements * sizeof(float));
        assert_non_null(x);
        test_poison_f32(x, t->n_elements);
        if (gguf_dequantize(t->type, t->data, t->n_bytes, x, t->n_elements) != RILL_OK)
            fail_msg("%s", rill_last_error());
        n_bad += !matches_fingerprint(t, x, want);
        free(x);
    }
    gguf_close(f);
    json_decref(doc);
    if (n_bad) fail_msg("%d tensors differ from gguf-py beyond %g relative", n_bad, STATS_TOLERANCE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_tensor_decodes_as_gguf_py_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
