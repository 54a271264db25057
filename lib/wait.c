/* SPDX-License-Identifier: MIT */
/*
 * The wait primitive (wait.h): one wait for one event, by a fiber or a
 * plain thread, ended by exactly one of a wake and a timeout.
 *
 * A fiber goes to sleep with one compare-and-swap, IDLE -> SLEEPING,
 * under its own lock together with its BLOCKED state (so a donor's
 * attach, which looks at the state under that lock, never sees it
 * asleep while it is still queued: docs/design.md, section 8). Its
 * waker and its timer each try to move the word from IDLE or SLEEPING
 * to their end state; whoever finds SLEEPING queues the fiber:
 *
 *   waiter (prt__wait_block)        waker (prt__wait_wake)
 *   ------------------------        ----------------------
 *   lock(self)                      f = wt->fiber   (before: @wt may go)
 *   CAS IDLE -> SLEEPING            CAS IDLE|SLEEPING -> WOKEN
 *     failed: over, return            found SLEEPING: prt__wake(f)
 *   BLOCKED, unlock(self)             found IDLE: the waiter's CAS fails
 *   switch away
 *
 * A plain thread sleeps on the word itself (FUTEX_WAIT while IDLE) and
 * times out by its own CAS IDLE -> TIMEDOUT; its waker, after the
 * FUTEX_WAKE, or's in PRT_WAIT_LEFT, and the thread leaves only then.
 */
#include <errno.h>
#include <sched.h>

#include "fault.h"
#include "io_backend.h"
#include "sched_int.h"
#include "wait.h"
#include "worker.h"

/*
 * Move @wt from IDLE or SLEEPING to @end (WOKEN or TIMEDOUT); a wake
 * that finds TIMEDOUT leaves LATE. Returns the state it found (without
 * PRT_WAIT_LEFT). acq_rel: what the ender did before (a grant, a
 * stream's data) is visible to the waiter, which reads the word with
 * acquire; what the waiter did before sleeping is visible to the ender.
 */
static unsigned wait_end(struct prt__wait *wt, unsigned end)
{
	unsigned old = atomic_load_explicit(&wt->state, memory_order_relaxed);

	for (;;) {
		unsigned to;

		switch (old & PRT_WAIT_MASK) {
		case PRT_WAIT_IDLE:
		case PRT_WAIT_SLEEPING:
			to = end;
			break;
		case PRT_WAIT_TIMEDOUT:
			if (end != PRT_WAIT_WOKEN)
				return old & PRT_WAIT_MASK;
			to = PRT_WAIT_LATE;
			break;
		default:
			return old & PRT_WAIT_MASK; /* over, and any wake already kept */
		}
		if (atomic_compare_exchange_weak_explicit(&wt->state, &old, to | (old & PRT_WAIT_LEFT),
							  memory_order_acq_rel, memory_order_relaxed))
			return old & PRT_WAIT_MASK;
	}
}

/*
 * A thread waiter's waker, after its CAS: wake the thread and tell it we
 * are done with @wt (our last access: the thread may return and free it).
 */
static void thread_wake(struct prt__wait *wt)
{
	prt__fault_pause(PRT_PAUSE_GRANT_WAKE);
	prt__futex_wake(&wt->state, 1);
	/* release: pairs with the acquire in thread_left() */
	atomic_fetch_or_explicit(&wt->state, PRT_WAIT_LEFT, memory_order_release);
}

/* The thread's side: a wake ended its wait; return once its waker has left @wt. */
static void thread_left(struct prt__wait *wt)
{
	/* A few instructions of the waker remain (unless the OS preempted it: yield). */
	for (int i = 0; !(atomic_load_explicit(&wt->state, memory_order_acquire) & PRT_WAIT_LEFT); i++) {
		if (i < 128)
			prt__cpu_relax();
		else
			sched_yield();
	}
}

/* The result of a wait that is over: 0 if a wake ended it, else ETIMEDOUT. */
static int wait_result(unsigned st)
{
	st &= PRT_WAIT_MASK;
	prt__assert(st == PRT_WAIT_WOKEN || st == PRT_WAIT_TIMEDOUT || st == PRT_WAIT_LATE);
	return st == PRT_WAIT_WOKEN ? 0 : ETIMEDOUT;
}

