/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the raw context switch (lib/arch/<arch>/): one cmocka
 * test per check in ctx_checks.h. The same checks run on aarch64 under
 * qemu-user through tests/ctx_selftest_main.c and scripts/check-aarch64.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "ctx_checks.h"
#include "test_common.h" /* PRT_TEST_TSAN */

/*
 * The checks switch stacks without the sanitizer fiber annotations the
 * library adds around its own switches. That is sound under ASan too:
 * the stacks are heap blocks, freed (and so re-poisoned) when a check
 * ends, and no context calls a noreturn function (see ctxc_park()), so
 * ASan never has to guess a stack's extent. Verified with gcc and clang,
 * -O0 to -O3, also with detect_stack_use_after_return=1.
 */
static void run_check(int (*fn)(void))
{
	assert_int_equal(fn(), 0);
}

static void test_ping_pong(void **state)
{
	(void)state;
	run_check(ctx_check_ping_pong);
}

static void test_callee_saved(void **state)
{
	(void)state;
	run_check(ctx_check_callee_saved);
}

static void test_fp_control(void **state)
{
	(void)state;
	run_check(ctx_check_fp_control);
}

static void test_stack_alignment(void **state)
{
	(void)state;
	run_check(ctx_check_stack_alignment);
}

static void test_interrupt(void **state)
{
	(void)state;
	/*
	 * TSan runs a handler installed through sigaction() later, at the
	 * thread's next intercepted call, not where the signal came: the
	 * checked loop makes none (it waited for its interrupts until the
	 * test's timeout), and a handler run later cannot move the
	 * interrupted pc. The library installs its own handler with the
	 * system call (lib/preempt_sig.c), which TSan does not see.
	 */
	if (PRT_TEST_TSAN)
		skip();
	run_check(ctx_check_interrupt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ping_pong),
		cmocka_unit_test(test_callee_saved),
		cmocka_unit_test(test_fp_control),
		cmocka_unit_test(test_stack_alignment),
		cmocka_unit_test(test_interrupt),
	};

	return cmocka_run_group_tests_name("ctx", tests, NULL, NULL);
}
