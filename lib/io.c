/* SPDX-License-Identifier: MIT */
/*
 * Fiber I/O: the calls of proxyrt/io.h, whichever backend carries them.
 *
 * On a plain thread a call is its syscall (timeouts through poll(2)).
 * On a fiber it goes to the backend its runtime chose at creation, one
 * instance per worker: io_uring (io_uring.c), or epoll (io_epoll.c)
 * where io_uring is refused or not wanted; io_backend.h is the interface
 * between them and this file.
 *
 * prt_close cancels the requests other fibers have on the fd: it posts
 * a command to each worker with requests in flight, has its backend run
 * it (an async cancel in its ring, or the waiters of its epoll bucket),
 * waits until each is done, then closes. Receive streams cancel their
 * own requests the same way (prt__io_cancel_reqs).
 *
 * This file and sched.c call each other, as one concern (a fiber I/O
 * runtime polls I/O at its scheduling points): every scheduling point
 * services I/O here, and the I/O calls park their fiber and wake it
 * through the scheduler (docs/design.md, section 2, "The two pairs").
 */
#include <fcntl.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#if PRT_USE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc.h"
#include "fault.h"
#include "fork.h"
#include "io_backend.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "wait.h"
#include "worker.h"

/* ---- runtime set-up: choose the backend ---------------------------------- */

/* Test builds: true, with errno set, if the next fd-making call must fail (fault.h). */
bool prt__io_fd_fault(void)
{
	int err = prt__fault(PRT_FAULT_FD);

	if (err)
		errno = err;
	return err != 0;
}

/*
 * The backend @want asks for: the environment's PRT_IO_BACKEND
 * ("epoll", "io_uring" or "auto", in any case) replaces the
 * configuration (as PRT_PREEMPT_QUANTUM_NS does the quantum); another
 * value is ignored and said in @notice. PRT_IO_AUTO gives way to
 * valgrind.
 */
static int wanted(int want, bool *valgrind, char *notice, size_t notice_len)
{
	const char *env = getenv("PRT_IO_BACKEND");

	if (env && *env) {
		if (!strcasecmp(env, "epoll"))
			want = PRT_IO_EPOLL;
		else if (!strcasecmp(env, "io_uring") || !strcasecmp(env, "uring"))
			want = PRT_IO_URING;
		else if (!strcasecmp(env, "auto"))
			want = PRT_IO_AUTO;
		else
			snprintf(notice, notice_len,
				 "PRT_IO_BACKEND=\"%.32s\" ignored (epoll, io_uring or auto)",
				 env);
	}
#if PRT_USE_VALGRIND
	/*
	 * Valgrind (3.19) holds its one big lock across io_uring_enter: a
	 * worker waiting in its ring would stop every other thread. epoll
	 * waits release it.
	 */
	if (want == PRT_IO_AUTO && RUNNING_ON_VALGRIND) {
		want = PRT_IO_EPOLL;
		*valgrind = true;
	}
#else
	(void)valgrind;
#endif
	return want;
}

/* Append @s to the notice in @buf (@size bytes), after "; " if it has one; cut to fit. */
static void notice_add(char *buf, size_t size, const char *s)
{
	size_t n = strlen(buf), l;

	if (!s[0])
		return;
	if (n && n + 2 < size) {
		memcpy(buf + n, "; ", 2);
		n += 2;
	}
	l = strlen(s);
	if (l > size - 1 - n)
		l = size - 1 - n;
	memcpy(buf + n, s, l);
	buf[n + l] = 0;
}

/*
 * Choose the runtime's backend: epoll if asked for, else io_uring where
 * the probe finds every op we need, else epoll with a notice saying why
 * (an explicit PRT_IO_URING fails instead). 0 or -errno. @cfg has passed
 * prt_runtime_create's checks.
 */
int prt__io_rt_init(struct prt_runtime *rt, const prt_runtime_config_t *cfg)
{
	struct prt__rtio *rio = &rt->io;
	const char *what = NULL;
	char env[96] = ""; /* the environment's value ignored, if any: said with any other notice */
	bool valgrind = false;
	int want = cfg->io_backend, err;

	/* io_backend and io_entries were checked with the rest (runtime.c, config_check). */
	want = wanted(want, &valgrind, env, sizeof(env));
	rio->entries = cfg->io_entries ? cfg->io_entries : PRT_IO_ENTRIES_DEFAULT;
	rio->offload_max = cfg->offload_threads ? cfg->offload_threads : PRT_OFFLOAD_THREADS_DEFAULT;
	if (want == PRT_IO_EPOLL) {
		rio->ops = &prt__io_epoll;
		snprintf(rio->notice, sizeof(rio->notice),
			 "proxyrt: I/O on epoll %s (fds are made O_NONBLOCK)",
			 valgrind ? "under valgrind (io_uring waits would block it)" :
			 cfg->io_backend == PRT_IO_EPOLL ? "as configured" :
							   "as PRT_IO_BACKEND says");
		notice_add(rio->notice, sizeof(rio->notice), env);
		return 0;
	}
	err = prt__io_uring.probe(rio, &what);
	if (!err) {
		rio->ops = &prt__io_uring;
		if (env[0]) /* alone: notice_add would put "; " before it (a review) */
			snprintf(rio->notice, sizeof(rio->notice), "proxyrt: %s", env);
		return 0;
	}
	if (want == PRT_IO_URING)
		return err;
	rio->ops = &prt__io_epoll;
	snprintf(rio->notice, sizeof(rio->notice),
		 "proxyrt: io_uring unavailable (%s: %s; see kernel.io_uring_disabled and "
		 "seccomp), I/O runs on epoll (fds are made O_NONBLOCK)",
		 what, strerror(-err));
	notice_add(rio->notice, sizeof(rio->notice), env);
	return 0;
}

