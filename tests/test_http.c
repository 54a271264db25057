/* SPDX-License-Identifier: MIT */
/*
 * The example servers over loopback, as fibers on io_uring (or epoll).
 *
 * HTTP (examples/http_conn.h) on a 2-worker runtime, driven from this
 * plain thread with ordinary blocking sockets: exact answers, pipelining
 * (with bodies to skip), the malformed requests that get 400 and a
 * close, the header-size limit, Connection: close, clients that vanish
 * mid-request, and 100 requests on one connection.
 *
 * Echo (examples/echo_conn.h): 10,000 connections open at once, client
 * fibers and server fibers in one runtime, every byte checked.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_common.h"

#include "echo_conn.h"
#include "http_conn.h"

/* A server that stops answering fails the test here instead of hanging it. */
#define IO_TIMEOUT_S 20

#define GET "GET / HTTP/1.1\r\nHost: test\r\n\r\n"

/* Needs RLIMIT_NOFILE >= ECHO_CONNS + 100 (clients then run in a child), else skips. */
#ifndef ECHO_CONNS
/*
 * TSan counts each fiber as a thread, and stops at 8128; 2000 there
 * (4000 took most of test_http's 99 s under TSan, a ninth of the suite).
 */
#define ECHO_CONNS (PRT_TEST_TSAN ? 2000 : 10000)
#endif

/* The server every HTTP test talks to (group setup and teardown). */
static struct {
	prt_runtime_t *rt;
	struct serve_loop loop;
	prt_fiber_t accept;
	int port;
} srv;

/* Start @conn fibers behind an accept loop on listening @fd (-1: an ephemeral port of 127.0.0.1). */
static void server_start_fd(prt_runtime_t *rt, void *(*conn)(void *), int fd)
{
	if (fd < 0)
		fd = serve_listen("127.0.0.1", 0);
	assert_true(fd >= 0);
	srv.rt = rt;
	srv.port = serve_port(fd);
	assert_true(srv.port > 0);
	serve_loop_init(&srv.loop, fd, conn);
	assert_int_equal(prt_spawn(rt, &srv.accept, NULL, serve_accept_loop, &srv.loop), 0);
}

static void server_start(prt_runtime_t *rt, void *(*conn)(void *))
{
	server_start_fd(rt, conn, -1);
}

/* Stop accepting and wait for every fiber of the runtime, connections included. */
static void server_stop(void)
{
	serve_stop(&srv.loop);
	assert_int_equal(prt_join(srv.accept, NULL), 0);
	assert_int_equal(srv.loop.err, 0);
	close(srv.loop.fd);
	assert_int_equal(prt_runtime_destroy(srv.rt), 0);
}

/* As test_rt(), with slab stacks (PRT_STACK_CANARY). */
static prt_runtime_t *test_rt_canary(int nworkers)
{
	return test_rt_with(nworkers, 0, PRT_STACK_CANARY, PRT_IO_AUTO);
}

static int http_setup(void **state)
{
	(void)state;
	server_start(test_rt(2), http_conn_fiber);
	return 0;
}

static int http_teardown(void **state)
{
	(void)state;
	server_stop();
	return 0;
}

/* ---- a blocking client ---- */

/*
 * Client sockets not closed yet. A failed assertion leaves its test's
 * sockets open; their server fibers would wait for them for ever and
 * prt_runtime_destroy() with them, so each test's teardown closes them.
 */
static int client_fds[8];
static int nclient_fds;

/*
 * A blocking socket call of this plain thread may return EINTR: with
 * SO_RCVTIMEO/SO_SNDTIMEO set the kernel does not restart it. Nothing in
 * this test sends us signals, but freezing and thawing the process (a
 * cgroup freezer, a debugger's stop) interrupts such calls too. Retry,
 * but say so once.
 */
static int client_eintr(ssize_t k)
{
	static int said;

	if (k >= 0 || errno != EINTR)
		return 0;
	if (!said++)
		fprintf(stderr, "note: a blocking socket call of the test thread got EINTR\n");
	return 1;
}

/* connect(); after EINTR the handshake goes on: wait for it to end. */
static int client_connect(int fd, const struct sockaddr_in *sa)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	socklen_t len = sizeof(int);
	int err = 0;

	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
		return 0;
	if (!client_eintr(-1))
		return -errno;
	while (poll(&p, 1, IO_TIMEOUT_S * 1000) < 0 && errno == EINTR)
		;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

