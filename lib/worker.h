/* SPDX-License-Identifier: MIT */
#ifndef PRT_WORKER_H
#define PRT_WORKER_H

/* worker.c: which worker the calling thread is; where a woken fiber goes. */

#include <stdbool.h>

struct prt__fiber;
struct prt__worker;

/*
 * The calling thread's worker. Read it through prt__cur_worker(); only
 * the preemption handler reads it itself (preempt_sig.c: it calls no
 * instrumented code, and no fiber switches under it).
 */
extern __thread struct prt__worker *prt__tls_worker __attribute__((tls_model("initial-exec")));

/*
 * The worker running the caller, or NULL on a plain thread. Read afresh
 * at each call: a fiber may resume on another thread, so a TLS address
 * computed before a switch must not be used after it. On x86-64 (no
 * sanitizer) the read is one volatile asm, which the compiler neither
 * merges with another nor moves across the memory clobber of a switch;
 * elsewhere a call to a function it cannot see into.
 */
#if defined(__x86_64__) && !PRT_USE_TSAN && !PRT_USE_ASAN
static inline struct prt__worker *prt__cur_worker(void)
{
	struct prt__worker *w;

	__asm__ __volatile__("movq prt__tls_worker@gottpoff(%%rip), %0\n\t"
			     "movq %%fs:(%0), %0"
			     : "=r"(w)
			     :
			     : "memory");
	return w;
}
#else
struct prt__worker *prt__cur_worker(void);
#endif
/*
 * Debug builds: @w is the calling fiber's worker now (a worker read
 * before a switch may be another's after it: the fiber can have moved).
 * For code that caches it across calls that may switch (the wait spins).
 */
static inline void prt__assert_own_worker(struct prt__worker *w)
{
#if PRT_DEBUG
	prt__assert(w == prt__cur_worker());
#else
	(void)w;
#endif
}

/* The calling thread becomes worker @w (NULL: none any more). */
void prt__set_cur_worker(struct prt__worker *w);
/*
 * In a child forked from a fiber, that fiber's thread (now a plain
 * thread: prt__cur_worker() is NULL there): true. Its function's end,
 * or prt_exit, ends the process (fiber.c).
 */
bool prt__forked_fiber(void);

/*
 * The worker prt__wake() would queue @f on (the waker's worker
 * if @f may run there, else where it ran, else the nearest allowed);
 * _from: with @cur the caller's worker, if it is one of f->rt's.
 */
struct prt__worker *prt__select_worker(struct prt__fiber *f);
struct prt__worker *prt__select_worker_from(struct prt__fiber *f, struct prt__worker *cur);

#endif
