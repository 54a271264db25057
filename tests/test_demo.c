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

/* Lock waits of the two runs: most samples at one value, the first @odd at another (us). */
struct run_shape {
	double us;
	int odd;
	double odd_us;
};

static const struct {
	const char *what;
	struct run_shape proxy, plain;
	int shown;
} cases[] = {
	{ "an idle CPU (session 36's run): 0.9 ms against 6.7 ms",
	  { 864, 5, 962 }, { 6697, 5, 7794 }, 1 },
	{ "both CPUs busy: H never found the mutex held, in either run",
	  { 0, 10, 899 }, { 0, 10, 68889 }, 0 },
	{ "the plain run's wait less than half the medium work above the proxy's",
	  { 900, 0, 0 }, { 3800, 0, 0 }, 0 },
	{ "upside down", { 6000, 0, 0 }, { 900, 0, 0 }, 0 },
	{ "exactly half the medium work (3 x 2 ms / 2) above", { 1000, 0, 0 }, { 4000, 0, 0 }, 1 },
	{ "1 us under that", { 1000, 0, 0 }, { 3999, 0, 0 }, 0 },
};

static void fill(int64_t *v, const struct run_shape *s)
{
	for (int i = 0; i < N; i++)
		v[i] = (int64_t)((i < s->odd ? s->odd_us : s->us) * 1e3);
}

static void test_verdict(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t proxy[N], plain[N];

		fill(proxy, &cases[i].proxy);
		fill(plain, &cases[i].plain);
		if (inv_effect_shown(&demo, proxy, plain, N) != cases[i].shown)
			fail_msg("%s: expected %s", cases[i].what, cases[i].shown ? "shown" : "not shown");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdict),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
