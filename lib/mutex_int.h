/* SPDX-License-Identifier: MIT */
#ifndef PRT_MUTEX_INT_H
#define PRT_MUTEX_INT_H

#include <proxyrt/mutex.h>
#include "deadline.h"
#include "fiber_int.h"
#include "platform.h"
#include "plist.h"

/*
 * Owner word: 0 when unlocked, else the owner's token with flag bits.
 * A fiber's token is its descriptor address; a plain thread's is the
 * address of its struct prt__tself (mutex_owner.h), with PRT_MTX_THREAD.
 *
 * A token names one owner for good: a fiber or thread that ends holding
 * a mutex leaves it locked (POSIX's default "stalled" robustness), and
 * its descriptor or prt__tself is never reused, so nobody else ever
 * finds the mutex its own (see "Owners that end" in mutex_owner.c).
 */
#define PRT_MTX_WAITERS ((uintptr_t)1) /* the waiter list may be non-empty */
#define PRT_MTX_THREAD ((uintptr_t)2)  /* the owner is a plain thread */
#define PRT_MTX_FLAGS ((uintptr_t)3)
/*
 * rwlock only (rwlock_int.h): the word counts readers instead of naming
 * an owner. Always with PRT_MTX_THREAD, so that code which reads an
 * owner word without knowing about rwlocks sees an owner it cannot run
 * (as a plain thread); tokens are 8-byte aligned, so no token has it.
 */
#define PRT_MTX_READERS ((uintptr_t)4)

/*
 * struct prt__mutex.type of the mutex at the head of an rwlock
 * (rwlock_int.h); never a prt_mutex_t's (prt_mutexattr_settype refuses it).
 */
#define PRT__MTX_RWLOCK 3

struct prt__mutex {
	/*
	 * Lock fast path: CAS 0 -> token. Unlock fast path: CAS token -> 0,
	 * which fails while PRT_MTX_WAITERS is set. With waiters, unlock
	 * either writes the next owner's token (handoff) or, between equals,
	 * leaves PRT_MTX_WAITERS alone (released with waiters): see
	 * "Handoff and lateral stealing" in mutex.c.
	 */
	_Atomic uintptr_t owner;
	/*
	 * Beside the owner word: the unlock fast path reads it, a condvar
	 * wait writes it (one line but where the mutex starts 8 bytes before
	 * a line's end; the fields contended waits use follow within 24 bytes).
	 */
	atomic_uint count;           /* recursive: extra locks held; written by the owner */
	prt__spinlock_t wait_lock;   /* protects waiters, and waiter records */
	/* First waiter's priority + 1, 0 without waiters; written under wait_lock. */
	atomic_short top;
	/*
	 * The condvar spinners that wait for a signal on this mutex's line
	 * (cond.c, "Spinning waiters"): PRT_SPIN_SEATS seats of 2 bits
	 * (PRT_SEAT_*), and the tag of the condvar seated. Seated holding
	 * the mutex; woken by a signaller that holds
	 * it (or that pinned a spinner, which keeps the mutex alive).
	 */
	_Atomic uint16_t spin;
	uint8_t type;                /* PRT_MUTEX_NORMAL/ERRORCHECK/RECURSIVE, or PRT__MTX_RWLOCK */
	uint8_t proxy;               /* PRT_MUTEX_PROXY_* */
	uint16_t dbg;                /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	/* Waiter records, highest priority first, FIFO within a level;
	 * {NULL, NULL} (zero storage) means empty. wait_lock. */
	struct prt__list waiters;
};

_Static_assert(sizeof(struct prt__mutex) <= PRT_MUTEX_SIZE, "prt_mutex_t too small");
_Static_assert(_Alignof(struct prt__mutex) <= _Alignof(prt_mutex_t), "prt_mutex_t alignment");

