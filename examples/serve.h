/* SPDX-License-Identifier: MIT */
/*
 * Server plumbing shared by the example servers (http_server.c,
 * echo_server.c), bench/proxyrt_bench.c (`http raw`) and the tests: a
 * listening socket, an accept loop that gives every connection a detached
 * fiber of its own, and the body of a server's main(), which stops
 * cleanly on SIGINT or SIGTERM: a fiber reads them from a signalfd,
 * cancels the accept loop and every connection fiber (prt_cancel: their
 * blocked calls return -ECANCELED, and each closes its connection), and
 * waits for them with a wait group before the runtime is destroyed.
 *
 * Header-only, like bench/inversion.h: each program compiles its own copy.
 * IPv4 only, to keep the examples short.
 */
#ifndef PRT_EXAMPLES_SERVE_H
#define PRT_EXAMPLES_SERVE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <proxyrt/proxyrt.h>

/*
 * Listen backlog. Load generators open their connections in one burst
 * (wrk -c, the 10,000-connection echo test); a short queue drops SYNs and
 * the dropped clients wait a full second for the retransmit. The kernel
 * caps it at net.core.somaxconn.
 */
#define SERVE_BACKLOG 4096

/* Pause after running out of fds or memory in accept, before trying again. */
#define SERVE_BACKOFF_NS (10u * 1000u * 1000u)

/*
 * One accept loop (serve_accept_loop). @conn is the body of the fiber
 * started for each accepted connection; it gets the fd as
 * (void *)(intptr_t)fd, owns it and must prt_close() it.
 */
struct serve_conn;

struct serve_loop {
	int fd;				/* listening socket; the caller closes it */
	void *(*conn)(void *fd);	/* connection fiber body */
	atomic_int stop;		/* set by serve_stop() and serve_cancel_all() */
	int err;			/* after the loop: 0 if stopped, else why it ended */
	/*
	 * The connection fibers, for serve_cancel_all(): each is counted in
	 * @conns (prt_waitgroup_spawn) and is on the list @head under @lock
	 * while it runs; @closing once serve_cancel_all() has begun.
	 */
	prt_waitgroup_t conns;
	prt_mutex_t lock;
	struct serve_conn *head;
	int closing;
};

/* A connection fiber's entry on serve_loop.head, on its own stack. */
struct serve_conn {
	struct serve_conn *next, **pprev;
	prt_fiber_t fiber;
	struct serve_loop *l;
	int fd;
};

static inline void serve_loop_init(struct serve_loop *l, int fd, void *(*conn)(void *))
{
	l->fd = fd;
	l->conn = conn;
	atomic_init(&l->stop, 0);
	l->err = 0;
	prt_waitgroup_init(&l->conns);
	prt_mutex_init(&l->lock, NULL);
	l->head = NULL;
	l->closing = 0;
}

/*
 * The fiber of one connection: on the list while it runs @l->conn, which
 * owns the fd. A connection that arrives once serve_cancel_all() began
 * is closed at once. Its end counts it done in @l->conns (the spawn).
 */
static inline void *serve_conn_main(void *arg)
{
	struct serve_conn c = *(struct serve_conn *)arg;
	struct serve_loop *l = c.l;

	free(arg);
	c.fiber = prt_self();
	prt_mutex_lock(&l->lock); /* never contended for long: not cancelled yet, or it says so */
	if (l->closing) {
		prt_mutex_unlock(&l->lock);
		prt_close(c.fd);
		return NULL;
	}
	c.next = l->head;
	c.pprev = &l->head;
	if (l->head)
		l->head->pprev = &c.next;
	l->head = &c;
	prt_mutex_unlock(&l->lock);
	l->conn((void *)(intptr_t)c.fd);
	/* Cleanup waits for the lock: a cancel must not end it (sticky flag). */
	prt_cancel_clear();
	prt_mutex_lock(&l->lock);
	*c.pprev = c.next;
	if (c.next)
		c.next->pprev = c.pprev;
	prt_mutex_unlock(&l->lock);
	return NULL;
}

