// test_tokenizer.c: rill's tokenizers against HF tokenizers: the ids of every corpus line for each
// vocabulary (fixtures from tests/ref/make_tokenizer_ids.py), decode(encode(x)) == x where the
// tokenizer is lossless, each normalizer / pre-tokenizer / decoder on its own (expected values
// from HF tokenizers 0.23.3), the streaming detokenizer, hostile input and bad tokenizer.json files.
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
#include "testlib.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_internal.h"

#define tok_strdup_for_test(s) tok_strdup((s), strlen(s))

// ---- corpus ---------------------------------------------------------------------------------------

typedef struct {
    char **text; // [n] corpus inputs (may hold NULs)
    size_t *len; // [n]
    size_t n;
} corpus;

static corpus CORPUS;

static void load_corpus(void) {
    if (CORPUS.n) return;
    FILE *f = fopen(test_data_path("tokenizers/corpus.jsonl"), "rb");
    assert_non_null(f);
    size_t cap = 1024;
    CORPUS.text = malloc(cap * sizeof *CORPUS.text);
    CORPUS.len = malloc(cap * sizeof *CORPUS.len);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        json_error_t err;
        json_t *j = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        assert_non_null(j);
        assert_true(json_is_string(j));
        if (CORPUS.n == cap) {
            cap *= 2;
            CORPUS.text = realloc(CORPUS.text, cap * sizeof *CORPUS.text);
            CORPUS.len = realloc(CORPUS.len, cap * sizeof *CORPUS.len);
        }
        size_t n = json_string_length(j);
        CORPUS.text[CORPUS.n] = malloc(n + 1);
        memcpy(CORPUS.text[CORPUS.n], json_string_value(j), n + 1);
        CORPUS.len[CORPUS.n++] = n;
        json_decref(j);
    }
    free(line);
    fclose(f);
    assert_true(CORPUS.n >= 20000);
}

// Reads one line of space-separated ids into ids[]; returns the count.
static size_t parse_ids(const char *line, int32_t *ids, size_t cap) {
    size_t n = 0;
    for (const char *p = line; *p && *p != '\n';) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (n < cap) ids[n] = (int32_t)v;
        n++;
        p = end;
        while (*p == ' ')
            p++;
    }
    return n;
}

static bool has_u2581(const char *s, size_t n) { return memmem(s, n, "\xE2\x96\x81", 3) != NULL; }

typedef enum { LOSSLESS_ALL, LOSSLESS_NO_U2581, LOSSLESS_SPM_PREFIX, LOSSLESS_NONE } lossless_rule;

static bool is_lossless(lossless_rule r, const char *s, size_t n) {
    switch (r) {
    case LOSSLESS_ALL: return true;
    case LOSSLESS_NO_U2581: return !has_u2581(s, n);
    case LOSSLESS_SPM_PREFIX: return !has_u2581(s, n) && n > 0 && s[0] != ' ';
    case LOSSLESS_NONE: return false;
    }
    return false;
}

// Compares every corpus line with the HF ids; counts round trips and streams every 5th line.
static void check_corpus(tokenizer *t, const char *ids_rel, lossless_rule rule) {
    load_corpus();
    FILE *f = fopen(test_data_path(ids_rel), "r");
    assert_non_null(f);
    char *line = NULL;
    size_t lcap = 0, mismatches = 0, roundtrip_fail = 0, roundtrips = 0, stream_fail = 0;
    enum { CAP = 1 << 16 };
    int32_t *want = malloc(CAP * sizeof *want);
    tokenizer_stream *st;
    assert_int_equal(tokenizer_stream_new(t, false, &st), RILL_OK);
    for (size_t i = 0; i < CORPUS.n; i++) {
        assert_true(getline(&line, &lcap, f) > 0);
        size_t nw = parse_ids(line, want, CAP);
        int32_t *got;
        size_t ng;
        assert_int_equal(tokenizer_encode(t, CORPUS.text[i], CORPUS.len[i], TOKENIZER_PARSE_SPECIAL, &got, &ng),
                         RILL_OK);
        if (ng != nw || memcmp(got, want, ng * sizeof *got)) {
            if (mismatches++ < 5) {
                fprintf(stderr, "%s line %zu: %zu ids, expected %zu; first difference at", ids_rel, i + 1, ng, nw);
                size_t k = 0;
                while (k < ng && k < nw && got[k] == want[k])
                    k++;
                fprintf(stderr, " %zu (got %d, expected %d)\n", k, k < ng ? got[k] : -1, k < nw ? want[k] : -1);
            }
        }
        char *text;
        size_t tn;
        assert_int_equal(tokenizer_decode(t, got, ng, false, &text, &tn), RILL_OK);
        if (is_lossless(rule, CORPUS.text[i], CORPUS.len[i])) {
            roundtrips++;
            if (tn != CORPUS.len[i] || memcmp(text, CORPUS.text[i], tn))
                if (roundtrip_fail++ < 3) fprintf(stderr, "%s line %zu: decode(encode(x)) != x\n", ids_rel, i + 1);
        }
        if (i % 5 == 0) { // streaming gives the same text as decoding at once
            tok_buf acc = {0};
            const char *piece;
            size_t pn;
            for (size_t k = 0; k < ng; k++) {
                assert_int_equal(tokenizer_stream_push(st, got[k], &piece, &pn), RILL_OK);
                tokbuf_put(&acc, piece, pn);
            }
            assert_int_equal(tokenizer_stream_finish(st, &piece, &pn), RILL_OK);
            tokbuf_put(&acc, piece, pn);
            if (acc.n != tn || (tn && memcmp(acc.p, text, tn)))
                if (stream_fail++ < 3)
                    fprintf(stderr, "%s line %zu: streamed text differs from decode\n", ids_rel, i + 1);
            tokbuf_free(&acc);
        }
        rill_free(text);
        rill_free(got);
    }
    fprintf(stderr, "%s: %zu lines, %zu mismatches; %zu round trips, %zu failed; %zu stream failures\n", ids_rel,
            CORPUS.n, mismatches, roundtrips, roundtrip_fail, stream_fail);
    tokenizer_stream_free(st);
    free(want);
    free(line);
    fclose(f);
    assert_int_equal(mismatches, 0);
    assert_int_equal(roundtrip_fail, 0);
    assert_int_equal(stream_fail, 0);
}

