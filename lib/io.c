/* SPDX-License-Identifier: MIT */
/*
 * Fiber I/O: one io_uring per worker, or epoll where io_uring is refused.
 *
 * io_uring. A fiber prepares its SQE in the ring of the worker it runs
 * on and parks BLOCKED; nothing is submitted yet. At each scheduling
 * point the worker submits what is queued if it is about to run out of
 * work, the batch is large, or its oldest entry is old (so a busy worker
 * still makes one io_uring_enter per batch, not per op), and reaps the
 * CQ, a pair of loads when it is empty. Each CQE names its request (on
 * the parked fiber's stack) and wakes its fiber. A per-call timeout is a
 * linked IORING_OP_LINK_TIMEOUT; the fiber resumes only after both CQEs
 * (op and timeout) are reaped, so nothing completes into a dead stack.
 * Only the worker that queued a request ever touches it again: reaping,
 * cancels and timers all run on that worker, after the fiber parked.
 *
 * An idle worker waits in io_uring_submit_and_wait_timeout, with its
 * next timer as the timeout. It is woken (prt__io_kick) by a CQE: a
 * worker of the runtime sends IORING_OP_MSG_RING from its own ring (if
 * that fails, its CQE says so and the eventfd is written instead), any
 * other thread writes the worker's eventfd, on which a read is kept
 * pending.
 *
 * epoll. The call is tried without blocking (fds are set O_NONBLOCK,
 * send/recv use MSG_DONTWAIT); if it would block, the request waits in
 * a bucket of the worker's table for its fd, which is armed
 * EPOLLONESHOT in the worker's epoll for the union of the events its
 * waiters want; when it fires every waiter of that fd retries. The idle
 * worker waits in epoll_pwait2; a busy one polls every 64 points.
 * Timeouts use the worker's timer heap (a local timer: io_timer_fire).
 *
 * prt_close cancels the requests other fibers have on the fd: it posts
 * a command to each worker with requests in flight (IORING_OP_ASYNC_CANCEL
 * with IORING_ASYNC_CANCEL_FD | _ALL there, or the epoll bucket), waits
 * until each is done, then closes.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#if PRT_USE_VALGRIND
#include <valgrind/valgrind.h>
#endif
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc.h"
#include "fault.h"
#include "runtime_int.h"

/* user_data tags; requests and commands are pointers (8-aligned). */
#define TAG_EVFD ((uint64_t)1)
#define TAG_WAKE ((uint64_t)2)
#define TAG_KICK 3u    /* low bits of the worker a MSG_RING kick was for (its own CQE) */
#define TAG_CMD 4u     /* low bits of a command pointer */
#define TAG_LINKTMO 5u /* low bits of a request whose link timeout completed */
#define TAG_MASK 7u
#define EV_TAG UINT64_MAX

/* Submit at a scheduling point once this many SQEs wait, or the oldest is this old. */
#define PRT_IO_BATCH 32u
#define PRT_IO_SUBMIT_NS 20000u

static const int needed_ops[] = {
	IORING_OP_READ,  IORING_OP_WRITE,    IORING_OP_READV,       IORING_OP_WRITEV,
	IORING_OP_RECV,  IORING_OP_SEND,     IORING_OP_ACCEPT,      IORING_OP_CONNECT,
	IORING_OP_CLOSE, IORING_OP_SHUTDOWN, IORING_OP_POLL_ADD,    IORING_OP_LINK_TIMEOUT,
	IORING_OP_ASYNC_CANCEL,
};

/* ---- runtime set-up: choose the backend ---------------------------------- */

/* io_uring_queue_init, or the failure a test build injects (fault.h). */
static int ring_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	int err = prt__fault(PRT_FAULT_URING);

	return err ? -err : io_uring_queue_init(entries, ring, flags);
}

/* Test builds: true, with errno set, if the next fd-making call must fail (fault.h). */
static bool fd_fault(void)
{
	int err = prt__fault(PRT_FAULT_FD);

	if (err)
		errno = err;
	return err != 0;
}

/* Can this process use io_uring with every op we need? 0, or why not (-errno). */
static int probe_uring(struct prt__rtio *rio, const char **what)
{
	struct io_uring r;
	struct io_uring_probe *p;
	int err = ring_init(4, &r, 0);

	if (err) {
		*what = "io_uring_setup failed";
		return err;
	}
	if (!(r.features & IORING_FEAT_EXT_ARG)) {
		*what = "kernel too old (no IORING_FEAT_EXT_ARG, Linux < 5.11)";
		err = -ENOSYS;
	}
	p = err ? NULL : io_uring_get_probe_ring(&r);
	if (!err && !p) {
		*what = "kernel too old (no IORING_REGISTER_PROBE)";
		err = -ENOSYS;
	}
	for (size_t i = 0; p && i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++) {
		if (!io_uring_opcode_supported(p, needed_ops[i])) {
			*what = "kernel too old (an io_uring op proxyrt needs is missing)";
			err = -ENOSYS;
		}
	}
	rio->msg_ring = p && io_uring_opcode_supported(p, IORING_OP_MSG_RING);
	if (p)
		io_uring_free_probe(p);
	io_uring_queue_exit(&r);
	return err;
}

