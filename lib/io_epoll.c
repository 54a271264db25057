/* SPDX-License-Identifier: MIT */
/*
 * The epoll backend (io_backend.h), where io_uring is refused or not
 * wanted.
 *
 * The call is tried without blocking (fds are set O_NONBLOCK,
 * send/recv use MSG_DONTWAIT); if it would block, the request waits in
 * a bucket of the worker's table for its fd, which is armed
 * EPOLLONESHOT in the worker's epoll for the union of the events its
 * waiters want; when it fires every waiter of that fd retries. The idle
 * worker waits in epoll_pwait2; a busy one polls every 64 points while
 * requests wait (watch.polled counts them). Timeouts use the worker's
 * timer heap (a local timer: io_timer_fire). prt_close's command takes
 * every waiter of the fd off the table with -ECANCELED; prt_cancel's
 * takes the waiters of the fibers it cancelled (the fd stays armed: if
 * it fires with nobody waiting, nothing happens).
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "io_backend.h"
#include "runtime_int.h"
#include "wait.h"
#include "worker.h"

#define EV_TAG UINT64_MAX /* epoll data of the worker's eventfd */

/* ---- set-up ----------------------------------------------------------------- */

/* Nothing to probe: epoll is always there. */
static int ep_probe(struct prt__rtio *rio, const char **what)
{
	(void)rio;
	(void)what;
	return 0;
}

/* The worker's epoll, watching its eventfd. */
static int ep_init(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV_TAG };
	int err;

	io->epfd = prt__io_fd_fault() ? -1 : epoll_create1(EPOLL_CLOEXEC);
	if (io->epfd < 0)
		return -errno;
	if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->evfd, &ev)) {
		err = -errno;
		close(io->epfd);
		return err;
	}
	return 0;
}

/* Nothing to do on the worker thread. */
static void ep_thread_start(struct prt__worker *w)
{
	(void)w;
}

/* Nothing in flight outlives its fiber (file calls run on the offload pool). */
static void ep_thread_stop(struct prt__worker *w)
{
	(void)w;
}

/* The epoll (the waiters are gone: the runtime ends when every fiber has). */
static void ep_fini(struct prt__worker *w)
{
	close(w->io.epfd);
}

/* ---- the waiters' table -------------------------------------------------------- */

/* The bucket of @fd in a worker's table. */
static unsigned bucket_of(int fd)
{
	return (unsigned)fd % PRT_IO_BUCKETS;
}

/*
 * The fd has no registration on @w, yet waiters of it other than the
 * newest (the caller's, at the head of its bucket) wait here: their file
 * was closed behind the runtime's back (close(2) from a plain thread,
 * where prt_close is close(2), or of a dup, or by another runtime),
 * which dropped the registration, and the number now names another
 * file. Left waiting, the next readiness of the new file woke them and
 * they read its data (a review, 5/5). End them with -EBADF, as a call
 * made after the close: their file is gone. Those on other workers end
 * so when the number is armed there.
 */
static int ep_release(struct prt__worker *w, int fd, int res);

static void ep_end_stale(struct prt__worker *w, int fd)
{
	struct prt__ioreq **head = &w->io.bucket[bucket_of(fd)], **pp = head, *newest;

	while (*pp && (*pp)->fd != fd)
		pp = &(*pp)->next;
	if (!(newest = *pp))
		return;
	*pp = newest->next; /* aside while the others end */
	ep_release(w, fd, -EBADF);
	newest->next = *head;
	*head = newest;
}

/* Arm @fd EPOLLONESHOT for every event its waiters on @w want. */
static int ep_arm(struct prt__worker *w, int fd)
{
	struct epoll_event ev = { .events = EPOLLONESHOT | EPOLLRDHUP, .data.u64 = (uint64_t)fd };

	int saved = prt__errno_get(), r;

	for (struct prt__ioreq *q = w->io.bucket[bucket_of(fd)]; q; q = q->next)
		if (q->fd == fd)
			ev.events |= q->events;
	r = (int)prt__sys_ret(epoll_ctl(w->io.epfd, EPOLL_CTL_MOD, fd, &ev), saved);
	if (r == -ENOENT) {
		ep_end_stale(w, fd);
		r = (int)prt__sys_ret(epoll_ctl(w->io.epfd, EPOLL_CTL_ADD, fd, &ev), saved);
	}
	return r;
}

/* Take every waiter of @fd off @w's table, ending each with @res (0: retry). */
static int ep_release(struct prt__worker *w, int fd, int res)
{
	struct prt__ioreq **pp = &w->io.bucket[bucket_of(fd)];
	int woken = 0;

	while (*pp) {
		struct prt__ioreq *r = *pp;

		if (r->fd != fd) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		w->io.watch.polled--;
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
		r->res = res;
		r->done = true;
		prt__wait_wake(&r->wait);
		woken++;
	}
	return woken;
}

