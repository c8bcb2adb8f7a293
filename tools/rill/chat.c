// chat.c: `rill chat`: mlx_lm.chat's REPL over one prompt cache that lives from turn to turn. Each
// turn renders the whole conversation with the chat template, keeps the longest prefix of it that
// the cache already holds (trimming the cache where the template rendered the past differently),
// prefills only the rest and streams the reply. `q` quits, `r` resets, `h` lists the commands.
// With --ignore-chat-template the conversation is the turns' plain text, one line apart.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "base/alloc.h"
#include "cli.h"
#include "tokenizer/tokenizer_api.h"

static const char *USAGE =
    "chat --model PATH [--system-prompt TEXT] [--max-tokens N] [--temp T] [--top-p P] [--min-p P] [--top-k K]\n"
    "       [--min-tokens-to-keep N] [--xtc-probability P] [--xtc-threshold T] [--seed S] [--repetition-penalty R]\n"
    "       [--repetition-context-size N] [--presence-penalty P] [--frequency-penalty F] [--extra-eos-token ID]\n"
    "       [--ignore-chat-template] [--prefill-step-size N] [--threads N] [--device cpu|cuda] [--verbose]\n"
    "       [--max-kv-size N] [--kv-bits 4|8] [--kv-group-size G] [--quantized-kv-start N] [--wired]";

static const char *HELP =
    "The command list:\n- 'q' to exit\n- 'r' to reset the chat\n- 'h' to display these commands\n";

typedef struct {
    rill_model *m;
    rill_stream *s;
    rill_tokenizer *rt;
    tokenizer *tok;
    cli_gen_opts o;
    int32_t *xtc_special; // [n] ids XTC keeps
    bool use_template, verbose;
    const char *system;
    json_t *messages; // the conversation: [{role, content}]
    char *plain;      // --ignore-chat-template: the conversation as one text (NUL-terminated)
    size_t plain_len, plain_cap;
    rill_cache *cache;
    int32_t *seq; // [n_seq] the conversation's tokens; the cache holds seq[0 .. cache offset)
    int64_t n_seq, cap_seq;
    char *reply; // this turn's reply text so far
    size_t reply_len, reply_cap;
    stream_response final;
} chat;

static bool append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *b = realloc(*buf, c);
        if (!b) return false;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
    return true;
}

static bool push_token(chat *c, int32_t id) {
    if (c->n_seq == c->cap_seq) {
        int64_t cap = c->cap_seq ? 2 * c->cap_seq : 1024;
        int32_t *v = realloc(c->seq, (size_t)cap * sizeof *v);
        if (!v) return false;
        c->seq = v;
        c->cap_seq = cap;
    }
    c->seq[c->n_seq++] = id;
    return true;
}

static int on_response(void *v, const stream_response *r) {
    chat *c = v;
    if (r->token >= 0 && !push_token(c, r->token)) return 1; // the cache may hold the EOS too
    if (r->text_len) {
        fwrite(r->text, 1, r->text_len, stdout);
        fflush(stdout);
        if (!append(&c->reply, &c->reply_len, &c->reply_cap, r->text, r->text_len)) return 1;
    }
    c->final = *r;
    return 0;
}

// Forgets the conversation (the system prompt stays) and empties the cache.
static rill_status reset(chat *c) {
    json_array_clear(c->messages);
    if (c->system && c->use_template)
        json_array_append_new(c->messages, json_pack("{s:s,s:s}", "role", "system", "content", c->system));
    c->plain_len = 0;
    if (c->plain) c->plain[0] = 0;
    c->n_seq = 0;
    int64_t off = c->cache ? cache_offset(c->cache) : -1;
    if (off == 0 || (off > 0 && cache_trim(c->cache, off) == off)) return RILL_OK;
    cache_free(c->cache);
    c->cache = NULL;
    return model_make_prompt_cache(c->m, c->o.max_kv_size, &c->cache);
}

static json_t *text_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    return j ? j : json_stringn_nocheck(s, n); // a reply cut inside a character
}

