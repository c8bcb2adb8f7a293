// test_chat_template.c: the Jinja chat-template interpreter against transformers + jinja2 fixtures
// (tests/ref/make_chat_template_fixtures.py): every real template x conversation renders character for
// character the same, every one-feature snippet too; bad templates fail with line and column; limits
// stop hostile templates; and >= 100,000 mutated templates compile-or-fail and render-or-fail safely.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "base/alloc.h"
#include "tokenizer/chat_template.h"
#include "testlib.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    fclose(f);
    s[got] = 0;
    *len = got;
    return s;
}

static json_t *load_json(const char *rel) {
    json_error_t e;
    json_t *j = json_load_file(test_data_path(rel), 0, &e);
    if (!j) fail_msg("%s: line %d: %s", rel, e.line, e.text);
    return j;
}

static chat_template *compile_file(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "chat_templates/%s.jinja", name);
    size_t len = 0;
    char *src = slurp(test_data_path(rel), &len);
    if (!src) fail_msg("cannot read %s", rel);
    chat_template *t = NULL;
    rill_status st = chat_template_compile(src, len, &t);
    free(src);
    if (st != RILL_OK) fail_msg("%s: %s", rel, rill_last_error());
    return t;
}

static chat_template *compile_str(const char *src) {
    chat_template *t = NULL;
    if (chat_template_compile(src, strlen(src), &t) != RILL_OK) fail_msg("compile %s: %s", src, rill_last_error());
    return t;
}

// The expected error of a fixture is "<ExceptionType>: <message>"; raise_exception's message must reach ours.
static void check_failure(const char *what, const char *expected_error) {
    const char *msg = rill_last_error();
    assert_true(strncmp(msg, "chat template: line ", 20) == 0);
    if (strncmp(expected_error, "TemplateError: ", 15) == 0 && !strstr(msg, expected_error + 15))
        fail_msg("%s: expected an error containing '%s', got '%s'", what, expected_error + 15, msg);
}

static json_t *case_vars(json_t *meta, json_t *c) {
    json_t *vars = json_object();
    if (json_object_get(meta, "vars")) json_object_update(vars, json_object_get(meta, "vars"));
    if (json_object_get(c, "vars")) json_object_update(vars, json_object_get(c, "vars"));
    return vars;
}

static void test_real_templates_render_like_transformers(void **state) {
    json_t *cases = load_json("chat_templates/cases.json"), *expected = load_json("chat_templates/expected.json");
    const char *name;
    json_t *meta;
    int n_checked = 0;
    json_object_foreach(json_object_get(cases, "templates"), name, meta) {
        chat_template *t = compile_file(name);
        json_t *c;
        size_t i;
        json_array_foreach(json_object_get(cases, "cases"), i, c) {
            const char *case_name = json_string_value(json_object_get(c, "name"));
            json_t *want = json_object_get(json_object_get(expected, name), case_name);
            json_t *vars = case_vars(meta, c);
            char *out = (char *)0x1;
            size_t len = 0;
            rill_status st =
                chat_template_apply(t, json_object_get(c, "messages"), json_object_get(c, "tools"),
                                    json_is_true(json_object_get(c, "add_generation_prompt")),
                                    json_string_value(json_object_get(meta, "bos_token")),
                                    json_string_value(json_object_get(meta, "eos_token")), vars, &out, &len);
            json_decref(vars);
            char what[256];
            snprintf(what, sizeof what, "%s x %s", name, case_name);
            const char *want_out = json_string_value(json_object_get(want, "output"));
            if (want_out) {
                if (st != RILL_OK) fail_msg("%s: %s", what, rill_last_error());
                if (len != strlen(want_out) || memcmp(out, want_out, len) != 0)
                    fail_msg("%s:\n--- want\n%s\n--- got\n%s", what, want_out, out);
                rill_free(out);
            } else {
                if (st == RILL_OK)
                    fail_msg("%s: rendered, but jinja2 raised %s", what,
                             json_string_value(json_object_get(want, "error")));
                assert_null(out);
                check_failure(what, json_string_value(json_object_get(want, "error")));
            }
            n_checked++;
        }
        chat_template_free(t);
    }
    assert_true(n_checked >= 9 * 10);
    json_decref(cases);
    json_decref(expected);
}

