// tokenizer_json.c: loads a tokenizer from HF files: tokenizer.json (model, added tokens,
// normalizer, pre-tokenizer, post-processor, decoder), tokenizer_config.json (special token
// names, chat template) and generation_config.json (more eos ids). Errors name the file and the
// JSON field ("tokenizer.json: model.merges[12]: ...").
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "base/alloc.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct {
    const char *file; // for messages
} ctx;

#define JFAIL(c, st, path, ...) jfail((c), (st), (path), __VA_ARGS__)

static rill_status __attribute__((format(printf, 4, 5)))
jfail(const ctx *c, rill_status st, const char *path, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rill_fail(st, "%s: %s: %s", c->file, path, msg);
}

static bool get_bool(json_t *o, const char *k, bool dflt) {
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

// A string field (required): *s and *n, else an error naming path.key.
static rill_status get_str(const ctx *c, json_t *o, const char *path, const char *k, const char **s, size_t *n) {
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v)) return JFAIL(c, RILL_EFORMAT, path, "\"%s\" must be a string", k);
    *s = json_string_value(v), *n = json_string_length(v);
    return RILL_OK;
}

static rill_status get_pattern(const ctx *c, json_t *o, const char *path, tok_pattern *p) {
    json_t *pat = json_object_get(o, "pattern");
    json_t *str = json_object_get(pat, "String"), *re = json_object_get(pat, "Regex");
    if (json_is_string(str)) return pattern_literal(p, json_string_value(str), json_string_length(str));
    if (json_is_string(re)) {
        rill_status st = pattern_regex(p, json_string_value(re), json_string_length(re));
        if (st) rill_error_prefix("%s: %s.pattern", c->file, path);
        return st;
    }
    return JFAIL(c, RILL_EFORMAT, path, "\"pattern\" must be {\"String\": ...} or {\"Regex\": ...}");
}

static rill_status one_char(const ctx *c, json_t *o, const char *path, const char *k, char rep[4], int *len,
                            uint32_t *cp) {
    const char *s = NULL;
    size_t n = 0;
    rill_status st = get_str(c, o, path, k, &s, &n);
    if (st) return st;
    uint32_t v;
    int l = tok_utf8_decode((const uint8_t *)s, n, &v);
    if (!l || (size_t)l != n) return JFAIL(c, RILL_EFORMAT, path, "\"%s\" must be one character", k);
    memcpy(rep, s, n);
    *len = l;
    if (cp) *cp = v;
    return RILL_OK;
}

static prepend_scheme get_prepend(json_t *o) {
    json_t *ps = json_object_get(o, "prepend_scheme");
    if (json_is_string(ps)) {
        const char *s = json_string_value(ps);
        return !strcmp(s, "always") ? PREPEND_ALWAYS : !strcmp(s, "never") ? PREPEND_NEVER : PREPEND_FIRST;
    }
    return get_bool(o, "add_prefix_space", true) ? PREPEND_ALWAYS : PREPEND_NEVER;
}

// Allocates the items array of a Sequence node from the JSON array at o[key].
static rill_status seq_items(const ctx *c, json_t *o, const char *path, const char *key, void **items, size_t *n,
                             size_t elem, json_t **arr) {
    *arr = json_object_get(o, key);
    if (!json_is_array(*arr)) return JFAIL(c, RILL_EFORMAT, path, "\"%s\" must be an array", key);
    *n = json_array_size(*arr);
    *items = rill_calloc(*n ? *n : 1, elem);
    return *items ? RILL_OK : RILL_ENOMEM;
}

static const char *type_of(json_t *o) {
    json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : NULL;
}