PRT_API int prt_runtime_io_backend(const prt_runtime_t *rt)
{
	bool ref;
	int id;

	/* As every introspection call: a reference, so a destroy cannot free @rt meanwhile. */
	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	id = rt->io.ops->id;
	if (ref)
		prt__rt_put(rt);
	return id;
}

/* ---- per-worker set-up ------------------------------------------------------ */

/* What the watch of a backend that has no kernel queue points at: stays 0. */
static unsigned no_watch;

/* The worker's eventfd, then its backend's state: 0 or -errno, nothing left open. */
int prt__io_init(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	int err;

	io->ops = w->rt->io.ops;
	io->watch.head = io->watch.tail = io->watch.flags = &no_watch;
	prt__list_init(&io->reqs);
	io->evfd = prt__io_fd_fault() ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->evfd < 0)
		return -errno;
	if ((err = io->ops->init(w))) {
		close(io->evfd);
		io->evfd = -1;
	}
	return err;
}

/*
 * On the worker thread, before its first submission. The worker blocks
 * SIGPIPE for good: a write to a socket (or pipe) that can no longer
 * send then fails with EPIPE instead of killing the process, whether
 * the kernel runs it in this thread (write(2), an io_uring request
 * issued or retried here) or in an io_uring helper thread (those block
 * every signal). IORING_OP_WRITE has no flags to say MSG_NOSIGNAL with.
 * The signal stays pending on the worker, harmless while blocked, and
 * is discarded when the thread ends.
 */
static __thread bool pipe_blocked_here; /* this thread blocked SIGPIPE as a worker (it was not) */

void prt__io_thread_start(struct prt__worker *w)
{
	sigset_t pipe, old;

	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	if (!pthread_sigmask(SIG_BLOCK, &pipe, &old))
		pipe_blocked_here = !sigismember(&old, SIGPIPE);
	w->io.ops->thread_start(w);
}

/*
 * The child of a fork from a fiber: its one thread is a worker thread,
 * whose SIGPIPE block (above) would go on into the child and into any
 * program it execs (a review: `yes` run from a fiber printed "Broken
 * pipe" and exited 1 where run from main() it died of SIGPIPE). Put it
 * back as the thread had it, as Go's fork puts back the signal mask the
 * program started with. The child has no pending signals (POSIX), so
 * none left by the worker is delivered.
 */
static void io_fork_child(void)
{
	sigset_t pipe;

	if (!pipe_blocked_here)
		return;
	pipe_blocked_here = false;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_UNBLOCK, &pipe, NULL);
}

struct prt__fork_hook prt__io_fork_hook = { .lock = NULL, .child = io_fork_child };

/* On the worker thread, leaving its loop: the backend ends what is still in flight. */
void prt__io_thread_stop(struct prt__worker *w)
{
	if (w->io.evfd >= 0)
		w->io.ops->thread_stop(w);
}

/* Undo prt__io_init (nothing if it failed or never ran). */
void prt__io_fini(struct prt__worker *w)
{
	struct prt__io *io = &w->io;

	if (io->evfd < 0)
		return;
	io->ops->fini(w);
	close(io->evfd);
	io->evfd = -1;
}

/* ---- commands from other threads (prt_close) ----------------------------------- */

/* A worker has done command @c: the last ack wakes the closer. */
void prt__io_cmd_ack(struct prt__iocmd *c)
{
	struct prt__wait *done = c->done;

	/*
	 * The closer's stack holds @c: read everything before the last ack.
	 * acq_rel: the release orders our reads of @c before the closer's
	 * reuse; it pairs with the acquire of the last decrement (here, or
	 * wait_cmds').
	 */
	if (atomic_fetch_sub_explicit(c->left, 1, memory_order_acq_rel) == 1)
		prt__wait_wake(done);
}

/*
 * Take @w's own cancel command off list @c (it is on it at most once)
 * and make it postable again; true if it was there. Our scan comes after
 * this, so a prt_cancel whose post failed (still posted) is seen by it.
 */
static bool take_cancel_cmd(struct prt__worker *w, struct prt__iocmd **c)
{
	for (struct prt__iocmd **pp = c; *pp; pp = &(*pp)->next) {
		if (*pp != &w->io.cancel_cmd)
			continue;
		*pp = (*pp)->next;
		/* seq_cst: against prt__io_cancel_post's exchange, then our scan's loads of the flags */
		atomic_store_explicit(&w->io.cancel_posted, 0, memory_order_seq_cst);
		return true;
	}
	return false;
}

