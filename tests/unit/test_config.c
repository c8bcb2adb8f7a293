// test_config.c: the model config: every committed config.json fixture (tests/ref/
// make_config_fixtures.py) parses with the real models' values, MLX quantization overrides are
// honoured, bad configs fail with messages that name the file and the field, and the GGUF reader
// gives the same struct from real GGUF files (skipped when absent).
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/status.h"
#include "io/gguf.h"
#include "model/config.h"
#include "testlib.h"

static void load_fixture(const char *name, rill_model_config *cfg) {
    char rel[256];
    snprintf(rel, sizeof rel, "configs/%s/config.json", name);
    rill_status st = model_config_from_json_file(test_data_path(rel), cfg);
    if (st != RILL_OK) fail_msg("%s: %s", name, rill_last_error());
}

static int count_sliding(const rill_model_config *c) {
    int n = 0;
    for (int i = 0; i < c->n_layers; i++)
        n += c->layer_attn[i] == ATTN_SLIDING;
    return n;
}

static void assert_eos(const rill_model_config *c, int n, const int *ids) {
    assert_int_equal(c->n_eos, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(c->eos_ids[i], ids[i]);
}

static void test_llama31_has_llama3_rope_scaling_and_three_eos_ids(void **state) {
    size_t mem = rill_memory_current();
    rill_model_config c;
    load_fixture("llama-3.1-8b-instruct", &c);
    assert_int_equal(c.arch, MODEL_ARCH_LLAMA);
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.vocab_size, 128256);
    assert_int_equal(c.hidden_size, 4096);
    assert_int_equal(c.intermediate_size, 14336);
    assert_int_equal(c.n_layers, 32);
    assert_int_equal(c.n_heads, 32);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 128);
    assert_float_equal(c.rms_norm_eps, 1e-5, 1e-12);
    assert_float_equal(c.rope_theta, 500000.0, 0);
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_LLAMA3);
    assert_float_equal(c.rope_scaling.factor, 8.0, 0);
    assert_float_equal(c.rope_scaling.low_freq_factor, 1.0, 0);
    assert_float_equal(c.rope_scaling.high_freq_factor, 4.0, 0);
    assert_int_equal(c.rope_scaling.original_max_position_embeddings, 8192);
    assert_int_equal(c.max_position_embeddings, 131072);
    assert_false(c.tie_word_embeddings);
    assert_int_equal(c.sliding_window, 0);
    assert_int_equal(count_sliding(&c), 0);
    assert_false(c.qkv_bias || c.attention_bias || c.mlp_bias || c.qk_norm);
    assert_int_equal(c.bos_id, 128000);
    assert_eos(&c, 3, (int[]){128001, 128008, 128009});
    assert_string_equal(c.torch_dtype, "bfloat16");
    assert_string_equal(c.hidden_act, "silu");
    assert_false(c.quant.enabled);
    assert_false(model_config_quant_for(&c, "model.layers.0.self_attn.q_proj", NULL, NULL));
    assert_string_equal(model_arch_name(c.arch), "llama");
    model_config_free(&c);
    assert_int_equal(rill_memory_current(), mem);
}

static void test_mistral_v01_slides_on_every_layer(void **state) {
    rill_model_config c;
    load_fixture("mistral-7b-v0.1", &c);
    assert_int_equal(c.arch, MODEL_ARCH_MISTRAL);
    assert_int_equal(c.sliding_window, 4096);
    assert_int_equal(count_sliding(&c), 32);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_NONE);
    assert_float_equal(c.rope_theta, 10000.0, 0);
    assert_int_equal(c.max_position_embeddings, 32768);
    assert_int_equal(c.bos_id, 1);
    assert_eos(&c, 1, (int[]){2});
    model_config_free(&c);
}