static int client_open(void)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)srv.port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_in_range(nclient_fds, 0, sizeof(client_fds) / sizeof(client_fds[0]) - 1);
	client_fds[nclient_fds++] = fd;
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), 0);
	serve_nodelay(fd);
	assert_int_equal(client_connect(fd, &sa), 0);
	return fd;
}

static void client_close(int fd)
{
	for (int i = 0; i < nclient_fds; i++) {
		if (client_fds[i] == fd) {
			client_fds[i] = client_fds[--nclient_fds];
			break;
		}
	}
	close(fd);
}

/* Per-test teardown: close what a failed test left open. */
static int client_close_all(void **state)
{
	(void)state;
	while (nclient_fds)
		client_close(client_fds[0]);
	return 0;
}

static void client_send(int fd, const void *buf, size_t n)
{
	for (size_t done = 0; done < n;) {
		ssize_t k = send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);

		if (client_eintr(k))
			continue;
		assert_true(k > 0);
		done += (size_t)k;
	}
}

static void client_send_str(int fd, const char *s)
{
	client_send(fd, s, strlen(s));
}

/* Read exactly @n bytes and compare them with @want. */
static void client_expect(int fd, const char *want, size_t n)
{
	char *buf = malloc(n);

	assert_non_null(buf);
	for (size_t done = 0; done < n;) {
		ssize_t k = recv(fd, buf + done, n - done, 0);

		if (client_eintr(k))
			continue;
		if (k <= 0)
			fprintf(stderr, "recv after %zu of %zu bytes: %zd (%s)\n", done, n, k,
				k ? strerror(errno) : "EOF");
		assert_true(k > 0);
		done += (size_t)k;
	}
	assert_memory_equal(buf, want, n);
	free(buf);
}

#define EXPECT(fd, lit) client_expect((fd), lit, sizeof(lit) - 1)

/* The server closed its side: the next read is end of file. */
static void client_expect_eof(int fd)
{
	ssize_t k;
	char c;

	while (client_eintr(k = recv(fd, &c, 1, 0)))
		;
	assert_int_equal(k, 0);
}

/* Close with RST instead of FIN, as a client that crashed or timed out. */
static void client_reset(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	client_close(fd);
}

/* A fresh connection gets @req answered with 400, then end of file. */
static void expect_bad(const char *req, size_t len)
{
	int fd = client_open();

	client_send(fd, req, len);
	EXPECT(fd, HTTP_RESPONSE_400);
	client_expect_eof(fd);
	client_close(fd);
}

/* A GET / on a fresh connection is answered: the server is still serving. */
static void expect_serving(void)
{
	int fd = client_open();

	client_send_str(fd, GET);
	EXPECT(fd, HTTP_RESPONSE_200);
	client_close(fd);
}

/* "GET / HTTP/1.1" plus a header padded so the block is @len bytes long. */
static char *padded_get(size_t len)
{
	static const char pre[] = "GET / HTTP/1.1\r\nX-Pad: ", post[] = "\r\n\r\n";
	char *req = malloc(len + 1);

	assert_non_null(req);
	assert_true(len > sizeof(pre) + sizeof(post));
	memcpy(req, pre, sizeof(pre) - 1);
	memset(req + sizeof(pre) - 1, 'a', len - (sizeof(pre) - 1) - (sizeof(post) - 1));
	memcpy(req + len - (sizeof(post) - 1), post, sizeof(post));
	return req;
}

/* ---- HTTP ---- */