int prt__io_rt_init(struct prt_runtime *rt, const prt_runtime_config_t *cfg)
{
	struct prt__rtio *rio = &rt->io;
	const char *env = getenv("PRT_IO_BACKEND"), *what = NULL;
	bool valgrind = false;
	int want = cfg->io_backend, err;

	if (want < PRT_IO_AUTO || want > PRT_IO_EPOLL)
		return -EINVAL;
	/* The environment may force epoll where the program did not choose (tests run both ways). */
	if (want == PRT_IO_AUTO && env && !strcmp(env, "epoll"))
		want = PRT_IO_EPOLL;
#if PRT_USE_VALGRIND
	/*
	 * Valgrind (3.19) holds its one big lock across io_uring_enter: a
	 * worker waiting in its ring would stop every other thread. epoll
	 * waits release it.
	 */
	if (want == PRT_IO_AUTO && RUNNING_ON_VALGRIND) {
		want = PRT_IO_EPOLL;
		valgrind = true;
	}
#endif
	rio->entries = cfg->io_entries ? cfg->io_entries : PRT_IO_ENTRIES_DEFAULT;
	if (rio->entries > 32768)
		return -EINVAL;
	rio->offload_max = cfg->offload_threads ? cfg->offload_threads : PRT_OFFLOAD_THREADS_DEFAULT;
	if (want == PRT_IO_EPOLL) {
		rio->backend = PRT_IO_EPOLL;
		snprintf(rio->notice, sizeof(rio->notice),
			 "proxyrt: I/O on epoll %s (fds are made O_NONBLOCK)",
			 cfg->io_backend != PRT_IO_AUTO ? "as configured" :
			 valgrind ? "under valgrind (io_uring waits would block it)" :
						    "as configured by PRT_IO_BACKEND");
		return 0;
	}
	err = probe_uring(rio, &what);
	if (!err) {
		struct io_uring r;
		/*
		 * Completions' task work runs only when the worker enters the
		 * kernel for events (batched, no IPI into a busy worker); the
		 * ring is enabled by its worker thread, its single issuer.
		 */
		unsigned f = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			     IORING_SETUP_TASKRUN_FLAG;

		if (ring_init(4, &r, f) == 0) {
			io_uring_queue_exit(&r);
			rio->setup_flags = f | IORING_SETUP_R_DISABLED;
		}
		rio->backend = PRT_IO_URING;
		return 0;
	}
	if (want == PRT_IO_URING)
		return err;
	rio->backend = PRT_IO_EPOLL;
	snprintf(rio->notice, sizeof(rio->notice),
		 "proxyrt: io_uring unavailable (%s: %s; see kernel.io_uring_disabled and "
		 "seccomp), I/O runs on epoll (fds are made O_NONBLOCK)",
		 what, strerror(-err));
	return 0;
}

/* ---- per-worker set-up ------------------------------------------------------ */

static void arm_evfd(struct prt__worker *w);

int prt__io_init(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	struct prt__rtio *rio = &w->rt->io;
	int err;

	io->backend = rio->backend;
	io->epfd = -1;
	io->evfd = fd_fault() ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (io->evfd < 0)
		return -errno;
	if (io->backend == PRT_IO_URING) {
		err = ring_init(rio->entries, &io->ring, rio->setup_flags);
		if (err)
			goto fail;
		io->msg_ring = rio->msg_ring;
		arm_evfd(w);
		return 0;
	}
	io->epfd = fd_fault() ? -1 : epoll_create1(EPOLL_CLOEXEC);
	if (io->epfd < 0) {
		err = -errno;
		goto fail;
	}
	{
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV_TAG };

		if (epoll_ctl(io->epfd, EPOLL_CTL_ADD, io->evfd, &ev)) {
			err = -errno;
			close(io->epfd);
			goto fail;
		}
	}
	return 0;
fail:
	close(io->evfd);
	io->evfd = -1;
	return err;
}

