/* SPDX-License-Identifier: MIT */
#ifndef PRT_MUTEX_OWNER_H
#define PRT_MUTEX_OWNER_H

/*
 * Mutex owners (mutex_owner.c): who a caller is in an owner word (a
 * fiber's descriptor, a plain thread's struct prt__tself), the count of
 * mutexes each owner holds, what each owner waits on (blocked_on), and
 * the walk along owner -> what it waits on -> owner that finds deadlocks.
 *
 * The lock and unlock fast paths (mutex.c) learn the caller's token and
 * count it with the inlines below: a fiber's costs two loads and a
 * plain store; a plain thread's one call to read its thread-local
 * (prt__cur_tself). Everything else here is out of line.
 */
#include "mutex_int.h"
#include "sched_int.h"

/*
 * A plain thread's identity for mutexes: its token (the address), what
 * it waits on, what it holds. Allocated at the thread's first lock,
 * given back when it ends holding nothing; never freed (chain walks may
 * read one whose thread just ended, as with fiber descriptors).
 */
struct prt__tself {
	_Atomic(struct prt__mutex *) blocked_on;
	atomic_uint wait_gen; /* waits begun, as prt__fiber.wait_gen */
	/* Mutexes it holds (a recursive one once); written only by its thread. */
	atomic_uint nheld;
	/* Of those, untracked rwlock read holds (as prt__fiber.rd_untracked). */
	atomic_uint rd_untracked;
	struct prt__mutex *last_held; /* as prt__fiber.last_held */
	struct prt__tself *all_next;  /* on the list of every prt__tself; never unlinked */
	struct prt__tself *free_next; /* on the free list while no thread has it */
} __attribute__((aligned(8)));

/*
 * The caller as an owner: its token, its count of mutexes held, and its
 * last mutex taken (prt__fiber.last_held).
 */
struct prt__owner {
	uintptr_t tok;
	atomic_uint *nheld; /* NULL for a thread that never locked */
	struct prt__mutex **last; /* NULL with @nheld */
};

/* The calling thread's identity, NULL until its first lock (mutex_owner.c). */
extern __thread struct prt__tself *prt__tls_tself __attribute__((tls_model("initial-exec")));

/*
 * The calling thread's identity, or NULL if it never locked. No lock.
 * Only plain threads call it, and they never switch; it still reads the
 * thread-local through a noinline accessor (STYLE.md, "Inside"). Static
 * (not inline, which noinline contradicts; unused where no file calls
 * it), so each file has its own copy and the compiler knows the one
 * register it clobbers: prt_mutex_unlock's fast path then keeps the
 * worker in a scratch register across the thread path's call instead of
 * saving a callee-saved one around it.
 */
static prt__noinline __attribute__((unused)) struct prt__tself *prt__cur_tself(void)
{
	return prt__tls_tself;
}
/*
 * Give the calling thread an identity (its first lock); NULL if out of
 * memory (or of pthread keys). Cold. No lock held.
 */
prt__cold struct prt__tself *prt__tself_new(void);

/*
 * A plain thread as an owner, for a call that may make it one: false if
 * its first lock finds no memory for its identity.
 */
static inline bool prt__thread_owner(struct prt__owner *me)
{
	struct prt__tself *t = prt__cur_tself();

	if (prt__unlikely(!t) && !(t = prt__tself_new()))
		return false;
	me->tok = (uintptr_t)t | PRT_MTX_THREAD;
	me->nheld = &t->nheld;
	me->last = &t->last_held;
	return true;
}

/*
 * The caller as an owner (lock calls; @w: prt__cur_worker()); false:
 * ENOMEM (prt__thread_owner). No lock held.
 */
static inline bool prt__owner_self(struct prt__worker *w, struct prt__owner *me)
{
	if (prt__likely(w)) {
		me->tok = (uintptr_t)w->curr;
		me->nheld = &w->curr->nheld;
		me->last = &w->curr->last_held;
		return true;
	}
	return prt__thread_owner(me);
}

/*
 * The caller as an owner, to compare with an owner word (unlock): a
 * thread that never locked gets PRT_MTX_THREAD alone, which owns nothing.
 * No lock held.
 */
