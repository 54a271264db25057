/* SPDX-License-Identifier: MIT */
/*
 * C++ static initializers in fibers: the C++ ABI's one-time construction
 * call (Itanium C++ ABI 3.3.2, __cxa_guard_acquire), made to wait as a
 * fiber instead of as the worker thread.
 *
 * The compiler brackets the initializer of a function-local static with
 * __cxa_guard_acquire() and __cxa_guard_release(). While one thread runs
 * the initializer, the C++ runtime makes every other thread that reaches
 * it wait in the kernel (a futex on the guard word) until it is done.
 * Fibers share worker threads, so the thread that waits there is the
 * worker: if the fiber that runs the initializer is on the same worker
 * (preempted inside it, or blocked in it on a lock or I/O), it can never
 * run again to finish, and the worker hangs for ever (a review's program:
 * a 20 ms initializer preempted at 50 us, 8 fibers on 2 workers, hung 4
 * to 6 runs in 10; on one worker every run). With a worker that runs
 * other fibers meanwhile, nothing else runs there either.
 *
 * This library defines __cxa_guard_acquire at the C++ runtime's symbol
 * version (lib/proxyrt.map), so a program linked with it reaches this one
 * first: from a fiber, while another thread or fiber runs the initializer
 * (the guard's first byte, "done", is 0 and a byte after it is not: the
 * "pending" and "waiting" bits of libstdc++ and of LLVM's libc++abi), the
 * fiber sleeps (1 us, doubling to 1 ms; not cancellable: the ABI has no
 * error to return) and looks again, so its worker runs the other fibers,
 * the initializer's among them. Then the C++ runtime's own call does the
 * rest (takes the guard, or finds it done): the one paired with the
 * __cxa_guard_release the program calls (find_acquire). Plain threads go
 * straight to it. Where another copy comes first (a program linked with
 * -static-libstdc++, whose own copy wins over this weak one; ThreadSanitizer,
 * which intercepts the call) the hang remains: README, "Preemption".
 *
 * Fibers call the C++ runtime's acquire only for a guard that is not
 * pending, one at a time per guard (a trylock of a small table, hashed
 * by the guard's address, held across that call alone): so it takes the
 * guard or finds it done, and never waits in the kernel because another
 * fiber took it first (a review: two fibers on two workers reached the
 * guard together, the loser's worker waited in the kernel, and the
 * initializer waited for a fiber only that worker could run). Only a
 * plain thread taking the guard in that instant can make it wait, as
 * the thread it is.
 *
 * Which acquire is the C++ runtime's: the one paired with the release
 * the caller's code calls (find_acquire).
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <proxyrt/fiber.h>

#include "deadline.h"
#include "platform.h"
#include "sched_int.h"
#include "worker.h"

typedef int guard_acquire_fn(uint64_t *guard);

__attribute__((weak, visibility("default"))) int __cxa_guard_acquire(uint64_t *guard);

/* The acquire of the object @h (a handle): its own, or its dependencies' first; NULL if none or ours. */
static guard_acquire_fn *acquire_in(void *h)
{
	void *sym = dlsym(h, "__cxa_guard_acquire");

	return sym == (void *)__cxa_guard_acquire ? NULL : (guard_acquire_fn *)sym;
}

/* The acquire of the object that holds @addr (its handle's scope: itself, then its dependencies). */
static guard_acquire_fn *acquire_near(const void *addr)
{
	guard_acquire_fn *f = NULL;
	Dl_info di;
	void *h;

	if (addr && dladdr(addr, &di) && di.dli_fname && di.dli_fname[0] &&
	    (h = dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD))) {
		f = acquire_in(h);
		dlclose(h);
	}
	return f;
}

/* The __cxa_guard_release in the own scope of the object that holds @addr (not the global scope). */
static void *release_in_scope_of(const void *addr)
{
	void *h, *rel = NULL;
	Dl_info di;

	if (addr && dladdr(addr, &di) && di.dli_fname && di.dli_fname[0] &&
	    (h = dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD))) {
		rel = dlsym(h, "__cxa_guard_release");
		dlclose(h);
	}
	return rel;
}

