/* SPDX-License-Identifier: MIT */
/*
 * Echo over TCP, both sides, shared by examples/echo_server.c,
 * examples/echo_client.c and tests/test_http.c.
 *
 * Server: one fiber per connection sends back every byte it receives,
 * until EOF.
 *
 * Client (echo_load_run): C connections, one fiber each, opened in waves
 * and all held open at once; then each sends messages of pseudo-random
 * bytes and sizes and checks the echo byte for byte.
 *
 * Sends use prt_send() with MSG_NOSIGNAL: a peer that resets makes the
 * send fail with -EPIPE instead of raising SIGPIPE, so this code does not
 * depend on the process ignoring the signal.
 */
#ifndef PRT_EXAMPLES_ECHO_CONN_H
#define PRT_EXAMPLES_ECHO_CONN_H

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <proxyrt/proxyrt.h>

#include "serve.h"

#define ECHO_PORT_DEFAULT 7070

/* Server read buffer; on the fiber stack (64 KiB by default). */
#define ECHO_BUF 8192

/*
 * The client sends a message in pieces of at most this many bytes and
 * reads each piece back before sending the next. If it sent a large
 * message whole first, the server's echo would fill our receive buffer
 * and its send buffer, the server would stop reading, and both sides
 * would block in send for good. One piece fits the default buffers.
 */
#define ECHO_PIECE 16384

/* Connections opened before waiting for them all to be established. */
#define ECHO_WAVE 1000

/* A byte differed (echo_exchange); errors are negative. */
#define ECHO_MISMATCH 1

/* Send all @n bytes. Returns @n or -errno. */
static inline ssize_t echo_send_all(int fd, const void *buf, size_t n)
{
	size_t done = 0;

	while (done < n) {
		ssize_t k = prt_send(fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);

		if (k <= 0)
			return k ? k : -EPIPE;
		done += (size_t)k;
	}
	return (ssize_t)n;
}

/* serve_loop.conn for echo: the fiber body of one server connection. */
static inline void *echo_conn_fiber(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[ECHO_BUF];
	ssize_t n;

	while ((n = prt_recv(fd, buf, sizeof(buf), 0)) > 0)
		if (echo_send_all(fd, buf, (size_t)n) < 0)
			break;
	prt_close(fd);
	return NULL;
}

/* xorshift64*: payload bytes and sizes, reproducible from a seed. */
static inline uint64_t echo_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/*
 * A message size in [@min, @max], spread over orders of magnitude: a
 * uniform draw shifted right by 0..16 bits, so 10-byte and 60 KiB
 * messages both come up.
 */
static inline size_t echo_size(uint64_t *s, size_t min, size_t max)
{
	uint64_t r = echo_rand(s);

	return min + (size_t)(((r >> 8) % (max - min + 1)) >> (r % 17));
}

/*
 * Send @len pseudo-random bytes from @rng on @fd and check the echo,
 * piece by piece, using @tx and @rx of ECHO_PIECE bytes each. Returns 0,
 * ECHO_MISMATCH, or -errno (-EPIPE: the server closed early).
 */
static inline int echo_exchange(int fd, uint64_t *rng, char *tx, char *rx, size_t len)
{
	int ret = 0;

	while (len) {
		size_t n = len < ECHO_PIECE ? len : ECHO_PIECE;
		ssize_t k;

		for (size_t i = 0; i < n; i += 8) {
			uint64_t r = echo_rand(rng);

			memcpy(tx + i, &r, n - i < 8 ? n - i : 8);
		}
		k = echo_send_all(fd, tx, n);
		if (k < 0)
			return (int)k;
		k = prt_read_all(fd, rx, n, 0);
		if (k < 0)
			return (int)k;
		if ((size_t)k < n)
			return -EPIPE;
		if (memcmp(tx, rx, n))
			ret = ECHO_MISMATCH; /* the stream is still in step: carry on */
		len -= n;
	}
	return ret;
}

/* A load of echo clients: set the first block, then echo_load_run(). */
struct echo_load {
	struct sockaddr_in addr;	/* the server */
	int conns;			/* connections, all open at once */
	int msgs;			/* messages per connection */
	size_t min_size, max_size;	/* message sizes, 1 <= min <= max */
	uint64_t seed;

	/* Results; under m while the load runs. */
	long msgs_ok;			/* messages echoed exactly */
	long mismatches;		/* messages that came back different */
	long failed;			/* connections ended by an error */
	uint64_t bytes;			/* bytes of the exact messages */
	int first_err;			/* the first error, -errno; 0 if none */