/* Hand @w's posted commands to its backend. */
static int run_cmds(struct prt__worker *w)
{
	/* acquire: pairs with post_cmd's release CAS; the commands' fields are set. */
	struct prt__iocmd *c = atomic_exchange_explicit(&w->io.cmds, NULL, memory_order_acquire);
	int woken = 0;

	if (take_cancel_cmd(w, &c))
		woken += w->io.ops->cancel_fibers(w);
	return c ? woken + w->io.ops->cancel(w, c) : woken;
}

/* Queue command @c on worker @v and wake it (ours runs in wait_cmds). */
static void post_cmd(struct prt__worker *w, struct prt__worker *v, struct prt__iocmd *c)
{
	c->next = atomic_load_explicit(&v->io.cmds, memory_order_relaxed);
	/* release: publishes @c's fields to run_cmds' acquire exchange. */
	while (!atomic_compare_exchange_weak_explicit(&v->io.cmds, &c->next, c,
						      memory_order_release, memory_order_relaxed))
		;
	if (v != w)
		prt__io_kick(v);
}

void prt__io_cancel_post(struct prt__worker *v)
{
	/*
	 * seq_cst: after the canceller's store of the fiber's flag; if it
	 * finds the command posted, the worker's take_cancel_cmd has not
	 * cleared it yet, and its scan, after that, sees the flag.
	 */
	if (atomic_exchange_explicit(&v->io.cancel_posted, 1, memory_order_seq_cst))
		return;
	post_cmd(prt__cur_worker(), v, &v->io.cancel_cmd);
}

/* Run our own commands now, drop our reference on @left, wait for every ack. */
static void wait_cmds(struct prt__worker *w, atomic_int *left, struct prt__wait *done)
{
	prt__io_service(w, true);
	/* acq_rel: as prt__io_cmd_ack's; if ours is the last, every worker is done with its command. */
	if (atomic_fetch_sub_explicit(left, 1, memory_order_acq_rel) != 1)
		prt__wait_block(done, 0);
}

/*
 * Cancel what fibers of @w's runtime have pending on @fd, on every
 * worker with requests in flight; wait until each worker has done it.
 */
static void cancel_fd(struct prt__worker *w, int fd)
{
	struct prt_runtime *rt = w->rt;
	struct prt__iocmd small[8], *cmds = small;
	size_t sz = sizeof(*cmds) * (size_t)rt->nworkers;
	struct prt__wait done;
	atomic_int left = 1; /* our own reference, dropped below */

	if (rt->nworkers > 8 && !(cmds = prt__alloc(sz)))
		return; /* no memory: close without cancelling, as close(2) */
	prt__wait_init(&done, w->curr);
	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *v = rt->workers[i];
		struct prt__iocmd *c = &cmds[i];

		/*
		 * A worker with nothing in flight and no call beginning has
		 * nothing of @fd, nor will have: seq_cst, after prt_close
		 * raised the fd's closing count (prt__io_enter).
		 */
		if (v != w && !atomic_load(&v->io.entering) && !PRT_READ_ONCE(v->io.inflight))
			continue;
		c->fd = fd;
		c->ud = 0;
		c->done = &done;
		c->left = &left;
		/* relaxed: we hold a reference; post_cmd's release CAS publishes the count. */
		atomic_fetch_add_explicit(&left, 1, memory_order_relaxed);
		post_cmd(w, v, c);
	}
	prt__set_wait(w->curr, PRT_WK_IO, "close", fd);
	wait_cmds(w, &left, &done);
	/* Every command has been acked: their slots are free again. */
	if (cmds != small)
		prt__free(cmds, sz);
}

/*
 * A close and a call that begins. prt_close cancels what fibers have
 * pending on the fd on every worker with requests in flight, then
 * closes it. A call that began on another worker just before the close
 * looked, and queued its request just after (before the close(2)), was
 * missed: io_uring's request held the file, so the socket stayed open
 * and the reader waited for good; on epoll the close dropped the fd's
 * registration and nothing woke the reader (a review, 5/5 on both).
 * Now each side writes, then reads the other (Dekker, all seq_cst):
 * the closer raises the count of the fd's bucket (rt->io.closing), then
 * reads each worker's @entering and @inflight; a call raises its
 * worker's @entering, then reads the bucket's count. Either the closer
 * sees the call's worker and cancels there (commands run on that
 * worker after the call queued its request: it is the same thread), or
 * the call sees the close and steps back: it sleeps until no close of
 * its bucket is under way, then begins again, as a call made after
 * close(2) (-EBADF, or whatever file has the number by then). A close
 * of another fd of the same bucket (fd % PRT_IO_CLOSING) holds such a
 * call as long as that close lasts (a socket's SO_LINGER, a busy worker
 * that must ack the cancel: a review measured 2 s), but a timed call
 * only up to its deadline: it then looks at its fd once, which cannot
 * wait past it; the time it waited counts against its timeout.
 */
