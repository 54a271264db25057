/* SPDX-License-Identifier: MIT */
/*
 * Mutex stress: many fibers (mixed priorities, two workers) and two
 * plain threads take random sets of mutexes in random orders with
 * timedlock, backing off on ETIMEDOUT and EDEADLK, for a bounded time.
 * Each mutex guards a counter and an owner slot: the slot proves mutual
 * exclusion, the counters must equal the successful rounds. A watchdog
 * thread fails the test if nothing progresses for a while, printing
 * every fiber's wait chain (prt_fiber_wait_chain).
 * Also checks prt_fiber_wait_chain itself on a known chain.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_common.h"

#define S_MUTEXES 12
#define S_FIBERS 48
#define S_THREADS 2
#define S_RUN_NS 2000000000ull   /* 2 s */
#define S_STALL_NS 10000000000ull /* no progress for 10 s: hung */

static prt_mutex_t s_m[S_MUTEXES];
static long s_count[S_MUTEXES];
static atomic_long s_expect[S_MUTEXES];
static _Atomic(void *) s_holder[S_MUTEXES];
static atomic_long s_progress, s_rounds, s_timeouts, s_deadlocks, s_violations;
static atomic_int s_stop, s_done;
static prt_fiber_t s_fibers[S_FIBERS];
static prt_runtime_t *s_rt;

/* One round: lock 1-3 distinct mutexes in random order; 1 if all were taken. */
static int round_once(unsigned *seed, void *me, bool fiber)
{
	int pick[3], n = 1 + rand_r(seed) % 3, held = 0, ok = 1;

	for (int i = 0; i < n; i++) {
		int again;

		do {
			pick[i] = rand_r(seed) % S_MUTEXES;
			again = 0;
			for (int k = 0; k < i; k++)
				again |= pick[k] == pick[i];
		} while (again);
	}
	for (; held < n; held++) {
		struct timespec ts = test_realtime_in(rand_r(seed) % 2000000);
		int e = prt_mutex_timedlock(&s_m[pick[held]], &ts);

		if (e == ETIMEDOUT) {
			atomic_fetch_add(&s_timeouts, 1);
		} else if (e == EDEADLK) {
			atomic_fetch_add(&s_deadlocks, 1);
		} else if (e != 0) {
			atomic_fetch_add(&s_violations, 1);
		}
		if (e) {
			ok = 0;
			break;
		}
		if (atomic_exchange(&s_holder[pick[held]], me) != NULL)
			atomic_fetch_add(&s_violations, 1);
	}
	if (ok) {
		for (int i = 0; i < n; i++) {
			s_count[pick[i]]++;
			atomic_fetch_add(&s_expect[pick[i]], 1);
		}
		if (fiber && rand_r(seed) % 4 == 0)
			prt_yield();
	}
	/* Release in a random rotation of the taking order. */
	for (int i = 0, r = held ? rand_r(seed) % held : 0; i < held; i++) {
		int k = pick[(i + r) % held];

		if (atomic_exchange(&s_holder[k], NULL) != me)
			atomic_fetch_add(&s_violations, 1);
		if (prt_mutex_unlock(&s_m[k]) != 0)
			atomic_fetch_add(&s_violations, 1);
	}
	if (!ok) { /* back off */
		if (fiber)
			prt_sleep_ns(rand_r(seed) % 50000);
		else
			usleep(rand_r(seed) % 50);
	}
	return ok;
}

static void *stress_fiber(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;
	void *me = &seed;

	while (!atomic_load(&s_stop)) {
		atomic_fetch_add(&s_rounds, round_once(&seed, me, true));
		atomic_fetch_add(&s_progress, 1);
	}
	return NULL;
}

static void *stress_thread(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;
	void *me = &seed;

	while (!atomic_load(&s_stop)) {
		atomic_fetch_add(&s_rounds, round_once(&seed, me, false));
		atomic_fetch_add(&s_progress, 1);
	}
	return NULL;
}

