/* SPDX-License-Identifier: MIT */
/*
 * Condition variable. A waiter's record is a mutex waiter record
 * (struct prt__mwaiter): it sits on the condvar's list until signalled,
 * then moves to the mutex's list (requeue, like FUTEX_CMP_REQUEUE), and
 * wakes only when the mutex is handed to it. So broadcast wakes nobody
 * to fight over the mutex, and waiters get it in priority order.
 *
 * Lost wakeups: the waiter joins the condvar list while it still holds
 * the mutex, so a signaller that takes the mutex first cannot miss it;
 * the grant may then come before the waiter has parked, which the park
 * protocol of prt__mutex_wait_granted absorbs.
 *
 * Timeout against signal. POSIX lets a thread broadcast, destroy the
 * condvar and reuse its memory while the waiters it woke still wait
 * for the mutex; their deadlines may pass meanwhile. So a waiter whose
 * wait ended without the mutex (timeout, no timer memory) must find out
 * from its own record whether a signal already moved it, never by
 * locking the condvar. One compare-and-swap on rec.cwait decides:
 *
 *   signaller (wake(), c->lock held)     timed-out waiter (no lock)
 *   --------------------------------     --------------------------
 *   CAS cwait ONCOND -> MOVED            CAS cwait ONCOND -> LEAVING
 *   won:  unlink, requeue on the mutex   won:  lock c, unlink itself,
 *   lost: skip it, it unlinks itself           lock the mutex: ETIMEDOUT
 *                                        lost: a signal moved it; wait
 *                                              for the grant: 0, and
 *                                              never touch c again
 *
 * A LEAVING record stays on the list until its waiter unlinks it under
 * c->lock; prt_cond_destroy waits for that (a few instructions), so the
 * condvar outlives every waiter that may still touch it.
 */
#include <sched.h>
#include <string.h>

#include "mutex_int.h"
#include "runtime.h"

struct prt__cond {
	prt__spinlock_t lock;
	unsigned dbg;              /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	/* prt__mwaiter.node, PRT_CW_ONCOND or _LEAVING; {NULL, NULL} = empty; lock */
	struct prt__list waiters;
	struct prt__mutex *m;      /* the mutex of the current waiters; lock */
	uint64_t pad2[2];
};

_Static_assert(sizeof(struct prt__cond) <= PRT_COND_SIZE, "prt_cond_t too small");

static struct prt__cond *cond_of(prt_cond_t *c)
{
	return (struct prt__cond *)(void *)c;
}

static void list_lazy_init(struct prt__cond *c)
{
	if (!c->waiters.next)
		prt__list_init(&c->waiters);
}

PRT_API int prt_cond_init(prt_cond_t *c)
{
	if (!c)
		return EINVAL;
	memset(c, 0, sizeof(*c));
	return 0;
}

/* What is on the list: 0 nothing, 1 only waiters leaving it, 2 a waiter still waiting. c->lock. */
static int list_state(struct prt__cond *c)
{
	struct prt__list *it;

	if (!c->waiters.next || prt__list_empty(&c->waiters))
		return 0;
	for (it = c->waiters.next; it != &c->waiters; it = it->next) {
		struct prt__mwaiter *r = prt__container_of(it, struct prt__mwaiter, node);

		if (atomic_load_explicit(&r->cwait, memory_order_relaxed) == PRT_CW_ONCOND)
			return 2;
	}
	return 1;
}

PRT_API int prt_cond_destroy(prt_cond_t *uc)
{
	struct prt__cond *c = cond_of(uc);
	int st;

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_destroy", uc);
	for (;;) {
		prt__spin_lock(&c->lock);
		st = list_state(c);
		if (!st)
			prt__mark_dead(c->dbg);
		prt__spin_unlock(&c->lock);
		if (st != 1)
			return st ? EBUSY : 0;
		/* Timed-out waiters unlinking themselves: they need c->lock once more. */
		sched_yield();
	}
}

/*
 * The wait of @rec ended without the mutex: leave @c, unless a signal
 * moved @rec first. Returns true if we left (@c touched), false if the
 * signal won (@c not touched: it may be gone).
 */
static bool leave(struct prt__cond *c, struct prt__mwaiter *rec)
{
	unsigned st = PRT_CW_ONCOND;

	/* acq_rel: pairs with the signaller's CAS in take_waiter() */
	if (!atomic_compare_exchange_strong_explicit(&rec->cwait, &st, PRT_CW_LEAVING,
						     memory_order_acq_rel, memory_order_acquire))
		return false;
	/* Still linked: @c cannot be destroyed until we unlink (prt_cond_destroy). */
	prt__spin_lock(&c->lock);
	prt__list_del(&rec->node);
	prt__spin_unlock(&c->lock); /* our last access to @c */
	return true;
}