void prt__io_thread_start(struct prt__worker *w)
{
	if (w->io.backend == PRT_IO_URING && (w->rt->io.setup_flags & IORING_SETUP_R_DISABLED))
		/* We become its submitter task. (liburing 2.3 declares io_uring_enable_rings but does not export it.) */
		syscall(__NR_io_uring_register, w->io.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
}

void prt__io_fini(struct prt__worker *w)
{
	struct prt__io *io = &w->io;

	if (io->evfd < 0)
		return;
	if (io->backend == PRT_IO_URING) {
		io_uring_queue_exit(&io->ring);
		prt__stream_bufs_fini(w);
	} else {
		close(io->epfd);
	}
	close(io->evfd);
	io->evfd = -1;
}

/* ---- io_uring submission and completion -------------------------------------- */

static void submit(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	int n;

	if (!io->unsubmitted && !io_uring_sq_ready(&io->ring))
		return;
	do {
		n = io_uring_submit(&io->ring);
	} while (n == -EINTR);
	/* -EBUSY/-EAGAIN: the CQ is full; entries stay queued, reaping frees room. */
	if (n >= 0) {
		io->unsubmitted = 0;
		prt__stat_inc(&w->stats.io_submits, 1);
	}
}

static int reap_uring(struct prt__worker *w);

/*
 * An SQE of @w's ring, with room for @n (the caller takes the others
 * with io_uring_get_sqe). A full queue is submitted; if the kernel
 * refuses for a full CQ, reaping makes room.
 */
static struct io_uring_sqe *get_sqe(struct prt__worker *w, unsigned n)
{
	struct io_uring *ring = &w->io.ring;

	while (io_uring_sq_space_left(ring) < n) {
		submit(w);
		if (io_uring_sq_space_left(ring) < n)
			reap_uring(w);
	}
	if (!w->io.unsubmitted)
		w->io.first_unsubmitted_ns = prt__now_ns();
	w->io.unsubmitted += n;
	return io_uring_get_sqe(ring);
}

static void arm_evfd(struct prt__worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w, 1);

	io_uring_prep_read(sqe, w->io.evfd, &w->io.evbuf, sizeof(w->io.evbuf), 0);
	io_uring_sqe_set_data64(sqe, TAG_EVFD);
	w->io.ev_armed = true;
}

static void req_finish(struct prt__worker *w, struct prt__ioreq *r)
{
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
	prt__stat_inc(&w->stats.io_ops, 1);
	r->done = true;
	prt__wake(r->fiber);
}

static void cmd_ack(struct prt__iocmd *c)
{
	struct prt__waitone *done = c->done;

	/* The closer's stack holds @c: read everything before the last ack. */
	if (atomic_fetch_sub(c->left, 1) == 1)
		prt__waitone_done(done);
}

