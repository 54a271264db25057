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
/*
 * The timer watch (sched.c, protocol 2): the earliest timer of the
 * workers other than @w that do not sleep; whether a sleeper other than
 * @w wakes by @d; V's side: make sure a sleeper wakes for @d.
 */
uint64_t prt__busy_next(struct prt__worker *w);
bool prt__timer_watched(struct prt__worker *w, uint64_t d);
void prt__watch_timer(struct prt__worker *w, uint64_t d);

#endif
