/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_SEM_H
#define PROXYRT_SEM_H

/*
 * Counting semaphore, shaped like POSIX sem_t (sem_init, sem_wait,
 * sem_trywait, sem_timedwait, sem_post, sem_getvalue, sem_destroy),
 * for fibers and plain threads alike (one semaphore may have both as
 * waiters). The calls return 0 or a positive errno value, as the
 * pthread-shaped mutex calls do (POSIX's sem_* return -1 and set errno
 * instead).
 *
 * A semaphore has no owner: whoever posts need not be whoever waited.
 * So there is no priority inheritance and no proxy execution for it (a
 * waiter cannot know whose post it waits for), and no deadlock
 * detection. What it does give: a post goes straight to the waiter it
 * wakes (the unit is handed over, not left for whoever comes next), and
 * waiters are woken highest priority first, FIFO within a level (as
 * POSIX asks for sem_post under SCHED_FIFO), by the priority each had
 * when it began to wait: prt_fiber_set_priority() does not move a
 * semaphore's waiter (it does a mutex's, condvar's or rwlock's). A plain thread
 * waits at PRT_PRIO_DEFAULT.
 *
 * All-zero storage is a valid semaphore with the value 0
 * (PRT_SEM_INITIALIZER).
 */

#include <stdint.h>
#include <time.h>

#include <proxyrt/common.h>

PRT_EXTERN_C_BEGIN

#define PRT_SEM_SIZE 32

typedef union prt_sem {
	char __size[PRT_SEM_SIZE];
	uint64_t __align;
} prt_sem_t;

#define PRT_SEM_INITIALIZER { { 0 } }
/* The largest value a semaphore holds (POSIX's SEM_VALUE_MAX). */
#define PRT_SEM_VALUE_MAX 0x7fffffffu

/*
 * Set @s's value to @value. Returns 0, or EINVAL (@s NULL, @value above
 * PRT_SEM_VALUE_MAX). Context: any thread, never switches.
 */
PRT_API int prt_sem_init(prt_sem_t *s, unsigned value);
/*
 * Destroy @s. Returns 0, EBUSY (someone waits on it, queued or
 * spinning for a post: nothing changed; a waiter a post has already
 * handed its unit to no longer counts, and never touches @s again),
 * or EINVAL (NULL). Using @s afterwards is undefined (debug builds
 * report it), as for sem_destroy. Context: any thread, never switches.
 */
PRT_API int prt_sem_destroy(prt_sem_t *s);
/*
 * Take one unit of @s, waiting while its value is 0. Returns 0, EINVAL
 * (NULL), or ECANCELED (the calling fiber was cancelled, prt_cancel: no
 * unit taken; the timed waits below too). A fiber may first spin for
 * a post for up to cfg.wait_spin_ns (proxyrt/runtime.h: default 4 us,
 * only while another worker is busy, its own has nothing else to do,
 * and nobody else waits on @s); it counts as waiting (prt_sem_destroy
 * says EBUSY).
 * Context: a fiber (parks only the fiber: a scheduling point when it
 * waits; one that finds a count returns without one) or a plain thread
 * (sleeps on a futex).
 */
PRT_API int prt_sem_wait(prt_sem_t *s);
/* Take one unit if the value is above 0: 0, EAGAIN (it is 0), EINVAL. Never switches. */
PRT_API int prt_sem_trywait(prt_sem_t *s);
/*
 * prt_sem_wait until the absolute CLOCK_REALTIME time @abstime (as
 * sem_timedwait). Returns 0, ETIMEDOUT (no unit taken), or EINVAL (NULL,
 * or tv_nsec outside [0, 1e9)); a time already past only tries, as
 * POSIX says. ENOMEM if no memory for the fiber's timer (no unit
 * taken). Context: as prt_sem_wait.
 */
PRT_API int prt_sem_timedwait(prt_sem_t *s, const struct timespec *abstime);
/*
 * prt_sem_wait for at most @timeout_ns ns on CLOCK_MONOTONIC (0 only
 * tries; a timeout too large to add to the clock never expires).
 * Returns as prt_sem_timedwait. Context: as prt_sem_wait.
 */
PRT_API int prt_sem_timedwait_ns(prt_sem_t *s, uint64_t timeout_ns);
/*
 * Give one unit: to the first waiter (highest priority, then the
 * longest waiting), which is woken, else to the value (with nobody
 * waiting, one compare-and-swap and no lock). Returns 0,
 * EOVERFLOW (the value is PRT_SEM_VALUE_MAX: nothing changed), or
 * EINVAL. Context: any thread; never switches (a woken fiber runs at
 * its worker's next scheduling point).
 */
PRT_API int prt_sem_post(prt_sem_t *s);
/*
 * The value of @s into @*value (0 while fibers or threads wait: POSIX
 * allows either 0 or minus the number of waiters, and we say 0).
 * Returns 0 or EINVAL. Context: any thread, never switches.
 */
PRT_API int prt_sem_getvalue(prt_sem_t *s, int *value);

PRT_EXTERN_C_END

#endif
