/* SPDX-License-Identifier: MIT */
/*
 * The io_uring backend (io_backend.h): one ring per worker.
 *
 * A fiber prepares its SQE in the ring of the worker it runs on and
 * parks BLOCKED; nothing is submitted yet. At each scheduling point the
 * worker submits what is queued if it is about to run out of work, the
 * batch is large, or its oldest entry is old (so a busy worker still
 * makes one io_uring_enter per batch, not per op), and reaps the CQ, a
 * pair of loads when it is empty (the watch: io_backend.h). Each CQE
 * names its request (on the parked fiber's stack) and wakes its fiber. A
 * per-call timeout is a linked IORING_OP_LINK_TIMEOUT; the fiber resumes
 * only after both CQEs (op and timeout) are reaped, so nothing completes
 * into a dead stack. Only the worker that queued a request ever touches
 * it again: reaping, cancels and timers all run on that worker, after
 * the fiber parked.
 *
 * An idle worker waits in io_uring_submit_and_wait_timeout, with its
 * next timer as the timeout. It is woken (prt__io_kick) by a CQE: a
 * worker of the runtime sends IORING_OP_MSG_RING from its own ring (if
 * that fails, its CQE says so and the eventfd is written instead), any
 * other thread writes the worker's eventfd, on which a read is kept
 * pending.
 *
 * File calls (prt_openat and the others) are one SQE each, where the
 * probe found their opcode; their timeouts are a timer on the worker,
 * not a link timeout ("File calls" below says why). The worker thread
 * keeps io_uring's helper threads off its CPU (set_iowq_aff).
 *
 * prt_close's command is an IORING_OP_ASYNC_CANCEL with
 * IORING_ASYNC_CANCEL_FD | _ALL (or by user_data, for streams), acked
 * when its CQE is reaped. prt_cancel's is an IORING_OP_ASYNC_CANCEL by
 * user_data for each request of @reqs whose fiber was cancelled; its
 * own CQE is dropped, and the request ends as always when its CQEs are
 * reaped (-ECANCELED, or its result if it completed first).
 *
 * Receive streams (stream.c) prepare their SQEs on the ring
 * (prt__io_sqe) and get their CQEs back through the handler their
 * user_data names (struct prt__io_handler): this file calls nothing of
 * theirs.
 */
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc.h"
#include "fault.h"
#include "io_backend.h"
#include "io_uring_int.h"
#include "runtime_int.h"
#include "wait.h"
#include "worker.h"

/* user_data tags; requests and commands are pointers (8-aligned). */
#define TAG_EVFD ((uint64_t)1)
#define TAG_WAKE ((uint64_t)2)
#define TAG_GIVEUP ((uint64_t)16) /* the cancel of a request given up (its CQE: nothing to do) */
#define TAG_KICK 3u    /* low bits of the worker a MSG_RING kick was for (its own CQE) */
#define TAG_CMD 4u     /* low bits of a command pointer */
#define TAG_LINKTMO 5u /* low bits of a request whose link timeout completed */
#define TAG_MASK 7u

/* Submit at a scheduling point once this many SQEs wait, or the oldest is this old. */
#define PRT_IO_BATCH 32u
#define PRT_IO_SUBMIT_NS 20000u

static const int needed_ops[] = {
	IORING_OP_READ,  IORING_OP_WRITE,    IORING_OP_READV,       IORING_OP_WRITEV,
	IORING_OP_RECV,  IORING_OP_SEND,     IORING_OP_ACCEPT,      IORING_OP_CONNECT,
	IORING_OP_CLOSE, IORING_OP_SHUTDOWN, IORING_OP_POLL_ADD,    IORING_OP_LINK_TIMEOUT,
	IORING_OP_ASYNC_CANCEL,
};

/*
 * The opcode of each file call (enum prt__fop_code). These are optional:
 * where the kernel lacks one, its call runs on the offload pool.
 */
static const int file_ops[PRT_FOP_N] = {
	[PRT_FOP_OPENAT] = IORING_OP_OPENAT,       /* 5.6 */
	[PRT_FOP_FSYNC] = IORING_OP_FSYNC,         /* 5.1 */
	[PRT_FOP_FDATASYNC] = IORING_OP_FSYNC,
	[PRT_FOP_FALLOCATE] = IORING_OP_FALLOCATE, /* 5.6 */
	[PRT_FOP_STATX] = IORING_OP_STATX,         /* 5.6 */
	[PRT_FOP_RENAMEAT] = IORING_OP_RENAMEAT,   /* 5.11 */
	[PRT_FOP_UNLINKAT] = IORING_OP_UNLINKAT,   /* 5.11 */
	[PRT_FOP_SOCKET] = IORING_OP_SOCKET,       /* 5.19 */
};

/* ---- set-up ------------------------------------------------------------------ */

/* io_uring_queue_init, or the failure a test build injects (fault.h). */
static int ring_init(unsigned entries, struct io_uring *ring, unsigned flags)
{
	int err = prt__fault(PRT_FAULT_URING);

	return err ? -err : io_uring_queue_init(entries, ring, flags);
}

#define PROBE_OPS 256
#define PROBE_SIZE (sizeof(struct io_uring_probe) + PROBE_OPS * sizeof(struct io_uring_probe_op))

/*
 * Can the process enter the ring? A NOP, submitted and reaped: a seccomp
 * filter may refuse io_uring_enter alone (io_uring_setup allowed), and
 * workers would then spin on a ring they can never enter. 0, or -errno.
 */
