// test_cli_estimate.c: `rill estimate` end to end and its library (src/model/estimate.c). The JSON
// has every part and the total is their sum; KV bytes grow linearly with the context and shrink
// 1.88x / 3.56x against the guide's f16 formula at 8 / 4 bits; the measured weights equal the
// loaded ones for every model format; the KV cache after a real generate equals the estimate
// (plain, quantized, rotating, MLA); the budget lies within 10% of the peak `rill generate --json`
// reports for SmolLM2; bad input gets one line "rill: ..." and exit 1 or 2.
//
// `test_cli_estimate --measure CONTEXT KV_BITS [--threads N] [--skip-attention]` is not a test: it
// runs generate's code path on SmolLM2 Q4_1 (a prompt of CONTEXT random ids, one token, quantized
// from position 0) with the model's 8192-position limit lifted, and prints the accounted peak and
// the estimate as one JSON line (docs/memory.md). --skip-attention replaces the backend's attention
// ops by no-ops (they allocate nothing but a few floats of per-thread scratch), for 2-core machines.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/alloc.h"
#include "base/progress.h"
#include "generate/generate.h"
#include "generate/stream.h"
#include "model/estimate.h"
#include "model/model.h"
#include "testlib.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1 // a SmolLM2 prefill is ~30x slower: the measured runs are left out
#else
#define SANITIZED 0
#endif

#define SMOLLM2 "SmolLM2-135M-Instruct.Q4_1.gguf"

static char output[1 << 16];

static const char *rill_bin(void) {
    const char *bin = getenv("RILL_BIN");
    return bin ? bin : "build/bin/rill";
}

// `rill estimate --model MODEL ARGS --json`, parsed.
static json_t *estimate_json(const char *model, const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' estimate --model '%s' %s --json 2>/dev/null", rill_bin(), model, args);
    int rc = test_run(cmd, output, sizeof output);
    if (rc != 0) fail_msg("exit %d: %s", rc, cmd);
    json_error_t err;
    json_t *o = json_loads(output, 0, &err);
    if (!o) fail_msg("not JSON (%s): %s", err.text, output);
    return o;
}

static json_int_t part_bytes(const json_t *o, const char *part) {
    const json_t *p = json_object_get(o, part);
    if (!json_is_integer(json_object_get(p, "bytes"))) fail_msg("no %s.bytes", part);
    return json_integer_value(json_object_get(p, "bytes"));
}

static const char *const PARTS[] = {"weights", "kv_cache", "kv_transient", "lora", "scratch", "runtime", "tokenizer"};

static void test_json_has_every_part_and_the_total_is_their_sum(void **state) {
    const char *model = test_model_path(SMOLLM2);
    if (!model) skip();
    const char *runs[] = {"--context 4096", "--context 3000 --kv-bits 8 --quantized-kv-start 0",
                          "--context 2048 --batch 2 --kv-bits 4 --kv-group-size 32 --quantized-kv-start 0",
                          "--context 1000 --max-kv-size 256", "--context 512 --lora-rank 8 --lora-layers 4"};
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        json_t *o = estimate_json(model, runs[r]);
        json_int_t sum = 0;
        for (size_t i = 0; i < sizeof PARTS / sizeof PARTS[0]; i++) {
            json_int_t b = part_bytes(o, PARTS[i]);
            assert_true(b >= 0);
            double gb = json_real_value(json_object_get(json_object_get(o, PARTS[i]), "gb"));
            assert_true(gb * 1e9 >= (double)b * (1 - 1e-9) - 1 && gb * 1e9 <= (double)b * (1 + 1e-9) + 1);
            sum += b;
        }
        assert_int_equal(part_bytes(o, "total"), sum);
        assert_true(part_bytes(o, "weights") > 100000000); // SmolLM2 Q4_1 as repacked: 117 MB
        assert_true(part_bytes(o, "kv_cache") > 0 && part_bytes(o, "scratch") > 0);
        assert_string_equal(json_string_value(json_object_get(o, "architecture")), "llama");
        assert_true(part_bytes(o, "tokenizer") > 1000000); // 49,152 tokens and their merges: 5 MB
        json_decref(o);
    }
    // LoRA: the guide's 2 * rank * (in + out) per adapted layer, f32 (adapter + gradients), plus Adam
    json_t *o = estimate_json(model, "--context 512 --lora-rank 8 --lora-layers 4");
    const json_t *lora = json_object_get(o, "lora");
    // SmolLM2 block: q, o [576][576]; k, v [192][576]; gate, up [1536][576]; down [576][1536]
    json_int_t per_block = 8 * (2 * (576 + 576) + 2 * (192 + 576) + 3 * (1536 + 576));
    assert_int_equal(json_integer_value(json_object_get(lora, "parameters")), 4 * per_block);
    assert_int_equal(json_integer_value(json_object_get(lora, "adapter_bytes")) +
                         json_integer_value(json_object_get(lora, "gradient_bytes")),
                     2 * 4 * per_block * 4);
    assert_int_equal(part_bytes(o, "lora"), 4 * 4 * per_block * 4);
    json_decref(o);
}

