/* SPDX-License-Identifier: MIT */
#ifndef PRT_FORK_H
#define PRT_FORK_H

/*
 * fork() and the library's process-wide state (fork.c). Each module that
 * keeps such state under a pthread mutex has a hook called at each phase
 * of pthread_atfork: PREPARE takes its lock (so no other thread holds it
 * mid-update when the process is copied), PARENT drops it, CHILD makes
 * the lock new and drops what belongs to the parent's runtimes, which
 * have no workers in the child.
 */
enum prt__fork_phase { PRT_FORK_PREPARE, PRT_FORK_PARENT, PRT_FORK_CHILD };

/* Register the handlers, once per process (runtime creation, a name given to an object). */
void prt__fork_handlers_once(void);

void prt__rt_ref_fork(enum prt__fork_phase ph);      /* rt_ref.c: the live list */
void prt__preempt_fork(enum prt__fork_phase ph);     /* preempt.c: the preemption signals */
void prt__dump_signal_fork(enum prt__fork_phase ph); /* dump_signal.c: the dump signals */
void prt__signal_fork(enum prt__fork_phase ph);      /* signal.c: the overflow handler */
void prt__objname_fork(enum prt__fork_phase ph);     /* objname.c: the names table */
void prt__fiber_desc_fork(enum prt__fork_phase ph);  /* fiber_desc.c: the chunk depot */

#endif
