/* SPDX-License-Identifier: MIT */
/*
 * Deadlines: arithmetic on CLOCK_MONOTONIC nanoseconds that saturates
 * instead of wrapping. A deadline is a uint64_t count of ns; 0 means
 * "no deadline" where a call takes one optionally, and PRT_NEVER (the
 * saturated value, some 584 years after boot) is a deadline that never
 * comes. Every deadline computed from a relative timeout or an absolute
 * timespec goes through here.
 */
#ifndef PRT_DEADLINE_H
#define PRT_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define PRT_NEVER UINT64_MAX
#define PRT_NS_PER_SEC UINT64_C(1000000000)

/* CLOCK_MONOTONIC in ns (deadline.c). */
uint64_t prt__now_ns(void);

/* @a + @b, saturating at PRT_NEVER. */
static inline uint64_t prt__add_sat(uint64_t a, uint64_t b)
{
	return a > PRT_NEVER - b ? PRT_NEVER : a + b;
}

/* The deadline @ns from now (PRT_NEVER if it does not fit). */
static inline uint64_t prt__deadline_in(uint64_t ns)
{
	return prt__add_sat(prt__now_ns(), ns);
}

/* Relative @ns as a timespec (tv_sec fits: at most ~1.8e10 s). */
static inline struct timespec prt__ns_to_timespec(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / PRT_NS_PER_SEC), (long)(ns % PRT_NS_PER_SEC) };

	return ts;
}

/*
 * Absolute CLOCK_REALTIME @ts as a CLOCK_MONOTONIC deadline (the
 * pthread timed calls' clock). False for a tv_nsec outside [0, 1e9),
 * the only EINVAL pthreads gives; a time already past (negative
 * tv_sec included) gives 1, a deadline that has passed; one too far to
 * represent gives PRT_NEVER.
 */
bool prt__abstime_to_mono(const struct timespec *ts, uint64_t *deadline);

#endif
