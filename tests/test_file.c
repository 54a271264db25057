/* SPDX-License-Identifier: MIT */
/*
 * File and socket calls (proxyrt/io.h, "File calls"), run on io_uring
 * and on epoll, from fibers and from a plain thread: each call's
 * results and error paths (ENOENT, EEXIST with O_EXCL, EBADF, a rename
 * into a missing directory, bad input); which path carried them (the
 * ring, or the offload pool: every opcode in turn taken as missing by
 * fault injection); FIFO opens waiting for the other end as open(2);
 * timeouts (a call given up on: the fd it opens later is closed, a
 * call no helper took is never made, prt_runtime_destroy waits for one
 * under way); and the io-wq helpers' CPUs, read back from /proc.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "test_common.h"
#include "io_backend.h" /* internal: the file calls' codes */
#include "runtime_int.h" /* internal: the probe's opcodes, the offload pool, io-wq affinity */
#if PRT_FAULT_INJECTION
#include "fault.h"
#endif

#define SEC 1000000000ull
#define ALL_FOPS ((1u << PRT_FOP_N) - 1)

static int g_backend = PRT_IO_URING;
static char g_dir[256]; /* a fresh directory of the test's own */
static prt_runtime_t *rt_of_test; /* for a fiber that needs its worker's ring */

static prt_runtime_t *file_rt(int nworkers, unsigned flags, unsigned offload_threads)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.flags = flags;
	cfg.io_backend = g_backend;
	cfg.offload_threads = offload_threads;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_int_equal(prt_runtime_io_backend(rt), g_backend);
	return rt;
}

/* Open fds of the process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void *offload_pool(prt_runtime_t *rt)
{
	return __atomic_load_n(&rt->io.offload, __ATOMIC_ACQUIRE);
}

/* ---- every call, its results and errors (a fiber or a plain thread) ---- */

static void *calls_open(int dfd)
{
	int fd, fd2;

	fd = prt_openat(dfd, "a", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	FIBER_CHECK(fd >= 0);
	FIBER_CHECK(prt_openat(dfd, "a", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640) == -EEXIST);
	FIBER_CHECK(prt_openat(dfd, "missing", O_RDONLY | O_CLOEXEC, 0) == -ENOENT);
	FIBER_CHECK(prt_openat(dfd, "nodir/x", O_RDWR | O_CREAT | O_CLOEXEC, 0600) == -ENOENT);
	FIBER_CHECK(prt_openat(dfd, NULL, O_RDONLY, 0) == -EFAULT);
	FIBER_CHECK(prt_openat(-5, "relative", O_RDONLY, 0) == -EBADF);
	fd2 = prt_openat_timeout(dfd, "a", O_RDONLY | O_CLOEXEC, 0, 10 * SEC);
	FIBER_CHECK(fd2 >= 0 && fd2 != fd);
	FIBER_CHECK(prt_close(fd2) == 0);
	fd2 = prt_openat_timeout(dfd, "a", O_RDONLY | O_CLOEXEC, 0, UINT64_MAX); /* saturates */
	FIBER_CHECK(fd2 >= 0);
	FIBER_CHECK(prt_close(fd2) == 0);
	return (void *)(intptr_t)-fd; /* <= 0: the fd; > 0 would be a failed check's line */
}

static void *calls_sync(int fd)
{
	static char buf[8192];

	memset(buf, 'a', sizeof(buf));
	FIBER_CHECK(prt_write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf));
	FIBER_CHECK(prt_fsync(fd) == 0);
	FIBER_CHECK(prt_fdatasync(fd) == 0);
	FIBER_CHECK(prt_fsync_timeout(fd, 10 * SEC) == 0);
	FIBER_CHECK(prt_fdatasync_timeout(fd, UINT64_MAX) == 0);
	FIBER_CHECK(prt_fsync(-1) == -EBADF);
	FIBER_CHECK(prt_fdatasync_timeout(-2, SEC) == -EBADF);
	FIBER_CHECK(prt_fallocate(fd, 0, 0, 1 << 20) == 0);
	FIBER_CHECK(prt_fallocate_timeout(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20, 10 * SEC) == 0);
	FIBER_CHECK(prt_fallocate(fd, 0, -1, 10) == -EINVAL);
	FIBER_CHECK(prt_fallocate(fd, 0, 0, 0) == -EINVAL);
	FIBER_CHECK(prt_fallocate(-1, 0, 0, 10) == -EBADF);
	return NULL;
}

static void *calls_statx(int dfd, int fd)
{
	struct statx st;

	memset(&st, 0, sizeof(st));
	FIBER_CHECK(prt_statx(dfd, "a", 0, STATX_SIZE | STATX_MODE, &st) == 0);
	FIBER_CHECK(st.stx_size == 1 << 20); /* fallocate's, not KEEP_SIZE's */
	FIBER_CHECK(S_ISREG(st.stx_mode) && (st.stx_mode & 0777) == 0640);
	memset(&st, 0, sizeof(st));
	FIBER_CHECK(prt_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &st) == 0);
	FIBER_CHECK(st.stx_size == 1 << 20);
	FIBER_CHECK(prt_statx(dfd, "missing", 0, STATX_SIZE, &st) == -ENOENT);
	FIBER_CHECK(prt_statx(dfd, NULL, 0, STATX_SIZE, &st) == -EFAULT);
	FIBER_CHECK(prt_statx(dfd, "a", 0, STATX_SIZE, NULL) == -EFAULT);
	return NULL;
}

