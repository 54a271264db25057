/* SPDX-License-Identifier: MIT */
/*
 * Fiber descriptors: allocation, per-worker free lists, the runtime's
 * and the process's depots, fiber ids.
 *
 * Descriptors come in chunks of PRT_DESC_CHUNK from jemalloc (through
 * prt__alloc, i.e. the allocating worker's thread cache) and are never
 * returned to it: a freed descriptor goes on the free list of the worker
 * that frees it (no lock: only that worker touches its list), so a fiber
 * made on one worker and freed on another costs no shared lock. Plain
 * threads use a list under rt->desc_lock. A destroyed runtime's chunks
 * go to a process-wide depot that the next runtime's chunk_new takes
 * from, so descriptor memory is type-stable for the life of the process
 * (as Go's g structs): a prt_fiber_t, a mutex owner word or a dump can
 * always read a descriptor, and fiber ids, unique in the process, tell a
 * stale handle, even one that outlived its runtime. The depot and the id
 * counter are process-wide for that reason (one per process, shared by
 * every runtime in it).
 */
#include <pthread.h>
#include <string.h>

#include "fork.h"
#include "alloc.h"
#include "fault.h"
#include "fiber_desc.h"
#include "runtime_int.h"
#include "worker.h"

#define PRT_DESC_CHUNK 64
/*
 * A worker holding more than 2 * PRT_DESC_BATCH free descriptors moves
 * a batch to the runtime's depot; one with none takes a batch back
 * before allocating a new chunk. Without this, fibers spawned on one
 * worker and ending on another would grow memory without bound.
 */
#define PRT_DESC_BATCH 256
#define PRT_ID_BLOCK 1024

struct desc_chunk {
	struct desc_chunk *next; /* in its runtime's desc_chunks, or in chunk_depot */
	struct prt__fiber f[PRT_DESC_CHUNK];
};

/* Process-wide (see the top): chunks of destroyed runtimes, every descriptor FREE. */
static pthread_mutex_t chunk_depot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct desc_chunk *chunk_depot; /* chunk_depot_lock */
/* Fiber ids, unique in the process; workers take blocks of PRT_ID_BLOCK. */
static _Atomic uint64_t next_id = 1;

/* A chunk from the depot, or a new zeroed one. Depot chunks are not cleared: see fiber_init. */
static struct desc_chunk *chunk_get(void)
{
	struct desc_chunk *c;
	bool fail = false;

	pthread_mutex_lock(&chunk_depot_lock);
	c = chunk_depot;
	/*
	 * Fault builds: a depot chunk fails as an allocated one would, so
	 * that test_fault reaches the spawn's failure path either way.
	 */
	if (c && !(fail = prt__fault(PRT_FAULT_ALLOC) != 0))
		chunk_depot = c->next;
	pthread_mutex_unlock(&chunk_depot_lock);
	if (fail)
		return NULL;
	if (c) {
		prt__fault_track(PRT_FAULT_ALLOC, 1); /* a runtime's again: see ..._release */
		return c;
	}
	{
		int saved = prt__errno_get(); /* the allocator's ENOMEM is not the caller's (prt__sys_ret) */

		c = prt__alloc_aligned(sizeof(*c), 64);
		prt__errno_set(saved);
	}
	if (c)
		memset(c, 0, sizeof(*c));
	return c;
}

/* Allocate a chunk; keep one descriptor, free-list the rest. */
static struct prt__fiber *chunk_new(struct prt_runtime *rt, struct prt__fiber **list)
{
	struct desc_chunk *c = chunk_get();

	if (!c)
		return NULL;
	prt__spin_lock(&rt->desc_lock);
	c->next = rt->desc_chunks;
	rt->desc_chunks = c;
	prt__spin_unlock(&rt->desc_lock);
	for (int i = 1; i < PRT_DESC_CHUNK; i++) {
		c->f[i].free_next = *list;
		*list = &c->f[i];
	}
	return &c->f[0];
}

