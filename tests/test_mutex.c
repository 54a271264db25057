/* SPDX-License-Identifier: MIT */
/* Fiber mutex: pthread semantics, handoff order, deadlock detection, proxy execution. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include "test_common.h"
#include "fault.h" /* internal: pause points (fault-injection builds) */
#include "mutex_int.h" /* internal: the top-waiter cache */
#include "mutex_owner.h" /* internal: a plain thread's blocked_on */
#include "runtime_int.h" /* internal: blocked_on, to wait until a fiber waits */
#include "worker.h" /* internal: the worker a donor is queued on */

/* Wait (from a plain thread or by yielding in a fiber) until @f waits on a mutex. */
static void wait_blocked(prt_fiber_t f)
{
	while (!atomic_load(&f.p->blocked_on)) {
		if (prt_yield() != 0)
			sched_yield();
	}
}

/* ---- pthread-shaped semantics ---- */

static void *sem_body(void *arg)
{
	prt_mutex_t *m = arg;

	FIBER_CHECK(prt_mutex_unlock(m) == EPERM); /* main thread holds it */
	FIBER_CHECK(prt_mutex_trylock(m) == EBUSY);
	return NULL;
}

static void test_semantics(void **state)
{
	prt_mutex_t m = PRT_MUTEX_INITIALIZER, r, e;
	prt_mutexattr_t a;
	prt_runtime_t *rt = test_rt(1);
	int v;

	(void)state;
	/* Static initializer; plain thread use. */
	assert_int_equal(prt_mutex_lock(&m), 0);
	assert_int_equal(prt_mutex_lock(&m), EDEADLK); /* default type: detected */
	assert_int_equal(prt_mutex_trylock(&m), EBUSY);
	assert_int_equal(prt_mutex_destroy(&m), EBUSY);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, sem_body, &m));
	assert_int_equal(prt_mutex_unlock(&m), 0);
	assert_int_equal(prt_mutex_unlock(&m), EPERM);
	assert_int_equal(prt_mutex_destroy(&m), 0);

	/* Recursive counts. */
	assert_int_equal(prt_mutexattr_init(&a), 0);
	assert_int_equal(prt_mutexattr_settype(&a, PRT_MUTEX_RECURSIVE), 0);
	assert_int_equal(prt_mutexattr_gettype(&a, &v), 0);
	assert_int_equal(v, PRT_MUTEX_RECURSIVE);
	assert_int_equal(prt_mutex_init(&r, &a), 0);
	assert_int_equal(prt_mutex_lock(&r), 0);
	assert_int_equal(prt_mutex_lock(&r), 0);
	assert_int_equal(prt_mutex_trylock(&r), 0);
	assert_int_equal(prt_mutex_unlock(&r), 0);
	assert_int_equal(prt_mutex_unlock(&r), 0);
	assert_int_equal(prt_mutex_destroy(&r), EBUSY); /* still held once */
	assert_int_equal(prt_mutex_unlock(&r), 0);
	assert_int_equal(prt_mutex_unlock(&r), EPERM);
	assert_int_equal(prt_mutex_destroy(&r), 0);

	/* Errorcheck. */
	assert_int_equal(prt_mutexattr_settype(&a, PRT_MUTEX_ERRORCHECK), 0);
	assert_int_equal(prt_mutex_init(&e, &a), 0);
	assert_int_equal(prt_mutex_lock(&e), 0);
	assert_int_equal(prt_mutex_lock(&e), EDEADLK);
	assert_int_equal(prt_mutex_trylock(&e), EBUSY);
	assert_int_equal(prt_mutex_unlock(&e), 0);

	/* Bad arguments. */
	assert_int_equal(prt_mutexattr_settype(&a, 7), EINVAL);
	assert_int_equal(prt_mutexattr_setproxy(&a, -1), EINVAL);
	assert_int_equal(prt_mutexattr_setproxy(&a, PRT_MUTEX_PROXY_OFF), 0);
	assert_int_equal(prt_mutexattr_getproxy(&a, &v), 0);
	assert_int_equal(v, PRT_MUTEX_PROXY_OFF);
	a.type = 9;
	assert_int_equal(prt_mutex_init(&e, &a), EINVAL);
	assert_int_equal(prt_mutex_lock(NULL), EINVAL);
	assert_int_equal(prt_mutex_unlock(NULL), EINVAL);
	assert_int_equal(prt_mutex_trylock(NULL), EINVAL);
	assert_int_equal(prt_mutex_init(NULL, NULL), EINVAL);
	assert_int_equal(prt_mutexattr_destroy(&a), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- handoff order: priority, then FIFO; no barging ---- */

static prt_mutex_t ord_m = PRT_MUTEX_INITIALIZER;
static atomic_int ord_log[8], ord_n, ord_go;

static void *ord_waiter(void *arg)
{
	if (prt_mutex_lock(&ord_m) != 0)
		return (void *)1;
	/* Hold it until main has looked: else all five may be done by then, and it is free. */
	while (!atomic_load(&ord_go))
		prt_yield();
	atomic_store(&ord_log[atomic_fetch_add(&ord_n, 1)], (int)(intptr_t)arg);
	prt_mutex_unlock(&ord_m);
	return NULL;
}

static const int ord_prio[] = { 5, 10, 10, 5, 20 };

static void *ord_main(void *arg)
{
	const int *prio = ord_prio;
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t f[5];
	bool proxy = arg != NULL;

	atomic_store(&ord_n, 0);
	atomic_store(&ord_go, 0);
	FIBER_CHECK(prt_mutex_lock(&ord_m) == 0);
	for (int i = 0; i < 5; i++) {
		f[i] = test_spawn(rt, prio[i], -1, ord_waiter, (void *)(intptr_t)i);
		wait_blocked(f[i]); /* queue them in this order */
	}
	/* No barging: a newcomer cannot take the mutex while waiters wait... */
	FIBER_CHECK(prt_mutex_trylock(&ord_m) == EDEADLK || prt_mutex_trylock(&ord_m) == EBUSY);
	FIBER_CHECK(prt_mutex_unlock(&ord_m) == 0);
	/* ...nor right after the unlock: it was handed over, never free. */
	FIBER_CHECK(prt_mutex_trylock(&ord_m) == EBUSY);
	atomic_store(&ord_go, 1);
	for (int i = 0; i < 5; i++)
		FIBER_CHECK(prt_join(f[i], NULL) == 0);
	(void)proxy;
	return NULL;
}

static void handoff_order(unsigned flags)
{
	static const int want[] = { 4, 1, 2, 0, 3 };
	prt_runtime_t *rt = test_rt_flags(2, flags);

	/* The main fiber outranks the waiters, so they queue in spawn order. */
	/*
	 * Preemptive, a holder may be interrupted and its worker pick a
	 * waiter of the next one's level, and run the holder for it: unlock
	 * then hands the lock to that waiter (the one the worker serves,
	 * include/proxyrt/mutex.h), so FIFO within a level holds only in a
	 * cooperative runtime. Priority order holds in both.
	 */
	bool fifo = prt_runtime_preemptive(rt, NULL) == 0;
	unsigned seen = 0;

	assert_null(test_run_in(rt, PRT_PRIO_MAX, ord_main, NULL));
	assert_int_equal(atomic_load(&ord_n), 5);
	for (int i = 0; i < 5; i++) {
		int got = atomic_load(&ord_log[i]);

		assert_true(got >= 0 && got < 5 && !(seen & (1u << got)));
		seen |= 1u << got;
		if (fifo)
			assert_int_equal(got, want[i]);
		else
			assert_int_equal(ord_prio[got], ord_prio[want[i]]);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_handoff_order_proxy(void **state)
{
	(void)state;
	handoff_order(0);
}

static void test_handoff_order_noproxy(void **state)
{
	(void)state;
	handoff_order(PRT_RT_NO_PROXY);
}

/* ---- priority inversion on one worker: proxy vs no proxy ---- */

#define INV_STEPS 50

static prt_mutex_t inv_m = PRT_MUTEX_INITIALIZER;
static prt_mutex_t *inv_mp = &inv_m; /* what H locks */
static atomic_int m_steps, m_steps_at_h, l_steps;
static prt_fiber_t inv_h, inv_mf;

static void *inv_medium(void *arg)
{
	(void)arg;
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&m_steps, 1);
		prt_yield();
	}
	return NULL;
}

static void *inv_high(void *arg)
{
	(void)arg;
	if (prt_mutex_lock(inv_mp) != 0)
		return (void *)1;
	atomic_store(&m_steps_at_h, atomic_load(&m_steps));
	prt_mutex_unlock(inv_mp);
	return NULL;
}

static void *inv_low(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&inv_m) == 0);
	/*
	 * Both exist before either runs: in a preemptive runtime M, which
	 * outranks L, would otherwise preempt L between the two spawns and
	 * take all its steps before H is there to lock.
	 */
	FIBER_CHECK(prt_preempt_disable() == 0);
	inv_mf = test_spawn(rt, 10, -1, inv_medium, NULL);
	inv_h = test_spawn(rt, 20, -1, inv_high, NULL);
	FIBER_CHECK(prt_preempt_enable() == 0);
	/* The critical section: work in steps, yielding between them. */
	for (int i = 0; i < INV_STEPS; i++) {
		atomic_fetch_add(&l_steps, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_mutex_unlock(&inv_m) == 0);
	return NULL;
}