static tokenizer *load_or_skip(const char *path) {
    if (!path) return NULL;
    tokenizer *t = NULL;
    rill_status st = tokenizer_load(path, &t);
    if (st) fprintf(stderr, "%s: %s\n", path, rill_last_error());
    assert_int_equal(st, RILL_OK);
    return t;
}

static void test_smollm2_json_matches_hf_on_corpus(void **state) {
    tokenizer *t = load_or_skip(test_data_path("tokenizers/smollm2"));
    check_corpus(t, "tokenizers/smollm2.ids", LOSSLESS_ALL);
    tokenizer_free(t);
}

static void test_smollm2_gguf_matches_hf_on_corpus(void **state) {
    const char *p = test_model_path("SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!p) skip();
    tokenizer *t = load_or_skip(p);
    check_corpus(t, "tokenizers/smollm2.ids", LOSSLESS_ALL);
    tokenizer_free(t);
}

static void test_gemma3_gguf_matches_hf_on_corpus(void **state) {
    const char *p = test_model_path("gemma-3-270m-Q4_K_M.gguf");
    if (!p) skip();
    tokenizer *t = load_or_skip(p);
    check_corpus(t, "tokenizers/gemma3.ids", LOSSLESS_NO_U2581);
    tokenizer_free(t);
}

static void test_llama3_json_ignore_merges_matches_hf_on_corpus(void **state) {
    const char *p = test_model_path("tokenizers/llama3/tokenizer.json");
    if (!p) skip(); // scripts/fetch-tokenizers puts it there
    tokenizer *t = load_or_skip(p);
    check_corpus(t, "tokenizers/llama3.ids", LOSSLESS_ALL);
    tokenizer_free(t);
}

static void test_llama2_spm_json_matches_hf_on_corpus(void **state) {
    tokenizer *t = load_or_skip(test_data_path("tokenizers/llama2-spm"));
    check_corpus(t, "tokenizers/llama2-spm.ids", LOSSLESS_SPM_PREFIX);
    tokenizer_free(t);
}

static void test_llama2_spm_gguf_matches_hf_on_corpus(void **state) {
    tokenizer *t = load_or_skip(test_data_path("tokenizers/llama2-spm/ggml-vocab-llama-spm.gguf"));
    check_corpus(t, "tokenizers/llama2-spm.ids", LOSSLESS_SPM_PREFIX);
    tokenizer_free(t);
}

// ---- special ids, BOS / EOS ----------------------------------------------------------------------

static void encode_str(tokenizer *t, const char *s, unsigned flags, int32_t *out, size_t cap, size_t *n) {
    int32_t *ids;
    assert_int_equal(tokenizer_encode(t, s, strlen(s), flags, &ids, n), RILL_OK);
    assert_true(*n <= cap);
    memcpy(out, ids, *n * sizeof *ids);
    rill_free(ids);
}

static void test_bos_eos_follow_the_model_configuration(void **state) {
    int32_t ids[64];
    size_t n;
    tokenizer *t = load_or_skip(test_data_path("tokenizers/llama2-spm/ggml-vocab-llama-spm.gguf"));
    encode_str(t, "Hello", TOKENIZER_ADD_SPECIAL, ids, 64, &n); // add_bos_token: true
    assert_true(n >= 2);
    assert_int_equal(ids[0], 1);
    assert_int_equal(tokenizer_bos(t), 1);
    size_t ne;
    const int32_t *eos = tokenizer_eos(t, &ne);
    assert_int_equal(ne, 1);
    assert_int_equal(eos[0], 2);
    encode_str(t, "Hello", 0, ids, 64, &n);
    assert_int_not_equal(ids[0], 1);
    tokenizer_free(t);

    t = load_or_skip(test_data_path("tokenizers/smollm2")); // byte-level, no BOS added
    encode_str(t, "Hello", TOKENIZER_ADD_SPECIAL | TOKENIZER_PARSE_SPECIAL, ids, 64, &n);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 19556);
    tokenizer_free(t);

    // A TemplateProcessing post-processor (Llama 3 style BOS) and generation_config eos ids.
    const char *dir = test_tmp_path("-tokdir");
    char cmd[8192], out[256];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && python3 - %s %s <<'EOF'\n"
             "import json, sys\n"
             "d = json.load(open(sys.argv[1] + '/tokenizers/smollm2/tokenizer.json'))\n"
             "d['post_processor'] = {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': '<|im_start|>', "
             "'type_id': 0}}, {'Sequence': {'id': 'A', 'type_id': 0}}, {'SpecialToken': {'id': '<|im_end|>', "
             "'type_id': 0}}],"
             " 'pair': [], 'special_tokens': {'<|im_start|>': {'id': '<|im_start|>', 'ids': [1], 'tokens': "
             "['<|im_start|>']},"
             " '<|im_end|>': {'id': '<|im_end|>', 'ids': [2], 'tokens': ['<|im_end|>']}}}\n"
             "json.dump(d, open(sys.argv[2] + '/tokenizer.json', 'w'))\n"
             "json.dump({'bos_token': '<|im_start|>', 'eos_token': {'content': '<|im_end|>'}}, open(sys.argv[2] + "
             "'/tokenizer_config.json', 'w'))\n"
             "json.dump({'eos_token_id': [2, 0]}, open(sys.argv[2] + '/generation_config.json', 'w'))\n"
             "EOF",
             dir, getenv("RILL_TEST_DATA") ? getenv("RILL_TEST_DATA") : "tests/data", dir);
    if (test_run(cmd, out, sizeof out) != 0) skip(); // needs python3 (no packages)
    t = load_or_skip(dir);
    encode_str(t, "Hello", TOKENIZER_ADD_SPECIAL, ids, 64, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 19556);
    assert_int_equal(ids[2], 2);
    assert_int_equal(tokenizer_bos(t), 1);
    eos = tokenizer_eos(t, &ne);
    assert_int_equal(ne, 2);
    assert_int_equal(eos[0], 2);
    assert_int_equal(eos[1], 0);
    assert_true(tokenizer_is_eos(t, 0));
    tokenizer_free(t);
}

