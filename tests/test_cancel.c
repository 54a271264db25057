/* SPDX-License-Identifier: MIT */
/*
 * prt_cancel (proxyrt/fiber.h, docs/design.md section 17) and wait
 * groups (proxyrt/waitgroup.h): every cancellable call returns
 * ECANCELED when its fiber is cancelled while it waits and when the
 * cancel came first; mutex waits leave as their timeout does (the
 * owner stops running at the cancelled donor's priority); a condvar
 * wait returns holding its mutex; an I/O cancel leaves the fd usable;
 * cancel against handoff, from a plain thread and another worker,
 * thousands of times; wait groups from fibers and threads; bad input;
 * file calls (a FIFO's open, timed or not), no fd left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_common.h"

static int uring; /* io_uring usable: the I/O tests run on both backends */

static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* ---- each blocking call, cancelled while it waits or before it --------------- */

enum kind {
	K_SLEEP, K_JOIN, K_PARK, K_LOCK_FIBER_OWNER, K_LOCK_THREAD_OWNER, K_LOCK_NOPROXY,
	K_TIMEDLOCK, K_COND, K_COND_TIMED, K_SEM, K_WG, K_READ, K_ACCEPT, K_POLL, K_OFFLOAD,
	K_STREAM, K_OPEN_WR, K_OPEN_WR_TIMED, K_OPEN_RD_TIMED, K_NKINDS
};

static const char *const kind_names[] = {
	"sleep", "join", "park", "lock (fiber owner)", "lock (thread owner)", "lock (no proxy)",
	"timedlock", "cond_wait", "cond_timedwait", "sem_wait", "waitgroup_wait", "read",
	"accept", "poll", "offload", "stream_recv", "openat (FIFO, write)",
	"openat_timeout (FIFO, write)", "openat_timeout (FIFO, read)",
};

/* FIFOs' other ends, held open until the runtime is destroyed (a helper may be in the open). */
static int fifo_ends[2 * K_NKINDS];
static int nfifo_ends;

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

struct env {
	enum kind kind;
	bool before;            /* the fiber cancels itself before the call */
	atomic_int ready;       /* about to make the call */
	long result;
	prt_mutex_t m;
	prt_cond_t c;
	prt_sem_t sem;
	prt_waitgroup_t wg;
	prt_fiber_t other;      /* K_JOIN: the fiber joined; K_LOCK_FIBER_OWNER: the owner */
	atomic_int owner_locked, release;
	int pipe[2];            /* a socket pair (streams read sockets) */
	int lfd;                /* a listening socket */
	atomic_int off_started, off_release, off_done;
	bool owns_after;        /* K_COND: the mutex was held again when the call returned */
	char fifo[64];          /* K_OPEN_*: a FIFO nobody opens from the other side */
};

static void *parker(void *arg)
{
	struct env *e = arg;

	while (!atomic_load(&e->release))
		prt_park();
	return NULL;
}

/* K_LOCK_FIBER_OWNER: hold the mutex, asleep (parked) until released. */
static void *owner_fn(void *arg)
{
	struct env *e = arg;

	FIBER_CHECK(prt_mutex_lock(&e->m) == 0);
	atomic_store(&e->owner_locked, 1);
	while (!atomic_load(&e->release))
		prt_park();
	FIBER_CHECK(prt_mutex_unlock(&e->m) == 0);
	return NULL;
}

static void *offload_fn(void *arg)
{
	struct env *e = arg;

	atomic_store(&e->off_started, 1);
	while (!atomic_load(&e->off_release))
		pause_ms(1);
	atomic_store(&e->off_done, 1);
	return (void *)1;
}

static long do_call(struct env *e)
{
	struct timespec far = test_realtime_in(60L * 1000000000L);
	char buf[16];
	void *res;
	long r;

	switch (e->kind) {
	case K_SLEEP:
		return prt_sleep_ns(60ull * 1000000000u);
	case K_JOIN:
		return prt_join(e->other, &res);
	case K_PARK:
		return prt_park();
	case K_LOCK_FIBER_OWNER:
	case K_LOCK_THREAD_OWNER:
	case K_LOCK_NOPROXY:
		r = prt_mutex_lock(&e->m);
		if (!r)
			prt_mutex_unlock(&e->m);
		return r;
	case K_TIMEDLOCK:
		r = prt_mutex_timedlock(&e->m, &far);
		if (!r)
			prt_mutex_unlock(&e->m);
		return r;
	case K_COND:
	case K_COND_TIMED:
		if (prt_mutex_lock(&e->m))
			return -1000;
		r = e->kind == K_COND ? prt_cond_wait(&e->c, &e->m) : prt_cond_timedwait(&e->c, &e->m, &far);
		/* Held again: unlock succeeds only for the owner. */
		e->owns_after = prt_mutex_unlock(&e->m) == 0;
		return r;
	case K_SEM:
		return prt_sem_wait(&e->sem);
	case K_WG:
		return prt_waitgroup_wait(&e->wg);
	case K_READ:
		return prt_read(e->pipe[0], buf, sizeof(buf));
	case K_ACCEPT:
		return prt_accept(e->lfd, NULL, NULL, SOCK_CLOEXEC);
	case K_POLL:
		return prt_poll(e->pipe[0], POLLIN);
	case K_OFFLOAD:
		return prt_offload(offload_fn, e, &res);
	case K_STREAM: {
		prt_stream_t *s;

		if (prt_stream_open(&s, e->pipe[0]))
			return -1001;
		r = prt_stream_recv(s, buf, sizeof(buf), 0);
		prt_stream_close(s);
		return r;
	}
	case K_OPEN_WR:
	case K_OPEN_WR_TIMED:
	case K_OPEN_RD_TIMED: {
		int flags = (e->kind == K_OPEN_RD_TIMED ? O_RDONLY : O_WRONLY) | O_CLOEXEC;

		/* Timed: 20 s, far longer than the test waits before it cancels. */
		r = e->kind == K_OPEN_WR ? prt_openat(AT_FDCWD, e->fifo, flags, 0) :
					   prt_openat_timeout(AT_FDCWD, e->fifo, flags, 0,
							      20ull * 1000000000u);
		if (r >= 0)
			close((int)r);
		return r;
	}
	default:
		return -1002;
	}
}

