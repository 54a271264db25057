/* SPDX-License-Identifier: MIT */
#ifndef PRT_SCHED_H
#define PRT_SCHED_H

#include <pthread.h>

#include "deadline.h"
#include "fault.h"
#include "fiber_int.h"
#include "io_int.h"
#include "platform.h"
#include "preempt.h"
#include "stack.h"
#include "worker.h"

/*
 * A worker's run queue: one FIFO per priority level plus a bitmap of the
 * non-empty levels, so the pick is one count-leading-zeros. Everything
 * here is protected by @lock; other workers take it to steal or to
 * enqueue a fiber they woke.
 */
struct prt__rq {
	prt__spinlock_t lock;
	uint32_t bitmap;                       /* bit L set iff level L (prt__rq_level) is non-empty */
	/*
	 * Fibers queued; those any worker may steal (any affinity, not
	 * waiting on a mutex); those waiting on a mutex (donors, never
	 * stolen). Written under @lock, read racily by thieves and parkers.
	 * Counted when queued: a donor granted its lock while queued still
	 * counts as one until it leaves the queue, which costs at most a
	 * steal, since its own worker runs it.
	 */
	atomic_uint nr, nr_any, nr_donor;
	bool steal_shadow;                     /* @stealable's value, on this line; @lock */
	/*
	 * The lock's bias (sched_priv.h, "The yield's lock bias"): @kept, the
	 * worker thread keeps @lock while its fibers run (set by it, cleared
	 * by it or a revoker); @in_cs, the worker thread is inside a
	 * critical section it entered kept (its own); @want, another thread
	 * waits for @lock (it sets and clears it; the worker reads it).
	 */
	atomic_uchar kept, in_cs, want;
	/*
	 * The priority the worker serves since its last pick, -1 while idle
	 * (preempt.c; 0 ... in a cooperative runtime, unused). Under @lock,
	 * also read by the worker's own signal handler. Here, not in
	 * prt__wpreempt: an enqueue from another CPU reads it (the kick
	 * decision) on the line it already holds.
	 */
	int serve_prio;
	/* prt__rq_level: the default level and the one above it share this line. */
	struct prt__list level[PRT_PRIO_LEVELS];
	/*
	 * nr != nr_donor: something here a thief may take. Idle workers
	 * poll this, not the counts: it has a line of its own and is written
	 * only when it changes, so a thief that spins (for the steal grace,
	 * idle.c) does not pull the lock's line away from a busy owner at
	 * every queue edit. Under @lock; read racily. Set by the edits that
	 * make it true (compared with @steal_shadow, on the lock's line),
	 * cleared by the thief that finds nothing left to take (idle.c,
	 * steal_from): upkeep at every edit cost a yield 7-9% (W1).
	 */
	atomic_uint stealable prt__cacheline_aligned;
	char stealable_pad_[64 - sizeof(atomic_uint)];
};

_Static_assert(PRT_PRIO_LEVELS <= 32, "the run-queue bitmap is 32 bits");
_Static_assert((PRT_PRIO_DEFAULT & (PRT_PRIO_DEFAULT - 1)) == 0 &&
		       PRT_PRIO_DEFAULT < PRT_PRIO_LEVELS && PRT_PRIO_LEVELS == 32,
	       "levels are stored by prio ^ PRT_PRIO_DEFAULT");

/*
 * Level @prio's list. Stored at prio ^ PRT_PRIO_DEFAULT (one xor, a
 * permutation of 0..31) so that the default priority's level and the
 * one above it come first, on the line of the lock and the counts: an
 * enqueue from another CPU at those levels moves that one line of the
 * queue instead of two. W5's semaphore round trip: 2237 -> 1863 ns.
 */
static inline struct prt__list *prt__rq_level(struct prt__rq *rq, int prio)
{
	return &rq->level[(unsigned)prio ^ PRT_PRIO_DEFAULT];
}

/* Per-worker counters: written only by the worker, read by anyone (relaxed). */
struct prt__wstats {
	_Atomic uint64_t switches, steals, parks, fibers_run;
	_Atomic uint64_t proxy_picks, migrations, attachments, handoffs;
	_Atomic uint64_t io_submits, io_ops;
	/* preemptions and time_slices: the preemption path; preempt_deferred: the signal handler. */
	_Atomic uint64_t preemptions, preempt_deferred, time_slices;
	/* preempt.c, "Time-slice extension": slices that waited for an unlock. */
	_Atomic uint64_t slice_extensions;
	/* The worker's handler: its kept rq lock taken back for another thread (sched_priv.h). */
	_Atomic uint64_t bias_revocations;
};

