/* SPDX-License-Identifier: MIT */
/*
 * A C program that loads a C++ library (tests/cxxplug.cpp) with dlopen,
 * RTLD_LOCAL and RTLD_GLOBAL, whose function-local static's initializer
 * a fiber runs, preempted (one worker, 50 us slices), while another
 * fiber reaches it. The library's call must reach proxyrt's
 * __cxa_guard_acquire (lib/cxa_guard.c), which waits as a fiber: the C++
 * runtime's own waits as the worker thread, which hangs it for good.
 * A review, where no libstdc++ was linked into the program (the libc
 * allocator builds): linked with the static library the program did not
 * export proxyrt's, and the library bound to libstdc++'s (hung, 5/5);
 * linked with libproxyrt.so and the library loaded RTLD_LOCAL, proxyrt's
 * found no C++ runtime to call and aborted (5/5). Built twice: against
 * the static library and libproxyrt.so.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_common.h"

struct plug {
	void (*arm)(atomic_int *);
	int (*value)(void);
	int (*inits)(void);
	atomic_int arrived, wrong;
};

static void *first(void *arg)
{
	struct plug *p = arg;

	if (p->value() != 7)
		atomic_fetch_add(&p->wrong, 1);
	return NULL;
}

static void *second(void *arg)
{
	struct plug *p = arg;

	atomic_fetch_add(&p->arrived, 1);
	if (p->value() != 7)
		atomic_fetch_add(&p->wrong, 1);
	return NULL;
}

static void run_with(int mode)
{
	void *h = dlopen(PRT_TEST_CXXPLUG, RTLD_NOW | mode);
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_waitgroup_t wg;
	prt_fiber_t f[2];
	struct plug p = { 0 };
	int rc;

	if (!h)
		fail_msg("dlopen: %s", dlerror());
	p.arm = (void (*)(atomic_int *))dlsym(h, "plug_arm");
	p.value = (int (*)(void))dlsym(h, "plug_value");
	p.inits = (int (*)(void))dlsym(h, "plug_inits");
	assert_true(p.arm && p.value && p.inits);
	p.arm(&p.arrived);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = 50 * 1000;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_int_equal(prt_waitgroup_init(&wg), 0);
	if (prt_runtime_preemptive(rt, NULL) != 1) {
		/* (valgrind) Nothing preempts the first: the call's way to the C++ runtime alone. */
		fprintf(stderr, "test_cxx_plugin: no preemption here: one fiber\n");
		assert_int_equal(prt_waitgroup_spawn(&wg, rt, &f[0], NULL, second, &p), 0);
		f[1] = f[0];
	} else {
		assert_int_equal(prt_waitgroup_spawn(&wg, rt, &f[0], NULL, first, &p), 0);
		assert_int_equal(prt_waitgroup_spawn(&wg, rt, &f[1], NULL, second, &p), 0);
	}
	rc = prt_waitgroup_timedwait_ns(&wg, 60ull * 1000 * 1000 * 1000);
	if (rc == ETIMEDOUT) {
		fprintf(stderr, "test_cxx_plugin: %s: the fibers hung (the worker waits for the "
				"plugin's static initializer that one of its own fibers runs)\n",
			mode == RTLD_LOCAL ? "RTLD_LOCAL" : "RTLD_GLOBAL");
		_exit(1);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(prt_join(f[0], NULL), 0);
	if (f[1].p != f[0].p)
		assert_int_equal(prt_join(f[1], NULL), 0);
	assert_int_equal(p.inits(), 1);
	assert_int_equal(atomic_load(&p.arrived), 1);
	assert_int_equal(atomic_load(&p.wrong), 0);
	assert_int_equal(prt_waitgroup_destroy(&wg), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	dlclose(h);
}

static void test_plugin_local(void **state)
{
	(void)state;
	run_with(RTLD_LOCAL);
}

static void test_plugin_global(void **state)
{
	(void)state;
	run_with(RTLD_GLOBAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plugin_local),
		cmocka_unit_test(test_plugin_global),
	};

	unsetenv("PRT_PREEMPT_QUANTUM_NS"); /* the tests choose their time slices */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
