/* SPDX-License-Identifier: MIT */
/*
 * Counting semaphore (proxyrt/sem.h), on the wait primitive (wait.h).
 *
 * The value is taken with one CAS while it is above 0 (no lock). Below
 * that, a waiter queues a record under s->lock, ordered by priority, and
 * sleeps on the record's wait. A post takes s->lock and hands its unit
 * to the first waiter (off the list, then woken), or, with nobody
 * queued, adds it to the value. So:
 *
 * - the value goes up only under s->lock with the list empty, and a
 *   waiter queues only under s->lock after it found the value 0: while
 *   anyone is queued the value stays 0, and no post can slip between a
 *   waiter's last look and its sleep (it would find the waiter queued);
 * - a handed unit is the waiter's: nobody else takes it on the way;
 * - a timed wait that expires takes s->lock to leave the list; if a post
 *   took its record off first, the unit is already its, and it waits for
 *   that post's wake (kept if it came already: prt__wait_rearm), so no
 *   unit is lost and a waiter never returns ETIMEDOUT holding one.
 *
 * The record lives on the waiter's stack: a post wakes it after taking
 * it off the list under s->lock, and the waiter leaves only once woken,
 * or after finding itself still on the list under s->lock.
 */
#include <errno.h>
#include <string.h>

#include <proxyrt/sem.h>

#include "deadline.h"
#include "fault.h"
#include "fiber_int.h"
#include "plist.h"
#include "sched_int.h"
#include "wait.h"
#include "worker.h"

struct prt__sem {
	/*
	 * A spinning wait touches the first 8 bytes (@value, @waitw), which
	 * are on one cache line wherever a prt_sem_t (8-byte aligned) sits; a
	 * post adds @lock: 12 bytes, split over two lines only when the
	 * semaphore starts 8 bytes before a line's end. The list only once
	 * somebody queued.
	 */
	/* Units; above 0 only while nobody is queued (see the top). */
	atomic_uint value;
	/*
	 * Bits 0-30: records on @waiters (changed under @lock). PRT_SEM_SPINNER:
	 * a fiber spins for a unit (spin_take; one at a time), from its
	 * compare-and-swap until it has a unit or has queued (the bit then
	 * becomes its record's count, under @lock: a waiter always counts,
	 * for prt_sem_destroy). Read racily by the spinner.
	 */
	atomic_uint waitw;
	prt__spinlock_t lock;
	unsigned dbg;              /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	/* struct sem_waiter.pl: a plist (plist.h), by priority then FIFO; {NULL, NULL} = empty; lock */
	struct prt__list waiters;
};

_Static_assert(sizeof(struct prt__sem) <= PRT_SEM_SIZE, "prt_sem_t too small");
_Static_assert(offsetof(struct prt__sem, waitw) == 4 && offsetof(struct prt__sem, lock) == 8,
	       "a semaphore's hot words first");

#define PRT_SEM_SPINNER 0x80000000u

/* One waiter, on its stack. */
struct sem_waiter {
	/* On s->waiters while @queued; pl.prio, the list's order: the fiber's priority when it queued. s->lock */
	struct prt__plnode pl;
	struct prt__wait wait;  /* woken by the post that hands it a unit */
	bool queued;            /* s->lock */
};

static struct prt__sem *sem_of(prt_sem_t *s)
{
	return (struct prt__sem *)(void *)s;
}

static void list_lazy_init(struct prt__sem *s)
{
	if (!s->waiters.next)
		prt__list_init(&s->waiters);
}

static bool list_empty(const struct prt__sem *s)
{
	return !s->waiters.next || prt__list_empty(&s->waiters);
}

PRT_API int prt_sem_init(prt_sem_t *us, unsigned value)
{
	struct prt__sem *s = sem_of(us);

	if (!us || value > PRT_SEM_VALUE_MAX)
		return EINVAL;
	memset(us, 0, sizeof(*us));
	atomic_store_explicit(&s->value, value, memory_order_relaxed);
	return 0;
}

PRT_API int prt_sem_destroy(prt_sem_t *us)
{
	struct prt__sem *s = sem_of(us);
	int err = 0;

	if (!us)
		return EINVAL;
	prt__check_live(s->dbg, "prt_sem_destroy", us);
	prt__spin_lock(&s->lock);
	if (!list_empty(s) || atomic_load_explicit(&s->waitw, memory_order_relaxed))
		err = EBUSY; /* queued, or spinning for a unit */
	else
		prt__mark_dead(s->dbg);
	prt__spin_unlock(&s->lock);
	return err;
}

