// jinja_parser.c: a recursive-descent parser from tokens to the statement and expression trees in
// jinja.h, with jinja2's precedence (filters and tests bind tighter than arithmetic, `if`-expressions
// loosest). Unknown filters and tests are errors here, as in jinja2. Nesting depth is bounded.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer/jinja.h"

#define MAX_NESTING 200

typedef struct parser {
    jheap *h;
    const jtok *t; // [n]
    size_t n, pos;
    jerr *err;
    int depth;
} parser;

__attribute__((format(printf, 3, 4))) static bool fail_at(parser *P, const jtok *t, const char *fmt, ...) {
    P->err->line = t->line, P->err->col = t->col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->err->msg, sizeof P->err->msg, fmt, ap);
    va_end(ap);
    return false;
}

static const jtok *cur(const parser *P) { return &P->t[P->pos]; }
static bool oom(parser *P) { return fail_at(P, cur(P), "out of memory"); }

static bool tok_is(const jtok *t, jtok_kind k, const char *s) {
    return t->kind == k && (!s || (t->n == strlen(s) && memcmp(t->p, s, t->n) == 0));
}
static bool is_op(const parser *P, const char *s) { return tok_is(cur(P), T_OP, s); }
static bool is_name(const parser *P, const char *s) { return tok_is(cur(P), T_NAME, s); }
static bool accept_op(parser *P, const char *s) { return is_op(P, s) ? (P->pos++, true) : false; }
static bool accept_name(parser *P, const char *s) { return is_name(P, s) ? (P->pos++, true) : false; }

static const char *describe(const jtok *t) {
    switch (t->kind) {
    case T_EOF: return "end of template";
    case T_BLOCK_END: return "end of statement block";
    case T_VAR_END: return "end of print statement";
    case T_STRING: return "string";
    case T_INT:
    case T_FLOAT: return "number";
    default: return NULL;
    }
}

static bool expect_op(parser *P, const char *s) {
    if (accept_op(P, s)) return true;
    const jtok *t = cur(P);
    const char *d = describe(t);
    if (d) return fail_at(P, t, "expected '%s', got %s", s, d);
    return fail_at(P, t, "expected '%s', got '%.*s'", s, (int)t->n, t->p);
}

static jnode *node(parser *P, jnode_kind k, const jtok *at) {
    jnode *n = jheap_alloc(P->h, sizeof(jnode));
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    n->kind = k, n->line = at->line, n->col = at->col;
    return n;
}

static const jstr *tok_str(parser *P, const jtok *t) { return jstr_new(P->h, t->p, t->n); }

// A growable array of pointers in the heap.
typedef struct ptrvec {
    void **p; // [cap]
    size_t n, cap;
} ptrvec;

static bool vec_push(parser *P, ptrvec *v, void *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        void **p = jheap_alloc(P->h, cap * sizeof(void *));
        if (!p) return false;
        if (v->n) memcpy(p, v->p, v->n * sizeof(void *));
        v->p = p, v->cap = cap;
    }
    v->p[v->n++] = x;
    return true;
}

static jnode *parse_expr(parser *P);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);

static bool enter(parser *P) {
    if (++P->depth > MAX_NESTING) return fail_at(P, cur(P), "expression nested too deeply");
    return true;
}

// (args, kw=args) after the '(' has been consumed.
static bool parse_call_args(parser *P, jnode *n) {
    ptrvec args = {0}, kn = {0}, kv = {0};
    while (!is_op(P, ")")) {
        if (args.n + kn.n && !expect_op(P, ",")) return false;
        if (is_op(P, ")")) break;
        if (cur(P)->kind == T_NAME && tok_is(&P->t[P->pos + 1], T_OP, "=")) {
            const jstr *name = tok_str(P, cur(P));
            P->pos += 2;
            jnode *v = parse_expr(P);
            if (!v) return false;
            if (!name || !vec_push(P, &kn, (void *)name) || !vec_push(P, &kv, v)) return oom(P);
            continue;
        }
        if (kn.n) return fail_at(P, cur(P), "positional argument follows keyword argument");
        jnode *v = parse_expr(P);
        if (!v) return false;
        if (!vec_push(P, &args, v)) return oom(P);
    }
    P->pos++;
    n->args = (jnode **)args.p, n->n_args = args.n;
    n->kw_names = (const jstr **)kn.p, n->kw_vals = (jnode **)kv.p, n->n_kw = kn.n;
    return true;
}

