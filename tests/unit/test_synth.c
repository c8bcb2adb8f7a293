// test_synth.c: rill synth writes model folders with the real shapes of a config: every tensor
// that the architecture needs, MLX's quantized layout at 4 and 8 bits, bf16 at 16 bits, the
// same bytes for the same seed, and clear errors for what it can't make.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/mapfile.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/synth.h"
#include "testlib.h"

static const char *TINY_QWEN2 =
    "{\"model_type\":\"qwen2\",\"vocab_size\":256,\"hidden_size\":128,\"intermediate_size\":384,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"tie_word_embeddings\":false}";

static void expect_shape(const safetensors_set *s, const char *name, rill_dtype dtype, uint64_t d0, uint64_t d1) {
    const safetensors_tensor *t = safetensors_set_find(s, name);
    if (!t) fail_msg("missing tensor %s", name);
    assert_int_equal(t->dtype, dtype);
    assert_int_equal(t->shape[0], d0);
    if (d1) assert_int_equal(t->shape[1], d1);
}

static void test_synth_qwen2_at_4_bits_has_every_tensor_in_mlx_layout(void **state) {
    const char *dir = test_tmp_path("-synth");
    synth_options o = {.bits = 4, .group_size = 64, .seed = 7};
    assert_int_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, dir), RILL_OK);
    safetensors_set *s;
    assert_int_equal(safetensors_set_open(dir, &s), RILL_OK);
    // embed + 2 layers x (q,k,v,o,gate,up,down quantized: 3 tensors each; 2 norms; 3 biases) + norm + lm_head
    assert_int_equal(s->n_tensors, 3 + 2 * (7 * 3 + 2 + 3) + 1 + 3);
    expect_shape(s, "model.embed_tokens.weight", DTYPE_U32, 256, 128 * 4 / 32);
    expect_shape(s, "model.embed_tokens.scales", DTYPE_BF16, 256, 2);
    expect_shape(s, "model.layers.1.self_attn.k_proj.weight", DTYPE_U32, 64, 16);
    expect_shape(s, "model.layers.1.self_attn.k_proj.bias", DTYPE_BF16, 64, 0);
    expect_shape(s, "model.layers.0.mlp.down_proj.biases", DTYPE_BF16, 128, 384 / 64);
    expect_shape(s, "lm_head.weight", DTYPE_U32, 256, 16);
    safetensors_set_close(s);

    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    rill_model_config cfg;
    assert_int_equal(model_config_from_json_file(path, &cfg), RILL_OK);
    int bits = 0, group = 0;
    assert_true(model_config_quant_for(&cfg, "model.layers.0.mlp.up_proj", &bits, &group));
    assert_int_equal(bits, 4);
    assert_int_equal(group, 64);
    model_config_free(&cfg);
}

static void test_synth_same_seed_gives_same_bytes(void **state) {
    const char *a = test_tmp_path("-a"), *b = test_tmp_path("-b");
    synth_options o = {.bits = 8, .group_size = 32, .seed = 42};
    assert_int_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, a), RILL_OK);
    assert_int_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, b), RILL_OK);
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/model-00001.safetensors", a);
    snprintf(pb, sizeof pb, "%s/model-00001.safetensors", b);
    mapped_file ma, mb;
    assert_int_equal(mapped_file_open(&ma, pa, 0), RILL_OK);
    assert_int_equal(mapped_file_open(&mb, pb, 0), RILL_OK);
    assert_int_equal(ma.size, mb.size);
    assert_memory_equal(ma.data, mb.data, ma.size);
    mapped_file_close(&ma);
    mapped_file_close(&mb);
}

static void test_synth_presets_parse_and_bf16_has_dense_weights(void **state) {
    for (const char *const *n = synth_preset_names(); *n; n++) {
        rill_model_config cfg;
        assert_int_equal(model_config_from_json_string(synth_preset_config(*n), *n, &cfg), RILL_OK);
        model_config_free(&cfg);
    }
    const char *dir = test_tmp_path("-bf16");
    synth_options o = {.bits = 16, .seed = 3, .shard_max = 100000}; // small shards: several files
    assert_int_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, dir), RILL_OK);
    safetensors_set *s;
    assert_int_equal(safetensors_set_open(dir, &s), RILL_OK);
    assert_true(s->n_files > 1);
    expect_shape(s, "model.layers.0.self_attn.q_proj.weight", DTYPE_BF16, 128, 128);
    assert_null(safetensors_set_find(s, "model.layers.0.self_attn.q_proj.scales"));
    safetensors_set_close(s);
}

static void test_synth_rejects_what_it_cannot_make(void **state) {
    synth_options o = {.bits = 5, .group_size = 64};
    const char *dir = test_tmp_path("-bad");
    assert_int_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, dir), RILL_EINVAL);
    assert_non_null(strstr(rill_last_error(), "--bits 5"));
    o.bits = 4;
    o.group_size = 256; // 128 columns are not a multiple of 256
    assert_int_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, dir), RILL_EINVAL);
    assert_non_null(strstr(rill_last_error(), "group size"));
    o.group_size = 64;
    assert_int_not_equal(synth_write_folder("{\"model_type\": \"nope\"}", "bad.json", &o, dir), RILL_OK);
    assert_int_not_equal(synth_write_folder(TINY_QWEN2, "tiny", &o, "/proc/forbidden/x"), RILL_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_synth_qwen2_at_4_bits_has_every_tensor_in_mlx_layout),
        cmocka_unit_test(test_synth_same_seed_gives_same_bytes),
        cmocka_unit_test(test_synth_presets_parse_and_bf16_has_dense_weights),
        cmocka_unit_test(test_synth_rejects_what_it_cannot_make),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
