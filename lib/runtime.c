/* SPDX-License-Identifier: MIT */
/*
 * Runtime life cycle: configuration, worker start-up and shutdown, and
 * the introspection calls.
 */
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if PRT_USE_VALGRIND
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0 /* built without valgrind's header (-Dvalgrind=false) */
#endif
#include "alloc.h"
#include "dump_signal.h"
#include "fork.h"
#include "fault.h"
#include "fiber_desc.h"
#include "idle.h"
#include "offload.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "worker.h"

PRT_API void prt_runtime_config_init(prt_runtime_config_t *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->stack_kind = PRT_STACK_GUARD;
	cfg->preempt_quantum_ns = PRT_PREEMPT_QUANTUM_DEFAULT;
	cfg->steal_grace_ns = PRT_STEAL_GRACE_DEFAULT;
	cfg->wait_spin_ns = PRT_WAIT_SPIN_DEFAULT;
	cfg->stack_decay_ns = PRT_STACK_DECAY_DEFAULT;
}

/* cfg.steal_grace_ns, or PRT_STEAL_GRACE_NS from the environment if set and a number. */
static uint64_t steal_grace(uint64_t g)
{
	prt__env_u64("PRT_STEAL_GRACE_NS", &g);
	return g;
}

/*
 * cfg.timer_lead_ns, or PRT_TIMER_LEAD_NS from the environment if set
 * and a number; 0 under valgrind, which runs one thread at a time (a
 * spinning worker would hold it), and with more workers than CPUs
 * (@oversubscribed: a spinning worker takes the CPU from one with work;
 * a review measured a busy fiber at half speed, and timers ms late).
 */
static uint64_t timer_lead(uint64_t l, bool oversubscribed)
{
	prt__env_u64("PRT_TIMER_LEAD_NS", &l);
	return RUNNING_ON_VALGRIND || oversubscribed ? 0 : l;
}

/*
 * cfg.wait_spin_ns, or PRT_WAIT_SPIN_NS from the environment if set and
 * a number; 0 under valgrind (one thread runs at a time: a spinner
 * would hold the one that would end its wait), with one worker (no
 * other worker brings an event while we spin) and with more workers
 * than CPUs (@shared: a spinner takes the CPU of a worker with work).
 */
static uint64_t wait_spin(uint64_t s, bool shared)
{
	prt__env_u64("PRT_WAIT_SPIN_NS", &s);
	return RUNNING_ON_VALGRIND || shared ? 0 : s;
}

/* Does @cfg, as its caller was compiled, have @field? (Fields are only added at the end.) */
#define CFG_HAS(cfg, field)                                                                        \
	((cfg)->size >= offsetof(prt_runtime_config_t, field) + sizeof((cfg)->field))
#define CFG_GET(cfg, field) (CFG_HAS(cfg, field) ? (cfg)->field : 0)

/* cfg.preempt_signal 0 (runtime.h). */
#define PRT_PREEMPT_SIGNAL_DEFAULT (SIGRTMAX - 3)

/*
 * Signals no runtime may take: out of range, uncatchable, synchronous
 * faults, and the ones between the kernel's first real-time signal (32)
 * and SIGRTMIN, which the C library keeps for itself (glibc: thread
 * cancellation and setxid; its sigaction refuses them, but the preemption
 * handler is installed with the raw system call, which would not).
 */
static bool bad_signal(int sig)
{
	return sig < 1 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV ||
	       sig == SIGBUS || sig == SIGILL || sig == SIGFPE || (sig >= 32 && sig < SIGRTMIN);
}

/* A refused configuration: -EINVAL, with *@why naming the setting. */
static int refused(const char **why, const char *what)
{
	*why = what;
	return -EINVAL;
}

