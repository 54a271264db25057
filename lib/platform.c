/* SPDX-License-Identifier: MIT */
#include <sched.h>
#include <stdlib.h>

#include "platform.h"

/*
 * Pauses before a contended spinlock gives its CPU away. Critical
 * sections under these locks are a few hundred nanoseconds, so a waiter
 * that spins this long is most likely waiting for a holder the kernel
 * preempted: with more workers than cores (allowed, and common under
 * other load) pure spinning would burn the holder's time slice. Yielding
 * lets the holder run.
 */
#define PRT_SPIN_BEFORE_YIELD 256

prt__noinline void prt__spin_lock_slow(prt__spinlock_t *l)
{
	unsigned n = 0;

	do {
		while (atomic_load_explicit(&l->v, memory_order_relaxed) != 0) {
			if (++n % PRT_SPIN_BEFORE_YIELD == 0)
				sched_yield();
			else
				prt__cpu_relax();
		}
		/* acquire: pairs with the release in prt__spin_unlock */
	} while (atomic_exchange_explicit(&l->v, 1, memory_order_acquire) != 0);
}

prt__noinline int prt__errno_get(void)
{
	__asm__ __volatile__("" ::: "memory");
	return errno;
}

prt__noinline void prt__errno_set(int e)
{
	__asm__ __volatile__("" ::: "memory");
	errno = e;
}

prt__noinline long prt__sys_ret(long r, int saved)
{
	if (r < 0)
		r = -prt__errno_get();
	prt__errno_set(saved);
	return r;
}

bool prt__env_u64(const char *name, uint64_t *out)
{
	const char *e = getenv(name);
	uint64_t v = 0;

	if (!e || !*e)
		return false;
	for (; *e; e++) {
		unsigned d = (unsigned)(*e - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}