static void test_snippets_render_like_jinja2(void **state) {
    json_t *doc = load_json("chat_templates/snippets.json");
    json_t *ctx = json_object_get(doc, "context"), *sn;
    size_t i;
    json_array_foreach(json_object_get(doc, "snippets"), i, sn) {
        const char *src = json_string_value(json_object_get(sn, "template"));
        const char *want = json_string_value(json_object_get(sn, "output"));
        chat_template *t = compile_str(src);
        char *out = NULL;
        size_t len = 0;
        rill_status st = chat_template_render(t, ctx, &out, &len);
        if (want) {
            if (st != RILL_OK) fail_msg("snippet %zu %s: %s", i, src, rill_last_error());
            if (len != strlen(want) || memcmp(out, want, len) != 0)
                fail_msg("snippet %zu %s:\n--- want\n%s\n--- got\n%s", i, src, want, out);
        } else if (st == RILL_OK) {
            fail_msg("snippet %zu rendered, but jinja2 raised: %s", i, src);
        }
        rill_free(out);
        chat_template_free(t);
    }
    json_decref(doc);
}

static void expect_compile_error(const char *src, const char *want) {
    chat_template *t = (chat_template *)0x1;
    assert_int_equal(chat_template_compile(src, strlen(src), &t), RILL_EFORMAT);
    assert_null(t);
    if (strcmp(rill_last_error(), want) != 0)
        fail_msg("template %s:\n want '%s'\n got  '%s'", src, want, rill_last_error());
}

static void test_bad_templates_fail_with_line_and_column(void **state) {
    expect_compile_error("a\n\n{{ x | foo }}", "chat template: line 3, column 8: unknown filter 'foo'");
    expect_compile_error("{% if x is bogus %}{% endif %}", "chat template: line 1, column 12: unknown test 'bogus'");
    expect_compile_error("{% if x %}\nyes",
                         "chat template: line 2, column 4: unexpected end of template, expected 'elif'");
    expect_compile_error("{{ 'abc }}", "chat template: line 1, column 4: unterminated string");
    expect_compile_error("x\n  {{ a + }}", "chat template: line 2, column 10: unexpected end of print statement");
    expect_compile_error("{% frobnicate %}", "chat template: line 1, column 4: unknown statement 'frobnicate'");
    expect_compile_error("{% for x in %}{% endfor %}",
                         "chat template: line 1, column 13: unexpected end of statement block");
    expect_compile_error("{{ x ", "chat template: line 1, column 1: tag is never closed, expected }}");
    expect_compile_error("{# never closed", "chat template: line 1, column 1: missing end of comment tag");
    expect_compile_error("{{ a $ b }}", "chat template: line 1, column 6: unexpected character $");
    expect_compile_error("{% set %}", "chat template: line 1, column 8: expected a name to assign to");
    expect_compile_error("{{ f(a=1, 2) }}",
                         "chat template: line 1, column 11: positional argument follows keyword argument");
}

static void expect_render_error(const char *src, const char *want) {
    chat_template *t = compile_str(src);
    char *out = (char *)0x1;
    json_t *ctx = json_pack("{s:[{s:s}], s:i}", "messages", "role", "user", "n", 3);
    assert_int_equal(chat_template_render(t, ctx, &out, NULL), RILL_EFORMAT);
    assert_null(out);
    if (strcmp(rill_last_error(), want) != 0)
        fail_msg("template %s:\n want '%s'\n got  '%s'", src, want, rill_last_error());
    json_decref(ctx);
    chat_template_free(t);
}

static void test_render_errors_name_line_and_column(void **state) {
    expect_render_error("line\n{{ raise_exception('Roles must alternate') }}",
                        "chat template: line 2, column 4: Roles must alternate");
    expect_render_error("{{ messages[0].content + 'x' }}",
                        "chat template: line 1, column 24: undefined value in arithmetic (Undefined and str)");
    expect_render_error("{{ nope.attr }}",
                        "chat template: line 1, column 8: 'nope' is undefined (reading attribute 'attr')");
    expect_render_error("{{ n / 0 }}", "chat template: line 1, column 6: division by zero");
    expect_render_error("{{ 1 if false }}{{ n.x.y }}",
                        "chat template: line 1, column 23: 'x' is undefined (reading attribute 'y')");
    expect_render_error("{% set x = [] %}{{ x.append(1) }}", "chat template: line 1, column 21: 'append' is undefined");
    expect_render_error("{% for x in n %}{% endfor %}",
                        "chat template: line 1, column 4: 'int' object is not iterable");
    expect_render_error("{% set ns = 3 %}{% set ns.x = 1 %}",
                        "chat template: line 1, column 24: cannot assign attribute on non-namespace object");
}

