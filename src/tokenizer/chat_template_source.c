// chat_template_source.c: finds a model's chat template and its BOS/EOS strings. GGUF keeps the
// template under tokenizer.chat_template and the tokens as ids into tokenizer.ggml.tokens; an HF
// folder keeps the template in chat_template.jinja, chat_template.json or tokenizer_config.json
// (a string, or a list of {name, template}), and the tokens as strings or {"content": ...}.
#include "tokenizer/chat_template_source.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mapfile.h"
#include "base/status.h"
#include "io/gguf.h"

static char *copy_n(const char *s, size_t n) {
    char *c = malloc(n + 1);
    if (!c) return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

// The text of token `id_key`'s id in tokenizer.ggml.tokens, or NULL.
static char *gguf_token_text(const gguf_file *f, const char *id_key) {
    uint64_t id;
    gguf_string s;
    const gguf_kv *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    if (!gguf_get_u64(f, id_key, &id) || !tokens || !gguf_arr_str(tokens, id, &s)) return NULL;
    return copy_n(s.ptr, (size_t)s.len);
}

static rill_status load_gguf(const char *path, chat_template_source *out) {
    gguf_file *f;
    rill_status st = gguf_open(path, &f);
    if (st != RILL_OK) return st;
    gguf_string s;
    if (gguf_get_str(f, "tokenizer.chat_template", &s)) out->template_src = copy_n(s.ptr, (size_t)s.len);
    out->bos_token = gguf_token_text(f, "tokenizer.ggml.bos_token_id");
    out->eos_token = gguf_token_text(f, "tokenizer.ggml.eos_token_id");
    size_t n = strlen(path) + 32;
    out->origin = malloc(n);
    if (out->origin) snprintf(out->origin, n, "%s: tokenizer.chat_template", path);
    gguf_close(f);
    return RILL_OK;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static rill_status read_text(const char *path, char **out) {
    mapped_file mf;
    rill_status st = mapped_file_open(&mf, path, 0);
    if (st != RILL_OK) return st;
    *out = copy_n((const char *)mf.data, mf.size);
    mapped_file_close(&mf);
    return *out ? RILL_OK : rill_fail(RILL_ENOMEM, "%s: out of memory", path);
}

static rill_status load_json(const char *path, json_t **out) {
    json_error_t err;
    *out = json_load_file(path, 0, &err);
    if (!*out) return rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", path, err.line, err.column, err.text);
    return RILL_OK;
}

// A chat_template value: a string, or a list of {"name", "template"} from which `name` (or
// "default", or the first) is taken.
static rill_status template_from_value(const json_t *v, const char *name, const char *path, char **out) {
    if (json_is_string(v)) {
        *out = copy_n(json_string_value(v), json_string_length(v));
        return RILL_OK;
    }
    if (!json_is_array(v))
        return rill_fail(RILL_EFORMAT, "%s: field 'chat_template' is neither a string nor a list of templates", path);
    size_t i, at = 0;
    json_t *item;
    bool found = false;
    json_array_foreach(v, i, item) {
        const char *n = json_string_value(json_object_get(item, "name"));
        if (!found && n && !strcmp(n, name ? name : "default")) {
            at = i;
            found = true;
        }
    }
    if (!found && name) return rill_fail(RILL_ENOTFOUND, "%s: no chat template named '%s'", path, name);
    const json_t *t = json_object_get(json_array_get(v, at), "template");
    if (!json_is_string(t))
        return rill_fail(RILL_EFORMAT, "%s: field 'chat_template[%zu].template' is not a string", path, at);
    *out = copy_n(json_string_value(t), json_string_length(t));
    return RILL_OK;
}

// bos_token / eos_token in tokenizer_config.json: a string or {"content": "..."}.
static char *special_token(const json_t *cfg, const char *key) {
    const json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? copy_n(json_string_value(v), json_string_length(v)) : NULL;
}

static rill_status load_folder(const char *dir, const char *name, chat_template_source *out) {
    char path[4096];
    rill_status st = RILL_OK;
    json_t *cfg = NULL;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (is_file(path) && (st = load_json(path, &cfg)) != RILL_OK) return st;
    if (cfg) {
        out->bos_token = special_token(cfg, "bos_token");
        out->eos_token = special_token(cfg, "eos_token");
    }
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (is_file(path)) {
        st = read_text(path, &out->template_src);
    } else {
        snprintf(path, sizeof path, "%s/chat_template.json", dir);
        json_t *holder = NULL;
        if (is_file(path)) {
            st = load_json(path, &holder);
        } else if (cfg) {
            snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
            holder = json_incref(cfg);
        }
        const json_t *v = holder ? json_object_get(holder, "chat_template") : NULL;
        if (st == RILL_OK && v && !json_is_null(v)) st = template_from_value(v, name, path, &out->template_src);
        json_decref(holder);
    }
    json_decref(cfg);
    out->origin = strdup(path);
    return st;
}

rill_status chat_template_source_load(const char *path, const char *name, chat_template_source *out) {
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(path, &st) != 0)
        return rill_fail(errno == ENOENT ? RILL_ENOTFOUND : RILL_EIO, "%s: %s", path, strerror(errno));
    rill_status s = S_ISDIR(st.st_mode) ? load_folder(path, name, out) : load_gguf(path, out);
    if (s != RILL_OK) chat_template_source_free(out);
    return s;
}

void chat_template_source_free(chat_template_source *s) {
    free(s->template_src);
    free(s->bos_token);
    free(s->eos_token);
    free(s->origin);
    memset(s, 0, sizeof *s);
}
