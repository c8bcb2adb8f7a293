// gguf.h: the GGUF reader (versions 2 and 3). It maps the file, parses and validates the header,
// every metadata key/value (arrays included) and the tensor infos, and hands out pointers to
// tensor data inside the mapping. Every count, length and offset is checked against the file.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mapfile.h"
#include "base/status.h"
#include "io/gguf_types.h"

typedef enum {
    GGUF_VAL_UINT8 = 0,
    GGUF_VAL_INT8 = 1,
    GGUF_VAL_UINT16 = 2,
    GGUF_VAL_INT16 = 3,
    GGUF_VAL_UINT32 = 4,
    GGUF_VAL_INT32 = 5,
    GGUF_VAL_FLOAT32 = 6,
    GGUF_VAL_BOOL = 7,
    GGUF_VAL_STRING = 8,
    GGUF_VAL_ARRAY = 9,
    GGUF_VAL_UINT64 = 10,
    GGUF_VAL_INT64 = 11,
    GGUF_VAL_FLOAT64 = 12,
    GGUF_VAL_COUNT
} gguf_value_type;

// A string inside the mapping: not NUL-terminated.
typedef struct {
    const char *ptr;
    uint64_t len;
} gguf_string;

typedef struct gguf_kv {
    char *key;         // NUL-terminated copy (keys with a NUL byte inside are rejected)
    uint64_t file_pos; // byte of the key in the file, for messages
    gguf_value_type type;
    union {
        uint64_t u64;    // unsigned integers and bool, widened
        int64_t i64;     // signed integers, widened
        double f64;      // FLOAT32 and FLOAT64, widened
        gguf_string str; // STRING
    } v;
    // ARRAY: element type and count. `arr_data` points at the raw little-endian elements in the
    // mapping (possibly unaligned: read numbers with the gguf_arr_* helpers). Arrays of strings
    // also get an index `arr_strs`. Nested arrays (arr_type == GGUF_VAL_ARRAY) are bound-checked
    // and kept as raw bytes.
    gguf_value_type arr_type;
    uint64_t arr_len;        // elements
    uint64_t arr_bytes;      // bytes of the encoded elements
    const uint8_t *arr_data; // [arr_bytes] inside the mapping
    gguf_string *arr_strs;   // [arr_len] for arrays of strings, else NULL
} gguf_kv;

typedef struct {
    char *name;        // NUL-terminated copy
    uint64_t file_pos; // byte of the tensor info in the file, for messages
    uint32_t n_dims;   // 1..4
    uint64_t ne[4];    // elements per dimension, ne[0] fastest (GGUF order); unused = 1; 0 allowed
    gguf_dtype type;
    uint64_t offset;     // bytes from the start of the data section (a multiple of the alignment)
    uint64_t n_elements; // product of ne
    uint64_t n_bytes;    // n_elements / block_size * block_bytes
    const uint8_t *data; // [n_bytes] inside the mapping
} gguf_tensor;

typedef struct gguf_file {
    mapped_file map;
    uint32_t version;     // 2 or 3
    uint64_t alignment;   // general.alignment, default 32
    uint64_t data_offset; // start of the tensor data section, bytes from the file start
    uint64_t n_kv;
    gguf_kv *kv; // [n_kv] in file order
    uint64_t n_tensors;
    gguf_tensor *tensors; // [n_tensors] in file order
    // Private: the name pools and the lookup tables (open addressing; slot = index + 1, 0 = empty).
    char *kv_names;         // every key, NUL-terminated, back to back
    char *tensor_names;     // every tensor name, likewise
    uint32_t *kv_slots;     // [kv_mask + 1]
    uint32_t *tensor_slots; // [tensor_mask + 1]
    uint64_t kv_mask, tensor_mask;
} gguf_file;

// Limits applied to hostile input.
#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_KV      (1u << 20)
#define GGUF_MAX_STRING  (1u << 26)   // 64 MiB for one string
#define GGUF_MAX_ARRAY   (1ull << 32) // elements in one array
#define GGUF_MAX_NAME    65535        // bytes in a key or tensor name
#define GGUF_MAX_DEPTH   8            // arrays nested inside arrays

#define GGUF_DEFAULT_ALIGNMENT 32

// Opens and validates `path`. On failure *out is NULL and the message names the file, the key
// or tensor, the byte offset and the reason. RILL_EFORMAT: malformed; RILL_EUNSUPPORTED: version
// 1 or a big-endian file; RILL_ENOTFOUND / RILL_EIO: the file; RILL_ENOMEM: allocation.
rill_status gguf_open(const char *path, gguf_file **out);
void gguf_close(gguf_file *f); // NULL is allowed

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);          // NULL when absent
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); // NULL when absent

// Typed getters: false when the key is absent or has an incompatible type.
// Integers of any width and sign convert when the value fits; floats accept any numeric type.
bool gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
bool gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
bool gguf_get_f64(const gguf_file *f, const char *key, double *out);
bool gguf_get_bool(const gguf_file *f, const char *key, bool *out);
bool gguf_get_str(const gguf_file *f, const char *key, gguf_string *out);
// The array under `key` when its elements have type `elem`, else NULL.
const gguf_kv *gguf_get_arr(const gguf_file *f, const char *key, gguf_value_type elem);

// Array element access; false when `kv` is not an array or `i` is out of range.
// gguf_arr_i64: integer or bool elements that fit, and float elements that are whole numbers.
// gguf_arr_f64: any numeric or bool element. gguf_arr_str: string elements.
bool gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out);
bool gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out);
bool gguf_arr_str(const gguf_kv *kv, uint64_t i, gguf_string *out);

const char *gguf_value_type_name(gguf_value_type t); // "uint32", "array", ...; "?" if unknown
size_t gguf_value_type_size(gguf_value_type t);      // bytes of a fixed-size value; 0 for string/array
