// gguf_dequant.c: GGUF block formats -> f32. Each quantized type has one unpack function that
// turns a block into codes plus per-group f32 factors, computed exactly as gguf-py's numpy code
// does (f16 -> f32, then f32 products); decoding is then one shared loop. Every product here is
// exact in f32 (an f16's 11 significant bits times integers of at most 8 bits, twice at most), so
// the only rounding is the final addition, and FMA contraction or evaluation order cannot change
// a bit: the values equal numpy's f32 results exactly.
#include "quant/gguf_dequant.h"

#include <string.h>

#include "base/half.h"

static float rd_f16(const uint8_t *p) { return f16_to_f32((uint16_t)(p[0] | p[1] << 8)); }

static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void set_shape(gguf_qblock *b, int block_size, int group_size, int zero) {
    b->block_size = block_size;
    b->group_size = group_size;
    b->zero = zero;
    memset(b->bias, 0, sizeof b->bias);
}

// 32 nibbles in 16 bytes: element j < 16 is the low nibble of qs[j], element j + 16 the high one.
static void nibbles32(const uint8_t *qs, uint8_t *q) {
    for (int j = 0; j < 16; j++) {
        q[j] = qs[j] & 0x0F;
        q[j + 16] = qs[j] >> 4;
    }
}

// Adds bit j of the little-endian word qh as bit 4 of q[j], for 32 elements.
static void high_bits32(uint32_t qh, uint8_t *q) {
    for (int j = 0; j < 32; j++)
        q[j] |= (uint8_t)(((qh >> j) & 1) << 4);
}

// Q4_0: d f16, qs[16]. w = d * (q - 8).
static void unpack_q4_0(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 32, 32, 8);
    b->scale[0] = rd_f16(s);
    nibbles32(s + 2, b->q);
}

// Q4_1: d f16, m f16, qs[16]. w = d * q + m.
static void unpack_q4_1(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 32, 32, 0);
    b->scale[0] = rd_f16(s);
    b->bias[0] = rd_f16(s + 2);
    nibbles32(s + 4, b->q);
}

// Q5_0: d f16, qh u32 (bit j = bit 4 of element j), qs[16]. w = d * (q - 16).
static void unpack_q5_0(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 32, 32, 16);
    b->scale[0] = rd_f16(s);
    nibbles32(s + 6, b->q);
    high_bits32(rd_u32(s + 2), b->q);
}

// Q5_1: d f16, m f16, qh u32, qs[16]. w = d * q + m.
static void unpack_q5_1(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 32, 32, 0);
    b->scale[0] = rd_f16(s);
    b->bias[0] = rd_f16(s + 2);
    nibbles32(s + 8, b->q);
    high_bits32(rd_u32(s + 4), b->q);
}

// Q8_0: d f16, qs int8[32]. w = d * qs = d * (q - 128) with q = qs + 128.
static void unpack_q8_0(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 32, 32, 128);
    b->scale[0] = rd_f16(s);
    for (int j = 0; j < 32; j++)
        b->q[j] = s[2 + j] ^ 0x80;
}

// 2-bit fields of 64 bytes: element h*128 + k*32 + l is bits 2k..2k+1 of qs[h*32 + l]
// (Q2_K's codes, Q3_K's low bits).
static void crumbs256(const uint8_t *qs, uint8_t *q) {
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++)
                q[h * 128 + k * 32 + l] = (qs[h * 32 + l] >> (2 * k)) & 3;
}

// Nibbles of 128 bytes: element c*64 + k*32 + l is nibble k of qs[c*32 + l] (Q4_K, Q5_K).
static void nibbles256(const uint8_t *qs, uint8_t *q) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            q[c * 64 + l] = qs[c * 32 + l] & 0x0F;
            q[c * 64 + 32 + l] = qs[c * 32 + l] >> 4;
        }
}

