// jinja_filters.c: the jinja2 filters and tests chat templates use, with jinja2's behaviour (and
// transformers' tojson: json.dumps with ensure_ascii=False). Filters and tests are found by name at
// parse time and applied by index; select/reject/map find them again by name at run time.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja.h"
#include "tokenizer/jinja_utf8.h"

#define FAIL(...) jinja_fail(c, at->line, at->col, __VA_ARGS__)
#define OOM()     jinja_oom(c, at->line, at->col)

static bool ret_list(jlist *l, jv *out) { return *out = (jv){.kind = JV_LIST, .l = l}, true; }

static bool as_str(jctx *c, const jnode *at, jv v, const jstr **out) {
    jv s;
    if (!jinja_to_str(c, at, v, &s)) return false;
    *out = s.s;
    return true;
}

// The items of a list, the keys of a dict, the characters of a string; Undefined gives none.
static bool to_list(jctx *c, const jnode *at, jv v, jlist **out) {
    if (v.kind == JV_LIST) return *out = v.l, true;
    jlist *l = jlist_new(c->h, 4);
    if (!l) return OOM();
    if (v.kind == JV_DICT || v.kind == JV_NS) {
        for (size_t i = 0; i < v.d->n; i++)
            if (!jlist_push(c->h, l, v.d->keys[i])) return OOM();
    } else if (v.kind == JV_STR) {
        uint32_t cp;
        for (size_t i = 0, k; i < v.s->len; i += k) {
            k = utf8_decode(v.s->data + i, v.s->len - i, &cp);
            jv ch;
            if (!jv_str(c->h, v.s->data + i, k, &ch) || !jlist_push(c->h, l, ch)) return OOM();
        }
    } else if (v.kind != JV_UNDEF) {
        return FAIL("'%s' object is not iterable", jv_type_name(v));
    }
    return *out = l, true;
}

// Looks up a dotted attribute path ("a.b", "0") on an item, as jinja2's make_attrgetter.
static bool attr_path(jctx *c, const jnode *at, jv item, const jstr *path, jv *out) {
    const char *p = path->data, *end = p + path->len;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t n = dot ? (size_t)(dot - p) : (size_t)(end - p);
        const jstr *part = jstr_new(c->h, p, n);
        if (!part) return OOM();
        char *num_end;
        long idx = strtol(part->data, &num_end, 10);
        if (n && *num_end == 0 && item.kind == JV_LIST)
            item = idx >= 0 && (size_t)idx < item.l->n ? item.l->items[idx] : jv_undef();
        else if (item.kind == JV_UNDEF)
            return *out = item, true;
        else if (!jinja_getattr(c, at, item, part, &item))
            return false;
        if (!dot) break;
        p = dot + 1;
    }
    return *out = item, true;
}

// --- sorting (stable merge sort with Python's ordering; strings compared case-insensitively unless asked) ---

typedef struct sort_key {
    jv key;
    jv item;
} sort_key;

static bool key_less(jctx *c, const jnode *at, jv a, jv b, bool *less) {
    bool ok;
    int r = jv_compare(a, b, &ok);
    if (!ok) return FAIL("'<' not supported between '%s' and '%s'", jv_type_name(a), jv_type_name(b));
    *less = r < 0;
    return true;
}

static bool merge_sort(jctx *c, const jnode *at, sort_key *v, sort_key *tmp, size_t n, bool reverse) {
    if (n < 2) return true;
    size_t h = n / 2;
    if (!merge_sort(c, at, v, tmp, h, reverse) || !merge_sort(c, at, v + h, tmp, n - h, reverse)) return false;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool less = false;
        if (!key_less(c, at, reverse ? v[i].key : v[j].key, reverse ? v[j].key : v[i].key, &less)) return false;
        tmp[k++] = less ? v[j++] : v[i++]; // take from the right only when strictly before (stability)
    }
    while (i < h)
        tmp[k++] = v[i++];
    while (j < n)
        tmp[k++] = v[j++];
    memcpy(v, tmp, n * sizeof *v);
    return true;
}