static rill_status parse_normalizer(const ctx *c, json_t *o, const char *path, tok_normalizer *nm) {
    const char *type = type_of(o);
    if (!type) return JFAIL(c, RILL_EFORMAT, path, "missing \"type\"");
    static const struct {
        const char *name;
        norm_kind kind;
    } simple[] = {
        {"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD}, {"Lowercase", NORM_LOWERCASE}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(type, simple[i].name)) return nm->kind = simple[i].kind, RILL_OK;
    const char *s = NULL;
    size_t n = 0;
    rill_status st;
    if (!strcmp(type, "Prepend")) {
        nm->kind = NORM_PREPEND;
        if ((st = get_str(c, o, path, "prepend", &s, &n))) return st;
        nm->str = tok_strdup(s, n), nm->str_len = n;
        return nm->str ? RILL_OK : RILL_ENOMEM;
    }
    if (!strcmp(type, "Replace")) {
        nm->kind = NORM_REPLACE;
        if ((st = get_str(c, o, path, "content", &s, &n))) return st;
        nm->str = tok_strdup(s, n), nm->str_len = n;
        if (!nm->str) return RILL_ENOMEM;
        return get_pattern(c, o, path, &nm->pat);
    }
    if (!strcmp(type, "Strip")) {
        nm->kind = NORM_STRIP;
        nm->left = get_bool(o, "strip_left", true), nm->right = get_bool(o, "strip_right", true);
        return RILL_OK;
    }
    if (!strcmp(type, "Sequence")) {
        nm->kind = NORM_SEQUENCE;
        json_t *arr;
        if ((st = seq_items(c, o, path, "normalizers", (void **)&nm->items, &nm->n_items, sizeof *nm->items, &arr)))
            return st;
        for (size_t i = 0; i < nm->n_items; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", path, i);
            if ((st = parse_normalizer(c, json_array_get(arr, i), sub, &nm->items[i]))) return st;
        }
        return RILL_OK;
    }
    return JFAIL(c, RILL_EUNSUPPORTED, path, "normalizer type \"%s\" is not supported", type);
}

static rill_status parse_pretok(const ctx *c, json_t *o, const char *path, tok_pretokenizer *pt) {
    const char *type = type_of(o);
    if (!type) return JFAIL(c, RILL_EFORMAT, path, "missing \"type\"");
    rill_status st;
    if (!strcmp(type, "Split")) {
        pt->kind = PRE_SPLIT;
        const char *b = NULL;
        size_t n = 0;
        if ((st = get_str(c, o, path, "behavior", &b, &n))) return st;
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(b, names[i])) k = i;
        if (k < 0) return JFAIL(c, RILL_EFORMAT, path, "unknown \"behavior\" \"%s\"", b);
        pt->behavior = (split_behavior)k;
        pt->invert = get_bool(o, "invert", false);
        return get_pattern(c, o, path, &pt->pat);
    }
    if (!strcmp(type, "ByteLevel")) {
        pt->kind = PRE_BYTELEVEL;
        pt->add_prefix_space = get_bool(o, "add_prefix_space", true);
        pt->use_regex = get_bool(o, "use_regex", true);
        pt->behavior = SPLIT_ISOLATED;
        return pt->use_regex ? pattern_regex(&pt->pat, TOK_GPT2_REGEX, strlen(TOK_GPT2_REGEX)) : RILL_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        pt->kind = PRE_METASPACE;
        pt->prepend = get_prepend(o);
        pt->split = get_bool(o, "split", true);
        return one_char(c, o, path, "replacement", pt->rep, &pt->rep_len, NULL);
    }
    if (!strcmp(type, "Digits")) {
        pt->kind = PRE_DIGITS;
        pt->individual_digits = get_bool(o, "individual_digits", false);
        return RILL_OK;
    }
    if (!strcmp(type, "WhitespaceSplit")) return pt->kind = PRE_WHITESPACE_SPLIT, RILL_OK;
    if (!strcmp(type, "Whitespace")) { // \w+|[^\w\s]+, keeping the matches
        pt->kind = PRE_SPLIT, pt->behavior = SPLIT_REMOVED, pt->invert = true;
        static const char re[] = "\\w+|[^\\w\\s]+";
        return pattern_regex(&pt->pat, re, sizeof re - 1);
    }
    if (!strcmp(type, "Sequence")) {
        pt->kind = PRE_SEQUENCE;
        json_t *arr;
        if ((st = seq_items(c, o, path, "pretokenizers", (void **)&pt->items, &pt->n_items, sizeof *pt->items, &arr)))
            return st;
        for (size_t i = 0; i < pt->n_items; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", path, i);
            if ((st = parse_pretok(c, json_array_get(arr, i), sub, &pt->items[i]))) return st;
        }
        return RILL_OK;
    }
    return JFAIL(c, RILL_EUNSUPPORTED, path, "pre-tokenizer type \"%s\" is not supported", type);
}

static rill_status parse_decoder(const ctx *c, json_t *o, const char *path, tok_decoder *d) {
    const char *type = type_of(o);
    if (!type) return JFAIL(c, RILL_EFORMAT, path, "missing \"type\"");
    rill_status st;
    if (!strcmp(type, "ByteLevel")) return d->kind = DEC_BYTELEVEL, RILL_OK;
    if (!strcmp(type, "ByteFallback")) return d->kind = DEC_BYTEFALLBACK, RILL_OK;
    if (!strcmp(type, "Fuse")) return d->kind = DEC_FUSE, RILL_OK;
    if (!strcmp(type, "Metaspace")) {
        d->kind = DEC_METASPACE;
        d->prepend = get_prepend(o);
        return one_char(c, o, path, "replacement", d->rep, &d->rep_len, NULL);
    }
    if (!strcmp(type, "Strip")) {
        d->kind = DEC_STRIP;
        char tmp[4];
        int l;
        if ((st = one_char(c, o, path, "content", tmp, &l, &d->content))) return st;
        json_t *a = json_object_get(o, "start"), *b = json_object_get(o, "stop");
        if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 || json_integer_value(b) < 0)
            return JFAIL(c, RILL_EFORMAT, path, "\"start\" and \"stop\" must be non-negative integers");
        d->start = (size_t)json_integer_value(a), d->stop = (size_t)json_integer_value(b);
        return RILL_OK;
    }
    if (!strcmp(type, "Replace")) {
        d->kind = DEC_REPLACE;
        const char *s = NULL;
        size_t n = 0;
        if ((st = get_str(c, o, path, "content", &s, &n))) return st;
        d->str = tok_strdup(s, n), d->str_len = n;
        if (!d->str) return RILL_ENOMEM;
        return get_pattern(c, o, path, &d->pat);
    }
    if (!strcmp(type, "Sequence")) {
        d->kind = DEC_SEQUENCE;
        json_t *arr;
        if ((st = seq_items(c, o, path, "decoders", (void **)&d->items, &d->n_items, sizeof *d->items, &arr)))
            return st;
        for (size_t i = 0; i < d->n_items; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", path, i);
            if ((st = parse_decoder(c, json_array_get(arr, i), sub, &d->items[i]))) return st;
        }
        return RILL_OK;
    }
    return JFAIL(c, RILL_EUNSUPPORTED, path, "decoder type \"%s\" is not supported", type);
}