static void test_qwen25_has_qkv_bias_and_no_sliding_layers(void **state) {
    rill_model_config c;
    load_fixture("qwen2.5-7b", &c);
    assert_int_equal(c.arch, MODEL_ARCH_QWEN2);
    assert_int_equal(c.vocab_size, 152064);
    assert_int_equal(c.hidden_size, 3584);
    assert_int_equal(c.n_heads, 28);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.head_dim, 128);
    assert_true(c.qkv_bias);
    assert_false(c.attention_bias);
    assert_false(c.qk_norm);
    assert_int_equal(count_sliding(&c), 0);
    assert_int_equal(c.sliding_window, 0);
    assert_float_equal(c.rope_theta, 1e6, 0);
    assert_eos(&c, 1, (int[]){151643});
    model_config_free(&c);
}

static void test_qwen3_has_qk_norm_explicit_head_dim_and_tied_embeddings(void **state) {
    rill_model_config c;
    load_fixture("qwen3-0.6b", &c);
    assert_int_equal(c.arch, MODEL_ARCH_QWEN3);
    assert_int_equal(c.hidden_size, 1024);
    assert_int_equal(c.n_heads, 16);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 128); // not 1024 / 16
    assert_true(c.qk_norm);
    assert_false(c.qkv_bias);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.max_position_embeddings, 40960);
    assert_eos(&c, 1, (int[]){151645});
    model_config_free(&c);
}

static void assert_gemma3_270m_pattern(const rill_model_config *c) {
    assert_int_equal(c->n_layers, 18);
    for (int i = 0; i < c->n_layers; i++)
        assert_int_equal(c->layer_attn[i], (i + 1) % 6 ? ATTN_SLIDING : ATTN_GLOBAL);
    assert_int_equal(c->sliding_window, 512);
}

static void test_gemma3_270m_has_five_sliding_layers_per_global_one(void **state) {
    rill_model_config c;
    load_fixture("gemma-3-270m", &c);
    assert_int_equal(c.arch, MODEL_ARCH_GEMMA3);
    assert_string_equal(c.model_type, "gemma3_text");
    assert_gemma3_270m_pattern(&c);
    assert_int_equal(c.hidden_size, 640);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 1);
    assert_int_equal(c.head_dim, 256);
    assert_int_equal(c.vocab_size, 262144);
    assert_float_equal(c.rope_theta, 1e6, 0);
    assert_float_equal(c.rope_local_theta, 1e4, 0);
    assert_float_equal(c.query_pre_attn_scalar, 256, 0);
    assert_float_equal(c.final_logit_softcapping, 0, 0);
    assert_float_equal(c.attn_logit_softcapping, 0, 0);
    assert_string_equal(c.hidden_act, "gelu_pytorch_tanh");
    assert_true(c.qk_norm);
    assert_true(c.tie_word_embeddings);
    assert_int_equal(c.bos_id, 2);
    assert_eos(&c, 1, (int[]){1});
    model_config_free(&c);
}

static void test_deepseek_v3_reads_mla_moe_and_yarn(void **state) {
    rill_model_config c;
    load_fixture("deepseek-v3", &c);
    assert_int_equal(c.arch, MODEL_ARCH_DEEPSEEK_V3);
    assert_int_equal(c.n_layers, 61);
    assert_int_equal(c.q_lora_rank, 1536);
    assert_int_equal(c.kv_lora_rank, 512);
    assert_int_equal(c.qk_nope_head_dim, 128);
    assert_int_equal(c.qk_rope_head_dim, 64);
    assert_int_equal(c.v_head_dim, 128);
    assert_int_equal(c.head_dim, 192);
    assert_int_equal(c.n_routed_experts, 256);
    assert_int_equal(c.n_shared_experts, 1);
    assert_int_equal(c.num_experts_per_tok, 8);
    assert_int_equal(c.moe_intermediate_size, 2048);
    assert_int_equal(c.first_k_dense_replace, 3);
    assert_int_equal(c.moe_layer_freq, 1);
    assert_int_equal(c.n_group, 8);
    assert_int_equal(c.topk_group, 4);
    assert_float_equal(c.routed_scaling_factor, 2.5, 0);
    assert_true(c.norm_topk_prob);
    assert_string_equal(c.scoring_func, "sigmoid");
    assert_string_equal(c.topk_method, "noaux_tc");
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_YARN);
    assert_float_equal(c.rope_scaling.factor, 40, 0);
    assert_float_equal(c.rope_scaling.beta_fast, 32, 0);
    assert_float_equal(c.rope_scaling.beta_slow, 1, 0);
    assert_float_equal(c.rope_scaling.mscale, 1, 0);
    assert_float_equal(c.rope_scaling.mscale_all_dim, 1, 0);
    assert_int_equal(c.rope_scaling.original_max_position_embeddings, 4096);
    assert_int_equal(c.max_position_embeddings, 163840);
    assert_string_equal(rope_scaling_name(c.rope_scaling.type), "yarn");
    model_config_free(&c);
}