static void test_kv_bytes_grow_linearly_with_the_context(void **state) {
    const char *model = test_model_path(SMOLLM2);
    if (!model) skip();
    const char *kv[] = {"", "--kv-bits 8 --quantized-kv-start 0", "--kv-bits 4 --quantized-kv-start 0"};
    for (int k = 0; k < 3; k++) {
        json_int_t prev = 0;
        for (int ctx = 1024; ctx <= 16384; ctx *= 2) {
            char args[256];
            snprintf(args, sizeof args, "--context %d %s --no-tokenizer", ctx, kv[k]);
            json_t *o = estimate_json(model, args);
            json_int_t b = part_bytes(o, "kv_cache");
            // 30 layers x 2 x 3 KV heads x 64 dims per position: f32 plain, or packed codes + f16 scales and biases
            json_int_t per_pos = k == 0 ? 30 * 2 * 192 * 4 : k == 1 ? 30 * (384 + 24) : 30 * (192 + 24);
            assert_int_equal(b, per_pos * ctx);
            if (prev) assert_int_equal(b, 2 * prev);
            prev = b;
            json_decref(o);
        }
    }
}

static void test_quantized_kv_is_1_88x_and_3_56x_smaller_than_f16(void **state) {
    const char *model = test_model_path(SMOLLM2);
    if (!model) skip();
    json_t *plain = estimate_json(model, "--context 8192 --no-tokenizer");
    json_t *q8 = estimate_json(model, "--context 8192 --kv-bits 8 --quantized-kv-start 0 --no-tokenizer");
    json_t *q4 = estimate_json(model, "--context 8192 --kv-bits 4 --quantized-kv-start 0 --no-tokenizer");
    double f16 = (double)json_integer_value(json_object_get(json_object_get(plain, "kv_cache"), "f16_formula_bytes"));
    assert_true(f16 == 30.0 * 2 * 3 * 8192 * 64 * 2); // the guide: 2 * n_kv_heads * seq_len * head_dim * 2 per layer
    double r8 = f16 / (double)part_bytes(q8, "kv_cache"), r4 = f16 / (double)part_bytes(q4, "kv_cache");
    assert_true(r8 > 1.87 && r8 < 1.89);
    assert_true(r4 > 3.55 && r4 < 3.57);
    // the CPU's plain cache holds f32 activations: twice the guide's f16
    assert_true((double)part_bytes(plain, "kv_cache") == 2 * f16);
    json_decref(plain);
    json_decref(q8);
    json_decref(q4);
}

// model_measure walks the loader without allocating: its weight_bytes equals a real load's.
static void test_measured_weights_equal_loaded_weights(void **state) {
    const char *names[] = {SMOLLM2,
                           "SmolLM2-135M-Instruct.Q8_0.gguf",
                           "SmolLM2-135M-Instruct.F32.gguf",
                           "SmolLM2-135M-Instruct-mlx-4bit-g32",
                           "SmolLM2-135M-Instruct-mlx-8bit",
                           "SmolLM2-135M-Instruct-f32",
                           "gemma-3-270m-Q4_K_M.gguf"};
    const char *tiny[] = {"tiny/llama", "tiny/llama_gguf/model.gguf", "tiny/deepseek_v3", "tiny/gemma3", "tiny/qwen3"};
    rill_backend *be;
    assert_int_equal(backend_open("cpu", 1, &be), RILL_OK);
    int checked = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] + sizeof tiny / sizeof tiny[0]; i++) {
        const char *path = i < sizeof names / sizeof names[0]
                               ? test_model_path(names[i])
                               : test_data_path(tiny[i - sizeof names / sizeof names[0]]);
        if (!path) continue;
        char p[4096];
        snprintf(p, sizeof p, "%s", path);
        rill_model *m, *q;
        if (model_load(p, be, &m) != RILL_OK) fail_msg("%s: %s", p, rill_last_error());
        size_t loaded = m->weight_bytes;
        model_free(m);
        if (model_measure(p, be, &q) != RILL_OK) fail_msg("%s: %s", p, rill_last_error());
        size_t measured = q->weight_bytes;
        model_free(q);
        // the loader's own pointer arrays (a few KB) are the only difference
        double diff = (double)measured - (double)loaded;
        if (diff < -65536 || diff > 65536) fail_msg("%s: measured %zu bytes, loaded %zu", p, measured, loaded);
        checked++;
    }
    assert_true(checked >= 5);
    backend_close(be);
}