int prt__io_enter(struct prt__worker **wp, int fd, const char *what, uint64_t *tmo)
{
	struct prt__worker *w = *wp;
	atomic_uint *closing = &w->rt->io.closing[(unsigned)fd % PRT_IO_CLOSING];
	uint64_t deadline = 0, now;

	for (;;) {
		uint64_t nap = PRT_IO_CLOSE_BACKOFF_NS;
		int err;

		atomic_fetch_add(&w->io.entering, 1);
		if (prt__likely(!atomic_load(closing)))
			break;
		if (*tmo) {
			/*
			 * A timed call cannot wait past its deadline, so it need
			 * not wait for the close either once that comes: it
			 * looks at its fd once (io.h), entering raised.
			 */
			now = prt__now_ns();
			if (!deadline)
				deadline = prt__add_sat(now, *tmo);
			if (now >= deadline)
				break;
			if (deadline - now < nap)
				nap = deadline - now;
		}
		prt__io_leave(&w->io);
		err = prt_sleep_ns(nap);
		if (err)
			return err;
		w = prt__cur_worker();
		if (prt__cancel_pending(w->curr))
			return -ECANCELED;
	}
	if (deadline) {
		now = prt__now_ns();
		*tmo = deadline > now ? deadline - now : 1; /* what is left: at least a look */
	}
	prt__set_wait(w->curr, PRT_WK_IO, what, fd);
	*wp = w;
	return 0;
}

/* Post a cancel by user_data to each worker @v[i] (streams); wait for every ack. */
void prt__io_cancel_reqs(struct prt__worker *w, int n, struct prt__worker *const *v,
			 const uint64_t *ud)
{
	struct prt__wait done;
	atomic_int left = n + 1; /* the commands' and ours */
	struct prt__iocmd c[2];

	prt__assert(n >= 1 && n <= 2);
	prt__wait_init(&done, w->curr);
	for (int i = 0; i < n; i++) {
		c[i] = (struct prt__iocmd){ .fd = -1, .ud = ud[i], .done = &done, .left = &left };
		post_cmd(w, v[i], &c[i]);
	}
	wait_cmds(w, &left, &done);
}

/* ---- scheduling points, idle wait, kicks ----------------------------------------- */

/* Commands first (a closer waits for them), then the backend's own work. */
int prt__io_service(struct prt__worker *w, bool force_submit)
{
	struct prt__io *io = &w->io;
	int woken = 0;

	if (io->evfd < 0)
		return 0;
	/* relaxed: a hint; run_cmds takes the list with acquire */
	if (atomic_load_explicit(&io->cmds, memory_order_relaxed))
		woken += run_cmds(w);
	return woken + io->ops->service(w, force_submit);
}

/* The backend's idle wait, for what is left until @deadline; none if it has passed. */
void prt__io_wait(struct prt__worker *w, uint64_t deadline)
{
	uint64_t now;

	if (deadline == PRT_NEVER)
		deadline = 0; /* a timer that never fires */
	now = deadline ? prt__now_ns() : 0;
	if (deadline && deadline <= now)
		return;
	w->io.ops->wait(w, deadline ? deadline - now : 0);
}

/* Any thread: the eventfd's counter wakes @v in its ring or epoll. */
void prt__io_kick_evfd(struct prt__worker *v)
{
	uint64_t one = 1;
	int saved = prt__errno_get();

	/* -EAGAIN: the counter is saturated, so a wake is pending anyway */
	prt__sys_ret(write(v->io.evfd, &one, sizeof(one)), saved);
}

/*
 * A worker of @v's runtime kicks @v through its own backend where it can
 * (io_uring: a MSG_RING from its ring); anyone else writes v's eventfd.
 */
void prt__io_kick(struct prt__worker *v)
{
	struct prt__worker *me = prt__cur_worker();

	if (v->io.evfd < 0)
		return;
	if (me && me != v && me->rt == v->rt && me->io.evfd >= 0 && me->io.ops->kick(me, v))
		return;
	prt__io_kick_evfd(v);
}

/* ---- parking a fiber on a request ------------------------------------------------ */

/* Park until the worker that holds @r ends it (counted in its inflight) and wakes r->wait. */
int prt__io_park_req(struct prt__worker *w, struct prt__ioreq *r)
{
	/*
	 * A fiber stopped by an interrupt waits here (preempt.h, nr_stopped):
	 * make the request now, not at that fiber's slice's end; one the
	 * kernel completes at once then needs no park at all.
	 */
	if (prt__unlikely(w->pw.nr_stopped) && prt__io_waiting(&w->io))
		prt__io_service(w, true);
	if (r->cancellable)
		prt__wait_block_io(&r->wait, w);
	else
		prt__wait_block_nospin(&r->wait, 0, false); /* our worker ends it: no spin */
	return r->res;
}

/* ---- the syscalls ----------------------------------------------------------------- */

static const char *const op_names[] = { "read", "write", "readv", "writev",
					"recv", "send", "accept", "connect" };

/* The syscall itself, without blocking if @nb; -errno on failure. */
/*
 * @n capped at MAX_RW_COUNT (io.h, "Lengths"), the kernel's own cap,
 * which it applies only after checking the whole buffer's range: a huge
 * @n is then EFAULT, not a short transfer as on the io_uring backend.
 */
static size_t rw_len(size_t n)
{
	return n > 0x7ffff000u ? 0x7ffff000u : n;
}

