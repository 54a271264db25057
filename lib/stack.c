/* SPDX-License-Identifier: MIT */
/*
 * Fiber stacks. Two kinds (enum prt_stack_kind in <proxyrt/runtime.h>):
 * guard-page stacks, one mmap each, and canary stacks carved from
 * slabs for the million-fiber case. Each worker keeps a bounded pool of
 * free default-size stacks so that spawn does not call mmap in the
 * steady state; only the worker touches its pool.
 */
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "fault.h"
#include "runtime_int.h"
#include "stack.h"

#if PRT_USE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#if PRT_USE_ASAN
#include <sanitizer/asan_interface.h>
#endif

static size_t page_size(void)
{
	static _Atomic size_t ps;
	/* relaxed: any thread may be first; each stores the same value */
	size_t v = atomic_load_explicit(&ps, memory_order_relaxed);

	if (!v) {
		v = (size_t)sysconf(_SC_PAGESIZE);
		atomic_store_explicit(&ps, v, memory_order_relaxed);
	}
	return v;
}

static void stack_register(struct prt__stack *s)
{
#if PRT_USE_VALGRIND
	s->vg_id = VALGRIND_STACK_REGISTER(s->base, (char *)s->base + s->size);
#else
	s->vg_id = 0;
#endif
}

static void stack_deregister(struct prt__stack *s)
{
#if PRT_USE_VALGRIND
	if (s->vg_id)
		VALGRIND_STACK_DEREGISTER(s->vg_id);
#endif
	s->vg_id = 0;
}

/* Forget ASan's poisoning of a dead fiber's frames before reuse. */
static void stack_unpoison(struct prt__stack *s)
{
#if PRT_USE_ASAN
	ASAN_UNPOISON_MEMORY_REGION(s->base, s->size);
#else
	(void)s;
#endif
}

/* Every stack and slab mapping: injectable and counted in test builds (fault.h). */
static void *stack_mmap(size_t len)
{
	void *m;

	if (prt__fault(PRT_FAULT_MMAP))
		return MAP_FAILED;
	m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (m != MAP_FAILED)
		prt__fault_track(PRT_FAULT_MMAP, 1);
	return m;
}

static void stack_munmap(void *m, size_t len)
{
	munmap(m, len);
	prt__fault_track(PRT_FAULT_MMAP, -1);
}

int prt__stack_pool_init(struct prt__stack_pool *p, unsigned max)
{
	memset(p, 0, sizeof(*p));
	p->max = max;
	p->warm = prt__alloc(sizeof(*p->warm) * (max ? max : 1));
	return p->warm ? 0 : -ENOMEM;
}

/* A guard-page stack: [guard PROT_NONE][size usable], one mapping. */
static int guard_map(struct prt_runtime *rt, int home, size_t size, struct prt__stack *out)
{
	size_t guard = page_size();
	char *m = size <= SIZE_MAX - guard ? stack_mmap(size + guard) : MAP_FAILED;

	if (m == MAP_FAILED)
		return -ENOMEM;
	/* Splitting the mapping in two can fail too: vm.max_map_count. */
	if (prt__fault(PRT_FAULT_MMAP) || mprotect(m, guard, PROT_NONE) != 0) {
		stack_munmap(m, size + guard);
		return -ENOMEM;
	}
	prt__topo_membind(&rt->topo, home, m + guard, size);
	out->base = m + guard;
	out->size = size;
	out->flags = 0;
	stack_register(out);
	return 0;
}

static void guard_unmap(struct prt__stack *s)
{
	size_t guard = page_size();

	stack_deregister(s);
	stack_munmap((char *)s->base - guard, s->size + guard);
}

/* A canary stack of its own mapping (non-default size). */
static int canary_map(struct prt_runtime *rt, int home, size_t size, struct prt__stack *out)
{
	char *m = stack_mmap(size);

	if (m == MAP_FAILED)
		return -ENOMEM;
	prt__topo_membind(&rt->topo, home, m, size);
	out->base = m;
	out->size = size;
	out->flags = PRT_STK_CANARY;
	stack_register(out);
	return 0;
}