// One bit per element from 32 bytes: element k*32 + l takes bit k of hm[l], placed at `shift`.
static void bitplanes256(const uint8_t *hm, int shift, uint8_t *q) {
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 32; l++)
            q[k * 32 + l] |= (uint8_t)(((hm[l] >> k) & 1) << shift);
}

// Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d f16, dmin f16.
// Groups of 16: w = (d * sc) * q - (dmin * m).
static void unpack_q2_k(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 256, 16, 0);
    float d = rd_f16(s + 80), dmin = rd_f16(s + 82);
    for (int g = 0; g < 16; g++) {
        b->scale[g] = d * (float)(s[g] & 0x0F);
        float ml = dmin * (float)(s[g] >> 4);
        b->bias[g] = -ml;
    }
    crumbs256(s + 16, b->q);
}

// Q3_K: hmask[32], qs[64], scales[12] (16 signed 6-bit values, offset 32), d f16.
// Groups of 16: w = (d * (sc - 32)) * (q - 4), q = low 2 bits | hmask bit << 2.
static void unpack_q3_k(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 256, 16, 4);
    const uint8_t *sc = s + 96;
    float d = rd_f16(s + 108);
    for (int g = 0; g < 16; g++) {
        int lo = (sc[g % 8] >> (4 * (g / 8))) & 0x0F;
        int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 0x03;
        b->scale[g] = d * (float)((lo | hi << 4) - 32);
    }
    crumbs256(s + 32, b->q);
    bitplanes256(s, 2, b->q);
}

// The K-quants' 12 bytes of eight 6-bit scales and eight 6-bit mins (Q4_K, Q5_K).
static void k_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0F) | (s[j - 4] >> 6) << 4;
        *m = (s[j + 4] >> 4) | (s[j] >> 6) << 4;
    }
}

// Groups of 32 with w = (d * sc) * q - (dmin * m), from d, dmin and the packed scales at s.
static void k_groups(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 256, 32, 0);
    float d = rd_f16(s), dmin = rd_f16(s + 2);
    for (int g = 0; g < 8; g++) {
        int sc, m;
        k_scale_min(s + 4, g, &sc, &m);
        b->scale[g] = d * (float)sc;
        float dm = dmin * (float)m;
        b->bias[g] = -dm;
    }
}

// Q4_K: d f16, dmin f16, scales[12], qs[128].
static void unpack_q4_k(const uint8_t *s, gguf_qblock *b) {
    k_groups(s, b);
    nibbles256(s + 16, b->q);
}

// Q5_K: d f16, dmin f16, scales[12], qh[32] (bit k of qh[l] = bit 4 of element k*32 + l), qs[128].
static void unpack_q5_k(const uint8_t *s, gguf_qblock *b) {
    k_groups(s, b);
    nibbles256(s + 48, b->q);
    bitplanes256(s + 16, 4, b->q);
}

// Q6_K: ql[128], qh[64], scales int8[16], d f16. Groups of 16: w = (d * sc) * (q - 32).
// Element h*128 + j: low nibble k = j/64 of ql[h*64 + j%64], high 2 bits t = j/32 of qh[h*32 + j%32].
static void unpack_q6_k(const uint8_t *s, gguf_qblock *b) {
    set_shape(b, 256, 16, 32);
    const uint8_t *ql = s, *qh = s + 128, *sc = s + 192;
    float d = rd_f16(s + 208);
    for (int g = 0; g < 16; g++)
        b->scale[g] = d * (float)(int8_t)sc[g];
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 128; j++) {
            int lo = (ql[h * 64 + j % 64] >> (4 * (j / 64))) & 0x0F;
            int hi = (qh[h * 32 + j % 32] >> (2 * (j / 32))) & 0x03;
            b->q[h * 128 + j] = (uint8_t)(lo | hi << 4);
        }
}

typedef void (*unpack_fn)(const uint8_t *src, gguf_qblock *out);

