/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_RWLOCK_H
#define PROXYRT_RWLOCK_H

/*
 * Read-write lock with proxy execution, shaped like pthread_rwlock_t.
 * Usable from fibers and plain threads alike (one lock may have both as
 * holders and waiters). The calls return 0 or a positive errno value,
 * as pthreads and prt_mutex_* do.
 *
 *   pthread_rwlock_t l = PTHREAD_RWLOCK_INITIALIZER;  ->  prt_rwlock_t l = PRT_RWLOCK_INITIALIZER;
 *   pthread_rwlock_rdlock / wrlock / tryrdlock / trywrlock / timedrdlock /
 *   timedwrlock / unlock / init / destroy             ->  prt_rwlock_rdlock / ...
 *
 * Fairness (docs/design.md, section 18). Waiters queue in one list,
 * highest priority first, FIFO within a level, and the lock is handed
 * over directly (no barging):
 *
 *   - a reader joins a lock held for reading only if no waiter of its
 *     priority or higher is queued; so a stream of readers cannot starve
 *     a writer of their priority or higher (writer preference). A queued
 *     reader that a priority change (prt_fiber_set_priority) puts ahead
 *     of every queued writer joins then, as do the readers ahead of it;
 *     so do the readers a writer that gives up (timeout, cancel) leaves
 *     first;
 *   - when a holder leaves, the first waiter gets the lock: a writer
 *     alone, or, if it is a reader, every queued reader of the first
 *     queued writer's priority or higher, together (phase-fair within a
 *     level, as the kernel's rwsem hands a read phase to all its
 *     waiting readers): a steady stream of writers cannot starve
 *     readers either. Writers and read phases of one level alternate.
 *
 * Cancellation (proxyrt/fiber.h, prt_cancel): a fiber's rdlock, wrlock
 * and timed locks return ECANCELED, without the lock, when cancelled
 * while they wait or when a cancel is pending and they would wait; a
 * lock they can take at once is taken. Plain threads are not cancelled.
 *
 * So no one waits behind a waiter of lower priority. A high-priority
 * reader that arrives while a lower-priority writer waits joins the
 * readers at once; one that arrives while the lock is held for writing
 * waits, and is handed the lock before lower writers. Across levels
 * priority rules, as for the mutex and the run queue: a stream of
 * higher-priority lockers can keep a lower one waiting.
 *
 * Proxy execution. A waiter stays in its run queue; when the scheduler
 * picks it, a holder runs in its place at its priority (see
 * proxyrt/mutex.h):
 *
 *   - behind a writer: the writer, as for a mutex's owner, following
 *     chains through mutexes and rwlocks;
 *   - behind readers (a writer, or a reader queued behind a writer): one
 *     reader, the best placed: a runnable one this worker may run
 *     (highest priority first), else one blocked on another lock (its
 *     chain is followed), else one running elsewhere (the waiter moves
 *     to its worker), else a sleeping one (the waiter is queued again
 *     when it wakes). Run until it reaches a scheduling point, the
 *     reader gives the waiter back, and the next pick runs a reader
 *     again: the waiter's priority serves every reader in turn, one at
 *     a time, and none is boosted. Readers are known through
 *     PRT_RWLOCK_TRACKED slots: the first that many read holds at any
 *     moment; a reader beyond them, or a plain thread, cannot be run,
 *     and a waiter whose readers are all such sleeps until handed the
 *     lock. PRT_RWLOCK_PROXY_OFF: waiters sleep in priority order.
 *
 * Deadlocks are detected where the holders are known: a lock that would
 * close a cycle through mutex owners, rwlock writers and tracked readers
 * returns EDEADLK at once. Also EDEADLK: wrlock by a tracked reader of
 * the lock (an upgrade, which could never be granted), and rdlock or
 * wrlock by its writer.
 *
 * Recursive read locks: a reader may take the read lock again (as POSIX
 * allows), and always gets it at once, even while writers wait (the
 * writer preference above would otherwise deadlock it, as glibc's
 * PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP does). A fiber or thread
 * that holds a read lock no slot records may be admitted ahead of
 * waiting writers for any rwlock that has such holds too (it cannot be
 * told apart from a recursive reader); it cannot get EDEADLK for an upgrade of such a
 * hold, which then waits for good (as pthreads may).
 *
 * A holder that ends holding the lock leaves it held for good, as a
 * mutex (proxyrt/mutex.h): its read or write hold is never released.
 * Not supported: process-shared rwlocks, pthread's reader/writer
 * preference kinds (there is one policy, above). An rwlock must not be
 * destroyed or freed while held or waited on.
 */

