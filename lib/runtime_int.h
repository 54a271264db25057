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
	uint64_t wait_spin;             /* cfg.wait_spin_ns (sched.c, prt__wait_spin_ns); 0 under valgrind, with one worker or oversubscribed */
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

	/*
	 * Free default-size stacks moved between workers' pools, in batches.
	 * The depot keeps maxdepot for good; past that it grows (to capdepot)
	 * and what stays unused for a decay period goes back to the system
	 * (stack.c, "Decay").
	 */
	prt__spinlock_t depot_lock;
	struct prt__stack *stack_depot;             /* depot_lock */
	unsigned ndepot, maxdepot, capdepot;        /* depot_lock; ndepot read racily as a hint */
	unsigned depot_low;                         /* depot_lock: fewest in it this period */
	uint64_t depot_trim_at;                     /* depot_lock: when the period ends */
	/* Free stacks of other sizes, oldest first (stack.c, "Other sizes"). */
	struct prt__odd_stack *odd;                 /* depot_lock */
	unsigned nodd, capodd;                      /* depot_lock; nodd read racily as a hint */
	size_t odd_bytes, odd_max_bytes;            /* depot_lock: their sizes' sum, and its bound */
	uint64_t odd_trim_at;                       /* depot_lock: when odd[0] has been unused a period */
	uint64_t stack_decay;                       /* cfg.stack_decay_ns; 0: nothing kept past the pools */
	/* depot_lock; read racily: the sooner of depot_trim_at and odd_trim_at */
	_Atomic uint64_t stack_trim_at;

	/* Canary-stack slabs. */
	prt__spinlock_t slab_lock;
	struct prt__slab *slabs;                    /* slab_lock */
	/*
	 * Slab stacks whose pages were given back, spilled by the workers'
	 * cold lists in batches for any worker to carve from (stack.c,
	 * "Cold stacks").
	 */
	struct prt__stack *cold;                    /* slab_lock */
	unsigned ncold, capcold;                    /* slab_lock; ncold read racily as a hint */

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


static inline struct prt__worker *prt__worker_of(struct prt_runtime *rt, struct prt__worker *w)
{
	return (w && w->rt == rt) ? w : NULL;
}

#endif
