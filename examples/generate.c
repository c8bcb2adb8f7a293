// generate.c: the smallest program on librill, using only rill.h: load a model, render a question
// with the model's chat template, stream the reply to stdout and print the stats to stderr.
// usage: example-generate MODEL [PROMPT] [MAX_TOKENS]
// Build: cmake --build build --target example-generate  (or cc generate.c -lrill -ljansson ...)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rill.h"

static int on_text(void *user, const char *text, size_t len, int32_t token, const rill_generation_stats *stats) {
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    if (stats->finish_reason) *(rill_generation_stats *)user = *stats;
    return 0; // nonzero would stop the generation
}

static int fail(const char *what) {
    fprintf(stderr, "example-generate: %s: %s\n", what, rill_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [PROMPT] [MAX_TOKENS]\n", argv[0]);
        return 2;
    }
    const char *question = argc > 2 ? argv[2] : "Write a haiku about rivers.";
    rill_model_options opts = rill_model_default_options();
    opts.threads = 0; // one per core
    rill_model *model;
    if (rill_model_load(argv[1], &opts, &model) != RILL_OK) return fail("loading the model");
    rill_tokenizer *tok;
    if (rill_model_tokenizer(model, &tok) != RILL_OK) return fail("loading the tokenizer");

    // The question as the model expects it: its chat template when it has one, else plain text.
    char *prompt = NULL, messages[8192];
    size_t k = (size_t)snprintf(messages, sizeof messages, "[{\"role\": \"user\", \"content\": \"");
    for (const char *c = question; *c && k + 8 < sizeof messages; c++) { // a JSON string
        if ((unsigned char)*c < 0x20)
            k += (size_t)snprintf(messages + k, 7, "\\u%04x", *c);
        else {
            if (*c == '"' || *c == '\\') messages[k++] = '\\';
            messages[k++] = *c;
        }
    }
    snprintf(messages + k, sizeof messages - k, "\"}]");
    if (rill_apply_chat_template(tok, messages, NULL, true, NULL, &prompt, NULL) != RILL_OK) {
        rill_clear_error(); // no template: the plain question
        prompt = NULL;
    }

    rill_generate_params params = rill_generate_default_params();
    params.max_tokens = argc > 3 ? atoi(argv[3]) : 100;
    params.temp = 0; // greedy
    rill_generation_stats stats = {0};
    rill_status st = rill_stream_generate(model, tok, prompt ? prompt : question, &params, on_text, &stats);
    rill_free_buffer(prompt);
    if (st != RILL_OK) return fail("generating");
    printf("\n");
    fprintf(stderr, "Prompt: %lld tokens, %.3f tokens-per-sec\n", (long long)stats.prompt_tokens, stats.prompt_tps);
    fprintf(stderr, "Generation: %lld tokens, %.3f tokens-per-sec\n", (long long)stats.generation_tokens,
            stats.generation_tps);
    fprintf(stderr, "Peak memory: %.3f GB\n", stats.peak_memory_gb);
    fprintf(stderr, "Finish reason: %s\n", stats.finish_reason);
    rill_model_free(model); // also frees the tokenizer it handed out
    return 0;
}
