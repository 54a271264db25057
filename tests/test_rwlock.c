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

/*
 * A pause of a waiting test: a fiber sleeps 50 us (a yield would let
 * nothing of lower priority run on its worker), a plain thread yields.
 */
static void pause_a_little(void)
{
	if (prt_sleep_ns(50000) != 0)
		sched_yield();
}

/* Wait (from a plain thread or a fiber) until @f waits on a lock. */
static void wait_blocked(prt_fiber_t f)
{
	while (!atomic_load(&f.p->blocked_on))
		pause_a_little();
}

static bool is_blocked(prt_fiber_t f)
{
	return atomic_load(&f.p->blocked_on) != NULL;
}

/* Wait until *@flag, at most ~10 s; false if it never comes. */
static bool wait_flag(atomic_int *flag)
{
	uint64_t end = test_mono_ns() + 10000000000ull;

	while (!atomic_load(flag)) {
		if (test_mono_ns() > end)
			return false;
		pause_a_little();
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

/*
 * Untracked read holds (beyond the PRT_RWLOCK_TRACKED slots) are counted,
 * not named, so their owner is believed for a lock that has such holds.
 * It was believed for any lock (a review): a caller holding nine reads of
 * another lock unlocked this one, which a fiber reads through a slot, and
 * got 0: that took the reader's hold, a writer then got the lock while
 * it still read, and its own unlock said EPERM. Such a caller was also
 * admitted ahead of a waiting writer as a recursive reader.
 */
static prt_rwlock_t ut_rw = PRT_RWLOCK_INITIALIZER, ut_other = PRT_RWLOCK_INITIALIZER;
static atomic_int ut_reading, ut_go;

static void *ut_reader(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&ut_rw) == 0);
	atomic_store(&ut_reading, 1);
	while (!atomic_load(&ut_go))
		pause_a_little();
	FIBER_CHECK(prt_rwlock_unlock(&ut_rw) == 0);
	return NULL;
}

static void *ut_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&ut_rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&ut_rw) == 0);
	return NULL;
}

/* The caller: holds of ut_other beyond the slots, none of ut_rw. */
static void *ut_body(void *arg)
{
	int n = PRT_RWLOCK_TRACKED + 1;

	(void)arg;
	for (int i = 0; i < n; i++)
		FIBER_CHECK(prt_rwlock_rdlock(&ut_other) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&ut_rw) == EPERM);
	FIBER_CHECK(prt_rwlock_tryrdlock(&ut_rw) == EBUSY); /* a writer waits: no recursive reader here */
	FIBER_CHECK(prt_rwlock_trywrlock(&ut_rw) == EBUSY);
	for (int i = 0; i < n; i++)
		FIBER_CHECK(prt_rwlock_unlock(&ut_other) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&ut_other) == EPERM);
	return NULL;
}

static void test_untracked_holds_of_another_lock(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	for (int caller = 0; caller < 2; caller++) {
		prt_fiber_t r, w;

		atomic_store(&ut_reading, 0);
		atomic_store(&ut_go, 0);
		r = test_spawn(rt, PRT_PRIO_DEFAULT, -1, ut_reader, NULL);
		assert_true(wait_flag(&ut_reading));
		w = test_spawn(rt, PRT_PRIO_MAX, -1, ut_writer, NULL);
		wait_blocked(w);
		if (caller)
			assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, ut_body, NULL));
		else
			assert_null(ut_body(NULL));
		assert_true(is_blocked(w)); /* the reader still reads */
		atomic_store(&ut_go, 1);
		assert_null(join_res(r));
		assert_null(join_res(w));
	}
	assert_int_equal(prt_rwlock_destroy(&ut_rw), 0);
	assert_int_equal(prt_rwlock_destroy(&ut_other), 0);
	assert_int_equal(prt_rwlock_init(&ut_rw, NULL), 0);
	assert_int_equal(prt_rwlock_init(&ut_other, NULL), 0);
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
		test_yield_wait();
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
 * Readers of one read phase hold the lock together, in no set order:
 * sort each run of readers (lower case) in @seq, so that the phases
 * compare as sets.
 */
static void ord_normalize(char *seq)
{
	for (char *p = seq; *p;) {
		char *e = p;

		while (*e >= 'a' && *e <= 'z')
			e++;
		for (char *i = p; i < e; i++)
			for (char *j = i + 1; j < e; j++)
				if (*j < *i) {
					char t = *i;

					*i = *j;
					*j = t;
				}
		p = e > p ? e : p + 1;
	}
}

/*
 * The main thread holds the write lock; the fibers queue in the order
 * given (each waits before the next comes); then it lets go, and the
 * order of the grants is what the fibers write down (each read phase
 * sorted: ord_normalize).
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
	ord_normalize(ord_seq);
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
	order_run(PRT_RWLOCK_PROXY_ON, 5, ord_args, prio, "bcWaX");
	order_run(PRT_RWLOCK_PROXY_OFF, 5, ord_args, prio, "bcWaX");
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

/* ---- priority inversion: a writer behind a low reader, a reader behind a low writer ------ */

#define INV_STEPS 50

static prt_rwlock_t inv_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int inv_m_steps, inv_m_steps_at_h, inv_l_steps;
static prt_fiber_t inv_h, inv_mf;
static bool inv_low_writes; /* L writes and H reads; else L reads and H writes */

/* M: a medium-priority hog that yields between its steps (cooperative). */
static void *inv_medium(void *arg)
{
	(void)arg;
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&inv_m_steps, 1);
		prt_yield();
	}
	return NULL;
}

static void *inv_high(void *arg)
{
	(void)arg;
	if ((inv_low_writes ? prt_rwlock_rdlock(&inv_rw) : prt_rwlock_wrlock(&inv_rw)) != 0)
		return (void *)1;
	atomic_store(&inv_m_steps_at_h, atomic_load(&inv_m_steps));
	prt_rwlock_unlock(&inv_rw);
	return NULL;
}

static void *inv_low(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();

	(void)arg;
	FIBER_CHECK((inv_low_writes ? prt_rwlock_wrlock(&inv_rw) : prt_rwlock_rdlock(&inv_rw)) == 0);
	FIBER_CHECK(prt_preempt_disable() == 0);
	inv_mf = test_spawn(rt, 10, -1, inv_medium, NULL);
	inv_h = test_spawn(rt, 20, -1, inv_high, NULL);
	FIBER_CHECK(prt_preempt_enable() == 0);
	/* The critical section: work in steps, yielding between them. */
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&inv_l_steps, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_rwlock_unlock(&inv_rw) == 0);
	return NULL;
}

/*
 * L (prio 5) holds @inv_rw, H (20) comes for it, M (10) hogs the one
 * worker: how many steps M made before H got the lock.
 */