static void *caller(void *arg)
{
	struct env *e = arg;

	if (e->before)
		FIBER_CHECK(prt_cancel(prt_self()) == 0);
	atomic_store(&e->ready, 1);
	e->result = do_call(e);
	/* The flag stays set (sticky) until cleared. */
	FIBER_CHECK(prt_cancelled() == 1);
	FIBER_CHECK(prt_cancel_clear() == 1);
	FIBER_CHECK(prt_cancelled() == 0);
	return NULL;
}

/* What a cancelled @kind returns: pthread-shaped calls give ECANCELED, the others -ECANCELED. */
static long want_of(enum kind k)
{
	switch (k) {
	case K_LOCK_FIBER_OWNER: case K_LOCK_THREAD_OWNER: case K_LOCK_NOPROXY: case K_TIMEDLOCK:
	case K_COND: case K_COND_TIMED: case K_SEM: case K_WG:
		return ECANCELED;
	default:
		return -ECANCELED;
	}
}

static void env_setup(prt_runtime_t *rt, struct env *e)
{
	prt_mutexattr_t ma;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	assert_int_equal(prt_mutexattr_init(&ma), 0);
	if (e->kind == K_LOCK_NOPROXY)
		assert_int_equal(prt_mutexattr_setproxy(&ma, PRT_MUTEX_PROXY_OFF), 0);
	assert_int_equal(prt_mutex_init(&e->m, &ma), 0);
	assert_int_equal(prt_cond_init(&e->c), 0);
	assert_int_equal(prt_sem_init(&e->sem, 0), 0);
	assert_int_equal(prt_waitgroup_init(&e->wg), 0);
	assert_int_equal(prt_waitgroup_add(&e->wg, 1), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e->pipe), 0);
	e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(e->lfd >= 0);
	assert_int_equal(bind(e->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(e->lfd, 4), 0);
	switch (e->kind) {
	case K_JOIN:
		e->other = test_spawn(rt, PRT_PRIO_DEFAULT, -1, parker, e);
		break;
	case K_LOCK_FIBER_OWNER:
		e->other = test_spawn(rt, PRT_PRIO_DEFAULT, -1, owner_fn, e);
		while (!atomic_load(&e->owner_locked))
			pause_ms(1);
		break;
	case K_LOCK_THREAD_OWNER: case K_LOCK_NOPROXY: case K_TIMEDLOCK:
		assert_int_equal(prt_mutex_lock(&e->m), 0); /* this thread owns it */
		break;
	case K_OPEN_WR: case K_OPEN_WR_TIMED: case K_OPEN_RD_TIMED: {
		static atomic_int seq;

		snprintf(e->fifo, sizeof(e->fifo), "/tmp/prt_cancel_fifo.%d.%d", (int)getpid(),
			 atomic_fetch_add(&seq, 1));
		unlink(e->fifo);
		assert_int_equal(mkfifo(e->fifo, 0600), 0);
		break;
	}
	default:
		break;
	}
}

/* After the call: the objects are as a timeout would leave them, and usable. */
static void env_check(struct env *e)
{
	char c = 'x', buf[4];
	void *res;

	switch (e->kind) {
	case K_JOIN:
		/* Still joinable. */
		atomic_store(&e->release, 1);
		assert_int_equal(prt_unpark(e->other), 0);
		assert_int_equal(prt_join(e->other, &res), 0);
		break;
	case K_LOCK_FIBER_OWNER:
		atomic_store(&e->release, 1);
		assert_int_equal(prt_unpark(e->other), 0);
		assert_int_equal(prt_join(e->other, &res), 0);
		assert_null(res);
		break;
	case K_LOCK_THREAD_OWNER: case K_LOCK_NOPROXY: case K_TIMEDLOCK:
		assert_int_equal(prt_mutex_unlock(&e->m), 0);
		break;
	case K_COND: case K_COND_TIMED:
		assert_true(e->owns_after);
		break;
	case K_SEM: {
		int v = -1;

		assert_int_equal(prt_sem_getvalue(&e->sem, &v), 0);
		assert_int_equal(v, 0); /* no unit taken, none lost */
		break;
	}
	case K_READ: case K_POLL: case K_STREAM:
		/* The pipe still works: the cancelled read took nothing. */
		assert_int_equal(write(e->pipe[1], &c, 1), 1);
		assert_int_equal(read(e->pipe[0], buf, sizeof(buf)), 1);
		break;
	case K_OFFLOAD:
		if (!e->before) {
			/* Only the wait ended: the call goes on, then ends. */
			atomic_store(&e->off_release, 1);
			while (!atomic_load(&e->off_done))
				pause_ms(1);
		} else {
			assert_int_equal(atomic_load(&e->off_started), 0); /* never run */
		}
		break;
	case K_OPEN_WR: case K_OPEN_WR_TIMED: case K_OPEN_RD_TIMED:
		/*
		 * An open given up on may go on (an offload helper's): a reader
		 * and writer end releases it; the runtime closes what it opens.
		 */
		assert_true(nfifo_ends < (int)(sizeof(fifo_ends) / sizeof(fifo_ends[0])));
		fifo_ends[nfifo_ends] = open(e->fifo, O_RDWR | O_CLOEXEC);
		assert_true(fifo_ends[nfifo_ends++] >= 0);
		unlink(e->fifo);
		break;
	default:
		break;
	}
	/* Everything is free to destroy: nobody waits any more. */
	assert_int_equal(prt_mutex_destroy(&e->m), 0);
	assert_int_equal(prt_cond_destroy(&e->c), 0);
	assert_int_equal(prt_sem_destroy(&e->sem), 0);
	assert_int_equal(prt_waitgroup_destroy(&e->wg), 0);
	close(e->pipe[0]);
	close(e->pipe[1]);
	close(e->lfd);
}