static int probe_enter(struct io_uring *r, const char **what)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	struct io_uring_cqe *cqe;
	int err;

	if (!sqe)
		return 0;
	io_uring_prep_nop(sqe);
	if ((err = io_uring_submit_and_wait(r, 1)) < 0 || (err = io_uring_peek_cqe(r, &cqe)) < 0) {
		*what = "io_uring_enter refused";
		return err;
	}
	io_uring_cqe_seen(r, cqe);
	return 0;
}

/* Can this process use io_uring with every op we need? 0, or why not (-errno). */
static int probe_ops(struct prt__rtio *rio, const char **what)
{
	struct io_uring r;
	struct io_uring_probe *p;
	union {
		struct io_uring_probe probe;
		char bytes[PROBE_SIZE];
	} probe_buf;
	int err = ring_init(4, &r, 0);

	if (err) {
		*what = "io_uring_setup failed";
		return err;
	}
	if (!(r.features & IORING_FEAT_EXT_ARG)) {
		*what = "kernel too old (no IORING_FEAT_EXT_ARG, Linux < 5.11)";
		err = -ENOSYS;
	}
	if (!err)
		err = probe_enter(&r, what);
	p = NULL;
	if (!err) {
		/* On the stack (2 KiB): no allocation that could fail here. */
		p = &probe_buf.probe;
		memset(&probe_buf, 0, sizeof(probe_buf));
		if ((err = io_uring_register_probe(&r, p, PROBE_OPS)) < 0) {
			/* EINVAL: no such opcode (before 5.6); else what refused it (a seccomp filter). */
			*what = err == -EINVAL ? "kernel too old (no IORING_REGISTER_PROBE)"
					       : "io_uring_register refused";
			p = NULL;
		} else {
			err = 0;
		}
	}
	for (size_t i = 0; p && i < sizeof(needed_ops) / sizeof(needed_ops[0]); i++) {
		if (!io_uring_opcode_supported(p, needed_ops[i])) {
			*what = "kernel too old (an io_uring op proxyrt needs is missing)";
			err = -ENOSYS;
		}
	}
	rio->msg_ring = p && io_uring_opcode_supported(p, IORING_OP_MSG_RING);
	rio->fop_native = 0;
	for (int i = 0; p && i < PRT_FOP_N; i++)
		/* A test build may take any of them as missing (fault.h, PRT_FAULT_OPCODE). */
		if (io_uring_opcode_supported(p, file_ops[i]) && !prt__fault(PRT_FAULT_OPCODE))
			rio->fop_native |= 1u << i;
	io_uring_queue_exit(&r);
	return err;
}

/* probe_ops, then the set-up flags the workers' rings get where the kernel has them. */
static int ur_probe(struct prt__rtio *rio, const char **what)
{
	/*
	 * Completions' task work runs only when the worker enters the
	 * kernel for events (batched, no IPI into a busy worker); the ring
	 * is enabled by its worker thread, its single issuer.
	 */
	unsigned f = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		     IORING_SETUP_TASKRUN_FLAG;
	struct io_uring r;
	int err = probe_ops(rio, what);

	if (err)
		return err;
	if (ring_init(4, &r, f) == 0) {
		io_uring_queue_exit(&r);
		rio->setup_flags = f | IORING_SETUP_R_DISABLED;
	}
	return 0;
}

static void arm_evfd(struct prt__worker *w);
static void submit(struct prt__worker *w);

/* @w's ring, watched at every scheduling point, with a read of its eventfd pending. */
static int ur_init(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	struct prt__rtio *rio = &w->rt->io;
	int err = ring_init(rio->entries, &io->ring, rio->setup_flags);

	if (err)
		return err;
	io->watch.head = io->ring.cq.khead;
	io->watch.tail = io->ring.cq.ktail;
	io->watch.flags = io->ring.sq.kflags;
	/*
	 * TASKRUN: completions wait for us in task work. CQ_OVERFLOW: some
	 * did not fit in the CQ and wait on the kernel's overflow list
	 * (IORING_FEAT_NODROP); either way only an entry for events brings
	 * them in, and a worker that never sleeps in the ring (always busy,
	 * or spinning out its timer lead) must make one (test_io,
	 * test_cq_overflow_*).
	 */
	io->watch.mask = IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW;
	io->msg_ring = rio->msg_ring;
	arm_evfd(w);
	return 0;
}

/*
 * Keep io_uring's helper threads off the worker's CPU. The ring runs
 * what cannot complete at once (every file call; writes to a file
 * system without non-blocking buffered writes, such as ext4) on io-wq
 * helper threads of the task that submitted it, and those start with
 * that task's CPU affinity: the one CPU of a bound worker, which its
 * fibers keep busy. There a SCHED_FIFO worker that stays busy never
 * lets them run, and under SCHED_OTHER a write now and then waits for
 * the worker's time slice (bench/proxyrt_bench filewrite: max ~4 ms,
 * Linux 6.18). So each worker's helpers get the runtime's CPUs
 * (cfg.cpus, else the process's affinity) but its own. The price: a
 * wake-up on another CPU (a write behind a worker that yields every
 * 5 us: p50 18 -> 40 us on an idle 2-CPU machine), and on CPUs busy
 * with other processes the helpers wait for those (PRT_RT_NO_IOWQ_AFF).
 * The affinity is the task's, not the ring's (IORING_REGISTER_IOWQ_AFF
 * sets current's io-wq), and its first submission creates that io-wq:
 * hence here, on the worker thread, after submitting its eventfd read.
 * Not done with PRT_RT_NO_IOWQ_AFF, for unbound workers (no CPU of their
 * own) or when the runtime has no other CPU; a refusal is recorded
 * (io.iowq_aff), nothing else: the helpers then run where the kernel
 * puts them. How many helpers there may be
 * (IORING_REGISTER_IOWQ_MAX_WORKERS) stays the kernel's choice: for
 * file work, the ring's SQ size or 4 per CPU, whichever is less.
 */