/* Map a new slab of PRT_STACK_SLAB_COUNT default-size canary stacks. */
static int slab_new(struct prt_runtime *rt, struct prt__worker *w)
{
	size_t len = rt->stack_size * PRT_STACK_SLAB_COUNT;
	struct prt__slab *sl;
	void *m;

	if (rt->stack_size > SIZE_MAX / PRT_STACK_SLAB_COUNT)
		return -ENOMEM; /* more than the address space */
	sl = prt__alloc(sizeof(*sl));
	if (!sl)
		return -ENOMEM;
	m = stack_mmap(len);
	if (m == MAP_FAILED) {
		prt__free(sl, sizeof(*sl));
		return -ENOMEM;
	}
	prt__topo_membind(&rt->topo, w->index, m, len);
	sl->map = m;
	sl->len = len;
	prt__spin_lock(&rt->slab_lock);
	sl->next = rt->slabs;
	rt->slabs = sl;
	prt__spin_unlock(&rt->slab_lock);
	w->stacks.slab_next = m;
	w->stacks.slab_left = PRT_STACK_SLAB_COUNT;
	return 0;
}

/*
 * Cold stacks. A slab stack freed beyond the pools (a burst of fibers
 * ending) cannot be unmapped alone: its pages go back to the kernel and
 * the stack to its worker's cold list, which that worker carves from
 * before it maps a new slab. Kept per worker only, the stacks of fibers
 * spawned on one worker and ending on another were never used again:
 * a review's bursts of 20,000 fibers from an acceptor on worker 0 ending
 * on worker 1 added 1.15 GB of address space a round, until spawns
 * failed with -ENOMEM with almost nothing alive. So a cold list longer
 * than PRT_COLD_LOCAL spills PRT_COLD_BATCH stacks to the runtime's
 * (rt->cold, under slab_lock), and a worker with none of its own takes
 * a batch from there before it maps a slab: address space is bounded by
 * the most stacks alive at once plus what the lists keep (per worker up
 * to PRT_COLD_LOCAL cold stacks, its warm pool and the rest of its
 * slab; the runtime's depot), where guard stacks past the pools are
 * unmapped (fiber_desc.c moves descriptors between workers the same way).
 */
#define PRT_COLD_BATCH 64u
#define PRT_COLD_LOCAL (2 * PRT_COLD_BATCH)

/* Make room for @need stacks in a growable array of @len; false if it cannot grow. */
static bool cold_reserve(struct prt__stack **arr, unsigned len, unsigned *cap, unsigned need)
{
	unsigned c = *cap ? *cap : 64;
	struct prt__stack *a;

	if (need <= *cap)
		return true;
	while (c < need)
		c *= 2;
	a = prt__alloc(sizeof(*a) * c);
	if (!a)
		return false;
	if (*arr) {
		memcpy(a, *arr, sizeof(*a) * len);
		prt__free(*arr, sizeof(*a) * *cap);
	}
	*arr = a;
	*cap = c;
	return true;
}

/* Take a batch of the runtime's cold stacks into @p's empty cold list. */
static void cold_refill(struct prt_runtime *rt, struct prt__stack_pool *p)
{
	unsigned n;

	/* relaxed (PRT_READ_ONCE): a hint; the count is read again under slab_lock */
	if (!PRT_READ_ONCE(rt->ncold) || !cold_reserve(&p->cold, 0, &p->capcold, PRT_COLD_BATCH))
		return;
	prt__spin_lock(&rt->slab_lock);
	n = rt->ncold < PRT_COLD_BATCH ? rt->ncold : PRT_COLD_BATCH;
	memcpy(p->cold, rt->cold + rt->ncold - n, sizeof(*p->cold) * n);
	PRT_WRITE_ONCE(rt->ncold, rt->ncold - n);
	prt__spin_unlock(&rt->slab_lock);
	p->ncold = n;
}

