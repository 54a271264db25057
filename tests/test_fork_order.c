/* SPDX-License-Identifier: MIT */
/*
 * fork() and what the program itself does around it (README, "fork()"):
 * a pthread_atfork child handler the program registered before its
 * first runtime may create a runtime in the child (the library's own
 * handlers are registered when it is loaded, so its locks are dropped
 * by then); and the child of a fork from a fiber has SIGPIPE as the
 * program had it, not the worker's block (proxyrt/io.h, "Broken
 * connections"). A fresh process of its own: which handlers came first
 * depends on what ran before.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_common.h"

/* Child exit codes: 0 all well, else which check failed. */
enum { CHILD_OK = 0, CHILD_HANDLER_FAILED = 10, CHILD_HANDLER_NOT_RUN, CHILD_PIPE_BLOCKED,
       CHILD_PIPE_UNBLOCKED };

static volatile sig_atomic_t handler_armed, handler_result = -1;

static void *child_fiber(void *arg)
{
	return arg;
}

/* The program's child handler: a runtime of its own in the child. */
static void app_child(void)
{
	prt_runtime_config_t cfg;
	void *res = NULL;

	if (!handler_armed)
		return;
	if (PRT_TEST_TSAN) {
		handler_result = 1; /* a child of a multithreaded process dies when it starts threads */
		return;
	}
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	handler_result = prt_run(&cfg, child_fiber, (void *)(intptr_t)7, &res) == 0 &&
			 res == (void *)(intptr_t)7;
}

/*
 * Registered before main, as a program's constructor may: in a static
 * link (this test's) the program's constructors are not after the
 * library's unless the library's run early by priority (fork.c).
 */
__attribute__((constructor)) static void register_early(void)
{
	(void)pthread_atfork(NULL, NULL, app_child);
}

static bool pipe_blocked(void)
{
	sigset_t cur;

	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	return sigismember(&cur, SIGPIPE);
}

/* Wait up to 30 s for @pid (a child that hangs is killed): its exit code, or -1. */
static int wait_child(pid_t pid)
{
	int st = 0;

	for (int i = 0; i < 3000; i++) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	fprintf(stderr, "  the child hung (killed)\n");
	return -1;
}

struct forker {
	bool want_blocked; /* SIGPIPE blocked in the child, as the program had it */
	int code;          /* the child's exit code */
	bool parent_blocked; /* the worker still blocks SIGPIPE in the parent */
};

static void *fork_fiber(void *arg)
{
	struct forker *fk = arg;
	pid_t pid;

	handler_armed = 1;
	pid = fork();
	if (pid == 0) {
		if (handler_result < 0)
			_exit(CHILD_HANDLER_NOT_RUN);
		if (handler_result != 1)
			_exit(CHILD_HANDLER_FAILED);
		if (pipe_blocked() != fk->want_blocked)
			_exit(fk->want_blocked ? CHILD_PIPE_UNBLOCKED : CHILD_PIPE_BLOCKED);
		_exit(CHILD_OK);
	}
	handler_armed = 0;
	FIBER_CHECK(pid > 0);
	fk->parent_blocked = pipe_blocked();
	fk->code = pid > 0 ? wait_child(pid) : -1;
	return NULL;
}

static void run_forker(struct forker *fk)
{
	prt_runtime_config_t cfg;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	assert_int_equal(prt_run(&cfg, fork_fiber, fk, NULL), 0);
	if (fk->code != CHILD_OK)
		fprintf(stderr, "  child exit code %d\n", fk->code);
	assert_int_equal(fk->code, CHILD_OK);
	assert_true(fk->parent_blocked); /* the worker's own block is kept in the parent */
}

/* Registered before any runtime exists (in a constructor): the handler runs with the library's locks dropped. */
static void test_child_handler_before_first_runtime(void **state)
{
	struct forker fk = { .want_blocked = false };

	(void)state;
	assert_false(pipe_blocked());
	run_forker(&fk);
}

/* A program that blocks SIGPIPE itself keeps it blocked in the child. */
static void test_child_keeps_programs_pipe_block(void **state)
{
	struct forker fk = { .want_blocked = true };
	sigset_t pipe;

	(void)state;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &pipe, NULL), 0);
	run_forker(&fk);
	assert_int_equal(pthread_sigmask(SIG_UNBLOCK, &pipe, NULL), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* first: no runtime has been made in this process before it */
		cmocka_unit_test(test_child_handler_before_first_runtime),
		cmocka_unit_test(test_child_keeps_programs_pipe_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
