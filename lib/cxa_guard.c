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
 * A fiber of another worker may still take the guard between the look
 * and the C++ runtime's call, which then waits in the kernel as a thread
 * would: that fiber runs on its own worker, which is not blocked.
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

/*
 * The C++ runtime's own: the one of the object whose __cxa_guard_release
 * the program calls (the pair must agree on the guard's protocol:
 * ThreadSanitizer's differs from libstdc++'s, and a program linked with
 * the static library has this acquire and TSan's release), else the next
 * definition after this library's.
 */
static guard_acquire_fn *find_acquire(void)
{
	void *rel = dlsym(RTLD_DEFAULT, "__cxa_guard_release"), *h, *sym = NULL;
	Dl_info di;

	if (rel && dladdr(rel, &di) && di.dli_fname && di.dli_fname[0] &&
	    (h = dlopen(di.dli_fname, RTLD_LAZY | RTLD_NOLOAD))) {
		/* A library's handle looks in the library first, then its dependencies. */
		sym = dlsym(h, "__cxa_guard_acquire");
		dlclose(h);
		if (sym == (void *)__cxa_guard_acquire)
			sym = NULL; /* the program itself: its scope is the global one */
	}
	if (!sym)
		sym = dlvsym(RTLD_NEXT, "__cxa_guard_acquire", "CXXABI_1.3");
	if (!sym)
		sym = dlsym(RTLD_NEXT, "__cxa_guard_acquire"); /* an unversioned runtime (libc++abi) */
	return (guard_acquire_fn *)sym;
}

static guard_acquire_fn *real_acquire(void)
{
	static guard_acquire_fn *_Atomic fn;
	guard_acquire_fn *f = atomic_load_explicit(&fn, memory_order_acquire);

	if (prt__likely(f))
		return f;
	if (!(f = find_acquire())) {
		/* Only a C++ runtime's code calls this: one must be behind us. */
		fprintf(stderr, "proxyrt: __cxa_guard_acquire called, and no C++ runtime has one: "
				"aborting\n");
		abort();
	}
	atomic_store_explicit(&fn, f, memory_order_release);
	return f;
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

int __cxa_guard_acquire(uint64_t *guard)
{
	struct prt__worker *w = prt__cur_worker();
	uint64_t delay = 1000;

	/* A fiber (a worker thread outside one runs no C++ code of anyone's). */
	if (w && w->curr != &w->idle) {
		while (guard_pending(guard)) {
			if (prt__sleep_until(w, prt__deadline_in(delay), false))
				prt_yield(); /* -ENOMEM: no timer; still let the others run */
			w = prt__cur_worker(); /* it may wake on another worker */
			if (delay < 1000 * 1000)
				delay *= 2;
		}
	}
	return real_acquire()(guard);
}
