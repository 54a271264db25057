/* SPDX-License-Identifier: MIT */
/*
 * The scheduler: per-worker run queues (one FIFO per priority level and
 * a bitmap), the switch between fibers, work stealing in topology
 * order, and parking/waking idle workers.
 *
 * A fiber switches directly to the next fiber of its worker; only when
 * the queue is empty does it switch to the worker's idle context (the
 * worker thread's own stack), which steals, fires busy workers' due
 * timers, spins briefly, then sleeps in its io_uring (or epoll) until
 * woken or a deadline.
 *
 * Work conservation (as Go's wakep and timer stealing): no runnable
 * fiber, and no due timer, waits on a busy worker while a worker that
 * may run it sleeps. Two protocols keep that true without lost wakeups
 * (invariant 6).
 *
 * 1. Queued fibers. A worker going to sleep and a thread queueing work
 * (prt__enqueue, or any other add to a queue: a yield, an unlocker a
 * handoff preempts, a timer firing, a donor handed its lock or timed
 * out: announce_locked, the PRT_DEFER_* bits and rq_unlock) run:
 *
 *   worker W (worker_park)              enqueuer E (queues F on T)
 *   ----------------------              --------------------------
 *   W->sleeping = 1                     lock(T->rq)
 *   rt->nr_idle++                       add F to T->rq
 *   for each worker V:                  s = T->sleeping; i = rt->nr_idle
 *     lock(V->rq); look for work        unlock(T->rq)
 *     W may take; unlock                if s: wake T
 *   nothing found: sleep                else if i: wake a sleeper F may run
 *                                         on (for F any worker may run,
 *                                         one only if nobody spins)
 *
 * Both sides touch T's rq under its lock, so one critical section comes
 * first. If E's does, W's look finds F. If W's does, W's stores to
 * sleeping/nr_idle happen before E's loads (lock release/acquire), so E
 * wakes T (if T == W) or a sleeping worker F may run on. A spinner takes
 * F, or when it stops (spin_stop) wakes a sleeper if work is left that
 * any worker may take. A fiber that only T may run is left for T.
 *
 * 2. Timers (the timer watch). A timer fires when its worker picks, or
 * when its worker's sleep ends at the deadline; a busy worker may not
 * pick for a long time. So each sleeping worker sleeps until its own
 * next timer or, unless another sleeper already wakes by then, the
 * earliest timer of the workers that do not sleep (@park_until says
 * which), and an idle worker fires the due timers of busy workers
 * (fire_busy_timers) and steals what they queued. Whoever makes a busy
 * worker's timer earlier than all the sleepers watch for (an arm, or a
 * worker leaving its sleep with timers or with others' timers watched)
 * wakes a sleeper, which looks again:
 *
 *   busy worker V (arms d)              sleeping worker W (park_deadline)
 *   ----------------------              ---------------------------------
 *   V->timers.next = d   [seq_cst]      W->park_until = D   [seq_cst]
 *   if rt->nr_idle:                     m = min next of the workers that
 *     a sleeper's park_until <= d?          do not sleep
 *     else wake one                     m < D and no other sleeper wakes
 *                                         by m: D = m, again
 *
 * Both store then load (seq_cst), so at least one sees the other: W
 * sleeps until at most d, or V wakes a sleeper (W or another, which
 * looks again) unless one wakes by d anyway. V does its side once it
 * is known to stay busy: when its next pick runs a fiber (PRT_DEFER_WATCH,
 * consumed by rq_unlock). If that pick finds nothing, V goes idle and
 * fires its own timers: it spins, then sleeps until them. A worker
 * leaving the idle loop for a fiber with timers of its own, or after it
 * published sleeping = 1 (cleared since, seq_cst), does V's side for the
 * earliest timer of all awake workers, itself included (left_park):
 * sleepers may have counted on it. @park_until is reset when the worker
 * wakes, so no stale value is counted on.
 * Local timers (epoll I/O timeouts) are not watched: they end a wait in
 * their worker's own I/O state, which has no lock (prt__worker.iotimers).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "fault.h"
#include "proxy_int.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "sched_priv.h"
#include "switch.h"
#include "worker.h"



/*
 * The yield's lock bias (sched_priv.h): not under ThreadSanitizer (it
 * does not know the membarrier's order: it would report the revoker's
 * queue edits as racing with the worker's) or valgrind (one thread at a
 * time: a kept lock would make every other worker's wakeup wait for a
 * revocation), nor where membarrier(2) is missing, nor with
 * $PRT_YIELD_BIAS=0.
 */
static bool bias_allowed(const struct prt__worker *w)
{
	uint64_t v;

#if PRT_USE_TSAN
	return false;
#endif
	if (w->os_yield)
		return false;
	if (prt__env_u64("PRT_YIELD_BIAS", &v) && v == 0)
		return false;
	return prt__membarrier_ready();
}