struct prt__worker {
	struct prt__rq rq;
	/*
	 * Timers, under rq.lock. Those of @timers any idle worker may fire
	 * when this one is busy (the timer watch, sched.c); local ones
	 * (prt__timer_arm) end a wait in this worker's own I/O state (epoll
	 * waits, io_uring's timed file calls), so
	 * they live in @iotimers and only this worker fires them.
	 */
	struct prt__timers timers, iotimers;
	/*
	 * @ntimers, @deferred and @pick_slow side by side: preemption's
	 * pick hook (prt__preempt_picked) tests all three with one load of
	 * @pick_look. Each is under rq.lock.
	 */
	union {
		struct {
			/* timers.n + iotimers.n, one load for the picks (pick_local reads it racily). */
			unsigned ntimers;
			/*
			 * What was done under rq.lock that others must hear of
			 * once it is dropped (prt__rq_unlock): PRT_DEFER_* bits,
			 * and the fiber of PRT_DEFER_SOME. Made known by the
			 * holder that set them, except PRT_DEFER_WATCH (see there).
			 */
			uint16_t deferred;
			/*
			 * PRT_PSLOW_* bits (preempt.c): a pick of a preemptive
			 * runtime has more to do than the hook's inline half.
			 */
			uint8_t pick_slow;
			uint8_t pick_pad;
		};
		uint64_t pick_look;
	};
	struct prt__fiber *announce;
	/* Preemption (preempt.h); pw.quantum is 0 in a cooperative runtime. */
	struct prt__wpreempt pw;
	/*
	 * 1 while the worker sleeps for lack of work. Set by the worker,
	 * cleared by whoever wakes it (exchange 1 -> 0, then a kick); see
	 * the protocols at the top of sched.c.
	 */
	atomic_uint sleeping prt__cacheline_aligned;
	/*
	 * While @sleeping: the CLOCK_MONOTONIC deadline (ns) by which it
	 * wakes and looks at every busy worker's timers again, or
	 * PRT_NO_DEADLINE. Written by the worker (the timer watch, sched.c).
	 */
	_Atomic uint64_t park_until;

