/* SPDX-License-Identifier: MIT */
/*
 * Signals: the stack-overflow report (the opt-in dump signal is
 * dump_signal.c's).
 *
 * Design note (process-wide state). Signal dispositions belong to the
 * process, not to a runtime, so this file keeps the one piece of global
 * state in the library: the installed handlers, the dispositions they
 * replaced, and a small table of runtimes that asked for a dump signal.
 * Any number of runtimes share them: the overflow handler is installed
 * by the first runtime created and put back by the last one destroyed
 * (if nobody replaced it meanwhile); a dump signal by the first runtime
 * that names it, the same way.
 *
 * Stack overflow. A guard-page stack that overflows faults on its guard
 * page. Each worker thread runs with an alternate signal stack, so the
 * SIGSEGV handler still has a stack to run on; it checks that the fault
 * is the current fiber's guard page (or that the stack pointer left the
 * stack), writes one line naming the fiber (id, name, stack size) with
 * async-signal-safe calls only, and aborts. Any other fault goes to the
 * handler that was there before (ASan's, or the default action).
 * Canary stacks have no guard page: their check is made at every switch
 * (sched.c) and reports through the same message.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "runtime_int.h"
#include "fork.h"
#include "sigact.h"
#include "signal_int.h"
#include "worker.h"

/* Alternate signal stack of each worker thread. */
#define PRT_SIGSTACK_SIZE (64u * 1024u)
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned overflow_users;                 /* sig_lock */
static uintptr_t guard_size;                    /* a page; set before the handler */
static struct prt__sigact old_segv, old_bus;   /* sig_lock; read by the handler */

/* ---- async-signal-safe message ---------------------------------------------------- */

struct msg {
	char buf[256];
	size_t n;
};

static void msg_str(struct msg *m, const char *s)
{
	while (*s && m->n < sizeof(m->buf) - 1)
		m->buf[m->n++] = *s++;
}