void prt__worker_sched_init(struct prt__worker *w)
{
	struct prt__rq *rq = &w->rq;

	prt__spin_init(&rq->lock);
	rq->bitmap = 0;
	atomic_init(&rq->nr, 0);
	atomic_init(&rq->nr_any, 0);
	atomic_init(&rq->nr_donor, 0);
	rq->serve_prio = -1;
	for (int i = 0; i < PRT_PRIO_LEVELS; i++)
		prt__list_init(&rq->level[i]);
	prt__timers_init(&w->timers);
	prt__timers_init(&w->iotimers);
	atomic_init(&w->park_until, PRT_NO_DEADLINE);
	w->bias_ok = bias_allowed(w);
	w->bias_need = PRT_BIAS_CALM_MIN;
}

/* ---- waking workers ----------------------------------------------------- */

/* Wake @v if it sleeps. Returns true if it did. */
bool prt__wake_worker(struct prt__worker *v)
{
	if (atomic_load_explicit(&v->sleeping, memory_order_relaxed) == 0)
		return false;
	if (atomic_exchange_explicit(&v->sleeping, 0, memory_order_acq_rel) != 1)
		return false;
	atomic_fetch_sub_explicit(&v->rt->nr_idle, 1, memory_order_relaxed);
	prt__io_kick(v); /* it sleeps in its ring (or epoll): wake it there */
	return true;
}

/* Wake one sleeping worker, nearest to @near first. */
void prt__wake_one_near(struct prt__worker *near)
{
	struct prt_runtime *rt = near->rt;
	const int *order = rt->topo.w[near->index].steal_order;

	for (int i = 0; i < rt->nworkers - 1; i++)
		if (prt__wake_worker(rt->workers[order[i]]))
			return;
}

/*
 * Wake one sleeping worker other than @near, nearest first, to steal
 * what @near has queued: one that @f may run on (any, if @f is NULL).
 * Not a sleeper that wakes by itself (its park_until) before the steal
 * grace of work first seen now would end: woken now, it could take
 * nothing sooner (it would spin, find the grace not over, and sleep
 * again), and the wake is a system call of the waker's (a kick) each
 * time, on the busy worker's time. With a grace of 1 ms, W2 (spawn and
 * join, 2 workers) woke its idle worker so ~2 times a batch of 1000
 * spawns; skipping them took W2 from 150 to 130 ns (200 us: 225 to 160).
 * Such a sleeper that wakes for its own timer sees the work then, and
 * takes it a grace later: at most twice the grace after now.
 */
void prt__wake_thief_near(struct prt__worker *near, struct prt__fiber *f)
{
	struct prt_runtime *rt = near->rt;
	const int *order = rt->topo.w[near->index].steal_order;
	uint64_t by = 0;

	for (int i = 0; i < rt->nworkers - 1; i++) {
		struct prt__worker *v = rt->workers[order[i]];

		/*
		 * acquire: pairs with the seq_cst store of sleeping = 1 in
		 * worker_park(), after its reset of park_until at the end of
		 * the last park: park_until is then that reset or newer, never
		 * an older park's deadline (weakly ordered CPUs; a review).
		 */
		if ((f && !prt__fiber_allowed(f, order[i])) ||
		    !atomic_load_explicit(&v->sleeping, memory_order_acquire))
			continue;
		if (rt->steal_grace) {
			if (!by)
				by = prt__add_sat(prt__now_ns(), rt->steal_grace);
			if (atomic_load_explicit(&v->park_until, memory_order_relaxed) <= by)
				continue;
		}
		if (prt__wake_worker(v))
			return;
	}
}

void prt__wake_all_workers(struct prt_runtime *rt)
{
	for (int i = 0; i < rt->nworkers; i++)
		prt__wake_worker(rt->workers[i]);
}

/*
 * Fibers were queued on @t (protocol 1, E's side): @any if one any
 * worker may run is there, @some one that only some workers may run
 * (NULL if none); @sleeps, @idle, @spin were read after the add, under
 * t's rq lock, which is dropped now. Wake whoever should take them.
 */
static void wake_for(struct prt__worker *t, bool any, struct prt__fiber *some, bool sleeps,
		     int idle, int spin)
{
	if (sleeps) {
		prt__wake_worker(t);
		return;
	}
	/* Nobody may steal (cfg.steal_grace_ns UINT64_MAX): no idle worker can help. */
	if (idle <= 0 || t->rt->steal_grace == UINT64_MAX)
		return;
	if (any && spin == 0)
		prt__wake_thief_near(t, NULL);
	if (some)
		prt__wake_thief_near(t, some); /* a spinner may not be one it may run on */
}

void prt__enqueue(struct prt__worker *t, struct prt__fiber *f)
{
	struct prt_runtime *rt = t->rt;
	bool sleeps, any, some, kick;
	int idle, spin;

	prt__rq_lock(t);
	prt__rq_add(t, f, false);
	kick = prt__preempt_queued(t, f);
	any = f->rq_any;
	/* With two workers, a fiber not every worker may run runs only on one. */
	some = !any && !f->rq_donor && rt->nworkers > 2;
	sleeps = atomic_load_explicit(&t->sleeping, memory_order_relaxed);
	idle = atomic_load_explicit(&rt->nr_idle, memory_order_relaxed);
	spin = atomic_load_explicit(&rt->nr_spinning, memory_order_relaxed);
	prt__rq_release(t);
	if (prt__unlikely(kick))
		prt__preempt_kick(t); /* t may run @f now: interrupt what it runs */
	prt__fault_pause(PRT_PAUSE_ENQUEUED); /* test builds: @f may run and end here */
	if (sleeps || rt->nworkers > 1)
		wake_for(t, any, some ? f : NULL, sleeps, idle, spin);
}


