/* SPDX-License-Identifier: MIT */
/*
 * floors: what W3 and W6 cost on this machine with no runtime at all, so
 * proxyrt's figures can be read against the machine's floor as well as
 * against the peers (README, "Benchmarks").
 *
 *   floors mutex THREADS T K IN_NS OUT_NS
 *       W3's loop (lock; counter++; busy IN; unlock; busy OUT), T*K
 *       operations split over THREADS plain threads taking a bare
 *       test-and-test-and-set spinlock: one atomic to lock, one store to
 *       unlock, no queue, no fairness. Nothing that also has to block
 *       can do better.
 *   floors http PORT single|multishot
 *       W6's server as a bare io_uring loop on one thread: no fibers, no
 *       scheduler. `single` re-arms one recv per request, as proxyrt's
 *       prt_recv() does; `multishot` keeps one multishot recv per
 *       connection on a provided-buffer ring. Serves until killed.
 *   floors hogwake same|cross [ROUNDS]
 *       W7's wake-up with no runtime: a plain thread spins on the LCG and
 *       is interrupted by a signal every 1 ms, as proxyrt's preemption
 *       interrupts a hog. same: its own POSIX timer (SIGEV_THREAD_ID) at
 *       each deadline; delay = deadline to its handler running (proxyrt's
 *       timer watch). cross: the spinner on the first allowed CPU, a
 *       thread on the second sleeps to each deadline and pthread_sigqueue()s
 *       it; delay = just before the send to the handler (proxyrt's kick).
 *       What the kernel and the machine take before any runtime code runs.
 *   floors pingpong [N]
 *       W5's physical limit: two plain threads pinned to the first two
 *       allowed CPUs pass a turn word back and forth N times, each
 *       spinning until the word is its own (one cache line moving
 *       between the cores and back per round trip; no sleeping, no
 *       queue, no lock). proxyrt's `xcore pinned` round trip (a mutex,
 *       a condvar wait and signal on each side, both workers spinning)
 *       is read against it.
 *   floors spincond [N]
 *       W5's `xcore pinned` loop with the least a mutex and a condvar
 *       can be: the same two pinned threads, a test-and-test-and-set
 *       spinlock, a condvar that is a sequence count (a signal adds one,
 *       a waiter spins until it changes: no queue, no sleep, no
 *       priority), and the turn, each on its own cache line as separate
 *       objects are. Where it stands against `pingpong` is what this
 *       shape costs on the machine beyond one moving line.
 *   floors spinline [N]
 *       spincond with the lock, the count and the turn packed into one
 *       cache line: the least any mutex-and-condvar round trip of this
 *       shape can cost, whatever its implementation (proxyrt's mutex and
 *       condvar are 40 and 48 bytes: with a turn beside them they span
 *       two or three lines, as spincond's do).
 *   floors spinslot [N]
 *       spincond whose condvar knows its waiters, as proxyrt's did until
 *       session 38 (its slots; docs/design.md, section 6, "A condvar's
 *       spinners"): the condvar is a lock and a slot
 *       per side on one line. A wait takes the condvar's lock and marks
 *       its slot, releases the mutex and polls the slot; a signal takes
 *       the lock and marks the other side's slot woken; the woken side
 *       tries the mutex once (if taken, it frees its slot under the lock
 *       and spins for the mutex), and else frees the slot at its own next
 *       signal. What `xcore pinned`'s protocol cost with no runtime.
 *   floors spinreg [N]
 *       spinslot with the waiter's mark on the mutex's line, beside its
 *       lock word, and a condvar that is spincond's count: a wait marks
 *       itself there (it holds the lock, so the line is its own), a
 *       signal reads the marks (holding the lock too) and adds to the
 *       count only if the other side is marked, and the woken side clears
 *       its mark once it holds the lock again. The waiter then writes no
 *       line that does not move anyway: the least a condvar that knows its
 *       waiters can cost, against spinslot's.
 *
 * Lines use the peers' format with peer=floor.
 */
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "inversion.h" /* bench_spin, bench_calibrate, iters_for_ns */