static int preempt_check(const prt_runtime_config_t *cfg, const char **why)
{
	uint64_t q = CFG_GET(cfg, preempt_quantum_ns);
	int sig = CFG_GET(cfg, preempt_signal);

	/* The environment's quantum replaces the configured one, which is then not looked at. */
	q = prt__preempt_quantum_env(q);
	if (q && q < PRT_PREEMPT_QUANTUM_MIN)
		return refused(why, "preempt_quantum_ns below PRT_PREEMPT_QUANTUM_MIN");
	if (sig && bad_signal(sig))
		return refused(why, "preempt_signal is one the runtime cannot take");
	/* A cooperative runtime takes no signal for preemption: any dump signal will do. */
	if (q && (sig ? sig : PRT_PREEMPT_SIGNAL_DEFAULT) == cfg->dump_signal)
		return refused(why, "dump_signal is the preemption signal");
	return 0;
}

/* 0 or -EINVAL, with *@why naming the setting (said on stderr with PRT_RT_VERBOSE). */
static int config_check(const prt_runtime_config_t *cfg, const char **why)
{
	/* A caller compiled before the preemption fields gets them as 0. */
	if (cfg->size < offsetof(prt_runtime_config_t, preempt_quantum_ns) ||
	    cfg->size > sizeof(prt_runtime_config_t))
		return refused(why, "size is not one this library knows (prt_runtime_config_init sets it)");
	if (cfg->flags & ~(unsigned)(PRT_RT_NO_PIN | PRT_RT_PER_PU | PRT_RT_VERBOSE | PRT_RT_NO_PROXY |
				   PRT_RT_NO_IOWQ_AFF | PRT_RT_NO_CPU_LIMIT))
		return refused(why, "flags has bits that are no PRT_RT_* flag");
	if (cfg->nworkers < 0 || cfg->nworkers > PRT_MAX_WORKERS)
		return refused(why, "nworkers is negative or above PRT_MAX_WORKERS");
	if (cfg->stack_size && cfg->stack_size < PRT_STACK_SIZE_MIN)
		return refused(why, "stack_size below PRT_STACK_SIZE_MIN");
	if (cfg->stack_kind != PRT_STACK_GUARD && cfg->stack_kind != PRT_STACK_CANARY)
		return refused(why, "stack_kind is no enum prt_stack_kind");
	if (cfg->topology_synthetic && cfg->topology_xml)
		return refused(why, "topology_synthetic and topology_xml are both set");
	if (cfg->dump_signal && bad_signal(cfg->dump_signal))
		return refused(why, "dump_signal is one the runtime cannot take");
	if (cfg->io_backend < PRT_IO_AUTO || cfg->io_backend > PRT_IO_EPOLL)
		return refused(why, "io_backend is no enum prt_io_backend");
	if (cfg->io_entries > 32768)
		return refused(why, "io_entries above io_uring's 32768");
	return preempt_check(cfg, why);
}

static struct prt__worker *worker_new(struct prt_runtime *rt, int index)
{
	struct prt__worker *w = prt__alloc_aligned(sizeof(*w), 64);

	if (!w)
		return NULL;
	memset(w, 0, sizeof(*w));
	w->rt = rt;
	w->index = index;
	w->poll_seed = 0x9e3779b9u * (uint32_t)(index + 1) | 1; /* never 0, one per worker */
	w->io.evfd = -1;
#if PRT_USE_VALGRIND
	w->os_yield = RUNNING_ON_VALGRIND;
#endif
	prt__worker_sched_init(w);
	if (prt__stack_pool_init(&w->stacks, rt->stack_pool_max)) {
		prt__free(w, sizeof(*w));
		return NULL;
	}
	return w;
}

/* Free everything; workers must be stopped (or never started). */
static void runtime_free(struct prt_runtime *rt)
{
	/*
	 * Offload helpers first (idle by now: an offloading fiber waits for
	 * its job, and the helper that woke it held a reference until it was
	 * done with the runtime; see "Outside callers").
	 */
	prt__offload_fini(rt);
	prt__fiber_chunks_release(rt);
	for (int i = 0; rt->workers && i < rt->nworkers; i++) {
		struct prt__worker *w = rt->workers[i];

		if (!w)
			continue;
		prt__io_fini(w);
		prt__stack_pool_fini(rt, &w->stacks);
		prt__timers_fini(&w->timers);
		prt__timers_fini(&w->iotimers);
		prt__free(w, sizeof(*w));
	}
	prt__free(rt->workers, sizeof(*rt->workers) * (size_t)rt->nworkers);
	prt__stack_depot_fini(rt);
	prt__stack_slabs_free(rt);
	prt__topo_fini(&rt->topo);
	prt__preempt_rt_fini(rt);
	if (rt->overflow_handler)
		prt__overflow_handler_put();
	prt__free(rt, sizeof(*rt));
}

