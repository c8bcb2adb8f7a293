// mapfile.h: read-only file mapping for weights and model files (rule 5: map, don't copy).
// Optionally pins the pages (mlock) or asks the kernel to read ahead (MADV_WILLNEED); when the
// memlock limit forbids pinning, it logs that and goes on unpinned.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

enum { MAP_FILE_WILLNEED = 1, MAP_FILE_PIN = 2 };

typedef struct {
    const uint8_t *data; // [size] bytes of the file; a valid pointer even when size == 0
    size_t size;         // bytes
    bool pinned;         // true when mlock succeeded
    char *path;          // a copy of the path, for messages
} mapped_file;

rill_status mapped_file_open(mapped_file *mf, const char *path, int flags);
void mapped_file_close(mapped_file *mf);
