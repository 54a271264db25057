/* SPDX-License-Identifier: MIT */
#ifndef PRT_SCHED_PRIV_H
#define PRT_SCHED_PRIV_H

/*
 * The scheduler's own (sched.c), for the files that make up the
 * scheduler with it: the idle loop (idle.c). Everyone else uses
 * sched_int.h.
 */
#include "sched_int.h"
#include "worker.h"

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

/*
 * The yield's lock bias. A yield takes its worker's rq lock and drops it
 * again, and the lock's one locked instruction was a third of a yield
 * (W1, ~5 ns of 17 on the session-21 host: it waits for every store
 * before it, the switch's among them). Where no other thread has wanted
 * the lock for a while, the yield keeps it instead (prt__rq_unlock_keep,
 * @kept): the lock word stays taken while the worker's fibers run, and
 * the worker thread's next own lock enters with plain stores
 * (prt__rq_claim): it marks @in_cs, then looks at @kept; its unlock
 * clears @in_cs. A biased lock, as the JVM's for its monitors, with an
 * asymmetric fence (as userspace RCU's): another thread that finds the
 * lock kept marks @want (the worker's next yield honours it: it drops
 * the lock), and if the worker does not come soon it revokes the bias
 * itself (prt__rq_lock_slow): it clears @kept (compare-and-swap: one
 * revoker, or the worker giving the bias up, wins), issues
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), then waits for @in_cs
 * to be 0 and holds the lock. The membarrier is a full barrier on every
 * CPU that runs a thread of the process: either the worker's @in_cs
 * store was visible before it (the revoker waits for that critical
 * section to end), or the worker's look at @kept comes after it and
 * finds it cleared (the worker then takes the lock as anyone does). A
 * worker thread that is off its CPU, blocked in a system call, or with
 * every signal blocked, is revoked at once: nothing waits for it to
 * run. Not under ThreadSanitizer (it does not know the membarrier's
 * order) or valgrind, nor where the kernel lacks the call (platform.c,
 * prt__membarrier_ready), nor with $PRT_YIELD_BIAS=0 (bias_ok, set at
 * creation). A worker whose lock another thread had to wait for keeps
 * it again only after twice as many calm yields (bias_need): a worker
 * that yields now and then between wakeups from other workers soon
 * stops keeping it.
 */
#define PRT_BIAS_CALM_MIN 64u
#define PRT_BIAS_CALM_MAX (1u << 20)

/*
 * Enter @w's kept lock (the worker thread itself): true if it was still
 * kept, and the caller is inside its critical section (@in_cs set until
 * prt__rq_release). False: revoked, take the lock as anyone does.
 */
