/* SPDX-License-Identifier: MIT */
/*
 * Which worker the calling thread is: a thread-local pointer, set by
 * the worker thread itself (prt__worker_main) and NULL on any other
 * thread; and which worker a fiber made runnable goes to. The bottom
 * of the scheduler: everything else asks it.
 */
#include "runtime_int.h"
#include "fork.h"
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

/* The forking thread ran a fiber: the child's one thread (fork.h; prt__forked_fiber). */
static __thread bool forked_fiber;

/*
 * fork() from a fiber: the child's one thread is the worker thread, on
 * the fiber's stack, and the worker it was is a copy with no thread
 * behind its peers (a review: the child's calls on the parent's runtime
 * returned 0, a sleep ran the parent's other fibers in the child, and a
 * prt_join on the child's own runtime ran them instead of waiting). The
 * child goes on as a plain thread: the parent's runtimes are gone
 * (rt_ref.c), fiber-only calls are -EPERM, blocking calls block the
 * thread, and a runtime of its own works as anywhere.
 */
static void fork_child(void)
{
	if (prt__tls_worker) {
		prt__tls_worker = NULL;
		forked_fiber = true;
	}
}

struct prt__fork_hook prt__worker_fork_hook = { .lock = NULL, .child = fork_child };

bool prt__forked_fiber(void)
{
	return forked_fiber;
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
	/*
	 * None: a set is never empty (affinity_check), but a look that races
	 * prt_fiber_set_affinity's change of a set of several words may see
	 * half of each (fiber.c, affinity_store), and nothing. Queue it near
	 * (or on worker 0): the change's prt__migrate_queued, or the pick
	 * there, sends it where its new set allows, as for any stale look.
	 * (This asserted, and in a release build returned NULL to a caller
	 * that queued on it.)
	 */
	return near ? near : rt->workers[0];
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
