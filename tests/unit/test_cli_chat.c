// test_cli_chat.c: `rill chat` through a pipe on SmolLM2: the second turn prefills only the tokens
// beyond what the cache holds from the first (the whole conversation is rendered, the cached prefix
// is reused), `r` empties the cache and the conversation, `h` lists the commands, and bad flags are
// usage errors. Token counts come from the public tokenizer API, independently of the CLI.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "rill.h"
#include "testlib.h"

// Under AddressSanitizer a SmolLM2 run is ~30x slower: only the short runs stay.
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

static char output[1 << 16];
static char errors[1 << 16];

static const char *rill_bin(void) {
    const char *bin = getenv("RILL_BIN");
    return bin ? bin : "build/bin/rill";
}

static void read_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

// The tokens of messages rendered by the template, with stream_generate's BOS rule.
static size_t count_tokens(rill_tokenizer *t, const char *messages, bool add_generation_prompt) {
    char *text;
    size_t len;
    assert_int_equal(rill_apply_chat_template(t, messages, NULL, add_generation_prompt, NULL, &text, &len), RILL_OK);
    size_t bl = 0;
    int32_t bos = rill_token_bos(t);
    const char *piece = bos >= 0 ? rill_token_piece(t, bos, &bl) : NULL;
    unsigned flags = RILL_TOKENIZE_PARSE_SPECIAL;
    if (!(piece && bl && !strncmp(text, piece, bl))) flags |= RILL_TOKENIZE_ADD_SPECIAL;
    int32_t *ids;
    size_t n;
    assert_int_equal(rill_tokenize(t, text, len, flags, &ids, &n), RILL_OK);
    rill_free_buffer(ids);
    rill_free_buffer(text);
    return n;
}

// A JSON list of messages alternating user and assistant, starting with user: turns [n].
static char *conversation(const char *const *turns, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content", turns[i]));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static size_t count_turns(rill_tokenizer *t, const char *const *turns, int n, bool add_generation_prompt) {
    char *msgs = conversation(turns, n);
    size_t k = count_tokens(t, msgs, add_generation_prompt);
    free(msgs);
    return k;
}

// The i-th "Prompt: N tokens (C from the cache)" line of --verbose.
static void prompt_stats(const char *err, int i, long long *n, long long *cached) {
    const char *p = err;
    for (int k = 0; k <= i; k++) {
        p = strstr(p, "Prompt: ");
        assert_non_null(p);
        p += 8;
    }
    assert_int_equal(sscanf(p, "%lld tokens (%lld from the cache)", n, cached), 2);
}

// The i-th reply on stdout: the text after the i-th ">> " up to its newline.
static char *reply(const char *out, int i, char *buf, size_t cap) {
    const char *p = out;
    for (int k = 0; k <= i; k++) {
        p = strstr(p, ">> ");
        assert_non_null(p);
        p += 3;
    }
    const char *end = strstr(p, "\n>> ");
    assert_non_null(end);
    size_t n = (size_t)(end - p) < cap - 1 ? (size_t)(end - p) : cap - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    return buf;
}