static void kick_evfd(struct prt__worker *v)
{
	uint64_t one = 1;

	if (write(v->io.evfd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated, so a wake is pending anyway */
	}
}

static int reap_uring(struct prt__worker *w)
{
	struct io_uring *ring = &w->io.ring;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int woken = 0;

	io_uring_for_each_cqe(ring, head, cqe) {
		uint64_t ud = cqe->user_data;
		struct prt__ioreq *r = (struct prt__ioreq *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);

		n++;
		if (ud == TAG_EVFD) {
			w->io.ev_armed = false;
		} else if (ud == TAG_WAKE) {
			/* a kick */
		} else if ((ud & TAG_MASK) == TAG_KICK) {
			/* Only on failure (CQE_SKIP_SUCCESS): kick that worker the other way. */
			kick_evfd((struct prt__worker *)r);
		} else if ((ud & TAG_MASK) == TAG_CMD) {
			PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
			cmd_ack((struct prt__iocmd *)r);
		} else if ((ud & TAG_MASK) == PRT_IO_TAG_STREAM) {
			woken += prt__stream_cqe(w, (struct prt_stream *)r, cqe->res, cqe->flags);
		} else if ((ud & TAG_MASK) == PRT_IO_TAG_STREAM_END) {
			woken += prt__stream_end_cqe(w, (struct prt_stream *)r, cqe->res);
		} else if ((ud & TAG_MASK) == TAG_LINKTMO) {
			r->timed_out |= cqe->res == -ETIME;
			if (--r->pending == 0) {
				req_finish(w, r);
				woken++;
			}
		} else {
			r->res = cqe->res;
			if (--r->pending == 0) {
				req_finish(w, r);
				woken++;
			}
		}
	}
	io_uring_cq_advance(ring, n);
	return woken;
}

/* ---- epoll waiting ------------------------------------------------------------ */

static unsigned bucket_of(int fd)
{
	return (unsigned)fd % PRT_IO_BUCKETS;
}

/* Arm @fd EPOLLONESHOT for every event its waiters on @w want. */
static int ep_arm(struct prt__worker *w, int fd)
{
	struct epoll_event ev = { .events = EPOLLONESHOT | EPOLLRDHUP, .data.u64 = (uint64_t)fd };

	for (struct prt__ioreq *r = w->io.bucket[bucket_of(fd)]; r; r = r->next)
		if (r->fd == fd)
			ev.events |= r->events;
	if (epoll_ctl(w->io.epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return 0;
	if (errno == ENOENT && epoll_ctl(w->io.epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return 0;
	return -errno;
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
		w->io.nwait--;
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
		r->res = res;
		r->done = true;
		prt__wake(r->fiber);
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
	w->io.nwait--;
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
	return true;
}

static int reap_epoll(struct prt__worker *w, int timeout_ms, const struct timespec *ts)
{
	struct epoll_event ev[64];
	int n, woken = 0;

	if (ts && !w->io.no_pwait2) {
		n = epoll_pwait2(w->io.epfd, ev, 64, ts, NULL);
		if (n < 0 && errno == ENOSYS) {
			/* Before Linux 5.11 (or under valgrind 3.19): milliseconds it is. */
			w->io.no_pwait2 = true;
			return reap_epoll(w, 0, ts);
		}
	} else {
		if (ts) /* rounded up: never wake before the deadline */
			timeout_ms = ts->tv_sec >= INT_MAX / 1000 - 1 ? INT_MAX :
				     (int)(ts->tv_sec * 1000 + (ts->tv_nsec + 999999) / 1000000);
		n = epoll_wait(w->io.epfd, ev, 64, timeout_ms);
	}
	for (int i = 0; i < n; i++) {
		if (ev[i].data.u64 == EV_TAG) {
			uint64_t v;

			if (read(w->io.evfd, &v, sizeof(v)) < 0) {
				/* EAGAIN: another read drained it */
			}
			continue;
		}
		woken += ep_release(w, (int)ev[i].data.u64, 0);
	}
	return woken;
}

/* ---- commands from other threads (prt_close) ----------------------------------- */

static int run_cmds(struct prt__worker *w)
{
	struct prt__iocmd *c = atomic_exchange(&w->io.cmds, NULL);
	int woken = 0;

	while (c) {
		struct prt__iocmd *next = c->next;

		if (w->io.backend == PRT_IO_URING) {
			struct io_uring_sqe *sqe = get_sqe(w, 1);

			if (c->ud)
				io_uring_prep_cancel64(sqe, c->ud, 0);
			else
				io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_CMD);
			PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
		} else {
			woken += ep_release(w, c->fd, -ECANCELED);
			epoll_ctl(w->io.epfd, EPOLL_CTL_DEL, c->fd, NULL);
			cmd_ack(c);
		}
		c = next;
	}
	if (w->io.backend == PRT_IO_URING)
		submit(w); /* the closer waits: do not batch */
	return woken;
}

/* ---- scheduling points, idle wait, kicks ----------------------------------------- */

int prt__io_service(struct prt__worker *w, bool force_submit)
{
	struct prt__io *io = &w->io;
	int woken = 0;

	if (io->evfd < 0)
		return 0;
	if (atomic_load_explicit(&io->cmds, memory_order_relaxed))
		woken += run_cmds(w);
	if (io->backend == PRT_IO_EPOLL) {
		io->tick = 0;
		return woken + (io->nwait ? reap_epoll(w, 0, NULL) : 0);
	}
	/*
	 * Submit, and with deferred task work collect completions, when the
	 * worker runs dry, the batch is large or old, or every 64 points.
	 */
	if (force_submit || !atomic_load_explicit(&w->rq.nr, memory_order_relaxed) ||
	    (io->unsubmitted && (io->unsubmitted >= PRT_IO_BATCH ||
				 prt__now_ns() - io->first_unsubmitted_ns >= PRT_IO_SUBMIT_NS)) ||
	    (++io->tick & 63) == 0) {
		if (IO_URING_READ_ONCE(*io->ring.sq.kflags) & IORING_SQ_TASKRUN) {
			io_uring_submit_and_get_events(&io->ring);
			io->unsubmitted = 0;
		} else if (io->unsubmitted) {
			submit(w);
		}
	}
	if (io_uring_cq_ready(&io->ring))
		woken += reap_uring(w);
	return woken;
}

void prt__io_wait(struct prt__worker *w, uint64_t deadline)
{
	struct prt__io *io = &w->io;
	uint64_t now;

	if (deadline == PRT_NEVER)
		deadline = 0; /* a timer that never fires */
	now = deadline ? prt__now_ns() : 0;
	if (deadline && deadline <= now)
		return;
	if (io->backend == PRT_IO_EPOLL) {
		struct timespec ts;

		if (!deadline) {
			reap_epoll(w, -1, NULL);
			return;
		}
		ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
		ts.tv_nsec = (long)((deadline - now) % 1000000000u);
		reap_epoll(w, 0, &ts);
		return;
	}
	if (!io->ev_armed)
		arm_evfd(w);
	if (io_uring_cq_ready(&io->ring))
		return; /* something to reap first */
	if (deadline) {
		struct __kernel_timespec ts = {
			.tv_sec = (long long)((deadline - now) / 1000000000u),
			.tv_nsec = (long long)((deadline - now) % 1000000000u),
		};
		struct io_uring_cqe *cqe;

		io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, &ts, NULL);
	} else {
		io_uring_submit_and_wait(&io->ring, 1);
	}
	io->unsubmitted = 0;
}

/*
 * A worker kicks a worker of its runtime through its own ring (no
 * syscall on the target's eventfd); a failed MSG_RING posts a CQE here
 * naming @v, and reap_uring kicks @v by its eventfd instead. Never with
 * a full SQ: taking an SQE would reap, and we may be reaping already
 * (a CQE woke a fiber), which would handle the same CQEs twice.
 */
void prt__io_kick(struct prt__worker *v)
{
	struct prt__worker *me = prt__cur_worker();

	if (v->io.evfd < 0)
		return;
	if (me && me != v && me->rt == v->rt && me->io.msg_ring && v->io.backend == PRT_IO_URING &&
	    me->io.evfd >= 0 && io_uring_sq_space_left(&me->io.ring) > 0) {
		struct io_uring_sqe *sqe = get_sqe(me, 1);
		int fd = prt__fault(PRT_FAULT_KICK) ? -1 : v->io.ring.ring_fd;

		io_uring_prep_msg_ring(sqe, fd, 0, TAG_WAKE, 0);
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)v | TAG_KICK);
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		submit(me);
		return;
	}
	kick_evfd(v);
}

/* ---- parking a fiber ------------------------------------------------------------ */

void prt__waitone_wait(struct prt__worker *w, struct prt__waitone *x)
{
	struct prt__fiber *self = w->curr;
	int z = 0;

	/* Under self->lock, as prt_park: an attach never sees us asleep while queued. */
	prt__spin_lock(&self->lock);
	if (!atomic_compare_exchange_strong(&x->st, &z, 1)) {
		prt__spin_unlock(&self->lock);
		return; /* already done */
	}
	atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
	prt__spin_unlock(&self->lock);
	prt__schedule_blocked(w);
}

void prt__waitone_done(struct prt__waitone *x)
{
	struct prt__fiber *f = x->f;

	/* After the exchange the waiter may go on and free @x: @f was read first. */
	if (atomic_exchange(&x->st, 2) == 1)
		prt__wake(f);
}

/* Park until the worker that holds @r ends it (counted in its inflight). */
static int park_req(struct prt__worker *w, struct prt__ioreq *r)
{
	struct prt__fiber *self = w->curr;

	while (!r->done) {
		/* Only this worker ends @r, at a later scheduling point: no lost wake. */
		atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
		prt__schedule_blocked(w);
		w = prt__cur_worker();
	}
	return r->res;
}

/* Queue @sqe's op (with a link timeout if @tmo) and wait for it. */
static int uring_wait(struct prt__worker *w, struct io_uring_sqe *sqe, uint64_t tmo)
{
	struct prt__ioreq r = { .fiber = w->curr, .pending = 1 };
	struct __kernel_timespec ts;

	io_uring_sqe_set_data(sqe, &r);
	if (tmo) {
		struct io_uring_sqe *t = io_uring_get_sqe(&w->io.ring); /* room reserved */

		ts.tv_sec = (long long)(tmo / 1000000000u);
		ts.tv_nsec = (long long)(tmo % 1000000000u);
		sqe->flags |= IOSQE_IO_LINK;
		/* The kernel reads @ts at submission, while we are parked: our stack holds. */
		io_uring_prep_link_timeout(t, &ts, 0);
		io_uring_sqe_set_data64(t, (uint64_t)(uintptr_t)&r | TAG_LINKTMO);
		r.pending = 2;
	}
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
	park_req(w, &r);
	if (r.timed_out && (r.res == -ECANCELED || r.res == -EINTR))
		return -ETIMEDOUT;
	return r.res;
}

/* ---- the epoll path ------------------------------------------------------------- */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
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
	prt__wake_here_locked(ctx, f);
}

