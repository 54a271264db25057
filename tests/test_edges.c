/* SPDX-License-Identifier: MIT */
/*
 * Arithmetic at the edges of time and size: every deadline computed
 * from a relative timeout or an absolute timespec saturates at "never"
 * instead of wrapping into the past, a deadline already past times out
 * (EINVAL only for a tv_nsec outside [0, 1e9), as pthreads), and a
 * length too big for an SQE's 32-bit field is clamped, never wrapped.
 * Sizes (stack sizes) that cannot be mapped fail with an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

#define TIME_T_MAX ((time_t)INT64_MAX)

/* Timeouts that would wrap now + timeout: the largest, and just past the wrap point. */
static const uint64_t huge_tmo[] = { UINT64_MAX, UINT64_MAX - 1000, UINT64_MAX / 2 + 1 };
#define NHUGE (sizeof(huge_tmo) / sizeof(huge_tmo[0]))

static int g_backends[2];
static int g_nbackends;

/* ---- sleeps: they never come back, so they run in a child ---- */

struct sleeper {
	int kind; /* 0 prt_sleep_ns, 1 prt_sleep_until */
	uint64_t v;
	int report; /* write end of the report pipe */
};

static void *sleeper(void *arg)
{
	struct sleeper *s = arg;
	char c = 'R';

	if (s->kind == 0)
		prt_sleep_ns(s->v);
	else
		prt_sleep_until(s->v);
	/* Never reached if the sleep saturated at "never". */
	if (write(s->report, &c, 1) < 0)
		_exit(3);
	return NULL;
}