static int inversion(unsigned flags, prt_worker_stats_t *st)
{
	prt_runtime_t *rt = test_rt_flags(1, flags);
	prt_fiber_t l;
	void *res;

	atomic_store(&m_steps, 0);
	atomic_store(&l_steps, 0);
	atomic_store(&m_steps_at_h, -1);
	l = test_spawn(rt, 5, -1, inv_low, NULL);
	assert_int_equal(prt_join(l, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(inv_h, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(inv_mf, NULL), 0);
	assert_int_equal(prt_worker_stats(rt, 0, st), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	return atomic_load(&m_steps_at_h);
}

static void test_inversion_proxy(void **state)
{
	prt_worker_stats_t st;

	(void)state;
	/* L runs in H's place: the medium fiber never gets a step before H has the lock. */
	assert_int_equal(inversion(0, &st), 0);
	assert_true(st.proxy_picks >= 1);
	assert_true(st.handoffs >= 1);
}

static void test_inversion_noproxy(void **state)
{
	prt_worker_stats_t st;

	(void)state;
	/* Proof the test can fail: without proxy execution, M runs to the end first. */
	assert_int_equal(inversion(PRT_RT_NO_PROXY, &st), INV_STEPS);
	assert_int_equal(st.proxy_picks, 0);
}

/* Per-mutex attribute overrides the runtime default. */
static void test_inversion_attr(void **state)
{
	prt_mutexattr_t a;
	prt_worker_stats_t st;

	(void)state;
	prt_mutexattr_init(&a);
	prt_mutexattr_setproxy(&a, PRT_MUTEX_PROXY_ON);
	prt_mutex_init(&inv_m, &a);
	assert_int_equal(inversion(PRT_RT_NO_PROXY, &st), 0);
	prt_mutexattr_setproxy(&a, PRT_MUTEX_PROXY_OFF);
	prt_mutex_init(&inv_m, &a);
	assert_int_equal(inversion(0, &st), INV_STEPS);
	prt_mutex_init(&inv_m, NULL);
}

/* ---- a chain of depth 10 ---- */

#define CHAIN 10
static prt_mutex_t chain_m[CHAIN];
static prt_fiber_t chain_f[CHAIN];
static atomic_int chain_held, chain_go;

static void *chain_link(void *arg)
{
	int i = (int)(intptr_t)arg;

	FIBER_CHECK(prt_mutex_lock(&chain_m[i]) == 0);
	atomic_fetch_add(&chain_held, 1);
	while (atomic_load(&chain_held) < CHAIN)
		prt_yield();
	if (i + 1 < CHAIN) {
		FIBER_CHECK(prt_mutex_lock(&chain_m[i + 1]) == 0);
		FIBER_CHECK(prt_mutex_unlock(&chain_m[i + 1]) == 0);
	} else {
		/* The end of the chain: wait for H to block, then work. */
		while (!atomic_load(&chain_go))
			prt_yield();
		for (int k = 0; k < INV_STEPS; k++) {
			atomic_fetch_add(&l_steps, 1);
			prt_yield();
		}
	}
	FIBER_CHECK(prt_mutex_unlock(&chain_m[i]) == 0);
	return NULL;
}

static void *chain_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t h, mf;

	(void)arg;
	for (int i = 0; i < CHAIN; i++) {
		prt_mutex_init(&chain_m[i], NULL);
		chain_f[i] = test_spawn(rt, 2, -1, chain_link, (void *)(intptr_t)i);
	}
	while (atomic_load(&chain_held) < CHAIN)
		prt_yield();
	for (int i = 0; i + 1 < CHAIN; i++)
		wait_blocked(chain_f[i]);
	/*
	 * Now: f0 -> m1 -> f1 -> m2 -> ... -> f9 (runnable). H wants m0.
	 * Nothing runs between here and our join (no scheduling point), so
	 * f9 does no step before H waits.
	 */
	FIBER_CHECK(prt_preempt_disable() == 0); /* as in inv_low */
	atomic_store(&chain_go, 1);
	mf = test_spawn(rt, 10, -1, inv_medium, NULL);
	inv_mp = &chain_m[0];
	h = test_spawn(rt, 20, -1, inv_high, NULL);
	FIBER_CHECK(prt_preempt_enable() == 0);
	FIBER_CHECK(prt_join(h, NULL) == 0);
	FIBER_CHECK(prt_join(mf, NULL) == 0);
	for (int i = 0; i < CHAIN; i++)
		FIBER_CHECK(prt_join(chain_f[i], NULL) == 0);
	return NULL;
}

static void test_chain_depth_10(void **state)
{
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	atomic_store(&chain_held, 0);
	atomic_store(&chain_go, 0);
	atomic_store(&m_steps, 0);
	atomic_store(&m_steps_at_h, -1);
	/* The main fiber waits by yielding: at the chain's own priority. */
	assert_null(test_run_in(rt, 2, chain_main, NULL));
	/* f9 ran for H through a chain of 10: M got no step before H had m0. */
	assert_int_equal(atomic_load(&m_steps_at_h), 0);
	inv_mp = &inv_m;
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- remote owner: donor migration across workers, affinity kept ---- */

static prt_mutex_t rem_m = PRT_MUTEX_INITIALIZER;
static atomic_int rem_h_done, rem_bad_worker, rem_locked;
static _Atomic(struct prt__fiber *) rem_hp; /* H, once spawned */

static void *rem_low(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&rem_m) == 0);
	atomic_store(&rem_locked, 1);
	/*
	 * Hold until H waits, then 200 more steps. M (prio 10) starves us on
	 * worker 1, so we only get here by running in H's place. Every step
	 * must run on worker 1, our affinity.
	 */
	while (!atomic_load(&rem_hp) || !atomic_load(&atomic_load(&rem_hp)->blocked_on)) {
		if (prt_worker_index() != 1)
			atomic_fetch_add(&rem_bad_worker, 1);
		prt_yield();
	}
	for (int i = 0; i < 200; i++) {
		if (prt_worker_index() != 1)
			atomic_fetch_add(&rem_bad_worker, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_mutex_unlock(&rem_m) == 0);
	return NULL;
}

static void *rem_medium(void *arg)
{
	(void)arg;
	/* Busy on worker 1 until H got the lock: without proxy this starves L forever. */
	while (!atomic_load(&rem_h_done)) {
		if (prt_worker_index() != 1)
			atomic_fetch_add(&rem_bad_worker, 1);
		prt_yield();
	}
	return NULL;
}

static void *rem_high(void *arg)
{
	(void)arg;
	while (!atomic_load(&rem_locked))
		prt_yield();
	if (prt_mutex_lock(&rem_m) != 0)
		return (void *)1;
	atomic_store(&rem_h_done, 1);
	if (prt_worker_index() != 0)
		atomic_fetch_add(&rem_bad_worker, 1); /* returned home before running */
	prt_mutex_unlock(&rem_m);
	return NULL;
}

static void test_remote_owner(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_worker_stats_t s0, s1;
	prt_fiber_t l, m, h;

	(void)state;
	atomic_store(&rem_h_done, 0);
	atomic_store(&rem_locked, 0);
	atomic_store(&rem_bad_worker, 0);
	atomic_store(&rem_hp, NULL);
	l = test_spawn(rt, 5, 1, rem_low, NULL);
	while (!atomic_load(&rem_locked))
		sched_yield();
	m = test_spawn(rt, 10, 1, rem_medium, NULL);
	h = test_spawn(rt, 20, 0, rem_high, NULL);
	atomic_store(&rem_hp, h.p);
	assert_int_equal(prt_join(h, NULL), 0);
	assert_int_equal(prt_join(m, NULL), 0);
	assert_int_equal(prt_join(l, NULL), 0);
	assert_int_equal(atomic_load(&rem_bad_worker), 0);
	assert_int_equal(prt_worker_stats(rt, 0, &s0), 0);
	assert_int_equal(prt_worker_stats(rt, 1, &s1), 0);
	assert_true(s0.migrations + s1.migrations >= 1);
	assert_true(s1.proxy_picks >= 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- sleeping owner: donors attach and come back with it ---- */

static prt_mutex_t sl_m = PRT_MUTEX_INITIALIZER;
static atomic_int sl_parked;

static void *sl_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&sl_m) == 0);
	atomic_store(&sl_parked, 1);
	while (atomic_load(&sl_parked) == 1)
		prt_park();
	FIBER_CHECK(prt_mutex_unlock(&sl_m) == 0);
	return NULL;
}

static void *sl_waiter(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)prt_mutex_lock(&sl_m) ?: (prt_mutex_unlock(&sl_m), NULL);
}

static void test_sleeping_owner(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_worker_stats_t st;
	uint64_t attached = 0;
	prt_fiber_t o, w[4];

	(void)state;
	atomic_store(&sl_parked, 0);
	o = test_spawn(rt, 5, -1, sl_owner, NULL);
	while (!atomic_load(&sl_parked))
		sched_yield();
	for (int i = 0; i < 4; i++)
		w[i] = test_spawn(rt, 20, -1, sl_waiter, NULL);
	for (int i = 0; i < 4; i++)
		wait_blocked(w[i]);
	/* Wait until the pick has attached every waiter to the sleeping owner. */
	for (;;) {
		attached = 0;
		for (int i = 0; i < 2; i++) {
			assert_int_equal(prt_worker_stats(rt, i, &st), 0);
			attached += st.attachments;
		}
		if (attached >= 4)
			break;
		usleep(100);
	}
	atomic_store(&sl_parked, 2);
	assert_int_equal(prt_unpark(o), 0);
	for (int i = 0; i < 4; i++)
		assert_null(prt_join(w[i], NULL) == 0 ? NULL : (void *)1);
	assert_int_equal(prt_join(o, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a released mutex handed on for a newcomer: the newcomer is woken ---- */

/*
 * An unlock between equals may release the mutex with its waiters
 * queued (mutex.c, "Handoff and lateral stealing"). A newcomer that may
 * not pass the first waiter then hands it the mutex and queues its own
 * record (acquire_locked): a plain thread's lock or timedlock, a fiber's
 * lock, a condvar waiter requeued by a signal from a thread that does
 * not hold the mutex. That handoff must flag the word for the newcomer:
 * without PRT_MTX_WAITERS the new owner unlocked by the fast path and
 * the newcomer slept for good (stress_mixed hung so: a plain thread
 * asleep on a free mutex, its record queued, and every fiber waiting on
 * what the thread held).
 *
 * The state is made, not raced for: U (priority 20, on worker 0) holds
 * m and computes (preemption off, no scheduling point); H (20, on
 * worker 1) waits for m and is moved to U's worker as a donor, where
 * nothing can run it. U unlocks: H is its equal, queued, so m is
 * released with H first. Then the newcomer (priority below 20) comes,
 * and U goes on computing until its record is queued. Only if H had
 * waited 1 ms by U's unlock (PRT_MTX_STARVE_NS: a loaded machine) is it
 * handed m instead: that round is tried again, for up to a minute.
 */
enum { NC_THREAD_LOCK, NC_THREAD_TIMEDLOCK, NC_FIBER_LOCK, NC_COND_THREAD, NC_COND_FIBER, NC_N };

#define NC_PRIO 20       /* U and H */
#define NC_LOW 5         /* a fiber newcomer or condvar waiter */
#define NC_WAIT_NS 10000000000ull

static struct {
	prt_runtime_t *rt;
	prt_mutex_t m;
	prt_cond_t c;
	prt_fiber_t h;
	int kind;
	atomic_int released; /* set by U: 1 released with H first, -1 handed to H */
	atomic_int cond_waits; /* the condvar waiter is on c (it released m) */
	atomic_int got;      /* the newcomer holds m (its call returned 0) */
	atomic_int err;      /* the newcomer's call's result, if not 0 */
} nc;

/* The priority + 1 (m->top) of the newcomer's record, once queued. */
static int nc_top(void)
{
	bool fiber = nc.kind == NC_FIBER_LOCK || nc.kind == NC_COND_FIBER;

	return (fiber ? NC_LOW : PRT_PRIO_DEFAULT) + 1;
}

/* The newcomer's side, done: record what its call returned, give m back. */
static void nc_done(int err)
{
	atomic_store(&nc.err, err);
	if (!err) {
		atomic_store(&nc.got, 1);
		prt_mutex_unlock(&nc.m);
	}
}

static void *nc_first(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&nc.m) == 0);
	FIBER_CHECK(prt_mutex_unlock(&nc.m) == 0);
	return NULL;
}

/*
 * Keep this worker computing (no scheduling point) until @cond, at most
 * NC_WAIT_NS. No sched_yield(): on a loaded machine it gives the CPU
 * away for milliseconds, past H's 1 ms.
 */
#define NC_SPIN_UNTIL(cond)                                                               \
	for (uint64_t t0_ = test_mono_ns(); !(cond) && test_mono_ns() - t0_ < NC_WAIT_NS;) { \
	}

static void *nc_owner(void *arg)
{
	struct prt__mutex *m = prt__mutex_of(&nc.m);
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *h;
	uintptr_t o;

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&nc.m) == 0);
	FIBER_CHECK(prt_preempt_disable() == 0);
	nc.h = test_spawn(nc.rt, NC_PRIO, 1, nc_first, NULL);
	h = nc.h.p;
	/* H waits, queued here as a donor: it runs only when we stop computing. */
	NC_SPIN_UNTIL(atomic_load(&h->blocked_on) == m && atomic_load(&h->rq_worker) == w);
	FIBER_CHECK(atomic_load(&h->rq_worker) == w);
	FIBER_CHECK(prt_mutex_unlock(&nc.m) == 0);
	o = atomic_load(&m->owner);
	atomic_store(&nc.released, o == PRT_MTX_WAITERS ? 1 : -1);
	/* Released: until the newcomer is queued behind H's grant (or already served). */
	if (o == PRT_MTX_WAITERS)
		NC_SPIN_UNTIL(atomic_load(&m->top) == nc_top() || atomic_load(&nc.got));
	FIBER_CHECK(prt_preempt_enable() == 0);
	return NULL;
}