/* Wait on @w until @fd may be ready for @events; 0 (retry), -ETIMEDOUT, -ECANCELED. */
static int ep_wait(struct prt__worker *w, int fd, uint32_t events, uint64_t deadline)
{
	struct prt__fiber *self = w->curr;
	struct prt__ioreq r = { .fiber = self, .fd = fd, .events = events };
	unsigned b = bucket_of(fd);
	int err;

	r.next = w->io.bucket[b];
	w->io.bucket[b] = &r;
	w->io.nwait++;
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
	if ((err = ep_arm(w, fd))) {
		w->io.bucket[b] = r.next;
		w->io.nwait--;
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
	err = park_req(w, &r);
	if (deadline) {
		prt__timer_cancel(self);
		self->ioreq = NULL;
	}
	return err;
}


enum op { OP_READ, OP_WRITE, OP_READV, OP_WRITEV, OP_RECV, OP_SEND, OP_ACCEPT, OP_CONNECT };
static const char *const op_names[] = { "read", "write", "readv", "writev",
					"recv", "send", "accept", "connect" };

struct opargs {
	enum op op;
	int fd;
	void *buf;
	size_t n;
	const struct iovec *iov;
	int iovcnt;
	int flags;
	struct sockaddr *addr;
	socklen_t *addrlen;
	socklen_t alen;
};

/* The syscall itself, without blocking if @nb; -errno on failure. */
static long do_sys(const struct opargs *a, bool nb)
{
	long n = -1;

	switch (a->op) {
	case OP_READ:
		n = read(a->fd, a->buf, a->n);
		break;
	case OP_WRITE:
		n = write(a->fd, a->buf, a->n);
		break;
	case OP_READV:
		n = readv(a->fd, a->iov, a->iovcnt);
		break;
	case OP_WRITEV:
		n = writev(a->fd, a->iov, a->iovcnt);
		break;
	case OP_RECV:
		n = recv(a->fd, a->buf, a->n, a->flags | (nb ? MSG_DONTWAIT : 0));
		break;
	case OP_SEND:
		n = send(a->fd, a->buf, a->n, a->flags | (nb ? MSG_DONTWAIT : 0));
		break;
	case OP_ACCEPT:
		n = accept4(a->fd, a->addr, a->addrlen, a->flags);
		break;
	case OP_CONNECT:
		n = connect(a->fd, a->addr, a->alen);
		break;
	}
	return n < 0 ? -errno : n;
}

static bool is_write(enum op op)
{
	return op == OP_WRITE || op == OP_WRITEV || op == OP_SEND || op == OP_CONNECT;
}

static long ep_op(struct prt__worker *w, const struct opargs *a, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0;
	bool connecting = false;
	long n;
	int err;

	if (a->op != OP_RECV && a->op != OP_SEND && (err = set_nonblock(a->fd)))
		return err;
	for (;;) {
		if (connecting) {
			int e = 0;
			socklen_t l = sizeof(e);

			if (getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0)
				return -errno;
			if (e != EINPROGRESS && e != EALREADY)
				return -e;
		} else {
			n = do_sys(a, true);
			if (n >= 0 || (n != -EAGAIN && n != -EWOULDBLOCK && n != -EINPROGRESS))
				return n;
			connecting = a->op == OP_CONNECT;
		}
		err = ep_wait(w, a->fd, is_write(a->op) ? EPOLLOUT : EPOLLIN, deadline);
		if (err)
			return err;
		w = prt__cur_worker();
	}
}

/* ---- plain threads ----------------------------------------------------------------- */

/*
 * Wait for @events with poll(2) for at most @tmo ns (0: no limit).
 * Waits longer than poll's int milliseconds, and waits cut short by a
 * signal, go on until the deadline.
 */
static int thread_poll(int fd, short events, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0;
	struct pollfd p = { .fd = fd, .events = events };
	int n;

	for (;;) {
		int ms = -1;

		if (deadline) {
			uint64_t now = prt__now_ns(), left;

			if (now >= deadline)
				return -ETIMEDOUT;
			left = (deadline - now) / 1000000u + 1; /* rounded up: never early */
			ms = left > INT_MAX ? INT_MAX : (int)left;
		}
		n = poll(&p, 1, ms);
		if (n > 0)
			return p.revents;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

static long thread_op(const struct opargs *a, uint64_t tmo)
{
	if (tmo) {
		int r = thread_poll(a->fd, is_write(a->op) ? POLLOUT : POLLIN, tmo);

		if (r < 0)
			return r;
	}
	return do_sys(a, false);
}

/* ---- the calls ---------------------------------------------------------------------- */

/*
 * A length for an SQE's 32-bit len field: at most MAX_RW_COUNT, the
 * kernel's own cap on one read or write (INT_MAX rounded down to a
 * page), so a huge @n is a short transfer, as with read(2), never a
 * wrapped one, and the result fits the CQE's int.
 */
#define PRT_MAX_RW_COUNT 0x7ffff000u
static unsigned sqe_len(size_t n)
{
	return n > PRT_MAX_RW_COUNT ? PRT_MAX_RW_COUNT : (unsigned)n;
}

static long run_op(const struct opargs *a, uint64_t tmo)
{
	struct prt__worker *w = prt__cur_worker();
	struct io_uring_sqe *sqe;

	if (a->fd < 0)
		return -EBADF;
	if (!w)
		return thread_op(a, tmo);
	prt__set_wait(w->curr, PRT_WK_IO, op_names[a->op], a->fd);
	if (w->io.backend == PRT_IO_EPOLL)
		return ep_op(w, a, tmo);
	sqe = get_sqe(w, tmo ? 2 : 1); /* room for the link timeout */
	switch (a->op) {
	case OP_READ:
		io_uring_prep_read(sqe, a->fd, a->buf, sqe_len(a->n), (uint64_t)-1);
		break;
	case OP_WRITE:
		io_uring_prep_write(sqe, a->fd, a->buf, sqe_len(a->n), (uint64_t)-1);
		break;
	case OP_READV:
		io_uring_prep_readv(sqe, a->fd, a->iov, (unsigned)a->iovcnt, (uint64_t)-1);
		break;
	case OP_WRITEV:
		io_uring_prep_writev(sqe, a->fd, a->iov, (unsigned)a->iovcnt, (uint64_t)-1);
		break;
	case OP_RECV:
		io_uring_prep_recv(sqe, a->fd, a->buf, sqe_len(a->n), a->flags);
		break;
	case OP_SEND:
		io_uring_prep_send(sqe, a->fd, a->buf, sqe_len(a->n), a->flags);
		break;
	case OP_ACCEPT:
		io_uring_prep_accept(sqe, a->fd, a->addr, a->addrlen, a->flags);
		break;
	case OP_CONNECT:
		io_uring_prep_connect(sqe, a->fd, a->addr, a->alen);
		break;
	}
	return uring_wait(w, sqe, tmo);
}

PRT_API ssize_t prt_read_timeout(int fd, void *buf, size_t n, uint64_t tmo)
{
	struct opargs a = { .op = OP_READ, .fd = fd, .buf = buf, .n = n };

	return run_op(&a, tmo);
}

PRT_API ssize_t prt_write_timeout(int fd, const void *buf, size_t n, uint64_t tmo)
{
	struct opargs a = { .op = OP_WRITE, .fd = fd, .buf = (void *)buf, .n = n };

	return run_op(&a, tmo);
}

PRT_API ssize_t prt_readv_timeout(int fd, const struct iovec *iov, int iovcnt, uint64_t tmo)
{
	struct opargs a = { .op = OP_READV, .fd = fd, .iov = iov, .iovcnt = iovcnt };

	if (iovcnt < 0 || (iovcnt && !iov))
		return -EINVAL;
	return run_op(&a, tmo);
}

PRT_API ssize_t prt_writev_timeout(int fd, const struct iovec *iov, int iovcnt, uint64_t tmo)
{
	struct opargs a = { .op = OP_WRITEV, .fd = fd, .iov = iov, .iovcnt = iovcnt };

	if (iovcnt < 0 || (iovcnt && !iov))
		return -EINVAL;
	return run_op(&a, tmo);
}

PRT_API ssize_t prt_recv_timeout(int fd, void *buf, size_t n, int flags, uint64_t tmo)
{
	struct opargs a = { .op = OP_RECV, .fd = fd, .buf = buf, .n = n, .flags = flags };

	return run_op(&a, tmo);
}

PRT_API ssize_t prt_send_timeout(int fd, const void *buf, size_t n, int flags, uint64_t tmo)
{
	struct opargs a = { .op = OP_SEND, .fd = fd, .buf = (void *)buf, .n = n, .flags = flags };

	return run_op(&a, tmo);
}

PRT_API int prt_accept_timeout(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			       uint64_t tmo)
{
	struct opargs a = { .op = OP_ACCEPT, .fd = fd, .addr = addr, .addrlen = addrlen,
			    .flags = flags };

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC))
		return -EINVAL;
	return (int)run_op(&a, tmo);
}

PRT_API int prt_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen,
				uint64_t tmo)
{
	struct opargs a = { .op = OP_CONNECT, .fd = fd, .addr = (struct sockaddr *)addr,
			    .alen = addrlen };

	if (!addr)
		return -EFAULT;
	return (int)run_op(&a, tmo);
}