static void set_iowq_aff(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;
	cpu_set_t set = rt->topo.cpus;
	int pu = rt->topo.w[w->index].pu_os_index, err;

	if ((rt->flags & PRT_RT_NO_IOWQ_AFF) || !rt->topo.pin || pu < 0 || pu >= CPU_SETSIZE)
		return;
	CPU_CLR(pu, &set);
	if (!CPU_COUNT(&set))
		return;
	submit(w);
	err = prt__fault(PRT_FAULT_IOWQ);
	err = err ? -err : io_uring_register_iowq_aff(&w->io.ring, sizeof(set), &set);
	w->io.iowq_aff = err ? err : PRT_IOWQ_AFF_SET;
}

/* Enable a ring set up disabled (the worker thread becomes its submitter task); its io-wq's CPUs. */
static void ur_thread_start(struct prt__worker *w)
{
	if (w->rt->io.setup_flags & IORING_SETUP_R_DISABLED)
		/* (liburing 2.3 declares io_uring_enable_rings but does not export it.) */
		syscall(__NR_io_uring_register, w->io.ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
	set_iowq_aff(w);
}

/* The ring, and the stream buffers registered in it. */
static void ur_fini(struct prt__worker *w)
{
	io_uring_queue_exit(&w->io.ring);
	if (w->io.sbufs_fini)
		w->io.sbufs_fini(w);
}

/* ---- submission and completion -------------------------------------------------- */

/* Submit every SQE prepared (retrying an interrupted enter). */
static void submit(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	int n;

	if (!io->watch.queued && !io_uring_sq_ready(&io->ring))
		return;
	do {
		n = io_uring_submit(&io->ring);
	} while (n == -EINTR);
	/* -EBUSY/-EAGAIN: the CQ is full; entries stay queued, reaping frees room. */
	if (n >= 0) {
		io->watch.queued = 0;
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
	if (!w->io.watch.queued)
		w->io.first_unsubmitted_ns = prt__now_ns();
	w->io.watch.queued += n;
	return io_uring_get_sqe(ring);
}

struct io_uring_sqe *prt__io_sqe(struct prt__worker *w, unsigned n)
{
	return get_sqe(w, n);
}

/* Queue a read of @w's eventfd: its CQE wakes the worker from its ring. */
static void arm_evfd(struct prt__worker *w)
{
	struct io_uring_sqe *sqe = get_sqe(w, 1);

	io_uring_prep_read(sqe, w->io.evfd, &w->io.evbuf, sizeof(w->io.evbuf), 0);
	io_uring_sqe_set_data64(sqe, TAG_EVFD);
	w->io.ev_armed = true;
}

static void req_put(struct prt__ioreq *r);
static void giveup_end(struct prt__worker *w, struct prt__ioreq *r, int res);

/*
 * The last CQE of @r is reaped (@res: the op's result): wake its fiber,
 * or, for a request given up on, dispose of what it made. Returns fibers
 * woken.
 */
static int req_finish(struct prt__worker *w, struct prt__ioreq *r, int res)
{
	/* relaxed: ours; 0 for a request on its fiber's stack (read before the wake: then it may go) */
	bool held = atomic_load_explicit(&r->refs, memory_order_relaxed) != 0;

	prt__list_del(&r->node);
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
	prt__stat_inc(&w->stats.io_ops, 1);
	r->done = true;
	if (r->orphan) {
		giveup_end(w, r, res);
		return 0;
	}
	prt__wait_wake(&r->wait);
	if (held)
		req_put(r);
	return 1;
}

/* A CQE of request @r (the op's, or its link timeout's): true if @r is done now. */
static bool req_cqe(struct prt__ioreq *r, int res, bool linktmo)
{
	/*
	 * A link timeout's CQE: -ECANCELED if the request ended first; any
	 * other result says it fired: -ETIME (it cancelled the request),
	 * -EALREADY or -ENOENT (the request ran on an io-wq worker, which
	 * the cancel interrupts: its CQE says -EINTR; a review's 200 ms
	 * prt_connect_timeout to a full AF_UNIX backlog returned -EINTR).
	 */
	if (linktmo)
		r->timed_out |= res != -ECANCELED;
	else if (!r->orphan) /* an orphan's fiber reads its @res (-ETIMEDOUT): leave it */
		r->res = res;
	return --r->pending == 0;
}

/* Handle one CQE, by its user_data's tag; returns fibers woken. */
static int reap_one(struct prt__worker *w, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	void *p = (void *)(uintptr_t)(ud & ~(uint64_t)TAG_MASK);

	if (ud == TAG_EVFD) {
		w->io.ev_armed = false;
		return 0;
	}
	if (ud == TAG_WAKE || ud == TAG_GIVEUP)
		return 0; /* a kick; a failed cancel of a request given up on */
	switch (ud & TAG_MASK) {
	case TAG_KICK:
		/* Only on failure (CQE_SKIP_SUCCESS): kick that worker the other way. */
		prt__io_kick_evfd(p);
		return 0;
	case TAG_CMD:
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
		prt__io_cmd_ack(p);
		return 0;
	case PRT_IO_TAG_HANDLER: {
		struct prt__io_handler *h = p;

		return h->cqe(w, h, cqe->res, cqe->flags);
	}
	}
	if (!req_cqe(p, cqe->res, (ud & TAG_MASK) == TAG_LINKTMO))
		return 0;
	return req_finish(w, p, cqe->res);
}

/* Handle every CQE in the ring; returns fibers woken. */
static int reap_uring(struct prt__worker *w)
{
	struct io_uring *ring = &w->io.ring;
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int woken = 0;

	io_uring_for_each_cqe(ring, head, cqe) {
		n++;
		woken += reap_one(w, cqe);
	}
	io_uring_cq_advance(ring, n);
	return woken;
}

/*
 * A prt_close() of @fd cancels what is in flight on it here: a
 * -ECANCELED those requests end with is the close's (kernel_dropped).
 */
static void mark_closed(struct prt__worker *w, int fd)
{
	for (struct prt__list *n = w->io.reqs.next; n != &w->io.reqs; n = n->next) {
		struct prt__ioreq *r = prt__container_of(n, struct prt__ioreq, node);

		if (r->fd == fd)
			r->closed = true;
	}
}

/* prt_close's commands: an async cancel each, submitted at once (the closer waits). */
static int ur_cancel(struct prt__worker *w, struct prt__iocmd *c)
{
	while (c) {
		struct prt__iocmd *next = c->next;
		struct io_uring_sqe *sqe = get_sqe(w, 1);

		if (c->ud) {
			io_uring_prep_cancel64(sqe, c->ud, 0);
		} else {
			io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
			mark_closed(w, c->fd);
		}
		io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_CMD);
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
		c = next;
	}
	submit(w); /* the closer waits: do not batch */
	return 0;
}

static void giveup(struct prt__worker *w, struct prt__ioreq *r, int res);

/*
 * prt_cancel's command: an async cancel for each request in flight whose
 * fiber has a cancel pending, once. Its CQE (0, or -ENOENT / -EALREADY
 * if the request completed or runs already) is dropped (TAG_WAKE). A
 * timed file call (on the heap) is given up on as its timer would
 * (giveup): its fiber returns -ECANCELED at once.
 */
static int ur_cancel_fibers(struct prt__worker *w)
{
	struct io_uring *ring = &w->io.ring;
	struct prt__list *n = w->io.reqs.next;
	bool any = false;
	int woken = 0;

	while (n != &w->io.reqs) {
		struct prt__ioreq *r = prt__container_of(n, struct prt__ioreq, node);
		struct io_uring_sqe *sqe;
		bool reaped = false;

		n = n->next;
		/* An orphan's fiber has gone: its flag is no longer this request's. */
		if (!r->cancellable || r->cancelled || r->orphan)
			continue;
		/* seq_cst: after our clear of cancel_posted (io.c, take_cancel_cmd) */
		if (!atomic_load_explicit(&r->wait.fiber->cancel, memory_order_seq_cst))
			continue;
		r->cancelled = true;
		/* relaxed: ours (0 for a request on its fiber's stack, as in req_finish) */
		if (atomic_load_explicit(&r->refs, memory_order_relaxed)) {
			giveup(w, r, -ECANCELED);
			prt__wait_wake(&r->wait);
			woken++;
			continue;
		}
		if (io_uring_sq_space_left(ring) < 1)
			submit(w);
		/* Still full: get_sqe reaps, which may end requests of the list: start again. */
		reaped = io_uring_sq_space_left(ring) < 1;
		sqe = get_sqe(w, 1);
		io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)r, 0);
		io_uring_sqe_set_data64(sqe, TAG_WAKE);
		any = true;
		if (reaped)
			n = w->io.reqs.next;
	}
	if (any)
		submit(w); /* a cancelled fiber waits: do not batch */
	return woken;
}

