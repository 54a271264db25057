/* SPDX-License-Identifier: MIT */
#ifndef PRT_IO_BACKEND_H
#define PRT_IO_BACKEND_H

/*
 * The interface between the fiber I/O calls (io.c) and the backends that
 * carry them out on a worker: io_uring (io_uring.c) and epoll
 * (io_epoll.c). As libuv declares uv__io_poll once and implements it per
 * platform, io.c owns what every backend shares (argument checks, the
 * plain-thread path, prt_close's commands to workers and the wait for
 * them, the park helpers, choosing the backend at runtime creation) and
 * calls the runtime's backend through its ops table for the rest.
 *
 * The watch. prt__io_point runs at every yield and switch, so it makes no
 * call and tests no backend: it reads @w->io.watch (io_int.h,
 * prt__io_due), which each backend keeps current. prt__io_init points
 * head, tail and flags at a word that stays 0 before the backend's init;
 * io_uring then points head/tail at its CQ and flags at its SQ flags
 * (mask IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW: completions held in
 * task work or on the kernel's overflow list, which only an entry for
 * events brings in) and counts prepared SQEs in queued; epoll
 * leaves them and counts its bucket waiters in polled. Either may use
 * tick. A backend whose kernel interface is another shared-memory queue
 * fits the same fields; one with none gets its poll every 64 points.
 *
 * Every member of the table is set but @fop, which a backend that sends
 * every file call to the offload pool leaves NULL; all run on the worker
 * thread of @w (its fiber or its idle loop) unless said otherwise.
 */

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "io_int.h"

/* A fiber I/O call, as prt_read() and the others take it. */
enum prt__io_opcode {
	PRT_OP_READ, PRT_OP_WRITE, PRT_OP_READV, PRT_OP_WRITEV,
	PRT_OP_RECV, PRT_OP_SEND, PRT_OP_ACCEPT, PRT_OP_CONNECT,
};

struct prt__ioargs {
	enum prt__io_opcode op;
	int fd;
	void *buf;
	size_t n;
	const struct iovec *iov;
	int iovcnt;
	int flags;
	struct sockaddr *addr;
	socklen_t *addrlen; /* accept */
	socklen_t alen;     /* connect */
};

/*
 * A file or socket call (prt_openat() and the others, fileop.c). Each
 * goes to the ring where the kernel has its opcode (rt->io.fop_native),
 * else to the offload pool: regular files are not pollable, so epoll
 * has nothing to wait for.
 */
enum prt__fop_code {
	PRT_FOP_OPENAT, PRT_FOP_FSYNC, PRT_FOP_FDATASYNC, PRT_FOP_FALLOCATE,
	PRT_FOP_STATX, PRT_FOP_RENAMEAT, PRT_FOP_UNLINKAT, PRT_FOP_SOCKET,
	PRT_FOP_N,
};

struct prt__fopargs {
	enum prt__fop_code op;
	int fd;             /* the file, or the directory @path is relative to; socket: the domain */
	const char *path;
	int fd2;            /* renameat: the directory @path2 is relative to; socket: the type */
	const char *path2;  /* renameat: the new name */
	int flags;          /* openat, statx, unlinkat, renameat flags; fallocate: the mode; socket: the protocol */
	unsigned mode;      /* openat: the new file's mode; statx: the mask */
	off_t off, len;     /* fallocate */
	struct statx *stx;  /* statx: the result */
};

struct prt__io_backend {
	int id;              /* PRT_IO_URING or PRT_IO_EPOLL (prt_runtime_io_backend) */
	/* Receive streams may arm multishot recvs on prt__io_sqe and the sbufs ring (stream.c). */
	bool multishot_recv;
	/*
	 * Runtime creation, any thread: can this process use the backend?
	 * 0, or -errno and *@what says why; notes in @rio what its workers'
	 * set-up needs.
	 */
	int (*probe)(struct prt__rtio *rio, const char **what);
	/* Set up @w (its eventfd exists): 0 or -errno, nothing left to undo. */
	int (*init)(struct prt__worker *w);
	/* On @w's thread, before its first submission. */
	void (*thread_start)(struct prt__worker *w);
	/* Tear down what init made (its eventfd is closed after). */
	void (*fini)(struct prt__worker *w);
	/* prt__io_service after the commands ran: submit, reap, wake; returns fibers woken. */
	int (*service)(struct prt__worker *w, bool force_submit);
	/* prt__io_wait: sleep until woken, a completion, or @tmo ns from now (0: no limit). */
	void (*wait)(struct prt__worker *w, uint64_t tmo);
	/*
	 * Wake @v, another worker of @me's runtime, from worker @me's own
	 * state (no syscall on v's eventfd). False if it cannot: the caller
	 * writes v's eventfd instead.
	 */
	bool (*kick)(struct prt__worker *me, struct prt__worker *v);
	/*
	 * Run the commands of list @c (prt_close, prt__io_cancel_reqs): cancel
	 * what @w holds for c->fd, or the request with user_data c->ud, and
	 * ack each (prt__io_cmd_ack) once that is done. Returns fibers woken.
	 */
	int (*cancel)(struct prt__worker *w, struct prt__iocmd *c);
	/*
	 * prt_cancel's command (io.c): end, or ask the kernel to end, every
	 * cancellable request @w holds whose fiber has a cancel pending;
	 * such a request ends -ECANCELED unless it completed first. Returns
	 * fibers woken.
	 */
	int (*cancel_fibers)(struct prt__worker *w);
	/* The fiber's call @a, until done or @tmo ns (0: none): its result, -errno. */
	long (*op)(struct prt__worker *w, const struct prt__ioargs *a, uint64_t tmo);
	/* prt_poll_timeout on a fiber: revents, or -errno. */
	int (*poll)(struct prt__worker *w, int fd, short events, uint64_t tmo);
	/* prt_shutdown and prt_close on a fiber (for close, other waiters are cancelled). */
	int (*shutdown)(struct prt__worker *w, int fd, int how);
	int (*close)(struct prt__worker *w, int fd);
	/*
	 * A file call @a (its bit set in rt->io.fop_native; NULL if the
	 * backend carries none) until done or @tmo ns (0: none; then
	 * -ETIMEDOUT, the call possibly still running): its result, -errno.
	 */
	long (*fop)(struct prt__worker *w, const struct prt__fopargs *a, uint64_t tmo);
	/* The worker thread leaves its loop (the runtime stops): end what is still in flight. */
	void (*thread_stop)(struct prt__worker *w);
};

