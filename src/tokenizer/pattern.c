// pattern.c: the patterns of Split, Replace and friends: a literal string or a regex compiled by
// PCRE2 (UTF, UCP, JIT). HF writes its regexes for Oniguruma; the few constructs whose meaning
// differs in PCRE2 (`\s`, `\S`) are rewritten before compiling.
#include <string.h>

#include "base/alloc.h"
#include "tokenizer/pipeline.h"

// Unicode White_Space, the meaning of `\s` in Oniguruma (PCRE2 adds U+180E and leaves out none).
static const char WS_CLASS[] = "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
                               "\\x{205f}\\x{3000}";

rill_status pattern_literal(tok_pattern *p, const char *s, size_t n) {
    *p = (tok_pattern){0};
    p->lit = rill_malloc(n + 1);
    if (!p->lit) return RILL_ENOMEM;
    memcpy(p->lit, s, n);
    p->lit[n] = '\0';
    p->lit_len = n;
    return RILL_OK;
}

// Rewrites `\s` / `\S` (outside and inside character classes) into explicit White_Space sets.
static rill_status translate(const char *re, size_t n, tok_buf *out) {
    int depth = 0; // inside [...] (nested POSIX classes count too)
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char e = re[i + 1];
            i++;
            if (e == 's' || e == 'S') {
                rill_status st;
                if (depth) // in a class: \s adds the set; \S is kept as PCRE2 has it (rare)
                    st = e == 's' ? tokbuf_put(out, WS_CLASS, sizeof WS_CLASS - 1) : tokbuf_put(out, "\\S", 2);
                else {
                    st = tokbuf_put(out, e == 's' ? "[" : "[^", e == 's' ? 1 : 2);
                    st = st ? st : tokbuf_put(out, WS_CLASS, sizeof WS_CLASS - 1);
                    st = st ? st : tokbuf_putc(out, ']');
                }
                if (st) return st;
                continue;
            }
            if (tokbuf_putc(out, '\\') || tokbuf_putc(out, e)) return RILL_ENOMEM;
            continue;
        }
        if (c == '[') {
            if (depth && i + 1 < n && re[i + 1] == ':') { // [:alpha:] inside a class
                const char *end = memchr(re + i + 2, ']', n - i - 2);
                size_t len = end ? (size_t)(end - (re + i)) + 1 : 1;
                if (tokbuf_put(out, re + i, len)) return RILL_ENOMEM;
                i += len - 1;
                continue;
            }
            if (tokbuf_putc(out, c)) return RILL_ENOMEM;
            if (!depth) { // a leading ^ and a leading ] are literal parts of the class
                if (i + 1 < n && re[i + 1] == '^') {
                    if (tokbuf_putc(out, '^')) return RILL_ENOMEM;
                    i++;
                }
                if (i + 1 < n && re[i + 1] == ']') {
                    if (tokbuf_put(out, "\\]", 2)) return RILL_ENOMEM;
                    i++;
                }
            }
            depth++;
            continue;
        }
        if (c == ']' && depth) depth--;
        if (tokbuf_putc(out, c)) return RILL_ENOMEM;
    }
    return RILL_OK;
}

rill_status pattern_regex(tok_pattern *p, const char *re, size_t n) {
    *p = (tok_pattern){0};
    p->is_regex = true;
    tok_buf t = {0};
    if (translate(re, n, &t) || tokbuf_reserve(&t, 0)) return tokbuf_free(&t), RILL_ENOMEM;
    int err;
    PCRE2_SIZE at;
    p->re = pcre2_compile((PCRE2_SPTR)t.p, t.n, PCRE2_UTF | PCRE2_UCP, &err, &at, NULL);
    tokbuf_free(&t);
    if (!p->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return rill_fail(RILL_EFORMAT, "regex \"%.*s\": %s (near offset %zu)", (int)(n > 200 ? 200 : n), re,
                         (const char *)msg, (size_t)at);
    }
    pcre2_jit_compile(p->re, PCRE2_JIT_COMPLETE); // falls back to the interpreter when unavailable
    p->md = pcre2_match_data_create_from_pattern(p->re, NULL);
    if (!p->md) return pattern_free(p), rill_fail(RILL_ENOMEM, "regex: out of memory");
    return RILL_OK;
}

bool pattern_next(const tok_pattern *p, const char *s, size_t n, size_t *from, size_t *ms, size_t *me) {
    while (*from <= n) {
        if (!p->is_regex) {
            if (p->lit_len == 0 || *from >= n) return false;
            const char *hit = memmem(s + *from, n - *from, p->lit, p->lit_len);
            if (!hit) return false;
            *ms = (size_t)(hit - s), *me = *ms + p->lit_len;
            *from = *me;
            return true;
        }
        int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, *from, PCRE2_NO_UTF_CHECK, p->md, NULL);
        if (rc < 0) return false;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
        *ms = ov[0], *me = ov[1];
        if (*me > *ms) {
            *from = *me;
        } else { // an empty match: step over one character so that iteration ends
            *from = *me < n ? *me + (size_t)tok_utf8_len((uint8_t)s[*me]) : n + 1;
        }
        return true;
    }
    return false;
}

void pattern_free(tok_pattern *p) {
    rill_free(p->lit);
    if (p->md) pcre2_match_data_free(p->md);
    if (p->re) pcre2_code_free(p->re);
    *p = (tok_pattern){0};
}