static void assert_quant(const rill_model_config *c, const char *module, bool quantized, int bits, int gs) {
    int b = -1, g = -1;
    bool q = model_config_quant_for(c, module, &b, &g);
    if (q != quantized) fail_msg("%s: quantized %d, expected %d", module, q, quantized);
    if (!quantized) return;
    if (b != bits || g != gs) fail_msg("%s: bits %d group %d, expected %d and %d", module, b, g, bits, gs);
}

static void test_mlx_mixed_quantization_honours_per_module_overrides(void **state) {
    rill_model_config c;
    load_fixture("mlx-llama-3.2-1b-mixed_3_6", &c);
    assert_true(c.quant.enabled);
    assert_int_equal(c.quant.bits, 3);
    assert_int_equal(c.quant.group_size, 64);
    assert_string_equal(c.quant.mode, "affine");
    assert_string_equal(c.quant.method, "");
    assert_int_equal(c.quant.n_overrides, 2 * 8 + 2); // layers 0,1,2,5,8,11,14,15; embeddings; one false
    assert_quant(&c, "model.layers.4.self_attn.q_proj", true, 3, 64);
    assert_quant(&c, "model.layers.0.self_attn.v_proj", true, 6, 64);
    assert_quant(&c, "model.layers.2.mlp.down_proj", true, 6, 64);
    assert_quant(&c, "model.layers.3.self_attn.v_proj", true, 3, 64);
    assert_quant(&c, "model.layers.15.mlp.down_proj", true, 6, 64);
    assert_quant(&c, "model.embed_tokens", true, 6, 32);
    assert_quant(&c, "model.layers.7.mlp.gate_proj", false, 0, 0);
    assert_quant(&c, "model.layers.7.mlp.up_proj", true, 3, 64);
    // the older layout: rope_theta + rope_scaling, torch_dtype
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_LLAMA3);
    assert_float_equal(c.rope_scaling.factor, 32, 0);
    assert_float_equal(c.rope_theta, 500000, 0);
    assert_int_equal(c.head_dim, 64);
    assert_true(c.tie_word_embeddings);
    assert_string_equal(c.torch_dtype, "bfloat16");
    model_config_free(&c);
}

static rill_status parse(const char *json, rill_model_config *c) {
    return model_config_from_json_string(json, "t.json", c);
}

#define BASE                                                                                                           \
    "\"model_type\": \"%s\", \"vocab_size\": 1000, \"hidden_size\": 64, \"intermediate_size\": 128, "                  \
    "\"num_hidden_layers\": 4, \"num_attention_heads\": 4"

static rill_status parsef(rill_model_config *c, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return parse(buf, c);
}

static void test_qwen2_slides_only_from_max_window_layers_on(void **state) {
    rill_model_config c;
    assert_int_equal(parsef(&c,
                            "{" BASE ", \"use_sliding_window\": true, \"sliding_window\": 256, "
                            "\"max_window_layers\": 2}",
                            "qwen2"),
                     RILL_OK);
    assert_int_equal(c.layer_attn[0], ATTN_GLOBAL);
    assert_int_equal(c.layer_attn[1], ATTN_GLOBAL);
    assert_int_equal(c.layer_attn[2], ATTN_SLIDING);
    assert_int_equal(c.layer_attn[3], ATTN_SLIDING);
    assert_int_equal(c.sliding_window, 256);
    assert_int_equal(c.n_kv_heads, 4); // defaults to the head count
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.bos_id, -1);
    assert_int_equal(c.n_eos, 0);
    model_config_free(&c);
}