static void test_special_tokens_are_text_without_parse_special(void **state) {
    tokenizer *t = load_or_skip(test_data_path("tokenizers/smollm2"));
    int32_t ids[64];
    size_t n;
    encode_str(t, "<|im_start|>user", TOKENIZER_PARSE_SPECIAL, ids, 64, &n);
    assert_int_equal(ids[0], 1);
    encode_str(t, "<|im_start|>user", 0, ids, 64, &n);
    assert_true(n > 2);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 1);
    // Decoding with skip_special drops the special token only.
    int32_t seq[] = {1, 19556, 2};
    char *text;
    size_t len;
    assert_int_equal(tokenizer_decode(t, seq, 3, true, &text, &len), RILL_OK);
    assert_string_equal(text, "Hello");
    rill_free(text);
    assert_int_equal(tokenizer_decode(t, seq, 3, false, &text, &len), RILL_OK);
    assert_string_equal(text, "<|im_start|>Hello<|im_end|>");
    rill_free(text);
    size_t pl;
    const char *piece = tokenizer_piece(t, 905, &pl);
    assert_non_null(piece);
    assert_int_equal(tokenizer_token_id(t, piece, pl), 905);
    assert_null(tokenizer_piece(t, 1 << 30, &pl));
    assert_true(tokenizer_is_special(t, 1));
    assert_false(tokenizer_is_special(t, 905));
    assert_int_equal(tokenizer_vocab_size(t), 49152);
    tokenizer_free(t);
}

// ---- pipeline stages, one at a time ---------------------------------------------------------------

static void norm_eq(tok_normalizer *nm, const char *in, const char *want) {
    tok_buf out = {0};
    assert_int_equal(normalizer_apply(nm, in, strlen(in), &out), RILL_OK);
    assert_int_equal(out.n, strlen(want));
    assert_memory_equal(out.p ? out.p : "", want, out.n);
    tokbuf_free(&out);
}

static tok_normalizer literal_replace(const char *from, const char *to) {
    tok_normalizer nm = {.kind = NORM_REPLACE, .str = tok_strdup_for_test(to), .str_len = strlen(to)};
    assert_int_equal(pattern_literal(&nm.pat, from, strlen(from)), RILL_OK);
    return nm;
}

