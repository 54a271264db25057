// SPDX-License-Identifier: MIT
/*
 * config_table: a configuration table shared through a prt_rwlock_t.
 *
 * On one worker:
 *   - request handlers (16 fibers, priority 16) wait for a request (a
 *     short sleep), then look a setting up under the read lock: they
 *     read the table together;
 *   - a reloader (priority 8) rewrites the whole table under the write
 *     lock every 10 ms; the reload is long (about 0.4 ms here), and
 *     yields now and then;
 *   - a batch job (priority 12) computes for 4 ms every 10 ms, yielding
 *     between slices. Each reload starts 200 us before a burst, as two
 *     periodic jobs whose phases drift do now and then (left to drift,
 *     they met too rarely for a run of this length to show it: a
 *     review);
 *   - an admin (priority 24) changes a setting every 7 ms, and times how
 *     long it waits for the write lock.
 * Every lookup checks that the table is whole (every entry of one
 * version): a torn read would be a bug in the lock.
 *
 * It runs twice: with proxy execution, then without (the lock's
 * PRT_RWLOCK_PROXY_OFF). Without, the batch job's burst starts while the
 * reloader holds the write lock (it preempts the reloader, or takes the
 * worker at the reloader's next yield), keeps the worker to the burst's
 * end, and the handlers and the admin wait for the batch job (priority
 * inversion: their waits reach the burst's 4 ms).
 * With it, a handler or the admin that waits runs the reloader in its
 * place, at its priority: the reload finishes, and they wait only for
 * it. With --dump, the runtime is dumped once while the admin waits
 * behind the reloader (the lock's name and holder in the fiber and
 * chain lines).
 *
 *   ./config_table [--dump]
 *
 * Exits 0 if every lookup saw a whole table, 1 otherwise.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <proxyrt/proxyrt.h>

#define NKEYS 64
#define NHANDLERS 16
#define RUN_MS 300
#define HANDLER_PRIO 16
#define RELOADER_PRIO 8
#define BATCH_PRIO 12
#define ADMIN_PRIO 24

struct entry {
	unsigned version; /* the reload that wrote it */
	unsigned value;
};

static struct {
	prt_rwlock_t lock;
	unsigned version;      /* lock */
	struct entry e[NKEYS]; /* lock */
} table;

/* Where the batch job's bursts and the reloads are timed from (prt_now_ns). */
static uint64_t t_base;

/* One run's figures. */
static struct {
	atomic_int stop;
	atomic_long lookups, torn, reloads, changes;
	atomic_long admin_wait_ns, admin_wait_max_ns, lookup_wait_max_ns;
} run;

static atomic_int dump_asked, dumped;
static prt_runtime_t *rt;

/* Work without runtime calls, as parsing or computing would be. */
static unsigned work(unsigned x, int n)
{
	for (int i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		__asm__ volatile("" : "+r"(x));
	}
	return x;
}

static void note_max(atomic_long *max, long v)
{
	long m = atomic_load(max);

	while (v > m && !atomic_compare_exchange_weak(max, &m, v))
		;
}

/* A lookup: whole if every entry carries the table's version. */
static void lookup(unsigned key)
{
	uint64_t t0 = prt_now_ns();
	bool whole = true;

	prt_rwlock_rdlock(&table.lock);
	note_max(&run.lookup_wait_max_ns, (long)(prt_now_ns() - t0));
	for (int i = 0; i < NKEYS; i++)
		whole &= table.e[i].version == table.version;
	work(table.e[key % NKEYS].value, 500);
	prt_rwlock_unlock(&table.lock);
	atomic_fetch_add(&run.lookups, 1);
	if (!whole)
		atomic_fetch_add(&run.torn, 1);
}

static void *handler(void *arg)
{
	unsigned key = (unsigned)(uintptr_t)arg;

	while (!atomic_load(&run.stop)) {
		prt_sleep_ns(200000 + (key % 7) * 20000); /* the next request */
		lookup(key++);
	}
	return NULL;
}

/* Rewrite the whole table as a new version; @yield: a long reload that yields. */
static void rewrite(unsigned salt, bool yield)
{
	table.version++;
	for (int i = 0; i < NKEYS; i++) {
		table.e[i].value = work(salt + (unsigned)i, yield ? 4000 : 500);
		table.e[i].version = table.version;
		if (yield && i % 8 == 7)
			prt_yield();
	}
}

static void *reloader(void *arg)
{
	uint64_t next = t_base + 1000000 - 200000; /* 200 us before the first burst */

	(void)arg;
	while (!atomic_load(&run.stop)) {
		prt_sleep_until(next);
		next += 10000000;
		prt_rwlock_wrlock(&table.lock);
		rewrite(table.version * 7u, true);
		prt_rwlock_unlock(&table.lock);
		atomic_fetch_add(&run.reloads, 1);
	}
	return NULL;
}

/* Every 10 ms, a 4 ms burst of computing in 100 us slices (yielding between them). */
static void *batch(void *arg)
{
	uint64_t next = t_base + 1000000;
	unsigned x = 1;

	(void)arg;
	while (!atomic_load(&run.stop)) {
		prt_sleep_until(next);
		uint64_t end = next + 4000000;

		while (prt_now_ns() < end && !atomic_load(&run.stop)) {
			uint64_t slice = prt_now_ns() + 100000;

			while (prt_now_ns() < slice)
				x = work(x, 200);
			prt_yield();
		}
		next += 10000000;
	}
	return (void *)(uintptr_t)(x & 1);
}