static void test_limits_stop_hostile_templates(void **state) {
    static const char *const hostile[] = {
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
        "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        "{{ 'x' * 100000000000 }}",
        "{{ range(1000000000) }}",
        "{{ 9223372036854775807 + 1 }}",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        chat_template *t = compile_str(hostile[i]);
        char *out = NULL;
        assert_int_not_equal(chat_template_render(t, NULL, &out, NULL), RILL_OK);
        assert_null(out);
        chat_template_free(t);
    }
    char deep[4096] = "{{ ";
    for (int i = 0; i < 1000; i++)
        strcat(deep, "(");
    for (int i = 0; i < 1000; i++)
        strcat(deep, ")");
    strcat(deep, " }}");
    chat_template *t = NULL;
    assert_int_equal(chat_template_compile(deep, strlen(deep), &t), RILL_EFORMAT);
    assert_non_null(strstr(rill_last_error(), "nested too deeply"));
}

static void test_apply_prepares_messages_like_transformers(void **state) {
    chat_template *t = compile_str("{% for m in messages %}{{ m|tojson }}\n{% endfor %}{{ tools }}|{{ documents }}|{{ "
                                   "bos_token }}|{{ add_generation_prompt }}|{{ x }}");
    json_t *msgs = json_pack("[{s:s, s:n}, {s:s, s:s, s:s}]", "role", "user", "content", "role", "assistant", "content",
                             "a", "reasoning", "r");
    json_t *extra = json_pack("{s:i, s:s}", "x", 5, "bos_token", "<B>");
    char *out = NULL;
    assert_int_equal(chat_template_apply(t, msgs, NULL, true, "<s>", NULL, extra, &out, NULL), RILL_OK);
    assert_string_equal(out, "{\"role\": \"user\"}\n{\"thinking\": \"r\", \"role\": \"assistant\", \"content\": \"a\", "
                             "\"reasoning\": \"r\", "
                             "\"reasoning_content\": \"r\"}\nNone|None|<B>|True|5");
    rill_free(out);
    json_decref(msgs);
    json_decref(extra);
    chat_template_free(t);
}

// --- fuzzing ---

static uint64_t fuzz_rand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static const char *const FUZZ_TOKENS[] = {
    "{%",
    "%}",
    "{{",
    "}}",
    "{#",
    "#}",
    "-",
    "+",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "'",
    "\"",
    "\\",
    "|",
    ".",
    ",",
    ":",
    "=",
    "if ",
    "endif",
    "for x in ",
    "endfor",
    "else",
    "elif",
    "set ",
    "macro m(a=1)",
    "endmacro",
    "call ",
    "raw",
    "endraw",
    "loop.",
    "|tojson",
    "|trim",
    "|join(",
    "|selectattr(",
    "namespace(",
    "range(",
    "is not ",
    " in ",
    " and ",
    " or ",
    "not ",
    "**",
    "//",
    "~",
    "messages[0]",
    "[::-1]",
    "none",
    "\xff",
    "\xc3",
    "\xe2\x82",
    "\n",
    "  ",
    "\t",
    "0",
    "1e308",
    "99999999999999999999",
    ".split(",
    ".strip(",
    "{% break %}",
    "{% generation %}",
    "caller()",
    "*100000",
};

static size_t mutate(uint64_t *rng, const char *const *corpus, const size_t *lens, size_t n_corpus, char *buf,
                     size_t cap) {
    size_t k = fuzz_rand(rng) % n_corpus, len = lens[k] < cap ? lens[k] : cap;
    memcpy(buf, corpus[k], len);
    int n_ops = 1 + (int)(fuzz_rand(rng) % 6);
    for (int op = 0; op < n_ops; op++) {
        size_t at = len ? fuzz_rand(rng) % (len + 1) : 0;
        switch (fuzz_rand(rng) % 6) {
        case 0: // flip bits of a byte
            if (len) buf[at % len] ^= (char)(1 << (fuzz_rand(rng) % 8));
            break;
        case 1: // truncate
            len = at;
            break;
        case 2: { // insert a token
            const char *tok = FUZZ_TOKENS[fuzz_rand(rng) % (sizeof FUZZ_TOKENS / sizeof FUZZ_TOKENS[0])];
            size_t tl = strlen(tok);
            if (len + tl >= cap) break;
            memmove(buf + at + tl, buf + at, len - at);
            memcpy(buf + at, tok, tl);
            len += tl;
            break;
        }
        case 3: { // delete a range
            size_t del = fuzz_rand(rng) % 16;
            if (at + del > len) del = len - at;
            memmove(buf + at, buf + at + del, len - at - del);
            len -= del;
            break;
        }
        case 4: // a random byte
            if (len) buf[at % len] = (char)fuzz_rand(rng);
            break;
        default: { // splice in a slice of another template
            size_t o = fuzz_rand(rng) % n_corpus, from = lens[o] ? fuzz_rand(rng) % lens[o] : 0;
            size_t sl = fuzz_rand(rng) % 200;
            if (from + sl > lens[o]) sl = lens[o] - from;
            if (len + sl >= cap) break;
            memmove(buf + at + sl, buf + at, len - at);
            memcpy(buf + at, corpus[o] + from, sl);
            len += sl;
        }
        }
    }
    return len;
}

