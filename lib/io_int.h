/* SPDX-License-Identifier: MIT */
#ifndef PRT_IO_INT_H
#define PRT_IO_INT_H

#include <limits.h>

#include <liburing.h>
#include <proxyrt/io.h>

#include "platform.h"
#include "wait_types.h"

struct prt__worker;
struct prt__fiber;
struct prt_runtime;
struct prt__io_backend;

/*
 * A fiber's I/O request, on its stack while it waits. Only the worker
 * that queued it touches it afterwards (reaping, timers, cancels all run
 * on that worker), so no lock: the fiber parks BLOCKED before the first
 * scheduling point that could complete it.
 */
struct prt__ioreq {
	struct prt__wait wait;  /* the fiber's: ended by the worker that reaps @res */
	int res;
	int pending;    /* uring: CQEs still to come (op, link timeout) */
	bool done;
	bool timed_out; /* uring: the link timeout fired */
	/*
	 * prt_cancel may end it (a fiber's prt_read and the like, not a
	 * close's own request); @cancelled once its worker has asked for
	 * that (prt__io_backend.cancel_fibers). uring: every request a fiber
	 * waits for is on its worker's io.reqs (@node) while in flight.
	 */
	bool cancellable, cancelled;
	/*
	 * uring: a prt_close() of @fd (the fd the request names) cancelled
	 * by fd on this request's worker while it was in flight (ur_cancel):
	 * a -ECANCELED is then that close's, not the kernel's own (a call it
	 * dropped: io_uring.c, kernel_dropped).
	 */
	bool closed;
	struct prt__list node;
	/*
	 * uring, a file call with a timeout (io_uring.c, "File calls"): the
	 * request is on the heap, held by the fiber and by the ring (@refs);
	 * @orphan once its timer gave up on it (the fiber returned
	 * -ETIMEDOUT), so the ring disposes of its result (@opens: an fd to
	 * close). Written on the ring's worker only; the fiber reads @res
	 * after its wake.
	 */
	atomic_int refs;
	bool orphan;
	bool opens;
	/* epoll backend: the fd and events waited for, bucket chain. */
	int fd;
	uint32_t events;
	struct prt__ioreq *next;
};


/* A command posted to a worker by another thread (prt_close's cancel). */
struct prt__iocmd {
	struct prt__iocmd *next;
	int fd;
	uint64_t ud; /* if not 0: cancel the request with this user_data, not @fd's */
	struct prt__wait *done; /* woken when @left reaches 0 */
	atomic_int *left;
};

#define PRT_IO_BUCKETS 256
/* Buckets of fds being closed (struct prt__rtio.closing). */
#define PRT_IO_CLOSING 1024
/* How long a call that met a close of its bucket sleeps before it looks again, ns. */
#define PRT_IO_CLOSE_BACKOFF_NS 20000u
/*
 * A backend's poll (struct prt__io_ops.poll) of an fd whose file has no
 * wait queue (a regular file, a directory, /dev/null: epoll_ctl says
 * EPERM, the ring's poll -EINVAL): prt_poll_timeout answers as poll(2)
 * would (io.c, poll_no_waitq). Never returned to the application.
 */
#define PRT_IO_POLL_NO_WAITQ INT_MIN
/* How often such a poll looks again whether its fd still names its file, ns. */
#define PRT_IO_NO_WAITQ_RECHECK_NS 50000000u

/* prt__io.iowq_aff, besides a -errno */
enum { PRT_IOWQ_AFF_NONE = 0, PRT_IOWQ_AFF_SET = 1 };

/*
 * A completion handler, for CQEs that are not a parked fiber's request
 * (a receive stream's multishot recv and end watch: stream.c), as
 * libuv's uv__io_t carries its callback. The ring's reaper calls @cqe
 * for each CQE whose user_data is the handler's address |
 * PRT_IO_TAG_HANDLER, and knows nothing of its user. Returns fibers
 * woken.
 */
struct prt__io_handler {
	int (*cqe)(struct prt__worker *w, struct prt__io_handler *h, int res, unsigned flags);
};
#define PRT_IO_TAG_HANDLER 6u

/*
 * A worker's provided-buffer ring for receive streams (stream.c), set
 * up by the worker thread on its first stream. Buffers move: ring ->
 * kernel -> a stream's queue (linked through @next, under the stream's
 * lock) -> back to the ring under @lock, from any thread.
 */