static int inversion(unsigned flags, bool low_writes, prt_worker_stats_t *st)
{
	prt_runtime_t *rt = test_rt_flags(1, flags);
	prt_fiber_t l;

	inv_low_writes = low_writes;
	atomic_store(&inv_m_steps, 0);
	atomic_store(&inv_l_steps, 0);
	atomic_store(&inv_m_steps_at_h, -1);
	l = test_spawn(rt, 5, -1, inv_low, NULL);
	assert_null(join_res(l));
	assert_null(join_res(inv_h));
	assert_null(join_res(inv_mf));
	assert_int_equal(prt_worker_stats(rt, 0, st), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	return atomic_load(&inv_m_steps_at_h);
}

static void test_inversion_writer_proxy(void **state)
{
	prt_worker_stats_t st;

	(void)state;
	/* L, a reader, runs in H's place: M never gets a step before H writes. */
	assert_int_equal(inversion(0, false, &st), 0);
	assert_true(st.proxy_picks >= 1);
	assert_true(st.handoffs >= 1);
}

static void test_inversion_writer_noproxy(void **state)
{
	prt_worker_stats_t st;

	(void)state;
	/* Proof the test can fail: without proxy execution M runs to its end first. */
	assert_int_equal(inversion(PRT_RT_NO_PROXY, false, &st), INV_STEPS);
	assert_int_equal(st.proxy_picks, 0);
}

static void test_inversion_reader_proxy(void **state)
{
	prt_worker_stats_t st;

	(void)state;
	/* H reads behind L's write lock: L runs for H. */
	assert_int_equal(inversion(0, true, &st), 0);
	assert_true(st.proxy_picks >= 1);
	assert_int_equal(inversion(PRT_RT_NO_PROXY, true, &st), INV_STEPS);
	assert_int_equal(st.proxy_picks, 0);
}

/* The rwlock's own setting overrides the runtime's. */
static void test_inversion_attr(void **state)
{
	prt_rwlockattr_t a;
	prt_worker_stats_t st;

	(void)state;
	prt_rwlockattr_init(&a);
	prt_rwlockattr_setproxy(&a, PRT_RWLOCK_PROXY_ON);
	assert_int_equal(prt_rwlock_init(&inv_rw, &a), 0);
	assert_int_equal(inversion(PRT_RT_NO_PROXY, false, &st), 0);
	prt_rwlockattr_setproxy(&a, PRT_RWLOCK_PROXY_OFF);
	assert_int_equal(prt_rwlock_init(&inv_rw, &a), 0);
	assert_int_equal(inversion(0, false, &st), INV_STEPS);
	assert_int_equal(prt_rwlock_init(&inv_rw, NULL), 0);
}

/* ---- several readers: the writer's priority serves each in turn ---------------------- */

#define MR_READERS 3

static prt_rwlock_t mr_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int mr_m_steps, mr_m_at_h, mr_in;

static void *mr_medium(void *arg)
{
	(void)arg;
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&mr_m_steps, 1);
		prt_yield();
	}
	return NULL;
}

static atomic_int mr_go;

static void *mr_reader(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&mr_rw) == 0);
	atomic_fetch_add(&mr_in, 1);
	/* Hold until H waits (the readers, of one level, take turns), then work in steps. */
	while (!atomic_load(&mr_go))
		test_yield_wait();
	for (int i = 0; i < INV_STEPS; i++)
		prt_yield();
	FIBER_CHECK(prt_rwlock_unlock(&mr_rw) == 0);
	return NULL;
}

static void *mr_high(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&mr_rw) == 0);
	atomic_store(&mr_m_at_h, atomic_load(&mr_m_steps));
	FIBER_CHECK(atomic_load(&mr_in) == MR_READERS);
	FIBER_CHECK(prt_rwlock_unlock(&mr_rw) == 0);
	return NULL;
}

static void *mr_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t r[MR_READERS], m, h;

	(void)arg;
	/* Readers (5) take the lock, then M (10) and H (20) come. */
	for (int i = 0; i < MR_READERS; i++)
		r[i] = test_spawn(rt, 5, -1, mr_reader, NULL);
	while (atomic_load(&mr_in) < MR_READERS)
		pause_a_little();
	m = test_spawn(rt, 10, -1, mr_medium, NULL);
	h = test_spawn(rt, 20, -1, mr_high, NULL);
	wait_blocked(h);
	atomic_store(&mr_go, 1);
	FIBER_CHECK(prt_join(h, NULL) == 0);
	FIBER_CHECK(prt_join(m, NULL) == 0);
	for (int i = 0; i < MR_READERS; i++)
		FIBER_CHECK(prt_join(r[i], NULL) == 0);
	return NULL;
}

static void test_writer_serves_every_reader(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_worker_stats_t st;

	(void)state;
	atomic_store(&mr_m_steps, 0);
	atomic_store(&mr_in, 0);
	atomic_store(&mr_go, 0);
	atomic_store(&mr_m_at_h, -1);
	/* The main fiber (prio 30) only joins: it sleeps while the rest runs. */
	assert_null(test_run_in(rt, 30, mr_main, NULL));
	assert_int_equal(atomic_load(&mr_m_at_h), 0);
	assert_int_equal(prt_worker_stats(rt, 0, &st), 0);
	assert_true(st.proxy_picks >= MR_READERS);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a reader on another worker: the writer migrates to it, affinity kept --------------- */

static prt_rwlock_t rem_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int rem_h_done, rem_bad_worker, rem_locked;
static _Atomic(struct prt__fiber *) rem_hp;

static void *rem_low(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&rem_rw) == 0);
	atomic_store(&rem_locked, 1);
	/* M starves us on worker 1: we get here only by running in H's place. */
	while (!atomic_load(&rem_hp) || !atomic_load(&atomic_load(&rem_hp)->blocked_on)) {
		if (prt_worker_index() != 1)
			atomic_fetch_add(&rem_bad_worker, 1);
		prt_yield();
	}
	for (int i = 0; i < 200; i++) {
		if (prt_worker_index() != 1)
			atomic_fetch_add(&rem_bad_worker, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_rwlock_unlock(&rem_rw) == 0);
	return NULL;
}

static void *rem_medium(void *arg)
{
	(void)arg;
	while (!atomic_load(&rem_h_done)) {
		if (prt_worker_index() != 1)
			atomic_fetch_add(&rem_bad_worker, 1);
		prt_yield();
	}
	return NULL;
}

static void *rem_high(void *arg)
{
	(void)arg;
	while (!atomic_load(&rem_locked))
		test_yield_wait();
	if (prt_rwlock_wrlock(&rem_rw) != 0)
		return (void *)1;
	atomic_store(&rem_h_done, 1);
	if (prt_worker_index() != 0)
		atomic_fetch_add(&rem_bad_worker, 1); /* returned home before running */
	prt_rwlock_unlock(&rem_rw);
	return NULL;
}

static void test_remote_reader(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_worker_stats_t s0, s1;
	prt_fiber_t l, m, h;

	(void)state;
	atomic_store(&rem_h_done, 0);
	atomic_store(&rem_locked, 0);
	atomic_store(&rem_bad_worker, 0);
	atomic_store(&rem_hp, NULL);
	l = test_spawn(rt, 5, 1, rem_low, NULL);
	while (!atomic_load(&rem_locked))
		sched_yield();
	m = test_spawn(rt, 10, 1, rem_medium, NULL);
	h = test_spawn(rt, 20, 0, rem_high, NULL);
	atomic_store(&rem_hp, h.p);
	assert_null(join_res(h));
	assert_null(join_res(m));
	assert_null(join_res(l));
	assert_int_equal(atomic_load(&rem_bad_worker), 0);
	assert_int_equal(prt_worker_stats(rt, 0, &s0), 0);
	assert_int_equal(prt_worker_stats(rt, 1, &s1), 0);
	assert_true(s0.migrations + s1.migrations >= 1);
	assert_true(s1.proxy_picks >= 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a sleeping reader: the writer attaches, and comes back with it -------------------- */

static prt_rwlock_t sl_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int sl_parked;

static void *sl_reader(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&sl_rw) == 0);
	atomic_store(&sl_parked, 1);
	prt_park();
	FIBER_CHECK(prt_rwlock_unlock(&sl_rw) == 0);
	return NULL;
}

static void *sl_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&sl_rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&sl_rw) == 0);
	return NULL;
}

/* Attached to the sleeping reader, then timed out: back from the owner's donor list. */
static void *sl_timed_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&sl_rw, 30000000) == ETIMEDOUT);
	FIBER_CHECK(atomic_load(&prt_self().p->attached_to) == NULL);
	return NULL;
}

