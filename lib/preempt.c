/* SPDX-License-Identifier: MIT */
/*
 * Preemption: time slices among fibers of one priority, and a fiber
 * that becomes runnable on a worker running something it outranks
 * getting that worker now, even when what runs never calls the runtime
 * (docs/design.md, "Preemption"; issue 13).
 *
 * Design note (process-wide state). Signal dispositions and the code
 * loaded into the process are the process's, so three things here are
 * global: the handler of each preemption signal (installed by the first
 * runtime that uses it, put back by the last, as the dump signal is),
 * the arch's extended-state size, and the table of code ranges where a
 * fiber may be stopped.
 *
 * How a fiber is stopped. Every worker thread has three POSIX timers
 * aimed at it (SIGEV_THREAD_ID; see "the timers" below): a periodic
 * tick while fibers of one priority share it, a one-shot watch for the
 * earliest timer of its heaps, and a retry the worker's own handler arms
 * after it refused to stop a fiber. Other threads interrupt a worker
 * with pthread_sigqueue. The handler (preempt_sig.c: installed with the
 * system call itself and compiled without ThreadSanitizer, which says
 * why) decides only whether the fiber may be
 * stopped where it is; if so it makes it call preempt_fn() on its own
 * stack (arch/ctx.h), which takes the rq lock and decides as a
 * scheduling point would. Go does the same (doSigPreempt, asyncPreempt).
 *
 * Where a fiber is never stopped: the idle context; a fiber inside
 * prt_preempt_disable(); any code outside the table of allowed ranges:
 * the library's own code (one range, prt__text_start..prt__text_end:
 * lib/proxyrt_text.ld; the whole object when it is the shared library),
 * libc, the dynamic loader, the vDSO, jemalloc, libgcc, libstdc++,
 * liburing, hwloc and the sanitizer runtimes, and code in no loaded
 * object (JIT); a stack too short for the interrupt frame and the
 * preemption path; a handler not running on its alternate stack. The
 * interrupt is then deferred: its PRT_PEV_PENDING bit is set and @retry fires in
 * PRT_PREEMPT_RETRY_NS (a tick in the library's code: the next tick),
 * unless the fiber reaches a scheduling point or prt_preempt_enable()
 * first; a retry deferred again waits twice as long, up to
 * PRT_PREEMPT_RETRY_MAX_NS, until one of those honours it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if PRT_USE_VALGRIND
#include <valgrind/valgrind.h>
#endif

#include "arch/ctx.h"
#include "fault.h"
#include "fork.h"
#include "preempt_int.h"
#include "proxy_int.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "sched_priv.h"
#include "worker.h"

/* The library's code, one section (lib/proxyrt_text.ld). */
extern const char prt__text_start[] __attribute__((visibility("hidden")));
extern const char prt__text_end[] __attribute__((visibility("hidden")));

static pthread_mutex_t preempt_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned sig_users[NSIG];          /* preempt_lock */
static bool arch_ready;                   /* preempt_lock */

/* ---- where a fiber may be stopped ----------------------------------------- */

/* Loaded objects when the table was made (dl_iterate_phdr's counters); preempt_lock. */
static unsigned long long ranges_adds, ranges_subs;
static atomic_bool ranges_made;

/*
 * Objects never interrupted, by file name: they keep per-thread state or
 * take locks that another fiber of the same worker thread would then
 * find taken (libc's malloc, stdio, the loader's lock, jemalloc's
 * thread cache, the unwinder's caches, liburing's rings, the sanitizers'
 * allocators).
 */
static const char *const denied_objs[] = {
	"libc.so",	 "libc-",	   "ld-linux",	     "ld64.so",	       "libpthread.so",
	"libdl.so",	 "librt.so",	   "linux-vdso.so",  "linux-gate.so",  "libjemalloc.so",
	"libgcc_s.so",	 "libstdc++.so",   "liburing.so",    "libhwloc.so",    "libasan.so",
	"libtsan.so",	 "libubsan.so",	   "liblsan.so",     "libhwasan.so",   "libclang_rt.",
	"libunwind.so",	 "libvalgrind",
};

struct range {
	uintptr_t lo, hi;
};

/* What the application denied (prt_preempt_deny_range/_object); preempt_lock. */
static struct range user_ranges[PRT_PREEMPT_DENY_MAX];
static unsigned n_user_ranges;
static char user_objs[PRT_PREEMPT_DENY_MAX][64];
static unsigned n_user_objs;

static bool denied_name(const char *path)
{
	const char *b = strrchr(path, '/');

	b = b ? b + 1 : path;
	for (size_t i = 0; i < sizeof(denied_objs) / sizeof(denied_objs[0]); i++)
		if (!strncmp(b, denied_objs[i], strlen(denied_objs[i])))
			return true;
	for (unsigned i = 0; i < n_user_objs; i++)
		if (!strncmp(b, user_objs[i], strlen(user_objs[i])))
			return true;
	return false;
}

struct scan {
	struct range r[PRT_RANGES_MAX];
	unsigned n, nobj;
	unsigned long long adds, subs;
};

static bool holds_self(const struct dl_phdr_info *info)
{
	uintptr_t me = (uintptr_t)prt__text_start;

	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && me >= lo && me - lo < ph->p_memsz)
			return true;
	}
	return false;
}

/*
 * Allow [lo, hi) less the denied ranges from @from on: the library's own
 * code when it is linked into the program (its one section), then the
 * application's.
 */
static void scan_add(struct scan *sc, uintptr_t lo, uintptr_t hi, unsigned from)
{
	for (unsigned i = from; lo < hi && i <= n_user_ranges; i++) {
		uintptr_t dlo = i ? user_ranges[i - 1].lo : (uintptr_t)prt__text_start;
		uintptr_t dhi = i ? user_ranges[i - 1].hi : (uintptr_t)prt__text_end;

		if (dlo < hi && dhi > lo) {
			scan_add(sc, lo, dlo, i + 1); /* the part below it */
			lo = dhi;                     /* and the part above goes on */
		}
	}
	if (lo < hi && sc->n < PRT_RANGES_MAX) /* past that: left out, so denied */
		sc->r[sc->n++] = (struct range){ lo, hi };
}

static int scan_obj(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct scan *sc = arg;
	bool main_prog = sc->nobj++ == 0; /* glibc reports the program first */

	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
		sc->adds = info->dlpi_adds;
		sc->subs = info->dlpi_subs;
	}
	/* The shared library itself: all of it, its PLT included. */
	if ((!main_prog && denied_name(info->dlpi_name)) || (!main_prog && holds_self(info)))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X))
			scan_add(sc, lo, hi, 0);
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Make the table again; preempt_lock held. */
static void ranges_make(void)
{
	struct scan *sc = calloc(1, sizeof(*sc));
	unsigned s;

	if (!sc)
		return; /* the old table stays */
	dl_iterate_phdr(scan_obj, sc);
	qsort(sc->r, sc->n, sizeof(sc->r[0]), cmp_range);
	s = atomic_load_explicit(&prt__ranges.seq, memory_order_relaxed);
	atomic_store_explicit(&prt__ranges.seq, s + 1, memory_order_relaxed);
	/*
	 * release, each: a reader that loads (acquire) a value stored here
	 * also sees the odd seq stored before it, and so discards its look
	 * (a seqlock without fences, which TSan builds could not compile).
	 */
	for (unsigned i = 0; i < sc->n; i++) {
		atomic_store_explicit(&prt__ranges.r[i].lo, sc->r[i].lo, memory_order_release);
		atomic_store_explicit(&prt__ranges.r[i].hi, sc->r[i].hi, memory_order_release);
	}
	atomic_store_explicit(&prt__ranges.n, sc->n, memory_order_release);
	/* release: pairs with the acquire load of seq in range_allowed() */
	atomic_store_explicit(&prt__ranges.seq, s + 2, memory_order_release);
	ranges_adds = sc->adds;
	ranges_subs = sc->subs;
	atomic_store_explicit(&ranges_made, true, memory_order_relaxed);
	free(sc);
}