static void *nc_thread(void *arg)
{
	struct timespec ts = test_realtime_in(60 * 1000000000L);

	(void)arg;
	switch (nc.kind) {
	case NC_THREAD_LOCK:
		nc_done(prt_mutex_lock(&nc.m));
		break;
	case NC_THREAD_TIMEDLOCK:
		nc_done(prt_mutex_timedlock(&nc.m, &ts));
		break;
	case NC_COND_THREAD:
		if (prt_mutex_lock(&nc.m)) {
			atomic_store(&nc.err, -1);
			break;
		}
		atomic_store(&nc.cond_waits, 1); /* m is ours until the wait releases it */
		nc_done(prt_cond_wait(&nc.c, &nc.m));
		break;
	}
	return NULL;
}

static void *nc_fiber(void *arg)
{
	(void)arg;
	if (nc.kind == NC_FIBER_LOCK) {
		nc_done(prt_mutex_lock(&nc.m));
		return NULL;
	}
	FIBER_CHECK(prt_mutex_lock(&nc.m) == 0);
	atomic_store(&nc.cond_waits, 1);
	nc_done(prt_cond_wait(&nc.c, &nc.m));
	return NULL;
}

/* One round of @kind: false if H was handed m (it had waited too long), to try again. */
static bool nc_round(int kind)
{
	bool cond = kind == NC_COND_THREAD || kind == NC_COND_FIBER;
	pthread_t t;
	prt_fiber_t u, f = { 0 };
	uint64_t t0;

	memset(&nc.released, 0, sizeof(nc) - offsetof(typeof(nc), released));
	nc.kind = kind;
	/* A condvar waiter first: it waits on c, m released. */
	if (kind == NC_COND_THREAD)
		assert_int_equal(pthread_create(&t, NULL, nc_thread, NULL), 0);
	else if (kind == NC_COND_FIBER)
		f = test_spawn(nc.rt, NC_LOW, 1, nc_fiber, NULL);
	while (cond && !atomic_load(&nc.cond_waits))
		sched_yield();
	/* U takes m only once the waiter's wait has released it. */
	u = test_spawn(nc.rt, NC_PRIO, 0, nc_owner, NULL);
	while (!atomic_load(&nc.released))
		sched_yield();
	if (atomic_load(&nc.released) < 0) {
		/* Not released: nothing came for m; H takes and gives it back. */
		assert_null(prt_join(u, NULL));
		assert_null(prt_join(nc.h, NULL));
		if (cond) {
			/* The waiter goes on waiting on c: broadcast under m, the usual way. */
			assert_int_equal(prt_mutex_lock(&nc.m), 0);
			assert_int_equal(prt_cond_broadcast(&nc.c), 0);
			assert_int_equal(prt_mutex_unlock(&nc.m), 0);
			goto join;
		}
		return false;
	}
	/* Released, H first and unable to run: the newcomer comes for m. */
	switch (kind) {
	case NC_THREAD_LOCK:
	case NC_THREAD_TIMEDLOCK:
		assert_int_equal(pthread_create(&t, NULL, nc_thread, NULL), 0);
		break;
	case NC_FIBER_LOCK:
		f = test_spawn(nc.rt, NC_LOW, 1, nc_fiber, NULL);
		break;
	default:
		/* A signal without m: the requeue hands m to H and queues the waiter. */
		assert_int_equal(prt_cond_signal(&nc.c), 0);
		break;
	}
	assert_null(prt_join(u, NULL));
	for (t0 = test_mono_ns(); !atomic_load(&nc.got) && !atomic_load(&nc.err) &&
				  test_mono_ns() - t0 < NC_WAIT_NS;)
		usleep(1000);
	if (!atomic_load(&nc.got))
		fail_msg("kind %d: the newcomer was not handed the free mutex (err %d): "
			 "its wakeup was lost", kind, atomic_load(&nc.err));
	assert_null(prt_join(nc.h, NULL));
join:
	if (kind == NC_FIBER_LOCK || kind == NC_COND_FIBER)
		assert_null(prt_join(f, NULL));
	else
		assert_int_equal(pthread_join(t, NULL), 0);
	if (atomic_load(&nc.released) < 0)
		return false;
	assert_int_equal(atomic_load(&nc.err), 0);
	return true;
}

static void test_released_handoff_wakes_newcomer(void **state)
{
	(void)state;
	nc.rt = test_rt(2);
	assert_int_equal(prt_mutex_init(&nc.m, NULL), 0);
	assert_int_equal(prt_cond_init(&nc.c), 0);
	for (int kind = 0; kind < NC_N; kind++) {
		uint64_t t0 = test_mono_ns();

		/* A round costs milliseconds: try for a minute (a loaded machine misses many). */
		while (!nc_round(kind))
			if (test_mono_ns() - t0 > 60 * 1000000000ull)
				fail_msg("kind %d: H was never left queued at U's unlock", kind);
	}
	assert_int_equal(prt_cond_destroy(&nc.c), 0);
	assert_int_equal(prt_mutex_destroy(&nc.m), 0);
	assert_int_equal(prt_runtime_destroy(nc.rt), 0);
}

/* ---- a handoff to a condvar waiter attached to a sleeping owner ---- */

/*
 * A condvar waiter woken by its timeout is queued; a signal that comes
 * before it runs still moves it to the mutex (cond.c: the signal won),
 * blocked_on set. Picked, it walks its chain as a donor and may be
 * attached to the sleeping owner at the end (here: the mutex's owner A
 * waits on m2, whose owner O is parked). A handoff to it must bring it
 * back from there as it does a donor: waking its wait alone (LATE: it is
 * not asleep) left it on O's donor list, owning the mutex, until O woke.
 * One worker: the priorities say what runs when.
 */
#define PA_COND_NS 200000000L /* the condvar waiter's timeout */

static struct {
	prt_mutex_t m, m2;
	prt_cond_t c;
	prt_fiber_t cw;
	atomic_int o_parked, cw_waits, a_done, cw_done, cw_err;
} pa;

static void *pa_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&pa.m2) == 0);
	atomic_store(&pa.o_parked, 1);
	while (atomic_load(&pa.o_parked) == 1)
		prt_park();
	FIBER_CHECK(prt_mutex_unlock(&pa.m2) == 0);
	return NULL;
}

static void *pa_cond_waiter(void *arg)
{
	struct timespec ts = test_realtime_in(PA_COND_NS);
	int e;

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&pa.m) == 0);
	atomic_store(&pa.cw_waits, 1);
	e = prt_cond_timedwait(&pa.c, &pa.m, &ts);
	atomic_store(&pa.cw_err, e);
	atomic_store(&pa.cw_done, 1);
	FIBER_CHECK(prt_mutex_unlock(&pa.m) == 0); /* ours again either way */
	return NULL;
}

static void *pa_holder(void *arg)
{
	struct timespec ts = test_realtime_in(2 * PA_COND_NS);

	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&pa.m) == 0);
	/* O sleeps holding m2: we wait, attached to O, until our deadline. */
	FIBER_CHECK(prt_mutex_timedlock(&pa.m2, &ts) == ETIMEDOUT);
	FIBER_CHECK(prt_mutex_unlock(&pa.m) == 0); /* handed to the condvar waiter */
	atomic_store(&pa.a_done, 1);
	return NULL;
}

static void *pa_signaller(void *arg)
{
	struct prt__fiber *cw = pa.cw.p;

	(void)arg;
	/* Until the waiter's timeout has queued it (a yield fires due timers; it is below us). */
	while (atomic_load(&cw->state) == PRT_FS_BLOCKED)
		prt_yield();
	/* Not holding m: the requeue finds A's m and queues the waiter behind it. */
	FIBER_CHECK(prt_cond_signal(&pa.c) == 0);
	return NULL;
}

