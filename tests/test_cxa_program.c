/* SPDX-License-Identifier: MIT */
/*
 * The C++ runtime's exception state is found where the program has it.
 * A program linked with -static-libstdc++ has its own copy of the C++
 * runtime and of its per-thread exception state, which no libstdc++.so
 * in the process shares: the library must swap the program's (a review:
 * it looked the state up with dlsym alone, which found none there, and
 * fibers shared one stack of caught exceptions; tests/test_cxx.cpp has
 * the C++ side). Here the program defines __cxa_get_globals itself, as
 * a statically linked C++ runtime does, with state the test can read:
 * each fiber must see only its own across switches.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "test_common.h"

/* The Itanium C++ ABI's __cxa_eh_globals (lib/fiber_int.h, struct prt__cxa_eh). */
struct eh_globals {
	void *caught;
	unsigned uncaught;
};

static __thread struct eh_globals program_eh;

/* The program's C++ runtime, as -static-libstdc++ links one in. */
struct eh_globals *__cxa_get_globals(void);
struct eh_globals *__cxa_get_globals(void)
{
	return &program_eh;
}

#define ROUNDS 100

static atomic_int wrong;

static void *keeps_own(void *arg)
{
	int token = (int)(intptr_t)arg;

	for (int r = 0; r < ROUNDS; r++) {
		/* What another fiber left is not ours to see. */
		if (program_eh.caught || program_eh.uncaught)
			atomic_fetch_add(&wrong, 1);
		program_eh.caught = &program_eh + token;
		program_eh.uncaught = (unsigned)(token * 1000 + r);
		prt_yield();
		if (program_eh.caught != &program_eh + token ||
		    program_eh.uncaught != (unsigned)(token * 1000 + r))
			atomic_fetch_add(&wrong, 1);
		program_eh.caught = NULL;
		program_eh.uncaught = 0;
		prt_yield();
	}
	return NULL;
}

static void test_program_runtime_swapped(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_fiber_t f[3];

	(void)state;
	atomic_store(&wrong, 0);
	for (int i = 0; i < 3; i++)
		f[i] = test_spawn(rt, PRT_PRIO_DEFAULT, 0, keeps_own, (void *)(intptr_t)(i + 1));
	for (int i = 0; i < 3; i++)
		assert_int_equal(prt_join(f[i], NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(atomic_load(&wrong), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_program_runtime_swapped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