	/* The rest is the worker thread's own (no lock), except where noted. */
	struct prt__fiber *curr prt__cacheline_aligned; /* whose code runs */
	struct prt__fiber *donor; /* whose scheduling context is served (docs/design.md) */
	/*
	 * Set by a condvar wait around its unlock (cond.c): the switches an
	 * unlock would make (to a new owner that outranks us, a slice
	 * owed) are recorded there instead, for the wait to make once it
	 * has left its spinner's seat (prt__unlock_deferred).
	 */
	struct prt__unlock_defer *unlock_defer;
	/* Picked to run next but still on another CPU: the idle loop runs it. */
	struct prt__fiber *handover, *handover_donor;
	struct prt_runtime *rt;
	int index;
	bool spinning;             /* counted in rt->nr_spinning */
	bool was_parked;           /* published sleeping = 1 since it last ran a fiber */
	/*
	 * Under valgrind (set at creation, then read-only): prt_yield also
	 * yields the thread (sched.c, prt_yield, says why).
	 */
	bool os_yield;
	/*
	 * The yield's lock bias (sched_priv.h) is allowed (set at creation).
	 * Here, in padding: @stats.switches must stay on this line.
	 */
	bool bias_ok;
	/*
	 * The worker thread's C++ exception state (__cxa_get_globals() at
	 * its start, when the C++ runtime is in the process; else NULL): a
	 * switch keeps each fiber's as its own (switch.h, prt__cxa_switch).
	 */
	struct prt__cxa_eh *cxa_eh;
	/*
	 * The worker thread's errno (&errno, taken at its start): a switch
	 * keeps each fiber's errno as its own (switch.h). Next to @stats,
	 * where the switch already reads.
	 */
	int *errno_p;
	struct prt__wstats stats;
	_Atomic uint64_t nspawned; /* fibers spawned from this worker */
	_Atomic uint64_t nexited;  /* fibers that ended on this worker */
	struct prt__fiber *free_desc; /* descriptor free list */
	unsigned nfree_desc;          /* its length */
	uint64_t id_next, id_end;     /* block of fiber ids */
	struct prt__stack_pool stacks;
	struct prt__stack trim_batch[PRT_TRIM_BATCH]; /* prt__stack_trim's, this thread's */
	/*
	 * The state of prt__spin_pauses' generator (xorshift32, never 0):
	 * how long a condvar's seated spinner pauses between polls.
	 */
	uint32_t poll_seed;
	/* The worker thread's own context, switched to when nothing is runnable. */
	struct prt__fiber idle;
	struct prt__io io;
	void *sigstack; /* its alternate signal stack, if it made one (signal.c) */
	/*
	 * The worker thread's alternate signal stack as it started (ours, or
	 * one the thread had; SS_DISABLE: none): put back where a fiber
	 * changed it (preempt_sig.c, altstack_as_base).
	 */
	stack_t altstack;
	/*
	 * @stats as they were at the last prt_worker_stats_reset (runtime.c):
	 * written by that call (release), from any thread; read by
	 * prt_worker_stats (acquire), which reports @stats minus these. The
	 * worker never touches them, and its counters are never rewritten.
	 */
	struct prt__wstats stats_base;
	/*
	 * The idle loop's (the steal grace, idle.c; here, away from the
	 * lines a switch touches): when (CLOCK_MONOTONIC ns) it first saw
	 * another worker with work it may take, since it last stole or saw
	 * none, 0 = not seen; it fired a busy worker's timers (steal what
	 * they woke); parked, when the grace of work it saw ends.
	 */
	long steal_seen;
	bool steal_now;
	uint64_t steal_wake;
	pthread_t thread;
	/*
	 * The yield's lock bias (sched_priv.h): yields in a row that found no
	 * thread waiting for the lock, and how many must come before the
	 * lock is kept (doubled each time another thread had to wait, from
	 * PRT_BIAS_CALM_MIN up to PRT_BIAS_CALM_MAX); it kept the lock and
	 * has not given it up since (a revoker may have taken it: the next
	 * yield learns so). The worker thread's own.
	 */
	unsigned bias_calm, bias_need;
	bool bias_held;
};

/* Set up @w's run queue, timers and idle state (worker creation). */
void prt__worker_sched_init(struct prt__worker *w);

/* ---- run-queue edits; the caller holds w->rq.lock ---- */

/* rq->stealable is now @h (rq lock held): stored only when it changes. */
static inline void prt__rq_hint(struct prt__rq *rq, bool h)
{
	if (prt__unlikely(rq->steal_shadow != h)) {
		rq->steal_shadow = h;
		atomic_store_explicit(&rq->stealable, h, memory_order_relaxed);
	}
}

/*
 * Queued and not a donor, may any worker take @f (counted in nr_any)?
 * Every worker allowed, and not preempted: a preempted fiber runs again
 * only where it was stopped.
 */
static inline bool prt__rq_may_roam(const struct prt__fiber *f)
{
	return atomic_load_explicit(&f->aff_all, memory_order_relaxed) && !f->preempted;
}

static inline void prt__rq_add(struct prt__worker *w, struct prt__fiber *f, bool head)
{
	int p = atomic_load_explicit(&f->prio, memory_order_relaxed);

	f->rq_prio = p;
	/* Only thieves mark (idle.c, steal_from): a store at every queueing cost a yield 2 ns. */
	if (prt__unlikely(f->steal_mark))
		f->steal_mark = 0;
	if (head)
		prt__list_add_head(prt__rq_level(&w->rq, p), &f->rq_node);
	else
		prt__list_add_tail(prt__rq_level(&w->rq, p), &f->rq_node);
	w->rq.bitmap |= 1u << p;
	atomic_store_explicit(&w->rq.nr, atomic_load_explicit(&w->rq.nr, memory_order_relaxed) + 1, memory_order_relaxed);
	f->rq_donor = atomic_load_explicit(&f->blocked_on, memory_order_relaxed) != NULL;
	f->rq_any = !f->rq_donor && prt__rq_may_roam(f);
	if (f->rq_any)
		atomic_store_explicit(&w->rq.nr_any, atomic_load_explicit(&w->rq.nr_any, memory_order_relaxed) + 1, memory_order_relaxed);
	if (f->rq_donor)
		atomic_store_explicit(&w->rq.nr_donor, atomic_load_explicit(&w->rq.nr_donor, memory_order_relaxed) + 1, memory_order_relaxed);
	else
		prt__rq_hint(&w->rq, true); /* nr now exceeds nr_donor (a donor changes neither's gap) */
	/* test builds: a priority or affinity change may come here, after both were read */
	prt__fault_pause(PRT_PAUSE_RQ_ADD);
	atomic_store_explicit(&f->state, PRT_FS_RUNNABLE, memory_order_relaxed);
	atomic_store_explicit(&f->rq_worker, w, memory_order_relaxed);
}

