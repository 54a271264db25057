/* SPDX-License-Identifier: MIT */
#ifndef PRT_WAIT_H
#define PRT_WAIT_H

/*
 * The wait primitive: one wait for one event, by a fiber (it parks) or a
 * plain thread (it sleeps on a futex), in the spirit of Argobots'
 * ABTI_waitlist. Every blocking object uses it: join, park/unpark,
 * condvar and mutex waits, I/O requests, receive streams, prt_close's
 * commands and offload (docs/design.md, section 6, "The wait").
 *
 * One word decides everything, so that exactly one of the waker, the
 * timer and the waiter going to sleep wins each step:
 *
 *   IDLE --(waiter sleeps)--> SLEEPING      (a fiber only: BLOCKED)
 *   IDLE | SLEEPING --(prt__wait_wake)--> WOKEN
 *   IDLE | SLEEPING --(deadline)--------> TIMEDOUT
 *   TIMEDOUT --(prt__wait_wake)---------> LATE    (the wake lost; kept)
 *   TIMEDOUT | LATE --(prt__wait_rearm)--> IDLE | WOKEN
 *
 * A wake that finds IDLE ends the wait before the waiter sleeps: its
 * CAS to SLEEPING fails and it returns at once (no lost wakeup). A
 * timeout and a wake cannot both end one wait; a wake that comes after
 * the timeout is kept (LATE) for a waiter that learns it must wait for
 * it after all (a condvar waiter a signal moved first, a mutex waiter
 * handed the lock as it timed out) and re-arms.
 *
 * Lifetime: a waiter returns only once the wait is over, and its waker
 * is then done with the record (the record may live on the waiter's
 * stack): a fiber's waker reads what it needs before its CAS; a
 * thread's waker sets PRT_WAIT_LEFT after its FUTEX_WAKE, and the thread
 * returns only once it sees it. Whoever publishes the record must make
 * sure a wake cannot come after the waiter returned without it (every
 * user unpublishes under the lock its waker takes, or has one waker).
 */

#include <stdbool.h>
#include <stdint.h>

#include "wait_types.h"

struct prt__timer;
struct prt__worker;

/*
 * Wait until @wt is woken, or until CLOCK_MONOTONIC reaches @deadline
 * (ns; 0: no deadline). Returns 0 (woken), ETIMEDOUT, or ENOMEM (no
 * memory for the timer: the wait ended as a timeout would). Returns at
 * once if the wait is already over. A fiber records what it waits for
 * (prt__set_wait) before calling. Context: the waiter itself, a fiber
 * (a scheduling point) or a plain thread.
 */
int prt__wait_block(struct prt__wait *wt, uint64_t deadline);
/*
 * prt__wait_block() for a fiber's cancellable wait (docs/design.md,
 * section 17): a pending cancel ends it (ECANCELED) instead of sleeping,
 * and prt_cancel ends it as its timer would (TIMEDOUT, so every user's
 * timeout path runs: ECANCELED is returned where a timeout before the
 * deadline would be). Returns 0, ETIMEDOUT, ENOMEM or ECANCELED. A plain
 * thread's is prt__wait_block().
 */
int prt__wait_block_cancel(struct prt__wait *wt, uint64_t deadline);
/*
 * prt__wait_block() (@cancel false) or prt__wait_block_cancel() (true)
 * without the wait spin (cfg.wait_spin_ns): for a fiber's wait whose
 * end its own worker brings (an I/O request's completion, a stream's
 * CQE), which that worker would not reap while the fiber spins, and for
 * a waiter that spun already (a semaphore's, before it queued).
 */
int prt__wait_block_nospin(struct prt__wait *wt, uint64_t deadline, bool cancel);
/*
 * The wait of a fiber's I/O request that worker @io (the caller's) holds:
 * a cancel is not ended here but by @io, which cancels the request
 * (prt__io_cancel_post); the request's end wakes @wt as always. Returns
 * what prt__wait_block(@wt, 0) returns.
 */
int prt__wait_block_io(struct prt__wait *wt, struct prt__worker *io);
/*
 * prt_cancel, @f->lock held: end @f's cancellable wait (not an I/O
 * one: prt__fiber.cancel_io) if it sleeps in one. True if the caller
 * must prt__wake(@f) once f->lock is dropped.
 */
bool prt__wait_cancel_locked(struct prt__fiber *f);

/*
 * The waiter's own wait ended TIMEDOUT (or ENOMEM), and it learnt that a
 * wake is coming after all: make @wt wait for it (a LATE wake ends it at
 * once). Then call prt__wait_block(@wt, 0).
 */
void prt__wait_rearm(struct prt__wait *wt);
/*
 * End the wait of @wt: wake its waiter if it sleeps. Returns true if
 * this call ended it; false if it had ended already (timed out: the
 * wake is kept for prt__wait_rearm). Context: any thread; from outside
 * the waiter's runtime the caller holds a reference on it (prt__wake).
 */
bool prt__wait_wake(struct prt__wait *wt);
/*
 * prt__wait_wake() with @w's rq lock held (a timer callback): a fiber
 * waiter is queued on @w (prt__wake_here_locked).
 */
bool prt__wait_wake_here(struct prt__wait *wt, struct prt__worker *w);
/*
 * The fiber timer callback of prt__wait_block() (prt__timer_fn): ends
 * the wait the fiber's timer is armed for (prt__fiber.timed_wait).
 */
void prt__wait_timer_fire(struct prt__timer *t, void *ctx);

/*
 * prt_park / prt_unpark: a fiber's own @wt used as a permit (as Java's
 * LockSupport): WOKEN is a permit kept for the next park, which consumes
 * it; an unpark of a SLEEPING fiber puts it back to IDLE and wakes it.
 * Both under the fiber's lock.
 */
int prt__wait_park(struct prt__worker *w, struct prt__wait *wt);
/* f->lock held: give a permit or take the sleeper; true if the caller must prt__wake() it. */
bool prt__wait_unpark_locked(struct prt__wait *wt);
/*
 * prt_cancel, f->lock held: end a park that sleeps (TIMEDOUT: the park
 * returns ECANCELED, and an unpark after it is kept as a permit); true
 * if the caller must prt__wake() the fiber. prt__wait_park returns 0 or
 * ECANCELED (cancelled before it slept, or by this).
 */
bool prt__wait_park_cancel_locked(struct prt__wait *wt);

#endif