PRT_API int prt_poll_timeout(int fd, short events, uint64_t tmo)
{
	struct prt__worker *w = prt__cur_worker();
	uint64_t deadline;

	if (fd < 0)
		return -EBADF;
	if (!w)
		return thread_poll(fd, events, tmo ? tmo : 0);
	prt__set_wait(w->curr, PRT_WK_IO, "poll", fd);
	if (w->io.backend == PRT_IO_URING) {
		struct io_uring_sqe *sqe = get_sqe(w, tmo ? 2 : 1); /* room for the link timeout */

		io_uring_prep_poll_add(sqe, fd, (unsigned)(uint16_t)events);
		return uring_wait(w, sqe, tmo);
	}
	deadline = tmo ? prt__deadline_in(tmo) : 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		uint32_t ev = 0;
		int err;

		if (poll(&p, 1, 0) < 0)
			return -errno;
		if (p.revents)
			return p.revents;
		ev |= (events & POLLIN) ? EPOLLIN : 0;
		ev |= (events & POLLOUT) ? EPOLLOUT : 0;
		ev |= (events & POLLPRI) ? EPOLLPRI : 0;
		if ((err = ep_wait(w, fd, ev, deadline)))
			return err;
		w = prt__cur_worker();
	}
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
	struct io_uring_sqe *sqe;

	if (fd < 0)
		return -EBADF;
	if (!w || w->io.backend == PRT_IO_EPOLL)
		return shutdown(fd, how) < 0 ? -errno : 0;
	sqe = get_sqe(w, 1);
	io_uring_prep_shutdown(sqe, fd, how);
	return uring_wait(w, sqe, 0);
}

