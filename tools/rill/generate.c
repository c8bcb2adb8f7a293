// generate.c: `rill generate`: mlx_lm.generate's flags and defaults (REFERENCE.md), plus --threads,
// --json, --prompt-ids and --logprobs K. Text goes through the chat template (unless
// --ignore-chat-template) and the tokenizer; the reply streams to stdout, stats go to stderr with
// --verbose, or everything goes into one JSON object with --json.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/alloc.h"
#include "cli.h"
#include "generate/stream.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_source.h"

int cmd_generate(int argc, char **argv);

static const char *USAGE =
    "generate --model PATH (--prompt TEXT|- | --prompt-ids 1,2,3) [--max-tokens N] [--temp T] [--top-p P]\n"
    "       [--min-p P] [--top-k K] [--min-tokens-to-keep N] [--xtc-probability P] [--xtc-threshold T] [--seed S]\n"
    "       [--repetition-penalty R] [--repetition-context-size N] [--presence-penalty P] [--frequency-penalty F]\n"
    "       [--extra-eos-token ID] [--ignore-eos] [--system-prompt TEXT] [--ignore-chat-template]\n"
    "       [--prefill-step-size N] [--threads N] [--device cpu|cuda] [--logprobs K] [--json] [--verbose]\n"
    "       [--max-kv-size N] [--kv-bits 4|8] [--kv-group-size G] [--quantized-kv-start N] [--prompt-cache-file F]\n"
    "       [--wired]";

typedef struct {
    bool json;
    int logprobs_k, vocab;
    bool have_tok;
    json_t *tokens, *logprobs; // --json
    char *text;                // --json: the whole reply
    size_t text_len, text_cap;
    stream_response final;
} run_ctx;

// The k most likely tokens of lp [vocab] as [[id, logprob], ...], most likely first.
static json_t *top_logprobs(const float *lp, int vocab, int k) {
    json_t *arr = json_array();
    int32_t best[64];
    int n = 0;
    for (int id = 0; id < vocab; id++) {
        if (n == k && lp[id] <= lp[best[n - 1]]) continue;
        int at = n < k ? n++ : k - 1;
        while (at > 0 && lp[best[at - 1]] < lp[id]) {
            best[at] = best[at - 1];
            at--;
        }
        best[at] = id;
    }
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("[i,f]", best[i], (double)lp[best[i]]));
    return arr;
}

static int on_response(void *v, const stream_response *r) {
    run_ctx *c = v;
    bool has_token = r->token >= 0 && !(r->finish_reason && !strcmp(r->finish_reason, "stop"));
    if (c->json) {
        if (r->text_len) {
            if (c->text_len + r->text_len + 1 > c->text_cap) {
                size_t cap = (c->text_len + r->text_len + 1) * 2;
                char *t = realloc(c->text, cap);
                if (!t) return 1;
                c->text = t;
                c->text_cap = cap;
            }
            memcpy(c->text + c->text_len, r->text, r->text_len);
            c->text_len += r->text_len;
            c->text[c->text_len] = 0;
        }
        if (has_token) {
            json_array_append_new(c->tokens, json_integer(r->token));
            if (c->logprobs_k > 0 && r->logprobs)
                json_array_append_new(c->logprobs, top_logprobs(r->logprobs, c->vocab, c->logprobs_k));
        }
    } else if (r->text_len) {
        fwrite(r->text, 1, r->text_len, stdout);
        fflush(stdout);
    } else if (!c->have_tok && has_token) {
        printf("%d ", r->token);
        fflush(stdout);
    }
    c->final = *r;
    return 0;
}

// "1,2,3" -> ids; false on a malformed list.
static bool parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (errno || end == s || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            return false;
        }
        if (k == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[k++] = (int32_t)x;
        s = *end ? end + 1 : end;
    }
    *ids = v;
    *n = k;
    return k > 0;
}

