/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_IO_H
#define PROXYRT_IO_H

/*
 * Fiber I/O: calls that park only the calling fiber, never its worker.
 *
 * Each worker owns an io_uring. A call from a fiber queues its request
 * in the ring of the worker it runs on and parks; the worker submits all
 * queued requests at its next scheduling point (one io_uring_enter for
 * the batch) and reaps completions at every scheduling point, waking
 * their fibers. An idle worker sleeps inside its ring.
 *
 * Where io_uring is refused (kernel.io_uring_disabled, a seccomp
 * profile, an old kernel) or PRT_IO_EPOLL is configured, the same calls
 * run on epoll instead: the call is tried without blocking and, if it
 * would block, the fiber parks until the fd is ready. In that mode the
 * fds passed to these calls are switched to O_NONBLOCK (as Go's netpoll
 * does); the file description is shared, so other users of it see that.
 * prt_runtime_io_backend() and prt_runtime_notice() tell which backend
 * runs and why.
 *
 * Results are returned by value: >= 0 on success, -errno on failure
 * (the io_uring convention); errno is never touched.
 *
 * Timeouts: the _timeout variants take a relative timeout in
 * nanoseconds (0 = none). When it expires the operation is cancelled
 * and -ETIMEDOUT is returned; the kernel is done with the buffer when
 * the call returns, whatever the outcome. A timeout too long for the
 * clock (now + timeout past 2^64 ns) saturates: it never expires.
 *
 * Lengths: one call transfers at most 0x7ffff000 bytes (Linux's
 * MAX_RW_COUNT, the cap read(2) and write(2) apply); a larger @n is a
 * short transfer, as with the syscalls, on either backend.
 *
 * Broken connections: no call here raises SIGPIPE on a socket. Writing
 * to a socket that can no longer send (peer gone, or shut down for
 * writing) returns -EPIPE (or -ECONNRESET), whatever SIGPIPE's
 * disposition: prt_send() always adds MSG_NOSIGNAL; prt_write() and
 * prt_writev() (so also prt_write_all()) on a plain thread send with
 * MSG_NOSIGNAL when the fd is a socket (one extra failing call, send's
 * ENOTSOCK, for other fds); and worker threads block SIGPIPE, which
 * io_uring's IORING_OP_WRITE, having no flags, needs. So on a fiber
 * even a pipe whose reader has gone gives -EPIPE, and so does a plain
 * write(2) a fiber makes itself; a SIGPIPE handler never runs on a
 * worker. On a plain thread a pipe behaves as write(2): SIGPIPE unless
 * the program ignores or blocks it. prt_runtime_dump() to a socket
 * follows the same rule.
 *
 * Closing: prt_close() cancels the operations other fibers have pending
 * on the fd through these calls; they return -ECANCELED. (A plain
 * close(2) does not: a pending read on a socket keeps the file open.)
 *
 * Context: a fiber (parks only the fiber) or a plain thread (the call
 * is made directly and blocks the thread; timeouts via poll(2)).
 */

#include <proxyrt/common.h>
#include <proxyrt/runtime.h>

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

PRT_EXTERN_C_BEGIN

/* I/O backends (prt_runtime_config_t.io_backend, prt_runtime_io_backend()). */
enum prt_io_backend {
	PRT_IO_AUTO = 0,  /* io_uring if the kernel allows it, else epoll */
	PRT_IO_URING = 1, /* io_uring, or prt_runtime_create fails (-ENOSYS, -EPERM) */
	PRT_IO_EPOLL = 2, /* epoll, even where io_uring works */
};

/*
 * The backend @rt runs: PRT_IO_URING or PRT_IO_EPOLL; -EINVAL if @rt
 * is NULL or not a live runtime (destroyed), as the other introspection
 * calls (runtime.h). Context: any thread; never switches fibers.
 */
PRT_API int prt_runtime_io_backend(const prt_runtime_t *rt);

