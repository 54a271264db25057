/* SPDX-License-Identifier: MIT */
/*
 * Fibers: descriptors, spawn, exit, join, detach, park/unpark and the
 * per-fiber attributes.
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
 * stale handle, even one that outlived its runtime.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "arch/ctx.h"
#include "fault.h"
#include "mutex_int.h"
#include "runtime_int.h"

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
	c = prt__alloc_aligned(sizeof(*c), 64);
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

static struct prt__fiber *desc_alloc(struct prt_runtime *rt, struct prt__worker *w)
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
	if (prt__unlikely(atomic_load_explicit(&f->nheld, memory_order_relaxed))) {
		fiber_keep(f);
		return;
	}
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
			 * A kept descriptor (ended holding mutexes) is reused from
			 * here on: a mutex held by a fiber of a destroyed runtime is
			 * undefined to use (proxyrt/mutex.h).
			 */
			atomic_store_explicit(&f->nheld, 0, memory_order_relaxed);
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

static uint64_t new_id(struct prt__worker *w)
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

/* ---- affinity ----------------------------------------------------------- */

/* Check @set against @rt: 0, or -EINVAL if it names no worker or a missing one. */
static int affinity_check(struct prt_runtime *rt, const prt_workerset_t *set)
{
	int n = prt_workerset_count(set);

	if (n == 0)
		return -EINVAL;
	for (int i = rt->nworkers; i < PRT_MAX_WORKERS; i++)
		if (prt_workerset_has(set, i))
			return -EINVAL;
	return 0;
}

static void affinity_store(struct prt__fiber *f, const prt_workerset_t *set, int nworkers)
{
	for (int i = 0; i < PRT_MAX_WORKERS / 64; i++)
		atomic_store_explicit(&f->aff[i], set ? set->bits[i] : ~UINT64_C(0),
				      memory_order_relaxed);
	atomic_store_explicit(&f->aff_all, !set || prt_workerset_count(set) == nworkers,
			      memory_order_relaxed);
}

/* ---- spawn -------------------------------------------------------------- */

PRT_API void prt_fiber_attr_init(prt_fiber_attr_t *attr)
{
	if (!attr)
		return;
	memset(attr, 0, sizeof(*attr));
	attr->size = sizeof(*attr);
	attr->priority = PRT_PRIO_DEFAULT;
}

static int attr_check(struct prt_runtime *rt, const prt_fiber_attr_t *a, prt_fiber_t *out)
{
	if (a->size < sizeof(prt_fiber_attr_t))
		return -EINVAL;
	if (a->priority < PRT_PRIO_MIN || a->priority > PRT_PRIO_MAX)
		return -EINVAL;
	if (a->stack_size && a->stack_size < PRT_STACK_SIZE_MIN)
		return -EINVAL;
	if (a->flags & ~(unsigned)PRT_FIBER_DETACHED)
		return -EINVAL;
	if (!out && !(a->flags & PRT_FIBER_DETACHED))
		return -EINVAL;
	if (a->has_affinity)
		return affinity_check(rt, &a->affinity);
	return 0;
}

static void fiber_init(struct prt_runtime *rt, struct prt__fiber *f, const prt_fiber_attr_t *a,
		       void *(*fn)(void *), void *arg)
{
	f->rt = rt;
	f->kind = PRT_FK_FIBER;
	f->fn = fn;
	f->arg = arg;
	f->result = NULL;
	f->joiner = NULL;
	f->detached = a->flags & PRT_FIBER_DETACHED;
	f->reap = f->parked = f->permit = false;
	PRT_WRITE_ONCE(f->last_worker, NULL);
	f->asan_fake_stack = NULL;
	atomic_store_explicit(&f->blocked_on, NULL, memory_order_relaxed);
	/*
	 * Not f->lock: a stale handle's call may hold it right now (type-
	 * stable memory); it was zeroed with the chunk and is left unlocked.
	 */
	prt__list_init(&f->rq_node);
	/*
	 * Seen by donors that attach later: they find @f through m->owner,
	 * which @f's lock CAS published with release, after it ran.
	 */
	prt__list_init(&f->donors);
	atomic_store_explicit(&f->attached_to, NULL, memory_order_relaxed);
	f->mwait = NULL;
	f->wait_cond = NULL;
	f->cwait = NULL;
	/* nheld is 0: only descriptors that hold nothing are reused (prt__fiber_free, _release). */
	atomic_store_explicit(&f->rq_worker, NULL, memory_order_relaxed);
	atomic_store_explicit(&f->on_cpu, 0, memory_order_relaxed);
	atomic_store_explicit(&f->prio, a->priority, memory_order_relaxed);
	affinity_store(f, a->has_affinity ? &a->affinity : NULL, rt->nworkers);
	if (a->name)
		snprintf(f->name, sizeof(f->name), "%s", a->name);
	else
		f->name[0] = '\0';
}

