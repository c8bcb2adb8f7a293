// jinja_value.c: values for the chat-template interpreter, with Python's semantics for truth, equality,
// ordering, str()/repr() and json.dumps (as transformers' tojson calls it: ensure_ascii=False, Python's
// default separators). All memory comes from a jheap (an arena with a byte limit).
#include "tokenizer/jinja_value.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja_utf8.h"

void *jheap_alloc(jheap *h, size_t n) {
    if (n > h->limit || h->a.used > h->limit - n) return NULL;
    return arena_alloc(&h->a, n ? n : 1, 8);
}

const jstr *jstr_new(jheap *h, const char *p, size_t n) {
    jstr *s = jheap_alloc(h, sizeof(jstr) + n + 1);
    if (!s) return NULL;
    s->len = n;
    if (n) memcpy(s->data, p, n);
    s->data[n] = 0;
    return s;
}

bool jv_str(jheap *h, const char *p, size_t n, jv *out) {
    const jstr *s = jstr_new(h, p, n);
    if (!s) return false;
    *out = jv_strv(s);
    return true;
}

jlist *jlist_new(jheap *h, size_t cap) {
    jlist *l = jheap_alloc(h, sizeof(jlist));
    if (!l) return NULL;
    l->n = 0;
    l->tuple = false;
    l->cap = cap ? cap : 4;
    l->items = jheap_alloc(h, l->cap * sizeof(jv));
    return l->items ? l : NULL;
}

bool jlist_push(jheap *h, jlist *l, jv v) {
    if (l->n == l->cap) {
        jv *grown = jheap_alloc(h, 2 * l->cap * sizeof(jv));
        if (!grown) return false;
        memcpy(grown, l->items, l->n * sizeof(jv));
        l->items = grown;
        l->cap *= 2;
    }
    l->items[l->n++] = v;
    return true;
}

jdict *jdict_new(jheap *h, size_t cap) {
    jdict *d = jheap_alloc(h, sizeof(jdict));
    if (!d) return NULL;
    d->n = 0;
    d->cap = cap ? cap : 4;
    d->keys = jheap_alloc(h, d->cap * sizeof(jv));
    d->vals = jheap_alloc(h, d->cap * sizeof(jv));
    return d->keys && d->vals ? d : NULL;
}

static ptrdiff_t dict_find(const jdict *d, jv key) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->keys[i], key)) return (ptrdiff_t)i;
    return -1;
}

bool jdict_set(jheap *h, jdict *d, jv key, jv val) {
    ptrdiff_t at = dict_find(d, key);
    if (at >= 0) {
        d->vals[at] = val;
        return true;
    }
    if (d->n == d->cap) {
        jv *k = jheap_alloc(h, 2 * d->cap * sizeof(jv)), *v = jheap_alloc(h, 2 * d->cap * sizeof(jv));
        if (!k || !v) return false;
        memcpy(k, d->keys, d->n * sizeof(jv));
        memcpy(v, d->vals, d->n * sizeof(jv));
        d->keys = k, d->vals = v, d->cap *= 2;
    }
    d->keys[d->n] = key;
    d->vals[d->n++] = val;
    return true;
}

const jv *jdict_get(const jdict *d, jv key) {
    ptrdiff_t at = dict_find(d, key);
    return at >= 0 ? &d->vals[at] : NULL;
}

const jv *jdict_gets(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++) {
        const jv *k = &d->keys[i];
        if (k->kind == JV_STR && k->s->len == n && memcmp(k->s->data, key, n) == 0) return &d->vals[i];
    }
    return NULL;
}

bool jv_is_number(jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL; }

double jv_as_double(jv v) {
    return v.kind == JV_FLOAT ? v.f : v.kind == JV_INT ? (double)v.i : v.kind == JV_BOOL ? (double)v.b : 0.0;
}

static int64_t as_int(jv v) { return v.kind == JV_BOOL ? (int64_t)v.b : v.i; }