static void test_get(void **state)
{
	int fd = client_open();

	(void)state;
	client_send_str(fd, GET);
	EXPECT(fd, HTTP_RESPONSE_200);
	/* A query string is still "/". */
	client_send_str(fd, "GET /?x=1 HTTP/1.1\r\nHost: test\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_200);
	client_send_str(fd, "GET /other HTTP/1.1\r\nHost: test\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_404);
	client_send_str(fd, "DELETE / HTTP/1.1\r\nHost: test\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_404);
	/* One request in pieces. */
	client_send_str(fd, "GET / HT");
	client_send_str(fd, "TP/1.1\r\nHost: te");
	client_send_str(fd, "st\r\n\r");
	client_send_str(fd, "\n");
	EXPECT(fd, HTTP_RESPONSE_200);
	client_close(fd);
}

static void test_pipelined(void **state)
{
	int fd = client_open();

	(void)state;
	client_send_str(fd, GET GET GET);
	EXPECT(fd, HTTP_RESPONSE_200 HTTP_RESPONSE_200 HTTP_RESPONSE_200);
	/* Bodies are skipped, wherever the next request starts. */
	client_send_str(fd, "POST /form HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
			    "GET / HTTP/1.1\r\ncontent-length:0\r\n\r\n"
			    "PUT / HTTP/1.1\r\nContent-Length:  3 \r\n\r\nabc" GET);
	EXPECT(fd, HTTP_RESPONSE_404 HTTP_RESPONSE_200 HTTP_RESPONSE_404 HTTP_RESPONSE_200);
	client_close(fd);
}

/* A body far larger than the server's buffer, then a request behind it. */
static void test_large_body(void **state)
{
	size_t body = 300 * 1000;
	char head[128], *buf = malloc(body);
	int fd = client_open();

	(void)state;
	assert_non_null(buf);
	memset(buf, 'b', body);
	snprintf(head, sizeof(head), "POST / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", body);
	client_send_str(fd, head);
	client_send(fd, buf, body);
	client_send_str(fd, GET);
	EXPECT(fd, HTTP_RESPONSE_404 HTTP_RESPONSE_200);
	client_close(fd);
	free(buf);
}

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"GARBAGE\r\n\r\n",
		"GET /\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.10\r\n\r\n",
		"GET / FTP/1.1\r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\n: no name\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: test\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx",
		"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	};
	char big[128];
	int fd;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad(bad[i], strlen(bad[i]));
	snprintf(big, sizeof(big), "POST / HTTP/1.1\r\nContent-Length: %u\r\n\r\n",
		 HTTP_BODY_MAX + 1);
	expect_bad(big, strlen(big));
	/* A NUL in the request line. */
	expect_bad("GET /\0 HTTP/1.1\r\n\r\n", 19);

	/* Equal duplicate lengths are one length. */
	fd = client_open();
	client_send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab" GET);
	EXPECT(fd, HTTP_RESPONSE_404 HTTP_RESPONSE_200);
	/* The answers before a bad request go out, then 400, then the close. */
	client_send_str(fd, GET GET "BAD\r\n\r\n" GET);
	EXPECT(fd, HTTP_RESPONSE_200 HTTP_RESPONSE_200 HTTP_RESPONSE_400);
	client_expect_eof(fd);
	client_close(fd);
}

static void test_header_limit(void **state)
{
	char *req = padded_get(HTTP_HDR_MAX);
	int fd = client_open();

	(void)state;
	/* Exactly the limit: served, and the connection stays. */
	client_send_str(fd, req);
	EXPECT(fd, HTTP_RESPONSE_200);
	client_send_str(fd, GET);
	EXPECT(fd, HTTP_RESPONSE_200);
	client_close(fd);
	free(req);

	/* One byte over. */
	req = padded_get(HTTP_HDR_MAX + 1);
	expect_bad(req, strlen(req));
	free(req);

	/*
	 * A block that never ends, longer than the server reads at once: the
	 * 400 must reach us although the server closes with our bytes unread.
	 */
	req = padded_get(4 * HTTP_IN_SIZE);
	expect_bad(req, strlen(req) - 4);
	free(req);
}

static void test_connection_close(void **state)
{
	int fd;

	(void)state;
	fd = client_open();
	client_send_str(fd, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_200);
	client_expect_eof(fd);
	client_close(fd);

	/* Requests after the one that asked to close are not answered. */
	fd = client_open();
	client_send_str(fd, GET "GET /x HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n" GET);
	EXPECT(fd, HTTP_RESPONSE_200 HTTP_RESPONSE_404);
	client_expect_eof(fd);
	client_close(fd);

	/* HTTP/1.0 closes unless it asks for keep-alive. */
	fd = client_open();
	client_send_str(fd, "GET / HTTP/1.0\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_200);
	client_expect_eof(fd);
	client_close(fd);

	fd = client_open();
	client_send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_200);
	client_send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
	EXPECT(fd, HTTP_RESPONSE_200);
	client_close(fd);
}

static void test_client_vanishes(void **state)
{
	static const char half[] = "GET / HTTP/1.1\r\nHost: te";
	int fd;

	(void)state;
	/* Half a request, then a reset: the server's read fails with ECONNRESET. */
	fd = client_open();
	client_send_str(fd, half);
	client_reset(fd);
	expect_serving();

	/* Half a request, then EOF: the server closes without an answer. */
	fd = client_open();
	client_send_str(fd, half);
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	client_expect_eof(fd);
	client_close(fd);
	expect_serving();

	/* Half a body, then a reset. */
	fd = client_open();
	client_send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
	EXPECT(fd, HTTP_RESPONSE_404);
	client_reset(fd);
	expect_serving();

	/*
	 * Many requests whose answers we never read, then a reset: the
	 * server's writes fail (EPIPE, ECONNRESET) instead of killing it.
	 */
	for (int round = 0; round < 4; round++) {
		char *many = malloc(1000 * (sizeof(GET) - 1) + 1);

		assert_non_null(many);
		for (int i = 0; i < 1000; i++)
			memcpy(many + i * (sizeof(GET) - 1), GET, sizeof(GET));
		fd = client_open();
		client_send_str(fd, many);
		client_reset(fd);
		free(many);
	}
	expect_serving();
}

static void test_keepalive(void **state)
{
	int fd = client_open();

	(void)state;
	for (int i = 0; i < 100; i++) {
		client_send_str(fd, GET);
		EXPECT(fd, HTTP_RESPONSE_200);
	}
	client_close(fd);
}

/* ---- echo ---- */

static void *echo_driver(void *arg)
{
	return (void *)(intptr_t)echo_load_run(arg);
}

/* The client side of the echo test; 0 if every message came back exact. */
static int echo_client_side(prt_runtime_t *rt, struct echo_load *l)
{
	prt_fiber_attr_t attr;
	prt_fiber_t f;
	void *res = NULL;

	prt_fiber_attr_init(&attr);
	attr.name = "echo-driver";
	if (prt_spawn(rt, &f, &attr, echo_driver, l) || prt_join(f, &res))
		return 1;
	if (l->first_err)
		fprintf(stderr, "echo: %ld connections failed, first: %s\n", l->failed,
			strerror(-l->first_err));
	fprintf(stderr, "echo: %ld messages echoed exactly over %d connections, %ld mismatches\n",
		l->msgs_ok, l->conns, l->mismatches);
	return res || l->failed || l->mismatches || l->msgs_ok != (long)l->conns * l->msgs;
}

static void test_echo_10k(void **state)
{
	struct echo_load l = {
		.addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) },
		.conns = ECHO_CONNS,
		.msgs = 2,
		.min_size = 2048,
		.max_size = 6144,
		.seed = 0x5eed,
	};
	int lfd, status;
	pid_t child;

	(void)state;
	/*
	 * 20,000 fibers: guard-page stacks would take 40,000 of the default
	 * 65,530 mappings; slab stacks take 80.
	 */
	if (serve_raise_nofile(2 * ECHO_CONNS + 100) == 0) {
		/* Both ends of every connection fit in this process. */
		server_start(test_rt_canary(2), echo_conn_fiber);
		l.addr.sin_port = htons((uint16_t)srv.port);
		status = echo_client_side(srv.rt, &l);
		server_stop();
		assert_int_equal(status, 0);
		return;
	}
	/* Else the clients run in a child process: each side needs one end of each. */
	if (serve_raise_nofile(ECHO_CONNS + 100)) {
		fprintf(stderr, "cannot raise RLIMIT_NOFILE to %d\n", ECHO_CONNS + 100);
		skip();
	}
	lfd = serve_listen("127.0.0.1", 0);
	assert_true(lfd >= 0);
	l.addr.sin_port = htons((uint16_t)serve_port(lfd));
	/* Fork before any runtime exists here: the child starts clean. */
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		prt_runtime_config_t cfg;
		prt_runtime_t *rt;
		int rc;

		close(lfd);
		prt_runtime_config_init(&cfg);
		cfg.nworkers = 2;
		cfg.stack_kind = PRT_STACK_CANARY;
		if (prt_runtime_create(&rt, &cfg))
			_exit(2);
		rc = echo_client_side(rt, &l);
		prt_runtime_destroy(rt);
		_exit(rc);
	}
	server_start_fd(test_rt_canary(2), echo_conn_fiber, lfd);
	assert_int_equal(waitpid(child, &status, 0), child);
	server_stop();
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* ---- the example servers stop cleanly on SIGTERM -------------------------------- */

