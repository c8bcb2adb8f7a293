// jinja_lexer.c: turns a chat template's source into tokens the way jinja2's lexer does under
// transformers' settings: newlines normalized and one trailing newline dropped, {%- -%} {{- -}} {#- -#}
// whitespace control, trim_blocks and lstrip_blocks on, {% raw %} blocks, and tags that end only
// outside brackets and strings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/jinja.h"
#include "tokenizer/jinja_utf8.h"

typedef struct lexer {
    jheap *h;
    const char *src; // normalized source
    size_t len, pos;
    int line, col;
    jtok *toks; // [cap]
    size_t n, cap;
    jerr *err;
    bool line_starting;        // the last thing consumed ended with a newline (lstrip_blocks may apply)
    bool strip_next;           // the last tag ended with '-': strip the whitespace that follows
    int close_line, close_col; // where the last tag's closing delimiter began
} lexer;

static bool lex_fail(lexer *L, int line, int col, const char *msg, const char *detail) {
    L->err->line = line, L->err->col = col;
    snprintf(L->err->msg, sizeof L->err->msg, "%s%s", msg, detail ? detail : "");
    return false;
}

static void advance(lexer *L, size_t n) {
    for (size_t i = 0; i < n && L->pos < L->len; i++) {
        unsigned char c = (unsigned char)L->src[L->pos++];
        if (c == '\n')
            L->line++, L->col = 1;
        else if ((c & 0xc0) != 0x80)
            L->col++;
    }
}

static jtok *push(lexer *L, jtok_kind kind) {
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 256;
        jtok *t = jheap_alloc(L->h, cap * sizeof(jtok));
        if (!t) return NULL;
        if (L->n) memcpy(t, L->toks, L->n * sizeof(jtok));
        L->toks = t, L->cap = cap;
    }
    jtok *t = &L->toks[L->n++];
    *t = (jtok){.kind = kind, .line = L->line, .col = L->col, .p = L->src + L->pos};
    return t;
}

static bool at(const lexer *L, const char *s) {
    size_t n = strlen(s);
    return L->len - L->pos >= n && memcmp(L->src + L->pos, s, n) == 0;
}

static size_t skip_space(const char *p, size_t n) {
    size_t i = 0, k;
    while (i < n && (k = utf8_space_len(p + i, n - i)))
        i += k;
    return i;
}

// Emits the text src[from, to), applying '-' on the following tag and lstrip_blocks.
static bool emit_text(lexer *L, size_t from, size_t to, int line, int col, char sign, bool block_like) {
    const char *p = L->src + from;
    size_t n = to - from;
    if (L->strip_next) {
        size_t k = skip_space(p, n);
        p += k, n -= k;
    }
    if (sign == '-') {
        size_t k;
        while (n && (k = utf8_space_len_back(p, n)))
            n -= k;
    } else if (sign != '+' && block_like) {
        size_t l = n;
        while (l && p[l - 1] != '\n')
            l--;
        bool only_ws = true;
        for (size_t i = l; i < n; i++)
            only_ws &= p[i] == ' ' || p[i] == '\t' || p[i] == '\v' || p[i] == '\f' || p[i] == '\r';
        if (only_ws && (l > 0 || L->line_starting)) n = l;
    }
    L->strip_next = false;
    if (to > from) L->line_starting = L->src[to - 1] == '\n';
    if (n == 0) return true;
    jtok *t = push(L, T_TEXT);
    if (!t) return false;
    t->line = line, t->col = col, t->p = p, t->n = n;
    t->s = jstr_new(L->h, p, n);
    return t->s != NULL;
}

// After a tag's closing delimiter: '-' strips what follows, else trim_blocks eats one newline.
static void after_tag_end(lexer *L, char sign, bool block_like) {
    if (sign == '-')
        L->strip_next = true;
    else if (sign != '+' && block_like && at(L, "\n"))
        advance(L, 1);
    L->line_starting = L->pos > 0 && L->src[L->pos - 1] == '\n';
}

