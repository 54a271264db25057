/* SPDX-License-Identifier: MIT */
#ifndef PRT_PREEMPT_INT_H
#define PRT_PREEMPT_INT_H

/*
 * Between preempt.c (the decisions, the set-up) and preempt_sig.c (the
 * signal handler and what it calls, compiled without ThreadSanitizer).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sigact.h"

struct prt__worker;

#define PRT_RANGES_MAX 256

/*
 * Executable code a fiber may be stopped in, sorted by @lo: a seqlock
 * (odd @seq while rewritten under preempt.c's preempt_lock), read by the
 * handler, which treats a torn or changing table as "no".
 */
struct prt__ranges {
	atomic_uint seq;
	atomic_uint n;
	struct {
		_Atomic uintptr_t lo, hi;
	} r[PRT_RANGES_MAX];
};
extern struct prt__ranges prt__ranges;
/*
 * May a fiber be stopped at @pc, by the table as it is now? The table's
 * seq it judged by in *@seq (unless NULL). Async-signal-safe (preempt_sig.c).
 */
bool prt__range_allowed(uintptr_t pc, unsigned *seq);

/* What each preemption signal had before (preempt_lock); the handler calls it for signals not its own. */
extern struct prt__sigact prt__preempt_old[NSIG];

/* The handler (installed with the system call itself: sigact.h, @raw). */
void prt__preempt_handler(int sig, siginfo_t *si, void *uc);
/* What an interrupted fiber calls (preempt.c): @arg is (char *)w + why. */
void prt__preempt_fn(void *arg);

/*
 * Set kernel timer @timer (timer_settime(2): @flags, first expiry
 * @value ns, then every @interval ns; 0 and 0 disarm). Returns the ns
 * that were left until the timer's next expiry (0: it was disarmed). The
 * system call itself: sanitizers intercept libc's, and the handler
 * calls this.
 */
uint64_t prt__preempt_settime(int timer, int flags, uint64_t value, uint64_t interval);
/*
 * Arm w's @retry @ns from now, unless it is armed already: the worker
 * thread only (its handler, or a fiber on it). Async-signal-safe.
 */
void prt__preempt_arm_retry(struct prt__worker *w, uint64_t ns);
/*
 * A look (a pick, preempt_eval) has just honoured the pending
 * interrupts: disarm the retry, whose signal would find nothing to do
 * (tens of us in a VM, a fraction of one for the settime). On w's thread.
 */
void prt__preempt_retry_honoured(struct prt__worker *w);

#endif