bool jv_truthy(jv v) {
    switch (v.kind) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.b;
    case JV_INT: return v.i != 0;
    case JV_FLOAT: return v.f != 0.0;
    case JV_STR: return v.s->len != 0;
    case JV_LIST: return v.l->n != 0;
    case JV_DICT: return v.d->n != 0;
    default: return true;
    }
}

static bool numbers_equal(jv a, jv b) {
    if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) return as_int(a) == as_int(b);
    return jv_as_double(a) == jv_as_double(b);
}

static bool dicts_equal(const jdict *a, const jdict *b) {
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
        const jv *v = jdict_get(b, a->keys[i]);
        if (!v || !jv_equal(a->vals[i], *v)) return false;
    }
    return true;
}

bool jv_equal(jv a, jv b) {
    if (jv_is_number(a) && jv_is_number(b)) return numbers_equal(a, b);
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.s->len == b.s->len && memcmp(a.s->data, b.s->data, a.s->len) == 0;
    case JV_LIST:
        if (a.l->n != b.l->n || a.l->tuple != b.l->tuple) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!jv_equal(a.l->items[i], b.l->items[i])) return false;
        return true;
    case JV_DICT: return a.d == b.d || dicts_equal(a.d, b.d);
    case JV_NS: return a.d == b.d;
    case JV_CALL: return a.c == b.c;
    default: return false;
    }
}