static void msg_num(struct msg *m, unsigned long long v, unsigned base)
{
	char tmp[24];
	int i = 0;

	do {
		tmp[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (base == 16)
		msg_str(m, "0x");
	while (i > 0 && m->n < sizeof(m->buf) - 1)
		m->buf[m->n++] = tmp[--i];
}

void prt__report_overflow(const struct prt__fiber *f, const char *how, const void *addr)
{
	struct msg m = { .n = 0 };
	char name[PRT_NAME_MAX];

	memcpy(name, f->name, sizeof(name));
	name[PRT_NAME_MAX - 1] = '\0';
	msg_str(&m, "proxyrt: fiber ");
	msg_num(&m, atomic_load_explicit(&f->id, memory_order_relaxed), 10);
	msg_str(&m, " \"");
	msg_str(&m, name);
	msg_str(&m, "\" overflowed its ");
	msg_num(&m, f->stack.size, 10);
	msg_str(&m, "-byte stack (");
	msg_str(&m, how);
	if (addr) {
		msg_str(&m, ", fault at ");
		msg_num(&m, (uintptr_t)addr, 16);
	}
	msg_str(&m, "): aborting\n");
	while (write(STDERR_FILENO, m.buf, m.n) < 0 && errno == EINTR)
		;
	signal(SIGABRT, SIG_DFL);
	abort();
}

/* ---- the fault handler --------------------------------------------------------------- */

/*
 * Is the fault at @addr with stack pointer @sp an overflow of @f's stack?
 * A guard stack's: in its guard page. Either kind's: the stack pointer
 * below the stack's bottom (a frame larger than the guard page jumped
 * over it; a canary stack of its own mapping ran off into unmapped
 * memory: a slab's ran into the stack below, which its canary reports at
 * a switch unless it faults first).
 */
static bool is_overflow(const struct prt__fiber *f, uintptr_t addr, uintptr_t sp)
{
	uintptr_t base = (uintptr_t)f->stack.base;

	if (!base)
		return false;
	if (!(f->stack.flags & PRT_STK_CANARY) && addr < base && addr >= base - guard_size)
		return true;
	return sp && sp < base && addr < base;
}

/*
 * What was there before. SIG_DFL or SIG_IGN: back to the default, and
 * returning re-runs the access, which now kills.
 */
static void chain(int sig, siginfo_t *si, void *uc, struct prt__sigact *old)
{
	if (!prt__sig_call(old, sig, si, uc))
		signal(sig, SIG_DFL);
}

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	struct prt__worker *w = prt__cur_worker();
	int saved = errno;

	if (w && w->curr && w->curr != &w->idle &&
	    is_overflow(w->curr, (uintptr_t)si->si_addr, prt__uc_sp(uc)))
		prt__report_overflow(w->curr,
				     (w->curr->stack.flags & PRT_STK_CANARY) ?
					     "canary stack, a fault below its bottom" :
					     "guard page hit",
				     si->si_addr);
	errno = saved;
	chain(sig, si, uc, sig == SIGBUS ? &old_bus : &old_segv);
}

int prt__overflow_handler_get(void)
{
	const unsigned long flags = SA_SIGINFO | SA_ONSTACK;
	int err = 0;

	pthread_mutex_lock(&sig_lock);
	guard_size = (uintptr_t)sysconf(_SC_PAGESIZE); /* sysconf is no signal-safe call */
	if (overflow_users++ == 0) {
		/* Through libc's sigaction() (and a sanitizer's): faults are synchronous. */
		err = prt__sig_take(SIGSEGV, (void *)fault_handler, flags, false, &old_segv);
		if (!err && (err = prt__sig_take(SIGBUS, (void *)fault_handler, flags, false, &old_bus)))
			prt__sig_put(SIGSEGV, (const void *)fault_handler, false, &old_segv);
		if (err)
			overflow_users = 0;
	}
	pthread_mutex_unlock(&sig_lock);
	return err;
}

void prt__overflow_handler_put(void)
{
	pthread_mutex_lock(&sig_lock);
	if (overflow_users && --overflow_users == 0) {
		/* Put back what was there, unless someone replaced our handler since. */
		prt__sig_put(SIGSEGV, (const void *)fault_handler, false, &old_segv);
		prt__sig_put(SIGBUS, (const void *)fault_handler, false, &old_bus);
	}
	pthread_mutex_unlock(&sig_lock);
}

/* ---- per-worker alternate stack ------------------------------------------------------- */

void prt__sigstack_init(struct prt__worker *w)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	stack_t cur, ss;
	char *p;

	w->sigstack = NULL;
	w->altstack.ss_flags = SS_DISABLE;
	/* A thread that has one (ASan gives its threads one) keeps it. */
	if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) {
		w->altstack = cur;
		return;
	}
	/*
	 * With a guard page below: a handler that runs on it (the
	 * application's, chained from the preemption handler, which takes
	 * SA_ONSTACK) and overflows it faults there, rather than writing
	 * over whatever is mapped below.
	 */
	p = mmap(NULL, PRT_SIGSTACK_SIZE + page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (p == MAP_FAILED)
		return; /* overflows are then reported as plain SIGSEGV */
	if (mprotect(p, page, PROT_NONE)) {
		munmap(p, PRT_SIGSTACK_SIZE + page);
		return;
	}
	ss.ss_sp = p + page;
	ss.ss_size = PRT_SIGSTACK_SIZE;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL)) {
		munmap(p, PRT_SIGSTACK_SIZE + page);
		return;
	}
	w->sigstack = p;
	w->altstack = ss;
}

void prt__sigstack_fini(struct prt__worker *w)
{
	stack_t ss = { .ss_flags = SS_DISABLE }, cur;

	/*
	 * A fiber left another alternate stack (a review: ASan's thread exit
	 * then unmapped that memory, a program's buffer, as the thread's
	 * own): the thread's own back first.
	 */
	if (!(w->altstack.ss_flags & SS_DISABLE) && sigaltstack(NULL, &cur) == 0 &&
	    ((cur.ss_flags & SS_DISABLE) || cur.ss_sp != w->altstack.ss_sp ||
	     cur.ss_size != w->altstack.ss_size))
		sigaltstack(&w->altstack, NULL);
	if (!w->sigstack)
		return;
	sigaltstack(&ss, NULL);
	munmap(w->sigstack, PRT_SIGSTACK_SIZE + (size_t)sysconf(_SC_PAGESIZE));
	w->sigstack = NULL;
}

/* fork.h: the overflow handler stays in a child (its stacks are the parent's copies). */
struct prt__fork_hook prt__signal_fork_hook = { .lock = &sig_lock };