static jnode *parse_tuple_or_paren(parser *P, const jtok *at) {
    ptrvec items = {0};
    bool trailing_comma = false;
    while (!is_op(P, ")")) {
        if (items.n && !expect_op(P, ",")) return NULL;
        if (is_op(P, ")")) {
            trailing_comma = true;
            break;
        }
        jnode *e = parse_expr(P);
        if (!e) return NULL;
        if (!vec_push(P, &items, e)) return oom(P), NULL;
    }
    P->pos++;
    if (items.n == 1 && !trailing_comma) return items.p[0];
    jnode *n = node(P, N_TUPLE, at);
    if (!n) return oom(P), NULL;
    n->args = (jnode **)items.p, n->n_args = items.n;
    return n;
}

static jnode *parse_list_or_dict(parser *P, const jtok *at, bool dict) {
    jnode *n = node(P, dict ? N_DICT : N_LIST, at);
    if (!n) return oom(P), NULL;
    ptrvec items = {0};
    const char *close = dict ? "}" : "]";
    while (!is_op(P, close)) {
        if (items.n && !expect_op(P, ",")) return NULL;
        if (is_op(P, close)) break;
        jnode *k = parse_expr(P);
        if (!k || !vec_push(P, &items, k)) return k ? (oom(P), NULL) : NULL;
        if (!dict) continue;
        if (!expect_op(P, ":")) return NULL;
        jnode *v = parse_expr(P);
        if (!v || !vec_push(P, &items, v)) return v ? (oom(P), NULL) : NULL;
    }
    P->pos++;
    n->args = (jnode **)items.p, n->n_args = items.n;
    return n;
}

static jnode *literal(parser *P, const jtok *t, jv v) {
    jnode *n = node(P, N_LIT, t);
    if (!n) return oom(P), NULL;
    n->lit = v;
    P->pos++;
    return n;
}

static jnode *parse_primary(parser *P) {
    const jtok *t = cur(P);
    if (t->kind == T_STRING) {
        jbuf b; // adjacent string literals concatenate, as in Python
        jbuf_init(&b, P->h, 0);
        while (cur(P)->kind == T_STRING)
            jbuf_put(&b, cur(P)->s->data, cur(P)->s->len), P->pos++;
        P->pos--;
        const jstr *s = jbuf_str(&b);
        return s ? literal(P, t, jv_strv(s)) : (oom(P), NULL);
    }
    if (t->kind == T_INT) return literal(P, t, jv_int(t->i));
    if (t->kind == T_FLOAT) return literal(P, t, jv_float(t->f));
    if (t->kind == T_NAME) {
        if (tok_is(t, T_NAME, "true") || tok_is(t, T_NAME, "True")) return literal(P, t, jv_bool(true));
        if (tok_is(t, T_NAME, "false") || tok_is(t, T_NAME, "False")) return literal(P, t, jv_bool(false));
        if (tok_is(t, T_NAME, "none") || tok_is(t, T_NAME, "None")) return literal(P, t, jv_none());
        jnode *n = node(P, N_NAME, t);
        if (!n || !(n->name = tok_str(P, t))) return oom(P), NULL;
        P->pos++;
        return n;
    }
    if (accept_op(P, "(")) return parse_tuple_or_paren(P, t);
    if (accept_op(P, "[")) return parse_list_or_dict(P, t, false);
    if (accept_op(P, "{")) return parse_list_or_dict(P, t, true);
    const char *d = describe(t);
    if (d) return fail_at(P, t, "unexpected %s", d), NULL;
    return fail_at(P, t, "unexpected '%.*s'", (int)t->n, t->p), NULL;
}

// [a], [a:b:c] after the '['.
static jnode *parse_subscript(parser *P, jnode *obj, const jtok *at) {
    jnode *parts[3] = {0};
    int k = 0;
    bool slice = false;
    for (;;) {
        if (is_op(P, ":")) {
            if (++k > 2) return fail_at(P, cur(P), "too many ':' in subscript"), NULL;
            slice = true;
            P->pos++;
            continue;
        }
        if (is_op(P, "]")) break;
        if (parts[k]) return expect_op(P, "]"), NULL;
        if (!(parts[k] = parse_expr(P))) return NULL;
    }
    P->pos++;
    jnode *n = node(P, slice ? N_SLICE : N_ITEM, at);
    if (!n) return oom(P), NULL;
    n->a = obj;
    if (!slice && !parts[0]) return fail_at(P, at, "empty subscript"), NULL;
    n->b = parts[0], n->c = parts[1], n->d = parts[2];
    return n;
}