/* One waiter of a mutex, on the waiter's stack, in m->waiters. */
struct prt__mwaiter {
	/*
	 * Its place in m->waiters (wait_lock) or a condvar's list (its lock
	 * while @cwait is ONCOND or LEAVING), a plist (plist.h). pl.prio:
	 * the fiber's priority, the list's order: read when it joins a list,
	 * kept current by prt__waits_reprio.
	 */
	struct prt__plnode pl;
	struct prt__fiber *fiber;   /* the waiting fiber, or NULL for a thread */
	uintptr_t token;            /* its owner token */
	uint64_t since;             /* prt__now_ns() when it queued (starvation) */
	/*
	 * The waiter is off the run queues (BLOCKED): a proxy-off mutex, or
	 * an owner that cannot be proxied (a thread, or dead). Handoff must
	 * then wake it (@wait). wait_lock.
	 */
	bool sleeping;
	/*
	 * A condvar waiter moved here by signal: it sleeps on @wait by its
	 * own protocol (cond.c), and may not be asleep yet when the mutex is
	 * handed to it; handoff wakes it through @wait.
	 */
	bool parker;
	/*
	 * A wait that prt_cancel must not end (prt__mutex_lock_nocancel: a
	 * condvar waiter retaking its mutex after a timeout or a cancel,
	 * which must return holding it). Set before the record is queued.
	 */
	bool nocancel;
	/*
	 * What a sleeping waiter (@sleeping or @parker) sleeps on, and what
	 * its waker (a handoff, its timeout) ends: the wait primitive
	 * (wait.h). Reset under wait_lock before the waiter sleeps.
	 */
	struct prt__wait wait;
	/*
	 * Condvar waiters only: PRT_CW_* (cond.c). Who moves the record off
	 * the condvar, the signaller or the waiter's own timeout, is decided
	 * by one compare-and-swap on this word, so a waiter that lost to a
	 * signal learns it from its record and never touches the condvar
	 * again (which may be destroyed and reused by then).
	 */
	atomic_uint cwait;
	/* Its timed wait ended (its timer, mutex_timer_fire): taken off the list. wait_lock. */
	bool timedout;
	/*
	 * PRT_GRANTED once the mutex was handed to this waiter (release,
	 * under wait_lock). A waiter that does not sleep (spinning, or a
	 * queued donor) reads it and goes on; one that sleeps returns only
	 * once its @wait is woken, so the handoff's wake never reaches a
	 * record that is gone.
	 */
	atomic_uint granted;
};

/* The first waiter of @m (wait_lock held), or NULL. */
static inline struct prt__mwaiter *prt__mutex_first_waiter(struct prt__mutex *m)
{
	if (prt__list_empty(&m->waiters))
		return NULL;
	return prt__container_of(m->waiters.next, struct prt__mwaiter, pl.node);
}

/* struct prt__mwaiter.granted */
#define PRT_GRANTED 1u

/* struct prt__mwaiter.cwait */
enum {
	PRT_CW_NONE = 0, /* a mutex waiter, not a condvar's */
	PRT_CW_ONCOND,   /* on the condvar's list, waiting for a signal */
	PRT_CW_MOVED,    /* a signal took it: on (or handed) the mutex */
	PRT_CW_LEAVING,  /* timed out first: unlinks itself from the condvar */
};

/*
 * Insert @r (r->pl.prio set) into @head after every waiter of its
 * priority or higher (FIFO within a level): a walk over the levels
 * (plist.h), however many wait. The list's lock held.
 */
static inline void prt__mwaiter_insert(struct prt__list *head, struct prt__mwaiter *r)
{
	prt__plist_add(head, &r->pl);
}

/* Take @r off @head's list. The list's lock held. */
static inline void prt__mwaiter_del(struct prt__list *head, struct prt__mwaiter *r)
{
	prt__plist_del(head, &r->pl);
}

static inline struct prt__mutex *prt__mutex_of(prt_mutex_t *m)
{
	return (struct prt__mutex *)(void *)m;
}

/*
 * @f's waiter record on @m, or NULL if @f no longer waits on @m. With
 * @m's wait_lock held, which every store naming @m in blocked_on or
 * clearing it holds (relaxed). f->mwait is @m's only while f waits on
 * @m: handed @m just before, f may already be queuing on another lock,
 * writing mwait under that lock's wait_lock (a TSan report: a prt_cancel
 * read it first).
 */