static void test_null_means_not_used_rather_than_the_family_default(void **state) {
    rill_model_config c;
    assert_int_equal(parsef(&c,
                            "{" BASE ", \"sliding_window\": null, \"num_key_value_heads\": null, "
                            "\"head_dim\": null, \"rope_scaling\": null, \"eos_token_id\": null}",
                            "mistral"),
                     RILL_OK);
    assert_int_equal(count_sliding(&c), 0);
    assert_int_equal(c.n_kv_heads, 4);
    assert_int_equal(c.n_eos, 0);
    model_config_free(&c);
    // DeepSeek V2-Lite style: q_lora_rank null, a plain q projection
    assert_int_equal(parsef(&c, "{" BASE ", \"q_lora_rank\": null}", "deepseek_v3"), RILL_OK);
    assert_int_equal(c.q_lora_rank, 0);
    assert_int_equal(c.kv_lora_rank, 512); // transformers' default
    model_config_free(&c);
}

static void test_gemma3_older_layout_and_nested_text_config(void **state) {
    rill_model_config c;
    // transformers 4.x gemma3: pattern and local base instead of layer_types and rope_parameters
    assert_int_equal(parsef(&c,
                            "{" BASE ", \"num_hidden_layers\": 12, \"sliding_window_pattern\": 3, "
                            "\"sliding_window\": 1024, \"rope_local_base_freq\": 20000.0, "
                            "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}}",
                            "gemma3_text"),
                     RILL_OK);
    assert_int_equal(count_sliding(&c), 8);
    assert_int_equal(c.layer_attn[2], ATTN_GLOBAL);
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_LINEAR);
    assert_float_equal(c.rope_scaling.factor, 8, 0);
    assert_float_equal(c.rope_theta, 1e6, 0);
    assert_float_equal(c.rope_local_theta, 20000, 0);
    assert_int_equal(c.head_dim, 256); // Gemma3TextConfig's default, not hidden / heads
    model_config_free(&c);
    assert_int_equal(
        parse("{\"model_type\": \"gemma3\", \"quantization\": {\"bits\": 4, \"group_size\": 64}, "
              "\"text_config\": {\"model_type\": \"gemma3_text\", \"vocab_size\": 1000, \"hidden_size\": 64,"
              " \"intermediate_size\": 128, \"num_hidden_layers\": 6, \"num_attention_heads\": 4}}",
              &c),
        RILL_OK);
    assert_int_equal(c.arch, MODEL_ARCH_GEMMA3);
    assert_int_equal(count_sliding(&c), 5);
    assert_true(c.quant.enabled);
    model_config_free(&c);
    assert_int_equal(parse("{\"model_type\": \"gemma3\", \"text_config\": {\"hidden_size\": \"x\"}}", &c),
                     RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "t.json: text_config.hidden_size: expected an integer"));
}

static void test_foreign_quantization_config_is_recorded_not_applied(void **state) {
    rill_model_config c;
    assert_int_equal(
        parsef(&c, "{" BASE ", \"quantization_config\": {\"quant_method\": \"fp8\", \"fmt\": \"e4m3\"}}", "llama"),
        RILL_OK);
    assert_false(c.quant.enabled);
    assert_string_equal(c.quant.method, "fp8");
    assert_false(model_config_quant_for(&c, "model.layers.0.mlp.up_proj", NULL, NULL));
    model_config_free(&c);
}

typedef struct {
    const char *json; // "%s" receives the model type
    rill_status st;
    const char *msg; // must appear in the message
} bad_case;

