/* SPDX-License-Identifier: MIT */
/*
 * Scheduler across workers: stealing, affinity, waking parked workers,
 * work conservation, scale.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <proxyrt/sem.h>

#include "fault.h"
#include "test_common.h"
#include "worker.h"
#include "runtime_int.h" /* internal: worker sleeping flags */

/* ---- idle workers take work (stealing) ---- */

static atomic_uint seen_workers;

static void *until_two_workers(void *arg)
{
	(void)arg;
	for (;;) {
		unsigned m = atomic_fetch_or(&seen_workers, 1u << prt_worker_index());

		if (__builtin_popcount(m | (1u << prt_worker_index())) >= 2)
			return NULL;
		/* Burn a little CPU so the queue stays long enough to be stolen from. */
		for (volatile int i = 0; i < 20000; i++)
			;
		prt_yield();
	}
}

static void *spawn_many_local(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t f[64];

	(void)arg;
	for (int i = 0; i < 64; i++)
		FIBER_CHECK(prt_spawn(rt, &f[i], NULL, until_two_workers, NULL) == 0);
	for (int i = 0; i < 64; i++)
		FIBER_CHECK(prt_join(f[i], NULL) == 0);
	return NULL;
}

static void test_idle_worker_steals(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	uint64_t steals = 0;

	(void)state;
	atomic_store(&seen_workers, 0);
	/* All 64 fibers are queued on the spawner's worker; only stealing spreads them. */
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, spawn_many_local, NULL));
	for (int i = 0; i < 2; i++) {
		prt_worker_stats_t s;

		assert_int_equal(prt_worker_stats(rt, i, &s), 0);
		steals += s.steals;
	}
	assert_true(steals > 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * ---- the steal grace (cfg.steal_grace_ns) ----
 * A fiber spawns B on its own worker and then computes without runtime
 * calls (cooperative runtime: nothing takes its worker). B runs while it
 * computes only if the idle worker steals it.
 */
struct grace_run {
	atomic_int b_worker; /* where B ran; -1: not yet */
	bool wait_for_b;     /* A computes until B ran (10 s cap) instead of 30 ms */
	int a_worker;
	int b_worker_during; /* B's worker as A saw it when it stopped computing */
	bool idle_slept;     /* the worker A does not run on slept at some look while A computed */
	bool idle_asleep;    /* that worker slept at each of 10 looks 0.1 ms apart, at the end */
	bool ticker;         /* a fiber on the other worker sleeps 50 us in a loop meanwhile */
	atomic_int stop_ticker;
};

static void *grace_ticker(void *arg)
{
	struct grace_run *g = arg;

	while (!atomic_load(&g->stop_ticker))
		FIBER_CHECK(prt_sleep_ns(50000) == 0);
	return NULL;
}

static uint64_t parks_of(int w)
{
	prt_worker_stats_t s;

	assert_int_equal(prt_worker_stats(prt_runtime_self(), w, &s), 0);
	return s.parks;
}

static void *grace_b(void *arg)
{
	struct grace_run *g = arg;

	atomic_store(&g->b_worker, prt_worker_index());
	return NULL;
}

static void *grace_a(void *arg)
{
	struct grace_run *g = arg;
	uint64_t end = test_mono_ns() + (g->wait_for_b ? 10000000000ull : 30000000ull), look = 0;
	prt_fiber_t b, t;

	g->a_worker = prt_worker_index();
	if (g->ticker) {
		prt_fiber_attr_t ta = test_attr(PRT_PRIO_DEFAULT, 1 - g->a_worker);

		atomic_store(&g->stop_ticker, 0);
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &t, &ta, grace_ticker, g) == 0);
	}
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &b, NULL, grace_b, g) == 0);
	g->idle_slept = false;
	for (uint64_t now; (now = test_mono_ns()) < end &&
			   !(g->wait_for_b && atomic_load(&g->b_worker) >= 0);) {
		if (now >= look) { /* every 1 ms */
			g->idle_slept |= atomic_load(&prt_runtime_self()->workers[1 - g->a_worker]->sleeping) == 1;
			look = now + 1000000;
		}
	}
	g->b_worker_during = atomic_load(&g->b_worker);
	if (g->ticker) {
		atomic_store(&g->stop_ticker, 1);
		FIBER_CHECK(prt_join(t, NULL) == 0);
	}
	g->idle_asleep = true;
	for (int i = 0; i < 10; i++) {
		uint64_t t = test_mono_ns() + 100000;

		g->idle_asleep &= atomic_load(&prt_runtime_self()->workers[1 - g->a_worker]->sleeping) == 1;
		while (test_mono_ns() < t)
			;
	}
	FIBER_CHECK(prt_join(b, NULL) == 0);
	return NULL;
}

/*
 * A cooperative runtime of @nworkers with steal grace @grace (ns); @env,
 * if not NULL, as PRT_STEAL_GRACE_NS while it is made. The environment's
 * overrides are unset: the hogs keep their workers.
 */
static prt_runtime_t *grace_rt_env(int nworkers, uint64_t grace, const char *env)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.preempt_quantum_ns = 0;
	cfg.steal_grace_ns = grace;
	if (env)
		setenv("PRT_STEAL_GRACE_NS", env, 1);
	else
		unsetenv("PRT_STEAL_GRACE_NS");
	assert_int_equal(test_create_own_quantum(&rt, &cfg), 0);
	unsetenv("PRT_STEAL_GRACE_NS");
	return rt;
}

static prt_runtime_t *grace_rt(uint64_t grace)
{
	return grace_rt_env(2, grace, NULL);
}

static void grace_case(uint64_t grace, const char *env, bool wait_for_b, struct grace_run *g)
{
	prt_runtime_t *rt = grace_rt_env(2, grace, env);

	atomic_store(&g->b_worker, -1);
	g->wait_for_b = wait_for_b;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, grace_a, g));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * ---- the yield's queue swap (prt__rq_swap) ----
 *
 * A yield that finds a fiber counted as itself at the head of its level
 * swaps the two in place, without recounting. Four fibers on one worker,
 * in the order P1 P2 A1 A2 (P pinned there, A free to run anywhere,
 * nobody steals), yield round-robin: P1 -> P2 and A1 -> A2 swap, P2 ->
 * A1 and A2 -> P1 take the full path. Each checks, while all four are
 * alive, that the order holds and that the queue's counts are what the
 * three others make them: nr 3, nr_any the number of A among them, no
 * donor, one level.
 */
enum { SWAP_FIBERS = 4, SWAP_ROUNDS = 2000 };

struct swap_run {
	int prio;
	int seq;        /* index of the fiber whose turn it is */
	int w0;         /* the worker they all run on */
	bool pinned[SWAP_FIBERS];
};

struct swap_arg {
	struct swap_run *r;
	int me;
};

static void *swap_fiber(void *arg)
{
	struct swap_arg *a = arg;
	struct swap_run *r = a->r;

	for (int i = 0; i < SWAP_ROUNDS; i++) {
		struct prt__worker *w = prt__cur_worker();
		unsigned any_others = 0;

		FIBER_CHECK(w->index == r->w0);
		FIBER_CHECK(r->seq == a->me); /* round-robin: behind the other three */
		r->seq = (a->me + 1) % SWAP_FIBERS;
		for (int j = 0; j < SWAP_FIBERS; j++)
			any_others += j != a->me && !r->pinned[j];
		if (i < SWAP_ROUNDS - 1) { /* all four alive and queued but me */
			FIBER_CHECK(atomic_load(&w->rq.nr) == SWAP_FIBERS - 1);
			FIBER_CHECK(atomic_load(&w->rq.nr_any) == any_others);
			FIBER_CHECK(atomic_load(&w->rq.nr_donor) == 0);
			FIBER_CHECK(w->rq.bitmap == 1u << r->prio);
		}
		FIBER_CHECK(prt_yield() == 0);
	}
	return NULL;
}

static void *swap_driver(void *arg)
{
	struct swap_run *r = arg;
	struct swap_arg a[SWAP_FIBERS];
	prt_fiber_t f[SWAP_FIBERS];
	void *res;

	r->w0 = prt__cur_worker()->index;
	r->seq = 0;
	for (int i = 0; i < SWAP_FIBERS; i++) {
		prt_fiber_attr_t attr;

		prt_fiber_attr_init(&attr);
		attr.priority = r->prio;
		if (r->pinned[i]) {
			attr.has_affinity = 1;
			prt_workerset_zero(&attr.affinity);
			prt_workerset_add(&attr.affinity, r->w0);
		}
		a[i] = (struct swap_arg){ r, i };
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &f[i], &attr, swap_fiber, &a[i]) == 0);
	}
	for (int i = 0; i < SWAP_FIBERS; i++) {
		FIBER_CHECK(prt_join(f[i], &res) == 0);
		FIBER_CHECK(res == NULL);
	}
	return NULL;
}

static void test_yield_swap_counts(void **state)
{
	const char *saved = getenv("PRT_PREEMPT_QUANTUM_NS");
	char *keep = saved ? strdup(saved) : NULL;
	/* nobody steals: the four stay on the driver's worker */
	prt_runtime_t *rt = grace_rt_env(2, UINT64_MAX, NULL);
	struct swap_run r = { .pinned = { true, true, false, false } };

	(void)state;
	r.prio = PRT_PRIO_DEFAULT;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT + 1, swap_driver, &r));
	r.prio = PRT_PRIO_DEFAULT + 3; /* above the driver, on another level */
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, swap_driver, &r));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	if (keep) {
		setenv("PRT_PREEMPT_QUANTUM_NS", keep, 1);
		free(keep);
	}
}

/*
 * ---- a priority change while its fiber is being queued ----
 *
 * Y yields behind B (pinned, so they do not swap): Y's queueing loads
 * Y's priority, then is held (pause point) before it publishes where Y
 * is queued. Meanwhile Y is raised from 10 to 20. The change must still
 * move Y to level 20: before, it found Y queued nowhere, did nothing,
 * and Y waited at level 10 until it queued again.
 */
#if PRT_FAULT_INJECTION
struct pcq {
	prt_fiber_t y;
	atomic_int armed, paused, release, b_waiting, checked, stop, y_ready;
};

static struct pcq pcq;

static void pcq_add_pause(void *arg)
{
	struct prt__worker *w = prt__cur_worker();
	uint64_t end;

	(void)arg;
	if (!w || w->curr != (struct prt__fiber *)pcq.y.p || !atomic_exchange(&pcq.armed, 0))
		return;
	atomic_store(&pcq.paused, 1);
	end = test_mono_ns() + 10000000000ull;
	while (!atomic_load(&pcq.release) && test_mono_ns() < end)
		sched_yield();
}