static int cmp_bytes(const jstr *a, const jstr *b) {
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->data, b->data, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

int jv_compare(jv a, jv b, bool *ok) {
    *ok = true;
    if (jv_is_number(a) && jv_is_number(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) return (as_int(a) > as_int(b)) - (as_int(a) < as_int(b));
        double x = jv_as_double(a), y = jv_as_double(b);
        return (x > y) - (x < y);
    }
    if (a.kind == JV_STR && b.kind == JV_STR) return cmp_bytes(a.s, b.s); // UTF-8 order = code point order
    if (a.kind == JV_LIST && b.kind == JV_LIST) {
        for (size_t i = 0; i < a.l->n && i < b.l->n; i++) {
            if (jv_equal(a.l->items[i], b.l->items[i])) continue;
            return jv_compare(a.l->items[i], b.l->items[i], ok);
        }
        return (a.l->n > b.l->n) - (a.l->n < b.l->n);
    }
    *ok = false;
    return 0;
}

const char *jv_type_name(jv v) {
    if (v.kind == JV_LIST && v.l->tuple) return "tuple";
    static const char *names[] = {"Undefined", "NoneType", "bool", "int",       "float",
                                  "str",       "list",     "dict", "Namespace", "function"};
    return names[v.kind];
}

size_t jv_str_codepoints(const jstr *s) { return utf8_count(s->data, s->len); }

// --- buffers ---

void jbuf_init(jbuf *b, jheap *h, size_t max) { *b = (jbuf){.h = h, .max = max, .ok = true}; }

static bool jbuf_reserve(jbuf *b, size_t extra) {
    if (!b->ok) return false;
    if (b->max && (extra > b->max || b->n > b->max - extra)) {
        b->ok = false;
        b->over_max = true;
        return false;
    }
    if (b->n + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra + 1)
        cap *= 2;
    char *p = jheap_alloc(b->h, cap);
    if (!p) return b->ok = false;
    if (b->n) memcpy(p, b->p, b->n);
    b->p = p;
    b->cap = cap;
    return true;
}

void jbuf_put(jbuf *b, const char *p, size_t n) {
    if (!jbuf_reserve(b, n)) return;
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jbuf_puts(jbuf *b, const char *s) { jbuf_put(b, s, strlen(s)); }

void jbuf_printf(jbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) jbuf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

const jstr *jbuf_str(jbuf *b) { return b->ok ? jstr_new(b->h, b->p ? b->p : "", b->n) : NULL; }

// --- str() and repr() ---

void jv_write_float(jbuf *b, double f) {
    if (isnan(f)) return jbuf_puts(b, "nan");
    if (isinf(f)) return jbuf_puts(b, f < 0 ? "-inf" : "inf");
    char s[40];
    int prec = 1;
    for (; prec < 17; prec++) { // the shortest digits that read back as f, as Python's repr
        snprintf(s, sizeof s, "%.*e", prec - 1, f);
        if (strtod(s, NULL) == f) break;
    }
    snprintf(s, sizeof s, "%.*e", prec - 1, f);
    char *e = strchr(s, 'e');
    int exp = atoi(e + 1);
    *e = 0;
    char digits[24];
    size_t nd = 0;
    for (const char *p = s; *p; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    if (f < 0 || (f == 0 && signbit(f))) jbuf_put(b, "-", 1);
    if (exp < -4 || exp >= 16) {
        jbuf_put(b, digits, 1);
        if (nd > 1) jbuf_put(b, ".", 1), jbuf_put(b, digits + 1, nd - 1);
        jbuf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        jbuf_put(b, "0.", 2);
        for (int i = -1; i > exp; i--)
            jbuf_put(b, "0", 1);
        jbuf_put(b, digits, nd);
    } else {
        for (int i = 0; i <= exp; i++)
            jbuf_put(b, i < (int)nd ? &digits[i] : "0", 1);
        jbuf_put(b, ".", 1);
        if ((int)nd > exp + 1)
            jbuf_put(b, digits + exp + 1, nd - (size_t)exp - 1);
        else
            jbuf_put(b, "0", 1);
    }
}

static void write_str_repr(jbuf *b, const jstr *s) {
    bool has_sq = memchr(s->data, '\'', s->len) != NULL, has_dq = memchr(s->data, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jbuf_put(b, &q, 1);
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        if (c == '\\' || c == (unsigned char)q)
            jbuf_put(b, "\\", 1), jbuf_put(b, (char *)&c, 1);
        else if (c == '\n')
            jbuf_puts(b, "\\n");
        else if (c == '\r')
            jbuf_puts(b, "\\r");
        else if (c == '\t')
            jbuf_puts(b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            jbuf_printf(b, "\\x%02x", c);
        else
            jbuf_put(b, (char *)&c, 1);
    }
    jbuf_put(b, &q, 1);
}

// Containers nest (a list may even hold itself through a namespace); past this depth the repr is
// cut to "[...]" as Python cuts a recursive one, so a hostile template can't exhaust the stack.
enum { REPR_MAX_DEPTH = 64 };

static void write_repr_at(jbuf *b, jv v, int depth);

static void write_container_repr(jbuf *b, jv v, int depth) {
    if (depth >= REPR_MAX_DEPTH) return jbuf_puts(b, v.kind == JV_LIST ? "[...]" : "{...}");
    if (v.kind == JV_LIST) {
        jbuf_put(b, v.l->tuple ? "(" : "[", 1);
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) jbuf_put(b, ", ", 2);
            write_repr_at(b, v.l->items[i], depth + 1);
        }
        if (v.l->tuple && v.l->n == 1) jbuf_put(b, ",", 1);
        jbuf_put(b, v.l->tuple ? ")" : "]", 1);
        return;
    }
    jbuf_puts(b, v.kind == JV_NS ? "<Namespace {" : "{");
    for (size_t i = 0; i < v.d->n; i++) {
        if (i) jbuf_put(b, ", ", 2);
        write_repr_at(b, v.d->keys[i], depth + 1);
        jbuf_put(b, ": ", 2);
        write_repr_at(b, v.d->vals[i], depth + 1);
    }
    jbuf_puts(b, v.kind == JV_NS ? "}>" : "}");
}

static void write_repr_at(jbuf *b, jv v, int depth) {
    if (v.kind == JV_STR) return write_str_repr(b, v.s);
    if (v.kind == JV_UNDEF) return jbuf_puts(b, "Undefined");
    if (v.kind == JV_LIST || v.kind == JV_DICT || v.kind == JV_NS) return write_container_repr(b, v, depth);
    jv_write_str(b, v);
}

void jv_write_repr(jbuf *b, jv v) { write_repr_at(b, v, 0); }

void jv_write_str(jbuf *b, jv v) {
    switch (v.kind) {
    case JV_UNDEF: return;
    case JV_NONE: return jbuf_puts(b, "None");
    case JV_BOOL: return jbuf_puts(b, v.b ? "True" : "False");
    case JV_INT: return jbuf_printf(b, "%lld", (long long)v.i);
    case JV_FLOAT: return jv_write_float(b, v.f);
    case JV_STR: return jbuf_put(b, v.s->data, v.s->len);
    case JV_LIST:
    case JV_DICT:
    case JV_NS: return write_container_repr(b, v, 0);
    case JV_CALL: return jbuf_puts(b, "<function>");
    }
}

// --- json.dumps ---

static void write_json_str(jbuf *b, const char *p, size_t n, bool ascii) {
    jbuf_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        const char *esc = c == '"'    ? "\\\""
                          : c == '\\' ? "\\\\"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t"
                          : c == '\b' ? "\\b"
                          : c == '\f' ? "\\f"
                                      : NULL;
        if (esc)
            jbuf_puts(b, esc), i++;
        else if (c < 0x20)
            jbuf_printf(b, "\\u%04x", c), i++;
        else if (c < 0x80 || !ascii)
            jbuf_put(b, (const char *)&c, 1), i++;
        else {
            uint32_t cp;
            i += utf8_decode(p + i, n - i, &cp);
            if (cp >= 0x10000)
                jbuf_printf(b, "\\u%04x\\u%04x", 0xd800 + ((cp - 0x10000) >> 10), 0xdc00 + (cp & 0x3ff));
            else
                jbuf_printf(b, "\\u%04x", cp);
        }
    }
    jbuf_put(b, "\"", 1);
}

static void json_newline(jbuf *b, const jjson_opts *o, int depth) {
    if (o->indent < 0) return;
    jbuf_put(b, "\n", 1);
    for (int i = 0; i < depth * o->indent; i++)
        jbuf_put(b, " ", 1);
}

static void json_item_sep(jbuf *b, const jjson_opts *o) {
    if (o->item_sep)
        jbuf_put(b, o->item_sep->data, o->item_sep->len);
    else
        jbuf_puts(b, o->indent < 0 ? ", " : ",");
}

static bool json_key(jbuf *b, jv k, const jjson_opts *o, jv *bad) {
    if (k.kind == JV_STR) return write_json_str(b, k.s->data, k.s->len, o->ensure_ascii), true;
    if (k.kind != JV_NONE && k.kind != JV_BOOL && k.kind != JV_INT && k.kind != JV_FLOAT) return *bad = k, false;
    jbuf_put(b, "\"", 1);
    if (k.kind == JV_NONE)
        jbuf_puts(b, "null");
    else if (k.kind == JV_BOOL)
        jbuf_puts(b, k.b ? "true" : "false");
    else
        jv_write_str(b, k);
    jbuf_put(b, "\"", 1);
    return true;
}

static bool json_value(jbuf *b, jv v, const jjson_opts *o, jv *bad, int depth);

static size_t *sorted_order(jbuf *b, const jdict *d, bool sort) {
    size_t *ord = jheap_alloc(b->h, (d->n ? d->n : 1) * sizeof(size_t));
    if (!ord) return NULL;
    for (size_t i = 0; i < d->n; i++)
        ord[i] = i;
    for (size_t i = 1; sort && i < d->n; i++) { // insertion sort: dicts are small
        size_t k = ord[i], j = i;
        bool ok;
        while (j > 0 && jv_compare(d->keys[ord[j - 1]], d->keys[k], &ok) > 0)
            ord[j] = ord[j - 1], j--;
        ord[j] = k;
    }
    return ord;
}

static bool json_dict(jbuf *b, const jdict *d, const jjson_opts *o, jv *bad, int depth) {
    if (d->n == 0) return jbuf_put(b, "{}", 2), true;
    size_t *ord = sorted_order(b, d, o->sort_keys);
    if (!ord) return b->ok = false, true;
    jbuf_put(b, "{", 1);
    for (size_t i = 0; i < d->n; i++) {
        if (i) json_item_sep(b, o);
        json_newline(b, o, depth + 1);
        if (!json_key(b, d->keys[ord[i]], o, bad)) return false;
        if (o->key_sep)
            jbuf_put(b, o->key_sep->data, o->key_sep->len);
        else
            jbuf_put(b, ": ", 2);
        if (!json_value(b, d->vals[ord[i]], o, bad, depth + 1)) return false;
    }
    json_newline(b, o, depth);
    jbuf_put(b, "}", 1);
    return true;
}

static bool json_list(jbuf *b, const jlist *l, const jjson_opts *o, jv *bad, int depth) {
    if (l->n == 0) return jbuf_put(b, "[]", 2), true;
    jbuf_put(b, "[", 1);
    for (size_t i = 0; i < l->n; i++) {
        if (i) json_item_sep(b, o);
        json_newline(b, o, depth + 1);
        if (!json_value(b, l->items[i], o, bad, depth + 1)) return false;
    }
    json_newline(b, o, depth);
    jbuf_put(b, "]", 1);
    return true;
}

static bool json_value(jbuf *b, jv v, const jjson_opts *o, jv *bad, int depth) {
    if (depth > 512 || !b->ok) return *bad = v, false;
    switch (v.kind) {
    case JV_NONE: return jbuf_puts(b, "null"), true;
    case JV_BOOL: return jbuf_puts(b, v.b ? "true" : "false"), true;
    case JV_INT: return jv_write_str(b, v), true;
    case JV_FLOAT:
        if (isnan(v.f))
            jbuf_puts(b, "NaN");
        else if (isinf(v.f))
            jbuf_puts(b, v.f < 0 ? "-Infinity" : "Infinity");
        else
            jv_write_float(b, v.f);
        return true;
    case JV_STR: return write_json_str(b, v.s->data, v.s->len, o->ensure_ascii), true;
    case JV_LIST: return json_list(b, v.l, o, bad, depth);
    case JV_DICT: return json_dict(b, v.d, o, bad, depth);
    default: return *bad = v, false;
    }
}

bool jv_write_json(jbuf *b, jv v, const jjson_opts *o, jv *bad) { return json_value(b, v, o, bad, 0); }

// --- from jansson ---

static bool from_json_depth(jheap *h, const json_t *j, jv *out, int depth) {
    if (depth > 512) return false;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jdict *d = jdict_new(h, json_object_size(j));
        if (!d) return false;
        const char *k;
        json_t *val;
        json_object_foreach((json_t *)j, k, val) {
            jv key, item;
            if (!jv_str(h, k, strlen(k), &key) || !from_json_depth(h, val, &item, depth + 1)) return false;
            d->keys[d->n] = key, d->vals[d->n++] = item; // jansson keys are unique
        }
        *out = (jv){.kind = JV_DICT, .d = d};
        return true;
    }
    case JSON_ARRAY: {
        jlist *l = jlist_new(h, json_array_size(j));
        if (!l) return false;
        for (size_t i = 0; i < json_array_size(j); i++)
            if (!from_json_depth(h, json_array_get(j, i), &l->items[l->n++], depth + 1)) return false;
        *out = (jv){.kind = JV_LIST, .l = l};
        return true;
    }
    case JSON_STRING: return jv_str(h, json_string_value(j), json_string_length(j), out);
    case JSON_INTEGER: *out = jv_int(json_integer_value(j)); return true;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return true;
    case JSON_TRUE: *out = jv_bool(true); return true;
    case JSON_FALSE: *out = jv_bool(false); return true;
    default: *out = jv_none(); return true;
    }
}

bool jv_from_json(jheap *h, const json_t *j, jv *out) { return from_json_depth(h, j, out, 0); }
