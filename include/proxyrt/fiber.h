/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_FIBER_H
#define PROXYRT_FIBER_H

#include <proxyrt/common.h>
#include <proxyrt/runtime.h>

PRT_EXTERN_C_BEGIN

/*
 * Priorities: PRT_PRIO_LEVELS fixed levels, higher runs first; FIFO
 * within a level.
 *
 * Strict priority: at each scheduling point a worker runs the
 * highest-priority fiber of its run queue, so a lower level runs only
 * when no higher level is runnable on that worker. There is no aging
 * (as SCHED_FIFO between Linux real-time threads); fibers of one level
 * share a worker in time slices (as SCHED_RR), a fiber that wakes
 * interrupts a lower one (preemption: prt_runtime_config_t's
 * preempt_quantum_ns; in a cooperative runtime a running fiber keeps
 * its worker until its next scheduling point), and prt_yield() lets
 * only the same or higher levels run. Idle workers steal queued fibers, highest first.
 * A lower-level fiber therefore starves while higher-level fibers stay
 * runnable on its worker. What to do about it (the README's
 * "Scheduling" says more): give work that must progress the same level
 * as the busy work; have busy fibers wait (I/O, condvar, sleep) rather
 * than only yield; raise a starved fiber's priority for a while with
 * prt_fiber_set_priority(); keep it on a worker of its own by affinity;
 * or run the work through prt_offload() or on a plain thread. A mutex
 * owner that a higher fiber waits for runs at the waiter's priority
 * (proxy execution, proxyrt/mutex.h): the waiter is not held up by the
 * levels between them.
 */
#define PRT_PRIO_LEVELS 32
#define PRT_PRIO_MIN 0
#define PRT_PRIO_MAX (PRT_PRIO_LEVELS - 1)
#define PRT_PRIO_DEFAULT 16

/*
 * Longest fiber name kept, terminating NUL included; longer names are
 * cut, at a UTF-8 character boundary.
 */
#define PRT_NAME_MAX 24

struct prt__fiber;

/*
 * A fiber handle, passed by value like pthread_t. It names one fiber
 * for that fiber's life: fiber descriptors are reused but never freed
 * (a destroyed runtime's go to the next runtime), and the handle
 * carries the fiber's id, unique in the process, so a handle to a fiber
 * that was joined (or detached and finished), or whose runtime was
 * destroyed, is recognised as stale (-ESRCH) instead of touching
 * another fiber. Treat the fields as private.
 */
typedef struct prt_fiber {
	struct prt__fiber *p;
	uint64_t id;
} prt_fiber_t;

/* Flags of prt_fiber_attr_t.flags. */
enum {
	/* Start the fiber detached: nobody joins it; freed when it ends. */
	PRT_FIBER_DETACHED = 1u << 0,
};

/*
 * Fiber attributes. Initialise with prt_fiber_attr_init(); more fields
 * may be added at the end.
 */
typedef struct prt_fiber_attr {
	unsigned size;      /* sizeof(prt_fiber_attr_t); set by _init */
	unsigned flags;     /* PRT_FIBER_* */
	int priority;       /* PRT_PRIO_MIN..PRT_PRIO_MAX; default PRT_PRIO_DEFAULT; strict (above) */
	size_t stack_size;  /* bytes, rounded up to pages; 0 = the runtime's default; too big to map: -ENOMEM */
	const char *name;   /* copied; NULL = no name */
	/* Workers the fiber may run on; used only if has_affinity is set. */
	int has_affinity;
	prt_workerset_t affinity;
} prt_fiber_attr_t;

/* Fill @attr with the defaults. Context: any thread, never switches. */
PRT_API void prt_fiber_attr_init(prt_fiber_attr_t *attr);