static void stop_workers(struct prt_runtime *rt, int started)
{
	/*
	 * seq_cst: the store half of a store-then-load against a worker
	 * going to sleep, which stores its sleeping (seq_cst) and then
	 * loads stopping (sched.c, work_pending()); we then look at
	 * sleeping (wake_worker()). The loop below wakes them again anyway.
	 */
	atomic_store_explicit(&rt->stopping, true, memory_order_seq_cst);
	prt__wake_all_workers(rt);
	for (int i = 0; i < started; i++) {
		/* A worker that was between its last check and its sleep is woken here. */
		while (pthread_tryjoin_np(rt->workers[i]->thread, NULL) != 0) {
			prt__wake_all_workers(rt);
			usleep(100);
		}
	}
}

/*
 * A preemptive runtime's workers make their timers on their own threads
 * (they aim at them): wait until each has tried, and fail as the first
 * failure did.
 */
static int workers_started(struct prt_runtime *rt)
{
	/* acquire: pairs with each worker's release increment after its start (idle.c) */
	while (atomic_load_explicit(&rt->started, memory_order_acquire) < rt->nworkers)
		sched_yield();
	for (int i = 0; i < rt->nworkers; i++)
		if (rt->workers[i]->pw.start_err)
			return rt->workers[i]->pw.start_err;
	return 0;
}

static int runtime_create(prt_runtime_t **out, const prt_runtime_config_t *cfg);

/* hwloc's probing of /sys and the rest leave errno as they like: not the caller's. */
PRT_API int prt_runtime_create(prt_runtime_t **out, const prt_runtime_config_t *cfg)
{
	int saved = prt__errno_get(), err;

	/* fork.c: before a runtime first takes any of these process-wide locks */
	prt__fork_hook_add(&prt__rt_ref_fork_hook);
	prt__fork_hook_add(&prt__preempt_fork_hook);
	prt__fork_hook_add(&prt__dump_signal_fork_hook);
	prt__fork_hook_add(&prt__signal_fork_hook);
	prt__fork_hook_add(&prt__fiber_desc_fork_hook);
	prt__fork_hook_add(&prt__sig_role_fork_hook);
	prt__fork_hook_add(&prt__worker_fork_hook);
	prt__fork_hook_add(&prt__io_fork_hook);
	err = runtime_create(out, cfg);
	prt__errno_set(saved);
	return err;
}