static inline void prt__owner_peek(struct prt__worker *w, struct prt__owner *me)
{
	struct prt__tself *t;

	if (prt__likely(w)) {
		me->tok = (uintptr_t)w->curr;
		me->nheld = &w->curr->nheld;
		me->last = &w->curr->last_held;
		return;
	}
	t = prt__cur_tself();
	me->tok = (uintptr_t)t | PRT_MTX_THREAD;
	me->nheld = t ? &t->nheld : NULL;
	me->last = t ? &t->last_held : NULL;
}

/*
 * The caller now holds @d (1 or -1u) more mutexes (@nheld: its own
 * count, from prt__owner_self/_peek). Only the owner writes it: no lock.
 */
static inline void prt__held_add(atomic_uint *nheld, unsigned d)
{
	/* One writer, the owner itself: no read-modify-write needed. */
	atomic_store_explicit(nheld, atomic_load_explicit(nheld, memory_order_relaxed) + d,
			      memory_order_relaxed);
}

/*
 * The caller released one hold (@nheld as for prt__held_add). True if
 * that was its last and its time slice was extended for it
 * (PRT_HELD_SLICE_OWED, preempt.c): the caller then calls
 * prt__preempt_slice_owed() once the lock is fully released. One
 * compare on the unlock fast path, no extra load.
 */
static inline bool prt__held_drop(atomic_uint *nheld)
{
	unsigned n = atomic_load_explicit(nheld, memory_order_relaxed) - 1;

	atomic_store_explicit(nheld, n, memory_order_relaxed);
	return prt__unlikely(n == PRT_HELD_SLICE_OWED);
}

/*
 * Will owner @f run soon, so that a waiter of @self's may spin for it?
 * Yes while it runs on a CPU (the kernel's owner_on_cpu), and while it
 * is queued on an idle worker of our runtime that is not parked, which
 * picks it at its next look: a handoff wakes its new owner so. A contender that gave
 * up there would queue and, as a donor, migrate to the owner's worker;
 * when both sides of a lock pinned to two workers did so each time,
 * each lock went that way (3-4 switches and a migration per round trip
 * of `proxyrt_bench xcore pinned`, for good). The worker is read only
 * for a fiber of our own runtime, whose workers outlive us. Used by
 * every optimistic spin on an owner (mutex.c, rwlock.c).
 */
static inline bool prt__owner_runs_soon(struct prt__fiber *f, struct prt__fiber *self)
{
	int st = atomic_load_explicit(&f->state, memory_order_relaxed);
	struct prt__worker *x;

	if (st == PRT_FS_RUNNING)
		return true;
	if (st != PRT_FS_RUNNABLE || PRT_READ_ONCE(f->rt) != self->rt)
		return false;
	x = atomic_load_explicit(&f->rq_worker, memory_order_relaxed);
	/* Not a parked one: its wakeup (a futex wake) takes longer than a spin. */
	return x && PRT_READ_ONCE(x->curr) == &x->idle &&
	       !atomic_load_explicit(&x->sleeping, memory_order_relaxed);
}

/*
 * The caller, whose token is @token, now holds one more mutex, @m: one
 * it took on a slow path, or one handed to its record (condvar wait).
 * Counted, and its last mutex taken (prt__fiber.last_held). No lock
 * needed (the owner's own fields).
 */
void prt__mutex_held(uintptr_t token, struct prt__mutex *m);

/*
 * Publish (@m) or clear (NULL) what the owner with token @tok waits on,
 * with wait_lock of @m (or of the mutex it leaves) held. seq_cst: the
 * store half of the deadlock walk's store-then-load, and of the pairings
 * described at its definition.
 */
void prt__set_waits_on(uintptr_t tok, struct prt__mutex *m);

/*
 * Deadlock detection: walk owner of @m -> what that owner waits on ->
 * its owner ...; at an rwlock held by readers, through each tracked
 * reader (rwlock_int.h); true if the walk comes back to @tok (the
 * caller, which has just published blocked_on = @m). wait_lock of @m
 * held.
 */
bool prt__closes_cycle(struct prt__mutex *m, uintptr_t tok);

#endif
