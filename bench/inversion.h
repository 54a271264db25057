/* SPDX-License-Identifier: MIT */
/*
 * The priority-inversion scenario of workload W4 (bench/peers/README.md)
 * as proxyrt fibers on one worker. Shared by bench/proxyrt_bench.c
 * (`inversion`) and examples/inversion_demo.c.
 *
 * Every period P, from t0 = start + 100 ms, k = 0 .. samples + 4:
 *   L (prio 5)    at t0 + kP:          lock(m); busy(HOLD); unlock(m)
 *   M1..Mn (10)   at t0 + kP + MOFF:   busy(MBURST)
 *   H (prio 20)   at t0 + kP + HOFF:   t1 = now; lock(m); t2 = now; unlock(m)
 * With rwlock set, m is a prt_rwlock_t that L takes for reading and H
 * for writing (W4rw, `proxyrt_bench rwinversion`): the writer waits
 * behind a low-priority reader, and proxy execution runs the reader in
 * its place.
 * The busy work makes no runtime calls (as the peers' threads): with a
 * preemptive runtime (quantum_ns, README "Preemption") a fiber that wakes
 * interrupts the lower one running, and H's pick runs L in its place;
 * with a cooperative one (quantum_ns 0) nothing switches until the
 * running fiber's section or burst ends. yield_every_us > 0 makes the
 * busy work yield that often instead (how the cooperative runtime was
 * measured before preemption).
 */
#ifndef PRT_BENCH_INVERSION_H
#define PRT_BENCH_INVERSION_H

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <proxyrt/proxyrt.h>

#define INV_WARM 5
/* Most medium fibers: NMED beyond it is refused (the pthread peer's limit too). */
#define INV_MAX_MED 64

struct inv_params {
	int samples, period_us, hold_us, nmed, mburst_us, moff_us, hoff_us;
	int yield_every_us; /* 0: the busy work never yields */
	unsigned rt_flags;  /* PRT_RT_NO_PROXY for the conventional mutex */
	int rwlock;         /* 1: an rwlock, L reads and H writes; 0: a mutex */
	/*
	 * cfg.preempt_quantum_ns. PRT_PREEMPT_QUANTUM_NS, when set, replaces
	 * a non-zero value (as for any runtime); 0 is cooperative whatever
	 * the environment says.
	 */
	uint64_t quantum_ns;
	uint64_t timer_lead_ns; /* cfg.timer_lead_ns (PRT_TIMER_LEAD_NS replaces it) */
};

struct inv_result {
	int64_t *lock, *resp, *wake; /* ns, samples entries (warm-up dropped) */
	prt_worker_stats_t stats;
	double ns_per_iter;
	uint64_t quantum_ns; /* the runtime's time slice; 0: it was cooperative */
	uint64_t timer_lead_ns; /* the run's timer lead (inv_timer_lead()) */
	int preemptive;      /* prt_runtime_preemptive() of the run's runtime */
	int err;
};

/* The peers' busy work: a dependent LCG chain (bench/peers/src/common.h). */
static inline uint64_t bench_spin(uint64_t n, uint64_t x)
{
	for (uint64_t i = 0; i < n; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		__asm__ volatile("" : "+r"(x));
	}
	return x;
}

/* ns per bench_spin iteration: best of 5 runs of 2e6 iterations. */
static inline double bench_calibrate(void)
{
	double best = 1e30;
	uint64_t x = 1;

	for (int r = 0; r < 5; r++) {
		uint64_t t0 = prt_now_ns();
		double d;

		x = bench_spin(2000000, x);
		d = (double)(prt_now_ns() - t0) / 2e6;
		if (d < best)
			best = d;
	}
	return x == 42 ? best + 1e-9 : best;
}

/*
 * Iterations of bench_spin for @ns nanoseconds (at least 1; at most
 * UINT64_MAX: a double beyond it converts to anything).
 */
static inline uint64_t iters_for_ns(double ns, double ns_per_iter)
{
	double it = ns / ns_per_iter + 0.5;

	if (it >= 18446744073709551616.0) /* 2^64 */
		return UINT64_MAX;
	return it < 1 ? 1 : (uint64_t)it;
}

/*
 * NULL if @p can run, else why not. Its fields are ints, each in range
 * (the callers parse them so); what is computed from them must fit too:
 * the last sleep target, start + 100 ms + (samples + INV_WARM) periods
 * + the later offset, in ns on the monotonic clock.
 */
