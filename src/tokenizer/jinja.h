// jinja.h: the internals shared by the chat-template interpreter's parts: tokens (jinja_lexer.c), the
// syntax tree (jinja_parser.c), the evaluation context (jinja_eval.c), and the tables of filters, tests,
// methods and globals (jinja_filters.c, jinja_builtins.c). Only chat_template.h is meant for callers.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rill.h"
#include "tokenizer/jinja_value.h"

// --- tokens ---
typedef enum {
    T_TEXT,        // template data between tags (already whitespace-controlled)
    T_VAR_BEGIN,   // {{
    T_VAR_END,     // }}
    T_BLOCK_BEGIN, // {%
    T_BLOCK_END,   // %}
    T_NAME,
    T_STRING, // .s holds the decoded literal
    T_INT,
    T_FLOAT,
    T_OP, // .p/.n hold the operator's bytes
    T_EOF,
} jtok_kind;

typedef struct jtok {
    jtok_kind kind;
    int line, col; // 1-based, in the template source
    const char *p; // T_NAME, T_OP, T_TEXT: bytes in the (normalized) source
    size_t n;
    const jstr *s; // T_STRING, T_TEXT
    int64_t i;     // T_INT
    double f;      // T_FLOAT
} jtok;

typedef struct jerr {
    int line, col;
    char msg[256];
} jerr;

// Splits a whole template into tokens (trim_blocks and lstrip_blocks on, as transformers sets them).
// false and *err set on a lexical error.
bool jinja_lex(jheap *h, const char *src, size_t len, jtok **toks, size_t *n_toks, jerr *err);

// --- syntax tree ---
typedef enum {
    N_LIT,    // .lit
    N_NAME,   // .name
    N_LIST,   // .args
    N_TUPLE,  // .args
    N_DICT,   // .args as key, value, key, value...
    N_ATTR,   // .a.name
    N_ITEM,   // .a[.b]
    N_SLICE,  // .a[.b:.c:.d], any of b, c, d may be NULL
    N_CALL,   // .a(args, kwargs)
    N_FILTER, // .a | name(args, kwargs); .a is NULL inside {% filter %}
    N_TEST,   // .a is [not] name(args)
    N_NEG,    // -.a
    N_POS,    // +.a
    N_NOT,    // not .a
    N_BIN,    // .a op .b for + - * / // % ** ~
    N_AND,
    N_OR,
    N_CMP,  // .args[0] ops[0] .args[1] ops[1] ...  (==, !=, <, <=, >, >=, in, not in)
    N_COND, // .b if .a else .c (.c may be NULL)
} jnode_kind;

typedef enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT } jbin_op;
typedef enum { CMP_EQ, CMP_NE, CMP_LT, CMP_LE, CMP_GT, CMP_GE, CMP_IN, CMP_NOT_IN } jcmp_op;

typedef struct jnode jnode;
struct jnode {
    jnode_kind kind;
    int line, col;
    int op;      // jbin_op for N_BIN; index into the filter/test table for N_FILTER/N_TEST
    bool negate; // N_TEST: "is not"
    jv lit;
    const jstr *name;
    jnode *a, *b, *c, *d;
    jnode **args; // [n_args]
    size_t n_args;
    int *ops;              // [n_args - 1], N_CMP only
    const jstr **kw_names; // [n_kw]
    jnode **kw_vals;       // [n_kw]
    size_t n_kw;
};

typedef enum {
    S_TEXT,      // .text
    S_OUTPUT,    // {{ .expr }}
    S_IF,        // .expr, .body, .else_body (an elif is an S_IF alone in else_body)
    S_FOR,       // for .target in .expr [if .cond]: .body [else .else_body]
    S_SET,       // set .target = .expr
    S_SET_BLOCK, // set .target: .body
    S_MACRO,     // macro .name(.params = .defaults): .body
    S_CALL,      // call[(.params)] .expr: .body as caller()
    S_FILTER,    // filter .expr (an N_FILTER chain over nothing): .body
    S_WITH,      // with .params = .defaults: .body
    S_BREAK,
    S_CONTINUE,
    S_BODY, // generation blocks and others that just render .body
} jstmt_kind;

typedef struct jstmt jstmt;
struct jstmt {
    jstmt_kind kind;
    int line, col;
    const jstr *text;
    jnode *expr, *target, *cond;
    jstmt **body; // [n_body]
    size_t n_body;
    jstmt **else_body; // [n_else]
    size_t n_else;
    const jstr *name;
    const jstr **params; // [n_params]
    jnode **defaults;    // [n_params], NULL where a parameter has no default
    size_t n_params;
};

