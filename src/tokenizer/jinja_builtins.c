// jinja_builtins.c: the globals transformers gives chat templates (range, namespace, dict,
// raise_exception, strftime_now), the Python methods templates call on strings, dicts and lists
// (strip, split, startswith, items, get, ...) and loop.cycle(). Mutating methods (append, update, ...)
// are absent, as in jinja2's ImmutableSandboxedEnvironment, so calling them fails.
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tokenizer/jinja.h"
#include "tokenizer/jinja_utf8.h"

#define MAX_RANGE 100000 // jinja2's sandbox limit on range()

// --- string helpers ---

static bool str_out(jctx *c, jbuf *b, jv *out) {
    const jstr *s = jbuf_str(b);
    if (!s) return jinja_oom(c, 0, 0);
    return *out = jv_strv(s), true;
}

static bool in_chars(const jstr *chars, const char *p, size_t k) {
    for (size_t i = 0; i + k <= chars->len;) {
        uint32_t cp;
        size_t n = utf8_decode(chars->data + i, chars->len - i, &cp);
        if (n == k && memcmp(chars->data + i, p, k) == 0) return true;
        i += n ? n : 1;
    }
    return false;
}

static size_t char_len_back(const char *p, size_t n) {
    size_t back = 1;
    while (back < n && back < 4 && ((unsigned char)p[n - back] & 0xc0) == 0x80)
        back++;
    uint32_t cp;
    return utf8_decode(p + n - back, back, &cp) == back ? back : 1;
}

bool jinja_str_strip(jctx *c, const jstr *s, jv chars, bool left, bool right, jv *out) {
    const char *p = s->data;
    size_t n = s->len;
    bool ws = chars.kind != JV_STR;
    while (left && n) {
        uint32_t cp;
        size_t k = utf8_decode(p, n, &cp);
        if (ws ? !py_isspace(cp) : !in_chars(chars.s, p, k)) break;
        p += k, n -= k;
    }
    while (right && n) {
        size_t k = char_len_back(p, n);
        if (ws ? !utf8_space_len_back(p, n) : !in_chars(chars.s, p + n - k, k)) break;
        n -= k;
    }
    if (n == s->len) return *out = jv_strv(s), true;
    if (!jv_str(c->h, p, n, out)) return jinja_oom(c, 0, 0);
    return true;
}

static bool is_lower(char ch) { return ch >= 'a' && ch <= 'z'; }
static bool is_upper(char ch) { return ch >= 'A' && ch <= 'Z'; }
static char to_upper(char ch) { return is_lower(ch) ? (char)(ch - 32) : ch; }
static char to_lower(char ch) { return is_upper(ch) ? (char)(ch + 32) : ch; }

// Case mapping covers ASCII letters only; other characters pass through unchanged.
bool jinja_str_case(jctx *c, const jstr *s, int mode, jv *out) {
    jbuf b;
    jbuf_init(&b, c->h, 0);
    bool prev_cased = false;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->data[i];
        bool cased = is_lower(ch) || is_upper(ch);
        char r = mode == 0   ? to_lower(ch)
                 : mode == 1 ? to_upper(ch)
                 : mode == 2 ? (i == 0 ? to_upper(ch) : to_lower(ch))
                             : (prev_cased ? to_lower(ch) : to_upper(ch));
        prev_cased = cased || ((unsigned char)ch >= 0x80 && prev_cased);
        jbuf_put(&b, &r, 1);
    }
    return str_out(c, &b, out);
}