static __attribute__((noreturn)) void usage(void)
{
	fprintf(stderr, "usage: floors mutex THREADS T K IN_NS OUT_NS\n"
			"       floors http PORT single|multishot\n"
			"       floors hogwake same|cross [ROUNDS]\n"
			"       floors pingpong [N]\n"
			"       floors spincond [N]\n"
			"       floors spinline [N]\n"
			"       floors spinslot [N]\n"
			"       floors spinreg [N]\n"
			"counts are >= 1, ROUNDS >= 10; PORT 1..65535; T*K a multiple of THREADS\n");
	exit(2);
}

/*
 * Argument @what, @s, as a decimal integer in [@min, @max], else a usage
 * error: checked before any narrowing (`http 70000` listened on 4464).
 */
static long arg_range(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	/* strtol() skips leading spaces and takes a '+': neither is a number here */
	if ((*s != '-' && (*s < '0' || *s > '9')) || errno || *end || end == s || v < min || v > max) {
		fprintf(stderr, "floors: %s: '%s' is not an integer in %ld..%ld\n", what, s, min, max);
		usage();
	}
	return v;
}

/* ------------------------------------------------------------------ W3 */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

struct spin_args {
	atomic_int lock;
	uint64_t counter;
	long k;
	uint64_t in_it, out_it;
	_Atomic uint64_t sink;
};

static void *spin_body(void *arg)
{
	struct spin_args *a = arg;
	uint64_t x = (uint64_t)(uintptr_t)&x;

	for (long i = 0; i < a->k; i++) {
		for (;;) {
			int z = 0;

			if (atomic_compare_exchange_weak_explicit(&a->lock, &z, 1, memory_order_acquire,
								  memory_order_relaxed))
				break;
			while (atomic_load_explicit(&a->lock, memory_order_relaxed))
				cpu_relax();
		}
		a->counter++;
		x = bench_spin(a->in_it, x);
		atomic_store_explicit(&a->lock, 0, memory_order_release);
		x = bench_spin(a->out_it, x);
	}
	atomic_fetch_add(&a->sink, x);
	return NULL;
}

static int floor_mutex(int argc, char **argv)
{
	struct spin_args a = { 0 };
	long threads, t, k, in_ns, out_ns, ops;
	pthread_t *th;
	uint64_t t0, el, expect;
	double nspi;
	cpu_set_t set;

	if (argc != 7)
		usage();
	threads = arg_range(argv[2], "THREADS", 1, LONG_MAX);
	t = arg_range(argv[3], "T", 1, LONG_MAX);
	k = arg_range(argv[4], "K", 1, LONG_MAX);
	in_ns = arg_range(argv[5], "IN_NS", 0, LONG_MAX);
	out_ns = arg_range(argv[6], "OUT_NS", 0, LONG_MAX);
	if (__builtin_mul_overflow(t, k, &ops)) {
		fprintf(stderr, "floors: T*K (%ld*%ld operations) overflows\n", t, k);
		usage();
	}
	if (ops % threads) {
		fprintf(stderr, "floors: T*K must divide among THREADS\n");
		usage();
	}
	a.k = ops / threads;
	th = calloc((size_t)threads, sizeof(*th));
	if (!th) {
		fprintf(stderr, "floors: out of memory for %ld thread handles\n", threads);
		return 1;
	}
	nspi = bench_calibrate();
	a.in_it = iters_for_ns((double)in_ns, nspi);
	a.out_it = iters_for_ns((double)out_ns, nspi);
	t0 = prt_now_ns();
	for (long i = 0; i < threads; i++)
		if (pthread_create(&th[i], NULL, spin_body, &a)) {
			fprintf(stderr, "floors: pthread_create failed\n");
			return 1;
		}
	for (long i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	el = prt_now_ns() - t0;
	expect = (uint64_t)ops;
	printf("peer=floor workload=mutex variant=spin%ld ops_per_sec=%.0f ops=%llu elapsed_s=%.3f "
	       "T=%ld K=%ld in_ns=%ld out_ns=%ld spin_ns_per_iter=%.3f counter_ok=%d cpus=%d\n",
	       threads, (double)expect / ((double)el / 1e9), (unsigned long long)expect,
	       (double)el / 1e9, t, k, in_ns, out_ns, nspi, a.counter == expect,
	       sched_getaffinity(0, sizeof(set), &set) ? -1 : CPU_COUNT(&set));
	free(th);
	return a.counter == expect ? 0 : 1;
}

/* ------------------------------------------------------------------ W6 */

#define RESP "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"
#define RESP_LEN (sizeof(RESP) - 1)
#define FL_BUFS 1024u  /* provided buffers (multishot) */
#define FL_BUF_SZ 2048u
#define FL_PIPE 16     /* most pipelined answers sent at once */

enum { FL_ACCEPT = 1, FL_RECV, FL_SEND };

struct fl_conn {
	int fd;
	size_t have;             /* bytes of an unfinished request kept in @in */
	char in[FL_BUF_SZ];      /* single: the recv buffer */
	char out[FL_PIPE * RESP_LEN];
};

struct fl_srv {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char *bufs;
	bool multishot;
	int lfd;
};

static struct io_uring_sqe *fl_sqe(struct fl_srv *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

static void fl_tag(struct io_uring_sqe *sqe, int kind, struct fl_conn *c)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | (uint64_t)kind);
}