// Parses tokens into statements; false and *err set on a syntax error.
bool jinja_parse(jheap *h, const jtok *toks, size_t n_toks, jstmt ***body, size_t *n_body, jerr *err);

// --- evaluation ---
typedef struct jscope jscope;
struct jscope {
    jscope *parent;
    jdict *vars;
};

typedef struct jloop {
    const jlist *items;
    size_t i; // index0 of the current item
} jloop;

typedef struct jlimits {
    size_t max_output;  // bytes of rendered text
    size_t max_memory;  // bytes of values live during one render
    uint64_t max_steps; // loop iterations, calls and filter applications, all together
    int max_depth;      // nested macro calls and expression depth
} jlimits;

typedef struct jctx {
    jheap *h;
    jbuf *out;
    jscope *globals; // the caller's context variables
    jscope *scope;   // the innermost scope of the statement being run
    jlimits lim;
    uint64_t steps;
    int depth;      // nested macro calls
    int expr_depth; // nested expression evaluations, across macro calls
    int loop_ctl;   // 1 after {% break %}, 2 after {% continue %}, until the loop sees it
    jerr err;
    bool failed;
    bool raised; // the failure came from raise_exception()
} jctx;

// A callable value: a macro, caller(), a global function or a bound method.
typedef enum { JC_MACRO, JC_GLOBAL, JC_METHOD, JC_LOOP } jcall_kind;
struct jcall {
    jcall_kind kind;
    const jstmt *macro;  // JC_MACRO: the {% macro %} or {% call %} statement
    jscope *closure;     // JC_MACRO: where it was defined
    const jcall *caller; // JC_MACRO: the caller() passed to it, or NULL
    int id;              // JC_GLOBAL: builtin index; JC_METHOD: method index
    jv self;             // JC_METHOD: the receiver; JC_LOOP: a JV_CALL wrapping the loop
    jloop *loop;         // JC_LOOP
};

// Evaluated call arguments.
typedef struct jargs {
    const jv *pos; // [n_pos]
    size_t n_pos;
    const jstr *const *kw_names; // [n_kw]
    const jv *kw_vals;           // [n_kw]
    size_t n_kw;
} jargs;

bool jinja_fail(jctx *c, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
bool jinja_oom(jctx *c, int line, int col);
bool jinja_step(jctx *c, int line, int col); // counts one step; false past the limit

// Binds `a` to the parameters `names` (positional first, then by keyword) into out[n], with
// JV_UNDEF (kind) for those not given; false when arguments are unknown or too many.
bool jinja_bind(jctx *c, const jnode *at, const jargs *a, const char *const *names, size_t n, jv *out);

bool jinja_render(jctx *c, jstmt *const *body, size_t n_body);
bool jinja_call_value(jctx *c, const jnode *at, jv fn, const jargs *a, jv *out);
bool jinja_getattr(jctx *c, const jnode *at, jv obj, const jstr *name, jv *out);
bool jinja_to_str(jctx *c, const jnode *at, jv v, jv *out); // str(v) as a JV_STR

// Filters and tests (jinja_filters.c): looked up by name at parse time, applied by index.
int jinja_filter_find(const char *name, size_t n); // -1 if unknown
int jinja_test_find(const char *name, size_t n);
bool jinja_filter_apply(jctx *c, const jnode *at, int id, jv v, const jargs *a, jv *out);
bool jinja_test_apply(jctx *c, const jnode *at, int id, jv v, const jargs *a, bool *out);

// Globals and methods (jinja_builtins.c).
bool jinja_global_lookup(const jstr *name, jv *out);
bool jinja_method_lookup(jctx *c, jv self, const jstr *name, jv *out); // false if none by that name
bool jinja_builtin_call(jctx *c, const jnode *at, const jcall *fn, const jargs *a, jv *out);

// String helpers shared by filters and methods (jinja_builtins.c).
bool jinja_str_strip(jctx *c, const jstr *s, jv chars, bool left, bool right, jv *out);
bool jinja_str_case(jctx *c, const jstr *s, int mode, jv *out); // 0 lower, 1 upper, 2 capitalize, 3 title
bool jinja_str_replace(jctx *c, const jnode *at, const jstr *s, jv old, jv new_, jv count, jv *out);