/* ---- scheduling points, idle wait, kicks ----------------------------------------- */

/* Is it time to enter the kernel: the worker runs dry, the batch is large or old, or every 64 points. */
static bool submit_due(struct prt__worker *w, bool force_submit)
{
	struct prt__io *io = &w->io;

	return force_submit || !atomic_load_explicit(&w->rq.nr, memory_order_relaxed) ||
	       (io->watch.queued && (io->watch.queued >= PRT_IO_BATCH ||
				     prt__now_ns() - io->first_unsubmitted_ns >= PRT_IO_SUBMIT_NS)) ||
	       (++io->watch.tick & 63) == 0;
}

/*
 * Submit, and with deferred task work collect completions, when it is
 * due (submit_due); reap what is in the CQ.
 */
static int ur_service(struct prt__worker *w, bool force_submit)
{
	struct prt__io *io = &w->io;

	if (submit_due(w, force_submit)) {
		if (IO_URING_READ_ONCE(*io->ring.sq.kflags) & io->watch.mask) {
			int n;

			/* As submit(): an interrupted enter again; a refused one leaves them queued. */
			do {
				n = io_uring_submit_and_get_events(&io->ring);
			} while (n == -EINTR);
			if (n >= 0)
				io->watch.queued = 0;
		} else if (io->watch.queued) {
			submit(w);
		}
	}
	return io_uring_cq_ready(&io->ring) ? reap_uring(w) : 0;
}

/* Sleep in the ring for a CQE (the eventfd read kept pending is one), at most @tmo ns. */
static void ur_wait(struct prt__worker *w, uint64_t tmo)
{
	struct prt__io *io = &w->io;

	if (!io->ev_armed)
		arm_evfd(w);
	if (io_uring_cq_ready(&io->ring))
		return; /* something to reap first */
	if (tmo) {
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(tmo / 1000000000u),
			.tv_nsec = (long long)(tmo % 1000000000u),
		};
		struct io_uring_cqe *cqe;

		io_uring_submit_and_wait_timeout(&io->ring, &cqe, 1, &ts, NULL);
	} else {
		io_uring_submit_and_wait(&io->ring, 1);
	}
	io->watch.queued = 0;
}