static int count_objs(struct dl_phdr_info *info, size_t size, void *arg)
{
	unsigned long long *c = arg;

	if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs))
		return 1;
	c[0] = info->dlpi_adds;
	c[1] = info->dlpi_subs;
	return 1; /* the counters are global: the first object tells */
}

/* Was a library loaded or unloaded since the table was made? Then make it again. */
static void ranges_check(void)
{
	unsigned long long c[2] = { 0, 0 };

	dl_iterate_phdr(count_objs, c);
	pthread_mutex_lock(&preempt_lock);
	if (c[0] != ranges_adds || c[1] != ranges_subs)
		ranges_make();
	pthread_mutex_unlock(&preempt_lock);
}

PRT_API int prt_preempt_deny_range(const void *start, const void *end)
{
	int err = 0;

	if (!start || (uintptr_t)start >= (uintptr_t)end)
		return -EINVAL;
	pthread_mutex_lock(&preempt_lock);
	if (n_user_ranges == PRT_PREEMPT_DENY_MAX) {
		err = -ENOSPC;
	} else {
		user_ranges[n_user_ranges++] = (struct range){ (uintptr_t)start, (uintptr_t)end };
		if (atomic_load_explicit(&ranges_made, memory_order_relaxed))
			ranges_make(); /* else the first preemptive runtime makes it */
	}
	pthread_mutex_unlock(&preempt_lock);
	return err;
}

PRT_API int prt_preempt_deny_object(const char *name)
{
	int err = 0;
	size_t len;

	if (!name || !(len = strlen(name)) || len >= sizeof(user_objs[0]))
		return -EINVAL;
	pthread_mutex_lock(&preempt_lock);
	if (n_user_objs == PRT_PREEMPT_DENY_MAX) {
		err = -ENOSPC;
	} else {
		memcpy(user_objs[n_user_objs++], name, len + 1);
		if (atomic_load_explicit(&ranges_made, memory_order_relaxed))
			ranges_make();
	}
	pthread_mutex_unlock(&preempt_lock);
	return err;
}

/* ---- the timers ------------------------------------------------------------- */

/*
 * Each worker has three timers, all aimed at its thread:
 *
 * @tick    periodic, every quantum, while fibers of the served priority
 *          wait (the kernel's scheduler tick, made tickless: started when
 *          that contention is seen, stopped by the first tick that finds
 *          it over, by a pick that serves a priority above it, or when
 *          the worker goes idle). A fiber is preempted at
 *          a tick that finds no switch since the previous one: it ran a
 *          whole period, so its slice was between one and two quanta. No
 *          timer is re-armed per slice. Armed under rq.lock (@ticking).
 * @watch   one-shot, at the earliest deadline of the worker's timer
 *          heaps while it runs a fiber: a sleeper due behind a fiber that
 *          never calls the runtime (the timer watch). Armed under rq.lock
 *          (@watch_at); its handler sets PRT_PEV_WATCH_FIRED.
 * @retry   one-shot, armed by the worker thread itself when an interrupt
 *          could not stop the fiber (defer()).
 */

/*
 * Start @tick; rq lock held. @snap: the switch count the first tick
 * compares with. @first: ns to the first tick (0: a quantum).
 */
/*
 * Set @ticking, and PRT_PSLOW_TICK unless it is a CPU-time tick (the one
 * case where the pick hook's inline half has nothing to do for it); rq
 * lock held.
 */
static void tick_set(struct prt__worker *w, uint8_t mode)
{
	w->pw.ticking = mode;
	w->pick_slow = (uint8_t)((w->pick_slow & ~PRT_PSLOW_TICK) |
				 (mode != PRT_TICK_CPU ? PRT_PSLOW_TICK : 0));
}

static void tick_start(struct prt__worker *w, uint64_t snap, uint64_t first)
{
	struct prt__wpreempt *p = &w->pw;

	tick_set(w, p->tick_cpu ? PRT_TICK_CPU : PRT_TICK_MONO);
	p->tick_left = 0;
	atomic_store_explicit(&p->tick_snap, snap, memory_order_relaxed); /* this thread's */
	prt__preempt_settime(p->tick, 0, first ? first : p->quantum, p->quantum);
}

static void tick_stop(struct prt__worker *w)
{
	tick_set(w, 0);
	w->pw.tick_left = 0;
	prt__preempt_settime(w->pw.tick, 0, 0, 0);
}

/*
 * tick_stop() for a fiber above the contention: keep what is left of the
 * preempted fiber's period; nothing (1 ns) if @due, a tick deferred in
 * its slice that this pick took for honoured: it ran its period, and is
 * stopped as soon as it runs again.
 */
static void tick_pause(struct prt__worker *w, bool due)
{
	uint64_t left = prt__preempt_settime(w->pw.tick, 0, 0, 0);

	tick_set(w, 0);
	w->pw.tick_left = due || !left ? 1 : left;
}

/*
 * Keep @watch armed for the earliest deadline of w's heaps (a sleeper
 * due while a fiber runs here; plus the watch's slack, 0 unless its
 * interrupts keep finding a fiber that calls the runtime anyway: struct
 * prt__wpreempt), disarmed when they are empty; rq lock held. A timer that goes before it fires (a timed wait that
 * ended, a sleep cancelled) moves it later or disarms it: a stale watch
 * would interrupt the fiber for nothing, and a timer signal costs tens
 * of us in a VM against a fraction of one for the settime (design.md,
 * section 16). PRT_PEV_WATCH_FIRED says it fired (it fires once per
 * arming, and only holders of this lock arm it); a signal of an arming
 * replaced meanwhile only makes the next look arm it again.
 */
/* The fiber whose timer is due first of w's heaps (not empty), and that deadline; rq lock held. */
static struct prt__fiber *watch_first(struct prt__worker *w, uint64_t *d)
{
	struct prt__timers *h = &w->timers;

	/* (By count: a saturated deadline is PRT_NO_DEADLINE, as an empty heap's first.) */
	if (!h->n || (w->iotimers.n && w->iotimers.heap[0].deadline < h->heap[0].deadline))
		h = &w->iotimers;
	*d = h->heap[0].deadline;
	/* Every heap entry is a fiber's own timer (sched.c, timer_push). */
	return prt__container_of(h->heap[0].t, struct prt__fiber, timer);
}

/* Set @watch_at (PRT_NEVER: not armed) and its PRT_PSLOW_WATCH bit; rq lock held. */
static void watch_set(struct prt__worker *w, uint64_t at)
{
	w->pw.watch_at = at;
	w->pick_slow = (uint8_t)((w->pick_slow & ~PRT_PSLOW_WATCH) |
				 (at != PRT_NEVER ? PRT_PSLOW_WATCH : 0));
}

