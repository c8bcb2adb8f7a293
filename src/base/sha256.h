// sha256.h: SHA-256 (FIPS 180-4), streaming and one-shot, with a lowercase hex form.
// Used for tensor fixtures, prompt-cache keys and file checksums.
#pragma once
#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32

typedef struct {
    uint32_t h[8];    // the running hash state
    uint64_t n_bytes; // message bytes absorbed so far
    uint8_t buf[64];  // [buf_len] bytes of the current partial block
    size_t buf_len;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, uint8_t digest[SHA256_BYTES]);

void sha256(const void *data, size_t n, uint8_t digest[SHA256_BYTES]);
// Writes the 64 lowercase hex digits of digest and a NUL into hex [65].
void sha256_hex(const uint8_t digest[SHA256_BYTES], char hex[2 * SHA256_BYTES + 1]);
