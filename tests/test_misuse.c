/* SPDX-License-Identifier: MIT */
/*
 * API misuse that can be detected cheaply returns its error and leaves
 * everything working: a destroyed runtime, unlocking a mutex one does
 * not own, destroying a mutex or condvar in use, joining twice, and
 * fiber-only calls from a plain thread. (ASan builds also prove that
 * none of it reads freed memory.)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

static void test_destroyed_runtime(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_worker_info_t info;
	prt_worker_stats_t st;
	prt_fiber_t f;
	int order[4];

	(void)state;
	assert_int_equal(prt_runtime_destroy(rt), 0);
	/* Every call on it says so; none touches the freed runtime. */
	assert_int_equal(prt_runtime_destroy(rt), -EINVAL);
	assert_int_equal(prt_spawn(rt, &f, NULL, test_noop, NULL), -EINVAL);
	assert_int_equal(prt_runtime_nworkers(rt), -EINVAL);
	assert_null(prt_runtime_notice(rt));
	assert_int_equal(prt_runtime_worker_info(rt, 0, &info), -EINVAL);
	assert_int_equal(prt_worker_stats(rt, 0, &st), -EINVAL);
	assert_int_equal(prt_runtime_steal_order(rt, 0, order, 4), -EINVAL);
	assert_int_equal(prt_runtime_dump(rt, STDERR_FILENO), -EINVAL);
	/* Not a runtime at all. */
	assert_int_equal(prt_runtime_destroy((prt_runtime_t *)&info), -EINVAL);
	assert_int_equal(prt_spawn((prt_runtime_t *)&info, &f, NULL, test_noop, NULL), -EINVAL);
	/* Others are unaffected. */
	rt = test_rt(1);
	assert_int_equal(prt_spawn(rt, &f, NULL, test_noop, (void *)7), 0);
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- mutexes and condvars ---------------------------------------------------- */

static prt_mutex_t m_held = PRT_MUTEX_INITIALIZER;
static prt_cond_t c_busy = PRT_COND_INITIALIZER;
static atomic_int stage;

static void *holder(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&m_held) == 0);
	atomic_store(&stage, 1);
	while (atomic_load(&stage) != 2)
		prt_sleep_ns(100000);
	FIBER_CHECK(prt_mutex_unlock(&m_held) == 0);
	return NULL;
}

static void *not_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_unlock(&m_held) == EPERM);
	return NULL;
}

static void *cond_waiter(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&m_held) == 0);
	atomic_store(&stage, 3);
	while (atomic_load(&stage) != 4)
		FIBER_CHECK(prt_cond_wait(&c_busy, &m_held) == 0);
	FIBER_CHECK(prt_mutex_unlock(&m_held) == 0);
	return NULL;
}

