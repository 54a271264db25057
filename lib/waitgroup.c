/* SPDX-License-Identifier: MIT */
/*
 * Wait groups (proxyrt/waitgroup.h), on the wait primitive (wait.h): a
 * counter and a FIFO list of waiters under one spinlock, as sem.c keeps
 * its waiters. The add that takes the counter to 0 takes every waiter
 * off the list under the lock, then wakes each once it has dropped it;
 * a waiter leaves only once woken, or after taking itself off the list
 * under the lock (a timeout or a cancel), so its record may live on its
 * stack. Which of the two takes a record off is decided on the record
 * (one CAS, as sem.c's records): a waiter the add took never touches the
 * group again, so a destroy that says 0 may free it meanwhile.
 */
#include <errno.h>
#include <string.h>

#include <proxyrt/waitgroup.h>

#include "deadline.h"
#include "fault.h"
#include "fiber_int.h"
#include "sched_int.h"
#include "wait.h"
#include "waitgroup.h"
#include "worker.h"

struct prt__waitgroup {
	int count;                /* lock */
	prt__spinlock_t lock;
	unsigned dbg;             /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	unsigned pad;
	/* struct wg_waiter.node, FIFO; {NULL, NULL} (zero storage) = empty; lock */
	struct prt__list waiters;
};

_Static_assert(sizeof(struct prt__waitgroup) <= PRT_WAITGROUP_SIZE, "prt_waitgroup_t too small");
_Static_assert(_Alignof(struct prt__waitgroup) <= _Alignof(prt_waitgroup_t),
	       "prt_waitgroup_t alignment");

/* A record's state (wg_waiter.st). */
enum {
	WG_QUEUED,  /* on the list, waiting */
	WG_TAKEN,   /* the add that reached 0 took it off: its wake comes */
	WG_LEAVING, /* its wait ended first (deadline, cancel): its waiter takes it off */
};

/* One waiter, on its stack. */
struct wg_waiter {
	struct prt__list node;  /* on g->waiters until the add takes it or its waiter does; lock */
	struct prt__wait wait;  /* woken by the add that takes the counter to 0 */
	/* WG_*: the add (under lock) and the waiter (no lock) race for it with one CAS */
	_Atomic unsigned char st;
};

static struct prt__waitgroup *wg_of(prt_waitgroup_t *wg)
{
	return (struct prt__waitgroup *)(void *)wg;
}

static bool list_empty(const struct prt__waitgroup *g)
{
	return !g->waiters.next || prt__list_empty(&g->waiters);
}

PRT_API int prt_waitgroup_init(prt_waitgroup_t *wg)
{
	if (!wg)
		return EINVAL;
	memset(wg, 0, sizeof(*wg));
	return 0;
}

PRT_API int prt_waitgroup_destroy(prt_waitgroup_t *wg)
{
	struct prt__waitgroup *g = wg_of(wg);
	int err = 0;

	if (!wg)
		return EINVAL;
	prt__check_live(g->dbg, "prt_waitgroup_destroy", wg);
	prt__spin_lock(&g->lock);
	if (!list_empty(g))
		err = EBUSY;
	else
		prt__mark_dead(g->dbg);
	prt__spin_unlock(&g->lock);
	return err;
}

/*
 * The counter reached 0 (g->lock held): move every waiter to @out, off
 * the list, so they are woken once the lock is dropped; a LEAVING one
 * stays, for its waiter to take off.
 */