bool jinja_str_replace(jctx *c, const jnode *at, const jstr *s, jv old, jv new_, jv count, jv *out) {
    if (old.kind != JV_STR || new_.kind != JV_STR)
        return jinja_fail(c, at->line, at->col, "replace() arguments must be strings");
    int64_t left = count.kind == JV_INT ? count.i : -1;
    jbuf b;
    jbuf_init(&b, c->h, c->lim.max_output);
    size_t i = 0;
    if (old.s->len == 0) { // Python inserts `new` between every character
        uint32_t cp;
        while (left != 0) {
            jbuf_put(&b, new_.s->data, new_.s->len), left--;
            if (i >= s->len) break;
            size_t k = utf8_decode(s->data + i, s->len - i, &cp);
            jbuf_put(&b, s->data + i, k), i += k;
        }
    } else {
        const char *hit;
        while (left != 0 && (hit = memmem(s->data + i, s->len - i, old.s->data, old.s->len))) {
            jbuf_put(&b, s->data + i, (size_t)(hit - (s->data + i)));
            jbuf_put(&b, new_.s->data, new_.s->len);
            i = (size_t)(hit - s->data) + old.s->len, left--;
        }
    }
    jbuf_put(&b, s->data + i, s->len - i);
    if (!b.ok)
        return b.over_max ? jinja_fail(c, at->line, at->col, "replace() result is too large")
                          : jinja_oom(c, at->line, at->col);
    return str_out(c, &b, out);
}

static bool push_str(jctx *c, jlist *l, const char *p, size_t n) {
    jv v;
    return jv_str(c->h, p, n, &v) && jlist_push(c->h, l, v);
}

// str.split(sep=None, maxsplit=-1)
static bool str_split(jctx *c, const jnode *at, const jstr *s, jv sep, jv maxsplit, jv *out) {
    jlist *l = jlist_new(c->h, 4);
    if (!l) return jinja_oom(c, at->line, at->col);
    int64_t left = maxsplit.kind == JV_INT ? maxsplit.i : -1;
    const char *p = s->data, *end = s->data + s->len;
    if (sep.kind == JV_STR) {
        if (sep.s->len == 0) return jinja_fail(c, at->line, at->col, "empty separator");
        const char *hit;
        while (left != 0 && (hit = memmem(p, (size_t)(end - p), sep.s->data, sep.s->len))) {
            if (!push_str(c, l, p, (size_t)(hit - p))) return jinja_oom(c, at->line, at->col);
            p = hit + sep.s->len, left--;
        }
        if (!push_str(c, l, p, (size_t)(end - p))) return jinja_oom(c, at->line, at->col);
        return *out = (jv){.kind = JV_LIST, .l = l}, true;
    }
    for (;;) { // runs of whitespace separate; leading and trailing whitespace gives no empty items
        size_t k;
        while (p < end && (k = utf8_space_len(p, (size_t)(end - p))))
            p += k;
        if (p == end) break;
        if (left == 0) {
            const char *e = end;
            while (e > p && (k = utf8_space_len_back(p, (size_t)(e - p))))
                e -= k;
            if (!push_str(c, l, p, (size_t)(e - p))) return jinja_oom(c, at->line, at->col);
            break;
        }
        const char *w = p;
        while (p < end && !utf8_space_len(p, (size_t)(end - p)))
            p += utf8_decode(p, (size_t)(end - p), &(uint32_t){0});
        if (!push_str(c, l, w, (size_t)(p - w))) return jinja_oom(c, at->line, at->col);
        left--;
    }
    return *out = (jv){.kind = JV_LIST, .l = l}, true;
}

static bool affix_match(const jstr *s, const jstr *a, bool prefix) {
    if (a->len > s->len) return false;
    return memcmp(prefix ? s->data : s->data + s->len - a->len, a->data, a->len) == 0;
}

static bool str_affix(jctx *c, const jnode *at, const jstr *s, jv arg, bool prefix, jv *out) {
    if (arg.kind == JV_STR) return *out = jv_bool(affix_match(s, arg.s, prefix)), true;
    if (arg.kind != JV_LIST)
        return jinja_fail(c, at->line, at->col, "%s() argument must be str or a tuple of str",
                          prefix ? "startswith" : "endswith");
    for (size_t i = 0; i < arg.l->n; i++) {
        jv a = arg.l->items[i];
        if (a.kind != JV_STR)
            return jinja_fail(c, at->line, at->col, "tuple for %s() must only contain str",
                              prefix ? "startswith" : "endswith");
        if (affix_match(s, a.s, prefix)) return *out = jv_bool(true), true;
    }
    return *out = jv_bool(false), true;
}

