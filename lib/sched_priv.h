/* SPDX-License-Identifier: MIT */
#ifndef PRT_SCHED_PRIV_H
#define PRT_SCHED_PRIV_H

/*
 * The scheduler's own (sched.c), for the files that make up the
 * scheduler with it: the idle loop (idle.c). Everyone else uses
 * sched_int.h.
 */
#include "sched_int.h"

/*
 * At each scheduling point (rq lock not held): I/O work if any. The
 * test is a few loads of @w's own I/O state, the same for every backend
 * (prt__io_due): for io_uring the SQ count and the CQ, for epoll a poll
 * every 64 points while requests wait.
 */
static inline void prt__io_point(struct prt__worker *w)
{
	if (prt__unlikely(prt__io_due(&w->io)))
		prt__io_service(w, false);
}

/* prt__rq_unlock's slow path: drop the lock, then make known what w->deferred says. */
void prt__rq_unlock_deferred(struct prt__worker *w);

/*
 * Drop w's rq lock. Whoever queues work there by any path but
 * prt__enqueue, or arms a timer, leaves the lock through here: it wakes
 * the workers that must hear of it (sched.c: the protocols at its top), after
 * the unlock. One load and branch when there is nothing to tell.
 */
static inline void prt__rq_unlock(struct prt__worker *w)
{
	if (prt__likely(!w->deferred)) {
		prt__spin_unlock(&w->rq.lock);
		return;
	}
	prt__rq_unlock_deferred(w);
}

/*
 * For the idle loop (idle.c), from sched.c: pick with w->rq.lock held
 * (returns with it dropped; NULL: nothing to run); fire @w's timers in
 * @h due by @now (w's rq lock held; how many fired); wake @v if it
 * sleeps (true if it did); wake one sleeping worker near @near.
 */
struct prt__fiber *prt__pick_unlock(struct prt__worker *w, struct prt__fiber **donor);
unsigned prt__fire_timers(struct prt__worker *w, struct prt__timers *h, uint64_t now);
bool prt__wake_worker(struct prt__worker *v);
void prt__wake_one_near(struct prt__worker *near);
/* Wake a sleeper to steal from @near (for @f, or any fiber): sched.c. */
void prt__wake_thief_near(struct prt__worker *near, struct prt__fiber *f);
/*
 * The timer watch (sched.c, protocol 2): the earliest timer of the
 * workers other than @w that do not sleep; whether a sleeper other than
 * @w wakes by @d; V's side: make sure a sleeper wakes for @d.
 */
uint64_t prt__busy_next(struct prt__worker *w);
bool prt__timer_watched(struct prt__worker *w, uint64_t d);
void prt__watch_timer(struct prt__worker *w, uint64_t d);

/*
 * @f was just queued on @w by a path other than prt__enqueue (rq lock
 * held): if some worker sleeps, have rq_unlock wake one that may take it.
 * Reads nr_idle after the add, under the lock, as prt__enqueue does.
 */
static inline void prt__announce_locked(struct prt__worker *w, struct prt__fiber *f)
{
	if (prt__likely(atomic_load_explicit(&w->rt->nr_idle, memory_order_relaxed) <= 0) ||
	    f->rq_donor)
		return;
	if (f->rq_any) {
		w->deferred |= PRT_DEFER_ANY;
	} else if (w->rt->nworkers > 2) {
		w->deferred |= PRT_DEFER_SOME;
		w->announce = f;
	}
}

/*
 * While a proxy runs (donor != curr), the donor is on no queue: at the
 * proxy's scheduling point put it back, at the tail for a yield (@tail),
 * else at the head. w->rq.lock held.
 */
void prt__put_donor(struct prt__worker *w, bool tail);
/* Switch to what the pick chooses (rq lock held on entry, released here). */
void prt__reschedule(struct prt__worker *w, struct prt__fiber *self);

#endif