static void dump_chains(void)
{
	fprintf(stderr, "watchdog: no progress for %llu s; wait chains:\n",
		(unsigned long long)(S_STALL_NS / 1000000000u));
	for (int i = 0; i < S_FIBERS; i++) {
		prt_wait_link_t l[16];
		int n = prt_fiber_wait_chain(s_fibers[i], l, 16);

		if (n <= 0)
			continue;
		fprintf(stderr, "  fiber %llu", (unsigned long long)prt_fiber_id(s_fibers[i]));
		for (int k = 0; k < n; k++) {
			int mi = (int)(l[k].mutex - s_m);

			fprintf(stderr, " -> m%d -> ", mi);
			if (l[k].owner_is_thread)
				fprintf(stderr, "thread");
			else if (l[k].owner.p)
				fprintf(stderr, "fiber %llu", (unsigned long long)prt_fiber_id(l[k].owner));
			else
				fprintf(stderr, "(released)");
		}
		fprintf(stderr, "\n");
	}
}

static void *watchdog(void *arg)
{
	long last = -1;
	uint64_t since = test_mono_ns();

	(void)arg;
	while (!atomic_load(&s_done)) {
		long p = atomic_load(&s_progress);

		if (p != last) {
			last = p;
			since = test_mono_ns();
		} else if (test_mono_ns() - since > S_STALL_NS) {
			dump_chains();
			prt_runtime_dump(s_rt, STDERR_FILENO);
			fprintf(stderr, "watchdog: test_stress hung\n");
			_exit(1);
		}
		usleep(50000);
	}
	return NULL;
}

static void test_stress_timedlock(void **state)
{
	prt_runtime_config_t cfg;
	pthread_t th[S_THREADS], wd;
	uint64_t t0;
	long total = 0;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	assert_int_equal(prt_runtime_create(&s_rt, &cfg), 0);
	for (int i = 0; i < S_MUTEXES; i++) {
		prt_mutexattr_t a;

		prt_mutexattr_init(&a);
		/* A few mutexes without proxy execution: both kinds mixed in one chain. */
		prt_mutexattr_setproxy(&a, i % 4 == 3 ? PRT_MUTEX_PROXY_OFF : PRT_MUTEX_PROXY_DEFAULT);
		assert_int_equal(prt_mutex_init(&s_m[i], &a), 0);
	}
	assert_int_equal(pthread_create(&wd, NULL, watchdog, NULL), 0);
	for (int i = 0; i < S_FIBERS; i++) {
		prt_fiber_attr_t a;

		prt_fiber_attr_init(&a);
		a.priority = (i % 4) * 6;
		assert_int_equal(prt_spawn(s_rt, &s_fibers[i], &a, stress_fiber,
					   (void *)(intptr_t)(i + 1)), 0);
	}
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, stress_thread,
						(void *)(intptr_t)(1000 + i)), 0);
	t0 = test_mono_ns();
	while (test_mono_ns() - t0 < S_RUN_NS)
		usleep(10000);
	atomic_store(&s_stop, 1);
	for (int i = 0; i < S_FIBERS; i++) {
		void *r;

		assert_int_equal(prt_join(s_fibers[i], &r), 0);
		assert_null(r);
		atomic_fetch_add(&s_progress, 1); /* the watchdog covers the joins too */
	}
	for (int i = 0; i < S_THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	atomic_store(&s_done, 1);
	assert_int_equal(pthread_join(wd, NULL), 0);
	fprintf(stderr, "stress: rounds=%ld timeouts=%ld deadlocks=%ld\n", atomic_load(&s_rounds),
		atomic_load(&s_timeouts), atomic_load(&s_deadlocks));
	assert_int_equal(atomic_load(&s_violations), 0);
	for (int i = 0; i < S_MUTEXES; i++) {
		assert_int_equal(s_count[i], atomic_load(&s_expect[i]));
		total += s_count[i];
		assert_int_equal(prt_mutex_destroy(&s_m[i]), 0);
	}
	assert_true(atomic_load(&s_rounds) > 0 && total >= atomic_load(&s_rounds));
	assert_true(atomic_load(&s_timeouts) + atomic_load(&s_deadlocks) > 0); /* back-off exercised */
	test_stress_preempt_report(s_rt, "stress", 0); /* 2 s, mostly in the library */
	assert_int_equal(prt_runtime_destroy(s_rt), 0);
}

