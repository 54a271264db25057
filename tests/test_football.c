/* SPDX-License-Identifier: MIT */
/*
 * A fiber port of the kernel's sched_football test (written for proxy
 * execution), and the affinity check of a proxied owner.
 *
 * On every worker: an offense fiber moves the ball whenever it runs
 * (yielding every iteration); a defense fiber outranks it but is blocked
 * on mid[i], held by defense_mid, itself blocked on low[i], held by
 * defense_low, which ranks below the offense and spins (yielding). Fans
 * outrank everyone and wake now and then; the referee (highest) watches.
 *
 *   referee 20 > fans 15 > defense 10 > defense_mid 8 > offense 5 > defense_low 2
 *
 * With proxy execution the worker picks the defense and runs
 * defense_low in its place (through the two-level chain), so the offense
 * never runs: the ball must not move. With it off, the blocked defense
 * sleeps and the offense outranks defense_low: the ball must move (proof
 * that the test can fail).
 */
#include <errno.h>
#include <sched.h>

#include "test_common.h"
#include "runtime_int.h" /* internal: blocked_on, to wait until a fiber waits */

enum { P_LOW = 2, P_OFFENSE = 5, P_MID = 8, P_DEFENSE = 10, P_FANS = 15, P_REF = 20 };
#define MAXW 8
#define GAME_NS 300000000ull /* 0.3 s */

static prt_mutex_t low_m[MAXW], mid_m[MAXW];
static atomic_long ball;
static atomic_int game_over, low_held;

static void wait_blocked(prt_fiber_t f)
{
	while (!atomic_load(&f.p->blocked_on))
		prt_sleep_ns(100000);
}

static void *defense_low(void *arg)
{
	int i = (int)(intptr_t)arg;

	FIBER_CHECK(prt_mutex_lock(&low_m[i]) == 0);
	atomic_fetch_add(&low_held, 1);
	while (!atomic_load(&game_over))
		prt_yield();
	FIBER_CHECK(prt_mutex_unlock(&low_m[i]) == 0);
	return NULL;
}

static void *defense_mid(void *arg)
{
	int i = (int)(intptr_t)arg;

	FIBER_CHECK(prt_mutex_lock(&mid_m[i]) == 0);
	FIBER_CHECK(prt_mutex_lock(&low_m[i]) == 0);
	FIBER_CHECK(prt_mutex_unlock(&low_m[i]) == 0);
	FIBER_CHECK(prt_mutex_unlock(&mid_m[i]) == 0);
	return NULL;
}

static void *defense(void *arg)
{
	int i = (int)(intptr_t)arg;

	FIBER_CHECK(prt_mutex_lock(&mid_m[i]) == 0);
	FIBER_CHECK(prt_mutex_unlock(&mid_m[i]) == 0);
	return NULL;
}

static void *offense(void *arg)
{
	(void)arg;
	while (!atomic_load(&game_over)) {
		atomic_fetch_add(&ball, 1);
		prt_yield();
	}
	return NULL;
}

static void *fan(void *arg)
{
	(void)arg;
	while (!atomic_load(&game_over)) {
		uint64_t t = prt_now_ns();

		prt_sleep_ns(2000000);
		while (prt_now_ns() - t < 2200000) /* cheer for ~0.2 ms */
			prt_yield();
	}
	return NULL;
}

struct game {
	int nworkers;
	bool proxy;
	long ball_after;
};

static void *referee(void *arg)
{
	struct game *g = arg;
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t f[MAXW][5];
	uint64_t t0;

	atomic_store(&game_over, 0);
	atomic_store(&low_held, 0);
	for (int i = 0; i < g->nworkers; i++) {
		prt_mutex_init(&low_m[i], NULL);
		prt_mutex_init(&mid_m[i], NULL);
		f[i][0] = test_spawn(rt, P_LOW, i, defense_low, (void *)(intptr_t)i);
	}
	while (atomic_load(&low_held) < g->nworkers)
		prt_sleep_ns(100000);
	for (int i = 0; i < g->nworkers; i++) {
		f[i][1] = test_spawn(rt, P_MID, i, defense_mid, (void *)(intptr_t)i);
		wait_blocked(f[i][1]); /* holds mid[i], waits on low[i] */
		f[i][2] = test_spawn(rt, P_DEFENSE, i, defense, (void *)(intptr_t)i);
		wait_blocked(f[i][2]); /* waits on mid[i] */
	}
	for (int i = 0; i < g->nworkers; i++) {
		f[i][3] = test_spawn(rt, P_OFFENSE, i, offense, NULL);
		f[i][4] = test_spawn(rt, P_FANS, i, fan, NULL);
	}
	/* Kick-off. */
	atomic_store(&ball, 0);
	t0 = prt_now_ns();
	while (prt_now_ns() - t0 < GAME_NS)
		prt_sleep_ns(10000000);
	g->ball_after = atomic_load(&ball);
	atomic_store(&game_over, 1);
	for (int i = 0; i < g->nworkers; i++)
		for (int k = 0; k < 5; k++) {
			void *r;

			FIBER_CHECK(prt_join(f[i][k], &r) == 0 && r == NULL);
		}
	return NULL;
}

