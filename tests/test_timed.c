/* SPDX-License-Identifier: MIT */
/*
 * prt_mutex_timedlock, prt_mutex_timedlock_ns and prt_cond_timedwait:
 * expiry in every state a waiter can be in (queued as a donor while the
 * owner runs by proxy, attached to a sleeping owner, asleep with proxy
 * execution off, a plain thread), the lock left exactly as it was, and
 * the grant winning when it comes first. The relative lock also: 0 as a
 * try, and timeouts that would wrap the clock (UINT64_MAX) never expire.
 */
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <unistd.h>

#include "test_common.h"
#include "runtime_int.h" /* internal: blocked_on, to check the waiter left the list */

/* Absolute CLOCK_REALTIME time @ms from now. */
static struct timespec in_ms(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	} else if (ts.tv_nsec < 0) { /* a negative @ms, within the first ms of a second */
		ts.tv_sec--;
		ts.tv_nsec += 1000000000L;
	}
	return ts;
}

static uint64_t total_stat(prt_runtime_t *rt, size_t off)
{
	uint64_t sum = 0;

	for (int i = 0; i < prt_runtime_nworkers(rt); i++) {
		prt_worker_stats_t st;

		if (prt_worker_stats(rt, i, &st) == 0)
			sum += *(uint64_t *)(void *)((char *)&st + off);
	}
	return sum;
}

static prt_mutex_t t_m;
static atomic_int t_stop, t_owner_steps;
/* The waiters of the shared scenarios lock with prt_mutex_timedlock_ns, not the timespec call. */
static bool t_use_ns;

/* Lock t_m for at most @ms from now with the call the test runs. */
static int timed_lock_ms(long ms)
{
	struct timespec ts = in_ms(ms);

	return t_use_ns ? prt_mutex_timedlock_ns(&t_m, (uint64_t)ms * 1000000u)
			: prt_mutex_timedlock(&t_m, &ts);
}

/* ---- argument checks and the immediate cases ---- */

static void *hold_and_wait(void *arg)
{
	prt_mutex_t *m = arg;

	if (prt_mutex_lock(m))
		return (void *)1;
	while (!atomic_load(&t_stop))
		sched_yield();
	return (void *)(intptr_t)prt_mutex_unlock(m);
}

static void test_timedlock_args(void **state)
{
	static const int types[] = { PRT_MUTEX_NORMAL, PRT_MUTEX_ERRORCHECK, PRT_MUTEX_RECURSIVE };
	struct timespec bad = { 0, 1000000000L }, past = { 1, 0 };
	prt_mutex_t m = PRT_MUTEX_INITIALIZER;
	pthread_t t;
	void *res;

	(void)state;
	/* Free: taken without looking at the deadline (as pthreads). */
	assert_int_equal(prt_mutex_timedlock(&m, &bad), 0);
	assert_int_equal(prt_mutex_timedlock(NULL, &past), EINVAL);
	/* Normal type: a second lock by the owner would deadlock. */
	assert_int_equal(prt_mutex_timedlock(&m, &past), EDEADLK);
	assert_int_equal(prt_mutex_unlock(&m), 0);
	assert_int_equal(prt_mutex_destroy(&m), 0);

	/*
	 * Held by the caller: as glibc, the deadline is not looked at
	 * either (EDEADLK, or the recursive count). It returned EINVAL (a
	 * review, against glibc's EDEADLK for an error-checking mutex).
	 */
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		prt_mutexattr_t a;
		int want = types[i] == PRT_MUTEX_RECURSIVE ? 0 : EDEADLK;

		assert_int_equal(prt_mutexattr_init(&a), 0);
		assert_int_equal(prt_mutexattr_settype(&a, types[i]), 0);
		assert_int_equal(prt_mutex_init(&m, &a), 0);
		assert_int_equal(prt_mutex_lock(&m), 0);
		assert_int_equal(prt_mutex_timedlock(&m, &bad), want);
		assert_int_equal(prt_mutex_timedlock(&m, NULL), want);
		if (types[i] == PRT_MUTEX_RECURSIVE) {
			assert_int_equal(prt_mutex_unlock(&m), 0);
			assert_int_equal(prt_mutex_unlock(&m), 0);
			assert_int_equal(prt_mutex_trylock(&m), 0); /* the count back at 1 */
			assert_int_equal(prt_mutex_unlock(&m), 0);
		}
		assert_int_equal(prt_mutex_unlock(&m), 0);
		assert_int_equal(prt_mutex_trylock(&m), 0); /* free again: the count matched */
		assert_int_equal(prt_mutex_unlock(&m), 0);

		/* Held by another thread: the caller would wait, so the deadline matters. */
		atomic_store(&t_stop, 0);
		assert_int_equal(pthread_create(&t, NULL, hold_and_wait, &m), 0);
		while (prt_mutex_trylock(&m) == 0)
			assert_int_equal(prt_mutex_unlock(&m), 0);
		assert_int_equal(prt_mutex_timedlock(&m, &bad), EINVAL);
		assert_int_equal(prt_mutex_timedlock(&m, NULL), EINVAL);
		atomic_store(&t_stop, 1);
		assert_int_equal(pthread_join(t, &res), 0);
		assert_null(res);
		assert_int_equal(prt_mutex_destroy(&m), 0);
	}
}