static void pcq_settle_pause(void *arg)
{
	(void)arg;
	atomic_store(&pcq.release, 1); /* the queueing may finish: the change waits for its lock */
}

static void *pcq_y(void *arg)
{
	(void)arg;
	while (!atomic_load(&pcq.stop))
		FIBER_CHECK(prt_yield() == 0);
	return NULL;
}

static void *pcq_b(void *arg)
{
	(void)arg;
	while (!atomic_load(&pcq.stop)) {
		if (atomic_load(&pcq.release) && !atomic_load(&pcq.checked)) {
			uint64_t end = test_mono_ns() + 10000000000ull;

			/* Keep the worker: Y stays queued as it was left while the test looks. */
			atomic_store(&pcq.b_waiting, 1);
			while (!atomic_load(&pcq.checked) && test_mono_ns() < end)
				sched_yield();
		}
		FIBER_CHECK(prt_yield() == 0);
	}
	return NULL;
}

static void *pcq_driver(void *arg)
{
	prt_fiber_attr_t a;
	prt_fiber_t b;
	void *res;

	(void)arg;
	prt_fiber_attr_init(&a);
	a.priority = 10;
	a.has_affinity = 1;
	prt_workerset_zero(&a.affinity);
	prt_workerset_add(&a.affinity, prt__cur_worker()->index);
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &b, &a, pcq_b, NULL) == 0);
	prt_fiber_attr_init(&a);
	a.priority = 10; /* free to run anywhere, but nobody steals here */
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &pcq.y, &a, pcq_y, NULL) == 0);
	atomic_store(&pcq.y_ready, 1);
	FIBER_CHECK(prt_join(b, &res) == 0 && !res);
	FIBER_CHECK(prt_join(pcq.y, &res) == 0 && !res);
	return NULL;
}

/*
 * Pause Y inside its queueing (prt__rq_add, rq lock held), apply
 * @change to it from this thread, let the queueing finish, and @look at
 * Y as it is queued while B holds the worker.
 */
static void pcq_run(void (*change)(void), void (*look)(void))
{
	const char *saved = getenv("PRT_PREEMPT_QUANTUM_NS");
	char *keep = saved ? strdup(saved) : NULL;
	prt_runtime_t *rt = grace_rt_env(2, UINT64_MAX, NULL);
	prt_fiber_attr_t a;
	prt_fiber_t d;
	void *res;

	memset(&pcq, 0, sizeof(pcq));
	prt__fault_set_pause(PRT_PAUSE_RQ_ADD, pcq_add_pause, NULL);
	prt__fault_set_pause(PRT_PAUSE_REQUEUE_SETTLE, pcq_settle_pause, NULL);
	prt_fiber_attr_init(&a);
	a.priority = 30; /* spawns both, then waits in join */
	assert_int_equal(prt_spawn(rt, &d, &a, pcq_driver, NULL), 0);
	while (!atomic_load(&pcq.y_ready))
		sched_yield();
	atomic_store(&pcq.armed, 1);
	while (!atomic_load(&pcq.paused))
		sched_yield();
	change();
	atomic_store(&pcq.release, 1);
	while (!atomic_load(&pcq.b_waiting))
		sched_yield();
	look(); /* Y is queued, B holds the worker */
	atomic_store(&pcq.checked, 1);
	atomic_store(&pcq.stop, 1);
	assert_int_equal(prt_join(d, &res), 0);
	assert_null(res);
	prt__fault_set_pause(PRT_PAUSE_RQ_ADD, NULL, NULL);
	prt__fault_set_pause(PRT_PAUSE_REQUEUE_SETTLE, NULL, NULL);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	if (keep) {
		setenv("PRT_PREEMPT_QUANTUM_NS", keep, 1);
		free(keep);
	}
}

static int pcq_rq_prio;

static void pcq_raise(void)
{
	assert_int_equal(prt_fiber_set_priority(pcq.y, 20), 0);
}

static void pcq_look_prio(void)
{
	pcq_rq_prio = ((struct prt__fiber *)pcq.y.p)->rq_prio;
}

static void test_prio_change_while_queueing(void **state)
{
	(void)state;
	pcq_run(pcq_raise, pcq_look_prio);
	assert_int_equal(pcq_rq_prio, 20);
}

/*
 * The same race for an affinity change (a review of session 36): Y's
 * yield reads its affinity flag for the roaming count (rq_any) in
 * prt__rq_add and pauses, before it publishes rq_worker. Meanwhile Y
 * is pinned to that worker. The change must still find Y queued and
 * count it as pinned: before, its prt__migrate_queued found Y queued
 * nowhere and did nothing, and Y stayed counted in nr_any (thieves
 * woken for a fiber they may not take; the other way round, a fiber
 * that may move counted as pinned, no idle worker woken for it) until
 * it was next queued.
 */
static struct {
	struct prt__worker *w;
	bool any, aff_all, allowed;
} acq;

static void acq_pin(void)
{
	struct prt__fiber *y = pcq.y.p;
	prt_workerset_t set;

	/* Pinned to the worker it is being queued on (B's, the driver's). */
	prt_workerset_zero(&set);
	prt_workerset_add(&set, PRT_READ_ONCE(y->last_worker)->index);
	assert_int_equal(prt_fiber_set_affinity(pcq.y, &set), 0);
}

static void acq_look(void)
{
	struct prt__fiber *y = pcq.y.p;

	acq.w = atomic_load_explicit(&y->rq_worker, memory_order_relaxed);
	acq.any = y->rq_any;
	acq.aff_all = atomic_load_explicit(&y->aff_all, memory_order_relaxed);
	acq.allowed = acq.w && prt__fiber_allowed(y, acq.w->index);
}

static void test_affinity_change_while_queueing(void **state)
{
	(void)state;
	memset(&acq, 0, sizeof(acq));
	pcq_run(acq_pin, acq_look);
	assert_non_null(acq.w);
	assert_true(acq.allowed);
	assert_false(acq.aff_all);
	assert_false(acq.any); /* before: true, the flag read before the change */
}
#else
static void test_prio_change_while_queueing(void **state)
{
	(void)state;
	skip(); /* needs the pause points of -Dfault_injection=true */
}

static void test_affinity_change_while_queueing(void **state)
{
	(void)state;
	skip(); /* needs the pause points of -Dfault_injection=true */
}
#endif

/*
 * A wake that looks at a fiber's affinity while prt_fiber_set_affinity
 * changes a set of several words (65 workers: two words) sees the first
 * word new and the second old: {0..63} -> {64} read as no worker at all.
 * The wake asserted there ("fiber with an empty affinity"; a release
 * build queued on NULL). Now it queues the fiber near, and the change
 * sends it to worker 64. The change pauses between its two words until
 * a plain thread's semaphore post has chosen the fiber's worker (the
 * wake then waits for f->lock, which the change holds).
 */
#if PRT_FAULT_INJECTION
static struct {
	prt_sem_t s;
	atomic_int armed, waiting, woke_at, posted, chosen;
} aw;

static void aw_words_pause(void *arg)
{
	(void)arg;
	if (!atomic_exchange(&aw.armed, 0))
		return;
	atomic_store(&aw.posted, 1); /* the poster goes */
	while (!atomic_load(&aw.chosen))
		sched_yield();
}

static void aw_chosen_pause(void *arg)
{
	(void)arg;
	if (atomic_load(&aw.posted))
		atomic_store(&aw.chosen, 1);
}

static void *aw_poster(void *arg)
{
	(void)arg;
	while (!atomic_load(&aw.posted))
		sched_yield();
	return (void *)(intptr_t)prt_sem_post(&aw.s);
}

static void *aw_fiber(void *arg)
{
	(void)arg;
	atomic_store(&aw.waiting, 1);
	FIBER_CHECK(prt_sem_wait(&aw.s) == 0);
	atomic_store(&aw.woke_at, prt_worker_index());
	return NULL;
}

static void test_affinity_words_mixed_view(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;
	prt_fiber_attr_t a;
	prt_workerset_t to;
	pthread_t poster;
	prt_fiber_t f;
	void *res;

	(void)state;
	memset(&aw, 0, sizeof(aw));
	atomic_store(&aw.woke_at, -1);
	assert_int_equal(prt_sem_init(&aw.s, 0), 0);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 65;
	cfg.preempt_quantum_ns = 0;
	assert_int_equal(test_create_own_quantum(&rt, &cfg), 0);
	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	prt_workerset_zero(&a.affinity);
	for (int i = 0; i < 64; i++)
		prt_workerset_add(&a.affinity, i);
	assert_int_equal(prt_spawn(rt, &f, &a, aw_fiber, NULL), 0);
	while (!atomic_load(&aw.waiting) ||
	       atomic_load(&((struct prt__fiber *)f.p)->state) != PRT_FS_BLOCKED)
		sched_yield();
	prt__fault_set_pause(PRT_PAUSE_AFFINITY_WORDS, aw_words_pause, NULL);
	prt__fault_set_pause(PRT_PAUSE_WAKE_CHOSEN, aw_chosen_pause, NULL);
	assert_int_equal(pthread_create(&poster, NULL, aw_poster, NULL), 0);
	atomic_store(&aw.armed, 1);
	prt_workerset_zero(&to);
	prt_workerset_add(&to, 64);
	assert_int_equal(prt_fiber_set_affinity(f, &to), 0);
	assert_int_equal(pthread_join(poster, &res), 0);
	assert_null(res); /* the post's 0 */
	prt__fault_set_pause(PRT_PAUSE_AFFINITY_WORDS, NULL, NULL);
	prt__fault_set_pause(PRT_PAUSE_WAKE_CHOSEN, NULL, NULL);
	assert_int_equal(atomic_load(&aw.chosen), 1);
	assert_int_equal(prt_join(f, &res), 0);
	assert_null(res);
	assert_int_equal(atomic_load(&aw.woke_at), 64);
	assert_int_equal(prt_sem_destroy(&aw.s), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}
#else
static void test_affinity_words_mixed_view(void **state)
{
	(void)state;
	skip(); /* needs the pause points of -Dfault_injection=true */
}
#endif

static void test_steal_grace(void **state)
{
	struct grace_run g = { .ticker = false };
	const char *saved = getenv("PRT_PREEMPT_QUANTUM_NS");
	char *keep = saved ? strdup(saved) : NULL;

	(void)state;
	/* 0: the idle worker takes B at once. */
	grace_case(0, NULL, true, &g);
	assert_int_not_equal(g.b_worker_during, -1);
	assert_int_not_equal(g.b_worker_during, g.a_worker);
	/* The default (20 us) also takes it while A computes. */
	grace_case(PRT_STEAL_GRACE_DEFAULT, NULL, true, &g);
	assert_int_not_equal(g.b_worker_during, -1);
	assert_int_not_equal(g.b_worker_during, g.a_worker);
	/*
	 * Longer than an idle worker spins (50 us): it sleeps until the
	 * grace ends (it parks), then takes B. Before, it spun for the whole
	 * grace: work elsewhere kept it from parking. (It may have parked
	 * before A began, for A's own grace, and not been woken for B's:
	 * so looked at while A computes, not counted from A's start.)
	 */
	grace_case(100000000, NULL, true, &g);
	assert_int_not_equal(g.b_worker_during, -1);
	assert_int_not_equal(g.b_worker_during, g.a_worker);
	assert_true(g.idle_slept);
	/*
	 * Never: B waits for A's worker, however long A computes; the idle
	 * one sleeps meanwhile (before, it spun, parked and found B's work
	 * pending, in a loop, for good).
	 */
	grace_case(UINT64_MAX, NULL, false, &g);
	assert_int_equal(g.b_worker_during, -1);
	assert_int_equal(atomic_load(&g.b_worker), g.a_worker);
	assert_true(g.idle_asleep);
	/*
	 * The other worker runs a fiber of its own every 50 us, each idle
	 * moment far shorter than a 5 ms grace: it still takes B (before,
	 * each run of its own restarted the grace, and it never did).
	 */
	g.ticker = true;
	grace_case(5000000, NULL, true, &g);
	g.ticker = false;
	assert_int_not_equal(g.b_worker_during, -1);
	assert_int_not_equal(g.b_worker_during, g.a_worker);
	/* The environment replaces the configuration; a value that is not a number does not. */
	grace_case(0, "18446744073709551615", false, &g);
	assert_int_equal(g.b_worker_during, -1);
	assert_int_equal(atomic_load(&g.b_worker), g.a_worker);
	{
		/* A sign after spaces once read as 2^64 - 5 (strtoull skips the spaces). */
		static const char *const bad[] = { "lots", "-5", " -1", "\t-5", "1e5", "0x10", "5 ",
						   "18446744073709551616", "" };

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			grace_case(0, bad[i], true, &g);
			assert_int_not_equal(g.b_worker_during, -1);
			assert_int_not_equal(g.b_worker_during, g.a_worker);
		}
	}
	if (keep) {
		setenv("PRT_PREEMPT_QUANTUM_NS", keep, 1);
		free(keep);
	}
}

