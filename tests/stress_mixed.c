/* SPDX-License-Identifier: MIT */
/*
 * The stress suite (meson test --suite stress): thousands of fibers on
 * every worker, each with a random priority and affinity, doing a random
 * mix of
 *   - mutex rounds (one or two mutexes in index order, or a random pair
 *     with timedlock and back-off), each guarding an exact counter;
 *   - I/O under a lock: 8 tagged bytes through a socketpair while holding
 *     that pair's mutex, so waiters meet an owner asleep in I/O;
 *   - a condvar-guarded pool of tokens (take one, yield, give it back);
 *   - rwlock rounds: read or write one of a few rwlocks (timed or not;
 *     some write sections also take a mutex: always rwlock -> mutex),
 *     readers and writers checked to exclude each other, writes counted;
 *   - yields, short sleeps, priority changes;
 *   - migrations: a new random affinity, checked at the next scheduling
 *     point (the fiber must then run on a worker of its set);
 * plus two plain threads on the same mutexes and token pool.
 *
 * A watchdog thread fails the run with a fiber dump (prt_runtime_dump)
 * if any fiber makes no progress for too long. At the end every counter
 * must be exact, every token back, every byte echoed, every fiber joined.
 * Fibers think (sleep) between operations so the machine is not
 * saturated: with strict priorities a saturated machine starves the
 * lowest levels, which the watchdog would rightly call a hang.
 *
 * Two runs: all cores, and a synthetic topology with more workers than
 * the machine has cores. PRT_STRESS_SECONDS and PRT_STRESS_FIBERS
 * override the defaults (fewer fibers in sanitizer builds).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test_common.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define X_MUTEXES 32
#define X_PAIRS 32
#define X_TOKENS 48
#define X_RWLOCKS 8
#define X_THREADS 2
#define X_FIBERS_DEFAULT (SANITIZED ? 2000 : 3000)
/* Mean think time between a fiber's operations, in microseconds. */
#define X_THINK_US (SANITIZED ? 40000 : 15000)
/* A fiber without progress for this long is hung. */
#define X_STALL_NS ((SANITIZED ? 60ull : 20ull) * 1000000000ull)

enum {
	OP_MUTEX, OP_PAIR, OP_IO, OP_TOKEN, OP_RWLOCK, OP_YIELD, OP_MIGRATE, OP_PRIO, OP_SLEEP,
	OP_N
};
static const char *const op_names[OP_N] = { "mutex", "pair",    "io",   "token", "rwlock",
					    "yield", "migrate", "prio", "sleep" };

struct xrun {
	prt_runtime_t *rt;
	int nworkers, nfibers;
	prt_mutex_t m[X_MUTEXES];
	long cnt[X_MUTEXES];            /* under m[i] */
	atomic_long expect[X_MUTEXES];
	_Atomic(void *) holder[X_MUTEXES];
	prt_mutex_t pm[X_PAIRS];
	int sp[X_PAIRS][2];
	uint64_t seq[X_PAIRS];          /* under pm[i] */
	prt_mutex_t bank_m;
	prt_cond_t bank_c;
	int tokens;                     /* under bank_m */
	prt_rwlock_t rw[X_RWLOCKS];
	atomic_int rw_state[X_RWLOCKS]; /* readers inside rw[i], or -1 while a writer is */
	long rw_writes[X_RWLOCKS];      /* under rw[i] for writing */
	atomic_long rw_expect[X_RWLOCKS];
	atomic_long ops[OP_N];
	atomic_long violations, io_errors, aff_errors, deadlocks, timeouts;
	atomic_long *progress;          /* per fiber */
	atomic_int *finished;           /* per fiber */
	prt_fiber_t *fibers;
	atomic_int stop, done;
};

static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* Critical section: the holder slot proves exclusion, the counter counts. */
static void guarded_add(struct xrun *x, int i, void *me)
{
	if (atomic_exchange(&x->holder[i], me) != NULL)
		atomic_fetch_add(&x->violations, 1);
	x->cnt[i]++;
	atomic_fetch_add(&x->expect[i], 1);
	if (atomic_exchange(&x->holder[i], NULL) != me)
		atomic_fetch_add(&x->violations, 1);
}

