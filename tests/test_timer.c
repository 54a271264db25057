/* SPDX-License-Identifier: MIT */
/*
 * The deadline heap (lib/timer.c) on its own: timers fire in deadline
 * order, each through its own callback with the firer's context; a
 * disarmed timer never fires; the earliest deadline is published in
 * @next; a callback may arm its timer again; the heap grows, and a
 * failed growth leaves the timer unarmed and the heap intact.
 */
#include <errno.h>
#include <stdlib.h>

#include "test_common.h"
#include "platform.h"
#include "fault.h" /* internal: failing the heap's allocation (fault-injection builds) */
#include "timer.h" /* internal: the heap under test */

#define N 1000

struct tt {
	struct prt__timer t;
	uint64_t deadline;
	int fired;
	int rearm;       /* fire again this much later, once */
	void *ctx_seen;
};

static struct tt tt[N];
static uint64_t last_fired;
static int order_ok;
static struct prt__timers *heap_of_cb;

static void cb(struct prt__timer *t, void *ctx)
{
	struct tt *x = prt__container_of(t, struct tt, t);

	x->fired++;
	x->ctx_seen = ctx;
	assert_false(prt__timer_armed(t)); /* taken off before its callback */
	if (x->deadline < last_fired)
		order_ok = 0;
	last_fired = x->deadline;
	if (x->rearm) {
		x->deadline += (uint64_t)x->rearm;
		x->rearm = 0;
		assert_true(prt__timer_add(heap_of_cb, t, x->deadline, cb) >= 0);
	}
}

static void reset(void)
{
	memset(tt, 0, sizeof(tt));
	last_fired = 0;
	order_ok = 1;
}

static void test_fires_in_order(void **state)
{
	struct prt__timers h;
	unsigned seed = 1, n = 0;
	int ctx;

	(void)state;
	reset();
	prt__timers_init(&h);
	heap_of_cb = &h;
	assert_int_equal(atomic_load(&h.next), PRT_NO_DEADLINE);
	for (int i = 0; i < N; i++) {
		int r;

		tt[i].deadline = 1 + (uint64_t)(rand_r(&seed) % 5000); /* duplicates too */
		r = prt__timer_add(&h, &tt[i].t, tt[i].deadline, cb);
		assert_true(r == 0 || r == 1);
		/* 1 exactly when it is the earliest now */
		assert_int_equal(r == 1, prt__timers_first(&h) == tt[i].deadline &&
					 atomic_load(&h.next) == tt[i].deadline);
		assert_true(prt__timer_armed(&tt[i].t));
	}
	assert_int_equal(h.n, N);
	/* Fire in steps: only what is due, earliest first, with our context. */
	for (uint64_t now = 0; now <= 5000; now += 250) {
		n += prt__timers_run(&h, now, &ctx);
		for (int i = 0; i < N; i++)
			assert_int_equal(tt[i].fired, tt[i].deadline <= now);
		assert_int_equal(atomic_load(&h.next), prt__timers_first(&h));
	}
	assert_int_equal(n, N);
	assert_true(order_ok);
	for (int i = 0; i < N; i++)
		assert_ptr_equal(tt[i].ctx_seen, &ctx);
	assert_int_equal(h.n, 0);
	assert_int_equal(atomic_load(&h.next), PRT_NO_DEADLINE);
	prt__timers_fini(&h);
}

