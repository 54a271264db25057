/* SPDX-License-Identifier: MIT */
/*
 * A waiter whose wait ended (its deadline) after its waker had already
 * taken it off the object's list must not touch the object again: the
 * waker may destroy it and free it before its wake goes out. Shared by
 * the semaphore's and the wait group's tests (fault-injection builds).
 *
 * gone_after_wake() puts the object at the start of a page of its own
 * and lets one fiber on @rt wait on it with a 20 ms deadline; once that
 * fiber is blocked it calls @ops->wake. Two pause points open the
 * window: @waker_site holds the waker between its unlock and its wake,
 * @give_up_site holds the waiter, timed out, before it leaves. In
 * between, the waker destroys the object (@ops->destroy, which must say
 * 0: nobody waits on it any more) and makes its page PROT_NONE; any
 * touch of it then is a SIGSEGV. The waiter must return 0 (it was
 * woken, not timed out).
 */
#ifndef PRT_TEST_GONE_AFTER_WAKE_H
#define PRT_TEST_GONE_AFTER_WAKE_H

#include <sys/mman.h>

#include "test_common.h"
#include "fault.h"
#include "fiber_int.h" /* internal: a fiber's state (blocked yet?) */

struct gone_ops {
	int (*init)(void *obj);
	int (*wait_20ms)(void *obj);
	int (*wake)(void *obj);
	int (*destroy)(void *obj);
};

static struct {
	const struct gone_ops *ops;
	void *page;
	atomic_int gave_up, gone;
	int err, destroy_err, prot_err;
} gaw;

static void gaw_give_up(void *arg)
{
	(void)arg;
	atomic_store(&gaw.gave_up, 1);
	test_await_flag(&gaw.gone, 5000000000ull);
}

static void gaw_waker(void *arg)
{
	(void)arg;
	test_await_flag(&gaw.gave_up, 5000000000ull);
	gaw.destroy_err = gaw.ops->destroy(gaw.page);
	gaw.prot_err = mprotect(gaw.page, 4096, PROT_NONE);
	atomic_store(&gaw.gone, 1);
}

static void *gaw_wait(void *arg)
{
	(void)arg;
	gaw.err = gaw.ops->wait_20ms(gaw.page);
	return NULL;
}

static inline void gone_after_wake(prt_runtime_t *rt, const struct gone_ops *ops,
				   enum prt__pause_site waker_site,
				   enum prt__pause_site give_up_site)
{
	prt_fiber_t f;

	memset(&gaw, 0, sizeof(gaw));
	gaw.ops = ops;
	gaw.page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(gaw.page != MAP_FAILED);
	assert_int_equal(ops->init(gaw.page), 0);
	prt__fault_set_pause(give_up_site, gaw_give_up, NULL);
	prt__fault_set_pause(waker_site, gaw_waker, NULL);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, gaw_wait, NULL);
	while (atomic_load_explicit(&f.p->state, memory_order_acquire) != PRT_FS_BLOCKED)
		sched_yield();
	assert_int_equal(ops->wake(gaw.page), 0);
	assert_int_equal(prt_join(f, NULL), 0);
	prt__fault_set_pause(waker_site, NULL, NULL);
	prt__fault_set_pause(give_up_site, NULL, NULL);
	assert_true(atomic_load(&gaw.gave_up)); /* the window was reached */
	assert_int_equal(gaw.prot_err, 0);
	assert_int_equal(gaw.destroy_err, 0);
	assert_int_equal(gaw.err, 0); /* woken */
	assert_int_equal(munmap(gaw.page, 4096), 0);
}

#endif