static void test_mutex_cond_misuse(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_mutex_t unlocked = PRT_MUTEX_INITIALIZER;
	prt_fiber_t h, n, w;
	void *res;

	(void)state;
	atomic_store(&stage, 0);
	/* Unlocking a mutex nobody holds, from a thread and a fiber. */
	assert_int_equal(prt_mutex_unlock(&unlocked), EPERM);
	h = test_spawn(rt, PRT_PRIO_DEFAULT, 0, holder, NULL);
	while (atomic_load(&stage) != 1)
		usleep(100);
	/* Held by someone else: not ours to unlock, not destroyable. */
	assert_int_equal(prt_mutex_unlock(&m_held), EPERM);
	n = test_spawn(rt, PRT_PRIO_DEFAULT, 1, not_owner, NULL);
	assert_int_equal(prt_join(n, &res), 0);
	assert_null(res);
	assert_int_equal(prt_mutex_destroy(&m_held), EBUSY);
	atomic_store(&stage, 2);
	assert_int_equal(prt_join(h, &res), 0);
	assert_null(res);
	/* A condvar with a waiter is in use. */
	w = test_spawn(rt, PRT_PRIO_DEFAULT, -1, cond_waiter, NULL);
	while (atomic_load(&stage) != 3)
		usleep(100);
	prt_mutex_lock(&m_held); /* the waiter is in prt_cond_wait once we get it */
	assert_int_equal(prt_cond_destroy(&c_busy), EBUSY);
	atomic_store(&stage, 4);
	prt_cond_signal(&c_busy);
	prt_mutex_unlock(&m_held);
	assert_int_equal(prt_join(w, &res), 0);
	assert_null(res);
	/* Nothing was broken along the way. */
	assert_int_equal(prt_cond_destroy(&c_busy), 0);
	assert_int_equal(prt_mutex_destroy(&m_held), 0);
	assert_int_equal(prt_mutex_destroy(&unlocked), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- fibers ------------------------------------------------------------------ */

static void *self_join(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_join(prt_self(), NULL) == -EDEADLK);
	FIBER_CHECK(prt_runtime_destroy(prt_runtime_self()) == -EDEADLK);
	return NULL;
}

static void test_fiber_misuse(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_attr_t a;
	prt_fiber_t f, d;
	void *res;
	int rc;

	(void)state;
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, test_noop, (void *)5);
	assert_int_equal(prt_join(f, &res), 0);
	assert_ptr_equal(res, (void *)5);
	assert_int_equal(prt_join(f, &res), -ESRCH); /* joined twice */
	assert_int_equal(prt_detach(f), -ESRCH);
	prt_fiber_attr_init(&a);
	a.flags = PRT_FIBER_DETACHED;
	assert_int_equal(prt_spawn(rt, &d, &a, self_join, NULL), 0);
	rc = prt_join(d, NULL); /* detached: -EINVAL while it lives, -ESRCH once gone */
	assert_true(rc == -EINVAL || rc == -ESRCH);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, self_join, NULL);
	assert_int_equal(prt_detach(f), 0);
	rc = prt_detach(f); /* twice */
	assert_true(rc == -EINVAL || rc == -ESRCH);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, self_join, NULL);
	assert_int_equal(prt_join(f, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* Fiber-only calls from a plain thread: an error, never a crash. */
static void test_plain_thread_calls(void **state)
{
	prt_fiber_t me = prt_self();

	(void)state;
	assert_int_equal(prt_yield(), -EPERM);
	assert_int_equal(prt_park(), -EPERM);
	assert_int_equal(prt_worker_index(), -EPERM);
	assert_null(prt_runtime_self());
	assert_null(me.p);
	assert_int_equal(prt_fiber_id(me), 0);
	assert_int_equal(prt_join(me, NULL), -ESRCH);
}

/*
 * Fork; the child runs @fn(@arg) with stderr on a pipe (and exits 0 if
 * @fn returns). Reads what the child writes into @buf, NUL-terminated;
 * returns the child's wait status.
 */
static int child_stderr(void (*fn)(void *), void *arg, char *buf, size_t len)
{
	size_t got = 0;
	int pfd[2], st;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGABRT, SIG_DFL);
		dup2(pfd[1], STDERR_FILENO);
		fn(arg);
		_exit(0);
	}
	close(pfd[1]);
	while (got < len - 1 && (n = read(pfd[0], buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return st;
}

static void exit_from_thread(void *arg)
{
	prt_exit(arg);
}

/* prt_exit cannot return an error (it never returns): from a thread it aborts, saying why. */
static void test_exit_from_thread_aborts(void **state)
{
	char buf[512];
	int st;

	(void)state;
	st = child_stderr(exit_from_thread, NULL, buf, sizeof(buf));
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
	assert_non_null(strstr(buf, "prt_exit called from a plain thread"));
}

/* Debug builds: a destroyed mutex or condvar used again aborts, naming the call. */
static void use_destroyed(void *arg)
{
	static prt_mutex_t m = PRT_MUTEX_INITIALIZER;
	static prt_cond_t c = PRT_COND_INITIALIZER;

	if (arg) {
		prt_cond_destroy(&c);
		prt_cond_signal(&c);
	} else {
		prt_mutex_destroy(&m);
		prt_mutex_lock(&m);
	}
}

static void test_destroyed_objects_debug(void **state)
{
	(void)state;
#if PRT_TEST_DEBUG_LIB
	for (int obj = 0; obj < 2; obj++) {
		char buf[512];
		int st = child_stderr(use_destroyed, obj ? (void *)1 : NULL, buf, sizeof(buf));

		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
		assert_non_null(strstr(buf, obj ? "prt_cond_signal(" : "prt_mutex_lock("));
		assert_non_null(strstr(buf, "on a destroyed object"));
	}
#else
	/* Release builds do not look (zero storage is a valid object): nothing to test. */
	(void)use_destroyed;
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_destroyed_runtime),
		cmocka_unit_test(test_mutex_cond_misuse),
		cmocka_unit_test(test_fiber_misuse),
		cmocka_unit_test(test_plain_thread_calls),
		cmocka_unit_test(test_exit_from_thread_aborts),
		cmocka_unit_test(test_destroyed_objects_debug),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