/*
 * The example server a sigterm test started and has not reaped yet. A
 * failed assertion leaves it running, with our stdout: meson would wait
 * for it until the test's timeout. The teardown kills it.
 */
static pid_t sigterm_child;

static int sigterm_teardown(void **state)
{
	(void)state;
	if (sigterm_child > 0) {
		kill(sigterm_child, SIGKILL);
		waitpid(sigterm_child, NULL, 0);
		sigterm_child = 0;
	}
	return 0;
}

#ifdef PRT_TEST_ECHO_SERVER
/*
 * Start @path -p 0 -w 2 with its stderr on a pipe; *@port gets the port it
 * says it listens on. Returns the child's pid; *@errfd its stderr.
 */
static pid_t example_start(const char *path, int *port, int *errfd)
{
	char line[512];
	size_t len = 0;
	int p[2];
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 2);
		execl(path, path, "-p", "0", "-w", "2", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	*port = 0;
	while (!*port && len < sizeof(line) - 1) {
		ssize_t n = read(p[0], line + len, 1);
		const char *at;

		assert_true(n == 1);
		if (line[len++] != '\n')
			continue;
		line[len] = 0;
		if ((at = strstr(line, "listening on 127.0.0.1:")))
			*port = atoi(at + strlen("listening on 127.0.0.1:"));
		len = 0;
	}
	assert_true(*port > 0);
	*errfd = p[0];
	return pid;
}