static bool sort_keyed(jctx *c, const jnode *at, jlist *items, jv attribute, bool case_sensitive, bool reverse,
                       int dict_by, jv *out) {
    size_t n = items->n;
    sort_key *v = jheap_alloc(c->h, (n + 1) * sizeof *v), *tmp = jheap_alloc(c->h, (n + 1) * sizeof *v);
    if (!v || !tmp) return OOM();
    for (size_t i = 0; i < n; i++) {
        jv key = items->items[i];
        if (dict_by >= 0)
            key = key.l->items[dict_by];
        else if (attribute.kind == JV_STR && !attr_path(c, at, key, attribute.s, &key))
            return false;
        if (key.kind == JV_STR && !case_sensitive && !jinja_str_case(c, key.s, 0, &key)) return false;
        v[i] = (sort_key){key, items->items[i]};
    }
    if (!merge_sort(c, at, v, tmp, n, reverse)) return false;
    jlist *l = jlist_new(c->h, n + 1);
    if (!l) return OOM();
    for (size_t i = 0; i < n; i++)
        l->items[l->n++] = v[i].item;
    return ret_list(l, out);
}

// --- the filters ---

typedef bool (*filter_fn)(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out);

static bool f_abs(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    if (v.kind == JV_FLOAT) return *out = jv_float(fabs(v.f)), true;
    if (v.kind == JV_INT && v.i != INT64_MIN) return *out = jv_int(v.i < 0 ? -v.i : v.i), true;
    if (v.kind == JV_BOOL) return *out = jv_int(v.b), true;
    return FAIL("bad operand type for abs(): '%s'", jv_type_name(v));
}

static bool f_attr(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    if (arg[0].kind != JV_STR) return FAIL("attr() needs a name");
    return jinja_getattr(c, at, v, arg[0].s, out);
}

static bool f_case(jctx *c, const jnode *at, jv v, int mode, jv *out) {
    const jstr *s;
    return as_str(c, at, v, &s) && jinja_str_case(c, s, mode, out);
}
static bool f_lower(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_case(c, at, v, 0, out);
}
static bool f_upper(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_case(c, at, v, 1, out);
}
static bool f_capitalize(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_case(c, at, v, 2, out);
}

// jinja2's title: capitalizes after spaces and any of "-({[<".
static bool f_title(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    const jstr *s;
    if (!as_str(c, at, v, &s)) return false;
    jbuf b;
    jbuf_init(&b, c->h, 0);
    bool start = true;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->data[i];
        bool sep = strchr(" \t\n\r\f\v-({[<", ch) != NULL && ch != 0;
        char r = sep     ? ch
                 : start ? (ch >= 'a' && ch <= 'z' ? (char)(ch - 32) : ch)
                         : (ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch);
        jbuf_put(&b, &r, 1);
        start = sep;
    }
    const jstr *r = jbuf_str(&b);
    return r ? (*out = jv_strv(r), true) : OOM();
}

static bool f_length(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    switch (v.kind) {
    case JV_STR: return *out = jv_int((int64_t)jv_str_codepoints(v.s)), true;
    case JV_LIST: return *out = jv_int((int64_t)v.l->n), true;
    case JV_DICT:
    case JV_NS: return *out = jv_int((int64_t)v.d->n), true;
    case JV_UNDEF: return *out = jv_int(0), true;
    default: return FAIL("object of type '%s' has no len()", jv_type_name(v));
    }
}

static bool f_default(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    bool use = v.kind == JV_UNDEF || (jv_truthy(arg[1]) && !jv_truthy(v));
    if (!use) return *out = v, true;
    if (arg[0].kind == JV_UNDEF) return jv_str(c->h, "", 0, out) ? true : OOM();
    return *out = arg[0], true;
}

static bool f_dictsort(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    if (v.kind != JV_DICT && v.kind != JV_NS) return FAIL("dictsort() needs a mapping");
    jv items;
    jargs none = {0};
    jv self = v;
    self.kind = JV_DICT;
    const jstr *name = jstr_new(c->h, "items", 5);
    jv fn;
    if (!name || !jinja_method_lookup(c, self, name, &fn) || !jinja_call_value(c, at, fn, &none, &items))
        return c->failed ? false : OOM();
    int by = arg[1].kind == JV_STR && strcmp(arg[1].s->data, "value") == 0 ? 1 : 0;
    return sort_keyed(c, at, items.l, jv_undef(), jv_truthy(arg[0]), jv_truthy(arg[2]), by, out);
}

