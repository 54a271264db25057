/* SPDX-License-Identifier: MIT */
/*
 * The preemption signal's handler and everything it calls (preempt.c
 * says what preemption is; docs/design.md, "Preemption").
 *
 * Compiled without ThreadSanitizer (meson.build, proxyrt_nosan), with
 * lib/arch/<arch>/preempt_ctx.c and sigact.c: the handler is installed
 * with the rt_sigaction system call itself (sigact.h, @raw), so the
 * kernel runs it at once with the real interrupted context, not
 * ThreadSanitizer's interceptor later with a copy, in which a rewritten
 * context would be lost. ThreadSanitizer then does not know a handler
 * runs, and the interrupted code may be its own runtime in the middle
 * of updating the thread's state: so this code calls nothing of it (no
 * instrumented code, no __tsan_func_entry, no intercepted libc call:
 * the timers are set with the system call itself, no memcpy), and it
 * never stops a fiber inside it (the runtime's library is a denied
 * object, preempt.c). The fiber, once stopped, calls prt__preempt_fn()
 * after the handler has returned, as if it had called it itself:
 * instrumented code, at a point ThreadSanitizer sees as a call.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "arch/ctx.h"
#include "preempt_int.h"
#include "runtime_int.h"
#include "sched_priv.h"
#include "worker.h"

/* The library's code, one section (lib/proxyrt_text.ld). */
extern const char prt__text_start[] __attribute__((visibility("hidden")));
extern const char prt__text_end[] __attribute__((visibility("hidden")));

struct prt__ranges prt__ranges;
struct prt__sigact prt__preempt_old[NSIG];

bool prt__range_allowed(uintptr_t pc, unsigned *seq)
{
	struct prt__ranges *t = &prt__ranges;
	/* acquire: pairs with the release store that ends ranges_make() */
	unsigned s = atomic_load_explicit(&t->seq, memory_order_acquire);
	/* acquire, here and for each entry: pairs with the release stores of ranges_make() */
	unsigned lo = 0, hi = atomic_load_explicit(&t->n, memory_order_acquire);
	bool ok = false;

	if (seq)
		*seq = s;
	if (s & 1)
		return false;
	if (hi > PRT_RANGES_MAX)
		hi = PRT_RANGES_MAX;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (pc < atomic_load_explicit(&t->r[mid].lo, memory_order_acquire)) {
			hi = mid;
		} else if (pc >= atomic_load_explicit(&t->r[mid].hi, memory_order_acquire)) {
			lo = mid + 1;
		} else {
			ok = true;
			break;
		}
	}
	/* relaxed: after the acquire loads above, which it cannot pass */
	return ok && atomic_load_explicit(&t->seq, memory_order_relaxed) == s;
}

/* ---- the timers (preempt.c, "the timers") ------------------------------------ */

uint64_t prt__preempt_settime(int timer, int flags, uint64_t value, uint64_t interval)
{
	struct itimerspec its, old = { 0 };

	its.it_value.tv_sec = (time_t)(value / 1000000000u);
	its.it_value.tv_nsec = (long)(value % 1000000000u);
	its.it_interval.tv_sec = (time_t)(interval / 1000000000u);
	its.it_interval.tv_nsec = (long)(interval % 1000000000u);
	if (syscall(SYS_timer_settime, timer, flags, &its, &old) != 0)
		return 0;
	return (uint64_t)old.it_value.tv_sec * 1000000000u + (uint64_t)old.it_value.tv_nsec;
}

/*
 * The delay of a retry deferred again: doubled for each retry deferred
 * in a row. The fiber stays in code that may not be stopped, nearly
 * always the runtime's own on its way to a scheduling point, which
 * honours the interrupt (and resets the count). A retry every 50 us
 * there was a signal storm under lock contention (~17k retries a second
 * in stress_mixed, each a timer, a signal frame and a sigreturn, and a
 * longer hold of whatever spin lock it landed in). The bound stays: the
 * fiber is stopped at most PRT_PREEMPT_RETRY_MAX_NS after it leaves
 * that code.
 */