static void *admin(void *arg)
{
	(void)arg;
	while (!atomic_load(&run.stop)) {
		uint64_t t0, waited;

		prt_sleep_ns(7000000);
		t0 = prt_now_ns();
		prt_rwlock_wrlock(&table.lock);
		waited = prt_now_ns() - t0;
		rewrite(42, false);
		prt_rwlock_unlock(&table.lock);
		atomic_fetch_add(&run.changes, 1);
		atomic_fetch_add(&run.admin_wait_ns, (long)waited);
		note_max(&run.admin_wait_max_ns, (long)waited);
	}
	return NULL;
}

/* With --dump: once, while the admin waits behind the reloader, show the runtime. */
static void *dumper(void *arg)
{
	prt_fiber_t adm = *(prt_fiber_t *)arg;
	prt_wait_link_t l;

	while (!atomic_load(&run.stop) && !atomic_load(&dumped)) {
		if (prt_fiber_wait_chain(adm, &l, 1) == 1 && l.kind == PRT_WAIT_LINK_RWLOCK_WR) {
			printf("--- the runtime while the admin waits for \"config\":\n");
			fflush(stdout);
			prt_runtime_dump(rt, 1);
			atomic_store(&dumped, 1);
		}
		prt_sleep_ns(200000);
	}
	return NULL;
}

static prt_fiber_t spawn(int prio, void *(*fn)(void *), void *arg, const char *name)
{
	prt_fiber_attr_t a;
	prt_fiber_t f;
	int err;

	prt_fiber_attr_init(&a);
	a.priority = prio;
	a.name = name;
	if ((err = prt_spawn(rt, &f, &a, fn, arg))) {
		fprintf(stderr, "config_table: spawn: %s\n", prt_strerror(err));
		exit(1);
	}
	return f;
}

/* One run of RUN_MS with the lock's proxy setting @proxy. */
static void one_run(int proxy, const char *label)
{
	prt_rwlockattr_t a;
	prt_fiber_t h[NHANDLERS], rl, bt, adm, d = { 0, 0 };
	prt_worker_stats_t st0, st1;
	long changes;
	int err;

	prt_rwlockattr_init(&a);
	prt_rwlockattr_setname(&a, "config");
	prt_rwlockattr_setproxy(&a, proxy);
	if ((err = prt_rwlock_init(&table.lock, &a))) {
		fprintf(stderr, "config_table: prt_rwlock_init: %s\n", prt_strerror(err));
		exit(1);
	}
	rewrite(1, false);
	memset(&run, 0, sizeof(run));
	prt_worker_stats(rt, 0, &st0);
	t_base = prt_now_ns();
	for (int i = 0; i < NHANDLERS; i++)
		h[i] = spawn(HANDLER_PRIO, handler, (void *)(uintptr_t)(i * 5), "handler");
	rl = spawn(RELOADER_PRIO, reloader, NULL, "reloader");
	bt = spawn(BATCH_PRIO, batch, NULL, "batch");
	adm = spawn(ADMIN_PRIO, admin, NULL, "admin");
	if (proxy == PRT_RWLOCK_PROXY_ON && atomic_load(&dump_asked))
		d = spawn(ADMIN_PRIO + 1, dumper, &adm, "dumper");
	/* The main thread is no fiber: it just waits. */
	nanosleep(&(struct timespec){ RUN_MS / 1000, (RUN_MS % 1000) * 1000000L }, NULL);
	atomic_store(&run.stop, 1);
	for (int i = 0; i < NHANDLERS; i++)
		prt_join(h[i], NULL);
	prt_join(rl, NULL);
	prt_join(bt, NULL);
	prt_join(adm, NULL);
	if (d.p)
		prt_join(d, NULL);
	prt_worker_stats(rt, 0, &st1);
	changes = atomic_load(&run.changes);
	printf("%-11s lookups=%-6ld torn=%ld reloads=%-3ld admin_changes=%-3ld"
	       " admin_wait_us mean=%.0f max=%.0f lookup_wait_max_us=%.0f proxy_picks=%llu\n",
	       label, atomic_load(&run.lookups), atomic_load(&run.torn), atomic_load(&run.reloads),
	       changes,
	       changes ? (double)atomic_load(&run.admin_wait_ns) / (double)changes / 1e3 : 0.0,
	       (double)atomic_load(&run.admin_wait_max_ns) / 1e3,
	       (double)atomic_load(&run.lookup_wait_max_ns) / 1e3,
	       (unsigned long long)(st1.proxy_picks - st0.proxy_picks));
	prt_rwlock_destroy(&table.lock);
}

int main(int argc, char **argv)
{
	prt_runtime_config_t cfg;
	long torn = 0, ok = 1;
	int err;

	atomic_store(&dump_asked, argc > 1 && !strcmp(argv[1], "--dump"));
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1; /* everything competes for one worker: the inversion is plain to see */
	if ((err = prt_runtime_create(&rt, &cfg))) {
		fprintf(stderr, "config_table: prt_runtime_create: %s\n", prt_strerror(err));
		return 1;
	}
	printf("config_table: %d handlers (prio %d), a reloader (%d), a batch job (%d), an admin"
	       " (%d), one worker, %d ms each\n",
	       NHANDLERS, HANDLER_PRIO, RELOADER_PRIO, BATCH_PRIO, ADMIN_PRIO, RUN_MS);
	one_run(PRT_RWLOCK_PROXY_ON, "proxy:");
	torn += atomic_load(&run.torn);
	ok &= atomic_load(&run.lookups) > 0 && atomic_load(&run.reloads) > 0;
	one_run(PRT_RWLOCK_PROXY_OFF, "no proxy:");
	torn += atomic_load(&run.torn);
	ok &= atomic_load(&run.lookups) > 0;
	prt_runtime_destroy(rt);
	if (torn || !ok) {
		printf("config_table: FAILED\n");
		return 1;
	}
	printf("config_table: ok (no torn table)\n");
	return 0;
}
