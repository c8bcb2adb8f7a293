// alloc.c: the accounted allocator: a 64-byte header before each block records its size, and two
// atomic counters track the bytes in use now and the peak since the last reset.
#include "base/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"

enum { ALLOC_ALIGN = 64, ALLOC_HEADER = 64 };
static const uint64_t ALLOC_MAGIC = 0x72696c6c616c6f63ull; // "rillaloc"

static atomic_size_t mem_current;
static atomic_size_t mem_peak;

static void note_peak(size_t now) {
    size_t peak = atomic_load(&mem_peak);
    while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now)) {
    }
}

void rill_memory_account(ptrdiff_t delta) {
    if (delta >= 0)
        note_peak(atomic_fetch_add(&mem_current, (size_t)delta) + (size_t)delta);
    else
        atomic_fetch_sub(&mem_current, (size_t)(-delta));
}

size_t rill_memory_current(void) { return atomic_load(&mem_current); }
size_t rill_memory_peak(void) { return atomic_load(&mem_peak); }
void rill_memory_reset_peak(void) { atomic_store(&mem_peak, atomic_load(&mem_current)); }

typedef struct {
    uint64_t magic;
    size_t size;
} alloc_header;

static alloc_header *header_of(const void *p) { return (alloc_header *)((char *)p - ALLOC_HEADER); }

void *rill_malloc(size_t n) {
    if (n > SIZE_MAX - 2 * ALLOC_HEADER) {
        rill_fail(RILL_ENOMEM, "allocation of %zu bytes is too large", n);
        return NULL;
    }
    size_t total = (n + ALLOC_HEADER + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN;
    char *base = aligned_alloc(ALLOC_ALIGN, total);
    if (!base) {
        rill_fail(RILL_ENOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    alloc_header *h = (alloc_header *)base;
    h->magic = ALLOC_MAGIC;
    h->size = n;
    rill_memory_account((ptrdiff_t)n);
    return base + ALLOC_HEADER;
}

void *rill_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        rill_fail(RILL_ENOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = rill_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

size_t rill_alloc_size(const void *p) { return p ? header_of(p)->size : 0; }

void rill_free(void *p) {
    if (!p) return;
    alloc_header *h = header_of(p);
    if (h->magic != ALLOC_MAGIC) abort(); // programmer error: not from rill_malloc, or freed twice
    h->magic = 0;
    rill_memory_account(-(ptrdiff_t)h->size);
    free(h);
}

void *rill_realloc(void *p, size_t n) {
    if (!p) return rill_malloc(n);
    size_t old = header_of(p)->size;
    if (n <= old && n >= old / 2) { // shrink in place: keep the block, account the difference
        header_of(p)->size = n;
        rill_memory_account((ptrdiff_t)n - (ptrdiff_t)old);
        return p;
    }
    void *q = rill_malloc(n);
    if (!q) return NULL;
    memcpy(q, p, old < n ? old : n);
    rill_free(p);
    return q;
}