static void *cancel_fn(void *arg)
{
	FIBER_CHECK(prt_cancel(*(prt_fiber_t *)arg) == 0);
	return NULL;
}

/* One call: cancelled while it waits (@before false) or before it. */
static void run_one(prt_runtime_t *rt, enum kind k, bool before, bool from_fiber)
{
	struct env e = { .kind = k, .before = before };
	prt_fiber_t f;
	void *res;

	env_setup(rt, &e);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, caller, &e);
	while (!atomic_load(&e.ready))
		pause_ms(1);
	if (!before) {
		pause_ms(5); /* likely asleep in the call by now (either way, ECANCELED) */
		/*
		 * Not for offload, whose state after differs (at entry @fn is
		 * never run, while waiting it runs to its end): cancel once it
		 * runs (a job still queued: test_offload_queued_cancelled).
		 */
		while (k == K_OFFLOAD && !atomic_load(&e.off_started))
			pause_ms(1);
		if (from_fiber)
			assert_null(test_run_in(rt, 20, cancel_fn, &f));
		else
			assert_int_equal(prt_cancel(f), 0);
	}
	assert_int_equal(prt_join(f, &res), 0);
	if (res)
		fail_msg("%s%s: fiber check failed at line %ld", kind_names[k],
			 before ? " (cancelled before)" : "", (long)(intptr_t)res);
	if (e.result != want_of(k))
		fail_msg("%s%s: returned %ld, not %ld", kind_names[k],
			 before ? " (cancelled before)" : "", e.result, want_of(k));
	env_check(&e);
}

static void run_kinds(int backend, bool from_fiber)
{
	int fds = count_fds();
	prt_runtime_t *rt = test_rt_with(2, 0, PRT_STACK_GUARD, backend);

	for (int k = 0; k < K_NKINDS; k++) {
		run_one(rt, (enum kind)k, false, from_fiber);
		run_one(rt, (enum kind)k, true, from_fiber);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
	while (nfifo_ends)
		close(fifo_ends[--nfifo_ends]);
	assert_int_equal(count_fds(), fds); /* nothing a cancelled call made is left */
}

/* Each call cancelled while it waits and before, by a plain thread; I/O on epoll. */
static void test_each_call_epoll(void **state)
{
	(void)state;
	run_kinds(PRT_IO_EPOLL, false);
}

/* The same on io_uring (IORING_OP_ASYNC_CANCEL), cancelled by a fiber. */
static void test_each_call_uring(void **state)
{
	(void)state;
	if (!uring)
		skip();
	run_kinds(PRT_IO_URING, true);
}

/* ---- cancel before any call: calls that need not wait still succeed ---------- */

static void *no_wait_fn(void *arg)
{
	prt_mutex_t m = PRT_MUTEX_INITIALIZER;
	prt_sem_t sem = PRT_SEM_INITIALIZER;
	prt_waitgroup_t wg = PRT_WAITGROUP_INITIALIZER;
	prt_fiber_t f = *(prt_fiber_t *)arg;
	void *res;

	FIBER_CHECK(prt_cancel(prt_self()) == 0);
	FIBER_CHECK(prt_cancel(prt_self()) == 0); /* twice: harmless */
	FIBER_CHECK(prt_mutex_lock(&m) == 0);     /* free: one CAS, no wait */
	FIBER_CHECK(prt_mutex_unlock(&m) == 0);
	FIBER_CHECK(prt_sem_post(&sem) == 0);
	FIBER_CHECK(prt_sem_wait(&sem) == 0);     /* a unit there */
	FIBER_CHECK(prt_waitgroup_wait(&wg) == 0); /* counter at 0 */
	FIBER_CHECK(prt_join(f, &res) == 0);      /* ended already */
	FIBER_CHECK(prt_yield() == 0);
	FIBER_CHECK(prt_sem_wait(&sem) == ECANCELED); /* would wait */
	FIBER_CHECK(prt_cancel_clear() == 1);
	FIBER_CHECK(prt_cancel_clear() == 0);
	FIBER_CHECK(prt_sleep_ns(1000) == 0);
	return NULL;
}

static void test_no_wait_no_cancel(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_fiber_t done = test_spawn(rt, PRT_PRIO_DEFAULT, -1, test_noop, NULL);

	(void)state;
	while (prt_cancel(done) != -ESRCH) /* ended: -ESRCH, still joinable */
		pause_ms(1);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, no_wait_fn, &done));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- bad input --------------------------------------------------------------- */

static void *thread_calls(void *arg)
{
	(void)arg;
	if (prt_cancelled() != -EPERM || prt_cancel_clear() != -EPERM)
		return (void *)1;
	return NULL;
}