/*
 * Start fn(arg) as a new fiber of @rt with @attr (NULL = defaults). The
 * fiber is queued at the tail of its priority level, on the calling
 * worker if the caller is a fiber of @rt allowed there, else on an
 * allowed worker; an idle worker is woken to take it if one is parked
 * (it takes it after the steal grace, cfg.steal_grace_ns, if the caller's
 * worker has not run it by then). The caller keeps running.
 *
 * Returns 0 and sets *@out (which may be NULL for a detached fiber), or:
 * -EINVAL for a NULL or destroyed @rt, a NULL @fn, an @attr not set up
 * by prt_fiber_attr_init or with unknown flags, a priority out of range, a stack size
 * below PRT_STACK_SIZE_MIN, an affinity that names no worker or names
 * an index >= the number of workers, or a NULL @out for a joinable
 * fiber; -ENOMEM (memory or mappings exhausted); -ESHUTDOWN if @rt is
 * being destroyed (from outside @rt: its own fibers may still spawn).
 * Nothing is created on failure. A spawn from outside @rt that returns 0
 * has its fiber run before a racing prt_runtime_destroy returns.
 * Context: any thread; never switches.
 */
PRT_API int prt_spawn(prt_runtime_t *rt, prt_fiber_t *out, const prt_fiber_attr_t *attr,
		      void *(*fn)(void *), void *arg);

/*
 * Wait for fiber @f to finish, store its result (its return value or
 * prt_exit's argument) in *@result if not NULL, and free it.
 *
 * Returns 0, -EDEADLK if @f is the caller, -EINVAL if @f is detached or
 * another caller is already joining it, -ESRCH if @f was already joined
 * or is otherwise stale (its runtime destroyed, or being destroyed with
 * @f finished: destroy reaps it).
 * Context: a fiber (parks only the fiber: a scheduling point) or a plain
 * thread (blocks the thread).
 */
PRT_API int prt_join(prt_fiber_t f, void **result);

/*
 * Make @f detached: its resources are freed when it ends and it cannot
 * be joined. Returns 0, -EINVAL if already detached or being joined,
 * -ESRCH if stale. Context: any thread, never switches.
 */
PRT_API int prt_detach(prt_fiber_t f);

/*
 * End the calling fiber with @result, as if its function had returned
 * it. Nothing on the fiber's stack is unwound; mutexes it holds stay
 * locked for good (see proxyrt/mutex.h). Calling it from a plain
 * thread aborts the process (there is no fiber to end); in a child
 * forked from a fiber it ends the process with status 0 (README,
 * "fork()").
 * Context: a fiber; a scheduling point that never returns.
 */
PRT_API PRT_NORETURN void prt_exit(void *result);

/*
 * Let other fibers of the same or higher priority run: the caller goes
 * to the tail of its level. If a lower priority is all that is queued,
 * the caller keeps running. Once queued, it may be taken by an idle
 * worker its affinity allows, which is woken for it (as Go's
 * runtime.Gosched wakes an idle P).
 * Returns 0, or -EPERM from a plain thread.
 * Context: a fiber; a scheduling point.
 */
PRT_API int prt_yield(void);

/*
 * Keep the calling fiber from being preempted until the matching
 * prt_preempt_enable(); regions nest (a count, as the kernel's
 * preempt_disable). Only preemption is held off: the fiber still
 * switches at its own scheduling points inside the region (a blocking
 * call, prt_yield), and the region goes on when it runs again. A
 * preemption that comes due inside the region happens when it ends.
 * Use it around code that other fibers of the same worker thread must
 * not interleave with: code holding a lock that belongs to the thread
 * (a pthread mutex, a FILE lock, a dl_iterate_phdr callback), or using
 * thread-local state that another fiber on the thread uses too. A time
 * slice extended for a fiber mutex held inside the region (README,
 * "Preemption") ends at prt_preempt_enable(), not at the unlock. A
 * region still open when the fiber returns ends with it. Has no
 * effect in a cooperative runtime. Returns 0, or -EPERM from a plain
 * thread.
 * Context: a fiber; never switches.
 */
PRT_API int prt_preempt_disable(void);

/*
 * End a prt_preempt_disable() region. Returns 0, -EPERM from a plain
 * thread, or -EINVAL if the calling fiber is in no such region.
 * Context: a fiber; switches if the region was the outermost and a
 * preemption came due in it (the caller then goes back to its run queue,
 * as at prt_yield(), and may resume on another worker; errno is kept),
 * unless that was a time slice extended for a fiber mutex or rwlock the
 * caller still holds: that one ends at the unlock.
 */