static void test_sleeping_reader(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_worker_stats_t st;
	prt_fiber_t r, w;

	(void)state;
	atomic_store(&sl_parked, 0);
	r = test_spawn(rt, 5, -1, sl_reader, NULL);
	while (!atomic_load(&sl_parked))
		sched_yield();
	w = test_spawn(rt, 20, -1, sl_writer, NULL);
	wait_blocked(w);
	/* The writer's pick finds the reader asleep: attach (never a busy loop of picks). */
	for (;;) {
		assert_int_equal(prt_worker_stats(rt, 0, &st), 0);
		if (st.attachments >= 1)
			break;
		sched_yield();
	}
	assert_int_equal(prt_unpark(r), 0);
	assert_null(join_res(r));
	assert_null(join_res(w));
	/* A timed writer attached to the sleeping reader times out while it sleeps on. */
	atomic_store(&sl_parked, 0);
	r = test_spawn(rt, 5, -1, sl_reader, NULL);
	while (!atomic_load(&sl_parked))
		sched_yield();
	w = test_spawn(rt, 20, -1, sl_timed_writer, NULL);
	assert_null(join_res(w));
	assert_int_equal(prt_unpark(r), 0);
	assert_null(join_res(r));
	assert_int_equal(prt_worker_stats(rt, 0, &st), 0);
	assert_true(st.attachments >= 2);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- more readers than slots: untracked holds ------------------------------------------ */

#define MANY 12 /* > PRT_RWLOCK_TRACKED */

static prt_rwlock_t mn_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int mn_in, mn_go, mn_w_done;

static void *mn_reader(void *arg)
{
	struct prt__fiber *self = prt_self().p;

	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&mn_rw) == 0);
	atomic_fetch_add(&mn_in, 1);
	while (!atomic_load(&mn_go))
		test_yield_wait();
	/* A writer waits now: a second read hold is admitted at once, tracked or not. */
	FIBER_CHECK(prt_rwlock_tryrdlock(&mn_rw) == 0);
	FIBER_CHECK(prt_rwlock_rdlock(&mn_rw) == 0);
	FIBER_CHECK(!atomic_load(&mn_w_done));
	for (int i = 0; i < 3; i++)
		FIBER_CHECK(prt_rwlock_unlock(&mn_rw) == 0);
	FIBER_CHECK(atomic_load(&self->rd_untracked) == 0); /* the counts balance */
	FIBER_CHECK(PRT_HELD_COUNT(atomic_load(&self->nheld)) == 0); /* (a deferred tick may have marked it owed) */
	return NULL;
}

static void *mn_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&mn_rw) == 0);
	FIBER_CHECK(atomic_load(&mn_in) == MANY);
	atomic_store(&mn_w_done, 1);
	FIBER_CHECK(prt_rwlock_unlock(&mn_rw) == 0);
	return NULL;
}

static void test_more_readers_than_slots(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t r[MANY], w;

	(void)state;
	atomic_store(&mn_in, 0);
	atomic_store(&mn_go, 0);
	atomic_store(&mn_w_done, 0);
	for (int i = 0; i < MANY; i++)
		r[i] = test_spawn(rt, 10, -1, mn_reader, NULL);
	while (atomic_load(&mn_in) < MANY)
		sched_yield();
	w = test_spawn(rt, 10, -1, mn_writer, NULL);
	wait_blocked(w);
	atomic_store(&mn_go, 1);
	for (int i = 0; i < MANY; i++)
		assert_null(join_res(r[i]));
	assert_null(join_res(w));
	assert_int_equal(prt_rwlock_destroy(&mn_rw), 0);
	assert_int_equal(prt_rwlock_init(&mn_rw, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- chains: rwlock -> mutex -> rwlock ------------------------------------------------- */

static prt_rwlock_t ch_rw1 = PRT_RWLOCK_INITIALIZER, ch_rw2 = PRT_RWLOCK_INITIALIZER;
static prt_mutex_t ch_mx = PRT_MUTEX_INITIALIZER;
static atomic_int ch_stage, ch_go, ch_m_steps, ch_m_at_h, ch_c_steps;

/* C (prio 2): reads rw2 and works in steps: the end of H's chain. */
static void *ch_c(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&ch_rw2) == 0);
	atomic_store(&ch_stage, 1);
	while (!atomic_load(&ch_go)) /* until the whole chain waits */
		test_yield_wait();
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&ch_c_steps, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_rwlock_unlock(&ch_rw2) == 0);
	return NULL;
}

/* B (3): holds the mutex, wants to write rw2 (behind C). */
static void *ch_b(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&ch_mx) == 0);
	atomic_store(&ch_stage, 2);
	FIBER_CHECK(prt_rwlock_wrlock(&ch_rw2) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&ch_rw2) == 0);
	FIBER_CHECK(prt_mutex_unlock(&ch_mx) == 0);
	return NULL;
}

/* A (4): reads rw1, wants the mutex (behind B). */
static void *ch_a(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&ch_rw1) == 0);
	atomic_store(&ch_stage, 3);
	FIBER_CHECK(prt_mutex_lock(&ch_mx) == 0);
	FIBER_CHECK(prt_mutex_unlock(&ch_mx) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&ch_rw1) == 0);
	return NULL;
}

static void *ch_medium(void *arg)
{
	(void)arg;
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&ch_m_steps, 1);
		prt_yield();
	}
	return NULL;
}

/* H (20): writes rw1: H -> rw1 (reader A) -> mutex (B) -> rw2 (reader C). */
static void *ch_h(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&ch_rw1) == 0);
	atomic_store(&ch_m_at_h, atomic_load(&ch_m_steps));
	FIBER_CHECK(atomic_load(&ch_c_steps) == INV_STEPS); /* C ran, for H */
	FIBER_CHECK(prt_rwlock_unlock(&ch_rw1) == 0);
	return NULL;
}

static void *ch_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t c, b, a, m, h;
	prt_wait_link_t l[8];
	int n;

	(void)arg;
	c = test_spawn(rt, 2, -1, ch_c, NULL);
	while (atomic_load(&ch_stage) < 1)
		pause_a_little();
	b = test_spawn(rt, 3, -1, ch_b, NULL);
	wait_blocked(b);
	a = test_spawn(rt, 4, -1, ch_a, NULL);
	wait_blocked(a);
	m = test_spawn(rt, 10, -1, ch_medium, NULL);
	h = test_spawn(rt, 20, -1, ch_h, NULL);
	wait_blocked(h);
	/* The chain as prt_fiber_wait_chain sees it, through a reader, a mutex and a reader. */
	n = prt_fiber_wait_chain(h, l, 8);
	FIBER_CHECK(n == 3);
	FIBER_CHECK(l[0].kind == PRT_WAIT_LINK_RWLOCK_RD && l[0].mutex == (void *)&ch_rw1);
	FIBER_CHECK(l[0].owner.p == a.p && l[0].owner.id == a.id);
	FIBER_CHECK(l[1].kind == PRT_WAIT_LINK_MUTEX && l[1].mutex == &ch_mx && l[1].owner.p == b.p);
	FIBER_CHECK(l[2].kind == PRT_WAIT_LINK_RWLOCK_RD && l[2].mutex == (void *)&ch_rw2);
	FIBER_CHECK(l[2].owner.p == c.p && !l[2].owner_is_thread);
	atomic_store(&ch_go, 1);
	FIBER_CHECK(prt_join(h, NULL) == 0);
	FIBER_CHECK(prt_join(m, NULL) == 0);
	FIBER_CHECK(prt_join(a, NULL) == 0);
	FIBER_CHECK(prt_join(b, NULL) == 0);
	FIBER_CHECK(prt_join(c, NULL) == 0);
	return NULL;
}