static int thread_block(struct prt__wait *wt, uint64_t deadline)
{
	unsigned st;

	/* acquire: pairs with the ender's CAS (wait_end) */
	while ((st = atomic_load_explicit(&wt->state, memory_order_acquire)) == PRT_WAIT_IDLE) {
		uint64_t now;

		if (!deadline) {
			prt__futex_wait(&wt->state, PRT_WAIT_IDLE);
			continue;
		}
		now = prt__now_ns();
		if (now < deadline) {
			prt__futex_wait_ns(&wt->state, PRT_WAIT_IDLE, deadline - now);
			continue;
		}
		if (wait_end(wt, PRT_WAIT_TIMEDOUT) == PRT_WAIT_IDLE)
			return ETIMEDOUT; /* ours: no waker touches @wt now */
	}
	if ((st & PRT_WAIT_MASK) == PRT_WAIT_WOKEN) {
		thread_left(wt);
		return 0;
	}
	return ETIMEDOUT; /* our own timeout, before: no waker left inside */
}

/* A fiber's wait past its deadline, or without memory for its timer: end it ourselves. */
static int fiber_give_up(struct prt__wait *wt, int err)
{
	if (wait_end(wt, PRT_WAIT_TIMEDOUT) == PRT_WAIT_IDLE)
		return err;
	return wait_result(atomic_load_explicit(&wt->state, memory_order_acquire));
}

/*
 * A cancellable wait (@io: NULL for one a cancel ends as a timeout, else
 * the worker holding the I/O request this wait is for) found a cancel
 * pending under self->lock, before sleeping: end it ourselves. An I/O
 * request cannot be dropped (the kernel writes into it): its worker,
 * the one we run on, is told to cancel it, and we wait for its end.
 * Returns WAIT_ON to sleep after all, else the wait's result.
 */
#define WAIT_ON (-1)
static int cancelled_before(struct prt__wait *wt, struct prt__worker *io)
{
	if (io) {
		prt__io_cancel_post(io);
		return WAIT_ON;
	}
	return fiber_give_up(wt, ECANCELED);
}

/*
 * A cancellable wait without a deadline (or before it) ended TIMEDOUT:
 * only a cancel does that (prt__wait_cancel_locked).
 */
static int cancel_result(int err, uint64_t deadline)
{
	if (err == ETIMEDOUT && (!deadline || prt__now_ns() < deadline))
		return ECANCELED;
	return err;
}

/*
 * Before a fiber sleeps: spin while the wait is not over, for
 * @spin ns at most (prt__wait_spin_ns, sched_int.h: cfg.wait_spin_ns,
 * and when). A wake that comes meanwhile finds IDLE and
 * ends the wait with its CAS alone: nothing is queued on our worker, no
 * pick, no switch (a join of a fiber that ends on another worker, a
 * semaphore waiter already queued, a condvar waiter handed its mutex).
 * Stops at the deadline and at a cancel; the caller then goes on as if
 * it had not spun. Not for a wait whose end our own worker brings (its
 * I/O requests, a stream's completions: prt__wait_block_io, _nospin),
 * which it does not while we spin.
 */
static void spin_for_end(struct prt__wait *wt, struct prt__worker *w, uint64_t spin,
			 uint64_t deadline, bool cancel)
{
	struct prt__fiber *self = wt->fiber;
	struct prt__spin sp = { .spin = spin, .deadline = deadline };

	prt__assert_own_worker(w);
	do
		prt__cpu_relax(); /* first: sem.c's look-first order here and in cond.c cost xcore pinned 2% */
	while (atomic_load_explicit(&wt->state, memory_order_relaxed) == PRT_WAIT_IDLE &&
	       !(cancel && prt__cancel_pending(self)) && prt__spin_keep(w, &sp));
}

static int fiber_block(struct prt__wait *wt, uint64_t deadline, bool cancel,
		       struct prt__worker *io, bool nospin)
{
	struct prt__fiber *self = wt->fiber;
	struct prt__worker *w = prt__cur_worker();
	unsigned idle = PRT_WAIT_IDLE;
	bool armed = false;
	int err = WAIT_ON;
	uint64_t spin;