/* @p's cold list is long: give the runtime its oldest batch. */
static void cold_spill(struct prt_runtime *rt, struct prt__stack_pool *p)
{
	bool ok;

	prt__spin_lock(&rt->slab_lock);
	ok = cold_reserve(&rt->cold, rt->ncold, &rt->capcold, rt->ncold + PRT_COLD_BATCH);
	if (ok) {
		memcpy(rt->cold + rt->ncold, p->cold, sizeof(*p->cold) * PRT_COLD_BATCH);
		PRT_WRITE_ONCE(rt->ncold, rt->ncold + PRT_COLD_BATCH);
	}
	prt__spin_unlock(&rt->slab_lock);
	if (!ok)
		return; /* no memory for the runtime's list: they stay here */
	p->ncold -= PRT_COLD_BATCH;
	memmove(p->cold, p->cold + PRT_COLD_BATCH, sizeof(*p->cold) * p->ncold);
}

static int canary_slab_get(struct prt_runtime *rt, struct prt__worker *w, struct prt__stack *out)
{
	struct prt__stack_pool *p = &w->stacks;

	if (!p->ncold)
		cold_refill(rt, p);
	if (p->ncold) {
		/* Its pages were given back; they come back zeroed on first touch. */
		*out = p->cold[--p->ncold];
		return 0;
	}
	if (!p->slab_left) {
		int err = slab_new(rt, w);

		if (err)
			return err;
	}
	out->base = p->slab_next;
	out->size = rt->stack_size;
	out->flags = PRT_STK_CANARY | PRT_STK_SLAB | PRT_STK_POOLED;
	stack_register(out);
	p->slab_next += rt->stack_size;
	p->slab_left--;
	return 0;
}

/*
 * Stacks flow from the worker where fibers end to the one where they
 * are spawned. A worker's pool is refilled from, and spills half of
 * itself into, the runtime's depot: one lock per batch of max/2 stacks
 * (rounded up: a pool of 1 moves 1).
 *
 * Decay. The depot keeps maxdepot stacks (the pools' bound again, per
 * worker) for good. Until session 41 a stack spilled past that was
 * unmapped (a slab stack: its pages given back) at once, and each spawn
 * past the pools mapped one again: a guard stack costs mmap, mprotect
 * and munmap (with its TLB shootdown), 10-15 us here, so W2 with 2500
 * fibers alive at once on one worker took 2.4 us per spawn and join
 * instead of 80 ns, and 5.9 us with 4000 (Go: 200 ns). Now the depot
 * grows past maxdepot (when cfg.stack_decay_ns is not 0), and gives
 * back only what stayed unused for a whole period, as jemalloc's dirty
 * page decay and the kernel's slab shrinking do: the period starts with
 * the first stack past maxdepot; depot_low tracks the fewest the depot
 * held during it; at its end, the stacks above both depot_low and
 * maxdepot were taken by no spawn, and go (from the top, PRT_TRIM_BATCH
 * per call, the next call at once if more are left). A steady churn of
 * many fibers keeps all it uses; a burst's stacks go 1-2 periods after
 * it. The period's end is looked at where stacks move to and from the
 * depot (one clock read per batch, only while there is an excess) and
 * by an idle worker, which sleeps no longer than it (idle.c).
 */
/* (PRT_TRIM_BATCH, stack.h: what an idle worker gives back per call) */
/* At most this many from a spawn or a switch (the idle loop takes PRT_TRIM_BATCH). */
#define PRT_TRIM_HOT 8u
#define PRT_POOL_BATCH(p) ((p)->max - (p)->max / 2)

static void stack_free(struct prt_runtime *rt, struct prt__worker *w, struct prt__stack *s);
static void stack_unmap(struct prt__stack *s);

/* Publish the sooner of the two ends for the racy looks; depot_lock held. */
static void trim_at_publish(struct prt_runtime *rt)
{
	uint64_t t = rt->depot_trim_at < rt->odd_trim_at ? rt->depot_trim_at : rt->odd_trim_at;

	atomic_store_explicit(&rt->stack_trim_at, t, memory_order_relaxed);
}

bool prt__stack_trim_due(struct prt_runtime *rt, uint64_t *now)
{
	/* relaxed: a hint; prt__stack_trim reads the ends again under depot_lock */
	if (atomic_load_explicit(&rt->stack_trim_at, memory_order_relaxed) == PRT_NO_DEADLINE)
		return false;
	if (!*now)
		*now = prt__now_ns();
	return atomic_load_explicit(&rt->stack_trim_at, memory_order_relaxed) <= *now;
}

