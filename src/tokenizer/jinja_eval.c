// jinja_eval.c: evaluates a parsed chat template. Scopes follow jinja2: each loop iteration, macro call
// and {% with %} gets a fresh scope (so `set` inside a loop does not leak out; namespaces do), while
// `if` shares its enclosing one. Every loop iteration, call and filter counts against a step limit, and
// output, memory and nesting are bounded, so a hostile template fails with an error instead of hanging.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer/jinja.h"
#include "tokenizer/jinja_utf8.h"

bool jinja_fail(jctx *c, int line, int col, const char *fmt, ...) {
    if (c->failed) return false;
    c->failed = true;
    c->err.line = line, c->err.col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err.msg, sizeof c->err.msg, fmt, ap);
    va_end(ap);
    return false;
}

bool jinja_oom(jctx *c, int line, int col) {
    if (c->out->over_max) return jinja_fail(c, line, col, "output exceeds %zu bytes", c->lim.max_output);
    return jinja_fail(c, line, col, "template uses more than %zu bytes of memory", c->lim.max_memory);
}

bool jinja_step(jctx *c, int line, int col) {
    if (++c->steps <= c->lim.max_steps) return true;
    return jinja_fail(c, line, col, "template exceeds %llu steps (loop iterations and calls)",
                      (unsigned long long)c->lim.max_steps);
}

static bool eval(jctx *c, const jnode *n, jv *out);
static bool exec_body(jctx *c, jscope *s, jstmt *const *body, size_t n);

// --- scopes ---

static jscope *scope_new(jctx *c, jscope *parent) {
    jscope *s = jheap_alloc(c->h, sizeof(jscope));
    if (!s) return NULL;
    s->parent = parent;
    s->vars = jdict_new(c->h, 4);
    return s->vars ? s : NULL;
}

static const jv *scope_find(const jscope *s, const jstr *name) {
    for (; s; s = s->parent) {
        const jv *v = jdict_gets(s->vars, name->data, name->len);
        if (v) return v;
    }
    return NULL;
}

static bool scope_set(jctx *c, jscope *s, const jstr *name, jv v) { return jdict_set(c->h, s->vars, jv_strv(name), v); }

// --- arguments ---

bool jinja_bind(jctx *c, const jnode *at, const jargs *a, const char *const *names, size_t n, jv *out) {
    for (size_t i = 0; i < n; i++)
        out[i] = jv_undef();
    if (a->n_pos > n)
        return jinja_fail(c, at->line, at->col, "too many arguments (%zu given, at most %zu)", a->n_pos, n);
    for (size_t i = 0; i < a->n_pos; i++)
        out[i] = a->pos[i];
    for (size_t k = 0; k < a->n_kw; k++) {
        size_t i = 0;
        while (i < n && strcmp(names[i], a->kw_names[k]->data) != 0)
            i++;
        if (i == n) return jinja_fail(c, at->line, at->col, "unexpected keyword argument '%s'", a->kw_names[k]->data);
        out[i] = a->kw_vals[k];
    }
    return true;
}

static bool eval_args(jctx *c, const jnode *n, size_t skip_first, jargs *a) {
    jv *pos = jheap_alloc(c->h, (n->n_args + 1) * sizeof(jv)), *kw = jheap_alloc(c->h, (n->n_kw + 1) * sizeof(jv));
    if (!pos || !kw) return jinja_oom(c, n->line, n->col);
    for (size_t i = 0; i < n->n_args; i++)
        if (!eval(c, n->args[i], &pos[i + skip_first])) return false;
    for (size_t i = 0; i < n->n_kw; i++)
        if (!eval(c, n->kw_vals[i], &kw[i])) return false;
    *a = (jargs){.pos = pos, .n_pos = n->n_args + skip_first, .kw_names = n->kw_names, .kw_vals = kw, .n_kw = n->n_kw};
    return true;
}

// --- attribute and item access ---

static bool loop_attr(jctx *c, const jnode *at, const jcall *lc, const jstr *name, jv *out) {
    const jloop *l = lc->loop;
    size_t i = l->i, n = l->items->n;
    const char *k = name->data;
    if (!strcmp(k, "index"))
        *out = jv_int((int64_t)i + 1);
    else if (!strcmp(k, "index0"))
        *out = jv_int((int64_t)i);
    else if (!strcmp(k, "revindex"))
        *out = jv_int((int64_t)(n - i));
    else if (!strcmp(k, "revindex0"))
        *out = jv_int((int64_t)(n - i - 1));
    else if (!strcmp(k, "first"))
        *out = jv_bool(i == 0);
    else if (!strcmp(k, "last"))
        *out = jv_bool(i + 1 == n);
    else if (!strcmp(k, "length"))
        *out = jv_int((int64_t)n);
    else if (!strcmp(k, "depth"))
        *out = jv_int(1);
    else if (!strcmp(k, "depth0"))
        *out = jv_int(0);
    else if (!strcmp(k, "previtem"))
        *out = i > 0 ? l->items->items[i - 1] : jv_undef();
    else if (!strcmp(k, "nextitem"))
        *out = i + 1 < n ? l->items->items[i + 1] : jv_undef();
    else if (!jinja_method_lookup(c, (jv){.kind = JV_CALL, .c = lc}, name, out))
        *out = jv_undef();
    (void)at;
    return true;
}