/* Start the fiber of connection @fd: 0 or -errno (@fd is then still ours). */
static inline int serve_conn_spawn(struct serve_loop *l, prt_runtime_t *rt,
				   const prt_fiber_attr_t *attr, int fd)
{
	struct serve_conn *c = malloc(sizeof(*c));
	int err;

	if (!c)
		return -ENOMEM;
	c->l = l;
	c->fd = fd;
	err = prt_waitgroup_spawn(&l->conns, rt, NULL, attr, serve_conn_main, c);
	if (err)
		free(c);
	return err;
}

/*
 * A TCP socket listening on @addr (dotted IPv4) port @port (0: any free
 * port, see serve_port), with SO_REUSEADDR so a restarted server does not
 * wait for the old one's TIME_WAIT connections. Returns the fd or -errno.
 */
static inline int serve_listen(const char *addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int one = 1, fd, err;

	if (port < 0 || port > 65535 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, SERVE_BACKLOG)) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* The local port of socket @fd, or -errno. */
static inline int serve_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);

	if (getsockname(fd, (struct sockaddr *)&sa, &len))
		return -errno;
	return ntohs(sa.sin_port);
}

/*
 * Small request/response exchanges: send each answer at once instead of
 * holding it back until the previous segment is acknowledged (Nagle),
 * which with the peer's delayed ACK costs up to 40 ms. Go's net package
 * does the same for every TCP connection.
 */
static inline void serve_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * Make the soft RLIMIT_NOFILE at least @want (0: the hard limit), raising
 * the hard limit too when @want is above it, which needs
 * CAP_SYS_RESOURCE. Returns 0 or -errno (limits unchanged).
 */
static inline int serve_raise_nofile(rlim_t want)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (!want)
		want = rl.rlim_max;
	if (rl.rlim_cur >= want)
		return 0;
	rl.rlim_cur = want;
	if (rl.rlim_max < want)
		rl.rlim_max = want;
	return setrlimit(RLIMIT_NOFILE, &rl) ? -errno : 0;
}

/*
 * accept(2) errors that leave the listening socket usable: the pending
 * connection failed before we took it (the network errors accept(2) says
 * to treat like EAGAIN), or we ran out of fds or memory for a moment.
 */
static inline int serve_accept_retry(int err)
{
	switch (-err) {
	case EAGAIN: case EINTR: case ECONNABORTED: case EPROTO: case ENETDOWN:
	case ENOPROTOOPT: case EHOSTDOWN: case ENONET: case EHOSTUNREACH:
	case EOPNOTSUPP: case ENETUNREACH:
		return 1;
	case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
		/* Retrying at once would spin: the fds free up only as others close. */
		prt_sleep_ns(SERVE_BACKOFF_NS);
		return 1;
	default:
		return 0;
	}
}

/*
 * Fiber body: accept connections on @arg (a struct serve_loop) and start a
 * detached @conn fiber for each, until serve_stop() or an accept error
 * that is not transient (then recorded in ->err). The connection fibers
 * are not waited for.
 */
static inline void *serve_accept_loop(void *arg)
{
	struct serve_loop *l = arg;
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_attr_t attr;

	prt_fiber_attr_init(&attr);
	attr.flags = PRT_FIBER_DETACHED;
	attr.name = "conn";
	/* Acquire pairs with the release store in serve_stop(). */
	while (!atomic_load_explicit(&l->stop, memory_order_acquire)) {
		int fd = prt_accept(l->fd, NULL, NULL, SOCK_CLOEXEC);
		int err;

		if (fd < 0) {
			if (fd != -ECANCELED && serve_accept_retry(fd))
				continue;
			if (!atomic_load_explicit(&l->stop, memory_order_acquire))
				l->err = fd;
			break;
		}
		serve_nodelay(fd);
		err = serve_conn_spawn(l, rt, &attr, fd);
		if (err) {
			/* Refuse this client rather than stop serving the others. */
			prt_close(fd);
			if (err == -ESHUTDOWN) {
				l->err = err;
				break;
			}
			prt_sleep_ns(SERVE_BACKOFF_NS);
		}
	}
	return NULL;
}