// Adds the ids a TemplateProcessing item ("SpecialToken": {"id": name}) stands for.
static rill_status template_ids(const ctx *c, json_t *pp, json_t *item, const char *path, tok_ids *out) {
    json_t *sp = json_object_get(item, "SpecialToken");
    if (!sp) return RILL_OK;
    json_t *name = json_object_get(sp, "id");
    if (!json_is_string(name)) return JFAIL(c, RILL_EFORMAT, path, "SpecialToken.id must be a string");
    json_t *def = json_object_get(json_object_get(pp, "special_tokens"), json_string_value(name));
    json_t *ids = json_object_get(def, "ids");
    if (!json_is_array(ids))
        return JFAIL(c, RILL_EFORMAT, path, "special token \"%s\" is not in post_processor.special_tokens",
                     json_string_value(name));
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_t *v = json_array_get(ids, i);
        if (!json_is_integer(v)) return JFAIL(c, RILL_EFORMAT, path, "special_tokens ids must be integers");
        if (tokids_push(out, (int32_t)json_integer_value(v))) return RILL_ENOMEM;
    }
    return RILL_OK;
}

static rill_status parse_post(const ctx *c, json_t *o, const char *path, tokenizer *t) {
    const char *type = type_of(o);
    if (!type) return JFAIL(c, RILL_EFORMAT, path, "missing \"type\"");
    rill_status st;
    if (!strcmp(type, "ByteLevel")) return RILL_OK; // offsets only
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(o, "single");
        if (!json_is_array(single)) return JFAIL(c, RILL_EFORMAT, path, "\"single\" must be an array");
        bool after = false;
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *item = json_array_get(single, i);
            char sub[256];
            snprintf(sub, sizeof sub, "%s.single[%zu]", path, i);
            if (json_object_get(item, "Sequence"))
                after = true;
            else if ((st = template_ids(c, o, item, sub, after ? &t->suffix : &t->prefix)))
                return st;
        }
        return RILL_OK;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        json_t *cls = json_array_get(json_object_get(o, "cls"), 1), *sep = json_array_get(json_object_get(o, "sep"), 1);
        if (!json_is_integer(cls) || !json_is_integer(sep))
            return JFAIL(c, RILL_EFORMAT, path, "\"cls\" and \"sep\" must be [token, id]");
        if (tokids_push(&t->prefix, (int32_t)json_integer_value(cls)) ||
            tokids_push(&t->suffix, (int32_t)json_integer_value(sep)))
            return RILL_ENOMEM;
        return RILL_OK;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr)) return JFAIL(c, RILL_EFORMAT, path, "\"processors\" must be an array");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.processors[%zu]", path, i);
            if ((st = parse_post(c, json_array_get(arr, i), sub, t))) return st;
        }
        return RILL_OK;
    }
    return JFAIL(c, RILL_EUNSUPPORTED, path, "post-processor type \"%s\" is not supported", type);
}