// str.format with {}, {0} and {name} fields (no format specs beyond the empty one).
static bool str_format(jctx *c, const jnode *at, const jstr *s, const jargs *a, jv *out) {
    jbuf b;
    jbuf_init(&b, c->h, c->lim.max_output);
    size_t auto_idx = 0;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->data[i];
        if ((ch == '{' || ch == '}') && i + 1 < s->len && s->data[i + 1] == ch) {
            jbuf_put(&b, &ch, 1), i++;
            continue;
        }
        if (ch != '{') {
            jbuf_put(&b, &ch, 1);
            continue;
        }
        const char *close = memchr(s->data + i, '}', s->len - i);
        if (!close) return jinja_fail(c, at->line, at->col, "single '{' encountered in format string");
        const char *f = s->data + i + 1;
        size_t fn = (size_t)(close - f);
        jv v = jv_undef();
        if (fn == 0 || (f[0] >= '0' && f[0] <= '9')) {
            size_t idx = fn ? (size_t)strtoul(f, NULL, 10) : auto_idx++;
            if (idx >= a->n_pos) return jinja_fail(c, at->line, at->col, "format index %zu out of range", idx);
            v = a->pos[idx];
        } else {
            size_t k = 0;
            while (k < a->n_kw && (a->kw_names[k]->len != fn || memcmp(a->kw_names[k]->data, f, fn) != 0))
                k++;
            if (k == a->n_kw) return jinja_fail(c, at->line, at->col, "format key '%.*s' not given", (int)fn, f);
            v = a->kw_vals[k];
        }
        jv_write_str(&b, v);
        i = (size_t)(close - s->data);
    }
    if (!b.ok) return jinja_oom(c, at->line, at->col);
    return str_out(c, &b, out);
}

static bool str_join(jctx *c, const jnode *at, const jstr *sep, jv items, jv *out) {
    if (items.kind != JV_LIST) return jinja_fail(c, at->line, at->col, "join() needs a list");
    jbuf b;
    jbuf_init(&b, c->h, c->lim.max_output);
    for (size_t i = 0; i < items.l->n; i++) {
        if (items.l->items[i].kind != JV_STR) return jinja_fail(c, at->line, at->col, "join() items must be strings");
        if (i) jbuf_put(&b, sep->data, sep->len);
        jbuf_put(&b, items.l->items[i].s->data, items.l->items[i].s->len);
    }
    if (!b.ok) return jinja_oom(c, at->line, at->col);
    return str_out(c, &b, out);
}

static int64_t count_sub(const jstr *s, const jstr *sub) {
    if (sub->len == 0) return (int64_t)jv_str_codepoints(s) + 1;
    int64_t n = 0;
    const char *p = s->data, *hit;
    while ((hit = memmem(p, s->len - (size_t)(p - s->data), sub->data, sub->len)))
        n++, p = hit + sub->len;
    return n;
}

static bool str_predicate(const jstr *s, int kind) {
    if (s->len == 0) return false;
    bool any_cased = false;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->data[i];
        bool ok = kind == 0   ? (ch >= '0' && ch <= '9')
                  : kind == 1 ? (is_lower(ch) || is_upper(ch))
                  : kind == 2 ? (is_lower(ch) || is_upper(ch) || (ch >= '0' && ch <= '9'))
                  : kind == 3 ? (ch == ' ' || (ch >= 9 && ch <= 13))
                  : kind == 4 ? !is_lower(ch)
                              : !is_upper(ch);
        if (!ok) return false;
        any_cased |= is_lower(ch) || is_upper(ch);
    }
    return kind < 4 || any_cased;
}

// --- method table ---

