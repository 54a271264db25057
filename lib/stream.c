/* SPDX-License-Identifier: MIT */
/*
 * Receive streams (proxyrt/io.h): one multishot recv kept armed per
 * socket, reading into the worker's provided-buffer ring.
 *
 * The receive is armed on the ring of the worker the reader runs on
 * when it finds nothing queued (@aw); its CQEs are reaped there and
 * queue buffers on the stream under s->lock, waking the reader. The
 * reader copies from the queue on whatever worker it runs and returns
 * each emptied buffer to @aw's ring (under that ring's lock). It re-arms
 * only with the queue empty, so queued buffers always belong to @aw.
 *
 * The end watch. Linux (6.18 at least) may leave a multishot recv armed
 * for good after the peer's last bytes and its end (shutdown, close,
 * reset): it posts the data, then never the end, nor anything else,
 * though the socket reads EOF (AF_UNIX; seen most often on a receive
 * re-armed while the peer finishes; the kernel's a68ed2df, Linux 7.0,
 * fixes one such race, not all). So with the first receive the stream
 * also arms a one-shot poll for POLLRDHUP (POLLHUP and POLLERR come
 * with it) on the same ring (@ew); a poll looks at the socket's state at
 * each wakeup, so it cannot miss a state that lasts. When it fires no
 * more data will come: the reader cancels the receive (its last CQE
 * comes after every CQE with data) and reads the rest with plain recvs,
 * which see the end.
 *
 * Wake protocol (the wait primitive, wait.h): the reader publishes its
 * wait in s->waiter under s->lock and sleeps on it; the reaper takes
 * s->waiter under s->lock and wakes it. The reaper wakes with s->lock
 * held, and the reader unpublishes under s->lock before it leaves, so
 * the wait is still there; a wake before the reader sleeps, or after
 * its timeout, is absorbed by the wait's state.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>

#if PRT_USE_TSAN
#include <sanitizer/tsan_interface.h>
/*
 * A buffer's return (the ring tail, release) is ordered before the CQE
 * that hands it out again (the CQ tail, acquire) by the kernel, which
 * TSan cannot see: tell it.
 */
#define sbuf_tsan_release(b, bid) __tsan_release(&(b)->len[bid])
#define sbuf_tsan_acquire(b, bid) __tsan_acquire(&(b)->len[bid])
#else
#define sbuf_tsan_release(b, bid) ((void)0)
#define sbuf_tsan_acquire(b, bid) ((void)0)
#endif

#include "alloc.h"
#include "fault.h"
#include "io_backend.h"
#include "io_uring_int.h"
#include "runtime_int.h"
#include "sched_int.h"
#include "wait.h"
#include "worker.h"

/* Every field under @lock, except @fd and @rt (set at open). */
struct prt_stream {
	prt__spinlock_t lock;
	int fd;
	struct prt_runtime *rt;
	struct prt__worker *aw; /* ring of the receive; owner of the queued buffers */
	struct prt__worker *ew; /* ring of the end watch */
	bool armed;             /* a multishot recv is armed on @aw (counted in its inflight) */
	bool watching;          /* the end watch is armed on @ew (counted in its inflight) */
	bool ended;             /* the watch fired: no more data comes, read plainly */
	bool stopping;          /* the reader cancels the receive: its -ECANCELED is no error */
	bool eof;
	bool nobufs;            /* ended for lack of buffers: the next empty read uses prt_recv */
	bool plain;             /* no multishot here: every read is prt_recv */
	bool busy;              /* a fiber reads, or closes */
	int err;                /* the receive's error, returned once the queue is drained */
	unsigned nq, off;       /* buffers queued; bytes of the first already read */
	uint16_t head, tail;
	struct prt__wait *waiter;    /* the reader's wait; lock */
	/* CQEs of the receive and of the end watch come back through these (io_int.h). */
	struct prt__io_handler recv_h, end_h;
	struct prt__wait *closed;    /* the closer waits for the last CQE of both; lock */
};

/* The user_data of the receive's and the end watch's SQEs: their handlers (io_int.h). */
static uint64_t recv_ud(struct prt_stream *s)
{
	return (uint64_t)(uintptr_t)&s->recv_h | PRT_IO_TAG_HANDLER;
}

