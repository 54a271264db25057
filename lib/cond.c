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
 * Priority changes: a waiting fiber publishes its record (wait_cond,
 * cwait, under its own lock) before it reads its priority for the list,
 * so prt_fiber_set_priority either changes it before that read or finds
 * the record and re-sorts it (prt__cond_reprio). The record and the
 * condvar stay valid while wait_cond is set: the wait clears it, under
 * the fiber's lock, before it returns.
 */
#include <string.h>

#include "mutex_int.h"
#include "runtime.h"

struct prt__cond {
	prt__spinlock_t lock;
	unsigned dbg;              /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	struct prt__list waiters;  /* prt__mwaiter.node; {NULL, NULL} = empty */
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

PRT_API int prt_cond_destroy(prt_cond_t *uc)
{
	struct prt__cond *c = cond_of(uc);
	int busy;

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_destroy", uc);
	prt__spin_lock(&c->lock);
	busy = c->waiters.next && !prt__list_empty(&c->waiters);
	if (!busy)
		prt__mark_dead(c->dbg);
	prt__spin_unlock(&c->lock);
	return busy ? EBUSY : 0;
}

/* Put waiter @r on @c's list, c->lock held (lock order: condvar -> fiber). */
static void wait_begin(struct prt__cond *c, struct prt__mwaiter *r)
{
	struct prt__fiber *f = r->fiber;

	if (f) {
		prt__spin_lock(&f->lock);
		f->wait_cond = c;
		f->cwait = r;
		prt__spin_unlock(&f->lock);
		/* After publishing: a later change re-sorts us, an earlier one is read here. */
		r->prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	}
	prt__mwaiter_insert(&c->waiters, r);
	r->oncond = true;
}

/* The wait of @r is over, off the condvar: a prt__cond_reprio holding our lock finishes first. */
static void wait_end(struct prt__mwaiter *r)
{
	struct prt__fiber *f = r->fiber;

	if (!f)
		return;
	prt__spin_lock(&f->lock);
	f->wait_cond = NULL;
	f->cwait = NULL;
	prt__spin_unlock(&f->lock);
}

bool prt__cond_reprio(struct prt__fiber *f)
{
	struct prt__cond *c = f->wait_cond;
	struct prt__mwaiter *r = f->cwait;
	int prio;

	if (!c)
		return true;
	if (!prt__spin_trylock(&c->lock))
		return false;
	prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	/* Moved to the mutex already: prt__waits_reprio's mutex side has it. */
	if (r->oncond && r->prio != prio) {
		prt__list_del(&r->node);
		r->prio = prio; /* to the tail of its new level */
		prt__mwaiter_insert(&c->waiters, r);
	}
	prt__spin_unlock(&c->lock);
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
	rec.prio = PRT_PRIO_DEFAULT; /* a fiber's: read in wait_begin */
	if ((atomic_load(&m->owner) & ~PRT_MTX_WAITERS) != rec.token)
		return EPERM;
	prt__spin_lock(&c->lock);
	list_lazy_init(c);
	if (!prt__list_empty(&c->waiters) && c->m != m) {
		prt__spin_unlock(&c->lock);
		return EINVAL;
	}
	c->m = m;
	wait_begin(c, &rec);
	prt__spin_unlock(&c->lock);

	err = prt__mutex_release_all(m, &count);
	prt__assert(err == 0); /* ownership was checked above */
	if (rec.fiber)
		prt__set_wait(rec.fiber, PRT_WK_COND, c, 0);
	err = prt__mutex_wait_granted(&rec, deadline);
	if (!err) {
		prt__mutex_held(rec.token); /* handed to us: we own it again */
	} else {
		/*
		 * Timed out (or no memory for the timer). Still on the condvar:
		 * leave it and take the mutex back as pthreads does. Already
		 * moved to the mutex by a signal: the signal won, wait for the
		 * grant.
		 */
		bool oncond;

		prt__spin_lock(&c->lock);
		oncond = rec.oncond;
		if (oncond) {
			prt__list_del(&rec.node);
			rec.oncond = false;
		}
		prt__spin_unlock(&c->lock);
		if (oncond) {
			int e = prt_mutex_lock(um); /* counts itself in nheld */

			if (e) {
				wait_end(&rec);
				return e; /* EDEADLK: a cycle through another mutex we hold */
			}
		} else {
			err = prt__mutex_wait_granted(&rec, 0); /* no deadline: 0, granted */
			prt__mutex_held(rec.token);
		}
	}
	wait_end(&rec);
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
		if (!c->waiters.next || prt__list_empty(&c->waiters)) {
			prt__spin_unlock(&c->lock);
			break;
		}
		r = prt__container_of(c->waiters.next, struct prt__mwaiter, node);
		prt__list_del(&r->node);
		r->oncond = false;
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
