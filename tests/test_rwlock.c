/* SPDX-License-Identifier: MIT */
/*
 * Read-write lock: pthread semantics from fibers and plain threads, the
 * fairness rules (writer preference, phase-fair read phases, priority
 * order), proxy execution both ways (a writer behind readers, readers
 * behind a writer), chains through rwlocks and mutexes, deadlock
 * detection, timeouts, names in the dump, bad input, a stress run.
 * Every test passes cooperative and preemptive
 * (PRT_PREEMPT_QUANTUM_NS=50000).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test_common.h"
#include "runtime_int.h" /* internal: blocked_on, to wait until a fiber waits */

/* Wait (from a plain thread or by yielding in a fiber) until @f waits on a lock. */
static void wait_blocked(prt_fiber_t f)
{
	while (!atomic_load(&f.p->blocked_on)) {
		if (prt_yield() != 0)
			sched_yield();
	}
}

static bool is_blocked(prt_fiber_t f)
{
	return atomic_load(&f.p->blocked_on) != NULL;
}

/* Yield (a fiber) or sleep a little (a thread) until *@flag, at most ~10 s; false if never. */
static bool wait_flag(atomic_int *flag)
{
	uint64_t end = test_mono_ns() + 10000000000ull;

	while (!atomic_load(flag)) {
		if (test_mono_ns() > end)
			return false;
		if (prt_yield() != 0)
			sched_yield();
	}
	return true;
}

static void *join_res(prt_fiber_t f)
{
	void *res = (void *)1;

	assert_int_equal(prt_join(f, &res), 0);
	return res;
}

/* ---- pthread-shaped semantics ------------------------------------------------ */

/* One caller's view of its own holds (a plain thread or a fiber: the same rules). */
static void *own_holds(void *arg)
{
	prt_rwlock_t rw = PRT_RWLOCK_INITIALIZER;
	struct timespec past = { 0, 0 };

	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_rdlock(&rw) == 0); /* recursive */
	FIBER_CHECK(prt_rwlock_tryrdlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_timedrdlock_ns(&rw, 0) == 0);
	FIBER_CHECK(prt_rwlock_trywrlock(&rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_wrlock(&rw) == EDEADLK); /* an upgrade */
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&rw, 1000000) == EDEADLK);
	FIBER_CHECK(prt_rwlock_destroy(&rw) == EBUSY);
	for (int i = 0; i < 4; i++)
		FIBER_CHECK(prt_rwlock_unlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&rw) == EPERM);
	FIBER_CHECK(prt_rwlock_wrlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_rdlock(&rw) == EDEADLK);
	FIBER_CHECK(prt_rwlock_wrlock(&rw) == EDEADLK);
	FIBER_CHECK(prt_rwlock_tryrdlock(&rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_trywrlock(&rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_timedrdlock_ns(&rw, 0) == EDEADLK);
	FIBER_CHECK(prt_rwlock_timedwrlock(&rw, &past) == EDEADLK);
	FIBER_CHECK(prt_rwlock_destroy(&rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_unlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&rw) == EPERM);
	FIBER_CHECK(prt_rwlock_timedwrlock(&rw, &past) == 0); /* free: the deadline is not looked at */
	FIBER_CHECK(prt_rwlock_unlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_timedrdlock(&rw, NULL) == 0); /* nor is a NULL one */
	FIBER_CHECK(prt_rwlock_unlock(&rw) == 0);
	FIBER_CHECK(prt_rwlock_destroy(&rw) == 0);
	return NULL;
}

static void test_own_holds_thread(void **state)
{
	(void)state;
	assert_null(own_holds(NULL));
}

static void test_own_holds_fiber(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, own_holds, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* Another holder's lock, seen from a fiber: what the caller may and may not do. */
static prt_rwlock_t oh_rw = PRT_RWLOCK_INITIALIZER;

static void *other_reads(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_unlock(&oh_rw) == EPERM); /* the main thread's hold */
	FIBER_CHECK(prt_rwlock_tryrdlock(&oh_rw) == 0);  /* readers share */
	FIBER_CHECK(prt_rwlock_rdlock(&oh_rw) == 0);
	FIBER_CHECK(prt_rwlock_trywrlock(&oh_rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&oh_rw, 1000000) == EDEADLK); /* we read it */
	FIBER_CHECK(prt_rwlock_unlock(&oh_rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&oh_rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&oh_rw) == EPERM);
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&oh_rw, 1000000) == ETIMEDOUT);
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&oh_rw, 0) == ETIMEDOUT);
	return NULL;
}