static jnode *parse_postfix(parser *P, jnode *n) {
    for (;;) {
        const jtok *t = cur(P);
        if (accept_op(P, ".")) {
            jnode *a = node(P, N_ATTR, t);
            if (!a) return oom(P), NULL;
            a->a = n;
            if (cur(P)->kind == T_INT) { // x.0 is x[0]
                jnode *idx = literal(P, cur(P), jv_int(cur(P)->i));
                if (!idx) return NULL;
                a->kind = N_ITEM, a->b = idx;
            } else if (cur(P)->kind == T_NAME) {
                if (!(a->name = tok_str(P, cur(P)))) return oom(P), NULL;
                P->pos++;
            } else {
                return fail_at(P, cur(P), "expected a name after '.'"), NULL;
            }
            n = a;
        } else if (accept_op(P, "[")) {
            if (!(n = parse_subscript(P, n, t))) return NULL;
        } else if (accept_op(P, "(")) {
            jnode *c = node(P, N_CALL, t);
            if (!c) return oom(P), NULL;
            c->a = n, c->line = n->line, c->col = n->col; // errors in a call point at the callee
            if (!parse_call_args(P, c)) return NULL;
            n = c;
        } else {
            return n;
        }
    }
}

// The argument of a test written without parentheses: `is divisibleby 3`, `is equalto 'x'`.
static bool test_takes_bare_arg(const parser *P) {
    const jtok *t = cur(P);
    if (t->kind == T_STRING || t->kind == T_INT || t->kind == T_FLOAT) return true;
    if (t->kind == T_OP) return tok_is(t, T_OP, "[") || tok_is(t, T_OP, "{") || tok_is(t, T_OP, "-");
    if (t->kind != T_NAME) return false;
    static const char *const stop[] = {"else", "or", "and", "if", "in", "is", "not", NULL};
    for (int i = 0; stop[i]; i++)
        if (tok_is(t, T_NAME, stop[i])) return false;
    return true;
}

static jnode *parse_filter_or_test(parser *P, jnode *n) {
    for (;;) {
        const jtok *t = cur(P);
        bool filter = accept_op(P, "|");
        if (!filter && !accept_name(P, "is")) return n;
        jnode *f = node(P, filter ? N_FILTER : N_TEST, t);
        if (!f) return oom(P), NULL;
        f->a = n;
        if (!filter) f->negate = accept_name(P, "not");
        const jtok *name = cur(P);
        if (name->kind != T_NAME) return fail_at(P, name, "expected a %s name", filter ? "filter" : "test"), NULL;
        f->op = filter ? jinja_filter_find(name->p, name->n) : jinja_test_find(name->p, name->n);
        if (f->op < 0)
            return fail_at(P, name, "unknown %s '%.*s'", filter ? "filter" : "test", (int)name->n, name->p), NULL;
        if (!(f->name = tok_str(P, name))) return oom(P), NULL;
        P->pos++;
        if (accept_op(P, "(")) {
            if (!parse_call_args(P, f)) return NULL;
        } else if (!filter && test_takes_bare_arg(P)) {
            jnode *arg = parse_unary(P, false);
            if (!arg) return NULL;
            if (!(f->args = jheap_alloc(P->h, sizeof(jnode *)))) return oom(P), NULL;
            f->args[0] = arg, f->n_args = 1;
        }
        n = f;
    }
}

static jnode *parse_unary(parser *P, bool with_filter) {
    if (!enter(P)) return NULL;
    const jtok *t = cur(P);
    jnode *n;
    if (accept_op(P, "-") || accept_op(P, "+")) {
        n = node(P, tok_is(t, T_OP, "-") ? N_NEG : N_POS, t);
        if (!n) return oom(P), NULL;
        if (!(n->a = parse_unary(P, false))) return NULL;
    } else {
        n = parse_primary(P);
        if (n) n = parse_postfix(P, n);
    }
    if (n && with_filter) n = parse_filter_or_test(P, n);
    P->depth--;
    return n;
}

