/* SPDX-License-Identifier: MIT */
/*
 * A shared library test_preempt loads with dlopen after its runtime
 * exists: code the table of preemptible ranges must learn about, and
 * that prt_preempt_deny_range()/_object() can take out of it again.
 * Each function marks, from inside its own code, that it is running, so
 * a fiber that finds the mark set knows the spinner was stopped in it.
 */
#include <stdint.h>

/*
 * Not instrumented by ThreadSanitizer: an instrumented store called
 * __tsan_write4 through this library's PLT, between the two stores of
 * the mark (in = 1 ... in = 0). The PLT lies outside the section that
 * prt_preempt_deny_range() takes out (it denies the code in the range,
 * not what that code calls), so an interrupt could stop the fiber there
 * with the mark set (1 run in 60 under TSan). Nothing between the two
 * stores may be a call.
 */
#define SPIN_NOTSAN __attribute__((no_sanitize("thread")))
#define SPIN_SECTION(s) __attribute__((noinline, section(s), visibility("default"))) SPIN_NOTSAN

/* Always inlined: the spinning is in the caller's section, even at -O0. */
static inline __attribute__((always_inline)) uint64_t lcg(uint64_t x, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		__asm__ volatile("" : "+r"(x));
	}
	return x;
}

/* In a section of its own, whose bounds spinlib_a_range() gives. */
SPIN_SECTION("spinlib_code_a") uint64_t spinlib_a(volatile int *in, uint64_t x, uint64_t n)
{
	*in = 1;
	x = lcg(x, n);
	*in = 0;
	return x;
}

/* In the library's ordinary .text. */
SPIN_NOTSAN __attribute__((noinline, visibility("default"))) uint64_t
spinlib_b(volatile int *in, uint64_t x, uint64_t n)
{
	*in = 1;
	x = lcg(x, n);
	*in = 0;
	return x;
}

extern const char __start_spinlib_code_a[], __stop_spinlib_code_a[];

__attribute__((visibility("default"))) void spinlib_a_range(const void **lo, const void **hi)
{
	*lo = __start_spinlib_code_a;
	*hi = __stop_spinlib_code_a;
}

/*
 * Poll @clock until *@stop is set (1) or @clock passes @until (0): a
 * fiber that never leaves denied code but for @clock (prt_now_ns).
 */
__attribute__((noinline, visibility("default"))) int spinlib_poll(volatile int *stop,
								   uint64_t (*clock)(void),
								   uint64_t until)
{
	while (!*stop)
		if (clock() > until)
			return 0;
	return 1;
}