static void *other_writes(void *arg)
{
	struct timespec soon = test_realtime_in(2000000);

	(void)arg;
	FIBER_CHECK(prt_rwlock_unlock(&oh_rw) == EPERM);
	FIBER_CHECK(prt_rwlock_tryrdlock(&oh_rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_trywrlock(&oh_rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_timedrdlock(&oh_rw, &soon) == ETIMEDOUT);
	FIBER_CHECK(prt_rwlock_timedrdlock_ns(&oh_rw, 0) == ETIMEDOUT);
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&oh_rw, 1000000) == ETIMEDOUT);
	return NULL;
}

static void test_other_holder(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	assert_int_equal(prt_rwlock_rdlock(&oh_rw), 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, other_reads, NULL));
	assert_int_equal(prt_rwlock_unlock(&oh_rw), 0);
	assert_int_equal(prt_rwlock_wrlock(&oh_rw), 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, other_writes, NULL));
	assert_int_equal(prt_rwlock_unlock(&oh_rw), 0);
	/* The timed-out waiters left nothing behind: the fast paths work, destroy succeeds. */
	assert_int_equal(prt_rwlock_tryrdlock(&oh_rw), 0);
	assert_int_equal(prt_rwlock_unlock(&oh_rw), 0);
	assert_int_equal(prt_rwlock_trywrlock(&oh_rw), 0);
	assert_int_equal(prt_rwlock_unlock(&oh_rw), 0);
	assert_int_equal(prt_rwlock_destroy(&oh_rw), 0);
	assert_int_equal(prt_rwlock_init(&oh_rw, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- bad input ------------------------------------------------------------------- */

static void test_bad_input(void **state)
{
	prt_rwlockattr_t a;
	prt_rwlock_t rw;
	struct timespec bad = { 0, 1000000000L }, neg = { 0, -1 };
	const char *name = "x";
	int v = -1;

	(void)state;
	assert_int_equal(prt_rwlockattr_init(NULL), EINVAL);
	assert_int_equal(prt_rwlockattr_destroy(NULL), EINVAL);
	assert_int_equal(prt_rwlockattr_init(&a), 0);
	assert_int_equal(prt_rwlockattr_setproxy(NULL, PRT_RWLOCK_PROXY_ON), EINVAL);
	assert_int_equal(prt_rwlockattr_setproxy(&a, 3), EINVAL);
	assert_int_equal(prt_rwlockattr_setproxy(&a, -1), EINVAL);
	assert_int_equal(prt_rwlockattr_getproxy(&a, &v), 0);
	assert_int_equal(v, PRT_RWLOCK_PROXY_DEFAULT); /* unchanged by the bad calls */
	assert_int_equal(prt_rwlockattr_getproxy(&a, NULL), EINVAL);
	assert_int_equal(prt_rwlockattr_getproxy(NULL, &v), EINVAL);
	assert_int_equal(prt_rwlockattr_setname(&a, NULL), EINVAL);
	assert_int_equal(prt_rwlockattr_setname(NULL, "x"), EINVAL);
	assert_int_equal(prt_rwlockattr_getname(&a, &name), 0);
	assert_true(!name || !*name);
	assert_int_equal(prt_rwlockattr_getname(&a, NULL), EINVAL);
	assert_int_equal(prt_rwlockattr_setproxy(&a, PRT_RWLOCK_PROXY_OFF), 0);
	assert_int_equal(prt_rwlockattr_getproxy(&a, &v), 0);
	assert_int_equal(v, PRT_RWLOCK_PROXY_OFF);
	a.proxy = 7; /* set behind the setter's back */
	memset(&rw, 0x5a, sizeof(rw));
	assert_int_equal(prt_rwlock_init(&rw, &a), EINVAL);
	assert_int_equal((unsigned char)rw.__size[0], 0x5a); /* not touched */
	assert_int_equal(prt_rwlock_init(NULL, NULL), EINVAL);
	assert_int_equal(prt_rwlock_init(&rw, NULL), 0);
	assert_int_equal(prt_rwlockattr_destroy(&a), 0);

	assert_int_equal(prt_rwlock_rdlock(NULL), EINVAL);
	assert_int_equal(prt_rwlock_wrlock(NULL), EINVAL);
	assert_int_equal(prt_rwlock_tryrdlock(NULL), EINVAL);
	assert_int_equal(prt_rwlock_trywrlock(NULL), EINVAL);
	assert_int_equal(prt_rwlock_timedrdlock(NULL, &bad), EINVAL);
	assert_int_equal(prt_rwlock_timedwrlock(NULL, &bad), EINVAL);
	assert_int_equal(prt_rwlock_timedrdlock_ns(NULL, 1), EINVAL);
	assert_int_equal(prt_rwlock_timedwrlock_ns(NULL, 1), EINVAL);
	assert_int_equal(prt_rwlock_unlock(NULL), EINVAL);
	assert_int_equal(prt_rwlock_destroy(NULL), EINVAL);

	/* A bad deadline is looked at only when the call would wait. */
	assert_int_equal(prt_rwlock_wrlock(&rw), 0);
	assert_int_equal(prt_rwlock_unlock(&rw), 0);
	assert_int_equal(prt_rwlock_timedwrlock(&rw, &bad), 0);
	assert_int_equal(prt_rwlock_unlock(&rw), 0);
	assert_int_equal(prt_rwlock_unlock(&rw), EPERM); /* not held */
	assert_int_equal(prt_rwlock_destroy(&rw), 0);
	assert_int_equal(prt_rwlock_init(&rw, NULL), 0);
	(void)neg;
}

/* A thread that waits with a bad deadline while another holds the lock: EINVAL, no wait. */
static prt_rwlock_t bd_rw = PRT_RWLOCK_INITIALIZER;

static void *bad_deadline_thread(void *arg)
{
	struct timespec bad = { 0, 1000000000L }, neg = { 0, -1 };

	(void)arg;
	if (prt_rwlock_timedwrlock(&bd_rw, &bad) != EINVAL ||
	    prt_rwlock_timedrdlock(&bd_rw, &neg) != EINVAL ||
	    prt_rwlock_timedrdlock(&bd_rw, NULL) != EINVAL ||
	    prt_rwlock_unlock(&bd_rw) != EPERM)
		return (void *)1;
	return NULL;
}

static void test_bad_deadline(void **state)
{
	pthread_t t;
	void *res;

	(void)state;
	assert_int_equal(prt_rwlock_wrlock(&bd_rw), 0);
	assert_int_equal(pthread_create(&t, NULL, bad_deadline_thread, NULL), 0);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_null(res);
	assert_int_equal(prt_rwlock_unlock(&bd_rw), 0);
	assert_int_equal(prt_rwlock_destroy(&bd_rw), 0);
	assert_int_equal(prt_rwlock_init(&bd_rw, NULL), 0);
}

/* ---- readers share, writers exclude: fibers and plain threads ------------------------ */

#define SH_READERS 4 /* 3 fibers and the main thread */

static prt_rwlock_t sh_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int sh_inside, sh_writer_in, sh_writer_done;

/* Hold the read lock until every reader is inside at once. */
static void *sh_reader(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&sh_rw) == 0);
	atomic_fetch_add(&sh_inside, 1);
	while (atomic_load(&sh_inside) < SH_READERS)
		prt_yield();
	FIBER_CHECK(!atomic_load(&sh_writer_in));
	FIBER_CHECK(prt_rwlock_unlock(&sh_rw) == 0);
	return NULL;
}