bool jinja_getattr(jctx *c, const jnode *at, jv obj, const jstr *name, jv *out) {
    if (obj.kind == JV_UNDEF)
        return jinja_fail(c, at->line, at->col, "'%s' is undefined (reading attribute '%s')",
                          at->a && at->a->name ? at->a->name->data : "value", name->data);
    if (obj.kind == JV_CALL && obj.c->kind == JC_LOOP) return loop_attr(c, at, obj.c, name, out);
    if (obj.kind == JV_DICT || obj.kind == JV_NS) {
        const jv *v = jdict_gets(obj.d, name->data, name->len);
        if (v) return *out = *v, true;
    }
    if (obj.kind != JV_NS && jinja_method_lookup(c, obj, name, out)) return !c->failed;
    *out = jv_undef();
    return !c->failed;
}

static bool norm_index(int64_t i, size_t n, size_t *out) {
    if (i < 0) i += (int64_t)n;
    if (i < 0 || (uint64_t)i >= n) return false;
    *out = (size_t)i;
    return true;
}

static bool getitem(jctx *c, const jnode *at, jv obj, jv key, jv *out) {
    *out = jv_undef();
    size_t i;
    switch (obj.kind) {
    case JV_UNDEF:
        return jinja_fail(c, at->line, at->col, "'%s' is undefined (reading an item)",
                          at->a && at->a->name ? at->a->name->data : "value");
    case JV_DICT:
    case JV_NS: {
        const jv *v = jdict_get(obj.d, key);
        if (v) *out = *v;
        return true;
    }
    case JV_LIST:
        if ((key.kind == JV_INT || key.kind == JV_BOOL) &&
            norm_index(key.kind == JV_BOOL ? key.b : key.i, obj.l->n, &i))
            *out = obj.l->items[i];
        return true;
    case JV_STR:
        if (key.kind == JV_INT && norm_index(key.i, jv_str_codepoints(obj.s), &i)) {
            size_t from = utf8_offset(obj.s->data, obj.s->len, i);
            size_t to = utf8_offset(obj.s->data, obj.s->len, i + 1);
            if (!jv_str(c->h, obj.s->data + from, to - from, out)) return jinja_oom(c, at->line, at->col);
        }
        return true;
    default:
        if (key.kind == JV_STR) return jinja_getattr(c, at, obj, key.s, out);
        return true;
    }
}

// Python's slice.indices(): clamps start/stop for a sequence of n items.
static bool slice_bounds(jctx *c, const jnode *at, jv lo, jv hi, jv st, size_t n, int64_t *start, int64_t *stop,
                         int64_t *step) {
    *step = st.kind == JV_INT ? st.i : 1;
    if ((st.kind != JV_INT && st.kind != JV_NONE && st.kind != JV_UNDEF) || *step == 0)
        return jinja_fail(c, at->line, at->col, "slice step must be a non-zero integer");
    int64_t len = (int64_t)n;
    const jv *ends[2] = {&lo, &hi};
    int64_t *outs[2] = {start, stop};
    for (int k = 0; k < 2; k++) {
        jv e = *ends[k];
        if (e.kind != JV_INT) {
            if (e.kind != JV_NONE && e.kind != JV_UNDEF)
                return jinja_fail(c, at->line, at->col, "slice indices must be integers");
            *outs[k] = k == 0 ? (*step > 0 ? 0 : len - 1) : (*step > 0 ? len : -1);
            continue;
        }
        int64_t v = e.i < -len - 1 ? -len - 1 : e.i > len + 1 ? len + 1 : e.i; // avoid overflow
        if (v < 0) v += len;
        if (*step > 0)
            v = v < 0 ? 0 : v > len ? len : v;
        else
            v = v < -1 ? -1 : v > len - 1 ? len - 1 : v;
        *outs[k] = v;
    }
    return true;
}

