// tokenizer_gguf.c: builds a tokenizer from GGUF metadata (tokenizer.ggml.*), the same pipeline
// that transformers' GGUF export produces: "gpt2" -> byte-level BPE with the split regex named by
// tokenizer.ggml.pre; "llama" -> SentencePiece-style BPE with byte fallback (Gemma: spaces
// replaced by U+2581, merges recovered from the vocabulary order), BOS / EOS from add_*_token.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer_internal.h"

#define K_LLAMA3                                                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "                                         \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define K_QWEN2                                                                                                        \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "                                              \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define K_TEKKEN                                                                                                       \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?" \
    "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| "                                     \
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"                                                                    \
    "\\s+(?!\\S)|\\s+"
#define K_GPT4O                                                                                                        \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'"  \
    "ll|'d)?"                                                                                                          \
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'" \
    "ll|'d)?"                                                                                                          \
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

// tokenizer.ggml.pre -> the split regex applied before ByteLevel (others: ByteLevel's GPT-2 regex).
static const struct {
    const char *pre, *regex;
} PRE_SPLITS[] = {
    {"llama3", K_LLAMA3},          {"llama-v3", K_LLAMA3},  {"llama-bpe", K_LLAMA3},
    {"falcon3", K_LLAMA3},         {"falcon-h1", K_LLAMA3}, {"pixtral", K_LLAMA3},
    {"midm-2.0", K_LLAMA3},        {"lfm2", K_LLAMA3},      {"dbrx", K_LLAMA3},
    {"smaug-bpe", K_LLAMA3},       {"tekken", K_TEKKEN},    {"qwen2", K_QWEN2},
    {"deepseek-r1-qwen", K_QWEN2}, {"megrez", K_QWEN2},     {"gpt-4o", K_GPT4O},
    {"llama4", K_GPT4O},
};

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef struct {
    const char *name; // the file, for messages
    const gguf_file *f;
    const gguf_kv *tokens, *types, *scores, *merges;
    char **spell;      // [n] each token as the vocabulary spells it (NUL-terminated)
    size_t *spell_len; // [n]
    uint64_t n;
} gctx;

static bool all_bytelevel(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = tok_utf8_decode((const uint8_t *)s + i, n - i, &c);
        if (!l || bytelevel_byte(c) < 0) return false;
        i += (size_t)l;
    }
    return true;
}

static bool py_blank_with_space(const char *s, size_t n) { // " " in t and not t.strip()
    bool space = false;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = tok_utf8_decode((const uint8_t *)s + i, n - i, &c);
        if (!l || !tok_is_py_space(c)) return false;
        space = space || c == ' ';
        i += (size_t)l;
    }
    return space && n > 0;
}

static size_t n_chars(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ((uint8_t)s[i] & 0xC0) != 0x80;
    return k;
}

// Spells every token the way the vocabulary is keyed: byte-level vocabularies keep tokens made of
// the byte alphabet and re-spell the others byte by byte; Gemma writes blank tokens as U+2581s.
static rill_status spell_tokens(gctx *g, bool byte_level, bool gemma) {
    g->spell = rill_calloc(g->n, sizeof *g->spell);
    g->spell_len = rill_calloc(g->n, sizeof *g->spell_len);
    if (!g->spell || !g->spell_len) return RILL_ENOMEM;
    tok_buf b = {0};
    for (uint64_t i = 0; i < g->n; i++) {
        const char *s = g->tokens->arr_strs[i].ptr;
        size_t n = g->tokens->arr_strs[i].len;
        b.n = 0;
        rill_status st = RILL_OK;
        if (byte_level && !all_bytelevel(s, n))
            for (size_t j = 0; !st && j < n; j++)
                st = tokbuf_put_cp(&b, bytelevel_cp((uint8_t)s[j]));
        else if (gemma && py_blank_with_space(s, n))
            for (size_t j = n_chars(s, n); !st && j > 0; j--)
                st = tokbuf_put(&b, "\xE2\x96\x81", 3);
        else
            st = tokbuf_put(&b, s, n);
        if (st || !(g->spell[i] = tok_strdup(b.p ? b.p : "", b.n))) return tokbuf_free(&b), RILL_ENOMEM;
        g->spell_len[i] = b.n;
    }
    tokbuf_free(&b);
    return RILL_OK;
}

