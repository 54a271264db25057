/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_WAITGROUP_H
#define PROXYRT_WAITGROUP_H

/*
 * Wait group, as Go's sync.WaitGroup: a counter of work still running
 * and a list of those waiting for it to reach 0. A server counts each
 * connection fiber in (prt_waitgroup_add, or prt_waitgroup_spawn),
 * each one counts itself out as it ends (prt_waitgroup_done), and the
 * fiber that shuts down waits for 0 (prt_waitgroup_wait) after it
 * cancelled them (prt_cancel): a clean stop without destroying the
 * runtime. For fibers and plain threads alike (one group may have both
 * as waiters). The calls return 0 or a positive errno value, as
 * proxyrt/sem.h's do.
 *
 * Where Go panics (the counter below 0), prt_waitgroup_add returns
 * EINVAL and changes nothing. As in Go, a group may be reused once its
 * waiters have returned; an add that takes the counter from 0 up while
 * another thread waits for 0 races with that wait (either sees it).
 *
 * All-zero storage is a valid group with the counter at 0
 * (PRT_WAITGROUP_INITIALIZER).
 */

#include <stdint.h>

#include <proxyrt/common.h>
#include <proxyrt/fiber.h>

PRT_EXTERN_C_BEGIN

#define PRT_WAITGROUP_SIZE 32

typedef union prt_waitgroup {
	char __size[PRT_WAITGROUP_SIZE];
	uint64_t __align;
} prt_waitgroup_t;

#define PRT_WAITGROUP_INITIALIZER { { 0 } }
/* The largest counter a group holds. */
#define PRT_WAITGROUP_MAX 0x7fffffff

/* Set @wg's counter to 0. Returns 0 or EINVAL (NULL). Context: any thread, never switches. */
PRT_API int prt_waitgroup_init(prt_waitgroup_t *wg);
/*
 * Destroy @wg. Returns 0, EBUSY (someone waits: nothing changed; a
 * waiter the counter's reaching 0 already woke no longer counts, and
 * never touches @wg again) or EINVAL (NULL). Context: any thread,
 * never switches.
 */
PRT_API int prt_waitgroup_destroy(prt_waitgroup_t *wg);
/*
 * Add @delta (may be negative) to the counter. When it reaches 0 every
 * waiter is woken. Returns 0, EINVAL (NULL, or the counter would go
 * below 0: nothing changed) or EOVERFLOW (above PRT_WAITGROUP_MAX:
 * nothing changed). Context: any thread, never switches (a woken fiber
 * runs at its worker's next scheduling point).
 */
PRT_API int prt_waitgroup_add(prt_waitgroup_t *wg, int delta);
/* prt_waitgroup_add(@wg, -1). */
PRT_API int prt_waitgroup_done(prt_waitgroup_t *wg);
/*
 * Wait until the counter is 0 (at once if it is). Returns 0, EINVAL
 * (NULL) or ECANCELED (the calling fiber was cancelled: prt_cancel; a
 * counter at 0 returns 0 even then). Context: a fiber (a scheduling
 * point) or a plain thread (sleeps on a futex).
 */
PRT_API int prt_waitgroup_wait(prt_waitgroup_t *wg);
/*
 * prt_waitgroup_wait for at most @timeout_ns ns on CLOCK_MONOTONIC (0
 * only looks). Returns as prt_waitgroup_wait, or ETIMEDOUT, or ENOMEM
 * (no memory for the fiber's timer). Context: as prt_waitgroup_wait.
 */
PRT_API int prt_waitgroup_timedwait_ns(prt_waitgroup_t *wg, uint64_t timeout_ns);
/*
 * prt_spawn (same arguments and returns, proxyrt/fiber.h) of a fiber
 * counted in @wg: the counter goes up by one before the spawn (and back
 * if it fails), and the fiber counts itself done when it ends (returns
 * from @fn or calls prt_exit). -EINVAL also for a NULL @wg, -EOVERFLOW
 * if the counter is full. Context: as prt_spawn.
 */
PRT_API int prt_waitgroup_spawn(prt_waitgroup_t *wg, prt_runtime_t *rt, prt_fiber_t *out,
				const prt_fiber_attr_t *attr, void *(*fn)(void *), void *arg);

PRT_EXTERN_C_END

#endif