static const bad_case bad_cases[] = {
    {"{\"model_type\": \"%s\", \"vocab_size\": 1000, \"intermediate_size\": 128, \"num_hidden_layers\": 4, "
     "\"num_attention_heads\": 4}",
     RILL_EFORMAT, "t.json: hidden_size: required field is missing"},
    {"{" BASE ", \"num_attention_heads\": 0}", RILL_ERANGE, "t.json: num_attention_heads: 0 is outside"},
    {"{" BASE ", \"num_attention_heads\": 3}", RILL_EFORMAT, "t.json: num_attention_heads: 3 heads do not divide"},
    {"{" BASE ", \"num_key_value_heads\": 3}", RILL_EFORMAT, "t.json: num_key_value_heads: 3 key/value heads"},
    {"{" BASE ", \"hidden_size\": \"64\"}", RILL_EFORMAT, "t.json: hidden_size: expected an integer, got a string"},
    {"{" BASE ",\n \"rms_norm_eps\": 1e-5,,\n}", RILL_EFORMAT, "t.json:2:"},
    {"{\"model_type\": \"gpt2\", \"x\": \"%s\"}", RILL_EUNSUPPORTED, "t.json: model_type: 'gpt2' is not supported"},
    {"{" BASE ", \"num_hidden_layers\": 2000000}", RILL_ERANGE, "t.json: num_hidden_layers: 2e+06 is outside"},
    {"{" BASE ", \"intermediate_size\": -5}", RILL_ERANGE, "t.json: intermediate_size: -5 is outside"},
    {"{" BASE ", \"quantization\": {\"group_size\": 64, \"bits\": 7}}", RILL_EUNSUPPORTED,
     "t.json: quantization.bits: 7 bits is not supported"},
    {"{" BASE ", \"quantization\": {\"group_size\": 48, \"bits\": 4}}", RILL_EUNSUPPORTED,
     "t.json: quantization.group_size: 48"},
    {"{" BASE ", \"quantization\": {\"group_size\": 64}}", RILL_EFORMAT, "t.json: quantization.bits: required"},
    {"{" BASE ", \"quantization\": {\"group_size\": 64, \"bits\": 4, \"mode\": \"mxfp4\"}}", RILL_EUNSUPPORTED,
     "t.json: quantization.mode: 'mxfp4'"},
    {"{" BASE ", \"quantization\": {\"group_size\": 64, \"bits\": 4, \"model.layers.0.mlp.up_proj\": {\"bits\": 9}}}",
     RILL_EUNSUPPORTED, "t.json: quantization[\"model.layers.0.mlp.up_proj\"].bits: 9 bits"},
    {"{" BASE ", \"quantization\": {\"group_size\": 64, \"bits\": 4, \"lm_head\": {\"bits\": true}}}", RILL_EFORMAT,
     "t.json: quantization[\"lm_head\"].bits: expected an integer, got a boolean"},
    {"{" BASE ", \"layer_types\": [\"full_attention\"]}", RILL_EFORMAT, "t.json: layer_types: 1 entries for 4"},
    {"{" BASE ", \"layer_types\": [\"full_attention\", \"x\", \"full_attention\", \"full_attention\"]}",
     RILL_EUNSUPPORTED, "t.json: layer_types[1]: expected"},
    {"{" BASE ", \"rope_scaling\": {\"type\": \"longrope\", \"factor\": 2}}", RILL_EUNSUPPORTED,
     "t.json: rope_scaling.type: RoPE scaling 'longrope'"},
    {"{" BASE ", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": -2}}", RILL_ERANGE,
     "t.json: rope_scaling.factor: -2 is outside"},
    {"{" BASE ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": \"big\"}}", RILL_EFORMAT,
     "t.json: rope_parameters.rope_theta: expected a number"},
    {"{" BASE ", \"eos_token_id\": \"</s>\"}", RILL_EFORMAT, "t.json: eos_token_id: expected an integer or a list"},
    {"{" BASE ", \"eos_token_id\": [1, -2]}", RILL_ERANGE, "t.json: eos_token_id: token id -2"},
    {"{" BASE ", \"tie_word_embeddings\": 1}", RILL_EFORMAT, "t.json: tie_word_embeddings: expected a boolean"},
    {"[\"%s\"]", RILL_EFORMAT, "t.json: the top level is not a JSON object"},
    {"{\"vocab_size\": 5, \"x\": \"%s\"}", RILL_EFORMAT, "t.json: model_type: required field is missing"},
    {"{" BASE ", \"sliding_window\": null, \"layer_types\": [\"full_attention\", \"full_attention\", "
     "\"full_attention\", \"sliding_attention\"]}",
     RILL_EFORMAT, "t.json: sliding_window: some layers use sliding attention"},
};

