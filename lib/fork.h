/* SPDX-License-Identifier: MIT */
#ifndef PRT_FORK_H
#define PRT_FORK_H

#include <pthread.h>
#include <stdbool.h>

/*
 * fork() and the library's process-wide state (fork.c). A module that
 * keeps such state under a pthread mutex adds a hook: the lock is taken
 * around fork (so no other thread holds it mid-update when the process
 * is copied), dropped in the child, where @child then drops what
 * belongs to the parent's runtimes, which have no workers there.
 */
struct prt__fork_hook {
	pthread_mutex_t *lock; /* NULL: none (state of the forking thread alone) */
	void (*prepare)(void); /* before the fork, the lock taken (NULL: nothing more) */
	void (*parent)(void);  /* in the parent, before the lock is dropped (NULL: nothing) */
	void (*child)(void); /* in the child, the lock dropped (NULL: nothing more) */
	struct prt__fork_hook *next; /* fork.c's */
	bool added;                  /* fork.c's */
};

/* Add @h (once; again is a no-op). Any thread; before the module's lock is first taken. */
void prt__fork_hook_add(struct prt__fork_hook *h);

/*
 * The hooks of the modules a runtime uses (rt_ref.c, preempt.c,
 * dump_signal.c, signal.c, fiber_desc.c, sigact.c, worker.c, io.c).
 */
extern struct prt__fork_hook prt__rt_ref_fork_hook, prt__preempt_fork_hook,
	prt__dump_signal_fork_hook, prt__signal_fork_hook, prt__fiber_desc_fork_hook,
	prt__sig_role_fork_hook, prt__worker_fork_hook, prt__io_fork_hook;

#endif