static bool slice(jctx *c, const jnode *at, jv obj, jv lo, jv hi, jv st, jv *out) {
    bool is_str = obj.kind == JV_STR;
    if (obj.kind != JV_LIST && !is_str) {
        if (obj.kind == JV_UNDEF) return jinja_fail(c, at->line, at->col, "cannot slice an undefined value");
        return *out = jv_undef(), true;
    }
    size_t n = is_str ? jv_str_codepoints(obj.s) : obj.l->n;
    int64_t start = 0, stop = 0, step = 1;
    if (!slice_bounds(c, at, lo, hi, st, n, &start, &stop, &step)) return false;
    jlist *l = is_str ? NULL : jlist_new(c->h, 4);
    jbuf b;
    jbuf_init(&b, c->h, 0);
    if (!is_str && !l) return jinja_oom(c, at->line, at->col);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (!is_str) {
            if (!jlist_push(c->h, l, obj.l->items[i])) return jinja_oom(c, at->line, at->col);
            continue;
        }
        size_t from = utf8_offset(obj.s->data, obj.s->len, (size_t)i); // quadratic, but strings are short
        size_t to = utf8_offset(obj.s->data, obj.s->len, (size_t)i + 1);
        jbuf_put(&b, obj.s->data + from, to - from);
    }
    if (!is_str) return *out = (jv){.kind = JV_LIST, .l = l}, true;
    const jstr *s = jbuf_str(&b);
    if (!s) return jinja_oom(c, at->line, at->col);
    return *out = jv_strv(s), true;
}

// --- operators ---

bool jinja_to_str(jctx *c, const jnode *at, jv v, jv *out) {
    if (v.kind == JV_STR) return *out = v, true;
    jbuf b;
    jbuf_init(&b, c->h, 0);
    jv_write_str(&b, v);
    const jstr *s = jbuf_str(&b);
    if (!s) return jinja_oom(c, at->line, at->col);
    return *out = jv_strv(s), true;
}

static bool concat(jctx *c, const jnode *at, const jstr *a, const jstr *b, jv *out) {
    jbuf buf;
    jbuf_init(&buf, c->h, c->lim.max_output);
    jbuf_put(&buf, a->data, a->len);
    jbuf_put(&buf, b->data, b->len);
    const jstr *s = jbuf_str(&buf);
    if (!s)
        return buf.over_max ? jinja_fail(c, at->line, at->col, "string exceeds %zu bytes", c->lim.max_output)
                            : jinja_oom(c, at->line, at->col);
    return *out = jv_strv(s), true;
}

static bool repeat(jctx *c, const jnode *at, jv seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    size_t unit = seq.kind == JV_STR ? seq.s->len : seq.l->n * sizeof(jv);
    if (unit && (uint64_t)times > c->lim.max_output / unit)
        return jinja_fail(c, at->line, at->col, "repetition is too large");
    if (seq.kind == JV_STR) {
        jbuf b;
        jbuf_init(&b, c->h, 0);
        for (int64_t i = 0; i < times; i++)
            jbuf_put(&b, seq.s->data, seq.s->len);
        const jstr *s = jbuf_str(&b);
        if (!s) return jinja_oom(c, at->line, at->col);
        return *out = jv_strv(s), true;
    }
    jlist *l = jlist_new(c->h, seq.l->n * (size_t)times + 1);
    if (!l) return jinja_oom(c, at->line, at->col);
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq.l->n; k++)
            l->items[l->n++] = seq.l->items[k];
    return *out = (jv){.kind = JV_LIST, .l = l}, true;
}

static bool list_add(jctx *c, const jnode *at, const jlist *a, const jlist *b, jv *out) {
    jlist *l = jlist_new(c->h, a->n + b->n + 1);
    if (!l) return jinja_oom(c, at->line, at->col);
    memcpy(l->items, a->items, a->n * sizeof(jv));
    memcpy(l->items + a->n, b->items, b->n * sizeof(jv));
    l->n = a->n + b->n;
    return *out = (jv){.kind = JV_LIST, .l = l}, true;
}

static double py_fmod(double a, double b) {
    double m = fmod(a, b);
    if (m != 0 && ((m < 0) != (b < 0))) m += b;
    return m;
}

static bool int_arith(jctx *c, const jnode *at, int op, int64_t a, int64_t b, jv *out) {
    int64_t r;
    switch (op) {
    case OP_ADD:
        if (__builtin_add_overflow(a, b, &r)) goto overflow;
        break;
    case OP_SUB:
        if (__builtin_sub_overflow(a, b, &r)) goto overflow;
        break;
    case OP_MUL:
        if (__builtin_mul_overflow(a, b, &r)) goto overflow;
        break;
    case OP_FLOORDIV:
    case OP_MOD:
        if (b == 0) return jinja_fail(c, at->line, at->col, "integer division or modulo by zero");
        if (a == INT64_MIN && b == -1) goto overflow;
        r = op == OP_MOD ? a % b : a / b;
        if (op == OP_MOD && r != 0 && ((r < 0) != (b < 0))) r += b;
        if (op == OP_FLOORDIV && (a % b != 0) && ((a < 0) != (b < 0))) r--;
        break;
    case OP_POW:
        if (b < 0) return *out = jv_float(pow((double)a, (double)b)), true;
        r = 1;
        for (int64_t i = 0; i < b; i++) {
            if (__builtin_mul_overflow(r, a, &r)) goto overflow;
            if (r == 0 || r == 1) break;
        }
        break;
    default: return false;
    }
    return *out = jv_int(r), true;
overflow:
    return jinja_fail(c, at->line, at->col, "integer overflow");
}

