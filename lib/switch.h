/* SPDX-License-Identifier: MIT */
#ifndef PRT_SWITCH_H
#define PRT_SWITCH_H

/*
 * The switch between fibers of a worker (switch.c): the context switch
 * itself (arch/), the on-CPU handover (invariant 3: a fiber's stack is
 * in use until the next context on its last worker has finished the
 * switch away from it), the sanitizers' fiber hooks, and the canary
 * check of a canary stack at each switch. Inline: every scheduling
 * point goes through prt__switch_to.
 */
#include "arch/ctx.h"
#include "sched_int.h"
#include "worker.h"

#if PRT_USE_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#if PRT_USE_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Wait until @f's stack is no longer in use (on_cpu == 0). */
void prt__wait_off_cpu(struct prt__fiber *f);
/* Finish a switch on the new stack: release the context we came from. */
void prt__finish_switch(struct prt__fiber *from);
/*
 * prt__finish_switch's common case inline (no call: W1 ~6 fewer
 * instructions a switch): @from lives on, on a stack without a canary
 * (!from->finish_slow), and no sanitizer wants to hear of the switch.
 */
static inline void prt__finish_switch_fast(struct prt__fiber *from)
{
#if PRT_USE_ASAN
	prt__finish_switch(from);
	return;
#endif
	if (prt__unlikely(from->finish_slow)) {
		prt__finish_switch(from);
		return;
	}
	/* release: pairs with the acquire in prt__switch_to()/prt__wait_off_cpu() */
	atomic_store_explicit(&from->on_cpu, 0, memory_order_release);
}
/* TSan builds: give @f (about to run for the first time) a TSan fiber. */
void prt__tsan_fiber_create(struct prt__fiber *f);

/*
 * ASan: tell it the stack is about to change to @next's. A dying fiber
 * passes NULL for its fake stack: see switch.c.
 */
#if PRT_USE_ASAN
void prt__asan_start(struct prt__fiber *prev, struct prt__fiber *next);
#else
static inline void prt__asan_start(struct prt__fiber *prev, struct prt__fiber *next)
{
	(void)prev;
	(void)next;
}
#endif

/*
 * TSan follows our stack switches through its fiber API: each context
 * has a TSan fiber (a worker's idle context is its thread's own), and
 * the switch tells TSan which one runs next. The switch synchronizes
 * (flags 0): what one context did before the switch happens before what
 * the next does after it, as the rq lock handover makes it in fact.
 */
static inline void prt__tsan_switch(struct prt__fiber *next)
{
#if PRT_USE_TSAN
	__tsan_switch_to_fiber(next->tsan_fiber, 0);
#else
	(void)next;
#endif
}

/*
 * C++ code keeps its exception state per thread (the stack of caught
 * exceptions, the count of those in flight: struct prt__cxa_eh), and
 * its fibers share worker threads: a fiber switched out inside a catch
 * block (preempted there, or blocked on a lock) left its exception on
 * top of the thread's stack, where the next fiber's catch pushed its
 * own; the first to end its catch popped and freed the other's (a
 * review: caught objects of the other fiber, a use after free under
 * ASan, `throw;` rethrowing the other's). So the state goes with the
 * fiber: @prev's is taken off the thread's into @prev, @next's put in
 * its place (an empty one for a fiber that never ran), on the thread
 * @next runs on. As YTsaurus's and Mordor's fibers do; Boost.Context
 * leaves it to the application.
 */
static inline void prt__cxa_switch(struct prt__cxa_eh *eh, struct prt__fiber *prev,
				   struct prt__fiber *next)
{
	prev->cxa_eh = *eh;
	*eh = next->cxa_eh;
}

/*
 * Switch from @prev to @next, which runs for @donor.
 *
 * @next may still be on another worker's CPU (on_cpu == 1) for a moment:
 * it was queued while that worker was switching away from it. Waiting
 * for it here, with @prev still on our CPU, could deadlock: that worker
 * may be waiting, in the same way, for @prev (two fibers each moved to
 * the other's queue while switching out). So a fiber never waits: it
 * hands @next to the idle context, whose own on_cpu nobody waits for,
 * and the idle loop waits and switches.
 */
static inline void prt__switch_to(struct prt__worker *w, struct prt__fiber *prev,
				  struct prt__fiber *next, struct prt__fiber *donor)
{
	void *from;
	/*
	 * errno is the worker thread's, and the fibers that run between our
	 * switch away and back change it: keep ours, as a thread's own, and
	 * put it back in the errno of the thread we resume on (we may have
	 * moved).
	 */
	int saved_errno = *w->errno_p;

	/* acquire: pairs with the release in prt__finish_switch (next->sp is valid) */
	if (prt__unlikely(atomic_load_explicit(&next->on_cpu, memory_order_acquire))) {
		if (prev != &w->idle) {
			w->handover = next;
			w->handover_donor = donor;
			next = donor = &w->idle;
		} else {
			prt__wait_off_cpu(next);
		}
	}
	/*
	 * A C++ runtime in the process: in nearly every one that uses
	 * jemalloc, whose Debian build links libstdc++ (no hint: taken
	 * there at every switch, never in the others).
	 */
	if (w->cxa_eh)
		prt__cxa_switch(w->cxa_eh, prev, next);
	atomic_store_explicit(&next->on_cpu, 1, memory_order_relaxed);
	atomic_store_explicit(&next->state, PRT_FS_RUNNING, memory_order_relaxed);
	PRT_WRITE_ONCE(next->last_worker, w);
	PRT_WRITE_ONCE(w->curr, next); /* read by dumps */
	PRT_WRITE_ONCE(w->donor, donor);
	prt__stat_inc(&w->stats.switches, 1);
	prt__asan_start(prev, next);
	prt__tsan_switch(next);
	from = prt__ctx_switch(&prev->sp, next->sp, prev);
	prt__finish_switch_fast(from);
	/*
	 * Stored only if it differs: the next scheduling point's rq lock
	 * (a locked instruction) waits for every store before it, and an
	 * unconditional one cost a yield ~2 ns (W1) in some hours.
	 */
	{
		int *ep = prt__cur_worker()->errno_p;

		if (prt__unlikely(*ep != saved_errno))
			*ep = saved_errno;
	}
}

#endif
