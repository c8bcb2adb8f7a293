// atomic_file.h: write a file so that readers see either the old file or the whole new one.
// Data goes to a temporary name in the same directory; commit fsyncs, renames over the target
// and fsyncs the directory. abort (or a failed commit) removes the temporary file.
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "base/status.h"

typedef struct {
    FILE *fp;
    char *path;     // the final name
    char *tmp_path; // the temporary name beside it
    rill_status st; // the first write error, reported at commit
} atomic_file;

rill_status atomic_file_open(atomic_file *f, const char *path);
rill_status atomic_file_write(atomic_file *f, const void *data, size_t n);
rill_status atomic_file_commit(atomic_file *f); // closes f in every case
void atomic_file_abort(atomic_file *f);

// Convenience: write one buffer atomically.
rill_status atomic_file_write_all(const char *path, const void *data, size_t n);