/*
 * A worker kicks a worker of its runtime through its own ring (no
 * syscall on the target's eventfd); a failed MSG_RING posts a CQE here
 * naming @v, and reap_uring kicks @v by its eventfd instead. Never with
 * a full SQ: taking an SQE would reap, and we may be reaping already
 * (a CQE woke a fiber), which would handle the same CQEs twice.
 */
static bool ur_kick(struct prt__worker *me, struct prt__worker *v)
{
	struct io_uring_sqe *sqe;
	int fd;

	if (!me->io.msg_ring || io_uring_sq_space_left(&me->io.ring) == 0)
		return false;
	sqe = get_sqe(me, 1);
	fd = prt__fault(PRT_FAULT_KICK) ? -1 : v->io.ring.ring_fd;
	io_uring_prep_msg_ring(sqe, fd, 0, TAG_WAKE, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)v | TAG_KICK);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	submit(me);
	return true;
}

/* ---- a fiber's wait ------------------------------------------------------------- */

/*
 * The result of a request its worker cancelled for prt_cancel: an io-wq
 * helper interrupted by the cancel posts -EINTR or one of the kernel's
 * restart codes (ERESTARTSYS 512 ... ERESTART_RESTARTBLOCK 516: an open
 * waiting for a FIFO does, Linux 6.18); the cancel caused it, and the
 * caller is told so. No signal reaches an io-wq helper otherwise.
 */
static int cancelled_res(int res)
{
	return res == -EINTR || (res <= -512 && res >= -516) ? -ECANCELED : res;
}

/*
 * A call the kernel dropped. The kernel starts an io_uring's helper
 * threads (io-wq) from the submitting thread, and starting a thread
 * fails while a signal is pending for it; when the first helper of a
 * thread cannot be started (three tries, 5-15 ms apart), every call
 * queued for helpers ends with -ECANCELED, unasked and never made
 * (Linux 6.18, io_uring/io-wq.c, create_worker_cont). Calls the kernel
 * always gives to helpers (shutdown, fsync, fallocate, most opens and
 * statx, ...) or that would block (a regular file's read) do, on a
 * worker thread that signals reach often: a preemptive runtime's time
 * slices, a profiler's SIGPROF, the application's own. Such a call is
 * made again, up to PRT_IOWQ_RETRIES times (then -EAGAIN, as a failed
 * fork: the kernel could not start a thread). A -ECANCELED is the
 * kernel's own only if nothing of ours asked for it: prt_cancel
 * (@cancelled), a timeout (@timed_out, @orphan), a prt_close() of the
 * fd (@closed).
 */
#define PRT_IOWQ_RETRIES 8

static bool kernel_dropped(const struct prt__ioreq *r)
{
	return r->res == -ECANCELED && !r->cancelled && !r->timed_out && !r->orphan && !r->closed;
}

/*
 * Fault injection (fault.h): @sqe's call ends as one the kernel dropped,
 * never made (a no-op in its place; its CQE is ignored, and a link
 * timeout after it ends with -ECANCELED as after any call that ended
 * first). True if @r is done.
 */
static bool fault_dropped(struct io_uring_sqe *sqe, struct prt__ioreq *r)
{
	uint8_t link = sqe->flags & IOSQE_IO_LINK;

	if (!prt__fault(PRT_FAULT_IOWQ_DROP))
		return false;
	io_uring_prep_nop(sqe);
	sqe->flags |= link;
	io_uring_sqe_set_data64(sqe, TAG_WAKE);
	r->res = -ECANCELED;
	r->pending--;
	return r->pending == 0;
}

/* Queue @sqe's op (with a link timeout if @tmo) and wait for it, once. */
static void uring_wait_once(struct prt__worker *w, struct io_uring_sqe *sqe, uint64_t tmo,
			    struct prt__ioreq *r)
{
	struct __kernel_timespec ts;

	io_uring_sqe_set_data(sqe, r);
	if (tmo) {
		struct io_uring_sqe *t = io_uring_get_sqe(&w->io.ring); /* room reserved */

		ts.tv_sec = (long long)(tmo / 1000000000u);
		ts.tv_nsec = (long long)(tmo % 1000000000u);
		sqe->flags |= IOSQE_IO_LINK;
		/* The kernel reads @ts at submission, while we are parked: our stack holds. */
		io_uring_prep_link_timeout(t, &ts, 0);
		io_uring_sqe_set_data64(t, (uint64_t)(uintptr_t)r | TAG_LINKTMO);
		r->pending = 2;
	}
	if (prt__unlikely(fault_dropped(sqe, r)))
		return;
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
	prt__list_add_tail(&w->io.reqs, &r->node);
	prt__io_park_req(w, r);
}

/*
 * Queue @sqe's op (with a link timeout if @tmo) and wait for it; made
 * again while the kernel drops it (kernel_dropped).
 */
static int uring_wait(struct prt__worker *w, struct io_uring_sqe *sqe, uint64_t tmo,
		      bool cancellable)
{
	struct prt__ioreq r = { .wait.fiber = w->curr, .pending = 1, .cancellable = cancellable,
				.fd = sqe->fd };
	struct io_uring_sqe again = *sqe;
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0;

	for (int tries = 0;; tries++) {
		uring_wait_once(w, sqe, tmo, &r);
		if (prt__likely(!kernel_dropped(&r)))
			break;
		if (tries == PRT_IOWQ_RETRIES)
			return -EAGAIN;
		if (tmo) {
			uint64_t now = prt__now_ns();

			if (now >= deadline)
				return -ETIMEDOUT;
			tmo = deadline - now;
		}
		w = prt__cur_worker();
		sqe = get_sqe(w, tmo ? 2 : 1);
		*sqe = again;
		r = (struct prt__ioreq){ .wait.fiber = w->curr, .pending = 1,
					 .cancellable = cancellable, .fd = again.fd };
	}
	if (r.timed_out && (r.res == -ECANCELED || r.res == -EINTR))
		return -ETIMEDOUT;
	return r.cancelled ? cancelled_res(r.res) : r.res;
}

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