#include <stdint.h>
#include <time.h>

#include <proxyrt/common.h>
#include <proxyrt/mutex.h>

PRT_EXTERN_C_BEGIN

#define PRT_RWLOCK_SIZE 128
/* Read holds an rwlock records, which proxy execution and deadlock detection see. */
#define PRT_RWLOCK_TRACKED 8

typedef union prt_rwlock {
	char __size[PRT_RWLOCK_SIZE];
	uint64_t __align;
} prt_rwlock_t;

/* All-zero: unlocked, the runtime's proxy setting, no name. */
#define PRT_RWLOCK_INITIALIZER { { 0 } }

/* Proxy execution setting of an rwlock: as the mutex's (PRT_MUTEX_PROXY_*). */
enum {
	PRT_RWLOCK_PROXY_DEFAULT = PRT_MUTEX_PROXY_DEFAULT,
	PRT_RWLOCK_PROXY_ON = PRT_MUTEX_PROXY_ON,
	PRT_RWLOCK_PROXY_OFF = PRT_MUTEX_PROXY_OFF,
};

typedef struct prt_rwlockattr {
	int proxy;         /* PRT_RWLOCK_PROXY_* */
	int __reserved[3]; /* private: the name given to prt_rwlockattr_setname */
} prt_rwlockattr_t;

/*
 * Attribute calls, as pthread_rwlockattr_*: return 0 or EINVAL (NULL
 * @attr or out pointer, a proxy value not PRT_RWLOCK_PROXY_*; nothing
 * changed). prt_rwlockattr_setname: as prt_mutexattr_setname (@attr
 * keeps the pointer, init copies at most PRT_NAME_MAX - 1 bytes, "" is
 * no name), for the dump's fiber and chain lines. Context: any thread,
 * never switch.
 */
PRT_API int prt_rwlockattr_init(prt_rwlockattr_t *attr);
PRT_API int prt_rwlockattr_destroy(prt_rwlockattr_t *attr);
PRT_API int prt_rwlockattr_setproxy(prt_rwlockattr_t *attr, int proxy);
PRT_API int prt_rwlockattr_getproxy(const prt_rwlockattr_t *attr, int *proxy);
PRT_API int prt_rwlockattr_setname(prt_rwlockattr_t *attr, const char *name);
PRT_API int prt_rwlockattr_getname(const prt_rwlockattr_t *attr, const char **name);

/*
 * Initialise @rw with @attr (NULL = defaults), as pthread_rwlock_init.
 * A name is kept as for prt_mutex_init (a process-wide table keyed by
 * address and kind, forgotten by destroy or an init without a name).
 * Returns 0, EINVAL (NULL @rw, a bad proxy setting) or ENOMEM (no memory
 * for the name); @rw is not touched on error. Context: any thread,
 * never switches.
 */
PRT_API int prt_rwlock_init(prt_rwlock_t *rw, const prt_rwlockattr_t *attr);

/*
 * Destroy @rw and forget its name. Returns 0, EBUSY if it is held (for
 * reading or writing) or waited on (then nothing changed), EINVAL for
 * NULL. As POSIX allows, it may be called as soon as no thread or fiber
 * holds or waits for @rw, even while an unlock call that let the last
 * waiters in has not yet returned: it then waits (spinning, never
 * blocking: that unlock does not block) until that call is done with
 * @rw, so the storage may be freed on return. Context: any thread,
 * never switches.
 */
PRT_API int prt_rwlock_destroy(prt_rwlock_t *rw);