long prt__io_sys(const struct prt__ioargs *a, bool nb)
{
	int saved = prt__errno_get();
	long n = -1;

	switch (a->op) {
	case PRT_OP_READ:
		n = read(a->fd, a->buf, rw_len(a->n));
		break;
	case PRT_OP_WRITE:
		n = write(a->fd, a->buf, rw_len(a->n));
		break;
	case PRT_OP_READV:
		n = readv(a->fd, a->iov, a->iovcnt);
		break;
	case PRT_OP_WRITEV:
		n = writev(a->fd, a->iov, a->iovcnt);
		break;
	case PRT_OP_RECV:
		n = recv(a->fd, a->buf, rw_len(a->n), a->flags | (nb ? MSG_DONTWAIT : 0));
		break;
	case PRT_OP_SEND:
		n = send(a->fd, a->buf, rw_len(a->n), a->flags | (nb ? MSG_DONTWAIT : 0));
		break;
	case PRT_OP_ACCEPT:
		n = accept4(a->fd, a->addr, a->addrlen, a->flags);
		break;
	case PRT_OP_CONNECT:
		n = connect(a->fd, a->addr, a->alen);
		break;
	}
	return prt__sys_ret(n, saved);
}

/* ---- plain threads ----------------------------------------------------------------- */

/*
 * Wait for @events with poll(2) until @deadline (CLOCK_MONOTONIC ns; 0:
 * no limit).
 * Waits longer than poll's int milliseconds, and waits cut short by a
 * signal, go on until the deadline. The fd is always looked at: a
 * deadline that passed before the first look gets a poll(2) that does
 * not wait, so a ready fd or a closed one says so, as a fiber's call
 * does (a review: a 1 ns timeout was -ETIMEDOUT on a readable fd and on
 * one not open).
 */
static int thread_poll_until(int fd, short events, uint64_t deadline)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n, saved = prt__errno_get(), err;

	for (;;) {
		bool last = false;
		int ms = -1;

		if (deadline) {
			uint64_t now = prt__now_ns(), left;

			last = now >= deadline;
			left = last ? 0 : (deadline - now) / 1000000u + 1; /* rounded up: never early */
			ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		n = poll(&p, 1, ms);
		err = prt__errno_get();
		prt__errno_set(saved);
		if (n > 0 && (p.revents & POLLNVAL))
			return -EBADF; /* as the backends' (io.h) */
		if (n > 0)
			return p.revents;
		if (n < 0 && err != EINTR)
			return -err;
		if (n == 0 && last)
			return -ETIMEDOUT;
	}
}

/*
 * write(2) or writev(2) on a plain thread, whose signal mask is the
 * caller's: tried first as send(2)/sendmsg(2) with MSG_NOSIGNAL, which
 * is the same call on a socket (its SIGPIPE aside; SOCK_SEQPACKET's
 * implied MSG_EOR matters only to SCTP's explicit-EOR mode) and fails
 * with ENOTSOCK on any other fd, which then gets the syscall itself.
 * Sockets pay nothing; other fds one failed call.
 */
long prt__io_write_nosigpipe(const struct prt__ioargs *a)
{
	struct msghdr mh = { .msg_iov = (struct iovec *)a->iov, .msg_iovlen = (size_t)a->iovcnt };
	int saved = prt__errno_get();
	long n;

	if (a->op == PRT_OP_WRITEV && a->iovcnt > IOV_MAX)
		return prt__io_sys(a, false); /* writev's EINVAL, not sendmsg's EMSGSIZE */
	n = prt__sys_ret(a->op == PRT_OP_WRITE ? send(a->fd, a->buf, rw_len(a->n), MSG_NOSIGNAL)
					       : sendmsg(a->fd, &mh, MSG_NOSIGNAL),
			 saved);
	return n == -ENOTSOCK ? prt__io_sys(a, false) : n;
}

int prt__sock_opt(int fd, int opt)
{
	int v = 0, saved = prt__errno_get();
	socklen_t l = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l) != 0)
		v = -1;
	prt__errno_set(saved);
	return v;
}

bool prt__io_is_unix(int fd)
{
	return prt__sock_opt(fd, SO_DOMAIN) == AF_UNIX;
}

/* ns from now to @deadline (0: passed). */
static uint64_t deadline_left(uint64_t deadline)
{
	uint64_t now = prt__now_ns();

	return now >= deadline ? 0 : deadline - now;
}

uint64_t prt__connect_retry_at(uint64_t deadline, uint64_t *ns)
{
	uint64_t now = prt__now_ns(), until = prt__add_sat(now, *ns);

	if (deadline && now >= deadline)
		return 0;
	if (deadline && until > deadline)
		until = deadline;
	if (*ns < PRT_CONNECT_BACKOFF_MAX_NS)
		*ns *= 2;
	return until;
}

/*
 * connect(2) on a plain thread, waiting for a non-blocking fd's
 * connection to end; a full AF_UNIX backlog (-EAGAIN, not started) is
 * retried (prt__connect_retry_at), as a blocking connect(2) waits for room.
 */