/* Set @exc_fiber (NULL: none) and its PRT_PSLOW_EXC bit; rq lock held. */
static void exc_set(struct prt__worker *w, struct prt__fiber *f)
{
	w->pw.exc_fiber = f;
	w->pick_slow = (uint8_t)((w->pick_slow & ~PRT_PSLOW_EXC) | (f ? PRT_PSLOW_EXC : 0));
}

/*
 * How long before @d the watch fires for @f, which sleeps (rq lock
 * held): the measured lateness of the watch's signals (watch_late), at
 * most cfg.timer_lead_ns, when f outranks what the worker serves and no
 * slack is in force; else 0. A timer signal to a busy vCPU comes 40-60
 * us late in this VM, where the kernel's own hrtimer preempting a task
 * comes within 15-30 (W4's pthread peer): the watch fires about that
 * much early, and the look spins until the deadline (watch_spin), so
 * the sleeper runs within a few us of it, as a parked worker's lead
 * spin does (idle.c, lead_spin).
 */
static uint64_t watch_lead(struct prt__worker *w, struct prt__fiber *f, uint64_t slack)
{
	uint64_t lead = w->rt->timer_lead;

	/* serve_prio: in a pick, set for what it chose (w->donor is still the one before) */
	if (!lead || slack || atomic_load_explicit(&f->prio, memory_order_relaxed) <= w->rq.serve_prio)
		return 0;
	return w->pw.watch_late < lead ? w->pw.watch_late : lead;
}

static void watch_arm(struct prt__worker *w)
{
	struct prt__wpreempt *p = &w->pw;
	uint64_t d = PRT_NEVER, slack, lead = 0, early;
	struct prt__fiber *f = NULL;

	/* relaxed: set by the handler on the worker's thread, consumed under the rq lock */
	if (prt__unlikely(atomic_load_explicit(&p->events, memory_order_relaxed) & PRT_PEV_WATCH_FIRED)) {
		atomic_fetch_and_explicit(&p->events, ~PRT_PEV_WATCH_FIRED, memory_order_relaxed);
		watch_set(w, PRT_NEVER);
	}
	if (prt__has_timers(w))
		f = watch_first(w, &d);
	if (prt__likely(d == p->watch_at))
		return;
	if (d == PRT_NEVER) {
		watch_set(w, PRT_NEVER);
		prt__preempt_settime(p->watch, TIMER_ABSTIME, 0, 0); /* 0 disarms */
		return;
	}
	/* relaxed: written by this thread's handler */
	slack = atomic_load_explicit(&p->watch_slack, memory_order_relaxed);
	/*
	 * Armed already within the slack after @d (not before it: that
	 * would interrupt for nothing): keep it. A fiber that calls the
	 * runtime moves its earliest deadline at nearly every sleep, and a
	 * settime per move is a system call each (~1.3 us on this VM).
	 */
	/* Or, with a lead, within the lead before it (a new lead is not worth a system call). */
	lead = watch_lead(w, f, slack);
	/*
	 * Not in the past: that signal would come at once, inside the
	 * switch this pick is about to make, and be deferred (a retry, and a
	 * slack that turns the lead off: a review saw 2170 such armings in
	 * 3 s with 8 sleepers, and the sleepers later than with no lead).
	 * Due within the lead already: armed at the deadline.
	 */
	early = lead < d ? d - lead : 0;
	if (lead && early <= prt__now_ns())
		lead = 0;
	if (p->watch_at != PRT_NEVER && prt__add_sat(p->watch_at, lead) >= d &&
	    p->watch_at <= prt__add_sat(d, slack))
		return;
	d = lead ? early : prt__add_sat(d, slack);
	watch_set(w, d);
	p->watch_early = lead != 0;
	prt__preempt_settime(p->watch, TIMER_ABSTIME, d ? d : 1, 0); /* a deadline of 0 (long past) is 1 */
}

/* A watch signal that stopped the fiber came @now, for @fire: learn how late (watch_late). */
static void watch_learn(struct prt__worker *w, uint64_t fire, uint64_t now)
{
	uint64_t late = now > fire ? now - fire : 0, est = w->pw.watch_late;

	if (fire == PRT_NEVER || !w->rt->timer_lead)
		return;
	if (late > PRT_PREEMPT_WATCH_SLACK_MAX_NS)
		late = PRT_PREEMPT_WATCH_SLACK_MAX_NS;
	w->pw.watch_late = late >= est ? late : est - (est - late) / 8;
}

/*
 * The watch fired early (watch_lead) for @f, due at @d, which outranks
 * what the worker serves: spin until then with the rq lock dropped (an
 * idle worker may fire it meanwhile, or another fiber come that outranks
 * what runs here), then run the timers. The fiber stopped waits, as for
 * any preemption. rq lock held on entry and on return.
 */
static void watch_spin(struct prt__worker *w, uint64_t d)
{
	int served = prt__served_prio(w);

	prt__rq_unlock(w);
	prt__fault_pause(PRT_PAUSE_WATCH_SPIN);
	/* relaxed: a hint; the look under the lock decides */
	while (prt__now_ns() < d && !(PRT_READ_ONCE(w->rq.bitmap) &&
				      prt__rq_top(PRT_READ_ONCE(w->rq.bitmap)) > served))
		prt__cpu_relax();
	prt__rq_lock(w);
	if (prt__has_timers(w))
		prt__run_timers(w);
}

/* ---- the scheduler's hooks ---------------------------------------------------- */

/* This thread's signal mask now, signals 1-64 (struct prt__wpreempt, base_mask). */
static uint64_t mask_now(void)
{
	sigset_t now;
	uint64_t m;

	pthread_sigmask(SIG_BLOCK, NULL, &now);
	memcpy(&m, &now, sizeof(m));
	return m;
}

/* The worker thread's mask at a scheduling point, as the base. */
static void mask_read(struct prt__wpreempt *p)
{
	p->base_mask = mask_now();
}

void prt__preempt_picked_slow(struct prt__worker *w, struct prt__fiber *next,
			      struct prt__fiber *donor)
{
	struct prt__wpreempt *p = &w->pw;
	uint32_t bm = w->rq.bitmap, honoured = 0;
	uint64_t snap;
	bool raised;
	int prio;