static unpack_fn unpacker(gguf_dtype type) {
    switch (type) {
    case GGUF_DTYPE_Q4_0: return unpack_q4_0;
    case GGUF_DTYPE_Q4_1: return unpack_q4_1;
    case GGUF_DTYPE_Q5_0: return unpack_q5_0;
    case GGUF_DTYPE_Q5_1: return unpack_q5_1;
    case GGUF_DTYPE_Q8_0: return unpack_q8_0;
    case GGUF_DTYPE_Q2_K: return unpack_q2_k;
    case GGUF_DTYPE_Q3_K: return unpack_q3_k;
    case GGUF_DTYPE_Q4_K: return unpack_q4_k;
    case GGUF_DTYPE_Q5_K: return unpack_q5_k;
    case GGUF_DTYPE_Q6_K: return unpack_q6_k;
    default: return NULL;
    }
}

bool gguf_qblock_supported(gguf_dtype type) { return unpacker(type) != NULL; }

bool gguf_dequant_supported(gguf_dtype type) {
    return type == GGUF_DTYPE_F32 || type == GGUF_DTYPE_F16 || type == GGUF_DTYPE_BF16 || gguf_qblock_supported(type);
}

void gguf_qblock_unpack(gguf_dtype type, const uint8_t *src, gguf_qblock *out) { unpacker(type)(src, out); }

void gguf_qblock_decode(const gguf_qblock *b, float *dst) {
    for (int i = 0; i < b->block_size; i++) {
        int g = i / b->group_size;
        if (b->zero) {
            dst[i] = b->scale[g] * (float)((int)b->q[i] - b->zero);
        } else {
            float t = b->scale[g] * (float)b->q[i];
            dst[i] = t + b->bias[g];
        }
    }
}

static void decode_plain(gguf_dtype type, const uint8_t *s, float *dst, uint64_t n) {
    if (type == GGUF_DTYPE_F32) {
        memcpy(dst, s, n * 4);
    } else if (type == GGUF_DTYPE_F16) {
        for (uint64_t i = 0; i < n; i++)
            dst[i] = rd_f16(s + 2 * i);
    } else { // BF16
        for (uint64_t i = 0; i < n; i++)
            dst[i] = bf16_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
    }
}

rill_status gguf_dequantize(gguf_dtype type, const void *src, size_t src_bytes, float *dst, uint64_t n_elements) {
    const gguf_dtype_traits *tr = gguf_dtype_info((uint32_t)type);
    if (!tr) return rill_fail(RILL_EUNSUPPORTED, "gguf dequantize: unknown GGUF type %u", (unsigned)type);
    if (!gguf_dequant_supported(type))
        return rill_fail(RILL_EUNSUPPORTED, "gguf dequantize: type %s is not supported", tr->name);
    if (n_elements % tr->block_size)
        return rill_fail(RILL_EINVAL, "gguf dequantize: %llu %s elements are not a whole number of %u-element blocks",
                         (unsigned long long)n_elements, tr->name, tr->block_size);
    uint64_t n_blocks = n_elements / tr->block_size;
    if (n_blocks > UINT64_MAX / tr->block_bytes || n_blocks * tr->block_bytes != src_bytes)
        return rill_fail(RILL_EINVAL, "gguf dequantize: %llu %s elements need %llu blocks of %u bytes, got %zu bytes",
                         (unsigned long long)n_elements, tr->name, (unsigned long long)n_blocks, tr->block_bytes,
                         src_bytes);
    const uint8_t *s = src;
    if (!gguf_qblock_supported(type)) {
        decode_plain(type, s, dst, n_elements);
        return RILL_OK;
    }
    unpack_fn unpack = unpacker(type);
    gguf_qblock b;
    for (uint64_t i = 0; i < n_blocks; i++) {
        unpack(s + i * tr->block_bytes, &b);
        gguf_qblock_decode(&b, dst + i * tr->block_size);
    }
    return RILL_OK;
}