static bool arith(jctx *c, const jnode *at, int op, jv a, jv b, jv *out) {
    if (op == OP_CONCAT) {
        jv sa = jv_undef(), sb = jv_undef();
        return jinja_to_str(c, at, a, &sa) && jinja_to_str(c, at, b, &sb) && concat(c, at, sa.s, sb.s, out);
    }
    if (a.kind == JV_UNDEF || b.kind == JV_UNDEF)
        return jinja_fail(c, at->line, at->col, "undefined value in arithmetic (%s and %s)", jv_type_name(a),
                          jv_type_name(b));
    if (op == OP_ADD && a.kind == JV_STR && b.kind == JV_STR) return concat(c, at, a.s, b.s, out);
    if (op == OP_ADD && a.kind == JV_LIST && b.kind == JV_LIST) return list_add(c, at, a.l, b.l, out);
    if (op == OP_MUL && (a.kind == JV_STR || a.kind == JV_LIST) && (b.kind == JV_INT || b.kind == JV_BOOL))
        return repeat(c, at, a, b.kind == JV_BOOL ? b.b : b.i, out);
    if (op == OP_MUL && (b.kind == JV_STR || b.kind == JV_LIST) && (a.kind == JV_INT || a.kind == JV_BOOL))
        return repeat(c, at, b, a.kind == JV_BOOL ? a.b : a.i, out);
    if (!jv_is_number(a) || !jv_is_number(b)) {
        static const char *syms[] = {"+", "-", "*", "/", "//", "%", "**", "~"};
        return jinja_fail(c, at->line, at->col, "unsupported operand types for %s: '%s' and '%s'", syms[op],
                          jv_type_name(a), jv_type_name(b));
    }
    if (a.kind != JV_FLOAT && b.kind != JV_FLOAT && op != OP_DIV)
        return int_arith(c, at, op, a.kind == JV_BOOL ? a.b : a.i, b.kind == JV_BOOL ? b.b : b.i, out);
    double x = jv_as_double(a), y = jv_as_double(b);
    if ((op == OP_DIV || op == OP_FLOORDIV || op == OP_MOD) && y == 0)
        return jinja_fail(c, at->line, at->col, "division by zero");
    double r = op == OP_ADD        ? x + y
               : op == OP_SUB      ? x - y
               : op == OP_MUL      ? x * y
               : op == OP_DIV      ? x / y
               : op == OP_FLOORDIV ? floor(x / y)
               : op == OP_MOD      ? py_fmod(x, y)
                                   : pow(x, y);
    return *out = jv_float(r), true;
}

static bool contains(jctx *c, const jnode *at, jv item, jv seq, bool *out) {
    switch (seq.kind) {
    case JV_STR:
        if (item.kind != JV_STR)
            return jinja_fail(c, at->line, at->col, "'in <string>' requires string as left operand, not %s",
                              jv_type_name(item));
        *out = item.s->len == 0 || memmem(seq.s->data, seq.s->len, item.s->data, item.s->len) != NULL;
        return true;
    case JV_LIST:
        *out = false;
        for (size_t i = 0; i < seq.l->n && !*out; i++)
            *out = jv_equal(seq.l->items[i], item);
        return true;
    case JV_DICT:
    case JV_NS: *out = jdict_get(seq.d, item) != NULL; return true;
    case JV_UNDEF: *out = false; return true;
    default: return jinja_fail(c, at->line, at->col, "argument of type '%s' is not iterable", jv_type_name(seq));
    }
}

static bool compare(jctx *c, const jnode *at, int op, jv a, jv b, bool *out) {
    if (op == CMP_EQ || op == CMP_NE) return *out = jv_equal(a, b) == (op == CMP_EQ), true;
    if (op == CMP_IN || op == CMP_NOT_IN) {
        if (!contains(c, at, a, b, out)) return false;
        if (op == CMP_NOT_IN) *out = !*out;
        return true;
    }
    bool ok;
    int r = jv_compare(a, b, &ok);
    if (!ok) return jinja_fail(c, at->line, at->col, "cannot compare '%s' with '%s'", jv_type_name(a), jv_type_name(b));
    *out = op == CMP_LT ? r < 0 : op == CMP_LE ? r <= 0 : op == CMP_GT ? r > 0 : r >= 0;
    return true;
}

// --- calls ---