/* (rq.stealable stays set: the thief that finds nothing to take clears it.) */
static inline void prt__rq_del(struct prt__worker *w, struct prt__fiber *f)
{
	prt__list_del(&f->rq_node);
	if (prt__list_empty(prt__rq_level(&w->rq, f->rq_prio)))
		w->rq.bitmap &= ~(1u << f->rq_prio);
	atomic_store_explicit(&w->rq.nr, atomic_load_explicit(&w->rq.nr, memory_order_relaxed) - 1, memory_order_relaxed);
	if (f->rq_any)
		atomic_store_explicit(&w->rq.nr_any, atomic_load_explicit(&w->rq.nr_any, memory_order_relaxed) - 1, memory_order_relaxed);
	if (f->rq_donor)
		atomic_store_explicit(&w->rq.nr_donor, atomic_load_explicit(&w->rq.nr_donor, memory_order_relaxed) - 1, memory_order_relaxed);
	atomic_store_explicit(&f->rq_worker, NULL, memory_order_relaxed);
}

/*
 * Queued @f, counted as a donor, no longer waits on a mutex (handed its
 * lock, or its timed wait ended): count it as what it is now, in place,
 * so thieves and parkers see it may be stolen. True if it may now be.
 */
static inline bool prt__rq_recount(struct prt__worker *w, struct prt__fiber *f)
{
	if (!f->rq_donor || atomic_load_explicit(&f->blocked_on, memory_order_relaxed))
		return false;
	f->rq_donor = false;
	atomic_store_explicit(&w->rq.nr_donor, atomic_load_explicit(&w->rq.nr_donor, memory_order_relaxed) - 1, memory_order_relaxed);
	f->rq_any = atomic_load_explicit(&f->aff_all, memory_order_relaxed);
	if (f->rq_any)
		atomic_store_explicit(&w->rq.nr_any, atomic_load_explicit(&w->rq.nr_any, memory_order_relaxed) + 1, memory_order_relaxed);
	prt__rq_hint(&w->rq, true);
	return true;
}

static inline int prt__rq_top(uint32_t bitmap)
{
	return 31 - __builtin_clz(bitmap);
}

/*
 * A yield's common edit: take queued @out off its level and queue @in
 * (the yielding fiber, not queued) at that level's tail, when @in is
 * counted as @out was (same level, neither a donor, the same any-worker
 * flag): then the counts, the bitmap and the steal hint's gap stay as
 * they are, and only the two list links and the fibers' own fields
 * change. False, with nothing changed, otherwise (prt__rq_del, then
 * prt__rq_add). W1 (yield): ~40 fewer instructions a yield than the
 * pair (callgrind).
 */
static inline bool prt__rq_swap(struct prt__worker *w, struct prt__fiber *out,
				struct prt__fiber *in)
{
	int p = atomic_load_explicit(&in->prio, memory_order_relaxed);
	bool any;

	if (prt__unlikely(p != out->rq_prio || out->rq_donor ||
			  atomic_load_explicit(&in->blocked_on, memory_order_relaxed)))
		return false;
	/*
	 * Read here, under the rq lock, not before it: an affinity change
	 * that finds us queued nowhere waits out the queuers
	 * (prt__migrate_queued, settle), which covers reads made in a lock.
	 */
	any = prt__rq_may_roam(in);
	if (prt__unlikely(any != out->rq_any))
		return false;
	prt__list_del(&out->rq_node);
	atomic_store_explicit(&out->rq_worker, NULL, memory_order_relaxed);
	in->rq_prio = p;
	if (prt__unlikely(in->steal_mark))
		in->steal_mark = 0;
	prt__list_add_tail(prt__rq_level(&w->rq, p), &in->rq_node);
	in->rq_donor = false;
	in->rq_any = any;
	prt__rq_hint(&w->rq, true); /* as prt__rq_add: a thief may have cleared it */
	atomic_store_explicit(&in->state, PRT_FS_RUNNABLE, memory_order_relaxed);
	atomic_store_explicit(&in->rq_worker, w, memory_order_relaxed);
	return true;
}

