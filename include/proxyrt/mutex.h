/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_MUTEX_H
#define PROXYRT_MUTEX_H

/*
 * Fiber mutex with proxy execution, shaped like pthread_mutex_t.
 *
 * Replacing pthread_mutex_t: prt_mutex_t has fixed-size storage, a static
 * initializer (all-zero storage is a valid unlocked mutex of the default
 * type), and the calls return what pthreads returns: 0, EBUSY, EPERM,
 * EDEADLK, ETIMEDOUT, EINVAL (positive values, as pthreads does, not
 * -errno).
 *
 *   pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;  ->  prt_mutex_t m = PRT_MUTEX_INITIALIZER;
 *   pthread_mutex_lock(&m)                          ->  prt_mutex_lock(&m)
 *   pthread_mutex_trylock / timedlock / unlock / init / destroy
 *                                                   ->  prt_mutex_trylock / timedlock / unlock / ...
 *   pthread_cond_wait / timedwait / signal / ...    ->  prt_cond_wait / timedwait / signal / ...
 *   pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE) -> prt_mutexattr_settype(&a, PRT_MUTEX_RECURSIVE)
 *
 * Proxy execution: a fiber that blocks on a held mutex stays in its run
 * queue. When the scheduler picks it, the owner runs in its place with
 * the waiter's priority but on the workers its own affinity allows
 * (following chains of owners blocked on other mutexes; moving the
 * waiter to the owner's worker when the owner runs elsewhere; attaching
 * it to an owner that sleeps). Unlock hands the lock to the waiter the
 * worker serves, else to the highest-priority waiter, FIFO within a
 * level: no fiber takes the lock ahead of a higher-priority waiter.
 * (So within a level the order is first come, first served except for
 * the waiter whose place the owner runs in at the unlock, which goes
 * first: its worker is running for it already.)
 * Between equals the lock may instead be released for the next comer
 * (as Go's and the kernel's mutexes do, to avoid lock convoys); a waiter
 * that has waited 1 ms is always handed it.
 *
 * Plain threads may lock the same mutex: they sleep on a futex and take
 * part in handoff (as priority PRT_PRIO_DEFAULT waiters) but cannot
 * donate their priority. Deadlocks are detected: a lock that would
 * close a cycle of owners and waiters returns EDEADLK at once.
 *
 * Priority changes: prt_fiber_set_priority() on a waiting fiber (queued
 * for the owner, asleep, timed, on a condvar or moved from one to the
 * mutex) moves it to its new place in every waiter list, as the
 * kernel's rt_mutex_adjust_prio_chain does; the next handoff or signal
 * goes by the priorities of that moment.
 *
 * An owner that ends holding a mutex (a fiber returns or calls
 * prt_exit, a plain thread exits) leaves it locked for good: POSIX's
 * default robustness, PTHREAD_MUTEX_STALLED, as glibc gives it. Nobody
 * else ever owns it: unlock returns EPERM, trylock EBUSY, lock waits for
 * ever (timedlock until its deadline), also for a fiber or thread that
 * reuses the ended one's memory; there is no cycle to report. The ended
 * fiber's descriptor (a few hundred bytes) is kept while its runtime
 * lives, and shows in prt_runtime_dump() as "state=dead holding=N".
 * That also happens to a fiber that frees or re-initialises a mutex it
 * holds. Using a mutex held by a fiber of a destroyed runtime is
 * undefined.
 *
 * Not supported: robust (EOWNERDEAD) and process-shared mutexes,
 * priority ceilings. A mutex must not be destroyed or freed while fibers
 * or threads wait on it (as with pthreads).
 */

#include <time.h>

#include <proxyrt/common.h>
#include <proxyrt/fiber.h>

PRT_EXTERN_C_BEGIN

#define PRT_MUTEX_SIZE 40

typedef union prt_mutex {
	char __size[PRT_MUTEX_SIZE];
	uint64_t __align;
} prt_mutex_t;

/* All-zero: unlocked, PRT_MUTEX_DEFAULT type, the runtime's proxy setting. */
#define PRT_MUTEX_INITIALIZER { { 0 } }

/* Mutex types, as pthreads'. */
enum {
	PRT_MUTEX_NORMAL = 0,
	PRT_MUTEX_ERRORCHECK = 1,
	PRT_MUTEX_RECURSIVE = 2,
	PRT_MUTEX_DEFAULT = PRT_MUTEX_NORMAL,
};