static inline const char *inv_params_check(const struct inv_params *p)
{
	uint64_t span, off = (uint64_t)(p->moff_us > p->hoff_us ? p->moff_us : p->hoff_us) * 1000u;

	if (p->samples < 1 || p->samples > INT_MAX - INV_WARM || p->period_us < 1 ||
	    p->hold_us < 0 || p->nmed < 0 || p->nmed > INV_MAX_MED || p->mburst_us < 0 ||
	    p->moff_us < 0 || p->hoff_us < 0 || p->yield_every_us < 0)
		return "a parameter is out of range";
	if (__builtin_mul_overflow((uint64_t)(p->samples + INV_WARM), (uint64_t)p->period_us * 1000u,
				   &span) ||
	    __builtin_add_overflow(span, off, &span) || span > INT64_MAX)
		return "(SAMPLES + 5) x PERIOD_US + the later offset overflows the clock";
	return NULL;
}

/*
 * The timer lead a runtime created with cfg.timer_lead_ns @cfg_lead has:
 * the library has no getter, so this reads PRT_TIMER_LEAD_NS as
 * lib/platform.c's prt__env_u64() does (a plain decimal number that fits
 * replaces it; anything else, a sign or a space included, is ignored).
 * The library also turns it off under valgrind and with more workers
 * than CPUs, neither of which the inversion runs (one worker) are here.
 */