/* Plain-thread spawns are spread round-robin over the allowed workers. */
static struct prt__worker *spawn_target(struct prt_runtime *rt, struct prt__worker *w,
					struct prt__fiber *f)
{
	unsigned start;

	if (w && prt__fiber_allowed(f, w->index))
		return w;
	if (w)
		return prt__select_worker(f);
	start = atomic_fetch_add_explicit(&rt->rr, 1, memory_order_relaxed);
	for (int i = 0; i < rt->nworkers; i++) {
		int idx = (int)((start + (unsigned)i) % (unsigned)rt->nworkers);

		if (prt__fiber_allowed(f, idx))
			return rt->workers[idx];
	}
	return NULL;
}

/* The spawn proper. @w: the caller's worker if it is one of @rt's, else NULL. */
static inline int spawn(struct prt_runtime *rt, struct prt__worker *w, prt_fiber_t *out,
			const prt_fiber_attr_t *attr, void *(*fn)(void *), void *arg)
{
	struct prt__worker *t;
	struct prt__fiber *f;
	uint64_t id;
	int err;

	if ((err = attr_check(rt, attr, out)))
		return err;
	f = desc_alloc(rt, w);
	if (!f)
		return -ENOMEM;
	fiber_init(rt, f, attr, fn, arg);
	t = spawn_target(rt, w, f);
	if ((err = prt__stack_get(rt, w, t->index, attr->stack_size, &f->stack))) {
		prt__fiber_free(f);
		return err;
	}
	f->sp = prt__ctx_init((char *)f->stack.base + f->stack.size, prt__fiber_entry, f);
	prt__tsan_fiber_create(f);
	id = new_id(w);
	atomic_store_explicit(&f->id, id, memory_order_relaxed);
	/*
	 * Counted before it can run, so that prt_runtime_destroy sees it
	 * (from outside the runtime, prt__rt_spawn_begin counted it).
	 */
	if (w)
		atomic_store_explicit(&w->nspawned, w->nspawned + 1, memory_order_release);
	if (out) {
		out->p = f;
		out->id = id;
	}
	prt__enqueue(t, f);
	return 0;
}

PRT_API int prt_spawn(prt_runtime_t *rt, prt_fiber_t *out, const prt_fiber_attr_t *attr,
		      void *(*fn)(void *), void *arg)
{
	prt_fiber_attr_t defaults;
	struct prt__worker *w;
	int err;

	if (!rt || !fn)
		return -EINVAL;
	if (!attr) {
		prt_fiber_attr_init(&defaults);
		attr = &defaults;
	}
	w = prt__worker_of(rt, prt__cur_worker());
	if (prt__likely(w))
		return spawn(rt, w, out, attr, fn, arg);
	/*
	 * From outside: counted and holding a reference before anything of
	 * @rt is touched, so destroy waits for this fiber to run (runtime.c,
	 * "Outside callers"), or -EINVAL / -ESHUTDOWN.
	 */
	if ((err = prt__rt_spawn_begin(rt)))
		return err;
	err = spawn(rt, NULL, out, attr, fn, arg);
	prt__rt_spawn_end(rt, err != 0);
	return err;
}

