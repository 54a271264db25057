/* SPDX-License-Identifier: MIT */
/*
 * Which worker the calling thread is: a thread-local pointer, set by
 * the worker thread itself (prt__worker_main) and NULL on any other
 * thread; and which worker a fiber made runnable goes to. The bottom
 * of the scheduler: everything else asks it.
 */
#include "runtime_int.h"
#include "worker.h"

/* initial-exec: a plain %fs load, also in the shared library. */
__thread struct prt__worker *prt__tls_worker __attribute__((tls_model("initial-exec")));

/*
 * Never inlined: a fiber may resume on another worker after any switch,
 * so the compiler must not reuse a thread-local address computed before
 * it (docs/design.md, "Thread-local storage across migration").
 */
#if !(defined(__x86_64__) && !PRT_USE_TSAN && !PRT_USE_ASAN)
prt__noinline struct prt__worker *prt__cur_worker(void)
{
	struct prt__worker *w;

	__asm__ __volatile__("" ::: "memory");
	w = prt__tls_worker;
	return w;
}
#endif

void prt__set_cur_worker(struct prt__worker *w)
{
	prt__tls_worker = w;
}

static struct prt__worker *first_allowed(struct prt_runtime *rt, struct prt__fiber *f,
					 struct prt__worker *near)
{
	if (near) {
		const int *order = rt->topo.w[near->index].steal_order;

		for (int i = 0; i < rt->nworkers - 1; i++)
			if (prt__fiber_allowed(f, order[i]))
				return rt->workers[order[i]];
	}
	for (int i = 0; i < rt->nworkers; i++)
		if (prt__fiber_allowed(f, i))
			return rt->workers[i];
	prt__assert(!"fiber with an empty affinity");
	return NULL;
}

/* prt__select_worker, @cur being the caller's worker if it is one of f->rt's. */
struct prt__worker *prt__select_worker_from(struct prt__fiber *f, struct prt__worker *cur)
{
	struct prt__worker *last = PRT_READ_ONCE(f->last_worker);

	if (cur && prt__fiber_allowed(f, cur->index))
		return cur;
	if (last && prt__fiber_allowed(f, last->index))
		return last;
	return first_allowed(f->rt, f, cur ? cur : last);
}

/* Where a fiber made runnable goes: the waker's worker, else where it ran, else nearest allowed. */
struct prt__worker *prt__select_worker(struct prt__fiber *f)
{
	return prt__select_worker_from(f, prt__worker_of(f->rt, prt__cur_worker()));
}
