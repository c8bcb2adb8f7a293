// alloc.h: the accounted allocator. Every large allocation goes through it, so that
// rill_memory_peak() is a real figure (our "peak memory"). Blocks are 64-byte aligned.
#pragma once
#include <stddef.h>

void *rill_malloc(size_t n);             // NULL on failure (and the error message is set)
void *rill_calloc(size_t count, size_t size);
void *rill_realloc(void *p, size_t n);   // like realloc; keeps accounting exact
void rill_free(void *p);                 // NULL is allowed
size_t rill_alloc_size(const void *p);   // the usable size recorded for p

// Memory that is not ours to free but counts toward the peak (mapped weights kept resident).
void rill_memory_account(ptrdiff_t delta);
