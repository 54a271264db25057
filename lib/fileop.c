/* SPDX-License-Identifier: MIT */
/*
 * File and socket calls (proxyrt/io.h): prt_openat, prt_fsync,
 * prt_fdatasync, prt_fallocate, prt_statx, prt_renameat, prt_unlinkat,
 * prt_socket.
 *
 * On a plain thread each is its syscall. On a fiber it goes to the
 * backend's ring where the probe found its opcode (io_uring.c, ur_fop),
 * else to the runtime's offload pool (offload.c): the epoll backend
 * sends them all there, since epoll cannot wait for a regular file.
 *
 * A timeout or a cancel on the offload pool ends the wait, not the
 * syscall: a call given up on goes on in its helper thread, which
 * disposes of its result (closes the fd an open made). Its job, a copy
 * of its paths and its own statx buffer are on the heap, held by the
 * caller and by the pool, since the caller returns before the helper is
 * done with them; the caller's buffer is filled only from a result it
 * takes.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h> /* renameat2 */
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "alloc.h"
#include "io_backend.h"
#include "offload.h"
#include "runtime_int.h"
#include "worker.h"

static const char *const fop_names[PRT_FOP_N] = {
	"openat", "fsync", "fdatasync", "fallocate", "statx", "renameat", "unlinkat", "socket",
};

/* ---- the syscalls ------------------------------------------------------------------- */

long prt__fop_sys(const struct prt__fopargs *a)
{
	int saved = prt__errno_get();
	long n = -1;

	switch (a->op) {
	case PRT_FOP_OPENAT:
		n = openat(a->fd, a->path, a->flags, (mode_t)a->mode);
		break;
	case PRT_FOP_FSYNC:
		n = fsync(a->fd);
		break;
	case PRT_FOP_FDATASYNC:
		n = fdatasync(a->fd);
		break;
	case PRT_FOP_FALLOCATE:
		n = fallocate(a->fd, a->flags, a->off, a->len);
		break;
	case PRT_FOP_STATX:
		n = statx(a->fd, a->path, a->flags, a->mode, a->stx);
		break;
	case PRT_FOP_RENAMEAT:
		n = renameat2(a->fd, a->path, a->fd2, a->path2, (unsigned)a->flags);
		break;
	case PRT_FOP_UNLINKAT:
		n = unlinkat(a->fd, a->path, a->flags);
		break;
	case PRT_FOP_SOCKET:
		n = socket(a->fd, a->fd2, a->flags);
		break;
	case PRT_FOP_N:
		prt__errno_set(EINVAL);
		break;
	}
	return prt__sys_ret(n, saved);
}

/* ---- the offload pool ------------------------------------------------------------------ */

/*
 * A file call on the pool: the job, its arguments and copies of what the
 * helper reads or writes, since the caller may give up (a timeout, a
 * cancel) while the helper runs the call: the paths, and statx's result,
 * copied to the caller's buffer only when it takes the result.
 */
struct fopjob {
	struct prt__offjob job;
	struct prt__fopargs a;
	struct statx stx; /* a.stx of a statx */
	char paths[];     /* a.path, then a.path2 */
};

static void *fopjob_run(void *arg)
{
	return (void *)(intptr_t)prt__fop_sys(arg);
}

/* The helper's result, which no caller took: an fd an open made is closed. */
static void fopjob_orphan(struct prt__offjob *j)
{
	struct fopjob *fj = prt__container_of(j, struct fopjob, job);
	long res = (long)(intptr_t)j->ret;

	if (prt__fop_opens(fj->a.op) && res >= 0)
		close((int)res);
}

/*
 * The caller's memory, read and written by the kernel on our behalf
 * (process_vm_readv/writev on this process), so that an unmapped
 * address is -EFAULT, as the syscall itself says, rather than a fault in
 * this library (a review: prt_openat with a wild path, prt_statx with a
 * wild buffer, killed the process on epoll). Where a sandbox refuses
 * those calls (seccomp: EPERM, ENOSYS), the copy is made directly.
 * @out: from @src (ours) to @dst (the caller's); else the other way.
 */
static bool vm_copy_ok = true;