	if (cancel && !io && prt__cancel_pending(self))
		return fiber_give_up(wt, ECANCELED);
	if (!io && !nospin && atomic_load_explicit(&wt->state, memory_order_relaxed) == PRT_WAIT_IDLE &&
	    (spin = prt__wait_spin_ns(w)))
		spin_for_end(wt, w, spin, deadline, cancel);
	if (deadline) {
		if (prt__now_ns() >= deadline)
			return fiber_give_up(wt, ETIMEDOUT);
		self->timed_wait = wt; /* read by prt__wait_timer_fire under w's rq lock */
		if (prt__timer_arm(w, deadline, prt__wait_timer_fire, false))
			return fiber_give_up(wt, ENOMEM);
		armed = true;
	}
	prt__spin_lock(&self->lock);
	/* Under our lock: a prt_cancel is seen here, or it sees our hook (fiber_int.h). */
	if (cancel && prt__cancel_pending(self) && (err = cancelled_before(wt, io)) != WAIT_ON) {
		prt__spin_unlock(&self->lock);
	/* acq_rel: pairs with wait_end(); on failure (acquire) the ender's writes are ours */
	} else if (atomic_compare_exchange_strong_explicit(&wt->state, &idle, PRT_WAIT_SLEEPING,
							   memory_order_acq_rel, memory_order_acquire)) {
		atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
		if (cancel) {
			self->cancel_wait = wt; /* cleared by whoever makes us runnable */
			self->cancel_io = io;
		}
		prt__spin_unlock(&self->lock);
		prt__schedule_blocked(w);
	} else {
		prt__spin_unlock(&self->lock);
	}
	if (armed)
		prt__timer_cancel(self); /* after this the timer no longer reads @wt */
	if (err == WAIT_ON)
		err = wait_result(atomic_load_explicit(&wt->state, memory_order_acquire));
	return cancel && !io ? cancel_result(err, deadline) : err;
}

int prt__wait_block(struct prt__wait *wt, uint64_t deadline)
{
	return wt->fiber ? fiber_block(wt, deadline, false, NULL, false) : thread_block(wt, deadline);
}

int prt__wait_block_cancel(struct prt__wait *wt, uint64_t deadline)
{
	return wt->fiber ? fiber_block(wt, deadline, true, NULL, false) : thread_block(wt, deadline);
}

int prt__wait_block_nospin(struct prt__wait *wt, uint64_t deadline, bool cancel)
{
	return wt->fiber ? fiber_block(wt, deadline, cancel, NULL, true) : thread_block(wt, deadline);
}

int prt__wait_block_io(struct prt__wait *wt, struct prt__worker *io)
{
	return fiber_block(wt, 0, true, io, false);
}

bool prt__wait_cancel_locked(struct prt__fiber *f)
{
	struct prt__wait *wt = f->cancel_wait;

	if (!wt || f->cancel_io)
		return false;
	/* The same transition as the wait's timer (prt__wait_timer_fire). */
	return wait_end(wt, PRT_WAIT_TIMEDOUT) == PRT_WAIT_SLEEPING;
}

void prt__wait_rearm(struct prt__wait *wt)
{
	unsigned old = PRT_WAIT_TIMEDOUT;

	/* acq_rel: on failure (LATE, acquire) the late waker's writes are visible */
	if (atomic_compare_exchange_strong_explicit(&wt->state, &old, PRT_WAIT_IDLE,
						    memory_order_acq_rel, memory_order_acquire))
		return;
	prt__assert((old & PRT_WAIT_MASK) == PRT_WAIT_LATE);
	/* Only we change it now (a thread's waker may still or in LEFT): the wake won. */
	atomic_fetch_xor_explicit(&wt->state, PRT_WAIT_LATE ^ PRT_WAIT_WOKEN, memory_order_relaxed);
}

bool prt__wait_wake(struct prt__wait *wt)
{
	struct prt__fiber *f = wt->fiber; /* before the CAS: then @wt may be gone */
	unsigned old = wait_end(wt, PRT_WAIT_WOKEN);

	if (!f) {
		if (old != PRT_WAIT_WOKEN && old != PRT_WAIT_LATE)
			thread_wake(wt); /* WOKEN or LATE now: the thread waits for LEFT */
	} else if (old == PRT_WAIT_SLEEPING) {
		prt__wake(f);
	}
	return old == PRT_WAIT_IDLE || old == PRT_WAIT_SLEEPING;
}

