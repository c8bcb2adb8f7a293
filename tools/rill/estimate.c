// estimate.c: `rill estimate`: the memory budget of a run before it starts (src/model/estimate.h):
// weights as the loader keeps them, the KV cache (plain, quantized, rotating; MLA as rill stores
// it), LoRA adapters with their gradients and optimizer state, and the scratch of one prefill chunk.
// The model is measured, not loaded: nothing is repacked, so it takes a moment for any size.
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/estimate.h"

int cmd_estimate(int argc, char **argv);

static const char *USAGE =
    "estimate --model PATH [--context N] [--batch B] [--kv-bits 4|8] [--kv-group-size G] [--quantized-kv-start N]\n"
    "       [--max-kv-size N] [--prefill-step-size N] [--lora-rank R [--lora-layers N]] [--no-tokenizer] [--json]";

enum { LORA_DEFAULT_LAYERS = 16 }; // mlx_lm.lora's --num-layers

typedef struct {
    const char *model;
    estimate_params p;
    bool lora_layers_given, json;
    bool no_tokenizer; // the run gets token ids (generate --prompt-ids): no tokenizer is loaded
} estimate_opts;

// Parses one flag with an integer value in [lo, hi] into *dst.
static int int_flag(int argc, char **argv, int *i, long lo, long hi, int64_t *dst) {
    const char *a = argv[*i];
    if (*i + 1 >= argc) return cli_fail_usage(USAGE, "%s needs a value", a);
    long v;
    if (!cli_parse_long(argv[++*i], lo, hi, &v))
        return cli_fail_usage(USAGE, "%s: '%s' is not an integer in [%ld, %ld]", a, argv[*i], lo, hi);
    *dst = v;
    return CLI_OK;
}

static int parse(int argc, char **argv, estimate_opts *o) {
    o->p = estimate_defaults();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int64_t v = 0;
        int rc = CLI_OK;
        if (!strcmp(a, "--model")) {
            if (i + 1 >= argc) return cli_fail_usage(USAGE, "--model needs a value");
            o->model = argv[++i];
        } else if (!strcmp(a, "--json"))
            o->json = true;
        else if (!strcmp(a, "--no-tokenizer"))
            o->no_tokenizer = true;
        else if (!strcmp(a, "--context")) {
            if ((rc = int_flag(argc, argv, &i, 1, INT32_MAX, &v)) == CLI_OK) o->p.context = v;
        } else if (!strcmp(a, "--batch")) {
            if ((rc = int_flag(argc, argv, &i, 1, 65536, &v)) == CLI_OK) o->p.batch = (int)v;
        } else if (!strcmp(a, "--kv-bits")) {
            if ((rc = int_flag(argc, argv, &i, 4, 8, &v)) == CLI_OK && v != 4 && v != 8)
                return cli_fail_usage(USAGE, "--kv-bits: %lld bits (4 or 8)", (long long)v);
            o->p.kv_bits = (int)v;
        } else if (!strcmp(a, "--kv-group-size")) {
            if ((rc = int_flag(argc, argv, &i, 32, 128, &v)) == CLI_OK && v != 32 && v != 64 && v != 128)
                return cli_fail_usage(USAGE, "--kv-group-size: %lld (32, 64 or 128)", (long long)v);
            o->p.kv_group_size = (int)v;
        } else if (!strcmp(a, "--quantized-kv-start")) {
            if ((rc = int_flag(argc, argv, &i, 0, INT32_MAX, &v)) == CLI_OK) o->p.quantized_kv_start = v;
        } else if (!strcmp(a, "--max-kv-size")) {
            if ((rc = int_flag(argc, argv, &i, 1, INT32_MAX, &v)) == CLI_OK) o->p.max_kv_size = v;
        } else if (!strcmp(a, "--prefill-step-size")) {
            if ((rc = int_flag(argc, argv, &i, 1, INT32_MAX, &v)) == CLI_OK) o->p.prefill_step_size = (int)v;
        } else if (!strcmp(a, "--lora-rank")) {
            if ((rc = int_flag(argc, argv, &i, 1, 65536, &v)) == CLI_OK) o->p.lora_rank = (int)v;
        } else if (!strcmp(a, "--lora-layers")) {
            if ((rc = int_flag(argc, argv, &i, 1, 65536, &v)) == CLI_OK) o->p.lora_layers = (int)v;
            o->lora_layers_given = true;
        } else
            return cli_fail_usage(USAGE, "unknown option '%s'", a);
        if (rc != CLI_OK) return rc;
    }
    if (!o->model) return cli_fail_usage(USAGE, "--model is required");
    if (o->lora_layers_given && !o->p.lora_rank) return cli_fail_usage(USAGE, "--lora-layers needs --lora-rank");
    return CLI_OK;
}