/* One or two mutexes in index order: never a deadlock. */
static void op_mutex(struct xrun *x, unsigned *seed, void *me)
{
	int a = rand_r(seed) % X_MUTEXES, b = rand_r(seed) % X_MUTEXES;

	if (a > b) {
		int t = a;

		a = b;
		b = t;
	}
	prt_mutex_lock(&x->m[a]);
	guarded_add(x, a, me);
	if (b != a) {
		prt_mutex_lock(&x->m[b]);
		guarded_add(x, b, me);
		prt_mutex_unlock(&x->m[b]);
	}
	prt_mutex_unlock(&x->m[a]);
}

/* A random pair in random order with timedlock: ETIMEDOUT and EDEADLK back off. */
static void op_pair(struct xrun *x, unsigned *seed, void *me)
{
	int a = rand_r(seed) % X_MUTEXES, b = (a + 1 + rand_r(seed) % (X_MUTEXES - 1)) % X_MUTEXES;
	struct timespec ts = test_realtime_in(200000 + rand_r(seed) % 2000000);
	int e;

	if ((e = prt_mutex_timedlock(&x->m[a], &ts))) {
		atomic_fetch_add(e == EDEADLK ? &x->deadlocks : &x->timeouts, 1);
		return;
	}
	guarded_add(x, a, me);
	e = prt_mutex_timedlock(&x->m[b], &ts);
	if (!e) {
		guarded_add(x, b, me);
		prt_mutex_unlock(&x->m[b]);
	} else {
		atomic_fetch_add(e == EDEADLK ? &x->deadlocks : &x->timeouts, 1);
	}
	prt_mutex_unlock(&x->m[a]);
}

/* 8 tagged bytes through pair @p while holding its mutex. */
static void op_io(struct xrun *x, unsigned *seed, uint64_t tag)
{
	int p = rand_r(seed) % X_PAIRS;
	uint64_t v, got = 0;

	prt_mutex_lock(&x->pm[p]);
	v = (++x->seq[p] << 20) ^ tag;
	if (prt_write_all(x->sp[p][0], &v, sizeof(v), 0) != sizeof(v) ||
	    prt_read_all(x->sp[p][1], &got, sizeof(got), 0) != sizeof(got) || got != v)
		atomic_fetch_add(&x->io_errors, 1);
	prt_mutex_unlock(&x->pm[p]);
}

/*
 * Take a token (waiting on the condvar, in 1 s slices: a return signals
 * one waiter, and x_run broadcasts at the end), hold it a moment, give
 * it back. Not 10 ms slices: with a thousand fibers out of tokens, their
 * timeouts made 100k relocks of bank_m a second, the token holders of
 * the lowest levels (which need bank_m to give theirs back) starved
 * behind them by priority, and the starvation kept the tokens out: a
 * livelock of the test's own making (low levels waiting 20 s on bank_m,
 * tokens 0, the higher levels running on).
 */
static void op_token(struct xrun *x, bool fiber)
{
	bool got = false;

	prt_mutex_lock(&x->bank_m);
	while (!x->tokens && !atomic_load(&x->stop)) {
		struct timespec ts = test_realtime_in(1000 * 1000 * 1000);

		prt_cond_timedwait(&x->bank_c, &x->bank_m, &ts);
	}
	if (x->tokens > 0) {
		x->tokens--;
		got = true;
	}
	prt_mutex_unlock(&x->bank_m);
	if (!got)
		return;
	if (fiber)
		prt_yield();
	prt_mutex_lock(&x->bank_m);
	x->tokens++;
	prt_cond_signal(&x->bank_c);
	prt_mutex_unlock(&x->bank_m);
}

/*
 * An rwlock call gave up: ETIMEDOUT is counted; anything else is a
 * violation, EDEADLK included (a fiber or thread waits for its rwlock
 * holding nothing: rwlocks are taken first, and no one waits for one
 * holding a mutex, so no cycle can come back to it).
 */
static void rw_gave_up(struct xrun *x, int e)
{
	if (e == ETIMEDOUT)
		atomic_fetch_add(&x->timeouts, 1);
	else
		atomic_fetch_add(&x->violations, 1);
}

/* Read one of the rwlocks: no writer may be inside meanwhile. */
static void rw_read(struct xrun *x, unsigned *seed, int i, bool fiber)
{
	int e = rand_r(seed) % 4 ? prt_rwlock_rdlock(&x->rw[i])
				 : prt_rwlock_timedrdlock_ns(&x->rw[i], 200000 + rand_r(seed) % 2000000);

	if (e) {
		rw_gave_up(x, e);
		return;
	}
	if (atomic_fetch_add(&x->rw_state[i], 1) < 0)
		atomic_fetch_add(&x->violations, 1);
	if (fiber && rand_r(seed) % 2)
		prt_yield();
	if (atomic_fetch_sub(&x->rw_state[i], 1) < 1)
		atomic_fetch_add(&x->violations, 1);
	prt_rwlock_unlock(&x->rw[i]);
}

