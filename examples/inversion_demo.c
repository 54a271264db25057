/* SPDX-License-Identifier: MIT */
/*
 * The main demo: priority inversion, and what preemption and proxy
 * execution each do about it.
 *
 * One worker (one CPU). Every 10 ms a low-priority fiber L takes a mutex
 * for 1 ms of work; 200 us in, three medium fibers wake for 2 ms of CPU
 * work each; 500 us in, a high-priority fiber H wants the mutex. The work
 * never calls the runtime. Three runs:
 *   - preemptive, proxy execution: the Ms interrupt L, H interrupts the
 *     Ms; H's pick runs L in H's place, at H's priority, so L finishes
 *     its last 0.8 ms and hands the mutex to H.
 *   - preemptive, plain fiber mutex: the same, but blocked H does not run
 *     L, so H waits for all the medium work (inversion).
 *   - cooperative, proxy execution: nothing interrupts anything, so the
 *     Ms wait for L's section and H waits for whatever runs when it
 *     comes due.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inversion.h"

enum { RUN_PROXY, RUN_PLAIN, RUN_COOP, NRUNS };

static const char *const run_name[NRUNS] = {
	"proxy execution",
	"plain fiber mutex",
	"proxy, cooperative",
};

static void row(const char *name, struct inv_result *r, int n)
{
	double wake = inv_pct(r->wake, n, 99);
	double lock50 = inv_pct(r->lock, n, 50), lock99 = inv_pct(r->lock, n, 99);
	double resp50 = inv_pct(r->resp, n, 50), resp99 = inv_pct(r->resp, n, 99);

	printf("  %-20s %7.0f %9.0f %7.0f %9.0f %7.0f %11llu %11llu\n", name, wake, lock50, lock99,
	       resp50, resp99, (unsigned long long)r->stats.preemptions,
	       (unsigned long long)r->stats.proxy_picks);
}

/*
 * Is a runtime with @quantum preemptive here? 1, 0 (then *@why says why,
 * if the runtime said), or a negative error.
 */
static int probe_preemptive(uint64_t quantum, char *why, size_t len)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	const char *notice;
	int err, yes;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = quantum;
	if ((err = prt_runtime_create(&rt, &cfg)))
		return err;
	yes = prt_runtime_preemptive(rt, NULL) == 1;
	notice = prt_runtime_notice(rt);
	snprintf(why, len, "%s", notice && !yes ? notice : "");
	prt_runtime_destroy(rt);
	return yes;
}

static int run(struct inv_params *p, int v, struct inv_result *r)
{
	int err;

	p->rt_flags = v == RUN_PLAIN ? PRT_RT_NO_PROXY : 0;
	p->quantum_ns = v == RUN_COOP ? 0 : PRT_PREEMPT_QUANTUM_DEFAULT;
	if ((err = inv_run(p, r)))
		fprintf(stderr, "inversion_demo: %s\n", prt_strerror(err));
	return err;
}

