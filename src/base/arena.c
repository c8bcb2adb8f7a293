// arena.c: chained blocks from the accounted allocator; allocation is a pointer bump.
#include "base/arena.h"

#include <stdint.h>

#include "base/alloc.h"
#include "base/status.h"

struct arena_block {
    arena_block *next;
    size_t cap;      // bytes of data after the header
    size_t top;      // bytes used
    _Alignas(64) unsigned char data[];
};

void arena_init(arena *a, size_t block_size) {
    a->head = NULL;
    a->block_size = block_size ? block_size : (size_t)1 << 20;
    a->used = a->high_water = 0;
}

static size_t align_up(size_t x, size_t align) { return (x + align - 1) / align * align; }

void *arena_alloc(arena *a, size_t n, size_t align) {
    if (align == 0 || (align & (align - 1)) || align > 64) {
        rill_fail(RILL_EINVAL, "arena: alignment %zu is not a power of two up to 64", align);
        return NULL;
    }
    arena_block *b = a->head;
    if (b) {
        size_t at = align_up(b->top, align);
        if (at <= b->cap && n <= b->cap - at) {
            b->top = at + n;
            a->used += n;
            if (a->used > a->high_water) a->high_water = a->used;
            return b->data + at;
        }
    }
    size_t cap = n > a->block_size ? n : a->block_size;
    if (cap > SIZE_MAX - sizeof(arena_block)) {
        rill_fail(RILL_ENOMEM, "arena: request of %zu bytes is too large", n);
        return NULL;
    }
    b = rill_malloc(sizeof(arena_block) + cap);
    if (!b) return NULL;
    b->cap = cap;
    b->top = n;
    b->next = a->head;
    a->head = b;
    a->used += n;
    if (a->used > a->high_water) a->high_water = a->used;
    return b->data;
}

void arena_reset(arena *a) {
    arena_block *keep = NULL;
    for (arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        if (!keep && b->cap >= a->block_size) keep = b;
        else rill_free(b);
    }
    if (keep) {
        keep->next = NULL;
        keep->top = 0;
    }
    a->head = keep;
    a->used = 0;
}

void arena_release(arena *a) {
    for (arena_block *b = a->head, *next; b; b = next) {
        next = b->next;
        rill_free(b);
    }
    a->head = NULL;
    a->used = 0;
}
