// jinja_utf8.h: the few UTF-8 facts the chat-template interpreter needs: decoding one code point
// (invalid bytes count as one U+FFFD each, so hostile input never reads past the end), counting code
// points like Python's len(), and Python's notion of whitespace for str.strip()/split().
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

size_t utf8_decode(const char *p, size_t n, uint32_t *cp); // bytes consumed (>= 1 when n >= 1)
size_t utf8_count(const char *p, size_t n);                // code points
size_t utf8_offset(const char *p, size_t n, size_t k);     // byte offset of code point k (n if past)
bool py_isspace(uint32_t cp);
// The length in bytes of the whitespace character starting at p (0 if none).
size_t utf8_space_len(const char *p, size_t n);
// The length in bytes of the whitespace character ending at p + n (0 if none).
size_t utf8_space_len_back(const char *p, size_t n);