static void *calls_rename_unlink(int dfd)
{
	struct statx st;
	int fd;

	FIBER_CHECK(prt_renameat(dfd, "a", dfd, "b", 0) == 0);
	FIBER_CHECK(prt_statx(dfd, "a", 0, STATX_SIZE, &st) == -ENOENT);
	FIBER_CHECK(prt_statx(dfd, "b", 0, STATX_SIZE, &st) == 0 && st.stx_size == 1 << 20);
	FIBER_CHECK(prt_renameat(dfd, "b", dfd, "nodir/c", 0) == -ENOENT);
	FIBER_CHECK(prt_renameat(dfd, "missing", dfd, "c", 0) == -ENOENT);
	FIBER_CHECK((fd = prt_openat(dfd, "c", O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) >= 0);
	FIBER_CHECK(prt_close(fd) == 0);
	FIBER_CHECK(prt_renameat(dfd, "b", dfd, "c", RENAME_NOREPLACE) == -EEXIST);
	FIBER_CHECK(prt_renameat(dfd, NULL, dfd, "c", 0) == -EFAULT);
	FIBER_CHECK(prt_renameat(dfd, "b", dfd, NULL, 0) == -EFAULT);
	FIBER_CHECK(prt_unlinkat(dfd, "b", 0) == 0);
	FIBER_CHECK(prt_unlinkat(dfd, "b", 0) == -ENOENT);
	FIBER_CHECK(prt_unlinkat(dfd, "c", 0) == 0);
	FIBER_CHECK(mkdirat(dfd, "sub", 0700) == 0);
	FIBER_CHECK(prt_unlinkat(dfd, "sub", 0) == -EISDIR);
	FIBER_CHECK(prt_unlinkat(dfd, "sub", AT_REMOVEDIR) == 0);
	FIBER_CHECK(prt_unlinkat(dfd, NULL, 0) == -EFAULT);
	return NULL;
}

static void *calls_socket(void)
{
	int s, type = 0;
	socklen_t l = sizeof(type);

	FIBER_CHECK((s = prt_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	FIBER_CHECK(getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &l) == 0 && type == SOCK_STREAM);
	FIBER_CHECK(fcntl(s, F_GETFD) & FD_CLOEXEC);
	FIBER_CHECK(prt_close(s) == 0);
	FIBER_CHECK((s = prt_socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) >= 0);
	FIBER_CHECK(fcntl(s, F_GETFL) & O_NONBLOCK);
	FIBER_CHECK(prt_close(s) == 0);
	FIBER_CHECK(prt_socket(-1, SOCK_STREAM, 0) == -EAFNOSUPPORT);
	FIBER_CHECK(prt_socket(AF_UNIX, 12345, 0) == -EINVAL);
	return NULL;
}

/* Every call in @dir (emptied again): NULL, or the line of the failed check. */
static void *calls_main(void *arg)
{
	const char *dir = arg;
	int dfd, fd;
	void *r;

	FIBER_CHECK((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	r = calls_open(dfd);
	FIBER_CHECK((intptr_t)r <= 0);
	fd = (int)-(intptr_t)r;
	if (!(r = calls_sync(fd)) && !(r = calls_statx(dfd, fd)))
		r = calls_rename_unlink(dfd);
	FIBER_CHECK(prt_close(fd) == 0);
	FIBER_CHECK(prt_fsync(fd) == -EBADF); /* closed (nobody else opens fds meanwhile) */
	if (!r)
		r = calls_socket();
	close(dfd);
	return r;
}

static void test_calls(void **state)
{
	prt_runtime_t *rt = file_rt(2, 0, 0);
	uint64_t ops = 0;

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, calls_main, g_dir));
	for (int i = 0; i < prt_runtime_nworkers(rt); i++) {
		prt_worker_stats_t st;

		assert_int_equal(prt_worker_stats(rt, i, &st), 0);
		ops += st.io_ops;
	}
	if (g_backend == PRT_IO_EPOLL) {
		assert_int_equal(rt->io.fop_native, 0);
		assert_non_null(offload_pool(rt)); /* the file calls ran there */
	} else if (rt->io.fop_native == ALL_FOPS) {
		assert_null(offload_pool(rt)); /* the ring carried every one */
		assert_true(ops >= 30);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_calls_plain_thread(void **state)
{
	(void)state;
	assert_null(calls_main(g_dir));
}

/* ---- the offload fallback, each opcode in turn (fault injection) ---- */

#if PRT_FAULT_INJECTION
static const char *const op_names[PRT_FOP_N] = {
	"openat", "fsync", "fdatasync", "fallocate", "statx", "renameat", "unlinkat", "socket",
};

/*
 * The probe takes file opcode k as missing: the calls all work, the
 * ring carries every other one, and only k's call (but socket(2), made
 * directly) starts the offload pool.
 */
static void test_opcode_missing(void **state)
{
	(void)state;
	if (g_backend != PRT_IO_URING)
		skip();
	for (int k = 0; k < PRT_FOP_N; k++) {
		prt_runtime_t *rt;

		prt__fault_arm(PRT_FAULT_OPCODE, (unsigned)k + 1, ENOSYS);
		rt = file_rt(1, 0, 0);
		prt__fault_arm(PRT_FAULT_OPCODE, 0, 0);
		if (rt->io.fop_native != (ALL_FOPS & ~(1u << k))) {
			fprintf(stderr, "test_file: opcode %s: probed 0x%x: the kernel lacks some\n",
				op_names[k], rt->io.fop_native);
			assert_int_equal(prt_runtime_destroy(rt), 0);
			skip();
		}
		assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, calls_main, g_dir));
		if (k == PRT_FOP_SOCKET)
			assert_null(offload_pool(rt));
		else
			assert_non_null(offload_pool(rt));
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
}
#endif

#if PRT_FAULT_INJECTION
/*
 * A statx on the offload pool given up on (prt_cancel) while its helper
 * runs it: the helper is held at the pause point after it took the job,
 * the fiber is cancelled and returns, then the helper runs the call. The
 * caller's buffer, which may be gone by then (its stack), is not written.
 */
struct stxgu {
	atomic_int taken, release, calling;
	struct statx *buf;
	long res;
};

static void stxgu_pause(void *arg)
{
	struct stxgu *x = arg;

	atomic_store(&x->taken, 1);
	while (!atomic_load(&x->release))
		sched_yield();
}

static void *stxgu_main(void *arg)
{
	struct stxgu *x = arg;

	atomic_store(&x->calling, 1);
	x->res = prt_statx(AT_FDCWD, g_dir, 0, STATX_BASIC_STATS, x->buf);
	FIBER_CHECK(prt_cancel_clear() == 1);
	return NULL;
}

static void test_statx_given_up(void **state)
{
	struct stxgu x = { .res = 1 };
	unsigned char *b;
	prt_runtime_t *rt;
	prt_fiber_t f;
	void *res;

	(void)state;
	/* The pool: the epoll backend, or io_uring with statx's opcode taken as missing. */
	prt__fault_arm(PRT_FAULT_OPCODE, PRT_FOP_STATX + 1, ENOSYS);
	rt = file_rt(1, 0, 1);
	prt__fault_arm(PRT_FAULT_OPCODE, 0, 0);
	assert_false(rt->io.fop_native & (1u << PRT_FOP_STATX));
	x.buf = malloc(sizeof(*x.buf));
	assert_non_null(x.buf);
	memset(x.buf, 0xa5, sizeof(*x.buf));
	prt__fault_set_pause(PRT_PAUSE_OFFLOAD_RUN, stxgu_pause, &x);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, stxgu_main, &x);
	while (!atomic_load(&x.taken))
		sched_yield();
	assert_int_equal(prt_cancel(f), 0);
	assert_int_equal(prt_join(f, &res), 0);
	assert_null(res);
	assert_int_equal(x.res, -ECANCELED);
	atomic_store(&x.release, 1);
	assert_int_equal(prt_runtime_destroy(rt), 0); /* joins the helper: the statx was made */
	prt__fault_set_pause(PRT_PAUSE_OFFLOAD_RUN, NULL, NULL);
	b = (unsigned char *)x.buf;
	for (size_t i = 0; i < sizeof(*x.buf); i++)
		if (b[i] != 0xa5)
			fail_msg("statx given up on wrote its caller's buffer (byte %zu)", i);
	free(x.buf);
}
#endif

/* ---- FIFOs: an open waits for the other end, as open(2) ---- */

struct fifo {
	char path[300];
	int flags;               /* the fiber's open: O_RDONLY or O_WRONLY */
	atomic_int partner;      /* the other end is being opened */
	atomic_int done;
	prt_fiber_t f;
};

/* Open the FIFO; the other end must be there by then. A reader gets what the writer wrote. */
static void *fifo_opener(void *arg)
{
	struct fifo *ff = arg;
	char c = 0;
	int fd = prt_openat(AT_FDCWD, ff->path, ff->flags | O_CLOEXEC, 0);
	void *res = NULL;

	if (fd < 0 || !atomic_load(&ff->partner))
		res = (void *)(intptr_t)__LINE__;
	else if (ff->flags == O_RDONLY && prt_read(fd, &c, 1) != 1)
		res = (void *)(intptr_t)__LINE__;
	else if (ff->flags == O_WRONLY && prt_write(fd, "x", 1) != 1)
		res = (void *)(intptr_t)__LINE__;
	if (fd >= 0)
		prt_close(fd);
	atomic_store(&ff->done, 1);
	return res;
}

/* The other end, opened without blocking (so it never waits for an opener that failed). */
static void *fifo_partner(void *arg)
{
	struct fifo *ff = arg;
	int fl = (ff->flags == O_RDONLY ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC;
	int fd;
	char c;

	atomic_store(&ff->partner, 1); /* before the open: the opener's may return as it does */
	while ((fd = open(ff->path, fl)) < 0 && errno == ENXIO && !atomic_load(&ff->done))
		sched_yield(); /* a writer waits for a reader: the opener's, still coming */
	if (fd < 0)
		return NULL;
	if (ff->flags == O_RDONLY) {
		if (write(fd, "x", 1) != 1)
			abort();
	} else {
		/* 0 (no writer yet) or EAGAIN (no data yet): stay, so the opener finds its reader. */
		while (read(fd, &c, 1) != 1 && !atomic_load(&ff->done))
			sched_yield();
	}
	close(fd);
	return NULL;
}

/* Until the opener waits in its open (it is BLOCKED in "openat") or is done. */
static void fifo_wait_opener(struct fifo *ff)
{
	struct prt__fiber *f = ff->f.p;

	while (!atomic_load(&ff->done) &&
	       !(atomic_load(&f->state) == PRT_FS_BLOCKED && atomic_load(&f->wait_kind) == PRT_WK_IO))
		sched_yield();
}

static void fifo_case(prt_runtime_t *rt, int flags)
{
	struct fifo ff = { .flags = flags };
	pthread_t t;
	void *res;

	snprintf(ff.path, sizeof(ff.path), "%s/fifo_waits", g_dir);
	assert_int_equal(mkfifo(ff.path, 0600), 0);
	ff.f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, fifo_opener, &ff);
	/* A reader opens at once only if nothing waited: then the partner is not there yet. */
	fifo_wait_opener(&ff);
	assert_int_equal(pthread_create(&t, NULL, fifo_partner, &ff), 0);
	assert_int_equal(prt_join(ff.f, &res), 0);
	if (res)
		fprintf(stderr, "test_file: FIFO open (%s) failed at line %d\n",
			flags == O_RDONLY ? "O_RDONLY" : "O_WRONLY", (int)(intptr_t)res);
	assert_null(res);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(unlink(ff.path), 0);
}

static void test_fifo_open_waits(void **state)
{
	prt_runtime_t *rt = file_rt(2, 0, 0);

	(void)state;
	for (int i = 0; i < 20; i++) {
		fifo_case(rt, O_RDONLY);
		fifo_case(rt, O_WRONLY);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- timeouts ---- */

/*
 * A FIFO open nobody answers, given up on: -ETIMEDOUT. Then both ends
 * are opened (an abandoned open still waiting then succeeds: the
 * runtime closes that fd) and the runtime is destroyed: no fd is left
 * behind, on either backend.
 */
static void *fifo_timeout_main(void *arg)
{
	const char *path = arg;

	FIBER_CHECK(prt_openat_timeout(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, 20000000) ==
		    -ETIMEDOUT);
	FIBER_CHECK(prt_openat_timeout(AT_FDCWD, path, O_WRONLY | O_CLOEXEC, 0, 20000000) ==
		    -ETIMEDOUT);
	FIBER_CHECK(prt_openat_timeout(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0, 1) == -ETIMEDOUT);
	return NULL;
}

static void test_timeout_fifo(void **state)
{
	char path[300];
	int before = count_fds(), r, w;
	prt_runtime_t *rt = file_rt(1, 0, 1);

	(void)state;
	snprintf(path, sizeof(path), "%s/fifo", g_dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, fifo_timeout_main, path));
	/*
	 * Both ends held open through the destroy: an abandoned open still
	 * in (or on its way to) a helper then completes at once, whichever
	 * end it opens; the runtime closes what it opened.
	 */
	r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	w = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	assert_true(r >= 0 && w >= 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	close(r);
	close(w);
	assert_int_equal(count_fds(), before);
	assert_int_equal(unlink(path), 0);
}

#if PRT_FAULT_INJECTION
/*
 * A writer's open nobody answers (io_uring: made again on a helper),
 * given up on by its timer, until the cancel's fault fired: on a
 * loaded machine the ring's first try may take the whole time, and
 * the call then ends without the helper's open.
 */
static void *fifo_writer_timeout_main(void *arg)
{
	for (int i = 0; i < 20 && !prt__fault_fired(PRT_FAULT_CANCEL); i++)
		FIBER_CHECK(prt_openat_timeout(AT_FDCWD, arg, O_WRONLY | O_CLOEXEC, 0,
					       100000000) == -ETIMEDOUT);
	return NULL;
}

/*
 * io_uring, the cancel of an abandoned writer's open not queued (as
 * with a full SQ): the open waits on in its helper. @answer: a reader
 * comes, the open succeeds and the ring closes the fd; else the runtime
 * stops with the open still waiting, and its worker cancels what is
 * left and waits for it (without that the request would leak). No fd
 * and no memory left behind either way.
 */
static void uncancelled_case(bool answer)
{
	char path[300];
	int before = count_fds(), r;
	long allocs = prt__fault_live(PRT_FAULT_ALLOC);
	prt_runtime_t *rt = file_rt(1, 0, 0);

	snprintf(path, sizeof(path), "%s/fifo_uncancelled", g_dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	prt__fault_arm(PRT_FAULT_CANCEL, 1, EBUSY);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, fifo_writer_timeout_main, path));
	assert_true(prt__fault_fired(PRT_FAULT_CANCEL));
	prt__fault_arm(PRT_FAULT_CANCEL, 0, 0);
	if (answer) {
		r = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		assert_true(r >= 0);
		/* Until the ring has reaped the open's end (its fd closed, orphans 0). */
		while (PRT_READ_ONCE(rt->workers[0]->io.orphans))
			sched_yield();
		close(r);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(count_fds(), before);
	assert_int_equal(prt__fault_live(PRT_FAULT_ALLOC), allocs);
	assert_int_equal(unlink(path), 0);
}

static void test_timeout_uncancelled(void **state)
{
	(void)state;
	if (g_backend != PRT_IO_URING)
		skip();
	uncancelled_case(true);
	uncancelled_case(false);
}
#endif

/*
 * The offload pool (epoll; or io_uring with the opcode taken as
 * missing) of one helper thread, kept busy by a prt_offload that waits
 * for a pipe: a timed fallocate waits in the pool's queue, times out,
 * and is never made (the file keeps size 0); the fd of a timed open that
 * times out queued is never opened.
 */
static int busy_fd[2];

static void *busy_helper(void *arg)
{
	char c;

	(void)arg;
	return read(busy_fd[0], &c, 1) == 1 ? NULL : (void *)1;
}

static void *busy_main(void *arg)
{
	void *r = (void *)1;

	(void)arg;
	FIBER_CHECK(prt_offload(busy_helper, NULL, &r) == 0);
	FIBER_CHECK(r == NULL);
	return NULL;
}

static void *queued_main(void *arg)
{
	int fd = *(int *)arg;
	struct statx st;

	FIBER_CHECK(prt_fallocate_timeout(fd, 0, 0, 1 << 20, 20000000) == -ETIMEDOUT);
	FIBER_CHECK(prt_fsync_timeout(fd, 20000000) == -ETIMEDOUT);
	FIBER_CHECK(prt_fdatasync_timeout(fd, 1) == -ETIMEDOUT);
	FIBER_CHECK(prt_openat_timeout(AT_FDCWD, g_dir, O_RDONLY | O_CLOEXEC, 0, 20000000) ==
		    -ETIMEDOUT);
	FIBER_CHECK(write(busy_fd[1], "x", 1) == 1); /* the helper is free again */
	/* After anything still queued (one helper: FIFO order), so it would show. */
	FIBER_CHECK(prt_fallocate_timeout(fd, 0, 0, 4096, 10 * SEC) == 0);
	FIBER_CHECK(prt_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &st) == 0);
	FIBER_CHECK(st.stx_size == 4096); /* the timed-out fallocate was dropped, not made late */
	return NULL;
}

static void queued_case(prt_runtime_t *rt)
{
	char path[300];
	int before = count_fds(), fd;
	prt_fiber_t busy;

	snprintf(path, sizeof(path), "%s/q", g_dir);
	assert_int_equal(pipe2(busy_fd, O_CLOEXEC), 0);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	busy = test_spawn(rt, PRT_PRIO_DEFAULT, -1, busy_main, NULL);
	/* The helper runs busy_helper once the busy fiber waits on the pool. */
	while (!(atomic_load(&busy.p->state) == PRT_FS_BLOCKED &&
		 atomic_load(&busy.p->wait_kind) == PRT_WK_OFFLOAD))
		sched_yield();
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, queued_main, &fd));
	assert_int_equal(prt_join(busy, NULL), 0);
	close(fd);
	close(busy_fd[0]);
	close(busy_fd[1]);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(count_fds(), before);
}

static void test_timeout_queued(void **state)
{
	prt_runtime_t *rt;

	(void)state;
	if (g_backend == PRT_IO_EPOLL) {
		rt = file_rt(1, 0, 1);
		queued_case(rt);
		assert_int_equal(prt_runtime_destroy(rt), 0);
		return;
	}
	/* io_uring as if the kernel had only IORING_OP_STATX: the pool carries the rest. */
	rt = file_rt(1, 0, 1);
	rt->io.fop_native &= 1u << PRT_FOP_STATX; /* before any fiber: spawning publishes it */
	queued_case(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * io_uring, its io-wq allowed one helper for file work, kept busy by an
 * open of a FIFO waiting for a reader: a timed fallocate and fsync wait
 * in io-wq's queue, time out, and are cancelled there, never made.
 */
struct ringq {
	char fifo[300];
	int fd;
	atomic_int opened;
	prt_fiber_t opener;
};

static void *ringq_opener(void *arg)
{
	struct ringq *q = arg;
	int fd = prt_openat(AT_FDCWD, q->fifo, O_WRONLY | O_CLOEXEC, 0);

	FIBER_CHECK(fd >= 0);
	atomic_store(&q->opened, 1);
	FIBER_CHECK(prt_close(fd) == 0);
	return NULL;
}

static void *ringq_main(void *arg)
{
	struct ringq *q = arg;
	unsigned max[2] = { 1, 0 }; /* bounded (file work) helpers: 1; unbounded: as is */
	struct statx st;
	int r;

	prt_worker_stats_t st0, st1;

	FIBER_CHECK(io_uring_register_iowq_max_workers(&rt_of_test->workers[0]->io.ring, max) == 0);
	FIBER_CHECK(prt_worker_stats(rt_of_test, 0, &st0) == 0);
	q->opener = test_spawn(prt_runtime_self(), PRT_PRIO_DEFAULT, 0, ringq_opener, q);
	/*
	 * Until the open is made again on a helper: the ring's first try
	 * completed (-ENXIO: one op) and the opener waits again. One
	 * worker: the opener's state is never looked at mid-switch. The
	 * calls below are submitted after it, so io-wq queues them behind.
	 */
	do {
		FIBER_CHECK(prt_yield() == 0);
		FIBER_CHECK(prt_worker_stats(rt_of_test, 0, &st1) == 0);
	} while (!(st1.io_ops > st0.io_ops && atomic_load(&q->opener.p->state) == PRT_FS_BLOCKED &&
		   atomic_load(&q->opener.p->wait_kind) == PRT_WK_IO));
	FIBER_CHECK(prt_fallocate_timeout(q->fd, 0, 0, 1 << 20, 20000000) == -ETIMEDOUT);
	FIBER_CHECK(prt_fsync_timeout(q->fd, 20000000) == -ETIMEDOUT);
	FIBER_CHECK(!atomic_load(&q->opened));
	r = open(q->fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* the reader: the open ends */
	FIBER_CHECK(r >= 0);
	FIBER_CHECK(prt_join(q->opener, NULL) == 0);
	close(r);
	FIBER_CHECK(prt_fallocate(q->fd, 0, 0, 4096) == 0);
	FIBER_CHECK(prt_statx(q->fd, "", AT_EMPTY_PATH, STATX_SIZE, &st) == 0);
	FIBER_CHECK(st.stx_size == 4096); /* the timed-out fallocate was dropped */
	return NULL;
}

static void test_timeout_ring_queued(void **state)
{
	struct ringq q = { 0 };
	char path[300];

	(void)state;
	if (g_backend != PRT_IO_URING)
		skip();
	rt_of_test = file_rt(1, 0, 0);
	snprintf(q.fifo, sizeof(q.fifo), "%s/fifo_ringq", g_dir);
	snprintf(path, sizeof(path), "%s/ringq", g_dir);
	assert_int_equal(mkfifo(q.fifo, 0600), 0);
	q.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(q.fd >= 0);
	assert_null(test_run_in(rt_of_test, PRT_PRIO_DEFAULT, ringq_main, &q));
	assert_int_equal(prt_runtime_destroy(rt_of_test), 0);
	close(q.fd);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(unlink(q.fifo), 0);
}

/* ---- io-wq helpers off the worker's CPU ---- */

struct iowq {
	int fd;
	pid_t tid;     /* the worker thread */
	char cpus[64]; /* Cpus_allowed_list of its io-wq helper, "" if none was found */
};

/* Read the Cpus_allowed_list of thread "iou-wrk-<tid>" into @out. */
static void iowq_cpus(pid_t tid, char *out, size_t n)
{
	char fmt[32];
	char want[32], path[320], line[256];
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;

	out[0] = 0;
	snprintf(want, sizeof(want), "iou-wrk-%d\n", (int)tid);
	while (d && (e = readdir(d))) {
		FILE *f;
		bool match = false;

		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		if ((f = fopen(path, "r"))) {
			match = fgets(line, sizeof(line), f) && !strcmp(line, want);
			fclose(f);
		}
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		if (!match || !(f = fopen(path, "r")))
			continue;
		while (fgets(line, sizeof(line), f))
			if (snprintf(fmt, sizeof(fmt), "Cpus_allowed_list: %%%zus", n - 1) > 0 &&
			    sscanf(line, fmt, out) == 1)
				break;
		fclose(f);
		break;
	}
	if (d)
		closedir(d);
}

/* An fsync (always run on an io-wq helper), then that helper's CPUs, while it is there. */
static void *iowq_main(void *arg)
{
	struct iowq *q = arg;

	q->tid = (pid_t)syscall(SYS_gettid);
	FIBER_CHECK(prt_write(q->fd, "x", 1) == 1);
	FIBER_CHECK(prt_fsync(q->fd) == 0);
	iowq_cpus(q->tid, q->cpus, sizeof(q->cpus));
	return NULL;
}

/* The runtime's CPUs but @pu, as a list ("0-3,5"). */
static void cpus_but(prt_runtime_t *rt, int pu, char *out, size_t n)
{
	cpu_set_t set = rt->topo.cpus;
	size_t len = 0;

	out[0] = 0;
	CPU_CLR(pu, &set);
	for (int c = 0; c < CPU_SETSIZE; c++) {
		int e = c;

		if (!CPU_ISSET(c, &set))
			continue;
		while (e + 1 < CPU_SETSIZE && CPU_ISSET(e + 1, &set))
			e++;
		len += (size_t)snprintf(out + len, n - len, e > c ? "%s%d-%d" : "%s%d",
					len ? "," : "", c, e);
		c = e;
	}
}

static void test_iowq_affinity(void **state)
{
	prt_worker_info_t wi;
	struct iowq q = { 0 };
	char path[300], want[64];
	prt_runtime_t *rt;

	(void)state;
	if (g_backend != PRT_IO_URING)
		skip();
	rt = file_rt(1, 0, 0);
	assert_int_equal(prt_runtime_worker_info(rt, 0, &wi), 0);
	if (!wi.pinned || CPU_COUNT(&rt->topo.cpus) < 2) {
		/* Nothing to keep apart: not asked for. */
		assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, test_noop, NULL));
		assert_int_equal(rt->workers[0]->io.iowq_aff, PRT_IOWQ_AFF_NONE);
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
	snprintf(path, sizeof(path), "%s/w", g_dir);
	q.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(q.fd >= 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, iowq_main, &q));
	/* Read after the worker ran a fiber: it had started, and set it, by then. */
	assert_int_equal(rt->workers[0]->io.iowq_aff, PRT_IOWQ_AFF_SET);
	cpus_but(rt, wi.pu_os_index, want, sizeof(want));
	fprintf(stderr, "test_file: worker on CPU %d, its io-wq helper on \"%s\" (want \"%s\")\n",
		wi.pu_os_index, q.cpus, want);
	assert_string_equal(q.cpus, want);
	assert_int_equal(prt_runtime_destroy(rt), 0);

	/* PRT_RT_NO_IOWQ_AFF: left to the kernel. */
	rt = file_rt(1, PRT_RT_NO_IOWQ_AFF, 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, iowq_main, &q));
	assert_int_equal(rt->workers[0]->io.iowq_aff, PRT_IOWQ_AFF_NONE);
	assert_int_equal(prt_runtime_destroy(rt), 0);
#if PRT_FAULT_INJECTION
	/* Refused: recorded, and file calls work as before. */
	prt__fault_arm(PRT_FAULT_IOWQ, 1, EINVAL);
	rt = file_rt(1, 0, 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, iowq_main, &q));
	assert_true(prt__fault_fired(PRT_FAULT_IOWQ));
	prt__fault_arm(PRT_FAULT_IOWQ, 0, 0);
	assert_int_equal(rt->workers[0]->io.iowq_aff, -EINVAL);
	assert_int_equal(prt_runtime_destroy(rt), 0);
#endif
	close(q.fd);
	assert_int_equal(unlink(path), 0);
}

