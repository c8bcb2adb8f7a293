// jinja_value.h: the values a chat template computes with (Python's None, bool, int, float, str, list,
// dict, plus jinja2's Undefined, namespaces, macros and bound methods), and the Python semantics the
// templates rely on: truthiness, str(), repr(), ==, ordering, and json.dumps as transformers calls it.
// Every value lives in the render's arena, so nothing is freed one by one and an error path never leaks.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/arena.h"

typedef enum {
    JV_UNDEF, // jinja2's default Undefined: falsey, renders as "", fails on arithmetic and attributes
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST, // lists and tuples (jlist.tuple); the sandbox makes both immutable
    JV_DICT,
    JV_NS,   // namespace(): a dict whose attributes `set ns.x = ...` may change
    JV_CALL, // a callable: global function, macro, bound method or caller()
} jv_kind;

typedef struct jstr {
    size_t len;  // bytes, UTF-8
    char data[]; // [len + 1], NUL-terminated for convenience
} jstr;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jcall jcall;

typedef struct jv {
    jv_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        const jstr *s;
        jlist *l;
        jdict *d; // JV_DICT and JV_NS
        const jcall *c;
    };
} jv;

struct jlist {
    size_t n, cap;
    jv *items;  // [cap], first n used
    bool tuple; // a tuple: shown as (a, b) and never equal to a list
};

struct jdict {
    size_t n, cap;
    jv *keys; // [cap], insertion order; keys are strings in practice
    jv *vals; // [cap]
};

// A memory-bounded arena for one render (or one compile).
typedef struct jheap {
    arena a;
    size_t limit; // bytes; allocation fails past it
} jheap;

void *jheap_alloc(jheap *h, size_t n); // NULL when past the limit (no message set)

static inline jv jv_undef(void) { return (jv){.kind = JV_UNDEF}; }
static inline jv jv_none(void) { return (jv){.kind = JV_NONE}; }
static inline jv jv_bool(bool b) { return (jv){.kind = JV_BOOL, .b = b}; }
static inline jv jv_int(int64_t i) { return (jv){.kind = JV_INT, .i = i}; }
static inline jv jv_float(double f) { return (jv){.kind = JV_FLOAT, .f = f}; }
static inline jv jv_strv(const jstr *s) { return (jv){.kind = JV_STR, .s = s}; }

// Constructors; each returns false when the heap is exhausted.
const jstr *jstr_new(jheap *h, const char *p, size_t n);
bool jv_str(jheap *h, const char *p, size_t n, jv *out);
jlist *jlist_new(jheap *h, size_t cap);
bool jlist_push(jheap *h, jlist *l, jv v);
jdict *jdict_new(jheap *h, size_t cap);
bool jdict_set(jheap *h, jdict *d, jv key, jv val); // replaces an equal key in place
const jv *jdict_get(const jdict *d, jv key);        // NULL when absent
const jv *jdict_gets(const jdict *d, const char *key, size_t n);

// Python semantics.
bool jv_truthy(jv v);
bool jv_equal(jv a, jv b);
int jv_compare(jv a, jv b, bool *ok); // <0, 0, >0; *ok=false when the kinds cannot be ordered
const char *jv_type_name(jv v);       // "str", "int", "dict object"-style names for messages
size_t jv_str_codepoints(const jstr *s);
bool jv_is_number(jv v);
double jv_as_double(jv v);

// A growable byte buffer inside the heap; `ok` turns false once the heap is exhausted or `cap_limit`
// would be passed.
typedef struct jbuf {
    jheap *h;
    char *p; // [cap]
    size_t n, cap;
    size_t max; // bytes; 0 = no limit besides the heap
    bool ok, over_max;
} jbuf;

void jbuf_init(jbuf *b, jheap *h, size_t max);
void jbuf_put(jbuf *b, const char *p, size_t n);
void jbuf_puts(jbuf *b, const char *s);
void jbuf_printf(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const jstr *jbuf_str(jbuf *b); // the contents as a fresh jstr (NULL on failure)

// str(v) appended to b (Undefined -> "", None -> "None", lists as Python repr).
void jv_write_str(jbuf *b, jv v);
void jv_write_repr(jbuf *b, jv v);
void jv_write_float(jbuf *b, double f); // Python's repr(float)

typedef struct jjson_opts {
    int indent; // < 0: none (compact separators ", " and ": " unless item_sep/key_sep say otherwise)
    const jstr *item_sep, *key_sep; // NULL: Python's defaults for the indent
    bool sort_keys, ensure_ascii;
} jjson_opts;
// json.dumps(v, ...) appended to b; false (and *bad set) when v holds something JSON cannot show.
bool jv_write_json(jbuf *b, jv v, const jjson_opts *o, jv *bad);

// jansson <-> values. from_json copies into the heap; false when it is exhausted.
bool jv_from_json(jheap *h, const json_t *j, jv *out);