static uint64_t end_ud(struct prt_stream *s)
{
	return (uint64_t)(uintptr_t)&s->end_h | PRT_IO_TAG_HANDLER;
}

/* ---- the worker's provided buffers ----------------------------------------- */

/* On @w's thread. 0, or -errno (streams there read plainly for now). */
static void stream_bufs_fini(struct prt__worker *w);

static int sbufs_setup(struct prt__worker *w)
{
	struct prt__sbufs *b = &w->io.sbufs;
	size_t ring = PRT_SBUF_N * sizeof(struct io_uring_buf);
	size_t data = (size_t)PRT_SBUF_N * PRT_SBUF_SZ;
	size_t meta = 2 * PRT_SBUF_N * sizeof(uint16_t);
	struct io_uring_buf_reg reg = { .ring_entries = PRT_SBUF_N, .bgid = PRT_SBUF_BGID };
	void *p;
	int err;

	if (b->state)
		return b->state > 0 ? 0 : b->state;
	if (!w->io.ops->multishot_recv) {
		b->state = -EOPNOTSUPP;
		return b->state;
	}
	b->map_sz = (ring + data + meta + 4095) & ~(size_t)4095;
	err = prt__errno_get(); /* mmap's is not the caller's (prt__sys_ret) */
	p = prt__fault(PRT_FAULT_MMAP) ? MAP_FAILED
				       : mmap(NULL, b->map_sz, PROT_READ | PROT_WRITE,
					      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	prt__errno_set(err);
	if (p == MAP_FAILED)
		return -ENOMEM; /* try again on a later arm */
	b->br = p;
	b->mem = (char *)p + ring;
	b->next = (uint16_t *)(void *)(b->mem + data);
	b->len = b->next + PRT_SBUF_N;
	reg.ring_addr = (uint64_t)(uintptr_t)p;
	err = io_uring_register_buf_ring(&w->io.ring, &reg, 0);
	if (err) {
		munmap(p, b->map_sz);
		b->br = NULL;
		if (err != -ENOMEM)
			b->state = err; /* this kernel has no buffer rings: for good */
		return err;
	}
	io_uring_buf_ring_init(b->br);
	for (unsigned i = 0; i < PRT_SBUF_N; i++)
		io_uring_buf_ring_add(b->br, b->mem + (size_t)i * PRT_SBUF_SZ, PRT_SBUF_SZ,
				      (unsigned short)i, io_uring_buf_ring_mask(PRT_SBUF_N), (int)i);
	io_uring_buf_ring_advance(b->br, (int)PRT_SBUF_N);
	b->state = 1;
	w->io.sbufs_fini = stream_bufs_fini;
	return 0;
}

/* The ring is gone (the backend's fini, through io.sbufs_fini): unmap its buffers. */
static void stream_bufs_fini(struct prt__worker *w)
{
	struct prt__sbufs *b = &w->io.sbufs;

	if (b->br)
		munmap(b->br, b->map_sz);
	b->br = NULL;
	b->state = 0;
}

/* Give buffer @bid back to @w's ring; any thread. */
static void sbuf_put(struct prt__worker *w, uint16_t bid)
{
	struct prt__sbufs *b = &w->io.sbufs;

	sbuf_tsan_release(b, bid);
	prt__spin_lock(&b->lock);
	io_uring_buf_ring_add(b->br, b->mem + (size_t)bid * PRT_SBUF_SZ, PRT_SBUF_SZ, bid,
			      io_uring_buf_ring_mask(PRT_SBUF_N), 0);
	io_uring_buf_ring_advance(b->br, 1); /* release: the kernel sees the entry */
	prt__spin_unlock(&b->lock);
}

/* ---- completions ------------------------------------------------------------- */

/* A CQE of @s came: wake its reader if it waits; s->lock held. */
static int wake_reader(struct prt_stream *s)
{
	struct prt__wait *wt = s->waiter;

	if (!wt)
		return 0;
	s->waiter = NULL;
	/* s->lock held: the reader cannot leave @wt until it retakes it. */
	return prt__wait_wake(wt);
}

/*
 * The end of a CQE of @s (s->lock held, released here): count it, wake
 * the reader, and the closer if this was the stream's last CQE
 * (@closed). Returns fibers woken.
 */
static int cqe_done(struct prt__worker *w, struct prt_stream *s, struct prt__wait *closed)
{
	int woken;

	prt__stat_inc(&w->stats.io_ops, 1);
	woken = wake_reader(s);
	prt__spin_unlock(&s->lock);
	/* The closer frees @s once woken: nothing of @s after this. */
	if (closed)
		prt__wait_wake(closed);
	return woken;
}

/* A CQE of @h, a stream's receive, reaped on @w; returns fibers woken. */
static int stream_cqe(struct prt__worker *w, struct prt__io_handler *h, int res, unsigned flags)
{
	struct prt_stream *s = prt__container_of(h, struct prt_stream, recv_h);
	struct prt__sbufs *b = &w->io.sbufs;
	struct prt__wait *closed = NULL;

	prt__spin_lock(&s->lock);
	if (flags & IORING_CQE_F_BUFFER) {
		uint16_t bid = (uint16_t)(flags >> IORING_CQE_BUFFER_SHIFT);

		sbuf_tsan_acquire(b, bid);
		if (res > 0) {
			b->len[bid] = (uint16_t)res;
			if (s->nq++)
				b->next[s->tail] = bid;
			else
				s->head = bid;
			s->tail = bid;
		} else {
			sbuf_put(w, bid);
		}
	}
	if (!(flags & IORING_CQE_F_MORE)) {
		s->armed = false;
		PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
		if (res == 0)
			s->eof = true;
		else if (res == -ENOBUFS)
			s->nobufs = true;
		else if (res == -EINVAL)
			s->plain = true; /* no multishot recv here, or not a socket: recv(2) will say */
		else if (res < 0 && !s->err && !(res == -ECANCELED && s->stopping))
			s->err = res; /* (our own cancel is no error: the rest is read plainly) */
		s->stopping = false;
		closed = s->watching ? NULL : s->closed;
	}
	return cqe_done(w, s, closed);
}

/* The CQE of @h, a stream's end watch (its one poll), reaped on @w; returns fibers woken. */
static int stream_end_cqe(struct prt__worker *w, struct prt__io_handler *h, int res, unsigned flags)
{
	struct prt_stream *s = prt__container_of(h, struct prt_stream, end_h);
	struct prt__wait *closed;

	(void)flags;
	prt__spin_lock(&s->lock);
	s->watching = false;
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight - 1);
	/*
	 * The peer's end or an error (the poll's mask), or the poll failed:
	 * either way the receive is not to be trusted with the end. A cancel
	 * (prt_close, prt_stream_close) just leaves no watch.
	 */
	if (res != -ECANCELED)
		s->ended = true;
	closed = s->armed ? NULL : s->closed;
	return cqe_done(w, s, closed);
}

