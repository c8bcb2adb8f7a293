// dtype.c: names and sizes of the dense element types.
#include "base/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[DTYPE_COUNT] = {
    [DTYPE_INVALID] = {"INVALID", 0}, [DTYPE_F64] = {"F64", 8},  [DTYPE_F32] = {"F32", 4},
    [DTYPE_F16] = {"F16", 2},         [DTYPE_BF16] = {"BF16", 2}, [DTYPE_I64] = {"I64", 8},
    [DTYPE_I32] = {"I32", 4},         [DTYPE_I16] = {"I16", 2},  [DTYPE_I8] = {"I8", 1},
    [DTYPE_U64] = {"U64", 8},         [DTYPE_U32] = {"U32", 4},  [DTYPE_U16] = {"U16", 2},
    [DTYPE_U8] = {"U8", 1},           [DTYPE_BOOL] = {"BOOL", 1},
};

size_t dtype_size(rill_dtype t) { return (unsigned)t < DTYPE_COUNT ? dtype_table[t].size : 0; }

const char *dtype_name(rill_dtype t) { return (unsigned)t < DTYPE_COUNT ? dtype_table[t].name : "INVALID"; }

rill_dtype dtype_from_name(const char *s) {
    for (int t = 1; t < DTYPE_COUNT; t++)
        if (!strcmp(s, dtype_table[t].name)) return (rill_dtype)t;
    return DTYPE_INVALID;
}

bool dtype_is_float(rill_dtype t) { return t == DTYPE_F64 || t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16; }