static bool call_macro(jctx *c, const jnode *at, const jcall *fn, const jargs *a, jv *out) {
    const jstmt *m = fn->macro;
    if (++c->depth > c->lim.max_depth)
        return jinja_fail(c, at->line, at->col, "macro calls nested deeper than %d", c->lim.max_depth);
    jscope *s = scope_new(c, fn->closure);
    jlist *varargs = jlist_new(c->h, 4);
    jdict *kwargs = jdict_new(c->h, 4);
    if (!s || !varargs || !kwargs) return jinja_oom(c, at->line, at->col);
    varargs->tuple = true;
    for (size_t i = 0; i < m->n_params; i++) {
        jv v = jv_undef();
        if (i < a->n_pos) v = a->pos[i];
        if (!scope_set(c, s, m->params[i], v)) return jinja_oom(c, at->line, at->col);
    }
    for (size_t i = m->n_params; i < a->n_pos; i++)
        if (!jlist_push(c->h, varargs, a->pos[i])) return jinja_oom(c, at->line, at->col);
    for (size_t k = 0; k < a->n_kw; k++) {
        size_t i = 0;
        while (i < m->n_params && strcmp(m->params[i]->data, a->kw_names[k]->data) != 0)
            i++;
        bool ok = i < m->n_params ? scope_set(c, s, m->params[i], a->kw_vals[k])
                                  : jdict_set(c->h, kwargs, jv_strv(a->kw_names[k]), a->kw_vals[k]);
        if (!ok) return jinja_oom(c, at->line, at->col);
    }
    for (size_t i = 0; i < m->n_params; i++) { // defaults are evaluated in the macro's scope, in order
        const jv *v = jdict_gets(s->vars, m->params[i]->data, m->params[i]->len);
        if (v->kind != JV_UNDEF || !m->defaults[i]) continue;
        jscope *saved = c->scope;
        c->scope = s;
        jv d;
        bool ok = eval(c, m->defaults[i], &d);
        c->scope = saved;
        if (!ok || !scope_set(c, s, m->params[i], d)) return ok ? jinja_oom(c, at->line, at->col) : false;
    }
    jv extra[3] = {{.kind = JV_LIST, .l = varargs}, {.kind = JV_DICT, .d = kwargs}, jv_undef()};
    if (fn->caller) extra[2] = (jv){.kind = JV_CALL, .c = fn->caller};
    static const char *const names[] = {"varargs", "kwargs", "caller"};
    for (int i = 0; i < 3; i++) {
        const jstr *nm = jstr_new(c->h, names[i], strlen(names[i]));
        if (!nm || !scope_set(c, s, nm, extra[i])) return jinja_oom(c, at->line, at->col);
    }
    jbuf *saved_out = c->out, buf;
    jbuf_init(&buf, c->h, c->lim.max_output);
    c->out = &buf;
    bool ok = exec_body(c, s, m->body, m->n_body);
    c->out = saved_out;
    c->depth--;
    if (!ok) return false;
    const jstr *str = jbuf_str(&buf);
    if (!str) return jinja_oom(c, at->line, at->col);
    return *out = jv_strv(str), true;
}

bool jinja_call_value(jctx *c, const jnode *at, jv fn, const jargs *a, jv *out) {
    if (!jinja_step(c, at->line, at->col)) return false;
    if (fn.kind != JV_CALL) {
        if (fn.kind == JV_UNDEF)
            return jinja_fail(c, at->line, at->col, "'%s' is undefined",
                              at->a && at->a->name ? at->a->name->data : "function");
        return jinja_fail(c, at->line, at->col, "'%s' object is not callable", jv_type_name(fn));
    }
    if (fn.c->kind == JC_MACRO) return call_macro(c, at, fn.c, a, out);
    return jinja_builtin_call(c, at, fn.c, a, out);
}

static bool eval_call(jctx *c, const jnode *n, jv *out) {
    jv fn;
    if (!eval(c, n->a, &fn)) return false;
    jargs a;
    return eval_args(c, n, 0, &a) && jinja_call_value(c, n, fn, &a, out);
}

static bool eval_filter(jctx *c, const jnode *n, jv input, jv *out) {
    if (!jinja_step(c, n->line, n->col)) return false;
    jargs a;
    return eval_args(c, n, 0, &a) && jinja_filter_apply(c, n, n->op, input, &a, out);
}

// --- expressions ---

static bool eval_collection(jctx *c, const jnode *n, jv *out) {
    if (n->kind == N_DICT) {
        jdict *d = jdict_new(c->h, n->n_args / 2 + 1);
        if (!d) return jinja_oom(c, n->line, n->col);
        for (size_t i = 0; i + 1 < n->n_args; i += 2) {
            jv k, v;
            if (!eval(c, n->args[i], &k) || !eval(c, n->args[i + 1], &v)) return false;
            if (!jdict_set(c->h, d, k, v)) return jinja_oom(c, n->line, n->col);
        }
        return *out = (jv){.kind = JV_DICT, .d = d}, true;
    }
    jlist *l = jlist_new(c->h, n->n_args + 1);
    if (!l) return jinja_oom(c, n->line, n->col);
    l->tuple = n->kind == N_TUPLE;
    for (size_t i = 0; i < n->n_args; i++)
        if (!eval(c, n->args[i], &l->items[l->n++])) return false;
    return *out = (jv){.kind = JV_LIST, .l = l}, true;
}

