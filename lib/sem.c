/* SPDX-License-Identifier: MIT */
/*
 * Counting semaphore (proxyrt/sem.h), on the wait primitive (wait.h).
 *
 * The value and the count of queued waiters share one 64-bit word
 * (@state). The value is taken with one CAS while it is above 0 (no
 * lock). Below that, a waiter queues a record under s->lock, ordered by
 * priority, and sleeps on the record's wait. A post that finds nobody
 * queued adds its unit to the value with one CAS (no lock); otherwise it
 * takes s->lock and hands its unit to the first waiter (off the list,
 * then woken). So:
 *
 * - the value goes up only by a CAS that saw no waiter counted (or,
 *   under s->lock, when every record counted is leaving: below), and a
 *   waiter counts itself only by a CAS that saw the value 0 (under
 *   s->lock, then queues its record before letting go of it): while a
 *   waiter is queued the value stays 0, and no post can slip between a
 *   waiter's last look and its sleep (the word changed: its CAS fails,
 *   and it takes the unit instead);
 * - a handed unit is the waiter's: nobody else takes it on the way;
 * - a wait that ends without a wake (deadline, cancel) and a post race
 *   for the record with one CAS on it (sem_waiter.st). The post wins it
 *   under s->lock (HANDED): the unit is the waiter's, which waits for
 *   that post's wake (kept if it came already: prt__wait_rearm) and
 *   never touches the semaphore again, so no unit is lost, a waiter
 *   never returns ETIMEDOUT holding one, and a destroy that finds
 *   nobody else waiting may free it meanwhile. The waiter wins it
 *   (LEAVING): it takes s->lock and its record off the list; posts
 *   skip it meanwhile, and one that finds nobody else adds its unit to
 *   the value.
 *
 * The record lives on the waiter's stack: a post wakes it after taking
 * it off the list under s->lock, and the waiter leaves only once woken,
 * or after taking itself off the list under s->lock.
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
	 * A spinning wait and a post to nobody queued touch @state only (8
	 * bytes, on one cache line wherever a prt_sem_t, 8-byte aligned,
	 * sits); a post to a queued waiter adds @lock and the list.
	 *
	 * Bits 0-31 (SEM_VALUE): units; above 0 only while no waiter is
	 * queued but LEAVING ones (see the top). Bits 32-62 (SEM_RECORDS): records on @waiters (each
	 * change under @lock). SEM_SPINNER (bit 63): a fiber spins for a unit
	 * (spin_take; one at a time), from its compare-and-swap until it has
	 * a unit (the take clears it) or has queued (the bit then becomes its
	 * record's count, under @lock: a waiter always counts, for
	 * prt_sem_destroy). One word, so that a post to a spinner is one CAS
	 * and the spinner's take is one more.
	 */
	_Atomic uint64_t state;
	prt__spinlock_t lock;
	unsigned dbg;              /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	/* struct sem_waiter.pl: a plist (plist.h), by priority then FIFO; {NULL, NULL} = empty; lock */
	struct prt__list waiters;
};

_Static_assert(sizeof(struct prt__sem) <= PRT_SEM_SIZE, "prt_sem_t too small");
_Static_assert(offsetof(struct prt__sem, state) == 0 && offsetof(struct prt__sem, lock) == 8,
	       "a semaphore's hot words first");

#define SEM_VALUE(x) ((unsigned)((x) & 0xffffffffu))
#define SEM_RECORD ((uint64_t)1 << 32)         /* one queued record */
#define SEM_SPINNER ((uint64_t)1 << 63)
#define SEM_RECORDS(x) ((x) & ~SEM_SPINNER & ~(uint64_t)0xffffffffu) /* 0: nobody queued */

/* A record's state (sem_waiter.st). */
enum {
	SW_QUEUED,  /* on the list, counted: a post may hand it a unit */
	SW_HANDED,  /* a post took it off the list: the unit and the wake are its waiter's */
	SW_LEAVING, /* its wait ended first (deadline, cancel): its waiter takes it off */
};

/* One waiter, on its stack. */
struct sem_waiter {
	/*
	 * On s->waiters (and counted in SEM_RECORDS) from insert until a
	 * post takes it off (HANDED) or its waiter does (LEAVING); pl.prio,
	 * the list's order: the fiber's priority when it queued. s->lock
	 */
	struct prt__plnode pl;
	struct prt__wait wait;  /* woken by the post that hands it a unit */
	/*
	 * SW_*: a post (under s->lock) and its waiter whose wait ended (no
	 * lock: the semaphore may be gone once a post took the record) race
	 * for it with one compare-and-swap from SW_QUEUED.
	 */
	_Atomic unsigned char st;
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
	atomic_store_explicit(&s->state, value, memory_order_relaxed);
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
	if (!list_empty(s) || atomic_load_explicit(&s->state, memory_order_relaxed) >> 32)
		err = EBUSY; /* queued, or spinning for a unit */
	else
		prt__mark_dead(s->dbg);
	prt__spin_unlock(&s->lock);
	return err;
}