#define PRT_SBUF_N 1024u
#define PRT_SBUF_SZ 2048u
#define PRT_SBUF_BGID 0
struct prt__sbufs {
	int state;                    /* 0 not set up, 1 ready, -errno: streams here read plainly */
	struct io_uring_buf_ring *br; /* also the start of the mapping */
	char *mem;                    /* PRT_SBUF_N buffers of PRT_SBUF_SZ */
	uint16_t *next, *len;         /* per buffer: next in a stream's queue, bytes in it */
	size_t map_sz;
	prt__spinlock_t lock;
};

/*
 * What prt__io_point (sched_int.h) looks at, at every scheduling point,
 * to tell whether the backend's service is due (prt__io_due). Each
 * backend keeps it current (io_backend.h, "The watch"): one inline test
 * of the same fields for every backend, no call and no backend test on
 * the path every yield and switch takes. The worker thread's own.
 */
struct prt__io_watch {
	unsigned queued;     /* requests prepared here, not yet given to the kernel (uring: SQEs) */
	unsigned polled;     /* requests only a poll finds (epoll: bucket waiters): poll every 64 points */
	unsigned tick;       /* scheduling points since the last poll (epoll), or service (uring) */
	unsigned mask;       /* bits of *@flags that mean "enter the kernel" */
	unsigned *head, *tail; /* a completion queue the kernel fills (tail) and we empty (head) */
	unsigned *flags;     /* a word the kernel sets @mask bits in */
};

/* Per-worker I/O state; the worker thread's own except @cmds. */
struct prt__io {
	const struct prt__io_backend *ops; /* the runtime's backend (io_backend.h) */
	struct prt__io_watch watch;
	_Atomic(struct prt__iocmd *) cmds; /* pushed by any thread (post_cmd, io.c) */
	/*
	 * prt_cancel's command (prt__io_cancel_post): cancel the requests of
	 * the fibers with a cancel pending. Posted by whoever turns
	 * @cancel_posted 0 -> 1, taken back to 0 by this worker when it runs
	 * it, so it is on @cmds at most once.
	 */
	struct prt__iocmd cancel_cmd;
	atomic_uint cancel_posted;
	struct prt__list reqs; /* uring: the cancellable requests in flight here */
	unsigned inflight;    /* requests queued whose completion is not reaped */
	/*
	 * Fiber calls on an fd under way that began on this worker
	 * (prt__io_enter .. prt__io_leave, across their wait): prt_close
	 * reads it with @inflight (io.c, "A close and a call that begins").
	 */
	atomic_uint entering;
	int evfd;             /* eventfd: wakes the worker from any thread */
	/* io_uring (io_uring.c) */
	struct io_uring ring;
	uint64_t first_unsubmitted_ns; /* when the oldest of watch.queued was prepared */
	bool msg_ring;        /* cross-worker wake through IORING_OP_MSG_RING */
	bool ev_armed;        /* a read of @evfd is pending */
	unsigned orphans;     /* file calls given up by their timeout, still in the ring */
	/*
	 * Where the worker thread's io-wq helpers may run (ur_thread_start):
	 * PRT_IOWQ_AFF_SET, PRT_IOWQ_AFF_NONE (not asked for: see there), or
	 * the -errno of IORING_REGISTER_IOWQ_AFF. Written once by the worker
	 * thread before it counts itself started.
	 */
	int iowq_aff;
	uint64_t evbuf;
	struct prt__sbufs sbufs;
	/* Set by whoever registered @sbufs in the ring (stream.c); the backend calls it once the ring is gone. */
	void (*sbufs_fini)(struct prt__worker *w);
	/* epoll (io_epoll.c) */
	int epfd;
	bool no_pwait2;       /* epoll_pwait2 said ENOSYS: epoll_wait in ms */
	struct prt__ioreq *bucket[PRT_IO_BUCKETS]; /* waiters by fd; watch.polled counts them */
};

/* Runtime-wide: the backend chosen at creation and the offload pool. */
struct prt__offload;
struct prt__rtio {
	const struct prt__io_backend *ops;
	bool msg_ring;        /* uring: the kernel has IORING_OP_MSG_RING */
	/* uring: bit 1 << PRT_FOP_* for each file call the ring carries (the probe); else offload */
	unsigned fop_native;
	unsigned setup_flags; /* uring: io_uring_setup flags every worker ring gets */
	unsigned entries;
	unsigned offload_max;
	/* prt_close calls under way, by fd % PRT_IO_CLOSING (io.c, "A close and a call that begins") */
	atomic_uint closing[PRT_IO_CLOSING];
	char notice[200];
	struct prt__offload *offload;
};

