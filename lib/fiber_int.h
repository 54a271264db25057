/* SPDX-License-Identifier: MIT */
#ifndef PRT_FIBER_INT_H
#define PRT_FIBER_INT_H

#include <stddef.h>

#include <proxyrt/fiber.h>
#include "platform.h"
#include "stack.h"
#include "timer.h"
#include "wait_types.h"

struct prt__worker;
struct prt_runtime;
struct prt__mutex;
struct prt__mwaiter;
struct prt__cond;

/*
 * Fiber states. A fiber in a run queue is RUNNABLE; the one a worker
 * runs is RUNNING; a fiber waiting for join, park or (later) I/O or a
 * condvar is BLOCKED and on no queue (invariant 1); DEAD until joined
 * or reaped; FREE on a descriptor free list.
 */
enum prt__fstate {
	PRT_FS_FREE = 0,
	PRT_FS_RUNNABLE,
	PRT_FS_RUNNING,
	PRT_FS_BLOCKED,
	PRT_FS_DEAD,
};

/* prt__fiber.kind */
enum {
	PRT_FK_FIBER = 0,
	PRT_FK_IDLE, /* a worker's own thread context (worker.idle) */
};

/*
 * prt__fiber.nheld's top bit: the fiber's time slice ended while it held
 * a lock and was extended until its last unlock (preempt.c, "Time-slice
 * extension"), or an interrupt was deferred in the library's own code
 * (preempt_sig.c, mark_owed: then also while the count is 0); the unlock
 * that releases its last lock honours it, a preemption clears it. So a
 * count is read without it (PRT_HELD_COUNT).
 */
#define PRT_HELD_SLICE_OWED 0x80000000u
#define PRT_HELD_COUNT(n) ((n) & ~PRT_HELD_SLICE_OWED)

/*
 * Set PRT_HELD_SLICE_OWED in @nheld: only by the fiber itself or its
 * worker's signal handler (one plain load and store, as its one writer).
 */
static inline void prt__held_mark_owed(atomic_uint *nheld)
{
	unsigned n = atomic_load_explicit(nheld, memory_order_relaxed);

	if (!(n & PRT_HELD_SLICE_OWED))
		atomic_store_explicit(nheld, n | PRT_HELD_SLICE_OWED, memory_order_relaxed);
}

/*
 * A fiber descriptor. Descriptors are carved from chunks that live as
 * long as the runtime (type-stable memory, like Go's g structs): a
 * stale handle can always be checked against @id without touching
 * freed memory.
 */
/*
 * The Itanium C++ ABI's per-thread exception state (__cxa_eh_globals,
 * libstdc++ and libc++abi alike on x86-64 and aarch64): the stack of
 * caught exceptions, which __cxa_begin_catch pushes and __cxa_end_catch
 * pops and frees, and the count of thrown ones not yet caught.
 */
struct prt__cxa_eh {
	void *caught;
	unsigned uncaught;
};

/*
 * The calling thread's exception state, if a C++ runtime that has
 * __cxa_get_globals is in the process's global scope (linked into the
 * program, or loaded with RTLD_GLOBAL before): else NULL (fiber.c).
 */
struct prt__cxa_eh *prt__cxa_globals(void);