/* Prepare @a's op in @sqe. */
static void prep_op(struct io_uring_sqe *sqe, const struct prt__ioargs *a)
{
	switch (a->op) {
	case PRT_OP_READ:
		io_uring_prep_read(sqe, a->fd, a->buf, sqe_len(a->n), (uint64_t)-1);
		break;
	case PRT_OP_WRITE:
		io_uring_prep_write(sqe, a->fd, a->buf, sqe_len(a->n), (uint64_t)-1);
		break;
	case PRT_OP_READV:
		io_uring_prep_readv(sqe, a->fd, a->iov, (unsigned)a->iovcnt, (uint64_t)-1);
		break;
	case PRT_OP_WRITEV:
		io_uring_prep_writev(sqe, a->fd, a->iov, (unsigned)a->iovcnt, (uint64_t)-1);
		break;
	case PRT_OP_RECV:
		io_uring_prep_recv(sqe, a->fd, a->buf, sqe_len(a->n), a->flags);
		break;
	case PRT_OP_SEND:
		io_uring_prep_send(sqe, a->fd, a->buf, sqe_len(a->n), a->flags);
		break;
	case PRT_OP_ACCEPT:
		io_uring_prep_accept(sqe, a->fd, a->addr, a->addrlen, a->flags);
		break;
	case PRT_OP_CONNECT:
		io_uring_prep_connect(sqe, a->fd, a->addr, a->alen);
		break;
	}
}

/* ---- the calls ------------------------------------------------------------------- */

/* A call as one SQE (and its link timeout), waited for. */
static long ur_op(struct prt__worker *w, const struct prt__ioargs *a, uint64_t tmo)
{
	struct io_uring_sqe *sqe = get_sqe(w, tmo ? 2 : 1); /* room for the link timeout */

	prep_op(sqe, a);
	return uring_wait(w, sqe, tmo, true);
}

/* IORING_OP_POLL_ADD, one-shot: the revents. */
static int ur_poll(struct prt__worker *w, int fd, short events, uint64_t tmo)
{
	struct io_uring_sqe *sqe = get_sqe(w, tmo ? 2 : 1); /* room for the link timeout */
	int r;

	io_uring_prep_poll_add(sqe, fd, (unsigned)(uint16_t)events);
	r = uring_wait(w, sqe, tmo, true);
	/*
	 * -EINVAL: the file has no wait queue and none of @events is ready
	 * (io_uring/poll.c, __io_arm_poll_handler: no entries, no mask);
	 * poll(2) would wait on, for nothing.
	 */
	if (r == -EINVAL)
		return PRT_IO_POLL_NO_WAITQ;
	/*
	 * The events asked for, and POLLERR and POLLHUP, as poll(2) reports
	 * (and the epoll backend, which asks poll(2)): the ring's poll also
	 * reports others that are true, POLLRDHUP at a peer's close among
	 * them (Linux 6.18; a review).
	 */
	return r < 0 ? r : r & ((unsigned short)events | POLLERR | POLLHUP);
}

/* IORING_OP_SHUTDOWN. */
static int ur_shutdown(struct prt__worker *w, int fd, int how)
{
	struct io_uring_sqe *sqe = get_sqe(w, 1);

	io_uring_prep_shutdown(sqe, fd, how);
	return uring_wait(w, sqe, 0, false);
}

/* IORING_OP_CLOSE, after the fd's other requests were cancelled. */
static int ur_close(struct prt__worker *w, int fd)
{
	struct io_uring_sqe *sqe = get_sqe(w, 1);

	io_uring_prep_close(sqe, fd);
	return uring_wait(w, sqe, 0, false);
}

/* ---- file calls -------------------------------------------------------------------- */

/*
 * The ring runs file calls on its io-wq helpers (all but a cached
 * open). A link timeout cannot end those: the kernel arms it when the
 * request's issue returns, and a helper's issue returns only once the
 * call is done (Linux 6.18: a linked 100 ms timeout never fires on an
 * open waiting for a FIFO's writer). So a timed file call has a timer
 * on the worker instead, as the epoll backend's waits do: when it
 * fires, the fiber returns -ETIMEDOUT and the request is given up on
 * ("orphan"): an async cancel is queued for it (a call not started is
 * dropped, an interruptible wait such as that FIFO open is
 * interrupted; an fsync under way goes on), and when its CQE comes the
 * ring closes the fd it may have opened. Such a request is on the heap,
 * held by its fiber and by the ring, since the fiber may return before
 * the kernel is done with it. The kernel copies a call's paths when it
 * takes the SQE, so a timed call is submitted at once, before the timer
 * can give up on it and the caller free them.
 */