/* Take @r alone off @w's table, if it is still there. */
static bool ep_unlink(struct prt__worker *w, struct prt__ioreq *r)
{
	struct prt__ioreq **pp = &w->io.bucket[bucket_of(r->fd)];

	while (*pp && *pp != r)
		pp = &(*pp)->next;
	if (!*pp)
		return false;
	*pp = r->next;
	w->io.watch.polled--;
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
	return true;
}

/*
 * Wait in @w's epoll for at most @ts (or @timeout_ms without @ts: -1 no
 * limit, 0 a poll); every fd that fired has its waiters retry. Returns
 * fibers woken.
 */
static int reap_epoll(struct prt__worker *w, int timeout_ms, const struct timespec *ts)
{
	struct epoll_event ev[64];
	int n, woken = 0, saved = prt__errno_get(); /* may be a fiber's (an I/O point) */

	if (ts && !w->io.no_pwait2) {
		n = (int)prt__sys_ret(epoll_pwait2(w->io.epfd, ev, 64, ts, NULL), saved);
		if (n == -ENOSYS) {
			/* Before Linux 5.11 (or under valgrind 3.19): milliseconds it is. */
			w->io.no_pwait2 = true;
			return reap_epoll(w, 0, ts);
		}
	} else {
		if (ts) /* rounded up: never wake before the deadline */
			timeout_ms = ts->tv_sec >= INT_MAX / 1000 - 1 ? INT_MAX :
				     (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000);
		n = (int)prt__sys_ret(epoll_wait(w->io.epfd, ev, 64, timeout_ms), saved);
	}
	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 == EV_TAG) {
			uint64_t v;

			/* -EAGAIN: another read drained it */
			prt__sys_ret(read(w->io.evfd, &v, sizeof(v)), saved);
			continue;
		}
		woken += ep_release(w, (int)ev[i].data.u64, 0);
	}
	return woken;
}

/* prt_close's commands: every waiter of the fd ends with -ECANCELED, at once. */
static int ep_cancel(struct prt__worker *w, struct prt__iocmd *c)
{
	int woken = 0;

	while (c) {
		struct prt__iocmd *next = c->next; /* @c is gone once acked */

		int saved = prt__errno_get();

		woken += ep_release(w, c->fd, -ECANCELED);
		prt__sys_ret(epoll_ctl(w->io.epfd, EPOLL_CTL_DEL, c->fd, NULL), saved);
		prt__io_cmd_ack(c);
		c = next;
	}
	return woken;
}

/* prt_cancel's command: every waiter whose fiber has a cancel pending ends with -ECANCELED. */
static int ep_cancel_fibers(struct prt__worker *w)
{
	int woken = 0;

	for (unsigned b = 0; b < PRT_IO_BUCKETS && w->io.watch.polled; b++) {
		struct prt__ioreq **pp = &w->io.bucket[b];

		while (*pp) {
			struct prt__ioreq *r = *pp;

			/* seq_cst: after our clear of cancel_posted (io.c, take_cancel_cmd) */
			if (!atomic_load_explicit(&r->wait.fiber->cancel, memory_order_seq_cst)) {
				pp = &r->next;
				continue;
			}
			*pp = r->next;
			w->io.watch.polled--;
			PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
			r->res = -ECANCELED;
			r->done = true;
			prt__wait_wake(&r->wait); /* @r may be gone after this */
			woken++;
		}
	}
	return woken;
}

/* ---- scheduling points, idle wait, kicks ------------------------------------------ */

/* A poll of the epoll, if requests wait. */
static int ep_service(struct prt__worker *w, bool force_submit)
{
	(void)force_submit; /* nothing is batched */
	w->io.watch.tick = 0;
	return w->io.watch.polled ? reap_epoll(w, 0, NULL) : 0;
}

/* The idle worker's wait in its epoll, at most @tmo ns (0: no limit). */
static void ep_wait_idle(struct prt__worker *w, uint64_t tmo)
{
	struct timespec ts;

	if (!tmo) {
		reap_epoll(w, -1, NULL);
		return;
	}
	ts.tv_sec = (time_t)(tmo / 1000000000u);
	ts.tv_nsec = (long)(tmo % 1000000000u);
	reap_epoll(w, 0, &ts);
}

/* No wake but the eventfd. */
static bool ep_kick(struct prt__worker *me, struct prt__worker *v)
{
	(void)me;
	(void)v;
	return false;
}

/* ---- a fiber's wait ------------------------------------------------------------------ */

