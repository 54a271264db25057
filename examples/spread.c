// SPDX-License-Identifier: MIT
/*
 * spread: where proxyrt puts its workers and how CPU-bound fibers spread
 * over them.
 *
 * Starts a runtime with the default configuration (one worker per core of
 * the allowed CPUs), prints each worker's placement and steal order, runs
 * 64 busy fibers that yield between slices of work, and records on which
 * worker every slice ran. Once a quarter of the work is done it spawns a
 * few high-priority fibers and prints the order in which all fibers
 * finished: the high ones overtake the busy ones already queued.
 *
 *   ./spread                 one worker per core
 *   taskset -c 0 ./spread    a single worker
 */

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <proxyrt/proxyrt.h>

#define NBUSY 64
#define NHIGH 4
#define NSLICES 20
#define SLICE_US 200		/* 64 x 20 x 200 us = 256 ms of work in all */
#define HIGH_PRIO (PRT_PRIO_DEFAULT + 8)
#define HIGH_AFTER_PCT 25		/* spawn the high ones after this much work */
#define SHOW_WORKERS 16		/* at most this many rows per table */
#define SHOW_STEAL 8		/* at most this many entries of a steal order */

struct job {
	int high;			/* 1 for a high-priority fiber */
	short where[NSLICES];		/* worker index of each slice */
	int finish;			/* position in the finish order, from 0 */
};

static struct job jobs[NBUSY + NHIGH];
static atomic_int slices_done;
static atomic_int finished;

static void check(int err, const char *what)
{
	if (err < 0) {
		fprintf(stderr, "spread: %s: %s\n", what, prt_strerror(err));
		exit(1);
	}
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Keep the CPU busy for @us microseconds of wall time. */
static void busy(double us)
{
	double end = now_us() + us;

	while (now_us() < end)
		;
}

static void *job_body(void *arg)
{
	struct job *j = arg;

	for (int s = 0; s < NSLICES; s++) {
		j->where[s] = (short)prt_worker_index();
		busy(SLICE_US);
		atomic_fetch_add_explicit(&slices_done, 1, memory_order_relaxed);
		check(prt_yield(), "prt_yield");
	}
	j->finish = atomic_fetch_add_explicit(&finished, 1, memory_order_relaxed);
	return NULL;
}

static void spawn_jobs(prt_runtime_t *rt, prt_fiber_t *f, int first, int count, int prio)
{
	prt_fiber_attr_t attr;

	prt_fiber_attr_init(&attr);
	attr.priority = prio;
	for (int i = first; i < first + count; i++) {
		jobs[i].high = prio != PRT_PRIO_DEFAULT;
		check(prt_spawn(rt, &f[i], &attr, job_body, &jobs[i]), "prt_spawn");
	}
}

static void print_placement(prt_runtime_t *rt, int nw)
{
	int order[SHOW_STEAL];

	printf("worker  PU core numa pinned  steal order\n");
	for (int w = 0; w < nw && w < SHOW_WORKERS; w++) {
		prt_worker_info_t info;
		int n;

		check(prt_runtime_worker_info(rt, w, &info), "prt_runtime_worker_info");
		n = prt_runtime_steal_order(rt, w, order, SHOW_STEAL);
		check(n, "prt_runtime_steal_order");
		printf("%6d %3d %4d %4d %6s  ", w, info.pu_os_index, info.core_index,
		       info.numa_index, info.pinned ? "yes" : "no");
		for (int i = 0; i < n && i < SHOW_STEAL; i++)
			printf("%s%d", i ? "," : "", order[i]);
		printf("%s\n", n == 0 ? "(none: only worker)" : n > SHOW_STEAL ? ",..." : "");
	}
	if (nw > SHOW_WORKERS)
		printf("  ... %d more workers\n", nw - SHOW_WORKERS);
}

static void print_spread(prt_runtime_t *rt, int nw)
{
	int migrated = 0;

	printf("\nworker  fibers  slices  switches  steals  parks  fibers_run\n");
	for (int w = 0; w < nw && w < SHOW_WORKERS; w++) {
		prt_worker_stats_t st;
		int fibers = 0, slices = 0;

		for (int i = 0; i < NBUSY + NHIGH; i++) {
			int here = 0;

			for (int s = 0; s < NSLICES; s++)
				here += jobs[i].where[s] == w;
			fibers += here > 0;
			slices += here;
		}
		check(prt_worker_stats(rt, w, &st), "prt_worker_stats");
		printf("%6d  %6d  %6d  %8llu  %6llu  %5llu  %10llu\n", w, fibers, slices,
		       (unsigned long long)st.switches, (unsigned long long)st.steals,
		       (unsigned long long)st.parks, (unsigned long long)st.fibers_run);
	}
	for (int i = 0; i < NBUSY + NHIGH; i++)
		for (int s = 1; s < NSLICES; s++)
			if (jobs[i].where[s] != jobs[i].where[0]) {
				migrated++;
				break;
			}
	printf("(fibers: with at least one slice there; %d of %d ran on more than one worker)\n",
	       migrated, NBUSY + NHIGH);
}

static void print_finish_order(void)
{
	char line[NBUSY + NHIGH + 1];
	int last_high = 0;

	for (int i = 0; i < NBUSY + NHIGH; i++) {
		line[jobs[i].finish] = jobs[i].high ? 'H' : '.';
		if (jobs[i].high && jobs[i].finish + 1 > last_high)
			last_high = jobs[i].finish + 1;
	}
	line[NBUSY + NHIGH] = '\0';
	printf("\nfinish order (H = priority %d, spawned after %d%% of the work; "
	       ". = priority %d):\n  %s\n", HIGH_PRIO, HIGH_AFTER_PCT, PRT_PRIO_DEFAULT, line);
	printf("the last high-priority fiber finished %d of %d\n", last_high, NBUSY + NHIGH);
}

int main(void)
{
	struct timespec tick = { 0, 100000 };	/* 100 us */
	prt_fiber_t f[NBUSY + NHIGH];
	prt_runtime_t *rt;
	const char *notice;
	int nw;

	printf("spread: %d busy fibers (%d x %d us slices, prt_yield between) on one "
	       "worker per core; then %d high-priority ones.\n\n", NBUSY, NSLICES, SLICE_US, NHIGH);
	check(prt_runtime_create(&rt, NULL), "prt_runtime_create");
	nw = prt_runtime_nworkers(rt);
	check(nw, "prt_runtime_nworkers");
	notice = prt_runtime_notice(rt);
	printf("%d worker(s)%s%s\n", nw, notice ? "; notice: " : "", notice ? notice : "");
	print_placement(rt, nw);

	spawn_jobs(rt, f, 0, NBUSY, PRT_PRIO_DEFAULT);
	while (atomic_load_explicit(&slices_done, memory_order_relaxed) <
	       NBUSY * NSLICES * HIGH_AFTER_PCT / 100)
		nanosleep(&tick, NULL);
	spawn_jobs(rt, f, NBUSY, NHIGH, HIGH_PRIO);
	for (int i = 0; i < NBUSY + NHIGH; i++)
		check(prt_join(f[i], NULL), "prt_join");

	print_spread(rt, nw);
	print_finish_order();
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	return 0;
}
