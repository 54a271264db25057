/* SPDX-License-Identifier: MIT */
#ifndef PRT_TIMER_H
#define PRT_TIMER_H

/*
 * Timers: a min-heap of CLOCK_MONOTONIC deadlines (ns), each timer with
 * its own callback, as libuv's uv_timer_t carries its uv_timer_cb. The
 * heap knows none of its users: whoever arms a timer says what firing
 * it does, and whoever fires a heap passes a context to the callbacks
 * (the scheduler passes the worker whose heap it is).
 *
 * Locking is the owner's: every call below is made under the lock that
 * protects the heap (for a worker's heaps, its rq lock), except that
 * @next may be read without it.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* No deadline: an empty heap's @next, a worker that sleeps until woken. */
#define PRT_NO_DEADLINE UINT64_MAX

struct prt__timer;

/*
 * What firing @t does. Called with the heap's lock held, @t already
 * taken off its heap (so it may be armed again); @ctx is the argument
 * given to prt__timers_run().
 */
typedef void prt__timer_fn(struct prt__timer *t, void *ctx);

/* A timer; embedded in its user (a fiber has one), zeroed = not armed. */
struct prt__timer {
	prt__timer_fn *fn; /* set when armed; heap's lock */
	unsigned pos;      /* index + 1 in its heap, 0 when not armed; heap's lock */
};

struct prt__timer_ent {
	uint64_t deadline;    /* a copy next to the pointer: sifting reads no timer */
	struct prt__timer *t;
};

struct prt__timers {
	struct prt__timer_ent *heap;
	unsigned n, cap;
	/*
	 * heap[0].deadline, or PRT_NO_DEADLINE: written under the heap's
	 * lock, read without it (sched.c's timer watch). A store that makes
	 * a new earliest deadline is seq_cst: the watch's protocol pairs
	 * with it (sched.c, "Timers").
	 */
	_Atomic uint64_t next;
};

/* An empty heap. */
void prt__timers_init(struct prt__timers *h);
/* Free the heap's memory (no timer may be armed in it any more). */
void prt__timers_fini(struct prt__timers *h);

/*
 * Arm @t (not armed) to call @fn once CLOCK_MONOTONIC reaches @deadline
 * (ns). Returns 1 if @t is now the heap's earliest timer (@next was
 * stored, seq_cst), 0 if not, -ENOMEM if the heap could not grow (@t
 * stays unarmed).
 */
int prt__timer_add(struct prt__timers *h, struct prt__timer *t, uint64_t deadline,
		   prt__timer_fn *fn);

/* Disarm @t, armed in @h. */
void prt__timer_del(struct prt__timers *h, struct prt__timer *t);

/*
 * Fire the timers of @h whose deadline is <= @now, earliest first: each
 * is taken off the heap, then its callback runs with @ctx. Returns how
 * many fired.
 */
unsigned prt__timers_run(struct prt__timers *h, uint64_t now, void *ctx);

static inline bool prt__timer_armed(const struct prt__timer *t)
{
	return t->pos != 0;
}

/* The earliest deadline of @h, or PRT_NO_DEADLINE (under the heap's lock). */
static inline uint64_t prt__timers_first(const struct prt__timers *h)
{
	return h->n ? h->heap[0].deadline : PRT_NO_DEADLINE;
}

#endif
