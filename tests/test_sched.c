/* SPDX-License-Identifier: MIT */
/* Scheduler across workers: stealing, affinity, waking parked workers, scale. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include "test_common.h"
#include "runtime.h" /* internal: worker sleeping flags */

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
	FIBER_CHECK(prt_spawn(rt, &f, &a, where, NULL) == 0);
	FIBER_CHECK(prt_fiber_set_affinity(f, &one) == 0);
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
	/* Racing with the worker going to sleep: no sleep before the spawn. */
	for (int i = 0; i < 5000; i++) {
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
#define SCALE_PER 12500
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
 * fiber (detect_stack_use_after_return=1), would exhaust memory.
 */
#define DET_LIVE_MAX (PRT_TEST_TSAN || test_fake_stacks() ? 1000 : LONG_MAX)
/* Per spawner thread (4 of them); fewer under TSan, which maps memory per fiber. */
#define DET_PER (PRT_TEST_TSAN ? 5000 : 25000)

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_worker_steals),
		cmocka_unit_test(test_affinity_respected),
		cmocka_unit_test(test_affinity_respected_many_workers),
		cmocka_unit_test(test_affinity_errors),
		cmocka_unit_test(test_affinity_move),
		cmocka_unit_test(test_parked_workers_wake),
		cmocka_unit_test(test_capped_worker_takes_pending),
		cmocka_unit_test(test_100k_fibers),
		cmocka_unit_test(test_plain_thread_spawns_detached),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