static uint64_t retry_backoff(struct prt__worker *w, uint64_t ns)
{
	/* relaxed: this thread's own (its picks reset it, preempt.c) */
	unsigned n = atomic_load_explicit(&w->pw.retry_streak, memory_order_relaxed);

	for (unsigned i = 0; i < n && ns < PRT_PREEMPT_RETRY_MAX_NS; i++)
		ns *= 2;
	if (ns >= PRT_PREEMPT_RETRY_MAX_NS)
		return PRT_PREEMPT_RETRY_MAX_NS;
	atomic_store_explicit(&w->pw.retry_streak, n + 1, memory_order_relaxed);
	return ns;
}

void prt__preempt_arm_retry(struct prt__worker *w, uint64_t ns)
{
	/* relaxed: this thread's; its handler clears it when the retry comes */
	if (atomic_exchange_explicit(&w->pw.retry_armed, 1, memory_order_relaxed))
		return;
	prt__preempt_settime(w->pw.retry, 0, ns, 0);
}

void prt__preempt_retry_honoured(struct prt__worker *w)
{
	/*
	 * relaxed, all: this thread's, and its handler's, which may run
	 * between any two of these steps. One that defers after the
	 * exchange arms the timer again (retry_armed was 0), which the
	 * settime may cancel; the look at the pending bits after it arms it
	 * once more. One after the settime finds it armed or arms it.
	 */
	if (!atomic_exchange_explicit(&w->pw.retry_armed, 0, memory_order_relaxed))
		return;
	prt__preempt_settime(w->pw.retry, 0, 0, 0);
	if (atomic_load_explicit(&w->pw.events, memory_order_relaxed) & PRT_PEV_PENDING_ALL)
		prt__preempt_arm_retry(w, PRT_PREEMPT_RETRY_NS);
}

/* ---- the handler ---------------------------------------------------------------- */

/*
 * Was the fiber running on its own stack, and does this handler run
 * elsewhere? Not so in a handler of the application's that the signal
 * interrupted on an alternate stack (its frame is not the fiber's to
 * switch away from), nor when this handler runs on the fiber's stack
 * (the interrupt frame would go where it runs).
 */
static bool on_fiber_stack(const struct prt__fiber *f, const void *uc)
{
	uintptr_t base = (uintptr_t)f->stack.base, sp = prt__uc_sp(uc);
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);

	return sp - base <= f->stack.size && !(here >= base && here - base < f->stack.size);
}

/*
 * Does the interrupted context block what the worker blocks at its
 * scheduling points (signals 1-64: the kernel's mask)? Not: inside an
 * application's signal handler, or signals the fiber blocked (struct
 * prt__wpreempt, base_mask); the next pick reads the mask again.
 */
static bool mask_as_base(struct prt__worker *w, const void *ucv)
{
	const ucontext_t *uc = ucv;
	uint64_t m;

	m = *(const uint64_t *)(const void *)&uc->uc_sigmask; /* no memcpy call in the handler (-O0) */
	if (m == w->pw.base_mask)
		return true;
	/* relaxed: this thread's next pick reads it */
	atomic_store_explicit(&w->pw.mask_stale, true, memory_order_relaxed);
	return false;
}

/*
 * Does this handler run on the worker thread's own alternate stack? Not
 * if a fiber changed it (a review): the alternate stack is the thread's,
 * and so its next fibers'. Disabled, this handler ran on the fiber's own
 * stack and refused every interrupt (on_fiber_stack), so a fiber that
 * never called the runtime was not stopped again; moved into memory the
 * fiber then gave back, every signal wrote its frame there, over the
 * next user of that memory. So the worker's own is put back: by the
 * return from this handler (sigreturn installs the alternate stack
 * @uc names; the kernel refuses it while the frame is on the stack it
 * would replace), and by the worker's next pick in any case. A
 * sigaltstack() here would be undone by that same return.
 */
static void altstack_as_base(struct prt__worker *w, void *ucv)
{
	ucontext_t *uc = ucv;
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);

	if ((w->altstack.ss_flags & SS_DISABLE) ||
	    here - (uintptr_t)w->altstack.ss_sp < w->altstack.ss_size)
		return;
	uc->uc_stack = w->altstack;
	/*
	 * An event: the next pick takes the hook's slow half for it, whatever
	 * the tick (a review: with the CPU-time tick, a flag of its own was
	 * never read). relaxed: this thread's next pick takes it.
	 */
	atomic_fetch_or_explicit(&w->pw.events, PRT_PEV_ALTSTACK, memory_order_relaxed);
}