static void play(int nworkers, bool proxy)
{
	prt_runtime_t *rt = test_rt_flags(nworkers, proxy ? 0 : PRT_RT_NO_PROXY);
	struct game g = { .proxy = proxy };
	prt_fiber_attr_t a;
	prt_fiber_t ref;
	void *r;

	g.nworkers = prt_runtime_nworkers(rt);
	assert_true(g.nworkers <= MAXW);
	/* The referee watches from the last worker, at the top priority. */
	prt_fiber_attr_init(&a);
	a.priority = P_REF;
	assert_int_equal(prt_spawn(rt, &ref, &a, referee, &g), 0);
	assert_int_equal(prt_join(ref, &r), 0);
	assert_null(r);
	if (proxy)
		assert_int_equal(g.ball_after, 0);
	else
		assert_true(g.ball_after > 0);
	for (int i = 0; i < g.nworkers; i++) {
		assert_int_equal(prt_mutex_destroy(&low_m[i]), 0);
		assert_int_equal(prt_mutex_destroy(&mid_m[i]), 0);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_football_proxy(void **state)
{
	(void)state;
	play(0, true); /* one worker per core */
	play(4, true); /* more workers than CPUs */
}

static void test_football_noproxy(void **state)
{
	(void)state;
	play(0, false);
	play(4, false);
}

/* ---- a proxied owner runs only where its own affinity allows ---- */

#define AFF_STEPS 2000
static prt_mutex_t aff_m;
static atomic_int aff_go, aff_kick, aff_done, aff_where[AFF_STEPS], aff_n;

static void *aff_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&aff_m) == 0);
	atomic_store(&aff_go, 1);
	while (!atomic_load(&aff_kick)) /* starved by aff_medium until the donor comes */
		prt_yield();
	/* Every step records where it runs. */
	for (int k = 0; k < AFF_STEPS; k++) {
		atomic_store(&aff_where[atomic_fetch_add(&aff_n, 1)], prt_worker_index());
		prt_yield();
	}
	FIBER_CHECK(prt_mutex_unlock(&aff_m) == 0);
	return NULL;
}

/* CPU-bound with yields: without a donor, the owner would never run. */
static void *aff_medium(void *arg)
{
	(void)arg;
	while (!atomic_load(&aff_done))
		prt_yield();
	return NULL;
}

static void *aff_high(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&aff_m) == 0);
	FIBER_CHECK(prt_mutex_unlock(&aff_m) == 0);
	return NULL;
}

static void *aff_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t o, m, h;
	void *r;

	(void)arg;
	prt_mutex_init(&aff_m, NULL);
	/* Owner may run on worker 1 only; the waiter on worker 0 only. */
	o = test_spawn(rt, 2, 1, aff_owner, NULL);
	while (!atomic_load(&aff_go))
		prt_sleep_ns(100000);
	m = test_spawn(rt, 10, 1, aff_medium, NULL);
	h = test_spawn(rt, 20, 0, aff_high, NULL);
	atomic_store(&aff_kick, 1);
	FIBER_CHECK(prt_join(h, &r) == 0 && r == NULL);
	atomic_store(&aff_done, 1);
	FIBER_CHECK(prt_join(m, &r) == 0 && r == NULL);
	FIBER_CHECK(prt_join(o, &r) == 0 && r == NULL);
	return NULL;
}

static void test_proxy_affinity(void **state)
{
	prt_runtime_t *rt = test_rt_flags(2, 0);
	uint64_t migr = 0, picks = 0;

	(void)state;
	atomic_store(&aff_n, 0);
	assert_null(test_run_in(rt, PRT_PRIO_MAX, aff_main, NULL));
	assert_int_equal(atomic_load(&aff_n), AFF_STEPS);
	for (int k = 0; k < AFF_STEPS; k++)
		assert_int_equal(atomic_load(&aff_where[k]), 1);
	for (int i = 0; i < 2; i++) {
		prt_worker_stats_t st;

		assert_int_equal(prt_worker_stats(rt, i, &st), 0);
		migr += st.migrations;
		picks += st.proxy_picks;
	}
	/* The waiter moved to the owner's worker and the owner ran for it there. */
	assert_true(migr > 0);
	assert_true(picks > 0);
	assert_int_equal(prt_mutex_destroy(&aff_m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_football_proxy),
		cmocka_unit_test(test_football_noproxy),
		cmocka_unit_test(test_proxy_affinity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