static int runtime_create(prt_runtime_t **out, const prt_runtime_config_t *cfg)
{
	prt_runtime_config_t defaults;
	struct prt_runtime *rt;
	const char *why = NULL;
	long page = sysconf(_SC_PAGESIZE);
	int err, i;

	if (!out)
		return -EINVAL;
	if (!cfg) {
		prt_runtime_config_init(&defaults);
		cfg = &defaults;
	}
	if ((err = config_check(cfg, &why))) {
		if (cfg->flags & PRT_RT_VERBOSE)
			fprintf(stderr, "proxyrt: prt_runtime_create: %s: %s\n", prt_strerror(err), why);
		return err;
	}
	rt = prt__alloc_aligned(sizeof(*rt), 64);
	if (!rt)
		return -ENOMEM;
	memset(rt, 0, sizeof(*rt));
	rt->dump_slot = -1;
	rt->flags = cfg->flags;
	rt->stack_kind = cfg->stack_kind;
	rt->stack_size = cfg->stack_size ? cfg->stack_size : PRT_STACK_SIZE_DEFAULT;
	rt->stack_size = prt__page_round_sat(rt->stack_size, (size_t)page);
	rt->stack_pool_max = cfg->stack_pool_max ? cfg->stack_pool_max : PRT_STACK_POOL_DEFAULT;
	rt->stack_decay = CFG_HAS(cfg, stack_decay_ns) ? cfg->stack_decay_ns : PRT_STACK_DECAY_DEFAULT;
	atomic_init(&rt->stack_trim_at, PRT_NO_DEADLINE);
	rt->depot_trim_at = rt->odd_trim_at = PRT_NO_DEADLINE;
	prt__spin_init(&rt->desc_lock);
	prt__spin_init(&rt->slab_lock);
	prt__spin_init(&rt->depot_lock);
	if ((err = prt__topo_init(&rt->topo, cfg))) {
		if (err == -EINVAL && (cfg->flags & PRT_RT_VERBOSE))
			fprintf(stderr, "proxyrt: prt_runtime_create: %s: cpus, topology_synthetic or "
					"topology_xml refused (a list or topology hwloc does not take, "
					"or no allowed CPU in it)\n", prt_strerror(err));
		prt__free(rt, sizeof(*rt));
		return err;
	}
	if ((err = prt__io_rt_init(rt, cfg))) {
		prt__topo_fini(&rt->topo);
		prt__free(rt, sizeof(*rt));
		return err;
	}
	snprintf(rt->notice, sizeof(rt->notice), "%s%s%s", rt->topo.notice,
		 rt->topo.notice[0] && rt->io.notice[0] ? "; " : "", rt->io.notice);
	rt->nworkers = rt->topo.nworkers;
	/* More workers than CPUs to run them: idle workers must not all spin (sched.c). */
	rt->oversubscribed = rt->nworkers > rt->topo.ncpus;
	rt->steal_grace = steal_grace(CFG_HAS(cfg, steal_grace_ns) ? cfg->steal_grace_ns
								   : PRT_STEAL_GRACE_DEFAULT);
	rt->timer_lead = timer_lead(CFG_GET(cfg, timer_lead_ns), rt->oversubscribed);
	rt->wait_spin = wait_spin(CFG_HAS(cfg, wait_spin_ns) ? cfg->wait_spin_ns
							     : PRT_WAIT_SPIN_DEFAULT,
				  rt->nworkers < 2 || rt->oversubscribed);
	rt->workers = prt__zalloc(sizeof(*rt->workers) * (size_t)rt->nworkers);
	err = rt->workers ? prt__stack_depot_init(rt) : -ENOMEM;
	for (i = 0; !err && i < rt->nworkers; i++)
		if (!(rt->workers[i] = worker_new(rt, i)))
			err = -ENOMEM;
	for (i = 0; !err && i < rt->nworkers; i++)
		err = prt__io_init(rt->workers[i]);
	if (!err && !(err = prt__overflow_handler_get()))
		rt->overflow_handler = true;
	if (!err)
		err = prt__preempt_rt_init(rt, CFG_GET(cfg, preempt_quantum_ns),
					   CFG_GET(cfg, preempt_signal) ?
						   CFG_GET(cfg, preempt_signal) : PRT_PREEMPT_SIGNAL_DEFAULT,
					   rt->notice, sizeof(rt->notice));
	for (i = 0; !err && i < rt->nworkers; i++) {
		struct prt__worker *w = rt->workers[i];

		err = -prt__fault(PRT_FAULT_THREAD);
		if (!err)
			err = -pthread_create(&w->thread, NULL, prt__worker_main, w);
		if (err)
			break;
	}
	if (!err && rt->preempt_quantum)
		err = workers_started(rt);
	if (!err)
		err = prt__dump_signal_init(rt, cfg->dump_signal);
	if (err) {
		/* Only if one started: before that, workers[] may be NULL or hold NULLs. */
		if (i > 0)
			stop_workers(rt, i);
		runtime_free(rt);
		return err;
	}
	prt__rt_live_add(rt);
	*out = rt;
	return 0;
}

/* Every fiber ever spawned has exited? (exits read first: see below) */
static bool all_exited(struct prt_runtime *rt)
{
	uint64_t exited = 0, spawned;

	/*
	 * Sum the exits first, then the spawns: a fiber is counted as
	 * spawned before it can run, so exits can never exceed the spawns
	 * read after them, and equality means nothing is alive.
	 */
	for (int i = 0; i < rt->nworkers; i++)
		exited += atomic_load_explicit(&rt->workers[i]->nexited, memory_order_acquire);
	spawned = atomic_load_explicit(&rt->ext_spawned, memory_order_acquire);
	for (int i = 0; i < rt->nworkers; i++)
		spawned += atomic_load_explicit(&rt->workers[i]->nspawned, memory_order_acquire);
	return exited == spawned;
}