/* The first fiber of the highest non-empty level (w->rq.bitmap not 0), left queued. */
static inline struct prt__fiber *prt__rq_first(struct prt__worker *w)
{
	return prt__container_of(prt__rq_level(&w->rq, prt__rq_top(w->rq.bitmap))->next,
				 struct prt__fiber, rq_node);
}

static inline struct prt__fiber *prt__rq_pop(struct prt__worker *w)
{
	struct prt__fiber *f = prt__rq_first(w);

	prt__rq_del(w, f);
	return f;
}

static inline void prt__stat_inc(_Atomic uint64_t *c, uint64_t n)
{
	/* Only the owning worker writes: a plain read-modify-write suffices. */
#if defined(__x86_64__)
	/*
	 * One add to memory (not a load, an add and a store: W1, 2
	 * instructions a switch). Not locked, so not atomic against
	 * another writer, of which there is none; its store of 8 aligned
	 * bytes is single-copy atomic, so a reader's relaxed load sees the
	 * count before or after.
	 */
	__asm__("addq %1, %0" : "+m"(*(uint64_t *)c) : "er"(n));
#else
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
#endif
}

/* The priority a worker serves: its donor's (docs/design.md, scheduling context). */
static inline int prt__served_prio(struct prt__worker *w)
{
	return atomic_load_explicit(&w->donor->prio, memory_order_relaxed);
}




/*
 * Make @f (BLOCKED, or new) runnable: choose a worker its affinity
 * allows (the caller's, else the one it last ran on, else the first
 * allowed), queue it at the tail of its level and wake a worker if one
 * sleeps that should take it. Context: any thread; from outside f's
 * runtime it holds a reference on it throughout (runtime.c, "Outside
 * callers"), which is why @f must not have ended: the caller is its one
 * waker.
 */
void prt__wake(struct prt__fiber *f);
/*
 * Queue @f on @w (allowed there) and wake as needed. Context: a fiber or
 * worker of w's runtime, or an outside caller holding a reference on it
 * (it kicks @w after @f may already have run and ended).
 */
void prt__enqueue(struct prt__worker *w, struct prt__fiber *f);

/*
 * Switch away from the calling fiber, which has set itself BLOCKED
 * (under the lock its waker takes) or DEAD; it is not queued. Returns
 * when the fiber is woken and scheduled again (never for DEAD).
 */
void prt__schedule_blocked(struct prt__worker *w);

/*
 * Block the calling fiber until CLOCK_MONOTONIC reaches @deadline (ns).
 * Returns 0, -ENOMEM (timer heap could not grow) or, if @cancellable,
 * -ECANCELED (prt_cancel: pending before it slept, or prt__sleep_cancel).
 */
int prt__sleep_until(struct prt__worker *w, uint64_t deadline, bool cancellable);
/*
 * prt_cancel of @f (its id @id), found asleep in prt_sleep_* on @sw's
 * heap (prt__fiber.cancel_sleep): if it still sleeps there, fire its
 * timer now, as its deadline would. Any thread (a reference on the
 * runtime held from outside it); no lock held.
 */
void prt__sleep_cancel(struct prt__worker *sw, struct prt__fiber *f, uint64_t id);
/* Fire every timer of @w whose deadline has passed; w's rq lock held, on @w. */
void prt__run_timers(struct prt__worker *w);
/*
 * A spinner on @w must stop (or not start): I/O of @w's is due (requests
 * prepared and not submitted, completions to reap, commands: what
 * prt__io_point would service; or fibers waiting for epoll, which only
 * a poll finds), a fiber is queued there (a
 * wakeup, a spawn, a time slice's rival; also a fiber waiting on a
 * mutex, a donor: proxy execution queues a waiter next to its lock's
 * owner, and once the lock is free that donor goes on only when @w
 * picks it, to send it home or run it. Spinning past donors made W5's
 * mutex-and-condvar variant wait out the spin in 3 of 4 round trips,
 * each donor still blocked on the mutex its waiter had just released:
 * 3.1 -> 7.0 us a round trip), or an interrupt was kept for the
 * next scheduling point (a kick for a wakeup that outranks us, or the
 * watch of a sleeper of @w due that outranks us: preemptive runtimes
 * only). Not a tick (a time slice's end): a rival for the slice is
 * queued, and a tick that finds none, left over from a slice that had
 * one, must not end the spin. prt__spin_must_stop_not_io: all of that
 * but the I/O that prt__io_waiting sees, which a service may settle
 * (prt__spin_io); epoll's waiters stay in it (a poll finds them, every
 * time).
 */
