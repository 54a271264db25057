/* SPDX-License-Identifier: MIT */
/*
 * echo_client: load and check an echo server. Opens CONNS connections,
 * one fiber each, all held open at once; each sends MSGS messages of
 * pseudo-random bytes, 1 byte to 64 KiB, and checks the echo byte for
 * byte (examples/echo_conn.h). Prints a summary; exits 1 if any message
 * came back different or any connection failed.
 *
 *   echo_client [-p PORT] [-c CONNS] [-n MSGS_PER_CONN] [-a ADDR] [-s SEED]
 *                defaults 7070, 100 connections, 100 messages, 127.0.0.1, a seed from the clock
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "echo_conn.h"

#define MSG_MAX (64 * 1024)

static void *driver(void *arg)
{
	return (void *)(intptr_t)echo_load_run(arg);
}

static int usage(void)
{
	fprintf(stderr, "usage: echo_client [-p PORT] [-c CONNS] [-n MSGS_PER_CONN] [-a ADDR] "
			"[-s SEED]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct echo_load l = { .conns = 100, .msgs = 100, .min_size = 1, .max_size = MSG_MAX };
	const char *addr = "127.0.0.1";
	int port = ECHO_PORT_DEFAULT, opt, err;
	prt_runtime_t *rt;
	prt_fiber_t f;
	uint64_t t0;
	void *res;
	double s;

	l.seed = prt_now_ns();
	while ((opt = getopt(argc, argv, "p:c:n:a:s:")) != -1) {
		if (opt == 'a')
			addr = optarg;
		else if (opt == 's')
			l.seed = strtoull(optarg, NULL, 0);
		else if (!(opt == 'p' && serve_arg_int(optarg, 65535, &port)) &&
			 !(opt == 'c' && serve_arg_int(optarg, 1 << 24, &l.conns)) &&
			 !(opt == 'n' && serve_arg_int(optarg, INT32_MAX, &l.msgs)))
			return usage();
	}
	if (optind != argc || l.conns < 1)
		return usage();
	l.addr.sin_family = AF_INET;
	l.addr.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &l.addr.sin_addr) != 1)
		return usage();
	/* One fd per connection, plus the runtime's own. */
	err = serve_raise_nofile((rlim_t)l.conns + 64);
	if (err)
		fprintf(stderr, "echo_client: RLIMIT_NOFILE for %d connections: %s\n", l.conns,
			strerror(-err));

	err = prt_runtime_create(&rt, NULL);
	if (err) {
		fprintf(stderr, "echo_client: prt_runtime_create: %s\n", prt_strerror(err));
		return 1;
	}
	t0 = prt_now_ns();
	if ((err = prt_spawn(rt, &f, NULL, driver, &l)) || (err = prt_join(f, &res))) {
		fprintf(stderr, "echo_client: %s\n", prt_strerror(err));
		return 1;
	}
	s = (double)(prt_now_ns() - t0) / 1e9;
	prt_runtime_destroy(rt);

	printf("echo_client: %d connections x %d messages to %s:%d (seed %" PRIu64 "): "
	       "%ld ok, %ld mismatched, %ld connections failed; %" PRIu64 " bytes in %.2f s\n",
	       l.conns, l.msgs, addr, port, l.seed, l.msgs_ok, l.mismatches, l.failed, l.bytes, s);
	if (l.first_err)
		fprintf(stderr, "echo_client: first error: %s\n", strerror(-l.first_err));
	if (res)
		fprintf(stderr, "echo_client: starting clients: %s\n",
			prt_strerror((int)(intptr_t)res));
	return l.mismatches || l.failed || res ? 1 : 0;
}