/* Queue command @c on worker @v and wake it (ours runs in wait_cmds). */
static void post_cmd(struct prt__worker *w, struct prt__worker *v, struct prt__iocmd *c)
{
	c->next = atomic_load(&v->io.cmds);
	while (!atomic_compare_exchange_weak(&v->io.cmds, &c->next, c))
		;
	if (v != w)
		prt__io_kick(v);
}

/* Run our own commands now, drop our reference on @left, wait for every ack. */
static void wait_cmds(struct prt__worker *w, atomic_int *left, struct prt__waitone *done)
{
	prt__io_service(w, true);
	if (atomic_fetch_sub(left, 1) != 1)
		prt__waitone_wait(w, done);
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
	struct prt__waitone done = { .f = w->curr };
	atomic_int left = 1; /* our own reference, dropped below */

	if (rt->nworkers > 8 && !(cmds = prt__alloc(sz)))
		return; /* no memory: close without cancelling, as close(2) */
	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *v = rt->workers[i];
		struct prt__iocmd *c = &cmds[i];

		/* Racy, and fine: a worker with nothing in flight has nothing of @fd. */
		if (v != w && !PRT_READ_ONCE(v->io.inflight))
			continue;
		c->fd = fd;
		c->ud = 0;
		c->done = &done;
		c->left = &left;
		atomic_fetch_add(&left, 1);
		post_cmd(w, v, c);
	}
	prt__set_wait(w->curr, PRT_WK_IO, "close", fd);
	wait_cmds(w, &left, &done);
	/* Every command has been acked: their slots are free again. */
	if (cmds != small)
		prt__free(cmds, sz);
}

