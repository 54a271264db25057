/* SPDX-License-Identifier: MIT */
#ifndef PRT_WAIT_TYPES_H
#define PRT_WAIT_TYPES_H

/*
 * The wait primitive's record (wait.h has its calls and the protocol):
 * the type alone, for the structures that embed one (a fiber's park, an
 * I/O request, a mutex waiter's record) below the scheduler.
 */

#include <stdbool.h>
#include <stdint.h>

#include "platform.h"

struct prt__fiber;

/* prt__wait.state */
enum {
	PRT_WAIT_IDLE = 0, /* set up; the waiter is not asleep (yet) */
	PRT_WAIT_SLEEPING, /* a fiber waiter is BLOCKED in prt__wait_block() */
	PRT_WAIT_WOKEN,    /* a wake ended the wait */
	PRT_WAIT_TIMEDOUT, /* the deadline (or no memory for the timer) ended it */
	PRT_WAIT_LATE,     /* TIMEDOUT, then a wake came: kept for prt__wait_rearm() */
};
/* Or'ed into a thread waiter's state by its waker once it is done with the record. */
#define PRT_WAIT_LEFT 8u
#define PRT_WAIT_MASK 7u

struct prt__wait {
	/*
	 * PRT_WAIT_*: changed by compare-and-swap (acq_rel), which is what
	 * makes one of waker, timer and sleeper win; a thread's futex word.
	 */
	atomic_uint state;
	struct prt__fiber *fiber; /* the waiter; NULL for a plain thread */
};

/* Set up @wt for a wait by @self (the calling fiber, or NULL for a plain thread). */
static inline void prt__wait_init(struct prt__wait *wt, struct prt__fiber *self)
{
	atomic_store_explicit(&wt->state, PRT_WAIT_IDLE, memory_order_relaxed);
	wt->fiber = self;
}

/*
 * For a fiber put to sleep by someone else while it is not running (the
 * pick's sleep_donor, proxy.c), under the lock its waker takes before
 * it can find @wt: mark @wt SLEEPING, so the wake queues the fiber.
 */
static inline void prt__wait_slept(struct prt__wait *wt)
{
	prt__assert(atomic_load_explicit(&wt->state, memory_order_relaxed) == PRT_WAIT_IDLE);
	/* relaxed: published by that lock's release */
	atomic_store_explicit(&wt->state, PRT_WAIT_SLEEPING, memory_order_relaxed);
}

#endif