/* One round: false if the waiter ran before the signal (a slow machine): try again. */
static bool pa_round(prt_runtime_t *rt)
{
	prt_fiber_t o, a, b;
	uint64_t t0;
	bool done;

	memset(&pa.o_parked, 0, sizeof(pa) - offsetof(typeof(pa), o_parked));
	o = test_spawn(rt, 1, -1, pa_owner, NULL);
	while (!atomic_load(&pa.o_parked))
		sched_yield();
	pa.cw = test_spawn(rt, 20, -1, pa_cond_waiter, NULL);
	while (!atomic_load(&pa.cw_waits) || atomic_load(&pa.cw.p->state) != PRT_FS_BLOCKED)
		sched_yield();
	a = test_spawn(rt, 10, -1, pa_holder, NULL);
	while (!atomic_load(&a.p->attached_to) && !atomic_load(&pa.a_done))
		sched_yield();
	b = test_spawn(rt, 30, -1, pa_signaller, NULL);
	while (!atomic_load(&pa.a_done))
		usleep(1000);
	/* A handed m to the waiter: it returns while O still sleeps. */
	for (t0 = test_mono_ns(); !atomic_load(&pa.cw_done) && test_mono_ns() - t0 < NC_WAIT_NS;)
		usleep(1000);
	done = atomic_load(&pa.cw_done);
	atomic_store(&pa.o_parked, 2);
	assert_int_equal(prt_unpark(o), 0);
	assert_null(prt_join(b, NULL));
	assert_null(prt_join(a, NULL));
	assert_null(prt_join(pa.cw, NULL));
	assert_null(prt_join(o, NULL));
	if (!done)
		fail_msg("the condvar waiter handed the mutex stayed attached to the sleeping owner");
	return atomic_load(&pa.cw_err) == 0; /* ETIMEDOUT: it ran before the signal */
}

static void test_handoff_brings_back_attached_cond_waiter(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	int tries = 0;

	(void)state;
	assert_int_equal(prt_mutex_init(&pa.m, NULL), 0);
	assert_int_equal(prt_mutex_init(&pa.m2, NULL), 0);
	assert_int_equal(prt_cond_init(&pa.c), 0);
	while (!pa_round(rt))
		if (++tries == 20)
			fail_msg("the signal never came before the timed-out waiter ran");
	assert_int_equal(prt_cond_destroy(&pa.c), 0);
	assert_int_equal(prt_mutex_destroy(&pa.m2), 0);
	assert_int_equal(prt_mutex_destroy(&pa.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- deadlock detection ---- */

static prt_mutex_t dl[3];
static atomic_int dl_stage, dl_deadlocks;

static void *dl_fiber(void *arg)
{
	int i = (int)(intptr_t)arg, n = (int)(intptr_t)arg >> 8, r;

	i &= 0xff;
	FIBER_CHECK(prt_mutex_lock(&dl[i]) == 0);
	atomic_fetch_add(&dl_stage, 1);
	while (atomic_load(&dl_stage) < n)
		prt_yield();
	r = prt_mutex_lock(&dl[(i + 1) % n]);
	if (r == EDEADLK) {
		atomic_fetch_add(&dl_deadlocks, 1);
		/* The caller is not waiting and holds what it held. */
		FIBER_CHECK(atomic_load(&prt_self().p->blocked_on) == NULL);
	} else {
		FIBER_CHECK(r == 0);
		FIBER_CHECK(prt_mutex_unlock(&dl[(i + 1) % n]) == 0);
	}
	FIBER_CHECK(prt_mutex_unlock(&dl[i]) == 0);
	return NULL;
}

static void deadlock_cycle(int n, int nworkers)
{
	prt_runtime_t *rt = test_rt(nworkers);
	prt_fiber_t f[3];

	atomic_store(&dl_stage, 0);
	atomic_store(&dl_deadlocks, 0);
	for (int i = 0; i < n; i++)
		prt_mutex_init(&dl[i], NULL);
	for (int i = 0; i < n; i++)
		f[i] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, dl_fiber, (void *)(intptr_t)(i | n << 8));
	for (int i = 0; i < n; i++) {
		void *res;

		assert_int_equal(prt_join(f[i], &res), 0);
		assert_null(res);
	}
	/*
	 * On one worker exactly one fiber closes the cycle and backs out; the
	 * others then get their locks. On two, fibers closing it at the same
	 * moment may all see it (docs/design.md: at least one does); none waits forever.
	 */
	if (nworkers == 1)
		assert_int_equal(atomic_load(&dl_deadlocks), 1);
	else
		assert_true(atomic_load(&dl_deadlocks) >= 1);
	for (int i = 0; i < n; i++)
		assert_int_equal(prt_mutex_destroy(&dl[i]), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_deadlock_abba(void **state)
{
	(void)state;
	for (int i = 0; i < 50; i++) {
		deadlock_cycle(2, 1);
		deadlock_cycle(2, 2);
	}
}

static void test_deadlock_three(void **state)
{
	(void)state;
	for (int i = 0; i < 50; i++) {
		deadlock_cycle(3, 1);
		deadlock_cycle(3, 2);
	}
}

/* ---- a mutex shared by two runtimes: the pick never crosses over ---- */

static prt_mutex_t xr_m = PRT_MUTEX_INITIALIZER;
static prt_runtime_t *xr_a, *xr_b;
static atomic_int xr_held, xr_done, xr_wrong;

/* B's owner (5), starved by B's hog (10) until A's waiter has the lock. */
static void *xr_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&xr_m) == 0);
	atomic_store(&xr_held, 1);
	while (!atomic_load(&xr_done)) {
		if (prt_runtime_self() != xr_b)
			atomic_store(&xr_wrong, 1);
		prt_yield();
	}
	FIBER_CHECK(prt_mutex_unlock(&xr_m) == 0);
	return NULL;
}

static void *xr_hog(void *arg)
{
	(void)arg;
	while (!atomic_load(&xr_done))
		prt_yield();
	return NULL;
}

/* A's waiter (20): waits for the lock on its own runtime's workers only. */
static void *xr_waiter(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&xr_m) == 0);
	if (prt_runtime_self() != xr_a)
		atomic_store(&xr_wrong, 1);
	FIBER_CHECK(prt_mutex_unlock(&xr_m) == 0);
	return NULL;
}

/*
 * A fiber of runtime A waits on a mutex that a fiber of runtime B holds,
 * and B's worker is busy: A's pick must not run B's fiber, nor move A's
 * fiber to B's worker (it ran and ended there, and A's destroy waited
 * for it for ever). It sleeps until handed the lock, as behind a thread.
 */
static void test_shared_between_runtimes(void **state)
{
	prt_fiber_t o, h, w;

	(void)state;
	atomic_store(&xr_held, 0);
	atomic_store(&xr_done, 0);
	atomic_store(&xr_wrong, 0);
	xr_a = test_rt(1);
	xr_b = test_rt(1);
	o = test_spawn(xr_b, 5, -1, xr_owner, NULL);
	while (!atomic_load(&xr_held))
		sched_yield();
	h = test_spawn(xr_b, 10, -1, xr_hog, NULL);
	w = test_spawn(xr_a, 20, -1, xr_waiter, NULL);
	wait_blocked(w);
	usleep(20000); /* A's picks have had their chance to cross over */
	atomic_store(&xr_done, 1);
	assert_int_equal(prt_join(w, NULL), 0);
	assert_int_equal(prt_join(h, NULL), 0);
	assert_int_equal(prt_join(o, NULL), 0);
	assert_int_equal(atomic_load(&xr_wrong), 0);
	assert_int_equal(prt_runtime_destroy(xr_a), 0);
	assert_int_equal(prt_runtime_destroy(xr_b), 0);
}

/* ---- fibers and plain threads on one mutex ---- */

#define MIX_K 20000
static prt_mutex_t mix_m = PRT_MUTEX_INITIALIZER;
static long mix_counter;

static void *mix_body(void *arg)
{
	(void)arg;
	for (int i = 0; i < MIX_K; i++) {
		if (prt_mutex_lock(&mix_m) != 0)
			return (void *)1;
		mix_counter++;
		if (i % 64 == 0)
			prt_yield(); /* yield while holding it sometimes (no-op on a thread) */
		prt_mutex_unlock(&mix_m);
	}
	return NULL;
}

static void test_fibers_and_threads(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t f[16];
	pthread_t t[3];

	(void)state;
	mix_counter = 0;
	for (int i = 0; i < 16; i++)
		f[i] = test_spawn(rt, i % PRT_PRIO_LEVELS, -1, mix_body, NULL);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, mix_body, NULL), 0);
	for (int i = 0; i < 3; i++) {
		void *res;

		assert_int_equal(pthread_join(t[i], &res), 0);
		assert_null(res);
	}
	for (int i = 0; i < 16; i++) {
		void *res;

		assert_int_equal(prt_join(f[i], &res), 0);
		assert_null(res);
	}
	assert_int_equal(mix_counter, 19L * MIX_K);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- stress: many fibers, many mutexes, random orders ---- */

#define ST_MUTEXES 8
#define ST_FIBERS 64
#define ST_ROUNDS 3000
static prt_mutex_t st_m[ST_MUTEXES];
static long st_count[ST_MUTEXES];
static atomic_long st_expect[ST_MUTEXES];

static void *stress_body(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;

	for (int r = 0; r < ST_ROUNDS; r++) {
		int a = rand_r(&seed) % ST_MUTEXES, b = rand_r(&seed) % ST_MUTEXES, e;

		FIBER_CHECK(prt_mutex_lock(&st_m[a]) == 0);
		st_count[a]++;
		atomic_fetch_add(&st_expect[a], 1);
		if (b != a) {
			/* Random order: either we get b, back off on EBUSY, or detect a cycle. */
			e = (r & 1) ? prt_mutex_trylock(&st_m[b]) : prt_mutex_lock(&st_m[b]);
			FIBER_CHECK(e == 0 || e == EBUSY || e == EDEADLK);
			if (e == 0) {
				st_count[b]++;
				atomic_fetch_add(&st_expect[b], 1);
				if (rand_r(&seed) % 4 == 0)
					prt_yield();
				FIBER_CHECK(prt_mutex_unlock(&st_m[b]) == 0);
			}
		}
		FIBER_CHECK(prt_mutex_unlock(&st_m[a]) == 0);
		if (rand_r(&seed) % 8 == 0)
			prt_yield();
	}
	return NULL;
}