/*
 * Three workers, cooperative. A on worker 0 spawns R (any worker may
 * run it: queued on worker 0), then wakes C, pinned to worker 2, and
 * both compute until R has run (capped at 5 s). R's enqueue woke
 * worker 2 at most, which then finds C of its own: worker 1, asleep,
 * must still come for R. (A review's reproducer: R waited for C's whole
 * run in 10 of 10 rounds with the grace, 4 of 10 without.)
 */
static struct {
	atomic_int c_parked, stop, r_worker;
	atomic_bool r_ran;
	prt_fiber_t c;
	int capped;
} strand;

static bool strand_spin_until_r(uint64_t cap)
{
	while (!atomic_load_explicit(&strand.r_ran, memory_order_relaxed))
		if (test_mono_ns() > cap)
			return false;
	return true;
}

static void *strand_r(void *arg)
{
	(void)arg;
	atomic_store(&strand.r_worker, prt_worker_index());
	atomic_store(&strand.r_ran, true);
	return NULL;
}

static void *strand_c(void *arg)
{
	(void)arg;
	for (;;) {
		atomic_store(&strand.c_parked, 1);
		FIBER_CHECK(prt_park() == 0);
		atomic_store(&strand.c_parked, 0);
		if (atomic_load(&strand.stop))
			return NULL;
		if (!strand_spin_until_r(test_mono_ns() + 5000000000ull))
			strand.capped++;
	}
}

static void *strand_a(void *arg)
{
	(void)arg;
	for (int round = 0; round < 4; round++) {
		prt_fiber_t r;
		uint64_t t;

		while (!atomic_load(&strand.c_parked))
			;
		for (t = test_mono_ns() + (round & 1 ? 300000 : 15000); test_mono_ns() < t;)
			;
		atomic_store(&strand.r_ran, false);
		atomic_store(&strand.r_worker, -1);
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &r, NULL, strand_r, NULL) == 0);
		for (t = test_mono_ns() + 15000; test_mono_ns() < t;)
			;
		FIBER_CHECK(prt_unpark(strand.c) == 0);
		if (!strand_spin_until_r(test_mono_ns() + 5000000000ull))
			strand.capped++;
		FIBER_CHECK(prt_join(r, NULL) == 0);
		while (!atomic_load(&strand.c_parked))
			prt_yield();
	}
	atomic_store(&strand.stop, 1);
	FIBER_CHECK(prt_unpark(strand.c) == 0);
	return NULL;
}

static void test_no_stranded_fiber(void **state)
{
	const uint64_t graces[] = { 0, PRT_STEAL_GRACE_DEFAULT, 1000000 };

	(void)state;
	for (size_t i = 0; i < sizeof(graces) / sizeof(graces[0]); i++) {
		prt_runtime_config_t cfg;
		prt_runtime_t *rt = NULL;
		prt_fiber_attr_t a;
		prt_fiber_t fa;

		prt_runtime_config_init(&cfg);
		cfg.nworkers = 3;
		cfg.preempt_quantum_ns = 0;
		cfg.steal_grace_ns = graces[i];
		unsetenv("PRT_STEAL_GRACE_NS");
		/* A and C keep their workers */
		assert_int_equal(test_create_own_quantum(&rt, &cfg), 0);
		memset(&strand, 0, sizeof(strand));
		a = test_attr(PRT_PRIO_DEFAULT, 2);
		assert_int_equal(prt_spawn(rt, &strand.c, &a, strand_c, NULL), 0);
		a = test_attr(PRT_PRIO_DEFAULT, 0);
		assert_int_equal(prt_spawn(rt, &fa, &a, strand_a, NULL), 0);
		assert_int_equal(prt_join(fa, NULL), 0);
		assert_int_equal(prt_join(strand.c, NULL), 0);
		assert_int_equal(prt_runtime_destroy(rt), 0);
		if (strand.capped)
			fprintf(stderr, "  grace %llu: R waited past the cap %d times\n",
				(unsigned long long)graces[i], strand.capped);
		assert_int_equal(strand.capped, 0);
	}
}

/*
 * What a thief takes (idle.c, steal_from): fibers that never ran first,
 * the newest first; one that ran only when no such fiber is left.
 * Cooperative, 2 workers, a 100 ms grace (H spawns all three well
 * within it, also under TSan, where a spawn takes ~2.5 ms). D spawns H
 * and yields; H, on D's worker, spawns F0..F2 (queued behind D) and
 * computes until D runs again (capped at 10 s). The idle worker takes
 * F2 and F1 first (half of the 4 queued), then F0 and D (by then D has
 * waited out PRT_STEAL_HOT_NS since that first steal passed it over, so
 * both may go in one steal, D first, in the queue's order). Before, it took D and F0 first: D ran
 * first, and on the thief (its data left behind: W2 ran each batch of
 * spawns on the other CPU so).
 */
static struct {
	atomic_int seq, d_back;
	int h_worker, d_seq, capped;
	int f_seq[3], f_worker[3];
	prt_fiber_t f[3];
} fresh;

static void *fresh_f(void *arg)
{
	int i = (int)(intptr_t)arg;

	fresh.f_worker[i] = prt_worker_index();
	fresh.f_seq[i] = atomic_fetch_add(&fresh.seq, 1);
	return NULL;
}

static void *fresh_h(void *arg)
{
	uint64_t cap = test_mono_ns() + 10000000000ull;

	(void)arg;
	fresh.h_worker = prt_worker_index();
	for (int i = 0; i < 3; i++)
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &fresh.f[i], NULL, fresh_f,
				      (void *)(intptr_t)i) == 0);
	while (!atomic_load(&fresh.d_back))
		if (test_mono_ns() > cap) {
			fresh.capped = 1;
			break;
		}
	return NULL;
}

static void *fresh_d(void *arg)
{
	prt_fiber_t h;

	(void)arg;
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &h, NULL, fresh_h, NULL) == 0);
	FIBER_CHECK(prt_yield() == 0); /* H runs; D waits behind it, then behind F0..F2 */
	fresh.d_seq = atomic_fetch_add(&fresh.seq, 1);
	atomic_store(&fresh.d_back, 1);
	FIBER_CHECK(prt_join(h, NULL) == 0);
	for (int i = 0; i < 3; i++)
		FIBER_CHECK(prt_join(fresh.f[i], NULL) == 0);
	return NULL;
}

static void test_steal_fresh_first(void **state)
{
	prt_runtime_t *rt = grace_rt(100000000);

	(void)state;
	memset(&fresh, 0, sizeof(fresh));
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, fresh_d, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(fresh.capped, 0);
	for (int i = 0; i < 3; i++)
		assert_int_not_equal(fresh.f_worker[i], fresh.h_worker); /* all stolen */
	assert_int_equal(fresh.f_seq[1], 0); /* newest first, each steal run in queue order */
	assert_int_equal(fresh.f_seq[2], 1);
	assert_true(fresh.f_seq[0] >= 2); /* the fiber that ran: not in the first steal */
	assert_true(fresh.d_seq >= 2);
}

/*
 * A burst of never-run fibers is taken a few at a time (idle.c,
 * PRT_STEAL_FRESH_MAX = 8): a thief that took half of W2's 1000 spawns
 * finished last, and the joiner waited for it. Cooperative, 2 workers,
 * a 100 ms grace: H spawns 100 fibers and computes until one of them
 * ran on the other worker (capped at 10 s); that first one reads the
 * thief's steals counter (fibers taken), which is what its first steal
 * took. Before, 50 (half the queue).
 */
#define BURST_N 100
static struct {
	atomic_int first_steals, other_ran;
	int h_worker, capped;
	prt_fiber_t f[BURST_N];
} burst;

static void *burst_f(void *arg)
{
	int me = prt_worker_index();

	(void)arg;
	if (me != burst.h_worker && !atomic_exchange(&burst.other_ran, 1)) {
		prt_worker_stats_t st;

		FIBER_CHECK(prt_worker_stats(prt_runtime_self(), me, &st) == 0);
		atomic_store(&burst.first_steals, (int)st.steals);
	}
	return NULL;
}