/* rq_unlock's slow path: drop the lock, then make known what w->deferred says. */
prt__noinline void prt__rq_unlock_deferred(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;
	unsigned d = w->deferred;
	struct prt__fiber *some = w->announce;
	bool any, sleeps;
	int idle, spin;

	w->deferred = 0;
	w->announce = NULL;
	/* Still queued here? (The pick may just have taken it.) */
	any = (d & PRT_DEFER_ANY) && atomic_load_explicit(&w->rq.nr_any, memory_order_relaxed);
	if (!(d & PRT_DEFER_SOME) ||
	    atomic_load_explicit(&some->rq_worker, memory_order_relaxed) != w || some->rq_donor)
		some = NULL;
	sleeps = atomic_load_explicit(&w->sleeping, memory_order_relaxed);
	idle = atomic_load_explicit(&rt->nr_idle, memory_order_relaxed);
	spin = atomic_load_explicit(&rt->nr_spinning, memory_order_relaxed);
	prt__rq_release(w);
	if (d & PRT_DEFER_KICK)
		prt__preempt_kick(w);
	if (d & PRT_DEFER_WATCH)
		prt__watch_timer(w, atomic_load_explicit(&w->timers.next, memory_order_relaxed));
	if (any || some)
		wake_for(w, any, some, sleeps, idle, spin);
}


static void wake(struct prt__worker *t, struct prt__fiber *f);

void prt__wake(struct prt__fiber *f)
{
	struct prt_runtime *rt = f->rt;
	struct prt__worker *cur = prt__worker_of(rt, prt__cur_worker());

	if (prt__likely(cur)) {
		wake(prt__select_worker_from(f, cur), f);
		return;
	}
	/*
	 * From outside the runtime (a plain thread, another runtime's fiber,
	 * a helper thread): once queued, @f may run and end, and destroy
	 * free everything, while we still kick its worker. Hold a reference
	 * across (runtime.c, "Outside callers"); @f has not ended yet, so
	 * destroy cannot be draining.
	 */
	prt__rt_pin(rt);
	{
		struct prt__worker *t = prt__select_worker_from(f, NULL);

		prt__fault_pause(PRT_PAUSE_WAKE_CHOSEN); /* test builds: an affinity change may be under way */
		wake(t, f);
	}
	prt__rt_put(rt);
}

/* Queue @f (asleep, or new) on @t, with the donors attached to it. */
static void wake(struct prt__worker *t, struct prt__fiber *f)
{
	struct prt__list donors;

	/*
	 * Donors attached while @f slept go to @f's worker with it
	 * (docs/design.md: the sleeping-owner case). Taking @f->lock orders this
	 * against prt__proxy_pick's attach, which checks @f is still asleep.
	 */
	prt__list_init(&donors);
	prt__spin_lock(&f->lock);
	while (!prt__list_empty(&f->donors)) {
		struct prt__fiber *d = prt__container_of(f->donors.next, struct prt__fiber, rq_node);

		prt__list_del(&d->rq_node);
		atomic_store_explicit(&d->attached_to, NULL, memory_order_relaxed);
		prt__list_add_tail(&donors, &d->rq_node);
	}
	atomic_store_explicit(&f->state, PRT_FS_RUNNABLE, memory_order_relaxed);
	prt__cancel_unhook(f);
	prt__spin_unlock(&f->lock);
	prt__enqueue(t, f);
	while (!prt__list_empty(&donors)) {
		struct prt__fiber *d = prt__container_of(donors.next, struct prt__fiber, rq_node);

		prt__list_del(&d->rq_node);
		prt__enqueue(t, d);
	}
}


/* ---- timers ------------------------------------------------------------- */

/*
 * Arm @f's timer in @w's heap @h (rq lock held, on @w). If it is now w's
 * earliest watched timer and a worker sleeps, the rq_unlock of w's next
 * pick makes sure a sleeper wakes for it, if that pick runs a fiber
 * (protocol 2, V's side: the seq_cst store of next in prt__timer_add(),
 * then the seq_cst loads of nr_idle here and of park_until in
 * watch_timer).
 */
static int timer_push(struct prt__worker *w, struct prt__timers *h, uint64_t deadline,
		      struct prt__fiber *f, prt__timer_fn *fn)
{
	int r = prt__timer_add(h, &f->timer, deadline, fn);

	if (r < 0)
		return r;
	PRT_WRITE_ONCE(w->ntimers, w->ntimers + 1);
	/* seq_cst: pairs with the increment in worker_park() (idle.c) (protocol 2) */
	if (r == 1 && h == &w->timers && w->rt->nworkers > 1 &&
	    atomic_load_explicit(&w->rt->nr_idle, memory_order_seq_cst) > 0)
		w->deferred |= PRT_DEFER_WATCH;
	return 0;
}

