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
#include <sys/wait.h>
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

#define CHECK(c)                                                                       \
	do {                                                                           \
		if (!(c)) {                                                            \
			fprintf(stderr, "test_cxx_plugin: %s: line %d: %s\n", path, __LINE__, #c); \
			return 1;                                                      \
		}                                                                      \
	} while (0)

/* One case, in a child process of its own (below): 0 if it passed. */
static int child_run(const char *path, int mode)
{
	void *h = dlopen(path, RTLD_NOW | mode);
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_waitgroup_t wg;
	prt_fiber_t f[2];
	struct plug p = { 0 };
	int rc;

	if (!h) {
		fprintf(stderr, "test_cxx_plugin: dlopen: %s\n", dlerror());
		return 1;
	}
	p.arm = (void (*)(atomic_int *))dlsym(h, "plug_arm");
	p.value = (int (*)(void))dlsym(h, "plug_value");
	p.inits = (int (*)(void))dlsym(h, "plug_inits");
	CHECK(p.arm && p.value && p.inits);
	p.arm(&p.arrived);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = 50 * 1000;
	CHECK(prt_runtime_create(&rt, &cfg) == 0);
	CHECK(prt_waitgroup_init(&wg) == 0);
	if (prt_runtime_preemptive(rt, NULL) != 1) {
		/* (valgrind) Nothing preempts the first: the call's way to the C++ runtime alone. */
		fprintf(stderr, "test_cxx_plugin: no preemption here: one fiber\n");
		CHECK(prt_waitgroup_spawn(&wg, rt, &f[0], NULL, second, &p) == 0);
		f[1] = f[0];
	} else {
		CHECK(prt_waitgroup_spawn(&wg, rt, &f[0], NULL, first, &p) == 0);
		CHECK(prt_waitgroup_spawn(&wg, rt, &f[1], NULL, second, &p) == 0);
	}
	rc = prt_waitgroup_timedwait_ns(&wg, 60ull * 1000 * 1000 * 1000);
	if (rc == ETIMEDOUT) {
		fprintf(stderr, "test_cxx_plugin: %s %s: the fibers hung (the worker waits for the "
				"plugin's static initializer that one of its own fibers runs)\n",
			path, mode == RTLD_LOCAL ? "RTLD_LOCAL" : "RTLD_GLOBAL");
		_exit(1);
	}
	CHECK(rc == 0);
	CHECK(prt_join(f[0], NULL) == 0);
	if (f[1].p != f[0].p)
		CHECK(prt_join(f[1], NULL) == 0);
	CHECK(p.inits() == 1);
	CHECK(atomic_load(&p.arrived) == 1);
	CHECK(atomic_load(&p.wrong) == 0);
	CHECK(prt_waitgroup_destroy(&wg) == 0);
	CHECK(prt_runtime_destroy(rt) == 0);
	dlclose(h);
	return 0;
}

/*
 * Does the program's scope, which a library's calls search first, hold
 * proxyrt's __cxa_guard_acquire? Not under ThreadSanitizer linked as a
 * shared library before libproxyrt.so: its interceptor comes first, and
 * the hang this test looks for is left (lib/cxa_guard.c; test_cxx.cpp
 * skips its cases the same way).
 */
static bool guard_is_proxyrts(void)
{
	void *sym = dlsym(RTLD_DEFAULT, "__cxa_guard_acquire");
	Dl_info g, p;

	return sym && dladdr(sym, &g) && dladdr((void *)&prt_yield, &p) && g.dli_fbase == p.dli_fbase;
}

/*
 * Each case in a process of its own: a C++ runtime a library brought
 * stays loaded after its dlclose (libstdc++ cannot be unloaded), and one
 * loaded RTLD_GLOBAL stays in the global scope, where every later case
 * would find it.
 */
static void run_with(const char *path, int mode)
{
	pid_t pid;
	int st;

	if (!guard_is_proxyrts()) {
		fprintf(stderr, "test_cxx_plugin: __cxa_guard_acquire is not proxyrt's here (a "
				"sanitizer's): skipped\n");
		skip();
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_run(path, mode));
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fail_msg("%s %s: child %s %d", path, mode == RTLD_LOCAL ? "RTLD_LOCAL" : "RTLD_GLOBAL",
			 WIFEXITED(st) ? "exited" : "killed by signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static void test_plugin_local(void **state)
{
	(void)state;
	run_with(PRT_TEST_CXXPLUG, RTLD_LOCAL);
}

static void test_plugin_global(void **state)
{
	(void)state;
	run_with(PRT_TEST_CXXPLUG, RTLD_GLOBAL);
}

/*
 * A library that links libproxyrt itself: in its own scope proxyrt's
 * acquire comes before its C++ runtime's (a review: RTLD_LOCAL in a C
 * program without libstdc++ aborted, "no C++ runtime").
 */
static void test_plugin_with_proxyrt_local(void **state)
{
	(void)state;
	run_with(PRT_TEST_CXXPLUG_PRT, RTLD_LOCAL);
}

static void test_plugin_with_proxyrt_global(void **state)
{
	(void)state;
	run_with(PRT_TEST_CXXPLUG_PRT, RTLD_GLOBAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plugin_local),
		cmocka_unit_test(test_plugin_global),
		cmocka_unit_test(test_plugin_with_proxyrt_local),
		cmocka_unit_test(test_plugin_with_proxyrt_global),
	};

	unsetenv("PRT_PREEMPT_QUANTUM_NS"); /* the tests choose their time slices */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