/*
 * Take a unit while the value is above 0, from *@x, @s->state as last
 * read (updated on failure). @drop: bits to clear with it (SEM_SPINNER:
 * ours, our spin ends with the unit).
 */
static bool take_from(struct prt__sem *s, uint64_t *x, uint64_t drop)
{
	/* acquire: pairs with prt_sem_post's release, as sem_post/sem_wait synchronize */
	while (SEM_VALUE(*x))
		if (atomic_compare_exchange_weak_explicit(&s->state, x, (*x - 1) & ~drop,
							  memory_order_acquire, memory_order_relaxed))
			return true;
	return false;
}

/* Take a unit if the value is above 0. */
static bool take(struct prt__sem *s)
{
	uint64_t x = atomic_load_explicit(&s->state, memory_order_relaxed);

	return take_from(s, &x, 0);
}

/*
 * Queue @r by priority (FIFO within a level); s->lock held, and the
 * record already counted (wait_slow's CAS).
 */
static void insert(struct prt__sem *s, struct sem_waiter *r)
{
	atomic_store_explicit(&r->st, SW_QUEUED, memory_order_relaxed);
	prt__plist_add(&s->waiters, &r->pl); /* a walk over the levels, not the waiters */
}

/* Take @r off the list and the count; s->lock held. */
static void unqueue(struct prt__sem *s, struct sem_waiter *r)
{
	prt__plist_del(&s->waiters, &r->pl);
	/* posts and a spinner edit the word too: atomic */
	atomic_fetch_sub_explicit(&s->state, SEM_RECORD, memory_order_relaxed);
}

/*
 * The first record, in the list's order, still waiting, now HANDED and
 * off the list; NULL if every queued record is LEAVING (their waiters
 * are on their way to take them off). s->lock held.
 */
static struct sem_waiter *hand_first(struct prt__sem *s)
{
	for (struct prt__list *n = s->waiters.next; n != &s->waiters; n = n->next) {
		struct sem_waiter *r = prt__container_of(n, struct sem_waiter, pl.node);
		unsigned char queued = SW_QUEUED;

		/* relaxed: the wake that follows orders the unit for its waiter */
		if (atomic_compare_exchange_strong_explicit(&r->st, &queued, SW_HANDED,
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			unqueue(s, r);
			return r;
		}
	}
	return NULL;
}

/*
 * Spin for a unit before queueing (cfg.wait_spin_ns, prt__wait_spin_ns):
 * a post that finds nobody queued adds to the value, which we take as
 * any trywait would; the poster then neither takes s->lock nor wakes
 * anybody. Only while nobody is queued (posts go to
 * them) and nobody else spins (SEM_SPINNER: two spinners would race
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
	uint64_t x;

	if (!(sp.spin = prt__wait_spin_ns(w)))
		return false;
	x = atomic_load_explicit(&s->state, memory_order_relaxed);
	do {
		if (take_from(s, &x, 0))
			return true; /* a post came meanwhile */
		if (x >> 32)
			return false; /* somebody spins or is queued */
	} while (!atomic_compare_exchange_weak_explicit(&s->state, &x, x | SEM_SPINNER,
							memory_order_relaxed, memory_order_relaxed));
	*spun = true;
	prt__assert_own_worker(w);
	/*
	 * A look first, then a pause: where the poster shares our core's
	 * cache, its post is often here by now (W5's `sem` in the near
	 * placement: 70 -> 45 ns a round trip), and a pause first made
	 * every wait take one (~25 ns on the EPYC host; docs/design.md,
	 * section 6). Elsewhere the first look finds the line ours, just
	 * written by our compare-and-swap.
	 */
	for (;;) {
		x = atomic_load_explicit(&s->state, memory_order_relaxed);
		if (take_from(s, &x, SEM_SPINNER))
			return true;
		if (prt__cancel_pending(w->curr) || SEM_RECORDS(x) || !prt__spin_keep(w, &sp))
			return false;
		prt__cpu_relax();
	}
}

/*
 * The wait of @r ended without a wake (@err: ETIMEDOUT, ECANCELED or
 * ENOMEM): leave the list, unless a post took @r off it first, whose
 * unit is then ours (0) once its wake comes. Which of the two is decided
 * on @r, not under s->lock: once a post took @r, nobody waits on the
 * semaphore for all its destroy can tell, and it may be gone (a review:
 * a post, then a destroy and a free, while our deadline passed).
 */
