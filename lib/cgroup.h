/* SPDX-License-Identifier: MIT */
#ifndef PRT_CGROUP_H
#define PRT_CGROUP_H

/*
 * The CPU bandwidth limit of the process's cgroup (cgroup v2 cpu.max,
 * v1 cpu.cfs_quota_us / cpu.cfs_period_us): the CPU time per period
 * the kernel lets the cgroup's threads run, however many CPUs they may
 * use. A container's "--cpus=2" is such a limit. topology.c sizes the
 * default worker count by it (README, "Workers and CPUs"), as Go 1.25
 * does for GOMAXPROCS and the JVM for its processor count.
 */

#include <stdint.h>

struct prt__cpu_limit {
	uint64_t quota_us;  /* CPU time per period, us (the tightest level's) */
	uint64_t period_us; /* the period, us */
	unsigned cpus;	    /* quota / period rounded up, >= 1, saturated at 65535 */
	char where[160];    /* the file the limit came from (for the notice), maybe cut */
};

/*
 * Find the tightest CPU bandwidth limit over the process's cgroup and
 * its ancestors that are visible (the kernel enforces every level's),
 * in the v1 "cpu" hierarchy and in the v2 one. @root stands for "/" in
 * every path read ("" on the real system; a directory laid out as one
 * in the tests): @root/proc/self/cgroup, @root/proc/self/mountinfo and
 * the cgroup directories under @root.
 *
 * Returns 1 and fills @out when a limit applies, 0 when none does
 * ("max" or -1 at every level, no cpu controller, files missing or not
 * understood), -ENAMETOOLONG for a @root that leaves no room for the
 * paths. Nothing is allocated. Context: any thread; blocking file reads.
 */
int prt__cgroup_cpu_limit(const char *root, struct prt__cpu_limit *out);

#endif