#if PRT_FAULT_INJECTION
/*
 * io_uring: the kernel ends a call queued for its helper threads with
 * -ECANCELED, unasked and never made, when it cannot start the first
 * helper of the worker thread (a signal pending there, three tries;
 * Linux 6.18 io-wq.c). Each call below is dropped so once (fault.h:
 * PRT_FAULT_IOWQ_DROP) and must still be made and succeed: it returned
 * -ECANCELED, with nothing closed or cancelled. Untimed and timed ring
 * calls (a link timeout), untimed and timed file calls (a timer).
 */
enum { KD_SHUTDOWN, KD_OPEN, KD_OPEN_TIMED, KD_WRITE, KD_FSYNC, KD_FDATASYNC_TIMED,
       KD_FALLOCATE, KD_STATX, KD_READ_TIMED, KD_N };

static const char *const kd_names[KD_N] = { "shutdown", "openat", "openat_timeout", "write",
					    "fsync", "fdatasync_timeout", "fallocate", "statx",
					    "read_timeout" };

static int kd_call(int k, const char *path, int *fd)
{
	struct statx stx;
	char c = 0;
	int sv[2], r;

	switch (k) {
	case KD_SHUTDOWN:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
			return -errno;
		r = prt_shutdown(sv[1], SHUT_WR);
		if (r == 0 && recv(sv[0], &c, 1, MSG_DONTWAIT) != 0)
			r = -EPROTO; /* the shutdown was not made */
		close(sv[0]);
		close(sv[1]);
		return r;
	case KD_OPEN:
	case KD_OPEN_TIMED:
		r = k == KD_OPEN ? prt_openat(AT_FDCWD, path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)
				 : prt_openat_timeout(AT_FDCWD, path, O_RDWR | O_CREAT | O_CLOEXEC,
						      0600, 10000000000ull);
		if (r < 0)
			return r;
		if (*fd >= 0)
			close(*fd);
		*fd = r;
		return 0;
	case KD_WRITE:
		r = (int)prt_write(*fd, "x", 1);
		return r == 1 ? 0 : r < 0 ? r : -EIO;
	case KD_FSYNC:
		return prt_fsync(*fd);
	case KD_FDATASYNC_TIMED:
		return prt_fdatasync_timeout(*fd, 10000000000ull);
	case KD_FALLOCATE:
		return prt_fallocate(*fd, 0, 0, 8192);
	case KD_STATX:
		r = prt_statx(AT_FDCWD, path, 0, STATX_SIZE, &stx);
		return r == 0 && stx.stx_size != 8192 ? -EPROTO : r;
	case KD_READ_TIMED:
		if (pipe2(sv, O_CLOEXEC))
			return -errno;
		r = write(sv[1], "y", 1) == 1 ? 0 : -EIO;
		if (r == 0)
			r = (int)prt_read_timeout(sv[0], &c, 1, 10000000000ull);
		close(sv[0]);
		close(sv[1]);
		return r == 1 && c == 'y' ? 0 : r < 0 ? r : -EPROTO;
	}
	return -EINVAL;
}