typedef struct {
    double score;
    uint32_t l_chars, r_chars;
    uint64_t seq;
    int32_t l, r, into;
} gen_merge;

static int cmp_merge(const void *pa, const void *pb) {
    const gen_merge *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    if (a->l_chars != b->l_chars) return a->l_chars > b->l_chars ? -1 : 1;
    if (a->r_chars != b->r_chars) return a->r_chars > b->r_chars ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq ? 1 : 0;
}

// Recovers merges from the vocabulary as transformers' generate_merges does: every split of every
// token into two vocabulary pieces, best score first (Gemma: earlier tokens first), then longer
// left part, then longer right part, then vocabulary order.
static rill_status generate_merges(gctx *g, tokenizer *t, bool by_position) {
    size_t cap = 1024, n = 0;
    gen_merge *m = rill_malloc(cap * sizeof *m);
    if (!m) return RILL_ENOMEM;
    for (uint64_t i = 0; i < g->n; i++) {
        const char *s = g->spell[i];
        size_t len = g->spell_len[i];
        int32_t into = vocab_find(&t->vocab, s, len);
        if (into < 0 || (uint64_t)into != i) {
            // Not the last id of this piece: a repeat. Python's dict keeps the first position
            // for the order and the last id's score; the merge is generated once, at the first.
            bool first = true;
            for (uint64_t j = 0; j < i && first; j++)
                first = !(g->spell_len[j] == len && !memcmp(g->spell[j], s, len));
            if (!first) continue;
        }
        double score;
        if (by_position)
            score = -(double)into;
        else if (!gguf_arr_f64(g->scores, (uint64_t)into, &score))
            score = 0;
        size_t first_n = n;
        for (size_t k = 1; k < len; k++) {
            if (((uint8_t)s[k] & 0xC0) == 0x80) continue;
            int32_t l = vocab_find(&t->vocab, s, k), r = vocab_find(&t->vocab, s + k, len - k);
            if (l < 0 || r < 0) continue;
            if (n == cap) {
                gen_merge *q = rill_realloc(m, (cap *= 2) * sizeof *m);
                if (!q) return rill_free(m), RILL_ENOMEM;
                m = q;
            }
            m[n++] = (gen_merge){score, (uint32_t)n_chars(s, k), (uint32_t)n_chars(s + k, len - k), 0, l, r, into};
        }
        // Within a token: by (left id, right id).
        for (size_t a = first_n + 1; a < n; a++)
            for (size_t b = a; b > first_n && (m[b - 1].l > m[b].l || (m[b - 1].l == m[b].l && m[b - 1].r > m[b].r));
                 b--) {
                gen_merge tmp = m[b];
                m[b] = m[b - 1], m[b - 1] = tmp;
            }
    }
    for (size_t i = 0; i < n; i++)
        m[i].seq = i;
    qsort(m, n, sizeof *m, cmp_merge);
    rill_status st = RILL_OK;
    for (size_t i = 0; !st && i < n; i++)
        st = bpe_add_merge(&t->bpe, m[i].l, m[i].r, m[i].into, (uint32_t)i);
    rill_free(m);
    return st;
}