/* ---- a plain thread times out while a fiber holds the lock ---- */

static void *hold_until_stop(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&t_m) == 0);
	while (!atomic_load(&t_stop))
		prt_sleep_ns(1000000);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void test_timedlock_thread(void **state)
{
	prt_runtime_t *rt = test_rt_flags(1, 0);
	struct timespec ts;
	prt_fiber_t f;

	(void)state;
	prt_mutex_init(&t_m, NULL);
	atomic_store(&t_stop, 0);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, hold_until_stop, NULL);
	while (prt_mutex_trylock(&t_m) == 0) /* wait until the fiber holds it */
		prt_mutex_unlock(&t_m), sched_yield();
	ts = in_ms(30);
	assert_int_equal(prt_mutex_timedlock(&t_m, &ts), ETIMEDOUT);
	/* Already past: fails at once, still not taking it. */
	ts = in_ms(-5);
	assert_int_equal(prt_mutex_timedlock(&t_m, &ts), ETIMEDOUT);
	atomic_store(&t_stop, 1);
	/* It is released: a long deadline now succeeds. */
	ts = in_ms(10000);
	assert_int_equal(prt_mutex_timedlock(&t_m, &ts), 0);
	assert_int_equal(prt_mutex_unlock(&t_m), 0);
	assert_null(({ void *r; prt_join(f, &r); r; }));
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a fiber expires while queued as a donor (owner run by proxy) ---- */