static int give_up(struct prt__sem *s, struct sem_waiter *r, int err)
{
	unsigned char queued = SW_QUEUED;

	prt__fault_pause(PRT_PAUSE_SEM_GIVE_UP); /* test builds: a post may have taken @r off */
	if (atomic_compare_exchange_strong_explicit(&r->st, &queued, SW_LEAVING, memory_order_relaxed,
						    memory_order_relaxed)) {
		/* Still on the list: the semaphore stays (destroy says EBUSY) until we are off. */
		prt__fault_pause(PRT_PAUSE_SEM_LEAVING); /* test builds: posts skip us here */
		prt__spin_lock(&s->lock);
		unqueue(s, r);
		prt__spin_unlock(&s->lock);
		return err;
	}
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
	uint64_t x, spinner = spun ? SEM_SPINNER : 0;
	int err;

	prt__wait_init(&r.wait, self);
	prt__spin_lock(&s->lock);
	list_lazy_init(s);
	x = atomic_load_explicit(&s->state, memory_order_relaxed);
	if (take_from(s, &x, spinner))
		err = 0;
	else if (deadline && prt__now_ns() >= deadline)
		err = ETIMEDOUT;
	else if (self && prt__cancel_pending(self))
		err = ECANCELED;
	else
		err = -1;
	if (err < 0)
		prt__fault_pause(PRT_PAUSE_SEM_COUNT); /* test builds: a post may come here */
	/*
	 * Count ourselves with the value still 0, in one step: a post in
	 * between (lock-free) changed the word, and we take its unit. With
	 * @spun, our spinner bit becomes the record's count in the same step,
	 * so we count as a waiter throughout.
	 */
	while (err < 0 &&
	       !atomic_compare_exchange_weak_explicit(&s->state, &x, x - spinner + SEM_RECORD,
						      memory_order_relaxed, memory_order_relaxed))
		if (take_from(s, &x, spinner))
			err = 0;
	if (err >= 0) {
		if (spun && err) /* no wait after all: our spinner bit goes, under the lock */
			atomic_fetch_and_explicit(&s->state, ~SEM_SPINNER, memory_order_relaxed);
		prt__spin_unlock(&s->lock);
		return err;
	}
	insert(s, &r);
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
	uint64_t x;

	if (!us)
		return EINVAL;
	prt__check_live(s->dbg, "prt_sem_post", us);
	x = atomic_load_explicit(&s->state, memory_order_relaxed);
	for (;;) {
		/* Nobody queued: the unit goes to the value, in one step with that look. */
		while (!SEM_RECORDS(x)) {
			if (SEM_VALUE(x) >= PRT_SEM_VALUE_MAX)
				return EOVERFLOW;
			/* release: pairs with take_from()'s acquire */
			if (atomic_compare_exchange_weak_explicit(&s->state, &x, x + 1,
								  memory_order_release,
								  memory_order_relaxed))
				return 0;
		}
		/* The records' count, not the list, is read first: a post to nobody touches 8 bytes. */
		prt__spin_lock(&s->lock);
		x = atomic_load_explicit(&s->state, memory_order_relaxed);
		if (SEM_RECORDS(x) && !(r = hand_first(s))) {
			/*
			 * Every record counted is LEAVING (its wait ended and it
			 * is on its way to take itself off): nobody to hand our
			 * unit to, so the value, as if they had left already.
			 * Under the lock no waiter counts itself meanwhile.
			 */
			do {
				if (SEM_VALUE(x) >= PRT_SEM_VALUE_MAX) {
					err = EOVERFLOW;
					break;
				}
			} while (!atomic_compare_exchange_weak_explicit(&s->state, &x, x + 1,
									memory_order_release,
									memory_order_relaxed));
			prt__spin_unlock(&s->lock);
			return err;
		}
		prt__spin_unlock(&s->lock);
		/* Off the list: it waits for this wake (give_up), so @r stays until then. */
		if (r) {
			prt__fault_pause(PRT_PAUSE_SEM_HANDED); /* test builds: a destroy may come here */
			prt__wait_wake(&r->wait);
			return 0;
		}
		/* The waiters we saw left before we took the lock: the value again. */
	}
}

PRT_API int prt_sem_getvalue(prt_sem_t *us, int *value)
{
	if (!us || !value)
		return EINVAL;
	prt__check_live(sem_of(us)->dbg, "prt_sem_getvalue", us);
	*value = (int)SEM_VALUE(atomic_load_explicit(&sem_of(us)->state, memory_order_relaxed));
	return 0;
}