/*
 * Wake @f, asleep (on this worker's heap, or just handed a lock), into
 * this worker's queue, with the donors attached to it (the
 * sleeping-owner case). rq lock held, and left through rq_unlock; lock
 * order rq -> f->lock.
 */
void prt__wake_here_locked(struct prt__worker *w, struct prt__fiber *f)
{
	prt__spin_lock(&f->lock);
	while (!prt__list_empty(&f->donors)) {
		struct prt__fiber *d = prt__container_of(f->donors.next, struct prt__fiber, rq_node);

		prt__list_del(&d->rq_node);
		atomic_store_explicit(&d->attached_to, NULL, memory_order_relaxed);
		prt__rq_add(w, d, false);
		prt__announce_locked(w, d);
		if (prt__preempt_queued(w, d))
			w->deferred |= PRT_DEFER_KICK;
	}
	/* As prt__wake: an attach must not find it asleep once it is queued. */
	atomic_store_explicit(&f->state, PRT_FS_RUNNABLE, memory_order_relaxed);
	prt__cancel_unhook(f);
	prt__spin_unlock(&f->lock);
	prt__rq_add(w, f, false);
	prt__announce_locked(w, f);
	if (prt__preempt_queued(w, f))
		w->deferred |= PRT_DEFER_KICK;
}


/*
 * Fire the timers of @w's heap @h due by @now; w's rq lock held, by w
 * or by an idle worker (fire_busy_timers): what they wake is queued on
 * w (each callback gets w). Returns how many fired.
 */
unsigned prt__fire_timers(struct prt__worker *w, struct prt__timers *h, uint64_t now)
{
	unsigned n = prt__timers_run(h, now, w);

	PRT_WRITE_ONCE(w->ntimers, w->ntimers - n);
	return n;
}

void prt__run_timers(struct prt__worker *w)
{
	uint64_t now = prt__now_ns();

	prt__fire_timers(w, &w->timers, now);
	if (w->iotimers.n)
		prt__fire_timers(w, &w->iotimers, now);
}

int prt__timer_arm(struct prt__worker *w, uint64_t deadline, prt__timer_fn *fn, bool local)
{
	struct prt__fiber *self = w->curr;
	int err;

	prt__rq_lock(w);
	err = timer_push(w, local ? &w->iotimers : &w->timers, deadline, self, fn);
	/* PRT_DEFER_WATCH waits for our next pick (protocol 2): no rq_unlock. */
	prt__rq_release(w);
	if (!err) {
		self->timer_w = w;
		self->timer_io = local;
	}
	return err;
}

void prt__timer_cancel(struct prt__fiber *f)
{
	struct prt__worker *w = f->timer_w;

	if (!w)
		return;
	prt__rq_lock(w);
	if (prt__timer_armed(&f->timer)) {
		prt__timer_del(f->timer_io ? &w->iotimers : &w->timers, &f->timer);
		PRT_WRITE_ONCE(w->ntimers, w->ntimers - 1);
	}
	prt__rq_release(w);
	f->timer_w = NULL;
}

/* A sleep's timer: the sleeper is queued where the timer was. */
static void sleep_timer_fire(struct prt__timer *t, void *ctx)
{
	prt__wake_here_locked(ctx, prt__container_of(t, struct prt__fiber, timer));
}

int prt__sleep_until(struct prt__worker *w, uint64_t deadline, bool cancellable)
{
	struct prt__fiber *self = w->curr;

	prt__io_point(w);
	prt__set_wait(self, PRT_WK_SLEEP, NULL, (int64_t)deadline);
	prt__rq_lock(w);
	self->timer_w = w;
	self->timer_io = false;
	if (timer_push(w, &w->timers, deadline, self, sleep_timer_fire)) {
		prt__rq_release(w);
		return -ENOMEM;
	}
	/*
	 * The timer cannot fire before we leave the CPU, except in our own
	 * pick, which then picks us and we just go on: this worker's pick
	 * pops its heap under this lock, which we hold until the switch,
	 * and an idle worker that fires it after that queues us here, to
	 * run once our switch away has ended (on_cpu, invariant 3).
	 */
	prt__spin_lock(&self->lock); /* rq -> f->lock; a prt_cancel looks under it */
	if (cancellable && prt__cancel_pending(self)) {
		prt__spin_unlock(&self->lock);
		prt__timer_del(&w->timers, &self->timer);
		PRT_WRITE_ONCE(w->ntimers, w->ntimers - 1);
		prt__rq_release(w);
		self->timer_w = NULL;
		return -ECANCELED;
	}
	if (cancellable)
		self->cancel_sleep = w; /* cleared by the wake (prt__wake_here_locked) */
	atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
	prt__spin_unlock(&self->lock);
	prt__put_donor(w, false);
	prt__reschedule(w, self);
	self->timer_w = NULL;
	/* Woken before the deadline: only prt__sleep_cancel does that. */
	return prt__now_ns() < deadline ? -ECANCELED : 0;
}