/* ---- exit --------------------------------------------------------------- */

static PRT_NORETURN void fiber_exit(struct prt__fiber *f, void *result)
{
	struct prt_runtime *rt = f->rt;
	struct prt__waiter *joiner;
	struct prt__worker *w;

	f->result = result;
	prt__spin_lock(&f->lock);
	atomic_store_explicit(&f->state, PRT_FS_DEAD, memory_order_relaxed);
	f->reap = f->detached;
	joiner = f->joiner;
	prt__spin_unlock(&f->lock);
	if (joiner)
		prt__waiter_wake(joiner);
	w = prt__cur_worker();
	/* release: pairs with the acquire sum in prt_runtime_destroy */
	atomic_store_explicit(&w->nexited, w->nexited + 1, memory_order_release);
	if (atomic_load_explicit(&rt->destroying, memory_order_relaxed)) {
		atomic_fetch_add(&rt->destroy_seq, 1);
		prt__futex_wake(&rt->destroy_seq, INT_MAX);
	}
	prt__schedule_blocked(w);
	prt__assert(!"a dead fiber was resumed");
	abort();
}

void prt__fiber_entry(void *from, void *data)
{
	struct prt__fiber *f = data;
	struct prt__worker *w;

	prt__finish_switch(from);
	w = prt__cur_worker();
	atomic_store_explicit(&w->stats.fibers_run, w->stats.fibers_run + 1,
			      memory_order_relaxed);
	fiber_exit(f, f->fn(f->arg));
}

PRT_API void prt_exit(void *result)
{
	struct prt__worker *w = prt__cur_worker();

	if (!w) {
		fprintf(stderr, "proxyrt: prt_exit called from a plain thread: aborting\n");
		abort();
	}
	fiber_exit(w->curr, result);
}

/* ---- waiters ------------------------------------------------------------ */

void prt__waiter_wake(struct prt__waiter *wt)
{
	struct prt__fiber *f = wt->fiber;

	if (f) {
		prt__assert(atomic_load_explicit(&f->state, memory_order_relaxed) ==
			    PRT_FS_BLOCKED);
		prt__wake(f);
		return;
	}
	/* release: pairs with the acquire in prt__waiter_wait */
	atomic_store_explicit(&wt->futex, 1, memory_order_release);
	prt__fault_pause(PRT_PAUSE_GRANT_WAKE);
	/*
	 * The waiter may see 1 before this wake (a signal ends its FUTEX_WAIT)
	 * but cannot leave @wt yet: prt_join, its one user, then waits for the
	 * ending fiber, our caller, to be off its CPU (prt__wait_off_cpu).
	 */
	prt__futex_wake(&wt->futex, 1);
}

void prt__waiter_wait(struct prt__waiter *wt)
{
	if (wt->fiber) {
		prt__schedule_blocked(prt__cur_worker());
		return;
	}
	while (atomic_load_explicit(&wt->futex, memory_order_acquire) == 0)
		prt__futex_wait(&wt->futex, 0);
}

/* ---- handles ------------------------------------------------------------ */

static struct prt__fiber *self_fiber(void)
{
	struct prt__worker *w = prt__cur_worker();

	return w ? w->curr : NULL;
}

/* Lock @h's fiber if the handle is current; NULL (not locked) if stale. */
static struct prt__fiber *lock_handle(prt_fiber_t h)
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

/*
 * lock_handle for a call that goes on using @h's runtime once f->lock is
 * dropped: from outside that runtime it also takes a reference on it
 * (*@ref, for put_ref), which fails as for a stale handle once destroy
 * drains: every fiber has ended then, and is about to be reaped
 * (runtime.c, "Outside callers").
 */
static struct prt__fiber *lock_handle_ref(prt_fiber_t h, struct prt_runtime **ref)
{
	struct prt__fiber *f = lock_handle(h);

	*ref = NULL;
	if (!f || prt__worker_of(f->rt, prt__cur_worker()))
		return f;
	/* f->rt is valid: destroy clears ids under f->lock before it frees the runtime. */
	if (!prt__rt_tryget(f->rt)) {
		prt__spin_unlock(&f->lock);
		return NULL;
	}
	*ref = f->rt;
	return f;
}