static void test_chain_rwlock_mutex_rwlock(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_worker_stats_t st;

	(void)state;
	atomic_store(&ch_stage, 0);
	atomic_store(&ch_go, 0);
	atomic_store(&ch_m_steps, 0);
	atomic_store(&ch_c_steps, 0);
	atomic_store(&ch_m_at_h, -1);
	/* The main fiber (30) spawns and joins; it never competes. */
	assert_null(test_run_in(rt, 30, ch_main, NULL));
	/* C ran at H's priority through the whole chain: M got no step before H. */
	assert_int_equal(atomic_load(&ch_m_at_h), 0);
	assert_int_equal(prt_worker_stats(rt, 0, &st), 0);
	assert_true(st.proxy_picks >= 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- deadlock detection ------------------------------------------------------------------ */

static prt_rwlock_t dl_rw = PRT_RWLOCK_INITIALIZER, dl_rw2 = PRT_RWLOCK_INITIALIZER;
static prt_mutex_t dl_mx = PRT_MUTEX_INITIALIZER;
static atomic_int dl_stage, dl_edeadlk, dl_f1_waits;

/* Count an EDEADLK (the caller then waits on nothing); false for anything but 0 and EDEADLK. */
static bool dl_result(int err)
{
	if (err != EDEADLK)
		return err == 0;
	atomic_fetch_add(&dl_edeadlk, 1);
	return atomic_load(&prt_self().p->blocked_on) == NULL;
}

/*
 * F1 takes rw (as @f1_reads says) and waits for the mutex; F2 holds the
 * mutex and then wants rw (as @f2_reads says): F2 closes the cycle.
 */
struct dl_case {
	bool f1_reads, f2_reads;
};

static int dl_rw_lock(prt_rwlock_t *rw, bool read)
{
	return read ? prt_rwlock_rdlock(rw) : prt_rwlock_wrlock(rw);
}

static void *dl_f1(void *arg)
{
	const struct dl_case *c = arg;
	int err;

	FIBER_CHECK(dl_rw_lock(&dl_rw, c->f1_reads) == 0);
	atomic_store(&dl_stage, 1);
	while (atomic_load(&dl_stage) < 2)
		pause_a_little();
	err = prt_mutex_lock(&dl_mx); /* waits for F2 (or sees F2 close the cycle) */
	FIBER_CHECK(dl_result(err));
	if (!err)
		FIBER_CHECK(prt_mutex_unlock(&dl_mx) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&dl_rw) == 0);
	return NULL;
}

static void *dl_f2(void *arg)
{
	const struct dl_case *c = arg;
	int err;

	FIBER_CHECK(prt_mutex_lock(&dl_mx) == 0);
	atomic_store(&dl_stage, 2);
	while (!atomic_load(&dl_f1_waits))
		pause_a_little();
	err = dl_rw_lock(&dl_rw, c->f2_reads);
	FIBER_CHECK(dl_result(err));
	if (!err)
		FIBER_CHECK(prt_rwlock_unlock(&dl_rw) == 0);
	FIBER_CHECK(prt_mutex_unlock(&dl_mx) == 0);
	/* Nothing was left behind: once F1 is done the lock is ours. */
	FIBER_CHECK(dl_rw_lock(&dl_rw, c->f2_reads) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&dl_rw) == 0);
	return NULL;
}

/*
 * On one worker exactly the fiber that closes the cycle is told; on
 * two, one already waiting may see it too, as for mutexes
 * (docs/design.md, section 9: at least one does); none waits for ever.
 */
static void dl_expect(int nworkers)
{
	if (nworkers == 1)
		assert_int_equal(atomic_load(&dl_edeadlk), 1);
	else
		assert_true(atomic_load(&dl_edeadlk) >= 1);
}

static void deadlock_case(bool f1_reads, bool f2_reads, int nworkers)
{
	prt_runtime_t *rt = test_rt(nworkers);
	struct dl_case c = { f1_reads, f2_reads };
	prt_fiber_t f1, f2;

	atomic_store(&dl_stage, 0);
	atomic_store(&dl_f1_waits, 0);
	atomic_store(&dl_edeadlk, 0);
	f1 = test_spawn(rt, 10, -1, dl_f1, &c);
	while (atomic_load(&dl_stage) < 1)
		sched_yield();
	f2 = test_spawn(rt, 10, -1, dl_f2, &c);
	wait_blocked(f1);
	atomic_store(&dl_f1_waits, 1);
	assert_null(join_res(f2));
	assert_null(join_res(f1));
	dl_expect(nworkers);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* The cycle runs through the rwlock's writer. */
static void test_deadlock_writer(void **state)
{
	(void)state;
	for (int w = 1; w <= 2; w++) {
		deadlock_case(false, true, w);
		deadlock_case(false, false, w);
	}
}

/* Through a tracked reader: a writer waits for it, it waits for the writer's mutex. */
static void test_deadlock_reader(void **state)
{
	(void)state;
	for (int w = 1; w <= 2; w++)
		deadlock_case(true, false, w);
}

/* rwlock -> mutex -> rwlock -> back: three fibers, two rwlocks (one read, one written). */
static atomic_int tri_stage;

static void *tri_a(void *arg)
{
	int err;

	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&dl_rw) == 0); /* A reads rw */
	atomic_store(&tri_stage, 1);
	while (atomic_load(&tri_stage) < 3)
		pause_a_little();
	err = prt_mutex_lock(&dl_mx); /* A -> mutex (C) */
	FIBER_CHECK(dl_result(err));
	if (!err)
		FIBER_CHECK(prt_mutex_unlock(&dl_mx) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&dl_rw) == 0);
	return NULL;
}

static void *tri_b(void *arg)
{
	int err;

	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&dl_rw2) == 0); /* B writes rw2 */
	atomic_store(&tri_stage, 2);
	err = prt_rwlock_wrlock(&dl_rw); /* B -> rw (reader A) */
	FIBER_CHECK(dl_result(err));
	if (!err)
		FIBER_CHECK(prt_rwlock_unlock(&dl_rw) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&dl_rw2) == 0);
	return NULL;
}

static void *tri_c(void *arg)
{
	int err;

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&dl_mx) == 0); /* C holds the mutex */
	atomic_store(&tri_stage, 3);
	while (!atomic_load(&dl_f1_waits))
		pause_a_little();
	err = prt_rwlock_rdlock(&dl_rw2); /* C -> rw2 (writer B) -> rw (reader A) -> mutex (C) */
	FIBER_CHECK(dl_result(err));
	if (!err)
		FIBER_CHECK(prt_rwlock_unlock(&dl_rw2) == 0);
	FIBER_CHECK(prt_mutex_unlock(&dl_mx) == 0);
	return NULL;
}

static void deadlock_three(int nworkers)
{
	prt_runtime_t *rt = test_rt(nworkers);
	prt_fiber_t a, b, c;

	atomic_store(&tri_stage, 0);
	atomic_store(&dl_f1_waits, 0);
	atomic_store(&dl_edeadlk, 0);
	a = test_spawn(rt, 10, -1, tri_a, NULL);
	while (atomic_load(&tri_stage) < 1)
		sched_yield();
	b = test_spawn(rt, 10, -1, tri_b, NULL);
	wait_blocked(b);
	c = test_spawn(rt, 10, -1, tri_c, NULL);
	wait_blocked(a);
	atomic_store(&dl_f1_waits, 1);
	assert_null(join_res(c));
	assert_null(join_res(b));
	assert_null(join_res(a));
	dl_expect(nworkers);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_deadlock_three(void **state)
{
	(void)state;
	for (int i = 0; i < 5; i++) {
		deadlock_three(1);
		deadlock_three(2);
	}
}

/* ---- timeouts ----------------------------------------------------------------------------- */

static prt_rwlock_t to_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int to_reader_in, to_writer_gone, to_reader_early;
static _Atomic(struct prt__fiber *) to_w; /* the waiting writer, if a fiber */

static void *to_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&to_rw, 100000000) == ETIMEDOUT); /* 100 ms */
	atomic_store(&to_writer_gone, 1);
	return NULL;
}

