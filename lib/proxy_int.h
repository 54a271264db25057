/* SPDX-License-Identifier: MIT */
#ifndef PRT_PROXY_INT_H
#define PRT_PROXY_INT_H

/*
 * Proxy execution (proxy.c): the pick-time chain walk the scheduler's
 * pick calls, and what the mutex calls for its donors: detach one handed
 * its lock, count one whose wait timed out, preempt after a handoff.
 */
#include "sched_int.h"

/* What the pick decided (proxy.c). */
enum prt__pick_act {
	PRT_PICK_RUN,     /* run @run with donor @donor */
	PRT_PICK_IDLE,    /* nothing runnable: run the idle context */
	PRT_PICK_MOVE,    /* unlock, queue @move on @to, pick again */
	PRT_PICK_AGAIN,   /* pick again (still locked) */
};

struct prt__pick {
	struct prt__fiber *run, *donor, *move;
	struct prt__worker *to;
};

/*
 * One step of the pick, with w->rq.lock held: pop the highest entry D;
 * if D waits on a mutex, walk the chain of owners and decide what runs
 * in D's place (docs/design.md, "The pick path").
 */
enum prt__pick_act prt__proxy_pick(struct prt__worker *w, struct prt__pick *p);

/*
 * Does donor @d's wait chain still lead to @self, which a worker runs in
 * d's place (a proxy, or d itself)? False only where it surely does
 * not: a fiber on the chain before @self waits no more (d's own wait,
 * or a link's further down, ended by its timeout or a cancel: the
 * worker must pick again, or the owner at the chain's end goes on at
 * d's priority for nothing). A chain moved by an unlock (released, a
 * handoff, readers) is the unlock's to re-pick (prt__after_handoff).
 * Lock-free, as the pick's walk: fiber descriptors are type-stable.
 */
bool prt__proxy_serves(struct prt__fiber *d, struct prt__fiber *self);

/*
 * If donor @d is attached to a sleeping owner, take it off that owner's
 * list and queue it (its mutex was handed to it). Returns true if so.
 */
bool prt__detach_donor(struct prt__fiber *d);
/* prt__detach_donor without the wake: true if @d was taken off an owner's list. */
bool prt__unattach(struct prt__fiber *d);
/*
 * @f's timed mutex wait ended, by its timer in @w's heap (w's rq lock
 * held), while it was queued as a donor: count it as the fiber thieves
 * may take that it now is (mutex.c's timer callback).
 */
void prt__timed_out_donor(struct prt__worker *w, struct prt__fiber *f);
/*
 * @f's mutex or rwlock wait just ended by its timeout or a cancel (w's
 * rq lock held): in a preemptive runtime, interrupt every other worker
 * that runs a proxy for a chain through @f (prt__proxy_serves); @w's
 * own pick or look (preempt_eval) finds it itself.
 */
static inline void prt__chain_wait_ended(struct prt__worker *w, struct prt__fiber *f)
{
	if (prt__unlikely(w->pw.quantum))
		prt__preempt_served_changed(f, w, true);
}
/*
 * After an unlock handed a mutex over: if this worker proxies (donor !=
 * curr) or @new_owner now outranks what it serves and is queued here,
 * reschedule at once.
 */
void prt__after_handoff(struct prt__worker *w, struct prt__fiber *new_owner);

#endif