static void *sh_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&sh_rw) == 0);
	FIBER_CHECK(atomic_load(&sh_inside) == SH_READERS); /* after all of them */
	atomic_store(&sh_writer_in, 1);
	prt_yield();
	atomic_store(&sh_writer_in, 0);
	FIBER_CHECK(prt_rwlock_unlock(&sh_rw) == 0);
	atomic_store(&sh_writer_done, 1);
	return NULL;
}

static void test_readers_share(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t r[SH_READERS - 1], w;

	(void)state;
	atomic_store(&sh_inside, 0);
	atomic_store(&sh_writer_done, 0);
	assert_int_equal(prt_rwlock_rdlock(&sh_rw), 0); /* a plain thread reads too */
	atomic_fetch_add(&sh_inside, 1);
	for (int i = 0; i < SH_READERS - 1; i++)
		r[i] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, sh_reader, NULL);
	while (atomic_load(&sh_inside) < SH_READERS)
		sched_yield();
	w = test_spawn(rt, PRT_PRIO_DEFAULT, -1, sh_writer, NULL);
	wait_blocked(w);
	assert_false(atomic_load(&sh_writer_done));
	assert_int_equal(prt_rwlock_unlock(&sh_rw), 0);
	for (int i = 0; i < SH_READERS - 1; i++)
		assert_null(join_res(r[i]));
	assert_null(join_res(w));
	/* The thread waits for the writer's lock as a reader would. */
	assert_int_equal(prt_rwlock_rdlock(&sh_rw), 0);
	assert_int_equal(prt_rwlock_unlock(&sh_rw), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- grant order: phase-fair within a level, priority across --------------------- */

static prt_rwlock_t ord_rw;
static atomic_int ord_n;
static char ord_seq[16];

struct ord_arg {
	char tag;
	bool reader;
};

static void *ord_body(void *arg)
{
	struct ord_arg *a = arg;

	FIBER_CHECK((a->reader ? prt_rwlock_rdlock(&ord_rw) : prt_rwlock_wrlock(&ord_rw)) == 0);
	ord_seq[atomic_fetch_add(&ord_n, 1)] = a->tag;
	prt_yield();
	FIBER_CHECK(prt_rwlock_unlock(&ord_rw) == 0);
	return NULL;
}

/*
 * The main thread holds the write lock; the fibers queue in the order
 * given (each waits before the next comes); then it lets go, and the
 * order of the grants is what the fibers write down.
 */
static void order_run(int proxy, int n, const struct ord_arg *args, const int *prio,
		      const char *expect)
{
	prt_runtime_t *rt = test_rt(1);
	prt_rwlockattr_t a;
	prt_fiber_t f[8];

	prt_rwlockattr_init(&a);
	prt_rwlockattr_setproxy(&a, proxy);
	assert_int_equal(prt_rwlock_init(&ord_rw, &a), 0);
	atomic_store(&ord_n, 0);
	memset(ord_seq, 0, sizeof(ord_seq));
	assert_int_equal(prt_rwlock_wrlock(&ord_rw), 0);
	for (int i = 0; i < n; i++) {
		f[i] = test_spawn(rt, prio[i], -1, ord_body, (void *)&args[i]);
		wait_blocked(f[i]);
	}
	assert_int_equal(prt_rwlock_unlock(&ord_rw), 0);
	for (int i = 0; i < n; i++)
		assert_null(join_res(f[i]));
	assert_string_equal(ord_seq, expect);
	assert_int_equal(prt_rwlock_destroy(&ord_rw), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static const struct ord_arg ord_args[] = {
	{ 'a', true }, { 'W', false }, { 'b', true }, { 'X', false }, { 'c', true },
};

static void test_phase_fair_order(void **state)
{
	static const int same[] = { 10, 10, 10, 10, 10 };

	(void)state;
	/* Every queued reader of the level goes in one read phase, then the writers in turn. */
	order_run(PRT_RWLOCK_PROXY_ON, 5, ord_args, same, "abcWX");
	order_run(PRT_RWLOCK_PROXY_OFF, 5, ord_args, same, "abcWX");
}

static void test_priority_order(void **state)
{
	/*
	 * a(10) W(20) b(20) X(5) c(30), queued as c W b a X: c's read phase
	 * takes every reader down to W's level (b, queued after W), then W,
	 * then a's phase (above X), then X.
	 */
	static const int prio[] = { 10, 20, 20, 5, 30 };

	(void)state;
	order_run(PRT_RWLOCK_PROXY_ON, 5, ord_args, prio, "cbWaX");
	order_run(PRT_RWLOCK_PROXY_OFF, 5, ord_args, prio, "cbWaX");
}

/* ---- a reader arriving while a writer waits ------------------------------------------- */

static prt_rwlock_t ar_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int ar_held, ar_release, ar_w_done, ar_r_done, ar_writer_first;

static void *ar_holder(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&ar_rw) == 0);
	atomic_store(&ar_held, 1);
	FIBER_CHECK(wait_flag(&ar_release));
	FIBER_CHECK(prt_rwlock_unlock(&ar_rw) == 0);
	return NULL;
}

static void *ar_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&ar_rw) == 0);
	atomic_store(&ar_w_done, 1);
	/* Ahead of a reader of its level that came after it; not of a higher one. */
	FIBER_CHECK(atomic_load(&ar_r_done) != atomic_load(&ar_writer_first));
	FIBER_CHECK(prt_rwlock_unlock(&ar_rw) == 0);
	return NULL;
}

