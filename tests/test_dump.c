/* SPDX-License-Identifier: MIT */
/*
 * prt_runtime_dump(): every fiber's line, what it waits for, and the
 * mutex chains, parsed from the text; the opt-in dump signal, in a child
 * whose stderr is a pipe; bad input.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

/* Everything written to a memfd by prt_runtime_dump(), NUL-terminated; free() it. */
static char *dump_text(prt_runtime_t *rt)
{
	int fd = memfd_create("dump", MFD_CLOEXEC);
	off_t len;
	char *buf;

	assert_true(fd >= 0);
	assert_int_equal(prt_runtime_dump(rt, fd), 0);
	len = lseek(fd, 0, SEEK_END);
	assert_true(len > 0);
	buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(pread(fd, buf, (size_t)len, 0), len);
	buf[len] = '\0';
	close(fd);
	return buf;
}

/* The line of @text that starts with @prefix, copied into @line; false if none. */
static bool find_line(const char *text, const char *prefix, char *line, size_t len)
{
	size_t pl = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, prefix, pl) == 0) {
			const char *e = strchr(p, '\n');
			size_t n = e ? (size_t)(e - p) : strlen(p);

			if (n >= len)
				n = len - 1;
			memcpy(line, p, n);
			line[n] = '\0';
			return true;
		}
	}
	return false;
}

static prt_fiber_t spawn_named(prt_runtime_t *rt, const char *name, int prio, int worker,
			       void *(*fn)(void *), void *arg)
{
	prt_fiber_attr_t a;
	prt_fiber_t f;

	prt_fiber_attr_init(&a);
	a.name = name;
	a.priority = prio;
	if (worker >= 0) {
		a.has_affinity = 1;
		prt_workerset_zero(&a.affinity);
		prt_workerset_add(&a.affinity, worker);
	}
	assert_int_equal(prt_spawn(rt, &f, &a, fn, arg), 0);
	return f;
}

/* ---- a known chain: high -> B -> mid -> A -> low, low blocked in a read ---------- */

struct chain {
	prt_mutex_t a, b;
	prt_cond_t cv;
	prt_mutex_t cvm;
	int pipe[2];
	atomic_int stage; /* 1: low holds A; 2: mid holds B */
	atomic_int cond_ready;
	int cond_go;
};

static void *low_fn(void *arg)
{
	struct chain *c = arg;
	char b;

	FIBER_CHECK(prt_mutex_lock(&c->a) == 0);
	atomic_store(&c->stage, 1);
	FIBER_CHECK(prt_read(c->pipe[0], &b, 1) == 1); /* the test writes once dumped */
	FIBER_CHECK(prt_mutex_unlock(&c->a) == 0);
	return NULL;
}

static void *mid_fn(void *arg)
{
	struct chain *c = arg;

	FIBER_CHECK(prt_mutex_lock(&c->b) == 0);
	atomic_store(&c->stage, 2);
	FIBER_CHECK(prt_mutex_lock(&c->a) == 0);
	prt_mutex_unlock(&c->a);
	prt_mutex_unlock(&c->b);
	return NULL;
}

static void *high_fn(void *arg)
{
	struct chain *c = arg;

	FIBER_CHECK(prt_mutex_lock(&c->b) == 0);
	prt_mutex_unlock(&c->b);
	return NULL;
}

static void *cond_fn(void *arg)
{
	struct chain *c = arg;

	prt_mutex_lock(&c->cvm);
	atomic_store(&c->cond_ready, 1);
	while (!c->cond_go)
		FIBER_CHECK(prt_cond_wait(&c->cv, &c->cvm) == 0);
	prt_mutex_unlock(&c->cvm);
	return NULL;
}

static atomic_int sleeper_stop;

/* Sleeps in 5 ms slices: a dump almost always finds it asleep. */
static void *sleeper_fn(void *arg)
{
	(void)arg;
	while (!atomic_load(&sleeper_stop))
		prt_sleep_ns(5 * 1000 * 1000);
	return NULL;
}

static void *parker_fn(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)prt_park();
}

/* Wait until @text's line for fiber @id shows @want (the dump is a snapshot). */
static char *dump_until(prt_runtime_t *rt, uint64_t id, const char *want)
{
	char prefix[64], line[512];

	snprintf(prefix, sizeof(prefix), "fiber %llu ", (unsigned long long)id);
	for (int i = 0; i < 5000; i++) {
		char *t = dump_text(rt);

		if (find_line(t, prefix, line, sizeof(line)) && strstr(line, want))
			return t;
		free(t);
		usleep(1000);
	}
	fail_msg("fiber %llu never showed \"%s\"", (unsigned long long)id, want);
	return NULL;
}