/*
 * @arg non-NULL: the first 8 at H's own level, the rest one level down:
 * the cap holds across levels (before the fix, a steal that took the 8
 * went on to the lower level and took 32-66 there).
 */
static void *burst_h(void *arg)
{
	uint64_t cap = test_mono_ns() + 10000000000ull;
	prt_fiber_attr_t lower;

	prt_fiber_attr_init(&lower);
	lower.priority = PRT_PRIO_DEFAULT - 1;
	burst.h_worker = prt_worker_index();
	for (int i = 0; i < BURST_N; i++)
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &burst.f[i], arg && i >= 8 ? &lower : NULL,
				      burst_f, NULL) == 0);
	while (!atomic_load(&burst.other_ran))
		if (test_mono_ns() > cap) {
			burst.capped = 1;
			break;
		}
	for (int i = 0; i < BURST_N; i++)
		FIBER_CHECK(prt_join(burst.f[i], NULL) == 0);
	return NULL;
}

static void steal_fresh_few(bool levels)
{
	prt_runtime_t *rt = grace_rt(100000000);

	memset(&burst, 0, sizeof(burst));
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst_h, levels ? &burst : NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(burst.capped, 0);
	assert_int_equal(atomic_load(&burst.other_ran), 1);
	assert_in_range(atomic_load(&burst.first_steals), 1, 4); /* PRT_STEAL_FRESH_MAX (idle.c) */
}

static void test_steal_fresh_few(void **state)
{
	(void)state;
	steal_fresh_few(false);
	steal_fresh_few(true);
}

/*
 * What a thief must still take, whatever order it takes fibers in (a
 * review's reproducers): the highest level first, fibers that ran too,
 * and fibers past the first look's window. Cooperative, 2 workers; H,
 * on worker A, computes until S has run (capped at 10 s) while S waits
 * in A's queue:
 * - prio: S (level 30, it ran) and 200 never-run fibers at level 0;
 *   S must run before any of them. Before, the first look took the
 *   never-run ones of every level first: S ran after all 200.
 * - stream: S (it ran) ahead of 256 never-run fibers, which H keeps
 *   queued (one more for each that runs); S must run. Before, it waited
 *   for H's whole run (the cap).
 * - window: S (never ran) ahead of 70 fibers pinned to A; S must run.
 *   Before, a look from the tail saw the pinned ones only, while the
 *   idle worker, which counted S, never slept (the cap).
 * - stream8: as stream, with 8 kept queued: the first look filled the
 *   quota, and S was never looked at (the cap, a second review).
 * - shield: S (it ran) behind 4 fibers pinned to A, then a stream of
 *   one: the 4 filled the look at the oldest (the cap, the same review).
 */
enum { ORDER_PRIO, ORDER_STREAM, ORDER_WINDOW, ORDER_STREAM8, ORDER_SHIELD };
#define ORDER_LOWS 200
#define ORDER_STREAM_N 256
#define ORDER_PINNED 70
static struct {
	int which, capped;
	prt_sem_t sem;
	atomic_int s_ran, lows_run, lows_before_s, want;
} ord;

static void *order_low(void *arg)
{
	(void)arg;
	atomic_fetch_add(&ord.lows_run, 1);
	if (ord.which == ORDER_STREAM || ord.which == ORDER_STREAM8 || ord.which == ORDER_SHIELD)
		atomic_fetch_add(&ord.want, 1); /* H queues another */
	return NULL;
}

static void *order_s(void *arg)
{
	(void)arg;
	if (ord.which == ORDER_PRIO || ord.which == ORDER_SHIELD)
		FIBER_CHECK(prt_sem_wait(&ord.sem) == 0); /* ran; woken onto A's queue's tail */
	else if (ord.which != ORDER_WINDOW)
		FIBER_CHECK(prt_yield() == 0); /* ran; back in A's queue, H runs */
	atomic_store(&ord.lows_before_s, atomic_load(&ord.lows_run));
	atomic_store(&ord.s_ran, 1);
	return NULL;
}

static void *order_h(void *arg)
{
	uint64_t cap = test_mono_ns() + 10000000000ull;
	prt_fiber_attr_t a, low;
	prt_fiber_t s, f[ORDER_LOWS > ORDER_PINNED ? ORDER_LOWS : ORDER_PINNED];
	int nf = 0;

	(void)arg;
	prt_fiber_attr_init(&a);
	prt_fiber_attr_init(&low);
	low.flags = PRT_FIBER_DETACHED;
	if (ord.which == ORDER_PRIO)
		a.priority = 30;
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &s, &a, order_s, NULL) == 0);
	switch (ord.which) {
	case ORDER_PRIO:
		FIBER_CHECK(prt_yield() == 0); /* S runs and waits */
		FIBER_CHECK(prt_sem_post(&ord.sem) == 0);
		low.flags = 0;
		low.priority = 0;
		for (nf = 0; nf < ORDER_LOWS; nf++)
			FIBER_CHECK(prt_spawn(prt_runtime_self(), &f[nf], &low, order_low, NULL) == 0);
		break;
	case ORDER_STREAM:
	case ORDER_STREAM8:
		FIBER_CHECK(prt_yield() == 0); /* S runs and yields back */
		atomic_store(&ord.want, ord.which == ORDER_STREAM ? ORDER_STREAM_N : 8);
		break;
	case ORDER_SHIELD: {
		prt_fiber_attr_t pin = low;

		FIBER_CHECK(prt_yield() == 0); /* S runs and waits */
		pin.flags = 0;
		pin.has_affinity = 1;
		prt_workerset_zero(&pin.affinity);
		prt_workerset_add(&pin.affinity, prt_worker_index());
		for (nf = 0; nf < 4; nf++)
			FIBER_CHECK(prt_spawn(prt_runtime_self(), &f[nf], &pin, order_low, NULL) == 0);
		FIBER_CHECK(prt_sem_post(&ord.sem) == 0); /* S behind the 4 */
		atomic_store(&ord.want, 1);
		break;
	}
	default:
		low.flags = 0;
		low.has_affinity = 1;
		prt_workerset_zero(&low.affinity);
		prt_workerset_add(&low.affinity, prt_worker_index());
		for (nf = 0; nf < ORDER_PINNED; nf++)
			FIBER_CHECK(prt_spawn(prt_runtime_self(), &f[nf], &low, order_low, NULL) == 0);
		break;
	}
	while (!atomic_load(&ord.s_ran)) {
		if (test_mono_ns() > cap) {
			ord.capped = 1;
			break;
		}
		if (atomic_load(&ord.want) > 0) {
			prt_fiber_t g;

			atomic_fetch_sub(&ord.want, 1);
			FIBER_CHECK(prt_spawn(prt_runtime_self(), &g, &low, order_low, NULL) == 0);
		}
	}
	atomic_store(&ord.want, -1000000000); /* stream: no more */
	FIBER_CHECK(prt_join(s, NULL) == 0);
	for (int i = 0; i < nf; i++)
		FIBER_CHECK(prt_join(f[i], NULL) == 0);
	return NULL;
}

static void test_steal_order_leaves_nothing(void **state)
{
	static const char *const names[] = { "prio", "stream", "window", "stream8", "shield" };

	(void)state;
	for (int which = ORDER_PRIO; which <= ORDER_SHIELD; which++) {
		prt_runtime_t *rt = grace_rt(2000000);

		memset(&ord, 0, sizeof(ord));
		ord.which = which;
		assert_int_equal(prt_sem_init(&ord.sem, 0), 0);
		assert_null(test_run_in(rt, 16, order_h, NULL));
		assert_int_equal(prt_runtime_destroy(rt), 0);
		prt_sem_destroy(&ord.sem);
		if (ord.capped || (which == ORDER_PRIO && ord.lows_before_s))
			fprintf(stderr, "  %s: S capped %d, ran after %d of the others\n", names[which],
				ord.capped, ord.lows_before_s);
		assert_int_equal(ord.capped, 0);
		if (which == ORDER_PRIO)
			assert_int_equal(ord.lows_before_s, 0);
	}
}

/*
 * What an idle worker about to park counts as work (idle.c, reachable:
 * where steal_from can take, no further; a second review's cases).
 * Cooperative; H on worker A computes meanwhile.
 * - hidden: 3 workers, 10 ms grace. Y (never ran; A or B only) behind
 *   70 fibers pinned to A: B must take it from the tail. Before, the
 *   look before parking read 64 from the head only, and B slept with no
 *   deadline (the 10 s cap, in 9 of 15 runs).
 * - out of reach: 2 workers, 2 ms grace. S behind 70 pinned fibers and
 *   before 70 more: out of both looks' reach, left to A. The idle worker
 *   must sleep meanwhile: asleep at half of 200 looks 1 ms apart, at
 *   least. Before, it counted S (nr_any) and spun for good, asleep only
 *   for the moments of each try to park.
 */
#define REACH_PINNED 70
static struct {
	int which, capped, looks, asleep;
	atomic_int y_ran;
} reach;

static void *reach_y(void *arg)
{
	(void)arg;
	atomic_store(&reach.y_ran, 1);
	return NULL;
}

static void *reach_pinned(void *arg)
{
	return arg;
}

static void *reach_h(void *arg)
{
	int a_worker = prt_worker_index(), np = 0, other = (a_worker + 1) % 3;
	prt_fiber_t y, p[2 * REACH_PINNED];
	prt_fiber_attr_t pin, ya;
	uint64_t end, look = 0;

	(void)arg;
	prt_fiber_attr_init(&pin);
	pin.has_affinity = 1;
	prt_workerset_zero(&pin.affinity);
	prt_workerset_add(&pin.affinity, a_worker);
	prt_fiber_attr_init(&ya);
	for (; np < REACH_PINNED; np++)
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &p[np], &pin, reach_pinned, NULL) == 0);
	if (reach.which == 0) {
		ya.has_affinity = 1;
		prt_workerset_zero(&ya.affinity);
		prt_workerset_add(&ya.affinity, a_worker);
		prt_workerset_add(&ya.affinity, other);
	} else {
		other = 1 - a_worker;
	}
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &y, &ya, reach_y, NULL) == 0);
	if (reach.which == 1)
		for (; np < 2 * REACH_PINNED; np++)
			FIBER_CHECK(prt_spawn(prt_runtime_self(), &p[np], &pin, reach_pinned, NULL) == 0);
	end = test_mono_ns() + (reach.which == 0 ? 10000000000ull : 200000000ull);
	for (uint64_t now; (now = test_mono_ns()) < end;) {
		if (reach.which == 0 && atomic_load(&reach.y_ran))
			break;
		if (reach.which == 1 && now >= look) {
			reach.looks++;
			reach.asleep += atomic_load(&prt_runtime_self()->workers[other]->sleeping) == 1;
			look = now + 1000000;
		}
	}
	reach.capped = reach.which == 0 && !atomic_load(&reach.y_ran);
	FIBER_CHECK(prt_join(y, NULL) == 0);
	for (int i = 0; i < np; i++)
		FIBER_CHECK(prt_join(p[i], NULL) == 0);
	return NULL;
}