/*
 * The C++ runtime's acquire for a caller at @ret: the one of the object
 * whose __cxa_guard_release that caller binds to (this library defines
 * no release, so that one is the runtime's). The pair must agree on the
 * guard word: ThreadSanitizer's protocol is not libstdc++'s, nor is
 * libc++abi's (a review: a libc++abi program with libstdc++ also in the
 * process hung with plain threads alone). A caller binds to the global
 * scope's release if there is one, found once (the global scope only
 * grows); else to its own scope's, a library loaded with RTLD_LOCAL that
 * brought its runtime along (a review: a C program without libstdc++
 * aborted here when such a library reached a static; another, when the
 * library also linked libproxyrt, whose acquire came first in its
 * scope). That is looked up at each call while the global scope has none
 * (each static calls once): a runtime loaded with RTLD_GLOBAL later is
 * then the one every caller binds to (a review: "none" remembered paired
 * libstdc++'s acquire with libc++abi's release, and a thread hung). Else
 * the next definition after this library's.
 */
static guard_acquire_fn *find_acquire(const void *ret)
{
	static guard_acquire_fn *_Atomic global;
	guard_acquire_fn *f = atomic_load_explicit(&global, memory_order_acquire);
	void *sym;

	if (prt__likely(f))
		return f;
	if ((f = acquire_near(dlsym(RTLD_DEFAULT, "__cxa_guard_release")))) {
		atomic_store_explicit(&global, f, memory_order_release);
		return f;
	}
	if ((f = acquire_near(release_in_scope_of(ret))))
		return f;
	if ((sym = dlvsym(RTLD_NEXT, "__cxa_guard_acquire", "CXXABI_1.3")) ||
	    (sym = dlsym(RTLD_NEXT, "__cxa_guard_acquire"))) /* an unversioned runtime (libc++abi) */
		return (guard_acquire_fn *)sym;
	/* Only a C++ runtime's code calls this: one must be behind us. */
	fprintf(stderr, "proxyrt: __cxa_guard_acquire called, and no C++ runtime has one: aborting\n");
	abort();
}

/* Another thread or fiber runs this guard's initializer (bytes 1-3: pending, waiting). */
static bool guard_pending(const uint64_t *guard)
{
	const _Atomic uint8_t *b = (const _Atomic uint8_t *)guard;

	/* acquire: "done" as the compiler's own test reads it; the others are a look */
	return !atomic_load_explicit(&b[0], memory_order_acquire) &&
	       (atomic_load_explicit(&b[1], memory_order_relaxed) ||
		atomic_load_explicit(&b[2], memory_order_relaxed) ||
		atomic_load_explicit(&b[3], memory_order_relaxed));
}

/* Fibers' turns at the C++ runtime's acquire, by guard address (hashed). */
static atomic_flag turn[64];

static atomic_flag *turn_of(const uint64_t *guard)
{
	uint32_t h = (uint32_t)((uintptr_t)guard >> 3) * 0x9e3779b1u; /* Fibonacci hashing */

	return &turn[h >> 26];
}

int __cxa_guard_acquire(uint64_t *guard)
{
	const void *ret = __builtin_return_address(0);
	struct prt__worker *w = prt__cur_worker();
	uint64_t delay = 1000;

	/* A plain thread (a worker thread outside a fiber runs no C++ code of anyone's). */
	if (!w || w->curr == &w->idle)
		return find_acquire(ret)(guard);
	for (;;) {
		atomic_flag *t = turn_of(guard);

		/* acquire: the turn's holder before us is done with the guard */
		if (!guard_pending(guard) && !atomic_flag_test_and_set_explicit(t, memory_order_acquire)) {
			if (!guard_pending(guard)) {
				/* Takes it (1) or finds it done (0): no other fiber is in the call for it. */
				int r = find_acquire(ret)(guard);

				atomic_flag_clear_explicit(t, memory_order_release);
				return r;
			}
			atomic_flag_clear_explicit(t, memory_order_release);
		}
		/* Pending, or another fiber's turn: sleep, so this worker runs the others. */
		if (prt__sleep_until(w, prt__deadline_in(delay), false))
			prt_yield(); /* -ENOMEM: no timer; still let the others run */
		w = prt__cur_worker(); /* it may wake on another worker */
		if (delay < 1000 * 1000)
			delay *= 2;
	}
}
