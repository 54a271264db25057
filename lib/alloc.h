/* SPDX-License-Identifier: MIT */
#ifndef PRT_ALLOC_H
#define PRT_ALLOC_H

#include <stddef.h>

/*
 * Memory for runtime objects (worker structs, fiber descriptor chunks,
 * arrays). With jemalloc (the default build) this is mallocx/sdallocx:
 * every worker is its own OS thread, so jemalloc's implicit thread cache
 * is a per-worker cache, and a free on another worker goes into that
 * worker's cache (no global lock; a cache flush takes only its arena's
 * bin lock). Sanitizer and valgrind builds use libc malloc instead so the
 * tools see every allocation. Stacks never come from here: they need
 * mmap for guard pages and page-granular reuse (stack.c).
 */
void *prt__alloc(size_t size);
void *prt__zalloc(size_t size);
/* Allocate @size bytes aligned to @align (a power of two, <= 4096). */
void *prt__alloc_aligned(size_t size, size_t align);
/* Free @p of @size bytes (the size given at allocation); NULL is a no-op. */
void prt__free(void *p, size_t size);

#endif