struct prt__fiber {
	/*
	 * The descriptor is 64-byte aligned, and its first two lines hold
	 * what a wake from another CPU touches: prt__wake and wake() (rt,
	 * last_worker, affinity flag, lock, donors, state, the cancel
	 * hooks), the enqueue (prio, the rq_* fields, blocked_on). Spread
	 * over five lines before (440 bytes, packed), they cost a cross-core
	 * semaphore round trip (W5) 13% and a 2-worker spawn+join (W2) 10%.
	 * Fields the fiber writes as it runs (sp, on_cpu at each switch)
	 * come after them, beside its read-mostly affinity words.
	 */
	/*
	 * Protects joiner, detached, reap, park's state, wait_cond and cwait;
	 * a fiber goes to sleep (BLOCKED) under it (wait.c).
	 */
	prt__spinlock_t lock;
	atomic_int state;                 /* enum prt__fstate */
	atomic_int prio;                  /* scheduling context: its priority */
	int rq_prio;                      /* level it is queued at; rq lock */
	/*
	 * When a thief first passed over this fiber, queued, as one that ran
	 * (idle.c, steal_from; its clock in units of 1024 ns, 0 = not yet);
	 * reset as it is queued. Under the rq lock of its queue.
	 */
	uint32_t steal_mark;
	/*
	 * prt_cancel (docs/design.md, section 17): PRT_CANCEL_PENDING from
	 * the first prt_cancel until the fiber's own prt_cancel_clear.
	 * Set (seq_cst) under @lock by any thread, so a fiber that looks
	 * under @lock before it sleeps and a canceller that looks at the
	 * hooks below under @lock after it set this never miss each other;
	 * read by the fiber at each blocking call.
	 */
	atomic_uint cancel;
	bool rq_any;                      /* counted in rq.nr_any; rq lock */
	bool rq_donor;                    /* counted in rq.nr_donor (blocked_on when queued); rq lock */
	/*
	 * Queued by a preemption: it resumes only on that worker (compiled
	 * code may hold a thread-local address in a register), so no thief,
	 * proxy or migration takes it. Set under the rq lock as it is
	 * queued, cleared by the fiber itself once it runs again (both
	 * PRT_WRITE_ONCE: the dump reads it without the lock).
	 */
	bool preempted;
	uint8_t kind;                     /* PRT_FK_* */
	/* Affinity: allowed workers; aff_all when every worker is allowed. */
	atomic_bool aff_all;
	/*
	 * The switch away from this fiber takes prt__finish_switch, not its
	 * inline common case (switch.h): its stack has a canary to check
	 * (set at spawn), or it ended (set by fiber_exit). One byte on the
	 * line a switch writes anyway, for two tests on two other lines (W1:
	 * 3 instructions a yield). Written by the fiber itself.
	 */
	bool finish_slow;
	/*
	 * @name holds a name (not ""): a spawn with none clears it only
	 * then, so that line of the descriptor stays unwritten (W2).
	 */
	bool named;
	struct prt_runtime *rt;
	struct prt__worker *last_worker;  /* where it last ran; owner-written */
	/* Worker whose run queue holds the fiber, or NULL; written under that rq lock. */
	_Atomic(struct prt__worker *) rq_worker;
	/*
	 * Mutex it waits on, or NULL (invariant 5: NULL while it runs
	 * normally). Set by the fiber under the mutex's wait_lock, cleared by
	 * the handoff under it; read by chain walks (seq_cst, see mutex_owner.c).
	 */
	_Atomic(struct prt__mutex *) blocked_on;
	/*
	 * Donors attached while this fiber sleeps (linked by their rq_node),
	 * re-queued with it when it wakes; @attached_to is the sleeping owner
	 * a donor is attached to. Both under the owner's @lock.
	 */
	struct prt__list donors;
	/*
	 * The cancel hooks: what a cancel must end while the fiber sleeps.
	 * @cancel_wait: a cancellable wait (wait.c), ended as a timeout;
	 * with @cancel_io, an I/O request that worker holds, which only it
	 * may end (io.c, prt__io_cancel_post). @cancel_sleep: prt_sleep_*,
	 * the worker whose heap holds its timer (sched.c). Set under @lock
	 * as the fiber goes to sleep, cleared under @lock when it is made
	 * runnable (prt__wake, prt__wake_here_locked): so a canceller that
	 * finds one under @lock finds the fiber still asleep in that wait.
	 */
	struct prt__wait *cancel_wait;
	struct prt__worker *cancel_io;
	struct prt__worker *cancel_sleep;
	/*
	 * Link in a worker's run queue level (prt__rq_level(&rq_worker->rq, rq_prio))
	 * while RUNNABLE; protected by that worker's rq lock.
	 */
	struct prt__list rq_node;
	_Atomic uint64_t aff[PRT_MAX_WORKERS / 64];
	struct prt__stack stack;
	void *(*fn)(void *);
	/* Saved stack pointer while switched out; written only by the switch. */
	void *sp;
	/*
	 * 1 while the fiber's stack is in use by a worker: set by the worker
	 * switching to it, cleared (release) by whatever runs next on that
	 * worker once the switch away has finished (invariant 3). A worker
	 * about to run the fiber waits (acquire) for 0.
	 */
	atomic_uint on_cpu;
	/*
	 * prt_preempt_disable() depth: never preempted while > 0. Written by
	 * the fiber itself, read by the preemption handler on its worker
	 * thread (relaxed; the same thread, ordered by signal fences).
	 */
	atomic_uint preempt_count;
	/*
	 * The C++ runtime's exception state while the fiber is switched out
	 * (switch.h, prt__cxa_switch): its caught exceptions and its count
	 * of exceptions in flight, which the C++ runtime keeps per thread.
	 * Empty at spawn. Written and read by the switch only.
	 */
	struct prt__cxa_eh cxa_eh;
	void *arg;
	void *result;                     /* set by the fiber itself before DEAD */
	/* Handle check: equal to the handle's id while the fiber exists, 0 when FREE. */
	_Atomic uint64_t id;
	/*
	 * Mutexes it holds (a recursive one counts once) and rwlock holds
	 * (each read hold once): its owner token is in that many owner words
	 * or reader slots, at most. Written only by the fiber itself (relaxed:
	 * one writer; its signal handler sets the top bit, PRT_HELD_SLICE_OWED),
	 * read once it is DEAD, by prt__fiber_free.
	 */
	atomic_uint nheld;
	/*
	 * The mutex this fiber took last and still holds, or NULL: set as
	 * it takes one (mutex.c, take_free; prt__mutex_held: a slow path, a
	 * handoff), cleared by the unlock of that one (prt_mutex_unlock).
	 * So it names a mutex held, whose memory stays valid: a signal
	 * that finds its condvar's mutex here reads that mutex's spinners
	 * (cond.c, "Spinning waiters"). Only the fiber itself uses it.
	 */
	struct prt__mutex *last_held;
	/*
	 * The condvar this fiber spins on (cond.c, "Spinning waiters"), with
	 * its state in the low bits (PRT_CSPIN_*), or 0: written by the fiber
	 * itself, and by a signal or destroy that pins it (PRT_CSPIN_PIN,
	 * under the condvar's lock) to read its mutex, @cspin_m, which the
	 * pin keeps alive (the fiber cannot return from its wait meanwhile).
	 */
	_Atomic uintptr_t cspin;
	_Atomic(struct prt__mutex *) cspin_m;
	/*
	 * Of those, rwlock read holds that no slot of their rwlock records
	 * (rwlock.c, "Tracking readers"). Written only by the fiber itself
	 * (and reset with nheld when a destroyed runtime's descriptors go
	 * back to the process: prt__fiber_chunks_release); 0 whenever nheld
	 * is, so a reused descriptor starts at 0.
	 */
	atomic_uint rd_untracked;
	/*
	 * Ended holding mutexes, and joined or reaped: the descriptor is kept
	 * (never reused, so the owner words name nobody else) and handles to
	 * it are stale, but dumps still show it, DEAD, with its id.
	 */
	atomic_bool kept;
	struct prt__wait *joiner;         /* who waits in prt_join; lock */
	bool detached;                    /* lock */
	bool reap;                        /* DEAD and detached: free after the switch away; lock */
	/* prt_park's wait, its state the permit (prt__wait_park); lock */
	struct prt__wait park;
	/* prt_waitgroup_spawn: the group its end counts done in, or NULL; the fiber's own. */
	void *wg;
	struct prt__fiber *free_next;     /* on a descriptor free list */
	struct prt__fiber *batch_next;    /* next batch in rt->desc_depot (batch heads only) */
	void *asan_fake_stack;            /* ASan fake-stack handle across switches */
	void *tsan_fiber;                 /* TSan's fiber for this context (TSan builds) */
	struct prt__mwaiter *mwait;       /* its waiter record while blocked_on; wait_lock */
	/* Waits begun (blocked_on set), for the deadlock walk's second look (mutex_owner.c). */
	atomic_uint wait_gen;
	/*
	 * The condvar it waits on and its record there, from before it joins
	 * the condvar's list until its wait returns (so both stay valid while
	 * @lock is held and @wait_cond is set): for prt__cond_reprio. Written
	 * by the fiber itself; lock.
	 */
	struct prt__cond *wait_cond;
	struct prt__mwaiter *cwait;
	_Atomic(struct prt__fiber *) attached_to;
	/*
	 * Its timer, armed in timer_w's heap (timer_w->iotimers if
	 * @timer_io, else timer_w->timers); timer_w's rq lock.
	 */
	struct prt__timer timer;
	/* The wait its timer ends (prt__wait_timer_fire); set before arming it. */
	struct prt__wait *timed_wait;
	struct prt__worker *timer_w;      /* written by the fiber itself */
	bool timer_io;                    /* written by the fiber itself */
	/* The request its local I/O timer ends (its worker's own): an epoll wait, a timed file call on io_uring. */
	struct prt__ioreq *ioreq;
	/*
	 * What it waits for while BLOCKED (PRT_WK_*), on what (@wait_obj: a
	 * mutex, condvar, fiber or a string) and @wait_arg (an fd, a
	 * deadline): for prt_runtime_dump() only. Written by the fiber
	 * itself before it blocks, read without a lock.
	 */
	atomic_int wait_kind;
	_Atomic(const void *) wait_obj;
	_Atomic int64_t wait_arg;
	char name[PRT_NAME_MAX];
} prt__cacheline_aligned;