PRT_API int prt_preempt_enable(void);

/*
 * Never preempt a fiber while it runs code in [@start, @end) (addresses
 * of machine code, @start < @end), in any runtime of the process: an
 * interrupt that lands there is deferred, as in prt_preempt_disable()
 * (see the README, "Preemption", for what is denied without asking).
 * For code that keeps per-thread state or takes a lock that belongs to
 * the thread, when wrapping each call in prt_preempt_disable() is not
 * practical. Only the code in the range is denied, not what it calls:
 * a function it calls, and the PLT stub a call goes through, are
 * preemptible unless denied too (prt_preempt_deny_object() denies a
 * whole library, its PLT included). Lasts until the process ends.
 * Returns 0, -EINVAL (NULL @start or @start >= @end), -ENOSPC
 * (PRT_PREEMPT_DENY_MAX ranges denied already).
 * Context: any thread, never switches.
 */
PRT_API int prt_preempt_deny_range(const void *start, const void *end);

/*
 * Never preempt a fiber while it runs code of the shared object whose
 * file name (without its directory) begins with @name, for example
 * "libfoo.so" (every version) or "libfoo.so.2": loaded now or later
 * (the table of code ranges is made again when the set of loaded objects
 * changes). Lasts until the process ends. Returns 0, -EINVAL (NULL or
 * empty @name, or longer than 63 bytes), -ENOSPC (PRT_PREEMPT_DENY_MAX
 * names denied already).
 * Context: any thread, never switches.
 */
PRT_API int prt_preempt_deny_object(const char *name);

/* How many ranges, and how many object names, the two calls above accept. */
#define PRT_PREEMPT_DENY_MAX 32

/*
 * The calling fiber, or a handle with p == NULL from a plain thread.
 * Context: any thread, never switches.
 */
PRT_API prt_fiber_t prt_self(void);

/* 1 if @a and @b name the same fiber, else 0. */
PRT_API int prt_fiber_equal(prt_fiber_t a, prt_fiber_t b);

/* @f's id: unique in the process, never 0. Also valid on stale handles. */
PRT_API uint64_t prt_fiber_id(prt_fiber_t f);

/*
 * Copy @f's name (possibly empty) into @buf of @len bytes, NUL-terminated
 * and cut to fit. Returns 0, -EINVAL for a NULL @buf or zero @len, -ESRCH
 * if stale. Context: any thread, never switches.
 */
PRT_API int prt_fiber_name(prt_fiber_t f, char *buf, size_t len);

/*
 * Set @f's priority (strict: see "Priorities" above; raising a starved
 * fiber's priority for a while is the way to age it). A queued fiber
 * moves to the tail of its new level (setting the priority it already
 * has changes nothing: it keeps its place);
 * a running one keeps running until its next scheduling point, or, in a
 * preemptive runtime, is preempted if a queued fiber now outranks it
 * (also when it lowers its own priority: within about 50 us,
 * as the kernel reschedules a task whose priority drops). One
 * waiting on a mutex or condvar also moves to the tail of its new level
 * in that waiter list (see proxyrt/mutex.h), which may hand a mutex
 * released to its waiters to a new first waiter; one waiting on an
 * rwlock held for reading that is now ahead of every queued writer (it
 * was raised, or they were lowered) joins the readers, with the other
 * readers ahead of the first writer (proxyrt/rwlock.h), granted by this
 * call; one waiting on a semaphore keeps its place (proxyrt/sem.h).
 * Returns 0, -EINVAL out of range, -ESRCH stale.
 * Context: any thread, never switches.
 */
PRT_API int prt_fiber_set_priority(prt_fiber_t f, int prio);

/* @f's priority (>= 0), or -ESRCH if stale. Context: any thread. */
PRT_API int prt_fiber_get_priority(prt_fiber_t f);