static void fl_accept(struct fl_srv *s)
{
	struct io_uring_sqe *sqe = fl_sqe(s);

	io_uring_prep_accept(sqe, s->lfd, NULL, NULL, 0);
	fl_tag(sqe, FL_ACCEPT, NULL);
}

static void fl_recv(struct fl_srv *s, struct fl_conn *c)
{
	struct io_uring_sqe *sqe = fl_sqe(s);

	if (s->multishot) {
		io_uring_prep_recv(sqe, c->fd, NULL, 0, 0);
		sqe->ioprio |= IORING_RECV_MULTISHOT;
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 0;
	} else {
		io_uring_prep_recv(sqe, c->fd, c->in + c->have, sizeof(c->in) - c->have, 0);
	}
	fl_tag(sqe, FL_RECV, c);
}

/*
 * Count complete requests (up to an empty line) in @p, carrying a
 * partial one over in c->in; answer them with one send.
 */
static void fl_answer(struct fl_srv *s, struct fl_conn *c, const char *p, size_t n)
{
	struct io_uring_sqe *sqe;
	size_t k = 0, start = 0, len = 0;

	if (p != c->in) {
		if (c->have + n > sizeof(c->in))
			n = sizeof(c->in) - c->have; /* a floor, not a parser: clip */
		memcpy(c->in + c->have, p, n);
	}
	n += c->have;
	for (size_t i = 3; i < n; i++)
		if (!memcmp(c->in + i - 3, "\r\n\r\n", 4)) {
			k++;
			start = i + 1;
		}
	c->have = n - start;
	memmove(c->in, c->in + start, c->have);
	if (!k)
		return;
	for (size_t i = 0; i < k && i < FL_PIPE; i++, len += RESP_LEN)
		memcpy(c->out + len, RESP, RESP_LEN);
	sqe = fl_sqe(s);
	io_uring_prep_send(sqe, c->fd, c->out, len, MSG_NOSIGNAL);
	fl_tag(sqe, FL_SEND, c);
	if (s->multishot)
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS; /* the recv stays armed */
}