/* Take a unit if the value is above 0. */
static bool take(struct prt__sem *s)
{
	unsigned v = atomic_load_explicit(&s->value, memory_order_relaxed);

	/* acquire: pairs with prt_sem_post's release, as sem_post/sem_wait synchronize */
	while (v)
		if (atomic_compare_exchange_weak_explicit(&s->value, &v, v - 1, memory_order_acquire,
							  memory_order_relaxed))
			return true;
	return false;
}

/*
 * Queue @r by priority (FIFO within a level); s->lock held. @spun: our
 * spinner bit becomes the record's count in one step (the unsigned sum
 * clears bit 31 and adds 1), so we count as a waiter throughout.
 */
static void insert(struct prt__sem *s, struct sem_waiter *r, bool spun)
{
	prt__plist_add(&s->waiters, &r->pl); /* a walk over the levels, not the waiters */
	r->queued = true;
	/* a spinner edits the word too: atomic */
	atomic_fetch_add_explicit(&s->waitw, spun ? 1u - PRT_SEM_SPINNER : 1u, memory_order_relaxed);
}

/* Take @r off the list; s->lock held. */
static void unqueue(struct prt__sem *s, struct sem_waiter *r)
{
	prt__plist_del(&s->waiters, &r->pl);
	r->queued = false;
	atomic_fetch_sub_explicit(&s->waitw, 1, memory_order_relaxed);
}

/*
 * Spin for a unit before queueing (cfg.wait_spin_ns, prt__wait_spin_ns):
 * a post that finds nobody queued adds to the value, which we take as
 * any trywait would; the poster then neither takes a record off the
 * list nor wakes anybody. Only while nobody is queued (posts go to
 * them) and nobody else spins (PRT_SEM_SPINNER: two spinners would race
 * for a post whatever their priorities; a second waiter queues, and the
 * spinner, seeing it, stops and queues too: posts then go to the queued
 * in priority order, FIFO within a level). Stops when someone queues,
 * at @deadline, at a cancel (wait_slow then returns ECANCELED), and as
 * every wait spin does. Returns true with a unit taken (the bit
 * cleared); false with *@spun set if we spun, the bit still ours:
 * wait_slow turns it into our record's count, or clears it, under
 * s->lock (a review: cleared here, a destroy between it and our queueing
 * said 0 while we still waited, and we queued on a freed semaphore).
 */
static bool spin_take(struct prt__sem *s, struct prt__worker *w, uint64_t deadline, bool *spun)
{
	struct prt__spin sp = { .deadline = deadline };
	unsigned none = 0;

	if (!(sp.spin = prt__wait_spin_ns(w)) ||
	    !atomic_compare_exchange_strong_explicit(&s->waitw, &none, PRT_SEM_SPINNER,
						     memory_order_relaxed, memory_order_relaxed))
		return false;
	*spun = true;
	prt__assert_own_worker(w);
	do {
		/* A pause first: the post we wait for is under way, and a look pulls its line back. */
		prt__cpu_relax();
		if (atomic_load_explicit(&s->value, memory_order_relaxed) && take(s)) {
			atomic_fetch_and_explicit(&s->waitw, ~PRT_SEM_SPINNER, memory_order_relaxed);
			return true;
		}
	} while (!prt__cancel_pending(w->curr) &&
		 !(atomic_load_explicit(&s->waitw, memory_order_relaxed) & ~PRT_SEM_SPINNER) &&
		 prt__spin_keep(w, &sp));
	return false;
}

/*
 * The wait of @r ended without a wake (@err: ETIMEDOUT or ENOMEM): leave
 * the list, unless a post took @r off it first, whose unit is then ours
 * (0) once its wake comes.
 */
static int give_up(struct prt__sem *s, struct sem_waiter *r, int err)
{
	bool left;

	prt__spin_lock(&s->lock);
	left = r->queued;
	if (left)
		unqueue(s, r);
	prt__spin_unlock(&s->lock);
	if (left)
		return err;
	prt__wait_rearm(&r->wait);
	/* 0: the post's wake, kept or coming (already under way: may spin for it briefly) */
	return prt__wait_block(&r->wait, 0);
}

/*
 * Queue and wait for a post; @deadline: CLOCK_MONOTONIC ns, 0 for none.
 * @spun: we spun for a unit already (spin_take): do not spin again.
 */