static void wait_all_exited(struct prt_runtime *rt)
{
	for (;;) {
		/*
		 * acquire: the counts below are read after it (futex wait
		 * protocol: sample, check, sleep if unchanged); pairs with the
		 * bump of an ending fiber, which follows its count's release.
		 */
		unsigned seq = atomic_load_explicit(&rt->destroy_seq, memory_order_acquire);

		if (all_exited(rt))
			return;
		/* Exiting fibers bump destroy_seq; the timeout is a safety net. */
		prt__futex_wait_ns(&rt->destroy_seq, seq, 10 * 1000 * 1000);
	}
}

/* No new outside references from here; wait for those held to go. */

PRT_API int prt_runtime_destroy(prt_runtime_t *rt)
{
	struct prt__worker *w = prt__cur_worker();

	if (!rt)
		return -EINVAL;
	if (w && w->rt == rt)
		return -EDEADLK;
	if (!prt__rt_live_claim(rt))
		return -EINVAL; /* destroyed already (or being destroyed), or never created */
	/* Outside spawns from here fail (-ESHUTDOWN); those counted before have run when this returns. */
	wait_all_exited(rt);
	prt__dump_signal_fini(rt);
	/* Outside callers still in (a joiner, a waker, a dump) finish; later ones fail. */
	prt__rt_drain_refs(rt);
	prt__rt_live_del(rt);
	stop_workers(rt, rt->nworkers);
	runtime_free(rt);
	return 0;
}

PRT_API int prt_run_ex(const prt_runtime_config_t *cfg, void *(*main_fn)(void *), void *arg,
		       void **result, void (*on_exit)(prt_runtime_t *rt, void *exit_arg),
		       void *exit_arg)
{
	prt_runtime_t *rt;
	prt_fiber_attr_t a;
	prt_fiber_t f;
	int err;

	if (!main_fn)
		return -EINVAL;
	if ((err = prt_runtime_create(&rt, cfg)))
		return err;
	prt_fiber_attr_init(&a);
	a.name = "main"; /* in dumps */
	err = prt_spawn(rt, &f, &a, main_fn, arg);
	if (!err)
		err = prt_join(f, result);
	if (on_exit) {
		/* The fibers main left end first, so that what on_exit reads is final. */
		wait_all_exited(rt);
		on_exit(rt, exit_arg);
	}
	prt_runtime_destroy(rt);
	return err;
}

PRT_API int prt_run(const prt_runtime_config_t *cfg, void *(*main_fn)(void *), void *arg,
		    void **result)
{
	return prt_run_ex(cfg, main_fn, arg, result, NULL, NULL);
}

PRT_API int prt_runtime_nworkers(const prt_runtime_t *rt)
{
	bool ref;
	int n;

	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	n = rt->nworkers;
	if (ref)
		prt__rt_put(rt);
	return n;
}

PRT_API const char *prt_runtime_notice(const prt_runtime_t *rt)
{
	const char *n;
	bool ref;

	if (!prt__rt_enter(rt, &ref))
		return NULL;
	n = rt->notice[0] ? rt->notice : NULL; /* lives as long as @rt */
	if (ref)
		prt__rt_put(rt);
	return n;
}

static int worker_info(const prt_runtime_t *rt, int index, prt_worker_info_t *out)
{
	const struct prt__topo_worker *tw;

	if (!out || index < 0 || index >= rt->nworkers)
		return -EINVAL;
	tw = &rt->topo.w[index];
	out->pu_os_index = tw->pu_os_index;
	out->core_index = tw->core_index;
	out->numa_index = tw->numa_index;
	out->package_index = tw->package_index;
	out->pinned = rt->topo.pin;
	return 0;
}

PRT_API int prt_runtime_worker_info(const prt_runtime_t *rt, int index, prt_worker_info_t *out)
{
	bool ref;
	int err;

	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	err = worker_info(rt, index, out);
	if (ref)
		prt__rt_put(rt);
	return err;
}