static rill_status file_merges(gctx *g, tokenizer *t) {
    tok_buf joined = {0};
    rill_status st = RILL_OK;
    for (uint64_t i = 0; !st && i < g->merges->arr_len; i++) {
        const char *s = g->merges->arr_strs[i].ptr;
        size_t n = g->merges->arr_strs[i].len;
        const char *sp = memchr(s, ' ', n);
        if (!sp) {
            st = rill_fail(RILL_EFORMAT, "%s: tokenizer.ggml.merges[%llu]: no space in \"%.*s\"", g->name,
                           (unsigned long long)i, (int)(n > 100 ? 100 : n), s);
            break;
        }
        size_t na = (size_t)(sp - s), nb = n - na - 1;
        joined.n = 0;
        if ((st = tokbuf_put(&joined, s, na)) || (st = tokbuf_put(&joined, sp + 1, nb))) break;
        int32_t a = vocab_find(&t->vocab, s, na), b = vocab_find(&t->vocab, sp + 1, nb);
        int32_t into = vocab_find(&t->vocab, joined.p, joined.n);
        if (a < 0 || b < 0 || into < 0)
            st =
                rill_fail(RILL_EFORMAT, "%s: tokenizer.ggml.merges[%llu]: \"%.*s\" names a token not in the vocabulary",
                          g->name, (unsigned long long)i, (int)(n > 100 ? 100 : n), s);
        else
            st = bpe_add_merge(&t->bpe, a, b, into, (uint32_t)i);
    }
    tokbuf_free(&joined);
    return st;
}

static rill_status set_pretok_bytelevel(tokenizer *t, const char *pre) {
    const char *split = NULL;
    for (size_t i = 0; pre && i < sizeof PRE_SPLITS / sizeof PRE_SPLITS[0]; i++)
        if (!strcmp(pre, PRE_SPLITS[i].pre)) split = PRE_SPLITS[i].regex;
    tok_pretokenizer *p = t->pretok = rill_calloc(1, sizeof *t->pretok);
    if (!p) return RILL_ENOMEM;
    if (!split) { // ByteLevel with its own GPT-2 regex
        p->kind = PRE_BYTELEVEL, p->use_regex = true, p->behavior = SPLIT_ISOLATED;
        return pattern_regex(&p->pat, TOK_GPT2_REGEX, strlen(TOK_GPT2_REGEX));
    }
    p->kind = PRE_SEQUENCE;
    if (!(p->items = rill_calloc(2, sizeof *p->items))) return RILL_ENOMEM;
    p->n_items = 2;
    p->items[0].kind = PRE_SPLIT, p->items[0].behavior = SPLIT_ISOLATED;
    p->items[1].kind = PRE_BYTELEVEL;
    return pattern_regex(&p->items[0].pat, split, strlen(split));
}

static rill_status replace_node(tok_decoder *d, const char *from, const char *to) {
    d->kind = DEC_REPLACE;
    d->str = tok_strdup(to, strlen(to)), d->str_len = strlen(to);
    if (!d->str) return RILL_ENOMEM;
    return pattern_literal(&d->pat, from, strlen(from));
}

// SentencePiece-style pipeline: Gemma (normalizer Replace " " -> U+2581) or Llama (Metaspace).
static rill_status set_spm_pipeline(tokenizer *t, const char *arch, bool add_space_prefix) {
    bool gemma = !strncmp(arch, "gemma", 5), phi3 = !strcmp(arch, "phi3");
    rill_status st;
    if (gemma || phi3) {
        tok_normalizer *nm = t->normalizer = rill_calloc(1, sizeof *nm);
        if (!nm) return RILL_ENOMEM;
        tok_normalizer *rep = nm;
        if (phi3) {
            nm->kind = NORM_SEQUENCE;
            if (!(nm->items = rill_calloc(2, sizeof *nm->items))) return RILL_ENOMEM;
            nm->n_items = 2;
            nm->items[0].kind = NORM_PREPEND;
            if (!(nm->items[0].str = tok_strdup("\xE2\x96\x81", 3))) return RILL_ENOMEM;
            nm->items[0].str_len = 3;
            rep = &nm->items[1];
        }
        rep->kind = NORM_REPLACE;
        if (!(rep->str = tok_strdup("\xE2\x96\x81", 3))) return RILL_ENOMEM;
        rep->str_len = 3;
        if ((st = pattern_literal(&rep->pat, " ", 1))) return st;
    } else {
        tok_pretokenizer *p = t->pretok = rill_calloc(1, sizeof *p);
        if (!p) return RILL_ENOMEM;
        p->kind = PRE_METASPACE, p->split = false;
        memcpy(p->rep, "\xE2\x96\x81", 3), p->rep_len = 3;
        p->prepend = add_space_prefix ? PREPEND_FIRST : PREPEND_NEVER;
    }
    bool strip = !gemma && !phi3 && add_space_prefix;
    tok_decoder *d = t->decoder = rill_calloc(1, sizeof *d);
    if (!d || !(d->items = rill_calloc(4, sizeof *d->items))) return RILL_ENOMEM;
    d->kind = DEC_SEQUENCE, d->n_items = strip ? 4 : 3;
    if ((st = replace_node(&d->items[0], "\xE2\x96\x81", " "))) return st;
    d->items[1].kind = DEC_BYTEFALLBACK;
    d->items[2].kind = DEC_FUSE;
    if (strip) d->items[3].kind = DEC_STRIP, d->items[3].content = ' ', d->items[3].start = 1;
    return RILL_OK;
}