static bool eval_name(jctx *c, const jnode *n, jv *out) {
    const jv *v = scope_find(c->scope, n->name);
    if (v) return *out = *v, true;
    if (jinja_global_lookup(n->name, out)) return true;
    return *out = jv_undef(), true;
}

static bool eval_cmp(jctx *c, const jnode *n, jv *out) {
    jv a;
    if (!eval(c, n->args[0], &a)) return false;
    for (size_t i = 1; i < n->n_args; i++) {
        jv b;
        bool r = false;
        if (!eval(c, n->args[i], &b) || !compare(c, n, n->ops[i - 1], a, b, &r)) return false;
        if (!r) return *out = jv_bool(false), true;
        a = b;
    }
    return *out = jv_bool(true), true;
}

static bool eval_slice(jctx *c, const jnode *n, jv *out) {
    jv obj, lo = jv_none(), hi = jv_none(), st = jv_none();
    if (!eval(c, n->a, &obj)) return false;
    if ((n->b && !eval(c, n->b, &lo)) || (n->c && !eval(c, n->c, &hi)) || (n->d && !eval(c, n->d, &st))) return false;
    return slice(c, n, obj, lo, hi, st, out);
}

static bool eval_test(jctx *c, const jnode *n, jv *out) {
    jv v;
    jargs a;
    bool r;
    if (!eval(c, n->a, &v) || !eval_args(c, n, 0, &a) || !jinja_test_apply(c, n, n->op, v, &a, &r)) return false;
    return *out = jv_bool(r != n->negate), true;
}

static bool eval_unary(jctx *c, const jnode *n, jv *out) {
    jv v;
    if (!eval(c, n->a, &v)) return false;
    if (n->kind == N_NOT) return *out = jv_bool(!jv_truthy(v)), true;
    if (!jv_is_number(v))
        return jinja_fail(c, n->line, n->col, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+',
                          jv_type_name(v));
    if (n->kind == N_POS) return *out = v.kind == JV_BOOL ? jv_int(v.b) : v, true;
    if (v.kind == JV_FLOAT) return *out = jv_float(-v.f), true;
    int64_t i = v.kind == JV_BOOL ? v.b : v.i;
    if (i == INT64_MIN) return jinja_fail(c, n->line, n->col, "integer overflow");
    return *out = jv_int(-i), true;
}

static bool eval_inner(jctx *c, const jnode *n, jv *out) {
    jv a, b;
    switch (n->kind) {
    case N_LIT: return *out = n->lit, true;
    case N_NAME: return eval_name(c, n, out);
    case N_LIST:
    case N_TUPLE:
    case N_DICT: return eval_collection(c, n, out);
    case N_ATTR: return eval(c, n->a, &a) && jinja_getattr(c, n, a, n->name, out);
    case N_ITEM: return eval(c, n->a, &a) && eval(c, n->b, &b) && getitem(c, n, a, b, out);
    case N_SLICE: return eval_slice(c, n, out);
    case N_CALL: return eval_call(c, n, out);
    case N_FILTER: return eval(c, n->a, &a) && eval_filter(c, n, a, out);
    case N_TEST: return eval_test(c, n, out);
    case N_NEG:
    case N_POS:
    case N_NOT: return eval_unary(c, n, out);
    case N_BIN: return eval(c, n->a, &a) && eval(c, n->b, &b) && arith(c, n, n->op, a, b, out);
    case N_AND:
    case N_OR:
        if (!eval(c, n->a, &a)) return false;
        if (jv_truthy(a) == (n->kind == N_OR)) return *out = a, true;
        return eval(c, n->b, out);
    case N_CMP: return eval_cmp(c, n, out);
    case N_COND:
        if (!eval(c, n->a, &a)) return false;
        if (jv_truthy(a)) return eval(c, n->b, out);
        if (n->c) return eval(c, n->c, out);
        return *out = jv_undef(), true;
    }
    return jinja_fail(c, n->line, n->col, "unknown expression");
}

static bool eval(jctx *c, const jnode *n, jv *out) {
    if (++c->expr_depth > c->lim.max_depth + 256) return jinja_fail(c, n->line, n->col, "expression nested too deeply");
    bool ok = eval_inner(c, n, out);
    c->expr_depth--;
    return ok;
}

// --- statements ---

static bool emit(jctx *c, const jstmt *s, jv v) {
    if (v.kind == JV_STR)
        jbuf_put(c->out, v.s->data, v.s->len);
    else
        jv_write_str(c->out, v);
    return c->out->ok ? true : jinja_oom(c, s->line, s->col);
}

