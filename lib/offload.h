/* SPDX-License-Identifier: MIT */
#ifndef PRT_OFFLOAD_H
#define PRT_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wait_types.h"

struct prt_runtime;
struct prt__worker;

/*
 * A call run on the offload pool for a fiber (prt_offload, and the file
 * calls where the ring lacks their opcode: fileop.c). On the caller's
 * stack when it waits for the end; a job whose caller may give up
 * waiting (a deadline) is @detached: on the heap (prt__alloc, @size
 * bytes), held by the caller and by the pool (@refs), and when its
 * caller left before it ran to the end, its helper calls @orphan to
 * dispose of the result (an fd to close) and drops the last reference.
 */
struct prt__offjob {
	struct prt__offjob *next;  /* the pool's FIFO; the pool's lock */
	bool queued;               /* on the FIFO, no helper took it yet; the pool's lock */
	void *(*fn)(void *);
	void *arg, *ret;
	struct prt__wait done;     /* the caller's: woken once @ret is set */
	bool detached;
	/*
	 * Detached, and not run if its caller gives up before a helper took
	 * it (a file call: nothing made, nothing to undo). prt_offload's are
	 * not: their caller was told @fn runs to its end (proxyrt/fiber.h).
	 */
	bool droppable;
	atomic_int refs;
	size_t size;
	void (*orphan)(struct prt__offjob *j);
};

/*
 * Run @j->fn(@j->arg) on @w's runtime's pool and wait for it, until
 * CLOCK_MONOTONIC @deadline (0: none; only for a detached job). Returns
 * 0 (j->ret is the result), -ENOMEM (no pool; or no timer for
 * @deadline: given up as on -ETIMEDOUT), -EAGAIN (no helper thread could
 * be started), or -ETIMEDOUT, -ECANCELED: the caller gave up; a
 * @droppable job no helper had taken yet is not run, any other runs to
 * its end. Either way the caller then puts its reference of a detached
 * job (prt__offjob_put) and touches it no more.
 * Context: a fiber of @w; parks it.
 */
int prt__offload_run(struct prt__worker *w, struct prt__offjob *j, uint64_t deadline);
/* Drop a reference to detached job @j; the last frees it. Any thread. */
void prt__offjob_put(struct prt__offjob *j);

/*
 * offload.c. Runtime destroy: stop @rt's offload helper threads (each
 * finishes the job it runs; no job is queued then: every fiber ended),
 * join them and free the pool. Nothing if no offload ran.
 */
void prt__offload_fini(struct prt_runtime *rt);

#endif
