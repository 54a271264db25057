/* SPDX-License-Identifier: MIT */
/*
 * Preemption (lib/preempt.c, issue 13): fibers that never call the
 * runtime ("hogs") are interrupted for a higher-priority fiber and share
 * a worker with fibers of their priority in time slices; every register
 * survives; prt_preempt_disable() regions are never interrupted; hogs in
 * libc next to fibers in libc neither deadlock nor corrupt the heap; a
 * quantum of 0 is cooperative. Behaviour only: what the fibers see
 * (counters read by the hogs themselves), never how long anything took.
 * A hog's loop also ends after PREEMPT_CAP_NS, so that a runtime that
 * does not preempt fails these tests instead of hanging them.
 *
 * Where preemption is unavailable (valgrind, TSan: prt_runtime_notice()
 * says why), the tests that need it skip.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "test_common.h"
#include "deadline.h"    /* internal: PRT_NEVER */
#include "preempt_int.h" /* internal: prt__range_allowed, the workers' preemption state */
#include "runtime_int.h" /* internal: the run queue's lock bias (bias_window) */
#include "sched_int.h"
#include "worker.h"
#if PRT_FAULT_INJECTION
#include "fault.h"
#endif

/* A hog gives up after this long (a safety net, not a measurement). */
#define PREEMPT_CAP_NS (20ull * 1000 * 1000 * 1000)

/* Work that calls nothing: an interrupt lands in this code. */
static inline uint64_t spin_work(uint64_t x, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	return x;
}

/* A hog's safety net: every 256 calls, past the cap? */
struct cap {
	uint64_t until;
	unsigned n;
};

static void cap_init(struct cap *c)
{
	c->until = test_mono_ns() + PREEMPT_CAP_NS;
	c->n = 0;
}

static bool cap_hit(struct cap *c)
{
	return (++c->n & 255) == 0 && test_mono_ns() > c->until;
}

static volatile uint64_t sink;

/* sink, from fibers that may run on two workers at once (no data race). */
static void sink_put(uint64_t x)
{
	__atomic_store_n(&sink, x, __ATOMIC_RELAXED);
}

/* A runtime of @nworkers with time slice @q; NULL (and a skip) where preemption is unavailable. */
/* rt_preempt on I/O backend @backend (cfg.io_backend). */
static prt_runtime_t *rt_preempt_io(int nworkers, uint64_t q, int backend)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;
	uint64_t got = 0;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.preempt_quantum_ns = q;
	cfg.io_backend = backend;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	if (prt_runtime_preemptive(rt, &got) != 1) {
		fprintf(stderr, "test_preempt: no preemption here (%s): skipped\n",
			prt_runtime_notice(rt) ? prt_runtime_notice(rt) : "?");
		assert_int_equal(prt_runtime_destroy(rt), 0);
		return NULL;
	}
	assert_int_equal(got, q);
	return rt;
}

static prt_runtime_t *rt_preempt(int nworkers, uint64_t q)
{
	return rt_preempt_io(nworkers, q, PRT_IO_AUTO);
}

static prt_worker_stats_t stats_of(prt_runtime_t *rt, int w)
{
	prt_worker_stats_t st;

	assert_int_equal(prt_worker_stats(rt, w, &st), 0);
	return st;
}


static prt_fiber_t spawn_at(prt_runtime_t *rt, int prio, int worker, void *(*fn)(void *),
			    void *arg)
{
	prt_fiber_attr_t a = test_attr(prio, worker);
	prt_fiber_t f;

	assert_int_equal(prt_spawn(rt, &f, &a, fn, arg), 0);
	return f;
}

static void *join_ok(prt_fiber_t f)
{
	void *res = (void *)1;

	assert_int_equal(prt_join(f, &res), 0);
	return res;
}

/* ---- quantum 0: cooperative, as before ---------------------------------------- */

struct coop {
	atomic_int b_ran;
	int b_ran_seen_by_a;
};

static void *coop_a(void *arg)
{
	struct coop *c = arg;
	uint64_t x = 1;

	for (int i = 0; i < 20000; i++)
		x = spin_work(x, 1000);
	sink = x;
	c->b_ran_seen_by_a = atomic_load(&c->b_ran);
	return NULL;
}

static void *coop_b(void *arg)
{
	atomic_store(&((struct coop *)arg)->b_ran, 1);
	return NULL;
}