static long thread_connect(const struct prt__ioargs *a, uint64_t deadline)
{
	uint64_t backoff = PRT_CONNECT_BACKOFF_NS, until;
	long n;
	int r;

	while ((n = prt__io_sys(a, false)) == -EAGAIN && prt__io_is_unix(a->fd)) {
		struct timespec ts;

		if (!(until = prt__connect_retry_at(deadline, &backoff)))
			return -ETIMEDOUT;
		ts.tv_sec = (time_t)(until / 1000000000u);
		ts.tv_nsec = (long)(until % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
	}
	if (n != -EINPROGRESS)
		return n;
	/* Looked at once at least, whatever the deadline: a connection made at once is made (io.h). */
	for (;;) {
		r = thread_poll_until(a->fd, POLLOUT, deadline);
		if (r < 0)
			return r;
		if ((n = prt__connect_end(a)) <= 0)
			return n;
		if (deadline && !deadline_left(deadline))
			return -ETIMEDOUT; /* writable, yet still under way */
	}
}

long prt__connect_end(const struct prt__ioargs *a)
{
	long n = prt__io_sys(a, true);

	if (n == 0 || n == -EISCONN)
		return 0;
	return n == -EALREADY || n == -EINPROGRESS ? 1 : n;
}

/* Is @fd O_NONBLOCK (a blocking one's recv honours MSG_WAITALL itself)? */
static bool fd_nonblocking(int fd)
{
	int saved = prt__errno_get(), fl = fcntl(fd, F_GETFL);

	prt__errno_set(saved);
	return fl >= 0 && (fl & O_NONBLOCK);
}

bool prt__waitall_short(const struct prt__ioargs *a, long n)
{
	return a->op == PRT_OP_RECV && n > 0 && (size_t)n < rw_len(a->n) &&
	       (a->flags & (MSG_WAITALL | MSG_PEEK | MSG_DONTWAIT)) == MSG_WAITALL &&
	       prt__sock_opt(a->fd, SO_TYPE) == SOCK_STREAM;
}

/*
 * The call on a plain thread: the syscall, then, on an fd that is
 * non-blocking, its EAGAIN waited out with poll(2), as a fiber's call
 * waits (unless the caller asked not to wait, MSG_DONTWAIT: io.h,
 * -EAGAIN). With a timeout the fd is made O_NONBLOCK first, so that the
 * syscall never blocks past the deadline (a review: a 1 MiB write to a
 * pipe that polled writable, a connect to a full backlog, blocked for
 * good), as the epoll backend makes a fiber's (io.h); the syscall comes
 * before any wait, as there, so a call that can complete does, whatever
 * the timeout (a review: read(fd, buf, 0) on an empty pipe waited for
 * its timeout; 1 ns was -ETIMEDOUT on a readable fd). A recv with
 * MSG_WAITALL on a stream socket that is non-blocking goes on until it
 * has all (the kernel ends it at the first data there, where a blocking
 * one waits: a review), as the epoll backend's.
 */
static long thread_op(const struct prt__ioargs *a, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0;
	short ev = prt__io_is_write(a->op) ? POLLOUT : POLLIN;
	bool dontwait = (a->op == PRT_OP_RECV || a->op == PRT_OP_SEND) && (a->flags & MSG_DONTWAIT);
	struct prt__ioargs rest = *a;
	long n, done = 0;

	if (tmo) {
		int fl, saved = prt__errno_get();

		if ((fl = fcntl(a->fd, F_GETFL)) >= 0 && !(fl & O_NONBLOCK))
			fcntl(a->fd, F_SETFL, fl | O_NONBLOCK);
		prt__errno_set(saved);
	}
	if (a->op == PRT_OP_CONNECT)
		return thread_connect(a, deadline);
	for (;;) {
		int r;

		n = a->op == PRT_OP_WRITE || a->op == PRT_OP_WRITEV ? prt__io_write_nosigpipe(&rest)
								    : prt__io_sys(&rest, false);
		if (prt__waitall_short(&rest, n) && (tmo || fd_nonblocking(a->fd))) {
			done += n;
			rest.buf = (char *)rest.buf + n;
			rest.n -= (size_t)n;
			continue;
		}
		if (n != -EAGAIN || dontwait)
			break;
		if (deadline && !deadline_left(deadline)) {
			n = -ETIMEDOUT;
			break;
		}
		r = thread_poll_until(a->fd, ev, deadline);
		if (r < 0) {
			n = r;
			break;
		}
	}
	/* What came before an error, a timeout or the end of the stream is the call's result. */
	return done && n <= 0 ? done : n < 0 ? n : done + n;
}

/* ---- the calls ---------------------------------------------------------------------- */

/* A call: checked here, then the plain syscall on a plain thread, else the backend's op. */
static long run_op(const struct prt__ioargs *a, uint64_t tmo)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__io *io;
	long r;

	if (a->fd < 0)
		return -EBADF;
	if (!w)
		return thread_op(a, tmo);
	if (prt__cancel_pending(w->curr))
		return -ECANCELED; /* nothing done */
	if ((r = prt__io_enter(&w, a->fd, op_names[a->op], &tmo)))
		return r;
	io = &w->io;
	r = w->io.ops->op(w, a, tmo);
	prt__io_leave(io); /* the worker it began on */
	prt__preempt_safe_point(); /* done at once, on epoll: it did not park (sched_int.h) */
	return r;
}