// ---- a real generate against the estimate ----

// A prompt of n random ids in [lo, hi), the same for a given seed.
static int32_t *random_ids(int64_t n, int32_t lo, int32_t hi, uint64_t seed) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = lo + (int32_t)((seed >> 33) % (uint64_t)(hi - lo));
    }
    return ids;
}

static int drop_response(void *ctx, const stream_response *r) { return 0; }

// Generates one token after a prompt of `context` ids (generate's path, with its cache kinds) and
// checks the cache it leaves against the estimate's kv_cache, byte for byte.
static void check_cache_bytes(const char *path, const estimate_params *ep) {
    rill_backend *be;
    rill_stream *s;
    rill_model *m, *q;
    assert_int_equal(backend_open("cpu", 1, &be), RILL_OK);
    assert_int_equal(be->ops->stream_create(be, &s), RILL_OK);
    if (model_measure(path, be, &q) != RILL_OK) fail_msg("%s: %s", path, rill_last_error());
    memory_estimate e;
    if (estimate_memory(q, ep, &e) != RILL_OK) fail_msg("%s: %s", path, rill_last_error());
    model_free(q);
    if (model_load(path, be, &m) != RILL_OK) fail_msg("%s: %s", path, rill_last_error());
    rill_cache *cache;
    assert_int_equal(model_make_prompt_cache(m, ep->max_kv_size, &cache), RILL_OK);
    generate_params p = generate_defaults();
    p.max_tokens = 1;
    p.ignore_eos = true;
    p.kv_bits = ep->kv_bits;
    p.kv_group_size = ep->kv_group_size;
    p.quantized_kv_start = ep->quantized_kv_start;
    p.prefill_step_size = ep->prefill_step_size;
    int32_t *ids = random_ids(ep->context, 3, m->cfg.vocab_size, 7);
    if (stream_generate(m, NULL, cache, s, ids, ep->context, &p, NULL, 0, drop_response, NULL) != RILL_OK)
        fail_msg("%s: %s", path, rill_last_error());
    assert_int_equal(cache_offset(cache), ep->context);
    if (cache_nbytes(cache) != e.kv_cache)
        fail_msg("%s, context %lld, %d bits, max_kv_size %lld: the cache holds %zu bytes, the estimate says %zu", path,
                 (long long)ep->context, ep->kv_bits, (long long)ep->max_kv_size, cache_nbytes(cache), e.kv_cache);
    free(ids);
    cache_free(cache);
    model_free(m);
    be->ops->stream_destroy(s);
    backend_close(be);
}

static void test_the_cache_after_generate_is_the_estimated_size(void **state) {
    // tiny llama: 3 layers, 2 KV heads of 16; deepseek_v3: MLA's latent cache, one row of 32 + 8 per
    // position and no values (rope 8 holds no group of 32: plain only, as in mlx-lm); gemma3: sliding
    // layers of window 8 (rotating)
    const char *models[] = {"tiny/llama", "tiny/deepseek_v3", "tiny/gemma3"};
    const int64_t contexts[] = {1, 2, 255, 256, 257, 300, 511};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        for (size_t c = 0; c < sizeof contexts / sizeof contexts[0]; c++)
            for (int bits = 0; bits <= (strstr(models[i], "deepseek") ? 0 : 8); bits += 4) {
                estimate_params p = estimate_defaults();
                p.context = contexts[c];
                p.kv_bits = bits;
                p.kv_group_size = 32;
                p.quantized_kv_start = bits == 4 ? 100 : 0; // 4 bits: plain first, quantized past 100
                p.prefill_step_size = 64;
                check_cache_bytes(test_data_path(models[i]), &p);
                p.max_kv_size = 128; // rotating global layers
                check_cache_bytes(test_data_path(models[i]), &p);
            }
}