/* Proxy execution setting of a mutex. */
enum {
	/* Follow the runtime's setting of the locking fiber (on unless PRT_RT_NO_PROXY). */
	PRT_MUTEX_PROXY_DEFAULT = 0,
	PRT_MUTEX_PROXY_ON = 1,
	/* Waiters sleep in priority order, as in a conventional fiber mutex. */
	PRT_MUTEX_PROXY_OFF = 2,
};

typedef struct prt_mutexattr {
	int type;  /* PRT_MUTEX_NORMAL, _ERRORCHECK, _RECURSIVE */
	int proxy; /* PRT_MUTEX_PROXY_* */
	int __reserved[2]; /* private: the name given to prt_mutexattr_setname */
} prt_mutexattr_t;

/* Attribute calls return 0 or EINVAL. Context: any thread, never switch. */
PRT_API int prt_mutexattr_init(prt_mutexattr_t *attr);
PRT_API int prt_mutexattr_destroy(prt_mutexattr_t *attr);
PRT_API int prt_mutexattr_settype(prt_mutexattr_t *attr, int type);
PRT_API int prt_mutexattr_gettype(const prt_mutexattr_t *attr, int *type);
PRT_API int prt_mutexattr_setproxy(prt_mutexattr_t *attr, int proxy);
PRT_API int prt_mutexattr_getproxy(const prt_mutexattr_t *attr, int *proxy);

/*
 * A name for the mutexes initialised with @attr, shown by
 * prt_runtime_dump() on the lines of the fibers that wait for them and
 * in the wait chains through them. @attr keeps the pointer only:
 * @name must stay valid until the last prt_mutex_init() with @attr,
 * which copies it (at most PRT_NAME_MAX - 1 bytes; longer names are
 * cut, as fiber names are). "" means no name, as after
 * prt_mutexattr_init(). Returns 0, or EINVAL for a NULL @attr or @name
 * (nothing changed). No pthreads counterpart (glibc names threads,
 * pthread_setname_np, but not mutexes).
 * Context: any thread, never switches.
 */
PRT_API int prt_mutexattr_setname(prt_mutexattr_t *attr, const char *name);
/*
 * The name pointer @attr holds (NULL or "" for none) in *@name.
 * Returns 0 or EINVAL (NULL @attr or @name). Context: any thread, never
 * switches.
 */
PRT_API int prt_mutexattr_getname(const prt_mutexattr_t *attr, const char **name);

/*
 * Initialise @m with @attr (NULL = defaults). A name in @attr is copied
 * into a process-wide table keyed by @m's address (prt_mutex_t has no
 * room for it); without one, a name a mutex at that address had before
 * (one freed without prt_mutex_destroy) is forgotten. A mutex set up by
 * PRT_MUTEX_INITIALIZER alone has no name. Returns 0, EINVAL (NULL @m,
 * a bad type or proxy setting in @attr) or ENOMEM (no memory to keep
 * the name); @m is not touched on error.
 * Context: any thread, never switches.
 */
PRT_API int prt_mutex_init(prt_mutex_t *m, const prt_mutexattr_t *attr);

/*
 * Destroy @m, and forget its name. Returns 0, EBUSY if it is locked,
 * has waiters, or a condvar waiter spins in its wait with it (prt_cond_t
 * below; @m is then left as it was, name included), EINVAL for
 * NULL. A named mutex whose memory is freed or reused without this call
 * leaves its name in the table (a few dozen bytes) until a prt_mutex_init
 * at that address. Context: any thread, never switches.
 */
PRT_API int prt_mutex_destroy(prt_mutex_t *m);

/*
 * Lock @m, waiting if another holds it. Returns 0; EDEADLK if the caller
 * already holds it (normal and errorcheck types) or if waiting would
 * close a cycle of fibers/threads each waiting for a mutex the next one
 * holds (the caller is then not waiting and every mutex is as it was);
 * EAGAIN if a recursive mutex's count would overflow; EINVAL for NULL;
 * ENOMEM if a plain thread's first lock finds no memory for its owner
 * identity (a few bytes, kept until the thread ends); ECANCELED if the
 * calling fiber was cancelled (prt_cancel, proxyrt/fiber.h) while it
 * waited or before (not owning @m; a free @m is still taken, 0). Waits
 * for good on a mutex whose owner ended holding it (see above). The
 * timed locks below return ECANCELED the same way.
 * Context: a fiber (a scheduling point when it waits) or a plain thread
 * (sleeps on a futex).
 */
PRT_API int prt_mutex_lock(prt_mutex_t *m);

