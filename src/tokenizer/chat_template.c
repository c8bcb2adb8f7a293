// chat_template.c: the public face of the Jinja interpreter: compile (lex + parse into an arena that
// lives with the template), render (a fresh bounded arena per call, freed whole at the end), and
// apply_chat_template's message preparation, which mirrors transformers' before it renders.
#include "tokenizer/chat_template.h"

#include <string.h>

#include "base/alloc.h"
#include "base/status.h"
#include "tokenizer/jinja.h"

struct chat_template {
    jheap heap;   // tokens and syntax tree
    jstmt **body; // [n_body]
    size_t n_body;
    chat_template_limits lim;
};

static const chat_template_limits DEFAULT_LIMITS = {
    .max_output = (size_t)16 << 20, .max_memory = (size_t)256 << 20, .max_steps = 4000000, .max_depth = 64};

static rill_status fail_at(const jerr *e) {
    return rill_fail(RILL_EFORMAT, "chat template: line %d, column %d: %s", e->line, e->col, e->msg);
}

rill_status chat_template_compile(const char *src, size_t len, chat_template **out) {
    *out = NULL;
    if (!src && len) return rill_fail(RILL_EINVAL, "chat template: NULL source");
    chat_template *t = rill_calloc(1, sizeof *t);
    if (!t) return RILL_ENOMEM;
    arena_init(&t->heap.a, 64 << 10);
    t->heap.limit = (size_t)64 << 20;
    t->lim = DEFAULT_LIMITS;
    jtok *toks;
    size_t n_toks;
    jerr err = {0};
    if (!jinja_lex(&t->heap, src ? src : "", len, &toks, &n_toks, &err) ||
        !jinja_parse(&t->heap, toks, n_toks, &t->body, &t->n_body, &err)) {
        chat_template_free(t);
        return fail_at(&err);
    }
    *out = t;
    return RILL_OK;
}

void chat_template_free(chat_template *t) {
    if (!t) return;
    arena_release(&t->heap.a);
    rill_free(t);
}

void chat_template_set_limits(chat_template *t, const chat_template_limits *lim) { t->lim = *lim; }

static rill_status finish(jctx *c, char **out, size_t *out_len) {
    char *s = rill_malloc(c->out->n + 1);
    if (!s) return rill_fail(RILL_ENOMEM, "chat template: cannot allocate %zu bytes of output", c->out->n + 1);
    if (c->out->n) memcpy(s, c->out->p, c->out->n);
    s[c->out->n] = 0;
    *out = s;
    if (out_len) *out_len = c->out->n;
    return RILL_OK;
}

rill_status chat_template_render(const chat_template *t, const json_t *context, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || (context && !json_is_object(context)))
        return rill_fail(RILL_EINVAL, "chat template: the context must be a JSON object");
    jheap h = {.limit = t->lim.max_memory};
    arena_init(&h.a, 256 << 10);
    jbuf buf;
    jbuf_init(&buf, &h, t->lim.max_output);
    jctx c = {.h = &h, .out = &buf, .lim = {t->lim.max_output, t->lim.max_memory, t->lim.max_steps, t->lim.max_depth}};
    jv vars = jv_none();
    rill_status st = RILL_OK;
    jscope *globals = jheap_alloc(&h, sizeof(jscope));
    if (!globals || (context && !jv_from_json(&h, context, &vars))) {
        st = rill_fail(RILL_ENOMEM, "chat template: the context does not fit in %zu bytes", t->lim.max_memory);
    } else {
        globals->parent = NULL;
        globals->vars = vars.kind == JV_DICT ? vars.d : jdict_new(&h, 1);
        c.globals = globals;
        if (!globals->vars)
            st = rill_fail(RILL_ENOMEM, "chat template: out of memory");
        else if (!jinja_render(&c, t->body, t->n_body))
            st = fail_at(&c.err);
        else
            st = finish(&c, out, out_len);
    }
    arena_release(&h.a);
    return st;
}

// A message as transformers passes it: null-valued keys dropped, then reasoning aliased
// ({"thinking": r, **message, "reasoning_content": r} where r is the first of reasoning_content,
// thinking, reasoning that is not null).
static json_t *prepare_message(const json_t *m) {
    if (!json_is_object(m)) return json_deep_copy(m);
    json_t *clean = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)m, k, v) if (!json_is_null(v)) json_object_set(clean, k, v);
    static const char *const fields[] = {"reasoning_content", "thinking", "reasoning"};
    json_t *reasoning = NULL;
    for (int i = 0; i < 3 && !reasoning; i++)
        reasoning = json_object_get(clean, fields[i]);
    if (!reasoning) return clean;
    json_t *aliased = json_object();
    json_object_set(aliased, "thinking", reasoning);
    json_object_foreach(clean, k, v) json_object_set(aliased, k, v);
    json_object_set(aliased, "reasoning_content", reasoning);
    json_decref(clean);
    return aliased;
}

rill_status chat_template_apply(const chat_template *t, const json_t *messages, const json_t *tools,
                                bool add_generation_prompt, const char *bos_token, const char *eos_token,
                                const json_t *extra_vars, char **out, size_t *out_len) {
    *out = NULL;
    if (!json_is_array(messages)) return rill_fail(RILL_EINVAL, "chat template: messages must be a JSON array");
    if (extra_vars && !json_is_object(extra_vars))
        return rill_fail(RILL_EINVAL, "chat template: extra variables must be a JSON object");
    json_t *ctx = json_object(), *msgs = json_array();
    if (bos_token) json_object_set_new(ctx, "bos_token", json_string(bos_token));
    if (eos_token) json_object_set_new(ctx, "eos_token", json_string(eos_token));
    if (extra_vars) json_object_update(ctx, (json_t *)extra_vars);
    for (size_t i = 0; i < json_array_size(messages); i++)
        json_array_append_new(msgs, prepare_message(json_array_get(messages, i)));
    json_object_set_new(ctx, "messages", msgs);
    json_object_set(ctx, "tools", tools ? (json_t *)tools : json_null());
    json_object_set(ctx, "documents", json_null());
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    rill_status st = chat_template_render(t, ctx, out, out_len);
    json_decref(ctx);
    return st;
}
