/* SPDX-License-Identifier: MIT */
/*
 * Signals: the stack-overflow report and the opt-in dump signal.
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
 *
 * Dump signal. The handler only writes a byte to each registered
 * runtime's pipe; a thread of that runtime does the dump (it takes locks
 * and formats, which a handler must not). A slot being written by the
 * handler is marked busy, so unregistering waits for it and a closed
 * pipe's fd number can never be written after reuse.
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
#include "signal_int.h"

/* Alternate signal stack of each worker thread. */
#define PRT_SIGSTACK_SIZE (64u * 1024u)
/* Runtimes with a dump signal at once. */
#define PRT_DUMP_SLOTS 64

enum { SLOT_FREE = 0, SLOT_LIVE, SLOT_BUSY };

static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned overflow_users;                 /* sig_lock */
static uintptr_t guard_size;                    /* a page; set before the handler */
static struct sigaction old_segv, old_bus;      /* sig_lock; read by the handler */
static struct {
	atomic_int state;
	atomic_int sig;
	int wfd;
} slots[PRT_DUMP_SLOTS];
static unsigned dump_users[NSIG];               /* sig_lock */
static struct sigaction old_dump[NSIG];         /* sig_lock */

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

static uintptr_t fault_sp(void *ucv)
{
	ucontext_t *uc = ucv;

#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.sp;
#else
	(void)uc;
	return 0;
#endif
}

/* Is the fault at @addr with stack pointer @sp an overflow of @f's stack? */
static bool is_overflow(const struct prt__fiber *f, uintptr_t addr, uintptr_t sp)
{
	uintptr_t base = (uintptr_t)f->stack.base;
	if (!base || (f->stack.flags & PRT_STK_CANARY))
		return false;
	if (addr < base && addr >= base - guard_size)
		return true;
	/* A frame larger than the guard page jumped over it: sp tells. */
	return sp && sp < base && addr < base;
}

static void chain(int sig, siginfo_t *si, void *uc, const struct sigaction *old)
{
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, si, uc);
	} else if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
		/* Back to the default; returning re-runs the access, which now kills. */
		signal(sig, SIG_DFL);
	} else {
		old->sa_handler(sig);
	}
}

static void fault_handler(int sig, siginfo_t *si, void *uc)
{
	struct prt__worker *w = prt__cur_worker();
	int saved = errno;

	if (w && w->curr && w->curr != &w->idle &&
	    is_overflow(w->curr, (uintptr_t)si->si_addr, fault_sp(uc)))
		prt__report_overflow(w->curr, "guard page hit", si->si_addr);
	errno = saved;
	chain(sig, si, uc, sig == SIGBUS ? &old_bus : &old_segv);
}

int prt__overflow_handler_get(void)
{
	struct sigaction sa;
	int err = 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = fault_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	pthread_mutex_lock(&sig_lock);
	guard_size = (uintptr_t)sysconf(_SC_PAGESIZE); /* sysconf is no signal-safe call */
	if (overflow_users++ == 0) {
		if (sigaction(SIGSEGV, &sa, &old_segv) || sigaction(SIGBUS, &sa, &old_bus)) {
			err = -errno;
			sigaction(SIGSEGV, &old_segv, NULL);
			overflow_users = 0;
		}
	}
	pthread_mutex_unlock(&sig_lock);
	return err;
}