	/*
	 * Going idle: no fiber keeps calling the runtime here now, so a
	 * deferred watch interrupt before this is no longer "in a row" with
	 * the next (preempt.h, watch_slack). relaxed: this thread's; its
	 * handler writes it too, and is no thread of its own.
	 */
	if (!next)
		atomic_store_explicit(&p->watch_deferred, 0, memory_order_relaxed);
	/*
	 * relaxed: this pick honours a kick or a deferral made before it; one
	 * made after it is honoured by a later pick or preempt_eval. (Read
	 * first: the stores are rarely needed.)
	 */
	if (prt__unlikely(atomic_load_explicit(&p->events, memory_order_relaxed) &
			  (PRT_PEV_KICKED | PRT_PEV_PENDING_ALL)) &&
	    (honoured = atomic_fetch_and_explicit(&p->events, ~(PRT_PEV_KICKED | PRT_PEV_PENDING_ALL),
						  memory_order_relaxed) & PRT_PEV_PENDING_ALL)) {
		/* honoured: a retry deferred from now on waits the shortest again */
		atomic_store_explicit(&p->retry_streak, 0, memory_order_relaxed);
		prt__preempt_retry_honoured(w);
	}
	/*
	 * A kick of this worker recorded under this lock hold (a sleeper
	 * that run_timers() woke in preempt_eval() or in this pick) is
	 * honoured too: only this thread picks, so it was recorded by this
	 * thread, for what this pick chose among. Left set, rq_unlock would
	 * kick this worker after the pick (prt__preempt_kick: a retry in
	 * 50 us, interrupting whatever runs then for nothing).
	 */
	w->deferred &= ~(unsigned)PRT_DEFER_KICK;
	/* relaxed: this thread's handler sets it; a scheduling point runs no signal handler */
	if (prt__unlikely(atomic_load_explicit(&p->mask_stale, memory_order_relaxed))) {
		atomic_store_explicit(&p->mask_stale, false, memory_order_relaxed);
		mask_read(p);
	}
	/* relaxed: as mask_stale (preempt_sig.c, altstack_as_base) */
	if (prt__unlikely(atomic_load_explicit(&p->events, memory_order_relaxed) & PRT_PEV_ALTSTACK)) {
		atomic_fetch_and_explicit(&p->events, ~PRT_PEV_ALTSTACK, memory_order_relaxed);
		sigaltstack(&w->altstack, NULL);
	}
	/* PRT_WRITE_ONCE: this thread's handler reads it (interrupt) */
	if (!next) {
		PRT_WRITE_ONCE(w->rq.serve_prio, -1);
		/*
		 * An idle worker takes no ticks: a monotonic tick stops now. A
		 * CPU-time one is left running: a parked worker uses no CPU
		 * time, so it does not fire, and the handler ignores it while
		 * the worker looks for work (serve_prio < 0); if the worker
		 * then runs a fiber with nothing to share its slice, that tick
		 * stops it (preempt_eval). A worker that goes idle and back
		 * thousands of times a second saves two system calls each time.
		 */
		if (p->ticking && !p->tick_cpu)
			tick_stop(w);
		/*
		 * The watch stays armed while the worker looks for work (its
		 * handler ignores it then): the next pick, often microseconds
		 * away, keeps it if its deadline still holds. A worker that
		 * parks disarms it (prt__preempt_idle): it sleeps until its
		 * next timer itself.
		 */
		return;
	}
	prio = atomic_load_explicit(&donor->prio, memory_order_relaxed);
	raised = prio > w->rq.serve_prio;
	PRT_WRITE_ONCE(w->rq.serve_prio, prio);
	/* The coming switch counts one more (none if @next runs already). */
	snap = atomic_load_explicit(&w->stats.switches, memory_order_relaxed) + (next != w->curr);
	if (p->exc_fiber && prio <= p->exc_prio) {
		/*
		 * Back down from a fiber above the contention: to the fiber it
		 * preempted, whose slice goes on (the switches since do not
		 * count: unless a tick saw them), or to another one, whose slice
		 * begins.
		 */
		if (next == p->exc_fiber && p->ticking &&
		    atomic_load_explicit(&p->tick_snap, memory_order_relaxed) == p->exc_snap)
			atomic_store_explicit(&p->tick_snap, snap, memory_order_relaxed);
		if (next == p->exc_fiber && !p->ticking && p->tick_left && bm &&
		    prt__rq_top(bm) >= prio)
			tick_start(w, snap, p->tick_left);
		exc_set(w, NULL);
	}
	if (!p->ticking && ((bm && prt__rq_top(bm) >= prio) || w->io.inflight))
		tick_start(w, snap, 0);
	else if (p->ticking && !p->tick_cpu && raised && (!bm || prt__rq_top(bm) < prio) &&
		 !w->io.inflight)
		/*
		 * A fiber above the contention the tick served runs now (a
		 * wakeup preemption, a proxy for a higher waiter): nothing can
		 * share its slice, and a tick would only interrupt it (a timer
		 * signal, tens of us in a VM); the pick back down starts it again,
		 * for the rest of the preempted fiber's period (tick_pause). A
		 * CPU-time tick costs next to nothing: its next tick stops it
		 * (preempt_eval) if the contention is still gone.
		 */
		tick_pause(w, honoured & PRT_PEV_PENDING(PRT_PSRC_TICK));
	watch_arm(w);
}

bool prt__preempt_queued_slow(struct prt__worker *t, struct prt__fiber *f)
{
	struct prt__wpreempt *p = &t->pw;

	if (t->rq.serve_prio < 0)
		return false; /* idle: its pick finds @f */
	if (f->rq_prio > t->rq.serve_prio)
		/* relaxed: cleared under this rq lock by t's next pick */
		return !(atomic_fetch_or_explicit(&p->events, PRT_PEV_KICKED, memory_order_relaxed) &
			 PRT_PEV_KICKED);
	/* relaxed: t's own counter; a stale value delays the first slice by a tick */
	if (f->rq_prio == t->rq.serve_prio && !p->ticking)
		tick_start(t, atomic_load_explicit(&t->stats.switches, memory_order_relaxed), 0);
	return false;
}

void prt__preempt_kick(struct prt__worker *t)
{
	union sigval v = { .sival_ptr = (char *)t + PRT_PSRC_KICK };

	if (t == prt__cur_worker()) {
		/* Queued by the fiber it runs, in the runtime's code: once it is out of it. */
		atomic_fetch_or_explicit(&t->pw.events, PRT_PEV_PENDING(PRT_PSRC_KICK),
					 memory_order_relaxed);
		prt__preempt_arm_retry(t, PRT_PREEMPT_RETRY_NS);
		return;
	}
	if (pthread_sigqueue(t->thread, t->pw.sig, v))
		/* relaxed: the signal queue is full; let the next wakeup try again */
		atomic_fetch_and_explicit(&t->pw.events, ~PRT_PEV_KICKED, memory_order_relaxed);
}

/*
 * Must @x, which may serve @f or run for a donor whose chain passes
 * through @f (x's rq lock held), run something else now? Updates what
 * its handler sees.
 */
static bool served_must_switch(struct prt__worker *x, struct prt__fiber *f, bool wait_ended)
{
	int prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	uint32_t bm = x->rq.bitmap;
	/*
	 * relaxed: w->donor and w->curr change at a switch (switch.h), which
	 * need not hold this lock. A look that misses the change costs a
	 * spurious kick, or none where the pick that made x serve @f read
	 * its priority and its wait afresh anyway.
	 */
	struct prt__fiber *d = PRT_READ_ONCE(x->donor), *c;

	if (x->rq.serve_prio < 0)
		return false;
	if (d != f) {
		/*
		 * x runs a proxy for another donor, whose chain may pass
		 * through @f: a wait that ended there breaks it (a review's
		 * chain H -> B -> A: B's timedlock expired, and A ran on at H's
		 * priority to the end of its critical section).
		 */
		c = PRT_READ_ONCE(x->curr);
		return wait_ended && d != c && !prt__proxy_serves(d, c);
	}
	PRT_WRITE_ONCE(x->rq.serve_prio, prio); /* interrupt() reads it */
	return wait_ended || (bm && prt__rq_top(bm) > prio);
}