void prt__sleep_cancel(struct prt__worker *sw, struct prt__fiber *f, uint64_t id)
{
	bool asleep;

	prt__rq_lock(sw);
	prt__spin_lock(&f->lock);
	/*
	 * Still asleep on @sw (its hook is cleared by the wake, which needs
	 * sw's rq lock, ours): its timer is armed in sw's heap. @id: the
	 * descriptor may be another fiber's by now.
	 */
	asleep = atomic_load_explicit(&f->id, memory_order_relaxed) == id && f->cancel_sleep == sw;
	prt__spin_unlock(&f->lock);
	if (asleep) {
		/* What its deadline would do (prt__fire_timers), now. */
		prt__timer_del(&sw->timers, &f->timer);
		PRT_WRITE_ONCE(sw->ntimers, sw->ntimers - 1);
		sleep_timer_fire(&f->timer, sw);
	}
	prt__rq_unlock(sw);
	/* Unlike a timer's firing, this may come while @sw sleeps: its pick runs the fiber. */
	if (asleep)
		prt__wake_worker(sw);
}

PRT_API int prt_sleep_until(uint64_t deadline_ns)
{
	struct prt__worker *w = prt__cur_worker();

	if (!w)
		return -EPERM;
	if (prt__cancel_pending(w->curr))
		return -ECANCELED;
	if (deadline_ns <= prt__now_ns())
		return prt_yield();
	return prt__sleep_until(w, deadline_ns, true);
}

PRT_API int prt_sleep_ns(uint64_t ns)
{
	if (!prt__cur_worker())
		return -EPERM;
	return prt_sleep_until(prt__deadline_in(ns));
}


/* ---- the wait spin (sched_int.h) ---------------------------------------- */

uint64_t prt__wait_spin_ns(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;

	/* rt->wait_spin: 0 also with one worker or more workers than CPUs */
	if (!rt->wait_spin ||
	    atomic_load_explicit(&rt->nr_idle, memory_order_relaxed) >= rt->nworkers - 1 ||
	    (prt__spin_must_stop(w) && !prt__spin_io(w)))
		return 0;
	return rt->wait_spin;
}

bool prt__spin_io(struct prt__worker *w)
{
	if (prt__spin_must_stop_not_io(w) || !prt__io_waiting(&w->io))
		return false;
	/* force: a spinner has nothing else to run, the case where a scheduling point submits */
	prt__io_service(w, true);
	return !prt__spin_must_stop(w);
}

/* ---- scheduling points -------------------------------------------------- */

/*
 * Pick what runs next, with w->rq.lock held; returns with it released.
 * NULL means the idle context. Donor migrations need the lock dropped
 * (no two rq locks are ever held at once), so they loop back here.
 */
struct prt__fiber *prt__pick_unlock(struct prt__worker *w, struct prt__fiber **donor)
{
	struct prt__pick p;

	for (;;) {
		/* Sleepers due now compete in this pick. */
		if (prt__unlikely(prt__has_timers(w)))
			prt__run_timers(w);
		switch (prt__proxy_pick(w, &p)) {
		case PRT_PICK_RUN:
			prt__preempt_picked(w, p.run, p.donor);
			prt__rq_unlock(w);
			*donor = p.donor;
			return p.run;
		case PRT_PICK_IDLE:
			/* Going idle: we watch our own timers (protocol 2). */
			w->deferred &= ~(unsigned)PRT_DEFER_WATCH;
			prt__preempt_picked(w, NULL, NULL);
			prt__rq_unlock(w);
			*donor = &w->idle;
			return NULL;
		case PRT_PICK_MOVE:
			prt__rq_unlock(w);
			prt__enqueue(p.to, p.move);
			prt__rq_lock(w);
			break;
		case PRT_PICK_AGAIN:
			break;
		}
	}
}

/*
 * While a proxy runs (donor != curr), the donor is on no queue. At the
 * proxy's scheduling point the donor goes back to the queue at its own
 * priority: at the tail for a yield, else at the head (its turn is not
 * over), and the pick runs again. Caller holds w->rq.lock.
 */
void prt__put_donor(struct prt__worker *w, bool tail)
{
	struct prt__fiber *d = w->donor;

	if (d != w->curr && d != &w->idle) {
		prt__rq_add(w, d, !tail);
		prt__announce_locked(w, d); /* its wait ended (a timeout): any worker may take it */
	}
	PRT_WRITE_ONCE(w->donor, w->curr);
}

/*
 * The common pick, inline: no timers, and the head entry neither waits
 * on a mutex nor must move. Else NULL, with the queue as it was.
 */
static inline struct prt__fiber *pick_fast(struct prt__worker *w)
{
	struct prt__fiber *f;

	if (prt__unlikely(prt__has_timers(w)) || !w->rq.bitmap)
		return NULL;
	f = prt__rq_first(w);
	if (atomic_load_explicit(&f->blocked_on, memory_order_relaxed) ||
	    !prt__fiber_allowed(f, w->index))
		return NULL;
	prt__rq_del(w, f);
	return f;
}