/* What a cross-core wake touches stays in the descriptor's first two lines (see its top). */
#define PRT__WAKE_LINES(field) \
	_Static_assert(offsetof(struct prt__fiber, field) + sizeof(((struct prt__fiber *)0)->field) <= 128, \
		       #field " must stay in the first two lines")
PRT__WAKE_LINES(lock);
PRT__WAKE_LINES(state);
PRT__WAKE_LINES(prio);
PRT__WAKE_LINES(rq_prio);
PRT__WAKE_LINES(steal_mark);
PRT__WAKE_LINES(aff_all);
PRT__WAKE_LINES(rt);
PRT__WAKE_LINES(last_worker);
PRT__WAKE_LINES(rq_worker);
PRT__WAKE_LINES(blocked_on);
PRT__WAKE_LINES(donors);
PRT__WAKE_LINES(cancel_wait);
PRT__WAKE_LINES(cancel_sleep);
PRT__WAKE_LINES(rq_node);
_Static_assert(_Alignof(struct prt__fiber) == 64, "descriptors start on a cache line");

/* prt__fiber.wait_kind */
enum {
	PRT_WK_NONE = 0,
	PRT_WK_JOIN,    /* obj: the fiber joined */
	PRT_WK_PARK,
	PRT_WK_SLEEP,   /* arg: deadline (ns, CLOCK_MONOTONIC) */
	PRT_WK_MUTEX,   /* obj: the mutex (asleep until handed the lock) */
	PRT_WK_COND,    /* obj: the condvar */
	PRT_WK_IO,      /* obj: the op's name, arg: the fd */
	PRT_WK_OFFLOAD, /* obj: the function */
	PRT_WK_SEM,     /* obj: the semaphore */
	PRT_WK_WAITGROUP, /* obj: the wait group */
};

/* prt__fiber.cancel */
#define PRT_CANCEL_PENDING 1u

/* Is a cancel of @f pending? (The fiber itself, or under f->lock.) */
static inline bool prt__cancel_pending(struct prt__fiber *f)
{
	/* relaxed: sticky, and only @f clears it; the hooks' protocol uses f->lock */
	return atomic_load_explicit(&f->cancel, memory_order_relaxed) != 0;
}

/* @f (f->lock held) is made runnable: no cancel hook names its wait any more. */
static inline void prt__cancel_unhook(struct prt__fiber *f)
{
	f->cancel_wait = NULL;
	f->cancel_sleep = NULL;
}

/* Record what the calling fiber @f is about to wait for (dumps only). */
static inline void prt__set_wait(struct prt__fiber *f, int kind, const void *obj, int64_t arg)
{
	atomic_store_explicit(&f->wait_kind, kind, memory_order_relaxed);
	atomic_store_explicit(&f->wait_obj, obj, memory_order_relaxed);
	atomic_store_explicit(&f->wait_arg, arg, memory_order_relaxed);
}

static inline bool prt__fiber_allowed(const struct prt__fiber *f, int worker_index)
{
	/* acquire: the words stored before it (fiber.c, affinity_store); a plain load on x86-64 */
	if (prt__likely(atomic_load_explicit(&f->aff_all, memory_order_acquire)))
		return true;
	return (atomic_load_explicit(&f->aff[worker_index / 64], memory_order_relaxed) >>
		(worker_index % 64)) & 1;
}

/* Entry of every fiber (ctx trampoline target). */
void prt__fiber_entry(void *from, void *data);


#endif