static int steal_order(const prt_runtime_t *rt, int index, int *order, int max)
{
	int n;

	if (index < 0 || index >= rt->nworkers || max < 0 || (max && !order))
		return -EINVAL;
	n = rt->nworkers - 1;
	for (int i = 0; i < n && i < max; i++)
		order[i] = rt->topo.w[index].steal_order[i];
	return n;
}

PRT_API int prt_runtime_steal_order(const prt_runtime_t *rt, int index, int *order, int max)
{
	bool ref;
	int n;

	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	n = steal_order(rt, index, order, max);
	if (ref)
		prt__rt_put(rt);
	return n;
}

/* The counters of prt_worker_stats_t, each a field of struct prt__wstats too. */
#define WSTATS(X)                                                                                  \
	X(switches) X(steals) X(parks) X(fibers_run) X(proxy_picks) X(migrations)                \
	X(attachments) X(handoffs) X(io_submits) X(io_ops) X(preemptions) X(preempt_deferred)     \
	X(time_slices) X(slice_extensions) X(bias_revocations)

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a + b < a ? UINT64_MAX : a + b;
}

/*
 * A counter since the last reset. The base first: acquire, pairing with
 * the release store in stats_reset(), so the counter read after it is
 * at least the value that reset saw (never below the base).
 */
#define STAT_READ(f)                                                                               \
	do {                                                                                       \
		uint64_t base = atomic_load_explicit(&w->stats_base.f, memory_order_acquire);      \
		out->f = sat_sub(atomic_load_explicit(&w->stats.f, memory_order_relaxed), base);   \
	} while (0);

static void stats_read(const struct prt__worker *w, prt_worker_stats_t *out)
{
	WSTATS(STAT_READ)
}

/*
 * Make the counters' current values the new base; add the counts since
 * the previous base to *@sum. The worker goes on counting meanwhile: an
 * event counted after the load below falls after the reset, none is
 * lost or counted twice (with one resetter at a time).
 */
#define STAT_RESET(f)                                                                              \
	do {                                                                                       \
		uint64_t now = atomic_load_explicit(&w->stats.f, memory_order_relaxed);            \
		uint64_t base = atomic_load_explicit(&w->stats_base.f, memory_order_relaxed);      \
		sum->f = sat_add(sum->f, sat_sub(now, base));                                      \
		/* release: pairs with the acquire in STAT_READ */                                 \
		atomic_store_explicit(&w->stats_base.f, now, memory_order_release);                \
	} while (0);

static void stats_reset(struct prt__worker *w, prt_worker_stats_t *sum)
{
	WSTATS(STAT_RESET)
}

static int worker_stats(const prt_runtime_t *rt, int index, prt_worker_stats_t *out)
{
	if (!out || index < 0 || index >= rt->nworkers)
		return -EINVAL;
	stats_read(rt->workers[index], out);
	return 0;
}

PRT_API int prt_worker_stats(const prt_runtime_t *rt, int index, prt_worker_stats_t *out)
{
	bool ref;
	int err;

	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	err = worker_stats(rt, index, out);
	if (ref)
		prt__rt_put(rt);
	return err;
}

static int worker_stats_reset(prt_runtime_t *rt, int index, prt_worker_stats_t *before)
{
	prt_worker_stats_t sum = { 0 };

	if (index < -1 || index >= rt->nworkers)
		return -EINVAL;
	for (int i = index < 0 ? 0 : index; i < (index < 0 ? rt->nworkers : index + 1); i++)
		stats_reset(rt->workers[i], &sum);
	if (before)
		*before = sum;
	return 0;
}

PRT_API int prt_worker_stats_reset(prt_runtime_t *rt, int index, prt_worker_stats_t *before)
{
	bool ref;
	int err;

	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	err = worker_stats_reset(rt, index, before);
	if (ref)
		prt__rt_put(rt);
	return err;
}

PRT_API int prt_worker_index(void)
{
	struct prt__worker *w = prt__cur_worker();

	return w ? w->index : -EPERM;
}

PRT_API prt_runtime_t *prt_runtime_self(void)
{
	struct prt__worker *w = prt__cur_worker();

	return w ? w->rt : NULL;
}