static int fl_setup(struct fl_srv *s, int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
					      IORING_SETUP_DEFER_TASKRUN };
	int one = 1, err;

	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0 || setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) || listen(s->lfd, 4096)) {
		perror("floors: listen");
		return 1;
	}
	err = io_uring_queue_init_params(1024, &s->ring, &p);
	if (err) {
		fprintf(stderr, "floors: io_uring: %s\n", strerror(-err));
		return 1;
	}
	if (s->multishot) {
		struct io_uring_buf_reg reg = { .ring_entries = FL_BUFS, .bgid = 0 };

		if (posix_memalign((void **)&s->br, 4096, FL_BUFS * sizeof(struct io_uring_buf)) ||
		    !(s->bufs = malloc((size_t)FL_BUFS * FL_BUF_SZ))) {
			fprintf(stderr, "floors: out of memory\n");
			return 1;
		}
		reg.ring_addr = (uintptr_t)s->br;
		err = io_uring_register_buf_ring(&s->ring, &reg, 0);
		if (err) {
			fprintf(stderr, "floors: provided-buffer ring: %s\n", strerror(-err));
			return 1;
		}
		io_uring_buf_ring_init(s->br);
		for (unsigned i = 0; i < FL_BUFS; i++)
			io_uring_buf_ring_add(s->br, s->bufs + (size_t)i * FL_BUF_SZ, FL_BUF_SZ,
					      (unsigned short)i, io_uring_buf_ring_mask(FL_BUFS),
					      (int)i);
		io_uring_buf_ring_advance(s->br, (int)FL_BUFS);
	}
	fl_accept(s);
	return 0;
}

static void fl_drop(struct fl_conn *c)
{
	close(c->fd);
	c->fd = -1; /* sends still in flight keep it; it is never freed */
}

static void fl_completion(struct fl_srv *s, struct io_uring_cqe *cqe)
{
	struct fl_conn *c = (struct fl_conn *)(uintptr_t)(cqe->user_data & ~7ull);
	int one = 1;

	switch (cqe->user_data & 7) {
	case FL_ACCEPT:
		if (cqe->res >= 0) {
			c = calloc(1, sizeof(*c));
			if (!c) {
				close(cqe->res);
			} else {
				c->fd = cqe->res;
				(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
				fl_recv(s, c);
			}
		}
		fl_accept(s);
		break;
	case FL_RECV:
		if (c->fd < 0)
			break;
		if (cqe->res == -ENOBUFS) {
			fl_recv(s, c); /* buffers come back as answers go out */
			break;
		}
		if (cqe->res <= 0) {
			fl_drop(c);
			break;
		}
		if (!s->multishot) {
			fl_answer(s, c, c->in + c->have, (size_t)cqe->res);
			fl_recv(s, c);
		} else {
			unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
			char *b = s->bufs + (size_t)bid * FL_BUF_SZ;

			fl_answer(s, c, b, (size_t)cqe->res);
			io_uring_buf_ring_add(s->br, b, FL_BUF_SZ, (unsigned short)bid,
					      io_uring_buf_ring_mask(FL_BUFS), 0);
			io_uring_buf_ring_advance(s->br, 1);
			if (!(cqe->flags & IORING_CQE_F_MORE))
				fl_recv(s, c);
		}
		break;
	case FL_SEND:
		if (cqe->res < 0 && c->fd >= 0)
			fl_drop(c);
		break;
	}
}

static int floor_http(int argc, char **argv)
{
	struct fl_srv s = { 0 };

	if (argc != 4 || (strcmp(argv[3], "single") && strcmp(argv[3], "multishot")))
		usage();
	s.multishot = !strcmp(argv[3], "multishot");
	if (fl_setup(&s, (int)arg_range(argv[2], "PORT", 1, 65535)))
		return 1;
	for (;;) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int err = io_uring_submit_and_wait(&s.ring, 1);

		if (err < 0 && err != -EINTR) {
			fprintf(stderr, "floors: io_uring_submit_and_wait: %s\n", strerror(-err));
			return 1;
		}
		io_uring_for_each_cqe(&s.ring, head, cqe)
		{
			fl_completion(&s, cqe);
			n++;
		}
		io_uring_cq_advance(&s.ring, n);
	}
}

/* ------------------------------------------------------------------ W7 */

#define HW_PERIOD_NS 1000000u
#define HW_CHUNK 1024u