enum {
    M_STRIP,
    M_LSTRIP,
    M_RSTRIP,
    M_SPLIT,
    M_STARTSWITH,
    M_ENDSWITH,
    M_UPPER,
    M_LOWER,
    M_TITLE,
    M_CAPITALIZE,
    M_REPLACE,
    M_FORMAT,
    M_FIND,
    M_COUNT,
    M_JOIN,
    M_ISDIGIT,
    M_ISALPHA,
    M_ISALNUM,
    M_ISSPACE,
    M_ISUPPER,
    M_ISLOWER,
    M_STR_END,
    M_ITEMS = M_STR_END,
    M_KEYS,
    M_VALUES,
    M_GET,
    M_DICT_END,
    M_INDEX = M_DICT_END,
    M_LCOUNT,
    M_LIST_END,
    M_CYCLE = M_LIST_END,
    G_RANGE,
    G_NAMESPACE,
    G_DICT,
    G_RAISE,
    G_STRFTIME,
};

static const char *const STR_METHODS[] = {"strip",   "lstrip",  "rstrip", "split",      "startswith", "endswith",
                                          "upper",   "lower",   "title",  "capitalize", "replace",    "format",
                                          "find",    "count",   "join",   "isdigit",    "isalpha",    "isalnum",
                                          "isspace", "isupper", "islower"};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get"};
static const char *const LIST_METHODS[] = {"index", "count"};
static const char *const GLOBALS[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

static int find_name(const char *const *names, int n, const jstr *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name->data) == 0) return i;
    return -1;
}

static bool make_call(jctx *c, jcall_kind kind, int id, jv self, jv *out) {
    jcall *fn = jheap_alloc(c->h, sizeof(jcall));
    if (!fn) return jinja_oom(c, 0, 0), true;
    *fn = (jcall){.kind = kind, .id = id, .self = self};
    *out = (jv){.kind = JV_CALL, .c = fn};
    return true;
}

bool jinja_method_lookup(jctx *c, jv self, const jstr *name, jv *out) {
    int i = -1, base = 0;
    if (self.kind == JV_STR)
        i = find_name(STR_METHODS, M_STR_END, name), base = 0;
    else if (self.kind == JV_DICT)
        i = find_name(DICT_METHODS, M_DICT_END - M_STR_END, name), base = M_STR_END;
    else if (self.kind == JV_LIST)
        i = find_name(LIST_METHODS, M_LIST_END - M_DICT_END, name), base = M_DICT_END;
    else if (self.kind == JV_CALL && self.c->kind == JC_LOOP && strcmp(name->data, "cycle") == 0)
        i = 0, base = M_CYCLE;
    if (i < 0) return false;
    return make_call(c, JC_METHOD, base + i, self, out);
}

bool jinja_global_lookup(const jstr *name, jv *out) {
    static const jcall globals[5] = {{.kind = JC_GLOBAL, .id = G_RANGE},
                                     {.kind = JC_GLOBAL, .id = G_NAMESPACE},
                                     {.kind = JC_GLOBAL, .id = G_DICT},
                                     {.kind = JC_GLOBAL, .id = G_RAISE},
                                     {.kind = JC_GLOBAL, .id = G_STRFTIME}};
    int i = find_name(GLOBALS, 5, name);
    if (i < 0) return false;
    *out = (jv){.kind = JV_CALL, .c = &globals[i]};
    return true;
}

static bool dict_view(jctx *c, const jnode *at, const jdict *d, int which, jv *out) {
    jlist *l = jlist_new(c->h, d->n + 1);
    if (!l) return jinja_oom(c, at->line, at->col);
    for (size_t i = 0; i < d->n; i++) {
        if (which != M_ITEMS) {
            l->items[l->n++] = which == M_KEYS ? d->keys[i] : d->vals[i];
            continue;
        }
        jlist *pair = jlist_new(c->h, 2);
        if (!pair) return jinja_oom(c, at->line, at->col);
        pair->items[0] = d->keys[i], pair->items[1] = d->vals[i], pair->n = 2, pair->tuple = true;
        l->items[l->n++] = (jv){.kind = JV_LIST, .l = pair};
    }
    return *out = (jv){.kind = JV_LIST, .l = l}, true;
}

