// tokenizer_api.c: the public tokenizer API of rill.h over the internal tokenizer (tokenizer.h)
// and the chat-template engine (chat_template.h). A rill_tokenizer also carries the model's
// compiled chat template and the BOS/EOS strings the template sees.
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "base/status.h"
#include "rill.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_source.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_api.h"

struct rill_tokenizer {
    tokenizer *tok;
    chat_template *tpl;         // NULL when the model has none
    chat_template_source source; // template text, bos/eos strings, origin
};

void rill_free_buffer(void *p) { rill_free(p); }

// The place chat templates live: the path itself, or the folder of a tokenizer.json file.
static char *template_home(const char *path) {
    struct stat st;
    size_t n = strlen(path);
    bool json_file = stat(path, &st) == 0 && S_ISREG(st.st_mode) && n >= 5 && !strcmp(path + n - 5, ".json");
    char *copy = strdup(path);
    if (!copy || !json_file) return copy;
    char *dir = strdup(dirname(copy));
    free(copy);
    return dir;
}

rill_status rill_tokenizer_load(const char *path, rill_tokenizer **out) {
    *out = NULL;
    rill_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return rill_fail(RILL_ENOMEM, "%s: out of memory", path);
    rill_status st = tokenizer_load(path, &t->tok);
    char *home = st == RILL_OK ? template_home(path) : NULL;
    if (st == RILL_OK) st = home ? chat_template_source_load(home, NULL, &t->source) : RILL_ENOMEM;
    free(home);
    if (st == RILL_OK && t->source.template_src) {
        st = chat_template_compile(t->source.template_src, strlen(t->source.template_src), &t->tpl);
        if (st != RILL_OK) rill_error_prefix("%s", t->source.origin);
    }
    if (st != RILL_OK) {
        rill_tokenizer_free(t);
        return st;
    }
    *out = t;
    return RILL_OK;
}

void rill_tokenizer_free(rill_tokenizer *t) {
    if (!t) return;
    tokenizer_free(t->tok);
    chat_template_free(t->tpl);
    chat_template_source_free(&t->source);
    free(t);
}

rill_status rill_tokenize(rill_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids,
                          size_t *n_ids) {
    unsigned f = (flags & RILL_TOKENIZE_ADD_SPECIAL ? TOKENIZER_ADD_SPECIAL : 0) |
                 (flags & RILL_TOKENIZE_PARSE_SPECIAL ? TOKENIZER_PARSE_SPECIAL : 0);
    return tokenizer_encode(t->tok, text, len, f, ids, n_ids);
}

rill_status rill_detokenize(rill_tokenizer *t, const int32_t *ids, size_t n_ids, bool skip_special, char **text,
                            size_t *len) {
    return tokenizer_decode(t->tok, ids, n_ids, skip_special, text, len);
}

tokenizer *rill_tokenizer_inner(rill_tokenizer *t) { return t->tok; }

const char *rill_token_piece(const rill_tokenizer *t, int32_t id, size_t *len) { return tokenizer_piece(t->tok, id, len); }
int32_t rill_vocab_size(const rill_tokenizer *t) { return tokenizer_vocab_size(t->tok); }
int32_t rill_token_bos(const rill_tokenizer *t) { return tokenizer_bos(t->tok); }
const int32_t *rill_token_eos(const rill_tokenizer *t, size_t *n) { return tokenizer_eos(t->tok, n); }

static rill_status parse_json_arg(const char *text, const char *what, json_t **out) {
    *out = NULL;
    if (!text) return RILL_OK;
    json_error_t err;
    *out = json_loads(text, JSON_DECODE_ANY, &err);
    if (!*out) return rill_fail(RILL_EINVAL, "%s: line %d, column %d: %s", what, err.line, err.column, err.text);
    return RILL_OK;
}

rill_status rill_apply_chat_template(rill_tokenizer *t, const char *messages_json, const char *tools_json,
                                     bool add_generation_prompt, const char *extra_vars_json, char **prompt,
                                     size_t *len) {
    if (!t->tpl)
        return rill_fail(RILL_ENOTFOUND, "%s: the model has no chat template", t->source.origin ? t->source.origin : "model");
    json_t *messages, *tools = NULL, *vars = NULL;
    rill_status st = parse_json_arg(messages_json, "messages", &messages);
    if (st == RILL_OK && !json_is_array(messages)) st = rill_fail(RILL_EINVAL, "messages: not a JSON list");
    if (st == RILL_OK) st = parse_json_arg(tools_json, "tools", &tools);
    if (st == RILL_OK) st = parse_json_arg(extra_vars_json, "extra variables", &vars);
    if (st == RILL_OK && vars && !json_is_object(vars)) st = rill_fail(RILL_EINVAL, "extra variables: not a JSON object");
    if (st == RILL_OK)
        st = chat_template_apply(t->tpl, messages, tools, add_generation_prompt, t->source.bos_token,
                                 t->source.eos_token, vars, prompt, len);
    json_decref(messages);
    json_decref(tools);
    json_decref(vars);
    return st;
}