PRT_API ssize_t prt_read_timeout(int fd, void *buf, size_t n, uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_READ, .fd = fd, .buf = buf, .n = n };

	return run_op(&a, tmo);
}

PRT_API ssize_t prt_write_timeout(int fd, const void *buf, size_t n, uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_WRITE, .fd = fd, .buf = (void *)buf, .n = n };

	return run_op(&a, tmo);
}

PRT_API ssize_t prt_readv_timeout(int fd, const struct iovec *iov, int iovcnt, uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_READV, .fd = fd, .iov = iov, .iovcnt = iovcnt };

	if (iovcnt < 0 || (iovcnt && !iov))
		return -EINVAL;
	return run_op(&a, tmo);
}

PRT_API ssize_t prt_writev_timeout(int fd, const struct iovec *iov, int iovcnt, uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_WRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt };

	if (iovcnt < 0 || (iovcnt && !iov))
		return -EINVAL;
	return run_op(&a, tmo);
}

PRT_API ssize_t prt_recv_timeout(int fd, void *buf, size_t n, int flags, uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_RECV, .fd = fd, .buf = buf, .n = n, .flags = flags };

	return run_op(&a, tmo);
}

PRT_API ssize_t prt_send_timeout(int fd, const void *buf, size_t n, int flags, uint64_t tmo)
{
	/* MSG_NOSIGNAL: a broken connection is -EPIPE, never SIGPIPE (plain threads too). */
	struct prt__ioargs a = { .op = PRT_OP_SEND, .fd = fd, .buf = (void *)buf, .n = n,
				 .flags = flags | MSG_NOSIGNAL };

	return run_op(&a, tmo);
}

PRT_API int prt_accept_timeout(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			       uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_ACCEPT, .fd = fd, .addr = addr, .addrlen = addrlen,
			    .flags = flags };

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	return (int)run_op(&a, tmo);
}

PRT_API int prt_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen,
				uint64_t tmo)
{
	struct prt__ioargs a = { .op = PRT_OP_CONNECT, .fd = fd, .addr = (struct sockaddr *)addr,
			    .alen = addrlen };

	if (!addr)
		return -EFAULT;
	return (int)run_op(&a, tmo);
}

/*
 * Does @fd still name the open file @mine (a dup of it) names? kcmp(2)
 * compares the files themselves; where it is not there (no CONFIG_KCMP,
 * a seccomp filter: ENOSYS, EPERM) the inode is compared, which cannot
 * tell a reopen of the same path.
 */
static bool same_open_file(int fd, int mine, const struct stat *first)
{
	int saved = prt__errno_get();
	long r = mine >= 0 ? syscall(SYS_kcmp, (long)getpid(), (long)getpid(), (long)KCMP_FILE,
				     (long)fd, (long)mine)
			   : -1;
	struct stat now;

	if (r < 0 && mine >= 0 && errno == EBADF)
		r = 1; /* @fd closed */
	if (r < 0)
		r = fstat(fd, &now) || now.st_dev != first->st_dev || now.st_ino != first->st_ino;
	prt__errno_set(saved);
	return r == 0;
}

/*
 * prt_poll_timeout on an fd whose file has no wait queue (a regular
 * file, a directory, /dev/null), in a fiber: poll(2) reports such a
 * file ready for reading and writing at once (the kernel's
 * DEFAULT_POLLMASK) and never for anything else, so a plain thread's
 * poll of, say, POLLPRI waits for its timeout. The backends cannot wait
 * on it at all (epoll_ctl: EPERM; the ring's poll: -EINVAL), and gave
 * those errors to the fiber (a review: -EPERM, -EINVAL and -ETIMEDOUT
 * for the same call in the three contexts). Here the fiber gets what
 * poll(2) gives: what is ready, or a sleep until @tmo (ns, 0: none) and
 * -ETIMEDOUT. Its wait is no request a prt_close can cancel: it holds a
 * dup of @fd and looks every PRT_IO_NO_WAITQ_RECHECK_NS whether @fd
 * still names that open file (-EBADF if not, as a closed fd's poll:
 * also when the number now names the same path reopened, or a ready
 * file, whose events are not ours; a review). prt_cancel ends it
 * (-ECANCELED), as any sleep.
 */
static int poll_no_waitq(int fd, short events, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : PRT_NEVER;
	struct stat first;
	int saved = prt__errno_get(), mine, err;

	/* No fd left for the dup (EMFILE): the inode is compared instead. */
	mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (mine < 0 && errno == EBADF) {
		prt__errno_set(saved);
		return -EBADF;
	}
	if ((err = (int)prt__sys_ret(fstat(fd, &first), saved)))
		goto out;
	for (bool looked = false;; looked = true) {
		struct pollfd p = { .fd = fd, .events = events };
		uint64_t t;

		if (looked && !same_open_file(fd, mine, &first)) {
			err = -EBADF; /* closed (and the number perhaps reused) */
			break;
		}
		if ((err = (int)prt__sys_ret(poll(&p, 1, 0), saved)) == -EINTR)
			continue;
		if (err < 0)
			break;
		if (p.revents & POLLNVAL) {
			err = -EBADF;
			break;
		}
		if ((err = p.revents))
			break;
		t = prt__now_ns();
		if (t >= deadline) {
			err = -ETIMEDOUT;
			break;
		}
		err = prt_sleep_ns(deadline - t < PRT_IO_NO_WAITQ_RECHECK_NS
					   ? deadline - t
					   : PRT_IO_NO_WAITQ_RECHECK_NS);
		if (err)
			break; /* -ECANCELED */
	}
out:
	if (mine >= 0)
		close(mine);
	prt__errno_set(saved);
	return err;
}

