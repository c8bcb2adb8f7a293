// gguf_repack.c: GGUF blocks -> MLX affine groups, exact. Blocks are unpacked by the decoder's own
// gguf_qblock_unpack, so codes and factors are the very f32 values that gguf_dequantize uses.
//
// Why the result is exact (affine computes w' = fl(fl(scale * q) + bias)):
// - Q4_1, Q5_1, Q4_K, Q5_K decode as fl(fl(s * q) + b) (x - y is x + (-y) in IEEE), the affine formula
//   itself: scale = s, bias = b; bit for bit, signed zeros included.
// - Q4_0, Q5_0, Q8_0, Q6_K decode as fl(s * (q - z)) with z = 8, 16, 128, 32: scale = s,
//   bias = -z * s.
//   s is an f16 (11 significant bits), times an int8 for Q6_K (<= 18 bits), and q has <= 8 bits
//   (Q6_K: 18 + 6), so s * q, z * s and s * (q - z) all fit f32's 24 bits (f16 subnormals are
//   f32 normals): every operation is exact and w' = w. Only a zero may differ in sign: gguf gives
//   -0.0 for q == z when s < 0 (and for some q when s is a zero), x + (-x) always gives +0.0.
#include "quant/gguf_repack.h"

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "quant/gguf_dequant.h"

typedef struct {
    gguf_dtype type;
    int bits, group_size;
} repack_format;

static const repack_format formats[] = {
    {GGUF_DTYPE_Q4_0, 4, 32}, {GGUF_DTYPE_Q4_1, 4, 32}, {GGUF_DTYPE_Q5_0, 5, 32}, {GGUF_DTYPE_Q5_1, 5, 32},
    {GGUF_DTYPE_Q8_0, 8, 32}, {GGUF_DTYPE_Q4_K, 4, 32}, {GGUF_DTYPE_Q5_K, 5, 32}, {GGUF_DTYPE_Q6_K, 6, 16},
};

static const repack_format *find_format(gguf_dtype type) {
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        if (formats[i].type == type) return &formats[i];
    return NULL;
}

bool gguf_repack_supported(gguf_dtype type) { return find_format(type) != NULL; }

bool gguf_repack_format(gguf_dtype type, int *bits, int *group_size) {
    const repack_format *f = find_format(type);
    if (f) *bits = f->bits, *group_size = f->group_size;
    return f != NULL;
}

size_t gguf_repack_bytes(gguf_dtype type, uint64_t rows, uint64_t cols) {
    const repack_format *f = find_format(type);
    return f ? affine_alloc_bytes(rows, cols, f->bits, f->group_size, DTYPE_F32) : 0;
}

// Writes one unpacked block's factors as affine scales/biases [block_size / group_size] and its
// codes into q [block_size]. Fails on a non-finite factor.
static rill_status put_block(const gguf_qblock *b, uint8_t *q, float *scales, float *biases) {
    int n_groups = b->block_size / b->group_size;
    for (int g = 0; g < n_groups; g++) {
        float s = b->scale[g];
        float bias = b->zero ? -(float)b->zero * s : b->bias[g];
        if (!isfinite(s) || !isfinite(bias)) return RILL_EFORMAT;
        scales[g] = s;
        biases[g] = bias;
    }
    memcpy(q, b->q, (size_t)b->block_size);
    return RILL_OK;
}

static rill_status check_sizes(const gguf_dtype_traits *tr, size_t src_bytes, uint64_t rows, uint64_t cols) {
    if (cols == 0 || cols % tr->block_size)
        return rill_fail(RILL_EINVAL, "gguf repack: %s row of %llu elements is not a whole number of %u-element blocks",
                         tr->name, (unsigned long long)cols, tr->block_size);
    uint64_t row_bytes = cols / tr->block_size * tr->block_bytes;
    if (rows > UINT64_MAX / row_bytes || rows * row_bytes != src_bytes)
        return rill_fail(RILL_EINVAL, "gguf repack: %s tensor [%llu][%llu] needs %llu bytes per row, got %zu bytes",
                         tr->name, (unsigned long long)rows, (unsigned long long)cols, (unsigned long long)row_bytes,
                         src_bytes);
    return RILL_OK;
}

// Repacks row r: unpacks its blocks into codes q [cols] and the row's scales/biases, then packs.
static rill_status repack_row(gguf_dtype type, const gguf_dtype_traits *tr, const uint8_t *row, uint64_t r, uint8_t *q,
                              affine_tensor *out) {
    uint64_t n_blocks = out->cols / tr->block_size;
    size_t groups_per_row = affine_groups_per_row(out);
    float *scales = (float *)out->scales + r * groups_per_row;
    float *biases = (float *)out->biases + r * groups_per_row;
    int groups_per_block = (int)tr->block_size / out->group_size;
    gguf_qblock b;
    for (uint64_t i = 0; i < n_blocks; i++) {
        gguf_qblock_unpack(type, row + i * tr->block_bytes, &b);
        rill_status st =
            put_block(&b, q + i * tr->block_size, scales + i * groups_per_block, biases + i * groups_per_block);
        if (st != RILL_OK)
            return rill_fail(st, "gguf repack: %s block %llu of row %llu has a non-finite scale or min", tr->name,
                             (unsigned long long)i, (unsigned long long)r);
    }
    affine_pack(q, (size_t)out->cols, out->bits, out->packed + r * affine_words_per_row(out));
    return RILL_OK;
}

rill_status gguf_repack_affine(gguf_dtype type, const void *src, size_t src_bytes, uint64_t rows, uint64_t cols,
                               affine_tensor *out) {
    const repack_format *f = find_format(type);
    const gguf_dtype_traits *tr = gguf_dtype_info((uint32_t)type);
    if (!f)
        return tr ? rill_fail(RILL_EUNSUPPORTED, "gguf repack: type %s has no exact affine form", tr->name)
                  : rill_fail(RILL_EUNSUPPORTED, "gguf repack: unknown GGUF type %u", (unsigned)type);
    rill_status st = check_sizes(tr, src_bytes, rows, cols);
    if (st != RILL_OK) return st;
    st = affine_alloc(out, rows, cols, f->bits, f->group_size, DTYPE_F32);
    if (st != RILL_OK) return st;
    uint8_t *q = rill_malloc((size_t)cols); // codes of one row
    if (!q) {
        affine_free(out);
        return RILL_ENOMEM;
    }
    uint64_t row_bytes = cols / tr->block_size * tr->block_bytes;
    for (uint64_t r = 0; r < rows && st == RILL_OK; r++)
        st = repack_row(type, tr, (const uint8_t *)src + r * row_bytes, r, q, out);
    rill_free(q);
    if (st != RILL_OK) affine_free(out);
    return st;
}
