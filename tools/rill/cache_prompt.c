// cache_prompt.c: `rill cache-prompt`: mlx_lm.cache_prompt. Renders the prompt as the user's message
// with the chat template and continue_final_message (the template's text up to the end of the
// message, no end-of-turn), fills a cache with every token of it (quantized past
// --quantized-kv-start when --kv-bits is given) and saves it with the metadata "model" and
// "tokenizer_config" that mlx-lm's generate reads back.
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cache/prompt_cache.h"
#include "cli.h"
#include "generate/generate.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_source.h"
#include "tokenizer/tokenizer.h"

static const char *USAGE = "cache-prompt --model PATH --prompt TEXT|- --prompt-cache-file F [--kv-bits 4|8]\n"
                           "       [--kv-group-size G] [--quantized-kv-start N] [--max-kv-size N]\n"
                           "       [--prefill-step-size N] [--ignore-chat-template] [--threads N]";

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

// The template's rendering of one user message, cut right after the message (continue_final_message).
static rill_status render(const char *model_path, const char *prompt, char **out) {
    *out = NULL;
    chat_template_source src;
    rill_status st = chat_template_source_load(model_path, NULL, &src);
    if (st != RILL_OK || !src.template_src) {
        if (st == RILL_OK) chat_template_source_free(&src);
        return st;
    }
    chat_template *t;
    if ((st = chat_template_compile(src.template_src, strlen(src.template_src), &t)) == RILL_OK) {
        json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", prompt);
        st = chat_template_apply(t, msgs, NULL, false, src.bos_token, src.eos_token, NULL, out, NULL);
        json_decref(msgs);
        chat_template_free(t);
        if (st == RILL_OK) { // cut after the last occurrence of the message (transformers' rule)
            char *at = NULL;
            for (char *p = *out; (p = strstr(p, prompt)) != NULL; p++)
                at = p;
            if (at && *prompt) at[strlen(prompt)] = 0;
        }
    }
    chat_template_source_free(&src);
    return st;
}

int cmd_cache_prompt(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *file = NULL;
    long threads = 0, max_kv = 0, v;
    bool ignore_template = false;
    generate_params p = generate_defaults();
    p.quantized_kv_start = 5000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--ignore-chat-template")) {
            ignore_template = true;
            continue;
        }
        if (!val) return cli_fail_usage(USAGE, "%s needs a value", a);
        i++;
        if (!strcmp(a, "--model"))
            model_path = val;
        else if (!strcmp(a, "--prompt"))
            prompt = val;
        else if (!strcmp(a, "--prompt-cache-file"))
            file = val;
        else if (!strcmp(a, "--kv-bits") && parse_long(val, 4, 8, &v) && (v == 4 || v == 8))
            p.kv_bits = (int)v;
        else if (!strcmp(a, "--kv-group-size") && parse_long(val, 32, 128, &v))
            p.kv_group_size = (int)v;
        else if (!strcmp(a, "--quantized-kv-start") && parse_long(val, 0, INT32_MAX, &v))
            p.quantized_kv_start = v;
        else if (!strcmp(a, "--max-kv-size") && parse_long(val, 1, INT32_MAX, &v))
            max_kv = v;
        else if (!strcmp(a, "--prefill-step-size") && parse_long(val, 1, INT32_MAX, &v))
            p.prefill_step_size = (int)v;
        else if (!strcmp(a, "--threads") && parse_long(val, 1, 256, &v))
            threads = v;
        else
            return cli_fail_usage(USAGE, "bad option or value: %s %s", a, val);
    }
    if (!model_path || !prompt || !file)
        return cli_fail_usage(USAGE, "--model, --prompt and --prompt-cache-file are required");
    char *stdin_text = NULL, *templated = NULL;
    if (!strcmp(prompt, "-")) prompt = stdin_text = cli_read_all(stdin);
    rill_backend *be = NULL;
    rill_stream *s = NULL;
    rill_model *m = NULL;
    rill_cache *cache = NULL;
    tokenizer *tok = NULL;
    generator *g = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    rill_status st = backend_open("cpu", (int)threads, &be);
    if (st == RILL_OK) st = be->ops->stream_create(be, &s);
    if (st == RILL_OK) st = model_load(model_path, be, &m);
    if (st == RILL_OK) st = tokenizer_load(model_path, &tok);
    if (st == RILL_OK && !ignore_template) st = render(model_path, prompt, &templated);
    if (st == RILL_OK) {
        const char *text = templated ? templated : prompt;
        unsigned flags = TOKENIZER_PARSE_SPECIAL | (templated ? 0 : TOKENIZER_ADD_SPECIAL);
        st = tokenizer_encode(tok, text, strlen(text), flags, &ids, &n);
    }
    if (st == RILL_OK && n == 0) st = rill_fail(RILL_EINVAL, "cache-prompt: the prompt is empty");
    if (st == RILL_OK) st = model_make_prompt_cache(m, max_kv, &cache);
    // every prompt token into the cache: the prefill, then the first step runs the last token
    p.max_tokens = 1;
    if (st == RILL_OK) st = generate_start(m, cache, s, ids, (int64_t)n, &p, &g);
    if (st == RILL_OK) {
        int32_t t;
        bool done;
        st = generate_next(g, &t, NULL, &done);
    }
    generate_free(g);
    if (st == RILL_OK) {
        const char *keys[2] = {"model", "tokenizer_config"}, *vals[2] = {model_path, "{}"};
        cache_shape sh = model_cache_shape(m);
        st = prompt_cache_save(file, cache, s, &sh, keys, vals, 2);
    }
    if (st == RILL_OK)
        fprintf(stderr, "Cached %zu tokens (%lld in the cache), peak memory %.3f GB\n", n,
                (long long)cache_offset(cache), (double)rill_memory_peak() / 1e9);
    rill_free(ids);
    rill_free(templated);
    free(stdin_text);
    cache_free(cache);
    tokenizer_free(tok);
    model_free(m);
    if (s) be->ops->stream_destroy(s);
    backend_close(be);
    return st == RILL_OK ? CLI_OK : cli_fail_input();
}
