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
 * of the library is taken before the fork (none is ever held while
 * another is taken, so any order is free of deadlock), and the child
 * starts with no runtime: the signal dispositions the runtimes installed
 * are put back, the dump pipes closed, the live list emptied (a call on
 * a parent's runtime in the child is then -EINVAL, not a wait for
 * workers that do not exist). The child may create runtimes of its own
 * (README, "fork()"). Modules add their hooks; this file names none of
 * them.
 */
#include "fork.h"

static pthread_mutex_t hooks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct prt__fork_hook *hooks; /* hooks_lock */

/* Each hook's lock, then its @prepare (the application's own handlers registered before ours run after this). */
static void prepare(void)
{
	pthread_mutex_lock(&hooks_lock);
	for (struct prt__fork_hook *h = hooks; h; h = h->next) {
		if (h->lock)
			pthread_mutex_lock(h->lock);
		if (h->prepare)
			h->prepare();
	}
}

/* In the parent, inside fork (under libc's fork lock): each hook's @parent, then its lock dropped. */
static void parent(void)
{
	for (struct prt__fork_hook *h = hooks; h; h = h->next) {
		if (h->parent)
			h->parent();
		if (h->lock)
			pthread_mutex_unlock(h->lock);
	}
	pthread_mutex_unlock(&hooks_lock);
}

/*
 * The child's one thread is the one that took the locks (prepare): it
 * drops them, as POSIX's rationale for pthread_atfork has it. (Made new
 * with pthread_mutex_init instead, ThreadSanitizer took them for locks
 * still held, then destroyed: "double lock" in every forked child.)
 */
static void child(void)
{
	for (struct prt__fork_hook *h = hooks; h; h = h->next) {
		if (h->lock)
			pthread_mutex_unlock(h->lock);
		if (h->child)
			h->child();
	}
	pthread_mutex_unlock(&hooks_lock);
}

/*
 * Registered when the library is loaded, before the program's own
 * handlers (a shared library's constructors run before those of what
 * links it; in a static link the program's objects come first, so the
 * priority: 101, the first a program may use, runs before every
 * constructor without one, a review's static program hung 3/3 with
 * none): POSIX runs child handlers in the order registered and prepare
 * handlers in the reverse one, so the program's child handlers run with
 * our locks dropped and its prepare handlers before we take them, and
 * either may call the library. Registered at the first runtime instead,
 * a child handler the program had registered before it ran with our
 * locks still held, and a prt_run there hung the child for good (a
 * review, 5/5). A program that loads the library later (dlopen) and
 * registered handlers before that has them run on the wrong side of
 * ours: README, "fork()".
 */
__attribute__((constructor(101))) static void fork_handlers_early(void)
{
	/* ENOMEM leaves fork() as it was without the handlers. */
	(void)pthread_atfork(prepare, parent, child);
}

void prt__fork_hook_add(struct prt__fork_hook *h)
{
	pthread_mutex_lock(&hooks_lock);
	if (!h->added) {
		h->added = true;
		h->next = hooks;
		hooks = h;
	}
	pthread_mutex_unlock(&hooks_lock);
}
