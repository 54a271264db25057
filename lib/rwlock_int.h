/* SPDX-License-Identifier: MIT */
#ifndef PRT_RWLOCK_INT_H
#define PRT_RWLOCK_INT_H

/*
 * The read-write lock (rwlock.c; docs/design.md, section 18). Its head
 * is a struct prt__mutex, so that everything that follows a fiber's
 * blocked_on (the pick's chain walk, deadlock detection, priority
 * changes, the dump) finds an owner word, a wait_lock and a waiter list
 * where it expects them. The owner word says who holds the lock:
 *
 *   0                                       free
 *   writer token [| PRT_MTX_WAITERS]        held for writing, as a mutex
 *   n << PRT_RW_SHIFT | PRT_MTX_READERS |   held for reading by n
 *     PRT_MTX_THREAD [| PRT_MTX_WAITERS]    readers
 *
 * Readers are counted in the word; the first PRT_RW_TRACK read holds
 * also put their owner's token in a slot of @readers, which is how the
 * pick finds a reader to run for a writer waiting behind them, and
 * deadlock detection walks on through the readers.
 */
#include "mutex_int.h"

/* Read holds whose owner a slot names; more are counted only. */
#define PRT_RW_TRACK 8
/* One reader in the word. */
#define PRT_RW_SHIFT 3
#define PRT_RW_ONE ((uintptr_t)1 << PRT_RW_SHIFT)
/* The bits of a word held for reading, besides the count. */
#define PRT_RW_RD (PRT_MTX_READERS | PRT_MTX_THREAD)

struct prt__rwlock {
	/* Owner word (above), wait_lock, waiters; type PRT__MTX_RWLOCK once used. */
	struct prt__mutex m;
	/*
	 * Tokens of tracked read holds (0: free slot), one slot per hold: a
	 * reader that locks twice may fill two. Claimed by compare-and-swap
	 * after the hold is counted in the word, cleared by the reader
	 * before its unlock leaves the word, so a token in a slot is always
	 * a reader's. Written without a lock; read by the pick, deadlock
	 * detection and dumps (racy snapshots, as their other reads).
	 */
	_Atomic uintptr_t readers[PRT_RW_TRACK];
	/*
	 * Unlocks still granting a read phase in rounds (rwlock.c,
	 * finish_grant): the readers of a round may all run and leave, and the
	 * lock be destroyed, before their granter retakes wait_lock for the
	 * next round. prt_rwlock_destroy waits for 0. Incremented under
	 * wait_lock by the round that leaves readers for another; the
	 * granter's decrement is its last access to the lock.
	 */
	atomic_uint granting;
	/*
	 * Read holds of this lock that found no free slot: counted here as
	 * well as in their owners' rd_untracked (rwlock.c, "Tracking
	 * readers"). While it is 0 an unlock by a caller that names no slot
	 * is EPERM, whatever untracked holds the caller has of other locks.
	 */
	atomic_uint untracked;
};

/* A waiter of an rwlock (rwlock.c): a mutex waiter record, and what it waits for. */
struct prt__rw_waiter {
	struct prt__mwaiter rec; /* on rw->m.waiters while queued (wait_lock) */
	bool reader;             /* waits to read, else to write */
	/* A reader granted the lock: the granter put its token in a slot (before rec.granted). */
	bool tracked;
};

static inline struct prt__rw_waiter *prt__rw_waiter_of(struct prt__mwaiter *r)
{
	return prt__container_of(r, struct prt__rw_waiter, rec);
}

/* The rwlock whose head is @m (m->type == PRT__MTX_RWLOCK, or a word with PRT_MTX_READERS). */
static inline struct prt__rwlock *prt__rwlock_of_mutex(struct prt__mutex *m)
{
	return prt__container_of(m, struct prt__rwlock, m);
}

/* Readers counted in owner word @o (held for reading). */
static inline uintptr_t prt__rw_count(uintptr_t o)
{
	return o >> PRT_RW_SHIFT;
}

/*
 * Slot @i of the rwlock whose head is @m: a reader's token or 0.
 * seq_cst: the deadlock walk's loads are (mutex_owner.c), and pair with
 * the slot's claim (rwlock.c, track()).
 */
static inline uintptr_t prt__rw_slot(struct prt__mutex *m, int i)
{
	return atomic_load_explicit(&prt__rwlock_of_mutex(m)->readers[i], memory_order_seq_cst);
}

/* Does a slot of the rwlock whose head is @m name @tok? */
static inline bool prt__rw_has_reader(struct prt__mutex *m, uintptr_t tok)
{
	for (int i = 0; i < PRT_RW_TRACK; i++)
		if (prt__rw_slot(m, i) == tok)
			return true;
	return false;
}

/*
 * The reader a chain (a dump, prt_fiber_wait_chain) goes on through, for
 * the rwlock whose head is @m, held for reading: its token, the first
 * tracked fiber reader blocked on a lock, else the first tracked fiber
 * reader, else a tracked thread reader; 0 if no reader is tracked.
 */
static inline uintptr_t prt__rw_chain_reader(struct prt__mutex *m)
{
	uintptr_t fiber = 0, thread = 0;

	for (int i = 0; i < PRT_RW_TRACK; i++) {
		uintptr_t r = prt__rw_slot(m, i);

		if (!r)
			continue;
		if (r & PRT_MTX_THREAD) {
			thread = thread ? thread : r;
			continue;
		}
		/* acquire: as the chain walks' reads of blocked_on; descriptors are type-stable */
		if (atomic_load_explicit(&((struct prt__fiber *)r)->blocked_on, memory_order_acquire))
			return r;
		fiber = fiber ? fiber : r;
	}
	return fiber ? fiber : thread;
}

/*
 * Rwlock side of a re-sort (prt__mutex_reprio), wait_lock of @m (an
 * rwlock's head) held: true if @m is held for reading and its first
 * waiter is now a reader, which may join the holders (rwlock.h: a
 * reader joins a read phase if no waiter of its priority or higher is
 * queued); the lock is then kept (its granting count) until
 * prt__rwlock_join_resorted(@m) (rwlock.c), called with no lock held,
 * has let them join.
 */
static inline bool prt__rwlock_resorted(struct prt__mutex *m)
{
	struct prt__rwlock *rw = prt__rwlock_of_mutex(m);

	if (!(atomic_load_explicit(&m->owner, memory_order_relaxed) & PRT_MTX_READERS) ||
	    prt__list_empty(&m->waiters) || !prt__rw_waiter_of(prt__mutex_first_waiter(m))->reader)
		return false;
	/* relaxed: published by wait_lock, as a grant's rounds (rwlock.c, collect_readers) */
	atomic_fetch_add_explicit(&rw->granting, 1, memory_order_relaxed);
	return true;
}

void prt__rwlock_join_resorted(struct prt__mutex *m);

#endif