/*
 * A fiber's call on @fd begins on *@w: 0 with (*@w)->io.entering raised
 * (prt__io_leave(&(*@w)->io) drops it) and the fiber's wait set to
 * I/O @what on @fd (the dump's), or -ECANCELED (a cancel while it
 * waited for a close of its fd's bucket to end). *@w is the worker the
 * fiber is on when it returns (a wait may move it). *@tmo (ns, 0: none)
 * is the call's timeout, made what is left of it if it waited.
 */
int prt__io_enter(struct prt__worker **w, int fd, const char *what, uint64_t *tmo);

static inline void prt__io_leave(struct prt__io *io)
{
	/* release: what the call did comes before; a closer reads it seq_cst */
	atomic_fetch_sub_explicit(&io->entering, 1, memory_order_release);
}

/*
 * What prt__io_due finds without a poll: requests prepared and not
 * given to the kernel, completions in the kernel's queue, the kernel
 * asking to be entered, or commands posted. All of it shows in memory
 * (an idle worker's timer lead spins on it, idle.c).
 */
static inline bool prt__io_waiting(struct prt__io *io)
{
	struct prt__io_watch *x = &io->watch;

	/*
	 * Every word read, their bits or'ed, one branch: nearly always all
	 * are 0, and a chain of || tests took more instructions and three
	 * more branches a yield (W1, callgrind).
	 */
	unsigned v = x->queued |
		     /* acquire: pairs with the kernel's release of the CQ tail, as io_uring_cq_ready */
		     (atomic_load_explicit((_Atomic unsigned *)x->tail, memory_order_acquire) ^
		      *x->head) |
		     /* relaxed: a hint; entering the kernel orders what it reports (IO_URING_READ_ONCE) */
		     (atomic_load_explicit((_Atomic unsigned *)x->flags, memory_order_relaxed) & x->mask);

	/* relaxed: a hint; run_cmds takes the list with acquire */
	return ((uintptr_t)v | (uintptr_t)atomic_load_explicit(&io->cmds, memory_order_relaxed)) != 0;
}

/*
 * Is @io's service due at this scheduling point? Requests prepared but
 * not given to the kernel, completions in the kernel's queue, the
 * kernel asking to be entered, every 64th point while requests wait for
 * a poll, or commands posted. Each backend keeps @io->watch so that this
 * is its own test (io_backend.h, "The watch"): for io_uring the SQ count,
 * the CQ and the SQ flags, for epoll the poll tick.
 */
static inline bool prt__io_due(struct prt__io *io)
{
	struct prt__io_watch *x = &io->watch;

	if (prt__likely(!prt__io_waiting(io)))
		return x->polled && (++x->tick & 63) == 0;
	return true;
}

int prt__io_rt_init(struct prt_runtime *rt, const prt_runtime_config_t *cfg);
int prt__io_init(struct prt__worker *w);
/* On the worker thread, before its first submission (single-issuer rings). */
void prt__io_thread_start(struct prt__worker *w);
/*
 * On the worker thread, when it leaves its loop (the runtime stops):
 * wait for the requests no fiber waits for any more (file calls given
 * up by their timeout), so that nothing they made outlives the runtime.
 */
void prt__io_thread_stop(struct prt__worker *w);
void prt__io_fini(struct prt__worker *w);

/*
 * Scheduling-point work: submit what is queued when the worker is about
 * to run out of work (or the batch is large or old), reap completions
 * and wake their fibers. Cheap when there is nothing to do. Never with
 * the rq lock held.
 */
int prt__io_service(struct prt__worker *w, bool force_submit);

/*
 * Idle worker: sleep in the ring (or epoll) until woken, an I/O
 * completes, or CLOCK_MONOTONIC @deadline (0: none).
 */
void prt__io_wait(struct prt__worker *w, uint64_t deadline);
/* Wake worker @v from its prt__io_wait (any thread). */
void prt__io_kick(struct prt__worker *v);

/*
 * prt_cancel: have worker @v cancel the requests of its fibers with a
 * cancel pending (their I/O waits: prt__fiber.cancel_io). Posts @v's
 * cancel command unless it is posted already, and wakes @v. Any thread;
 * from outside v's runtime the caller holds a reference on it.
 */
void prt__io_cancel_post(struct prt__worker *v);

/*
 * Have worker @v[i] cancel its request @ud[i], for each i < @n (at most
 * 2); the calling fiber (on @w) waits until every cancel is acked.
 */
void prt__io_cancel_reqs(struct prt__worker *w, int n, struct prt__worker *const *v,
			 const uint64_t *ud);

#endif