static void test_stress(void **state)
{
	prt_runtime_t *rt = test_rt(0);
	prt_fiber_t f[ST_FIBERS];

	(void)state;
	for (int i = 0; i < ST_MUTEXES; i++) {
		prt_mutex_init(&st_m[i], NULL);
		st_count[i] = 0;
		atomic_store(&st_expect[i], 0);
	}
	for (int i = 0; i < ST_FIBERS; i++)
		f[i] = test_spawn(rt, i % 4 * 8, -1, stress_body, (void *)(intptr_t)(i + 1));
	for (int i = 0; i < ST_FIBERS; i++) {
		void *res;

		assert_int_equal(prt_join(f[i], &res), 0);
		assert_null(res);
	}
	for (int i = 0; i < ST_MUTEXES; i++) {
		assert_int_equal(st_count[i], atomic_load(&st_expect[i]));
		assert_int_equal(prt_mutex_destroy(&st_m[i]), 0);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- an owner that ends holding a mutex: its identity is never passed on ---- */

/*
 * A fiber or thread that ends holding a mutex leaves it locked for good
 * (POSIX's default, "stalled" robustness): nobody else may unlock it,
 * and it must not pass to whoever reuses the ender's descriptor or
 * thread-local memory. Each holder below ends holding eh_e (errorcheck),
 * eh_r (recursive, twice) and eh_n (normal); the next one, which in the
 * old code got the same descriptor (or TLS block) and so the same owner
 * token, must find none of them its own.
 */
static prt_mutex_t eh_e, eh_r, eh_n, eh_free = PRT_MUTEX_INITIALIZER;
static prt_cond_t eh_c = PRT_COND_INITIALIZER;
static atomic_int eh_go;

static void eh_init(void)
{
	prt_mutexattr_t a;

	prt_mutexattr_init(&a);
	prt_mutexattr_settype(&a, PRT_MUTEX_ERRORCHECK);
	assert_int_equal(prt_mutex_init(&eh_e, &a), 0);
	prt_mutexattr_settype(&a, PRT_MUTEX_RECURSIVE);
	assert_int_equal(prt_mutex_init(&eh_r, &a), 0);
	assert_int_equal(prt_mutex_init(&eh_n, NULL), 0);
}

/* How a holder takes eh_n: each path that makes the caller an owner. */
enum { EH_LOCK, EH_TRYLOCK, EH_TIMEDLOCK, EH_HANDOFF, EH_COND, EH_COND_TIMEOUT };

/*
 * arg: EH_* | EH_RELEASE to unlock everything before it ends, or
 * EH_ONLY_N to keep only eh_n (taken by the EH_* path: that path alone
 * must have counted it).
 */
#define EH_RELEASE 0x100
#define EH_ONLY_N 0x200

static void *eh_holder(void *arg)
{
	struct timespec far = test_realtime_in(60L * 1000000000L);
	struct timespec soon = test_realtime_in(1000000L);
	int how = (int)(intptr_t)arg & 0xff, r;

	FIBER_CHECK(prt_mutex_lock(&eh_e) == 0);
	FIBER_CHECK(prt_mutex_lock(&eh_r) == 0);
	FIBER_CHECK(prt_mutex_trylock(&eh_r) == 0);
	switch (how) {
	case EH_LOCK:
	case EH_HANDOFF: /* main holds eh_n: this waits and is handed it */
		FIBER_CHECK(prt_mutex_lock(&eh_n) == 0);
		break;
	case EH_TRYLOCK:
		FIBER_CHECK(prt_mutex_trylock(&eh_n) == 0);
		break;
	case EH_TIMEDLOCK:
		FIBER_CHECK(prt_mutex_timedlock(&eh_n, &far) == 0);
		break;
	case EH_COND: /* released by the wait, taken back when signalled */
		FIBER_CHECK(prt_mutex_lock(&eh_n) == 0);
		atomic_store(&eh_go, 1);
		while (atomic_load(&eh_go) != 2)
			FIBER_CHECK(prt_cond_wait(&eh_c, &eh_n) == 0);
		break;
	case EH_COND_TIMEOUT: /* taken back after the timeout */
		FIBER_CHECK(prt_mutex_lock(&eh_n) == 0);
		do
			r = prt_cond_timedwait(&eh_c, &eh_n, &soon);
		while (r == 0);
		FIBER_CHECK(r == ETIMEDOUT);
		break;
	}
	/* Also one it locks and unlocks properly: that one is free afterwards. */
	FIBER_CHECK(prt_mutex_lock(&eh_free) == 0);
	FIBER_CHECK(prt_mutex_unlock(&eh_free) == 0);
	if ((intptr_t)arg & EH_RELEASE)
		FIBER_CHECK(prt_mutex_unlock(&eh_n) == 0);
	if ((intptr_t)arg & (EH_RELEASE | EH_ONLY_N)) {
		FIBER_CHECK(prt_mutex_unlock(&eh_r) == 0);
		FIBER_CHECK(prt_mutex_unlock(&eh_r) == 0);
		FIBER_CHECK(prt_mutex_unlock(&eh_e) == 0);
	}
	return NULL;
}

/* Run eh_holder(@arg) as a fiber of @rt, doing main's part of its EH_* path; join it. */
static prt_fiber_t eh_run_holder(prt_runtime_t *rt, int arg)
{
	int how = arg & 0xff;
	prt_fiber_t a;
	void *res;

	eh_init();
	atomic_store(&eh_go, 0);
	if (how == EH_HANDOFF)
		assert_int_equal(prt_mutex_lock(&eh_n), 0);
	a = test_spawn(rt, PRT_PRIO_DEFAULT, -1, eh_holder, (void *)(intptr_t)arg);
	if (how == EH_HANDOFF) {
		wait_blocked(a);
		assert_int_equal(prt_mutex_unlock(&eh_n), 0);
	} else if (how == EH_COND) {
		while (atomic_load(&eh_go) != 1)
			sched_yield();
		assert_int_equal(prt_mutex_lock(&eh_n), 0); /* a waits on eh_c now */
		atomic_store(&eh_go, 2);
		assert_int_equal(prt_cond_signal(&eh_c), 0);
		assert_int_equal(prt_mutex_unlock(&eh_n), 0);
	}
	assert_int_equal(prt_join(a, &res), 0);
	assert_null(res);
	return a;
}

/* arg: non-NULL if the holder kept only eh_n (EH_ONLY_N). */
static void *eh_other(void *arg)
{
	struct timespec soon = test_realtime_in(5 * 1000000L);

	if (arg) {
		FIBER_CHECK(prt_mutex_trylock(&eh_e) == 0);
		FIBER_CHECK(prt_mutex_unlock(&eh_e) == 0);
		FIBER_CHECK(prt_mutex_trylock(&eh_r) == 0);
		FIBER_CHECK(prt_mutex_unlock(&eh_r) == 0);
	} else {
		FIBER_CHECK(prt_mutex_unlock(&eh_e) == EPERM);
		FIBER_CHECK(prt_mutex_trylock(&eh_e) == EBUSY);
		FIBER_CHECK(prt_mutex_trylock(&eh_r) == EBUSY);
		FIBER_CHECK(prt_mutex_unlock(&eh_r) == EPERM);
		FIBER_CHECK(prt_mutex_timedlock(&eh_e, &soon) == ETIMEDOUT);
	}
	FIBER_CHECK(prt_mutex_unlock(&eh_n) == EPERM);
	/* Not "already yours" (EDEADLK): held by someone who will never let go. */
	FIBER_CHECK(prt_mutex_timedlock(&eh_n, &soon) == ETIMEDOUT);
	FIBER_CHECK(prt_mutex_trylock(&eh_free) == 0);
	FIBER_CHECK(prt_mutex_unlock(&eh_free) == 0);
	return NULL;
}

static void eh_fiber_holder(unsigned flags, int arg)
{
	prt_runtime_t *rt = test_rt_flags(1, flags);
	void *only_n = (void *)(intptr_t)(arg & EH_ONLY_N);
	prt_fiber_t b;
	void *res;

	eh_run_holder(rt, arg);
	/* Spawned and joined by this thread, b would reuse the holder's descriptor. */
	b = test_spawn(rt, PRT_PRIO_DEFAULT, -1, eh_other, only_n);
	assert_int_equal(prt_join(b, &res), 0);
	assert_null(res);
	/* And so does a plain thread. */
	assert_null(eh_other(only_n));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_exit_holding_fiber(void **state)
{
	(void)state;
	for (int how = EH_LOCK; how <= EH_COND_TIMEOUT; how++)
		for (int only_n = 0; only_n <= EH_ONLY_N; only_n += EH_ONLY_N) {
			eh_fiber_holder(0, how | only_n);
			eh_fiber_holder(PRT_RT_NO_PROXY, how | only_n);
		}
}

/* A detached holder is freed by its worker as it ends: the next fiber spawned there reuses it. */
static void *eh_detached_main(void *arg)
{
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_attr_t a;
	prt_fiber_t b;
	void *res;

	(void)arg;
	prt_fiber_attr_init(&a);
	a.flags = PRT_FIBER_DETACHED;
	a.priority = PRT_PRIO_MAX; /* runs to its end at our next scheduling point */
	FIBER_CHECK(prt_spawn(rt, NULL, &a, eh_holder, (void *)(intptr_t)EH_LOCK) == 0);
	FIBER_CHECK(prt_yield() == 0);
	FIBER_CHECK(prt_mutex_trylock(&eh_e) == EBUSY); /* it ran, and ended holding it */
	b = test_spawn(rt, PRT_PRIO_DEFAULT, -1, eh_other, NULL);
	FIBER_CHECK(prt_join(b, &res) == 0);
	return res;
}

static void test_exit_holding_detached(void **state)
{
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	eh_init();
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, eh_detached_main, NULL));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void *eh_thread_holder(void *arg)
{
	(void)arg;
	if (prt_mutex_lock(&eh_e) || prt_mutex_lock(&eh_r) || prt_mutex_lock(&eh_r) ||
	    prt_mutex_lock(&eh_n))
		return (void *)1;
	return NULL;
}

/* A plain thread that ends holding them: the next thread (often given the same TLS block) too. */
static void test_exit_holding_thread(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	pthread_t t;
	prt_fiber_t b;
	void *res;

	(void)state;
	eh_init();
	assert_int_equal(pthread_create(&t, NULL, eh_thread_holder, NULL), 0);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_null(res);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(pthread_create(&t, NULL, eh_other, NULL), 0);
		assert_int_equal(pthread_join(t, &res), 0);
		assert_null(res);
	}
	b = test_spawn(rt, PRT_PRIO_DEFAULT, -1, eh_other, NULL);
	assert_int_equal(prt_join(b, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * Fibers that unlock everything (whatever path took it) give their
 * descriptor back: the next spawn by the same thread reuses it. One that
 * ends holding a mutex keeps its own: the mutex names it for good.
 */
static void test_exit_released_reused(void **state)
{
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	for (int how = EH_LOCK; how <= EH_COND_TIMEOUT; how++) {
		prt_fiber_t a, b;

		a = eh_run_holder(rt, how | EH_RELEASE);
		b = test_spawn(rt, PRT_PRIO_DEFAULT, -1, test_noop, NULL);
		assert_int_equal(prt_join(b, NULL), 0);
		assert_ptr_equal(b.p, a.p);
		a = eh_run_holder(rt, how);
		b = test_spawn(rt, PRT_PRIO_DEFAULT, -1, test_noop, NULL);
		assert_int_equal(prt_join(b, NULL), 0);
		assert_ptr_not_equal(b.p, a.p);
		/* Its handle is stale like any joined fiber's. */
		assert_int_equal(prt_fiber_get_priority(a), -ESRCH);
		assert_int_equal(prt_join(a, NULL), -ESRCH);
		assert_int_equal(prt_fiber_wait_chain(a, NULL, 0), -ESRCH);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * Deadlock detection walks owner -> what it waits on -> owner. Here the
 * owner of eh_n ended holding it; c (which, in the old code, got its
 * descriptor) waits on eh_e, which this thread holds. Waiting for eh_n
 * is no cycle: nobody will ever release it, but c waits on us, not on
 * eh_n. So timedlock times out instead of reporting EDEADLK.
 */
static void *dd_waiter(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&eh_e) == 0);
	FIBER_CHECK(prt_mutex_unlock(&eh_e) == 0);
	return NULL;
}

static void dead_owner_no_cycle(unsigned flags)
{
	prt_runtime_t *rt = test_rt_flags(1, flags);
	struct timespec soon;
	prt_fiber_t c;
	void *res;

	eh_run_holder(rt, EH_LOCK); /* leaves eh_e, eh_r and eh_n held */
	assert_int_equal(prt_mutex_init(&eh_e, NULL), 0);
	assert_int_equal(prt_mutex_lock(&eh_e), 0);
	c = test_spawn(rt, PRT_PRIO_DEFAULT, -1, dd_waiter, NULL);
	wait_blocked(c);
	soon = test_realtime_in(5 * 1000000L);
	assert_int_equal(prt_mutex_timedlock(&eh_n, &soon), ETIMEDOUT);
	assert_int_equal(prt_mutex_unlock(&eh_e), 0);
	assert_int_equal(prt_join(c, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_dead_owner_no_cycle(void **state)
{
	(void)state;
	dead_owner_no_cycle(0);
	dead_owner_no_cycle(PRT_RT_NO_PROXY);
}

/*
 * Proxy execution must not run, in a waiter's place, a fiber that only
 * reuses a dead owner's descriptor: h (20) waits on eh_n, whose owner
 * ended; c (5; in the old code on the dead owner's descriptor) counts
 * steps; m (10) keeps the worker busy. Nothing can run for h, so h
 * sleeps until its timeout and c, below m, makes no step meanwhile.
 */
static atomic_int px_steps, px_stop;

static void *px_counter(void *arg)
{
	(void)arg;
	while (!atomic_load(&px_stop)) {
		atomic_fetch_add(&px_steps, 1);
		prt_yield();
	}
	return NULL;
}

static void *px_busy(void *arg)
{
	(void)arg;
	while (!atomic_load(&px_stop))
		prt_yield();
	return NULL;
}

static void *px_high(void *arg)
{
	struct timespec soon = test_realtime_in(20 * 1000000L);
	int before = atomic_load(&px_steps), r;

	(void)arg;
	r = prt_mutex_timedlock(&eh_n, &soon);
	atomic_store(&px_stop, 1);
	FIBER_CHECK(r == ETIMEDOUT);
	FIBER_CHECK(atomic_load(&px_steps) == before);
	return NULL;
}

static void test_dead_owner_not_proxied(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_fiber_t c, m, h;
	void *res;

	(void)state;
	atomic_store(&px_steps, 0);
	atomic_store(&px_stop, 0);
	eh_run_holder(rt, EH_LOCK);
	c = test_spawn(rt, 5, -1, px_counter, NULL);
	m = test_spawn(rt, 10, -1, px_busy, NULL);
	h = test_spawn(rt, 20, -1, px_high, NULL);
	assert_int_equal(prt_join(h, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(m, NULL), 0);
	assert_int_equal(prt_join(c, NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a waiter's priority changes: every list ordered by it follows ---- */

static prt_mutex_t pc_m = PRT_MUTEX_INITIALIZER;
static atomic_int pc_log[4], pc_n, pc_top_bad;

enum { PC_LOCK = 0, PC_TIMED = 0x100 };

static void *pc_waiter(void *arg)
{
	struct timespec far = test_realtime_in(60L * 1000000000L);
	int id = (int)(intptr_t)arg & 0xff;
	int r = ((intptr_t)arg & PC_TIMED) ? prt_mutex_timedlock(&pc_m, &far) : prt_mutex_lock(&pc_m);

	if (r != 0)
		return (void *)(intptr_t)r;
	atomic_store(&pc_log[atomic_fetch_add(&pc_n, 1)], id);
	prt_mutex_unlock(&pc_m);
	return NULL;
}

/* The mutex's top-waiter cache: the first waiter's priority + 1. */
static int pc_top(void)
{
	return atomic_load(&prt__mutex_of(&pc_m)->top);
}

struct pc_case {
	prt_runtime_t *rt;
	int pa, pb, to; /* a's and b's priorities; a's new one */
	int timed;      /* PC_TIMED: a waits with a deadline */
};

/*
 * The caller holds pc_m; a (pa) and b (pb) wait on it, a first; a's
 * priority becomes @to; the caller unlocks. pc_log says who got it first.
 */
static void *pc_main(void *arg)
{
	struct pc_case *k = arg;
	int top = (k->to > k->pb ? k->to : k->pb) + 1;
	prt_fiber_t a, b;
	void *ra, *rb;
	bool top_ok; /* checked by the caller: the order is checked even if this is wrong */

	atomic_store(&pc_n, 0);
	FIBER_CHECK(prt_mutex_lock(&pc_m) == 0);
	a = test_spawn(k->rt, k->pa, -1, pc_waiter, (void *)(intptr_t)(0 | k->timed));
	wait_blocked(a);
	b = test_spawn(k->rt, k->pb, -1, pc_waiter, (void *)(intptr_t)1);
	wait_blocked(b);
	FIBER_CHECK(prt_fiber_set_priority(a, k->to) == 0);
	top_ok = pc_top() == top;
	FIBER_CHECK(prt_mutex_unlock(&pc_m) == 0);
	FIBER_CHECK(prt_join(a, &ra) == 0 && ra == NULL);
	FIBER_CHECK(prt_join(b, &rb) == 0 && rb == NULL);
	FIBER_CHECK(pc_top() == 0);
	if (!top_ok)
		atomic_fetch_add(&pc_top_bad, 1);
	return NULL;
}

/* Who (0: a, 1: b) gets pc_m first; @owner_thread: a plain thread holds it, else a fiber. */
static int prio_change(unsigned flags, int pa, int pb, int to, int timed, bool owner_thread)
{
	struct pc_case k = { test_rt_flags(2, flags), pa, pb, to, timed };

	if (owner_thread)
		assert_null(pc_main(&k));
	else /* the owner outranks both: it runs on while they queue */
		assert_null(test_run_in(k.rt, PRT_PRIO_MAX, pc_main, &k));
	assert_int_equal(atomic_load(&pc_n), 2);
	assert_int_equal(prt_runtime_destroy(k.rt), 0);
	return atomic_load(&pc_log[0]);
}

/* The input: a (10) and b (20) wait, a goes to 25: a first. And down: b first. */
static void test_prio_change_waiter(void **state)
{
	static const unsigned flags[] = { 0, PRT_RT_NO_PROXY };
	int bad = 0;

	(void)state;
	for (int i = 0; i < 2; i++)
		for (int timed = 0; timed <= PC_TIMED; timed += PC_TIMED)
			for (int thr = 0; thr < 2; thr++)
				for (int up = 0; up < 2; up++) {
					int first, top_bad = atomic_load(&pc_top_bad);

					first = up ? prio_change(flags[i], 10, 20, 25, timed, thr)
						   : prio_change(flags[i], 20, 10, 5, timed, thr);
					if (atomic_load(&pc_top_bad) != top_bad)
						fprintf(stderr, "flags=%u timed=%d owner=%s %s: top cache stale\n",
							flags[i], !!timed, thr ? "thread" : "fiber",
							up ? "a 10->25 over b 20" : "a 20->5 under b 10");
					if (first != !up) {
						fprintf(stderr, "flags=%u timed=%d owner=%s %s: %c first\n",
							flags[i], !!timed, thr ? "thread" : "fiber",
							up ? "a 10->25 over b 20" : "a 20->5 under b 10",
							first ? 'b' : 'a');
						bad++;
					}
				}
	assert_int_equal(bad, 0);
	assert_int_equal(atomic_load(&pc_top_bad), 0);
}

/*
 * Donors attached to a sleeping owner: a (10) and b (20) wait on pc_m,
 * whose owner parks holding it; a goes to 25; the owner is woken, runs
 * for a (now the highest) and unlocks: a first.
 */
static atomic_int pc_parked;

static void *pc_sleepy_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&pc_m) == 0);
	atomic_store(&pc_parked, 1);
	while (atomic_load(&pc_parked) == 1)
		prt_park();
	FIBER_CHECK(prt_mutex_unlock(&pc_m) == 0);
	return NULL;
}

static void test_prio_change_attached(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_worker_stats_t st;
	uint64_t attached;
	prt_fiber_t o, a, b;
	void *res;

	(void)state;
	atomic_store(&pc_parked, 0);
	atomic_store(&pc_n, 0);
	o = test_spawn(rt, 5, -1, pc_sleepy_owner, NULL);
	while (!atomic_load(&pc_parked) || atomic_load(&o.p->state) != 3 /* PRT_FS_BLOCKED */)
		sched_yield();
	a = test_spawn(rt, 10, -1, pc_waiter, (void *)0);
	wait_blocked(a);
	b = test_spawn(rt, 20, -1, pc_waiter, (void *)1);
	wait_blocked(b);
	do {
		attached = 0;
		for (int i = 0; i < 2; i++) {
			assert_int_equal(prt_worker_stats(rt, i, &st), 0);
			attached += st.attachments;
		}
		usleep(100);
	} while (attached < 2);
	assert_int_equal(prt_fiber_set_priority(a, 25), 0);
	assert_int_equal(pc_top(), 26);
	atomic_store(&pc_parked, 2);
	assert_int_equal(prt_unpark(o), 0);
	assert_int_equal(prt_join(a, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(b, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(o, NULL), 0);
	assert_int_equal(atomic_load(&pc_log[0]), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * The chain: a (1) waits on pc_m, held by o1 (2), which waits on ch_m2,
 * held by o2 (2); m (10) keeps the worker. Nobody in the chain runs
 * until a goes to 25: then o2 runs for a (proxy), lets go of ch_m2, o1
 * runs for a and lets go of pc_m, and a gets it. Nothing along the
 * chain caches a's priority, so moving a in its queue is all it takes
 * (this passed before the fix too: it guards that claim).
 */
static prt_mutex_t ch_m2 = PRT_MUTEX_INITIALIZER;
static atomic_int ch_held, ch_go, ch_a_done;

static void *ch_o2(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&ch_m2) == 0);
	atomic_store(&ch_held, 1);
	while (!atomic_load(&ch_go))
		prt_yield();
	for (int i = 0; i < 100; i++)
		prt_yield();
	FIBER_CHECK(prt_mutex_unlock(&ch_m2) == 0);
	return NULL;
}

static void *ch_o1(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&pc_m) == 0);
	atomic_store(&ch_held, 2);
	FIBER_CHECK(prt_mutex_lock(&ch_m2) == 0);
	FIBER_CHECK(prt_mutex_unlock(&ch_m2) == 0);
	FIBER_CHECK(prt_mutex_unlock(&pc_m) == 0);
	return NULL;
}

static void *ch_a(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&pc_m) == 0);
	atomic_store(&ch_a_done, 1);
	FIBER_CHECK(prt_mutex_unlock(&pc_m) == 0);
	return NULL;
}

static void *ch_busy(void *arg)
{
	(void)arg;
	while (!atomic_load(&ch_a_done))
		prt_yield();
	return NULL;
}

static void test_prio_change_chain(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_fiber_t o2, o1, a, m;
	void *res;

	(void)state;
	atomic_store(&ch_held, 0);
	atomic_store(&ch_go, 0);
	atomic_store(&ch_a_done, 0);
	o2 = test_spawn(rt, 2, -1, ch_o2, NULL);
	while (atomic_load(&ch_held) != 1)
		sched_yield();
	o1 = test_spawn(rt, 2, -1, ch_o1, NULL);
	wait_blocked(o1);
	a = test_spawn(rt, 2, -1, ch_a, NULL); /* at 1 it would not run to block */
	wait_blocked(a);
	assert_int_equal(prt_fiber_set_priority(a, 1), 0);
	m = test_spawn(rt, 10, -1, ch_busy, NULL);
	atomic_store(&ch_go, 1); /* o2 sees it only if something runs it */
	assert_int_equal(prt_fiber_set_priority(a, 25), 0);
	assert_int_equal(prt_join(a, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(m, NULL), 0);
	assert_int_equal(prt_join(o1, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(o2, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * Priority changes racing with every kind of wait: fibers lock, timedlock
 * (often timing out), wait and timedwait on a condvar, signal and
 * broadcast, while a plain thread and a fiber keep changing all their
 * priorities. Each round also waits (and gives up) on a mutex that its
 * owner frees right after: a re-sort must never touch a mutex or condvar
 * whose wait has returned (ASan sees it if it does). Checks the
 * counters and that everything ends.
 */
#define PS_FIBERS 12
#define PS_ROUNDS 1500
#define PS_MUTEXES 3
static prt_mutex_t ps_m[PS_MUTEXES], ps_cm = PRT_MUTEX_INITIALIZER;
static prt_cond_t ps_c = PRT_COND_INITIALIZER;
static long ps_count[PS_MUTEXES], ps_tokens;
static atomic_long ps_expect[PS_MUTEXES], ps_made, ps_taken;
static prt_fiber_t ps_f[PS_FIBERS];
static atomic_int ps_stop;

/* Hold the caller's stack mutex @arg a little while, asleep. */
static void *ps_holder(void *arg)
{
	prt_mutex_t *hm = arg;

	if (prt_mutex_lock(hm) != 0)
		return (void *)1;
	prt_sleep_ns(50000);
	prt_mutex_unlock(hm);
	return NULL;
}

static void *ps_body(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;

	for (int r = 0; r < PS_ROUNDS; r++) {
		int a = rand_r(&seed) % PS_MUTEXES, e;
		struct timespec soon = test_realtime_in(rand_r(&seed) % 200000);

		switch (rand_r(&seed) % 5) {
		case 0:
		case 1:
			e = (r & 1) ? prt_mutex_timedlock(&ps_m[a], &soon) : prt_mutex_lock(&ps_m[a]);
			FIBER_CHECK(e == 0 || e == ETIMEDOUT);
			if (e == 0) {
				ps_count[a]++;
				atomic_fetch_add(&ps_expect[a], 1);
				if (rand_r(&seed) % 4 == 0)
					prt_yield();
				FIBER_CHECK(prt_mutex_unlock(&ps_m[a]) == 0);
			}
			break;
		case 2: /* take a token, waiting a little for one */
			FIBER_CHECK(prt_mutex_lock(&ps_cm) == 0);
			while (!ps_tokens) {
				e = (r & 1) ? prt_cond_timedwait(&ps_c, &ps_cm, &soon)
					    : prt_cond_timedwait(&ps_c, &ps_cm, &soon);
				FIBER_CHECK(e == 0 || e == ETIMEDOUT);
				if (e)
					break;
			}
			if (ps_tokens) {
				ps_tokens--;
				atomic_fetch_add(&ps_taken, 1);
			}
			FIBER_CHECK(prt_mutex_unlock(&ps_cm) == 0);
			break;
		case 3: /* make one */
			FIBER_CHECK(prt_mutex_lock(&ps_cm) == 0);
			ps_tokens++;
			atomic_fetch_add(&ps_made, 1);
			FIBER_CHECK(((r & 1) ? prt_cond_broadcast(&ps_c) : prt_cond_signal(&ps_c)) == 0);
			FIBER_CHECK(prt_mutex_unlock(&ps_cm) == 0);
			break;
		case 4: { /* give up on a mutex that dies with our wait */
			prt_mutex_t hm = PRT_MUTEX_INITIALIZER;
			struct timespec brief = test_realtime_in(50000);
			prt_fiber_t h = test_spawn(prt_runtime_self(), PRT_PRIO_MAX, -1, ps_holder, &hm);

			prt_yield(); /* it outranks us: it takes hm now (or another worker runs it) */
			e = prt_mutex_timedlock(&hm, &brief);
			FIBER_CHECK(e == 0 || e == ETIMEDOUT);
			if (e == 0)
				FIBER_CHECK(prt_mutex_unlock(&hm) == 0);
			FIBER_CHECK(prt_join(h, NULL) == 0);
			FIBER_CHECK(prt_mutex_destroy(&hm) == 0);
			memset(&hm, 0xa5, sizeof(hm)); /* as good as freed */
			break;
		}
		}
	}
	return NULL;
}

/* Change every worker fiber's priority at random until told to stop. */
static void *ps_changer(void *arg)
{
	unsigned seed = (unsigned)(intptr_t)arg;

	while (!atomic_load(&ps_stop)) {
		for (int i = 0; i < PS_FIBERS; i++) {
			int e = prt_fiber_set_priority(ps_f[i], rand_r(&seed) % PRT_PRIO_LEVELS);

			FIBER_CHECK(e == 0 || e == -ESRCH);
		}
		if (prt_yield() != 0)
			sched_yield();
	}
	return NULL;
}

static void test_prio_change_stress(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t changer;
	pthread_t t;
	void *res;

	(void)state;
	for (int i = 0; i < PS_MUTEXES; i++) {
		prt_mutex_init(&ps_m[i], NULL);
		ps_count[i] = 0;
		atomic_store(&ps_expect[i], 0);
	}
	ps_tokens = 0;
	atomic_store(&ps_made, 0);
	atomic_store(&ps_taken, 0);
	atomic_store(&ps_stop, 0);
	/* Spawned by this thread, so ps_f is complete before anyone reads it. */
	for (int i = 0; i < PS_FIBERS; i++) {
		prt_fiber_attr_t a;

		prt_fiber_attr_init(&a);
		a.priority = i % PRT_PRIO_LEVELS;
		a.flags = 0;
		assert_int_equal(prt_spawn(rt, &ps_f[i], &a, ps_body, (void *)(intptr_t)(i + 1)), 0);
	}
	changer = test_spawn(rt, PRT_PRIO_DEFAULT, -1, ps_changer, (void *)7);
	assert_int_equal(pthread_create(&t, NULL, ps_changer, (void *)11), 0);
	for (int i = 0; i < PS_FIBERS; i++) {
		assert_int_equal(prt_join(ps_f[i], &res), 0);
		assert_null(res);
	}
	atomic_store(&ps_stop, 1);
	assert_int_equal(prt_join(changer, &res), 0);
	assert_null(res);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_null(res);
	for (int i = 0; i < PS_MUTEXES; i++) {
		assert_int_equal(ps_count[i], atomic_load(&ps_expect[i]));
		assert_int_equal(prt_mutex_destroy(&ps_m[i]), 0);
	}
	assert_int_equal(ps_tokens, atomic_load(&ps_made) - atomic_load(&ps_taken));
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A waiter list insert walks the priority levels, not the waiters
 * (plist.h). The records live on the waiters' stacks and the walk runs
 * under wait_lock: a walk past every waiter made each lock O(waiters),
 * and a crowd of thousands on one mutex collapsed tests/stress_mixed
 * until fibers starved (the watchdog's hang). Here the waiters that an
 * insert of a higher priority would pass are made unreadable
 * (PROT_NONE): a walk that reads them faults; the level walk reads only
 * the first record of each level and the new record's neighbours.
 */
#define PL_CROWD 64

static struct prt__mwaiter *pl_rec(char *pages, size_t page, int i, int prio)
{
	struct prt__mwaiter *r = (struct prt__mwaiter *)(void *)(pages + (size_t)i * page);

	r->pl.prio = prio;
	r->token = (uintptr_t)i + 1; /* insertion order, for the FIFO check */
	return r;
}

static void test_waiter_insert_walks_levels(void **state)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int n = PL_CROWD + 8;
	char *pages = mmap(NULL, (size_t)n * page, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct prt__list head;
	struct prt__mwaiter *r;
	int i = 0, want[] = { 9, 7, 5, 3, 1 };
	int k = 0, last_prio = 100;
	uintptr_t last_tok = 0;

	(void)state;
	assert_true(pages != MAP_FAILED);
	prt__list_init(&head);
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 9));
	for (int j = 0; j < PL_CROWD; j++) /* the crowd: one level */
		prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 5));
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 1));
	/* Hide the crowd but its first and last record (its level's head, and the tail an equal joins). */
	assert_int_equal(mprotect(pages + 2 * page, (size_t)(PL_CROWD - 2) * page, PROT_NONE), 0);
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 7)); /* a new level above the crowd */
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 9)); /* joins the top level */
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 5)); /* joins the crowd, at its tail */
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 3)); /* a new level below it */
	assert_int_equal(mprotect(pages, (size_t)n * page, PROT_READ | PROT_WRITE), 0);
	/* Remove the crowd's head and the top level's: their next records head the levels. */
	prt__mwaiter_del(&head, pl_rec(pages, page, 1, 5));
	prt__mwaiter_del(&head, pl_rec(pages, page, 0, 9));
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 7));
	prt__mwaiter_insert(&head, pl_rec(pages, page, i++, 5));
	/* Order: priority, then FIFO; every record there once. */
	for (struct prt__list *it = head.next; it != &head; it = it->next, k++) {
		r = prt__container_of(it, struct prt__mwaiter, pl.node);
		if (r->pl.prio != last_prio)
			last_tok = 0;
		assert_true(r->pl.prio <= last_prio);
		assert_true(r->token > last_tok);
		last_prio = r->pl.prio;
		last_tok = r->token;
	}
	assert_int_equal(k, i - 2);
	for (int j = 0; j < 5; j++) { /* levels present */
		bool found = false;

		for (struct prt__list *it = head.next; it != &head; it = it->next)
			found |= prt__container_of(it, struct prt__mwaiter, pl.node)->pl.prio == want[j];
		assert_true(found);
	}
	assert_int_equal(munmap(pages, (size_t)n * page), 0);
}