// Renders the model's chat template (GGUF metadata or the folder's files, as `rill chat-template`
// finds it) around the prompt, the system prompt first when given. *out stays NULL when the model
// has no template.
static rill_status apply_template(const char *model_path, const char *system, const char *prompt, char **out) {
    *out = NULL;
    chat_template_source src;
    rill_status st = chat_template_source_load(model_path, NULL, &src);
    if (st != RILL_OK || !src.template_src) {
        if (st == RILL_OK) chat_template_source_free(&src);
        return st;
    }
    chat_template *t;
    if ((st = chat_template_compile(src.template_src, strlen(src.template_src), &t)) != RILL_OK) {
        rill_error_prefix("%s", src.origin);
        chat_template_source_free(&src);
        return st;
    }
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", prompt));
    st = chat_template_apply(t, msgs, NULL, true, src.bos_token, src.eos_token, NULL, out, NULL);
    json_decref(msgs);
    chat_template_free(t);
    chat_template_source_free(&src);
    return st;
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_ids = NULL, *system = NULL;
    bool ignore_template = false, verbose = false, json = false;
    long logprobs_k = 0;
    const char *cache_file = NULL; // --prompt-cache-file
    cli_gen_opts g;                // the flags generate shares with chat (gen_flags.c)
    cli_gen_opts_init(&g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool matched;
        if (cli_gen_flag(&g, argc, argv, &i, USAGE, &matched) != CLI_OK) return CLI_BAD_USAGE;
        if (matched) continue;
        const char **text_arg = !strcmp(a, "--model")                        ? &model_path
                                : !strcmp(a, "--prompt") || !strcmp(a, "-p") ? &prompt
                                : !strcmp(a, "--prompt-ids")                 ? &prompt_ids
                                : !strcmp(a, "--system-prompt")              ? &system
                                : !strcmp(a, "--prompt-cache-file")          ? &cache_file
                                                                             : NULL;
        if (text_arg || !strcmp(a, "--logprobs")) {
            if (!v) return cli_fail_usage(USAGE, "%s needs a value", a);
            i++;
            if (text_arg)
                *text_arg = v;
            else if (!cli_parse_long(v, 0, 64, &logprobs_k))
                return cli_fail_usage(USAGE, "--logprobs: '%s' is not an integer in [0, 64]", v);
        } else if (!strcmp(a, "--ignore-chat-template"))
            ignore_template = true;
        else if (!strcmp(a, "--verbose"))
            verbose = true;
        else if (!strcmp(a, "--json"))
            json = true;
        else
            return cli_fail_usage(USAGE, "unknown option '%s'", a);
    }
    generate_params p = g.p;
    const char *device = g.device;
    const int32_t *extra_eos = g.extra_eos;
    int n_extra = g.n_extra_eos;
    if (!model_path) return cli_fail_usage(USAGE, "--model is required");
    if (!prompt == !prompt_ids) return cli_fail_usage(USAGE, "give exactly one of --prompt and --prompt-ids");
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    if (prompt_ids && !parse_ids(prompt_ids, &ids, &n_ids))
        return cli_fail_usage(USAGE, "--prompt-ids: '%s' is not a list of token ids like 1,2,3", prompt_ids);

    int rc = CLI_BAD_INPUT;
    rill_backend *be = NULL;
    rill_stream *s = NULL;
    rill_model *m = NULL;
    rill_cache *cache = NULL;
    tokenizer *tok = NULL;
    char *stdin_text = NULL, *templated = NULL;
    int32_t *xtc_special = NULL; // [p.sampling.n_xtc_special]
    run_ctx ctx = {0};
    p.host_sampling = logprobs_k > 0;                // the device loop brings no logprobs back
    const char *graphs = getenv("RILL_CUDA_GRAPHS"); // "0": the device loop with plain launches (docs/cuda.md)
    p.no_graphs = graphs && !strcmp(graphs, "0");
    rill_status st = backend_open(device, g.threads, &be);
    if (st == RILL_OK) st = be->ops->stream_create(be, &s);
    if (st == RILL_OK) st = model_load(model_path, be, &m);
    if (st == RILL_OK && g.wired) cli_wire_model(m, device, verbose);
    if (st == RILL_OK && (prompt || !ids)) st = tokenizer_load(model_path, &tok);
    if (st != RILL_OK) goto out;
    if (prompt) {
        if (!strcmp(prompt, "-")) prompt = stdin_text = cli_read_all(stdin);
        const char *text = prompt;
        if (!ignore_template) {
            if ((st = apply_template(model_path, system, prompt, &templated)) != RILL_OK) goto out;
            if (templated) text = templated;
            if (templated && cache_file) { // the cache holds the prefix: keep the part from the query on (mlx-lm)
                char *probe = NULL;
                if ((st = apply_template(model_path, system, "<query>", &probe)) != RILL_OK) goto out;
                const char *at = probe ? strstr(probe, "<query>") : NULL;
                if (at) text = templated + (at - probe);
                rill_free(probe);
            }
        }
        // BOS only when the text does not already start with it (mlx-lm's stream_generate)
        size_t bl = 0;
        int32_t b = tokenizer_bos(tok);
        const char *bos = b >= 0 ? tokenizer_piece(tok, b, &bl) : NULL;
        unsigned flags = TOKENIZER_PARSE_SPECIAL;
        if (!(bos && bl && !strncmp(text, bos, bl)) && !(cache_file && templated)) flags |= TOKENIZER_ADD_SPECIAL;
        size_t n;
        if ((st = tokenizer_encode(tok, text, strlen(text), flags, &ids, &n)) != RILL_OK) goto out;
        n_ids = (int64_t)n;
    }
    if ((rc = cli_gen_check_vocab(&g, m->cfg.vocab_size, USAGE)) != CLI_OK) goto done;
    rc = CLI_BAD_INPUT;
    if (p.sampling.xtc_probability > 0) { // newline and EOS are never removed (mlx-lm)
        if ((st = api_xtc_special(tok, extra_eos, n_extra, &xtc_special, &p.sampling.n_xtc_special)) != RILL_OK)
            goto out;
        p.sampling.xtc_special = xtc_special;
    }
    if ((st = cli_make_cache(m, s, model_path, cache_file, g.max_kv_size, p.kv_bits, p.kv_group_size, &cache)) !=
        RILL_OK)
        goto out;
    ctx.json = json;
    ctx.logprobs_k = (int)logprobs_k;
    ctx.vocab = m->cfg.vocab_size;
    ctx.have_tok = tok != NULL;
    ctx.tokens = json_array();
    ctx.logprobs = json_array();
    if (verbose && !json && prompt) fprintf(stderr, "==========\n%s\n==========\n", templated ? templated : prompt);
    st = stream_generate(m, tok, cache, s, ids, n_ids, &p, extra_eos, n_extra, on_response, &ctx);
    if (st != RILL_OK) goto out;
    const stream_response *f = &ctx.final;
    if (json) {
        json_t *pt = json_array();
        for (int64_t i = 0; i < n_ids; i++)
            json_array_append_new(pt, json_integer(ids[i]));
        json_t *o = json_pack("{s:o,s:O,s:s,s:s?,s:{s:I,s:f,s:I,s:f,s:f}}", "prompt_tokens", pt, "tokens", ctx.tokens,
                              "text", ctx.text ? ctx.text : "", "finish_reason", f->finish_reason, "stats",
                              "prompt_tokens", (json_int_t)f->prompt_tokens, "prompt_tps", f->prompt_tps,
                              "generation_tokens", (json_int_t)f->generation_tokens, "generation_tps",
                              f->generation_tps, "peak_memory_gb", f->peak_memory_gb);
        if (logprobs_k > 0) json_object_set(o, "logprobs", ctx.logprobs);
        char *dump = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        puts(dump);
        free(dump);
        json_decref(o);
    } else {
        printf("\n");
        if (verbose) {
            fprintf(stderr, "==========\nPrompt: %lld tokens, %.3f tokens-per-sec\n", (long long)f->prompt_tokens,
                    f->prompt_tps);
            fprintf(stderr, "Generation: %lld tokens, %.3f tokens-per-sec\n", (long long)f->generation_tokens,
                    f->generation_tps);
            fprintf(stderr, "Peak memory: %.3f GB\n", f->peak_memory_gb);
        }
    }
    rc = CLI_OK;
out:
    if (st != RILL_OK) rc = cli_fail_input();
done:
    json_decref(ctx.tokens);
    json_decref(ctx.logprobs);
    free(ctx.text);
    free(stdin_text);
    rill_free(templated);
    rill_free(xtc_special);
    if (prompt)
        rill_free(ids);
    else
        free(ids);
    cache_free(cache);
    tokenizer_free(tok);
    model_free(m);
    if (s) be->ops->stream_destroy(s);
    backend_close(be);
    return rc;
}