static void *to_reader(void *arg)
{
	struct prt__fiber *w;

	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&to_rw) == 0);
	/* Never while the writer, queued ahead of us, still waits. */
	if ((w = atomic_load(&to_w)) && atomic_load(&w->blocked_on))
		atomic_store(&to_reader_early, 1);
	atomic_store(&to_reader_in, 1);
	FIBER_CHECK(prt_rwlock_unlock(&to_rw) == 0);
	return NULL;
}

/*
 * The main thread reads; a writer waits (timed), a reader of its level
 * queues behind it. When the writer gives up, the reader it held back
 * joins the main thread's read phase, which is still on.
 */
static void timed_writer_releases_readers(int proxy)
{
	prt_runtime_t *rt = test_rt(2);
	prt_rwlockattr_t a;
	prt_fiber_t w, r;

	prt_rwlockattr_init(&a);
	prt_rwlockattr_setproxy(&a, proxy);
	assert_int_equal(prt_rwlock_init(&to_rw, &a), 0);
	atomic_store(&to_reader_in, 0);
	atomic_store(&to_writer_gone, 0);
	atomic_store(&to_reader_early, 0);
	assert_int_equal(prt_rwlock_rdlock(&to_rw), 0);
	w = test_spawn(rt, 10, -1, to_writer, NULL);
	atomic_store(&to_w, w.p);
	wait_blocked(w);
	r = test_spawn(rt, 10, -1, to_reader, NULL);
	wait_blocked(r);
	assert_true(wait_flag(&to_reader_in)); /* while we still read */
	assert_true(wait_flag(&to_writer_gone));
	assert_false(atomic_load(&to_reader_early));
	assert_int_equal(prt_rwlock_unlock(&to_rw), 0);
	atomic_store(&to_w, NULL);
	assert_null(join_res(w));
	assert_null(join_res(r));
	assert_int_equal(prt_rwlock_destroy(&to_rw), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_timed_writer_releases_readers(void **state)
{
	(void)state;
	timed_writer_releases_readers(PRT_RWLOCK_PROXY_ON);
	timed_writer_releases_readers(PRT_RWLOCK_PROXY_OFF);
}

/* A plain thread as the timed writer, fibers as the readers. */
static void *to_thread_writer(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)prt_rwlock_timedwrlock_ns(&to_rw, 100000000);
}

static void *to_fiber_holder(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&to_rw) == 0);
	FIBER_CHECK(wait_flag(&to_reader_in));
	FIBER_CHECK(prt_rwlock_unlock(&to_rw) == 0);
	return NULL;
}

static void test_timed_thread_writer(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t h, r;
	pthread_t t;
	void *res;

	(void)state;
	assert_int_equal(prt_rwlock_init(&to_rw, NULL), 0); /* destroyed by the test before */
	atomic_store(&to_reader_in, 0);
	h = test_spawn(rt, 10, -1, to_fiber_holder, NULL);
	/* Internal: the rwlock's first word is its owner word (lib/rwlock_int.h). */
	while (!__atomic_load_n(&to_rw.__align, __ATOMIC_ACQUIRE))
		sched_yield();
	assert_int_equal(pthread_create(&t, NULL, to_thread_writer, NULL), 0);
	/* Until the thread waits: then the word says someone is queued (PRT_MTX_WAITERS). */
	while (!(__atomic_load_n(&to_rw.__align, __ATOMIC_ACQUIRE) & 1))
		sched_yield();
	r = test_spawn(rt, PRT_PRIO_DEFAULT, -1, to_reader, NULL);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_int_equal((int)(intptr_t)res, ETIMEDOUT);
	assert_null(join_res(r)); /* joined the holder's phase once the writer left */
	assert_null(join_res(h));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A timed-out writer no longer lends its priority: H (20) waits behind
 * L (5, a reader) for 20 ms, M (10) hogs. While H waits L runs for it;
 * once H has given up, M runs to its end before L gets another step.
 */
static prt_rwlock_t td_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int td_h_done, td_l_steps, td_l_at_h, td_l_moved, td_m_done;

static void *td_low(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&td_rw) == 0);
	while (!atomic_load(&td_h_done)) {
		atomic_fetch_add(&td_l_steps, 1);
		test_yield_wait();
	}
	FIBER_CHECK(prt_rwlock_unlock(&td_rw) == 0);
	return NULL;
}

static void *td_medium(void *arg)
{
	(void)arg;
	while (!atomic_load(&td_h_done))
		test_yield_wait();
	for (int i = 0; i < INV_STEPS; i++) {
		if (atomic_load(&td_l_steps) != atomic_load(&td_l_at_h))
			atomic_store(&td_l_moved, 1);
		prt_yield();
	}
	atomic_store(&td_m_done, 1);
	return NULL;
}

static void *td_high(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&td_rw, 20000000) == ETIMEDOUT);
	atomic_store(&td_l_at_h, atomic_load(&td_l_steps));
	atomic_store(&td_h_done, 1);
	return NULL;
}

static void *td_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t l, m, h;

	(void)arg;
	l = test_spawn(rt, 5, -1, td_low, NULL);
	while (!atomic_load(&td_l_steps))
		pause_a_little();
	m = test_spawn(rt, 10, -1, td_medium, NULL);
	h = test_spawn(rt, 20, -1, td_high, NULL);
	FIBER_CHECK(prt_join(h, NULL) == 0);
	FIBER_CHECK(prt_join(m, NULL) == 0);
	FIBER_CHECK(prt_join(l, NULL) == 0);
	return NULL;
}