static inline bool prt__spin_must_stop_not_io(struct prt__worker *w)
{
	return atomic_load_explicit(&w->rq.nr, memory_order_relaxed) ||
	       (atomic_load_explicit(&w->pw.events, memory_order_relaxed) &
		(PRT_PEV_PENDING(PRT_PSRC_WATCH) | PRT_PEV_PENDING(PRT_PSRC_KICK) | PRT_PEV_KICKED)) ||
	       w->io.watch.polled;
}

static inline bool prt__spin_must_stop(struct prt__worker *w)
{
	return prt__spin_must_stop_not_io(w) || prt__io_waiting(&w->io);
}

/*
 * prt__spin_must_stop said stop: if I/O of @w's is all that stops the
 * spin (no fiber queued, no interrupt kept, no epoll waiters, which
 * only a poll finds), service it now, as the scheduling point that a
 * stop leads to would (submitting what is prepared: a spinner has
 * nothing else to run), and look again (sched.c). True: spin on. A
 * service often settles it with nothing to run: requests prepared and
 * not given to the kernel (io_uring batches them while another fiber of
 * the worker is runnable), the kernel asking to be entered, a kick's
 * own completion on a worker just woken. Before, each stopped the spin
 * (or kept it from starting), and the waiter slept while its event was
 * microseconds away (test_wait_spin, test_spin_with_prepared_io). A
 * completion that wakes a fiber of @w queues it: the spin stops then.
 */
bool prt__spin_io(struct prt__worker *w);

/* A spin in progress (prt__spin_keep): its length and deadline, ns. */
struct prt__spin {
	uint64_t spin, deadline; /* deadline 0: none */
	uint64_t until;          /* the spin's end, from the first clock read; 0 before */
	unsigned polls;
	/*
	 * log2 of the pauses the caller makes per poll (0: one; 1: two,
	 * or 2.5 on average for cond.c's seated spinners, whose later polls
	 * come after 1-4), so that the clock is read every 32 pauses at a
	 * fixed pace (every 32 >> @pause_shift polls: for a seated
	 * spinner, 16 polls, 16-64 pauses, 40 on average).
	 */
	unsigned pause_shift;
};

/*
 * Pauses before a seated spinner's next poll after its first (cond.c,
 * spin_wait): 1 to 4, drawn at random (xorshift32 on @w->poll_seed). At
 * a fixed pace, two sides passing a turn through a mutex and a condvar
 * (W5, `xcore pinned`) fell into one of a few stable phases of their
 * polls against the other side's writes to the mutex's line, and kept
 * it, often for the whole run: ~600-700 or ~1000 ns a round trip against
 * the 400 ns ping-pong of the slow placement. A random pace keeps none
 * (docs/design.md, section 6, "A random pace"). The
 * worker's own thread only.
 */
static inline unsigned prt__spin_pauses(struct prt__worker *w)
{
	uint32_t x = w->poll_seed;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	w->poll_seed = x;
	return 1 + (x & 3);
}

/*
 * Go on spinning on @w? Called after each poll (the caller pauses
 * about 1 << @sp->pause_shift times per poll, and looks at what it
 * waits for). No when prt__spin_must_stop says so and prt__spin_io
 * does not settle it (a poll that serviced I/O also reads the clock,
 * as below); every 32 >>
 * @pause_shift polls (32 pauses at a fixed pace), with the clock, also
 * when @sp's length is over (counted from that first read: a spin that
 * ends sooner reads no clock at all), its deadline passed,
 * or a timer of @w's is due (a sleeper, a timeout: @w fires them only at
 * a scheduling point; racy reads of the heaps' earliest deadlines).
 */