/* ---- the API ---------------------------------------------------------------- */

/* Is @fd a SOCK_STREAM socket (or not a socket: its recv says so)? errno kept. */
static bool stream_socket(int fd)
{
	int type = prt__sock_opt(fd, SO_TYPE);

	return type < 0 || type == SOCK_STREAM;
}

PRT_API int prt_stream_open(prt_stream_t **sp, int fd)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt_stream *s;

	if (!sp)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (!w)
		return -EPERM;
	s = prt__alloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	prt__spin_init(&s->lock);
	s->fd = fd;
	s->rt = w->rt;
	/*
	 * Multishot receives fill the ring's buffers back to back: a
	 * message socket's boundaries would be lost (a review: a 5000-byte
	 * SEQPACKET message cut to a 2 KiB buffer, the rest dropped, the next
	 * message joined on). Such a socket gets plain receives, one message
	 * each.
	 */
	s->plain = !w->io.ops->multishot_recv || !stream_socket(fd);
	s->recv_h.cqe = stream_cqe;
	s->end_h.cqe = stream_end_cqe;
	*sp = s;
	return 0;
}

PRT_API int prt_stream_multishot(const prt_stream_t *s)
{
	if (!s)
		return -EINVAL;
	return !PRT_READ_ONCE(s->plain);
}