static void test_timeout_ends_donation(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_worker_stats_t st;

	(void)state;
	atomic_store(&td_h_done, 0);
	atomic_store(&td_l_steps, 0);
	atomic_store(&td_l_at_h, -1);
	atomic_store(&td_l_moved, 0);
	atomic_store(&td_m_done, 0);
	assert_null(test_run_in(rt, 30, td_main, NULL));
	assert_int_equal(prt_worker_stats(rt, 0, &st), 0);
	assert_true(st.proxy_picks >= 1);     /* L ran for H while H waited */
	assert_false(atomic_load(&td_l_moved)); /* and no more once H gave up */
	assert_true(atomic_load(&td_m_done));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- an rwlock shared by two runtimes: the pick never crosses over ------------------- */

static prt_rwlock_t xr_rw = PRT_RWLOCK_INITIALIZER;
static prt_runtime_t *xr_a, *xr_b;
static atomic_int xr_held, xr_done, xr_wrong;
static bool xr_holder_writes;

/* B's holder (5), starved by B's hog (10) until A's waiter has the lock. */
static void *xr_holder(void *arg)
{
	(void)arg;
	FIBER_CHECK((xr_holder_writes ? prt_rwlock_wrlock(&xr_rw) : prt_rwlock_rdlock(&xr_rw)) == 0);
	atomic_store(&xr_held, 1);
	while (!atomic_load(&xr_done)) {
		if (prt_runtime_self() != xr_b)
			atomic_store(&xr_wrong, 1);
		test_yield_wait();
	}
	FIBER_CHECK(prt_rwlock_unlock(&xr_rw) == 0);
	return NULL;
}

static void *xr_hog(void *arg)
{
	(void)arg;
	while (!atomic_load(&xr_done))
		test_yield_wait();
	return NULL;
}

/* A's waiter (20): the other kind of lock, on its own runtime's worker only. */
static void *xr_waiter(void *arg)
{
	(void)arg;
	FIBER_CHECK((xr_holder_writes ? prt_rwlock_rdlock(&xr_rw) : prt_rwlock_wrlock(&xr_rw)) == 0);
	if (prt_runtime_self() != xr_a)
		atomic_store(&xr_wrong, 1);
	FIBER_CHECK(prt_rwlock_unlock(&xr_rw) == 0);
	return NULL;
}

/*
 * A fiber of runtime A waits on an rwlock that a fiber of runtime B
 * holds (a reader, then a writer), B's worker busy: A's pick neither
 * runs B's fiber nor moves A's fiber to B's worker (as for a mutex:
 * test_mutex's test_shared_between_runtimes); it sleeps until granted.
 */
static void shared_between_runtimes(bool holder_writes)
{
	prt_fiber_t o, h, w;

	xr_holder_writes = holder_writes;
	atomic_store(&xr_held, 0);
	atomic_store(&xr_done, 0);
	atomic_store(&xr_wrong, 0);
	xr_a = test_rt(1);
	xr_b = test_rt(1);
	o = test_spawn(xr_b, 5, -1, xr_holder, NULL);
	while (!atomic_load(&xr_held))
		sched_yield();
	h = test_spawn(xr_b, 10, -1, xr_hog, NULL);
	w = test_spawn(xr_a, 20, -1, xr_waiter, NULL);
	wait_blocked(w);
	usleep(20000); /* A's picks have had their chance to cross over */
	atomic_store(&xr_done, 1);
	assert_null(join_res(w));
	assert_null(join_res(h));
	assert_null(join_res(o));
	assert_int_equal(atomic_load(&xr_wrong), 0);
	assert_int_equal(prt_runtime_destroy(xr_a), 0);
	assert_int_equal(prt_runtime_destroy(xr_b), 0);
}

static void test_shared_between_runtimes(void **state)
{
	(void)state;
	shared_between_runtimes(false);
	shared_between_runtimes(true);
}

/* ---- names in the dump, holders that end ---------------------------------------------------- */

static char *dump_text(prt_runtime_t *rt)
{
	int fd = memfd_create("dump", MFD_CLOEXEC);
	off_t len;
	char *buf;

	assert_true(fd >= 0);
	assert_int_equal(prt_runtime_dump(rt, fd), 0);
	len = lseek(fd, 0, SEEK_END);
	assert_true(len > 0);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
	buf[len] = '\0';
	close(fd);
	return buf;
}

static prt_rwlock_t nm_rw;
static atomic_int nm_held, nm_release;

static void *nm_holder(void *arg)
{
	bool write = arg != NULL;

	FIBER_CHECK((write ? prt_rwlock_wrlock(&nm_rw) : prt_rwlock_rdlock(&nm_rw)) == 0);
	atomic_store(&nm_held, 1);
	FIBER_CHECK(wait_flag(&nm_release));
	FIBER_CHECK(prt_rwlock_unlock(&nm_rw) == 0);
	return NULL;
}

static void *nm_waiter(void *arg)
{
	bool write = arg != NULL;

	FIBER_CHECK((write ? prt_rwlock_wrlock(&nm_rw) : prt_rwlock_rdlock(&nm_rw)) == 0);
	FIBER_CHECK(prt_rwlock_unlock(&nm_rw) == 0);
	return NULL;
}

static void test_names_in_dump(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_rwlockattr_t a;
	prt_fiber_t h, w;
	char expect[160], *text;
	const char *p;

	(void)state;
	prt_rwlockattr_init(&a);
	assert_int_equal(prt_rwlockattr_setname(&a, "config\"table"), 0);
	assert_int_equal(prt_rwlock_init(&nm_rw, &a), 0);
	/* Read-held: the writer's line names the lock and its readers, the chain goes through one. */
	atomic_store(&nm_held, 0);
	atomic_store(&nm_release, 0);
	h = test_spawn(rt, 5, -1, nm_holder, NULL);
	while (!atomic_load(&nm_held))
		sched_yield();
	w = test_spawn(rt, 10, -1, nm_waiter, (void *)1);
	wait_blocked(w);
	text = dump_text(rt);
	snprintf(expect, sizeof(expect), "wait=rwlock:%p name=\"config?table\" owner=readers:1 readers=%llu",
		 (void *)&nm_rw, (unsigned long long)prt_fiber_id(h));
	if (!strstr(text, expect))
		fail_msg("no \"%s\" in:\n%s", expect, text);
	snprintf(expect, sizeof(expect), "-> rwlock \"config?table\" %p -> readers:1 %llu",
		 (void *)&nm_rw, (unsigned long long)prt_fiber_id(h));
	if (!strstr(text, expect))
		fail_msg("no \"%s\" in:\n%s", expect, text);
	free(text);
	atomic_store(&nm_release, 1);
	assert_null(join_res(h));
	assert_null(join_res(w));
	/* Write-held: the owner is the writer. */
	atomic_store(&nm_held, 0);
	atomic_store(&nm_release, 0);
	h = test_spawn(rt, 5, -1, nm_holder, (void *)1);
	while (!atomic_load(&nm_held))
		sched_yield();
	w = test_spawn(rt, 10, -1, nm_waiter, NULL);
	wait_blocked(w);
	text = dump_text(rt);
	snprintf(expect, sizeof(expect), "wait=rwlock:%p name=\"config?table\" owner=%llu",
		 (void *)&nm_rw, (unsigned long long)prt_fiber_id(h));
	p = strstr(text, expect);
	if (!p || (p[strlen(expect)] != ' ' && p[strlen(expect)] != '\n'))
		fail_msg("no \"%s\" in:\n%s", expect, text);
	free(text);
	atomic_store(&nm_release, 1);
	assert_null(join_res(h));
	assert_null(join_res(w));
	/* Destroy forgets the name; an unnamed init at the address has none. */
	assert_int_equal(prt_rwlock_destroy(&nm_rw), 0);
	assert_int_equal(prt_rwlock_init(&nm_rw, NULL), 0);
	atomic_store(&nm_held, 0);
	atomic_store(&nm_release, 0);
	h = test_spawn(rt, 5, -1, nm_holder, NULL);
	while (!atomic_load(&nm_held))
		sched_yield();
	w = test_spawn(rt, 10, -1, nm_waiter, (void *)1);
	wait_blocked(w);
	text = dump_text(rt);
	snprintf(expect, sizeof(expect), "wait=rwlock:%p owner=readers:1", (void *)&nm_rw);
	if (!strstr(text, expect) || strstr(text, "config"))
		fail_msg("no \"%s\" (or a name left) in:\n%s", expect, text);
	free(text);
	atomic_store(&nm_release, 1);
	assert_null(join_res(h));
	assert_null(join_res(w));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* A reader that ends holding the lock leaves it held for reading, for good. */
static prt_rwlock_t eh_rw = PRT_RWLOCK_INITIALIZER;

static void *eh_reader_exits(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&eh_rw) == 0);
	return NULL;
}