static inline bool prt__spin_keep(struct prt__worker *w, struct prt__spin *sp)
{
	uint64_t now;

	if (prt__spin_must_stop(w)) {
		if (!prt__spin_io(w))
			return false;
		/*
		 * A service takes microseconds (a system call, a reap), not a
		 * pause: read the clock at this poll. Else up to 31 of them
		 * came between two reads, and a spin ran 10-50x its length, a
		 * deadline or a due sleeper that much late (a review: a stream
		 * fed a byte every 1.5 us beside a 4 us spin, spins of 8-41 us
		 * median; test_spin_clock_after_service).
		 */
		sp->polls |= 31u >> sp->pause_shift;
	}
	if (++sp->polls & (31u >> sp->pause_shift))
		return true;
	now = prt__now_ns();
	if (!sp->until)
		sp->until = prt__add_sat(now, sp->spin);
	return now < sp->until && (!sp->deadline || now < sp->deadline) &&
	       now < atomic_load_explicit(&w->timers.next, memory_order_relaxed) &&
	       now < atomic_load_explicit(&w->iotimers.next, memory_order_relaxed);
}

/*
 * How long a fiber on @w may spin for an event before it sleeps, in ns
 * (rt->wait_spin, cfg.wait_spin_ns), or 0 for not at all (sched.c).
 * Only where it may pay and costs nobody: more than one worker, each
 * with a CPU, some other worker busy (the event may come from it),
 * nothing @w could run instead (prt__spin_must_stop), and not under
 * valgrind (rt->wait_spin 0). A spinner stops when prt__spin_keep
 * says so, and at a cancel. It runs inside the runtime, where
 * preemption is deferred: what outranks it on @w waits for its next
 * look. Go's sync.Mutex spins on the same terms (runtime_canSpin: several
 * CPUs, another P running, an empty local run queue).
 */
uint64_t prt__wait_spin_ns(struct prt__worker *w);

/* Any timer armed on @w? (rq lock held, or racy.) */
static inline bool prt__has_timers(const struct prt__worker *w)
{
	return PRT_READ_ONCE(w->ntimers) != 0;
}
/*
 * Bits of prt__worker.deferred: what the holder of the rq lock queued
 * that others must hear of once the lock is dropped.
 */
enum {
	PRT_DEFER_ANY = 1,   /* fibers any worker may run: wake an idle one */
	PRT_DEFER_SOME = 2,  /* @announce may run on some other workers: wake one of them */
	/* A new earliest timer; kept until the next pick: if it runs a fiber, a sleeper must watch it. */
	PRT_DEFER_WATCH = 4,
	/* A fiber queued here outranks what this worker runs: interrupt it (preempt.c). */
	PRT_DEFER_KICK = 8,
};
_Static_assert(PRT_DEFER_KICK < 1u << 16, "prt__worker.deferred is 16 bits");
_Static_assert(sizeof(((struct prt__worker *)0)->pick_look) ==
		       sizeof(((struct prt__worker *)0)->ntimers) +
			       sizeof(((struct prt__worker *)0)->deferred) + 2,
	       "pick_look covers ntimers, deferred and pick_slow");

/*
 * Preemption's hooks (preempt.h), one compare in a cooperative runtime.
 * prt__preempt_picked: the pick chose @next to run for @donor (NULL:
 * the idle context); rq lock held. prt__preempt_queued: @f was just
 * queued on @t (t's rq lock held); true if @t runs something @f
 * outranks and must be interrupted (prt__preempt_kick once the lock is
 * dropped).
 */
static inline void prt__preempt_picked(struct prt__worker *w, struct prt__fiber *next,
				       struct prt__fiber *donor)
{
	struct prt__wpreempt *p = &w->pw;

	/*
	 * No hint: with one (likely cooperative) the preemptive half went
	 * out of line, and its jump back was one of the six instructions
	 * the default quantum added to a yield (W1, callgrind: five now).
	 */
	if (!p->quantum)
		return;
	/*
	 * The common pick of a preemptive runtime, inline (a call here cost
	 * a yield 10%): nothing to clear (events, a kick of its own recorded
	 * in @deferred), no timer to watch nor a watch to disarm, no slice
	 * to carry on after a fiber above (exc_fiber), and a CPU-time tick
	 * running (the default quantum's while fibers share the worker: it
	 * stops itself, preempt_eval). These with pick_slow
	 * (PRT_PSLOW_*) in one load: pick_look. A pick with no tick or a
	 * monotonic one (the tick may have to start or pause) takes the
	 * slow half; so does one to the idle context. relaxed: a look,
	 * which the slow half makes again and clears.
	 */
	if (prt__unlikely(!next || (w->pick_look | atomic_load_explicit(&p->events,
									memory_order_relaxed)))) {
		prt__preempt_picked_slow(w, next, donor);
		return;
	}
	/* this thread's handler reads it (interrupt) */
	PRT_WRITE_ONCE(w->rq.serve_prio, atomic_load_explicit(&donor->prio, memory_order_relaxed));
}

