/* SPDX-License-Identifier: MIT */
/*
 * Deadlines (deadline.h): the clock, and converting the pthread timed
 * calls' absolute CLOCK_REALTIME timespec to a CLOCK_MONOTONIC deadline.
 * (prt_now_ns, a preemption safe point, is preempt.c's.)
 */
#include "deadline.h"
#include "platform.h"

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

