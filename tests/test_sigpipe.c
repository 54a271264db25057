/* SPDX-License-Identifier: MIT */
/*
 * Sockets never raise SIGPIPE through the library (proxyrt/io.h,
 * "Broken connections"). With SIGPIPE at its default disposition (which
 * kills the process) and unblocked, every call that writes (prt_write,
 * prt_writev, prt_send, prt_write_all and their _timeout variants, and
 * prt_runtime_dump) to a socket that can no longer send returns -EPIPE
 * and the process lives: from a fiber on each backend and from a plain
 * thread, on an AF_UNIX socket whose peer closed and on a TCP socket
 * shut down for writing. Each case runs in a forked child, so a SIGPIPE
 * shows as that child's death.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

static int g_backend = PRT_IO_URING;

/* Every writing call on @fd, which cannot send any more: each returns -EPIPE. */
static void *write_calls(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char b[64] = "x";
	struct iovec iov[2] = { { b, 3 }, { b, 5 } };

	FIBER_CHECK(prt_write(fd, b, 1) == -EPIPE);
	FIBER_CHECK(prt_write_timeout(fd, b, 1, 1000000000u) == -EPIPE);
	FIBER_CHECK(prt_writev(fd, iov, 2) == -EPIPE);
	FIBER_CHECK(prt_writev_timeout(fd, iov, 2, 1000000000u) == -EPIPE);
	FIBER_CHECK(prt_send(fd, b, 1, 0) == -EPIPE);
	FIBER_CHECK(prt_send_timeout(fd, b, 1, 0, 1000000000u) == -EPIPE);
	FIBER_CHECK(prt_write_all(fd, b, sizeof(b), 0) == -EPIPE);
	FIBER_CHECK(prt_write_all(fd, b, sizeof(b), 1000000000u) == -EPIPE);
	return NULL;
}

/* An AF_UNIX stream socket whose peer has closed. */
static int unix_broken(void)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	close(sv[1]);
	return sv[0];
}

/*
 * A connected TCP socket on loopback, shut down for writing (sending on
 * it fails with EPIPE at once, every time); its peer in *@peer.
 */
static int tcp_broken(int *peer)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, l) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&a, &l))
		return -1;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, l) ||
	    (*peer = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0 || shutdown(c, SHUT_WR))
		return -1;
	close(lfd);
	return c;
}

/* The dump to a broken socket, from wherever it is called. */
static void *dump_call(void *arg)
{
	int fd = (int)(intptr_t)arg;
	prt_runtime_t *rt = prt_runtime_self();

	FIBER_CHECK(prt_runtime_dump(rt, fd) == -EPIPE);
	return NULL;
}

/* The child: SIGPIPE kills (default, unblocked); every call on both sockets. Exit 0 or a line. */
static void child(bool fiber)
{
	prt_runtime_t *rt = NULL;
	prt_runtime_config_t cfg;
	int peer = -1, fds[2];
	sigset_t s;

	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&s);
	sigaddset(&s, SIGPIPE);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.io_backend = g_backend;
	fds[0] = unix_broken();
	fds[1] = tcp_broken(&peer);
	if (fds[0] < 0 || fds[1] < 0 || prt_runtime_create(&rt, &cfg) != 0)
		_exit(2);
	for (int i = 0; i < 2; i++) {
		void *arg = (void *)(intptr_t)fds[i], *r;
		prt_fiber_t f;

		if (!fiber) {
			r = write_calls(arg);
			/* The plain thread dumps the runtime it made. */
			if (!r && prt_runtime_dump(rt, fds[i]) != -EPIPE)
				r = (void *)(intptr_t)__LINE__;
		} else if (prt_spawn(rt, &f, NULL, write_calls, arg) || prt_join(f, &r) ||
			   (!r && (prt_spawn(rt, &f, NULL, dump_call, arg) || prt_join(f, &r)))) {
			_exit(3);
		}
		if (r)
			_exit((int)(intptr_t)r % 256 ? (int)(intptr_t)r % 256 : 4);
	}
	prt_runtime_destroy(rt);
	_exit(0);
}

/* Run child(@fiber) in a child process; it must exit 0, not die of SIGPIPE. */
static void run_child(bool fiber)
{
	int st;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		child(fiber);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fprintf(stderr, "test_sigpipe: %s on %s: child killed by signal %d%s\n",
			fiber ? "fiber" : "plain thread",
			g_backend == PRT_IO_URING ? "io_uring" : "epoll", WTERMSIG(st),
			WTERMSIG(st) == SIGPIPE ? " (SIGPIPE)" : "");
	else if (WEXITSTATUS(st))
		fprintf(stderr, "test_sigpipe: child exited %d (a check failed at that line "
				"of test_sigpipe.c, mod 256)\n", WEXITSTATUS(st));
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_fiber_writes(void **state)
{
	(void)state;
	run_child(true);
}

static void test_thread_writes(void **state)
{
	(void)state;
	run_child(false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fiber_writes),
		cmocka_unit_test(test_thread_writes),
	};
	int fails = 0;

	if (test_uring_usable("test_sigpipe")) {
		g_backend = PRT_IO_URING;
		fails += cmocka_run_group_tests_name("io_uring", tests, NULL, NULL);
	}
	g_backend = PRT_IO_EPOLL;
	fprintf(stderr, "test_sigpipe: epoll backend\n");
	fails += cmocka_run_group_tests_name("epoll", tests, NULL, NULL);
	return fails ? 1 : 0;
}