static void test_steal_reach(void **state)
{
	(void)state;
	for (int which = 0; which < 2; which++) {
		prt_runtime_t *rt = which == 0 ? grace_rt_env(3, 10000000, NULL) : grace_rt(2000000);

		memset(&reach, 0, sizeof(reach));
		reach.which = which;
		assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, reach_h, NULL));
		assert_int_equal(prt_runtime_destroy(rt), 0);
		if (which == 0) {
			assert_int_equal(reach.capped, 0);
		} else {
			if (reach.asleep < reach.looks / 2)
				fprintf(stderr, "  the idle worker was asleep at %d of %d looks\n",
					reach.asleep, reach.looks);
			assert_true(reach.asleep >= reach.looks / 2);
		}
	}
}

/*
 * An idle worker that sleeps until a steal grace ends (it saw work it
 * may take, idle.c, steal_pending) is not woken for each fiber queued on
 * the busy worker meanwhile: woken, it could take nothing sooner, and
 * each wake is a system call of the busy worker's. Cooperative, 2
 * workers, a 10 s grace: A computes and spawns 100 fibers, one every
 * 200 us. Before, each spawn woke the idle worker, which spun 50 us and
 * parked again: ~100 parks; now it parks once or twice.
 */
#define WAKE_SPAWNS 100
static struct {
	int a_worker;
	uint64_t idle_parks;
} grace_sleep;

static void *grace_sleep_a(void *arg)
{
	prt_fiber_t f[WAKE_SPAWNS];
	uint64_t parks;

	(void)arg;
	grace_sleep.a_worker = prt_worker_index();
	parks = parks_of(1 - grace_sleep.a_worker);
	for (int i = 0; i < WAKE_SPAWNS; i++) {
		uint64_t t = test_mono_ns() + 200000;

		FIBER_CHECK(prt_spawn(prt_runtime_self(), &f[i], NULL, fresh_f, (void *)(intptr_t)0) == 0);
		while (test_mono_ns() < t)
			;
	}
	grace_sleep.idle_parks = parks_of(1 - grace_sleep.a_worker) - parks;
	for (int i = 0; i < WAKE_SPAWNS; i++)
		FIBER_CHECK(prt_join(f[i], NULL) == 0);
	return NULL;
}

static void test_grace_sleeper_not_woken(void **state)
{
	prt_runtime_t *rt = grace_rt(10000000000ull);

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, grace_sleep_a, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	if (grace_sleep.idle_parks >= 10)
		fprintf(stderr, "  the idle worker parked %llu times\n",
			(unsigned long long)grace_sleep.idle_parks);
	assert_true(grace_sleep.idle_parks < 10);
}

/* ---- affinity is respected, also under stealing and changes ---- */

#define AFF_FIBERS 200
#define AFF_STEPS 40

struct aff_arg {
	prt_workerset_t set;
	prt_workerset_t set2; /* switched to half-way */
	atomic_int bad;
};

static void *aff_body(void *p)
{
	struct aff_arg *a = p;

	for (int i = 0; i < AFF_STEPS; i++) {
		const prt_workerset_t *s = i < AFF_STEPS / 2 ? &a->set : &a->set2;

		if (i == AFF_STEPS / 2)
			FIBER_CHECK(prt_fiber_set_affinity(prt_self(), &a->set2) == 0);
		/* Every instruction here runs on an allowed worker. */
		if (!prt_workerset_has(s, prt_worker_index()))
			atomic_fetch_add(&a->bad, 1);
		for (volatile int k = 0; k < 2000; k++)
			;
		prt_yield();
		if (!prt_workerset_has(s, prt_worker_index()))
			atomic_fetch_add(&a->bad, 1);
	}
	return NULL;
}

static void random_set(prt_workerset_t *s, int n, unsigned *seed)
{
	prt_workerset_zero(s);
	while (prt_workerset_count(s) == 0)
		for (int w = 0; w < n; w++)
			if (rand_r(seed) % 3 == 0)
				prt_workerset_add(s, w);
}

static void affinity_run(prt_runtime_t *rt)
{
	int n = prt_runtime_nworkers(rt);
	struct aff_arg *args = calloc(AFF_FIBERS, sizeof(*args));
	prt_fiber_t *f = calloc(AFF_FIBERS, sizeof(*f));
	unsigned seed = 12345;
	prt_fiber_attr_t a;

	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	for (int i = 0; i < AFF_FIBERS; i++) {
		random_set(&args[i].set, n, &seed);
		random_set(&args[i].set2, n, &seed);
		a.affinity = args[i].set;
		a.priority = rand_r(&seed) % PRT_PRIO_LEVELS;
		assert_int_equal(prt_spawn(rt, &f[i], &a, aff_body, &args[i]), 0);
	}
	for (int i = 0; i < AFF_FIBERS; i++) {
		prt_workerset_t got;

		/* Either set, depending on how far the fiber got. */
		assert_int_equal(prt_fiber_get_affinity(f[i], &got), 0);
		assert_true(memcmp(&got, &args[i].set, sizeof(got)) == 0 ||
			    memcmp(&got, &args[i].set2, sizeof(got)) == 0);
		assert_int_equal(prt_join(f[i], NULL), 0);
		assert_int_equal(atomic_load(&args[i].bad), 0);
	}
	free(args);
	free(f);
}