static jnode *binary(parser *P, const jtok *t, int op, jnode *a, jnode *b) {
    jnode *n = node(P, N_BIN, t);
    if (!n) return oom(P), NULL;
    n->op = op, n->a = a, n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *n = parse_unary(P, true);
    while (n && is_op(P, "**")) {
        const jtok *t = cur(P);
        P->pos++;
        jnode *b = parse_unary(P, true);
        n = b ? binary(P, t, OP_POW, n, b) : NULL;
    }
    return n;
}

static jnode *parse_mul(parser *P) {
    jnode *n = parse_pow(P);
    for (;;) {
        const jtok *t = cur(P);
        int op = is_op(P, "*")    ? OP_MUL
                 : is_op(P, "/")  ? OP_DIV
                 : is_op(P, "//") ? OP_FLOORDIV
                 : is_op(P, "%")  ? OP_MOD
                                  : -1;
        if (!n || op < 0) return n;
        P->pos++;
        jnode *b = parse_pow(P);
        n = b ? binary(P, t, op, n, b) : NULL;
    }
}

static jnode *parse_concat(parser *P) {
    jnode *n = parse_mul(P);
    while (n && is_op(P, "~")) {
        const jtok *t = cur(P);
        P->pos++;
        jnode *b = parse_mul(P);
        n = b ? binary(P, t, OP_CONCAT, n, b) : NULL;
    }
    return n;
}

static jnode *parse_add(parser *P) {
    jnode *n = parse_concat(P);
    for (;;) {
        const jtok *t = cur(P);
        int op = is_op(P, "+") ? OP_ADD : is_op(P, "-") ? OP_SUB : -1;
        if (!n || op < 0) return n;
        P->pos++;
        jnode *b = parse_concat(P);
        n = b ? binary(P, t, op, n, b) : NULL;
    }
}

static int compare_op(parser *P) {
    static const char *const ops[] = {"==", "!=", "<", "<=", ">", ">="};
    for (int i = 0; i < 6; i++)
        if (accept_op(P, ops[i])) return CMP_EQ + i;
    if (accept_name(P, "in")) return CMP_IN;
    if (is_name(P, "not") && tok_is(&P->t[P->pos + 1], T_NAME, "in")) return P->pos += 2, CMP_NOT_IN;
    return -1;
}

static jnode *parse_compare(parser *P) {
    const jtok *t = cur(P);
    jnode *first = parse_add(P);
    if (!first) return NULL;
    ptrvec args = {0}, ops = {0};
    int op;
    while ((op = compare_op(P)) >= 0) {
        jnode *b = parse_add(P);
        if (!b) return NULL;
        if ((!args.n && !vec_push(P, &args, first)) || !vec_push(P, &args, b) ||
            !vec_push(P, &ops, (void *)(intptr_t)op))
            return oom(P), NULL;
    }
    if (!args.n) return first;
    jnode *n = node(P, N_CMP, t);
    if (!n || !(n->ops = jheap_alloc(P->h, ops.n * sizeof(int)))) return oom(P), NULL;
    for (size_t i = 0; i < ops.n; i++)
        n->ops[i] = (int)(intptr_t)ops.p[i];
    n->args = (jnode **)args.p, n->n_args = args.n;
    return n;
}

static jnode *parse_not(parser *P) {
    const jtok *t = cur(P);
    if (!accept_name(P, "not")) return parse_compare(P);
    if (!enter(P)) return NULL;
    jnode *n = node(P, N_NOT, t);
    if (!n) return oom(P), NULL;
    n->a = parse_not(P);
    P->depth--;
    return n->a ? n : NULL;
}

static jnode *parse_logic(parser *P, bool is_or) {
    jnode *n = is_or ? parse_logic(P, false) : parse_not(P);
    while (n && accept_name(P, is_or ? "or" : "and")) {
        const jtok *t = &P->t[P->pos - 1];
        jnode *b = is_or ? parse_logic(P, false) : parse_not(P);
        if (!b) return NULL;
        jnode *x = node(P, is_or ? N_OR : N_AND, t);
        if (!x) return oom(P), NULL;
        x->a = n, x->b = b;
        n = x;
    }
    return n;
}

static jnode *parse_or(parser *P) { return parse_logic(P, true); }