// One merge, "a b" or ["a", "b"], into its two halves.
static rill_status merge_parts(const ctx *c, json_t *m, size_t i, const char **a, size_t *na, const char **b,
                               size_t *nb) {
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t n = json_string_length(m);
        const char *sp = memchr(s, ' ', n);
        if (!sp || memchr(sp + 1, ' ', n - (size_t)(sp + 1 - s)))
            return rill_fail(RILL_EFORMAT, "%s: model.merges[%zu]: \"%s\" is not two tokens separated by a space",
                             c->file, i, s);
        *a = s, *na = (size_t)(sp - s), *b = sp + 1, *nb = n - *na - 1;
        return RILL_OK;
    }
    json_t *x = json_array_get(m, 0), *y = json_array_get(m, 1);
    if (!json_is_array(m) || json_array_size(m) != 2 || !json_is_string(x) || !json_is_string(y))
        return rill_fail(RILL_EFORMAT, "%s: model.merges[%zu]: must be \"a b\" or [\"a\", \"b\"]", c->file, i);
    *a = json_string_value(x), *na = json_string_length(x);
    *b = json_string_value(y), *nb = json_string_length(y);
    return RILL_OK;
}

static rill_status parse_model(const ctx *c, json_t *model, json_t *added, tokenizer *t) {
    if (!json_is_object(model)) return rill_fail(RILL_EFORMAT, "%s: model: missing or not an object", c->file);
    const char *type = type_of(model);
    if (type && strcmp(type, "BPE"))
        return rill_fail(RILL_EUNSUPPORTED, "%s: model.type: \"%s\" is not supported (only BPE)", c->file, type);
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return rill_fail(RILL_EFORMAT, "%s: model.vocab: must be an object", c->file);
    if (!json_is_array(merges)) return rill_fail(RILL_EFORMAT, "%s: model.merges: must be an array", c->file);
    for (const char *k = "continuing_subword_prefix"; k; k = k[0] == 'c' ? "end_of_word_suffix" : NULL) {
        json_t *v = json_object_get(model, k);
        if (json_is_string(v) && json_string_length(v))
            return rill_fail(RILL_EUNSUPPORTED, "%s: model.%s: \"%s\" is not supported", c->file, k,
                             json_string_value(v));
    }
    // The vocabulary size: one past the largest id of the model and the added tokens.
    int64_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 30))
            return rill_fail(RILL_EFORMAT, "%s: model.vocab[\"%s\"]: id must be an integer in [0, 2^30)", c->file, key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *id = json_object_get(json_array_get(added, i), "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 30))
            return rill_fail(RILL_EFORMAT, "%s: added_tokens[%zu].id: must be an integer in [0, 2^30)", c->file, i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    rill_status st = vocab_init(&t->vocab, (int32_t)(max_id + 1));
    if (st) return st;
    t->special = rill_calloc((size_t)max_id + 2, 1);
    if (!t->special) return RILL_ENOMEM;
    json_object_foreach(vocab, key, v) {
        if ((st = vocab_set(&t->vocab, (int32_t)json_integer_value(v), key, strlen(key)))) return st;
    }
    if ((st = bpe_init(&t->bpe, &t->vocab))) return st;
    t->bpe.fuse_unk = get_bool(model, "fuse_unk", false);
    t->bpe.byte_fallback = get_bool(model, "byte_fallback", false);
    t->bpe.ignore_merges = get_bool(model, "ignore_merges", false);
    json_t *unk = json_object_get(model, "unk_token");
    if (json_is_string(unk)) {
        t->bpe.unk_id = vocab_find(&t->vocab, json_string_value(unk), json_string_length(unk));
        if (t->bpe.unk_id < 0)
            return rill_fail(RILL_EFORMAT, "%s: model.unk_token: \"%s\" is not in model.vocab", c->file,
                             json_string_value(unk));
    }
    tok_buf joined = {0};
    for (size_t i = 0; i < json_array_size(merges); i++) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if ((st = merge_parts(c, json_array_get(merges, i), i, &a, &na, &b, &nb))) break;
        int32_t ia = vocab_find(&t->vocab, a, na), ib = vocab_find(&t->vocab, b, nb);
        joined.n = 0;
        if ((st = tokbuf_put(&joined, a, na)) || (st = tokbuf_put(&joined, b, nb))) break;
        int32_t into = vocab_find(&t->vocab, joined.p, joined.n);
        if (ia < 0 || ib < 0 || into < 0) {
            st = rill_fail(RILL_EFORMAT, "%s: model.merges[%zu]: \"%.*s\" is not in model.vocab", c->file, i,
                           (int)(ia < 0   ? na
                                 : ib < 0 ? nb
                                          : joined.n),
                           ia < 0   ? a
                           : ib < 0 ? b
                                    : joined.p);
            break;
        }
        if ((st = bpe_add_merge(&t->bpe, ia, ib, into, (uint32_t)i))) break;
    }
    tokbuf_free(&joined);
    return st;
}

static rill_status parse_added(const ctx *c, json_t *added, tokenizer *t) {
    if (!added || json_is_null(added)) return RILL_OK;
    if (!json_is_array(added)) return rill_fail(RILL_EFORMAT, "%s: added_tokens: must be an array", c->file);
    for (size_t i = 0; i < json_array_size(added); i++) {
        json_t *a = json_array_get(added, i);
        json_t *content = json_object_get(a, "content");
        if (!json_is_string(content) || !json_string_length(content))
            return rill_fail(RILL_EFORMAT, "%s: added_tokens[%zu].content: must be a non-empty string", c->file, i);
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        const char *s = json_string_value(content);
        size_t n = json_string_length(content);
        bool special = get_bool(a, "special", false);
        // The added token owns its id's piece (HF looks added tokens up first).
        rill_status st = vocab_set(&t->vocab, id, s, n);
        if (!st)
            st = tokenizer_add_token(t, id, s, n, special, get_bool(a, "lstrip", false), get_bool(a, "rstrip", false),
                                     get_bool(a, "normalized", !special), get_bool(a, "single_word", false));
        if (st) return st;
    }
    return RILL_OK;
}

// A special-token name from tokenizer_config.json: "..." or {"content": "..."}.
static int32_t config_token(tokenizer *t, json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return vocab_find(&t->vocab, json_string_value(v), json_string_length(v));
}

static json_t *load_optional(const char *dir, const char *name, rill_status *st) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat sb;
    *st = RILL_OK;
    if (stat(path, &sb)) return NULL;
    json_error_t err;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &err);
    if (!j) *st = rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", path, err.line, err.column, err.text);
    return j;
}