static void *ar_reader(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&ar_rw) == 0);
	atomic_store(&ar_r_done, 1);
	FIBER_CHECK(prt_rwlock_unlock(&ar_rw) == 0);
	return NULL;
}

/*
 * A reader holds; a writer of priority 10 waits. A reader of priority
 * @rprio comes: above the writer it joins the holder at once, at the
 * writer's level it queues behind it (writer preference).
 */
static void arrival(int rprio)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t h, w, r;

	atomic_store(&ar_held, 0);
	atomic_store(&ar_writer_first, rprio <= 10);
	atomic_store(&ar_release, 0);
	atomic_store(&ar_w_done, 0);
	atomic_store(&ar_r_done, 0);
	h = test_spawn(rt, 10, -1, ar_holder, NULL);
	while (!atomic_load(&ar_held))
		sched_yield();
	w = test_spawn(rt, 10, -1, ar_writer, NULL);
	wait_blocked(w);
	r = test_spawn(rt, rprio, -1, ar_reader, NULL);
	if (rprio > 10) {
		assert_null(join_res(r)); /* joined the holder, the writer still waiting */
		assert_true(is_blocked(w));
		assert_false(atomic_load(&ar_w_done));
	} else {
		wait_blocked(r);
		assert_true(is_blocked(w));
	}
	atomic_store(&ar_release, 1);
	assert_null(join_res(h));
	assert_null(join_res(w));
	if (rprio <= 10)
		assert_null(join_res(r));
	assert_true(atomic_load(&ar_r_done));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_arrival_above_writer(void **state)
{
	(void)state;
	arrival(20);
}

static void test_arrival_behind_writer(void **state)
{
	(void)state;
	arrival(10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_holds_thread),
		cmocka_unit_test(test_own_holds_fiber),
		cmocka_unit_test(test_other_holder),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_bad_deadline),
		cmocka_unit_test(test_readers_share),
		cmocka_unit_test(test_phase_fair_order),
		cmocka_unit_test(test_priority_order),
		cmocka_unit_test(test_arrival_above_writer),
		cmocka_unit_test(test_arrival_behind_writer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