static void test_bad_configs_fail_with_the_file_and_the_field(void **state) {
    size_t mem = rill_memory_current();
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *b = &bad_cases[i];
        rill_model_config c;
        rill_clear_error();
        rill_status st = parsef(&c, b->json, "qwen2");
        if (st != b->st || !strstr(rill_last_error(), b->msg))
            fail_msg("case %zu: status %s, message \"%s\"; expected %s with \"%s\"", i, rill_status_name(st),
                     rill_last_error(), rill_status_name(b->st), b->msg);
        assert_null(c.layer_attn); // left empty on failure
    }
    assert_int_equal(rill_memory_current(), mem);
}

static void test_bad_deepseek_moe_and_mla_are_rejected(void **state) {
    rill_model_config c;
    assert_int_equal(parsef(&c, "{" BASE ", \"num_experts_per_tok\": 300}", "deepseek_v3"), RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "t.json: num_experts_per_tok: 300 experts per token out of 256"));
    assert_int_equal(parsef(&c, "{" BASE ", \"n_group\": 7}", "deepseek_v3"), RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "t.json: n_group, topk_group"));
    assert_int_equal(parsef(&c, "{" BASE ", \"v_head_dim\": 0}", "deepseek_v3"), RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "MLA (kv_lora_rank 512) needs all three head sizes"));
}

static void test_bad_json_file_reports_path_line_and_column(void **state) {
    const char *text = "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 4096\n  \"x\": 1\n}\n";
    const char *path = test_write_tmp(".json", text, strlen(text));
    rill_model_config c;
    assert_int_equal(model_config_from_json_file(path, &c), RILL_EFORMAT);
    char want[4200];
    snprintf(want, sizeof want, "%s:4:", path);
    if (!strstr(rill_last_error(), want)) fail_msg("message: %s", rill_last_error());
    assert_int_equal(model_config_from_json_file("/nonexistent/config.json", &c), RILL_EIO);
    assert_non_null(strstr(rill_last_error(), "/nonexistent/config.json"));
}

// Every top-level key of every fixture, set to a value of the wrong type: the parse either ignores
// the key (rill does not read it) or fails with a message that names it. Never crashes or leaks.
static void test_every_fixture_key_with_a_wrong_type_is_named_or_ignored(void **state) {
    static const char *names[] = {
        "llama-3.1-8b-instruct", "mistral-7b-v0.1",           "qwen2.5-7b", "qwen3-0.6b", "gemma-3-270m",
        "deepseek-v3",           "mlx-llama-3.2-1b-mixed_3_6"};
    size_t mem = rill_memory_current();
    for (size_t n = 0; n < sizeof names / sizeof names[0]; n++) {
        char rel[256];
        snprintf(rel, sizeof rel, "configs/%s/config.json", names[n]);
        json_t *root = json_load_file(test_data_path(rel), 0, NULL);
        assert_non_null(root);
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            json_t *copy = json_deep_copy(root);
            json_object_set_new(copy, key, json_is_string(v) ? json_integer(7) : json_string("x"));
            char *text = json_dumps(copy, 0);
            rill_model_config c;
            rill_status st = parse(text, &c);
            if (st != RILL_OK && !strstr(rill_last_error(), key))
                fail_msg("%s, key %s: message does not name it: %s", names[n], key, rill_last_error());
            if (st == RILL_OK) model_config_free(&c);
            free(text);
            json_decref(copy);
        }
        json_decref(root);
    }
    assert_int_equal(rill_memory_current(), mem);
}

static bool open_model(const char *name, gguf_file **f) {
    const char *path = test_model_path(name);
    if (!path) return false;
    if (gguf_open(path, f) != RILL_OK) fail_msg("%s: %s", name, rill_last_error());
    return true;
}