/* Switch to what the pick chose (rq lock held on entry, released here). */
void prt__reschedule(struct prt__worker *w, struct prt__fiber *self)
{
	struct prt__fiber *donor, *next = pick_fast(w);

	if (prt__likely(next)) {
		prt__preempt_picked(w, next, next);
		prt__rq_unlock(w);
		donor = next;
	} else {
		next = prt__pick_unlock(w, &donor);
	}

	if (!next)
		next = &w->idle;
	if (next == self) {
		/*
		 * Picked ourselves: woken and queued here before we switched
		 * away, or a donor whose owner is in transit to this worker
		 * (its waker is about to take this rq lock): it retries its
		 * lock and comes back here. Under valgrind, which switches
		 * threads after a fixed count of basic blocks, that loop can
		 * be stopped inside the rq lock at every switch, in phase, while
		 * the waker spins on it (test_rwlock's stress hung 1 run in 8
		 * for good). A system call hands valgrind's lock over with the
		 * run queue free, as in prt_yield.
		 */
		atomic_store_explicit(&self->state, PRT_FS_RUNNING, memory_order_relaxed);
		PRT_WRITE_ONCE(w->donor, donor);
		if (prt__unlikely(w->os_yield))
			sched_yield();
		return;
	}
	prt__switch_to(w, self, next, donor);
}

void prt__schedule_blocked(struct prt__worker *w)
{
	prt__io_point(w);
	prt__rq_lock(w);
	prt__put_donor(w, false);
	prt__reschedule(w, w->curr);
}

void prt__schedule_mutex_wait(struct prt__worker *w)
{
	struct prt__fiber *self = w->curr;

	prt__io_point(w);
	prt__rq_lock(w);
	prt__put_donor(w, false);
	/* Invariant 1: a fiber blocked on a mutex stays runnable, in a queue. */
	prt__rq_add(w, self, true);
	prt__reschedule(w, self);
}

void prt__sched_point_passed(void)
{
	struct prt__worker *w = prt__cur_worker();

	if (w && prt__unlikely(!prt__fiber_allowed(w->curr, w->index)))
		prt__migrate_self(w);
}

void prt__migrate_self(struct prt__worker *w)
{
	struct prt__fiber *self = w->curr, *donor, *next;

	prt__io_point(w);
	prt__rq_lock(w);
	prt__put_donor(w, false);
	next = prt__pick_unlock(w, &donor);
	/* Queued on an allowed worker; that worker waits for on_cpu == 0 before running us. */
	prt__wake(self);
	prt__switch_to(w, self, next ? next : &w->idle, donor);
}




/*
 * Spins of prt__rq_lock_slow on a kept lock before it revokes the bias
 * (a few microseconds: a worker whose fibers yield drops it sooner, at
 * its next yield; the revocation's membarrier costs more, 1-35 us on the
 * session-22 host); and before each sched_yield, as prt__spin_lock_slow.
 */
#define PRT_BIAS_REVOKE_AFTER 128u
#define PRT_RQ_SPIN_BEFORE_YIELD 256u

bool prt__rq_revoke(struct prt__worker *x)
{
	unsigned char one = 1;
	unsigned n = 0;

	/* acq_rel: takes the queue as x's thread left it (its release of kept) */
	if (!atomic_compare_exchange_strong_explicit(&x->rq.kept, &one, 0, memory_order_acq_rel,
						     memory_order_relaxed))
		return false;
	/* From here x's thread cannot enter: it looks at kept after marking in_cs. */
	prt__membarrier();
	/* acquire: pairs with the release that ends x's section (prt__rq_release, unlock_keep) */
	while (atomic_load_explicit(&x->rq.in_cs, memory_order_acquire)) {
		if (++n % PRT_RQ_SPIN_BEFORE_YIELD == 0)
			sched_yield();
		else
			prt__cpu_relax();
	}
	/* relaxed: counted here (x's thread never writes it), many revokers may add */
	atomic_fetch_add_explicit(&x->stats.bias_revocations, 1, memory_order_relaxed);
	return true;
}

/*
 * prt__rq_lock's slow half: @x's lock is held, for another thread's
 * queue edit, or kept by x's thread. Kept: mark @want, which x's next
 * yield honours, and revoke the bias if it does not come soon.
 */
prt__noinline void prt__rq_lock_slow(struct prt__worker *x)
{
	unsigned n = 0, kn = 0;
	bool wanted = false;

	for (;;) {
		while (atomic_load_explicit(&x->rq.lock.v, memory_order_relaxed)) {
			/* relaxed, both: hints; the lock word, or rq_revoke, decides */
			if (atomic_load_explicit(&x->rq.kept, memory_order_relaxed)) {
				if (!atomic_load_explicit(&x->rq.want, memory_order_relaxed))
					atomic_store_explicit(&x->rq.want, 1, memory_order_relaxed);
				wanted = true;
				if (++kn >= PRT_BIAS_REVOKE_AFTER && prt__rq_revoke(x))
					goto held;
			}
			if (++n % PRT_RQ_SPIN_BEFORE_YIELD == 0)
				sched_yield();
			else
				prt__cpu_relax();
		}
		/* acquire: pairs with the release in prt__spin_unlock */
		if (atomic_exchange_explicit(&x->rq.lock.v, 1, memory_order_acquire) == 0)
			break;
	}
held:
	if (wanted)
		atomic_store_explicit(&x->rq.want, 0, memory_order_relaxed); /* x's lock held */
}