/* Refill @w's empty free list with a batch from the depot. */
static prt__noinline bool depot_take(struct prt_runtime *rt, struct prt__worker *w)
{
	struct prt__fiber *b;

	prt__spin_lock(&rt->desc_lock);
	b = rt->desc_depot;
	if (b)
		rt->desc_depot = b->batch_next;
	prt__spin_unlock(&rt->desc_lock);
	if (!b)
		return false;
	w->free_desc = b;
	w->nfree_desc = PRT_DESC_BATCH;
	return true;
}

/* Move PRT_DESC_BATCH descriptors from @w's free list to the depot. */
static prt__noinline void depot_give(struct prt_runtime *rt, struct prt__worker *w)
{
	struct prt__fiber *b = w->free_desc, *last = b;

	for (int i = 1; i < PRT_DESC_BATCH; i++)
		last = last->free_next;
	w->free_desc = last->free_next;
	w->nfree_desc -= PRT_DESC_BATCH;
	last->free_next = NULL;
	prt__spin_lock(&rt->desc_lock);
	b->batch_next = rt->desc_depot;
	rt->desc_depot = b;
	prt__spin_unlock(&rt->desc_lock);
}

struct prt__fiber *prt__desc_alloc(struct prt_runtime *rt, struct prt__worker *w)
{
	struct prt__fiber *f;

	if (w) {
		f = w->free_desc;
		if (prt__likely(f) || depot_take(rt, w)) {
			f = w->free_desc;
			w->free_desc = f->free_next;
			w->nfree_desc--;
			return f;
		}
		f = chunk_new(rt, &w->free_desc);
		if (f)
			w->nfree_desc = PRT_DESC_CHUNK - 1;
		return f;
	}
	prt__spin_lock(&rt->desc_lock);
	f = rt->ext_free_desc;
	if (f)
		rt->ext_free_desc = f->free_next;
	prt__spin_unlock(&rt->desc_lock);
	if (f)
		return f;
	/* chunk_new takes desc_lock itself: build the free list aside. */
	{
		struct prt__fiber *rest = NULL, *last;

		f = chunk_new(rt, &rest);
		if (!f || !rest)
			return f;
		for (last = rest; last->free_next; last = last->free_next)
			;
		prt__spin_lock(&rt->desc_lock);
		last->free_next = rt->ext_free_desc;
		rt->ext_free_desc = rest;
		prt__spin_unlock(&rt->desc_lock);
	}
	return f;
}

/*
 * A fiber that ended holding mutexes: their owner words hold its
 * descriptor's address for good (POSIX's default, stalled, robustness:
 * glibc likewise leaves a dead owner's PI mutex locked), so the
 * descriptor must never name another fiber. Keep it out of the free
 * lists; it stays DEAD, its handles stale. The chain walks then find an
 * owner that waits on nothing and will never run: deadlock detection
 * sees no cycle through it, the pick puts its donors to sleep
 * (proxy.c), nobody else may unlock. It costs one descriptor per fiber
 * that ends so, a program bug the dump shows ("holding=").
 */
static prt__cold void fiber_keep(struct prt__fiber *f)
{
	prt__spin_lock(&f->lock);
	atomic_store_explicit(&f->kept, true, memory_order_relaxed);
	prt__spin_unlock(&f->lock);
}

void prt__fiber_free(struct prt__fiber *f)
{
	struct prt_runtime *rt = f->rt;
	struct prt__worker *w = prt__worker_of(rt, prt__cur_worker());

	/* Its last write of nheld happened before its switch away, which our caller waited for. */
	if (prt__unlikely(PRT_HELD_COUNT(atomic_load_explicit(&f->nheld, memory_order_relaxed)))) {
		fiber_keep(f);
		return;
	}
#if PRT_DEBUG
	/* It ended outside every wait: the next spawn leaves these as they are (fiber_init). */
	prt__assert(!f->mwait && !f->wait_cond && !f->cwait &&
		    !atomic_load_explicit(&f->attached_to, memory_order_relaxed));
#endif
	atomic_store_explicit(&f->id, 0, memory_order_release);
	atomic_store_explicit(&f->state, PRT_FS_FREE, memory_order_relaxed);
	if (w) {
		f->free_next = w->free_desc;
		w->free_desc = f;
		if (prt__unlikely(++w->nfree_desc > 2 * PRT_DESC_BATCH))
			depot_give(rt, w);
		return;
	}
	prt__spin_lock(&rt->desc_lock);
	f->free_next = rt->ext_free_desc;
	rt->ext_free_desc = f;
	prt__spin_unlock(&rt->desc_lock);
}

