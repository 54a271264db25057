/* SPDX-License-Identifier: MIT */
/*
 * fork() (fork.h). POSIX gives the child only the thread that called
 * fork: a lock another thread held at that instant stays held in the
 * child for ever (a review: a child's prt_run hung on the preemption
 * lock, 7 of 120 forks while another thread created runtimes), and the
 * parent's runtimes, with no workers there, must not stay registered:
 * the child's dump signal printed the parent's runtimes, and the child's
 * copy of each dump pipe's write end kept the parent's destroy waiting
 * for that pipe's end while the child lived. So every process-wide lock
 * is taken before the fork (the hooks take one each; none is ever held
 * while another is taken, so any order is free of deadlock), and the
 * child starts with no runtime: the signal dispositions the runtimes
 * installed are put back, the dump pipes closed, the live list emptied
 * (a call on a parent's runtime in the child is then -EINVAL, not a wait
 * for workers that do not exist). The child may create runtimes of its
 * own (README, "fork()").
 */
#include <pthread.h>

#include "fork.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void each(enum prt__fork_phase ph)
{
	prt__rt_ref_fork(ph);
	prt__preempt_fork(ph);
	prt__dump_signal_fork(ph);
	prt__signal_fork(ph);
	prt__objname_fork(ph);
	prt__fiber_desc_fork(ph);
}

static void prepare(void)
{
	each(PRT_FORK_PREPARE);
}

static void parent(void)
{
	each(PRT_FORK_PARENT);
}

static void child(void)
{
	each(PRT_FORK_CHILD);
}

static void reg(void)
{
	/* ENOMEM leaves fork() as it was without the handlers. */
	(void)pthread_atfork(prepare, parent, child);
}

void prt__fork_handlers_once(void)
{
	pthread_once(&once, reg);
}