static jnode *parse_expr(parser *P) {
    if (!enter(P)) return NULL;
    jnode *n = parse_or(P);
    while (n && is_name(P, "if")) {
        const jtok *t = cur(P);
        P->pos++;
        jnode *c = node(P, N_COND, t);
        if (!c) return oom(P), NULL;
        c->b = n;
        if (!(c->a = parse_or(P))) return NULL;
        if (accept_name(P, "else") && !(c->c = parse_expr(P))) return NULL;
        n = c;
    }
    P->depth--;
    return n;
}

// `a`, `a, b`, `ns.x` as assignment targets.
static jnode *parse_target(parser *P, bool allow_attr) {
    const jtok *t = cur(P);
    ptrvec names = {0};
    do {
        const jtok *nt = cur(P);
        if (nt->kind != T_NAME) return fail_at(P, nt, "expected a name to assign to"), NULL;
        jnode *n = node(P, N_NAME, nt);
        if (!n || !(n->name = tok_str(P, nt))) return oom(P), NULL;
        P->pos++;
        if (allow_attr && names.n == 0 && accept_op(P, ".")) {
            if (cur(P)->kind != T_NAME) return fail_at(P, cur(P), "expected an attribute name"), NULL;
            jnode *a = node(P, N_ATTR, nt);
            if (!a || !(a->name = tok_str(P, cur(P)))) return oom(P), NULL;
            a->a = n;
            P->pos++;
            return a;
        }
        if (!vec_push(P, &names, n)) return oom(P), NULL;
    } while (accept_op(P, ","));
    if (names.n == 1) return names.p[0];
    jnode *tup = node(P, N_TUPLE, t);
    if (!tup) return oom(P), NULL;
    tup->args = (jnode **)names.p, tup->n_args = names.n;
    return tup;
}

// --- statements ---

static bool parse_body(parser *P, jstmt ***body, size_t *n, const char *const *ends, const jtok **end_tok);

static jstmt *stmt(parser *P, jstmt_kind k, const jtok *at) {
    jstmt *s = jheap_alloc(P->h, sizeof(jstmt));
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->kind = k, s->line = at->line, s->col = at->col;
    return s;
}

static bool end_block(parser *P) {
    if (cur(P)->kind == T_BLOCK_END) return P->pos++, true;
    const jtok *t = cur(P);
    const char *d = describe(t);
    if (d) return fail_at(P, t, "expected end of statement block, got %s", d);
    return fail_at(P, t, "expected end of statement block, got '%.*s'", (int)t->n, t->p);
}

static bool parse_if(parser *P, jstmt *s) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    if (!(s->expr = parse_expr(P)) || !end_block(P)) return false;
    const jtok *end;
    if (!parse_body(P, &s->body, &s->n_body, ends, &end)) return false;
    if (tok_is(end, T_NAME, "elif")) {
        jstmt *e = stmt(P, S_IF, end);
        if (!e || !(s->else_body = jheap_alloc(P->h, sizeof(jstmt *)))) return oom(P);
        s->else_body[0] = e, s->n_else = 1;
        return parse_if(P, e);
    }
    if (tok_is(end, T_NAME, "else")) {
        static const char *const endif[] = {"endif", NULL};
        if (!end_block(P) || !parse_body(P, &s->else_body, &s->n_else, endif, &end)) return false;
    }
    return end_block(P);
}

static bool parse_for(parser *P, jstmt *s) {
    if (!(s->target = parse_target(P, false))) return false;
    if (!accept_name(P, "in")) return fail_at(P, cur(P), "expected 'in' in for loop");
    if (!(s->expr = parse_or(P))) return false;
    if (accept_name(P, "if") && !(s->cond = parse_expr(P))) return false;
    if (is_name(P, "recursive")) return fail_at(P, cur(P), "recursive loops are not supported");
    static const char *const ends[] = {"else", "endfor", NULL};
    const jtok *end;
    if (!end_block(P) || !parse_body(P, &s->body, &s->n_body, ends, &end)) return false;
    if (tok_is(end, T_NAME, "else")) {
        static const char *const endfor[] = {"endfor", NULL};
        if (!end_block(P) || !parse_body(P, &s->else_body, &s->n_else, endfor, &end)) return false;
    }
    return end_block(P);
}

