/* SPDX-License-Identifier: MIT */
/*
 * The opt-in dump signal (cfg.dump_signal): on that signal every
 * runtime that asked for it dumps itself to stderr (prt_runtime_dump).
 *
 * Design note (process-wide state). A signal's disposition belongs to
 * the process, so the handler, the dispositions it replaced and the
 * table of runtimes that asked for a dump are global here: a dump
 * signal is installed by the first runtime that names it and put back
 * by the last one (if nobody replaced it meanwhile).
 *
 * Dump signal. The handler only writes a byte to each registered
 * runtime's pipe; a thread of that runtime does the dump (it takes locks
 * and formats, which a handler must not). A slot being written by the
 * handler is marked busy, so unregistering waits for it and a closed
 * pipe's fd number can never be written after reuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "dump_signal.h"
#include "fork.h"
#include "runtime_int.h"
#include "sigact.h"

/* Runtimes with a dump signal at once. */
#define PRT_DUMP_SLOTS 64

enum { SLOT_FREE = 0, SLOT_LIVE, SLOT_BUSY };

static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	atomic_int state;
	atomic_int sig;
	int wfd, rfd; /* the runtime's dump pipe (rfd: for a forked child to close) */
} slots[PRT_DUMP_SLOTS];
static unsigned dump_users[NSIG];               /* dump_lock */
static struct prt__sigact old_dump[NSIG];       /* dump_lock */

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
	sigset_t all, old;
	int slot = -1, err;

	if (!sig)
		return 0;
	/* Not a signal another runtime preempts with (sigact.h) */
	if ((err = prt__sig_role_get(sig, PRT_SIGROLE_DUMP)))
		return err;
	if (pipe2(rt->dump_pipe, O_CLOEXEC)) {
		err = -errno;
		prt__sig_role_put(sig, PRT_SIGROLE_DUMP);
		return err;
	}
	fcntl(rt->dump_pipe[1], F_SETFL, O_NONBLOCK);
	/* The thread must not take the signal itself: block everything in it. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&rt->dump_tid, NULL, dump_thread, rt);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		goto fail_pipe;
	pthread_mutex_lock(&dump_lock);
	/*
	 * relaxed: a slot goes FREE <-> LIVE only under dump_lock, held here,
	 * and the handler never touches a FREE slot.
	 */
	for (int i = 0; i < PRT_DUMP_SLOTS && slot < 0; i++)
		if (atomic_load_explicit(&slots[i].state, memory_order_relaxed) == SLOT_FREE)
			slot = i;
	if (slot < 0)
		err = -EAGAIN;
	else if (dump_users[sig] == 0)
		err = prt__sig_take(sig, (void *)dump_handler, SA_RESTART, false, &old_dump[sig]);
	if (!err) {
		dump_users[sig]++;
		slots[slot].wfd = rt->dump_pipe[1];
		slots[slot].rfd = rt->dump_pipe[0];
		/* relaxed: published with wfd by the release below */
		atomic_store_explicit(&slots[slot].sig, sig, memory_order_relaxed);
		/* release: pairs with the handler's acquire CAS (LIVE -> BUSY), which then reads wfd */
		atomic_store_explicit(&slots[slot].state, SLOT_LIVE, memory_order_release);
		rt->dump_slot = slot;
		rt->dump_sig = sig;
	}
	pthread_mutex_unlock(&dump_lock);
	if (!err)
		return 0;
	close(rt->dump_pipe[1]); /* EOF: the thread ends */
	pthread_join(rt->dump_tid, NULL);
	close(rt->dump_pipe[0]);
	prt__sig_role_put(sig, PRT_SIGROLE_DUMP);
	return err;
fail_pipe:
	close(rt->dump_pipe[0]);
	close(rt->dump_pipe[1]);
	prt__sig_role_put(sig, PRT_SIGROLE_DUMP);
	return err;
}

void prt__dump_signal_fini(struct prt_runtime *rt)
{
	int slot = rt->dump_slot, live = SLOT_LIVE;

	if (slot < 0)
		return;
	pthread_mutex_lock(&dump_lock);
	/* Wait out a handler writing to our pipe right now. */
	/*
	 * acquire: pairs with the handler's release of LIVE after its write,
	 * so we close the pipe below only after that write.
	 */
	while (!atomic_compare_exchange_weak_explicit(&slots[slot].state, &live, SLOT_FREE,
						      memory_order_acquire, memory_order_relaxed))
		live = SLOT_LIVE;
	/* relaxed: the slot is FREE, which the handler never takes; dump_lock orders the reuse */
	atomic_store_explicit(&slots[slot].sig, 0, memory_order_relaxed);
	/* Put back what was there, unless someone replaced ours since. */
	if (--dump_users[rt->dump_sig] == 0)
		prt__sig_put(rt->dump_sig, (const void *)dump_handler, false, &old_dump[rt->dump_sig]);
	pthread_mutex_unlock(&dump_lock);
	/* No handler writes to the pipe any more: EOF ends the thread. */
	close(rt->dump_pipe[1]);
	pthread_join(rt->dump_tid, NULL);
	close(rt->dump_pipe[0]);
	rt->dump_slot = -1;
	prt__sig_role_put(rt->dump_sig, PRT_SIGROLE_DUMP);
}

/* fork.h: no runtime in a forked child: no slot, the dispositions put back, its pipe copies closed. */
static void dump_child(void)
{
	for (int i = 0; i < PRT_DUMP_SLOTS; i++) {
		/* relaxed: one thread in the child, and no handler of ours after the loop below */
		if (atomic_load_explicit(&slots[i].state, memory_order_relaxed) == SLOT_FREE)
			continue;
		atomic_store_explicit(&slots[i].state, SLOT_FREE, memory_order_relaxed);
		atomic_store_explicit(&slots[i].sig, 0, memory_order_relaxed);
		/* The child's copies: the parent's dump thread reads until every write end is closed. */
		close(slots[i].wfd);
		close(slots[i].rfd);
	}
	prt__sig_put_all(dump_users, (const void *)dump_handler, false, old_dump);
}

struct prt__fork_hook prt__dump_signal_fork_hook = { .lock = &dump_lock, .child = dump_child };