static void test_normalizers_match_hf(void **state) {
    tok_normalizer nm = {.kind = NORM_NFC};
    norm_eq(&nm, "e\xCC\x81 \xE2\x84\xAB", "\xC3\xA9 \xC3\x85");
    nm.kind = NORM_NFKC;
    norm_eq(&nm, "\xEF\xAC\x81 \xE2\x91\xA0 \xC2\xBD \xEF\xBC\xB8",
            "fi 1 1\xE2\x81\x84"
            "2 X");
    nm.kind = NORM_NFD;
    norm_eq(&nm, "\xC3\xA9", "e\xCC\x81");
    nm.kind = NORM_NFKD;
    norm_eq(&nm, "\xEF\xAC\x81\xC3\xA9", "fie\xCC\x81");
    nm.kind = NORM_LOWERCASE; // per character: no final sigma, U+0130 -> i + U+0307, U+1E9E -> U+00DF
    norm_eq(&nm, "HeLLo \xCE\xA3\xCE\x91\xCE\xA3 \xC4\xB0 \xE1\xBA\x9E",
            "hello \xCF\x83\xCE\xB1\xCF\x83 i\xCC\x87 \xC3\x9F");
    nm = (tok_normalizer){.kind = NORM_STRIP, .left = true, .right = true};
    norm_eq(&nm, " \xE3\x80\x80 x y \t\n", "x y");
    nm.left = false;
    norm_eq(&nm, "  x  ", "  x");
    nm = (tok_normalizer){.kind = NORM_PREPEND, .str = tok_strdup_for_test("\xE2\x96\x81"), .str_len = 3};
    norm_eq(&nm, "hi", "\xE2\x96\x81hi");
    norm_eq(&nm, "", ""); // nothing is prepended to an empty string
    normalizer_free(&nm);
    nm = literal_replace(" ", "\xE2\x96\x81");
    norm_eq(&nm, " a  b ",
            "\xE2\x96\x81"
            "a\xE2\x96\x81\xE2\x96\x81"
            "b\xE2\x96\x81");
    normalizer_free(&nm);
    nm = (tok_normalizer){.kind = NORM_REPLACE, .str = tok_strdup_for_test(" "), .str_len = 1};
    assert_int_equal(pattern_regex(&nm.pat, "\\s+", 3), RILL_OK);
    norm_eq(&nm, "a \t\n b", "a b");
    normalizer_free(&nm);
    tok_normalizer seq = {.kind = NORM_SEQUENCE, .n_items = 3};
    seq.items = rill_calloc(3, sizeof *seq.items);
    seq.items[0] = (tok_normalizer){.kind = NORM_PREPEND, .str = tok_strdup_for_test("\xE2\x96\x81"), .str_len = 3};
    seq.items[1] = literal_replace(" ", "\xE2\x96\x81");
    seq.items[2].kind = NORM_LOWERCASE;
    norm_eq(&seq, "Hello World", "\xE2\x96\x81hello\xE2\x96\x81world");
    normalizer_free(&seq);
}

// Pre-tokenizes `in` and compares the pieces with want[] (NULL-terminated).
static void pre_eq(tok_pretokenizer *pt, const char *in, const char *const *want) {
    tok_pieces p = {0}, tmp = {0};
    assert_int_equal(pieces_add(&p, in, strlen(in), true), RILL_OK);
    assert_int_equal(pretok_apply(pt, &p, &tmp), RILL_OK);
    size_t k = 0;
    while (want[k])
        k++;
    if (p.n != k) {
        for (size_t i = 0; i < p.n; i++)
            fprintf(stderr, "piece %zu: '%.*s'\n", i, (int)p.s[i].len, piece_ptr(&p, i));
    }
    assert_int_equal(p.n, k);
    for (size_t i = 0; i < k; i++) {
        assert_int_equal(p.s[i].len, strlen(want[i]));
        assert_memory_equal(piece_ptr(&p, i), want[i], p.s[i].len);
    }
    pieces_free(&p), pieces_free(&tmp);
}

