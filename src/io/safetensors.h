// safetensors.h: the safetensors reader (mapped, every dtype, __metadata__), the writer (atomic),
// and sharded folders through model.safetensors.index.json. The reader treats the file as hostile:
// a header size limit, offsets that must tile the data section without overlap or overrun, and
// shapes whose element count times dtype size must equal the byte length.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/dtype.h"
#include "base/mapfile.h"
#include "base/status.h"

#define SAFETENSORS_MAX_HEADER (100u << 20) // bytes of JSON header
#define SAFETENSORS_MAX_DIMS   8

typedef struct {
    char *name; // NUL-terminated copy
    rill_dtype dtype;
    int n_dims;                           // 0 (scalar) .. SAFETENSORS_MAX_DIMS
    uint64_t shape[SAFETENSORS_MAX_DIMS]; // [n_dims], outermost first (row-major)
    uint64_t n_elements;
    uint64_t n_bytes;
    uint64_t data_offset; // bytes from the start of the data section
    const uint8_t *data;  // [n_bytes] inside the mapping
} safetensors_tensor;

typedef struct {
    mapped_file map;
    uint64_t header_len; // bytes of JSON after the 8-byte length
    const uint8_t *data; // [data_size] the data section (starts at 8 + header_len)
    uint64_t data_size;  // bytes
    size_t n_tensors;
    safetensors_tensor *tensors;        // [n_tensors], in header order
    const safetensors_tensor **by_name; // [n_tensors] pointers into tensors, sorted by name
    size_t n_meta;
    char **meta_keys;   // [n_meta] from __metadata__
    char **meta_values; // [n_meta]
} safetensors_file;

rill_status safetensors_open(const char *path, safetensors_file **out);
void safetensors_close(safetensors_file *f);
const safetensors_tensor *safetensors_find(const safetensors_file *f, const char *name);
const char *safetensors_meta(const safetensors_file *f, const char *key); // NULL when absent
// Binary search in sorted[0..n), an array sorted by name (by_name above, or a set's tensors).
const safetensors_tensor *safetensors_lookup(const safetensors_tensor *const *sorted, size_t n, const char *name);

// The writer. As the format's reference writer (huggingface/safetensors) does, the data are
// contiguous, tensors sorted by element size (largest first; the given order among equal sizes),
// so that every tensor starts at a multiple of its element size, and the header is padded with
// spaces to a multiple of 8. __metadata__ comes first in the header, keys in the given order.
// Names must be unique, non-empty, valid UTF-8 and not "__metadata__".
typedef struct {
    const char *name;
    rill_dtype dtype;
    int n_dims;
    const uint64_t *shape; // [n_dims]
    const void *data;      // [product(shape) * dtype_size(dtype)] bytes
} safetensors_entry;

rill_status safetensors_write(const char *path, const safetensors_entry *tensors, size_t n_tensors,
                              const char *const *meta_keys, const char *const *meta_values, size_t n_meta);

// A set of files that together hold one model: a folder with model.safetensors.index.json, a
// folder with one or more *.safetensors files, or a single file.
typedef struct {
    size_t n_files;
    safetensors_file **files; // [n_files]
    size_t n_tensors;
    const safetensors_tensor **tensors; // [n_tensors] sorted by name, across all files
    const safetensors_file **owners;    // [n_tensors] the file that holds tensors[i]
} safetensors_set;

// `path` may also name an index file (*.json) directly. With an index, the set holds exactly the
// tensors of its weight_map; without one, every tensor of every file (a name twice is an error).
rill_status safetensors_set_open(const char *path, safetensors_set **out);
void safetensors_set_close(safetensors_set *s);
const safetensors_tensor *safetensors_set_find(const safetensors_set *s, const char *name);