/* Give back up to @room of the depot's stacks unused this period, into @batch; depot_lock held. */
static unsigned depot_trim(struct prt_runtime *rt, uint64_t now, struct prt__stack *batch,
			   unsigned room)
{
	unsigned n = 0;

	if (now < rt->depot_trim_at)
		return 0;
	if (rt->depot_low > rt->maxdepot) {
		n = rt->depot_low - rt->maxdepot;
		if (n > room)
			n = room;
		PRT_WRITE_ONCE(rt->ndepot, rt->ndepot - n);
		rt->depot_low -= n;
		memcpy(batch, rt->stack_depot + rt->ndepot, sizeof(*batch) * n);
	}
	if (rt->depot_low > rt->maxdepot) {
		/* More to give back: at the next look, so that no one call takes long. */
	} else if (rt->ndepot > rt->maxdepot) {
		rt->depot_low = rt->ndepot;
		rt->depot_trim_at = prt__add_sat(now, rt->stack_decay);
	} else {
		rt->depot_trim_at = PRT_NO_DEADLINE;
	}
	return n;
}

/* odd_trim_at: when the oldest of the other sizes' stacks has waited a period; depot_lock held. */
static void odd_end_set(struct prt_runtime *rt)
{
	rt->odd_trim_at = rt->nodd ? prt__add_sat(rt->odd[0].freed, rt->stack_decay) : PRT_NO_DEADLINE;
}

/* Give back up to @room of the other sizes' stacks freed a period ago, into @batch; depot_lock held. */
static unsigned odd_trim(struct prt_runtime *rt, uint64_t now, struct prt__stack *batch,
			 unsigned room)
{
	unsigned n = 0;

	if (now < rt->odd_trim_at)
		return 0;
	while (n < room && n < rt->nodd && prt__add_sat(rt->odd[n].freed, rt->stack_decay) <= now) {
		batch[n] = rt->odd[n].s;
		n++;
	}
	PRT_WRITE_ONCE(rt->nodd, rt->nodd - n);
	for (unsigned i = 0; i < n; i++)
		rt->odd_bytes -= batch[i].size;
	memmove(rt->odd, rt->odd + n, sizeof(*rt->odd) * rt->nodd);
	odd_end_set(rt);
	return n;
}

/* An array's address, read and written whatever the type of its entries. */
typedef void *__attribute__((may_alias)) prt__any_array;

/*
 * Give the array *@arr (*@cap entries of @size bytes, *@n of them in
 * use; an array of capacity 0, if allocated, has one entry) the
 * capacity @c, copying what is in use. depot_lock is held on entry and
 * again on return, and dropped meanwhile: the new array is allocated
 * and the old one freed outside it. Another worker may spill, take,
 * trim or resize meanwhile, so the swap is made only if the capacity is
 * still the one the caller saw and what is in use fits, and, for a
 * @shrink, only while no decay period runs (depot_trim_at: a burst may
 * have begun meanwhile, whose spills would grow it again). False if no
 * memory; true also when no swap was made: the caller looks again.
 */
static bool depot_resize(struct prt_runtime *rt, prt__any_array *arr, unsigned *cap,
			 const unsigned *n, unsigned c, size_t size, bool shrink)
{
	unsigned oldcap = *cap;
	void *a, *old = NULL;

	prt__spin_unlock(&rt->depot_lock);
	a = prt__alloc(size * (c ? c : 1));
	prt__spin_lock(&rt->depot_lock);
	if (!a)
		return false;
	if (*cap == oldcap && *n <= c && (!shrink || rt->depot_trim_at == PRT_NO_DEADLINE)) {
		old = *arr;
		if (*n)
			memcpy(a, old, size * *n);
		*arr = a;
		*cap = c;
		a = NULL;
	}
	prt__spin_unlock(&rt->depot_lock);
	if (old)
		prt__free(old, size * (oldcap ? oldcap : 1));
	if (a)
		prt__free(a, size * (c ? c : 1)); /* the loser's */
	prt__spin_lock(&rt->depot_lock);
	return true;
}