/*
 * The plist against a plain model: random inserts (a few levels, many
 * equals) and removals anywhere, the list checked after each against an
 * array kept sorted by priority, then insertion order.
 */
#define PL_MODEL 200

static void test_waiter_list_model(void **state)
{
	static struct prt__mwaiter recs[PL_MODEL];
	static bool in[PL_MODEL];
	struct prt__list head;
	unsigned seed = 12345;
	uintptr_t stamp = 0;

	(void)state;
	memset(in, 0, sizeof(in));
	prt__list_init(&head);
	for (int step = 0; step < 20000; step++) {
		int x = rand_r(&seed) % PL_MODEL, prev_prio = 1 << 30, count = 0, want = 0;
		uintptr_t prev_tok = 0;

		if (in[x]) {
			prt__mwaiter_del(&head, &recs[x]);
			in[x] = false;
		} else {
			recs[x].pl.prio = rand_r(&seed) % 6;
			recs[x].token = ++stamp;
			prt__mwaiter_insert(&head, &recs[x]);
			in[x] = true;
		}
		for (int j = 0; j < PL_MODEL; j++)
			want += in[j];
		for (struct prt__list *it = head.next; it != &head; it = it->next, count++) {
			struct prt__mwaiter *r = prt__container_of(it, struct prt__mwaiter, pl.node);

			assert_true(in[r - recs]);
			assert_true(r->pl.prio <= prev_prio);
			if (r->pl.prio != prev_prio)
				prev_tok = 0;
			assert_true(r->token > prev_tok);
			prev_prio = r->pl.prio;
			prev_tok = r->token;
		}
		assert_int_equal(count, want);
	}
}