extern const struct prt__io_backend prt__io_uring, prt__io_epoll;

/* ---- shared by the backends (io.c) ---- */

/* Test builds: true, with errno set, if the next fd-making call must fail (fault.h). */
bool prt__io_fd_fault(void);
/* Write @v's eventfd: wakes it from any thread. */
void prt__io_kick_evfd(struct prt__worker *v);
/* A worker has done command @c: the last ack wakes the closer. */
void prt__io_cmd_ack(struct prt__iocmd *c);
/*
 * Park until the worker that holds @r ends it (counted in its inflight);
 * r->res. A prt_cancel has that worker end it early if r->cancellable.
 */
int prt__io_park_req(struct prt__worker *w, struct prt__ioreq *r);
/* The syscall of @a itself, without blocking if @nb; -errno on failure. */
long prt__io_sys(const struct prt__ioargs *a, bool nb);
/* A write or writev (@a) without SIGPIPE on any thread: a socket gets MSG_NOSIGNAL. */
long prt__io_write_nosigpipe(const struct prt__ioargs *a);

/* The syscall of file call @a itself (blocking); -errno on failure. */
long prt__fop_sys(const struct prt__fopargs *a);
/* Whether file call @op returns a new fd, which a caller that gave up on it never sees. */
static inline bool prt__fop_opens(enum prt__fop_code op)
{
	return op == PRT_FOP_OPENAT || op == PRT_FOP_SOCKET;
}

/* getsockopt(@fd, SOL_SOCKET, @opt) of an int option, -1 if it fails (io.c). errno kept. */
int prt__sock_opt(int fd, int opt);

/*
 * A connect to an AF_UNIX listener whose backlog is full (-EAGAIN, not
 * started) is retried, as a blocking connect(2) waits for room (io.h):
 * the CLOCK_MONOTONIC time to retry at, *@ns from now (first
 * PRT_CONNECT_BACKOFF_NS; *@ns doubles, up to PRT_CONNECT_BACKOFF_MAX_NS),
 * within @deadline (0: none); 0 once @deadline has passed (io.c).
 */
#define PRT_CONNECT_BACKOFF_NS (50u * 1000u)
#define PRT_CONNECT_BACKOFF_MAX_NS (10u * 1000u * 1000u)
uint64_t prt__connect_retry_at(uint64_t deadline, uint64_t *ns);

/* Is @fd an AF_UNIX socket (io.c)? errno kept. */
bool prt__io_is_unix(int fd);

/*
 * A non-blocking connect (@a) that said -EINPROGRESS, once its fd polls
 * writable: connect(2) again, which ends it as a blocking connect(2)
 * would: 0 (connected), 1 (still under way: wait again) or its error,
 * with the socket unconnected again, so a later connect makes a new
 * attempt. (Reading the error with SO_ERROR left the socket
 * "connecting": the next connect was -ECONNABORTED, a review.) io.c.
 */
long prt__connect_end(const struct prt__ioargs *a);
/*
 * A recv (@a) with MSG_WAITALL (no MSG_PEEK, no MSG_DONTWAIT) on a stream
 * socket got @n > 0 bytes, fewer than asked: without blocking, the
 * kernel ends it at the first data there, where a blocking recv(2)
 * waits for all; the caller goes on for the rest (io.c).
 */
bool prt__waitall_short(const struct prt__ioargs *a, long n);

/* Does @op wait for the fd to be writable (else readable)? */
static inline bool prt__io_is_write(enum prt__io_opcode op)
{
	return op == PRT_OP_WRITE || op == PRT_OP_WRITEV || op == PRT_OP_SEND ||
	       op == PRT_OP_CONNECT;
}

#endif
