/* SPDX-License-Identifier: MIT */
/*
 * proxyrt_bench: proxyrt's side of the peer baseline harness
 * (bench/peers/README.md, "Adding proxyrt"). Same command line as the
 * Go peer; one key=value line per result on stdout, diagnostics on stderr.
 *
 *   proxyrt_bench yield N                  W1: 2 fibers x N prt_yield(), 1 worker
 *   proxyrt_bench spawn WORKERS N BATCH    W2: spawn BATCH empty fibers, join them, repeat
 *   proxyrt_bench park N [canary|guard] [STACK_KB]
 *                                          N fibers parked at once: RSS per fiber
 *   proxyrt_bench mutex WORKERS T K IN_NS OUT_NS
 *                                          W3: T fibers x K (lock, IN_NS work, unlock, OUT_NS)
 *
 *   proxyrt_bench inversion SAMPLES PERIOD_US HOLD_US NMED MBURST_US MOFF_US HOFF_US
 *                                          W4: two lines, variant=proxy and variant=noproxy;
 *                                          preemptive (PRT_PREEMPT_QUANTUM_DEFAULT, or
 *                                          $PRT_PREEMPT_QUANTUM_NS; 0 = cooperative), busy
 *                                          work without runtime calls (or yielding every
 *                                          $PRT_YIELD_EVERY_US, if > 0); timer lead 200 us
 *                                          (cfg.timer_lead_ns, or $PRT_TIMER_LEAD_NS)
 *
 *   proxyrt_bench rwinversion SAMPLES PERIOD_US HOLD_US NMED MBURST_US MOFF_US HOFF_US
 *                                          W4rw: W4 with a prt_rwlock_t that L takes for
 *                                          reading and H for writing; two lines,
 *                                          variant=proxy and variant=noproxy, as inversion
 *
 *   proxyrt_bench xcore pinned|sem N       W5: fibers on workers pinned to CPUs 0 and 1 pass a
 *                                          turn back and forth through a prt_mutex_t and
 *                                          prt_cond_t (pinned) or two prt_sem_t, one per side
 *                                          (sem, variant=pinned_sem: Go's two channels; no
 *                                          lock to contend); N timed round trips after N/10
 *                                          untimed
 *
 *   proxyrt_bench preempt QUANTUM_NS SAMPLES
 *                                          what preemption costs, one worker (issue 13):
 *                                          variant=wake: a fiber at 24 sleeping 1 ms, SAMPLES
 *                                          times, behind a hog at 8: its wake-up delay (timer
 *                                          expiry to running), and the same on an idle worker;
 *                                          variant=slice: two equal hogs against one: ns lost
 *                                          per preemption; variant=deferred: the same with the
 *                                          hogs inside libc (memset): ns per deferred interrupt.
 *                                          quantum_ns= is the runtime's ($PRT_PREEMPT_QUANTUM_NS
 *                                          replaces QUANTUM_NS); a cooperative runtime is
 *                                          refused as by hogwake (status=skipped, exit 1)
 *
 *   proxyrt_bench hogwake same|cross [ROUNDS]
 *                                          W7: a fiber at 28 woken every 1 ms behind a hog
 *                                          at the default priority that never calls the
 *                                          runtime; p50/p99/max of its wake-up delay.
 *                                          same: 1 worker, it sleeps to each deadline (delay:
 *                                          deadline to running); cross: 2 workers, it parks on
 *                                          worker 0 beside the hog and a fiber on worker 1
 *                                          unparks it at each deadline (delay: unpark to
 *                                          running). Preemptive with PRT_PREEMPT_QUANTUM_DEFAULT
 *                                          (or $PRT_PREEMPT_QUANTUM_NS; 0 there is refused:
 *                                          cooperative, the high fiber would never run)
 *
 *   proxyrt_bench filewrite aff|noaff [WRITES] [SPIN_US] [buffered|direct] [DIR]
 *                                          issue 15: one worker (pinned), a fiber writing
 *                                          64 KiB blocks (prt_write, file in DIR, default
 *                                          "."; rewritten from offset 0 every 64 blocks)
 *                                          while another fiber on that worker saturates it
 *                                          (busy SPIN_US, default 50, then prt_yield;
 *                                          0: no such fiber, the worker idles);
 *                                          p50/p99/max per write. aff: io_uring's helper
 *                                          threads kept off the worker's CPU (the default);
 *                                          noaff: PRT_RT_NO_IOWQ_AFF, the kernel's choice.
 *                                          Under `chrt -f 1` the worker is SCHED_FIFO (and
 *                                          so are its io-wq helpers); the spinner stops
 *                                          after 5 s (spinner_capped=1) so that such a
 *                                          run ends
 *
 *   proxyrt_bench http raw PORT            W6: HTTP/1.1 keep-alive "Hello, World!" on
 *                                          127.0.0.1:PORT, one worker (pinned, as runtimes
 *                                          are by default), a fiber per connection; serves
 *                                          until killed and prints nothing on stdout (wrk
 *                                          measures it); examples/http_conn.h
 *
 * Every number is checked against its range before use (out of range, or
 * a product of arguments that overflows: bad usage). Lines print the
 * configuration the runtime has, not the one asked for.
 *
 * Exit status: 0 ok, 1 a proxyrt call or an allocation failed (with a
 * message), 2 bad usage.
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <proxyrt/proxyrt.h>

#include "http_conn.h"
#include "inversion.h"

/* Stack of the fiber that runs a benchmark's driving loop (it calls libc). */
#define DRIVER_STACK_SIZE (256u * 1024u)
/* Default stack of a parked fiber: the point of `park` is a small footprint. */
#define PARK_STACK_KB 16

static __attribute__((noreturn)) void usage(void)
{
	fprintf(stderr, "usage: proxyrt_bench yield N\n"
			"       proxyrt_bench spawn WORKERS N BATCH\n"
			"       proxyrt_bench park N [canary|guard] [STACK_KB]\n"
			"       proxyrt_bench mutex WORKERS T K IN_NS OUT_NS\n"
			"       proxyrt_bench inversion SAMPLES PERIOD_US HOLD_US NMED MBURST_US MOFF_US HOFF_US\n"
			"       proxyrt_bench rwinversion SAMPLES PERIOD_US HOLD_US NMED MBURST_US MOFF_US HOFF_US\n"
			"       proxyrt_bench xcore pinned|sem N\n"
			"       proxyrt_bench preempt QUANTUM_NS SAMPLES\n"
			"       proxyrt_bench hogwake same|cross [ROUNDS]\n"
			"       proxyrt_bench filewrite aff|noaff [WRITES] [SPIN_US] [buffered|direct] [DIR]\n"
			"       proxyrt_bench http raw PORT\n"
			"counts are >= 1; WORKERS 1..%d; NMED 0..%d; QUANTUM_NS >= %u;\n"
			"preempt's SAMPLES, ROUNDS and WRITES >= 10; PORT 1..65535;\n"
			"preempt needs a preemptive runtime (not PRT_PREEMPT_QUANTUM_NS=0)\n",
		PRT_MAX_WORKERS, INV_MAX_MED, PRT_PREEMPT_QUANTUM_MIN);
	exit(2);
}

