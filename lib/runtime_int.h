/* SPDX-License-Identifier: MIT */
#ifndef PRT_RUNTIME_INT_H
#define PRT_RUNTIME_INT_H

#include <proxyrt/runtime.h>
#include "platform.h"
#include "sched_int.h"
#include "signal_int.h"
#include "topology.h"

/*
 * A runtime. Nothing here is global: two runtimes in one process share
 * no state but the live list (runtime.c), the fiber ids and descriptor
 * depot (fiber.c) and the signal handlers (signal.c); the only
 * thread-local is the current worker pointer, which also says which
 * runtime the thread belongs to.
 */
struct prt_runtime {
	struct prt__topo topo;
	struct prt__rtio io;
	char notice[600];                /* topo's and io's notices */
	int nworkers;
	bool oversubscribed;            /* more workers than CPUs we may run on */
	uint64_t steal_grace;           /* cfg.steal_grace_ns (idle.c, steal_due) */
	uint64_t timer_lead;            /* cfg.timer_lead_ns (idle.c, worker_park); 0 under valgrind or oversubscribed */
	uint64_t wait_spin;             /* cfg.wait_spin_ns (prt__may_spin); 0 under valgrind */
	struct prt__worker **workers;   /* nworkers, each cache-line aligned */
	size_t stack_size;              /* default stack size, page-rounded */
	int stack_kind;
	unsigned stack_pool_max;
	unsigned flags;

	/* Idle accounting, read on every enqueue: its own cache line. */
	atomic_int nr_idle prt__cacheline_aligned;  /* workers with sleeping == 1 */
	atomic_int nr_spinning;                     /* workers looking for work */

	atomic_bool stopping prt__cacheline_aligned; /* workers exit when idle */
	atomic_bool destroying;                     /* prt_runtime_destroy waits */
	atomic_uint destroy_seq;                    /* futex: bumped when a fiber ends */
	/*
	 * Fibers spawned from outside the runtime, counted (under live_lock,
	 * runtime.c) before the spawn does anything else; a spawn that then
	 * fails takes its count back.
	 */
	_Atomic uint64_t ext_spawned;
	atomic_uint rr;                             /* round robin for plain-thread spawns */
	atomic_int started;                         /* workers that finished start-up */

	/*
	 * References held by calls from outside the runtime (plain threads,
	 * other runtimes' fibers), 2 each, plus PRT_RT_DYING once destroy has
	 * stopped taking new ones and waits for these to go (runtime.c,
	 * "Outside callers"). Written only by outside callers: its own line.
	 */
	atomic_uint ext_refs prt__cacheline_aligned;

	/* Descriptor chunks, and the free list used by plain threads. */
	prt__spinlock_t desc_lock;
	void *desc_chunks;                          /* chunk list; desc_lock */
	struct prt__fiber *ext_free_desc;           /* desc_lock */
	/* Batches of PRT_DESC_BATCH free descriptors moved between workers. */
	struct prt__fiber *desc_depot;              /* desc_lock; linked by batch_next */

	/* Free default-size stacks moved between workers' pools, in batches. */
	prt__spinlock_t depot_lock;
	struct prt__stack *stack_depot;             /* depot_lock */
	unsigned ndepot, maxdepot;                  /* depot_lock */

	/* Canary-stack slabs. */
	prt__spinlock_t slab_lock;
	struct prt__slab *slabs;                    /* slab_lock */

	/* Preemption (preempt.c): the time slice (0: cooperative) and the signal. */
	uint64_t preempt_quantum;
	int preempt_sig;
	/* Dump signal (signal.c): its slot or -1, and the thread that dumps. */
	int dump_slot, dump_sig;
	bool overflow_handler;          /* holds the overflow handler (signal.c) */
	/* On the live list (runtime.c) from create to destroy; live_lock. */
	struct prt_runtime *live_next;
	bool destroy_claimed;                       /* live_lock */
	int dump_pipe[2];
	pthread_t dump_tid;
};


/*
 * A spinner on @w must stop (or not start): a fiber is queued there (a
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
 * one, must not end the spin.
 */
static inline bool prt__spin_must_stop(struct prt__worker *w)
{
	return atomic_load_explicit(&w->rq.nr, memory_order_relaxed) ||
	       (atomic_load_explicit(&w->pw.events, memory_order_relaxed) &
		(PRT_PEV_PENDING(PRT_PSRC_WATCH) | PRT_PEV_PENDING(PRT_PSRC_KICK) | PRT_PEV_KICKED));
}

/*
 * May a fiber on @w spin for an event instead of sleeping at once (for
 * rt->wait_spin ns, cfg.wait_spin_ns)? Only where it may pay and costs
 * nobody: more than one worker, each with a CPU, some other worker busy
 * (the event may come from it), nothing @w could run instead
 * (prt__spin_must_stop), and not under valgrind (rt->wait_spin 0). A
 * spinner stops as soon as prt__spin_must_stop says so, after
 * rt->wait_spin, at its deadline, or at a cancel. It runs inside the
 * runtime, where preemption is deferred: what outranks it on @w waits
 * for its next look (a cooperative runtime's sleepers of @w that fall
 * due wait for the spin to end: rt->wait_spin at most). Go's sync.Mutex spins on the same
 * terms (runtime_canSpin: several CPUs, another P running, an empty
 * local run queue).
 */
static inline bool prt__may_spin(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;

	return rt->wait_spin && rt->nworkers > 1 && !rt->oversubscribed &&
	       atomic_load_explicit(&rt->nr_idle, memory_order_relaxed) < rt->nworkers - 1 &&
	       !prt__spin_must_stop(w);
}

static inline struct prt__worker *prt__worker_of(struct prt_runtime *rt, struct prt__worker *w)
{
	return (w && w->rt == rt) ? w : NULL;
}

#endif