/* Back to its own size once the excess is gone: the array of a burst's stacks goes too. */
static void depot_shrink(struct prt_runtime *rt)
{
	prt__spin_lock(&rt->depot_lock);
	if (rt->capdepot > rt->maxdepot && rt->ndepot <= rt->maxdepot &&
	    rt->depot_trim_at == PRT_NO_DEADLINE)
		depot_resize(rt, (prt__any_array *)&rt->stack_depot, &rt->capdepot, &rt->ndepot,
			     rt->maxdepot, sizeof(*rt->stack_depot), true);
	prt__spin_unlock(&rt->depot_lock);
}

void prt__stack_trim(struct prt__worker *w, uint64_t now, unsigned max)
{
	struct prt_runtime *rt = w->rt;
	struct prt__stack *batch = w->trim_batch; /* not on the stack of the fiber it runs on */
	unsigned n;
	bool shrink;

	if (max > PRT_TRIM_BATCH)
		max = PRT_TRIM_BATCH;
	prt__spin_lock(&rt->depot_lock);
	n = depot_trim(rt, now, batch, max);
	n += odd_trim(rt, now, batch + n, max - n);
	trim_at_publish(rt);
	shrink = rt->depot_trim_at == PRT_NO_DEADLINE && rt->capdepot > rt->maxdepot &&
		 rt->ndepot <= rt->maxdepot;
	prt__spin_unlock(&rt->depot_lock);
	for (unsigned i = 0; i < n; i++)
		stack_free(rt, w, &batch[i]);
	if (shrink)
		depot_shrink(rt);
}

static prt__noinline void depot_refill(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;
	struct prt__stack_pool *p = &w->stacks;
	uint64_t now = 0;
	bool due;
	unsigned n;

	if (!PRT_READ_ONCE(rt->ndepot))
		return;
	due = prt__stack_trim_due(rt, &now);
	prt__spin_lock(&rt->depot_lock);
	n = rt->ndepot < PRT_POOL_BATCH(p) ? rt->ndepot : PRT_POOL_BATCH(p);
	PRT_WRITE_ONCE(rt->ndepot, rt->ndepot - n);
	if (rt->ndepot < rt->depot_low)
		rt->depot_low = rt->ndepot;
	memcpy(p->warm, rt->stack_depot + rt->ndepot, sizeof(*p->warm) * n);
	prt__spin_unlock(&rt->depot_lock);
	p->nwarm = n;
	if (due)
		prt__stack_trim(w, now, PRT_TRIM_HOT); /* a spawn's: a little */
}

/*
 * Room for @n more stacks in the depot (depot_lock held, and held again
 * on return, maybe dropped meanwhile); false if it may not grow (no
 * decay) or cannot (no memory).
 */
static bool depot_reserve(struct prt_runtime *rt, unsigned n)
{
	while (rt->ndepot + n > rt->capdepot) {
		unsigned need = rt->ndepot + n, c = rt->capdepot ? rt->capdepot : 64;

		if (!rt->stack_decay || need > UINT_MAX / 2)
			return false;
		while (c < need)
			c *= 2;
		/* (Drops the lock: the loop looks again.) */
		if (!depot_resize(rt, (prt__any_array *)&rt->stack_depot, &rt->capdepot, &rt->ndepot, c,
				  sizeof(*rt->stack_depot), false))
			return false;
	}
	return true;
}

static prt__noinline void depot_spill(struct prt_runtime *rt, struct prt__worker *w)
{
	struct prt__stack_pool *p = &w->stacks;
	unsigned n = PRT_POOL_BATCH(p), room;
	uint64_t now = 0;
	bool due = prt__stack_trim_due(rt, &now);

	prt__spin_lock(&rt->depot_lock);
	room = depot_reserve(rt, n) ? n : rt->capdepot - rt->ndepot;
	if (room > n)
		room = n;
	if (rt->ndepot + room > rt->maxdepot && rt->depot_trim_at == PRT_NO_DEADLINE) {
		/* The first stacks past what the depot keeps: a period starts. */
		if (!now)
			now = prt__now_ns();
		rt->depot_low = rt->ndepot;
		rt->depot_trim_at = prt__add_sat(now, rt->stack_decay);
		trim_at_publish(rt);
	}
	p->nwarm -= room;
	memcpy(rt->stack_depot + rt->ndepot, p->warm + p->nwarm, sizeof(*p->warm) * room);
	PRT_WRITE_ONCE(rt->ndepot, rt->ndepot + room);
	prt__spin_unlock(&rt->depot_lock);
	/* Depot full (no decay, or no memory): these go back to the system. */
	for (; room < n; room++)
		stack_free(rt, w, &p->warm[--p->nwarm]);
	if (due)
		prt__stack_trim(w, now, PRT_TRIM_HOT); /* a switch's: a little */
}