static void test_affinity_respected(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	affinity_run(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_affinity_respected_many_workers(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;

	(void)state;
	/* 16 workers on a described 2-package machine, more workers than cores here. */
	prt_runtime_config_init(&cfg);
	cfg.topology_synthetic = "pack:2 numa:1 core:4 pu:2";
	cfg.flags = PRT_RT_PER_PU;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_int_equal(prt_runtime_nworkers(rt), 16);
	affinity_run(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_affinity_errors(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_workerset_t s;
	prt_fiber_t f;

	(void)state;
	atomic_store(&seen_workers, 0);
	prt_workerset_zero(&s);
	assert_int_equal(prt_spawn(rt, &f, NULL, spawn_many_local, NULL), 0);
	assert_int_equal(prt_fiber_set_affinity(f, &s), -EINVAL);
	prt_workerset_add(&s, 2); /* no worker 2 */
	assert_int_equal(prt_fiber_set_affinity(f, &s), -EINVAL);
	assert_int_equal(prt_fiber_set_affinity(f, NULL), -EINVAL);
	assert_int_equal(prt_fiber_get_affinity(f, NULL), -EINVAL);
	assert_int_equal(prt_fiber_get_affinity(f, &s), 0);
	assert_int_equal(prt_workerset_count(&s), 2); /* unchanged: all workers */
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(prt_fiber_set_affinity(f, &s), -ESRCH);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* Moving a queued fiber, and the caller moving itself. */
static void *where(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)prt_worker_index();
}

static void *move_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_attr_t a;
	prt_workerset_t zero, one;
	prt_fiber_t f;
	void *res;

	(void)arg;
	prt_workerset_zero(&zero);
	prt_workerset_add(&zero, 0);
	prt_workerset_zero(&one);
	prt_workerset_add(&one, 1);
	/* Move myself: takes effect at once. */
	FIBER_CHECK(prt_fiber_set_affinity(prt_self(), &one) == 0);
	FIBER_CHECK(prt_worker_index() == 1);
	FIBER_CHECK(prt_fiber_set_affinity(prt_self(), &zero) == 0);
	FIBER_CHECK(prt_worker_index() == 0);
	/*
	 * f may only run on worker 0, which we occupy without a scheduling
	 * point until the join: it is certainly still queued when moved.
	 */
	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	a.affinity = zero;
	FIBER_CHECK(prt_preempt_disable() == 0);
	FIBER_CHECK(prt_spawn(rt, &f, &a, where, NULL) == 0);
	FIBER_CHECK(prt_fiber_set_affinity(f, &one) == 0);
	FIBER_CHECK(prt_preempt_enable() == 0);
	FIBER_CHECK(prt_join(f, &res) == 0);
	FIBER_CHECK((intptr_t)res == 1);
	return NULL;
}

static void test_affinity_move(void **state)
{
	prt_runtime_t *rt = test_rt(2);

	(void)state;
	for (int i = 0; i < 50; i++)
		assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, move_main, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A scheduling point that returns at once (a park that finds a permit, a
 * join of a fiber that has ended) still honours an affinity change made
 * by another thread while the fiber ran (a review: both kept the fiber
 * on its old worker; a consumer that always found a permit never moved).
 */
struct apj {
	prt_fiber_t self;
	atomic_int ready, moved, child_done;
	int after_park, after_join;
};

static void *apj_child(void *arg)
{
	struct apj *p = arg;

	atomic_store(&p->child_done, 1);
	return NULL;
}

static void *apj_fiber(void *arg)
{
	struct apj *p = arg;
	prt_fiber_attr_t a;
	prt_fiber_t c;

	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	prt_workerset_zero(&a.affinity);
	prt_workerset_add(&a.affinity, 1);
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &c, &a, apj_child, p) == 0);
	FIBER_CHECK(prt_unpark(prt_self()) == 0); /* a permit for the park below */
	while (!atomic_load(&p->child_done) || atomic_load(&c.p->state) != PRT_FS_DEAD)
		;
	atomic_store(&p->ready, 1);
	while (!atomic_load(&p->moved))
		; /* no scheduling point: the main thread moves us meanwhile */
	FIBER_CHECK(prt_park() == 0);
	p->after_park = prt_worker_index();
	atomic_store(&p->moved, 0);
	atomic_store(&p->ready, 2);
	while (!atomic_load(&p->moved))
		;
	FIBER_CHECK(prt_join(c, NULL) == 0);
	p->after_join = prt_worker_index();
	return NULL;
}

static void test_affinity_at_immediate_return(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_workerset_t zero, one;
	prt_fiber_attr_t a;
	struct apj p = { 0 };
	prt_fiber_t f;

	(void)state;
	prt_workerset_zero(&zero);
	prt_workerset_add(&zero, 0);
	prt_workerset_zero(&one);
	prt_workerset_add(&one, 1);
	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	a.affinity = zero;
	assert_int_equal(prt_spawn(rt, &f, &a, apj_fiber, &p), 0);
	while (atomic_load(&p.ready) != 1)
		usleep(100);
	assert_int_equal(prt_fiber_set_affinity(f, &one), 0);
	atomic_store(&p.moved, 1);
	while (atomic_load(&p.ready) != 2)
		usleep(100);
	assert_int_equal(prt_fiber_set_affinity(f, &zero), 0);
	atomic_store(&p.moved, 1);
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(p.after_park, 1);
	assert_int_equal(p.after_join, 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- parked workers are woken for new work (no lost wakeups) ---- */

static void wait_sleeping(prt_runtime_t *rt, int w)
{
	while (!atomic_load(&rt->workers[w]->sleeping))
		usleep(50);
}

static void test_parked_workers_wake(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_attr_t a;
	prt_worker_stats_t s;

	(void)state;
	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	for (int i = 0; i < 200; i++) {
		int w = i % 2;
		prt_fiber_t f;
		void *res;

		/* Wait until the worker sleeps, then give it work it alone may run. */
		wait_sleeping(rt, w);
		prt_workerset_zero(&a.affinity);
		prt_workerset_add(&a.affinity, w);
		assert_int_equal(prt_spawn(rt, &f, &a, where, NULL), 0);
		assert_int_equal(prt_join(f, &res), 0);
		assert_int_equal((intptr_t)res, w);
	}
	/* Racing with the worker going to sleep: no sleep before the spawn (TSan: 5000 took 20 s). */
	for (int i = 0; i < (PRT_TEST_TSAN ? 2000 : 5000); i++) {
		prt_fiber_t f;

		assert_int_equal(prt_spawn(rt, &f, NULL, test_noop, NULL), 0);
		assert_int_equal(prt_join(f, NULL), 0);
	}
	assert_int_equal(prt_worker_stats(rt, 0, &s), 0);
	assert_true(s.parks > 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * More workers than CPUs, and the spinner quota taken (at most half the
 * busy workers spin): an idle worker does not look for work, it parks.
 * But when its park finds work it could take pending elsewhere, it must
 * take it. It once went back to the quota and to the park in a loop,
 * forever if the spinner never came (here: one counted but absent, as a
 * spinner the OS has descheduled), and under valgrind a real spinner
 * could be kept from its own queue's lock by that loop.
 */
struct capped {
	atomic_int queued, ran;
};

static void *capped_leaf(void *arg)
{
	struct capped *c = arg;

	atomic_store(&c->ran, 1);
	return NULL;
}

/* On worker 1: queue a fiber there, then keep worker 1 busy until it ran. */
static void *capped_busy(void *arg)
{
	struct capped *c = arg;
	prt_fiber_t f;

	FIBER_CHECK(prt_worker_index() == 1);
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &f, NULL, capped_leaf, c) == 0);
	atomic_store(&c->queued, 1);
	while (!atomic_load(&c->ran))
		sched_yield();
	FIBER_CHECK(prt_join(f, NULL) == 0);
	return NULL;
}

static void test_capped_worker_takes_pending(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_fiber_attr_t a;
	prt_fiber_t busy, f;
	cpu_set_t all, one;
	struct capped c;
	void *res;

	(void)state;
	atomic_init(&c.queued, 0);
	atomic_init(&c.ran, 0);
	/* Two unbound workers created from a thread bound to one CPU: 2 > 1. */
	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	CPU_ZERO(&one);
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &all)) {
			CPU_SET(i, &one);
			break;
		}
	assert_int_equal(sched_setaffinity(0, sizeof(one), &one), 0);
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	cfg.flags = PRT_RT_NO_PIN;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
	assert_true(rt->oversubscribed);
	atomic_fetch_add(&rt->nr_spinning, 1); /* the quota: 2 * 1 >= 2 busy workers */

	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	prt_workerset_zero(&a.affinity);
	prt_workerset_add(&a.affinity, 1);
	assert_int_equal(prt_spawn(rt, &busy, &a, capped_busy, &c), 0);
	while (!atomic_load(&c.queued))
		usleep(100);
	/* Wake worker 0 with work of its own; once idle again it finds the leaf pending. */
	prt_workerset_zero(&a.affinity);
	prt_workerset_add(&a.affinity, 0);
	assert_int_equal(prt_spawn(rt, &f, &a, where, NULL), 0);
	assert_int_equal(prt_join(f, &res), 0);
	assert_int_equal((intptr_t)res, 0);
	assert_int_equal(prt_join(busy, &res), 0);
	assert_null(res);
	atomic_fetch_sub(&rt->nr_spinning, 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- scale: 100k fibers over all workers, spawned by several spawners ---- */

#define SCALE_SPAWNERS 8
/*
 * Per spawner: 100k fibers in all, 8k under TSan, where each costs
 * ~2.4 ms (its fiber state made and freed): 48 s for 20k, a sixth of
 * the TSan suite's time.
 */
#define SCALE_PER (PRT_TEST_TSAN ? 500 : 12500) /* a multiple of SCALE_BATCH (TSan: 32 s at 1000) */
#define SCALE_BATCH 500

static atomic_long scale_sum;

static void *add_one(void *arg)
{
	atomic_fetch_add(&scale_sum, (long)(intptr_t)arg);
	return arg;
}

static void *spawner(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t *f = malloc(sizeof(*f) * SCALE_BATCH);
	long got = 0;

	(void)arg;
	FIBER_CHECK(f != NULL);
	for (int done = 0; done < SCALE_PER; done += SCALE_BATCH) {
		for (int i = 0; i < SCALE_BATCH; i++)
			FIBER_CHECK(prt_spawn(rt, &f[i], NULL, add_one, (void *)(intptr_t)1) == 0);
		for (int i = 0; i < SCALE_BATCH; i++) {
			void *res;

			FIBER_CHECK(prt_join(f[i], &res) == 0);
			got += (intptr_t)res;
		}
	}
	free(f);
	FIBER_CHECK(got == SCALE_PER);
	return NULL;
}

static void test_100k_fibers(void **state)
{
	prt_runtime_t *rt = test_rt(0); /* one per core */
	prt_fiber_t s[SCALE_SPAWNERS];
	uint64_t run = 0;

	(void)state;
	atomic_store(&scale_sum, 0);
	for (int i = 0; i < SCALE_SPAWNERS; i++)
		assert_int_equal(prt_spawn(rt, &s[i], NULL, spawner, NULL), 0);
	for (int i = 0; i < SCALE_SPAWNERS; i++) {
		void *res;

		assert_int_equal(prt_join(s[i], &res), 0);
		assert_null(res);
	}
	assert_int_equal(atomic_load(&scale_sum), SCALE_SPAWNERS * SCALE_PER);
	for (int i = 0; i < prt_runtime_nworkers(rt); i++) {
		prt_worker_stats_t st;

		assert_int_equal(prt_worker_stats(rt, i, &st), 0);
		run += st.fibers_run;
	}
	assert_int_equal(run, SCALE_SPAWNERS * SCALE_PER + SCALE_SPAWNERS);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* 100k detached fibers spawned from plain threads; destroy waits for all. */
static atomic_long det_count, det_spawned;
/*
 * Live fibers at most: TSan's per-fiber state, or ASan's fake stack per
 * fiber (detect_stack_use_after_return=1), would exhaust memory. Else
 * 10000 (20000 memory maps for guard stacks): near vm.max_map_count
 * (65530) the library's spawn says -ENOMEM and leaves nothing behind,
 * but another mmap of the process may fail first: under ASan its
 * allocator's, which ends the process ("Failed to mmap", seen once).
 */
#define DET_LIVE_MAX (PRT_TEST_TSAN || test_fake_stacks() ? 1000 : 10000)
/*
 * Per spawner thread (4 of them); fewer under TSan, which maps memory
 * per fiber and takes ~2.5 ms a fiber (50 s for 20000).
 */
#define DET_PER (PRT_TEST_TSAN ? 1250 : 25000) /* TSan: 32 s at 2500 */

static void *det_body(void *arg)
{
	(void)arg;
	prt_yield();
	atomic_fetch_add(&det_count, 1); /* done: no longer counted live */
	return NULL;
}

static void *thread_spawner(void *arg)
{
	prt_runtime_t *rt = arg;
	prt_fiber_attr_t a;

	prt_fiber_attr_init(&a);
	a.flags = PRT_FIBER_DETACHED;
	for (int i = 0; i < DET_PER; i++) {
		int e;

		/*
		 * Guard stacks cost two map entries each: past ~30k live fibers
		 * spawn says -ENOMEM (nothing left behind); back off and retry.
		 */
		while (atomic_load(&det_spawned) - atomic_load(&det_count) > DET_LIVE_MAX)
			usleep(100);
		while ((e = prt_spawn(rt, NULL, &a, det_body, NULL)) == -ENOMEM)
			usleep(1000);
		atomic_fetch_add(&det_spawned, 1);
		if (e != 0)
			return (void *)1;
	}
	return NULL;
}

static void test_plain_thread_spawns_detached(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	pthread_t t[4];

	(void)state;
	atomic_store(&det_count, 0);
	atomic_store(&det_spawned, 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, thread_spawner, rt), 0);
	for (int i = 0; i < 4; i++) {
		void *res;

		assert_int_equal(pthread_join(t[i], &res), 0);
		assert_null(res);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
	assert_int_equal(atomic_load(&det_count), 4 * DET_PER);
}

/*
 * ---- work conservation: no runnable fiber waits while a worker idles ----
 *
 * Each test runs a fiber M on some worker W, waits until every other
 * worker sleeps, then leaves a fiber that another worker may run
 * waiting on W (queued there, or with its timer in W's heap) while a
 * holder fiber pinned to W keeps W busy, without a runtime call, until
 * that fiber has run elsewhere and released it. Where an idle worker
 * does not get it, the holder spins on: the test hangs and the binary's
 * timeout fails it. Each test takes one path by which a fiber comes to
 * wait on a busy worker.
 */
struct wc {
	prt_runtime_t *rt;
	int w;                /* W, the worker kept busy */
	int prio;             /* the holder's priority */
	atomic_int released;  /* set by the fiber that had to run elsewhere */
	atomic_int ran_on;    /* where that fiber ran, after it left W */
	prt_workerset_t some; /* a fiber's affinity, when not all workers */
	prt_fiber_t holder;
	prt_mutex_t m;
	prt_cond_t c;
	atomic_int owner_ready;
};

static struct wc wc;

static void wc_reset(prt_runtime_t *rt, int holder_prio)
{
	memset(&wc, 0, sizeof(wc));
	wc.rt = rt;
	wc.w = -1;
	wc.prio = holder_prio;
	atomic_init(&wc.ran_on, -1);
	prt_mutex_init(&wc.m, NULL);
	prt_cond_init(&wc.c);
}

/* The holder: keeps W busy, no runtime call, until released. */
static void *wc_hold(void *arg)
{
	(void)arg;
	/* Not preempted either (a preemptive run of the suite): W stays busy. */
	FIBER_CHECK(prt_preempt_disable() == 0);
	while (!atomic_load(&wc.released))
		sched_yield(); /* to the OS, not the runtime: W stays busy */
	FIBER_CHECK(prt_preempt_enable() == 0);
	return NULL;
}

static void wc_set_affinity(const prt_workerset_t *s)
{
	if (prt_fiber_set_affinity(prt_self(), s) != 0)
		abort();
}

static void wc_all_workers(prt_workerset_t *s)
{
	prt_workerset_zero(s);
	for (int i = 0; i < prt_runtime_nworkers(wc.rt); i++)
		prt_workerset_add(s, i);
}

/*
 * Keep the caller on the worker it runs on (W) and wait, without a
 * scheduling point, until every other worker has slept for a while
 * (nothing wakes an idle worker then but the paths under test).
 */
static void wc_start(void)
{
	prt_workerset_t one;
	int n = prt_runtime_nworkers(wc.rt), quiet = 0;

	wc.w = prt_worker_index();
	prt_workerset_zero(&one);
	prt_workerset_add(&one, wc.w);
	wc_set_affinity(&one);
	while (quiet < 1000) {
		bool all = true;

		for (int i = 0; i < n; i++)
			if (i != wc.w && !atomic_load(&wc.rt->workers[i]->sleeping))
				all = false;
		quiet = all ? quiet + 1 : 0;
		sched_yield();
	}
}

/*
 * Spawn the holder on W, and start a prt_preempt_disable() region that M
 * ends (wc_region_end) once it has waited: in a preemptive runtime an
 * interrupt in M's own code before then (the holder at its level starts
 * time slices) would leave M marked preempted, kept on W behind the
 * holder for good.
 */
static void wc_spawn_holder(void)
{
	if (prt_preempt_disable() != 0)
		abort();
	wc.holder = test_spawn(wc.rt, wc.prio, wc.w, wc_hold, NULL);
}

static void wc_region_end(void)
{
	if (prt_preempt_enable() != 0)
		abort();
}

/* Run by the fiber that had to leave W: say where it runs, release the holder. */
static void wc_release(void)
{
	atomic_store(&wc.ran_on, prt_worker_index());
	atomic_store(&wc.released, 1);
}

/* M's end: the holder ended, and the fiber under test ran on another worker. */
static void *wc_finish(void)
{
	FIBER_CHECK(prt_join(wc.holder, NULL) == 0);
	FIBER_CHECK(atomic_load(&wc.ran_on) >= 0);
	FIBER_CHECK(atomic_load(&wc.ran_on) != wc.w);
	return NULL;
}

static void wc_run(int nworkers, int prio, int holder_prio, void *(*fn)(void *))
{
	prt_runtime_t *rt = test_rt(nworkers);

	wc_reset(rt, holder_prio);
	assert_null(test_run_in(rt, prio, fn, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* The case: a sleeper's timer in the heap of W, held by a pinned fiber. */
static void *wc_sleep_main(void *arg)
{
	prt_workerset_t all;

	(void)arg;
	wc_start();
	wc_spawn_holder();
	wc_all_workers(&all);
	wc_set_affinity(&all);
	/* Its timer in W's heap; W runs the holder. (A deadline past at the call would yield.) */
	FIBER_CHECK(prt_sleep_ns(10 * 1000 * 1000) == 0);
	wc_region_end();
	wc_release();
	return wc_finish();
}

static void test_wc_sleep_timer(void **state)
{
	(void)state;
	wc_run(2, PRT_PRIO_DEFAULT, PRT_PRIO_DEFAULT, wc_sleep_main);
}

/*
 * A fiber whose timer an idle worker fires for a busy one is taken at
 * once, whatever the steal grace (here an hour): it waits for no cache
 * on the busy worker. (The holder keeps W until it runs: with the grace
 * applied, this would wait the hour.)
 */
static void test_wc_timer_skips_grace(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	(void)state;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	cfg.steal_grace_ns = 3600ull * 1000000000ull;
	unsetenv("PRT_STEAL_GRACE_NS");
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	wc_reset(rt, PRT_PRIO_DEFAULT);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, wc_sleep_main, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * The same with a condvar's timed wait (a park timer). A wait
 * whose deadline passed before it slept returns at once, still on W
 * (the holder has not run yet): then again. Once M sleeps, it can only
 * wake on another worker.
 */
static void *wc_cond_main(void *arg)
{
	prt_workerset_t all;

	(void)arg;
	wc_start();
	wc_spawn_holder();
	wc_all_workers(&all);
	wc_set_affinity(&all);
	FIBER_CHECK(prt_mutex_lock(&wc.m) == 0);
	do {
		struct timespec ts = test_realtime_in(10 * 1000 * 1000);

		FIBER_CHECK(prt_cond_timedwait(&wc.c, &wc.m, &ts) == ETIMEDOUT);
	} while (prt_worker_index() == wc.w);
	FIBER_CHECK(prt_mutex_unlock(&wc.m) == 0);
	wc_region_end();
	wc_release();
	return wc_finish();
}

static void test_wc_cond_timer(void **state)
{
	(void)state;
	wc_run(2, PRT_PRIO_DEFAULT, PRT_PRIO_DEFAULT, wc_cond_main);
}

/*
 * A timed lock of a mutex a plain thread holds (a mutex timer):
 * with @prio equal to the holder's, M is picked before it and sleeps
 * until handed the lock; with the holder above it, M stays queued on W
 * as a donor, and its timeout must make it a fiber another worker may
 * steal.
 */
static void *wc_timedlock_main(void *arg)
{
	prt_workerset_t all;

	(void)arg;
	wc_start();
	wc_spawn_holder();
	wc_all_workers(&all);
	wc_set_affinity(&all);
	do { /* as wc_cond_main: until it waited */
		struct timespec ts = test_realtime_in(10 * 1000 * 1000);

		FIBER_CHECK(prt_mutex_timedlock(&wc.m, &ts) == ETIMEDOUT);
	} while (prt_worker_index() == wc.w);
	wc_region_end();
	wc_release();
	return wc_finish();
}

static void wc_timedlock_run(int holder_prio)
{
	prt_runtime_t *rt = test_rt(2);

	wc_reset(rt, holder_prio);
	assert_int_equal(prt_mutex_lock(&wc.m), 0); /* this plain thread holds it */
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, wc_timedlock_main, NULL));
	assert_int_equal(prt_mutex_unlock(&wc.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_wc_timedlock_sleeping(void **state)
{
	(void)state;
	wc_timedlock_run(PRT_PRIO_DEFAULT);
}

static void test_wc_timedlock_donor(void **state)
{
	(void)state;
	wc_timedlock_run(PRT_PRIO_DEFAULT + 1);
}

/* prt_yield puts M back on W's queue, behind the holder. */
static void *wc_yield_main(void *arg)
{
	prt_workerset_t all;

	(void)arg;
	wc_start();
	wc_spawn_holder();
	wc_all_workers(&all);
	wc_set_affinity(&all);
	FIBER_CHECK(prt_yield() == 0); /* the holder runs; M waits on W */
	wc_region_end();
	wc_release();
	return wc_finish();
}

static void test_wc_yield_requeue(void **state)
{
	(void)state;
	wc_run(2, PRT_PRIO_DEFAULT, PRT_PRIO_DEFAULT, wc_yield_main);
}

/*
 * An unlock hands the mutex to a higher-priority waiter on W, which
 * runs at once (it becomes the holder): M goes back on W's queue.
 */
static void *wc_handoff_hold(void *arg)
{
	(void)arg;
	if (prt_mutex_lock(&wc.m) != 0)
		abort();
	wc_hold(NULL);
	return (void *)(intptr_t)prt_mutex_unlock(&wc.m);
}

static void *wc_handoff_main(void *arg)
{
	prt_workerset_t all;

	(void)arg;
	wc_start();
	FIBER_CHECK(prt_mutex_lock(&wc.m) == 0);
	wc.holder = test_spawn(wc.rt, wc.prio, wc.w, wc_handoff_hold, NULL);
	/* Pinned still: nobody may take us from W's queue; the holder waits on m. */
	FIBER_CHECK(prt_yield() == 0);
	wc_all_workers(&all);
	wc_set_affinity(&all);
	FIBER_CHECK(prt_mutex_unlock(&wc.m) == 0); /* to the holder, which runs at once */
	wc_release();
	return wc_finish();
}

static void test_wc_handoff_requeue(void **state)
{
	(void)state;
	wc_run(2, PRT_PRIO_DEFAULT, PRT_PRIO_DEFAULT + 1, wc_handoff_main);
}

/*
 * Three workers: a fiber only W and one other worker may run, spawned
 * on W, must wake that worker (not only fibers every worker may run).
 */
static void *wc_some_body(void *arg)
{
	(void)arg;
	wc_release();
	return NULL;
}

static void *wc_spawn_some_main(void *arg)
{
	prt_fiber_attr_t a;
	prt_fiber_t f;

	(void)arg;
	wc_start();
	wc_spawn_holder();
	prt_fiber_attr_init(&a);
	a.has_affinity = 1;
	prt_workerset_zero(&a.affinity);
	prt_workerset_add(&a.affinity, wc.w);
	prt_workerset_add(&a.affinity, (wc.w + 2) % 3);
	FIBER_CHECK(prt_spawn(wc.rt, &f, &a, wc_some_body, NULL) == 0); /* queued on W */
	FIBER_CHECK(prt_join(f, NULL) == 0); /* W runs the holder */
	wc_region_end();
	FIBER_CHECK(atomic_load(&wc.ran_on) == (wc.w + 2) % 3);
	return wc_finish();
}

static void test_wc_spawn_some_workers(void **state)
{
	(void)state;
	wc_run(3, PRT_PRIO_DEFAULT, PRT_PRIO_DEFAULT, wc_spawn_some_main);
}

/*
 * Three workers: M, which only W and Y may run, waits on W as a donor
 * (below the holder) for a mutex a fiber O on the third worker holds.
 * O's unlock hands it the lock: M is no longer blocked and Y must take it.
 */
static void *wc_owner(void *arg)
{
	(void)arg;
	if (prt_mutex_lock(&wc.m) != 0)
		abort();
	atomic_store(&wc.owner_ready, 1);
	/* Until M waits in W's queue as a donor (internal counters). */
	while (atomic_load(&wc.rt->workers[wc.w]->rq.nr_donor) == 0)
		sched_yield();
	return (void *)(intptr_t)prt_mutex_unlock(&wc.m);
}

static void *wc_donor_main(void *arg)
{
	int y, z;
	prt_fiber_t o;
	void *res;

	(void)arg;
	wc_start();
	y = (wc.w + 1) % 3;
	z = (wc.w + 2) % 3;
	/* Below M: its unlock hands the lock to M (no lateral release). */
	o = test_spawn(wc.rt, PRT_PRIO_DEFAULT - 1, z, wc_owner, NULL);
	while (!atomic_load(&wc.owner_ready))
		sched_yield();
	wc_spawn_holder();
	prt_workerset_zero(&wc.some);
	prt_workerset_add(&wc.some, wc.w);
	prt_workerset_add(&wc.some, y);
	wc_set_affinity(&wc.some);
	FIBER_CHECK(prt_mutex_lock(&wc.m) == 0); /* queued on W, the holder runs */
	wc_region_end();
	wc_release();
	FIBER_CHECK(prt_mutex_unlock(&wc.m) == 0);
	FIBER_CHECK(prt_join(o, &res) == 0);
	FIBER_CHECK(res == NULL);
	FIBER_CHECK(atomic_load(&wc.ran_on) == y);
	return wc_finish();
}

static void test_wc_handed_donor_some_workers(void **state)
{
	(void)state;
	wc_run(3, PRT_PRIO_DEFAULT, PRT_PRIO_DEFAULT + 1, wc_donor_main);
}


/*
 * A fiber's own mutex timer fired by an idle worker while the fiber
 * still runs: between spinning on its waiter record (wait_lock dropped)
 * and going to sleep. The timeout takes it off the list and wakes
 * nobody, as the fiber is not asleep: the fiber must see that and not
 * go to sleep, else nothing ever wakes it (test_stress hung so). The
 * pause point PRT_PAUSE_MUTEX_SPUN holds the fiber in that window, its
 * timer armed, until the other worker has fired it.
 */
#if PRT_FAULT_INJECTION

static struct {
	prt_mutex_t m;
	atomic_int hook_on;   /* the next pause with the timer armed holds the fiber */
	atomic_int in_window; /* the fiber is held there */
	atomic_int fired;     /* its timer fired meanwhile (blocked_on cleared) */
	atomic_int worker;    /* the fiber's worker */
	atomic_int done, err;
} spun;

static void spun_pause(void *arg)
{
	struct prt__fiber *self = prt__cur_worker()->curr;

	(void)arg;
	if (!self->timer_w || !atomic_exchange(&spun.hook_on, 0))
		return; /* the first spin comes before the timer is armed */
	atomic_store(&spun.worker, prt_worker_index());
	atomic_store(&spun.in_window, 1);
	/* Keep this worker busy (no runtime call) until the other one fired our timer. */
	for (uint64_t t0 = test_mono_ns(); test_mono_ns() - t0 < 10000000000ull;) {
		if (!atomic_load(&self->blocked_on)) {
			atomic_store(&spun.fired, 1);
			break;
		}
		sched_yield();
	}
}

static void *spun_locker(void *arg)
{
	struct timespec ts = test_realtime_in(20 * 1000 * 1000);

	(void)arg;
	atomic_store(&spun.err, prt_mutex_timedlock(&spun.m, &ts));
	atomic_store(&spun.done, 1);
	return NULL;
}

static void test_wc_timer_fires_while_waiter_spins(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_mutexattr_t a;
	prt_fiber_t f, g;
	uint64_t t0;

	(void)state;
	memset(&spun, 0, sizeof(spun));
	prt_mutexattr_init(&a);
	/* Proxy off: the waiter sleeps until handed the lock or timed out. */
	prt_mutexattr_setproxy(&a, PRT_MUTEX_PROXY_OFF);
	assert_int_equal(prt_mutex_init(&spun.m, &a), 0);
	assert_int_equal(prt_mutex_lock(&spun.m), 0); /* this plain thread holds it */
	prt__fault_set_pause(PRT_PAUSE_MUTEX_SPUN, spun_pause, NULL);
	atomic_store(&spun.hook_on, 1);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, spun_locker, NULL);
	while (!atomic_load(&spun.in_window) && !atomic_load(&spun.done))
		sched_yield();
	assert_true(atomic_load(&spun.in_window)); /* the window was reached */
	/*
	 * Wake the other worker once: it sleeps again at most until the
	 * fiber's deadline (the timer watch), then fires that timer.
	 */
	g = test_spawn(rt, PRT_PRIO_DEFAULT, 1 - atomic_load(&spun.worker), test_noop, NULL);
	assert_int_equal(prt_join(g, NULL), 0);
	for (t0 = test_mono_ns(); !atomic_load(&spun.done) && test_mono_ns() - t0 < 20000000000ull;)
		usleep(1000);
	prt__fault_set_pause(PRT_PAUSE_MUTEX_SPUN, NULL, NULL);
	assert_true(atomic_load(&spun.fired));
	if (!atomic_load(&spun.done))
		fail_msg("the fiber went to sleep past its own timeout: nothing wakes it");
	assert_int_equal(atomic_load(&spun.err), ETIMEDOUT);
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(prt_mutex_unlock(&spun.m), 0);
	assert_int_equal(prt_mutex_destroy(&spun.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * The same window, the mutex released in it: a proxy-off waiter queued
 * (not asleep yet) stopped spinning on its record, wait_lock dropped, and
 * the owner (a plain thread of its priority) unlocks meanwhile. The
 * waiter is first but awake, so the unlock releases the mutex to it
 * instead of handing it over, and wakes nobody. The waiter must look at
 * the word again before it sleeps; it went to sleep on the released mutex
 * instead, for good (test_lifetime's test_unlock_wakes_dying_runtime hung
 * so, 2 runs in 8 under ASan).
 */
static struct {
	prt_mutex_t m;
	atomic_int hook_on, in_window, unlocked, done, err;
} rel;

static void rel_pause(void *arg)
{
	(void)arg;
	if (!atomic_exchange(&rel.hook_on, 0))
		return;
	atomic_store(&rel.in_window, 1);
	for (uint64_t t0 = test_mono_ns();
	     !atomic_load(&rel.unlocked) && test_mono_ns() - t0 < 10000000000ull;)
		sched_yield();
}

static void *rel_locker(void *arg)
{
	(void)arg;
	atomic_store(&rel.err, prt_mutex_lock(&rel.m));
	atomic_store(&rel.done, 1);
	if (!atomic_load(&rel.err))
		prt_mutex_unlock(&rel.m);
	return NULL;
}

static void test_released_while_waiter_spins(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_mutexattr_t a;
	prt_fiber_t f;
	uint64_t t0;

	(void)state;
	memset(&rel, 0, sizeof(rel));
	prt_mutexattr_init(&a);
	prt_mutexattr_setproxy(&a, PRT_MUTEX_PROXY_OFF); /* the waiter sleeps until handed it */
	assert_int_equal(prt_mutex_init(&rel.m, &a), 0);
	assert_int_equal(prt_mutex_lock(&rel.m), 0); /* this plain thread holds it */
	prt__fault_set_pause(PRT_PAUSE_MUTEX_SPUN, rel_pause, NULL);
	atomic_store(&rel.hook_on, 1);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, rel_locker, NULL);
	while (!atomic_load(&rel.in_window) && !atomic_load(&rel.done))
		sched_yield();
	assert_true(atomic_load(&rel.in_window)); /* the window was reached */
	assert_int_equal(prt_mutex_unlock(&rel.m), 0);
	atomic_store(&rel.unlocked, 1);
	for (t0 = test_mono_ns(); !atomic_load(&rel.done) && test_mono_ns() - t0 < 20000000000ull;)
		usleep(1000);
	prt__fault_set_pause(PRT_PAUSE_MUTEX_SPUN, NULL, NULL);
	if (!atomic_load(&rel.done))
		fail_msg("the waiter went to sleep on the released mutex: nothing wakes it");
	assert_int_equal(atomic_load(&rel.err), 0);
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(prt_mutex_destroy(&rel.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}
#else
static void test_wc_timer_fires_while_waiter_spins(void **state)
{
	(void)state;
	skip(); /* needs the pause points of -Dfault_injection=true */
}

static void test_released_while_waiter_spins(void **state)
{
	(void)state;
	skip(); /* needs the pause points of -Dfault_injection=true */
}
#endif

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_worker_steals),
		cmocka_unit_test(test_yield_swap_counts),
		cmocka_unit_test(test_prio_change_while_queueing),
		cmocka_unit_test(test_affinity_change_while_queueing),
		cmocka_unit_test(test_affinity_words_mixed_view),
		cmocka_unit_test(test_steal_grace),
		cmocka_unit_test(test_no_stranded_fiber),
		cmocka_unit_test(test_steal_fresh_first),
		cmocka_unit_test(test_steal_fresh_few),
		cmocka_unit_test(test_steal_order_leaves_nothing),
		cmocka_unit_test(test_steal_reach),
		cmocka_unit_test(test_grace_sleeper_not_woken),
		cmocka_unit_test(test_affinity_respected),
		cmocka_unit_test(test_affinity_respected_many_workers),
		cmocka_unit_test(test_affinity_errors),
		cmocka_unit_test(test_affinity_move),
		cmocka_unit_test(test_affinity_at_immediate_return),
		cmocka_unit_test(test_parked_workers_wake),
		cmocka_unit_test(test_capped_worker_takes_pending),
		cmocka_unit_test(test_100k_fibers),
		cmocka_unit_test(test_plain_thread_spawns_detached),
		cmocka_unit_test(test_wc_sleep_timer),
		cmocka_unit_test(test_wc_timer_skips_grace),
		cmocka_unit_test(test_wc_cond_timer),
		cmocka_unit_test(test_wc_timedlock_sleeping),
		cmocka_unit_test(test_wc_timedlock_donor),
		cmocka_unit_test(test_wc_yield_requeue),
		cmocka_unit_test(test_wc_handoff_requeue),
		cmocka_unit_test(test_wc_spawn_some_workers),
		cmocka_unit_test(test_wc_handed_donor_some_workers),
		cmocka_unit_test(test_wc_timer_fires_while_waiter_spins),
		cmocka_unit_test(test_released_while_waiter_spins),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* a test's name, or a pattern with '*' */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