/* A usage error that no single argument's range shows (a product): message, usage, exit 2. */
static __attribute__((noreturn, format(printf, 1, 2))) void bad_usage(const char *fmt, ...)
{
	va_list ap;

	fputs("proxyrt_bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage();
}

/* Exit 1 with a message if @err (a proxyrt return value) is negative. */
static void check(int err, const char *what)
{
	if (err < 0) {
		fprintf(stderr, "proxyrt_bench: %s: %s\n", what, prt_strerror(err));
		exit(1);
	}
}

/*
 * Argument @what, @s, as a decimal integer in [@min, @max], else a usage
 * error. Every numeric argument is range-checked here, against the limit
 * of the type it ends up in and of what is computed from it, before any
 * narrowing: a check after the (int) cast saw 4294967297 workers as 1.
 */
static long arg_range(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	/* strtol() skips leading spaces and takes a '+': neither is a number here */
	if ((*s != '-' && (*s < '0' || *s > '9')) || errno || end == s || *end || v < min || v > max)
		bad_usage("%s: '%s' is not an integer in %ld..%ld", what, s, min, max);
	return v;
}

/* calloc(), or exit 1 saying what could not be had: a silent exit 1 looked like a crash. */
static void *xcalloc(size_t n, size_t size, const char *what)
{
	void *p = calloc(n, size);

	if (!p) {
		fprintf(stderr, "proxyrt_bench: out of memory for %zu %s (%zu bytes each)\n", n, what,
			size);
		exit(1);
	}
	return p;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Size of the process's CPU affinity mask, as `cpus=` of every peer. */
static int allowed_cpus(void)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return -1;
	return CPU_COUNT(&set);
}

static prt_runtime_t *runtime_new(int nworkers, int stack_kind, size_t stack_size)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.stack_kind = stack_kind;
	cfg.stack_size = stack_size;
	check(prt_runtime_create(&rt, &cfg), "prt_runtime_create");
	return rt;
}

/* Run fn(arg) as a fiber of @rt with a roomy stack and join it from this thread. */
static void run_driver(prt_runtime_t *rt, void *(*fn)(void *), void *arg)
{
	prt_fiber_attr_t attr;
	prt_fiber_t f;

	prt_fiber_attr_init(&attr);
	attr.stack_size = DRIVER_STACK_SIZE;
	attr.name = "bench-driver";
	check(prt_spawn(rt, &f, &attr, fn, arg), "prt_spawn(driver)");
	check(prt_join(f, NULL), "prt_join(driver)");
}

/* ------------------------------------------------------------------ W1 */

static void *yield_body(void *arg)
{
	long n = (long)(intptr_t)arg;

	for (long i = 0; i < n; i++)
		check(prt_yield(), "prt_yield");
	return NULL;
}

struct yield_args {
	long n;
	uint64_t elapsed_ns;
};

/*
 * Spawn two yielders and join both from a fiber of the same worker, as
 * Go's and Boost.Fiber's W1 do from their main goroutine/fiber. From a
 * plain thread sharing the CPU (taskset -c 1), the second spawn waited
 * for the kernel to run that thread again (up to ~20 ms) while the
 * first yielder ran alone: yields that switch nothing, which made
 * ns_per_op anything from 5 to 57 ns.
 */
static void *yield_driver(void *arg)
{
	struct yield_args *a = arg;
	prt_fiber_t f[2];
	uint64_t t0 = now_ns();

	for (int i = 0; i < 2; i++)
		check(prt_spawn(prt_runtime_self(), &f[i], NULL, yield_body, (void *)(intptr_t)a->n),
		      "prt_spawn");
	for (int i = 0; i < 2; i++)
		check(prt_join(f[i], NULL), "prt_join");
	a->elapsed_ns = now_ns() - t0;
	return NULL;
}

/* Returns elapsed ns for 2 x @n yields. */
static uint64_t yield_pass(prt_runtime_t *rt, long n)
{
	struct yield_args a = { .n = n };

	run_driver(rt, yield_driver, &a);
	return a.elapsed_ns;
}

static int bench_yield(int argc, char **argv)
{
	long n;
	prt_runtime_t *rt;
	uint64_t el;

	if (argc != 3)
		usage();
	n = arg_range(argv[2], "N", 1, LONG_MAX / 2); /* ops=2N */
	rt = runtime_new(1, PRT_STACK_GUARD, 0);
	yield_pass(rt, n / 10);
	el = yield_pass(rt, n);
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	printf("peer=proxyrt workload=yield variant=prt_yield ns_per_op=%.2f ops=%ld workers=1 cpus=%d\n",
	       (double)el / (double)(2 * n), 2 * n, allowed_cpus());
	return 0;
}

/* ------------------------------------------------------------------ W2 */

struct spawn_args {
	long n;		/* timed fibers, a multiple of batch */
	long warm;	/* untimed fibers first, a multiple of batch */
	long batch;
	prt_fiber_t *f; /* batch handles */
	uint64_t elapsed;
};

static void *empty_body(void *arg)
{
	return arg;
}

static void spawn_rounds(struct spawn_args *a, long total)
{
	prt_runtime_t *rt = prt_runtime_self();

	for (long done = 0; done < total; done += a->batch) {
		for (long i = 0; i < a->batch; i++)
			check(prt_spawn(rt, &a->f[i], NULL, empty_body, NULL), "prt_spawn");
		for (long i = 0; i < a->batch; i++)
			check(prt_join(a->f[i], NULL), "prt_join");
	}
}

static void *spawn_driver(void *arg)
{
	struct spawn_args *a = arg;
	uint64_t t0;

	spawn_rounds(a, a->warm);
	t0 = now_ns();
	spawn_rounds(a, a->n);
	a->elapsed = now_ns() - t0;
	return NULL;
}

static int bench_spawn(int argc, char **argv)
{
	struct spawn_args a;
	prt_runtime_t *rt;
	uint64_t steals = 0, parks = 0;
	int workers;

	if (argc != 5)
		usage();
	workers = (int)arg_range(argv[2], "WORKERS", 1, PRT_MAX_WORKERS);
	/* N and BATCH a quarter of LONG_MAX at most: N rounded up to BATCHes, plus N / 10, fits */
	a.n = arg_range(argv[3], "N", 1, LONG_MAX / 4);
	a.batch = arg_range(argv[4], "BATCH", 1, LONG_MAX / 4);
	a.n = (a.n + a.batch - 1) / a.batch * a.batch;
	a.warm = (a.n / 10 + a.batch - 1) / a.batch * a.batch;
	a.f = xcalloc((size_t)a.batch, sizeof(*a.f), "fiber handles");
	rt = runtime_new(workers, PRT_STACK_GUARD, 0);
	workers = prt_runtime_nworkers(rt); /* print what ran */
	run_driver(rt, spawn_driver, &a);
	for (int i = 0; i < workers; i++) {
		prt_worker_stats_t st;

		check(prt_worker_stats(rt, i, &st), "prt_worker_stats");
		steals += st.steals;
		parks += st.parks;
	}
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	free(a.f);
	/* steals and parks over the whole run, warm-up included (per 1000 timed fibers) */
	printf("peer=proxyrt workload=spawn_join variant=workers%d ns_per_op=%.2f ops=%ld batch=%ld workers=%d cpus=%d steals_per_k=%.1f parks_per_k=%.1f\n",
	       workers, (double)a.elapsed / (double)a.n, a.n, a.batch, workers, allowed_cpus(),
	       1000.0 * (double)steals / (double)a.n, 1000.0 * (double)parks / (double)a.n);
	return 0;
}