static void explain(const struct inv_params *p, struct inv_result *r)
{
	int n = p->samples;
	double proxy_lock = inv_pct(r[RUN_PROXY].lock, n, 50) / 1e3;
	double plain_lock = inv_pct(r[RUN_PLAIN].lock, n, 50) / 1e3;
	double coop_resp = inv_pct(r[RUN_COOP].resp, n, 50) / 1e3;
	double late = inv_pct(r[RUN_PROXY].wake, n, 99) / 1e3;
	double late_plain = inv_pct(r[RUN_PLAIN].wake, n, 99) / 1e3;

	if (late_plain > late)
		late = late_plain;
	printf("\n  woken: from H's due time to H running (p99); lock: from H's lock call to\n"
	       "  holding the mutex; resp: from the due time to holding it.\n");
	if (!inv_effect_shown(p, r[RUN_PROXY].lock, r[RUN_PLAIN].lock, n)) {
		printf("  These runs were disturbed: H was woken up to %.1f ms after its due time\n"
		       "  (p99), and the plain mutex's lock wait (%.1f ms) is not above proxy\n"
		       "  execution's (%.1f ms) by the medium fibers' work. The worker thread waited\n"
		       "  for its CPU (is the machine busy?), so the figures show the machine, not\n"
		       "  the runtime. On an idle CPU proxy execution holds H's wait to the rest of\n"
		       "  L's section (under %d ms) and a plain mutex adds the medium fibers' %d ms\n"
		       "  (priority inversion). Run it again on an idle machine.\n",
		       late, plain_lock, proxy_lock, p->hold_us / 1000, p->nmed * p->mburst_us / 1000);
		return;
	}
	printf("  Preemptive, the Ms interrupt L inside its critical section, and H interrupts\n"
	       "  the Ms as soon as it is due. With proxy execution H's pick then runs L in\n"
	       "  H's place, at H's priority: H waits only for the rest of L's section\n"
	       "  (%.1f ms). With a plain mutex blocked H lends L nothing: H waits for the\n"
	       "  medium fibers' %d ms as well (%.1f ms: priority inversion).\n"
	       "  Cooperative, nothing interrupts anything: the Ms wait for L's section, and\n"
	       "  H is not even woken until the fiber running when it came due stops. Here\n"
	       "  that is L (H holds the mutex %.1f ms after its due time); had an M been\n"
	       "  running, H would have waited for the rest of its %d ms burst.\n",
	       proxy_lock, p->nmed * p->mburst_us / 1000, plain_lock, coop_resp,
	       p->mburst_us / 1000);
}

/* SAMPLES: a whole number in range, or -1 (atoi() ran "5x" as 5). */
static int parse_samples(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > INT_MAX - INV_WARM) /* 2147483642 */
		return -1;
	return (int)v;
}

int main(int argc, char **argv)
{
	struct inv_params p = {
		.samples = 100,
		.period_us = 10000, .hold_us = 1000, .nmed = 3,
		.mburst_us = 2000, .moff_us = 200, .hoff_us = 500, .yield_every_us = 0,
	};
	struct inv_result r[NRUNS];
	const char *bad = NULL;
	char why[512];
	uint64_t q;
	int pre;

	if (argc > 2)
		bad = "one argument at most";
	else if (argc == 2 && (p.samples = parse_samples(argv[1])) < 0)
		bad = "SAMPLES must be a whole number from 1 to 2147483642";
	else
		bad = inv_params_check(&p);
	if (bad) {
		fprintf(stderr, "inversion_demo: %s\nusage: inversion_demo [SAMPLES]\n", bad);
		return 2;
	}
	memset(r, 0, sizeof(r));
	if ((pre = probe_preemptive(PRT_PREEMPT_QUANTUM_DEFAULT, why, sizeof(why))) < 0) {
		fprintf(stderr, "inversion_demo: %s\n", prt_strerror(pre));
		return 1;
	}
	printf("proxyrt: priority inversion, %d periods of 10 ms on one worker\n", p.samples);
	printf("  L (low) holds a mutex for 1 ms; 3 x M (medium) burn 2 ms each; H (high) wants\n"
	       "  the mutex. Their work never calls the runtime.\n\n");
	if (!pre) {
		printf("  The runtime is not preemptive here, so nothing interrupts the work: L's\n"
		       "  section always ends before the Ms or H run, and there is no inversion\n"
		       "  for proxy execution to undo. Nothing to show. The runtime says:\n"
		       "    %s\n",
		       why[0] ? why : "(nothing: is PRT_PREEMPT_QUANTUM_NS 0?)");
		return 0;
	}
	for (int v = 0; v < NRUNS; v++)
		if (run(&p, v, &r[v]))
			return 1;
	/* The environment may have changed the time slice of the preemptive runs. */
	q = r[RUN_PROXY].quantum_ns;
	printf("  H's delays (us)        woken  lock p50     p99  resp p50     p99 preemptions "
	       "proxy-picks\n");
	for (int v = 0; v < NRUNS; v++)
		row(run_name[v], &r[v], p.samples);
	printf("  (time slice %llu us; the cooperative run has none)\n",
	       (unsigned long long)(q / 1000));
	explain(&p, r);
	for (int v = 0; v < NRUNS; v++) {
		free(r[v].lock);
		free(r[v].resp);
		free(r[v].wake);
	}
	return 0;
}