struct kd {
	const char *path;
	int res[KD_N];
	bool fired[KD_N];
};

static void *kd_main(void *arg)
{
	struct kd *p = arg;
	int fd = -1;

	for (int k = 0; k < KD_N; k++) {
		prt__fault_arm(PRT_FAULT_IOWQ_DROP, 1, ECANCELED);
		p->res[k] = kd_call(k, p->path, &fd);
		p->fired[k] = prt__fault_fired(PRT_FAULT_IOWQ_DROP);
		prt__fault_arm(PRT_FAULT_IOWQ_DROP, 0, 0);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void test_kernel_dropped_call(void **state)
{
	char path[300];
	struct kd p = { .path = path };
	prt_runtime_t *rt;

	(void)state;
	if (g_backend != PRT_IO_URING)
		skip();
	snprintf(path, sizeof(path), "%s/kernel_dropped", g_dir);
	rt = file_rt(1, 0, 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, kd_main, &p));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	for (int k = 0; k < KD_N; k++) {
		if (!p.fired[k])
			fail_msg("%s: not dropped (the fault did not fire)", kd_names[k]);
		if (p.res[k] != 0)
			fail_msg("%s: %d (%s)", kd_names[k], p.res[k], strerror(-p.res[k]));
	}
	assert_int_equal(unlink(path), 0);
}
#endif

/*
 * Bad pointers are -EFAULT, as the syscalls say. On epoll (and where the
 * ring lacks an opcode) the calls run on the offload pool, which copied
 * the paths and the statx buffer in this library: a wild pointer killed
 * the process (a review: SIGSEGV in strnlen, 7 of 7 calls). A valid path
 * that ends just before an unmapped page still works. Fibers, with and
 * without a timeout, and a plain thread.
 */
static void *bad_ptr_main(void *arg)
{
	const char *dir = arg;
	long pg = sysconf(_SC_PAGESIZE);
	char *two = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			 -1, 0);
	const char *wild, *edge;
	struct statx stx;
	int dfd, fd;

	FIBER_CHECK(two != MAP_FAILED && munmap(two + pg, (size_t)pg) == 0);
	wild = two + pg; /* unmapped */
	FIBER_CHECK((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0);
	FIBER_CHECK(prt_openat(dfd, wild, O_RDONLY, 0) == -EFAULT);
	FIBER_CHECK(prt_openat_timeout(dfd, wild, O_RDONLY, 0, 1000000000ull) == -EFAULT);
	FIBER_CHECK(prt_statx(dfd, wild, 0, STATX_BASIC_STATS, &stx) == -EFAULT);
	FIBER_CHECK(prt_statx(dfd, ".", 0, STATX_BASIC_STATS, (struct statx *)(void *)wild) ==
		    -EFAULT);
	/* a buffer that runs into the unmapped page (it was 0, part of it written) */
	FIBER_CHECK(prt_statx(dfd, ".", 0, STATX_BASIC_STATS, (struct statx *)(void *)(wild - 100)) ==
		    -EFAULT);
	FIBER_CHECK(prt_renameat(dfd, wild, dfd, "x", 0) == -EFAULT);
	FIBER_CHECK(prt_renameat(dfd, ".", dfd, wild, 0) == -EFAULT);
	FIBER_CHECK(prt_unlinkat(dfd, wild, 0) == -EFAULT);
	/* "bp" and its terminator, the last bytes before the unmapped page */
	edge = memcpy(two + pg - 3, "bp", 3);
	FIBER_CHECK((fd = (int)prt_openat(dfd, edge, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) >= 0);
	close(fd);
	FIBER_CHECK(prt_statx(dfd, edge, 0, STATX_BASIC_STATS, &stx) == 0 && stx.stx_size == 0);
	FIBER_CHECK(prt_unlinkat(dfd, edge, 0) == 0);
	close(dfd);
	munmap(two, (size_t)pg);
	return NULL;
}

static void test_bad_pointers(void **state)
{
	prt_runtime_t *rt = file_rt(1, 0, 0);

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, bad_ptr_main, g_dir));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_null(bad_ptr_main(g_dir)); /* a plain thread: the syscalls */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_calls),
		cmocka_unit_test(test_calls_plain_thread),
		cmocka_unit_test(test_bad_pointers),