static bool f_escape(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    const jstr *s;
    if (!as_str(c, at, v, &s)) return false;
    jbuf b;
    jbuf_init(&b, c->h, 0);
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->data[i];
        const char *e = ch == '&'    ? "&amp;"
                        : ch == '<'  ? "&lt;"
                        : ch == '>'  ? "&gt;"
                        : ch == '"'  ? "&#34;"
                        : ch == '\'' ? "&#39;"
                                     : NULL;
        if (e)
            jbuf_puts(&b, e);
        else
            jbuf_put(&b, &ch, 1);
    }
    const jstr *r = jbuf_str(&b);
    return r ? (*out = jv_strv(r), true) : OOM();
}

static bool f_first_last(jctx *c, const jnode *at, jv v, bool last, jv *out) {
    jlist *l;
    if (!to_list(c, at, v, &l)) return false;
    *out = l->n ? l->items[last ? l->n - 1 : 0] : jv_undef();
    return true;
}
static bool f_first(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_first_last(c, at, v, false, out);
}
static bool f_last(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_first_last(c, at, v, true, out);
}

static bool parse_number(const jstr *s, bool want_int, jv *out) {
    char buf[64];
    size_t n = 0;
    for (size_t i = 0; i < s->len && n + 1 < sizeof buf; i++)
        if (s->data[i] != '_') buf[n++] = s->data[i];
    buf[n] = 0;
    char *end;
    if (want_int) {
        long long i = strtoll(buf, &end, 10);
        while (*end == ' ' || (*end >= 9 && *end <= 13))
            end++;
        if (end != buf && *end == 0) return *out = jv_int(i), true;
    }
    double f = strtod(buf, &end);
    while (*end == ' ' || (*end >= 9 && *end <= 13))
        end++;
    if (end == buf || *end || n == 0) return false;
    if (want_int && !(fabs(f) < 9.2e18)) return false;
    *out = want_int ? jv_int((int64_t)f) : jv_float(f);
    return true;
}

static bool f_number(jctx *c, const jnode *at, jv v, const jv *arg, bool want_int, jv *out) {
    jv def = arg[0].kind != JV_UNDEF ? arg[0] : want_int ? jv_int(0) : jv_float(0.0);
    switch (v.kind) {
    case JV_INT:
    case JV_BOOL: return *out = want_int ? jv_int(v.kind == JV_BOOL ? v.b : v.i) : jv_float(jv_as_double(v)), true;
    case JV_FLOAT:
        if (!want_int) return *out = v, true;
        return *out = isfinite(v.f) && fabs(v.f) < 9.2e18 ? jv_int((int64_t)v.f) : def, true;
    case JV_STR: return parse_number(v.s, want_int, out) ? true : (*out = def, true);
    default: return *out = def, true;
    }
}
static bool f_int(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_number(c, at, v, arg, true, out);
}
static bool f_float(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_number(c, at, v, arg, false, out);
}

static bool f_indent(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    const jstr *s, *ind;
    if (!as_str(c, at, v, &s)) return false;
    jbuf pad;
    jbuf_init(&pad, c->h, 0);
    if (arg[0].kind == JV_STR)
        jbuf_put(&pad, arg[0].s->data, arg[0].s->len);
    else
        for (int64_t i = 0, w = arg[0].kind == JV_INT ? arg[0].i : 4; i < w && i < 256; i++)
            jbuf_put(&pad, " ", 1);
    if (!(ind = jbuf_str(&pad))) return OOM();
    jbuf b;
    jbuf_init(&b, c->h, c->lim.max_output);
    if (jv_truthy(arg[1])) jbuf_put(&b, ind->data, ind->len);
    bool blank = jv_truthy(arg[2]);
    size_t i = 0;
    for (bool first = true; i < s->len; first = false) { // splitlines(), then join with "\n" + indent
        size_t e = i;
        while (e < s->len && s->data[e] != '\n' && s->data[e] != '\r')
            e++;
        if (!first) {
            jbuf_put(&b, "\n", 1);
            if (blank || e > i) jbuf_put(&b, ind->data, ind->len);
        }
        jbuf_put(&b, s->data + i, e - i);
        i = e + (e < s->len && s->data[e] == '\r' && e + 1 < s->len && s->data[e + 1] == '\n' ? 2 : 1);
    }
    const jstr *r = jbuf_str(&b);
    return r ? (*out = jv_strv(r), true) : OOM();
}