static void test_fuzzed_templates_never_crash(void **state) {
    static const char *const names[] = {"smollm2", "qwen2_5",      "qwen3",       "llama3_1",           "llama3_2",
                                        "gemma3",  "mistral_v0_3", "deepseek_r1", "deepseek_r1_distill"};
    enum { N = sizeof names / sizeof names[0] };
    json_t *doc = load_json("chat_templates/snippets.json"), *cases = load_json("chat_templates/cases.json");
    size_t n_corpus = N + json_array_size(json_object_get(doc, "snippets"));
    const char **corpus = calloc(n_corpus, sizeof *corpus);
    size_t *lens = calloc(n_corpus, sizeof *lens);
    for (size_t i = 0; i < N; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "chat_templates/%s.jinja", names[i]);
        corpus[i] = slurp(test_data_path(rel), &lens[i]);
        assert_non_null(corpus[i]);
    }
    for (size_t i = N; i < n_corpus; i++) {
        const char *s =
            json_string_value(json_object_get(json_array_get(json_object_get(doc, "snippets"), i - N), "template"));
        corpus[i] = strdup(s);
        lens[i] = strlen(s);
    }
    // the context: the tool-call conversation, with every variable the templates read
    json_t *c = json_array_get(json_object_get(cases, "cases"), 8);
    json_t *ctx = json_pack("{s:O, s:O, s:b, s:s, s:s, s:b}", "messages", json_object_get(c, "messages"), "tools",
                            json_object_get(c, "tools"), "add_generation_prompt", 1, "bos_token", "<s>", "eos_token",
                            "</s>", "enable_thinking", 0);
    json_object_update(ctx, json_object_get(doc, "context"));
    const char *env = getenv("RILL_FUZZ_ITERS");
    long iters = env ? atol(env) : 100000;
    uint64_t rng = test_rand_u64() | 1;
    const chat_template_limits lim = {
        .max_output = 1 << 20, .max_memory = 32 << 20, .max_steps = 20000, .max_depth = 32};
    static char buf[1 << 16];
    long compiled = 0, rendered = 0;
    for (long it = 0; it < iters; it++) {
        size_t len = mutate(&rng, corpus, lens, n_corpus, buf, sizeof buf);
        chat_template *t = NULL;
        if (chat_template_compile(buf, len, &t) != RILL_OK) {
            assert_null(t);
            assert_true(strncmp(rill_last_error(), "chat template: line ", 20) == 0);
            continue;
        }
        compiled++;
        chat_template_set_limits(t, &lim);
        char *out = NULL;
        size_t out_len = 0;
        if (chat_template_render(t, ctx, &out, &out_len) == RILL_OK) {
            rendered++;
            assert_true(out_len <= lim.max_output && out[out_len] == 0);
        } else {
            assert_null(out);
        }
        rill_free(out);
        chat_template_free(t);
    }
    fprintf(stderr, "fuzz: %ld templates, %ld compiled, %ld rendered\n", iters, compiled, rendered);
    assert_true(iters < 1000 || compiled > iters / 20); // the mutations must reach the evaluator too
    for (size_t i = 0; i < n_corpus; i++)
        free((void *)corpus[i]);
    free(corpus);
    free(lens);
    json_decref(ctx);
    json_decref(doc);
    json_decref(cases);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_templates_render_like_transformers),
        cmocka_unit_test(test_snippets_render_like_jinja2),
        cmocka_unit_test(test_bad_templates_fail_with_line_and_column),
        cmocka_unit_test(test_render_errors_name_line_and_column),
        cmocka_unit_test(test_limits_stop_hostile_templates),
        cmocka_unit_test(test_apply_prepares_messages_like_transformers),
        cmocka_unit_test(test_fuzzed_templates_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