/*
 * The fiber could not be stopped where it is: at its next scheduling
 * point, prt_preempt_enable(), or when @retry fires @retry_ns from now
 * (0: none).
 */
static void defer(struct prt__worker *w, unsigned src, uint64_t retry_ns)
{
	/* relaxed: the worker's own thread reads it */
	atomic_fetch_or_explicit(&w->pw.events, PRT_PEV_PENDING(src), memory_order_relaxed);
	prt__stat_inc(&w->stats.preempt_deferred, 1);
	if (retry_ns)
		prt__preempt_arm_retry(w, src == PRT_PSRC_RETRY ? retry_backoff(w, retry_ns) : retry_ns);
}

/*
 * How soon to try again. A tick needs no retry when the fiber is in the
 * library's own code: it is in a runtime call, which nearly always
 * reaches a scheduling point soon, and else the next tick comes. Anywhere
 * else (libc in a loop, a sanitizer's runtime), and for wakeups and the
 * timer watch: 50 us.
 */
static uint64_t retry_ns(unsigned src, uintptr_t pc)
{
	if (src == PRT_PSRC_TICK && pc >= (uintptr_t)prt__text_start && pc < (uintptr_t)prt__text_end)
		return 0;
	return PRT_PREEMPT_RETRY_NS;
}

/*
 * A watch interrupt could not stop the fiber: from the second in a row,
 * the next watch fires later (struct prt__wpreempt).
 */
static void watch_slack_grow(struct prt__worker *w)
{
	/* relaxed, all: this thread's (watch_arm reads the slack) */
	unsigned n = atomic_load_explicit(&w->pw.watch_deferred, memory_order_relaxed);
	uint64_t s;

	atomic_store_explicit(&w->pw.watch_deferred, n + 1, memory_order_relaxed);
	if (!n)
		return;
	s = atomic_load_explicit(&w->pw.watch_slack, memory_order_relaxed);

	s = s ? 2 * s : PRT_PREEMPT_WATCH_SLACK_NS;
	if (s > PRT_PREEMPT_WATCH_SLACK_MAX_NS)
		s = PRT_PREEMPT_WATCH_SLACK_MAX_NS;
	atomic_store_explicit(&w->pw.watch_slack, s, memory_order_relaxed);
}

/* A watch interrupt stopped the fiber: the next watch fires sooner, soon on time. */
static void watch_slack_shrink(struct prt__worker *w)
{
	/* relaxed: this thread's (watch_arm reads it) */
	uint64_t s = atomic_load_explicit(&w->pw.watch_slack, memory_order_relaxed) / 2;

	atomic_store_explicit(&w->pw.watch_deferred, 0, memory_order_relaxed);
	atomic_store_explicit(&w->pw.watch_slack, s < PRT_PREEMPT_WATCH_SLACK_NS ? 0 : s,
			      memory_order_relaxed);
}

/*
 * An interrupt deferred where the fiber could not be stopped (the
 * library's own code, libc, ...): a fiber that locks and unlocks in a
 * loop (or calls any runtime function that is no scheduling point)
 * spends nearly all its time there, and waiting for an interrupt to land
 * in its own code kept such a loop on its worker for 17-38 quanta. Mark
 * its slice owed (PRT_HELD_SLICE_OWED), as the time-slice extension
 * does: the unlock that releases its last lock honours what is pending
 * (prt__preempt_slice_owed), besides the next scheduling point,
 * prt_preempt_enable() and the retry. nheld is the
 * fiber's, written with a plain load and store (prt__held_add, _drop):
 * if this lands between the two, the fiber's store drops the mark and
 * the count stays right; the interrupt then waits as before.
 */
static void mark_owed(struct prt__fiber *f)
{
	prt__held_mark_owed(&f->nheld);
}