/* Write one of the rwlocks alone; sometimes take a mutex inside (rwlock -> mutex). */
static void rw_write(struct xrun *x, unsigned *seed, int i, bool fiber, void *me)
{
	int e = rand_r(seed) % 4 ? prt_rwlock_wrlock(&x->rw[i])
				 : prt_rwlock_timedwrlock_ns(&x->rw[i], 200000 + rand_r(seed) % 2000000);
	int zero = 0;

	if (e) {
		rw_gave_up(x, e);
		return;
	}
	if (!atomic_compare_exchange_strong(&x->rw_state[i], &zero, -1))
		atomic_fetch_add(&x->violations, 1);
	x->rw_writes[i]++;
	atomic_fetch_add(&x->rw_expect[i], 1);
	if (rand_r(seed) % 4 == 0) {
		int m = rand_r(seed) % X_MUTEXES;

		prt_mutex_lock(&x->m[m]);
		guarded_add(x, m, me);
		prt_mutex_unlock(&x->m[m]);
	}
	if (fiber && rand_r(seed) % 2)
		prt_yield();
	if (atomic_exchange(&x->rw_state[i], 0) != -1)
		atomic_fetch_add(&x->violations, 1);
	prt_rwlock_unlock(&x->rw[i]);
}

static void op_rwlock(struct xrun *x, unsigned *seed, bool fiber, void *me)
{
	int i = rand_r(seed) % X_RWLOCKS;

	if (rand_r(seed) % 8 < 5)
		rw_read(x, seed, i, fiber);
	else
		rw_write(x, seed, i, fiber, me);
}

static void random_set(struct xrun *x, unsigned *seed, prt_workerset_t *set)
{
	prt_workerset_zero(set);
	if (rand_r(seed) % 4 == 0) {
		for (int i = 0; i < x->nworkers; i++) /* anywhere */
			prt_workerset_add(set, i);
		return;
	}
	do {
		for (int i = 0; i < x->nworkers; i++)
			if (rand_r(seed) % 3 == 0)
				prt_workerset_add(set, i);
	} while (!prt_workerset_count(set));
}

static void op_migrate(struct xrun *x, unsigned *seed)
{
	prt_workerset_t set;

	random_set(x, seed, &set);
	if (prt_fiber_set_affinity(prt_self(), &set) != 0) {
		atomic_fetch_add(&x->aff_errors, 1);
		return;
	}
	prt_yield(); /* a scheduling point: from here on it runs inside @set */
	if (!prt_workerset_has(&set, prt_worker_index()))
		atomic_fetch_add(&x->aff_errors, 1);
}

struct farg {
	struct xrun *x;
	int idx;
};

static void *x_fiber(void *arg)
{
	struct farg *fa = arg;
	struct xrun *x = fa->x;
	int idx = fa->idx;
	unsigned seed = (unsigned)idx * 2654435761u + 1;

	while (!atomic_load(&x->stop)) {
		int op = rand_r(&seed) % OP_N;

		switch (op) {
		case OP_MUTEX: op_mutex(x, &seed, fa); break;
		case OP_PAIR: op_pair(x, &seed, fa); break;
		case OP_IO: op_io(x, &seed, (uint64_t)idx); break;
		case OP_TOKEN: op_token(x, true); break;
		case OP_RWLOCK: op_rwlock(x, &seed, true, fa); break;
		case OP_YIELD: prt_yield(); break;
		case OP_MIGRATE: op_migrate(x, &seed); break;
		case OP_PRIO: prt_fiber_set_priority(prt_self(), rand_r(&seed) % PRT_PRIO_LEVELS); break;
		case OP_SLEEP: prt_sleep_ns((uint64_t)(rand_r(&seed) % 200) * 1000); break;
		}
		atomic_fetch_add_explicit(&x->ops[op], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&x->progress[idx], 1, memory_order_relaxed);
		prt_sleep_ns((uint64_t)(rand_r(&seed) % (2 * X_THINK_US)) * 1000);
	}
	atomic_store(&x->finished[idx], 1);
	return NULL;
}