/* Make @fd O_NONBLOCK (as the epoll backend needs; the README says so): 0 or -errno. */
static int set_nonblock(int fd)
{
	int saved = prt__errno_get(), fl = (int)prt__sys_ret(fcntl(fd, F_GETFL), saved);

	if (fl < 0)
		return fl;
	if (!(fl & O_NONBLOCK))
		return (int)prt__sys_ret(fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0, saved);
	return 0;
}

/*
 * The timer of an epoll wait (prt__timer_fn, local to the worker whose
 * heap held it, @ctx, rq lock held): end the wait if it still waits,
 * and queue the fiber there.
 */
static void io_timer_fire(struct prt__timer *t, void *ctx)
{
	struct prt__fiber *f = prt__container_of(t, struct prt__fiber, timer);
	struct prt__ioreq *r = f->ioreq;

	if (!r || r->done || !ep_unlink(ctx, r))
		return;
	r->res = -ETIMEDOUT;
	r->done = true;
	prt__wait_wake_here(&r->wait, ctx);
}

/* Wait on @w until @fd may be ready for @events; 0 (retry), -ETIMEDOUT, -ECANCELED. */
static int ep_wait(struct prt__worker *w, int fd, uint32_t events, uint64_t deadline)
{
	struct prt__fiber *self = w->curr;
	struct prt__ioreq r = { .wait.fiber = self, .fd = fd, .events = events, .cancellable = true };
	unsigned b = bucket_of(fd);
	int err;

	r.next = w->io.bucket[b];
	w->io.bucket[b] = &r;
	w->io.watch.polled++;
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
	if ((err = ep_arm(w, fd))) {
		w->io.bucket[b] = r.next;
		w->io.watch.polled--;
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
		return err;
	}
	if (deadline) {
		self->ioreq = &r;
		if ((err = prt__timer_arm(w, deadline, io_timer_fire, true))) {
			/*
			 * Only our request: ep_release would also "wake" this
			 * fiber, which is running, into a run queue. The fd
			 * stays armed; if it fires, its other waiters retry.
			 */
			self->ioreq = NULL;
			ep_unlink(w, &r);
			return err;
		}
	}
	err = prt__io_park_req(w, &r);
	if (deadline) {
		prt__timer_cancel(self);
		self->ioreq = NULL;
	}
	return err;
}

/* ---- the calls ------------------------------------------------------------------------ */

/* Wait before a full AF_UNIX backlog's retry (prt__connect_retry_at): 0, -ETIMEDOUT, -ECANCELED. */
static int connect_backoff(uint64_t deadline, uint64_t *ns)
{
	uint64_t until = prt__connect_retry_at(deadline, ns);

	return until ? prt_sleep_until(until) : -ETIMEDOUT;
}

/*
 * The call without blocking; while it would block, wait for its fd (a
 * connect: its end, prt__connect_end). A recv with MSG_WAITALL on a
 * stream socket goes on until it has all (prt__waitall_short), and
 * returns what came before an error, a timeout, a cancel or the end of
 * the stream, as recv(2) and io_uring do.
 */
static long ep_op(struct prt__worker *w, const struct prt__ioargs *a, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0, backoff = PRT_CONNECT_BACKOFF_NS;
	/* The caller asked not to wait: -EAGAIN (io.h), as on io_uring and plain threads. */
	bool dontwait = (a->op == PRT_OP_RECV || a->op == PRT_OP_SEND) && (a->flags & MSG_DONTWAIT);
	bool connecting = false;
	struct prt__ioargs rest = *a;
	long n, done = 0;
	int err;

	if (a->op != PRT_OP_RECV && a->op != PRT_OP_SEND && (err = set_nonblock(a->fd)))
		return err;
	for (;;) {
		if (connecting) {
			if ((n = prt__connect_end(a)) <= 0)
				return n;
		} else {
			n = prt__io_sys(&rest, true);
			if (prt__waitall_short(&rest, n)) {
				done += n;
				rest.buf = (char *)rest.buf + n;
				rest.n -= (size_t)n;
				continue; /* more may be there already */
			} else if (n >= 0 || dontwait ||
				   (n != -EAGAIN && n != -EWOULDBLOCK && n != -EINPROGRESS)) {
				break;
			} else if (a->op == PRT_OP_CONNECT && n == -EAGAIN) {
				/*
				 * Not started (a full AF_UNIX backlog; the socket
				 * then polls writable and SO_ERROR says 0: a
				 * review's connect "succeeded" unconnected).
				 */
				if (!prt__io_is_unix(a->fd))
					return n;
				if ((err = connect_backoff(deadline, &backoff)))
					return err;
				w = prt__cur_worker();
				continue;
			} else {
				connecting = a->op == PRT_OP_CONNECT;
			}
		}
		n = ep_wait(w, a->fd, prt__io_is_write(a->op) ? EPOLLOUT : EPOLLIN, deadline);
		if (n == -ETIMEDOUT && connecting) {
			/*
			 * Looked at once at least, whatever the deadline (io.h): a
			 * connection made at once is made (a review: 1 ns was
			 * -ETIMEDOUT here, 0 on io_uring).
			 */
			long c = prt__connect_end(a);

			if (c <= 0)
				return c;
		}
		if (n)
			break;
		w = prt__cur_worker();
	}
	return done && n <= 0 ? done : n < 0 ? n : done + n;
}

