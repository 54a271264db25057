/* SPDX-License-Identifier: MIT */
/*
 * The wait primitive (lib/wait.c) on its own, for plain threads and for
 * fibers: a wake before the waiter sleeps is not lost; exactly one of a
 * wake and a timeout ends a wait, and the waiter's result says which
 * (checked against the waker's own return over many racing rounds); a
 * wake after the timeout is kept for a re-arm; prt_park keeps a permit
 * given while the parked fiber was woken but had not run yet.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "test_common.h"
#include "worker.h"
#include "deadline.h" /* internal: prt__now_ns */
#include "wait.h" /* internal: the primitive under test */
#include "sched_int.h" /* internal: the current worker and fiber */

/*
 * Racing rounds: fewer under valgrind, which runs one thread at a time,
 * and under TSan, where a round (a thread, or two fibers) costs 5-8 ms
 * of CPU (2000 of each kind: 25 s).
 */
static int ROUNDS = 2000, FEW = 300;

/* ---- plain threads ------------------------------------------------------- */

static void test_thread_wake_first(void **state)
{
	struct prt__wait wt;

	(void)state;
	prt__wait_init(&wt, NULL);
	assert_true(prt__wait_wake(&wt));
	assert_false(prt__wait_wake(&wt)); /* over: a second wake changes nothing */
	assert_int_equal(prt__wait_block(&wt, 0), 0);
	assert_int_equal(prt__wait_block(&wt, prt__now_ns() + 1000000), 0);
}

static void test_thread_timeout_late_wake(void **state)
{
	struct prt__wait wt;

	(void)state;
	prt__wait_init(&wt, NULL);
	assert_int_equal(prt__wait_block(&wt, prt__now_ns() + 1000000), ETIMEDOUT);
	/* The wake lost to the timeout, and is kept. */
	assert_false(prt__wait_wake(&wt));
	assert_int_equal(prt__wait_block(&wt, 0), ETIMEDOUT); /* not re-armed: still over */
	prt__wait_rearm(&wt);
	assert_int_equal(prt__wait_block(&wt, 0), 0); /* the kept wake ends it at once */
}

static void test_thread_past_deadline(void **state)
{
	struct prt__wait wt;

	(void)state;
	prt__wait_init(&wt, NULL);
	assert_int_equal(prt__wait_block(&wt, 1), ETIMEDOUT);
	assert_false(prt__wait_wake(&wt));
}

struct race {
	struct prt__wait wt;
	atomic_int go;
	atomic_int woke; /* the waker's result: 1 if its wake ended the wait */
	unsigned delay;  /* spins before the wake */
};

static void *waker_thread(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->go))
		test_spin_pause();
	for (volatile unsigned i = 0; i < r->delay; i++)
		;
	atomic_store(&r->woke, prt__wait_wake(&r->wt) ? 1 : 0);
	return NULL;
}

/* One wake and one timeout race: whichever the waiter reports is the one that won. */
static void test_thread_wake_vs_timeout(void **state)
{
	int wakes = 0, timeouts = 0;

	(void)state;
	for (int i = 0; i < ROUNDS; i++) {
		struct race r = { .delay = (unsigned)(rand() % 40000) };
		pthread_t t;
		int err;

		prt__wait_init(&r.wt, NULL);
		atomic_init(&r.go, 0);
		atomic_init(&r.woke, -1);
		assert_int_equal(pthread_create(&t, NULL, waker_thread, &r), 0);
		atomic_store(&r.go, 1);
		err = prt__wait_block(&r.wt, prt__now_ns() + (uint64_t)(rand() % 40) * 1000);
		pthread_join(t, NULL);
		assert_int_equal(atomic_load(&r.woke), err == 0);
		if (err) {
			assert_int_equal(err, ETIMEDOUT);
			timeouts++;
		} else {
			wakes++;
		}
	}
	assert_int_equal(wakes + timeouts, ROUNDS);
	fprintf(stderr, "# thread: %d wakes won, %d timeouts won\n", wakes, timeouts);
}

/* A thread that re-arms after its timeout and waits for a wake that comes later. */
static void *late_waker(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->go))
		sched_yield();
	atomic_store(&r->woke, prt__wait_wake(&r->wt) ? 1 : 0);
	return NULL;
}

static void test_thread_rearm_then_wake(void **state)
{
	struct race r = { 0 };
	pthread_t t;

	(void)state;
	prt__wait_init(&r.wt, NULL);
	atomic_init(&r.woke, -1);
	assert_int_equal(prt__wait_block(&r.wt, prt__now_ns() + 100000), ETIMEDOUT);
	prt__wait_rearm(&r.wt);
	assert_int_equal(pthread_create(&t, NULL, late_waker, &r), 0);
	atomic_store(&r.go, 1);
	assert_int_equal(prt__wait_block(&r.wt, 0), 0);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&r.woke), 1); /* re-armed: a new wait, which it ended */
}

/* ---- fibers -------------------------------------------------------------- */

struct fwait {
	struct prt__wait wt;
	atomic_int ready; /* the waiter published wt */
	atomic_int go;
	atomic_int woke;
	uint64_t deadline_in;
	int err;
	unsigned delay;
};

static void *fiber_waiter(void *arg)
{
	struct fwait *x = arg;

	prt__wait_init(&x->wt, prt__cur_worker()->curr);
	atomic_store(&x->ready, 1);
	atomic_store(&x->go, 1);
	x->err = prt__wait_block(&x->wt, x->deadline_in ? prt__now_ns() + x->deadline_in : 0);
	return NULL;
}

static void *fiber_waker(void *arg)
{
	struct fwait *x = arg;

	while (!atomic_load(&x->go))
		test_yield_wait();
	for (volatile unsigned i = 0; i < x->delay; i++)
		;
	atomic_store(&x->woke, prt__wait_wake(&x->wt) ? 1 : 0);
	return NULL;
}