static void test_disarmed_never_fire(void **state)
{
	struct prt__timers h;
	unsigned seed = 7;

	(void)state;
	reset();
	prt__timers_init(&h);
	heap_of_cb = &h;
	for (int i = 0; i < N; i++) {
		tt[i].deadline = 1 + (uint64_t)(rand_r(&seed) % 100000);
		assert_true(prt__timer_add(&h, &tt[i].t, tt[i].deadline, cb) >= 0);
	}
	/* Disarm every third, wherever it sits in the heap (first, middle, last). */
	for (int i = 0; i < N; i += 3) {
		prt__timer_del(&h, &tt[i].t);
		assert_false(prt__timer_armed(&tt[i].t));
		assert_int_equal(atomic_load(&h.next), prt__timers_first(&h));
	}
	assert_int_equal(prt__timers_run(&h, UINT64_MAX - 1, NULL), N - (N + 2) / 3);
	for (int i = 0; i < N; i++)
		assert_int_equal(tt[i].fired, i % 3 != 0);
	assert_true(order_ok);
	/* Disarming the earliest moves @next on; the last one leaves it empty. */
	assert_true(prt__timer_add(&h, &tt[0].t, 10, cb) == 1);
	assert_true(prt__timer_add(&h, &tt[1].t, 20, cb) == 0);
	prt__timer_del(&h, &tt[0].t);
	assert_int_equal(atomic_load(&h.next), 20);
	prt__timer_del(&h, &tt[1].t);
	assert_int_equal(atomic_load(&h.next), PRT_NO_DEADLINE);
	prt__timers_fini(&h);
}

static void test_rearm_in_callback(void **state)
{
	struct prt__timers h;

	(void)state;
	reset();
	prt__timers_init(&h);
	heap_of_cb = &h;
	tt[0].deadline = 100;
	tt[0].rearm = 50;
	tt[1].deadline = 120;
	assert_true(prt__timer_add(&h, &tt[0].t, tt[0].deadline, cb) == 1);
	assert_true(prt__timer_add(&h, &tt[1].t, tt[1].deadline, cb) == 0);
	/* At 200: 0 fires at 100, is armed again for 150 (due too), 1 at 120. */
	assert_int_equal(prt__timers_run(&h, 200, NULL), 3);
	assert_int_equal(tt[0].fired, 2);
	assert_int_equal(tt[1].fired, 1);
	assert_true(order_ok);
	assert_int_equal(h.n, 0);
	prt__timers_fini(&h);
}

static void test_never_fires_before_never(void **state)
{
	struct prt__timers h;

	(void)state;
	reset();
	prt__timers_init(&h);
	heap_of_cb = &h;
	assert_true(prt__timer_add(&h, &tt[0].t, PRT_NO_DEADLINE - 1, cb) == 1);
	assert_int_equal(prt__timers_run(&h, PRT_NO_DEADLINE - 2, NULL), 0);
	assert_int_equal(prt__timers_run(&h, PRT_NO_DEADLINE - 1, NULL), 1);
	prt__timers_fini(&h);
}

static void test_growth_failure(void **state)
{
	(void)state;
#if PRT_FAULT_INJECTION
	struct prt__timers h;
	unsigned cap;

	reset();
	prt__timers_init(&h);
	heap_of_cb = &h;
	/* The first add allocates: make it fail, then work. */
	prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(prt__timer_add(&h, &tt[0].t, 5, cb), -ENOMEM);
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	assert_false(prt__timer_armed(&tt[0].t));
	assert_int_equal(h.n, 0);
	assert_int_equal(atomic_load(&h.next), PRT_NO_DEADLINE);
	/* Fill to capacity, then fail the growth: the heap stays as it was. */
	for (int i = 0; i < N; i++) {
		if (h.n == h.cap && h.n) {
			cap = h.cap;
			prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
			assert_int_equal(prt__timer_add(&h, &tt[i].t, 1, cb), -ENOMEM);
			prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
			assert_false(prt__timer_armed(&tt[i].t));
			assert_int_equal(h.cap, cap);
			assert_int_equal(h.n, cap);
		}
		tt[i].deadline = 1000 + (uint64_t)(N - i);
		assert_true(prt__timer_add(&h, &tt[i].t, tt[i].deadline, cb) >= 0);
	}
	assert_int_equal(prt__timers_run(&h, UINT64_MAX - 1, NULL), N);
	assert_true(order_ok);
	prt__timers_fini(&h);
#else
	skip(); /* needs the fault points of -Dfault_injection=true */
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fires_in_order),
		cmocka_unit_test(test_disarmed_never_fire),
		cmocka_unit_test(test_rearm_in_callback),
		cmocka_unit_test(test_never_fires_before_never),
		cmocka_unit_test(test_growth_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