static bool parse_set(parser *P, jstmt *s) {
    if (!(s->target = parse_target(P, true))) return false;
    if (accept_op(P, "=")) return (s->expr = parse_expr(P)) && end_block(P);
    if (s->target->kind != N_NAME) return fail_at(P, cur(P), "a block set assigns to one name");
    s->kind = S_SET_BLOCK;
    if (is_op(P, "|")) { // {% set x | filter %}...{% endset %}
        jnode *f = parse_filter_or_test(P, NULL);
        if (!f) return false;
        s->expr = f;
    }
    static const char *const ends[] = {"endset", NULL};
    const jtok *end;
    return end_block(P) && parse_body(P, &s->body, &s->n_body, ends, &end) && end_block(P);
}

// (a, b=1, ...) parameter lists of macros and call blocks, after the '('.
static bool parse_params(parser *P, jstmt *s) {
    ptrvec names = {0}, defs = {0};
    while (!accept_op(P, ")")) {
        if (names.n && !expect_op(P, ",")) return false;
        if (accept_op(P, ")")) break;
        if (cur(P)->kind != T_NAME) return fail_at(P, cur(P), "expected a parameter name");
        const jstr *name = tok_str(P, cur(P));
        P->pos++;
        jnode *def = NULL;
        if (accept_op(P, "=") && !(def = parse_expr(P))) return false;
        if (!def && defs.n && defs.p[defs.n - 1])
            return fail_at(P, cur(P), "parameter without a default follows one with a default");
        if (!name || !vec_push(P, &names, (void *)name) || !vec_push(P, &defs, def)) return oom(P);
    }
    s->params = (const jstr **)names.p, s->defaults = (jnode **)defs.p, s->n_params = names.n;
    return true;
}

static bool parse_macro(parser *P, jstmt *s) {
    if (cur(P)->kind != T_NAME) return fail_at(P, cur(P), "expected a macro name");
    if (!(s->name = tok_str(P, cur(P)))) return oom(P);
    P->pos++;
    if (!expect_op(P, "(") || !parse_params(P, s)) return false;
    static const char *const ends[] = {"endmacro", NULL};
    const jtok *end;
    if (!end_block(P) || !parse_body(P, &s->body, &s->n_body, ends, &end)) return false;
    if (cur(P)->kind == T_NAME) P->pos++; // {% endmacro name %}
    return end_block(P);
}

static bool parse_call_block(parser *P, jstmt *s) {
    if (accept_op(P, "(") && !parse_params(P, s)) return false;
    const jtok *t = cur(P);
    if (!(s->expr = parse_expr(P))) return false;
    if (s->expr->kind != N_CALL) return fail_at(P, t, "expected a call after 'call'");
    static const char *const ends[] = {"endcall", NULL};
    const jtok *end;
    return end_block(P) && parse_body(P, &s->body, &s->n_body, ends, &end) && end_block(P);
}

static bool parse_filter_block(parser *P, jstmt *s) {
    jnode *chain = NULL;
    do {
        const jtok *name = cur(P);
        if (name->kind != T_NAME) return fail_at(P, name, "expected a filter name");
        jnode *f = node(P, N_FILTER, name);
        if (!f) return oom(P);
        f->a = chain;
        if ((f->op = jinja_filter_find(name->p, name->n)) < 0)
            return fail_at(P, name, "unknown filter '%.*s'", (int)name->n, name->p);
        P->pos++;
        if (accept_op(P, "(") && !parse_call_args(P, f)) return false;
        chain = f;
    } while (accept_op(P, "|"));
    s->expr = chain;
    static const char *const ends[] = {"endfilter", NULL};
    const jtok *end;
    return end_block(P) && parse_body(P, &s->body, &s->n_body, ends, &end) && end_block(P);
}

static bool parse_with(parser *P, jstmt *s) {
    ptrvec names = {0}, vals = {0};
    while (cur(P)->kind != T_BLOCK_END) {
        if (names.n && !expect_op(P, ",")) return false;
        if (cur(P)->kind != T_NAME) return fail_at(P, cur(P), "expected a name in 'with'");
        const jstr *name = tok_str(P, cur(P));
        P->pos++;
        jnode *v;
        if (!expect_op(P, "=") || !(v = parse_expr(P))) return false;
        if (!name || !vec_push(P, &names, (void *)name) || !vec_push(P, &vals, v)) return oom(P);
    }
    s->params = (const jstr **)names.p, s->defaults = (jnode **)vals.p, s->n_params = names.n;
    static const char *const ends[] = {"endwith", NULL};
    const jtok *end;
    return end_block(P) && parse_body(P, &s->body, &s->n_body, ends, &end) && end_block(P);
}

