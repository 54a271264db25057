/* SPDX-License-Identifier: MIT */
/* Fault injection for tests (see fault.h); built only with -Dfault_injection=true. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "fault.h"
#include "sched_int.h"
#include "worker.h"

struct site {
	atomic_uint calls;
	atomic_uint nth;   /* 0: disarmed */
	atomic_int err;
	atomic_bool fired;
	atomic_long live;
};

static struct site sites[PRT_FAULT_NSITES];

struct pause {
	void (*_Atomic fn)(void *);
	void *_Atomic arg;
};

static struct pause pauses[PRT_PAUSE_NSITES];

void prt__fault_pause(enum prt__pause_site site)
{
	/* acquire: pairs with the release of fn in prt__fault_set_pause(), so arg is its own */
	void (*fn)(void *) = atomic_load_explicit(&pauses[site].fn, memory_order_acquire);
	struct prt__worker *w;
	struct prt__fiber *f;

	if (!fn)
		return;
	/*
	 * The hook is a test's code, where a preemption signal could stop
	 * the fiber, here in the library's (under a lock, inside a claim):
	 * the fiber's preempt count defers it, as in the library's own code,
	 * to the next scheduling point or retry. relaxed, with the signal
	 * fences: this thread's handler reads it.
	 */
	w = prt__cur_worker();
	f = w ? w->curr : NULL;
	if (f) {
		atomic_store_explicit(&f->preempt_count,
				      atomic_load_explicit(&f->preempt_count, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		atomic_signal_fence(memory_order_seq_cst);
	}
	fn(atomic_load_explicit(&pauses[site].arg, memory_order_relaxed));
	if (f) {
		atomic_signal_fence(memory_order_seq_cst);
		atomic_store_explicit(&f->preempt_count,
				      atomic_load_explicit(&f->preempt_count, memory_order_relaxed) - 1,
				      memory_order_relaxed);
	}
}

void prt__fault_set_pause(enum prt__pause_site site, void (*fn)(void *), void *arg)
{
	/* relaxed: cleared first, so a pause that reads it NULL calls nothing */
	atomic_store_explicit(&pauses[site].fn, NULL, memory_order_relaxed);
	atomic_store_explicit(&pauses[site].arg, arg, memory_order_relaxed);
	/* release: publishes arg to prt__fault_pause()'s acquire load of fn */
	atomic_store_explicit(&pauses[site].fn, fn, memory_order_release);
}

/*
 * The counters are seq_cst, as a test arms a site while other threads
 * (idle workers) may be calling it: prt__fault_arm() disarms (nth = 0)
 * before it resets the count and re-arms after, and a caller that
 * counts from the reset must then read the new nth, not an older one.
 * That takes a single order over the stores to nth and calls and the
 * caller's read-modify-write and load; weaker orders do not give it.
 */
int prt__fault(enum prt__fault_site site)
{
	struct site *s = &sites[site];
	unsigned n = atomic_fetch_add_explicit(&s->calls, 1, memory_order_seq_cst) + 1;

	/* Exactly one caller sees n == nth: the failure is handed out once. */
	if (n != atomic_load_explicit(&s->nth, memory_order_seq_cst))
		return 0;
	/*
	 * seq_cst, kept: the failure may be handed out on another thread (a
	 * worker) with nothing ordering it before the test's read of fired;
	 * no order makes that read certain, and this keeps today's timing.
	 */
	atomic_store_explicit(&s->fired, true, memory_order_seq_cst);
	/* relaxed: written before nth, whose seq_cst load above is an acquire */
	return atomic_load_explicit(&s->err, memory_order_relaxed);
}

void prt__fault_arm(enum prt__fault_site site, unsigned nth, int err)
{
	struct site *s = &sites[site];

	/* seq_cst, nth and calls: see prt__fault() */
	atomic_store_explicit(&s->nth, 0, memory_order_seq_cst);
	/* fired as in prt__fault(); err is published by the seq_cst (release) store of nth below */
	atomic_store_explicit(&s->fired, false, memory_order_seq_cst);
	atomic_store_explicit(&s->calls, 0, memory_order_seq_cst);
	atomic_store_explicit(&s->err, err, memory_order_relaxed);
	atomic_store_explicit(&s->nth, nth, memory_order_seq_cst);
}

/* relaxed: the test reads it after the operations it counts returned (which orders them) */
unsigned prt__fault_calls(enum prt__fault_site site)
{
	return atomic_load_explicit(&sites[site].calls, memory_order_relaxed);
}

/* seq_cst, kept: pairs with the store in prt__fault() (see there) */
bool prt__fault_fired(enum prt__fault_site site)
{
	return atomic_load_explicit(&sites[site].fired, memory_order_seq_cst);
}

void prt__fault_track(enum prt__fault_site site, long delta)
{
	atomic_fetch_add_explicit(&sites[site].live, delta, memory_order_relaxed);
}

long prt__fault_live(enum prt__fault_site site)
{
	/* relaxed: counts only (prt__fault_track); read once the runtime was destroyed */
	return atomic_load_explicit(&sites[site].live, memory_order_relaxed);
}

#if defined(__x86_64__)
extern int __popcountdi2(long long);
#define LIBGCC_ROUTINE ((uintptr_t)&__popcountdi2)
#elif defined(__aarch64__)
extern unsigned __aarch64_cas4_acq_rel(unsigned, unsigned, void *);
#define LIBGCC_ROUTINE ((uintptr_t)&__aarch64_cas4_acq_rel)
#else
#define LIBGCC_ROUTINE ((uintptr_t)0)
#endif

uintptr_t prt__fault_libgcc_routine(void)
{
	return LIBGCC_ROUTINE;
}