static void test_second_turn_prefills_only_the_new_tokens_and_r_resets(void **state) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model || SANITIZED) skip();
    const char *err_path = test_tmp_path(".err");
    char cmd[8192];
    snprintf(
        cmd, sizeof cmd,
        "printf 'What is the capital of France?\\nAnd of Germany?\\nh\\nr\\nWhat is the capital of France?\\nq\\n' | "
        "'%s' chat --model '%s' --max-tokens 32 --verbose 2>'%s'",
        rill_bin(), model, err_path);
    assert_int_equal(test_run(cmd, output, sizeof output), 0);
    read_file(err_path, errors, sizeof errors);
    remove(err_path);

    rill_tokenizer *t;
    assert_int_equal(rill_tokenizer_load(model, &t), RILL_OK);
    char a1[4096], a2[4096], a3[4096];
    reply(output, 0, a1, sizeof a1);
    reply(output, 1, a2, sizeof a2);
    reply(output, 4, a3, sizeof a3); // ">> " of h and of r come in between
    assert_true(strlen(a1) > 0);
    assert_non_null(strstr(output, "'r' to reset the chat"));

    // Turn 1: the whole rendered prompt, nothing cached.
    const char *turns[] = {"What is the capital of France?", a1, "And of Germany?"};
    size_t len1 = count_turns(t, turns, 1, true);
    long long n1, c1, n2, c2, n3, c3;
    prompt_stats(errors, 0, &n1, &c1);
    assert_int_equal(c1, 0);
    assert_int_equal(n1, (long long)len1);

    // Turn 2: the conversation so far comes from the cache; only the new tokens run. The reply ended
    // at EOS (<|im_end|>), which the cache holds too; the template's "\n" after it is new.
    size_t len_a1 = count_turns(t, turns, 2, false);
    size_t len2 = count_turns(t, turns, 3, true);
    prompt_stats(errors, 1, &n2, &c2);
    assert_int_equal(n2 + c2, (long long)len2);
    assert_int_equal(c2, (long long)len_a1 - 1);
    assert_true(n2 < (long long)(len2 - len1));
    assert_true(strlen(a2) > 0);

    // After r: a fresh conversation and an empty cache give the first turn's numbers and reply.
    prompt_stats(errors, 2, &n3, &c3);
    assert_int_equal(c3, 0);
    assert_int_equal(n3, n1);
    assert_string_equal(a3, a1);
    rill_tokenizer_free(t);
}

// Plain text, two tokens a turn (short enough for AddressSanitizer): turn 1 feeds BOS + "Hi", turn 2
// reuses the cache, and after r the first turn's numbers come back.
static void test_ignore_chat_template_feeds_the_plain_text(void **state) {
    const char *model = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!model) skip();
    const char *err_path = test_tmp_path(".err");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "printf 'Hi\\nYes\\nr\\nHi\\n' | '%s' chat --model '%s' --max-tokens 2 --ignore-chat-template "
             "--verbose 2>'%s'",
             rill_bin(), model, err_path);
    assert_int_equal(test_run(cmd, output, sizeof output), 0); // EOF ends the session like q
    read_file(err_path, errors, sizeof errors);
    remove(err_path);
    rill_tokenizer *t;
    assert_int_equal(rill_tokenizer_load(model, &t), RILL_OK);
    int32_t *ids;
    size_t n;
    assert_int_equal(rill_tokenize(t, "Hi", 2, RILL_TOKENIZE_ADD_SPECIAL | RILL_TOKENIZE_PARSE_SPECIAL, &ids, &n),
                     RILL_OK);
    long long n1, c1, n2, c2, n3, c3;
    prompt_stats(errors, 0, &n1, &c1);
    assert_int_equal(c1, 0);
    assert_int_equal(n1, (long long)n);
    assert_non_null(strstr(errors, "Generation: 2 tokens"));
    // turn 2: "Hi" + the reply + "\nYes"; the cache holds "Hi" and the reply's first token
    prompt_stats(errors, 1, &n2, &c2);
    assert_true(c2 >= n1 + 1);
    assert_true(n2 >= 1 && n2 <= 4);
    prompt_stats(errors, 2, &n3, &c3);
    assert_int_equal(c3, 0);
    assert_int_equal(n3, n1);
    rill_free_buffer(ids);
    rill_tokenizer_free(t);
}

static void test_bad_flags_are_usage_errors(void **state) {
    const char *model = test_data_path("tiny/llama");
    const char *bad[] = {"--temp -1",  "--top-p 2",           "--max-tokens abc", "--min-p 1.5",
                         "--top-k -3", "--xtc-threshold 0.7", "--max-tokens -2",  "--bogus"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "'%s' chat --model '%s' %s </dev/null 2>&1", rill_bin(), model, bad[i]);
        int rc = test_run(cmd, output, sizeof output);
        assert_int_equal(rc, 2);
        assert_true(!strncmp(output, "rill: ", 6));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_turn_prefills_only_the_new_tokens_and_r_resets),
        cmocka_unit_test(test_ignore_chat_template_feeds_the_plain_text),
        cmocka_unit_test(test_bad_flags_are_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