static bool assign(jctx *c, jscope *s, const jnode *target, jv v) {
    if (target->kind == N_NAME)
        return scope_set(c, s, target->name, v) ? true : jinja_oom(c, target->line, target->col);
    if (target->kind == N_ATTR) {
        jv ns;
        if (!eval(c, target->a, &ns)) return false;
        if (ns.kind != JV_NS)
            return jinja_fail(c, target->line, target->col, "cannot assign attribute on non-namespace object");
        if (target->name->data[0] == '_')
            return jinja_fail(c, target->line, target->col, "namespace attributes may not start with '_'");
        return jdict_set(c->h, ns.d, jv_strv(target->name), v) ? true : jinja_oom(c, target->line, target->col);
    }
    if (v.kind != JV_LIST)
        return jinja_fail(c, target->line, target->col, "cannot unpack a '%s' value", jv_type_name(v));
    if (v.l->n != target->n_args)
        return jinja_fail(c, target->line, target->col, "cannot unpack %zu values into %zu names", v.l->n,
                          target->n_args);
    for (size_t i = 0; i < target->n_args; i++)
        if (!assign(c, s, target->args[i], v.l->items[i])) return false;
    return true;
}

// The items a for loop walks: list items, dict keys, string characters.
static bool iter_items(jctx *c, const jstmt *s, jv v, jlist **out) {
    if (v.kind == JV_LIST) return *out = v.l, true;
    jlist *l = jlist_new(c->h, 4);
    if (!l) return jinja_oom(c, s->line, s->col);
    if (v.kind == JV_DICT || v.kind == JV_NS) {
        for (size_t i = 0; i < v.d->n; i++)
            if (!jlist_push(c->h, l, v.d->keys[i])) return jinja_oom(c, s->line, s->col);
    } else if (v.kind == JV_STR) {
        uint32_t cp;
        for (size_t i = 0, k; i < v.s->len; i += k) {
            k = utf8_decode(v.s->data + i, v.s->len - i, &cp);
            jv ch;
            if (!jv_str(c->h, v.s->data + i, k, &ch) || !jlist_push(c->h, l, ch)) return jinja_oom(c, s->line, s->col);
        }
    } else if (v.kind != JV_UNDEF && v.kind != JV_NONE) {
        return jinja_fail(c, s->line, s->col, "'%s' object is not iterable", jv_type_name(v));
    } else if (v.kind == JV_NONE) {
        return jinja_fail(c, s->line, s->col, "'NoneType' object is not iterable");
    }
    return *out = l, true;
}

// Applies the loop's `if` filter first, as jinja2 does (loop.length counts only the kept items).
static bool filter_items(jctx *c, jscope *outer, const jstmt *s, jlist *all, jlist **out) {
    if (!s->cond) return *out = all, true;
    jlist *l = jlist_new(c->h, all->n + 1);
    if (!l) return jinja_oom(c, s->line, s->col);
    for (size_t i = 0; i < all->n; i++) {
        if (!jinja_step(c, s->line, s->col)) return false;
        jscope *it = scope_new(c, outer);
        if (!it) return jinja_oom(c, s->line, s->col);
        jscope *saved = c->scope;
        c->scope = it;
        jv keep;
        bool ok = assign(c, it, s->target, all->items[i]) && eval(c, s->cond, &keep);
        c->scope = saved;
        if (!ok) return false;
        if (jv_truthy(keep)) l->items[l->n++] = all->items[i];
    }
    return *out = l, true;
}

static bool exec_for(jctx *c, jscope *outer, const jstmt *s) {
    jv seq;
    jlist *all = NULL, *items = NULL;
    if (!eval(c, s->expr, &seq) || !iter_items(c, s, seq, &all) || !filter_items(c, outer, s, all, &items))
        return false;
    if (items->n == 0) return exec_body(c, outer, s->else_body, s->n_else);
    jloop *lp = jheap_alloc(c->h, sizeof(jloop));
    jcall *lc = jheap_alloc(c->h, sizeof(jcall));
    const jstr *loop_name = jstr_new(c->h, "loop", 4);
    if (!lp || !lc || !loop_name) return jinja_oom(c, s->line, s->col);
    *lp = (jloop){.items = items};
    *lc = (jcall){.kind = JC_LOOP, .loop = lp};
    for (size_t i = 0; i < items->n; i++) {
        if (!jinja_step(c, s->line, s->col)) return false;
        lp->i = i;
        jscope *it = scope_new(c, outer);
        if (!it || !scope_set(c, it, loop_name, (jv){.kind = JV_CALL, .c = lc})) return jinja_oom(c, s->line, s->col);
        if (!assign(c, it, s->target, items->items[i]) || !exec_body(c, it, s->body, s->n_body)) return false;
        if (c->loop_ctl == 1) {
            c->loop_ctl = 0;
            break;
        }
        c->loop_ctl = 0;
    }
    return true;
}