static void test_sleep_saturates(void **state)
{
	static struct sleeper s[2 * NHUGE];
	int pfd[2];
	pid_t pid;
	struct pollfd p;
	int st, n;

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prt_runtime_t *rt;
		prt_runtime_config_t cfg;

		close(pfd[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
		prt_runtime_config_init(&cfg);
		cfg.nworkers = 2;
		if (prt_runtime_create(&rt, &cfg))
			_exit(2);
		for (size_t i = 0; i < 2 * NHUGE; i++) {
			prt_fiber_t f;

			s[i].kind = (int)(i % 2);
			s[i].v = huge_tmo[i / 2];
			s[i].report = pfd[1];
			if (prt_spawn(rt, &f, NULL, sleeper, &s[i]) || prt_detach(f))
				_exit(2);
		}
		pause(); /* the parent kills us */
		_exit(0);
	}
	close(pfd[1]);
	/*
	 * Wrapped deadlines lie in the past: those sleeps ended at once.
	 * Saturated ones never end, so nothing comes within this window.
	 */
	p.fd = pfd[0];
	p.events = POLLIN;
	n = poll(&p, 1, 300);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	close(pfd[0]);
	assert_int_equal(n, 0);
}

/* ---- I/O timeouts: a huge one waits for the data, fibers and threads ---- */

struct late_writer {
	int fd;
	unsigned delay_ms;
};

static void *late_write_thread(void *arg)
{
	struct late_writer *lw = arg;
	char msg[5] = "late";

	usleep(lw->delay_ms * 1000u);
	if (write(lw->fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		abort();
	return NULL;
}

enum io_call { C_READ, C_RECV, C_POLL, C_READ_ALL, C_STREAM, C_NCALLS };

struct io_case {
	enum io_call call;
	uint64_t tmo;
	int fd;
};

/* One call with a huge timeout on @fd, which gets 5 bytes a little later. */
static ssize_t do_io_call(const struct io_case *c)
{
	char buf[16];

	switch (c->call) {
	case C_READ:
		return prt_read_timeout(c->fd, buf, sizeof(buf), c->tmo);
	case C_RECV:
		return prt_recv_timeout(c->fd, buf, sizeof(buf), 0, c->tmo);
	case C_POLL:
		return prt_poll_timeout(c->fd, POLLIN, c->tmo) & POLLIN ? 5 : -1;
	case C_READ_ALL:
		return prt_read_all(c->fd, buf, 5, c->tmo);
	case C_STREAM: {
		prt_stream_t *s;
		ssize_t n;

		if (prt_stream_open(&s, c->fd))
			return -1000;
		n = prt_stream_recv(s, buf, sizeof(buf), c->tmo);
		prt_stream_close(s);
		return n;
	}
	default:
		return -1000;
	}
}

static void *io_fiber(void *arg)
{
	return (void *)(intptr_t)do_io_call(arg);
}

static void run_io_case(prt_runtime_t *rt, enum io_call call, uint64_t tmo)
{
	struct io_case c = { .call = call, .tmo = tmo };
	struct late_writer lw = { .delay_ms = 30 };
	int sv[2];
	pthread_t t;
	void *res;
	ssize_t n;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	c.fd = sv[0];
	lw.fd = sv[1];
	assert_int_equal(pthread_create(&t, NULL, late_write_thread, &lw), 0);
	if (rt) {
		prt_fiber_t f;

		assert_int_equal(prt_spawn(rt, &f, NULL, io_fiber, &c), 0);
		assert_int_equal(prt_join(f, &res), 0);
		n = (ssize_t)(intptr_t)res;
	} else {
		n = call == C_STREAM ? 5 : do_io_call(&c); /* streams are fibers' only */
	}
	pthread_join(t, NULL);
	if (n != 5)
		fprintf(stderr, "call %d tmo %llu on %s: %zd\n", (int)call,
			(unsigned long long)tmo, rt ? "fiber" : "thread", n);
	assert_int_equal(n, 5);
	close(sv[0]);
	close(sv[1]);
}

static void test_io_timeout_saturates(void **state)
{
	(void)state;
	for (int b = 0; b < g_nbackends; b++) {
		prt_runtime_t *rt = test_rt_with(2, 0, PRT_STACK_GUARD, g_backends[b]);

		for (int call = 0; call < C_NCALLS; call++)
			for (size_t i = 0; i < NHUGE; i++)
				run_io_case(rt, (enum io_call)call, huge_tmo[i]);
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
	for (int call = 0; call < C_NCALLS; call++)
		for (size_t i = 0; i < NHUGE; i++)
			run_io_case(NULL, (enum io_call)call, huge_tmo[i]);
}

/* ---- timed mutex and condvar waits ---- */

static const struct timespec far_abs[] = {
	{ TIME_T_MAX, 999999999L },
	{ TIME_T_MAX / 2, 0 },
	{ INT32_MAX + (time_t)20000000000, 0 }, /* past the uint64 ns horizon */
};
#define NFAR (sizeof(far_abs) / sizeof(far_abs[0]))

static prt_mutex_t e_m = PRT_MUTEX_INITIALIZER;
static prt_cond_t e_c = PRT_COND_INITIALIZER;
static atomic_int e_flag;

struct timed_case {
	struct timespec abs;
	bool cond;
	atomic_int started;
};

static int timed_call(struct timed_case *tc)
{
	int r;

	if (!tc->cond) {
		atomic_store(&tc->started, 1);
		r = prt_mutex_timedlock(&e_m, &tc->abs);
		if (r == 0)
			prt_mutex_unlock(&e_m);
		return r;
	}
	prt_mutex_lock(&e_m);
	atomic_store(&tc->started, 1);
	r = 0;
	while (!atomic_load(&e_flag) && r == 0)
		r = prt_cond_timedwait(&e_c, &e_m, &tc->abs);
	prt_mutex_unlock(&e_m);
	return r;
}

static void *timed_fiber(void *arg)
{
	return (void *)(intptr_t)timed_call(arg);
}

static void *timed_thread(void *arg)
{
	return (void *)(intptr_t)timed_call(arg);
}

/* The waiter (fiber or thread) must get the lock or the signal, never ETIMEDOUT. */
static void run_timed_case(prt_runtime_t *rt, const struct timespec *abs, bool cond)
{
	struct timed_case tc = { .abs = *abs, .cond = cond };
	prt_fiber_t f;
	pthread_t t;
	void *res;

	atomic_store(&e_flag, 0);
	if (!cond)
		assert_int_equal(prt_mutex_lock(&e_m), 0);
	if (rt)
		assert_int_equal(prt_spawn(rt, &f, NULL, timed_fiber, &tc), 0);
	else
		assert_int_equal(pthread_create(&t, NULL, timed_thread, &tc), 0);
	while (!atomic_load(&tc.started))
		usleep(1000);
	usleep(30000); /* into its wait (a wrapped deadline would have ended it by now) */
	if (cond) {
		assert_int_equal(prt_mutex_lock(&e_m), 0);
		atomic_store(&e_flag, 1);
		assert_int_equal(prt_cond_broadcast(&e_c), 0);
	}
	assert_int_equal(prt_mutex_unlock(&e_m), 0);
	if (rt)
		assert_int_equal(prt_join(f, &res), 0);
	else
		assert_int_equal(pthread_join(t, &res), 0);
	assert_int_equal((int)(intptr_t)res, 0);
}

static void test_timed_far_future(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	for (size_t i = 0; i < NFAR; i++) {
		for (int cond = 0; cond < 2; cond++) {
			run_timed_case(rt, &far_abs[i], cond);
			run_timed_case(NULL, &far_abs[i], cond);
		}
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

struct past_case {
	struct timespec abs;
	int want;
};

static const struct past_case past[] = {
	{ { -1, 0 }, ETIMEDOUT },
	{ { -TIME_T_MAX, 999999999L }, ETIMEDOUT },
	{ { 0, 0 }, ETIMEDOUT },
	{ { 1, 500 }, ETIMEDOUT },
	{ { 0, -1 }, EINVAL },
	{ { 0, 1000000000L }, EINVAL },
	{ { TIME_T_MAX, 1000000000L }, EINVAL },
};
#define NPAST (sizeof(past) / sizeof(past[0]))

static int past_checks(void)
{
	for (size_t i = 0; i < NPAST; i++) {
		int r;

		/* Held by someone else: the deadline decides. */
		if (prt_mutex_trylock(&e_m) != EBUSY)
			return -1;
		r = prt_mutex_timedlock(&e_m, &past[i].abs);
		if (r != past[i].want) {
			fprintf(stderr, "timedlock {%lld, %ld}: %d, want %d\n",
				(long long)past[i].abs.tv_sec, past[i].abs.tv_nsec, r, past[i].want);
			return -1;
		}
	}
	return 0;
}

static void *past_fiber(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)past_checks();
}

static int cond_past_checks(void)
{
	prt_mutex_t m = PRT_MUTEX_INITIALIZER;
	prt_cond_t c = PRT_COND_INITIALIZER;

	for (size_t i = 0; i < NPAST; i++) {
		int r;

		prt_mutex_lock(&m);
		r = prt_cond_timedwait(&c, &m, &past[i].abs);
		/* Either way the caller holds the mutex again. */
		if (prt_mutex_trylock(&m) != EBUSY || r != past[i].want) {
			fprintf(stderr, "timedwait {%lld, %ld}: %d, want %d\n",
				(long long)past[i].abs.tv_sec, past[i].abs.tv_nsec, r, past[i].want);
			return -1;
		}
		prt_mutex_unlock(&m);
	}
	return 0;
}

static void *cond_past_fiber(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)cond_past_checks();
}

static void *hold_e_m(void *arg)
{
	atomic_int *phase = arg;

	prt_mutex_lock(&e_m);
	atomic_store(phase, 1);
	while (atomic_load(phase) != 2)
		usleep(1000);
	prt_mutex_unlock(&e_m);
	return NULL;
}

static void test_timed_past(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	atomic_int phase = 0;
	pthread_t holder;

	(void)state;
	assert_int_equal(pthread_create(&holder, NULL, hold_e_m, &phase), 0);
	while (atomic_load(&phase) != 1)
		usleep(1000);
	assert_int_equal(past_checks(), 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, past_fiber, NULL));
	atomic_store(&phase, 2);
	pthread_join(holder, NULL);
	assert_int_equal(cond_past_checks(), 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, cond_past_fiber, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- lengths past 32 bits ---- */

#define BIG_LEN (((size_t)1 << 32) + 7)

struct len_case {
	char *big;
	int fd[2];
};

/* recv/read/send/write with a length over 4 GiB: a short transfer, never a wrapped one. */
static int len_checks(struct len_case *lc)
{
	char msg[100];
	ssize_t n;

	memset(msg, 'x', sizeof(msg));
	if (write(lc->fd[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return -1;
	n = prt_recv(lc->fd[0], lc->big, BIG_LEN, 0);
	if (n != (ssize_t)sizeof(msg)) {
		fprintf(stderr, "prt_recv(4 GiB + 7) with 100 queued: %zd\n", n);
		return -1;
	}
	if (write(lc->fd[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return -1;
	n = prt_read(lc->fd[0], lc->big, BIG_LEN);
	if (n != (ssize_t)sizeof(msg)) {
		fprintf(stderr, "prt_read(4 GiB + 7) with 100 queued: %zd\n", n);
		return -1;
	}
	/* The socket takes what its buffer holds; more than the 7 a wrapped length would say. */
	n = prt_send(lc->fd[0], lc->big, BIG_LEN, MSG_DONTWAIT);
	if (n <= 7) {
		fprintf(stderr, "prt_send(4 GiB + 7): %zd\n", n);
		return -1;
	}
	while (recv(lc->fd[1], msg, sizeof(msg), MSG_DONTWAIT) > 0)
		;
	n = prt_write(lc->fd[0], lc->big, BIG_LEN);
	if (n <= 7) {
		fprintf(stderr, "prt_write(4 GiB + 7): %zd\n", n);
		return -1;
	}
	while (recv(lc->fd[1], msg, sizeof(msg), MSG_DONTWAIT) > 0)
		;
	return 0;
}

static void *len_fiber(void *arg)
{
	return (void *)(intptr_t)len_checks(arg);
}

static void test_length_clamped(void **state)
{
	struct len_case lc;
	void *m;

	(void)state;
	/* Memcheck would check all 4 GiB byte by byte; the other builds cover this. */
	if (test_under_valgrind())
		skip();
	/* Never touched but for what the kernel writes: no memory behind it. */
	m = mmap(NULL, BIG_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (m == MAP_FAILED)
		skip();
	lc.big = m;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, lc.fd), 0);
	/* A write of 4 GiB to a blocking socket would wait for all of it. */
	assert_int_equal(fcntl(lc.fd[0], F_SETFL, fcntl(lc.fd[0], F_GETFL) | O_NONBLOCK), 0);
	for (int b = 0; b < g_nbackends; b++) {
		prt_runtime_t *rt = test_rt_with(1, 0, PRT_STACK_GUARD, g_backends[b]);

		assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, len_fiber, &lc));
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
	assert_int_equal(len_checks(&lc), 0);
	close(lc.fd[0]);
	close(lc.fd[1]);
	munmap(m, BIG_LEN);
}

/* ---- stack sizes that cannot be mapped ---- */

/*
 * Is the page just below @addr mapped without access? (/proc/self/maps:
 * the mapping that holds addr - 1 has permissions "---".)
 */
static bool guard_below(uintptr_t addr)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512], perms[8];
	unsigned long lo, hi;
	bool guard = false;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && addr - 1 >= lo &&
		    addr - 1 < hi) {
			guard = !strncmp(perms, "---", 3);
			break;
		}
	fclose(f);
	return guard;
}

/* The worker's alternate signal stack: its base, or 0 if it has none. */
static void *sigstack_base(void *arg)
{
	stack_t cur;

	(void)arg;
	if (sigaltstack(NULL, &cur) || (cur.ss_flags & SS_DISABLE))
		return NULL;
	return cur.ss_sp;
}

/*
 * A worker's alternate signal stack has a guard page below it: a
 * handler running there (the application's, chained from the preemption
 * handler, which takes SA_ONSTACK) that overflows it faults, rather than
 * writing over the mapping below (a review: none was there). Under ASan
 * the thread keeps the one ASan gave it.
 */
static void test_sigstack_has_guard(void **state)
{
	prt_runtime_t *rt = test_rt_with(2, 0, PRT_STACK_GUARD, PRT_IO_AUTO);
	void *base;

	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	prt_runtime_destroy(rt);
	skip();
#endif
	for (int i = 0; i < 2; i++) {
		assert_int_equal(prt_join(test_spawn(rt, PRT_PRIO_DEFAULT, i, sigstack_base, NULL),
					  &base),
				 0);
		assert_non_null(base);
		assert_true(guard_below((uintptr_t)base));
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_stack_size_huge(void **state)
{
	static const size_t sizes[] = { SIZE_MAX, SIZE_MAX - 4095, SIZE_MAX / 2 + 1 };

	(void)state;
	for (int kind = PRT_STACK_GUARD; kind <= PRT_STACK_CANARY; kind++) {
		prt_runtime_t *rt = test_rt_with(1, 0, kind, PRT_IO_AUTO);
		prt_runtime_config_t cfg;

		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			prt_fiber_attr_t a;
			prt_fiber_t f;

			prt_fiber_attr_init(&a);
			a.stack_size = sizes[i];
			assert_int_equal(prt_spawn(rt, &f, &a, test_noop, NULL), -ENOMEM);
		}
		/* Nothing broken: the runtime still runs fibers. */
		assert_ptr_equal(test_run_in(rt, PRT_PRIO_DEFAULT, test_noop, &rt), &rt);
		assert_int_equal(prt_runtime_destroy(rt), 0);

		/* The same as a runtime's default stack size. */
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			prt_fiber_t f;

			prt_runtime_config_init(&cfg);
			cfg.nworkers = 1;
			cfg.stack_kind = kind;
			cfg.stack_size = sizes[i];
			rt = NULL;
			assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
			assert_int_equal(prt_spawn(rt, &f, NULL, test_noop, NULL), -ENOMEM);
			assert_int_equal(prt_runtime_destroy(rt), 0);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sleep_saturates),
		cmocka_unit_test(test_io_timeout_saturates),
		cmocka_unit_test(test_timed_far_future),
		cmocka_unit_test(test_timed_past),
		cmocka_unit_test(test_length_clamped),
		cmocka_unit_test(test_stack_size_huge),
		cmocka_unit_test(test_sigstack_has_guard),
	};

	if (test_uring_usable("test_edges"))
		g_backends[g_nbackends++] = PRT_IO_URING;
	g_backends[g_nbackends++] = PRT_IO_EPOLL;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