static json_t *part(size_t bytes) {
    return json_pack("{s:I,s:f}", "bytes", (json_int_t)bytes, "gb", (double)bytes / 1e9);
}

static void print_json(const estimate_opts *o, const rill_model *m, const memory_estimate *e) {
    const estimate_params *p = &o->p;
    json_t *kv = part(e->kv_cache), *lora = part(e->lora), *sc = part(e->scratch);
    char kind[32];
    snprintf(kind, sizeof kind, "affine-q%d-g%d", p->kv_bits, p->kv_group_size); // as inspect names it
    json_object_set_new(kv, "dtype", json_string(p->kv_bits ? kind : dtype_name(e->kv_dtype)));
    json_object_set_new(kv, "bytes_per_position", json_integer((json_int_t)e->kv_position_bytes));
    json_object_set_new(kv, "f16_formula_bytes", json_integer((json_int_t)e->kv_f16_bytes));
    json_object_set_new(lora, "rank", json_integer(p->lora_rank));
    json_object_set_new(lora, "layers", json_integer(p->lora_rank ? p->lora_layers : 0));
    json_object_set_new(lora, "parameters", json_integer(e->lora_params));
    json_object_set_new(lora, "adapter_bytes", json_integer((json_int_t)e->lora_adapter));
    json_object_set_new(lora, "gradient_bytes", json_integer((json_int_t)e->lora_gradients));
    json_object_set_new(lora, "optimizer_bytes", json_integer((json_int_t)e->lora_optimizer));
    json_object_set_new(sc, "tokens", json_integer(e->scratch_tokens));
    json_t *r = json_pack("{s:s,s:s,s:i,s:I,s:i,s:i,s:i,s:I,s:I,s:i,s:b}", "model", o->model, "architecture",
                          m->cfg.model_type, "layers", m->cfg.n_layers, "context", (json_int_t)p->context, "batch",
                          p->batch, "kv_bits", p->kv_bits, "kv_group_size", p->kv_group_size, "quantized_kv_start",
                          (json_int_t)p->quantized_kv_start, "max_kv_size", (json_int_t)p->max_kv_size,
                          "prefill_step_size", p->prefill_step_size, "exceeds_model_context", e->exceeds_model_context);
    json_object_set_new(r, "weights", part(e->weights));
    json_object_set_new(r, "kv_cache", kv);
    json_object_set_new(r, "kv_transient", part(e->kv_transient));
    json_object_set_new(r, "lora", lora);
    json_object_set_new(r, "scratch", sc);
    json_object_set_new(r, "runtime", part(e->runtime));
    json_object_set_new(r, "tokenizer", part(e->tokenizer));
    json_object_set_new(r, "total", part(e->total));
    json_dumpf(r, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    printf("\n");
    json_decref(r);
}

static double mb(size_t b) { return (double)b / 1e6; }

static void print_text(const estimate_opts *o, const rill_model *m, const memory_estimate *e) {
    const estimate_params *p = &o->p;
    printf("model:         %s (%s, %d layers)\n", o->model, m->cfg.model_type, m->cfg.n_layers);
    printf("run:           context %lld, batch %d, KV ", (long long)p->context, p->batch);
    if (p->kv_bits)
        printf("%d-bit groups of %d from position %lld", p->kv_bits, p->kv_group_size,
               (long long)p->quantized_kv_start);
    else
        printf("%s", dtype_name(e->kv_dtype));
    if (p->max_kv_size) printf(", rotating at %lld", (long long)p->max_kv_size);
    printf(", prefill chunks of %d\n", p->prefill_step_size);
    printf("weights       %10.2f MB  as loaded (repacked, decoded and mapped tensors, norms, metadata)\n",
           mb(e->weights));
    printf("kv cache      %10.2f MB  %lld positions at %zu B, allocated in steps of 256 (the guide's formula at "
           "f16: %.2f MB)\n",
           mb(e->kv_cache), (long long)p->context * p->batch, e->kv_position_bytes, mb(e->kv_f16_bytes));
    printf("kv transient  %10.2f MB  more on the way: plain rows before quantizing, old buffers while growing\n",
           mb(e->kv_transient));
    if (p->lora_rank)
        printf("lora          %10.2f MB  rank %d on %d layers: %lld parameters; adapter %.2f + gradients %.2f + "
               "Adam %.2f MB\n",
               mb(e->lora), p->lora_rank, p->lora_layers, (long long)e->lora_params, mb(e->lora_adapter),
               mb(e->lora_gradients), mb(e->lora_optimizer));
    else
        printf("lora          %10.2f MB\n", 0.0);
    printf("scratch       %10.2f MB  activations of a %lld-token chunk and its logits\n", mb(e->scratch),
           (long long)e->scratch_tokens);
    printf("runtime       %10.2f MB  token history, logprobs, sampler\n", mb(e->runtime));
    printf("tokenizer     %10.2f MB  %s\n", mb(e->tokenizer),
           o->no_tokenizer ? "none: the run gets token ids" : "vocabulary, merges, added tokens");
    printf("total         %10.2f MB  (%.3f GB)\n", mb(e->total), (double)e->total / 1e9);
}

// Notes on what the numbers assume, to stderr.
static void print_notes(const estimate_opts *o, const rill_model *m, const memory_estimate *e) {
    const estimate_params *p = &o->p;
    if (e->exceeds_model_context)
        fprintf(stderr,
                "rill: note: context %lld exceeds the model's %d positions (rill generate refuses such a prompt)\n",
                (long long)p->context, m->cfg.max_position_embeddings);
    if (p->kv_bits && p->context < p->quantized_kv_start)
        fprintf(stderr,
                "rill: note: the cache stays plain below --quantized-kv-start %lld positions; "
                "--quantized-kv-start 0 quantizes from the first chunk\n",
                (long long)p->quantized_kv_start);
}

// The flags that depend on the model: the default LoRA depth, its bound, and KV groups that fit
// the model's rows. CLI_OK or CLI_BAD_USAGE (message printed).
static int check_against_model(estimate_opts *o, const rill_model *m) {
    if (o->p.lora_rank && !o->lora_layers_given)
        o->p.lora_layers = m->cfg.n_layers < LORA_DEFAULT_LAYERS ? m->cfg.n_layers : LORA_DEFAULT_LAYERS;
    if (o->p.lora_layers > m->cfg.n_layers)
        return cli_fail_usage(USAGE, "--lora-layers %d: the model has %d layers", o->p.lora_layers, m->cfg.n_layers);
    cache_shape sh = model_cache_shape(m);
    int64_t k_dim = sh.k_dim, v_dim = sh.v_dim;
    if (o->p.kv_bits && (k_dim % o->p.kv_group_size || v_dim % o->p.kv_group_size))
        return cli_fail_usage(USAGE, "--kv-group-size %d does not divide the model's rows of %lld keys and %lld values",
                              o->p.kv_group_size, (long long)k_dim, (long long)v_dim);
    return CLI_OK;
}

int cmd_estimate(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rill %s\n", USAGE);
            return CLI_OK;
        }
    estimate_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc != CLI_OK) return rc;
    rill_backend *be = NULL;
    rill_model *m = NULL;
    memory_estimate e;
    rill_status st = backend_open("cpu", 1, &be);
    if (st == RILL_OK) st = model_measure(o.model, be, &m);
    if (st == RILL_OK && (rc = check_against_model(&o, m)) != CLI_OK) goto done;
    if (st == RILL_OK && !o.no_tokenizer && estimate_tokenizer_bytes(o.model, &o.p.tokenizer_bytes) != RILL_OK) {
        fprintf(stderr, "rill: note: no tokenizer counted (%s)\n", rill_last_error());
        o.no_tokenizer = true;
    }
    if (st == RILL_OK) st = estimate_memory(m, &o.p, &e);
    if (st != RILL_OK) {
        rc = cli_fail_input();
        goto done;
    }
    print_notes(&o, m, &e);
    if (o.json)
        print_json(&o, m, &e);
    else
        print_text(&o, m, &e);
    rc = CLI_OK;
done:
    model_free(m);
    backend_close(be);
    return rc;
}