static inline struct prt__mwaiter *prt__mwait_on(struct prt__fiber *f, struct prt__mutex *m)
{
	return atomic_load_explicit(&f->blocked_on, memory_order_relaxed) == m ? f->mwait : NULL;
}

/* The fiber owning a mutex with owner word @o, or NULL (unlocked or a thread). */
static inline struct prt__fiber *prt__owner_fiber(uintptr_t o)
{
	return (o & PRT_MTX_THREAD) ? NULL : (struct prt__fiber *)(o & ~PRT_MTX_FLAGS);
}

/* What a handoff must wake once wait_lock is dropped. */
struct prt__handoff {
	struct prt__fiber *fiber;   /* the new owner; NULL for a thread */
	struct prt__wait *wait;     /* its wait if it sleeps; else a fiber queued as a donor */
	/*
	 * The new owner's runtime, if we are outside it: a reference that
	 * keeps it until the wake is done (runtime.c, "Outside callers").
	 */
	struct prt_runtime *ref;
	bool done;
};

/* Condvar side of the mutex (mutex.c). */
struct prt__mutex;
int prt__mutex_release_all(struct prt__mutex *m, unsigned *count);
void prt__mutex_requeue(struct prt__mutex *m, struct prt__mwaiter *r);
/* The caller's token; a thread that never locked gets PRT_MTX_THREAD alone (owns nothing). */
uintptr_t prt__mutex_self_token(void);

/*
 * Mutex side of it (mutex.c), with @f->lock held: re-sort @f's record
 * on the mutex it waits on, if any; a handoff it makes is left in @h,
 * to wake with prt__handoff_wake() once f->lock is dropped, and an
 * rwlock whose waiting readers may now join its read phase in *@rw_join
 * (prt__rwlock_resorted, rwlock_int.h), for prt__rwlock_join_resorted()
 * then. False
 * if the mutex's wait_lock was busy: drop @f->lock and retry.
 */
bool prt__mutex_reprio(struct prt__fiber *f, struct prt__handoff *h, struct prt__mutex **rw_join);

/*
 * prt_cancel's lock part (fiber.c, cancel_lock_wait). Find the mutex
 * (or rwlock head) that fiber @f (id @id) waits for, and take its
 * wait_lock: NULL if it waits for none. The lock order is wait_lock ->
 * fiber lock, so it is found as prt__mutex_reprio finds it: under
 * f->lock, with wait_lock only tried.
 */
struct prt__mutex *prt__mutex_cancel_find(struct prt__fiber *f, uint64_t id);
/*
 * End @f's wait for mutex @m (its wait_lock held, dropped here; @w's rq
 * lock held: any worker of f's runtime, a sleeping waiter is queued
 * there) as its timer would (mutex_timer_fire): off the list, the
 * owner's donation gone, its lock call returns ECANCELED (lock_fiber).
 * A condvar's retake is not cancelled.
 */
void prt__mutex_cancel_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m);
/* The same for an rwlock whose head is @m (rwlock.c, its own timeout path). */
void prt__rwlock_cancel_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m);
/*
 * Lock @m for a condvar wait's retake (0, EDEADLK, ENOMEM): as
 * prt_mutex_lock, but a pending cancel does not end it (pthreads' cond
 * wait also returns holding the mutex).
 */
int prt__mutex_lock_nocancel(struct prt__mutex *m);
/*
 * Take @m if it is free, as prt_mutex_lock's fast path does, counted
 * held; false (nothing changed) if it is not: then prt__mutex_lock_nocancel.
 * Context: a fiber or a plain thread; never switches.
 */
bool prt__mutex_take_free(struct prt__mutex *m);
/*
 * Switches an unlock owes but did not make (prt__worker.unlock_defer):
 * @to, a new owner that may outrank the caller (prt__after_handoff);
 * @slice, a time slice that ended while the lock was held.
 */
struct prt__unlock_defer {
	struct prt__fiber *to;
	bool slice;
};
/* Make the switches @d records, if any (the caller's own worker @w). May switch. */
void prt__unlock_deferred(struct prt__worker *w, struct prt__unlock_defer *d);
/* Wake the new owner of a handoff left in @h (no lock held); nothing if none. */
void prt__handoff_wake(struct prt__handoff *h);

#endif
