// dtype.h: the element types of dense tensors (the safetensors set), with names and sizes.
#pragma once
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    DTYPE_INVALID = 0,
    DTYPE_F64,
    DTYPE_F32,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_I64,
    DTYPE_I32,
    DTYPE_I16,
    DTYPE_I8,
    DTYPE_U64,
    DTYPE_U32,
    DTYPE_U16,
    DTYPE_U8,
    DTYPE_BOOL,
    DTYPE_COUNT
} rill_dtype;

size_t dtype_size(rill_dtype t);           // bytes per element; 0 for DTYPE_INVALID
const char *dtype_name(rill_dtype t);      // the safetensors spelling: "F32", "BF16", ...
rill_dtype dtype_from_name(const char *s); // DTYPE_INVALID when unknown
bool dtype_is_float(rill_dtype t);