static int64_t get_id(const gguf_file *f, const char *key, int64_t n) {
    int64_t v;
    return gguf_get_i64(f, key, &v) && v >= 0 && v < n ? v : -1;
}

static bool get_flag(const gguf_file *f, const char *key, bool dflt) {
    bool v;
    return gguf_get_bool(f, key, &v) ? v : dflt;
}

static rill_status build(gctx *g, tokenizer *t) {
    const gguf_file *f = g->f;
    gguf_string model, arch_s, pre_s;
    if (!gguf_get_str(f, "tokenizer.ggml.model", &model))
        return rill_fail(RILL_ENOTFOUND, "%s: tokenizer.ggml.model: missing", g->name);
    char mname[32] = "", arch[64] = "", pre[64] = "";
    snprintf(mname, sizeof mname, "%.*s", (int)(model.len < 31 ? model.len : 31), model.ptr);
    if (gguf_get_str(f, "general.architecture", &arch_s))
        snprintf(arch, sizeof arch, "%.*s", (int)(arch_s.len < 63 ? arch_s.len : 63), arch_s.ptr);
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre_s))
        snprintf(pre, sizeof pre, "%.*s", (int)(pre_s.len < 63 ? pre_s.len : 63), pre_s.ptr);
    bool byte_level = !strcmp(mname, "gpt2"), spm = !strcmp(mname, "llama");
    if (!byte_level && !spm)
        return rill_fail(RILL_EUNSUPPORTED, "%s: tokenizer.ggml.model: \"%s\" is not supported (gpt2, llama)", g->name,
                         mname);
    g->tokens = gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VAL_STRING);
    if (!g->tokens || !g->tokens->arr_len || g->tokens->arr_len >= (1u << 30))
        return rill_fail(RILL_EFORMAT, "%s: tokenizer.ggml.tokens: missing, empty or too long", g->name);
    g->n = g->tokens->arr_len;
    g->types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    g->scores = gguf_find_kv(f, "tokenizer.ggml.scores");
    g->merges = gguf_get_arr(f, "tokenizer.ggml.merges", GGUF_VAL_STRING);
    if (g->types && (g->types->type != GGUF_VAL_ARRAY || g->types->arr_len != g->n))
        return rill_fail(RILL_EFORMAT, "%s: tokenizer.ggml.token_type: not an array of %llu", g->name,
                         (unsigned long long)g->n);
    if (g->scores && (g->scores->type != GGUF_VAL_ARRAY || g->scores->arr_len != g->n))
        return rill_fail(RILL_EFORMAT, "%s: tokenizer.ggml.scores: not an array of %llu", g->name,
                         (unsigned long long)g->n);
    if (byte_level && !g->merges) return rill_fail(RILL_EFORMAT, "%s: tokenizer.ggml.merges: missing", g->name);
    bool gemma = spm && !strncmp(arch, "gemma", 5);
    rill_status st;
    if ((st = spell_tokens(g, byte_level, gemma))) return st;
    if ((st = vocab_init(&t->vocab, (int32_t)g->n))) return st;
    if (!(t->special = rill_calloc(g->n, 1))) return RILL_ENOMEM;
    for (uint64_t i = 0; i < g->n; i++)
        if ((st = vocab_set(&t->vocab, (int32_t)i, g->spell[i], g->spell_len[i]))) return st;
    if ((st = bpe_init(&t->bpe, &t->vocab))) return st;
    if (spm) {
        t->bpe.byte_fallback = t->bpe.fuse_unk = true;
        t->bpe.unk_id = vocab_find(&t->vocab, "<unk>", 5);
        st = g->merges ? file_merges(g, t) : generate_merges(g, t, gemma);
        if (!st) st = set_spm_pipeline(t, arch, get_flag(f, "tokenizer.ggml.add_space_prefix", true));
    } else {
        st = file_merges(g, t);
        if (!st) st = set_pretok_bytelevel(t, pre);
        if (!st && !(t->decoder = rill_calloc(1, sizeof *t->decoder))) st = RILL_ENOMEM;
        if (!st) t->decoder->kind = DEC_BYTELEVEL;
    }
    if (st) return st;
    // Control and unknown tokens are special added tokens (transformers adds unk / bos / eos as
    // special); user-defined ones are plain added tokens.
    for (uint64_t i = 0; g->types && i < g->n; i++) {
        int64_t ty;
        if (!gguf_arr_i64(g->types, i, &ty) || (ty != TT_CONTROL && ty != TT_USER_DEFINED && ty != TT_UNKNOWN))
            continue;
        const char *s = g->spell[i];
        size_t n = g->spell_len[i];
        if (!n || (byte_level && !all_bytelevel(g->tokens->arr_strs[i].ptr, g->tokens->arr_strs[i].len))) continue;
        int32_t id = vocab_find(&t->vocab, s, n);
        if (id < 0) continue;
        if ((st = tokenizer_add_token(t, id, s, n, ty != TT_USER_DEFINED, false, false, false, false))) return st;
    }
    if ((st = tokenizer_finish(t))) return st;
    int64_t n = (int64_t)g->n;
    t->bos = (int32_t)get_id(f, "tokenizer.ggml.bos_token_id", n);
    t->pad = (int32_t)get_id(f, "tokenizer.ggml.padding_token_id", n);
    int32_t eos = (int32_t)get_id(f, "tokenizer.ggml.eos_token_id", n);
    st = tokenizer_add_eos(t, eos);
    if (!st) st = tokenizer_add_eos(t, (int32_t)get_id(f, "tokenizer.ggml.eot_token_id", n));
    if (!st) st = tokenizer_add_eos(t, (int32_t)get_id(f, "tokenizer.ggml.eom_token_id", n));
    if (!st && get_flag(f, "tokenizer.ggml.add_bos_token", spm) && t->bos >= 0) st = tokids_push(&t->prefix, t->bos);
    if (!st && get_flag(f, "tokenizer.ggml.add_eos_token", false) && eos >= 0) st = tokids_push(&t->suffix, eos);
    gguf_string tpl;
    if (!st && gguf_get_str(f, "tokenizer.chat_template", &tpl) &&
        !(t->chat_template = tok_strdup(tpl.ptr, (size_t)tpl.len)))
        st = RILL_ENOMEM;
    return st;
}

rill_status tokenizer_load_gguf(const gguf_file *f, const char *name, tokenizer **out) {
    *out = NULL;
    tokenizer *t;
    rill_status st = tokenizer_alloc(&t);
    if (st) return st;
    gctx g = {.name = name ? name : "gguf", .f = f};
    st = build(&g, t);
    for (uint64_t i = 0; g.spell && i < g.n; i++)
        rill_free(g.spell[i]);
    rill_free(g.spell), rill_free(g.spell_len);
    if (st) return tokenizer_free(t), st;
    *out = t;
    return RILL_OK;
}