/* A connected client socket that gives up reading after 20 s. */
static int example_client(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { 20, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/*
 * The server at @path, with three connections open (each answered once:
 * its fiber waits for the next request), gets SIGTERM: it closes every
 * connection (each client reads end of file), says it stopped, and exits
 * with status 0.
 */
static void sigterm_run(const char *path, const char *req, const char *want)
{
	char buf[4096], all[8192] = "";
	int port, errfd, fds[3], status;
	size_t got = 0;
	pid_t pid = example_start(path, &port, &errfd);

	sigterm_child = pid; /* killed by the teardown if an assertion fails */
	for (int i = 0; i < 3; i++) {
		ssize_t n, k = 0;

		fds[i] = example_client(port);
		assert_int_equal(write(fds[i], req, strlen(req)), (ssize_t)strlen(req));
		while ((size_t)k < strlen(want) &&
		       ((n = read(fds[i], buf + k, sizeof(buf) - 1 - (size_t)k)) > 0 || client_eintr(n)))
			if (n > 0)
				k += n;
		buf[k] = 0;
		if (!strstr(buf, want))
			fail_msg("no \"%s\" in the answer \"%s\" (%s)", want, buf,
				 k ? "short" : strerror(errno));
	}
	assert_int_equal(kill(pid, SIGTERM), 0);
	for (int i = 0; i < 3; i++) {
		ssize_t n;

		while (client_eintr(n = read(fds[i], buf, sizeof(buf))))
			;
		assert_int_equal(n, 0); /* closed by the server */
		close(fds[i]);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	sigterm_child = 0;
	for (ssize_t n; got < sizeof(all) - 1 && (n = read(errfd, all + got, sizeof(all) - 1 - got)) > 0;)
		got += (size_t)n;
	close(errfd);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: status %#x, stderr:\n%s", path, status, all);
	assert_non_null(strstr(all, "Terminated: stopping"));
	assert_non_null(strstr(all, "stopped"));
}

static void test_sigterm_echo(void **state)
{
	(void)state;
	sigterm_run(PRT_TEST_ECHO_SERVER, "ping", "ping");
}

static void test_sigterm_http(void **state)
{
	(void)state;
	sigterm_run(PRT_TEST_HTTP_SERVER, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200");
}
#else
static void test_sigterm_echo(void **state)
{
	(void)state;
	skip(); /* built without -Dexamples */
}

static void test_sigterm_http(void **state)
{
	(void)state;
	skip();
}
#endif

int main(void)
{
	const struct CMUnitTest http[] = {
		cmocka_unit_test_teardown(test_get, client_close_all),
		cmocka_unit_test_teardown(test_pipelined, client_close_all),
		cmocka_unit_test_teardown(test_large_body, client_close_all),
		cmocka_unit_test_teardown(test_malformed, client_close_all),
		cmocka_unit_test_teardown(test_header_limit, client_close_all),
		cmocka_unit_test_teardown(test_connection_close, client_close_all),
		cmocka_unit_test_teardown(test_client_vanishes, client_close_all),
		cmocka_unit_test_teardown(test_keepalive, client_close_all),
	};
	const struct CMUnitTest echo[] = {
		cmocka_unit_test(test_echo_10k),
		cmocka_unit_test_teardown(test_sigterm_echo, sigterm_teardown),
		cmocka_unit_test_teardown(test_sigterm_http, sigterm_teardown),
	};
	int failed;

	/* The HTTP code writes with prt_write_all, which can raise SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name("http", http, http_setup, http_teardown);
	failed += cmocka_run_group_tests_name("echo", echo, NULL, NULL);
	return failed;
}
