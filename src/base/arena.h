// arena.h: a bump allocator for per-step scratch. Blocks come from the accounted allocator;
// arena_reset() keeps the first block and frees the rest (our mx.clear_cache()).
#pragma once
#include <stddef.h>

typedef struct arena_block arena_block;

typedef struct {
    arena_block *head;     // newest block first
    size_t block_size;     // default size of a new block, bytes
    size_t used;           // bytes handed out since the last reset
    size_t high_water;     // most bytes handed out between two resets
} arena;

void arena_init(arena *a, size_t block_size);
void *arena_alloc(arena *a, size_t n, size_t align); // NULL on failure (message set)
void arena_reset(arena *a);                          // keeps one block for reuse
void arena_release(arena *a);                        // frees every block