/*
 * Make serve_accept_loop() return; the listening socket stays open.
 * shutdown(2) of a listening socket stops it listening and wakes a
 * pending accept, which then fails with EINVAL; that works for a blocked
 * accept(2), an io_uring accept and an epoll wait alike.
 * Context: any thread.
 */
static inline void serve_stop(struct serve_loop *l)
{
	/* Release pairs with the acquire loads in serve_accept_loop(). */
	atomic_store_explicit(&l->stop, 1, memory_order_release);
	shutdown(l->fd, SHUT_RD);
}

/*
 * Stop serving: the accept loop (fiber @accept) and every connection
 * fiber are cancelled (their blocked calls return -ECANCELED; each
 * connection closes its fd and ends), then wait until every connection
 * fiber has ended. Context: a fiber (a scheduling point).
 */
static inline void serve_cancel_all(struct serve_loop *l, prt_fiber_t accept)
{
	/* Release pairs with the acquire loads in serve_accept_loop(). */
	atomic_store_explicit(&l->stop, 1, memory_order_release);
	prt_cancel(accept);
	/* A connection the loop still starts sees @closing and closes at once. */
	prt_mutex_lock(&l->lock);
	l->closing = 1;
	for (struct serve_conn *c = l->head; c; c = c->next)
		prt_cancel(c->fiber);
	prt_mutex_unlock(&l->lock);
	prt_waitgroup_wait(&l->conns);
}

/* What the signal fiber of serve_forever() needs. */
struct serve_sig {
	int sfd;               /* a signalfd for SIGINT and SIGTERM */
	struct serve_loop *l;
	prt_fiber_t accept;
	const char *name;
};

/*
 * The fiber that waits for SIGINT or SIGTERM, read from a signalfd (a
 * fiber read: the worker goes on running the others meanwhile), then
 * stops the server: serve_cancel_all().
 */
static inline void *serve_sig_fiber(void *arg)
{
	struct serve_sig *s = arg;
	struct signalfd_siginfo si;
	ssize_t n;

	do
		n = prt_read(s->sfd, &si, sizeof(si));
	while (n == -EINTR);
	if (n == (ssize_t)sizeof(si))
		fprintf(stderr, "%s: %s: stopping\n", s->name, strsignal((int)si.ssi_signo));
	prt_cancel_clear(); /* cancelled by serve_forever (accept failed): stop all the same */
	serve_cancel_all(s->l, s->accept);
	return NULL;
}

/*
 * Block SIGINT and SIGTERM in the calling thread (and so in the workers
 * a runtime created afterwards starts) and return a signalfd that reads
 * them, or -errno.
 */