static int wait_slow(struct prt__sem *s, uint64_t deadline, bool spun)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *self = w ? w->curr : NULL;
	struct sem_waiter r = {
		.pl.prio = self ? atomic_load_explicit(&self->prio, memory_order_relaxed)
			     : PRT_PRIO_DEFAULT,
	};
	int err;

	prt__wait_init(&r.wait, self);
	prt__spin_lock(&s->lock);
	list_lazy_init(s);
	if (take(s))
		err = 0;
	else if (deadline && prt__now_ns() >= deadline)
		err = ETIMEDOUT;
	else if (self && prt__cancel_pending(self))
		err = ECANCELED;
	else
		err = -1;
	if (err >= 0) {
		if (spun) /* no wait after all: our spinner bit goes, under the lock */
			atomic_fetch_and_explicit(&s->waitw, ~PRT_SEM_SPINNER, memory_order_relaxed);
		prt__spin_unlock(&s->lock);
		return err;
	}
	insert(s, &r, spun);
	prt__spin_unlock(&s->lock);
	if (self)
		prt__set_wait(self, PRT_WK_SEM, s, 0);
	/* A cancel ends it as the deadline does: give_up (ECANCELED, or the post's unit). */
	err = spun ? prt__wait_block_nospin(&r.wait, deadline, true)
		   : prt__wait_block_cancel(&r.wait, deadline);
	return err ? give_up(s, &r, err) : 0;
}

static int sem_wait(prt_sem_t *us, uint64_t deadline)
{
	struct prt__sem *s = sem_of(us);
	struct prt__worker *w;
	bool spun = false;

	prt__check_live(s->dbg, "prt_sem_wait", us);
	if (take(s))
		return 0;
	w = prt__cur_worker();
	if (w && spin_take(s, w, deadline, &spun))
		return 0;
	if (spun)
		prt__fault_pause(PRT_PAUSE_SEM_SPUN); /* test builds: a destroy may come here */
	return wait_slow(s, deadline, spun);
}

PRT_API int prt_sem_wait(prt_sem_t *us)
{
	if (!us)
		return EINVAL;
	return sem_wait(us, 0);
}

PRT_API int prt_sem_trywait(prt_sem_t *us)
{
	if (!us)
		return EINVAL;
	prt__check_live(sem_of(us)->dbg, "prt_sem_trywait", us);
	return take(sem_of(us)) ? 0 : EAGAIN;
}

PRT_API int prt_sem_timedwait(prt_sem_t *us, const struct timespec *abstime)
{
	uint64_t deadline;

	if (!us || !abstime || !prt__abstime_to_mono(abstime, &deadline))
		return EINVAL;
	return sem_wait(us, deadline);
}

PRT_API int prt_sem_timedwait_ns(prt_sem_t *us, uint64_t timeout_ns)
{
	if (!us)
		return EINVAL;
	return sem_wait(us, prt__deadline_in(timeout_ns));
}

PRT_API int prt_sem_post(prt_sem_t *us)
{
	struct prt__sem *s = sem_of(us);
	struct sem_waiter *r = NULL;
	int err = 0;

	if (!us)
		return EINVAL;
	prt__check_live(s->dbg, "prt_sem_post", us);
	prt__spin_lock(&s->lock);
	/* The records' count, not the list: a post touches the first 12 bytes only. */
	if (atomic_load_explicit(&s->waitw, memory_order_relaxed) & ~PRT_SEM_SPINNER) {
		r = prt__container_of(s->waiters.next, struct sem_waiter, pl.node);
		unqueue(s, r);
	} else if (atomic_load_explicit(&s->value, memory_order_relaxed) >= PRT_SEM_VALUE_MAX) {
		err = EOVERFLOW;
	} else {
		/* release: pairs with take()'s acquire */
		atomic_fetch_add_explicit(&s->value, 1, memory_order_release);
	}
	prt__spin_unlock(&s->lock);
	/* Off the list: it waits for this wake (give_up), so @r stays until then. */
	if (r)
		prt__wait_wake(&r->wait);
	return err;
}

PRT_API int prt_sem_getvalue(prt_sem_t *us, int *value)
{
	if (!us || !value)
		return EINVAL;
	prt__check_live(sem_of(us)->dbg, "prt_sem_getvalue", us);
	*value = (int)atomic_load_explicit(&sem_of(us)->value, memory_order_relaxed);
	return 0;
}