static void *x_thread(void *arg)
{
	struct farg *fa = arg;
	struct xrun *x = fa->x;
	unsigned seed = 77u + (unsigned)fa->idx;

	while (!atomic_load(&x->stop)) {
		switch (rand_r(&seed) % 4) {
		case 0: op_mutex(x, &seed, fa); break;
		case 1: op_pair(x, &seed, fa); break;
		case 2: op_rwlock(x, &seed, false, fa); break;
		default: op_token(x, false); break;
		}
		usleep(rand_r(&seed) % 500);
	}
	return NULL;
}

/* Fails the run, with a dump, when a fiber has not moved for X_STALL_NS. */
static void *x_watchdog(void *arg)
{
	struct xrun *x = arg;
	long *seen = calloc((size_t)x->nfibers, sizeof(long));
	uint64_t *since = calloc((size_t)x->nfibers, sizeof(uint64_t));
	uint64_t now = test_mono_ns();

	if (!seen || !since)
		abort();
	for (int i = 0; i < x->nfibers; i++)
		since[i] = now, seen[i] = -1;
	while (!atomic_load(&x->done)) {
		now = test_mono_ns();
		for (int i = 0; i < x->nfibers; i++) {
			long p = atomic_load_explicit(&x->progress[i], memory_order_relaxed);

			if (p != seen[i] || atomic_load(&x->finished[i])) {
				seen[i] = p;
				since[i] = now;
			} else if (now - since[i] > X_STALL_NS) {
				fprintf(stderr,
					"watchdog: fiber %llu (index %d) made no progress for %llu s "
					"(%ld operations before); runtime dump:\n",
					(unsigned long long)prt_fiber_id(x->fibers[i]), i,
					(unsigned long long)(X_STALL_NS / 1000000000u), p);
				prt_runtime_dump(x->rt, STDERR_FILENO);
				fprintf(stderr, "watchdog: stress run hung\n");
				if (getenv("PRT_STRESS_HOLD")) /* leave it for a debugger */
					pause();
				abort();
			}
		}
		usleep(200000);
	}
	free(seen);
	free(since);
	return NULL;
}