static rill_status apply_configs(tokenizer *t, const char *dir) {
    rill_status st;
    json_t *cfg = load_optional(dir, "tokenizer_config.json", &st);
    if (st) return st;
    json_t *gen = load_optional(dir, "generation_config.json", &st);
    if (st) return json_decref(cfg), st;
    t->bos = config_token(t, cfg, "bos_token");
    t->pad = config_token(t, cfg, "pad_token");
    st = tokenizer_add_eos(t, config_token(t, cfg, "eos_token"));
    json_t *tpl = json_object_get(cfg, "chat_template");
    if (json_is_array(tpl)) { // [{"name": "default", "template": "..."}, ...]
        json_t *pick = NULL;
        for (size_t i = 0; i < json_array_size(tpl); i++) {
            json_t *e = json_array_get(tpl, i), *nm = json_object_get(e, "name");
            if (!pick || (json_is_string(nm) && !strcmp(json_string_value(nm), "default"))) pick = e;
        }
        tpl = json_object_get(pick, "template");
    }
    if (!st && json_is_string(tpl) && !(t->chat_template = tok_strdup(json_string_value(tpl), json_string_length(tpl))))
        st = RILL_ENOMEM;
    json_t *eos = json_object_get(gen, "eos_token_id");
    if (json_is_integer(eos)) st = st ? st : tokenizer_add_eos(t, (int32_t)json_integer_value(eos));
    for (size_t i = 0; json_is_array(eos) && i < json_array_size(eos); i++)
        st = st ? st : tokenizer_add_eos(t, (int32_t)json_integer_value(json_array_get(eos, i)));
    json_t *bos = json_object_get(gen, "bos_token_id"), *pad = json_object_get(gen, "pad_token_id");
    if (t->bos < 0 && json_is_integer(bos) && json_integer_value(bos) < t->vocab.n)
        t->bos = (int32_t)json_integer_value(bos);
    if (t->pad < 0 && json_is_integer(pad) && json_integer_value(pad) < t->vocab.n)
        t->pad = (int32_t)json_integer_value(pad);
    json_decref(cfg), json_decref(gen);
    return st;
}

