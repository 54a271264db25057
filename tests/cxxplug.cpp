// SPDX-License-Identifier: MIT
//
// A C++ library that test_cxx_plugin.c loads with dlopen: one function-
// local static whose initializer computes, without runtime calls, until
// the flag it was given is set (or for a bounded count of rounds).
#include <atomic>

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
}