static struct {
	long rounds, total;          /* counted rounds; rounds + rounds / 10 */
	int64_t *delay;
	_Atomic uint64_t from;       /* the deadline or the send time of the round */
	atomic_long done;            /* rounds whose handler ran */
	atomic_int stop;
	uint64_t spins;
	int cpu[2];
} hw;

static uint64_t hw_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t hw_next(uint64_t prev)
{
	uint64_t now = hw_now(), next = prev + HW_PERIOD_NS;

	return next > now ? next : now + HW_PERIOD_NS;
}

/* The spinner's handler: records the round's delay. */
static void hw_handler(int sig, siginfo_t *si, void *uc)
{
	/* acquire/release: pair with the stores of from and the loads of done in the rounds */
	uint64_t from = atomic_load_explicit(&hw.from, memory_order_acquire);
	long i = atomic_load_explicit(&hw.done, memory_order_relaxed), warm = hw.rounds / 10;

	(void)sig, (void)si, (void)uc;
	if (i >= warm && i < hw.total)
		hw.delay[i - warm] = (int64_t)(hw_now() - from);
	atomic_store_explicit(&hw.done, i + 1, memory_order_release);
}

/* Spin until round @i's handler ran (same) or until told to stop (cross); no calls. */
static uint64_t hw_spin_until(long i, uint64_t x)
{
	while (atomic_load_explicit(&hw.done, memory_order_acquire) <= i &&
	       !atomic_load_explicit(&hw.stop, memory_order_relaxed)) {
		x = bench_spin(HW_CHUNK, x);
		hw.spins += HW_CHUNK;
	}
	return x;
}

static void hw_pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void hw_same(void)
{
	struct sigevent ev;
	timer_t tm;
	uint64_t t = hw_now(), x = 1;

	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = SIGRTMIN;
	ev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &ev, &tm)) {
		perror("floors: timer_create");
		exit(1);
	}
	for (long i = 0; i < hw.total; i++) {
		struct itimerspec its = { { 0, 0 }, { 0, 0 } };

		t = hw_next(t);
		its.it_value.tv_sec = (time_t)(t / 1000000000u);
		its.it_value.tv_nsec = (long)(t % 1000000000u);
		atomic_store_explicit(&hw.from, t, memory_order_release);
		timer_settime(tm, TIMER_ABSTIME, &its, NULL);
		x = hw_spin_until(i, x);
	}
	timer_delete(tm);
	hw.spins += x == 42;
}

static void *hw_cross_spinner(void *arg)
{
	sigset_t set;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL); /* the sender keeps it blocked */
	hw_pin(hw.cpu[0]);
	hw.spins += hw_spin_until(LONG_MAX, 1) == 42;
	return NULL;
}

static void hw_cross(void)
{
	pthread_t sp;
	sigset_t set;
	uint64_t t;

	/* Only the spinner takes the signal. */
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	hw_pin(hw.cpu[1]);
	if (pthread_create(&sp, NULL, hw_cross_spinner, NULL)) {
		fprintf(stderr, "floors: pthread_create failed\n");
		exit(1);
	}
	t = hw_now();
	for (long i = 0; i < hw.total; i++) {
		union sigval v = { 0 };
		struct timespec ts;

		t = hw_next(t);
		ts.tv_sec = (time_t)(t / 1000000000u);
		ts.tv_nsec = (long)(t % 1000000000u);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
			;
		atomic_store_explicit(&hw.from, hw_now(), memory_order_release);
		pthread_sigqueue(sp, SIGRTMIN, v);
		while (atomic_load_explicit(&hw.done, memory_order_acquire) <= i)
			cpu_relax();
	}
	atomic_store_explicit(&hw.stop, 1, memory_order_relaxed);
	pthread_join(sp, NULL);
}

static int cmp_i64(const void *p, const void *q)
{
	int64_t x = *(const int64_t *)p, y = *(const int64_t *)q;

	return x < y ? -1 : x > y;
}

