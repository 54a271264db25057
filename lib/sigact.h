/* SPDX-License-Identifier: MIT */
#ifndef PRT_SIGACT_H
#define PRT_SIGACT_H

/*
 * sigact.c: the library's signal handlers over what the process had
 * (the overflow handler, the dump signal, the preemption signal): take
 * a signal, call what was there before, and put it back if the handler
 * is still ours. Each caller keeps its own count of users and its lock.
 *
 * A disposition is kept in the kernel's form (rt_sigaction(2)), which
 * says everything libc's says. @raw: install and read it with the
 * rt_sigaction system call itself, not libc's sigaction(), so that
 * nothing interposed on sigaction() wraps the handler: ThreadSanitizer's
 * interceptor runs an asynchronous signal's handler later, from its own
 * code, with a copy of the context (lib/preempt_sig.c). Then the old
 * disposition is the kernel's: a handler installed through such an
 * interceptor is the interceptor's wrapper, which is what must be
 * called. Else libc's sigaction() (and any interposer) is used.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* The kernel's struct sigaction (x86-64 and aarch64 lay it out alike). */
struct prt__sigact {
	void *handler;          /* sa_handler or sa_sigaction, as @flags say */
	unsigned long flags;    /* SA_* */
	void (*restorer)(void); /* SA_RESTORER: where the handler returns to */
	uint64_t mask;          /* signals 1..64 blocked while it runs */
};

/*
 * Install @h (an sa_sigaction if @flags has SA_SIGINFO, else an
 * sa_handler) for @sig with an empty mask, the old disposition in *@old.
 * 0 or -errno.
 */
int prt__sig_take(int sig, void *h, unsigned long flags, bool raw, struct prt__sigact *old);
/* Put back *@old, unless the handler of @sig is no longer @ours. */
void prt__sig_put(int sig, const void *ours, bool raw, const struct prt__sigact *old);
/*
 * For each signal with users (@users[sig] > 0, indexed by signal, NSIG
 * entries): no users, and @old[sig] put back as prt__sig_put does (a
 * forked child, whose parent's runtimes are gone).
 */
void prt__sig_put_all(unsigned *users, const void *ours, bool raw, const struct prt__sigact *old);

/*
 * The roles a runtime gives a signal. One signal has one role in the
 * process at a time, whichever runtimes ask: a dump handler installed
 * over the preemption handler of another runtime would take its time
 * slices for dump requests (and the reverse), and each would put back,
 * at its end, the other's handler as the application's.
 */
enum prt__sig_role { PRT_SIGROLE_PREEMPT = 1, PRT_SIGROLE_DUMP = 2 };

/*
 * Count one more runtime using @sig in @role: 0, or -EBUSY if live
 * runtimes use it in the other role. Any thread; takes and drops the
 * registry's lock (never called with it held: no order to keep).
 */
int prt__sig_role_get(int sig, enum prt__sig_role role);
/* One fewer user of @sig in @role (a successful prt__sig_role_get's). */
void prt__sig_role_put(int sig, enum prt__sig_role role);

/*
 * Call the handler @old names with what the signal gave: false if it
 * names none (SIG_DFL or SIG_IGN), for the caller to decide. As the
 * kernel would have run it (a review: the application's sa_mask was not
 * blocked, SA_NODEFER not honoured, and an SA_RESETHAND handler stayed
 * for every later signal, then was put back at the end as if it had
 * never run): its sa_mask and, unless SA_NODEFER, the signal itself are
 * blocked while it runs (over the mask at the interruption, from @uc),
 * and SA_RESETHAND makes the disposition SIG_DFL as it is called (one
 * caller gets it, the exchange decides). Our handlers block the signal
 * and nothing else: a mask like that, the common case, costs no system
 * call. Inline: a handler compiled without ThreadSanitizer calls it
 * (preempt_sig.c).
 */
static inline bool prt__sig_call(struct prt__sigact *old, int sig, siginfo_t *si, void *uc)
{
	void *h = __atomic_load_n(&old->handler, __ATOMIC_RELAXED);
	unsigned long flags = old->flags;
	uint64_t was = 0, cur, want, bit = sig >= 1 && sig <= 64 ? 1ull << (sig - 1) : 0;
	bool masked = false;

	if (h == (void *)SIG_DFL || h == (void *)SIG_IGN)
		return false;
	if ((flags & SA_RESETHAND) &&
	    (h = __atomic_exchange_n(&old->handler, (void *)SIG_DFL, __ATOMIC_RELAXED)) ==
		    (void *)SIG_DFL)
		return false; /* another thread's signal took it first */
	if (uc) {
		/* no memcpy call in a handler (-O0; a sanitizer's interceptor) */
		was = *(const uint64_t *)(const void *)&((const ucontext_t *)uc)->uc_sigmask;
		cur = was | bit;
		want = (was | old->mask | bit) & ~(flags & SA_NODEFER ? bit : 0);
		if (want != cur) {
			int e = errno;

			/* the raw call: libc's and ThreadSanitizer's wrappers are no business of a handler */
			masked = syscall(SYS_rt_sigprocmask, SIG_SETMASK, &want, NULL, sizeof(want)) == 0;
			errno = e;
		}
	}
	if (flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))h)(sig, si, uc);
	else
		((void (*)(int))h)(sig);
	if (masked) {
		int e = errno;

		syscall(SYS_rt_sigprocmask, SIG_SETMASK, &cur, NULL, sizeof(cur));
		errno = e;
	}
	return true;
}

/* The interrupted pc and stack pointer of a handler's ucontext (0 on other arches). */
static inline uintptr_t prt__uc_pc(const void *ucv)
{
	const ucontext_t *uc = ucv;

#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	(void)uc;
	return 0;
#endif
}

static inline uintptr_t prt__uc_sp(const void *ucv)
{
	const ucontext_t *uc = ucv;

#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.sp;
#else
	(void)uc;
	return 0;
#endif
}

#endif