/*
 * Timeout storm on one mutex: fibers time out after a few µs while the
 * lock is released to its waiters (lateral stealing), and plain threads
 * wait on it without a timeout, asleep. A first waiter that times out
 * must pass its claim to a sleeper behind it: else the sleeper waits
 * until some new locker comes, which at the end of the run never does,
 * and the watchdog fails the test.
 */
#define T_FIBERS 12
#define T_THREADS 2
#define T_RUN_NS 1000000000ull /* 1 s */

static prt_mutex_t t_m;
static long t_count;
static atomic_long t_expect;

static void storm_hold(unsigned *seed)
{
	t_count++;
	atomic_fetch_add(&t_expect, 1);
	for (int i = rand_r(seed) % 64; i > 0; i--)
		__asm__ __volatile__("" ::: "memory");
}

static void *storm_fiber(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;

	while (!atomic_load(&s_stop)) {
		struct timespec ts = test_realtime_in(rand_r(&seed) % 20000);
		int e = prt_mutex_timedlock(&t_m, &ts);

		if (e == 0) {
			storm_hold(&seed);
			if (prt_mutex_unlock(&t_m) != 0)
				atomic_fetch_add(&s_violations, 1);
		} else if (e == ETIMEDOUT) {
			atomic_fetch_add(&s_timeouts, 1);
		} else {
			atomic_fetch_add(&s_violations, 1);
		}
		if (rand_r(&seed) % 8 == 0)
			prt_yield();
		atomic_fetch_add(&s_progress, 1);
	}
	return NULL;
}

static atomic_int t_tstop;

static void *storm_thread(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;

	while (!atomic_load(&t_tstop)) {
		if (prt_mutex_lock(&t_m) != 0) {
			atomic_fetch_add(&s_violations, 1);
			break;
		}
		storm_hold(&seed);
		if (prt_mutex_unlock(&t_m) != 0)
			atomic_fetch_add(&s_violations, 1);
		atomic_fetch_add(&s_rounds, 1);
		atomic_fetch_add(&s_progress, 1);
	}
	return NULL;
}

static void test_timeout_storm(void **state)
{
	prt_runtime_config_t cfg;
	pthread_t th[T_THREADS], wd;
	prt_fiber_t f[T_FIBERS];
	uint64_t t0;

	(void)state;
	atomic_store(&s_stop, 0);
	atomic_store(&s_done, 0);
	atomic_store(&t_tstop, 0);
	atomic_store(&s_timeouts, 0);
	atomic_store(&s_rounds, 0);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	assert_int_equal(prt_runtime_create(&s_rt, &cfg), 0);
	assert_int_equal(prt_mutex_init(&t_m, NULL), 0);
	/* The watchdog dumps s_fibers' chains: point them at this test's fibers. */
	assert_int_equal(pthread_create(&wd, NULL, watchdog, NULL), 0);
	for (int i = 0; i < T_FIBERS; i++) {
		/* Same priority as a thread (no outranking): releases, not handoffs. */
		assert_int_equal(prt_spawn(s_rt, &f[i], NULL, storm_fiber, (void *)(intptr_t)(i + 7)), 0);
		s_fibers[i] = f[i];
	}
	for (int i = 0; i < T_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, storm_thread, (void *)(intptr_t)(77 + i)), 0);
	t0 = test_mono_ns();
	while (test_mono_ns() - t0 < T_RUN_NS)
		usleep(10000);
	/*
	 * Fibers first: a thread left asleep on a released lock now has
	 * nobody to come by and hand it over. The threads must go on alone.
	 */
	atomic_store(&s_stop, 1);
	for (int i = 0; i < T_FIBERS; i++) {
		assert_int_equal(prt_join(f[i], NULL), 0);
		atomic_fetch_add(&s_progress, 1);
	}
	usleep(20000);
	atomic_store(&t_tstop, 1);
	for (int i = 0; i < T_THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		atomic_fetch_add(&s_progress, 1);
	}
	atomic_store(&s_done, 1);
	assert_int_equal(pthread_join(wd, NULL), 0);
	fprintf(stderr, "storm: thread rounds=%ld fiber timeouts=%ld\n", atomic_load(&s_rounds),
		atomic_load(&s_timeouts));
	assert_int_equal(atomic_load(&s_violations), 0);
	assert_int_equal(t_count, atomic_load(&t_expect));
	assert_true(atomic_load(&s_rounds) > 0);
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(s_rt), 0);
	memset(s_fibers, 0, sizeof(s_fibers));
}