#define PIECES(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_split_behaviours_match_hf(void **state) {
    tok_pretokenizer pt = {.kind = PRE_SPLIT};
    assert_int_equal(pattern_regex(&pt.pat, "\\d", 2), RILL_OK);
    pt.behavior = SPLIT_REMOVED;
    pre_eq(&pt, "a12b3c", PIECES("a", "b", "c"));
    pt.behavior = SPLIT_ISOLATED;
    pre_eq(&pt, "a12b3c", PIECES("a", "1", "2", "b", "3", "c"));
    pt.behavior = SPLIT_MERGED_PREV;
    pre_eq(&pt, "a12b3c", PIECES("a1", "2", "b3", "c"));
    pt.behavior = SPLIT_MERGED_NEXT;
    pre_eq(&pt, "a12b3c", PIECES("a", "1", "2b", "3c"));
    pt.behavior = SPLIT_CONTIGUOUS;
    pre_eq(&pt, "a12b3c", PIECES("a", "12", "b", "3", "c"));
    pretok_free(&pt);
    pt = (tok_pretokenizer){.kind = PRE_SPLIT, .invert = true};
    assert_int_equal(pattern_literal(&pt.pat, " ", 1), RILL_OK);
    pt.behavior = SPLIT_REMOVED;
    pre_eq(&pt, "ab cd", PIECES(" "));
    pt.behavior = SPLIT_MERGED_PREV;
    pre_eq(&pt, "ab cd", PIECES("ab", " cd"));
    pt.behavior = SPLIT_MERGED_NEXT;
    pre_eq(&pt, "ab cd", PIECES("ab ", "cd"));
    pretok_free(&pt);
}

static void test_pretokenizers_match_hf(void **state) {
    tok_pretokenizer pt = {.kind = PRE_DIGITS, .individual_digits = true};
    pre_eq(&pt, "a123b45", PIECES("a", "1", "2", "3", "b", "4", "5"));
    pt.individual_digits = false;
    pre_eq(&pt, "a123b45", PIECES("a", "123", "b", "45"));
    pt = (tok_pretokenizer){.kind = PRE_BYTELEVEL, .add_prefix_space = true, .use_regex = true};
    assert_int_equal(pattern_regex(&pt.pat, TOK_GPT2_REGEX, strlen(TOK_GPT2_REGEX)), RILL_OK);
    pre_eq(&pt, "Hello world\n \xC3\xA9",
           PIECES("\xC4\xA0Hello", "\xC4\xA0world", "\xC4\x8A", "\xC4\xA0\xC3\x83\xC2\xA9"));
    pretok_free(&pt);
    pt = (tok_pretokenizer){.kind = PRE_BYTELEVEL, .add_prefix_space = true};
    pre_eq(&pt, "a b",
           PIECES("\xC4\xA0"
                  "a\xC4\xA0"
                  "b"));
    pt = (tok_pretokenizer){
        .kind = PRE_METASPACE, .prepend = PREPEND_ALWAYS, .split = true, .rep = "\xE2\x96\x81", .rep_len = 3};
    pre_eq(&pt, "Hello  world", PIECES("\xE2\x96\x81Hello", "\xE2\x96\x81", "\xE2\x96\x81world"));
    pt.prepend = PREPEND_NEVER, pt.split = false;
    pre_eq(&pt, "a b",
           PIECES("a\xE2\x96\x81"
                  "b"));
    pt.prepend = PREPEND_FIRST, pt.split = true;
    pre_eq(&pt, "hello  world ", PIECES("\xE2\x96\x81hello", "\xE2\x96\x81", "\xE2\x96\x81world", "\xE2\x96\x81"));
    pt = (tok_pretokenizer){.kind = PRE_WHITESPACE_SPLIT};
    pre_eq(&pt, " a\tb  c ", PIECES("a", "b", "c"));
    // A Sequence applies each stage to every piece (ByteLevel's prefix space lands on each word).
    tok_pretokenizer seq = {.kind = PRE_SEQUENCE, .n_items = 2};
    seq.items = rill_calloc(2, sizeof *seq.items);
    seq.items[0].kind = PRE_WHITESPACE_SPLIT;
    seq.items[1] = (tok_pretokenizer){.kind = PRE_BYTELEVEL, .add_prefix_space = true};
    pre_eq(&seq, "a b",
           PIECES("\xC4\xA0"
                  "a",
                  "\xC4\xA0"
                  "b"));
    pretok_free(&seq);
}

static void dec_eq(tok_decoder *d, const char *const *tokens, const char *want) {
    tok_pieces p = {0}, tmp = {0};
    for (size_t i = 0; tokens[i]; i++)
        assert_int_equal(pieces_add(&p, tokens[i], strlen(tokens[i]), false), RILL_OK);
    assert_int_equal(decoder_apply(d, &p, &tmp), RILL_OK);
    tok_buf all = {0};
    for (size_t i = 0; i < p.n; i++)
        tokbuf_put(&all, piece_ptr(&p, i), p.s[i].len);
    assert_int_equal(all.n, strlen(want));
    assert_memory_equal(all.p ? all.p : "", want, all.n);
    tokbuf_free(&all);
    pieces_free(&p), pieces_free(&tmp);
}