static void x_run(const char *label, int nworkers, const char *synthetic, long seconds)
{
	struct xrun *x = calloc(1, sizeof(*x));
	prt_runtime_config_t cfg;
	pthread_t wd, th[X_THREADS];
	struct farg *fa, ta[X_THREADS];
	uint64_t t0, t1;
	long total = 0, sum = 0;

	assert_non_null(x);
	x->nfibers = (int)env_long("PRT_STRESS_FIBERS", X_FIBERS_DEFAULT);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.topology_synthetic = synthetic;
	assert_int_equal(prt_runtime_create(&x->rt, &cfg), 0);
	x->nworkers = prt_runtime_nworkers(x->rt);
	for (int i = 0; i < X_MUTEXES; i++)
		assert_int_equal(prt_mutex_init(&x->m[i], NULL), 0);
	for (int i = 0; i < X_PAIRS; i++) {
		assert_int_equal(prt_mutex_init(&x->pm[i], NULL), 0);
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x->sp[i]), 0);
	}
	assert_int_equal(prt_mutex_init(&x->bank_m, NULL), 0);
	assert_int_equal(prt_cond_init(&x->bank_c), 0);
	x->tokens = X_TOKENS;
	for (int i = 0; i < X_RWLOCKS; i++)
		assert_int_equal(prt_rwlock_init(&x->rw[i], NULL), 0);
	x->progress = calloc((size_t)x->nfibers, sizeof(*x->progress));
	x->finished = calloc((size_t)x->nfibers, sizeof(*x->finished));
	x->fibers = calloc((size_t)x->nfibers, sizeof(*x->fibers));
	fa = calloc((size_t)x->nfibers, sizeof(*fa));
	assert_true(x->progress && x->finished && x->fibers && fa);

	t0 = test_mono_ns();
	for (int i = 0; i < x->nfibers; i++) {
		unsigned seed = (unsigned)i * 31u + 7u;
		prt_fiber_attr_t a;
		char name[PRT_NAME_MAX];

		fa[i].x = x;
		fa[i].idx = i;
		prt_fiber_attr_init(&a);
		snprintf(name, sizeof(name), "stress-%d", i);
		a.name = name;
		a.priority = rand_r(&seed) % PRT_PRIO_LEVELS;
		if (rand_r(&seed) % 2) {
			a.has_affinity = 1;
			random_set(x, &seed, &a.affinity);
		}
		assert_int_equal(prt_spawn(x->rt, &x->fibers[i], &a, x_fiber, &fa[i]), 0);
	}
	for (int i = 0; i < X_THREADS; i++) {
		ta[i].x = x;
		ta[i].idx = -1 - i;
		assert_int_equal(pthread_create(&th[i], NULL, x_thread, &ta[i]), 0);
	}
	assert_int_equal(pthread_create(&wd, NULL, x_watchdog, x), 0);
	while (test_mono_ns() - t0 < (uint64_t)seconds * 1000000000u)
		usleep(100000);
	atomic_store(&x->stop, 1);
	/* Token waiters see stop now (under bank_m: none misses the broadcast). */
	prt_mutex_lock(&x->bank_m);
	prt_cond_broadcast(&x->bank_c);
	prt_mutex_unlock(&x->bank_m);
	for (int i = 0; i < x->nfibers; i++) {
		void *res = (void *)1;

		assert_int_equal(prt_join(x->fibers[i], &res), 0);
		assert_null(res);
	}
	for (int i = 0; i < X_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	t1 = test_mono_ns();
	atomic_store(&x->done, 1);
	assert_int_equal(pthread_join(wd, NULL), 0);

	/* Exact at the end: nothing lost, nothing doubled. */
	for (int i = 0; i < X_MUTEXES; i++) {
		assert_int_equal(x->cnt[i], atomic_load(&x->expect[i]));
		sum += x->cnt[i];
		assert_int_equal(prt_mutex_destroy(&x->m[i]), 0);
	}
	for (int i = 0; i < X_PAIRS; i++) {
		assert_int_equal(prt_mutex_destroy(&x->pm[i]), 0);
		close(x->sp[i][0]);
		close(x->sp[i][1]);
	}
	for (int i = 0; i < X_RWLOCKS; i++) {
		assert_int_equal(x->rw_writes[i], atomic_load(&x->rw_expect[i]));
		assert_int_equal(atomic_load(&x->rw_state[i]), 0);
		assert_int_equal(prt_rwlock_destroy(&x->rw[i]), 0);
	}
	assert_int_equal(x->tokens, X_TOKENS);
	assert_int_equal(prt_cond_destroy(&x->bank_c), 0);
	assert_int_equal(prt_mutex_destroy(&x->bank_m), 0);
	assert_int_equal(atomic_load(&x->violations), 0);
	assert_int_equal(atomic_load(&x->io_errors), 0);
	assert_int_equal(atomic_load(&x->aff_errors), 0);
	for (int i = 0; i < x->nfibers; i++)
		assert_true(atomic_load(&x->finished[i]));
	for (int op = 0; op < OP_N; op++) {
		assert_true(atomic_load(&x->ops[op]) > 0); /* every kind really ran */
		total += atomic_load(&x->ops[op]);
	}
	fprintf(stderr, "stress %s: fibers=%d threads=%d workers=%d seconds=%.1f ops=%ld "
		"lock_increments=%ld deadlocks=%ld timeouts=%ld lost=0 (",
		label, x->nfibers, X_THREADS, x->nworkers, (double)(t1 - t0) / 1e9, total, sum,
		atomic_load(&x->deadlocks), atomic_load(&x->timeouts));
	for (int op = 0; op < OP_N; op++)
		fprintf(stderr, "%s%s=%ld", op ? " " : "", op_names[op], atomic_load(&x->ops[op]));
	fprintf(stderr, ")\n");
	test_stress_preempt_report(x->rt, label, 1);
	assert_int_equal(prt_runtime_destroy(x->rt), 0);
	free(fa);
	free(x->progress);
	free(x->finished);
	free(x->fibers);
	free(x);
}

/* PRT_STRESS_ONLY=name runs only that one (for debugging). */
static bool skip_run(const char *label)
{
	const char *only = getenv("PRT_STRESS_ONLY");

	return only && *only && strcmp(only, label) != 0;
}

static void test_stress_all_cores(void **state)
{
	(void)state;
	if (skip_run("all-cores"))
		skip();
	x_run("all-cores", 0, NULL, env_long("PRT_STRESS_SECONDS", 20));
}

/* 16 workers on a described 2x4-core machine, over this machine's cores. */
static void test_stress_synthetic(void **state)
{
	(void)state;
	if (skip_run("synthetic-16w"))
		skip();
	x_run("synthetic-16w", 16, "pack:2 core:4 pu:2", env_long("PRT_STRESS_SECONDS", 20) / 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_all_cores),
		cmocka_unit_test(test_stress_synthetic),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