static void *thread_waker_f(void *arg)
{
	struct fwait *x = arg;

	while (!atomic_load(&x->ready))
		sched_yield();
	atomic_store(&x->woke, prt__wait_wake(&x->wt) ? 1 : 0);
	return NULL;
}

/* A fiber woken by another fiber (same worker, other worker) and by a plain thread. */
static void test_fiber_woken(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	for (int i = 0; i < FEW; i++) {
		struct fwait x = { 0 };
		prt_fiber_t a, b;
		pthread_t t;

		atomic_init(&x.woke, -1);
		a = test_spawn(rt, PRT_PRIO_DEFAULT, i % 2, fiber_waiter, &x);
		if (i % 3 == 2) {
			assert_int_equal(pthread_create(&t, NULL, thread_waker_f, &x), 0);
			pthread_join(t, NULL);
		} else {
			b = test_spawn(rt, PRT_PRIO_DEFAULT, (i / 2) % 2, fiber_waker, &x);
			assert_int_equal(prt_join(b, NULL), 0);
		}
		assert_int_equal(atomic_load(&x.woke), 1); /* no deadline: the wake ends it */
		assert_int_equal(prt_join(a, NULL), 0);
		assert_int_equal(x.err, 0);
	}
	prt_runtime_destroy(rt);
}

/* A fiber's timed wait racing a wake from another fiber or a plain thread. */
static void test_fiber_wake_vs_timeout(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	int wakes = 0, timeouts = 0;

	(void)state;
	for (int i = 0; i < ROUNDS; i++) {
		struct fwait x = { .deadline_in = (uint64_t)(rand() % 40) * 1000 + 1,
				   .delay = (unsigned)(rand() % 40000) };
		prt_fiber_t a, b;

		atomic_init(&x.woke, -1);
		a = test_spawn(rt, PRT_PRIO_DEFAULT, 0, fiber_waiter, &x);
		b = test_spawn(rt, PRT_PRIO_DEFAULT, i % 2, fiber_waker, &x);
		assert_int_equal(prt_join(a, NULL), 0);
		assert_int_equal(prt_join(b, NULL), 0);
		assert_int_equal(atomic_load(&x.woke), x.err == 0);
		if (x.err) {
			assert_int_equal(x.err, ETIMEDOUT);
			timeouts++;
		} else {
			wakes++;
		}
	}
	assert_int_equal(wakes + timeouts, ROUNDS);
	fprintf(stderr, "# fiber: %d wakes won, %d timeouts won\n", wakes, timeouts);
	prt_runtime_destroy(rt);
}

/* A timed wait nobody wakes ends through the fiber's timer. */
static void *timeout_only(void *arg)
{
	struct prt__wait wt;
	int err;

	(void)arg;
	prt__wait_init(&wt, prt__cur_worker()->curr);
	err = prt__wait_block(&wt, prt__now_ns() + 2000000);
	FIBER_CHECK(err == ETIMEDOUT);
	FIBER_CHECK(!prt__wait_wake(&wt));
	prt__wait_rearm(&wt);
	FIBER_CHECK(prt__wait_block(&wt, 0) == 0); /* the late wake, kept */
	prt__wait_init(&wt, prt__cur_worker()->curr);
	FIBER_CHECK(prt__wait_block(&wt, 1) == ETIMEDOUT); /* past: no sleep at all */
	return NULL;
}

static void test_fiber_timeout(void **state)
{
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, timeout_only, NULL));
	prt_runtime_destroy(rt);
}

/* ---- park permits -------------------------------------------------------- */

static void *park_twice(void *arg)
{
	atomic_int *parked = arg;

	atomic_store(parked, 1);
	prt_park();
	atomic_store(parked, 2);
	prt_park(); /* the second unpark's permit: returns at once */
	atomic_store(parked, 3);
	return NULL;
}

/*
 * Two unparks of a parked fiber: the first wakes it, the second, whether
 * it comes before the fiber ran again or after, leaves a permit, so its
 * next park returns (prt_unpark's contract, fiber.h).
 */
static void test_park_two_unparks(void **state)
{
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	for (int i = 0; i < FEW; i++) {
		atomic_int parked = 0;
		prt_fiber_t f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, park_twice, &parked);
		struct prt__fiber *d = (struct prt__fiber *)f.p;

		/* Until it sleeps in its first park. */
		while (atomic_load(&parked) != 1 ||
		       atomic_load_explicit(&d->park.state, memory_order_acquire) != PRT_WAIT_SLEEPING)
			sched_yield();
		assert_int_equal(prt_unpark(f), 0);
		if (i % 2)
			while (atomic_load(&parked) == 1)
				sched_yield(); /* half the rounds: after it ran again */
		assert_int_equal(prt_unpark(f), 0);
		assert_int_equal(prt_join(f, NULL), 0);
		assert_int_equal(atomic_load(&parked), 3);
	}
	prt_runtime_destroy(rt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_thread_wake_first),
		cmocka_unit_test(test_thread_timeout_late_wake),
		cmocka_unit_test(test_thread_past_deadline),
		cmocka_unit_test(test_thread_wake_vs_timeout),
		cmocka_unit_test(test_thread_rearm_then_wake),
		cmocka_unit_test(test_fiber_woken),
		cmocka_unit_test(test_fiber_wake_vs_timeout),
		cmocka_unit_test(test_fiber_timeout),
		cmocka_unit_test(test_park_two_unparks),
	};

	srand(1);
	if (test_under_valgrind())
		ROUNDS = 200, FEW = 40;
	else if (PRT_TEST_TSAN)
		ROUNDS = 500;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
