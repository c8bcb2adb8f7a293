// inspect.c: `rill inspect PATH [--json]`: describe a GGUF file, a safetensors file or a model
// folder. The report is built once as JSON (src/io/model_info.c); the text view reads from it.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "io/model_info.h"

static const char *USAGE = "inspect PATH [--json]";

static json_int_t geti(const json_t *obj, const char *key) { return json_integer_value(json_object_get(obj, key)); }

static void print_bytes_by_type(const json_t *by) {
    const char *type;
    json_t *v;
    printf("bytes by type:\n");
    json_object_foreach((json_t *)by, type, v) {
        double mib = (double)json_integer_value(v) / (1024.0 * 1024.0);
        printf("  %-16s %12" JSON_INTEGER_FORMAT " bytes  (%.2f MiB)\n", type, json_integer_value(v), mib);
    }
}

static void print_config(const json_t *c) {
    printf("layers:          %" JSON_INTEGER_FORMAT "\n", geti(c, "n_layers"));
    printf("hidden size:     %" JSON_INTEGER_FORMAT "\n", geti(c, "hidden_size"));
    printf("attention:       %" JSON_INTEGER_FORMAT " heads, %" JSON_INTEGER_FORMAT " KV heads, head dim %" JSON_INTEGER_FORMAT "\n",
           geti(c, "n_heads"), geti(c, "n_kv_heads"), geti(c, "head_dim"));
    printf("ffn size:        %" JSON_INTEGER_FORMAT "\n", geti(c, "intermediate_size"));
    printf("vocabulary:      %" JSON_INTEGER_FORMAT "\n", geti(c, "vocab_size"));
    printf("context:         %" JSON_INTEGER_FORMAT "\n", geti(c, "max_position_embeddings"));
    printf("rope theta:      %g\n", json_real_value(json_object_get(c, "rope_theta")));
    printf("tied embeddings: %s\n", json_is_true(json_object_get(c, "tie_word_embeddings")) ? "yes" : "no");
    if (json_object_get(c, "sliding_window"))
        printf("sliding window:  %" JSON_INTEGER_FORMAT "\n", geti(c, "sliding_window"));
    if (json_object_get(c, "n_routed_experts"))
        printf("experts:         %" JSON_INTEGER_FORMAT " routed, %" JSON_INTEGER_FORMAT " per token\n",
               geti(c, "n_routed_experts"), geti(c, "num_experts_per_tok"));
    if (json_object_get(c, "kv_lora_rank"))
        printf("MLA kv rank:     %" JSON_INTEGER_FORMAT "\n", geti(c, "kv_lora_rank"));
    const json_t *q = json_object_get(c, "quantization");
    if (q)
        printf("quantization:    affine, %" JSON_INTEGER_FORMAT " bits, group %" JSON_INTEGER_FORMAT "\n", geti(q, "bits"),
               geti(q, "group_size"));
}

static void print_text(const json_t *r) {
    printf("path:            %s\n", json_string_value(json_object_get(r, "path")));
    printf("format:          %s", json_string_value(json_object_get(r, "format")));
    if (json_object_get(r, "gguf_version")) printf(" (version %" JSON_INTEGER_FORMAT ")", geti(r, "gguf_version"));
    if (json_object_get(r, "files")) printf(" (%" JSON_INTEGER_FORMAT " safetensors files)", geti(r, "files"));
    printf("\n");
    if (json_object_get(r, "name")) printf("name:            %s\n", json_string_value(json_object_get(r, "name")));
    if (json_object_get(r, "architecture"))
        printf("architecture:    %s\n", json_string_value(json_object_get(r, "architecture")));
    const json_t *c = json_object_get(r, "config");
    if (c) print_config(c);
    printf("tensors:         %" JSON_INTEGER_FORMAT "\n", geti(r, "tensor_count"));
    double params = (double)geti(r, "parameter_count");
    printf("parameters:      %" JSON_INTEGER_FORMAT " (%.1f M)\n", geti(r, "parameter_count"), params / 1e6);
    print_bytes_by_type(json_object_get(r, "bytes_by_type"));
    const json_t *meta = json_object_get(r, "metadata");
    if (meta) printf("metadata keys:   %zu\n", json_object_size(meta));
    const json_t *tok = json_object_get(r, "tokenizer");
    if (tok) {
        const char *kind = json_string_value(json_object_get(tok, "kind"));
        printf("tokenizer:       %s", kind ? kind : "none");
        if (json_object_get(tok, "vocab_size")) printf(", %" JSON_INTEGER_FORMAT " tokens", geti(tok, "vocab_size"));
        printf("\nchat template:   %s\n", json_is_true(json_object_get(r, "chat_template")) ? "yes" : "no");
    }
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) as_json = 1;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: rill %s\n", USAGE);
            return CLI_OK;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_fail_usage(USAGE, "unknown option '%s'", argv[i]);
        else if (path) return cli_fail_usage(USAGE, "more than one PATH given");
        else path = argv[i];
    }
    if (!path) return cli_fail_usage(USAGE, "no PATH given");
    json_t *report;
    if (model_info_build(path, &report) != RILL_OK) return cli_fail_input();
    if (as_json) {
        json_dumpf(report, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("\n");
    } else {
        print_text(report);
    }
    json_decref(report);
    return CLI_OK;
}