/* Put back what was there, unless someone replaced our handler since. */
static void restore_if_ours(int sig, void (*ours)(int, siginfo_t *, void *),
			    const struct sigaction *old)
{
	struct sigaction cur;

	if (sigaction(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
	    cur.sa_sigaction == ours)
		sigaction(sig, old, NULL);
}

void prt__overflow_handler_put(void)
{
	pthread_mutex_lock(&sig_lock);
	if (overflow_users && --overflow_users == 0) {
		restore_if_ours(SIGSEGV, fault_handler, &old_segv);
		restore_if_ours(SIGBUS, fault_handler, &old_bus);
	}
	pthread_mutex_unlock(&sig_lock);
}

/* ---- per-worker alternate stack ------------------------------------------------------- */

void prt__sigstack_init(struct prt__worker *w)
{
	stack_t cur, ss;
	void *p;

	w->sigstack = NULL;
	/* A thread that has one (ASan gives its threads one) keeps it. */
	if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
		return;
	p = mmap(NULL, PRT_SIGSTACK_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (p == MAP_FAILED)
		return; /* overflows are then reported as plain SIGSEGV */
	ss.ss_sp = p;
	ss.ss_size = PRT_SIGSTACK_SIZE;
	ss.ss_flags = 0;
	if (sigaltstack(&ss, NULL)) {
		munmap(p, PRT_SIGSTACK_SIZE);
		return;
	}
	w->sigstack = p;
}

void prt__sigstack_fini(struct prt__worker *w)
{
	stack_t ss = { .ss_flags = SS_DISABLE };

	if (!w->sigstack)
		return;
	sigaltstack(&ss, NULL);
	munmap(w->sigstack, PRT_SIGSTACK_SIZE);
	w->sigstack = NULL;
}

/* ---- dump signal ------------------------------------------------------------------ */

static void dump_handler(int sig)
{
	int saved = errno;

	for (int i = 0; i < PRT_DUMP_SLOTS; i++) {
		int live = SLOT_LIVE;

		/*
		 * sig relaxed: a filter only. A stale value skips a slot being
		 * registered (as if the signal came first) or lets a slot
		 * reused meanwhile get a spurious byte (possible under any
		 * order: the slot can change between the two reads).
		 * acquire: pairs with the release of LIVE in
		 * prt__dump_signal_init(), so wfd is the one it registered.
		 */
		if (atomic_load_explicit(&slots[i].sig, memory_order_relaxed) != sig ||
		    !atomic_compare_exchange_strong_explicit(&slots[i].state, &live, SLOT_BUSY,
							     memory_order_acquire,
							     memory_order_relaxed))
			continue;
		if (write(slots[i].wfd, "d", 1) < 0) {
			/* pipe full: a dump is already pending */
		}
		/*
		 * release: pairs with the acquire CAS in prt__dump_signal_fini(),
		 * which closes the pipe only after our write.
		 */
		atomic_store_explicit(&slots[i].state, SLOT_LIVE, memory_order_release);
	}
	errno = saved;
}

static void *dump_thread(void *arg)
{
	struct prt_runtime *rt = arg;
	char c;
	ssize_t n;

	/* Until the write end is closed (prt__dump_signal_fini). */
	while ((n = read(rt->dump_pipe[0], &c, 1)) != 0) {
		if (n < 0 && errno != EINTR)
			break;
		if (n == 1)
			prt_runtime_dump(rt, STDERR_FILENO);
	}
	return NULL;
}

int prt__dump_signal_init(struct prt_runtime *rt, int sig)
{
	struct sigaction sa;
	sigset_t all, old;
	int slot = -1, err;

	if (!sig)
		return 0;
	if (pipe2(rt->dump_pipe, O_CLOEXEC))
		return -errno;
	fcntl(rt->dump_pipe[1], F_SETFL, O_NONBLOCK);
	/* The thread must not take the signal itself: block everything in it. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&rt->dump_tid, NULL, dump_thread, rt);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto fail_pipe;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = dump_handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	pthread_mutex_lock(&sig_lock);
	/*
	 * relaxed: a slot goes FREE <-> LIVE only under sig_lock, held here,
	 * and the handler never touches a FREE slot.
	 */
	for (int i = 0; i < PRT_DUMP_SLOTS && slot < 0; i++)
		if (atomic_load_explicit(&slots[i].state, memory_order_relaxed) == SLOT_FREE)
			slot = i;
	if (slot < 0) {
		err = -EAGAIN;
	} else if (dump_users[sig] == 0 && sigaction(sig, &sa, &old_dump[sig])) {
		err = -errno;
	} else {
		dump_users[sig]++;
		slots[slot].wfd = rt->dump_pipe[1];
		/* relaxed: published with wfd by the release below */
		atomic_store_explicit(&slots[slot].sig, sig, memory_order_relaxed);
		/* release: pairs with the handler's acquire CAS (LIVE -> BUSY), which then reads wfd */
		atomic_store_explicit(&slots[slot].state, SLOT_LIVE, memory_order_release);
		rt->dump_slot = slot;
		rt->dump_sig = sig;
	}
	pthread_mutex_unlock(&sig_lock);
	if (!err)
		return 0;
	close(rt->dump_pipe[1]); /* EOF: the thread ends */
	pthread_join(rt->dump_tid, NULL);
	close(rt->dump_pipe[0]);
	return err;
fail_pipe:
	close(rt->dump_pipe[0]);
	close(rt->dump_pipe[1]);
	return err;
}

void prt__dump_signal_fini(struct prt_runtime *rt)
{
	int slot = rt->dump_slot, live = SLOT_LIVE;

	if (slot < 0)
		return;
	pthread_mutex_lock(&sig_lock);
	/* Wait out a handler writing to our pipe right now. */
	/*
	 * acquire: pairs with the handler's release of LIVE after its write,
	 * so we close the pipe below only after that write.
	 */
	while (!atomic_compare_exchange_weak_explicit(&slots[slot].state, &live, SLOT_FREE,
						      memory_order_acquire, memory_order_relaxed))
		live = SLOT_LIVE;
	/* relaxed: the slot is FREE, which the handler never takes; sig_lock orders the reuse */
	atomic_store_explicit(&slots[slot].sig, 0, memory_order_relaxed);
	if (--dump_users[rt->dump_sig] == 0) {
		struct sigaction cur;

		if (sigaction(rt->dump_sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
		    cur.sa_handler == dump_handler)
			sigaction(rt->dump_sig, &old_dump[rt->dump_sig], NULL);
	}
	pthread_mutex_unlock(&sig_lock);
	/* No handler writes to the pipe any more: EOF ends the thread. */
	close(rt->dump_pipe[1]);
	pthread_join(rt->dump_tid, NULL);
	close(rt->dump_pipe[0]);
	rt->dump_slot = -1;
}