bool prt__wait_wake_here(struct prt__wait *wt, struct prt__worker *w)
{
	struct prt__fiber *f = wt->fiber;
	unsigned old = wait_end(wt, PRT_WAIT_WOKEN);

	if (!f) {
		if (old != PRT_WAIT_WOKEN && old != PRT_WAIT_LATE)
			thread_wake(wt);
	} else if (old == PRT_WAIT_SLEEPING) {
		prt__wake_here_locked(w, f);
	}
	return old == PRT_WAIT_IDLE || old == PRT_WAIT_SLEEPING;
}

void prt__wait_timer_fire(struct prt__timer *t, void *ctx)
{
	struct prt__fiber *f = prt__container_of(t, struct prt__fiber, timer);

	/*
	 * @timed_wait stays valid: the fiber cancels this timer (under the
	 * rq lock we hold) before its wait returns.
	 */
	if (wait_end(f->timed_wait, PRT_WAIT_TIMEDOUT) == PRT_WAIT_SLEEPING)
		prt__wake_here_locked(ctx, f);
}

/* ---- park / unpark ------------------------------------------------------------ */

/*
 * A cancelled fiber's park returned: was it the cancel that ended it
 * (TIMEDOUT; LATE if an unpark came after), or an unpark (IDLE)? An
 * unpark that came after the cancel is kept as a permit.
 */
static int park_cancelled(struct prt__fiber *self, struct prt__wait *wt)
{
	unsigned st;

	prt__spin_lock(&self->lock);
	st = atomic_load_explicit(&wt->state, memory_order_relaxed);
	if (st == PRT_WAIT_TIMEDOUT || st == PRT_WAIT_LATE)
		atomic_store_explicit(&wt->state, st == PRT_WAIT_LATE ? PRT_WAIT_WOKEN : PRT_WAIT_IDLE,
				      memory_order_relaxed);
	prt__spin_unlock(&self->lock);
	return st == PRT_WAIT_TIMEDOUT || st == PRT_WAIT_LATE ? ECANCELED : 0;
}

int prt__wait_park(struct prt__worker *w, struct prt__wait *wt)
{
	struct prt__fiber *self = wt->fiber;

	prt__spin_lock(&self->lock);
	if (prt__cancel_pending(self)) {
		prt__spin_unlock(&self->lock);
		return ECANCELED; /* a permit stays for the next park */
	}
	/* relaxed: the word changes only under self->lock here (prt__wait_unpark_locked) */
	if (atomic_load_explicit(&wt->state, memory_order_relaxed) == PRT_WAIT_WOKEN) {
		atomic_store_explicit(&wt->state, PRT_WAIT_IDLE, memory_order_relaxed);
		prt__spin_unlock(&self->lock);
		prt__sched_point_passed(); /* a scheduling point still */
		return 0; /* a permit: consumed */
	}
	atomic_store_explicit(&wt->state, PRT_WAIT_SLEEPING, memory_order_relaxed);
	atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
	prt__spin_unlock(&self->lock);
	prt__schedule_blocked(w);
	/* Only a cancel, under our lock after it set @cancel, ends a park as TIMEDOUT. */
	if (!prt__cancel_pending(self))
		return 0;
	return park_cancelled(self, wt);
}

bool prt__wait_unpark_locked(struct prt__wait *wt)
{
	switch (atomic_load_explicit(&wt->state, memory_order_relaxed)) {
	case PRT_WAIT_SLEEPING:
		/* Back to IDLE, not WOKEN: an unpark from now on is a new permit. */
		atomic_store_explicit(&wt->state, PRT_WAIT_IDLE, memory_order_relaxed);
		return true;
	case PRT_WAIT_IDLE:
		atomic_store_explicit(&wt->state, PRT_WAIT_WOKEN, memory_order_relaxed);
		return false;
	case PRT_WAIT_TIMEDOUT:
		/* A cancel ended the park and wakes it: this unpark is the next permit. */
		atomic_store_explicit(&wt->state, PRT_WAIT_LATE, memory_order_relaxed);
		return false;
	default:
		return false; /* a permit is there already: permits do not add up */
	}
}

bool prt__wait_park_cancel_locked(struct prt__wait *wt)
{
	if (atomic_load_explicit(&wt->state, memory_order_relaxed) != PRT_WAIT_SLEEPING)
		return false;
	atomic_store_explicit(&wt->state, PRT_WAIT_TIMEDOUT, memory_order_relaxed);
	return true;
}
