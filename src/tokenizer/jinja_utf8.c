// jinja_utf8.c: UTF-8 decoding and Python's whitespace set for the chat-template interpreter.
// Invalid sequences decode as U+FFFD one byte at a time, so every loop over a string advances.
#include "tokenizer/jinja_utf8.h"

size_t utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    *cp = 0xfffd;
    if (n == 0) return 0;
    if (p[0] < 0x80) return *cp = p[0], 1;
    size_t len = p[0] >= 0xf0 && p[0] < 0xf5 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    if (p[0] >= 0xf5) len = 0;
    if (len == 0 || len > n) return 1;
    uint32_t c = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 1;
        c = c << 6 | (p[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) return 1;
    *cp = c;
    return len;
}

size_t utf8_count(const char *p, size_t n) {
    size_t k = 0;
    uint32_t cp;
    for (size_t i = 0; i < n; k++)
        i += utf8_decode(p + i, n - i, &cp);
    return k;
}

size_t utf8_offset(const char *p, size_t n, size_t k) {
    size_t i = 0;
    uint32_t cp;
    while (k-- > 0 && i < n)
        i += utf8_decode(p + i, n - i, &cp);
    return i;
}

bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

size_t utf8_space_len(const char *p, size_t n) {
    uint32_t cp;
    size_t len = utf8_decode(p, n, &cp);
    return len && py_isspace(cp) ? len : 0;
}

size_t utf8_space_len_back(const char *p, size_t n) {
    size_t start = n;
    for (size_t back = 1; back <= 4 && back <= n; back++) { // find the start byte of the last character
        unsigned char c = (unsigned char)p[n - back];
        if ((c & 0xc0) != 0x80) {
            start = n - back;
            break;
        }
    }
    if (start == n) return 0;
    uint32_t cp;
    size_t len = utf8_decode(p + start, n - start, &cp);
    return start + len == n && py_isspace(cp) ? len : 0;
}