/* Quantum 0: no handler, no interrupt; a fiber runs until it stops by itself. */
static void test_quantum_zero_is_cooperative(void **state)
{
	struct coop c = { 0 };
	struct sigaction sa;
	prt_runtime_t *rt;
	prt_fiber_t a, b;
	prt_runtime_config_t cfg;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = 0;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_int_equal(prt_runtime_preemptive(rt, NULL), 0);
	assert_int_equal(sigaction(SIGRTMAX - 3, NULL, &sa), 0);
	assert_true(!(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL);
	a = spawn_at(rt, 16, 0, coop_a, &c);
	b = spawn_at(rt, 16, 0, coop_b, &c);
	join_ok(a);
	join_ok(b);
	assert_int_equal(c.b_ran_seen_by_a, 0);
	assert_int_equal(stats_of(rt, 0).preemptions, 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a higher-priority sleeper behind a hog -------------------------------------- */

#define SLEEPER_ROUNDS 20

struct behind {
	atomic_int rounds, early;
	int target; /* the hog computes until the sleeper did this many rounds (0: SLEEPER_ROUNDS) */
	int rounds_seen_by_hog;
};

static void *sleeper(void *arg)
{
	struct behind *b = arg;

	for (int i = 0; i < SLEEPER_ROUNDS; i++) {
		prt_sleep_ns(1000 * 1000);
		atomic_fetch_add(&b->rounds, 1);
	}
	return NULL;
}

static void *hog_until_rounds(void *arg)
{
	struct behind *b = arg;
	int target = b->target ? b->target : SLEEPER_ROUNDS;
	struct cap c;
	uint64_t x = 7;

	cap_init(&c);
	while (atomic_load_explicit(&b->rounds, memory_order_relaxed) < target && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	b->rounds_seen_by_hog = atomic_load(&b->rounds);
	return NULL;
}

/* One worker: a fiber at 24 sleeping 1 ms in a loop completes its rounds while one at 16 computes. */
static void test_sleeper_behind_hog(void **state)
{
	struct behind b = { 0 };
	prt_runtime_t *rt;
	prt_fiber_t s, h;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	s = spawn_at(rt, 24, 0, sleeper, &b);
	h = spawn_at(rt, 16, 0, hog_until_rounds, &b);
	join_ok(h);
	join_ok(s);
	assert_int_equal(b.rounds_seen_by_hog, SLEEPER_ROUNDS);
	/* Not one per round: a round whose sleep ended before the hog ran again needed none. */
	assert_true(stats_of(rt, 0).preemptions >= 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void *leave_region_open(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)prt_preempt_disable();
}

/*
 * A fiber that returns inside a prt_preempt_disable() region ends the
 * region with it: the next fiber given its descriptor (the hog, spawned
 * right after it was freed) is preemptible; the descriptor's count was
 * kept and the hog never gave the worker up.
 */
static void test_region_ends_with_fiber(void **state)
{
	struct behind b = { 0 };
	prt_runtime_t *rt;
	prt_fiber_t s, h;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	for (int i = 0; i < 4; i++) /* a few left open, in case a descriptor is not reused at once */
		assert_null(join_ok(spawn_at(rt, 16, 0, leave_region_open, NULL)));
	h = spawn_at(rt, 16, 0, hog_until_rounds, &b);
	s = spawn_at(rt, 24, 0, sleeper, &b);
	join_ok(h);
	join_ok(s);
	assert_int_equal(b.rounds_seen_by_hog, SLEEPER_ROUNDS);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- the watch's lead (cfg.timer_lead_ns on a busy worker) ------------------------- */

#define LEAD_ROUNDS 200

#if PRT_FAULT_INJECTION
static atomic_int lead_spins;

static void lead_spin_seen(void *arg)
{
	(void)arg;
	atomic_fetch_add(&lead_spins, 1);
}
#endif

/* Sleeps to absolute deadlines: never back before one. */
static void *lead_sleeper(void *arg)
{
	struct behind *l = arg;
	uint64_t t = prt_now_ns();

	for (int i = 0; i < LEAD_ROUNDS; i++) {
		t += 1000 * 1000;
		assert_int_equal(prt_sleep_until(t), 0);
		if (prt_now_ns() < t)
			atomic_fetch_add(&l->early, 1);
		atomic_fetch_add(&l->rounds, 1);
	}
	return NULL;
}

/*
 * One worker, cfg.timer_lead_ns = 200 us: the watch for a sleeper at 24
 * behind a hog at 16 fires early by the lateness it measured, and the
 * look spins to the deadline. The sleeper completes its rounds while the
 * hog computes and is never woken before its deadline; in fault-
 * injection builds the pause point in that spin (PRT_PAUSE_WATCH_SPIN)
 * shows the early path ran.
 */
static void test_watch_lead(void **state)
{
	struct behind l = { .target = LEAD_ROUNDS };
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_fiber_t s, h;
	uint64_t q = 0;
	char *lead_env;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT;
	cfg.timer_lead_ns = 200 * 1000;
	lead_env = getenv("PRT_TIMER_LEAD_NS"); /* it would replace cfg's */
	lead_env = lead_env ? strdup(lead_env) : NULL;
	unsetenv("PRT_TIMER_LEAD_NS");
	assert_int_equal(test_create_own_quantum(&rt, &cfg), 0);
	if (lead_env) {
		setenv("PRT_TIMER_LEAD_NS", lead_env, 1);
		free(lead_env);
	}
	if (prt_runtime_preemptive(rt, &q) != 1 || test_under_valgrind()) {
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
#if PRT_FAULT_INJECTION
	atomic_store(&lead_spins, 0);
	prt__fault_set_pause(PRT_PAUSE_WATCH_SPIN, lead_spin_seen, NULL);
#endif
	s = spawn_at(rt, 24, 0, lead_sleeper, &l);
	h = spawn_at(rt, 16, 0, hog_until_rounds, &l);
	join_ok(h);
	join_ok(s);
#if PRT_FAULT_INJECTION
	prt__fault_set_pause(PRT_PAUSE_WATCH_SPIN, NULL, NULL);
	assert_true(atomic_load(&lead_spins) > 0);
#endif
	assert_int_equal(l.rounds_seen_by_hog, LEAD_ROUNDS);
	assert_int_equal(atomic_load(&l.early), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a wakeup the pick honoured interrupts nothing more --------------------------- */

#define HONOURED_ROUNDS 5
#define HONOURED_REGION_NS (5ull * 1000 * 1000)

struct honoured {
	atomic_int hog_running, done;
	uint64_t deferred_in_regions; /* interrupts that came while the woken fiber ran */
	/*
	 * After the first region with one: which sources were pending
	 * (PRT_PEV_PENDING(src) bits of pw.events), and the worker's timers
	 * (a failure seen once in CI in ~500 runs, never reproduced: this
	 * says which interrupt it was, next time).
	 */
	unsigned events, ticking, retry_armed;
	uint64_t watch_at, at;
};

static void *honoured_hog(void *arg)
{
	struct honoured *h = arg;
	struct cap c;
	uint64_t x = 3;

	atomic_store(&h->hog_running, 1);
	cap_init(&c);
	while (!atomic_load_explicit(&h->done, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	return NULL;
}

/* Each round: woken behind the hog (the watch), then run a while where no interrupt may stop it. */
static void *honoured_sleeper(void *arg)
{
	struct honoured *h = arg;
	prt_runtime_t *rt = prt_runtime_self();

	while (!atomic_load(&h->hog_running))
		prt_sleep_ns(1000 * 1000);
	for (int i = 0; i < HONOURED_ROUNDS; i++) {
		uint64_t d0, until;

		prt_sleep_ns(1000 * 1000);
		assert_int_equal(prt_preempt_disable(), 0);
		d0 = stats_of(rt, 0).preempt_deferred;
		for (until = prt_now_ns() + HONOURED_REGION_NS; prt_now_ns() < until;)
			sink = spin_work(sink, 256);
		if (stats_of(rt, 0).preempt_deferred != d0 && !h->deferred_in_regions) {
			struct prt__wpreempt *p = &rt->workers[0]->pw;

			h->events = atomic_load(&p->events);
			h->ticking = p->ticking;
			h->retry_armed = atomic_load(&p->retry_armed);
			h->watch_at = p->watch_at;
			h->at = prt_now_ns();
		}
		h->deferred_in_regions += stats_of(rt, 0).preempt_deferred - d0;
		assert_int_equal(prt_preempt_enable(), 0);
	}
	atomic_store(&h->done, 1);
	return NULL;
}

/* ---- the yield's lock bias (lib/sched_priv.h) ---- */

/*
 * A runtime whose workers keep their run-queue lock at calm yields,
 * quantum @q (0: cooperative); NULL (the test skips) where the bias is
 * not used: ThreadSanitizer, valgrind, no membarrier(2), $PRT_YIELD_BIAS=0.
 */
static bool rt_bias_ok(void)
{
	const char *e = getenv("PRT_YIELD_BIAS");
	long mq = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0u, 0);

	if (PRT_TEST_TSAN || test_under_valgrind() || (e && !strcmp(e, "0")) || mq <= 0 ||
	    !(mq & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) {
		fprintf(stderr, "test_preempt: no lock bias here: skipped\n");
		return false;
	}
	return true;
}

static prt_runtime_t *rt_bias(int nworkers, uint64_t q)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	if (!rt_bias_ok())
		return NULL;
	if (q)
		return rt_preempt(nworkers, q);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.preempt_quantum_ns = 0;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	return rt;
}

struct bias {
	atomic_int kept_phase, go;
	int rfd; /* bias_blocked_keeper: the pipe it reads */
};

/* Yields alone: its worker keeps the run-queue lock once its yields have been calm long enough. */
static void bias_keep(void)
{
	for (int i = 0; i < 4096; i++)
		assert_int_equal(prt_yield(), 0);
}

/*
 * Keeps the lock (bias_keep), then computes inside a
 * prt_preempt_disable() region (no tick or kick can reach a scheduling
 * point) until the plain thread has queued a fiber here.
 */
static void *bias_keeper(void *arg)
{
	struct bias *b = arg;

	assert_int_equal(prt_preempt_disable(), 0);
	bias_keep();
	atomic_store(&b->kept_phase, 1);
	while (!atomic_load(&b->go))
		sink_put(spin_work(sink, 64));
	assert_int_equal(prt_preempt_enable(), 0);
	return NULL;
}

/*
 * One worker whose only fiber yields, then computes without calling the
 * runtime: its yields kept the worker's run-queue lock, which a plain
 * thread's spawn onto that worker needs. The spawn must complete while
 * the fiber still computes: the spawning thread revokes the bias
 * (bias_revocations). Without that the spawn would wait for the fiber's
 * next runtime call, which waits for the spawn: a hang. Cooperative and
 * preemptive.
 */
static void test_bias_revoked(void **state)
{
	for (int round = 0; round < 2; round++) {
		prt_runtime_t *rt;
		struct bias b = { 0 };
		prt_fiber_t k, c;

		(void)state;
		rt = rt_bias(1, round ? 4000000 : 0);
		if (!rt)
			return;
		k = spawn_at(rt, PRT_PRIO_DEFAULT, 0, bias_keeper, &b);
		while (!atomic_load(&b.kept_phase))
			test_spin_pause();
		c = spawn_at(rt, PRT_PRIO_DEFAULT, 0, test_noop, NULL); /* takes worker 0's rq lock */
		assert_int_equal(stats_of(rt, 0).bias_revocations, 1);
		atomic_store(&b.go, 1);
		assert_int_equal(prt_join(k, NULL), 0);
		assert_int_equal(prt_join(c, NULL), 0);
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
}

/*
 * Keeps the lock, then blocks every signal and waits in read(2) for the
 * plain thread, which first spawns a fiber onto this worker.
 */
static void *bias_blocked_keeper(void *arg)
{
	struct bias *b = arg;
	sigset_t all, old;
	char c;

	bias_keep();
	sigfillset(&all);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &all, &old), 0);
	atomic_store(&b->kept_phase, 1);
	assert_int_equal(read(b->rfd, &c, 1), 1);
	assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
	return NULL;
}

/*
 * The case a signal could not take the lock back from (a helper's
 * review, session 21): the worker thread keeps its lock, blocks every
 * signal and waits in a system call for a thread that needs that lock.
 * The revocation needs nothing of that thread: the spawn completes, then
 * the write wakes the keeper. Without it: a hang.
 */
static void test_bias_blocked_syscall(void **state)
{
	prt_runtime_t *rt;
	struct bias b = { 0 };
	prt_fiber_t k, c;
	int fds[2];

	(void)state;
	rt = rt_bias(1, 1000000);
	if (!rt)
		return;
	assert_int_equal(pipe(fds), 0);
	b.rfd = fds[0];
	k = spawn_at(rt, PRT_PRIO_DEFAULT, 0, bias_blocked_keeper, &b);
	while (!atomic_load(&b.kept_phase))
		test_spin_pause();
	c = spawn_at(rt, PRT_PRIO_DEFAULT, 0, test_noop, NULL);
	assert_int_equal(write(fds[1], "x", 1), 1);
	assert_int_equal(prt_join(k, NULL), 0);
	assert_int_equal(prt_join(c, NULL), 0);
	assert_int_equal(stats_of(rt, 0).bias_revocations, 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	close(fds[0]);
	close(fds[1]);
}

/* test_bias_steal: H on worker 1; Y on worker 0 with Z, which it spawned there (any worker may run Z). */
struct bias_steal {
	prt_runtime_t *rt;
	atomic_int h_running, y_computing, z_done, z_worker;
};

static void *bias_steal_h(void *arg)
{
	struct bias_steal *s = arg;

	atomic_store(&s->h_running, 1);
	while (!atomic_load(&s->y_computing))
		test_spin_pause();
	return NULL; /* worker 1 goes idle: Z is there to steal */
}

static void *bias_steal_z(void *arg)
{
	struct bias_steal *s = arg;

	while (!atomic_load(&s->y_computing))
		assert_int_equal(prt_yield(), 0);
	atomic_store(&s->z_worker, prt_worker_index());
	atomic_store(&s->z_done, 1);
	return NULL;
}

static void *bias_steal_y(void *arg)
{
	struct bias_steal *s = arg;
	prt_fiber_attr_t a;
	prt_fiber_t z;
	prt_runtime_t *rt = s->rt;
	struct cap c;

	while (!atomic_load(&s->h_running))
		assert_int_equal(prt_yield(), 0);
	prt_fiber_attr_init(&a);
	assert_int_equal(prt_spawn(rt, &z, &a, bias_steal_z, s), 0);
	bias_keep(); /* with Z: worker 1 is busy, so nothing is announced, and the lock is kept */
	atomic_store(&s->y_computing, 1);
	cap_init(&c);
	while (!atomic_load(&s->z_done) && !cap_hit(&c))
		sink_put(spin_work(sink, 64));
	assert_true(atomic_load(&s->z_done));
	assert_int_equal(prt_join(z, NULL), 0);
	return NULL;
}

/*
 * Work conservation with a kept lock, cooperative: worker 0 keeps its
 * lock (Y and Z yield to each other while worker 1 is busy), then Y
 * computes without calling the runtime while Z waits in worker 0's
 * queue. Worker 1, idle now, must steal Z (its idle loop revokes the
 * bias: prt__rq_trylock_idle); Z then ends Y's loop. Without the
 * revocation Z waits for Y, which waits for Z (Y gives up at its cap,
 * and the test fails).
 */
static void test_bias_steal(void **state)
{
	prt_runtime_t *rt;
	struct bias_steal s = { 0 };
	prt_fiber_t h, y;

	(void)state;
	rt = rt_bias(2, 0);
	if (!rt)
		return;
	s.rt = rt;
	atomic_store(&s.z_worker, -1);
	h = spawn_at(rt, PRT_PRIO_DEFAULT, 1, bias_steal_h, &s);
	y = spawn_at(rt, PRT_PRIO_DEFAULT, 0, bias_steal_y, &s);
	assert_int_equal(prt_join(y, NULL), 0);
	assert_int_equal(prt_join(h, NULL), 0);
	assert_int_equal(atomic_load(&s.z_worker), 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * test_bias_proxy: S (pinned to worker 1) spawns O there; O locks M and
 * yields with S until S has yielded enough to keep worker 1's lock; then
 * S computes without calling the runtime, O queued behind it, M held.
 * D (pinned to worker 0) locks M: proxy execution takes O off worker
 * 1's queue to run it in D's place (proxy.c, take_remote), O unlocks,
 * and D ends S's loop. No steals (steal grace "never"): only the proxy
 * can move O.
 */
static struct {
	prt_runtime_t *rt;
	prt_mutex_t m;
	prt_fiber_t o;
	atomic_int o_locked, o_stop, go, done;
} bp;

static void *bias_proxy_o(void *arg)
{
	(void)arg;
	assert_int_equal(prt_mutex_lock(&bp.m), 0);
	atomic_store(&bp.o_locked, 1);
	while (!atomic_load(&bp.o_stop))
		assert_int_equal(prt_yield(), 0);
	assert_int_equal(prt_mutex_unlock(&bp.m), 0);
	return NULL;
}

static void *bias_proxy_s(void *arg)
{
	prt_fiber_attr_t a;
	struct cap c;

	(void)arg;
	prt_fiber_attr_init(&a);
	assert_int_equal(prt_spawn(bp.rt, &bp.o, &a, bias_proxy_o, NULL), 0);
	for (int i = 0; i < 1000 || !atomic_load(&bp.o_locked); i++)
		assert_int_equal(prt_yield(), 0);
	atomic_store(&bp.o_stop, 1); /* O, queued here, unlocks as soon as it runs */
	atomic_store(&bp.go, 1);
	cap_init(&c);
	while (!atomic_load(&bp.done) && !cap_hit(&c))
		sink_put(spin_work(sink, 64));
	assert_true(atomic_load(&bp.done));
	return NULL;
}

static void *bias_proxy_d(void *arg)
{
	(void)arg;
	while (!atomic_load(&bp.go))
		assert_int_equal(prt_yield(), 0);
	assert_int_equal(prt_mutex_lock(&bp.m), 0);
	atomic_store(&bp.done, 1);
	assert_int_equal(prt_mutex_unlock(&bp.m), 0);
	return NULL;
}

/*
 * Proxy execution takes a runnable owner from a worker that keeps its
 * lock, cooperative (a review's reproducer: with the pick's trylock
 * given up on the kept lock, D moved behind S's loop with O, and hung
 * 8 of 9 times).
 */
static void test_bias_proxy(void **state)
{
	prt_runtime_config_t cfg;
	prt_fiber_t s, d;

	(void)state;
	if (!rt_bias_ok())
		return;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	cfg.preempt_quantum_ns = 0;
	cfg.steal_grace_ns = UINT64_MAX;
	memset(&bp, 0, sizeof(bp));
	bp.m = (prt_mutex_t)PRT_MUTEX_INITIALIZER;
	assert_int_equal(test_create_own_quantum(&bp.rt, &cfg), 0);
	s = spawn_at(bp.rt, PRT_PRIO_DEFAULT, 1, bias_proxy_s, NULL);
	d = spawn_at(bp.rt, PRT_PRIO_DEFAULT, 0, bias_proxy_d, NULL);
	assert_int_equal(prt_join(d, NULL), 0);
	assert_int_equal(prt_join(s, NULL), 0);
	assert_int_equal(prt_join(bp.o, NULL), 0);
	assert_int_equal(prt_runtime_destroy(bp.rt), 0);
}

#if PRT_FAULT_INJECTION
/*
 * The two windows of the worker's entry into its kept lock
 * (prt__rq_claim), held open by pause points while a plain thread
 * revokes the bias: the hook lets the thread go, waits until it has
 * cleared kept (its compare-and-swap; it then waits for in_cs), then:
 * - PRT_PAUSE_RQ_CLAIM (in_cs marked, kept not yet read): returns; the
 *   claim must now see the revocation and not enter (checked by the
 *   second pause point, which must not come in this claim);
 * - PRT_PAUSE_RQ_BIASED (entered: kept was still set): watches the queue
 *   for 20 ms; the revoker must not touch it (nr, its count) before the
 *   worker leaves.
 */
static struct {
	struct prt__worker *w;
	atomic_int fired, revoke_now, claim_saw_revoked, broken;
	enum prt__pause_site site;
} bw;

static void bias_window_pause(void *arg)
{
	enum prt__pause_site site = (enum prt__pause_site)(intptr_t)arg;
	struct prt__worker *w = prt__cur_worker();
	unsigned nr;

	if (w != bw.w)
		return;
	if (site == PRT_PAUSE_RQ_BIASED && atomic_load(&bw.claim_saw_revoked) == 1) {
		atomic_store(&bw.broken, 1); /* entered a lock it saw revoked */
		atomic_store(&bw.claim_saw_revoked, 2);
	}
	if (site != bw.site || atomic_exchange(&bw.fired, 1))
		return;
	nr = atomic_load(&w->rq.nr);
	atomic_store(&bw.revoke_now, 1);
	while (atomic_load_explicit(&w->rq.kept, memory_order_relaxed))
		test_spin_pause();
	if (site == PRT_PAUSE_RQ_CLAIM) {
		atomic_store(&bw.claim_saw_revoked, 1);
		return;
	}
	for (uint64_t until = test_mono_ns() + 20 * 1000 * 1000; test_mono_ns() < until;) {
		if (atomic_load(&w->rq.nr) != nr ||
		    atomic_load_explicit(&w->stats.bias_revocations, memory_order_relaxed))
			atomic_store(&bw.broken, 1);
		test_spin_pause();
	}
}

/* Keeps the lock, then (go) yields once more: the claim the hooks hold open. */
static void *bias_claimer(void *arg)
{
	struct bias *b = arg;

	bias_keep();
	atomic_store(&b->kept_phase, 1);
	while (!atomic_load(&b->go))
		test_spin_pause();
	assert_int_equal(prt_yield(), 0);
	return NULL;
}

static void bias_window(enum prt__pause_site site)
{
	prt_runtime_t *rt;
	struct bias b = { 0 };
	prt_fiber_t k, c;

	rt = rt_bias(1, 0);
	if (!rt)
		return;
	bw.w = rt->workers[0];
	bw.site = site;
	atomic_store(&bw.fired, 0);
	atomic_store(&bw.revoke_now, 0);
	atomic_store(&bw.claim_saw_revoked, 0);
	atomic_store(&bw.broken, 0);
	k = spawn_at(rt, PRT_PRIO_DEFAULT, 0, bias_claimer, &b);
	while (!atomic_load(&b.kept_phase))
		test_spin_pause();
	prt__fault_set_pause(PRT_PAUSE_RQ_CLAIM, bias_window_pause,
			     (void *)(intptr_t)PRT_PAUSE_RQ_CLAIM);
	prt__fault_set_pause(PRT_PAUSE_RQ_BIASED, bias_window_pause,
			     (void *)(intptr_t)PRT_PAUSE_RQ_BIASED);
	atomic_store(&b.go, 1);
	while (!atomic_load(&bw.revoke_now))
		test_spin_pause();
	c = spawn_at(rt, PRT_PRIO_DEFAULT, 0, test_noop, NULL); /* the revoker */
	assert_int_equal(prt_join(k, NULL), 0);
	assert_int_equal(prt_join(c, NULL), 0);
	prt__fault_set_pause(PRT_PAUSE_RQ_CLAIM, NULL, NULL);
	prt__fault_set_pause(PRT_PAUSE_RQ_BIASED, NULL, NULL);
	assert_int_equal(atomic_load(&bw.broken), 0);
	assert_int_equal(stats_of(rt, 0).bias_revocations, 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}
#endif

static void test_bias_claim_window(void **state)
{
	(void)state;
#if PRT_FAULT_INJECTION
	bias_window(PRT_PAUSE_RQ_CLAIM);
#else
	skip();
#endif
}

static void test_bias_entered_window(void **state)
{
	(void)state;
#if PRT_FAULT_INJECTION
	bias_window(PRT_PAUSE_RQ_BIASED);
#else
	skip();
#endif
}

/*
 * One worker: a fiber at 24 that the timer watch wakes behind a hog at
 * 16 runs, and nothing interrupts it afterwards: the pick that chose it
 * honoured the wakeup. (It used to leave a kick to its own worker behind,
 * which interrupted 50 us later whatever ran then: here the woken fiber,
 * inside prt_preempt_disable(), where the interrupt counts as deferred.)
 */
static void test_honoured_wakeup_sends_no_kick(void **state)
{
	struct honoured h = { 0 };
	prt_worker_stats_t st;
	prt_runtime_t *rt;
	prt_fiber_t s, g;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	s = spawn_at(rt, 24, 0, honoured_sleeper, &h);
	g = spawn_at(rt, 16, 0, honoured_hog, &h);
	join_ok(s);
	join_ok(g);
	st = stats_of(rt, 0);
	assert_int_equal(prt_runtime_destroy(rt), 0); /* first: a failure below leaves no handler */
	assert_true(st.preemptions >= HONOURED_ROUNDS); /* the watch woke it */
	if (h.deferred_in_regions)
		print_message("deferred in regions: %llu; pending sources 0x%x (1 watch, 2 tick, 4 retry, "
			      "8 kick), ticking %u, retry armed %u, watch at %lld ns from then\n",
			      (unsigned long long)h.deferred_in_regions, h.events & PRT_PEV_PENDING_ALL,
			      h.ticking, h.retry_armed,
			      h.watch_at == PRT_NEVER ? -1ll : (long long)(h.watch_at - h.at));
	assert_int_equal(h.deferred_in_regions, 0);
}

/* ---- time slices ------------------------------------------------------------------ */

struct pair {
	atomic_ulong count[2];
	unsigned long other_seen[2];
};

struct pair_arg {
	struct pair *p;
	int me;
};

/* Counts its own progress; ends once it has seen the other progress too. */
static void *slice_hog(void *arg)
{
	struct pair_arg *a = arg;
	struct pair *p = a->p;
	struct cap c;
	uint64_t x = 3;

	cap_init(&c);
	while (!cap_hit(&c)) {
		x = spin_work(x, 4096);
		atomic_fetch_add_explicit(&p->count[a->me], 1, memory_order_relaxed);
		if (atomic_load_explicit(&p->count[!a->me], memory_order_relaxed) > 100 &&
		    atomic_load_explicit(&p->count[a->me], memory_order_relaxed) > 100)
			break;
	}
	sink = x;
	p->other_seen[a->me] = atomic_load(&p->count[!a->me]);
	return NULL;
}

struct period_sleeper {
	uint64_t ns;
	atomic_int stop, rounds;
};

static void *period_sleeper(void *arg)
{
	struct period_sleeper *s = arg;

	while (!atomic_load(&s->stop)) {
		prt_sleep_ns(s->ns);
		atomic_fetch_add(&s->rounds, 1);
	}
	return NULL;
}

/*
 * One worker, two fibers of one priority that never yield: both progress
 * before either ends. With @period (ns, 0: none), a fiber above them
 * sleeps @period in a loop meanwhile: shorter than the quantum, it
 * preempts the running hog before every tick, and the hog still has
 * only the rest of its slice (SCHED_RR); that used to start a new slice
 * each time, and the other hog never ran.
 */
static void equal_hogs_share(uint64_t quantum, uint64_t period)
{
	struct pair p = { 0 };
	struct pair_arg a0 = { &p, 0 }, a1 = { &p, 1 };
	struct period_sleeper sl = { .ns = period };
	prt_worker_stats_t st;
	prt_runtime_t *rt;
	prt_fiber_t f0, f1, s;

	if (!(rt = rt_preempt(1, quantum)))
		skip();
	if (period)
		s = spawn_at(rt, 24, 0, period_sleeper, &sl);
	f0 = spawn_at(rt, 16, 0, slice_hog, &a0);
	f1 = spawn_at(rt, 16, 0, slice_hog, &a1);
	join_ok(f0);
	join_ok(f1);
	if (period) {
		atomic_store(&sl.stop, 1);
		join_ok(s);
		assert_true(atomic_load(&sl.rounds) > 0);
	}
	assert_true(p.other_seen[0] > 100);
	assert_true(p.other_seen[1] > 100);
	st = stats_of(rt, 0);
	assert_true(st.time_slices >= 1);
	assert_true(st.preemptions >= st.time_slices);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_equal_hogs_share(void **state)
{
	(void)state;
	equal_hogs_share(200 * 1000, 0);
}

/* The same with a fiber above them woken every 100 us (a monotonic tick: paused while it runs). */
static void test_equal_hogs_share_under_sleeper(void **state)
{
	(void)state;
	equal_hogs_share(200 * 1000, 100 * 1000);
}

/*
 * A fiber that changes its worker thread's alternate signal stack (a
 * review): disabled, the handler ran on the fibers' own stacks and
 * refused every interrupt, so two hogs that never call the runtime ran
 * one after the other; moved elsewhere, it stayed there for every later
 * fiber. The worker's own is put back (preempt_sig.c, altstack_as_base),
 * and the equal hogs share the worker again.
 */
static char altstack_buf[64 * 1024] __attribute__((aligned(16)));

static void *altstack_change(void *arg)
{
	stack_t ss = { .ss_flags = SS_DISABLE };

	if (arg) {
		ss.ss_sp = altstack_buf;
		ss.ss_size = sizeof(altstack_buf);
		ss.ss_flags = 0;
	}
	FIBER_CHECK(sigaltstack(&ss, NULL) == 0);
	return NULL;
}

static void *altstack_now(void *arg)
{
	stack_t *cur = arg;

	FIBER_CHECK(sigaltstack(NULL, cur) == 0);
	return NULL;
}

/* slice_hog, then the alternate stack as it ends (the other hog still there, the tick running). */
static stack_t altstack_seen[2];

static void *altstack_hog(void *arg)
{
	struct pair_arg *a = arg;

	slice_hog(arg);
	FIBER_CHECK(sigaltstack(NULL, &altstack_seen[a->me]) == 0);
	return NULL;
}

static void altstack_changed(bool moved, uint64_t quantum)
{
	struct pair p = { 0 };
	struct pair_arg a0 = { &p, 0 }, a1 = { &p, 1 };
	prt_runtime_t *rt;
	prt_fiber_t f0, f1;
	stack_t before, after;

	if (!(rt = rt_preempt(1, quantum)))
		skip();
	join_ok(spawn_at(rt, 16, 0, altstack_now, &before));
	join_ok(spawn_at(rt, 16, 0, altstack_change, moved ? (void *)1 : NULL));
	memset(altstack_seen, 0, sizeof(altstack_seen));
	f0 = spawn_at(rt, 16, 0, altstack_hog, &a0);
	f1 = spawn_at(rt, 16, 0, altstack_hog, &a1);
	join_ok(f0);
	join_ok(f1);
	assert_true(p.other_seen[0] > 100);
	assert_true(p.other_seen[1] > 100);
	for (int i = 0; i < 2; i++)
		assert_true(altstack_seen[i].ss_sp == before.ss_sp); /* put back while they shared */
	join_ok(spawn_at(rt, 16, 0, altstack_now, &after));
	assert_true(after.ss_sp == before.ss_sp && after.ss_size == before.ss_size);
	assert_int_equal(after.ss_flags & SS_DISABLE, before.ss_flags & SS_DISABLE);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_altstack_disabled_by_fiber(void **state)
{
	(void)state;
	altstack_changed(false, 200 * 1000);
}

static void test_altstack_moved_by_fiber(void **state)
{
	(void)state;
	altstack_changed(true, 200 * 1000);
}

/*
 * The same with a slice of a kernel tick or more, timed in CPU time: a
 * pick then takes the hook's slow half only for an event (a review: the
 * moved stack was never put back, every frame went on landing there).
 */
static void test_altstack_moved_cpu_tick(void **state)
{
	(void)state;
	altstack_changed(true, 20 * 1000 * 1000);
}

/*
 * The same with a slice of a kernel tick or more (20 ms: above the 10 ms
 * tick of HZ=100), which the worker's CPU-time clock measures (preempt.c,
 * tick_clock_cpu): its timer fires at the kernel's own tick.
 */
static void test_equal_hogs_share_cpu_tick(void **state)
{
	(void)state;
	equal_hogs_share(20 * 1000 * 1000, 0);
}

/* The CPU-time tick with a fiber above woken every 5 ms. */
static void test_equal_hogs_share_cpu_tick_under_sleeper(void **state)
{
	(void)state;
	equal_hogs_share(20 * 1000 * 1000, 5 * 1000 * 1000);
}

/*
 * A slice of a kernel tick or more is measured in the worker's CPU time:
 * a fiber blocked in a system call the library does not know of (a plain
 * nanosleep, which no SA_RESTART restarts) uses none, so the tick does not
 * cut it short with EINTR while another fiber of its priority waits. (A
 * monotonic tick did: its signal came 20 ms into the sleep.)
 */
struct blocked_arg {
	int rc, err;
	atomic_int other_ran;
};

static void *blocked_sleeper(void *arg)
{
	struct blocked_arg *b = arg;
	struct timespec ts = { 0, 120 * 1000 * 1000 };

	b->rc = nanosleep(&ts, NULL);
	b->err = b->rc ? errno : 0;
	return NULL;
}

static void *blocked_other(void *arg)
{
	struct blocked_arg *b = arg;

	atomic_store(&b->other_ran, 1);
	return NULL;
}

static void test_tick_spares_blocked_syscall(void **state)
{
	struct blocked_arg b = { 0 };
	prt_runtime_t *rt;
	prt_fiber_t f0, f1;

	(void)state;
	if (!(rt = rt_preempt(1, 20 * 1000 * 1000)))
		skip();
	/* Queued while f0 sleeps or before it runs: either way the tick starts. */
	f0 = spawn_at(rt, 16, 0, blocked_sleeper, &b);
	f1 = spawn_at(rt, 16, 0, blocked_other, &b);
	join_ok(f0);
	join_ok(f1);
	assert_int_equal(b.err, 0);
	assert_int_equal(b.rc, 0);
	assert_true(atomic_load(&b.other_ran));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * The tick serves contention at the priority the worker runs. Once a
 * higher fiber runs (a wakeup preemption, or a proxy for a higher
 * waiter) nothing can share its slice: the pick that raises the served
 * priority stops the tick, instead of letting it interrupt the higher
 * fiber until a tick finds the contention gone (each tick a timer
 * signal taken from the fiber that outranks everything: in W4, H's
 * proxy). Seen as interrupts refused inside the high fiber's
 * prt_preempt_disable() region. A hog of the worker spawns the high
 * fiber: a plain thread's spawn would kick the worker by a signal that
 * may arrive after the pick it asked for, inside the region.
 */
struct above {
	prt_runtime_t *rt;
	struct pair p;
	atomic_int go, stop;
	prt_fiber_t hi;
	uint64_t deferred_in_region;
	int rc, rc_spawn;
};

struct above_arg {
	struct above *a;
	int me;
};

/* ABOVE_QUANTA time slices of its worker, in a region, then lets the hogs end. */
#define ABOVE_QUANTUM (200u * 1000u)
#define ABOVE_QUANTA 20

static void *above_high(void *arg)
{
	struct above *a = arg;
	prt_worker_stats_t st;
	uint64_t d0, until, x = 17;

	a->rc = prt_preempt_disable();
	prt_worker_stats(a->rt, 0, &st);
	d0 = st.preempt_deferred;
	until = test_mono_ns() + (uint64_t)ABOVE_QUANTA * ABOVE_QUANTUM;
	while (test_mono_ns() < until)
		x = spin_work(x, 4096);
	prt_worker_stats(a->rt, 0, &st);
	a->deferred_in_region = st.preempt_deferred - d0;
	a->rc |= prt_preempt_enable();
	atomic_store(&a->stop, 1);
	sink = x;
	return NULL;
}

static void *above_hog(void *arg)
{
	struct above_arg *h = arg;
	struct above *a = h->a;
	struct cap c;
	uint64_t x = 5;

	cap_init(&c);
	while (!atomic_load_explicit(&a->stop, memory_order_relaxed) && !cap_hit(&c)) {
		x = spin_work(x, 4096);
		atomic_fetch_add_explicit(&a->p.count[h->me], 1, memory_order_relaxed);
		/* The main thread saw both progress: the worker's tick runs. */
		if (h->me == 0 && atomic_exchange_explicit(&a->go, 0, memory_order_relaxed)) {
			prt_fiber_attr_t at = test_attr(24, 0);

			a->rc_spawn = prt_spawn(a->rt, &a->hi, &at, above_high, a);
		}
	}
	sink = x;
	return NULL;
}

static void test_tick_stops_above_contention(void **state)
{
	struct above a = { 0 };
	struct above_arg h0 = { &a, 0 }, h1 = { &a, 1 };
	prt_fiber_t f0, f1;
	struct cap c;

	(void)state;
	if (!(a.rt = rt_preempt(1, ABOVE_QUANTUM)))
		skip();
	f0 = spawn_at(a.rt, 8, 0, above_hog, &h0);
	f1 = spawn_at(a.rt, 8, 0, above_hog, &h1);
	/* Both progressed: they share the worker in time slices, so its tick runs. */
	cap_init(&c);
	while ((atomic_load(&a.p.count[0]) < 100 || atomic_load(&a.p.count[1]) < 100) &&
	       test_mono_ns() < c.until)
		usleep(1000);
	assert_true(stats_of(a.rt, 0).time_slices >= 1);
	atomic_store(&a.go, 1);
	join_ok(f0);
	join_ok(f1);
	assert_int_equal(a.rc_spawn, 0);
	join_ok(a.hi);
	assert_int_equal(a.rc, 0);
	assert_int_equal(a.deferred_in_region, 0);
	assert_int_equal(prt_runtime_destroy(a.rt), 0);
}

static atomic_int dump_stop;

static void *dump_hog(void *arg)
{
	struct cap c;
	uint64_t x = 13;

	(void)arg;
	cap_init(&c);
	while (!atomic_load_explicit(&dump_stop, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	return NULL;
}

/* A dump taken while two equal hogs share a worker shows the one waiting as preempted. */
static void test_dump_shows_preempted(void **state)
{
	prt_runtime_t *rt;
	prt_fiber_t f0, f1;
	char buf[8192];
	int found = 0;
	struct cap c;

	(void)state;
	if (!(rt = rt_preempt(1, 200 * 1000)))
		skip();
	atomic_store(&dump_stop, 0);
	f0 = spawn_at(rt, 16, 0, dump_hog, NULL);
	f1 = spawn_at(rt, 16, 0, dump_hog, NULL);
	cap_init(&c);
	while (!found && test_mono_ns() < c.until) {
		FILE *tmp = tmpfile();
		size_t n;

		assert_non_null(tmp);
		assert_int_equal(prt_runtime_dump(rt, fileno(tmp)), 0);
		rewind(tmp);
		n = fread(buf, 1, sizeof(buf) - 1, tmp);
		buf[n] = '\0';
		fclose(tmp);
		found = strstr(buf, "state=runnable worker=0 prio=16 preempted") != NULL;
		usleep(1000);
	}
	atomic_store(&dump_stop, 1);
	join_ok(f0);
	join_ok(f1);
	assert_true(found);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a wakeup from another worker --------------------------------------------------- */

/* How the waker on worker 0 wakes the high fiber. */
enum { XW_UNPARK, XW_UNLOCK, XW_SIGNAL, XW_MODES };

struct xw {
	int mode;
	atomic_int hog_running, high_ran, high_waits, waker_ready;
	int high_seen_by_hog;
	prt_fiber_t high;
	prt_mutex_t m;
	prt_cond_t c;
	bool go; /* m */
};

static void *xw_high(void *arg)
{
	struct xw *x = arg;

	switch (x->mode) {
	case XW_UNPARK:
		atomic_store(&x->high_waits, 1);
		prt_park(); /* until the waker on worker 0 */
		while (!atomic_load(&x->hog_running)) /* a spurious return: not our wakeup */
			prt_park();
		break;
	case XW_UNLOCK: /* the waker holds m until the hog runs */
		atomic_store(&x->high_waits, 1);
		assert_int_equal(prt_mutex_lock(&x->m), 0);
		assert_int_equal(prt_mutex_unlock(&x->m), 0);
		break;
	case XW_SIGNAL:
		assert_int_equal(prt_mutex_lock(&x->m), 0);
		atomic_store(&x->high_waits, 1);
		while (!x->go)
			assert_int_equal(prt_cond_wait(&x->c, &x->m), 0);
		assert_int_equal(prt_mutex_unlock(&x->m), 0);
		break;
	}
	atomic_store(&x->high_ran, 1);
	return NULL;
}

static void *xw_hog(void *arg)
{
	struct xw *x = arg;
	struct cap c;
	uint64_t v = 5;

	cap_init(&c);
	atomic_store(&x->hog_running, 1);
	while (!atomic_load_explicit(&x->high_ran, memory_order_relaxed) && !cap_hit(&c))
		v = spin_work(v, 4096);
	sink = v;
	x->high_seen_by_hog = atomic_load(&x->high_ran);
	return NULL;
}

static void *xw_waker(void *arg)
{
	struct xw *x = arg;

	if (x->mode == XW_UNLOCK)
		assert_int_equal(prt_mutex_lock(&x->m), 0);
	atomic_store(&x->waker_ready, 1);
	while (!atomic_load(&x->hog_running) || !atomic_load(&x->high_waits))
		prt_sleep_ns(100 * 1000);
	switch (x->mode) {
	case XW_UNPARK:
		prt_unpark(x->high);
		break;
	case XW_UNLOCK:
		assert_int_equal(prt_mutex_unlock(&x->m), 0);
		break;
	case XW_SIGNAL:
		assert_int_equal(prt_mutex_lock(&x->m), 0);
		x->go = true;
		assert_int_equal(prt_cond_signal(&x->c), 0);
		assert_int_equal(prt_mutex_unlock(&x->m), 0);
		break;
	}
	return NULL;
}

/*
 * Two workers: a fiber on worker 0 wakes a fiber at 24 kept on worker 1
 * (an unpark, a mutex unlock, a condvar signal), where a hog at 8 runs:
 * it runs before the hog ends (a signal to worker 1; no time slice is
 * involved: nothing else of 8 waits there).
 */
static void test_cross_worker_wakeup(void **state)
{
	(void)state;
	for (int mode = 0; mode < XW_MODES; mode++) {
		struct xw x = { .mode = mode, .m = PRT_MUTEX_INITIALIZER, .c = PRT_COND_INITIALIZER };
		prt_runtime_t *rt;
		prt_fiber_t hog, waker;

		if (!(rt = rt_preempt(2, PRT_PREEMPT_QUANTUM_DEFAULT)))
			skip();
		waker = spawn_at(rt, 8, 0, xw_waker, &x);
		while (!atomic_load(&x.waker_ready))
			usleep(100);
		x.high = spawn_at(rt, 24, 1, xw_high, &x);
		while (!atomic_load(&x.high_waits))
			usleep(100);
		hog = spawn_at(rt, 8, 1, xw_hog, &x);
		join_ok(waker);
		join_ok(hog);
		join_ok(x.high);
		assert_int_equal(x.high_seen_by_hog, 1);
		assert_true(stats_of(rt, 1).preemptions >= 1);
		assert_int_equal(prt_mutex_destroy(&x.m), 0);
		assert_int_equal(prt_cond_destroy(&x.c), 0);
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
}

/* ---- a priority raise ---------------------------------------------------------------- */

struct raise {
	atomic_int hog_running, low_ran;
	int low_seen_by_hog;
};

static void *raise_low(void *arg)
{
	atomic_store(&((struct raise *)arg)->low_ran, 1);
	return NULL;
}

static void *raise_hog(void *arg)
{
	struct raise *r = arg;
	struct cap c;
	uint64_t x = 17;

	cap_init(&c);
	atomic_store(&r->hog_running, 1);
	while (!atomic_load_explicit(&r->low_ran, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	r->low_seen_by_hog = atomic_load(&r->low_ran);
	return NULL;
}

/*
 * One worker: a fiber at 4 waits behind a hog at 8; a plain thread
 * raises it to 24: it runs before the hog ends (prt_fiber_set_priority
 * of a queued fiber is a wakeup like any other).
 */
static void test_priority_raise_preempts(void **state)
{
	struct raise r = { 0 };
	prt_runtime_t *rt;
	prt_fiber_t hog, low;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	hog = spawn_at(rt, 8, 0, raise_hog, &r);
	low = spawn_at(rt, 4, 0, raise_low, &r);
	while (!atomic_load(&r.hog_running))
		usleep(100);
	assert_int_equal(prt_fiber_set_priority(low, 24), 0);
	join_ok(hog);
	join_ok(low);
	assert_int_equal(r.low_seen_by_hog, 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * The reverse: the hog at 24 is lowered to 4 below a fiber at 8 queued
 * behind it, by a plain thread, or by the hog itself (self != 0); the
 * fiber at 8 runs before the hog ends (the kernel reschedules a task
 * whose priority drops below a queued one's, __sched_setscheduler).
 */
struct lower {
	struct raise r;
	prt_fiber_t hog;
	int self;
};

static void *lower_hog(void *arg)
{
	struct lower *l = arg;
	struct cap c;
	uint64_t x = 17;

	cap_init(&c);
	if (l->self)
		assert_int_equal(prt_fiber_set_priority(prt_self(), 4), 0);
	atomic_store(&l->r.hog_running, 1);
	while (!atomic_load_explicit(&l->r.low_ran, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	l->r.low_seen_by_hog = atomic_load(&l->r.low_ran);
	return NULL;
}

static void test_priority_lower_preempts(void **state)
{
	(void)state;
	for (int self = 0; self < 2; self++) {
		struct lower l = { .self = self };
		prt_runtime_t *rt;
		prt_fiber_t other;

		if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
			skip();
		l.hog = spawn_at(rt, 24, 0, lower_hog, &l);
		while (!atomic_load(&l.r.hog_running))
			usleep(100);
		other = spawn_at(rt, 8, 0, raise_low, &l.r);
		if (!self)
			assert_int_equal(prt_fiber_set_priority(l.hog, 4), 0);
		join_ok(l.hog);
		join_ok(other);
		assert_int_equal(l.r.low_seen_by_hog, 1);
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
}

/*
 * One worker: a low owner hogs in its critical section; a high fiber's
 * timed lock makes the pick run the owner in its place (proxy
 * execution). When the timeout comes, the high fiber stops waiting, so
 * the owner must stop running for it: the high fiber's lock call returns
 * ETIMEDOUT while the owner still hogs.
 */
struct dto {
	prt_mutex_t m;
	atomic_int locked, high_done;
	int high_err, done_seen_by_owner;
};

static void *dto_owner(void *arg)
{
	struct dto *d = arg;
	struct cap c;
	uint64_t x = 3;

	assert_int_equal(prt_mutex_lock(&d->m), 0);
	atomic_store(&d->locked, 1);
	cap_init(&c);
	while (!atomic_load_explicit(&d->high_done, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	d->done_seen_by_owner = atomic_load(&d->high_done);
	assert_int_equal(prt_mutex_unlock(&d->m), 0);
	return NULL;
}

static void *dto_high(void *arg)
{
	struct dto *d = arg;

	d->high_err = prt_mutex_timedlock_ns(&d->m, 5 * 1000 * 1000);
	atomic_store(&d->high_done, 1);
	return NULL;
}

static void test_donor_timeout_behind_proxy(void **state)
{
	struct dto d = { .m = PRT_MUTEX_INITIALIZER };
	prt_runtime_t *rt;
	prt_fiber_t owner, high;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	owner = spawn_at(rt, 2, 0, dto_owner, &d);
	while (!atomic_load(&d.locked))
		usleep(100);
	high = spawn_at(rt, 20, 0, dto_high, &d);
	join_ok(high);
	join_ok(owner);
	assert_int_equal(d.high_err, ETIMEDOUT);
	assert_int_equal(d.done_seen_by_owner, 1);
	assert_true(stats_of(rt, 0).proxy_picks > 0);
	assert_int_equal(prt_mutex_destroy(&d.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A link in the middle of a chain leaves it (a review: H waits on m2,
 * held by B, which waits on m1, held by A, which computes; B's timedlock
 * expired, or a plain thread cancelled B, and A went on running in H's
 * place to the end of its critical section, the worker serving H's
 * priority for a fiber nobody waited for). Once B's wait ends, B must
 * run for H and unlock m2 while A still holds m1.
 */
struct chain {
	prt_mutex_t m1, m2;
	atomic_int a_locked, b_locked, h_got, stop;
	bool cancel;
	int b_err, a_saw_h;
};

static void *chain_a(void *arg)
{
	struct chain *c = arg;
	struct cap cp;
	uint64_t x = 5;

	assert_int_equal(prt_mutex_lock(&c->m1), 0);
	atomic_store(&c->a_locked, 1);
	cap_init(&cp);
	while (!atomic_load_explicit(&c->stop, memory_order_relaxed) && !cap_hit(&cp))
		x = spin_work(x, 4096);
	sink_put(x);
	c->a_saw_h = atomic_load(&c->h_got);
	assert_int_equal(prt_mutex_unlock(&c->m1), 0);
	return NULL;
}

static void *chain_b(void *arg)
{
	struct chain *c = arg;

	assert_int_equal(prt_mutex_lock(&c->m2), 0);
	atomic_store(&c->b_locked, 1);
	c->b_err = c->cancel ? prt_mutex_lock(&c->m1) : prt_mutex_timedlock_ns(&c->m1, 10 * 1000 * 1000);
	if (!c->b_err)
		assert_int_equal(prt_mutex_unlock(&c->m1), 0);
	assert_int_equal(prt_mutex_unlock(&c->m2), 0);
	return NULL;
}

static void *chain_h(void *arg)
{
	struct chain *c = arg;

	assert_int_equal(prt_mutex_lock(&c->m2), 0);
	atomic_store(&c->h_got, 1);
	assert_int_equal(prt_mutex_unlock(&c->m2), 0);
	return NULL;
}

static void chain_link_leaves(bool cancel)
{
	struct chain c = { .m1 = PRT_MUTEX_INITIALIZER, .m2 = PRT_MUTEX_INITIALIZER, .cancel = cancel };
	prt_fiber_t a, b, h;
	prt_runtime_t *rt;

	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	a = spawn_at(rt, 2, 0, chain_a, &c);
	while (!atomic_load(&c.a_locked))
		usleep(100);
	b = spawn_at(rt, 10, 0, chain_b, &c); /* outranks A: runs, takes m2, waits on m1 */
	while (!atomic_load(&c.b_locked))
		usleep(100);
	h = spawn_at(rt, 30, 0, chain_h, &c); /* waits on m2: A runs for H */
	if (cancel) {
		usleep(10 * 1000);
		/* From this plain thread: it holds B's worker's lock to end the wait. */
		assert_int_equal(prt_cancel(b), 0);
	}
	while (!atomic_load(&c.h_got))
		usleep(1000);
	atomic_store(&c.stop, 1);
	join_ok(h);
	join_ok(b);
	join_ok(a);
	assert_int_equal(c.b_err, cancel ? ECANCELED : ETIMEDOUT);
	assert_int_equal(c.a_saw_h, 1);
	assert_true(stats_of(rt, 0).proxy_picks > 0);
	assert_int_equal(prt_mutex_destroy(&c.m1), 0);
	assert_int_equal(prt_mutex_destroy(&c.m2), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_chain_link_times_out(void **state)
{
	(void)state;
	chain_link_leaves(false);
}

static void test_chain_link_cancelled(void **state)
{
	(void)state;
	chain_link_leaves(true);
}

/* ---- no migration on preemption --------------------------------------------------------- */

struct aff {
	atomic_int stop;
	int moved_while_running, final_worker;
};

static void *aff_a(void *arg)
{
	struct aff *a = arg;
	int w0 = prt_worker_index();
	struct cap c;
	uint64_t x = 19;

	cap_init(&c);
	while (!atomic_load_explicit(&a->stop, memory_order_relaxed) && !cap_hit(&c)) {
		x = spin_work(x, 4096);
		if (prt_worker_index() != w0) {
			a->moved_while_running = 1; /* resumed elsewhere with no scheduling point */
			break;
		}
	}
	sink = x;
	prt_yield(); /* its next scheduling point: now it moves */
	a->final_worker = prt_worker_index();
	return NULL;
}

static void *aff_b(void *arg)
{
	struct aff *a = arg;
	struct cap c;
	uint64_t x = 23;

	cap_init(&c);
	while (!atomic_load_explicit(&a->stop, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink = x;
	return NULL;
}

/*
 * Two workers; two equal hogs share worker 0 in time slices; one is
 * moved to worker 1 (prt_fiber_set_affinity) while they run. Preempted
 * later, it resumes on worker 0 all the same (compiled code may hold a
 * thread-local address), and moves at its next scheduling point.
 */
static void test_no_migration_on_preemption(void **state)
{
	struct aff a = { 0 };
	prt_workerset_t one;
	prt_runtime_t *rt;
	prt_fiber_t fa, fb;
	uint64_t slices0;
	struct cap c;

	(void)state;
	if (!(rt = rt_preempt(2, 200 * 1000)))
		skip();
	fa = spawn_at(rt, 16, 0, aff_a, &a);
	fb = spawn_at(rt, 16, 0, aff_b, &a);
	cap_init(&c);
	while (stats_of(rt, 0).time_slices < 2 && test_mono_ns() < c.until)
		usleep(1000);
	prt_workerset_zero(&one);
	prt_workerset_add(&one, 1);
	assert_int_equal(prt_fiber_set_affinity(fa, &one), 0);
	slices0 = stats_of(rt, 0).time_slices;
	while (stats_of(rt, 0).time_slices < slices0 + 6 && test_mono_ns() < c.until)
		usleep(1000);
	atomic_store(&a.stop, 1);
	join_ok(fa);
	join_ok(fb);
	assert_int_equal(a.moved_while_running, 0);
	assert_int_equal(a.final_worker, 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- prt_preempt_disable ------------------------------------------------------------ */

struct dis {
	prt_runtime_t *rt;
	atomic_int rounds;
	atomic_int stop;
	int in_region_before, in_region_after, after_enable;
	uint64_t deferred_in_region;
	int rc_disable, rc_enable, rc_extra_enable;
};

static void *dis_sleeper(void *arg)
{
	struct dis *d = arg;

	while (!atomic_load(&d->stop)) {
		prt_sleep_ns(200 * 1000);
		atomic_fetch_add(&d->rounds, 1);
	}
	return NULL;
}

static void *dis_hog(void *arg)
{
	struct dis *d = arg;
	prt_worker_stats_t st;
	uint64_t x = 9, deferred0;
	struct cap c;

	/* Let the sleeper start its loop. */
	while (atomic_load(&d->rounds) < 2)
		test_yield_wait();
	prt_worker_stats(d->rt, 0, &st);
	deferred0 = st.preempt_deferred;
	d->rc_disable = prt_preempt_disable();
	d->in_region_before = atomic_load(&d->rounds);
	cap_init(&c);
	/* Until an interrupt came and was refused, and some more. */
	do {
		for (int i = 0; i < 64; i++)
			x = spin_work(x, 4096);
		prt_worker_stats(d->rt, 0, &st);
	} while (st.preempt_deferred < deferred0 + 1 && !cap_hit(&c));
	for (int i = 0; i < 2000; i++)
		x = spin_work(x, 4096);
	d->deferred_in_region = st.preempt_deferred - deferred0;
	d->in_region_after = atomic_load(&d->rounds);
	d->rc_enable = prt_preempt_enable(); /* the sleeper runs here */
	d->after_enable = atomic_load(&d->rounds);
	d->rc_extra_enable = prt_preempt_enable();
	atomic_store(&d->stop, 1);
	sink = x;
	return NULL;
}

/* A region between prt_preempt_disable and _enable is never interrupted; the preemption happens at its end. */
static void test_disable_region(void **state)
{
	struct dis d = { 0 };
	prt_runtime_t *rt;
	prt_fiber_t s, h;

	(void)state;
	assert_int_equal(prt_preempt_disable(), -EPERM); /* a plain thread */
	assert_int_equal(prt_preempt_enable(), -EPERM);
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	d.rt = rt;
	s = spawn_at(rt, 24, 0, dis_sleeper, &d);
	h = spawn_at(rt, 8, 0, dis_hog, &d);
	join_ok(h);
	join_ok(s);
	assert_int_equal(d.rc_disable, 0);
	assert_int_equal(d.rc_enable, 0);
	assert_int_equal(d.rc_extra_enable, -EINVAL);
	assert_true(d.deferred_in_region >= 1);
	assert_int_equal(d.in_region_after, d.in_region_before);
	assert_true(d.after_enable > d.in_region_after);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- an application's signal handler on the alternate stack ------------------------------ */

struct althand {
	prt_runtime_t *rt;
	atomic_int rounds, stop;
	int before, after;
	uint64_t deferred;
	bool masked; /* the preemption signal was blocked in the handler */
	bool on_fiber; /* the handler runs on the fiber's stack (no SA_ONSTACK) */
};

static struct althand *althand_now;

static void althand_usr1(int sig)
{
	struct althand *a = althand_now;
	prt_worker_stats_t st;
	uint64_t x = 11, d0;
	struct cap c;
	sigset_t now;

	(void)sig;
	/* ThreadSanitizer runs an application's handler with every signal blocked. */
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	a->masked = sigismember(&now, SIGRTMAX - 3) == 1; /* the default preemption signal */
	prt_worker_stats(a->rt, 0, &st);
	d0 = st.preempt_deferred;
	a->before = atomic_load(&a->rounds);
	cap_init(&c);
	do {
		for (int i = 0; i < 64; i++)
			x = spin_work(x, 4096);
		prt_worker_stats(a->rt, 0, &st);
	} while (st.preempt_deferred < d0 + 3 && !a->masked && !cap_hit(&c));
	a->deferred = st.preempt_deferred - d0;
	a->after = atomic_load(&a->rounds);
	sink = x;
}

static void *althand_sleeper(void *arg)
{
	struct althand *a = arg;

	while (!atomic_load(&a->stop)) {
		prt_sleep_ns(200 * 1000);
		atomic_fetch_add(&a->rounds, 1);
	}
	return NULL;
}

static void *althand_fiber(void *arg)
{
	struct althand *a = arg;
	struct sigaction sa, old;

	while (atomic_load(&a->rounds) < 2)
		test_yield_wait();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = althand_usr1;
	sa.sa_flags = a->on_fiber ? 0 : SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, &old);
	althand_now = a;
	raise(SIGUSR1); /* the handler runs on the worker's alternate stack */
	sigaction(SIGUSR1, &old, NULL);
	atomic_store(&a->stop, 1);
	return NULL;
}

/*
 * An application's signal handler running on the worker's alternate
 * stack is never preempted (its frame is not the fiber's: switching
 * fibers there would leave the alternate stack in use): the interrupts
 * that come meanwhile are deferred, and a higher fiber waits.
 */
static void app_handler_not_preempted(bool on_fiber)
{
	struct althand a = { .on_fiber = on_fiber };
	prt_runtime_t *rt;
	prt_fiber_t s, h;

	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	a.rt = rt;
	s = spawn_at(rt, 24, 0, althand_sleeper, &a);
	h = spawn_at(rt, 8, 0, althand_fiber, &a);
	join_ok(h);
	join_ok(s);
	/* Masked: no interrupt comes, and the fiber is not preempted either. */
	assert_true(a.deferred >= 3 || a.masked);
	assert_int_equal(a.after, a.before);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_app_handler_not_preempted(void **state)
{
	(void)state;
	app_handler_not_preempted(false);
}

/*
 * The same handler on the fiber's own stack (no SA_ONSTACK, as a
 * sampling profiler's): its code is the application's and its stack the
 * fiber's, but it may have interrupted the library holding a run queue's
 * lock. The interrupted context's signal mask (the handler's signal
 * blocked) tells: deferred. (A review's profiler-like handler was
 * preempted there: a dead fiber resumed, or a deadlock on that lock.)
 */
static void test_app_handler_on_fiber_stack_not_preempted(void **state)
{
	(void)state;
	app_handler_not_preempted(true);
}

/* ---- every register survives ---------------------------------------------------------- */

#define REG_FIBERS 4
#define REG_PREEMPTIONS 2000

/*
 * One round of arithmetic in the calling thread's FP modes: SSE doubles
 * (MXCSR rounding and flush-to-zero), x87 long doubles (x87 precision
 * and rounding) and integers, mixed into one checksum.
 */
static uint64_t reg_round_scalar(uint64_t seed)
{
	volatile double vd = (double)(seed % 1000 + 1) / 7.0;
	volatile long double vl = (long double)(seed % 977 + 3) / 11.0L;
	double d = vd, e = 1.0 / 3.0;
	long double l = vl;
	uint64_t i = seed, h = 0;

	for (int k = 0; k < 2000; k++) {
		d = d * 1.0000001 + e / (d + 1.5);
		e = e * 0.9999999 + 1e-310 * (k & 1); /* denormals: flush-to-zero shows */
		l = l * 1.0000001L + 1.0L / (l + 2.5L);
		i = i * 2862933555777941757ull + 3037000493ull;
		i ^= i >> 29;
	}
	memcpy(&h, &d, sizeof(h));
	h ^= i;
	{
		uint64_t w[2] = { 0, 0 };

		memcpy(w, &l, sizeof(l) < sizeof(w) ? sizeof(l) : sizeof(w));
		h = h * 31 + w[0] + (w[1] & 0xffff);
	}
	{
		uint64_t ebits;

		memcpy(&ebits, &e, sizeof(ebits));
		h = h * 31 + ebits;
	}
	return h;
}

#if defined(__x86_64__)
static bool have_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* The same in 256-bit vectors, values held in ymm registers across the loop. */
__attribute__((target("avx2,fma"))) static uint64_t reg_round_avx(uint64_t seed)
{
	__m256d a = _mm256_set_pd((double)(seed % 101) + 0.5, 1.25, 2.5 + (double)(seed % 7), 3.75);
	__m256d b = _mm256_set1_pd(1.0000001), c = _mm256_set1_pd(1.0 / 3.0);
	__m256i v = _mm256_set_epi64x((long long)seed, (long long)(seed * 3), 17, 99);
	__m256i m = _mm256_set1_epi64x(0x9e3779b97f4a7c15ll);
	double out[4];
	uint64_t iv[4], h = 0;

	for (int k = 0; k < 2000; k++) {
		a = _mm256_fmadd_pd(a, b, _mm256_div_pd(c, _mm256_add_pd(a, b)));
		v = _mm256_add_epi64(_mm256_xor_si256(v, _mm256_srli_epi64(v, 13)), m);
	}
	_mm256_storeu_pd(out, a);
	_mm256_storeu_si256((__m256i *)iv, v);
	for (int k = 0; k < 4; k++) {
		uint64_t bits;

		memcpy(&bits, &out[k], sizeof(bits));
		h = h * 31 + bits + iv[k];
	}
	return h;
}
#endif

struct fpmode {
	unsigned mxcsr;  /* x86-64; aarch64: FPCR */
	unsigned x87cw;
};

static const struct fpmode fp_modes[REG_FIBERS] = {
#if defined(__x86_64__)
	{ 0x1f80, 0x037f }, /* nearest; x87 extended */
	{ 0x3f80, 0x067f }, /* down; x87 double, down */
	{ 0x5f80, 0x087f }, /* up; x87 single, up */
	{ 0xff80, 0x0e7f }, /* toward zero with FTZ; x87 double, toward zero */
#else
	{ 0, 0 },
	{ 2u << 22, 0 },
	{ 1u << 22, 0 },
	{ (3u << 22) | (1u << 24), 0 },
#endif
};

static void fp_set(const struct fpmode *m)
{
#if defined(__x86_64__)
	unsigned mx = m->mxcsr;
	unsigned short cw = (unsigned short)m->x87cw;

	__asm__ volatile("ldmxcsr %0" : : "m"(mx));
	__asm__ volatile("fldcw %0" : : "m"(cw));
#else
	uint64_t v = m->mxcsr;

	__asm__ volatile("msr fpcr, %0" : : "r"(v));
#endif
}

static struct fpmode fp_get(void)
{
	struct fpmode m = { 0, 0 };
#if defined(__x86_64__)
	unsigned short cw;

	__asm__ volatile("stmxcsr %0" : "=m"(m.mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(cw));
	m.mxcsr &= ~0x3fu; /* the sticky flags are not the mode */
	m.x87cw = cw;
#else
	uint64_t v;

	__asm__ volatile("mrs %0, fpcr" : "=r"(v));
	m.mxcsr = (unsigned)v;
#endif
	return m;
}

static uint64_t reg_round(uint64_t seed, bool avx)
{
	uint64_t h = reg_round_scalar(seed);

#if defined(__x86_64__)
	if (avx)
		h ^= reg_round_avx(seed);
#else
	(void)avx;
#endif
	return h;
}

struct regs {
	atomic_int stop;
	bool avx;
	uint64_t ref[REG_FIBERS][16];
	long rounds[REG_FIBERS], bad[REG_FIBERS], mode_bad[REG_FIBERS];
};

struct reg_arg {
	struct regs *r;
	int me;
};

static void *reg_fiber(void *arg)
{
	struct reg_arg *a = arg;
	struct regs *r = a->r;
	const struct fpmode *m = &fp_modes[a->me];
	struct fpmode now;

	fp_set(m);
	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		for (int s = 0; s < 16; s++)
			if (reg_round((uint64_t)(a->me * 16 + s), r->avx) != r->ref[a->me][s])
				r->bad[a->me]++;
		now = fp_get();
		if (now.mxcsr != m->mxcsr || now.x87cw != m->x87cw)
			r->mode_bad[a->me]++;
		r->rounds[a->me]++;
	}
	return NULL;
}

/*
 * Four fibers of one priority on one worker, time slice 50 us, each in
 * its own rounding mode (MXCSR and the x87 control word), compute SSE
 * (and AVX2) double, x87 and integer arithmetic while being preempted
 * thousands of times: every result equals the one computed beforehand,
 * uninterrupted, in the same mode.
 */
static void test_registers_survive(void **state)
{
	static struct regs r;
	struct reg_arg args[REG_FIBERS];
	struct fpmode saved = fp_get();
	prt_fiber_t f[REG_FIBERS];
	prt_worker_stats_t st;
	prt_runtime_t *rt;
	struct cap c;

	(void)state;
	memset(&r, 0, sizeof(r));
#if defined(__x86_64__)
	r.avx = have_avx2();
#endif
	for (int i = 0; i < REG_FIBERS; i++) {
		fp_set(&fp_modes[i]);
		for (int s = 0; s < 16; s++)
			r.ref[i][s] = reg_round((uint64_t)(i * 16 + s), r.avx);
	}
	fp_set(&saved);
	/* The modes differ in what they compute, or this would test nothing. */
	assert_true(r.ref[0][1] != r.ref[1][1] && r.ref[1][1] != r.ref[2][1] &&
		    r.ref[0][1] != r.ref[3][1]);
	if (!(rt = rt_preempt(1, 50 * 1000)))
		skip();
	for (int i = 0; i < REG_FIBERS; i++) {
		args[i] = (struct reg_arg){ &r, i };
		f[i] = spawn_at(rt, 16, 0, reg_fiber, &args[i]);
	}
	cap_init(&c);
	do {
		usleep(10 * 1000);
		st = stats_of(rt, 0);
	} while (st.preemptions < REG_PREEMPTIONS && test_mono_ns() < c.until);
	atomic_store(&r.stop, 1);
	for (int i = 0; i < REG_FIBERS; i++)
		join_ok(f[i]);
	fprintf(stderr, "test_preempt: %llu preemptions (%llu deferred), avx2 %d\n",
		(unsigned long long)st.preemptions, (unsigned long long)st.preempt_deferred, r.avx);
	for (int i = 0; i < REG_FIBERS; i++)
		fprintf(stderr, "test_preempt: fiber %d: %ld rounds, %ld wrong, %ld in a wrong mode\n",
			i, r.rounds[i], r.bad[i], r.mode_bad[i]);
	assert_true(st.preemptions >= REG_PREEMPTIONS);
	for (int i = 0; i < REG_FIBERS; i++) {
		assert_true(r.rounds[i] > 0);
		assert_int_equal(r.bad[i], 0);
		assert_int_equal(r.mode_bad[i], 0);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- hogs in libc ----------------------------------------------------------------------- */

#define LIBC_HIGH_ROUNDS 200

struct libc_state {
	atomic_int highs_done;
	atomic_long bad;
	atomic_long hog_rounds;
	int nhigh;
};

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* malloc, memcpy, snprintf, qsort, free: each result checked. */
static long libc_round(uint64_t *seed)
{
	size_t n = 16 + (size_t)(*seed % 200);
	uint32_t *a = malloc(n * sizeof(*a)), *b = malloc(n * sizeof(*b));
	char buf[64], want[64];
	long bad = 0;

	if (!a || !b) {
		free(a);
		free(b);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		*seed = *seed * 6364136223846793005ull + 1;
		a[i] = (uint32_t)(*seed >> 33);
	}
	memcpy(b, a, n * sizeof(*a));
	qsort(b, n, sizeof(*b), cmp_u32);
	for (size_t i = 1; i < n; i++)
		bad += b[i - 1] > b[i];
	snprintf(buf, sizeof(buf), "%zu:%u:%u", n, b[0], b[n - 1]);
	{
		/* The same string built by hand. */
		uint32_t lo = a[0], hi = a[0];
		int k;

		for (size_t i = 1; i < n; i++) {
			lo = a[i] < lo ? a[i] : lo;
			hi = a[i] > hi ? a[i] : hi;
		}
		k = snprintf(want, sizeof(want), "%zu:%u:%u", n, lo, hi);
		bad += k <= 0 || strcmp(buf, want) != 0;
	}
	free(a);
	free(b);
	return bad;
}

static void *libc_hog(void *arg)
{
	struct libc_state *s = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;
	struct cap c;

	cap_init(&c);
	while (atomic_load_explicit(&s->highs_done, memory_order_relaxed) < s->nhigh &&
	       !cap_hit(&c)) {
		atomic_fetch_add(&s->bad, libc_round(&seed));
		atomic_fetch_add(&s->hog_rounds, 1);
	}
	return NULL;
}

static void *libc_high(void *arg)
{
	struct libc_state *s = arg;
	uint64_t seed = (uint64_t)(uintptr_t)&seed;

	for (int i = 0; i < LIBC_HIGH_ROUNDS; i++) {
		prt_sleep_ns(100 * 1000);
		atomic_fetch_add(&s->bad, libc_round(&seed));
	}
	atomic_fetch_add(&s->highs_done, 1);
	return NULL;
}

/*
 * Two workers: hogs at 8 that loop through malloc/free/snprintf/memcpy/
 * qsort next to fibers at 20 that do the same between short sleeps: no
 * deadlock (an interrupt inside libc is deferred), no corruption (ASan
 * builds check the heap), every fiber progresses.
 */
static void test_libc_hogs(void **state)
{
	struct libc_state s = { .nhigh = 2 };
	prt_fiber_t hogs[2], highs[2];
	prt_runtime_t *rt;
	uint64_t deferred = 0, preempted = 0;

	(void)state;
	if (!(rt = rt_preempt(2, 200 * 1000)))
		skip();
	for (int i = 0; i < 2; i++) {
		hogs[i] = spawn_at(rt, 8, i, libc_hog, &s);
		highs[i] = spawn_at(rt, 20, i, libc_high, &s);
	}
	for (int i = 0; i < 2; i++) {
		join_ok(highs[i]);
		join_ok(hogs[i]);
	}
	for (int i = 0; i < 2; i++) {
		deferred += stats_of(rt, i).preempt_deferred;
		preempted += stats_of(rt, i).preemptions;
	}
	fprintf(stderr, "test_preempt: libc hogs: %ld rounds, %llu preemptions, %llu deferred\n",
		atomic_load(&s.hog_rounds), (unsigned long long)preempted,
		(unsigned long long)deferred);
	assert_int_equal(atomic_load(&s.highs_done), 2);
	assert_int_equal(atomic_load(&s.bad), 0);
	assert_true(atomic_load(&s.hog_rounds) > 0);
	assert_true(preempted > 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- the signal: chained, shared by two runtimes, put back --------------------------------- */

static atomic_int app_handler_calls;

static void app_handler(int sig)
{
	(void)sig;
	atomic_fetch_add(&app_handler_calls, 1);
}

/*
 * Two preemptive runtimes share the signal's handler; one that is not
 * the runtime's goes to the application's handler; the first destroy
 * leaves the other preempting; the last puts the application's handler
 * back.
 */
static void test_signal_shared_and_restored(void **state)
{
	struct sigaction app, cur;
	struct behind b = { 0 };
	prt_runtime_t *rt1, *rt2;
	prt_fiber_t s, h;
	int sig = SIGRTMAX - 3;

	(void)state;
	memset(&app, 0, sizeof(app));
	app.sa_handler = app_handler;
	sigemptyset(&app.sa_mask);
	assert_int_equal(sigaction(sig, &app, NULL), 0);
	if (!(rt1 = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT))) {
		signal(sig, SIG_DFL);
		skip();
	}
	rt2 = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT);
	assert_non_null(rt2);
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(cur.sa_flags & SA_SIGINFO);
	/* Not from the runtime (a plain thread raises it): the application's. */
	raise(sig);
	assert_int_equal(atomic_load(&app_handler_calls), 1);
	assert_int_equal(prt_runtime_destroy(rt1), 0);
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(cur.sa_flags & SA_SIGINFO); /* rt2 still has it */
	s = spawn_at(rt2, 24, 0, sleeper, &b);
	h = spawn_at(rt2, 16, 0, hog_until_rounds, &b);
	join_ok(h);
	join_ok(s);
	assert_int_equal(b.rounds_seen_by_hog, SLEEPER_ROUNDS);
	assert_int_equal(prt_runtime_destroy(rt2), 0);
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(!(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == app_handler);
	signal(sig, SIG_DFL);
}

/*
 * A signal that is not the runtime's goes to the application's handler
 * as the kernel would have run it (a review): its sa_mask blocked while
 * it runs, the signal itself too unless SA_NODEFER, and SA_RESETHAND
 * makes the disposition SIG_DFL at the first call (it stayed, ran at
 * every later signal, and was put back at the destroy as if it had
 * never run). The mask at the interruption is back after it.
 */
static atomic_int ch_calls, ch_bad;
static int ch_self_blocked; /* whether the handler should find its own signal blocked */

static void ch_handler(int sig, siginfo_t *si, void *uc)
{
	sigset_t now;

	(void)si;
	(void)uc;
	atomic_fetch_add(&ch_calls, 1);
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	if (!sigismember(&now, SIGUSR1))
		atomic_fetch_or(&ch_bad, 1); /* its sa_mask */
	if (sigismember(&now, sig) != ch_self_blocked)
		atomic_fetch_or(&ch_bad, 2);
}

/* Install ch_handler with @flags, mask {SIGUSR1}; a runtime; raise @raises times: calls seen. */
static int chain_run(int sig, int flags, int raises, prt_runtime_t **rtp)
{
	struct sigaction app;
	sigset_t after;

	memset(&app, 0, sizeof(app));
	app.sa_sigaction = ch_handler;
	app.sa_flags = SA_SIGINFO | flags;
	sigemptyset(&app.sa_mask);
	sigaddset(&app.sa_mask, SIGUSR1);
	ch_self_blocked = !(flags & SA_NODEFER);
	atomic_store(&ch_calls, 0);
	atomic_store(&ch_bad, 0);
	assert_int_equal(sigaction(sig, &app, NULL), 0);
	*rtp = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT);
	if (!*rtp)
		return -1;
	for (int i = 0; i < raises; i++)
		raise(sig); /* a plain thread: not the runtime's */
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	assert_false(sigismember(&after, SIGUSR1));
	assert_false(sigismember(&after, sig));
	assert_int_equal(atomic_load(&ch_bad), 0);
	return atomic_load(&ch_calls);
}

static void test_signal_chained_as_the_kernel_would(void **state)
{
	struct sigaction cur;
	prt_runtime_t *rt;
	int sig = SIGRTMAX - 3;

	(void)state;
	/* ThreadSanitizer calls an application's handler later, from its own wrapper. */
	if (PRT_TEST_TSAN)
		skip();
	/* One-shot: called once; the next is dropped (SIG_DFL: an RT signal would end us). */
	if (chain_run(sig, SA_RESETHAND, 2, &rt) < 0) {
		signal(sig, SIG_DFL);
		skip();
	}
	assert_int_equal(atomic_load(&ch_calls), 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(cur.sa_handler == SIG_DFL); /* it ran: not put back */
	/* SA_NODEFER: its own signal not blocked in it. */
	assert_int_equal(chain_run(sig, SA_NODEFER, 2, &rt), 2);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(cur.sa_sigaction == ch_handler);
	/* Neither: the common case. */
	assert_int_equal(chain_run(sig, 0, 3, &rt), 3);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	signal(sig, SIG_DFL);
}

/*
 * An application's handler with SA_NODEFER and an empty sa_mask, on the
 * alternate stack (as the README advises for one), that calls
 * prt_now_ns() while a preemption is pending (a review): no switch
 * inside it. Its mask is the worker's (the signal is not blocked in it),
 * so only its stack tells it is a handler; prt_now_ns() switched there
 * once the chain unblocked the signal, and the next signal wrote over
 * its frames (SIGSEGV, 5/5). Both on the preemption signal (chained)
 * and on one of its own.
 */
static atomic_int nd_in, nd_seen, nd_calls, nd_stop;

static void nd_handler(int sig)
{
	uint64_t end;

	(void)sig;
	atomic_fetch_add(&nd_calls, 1);
	atomic_store(&nd_in, 1);
	end = prt_now_ns() + 2000000;
	while (prt_now_ns() < end)
		;
	atomic_store(&nd_in, 0);
}

static void *nd_other(void *a)
{
	(void)a;
	while (!atomic_load(&nd_stop))
		if (atomic_load(&nd_in))
			atomic_fetch_add(&nd_seen, 1);
	return NULL;
}

static void *nd_raiser(void *a)
{
	for (int i = 0; i < 10; i++)
		raise((int)(intptr_t)a);
	return NULL;
}

static void nodefer_handler_not_switched(int sig, bool before)
{
	struct sigaction sa, old;
	prt_runtime_t *rt;
	prt_fiber_t o, r;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = nd_handler;
	sa.sa_flags = SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	atomic_store(&nd_in, 0);
	atomic_store(&nd_seen, 0);
	atomic_store(&nd_calls, 0);
	atomic_store(&nd_stop, 0);
	if (before)
		assert_int_equal(sigaction(sig, &sa, &old), 0);
	if (!(rt = rt_preempt(1, 50 * 1000))) {
		if (before)
			sigaction(sig, &old, NULL);
		skip();
	}
	if (!before)
		assert_int_equal(sigaction(sig, &sa, &old), 0);
	o = spawn_at(rt, 16, 0, nd_other, NULL);
	r = spawn_at(rt, 16, 0, nd_raiser, (void *)(intptr_t)sig);
	join_ok(r);
	atomic_store(&nd_stop, 1);
	join_ok(o);
	assert_int_equal(atomic_load(&nd_calls), 10);
	assert_int_equal(atomic_load(&nd_seen), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(sigaction(sig, &old, NULL), 0);
}

static void test_nodefer_handler_not_switched(void **state)
{
	(void)state;
	/* ThreadSanitizer runs an application's handler later, from its own wrapper. */
	if (PRT_TEST_TSAN)
		skip();
	nodefer_handler_not_switched(SIGRTMAX - 3, true);
	nodefer_handler_not_switched(SIGUSR1, false);
}

/*
 * fork() from a fiber while the application's fork handlers compute (a
 * review): one registered before the runtime's runs while the library's
 * fork locks are held, and an interrupt there took the preemption lock
 * again on the same thread: the worker deadlocked (5/5 at 50 us, with
 * a hog sharing the worker). Now a forking fiber is not preempted until
 * the fork is done. A prepare handler and a parent handler, each ~3 ms.
 */
static atomic_int fa_on;
static volatile unsigned long fa_sink;

static void fa_busy(void)
{
	uint64_t end;

	if (!atomic_load(&fa_on))
		return;
	end = prt_now_ns() + 3000000;
	while (prt_now_ns() < end)
		for (int i = 0; i < 1000; i++)
			fa_sink += (unsigned long)i;
}

static void *fa_hog(void *a)
{
	while (atomic_load(&fa_on) == 1)
		fa_sink++;
	return a;
}

static void *fa_forker(void *a)
{
	for (int i = 0; i < 5; i++) {
		int st = 0;
		pid_t p = fork();

		if (p == 0)
			_exit(7);
		FIBER_CHECK(p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 7);
	}
	return a;
}

/*
 * Registered by main(), before any runtime's: the library's handlers then
 * run before these at prepare (their locks held), after them at parent.
 */
static void fa_register(void)
{
	pthread_atfork(fa_busy, fa_busy, NULL);
}

static void test_fork_handlers_not_preempted(void **state)
{
	prt_runtime_t *rt;
	prt_fiber_t h, f;

	(void)state;
	/* TSan: a forked child of a threaded process; valgrind: the child's leak check. */
	if (PRT_TEST_TSAN || test_under_valgrind())
		skip();
	if (!(rt = rt_preempt(1, 50 * 1000)))
		skip();
	atomic_store(&fa_on, 1);
	h = spawn_at(rt, 16, 0, fa_hog, NULL);
	f = spawn_at(rt, 16, 0, fa_forker, NULL);
	join_ok(f);
	atomic_store(&fa_on, 2);
	join_ok(h);
	atomic_store(&fa_on, 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- configuration --------------------------------------------------------------------------- */

static void test_config(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	(void)state;
	prt_runtime_config_init(&cfg);
	assert_int_equal(cfg.preempt_quantum_ns, PRT_PREEMPT_QUANTUM_DEFAULT); /* preemptive by default */
	assert_int_equal(cfg.preempt_signal, 0);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = PRT_PREEMPT_QUANTUM_MIN - 1;
	assert_int_equal(prt_runtime_create(&rt, &cfg), -EINVAL);
	cfg.preempt_quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT;
	cfg.preempt_signal = SIGSEGV;
	assert_int_equal(prt_runtime_create(&rt, &cfg), -EINVAL);
	/* The C library's own signals, between 32 and SIGRTMIN (glibc: 32, 33). */
	for (int sig = 32; sig < SIGRTMIN; sig++) {
		cfg.preempt_signal = sig;
		assert_int_equal(prt_runtime_create(&rt, &cfg), -EINVAL);
		cfg.preempt_signal = 0;
		cfg.dump_signal = sig;
		assert_int_equal(prt_runtime_create(&rt, &cfg), -EINVAL);
		cfg.dump_signal = 0;
	}
	cfg.preempt_signal = SIGRTMIN + 1;
	cfg.dump_signal = SIGRTMIN + 1;
	assert_int_equal(prt_runtime_create(&rt, &cfg), -EINVAL);
	assert_null(rt);
	assert_int_equal(prt_runtime_preemptive(NULL, NULL), -EINVAL);
	/* A caller compiled before the preemption fields: cooperative. */
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.size = offsetof(prt_runtime_config_t, preempt_quantum_ns);
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_int_equal(prt_runtime_preemptive(rt, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	/*
	 * No configuration at all: preemptive with the default slice (unless
	 * the environment variable says otherwise, as the suite's
	 * cooperative runs do, or preemption is unavailable here: then the
	 * notice says why).
	 */
	if (!getenv("PRT_PREEMPT_QUANTUM_NS")) {
		uint64_t q = 0;
		int r;

		assert_int_equal(prt_runtime_create(&rt, NULL), 0);
		r = prt_runtime_preemptive(rt, &q);
		if (r == 1)
			assert_int_equal(q, PRT_PREEMPT_QUANTUM_DEFAULT);
		else
			assert_non_null(prt_runtime_notice(rt));
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
	/*
	 * PRT_PREEMPT_QUANTUM_NS that is not a plain number of ns is
	 * ignored: a sign after spaces once read as 2^64 - 1 (strtoull).
	 */
	{
		static const char *const bad[] = { " -1", "-1", "\t-5", "1e6", "0x100000", "5 ",
						   "99999999999999999999", "", "+2000000" };
		const char *saved = getenv("PRT_PREEMPT_QUANTUM_NS");
		char *keep = saved ? strdup(saved) : NULL;

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			uint64_t q = 0;
			int r;

			setenv("PRT_PREEMPT_QUANTUM_NS", bad[i], 1);
			prt_runtime_config_init(&cfg);
			cfg.nworkers = 1;
			cfg.preempt_quantum_ns = 2000000;
			assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
			r = prt_runtime_preemptive(rt, &q);
			if (r == 1 && q != 2000000)
				fprintf(stderr, "  PRT_PREEMPT_QUANTUM_NS=\"%s\" gave %llu\n", bad[i],
					(unsigned long long)q);
			if (r == 1)
				assert_int_equal(q, 2000000);
			assert_int_equal(prt_runtime_destroy(rt), 0);
		}
		if (keep) {
			setenv("PRT_PREEMPT_QUANTUM_NS", keep, 1);
			free(keep);
		} else {
			unsetenv("PRT_PREEMPT_QUANTUM_NS");
		}
	}
}

/* Create a runtime of one worker with @q (0: cooperative), @psig and @dsig: prt_runtime_create's result. */
static int rt_signals(prt_runtime_t **rt, uint64_t q, int psig, int dsig)
{
	prt_runtime_config_t cfg;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.preempt_quantum_ns = q;
	cfg.preempt_signal = psig;
	cfg.dump_signal = dsig;
	*rt = NULL;
	return prt_runtime_create(rt, &cfg);
}

/*
 * A runtime using @sig for dumps (@dump_first) or preemption, then one
 * using it in the other role: refused with -EBUSY if the preemptive one
 * preempts (@preempts), else both live. The application's handler is
 * back after them.
 */
static void roles_clash(int sig, bool dump_first, bool preempts)
{
	uint64_t q1 = dump_first ? 0 : PRT_PREEMPT_QUANTUM_DEFAULT;
	uint64_t q2 = dump_first ? PRT_PREEMPT_QUANTUM_DEFAULT : 0;
	prt_runtime_t *rt1, *rt2;
	struct sigaction cur;

	assert_int_equal(rt_signals(&rt1, q1, q1 ? sig : 0, q1 ? 0 : sig), 0);
	assert_int_equal(rt_signals(&rt2, q2, q2 ? sig : 0, q2 ? 0 : sig), preempts ? -EBUSY : 0);
	if (!preempts)
		assert_int_equal(prt_runtime_destroy(rt2), 0);
	else
		assert_null(rt2);
	assert_int_equal(prt_runtime_destroy(rt1), 0);
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(cur.sa_handler == app_handler);
}

/*
 * One signal has one role across runtimes: a dump signal that another
 * live runtime preempts with, or the reverse, is refused (-EBUSY). It
 * was taken: the dump handler replaced the other runtime's preemption
 * handler (no more time slices there, a dump at each), and the last
 * destroy put back the other's handler for the application's. A
 * cooperative runtime takes no preemption signal: it may dump with
 * the default one.
 */
static void test_signal_roles_across_runtimes(void **state)
{
	const char *saved = getenv("PRT_PREEMPT_QUANTUM_NS");
	char *keep = saved ? strdup(saved) : NULL;
	int sig = SIGRTMIN + 2;
	prt_runtime_t *rt1, *rt2;
	struct sigaction sa, cur;
	bool preempts;

	(void)state;
	unsetenv("PRT_PREEMPT_QUANTUM_NS");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = app_handler;
	assert_int_equal(sigaction(sig, &sa, NULL), 0);
	atomic_store(&app_handler_calls, 0);

	/* Preemption first, then a dump on its signal; then the other way round. */
	assert_int_equal(rt_signals(&rt1, PRT_PREEMPT_QUANTUM_DEFAULT, sig, 0), 0);
	preempts = prt_runtime_preemptive(rt1, NULL) == 1;
	assert_int_equal(prt_runtime_destroy(rt1), 0);
	roles_clash(sig, false, preempts);
	roles_clash(sig, true, preempts);
	/* The application's handler is back, and gets the signal. */
	assert_int_equal(sigaction(sig, NULL, &cur), 0);
	assert_true(cur.sa_handler == app_handler);
	raise(sig);
	assert_int_equal(atomic_load(&app_handler_calls), 1);

	/* Two runtimes in the same role still share a signal; the role is free again after them. */
	assert_int_equal(rt_signals(&rt1, 0, 0, sig), 0);
	assert_int_equal(rt_signals(&rt2, 0, 0, sig), 0);
	assert_int_equal(prt_runtime_destroy(rt1), 0);
	assert_int_equal(prt_runtime_destroy(rt2), 0);
	assert_int_equal(rt_signals(&rt1, PRT_PREEMPT_QUANTUM_DEFAULT, sig, 0), 0);
	assert_int_equal(prt_runtime_destroy(rt1), 0);

	/* Cooperative: the default preemption signal is free for dumps; preemptive: refused. */
	assert_int_equal(rt_signals(&rt1, 0, 0, (SIGRTMAX - 3)), 0);
	assert_int_equal(prt_runtime_destroy(rt1), 0);
	assert_int_equal(rt_signals(&rt1, PRT_PREEMPT_QUANTUM_DEFAULT, 0, (SIGRTMAX - 3)),
			 -EINVAL);
	/* The environment's quantum decides: 0 there makes a runtime cooperative. */
	setenv("PRT_PREEMPT_QUANTUM_NS", "0", 1);
	assert_int_equal(rt_signals(&rt1, PRT_PREEMPT_QUANTUM_DEFAULT, 0, (SIGRTMAX - 3)), 0);
	assert_int_equal(prt_runtime_destroy(rt1), 0);

	if (keep) {
		setenv("PRT_PREEMPT_QUANTUM_NS", keep, 1);
		free(keep);
	} else {
		unsetenv("PRT_PREEMPT_QUANTUM_NS");
	}
	signal(sig, SIG_DFL);
}

/* ---- code loaded later, and code the application denies ------------------------------ */

typedef uint64_t (*spin_fn)(volatile int *in, uint64_t x, uint64_t n);

struct spinlib {
	void *h;
	spin_fn a, b;
	void (*a_range)(const void **lo, const void **hi);
};

static void spinlib_open(struct spinlib *l)
{
	l->h = dlopen(PRT_TEST_SPINLIB, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(l->h);
	l->a = (spin_fn)dlsym(l->h, "spinlib_a");
	l->b = (spin_fn)dlsym(l->h, "spinlib_b");
	*(void **)&l->a_range = dlsym(l->h, "spinlib_a_range");
	assert_true(l->a && l->b && l->a_range);
}

/*
 * A hog at 8 alternates 0.5 ms in the library's function @fn (which sets
 * @in while it runs) and 0.5 ms of its own code; a fiber at 24 sleeps
 * 1 ms in a loop and looks at @in each time it runs: set means the hog
 * was stopped inside the library.
 */
struct dspin {
	spin_fn fn;
	volatile int in;
	atomic_int rounds, stop;
	int stopped_inside;
	uint64_t lib_iters, own_iters;
};

#define DSPIN_ROUNDS 60

static void *dspin_sleeper(void *arg)
{
	struct dspin *d = arg;

	for (int i = 0; i < DSPIN_ROUNDS; i++) {
		prt_sleep_ns(1000 * 1000);
		if (d->in)
			d->stopped_inside++;
		atomic_fetch_add(&d->rounds, 1);
	}
	return NULL;
}

static void *dspin_hog(void *arg)
{
	struct dspin *d = arg;
	struct cap c;
	uint64_t x = 5;

	cap_init(&c);
	while (atomic_load_explicit(&d->rounds, memory_order_relaxed) < DSPIN_ROUNDS) {
		x = d->fn(&d->in, x, d->lib_iters);
		x = spin_work(x, (unsigned)d->own_iters);
		if (test_mono_ns() > c.until)
			break;
	}
	sink = x;
	return NULL;
}

/* How many times the sleeper found the hog stopped inside @fn; its rounds all done. */
static int dspin_run(spin_fn fn)
{
	struct dspin d = { .fn = fn };
	uint64_t t0, x = 1, n = 1 << 20;
	prt_runtime_t *rt;
	prt_fiber_t s, h;

	/* About 0.5 ms of each (a guess is enough: no timing is asserted). */
	t0 = test_mono_ns();
	x = spin_work(x, (unsigned)n);
	sink = x;
	d.lib_iters = d.own_iters = n * 500000 / (test_mono_ns() - t0 + 1) + 1;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		return -1;
	s = spawn_at(rt, 24, 0, dspin_sleeper, &d);
	h = spawn_at(rt, 8, 0, dspin_hog, &d);
	join_ok(h);
	join_ok(s);
	assert_int_equal(atomic_load(&d.rounds), DSPIN_ROUNDS);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	return d.stopped_inside;
}

/*
 * Loaded after the runtime started, a library's code is preemptible: the
 * sleeper finds the hog stopped inside it. Then
 * prt_preempt_deny_range() takes one function's section out (never
 * stopped there again, the other function still is), and
 * prt_preempt_deny_object() the whole library. Runs in this order (the
 * denials last for the process).
 */
static void test_deny_range_and_object(void **state)
{
	struct spinlib l;
	prt_runtime_t *probe;
	const void *lo, *hi;
	int got = 0;

	(void)state;
	if (!(probe = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	spinlib_open(&l); /* while a preemptive runtime exists: its table is made already */
	assert_int_equal(prt_runtime_destroy(probe), 0);
	/* Most of the hog's time is in the library: rarely does a round miss it. */
	for (int i = 0; i < 5 && got == 0; i++)
		got = dspin_run(l.a);
	assert_true(got > 0);

	l.a_range(&lo, &hi);
	assert_int_equal(prt_preempt_deny_range(NULL, hi), -EINVAL);
	assert_int_equal(prt_preempt_deny_range(hi, lo), -EINVAL);
	assert_int_equal(prt_preempt_deny_range(lo, hi), 0);
	assert_int_equal(dspin_run(l.a), 0);
	got = 0;
	for (int i = 0; i < 5 && got == 0; i++)
		got = dspin_run(l.b);
	assert_true(got > 0);

	assert_int_equal(prt_preempt_deny_object(NULL), -EINVAL);
	assert_int_equal(prt_preempt_deny_object(""), -EINVAL);
	assert_int_equal(prt_preempt_deny_object("libprtspin"), 0);
	assert_int_equal(dspin_run(l.b), 0);
	assert_int_equal(dspin_run(l.a), 0);
	dlclose(l.h);
}

/*
 * A denied library loaded where an allowed one was (dlclose, then
 * dlopen of a library of the same size: the loader maps it at the same
 * address). The handler decides by the table made while the allowed one
 * was there, until a look makes it again (a switch, an idle worker):
 * 10/10 runs of a review's program had the hog stopped inside the
 * denied library. Here a fiber swaps the libraries and starts the hog
 * at once (no idle moment in between), which spends most of its time in
 * the library; the sleeper at 24 must never find it stopped there.
 */
struct reuse {
	void *ha;
	spin_fn fa;
	bool same_place;
	struct dspin d;
};

static void *reuse_driver(void *arg)
{
	struct reuse *r = arg;
	prt_fiber_t s, h;
	void *hb;

	dlclose(r->ha);
	hb = dlopen(PRT_TEST_REUSE_B, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(hb);
	r->d.fn = (spin_fn)dlsym(hb, "spinlib_b");
	assert_non_null(r->d.fn);
	r->same_place = r->d.fn == r->fa;
	s = spawn_at(prt_runtime_self(), 24, 0, dspin_sleeper, &r->d);
	h = spawn_at(prt_runtime_self(), 8, 0, dspin_hog, &r->d);
	join_ok(h);
	join_ok(s);
	dlclose(hb);
	return NULL;
}

#if PRT_FAULT_INJECTION
/*
 * Another thread makes the table again between the handler's look and
 * the interrupted fiber's (another worker's look, an idle worker, a new
 * runtime): here, once, at the look itself, through a denial of a range
 * nobody runs.
 */
static atomic_int remade;
static char remake_dummy[2];

static void remake_table(void *arg)
{
	(void)arg;
	if (!atomic_exchange(&remade, 1))
		prt_preempt_deny_range(&remake_dummy[0], &remake_dummy[1]);
}
#endif

static void deny_reused(bool remake)
{
	uint64_t t0, x = 1, n = 1 << 20, lib_iters;
	int places = 0;

	(void)remake; /* used in fault-injection builds */
	assert_int_equal(prt_preempt_deny_object("libprtreuseb"), 0);
	t0 = test_mono_ns();
	x = spin_work(x, (unsigned)n);
	sink = x;
	lib_iters = n * 500000 / (test_mono_ns() - t0 + 1) + 1; /* about 0.5 ms */
	/* Three tries: each time, the first interrupt shows it (most of the hog's time is in the library). */
	for (int i = 0; i < 3; i++) {
		struct reuse r = { .d = { .lib_iters = lib_iters, .own_iters = lib_iters / 10 + 1 } };
		prt_runtime_t *rt;

		r.ha = dlopen(PRT_TEST_REUSE_A, RTLD_NOW | RTLD_LOCAL);
		assert_non_null(r.ha);
		r.fa = (spin_fn)dlsym(r.ha, "spinlib_b");
		assert_non_null(r.fa);
		/* Created with the allowed library loaded: its table allows that library's code. */
		if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT))) {
			dlclose(r.ha);
			skip();
		}
#if PRT_FAULT_INJECTION
		atomic_store(&remade, 0);
		if (remake)
			prt__fault_set_pause(PRT_PAUSE_EVAL_RANGES, remake_table, NULL);
#endif
		join_ok(spawn_at(rt, 16, 0, reuse_driver, &r));
#if PRT_FAULT_INJECTION
		prt__fault_set_pause(PRT_PAUSE_EVAL_RANGES, NULL, NULL);
		if (remake)
			assert_int_equal(atomic_load(&remade), 1);
#endif
		assert_int_equal(prt_runtime_destroy(rt), 0);
		assert_int_equal(atomic_load(&r.d.rounds), DSPIN_ROUNDS);
		assert_int_equal(r.d.stopped_inside, 0);
		places += r.same_place;
	}
	/* The case this is about (else the denied library's code was never in the table) */
	assert_true(places > 0);
}

static void test_deny_object_at_reused_address(void **state)
{
	(void)state;
	deny_reused(false);
}

/*
 * The compiler's support routines that the library's code calls are
 * part of its own code: never interrupted. Before, the final link took
 * them from libgcc.a and laid them outside prt__text_start..end, the
 * handler took them for the application's code, and a fiber could be
 * stopped inside the runtime: on aarch64, where GCC calls
 * __aarch64_cas4_acq_rel and its family for every atomic, a fiber was
 * stopped at a spinlock's CAS and queued again after it had ended ("a
 * dead fiber was resumed"), and workers spun for ever on locks held by
 * stopped fibers (review W, under qemu-user); on x86-64 built by GCC
 * without POPCNT, __popcountdi2. Which routines the library needs
 * depends on the compiler and the target, so the library names one it
 * references in fault-injection builds (prt__fault_libgcc_routine).
 */
static void test_runtime_helpers_denied(void **state)
{
	(void)state;
#if PRT_FAULT_INJECTION
	prt_runtime_t *rt;

	if (!prt__fault_libgcc_routine())
		skip(); /* no such routine to name on this target */
	if (!(rt = rt_preempt(1, 1000000)))
		skip();
	assert_false(prt__range_allowed(prt__fault_libgcc_routine(), NULL));
	/* The application's own code stays interruptible. */
	assert_true(prt__range_allowed((uintptr_t)&test_runtime_helpers_denied, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
#else
	skip(); /* fault-injection builds */
#endif
}

/*
 * The same, with the table made again by another thread before the
 * stopped fiber's own look (a review: 4-6 of 100 cycles stopped inside
 * the denied library with two workers; the look judged again only when
 * it remade the table itself). Fault-injection builds (the pause point).
 */
static void test_deny_recheck_after_other_remake(void **state)
{
	(void)state;
#if PRT_FAULT_INJECTION
	deny_reused(true);
#else
	skip();
#endif
}

/*
 * A fiber whose every instruction is in code an interrupt may not stop,
 * but for calls to prt_now_ns (a library polling the clock): prt_now_ns
 * honours the deferred interrupt (two reviews: a priority-31 fiber
 * waited 0.3-2+ s behind a loop on prt_now_ns). Before, it was never
 * preempted: the fiber at 24 ran only when the poll gave up at its cap.
 */
struct npoll {
	int (*poll)(volatile int *stop, uint64_t (*clock)(void), uint64_t until);
	volatile int stop;
	atomic_int started;
	int by_stop;
};

static void *npoll_hog(void *arg)
{
	struct npoll *n = arg;

	atomic_store(&n->started, 1);
	n->by_stop = n->poll(&n->stop, prt_now_ns, prt_now_ns() + PREEMPT_CAP_NS);
	return NULL;
}

static void *npoll_high(void *arg)
{
	struct npoll *n = arg;

	n->stop = 1;
	return NULL;
}

static void test_now_ns_is_safe_point(void **state)
{
	struct npoll n = { 0 };
	struct spinlib l;
	prt_runtime_t *rt;
	prt_fiber_t h, hi;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	spinlib_open(&l);
	*(void **)&n.poll = dlsym(l.h, "spinlib_poll");
	assert_non_null(n.poll);
	assert_int_equal(prt_preempt_deny_object("libprtspin"), 0);
	h = spawn_at(rt, 8, 0, npoll_hog, &n);
	while (!atomic_load(&n.started))
		usleep(100);
	usleep(1000); /* in the poll */
	hi = spawn_at(rt, 24, 0, npoll_high, &n);
	join_ok(hi);
	join_ok(h);
	assert_int_equal(n.by_stop, 1);
	assert_true(stats_of(rt, 0).preemptions > 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	dlclose(l.h);
}

/*
 * A retry that finds the fiber still in code that may not be stopped
 * waits twice as long as the one before, up to 800 us
 * (PRT_PREEMPT_RETRY_MAX_NS): a hog in a denied library for ~100 ms
 * behind a due sleeper is deferred about once per 800 us, not once per
 * 50 us (20 a millisecond: the retry storm this fixes). The count is
 * held against the time the hog itself measured in the library (a slow
 * machine fires fewer retries, never more). Once out, the hog is
 * stopped: the bound stays.
 */
struct backoff {
	spin_fn fn;
	volatile int in;
	uint64_t iters, in_ns;
	atomic_int slept;
	/*
	 * The sleeper woke before the hog went into the library (a machine
	 * so loaded that the hog's start took BACKOFF_SLEEP_NS): no interrupt
	 * came in there, nothing to look at.
	 */
	int late;
	prt_runtime_t *rt;
	uint64_t deferred;
};

/* The sleeper's sleep: far shorter than the hog's time in the library, far longer than its start. */
#define BACKOFF_SLEEP_NS (20ull * 1000 * 1000)

static void *backoff_sleeper(void *arg)
{
	struct backoff *b = arg;

	prt_sleep_ns(BACKOFF_SLEEP_NS);
	atomic_store(&b->slept, 1);
	return NULL;
}

static void *backoff_hog(void *arg)
{
	struct backoff *b = arg;
	uint64_t t0, x = 3, d0;
	struct cap c;

	d0 = stats_of(b->rt, 0).preempt_deferred;
	t0 = test_mono_ns();
	b->late = atomic_load(&b->slept);
	x = b->fn(&b->in, x, b->iters); /* denied: every interrupt is deferred */
	b->in_ns = test_mono_ns() - t0;
	b->deferred = stats_of(b->rt, 0).preempt_deferred - d0;
	cap_init(&c);
	while (!atomic_load_explicit(&b->slept, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 64);
	sink = x;
	return NULL;
}

/* test_honoured_retry_disarmed's hog: in the library, then ends at once. */
static void *retry_hog(void *arg)
{
	struct backoff *b = arg;

	b->late = atomic_load(&b->slept);
	sink = b->fn(&b->in, 3, b->iters); /* denied: every interrupt is deferred */
	return NULL;
}

static void test_retry_backs_off(void **state)
{
	struct backoff b = { 0 };
	struct spinlib l;
	uint64_t t0, x = 1, n = 1 << 20;
	prt_fiber_t s, h;

	(void)state;
	if (!(b.rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	spinlib_open(&l);
	/* Denied by test_deny_range_and_object for the process; again if run alone. */
	assert_int_equal(prt_preempt_deny_object("libprtspin"), 0);
	b.fn = l.a;
	/* About 100 ms in the library (a guess: no timing is asserted). */
	t0 = test_mono_ns();
	x = spin_work(x, (unsigned)n);
	sink = x;
	b.iters = n * 100000000ull / (test_mono_ns() - t0 + 1) + 1;
	s = spawn_at(b.rt, 24, 0, backoff_sleeper, &b);
	h = spawn_at(b.rt, 8, 0, backoff_hog, &b);
	join_ok(h);
	join_ok(s);
	assert_int_equal(atomic_load(&b.slept), 1);
	/* Reached through the retries after the hog left the library, not through its cap. */
	assert_true(test_mono_ns() < t0 + PREEMPT_CAP_NS);
	print_message("in the library %.1f ms: %llu deferred\n", (double)b.in_ns / 1e6,
		      (unsigned long long)b.deferred);
	if (b.late) {
		print_message("the sleeper woke before the hog went into the library: nothing to look at\n");
		assert_int_equal(prt_runtime_destroy(b.rt), 0);
		dlclose(l.h);
		return;
	}
	assert_true(b.deferred >= 1);
	/* ~1.25 a ms (800 us apart) plus the first few; 50 us apart would be 20 a ms. */
	assert_true(b.deferred <= 10 + 3 * (b.in_ns / 1000000));
	assert_int_equal(prt_runtime_destroy(b.rt), 0);
	dlclose(l.h);
}

/*
 * One watch interrupt deferred is no pattern: the watch's slack (which
 * also turns its lead off) grows from the second in a row. The sleeper
 * at 24 is due while the hog at 8 spins in a denied library: that
 * watch interrupt is deferred, and retries end the wait once the hog is
 * back in its own code. The slack must still be 0 (it was 10 us after
 * any one deferral, and W4's H, a signal deferred in a switch or in a
 * pick's settime, then woke 100-170 us late with no lead).
 */
static void test_watch_slack_one_deferral(void **state)
{
	struct backoff b = { 0 };
	struct spinlib l;
	uint64_t t0, x = 1, n = 1 << 20, iters;
	prt_runtime_t *rt;
	int looked = 0;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	spinlib_open(&l);
	assert_int_equal(prt_preempt_deny_object("libprtspin"), 0);
	/* About 40 ms in the library (a guess: no timing is asserted). */
	t0 = test_mono_ns();
	x = spin_work(x, (unsigned)n);
	sink = x;
	iters = n * 40000000ull / (test_mono_ns() - t0 + 1) + 1;
	/*
	 * Two episodes, the worker idle between them (a review: the count
	 * of deferrals in a row was reset only by a watch interrupt that
	 * stopped the fiber, so the second lone deferral grew the slack).
	 */
	for (int round = 0; round < 2; round++) {
		prt_fiber_t s, h;

		memset(&b, 0, sizeof(b));
		b.rt = rt;
		b.fn = l.a;
		b.iters = iters;
		s = spawn_at(rt, 24, 0, backoff_sleeper, &b);
		h = spawn_at(rt, 8, 0, backoff_hog, &b);
		join_ok(h);
		join_ok(s);
		assert_int_equal(atomic_load(&b.slept), 1);
		if (b.late || !b.deferred)
			continue; /* no interrupt came while the hog was in the library */
		looked++;
#if PRT_FAULT_INJECTION /* (the test builds: internal headers) */
		assert_int_equal(atomic_load(&rt->workers[0]->pw.watch_slack), 0);
#endif
		usleep(20 * 1000); /* idle */
	}
	if (!looked)
		print_message("no interrupt came while the hog was in the library: nothing to look at\n");
	assert_int_equal(prt_runtime_destroy(rt), 0);
	dlclose(l.h);
}

/* ---- the timer watch follows the timers ------------------------------------------------ */

/*
 * A timed wait that ends before its deadline takes the watch with it:
 * the worker's timer watch (armed while a fiber runs here and another
 * has a deadline) must not fire for a deadline no fiber has any more.
 * F times a lock held by this thread; G runs meanwhile (its pick arms
 * the watch for F's deadline); the lock goes to F long before that; then
 * the worker has nothing to do and parks. Past F's old deadline it must
 * still be parked the once: a stale watch would interrupt its sleep
 * (and a running fiber, in the same way, for nothing).
 */
#define WATCH_TMO_NS (300ull * 1000 * 1000)

struct stale {
	prt_mutex_t m;
	atomic_int g_running, released;
	int lock_rc;
};

static void *stale_g(void *arg)
{
	struct stale *s = arg;
	struct cap c;
	uint64_t x = 1;

	atomic_store(&s->g_running, 1);
	cap_init(&c);
	while (!atomic_load(&s->released) && !cap_hit(&c))
		x = spin_work(x, 64);
	sink = x;
	return NULL;
}

static void *stale_f(void *arg)
{
	struct stale *s = arg;
	prt_fiber_t g = spawn_at(prt_runtime_self(), 16, 0, stale_g, s);

	s->lock_rc = prt_mutex_timedlock_ns(&s->m, WATCH_TMO_NS);
	if (!s->lock_rc)
		prt_mutex_unlock(&s->m);
	join_ok(g);
	return NULL;
}

/* Is worker 0 of @rt asleep (the dump's idle=1)? */
static bool worker0_idle(prt_runtime_t *rt)
{
	char buf[4096];
	FILE *tmp = tmpfile();
	size_t n;

	assert_non_null(tmp);
	assert_int_equal(prt_runtime_dump(rt, fileno(tmp)), 0);
	rewind(tmp);
	n = fread(buf, 1, sizeof(buf) - 1, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return strstr(buf, "worker 0: running=0 donor=0 runq=0 idle=1") != NULL;
}

static void test_watch_follows_timers(void **state)
{
	struct stale s = { .m = PRT_MUTEX_INITIALIZER };
	prt_runtime_t *rt;
	prt_fiber_t f;
	uint64_t t0, parks;
	struct cap c;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	assert_int_equal(prt_mutex_lock(&s.m), 0); /* this plain thread owns it */
	t0 = test_mono_ns();
	f = spawn_at(rt, 16, 0, stale_f, &s);
	while (!atomic_load(&s.g_running))
		usleep(1000);
	usleep(20 * 1000); /* F waits by now (if not, F just finds it free below) */
	assert_int_equal(prt_mutex_unlock(&s.m), 0);
	atomic_store(&s.released, 1);
	join_ok(f);
	if (s.lock_rc) {
		/* F's wait outlived its 300 ms: nothing to look at (a machine that slow). */
		assert_int_equal(s.lock_rc, ETIMEDOUT);
		print_message("F timed out: skipped\n");
		assert_int_equal(prt_runtime_destroy(rt), 0);
		return;
	}
	/* Parked? (It spins a little first.) */
	cap_init(&c);
	while (!worker0_idle(rt) && test_mono_ns() < c.until)
		usleep(1000);
	assert_true(worker0_idle(rt));
	parks = stats_of(rt, 0).parks;
	/* Past F's old deadline, with room. */
	while (test_mono_ns() < t0 + WATCH_TMO_NS + 200ull * 1000 * 1000)
		usleep(10 * 1000);
	assert_int_equal(stats_of(rt, 0).parks, parks);
	assert_true(worker0_idle(rt));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A fiber that calls the runtime all the time (its scheduling points run
 * the timers anyway) is not interrupted at every deadline of a sleeper:
 * the watch's interrupts land in the library, and the watch learns to
 * fire a little after the deadline, by which time a scheduling point
 * has run the timer and re-armed the watch for the next one. S sleeps 1
 * ms 300 times at 24; B, at 8, calls the library and yields in a loop.
 * With the watch at each deadline, each round cost an interrupt (a
 * preemption of B or, in the library, a deferred one).
 */
#define SLACK_ROUNDS 300

struct slack {
	atomic_int done;
};

static void *slack_sleeper(void *arg)
{
	struct slack *s = arg;

	for (int i = 0; i < SLACK_ROUNDS; i++)
		prt_sleep_ns(1000 * 1000);
	atomic_store(&s->done, 1);
	return NULL;
}

static void *slack_busy(void *arg)
{
	struct slack *s = arg;
	prt_fiber_t me = prt_self();
	struct cap c;

	cap_init(&c);
	while (!atomic_load(&s->done) && !cap_hit(&c)) {
		for (int k = 0; k < 5; k++)
			assert_int_equal(prt_fiber_get_priority(me), 8);
		prt_yield();
	}
	return NULL;
}

static void test_watch_slack(void **state)
{
	struct slack s = { 0 };
	prt_worker_stats_t a, b;
	prt_runtime_t *rt;
	prt_fiber_t fs, fb;
	uint64_t n;

	(void)state;
	if (!(rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	a = stats_of(rt, 0);
	fb = spawn_at(rt, 8, 0, slack_busy, &s);
	fs = spawn_at(rt, 24, 0, slack_sleeper, &s);
	join_ok(fs);
	join_ok(fb);
	b = stats_of(rt, 0);
	n = (b.preemptions - a.preemptions) + (b.preempt_deferred - a.preempt_deferred);
	print_message("%d sleeps behind a runtime caller: %llu interrupts (%llu deferred)\n",
		      SLACK_ROUNDS, (unsigned long long)n,
		      (unsigned long long)(b.preempt_deferred - a.preempt_deferred));
	/*
	 * Each round cost one before (300-316 here); a worker thread kept
	 * off its CPU past a deadline still costs one (40-85 on a loaded
	 * machine, ~130 under ThreadSanitizer).
	 */
	assert_true(n < 2 * SLACK_ROUNDS / 3);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A retry that a scheduling point made pointless is disarmed there: H
 * spins in a denied library while S (at 24) is due (20 ms), so the watch's
 * interrupt is deferred and retried (backing off to 800 us); H ends as
 * soon as it leaves the library, and its end's pick honours what the
 * retry was for. The worker then parks, and must not be woken by the
 * retry's signal.
 */
static void test_honoured_retry_disarmed(void **state)
{
	struct backoff b = { 0 };
	struct spinlib l;
	uint64_t t0, x = 1, n = 1 << 20, parks;
	prt_fiber_t fs, fh;
	struct cap c;

	(void)state;
	if (!(b.rt = rt_preempt(1, PRT_PREEMPT_QUANTUM_DEFAULT)))
		skip();
	spinlib_open(&l);
	assert_int_equal(prt_preempt_deny_object("libprtspin"), 0);
	b.fn = l.a;
	/* About 60 ms in the library (a guess: no timing is asserted). */
	t0 = test_mono_ns();
	x = spin_work(x, (unsigned)n);
	sink = x;
	b.iters = n * 60000000ull / (test_mono_ns() - t0 + 1) + 1;
	fs = spawn_at(b.rt, 24, 0, backoff_sleeper, &b);
	fh = spawn_at(b.rt, 8, 0, retry_hog, &b);
	join_ok(fh);
	join_ok(fs);
	assert_int_equal(atomic_load(&b.slept), 1);
	if (b.late)
		print_message("the sleeper woke before the hog went into the library: no retry to look at\n");
	cap_init(&c);
	while (!worker0_idle(b.rt) && test_mono_ns() < c.until)
		usleep(1000);
	assert_true(worker0_idle(b.rt));
	parks = stats_of(b.rt, 0).parks;
	usleep(100 * 1000); /* well past the longest retry (800 us) */
	assert_int_equal(stats_of(b.rt, 0).parks, parks);
	assert_true(worker0_idle(b.rt));
	assert_int_equal(prt_runtime_destroy(b.rt), 0);
	dlclose(l.h);
}

/*
 * Time-slice extension (preempt.c): a slice that ends while the fiber
 * holds a fiber mutex lasts until its unlock, so an equal-priority fiber
 * of the same worker never finds the lock held by a fiber stopped inside
 * its critical section. Two hogs on one worker, most of each round
 * inside the mutex: each tries the lock first, and counts a failure
 * (the other was switched out holding it; before the extension most
 * slices ended so). A 20 ms slice on the CPU-time clock: a critical
 * section of a few microseconds of CPU never outlasts the extension,
 * whatever the machine's load or the sanitizer.
 */
#define EXT_QUANTUM (20ull * 1000 * 1000)

struct ext {
	prt_mutex_t m;
	atomic_uint rounds[2];
	atomic_uint found_held;
	atomic_int stop;
	prt_runtime_t *rt;
};

struct ext_arg {
	struct ext *e;
	int me;
};

static void *ext_hog(void *arg)
{
	struct ext_arg *a = arg;
	struct ext *e = a->e;
	uint64_t x = 5 + (uint64_t)a->me;
	struct cap c;

	cap_init(&c);
	while (!atomic_load_explicit(&e->stop, memory_order_relaxed) && !cap_hit(&c)) {
		if (prt_mutex_trylock(&e->m)) {
			atomic_fetch_add(&e->found_held, 1);
			assert_int_equal(prt_mutex_lock(&e->m), 0);
		}
		x = spin_work(x, 4096);
		assert_int_equal(prt_mutex_unlock(&e->m), 0);
		x = spin_work(x, 512);
		atomic_fetch_add_explicit(&e->rounds[a->me], 1, memory_order_relaxed);
	}
	sink = x;
	return NULL;
}

static void test_slice_waits_for_unlock(void **state)
{
	struct ext e = { .m = PRT_MUTEX_INITIALIZER };
	struct ext_arg a0 = { &e, 0 }, a1 = { &e, 1 };
	prt_worker_stats_t st;
	prt_fiber_t f0, f1;
	struct cap c;

	(void)state;
	if (!(e.rt = rt_preempt(1, EXT_QUANTUM)))
		skip();
	f0 = spawn_at(e.rt, 16, 0, ext_hog, &a0);
	f1 = spawn_at(e.rt, 16, 0, ext_hog, &a1);
	/* Until a few slices ended inside the critical section and both hogs ran. */
	cap_init(&c);
	do {
		usleep(1000);
		st = stats_of(e.rt, 0);
	} while ((st.slice_extensions < 4 || atomic_load(&e.rounds[0]) < 100 ||
		  atomic_load(&e.rounds[1]) < 100) &&
		 test_mono_ns() < c.until);
	atomic_store(&e.stop, 1);
	join_ok(f0);
	join_ok(f1);
	st = stats_of(e.rt, 0);
	print_message("time_slices=%llu slice_extensions=%llu found_held=%u\n",
		      (unsigned long long)st.time_slices, (unsigned long long)st.slice_extensions,
		      atomic_load(&e.found_held));
	assert_int_equal(atomic_load(&e.found_held), 0); /* 440 in 499 slices without the extension */
	assert_true(st.slice_extensions >= 4);
	assert_true(st.time_slices >= st.slice_extensions);
	assert_int_equal(prt_runtime_destroy(e.rt), 0);
}

/*
 * The extension is bounded: a fiber that holds a mutex for good is still
 * switched out at the next tick, and its equal-priority neighbour runs
 * (here it is what lets the holder go on).
 */
struct ext_bound {
	prt_mutex_t m;
	atomic_int other_ran;
	int timed_out;
};

static void *ext_holder(void *arg)
{
	struct ext_bound *b = arg;
	uint64_t x = 9;
	struct cap c;

	assert_int_equal(prt_mutex_lock(&b->m), 0);
	cap_init(&c);
	while (!atomic_load_explicit(&b->other_ran, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	b->timed_out = !atomic_load(&b->other_ran);
	assert_int_equal(prt_mutex_unlock(&b->m), 0);
	sink = x;
	return NULL;
}

static void *ext_other(void *arg)
{
	struct ext_bound *b = arg;

	atomic_store(&b->other_ran, 1);
	return NULL;
}

static void test_slice_extension_bounded(void **state)
{
	struct ext_bound b = { .m = PRT_MUTEX_INITIALIZER };
	prt_worker_stats_t st;
	prt_runtime_t *rt;
	prt_fiber_t f0, f1;

	(void)state;
	if (!(rt = rt_preempt(1, EXT_QUANTUM)))
		skip();
	f0 = spawn_at(rt, 16, 0, ext_holder, &b);
	f1 = spawn_at(rt, 16, 0, ext_other, &b);
	join_ok(f0);
	join_ok(f1);
	assert_false(b.timed_out);
	st = stats_of(rt, 0);
	assert_true(st.slice_extensions >= 1);
	assert_true(st.time_slices >= 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A slice that ends at a runtime call (here the unlock that ends an
 * extended slice) queues the fiber where any worker may take it: an idle
 * worker must hear of it (as of a yield). Worker 0: M, allowed anywhere,
 * holds a lock through a tick; H, pinned there, then spins with
 * preemption off until M runs again. Worker 1 sleeps: only the
 * announcement of M wakes it to take M. Without it M waited on worker 0
 * behind H for good (the cap; found as a hang of test_sched's
 * test_wc_cond_timer under ASan with 50 us slices).
 */
struct announce {
	prt_runtime_t *rt;
	prt_mutex_t m;
	atomic_int h_running, m_ran_on;
};

static void *an_m(void *arg)
{
	struct announce *a = arg;
	prt_workerset_t all;
	struct cap c;
	uint64_t x = 5;

	prt_workerset_zero(&all);
	prt_workerset_add(&all, 0);
	prt_workerset_add(&all, 1);
	assert_int_equal(prt_fiber_set_affinity(prt_self(), &all), 0);
	assert_int_equal(prt_mutex_lock(&a->m), 0);
	cap_init(&c);
	while (stats_of(a->rt, 0).slice_extensions == 0 && !cap_hit(&c))
		x = spin_work(x, 256);
	sink_put(x);
	assert_int_equal(prt_mutex_unlock(&a->m), 0); /* the slice ends here */
	atomic_store(&a->m_ran_on, prt_worker_index());
	return NULL;
}

static void *an_h(void *arg)
{
	struct announce *a = arg;
	struct cap c;
	uint64_t x = 7;

	assert_int_equal(prt_preempt_disable(), 0);
	atomic_store(&a->h_running, 1);
	cap_init(&c);
	while (atomic_load(&a->m_ran_on) < 0 && !cap_hit(&c))
		x = spin_work(x, 256);
	sink_put(x);
	assert_int_equal(prt_preempt_enable(), 0);
	return NULL;
}

static void test_slice_end_announces(void **state)
{
	struct announce a = { .m = PRT_MUTEX_INITIALIZER };
	prt_fiber_t m, h;

	(void)state;
	if (!(a.rt = rt_preempt(2, 1000000)))
		return;
	atomic_init(&a.m_ran_on, -1);
	m = spawn_at(a.rt, 16, 0, an_m, &a);
	h = spawn_at(a.rt, 16, 0, an_h, &a);
	join_ok(m);
	join_ok(h);
	assert_true(stats_of(a.rt, 0).slice_extensions >= 1);
	assert_int_equal(atomic_load(&a.h_running), 1); /* M's slice ended with H queued */
	assert_int_equal(atomic_load(&a.m_ran_on), 1);  /* taken by worker 1 */
	assert_int_equal(prt_runtime_destroy(a.rt), 0);
}

/*
 * A slice that ends at the unlock that releases an extended slice's lock
 * ends inside a runtime call, a voluntary scheduling point as prt_yield
 * is: the fiber is not marked preempted, and may move (unlike one
 * stopped by an interrupt: test_no_migration_on_preemption). Two hogs on
 * worker 0 share it in slices, nearly all of which end so; one is then
 * allowed only worker 1 (prt_fiber_set_affinity) and must get there,
 * though it never blocks. Marked as at an interrupt, it kept running on
 * worker 0 for good (the test's cap).
 */
struct mv {
	prt_mutex_t m;
	atomic_int stop, on_w1;
	int moved_in_section;
};

static void *mv_hog(void *arg)
{
	struct mv *v = arg;
	uint64_t x = 29;
	struct cap c;

	cap_init(&c);
	while (!atomic_load_explicit(&v->stop, memory_order_relaxed) && !cap_hit(&c)) {
		int w;

		assert_int_equal(prt_mutex_lock(&v->m), 0);
		w = prt_worker_index();
		x = spin_work(x, 4096);
		if (prt_worker_index() != w)
			v->moved_in_section = 1; /* resumed elsewhere with no scheduling point */
		assert_int_equal(prt_mutex_unlock(&v->m), 0);
		if (prt_worker_index() == 1)
			atomic_store(&v->on_w1, 1);
		x = spin_work(x, 256);
	}
	sink_put(x);
	return NULL;
}

static void test_slice_ended_at_unlock_may_move(void **state)
{
	struct mv v = { .m = PRT_MUTEX_INITIALIZER };
	prt_workerset_t one;
	prt_runtime_t *rt;
	prt_fiber_t fa, fb;
	uint64_t ext0;
	struct cap c;

	(void)state;
	if (!(rt = rt_preempt(2, EXT_QUANTUM)))
		skip();
	fa = spawn_at(rt, 16, 0, mv_hog, &v);
	fb = spawn_at(rt, 16, 0, mv_hog, &v);
	cap_init(&c);
	while (stats_of(rt, 0).slice_extensions < 2 && test_mono_ns() < c.until)
		usleep(1000);
	prt_workerset_zero(&one);
	prt_workerset_add(&one, 1);
	assert_int_equal(prt_fiber_set_affinity(fa, &one), 0);
	ext0 = stats_of(rt, 0).slice_extensions;
	/* Until it got there, or 20 more extended slices went by without it. */
	while (!atomic_load(&v.on_w1) && stats_of(rt, 0).slice_extensions < ext0 + 20 &&
	       test_mono_ns() < c.until)
		usleep(1000);
	atomic_store(&v.stop, 1);
	join_ok(fa);
	join_ok(fb);
	assert_int_equal(v.moved_in_section, 0);
	assert_int_equal(atomic_load(&v.on_w1), 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * An extended slice and prt_preempt_disable(): inside the region the
 * last unlock leaves the slice owed, and prt_preempt_enable() ends it;
 * an empty region inside the critical section does not end it while the
 * lock is held. B counts while it runs; A, on the same worker, looks at
 * the count around each call. (Before: B ran inside the region at the
 * unlock, and at the empty region with the mutex held.)
 */
struct owed {
	prt_mutex_t m;
	prt_runtime_t *rt;
	atomic_long b_count;
	atomic_int stop;
	int extended, ran_in_region, ran_at_empty_region, ran_at_enable;
};

static uint64_t ext_of(prt_runtime_t *rt, int w)
{
	return stats_of(rt, w).slice_extensions;
}

/* Lock @m and compute until this slice has been extended (or the cap). */
static bool lock_until_extended(prt_mutex_t *m, prt_runtime_t *rt, int w)
{
	uint64_t e0 = ext_of(rt, w), x = 31;
	struct cap c;

	assert_int_equal(prt_mutex_lock(m), 0);
	cap_init(&c);
	while (ext_of(rt, w) == e0 && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink_put(x);
	return ext_of(rt, w) != e0;
}

static void *owed_a(void *arg)
{
	struct owed *o = arg;

	for (int round = 0; round < 4; round++) {
		long b0;

		if (!lock_until_extended(&o->m, o->rt, 0)) {
			assert_int_equal(prt_mutex_unlock(&o->m), 0);
			break;
		}
		o->extended++;
		b0 = atomic_load(&o->b_count);
		assert_int_equal(prt_preempt_disable(), 0);
		assert_int_equal(prt_preempt_enable(), 0); /* still holding: no switch */
		o->ran_at_empty_region += atomic_load(&o->b_count) != b0;
		b0 = atomic_load(&o->b_count);
		assert_int_equal(prt_preempt_disable(), 0);
		assert_int_equal(prt_mutex_unlock(&o->m), 0); /* last unlock, inside the region */
		o->ran_in_region += atomic_load(&o->b_count) != b0;
		assert_int_equal(prt_preempt_enable(), 0); /* the owed slice ends here */
		o->ran_at_enable += atomic_load(&o->b_count) != b0;
	}
	atomic_store(&o->stop, 1);
	return NULL;
}

static void *owed_b(void *arg)
{
	struct owed *o = arg;
	uint64_t x = 37;

	while (!atomic_load_explicit(&o->stop, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&o->b_count, 1, memory_order_relaxed);
		x = spin_work(x, 1024);
	}
	sink = x;
	return NULL;
}

static void test_owed_slice_and_disable_region(void **state)
{
	struct owed o = { .m = PRT_MUTEX_INITIALIZER };
	prt_fiber_t fa, fb;

	(void)state;
	if (!(o.rt = rt_preempt(1, EXT_QUANTUM)))
		skip();
	fa = spawn_at(o.rt, 16, 0, owed_a, &o);
	fb = spawn_at(o.rt, 16, 0, owed_b, &o);
	join_ok(fa);
	join_ok(fb);
	assert_int_equal(o.extended, 4);
	assert_int_equal(o.ran_at_empty_region, 0);
	assert_int_equal(o.ran_in_region, 0);
	assert_int_equal(o.ran_at_enable, 4);
	assert_int_equal(prt_runtime_destroy(o.rt), 0);
}

/*
 * errno across the unlock that ends an extended slice: a voluntary
 * scheduling point, after which the fiber may resume on another worker
 * thread. Its errno must be the one it had (777), on the thread it runs
 * on now. (Before, the library restored it through the errno address of
 * the thread it left: the fiber found the new thread's errno, and the
 * old thread's fiber found 777 in its own.) A and B share worker 0;
 * worker 1, woken every 100 us by C's sleeps, looks for work and takes
 * A, not marked preempted, at the unlock's switch (A tries again, from
 * worker 0, until that happens); B, which set its errno before, runs on
 * worker 0 meanwhile.
 */
struct emove {
	prt_mutex_t m;
	prt_runtime_t *rt;
	atomic_int stop;
	int extended, worker_after, errno_after, b_errno;
};

/* errno of the thread the caller runs on now (not an address kept from before a switch). */
static __attribute__((noinline)) int errno_now(void)
{
	return errno;
}

static __attribute__((noinline)) void errno_put(int e)
{
	errno = e;
}

static void *emove_a(void *arg)
{
	struct emove *e = arg;
	prt_workerset_t zero, both;

	prt_workerset_zero(&zero);
	prt_workerset_add(&zero, 0);
	both = zero;
	prt_workerset_add(&both, 1);
	/* Until a round in which worker 1 (idle) took A at the unlock's switch. */
	for (int round = 0; round < 20 && e->worker_after != 1; round++) {
		/* Back to worker 0 (a yield moves it), then free to move. */
		assert_int_equal(prt_fiber_set_affinity(prt_self(), &zero), 0);
		prt_yield();
		assert_int_equal(prt_fiber_set_affinity(prt_self(), &both), 0);
		if (!lock_until_extended(&e->m, e->rt, prt_worker_index())) {
			assert_int_equal(prt_mutex_unlock(&e->m), 0);
			continue;
		}
		e->extended++;
		errno_put(777);
		assert_int_equal(prt_mutex_unlock(&e->m), 0);
		e->worker_after = prt_worker_index();
		e->errno_after = errno_now();
		if (e->errno_after != 777)
			break;
	}
	atomic_store(&e->stop, 1);
	return NULL;
}

static void *emove_b(void *arg)
{
	struct emove *e = arg;
	uint64_t x = 41;

	errno_put(1234);
	while (!atomic_load_explicit(&e->stop, memory_order_relaxed))
		x = spin_work(x, 1024);
	e->b_errno = errno_now(); /* no scheduling point since it was set */
	sink_put(x);
	return NULL;
}

/* Keeps worker 1 waking and looking for work (it spins a while before it parks). */
static void *emove_c(void *arg)
{
	struct emove *e = arg;

	while (!atomic_load_explicit(&e->stop, memory_order_relaxed))
		assert_int_equal(prt_sleep_ns(100 * 1000), 0);
	return NULL;
}

static void test_owed_slice_keeps_errno_across_move(void **state)
{
	struct emove e = { .m = PRT_MUTEX_INITIALIZER };
	prt_fiber_t fa, fb, fc;

	(void)state;
	if (!(e.rt = rt_preempt(2, EXT_QUANTUM)))
		skip();
	/* B first: its errno is set before A's slice ends, and B runs on worker 0 after it. */
	fb = spawn_at(e.rt, 16, 0, emove_b, &e);
	fa = spawn_at(e.rt, 16, 0, emove_a, &e); /* lets itself move once it runs */
	fc = spawn_at(e.rt, 16, 1, emove_c, &e);
	join_ok(fa);
	join_ok(fb);
	join_ok(fc);
	print_message("errno after the unlock %d (on worker %d), B's %d\n", e.errno_after,
		      e.worker_after, e.b_errno);
	assert_true(e.extended >= 1);
	assert_int_equal(e.worker_after, 1);
	assert_int_equal(e.errno_after, 777);
	assert_int_equal(e.b_errno, 1234);
	assert_int_equal(prt_runtime_destroy(e.rt), 0);
}

/*
 * A fiber that holds a fiber mutex and does its work in
 * prt_preempt_disable() regions (the README's way to hold a thread's own
 * lock, a pthread mutex inside a library call): its ticks land in the
 * regions and come due at prt_preempt_enable(). The first extends the
 * slice (the mutex is held); a later one must end it there, or the
 * other fiber of its priority never runs while the mutex is held. (Found
 * by a review: before, it waited for the whole critical section.)
 */
struct rgn {
	prt_mutex_t m;
	atomic_long other_runs;
	int other_ran_while_held;
};

static void *rgn_hog(void *arg)
{
	struct rgn *r = arg;
	uint64_t x = 43;
	struct cap c;

	long at_lock;

	assert_int_equal(prt_mutex_lock(&r->m), 0);
	at_lock = atomic_load(&r->other_runs);
	cap_init(&c);
	while (atomic_load_explicit(&r->other_runs, memory_order_relaxed) < at_lock + 2 &&
	       !cap_hit(&c)) {
		assert_int_equal(prt_preempt_disable(), 0);
		x = spin_work(x, 1u << 16);
		assert_int_equal(prt_preempt_enable(), 0);
	}
	r->other_ran_while_held = atomic_load(&r->other_runs) >= at_lock + 2;
	assert_int_equal(prt_mutex_unlock(&r->m), 0);
	sink = x;
	return NULL;
}

static void *rgn_other(void *arg)
{
	struct rgn *r = arg;
	uint64_t x = 47;

	/* Each time it gets the worker: count, then let the hog go on. */
	for (int i = 0; i < 3; i++) {
		atomic_fetch_add(&r->other_runs, 1);
		x = spin_work(x, 1024);
		assert_int_equal(prt_yield(), 0);
	}
	sink = x;
	return NULL;
}

static void test_extended_slice_ends_in_regions(void **state)
{
	struct rgn r = { .m = PRT_MUTEX_INITIALIZER };
	prt_runtime_t *rt;
	prt_fiber_t fh, fo;

	(void)state;
	if (!(rt = rt_preempt(1, EXT_QUANTUM)))
		skip();
	fh = spawn_at(rt, 16, 0, rgn_hog, &r);
	fo = spawn_at(rt, 16, 0, rgn_other, &r);
	join_ok(fh);
	join_ok(fo);
	assert_int_equal(r.other_ran_while_held, 1);
	assert_true(stats_of(rt, 0).slice_extensions >= 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A tick that lands in the library's own code is deferred; a fiber that
 * only locks and unlocks an uncontended mutex in a loop spends nearly all
 * its time there and reaches no scheduling point. The deferred tick must
 * end the slice at the next unlock that releases the fiber's last lock,
 * not wait for a later tick to land in the fiber's own code (before: the
 * loop kept the worker 68-152 ms at a 4 ms slice). Counted, not timed:
 * a deferral counted between the stats reads ending iterations k-1 and
 * k is honoured by the end of iteration k+1's unlocks, so the other hog
 * must have run between the reads of its counter in iterations k-1 and
 * k+1 (each made before that iteration's stats read).
 */
struct lkloop {
	atomic_uint other_rounds;
	atomic_int stop;
	unsigned deferred_seen, missed;
	prt_runtime_t *rt;
	int io_fd[2]; /* test_deferred_tick_ends_slice_at_io: a socketpair; else -1 */
	bool io_poll; /* there: prt_poll for writable, not a write and a read */
};

static void *lkloop_locker(void *arg)
{
	struct lkloop *l = arg;
	prt_mutex_t m = PRT_MUTEX_INITIALIZER;
	unsigned o_last = atomic_load(&l->other_rounds), o_ref = 0;
	uint64_t d_prev = stats_of(l->rt, 0).preempt_deferred;
	bool check = false;
	struct cap c;

	cap_init(&c);
	while (l->deferred_seen < 80 && !cap_hit(&c)) {
		uint64_t d;
		unsigned o;

		for (int i = 0; i < 64; i++) {
			if (l->io_fd[0] >= 0 && l->io_poll) {
				assert_true(prt_poll(l->io_fd[0], POLLOUT) & POLLOUT);
				continue;
			}
			if (l->io_fd[0] >= 0) {
				char c = 'x';

				assert_int_equal(prt_write(l->io_fd[0], &c, 1), 1);
				assert_int_equal(prt_read(l->io_fd[1], &c, 1), 1);
				continue;
			}
			assert_int_equal(prt_mutex_lock(&m), 0);
			assert_int_equal(prt_mutex_unlock(&m), 0);
		}
		o = atomic_load(&l->other_rounds);
		if (check && o == o_ref)
			l->missed++; /* deferred, and not switched out at an unlock since */
		check = false;
		d = stats_of(l->rt, 0).preempt_deferred;
		if (d != d_prev) {
			l->deferred_seen++;
			check = true;
			o_ref = o_last;
		}
		d_prev = d;
		o_last = o;
	}
	atomic_store(&l->stop, 1);
	return NULL;
}

static void *lkloop_other(void *arg)
{
	struct lkloop *l = arg;
	uint64_t x = 3;
	struct cap c;

	cap_init(&c);
	while (!atomic_load_explicit(&l->stop, memory_order_relaxed) && !cap_hit(&c)) {
		x = spin_work(x, 256);
		atomic_fetch_add_explicit(&l->other_rounds, 1, memory_order_relaxed);
	}
	sink = x;
	return NULL;
}

static void test_deferred_tick_ends_slice_at_unlock(void **state)
{
	struct lkloop l = { .io_fd = { -1, -1 } };
	prt_fiber_t fl, fo;

	(void)state;
	if (!(l.rt = rt_preempt(1, 1000000)))
		skip();
	fl = spawn_at(l.rt, 16, 0, lkloop_locker, &l);
	fo = spawn_at(l.rt, 16, 0, lkloop_other, &l);
	join_ok(fl);
	join_ok(fo);
	print_message("deferred=%u missed=%u time_slices=%llu\n", l.deferred_seen, l.missed,
		      (unsigned long long)stats_of(l.rt, 0).time_slices);
	assert_true(l.deferred_seen >= 80);
	/*
	 * A mark that the fiber's own count update overwrote (the handler
	 * ran between its load and store) waits for the next tick: ~1 in 10
	 * where this was written; on this host (session 31) 3-27 of 80, the
	 * same at the session's start (20 runs each), so a third failed 1 run
	 * in 20. Before the fix, nearly every one: 78 of 80.
	 */
	assert_true(l.missed <= l.deferred_seen / 2);
	assert_int_equal(prt_runtime_destroy(l.rt), 0);
}

/*
 * The same with a fiber I/O call for the lock and unlock: a write and a
 * read of one byte on a socketpair, on the epoll backend, where both
 * complete at once and never park (then a prt_poll of the writable end,
 * which returns at once too). Its ticks land in libc and the
 * library; a deferred one must end the slice at the next I/O call's
 * end (a safe point, sched_int.h), not wait for one to land in the
 * fiber's own code. Before: nearly every one missed (a user's trial:
 * ~60 ms a switch at a 4 ms slice).
 */
static void io_loop_case(bool poll)
{
	struct lkloop l = { .io_poll = poll };
	prt_fiber_t fl, fo;

	if (!(l.rt = rt_preempt_io(1, 1000000, PRT_IO_EPOLL)))
		skip();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, l.io_fd), 0);
	fl = spawn_at(l.rt, 16, 0, lkloop_locker, &l);
	fo = spawn_at(l.rt, 16, 0, lkloop_other, &l);
	join_ok(fl);
	join_ok(fo);
	print_message("%s: deferred=%u missed=%u time_slices=%llu\n", poll ? "poll" : "write+read",
		      l.deferred_seen, l.missed, (unsigned long long)stats_of(l.rt, 0).time_slices);
	assert_true(l.deferred_seen >= 80);
	assert_true(l.missed <= l.deferred_seen / 2); /* as at the unlock, above */
	assert_int_equal(prt_runtime_destroy(l.rt), 0);
	close(l.io_fd[0]);
	close(l.io_fd[1]);
}

static void test_deferred_tick_ends_slice_at_io(void **state)
{
	(void)state;
	io_loop_case(false);
	io_loop_case(true); /* prt_poll of a ready fd */
}

/*
 * A deferral's mark (above) must not use up the time-slice extension:
 * a fiber that spends a while in runtime calls outside any lock (its
 * ticks deferred and marked), yields, then takes a lock for most of a
 * slice is still extended to its unlock. (From a review: the mark,
 * left across the yield, read as "extended once already", and the
 * fiber was stopped holding the lock in 24-27 of these 300 sections;
 * 0-1 after.) A section lasts 170 us of a 100 us quantum: the tick that
 * extends it comes 100-200 us after the switch that began it, and the
 * next, 100 us later, would stop it. At 190 us (until session 42) that
 * left 10 us for the switch, the lock and the clock reads, which
 * ThreadSanitizer outgrew: 0-11 stopped, 4 runs in 60 failed. At 170
 * us 0-1 are; with a deferral's mark taken for an extension again
 * (the bug), 129-143.
 */
struct mkext {
	prt_mutex_t m;
	atomic_ulong other;
	atomic_int stop;
	unsigned sections, stopped_inside, descheduled;
};

/* This thread's CPU time, ns. */
static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t mkext_lib(uint64_t ns)
{
	prt_workerset_t s;
	uint64_t end = test_mono_ns() + ns, x = 0;

	prt_workerset_fill(&s);
	while (test_mono_ns() < end)
		for (int i = 0; i < 20; i++)
			x += (uint64_t)prt_workerset_count(&s);
	return x;
}

static void *mkext_a(void *arg)
{
	struct mkext *k = arg;
	uint64_t x = 1;

	for (int i = 0; i < 300; i++) {
		unsigned long o0, o1;
		uint64_t end, w0, c0;
		int64_t lost;

		x += mkext_lib(250000);
		prt_yield();
		assert_int_equal(prt_mutex_lock(&k->m), 0);
		o0 = atomic_load(&k->other);
		w0 = test_mono_ns();
		c0 = thread_cpu_ns();
		for (end = w0 + 170000; test_mono_ns() < end;)
			x = spin_work(x, 64);
		o1 = atomic_load(&k->other);
		lost = (test_mono_ns() - w0) - (thread_cpu_ns() - c0);
		assert_int_equal(prt_mutex_unlock(&k->m), 0);
		k->sections++;
		/*
		 * The worker thread off its CPU for a while (a loaded machine:
		 * wall time passes, the slice's extension runs out, and the
		 * next tick stops the fiber, as it should): not this test's
		 * case. A fiber stopped inside while its worker ran the other
		 * one loses no thread CPU time.
		 */
		if (lost > 200000)
			k->descheduled++;
		else
			k->stopped_inside += o1 != o0;
	}
	sink = x;
	atomic_store(&k->stop, 1);
	return NULL;
}

static void *mkext_b(void *arg)
{
	struct mkext *k = arg;

	while (!atomic_load_explicit(&k->stop, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&k->other, 1, memory_order_relaxed);
		prt_yield();
	}
	return NULL;
}

static void test_mark_keeps_extension(void **state)
{
	struct mkext k = { .m = PRT_MUTEX_INITIALIZER };
	prt_runtime_t *rt;
	prt_fiber_t fa, fb;

	(void)state;
	if (!(rt = rt_preempt(1, 100000)))
		skip();
	fa = spawn_at(rt, 16, 0, mkext_a, &k);
	fb = spawn_at(rt, 16, 0, mkext_b, &k);
	join_ok(fa);
	join_ok(fb);
	print_message("sections=%u stopped_inside=%u descheduled=%u extensions=%llu\n", k.sections,
		      k.stopped_inside, k.descheduled,
		      (unsigned long long)stats_of(rt, 0).slice_extensions);
	assert_int_equal(k.sections, 300);
	assert_true(k.stopped_inside <= (k.sections - k.descheduled) / 30);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A fiber's I/O call on the epoll backend while preemption signals land
 * on its worker: prt_poll_timeout polls with poll(fd, 0) first, which
 * the kernel fails with EINTR when a signal is pending (poll is never
 * restarted, whatever SA_RESTART says; signal(7)). io.h promises -EINTR
 * only on a plain thread: with the poll not retried, ~120 of 20000
 * polls returned -EINTR (a review). Two hogs keep both workers'
 * slices ending (50 us) while a third fiber polls an empty pipe.
 */
static atomic_int pe_stop, pe_eintr, pe_other;
static int pe_fd[2];

static void *pe_hog(void *a)
{
	uint64_t x = 1;

	(void)a;
	while (!atomic_load_explicit(&pe_stop, memory_order_relaxed))
		x = x * 6364136223846793005ull + 1;
	sink_put(x);
	return NULL;
}

static void *pe_poller(void *a)
{
	(void)a;
	/* ~0.6% failed before: 5000 polls saw ~30 (TSan: 1000, ~6; each poll waits out a slice) */
	for (int i = 0; i < (PRT_TEST_TSAN ? 1000 : 5000); i++) {
		int r = prt_poll_timeout(pe_fd[0], POLLIN, 1000);

		if (r == -EINTR)
			atomic_fetch_add(&pe_eintr, 1);
		else if (r != -ETIMEDOUT)
			atomic_fetch_add(&pe_other, 1);
	}
	atomic_store(&pe_stop, 1);
	return NULL;
}

static void test_epoll_poll_no_eintr(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_fiber_t h[2], p;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	cfg.io_backend = PRT_IO_EPOLL;
	cfg.preempt_quantum_ns = 50000;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	if (prt_runtime_preemptive(rt, NULL) != 1) {
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
	assert_int_equal(pipe2(pe_fd, O_NONBLOCK), 0);
	atomic_store(&pe_stop, 0);
	atomic_store(&pe_eintr, 0);
	atomic_store(&pe_other, 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(prt_spawn(rt, &h[i], NULL, pe_hog, NULL), 0);
	assert_int_equal(prt_spawn(rt, &p, NULL, pe_poller, NULL), 0);
	join_ok(p);
	join_ok(h[0]);
	join_ok(h[1]);
	assert_int_equal(atomic_load(&pe_eintr), 0);
	assert_int_equal(atomic_load(&pe_other), 0);
	close(pe_fd[0]);
	close(pe_fd[1]);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- I/O that ends while the worker computes -------------------------------------- */

/*
 * A worker finds its I/O completions (io_uring's CQ, epoll's readiness)
 * and the commands other workers post it (a prt_close's cancels) only
 * where it looks: at a scheduling point. A fiber whose read ended
 * behind a hog (no runtime calls) waited for the hog to end: with the
 * hog alone (no tick ran), and with hogs sharing the worker in time
 * slices too (the preemption path did not look); a prt_close() on
 * another worker waited just as long for this one's ack. Now the tick
 * runs while requests are in flight, and a preemption looks as a
 * scheduling point does; a reader above the hog preempts it then.
 */
struct iob {
	int fd[2];
	int reader_prio, hogs;
	bool close_it;       /* a fiber on worker 1 prt_close()s fd[0] instead of a write */
	atomic_int parked;   /* the reader is about to wait */
	atomic_int running;  /* hogs computing */
	atomic_int done;     /* the reader's call returned */
	long res;
	int close_res;
	int hog_saw_done[2];
};

static void *iob_reader(void *arg)
{
	struct iob *p = arg;
	char c = 0;

	atomic_store(&p->parked, 1);
	p->res = prt_read(p->fd[0], &c, 1);
	if (p->res == 1 && c != 'z')
		p->res = -EPROTO;
	atomic_store(&p->done, 1);
	return NULL;
}

static void *iob_hog(void *arg)
{
	struct iob *p = arg;
	int me = atomic_fetch_add(&p->running, 1);
	struct cap c;
	uint64_t x = 3;

	cap_init(&c);
	while (!atomic_load_explicit(&p->done, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink_put(x);
	p->hog_saw_done[me] = atomic_load(&p->done);
	return NULL;
}

/* Once the reader waits and the hogs compute: write its byte, or prt_close() its fd. */
static void iob_wait_ready(struct iob *p)
{
	while (!atomic_load(&p->parked) || atomic_load(&p->running) < p->hogs)
		sched_yield();
	usleep(5000); /* the reader parked in its read */
}

static void *iob_writer(void *arg)
{
	struct iob *p = arg;

	iob_wait_ready(p);
	return write(p->fd[1], "z", 1) == 1 ? NULL : (void *)1;
}

static void *iob_closer(void *arg)
{
	struct iob *p = arg;

	iob_wait_ready(p);
	p->close_res = prt_close(p->fd[0]);
	return NULL;
}

static void iob_case(int backend, int reader_prio, int hogs, bool close_it)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	struct iob p = { .reader_prio = reader_prio, .hogs = hogs, .close_it = close_it };
	prt_fiber_t r, h[2], cl;
	pthread_t wt;

	/* Under valgrind: no preemption (the runtime says so below), and no io_uring (test_common.h). */
	if (test_under_valgrind())
		skip();
	prt_runtime_config_init(&cfg);
	cfg.nworkers = close_it ? 2 : 1;
	cfg.io_backend = backend;
	cfg.preempt_quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT;
	assert_int_equal(test_create_own_quantum(&rt, &cfg), 0);
	if (prt_runtime_preemptive(rt, NULL) != 1 || prt_runtime_io_backend(rt) != backend) {
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
	assert_int_equal(pipe2(p.fd, O_CLOEXEC), 0);
	r = spawn_at(rt, reader_prio, 0, iob_reader, &p);
	while (!atomic_load(&p.parked))
		sched_yield();
	for (int i = 0; i < hogs; i++)
		h[i] = spawn_at(rt, 16, 0, iob_hog, &p);
	if (close_it)
		cl = spawn_at(rt, 16, 1, iob_closer, &p);
	else
		assert_int_equal(pthread_create(&wt, NULL, iob_writer, &p), 0);
	join_ok(r);
	for (int i = 0; i < hogs; i++)
		join_ok(h[i]);
	if (close_it) {
		join_ok(cl);
		assert_int_equal(p.close_res, 0);
		assert_int_equal(p.res, -ECANCELED);
	} else {
		void *wres;

		assert_int_equal(pthread_join(wt, &wres), 0);
		assert_null(wres);
		assert_int_equal(p.res, 1);
		close(p.fd[0]);
	}
	for (int i = 0; i < hogs; i++)
		if (!p.hog_saw_done[i])
			fail_msg("backend %d, reader at %d, %d hog(s)%s: the hog ran to its cap",
				 backend, reader_prio, hogs, close_it ? ", prt_close" : "");
	close(p.fd[1]);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * Calls the kernel completes at once (an accept with connections
 * waiting, a recv with data there), made by a fiber next to one that
 * computes: on io_uring each was queued for the next batch, made at the
 * next tick and reaped at the one after, so every call cost its fiber a
 * time slice of the hog's, two ticks each (a review: 50 accepts behind
 * one hog took 1-1.7 s, against 0.6 ms on epoll, which tries the call
 * first). Counted in time slices, not time: the hog got one slice per
 * call, or about 2N for N calls; now the calls run in one slice of the
 * fiber making them.
 */
#define IR_CONNS 20

struct ir {
	int lfd;
	atomic_int done, hog_ran;
	int accepted, read;
};

static void *ir_hog(void *arg)
{
	struct ir *p = arg;
	struct cap c;
	uint64_t x = 5;

	atomic_store(&p->hog_ran, 1);
	cap_init(&c);
	while (!atomic_load_explicit(&p->done, memory_order_relaxed) && !cap_hit(&c))
		x = spin_work(x, 4096);
	sink_put(x);
	return NULL;
}

static void *ir_server(void *arg)
{
	struct ir *p = arg;

	for (int i = 0; i < IR_CONNS; i++) {
		int fd = prt_accept(p->lfd, NULL, NULL, SOCK_CLOEXEC);
		char c = 0;

		if (fd < 0)
			break;
		p->accepted++;
		if (prt_recv(fd, &c, 1, 0) == 1 && c == 'q')
			p->read++;
		close(fd);
	}
	atomic_store(&p->done, 1);
	return NULL;
}

static void test_io_ready_behind_hog(void **state)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	struct ir p = { 0 };
	int cfd[IR_CONNS];
	prt_fiber_t h, srv;
	uint64_t slices;

	(void)state;
	if (test_under_valgrind() || !test_uring_usable("test_preempt"))
		skip();
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.io_backend = PRT_IO_URING;
	cfg.preempt_quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT;
	assert_int_equal(test_create_own_quantum(&rt, &cfg), 0);
	if (prt_runtime_preemptive(rt, NULL) != 1) {
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
	/* An abstract socket: nothing in the file system. */
	snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "prt_ir_%d", (int)getpid());
	p.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p.lfd >= 0);
	assert_int_equal(bind(p.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(p.lfd, IR_CONNS + 4), 0);
	for (int i = 0; i < IR_CONNS; i++) {
		cfd[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_int_equal(connect(cfd[i], (struct sockaddr *)&a, sizeof(a)), 0);
		assert_int_equal(write(cfd[i], "q", 1), 1);
	}
	/* The hog first: the server runs once a tick has stopped it. */
	h = spawn_at(rt, 16, 0, ir_hog, &p);
	while (!atomic_load(&p.hog_ran))
		sched_yield();
	srv = spawn_at(rt, 16, 0, ir_server, &p);
	join_ok(srv);
	join_ok(h);
	slices = stats_of(rt, 0).time_slices;
	assert_int_equal(p.accepted, IR_CONNS);
	assert_int_equal(p.read, IR_CONNS);
	/* One to let the server in, a few for a loaded machine: not one or two a call. */
	if (slices >= IR_CONNS / 2)
		fail_msg("%llu time slices for %d accepts and %d reads behind a hog",
			 (unsigned long long)slices, IR_CONNS, IR_CONNS);
	for (int i = 0; i < IR_CONNS; i++)
		close(cfd[i]);
	close(p.lfd);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_io_behind_hog(void **state)
{
	static const int backends[] = { PRT_IO_URING, PRT_IO_EPOLL };

	(void)state;
	for (int b = 0; b < 2; b++) {
		iob_case(backends[b], 16, 1, false); /* a lone hog: no slice, no tick before */
		iob_case(backends[b], 24, 1, false); /* a reader above the hog */
		iob_case(backends[b], 16, 2, false); /* hogs sharing the worker in slices */
		iob_case(backends[b], 16, 1, true);  /* a prt_close() from worker 1 */
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_quantum_zero_is_cooperative),
		cmocka_unit_test(test_io_behind_hog),
		cmocka_unit_test(test_io_ready_behind_hog),
		cmocka_unit_test(test_sleeper_behind_hog),
		cmocka_unit_test(test_region_ends_with_fiber),
		cmocka_unit_test(test_watch_lead),
		cmocka_unit_test(test_honoured_wakeup_sends_no_kick),
		cmocka_unit_test(test_bias_revoked),
		cmocka_unit_test(test_bias_blocked_syscall),
		cmocka_unit_test(test_bias_steal),
		cmocka_unit_test(test_bias_proxy),
		cmocka_unit_test(test_bias_claim_window),
		cmocka_unit_test(test_bias_entered_window),
		cmocka_unit_test(test_equal_hogs_share),
		cmocka_unit_test(test_altstack_disabled_by_fiber),
		cmocka_unit_test(test_altstack_moved_by_fiber),
		cmocka_unit_test(test_altstack_moved_cpu_tick),
		cmocka_unit_test(test_equal_hogs_share_cpu_tick),
		cmocka_unit_test(test_equal_hogs_share_under_sleeper),
		cmocka_unit_test(test_equal_hogs_share_cpu_tick_under_sleeper),
		cmocka_unit_test(test_tick_spares_blocked_syscall),
		cmocka_unit_test(test_tick_stops_above_contention),
		cmocka_unit_test(test_dump_shows_preempted),
		cmocka_unit_test(test_cross_worker_wakeup),
		cmocka_unit_test(test_priority_raise_preempts),
		cmocka_unit_test(test_priority_lower_preempts),
		cmocka_unit_test(test_donor_timeout_behind_proxy),
		cmocka_unit_test(test_chain_link_times_out),
		cmocka_unit_test(test_chain_link_cancelled),
		cmocka_unit_test(test_no_migration_on_preemption),
		cmocka_unit_test(test_disable_region),
		cmocka_unit_test(test_app_handler_not_preempted),
		cmocka_unit_test(test_app_handler_on_fiber_stack_not_preempted),
		cmocka_unit_test(test_registers_survive),
		cmocka_unit_test(test_libc_hogs),
		cmocka_unit_test(test_signal_shared_and_restored),
		cmocka_unit_test(test_signal_chained_as_the_kernel_would),
		cmocka_unit_test(test_nodefer_handler_not_switched),
		cmocka_unit_test(test_fork_handlers_not_preempted),
		cmocka_unit_test(test_signal_roles_across_runtimes),
		cmocka_unit_test(test_deny_range_and_object),
		cmocka_unit_test(test_deny_object_at_reused_address),
		cmocka_unit_test(test_runtime_helpers_denied),
		cmocka_unit_test(test_deny_recheck_after_other_remake),
		cmocka_unit_test(test_now_ns_is_safe_point),
		cmocka_unit_test(test_retry_backs_off),
		cmocka_unit_test(test_watch_follows_timers),
		cmocka_unit_test(test_watch_slack),
		cmocka_unit_test(test_watch_slack_one_deferral),
		cmocka_unit_test(test_honoured_retry_disarmed),
		cmocka_unit_test(test_slice_waits_for_unlock),
		cmocka_unit_test(test_slice_extension_bounded),
		cmocka_unit_test(test_slice_ended_at_unlock_may_move),
		cmocka_unit_test(test_slice_end_announces),
		cmocka_unit_test(test_owed_slice_and_disable_region),
		cmocka_unit_test(test_owed_slice_keeps_errno_across_move),
		cmocka_unit_test(test_extended_slice_ends_in_regions),
		cmocka_unit_test(test_deferred_tick_ends_slice_at_unlock),
		cmocka_unit_test(test_deferred_tick_ends_slice_at_io),
		cmocka_unit_test(test_mark_keeps_extension),
		cmocka_unit_test(test_epoll_poll_no_eintr),
	};

	/* The tests choose their time slices: not the environment's. */
	unsetenv("PRT_PREEMPT_QUANTUM_NS");
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* a test's name, or a pattern with '*' */
	/*
	 * Some tests need an idle worker to take a fiber while it is idle
	 * between a sleeper's rounds: the default steal grace, not one a
	 * caller's environment sets (test_sched tests the variable).
	 */
	unsetenv("PRT_STEAL_GRACE_NS");
	fa_register(); /* before the first runtime (test_fork_handlers_not_preempted) */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