static void test_decoders_match_hf(void **state) {
    tok_decoder seq = {.kind = DEC_SEQUENCE, .n_items = 4};
    seq.items = rill_calloc(4, sizeof *seq.items);
    seq.items[0] = (tok_decoder){.kind = DEC_REPLACE, .str = tok_strdup_for_test(" "), .str_len = 1};
    assert_int_equal(pattern_literal(&seq.items[0].pat, "\xE2\x96\x81", 3), RILL_OK);
    seq.items[1].kind = DEC_BYTEFALLBACK;
    seq.items[2].kind = DEC_FUSE;
    seq.items[3] = (tok_decoder){.kind = DEC_STRIP, .content = ' ', .start = 1};
    dec_eq(&seq, PIECES("\xE2\x96\x81Hello", "<0xE2>", "<0x82>", "<0xAC>", "\xE2\x96\x81x", "<0xFF>"),
           "Hello\xE2\x82\xAC x\xEF\xBF\xBD");
    decoder_free(&seq);
    tok_decoder bf = {.kind = DEC_BYTEFALLBACK};
    dec_eq(&bf, PIECES("<0xE2>", "<0x82>", "a", "<0x41>", "<0x+A>"),
           "\xEF\xBF\xBD\xEF\xBF\xBD"
           "aA\n");
    tok_decoder bl = {.kind = DEC_BYTELEVEL};
    dec_eq(&bl, PIECES("Hello", "\xC4\xA0world", "\xC4\x8A", "\xC3\xB0\xC5\x81", "\xC4\xBA\xC4\xA2", "\xC3\xA9"),
           "Hello world\n\xF0\x9F\x98\x80\xEF\xBF\xBD");
    tok_decoder ms = {.kind = DEC_METASPACE, .rep = "\xE2\x96\x81", .rep_len = 3, .prepend = PREPEND_ALWAYS};
    dec_eq(&ms,
           PIECES("\xE2\x96\x81"
                  "a\xE2\x96\x81"
                  "b",
                  "\xE2\x96\x81"
                  "c"),
           "ab c"); // the first token loses all
    ms.prepend = PREPEND_NEVER;
    dec_eq(&ms,
           PIECES("\xE2\x96\x81"
                  "a",
                  "\xE2\x96\x81"
                  "b"),
           " a b");
    tok_decoder strip = {.kind = DEC_STRIP, .content = ' ', .start = 1, .stop = 1};
    dec_eq(&strip, PIECES("  a  ", "b"), " a b");
    tok_decoder fuse = {.kind = DEC_FUSE};
    dec_eq(&fuse, PIECES("a", "", "b"), "ab");
}

// ---- streaming detokenizer ------------------------------------------------------------------------

// Streams ids one by one: every piece must be valid UTF-8, and all of them together the decoded text.
static void stream_check(tokenizer *t, const int32_t *ids, size_t n, bool skip, const char *want) {
    tokenizer_stream *s;
    assert_int_equal(tokenizer_stream_new(t, skip, &s), RILL_OK);
    tok_buf acc = {0};
    const char *p;
    size_t pn;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(tokenizer_stream_push(s, ids[i], &p, &pn), RILL_OK);
        assert_int_equal(tok_utf8_valid_prefix(p, pn), pn);
        assert_null(memmem(p, pn, "\xEF\xBF\xBD", 3)); // no replacement character mid-stream
        tokbuf_put(&acc, p, pn);
    }
    assert_int_equal(tokenizer_stream_finish(s, &p, &pn), RILL_OK);
    tokbuf_put(&acc, p, pn);
    assert_int_equal(acc.n, strlen(want));
    assert_memory_equal(acc.p ? acc.p : "", want, acc.n);
    tokbuf_free(&acc);
    tokenizer_stream_free(s);
}

static void test_stream_never_splits_characters_or_byte_fallback(void **state) {
    // SentencePiece with byte fallback: the emoji and U+10FFFD are <0xNN> sequences.
    tokenizer *t = load_or_skip(test_data_path("tokenizers/llama2-spm/ggml-vocab-llama-spm.gguf"));
    const char *text = "Hi \xF0\x9F\xA6\x80 and \xF4\x8F\xBF\xBD\xF0\x9F\xA6\x80!";
    int32_t ids[128];
    size_t n;
    encode_str(t, text, TOKENIZER_ADD_SPECIAL, ids, 128, &n);
    int bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = tokenizer_piece(t, ids[i], &len);
        bytes += len == 6 && !memcmp(p, "<0x", 3);
    }
    assert_true(bytes >= 8);             // the test really crosses byte-fallback sequences
    stream_check(t, ids, n, true, text); // BOS skipped; the first word's space rule applies once
    tokenizer_free(t);

    // Byte-level BPE: an emoji's four bytes spread over several tokens.
    t = load_or_skip(test_data_path("tokenizers/smollm2"));
    text = "\xF0\x9F\xA6\x80\xF0\x9F\xAB\xA0 ok \xE0\xB8\x81\xE0\xB8\xB2";
    encode_str(t, text, 0, ids, 128, &n);
    assert_true(n >= 4);
    stream_check(t, ids, n, false, text);
    // Special tokens between words keep the spaces right when they are skipped.
    encode_str(t, "<|im_start|>user\n Hello<|im_end|> world", TOKENIZER_PARSE_SPECIAL, ids, 128, &n);
    stream_check(t, ids, n, true, "user\n Hello world");
    tokenizer_free(t);

    // Leading-space rule: the first token of a SentencePiece stream loses its space, later ones keep it.
    t = load_or_skip(test_data_path("tokenizers/llama2-spm"));
    encode_str(t, "Hello world, again", TOKENIZER_ADD_SPECIAL, ids, 128, &n);
    stream_check(t, ids, n, true, "Hello world, again");
    tokenizer_free(t);
}