/*
 * The calls below return what their syscall returns on success (bytes
 * transferred, 0 at end of file, the new fd of prt_accept, 0 for
 * prt_connect, prt_shutdown and prt_close), else -errno:
 * - -EBADF: @fd < 0 (checked before anything is done), or as the syscall;
 * - -EINVAL: prt_readv/prt_writev with @iovcnt < 0 or a NULL @iov and
 *   @iovcnt > 0; prt_accept with @flags other than SOCK_NONBLOCK and
 *   SOCK_CLOEXEC;
 * - -EFAULT: prt_connect with a NULL @addr;
 * - -ETIMEDOUT: a _timeout variant's time ran out (see "Timeouts");
 * - -ECANCELED: another fiber prt_close()d @fd meanwhile (see "Closing"),
 *   or the calling fiber was cancelled (prt_cancel, proxyrt/fiber.h:
 *   before the call, nothing done; while it waited, the request was
 *   cancelled and the fd is untouched; prt_close and prt_shutdown are
 *   never cancelled). prt_stream_recv the same, once nothing is queued;
 * - -EPIPE, -ECONNRESET: a connection that can no longer send or was
 *   reset (see "Broken connections": never SIGPIPE);
 * - -EINTR: on a plain thread, a signal handler interrupted the syscall
 *   (as the syscall; poll(2) waits of the _timeout variants resume);
 * - -ENOMEM, -ENOSPC: epoll backend, no memory for a timeout's timer or
 *   no room for the fd's epoll watch (fs.epoll.max_user_watches);
 * - -EAGAIN: only where the caller asked not to wait (MSG_DONTWAIT in
 *   @flags);
 * - any other error of the syscall itself (read(2), write(2), readv(2),
 *   writev(2), recv(2), send(2), accept4(2), connect(2), shutdown(2),
 *   close(2)), e.g. -ENOTCONN, -ECONNREFUSED, -EMFILE, -EISDIR, -ENOTSOCK.
 */
PRT_API ssize_t prt_read(int fd, void *buf, size_t n);
PRT_API ssize_t prt_write(int fd, const void *buf, size_t n);
PRT_API ssize_t prt_readv(int fd, const struct iovec *iov, int iovcnt);
PRT_API ssize_t prt_writev(int fd, const struct iovec *iov, int iovcnt);
PRT_API ssize_t prt_recv(int fd, void *buf, size_t n, int flags);
PRT_API ssize_t prt_send(int fd, const void *buf, size_t n, int flags);
/* Returns the new fd. @flags: SOCK_NONBLOCK, SOCK_CLOEXEC as accept4(2). */
PRT_API int prt_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags);
PRT_API int prt_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
PRT_API int prt_close(int fd);
PRT_API int prt_shutdown(int fd, int how);
/*
 * Wait until @fd is ready for @events (POLLIN, POLLOUT, ...). Returns the
 * ready events (POLLERR and POLLHUP are always reported) or -errno as
 * above (-EBADF, -ETIMEDOUT, -ECANCELED, -ENOMEM, poll(2)'s).
 */
PRT_API int prt_poll(int fd, short events);

PRT_API ssize_t prt_read_timeout(int fd, void *buf, size_t n, uint64_t timeout_ns);
PRT_API ssize_t prt_write_timeout(int fd, const void *buf, size_t n, uint64_t timeout_ns);
PRT_API ssize_t prt_readv_timeout(int fd, const struct iovec *iov, int iovcnt,
				  uint64_t timeout_ns);
PRT_API ssize_t prt_writev_timeout(int fd, const struct iovec *iov, int iovcnt,
				   uint64_t timeout_ns);
PRT_API ssize_t prt_recv_timeout(int fd, void *buf, size_t n, int flags, uint64_t timeout_ns);
PRT_API ssize_t prt_send_timeout(int fd, const void *buf, size_t n, int flags,
				 uint64_t timeout_ns);
PRT_API int prt_accept_timeout(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			       uint64_t timeout_ns);
PRT_API int prt_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen,
				uint64_t timeout_ns);
PRT_API int prt_poll_timeout(int fd, short events, uint64_t timeout_ns);

/*
 * Read until @n bytes have arrived or end of file; write all @n bytes.
 * Return the bytes transferred (prt_read_all: less than @n only at end
 * of file), or -errno if an error came first (as prt_read/prt_write). @timeout_ns (0 = none)
 * bounds the whole call, not each piece; on expiry -ETIMEDOUT, and the
 * bytes already transferred are lost to the caller, so treat the stream
 * as broken.
 */