static int floor_hogwake(int argc, char **argv)
{
	struct sigaction sa;
	cpu_set_t set;
	bool cross;
	int n = 0;

	if (argc < 3 || argc > 4 || (strcmp(argv[2], "same") && strcmp(argv[2], "cross")))
		usage();
	cross = !strcmp(argv[2], "cross");
	/* x 99 for the p99 */
	hw.rounds = argc == 4 ? arg_range(argv[3], "ROUNDS", 10, LONG_MAX / 100) : 2000;
	hw.total = hw.rounds + hw.rounds / 10;
	hw.delay = calloc((size_t)hw.rounds, sizeof(*hw.delay));
	if (!hw.delay) {
		fprintf(stderr, "floors: hogwake: out of memory for %ld rounds\n", hw.rounds);
		return 1;
	}
	sched_getaffinity(0, sizeof(set), &set);
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			hw.cpu[n++] = c;
	if (cross && n < 2) {
		fprintf(stderr, "floors: hogwake: cross needs two allowed CPUs\n");
		return 1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = hw_handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGRTMIN, &sa, NULL);
	if (cross)
		hw_cross();
	else
		hw_same();
	qsort(hw.delay, (size_t)hw.rounds, sizeof(*hw.delay), cmp_i64);
	printf("peer=floor workload=hogwake variant=%s wake_p50_us=%.1f wake_p99_us=%.1f "
	       "wake_max_us=%.1f rounds=%ld period_us=%u hog_spins=%llu cpus=%d\n",
	       argv[2], (double)hw.delay[(hw.rounds * 50 + 99) / 100 - 1] / 1e3,
	       (double)hw.delay[(hw.rounds * 99 + 99) / 100 - 1] / 1e3,
	       (double)hw.delay[hw.rounds - 1] / 1e3, hw.rounds, HW_PERIOD_NS / 1000,
	       (unsigned long long)hw.spins, CPU_COUNT(&set));
	free(hw.delay);
	return 0;
}

/* ------------------------------------------------------------------ xcore floors */

static void pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set)) {
		fprintf(stderr, "floors: cannot pin to CPU %d\n", cpu);
		exit(1);
	}
}

/*
 * W5's floors: @pass(@arg, side, n) run by two plain threads pinned to
 * the first two allowed CPUs, n / 10 + 1 untimed round trips and then
 * @n timed ones (on side 0).
 */
struct two_sides {
	void (*pass)(void *arg, int me, long n);
	void *arg;
	long n;
	int cpu[2];
};

static void *two_sides_side1(void *arg)
{
	struct two_sides *ts = arg;

	pin_self(ts->cpu[1]);
	ts->pass(ts->arg, 1, ts->n / 10 + 1); /* warm-up */
	ts->pass(ts->arg, 1, ts->n);
	return NULL;
}

static int two_sides_run(int argc, char **argv, const char *variant,
			 void (*pass)(void *, int, long), void *arg)
{
	struct two_sides ts = { .pass = pass, .arg = arg };
	cpu_set_t set;
	pthread_t t;
	uint64_t t0, el;
	int k = 0;

	if (argc > 3)
		usage();
	ts.n = argc > 2 ? arg_range(argv[2], "N", 1, LONG_MAX) : 1000000;
	if (sched_getaffinity(0, sizeof(set), &set))
		return 1;
	for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
		if (CPU_ISSET(c, &set))
			ts.cpu[k++] = c;
	if (k < 2) {
		fprintf(stderr, "floors: %s needs two allowed CPUs\n", variant);
		return 1;
	}
	pin_self(ts.cpu[0]);
	if (pthread_create(&t, NULL, two_sides_side1, &ts))
		return 1;
	pass(arg, 0, ts.n / 10 + 1);
	t0 = hw_now();
	pass(arg, 0, ts.n);
	el = hw_now() - t0;
	pthread_join(t, NULL);
	printf("peer=floor workload=xcore_wake variant=%s ns_per_op=%.2f ops=%ld cpus=%d,%d\n",
	       variant, (double)el / (double)ts.n, ts.n, ts.cpu[0], ts.cpu[1]);
	return 0;
}