// ---- hostile input ----------------------------------------------------------------------------------

static void test_invalid_utf8_is_repaired_like_python(void **state) {
    FILE *f = fopen(test_data_path("tokenizers/lossy_utf8.txt"), "r");
    assert_non_null(f);
    char in_hex[512], out_hex[512];
    size_t cases = 0;
    while (fscanf(f, "%511s %511s", in_hex, out_hex) == 2) {
        uint8_t in[256], want[256];
        size_t ni = strlen(in_hex) / 2, nw = strlen(out_hex) / 2;
        for (size_t i = 0; i < ni; i++)
            sscanf(in_hex + 2 * i, "%2hhx", &in[i]);
        for (size_t i = 0; i < nw; i++)
            sscanf(out_hex + 2 * i, "%2hhx", &want[i]);
        tok_buf b = {0};
        assert_int_equal(tok_utf8_append_lossy(&b, (const char *)in, ni), RILL_OK);
        if (b.n != nw || memcmp(b.p, want, nw)) fprintf(stderr, "lossy case %s: wrong repair\n", in_hex);
        assert_int_equal(b.n, nw);
        assert_memory_equal(b.p, want, nw);
        tokbuf_free(&b);
        cases++;
    }
    fclose(f);
    assert_true(cases > 500);
}

static void test_random_bytes_never_crash_encode(void **state) {
    const char *paths[] = {test_data_path("tokenizers/smollm2"),
                           test_data_path("tokenizers/llama2-spm/ggml-vocab-llama-spm.gguf")};
    static const char *const frags[] = {"<|im_start|>", "<s>",    "</s>",         " ",   "\n", "\xE2\x96\x81",
                                        "\xF0\x9F",     "\x80",   "\xC3",         "a",   "1",  "'s",
                                        "\t",           "<0x0A>", "\xEF\xBF\xBD", "\x00"};
    size_t total = 0;
    for (int m = 0; m < 2; m++) {
        tokenizer *t = load_or_skip(paths[m]);
        for (int i = 0; i < 60000; i++) {
            char buf[96];
            size_t n = 0, want = test_rand_u64() % 80;
            while (n < want) {
                if (test_rand_u64() % 3 == 0) {
                    const char *fr = frags[test_rand_u64() % (sizeof frags / sizeof frags[0])];
                    size_t fl = fr[0] ? strlen(fr) : 1;
                    if (n + fl > sizeof buf) break;
                    memcpy(buf + n, fr, fl), n += fl;
                } else
                    buf[n++] = (char)(test_rand_u64() & 0xFF);
            }
            int32_t *ids, *ids2;
            size_t k, k2;
            unsigned flags = (unsigned)(test_rand_u64() % 4);
            assert_int_equal(tokenizer_encode(t, buf, n, flags, &ids, &k), RILL_OK);
            for (size_t j = 0; j < k; j++)
                assert_true(ids[j] >= 0 && ids[j] < tokenizer_vocab_size(t));
            // Invalid input encodes as its repaired form.
            tok_buf fixed = {0};
            assert_int_equal(tok_utf8_append_lossy(&fixed, buf, n), RILL_OK);
            assert_int_equal(tokenizer_encode(t, fixed.p, fixed.n, flags, &ids2, &k2), RILL_OK);
            assert_int_equal(k, k2);
            assert_memory_equal(ids, ids2, k * sizeof *ids);
            char *text;
            size_t tl;
            assert_int_equal(tokenizer_decode(t, ids, k, flags & 1, &text, &tl), RILL_OK);
            assert_int_equal(tok_utf8_valid_prefix(text, tl), tl);
            rill_free(text), rill_free(ids), rill_free(ids2), tokbuf_free(&fixed);
            total++;
        }
        // Random ids (some out of range) decode without harm.
        for (int i = 0; i < 2000; i++) {
            int32_t ids[16];
            for (int j = 0; j < 16; j++)
                ids[j] = (int32_t)(test_rand_u64() % 70000) - 100;
            char *text;
            size_t tl;
            assert_int_equal(tokenizer_decode(t, ids, 16, i & 1, &text, &tl), RILL_OK);
            rill_free(text);
        }
        tokenizer_free(t);
    }
    assert_true(total >= 100000);
}

