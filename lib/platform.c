/* SPDX-License-Identifier: MIT */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
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

static bool membarrier_ok;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static long membarrier_call(int cmd)
{
	return syscall(SYS_membarrier, cmd, 0u, 0);
}

static void membarrier_register(void)
{
	long q = membarrier_call(MEMBARRIER_CMD_QUERY);

	membarrier_ok = q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
			membarrier_call(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

bool prt__membarrier_ready(void)
{
	pthread_once(&membarrier_once, membarrier_register);
	return membarrier_ok;
}

void prt__membarrier(void)
{
	/*
	 * Registered (prt__membarrier_ready): the kernel documents no other
	 * failure. Should one come, the slower global barrier gives the
	 * same order; without either the lock would not be safe to take.
	 */
	if (membarrier_call(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 ||
	    membarrier_call(MEMBARRIER_CMD_GLOBAL) == 0)
		return;
	fprintf(stderr, "proxyrt: membarrier failed (errno %d)\n", errno);
	abort();
}