void prt__fiber_each(struct prt_runtime *rt, void (*fn)(struct prt__fiber *, void *), void *arg)
{
	struct desc_chunk *c;

	prt__spin_lock(&rt->desc_lock);
	c = rt->desc_chunks;
	prt__spin_unlock(&rt->desc_lock);
	for (; c; c = c->next)
		for (int i = 0; i < PRT_DESC_CHUNK; i++)
			fn(&c->f[i], arg);
}

void prt__fiber_chunks_release(struct prt_runtime *rt)
{
	struct desc_chunk *c = rt->desc_chunks, *last = NULL;

	for (; c; last = c, c = c->next) {
		/*
		 * Fault builds count what runtimes hold, to find leaks: a chunk
		 * in the depot is the process's, kept on purpose (see the top).
		 */
		prt__fault_track(PRT_FAULT_ALLOC, -1);
		for (int i = 0; i < PRT_DESC_CHUNK; i++) {
			struct prt__fiber *f = &c->f[i];

			/*
			 * Under f->lock: a handle call that found the id current
			 * under it (lock_handle) has finished with the runtime
			 * (destroy drained its reference) or will see it stale.
			 */
			prt__spin_lock(&f->lock);
			atomic_store_explicit(&f->id, 0, memory_order_relaxed);
			atomic_store_explicit(&f->state, PRT_FS_FREE, memory_order_relaxed);
			/*
			 * A kept descriptor (ended holding mutexes or rwlocks) is
			 * reused from here on: a lock held by a fiber of a destroyed
			 * runtime is undefined to use (proxyrt/mutex.h).
			 */
			atomic_store_explicit(&f->nheld, 0, memory_order_relaxed);
			atomic_store_explicit(&f->rd_untracked, 0, memory_order_relaxed);
			atomic_store_explicit(&f->kept, false, memory_order_relaxed);
			prt__spin_unlock(&f->lock);
		}
	}
	if (last) {
		pthread_mutex_lock(&chunk_depot_lock);
		last->next = chunk_depot;
		chunk_depot = rt->desc_chunks;
		pthread_mutex_unlock(&chunk_depot_lock);
	}
	rt->desc_chunks = NULL;
	rt->ext_free_desc = NULL;
	rt->desc_depot = NULL;
}

uint64_t prt__fiber_new_id(struct prt__worker *w)
{
	if (!w)
		return atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
	if (w->id_next == w->id_end) {
		w->id_next = atomic_fetch_add_explicit(&next_id, PRT_ID_BLOCK,
						       memory_order_relaxed);
		w->id_end = w->id_next + PRT_ID_BLOCK;
	}
	return w->id_next++;
}

/* Handles name a descriptor and an id: stale once the id changed, or once it is kept. */
struct prt__fiber *prt__fiber_lock_handle(prt_fiber_t h)
{
	struct prt__fiber *f = h.p;

	if (!f || !h.id)
		return NULL;
	prt__spin_lock(&f->lock);
	if (atomic_load_explicit(&f->id, memory_order_relaxed) != h.id ||
	    atomic_load_explicit(&f->kept, memory_order_relaxed)) {
		prt__spin_unlock(&f->lock);
		return NULL;
	}
	return f;
}

struct prt__fork_hook prt__fiber_desc_fork_hook = { .lock = &chunk_depot_lock };