static int hexval(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static void put_utf8(jbuf *b, uint32_t cp) {
    char u[4];
    size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n == 1)
        u[0] = (char)cp;
    else if (n == 2)
        u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f));
    else if (n == 3)
        u[0] = (char)(0xe0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[2] = (char)(0x80 | (cp & 0x3f));
    else
        u[0] = (char)(0xf0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3f)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), u[3] = (char)(0x80 | (cp & 0x3f));
    jbuf_put(b, u, n);
}

// One escape after a backslash at p[0..n) (Python's unicode-escape); returns bytes consumed.
static size_t decode_escape(jbuf *b, const char *p, size_t n) {
    static const char simple[] = "\\\\''\"\"a\ab\bf\fn\nr\rt\tv\v";
    for (size_t i = 0; simple[i]; i += 2)
        if (p[0] == simple[i]) return jbuf_put(b, &simple[i + 1], 1), 1;
    if (p[0] == '\n') return 1; // a backslash-newline continues the line
    size_t digits = p[0] == 'x' ? 2 : p[0] == 'u' ? 4 : p[0] == 'U' ? 8 : 0;
    if (digits && n > digits) {
        uint32_t cp = 0;
        size_t i = 1;
        for (; i <= digits && hexval(p[i]) >= 0; i++)
            cp = cp * 16 + (uint32_t)hexval(p[i]);
        if (i > digits && cp <= 0x10ffff) return put_utf8(b, cp), digits + 1;
    }
    if (p[0] >= '0' && p[0] <= '7') {
        uint32_t cp = 0;
        size_t i = 0;
        for (; i < 3 && i < n && p[i] >= '0' && p[i] <= '7'; i++)
            cp = cp * 8 + (uint32_t)(p[i] - '0');
        return put_utf8(b, cp), i;
    }
    jbuf_put(b, "\\", 1); // unknown escapes stay as written
    return 0;
}