/* Copy up to @n queued bytes out; s->lock held, s->nq > 0. */
static size_t copy_out(struct prt_stream *s, char *buf, size_t n)
{
	struct prt__sbufs *b = &s->aw->io.sbufs;
	size_t got = 0;

	while (s->nq && got < n) {
		uint16_t bid = s->head;
		size_t k = b->len[bid] - s->off;

		if (k > n - got)
			k = n - got;
		memcpy(buf + got, b->mem + (size_t)bid * PRT_SBUF_SZ + s->off, k);
		got += k;
		s->off += (unsigned)k;
		if (s->off == b->len[bid]) {
			s->head = b->next[bid];
			s->nq--;
			s->off = 0;
			sbuf_put(s->aw, bid);
		}
	}
	return got;
}

/*
 * Arm the multishot recv on @w, and the end watch there if there is none;
 * s->lock held, nothing queued or armed, the end not seen.
 */
static void arm(struct prt_stream *s, struct prt__worker *w)
{
	bool watch = !s->watching;
	struct io_uring_sqe *sqe;

	s->armed = true;
	s->aw = w;
	if (watch) {
		s->watching = true;
		s->ew = w;
	}
	PRT_WRITE_ONCE(w->io.inflight, w->io.inflight + (watch ? 2u : 1u));
	/* Not under s->lock: taking an SQE may reap (no CQE of ours before we submit). */
	prt__spin_unlock(&s->lock);
	sqe = prt__io_sqe(w, watch ? 2u : 1u);
	io_uring_prep_recv(sqe, s->fd, NULL, 0, 0);
	sqe->ioprio |= IORING_RECV_MULTISHOT;
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = PRT_SBUF_BGID;
	io_uring_sqe_set_data64(sqe, recv_ud(s));
	if (watch) {
		sqe = io_uring_get_sqe(&w->io.ring); /* room reserved above */
		io_uring_prep_poll_add(sqe, prt__fault(PRT_FAULT_WATCH) ? -1 : s->fd, POLLRDHUP);
		io_uring_sqe_set_data64(sqe, end_ud(s));
	}
	prt__spin_lock(&s->lock);
}

/*
 * The watch saw the end while the receive is armed: cancel it (Linux may
 * never end it itself); its last CQE wakes the reader. s->lock held,
 * dropped meanwhile.
 */
static void stop_recv(struct prt_stream *s, struct prt__worker *w)
{
	struct prt__worker *aw = s->aw;
	uint64_t ud = recv_ud(s);

	s->stopping = true;
	prt__spin_unlock(&s->lock);
	prt__set_wait(w->curr, PRT_WK_IO, "stream_recv", s->fd);
	prt__io_cancel_reqs(w, 1, &aw, &ud);
	prt__spin_lock(&s->lock);
}

/* One recv(2) through the io layer until @deadline (0: none); s->lock held, dropped meanwhile. */
static ssize_t recv_plain(struct prt_stream *s, void *buf, size_t n, uint64_t deadline)
{
	uint64_t left = 0;
	ssize_t r;

	prt__spin_unlock(&s->lock);
	if (deadline) {
		uint64_t now = prt__now_ns();

		left = deadline > now ? deadline - now : 1;
	}
	r = prt_recv_timeout(s->fd, buf, n, 0, left);
	prt__spin_lock(&s->lock);
	return r;
}

/*
 * Wait until a CQE of @s wakes us, @deadline passes or a prt_cancel;
 * s->lock held on entry and on return. Returns 0 (look again), ENOMEM
 * (the timer could not be armed) or ECANCELED.
 */
static int wait_data(struct prt_stream *s, struct prt__worker *w, uint64_t deadline)
{
	struct prt__wait wt;
	int err;

	prt__wait_init(&wt, w->curr);
	s->waiter = &wt;
	prt__set_wait(w->curr, PRT_WK_IO, "stream_recv", s->fd);
	prt__spin_unlock(&s->lock);
	err = prt__wait_block_nospin(&wt, deadline, true); /* our worker reaps the CQE: no spin */
	prt__spin_lock(&s->lock);
	if (s->waiter == &wt)
		s->waiter = NULL; /* timed out or cancelled, and no CQE took it since */
	return err == ENOMEM || err == ECANCELED ? err : 0;
}