bool prt__rq_unbias(struct prt__worker *x)
{
	if (x != prt__cur_worker())
		return false; /* another thread's lock, taken as any */
	/* x's thread, in a section it entered kept: the bias ends here. */
	x->bias_held = false;
	/* relaxed: a hint, as in prt__rq_unlock_keep */
	if (atomic_load_explicit(&x->rq.want, memory_order_relaxed)) {
		atomic_store_explicit(&x->rq.want, 0, memory_order_relaxed);
		prt__bias_backoff(x);
	}
	if (prt__rq_plain(x))
		return false; /* held as any lock: the caller drops the word */
	/* Revoked: the revoker waits for in_cs == 0 and then holds the lock. */
	prt__bias_backoff(x);
	/* release: it takes the queue as left here */
	atomic_store_explicit(&x->rq.in_cs, 0, memory_order_release);
	return true;
}

/*
 * Aligned to a cache line, as prt__ctx_switch (switch.S): where the
 * link put it 48 bytes into a line, W1 ran ~3-6% slower than the same
 * code on a line's start (session 34, 24 interleaved rounds), and its
 * worst rounds worse.
 */
PRT_API prt__cacheline_aligned int prt_yield(void)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *self;
	uint32_t bm;

	if (prt__unlikely(!w))
		return -EPERM;
	self = w->curr;
	if (prt__unlikely(!prt__fiber_allowed(self, w->index))) {
		prt__migrate_self(w);
		return 0;
	}
	/*
	 * Valgrind runs one thread at a time and switches after a fixed
	 * count of basic blocks, so a fiber looping on prt_yield (a fixed
	 * count per round, half of it under this rq lock) can be stopped
	 * inside the lock at every switch, in phase: another worker that
	 * must take the lock (a wakeup or spawn onto this worker) spun on it
	 * for 7-17+ minutes in test_rwlock. A system call here hands
	 * valgrind's lock over with the run queue free.
	 */
	if (prt__unlikely(w->os_yield))
		sched_yield();
	prt__io_point(w); /* completions wake their fibers: they compete too */
	prt__rq_lock_own(w);
	if (prt__unlikely(prt__has_timers(w)))
		prt__run_timers(w); /* sleepers due now compete at this point */
	bm = w->rq.bitmap;
	/*
	 * Nothing outranks what we serve: go on, unless we run for a donor
	 * whose chain no longer leads here (its timedlock, or a link's
	 * further down, expired or was cancelled): pick again.
	 */
	if ((prt__unlikely(!bm) || prt__rq_top(bm) < prt__served_prio(w)) &&
	    (prt__likely(w->donor == self) || prt__proxy_serves(w->donor, self))) {
		prt__rq_unlock_keep(w); /* sleepers that fired wait here: others may take them */
		return 0;
	}
	if (prt__likely(w->donor == self)) {
		/* The common case, inlined: no proxy, the head entry runs no proxy. */
		struct prt__fiber *next = prt__rq_first(w); /* bm is w->rq.bitmap, not 0 */

		if (prt__likely(!atomic_load_explicit(&next->blocked_on, memory_order_relaxed) &&
				prt__fiber_allowed(next, w->index))) {
			if (prt__unlikely(!prt__rq_swap(w, next, self))) {
				prt__rq_del(w, next);
				prt__rq_add(w, self, false);
			}
			prt__announce_locked(w, self); /* an idle worker may take us */
			prt__preempt_picked(w, next, next);
			prt__rq_unlock_keep(w);
			prt__switch_to(w, self, next, next);
			return 0;
		}
	}
	prt__put_donor(w, true);
	prt__rq_add(w, self, false);
	prt__announce_locked(w, self);
	prt__reschedule(w, self);
	return 0;
}

/* Lock the run queue holding @f, if any (the kernel's task_rq_lock loop). */
static struct prt__worker *lock_fiber_rq(struct prt__fiber *f)
{
	for (;;) {
		struct prt__worker *w = atomic_load_explicit(&f->rq_worker, memory_order_relaxed);

		if (!w)
			return NULL;
		prt__rq_lock(w);
		if (atomic_load_explicit(&f->rq_worker, memory_order_relaxed) == w)
			return w;
		prt__rq_release(w);
	}
}

/*
 * lock_fiber_rq for a priority or affinity change: the new priority or
 * affinity is stored. A queuer (a yield, a wake's enqueue) may be
 * inside an rq lock, having loaded the old priority for the level (or
 * the old affinity flag for rq_any), with rq_worker not yet published:
 * it would queue the fiber at the old level, and the change would find
 * nothing to move (a review's reasoning; test_prio_change_while_queueing,
 * test_affinity_change_while_queueing). If the fiber is queued nowhere
 * as we look, wait for each worker's rq lock to be free once (every
 * queueing that began before our store is then done, every later one
 * reads the new value) and look again. Only the change pays, a lock
 * round per worker, when it finds the fiber running or asleep.
 */