/*
 * Lock @m if that needs no waiting. Returns 0, EBUSY (held, also by the
 * caller unless recursive), EAGAIN, EINVAL, ENOMEM (as prt_mutex_lock).
 * Context: any thread; never switches.
 */
PRT_API int prt_mutex_trylock(prt_mutex_t *m);

/*
 * As prt_mutex_lock, but give up at @abstime, an absolute CLOCK_REALTIME
 * time (as pthread_mutex_timedlock): returns ETIMEDOUT then, having
 * left the waiter list (a fiber waiting as a donor leaves its queue or
 * the owner it was attached to). The deadline is not looked at if the
 * mutex is free, nor if the caller holds it (EDEADLK, or a recursive
 * mutex's count taken, whatever @abstime: as glibc, POSIX tying EINVAL
 * to a call that would block); otherwise a bad @abstime (NULL, tv_nsec
 * outside [0, 1e9)) is EINVAL. A time already past, negative tv_sec included,
 * gives ETIMEDOUT (as glibc); one too far to represent in 64-bit
 * nanoseconds means "never". @abstime is turned into a CLOCK_MONOTONIC
 * deadline when the call begins: a later step of the wall clock
 * (clock_settime, NTP) does not move it, where POSIX would (every
 * CLOCK_REALTIME time in this library's calls does the same). Also EDEADLK, EAGAIN, ENOMEM (no timer
 * memory, or as prt_mutex_lock).
 * Context: a fiber or a plain thread.
 */
PRT_API int prt_mutex_timedlock(prt_mutex_t *m, const struct timespec *abstime);

/*
 * As prt_mutex_timedlock, but give up @timeout_ns nanoseconds after the
 * call, measured on CLOCK_MONOTONIC (the clock of prt_sleep_until and
 * prt_now_ns, which wall-clock changes do not move): returns ETIMEDOUT
 * then, having left the waiter list. No pthreads counterpart; the
 * closest is pthread_mutex_clocklock with CLOCK_MONOTONIC and an
 * absolute time. A free mutex is taken whatever @timeout_ns. 0 never
 * sleeps or queues (as prt_mutex_trylock, apart from the brief spin any
 * lock makes while the owner runs on another CPU), but a mutex held by
 * another gives ETIMEDOUT rather than EBUSY, and one the caller holds
 * EDEADLK, as prt_mutex_timedlock with a deadline past. A timeout so long that now + @timeout_ns passes 2^64 ns
 * saturates: it never expires (UINT64_MAX means "for ever"), it never
 * wraps into the past. Returns 0, ETIMEDOUT, EDEADLK, EAGAIN, EINVAL
 * (NULL @m), ENOMEM (no timer memory, or as prt_mutex_lock): positive
 * values, as the other mutex calls.
 * Context: a fiber (a scheduling point when it waits) or a plain thread
 * (sleeps on a futex).
 */
PRT_API int prt_mutex_timedlock_ns(prt_mutex_t *m, uint64_t timeout_ns);

/*
 * Unlock @m. Returns 0, EINVAL for NULL, or EPERM if the caller does
 * not hold it (for every type: the check is free; also when its owner
 * ended holding it). A waiter, if any, becomes the owner;
 * if it outranks the caller's (served) priority and waits on this
 * worker, the caller yields to it at once. In a preemptive runtime the
 * unlock that releases the last fiber mutex or rwlock the caller holds
 * also ends a time slice that was extended for it (README,
 * "Preemption"): the caller goes back to its run queue, as at
 * prt_yield(), and may resume on another worker (errno is kept).
 * Context: a fiber (may switch, see above) or a plain thread.
 */
PRT_API int prt_mutex_unlock(prt_mutex_t *m);