/* ---- prt_fiber_wait_chain on a known chain ---- */

static prt_mutex_t c_m[3];
static atomic_int c_held;

static void *chain_holder(void *arg)
{
	int i = (int)(intptr_t)arg;

	if (prt_mutex_lock(&c_m[i]) != 0)
		return (void *)1;
	atomic_fetch_add(&c_held, 1);
	while (atomic_load(&c_held) < 3)
		prt_yield();
	if (i < 2) { /* f0 waits on m1 (f1), f1 waits on m2 (f2) */
		if (prt_mutex_lock(&c_m[i + 1]) != 0)
			return (void *)2;
		prt_mutex_unlock(&c_m[i + 1]);
	} else {
		while (atomic_load(&c_held) < 4)
			prt_sleep_ns(100000);
	}
	prt_mutex_unlock(&c_m[i]);
	return NULL;
}

static void test_wait_chain(void **state)
{
	prt_runtime_t *rt = NULL;
	prt_runtime_config_t cfg;
	prt_fiber_t f[3];
	prt_wait_link_t l[8];
	int n;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	for (int i = 0; i < 3; i++) {
		prt_mutex_init(&c_m[i], NULL);
		assert_int_equal(prt_spawn(rt, &f[i], NULL, chain_holder, (void *)(intptr_t)i), 0);
	}
	/* Wait until f0's chain is complete: m1 -> f1 -> m2 -> f2. */
	do {
		usleep(1000);
		n = prt_fiber_wait_chain(f[0], l, 8);
	} while (n < 2);
	assert_int_equal(n, 2);
	assert_ptr_equal(l[0].mutex, &c_m[1]);
	assert_true(prt_fiber_equal(l[0].owner, f[1]));
	assert_ptr_equal(l[1].mutex, &c_m[2]);
	assert_true(prt_fiber_equal(l[1].owner, f[2]));
	assert_false(l[1].owner_is_thread);
	assert_int_equal(prt_fiber_wait_chain(f[0], l, 1), 1); /* capped */
	assert_int_equal(prt_fiber_wait_chain(f[2], l, 8), 0); /* runs, waits on nothing */
	assert_int_equal(prt_fiber_wait_chain(f[0], NULL, 1), -EINVAL);
	assert_int_equal(prt_fiber_wait_chain(f[0], l, -1), -EINVAL);
	atomic_store(&c_held, 4);
	for (int i = 0; i < 3; i++) {
		void *r;

		assert_int_equal(prt_join(f[i], &r), 0);
		assert_null(r);
	}
	assert_int_equal(prt_fiber_wait_chain(f[0], l, 8), -ESRCH); /* joined: stale */
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wait_chain),
		cmocka_unit_test(test_stress_timedlock),
		cmocka_unit_test(test_timeout_storm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