static void *busy_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&t_m) == 0);
	/*
	 * CPU work with scheduling points, never releasing, until told.
	 * prt_yield alone (not test_yield_wait): under valgrind a
	 * sched_yield per round let too few rounds, and so no proxy pick,
	 * into the waiter's 40 ms (test_timedlock_ns_donor failed so once).
	 */
	while (!atomic_load(&t_stop)) {
		atomic_fetch_add(&t_owner_steps, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void *timed_waiter(void *arg)
{
	uint64_t t0 = prt_now_ns(); /* before the deadline is set: a delay between them cannot make it look early */

	FIBER_CHECK(timed_lock_ms((long)(intptr_t)arg) == ETIMEDOUT);
	/* Not before the deadline (it is measured on the same clock pair). */
	FIBER_CHECK(prt_now_ns() - t0 >= (uint64_t)(intptr_t)arg * 1000000u - 2000000u);
	FIBER_CHECK(atomic_load(&prt_self().p->blocked_on) == NULL);
	return NULL;
}

static void *donor_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	size_t off = offsetof(prt_worker_stats_t, proxy_picks);
	uint64_t picks0 = total_stat(rt, off);
	prt_fiber_t o, h;
	void *r;

	(void)arg;
	o = test_spawn(rt, 2, -1, busy_owner, NULL);
	while (prt_mutex_trylock(&t_m) == 0)
		prt_mutex_unlock(&t_m), prt_sleep_ns(100000);
	/* H outranks O: while H waits, the worker runs O in H's place. */
	h = test_spawn(rt, 20, -1, timed_waiter, (void *)(intptr_t)40);
	FIBER_CHECK(prt_join(h, &r) == 0 && r == NULL);
	FIBER_CHECK(total_stat(rt, off) > picks0); /* it really was a donor */
	/* The owner still holds the lock, and nobody waits for it. */
	FIBER_CHECK(prt_mutex_trylock(&t_m) == EBUSY);
	atomic_store(&t_stop, 1);
	FIBER_CHECK(prt_join(o, &r) == 0 && r == NULL);
	FIBER_CHECK(prt_mutex_trylock(&t_m) == 0);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void run_main(int nworkers, unsigned flags, void *(*fn)(void *))
{
	prt_runtime_t *rt = test_rt_flags(nworkers, flags);

	prt_mutex_init(&t_m, NULL);
	atomic_store(&t_stop, 0);
	atomic_store(&t_owner_steps, 0);
	assert_null(test_run_in(rt, PRT_PRIO_MAX, fn, NULL));
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_timedlock_donor(void **state)
{
	(void)state;
	run_main(1, 0, donor_main);
}

static void test_timedlock_donor_2workers(void **state)
{
	(void)state;
	run_main(2, 0, donor_main);
}

/* ---- expiring while attached to a sleeping owner, and while asleep (proxy off) ---- */

static void *sleepy_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&t_m) == 0);
	while (!atomic_load(&t_stop))
		prt_sleep_ns(2000000); /* sleeps holding the lock */
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void *sleepy_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	size_t off = offsetof(prt_worker_stats_t, attachments);
	uint64_t att0 = total_stat(rt, off);
	bool proxy = arg == NULL;
	prt_fiber_t o, h[4];
	void *r;

	o = test_spawn(rt, 2, -1, sleepy_owner, NULL);
	while (prt_mutex_trylock(&t_m) == 0)
		prt_mutex_unlock(&t_m), prt_sleep_ns(100000);
	for (int i = 0; i < 4; i++)
		h[i] = test_spawn(rt, 10 + i, -1, timed_waiter, (void *)(intptr_t)(20 + 10 * i));
	for (int i = 0; i < 4; i++)
		FIBER_CHECK(prt_join(h[i], &r) == 0 && r == NULL);
	if (proxy)
		FIBER_CHECK(total_stat(rt, off) > att0);
	FIBER_CHECK(prt_mutex_trylock(&t_m) == EBUSY);
	atomic_store(&t_stop, 1);
	FIBER_CHECK(prt_join(o, &r) == 0 && r == NULL);
	FIBER_CHECK(prt_mutex_trylock(&t_m) == 0);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void test_timedlock_attached(void **state)
{
	(void)state;
	run_main(1, 0, sleepy_main);
	run_main(2, 0, sleepy_main);
}

static void *sleepy_main_noproxy(void *arg)
{
	(void)arg;
	return sleepy_main((void *)1);
}

static void test_timedlock_noproxy(void **state)
{
	(void)state;
	run_main(2, PRT_RT_NO_PROXY, sleepy_main_noproxy);
}

/* ---- the grant before the deadline wins; many timed lockers, exact counter ---- */

#define TL_FIBERS 16
#define TL_ROUNDS 300
static long tl_counter;
static atomic_long tl_timeouts;

static void *timed_churn(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;

	for (int i = 0; i < TL_ROUNDS; i++) {
		int e = timed_lock_ms(rand_r(&seed) % 3);

		FIBER_CHECK(e == 0 || e == ETIMEDOUT);
		if (e) {
			atomic_fetch_add(&tl_timeouts, 1);
			continue;
		}
		tl_counter++;
		if (rand_r(&seed) % 2)
			prt_sleep_ns(rand_r(&seed) % 200000);
		else
			prt_yield();
		FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	}
	return NULL;
}

static void test_timedlock_churn(void **state)
{
	prt_runtime_t *rt = test_rt_flags(2, 0);
	prt_fiber_t f[TL_FIBERS];
	void *r;

	(void)state;
	prt_mutex_init(&t_m, NULL);
	tl_counter = 0;
	atomic_store(&tl_timeouts, 0);
	for (int i = 0; i < TL_FIBERS; i++)
		f[i] = test_spawn(rt, i % 3 * 8, -1, timed_churn, (void *)(intptr_t)(i + 1));
	for (int i = 0; i < TL_FIBERS; i++) {
		assert_int_equal(prt_join(f[i], &r), 0);
		assert_null(r);
	}
	assert_int_equal(tl_counter + atomic_load(&tl_timeouts), (long)TL_FIBERS * TL_ROUNDS);
	assert_true(atomic_load(&tl_timeouts) > 0); /* the deadlines did bite */
	assert_true(tl_counter > 0);
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- prt_mutex_timedlock_ns ---- */

/* The shared scenarios again, the waiters on the relative call. */
static void test_timedlock_ns_donor(void **state)
{
	(void)state;
	t_use_ns = true;
	run_main(1, 0, donor_main);
	run_main(2, 0, donor_main);
	t_use_ns = false;
}

static void test_timedlock_ns_attached(void **state)
{
	(void)state;
	t_use_ns = true;
	run_main(1, 0, sleepy_main);
	run_main(2, 0, sleepy_main);
	run_main(2, PRT_RT_NO_PROXY, sleepy_main_noproxy);
	t_use_ns = false;
}

static void test_timedlock_ns_churn(void **state)
{
	t_use_ns = true;
	test_timedlock_churn(state);
	t_use_ns = false;
}

/*
 * Timeouts whose deadline, now + timeout, passes 2^64 ns: each must
 * saturate to "never", so a naive sum that wraps into the past (and
 * times out at once) fails. Also very long ones that do fit.
 */
static uint64_t huge_timeout(int i)
{
	switch (i) {
	case 0: return UINT64_MAX;
	case 1: return UINT64_MAX - prt_now_ns() + 1; /* the sum is exactly 2^64 */
	case 2: return UINT64_MAX / 2 + 12345;
	default: return (uint64_t)INT64_MAX + 1;
	}
}
#define NHUGE 4

/* Holds t_m for at least @arg ns and until t_stop, then releases it. */
static void *hold_until_stop_ns(void *arg)
{
	FIBER_CHECK(prt_mutex_lock(&t_m) == 0);
	prt_sleep_ns((uint64_t)(uintptr_t)arg);
	while (!atomic_load(&t_stop))
		prt_sleep_ns(200000);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static atomic_int t_waiting;

/* Waits with huge_timeout(@arg) while another holds t_m: granted on release, never timed out. */
static void *huge_waiter(void *arg)
{
	int e;

	atomic_fetch_add(&t_waiting, 1);
	e = prt_mutex_timedlock_ns(&t_m, huge_timeout((int)(intptr_t)arg));
	FIBER_CHECK(e == 0);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

/* Until fiber @f waits on t_m (its blocked_on set); at most ~2 s, in case it never does. */
static void wait_until_blocked(prt_fiber_t f)
{
	for (int i = 0; i < 10000 && !atomic_load(&f.p->blocked_on); i++)
		usleep(200);
}

static void test_timedlock_ns_args(void **state)
{
	prt_mutex_t m = PRT_MUTEX_INITIALIZER;
	prt_mutexattr_t a;

	(void)state;
	assert_int_equal(prt_mutex_timedlock_ns(NULL, 0), EINVAL);
	assert_int_equal(prt_mutex_timedlock_ns(NULL, UINT64_MAX), EINVAL);
	/* Free: taken, whatever the timeout (0 included). */
	assert_int_equal(prt_mutex_timedlock_ns(&m, 0), 0);
	/* Held by us: a second lock would deadlock, timeout or not. */
	assert_int_equal(prt_mutex_timedlock_ns(&m, 0), EDEADLK);
	assert_int_equal(prt_mutex_timedlock_ns(&m, UINT64_MAX), EDEADLK);
	assert_int_equal(prt_mutex_unlock(&m), 0);
	assert_int_equal(prt_mutex_timedlock_ns(&m, UINT64_MAX), 0);
	assert_int_equal(prt_mutex_unlock(&m), 0);
	assert_int_equal(prt_mutex_destroy(&m), 0);
	/* Recursive: counted, as prt_mutex_lock. */
	prt_mutexattr_init(&a);
	prt_mutexattr_settype(&a, PRT_MUTEX_RECURSIVE);
	assert_int_equal(prt_mutex_init(&m, &a), 0);
	assert_int_equal(prt_mutex_timedlock_ns(&m, 0), 0);
	assert_int_equal(prt_mutex_timedlock_ns(&m, 0), 0);
	assert_int_equal(prt_mutex_unlock(&m), 0);
	assert_int_equal(prt_mutex_unlock(&m), 0);
	assert_int_equal(prt_mutex_unlock(&m), EPERM);
	assert_int_equal(prt_mutex_destroy(&m), 0);
}

/* A plain thread: times out, 0 is a try, granted in time, huge timeouts never expire. */
static void test_timedlock_ns_thread(void **state)
{
	prt_runtime_t *rt = test_rt_flags(1, 0);
	prt_fiber_t f;
	uint64_t t0;

	(void)state;
	prt_mutex_init(&t_m, NULL);
	for (int i = 0; i < NHUGE; i++) {
		atomic_store(&t_stop, 0);
		/* Held for 20 ms at least: the huge waits below start while it is held. */
		f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, hold_until_stop_ns, (void *)20000000);
		while (prt_mutex_trylock(&t_m) == 0) /* until the fiber holds it */
			prt_mutex_unlock(&t_m), sched_yield();
		if (i == 0) {
			t0 = prt_now_ns();
			assert_int_equal(prt_mutex_timedlock_ns(&t_m, 30000000u), ETIMEDOUT);
			assert_true(prt_now_ns() - t0 >= 30000000u); /* not before the timeout */
			assert_int_equal(prt_mutex_timedlock_ns(&t_m, 0), ETIMEDOUT);
			assert_int_equal(prt_mutex_timedlock_ns(&t_m, 1), ETIMEDOUT);
		}
		/* Released while we wait (huge: only the release ends the wait). */
		atomic_store(&t_stop, 1);
		assert_int_equal(prt_mutex_timedlock_ns(&t_m, huge_timeout(i)), 0);
		assert_int_equal(prt_mutex_unlock(&t_m), 0);
		assert_null(({ void *r; prt_join(f, &r); r; }));
	}
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* A plain thread holds t_m; fibers time out, try with 0, then wait with huge timeouts. */
static void *ns_fiber_try(void *arg)
{
	uint64_t t0 = prt_now_ns();

	(void)arg;
	FIBER_CHECK(prt_mutex_timedlock_ns(&t_m, 20000000u) == ETIMEDOUT);
	FIBER_CHECK(prt_now_ns() - t0 >= 20000000u);
	FIBER_CHECK(atomic_load(&prt_self().p->blocked_on) == NULL);
	FIBER_CHECK(prt_mutex_timedlock_ns(&t_m, 0) == ETIMEDOUT);
	FIBER_CHECK(atomic_load(&prt_self().p->blocked_on) == NULL);
	return NULL;
}

static void test_timedlock_ns_fibers(void **state)
{
	prt_runtime_t *rt = test_rt_flags(2, 0);
	prt_fiber_t f[NHUGE];
	void *r;

	(void)state;
	prt_mutex_init(&t_m, NULL);
	atomic_store(&t_stop, 0);
	atomic_store(&t_waiting, 0);
	assert_int_equal(prt_mutex_lock(&t_m), 0);
	/* Held by a plain thread: the fiber's waits expire, the lock stays ours. */
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, ns_fiber_try, NULL));
	/* Huge timeouts: the fibers wait until we release, none times out. */
	for (int i = 0; i < NHUGE; i++)
		f[i] = test_spawn(rt, PRT_PRIO_DEFAULT + i, -1, huge_waiter, (void *)(intptr_t)i);
	for (int i = 0; i < NHUGE; i++)
		wait_until_blocked(f[i]);
	usleep(20000); /* a wrapped deadline would have expired by now */
	assert_int_equal(prt_mutex_unlock(&t_m), 0);
	for (int i = 0; i < NHUGE; i++) {
		assert_int_equal(prt_join(f[i], &r), 0);
		assert_null(r);
	}
	assert_int_equal(atomic_load(&t_waiting), NHUGE);
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* Released in time: a fiber waiting with a 10 s timeout is granted the lock (0). */
static void *ns_granted_waiter(void *arg)
{
	(void)arg;
	atomic_fetch_add(&t_waiting, 1);
	FIBER_CHECK(prt_mutex_timedlock_ns(&t_m, 10000000000u) == 0);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void test_timedlock_ns_granted(void **state)
{
	prt_runtime_t *rt = test_rt_flags(2, 0);
	prt_fiber_t o, h;
	void *r;

	(void)state;
	prt_mutex_init(&t_m, NULL);
	atomic_store(&t_stop, 0);
	atomic_store(&t_waiting, 0);
	o = test_spawn(rt, 2, -1, hold_until_stop_ns, NULL);
	while (prt_mutex_trylock(&t_m) == 0)
		prt_mutex_unlock(&t_m), sched_yield();
	h = test_spawn(rt, 20, -1, ns_granted_waiter, NULL);
	wait_until_blocked(h);
	atomic_store(&t_stop, 1);
	assert_int_equal(prt_join(h, &r), 0);
	assert_null(r);
	assert_int_equal(prt_join(o, &r), 0);
	assert_null(r);
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- condvar timedwait ---- */

static prt_cond_t t_c;
static atomic_int t_flag;

static void *cond_timeout_fiber(void *arg)
{
	uint64_t t0 = prt_now_ns(); /* before the deadline is set (see timed_waiter) */
	struct timespec ts = in_ms(30);

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&t_m) == 0);
	FIBER_CHECK(prt_cond_timedwait(&t_c, &t_m, &ts) == ETIMEDOUT);
	FIBER_CHECK(prt_now_ns() - t0 >= 28000000u);
	/* We hold the mutex again, as pthreads promises. */
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void *cond_signalled_fiber(void *arg)
{
	struct timespec ts = in_ms(10000);
	int e = 0;

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&t_m) == 0);
	while (!atomic_load(&t_flag) && e == 0)
		e = prt_cond_timedwait(&t_c, &t_m, &ts);
	FIBER_CHECK(e == 0);
	FIBER_CHECK(prt_mutex_unlock(&t_m) == 0);
	return NULL;
}

static void test_cond_timedwait(void **state)
{
	prt_runtime_t *rt = test_rt_flags(2, 0);
	struct timespec ts, bad = { 0, -1 };
	prt_fiber_t f;
	void *r;

	(void)state;
	prt_mutex_init(&t_m, NULL);
	prt_cond_init(&t_c);
	atomic_store(&t_flag, 0);
	/* A fiber and a plain thread time out; nothing is left queued. */
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, cond_timeout_fiber, NULL);
	assert_int_equal(prt_mutex_lock(&t_m), 0);
	assert_int_equal(prt_cond_timedwait(&t_c, &t_m, &bad), EINVAL);
	ts = in_ms(20);
	assert_int_equal(prt_cond_timedwait(&t_c, &t_m, &ts), ETIMEDOUT);
	assert_int_equal(prt_mutex_unlock(&t_m), 0);
	assert_int_equal(prt_join(f, &r), 0);
	assert_null(r);
	assert_int_equal(prt_cond_destroy(&t_c), 0); /* no waiter left behind */
	assert_int_equal(prt_cond_init(&t_c), 0);   /* destroyed: init before reuse */
	/* A signal before the deadline wins. */
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, cond_signalled_fiber, NULL);
	prt_sleep_ns(0);
	usleep(5000);
	assert_int_equal(prt_mutex_lock(&t_m), 0);
	atomic_store(&t_flag, 1);
	assert_int_equal(prt_cond_signal(&t_c), 0);
	assert_int_equal(prt_mutex_unlock(&t_m), 0);
	assert_int_equal(prt_join(f, &r), 0);
	assert_null(r);
	assert_int_equal(prt_mutex_destroy(&t_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_timedlock_args),
		cmocka_unit_test(test_timedlock_thread),
		cmocka_unit_test(test_timedlock_donor),
		cmocka_unit_test(test_timedlock_donor_2workers),
		cmocka_unit_test(test_timedlock_attached),
		cmocka_unit_test(test_timedlock_noproxy),
		cmocka_unit_test(test_timedlock_churn),
		cmocka_unit_test(test_cond_timedwait),
		cmocka_unit_test(test_timedlock_ns_args),
		cmocka_unit_test(test_timedlock_ns_thread),
		cmocka_unit_test(test_timedlock_ns_fibers),
		cmocka_unit_test(test_timedlock_ns_granted),
		cmocka_unit_test(test_timedlock_ns_donor),
		cmocka_unit_test(test_timedlock_ns_attached),
		cmocka_unit_test(test_timedlock_ns_churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