	/* Private: the barrier that holds every connection open at once. */
	prt_mutex_t m;
	prt_cond_t arrived_cv;		/* the driver waits for arrivals */
	prt_cond_t go_cv;		/* the clients wait for go */
	int spawned, arrived, go;	/* m */
};

struct echo_client {
	struct echo_load *l;
	int index;
	prt_fiber_t f;
};

/* Connected (or failed to): wait until every connection of the load is. */
static inline void echo_arrive(struct echo_load *l)
{
	prt_mutex_lock(&l->m);
	if (++l->arrived == l->spawned)
		prt_cond_signal(&l->arrived_cv);
	while (!l->go)
		prt_cond_wait(&l->go_cv, &l->m);
	prt_mutex_unlock(&l->m);
}

static inline void echo_client_done(struct echo_load *l, long ok, long bad, uint64_t bytes,
				    int err)
{
	prt_mutex_lock(&l->m);
	l->msgs_ok += ok;
	l->mismatches += bad;
	l->bytes += bytes;
	if (err) {
		l->failed++;
		if (!l->first_err)
			l->first_err = err;
	}
	prt_mutex_unlock(&l->m);
}

static inline void *echo_client_fiber(void *arg)
{
	struct echo_client *cl = arg;
	struct echo_load *l = cl->l;
	uint64_t rng = (l->seed ^ ((uint64_t)cl->index * 0x9e3779b97f4a7c15ull)) | 1;
	size_t piece = l->max_size < ECHO_PIECE ? l->max_size : ECHO_PIECE;
	long ok = 0, bad = 0;
	uint64_t bytes = 0;
	char *buf = NULL;
	int fd, err;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	err = fd < 0 ? -errno : prt_connect(fd, (struct sockaddr *)&l->addr, sizeof(l->addr));
	echo_arrive(l);
	if (!err) {
		serve_nodelay(fd);
		buf = malloc(2 * piece);
		if (!buf)
			err = -ENOMEM;
	}
	for (int i = 0; !err && i < l->msgs; i++) {
		size_t n = echo_size(&rng, l->min_size, l->max_size);
		int r = echo_exchange(fd, &rng, buf, buf + piece, n);

		if (r < 0) {
			err = r;
		} else if (r) {
			bad++;
		} else {
			ok++;
			bytes += n;
		}
	}
	free(buf);
	if (fd >= 0)
		prt_close(fd);
	echo_client_done(l, ok, bad, bytes, err);
	return NULL;
}

/*
 * Run the load @l: start l->conns client fibers in waves of ECHO_WAVE
 * (each wave connected before the next starts, so the listen queue never
 * holds more than a wave and no SYN is dropped), let them all exchange
 * their messages once every one is connected, wait for them. Returns 0
 * with the results in @l, or -errno if not every client fiber could be
 * started (those that were have run).
 * Context: a fiber.
 */
static inline int echo_load_run(struct echo_load *l)
{
	struct echo_client *cl = calloc((size_t)l->conns, sizeof(*cl));
	prt_runtime_t *rt = prt_runtime_self();
	int err = cl ? 0 : -ENOMEM;

	prt_mutex_init(&l->m, NULL);
	prt_cond_init(&l->arrived_cv);
	prt_cond_init(&l->go_cv);
	l->spawned = l->arrived = l->go = 0;
	l->msgs_ok = l->mismatches = l->failed = 0;
	l->bytes = 0;
	l->first_err = 0;
	for (int i = 0; !err && i < l->conns; i += ECHO_WAVE) {
		int k = 0;

		for (; !err && k < ECHO_WAVE && i + k < l->conns; k++) {
			cl[i + k].l = l;
			cl[i + k].index = i + k;
			err = prt_spawn(rt, &cl[i + k].f, NULL, echo_client_fiber, &cl[i + k]);
		}
		prt_mutex_lock(&l->m);
		l->spawned += err ? k - 1 : k;
		while (l->arrived < l->spawned)
			prt_cond_wait(&l->arrived_cv, &l->m);
		prt_mutex_unlock(&l->m);
	}
	prt_mutex_lock(&l->m);
	l->go = 1;
	prt_cond_broadcast(&l->go_cv);
	prt_mutex_unlock(&l->m);
	for (int i = 0; i < l->spawned; i++)
		prt_join(cl[i].f, NULL);
	free(cl);
	prt_mutex_destroy(&l->m);
	prt_cond_destroy(&l->arrived_cv);
	prt_cond_destroy(&l->go_cv);
	return err;
}

#endif