/*
 * Restrict @f to the workers in @set. A queued fiber on a worker outside
 * the set moves to one inside it, except one queued because it was
 * preempted: it resumes where it was interrupted and moves at its next
 * scheduling point (compiled code may hold a thread-local address in a
 * register; README, "Preemption"); a running fiber moves at its next
 * scheduling point (a park or join that returns at once included), or
 * at once if it is the caller (the call is then a scheduling point). Returns 0, -EINVAL if @set is NULL, names no worker or an
 * index >= the number of workers, -ESRCH if stale.
 * Context: any thread; switches only when @f is the caller and must move.
 */
PRT_API int prt_fiber_set_affinity(prt_fiber_t f, const prt_workerset_t *set);

/* Copy @f's affinity into @set. Returns 0, -EINVAL, -ESRCH. Context: any thread. */
PRT_API int prt_fiber_get_affinity(prt_fiber_t f, prt_workerset_t *set);

/*
 * Park the calling fiber until prt_unpark() gives it a permit (like
 * Java's LockSupport): returns at once if a permit is already there,
 * consuming it. May also return after prt_unpark() raced with another
 * wake, so callers re-check their condition. Returns 0, -EPERM from a
 * plain thread, -ECANCELED (prt_cancel; a permit stays for the next
 * park). Context: a fiber; a scheduling point.
 */
PRT_API int prt_park(void);

/*
 * Give @f a park permit, waking it if it is parked. Permits do not add
 * up (at most one). Returns 0 or -ESRCH if stale.
 * Context: any thread, never switches.
 */
PRT_API int prt_unpark(prt_fiber_t f);

/*
 * Cancellation (docs/design.md, section 17). prt_cancel() asks fiber @f
 * to stop waiting: it sets @f's cancel flag, and if @f is blocked in a
 * cancellable call that call returns at once with ECANCELED (-ECANCELED
 * from the calls that return -errno, ECANCELED from the pthread-shaped
 * ones); if it is not blocked, its next such call does. Nothing is
 * unwound: the call returns, and the fiber's own code decides what to
 * do (typically release what it holds and return). Not POSIX's
 * pthread_cancel, which unwinds the thread at a cancellation point.
 *
 * The flag is sticky: it stays set, and every later cancellable call
 * that would wait returns ECANCELED, until the fiber itself calls
 * prt_cancel_clear(). (As Go's context.Done() stays closed: a server
 * loop that swallows one error, or a library that retries, cannot lose
 * the cancel and block again.) Cleanup that must itself wait (take a
 * contended mutex, join a child) calls prt_cancel_clear() first.
 *
 * Cancellable, and what each does when cancelled:
 *   - fiber I/O (prt_read .. prt_connect, their _timeout forms,
 *     prt_poll, prt_read_all/write_all): -ECANCELED at entry, nothing
 *     done; while waiting, the request is cancelled in the kernel
 *     (io_uring IORING_OP_ASYNC_CANCEL, or taken off epoll) and the fd
 *     stays usable. A request that completed first returns its result
 *     (no data is lost); the next call returns -ECANCELED.
 *     prt_close, prt_shutdown and prt_stream_close are not cancellable:
 *     they always release what they release.
 *   - prt_sleep_ns / prt_sleep_until: -ECANCELED (woken early).
 *   - prt_join: -ECANCELED, @f stays joinable; if @f ended meanwhile the
 *     join completes (0). Joining a fiber that already ended never waits,
 *     so it succeeds even when cancelled.
 *   - prt_park: -ECANCELED; a permit is kept (an unpark is never lost).
 *   - prt_mutex_lock / timedlock / timedlock_ns: ECANCELED, not owning
 *     the mutex; the waiter leaves the list exactly as on a timeout (the
 *     owner stops running for it). A free mutex is still taken (0): the
 *     uncontended lock stays one compare-and-swap.
 *   - prt_rwlock_rdlock / wrlock / timed*lock(_ns): as a mutex lock
 *     (ECANCELED without the lock; one it can take at once is taken).
 *   - prt_cond_wait / timedwait: ECANCELED with the mutex held again (as
 *     pthreads' timeout); cancelled before the call: ECANCELED at once,
 *     mutex held throughout. A signal that came first wins (0). EDEADLK,
 *     the mutex NOT held, where taking it back would close a cycle of
 *     owners and waiters (prt_cond_wait).
 *   - prt_sem_wait / timedwait: ECANCELED, no unit taken (a unit a post
 *     handed over first is taken: 0). Units available: taken (0).
 *   - prt_waitgroup_wait / timedwait_ns: ECANCELED.
 *   - prt_offload: -ECANCELED at entry (@fn not run); while waiting,
 *     only the wait ends: @fn runs to its end on its helper thread and
 *     its result is dropped, so @arg must stay valid until @fn returns
 *     (do not point it at the caller's stack).
 *   - prt_stream_recv: -ECANCELED when it would wait (queued data is
 *     returned first).
 *   - file calls (prt_openat .. prt_unlinkat and their _timeout forms,
 *     proxyrt/io.h): -ECANCELED at entry, nothing done. While waiting:
 *     on the offload pool (epoll backend), and on io_uring for a call
 *     with a timeout, the wait ends at once as on a timeout (the outcome
 *     is unknown; an fd an open made is closed by the runtime, a
 *     statx's buffer is not written); on io_uring an untimed call is
 *     cancelled in the kernel as I/O is (a FIFO's open is interrupted;
 *     a sync under way goes on, and its result is returned). prt_socket
 *     never waits, and is made.
 * Exactly one result wins a race between a cancel and the wake: a call
 * returns either its normal result (a lock handed over: 0, owning it)
 * or ECANCELED (not owning it), never both.
 *
 * Returns 0, or -ESRCH if @f is stale or has ended. Cancelling twice is
 * harmless. Plain threads have no handle and are never cancelled.
 * Context: any thread, never switches (not from a signal handler: read
 * signals with a signalfd in a fiber, as the README shows).
 */