/* Prepare file call @a in @sqe. */
static void prep_fop(struct io_uring_sqe *sqe, const struct prt__fopargs *a)
{
	switch (a->op) {
	case PRT_FOP_OPENAT:
		io_uring_prep_openat(sqe, a->fd, a->path, a->flags, a->mode);
		break;
	case PRT_FOP_FSYNC:
		io_uring_prep_fsync(sqe, a->fd, 0);
		break;
	case PRT_FOP_FDATASYNC:
		io_uring_prep_fsync(sqe, a->fd, IORING_FSYNC_DATASYNC);
		break;
	case PRT_FOP_FALLOCATE:
		io_uring_prep_fallocate(sqe, a->fd, a->flags, a->off, a->len);
		break;
	case PRT_FOP_STATX:
		io_uring_prep_statx(sqe, a->fd, a->path, a->flags, a->mode, a->stx);
		break;
	case PRT_FOP_RENAMEAT:
		io_uring_prep_renameat(sqe, a->fd, a->path, a->fd2, a->path2, (unsigned)a->flags);
		break;
	case PRT_FOP_UNLINKAT:
		io_uring_prep_unlinkat(sqe, a->fd, a->path, a->flags);
		break;
	case PRT_FOP_SOCKET:
		io_uring_prep_socket(sqe, a->fd, a->fd2, a->flags, 0);
		break;
	case PRT_FOP_N:
		break;
	}
}

/*
 * A helper interrupted by a cancel may post the kernel's restart codes
 * (ERESTARTSYS 512 ... ERESTART_RESTARTBLOCK 516: an open waiting for a
 * FIFO does, Linux 6.18), which no caller knows: -EINTR, as a syscall
 * interrupted by a signal.
 */
static long fop_res(long res)
{
	return res <= -512 && res >= -516 ? -EINTR : res;
}

/* Drop a reference to heap request @r; the last frees it (any thread). */
static void req_put(struct prt__ioreq *r)
{
	/* acq_rel: the last one frees @r after every access of the other holder */
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
		prt__free(r, sizeof(*r));
}

/* The CQE of request @r, given up on, came with @res: close what it opened. */
static void giveup_end(struct prt__worker *w, struct prt__ioreq *r, int res)
{
	if (r->opens && res >= 0)
		close(res);
	PRT_WRITE_ONCE(w->io.orphans, w->io.orphans - 1); /* tests watch it */
	req_put(r);
}

/*
 * Queue an async cancel of @r. From a timer callback (rq lock held), so
 * no reaping: only where the SQ has room (else @r runs to its end), to
 * be submitted at the next service.
 */
static void giveup_cancel(struct prt__worker *w, struct prt__ioreq *r)
{
	struct io_uring_sqe *sqe;

	if (io_uring_sq_space_left(&w->io.ring) == 0 || prt__fault(PRT_FAULT_CANCEL))
		return;
	sqe = io_uring_get_sqe(&w->io.ring);
	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)r, 0);
	io_uring_sqe_set_data64(sqe, TAG_GIVEUP);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	if (!w->io.watch.queued)
		w->io.first_unsubmitted_ns = prt__now_ns();
	w->io.watch.queued++;
}

/*
 * Give up on timed file call @r, still in @w's ring (its timer fired, or
 * its fiber was cancelled: ur_cancel_fibers): its fiber, woken by the
 * caller, returns @res, and the ring disposes of the request's result.
 */
static void giveup(struct prt__worker *w, struct prt__ioreq *r, int res)
{
	r->orphan = true;
	r->res = res;
	PRT_WRITE_ONCE(w->io.orphans, w->io.orphans + 1);
	giveup_cancel(w, r);
}

/*
 * The timer of a timed file call (prt__timer_fn, local: on the ring's
 * worker @ctx, rq lock held): if its request is still in the ring and
 * not given up on (a cancel), give up on it and wake the fiber with
 * -ETIMEDOUT.
 */
static void fop_timer_fire(struct prt__timer *t, void *ctx)
{
	struct prt__worker *w = ctx;
	struct prt__fiber *f = prt__container_of(t, struct prt__fiber, timer);
	struct prt__ioreq *r = f->ioreq;

	if (!r || r->done || r->orphan)
		return;
	giveup(w, r, -ETIMEDOUT);
	prt__wait_wake_here(&r->wait, w);
}

/*
 * File call @a (SQE flags @sqe_flags) until its end or CLOCK_MONOTONIC
 * @deadline: see above. *@dropped: the kernel dropped it (kernel_dropped).
 */
static long fop_timed_once(struct prt__worker *w, const struct prt__fopargs *a,
			   unsigned sqe_flags, uint64_t deadline, bool *dropped)
{
	struct prt__fiber *self = w->curr;
	struct prt__ioreq *r = prt__alloc(sizeof(*r));
	struct io_uring_sqe *sqe;
	long res;

	if (!r)
		return -ENOMEM;
	*r = (struct prt__ioreq){ .pending = 1, .opens = prt__fop_opens(a->op), .cancellable = true };
	prt__wait_init(&r->wait, self);
	atomic_init(&r->refs, 2); /* the fiber's, the ring's */
	self->ioreq = r;
	/* Armed first: no memory for it, and nothing was done. */
	if (prt__timer_arm(w, deadline, fop_timer_fire, true)) {
		self->ioreq = NULL;
		prt__free(r, sizeof(*r));
		return -ENOMEM;
	}
	sqe = get_sqe(w, 1);
	prep_fop(sqe, a);
	sqe->flags |= (uint8_t)sqe_flags;
	r->fd = sqe->fd;
	io_uring_sqe_set_data(sqe, r);
	if (!fault_dropped(sqe, r)) {
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + 1);
		prt__list_add_tail(&w->io.reqs, &r->node); /* for ur_cancel_fibers */
		submit(w); /* the kernel copies the paths now, before the timer may fire */
		prt__io_park_req(w, r);
	} else {
		req_put(r); /* the ring's: it never had it */
	}
	prt__timer_cancel(self);
	self->ioreq = NULL;
	res = r->res;
	*dropped = kernel_dropped(r);
	req_put(r);
	return res;
}