static bool f_items(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    if (v.kind == JV_UNDEF) {
        jlist *l = jlist_new(c->h, 1);
        return l ? ret_list(l, out) : OOM();
    }
    if (v.kind != JV_DICT && v.kind != JV_NS) return FAIL("can only get item pairs from a mapping");
    jv self = v, fn;
    self.kind = JV_DICT;
    jargs none = {0};
    const jstr *name = jstr_new(c->h, "items", 5);
    if (!name || !jinja_method_lookup(c, self, name, &fn)) return OOM();
    return jinja_call_value(c, at, fn, &none, out);
}

static bool f_join(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l;
    if (!to_list(c, at, v, &l)) return false;
    jbuf b;
    jbuf_init(&b, c->h, c->lim.max_output);
    for (size_t i = 0; i < l->n; i++) {
        jv item = l->items[i];
        if (arg[1].kind == JV_STR && !attr_path(c, at, item, arg[1].s, &item)) return false;
        if (i && arg[0].kind != JV_UNDEF) jv_write_str(&b, arg[0]);
        jv_write_str(&b, item);
    }
    const jstr *r = jbuf_str(&b);
    return r ? (*out = jv_strv(r), true) : OOM();
}

static bool f_list(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l, *copy;
    if (!to_list(c, at, v, &l)) return false;
    if (!l->tuple) return ret_list(l, out);
    if (!(copy = jlist_new(c->h, l->n + 1))) return OOM();
    memcpy(copy->items, l->items, l->n * sizeof(jv));
    copy->n = l->n;
    return ret_list(copy, out);
}

// select/reject/selectattr/rejectattr: keep items whose test (or truthiness) says `want`.
static bool select_items(jctx *c, const jnode *at, jv v, const jargs *a, bool by_attr, bool want, jv *out) {
    jlist *l, *r;
    if (!to_list(c, at, v, &l) || !(r = jlist_new(c->h, l->n + 1))) return c->failed ? false : OOM();
    size_t first_arg = by_attr ? 1 : 0;
    if (a->n_pos < first_arg + (by_attr ? 0 : 1) && !by_attr) return FAIL("select() needs a test name");
    if (by_attr && (a->n_pos < 1 || a->pos[0].kind != JV_STR)) return FAIL("selectattr() needs an attribute name");
    int test = -1;
    if (a->n_pos > first_arg) {
        if (a->pos[first_arg].kind != JV_STR) return FAIL("the test name must be a string");
        test = jinja_test_find(a->pos[first_arg].s->data, a->pos[first_arg].s->len);
        if (test < 0) return FAIL("unknown test '%s'", a->pos[first_arg].s->data);
    }
    jargs targs = {.pos = a->pos + first_arg + 1, .n_pos = a->n_pos > first_arg + 1 ? a->n_pos - first_arg - 1 : 0};
    for (size_t i = 0; i < l->n; i++) {
        if (!jinja_step(c, at->line, at->col)) return false;
        jv item = l->items[i];
        if (by_attr && !attr_path(c, at, item, a->pos[0].s, &item)) return false;
        bool ok = jv_truthy(item);
        if (test >= 0 && !jinja_test_apply(c, at, test, item, &targs, &ok)) return false;
        if (ok == want) r->items[r->n++] = l->items[i];
    }
    return ret_list(r, out);
}
static bool f_select(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return select_items(c, at, v, a, false, true, out);
}
static bool f_reject(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return select_items(c, at, v, a, false, false, out);
}
static bool f_selectattr(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return select_items(c, at, v, a, true, true, out);
}
static bool f_rejectattr(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return select_items(c, at, v, a, true, false, out);
}