void prt__preempt_served_changed(struct prt__fiber *f, struct prt__worker *held, bool wait_ended)
{
	struct prt_runtime *rt = f->rt;

	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *x = rt->workers[i];
		struct prt__fiber *d;
		bool kick;

		if (!x->pw.quantum || (x == held && x == prt__cur_worker()))
			continue; /* @held, its own thread: the caller's own look (a pick, preempt_eval) decides */
		/* As served_must_switch would find (racy: as its own look, above). */
		d = PRT_READ_ONCE(x->donor);
		if (d != f && (!wait_ended || d == PRT_READ_ONCE(x->curr)))
			continue; /* serves neither @f nor a donor whose chain may pass through it */
		if (x == held) {
			/*
			 * Held by another thread: a canceller, or an idle worker
			 * that fired x's timers. x's own look is not coming: look
			 * here, under that hold (a review's cancelled chain link
			 * left x running the owner for the top waiter).
			 */
			kick = served_must_switch(x, f, wait_ended) &&
			       !(atomic_fetch_or_explicit(&x->pw.events, PRT_PEV_KICKED,
							  memory_order_relaxed) & PRT_PEV_KICKED);
		} else if (held && !prt__rq_trylock(x)) {
			/* Never wait for a second rq lock: a kick costs x one look (preempt_eval). */
			kick = !(atomic_fetch_or_explicit(&x->pw.events, PRT_PEV_KICKED,
							  memory_order_relaxed) & PRT_PEV_KICKED);
		} else {
			if (!held)
				prt__rq_lock(x);
			/* relaxed: cleared under this rq lock by x's next pick or look */
			kick = served_must_switch(x, f, wait_ended) &&
			       !(atomic_fetch_or_explicit(&x->pw.events, PRT_PEV_KICKED,
							  memory_order_relaxed) & PRT_PEV_KICKED);
			prt__rq_unlock(x);
		}
		if (kick)
			prt__preempt_kick(x);
	}
}

void prt__preempt_idle(struct prt__worker *w)
{
	struct prt__wpreempt *p = &w->pw;

	if (!p->quantum)
		return;
	ranges_check();
	/*
	 * Completions, commands and epoll's readiness are found only where
	 * this worker looks (a scheduling point): look now, as prt_yield
	 * would, so that a fiber whose I/O ended competes at this point too
	 * (the tick runs while requests are in flight here for that reason).
	 */
	if (w->io.inflight || prt__io_waiting(&w->io))
		prt__io_service(w, true);
	prt__rq_lock(w);
	if (p->watch_at != PRT_NEVER) {
		/* no watch signals for a sleeping worker: it wakes for its next timer itself */
		watch_set(w, PRT_NEVER);
		prt__preempt_settime(p->watch, TIMER_ABSTIME, 0, 0);
	}
	prt__rq_release(w);
}

/* ---- the preemption itself ------------------------------------------------------ */

/*
 * Time-slice extension. A slice that ends while the fiber holds a fiber
 * mutex or rwlock (nheld) does not stop it there: stopped inside its
 * critical section, it would make every fiber that comes for the lock
 * meanwhile queue behind it, and a lock that two running fibers took
 * in turn at the fast path becomes a convoy of handoffs to queued
 * waiters for many slices after (W3, docs/design.md, section 16). The
 * slice is marked owed instead (PRT_HELD_SLICE_OWED in nheld) and the
 * unlock that releases the fiber's last lock ends it
 * (prt__preempt_slice_owed); if the fiber still holds one at the next
 * tick, one quantum later, that tick stops it anyway. Linux grants user
 * code a time-slice extension for the same reason (rseq's slice
 * extension, 6.19), bounded the same way by a timer. Only time slices
 * wait: a fiber that outranks the lock holder preempts it at once, and
 * proxy execution lends it the waiter's priority.
 *
 * nheld is written only by the fiber itself: these run on its stack
 * (preempt_eval, on the fiber's way out of an interrupt, never inside
 * the library's own code, where prt__held_add runs).
 */
static bool slice_extend(struct prt__fiber *self)
{
	if (!PRT_HELD_COUNT(atomic_load_explicit(&self->nheld, memory_order_relaxed)))
		return false; /* nothing held */
	/* (Set already if the handler marked a deferral: the same request.) */
	prt__held_mark_owed(&self->nheld);
	return true;
}

/* Does @self hold a fiber mutex or rwlock? */
static bool slice_held(struct prt__fiber *self)
{
	return PRT_HELD_COUNT(atomic_load_explicit(&self->nheld, memory_order_relaxed)) != 0;
}

static void slice_owed_clear(struct prt__fiber *self)
{
	unsigned n = atomic_load_explicit(&self->nheld, memory_order_relaxed);

	if (n & PRT_HELD_SLICE_OWED)
		atomic_store_explicit(&self->nheld, n & ~PRT_HELD_SLICE_OWED, memory_order_relaxed);
}

/*
 * Switch the preempted fiber out: at the head of its level, or at the
 * tail when its slice ended. @interrupted: stopped by an interrupt,
 * anywhere in its code; it is then marked preempted and resumes on this
 * worker (stealing skips it, docs/design.md, section 16: compiled code
 * may hold a thread-local address in a register). Else it is inside a
 * runtime call (prt_preempt_enable, an unlock that ends an extended
 * slice), a voluntary scheduling point like prt_yield: it may move.
 */
static void preempt_switch(struct prt__worker *w, struct prt__fiber *self, bool slice,
			   bool interrupted)
{
	slice_owed_clear(self);
	if (interrupted) {
		PRT_WRITE_ONCE(self->preempted, true); /* the dump reads it unlocked */
		w->pw.nr_stopped++;
	}
	if (!slice) {
		/* For a fiber above: @self's slice goes on when it runs again (prt__preempt_picked). */
		exc_set(w, self);
		w->pw.exc_prio = atomic_load_explicit(&self->prio, memory_order_relaxed);
		w->pw.exc_snap = atomic_load_explicit(&w->pw.tick_snap, memory_order_relaxed);
	}
	prt__put_donor(w, slice);
	prt__rq_add(w, self, !slice);
	/*
	 * At a runtime call the fiber may move: an idle worker must hear of
	 * it, as of a yield's (stopped by an interrupt, it may not, and is
	 * queued so: no announcement).
	 */
	if (!interrupted)
		prt__announce_locked(w, self);
	prt__stat_inc(&w->stats.preemptions, 1);
	if (slice)
		prt__stat_inc(&w->stats.time_slices, 1);
	prt__reschedule(w, self);
	/* Running again, on the worker it was stopped on if @interrupted (even if no longer allowed there). */
	if (interrupted) {
		PRT_WRITE_ONCE(self->preempted, false);
		w->pw.nr_stopped--;
	}
}

/*
 * The decision, at a point where the fiber could have called
 * prt_yield(): on the fiber's stack, called by the interrupt trampoline
 * (@interrupted) or from a runtime call (prt_preempt_enable(), the unlock
 * that ends an extended slice); @why: the PRT_PSRC_* bits of what came. A
 * fiber queued here that outranks what the worker serves runs now; at a
 * tick, one of the same priority runs if the running fiber ran through
 * the whole period; the tick stops once nothing of that priority waits.
 */
