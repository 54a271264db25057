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
	prt__mwaiter_insert(&c->waiters, &rec);
	rec.oncond = true;
	prt__spin_unlock(&c->lock);

	err = prt__mutex_release_all(m, &count);
	prt__assert(err == 0); /* ownership was checked above */
	if (rec.fiber)
		prt__set_wait(rec.fiber, PRT_WK_COND, c, 0);
	err = prt__mutex_wait_granted(&rec, deadline);
	if (err) {
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
			int e = prt_mutex_lock(um);

			if (e)
				return e; /* EDEADLK: a cycle through another mutex we hold */
		} else {
			err = prt__mutex_wait_granted(&rec, 0);
		}
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