static bool need_str(jctx *c, const jnode *at, jv v, const char *what) {
    if (v.kind == JV_STR) return true;
    return jinja_fail(c, at->line, at->col, "%s argument must be str, not %s", what, jv_type_name(v));
}

static bool call_str_method(jctx *c, const jnode *at, int id, const jstr *s, const jargs *a, jv *out) {
    jv arg[3];
    static const char *const names[] = {"a", "b", "c"};
    if (id != M_FORMAT && !jinja_bind(c, at, a, names, 3, arg)) return false;
    switch (id) {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: return jinja_str_strip(c, s, arg[0], id != M_RSTRIP, id != M_LSTRIP, out);
    case M_SPLIT: return str_split(c, at, s, arg[0], arg[1], out);
    case M_STARTSWITH:
    case M_ENDSWITH: return str_affix(c, at, s, arg[0], id == M_STARTSWITH, out);
    case M_UPPER: return jinja_str_case(c, s, 1, out);
    case M_LOWER: return jinja_str_case(c, s, 0, out);
    case M_TITLE: return jinja_str_case(c, s, 3, out);
    case M_CAPITALIZE: return jinja_str_case(c, s, 2, out);
    case M_REPLACE: return jinja_str_replace(c, at, s, arg[0], arg[1], arg[2], out);
    case M_FORMAT: return str_format(c, at, s, a, out);
    case M_FIND: {
        if (!need_str(c, at, arg[0], "find()")) return false;
        const char *hit = memmem(s->data, s->len, arg[0].s->data, arg[0].s->len);
        return *out = jv_int(hit ? (int64_t)utf8_count(s->data, (size_t)(hit - s->data)) : -1), true;
    }
    case M_COUNT: return need_str(c, at, arg[0], "count()") && (*out = jv_int(count_sub(s, arg[0].s)), true);
    case M_JOIN: return str_join(c, at, s, arg[0], out);
    default: return *out = jv_bool(str_predicate(s, id - M_ISDIGIT)), true;
    }
}

static bool call_container_method(jctx *c, const jnode *at, int id, jv self, const jargs *a, jv *out) {
    jv arg[2];
    static const char *const names[] = {"a", "b"};
    if (!jinja_bind(c, at, a, names, 2, arg)) return false;
    if (id == M_GET) {
        const jv *v = jdict_get(self.d, arg[0]);
        return *out = v ? *v : arg[1].kind == JV_UNDEF ? jv_none() : arg[1], true;
    }
    if (id < M_DICT_END) return dict_view(c, at, self.d, id, out);
    int64_t n = 0;
    for (size_t i = 0; i < self.l->n; i++) {
        if (!jv_equal(self.l->items[i], arg[0])) continue;
        if (id == M_INDEX) return *out = jv_int((int64_t)i), true;
        n++;
    }
    if (id == M_INDEX) return jinja_fail(c, at->line, at->col, "list.index(x): x not in list");
    return *out = jv_int(n), true;
}

static bool global_range(jctx *c, const jnode *at, const jargs *a, jv *out) {
    if (a->n_kw || a->n_pos < 1 || a->n_pos > 3)
        return jinja_fail(c, at->line, at->col, "range() takes 1 to 3 integer arguments");
    int64_t v[3] = {0, 0, 1};
    for (size_t i = 0; i < a->n_pos; i++) {
        if (a->pos[i].kind != JV_INT && a->pos[i].kind != JV_BOOL)
            return jinja_fail(c, at->line, at->col, "range() arguments must be integers");
        v[a->n_pos == 1 ? 1 : i] = a->pos[i].kind == JV_BOOL ? a->pos[i].b : a->pos[i].i;
    }
    if (v[2] == 0) return jinja_fail(c, at->line, at->col, "range() arg 3 must not be zero");
    double count =
        v[2] > 0 ? ((double)v[1] - (double)v[0]) / (double)v[2] : ((double)v[0] - (double)v[1]) / -(double)v[2];
    if (count > MAX_RANGE)
        return jinja_fail(c, at->line, at->col, "range too big: the sandbox blocks ranges larger than %d", MAX_RANGE);
    jlist *l = jlist_new(c->h, count > 0 ? (size_t)count + 1 : 1);
    if (!l) return jinja_oom(c, at->line, at->col);
    for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2])
        l->items[l->n++] = jv_int(i);
    return *out = (jv){.kind = JV_LIST, .l = l}, true;
}