static void *eh_after(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_timedwrlock_ns(&eh_rw, 20000000) == ETIMEDOUT);
	FIBER_CHECK(prt_rwlock_trywrlock(&eh_rw) == EBUSY);
	FIBER_CHECK(prt_rwlock_unlock(&eh_rw) == EPERM);
	FIBER_CHECK(prt_rwlock_rdlock(&eh_rw) == 0); /* readers still share it */
	FIBER_CHECK(prt_rwlock_unlock(&eh_rw) == 0);
	return NULL;
}

static void test_reader_exits_holding(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t f;
	char *text;

	(void)state;
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, eh_reader_exits, NULL);
	assert_null(join_res(f));
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, eh_after, NULL));
	text = dump_text(rt);
	if (!strstr(text, "holding=1"))
		fail_msg("no holding=1 in:\n%s", text);
	free(text);
	assert_int_equal(prt_rwlock_destroy(&eh_rw), EBUSY);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- no starvation: a writer in a stream of readers, a reader in a stream of writers ------ */

#define ST_STREAM 6
/*
 * Holds a stream fiber may begin while the one waits. With the fairness
 * rules it is one or two (what was under way when the one queued);
 * without them the stream goes on for ever, and stops here.
 */
#define ST_CAP 1000

static prt_rwlock_t st_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int st_done, st_capped, st_started;
static _Atomic(struct prt__fiber *) st_one_p;

/* A stream fiber: lock (as @arg says: NULL reads), yield inside, unlock, until st_done. */
static void *st_stream(void *arg)
{
	bool write = arg != NULL;
	int waited = 0;

	atomic_fetch_add(&st_started, 1);
	while (!atomic_load(&st_done)) {
		struct prt__fiber *one = atomic_load(&st_one_p);

		if (one && atomic_load(&one->blocked_on) && ++waited > ST_CAP) {
			atomic_fetch_add(&st_capped, 1);
			break;
		}
		FIBER_CHECK((write ? prt_rwlock_wrlock(&st_rw) : prt_rwlock_rdlock(&st_rw)) == 0);
		prt_yield();
		FIBER_CHECK(prt_rwlock_unlock(&st_rw) == 0);
	}
	return NULL;
}

/* The one that must get through: waits for the stream to run, then locks once. */
static void *st_one(void *arg)
{
	bool write = arg != NULL;

	while (atomic_load(&st_started) < ST_STREAM)
		pause_a_little();
	prt_sleep_ns(1000000); /* the stream overlaps by now */
	FIBER_CHECK((write ? prt_rwlock_wrlock(&st_rw) : prt_rwlock_rdlock(&st_rw)) == 0);
	atomic_store(&st_done, 1);
	FIBER_CHECK(prt_rwlock_unlock(&st_rw) == 0);
	return NULL;
}

static void no_starvation(bool one_writes)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t s[ST_STREAM], one;

	atomic_store(&st_done, 0);
	atomic_store(&st_capped, 0);
	atomic_store(&st_started, 0);
	for (int i = 0; i < ST_STREAM; i++)
		s[i] = test_spawn(rt, 10, -1, st_stream, one_writes ? NULL : (void *)1);
	one = test_spawn(rt, 10, -1, st_one, one_writes ? (void *)1 : NULL);
	atomic_store(&st_one_p, one.p);
	assert_null(join_res(one));
	atomic_store(&st_one_p, NULL);
	for (int i = 0; i < ST_STREAM; i++)
		assert_null(join_res(s[i]));
	/* It got in while the stream still ran: no stream fiber passed it ST_CAP times. */
	assert_int_equal(atomic_load(&st_capped), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_writer_not_starved(void **state)
{
	(void)state;
	no_starvation(true);
}

static void test_reader_not_starved(void **state)
{
	(void)state;
	no_starvation(false);
}

/* ---- a priority change re-sorts a waiter ------------------------------------------------ */

static void test_prio_change_resorts(void **state)
{
	static const struct ord_arg args[] = { { 'W', false }, { 'r', true } };
	prt_runtime_t *rt = test_rt(1);
	prt_fiber_t w, r;

	(void)state;
	assert_int_equal(prt_rwlock_init(&ord_rw, NULL), 0);
	atomic_store(&ord_n, 0);
	memset(ord_seq, 0, sizeof(ord_seq));
	assert_int_equal(prt_rwlock_wrlock(&ord_rw), 0);
	w = test_spawn(rt, 10, -1, ord_body, (void *)&args[0]);
	wait_blocked(w);
	/* A reader of the writer's level queues behind it... */
	r = test_spawn(rt, 10, -1, ord_body, (void *)&args[1]);
	wait_blocked(r);
	/* ...until it outranks it. */
	assert_int_equal(prt_fiber_set_priority(r, 20), 0);
	assert_int_equal(prt_rwlock_unlock(&ord_rw), 0);
	assert_null(join_res(w));
	assert_null(join_res(r));
	assert_string_equal(ord_seq, "rW");
	assert_int_equal(prt_rwlock_destroy(&ord_rw), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A priority change during a read phase: a reader raised above every
 * queued writer, or the writer ahead of it lowered below it, joins the
 * read phase at once, as a reader of that priority arriving then would
 * (rwlock.h). It waited for the phase to end (a review: 0 of 5 admitted
 * 50 ms later, the holder still reading).
 */
static prt_rwlock_t pj_rw = PRT_RWLOCK_INITIALIZER;
static atomic_int pj_reading, pj_go, pj_joined;

static void *pj_holder(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&pj_rw) == 0);
	atomic_store(&pj_reading, 1);
	while (!atomic_load(&pj_go))
		pause_a_little();
	FIBER_CHECK(prt_rwlock_unlock(&pj_rw) == 0);
	return NULL;
}

static void *pj_writer(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_wrlock(&pj_rw) == 0);
	FIBER_CHECK(atomic_load(&pj_joined)); /* the reader went first */
	FIBER_CHECK(prt_rwlock_unlock(&pj_rw) == 0);
	return NULL;
}

static void *pj_reader(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_rwlock_rdlock(&pj_rw) == 0);
	atomic_store(&pj_joined, 1);
	FIBER_CHECK(prt_rwlock_unlock(&pj_rw) == 0);
	return NULL;
}