// Renders a body into a fresh string (for {% set x %}, {% filter %} and caller()).
static bool capture(jctx *c, jscope *s, jstmt *const *body, size_t n, const jstmt *at, jv *out) {
    jbuf *saved = c->out, buf;
    jbuf_init(&buf, c->h, c->lim.max_output);
    c->out = &buf;
    bool ok = exec_body(c, s, body, n);
    c->out = saved;
    if (!ok) return false;
    const jstr *str = jbuf_str(&buf);
    if (!str) return jinja_oom(c, at->line, at->col);
    return *out = jv_strv(str), true;
}

static bool apply_filter_chain(jctx *c, const jnode *f, jv v, jv *out) {
    if (f->a && !apply_filter_chain(c, f->a, v, &v)) return false;
    return eval_filter(c, f, v, out);
}

static bool exec_call_block(jctx *c, jscope *s, const jstmt *st) {
    jcall *caller = jheap_alloc(c->h, sizeof(jcall));
    if (!caller) return jinja_oom(c, st->line, st->col);
    *caller = (jcall){.kind = JC_MACRO, .macro = st, .closure = s};
    jv fn;
    jargs a;
    if (!eval(c, st->expr->a, &fn) || !eval_args(c, st->expr, 0, &a)) return false;
    if (fn.kind != JV_CALL || fn.c->kind != JC_MACRO)
        return jinja_fail(c, st->line, st->col, "{%% call %%} needs a macro");
    jcall *with_caller = jheap_alloc(c->h, sizeof(jcall));
    if (!with_caller) return jinja_oom(c, st->line, st->col);
    *with_caller = *fn.c;
    with_caller->caller = caller;
    jv out;
    return jinja_call_value(c, st->expr, (jv){.kind = JV_CALL, .c = with_caller}, &a, &out) && emit(c, st, out);
}

static bool exec_with(jctx *c, jscope *s, const jstmt *st) {
    jscope *inner = scope_new(c, s);
    if (!inner) return jinja_oom(c, st->line, st->col);
    for (size_t i = 0; i < st->n_params; i++) {
        jv v;
        if (!eval(c, st->defaults[i], &v) || !scope_set(c, inner, st->params[i], v))
            return c->failed ? false : jinja_oom(c, st->line, st->col);
    }
    return exec_body(c, inner, st->body, st->n_body);
}

static bool exec_stmt(jctx *c, jscope *s, const jstmt *st) {
    jv v;
    switch (st->kind) {
    case S_TEXT: return emit(c, st, jv_strv(st->text));
    case S_OUTPUT: return eval(c, st->expr, &v) && emit(c, st, v);
    case S_IF:
        if (!eval(c, st->expr, &v)) return false;
        return jv_truthy(v) ? exec_body(c, s, st->body, st->n_body) : exec_body(c, s, st->else_body, st->n_else);
    case S_FOR: return exec_for(c, s, st);
    case S_SET: return eval(c, st->expr, &v) && assign(c, s, st->target, v);
    case S_SET_BLOCK:
        if (!capture(c, s, st->body, st->n_body, st, &v)) return false;
        if (st->expr && !apply_filter_chain(c, st->expr, v, &v)) return false;
        return assign(c, s, st->target, v);
    case S_MACRO: {
        jcall *m = jheap_alloc(c->h, sizeof(jcall));
        if (!m) return jinja_oom(c, st->line, st->col);
        *m = (jcall){.kind = JC_MACRO, .macro = st, .closure = s};
        return scope_set(c, s, st->name, (jv){.kind = JV_CALL, .c = m}) ? true : jinja_oom(c, st->line, st->col);
    }
    case S_CALL: return exec_call_block(c, s, st);
    case S_FILTER:
        return capture(c, s, st->body, st->n_body, st, &v) && apply_filter_chain(c, st->expr, v, &v) && emit(c, st, v);
    case S_WITH: return exec_with(c, s, st);
    case S_BREAK: c->loop_ctl = 1; return true;
    case S_CONTINUE: c->loop_ctl = 2; return true;
    case S_BODY: return exec_body(c, s, st->body, st->n_body);
    }
    return jinja_fail(c, st->line, st->col, "unknown statement");
}

static bool exec_body(jctx *c, jscope *s, jstmt *const *body, size_t n) {
    jscope *saved = c->scope;
    c->scope = s;
    bool ok = true;
    for (size_t i = 0; i < n && ok && !c->loop_ctl; i++)
        ok = exec_stmt(c, s, body[i]);
    c->scope = saved;
    return ok;
}

bool jinja_render(jctx *c, jstmt *const *body, size_t n_body) {
    jscope *top = scope_new(c, c->globals);
    if (!top) return jinja_oom(c, 1, 1);
    if (!exec_body(c, top, body, n_body)) return false;
    if (c->loop_ctl) return jinja_fail(c, 1, 1, "'break' or 'continue' outside a loop");
    return true;
}