static void test_gguf_smollm2_gives_the_llama_config(void **state) {
    gguf_file *f;
    if (!open_model("SmolLM2-135M-Instruct.Q4_1.gguf", &f)) skip();
    rill_model_config c;
    if (model_config_from_gguf(f, "smollm2.gguf", &c) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(c.arch, MODEL_ARCH_LLAMA);
    assert_int_equal(c.n_layers, 30);
    assert_int_equal(c.hidden_size, 576);
    assert_int_equal(c.n_heads, 9);
    assert_int_equal(c.n_kv_heads, 3);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.intermediate_size, 1536);
    assert_int_equal(c.vocab_size, 49152);
    assert_true(c.tie_word_embeddings);
    assert_float_equal(c.rope_theta, 100000.0, 0); // llama.rope.freq_base, as in the HF config
    assert_float_equal(c.rms_norm_eps, 1e-5, 1e-9);
    assert_int_equal(c.max_position_embeddings, 8192);
    assert_int_equal(c.rope_scaling.type, ROPE_SCALING_NONE);
    assert_int_equal(count_sliding(&c), 0);
    assert_false(c.qkv_bias || c.mlp_bias);
    assert_int_equal(c.bos_id, 1);
    assert_eos(&c, 1, (int[]){2});
    assert_false(c.quant.enabled);
    model_config_free(&c);
    gguf_close(f);
}

static void test_gguf_gemma3_270m_gives_its_sliding_window_pattern(void **state) {
    gguf_file *f;
    if (!open_model("gemma-3-270m-Q4_K_M.gguf", &f)) skip();
    rill_model_config c;
    if (model_config_from_gguf(f, "gemma3.gguf", &c) != RILL_OK) fail_msg("%s", rill_last_error());
    assert_int_equal(c.arch, MODEL_ARCH_GEMMA3);
    assert_gemma3_270m_pattern(&c);
    assert_int_equal(c.hidden_size, 640);
    assert_int_equal(c.intermediate_size, 2048);
    assert_int_equal(c.n_heads, 4);
    assert_int_equal(c.n_kv_heads, 1);
    assert_int_equal(c.head_dim, 256);
    assert_int_equal(c.vocab_size, 262144);
    assert_float_equal(c.rope_theta, 1e6, 0);
    assert_float_equal(c.rope_local_theta, 1e4, 0);
    assert_float_equal(c.query_pre_attn_scalar, 256, 0);
    assert_true(c.qk_norm);
    assert_true(c.tie_word_embeddings);
    assert_string_equal(c.hidden_act, "gelu_pytorch_tanh");
    assert_int_equal(c.bos_id, 2);
    assert_eos(&c, 1, (int[]){1});
    model_config_free(&c);
    gguf_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama31_has_llama3_rope_scaling_and_three_eos_ids),
        cmocka_unit_test(test_mistral_v01_slides_on_every_layer),
        cmocka_unit_test(test_qwen25_has_qkv_bias_and_no_sliding_layers),
        cmocka_unit_test(test_qwen3_has_qk_norm_explicit_head_dim_and_tied_embeddings),
        cmocka_unit_test(test_gemma3_270m_has_five_sliding_layers_per_global_one),
        cmocka_unit_test(test_deepseek_v3_reads_mla_moe_and_yarn),
        cmocka_unit_test(test_mlx_mixed_quantization_honours_per_module_overrides),
        cmocka_unit_test(test_qwen2_slides_only_from_max_window_layers_on),
        cmocka_unit_test(test_null_means_not_used_rather_than_the_family_default),
        cmocka_unit_test(test_gemma3_older_layout_and_nested_text_config),
        cmocka_unit_test(test_foreign_quantization_config_is_recorded_not_applied),
        cmocka_unit_test(test_bad_configs_fail_with_the_file_and_the_field),
        cmocka_unit_test(test_bad_deepseek_moe_and_mla_are_rejected),
        cmocka_unit_test(test_bad_json_file_reports_path_line_and_column),
        cmocka_unit_test(test_every_fixture_key_with_a_wrong_type_is_named_or_ignored),
        cmocka_unit_test(test_gguf_smollm2_gives_the_llama_config),
        cmocka_unit_test(test_gguf_gemma3_270m_gives_its_sliding_window_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