/* ------------------------------------------------------------------ park */

struct park_args {
	long n;
	prt_fiber_t *f;		/* n handles, malloc'd and touched before rss_before */
	long spawned;		/* fibers actually created */
	int err;		/* first prt_spawn error, 0 if none */
	long rss_before, rss_after;
	atomic_long arrived;	/* fibers that reached their park loop */
	atomic_int release;	/* set once, before the unparks */
};

/* Resident set size in bytes, from /proc/self/statm, or -1. */
static long rss_bytes(void)
{
	long size, resident = -1;
	FILE *fp = fopen("/proc/self/statm", "r");

	if (!fp)
		return -1;
	if (fscanf(fp, "%ld %ld", &size, &resident) != 2)
		resident = -1;
	fclose(fp);
	return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

static void *park_body(void *arg)
{
	struct park_args *a = arg;

	atomic_fetch_add_explicit(&a->arrived, 1, memory_order_relaxed);
	/* Acquire pairs with the release store in park_driver(). */
	while (!atomic_load_explicit(&a->release, memory_order_acquire))
		check(prt_park(), "prt_park");
	return NULL;
}

static void *park_driver(void *arg)
{
	struct park_args *a = arg;
	prt_runtime_t *rt = prt_runtime_self();

	a->rss_before = rss_bytes();
	for (a->spawned = 0; a->spawned < a->n; a->spawned++) {
		a->err = prt_spawn(rt, &a->f[a->spawned], NULL, park_body, a);
		if (a->err)
			break;
	}
	while (atomic_load_explicit(&a->arrived, memory_order_relaxed) < a->spawned)
		check(prt_yield(), "prt_yield");
	a->rss_after = rss_bytes();
	/* Release pairs with the acquire load in park_body(). */
	atomic_store_explicit(&a->release, 1, memory_order_release);
	for (long i = 0; i < a->spawned; i++)
		check(prt_unpark(a->f[i]), "prt_unpark");
	for (long i = 0; i < a->spawned; i++)
		check(prt_join(a->f[i], NULL), "prt_join");
	return NULL;
}

/* /proc/sys/vm/max_map_count as a string ("unknown" if unreadable). */
static void read_max_map_count(char *buf, size_t len)
{
	FILE *fp = fopen("/proc/sys/vm/max_map_count", "r");

	if (!fp || !fgets(buf, (int)len, fp) || buf[0] == '\n' || buf[0] == '\0')
		snprintf(buf, len, "unknown");
	buf[strcspn(buf, "\n")] = '\0';
	if (fp)
		fclose(fp);
}

static int bench_park(int argc, char **argv)
{
	struct park_args a = { 0 };
	const char *kind = "canary";
	long stack_kb = PARK_STACK_KB, page_kb;
	char maxmap[32];
	prt_runtime_t *rt;
	double per;

	if (argc < 3 || argc > 5)
		usage();
	a.n = arg_range(argv[2], "N", 1, (long)(SIZE_MAX / sizeof(*a.f)));
	if (argc >= 4)
		kind = argv[3];
	if (strcmp(kind, "canary") && strcmp(kind, "guard"))
		usage();
	if (argc == 5)
		stack_kb = arg_range(argv[4], "STACK_KB", 1, (long)(SIZE_MAX / 2048)); /* x 1024, rounded */
	read_max_map_count(maxmap, sizeof(maxmap));

	a.f = malloc((size_t)a.n * sizeof(*a.f));
	if (!a.f) {
		fprintf(stderr, "proxyrt_bench: out of memory for %ld handles\n", a.n);
		return 1;
	}
	memset(a.f, 0, (size_t)a.n * sizeof(*a.f));
	rt = runtime_new(0, strcmp(kind, "guard") ? PRT_STACK_CANARY : PRT_STACK_GUARD,
			 (size_t)stack_kb * 1024u);
	/* The stacks' real size: the runtime rounds stack_size up to pages. */
	page_kb = sysconf(_SC_PAGESIZE) / 1024;
	if (page_kb > 0)
		stack_kb = (stack_kb + page_kb - 1) / page_kb * page_kb;
	run_driver(rt, park_driver, &a);
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	free(a.f);

	per = a.spawned ? (double)(a.rss_after - a.rss_before) / (double)a.spawned : 0.0;
	printf("peer=proxyrt workload=park variant=%s fibers=%ld rss_bytes_per_fiber=%.0f "
	       "rss_total_mb=%.1f stack_kb=%ld vm_max_map_count=%s default_kernel_settings=%d ok=%d",
	       kind, a.n, per, (double)a.rss_after / (1024.0 * 1024.0), stack_kb, maxmap,
	       strcmp(maxmap, "65530") == 0, a.err == 0);
	if (a.err)
		printf(" spawned=%ld", a.spawned);
	printf("\n");
	if (a.err) {
		fprintf(stderr, "proxyrt_bench: park: prt_spawn failed after %ld fibers: %s\n",
			a.spawned, prt_strerror(a.err));
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ W3 mutex */

struct mutex_args {
	prt_mutex_t m;
	uint64_t counter;
	long k;
	uint64_t in_it, out_it;
	_Atomic uint64_t sink;
};

static void *mutex_body(void *arg)
{
	struct mutex_args *a = arg;
	uint64_t x = (uint64_t)(uintptr_t)&x;

	for (long i = 0; i < a->k; i++) {
		prt_mutex_lock(&a->m);
		a->counter++;
		x = bench_spin(a->in_it, x);
		prt_mutex_unlock(&a->m);
		x = bench_spin(a->out_it, x);
	}
	atomic_fetch_add(&a->sink, x);
	return NULL;
}

static int bench_mutex(int argc, char **argv)
{
	struct mutex_args a = { .m = PRT_MUTEX_INITIALIZER };
	long workers, t, in_ns, out_ns, ops;
	prt_runtime_t *rt;
	prt_fiber_t *f;
	uint64_t t0, el, expect;
	double nspi;

	if (argc != 7)
		usage();
	workers = arg_range(argv[2], "WORKERS", 1, PRT_MAX_WORKERS);
	t = arg_range(argv[3], "T", 1, LONG_MAX);
	a.k = arg_range(argv[4], "K", 1, LONG_MAX);
	in_ns = arg_range(argv[5], "IN_NS", 0, LONG_MAX);
	out_ns = arg_range(argv[6], "OUT_NS", 0, LONG_MAX);
	if (__builtin_mul_overflow(t, a.k, &ops))
		bad_usage("T*K (%ld*%ld operations) overflows", t, a.k);
	f = xcalloc((size_t)t, sizeof(*f), "fiber handles");
	nspi = bench_calibrate();
	a.in_it = iters_for_ns((double)in_ns, nspi);
	a.out_it = iters_for_ns((double)out_ns, nspi);
	rt = runtime_new((int)workers, PRT_STACK_GUARD, 0);
	workers = prt_runtime_nworkers(rt); /* print what ran */
	t0 = now_ns();
	for (long i = 0; i < t; i++)
		check(prt_spawn(rt, &f[i], NULL, mutex_body, &a), "prt_spawn");
	for (long i = 0; i < t; i++)
		check(prt_join(f[i], NULL), "prt_join");
	el = now_ns() - t0;
	expect = (uint64_t)ops;
	printf("peer=proxyrt workload=mutex variant=workers%ld ops_per_sec=%.0f ops=%llu "
	       "elapsed_s=%.3f T=%ld K=%ld in_ns=%ld out_ns=%ld spin_ns_per_iter=%.3f "
	       "counter_ok=%d cpus=%d\n",
	       workers, (double)expect / ((double)el / 1e9), (unsigned long long)expect,
	       (double)el / 1e9, t, a.k, in_ns, out_ns, nspi, a.counter == expect,
	       allowed_cpus());
	for (int i = 0; i < prt_runtime_nworkers(rt); i++) {
		prt_worker_stats_t st;

		check(prt_worker_stats(rt, i, &st), "prt_worker_stats");
		fprintf(stderr,
			"# worker %d: switches=%llu steals=%llu parks=%llu proxy_picks=%llu "
			"migrations=%llu attachments=%llu handoffs=%llu preemptions=%llu "
			"time_slices=%llu slice_extensions=%llu preempt_deferred=%llu\n",
			i, (unsigned long long)st.switches, (unsigned long long)st.steals,
			(unsigned long long)st.parks, (unsigned long long)st.proxy_picks,
			(unsigned long long)st.migrations, (unsigned long long)st.attachments,
			(unsigned long long)st.handoffs, (unsigned long long)st.preemptions,
			(unsigned long long)st.time_slices, (unsigned long long)st.slice_extensions,
			(unsigned long long)st.preempt_deferred);
	}
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	free(f);
	if (a.counter != expect) {
		fprintf(stderr, "FAIL: proxyrt mutex counter=%llu expected=%llu\n",
			(unsigned long long)a.counter, (unsigned long long)expect);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------------ W4 inversion */

static void inv_print(const char *variant, const struct inv_params *p, struct inv_result *r)
{
	int n = p->samples;

	printf("peer=proxyrt workload=%s variant=%s", p->rwlock ? "rw_prio_inversion" : "prio_inversion",
	       variant);
	printf(" lock_p50_us=%.1f lock_p99_us=%.1f lock_max_us=%.1f", inv_pct(r->lock, n, 50),
	       inv_pct(r->lock, n, 99), inv_pct(r->lock, n, 100));
	printf(" resp_p50_us=%.1f resp_p99_us=%.1f resp_max_us=%.1f", inv_pct(r->resp, n, 50),
	       inv_pct(r->resp, n, 99), inv_pct(r->resp, n, 100));
	printf(" wake_p50_us=%.1f wake_p99_us=%.1f wake_max_us=%.1f", inv_pct(r->wake, n, 50),
	       inv_pct(r->wake, n, 99), inv_pct(r->wake, n, 100));
	printf(" samples=%d period_us=%d hold_us=%d nmed=%d mburst_us=%d moff_us=%d hoff_us=%d"
	       " yield_every_us=%d preemptive=%d quantum_ns=%llu timer_lead_ns=%llu preemptions=%llu"
	       " preempt_deferred=%llu proxy_picks=%llu workers=1 cpus=%d\n",
	       p->samples, p->period_us, p->hold_us, p->nmed, p->mburst_us, p->moff_us, p->hoff_us,
	       p->yield_every_us, r->preemptive, (unsigned long long)r->quantum_ns,
	       (unsigned long long)r->timer_lead_ns,
	       (unsigned long long)r->stats.preemptions,
	       (unsigned long long)r->stats.preempt_deferred, (unsigned long long)r->stats.proxy_picks,
	       allowed_cpus());
}

/* W4 (@rwlock 0) and W4rw (1): the same arguments and output. */
static int bench_inversion(int argc, char **argv, int rwlock)
{
	struct inv_params p = { .rwlock = rwlock };
	const char *ye = getenv("PRT_YIELD_EVERY_US"), *why;

	if (argc != 9)
		usage();
	p.samples = (int)arg_range(argv[2], "SAMPLES", 1, INT_MAX - INV_WARM);
	p.period_us = (int)arg_range(argv[3], "PERIOD_US", 1, INT_MAX);
	p.hold_us = (int)arg_range(argv[4], "HOLD_US", 0, INT_MAX);
	/* NMED beyond INV_MAX_MED was silently cut to it, while the line said NMED */
	p.nmed = (int)arg_range(argv[5], "NMED", 0, INV_MAX_MED);
	p.mburst_us = (int)arg_range(argv[6], "MBURST_US", 0, INT_MAX);
	p.moff_us = (int)arg_range(argv[7], "MOFF_US", 0, INT_MAX);
	p.hoff_us = (int)arg_range(argv[8], "HOFF_US", 0, INT_MAX);
	/* 0, unset or empty: never; strict, as atoi() ran "10abc" as 10 and "abc" as 0 */
	p.yield_every_us = ye && *ye ? (int)arg_range(ye, "PRT_YIELD_EVERY_US", 0, INT_MAX) : 0;
	if ((why = inv_params_check(&p)))
		bad_usage("%s", why);
	p.quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT; /* $PRT_PREEMPT_QUANTUM_NS replaces it */
	/*
	 * L's and the Ms' sleeps end on an idle CPU: spin their last 200 us
	 * (cfg.timer_lead_ns) rather than wait for the CPU's wakeup, as the
	 * pthread peer's SCHED_FIFO threads are this workload's real-time
	 * setting. $PRT_TIMER_LEAD_NS replaces it: the line prints the run's
	 * (inv_result.timer_lead_ns).
	 */
	p.timer_lead_ns = 200000;
	for (int v = 0; v < 2; v++) {
		struct inv_result r = { 0 };

		p.rt_flags = v ? PRT_RT_NO_PROXY : 0;
		check(inv_run(&p, &r), "inversion run");
		inv_print(v ? "noproxy" : "proxy", &p, &r);
		free(r.lock);
		free(r.resp);
		free(r.wake);
	}
	return 0;
}

/* ------------------------------------------------------------------ W5 xcore */

/*
 * Each shared object on its own cache line, as separate objects are (and
 * as floors spincond's are): on the main thread's stack at whatever
 * offset ASLR gave, which objects shared a line changed from run to run,
 * and with it the round trip, by up to 2x (docs/design.md, section 6).
 */
struct xcore {
	int sem;           /* 1: pass the turn through two semaphores (sem variant) */
	struct {
		_Alignas(64) prt_sem_t s;
	} go[2];           /* sem variant: side i waits on go[i].s, posts go[!i].s */
	_Alignas(64) prt_mutex_t m;
	_Alignas(64) prt_cond_t c;
	_Alignas(64) int turn; /* whose move: 0 or 1; m */
	long n;            /* round trips of the current pass */
	uint64_t t0, t1;   /* timed part, set by side 0 */
	struct timespec cpu0, cpu1;
};

static void xcore_pass(struct xcore *x, int me, long n)
{
	if (x->sem) {
		for (long i = 0; i < n; i++) {
			if (me == 0) {
				prt_sem_post(&x->go[1].s);
				prt_sem_wait(&x->go[0].s);
			} else {
				prt_sem_wait(&x->go[1].s);
				prt_sem_post(&x->go[0].s);
			}
		}
		return;
	}
	for (long i = 0; i < n; i++) {
		prt_mutex_lock(&x->m);
		while (x->turn != me)
			prt_cond_wait(&x->c, &x->m);
		x->turn = !me;
		prt_cond_signal(&x->c);
		prt_mutex_unlock(&x->m);
	}
}

struct xcore_arg {
	struct xcore *x;
	int me;
};

static void *xcore_fiber(void *arg)
{
	struct xcore_arg *a = arg;
	struct xcore *x = a->x;

	xcore_pass(x, a->me, x->n / 10 > 0 ? x->n / 10 : 1); /* warm-up */
	if (a->me == 0) {
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &x->cpu0);
		x->t0 = now_ns();
	}
	xcore_pass(x, a->me, x->n);
	if (a->me == 0) {
		x->t1 = now_ns();
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &x->cpu1);
	}
	return NULL;
}

static int bench_xcore(int argc, char **argv)
{
	struct xcore x = { .m = PRT_MUTEX_INITIALIZER, .c = PRT_COND_INITIALIZER };
	struct xcore_arg a[2] = { { &x, 0 }, { &x, 1 } };
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_fiber_t f[2];
	double el, cpu, rtt;
	uint64_t sw = 0, mig = 0, px = 0, parks = 0;

	if (argc != 4 || (strcmp(argv[2], "pinned") && strcmp(argv[2], "sem")))
		usage();
	x.sem = !strcmp(argv[2], "sem");
	prt_sem_init(&x.go[0].s, 0);
	prt_sem_init(&x.go[1].s, 0);
	x.n = arg_range(argv[3], "N", 1, LONG_MAX / 2); /* N + N / 10 round trips in all */
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	cfg.cpus = "0,1"; /* worker 0 on CPU 0, worker 1 on CPU 1, pinned */
	check(prt_runtime_create(&rt, &cfg), "prt_runtime_create");
	for (int i = 0; i < 2; i++) {
		prt_fiber_attr_t attr;

		prt_fiber_attr_init(&attr);
		attr.has_affinity = 1; /* kept on its worker: never stolen */
		prt_workerset_zero(&attr.affinity);
		prt_workerset_add(&attr.affinity, i);
		check(prt_spawn(rt, &f[i], &attr, xcore_fiber, &a[i]), "prt_spawn");
	}
	for (int i = 0; i < 2; i++)
		check(prt_join(f[i], NULL), "prt_join");
	el = (double)(x.t1 - x.t0);
	cpu = (double)(x.cpu1.tv_sec - x.cpu0.tv_sec) * 1e9 + (double)(x.cpu1.tv_nsec - x.cpu0.tv_nsec);
	for (int i = 0; i < 2; i++) {
		prt_worker_stats_t st;

		check(prt_worker_stats(rt, i, &st), "prt_worker_stats");
		sw += st.switches;
		mig += st.migrations;
		px += st.proxy_picks;
		parks += st.parks;
	}
	/* per round trip, warm-up included (n + n/10 of them) */
	rtt = (double)(x.n + (x.n / 10 > 0 ? x.n / 10 : 1));
	printf("peer=proxyrt workload=xcore_wake variant=%s ns_per_op=%.2f ops=%ld "
	       "proc_cpu_util=%.2f workers=2 cpus=%d switches_per_op=%.2f migrations_per_op=%.2f "
	       "proxy_picks_per_op=%.2f parks_per_op=%.3f\n",
	       x.sem ? "pinned_sem" : "pinned", el / (double)x.n, x.n, cpu / el, allowed_cpus(),
	       (double)sw / rtt, (double)mig / rtt, (double)px / rtt, (double)parks / rtt);
	prt_runtime_destroy(rt);
	return 0;
}

/* ------------------------------------------------------------------ W6 http */

/*
 * The peer it is compared with is Go's `http raw` (one goroutine per
 * connection, GOMAXPROCS=1): one worker here. run.sh starts us under
 * `taskset -c 0`, and the worker is pinned to the first allowed CPU.
 */
static int bench_http(int argc, char **argv)
{
	int port, lfd;

	if (argc != 4 || strcmp(argv[2], "raw"))
		usage();
	port = (int)arg_range(argv[3], "PORT", 1, 65535);
	lfd = serve_listen("127.0.0.1", port);
	if (lfd < 0) {
		fprintf(stderr, "proxyrt_bench: http: listen on 127.0.0.1:%d: %s\n", port,
			strerror(-lfd));
		return 1;
	}
	return serve_forever("proxyrt_bench http raw", lfd, 1, http_conn_fiber);
}

/* ------------------------------------------------------------------ preemption */

struct pre_args {
	atomic_int stop;
	long samples;
	int64_t *delay;
	uint64_t iters;  /* a hog's work, in bench_spin iterations or memset calls */
	bool in_libc;
	_Atomic uint64_t sink;
};

static void *pre_hog(void *arg)
{
	struct pre_args *a = arg;
	uint64_t x = 1;

	while (!atomic_load_explicit(&a->stop, memory_order_relaxed))
		x = bench_spin(1 << 16, x);
	atomic_fetch_add(&a->sink, x);
	return NULL;
}

static void *pre_sleeper(void *arg)
{
	struct pre_args *a = arg;

	for (long i = 0; i < a->samples + a->samples / 10; i++) {
		uint64_t t = prt_now_ns() + 1000000;

		prt_sleep_until(t);
		if (i >= a->samples / 10)
			a->delay[i - a->samples / 10] = (int64_t)(prt_now_ns() - t);
	}
	atomic_store(&a->stop, 1);
	return NULL;
}

static void *(*volatile pre_memset)(void *, int, size_t) = memset;

/* @a->iters of work: LCG steps, or memset calls (libc: interrupts there are deferred). */
static void *pre_work(void *arg)
{
	struct pre_args *a = arg;
	static char buf[2][4096];
	uint64_t x = 1;

	if (a->in_libc) {
		for (uint64_t i = 0; i < a->iters; i++)
			pre_memset(buf[i & 1], (int)i, sizeof(buf[0]));
	} else {
		x = bench_spin(a->iters, x);
	}
	atomic_fetch_add(&a->sink, x);
	return NULL;
}

static int cmp_i64(const void *p, const void *q)
{
	int64_t x = *(const int64_t *)p, y = *(const int64_t *)q;

	return x < y ? -1 : x > y;
}

/*
 * A one-worker runtime with time slice @q; *@eff (if not NULL) is the
 * slice it has ($PRT_PREEMPT_QUANTUM_NS replaces @q), which is what the
 * lines print. A cooperative runtime is refused, as hogwake does: the
 * hog of pre_wake() never calls the runtime and would keep the worker
 * for good (the run hung after its first line).
 */
static prt_runtime_t *pre_runtime(uint64_t q, uint64_t *eff)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	uint64_t got = 0;
	int pre;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = q;
	check(prt_runtime_create(&rt, &cfg), "prt_runtime_create");
	pre = prt_runtime_preemptive(rt, &got);
	check(pre, "prt_runtime_preemptive");
	if (!pre) {
		fprintf(stderr, "proxyrt_bench: preempt: the runtime is cooperative (%s)\n",
			prt_runtime_notice(rt) ? prt_runtime_notice(rt) : "PRT_PREEMPT_QUANTUM_NS=0");
		prt_runtime_destroy(rt);
		printf("peer=proxyrt workload=preempt status=skipped reason=cooperative\n");
		exit(1);
	}
	if (eff)
		*eff = got;
	return rt;
}

/* Wake-up delays of a sleeper at 24, behind a hog at 8 (@hog) or on an idle worker. */
static void pre_wake(uint64_t q, long samples, bool hog)
{
	struct pre_args a = { .samples = samples };
	prt_runtime_t *rt = pre_runtime(q, NULL);
	prt_fiber_attr_t attr;
	prt_fiber_t fs, fh;
	prt_worker_stats_t st;

	a.delay = xcalloc((size_t)samples, sizeof(*a.delay), "samples");
	prt_fiber_attr_init(&attr);
	attr.priority = 24;
	check(prt_spawn(rt, &fs, &attr, pre_sleeper, &a), "prt_spawn");
	if (hog) {
		attr.priority = 8;
		check(prt_spawn(rt, &fh, &attr, pre_hog, &a), "prt_spawn");
	}
	check(prt_join(fs, NULL), "prt_join");
	if (hog)
		check(prt_join(fh, NULL), "prt_join");
	check(prt_worker_stats(rt, 0, &st), "prt_worker_stats");
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	qsort(a.delay, (size_t)samples, sizeof(*a.delay), cmp_i64);
	printf("peer=proxyrt workload=preempt variant=wake behind=%s quantum_ns=%llu samples=%ld "
	       "wake_p50_ns=%lld wake_p99_ns=%lld wake_max_ns=%lld preemptions=%llu deferred=%llu\n",
	       hog ? "hog" : "idle", (unsigned long long)q, samples,
	       (long long)a.delay[samples / 2], (long long)a.delay[samples * 99 / 100],
	       (long long)a.delay[samples - 1], (unsigned long long)st.preemptions,
	       (unsigned long long)st.preempt_deferred);
	free(a.delay);
}

/* Time for @n equal fibers to do @iters of work between them, and the worker's counters. */
static uint64_t pre_share(uint64_t q, int n, uint64_t iters, bool in_libc, prt_worker_stats_t *st)
{
	struct pre_args a = { .iters = iters / (uint64_t)n, .in_libc = in_libc };
	prt_runtime_t *rt = pre_runtime(q, NULL);
	prt_fiber_t f[2];
	uint64_t t0 = now_ns(), el;

	for (int i = 0; i < n; i++)
		check(prt_spawn(rt, &f[i], NULL, pre_work, &a), "prt_spawn");
	for (int i = 0; i < n; i++)
		check(prt_join(f[i], NULL), "prt_join");
	el = now_ns() - t0;
	check(prt_worker_stats(rt, 0, st), "prt_worker_stats");
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	return el;
}

/* Two equal hogs against one doing the same work: the difference, per preemption (best of 5). */
static void pre_cost(uint64_t q, bool in_libc)
{
	uint64_t iters = in_libc ? 200000 : iters_for_ns(300e6, bench_calibrate());
	uint64_t best1 = UINT64_MAX, best2 = UINT64_MAX, events = 0;
	prt_worker_stats_t st, st2 = { 0 };

	for (int r = 0; r < 5; r++) {
		uint64_t t1 = pre_share(q, 1, iters, in_libc, &st);
		uint64_t t2 = pre_share(q, 2, iters, in_libc, &st);

		best1 = t1 < best1 ? t1 : best1;
		if (t2 < best2) {
			best2 = t2;
			st2 = st;
		}
	}
	events = in_libc ? st2.preempt_deferred : st2.preemptions;
	printf("peer=proxyrt workload=preempt variant=%s quantum_ns=%llu one_ms=%.1f two_ms=%.1f "
	       "preemptions=%llu deferred=%llu ns_per_%s=%.0f\n",
	       in_libc ? "deferred" : "slice", (unsigned long long)q, (double)best1 / 1e6,
	       (double)best2 / 1e6, (unsigned long long)st2.preemptions,
	       (unsigned long long)st2.preempt_deferred, in_libc ? "deferral" : "preemption",
	       events ? ((double)best2 - (double)best1) / (double)events : 0.0);
}

static int bench_preempt(int argc, char **argv)
{
	uint64_t q;
	long samples;

	if (argc != 4)
		usage();
	q = (uint64_t)arg_range(argv[2], "QUANTUM_NS", PRT_PREEMPT_QUANTUM_MIN, LONG_MAX);
	samples = arg_range(argv[3], "SAMPLES", 10, LONG_MAX / 100); /* x 99 for the p99 */
	/*
	 * The slice the runtimes get (from here on, q asks for it again:
	 * the environment gives the same), and a cooperative one refused
	 * before any line.
	 */
	prt_runtime_destroy(pre_runtime(q, &q));
	pre_wake(q, samples, false);
	pre_wake(q, samples, true);
	pre_cost(q, false);
	pre_cost(q, true);
	return 0;
}

/* ------------------------------------------------------------------ W7 hogwake */

#define HW_PERIOD_NS 1000000u /* the high fiber's period: 1 ms */
#define HW_PRIO 28            /* the high fiber; the hog is at PRT_PRIO_DEFAULT */
#define HW_CHUNK 1024u        /* bench_spin iterations between two looks at @stop */

struct hogwake {
	bool cross;
	long rounds;            /* timed rounds, after rounds / 10 untimed */
	int64_t *delay;         /* rounds wake-up delays, ns */
	atomic_int stop;        /* set once the high fiber is done; the hog stops */
	_Atomic uint64_t spins; /* bench_spin iterations the hog did */
	prt_fiber_t high, waker;
	/*
	 * cross: the waker's unpark time of the current round (0: none
	 * pending), and the high fiber's acknowledgement of it.
	 */
	_Atomic uint64_t unpark_at;
	atomic_long acked;
};

/* Spins until told to stop, never calling the runtime: only preemption takes it off its worker. */
static void *hw_hog(void *arg)
{
	struct hogwake *h = arg;
	uint64_t x = 1, n = 0;

	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		x = bench_spin(HW_CHUNK, x);
		n++;
	}
	atomic_store_explicit(&h->spins, n * HW_CHUNK + (x == 42), memory_order_relaxed);
	return NULL;
}

/* The next deadline: one period on, or one period from now if that one passed already. */
static uint64_t hw_next(uint64_t prev)
{
	uint64_t now = prt_now_ns(), next = prev + HW_PERIOD_NS;

	return next > now ? next : now + HW_PERIOD_NS;
}

static void hw_record(struct hogwake *h, long i, uint64_t from)
{
	long warm = h->rounds / 10;

	if (i >= warm)
		h->delay[i - warm] = (int64_t)(prt_now_ns() - from);
}

/* same: sleep to each deadline; the delay is from the deadline to running. */
static void *hw_sleeper(void *arg)
{
	struct hogwake *h = arg;
	uint64_t t = prt_now_ns();

	for (long i = 0; i < h->rounds + h->rounds / 10; i++) {
		t = hw_next(t);
		check(prt_sleep_until(t), "prt_sleep_until");
		hw_record(h, i, t);
	}
	/* relaxed: the hog only needs to see it eventually; join orders the rest */
	atomic_store_explicit(&h->stop, 1, memory_order_relaxed);
	return NULL;
}

/* cross: parked until the waker's unpark; the delay is from the unpark to running. */
static void *hw_parker(void *arg)
{
	struct hogwake *h = arg;

	for (long i = 0; i < h->rounds + h->rounds / 10; i++) {
		uint64_t from;

		/* acquire: pairs with the release store in hw_waker() */
		while (!(from = atomic_load_explicit(&h->unpark_at, memory_order_acquire)))
			check(prt_park(), "prt_park"); /* a spurious return: not our round */
		hw_record(h, i, from);
		atomic_store_explicit(&h->unpark_at, 0, memory_order_relaxed);
		/* release: pairs with the acquire load in hw_waker() */
		atomic_store_explicit(&h->acked, i + 1, memory_order_release);
		check(prt_unpark(h->waker), "prt_unpark");
	}
	atomic_store_explicit(&h->stop, 1, memory_order_relaxed);
	return NULL;
}

/* cross, on worker 1: at each deadline, unpark the high fiber; wait for its acknowledgement. */
static void *hw_waker(void *arg)
{
	struct hogwake *h = arg;
	uint64_t t = prt_now_ns();

	h->waker = prt_self(); /* read by hw_parker() after its acquire load of unpark_at */
	for (long i = 0; i < h->rounds + h->rounds / 10; i++) {
		t = hw_next(t);
		check(prt_sleep_until(t), "prt_sleep_until");
		/* release: pairs with the acquire load in hw_parker() */
		atomic_store_explicit(&h->unpark_at, prt_now_ns(), memory_order_release);
		check(prt_unpark(h->high), "prt_unpark");
		/* acquire: pairs with the release store in hw_parker() */
		while (atomic_load_explicit(&h->acked, memory_order_acquire) <= i)
			check(prt_park(), "prt_park");
	}
	return NULL;
}

static prt_fiber_t hw_spawn(prt_runtime_t *rt, int prio, int worker, void *(*fn)(void *),
			    struct hogwake *h)
{
	prt_fiber_attr_t attr;
	prt_fiber_t f;

	prt_fiber_attr_init(&attr);
	attr.priority = prio;
	attr.stack_size = DRIVER_STACK_SIZE;
	attr.has_affinity = 1;
	prt_workerset_zero(&attr.affinity);
	prt_workerset_add(&attr.affinity, worker);
	check(prt_spawn(rt, &f, &attr, fn, h), "prt_spawn");
	return f;
}

/* Run one hogwake measurement; @rt's workers are fresh, its stats are this run's. */
static void hw_run(prt_runtime_t *rt, struct hogwake *h)
{
	prt_fiber_t hog, waker;

	hog = hw_spawn(rt, PRT_PRIO_DEFAULT, 0, hw_hog, h);
	if (h->cross) {
		/* The waker needs the high fiber's handle: spawn that first. */
		h->high = hw_spawn(rt, HW_PRIO, 0, hw_parker, h);
		waker = hw_spawn(rt, HW_PRIO, 1, hw_waker, h);
		check(prt_join(waker, NULL), "prt_join");
	} else {
		h->high = hw_spawn(rt, HW_PRIO, 0, hw_sleeper, h);
	}
	check(prt_join(h->high, NULL), "prt_join");
	check(prt_join(hog, NULL), "prt_join");
}

static int bench_hogwake(int argc, char **argv)
{
	struct hogwake h = { .rounds = 2000 };
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_worker_stats_t st = { 0 };
	uint64_t q = 0;
	int pre;

	if (argc < 3 || argc > 4 || (strcmp(argv[2], "same") && strcmp(argv[2], "cross")))
		usage();
	h.cross = !strcmp(argv[2], "cross");
	if (argc >= 4)
		h.rounds = arg_range(argv[3], "ROUNDS", 10, LONG_MAX / 100); /* x 99 for the p99 */
	h.delay = xcalloc((size_t)h.rounds, sizeof(*h.delay), "rounds");
	prt_runtime_config_init(&cfg);
	cfg.nworkers = h.cross ? 2 : 1;
	cfg.preempt_quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT;
	check(prt_runtime_create(&rt, &cfg), "prt_runtime_create");
	pre = prt_runtime_preemptive(rt, &q);
	check(pre, "prt_runtime_preemptive");
	if (!pre) {
		/* The hog would keep worker 0 for good: the high fiber never runs. */
		fprintf(stderr, "proxyrt_bench: hogwake: the runtime is cooperative (%s)\n",
			prt_runtime_notice(rt) ? prt_runtime_notice(rt) : "PRT_PREEMPT_QUANTUM_NS=0");
		prt_runtime_destroy(rt);
		printf("peer=proxyrt workload=hogwake variant=%s status=skipped reason=cooperative\n",
		       argv[2]);
		return 1;
	}
	hw_run(rt, &h);
	check(prt_worker_stats(rt, 0, &st), "prt_worker_stats");
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
	qsort(h.delay, (size_t)h.rounds, sizeof(*h.delay), cmp_i64);
	printf("peer=proxyrt workload=hogwake variant=%s wake_p50_us=%.1f wake_p99_us=%.1f "
	       "wake_max_us=%.1f rounds=%ld period_us=%u hog_spins=%llu preemptive=%d "
	       "quantum_ns=%llu preemptions=%llu preempt_deferred=%llu workers=%d cpus=%d\n",
	       argv[2], (double)h.delay[(h.rounds * 50 + 99) / 100 - 1] / 1e3,
	       (double)h.delay[(h.rounds * 99 + 99) / 100 - 1] / 1e3,
	       (double)h.delay[h.rounds - 1] / 1e3, h.rounds, HW_PERIOD_NS / 1000,
	       (unsigned long long)atomic_load(&h.spins), pre, (unsigned long long)q,
	       (unsigned long long)st.preemptions, (unsigned long long)st.preempt_deferred,
	       cfg.nworkers, allowed_cpus());
	free(h.delay);
	return 0;
}

/* ------------------------------------------------------------------ filewrite */

#define FW_BLOCK (64u * 1024u)
#define FW_WRAP 64 /* blocks written before starting again at offset 0 */
/*
 * The spinner gives up after this long, so that a run ends where the
 * writes cannot finish while it spins (a SCHED_FIFO worker whose io-wq
 * helpers share its CPU: they never get it).
 */
#define FW_SPIN_CAP_NS (5 * 1000000000ull)

struct filewrite {
	long writes;          /* timed writes, after writes / 10 untimed */
	uint64_t spin_ns;     /* the saturating fiber's busy stretch between yields */
	int fd;
	void *buf;
	int64_t *lat;         /* writes latencies, ns */
	atomic_int stop;      /* set once the writer is done; the spinner stops */
	_Atomic uint64_t yields;
	atomic_int capped;    /* the spinner gave up (FW_SPIN_CAP_NS) */
	uint64_t elapsed;     /* every write, warm-up included, ns */
	int err;              /* the first failed write's -errno */
};

/* Busy for spin_ns between two yields, until the writer is done: the worker never idles. */
static void *fw_spinner(void *arg)
{
	struct filewrite *fw = arg;
	uint64_t n = 0, cap = now_ns() + FW_SPIN_CAP_NS;

	/* relaxed: a stop flag; the join orders the rest */
	while (!atomic_load_explicit(&fw->stop, memory_order_relaxed)) {
		uint64_t until = now_ns() + fw->spin_ns;

		if (until > cap) {
			atomic_store_explicit(&fw->capped, 1, memory_order_relaxed);
			break;
		}
		while (now_ns() < until)
			;
		check(prt_yield(), "prt_yield");
		n++;
	}
	atomic_store_explicit(&fw->yields, n, memory_order_relaxed);
	return NULL;
}

static void *fw_writer(void *arg)
{
	struct filewrite *fw = arg;
	long warm = fw->writes / 10;
	uint64_t start = now_ns();

	for (long i = 0; i < fw->writes + warm; i++) {
		uint64_t t0;
		ssize_t n;

		if (i % FW_WRAP == 0 && lseek(fw->fd, 0, SEEK_SET) != 0) {
			fw->err = -errno;
			break;
		}
		t0 = now_ns();
		n = prt_write(fw->fd, fw->buf, FW_BLOCK);

		if (n != (ssize_t)FW_BLOCK) {
			fw->err = n < 0 ? (int)n : -EIO;
			break;
		}
		if (i >= warm)
			fw->lat[i - warm] = (int64_t)(now_ns() - t0);
	}
	fw->elapsed = now_ns() - start;
	atomic_store_explicit(&fw->stop, 1, memory_order_relaxed);
	return NULL;
}

static double fw_pct(const int64_t *v, long n, int pct)
{
	return (double)v[(n * pct + 99) / 100 - 1] / 1e3;
}

static void fw_run(struct filewrite *fw, unsigned flags)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_fiber_attr_t attr;
	prt_fiber_t f[2];

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.flags = flags;
	check(prt_runtime_create(&rt, &cfg), "prt_runtime_create");
	prt_fiber_attr_init(&attr);
	attr.stack_size = DRIVER_STACK_SIZE;
	check(prt_spawn(rt, &f[1], &attr, fw_writer, fw), "prt_spawn");
	if (fw->spin_ns) /* 0: the worker idles between writes (the floor) */
		check(prt_spawn(rt, &f[0], &attr, fw_spinner, fw), "prt_spawn");
	for (int i = fw->spin_ns ? 0 : 1; i < 2; i++)
		check(prt_join(f[i], NULL), "prt_join");
	check(prt_runtime_destroy(rt), "prt_runtime_destroy");
}