static void put_ref(struct prt_runtime *ref)
{
	if (ref)
		prt__rt_put(ref);
}

static int join_locked(struct prt__fiber *self, struct prt__fiber *f, void **result);

struct prt__fiber *prt__fiber_lock_handle(prt_fiber_t h)
{
	return lock_handle(h);
}

PRT_API int prt_join(prt_fiber_t h, void **result)
{
	struct prt__fiber *self = self_fiber(), *f;
	struct prt_runtime *ref;
	int err;

	if (self && self == h.p && atomic_load(&self->id) == h.id)
		return -EDEADLK;
	if (!(f = lock_handle_ref(h, &ref)))
		return -ESRCH;
	err = join_locked(self, f, result);
	put_ref(ref);
	return err;
}

/* Join @f, locked with its handle checked; unlocks it. */
static int join_locked(struct prt__fiber *self, struct prt__fiber *f, void **result)
{
	struct prt__waiter wt = { .fiber = self };

	if (f->detached || f->joiner) {
		prt__spin_unlock(&f->lock);
		return -EINVAL;
	}
	/* Set even if already dead: a racing join or detach now sees it taken. */
	f->joiner = &wt;
	if (atomic_load_explicit(&f->state, memory_order_relaxed) != PRT_FS_DEAD) {
		if (self) {
			prt__set_wait(self, PRT_WK_JOIN, f, 0);
			atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
		}
		prt__spin_unlock(&f->lock);
		prt__waiter_wait(&wt);
	} else {
		prt__spin_unlock(&f->lock);
	}
	prt__wait_off_cpu(f);
	if (result)
		*result = f->result;
	prt__fiber_free(f);
	return 0;
}

PRT_API int prt_detach(prt_fiber_t h)
{
	struct prt_runtime *ref;
	struct prt__fiber *f = lock_handle_ref(h, &ref);
	bool zombie = false;
	int err = 0;

	if (!f)
		return -ESRCH;
	if (f->detached || f->joiner) {
		err = -EINVAL;
	} else {
		f->detached = true;
		zombie = atomic_load_explicit(&f->state, memory_order_relaxed) == PRT_FS_DEAD;
	}
	prt__spin_unlock(&f->lock);
	if (zombie) {
		/* Already finished: free it now. */
		prt__wait_off_cpu(f);
		prt__fiber_free(f);
	}
	put_ref(ref);
	return err;
}

PRT_API prt_fiber_t prt_self(void)
{
	struct prt__fiber *f = self_fiber();
	prt_fiber_t h = { NULL, 0 };

	if (f) {
		h.p = f;
		h.id = atomic_load_explicit(&f->id, memory_order_relaxed);
	}
	return h;
}

PRT_API int prt_fiber_equal(prt_fiber_t a, prt_fiber_t b)
{
	return a.p == b.p && a.id == b.id;
}

PRT_API uint64_t prt_fiber_id(prt_fiber_t f)
{
	return f.id;
}

PRT_API int prt_fiber_name(prt_fiber_t h, char *buf, size_t len)
{
	struct prt__fiber *f;

	if (!buf || !len)
		return -EINVAL;
	if (!(f = lock_handle(h)))
		return -ESRCH;
	snprintf(buf, len, "%s", f->name);
	prt__spin_unlock(&f->lock);
	return 0;
}