static inline uint64_t inv_timer_lead(uint64_t cfg_lead)
{
	const char *e = getenv("PRT_TIMER_LEAD_NS");
	uint64_t v = 0;

	if (!e || !*e)
		return cfg_lead;
	for (; *e; e++) {
		unsigned d = (unsigned)(*e - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return cfg_lead;
		v = v * 10 + d;
	}
	return v;
}

struct inv_ctx {
	const struct inv_params *p;
	struct inv_result *r;
	prt_mutex_t m;
	prt_rwlock_t rw;
	uint64_t t0, period, hold_it, burst_it, chunk_it;
	int total;
};

/* @iters of busy work; with chunk_it, a yield (a scheduling point) after every chunk. */
static inline uint64_t inv_busy(struct inv_ctx *c, uint64_t iters, uint64_t x)
{
	if (!c->chunk_it)
		return bench_spin(iters, x);
	while (iters) {
		uint64_t n = iters < c->chunk_it ? iters : c->chunk_it;

		x = bench_spin(n, x);
		iters -= n;
		prt_yield();
	}
	return x;
}

/* L's lock: the mutex, or the rwlock for reading. */
static inline void inv_lock_low(struct inv_ctx *c)
{
	if (c->p->rwlock)
		prt_rwlock_rdlock(&c->rw);
	else
		prt_mutex_lock(&c->m);
}

/* H's lock: the mutex, or the rwlock for writing. */
static inline void inv_lock_high(struct inv_ctx *c)
{
	if (c->p->rwlock)
		prt_rwlock_wrlock(&c->rw);
	else
		prt_mutex_lock(&c->m);
}

static inline void inv_unlock(struct inv_ctx *c)
{
	if (c->p->rwlock)
		prt_rwlock_unlock(&c->rw);
	else
		prt_mutex_unlock(&c->m);
}

static inline void *inv_low(void *arg)
{
	struct inv_ctx *c = arg;
	uint64_t x = 7;

	for (int k = 0; k < c->total; k++) {
		prt_sleep_until(c->t0 + (uint64_t)k * c->period);
		inv_lock_low(c);
		x = inv_busy(c, c->hold_it, x);
		inv_unlock(c);
	}
	return (void *)(uintptr_t)(x & 1);
}

static inline void *inv_med(void *arg)
{
	struct inv_ctx *c = arg;
	uint64_t x = 11;

	for (int k = 0; k < c->total; k++) {
		prt_sleep_until(c->t0 + (uint64_t)k * c->period + (uint64_t)c->p->moff_us * 1000u);
		x = inv_busy(c, c->burst_it, x);
	}
	return (void *)(uintptr_t)(x & 1);
}

static inline void *inv_high(void *arg)
{
	struct inv_ctx *c = arg;

	for (int k = 0; k < c->total; k++) {
		uint64_t tgt = c->t0 + (uint64_t)k * c->period + (uint64_t)c->p->hoff_us * 1000u;
		uint64_t t1, t2;

		prt_sleep_until(tgt);
		t1 = prt_now_ns();
		inv_lock_high(c);
		t2 = prt_now_ns();
		inv_unlock(c);
		if (k >= INV_WARM) {
			c->r->wake[k - INV_WARM] = (int64_t)(t1 - tgt);
			c->r->lock[k - INV_WARM] = (int64_t)(t2 - t1);
			c->r->resp[k - INV_WARM] = (int64_t)(t2 - tgt);
		}
	}
	return NULL;
}

static inline prt_fiber_t inv_spawn(prt_runtime_t *rt, int prio, void *(*fn)(void *), void *arg,
				    int *err)
{
	prt_fiber_attr_t a;
	prt_fiber_t f = { 0, 0 };
	int e;

	prt_fiber_attr_init(&a);
	a.priority = prio;
	if ((e = prt_spawn(rt, &f, &a, fn, arg)) && !*err)
		*err = e;
	return f;
}

/*
 * prt_runtime_create(), but a cooperative @cfg stays cooperative: the
 * environment's PRT_PREEMPT_QUANTUM_NS is set aside meanwhile (the
 * caller has no other threads then).
 */
static inline int inv_rt_create(prt_runtime_t **rt, const prt_runtime_config_t *cfg)
{
	const char *e = cfg->preempt_quantum_ns ? NULL : getenv("PRT_PREEMPT_QUANTUM_NS");
	char *saved = e ? strdup(e) : NULL;
	int err;

	if (e && !saved)
		return -12; /* -ENOMEM */
	if (saved)
		unsetenv("PRT_PREEMPT_QUANTUM_NS");
	err = prt_runtime_create(rt, cfg);
	if (saved) {
		setenv("PRT_PREEMPT_QUANTUM_NS", saved, 1);
		free(saved);
	}
	return err;
}

/* Run the scenario; 0 or a negative proxyrt error. Caller frees the arrays. */
static inline int inv_run(const struct inv_params *p, struct inv_result *r)
{
	struct inv_ctx c = { .p = p, .r = r, .m = PRT_MUTEX_INITIALIZER,
			     .rw = PRT_RWLOCK_INITIALIZER };
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;
	prt_fiber_t l, h, m[INV_MAX_MED];
	int err = 0, nmed = p->nmed;

	if (inv_params_check(p))
		return -22; /* -EINVAL: never a silently smaller run */
	r->lock = calloc((size_t)p->samples, sizeof(int64_t));
	r->resp = calloc((size_t)p->samples, sizeof(int64_t));
	r->wake = calloc((size_t)p->samples, sizeof(int64_t));
	if (!r->lock || !r->resp || !r->wake)
		return -12; /* -ENOMEM */
	r->ns_per_iter = bench_calibrate();
	c.total = p->samples + INV_WARM;
	c.period = (uint64_t)p->period_us * 1000u;
	c.hold_it = (uint64_t)((double)p->hold_us * 1e3 / r->ns_per_iter + 0.5);
	c.burst_it = (uint64_t)((double)p->mburst_us * 1e3 / r->ns_per_iter + 0.5);
	c.chunk_it = 0;
	if (p->yield_every_us > 0) {
		c.chunk_it = (uint64_t)((double)p->yield_every_us * 1e3 / r->ns_per_iter + 0.5);
		if (!c.chunk_it)
			c.chunk_it = 1;
	}
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1; /* the process is on one CPU: everything on one worker */
	cfg.flags = p->rt_flags;
	cfg.preempt_quantum_ns = p->quantum_ns;
	cfg.timer_lead_ns = p->timer_lead_ns;
	if ((err = inv_rt_create(&rt, &cfg)))
		return err;
	r->preemptive = prt_runtime_preemptive(rt, &r->quantum_ns) == 1;
	r->timer_lead_ns = inv_timer_lead(cfg.timer_lead_ns);
	c.t0 = prt_now_ns() + 100000000u;
	l = inv_spawn(rt, 5, inv_low, &c, &err);
	for (int i = 0; i < nmed; i++)
		m[i] = inv_spawn(rt, 10, inv_med, &c, &err);
	h = inv_spawn(rt, 20, inv_high, &c, &err);
	if (h.p)
		prt_join(h, NULL);
	for (int i = 0; i < nmed; i++)
		if (m[i].p)
			prt_join(m[i], NULL);
	if (l.p)
		prt_join(l, NULL);
	prt_worker_stats(rt, 0, &r->stats);
	prt_runtime_destroy(rt);
	return err;
}

static int inv_cmp(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of @n values (sorted in place), in microseconds. */
static inline double inv_pct(int64_t *v, int n, int pct)
{
	/* in 64 bits: 100 x n overflows an int from n = 21474837 */
	long long rank = ((long long)pct * n + 99) / 100;

	qsort(v, (size_t)n, sizeof(*v), inv_cmp);
	if (rank < 1)
		rank = 1;
	return (double)v[rank - 1] / 1e3;
}

/*
 * Did two preemptive runs of @p show the inversion (examples/inversion_demo)?
 * The plain mutex's lock wait (@plain_lock, p50) above proxy execution's
 * (@proxy_lock) by at least half the medium fibers' work. On a machine
 * busy with other work the worker thread waits for its CPU, the periods
 * slip, and H may not even find the mutex held (both p50s 0, seen with
 * two test processes on both CPUs): the figures then show the machine,
 * not the runtime. Sorts both arrays (inv_pct).
 */
static inline int inv_effect_shown(const struct inv_params *p, int64_t *proxy_lock,
				   int64_t *plain_lock, int n)
{
	double gap_us = inv_pct(plain_lock, n, 50) - inv_pct(proxy_lock, n, 50);

	return gap_us >= (double)p->nmed * p->mburst_us / 2;
}

#endif
