/* SPDX-License-Identifier: MIT */
/*
 * The switch (switch.h): what runs around prt__ctx_switch, out of line.
 */
#include <sched.h>

#include "fiber_desc.h"
#include "runtime_int.h"
#include "signal_int.h"
#include "switch.h"
#include "worker.h"

prt__cold void prt__wait_off_cpu(struct prt__fiber *f)
{
	/*
	 * A few instructions of the switch remain; but if the OS preempted
	 * that worker (a joining thread that just woke can be the reason:
	 * it took the CPU), spinning would burn our time slice while it
	 * waits. So spin briefly, then yield the CPU.
	 */
	for (int i = 0;; i++) {
		/* acquire: pairs with the release in prt__finish_switch */
		if (!atomic_load_explicit(&f->on_cpu, memory_order_acquire))
			return;
		if (i < 128)
			prt__cpu_relax();
		else
			sched_yield();
	}
}

static prt__cold void stack_overflow(struct prt__fiber *f)
{
	prt__report_overflow(f, "canary stack, found at a switch", NULL);
}

/*
 * A dying fiber passes NULL: ASan then frees its fake stack (the frames
 * of detect_stack_use_after_return) inside this call, so this function
 * must not have a fake frame of its own to retire on return.
 */
#if PRT_USE_ASAN
__attribute__((no_sanitize_address)) prt__noinline void
prt__asan_start(struct prt__fiber *prev, struct prt__fiber *next)
{
	bool dying = atomic_load_explicit(&prev->state, memory_order_relaxed) == PRT_FS_DEAD;

	__sanitizer_start_switch_fiber(dying ? NULL : &prev->asan_fake_stack, next->stack.base,
				       next->stack.size);
}
#endif

void prt__tsan_fiber_create(struct prt__fiber *f)
{
#if PRT_USE_TSAN
	f->tsan_fiber = __tsan_create_fiber(0);
	__tsan_set_fiber_name(f->tsan_fiber, f->name[0] ? f->name : "fiber");
#else
	(void)f;
#endif
}

static inline void tsan_fiber_destroy(struct prt__fiber *f)
{
#if PRT_USE_TSAN
	if (f->tsan_fiber)
		__tsan_destroy_fiber(f->tsan_fiber);
	f->tsan_fiber = NULL;
#else
	(void)f;
#endif
}

static inline void asan_finish(void)
{
#if PRT_USE_ASAN
	struct prt__worker *w = prt__cur_worker();

	__sanitizer_finish_switch_fiber(w->curr->asan_fake_stack, NULL, NULL);
#endif
}

/*
 * A fiber of @w's runtime ended on @w and the switch away from it is
 * done: its stack is back in the pool, and a detached one's descriptor
 * on the free list. Only now does it count as ended for
 * prt_runtime_destroy and prt_run_ex's on_exit: counted before the
 * switch (in fiber_exit), a detached fiber that had ended was still in
 * a dump taken at on_exit ("fibers=1", test_run_ex under load).
 */
static void count_exit(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;

	/* release: pairs with the acquire sum in all_exited() (runtime.c) */
	atomic_store_explicit(&w->nexited, atomic_load_explicit(&w->nexited, memory_order_relaxed) + 1, memory_order_release);
	if (atomic_load_explicit(&rt->destroying, memory_order_relaxed)) {
		/* seq_cst: pairs with the load in wait_all_exited() (runtime.c) */
		atomic_fetch_add_explicit(&rt->destroy_seq, 1, memory_order_seq_cst);
		prt__futex_wake(&rt->destroy_seq, INT_MAX);
	}
}

/*
 * An ended fiber's stack back: prt__stack_put's common case inline
 * (its out-of-line frame was 23 of a spawn+join's ~740 instructions, W2
 * with one worker, callgrind); the rest, and ASan's unpoisoning, there.
 */
static inline void stack_put(struct prt__worker *w, struct prt__stack *s)
{
#if !PRT_USE_ASAN
	if (prt__likely(prt__stack_put_warm(&w->stacks, s)))
		return;
#endif
	prt__stack_put(w->rt, w, s);
}

void prt__finish_switch(struct prt__fiber *from)
{
	bool dead = atomic_load_explicit(&from->state, memory_order_relaxed) == PRT_FS_DEAD;

	asan_finish();
	if (prt__unlikely(from->stack.flags & PRT_STK_CANARY) &&
	    !prt__stack_canary_ok(&from->stack, from->sp, dead))
		stack_overflow(from);
	if (prt__unlikely(dead)) {
		struct prt__worker *w = prt__cur_worker();
		bool reap = from->reap;

		tsan_fiber_destroy(from);
		stack_put(w, &from->stack);
		/* release: pairs with prt__wait_off_cpu() in join/detach */
		atomic_store_explicit(&from->on_cpu, 0, memory_order_release);
		if (reap)
			prt__fiber_free(from);
		count_exit(w);
		return;
	}
	/* release: pairs with the acquire in prt__switch_to()/prt__wait_off_cpu() */
	atomic_store_explicit(&from->on_cpu, 0, memory_order_release);
}