static void interrupt(struct prt__worker *w, unsigned src, void *uc)
{
	struct prt__fiber *f = PRT_READ_ONCE(w->curr);
	uintptr_t pc = prt__uc_pc(uc), base = (uintptr_t)f->stack.base;
	unsigned seq = 0;

	if (PRT_READ_ONCE(w->rq.serve_prio) < 0)
		return; /* its last pick found nothing: it looks for work already */
	if (f == &w->idle) {
		/* Between a pick and the switch to what it chose: once that runs. */
		defer(w, src, PRT_PREEMPT_RETRY_NS);
		return;
	}
	if (atomic_load_explicit(&f->preempt_count, memory_order_relaxed)) {
		defer(w, src, 0); /* prt_preempt_enable() honours it */
		return;
	}
	altstack_as_base(w, uc);
	if (!mask_as_base(w, uc) || !on_fiber_stack(f, uc) || !prt__range_allowed(pc, &seq) ||
	    !prt__ctx_interrupt(uc, prt__preempt_fn, (char *)w + src,
				base + PRT_PREEMPT_STACK_RESERVE)) {
		mark_owed(f);
		defer(w, src, retry_ns(src, pc));
		if (src == PRT_PSRC_WATCH)
			watch_slack_grow(w);
		return;
	}
	/* Stopped: preempt_eval judges @pc again if the table changed since (any thread may remake it). */
	w->pw.stop_pc = pc;
	w->pw.stop_seq = seq;
	if (src == PRT_PSRC_WATCH)
		watch_slack_shrink(w);
}

void prt__preempt_handler(int sig, siginfo_t *si, void *uc)
{
	/* Not prt__cur_worker(): instrumented code (worker.c). */
	struct prt__worker *w = prt__tls_worker;
	int saved = errno;
	uintptr_t src;

	/* Ours: from one of w's timers or a pthread_sigqueue of its runtime, naming w. */
	if (!w || !w->pw.quantum || (si->si_code != SI_TIMER && si->si_code != SI_QUEUE) ||
	    (src = (uintptr_t)si->si_value.sival_ptr - (uintptr_t)w) > PRT_PSRC_MAX) {
		/*
		 * Not ours: what the process had (SIG_DFL and SIG_IGN drop it:
		 * an RT signal's default would end the process). Under
		 * ThreadSanitizer, what it had is the interceptor's wrapper
		 * of the application's handler, which it expects to be called so.
		 */
		prt__sig_call(&prt__preempt_old[sig], sig, si, uc);
		errno = saved;
		return;
	}
	/*
	 * A tick that finds the worker switched since the previous one: no
	 * slice ran out, and the look (preempt_eval) would only note the
	 * count. Note it here: a tick then costs the signal alone, where
	 * fibers switch by themselves (relaxed: this thread's counters).
	 */
	if (src == PRT_PSRC_TICK) {
		uint64_t sw = atomic_load_explicit(&w->stats.switches, memory_order_relaxed);

		/* relaxed: this thread's (preempt_eval reads it) */
		atomic_store_explicit(&w->pw.tick_seq,
				      atomic_load_explicit(&w->pw.tick_seq, memory_order_relaxed) + 1,
				      memory_order_relaxed);

		/* (An empty run queue and nothing in flight: the look stops the tick.) */
		if (sw != atomic_load_explicit(&w->pw.tick_snap, memory_order_relaxed) &&
		    (PRT_READ_ONCE(w->rq.bitmap) || w->io.inflight)) {
			atomic_store_explicit(&w->pw.tick_snap, sw, memory_order_relaxed);
			errno = saved;
			return;
		}
		/*
		 * Ticking for requests in flight alone, and none has ended
		 * (nothing in the completion queue, no command, the kernel
		 * not asking to be entered; epoll's readiness shows only to
		 * a poll): nothing for the look to do.
		 */
		if (!PRT_READ_ONCE(w->rq.bitmap) && w->io.inflight && !w->io.watch.polled &&
		    !prt__io_waiting(&w->io)) {
			errno = saved;
			return;
		}
	}
	/* relaxed, both: read on this thread (watch_arm(), prt__preempt_arm_retry()) */
	if (src == PRT_PSRC_WATCH)
		atomic_fetch_or_explicit(&w->pw.events, PRT_PEV_WATCH_FIRED, memory_order_relaxed);
	if (src == PRT_PSRC_RETRY) {
		atomic_store_explicit(&w->pw.retry_armed, 0, memory_order_relaxed);
		/* What it retries was honoured meanwhile (a scheduling point): nothing to do. */
		if (!(atomic_load_explicit(&w->pw.events, memory_order_relaxed) & PRT_PEV_PENDING_ALL)) {
			errno = saved;
			return;
		}
	}
	interrupt(w, (unsigned)src, uc);
	errno = saved;
}