// `rill estimate` against the peak `rill generate --json` reports (the accounted allocator's),
// for SmolLM2 at `context` with KV plain, 8-bit and 4-bit (quantized from position 0).
static void check_against_generate(int context) {
    const char *model = test_model_path(SMOLLM2);
    if (!model) skip();
    int32_t *ids = random_ids(context, 100, 49000, (uint64_t)context);
    size_t cap = (size_t)context * 7 + 16;
    char *list = malloc(cap), *cmd = malloc(cap + 8192);
    size_t at = 0;
    for (int i = 0; i < context; i++)
        at += (size_t)snprintf(list + at, cap - at, i ? ",%d" : "%d", ids[i]);
    for (int bits = 0; bits <= 8; bits += 4) {
        char kv[96] = "";
        if (bits) snprintf(kv, sizeof kv, "--kv-bits %d --quantized-kv-start 0", bits);
        snprintf(cmd, cap + 8192,
                 "'%s' generate --model '%s' --prompt-ids %s --max-tokens 1 --ignore-eos --json %s 2>/dev/null",
                 rill_bin(), model, list, kv);
        assert_int_equal(test_run(cmd, output, sizeof output), 0);
        json_t *g = json_loads(output, 0, NULL);
        assert_non_null(g);
        double peak = json_real_value(json_object_get(json_object_get(g, "stats"), "peak_memory_gb"));
        json_decref(g);
        char args[256];
        snprintf(args, sizeof args, "--context %d %s --no-tokenizer", context, kv); // --prompt-ids: no tokenizer
        json_t *o = estimate_json(model, args);
        double est = (double)part_bytes(o, "total") / 1e9;
        json_decref(o);
        fprintf(stderr, "context %d, KV %s: estimate %.4f GB, measured peak %.4f GB, ratio %.3f\n", context,
                bits ? (bits == 8 ? "8-bit" : "4-bit") : "plain", est, peak, est / peak);
        if (!(est > 0.9 * peak && est < 1.1 * peak))
            fail_msg("context %d, %d bits: estimate %.4f GB, measured %.4f GB", context, bits, est, peak);
    }
    free(ids);
    free(list);
    free(cmd);
}

static void test_estimate_is_within_10_percent_of_the_peak_at_512(void **state) {
    if (SANITIZED) skip();
    check_against_generate(512);
}

// A 4,096-token prefill takes minutes on 2 cores: only with RILL_TEST_SLOW=1.
static void test_estimate_is_within_10_percent_of_the_peak_at_4096(void **state) {
    if (SANITIZED || !getenv("RILL_TEST_SLOW")) skip();
    check_against_generate(4096);
}

// ---- bad input ----

// `rill estimate ARGS`: exit `want_rc`, one line "rill: ..." on stderr that contains `cause`.
static void expect_failure(const char *args, int want_rc, const char *cause) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' estimate %s 2>&1 >/dev/null", rill_bin(), args);
    int rc = test_run(cmd, output, sizeof output);
    if (rc != want_rc || strncmp(output, "rill: ", 6) || !strstr(output, cause))
        fail_msg("rill estimate %s: exit %d (want %d), stderr: %s", args, rc, want_rc, output);
}

static void test_bad_input_gets_one_line_and_exit_1_or_2(void **state) {
    expect_failure("--model /nonexistent/model.gguf", 1, "/nonexistent/model.gguf");
    const char *bad = test_data_path("bad/gguf/truncated_header.gguf");
    char args[4200];
    snprintf(args, sizeof args, "--model '%s'", bad);
    expect_failure(args, 1, "truncated_header.gguf");
    expect_failure("--context 512", 2, "--model is required");
    const char *model = test_data_path("tiny/llama");
    const struct {
        const char *flags, *cause;
    } usage[] = {
        {"--context -5", "--context"},      {"--context 0", "--context"},
        {"--context abc", "--context"},     {"--kv-bits 3", "--kv-bits"},
        {"--kv-bits 6", "--kv-bits"},       {"--kv-group-size 48", "--kv-group-size"},
        {"--batch 0", "--batch"},           {"--lora-rank -1", "--lora-rank"},
        {"--lora-layers 2", "--lora-rank"}, {"--lora-rank 8 --lora-layers 9", "3 layers"},
        {"--frobnicate", "unknown option"}, {"--context", "needs a value"},
    };
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        snprintf(args, sizeof args, "--model '%s' %s", model, usage[i].flags);
        expect_failure(args, 2, usage[i].cause);
    }
    // a group that does not divide the rows: tiny llama's 2 KV heads of 16 are 32 wide
    snprintf(args, sizeof args, "--model '%s' --kv-bits 8 --kv-group-size 64", model);
    expect_failure(args, 2, "--kv-group-size 64");
}

