/* SPDX-License-Identifier: MIT */
#ifndef PRT_RUNTIME_INT_H
#define PRT_RUNTIME_INT_H

#include <proxyrt/runtime.h>
#include "platform.h"
#include "sched_int.h"
#include "topology.h"

/*
 * A runtime. Nothing here is global: two runtimes in one process share
 * no state (the only thread-local is the current worker pointer, which
 * also says which runtime the thread belongs to).
 */
struct prt_runtime {
	struct prt__topo topo;
	struct prt__rtio io;
	char notice[600];                /* topo's and io's notices */
	int nworkers;
	bool oversubscribed;            /* more workers than CPUs we may run on */
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
	_Atomic uint64_t next_id;                   /* id blocks are taken from here */
	_Atomic uint64_t ext_spawned;               /* fibers spawned by plain threads */
	atomic_uint rr;                             /* round robin for plain-thread spawns */
	atomic_int started;                         /* workers that finished start-up */

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

	/* Dump signal (signal.c): its slot or -1, and the thread that dumps. */
	int dump_slot, dump_sig;
	bool overflow_handler;          /* holds the overflow handler (signal.c) */
	/* On the live list (runtime.c) from create to destroy; live_lock. */
	struct prt_runtime *live_next;
	bool destroy_claimed;
	int dump_pipe[2];
	pthread_t dump_tid;
};

/*
 * Is @rt a runtime that exists (created, not yet freed)? Its own fibers
 * know it is; anyone else looks it up. Lets calls on a destroyed runtime
 * return -EINVAL instead of touching freed memory.
 */
bool prt__runtime_live(const struct prt_runtime *rt);

/*
 * signal.c. The SIGSEGV/SIGBUS handler reporting guard-page overflows,
 * held by every live runtime (0 or -errno); each worker thread's
 * alternate signal stack; the dump signal of cfg.dump_signal, which
 * config_check() has validated (0, -EAGAIN or -errno; nothing to undo
 * on failure; rt->dump_slot stays -1 without one).
 */
int prt__overflow_handler_get(void);
void prt__overflow_handler_put(void);
void prt__sigstack_init(struct prt__worker *w);
void prt__sigstack_fini(struct prt__worker *w);
int prt__dump_signal_init(struct prt_runtime *rt, int sig);
void prt__dump_signal_fini(struct prt_runtime *rt);
/* Write the overflow message for @f (async-signal-safe) and abort. */
__attribute__((noreturn)) void prt__report_overflow(const struct prt__fiber *f, const char *how,
						    const void *addr);

static inline struct prt__worker *prt__worker_of(struct prt_runtime *rt, struct prt__worker *w)
{
	return (w && w->rt == rt) ? w : NULL;
}

#endif