PRT_API ssize_t prt_stream_recv(prt_stream_t *s, void *buf, size_t n, uint64_t timeout_ns)
{
	struct prt__worker *w = prt__cur_worker();
	uint64_t deadline = timeout_ns ? prt__deadline_in(timeout_ns) : 0;
	ssize_t r;

	if (!s || (!buf && n))
		return -EINVAL;
	if (!w || w->rt != s->rt)
		return -EPERM;
	if (!n)
		return 0;
	prt__spin_lock(&s->lock);
	if (s->busy) {
		prt__spin_unlock(&s->lock);
		return -EBUSY;
	}
	s->busy = true;
	for (;;) {
		if (s->nq) {
			r = (ssize_t)copy_out(s, buf, n);
			break;
		}
		if (s->err || s->eof) {
			r = s->err; /* sticky, as a socket's */
			break;
		}
		if (s->ended && s->armed && !s->stopping) {
			stop_recv(s, w);
			w = prt__cur_worker();
			continue; /* its last CQE may have come meanwhile */
		}
		if (!s->armed && (s->plain || s->ended || s->nobufs)) {
			s->nobufs = false; /* re-arm next time: buffers come back */
			r = recv_plain(s, buf, n, deadline);
			break;
		}
		if (!s->armed) {
			int err;

			/* Set-up is a syscall: not under s->lock (only readers arm, and we are it). */
			prt__spin_unlock(&s->lock);
			err = sbufs_setup(w);
			prt__spin_lock(&s->lock);
			if (err == -ENOMEM) {
				s->nobufs = true; /* this read goes plain */
				continue;
			}
			if (err) {
				s->plain = true;
				continue;
			}
			arm(s, w);
			continue; /* a CQE may have come while unlocked */
		}
		if (deadline && prt__now_ns() >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		if (prt__cancel_pending(w->curr)) {
			r = -ECANCELED; /* nothing queued: it would wait */
			break;
		}
		if ((r = wait_data(s, w, deadline))) {
			r = -r;
			break;
		}
		w = prt__cur_worker();
	}
	s->busy = false;
	prt__spin_unlock(&s->lock);
	prt__preempt_safe_point(); /* data already queued: no park (sched_int.h) */
	return r;
}

PRT_API int prt_stream_close(prt_stream_t *s)
{
	struct prt__worker *w = prt__cur_worker();

	if (!s)
		return -EINVAL;
	if (!w || w->rt != s->rt)
		return -EPERM;
	prt__spin_lock(&s->lock);
	if (s->busy) {
		prt__spin_unlock(&s->lock);
		return -EBUSY;
	}
	s->busy = true;
	if (s->armed || s->watching) {
		struct prt__wait done;
		uint64_t ud[2];
		struct prt__worker *v[2];
		int k = 0;

		if (s->armed) {
			v[k] = s->aw;
			ud[k++] = recv_ud(s);
		}
		if (s->watching) {
			v[k] = s->ew;
			ud[k++] = end_ud(s);
		}
		prt__wait_init(&done, w->curr);
		s->closed = &done;
		prt__spin_unlock(&s->lock);
		prt__set_wait(w->curr, PRT_WK_IO, "stream_close", s->fd);
		prt__io_cancel_reqs(w, k, v, ud);
		w = prt__cur_worker();
		/* Until the last CQE of both (the cancel's, or an end that came first). */
		prt__wait_block_nospin(&done, 0, false);
		prt__spin_lock(&s->lock);
	}
	while (s->nq) {
		uint16_t bid = s->head;

		s->head = s->aw->io.sbufs.next[bid];
		s->nq--;
		sbuf_put(s->aw, bid);
	}
	prt__spin_unlock(&s->lock);
	prt__free(s, sizeof(*s));
	return 0;
}