static inline bool prt__rq_claim_own(struct prt__worker *w)
{
#if PRT_FAULT_INJECTION
	/*
	 * Test builds: never again inside a section of its own (where a
	 * spinlock would deadlock, a claim would succeed and its release
	 * free the lock under the outer section). relaxed: this thread's.
	 */
	prt__assert(!atomic_load_explicit(&w->rq.in_cs, memory_order_relaxed));
#endif
	/* relaxed: the revoker's membarrier orders this store before the load below */
	atomic_store_explicit(&w->rq.in_cs, 1, memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
	prt__fault_pause(PRT_PAUSE_RQ_CLAIM);
	/* relaxed: set by this thread; cleared by a revoker, which then waits for in_cs */
	if (prt__likely(atomic_load_explicit(&w->rq.kept, memory_order_relaxed))) {
		atomic_signal_fence(memory_order_seq_cst);
		prt__fault_pause(PRT_PAUSE_RQ_BIASED);
		return true;
	}
	/* release: the revoker's acquire of in_cs == 0 takes what this thread did before */
	atomic_store_explicit(&w->rq.in_cs, 0, memory_order_release);
	return false;
}

/* prt__rq_claim_own from any thread: only @w's own may claim it. */
static inline bool prt__rq_claim(struct prt__worker *w)
{
	return w == prt__cur_worker() && prt__rq_claim_own(w);
}

/* Contended, or kept by another worker thread: spin, mark @want, revoke (sched.c). */
void prt__rq_lock_slow(struct prt__worker *x);

/* Take @x's lock word (not kept, or kept by another thread). */
static inline void prt__rq_lock_word(struct prt__worker *x)
{
	/* acquire: pairs with the release in prt__spin_unlock */
	if (prt__likely(atomic_exchange_explicit(&x->rq.lock.v, 1, memory_order_acquire) == 0))
		return;
	prt__rq_lock_slow(x);
}

/* Take @x's rq lock (any thread; its own worker thread may hold it kept). */
static inline void prt__rq_lock(struct prt__worker *x)
{
	/* relaxed: a hint; prt__rq_claim decides */
	if (prt__unlikely(atomic_load_explicit(&x->rq.kept, memory_order_relaxed)) &&
	    prt__rq_claim(x))
		return;
	prt__rq_lock_word(x);
}

/*
 * prt__rq_lock by @w's own thread (a yield): no look at which thread
 * this is (W1: 4 instructions a yield).
 */
static inline void prt__rq_lock_own(struct prt__worker *w)
{
	/*
	 * relaxed: as in prt__rq_lock. Likely, unlike there: a yield that
	 * finds its lock kept is the bias's steady state (a yield loop that
	 * nobody interrupts), and the unlikely hint laid that path out of
	 * line, two taken jumps a yield (W1).
	 */
	if (prt__likely(atomic_load_explicit(&w->rq.kept, memory_order_relaxed)) &&
	    prt__rq_claim_own(w))
		return;
	prt__rq_lock_word(w);
}

/* Try to take @x's rq lock; a thread that finds it kept by x's thread marks @want. */
static inline bool prt__rq_trylock(struct prt__worker *x)
{
	/* relaxed: as in prt__rq_lock */
	if (prt__unlikely(atomic_load_explicit(&x->rq.kept, memory_order_relaxed))) {
		if (prt__rq_claim(x))
			return true;
		/* relaxed: a hint for x's next yield */
		if (atomic_load_explicit(&x->rq.kept, memory_order_relaxed) &&
		    !atomic_load_explicit(&x->rq.want, memory_order_relaxed))
			atomic_store_explicit(&x->rq.want, 1, memory_order_relaxed);
	}
	return prt__spin_trylock(&x->rq.lock);
}

/*
 * Take @x's kept lock from x's thread (sched.c): true if this thread
 * holds it now; false if x's thread, or another revoker, cleared @kept
 * first (the lock word decides then). Costs a membarrier (microseconds).
 */
bool prt__rq_revoke(struct prt__worker *x);

/*
 * prt__rq_trylock for an idle worker that saw work at @x (a steal, due
 * timers): a lock x's thread keeps is taken as prt__rq_lock does (x's
 * next yield, or a revocation soon), not given up on. A busy worker's
 * fiber may compute for long (for good in a cooperative runtime) while
 * its queue holds work the idle worker should take; given up on, only
 * the idle worker's look before it sleeps (idle.c, work_pending), which
 * locks, would take it.
 */
static inline bool prt__rq_trylock_idle(struct prt__worker *x)
{
	if (prt__rq_trylock(x))
		return true;
	/* relaxed: a hint; held by another thread's short edit instead, this waits as prt__rq_lock */
	if (!atomic_load_explicit(&x->rq.kept, memory_order_relaxed))
		return false;
	prt__rq_lock(x);
	return true;
}

/*
 * @w's thread holds w's lock: make that hold a plain one, if it entered
 * it kept (the bias ends here). False: a revoker took the bias first and
 * waits for this thread's section to end (it must then wait for nobody).
 */
static inline bool prt__rq_plain(struct prt__worker *w)
{
	unsigned char one = 1;

	/* relaxed: this thread's own flag */
	if (!atomic_load_explicit(&w->rq.in_cs, memory_order_relaxed))
		return true;
	/* acq_rel: against a revoker's compare-and-swap, which would otherwise take the lock */
	if (!atomic_compare_exchange_strong_explicit(&w->rq.kept, &one, 0, memory_order_acq_rel,
						     memory_order_relaxed))
		return false;
	w->bias_held = false;
	/* relaxed: the word stays held; kept is 0, so no revoker looks at in_cs */
	atomic_store_explicit(&w->rq.in_cs, 0, memory_order_relaxed);
	return true;
}

/*
 * prt__rq_trylock of @x by a pick that holds its own worker @w's lock
 * (proxy.c: taking a runnable owner off x's queue, counting a donor
 * whose wait ended): a lock x's thread keeps is revoked, not given up
 * on (given up on, the owner stayed behind x's computing fiber, and the
 * donor with it: a hang in a cooperative runtime, found by a review).
 * Before it waits for x's thread, this thread's own hold is made plain
 * (prt__rq_plain): two picks that revoked each other's kept locks would
 * each wait for the other's section to end. A thread that waits in a
 * revocation then holds no kept lock, so no one waits for it in turn.
 */
static inline bool prt__rq_trylock_revoke(struct prt__worker *w, struct prt__worker *x)
{
	if (prt__rq_trylock(x))
		return true;
	/* relaxed: a hint; prt__rq_revoke's compare-and-swap decides */
	return atomic_load_explicit(&x->rq.kept, memory_order_relaxed) && prt__rq_plain(w) &&
	       prt__rq_revoke(x);
}

/* The worker thread leaves a critical section it entered kept: give the bias up (sched.c). */
bool prt__rq_unbias(struct prt__worker *x);

/*
 * Release @x's rq lock, and nothing else (prt__rq_unlock also makes
 * known what was deferred). Inside a section entered kept (@in_cs, x's
 * thread), it gives the bias up: the lock is then as any.
 */
static inline void prt__rq_release(struct prt__worker *x)
{
	/*
	 * relaxed: x's thread's own flag; another thread that holds x's
	 * lock reads 0, or 1 while x's thread looks at kept in vain
	 * (prt__rq_unbias tells them apart)
	 */
	if (prt__unlikely(atomic_load_explicit(&x->rq.in_cs, memory_order_relaxed)) &&
	    prt__rq_unbias(x))
		return;
	prt__spin_unlock(&x->rq.lock);
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
		prt__rq_release(w);
		return;
	}
	prt__rq_unlock_deferred(w);
}