static bool f_map(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l, *r;
    if (!to_list(c, at, v, &l) || !(r = jlist_new(c->h, l->n + 1))) return c->failed ? false : OOM();
    jv attribute = jv_undef(), def = jv_undef();
    for (size_t k = 0; k < a->n_kw; k++) {
        if (!strcmp(a->kw_names[k]->data, "attribute"))
            attribute = a->kw_vals[k];
        else if (!strcmp(a->kw_names[k]->data, "default"))
            def = a->kw_vals[k];
    }
    int filter = -1;
    if (attribute.kind != JV_STR) {
        if (a->n_pos < 1 || a->pos[0].kind != JV_STR) return FAIL("map() needs a filter name or attribute=");
        if ((filter = jinja_filter_find(a->pos[0].s->data, a->pos[0].s->len)) < 0)
            return FAIL("unknown filter '%s'", a->pos[0].s->data);
    }
    jargs fargs = {.pos = a->pos + 1, .n_pos = a->n_pos ? a->n_pos - 1 : 0};
    for (size_t i = 0; i < l->n; i++) {
        if (!jinja_step(c, at->line, at->col)) return false;
        jv item = l->items[i];
        bool ok = filter >= 0 ? jinja_filter_apply(c, at, filter, item, &fargs, &item)
                              : attr_path(c, at, item, attribute.s, &item);
        if (!ok) return false;
        if (item.kind == JV_UNDEF && def.kind != JV_UNDEF) item = def;
        r->items[r->n++] = item;
    }
    return ret_list(r, out);
}

static bool f_min_max(jctx *c, const jnode *at, jv v, const jv *arg, bool max, jv *out) {
    jlist *l;
    jv sorted;
    if (!to_list(c, at, v, &l) || !sort_keyed(c, at, l, arg[1], jv_truthy(arg[0]), false, -1, &sorted)) return false;
    if (sorted.l->n == 0) return *out = jv_undef(), true;
    if (!max) return *out = sorted.l->items[0], true;
    // max() returns the first of equal maxima; the stable sort put it before the others that tie
    size_t i = sorted.l->n - 1;
    return *out = sorted.l->items[i], true;
}
static bool f_min(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_min_max(c, at, v, arg, false, out);
}
static bool f_max(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return f_min_max(c, at, v, arg, true, out);
}

static bool f_replace(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    const jstr *s;
    return as_str(c, at, v, &s) && jinja_str_replace(c, at, s, arg[0], arg[1], arg[2], out);
}

static bool f_reverse(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l, *r;
    if (!to_list(c, at, v, &l) || !(r = jlist_new(c->h, l->n + 1))) return c->failed ? false : OOM();
    for (size_t i = l->n; i-- > 0;)
        r->items[r->n++] = l->items[i];
    if (v.kind != JV_STR) return ret_list(r, out);
    jbuf b;
    jbuf_init(&b, c->h, 0);
    for (size_t i = 0; i < r->n; i++)
        jbuf_put(&b, r->items[i].s->data, r->items[i].s->len);
    const jstr *s = jbuf_str(&b);
    return s ? (*out = jv_strv(s), true) : OOM();
}

static bool f_round(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    if (!jv_is_number(v)) return FAIL("round() needs a number, not '%s'", jv_type_name(v));
    int64_t prec = arg[0].kind == JV_INT ? arg[0].i : 0;
    const char *method = arg[1].kind == JV_STR ? arg[1].s->data : "common";
    if (prec < 0 || prec > 15) return FAIL("round() precision must be between 0 and 15");
    double x = jv_as_double(v), p = pow(10, (double)prec);
    if (!strcmp(method, "common")) {
        if (v.kind != JV_FLOAT) return *out = jv_int(v.kind == JV_BOOL ? v.b : v.i), true;
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x); // correctly rounded, ties to even: Python's round()
        return *out = jv_float(strtod(buf, NULL)), true;
    }
    if (!strcmp(method, "floor")) return *out = jv_float(floor(x * p) / p), true;
    if (!strcmp(method, "ceil")) return *out = jv_float(ceil(x * p) / p), true;
    return FAIL("method must be 'common', 'ceil' or 'floor'");
}

static bool f_safe(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) { return *out = v, true; }

static bool f_sort(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l;
    return to_list(c, at, v, &l) && sort_keyed(c, at, l, arg[2], jv_truthy(arg[1]), jv_truthy(arg[0]), -1, out);
}

static bool f_string(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    return jinja_to_str(c, at, v, out);
}

static bool f_sum(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l;
    if (!to_list(c, at, v, &l)) return false;
    jv acc = arg[1].kind != JV_UNDEF ? arg[1] : jv_int(0);
    for (size_t i = 0; i < l->n; i++) {
        jv item = l->items[i];
        if (arg[0].kind == JV_STR && !attr_path(c, at, item, arg[0].s, &item)) return false;
        if (!jv_is_number(item) || !jv_is_number(acc)) return FAIL("sum() needs numbers");
        if (acc.kind == JV_FLOAT || item.kind == JV_FLOAT)
            acc = jv_float(jv_as_double(acc) + jv_as_double(item));
        else if (__builtin_add_overflow(acc.kind == JV_BOOL ? acc.b : acc.i, item.kind == JV_BOOL ? item.b : item.i,
                                        &acc.i))
            return FAIL("integer overflow");
        else
            acc.kind = JV_INT;
    }
    return *out = acc, true;
}