static long vm_copy(void *dst, const void *src, size_t n, bool out)
{
	struct iovec l = { out ? (void *)src : dst, n }, r = { out ? dst : (void *)src, n };
	int saved = prt__errno_get(), err;
	ssize_t got;

	if (PRT_READ_ONCE(vm_copy_ok)) {
		got = out ? process_vm_writev(getpid(), &l, 1, &r, 1, 0)
			  : process_vm_readv(getpid(), &l, 1, &r, 1, 0);
		err = errno;
		prt__errno_set(saved);
		/*
		 * A partial copy stopped at an unmapped page: for @out, -EFAULT,
		 * as the syscall says of a buffer that runs into one (a review:
		 * prt_statx returned 0); a read's caller copies page by page.
		 */
		if (got >= 0)
			return out && (size_t)got < n ? -EFAULT : (long)got;
		if (err != EPERM && err != ENOSYS)
			return -err;
		PRT_WRITE_ONCE(vm_copy_ok, false);
	}
	memcpy(dst, src, n);
	return (long)n;
}

/*
 * Copy path @s, its terminator included, to @dst (PATH_MAX bytes of
 * room), page by page (a valid path may end just before an unmapped
 * page); its length, or -EFAULT, or -ENAMETOOLONG for a path longer
 * than the kernel takes (PATH_MAX with its terminator), as the syscall
 * would say.
 */
static long path_copy(char *dst, const char *s)
{
	size_t got = 0;

	while (got < PATH_MAX) {
		uintptr_t at = (uintptr_t)s + got;
		size_t want = 4096 - (at & 4095), n;
		long r;
		char *z;

		if (want > PATH_MAX - got)
			want = PATH_MAX - got;
		if ((r = vm_copy(dst + got, (const void *)at, want, false)) <= 0)
			return r ? r : -EFAULT;
		n = (size_t)r;
		if ((z = memchr(dst + got, 0, n)))
			return z - dst;
		got += n;
	}
	return -ENAMETOOLONG;
}

/*
 * A call on the pool: a detached job with copies of the paths (and its
 * own statx buffer), made and given back with vm_copy.
 */
static long offload_timed(struct prt__worker *w, const struct prt__fopargs *a, uint64_t deadline)
{
	size_t sz = sizeof(struct fopjob) + (a->path ? PATH_MAX : 0) + (a->path2 ? PATH_MAX : 0);
	struct fopjob *fj;
	char *p;
	long res, l = 0;
	int err;

	if (!(fj = prt__alloc(sz)))
		return -ENOMEM;
	memset(fj, 0, sizeof(*fj));
	fj->a = *a;
	p = fj->paths;
	if (a->path) {
		if ((l = path_copy(p, a->path)) < 0)
			goto out;
		fj->a.path = p;
		p += l + 1;
	}
	if (a->path2) {
		if ((l = path_copy(p, a->path2)) < 0)
			goto out;
		fj->a.path2 = p;
	}
	if (a->stx)
		fj->a.stx = &fj->stx;
	fj->job = (struct prt__offjob){ .fn = fopjob_run, .arg = &fj->a, .detached = true,
					.droppable = true, .size = sz, .orphan = fopjob_orphan };
	err = prt__offload_run(w, &fj->job, deadline);
	res = err ? err : (long)(intptr_t)fj->job.ret;
	/* fj->stx is ours now: the helper is done with it */
	if (!err && res == 0 && a->stx && (l = vm_copy(a->stx, &fj->stx, sizeof(*a->stx), true)) < 0)
		res = l;
	prt__offjob_put(&fj->job);
	return res;
out:
	prt__free(fj, sz);
	return l;
}

/*
 * File call @a on the offload pool, until its end or @tmo ns (0: none).
 * Always detached: a prt_cancel may end the wait (-ECANCELED) while a
 * helper runs the call, which the orphan then undoes where it made
 * something (an fd).
 */
static long fop_offload(struct prt__worker *w, const struct prt__fopargs *a, uint64_t tmo)
{
	return offload_timed(w, a, tmo ? prt__deadline_in(tmo) : 0);
}

/* ---- the calls -------------------------------------------------------------------------- */

/* Is file call @op carried by @w's ring (probed), rather than the offload pool? */
static bool fop_native(struct prt__worker *w, enum prt__fop_code op)
{
	return w->io.ops->fop && (w->rt->io.fop_native & (1u << op));
}