// The conversation with the new user turn, rendered (the template adds the generation prompt).
static rill_status render(chat *c, char **text, size_t *len) {
    *text = NULL;
    if (!c->use_template) {
        *text = c->plain;
        *len = c->plain_len;
        return RILL_OK;
    }
    char *msgs = json_dumps(c->messages, JSON_COMPACT);
    if (!msgs) return rill_fail(RILL_ENOMEM, "chat: out of memory");
    rill_status st = rill_apply_chat_template(c->rt, msgs, NULL, true, NULL, text, len);
    free(msgs);
    return st;
}

// One turn: the reply to `line` streams to stdout. Errors leave the conversation as it was.
static rill_status turn(chat *c, const char *line) {
    size_t plain_before = c->plain_len;
    if (c->use_template)
        json_array_append_new(c->messages,
                              json_pack("{s:s,s:o}", "role", "user", "content", text_json(line, strlen(line))));
    else if ((c->plain_len && !append(&c->plain, &c->plain_len, &c->plain_cap, "\n", 1)) ||
             !append(&c->plain, &c->plain_len, &c->plain_cap, line, strlen(line)))
        return rill_fail(RILL_ENOMEM, "chat: out of memory");
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n = 0;
    rill_status st = render(c, &text, &len);
    if (st == RILL_OK) st = api_prompt_ids(c->tok, text, len, &ids, &n);
    if (st == RILL_OK && n == 0) st = rill_fail(RILL_EINVAL, "chat: the conversation renders to no tokens");
    int64_t cached = 0;
    if (st == RILL_OK) {
        // Reuse the longest prefix the cache holds; at least one token must run.
        int64_t off = cache_offset(c->cache), have = off < c->n_seq ? off : c->n_seq;
        while (cached < have && cached < n - 1 && c->seq[cached] == ids[cached])
            cached++;
        if (cached < off && cache_trim(c->cache, off - cached) != off - cached) { // not trimmable: start over
            cache_free(c->cache);
            c->cache = NULL;
            cached = 0;
            st = model_make_prompt_cache(c->m, c->o.max_kv_size, &c->cache);
        }
    }
    if (st == RILL_OK) {
        c->n_seq = 0;
        for (int64_t i = 0; i < n; i++)
            if (!push_token(c, ids[i])) st = rill_fail(RILL_ENOMEM, "chat: out of memory");
    }
    c->reply_len = 0;
    memset(&c->final, 0, sizeof c->final);
    if (st == RILL_OK)
        st = stream_generate(c->m, c->tok, c->cache, c->s, ids + cached, n - cached, &c->o.p, c->o.extra_eos,
                             c->o.n_extra_eos, on_response, c);
    if (c->cache) { // the cache holds a prefix of seq: prompt and returned tokens
        int64_t off = cache_offset(c->cache);
        if (off < c->n_seq) c->n_seq = off;
        if (off > c->n_seq) cache_trim(c->cache, off - c->n_seq);
    }
    if (st == RILL_OK) {
        printf("\n");
        if (c->use_template)
            json_array_append_new(c->messages, json_pack("{s:s,s:o}", "role", "assistant", "content",
                                                         text_json(c->reply ? c->reply : "", c->reply_len)));
        else if (c->reply_len && !append(&c->plain, &c->plain_len, &c->plain_cap, c->reply, c->reply_len))
            st = rill_fail(RILL_ENOMEM, "chat: out of memory");
        const stream_response *f = &c->final;
        if (c->verbose) {
            fprintf(stderr, "==========\nPrompt: %lld tokens (%lld from the cache), %.3f tokens-per-sec\n",
                    (long long)f->prompt_tokens, (long long)cached, f->prompt_tps);
            fprintf(stderr, "Generation: %lld tokens, %.3f tokens-per-sec\n", (long long)f->generation_tokens,
                    f->generation_tps);
            fprintf(stderr, "Peak memory: %.3f GB\n", f->peak_memory_gb);
        }
    } else if (c->use_template) // drop the user turn that failed
        json_array_remove(c->messages, json_array_size(c->messages) - 1);
    else {
        c->plain_len = plain_before;
        if (c->plain) c->plain[plain_before] = 0;
    }
    if (c->use_template) rill_free_buffer(text);
    rill_free(ids);
    return st;
}