static bool f_tojson(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jjson_opts o = {.indent = -1, .ensure_ascii = jv_truthy(arg[0]), .sort_keys = jv_truthy(arg[3])};
    if (arg[1].kind == JV_INT)
        o.indent = arg[1].i < 0 ? 0 : arg[1].i > 64 ? 64 : (int)arg[1].i;
    else if (arg[1].kind != JV_UNDEF && arg[1].kind != JV_NONE)
        return FAIL("tojson() indent must be an integer");
    if (arg[2].kind == JV_LIST && arg[2].l->n == 2 && arg[2].l->items[0].kind == JV_STR &&
        arg[2].l->items[1].kind == JV_STR)
        o.item_sep = arg[2].l->items[0].s, o.key_sep = arg[2].l->items[1].s;
    else if (arg[2].kind != JV_UNDEF && arg[2].kind != JV_NONE)
        return FAIL("tojson() separators must be two strings");
    jbuf b;
    jbuf_init(&b, c->h, c->lim.max_output);
    jv bad;
    if (!jv_write_json(&b, v, &o, &bad))
        return b.ok ? FAIL("Object of type %s is not JSON serializable", jv_type_name(bad)) : OOM();
    const jstr *s = jbuf_str(&b);
    return s ? (*out = jv_strv(s), true) : OOM();
}

static bool f_trim(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    const jstr *s;
    return as_str(c, at, v, &s) && jinja_str_strip(c, s, arg[0], true, true, out);
}

static bool f_unique(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    jlist *l, *r, *seen;
    if (!to_list(c, at, v, &l) || !(r = jlist_new(c->h, l->n + 1)) || !(seen = jlist_new(c->h, l->n + 1)))
        return c->failed ? false : OOM();
    for (size_t i = 0; i < l->n; i++) {
        if (!jinja_step(c, at->line, at->col)) return false;
        jv key = l->items[i];
        if (arg[1].kind == JV_STR && !attr_path(c, at, key, arg[1].s, &key)) return false;
        if (key.kind == JV_STR && !jv_truthy(arg[0]) && !jinja_str_case(c, key.s, 0, &key)) return false;
        bool dup = false;
        for (size_t k = 0; k < seen->n && !dup; k++)
            dup = jv_equal(seen->items[k], key);
        if (!dup) seen->items[seen->n++] = key, r->items[r->n++] = l->items[i];
    }
    return ret_list(r, out);
}

static bool f_wordcount(jctx *c, const jnode *at, jv v, const jv *arg, const jargs *a, jv *out) {
    const jstr *s;
    if (!as_str(c, at, v, &s)) return false;
    int64_t n = 0;
    bool in_word = false;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->data[i];
        bool w = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
                 (unsigned char)ch >= 0x80;
        n += w && !in_word;
        in_word = w;
    }
    return *out = jv_int(n), true;
}

typedef struct filter_def {
    const char *name;
    filter_fn fn;
    const char *params[4]; // names of the bound arguments; filters with none bind nothing
} filter_def;