/*
 * Other sizes. A stack of a size other than the runtime's default (a
 * fiber's attr.stack_size) has no pool: it was mapped at each spawn and
 * unmapped as its fiber ended, ~10 us here for a 128 KiB guard stack
 * against ~0.1 for a pooled one. Now it waits in rt->odd for a spawn
 * that asks for the same size (page-rounded), newest first, as glibc
 * keeps thread stacks for pthread_create; one freed a decay period ago
 * and not taken goes back (oldest first, at the looks the depot's decay
 * has). At most maxdepot wait, of at most the bytes the depot keeps
 * for good (maxdepot default-size stacks; past either, a freed one goes
 * back at once): a program that asks for many different sizes, or large
 * ones, keeps no more mappings or address space than the depot may.
 */
static bool odd_get(struct prt_runtime *rt, size_t size, struct prt__stack *out)
{
	bool found = false;

	if (!PRT_READ_ONCE(rt->nodd))
		return false;
	prt__spin_lock(&rt->depot_lock);
	for (unsigned i = rt->nodd; i-- > 0;) {
		if (rt->odd[i].s.size != size)
			continue;
		*out = rt->odd[i].s;
		memmove(rt->odd + i, rt->odd + i + 1, sizeof(*rt->odd) * (rt->nodd - i - 1));
		PRT_WRITE_ONCE(rt->nodd, rt->nodd - 1);
		rt->odd_bytes -= size;
		if (i == 0)
			odd_end_set(rt);
		trim_at_publish(rt);
		found = true;
		break;
	}
	prt__spin_unlock(&rt->depot_lock);
	return found;
}

/* Keep @s (not of the default size) for a later spawn; false if it must go back now. */
static bool odd_put(struct prt_runtime *rt, const struct prt__stack *s)
{
	uint64_t now;
	bool kept = false;

	if (!rt->stack_decay || !rt->maxdepot)
		return false;
	now = prt__now_ns();
	prt__spin_lock(&rt->depot_lock);
	if (rt->nodd == rt->capodd && rt->capodd < rt->maxdepot) {
		/* Grow (not under the lock), up to maxdepot; full still if that fails. */
		unsigned c = rt->capodd > rt->maxdepot / 2 ? rt->maxdepot : 2 * rt->capodd;

		if (c < 16)
			c = rt->maxdepot < 16 ? rt->maxdepot : 16;
		depot_resize(rt, (prt__any_array *)&rt->odd, &rt->capodd, &rt->nodd, c,
			     sizeof(*rt->odd), false);
	}
	if (rt->nodd < rt->capodd && s->size <= rt->odd_max_bytes - rt->odd_bytes) {
		rt->odd_bytes += s->size;
		rt->odd[rt->nodd].s = *s;
		rt->odd[rt->nodd].freed = now;
		PRT_WRITE_ONCE(rt->nodd, rt->nodd + 1);
		if (rt->odd_trim_at == PRT_NO_DEADLINE) {
			rt->odd_trim_at = prt__add_sat(now, rt->stack_decay);
			trim_at_publish(rt);
		}
		kept = true;
	}
	prt__spin_unlock(&rt->depot_lock);
	return kept;
}

/* A default-size stack from the depot for a plain thread's spawn (it has no pool). */
static bool depot_take(struct prt_runtime *rt, struct prt__stack *out)
{
	bool found = false;

	if (!PRT_READ_ONCE(rt->ndepot))
		return false;
	prt__spin_lock(&rt->depot_lock);
	if (rt->ndepot) {
		PRT_WRITE_ONCE(rt->ndepot, rt->ndepot - 1);
		if (rt->ndepot < rt->depot_low)
			rt->depot_low = rt->ndepot;
		*out = rt->stack_depot[rt->ndepot];
		found = true;
	}
	prt__spin_unlock(&rt->depot_lock);
	return found;
}