#if PRT_FAULT_INJECTION
		cmocka_unit_test(test_opcode_missing),
		cmocka_unit_test(test_timeout_uncancelled),
		cmocka_unit_test(test_statx_given_up),
		cmocka_unit_test(test_kernel_dropped_call),
#endif
		cmocka_unit_test(test_fifo_open_waits),
		cmocka_unit_test(test_timeout_fifo),
		cmocka_unit_test(test_timeout_queued),
		cmocka_unit_test(test_timeout_ring_queued),
		cmocka_unit_test(test_iowq_affinity),
	};
	const char *tmp = getenv("TMPDIR");
	int fails = 0;

	signal(SIGPIPE, SIG_IGN);
	snprintf(g_dir, sizeof(g_dir), "%s/prt_test_file.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(g_dir)) {
		perror("test_file: mkdtemp");
		return 1;
	}
	if (test_uring_usable("test_file")) {
		g_backend = PRT_IO_URING;
		fails += cmocka_run_group_tests_name("io_uring", tests, NULL, NULL);
	}
	g_backend = PRT_IO_EPOLL;
	fprintf(stderr, "test_file: epoll backend\n");
	fails += cmocka_run_group_tests_name("epoll", tests, NULL, NULL);
	rmdir(g_dir);
	return fails ? 1 : 0;
}