/* pingpong: one turn word, alone on its cache line. */
static _Alignas(64) atomic_int pp_turn;

static void pingpong_pass(void *arg, int me, long n)
{
	(void)arg;
	for (long i = 0; i < n; i++) {
		/* acquire: pairs with the other side's release store */
		while (atomic_load_explicit(&pp_turn, memory_order_acquire) != me)
			cpu_relax();
		atomic_store_explicit(&pp_turn, !me, memory_order_release);
	}
}

/* spincond: each on its own cache line, as separate objects are. */
struct spincond {
	_Alignas(64) atomic_int lock;  /* test-and-test-and-set */
	_Alignas(64) atomic_uint seq;  /* the condvar: signals so far */
	_Alignas(64) int turn;         /* whose move: 0 or 1; under lock */
};

/* spinline: the same three words on one line. */
struct spinline {
	_Alignas(64) atomic_int lock;
	atomic_uint seq;
	int turn;
};

/* Where spincond_pass finds the lock, the count and the turn. */
struct sc_words {
	atomic_int *lock;
	atomic_uint *seq;
	int *turn;
};

static void sc_lock(atomic_int *lock)
{
	for (;;) {
		/* acquire: pairs with sc_unlock's release */
		if (!atomic_load_explicit(lock, memory_order_relaxed) &&
		    !atomic_exchange_explicit(lock, 1, memory_order_acquire))
			return;
		cpu_relax();
	}
}

static void sc_unlock(atomic_int *lock)
{
	atomic_store_explicit(lock, 0, memory_order_release);
}

static void spincond_pass(void *arg, int me, long n)
{
	const struct sc_words *s = arg;

	for (long i = 0; i < n; i++) {
		sc_lock(s->lock);
		while (*s->turn != me) {
			/* wait: read the count holding the lock, release it, spin for a change, relock */
			unsigned q = atomic_load_explicit(s->seq, memory_order_relaxed);

			sc_unlock(s->lock);
			while (atomic_load_explicit(s->seq, memory_order_relaxed) == q)
				cpu_relax();
			sc_lock(s->lock);
		}
		*s->turn = !me;
		atomic_fetch_add_explicit(s->seq, 1, memory_order_relaxed); /* signal */
		sc_unlock(s->lock);
	}
}

/* spinslot: the mutex, the condvar (its lock and slots) and the turn, a line each. */
enum { SLOT_FREE, SLOT_SPIN, SLOT_WOKEN };

struct spinslot {
	_Alignas(64) atomic_int lock;
	_Alignas(64) struct {
		atomic_int lock;
		atomic_uchar slot[2]; /* side i's: SLOT_*; written under lock, polled by side i */
	} c;
	_Alignas(64) int turn;
	bool owed[2];        /* side i's slot is SLOT_WOKEN and still its own; side i's */
};

static void slot_settle(struct spinslot *s, int me)
{
	if (s->owed[me]) {
		atomic_store_explicit(&s->c.slot[me], SLOT_FREE, memory_order_relaxed);
		s->owed[me] = false;
	}
}

static void spinslot_wait(struct spinslot *s, int me)
{
	sc_lock(&s->c.lock);
	slot_settle(s, me);
	atomic_store_explicit(&s->c.slot[me], SLOT_SPIN, memory_order_relaxed);
	sc_unlock(&s->c.lock);
	sc_unlock(&s->lock);
	/* acquire: pairs with the signal's release */
	while (atomic_load_explicit(&s->c.slot[me], memory_order_acquire) == SLOT_SPIN)
		cpu_relax();
	if (!atomic_load_explicit(&s->lock, memory_order_relaxed) &&
	    !atomic_exchange_explicit(&s->lock, 1, memory_order_acquire)) {
		s->owed[me] = true; /* freed at our next signal or wait */
		return;
	}
	sc_lock(&s->c.lock);
	atomic_store_explicit(&s->c.slot[me], SLOT_FREE, memory_order_relaxed);
	sc_unlock(&s->c.lock);
	sc_lock(&s->lock);
}