/* ---- the deadlock walk: links read at different moments are no cycle ------ */

#if PRT_FAULT_INJECTION
/*
 * C holds X and locks M; A holds M and waits on M2; B holds M2. C's walk
 * reads M's owner A, A's wait M2, M2's owner B, and stops there (a pause
 * point): B unlocks M2 (A takes it: A waits on nothing now) and then
 * locks X (B waits on X, held by C). The walk goes on: B waits on X,
 * X's owner is C: the links it read never held at once, and there is
 * no cycle (a review: a false EDEADLK in a long stress run). C must
 * wait for M, and get it once A lets go.
 */
static prt_mutex_t wk_m, wk_m2, wk_x;
static struct prt__tself *wk_a, *wk_b, *wk_ct;
static pthread_t wk_c;
static atomic_int wk_calls, wk_b_go, wk_a_go, wk_done;

static struct prt__mutex *wk_waits(struct prt__tself *t)
{
	return t ? atomic_load(&t->blocked_on) : NULL;
}

static void *wk_a_fn(void *arg)
{
	(void)arg;
	assert_int_equal(prt_mutex_lock(&wk_m), 0);
	wk_a = prt__tls_tself;
	assert_int_equal(prt_mutex_lock(&wk_m2), 0); /* waits for B */
	/* Let go once C waits on M (or its lock returned, wrongly) */
	while (wk_waits(wk_ct) != (struct prt__mutex *)(void *)&wk_m && !atomic_load(&wk_a_go))
		usleep(1000);
	assert_int_equal(prt_mutex_unlock(&wk_m2), 0);
	assert_int_equal(prt_mutex_unlock(&wk_m), 0);
	return NULL;
}

