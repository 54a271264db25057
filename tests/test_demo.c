/* SPDX-License-Identifier: MIT */
/*
 * The main demo's verdict (examples/inversion_demo.c, inv_effect_shown
 * in bench/inversion.h): it explains the inversion only when its runs
 * show it. Run while two test processes held both CPUs, its runs came
 * back with both lock waits at 0 and it still printed "H waits for the
 * medium fibers' 6 ms as well (0.0 ms: priority inversion)".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "inversion.h"

/* The demo's parameters (examples/inversion_demo.c). */
static const struct inv_params demo = {
	.samples = 100,
	.period_us = 10000, .hold_us = 1000, .nmed = 3,
	.mburst_us = 2000, .moff_us = 200, .hoff_us = 500,
};

enum { N = 100 };

/* @n samples of @us microseconds each, but @odd of them at @odd_us. */
static void fill(int64_t *v, int n, double us, int odd, double odd_us)
{
	for (int i = 0; i < n; i++)
		v[i] = (int64_t)((i < odd ? odd_us : us) * 1e3);
}

static void test_quiet_run_shows_it(void **state)
{
	int64_t proxy[N], plain[N];

	(void)state;
	/* An idle CPU (this session's run): 0.9 ms against 6.7 ms. */
	fill(proxy, N, 864, 5, 962);
	fill(plain, N, 6697, 5, 7794);
	assert_true(inv_effect_shown(&demo, proxy, plain, N));
}

static void test_busy_run_does_not(void **state)
{
	int64_t proxy[N], plain[N];

	(void)state;
	/* Both CPUs busy: H never found the mutex held, in either run. */
	fill(proxy, N, 0, 10, 899);
	fill(plain, N, 0, 10, 68889);
	assert_false(inv_effect_shown(&demo, proxy, plain, N));
	/* Or the plain run's wait not far above the proxy's (less than half the 6 ms). */
	fill(proxy, N, 900, 0, 0);
	fill(plain, N, 3800, 0, 0);
	assert_false(inv_effect_shown(&demo, proxy, plain, N));
	/* Or upside down. */
	fill(proxy, N, 6000, 0, 0);
	fill(plain, N, 900, 0, 0);
	assert_false(inv_effect_shown(&demo, proxy, plain, N));
}

static void test_threshold(void **state)
{
	int64_t proxy[N], plain[N];

	(void)state;
	/* Half the medium fibers' work (3 x 2 ms / 2 = 3 ms) above: shown; just under: not. */
	fill(proxy, N, 1000, 0, 0);
	fill(plain, N, 4000, 0, 0);
	assert_true(inv_effect_shown(&demo, proxy, plain, N));
	fill(proxy, N, 1000, 0, 0);
	fill(plain, N, 3999, 0, 0);
	assert_false(inv_effect_shown(&demo, proxy, plain, N));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quiet_run_shows_it),
		cmocka_unit_test(test_busy_run_does_not),
		cmocka_unit_test(test_threshold),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
