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
 * short transfer on either backend and on a plain thread, because @n is
 * capped before the call. Not quite as with the syscalls: read(2) and
 * write(2) check the whole range first, so an @n near SIZE_MAX is
 * -EFAULT there, where these transfer (the kernel still fails with
 * -EFAULT a @buf whose first 0x7ffff000 bytes would run past the top of
 * the address space).
 *
 * As the blocking syscalls, on both backends and on plain threads, also
 * where the fd is (or is made) non-blocking: prt_recv() with MSG_WAITALL
 * on a stream socket waits for all @n bytes (what came before the end of
 * the stream, an error, a timeout or a cancel is returned; not with
 * MSG_PEEK too, which on epoll and on a plain thread with a timeout
 * returns what is there, as a non-blocking recv(2) does; on a plain
 * thread with a blocking fd and no timeout the call is recv(2) itself,
 * which a signal, or the kernel's task work on a thread that set up
 * io_uring rings, can end early with what came); a connect
 * that failed leaves the socket unconnected, so connecting it again
 * makes a new attempt (the kernel's non-blocking connect, ended by
 * reading SO_ERROR, would say -ECONNABORTED to that). Not so one that
 * timed out (-ETIMEDOUT) or was cancelled while the kernel still tried:
 * the kernel goes on connecting the socket, as after connect(2) on a
 * non-blocking socket said EINPROGRESS, and connecting it again
 * returns -EALREADY (or 0 / -EISCONN once it connected); close it and
 * make a new socket to try again (a review). A timed call looks
 * at its fd at least once, whatever the timeout: a ready fd completes
 * and one not open is -EBADF, not -ETIMEDOUT.
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
 * worker. (A child forked from a fiber gets SIGPIPE unblocked again
 * where the runtime's creator had it so; one started by posix_spawn or
 * vfork from a fiber inherits the block: README, "fork()".) On a plain
 * thread a pipe behaves as write(2): SIGPIPE unless
 * the program ignores or blocks it. prt_runtime_dump() to a socket
 * follows the same rule.
 *
 * Calls the kernel drops (io_uring backend): the kernel runs some calls
 * on helper threads it starts from the worker thread (io-wq: shutdown,
 * fsync, fallocate, most opens and statx, a regular file's read or
 * write that would block), and starting a thread fails while a signal
 * is pending for the worker; when it cannot start the first helper
 * (three tries, 5-15 ms apart), it ends every call queued for helpers
 * with -ECANCELED without making it (Linux 6.18, io_uring/io-wq.c).
 * Signals to worker threads (a preemptive runtime's time slices, a
 * profiler's SIGPROF, the application's own) make that likely. Such a
 * call is made again, up to 8 times, within its timeout; -ECANCELED is
 * returned only for a prt_cancel, a timeout's cancel or a prt_close()
 * of the fd, as documented for each call.
 *
 * Closing: prt_close() cancels the operations other fibers of the
 * caller's runtime have pending on the fd through these calls; they
 * return -ECANCELED. (A plain close(2) does not: a pending read on a
 * socket keeps the file open.) Called from a plain thread, or for an fd
 * that fibers of another runtime wait on, it is close(2) for them: wake
 * those with prt_shutdown() first (a socket), prt_cancel(), or by closing
 * from a fiber of their runtime. (Cancelling across every runtime was
 * tried and undone: it made each close wait for every busy worker of
 * the process, and deadlocked against a destroy run by another runtime.)
 * Such a close(2) leaves the waiters as a read(2) on another thread:
 * on io_uring a request the kernel has keeps the old file (it sees that
 * file's data and end); one prepared and not yet handed to the kernel
 * names the number, like a read(2) not yet entered, and reads whatever
 * file has it then. On epoll the old file's registration goes with it:
 * its waiters sleep until the number is waited on again on their
 * worker, and then return -EBADF (never the new file's data).
 *
 * Context: a fiber (parks only the fiber; a call that completes without
 * waiting, as on the epoll backend for a ready fd, ends at a preemption
 * safe point instead: a preemption that came due meanwhile switches the
 * fiber there, as at prt_now_ns) or a plain thread (the call
 * is made directly and blocks the thread; timeouts, and the EAGAIN of an
 * fd that is non-blocking, e.g. because a fiber's call on the epoll
 * backend made it so, are waited out with poll(2); a _timeout variant
 * makes @fd O_NONBLOCK, as the epoll backend does, so that its syscall
 * cannot block past the timeout: a write then returns what fitted).
 *
 * A connect to an AF_UNIX listener whose backlog is full waits for room,
 * as a blocking connect(2) does (the kernel reports no readiness for
 * it: the non-blocking attempt is retried 50 us apart, doubling to 10
 * ms), within its timeout; io_uring waits in the kernel.
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
 * prt_connect, prt_shutdown and prt_close), else -errno. A fiber's write
 * or send returns as the non-blocking syscall does once the fd is ready,
 * whether or not the fd is blocking: it may be short (a review: 219264
 * of 16 MiB on a socketpair, 65536 on a pipe, where a plain thread's
 * blocking write(2) moved all); prt_write_all() moves everything.
 * Errors:
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
 * - -EAGAIN: where the caller asked not to wait (MSG_DONTWAIT in
 *   @flags); or, io_uring, the kernel dropped the call 9 times in a row
 *   (below: it could not start a thread, as fork(2)'s EAGAIN);
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
 * Wait until @fd is ready for @events (any of poll(2)'s: POLLIN, POLLOUT,
 * POLLPRI, POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND, POLLRDHUP; on
 * both backends). Returns the ready events (POLLERR and POLLHUP are
 * always reported) or -errno as
 * above (-EBADF, -ETIMEDOUT, -ECANCELED, -ENOMEM, poll(2)'s). An fd that
 * is not open is -EBADF on both backends and on a plain thread (where
 * poll(2) itself reports POLLNVAL). An fd whose file cannot be waited on
 * (a regular file, a directory, /dev/null: epoll refuses them) is
 * answered as poll(2) answers: ready for POLLIN and POLLOUT (and their
 * NORM forms) at once, never for the others, so a wait for those lasts
 * until the timeout (-ETIMEDOUT), a prt_cancel, or a close of the fd
 * (-EBADF, seen within 50 ms: no request is queued for it). On a fiber,
 * a ready fd returns at once, through a preemption safe point (above).
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
 * On the epoll backend, where the kernel lacks multishot receive, and
 * for a socket that is not SOCK_STREAM (datagrams, SOCK_SEQPACKET:
 * multishot buffers would lose the message boundaries), a stream is a
 * thin wrapper over prt_recv_timeout(), one message per call
 * (prt_stream_multishot() says 0).
 *
 * Rules:
 * - One reader at a time (a second concurrent prt_stream_recv() returns
 *   -EBUSY). Other fibers may write to the socket meanwhile.
 * - While the stream is open, read the socket only through it: the
 *   kernel reads ahead into the stream.
 * - prt_stream_close() before closing the fd and before the runtime is
 *   destroyed. prt_close(fd) while a stream is open ends its receive:
 *   queued data is still returned, then -ECANCELED (a multishot stream;
 *   also a plain one's receive waiting at the close, as any call
 *   prt_close cancels) or, as from any recv(2) on a closed fd, -EBADF
 *   (a plain one's receive made after the close, e.g. on the epoll
 *   backend).
 *
 * prt_stream_open: 0, -EINVAL (@s NULL), -EBADF (@fd < 0), -EPERM (not
 * a fiber), -ENOMEM. It does not look at what @fd is: a stream over an
 * fd that is not a socket (a pipe) opens, and each prt_stream_recv()
 * then returns recv(2)'s -ENOTSOCK.
 * prt_stream_recv: bytes (up to @n; from several arrivals if queued),
 * 0 at end of stream, or -errno as recv(2) (-ECONNRESET, ...),
 * -ETIMEDOUT after @timeout_ns (0 = none; the stream stays usable),
 * -EBUSY, -EINVAL, -EPERM (not a fiber of the stream's runtime).
 * prt_stream_close: 0, -EBUSY (a fiber is in prt_stream_recv: nothing
 * was done), -EINVAL, -EPERM. Waits for the kernel to let go of the
 * stream's buffers; does not close the fd.
 *
 * Context: a fiber of the stream's runtime (prt_stream_open: any fiber;
 * it parks only the fiber; a prt_stream_recv that finds data queued
 * returns through a preemption safe point, as prt_read); prt_stream_multishot:
 * any thread.
 */
typedef struct prt_stream prt_stream_t;

PRT_API int prt_stream_open(prt_stream_t **s, int fd);
PRT_API ssize_t prt_stream_recv(prt_stream_t *s, void *buf, size_t n, uint64_t timeout_ns);
PRT_API int prt_stream_close(prt_stream_t *s);
/* 1 if @s reads with a multishot receive, 0 if through prt_recv(), -EINVAL. */
PRT_API int prt_stream_multishot(const prt_stream_t *s);

/*
 * File calls: opening, syncing, allocating, querying, renaming and
 * removing files, and making sockets, without blocking the worker. Each
 * mirrors its syscall (named below) and returns what it returns on
 * success (0, or the new fd of prt_openat and prt_socket), else -errno:
 * the syscall's own errors (-ENOENT, -EEXIST, -EBADF, -EACCES, -ENOSPC,
 * -EINTR, ...), and:
 * - -EFAULT: a NULL path or statx buffer (checked before anything is
 *   done; for statx(2)'s AT_EMPTY_PATH, pass "");
 * - -EBADF: prt_fsync, prt_fdatasync, prt_fallocate with @fd < 0
 *   (checked first); the directory fds are the kernel's to check
 *   (AT_FDCWD, or ignored for an absolute path);
 * - -ETIMEDOUT: a _timeout variant's time ran out (below);
 * - -ECANCELED: the calling fiber was cancelled (prt_cancel,
 *   proxyrt/fiber.h): before the call, nothing done; while it waited,
 *   the wait ended as on -ETIMEDOUT (a statx given up on leaves @buf
 *   untouched), except for an untimed call on io_uring, cancelled in
 *   the kernel, which returns its own result if it completed first;
 *   prt_socket is never cancelled;
 * - -ENOMEM: no memory for the offload pool, or for a timed call's
 *   record or timer (the call may then have been made, as on
 *   -ETIMEDOUT);
 * - -EAGAIN: the call needed an offload helper thread (below) and none
 *   could be started; or, io_uring, the kernel dropped the call 9 times
 *   in a row, unable to start its own helper thread (see "Calls the
 *   kernel drops" above: dropped calls are made again);
 * - -ENAMETOOLONG: a call on the offload pool (timed or not) with a
 *   path of PATH_MAX bytes or more (as the kernel says for any path
 *   that long).
 *
 * On a fiber each call is one io_uring request where the kernel has its
 * opcode (probed when the runtime is created: IORING_OP_OPENAT, _FSYNC,
 * _FALLOCATE, _STATX, _RENAMEAT, _UNLINKAT, _SOCKET); where it lacks
 * one, and always on the epoll backend (epoll cannot wait for a regular
 * file), the call runs on the offload pool (prt_offload) while the fiber
 * parks. prt_socket never blocks: without IORING_OP_SOCKET it is made
 * directly. io_uring runs these calls on its helper threads (io-wq),
 * which the runtime keeps off the calling worker's CPU
 * (PRT_RT_NO_IOWQ_AFF in runtime.h). An open of a FIFO (without
 * O_NONBLOCK) waits for the other end on either backend, although the
 * ring's own open would not (it tries the open as with O_NONBLOCK
 * first): one for writing is made again on a helper, where it waits as
 * open(2) does; one for reading waits until a writer has written or
 * closed, so while a writer holds the FIFO open without writing it
 * returns later than open(2), which returns once the writer opened.
 *
 * Timeouts (@timeout_ns, relative, 0 = none; saturating as above): for
 * the calls that can wait for long on something else: prt_openat (a
 * FIFO's other end, the break of a lease held by another process, a
 * device, a network file system), prt_fsync and prt_fdatasync (the
 * device writing back), prt_fallocate (the file system allocating or
 * zeroing). prt_statx, prt_renameat and prt_unlinkat have none: they
 * wait for nobody else, only for metadata the file system reads.
 * A timeout ends the wait, not necessarily the syscall: on io_uring the
 * request is cancelled (one not started yet is dropped; an open waiting
 * for a FIFO or a lease is interrupted; a sync or an allocation under way
 * goes on), on the offload pool a call no helper thread has taken yet
 * is dropped and one under way goes on in its thread. So -ETIMEDOUT
 * says the outcome is unknown: the file may have been synced, allocated
 * or created. An fd that an open given up on makes is closed by the
 * runtime, never leaked. prt_runtime_destroy waits for calls given up
 * on that are still under way: on io_uring each stopping worker first
 * cancels what is left in its ring; on the offload pool a helper
 * blocked in a FIFO open that nobody ever opens from the other side
 * keeps it waiting.
 *
 * Closing: prt_close(@fd) does not wait for a file call on @fd by
 * another fiber; on io_uring one not started yet may return -ECANCELED
 * (prt_renameat: a close of @olddirfd; of @newdirfd, the rename goes on
 * as after close(2) on another thread, and resolves the number when it
 * runs).
 *
 * Context: a fiber (parks only the fiber) or a plain thread (the syscall
 * itself, which blocks the thread; a _timeout variant's timeout does not
 * apply there, as nothing could end the syscall early).
 */
struct statx;

/* openat(2): returns the new fd. */
PRT_API int prt_openat(int dirfd, const char *path, int flags, mode_t mode);
PRT_API int prt_openat_timeout(int dirfd, const char *path, int flags, mode_t mode,
			       uint64_t timeout_ns);
/* fsync(2), fdatasync(2). */
PRT_API int prt_fsync(int fd);
PRT_API int prt_fsync_timeout(int fd, uint64_t timeout_ns);
PRT_API int prt_fdatasync(int fd);
PRT_API int prt_fdatasync_timeout(int fd, uint64_t timeout_ns);
/* fallocate(2): @mode FALLOC_FL_*, @offset and @len in bytes. */
PRT_API int prt_fallocate(int fd, int mode, off_t offset, off_t len);
PRT_API int prt_fallocate_timeout(int fd, int mode, off_t offset, off_t len,
				  uint64_t timeout_ns);
/* statx(2): @flags AT_*, @mask STATX_*; fills *@buf. */
PRT_API int prt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf);
/* renameat2(2): @flags RENAME_NOREPLACE, RENAME_EXCHANGE, ... (0: renameat(2)). */
PRT_API int prt_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
			 unsigned flags);
/* unlinkat(2): @flags 0 or AT_REMOVEDIR. */
PRT_API int prt_unlinkat(int dirfd, const char *path, int flags);
/* socket(2): returns the new fd; @type may carry SOCK_NONBLOCK, SOCK_CLOEXEC. */
PRT_API int prt_socket(int domain, int type, int protocol);

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