static void *wk_b_fn(void *arg)
{
	(void)arg;
	assert_int_equal(prt_mutex_lock(&wk_m2), 0);
	wk_b = prt__tls_tself;
	while (!atomic_load(&wk_b_go))
		usleep(1000);
	assert_int_equal(prt_mutex_unlock(&wk_m2), 0); /* handed to A */
	assert_int_equal(prt_mutex_lock(&wk_x), 0);    /* waits for C */
	assert_int_equal(prt_mutex_unlock(&wk_x), 0);
	return NULL;
}

/* C's walk read an owner word: the second one it reads (M2's, naming B) is where B moves. */
static void wk_pause(void *arg)
{
	(void)arg;
	if (!pthread_equal(pthread_self(), wk_c) || atomic_load(&wk_done) ||
	    atomic_fetch_add(&wk_calls, 1) != 1)
		return;
	atomic_store(&wk_b_go, 1);
	/* A is handed M2, then B waits on X */
	while (wk_waits(wk_a) || wk_waits(wk_b) != (struct prt__mutex *)(void *)&wk_x)
		usleep(1000);
	atomic_store(&wk_done, 1);
}

static void test_deadlock_walk_needs_one_moment(void **state)
{
	pthread_t a, b;
	int r;

	(void)state;
	assert_int_equal(prt_mutex_init(&wk_m, NULL), 0);
	assert_int_equal(prt_mutex_init(&wk_m2, NULL), 0);
	assert_int_equal(prt_mutex_init(&wk_x, NULL), 0);
	wk_c = pthread_self();
	assert_int_equal(prt_mutex_lock(&wk_x), 0);
	wk_ct = prt__tls_tself;
	assert_int_equal(pthread_create(&b, NULL, wk_b_fn, NULL), 0);
	while (!wk_b)
		usleep(1000);
	assert_int_equal(pthread_create(&a, NULL, wk_a_fn, NULL), 0);
	while (wk_waits(wk_a) != (struct prt__mutex *)(void *)&wk_m2)
		usleep(1000);
	prt__fault_set_pause(PRT_PAUSE_CYCLE_LINK, wk_pause, NULL);
	/* M's owner A waits on M2, whose owner B (paused here) then waits on X */
	r = prt_mutex_lock(&wk_m);
	atomic_store(&wk_a_go, 1);
	prt__fault_set_pause(PRT_PAUSE_CYCLE_LINK, NULL, NULL);
	assert_int_equal(atomic_load(&wk_done), 1); /* the walk was stopped where B moved */
	if (r != 0)
		fprintf(stderr, "  lock of M: %d (no cycle ever held)\n", r);
	if (r == 0)
		assert_int_equal(prt_mutex_unlock(&wk_m), 0);
	assert_int_equal(prt_mutex_unlock(&wk_x), 0); /* B takes X */
	assert_int_equal(pthread_join(a, NULL), 0);
	assert_int_equal(pthread_join(b, NULL), 0);
	assert_int_equal(r, 0);
	assert_int_equal(prt_mutex_destroy(&wk_m), 0);
	assert_int_equal(prt_mutex_destroy(&wk_m2), 0);
	assert_int_equal(prt_mutex_destroy(&wk_x), 0);
}
#else
static void test_deadlock_walk_needs_one_moment(void **state)
{
	(void)state;
	skip(); /* needs the pause points of -Dfault_injection=true */
}
#endif

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_semantics),
		cmocka_unit_test(test_handoff_order_proxy),
		cmocka_unit_test(test_handoff_order_noproxy),
		cmocka_unit_test(test_inversion_proxy),
		cmocka_unit_test(test_inversion_noproxy),
		cmocka_unit_test(test_inversion_attr),
		cmocka_unit_test(test_chain_depth_10),
		cmocka_unit_test(test_remote_owner),
		cmocka_unit_test(test_sleeping_owner),
		cmocka_unit_test(test_released_handoff_wakes_newcomer),
		cmocka_unit_test(test_handoff_brings_back_attached_cond_waiter),
		cmocka_unit_test(test_deadlock_abba),
		cmocka_unit_test(test_deadlock_three),
		cmocka_unit_test(test_shared_between_runtimes),
		cmocka_unit_test(test_fibers_and_threads),
		cmocka_unit_test(test_stress),
		cmocka_unit_test(test_exit_holding_fiber),
		cmocka_unit_test(test_exit_holding_detached),
		cmocka_unit_test(test_exit_holding_thread),
		cmocka_unit_test(test_exit_released_reused),
		cmocka_unit_test(test_dead_owner_no_cycle),
		cmocka_unit_test(test_dead_owner_not_proxied),
		cmocka_unit_test(test_prio_change_waiter),
		cmocka_unit_test(test_prio_change_attached),
		cmocka_unit_test(test_prio_change_chain),
		cmocka_unit_test(test_prio_change_stress),
		cmocka_unit_test(test_waiter_insert_walks_levels),
		cmocka_unit_test(test_waiter_list_model),
		cmocka_unit_test(test_deadlock_walk_needs_one_moment),
	};

	if (argc > 1)
		cmocka_set_test_filter(argv[1]); /* a test's name, or a pattern with '*' */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