// ---- the measuring harness (not a test) ----

static void skip_attention(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_tensor *k,
                           const rill_tensor *v, const rill_attn_params *p) {}
static void skip_attention_q(rill_stream *s, rill_tensor *out, const rill_tensor *q, const rill_qkv *k,
                             const rill_qkv *v, const rill_attn_params *p) {}

static int measure(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s --measure CONTEXT KV_BITS [--threads N] [--skip-attention]\n", argv[0]);
        return 2;
    }
    int64_t context = atoll(argv[2]);
    int bits = atoi(argv[3]), threads = 0;
    bool skip_attn = false;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        if (!strcmp(argv[i], "--skip-attention")) skip_attn = true;
    }
    const char *path = test_model_path(SMOLLM2);
    if (!path || context < 2 || (bits != 0 && bits != 4 && bits != 8)) {
        fprintf(stderr, "need %s, a context >= 2 and 0, 4 or 8 bits\n", SMOLLM2);
        return 2;
    }
    rill_backend *be;
    rill_stream *s;
    rill_model *m;
    rill_cache *cache;
    if (backend_open("cpu", threads, &be) != RILL_OK || be->ops->stream_create(be, &s) != RILL_OK ||
        model_load(path, be, &m) != RILL_OK || model_make_prompt_cache(m, 0, &cache) != RILL_OK) {
        fprintf(stderr, "%s\n", rill_last_error());
        return 1;
    }
    static rill_backend_ops ops;
    const rill_backend_ops *real = be->ops;
    if (skip_attn) {
        ops = *be->ops;
        ops.attention = skip_attention;
        ops.attention_q = skip_attention_q;
        be->ops = &ops;
    }
    m->cfg.max_position_embeddings = 0; // generate refuses prompts past the model's 8192 positions
    generate_params p = generate_defaults();
    p.max_tokens = 1;
    p.ignore_eos = true;
    p.kv_bits = bits;
    p.quantized_kv_start = 0;
    int32_t *ids = random_ids(context, 100, 49000, (uint64_t)context); // as `rill generate --prompt-ids` gets them
    double t0 = rill_now();
    rill_status st = stream_generate(m, NULL, cache, s, ids, context, &p, NULL, 0, drop_response, NULL);
    double secs = rill_now() - t0;
    size_t peak = rill_memory_peak();
    free(ids);
    cache_free(cache);
    be->ops = real;
    if (st != RILL_OK) {
        fprintf(stderr, "%s\n", rill_last_error());
        return 1;
    }
    rill_model *q;
    estimate_params ep = estimate_defaults();
    ep.context = context;
    ep.kv_bits = bits;
    ep.quantized_kv_start = 0;
    memory_estimate e;
    if (model_measure(path, be, &q) != RILL_OK || estimate_memory(q, &ep, &e) != RILL_OK) {
        fprintf(stderr, "%s\n", rill_last_error());
        return 1;
    }
    printf("{\"context\": %lld, \"kv_bits\": %d, \"attention\": \"%s\", \"seconds\": %.1f, \"peak_bytes\": %zu, "
           "\"estimate_bytes\": %zu, \"ratio\": %.4f}\n",
           (long long)context, bits, skip_attn ? "skipped" : "run", secs, peak, e.total,
           (double)e.total / (double)peak);
    model_free(q);
    model_free(m);
    be->ops->stream_destroy(s);
    backend_close(be);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--measure")) return measure(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_has_every_part_and_the_total_is_their_sum),
        cmocka_unit_test(test_kv_bytes_grow_linearly_with_the_context),
        cmocka_unit_test(test_quantized_kv_is_1_88x_and_3_56x_smaller_than_f16),
        cmocka_unit_test(test_measured_weights_equal_loaded_weights),
        cmocka_unit_test(test_the_cache_after_generate_is_the_estimated_size),
        cmocka_unit_test(test_estimate_is_within_10_percent_of_the_peak_at_512),
        cmocka_unit_test(test_estimate_is_within_10_percent_of_the_peak_at_4096),
        cmocka_unit_test(test_bad_input_gets_one_line_and_exit_1_or_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