PRT_API int prt_poll_timeout(int fd, short events, uint64_t tmo)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__io *io;
	int r;

	if (fd < 0)
		return -EBADF;
	if (!w)
		return thread_poll_until(fd, events, tmo ? prt__deadline_in(tmo) : 0);
	if (prt__cancel_pending(w->curr))
		return -ECANCELED;
	if ((r = prt__io_enter(&w, fd, "poll", &tmo)))
		return r;
	io = &w->io;
	r = w->io.ops->poll(w, fd, events, tmo);
	prt__io_leave(io);
	if (prt__unlikely(r == PRT_IO_POLL_NO_WAITQ))
		r = poll_no_waitq(fd, events, tmo);
	prt__preempt_safe_point(); /* a ready fd: no park (sched_int.h) */
	return r;
}

PRT_API ssize_t prt_read(int fd, void *buf, size_t n)
{
	return prt_read_timeout(fd, buf, n, 0);
}

PRT_API ssize_t prt_write(int fd, const void *buf, size_t n)
{
	return prt_write_timeout(fd, buf, n, 0);
}

PRT_API ssize_t prt_readv(int fd, const struct iovec *iov, int iovcnt)
{
	return prt_readv_timeout(fd, iov, iovcnt, 0);
}

PRT_API ssize_t prt_writev(int fd, const struct iovec *iov, int iovcnt)
{
	return prt_writev_timeout(fd, iov, iovcnt, 0);
}

PRT_API ssize_t prt_recv(int fd, void *buf, size_t n, int flags)
{
	return prt_recv_timeout(fd, buf, n, flags, 0);
}

PRT_API ssize_t prt_send(int fd, const void *buf, size_t n, int flags)
{
	return prt_send_timeout(fd, buf, n, flags, 0);
}

PRT_API int prt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	return prt_accept_timeout(fd, addr, addrlen, flags, 0);
}

PRT_API int prt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
	return prt_connect_timeout(fd, addr, addrlen, 0);
}

PRT_API int prt_poll(int fd, short events)
{
	return prt_poll_timeout(fd, events, 0);
}

/* Remaining part of a relative timeout that started at @t0 (0: none; 1 ns floor). */
static uint64_t left_of(uint64_t tmo, uint64_t t0, bool *expired)
{
	uint64_t el;

	if (!tmo)
		return 0;
	el = prt__now_ns() - t0;
	*expired = el >= tmo;
	return *expired ? 0 : tmo - el;
}

/* read_all / write_all: loop until @n bytes, end of file (reads), an error or the deadline. */
static ssize_t xfer_all(int fd, char *buf, size_t n, uint64_t tmo, bool wr)
{
	uint64_t t0 = tmo ? prt__now_ns() : 0;
	size_t done = 0;

	while (done < n) {
		bool expired = false;
		uint64_t left = left_of(tmo, t0, &expired);
		ssize_t r;

		if (expired)
			return -ETIMEDOUT;
		r = wr ? prt_write_timeout(fd, buf + done, n - done, left)
		       : prt_read_timeout(fd, buf + done, n - done, left);
		if (r < 0)
			return r;
		if (r == 0 && !wr)
			break; /* end of file */
		done += (size_t)r;
	}
	return (ssize_t)done;
}

PRT_API ssize_t prt_read_all(int fd, void *buf, size_t n, uint64_t tmo)
{
	return xfer_all(fd, buf, n, tmo, false);
}

PRT_API ssize_t prt_write_all(int fd, const void *buf, size_t n, uint64_t tmo)
{
	return xfer_all(fd, (char *)(uintptr_t)buf, n, tmo, true);
}

PRT_API int prt_shutdown(int fd, int how)
{
	struct prt__worker *w = prt__cur_worker();

	if (fd < 0)
		return -EBADF;
	if (!w) {
		int saved = prt__errno_get();

		return (int)prt__sys_ret(shutdown(fd, how), saved);
	}
	return w->io.ops->shutdown(w, fd, how);
}

PRT_API int prt_close(int fd)
{
	struct prt__worker *w = prt__cur_worker();
	atomic_uint *closing;
	int r;

	if (fd < 0)
		return -EBADF;
	if (!w) {
		int saved = prt__errno_get();

		return (int)prt__sys_ret(close(fd), saved);
	}
	closing = &w->rt->io.closing[(unsigned)fd % PRT_IO_CLOSING];
	atomic_fetch_add(closing, 1); /* before cancel_fd's look (prt__io_enter) */
	cancel_fd(w, fd);
	w = prt__cur_worker();
	r = w->io.ops->close(w, fd);
	atomic_fetch_sub_explicit(closing, 1, memory_order_release);
	return r;
}