_Static_assert(EPOLLIN == POLLIN && EPOLLPRI == POLLPRI && EPOLLOUT == POLLOUT &&
		       EPOLLRDNORM == POLLRDNORM && EPOLLRDBAND == POLLRDBAND &&
		       EPOLLWRNORM == POLLWRNORM && EPOLLWRBAND == POLLWRBAND && EPOLLMSG == POLLMSG &&
		       EPOLLRDHUP == POLLRDHUP,
	       "epoll's event bits are poll's");

/* poll(2) without blocking; while nothing is ready, wait for the fd (any event poll(2) takes). */
static int ep_poll(struct prt__worker *w, int fd, short events, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		uint32_t ev = 0;
		int err = prt__errno_get();

		/*
		 * -EINTR: a signal (the preemption tick) was pending; poll(2)
		 * fails then even without waiting, and is never restarted
		 * (signal(7)). A fiber's call does not see it (io.h): again.
		 */
		if ((err = (int)prt__sys_ret(poll(&p, 1, 0), err)) == -EINTR)
			continue;
		if (err < 0)
			return err;
		if (p.revents & POLLNVAL)
			return -EBADF; /* as io_uring's poll: io.h */
		if (p.revents)
			return p.revents;
		/* Every poll(2) event epoll knows, same bits (static_asserts above). */
		ev = (unsigned short)events & (POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND |
					       POLLWRNORM | POLLWRBAND | POLLMSG | POLLRDHUP);
		/* -EPERM: the file cannot be in an epoll set (no wait queue; epoll_ctl(2)). */
		if ((err = ep_wait(w, fd, ev, deadline)))
			return err == -EPERM ? PRT_IO_POLL_NO_WAITQ : err;
		w = prt__cur_worker();
	}
}

/* shutdown(2) never blocks. */
static int ep_shutdown(struct prt__worker *w, int fd, int how)
{
	int saved = prt__errno_get();

	(void)w;
	return (int)prt__sys_ret(shutdown(fd, how), saved);
}

/* close(2); the fd's waiters were cancelled. */
static int ep_close(struct prt__worker *w, int fd)
{
	int saved = prt__errno_get();

	(void)w;
	return (int)prt__sys_ret(close(fd), saved);
}

/*
 * The calls as the backend's ops, each counted in io_ops where it ends
 * (the worker it ended on: it may have moved while it waited), as
 * io_uring counts its completions (a review: epoll's stayed 0).
 */
static void count_op(void)
{
	prt__stat_inc(&prt__cur_worker()->stats.io_ops, 1);
}

static long ep_op_counted(struct prt__worker *w, const struct prt__ioargs *a, uint64_t tmo)
{
	long r = ep_op(w, a, tmo);

	count_op();
	return r;
}

static int ep_poll_counted(struct prt__worker *w, int fd, short events, uint64_t tmo)
{
	int r = ep_poll(w, fd, events, tmo);

	count_op();
	return r;
}

static int ep_shutdown_counted(struct prt__worker *w, int fd, int how)
{
	int r = ep_shutdown(w, fd, how);

	count_op();
	return r;
}

static int ep_close_counted(struct prt__worker *w, int fd)
{
	int r = ep_close(w, fd);

	count_op();
	return r;
}

const struct prt__io_backend prt__io_epoll = {
	.id = PRT_IO_EPOLL,
	.multishot_recv = false,
	.probe = ep_probe,
	.init = ep_init,
	.thread_start = ep_thread_start,
	.fini = ep_fini,
	.service = ep_service,
	.wait = ep_wait_idle,
	.kick = ep_kick,
	.cancel = ep_cancel,
	.cancel_fibers = ep_cancel_fibers,
	.op = ep_op_counted,
	.poll = ep_poll_counted,
	.shutdown = ep_shutdown_counted,
	.close = ep_close_counted,
	.fop = NULL, /* regular files are not pollable: file calls go to the offload pool */
	.thread_stop = ep_thread_stop,
};