struct io_uring_sqe *prt__io_sqe(struct prt__worker *w, unsigned n)
{
	return get_sqe(w, n);
}

void prt__io_cancel_reqs(struct prt__worker *w, int n, struct prt__worker *const *v,
			 const uint64_t *ud)
{
	struct prt__waitone done = { .f = w->curr };
	atomic_int left = n + 1; /* the commands' and ours */
	struct prt__iocmd c[2];

	prt__assert(n >= 1 && n <= 2);
	for (int i = 0; i < n; i++) {
		c[i] = (struct prt__iocmd){ .fd = -1, .ud = ud[i], .done = &done, .left = &left };
		post_cmd(w, v[i], &c[i]);
	}
	wait_cmds(w, &left, &done);
}

PRT_API int prt_close(int fd)
{
	struct prt__worker *w = prt__cur_worker();
	struct io_uring_sqe *sqe;

	if (fd < 0)
		return -EBADF;
	if (!w)
		return close(fd) < 0 ? -errno : 0;
	cancel_fd(w, fd);
	w = prt__cur_worker();
	if (w->io.backend == PRT_IO_EPOLL)
		return close(fd) < 0 ? -errno : 0;
	sqe = get_sqe(w, 1);
	io_uring_prep_close(sqe, fd);
	return uring_wait(w, sqe, 0);
}

PRT_API int prt_runtime_io_backend(const prt_runtime_t *rt)
{
	return rt ? rt->io.backend : -EINVAL;
}