static void preempt_eval(struct prt__worker *w, unsigned why, bool interrupted)
{
	struct prt__wpreempt *p = &w->pw;
	struct prt__fiber *self = w->curr;
	uint64_t sw;
	uint32_t bm;
	int served, top;

	/*
	 * The handler stopped the fiber by a table made before a library
	 * was loaded or unloaded: where a library was, which the table
	 * still allows, another may be now (dlclose, then a dlopen that
	 * maps a denied object at the same address). By the table as it is
	 * now, may it be stopped there? If not, the interrupt is deferred,
	 * as the handler would have (preempt_sig.c, interrupt()). Whenever
	 * the table changed since the handler's look (its seq), not only
	 * when this check remade it: another worker, an idle one or a new
	 * runtime may have remade it in between (a review: 4-6 of 100
	 * cycles stopped inside the denied library with 2 workers).
	 */
	prt__fault_pause(PRT_PAUSE_EVAL_RANGES);
	ranges_check();
	/* acquire: pairs with the release store that ends ranges_make() */
	if (interrupted && atomic_load_explicit(&prt__ranges.seq, memory_order_acquire) != p->stop_seq &&
	    !prt__range_allowed(p->stop_pc, NULL)) {
		prt__held_mark_owed(&self->nheld);
		/* relaxed: this thread's own look honours them (as the handler's defer()) */
		atomic_fetch_or_explicit(&p->events, why & PRT_PEV_PENDING_ALL, memory_order_relaxed);
		prt__stat_inc(&w->stats.preempt_deferred, 1);
		prt__preempt_arm_retry(w, PRT_PREEMPT_RETRY_NS);
		return;
	}
	/*
	 * Completions, commands and epoll's readiness are found only where
	 * this worker looks (a scheduling point): look now, as prt_yield
	 * would, so that a fiber whose I/O ended competes at this point too
	 * (the tick runs while requests are in flight here for that reason).
	 */
	if (w->io.inflight || prt__io_waiting(&w->io))
		prt__io_service(w, true);
	prt__rq_lock(w);
	/* The watch's own signal stopped the fiber: how late was it? (Not a deferred one's retry.) */
	if (interrupted && why == 1u << PRT_PSRC_WATCH)
		watch_learn(w, p->watch_at, prt__now_ns());
	/* relaxed: this thread's handler and others set them; this look honours them */
	why |= atomic_fetch_and_explicit(&p->events, ~(PRT_PEV_KICKED | PRT_PEV_PENDING_ALL),
					 memory_order_relaxed) & PRT_PEV_PENDING_ALL;
	atomic_store_explicit(&p->retry_streak, 0, memory_order_relaxed); /* as in the pick */
	prt__preempt_retry_honoured(w);
	if (prt__has_timers(w))
		prt__run_timers(w); /* sleepers due now compete, as in prt_yield */
	if ((why & (1u << PRT_PSRC_WATCH)) && p->watch_early && prt__has_timers(w)) {
		uint64_t d;
		struct prt__fiber *f = watch_first(w, &d);

		/* Due within the lead, and still outranks what we serve: wait for it here. */
		if (d <= prt__add_sat(prt__now_ns(), w->rt->timer_lead) &&
		    atomic_load_explicit(&f->prio, memory_order_relaxed) > prt__served_prio(w))
			watch_spin(w, d);
	}
	served = prt__served_prio(w);
	bm = w->rq.bitmap;
	top = bm ? prt__rq_top(bm) : -1;
	/*
	 * Something outranks what we serve, or we run in a donor's place and
	 * its chain no longer leads here (its wait, or a link's further down,
	 * ended by a timeout or a cancel): pick again (preempt_switch puts
	 * the donor back first, at the head of its level).
	 */
	if (top > served || (w->donor != self && !prt__proxy_serves(w->donor, self))) {
		/*
		 * A tick that also ended its slice (fibers of its priority
		 * wait, and it ran the whole period): to the tail of its level,
		 * as at a slice's end. Else a fiber above that is due at every
		 * tick (a sleeper woken more often than the quantum, which this
		 * look's run_timers wakes) kept the fibers of the level below
		 * from ever sharing the worker. One that holds a lock keeps its
		 * place (its slice is extended at a tick with nothing above).
		 */
		bool slice = (why & (1u << PRT_PSRC_TICK)) && p->ticking && served >= 0 &&
			     (bm & (1u << served)) && !slice_held(self) &&
			     atomic_load_explicit(&w->stats.switches, memory_order_relaxed) ==
				     atomic_load_explicit(&p->tick_snap, memory_order_relaxed);

		preempt_switch(w, self, slice, interrupted);
		return;
	}
	if (top == served && (why & (1u << PRT_PSRC_TICK))) {
		sw = atomic_load_explicit(&w->stats.switches, memory_order_relaxed);
		if (p->ticking && sw == atomic_load_explicit(&p->tick_snap, memory_order_relaxed)) {
			/* relaxed: this thread's handler counts them */
			unsigned ticks = atomic_load_explicit(&p->tick_seq, memory_order_relaxed);
			/*
			 * One extension per run of the fiber (ext_sw), and per
			 * tick (a last unlock inside a region, then a relock,
			 * clears the mark).
			 */
			bool extended = ticks != p->ext_seq && p->ext_sw != sw + 1 && slice_extend(self);

			if (extended) {
				p->ext_seq = ticks;
				p->ext_sw = sw + 1;
				prt__stat_inc(&w->stats.slice_extensions, 1);
			} else if (interrupted || !slice_held(self) || ticks != p->ext_seq) {
				/*
				 * Stopped in its own code; or its last unlock; or a
				 * runtime call after a later tick than the one that
				 * extended the slice (a tick inside a
				 * prt_preempt_disable() region comes here at
				 * prt_preempt_enable(): else a fiber that holds a lock
				 * and works in regions would never be stopped).
				 */
				preempt_switch(w, self, true, interrupted);
				return;
			}
			/*
			 * Extended now, or extended already and at a runtime call
			 * with no tick since while it still holds a lock (a
			 * prt_preempt_enable() inside the critical section): owed
			 * until the last unlock (which looks at this pending bit)
			 * or the next tick; tick_snap is kept, so that tick finds
			 * no switch since and ends the slice.
			 */
			atomic_fetch_or_explicit(&p->events, PRT_PEV_PENDING(PRT_PSRC_TICK),
						 memory_order_relaxed);
			watch_arm(w);
			prt__rq_unlock(w);
			return;
		}
		slice_owed_clear(self); /* it switched since: an old extension is void */
		if (!p->ticking)
			tick_start(w, sw, 0);
		atomic_store_explicit(&p->tick_snap, sw, memory_order_relaxed);
	} else if (top < served && p->ticking && !w->io.inflight) {
		tick_stop(w);
	}
	watch_arm(w);
	prt__rq_unlock(w);
}

/*
 * errno around a switch made inside a runtime call (prt_preempt_enable,
 * the unlock that ends an extended slice): such a switch is a voluntary
 * scheduling point, after which the fiber may run on another worker
 * thread, so errno must be written through that thread's own errno, not
 * through the address taken before the switch (__errno_location() is a
 * const function: the compiler keeps its result across calls): out of
 * line (prt__errno_get/set, platform.c), as the library's other
 * thread-local reads after a switch (STYLE.md, "Inside"). A preemption
 * at a runtime call: as preempt_eval, errno kept for the caller.
 */
static void preempt_eval_call(struct prt__worker *w)
{
	int saved = prt__errno_get();

	preempt_eval(w, 0, false); /* the pending sources say why */
	prt__errno_set(saved);
}