static void take_waiters(struct prt__waitgroup *g, struct prt__list *out)
{
	struct prt__list *n, *next;

	if (!g->waiters.next)
		return; /* zero storage: nobody ever waited */
	for (n = g->waiters.next; n != &g->waiters; n = next) {
		struct wg_waiter *r = prt__container_of(n, struct wg_waiter, node);
		unsigned char queued = WG_QUEUED;

		next = n->next;
		/* relaxed: the wake orders the rest */
		if (atomic_compare_exchange_strong_explicit(&r->st, &queued, WG_TAKEN,
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			prt__list_del(&r->node);
			prt__list_add_tail(out, &r->node);
		}
	}
}

/* Wake the waiters of @out (no lock held); each may return, and its record go, once woken. */
static void wake_all(struct prt__list *out)
{
	while (!prt__list_empty(out)) {
		struct wg_waiter *r = prt__container_of(out->next, struct wg_waiter, node);

		prt__list_del(&r->node); /* before the wake: then @r may be gone */
		prt__wait_wake(&r->wait);
	}
}

PRT_API int prt_waitgroup_add(prt_waitgroup_t *wg, int delta)
{
	struct prt__waitgroup *g = wg_of(wg);
	struct prt__list woken;
	long long n;

	if (!wg)
		return EINVAL;
	prt__check_live(g->dbg, "prt_waitgroup_add", wg);
	prt__list_init(&woken);
	prt__spin_lock(&g->lock);
	n = (long long)g->count + delta; /* no overflow in long long */
	if (n < 0 || n > PRT_WAITGROUP_MAX) {
		prt__spin_unlock(&g->lock);
		return n < 0 ? EINVAL : EOVERFLOW;
	}
	g->count = (int)n;
	if (!n)
		take_waiters(g, &woken);
	prt__spin_unlock(&g->lock);
	if (!prt__list_empty(&woken))
		prt__fault_pause(PRT_PAUSE_WG_TAKEN); /* test builds: a destroy may come here */
	wake_all(&woken);
	return 0;
}

PRT_API int prt_waitgroup_done(prt_waitgroup_t *wg)
{
	return prt_waitgroup_add(wg, -1);
}

void prt__waitgroup_done(void *wg)
{
	prt_waitgroup_done(wg);
}

/*
 * The wait of @r ended without a wake (@err: ETIMEDOUT, ENOMEM,
 * ECANCELED): leave the list, unless the add that reached 0 took @r off
 * it first, whose wake then comes (0). Decided on @r, not under g->lock:
 * once the add took @r, the group may be gone.
 */
static int give_up(struct prt__waitgroup *g, struct wg_waiter *r, int err)
{
	unsigned char queued = WG_QUEUED;

	prt__fault_pause(PRT_PAUSE_WG_GIVE_UP); /* test builds: the add at 0 may have taken @r off */
	if (atomic_compare_exchange_strong_explicit(&r->st, &queued, WG_LEAVING, memory_order_relaxed,
						    memory_order_relaxed)) {
		/* Still on the list: the group stays (destroy says EBUSY) until we are off. */
		prt__spin_lock(&g->lock);
		prt__list_del(&r->node);
		prt__spin_unlock(&g->lock);
		return err;
	}
	prt__wait_rearm(&r->wait);
	return prt__wait_block(&r->wait, 0);
}

/* @deadline: CLOCK_MONOTONIC ns, 0 for none. */
static int wg_wait(prt_waitgroup_t *wg, uint64_t deadline)
{
	struct prt__waitgroup *g = wg_of(wg);
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *self = w ? w->curr : NULL;
	struct wg_waiter r = { .st = WG_QUEUED };
	int err;

	prt__check_live(g->dbg, "prt_waitgroup_wait", wg);
	prt__wait_init(&r.wait, self);
	prt__spin_lock(&g->lock);
	if (!g->count) {
		prt__spin_unlock(&g->lock);
		return 0;
	}
	if ((deadline && prt__now_ns() >= deadline) || (self && prt__cancel_pending(self))) {
		prt__spin_unlock(&g->lock);
		return deadline && prt__now_ns() >= deadline ? ETIMEDOUT : ECANCELED;
	}
	if (!g->waiters.next)
		prt__list_init(&g->waiters); /* zero storage */
	prt__list_add_tail(&g->waiters, &r.node);
	prt__spin_unlock(&g->lock);
	if (self)
		prt__set_wait(self, PRT_WK_WAITGROUP, g, 0);
	err = prt__wait_block_cancel(&r.wait, deadline);
	return err ? give_up(g, &r, err) : 0;
}

PRT_API int prt_waitgroup_wait(prt_waitgroup_t *wg)
{
	if (!wg)
		return EINVAL;
	return wg_wait(wg, 0);
}

PRT_API int prt_waitgroup_timedwait_ns(prt_waitgroup_t *wg, uint64_t timeout_ns)
{
	if (!wg)
		return EINVAL;
	return wg_wait(wg, timeout_ns ? prt__deadline_in(timeout_ns) : prt__now_ns());
}
