/* SPDX-License-Identifier: MIT */
/*
 * Fibers: spawn, exit, join, detach, park/unpark and the per-fiber
 * attributes. Their descriptors come from fiber_desc.c.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proxyrt/waitgroup.h>

#include "alloc.h"
#include "arch/ctx.h"
#include "cond_int.h"
#include "fault.h"
#include "fiber_desc.h"
#include "io_int.h"
#include "mutex_int.h"
#include "proxy_int.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "sched_priv.h"
#include "switch.h"
#include "wait.h"
#include "waitgroup.h"
#include "worker.h"

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

/*
 * Store @set (NULL: every worker) as @f's affinity. Every reader goes
 * through prt__fiber_allowed, which reads @aff only where @aff_all is
 * false: a spawn with no affinity (nearly all) stores @aff_all alone,
 * not the PRT_MAX_WORKERS / 64 words (W2: ~45 instructions a spawn of
 * ~980, callgrind). Readers take no lock (a wake from any thread), so
 * @aff_all is stored with release after the words, and read with
 * acquire: who sees it false sees the words stored before it, not what
 * the descriptor's last fiber left there (a review: zeros in a fresh
 * chunk, read as "no worker", aborted the wake). A reader that races a
 * change of a set of several words may still see a mix of the two
 * (prt__select_worker_from copes: worker.c, first_allowed).
 */
static void affinity_store(struct prt__fiber *f, const prt_workerset_t *set, int nworkers)
{
	if (!set) {
		atomic_store_explicit(&f->aff_all, true, memory_order_release);
		return;
	}
	for (int i = 0; i < PRT_MAX_WORKERS / 64; i++) {
		atomic_store_explicit(&f->aff[i], set->bits[i], memory_order_relaxed);
		if (i == 0)
			prt__fault_pause(PRT_PAUSE_AFFINITY_WORDS); /* test builds: a wake may look here */
	}
	/* release: pairs with the acquire in prt__fiber_allowed */
	atomic_store_explicit(&f->aff_all, prt_workerset_count(set) == nworkers,
			      memory_order_release);
}

/* ---- spawn -------------------------------------------------------------- */

/* What prt_fiber_attr_init sets: a spawn with no attributes uses it, unchecked. */
static const prt_fiber_attr_t attr_defaults = { .size = sizeof(prt_fiber_attr_t),
						 .priority = PRT_PRIO_DEFAULT };

PRT_API void prt_fiber_attr_init(prt_fiber_attr_t *attr)
{
	if (!attr)
		return;
	memcpy(attr, &attr_defaults, sizeof(*attr));
}