PRT_API ssize_t prt_read_all(int fd, void *buf, size_t n, uint64_t timeout_ns);
PRT_API ssize_t prt_write_all(int fd, const void *buf, size_t n, uint64_t timeout_ns);

/*
 * Receive streams: prt_recv() for a connection read many times over,
 * without a submission per call.
 *
 * On io_uring (Linux 6.0+) a stream keeps one multishot receive armed
 * on the socket: the kernel reads what arrives into buffers of the
 * worker's provided-buffer ring (1024 buffers of 2 KiB, allocated on the
 * worker's first stream) and queues them on the stream; prt_stream_recv()
 * copies from them and parks only when none are queued. That saves a
 * submission and a poll arming per call (W6's server: about 6% less CPU
 * per request, bench/floors). When the worker runs out of buffers the
 * stream reads with prt_recv() until buffers come back. Beside the
 * receive the stream keeps a one-shot poll for the peer's end
 * (POLLRDHUP, POLLHUP, POLLERR): Linux (6.18 at least) may post a
 * multishot receive's last data and never its end, so once the poll
 * fires the stream ends the receive and reads the rest with prt_recv().
 * On the epoll backend, or where the kernel lacks multishot receive, a
 * stream is a thin wrapper over prt_recv_timeout()
 * (prt_stream_multishot() says 0).
 *
 * Rules:
 * - One reader at a time (a second concurrent prt_stream_recv() returns
 *   -EBUSY). Other fibers may write to the socket meanwhile.
 * - While the stream is open, read the socket only through it: the
 *   kernel reads ahead into the stream.
 * - prt_stream_close() before closing the fd and before the runtime is
 *   destroyed. prt_close(fd) while a stream is open ends its receive:
 *   queued data is still returned, then -ECANCELED.
 *
 * prt_stream_open: 0, -EINVAL (@s NULL), -EBADF (@fd < 0), -EPERM (not
 * a fiber), -ENOMEM.
 * prt_stream_recv: bytes (up to @n; from several arrivals if queued),
 * 0 at end of stream, or -errno as recv(2) (-ECONNRESET, ...),
 * -ETIMEDOUT after @timeout_ns (0 = none; the stream stays usable),
 * -EBUSY, -EINVAL, -EPERM (not a fiber of the stream's runtime).
 * prt_stream_close: 0, -EBUSY (a fiber is in prt_stream_recv: nothing
 * was done), -EINVAL, -EPERM. Waits for the kernel to let go of the
 * stream's buffers; does not close the fd.
 *
 * Context: a fiber of the stream's runtime (prt_stream_open: any fiber;
 * it parks only the fiber); prt_stream_multishot: any thread.
 */
typedef struct prt_stream prt_stream_t;

PRT_API int prt_stream_open(prt_stream_t **s, int fd);
PRT_API ssize_t prt_stream_recv(prt_stream_t *s, void *buf, size_t n, uint64_t timeout_ns);
PRT_API int prt_stream_close(prt_stream_t *s);
/* 1 if @s reads with a multishot receive, 0 if through prt_recv(), -EINVAL. */
PRT_API int prt_stream_multishot(const prt_stream_t *s);

/*
 * Blocking-call offload: run @fn(@arg) on one of the runtime's helper
 * threads while the calling fiber parks, for calls that block the
 * thread (getaddrinfo, a blocking library). The pool has
 * prt_runtime_config_t.offload_threads threads (created on first use,
 * free to run on any of the runtime's CPUs: cfg.cpus or the process's
 * affinity, or with PRT_RT_NO_PIN the creating thread's); calls beyond
 * that wait in FIFO order for a free thread. Stores @fn's
 * result in *@result if not NULL. Returns 0, or -EINVAL (@fn NULL),
 * -ENOMEM (the pool could not be allocated on first use), -EAGAIN (no
 * helper thread could be started), -ECANCELED (prt_cancel: before the
 * call, @fn not run; or while waiting, when @fn still runs to its end on
 * its helper and its result is dropped, so @arg must outlive @fn, not be
 * the caller's stack). From a plain thread @fn runs on the calling
 * thread.
 */
PRT_API int prt_offload(void *(*fn)(void *), void *arg, void **result);

PRT_EXTERN_C_END

#endif
