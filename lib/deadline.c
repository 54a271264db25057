/* SPDX-License-Identifier: MIT */
/*
 * Deadlines (deadline.h): the clock, and converting the pthread timed
 * calls' absolute CLOCK_REALTIME timespec to a CLOCK_MONOTONIC deadline.
 */
#include <proxyrt/fiber.h> /* prt_now_ns */

#include "deadline.h"
#include "platform.h"
#include "sched_int.h"
#include "worker.h"

uint64_t prt__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

bool prt__abstime_to_mono(const struct timespec *ts, uint64_t *deadline)
{
	struct timespec now;
	uint64_t sec, rel;

	if (!ts || ts->tv_nsec < 0 || ts->tv_nsec >= 1000000000L)
		return false;
	clock_gettime(CLOCK_REALTIME, &now);
	if (ts->tv_sec < now.tv_sec || (ts->tv_sec == now.tv_sec && ts->tv_nsec <= now.tv_nsec)) {
		*deadline = 1; /* already past (0 would mean no deadline) */
		return true;
	}
	/* Both non-negative here: no signed overflow in the difference. */
	sec = (uint64_t)ts->tv_sec - (uint64_t)now.tv_sec;
	if (sec >= PRT_NEVER / PRT_NS_PER_SEC) {
		*deadline = PRT_NEVER;
		return true;
	}
	rel = sec * PRT_NS_PER_SEC + (uint64_t)ts->tv_nsec - (uint64_t)now.tv_nsec;
	*deadline = prt__add_sat(prt__now_ns(), rel);
	return true;
}

/*
 * A runtime call that never switches otherwise (prt_now_ns) honours an
 * interrupt deferred while the fiber ran in the library or libc (the
 * README's "at the fiber's next call into the runtime"): a fiber that loops on
 * such a call spends nearly all its time there, and every retry landed
 * there too (two reviews: a priority-31 fiber waited 0.3-2+ s behind a
 * loop on prt_now_ns). The slow half (preempt.c) checks it is safe.
 */
static inline void preempt_safe_point(void)
{
	struct prt__worker *w = prt__cur_worker();

	/* relaxed: this thread's handler sets the bits; preempt_eval takes them */
	if (prt__unlikely(w && (atomic_load_explicit(&w->pw.events, memory_order_relaxed) &
				PRT_PEV_PENDING_ALL)))
		prt__preempt_safe_point_slow(w);
}

PRT_API uint64_t prt_now_ns(void)
{
	uint64_t t = prt__now_ns();

	preempt_safe_point(); /* a fiber may switch here */
	return t;
}
