/* SPDX-License-Identifier: MIT */
/*
 * Taking a signal over and giving it back (sigact.h). Compiled without
 * ThreadSanitizer (meson.build, proxyrt_nosan), as the preemption
 * handler is: nothing here is shared with fibers or other threads but
 * under the callers' locks.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fork.h"
#include "sigact.h"

/* The kernel's SA_RESTORER (asm/signal.h; glibc's <signal.h> does not name it). */
#define PRT_SA_RESTORER 0x04000000ul

#if defined(__x86_64__)
/* lib/arch/x86_64/preempt.S: rt_sigreturn, which x86-64 handlers must return to. */
void prt__sig_restorer(void);
#endif

static void to_libc(const struct prt__sigact *k, struct sigaction *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sa_handler = (void (*)(int))k->handler; /* the same word as sa_sigaction */
	/* libc sets its own restorer (and the flag) */
	sa->sa_flags = (int)(k->flags & ~PRT_SA_RESTORER);
	sigemptyset(&sa->sa_mask);
	memcpy(&sa->sa_mask, &k->mask, sizeof(k->mask));
}

static void from_libc(const struct sigaction *sa, struct prt__sigact *k)
{
	k->handler = (void *)sa->sa_handler;
	k->flags = (unsigned long)(unsigned)sa->sa_flags;
	k->restorer = NULL;
	memcpy(&k->mask, &sa->sa_mask, sizeof(k->mask));
}

/* Set @sig's disposition to *@act (unless NULL), the old one in *@old (unless NULL). 0 or -errno. */
static int swap(int sig, const struct prt__sigact *act, struct prt__sigact *old, bool raw)
{
	struct sigaction sa, so;

	if (raw)
		return syscall(SYS_rt_sigaction, sig, act, old, sizeof(act->mask)) ? -errno : 0;
	if (act)
		to_libc(act, &sa);
	if (sigaction(sig, act ? &sa : NULL, old ? &so : NULL))
		return -errno;
	if (old)
		from_libc(&so, old);
	return 0;
}

int prt__sig_take(int sig, void *h, unsigned long flags, bool raw, struct prt__sigact *old)
{
	struct prt__sigact act = { .handler = h, .flags = flags, .restorer = NULL, .mask = 0 };

#if defined(__x86_64__)
	/* The kernel returns from an x86-64 handler only through a restorer (libc gives its own). */
	if (raw) {
		act.flags |= PRT_SA_RESTORER;
		act.restorer = prt__sig_restorer;
	}
#endif
	return swap(sig, &act, old, raw);
}

void prt__sig_put(int sig, const void *ours, bool raw, const struct prt__sigact *old)
{
	struct prt__sigact cur;

	if (swap(sig, NULL, &cur, raw) == 0 && cur.handler == ours)
		swap(sig, old, NULL, raw);
}

void prt__sig_put_all(unsigned *users, const void *ours, bool raw, const struct prt__sigact *old)
{
	for (int sig = 1; sig < NSIG; sig++) {
		if (!users[sig])
			continue;
		users[sig] = 0;
		prt__sig_put(sig, ours, raw, &old[sig]);
	}
}

/* ---- which role each signal has (prt__sig_role_get) ---------------------------- */

static pthread_mutex_t role_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	unsigned users;
	enum prt__sig_role role; /* while users > 0 */
} roles[NSIG];                   /* role_lock */

int prt__sig_role_get(int sig, enum prt__sig_role role)
{
	int err = 0;

	if (sig < 1 || sig >= NSIG)
		return -EINVAL;
	pthread_mutex_lock(&role_lock);
	if (roles[sig].users && roles[sig].role != role)
		err = -EBUSY;
	else if (roles[sig].users == UINT32_MAX)
		err = -EAGAIN;
	else {
		roles[sig].role = role;
		roles[sig].users++;
	}
	pthread_mutex_unlock(&role_lock);
	return err;
}

void prt__sig_role_put(int sig, enum prt__sig_role role)
{
	if (sig < 1 || sig >= NSIG)
		return;
	pthread_mutex_lock(&role_lock);
	if (roles[sig].users && roles[sig].role == role)
		roles[sig].users--;
	pthread_mutex_unlock(&role_lock);
}

/* fork.h: the parent's runtimes are gone in a child, and their claims with them. */
static void role_child(void)
{
	memset(roles, 0, sizeof(roles));
}

struct prt__fork_hook prt__sig_role_fork_hook = { .lock = &role_lock, .child = role_child };