PRT_API int prt_fiber_set_priority(prt_fiber_t h, int prio)
{
	struct prt_runtime *ref;
	struct prt__fiber *f;

	if (prio < PRT_PRIO_MIN || prio > PRT_PRIO_MAX)
		return -EINVAL;
	if (!(f = lock_handle_ref(h, &ref)))
		return -ESRCH;
	/*
	 * seq_cst: a fiber joining a mutex's waiters stores its blocked_on
	 * then loads its prio (mutex.c, insert()); prt__waits_reprio loads
	 * blocked_on after this store. So either its record gets the new
	 * priority or the re-sort finds it on the list.
	 */
	atomic_store_explicit(&f->prio, prio, memory_order_seq_cst);
	prt__spin_unlock(&f->lock);
	/*
	 * Not under f->lock: the lock order is rq -> f->lock (proxy attach).
	 * Descriptors are type-stable, so if f ended meanwhile this touches
	 * at worst a queue position of whatever uses the descriptor now; the
	 * reference keeps that queue's runtime.
	 */
	prt__requeue(f);
	/* Then the waiter lists it is on, ordered by priority too. */
	prt__waits_reprio(h);
	put_ref(ref);
	return 0;
}

PRT_API int prt_fiber_get_priority(prt_fiber_t h)
{
	struct prt__fiber *f = lock_handle(h);
	int prio;

	if (!f)
		return -ESRCH;
	prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	prt__spin_unlock(&f->lock);
	return prio;
}

PRT_API int prt_fiber_set_affinity(prt_fiber_t h, const prt_workerset_t *set)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt_runtime *ref;
	struct prt__fiber *f;
	bool is_self;
	int err;

	if (!set || !h.p)
		return set ? -ESRCH : -EINVAL;
	if (!(f = lock_handle_ref(h, &ref)))
		return -ESRCH;
	if ((err = affinity_check(f->rt, set))) {
		prt__spin_unlock(&f->lock);
		put_ref(ref);
		return err;
	}
	affinity_store(f, set, f->rt->nworkers);
	is_self = w && w->curr == f;
	prt__spin_unlock(&f->lock);
	/* Not under f->lock: see prt_fiber_set_priority. */
	if (!is_self)
		prt__migrate_queued(f);
	else if (!prt__fiber_allowed(f, w->index))
		prt__migrate_self(w);
	put_ref(ref);
	return 0;
}

PRT_API int prt_fiber_get_affinity(prt_fiber_t h, prt_workerset_t *set)
{
	struct prt__fiber *f;

	if (!set)
		return -EINVAL;
	if (!(f = lock_handle(h)))
		return -ESRCH;
	prt_workerset_zero(set);
	for (int i = 0; i < f->rt->nworkers; i++)
		if (prt__fiber_allowed(f, i))
			prt_workerset_add(set, i);
	prt__spin_unlock(&f->lock);
	return 0;
}

/* ---- park/unpark -------------------------------------------------------- */

PRT_API int prt_park(void)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *self;

	if (!w)
		return -EPERM;
	self = w->curr;
	prt__spin_lock(&self->lock);
	if (self->permit) {
		self->permit = false;
		prt__spin_unlock(&self->lock);
		return 0;
	}
	self->parked = true;
	prt__set_wait(self, PRT_WK_PARK, NULL, 0);
	atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
	prt__spin_unlock(&self->lock);
	prt__schedule_blocked(w);
	return 0;
}

void prt__park_timer_fire(struct prt__timer *t, void *ctx)
{
	struct prt__fiber *f = prt__container_of(t, struct prt__fiber, timer);
	bool parked;

	/* Exactly one waker: whoever clears parked under f->lock. */
	prt__spin_lock(&f->lock);
	parked = f->parked;
	f->parked = false;
	prt__spin_unlock(&f->lock);
	if (parked)
		prt__wake_here_locked(ctx, f);
}

int prt__wake_parked(struct prt__fiber *f)
{
	prt__spin_lock(&f->lock);
	if (f->parked) {
		f->parked = false;
		prt__spin_unlock(&f->lock);
		prt__wake(f);
		return 1;
	}
	prt__spin_unlock(&f->lock);
	return 0;
}

PRT_API int prt_unpark(prt_fiber_t h)
{
	struct prt__fiber *f = lock_handle(h);

	if (!f)
		return -ESRCH;
	if (f->parked) {
		f->parked = false;
		prt__spin_unlock(&f->lock);
		prt__wake(f);
		return 0;
	}
	f->permit = true;
	prt__spin_unlock(&f->lock);
	return 0;
}