// namespace(...) and dict(...): a mapping from an optional positional mapping plus keyword arguments.
static bool global_mapping(jctx *c, const jnode *at, const jargs *a, bool ns, jv *out) {
    if (a->n_pos > 1)
        return jinja_fail(c, at->line, at->col, "%s() takes at most one positional argument",
                          ns ? "namespace" : "dict");
    jdict *d = jdict_new(c->h, a->n_kw + 1);
    if (!d) return jinja_oom(c, at->line, at->col);
    if (a->n_pos == 1) {
        jv src = a->pos[0];
        if (src.kind != JV_DICT && src.kind != JV_NS)
            return jinja_fail(c, at->line, at->col, "%s() argument must be a mapping", ns ? "namespace" : "dict");
        for (size_t i = 0; i < src.d->n; i++)
            if (!jdict_set(c->h, d, src.d->keys[i], src.d->vals[i])) return jinja_oom(c, at->line, at->col);
    }
    for (size_t i = 0; i < a->n_kw; i++) {
        if (ns && a->kw_names[i]->data[0] == '_')
            return jinja_fail(c, at->line, at->col, "namespace attributes may not start with '_'");
        if (!jdict_set(c->h, d, jv_strv(a->kw_names[i]), a->kw_vals[i])) return jinja_oom(c, at->line, at->col);
    }
    return *out = (jv){.kind = ns ? JV_NS : JV_DICT, .d = d}, true;
}

static bool global_raise(jctx *c, const jnode *at, const jargs *a) {
    jbuf b;
    jbuf_init(&b, c->h, 200);
    if (a->n_pos) jv_write_str(&b, a->pos[0]);
    jinja_fail(c, at->line, at->col, "%s", b.p ? b.p : "");
    c->raised = true;
    return false;
}

static bool global_strftime(jctx *c, const jnode *at, const jargs *a, jv *out) {
    if (a->n_pos != 1 || a->pos[0].kind != JV_STR)
        return jinja_fail(c, at->line, at->col, "strftime_now() takes one format string");
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char buf[256];
    size_t n = a->pos[0].s->len < 64 ? strftime(buf, sizeof buf, a->pos[0].s->data, &tm) : 0;
    if (!jv_str(c->h, buf, n, out)) return jinja_oom(c, at->line, at->col);
    return true;
}

static bool loop_cycle(jctx *c, const jnode *at, const jcall *lc, const jargs *a, jv *out) {
    if (a->n_pos == 0) return jinja_fail(c, at->line, at->col, "no items for cycling given");
    return *out = a->pos[lc->loop->i % a->n_pos], true;
}

bool jinja_builtin_call(jctx *c, const jnode *at, const jcall *fn, const jargs *a, jv *out) {
    if (fn->kind == JC_LOOP) return jinja_fail(c, at->line, at->col, "recursive loops are not supported");
    int id = fn->id;
    if (fn->kind == JC_METHOD) {
        if (id < M_STR_END) return call_str_method(c, at, id, fn->self.s, a, out);
        if (id < M_LIST_END) return call_container_method(c, at, id, fn->self, a, out);
        return loop_cycle(c, at, fn->self.c, a, out);
    }
    switch (id) {
    case G_RANGE: return global_range(c, at, a, out);
    case G_NAMESPACE: return global_mapping(c, at, a, true, out);
    case G_DICT: return global_mapping(c, at, a, false, out);
    case G_RAISE: return global_raise(c, at, a);
    case G_STRFTIME: return global_strftime(c, at, a, out);
    }
    return jinja_fail(c, at->line, at->col, "unknown function");
}