/*
 * Take @rw for reading, waiting while a writer holds it or a waiter of
 * the caller's priority or higher is queued (see "Fairness"; a caller
 * that already reads it never waits). Returns 0; EDEADLK if the caller
 * holds it for writing, or if waiting would close a cycle (the caller
 * then does not wait and nothing changed); EAGAIN if the count of
 * readers would overflow; EINVAL for NULL; ENOMEM if a plain thread's
 * first lock finds no memory for its identity.
 * Context: a fiber (a scheduling point when it waits) or a plain thread
 * (sleeps on a futex).
 */
PRT_API int prt_rwlock_rdlock(prt_rwlock_t *rw);

/*
 * Take @rw for writing, waiting until no one holds it and no waiter
 * queued ahead (higher priority, or earlier at the same one) remains.
 * Returns 0; EDEADLK if the caller holds it (for writing, or for reading
 * in a tracked slot: see above) or if waiting would close a cycle;
 * EINVAL; ENOMEM (as prt_rwlock_rdlock).
 * Context: as prt_rwlock_rdlock.
 */
PRT_API int prt_rwlock_wrlock(prt_rwlock_t *rw);

/*
 * As prt_rwlock_rdlock / wrlock, without waiting: EBUSY where those
 * would wait, and where they would return EDEADLK for a lock the caller
 * holds (as pthreads); also EAGAIN, EINVAL, ENOMEM. Context: any
 * thread; never switches.
 */
PRT_API int prt_rwlock_tryrdlock(prt_rwlock_t *rw);
PRT_API int prt_rwlock_trywrlock(prt_rwlock_t *rw);

/*
 * As prt_rwlock_rdlock / wrlock, but give up at @abstime, an absolute
 * CLOCK_REALTIME time (as pthread_rwlock_timedrdlock): ETIMEDOUT then,
 * having left the waiter list. The deadline is not looked at if the lock
 * is taken at once; otherwise a bad @abstime (NULL, tv_nsec outside
 * [0, 1e9)) is EINVAL, a time past gives ETIMEDOUT, one too far to
 * represent never expires (as prt_mutex_timedlock). Also EDEADLK,
 * EAGAIN, ENOMEM (no timer memory, or as rdlock).
 * Context: as prt_rwlock_rdlock.
 */
PRT_API int prt_rwlock_timedrdlock(prt_rwlock_t *rw, const struct timespec *abstime);
PRT_API int prt_rwlock_timedwrlock(prt_rwlock_t *rw, const struct timespec *abstime);

/*
 * As the timed calls, but give up @timeout_ns nanoseconds after the
 * call, on CLOCK_MONOTONIC (as prt_mutex_timedlock_ns: 0 never queues
 * and gives ETIMEDOUT where trylock gives EBUSY; a timeout whose
 * deadline would pass 2^64 ns never expires). No pthreads counterpart.
 * Returns as the timed calls, with EINVAL only for a NULL @rw.
 * Context: as prt_rwlock_rdlock.
 */
PRT_API int prt_rwlock_timedrdlock_ns(prt_rwlock_t *rw, uint64_t timeout_ns);
PRT_API int prt_rwlock_timedwrlock_ns(prt_rwlock_t *rw, uint64_t timeout_ns);

/*
 * Release the caller's hold of @rw: its write hold, or one of its read
 * holds. Returns 0, EINVAL for NULL, or EPERM if the caller does not
 * hold it (for writing, and for reading as far as can be known: a
 * read hold beyond the PRT_RWLOCK_TRACKED slots is counted, not named,
 * so a caller that has such a hold of any rwlock is believed for a lock
 * that has such holds too; releasing one it does not have then takes
 * another reader's hold, and exclusion with that reader is lost, as
 * with any unlock of a lock one does not hold). The last holder
 * hands the lock to the waiters (see "Fairness"); if one that now holds
 * it outranks the caller's (served) priority and is queued on this
 * worker, the caller yields to it at once. The release of the caller's
 * last fiber mutex or rwlock hold may also end a time slice extended
 * for it, as prt_mutex_unlock says.
 * Context: a fiber (may switch, see above) or a plain thread.
 */
PRT_API int prt_rwlock_unlock(prt_rwlock_t *rw);

PRT_EXTERN_C_END

#endif
