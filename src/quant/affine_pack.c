// affine_pack.c: packing of `bits`-bit integers into uint32 words as MLX stores them: one
// little-end-first bit stream per row. Value i occupies bits [i*bits, (i+1)*bits) of the stream,
// and bit j of the stream is bit j%32 of word j/32, so 3-, 5- and 6-bit values cross word
// boundaries (MLX writes them as 8 values per 3 or 5 bytes and 4 values per 3 bytes: the same stream).
#include <assert.h>
#include <string.h>

#include "quant/affine.h"

void affine_pack(const uint8_t *q, size_t n, int bits, uint32_t *out) {
    assert(bits >= 1 && bits <= 8 && (n * (size_t)bits) % 32 == 0);
    memset(out, 0, n * (size_t)bits / 32 * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        size_t pos = i * (size_t)bits, word = pos / 32;
        unsigned off = (unsigned)(pos % 32);
        uint32_t v = q[i] & ((1u << bits) - 1);
        out[word] |= v << off;
        if (off + (unsigned)bits > 32) out[word + 1] |= v >> (32 - off);
    }
}

void affine_unpack_at(const uint32_t *packed, size_t first, size_t n, int bits, uint8_t *q) {
    assert(bits >= 1 && bits <= 8);
    uint32_t mask = (1u << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        size_t pos = (first + i) * (size_t)bits, word = pos / 32;
        unsigned off = (unsigned)(pos % 32);
        uint32_t v = packed[word] >> off;
        if (off + (unsigned)bits > 32) v |= packed[word + 1] << (32 - off);
        q[i] = (uint8_t)(v & mask);
    }
}

void affine_unpack(const uint32_t *packed, size_t n, int bits, uint8_t *q) {
    assert((n * (size_t)bits) % 32 == 0);
    affine_unpack_at(packed, 0, n, bits, q);
}