int prt__stack_depot_init(struct prt_runtime *rt)
{
	/* saturating: stack_pool_max is the caller's */
	rt->maxdepot = rt->stack_pool_max > UINT_MAX / (unsigned)rt->nworkers
			       ? UINT_MAX
			       : rt->stack_pool_max * (unsigned)rt->nworkers;
	rt->capdepot = rt->maxdepot;
	rt->odd_max_bytes = rt->stack_size > SIZE_MAX / (rt->maxdepot ? rt->maxdepot : 1)
				    ? SIZE_MAX
				    : rt->stack_size * rt->maxdepot;
	rt->stack_depot = prt__alloc(sizeof(*rt->stack_depot) * (rt->maxdepot ? rt->maxdepot : 1));
	return rt->stack_depot ? 0 : -ENOMEM;
}

void prt__stack_depot_fini(struct prt_runtime *rt)
{
	for (unsigned i = 0; i < rt->ndepot; i++) {
		struct prt__stack *s = &rt->stack_depot[i];

		if (s->flags & PRT_STK_SLAB)
			stack_deregister(s); /* the slab is unmapped whole */
		else
			stack_unmap(s);
	}
	prt__free(rt->stack_depot, sizeof(*rt->stack_depot) * (rt->capdepot ? rt->capdepot : 1));
	rt->stack_depot = NULL;
	rt->ndepot = 0;
	for (unsigned i = 0; i < rt->nodd; i++)
		stack_unmap(&rt->odd[i].s); /* never slab stacks */
	if (rt->odd)
		prt__free(rt->odd, sizeof(*rt->odd) * (rt->capodd ? rt->capodd : 1));
	rt->odd = NULL;
	rt->nodd = rt->capodd = 0;
}

static int stack_new(struct prt_runtime *rt, struct prt__worker *w, int home, size_t size,
		     struct prt__stack *out)
{
	bool canary = rt->stack_kind == PRT_STACK_CANARY;

	if (size == rt->stack_size && w && canary)
		return canary_slab_get(rt, w, out);
	return canary ? canary_map(rt, home, size, out) : guard_map(rt, home, size, out);
}

/*
 * A mapping failed (-ENOMEM: RLIMIT_AS, vm.max_map_count, memory): give
 * back all that the decay keeps, the other sizes' stacks and the
 * depot's past maxdepot, at once. True if there was any (the caller
 * tries again).
 */
static bool stack_flush(struct prt_runtime *rt, struct prt__worker *w)
{
	struct prt__stack local[PRT_TRIM_HOT];
	struct prt__stack *batch = w ? w->trim_batch : local; /* a plain thread's own stack */
	unsigned room = w ? PRT_TRIM_BATCH : PRT_TRIM_HOT, n;
	bool any = false;

	do {
		n = 0;
		prt__spin_lock(&rt->depot_lock);
		for (; n < room && rt->nodd; n++) {
			batch[n] = rt->odd[rt->nodd - 1].s;
			rt->odd_bytes -= batch[n].size;
			PRT_WRITE_ONCE(rt->nodd, rt->nodd - 1);
		}
		odd_end_set(rt);
		for (; n < room && rt->ndepot > rt->maxdepot; n++) {
			PRT_WRITE_ONCE(rt->ndepot, rt->ndepot - 1);
			batch[n] = rt->stack_depot[rt->ndepot];
		}
		if (rt->ndepot < rt->depot_low)
			rt->depot_low = rt->ndepot;
		if (rt->ndepot <= rt->maxdepot)
			rt->depot_trim_at = PRT_NO_DEADLINE;
		trim_at_publish(rt);
		prt__spin_unlock(&rt->depot_lock);
		for (unsigned i = 0; i < n; i++)
			stack_free(rt, w, &batch[i]);
		any |= n > 0;
	} while (n == room);
	if (any)
		depot_shrink(rt);
	return any;
}

int prt__stack_get(struct prt_runtime *rt, struct prt__worker *w, int home, size_t size,
		   struct prt__stack *out)
{
	int err, saved;