/* A call: the syscall on a plain thread, else the ring or the offload pool. */
static long run_fop(const struct prt__fopargs *a, uint64_t tmo)
{
	struct prt__worker *w = prt__cur_worker();

	/* A plain thread: @tmo does not apply (nothing could end the syscall); socket(2) never blocks. */
	if (!w || (a->op == PRT_FOP_SOCKET && !fop_native(w, a->op)))
		return prt__fop_sys(a);
	/* Cancelled: nothing done, on either backend (prt_socket, which never waits, is made). */
	if (a->op != PRT_FOP_SOCKET && prt__cancel_pending(w->curr))
		return -ECANCELED;
	if (tmo && prt__deadline_in(tmo) == PRT_NEVER)
		tmo = 0; /* saturated: it never expires */
	if (fop_native(w, a->op) && a->op != PRT_FOP_SOCKET && a->fd >= 0) {
		/* on an fd, in the ring: as a socket's call, seen by a prt_close (io.c) */
		struct prt__io *io;
		long r;

		if ((r = prt__io_enter(&w, a->fd, fop_names[a->op], &tmo)))
			return r;
		io = &w->io;
		r = w->io.ops->fop(w, a, tmo);
		prt__io_leave(io);
		return r;
	}
	prt__set_wait(w->curr, PRT_WK_IO, fop_names[a->op], a->op == PRT_FOP_SOCKET ? -1 : a->fd);
	if (fop_native(w, a->op))
		return w->io.ops->fop(w, a, tmo);
	return fop_offload(w, a, tmo);
}

PRT_API int prt_openat_timeout(int dirfd, const char *path, int flags, mode_t mode,
			       uint64_t tmo)
{
	struct prt__fopargs a = { .op = PRT_FOP_OPENAT, .fd = dirfd, .path = path,
				  .flags = flags, .mode = mode };

	if (!path)
		return -EFAULT;
	return (int)run_fop(&a, tmo);
}

PRT_API int prt_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return prt_openat_timeout(dirfd, path, flags, mode, 0);
}

/* fsync or fdatasync (@op) of @fd. */
static int sync_fd(enum prt__fop_code op, int fd, uint64_t tmo)
{
	struct prt__fopargs a = { .op = op, .fd = fd };

	if (fd < 0)
		return -EBADF;
	return (int)run_fop(&a, tmo);
}

PRT_API int prt_fsync_timeout(int fd, uint64_t tmo)
{
	return sync_fd(PRT_FOP_FSYNC, fd, tmo);
}

PRT_API int prt_fsync(int fd)
{
	return sync_fd(PRT_FOP_FSYNC, fd, 0);
}

PRT_API int prt_fdatasync_timeout(int fd, uint64_t tmo)
{
	return sync_fd(PRT_FOP_FDATASYNC, fd, tmo);
}

PRT_API int prt_fdatasync(int fd)
{
	return sync_fd(PRT_FOP_FDATASYNC, fd, 0);
}

PRT_API int prt_fallocate_timeout(int fd, int mode, off_t offset, off_t len, uint64_t tmo)
{
	struct prt__fopargs a = { .op = PRT_FOP_FALLOCATE, .fd = fd, .flags = mode,
				  .off = offset, .len = len };

	if (fd < 0)
		return -EBADF;
	return (int)run_fop(&a, tmo);
}

PRT_API int prt_fallocate(int fd, int mode, off_t offset, off_t len)
{
	return prt_fallocate_timeout(fd, mode, offset, len, 0);
}

PRT_API int prt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf)
{
	struct prt__fopargs a = { .op = PRT_FOP_STATX, .fd = dirfd, .path = path, .flags = flags,
				  .mode = mask, .stx = buf };

	if (!path || !buf)
		return -EFAULT;
	return (int)run_fop(&a, 0);
}

PRT_API int prt_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
			 unsigned flags)
{
	struct prt__fopargs a = { .op = PRT_FOP_RENAMEAT, .fd = olddirfd, .path = oldpath,
				  .fd2 = newdirfd, .path2 = newpath, .flags = (int)flags };

	if (!oldpath || !newpath)
		return -EFAULT;
	return (int)run_fop(&a, 0);
}

PRT_API int prt_unlinkat(int dirfd, const char *path, int flags)
{
	struct prt__fopargs a = { .op = PRT_FOP_UNLINKAT, .fd = dirfd, .path = path, .flags = flags };

	if (!path)
		return -EFAULT;
	return (int)run_fop(&a, 0);
}

PRT_API int prt_socket(int domain, int type, int protocol)
{
	struct prt__fopargs a = { .op = PRT_FOP_SOCKET, .fd = domain, .fd2 = type,
				  .flags = protocol };

	return (int)run_fop(&a, 0);
}