static const filter_def FILTERS[] = {
    {"abs", f_abs, {0}},
    {"attr", f_attr, {"name"}},
    {"capitalize", f_capitalize, {0}},
    {"count", f_length, {0}},
    {"d", f_default, {"default_value", "boolean"}},
    {"default", f_default, {"default_value", "boolean"}},
    {"dictsort", f_dictsort, {"case_sensitive", "by", "reverse"}},
    {"e", f_escape, {0}},
    {"escape", f_escape, {0}},
    {"first", f_first, {0}},
    {"float", f_float, {"default"}},
    {"indent", f_indent, {"width", "first", "blank"}},
    {"int", f_int, {"default", "base"}},
    {"items", f_items, {0}},
    {"join", f_join, {"d", "attribute"}},
    {"last", f_last, {0}},
    {"length", f_length, {0}},
    {"list", f_list, {0}},
    {"lower", f_lower, {0}},
    {"map", f_map, {0}},
    {"max", f_max, {"case_sensitive", "attribute"}},
    {"min", f_min, {"case_sensitive", "attribute"}},
    {"reject", f_reject, {0}},
    {"rejectattr", f_rejectattr, {0}},
    {"replace", f_replace, {"old", "new", "count"}},
    {"reverse", f_reverse, {0}},
    {"round", f_round, {"precision", "method"}},
    {"safe", f_safe, {0}},
    {"select", f_select, {0}},
    {"selectattr", f_selectattr, {0}},
    {"sort", f_sort, {"reverse", "case_sensitive", "attribute"}},
    {"string", f_string, {0}},
    {"sum", f_sum, {"attribute", "start"}},
    {"title", f_title, {0}},
    {"tojson", f_tojson, {"ensure_ascii", "indent", "separators", "sort_keys"}},
    {"trim", f_trim, {"chars"}},
    {"unique", f_unique, {"case_sensitive", "attribute"}},
    {"upper", f_upper, {0}},
    {"wordcount", f_wordcount, {0}},
};
#define N_FILTERS (int)(sizeof FILTERS / sizeof FILTERS[0])

int jinja_filter_find(const char *name, size_t n) {
    for (int i = 0; i < N_FILTERS; i++)
        if (strlen(FILTERS[i].name) == n && memcmp(FILTERS[i].name, name, n) == 0) return i;
    return -1;
}

static bool binds_nothing(const filter_def *f) { return f->params[0] == NULL; }

bool jinja_filter_apply(jctx *c, const jnode *at, int id, jv v, const jargs *a, jv *out) {
    const filter_def *f = &FILTERS[id];
    jv arg[4] = {jv_undef(), jv_undef(), jv_undef(), jv_undef()};
    size_t n = 0;
    while (n < 4 && f->params[n])
        n++;
    bool variadic =
        f->fn == f_select || f->fn == f_reject || f->fn == f_selectattr || f->fn == f_rejectattr || f->fn == f_map;
    if (!variadic && binds_nothing(f) && (a->n_pos || a->n_kw)) return FAIL("filter '%s' takes no arguments", f->name);
    if (!variadic && !jinja_bind(c, at, a, f->params, n, arg)) return false;
    return f->fn(c, at, v, arg, a, out);
}

// --- tests ---

typedef bool (*test_fn)(jctx *c, const jnode *at, jv v, jv arg, bool *out);

static bool t_defined(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind != JV_UNDEF, true; }
static bool t_undefined(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_UNDEF, true; }
static bool t_none(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_NONE, true; }
static bool t_string(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_STR, true; }
static bool t_mapping(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_DICT, true; }
static bool t_iterable(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    return *out = v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_UNDEF, true;
}
static bool t_sequence(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    return *out = v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_UNDEF, true;
}
static bool t_number(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = jv_is_number(v), true; }
static bool t_integer(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_INT, true; }
static bool t_float(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_FLOAT, true; }
static bool t_boolean(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_BOOL, true; }
static bool t_true(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_BOOL && v.b, true; }
static bool t_false(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    return *out = v.kind == JV_BOOL && !v.b, true;
}
static bool t_callable(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = v.kind == JV_CALL, true; }