	size = size ? prt__page_round_sat(size, page_size()) : rt->stack_size;
	if (size == rt->stack_size && w) {
		if (!w->stacks.nwarm)
			depot_refill(w);
		if (w->stacks.nwarm) {
			*out = w->stacks.warm[--w->stacks.nwarm];
			return 0;
		}
	} else if (size == rt->stack_size ? depot_take(rt, out) : odd_get(rt, size, out)) {
		return 0;
	}
	/* A new mapping: its calls' errno (mmap, mprotect, hwloc's mbind) is not the caller's. */
	saved = prt__errno_get();
	err = stack_new(rt, w, home, size, out);
	/* Out of address space or mappings: what the decay keeps goes first. */
	if (err == -ENOMEM && stack_flush(rt, w))
		err = stack_new(rt, w, home, size, out);
	prt__errno_set(saved);
	if (!err && size == rt->stack_size)
		out->flags |= PRT_STK_POOLED;
	return err;
}

/* Unmap a stack that has a mapping of its own (not a slab stack). */
static void stack_unmap(struct prt__stack *s)
{
	if (s->flags & PRT_STK_CANARY) {
		stack_deregister(s);
		stack_munmap(s->base, s->size);
	} else {
		guard_unmap(s);
	}
}

/* @w: the calling worker; NULL from a plain thread (a slab stack then goes to the runtime's cold list). */
static void stack_free(struct prt_runtime *rt, struct prt__worker *w, struct prt__stack *s)
{
	struct prt__stack_pool *p;

	if (!(s->flags & PRT_STK_SLAB)) {
		stack_unmap(s);
		return;
	}
	/* A slab stack cannot be unmapped alone: give its pages back. */
	madvise(s->base, s->size, MADV_DONTNEED);
	if (!w) {
		prt__spin_lock(&rt->slab_lock);
		if (cold_reserve(&rt->cold, rt->ncold, &rt->capcold, rt->ncold + 1)) {
			rt->cold[rt->ncold] = *s;
			PRT_WRITE_ONCE(rt->ncold, rt->ncold + 1);
		} /* else leak it into its slab; freed at destroy */
		prt__spin_unlock(&rt->slab_lock);
		return;
	}
	p = &w->stacks;
	if (!cold_reserve(&p->cold, p->ncold, &p->capcold, p->ncold + 1))
		return; /* leak the stack into its slab; freed at destroy */
	p->cold[p->ncold++] = *s;
	if (p->ncold > PRT_COLD_LOCAL)
		cold_spill(rt, p);
}

void prt__stack_put(struct prt_runtime *rt, struct prt__worker *w, struct prt__stack *s)
{
	struct prt__stack_pool *p = &w->stacks;

	stack_unpoison(s);
	if ((s->flags & PRT_STK_POOLED) && p->nwarm == p->max && p->max)
		depot_spill(rt, w);
	if (prt__stack_put_warm(p, s))
		return;
	if (!(s->flags & PRT_STK_POOLED) && odd_put(rt, s))
		return;
	stack_free(rt, w, s);
}

void prt__stack_pool_fini(struct prt_runtime *rt, struct prt__stack_pool *p)
{
	for (unsigned i = 0; i < p->nwarm; i++) {
		if (!(p->warm[i].flags & PRT_STK_SLAB))
			stack_free(rt, prt__container_of(p, struct prt__worker, stacks), &p->warm[i]);
		else
			stack_deregister(&p->warm[i]);
	}
	for (unsigned i = 0; i < p->ncold; i++)
		stack_deregister(&p->cold[i]);
	prt__free(p->warm, sizeof(*p->warm) * (p->max ? p->max : 1));
	prt__free(p->cold, sizeof(*p->cold) * p->capcold);
	memset(p, 0, sizeof(*p));
}

void prt__stack_slabs_free(struct prt_runtime *rt)
{
	struct prt__slab *sl = rt->slabs, *next;

	for (unsigned i = 0; i < rt->ncold; i++)
		stack_deregister(&rt->cold[i]);
	prt__free(rt->cold, sizeof(*rt->cold) * rt->capcold);
	rt->cold = NULL;
	rt->ncold = rt->capcold = 0;

	for (; sl; sl = next) {
		next = sl->next;
		stack_munmap(sl->map, sl->len);
		prt__free(sl, sizeof(*sl));
	}
	rt->slabs = NULL;
}
