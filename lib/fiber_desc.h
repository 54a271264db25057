/* SPDX-License-Identifier: MIT */
#ifndef PRT_FIBER_DESC_H
#define PRT_FIBER_DESC_H

/* fiber_desc.c: descriptors (type-stable chunks, free lists, depots), ids, handle lookup. */

#include <stdint.h>

#include <proxyrt/fiber.h>

struct prt__fiber;
struct prt__worker;
struct prt_runtime;

/*
 * Call @fn on every descriptor of @rt, free ones included (their state
 * says so). Chunks are only ever added, and freed at destroy: the walk
 * takes no lock past reading the list head.
 */
void prt__fiber_each(struct prt_runtime *rt, void (*fn)(struct prt__fiber *, void *), void *arg);

/*
 * Runtime destroy, every fiber ended and no outside reference left: mark
 * every descriptor of @rt FREE with id 0 (under its lock) and give the
 * chunks to the process-wide depot (fiber.c): never freed.
 */
void prt__fiber_chunks_release(struct prt_runtime *rt);
/*
 * A descriptor for a new fiber of @rt, from @w's free list (NULL: a
 * plain thread's spawn, the runtime's list under desc_lock), the depots
 * or a new chunk; NULL if out of memory.
 */
struct prt__fiber *prt__desc_alloc(struct prt_runtime *rt, struct prt__worker *w);
/* A new fiber id, unique in the process; @w (or NULL) takes them in blocks. */
uint64_t prt__fiber_new_id(struct prt__worker *w);
/*
 * Free a descriptor to the calling worker's list (or the runtime's); one
 * that still holds mutexes is kept instead (@kept).
 */
void prt__fiber_free(struct prt__fiber *f);
/* Lock the fiber @h names (its @lock) and return it; NULL (not locked) if @h is stale. */
struct prt__fiber *prt__fiber_lock_handle(prt_fiber_t h);

#endif