void prt__preempt_slice_owed(void)
{
	struct prt__worker *w = prt__cur_worker();

	/* Only fibers of preemptive workers are ever marked; the unlock may have switched since. */
	slice_owed_clear(w->curr);
	/*
	 * relaxed: this thread's own look. The bits are gone if a pick ran
	 * since (the slice ended otherwise) or preempt_eval took them. Any
	 * source: the handler also marks interrupts it deferred in the
	 * library's code (preempt_sig.c, mark_owed).
	 */
	if (!(atomic_load_explicit(&w->pw.events, memory_order_relaxed) & PRT_PEV_PENDING_ALL))
		return;
	/* Inside prt_preempt_disable(): the interrupt stays pending, for prt_preempt_enable(). */
	if (atomic_load_explicit(&w->curr->preempt_count, memory_order_relaxed))
		return;
	preempt_eval_call(w);
}

/* What the interrupted fiber calls (arch/ctx.h): @arg is (char *)w + why. errno is the fiber's. */
void prt__preempt_fn(void *arg)
{
	uintptr_t a = (uintptr_t)arg;
	int saved = errno;

	preempt_eval((struct prt__worker *)(a & ~(uintptr_t)7), 1u << (a & 7), true);
	errno = saved;
}

/* ---- set-up ------------------------------------------------------------------------ */

/*
 * Is the sanitizer runtime that defines @init a shared library? Then it
 * is a denied object. Linked into the program (clang's default), its
 * code is among the program's and could be interrupted: its allocator,
 * or ThreadSanitizer's update of a thread's state, in the middle.
 */
static __attribute__((unused)) bool runtime_shared(void *init, const char *name)
{
	Dl_info di;

	return init && dladdr(init, &di) && di.dli_fname && strstr(di.dli_fname, ".so") &&
	       (strstr(di.dli_fname, name) || strstr(di.dli_fname, "clang_rt."));
}

/* Why this process cannot preempt, or NULL. */
static const char *cannot_preempt(void)
{
#if PRT_USE_TSAN
	{
		extern void __tsan_init(void) __attribute__((weak));

		if (!runtime_shared((void *)__tsan_init, "libtsan"))
			return "the ThreadSanitizer runtime is linked into the program";
	}
#endif
#if PRT_USE_VALGRIND
	if (RUNNING_ON_VALGRIND)
		return "under valgrind";
#endif
#if PRT_USE_ASAN
	{
		extern void __asan_init(void) __attribute__((weak));

		if (!runtime_shared((void *)__asan_init, "libasan"))
			return "the ASan runtime is linked into the program";
	}
#endif
	{
		/* The timers the workers make (a seccomp profile may refuse them). */
		struct sigevent ev = { .sigev_notify = SIGEV_NONE };
		int t;

		if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &ev, &t))
			return "timer_create refused";
		syscall(SYS_timer_delete, t);
	}
	return NULL;
}

/* PRT_PREEMPT_QUANTUM_NS if set to a number that is 0 or a valid time slice, else @q. */
/*
 * A PRT_PREEMPT_QUANTUM_NS that is set but not taken (not a plain
 * decimal number, or below PRT_PREEMPT_QUANTUM_MIN and not 0) is said
 * in @notice: ignored silently, the user's setting looked taken (a
 * review).
 */
static void env_notice(char *notice, size_t notice_len)
{
	const char *env = getenv("PRT_PREEMPT_QUANTUM_NS");
	size_t n = strlen(notice);
	uint64_t v;

	if (!env || (prt__env_u64("PRT_PREEMPT_QUANTUM_NS", &v) &&
		     (!v || v >= PRT_PREEMPT_QUANTUM_MIN)))
		return;
	snprintf(notice + n, notice_len - n,
		 "%sPRT_PREEMPT_QUANTUM_NS=\"%.32s\" ignored (not 0 or a number of ns from %llu)",
		 n ? "; " : "proxyrt: ", env, (unsigned long long)PRT_PREEMPT_QUANTUM_MIN);
}

uint64_t prt__preempt_quantum_env(uint64_t q)
{
	uint64_t v;

	if (!prt__env_u64("PRT_PREEMPT_QUANTUM_NS", &v) || (v && v < PRT_PREEMPT_QUANTUM_MIN))
		return q;
	return v;
}

/*
 * Take @sig for the handler (the first runtime that uses it), with the
 * system call itself (sigact.h: an interposed sigaction() must not
 * wrap it). SA_RESTART: a syscall the signal interrupts is restarted
 * where the kernel can. preempt_lock held.
 */
static int handler_get(int sig)
{
	int err;

	if (sig_users[sig]++)
		return 0;
	err = prt__sig_take(sig, (void *)prt__preempt_handler, SA_SIGINFO | SA_ONSTACK | SA_RESTART,
			    true, &prt__preempt_old[sig]);
	if (err)
		sig_users[sig]--;
	return err;
}

/*
 * The tick's clock for a time slice of @quantum ns. A timer on the
 * monotonic clock is a high-resolution timer: each expiry is an interrupt
 * of its own, which in a VM costs the interrupted thread tens of us
 * (design.md, section 16: 45 us per signal on the PVM host, 4% of a
 * computing thread at 1 ms). A timer on the thread's CPU-time clock is
 * checked at the scheduler's own tick (CONFIG_HZ) and its signal sent on
 * that interrupt's way back to the thread: no interrupt of its own (no
 * cost measurable there), and a slice measured in CPU time, as the
 * kernel's are, which a worker preempted by the OS does not use up. Its
 * resolution is that tick (clock_getres of CLOCK_MONOTONIC_COARSE: 4 ms
 * at HZ=250): slices that long or longer use it (a slice then ends at the
 * first tick at or after it), shorter ones the monotonic clock.
 */
static bool tick_clock_cpu(uint64_t quantum)
{
	struct timespec res;
	uint64_t tick;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &res))
		return false;
	tick = (uint64_t)res.tv_sec * 1000000000u + (uint64_t)res.tv_nsec;
	return tick && quantum >= tick;
}

int prt__preempt_rt_init(struct prt_runtime *rt, uint64_t quantum, int sig, char *notice,
			 size_t notice_len)
{
	const char *why;
	int err;

	quantum = prt__preempt_quantum_env(quantum);
	env_notice(notice, notice_len);
	if (!quantum)
		return 0;
	if ((why = cannot_preempt())) {
		size_t n = strlen(notice);

		snprintf(notice + n, notice_len - n, "%spreemption off (%s): fibers switch only at "
			 "scheduling points", n ? "; " : "", why);
		return 0;
	}
	/* Not a signal another runtime asks dumps with (sigact.h) */
	if ((err = prt__sig_role_get(sig, PRT_SIGROLE_PREEMPT)))
		return err;
	pthread_mutex_lock(&preempt_lock);
	if (!arch_ready) {
		prt__ctx_interrupt_init();
		arch_ready = true;
	}
	err = handler_get(sig);
	if (!err)
		ranges_make();
	pthread_mutex_unlock(&preempt_lock);
	if (err) {
		prt__sig_role_put(sig, PRT_SIGROLE_PREEMPT);
		return err;
	}
	rt->preempt_quantum = quantum;
	rt->preempt_sig = sig;
	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__wpreempt *p = &rt->workers[i]->pw;

		p->quantum = quantum;
		p->tick_cpu = tick_clock_cpu(quantum);
		p->sig = sig;
		rt->workers[i]->rq.serve_prio = -1;
		watch_set(rt->workers[i], PRT_NEVER);
		tick_set(rt->workers[i], 0);
		atomic_init(&p->watch_slack, 0);
		atomic_init(&p->watch_deferred, 0);
		p->watch_late = 0;
		p->watch_early = false;
	}
	return 0;
}