/* A thread waited for w's kept lock: keep it again after twice as many calm yields. */
static inline void prt__bias_backoff(struct prt__worker *w)
{
	w->bias_calm = 0;
	if (w->bias_need < PRT_BIAS_CALM_MAX)
		w->bias_need *= 2;
}

/*
 * prt__rq_unlock at a yield (sched.c), by w's thread: keep the lock
 * instead where the bias allows (above). Nothing deferred to make known,
 * no thread waiting, and bias_need calm yields before this one.
 */
static inline void prt__rq_unlock_keep(struct prt__worker *w)
{
	/* relaxed, all: in_cs is this thread's; want a hint (a late look costs its setter a spin) */
	if (prt__likely(atomic_load_explicit(&w->rq.in_cs, memory_order_relaxed))) {
		/* Entered kept: stay so, unless a thread waits or there is news to tell. */
		if (prt__likely(!w->deferred &&
				!atomic_load_explicit(&w->rq.want, memory_order_relaxed))) {
			/* release: a revoker that waits for in_cs == 0 takes the queue as left here */
			atomic_store_explicit(&w->rq.in_cs, 0, memory_order_release);
			return;
		}
	} else if (w->bias_ok && !w->deferred) {
		if (prt__unlikely(w->bias_held)) {
			w->bias_held = false; /* revoked since this thread kept it */
			prt__bias_backoff(w);
		}
		if (prt__unlikely(atomic_load_explicit(&w->rq.want, memory_order_relaxed))) {
			/* Honoured: a thread that still spins for the lock marks it again. */
			atomic_store_explicit(&w->rq.want, 0, memory_order_relaxed);
			prt__bias_backoff(w);
		} else if (w->bias_calm >= w->bias_need) {
			w->bias_held = true;
			/* release: a revoker's compare-and-swap takes the queue as left here */
			atomic_store_explicit(&w->rq.kept, 1, memory_order_release);
			return;
		} else {
			w->bias_calm++;
		}
	}
	prt__rq_unlock(w);
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