static int attr_check(struct prt_runtime *rt, const prt_fiber_attr_t *a, prt_fiber_t *out)
{
	if (a == &attr_defaults)
		return out ? 0 : -EINVAL; /* not detached: a handle is needed */
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
		       void *(*fn)(void *), void *arg, void *wg)
{
	PRT_WRITE_ONCE(f->rt, rt); /* read racily by spinners on an owner (prt__owner_runs_soon) */
	f->kind = PRT_FK_FIBER;
	f->fn = fn;
	f->arg = arg;
	f->result = NULL;
	f->joiner = NULL;
	f->detached = a->flags & PRT_FIBER_DETACHED;
	f->reap = false;
	prt__wait_init(&f->park, f); /* no permit */
	atomic_store_explicit(&f->cancel, 0, memory_order_relaxed);
	f->cancel_wait = NULL;
	f->cancel_io = NULL;
	f->cancel_sleep = NULL;
	f->wg = wg;
	PRT_WRITE_ONCE(f->last_worker, NULL);
#if PRT_USE_ASAN
	f->asan_fake_stack = NULL;
#endif
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
	/*
	 * Not attached_to, mwait, wait_cond or cwait: each is set for a
	 * wait and cleared as it ends, so a fiber ends with them NULL
	 * (prt__fiber_free checks it in debug builds), and a new chunk is
	 * zeroed. Their line stays unwritten by a spawn (W2, one worker:
	 * ~1 fewer last-level miss a spawn+join, callgrind's cache model).
	 */
	/* A condvar spin ends before its wait returns. */
	prt__assert(!atomic_load_explicit(&f->cspin, memory_order_relaxed));
	/*
	 * Only descriptors that hold nothing are reused (prt__fiber_free,
	 * _release), but a deferred interrupt may have left the owed mark.
	 */
	atomic_store_explicit(&f->nheld, 0, memory_order_relaxed);
	f->last_held = NULL; /* the same: a kept descriptor's, reused */
	/* A prt_preempt_disable() region its last user left open ended with it. */
	atomic_store_explicit(&f->preempt_count, 0, memory_order_relaxed);
	/* Nothing caught, nothing in flight (a fiber that ended inside a catch left its own). */
	f->cxa_eh = (struct prt__cxa_eh){ NULL, 0 };
	atomic_store_explicit(&f->rq_worker, NULL, memory_order_relaxed);
	atomic_store_explicit(&f->on_cpu, 0, memory_order_relaxed);
	atomic_store_explicit(&f->prio, a->priority, memory_order_relaxed);
	if (a->has_affinity)
		affinity_store(f, &a->affinity, rt->nworkers);
	else
		atomic_store_explicit(&f->aff_all, true, memory_order_release); /* affinity_store(NULL) */
	if (a->name) {
		snprintf(f->name, sizeof(f->name), "%.*s",
			 (int)prt__utf8_cut(a->name, sizeof(f->name) - 1), a->name);
		f->named = true;
	} else if (prt__unlikely(f->named)) {
		f->name[0] = '\0'; /* its last fiber's */
		f->named = false;
	}
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

/*
 * Bytes left unused at the top of @s (cache colouring). Stacks of one
 * size are one size apart (slabs) or page aligned, so their tops, where
 * a fiber starts and where a parked fiber's frames stay, all fall in the
 * same few cache sets: 1000 fibers spawned at once missed in L1 and L2
 * on every top line. A hash of the stack's page spreads the tops over
 * 16 lines of 64 bytes (8 for stacks under 16 KiB): 0..960 bytes, so
 * the frames a parked fiber keeps still fit its top page. W2 with one
 * worker: 138-143 -> 113-118 ns per spawn+join.
 */
static size_t stack_colour(const struct prt__stack *s)
{
	unsigned n = s->size >= 16384 ? 16 : 8;
	uint32_t h = (uint32_t)((uintptr_t)s->base >> 12) * 0x9e3779b1u; /* Fibonacci hashing */

	return (size_t)(h >> 28) % n * 64;
}


/*
 * The spawn proper. @w: the caller's worker if it is one of @rt's, else
 * NULL; @wg: the wait group it counts itself done in as it ends, or NULL.
 */
static inline int spawn(struct prt_runtime *rt, struct prt__worker *w, prt_fiber_t *out,
			const prt_fiber_attr_t *attr, void *(*fn)(void *), void *arg, void *wg)
{
	struct prt__worker *t;
	struct prt__fiber *f;
	uint64_t id;
	int err;

	if ((err = attr_check(rt, attr, out)))
		return err;
	/* The allocators' common cases inline, here and for the id below (W2: ~20 instructions) */
	if (prt__likely(w && w->free_desc)) {
		f = w->free_desc;
		w->free_desc = f->free_next;
		w->nfree_desc--;
	} else if (!(f = prt__desc_alloc(rt, w))) {
		return -ENOMEM;
	}
	fiber_init(rt, f, attr, fn, arg, wg);
	t = spawn_target(rt, w, f);
	/* prt__stack_get's common case inline (its out-of-line frame was ~20 instructions) */
	if (prt__likely(w && !attr->stack_size && w->stacks.nwarm))
		f->stack = w->stacks.warm[--w->stacks.nwarm];
	else if ((err = prt__stack_get(rt, w, t->index, attr->stack_size, &f->stack))) {
		prt__fiber_free(f);
		return err;
	}
	f->finish_slow = (f->stack.flags & PRT_STK_CANARY) != 0;
	f->sp = prt__ctx_init((char *)f->stack.base + f->stack.size - stack_colour(&f->stack),
			      prt__fiber_entry, f);
	prt__tsan_fiber_create(f);
	id = prt__likely(w && w->id_next != w->id_end) ? w->id_next++ : prt__fiber_new_id(w);
	atomic_store_explicit(&f->id, id, memory_order_relaxed);
	/*
	 * Counted before it can run, so that prt_runtime_destroy sees it
	 * (from outside the runtime, prt__rt_spawn_begin counted it).
	 */
	if (w)
		atomic_store_explicit(&w->nspawned, atomic_load_explicit(&w->nspawned, memory_order_relaxed) + 1, memory_order_release);
	if (out) {
		out->p = f;
		out->id = id;
	}
	prt__enqueue(t, f);
	return 0;
}

static inline int spawn_in(prt_runtime_t *rt, prt_fiber_t *out, const prt_fiber_attr_t *attr,
			   void *(*fn)(void *), void *arg, void *wg)
{
	struct prt__worker *w;
	int err;

	if (!rt || !fn)
		return -EINVAL;
	if (!attr)
		attr = &attr_defaults;
	w = prt__worker_of(rt, prt__cur_worker());
	if (prt__likely(w))
		return spawn(rt, w, out, attr, fn, arg, wg);
	/*
	 * From outside: counted and holding a reference before anything of
	 * @rt is touched, so destroy waits for this fiber to run (runtime.c,
	 * "Outside callers"), or -EINVAL / -ESHUTDOWN.
	 */
	if ((err = prt__rt_spawn_begin(rt)))
		return err;
	err = spawn(rt, NULL, out, attr, fn, arg, wg);
	prt__rt_spawn_end(rt, err != 0);
	return err;
}

PRT_API int prt_spawn(prt_runtime_t *rt, prt_fiber_t *out, const prt_fiber_attr_t *attr,
		      void *(*fn)(void *), void *arg)
{
	return spawn_in(rt, out, attr, fn, arg, NULL);
}

PRT_API int prt_waitgroup_spawn(prt_waitgroup_t *wg, prt_runtime_t *rt, prt_fiber_t *out,
				const prt_fiber_attr_t *attr, void *(*fn)(void *), void *arg)
{
	int err;

	if (!wg)
		return -EINVAL;
	if ((err = prt_waitgroup_add(wg, 1)))
		return -err;
	/* Counted before it can run and end; taken back if it never runs. */
	if ((err = spawn_in(rt, out, attr, fn, arg, wg)))
		prt_waitgroup_add(wg, -1);
	return err;
}

/* ---- exit --------------------------------------------------------------- */

/*
 * A fiber's end in a child forked from it (worker.c, fork_child): the
 * child's one thread ends, and with it the process, as when the last
 * thread of a process returns from its start routine or calls
 * pthread_exit (POSIX: exit(0)). The parent's objects it would have
 * touched (the joiner, a waitgroup) have no workers here.
 */
static prt__cold PRT_NORETURN void forked_end(void)
{
	exit(0);
}

static PRT_NORETURN void fiber_exit(struct prt__fiber *f, void *result)
{
	struct prt__wait *joiner;
	struct prt__worker *w;

	if (prt__unlikely(!prt__cur_worker()))
		forked_end();
	if (f->wg)
		prt__waitgroup_done(f->wg); /* prt_waitgroup_spawn; the group's waiters may run now */
	f->result = result;
	prt__spin_lock(&f->lock);
	atomic_store_explicit(&f->state, PRT_FS_DEAD, memory_order_relaxed);
	f->finish_slow = true; /* its stack goes back at the switch away (switch.h) */
	f->reap = f->detached;
	joiner = f->joiner;
	prt__spin_unlock(&f->lock);
	if (joiner)
		prt__wait_wake(joiner); /* before the off-CPU handover: see join_locked */
	prt__fault_pause(PRT_PAUSE_FIBER_ENDED); /* test builds: a dump may look here */
	w = prt__cur_worker();
	/* Counted as ended once the switch away from it is done (switch.c, count_exit). */
	prt__schedule_blocked(w);
	prt__assert(!"a dead fiber was resumed");
	abort();
}

/*
 * Weak: bound by the static link (libproxyrt.a) or at load time
 * (libproxyrt.so), also to a libstdc++ linked statically into the
 * program (-static-libstdc++), which exports the symbol because this
 * library refers to it; dlsym finds one loaded later with RTLD_GLOBAL
 * (a review: with -static-libstdc++ and no libstdc++.so in the process,
 * dlsym alone found none, and fibers shared one exception stack).
 */
extern struct prt__cxa_eh *__cxa_get_globals(void) __attribute__((weak));

struct prt__cxa_eh *prt__cxa_globals(void)
{
	struct prt__cxa_eh *(*get)(void) = __cxa_get_globals;
	void *sym;

	if (!get && (sym = dlsym(RTLD_DEFAULT, "__cxa_get_globals")))
		get = (struct prt__cxa_eh * (*)(void)) sym;
	return get ? get() : NULL;
}

void prt__fiber_entry(void *from, void *data)
{
	struct prt__fiber *f = data;
	struct prt__worker *w;

	prt__finish_switch(from);
	w = prt__cur_worker();
	*w->errno_p = 0; /* a fiber starts with errno 0, as a thread does */
	atomic_store_explicit(&w->stats.fibers_run, atomic_load_explicit(&w->stats.fibers_run, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	fiber_exit(f, f->fn(f->arg));
}

PRT_API void prt_exit(void *result)
{
	struct prt__worker *w = prt__cur_worker();

	if (!w) {
		if (prt__forked_fiber())
			forked_end();
		fprintf(stderr, "proxyrt: prt_exit called from a plain thread: aborting\n");
		abort();
	}
	fiber_exit(w->curr, result);
}

/* ---- handles ------------------------------------------------------------ */

static struct prt__fiber *self_fiber(void)
{
	struct prt__worker *w = prt__cur_worker();

	return w ? w->curr : NULL;
}

/*
 * prt__fiber_lock_handle for a call that goes on using @h's runtime once
 * f->lock is dropped: from outside that runtime it also takes a reference on it
 * (*@ref, for put_ref), which fails as for a stale handle once destroy
 * drains: every fiber has ended then, and is about to be reaped
 * (runtime.c, "Outside callers").
 */
static struct prt__fiber *lock_handle_ref(prt_fiber_t h, struct prt_runtime **ref)
{
	struct prt__fiber *f = prt__fiber_lock_handle(h);

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

PRT_API int prt_join(prt_fiber_t h, void **result)
{
	struct prt__fiber *self = self_fiber(), *f;
	struct prt_runtime *ref;
	int err;

	/* relaxed: our own id, written before we first ran */
	if (self && self == h.p && atomic_load_explicit(&self->id, memory_order_relaxed) == h.id)
		return -EDEADLK;
	if (!(f = lock_handle_ref(h, &ref)))
		return -ESRCH;
	err = join_locked(self, f, result);
	put_ref(ref);
	return err;
}

/*
 * A join's wait for @f was cancelled (prt_cancel). If @f has not ended,
 * withdraw (true: @f stays joinable); if it has, its exit read our wait
 * in the same critical section that made it DEAD, and its wake comes:
 * wait for it, and the join completes (false).
 */
static bool join_cancelled(struct prt__fiber *f, struct prt__wait *wt)
{
	bool ended;

	prt__spin_lock(&f->lock);
	ended = atomic_load_explicit(&f->state, memory_order_relaxed) == PRT_FS_DEAD;
	if (!ended)
		f->joiner = NULL;
	prt__spin_unlock(&f->lock);
	if (!ended)
		return true;
	prt__wait_rearm(wt);
	prt__wait_block(wt, 0);
	return false;
}

/* Join @f, locked with its handle checked; unlocks it. */
static int join_locked(struct prt__fiber *self, struct prt__fiber *f, void **result)
{
	struct prt__wait wt;
	bool waited = true;

	prt__wait_init(&wt, self);
	if (f->detached || f->joiner) {
		prt__spin_unlock(&f->lock);
		return -EINVAL;
	}
	if (atomic_load_explicit(&f->state, memory_order_relaxed) != PRT_FS_DEAD) {
		/* Cancelled: only a join that need not wait goes on. */
		if (self && prt__cancel_pending(self)) {
			prt__spin_unlock(&f->lock);
			return -ECANCELED;
		}
		f->joiner = &wt; /* a racing join or detach now sees it taken */
		if (self)
			prt__set_wait(self, PRT_WK_JOIN, f, 0);
		prt__spin_unlock(&f->lock);
		/* Woken by fiber_exit, which reads f->joiner under f->lock. */
		if (prt__wait_block_cancel(&wt, 0) && join_cancelled(f, &wt))
			return -ECANCELED;
	} else {
		f->joiner = &wt; /* as above */
		prt__spin_unlock(&f->lock);
		waited = false;
	}
	/* acquire: pairs with the release in prt__finish_switch (the check inline: nearly always off) */
	if (atomic_load_explicit(&f->on_cpu, memory_order_acquire))
		prt__wait_off_cpu(f);
	if (result)
		*result = f->result;
	prt__fiber_free(f);
	if (!waited)
		prt__sched_point_passed();
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
	if (!(f = prt__fiber_lock_handle(h)))
		return -ESRCH;
	snprintf(buf, len, "%.*s", (int)prt__utf8_cut(f->name, len - 1), f->name);
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
	struct prt__fiber *f = prt__fiber_lock_handle(h);
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
		prt__migrate_queued(f, true);
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
	if (!(f = prt__fiber_lock_handle(h)))
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
	prt__set_wait(self, PRT_WK_PARK, NULL, 0);
	return -prt__wait_park(w, &self->park);
}

PRT_API int prt_unpark(prt_fiber_t h)
{
	struct prt__fiber *f = prt__fiber_lock_handle(h);

	if (!f)
		return -ESRCH;
	if (prt__wait_unpark_locked(&f->park)) {
		prt__spin_unlock(&f->lock);
		prt__wake(f);
		return 0;
	}
	prt__spin_unlock(&f->lock);
	return 0;
}

/* ---- cancellation (docs/design.md, section 17) ------------------------------- */

/* What prt_cancel found @f asleep in, under f->lock: each to end once it is dropped. */
struct cancel_hooks {
	bool wake;                /* a cancellable wait or a park, ended: prt__wake it */
	struct prt__worker *io;   /* an I/O request that worker holds: it cancels it */
	struct prt__worker *sleep; /* prt_sleep_* on that worker's heap */
};

/* f->lock held, the flag just set: end or collect the wait @f sleeps in, if any. */
static void cancel_hooks_locked(struct prt__fiber *f, struct cancel_hooks *k)
{
	k->wake = prt__wait_cancel_locked(f) || prt__wait_park_cancel_locked(&f->park);
	k->io = f->cancel_wait ? f->cancel_io : NULL;
	k->sleep = f->cancel_sleep;
}

/*
 * prt_cancel of @f (id @id) when it may wait for a mutex or an rwlock:
 * take the rq lock of a worker of f's runtime (where a wake would queue
 * it) and end that wait there as its timer would. Any thread; from
 * outside f's runtime the caller holds a reference.
 */
static void cancel_lock_wait(struct prt__fiber *f, uint64_t id)
{
	struct prt__worker *w = prt__worker_of(f->rt, prt__cur_worker());
	struct prt__mutex *m;

	/*
	 * seq_cst: the load half of prt_cancel's store-then-load (the flag,
	 * then blocked_on), against lock_fiber's (blocked_on, then the
	 * flag): one of the two sees the other.
	 */
	if (!atomic_load_explicit(&f->blocked_on, memory_order_seq_cst))
		return;
	/*
	 * Where a sleeping waiter is queued: where a wake would queue it
	 * (ours if it may run here, else where it ran). Unlike a timer's
	 * worker, that one may sleep: wake it, its pick runs the fiber.
	 */
	w = prt__select_worker_from(f, w);
	prt__rq_lock(w);
	if ((m = prt__mutex_cancel_find(f, id))) {
		if (m->type == PRT__MTX_RWLOCK)
			prt__rwlock_cancel_locked(w, f, m);
		else
			prt__mutex_cancel_locked(w, f, m);
	}
	prt__rq_unlock(w);
	prt__wake_worker(w);
}

PRT_API int prt_cancel(prt_fiber_t h)
{
	struct cancel_hooks k;
	struct prt_runtime *ref;
	struct prt__fiber *f = lock_handle_ref(h, &ref);

	if (!f)
		return -ESRCH;
	if (atomic_load_explicit(&f->state, memory_order_relaxed) == PRT_FS_DEAD) {
		prt__spin_unlock(&f->lock);
		put_ref(ref);
		return -ESRCH; /* ended: nothing to cancel (joinable still) */
	}
	/*
	 * seq_cst: the store half of two store-then-load pairs: with our
	 * load of blocked_on (cancel_lock_wait) against lock_fiber's
	 * store of it then load of this; and with the exchange of a
	 * worker's cancel_posted (prt__io_cancel_post). Under f->lock: the
	 * fiber looks at it under f->lock before it sleeps (wait.c, sched.c).
	 */
	atomic_fetch_or_explicit(&f->cancel, PRT_CANCEL_PENDING, memory_order_seq_cst);
	cancel_hooks_locked(f, &k);
	prt__spin_unlock(&f->lock);
	/* Asleep in what a hook names: the fiber cannot end before this wake. */
	if (k.wake)
		prt__wake(f);
	if (k.io)
		prt__io_cancel_post(k.io);
	if (k.sleep)
		prt__sleep_cancel(k.sleep, f, h.id);
	/* Not a hook: a mutex waiter may be queued, not asleep (invariant 1). */
	cancel_lock_wait(f, h.id);
	put_ref(ref);
	return 0;
}

PRT_API int prt_cancelled(void)
{
	struct prt__fiber *self = self_fiber();

	if (!self)
		return -EPERM;
	return prt__cancel_pending(self);
}

PRT_API int prt_cancel_clear(void)
{
	struct prt__fiber *self = self_fiber();

	if (!self)
		return -EPERM;
	/* relaxed: nobody waits on it; a prt_cancel racing with this may win or not */
	return (int)(atomic_exchange_explicit(&self->cancel, 0, memory_order_relaxed) &
		     PRT_CANCEL_PENDING);
}
