// SPDX-License-Identifier: MIT
//
// A C++ library that test_cxx_plugin.c loads with dlopen: one function-
// local static whose initializer computes, without runtime calls, until
// the flag it was given is set (or for a bounded count of rounds). Built
// twice: on its own, and linked with libproxyrt (PLUG_USES_PRT), whose
// __cxa_guard_acquire then comes before the C++ runtime's in its scope.
#include <atomic>
#ifdef PLUG_USES_PRT
#include <proxyrt/proxyrt.h>
#endif

namespace {
std::atomic<int> *arrived;
std::atomic<int> inits{ 0 };

int compute()
{
	volatile unsigned long x = 1;

	inits++;
	for (long i = 0; i < 4000L * 1000 * 1000 && !arrived->load(); i++)
		x = x * 6364136223846793005ull + 1;
	return arrived->load() ? 7 : 8;
}
} // namespace

extern "C" {
void plug_arm(std::atomic<int> *flag)
{
	arrived = flag;
}

int plug_value(void)
{
	static int v = compute();
	return v;
}

int plug_inits(void)
{
	return inits.load();
}

#ifdef PLUG_USES_PRT
int plug_yield(void)
{
	return prt_yield();
}
#endif
}