void prt__preempt_rt_fini(struct prt_runtime *rt)
{
	int sig = rt->preempt_sig;

	if (!rt->preempt_quantum)
		return;
	pthread_mutex_lock(&preempt_lock);
	/* Put back what was there, unless someone replaced ours since. */
	if (sig_users[sig] && --sig_users[sig] == 0)
		prt__sig_put(sig, (const void *)prt__preempt_handler, true, &prt__preempt_old[sig]);
	pthread_mutex_unlock(&preempt_lock);
	prt__sig_role_put(sig, PRT_SIGROLE_PREEMPT);
	rt->preempt_quantum = 0;
}

int prt__preempt_worker_start(struct prt__worker *w)
{
	struct prt__wpreempt *p = &w->pw;
	int *t[3] = { &p->watch, &p->tick, &p->retry };
	struct sigevent ev;
	sigset_t set;

	if (!p->quantum)
		return 0;
	p->tid = gettid();
	/* The creating thread's mask may block it: workers take it. */
	sigemptyset(&set);
	sigaddset(&set, p->sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	mask_read(p);
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = SIGEV_THREAD_ID;
	ev.sigev_signo = p->sig;
	ev._sigev_un._tid = p->tid; /* sigev_notify_thread_id, which glibc 2.36 does not name */
	for (int i = 0; i < 3; i++) {
		/* Which timer sent a signal: PRT_PSRC_WATCH, _TICK, _RETRY (0, 1, 2). */
		ev.sigev_value.sival_ptr = (char *)w + i;
		/* The system call itself: the handler sets them so (prt__preempt_settime). */
		clockid_t clk = t[i] == &p->tick && p->tick_cpu ? CLOCK_THREAD_CPUTIME_ID
							      : CLOCK_MONOTONIC;

		/* On this thread: CLOCK_THREAD_CPUTIME_ID is the worker's own CPU time. */
		if (syscall(SYS_timer_create, clk, &ev, t[i])) {
			int err = -errno;

			while (i-- > 0)
				syscall(SYS_timer_delete, *t[i]);
			return err;
		}
	}
	p->timers_ok = true;
	return 0;
}

void prt__preempt_worker_stop(struct prt__worker *w)
{
	if (!w->pw.timers_ok)
		return;
	syscall(SYS_timer_delete, w->pw.watch);
	syscall(SYS_timer_delete, w->pw.tick);
	syscall(SYS_timer_delete, w->pw.retry);
	w->pw.timers_ok = false;
}

/* ---- public calls ------------------------------------------------------------------ */

PRT_API int prt_preempt_disable(void)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *f;

	if (!w)
		return -EPERM;
	f = w->curr;
	atomic_store_explicit(&f->preempt_count,
			      atomic_load_explicit(&f->preempt_count, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	/* Counted before the region's first instruction, as this thread's handler sees it. */
	atomic_signal_fence(memory_order_seq_cst);
	return 0;
}

void prt__preempt_safe_point_slow(struct prt__worker *w)
{
	struct prt__fiber *self = w->curr;

	/*
	 * Not from the idle context (an application's handler there), not
	 * inside a prt_preempt_disable() region (it stays pending for
	 * prt_preempt_enable), and not under another signal mask than the
	 * worker's at its last scheduling point: an application's signal
	 * handler, which may have interrupted the library itself (as the
	 * interrupt handler tells, preempt_sig.c, mask_as_base). One
	 * system call, on this rare path only.
	 */
	uintptr_t here = (uintptr_t)__builtin_frame_address(0);

	if (self == &w->idle || !w->pw.quantum ||
	    atomic_load_explicit(&self->preempt_count, memory_order_relaxed))
		return;
	/*
	 * Nor off the fiber's own stack: a handler on an alternate stack,
	 * which its signal mask does not tell when it has SA_NODEFER and an
	 * empty sa_mask (a review: prt_now_ns in such a handler chained from
	 * the preemption signal switched fibers there, and the next signal
	 * wrote over its frames on the worker's alternate stack).
	 */
	if (here - (uintptr_t)self->stack.base >= self->stack.size)
		return;
	if (mask_now() != w->pw.base_mask)
		return;
	preempt_eval_call(w);
}

PRT_API uint64_t prt_now_ns(void)
{
	uint64_t t = prt__now_ns();

	prt__preempt_safe_point(); /* a fiber may switch here (sched_int.h) */
	return t;
}

PRT_API int prt_preempt_enable(void)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *f;
	unsigned c;

	if (!w)
		return -EPERM;
	f = w->curr;
	c = atomic_load_explicit(&f->preempt_count, memory_order_relaxed);
	if (!c)
		return -EINVAL;
	/* The region's last instruction comes before the count drops, as the handler sees it. */
	atomic_signal_fence(memory_order_seq_cst);
	atomic_store_explicit(&f->preempt_count, c - 1, memory_order_relaxed);
	/* A preemption came due inside the region: now (the kernel's preempt_enable does the same). */
	if (c == 1 && w->pw.quantum &&
	    (atomic_load_explicit(&w->pw.events, memory_order_relaxed) & PRT_PEV_PENDING_ALL))
		prt__preempt_safe_point_slow(w); /* its checks: not in a handler, nor the idle context */
	return 0;
}

/*
 * A fiber that forks is not preempted from the library's prepare
 * handler to its parent handler (or the child): the application's own
 * fork handlers registered before the library's run in between, while
 * the library's fork locks are held, and an interrupt there took the
 * preemption lock again (a review: the worker deadlocked on it, 5/5,
 * with a handler that computed for 3 ms at a 50 us quantum). The
 * calling fiber's preempt count goes up (@d 1) and down (-1), nothing
 * honoured: the parent handler runs inside fork, under libc's own fork
 * lock, so no switch there; an interrupt that came meanwhile waits for
 * the fiber's next scheduling point or tick. A no-op on a plain thread.
 */
static void fork_hold(int d)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *f;

	if (!w || (f = w->curr) == &w->idle)
		return;
	atomic_signal_fence(memory_order_seq_cst);
	/* relaxed: this thread's handler reads it */
	atomic_store_explicit(&f->preempt_count,
			      atomic_load_explicit(&f->preempt_count, memory_order_relaxed) + (unsigned)d,
			      memory_order_relaxed);
	atomic_signal_fence(memory_order_seq_cst);
}

PRT_API int prt_runtime_preemptive(const prt_runtime_t *rt, uint64_t *quantum_ns)
{
	bool ref;
	uint64_t q;

	if (!prt__rt_enter(rt, &ref))
		return -EINVAL;
	q = rt->preempt_quantum;
	if (ref)
		prt__rt_put(rt);
	if (quantum_ns)
		*quantum_ns = q;
	return q != 0;
}

/* fork.h: no runtime in a forked child: what was there before the parent's, as the last destroy would. */
static void preempt_child(void)
{
	prt__sig_put_all(sig_users, (const void *)prt__preempt_handler, true, prt__preempt_old);
}

static void preempt_prepare(void)
{
	fork_hold(1);
}

static void preempt_parent(void)
{
	fork_hold(-1);
}

struct prt__fork_hook prt__preempt_fork_hook = {
	.lock = &preempt_lock, .prepare = preempt_prepare, .parent = preempt_parent, .child = preempt_child
};