int cmd_chat(int argc, char **argv) {
    chat c = {0};
    cli_gen_opts_init(&c.o);
    c.o.p.max_tokens = 256; // mlx_lm.chat's default
    const char *model_path = NULL;
    bool ignore_template = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool matched;
        int rc = cli_gen_flag(&c.o, argc, argv, &i, USAGE, &matched);
        if (rc != CLI_OK) return rc;
        if (matched) continue;
        if (!strcmp(a, "--model") || !strcmp(a, "--system-prompt")) {
            if (!v) return cli_fail_usage(USAGE, "%s needs a value", a);
            i++;
            *(!strcmp(a, "--model") ? &model_path : &c.system) = v;
        } else if (!strcmp(a, "--ignore-chat-template"))
            ignore_template = true;
        else if (!strcmp(a, "--verbose"))
            c.verbose = true;
        else
            return cli_fail_usage(USAGE, "unknown option '%s'", a);
    }
    if (!model_path) return cli_fail_usage(USAGE, "--model is required");

    int rc = CLI_BAD_INPUT;
    rill_backend *be = NULL;
    rill_status st = backend_open(c.o.device, c.o.threads, &be);
    if (st == RILL_OK) st = be->ops->stream_create(be, &c.s);
    if (st == RILL_OK) st = model_load(model_path, be, &c.m);
    if (st == RILL_OK && c.o.wired) cli_wire_model(c.m, c.o.device, c.verbose);
    if (st == RILL_OK) st = rill_tokenizer_load(model_path, &c.rt);
    if (st != RILL_OK) goto out;
    c.tok = rill_tokenizer_inner(c.rt);
    if ((rc = cli_gen_check_vocab(&c.o, c.m->cfg.vocab_size, USAGE)) != CLI_OK) goto done;
    rc = CLI_BAD_INPUT;
    if (c.o.p.sampling.xtc_probability > 0) {
        if ((st = api_xtc_special(c.tok, c.o.extra_eos, c.o.n_extra_eos, &c.xtc_special,
                                  &c.o.p.sampling.n_xtc_special)) != RILL_OK)
            goto out;
        c.o.p.sampling.xtc_special = c.xtc_special;
    }
    // The template is used unless asked not to, or the model has none (mlx-lm: plain text then).
    char *probe = NULL;
    c.use_template =
        !ignore_template && rill_apply_chat_template(c.rt, "[]", NULL, false, NULL, &probe, NULL) != RILL_ENOTFOUND;
    rill_free_buffer(probe);
    rill_clear_error();
    c.messages = json_array();
    if ((st = reset(&c)) != RILL_OK) goto out;

    printf("[INFO] Starting chat session with %s.\n", model_path);
    fputs(HELP, stdout);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        printf(">> ");
        fflush(stdout);
        ssize_t got = getline(&line, &cap, stdin);
        if (got < 0) {
            printf("\n");
            break;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = 0;
        if (!strcmp(line, "q")) break;
        if (!strcmp(line, "r")) {
            if ((st = reset(&c)) != RILL_OK) break;
            continue;
        }
        if (!strcmp(line, "h")) {
            fputs(HELP, stdout);
            continue;
        }
        if (!got) continue;
        if (turn(&c, line) != RILL_OK) {
            fflush(stdout);
            cli_fail_input(); // the conversation goes on without that turn
        }
    }
    free(line);
    if (st == RILL_OK) rc = CLI_OK;
out:
    if (st != RILL_OK) rc = cli_fail_input();
done:
    json_decref(c.messages);
    free(c.plain);
    free(c.seq);
    free(c.reply);
    rill_free(c.xtc_special);
    cache_free(c.cache);
    rill_tokenizer_free(c.rt);
    model_free(c.m);
    if (c.s) be->ops->stream_destroy(c.s);
    backend_close(be);
    return rc;
}