static bool lex_string(lexer *L, jtok *t) {
    char q = L->src[L->pos];
    size_t i = L->pos + 1;
    jbuf b;
    jbuf_init(&b, L->h, 0);
    while (i < L->len && L->src[i] != q) {
        if (L->src[i] == '\\' && i + 1 < L->len) {
            i++;
            i += decode_escape(&b, L->src + i, L->len - i);
            continue;
        }
        jbuf_put(&b, &L->src[i++], 1);
    }
    if (i >= L->len) return lex_fail(L, t->line, t->col, "unterminated string", NULL);
    t->s = jbuf_str(&b);
    if (!t->s) return lex_fail(L, t->line, t->col, "out of memory", NULL);
    advance(L, i + 1 - L->pos);
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

static bool lex_number(lexer *L, jtok *t) {
    size_t i = L->pos;
    char digits[64];
    size_t nd = 0;
    bool is_float = false;
    for (; i < L->len; i++) {
        char c = L->src[i];
        if (c == '_' && i + 1 < L->len && is_digit(L->src[i + 1]) && i > L->pos) continue;
        bool exp_sign = (c == '+' || c == '-') && nd && (digits[nd - 1] == 'e' || digits[nd - 1] == 'E');
        bool dot = c == '.' && !is_float && i + 1 < L->len && is_digit(L->src[i + 1]);
        bool exp = (c == 'e' || c == 'E') && i + 1 < L->len &&
                   (is_digit(L->src[i + 1]) || L->src[i + 1] == '+' || L->src[i + 1] == '-');
        if (!is_digit(c) && !exp_sign && !dot && !exp) break;
        if (dot || exp) is_float = true;
        if (nd + 1 >= sizeof digits) return lex_fail(L, t->line, t->col, "number literal too long", NULL);
        digits[nd++] = c;
    }
    digits[nd] = 0;
    if (is_float) {
        t->kind = T_FLOAT;
        t->f = strtod(digits, NULL);
    } else {
        char *end;
        unsigned long long v = strtoull(digits, &end, 10);
        if (v > INT64_MAX || nd > 19) return lex_fail(L, t->line, t->col, "integer literal too large", NULL);
        t->kind = T_INT;
        t->i = (int64_t)v;
    }
    advance(L, i - L->pos);
    return true;
}

static const char *const OPS[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                  ">",  "=",  "(",  ")",  "[",  "]",  "{", "}", ",", ".", ":", "|", NULL};

static bool lex_op(lexer *L, jtok *t, int *balance) {
    for (int k = 0; OPS[k]; k++) {
        if (!at(L, OPS[k])) continue;
        t->kind = T_OP;
        t->n = strlen(OPS[k]);
        char c = OPS[k][0];
        if (t->n == 1 && (c == '(' || c == '[' || c == '{')) ++*balance;
        if (t->n == 1 && (c == ')' || c == ']' || c == '}') && *balance > 0) --*balance;
        advance(L, t->n);
        return true;
    }
    char shown[8] = {0};
    memcpy(shown, L->src + L->pos, utf8_decode(L->src + L->pos, L->len - L->pos, &(uint32_t){0}));
    return lex_fail(L, L->line, L->col, "unexpected character ", shown[0] ? shown : "?");
}

// Tokens inside {{ }} or {% %} up to the closing delimiter `close` ("}}" or "%}").
static bool lex_tag(lexer *L, const char *close, char *sign, int open_line, int open_col) {
    int balance = 0;
    for (;;) {
        size_t ws = skip_space(L->src + L->pos, L->len - L->pos);
        advance(L, ws);
        if (L->pos >= L->len) return lex_fail(L, open_line, open_col, "tag is never closed, expected ", close);
        if (balance == 0) {
            char c = L->src[L->pos];
            L->close_line = L->line, L->close_col = L->col;
            if ((c == '-' || c == '+') && L->len - L->pos > 2 && memcmp(L->src + L->pos + 1, close, 2) == 0) {
                *sign = c;
                return advance(L, 3), true;
            }
            if (at(L, close)) return *sign = 0, advance(L, 2), true;
        }
        jtok *t = push(L, T_OP);
        if (!t) return lex_fail(L, L->line, L->col, "out of memory", NULL);
        char c = L->src[L->pos];
        if (c == '\'' || c == '"') {
            t->kind = T_STRING;
            if (!lex_string(L, t)) return false;
        } else if (is_digit(c)) {
            if (!lex_number(L, t)) return false;
        } else if (is_name_start(c)) {
            size_t i = L->pos;
            while (i < L->len && (is_name_start(L->src[i]) || is_digit(L->src[i])))
                i++;
            t->kind = T_NAME, t->n = i - L->pos;
            advance(L, t->n);
        } else if (!lex_op(L, t, &balance)) {
            return false;
        }
    }
}

// {% raw %}...{% endraw %}: the text in between is data. On entry pos is just past the raw tag.
static bool lex_raw(lexer *L, int line, int col) {
    size_t from = L->pos;
    int tl = L->line, tc = L->col;
    for (size_t i = L->pos; i + 1 < L->len; i++) {
        if (L->src[i] != '{' || L->src[i + 1] != '%') continue;
        size_t j = i + 2;
        char sign = 0;
        if (j < L->len && (L->src[j] == '-' || L->src[j] == '+')) sign = L->src[j++];
        j += skip_space(L->src + j, L->len - j);
        if (L->len - j < 6 || memcmp(L->src + j, "endraw", 6) != 0) continue;
        j += 6;
        j += skip_space(L->src + j, L->len - j);
        char esign = 0;
        if (j < L->len && (L->src[j] == '-' || L->src[j] == '+')) esign = L->src[j++];
        if (L->len - j < 2 || memcmp(L->src + j, "%}", 2) != 0) continue;
        if (!emit_text(L, from, i, tl, tc, sign, true)) return lex_fail(L, line, col, "out of memory", NULL);
        advance(L, j + 2 - L->pos);
        after_tag_end(L, esign, true);
        return true;
    }
    return lex_fail(L, line, col, "missing end of raw directive", NULL);
}

static bool is_raw_tag(const lexer *L, size_t first_tok) {
    return L->n == first_tok + 3 && L->toks[first_tok + 1].kind == T_NAME && L->toks[first_tok + 1].n == 3 &&
           memcmp(L->toks[first_tok + 1].p, "raw", 3) == 0;
}

// One tag starting at pos ("{{", "{%" or "{#"), after the text before it [text_from, pos).
static bool lex_one_tag(lexer *L, size_t text_from, int tl, int tc) {
    char kind = L->src[L->pos + 1];
    char sign = L->pos + 2 < L->len ? L->src[L->pos + 2] : 0;
    if (sign != '-' && sign != '+') sign = 0;
    if (!emit_text(L, text_from, L->pos, tl, tc, sign, kind != '{'))
        return lex_fail(L, L->line, L->col, "out of memory", NULL);
    int line = L->line, col = L->col;
    if (kind == '#') {
        const char *end = NULL;
        for (size_t i = L->pos + 2; i + 1 < L->len && !end; i++)
            if (L->src[i] == '#' && L->src[i + 1] == '}') end = L->src + i;
        if (!end) return lex_fail(L, line, col, "missing end of comment tag", NULL);
        char esign = end[-1] == '-' || end[-1] == '+' ? end[-1] : 0;
        if (end - (L->src + L->pos) < 3 + (sign != 0)) esign = 0; // "{#-#}": the '-' opens, not closes
        advance(L, (size_t)(end + 2 - (L->src + L->pos)));
        return after_tag_end(L, esign, true), true;
    }
    jtok *open = push(L, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN);
    if (!open) return lex_fail(L, line, col, "out of memory", NULL);
    size_t first = L->n - 1;
    advance(L, sign ? 3 : 2);
    char esign = 0;
    if (!lex_tag(L, kind == '{' ? "}}" : "%}", &esign, line, col)) return false;
    jtok *close = push(L, kind == '{' ? T_VAR_END : T_BLOCK_END);
    if (!close) return lex_fail(L, line, col, "out of memory", NULL);
    close->line = L->close_line, close->col = L->close_col;
    after_tag_end(L, esign, kind == '%');
    if (kind == '%' && is_raw_tag(L, first)) {
        L->n = first; // raw tags leave no tokens, only their text
        return lex_raw(L, line, col);
    }
    return true;
}

// Newlines normalized to "\n" and one trailing newline dropped (keep_trailing_newline=False).
static char *normalize(jheap *h, const char *src, size_t len, size_t *out_len) {
    char *s = jheap_alloc(h, len + 1);
    if (!s) return NULL;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n && s[n - 1] == '\n') n--;
    s[n] = 0;
    *out_len = n;
    return s;
}

bool jinja_lex(jheap *h, const char *src, size_t len, jtok **toks, size_t *n_toks, jerr *err) {
    lexer L = {.h = h, .line = 1, .col = 1, .err = err, .line_starting = true};
    L.src = normalize(h, src, len, &L.len);
    if (!L.src) return lex_fail(&L, 1, 1, "out of memory", NULL);
    size_t text_from = 0;
    int tl = 1, tc = 1;
    while (L.pos < L.len) {
        const char *p = L.src + L.pos;
        if (p[0] == '{' && L.pos + 1 < L.len && (p[1] == '{' || p[1] == '%' || p[1] == '#')) {
            if (!lex_one_tag(&L, text_from, tl, tc)) return false;
            text_from = L.pos, tl = L.line, tc = L.col;
            continue;
        }
        advance(&L, 1);
    }
    if (!emit_text(&L, text_from, L.len, tl, tc, 0, false) || !push(&L, T_EOF))
        return lex_fail(&L, L.line, L.col, "out of memory", NULL);
    *toks = L.toks;
    *n_toks = L.n;
    return true;
}
