/* SPDX-License-Identifier: MIT */
#ifndef PRT_WORKER_H
#define PRT_WORKER_H

/* worker.c: which worker the calling thread is; where a woken fiber goes. */

struct prt__fiber;
struct prt__worker;

/*
 * The calling thread's worker. Read it through prt__cur_worker(); only
 * the preemption handler reads it itself (preempt_sig.c: it calls no
 * instrumented code, and no fiber switches under it).
 */
extern __thread struct prt__worker *prt__tls_worker __attribute__((tls_model("initial-exec")));

/* The worker running the caller, or NULL on a plain thread. */
struct prt__worker *prt__cur_worker(void);
/* The calling thread becomes worker @w (NULL: none any more). */
void prt__set_cur_worker(struct prt__worker *w);

/*
 * The worker prt__wake() would queue @f on (the waker's worker
 * if @f may run there, else where it ran, else the nearest allowed);
 * _from: with @cur the caller's worker, if it is one of f->rt's.
 */
struct prt__worker *prt__select_worker(struct prt__fiber *f);
struct prt__worker *prt__select_worker_from(struct prt__fiber *f, struct prt__worker *cur);

#endif
