// pipeline.h: the stages of HF tokenizers' pipeline that rill implements, as plain data built by
// the loaders: patterns (literal or PCRE2 regex), normalizers, pre-tokenizers and decoders, and
// the list of pieces (byte strings) that flows between them.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tok_util.h"

// ---- pieces ----------------------------------------------------------------------------------
typedef struct {
    uint32_t off, len; // bytes [off, off + len) of the owning tok_pieces' text
    bool at_start;     // the piece begins at byte 0 of the caller's input (Metaspace "first")
} tok_span;

typedef struct {
    tok_buf text;  // the bytes of every piece, back to back
    tok_span *s;   // [cap] pieces in order
    size_t n, cap; // pieces used, allocated
} tok_pieces;

rill_status pieces_add(tok_pieces *p, const char *s, size_t n, bool at_start); // copies s
rill_status pieces_add_empty(tok_pieces *p, bool at_start);                    // a piece to be filled by pieces_grow
rill_status pieces_grow(tok_pieces *p, const char *s, size_t n);               // appends s to the last piece
static inline const char *piece_ptr(const tok_pieces *p, size_t i) { return p->text.p + p->s[i].off; }
static inline void pieces_reset(tok_pieces *p) { p->n = 0, p->text.n = 0; }
void pieces_free(tok_pieces *p);

// ---- patterns (pattern.c) -------------------------------------------------------------------
typedef struct {
    bool is_regex;
    char *lit; // [lit_len] literal pattern (String)
    size_t lit_len;
    pcre2_code *re;       // Regex, JIT-compiled when the JIT is available
    pcre2_match_data *md; // scratch for matching (callers hold the tokenizer lock)
} tok_pattern;

rill_status pattern_literal(tok_pattern *p, const char *s, size_t n);
// Compiles an Oniguruma-style regex (as HF writes them) with PCRE2 in UTF + UCP mode. `\s` and
// `\S` are rewritten to Unicode White_Space, which is what Oniguruma means by them. On failure
// the message gives PCRE2's reason and the offset in the pattern.
rill_status pattern_regex(tok_pattern *p, const char *re, size_t n);
// Finds the next match in s[0..n) at or after *from and sets [*ms, *me); advances *from past it
// (past one character more after an empty match). False when there is none.
bool pattern_next(const tok_pattern *p, const char *s, size_t n, size_t *from, size_t *ms, size_t *me);
void pattern_free(tok_pattern *p);

// ---- normalizers (normalizer.c) ----------------------------------------------------------------
typedef enum {
    NORM_NFC,
    NORM_NFD,
    NORM_NFKC,
    NORM_NFKD,
    NORM_LOWERCASE,
    NORM_PREPEND,
    NORM_REPLACE,
    NORM_STRIP,
    NORM_SEQUENCE,
} norm_kind;

typedef struct tok_normalizer {
    norm_kind kind;
    char *str; // [str_len] Prepend: the prefix; Replace: the content
    size_t str_len;
    tok_pattern pat;              // Replace
    bool left, right;             // Strip
    struct tok_normalizer *items; // [n_items] Sequence
    size_t n_items;
} tok_normalizer;

// out = normalize(s[0..n)); out is cleared first. Input must be valid UTF-8.
rill_status normalizer_apply(const tok_normalizer *nm, const char *s, size_t n, tok_buf *out);
void normalizer_free(tok_normalizer *nm); // frees what it owns, not nm itself

// ---- pre-tokenizers (pretokenizer.c) -----------------------------------------------------------
typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_WHITESPACE_SPLIT, PRE_SEQUENCE } pre_kind;
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } prepend_scheme;

typedef struct tok_pretokenizer {
    pre_kind kind;
    tok_pattern pat;         // Split; ByteLevel with use_regex (the GPT-2 pattern)
    split_behavior behavior; // Split
    bool invert;             // Split
    bool add_prefix_space;   // ByteLevel
    bool use_regex;          // ByteLevel
    char rep[4];             // Metaspace: UTF-8 of the replacement character
    int rep_len;
    prepend_scheme prepend;         // Metaspace
    bool split;                     // Metaspace
    bool individual_digits;         // Digits
    struct tok_pretokenizer *items; // [n_items] Sequence
    size_t n_items;
} tok_pretokenizer;

// Replaces each piece of *p by its sub-pieces; `tmp` is scratch (swapped with *p).
rill_status pretok_apply(const tok_pretokenizer *pt, tok_pieces *p, tok_pieces *tmp);
void pretok_free(tok_pretokenizer *pt);
extern const char TOK_GPT2_REGEX[];

// GPT-2's reversible map from bytes to printable characters (ByteLevel).
static inline uint32_t bytelevel_cp(uint8_t b) { // the character that stands for byte b
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    return 256u + (b <= 32 ? b : b <= 160 ? 33u + (b - 127u) : 67u);
}
static inline int bytelevel_byte(uint32_t cp) { // the byte that character cp stands for, or -1
    if (cp < 256) return ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || cp >= 174) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    return k < 33 ? (int)k : k < 67 ? (int)(127 + k - 33) : 173;
}

// ---- decoders (decoder.c) ----------------------------------------------------------------------
typedef enum {
    DEC_BYTELEVEL,
    DEC_METASPACE,
    DEC_BYTEFALLBACK,
    DEC_FUSE,
    DEC_STRIP,
    DEC_REPLACE,
    DEC_SEQUENCE
} dec_kind;

typedef struct tok_decoder {
    dec_kind kind;
    char rep[4]; // Metaspace: UTF-8 of the replacement character
    int rep_len;
    prepend_scheme prepend; // Metaspace
    uint32_t content;       // Strip: the character to strip
    size_t start, stop;     // Strip: how many from each end
    tok_pattern pat;        // Replace
    char *str;              // [str_len] Replace: the content
    size_t str_len;
    struct tok_decoder *items; // [n_items] Sequence
    size_t n_items;
} tok_decoder;

// Transforms the token strings in *p (HF's decode_chain); `tmp` is scratch (swapped with *p).
rill_status decoder_apply(const tok_decoder *d, tok_pieces *p, tok_pieces *tmp);
void decoder_free(tok_decoder *d);
