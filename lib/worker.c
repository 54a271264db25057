/* SPDX-License-Identifier: MIT */
/*
 * Which worker the calling thread is: a thread-local pointer, set by
 * the worker thread itself (prt__worker_main) and NULL on any other
 * thread. The bottom of the scheduler: everything else asks it.
 */
#include "sched_int.h"

/* initial-exec: a plain %fs load, also in the shared library. */
static __thread struct prt__worker *tls_worker __attribute__((tls_model("initial-exec")));

/*
 * Never inlined: a fiber may resume on another worker after any switch,
 * so the compiler must not reuse a thread-local address computed before
 * it (docs/design.md, "Thread-local storage across migration").
 */
prt__noinline struct prt__worker *prt__cur_worker(void)
{
	struct prt__worker *w;

	__asm__ __volatile__("" ::: "memory");
	w = tls_worker;
	return w;
}

void prt__set_cur_worker(struct prt__worker *w)
{
	tls_worker = w;
}