static bool parse_simple_body(parser *P, jstmt *s, const char *end_name) {
    const char *ends[] = {end_name, NULL};
    const jtok *end;
    return end_block(P) && parse_body(P, &s->body, &s->n_body, ends, &end) && end_block(P);
}

static jstmt *parse_statement(parser *P) {
    const jtok *kw = cur(P);
    if (kw->kind != T_NAME) return fail_at(P, kw, "expected a statement name"), NULL;
    P->pos++;
    static const struct {
        const char *name;
        jstmt_kind kind;
    } kinds[] = {
        {"if", S_IF},         {"for", S_FOR},   {"set", S_SET},     {"macro", S_MACRO},       {"call", S_CALL},
        {"filter", S_FILTER}, {"with", S_WITH}, {"break", S_BREAK}, {"continue", S_CONTINUE}, {"generation", S_BODY}};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (!tok_is(kw, T_NAME, kinds[i].name)) continue;
        jstmt *s = stmt(P, kinds[i].kind, kw);
        if (!s) return oom(P), NULL;
        bool ok = false;
        switch (s->kind) {
        case S_IF: ok = parse_if(P, s); break;
        case S_FOR: ok = parse_for(P, s); break;
        case S_SET: ok = parse_set(P, s); break;
        case S_MACRO: ok = parse_macro(P, s); break;
        case S_CALL: ok = parse_call_block(P, s); break;
        case S_FILTER: ok = parse_filter_block(P, s); break;
        case S_WITH: ok = parse_with(P, s); break;
        case S_BODY: ok = parse_simple_body(P, s, "endgeneration"); break;
        default: ok = end_block(P); break;
        }
        return ok ? s : NULL;
    }
    return fail_at(P, kw, "unknown statement '%.*s'", (int)kw->n, kw->p), NULL;
}

// Statements until a {% name %} in `ends` (left with pos on its name) or, when ends is NULL, EOF.
static bool parse_body(parser *P, jstmt ***body, size_t *n, const char *const *ends, const jtok **end_tok) {
    if (!enter(P)) return false;
    ptrvec v = {0};
    for (;;) {
        const jtok *t = cur(P);
        jstmt *s = NULL;
        if (t->kind == T_EOF) {
            if (ends) return fail_at(P, t, "unexpected end of template, expected '%s'", ends[0]);
            break;
        }
        if (t->kind == T_TEXT) {
            if (!(s = stmt(P, S_TEXT, t))) return oom(P);
            s->text = t->s;
            P->pos++;
        } else if (t->kind == T_VAR_BEGIN) {
            P->pos++;
            if (!(s = stmt(P, S_OUTPUT, t))) return oom(P);
            if (!(s->expr = parse_expr(P))) return false;
            if (cur(P)->kind != T_VAR_END) {
                const jtok *e = cur(P);
                const char *d = describe(e);
                if (d) return fail_at(P, e, "expected end of print statement, got %s", d);
                return fail_at(P, e, "expected end of print statement, got '%.*s'", (int)e->n, e->p);
            }
            P->pos++;
        } else if (t->kind == T_BLOCK_BEGIN) {
            const jtok *name = &P->t[P->pos + 1];
            for (int i = 0; ends && ends[i]; i++) {
                if (tok_is(name, T_NAME, ends[i])) {
                    P->pos += 2;
                    *end_tok = name;
                    *body = (jstmt **)v.p, *n = v.n;
                    P->depth--;
                    return true;
                }
            }
            P->pos++;
            if (!(s = parse_statement(P))) return false;
        } else {
            return fail_at(P, t, "unexpected token");
        }
        if (!vec_push(P, &v, s)) return oom(P);
    }
    *body = (jstmt **)v.p, *n = v.n;
    P->depth--;
    return true;
}

bool jinja_parse(jheap *h, const jtok *toks, size_t n_toks, jstmt ***body, size_t *n_body, jerr *err) {
    parser P = {.h = h, .t = toks, .n = n_toks, .err = err};
    const jtok *end = NULL;
    return parse_body(&P, body, n_body, NULL, &end);
}