static void test_bad_input(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_fiber_t none = { NULL, 0 }, f;
	prt_waitgroup_t wg;
	pthread_t t;
	void *res;

	(void)state;
	assert_int_equal(prt_cancel(none), -ESRCH);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, test_noop, NULL);
	assert_int_equal(prt_join(f, &res), 0);
	assert_int_equal(prt_cancel(f), -ESRCH); /* joined: stale, nothing touched */
	assert_int_equal(pthread_create(&t, NULL, thread_calls, NULL), 0);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_null(res);
	assert_int_equal(prt_cancelled(), -EPERM);
	assert_int_equal(prt_cancel_clear(), -EPERM);
	/* Wait groups. */
	assert_int_equal(prt_waitgroup_init(NULL), EINVAL);
	assert_int_equal(prt_waitgroup_add(NULL, 1), EINVAL);
	assert_int_equal(prt_waitgroup_wait(NULL), EINVAL);
	assert_int_equal(prt_waitgroup_destroy(NULL), EINVAL);
	assert_int_equal(prt_waitgroup_init(&wg), 0);
	assert_int_equal(prt_waitgroup_done(&wg), EINVAL); /* below 0: Go panics, we refuse */
	assert_int_equal(prt_waitgroup_add(&wg, 2), 0);
	assert_int_equal(prt_waitgroup_add(&wg, -3), EINVAL);
	assert_int_equal(prt_waitgroup_add(&wg, PRT_WAITGROUP_MAX), EOVERFLOW);
	assert_int_equal(prt_waitgroup_timedwait_ns(&wg, 0), ETIMEDOUT); /* unchanged: 2 */
	assert_int_equal(prt_waitgroup_add(&wg, -2), 0);
	assert_int_equal(prt_waitgroup_timedwait_ns(&wg, 0), 0);
	assert_int_equal(prt_waitgroup_spawn(NULL, rt, &f, NULL, test_noop, NULL), -EINVAL);
	assert_int_equal(prt_waitgroup_spawn(&wg, rt, &f, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(prt_waitgroup_timedwait_ns(&wg, 0), 0); /* the failed spawn took its count back */
	assert_int_equal(prt_waitgroup_destroy(&wg), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- proxy execution: the owner stops running for a cancelled donor ----------- */

struct eff {
	prt_mutex_t m;
	int fd[2];              /* memfds: the owner's dump while it proxies, and after */
	prt_fiber_t waiter;
	atomic_int locking;
	int wres;
};

static void *eff_waiter(void *arg)
{
	struct eff *x = arg;

	atomic_store(&x->locking, 1);
	x->wres = prt_mutex_lock(&x->m);
	return NULL;
}

/*
 * One worker. The owner (1) holds the mutex and spawns the waiter (28),
 * which queues as a donor: the owner then runs in its place (eff_prio
 * 28, dump 0). It cancels the waiter and yields: the waiter, no longer
 * blocked on the mutex, runs and returns ECANCELED; the owner runs
 * again at its own priority (dump 1), still owning the mutex.
 */
static void *eff_owner(void *arg)
{
	struct eff *x = arg;
	prt_fiber_attr_t a = test_attr(28, -1);

	FIBER_CHECK(prt_mutex_lock(&x->m) == 0);
	a.name = "waiter";
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &x->waiter, &a, eff_waiter, x) == 0);
	while (!atomic_load(&x->locking))
		FIBER_CHECK(prt_yield() == 0);
	FIBER_CHECK(prt_runtime_dump(prt_runtime_self(), x->fd[0]) == 0);
	FIBER_CHECK(prt_cancel(x->waiter) == 0);
	FIBER_CHECK(prt_yield() == 0);
	while (x->wres == -1)
		FIBER_CHECK(prt_yield() == 0);
	FIBER_CHECK(prt_runtime_dump(prt_runtime_self(), x->fd[1]) == 0);
	FIBER_CHECK(prt_mutex_unlock(&x->m) == 0); /* still ours */
	return NULL;
}

static char *read_all_fd(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	char *t = calloc(1, (size_t)len + 1);

	assert_non_null(t);
	assert_int_equal(pread(fd, t, (size_t)len, 0), len);
	return t;
}

static void test_proxy_donor_cancelled(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	struct eff x = { .m = PRT_MUTEX_INITIALIZER, .wres = -1 };
	prt_fiber_attr_t a = test_attr(1, -1);
	char want[256], *t0, *t1;
	unsigned long long oid, wid;
	prt_fiber_t owner;
	void *res;

	(void)state;
	for (int i = 0; i < 2; i++) {
		x.fd[i] = memfd_create("dump", MFD_CLOEXEC);
		assert_true(x.fd[i] >= 0);
	}
	a.name = "owner";
	assert_int_equal(prt_spawn(rt, &owner, &a, eff_owner, &x), 0);
	assert_int_equal(prt_join(owner, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(x.waiter, &res), 0);
	assert_int_equal(x.wres, ECANCELED);
	oid = (unsigned long long)prt_fiber_id(owner);
	wid = (unsigned long long)prt_fiber_id(x.waiter);
	t0 = read_all_fd(x.fd[0]);
	t1 = read_all_fd(x.fd[1]);
	/* While the waiter waited: the owner ran at its priority, for it. */
	snprintf(want, sizeof(want), "fiber %llu \"owner\" state=running worker=0 prio=1 eff_prio=28 for=%llu\n",
		 oid, wid);
	if (!strstr(t0, want))
		fail_msg("no \"%s\" in:\n%s", want, t0);
	/* After the cancel: at its own priority, for nobody. */
	snprintf(want, sizeof(want), "fiber %llu \"owner\" state=running worker=0 prio=1\n", oid);
	if (!strstr(t1, want))
		fail_msg("no \"%s\" in:\n%s", want, t1);
	snprintf(want, sizeof(want), "worker 0: running=%llu donor=0 ", oid);
	if (!strstr(t1, want))
		fail_msg("no \"%s\" in:\n%s", want, t1);
	free(t0);
	free(t1);
	close(x.fd[0]);
	close(x.fd[1]);
	assert_int_equal(prt_mutex_destroy(&x.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- rwlock waits: cancelled through the rwlock's own timeout path ------------------ */

struct rwc {
	prt_rwlock_t rw;
	int reader;              /* the victim asks for a read lock (else a write lock) */
	atomic_int calling, returned;
	int lock_res, again_res;
};

static void *rwc_victim(void *arg)
{
	struct rwc *x = arg;

	atomic_store(&x->calling, 1);
	x->lock_res = x->reader ? prt_rwlock_rdlock(&x->rw) : prt_rwlock_wrlock(&x->rw);
	if (!x->lock_res)
		prt_rwlock_unlock(&x->rw);
	atomic_store(&x->returned, 1);
	/* Sticky: the next contended lock is refused at once, a free one is taken. */
	x->again_res = prt_rwlock_wrlock(&x->rw);
	return NULL;
}

/*
 * A fiber waiting for an rwlock behind a plain thread's write lock is
 * cancelled: ECANCELED, without the lock, and the lock stays whole (the
 * thread's unlock, a new writer, destroy). Readers and writers. Before,
 * the mutex's timeout path ran on the rwlock waiter and broke the
 * lock's reader/writer counts.
 */
static void rwlock_cancel_one(int reader)
{
	prt_runtime_t *rt = test_rt(1);
	struct rwc x = { .rw = PRT_RWLOCK_INITIALIZER, .reader = reader };
	prt_fiber_t v;

	assert_int_equal(prt_rwlock_wrlock(&x.rw), 0);
	assert_int_equal(prt_spawn(rt, &v, NULL, rwc_victim, &x), 0);
	while (!atomic_load(&x.calling))
		pause_ms(1);
	pause_ms(20); /* most likely asleep in the wait by now; before it, the same must hold */
	assert_int_equal(prt_cancel(v), 0);
	while (!atomic_load(&x.returned))
		pause_ms(1);
	assert_int_equal(x.lock_res, ECANCELED);
	/* Still held for writing by this thread: its next contended lock is refused too. */
	pause_ms(20);
	assert_int_equal(prt_rwlock_unlock(&x.rw), 0);
	assert_int_equal(prt_join(v, NULL), 0);
	/* Either refused while the thread held it, or taken once it was free. */
	assert_true(x.again_res == ECANCELED || x.again_res == 0);
	if (x.again_res == 0) {
		/* taken by the fiber, which ended holding it: a writer that ended can't unlock */
		assert_int_equal(prt_rwlock_trywrlock(&x.rw), EBUSY);
	} else {
		assert_int_equal(prt_rwlock_trywrlock(&x.rw), 0);
		assert_int_equal(prt_rwlock_unlock(&x.rw), 0);
		assert_int_equal(prt_rwlock_tryrdlock(&x.rw), 0);
		assert_int_equal(prt_rwlock_unlock(&x.rw), 0);
		assert_int_equal(prt_rwlock_destroy(&x.rw), 0);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_rwlock_wait_cancelled(void **state)
{
	(void)state;
	rwlock_cancel_one(0);
	rwlock_cancel_one(1);
}

/*
 * A cancel pending, rwlock calls that need not wait: a reader that reads
 * the lock already, or that outranks every waiter, takes it at once even
 * while a writer waits (proxyrt/rwlock.h: "a lock they can take at once
 * is taken"), by each lock call; one that would wait gets ECANCELED.
 */
struct rwnw {
	prt_rwlock_t rw;
	atomic_int writer_calling, hold, release;
	int writer_res;
};

static void *rwnw_writer(void *arg)
{
	struct rwnw *x = arg;

	atomic_store(&x->writer_calling, 1);
	x->writer_res = prt_rwlock_wrlock(&x->rw);
	if (!x->writer_res)
		FIBER_CHECK(prt_rwlock_unlock(&x->rw) == 0);
	return NULL;
}

/* Each lock call of a reader with a cancel pending: taken (0), then released. */
static void *rwnw_read_each(struct rwnw *x)
{
	struct timespec far = test_realtime_in(60L * 1000000000L);

	FIBER_CHECK(prt_cancel(prt_self()) == 0);
	FIBER_CHECK(prt_rwlock_rdlock(&x->rw) == 0);
	FIBER_CHECK(prt_rwlock_timedrdlock(&x->rw, &far) == 0);
	FIBER_CHECK(prt_rwlock_timedrdlock_ns(&x->rw, 60ull * 1000000000u) == 0);
	FIBER_CHECK(prt_rwlock_tryrdlock(&x->rw) == 0);
	for (int i = 0; i < 4; i++)
		FIBER_CHECK(prt_rwlock_unlock(&x->rw) == 0);
	/* The writer waits still: a write lock would wait, and is refused. */
	FIBER_CHECK(prt_cancelled() == 1);
	return NULL;
}

/* Reads the lock, then, with the writer queued behind it, reads it again, cancelled. */
static void *rwnw_recursive(void *arg)
{
	struct rwnw *x = arg;
	void *res;

	FIBER_CHECK(prt_rwlock_rdlock(&x->rw) == 0);
	atomic_store(&x->hold, 1);
	while (!atomic_load(&x->release))
		FIBER_CHECK(prt_sleep_ns(1000000) == 0);
	res = rwnw_read_each(x);
	FIBER_CHECK(prt_cancel_clear() == 1);
	FIBER_CHECK(prt_rwlock_unlock(&x->rw) == 0);
	return res;
}

/* Priority above the queued writer's, the lock held for reading by a thread. */
static void *rwnw_outranking(void *arg)
{
	struct rwnw *x = arg;
	void *res = rwnw_read_each(x);

	if (!res)
		FIBER_CHECK(prt_rwlock_wrlock(&x->rw) == ECANCELED); /* would wait */
	FIBER_CHECK(prt_cancel_clear() == 1);
	return res;
}

static void rwlock_no_wait_one(bool recursive)
{
	prt_runtime_t *rt = test_rt(2);
	struct rwnw x = { .rw = PRT_RWLOCK_INITIALIZER, .writer_res = -1 };
	prt_fiber_t r = { 0 }, wr;
	void *res;

	if (recursive) {
		r = test_spawn(rt, PRT_PRIO_DEFAULT, -1, rwnw_recursive, &x);
		while (!atomic_load(&x.hold))
			pause_ms(1);
	} else {
		assert_int_equal(prt_rwlock_rdlock(&x.rw), 0); /* this thread reads it */
	}
	wr = test_spawn(rt, PRT_PRIO_DEFAULT, -1, rwnw_writer, &x);
	while (!atomic_load(&x.writer_calling))
		pause_ms(1);
	pause_ms(20); /* queued by now (if not, the reads below take a lock nobody waits for) */
	if (recursive) {
		atomic_store(&x.release, 1);
		assert_int_equal(prt_join(r, &res), 0);
	} else {
		res = test_run_in(rt, PRT_PRIO_DEFAULT + 4, rwnw_outranking, &x);
	}
	if (res)
		fail_msg("%s reader: fiber check failed at line %ld", recursive ? "recursive" : "outranking",
			 (long)(intptr_t)res);
	if (!recursive)
		assert_int_equal(prt_rwlock_unlock(&x.rw), 0);
	/* Whole: the writer gets it once the readers left. */
	assert_int_equal(prt_join(wr, &res), 0);
	assert_null(res);
	assert_int_equal(x.writer_res, 0);
	assert_int_equal(prt_rwlock_destroy(&x.rw), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_rwlock_cancelled_no_wait(void **state)
{
	(void)state;
	rwlock_no_wait_one(true);
	rwlock_no_wait_one(false);
}

/*
 * prt_offload cancelled while its call waits in the pool's queue (the
 * one helper is busy): "only the wait ends: @fn runs to its end on its
 * helper" (proxyrt/fiber.h), so a caller can tell when @arg may go. The
 * runtime's destroy drains the queue (its helper ends after the jobs
 * queued): @fn has run by then.
 */
struct offq {
	atomic_int busy, release, ran, calling;
	long res;
};

static void *offq_block(void *arg)
{
	struct offq *q = arg;

	atomic_store(&q->busy, 1);
	while (!atomic_load(&q->release))
		pause_ms(1);
	return NULL;
}

static void *offq_fn(void *arg)
{
	atomic_store(&((struct offq *)arg)->ran, 1);
	return NULL;
}

static void *offq_blocker(void *arg)
{
	FIBER_CHECK(prt_offload(offq_block, arg, NULL) == 0);
	return NULL;
}

static void *offq_caller(void *arg)
{
	struct offq *q = arg;

	atomic_store(&q->calling, 1);
	q->res = prt_offload(offq_fn, q, NULL);
	FIBER_CHECK(prt_cancel_clear() == 1);
	return NULL;
}

static void test_offload_queued_cancelled(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	struct offq q = { .res = 1 };
	prt_fiber_t b, c;
	void *res;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.offload_threads = 1;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	b = test_spawn(rt, PRT_PRIO_DEFAULT, -1, offq_blocker, &q);
	while (!atomic_load(&q.busy))
		pause_ms(1);
	c = test_spawn(rt, PRT_PRIO_DEFAULT, -1, offq_caller, &q);
	while (!atomic_load(&q.calling))
		pause_ms(1);
	pause_ms(5); /* queued behind the busy helper by now (if not, cancelled at entry: fails below) */
	assert_int_equal(prt_cancel(c), 0);
	assert_int_equal(prt_join(c, &res), 0);
	assert_null(res);
	assert_int_equal(q.res, -ECANCELED);
	atomic_store(&q.release, 1);
	assert_int_equal(prt_join(b, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(atomic_load(&q.ran), 1);
}

/* ---- cancel against handoff, thousands of times, two workers ------------------- */

struct race {
	prt_mutex_t m;
	atomic_int holder;      /* 0, or 1/2: who is inside */
	atomic_int stop, started;
	prt_fiber_t victim;
	long got, cancelled;
};

/* Hold the mutex, briefly, many times: each unlock hands it to the waiting victim. */
static void *race_owner(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->started))
		FIBER_CHECK(prt_yield() == 0);
	for (int i = 0; i < 20000; i++) {
		FIBER_CHECK(prt_mutex_lock(&r->m) == 0);
		FIBER_CHECK(atomic_exchange(&r->holder, 1) == 0);
		/* Held across a scheduling point: the victim queues and waits. */
		if (i % 2)
			FIBER_CHECK(prt_yield() == 0);
		FIBER_CHECK(atomic_exchange(&r->holder, 0) == 1);
		FIBER_CHECK(prt_mutex_unlock(&r->m) == 0);
		if (i % 16 == 0)
			FIBER_CHECK(prt_yield() == 0);
	}
	atomic_store(&r->stop, 1);
	return NULL;
}

/* Lock until told to stop: each lock returns 0 owning the mutex, or ECANCELED not owning it. */
static void *race_victim(void *arg)
{
	struct race *r = arg;

	atomic_store(&r->started, 1);
	while (!atomic_load(&r->stop)) {
		int e = prt_mutex_lock(&r->m);

		if (e == 0) {
			FIBER_CHECK(atomic_exchange(&r->holder, 2) == 0);
			FIBER_CHECK(atomic_exchange(&r->holder, 0) == 2);
			FIBER_CHECK(prt_mutex_unlock(&r->m) == 0);
			r->got++;
		} else {
			FIBER_CHECK(e == ECANCELED);
			FIBER_CHECK(prt_mutex_unlock(&r->m) == EPERM); /* not ours */
			r->cancelled++;
		}
		prt_cancel_clear();
	}
	return NULL;
}

static void *race_canceller(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		int e = prt_cancel(r->victim);

		FIBER_CHECK(e == 0 || (e == -ESRCH && atomic_load(&r->stop)));
		FIBER_CHECK(prt_yield() == 0);
	}
	return NULL;
}

static void race_run(unsigned rt_flags)
{
	prt_runtime_t *rt = test_rt_flags(2, rt_flags);
	struct race r = { .m = PRT_MUTEX_INITIALIZER };
	prt_fiber_t o, c;
	void *res;

	/* Owner and victim on different workers; a canceller fiber and this thread too. */
	o = test_spawn(rt, PRT_PRIO_DEFAULT, 0, race_owner, &r);
	r.victim = test_spawn(rt, PRT_PRIO_DEFAULT, 1, race_victim, &r);
	c = test_spawn(rt, PRT_PRIO_DEFAULT, 0, race_canceller, &r);
	while (!atomic_load(&r.stop)) {
		int e = prt_cancel(r.victim);

		/* -ESRCH only once the victim saw the stop and ended. */
		assert_true(e == 0 || (e == -ESRCH && atomic_load(&r.stop)));
	}
	assert_int_equal(prt_join(o, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(r.victim, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(c, &res), 0);
	assert_null(res);
	fprintf(stderr, "  cancel vs handoff: %ld locked, %ld cancelled\n", r.got, r.cancelled);
	assert_true(r.got + r.cancelled > 0);
	/* Consistent: free, nobody waiting, no owner left behind. */
	assert_int_equal(prt_mutex_trylock(&r.m), 0);
	assert_int_equal(prt_mutex_unlock(&r.m), 0);
	assert_int_equal(prt_mutex_destroy(&r.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_cancel_vs_handoff(void **state)
{
	(void)state;
	race_run(0);
}

static void test_cancel_vs_handoff_no_proxy(void **state)
{
	(void)state;
	race_run(PRT_RT_NO_PROXY);
}

/* ---- wait groups from fibers and plain threads ----------------------------------- */

struct wgt {
	prt_waitgroup_t wg;
	atomic_int ended;
	int fiber_wait;
};

static void *wg_worker(void *arg)
{
	struct wgt *g = arg;

	prt_sleep_ns(1000000);
	atomic_fetch_add(&g->ended, 1);
	return NULL;
}

static void *wg_exit(void *arg)
{
	struct wgt *g = arg;

	atomic_fetch_add(&g->ended, 1);
	prt_exit(NULL); /* counts too */
	return NULL;
}

static void *wg_thread(void *arg)
{
	struct wgt *g = arg;

	pause_ms(2);
	atomic_fetch_add(&g->ended, 1);
	return (void *)(intptr_t)prt_waitgroup_done(&g->wg);
}

static void *wg_fiber_waiter(void *arg)
{
	struct wgt *g = arg;

	g->fiber_wait = prt_waitgroup_wait(&g->wg);
	FIBER_CHECK(atomic_load(&g->ended) == 44);
	return NULL;
}

static void test_waitgroup(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	struct wgt g = { .wg = PRT_WAITGROUP_INITIALIZER, .fiber_wait = -1 };
	pthread_t t[4];
	prt_fiber_t w;
	void *res;

	(void)state;
	assert_int_equal(prt_waitgroup_add(&g.wg, 4), 0);
	{
	prt_fiber_attr_t da = test_attr(PRT_PRIO_DEFAULT, -1);

	da.flags = PRT_FIBER_DETACHED;
	for (int i = 0; i < 40; i++)
		assert_int_equal(prt_waitgroup_spawn(&g.wg, rt, NULL, &da, i % 2 ? wg_worker : wg_exit, &g),
				 0);
	}
	w = test_spawn(rt, PRT_PRIO_DEFAULT, -1, wg_fiber_waiter, &g);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, wg_thread, &g), 0);
	/* A plain thread waits too. */
	assert_int_equal(prt_waitgroup_wait(&g.wg), 0);
	assert_int_equal(atomic_load(&g.ended), 44);
	assert_int_equal(prt_join(w, &res), 0);
	assert_null(res);
	assert_int_equal(g.fiber_wait, 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &res), 0);
		assert_null(res);
	}
	/* Reusable once its waiters are back. */
	assert_int_equal(prt_waitgroup_add(&g.wg, 1), 0);
	assert_int_equal(prt_waitgroup_timedwait_ns(&g.wg, 1000000), ETIMEDOUT);
	assert_int_equal(prt_waitgroup_done(&g.wg), 0);
	assert_int_equal(prt_waitgroup_wait(&g.wg), 0);
	assert_int_equal(prt_waitgroup_destroy(&g.wg), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a server's shutdown: cancel every connection fiber, wait for the group --------- */

struct conn_env {
	prt_waitgroup_t wg;
	int fds[16][2];
	prt_fiber_t f[16];
	atomic_int closed;
};

struct conn_arg {
	struct conn_env *e;
	int i;
};

static void *conn_fn(void *arg)
{
	struct conn_arg *a = arg;
	char buf[8];
	ssize_t n;

	while ((n = prt_read(a->e->fds[a->i][0], buf, sizeof(buf))) > 0)
		;
	FIBER_CHECK(n == -ECANCELED);
	FIBER_CHECK(prt_close(a->e->fds[a->i][0]) == 0); /* cleanup is not cancelled */
	atomic_fetch_add(&a->e->closed, 1);
	return NULL;
}

static void shutdown_run(int backend)
{
	prt_runtime_t *rt = test_rt_with(2, 0, PRT_STACK_GUARD, backend);
	struct conn_env e = { .wg = PRT_WAITGROUP_INITIALIZER };
	struct conn_arg a[16];

	for (int i = 0; i < 16; i++) {
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, e.fds[i]), 0);
		a[i] = (struct conn_arg){ &e, i };
		assert_int_equal(prt_waitgroup_spawn(&e.wg, rt, &e.f[i], NULL, conn_fn, &a[i]), 0);
	}
	pause_ms(5);
	for (int i = 0; i < 16; i++)
		assert_int_equal(prt_cancel(e.f[i]), 0);
	assert_int_equal(prt_waitgroup_wait(&e.wg), 0);
	assert_int_equal(atomic_load(&e.closed), 16);
	for (int i = 0; i < 16; i++) {
		void *res;

		assert_int_equal(prt_join(e.f[i], &res), 0);
		assert_null(res);
		close(e.fds[i][1]);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_shutdown_epoll(void **state)
{
	(void)state;
	shutdown_run(PRT_IO_EPOLL);
}

static void test_shutdown_uring(void **state)
{
	(void)state;
	if (!uring)
		skip();
	shutdown_run(PRT_IO_URING);
}

/*
 * A condvar wait that a cancel ends returns holding the mutex, as after
 * a timeout (mutex.h). It takes the mutex back as a non-cancellable
 * wait (prt__mutex_lock_nocancel); a cancel that came while that retake
 * was queued used to end it too (prt__mutex_cancel_locked spared only
 * records moved by a signal), and prt_cond_wait returned ETIMEDOUT
 * without the mutex (a review's reproducer: every run, 2 workers, with
 * proxy execution on and off). Three consumers wait (timed or not) with
 * a signaller and a canceller fiber racing them; after every return
 * the consumer must hold the mutex (a try of it says EDEADLK), and an
 * untimed wait never says ETIMEDOUT.
 */
#define CC_CONS 3
static struct {
	prt_mutex_t m;
	prt_cond_t c;
	prt_fiber_t cons[CC_CONS];
	atomic_int stop, bugs;
	int iters;
} cc;

static void *cc_consumer(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	for (int i = 0; i < cc.iters && !atomic_load(&cc.bugs); i++) {
		int r, v, timed;

		seed = seed * 1103515245u + 12345u;
		timed = (seed >> 20) & 1;
		while ((r = prt_mutex_lock(&cc.m)) == ECANCELED)
			prt_cancel_clear();
		FIBER_CHECK(r == 0);
		if (timed) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 1000 + (long)((seed >> 8) % 20000);
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			r = prt_cond_timedwait(&cc.c, &cc.m, &ts);
		} else {
			r = prt_cond_wait(&cc.c, &cc.m);
		}
		prt_cancel_clear();
		v = prt_mutex_timedlock_ns(&cc.m, 0);
		if (v != EDEADLK || (!timed && r == ETIMEDOUT) ||
		    (r && r != ETIMEDOUT && r != ECANCELED)) {
			fprintf(stderr, "cond wait (timed %d) returned %d, then a try of the mutex %d\n",
				timed, r, v);
			atomic_fetch_add(&cc.bugs, 1);
			if (v == 0)
				prt_mutex_unlock(&cc.m);
			break;
		}
		FIBER_CHECK(prt_mutex_unlock(&cc.m) == 0);
	}
	return NULL;
}

static void *cc_signaller(void *arg)
{
	(void)arg;
	while (!atomic_load(&cc.stop)) {
		FIBER_CHECK(prt_mutex_lock(&cc.m) == 0);
		FIBER_CHECK(prt_cond_signal(&cc.c) == 0);
		FIBER_CHECK(prt_mutex_unlock(&cc.m) == 0);
		FIBER_CHECK(prt_yield() == 0);
	}
	return NULL;
}

static void *cc_canceller(void *arg)
{
	unsigned seed = 42;

	(void)arg;
	while (!atomic_load(&cc.stop)) {
		seed = seed * 1103515245u + 12345u;
		prt_cancel(cc.cons[(seed >> 16) % CC_CONS]);
		if (seed & 0x100)
			prt_yield();
		else
			prt_sleep_ns((seed >> 4) % 5000);
	}
	return NULL;
}

static void cond_cancel_run(unsigned rt_flags)
{
	prt_runtime_t *rt = test_rt_flags(2, rt_flags);
	prt_fiber_t s, k;
	void *res;

	memset(&cc, 0, sizeof(cc));
	cc.iters = PRT_TEST_TSAN ? 300 : test_under_valgrind() ? 200 : 2000;
	assert_int_equal(prt_mutex_init(&cc.m, NULL), 0);
	assert_int_equal(prt_cond_init(&cc.c), 0);
	for (int i = 0; i < CC_CONS; i++)
		cc.cons[i] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, cc_consumer,
					(void *)(uintptr_t)(i * 7919 + 1));
	s = test_spawn(rt, PRT_PRIO_DEFAULT, -1, cc_signaller, NULL);
	k = test_spawn(rt, PRT_PRIO_DEFAULT, -1, cc_canceller, NULL);
	for (int i = 0; i < CC_CONS; i++) {
		assert_int_equal(prt_join(cc.cons[i], &res), 0);
		assert_null(res);
	}
	atomic_store(&cc.stop, 1);
	assert_int_equal(prt_join(s, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(k, &res), 0);
	assert_null(res);
	assert_int_equal(atomic_load(&cc.bugs), 0);
	assert_int_equal(prt_cond_destroy(&cc.c), 0);
	assert_int_equal(prt_mutex_destroy(&cc.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_cond_cancel_keeps_mutex(void **state)
{
	(void)state;
	cond_cancel_run(0);
	cond_cancel_run(PRT_RT_NO_PROXY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_each_call_epoll),
		cmocka_unit_test(test_each_call_uring),
		cmocka_unit_test(test_no_wait_no_cancel),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_proxy_donor_cancelled),
		cmocka_unit_test(test_rwlock_wait_cancelled),
		cmocka_unit_test(test_rwlock_cancelled_no_wait),
		cmocka_unit_test(test_offload_queued_cancelled),
		cmocka_unit_test(test_cancel_vs_handoff),
		cmocka_unit_test(test_cancel_vs_handoff_no_proxy),
		cmocka_unit_test(test_cond_cancel_keeps_mutex),
		cmocka_unit_test(test_waitgroup),
		cmocka_unit_test(test_shutdown_epoll),
		cmocka_unit_test(test_shutdown_uring),
	};

	uring = test_uring_usable("test_cancel");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