PRT_API int prt_cancel(prt_fiber_t f);

/*
 * Is a cancel of the calling fiber pending? 1 or 0; -EPERM from a plain
 * thread. Context: a fiber, never switches.
 */
PRT_API int prt_cancelled(void);

/*
 * Clear the calling fiber's cancel flag (a cancel that races with this
 * may end the next wait). Returns 1 if one was pending, 0 if not, -EPERM
 * from a plain thread. Context: a fiber, never switches.
 */
PRT_API int prt_cancel_clear(void);

/*
 * Sleep the calling fiber until CLOCK_MONOTONIC reaches @deadline_ns, or
 * for @ns nanoseconds. Only the fiber sleeps: its worker runs others, or
 * waits in the kernel until the earliest deadline. A deadline already
 * past is a yield; a @ns so large that now + @ns passes 2^64 saturates:
 * the fiber sleeps for good (UINT64_MAX means "never"). Returns 0,
 * -EPERM from a plain thread, -ENOMEM if the timer could not be recorded.
 * The timer lives on the worker the fiber slept on, which checks it at
 * every scheduling point and, in a preemptive runtime, interrupts a
 * lower-priority fiber that does not yield when it expires; an idle
 * worker also fires it (Go's timer stealing) and runs the sleeper if its
 * affinity allows (another allowed worker takes it after the steal
 * grace, cfg.steal_grace_ns; with a grace of UINT64_MAX, nobody does).
 * In a cooperative runtime a sleeper only that worker may run waits for
 * its next scheduling point.
 * Context: a fiber; a scheduling point.
 */
PRT_API int prt_sleep_until(uint64_t deadline_ns);
PRT_API int prt_sleep_ns(uint64_t ns);

/*
 * CLOCK_MONOTONIC in nanoseconds, the clock of prt_sleep_until.
 * Context: any thread. In a fiber of a preemptive runtime it is a
 * preemption safe point: an interrupt that was deferred because it
 * landed in the library, libc or the vDSO (README, "Preemption") is
 * honoured here, so a fiber may switch inside it (a loop that polls the
 * clock spends nearly all its time in such code). Never a switch inside
 * a prt_preempt_disable() region or a signal handler.
 */
PRT_API uint64_t prt_now_ns(void);

PRT_EXTERN_C_END

#endif