static int bench_filewrite(int argc, char **argv)
{
	struct filewrite fw = { .writes = 2000, .spin_ns = 50000 };
	const char *dir = ".", *mode = "buffered";
	char path[4096];
	bool aff, direct;

	if (argc < 3 || argc > 7 || (strcmp(argv[2], "aff") && strcmp(argv[2], "noaff")))
		usage();
	aff = !strcmp(argv[2], "aff");
	if (argc >= 4)
		fw.writes = arg_range(argv[3], "WRITES", 10, LONG_MAX / 100); /* x 99 for the p99 */
	/* in ns, added to the clock: 18446744073709552 us wrapped to 0 ns and still spun */
	if (argc >= 5)
		fw.spin_ns = (uint64_t)arg_range(argv[4], "SPIN_US", 0, LONG_MAX / 1000) * 1000u;
	if (argc >= 6)
		mode = argv[5];
	if (argc >= 7)
		dir = argv[6];
	if (strcmp(mode, "buffered") && strcmp(mode, "direct"))
		usage();
	direct = !strcmp(mode, "direct");
	snprintf(path, sizeof(path), "%s/proxyrt_bench_filewrite.%d", dir, (int)getpid());
	fw.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0600);
	if (fw.fd < 0) {
		fprintf(stderr, "proxyrt_bench: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	unlink(path);
	fw.lat = xcalloc((size_t)fw.writes, sizeof(*fw.lat), "writes");
	if (posix_memalign(&fw.buf, 4096, FW_BLOCK)) {
		fprintf(stderr, "proxyrt_bench: out of memory for a %u-byte block\n", FW_BLOCK);
		return 1;
	}
	memset(fw.buf, 'x', FW_BLOCK);
	fw_run(&fw, aff ? 0 : PRT_RT_NO_IOWQ_AFF);
	close(fw.fd);
	check(fw.err, "prt_write");
	qsort(fw.lat, (size_t)fw.writes, sizeof(*fw.lat), cmp_i64);
	printf("peer=proxyrt workload=filewrite variant=%s mode=%s block_kib=%u write_p50_us=%.1f "
	       "write_p99_us=%.1f write_max_us=%.1f writes=%ld spin_us=%llu spinner_yields=%llu "
	       "spinner_capped=%d elapsed_ms=%.1f sched=%s workers=1 cpus=%d\n",
	       argv[2], mode, FW_BLOCK / 1024, fw_pct(fw.lat, fw.writes, 50),
	       fw_pct(fw.lat, fw.writes, 99), fw_pct(fw.lat, fw.writes, 100), fw.writes,
	       (unsigned long long)(fw.spin_ns / 1000),
	       (unsigned long long)atomic_load(&fw.yields), atomic_load(&fw.capped),
	       (double)fw.elapsed / 1e6,
	       sched_getscheduler(0) == SCHED_FIFO ? "fifo" : "other", allowed_cpus());
	free(fw.lat);
	free(fw.buf);
	return 0;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (!prt_version_check(PRT_VERSION_MAJOR, PRT_VERSION_MINOR)) {
		fprintf(stderr, "proxyrt_bench: linked proxyrt %d does not match headers %d\n",
			prt_version(), PRT_VERSION_NUMBER);
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(argv[1], "yield"))
		return bench_yield(argc, argv);
	if (!strcmp(argv[1], "spawn"))
		return bench_spawn(argc, argv);
	if (!strcmp(argv[1], "park"))
		return bench_park(argc, argv);
	if (!strcmp(argv[1], "mutex"))
		return bench_mutex(argc, argv);
	if (!strcmp(argv[1], "inversion"))
		return bench_inversion(argc, argv, 0);
	if (!strcmp(argv[1], "rwinversion"))
		return bench_inversion(argc, argv, 1);
	if (!strcmp(argv[1], "xcore"))
		return bench_xcore(argc, argv);
	if (!strcmp(argv[1], "http"))
		return bench_http(argc, argv);
	if (!strcmp(argv[1], "preempt"))
		return bench_preempt(argc, argv);
	if (!strcmp(argv[1], "hogwake"))
		return bench_hogwake(argc, argv);
	if (!strcmp(argv[1], "filewrite"))
		return bench_filewrite(argc, argv);
	fprintf(stderr, "proxyrt_bench: unknown subcommand '%s'\n", argv[1]);
	usage();
}