static void test_prio_change_joins_read_phase(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	for (int lower_writer = 0; lower_writer < 2; lower_writer++) {
		prt_fiber_t h, w, r;

		atomic_store(&pj_reading, 0);
		atomic_store(&pj_go, 0);
		atomic_store(&pj_joined, 0);
		h = test_spawn(rt, 16, -1, pj_holder, NULL);
		assert_true(wait_flag(&pj_reading));
		w = test_spawn(rt, 16, -1, pj_writer, NULL);
		wait_blocked(w);
		r = test_spawn(rt, 10, -1, pj_reader, NULL);
		wait_blocked(r);
		assert_false(atomic_load(&pj_joined));
		if (lower_writer)
			assert_int_equal(prt_fiber_set_priority(w, 5), 0);
		else
			assert_int_equal(prt_fiber_set_priority(r, 20), 0);
		/* The holder reads on until the reader is in. */
		assert_true(wait_flag(&pj_joined));
		assert_true(is_blocked(w));
		atomic_store(&pj_go, 1);
		assert_null(join_res(h));
		assert_null(join_res(r));
		assert_null(join_res(w));
	}
	assert_int_equal(prt_rwlock_destroy(&pj_rw), 0);
	assert_int_equal(prt_rwlock_init(&pj_rw, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- stress: many fibers and two threads, random holds, an invariant --------------------- */

static prt_rwlock_t sx_rw = PRT_RWLOCK_INITIALIZER;
static prt_mutex_t sx_mx = PRT_MUTEX_INITIALIZER;
static atomic_int sx_readers, sx_writers, sx_bad, sx_stop;
static atomic_long sx_ops, sx_timeouts, sx_busy;
static int sx_nops;

static unsigned sx_rand(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 8;
}

/* Someone other than a thread yields; a thread yields its CPU. */
static void sx_yield(void)
{
	if (prt_yield() != 0)
		sched_yield();
}

static void sx_read_section(unsigned *seed, bool nested)
{
	atomic_fetch_add(&sx_readers, 1);
	if (atomic_load(&sx_writers))
		atomic_fetch_add(&sx_bad, 1);
	if (nested && prt_rwlock_rdlock(&sx_rw) == 0) { /* recursive: never waits */
		sx_yield();
		prt_rwlock_unlock(&sx_rw);
	} else if (sx_rand(seed) % 4 == 0) {
		sx_yield();
	}
	if (atomic_load(&sx_writers))
		atomic_fetch_add(&sx_bad, 1);
	atomic_fetch_sub(&sx_readers, 1);
}

static void sx_write_section(unsigned *seed)
{
	if (atomic_fetch_add(&sx_writers, 1) != 0 || atomic_load(&sx_readers))
		atomic_fetch_add(&sx_bad, 1);
	if (sx_rand(seed) % 4 == 0) {
		/* rwlock -> mutex, always in that order */
		prt_mutex_lock(&sx_mx);
		sx_yield();
		prt_mutex_unlock(&sx_mx);
	} else if (sx_rand(seed) % 3 == 0) {
		sx_yield();
	}
	if (atomic_load(&sx_readers) || atomic_load(&sx_writers) != 1)
		atomic_fetch_add(&sx_bad, 1);
	atomic_fetch_sub(&sx_writers, 1);
}

static void *sx_body(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;

	for (int i = 0; i < sx_nops; i++) {
		unsigned r = sx_rand(&seed) % 100;
		bool reader = r < 70;
		int err;

		if (r < 50)
			err = prt_rwlock_rdlock(&sx_rw);
		else if (r < 60)
			err = prt_rwlock_tryrdlock(&sx_rw);
		else if (r < 70)
			err = prt_rwlock_timedrdlock_ns(&sx_rw, sx_rand(&seed) % 200000);
		else if (r < 88)
			err = prt_rwlock_wrlock(&sx_rw);
		else if (r < 94)
			err = prt_rwlock_trywrlock(&sx_rw);
		else
			err = prt_rwlock_timedwrlock_ns(&sx_rw, sx_rand(&seed) % 200000);
		if (err == ETIMEDOUT) {
			atomic_fetch_add(&sx_timeouts, 1);
			continue;
		}
		if (err == EBUSY) {
			atomic_fetch_add(&sx_busy, 1);
			continue;
		}
		if (err) {
			atomic_fetch_add(&sx_bad, 1);
			continue;
		}
		if (reader)
			sx_read_section(&seed, sx_rand(&seed) % 8 == 0);
		else
			sx_write_section(&seed);
		if (prt_rwlock_unlock(&sx_rw) != 0)
			atomic_fetch_add(&sx_bad, 1);
		atomic_fetch_add(&sx_ops, 1);
		if (sx_rand(&seed) % 4 == 0)
			sx_yield();
	}
	return NULL;
}

static void *sx_thread(void *arg)
{
	return sx_body(arg);
}

/* Changes the stress fibers' priorities while they wait: re-sorts records on the rwlock. */
static prt_fiber_t *sx_fibers;
static int sx_nfibers;

static void *sx_changer(void *arg)
{
	unsigned seed = 77;

	(void)arg;
	while (!atomic_load(&sx_stop)) {
		prt_fiber_t f = sx_fibers[sx_rand(&seed) % (unsigned)sx_nfibers];

		prt_fiber_set_priority(f, 5 + (int)(sx_rand(&seed) % 3) * 5); /* ESRCH once ended */
		prt_sleep_ns(20000);
	}
	return NULL;
}

static void test_stress(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	pthread_t t[2];
	prt_fiber_t ch;
	uint64_t t0 = test_mono_ns();

	(void)state;
	sx_nfibers = PRT_TEST_TSAN || test_under_valgrind() ? 16 : 48;
	sx_nops = PRT_TEST_TSAN || test_under_valgrind() ? 300 : 2000;
	sx_fibers = calloc((size_t)sx_nfibers, sizeof(*sx_fibers));
	assert_non_null(sx_fibers);
	atomic_store(&sx_stop, 0);
	for (int i = 0; i < sx_nfibers; i++)
		sx_fibers[i] = test_spawn(rt, 5 + (i % 3) * 5, -1, sx_body, (void *)(uintptr_t)(i + 1));
	ch = test_spawn(rt, 25, -1, sx_changer, NULL);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, sx_thread, (void *)(uintptr_t)(1000 + i)),
				 0);
	for (int i = 0; i < sx_nfibers; i++)
		assert_null(join_res(sx_fibers[i]));
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_join(t[i], NULL), 0);
	atomic_store(&sx_stop, 1);
	assert_null(join_res(ch));
	fprintf(stderr, "rwlock stress: %ld holds, %ld timeouts, %ld busy, %.2f s\n",
		atomic_load(&sx_ops), atomic_load(&sx_timeouts), atomic_load(&sx_busy),
		(double)(test_mono_ns() - t0) / 1e9);
	assert_int_equal(atomic_load(&sx_bad), 0);
	assert_true(atomic_load(&sx_ops) > 0);
	/* Everything let go: free again, and destroyable. */
	assert_int_equal(prt_rwlock_trywrlock(&sx_rw), 0);
	assert_int_equal(prt_rwlock_unlock(&sx_rw), 0);
	assert_int_equal(prt_rwlock_destroy(&sx_rw), 0);
	assert_int_equal(prt_rwlock_init(&sx_rw, NULL), 0);
	test_stress_preempt_report(rt, "rwlock stress", 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(sx_fibers);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_holds_thread),
		cmocka_unit_test(test_own_holds_fiber),
		cmocka_unit_test(test_other_holder),
		cmocka_unit_test(test_untracked_holds_of_another_lock),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_bad_deadline),
		cmocka_unit_test(test_readers_share),
		cmocka_unit_test(test_phase_fair_order),
		cmocka_unit_test(test_priority_order),
		cmocka_unit_test(test_arrival_above_writer),
		cmocka_unit_test(test_arrival_behind_writer),
		cmocka_unit_test(test_inversion_writer_proxy),
		cmocka_unit_test(test_inversion_writer_noproxy),
		cmocka_unit_test(test_inversion_reader_proxy),
		cmocka_unit_test(test_inversion_attr),
		cmocka_unit_test(test_writer_serves_every_reader),
		cmocka_unit_test(test_remote_reader),
		cmocka_unit_test(test_sleeping_reader),
		cmocka_unit_test(test_more_readers_than_slots),
		cmocka_unit_test(test_chain_rwlock_mutex_rwlock),
		cmocka_unit_test(test_deadlock_writer),
		cmocka_unit_test(test_deadlock_reader),
		cmocka_unit_test(test_deadlock_three),
		cmocka_unit_test(test_timed_writer_releases_readers),
		cmocka_unit_test(test_timed_thread_writer),
		cmocka_unit_test(test_timeout_ends_donation),
		cmocka_unit_test(test_shared_between_runtimes),
		cmocka_unit_test(test_names_in_dump),
		cmocka_unit_test(test_reader_exits_holding),
		cmocka_unit_test(test_writer_not_starved),
		cmocka_unit_test(test_reader_not_starved),
		cmocka_unit_test(test_prio_change_resorts),
		cmocka_unit_test(test_prio_change_joins_read_phase),
		cmocka_unit_test(test_stress),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* a test's name, or a pattern with '*' */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