static struct prt__worker *lock_fiber_rq_settled(struct prt__fiber *f)
{
	struct prt_runtime *rt = f->rt;
	struct prt__worker *w = lock_fiber_rq(f);

	if (w)
		return w;
	prt__fault_pause(PRT_PAUSE_REQUEUE_SETTLE);
	for (int i = 0; i < rt->nworkers; i++) {
		prt__rq_lock(rt->workers[i]);
		prt__rq_release(rt->workers[i]);
	}
	return lock_fiber_rq(f);
}

void prt__requeue(struct prt__fiber *f)
{
	struct prt__worker *w = lock_fiber_rq_settled(f);
	bool kick = false;

	if (!w) {
		/* Not queued: running, or served by a proxy, maybe now below a queued fiber. */
		if (prt__unlikely(f->rt->preempt_quantum))
			prt__preempt_served_changed(f, NULL, false);
		return;
	}
	if (f->rq_prio != atomic_load_explicit(&f->prio, memory_order_relaxed)) {
		prt__rq_del(w, f);
		prt__rq_add(w, f, false);
		/* Raised above what its worker runs: a wakeup as any other (preempt.c). */
		kick = prt__preempt_queued(w, f);
	}
	prt__rq_release(w);
	if (prt__unlikely(kick))
		prt__preempt_kick(w);
}

void prt__migrate_queued(struct prt__fiber *f, bool settle)
{
	/*
	 * An affinity change settles: a queuer inside an rq lock may have
	 * read the old affinity flag for the roaming count (rq_any) with
	 * rq_worker not yet published, and the fiber would stay counted as
	 * what it was (a review of session 36; test_affinity_change_while_
	 * queueing). The handoff's call (mutex.c) needs no settling: it
	 * looks for a donor it just made runnable, queued or not.
	 */
	struct prt__worker *w = settle ? lock_fiber_rq_settled(f) : lock_fiber_rq(f);

	if (!w)
		return;
	/*
	 * relaxed: prt_fiber_set_affinity stores aff_all before it calls us;
	 * another caller that reads a stale value leaves the fiber where the
	 * pick sends it home (PRT_PICK_MOVE).
	 */
	/* A preempted fiber resumes where it was stopped; it moves at its next scheduling point. */
	if (f->preempted || (prt__fiber_allowed(f, w->index) &&
			     f->rq_any == atomic_load_explicit(&f->aff_all, memory_order_relaxed))) {
		/* It stays. Counted as a donor but handed its lock? Thieves may take it now. */
		if (prt__rq_recount(w, f))
			prt__announce_locked(w, f);
		prt__rq_unlock(w);
		return;
	}
	prt__rq_del(w, f);
	prt__rq_release(w);
	prt__wake(f);
}

/* ---- the timer watch, busy side (protocol 2, V's side) ------------------ */

/*
 * Earliest timer of the workers other than @w that do not sleep: they
 * may be busy for long with a fiber that makes no runtime call. (A
 * sleeping worker wakes for its own.) Protocol 2: seq_cst loads, after
 * the caller's seq_cst store.
 */
uint64_t prt__busy_next(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;
	uint64_t m = PRT_NO_DEADLINE;

	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *v = rt->workers[i];
		uint64_t t;

		/* seq_cst: pairs with the exchange that ends v's sleep (idle.c, worker_park) */
		if (v == w || atomic_load_explicit(&v->sleeping, memory_order_seq_cst))
			continue;
		/* seq_cst: pairs with the store in prt__timer_add() (timer.c) */
		t = atomic_load_explicit(&v->timers.next, memory_order_seq_cst);
		if (t < m)
			m = t;
	}
	return m;
}

/* Does a sleeping worker other than @w wake by @d, to look at the timers again? */
bool prt__timer_watched(struct prt__worker *w, uint64_t d)
{
	struct prt_runtime *rt = w->rt;

	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *v = rt->workers[i];

		/* seq_cst: pairs with the store in park_deadline() (idle.c) */
		if (v != w && atomic_load_explicit(&v->sleeping, memory_order_seq_cst) &&
		    atomic_load_explicit(&v->park_until, memory_order_seq_cst) <= d)
			return true;
	}
	return false;
}

/*
 * Protocol 2, V's side: @d is the earliest timer of a worker that does
 * not sleep (@w, or others @w stops watching). Unless a sleeper wakes by
 * then, wake one: it looks again and sleeps until @d at most.
 */
void prt__watch_timer(struct prt__worker *w, uint64_t d)
{
	struct prt_runtime *rt = w->rt;

	/* seq_cst: pairs with the increment in worker_park() (idle.c) */
	if (d == PRT_NO_DEADLINE || rt->nworkers == 1 ||
	    atomic_load_explicit(&rt->nr_idle, memory_order_seq_cst) <= 0 || prt__timer_watched(w, d))
		return;
	prt__wake_one_near(w);
}