static bool need_int(jctx *c, const jnode *at, jv v, int64_t *out) {
    if (v.kind == JV_INT || v.kind == JV_BOOL) return *out = v.kind == JV_BOOL ? v.b : v.i, true;
    return FAIL("test needs an integer, not '%s'", jv_type_name(v));
}
static bool t_even(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int64_t i = 0;
    return need_int(c, at, v, &i) && (*out = i % 2 == 0, true);
}
static bool t_odd(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int64_t i = 0;
    return need_int(c, at, v, &i) && (*out = i % 2 != 0, true);
}
static bool t_divisibleby(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int64_t i = 0, d = 1;
    if (!need_int(c, at, v, &i) || !need_int(c, at, arg, &d)) return false;
    if (d == 0) return FAIL("integer division or modulo by zero");
    return *out = d == -1 || i % d == 0, true;
}
static bool t_eq(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = jv_equal(v, arg), true; }
static bool t_ne(jctx *c, const jnode *at, jv v, jv arg, bool *out) { return *out = !jv_equal(v, arg), true; }
static bool order(jctx *c, const jnode *at, jv v, jv arg, int *r) {
    bool ok;
    *r = jv_compare(v, arg, &ok);
    return ok ? true : FAIL("cannot compare '%s' with '%s'", jv_type_name(v), jv_type_name(arg));
}
static bool t_lt(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int r;
    return order(c, at, v, arg, &r) && (*out = r < 0, true);
}
static bool t_le(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int r;
    return order(c, at, v, arg, &r) && (*out = r <= 0, true);
}
static bool t_gt(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int r;
    return order(c, at, v, arg, &r) && (*out = r > 0, true);
}
static bool t_ge(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    int r;
    return order(c, at, v, arg, &r) && (*out = r >= 0, true);
}
static bool t_in(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    if (arg.kind == JV_STR) {
        if (v.kind != JV_STR) return FAIL("'in <string>' requires string as left operand");
        return *out = memmem(arg.s->data, arg.s->len, v.s->data, v.s->len) != NULL || v.s->len == 0, true;
    }
    if (arg.kind == JV_LIST) {
        *out = false;
        for (size_t i = 0; i < arg.l->n && !*out; i++)
            *out = jv_equal(arg.l->items[i], v);
        return true;
    }
    if (arg.kind == JV_DICT || arg.kind == JV_NS) return *out = jdict_get(arg.d, v) != NULL, true;
    return FAIL("argument of type '%s' is not iterable", jv_type_name(arg));
}
static bool t_sameas(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    bool scalar = v.kind == JV_NONE || v.kind == JV_BOOL || v.kind == JV_UNDEF;
    return *out = v.kind == arg.kind && (scalar ? jv_equal(v, arg) : v.l == arg.l), true;
}
static bool t_lower(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    jv low;
    if (v.kind != JV_STR) return *out = false, true;
    return jinja_str_case(c, v.s, 0, &low) && (*out = jv_equal(low, v), true);
}
static bool t_upper(jctx *c, const jnode *at, jv v, jv arg, bool *out) {
    jv up;
    if (v.kind != JV_STR) return *out = false, true;
    return jinja_str_case(c, v.s, 1, &up) && (*out = jv_equal(up, v), true);
}

typedef struct test_def {
    const char *name;
    test_fn fn;
    bool takes_arg;
} test_def;

static const test_def TESTS[] = {
    {"boolean", t_boolean, false},
    {"callable", t_callable, false},
    {"defined", t_defined, false},
    {"divisibleby", t_divisibleby, true},
    {"eq", t_eq, true},
    {"equalto", t_eq, true},
    {"escaped", t_false, false},
    {"even", t_even, false},
    {"false", t_false, false},
    {"float", t_float, false},
    {"ge", t_ge, true},
    {"greaterthan", t_gt, true},
    {"gt", t_gt, true},
    {"in", t_in, true},
    {"integer", t_integer, false},
    {"iterable", t_iterable, false},
    {"le", t_le, true},
    {"lessthan", t_lt, true},
    {"lower", t_lower, false},
    {"lt", t_lt, true},
    {"mapping", t_mapping, false},
    {"ne", t_ne, true},
    {"none", t_none, false},
    {"number", t_number, false},
    {"odd", t_odd, false},
    {"sameas", t_sameas, true},
    {"sequence", t_sequence, false},
    {"string", t_string, false},
    {"true", t_true, false},
    {"undefined", t_undefined, false},
    {"upper", t_upper, false},
};
#define N_TESTS (int)(sizeof TESTS / sizeof TESTS[0])

int jinja_test_find(const char *name, size_t n) {
    for (int i = 0; i < N_TESTS; i++)
        if (strlen(TESTS[i].name) == n && memcmp(TESTS[i].name, name, n) == 0) return i;
    return -1;
}

bool jinja_test_apply(jctx *c, const jnode *at, int id, jv v, const jargs *a, bool *out) {
    const test_def *t = &TESTS[id];
    size_t want = t->takes_arg ? 1 : 0;
    if (a->n_kw || a->n_pos != want)
        return FAIL("test '%s' takes %zu argument%s, %zu given", t->name, want, want == 1 ? "" : "s",
                    a->n_pos + a->n_kw);
    return t->fn(c, at, v, want ? a->pos[0] : jv_undef(), out);
}