/*
 * Condition variable, shaped like pthread_cond_t; works with fibers and
 * plain threads on the same prt_mutex_t. All-zero storage is valid.
 *
 * No thundering herd: signal and broadcast move sleeping waiters onto
 * the mutex's waiter list (requeue, as FUTEX_CMP_REQUEUE) instead of
 * waking them to fight for it; each wakes only when the mutex is handed
 * to it, highest priority first (FIFO within a level). A fiber that
 * waits while another worker is busy and its own has nothing else to
 * run spins first (cfg.wait_spin_ns, README "Scheduling"), at most one
 * per worker, 3 per mutex and 2 per condvar at once (more wait queued):
 * it waits on the mutex's cache line, which a signaller holding the
 * mutex has already, so such a signal writes nothing of the condvar. A
 * signal or broadcast that finds such a spinner wakes it without a
 * requeue, and it takes the mutex back itself, by the mutex's rules
 * (never ahead of a higher-priority waiter queued on it). A
 * signal wakes the spinners (all of them) unless a sleeper ranks at
 * least as high as each of them (their priorities at the signal), and
 * else that sleeper: so the highest-priority waiter goes,
 * and others that go with it see a spurious wakeup, which POSIX allows
 * (wait in a loop on the predicate). A broadcast wakes the spinners and
 * requeues the sleepers; a requeued lower-priority sleeper may then be
 * handed the mutex before a woken spinner asks for it, which then waits
 * for the mutex as any late comer (priority inheritance applies).
 * Waiters of one condvar must use one mutex.
 */
#define PRT_COND_SIZE 48

typedef union prt_cond {
	char __size[PRT_COND_SIZE];
	uint64_t __align;
} prt_cond_t;

#define PRT_COND_INITIALIZER { { 0 } }

/*
 * Condvar attributes, shaped like pthread_condattr_t: only a name for
 * now (no clock or process-shared setting). Zeroed storage is the
 * default. Fields are private.
 */
typedef struct prt_condattr {
	int __reserved[4];
} prt_condattr_t;

/*
 * Attribute calls return 0 or EINVAL (NULL @attr, or NULL @name).
 * prt_condattr_setname: as prt_mutexattr_setname, for the condvars
 * initialised with @attr by prt_cond_init_attr(): @attr keeps the
 * pointer, init copies at most PRT_NAME_MAX - 1 bytes (longer names are
 * cut), "" is no name; the dump shows it on the lines of the fibers that
 * wait on the condvar. prt_condattr_getname: the pointer @attr holds.
 * Context: any thread, never switch.
 */
PRT_API int prt_condattr_init(prt_condattr_t *attr);
PRT_API int prt_condattr_destroy(prt_condattr_t *attr);
PRT_API int prt_condattr_setname(prt_condattr_t *attr, const char *name);
PRT_API int prt_condattr_getname(const prt_condattr_t *attr, const char **name);

/*
 * Initialise @c with @attr (NULL = defaults), as pthread_cond_init. A
 * name is kept as for prt_mutex_init (a process-wide table, forgotten
 * by prt_cond_destroy or by an init without a name at the same
 * address). Returns 0, EINVAL (NULL @c) or ENOMEM (no memory to keep
 * the name; @c is not touched). Context: any thread, never switches.
 */
PRT_API int prt_cond_init_attr(prt_cond_t *c, const prt_condattr_t *attr);
/* prt_cond_init_attr(@c, NULL). Returns 0 or EINVAL (NULL). Context: any thread, never switches. */
PRT_API int prt_cond_init(prt_cond_t *c);
/*
 * Returns 0 (and forgets @c's name), EBUSY if waiters remain (name
 * kept; a fiber spinning in its wait counts), EINVAL. As POSIX allows,
 * it may be called (and the memory reused) right after a broadcast,
 * while the woken waiters still wait for the mutex: they never touch
 * the condvar again. A waiter whose timed wait ended just before the
 * broadcast reached it still unlinks itself, and a spinner the
 * broadcast woke still says in its own descriptor that it spins here
 * until it has left its seat on the mutex; destroy waits for those (a
 * few instructions, as glibc's does). Free or reuse a condvar's memory
 * only after this returned 0 (POSIX leaves anything else undefined).
 * Context: any thread, never switches fibers.
 */
PRT_API int prt_cond_destroy(prt_cond_t *c);

/*
 * Atomically release @m (which the caller holds) and wait until
 * signalled; returns with @m held again. Returns 0, EPERM if the caller
 * does not hold @m, EINVAL for NULL or a second mutex on one condvar
 * while a waiter still waits with the first (POSIX lets a wait say so;
 * once none does, the condvar takes the new one), ECANCELED if the
 * calling fiber was cancelled (prt_cancel), with @m held again as after
 * a timeout (at once, @m never released, if the cancel came first); the
 * timed waits below too. EDEADLK if, after a cancel, taking @m back
 * would close a cycle of owners and waiters (see prt_mutex_lock; the
 * owner of @m waits for a mutex the caller holds): @m is then NOT held,
 * unlike every other return (a review; code ported from pthreads, where
 * a cond wait always returns with the mutex, must check for it).
 * A recursive mutex is released fully and its count restored.
 * Context: a fiber (parks only the fiber) or a plain thread.
 */