// Loads a tokenizer.json made by editing the SmolLM2 one with a Python expression on `d`, and
// checks that loading fails with a message that contains `field`.
static void expect_bad(const char *edit, const char *field) {
    const char *dir = test_tmp_path("-bad");
    char cmd[4096], out[256];
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && python3 - %s %s <<'EOF'\n"
             "import json, sys\n"
             "d = json.load(open(sys.argv[1] + '/tokenizers/smollm2/tokenizer.json'))\n"
             "%s\n"
             "open(sys.argv[2] + '/tokenizer.json', 'w').write(d if isinstance(d, str) else json.dumps(d))\n"
             "EOF",
             dir, getenv("RILL_TEST_DATA") ? getenv("RILL_TEST_DATA") : "tests/data", dir, edit);
    if (test_run(cmd, out, sizeof out) != 0) skip();
    tokenizer *t = NULL;
    rill_status st = tokenizer_load(dir, &t);
    if (st == RILL_OK || !strstr(rill_last_error(), field))
        fprintf(stderr, "edit `%s`: status %d, message \"%s\" (expected to name %s)\n", edit, st, rill_last_error(),
                field);
    assert_int_not_equal(st, RILL_OK);
    assert_null(t);
    assert_non_null(strstr(rill_last_error(), field));
}

static void test_bad_tokenizer_json_is_rejected_naming_the_field(void **state) {
    expect_bad("d['model']['merges'][3] = 'nosuchtoken x'", "model.merges[3]");
    expect_bad("d['model']['merges'][0] = 'a b c'", "model.merges[0]");
    expect_bad("d['model']['merges'][5] = 17", "model.merges[5]");
    expect_bad("d['model']['vocab']['x'] = 'seven'", "model.vocab[\"x\"]");
    expect_bad("d['model']['vocab'] = []", "model.vocab");
    expect_bad("del d['model']['merges']", "model.merges");
    expect_bad("d['model']['type'] = 'WordPiece'", "model.type");
    expect_bad("d['model']['unk_token'] = '<nope>'", "model.unk_token");
    expect_bad("d['added_tokens'][0]['content'] = ''", "added_tokens[0].content");
    expect_bad("d['added_tokens'][2]['id'] = -4", "added_tokens[2].id");
    expect_bad("d['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': "
               "'(unclosed'}, 'behavior': 'Isolated'}]}",
               "pre_tokenizer.pretokenizers[0].pattern");
    expect_bad("d['pre_tokenizer'] = {'type': 'Split', 'pattern': {'Regex': 'a'}, 'behavior': 'Sideways'}",
               "pre_tokenizer");
    expect_bad("d['normalizer'] = {'type': 'Sequence', 'normalizers': [{'type': 'Precompiled'}]}",
               "normalizer.normalizers[0]");
    expect_bad("d['decoder'] = {'type': 'Strip', 'content': 'ab', 'start': 1, 'stop': 0}", "decoder");
    expect_bad("d['post_processor'] = {'type': 'TemplateProcessing', 'single': [{'SpecialToken': {'id': 'X'}}], "
               "'special_tokens': {}}",
               "post_processor.single[0]");
    expect_bad("d = '{\"model\": '", "line 1");
    expect_bad("d = []", "not a JSON object");
}

static void test_missing_files_are_reported(void **state) {
    tokenizer *t = NULL;
    assert_int_equal(tokenizer_load("/nonexistent/tokenizer", &t), RILL_ENOTFOUND);
    assert_null(t);
    assert_non_null(strstr(rill_last_error(), "/nonexistent/tokenizer"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalizers_match_hf),
        cmocka_unit_test(test_split_behaviours_match_hf),
        cmocka_unit_test(test_pretokenizers_match_hf),
        cmocka_unit_test(test_decoders_match_hf),
        cmocka_unit_test(test_invalid_utf8_is_repaired_like_python),
        cmocka_unit_test(test_missing_files_are_reported),
        cmocka_unit_test(test_bad_tokenizer_json_is_rejected_naming_the_field),
        cmocka_unit_test(test_special_tokens_are_text_without_parse_special),
        cmocka_unit_test(test_bos_eos_follow_the_model_configuration),
        cmocka_unit_test(test_stream_never_splits_characters_or_byte_fallback),
        cmocka_unit_test(test_smollm2_json_matches_hf_on_corpus),
        cmocka_unit_test(test_smollm2_gguf_matches_hf_on_corpus),
        cmocka_unit_test(test_llama2_spm_json_matches_hf_on_corpus),
        cmocka_unit_test(test_llama2_spm_gguf_matches_hf_on_corpus),
        cmocka_unit_test(test_gemma3_gguf_matches_hf_on_corpus),
        cmocka_unit_test(test_llama3_json_ignore_merges_matches_hf_on_corpus),
        cmocka_unit_test(test_random_bytes_never_crash_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