static void spinslot_signal(struct spinslot *s, int me)
{
	sc_lock(&s->c.lock);
	slot_settle(s, me);
	if (atomic_load_explicit(&s->c.slot[!me], memory_order_relaxed) == SLOT_SPIN)
		atomic_store_explicit(&s->c.slot[!me], SLOT_WOKEN, memory_order_release);
	sc_unlock(&s->c.lock);
}

static void spinslot_pass(void *arg, int me, long n)
{
	struct spinslot *s = arg;

	for (long i = 0; i < n; i++) {
		sc_lock(&s->lock);
		while (s->turn != me)
			spinslot_wait(s, me);
		s->turn = !me;
		spinslot_signal(s, me);
		sc_unlock(&s->lock);
	}
}

/* spinreg: the marks beside the lock word; the condvar a count; the turn; a line each. */
struct spinreg {
	_Alignas(64) atomic_int lock;
	atomic_uint marks;   /* bit i: side i waits; written holding lock */
	_Alignas(64) atomic_uint seq;
	_Alignas(64) int turn;
};

static void spinreg_pass(void *arg, int me, long n)
{
	struct spinreg *s = arg;
	unsigned bit = 1u << me;

	for (long i = 0; i < n; i++) {
		sc_lock(&s->lock);
		while (s->turn != me) {
			unsigned m = atomic_load_explicit(&s->marks, memory_order_relaxed);
			unsigned q = atomic_load_explicit(&s->seq, memory_order_relaxed);

			atomic_store_explicit(&s->marks, m | bit, memory_order_relaxed);
			sc_unlock(&s->lock);
			while (atomic_load_explicit(&s->seq, memory_order_relaxed) == q)
				cpu_relax();
			sc_lock(&s->lock);
			m = atomic_load_explicit(&s->marks, memory_order_relaxed);
			atomic_store_explicit(&s->marks, m & ~bit, memory_order_relaxed);
		}
		s->turn = !me;
		if (atomic_load_explicit(&s->marks, memory_order_relaxed) & (1u << !me))
			atomic_fetch_add_explicit(&s->seq, 1, memory_order_relaxed); /* signal */
		sc_unlock(&s->lock);
	}
}

static int floor_pingpong(int argc, char **argv)
{
	return two_sides_run(argc, argv, "pingpong", pingpong_pass, NULL);
}

static int floor_spincond(int argc, char **argv)
{
	static struct spincond s;
	static struct sc_words sw = { &s.lock, &s.seq, &s.turn };

	return two_sides_run(argc, argv, "spincond", spincond_pass, &sw);
}

static int floor_spinline(int argc, char **argv)
{
	static struct spinline s;
	static struct sc_words sw = { &s.lock, &s.seq, &s.turn };

	return two_sides_run(argc, argv, "spinline", spincond_pass, &sw);
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "mutex"))
		return floor_mutex(argc, argv);
	if (!strcmp(argv[1], "http"))
		return floor_http(argc, argv);
	if (!strcmp(argv[1], "hogwake"))
		return floor_hogwake(argc, argv);
	if (!strcmp(argv[1], "pingpong"))
		return floor_pingpong(argc, argv);
	if (!strcmp(argv[1], "spincond"))
		return floor_spincond(argc, argv);
	if (!strcmp(argv[1], "spinline"))
		return floor_spinline(argc, argv);
	if (!strcmp(argv[1], "spinslot")) {
		static struct spinslot s;

		return two_sides_run(argc, argv, "spinslot", spinslot_pass, &s);
	}
	if (!strcmp(argv[1], "spinreg")) {
		static struct spinreg s;

		return two_sides_run(argc, argv, "spinreg", spinreg_pass, &s);
	}
	usage();
}