static int cond_wait(prt_cond_t *uc, prt_mutex_t *um, const struct timespec *abstime)
{
	struct prt__cond *c = cond_of(uc);
	struct prt__mutex *m;
	struct prt__worker *w = prt__cur_worker();
	struct prt__mwaiter rec = { .sleeping = true, .parker = true };
	uint64_t deadline = 0;
	unsigned count;
	int err;

	if (!uc || !um)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_wait", uc);
	if (abstime && !prt__abstime_to_mono(abstime, &deadline))
		return EINVAL;
	m = prt__mutex_of(um);
	rec.fiber = w ? w->curr : NULL;
	rec.token = prt__mutex_self_token();
	rec.prio = w ? atomic_load_explicit(&w->curr->prio, memory_order_relaxed) : PRT_PRIO_DEFAULT;
	if ((atomic_load(&m->owner) & ~PRT_MTX_WAITERS) != rec.token)
		return EPERM;
	prt__spin_lock(&c->lock);
	list_lazy_init(c);
	if (!prt__list_empty(&c->waiters) && c->m != m) {
		prt__spin_unlock(&c->lock);
		return EINVAL;
	}
	c->m = m;
	atomic_store_explicit(&rec.cwait, PRT_CW_ONCOND, memory_order_relaxed);
	prt__mwaiter_insert(&c->waiters, &rec);
	prt__spin_unlock(&c->lock);

	err = prt__mutex_release_all(m, &count);
	prt__assert(err == 0); /* ownership was checked above */
	if (rec.fiber)
		prt__set_wait(rec.fiber, PRT_WK_COND, c, 0);
	err = prt__mutex_wait_granted(&rec, deadline);
	if (err && !leave(c, &rec)) {
		/* A signal moved us first: it won (see the top of the file). */
		err = prt__mutex_wait_granted(&rec, 0);
	} else if (err) {
		int e = prt_mutex_lock(um); /* take it back, as pthreads does */

		if (e)
			return e; /* EDEADLK: a cycle through another mutex we hold */
	}
	/* We hold the mutex again (handed over, or taken back after a timeout). */
	atomic_store_explicit(&m->count, count, memory_order_relaxed);
	return err;
}

PRT_API int prt_cond_wait(prt_cond_t *uc, prt_mutex_t *um)
{
	return cond_wait(uc, um, NULL);
}

PRT_API int prt_cond_timedwait(prt_cond_t *uc, prt_mutex_t *um, const struct timespec *abstime)
{
	if (!abstime)
		return EINVAL;
	return cond_wait(uc, um, abstime);
}

/*
 * The first waiter still waiting, claimed for a signal and unlinked, or
 * NULL. Waiters leaving on a timeout are skipped: they unlink themselves.
 * c->lock held.
 */
static struct prt__mwaiter *take_waiter(struct prt__cond *c)
{
	struct prt__list *it;

	if (!c->waiters.next)
		return NULL;
	for (it = c->waiters.next; it != &c->waiters; it = it->next) {
		struct prt__mwaiter *r = prt__container_of(it, struct prt__mwaiter, node);
		unsigned st = PRT_CW_ONCOND;

		/* acq_rel: pairs with the waiter's CAS in leave() */
		if (atomic_compare_exchange_strong_explicit(&r->cwait, &st, PRT_CW_MOVED,
							    memory_order_acq_rel,
							    memory_order_relaxed)) {
			prt__list_del(&r->node);
			return r;
		}
	}
	return NULL;
}

/* Take up to @n waiters off the condvar and requeue them on the mutex. */
static int wake(prt_cond_t *uc, int n)
{
	struct prt__cond *c = cond_of(uc);

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, n == 1 ? "prt_cond_signal" : "prt_cond_broadcast", uc);
	while (n-- > 0) {
		struct prt__mwaiter *r;
		struct prt__mutex *m;

		prt__spin_lock(&c->lock);
		if (!(r = take_waiter(c))) {
			prt__spin_unlock(&c->lock);
			break;
		}
		m = c->m;
		/*
		 * Requeue under the condvar lock: the waiter's record stays valid
		 * until it is granted the mutex, which only the requeue or a later
		 * unlock can do.
		 */
		prt__mutex_requeue(m, r);
		prt__spin_unlock(&c->lock);
	}
	return 0;
}

PRT_API int prt_cond_signal(prt_cond_t *c)
{
	return wake(c, 1);
}

PRT_API int prt_cond_broadcast(prt_cond_t *c)
{
	return wake(c, 0x7fffffff);
}