static inline int serve_sigfd(void)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -EINVAL;
	fd = signalfd(-1, &set, SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/*
 * Serve listening socket @lfd with @conn fibers on a new runtime of
 * @nworkers workers (0: one per core) until SIGINT or SIGTERM (exit
 * status 0, every connection closed and the runtime destroyed) or until
 * accepting fails (1). Ignores SIGPIPE: a client that goes away while we
 * write to it must cost only its own connection (writes then fail with
 * -EPIPE). Says on stderr where it listens, as @name.
 * Context: a plain thread; blocks it.
 */
static inline int serve_forever(const char *name, int lfd, int nworkers, void *(*conn)(void *))
{
	static const char *const backend[] = { [PRT_IO_URING] = "io_uring", [PRT_IO_EPOLL] = "epoll" };
	prt_runtime_config_t cfg;
	struct serve_loop loop;
	struct serve_sig sig = { .l = &loop, .name = name };
	struct sockaddr_in sa = { 0 };
	socklen_t salen = sizeof(sa);
	char addr[INET_ADDRSTRLEN] = "?";
	prt_runtime_t *rt;
	prt_fiber_t sf;
	int err, io;

	signal(SIGPIPE, SIG_IGN);
	(void)serve_raise_nofile(0);
	sig.sfd = serve_sigfd(); /* before the runtime: its workers block them too */
	if (sig.sfd < 0) {
		fprintf(stderr, "%s: signalfd: %s\n", name, strerror(-sig.sfd));
		return 1;
	}
	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	err = prt_runtime_create(&rt, &cfg);
	if (err) {
		fprintf(stderr, "%s: prt_runtime_create: %s\n", name, prt_strerror(err));
		return 1;
	}
	serve_loop_init(&loop, lfd, conn);
	err = prt_spawn(rt, &sig.accept, NULL, serve_accept_loop, &loop);
	if (!err)
		err = prt_spawn(rt, &sf, NULL, serve_sig_fiber, &sig);
	if (err) {
		fprintf(stderr, "%s: prt_spawn: %s\n", name, prt_strerror(err));
		return 1;
	}
	if (!getsockname(lfd, (struct sockaddr *)&sa, &salen))
		inet_ntop(AF_INET, &sa.sin_addr, addr, sizeof(addr));
	io = prt_runtime_io_backend(rt);
	fprintf(stderr, "%s: listening on %s:%d, workers=%d io=%s\n", name, addr,
		ntohs(sa.sin_port), prt_runtime_nworkers(rt),
		io == PRT_IO_URING || io == PRT_IO_EPOLL ? backend[io] : "?");
	if (prt_runtime_notice(rt))
		fprintf(stderr, "%s: %s\n", name, prt_runtime_notice(rt));
	/* The accept loop ends when the signal fiber cancels it, or when accepting fails. */
	prt_join(sig.accept, NULL);
	if (loop.err)
		prt_cancel(sf); /* no signal came: stop the connections all the same */
	/* It returns once every connection has ended. */
	prt_join(sf, NULL);
	if (loop.err) {
		fprintf(stderr, "%s: accept: %s\n", name, strerror(-loop.err));
		return 1;
	}
	close(sig.sfd);
	close(lfd);
	prt_mutex_destroy(&loop.lock);
	prt_waitgroup_destroy(&loop.conns);
	err = prt_runtime_destroy(rt);
	fprintf(stderr, "%s: stopped\n", name);
	return err ? 1 : 0;
}

/* Parse @s as an integer in [0, @max] into *@out. Returns 1, or 0 if it is not one. */
static inline int serve_arg_int(const char *s, long max, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return 0;
	*out = (int)v;
	return 1;
}

/*
 * main() of the example servers: `NAME [-p PORT] [-w WORKERS] [-a ADDR]`
 * (defaults @port, one worker per core, 127.0.0.1), then serve_forever().
 */
static inline int serve_main(int argc, char **argv, const char *name, int port,
			     void *(*conn)(void *))
{
	const char *addr = "127.0.0.1";
	int workers = 0, opt, lfd;

	while ((opt = getopt(argc, argv, "p:w:a:")) != -1) {
		if (opt == 'a')
			addr = optarg;
		else if (!(opt == 'p' && serve_arg_int(optarg, 65535, &port)) &&
			 !(opt == 'w' && serve_arg_int(optarg, PRT_MAX_WORKERS, &workers)))
			goto usage;
	}
	if (optind != argc)
		goto usage;
	lfd = serve_listen(addr, port);
	if (lfd < 0) {
		fprintf(stderr, "%s: listen on %s:%d: %s\n", name, addr, port, strerror(-lfd));
		return 1;
	}
	return serve_forever(name, lfd, workers, conn);
usage:
	fprintf(stderr, "usage: %s [-p PORT] [-w WORKERS] [-a ADDR]\n", name);
	return 2;
}

#endif