/* fop_timed_once, made again while the kernel drops it (kernel_dropped). */
static long fop_timed(struct prt__worker *w, const struct prt__fopargs *a, unsigned sqe_flags,
		      uint64_t deadline)
{
	for (int tries = 0;; tries++) {
		bool dropped = false;
		long res = fop_timed_once(w, a, sqe_flags, deadline, &dropped);

		if (prt__likely(!dropped))
			return res;
		if (tries == PRT_IOWQ_RETRIES)
			return -EAGAIN;
		if (prt__now_ns() >= deadline)
			return -ETIMEDOUT;
		w = prt__cur_worker();
	}
}

/* File call @a, with @sqe_flags, until its end (or @deadline, if not 0); its result. */
static long fop_once(struct prt__worker *w, const struct prt__fopargs *a, unsigned sqe_flags,
		     uint64_t deadline)
{
	struct io_uring_sqe *sqe;

	if (deadline)
		return fop_res(fop_timed(w, a, sqe_flags, deadline));
	sqe = get_sqe(w, 1);
	prep_fop(sqe, a);
	sqe->flags |= (uint8_t)sqe_flags;
	/* A socket is made at once (never waits): not cancellable, as without the opcode. */
	return fop_res(uring_wait(w, sqe, 0, a->op != PRT_FOP_SOCKET));
}

/*
 * Is @fd (just opened by the ring) a FIFO? Its type never changes: the
 * cached attributes will do (no round trip on a network file system).
 */
static bool is_fifo(int fd)
{
	struct statx st;

	return statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_TYPE, &st) == 0 &&
	       S_ISFIFO(st.stx_mode);
}

/*
 * The time left until @deadline (0: none) as a relative timeout for a
 * wait, through *@tmo; false if it has passed.
 */
static bool time_left(uint64_t deadline, uint64_t *tmo)
{
	uint64_t now;

	*tmo = 0;
	if (!deadline)
		return true;
	now = prt__now_ns();
	*tmo = deadline > now ? deadline - now : 0;
	return deadline > now;
}

/*
 * A FIFO the ring opened for reading without waiting for a writer
 * (fifo_fixup): wait until it has data or a writer has come and gone
 * (POLLIN, POLLHUP: states that stay, so no writer is missed whatever
 * the timing). Returns @fd, or -errno with @fd closed.
 */
static long fifo_wait_writer(struct prt__worker *w, int fd, uint64_t deadline)
{
	uint64_t tmo;
	int saved;
	long r;

	r = time_left(deadline, &tmo) ? ur_poll(w, fd, POLLIN, tmo) : -ETIMEDOUT;
	if (r >= 0)
		return fd;
	saved = prt__errno_get();
	prt__sys_ret(close(fd), saved); /* errno as it was */
	return r;
}

/*
 * An open of a FIFO on the ring does not wait for the other end as
 * open(2) does: the kernel first tries it from the cache without
 * blocking, as with O_NONBLOCK (Linux 6.18, io_openat2), so for reading
 * it opens at once, and for writing it fails with -ENXIO while no
 * reader is there. Opened for writing, it is made again on a helper
 * (IOSQE_ASYNC: it blocks there as open(2), and a timeout's cancel
 * interrupts it). Opened for reading, the fd is kept (closing it could
 * drop what a writer wrote in between, or fail its writes) and the call
 * waits until a writer has written or left (fifo_wait_writer): later
 * than open(2) only while a writer holds the FIFO open without writing.
 * @res: the ring's open's result.
 */
static long fifo_fixup(const struct prt__fopargs *a, long res, uint64_t deadline)
{
	uint64_t tmo;

	if (a->op != PRT_FOP_OPENAT || (a->flags & (O_NONBLOCK | O_PATH)))
		return res;
	if (res == -ENXIO && (a->flags & O_ACCMODE) == O_WRONLY)
		return time_left(deadline, &tmo) ?
			       fop_once(prt__cur_worker(), a, IOSQE_ASYNC, deadline) : -ETIMEDOUT;
	if (res >= 0 && (a->flags & O_ACCMODE) == O_RDONLY && is_fifo((int)res))
		return fifo_wait_writer(prt__cur_worker(), (int)res, deadline);
	return res;
}

/* A file call on the ring; a FIFO's open waits for the other end (fifo_fixup). */
static long ur_fop(struct prt__worker *w, const struct prt__fopargs *a, uint64_t tmo)
{
	uint64_t deadline = tmo ? prt__deadline_in(tmo) : 0;

	return fifo_fixup(a, fop_once(w, a, 0, deadline), deadline);
}

/*
 * The worker leaves its loop: cancel every request still in the ring
 * (requests given up on are all that can be left) and reap until those
 * given up on are done, closing what they opened.
 */
static void ur_thread_stop(struct prt__worker *w)
{
	struct prt__io *io = &w->io;
	struct io_uring_sqe *sqe;

	if (!io->orphans)
		return;
	sqe = get_sqe(w, 1);
	io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
	io_uring_sqe_set_data64(sqe, TAG_GIVEUP);
	while (io->orphans) {
		io_uring_submit_and_wait(&io->ring, 1);
		io->watch.queued = 0;
		reap_uring(w);
	}
}

const struct prt__io_backend prt__io_uring = {
	.id = PRT_IO_URING,
	.multishot_recv = true,
	.probe = ur_probe,
	.init = ur_init,
	.thread_start = ur_thread_start,
	.fini = ur_fini,
	.service = ur_service,
	.wait = ur_wait,
	.kick = ur_kick,
	.cancel = ur_cancel,
	.cancel_fibers = ur_cancel_fibers,
	.op = ur_op,
	.poll = ur_poll,
	.shutdown = ur_shutdown,
	.close = ur_close,
	.fop = ur_fop,
	.thread_stop = ur_thread_stop,
};