/*
 * A runtime call that may return without switching honours here an
 * interrupt deferred while the fiber ran in the library or libc (the
 * README's safe points): a fiber that loops on such a call spends
 * nearly all its time there, and its ticks and their retries landed
 * there too. prt_now_ns (two reviews: a priority-31 fiber waited
 * 0.3-2+ s behind a loop on it), and the fiber I/O calls, which on
 * the epoll backend complete at once without parking while the fd is
 * ready (a user's trial, session 44: a write-and-read loop on a
 * socketpair held its worker ~60 ms a switch at a 4 ms slice, 2677
 * ticks deferred and 35 honoured in 2 s; at quantum 0 a yielding fiber
 * beside it never ran again, which under valgrind, epoll and
 * cooperative, hung its program). The slow half (preempt.c) checks that
 * it is safe: not the idle context, a handler, a prt_preempt_disable()
 * region, nor a cooperative runtime. The caller holds no lock.
 */
static inline void prt__preempt_safe_point(void)
{
	struct prt__worker *w = prt__cur_worker();

	/* relaxed: this thread's handler sets the bits; preempt_eval takes them */
	if (prt__unlikely(w && (atomic_load_explicit(&w->pw.events, memory_order_relaxed) &
				PRT_PEV_PENDING_ALL)))
		prt__preempt_safe_point_slow(w);
}

static inline bool prt__preempt_queued(struct prt__worker *t, struct prt__fiber *f)
{
	if (prt__unlikely(t->pw.quantum)) {
		/*
		 * The common wakeup of a preemptive runtime, inline (the call
		 * was ~10 of a spawn+join's ~740 instructions, W2): @f below
		 * what @t serves, or level with it while @t's tick already
		 * runs. An idle @t (serve_prio -1) goes to the slow half.
		 */
		if (f->rq_prio < t->rq.serve_prio ||
		    (f->rq_prio == t->rq.serve_prio && t->pw.ticking))
			return false;
		return prt__preempt_queued_slow(t, f);
	}
	return false;
}
/*
 * A fiber has at most one timer (prt__fiber.timer). Arm it for the
 * calling fiber on its worker @w, to call @fn (with @w's rq lock held,
 * the worker whose heap it is as @ctx) at @deadline: 0 or -ENOMEM.
 * With @local, only @w fires it (its I/O state has no lock of its own);
 * else an idle worker may fire it while @w is busy (the timer watch).
 * Cancel it if it has not fired: either from the fiber itself, on any
 * worker.
 */
int prt__timer_arm(struct prt__worker *w, uint64_t deadline, prt__timer_fn *fn, bool local);
void prt__timer_cancel(struct prt__fiber *f);
/* Queue sleeping @f on @w, with its attached donors. @w's rq lock held. */
void prt__wake_here_locked(struct prt__worker *w, struct prt__fiber *f);

/* Wake every worker (shutdown). */
void prt__wake_all_workers(struct prt_runtime *rt);

/* Move a queued fiber to level @prio (set_priority), if it is queued. */
void prt__requeue(struct prt__fiber *f);
/*
 * Move a queued fiber that may no longer run where it is queued, or
 * count it anew where it is. @settle (an affinity change, whose new
 * words are stored): if it is queued nowhere as we look, wait out the
 * queuers first, as prt__requeue does for a priority.
 */
void prt__migrate_queued(struct prt__fiber *f, bool settle);
/* The caller may no longer run on its worker: move it and switch. */
void prt__migrate_self(struct prt__worker *w);
/*
 * A scheduling point that returned without waiting (a park that found a
 * permit, a join of a fiber that had ended): an affinity change another
 * thread made meanwhile takes effect here, as at a switch (fiber.h:
 * "moves at its next scheduling point"; a review's consumer that always
 * found a permit never moved). Plain threads: nothing.
 */
void prt__sched_point_passed(void);

/*
 * Scheduling point of a fiber that starts waiting on a mutex in proxy
 * mode: it stays queued (at the head of its level, blocked_on set) and
 * the pick runs; returns when it is run again.
 */
void prt__schedule_mutex_wait(struct prt__worker *w);

#endif