static void run_chain(unsigned flags)
{
	prt_runtime_t *rt = test_rt_flags(2, flags);
	struct chain c = { .a = PRT_MUTEX_INITIALIZER, .b = PRT_MUTEX_INITIALIZER,
			   .cvm = PRT_MUTEX_INITIALIZER, .cv = PRT_COND_INITIALIZER };
	prt_fiber_t low, mid, high, cf, sl, pk;
	char want[256], line[512], *t;
	void *res;

	assert_int_equal(pipe(c.pipe), 0);
	low = spawn_named(rt, "low", 1, 0, low_fn, &c);
	while (atomic_load(&c.stage) < 1)
		usleep(100);
	mid = spawn_named(rt, "mid", 5, 1, mid_fn, &c);
	while (atomic_load(&c.stage) < 2)
		usleep(100);
	high = spawn_named(rt, "high", 10, -1, high_fn, &c);
	cf = spawn_named(rt, "condwaiter", 2, -1, cond_fn, &c);
	sl = spawn_named(rt, "sleeper", 2, -1, sleeper_fn, NULL);
	pk = spawn_named(rt, "parker", 2, -1, parker_fn, NULL);

	/* The chain line appears once high waits on B. */
	snprintf(want, sizeof(want),
		 "chain: %llu \"high\" -> mutex %p -> %llu \"mid\" -> mutex %p -> %llu \"low\" "
		 "[io:read:fd=%d]",
		 (unsigned long long)prt_fiber_id(high), (void *)&c.b,
		 (unsigned long long)prt_fiber_id(mid), (void *)&c.a,
		 (unsigned long long)prt_fiber_id(low), c.pipe[0]);
	for (int i = 0;; i++) {
		t = dump_text(rt);
		if (strstr(t, want) && atomic_load(&c.cond_ready) &&
		    strstr(t, "wait=park") && strstr(t, "wait=sleep:"))
			break;
		assert_true(i < 5000);
		free(t);
		usleep(1000);
	}
	free(t);
	/* Each fiber's own line says what it waits for. */
	t = dump_until(rt, prt_fiber_id(cf), "wait=cond:");
	snprintf(want, sizeof(want), "fiber %llu \"low\" state=blocked worker=0 prio=1 "
		 "wait=io:read:fd=%d", (unsigned long long)prt_fiber_id(low), c.pipe[0]);
	assert_true(find_line(t, want, line, sizeof(line)));
	snprintf(want, sizeof(want), "fiber %llu \"mid\" ", (unsigned long long)prt_fiber_id(mid));
	assert_true(find_line(t, want, line, sizeof(line)));
	snprintf(want, sizeof(want), "wait=mutex:%p owner=%llu", (void *)&c.a,
		 (unsigned long long)prt_fiber_id(low));
	assert_non_null(strstr(line, want));
	snprintf(want, sizeof(want), "fiber %llu \"high\" ", (unsigned long long)prt_fiber_id(high));
	assert_true(find_line(t, want, line, sizeof(line)));
	assert_non_null(strstr(line, "prio=10"));
	snprintf(want, sizeof(want), "wait=mutex:%p owner=%llu", (void *)&c.b,
		 (unsigned long long)prt_fiber_id(mid));
	assert_non_null(strstr(line, want));
	snprintf(want, sizeof(want), "fiber %llu \"condwaiter\" ", (unsigned long long)prt_fiber_id(cf));
	assert_true(find_line(t, want, line, sizeof(line)));
	snprintf(want, sizeof(want), "wait=cond:%p", (void *)&c.cv);
	assert_non_null(strstr(line, want));
	assert_non_null(strstr(t, "proxyrt dump: runtime="));
	assert_non_null(strstr(t, " workers=2 fibers=6\n"));
	assert_true(find_line(t, "worker 1: ", line, sizeof(line)));
	assert_non_null(strstr(t, "proxyrt dump end\n"));
	free(t);

	/* Let everything finish; the dump then lists nobody. */
	assert_int_equal(write(c.pipe[1], "x", 1), 1);
	prt_mutex_lock(&c.cvm);
	c.cond_go = 1;
	prt_cond_broadcast(&c.cv);
	prt_mutex_unlock(&c.cvm);
	assert_int_equal(prt_unpark(pk), 0);
	atomic_store(&sleeper_stop, 1);
	for (prt_fiber_t *f = (prt_fiber_t[]){ low, mid, high, cf, sl, pk }, *e = f + 6; f < e;
	     f++) {
		assert_int_equal(prt_join(*f, &res), 0);
		assert_null(res);
	}
	atomic_store(&sleeper_stop, 0);
	t = dump_text(rt);
	assert_non_null(strstr(t, " fibers=0\n"));
	assert_null(strstr(t, "\nfiber "));
	assert_null(strstr(t, "\nchain: "));
	free(t);
	close(c.pipe[0]);
	close(c.pipe[1]);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_chain_proxy(void **state)
{
	(void)state;
	run_chain(0);
}

/* Without proxy execution the waiters sleep: same chain, state blocked. */
static void test_chain_noproxy(void **state)
{
	(void)state;
	run_chain(PRT_RT_NO_PROXY);
}

/* ---- a chain ending at an owner asleep in prt_sleep_ns() ------------------------- */

struct nap {
	prt_mutex_t m;
	atomic_int held;
	atomic_int go;
};

static void *napper_fn(void *arg)
{
	struct nap *x = arg;

	prt_mutex_lock(&x->m);
	atomic_store(&x->held, 1);
	while (!atomic_load(&x->go))
		prt_sleep_ns(1000 * 1000);
	prt_mutex_unlock(&x->m);
	return NULL;
}

static void *taker_fn(void *arg)
{
	struct nap *x = arg;

	FIBER_CHECK(prt_mutex_lock(&x->m) == 0);
	prt_mutex_unlock(&x->m);
	return NULL;
}

static void test_chain_to_sleeper(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	struct nap x = { .m = PRT_MUTEX_INITIALIZER };
	prt_fiber_t napper, taker;
	char want[256], *t = NULL;
	void *res;

	(void)state;
	napper = spawn_named(rt, "napper", 1, 0, napper_fn, &x);
	while (!atomic_load(&x.held))
		usleep(100);
	taker = spawn_named(rt, "taker", 7, 1, taker_fn, &x);
	snprintf(want, sizeof(want), "chain: %llu \"taker\" -> mutex %p -> %llu \"napper\" [sleep:",
		 (unsigned long long)prt_fiber_id(taker), (void *)&x.m,
		 (unsigned long long)prt_fiber_id(napper));
	for (int i = 0;; i++) {
		free(t);
		t = dump_text(rt);
		if (strstr(t, want))
			break;
		if (i == 5000)
			fail_msg("no \"%s\" in:\n%s", want, t);
		usleep(1000);
	}
	free(t);
	atomic_store(&x.go, 1);
	assert_int_equal(prt_join(taker, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(napper, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- the dump signal, in a child whose stderr is a pipe -------------------------- */

static void *hold_fn(void *arg)
{
	prt_park();
	(void)arg;
	return NULL;
}

static int child_signal(int sig, int nrt)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt[2];
	prt_fiber_t f[2];

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.dump_signal = sig;
	for (int i = 0; i < nrt; i++) {
		if (prt_runtime_create(&rt[i], &cfg))
			return 2;
		f[i] = spawn_named(rt[i], i ? "parked-b" : "parked-a", 4, -1, hold_fn, NULL);
	}
	for (int i = 0; i < nrt; i++) { /* parked before the signal */
		char *t;

		while (!strstr(t = dump_text(rt[i]), "wait=park"))
			free(t), usleep(1000);
		free(t);
	}
	raise(sig);
	/* The dump threads write to stderr; the parent reads both dumps, then closes. */
	sleep(30);
	for (int i = 0; i < nrt; i++) {
		prt_unpark(f[i]);
		prt_join(f[i], NULL);
		prt_runtime_destroy(rt[i]);
	}
	return 0;
}

static void test_dump_signal(void **state)
{
	int pfd[2], st;
	char buf[16384];
	size_t got = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pfd[1], STDERR_FILENO);
		close(pfd[0]);
		close(pfd[1]);
		_exit(child_signal(SIGUSR2, 2));
	}
	close(pfd[1]);
	/* Two dumps, one per runtime, each ending with its end line. */
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		const char *e = buf;
		int ends = 0;
		ssize_t n;

		assert_int_equal(poll(&p, 1, 20000), 1);
		n = read(pfd[0], buf + got, sizeof(buf) - 1 - got);
		assert_true(n > 0);
		got += (size_t)n;
		buf[got] = '\0';
		while ((e = strstr(e, "proxyrt dump end\n")))
			ends++, e++;
		if (ends == 2)
			break;
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	close(pfd[0]);
	assert_non_null(strstr(buf, "\"parked-a\" state=blocked worker=0 prio=4 wait=park"));
	assert_non_null(strstr(buf, "\"parked-b\" state=blocked worker=0 prio=4 wait=park"));
}

/* The disposition before the first runtime is back after the last one. */
static void test_signal_restored(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *a, *b;
	struct sigaction sa;

	(void)state;
	signal(SIGUSR1, SIG_IGN);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.dump_signal = SIGUSR1;
	assert_int_equal(prt_runtime_create(&a, &cfg), 0);
	assert_int_equal(prt_runtime_create(&b, &cfg), 0);
	assert_int_equal(sigaction(SIGUSR1, NULL, &sa), 0);
	assert_true(sa.sa_handler != SIG_IGN);
	assert_int_equal(prt_runtime_destroy(a), 0);
	assert_int_equal(sigaction(SIGUSR1, NULL, &sa), 0);
	assert_true(sa.sa_handler != SIG_IGN);
	assert_int_equal(prt_runtime_destroy(b), 0);
	assert_int_equal(sigaction(SIGUSR1, NULL, &sa), 0);
	assert_true(sa.sa_handler == SIG_IGN);
	signal(SIGUSR1, SIG_DFL);
}

static void test_bad_input(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = test_rt(1);
	int fd;

	(void)state;
	assert_int_equal(prt_runtime_dump(NULL, 1), -EINVAL);
	assert_int_equal(prt_runtime_dump(rt, -1), -EINVAL);
	fd = open("/dev/null", O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(prt_runtime_dump(rt, fd), -EBADF); /* not open for writing */
	close(fd);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	for (int s = 0; s < 4; s++) {
		rt = NULL;
		cfg.dump_signal = (int[]){ SIGSEGV, SIGKILL, -1, 4096 }[s];
		assert_int_equal(prt_runtime_create(&rt, &cfg), -EINVAL);
		assert_null(rt);
	}
}

/* ---- an owner that ended holding mutexes: shown, and at the end of chains ---- */

static prt_mutex_t eo_m1 = PRT_MUTEX_INITIALIZER, eo_m2 = PRT_MUTEX_INITIALIZER;
static atomic_int eo_stop;

static void *eo_holder(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&eo_m1) == 0);
	FIBER_CHECK(prt_mutex_lock(&eo_m2) == 0);
	return NULL; /* holding both: they stay locked by it */
}

/* Waits on eo_m1 in 1 ms slices: a dump almost always finds it waiting. */
static void *eo_waiter(void *arg)
{
	(void)arg;
	while (!atomic_load(&eo_stop)) {
		struct timespec soon = test_realtime_in(1000000L);

		FIBER_CHECK(prt_mutex_timedlock(&eo_m1, &soon) == ETIMEDOUT);
	}
	return NULL;
}

static void test_ended_owner(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	char want[64], line[512];
	prt_fiber_t h, w;
	bool found = false;
	void *res;

	(void)state;
	atomic_store(&eo_stop, 0);
	h = spawn_named(rt, "holder", PRT_PRIO_DEFAULT, -1, eo_holder, NULL);
	assert_int_equal(prt_join(h, &res), 0);
	assert_null(res);
	w = spawn_named(rt, "waiter", PRT_PRIO_DEFAULT, -1, eo_waiter, NULL);
	snprintf(want, sizeof(want), "fiber %llu ", (unsigned long long)prt_fiber_id(h));
	for (int i = 0; i < 10000 && !found; i++) {
		char *text = dump_text(rt);

		/* Its line stays, with its id: dead, holding both. */
		assert_true(find_line(text, want, line, sizeof(line)));
		assert_non_null(strstr(line, "\"holder\" state=dead"));
		assert_non_null(strstr(line, " holding=2"));
		/* The waiter's chain ends at it. */
		found = find_line(text, "chain: ", line, sizeof(line));
		if (found)
			assert_non_null(strstr(line, "\"holder\" [dead]"));
		free(text);
		if (!found)
			usleep(200);
	}
	assert_true(found);
	atomic_store(&eo_stop, 1);
	assert_int_equal(prt_join(w, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain_proxy),
		cmocka_unit_test(test_chain_noproxy),
		cmocka_unit_test(test_chain_to_sleeper),
		cmocka_unit_test(test_dump_signal),
		cmocka_unit_test(test_signal_restored),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_ended_owner),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