// Builds a component from root[key] (NULL or JSON null: none).
#define COMPONENT(field, key, parse, free_fn)                                                                          \
    do {                                                                                                               \
        json_t *o_ = json_object_get(root, key);                                                                       \
        if (o_ && !json_is_null(o_)) {                                                                                 \
            if (!json_is_object(o_)) return rill_fail(RILL_EFORMAT, "%s: %s: must be an object or null", c.file, key); \
            if (!(t->field = rill_calloc(1, sizeof *t->field))) return RILL_ENOMEM;                                    \
            if ((st = parse(&c, o_, key, t->field))) return st;                                                        \
        }                                                                                                              \
    } while (0)

static rill_status from_root(json_t *root, const char *file, const char *dir, tokenizer *t) {
    ctx c = {file};
    rill_status st;
    if (!json_is_object(root)) return rill_fail(RILL_EFORMAT, "%s: not a JSON object", file);
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added))
        return rill_fail(RILL_EFORMAT, "%s: added_tokens: must be an array", file);
    if ((st = parse_model(&c, json_object_get(root, "model"), added, t))) return st;
    COMPONENT(normalizer, "normalizer", parse_normalizer, normalizer_free);
    COMPONENT(pretok, "pre_tokenizer", parse_pretok, pretok_free);
    COMPONENT(decoder, "decoder", parse_decoder, decoder_free);
    json_t *pp = json_object_get(root, "post_processor");
    if (pp && !json_is_null(pp) && (st = parse_post(&c, pp, "post_processor", t))) return st;
    for (size_t i = 0; i < t->prefix.n + t->suffix.n; i++) {
        int32_t id = i < t->prefix.n ? t->prefix.p[i] : t->suffix.p[i - t->prefix.n];
        if (id < 0 || id >= t->vocab.n)
            return rill_fail(RILL_EFORMAT, "%s: post_processor: id %d is outside the vocabulary", file, id);
    }
    if ((st = parse_added(&c, added, t))) return st;
    if ((st = tokenizer_finish(t))) return st;
    return dir ? apply_configs(t, dir) : RILL_OK;
}

rill_status tokenizer_load_json_file(const char *json_path, const char *dir, tokenizer **out) {
    *out = NULL;
    json_error_t err;
    json_t *root = json_load_file(json_path, JSON_ALLOW_NUL, &err);
    if (!root) {
        struct stat sb;
        if (stat(json_path, &sb)) return rill_fail(RILL_ENOTFOUND, "%s: no such file", json_path);
        return rill_fail(RILL_EFORMAT, "%s: line %d, column %d: %s", json_path, err.line, err.column, err.text);
    }
    tokenizer *t;
    rill_status st = tokenizer_alloc(&t);
    if (!st) st = from_root(root, json_path, dir, t);
    json_decref(root);
    if (st) return tokenizer_free(t), st;
    *out = t;
    return RILL_OK;
}