PRT_API int prt_cond_wait(prt_cond_t *c, prt_mutex_t *m);

/*
 * As prt_cond_wait, but stop waiting at @abstime (absolute
 * CLOCK_REALTIME): returns ETIMEDOUT, with @m held again. Exactly one of
 * the timeout and a signal wins: a signal that already moved the waiter
 * to the mutex wins (0, even if the deadline passes while it waits for
 * the mutex), and the waiter then never touches @c again. EINVAL for a bad
 * @abstime (NULL, tv_nsec outside [0, 1e9)), without waiting; a time
 * already past times out and one too far to represent never does, as
 * for prt_mutex_timedlock. ENOMEM (no timer memory), also with @m held
 * again. EDEADLK if, after the timeout or a cancel, taking @m back would close a
 * cycle of owners and waiters (see prt_mutex_lock): @m is then not held.
 * Also EPERM and EINVAL as prt_cond_wait.
 * Context: a fiber or a plain thread.
 */
PRT_API int prt_cond_timedwait(prt_cond_t *c, prt_mutex_t *m, const struct timespec *abstime);

/*
 * As prt_cond_timedwait, but stop waiting @timeout_ns nanoseconds from
 * now on CLOCK_MONOTONIC (the clock of prt_sleep_ns; wall-clock changes
 * do not move it): what pthreads code gets from
 * pthread_condattr_setclock(CLOCK_MONOTONIC) and an absolute time on
 * that clock, as prt_mutex_timedlock_ns for a mutex. 0 times out at once
 * (ETIMEDOUT, @m released and taken back) unless a signal came first; a
 * timeout too long for the clock (UINT64_MAX) never expires. Returns
 * and errors as prt_cond_timedwait (0, ETIMEDOUT, ECANCELED, ENOMEM,
 * EDEADLK with @m not held, EPERM, EINVAL).
 * Context: a fiber or a plain thread.
 */
PRT_API int prt_cond_timedwait_ns(prt_cond_t *c, prt_mutex_t *m, uint64_t timeout_ns);

/*
 * Wake one waiter (the highest-priority, longest-waiting; spinning
 * waiters may wake with it, see above) / all of them.
 * Returns 0 or EINVAL. May be called with or without the mutex held.
 * Context: any thread; never switches.
 */
PRT_API int prt_cond_signal(prt_cond_t *c);
PRT_API int prt_cond_broadcast(prt_cond_t *c);

/*
 * Introspection: what a fiber waits for. Link k says: the fiber (for
 * k == 0, @f; else link k-1's owner) waits on @mutex, held by @owner
 * (a fiber; one that ended holding it has a stale handle, with its id),
 * or by a plain thread (@owner_is_thread), or by nobody at
 * the moment of reading (released; owner.p == NULL). The walk stops at
 * an owner that waits on no mutex, after @max links, or where it comes
 * back to @f (a cycle: the last owner is @f).
 *
 * @kind says what @mutex is: PRT_WAIT_LINK_MUTEX, or an rwlock
 * (proxyrt/rwlock.h; @mutex is then its address, a prt_rwlock_t *)
 * held for writing (PRT_WAIT_LINK_RWLOCK_WR: @owner is the writer) or
 * for reading (PRT_WAIT_LINK_RWLOCK_RD: @owner is one tracked reader,
 * the first blocked on a lock if any, through which the walk goes on;
 * owner.p == NULL and !owner_is_thread if no reader is tracked).
 */
enum {
	PRT_WAIT_LINK_MUTEX = 0,
	PRT_WAIT_LINK_RWLOCK_WR = 1,
	PRT_WAIT_LINK_RWLOCK_RD = 2,
};

typedef struct prt_wait_link {
	prt_mutex_t *mutex;
	prt_fiber_t owner;
	int owner_is_thread;
	int kind; /* PRT_WAIT_LINK_* */
} prt_wait_link_t;

/*
 * Fill @out with up to @max links of @f's wait chain (see above).
 * Returns the number of links (0: @f waits on no mutex), -EINVAL (NULL
 * @out with @max > 0, negative @max), -ESRCH (stale handle). A snapshot
 * taken without stopping anything: links may be out of date as soon as
 * it returns; it is meant for dumps and watchdogs.
 * Context: any thread, never switches.
 */
PRT_API int prt_fiber_wait_chain(prt_fiber_t f, prt_wait_link_t *out, int max);

PRT_EXTERN_C_END

#endif
