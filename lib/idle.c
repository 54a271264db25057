/* SPDX-License-Identifier: MIT */
/*
 * The idle context: each worker thread's own stack, where a worker with
 * nothing queued looks for work (its own queue and timers, stealing in
 * topology order, the due timers of busy workers), spins briefly, then
 * sleeps in its io_uring (or epoll) until woken or a deadline. This is
 * the W side of both wakeup protocols at the top of sched.c: a worker
 * going to sleep publishes that it sleeps, then looks for work once
 * more (protocol 1), and sleeps no later than the earliest timer that
 * no other sleeper watches (protocol 2, the timer watch).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>

#include "idle.h"
#include "runtime_int.h"
#include "sched_priv.h"
#include "switch.h"
#include "worker.h"

/* How long an idle worker looks for work before it sleeps. */
#define PRT_SPIN_NS 50000L
/* Most queue entries a thief examines in one victim. */
#define PRT_STEAL_SCAN 64

static struct prt__fiber *pick_local(struct prt__worker *w, struct prt__fiber **donor)
{
	if (!atomic_load_explicit(&w->rq.nr, memory_order_relaxed) && !prt__has_timers(w))
		return NULL;
	prt__rq_lock(w);
	return prt__pick_unlock(w, donor);
}

/*
 * May worker @w steal queued @f? docs/design.md: never a fiber blocked on
 * a mutex, nor a preempted one (it resumes where it was stopped).
 */
static inline bool may_steal(struct prt__worker *w, struct prt__fiber *f)
{
	return prt__fiber_allowed(f, w->index) &&
	       !atomic_load_explicit(&f->blocked_on, memory_order_relaxed) && !f->preempted;
}

/* Move every entry of @from to the tail of @to, in order. */
static void list_append(struct prt__list *to, struct prt__list *from)
{
	while (!prt__list_empty(from)) {
		struct prt__list *n = from->next;

		prt__list_del(n);
		prt__list_add_tail(to, n);
	}
}

/*
 * A fiber that ran before is hot for this long after a thief first
 * passed over it, queued: its data is in its worker's cache, and that
 * worker is likely to run it soon. Linux's sched_migration_cost (500 us)
 * plays this part in its balancer (task_hot).
 */
#define PRT_STEAL_HOT_NS 500000
/*
 * How far the second look goes when the first took something: the few
 * oldest, which age (PRT_STEAL_HOT_NS) even when new fibers keep
 * coming. Reading further ahead pulled the lines of the fibers the
 * victim runs next to the thief's CPU (W2, far placement: 251 ns a spawn
 * with 64 looked at, 191 with 4).
 */
#define PRT_STEAL_AGED_LOOK 4
/*
 * Most never-run fibers one steal takes. A burst of spawns (W2: 1000
 * empty fibers, then their joins) is taken a few at a time: each stolen
 * fiber runs after its descriptor and stack top cross to the thief
 * (~500 ns here, docs/design.md section 5), the victim runs its own at
 * ~100 ns, so a thief that took half the burst finished last and the
 * joiner waited for it. Taking a few, and coming back for more once
 * they ran and the grace ran out again, lets the thief's intake follow
 * its own progress: W2 with 2 workers, 325-395 ns a fiber taking half,
 * 158-217 taking 8, interleaved (docs/design.md, "Stealing"), where 4
 * measured as 8. In the EPYC host's fast placement (session 40, 6
 * interleaved rounds) 8 gave 107-125 ns, 4 97-100, 2 90-100, 16
 * 120-128: 4. Fibers that ran are still taken up to half the queue:
 * they are a backlog the victim has already had its turn at.
 */
#define PRT_STEAL_FRESH_MAX 4

/* now_ns in 1024 ns units, never 0 (0 = not marked) */
static uint32_t steal_clock(void)
{
	uint32_t t = (uint32_t)(prt__now_ns() >> 10);

	return t ? t : 1;
}

/*
 * Take up to half of @v's queue (of never-run fibers, PRT_STEAL_FRESH_MAX
 * at most), skipping fibers that may not run on @w
 * and fibers blocked on a mutex (docs/design.md: they stay where proxy
 * execution finds them). Returns the first taken, and queues the rest on
 * @w, highest level first, each level in @v's order.
 *
 * Levels are taken highest first, and a lower one only once nothing of
 * a higher one that @w may take is left. Within a level, two looks, of
 * PRT_STEAL_SCAN entries at most each:
 * - From the tail, fibers that have never run, the newest first:
 *   nothing of theirs is in @v's cache yet, and the oldest are what @v
 *   runs next, and what a joiner joining in spawn order waits for first.
 * - From the head, the oldest first: any fiber if the first look took
 *   none; else, among the PRT_STEAL_AGED_LOOK oldest, those passed over
 *   by a thief PRT_STEAL_HOT_NS ago or more (the first pass-over starts
 *   the clock). A fiber that ran has its data in @v's cache, and @v is
 *   about to run the oldest (Linux's balancer leaves cache-hot tasks
 *   so, task_hot); but none waits for good behind a stream of new ones.
 * W2 (spawn 1000, join them; 2 workers) showed why: the spawner's first
 * join wakes it at the tail of its own queue, behind what it spawned,
 * and a thief took it with its half about once a batch: each next batch
 * of spawns ran on the other CPU, away from the spawner's handles,
 * stacks and descriptors.
 */
static struct prt__fiber *steal_from(struct prt__worker *w, struct prt__worker *v, bool wait)
{
	struct prt__list got, cold, fresh;
	struct prt__fiber *first = NULL;
	unsigned quota, n = 0, fresh_n = 0;
	uint32_t now = 0;

	/* Nothing, or only donors (a stale hint costs a missed steal, never a fiber). */
	if (!atomic_load_explicit(&v->rq.stealable, memory_order_relaxed))
		return NULL;
	if (wait)
		prt__rq_lock(v);
	else if (!prt__rq_trylock_idle(v))
		return NULL;
	prt__list_init(&got);
	quota = (atomic_load_explicit(&v->rq.nr, memory_order_relaxed) + 1) / 2; /* v's rq lock */
	for (uint32_t bm = v->rq.bitmap; bm && n < quota; bm &= ~(1u << prt__rq_top(bm))) {
		struct prt__list *h = prt__rq_level(&v->rq, prt__rq_top(bm)), *it, *nx, *newer = &fresh;
		unsigned scanned = 0, took = 0, aged;
		bool left = false; /* something here @w may take is left behind */

		prt__list_init(&fresh);
		prt__list_init(&cold);
		for (it = h->prev; it != h && n < quota; it = nx) {
			struct prt__fiber *f = prt__container_of(it, struct prt__fiber, rq_node);

			if (scanned++ == PRT_STEAL_SCAN || fresh_n == PRT_STEAL_FRESH_MAX) {
				left = true;
				break;
			}
			nx = it->prev;
			if (!may_steal(w, f) || PRT_READ_ONCE(f->last_worker))
				continue;
			prt__rq_del(v, f);
			prt__list_add_tail(newer, &f->rq_node); /* before the newer one taken last */
			newer = &f->rq_node;
			n++;
			took++;
			fresh_n++;
		}
		scanned = 0;
		/* After a first look that took some, past the quota: these few age however full it is. */
		for (it = h->next, aged = 0; it != h && (took || n < quota); it = nx) {
			struct prt__fiber *f = prt__container_of(it, struct prt__fiber, rq_node);

			if (scanned++ == PRT_STEAL_SCAN || aged == PRT_STEAL_AGED_LOOK) {
				left = true;
				break;
			}
			nx = it->next;
			if (!may_steal(w, f))
				continue; /* (not counted in the few: pinned, donors, preempted) */
			if (took) {
				/* Taken once it waited out PRT_STEAL_HOT_NS from its first pass-over. */
				aged++;
				if (!now)
					now = steal_clock();
				if (!f->steal_mark)
					f->steal_mark = now;
				if ((uint64_t)(uint32_t)(now - f->steal_mark) << 10 < PRT_STEAL_HOT_NS) {
					left = true;
					continue;
				}
			}
			prt__rq_del(v, f);
			prt__list_add_tail(&cold, &f->rq_node);
			n++;
		}
		list_append(&got, &cold);
		list_append(&got, &fresh);
		/*
		 * Not below what is left here; nor below once the cap is
		 * reached: a lower level's look from the head takes any fiber,
		 * never-run ones too (a review: 32-66 taken with exactly 8
		 * never-run fibers one level up).
		 */
		if (left || fresh_n == PRT_STEAL_FRESH_MAX)
			break;
	}
	/* Only donors (or nothing) left: thieves need not look until an edit sets it again. */
	if (atomic_load_explicit(&v->rq.nr, memory_order_relaxed) ==
	    atomic_load_explicit(&v->rq.nr_donor, memory_order_relaxed))
		prt__rq_hint(&v->rq, false);
	prt__rq_release(v);
	if (!n)
		return NULL;
	first = prt__container_of(got.next, struct prt__fiber, rq_node);
	prt__list_del(&first->rq_node);
	if (n > 1) {
		prt__rq_lock(w);
		while (!prt__list_empty(&got)) {
			struct prt__fiber *f = prt__container_of(got.next, struct prt__fiber, rq_node);

			prt__list_del(&f->rq_node);
			prt__rq_add(w, f, false);
		}
		prt__rq_release(w);
	}
	prt__stat_inc(&w->stats.steals, n);
	return first;
}

/*
 * Would steal_from(@w, @v) take something (grace aside)? @v's rq lock
 * held. It looks where steal_from does, no further: per level, highest
 * first, the PRT_STEAL_SCAN newest for a fiber that never ran, the
 * PRT_STEAL_SCAN oldest for any fiber; a level whose looks end before
 * its end hides the levels below, as in steal_from. A fiber further in
 * (behind as many that @w may not take, from both ends) is left to @v,
 * which runs it in its turn: counting it (as nr_any once did) kept an
 * idle worker spinning for it forever (a review's reproducers).
 */
static bool reachable(struct prt__worker *w, struct prt__worker *v)
{
	/* relaxed: v's rq lock held, under which they are written */
	if (atomic_load_explicit(&v->rq.nr, memory_order_relaxed) ==
	    atomic_load_explicit(&v->rq.nr_donor, memory_order_relaxed))
		return false;
	for (uint32_t bm = v->rq.bitmap; bm; bm &= ~(1u << prt__rq_top(bm))) {
		struct prt__list *h = prt__rq_level(&v->rq, prt__rq_top(bm)), *it;
		unsigned scanned = 0;
		bool cut;

		for (it = h->prev; it != h && scanned < PRT_STEAL_SCAN; it = it->prev, scanned++) {
			struct prt__fiber *f = prt__container_of(it, struct prt__fiber, rq_node);

			if (may_steal(w, f) && !PRT_READ_ONCE(f->last_worker))
				return true;
		}
		cut = it != h;
		for (it = h->next, scanned = 0; it != h && scanned < PRT_STEAL_SCAN;
		     it = it->next, scanned++)
			if (may_steal(w, prt__container_of(it, struct prt__fiber, rq_node)))
				return true;
		if (cut || it != h)
			return false;
	}
	return false;
}

/* Steal from the others, nearest first; *@from: the victim. */
static struct prt__fiber *steal(struct prt__worker *w, bool wait, struct prt__worker **from)
{
	struct prt_runtime *rt = w->rt;
	const int *order = rt->topo.w[w->index].steal_order;

	for (int i = 0; i < rt->nworkers - 1; i++) {
		struct prt__fiber *f = steal_from(w, rt->workers[order[i]], wait);

		if (f) {
			*from = rt->workers[order[i]];
			return f;
		}
	}
	return NULL;
}




/*
 * @w leaves the idle loop to run a fiber, with timers of its own, or
 * having published sleeping = 1 since it last ran one: sleepers may
 * have left its timers to it, or counted on it to wake for a busy
 * worker's. Now it is busy itself.
 */
static void left_park(struct prt__worker *w)
{
	uint64_t own, busy;

	w->was_parked = false;
	/* seq_cst: pairs with the increment in worker_park() */
	if (w->rt->nworkers == 1 || atomic_load_explicit(&w->rt->nr_idle, memory_order_seq_cst) <= 0)
		return;
	own = atomic_load_explicit(&w->timers.next, memory_order_relaxed);
	busy = prt__busy_next(w);
	prt__watch_timer(w, own < busy ? own : busy);
}

/*
 * Fire the due timers of workers that do not sleep, which may be busy
 * (Go's findrunnable runs other Ps' timers likewise): what they wake is
 * queued there, for us to steal. Returns true if any fired.
 */
static bool fire_busy_timers(struct prt__worker *w, uint64_t now)
{
	struct prt_runtime *rt = w->rt;
	bool fired = false;

	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *v = rt->workers[i];

		if (v == w || atomic_load_explicit(&v->timers.next, memory_order_relaxed) > now ||
		    atomic_load_explicit(&v->sleeping, memory_order_relaxed) ||
		    !prt__rq_trylock_idle(v))
			continue;
		fired |= prt__fire_timers(v, &v->timers, now) != 0;
		prt__rq_unlock(v); /* wakes sleepers its fibers may run on */
	}
	return fired;
}

static long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Does a worker other than @w have work queued that a thief may take (its hint)? */
static bool other_stealable(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;

	for (int i = 0; i < rt->nworkers; i++)
		if (rt->workers[i] != w &&
		    atomic_load_explicit(&rt->workers[i]->rq.stealable, memory_order_relaxed))
			return true;
	return false;
}

/* Nothing for @w to take anywhere: the next sighting starts the grace. */
static void grace_reset(struct prt__worker *w)
{
	w->steal_seen = 0;
	w->steal_now = false;
}

/* Work is there for @w to take (rt->steal_grace not 0): has its grace run out? */
static bool grace_over(struct prt__worker *w, long now)
{
	struct prt_runtime *rt = w->rt;

	if (w->steal_now && rt->steal_grace != UINT64_MAX)
		return true;
	if (!w->steal_seen)
		w->steal_seen = now;
	return (uint64_t)(now - w->steal_seen) >= rt->steal_grace;
}

/*
 * The steal grace: may @w steal now? Only once some other worker has
 * had work @w may take for rt->steal_grace ns as @w saw it: a busy
 * worker that is about to run what it queued (a spawner about to join,
 * a waker about to block) keeps it, and its lines stay in its cache. A
 * stolen fiber runs after its descriptor, stack and the waker's data
 * cross to the thief's CPU, at ~200 ns a line on the VM measured
 * (docs/design.md, section 5), which outweighs a short fiber's run;
 * Linux likewise leaves cache-hot tasks where they are, and Go leaves a
 * running P's runnext to it for ~3 us. Counted from the first look that
 * found work queued on another worker, across spins, parks and @w's own
 * fibers in between, until @w steals or sees none: a backlog that an
 * idle worker sees each time it looks is taken however short its idle
 * moments are. Due at once after @w fired a busy worker's timers
 * (steal_now): the fibers they woke wait for no cache of theirs.
 */
static bool steal_due(struct prt__worker *w, long now)
{
	struct prt_runtime *rt = w->rt;

	if (!rt->steal_grace)
		return true;
	if (rt->steal_grace == UINT64_MAX)
		return false; /* never, not even what the timers woke */
	if (!other_stealable(w)) {
		grace_reset(w); /* (and what the timers woke was taken) */
		return false;
	}
	return grace_over(w, now);
}

/*
 * @w leaves the idle loop for a fiber of its own while a busy worker
 * has work a thief may take: @w may have been the one worker woken for
 * it (an enqueue wakes one at most), and the others may sleep with no
 * deadline. Wake one to take it (after its grace) instead. A review's
 * reproducer, three workers: such a fiber waited the whole run of the
 * busy worker's fiber (1 s) in 10 of 10 rounds with the grace, 4 of 10
 * without.
 */
static void watch_handover(struct prt__worker *w)
{
	if (w->rt->steal_grace != UINT64_MAX &&
	    atomic_load_explicit(&w->rt->nr_idle, memory_order_relaxed) > 0 && other_stealable(w))
		prt__wake_thief_near(w, NULL);
}

static void spin_start(struct prt__worker *w)
{
	if (!w->spinning) {
		w->spinning = true;
		atomic_fetch_add_explicit(&w->rt->nr_spinning, 1, memory_order_relaxed);
	}
}

/*
 * Stop spinning. If we were the last spinner and leave work behind that
 * another worker could take (on our queue, or on @victim's, which we
 * stole from), wake one (Go's resetspinning).
 */
static void spin_stop(struct prt__worker *w, struct prt__worker *victim)
{
	struct prt_runtime *rt = w->rt;

	if (!w->spinning)
		return;
	w->spinning = false;
	if (atomic_fetch_sub_explicit(&rt->nr_spinning, 1, memory_order_relaxed) == 1 &&
	    rt->steal_grace != UINT64_MAX &&
	    atomic_load_explicit(&rt->nr_idle, memory_order_relaxed) > 0 &&
	    (atomic_load_explicit(&w->rq.nr_any, memory_order_relaxed) > 0 ||
	     (victim && atomic_load_explicit(&victim->rq.nr_any, memory_order_relaxed) > 0) ||
	     other_stealable(w)))
		prt__wake_thief_near(w, NULL);
}

/*
 * @must_look: the last park found work it may take (work_pending), so
 * look for it even past the spinner cap; else a capped worker would
 * return here and to the park in a loop, never taking it (Go's
 * findrunnable likewise spins after its last look finds work).
 */
static struct prt__fiber *find_work(struct prt__worker *w, struct prt__fiber **donor,
				    bool must_look)
{
	struct prt_runtime *rt = w->rt;
	struct prt__worker *victim;
	struct prt__fiber *f;
	long until = 0;

	if ((f = pick_local(w, donor))) {
		watch_handover(w); /* not spinning: spin_stop does this for a spinner */
		return f;
	}
	if (rt->nworkers == 1)
		return NULL;
	/*
	 * More workers than CPUs, and enough spinners already (Go's rule: at
	 * most half the busy workers spin)? Then sleep: spinners would take
	 * the CPU from the workers that have work. An enqueue wakes a sleeper
	 * when nobody spins. With a CPU each, spinning costs nobody and
	 * catches the next wakeup without a kick.
	 */
	if (rt->oversubscribed && !must_look &&
	    2 * atomic_load_explicit(&rt->nr_spinning, memory_order_relaxed) >=
		    rt->nworkers - atomic_load_explicit(&rt->nr_idle, memory_order_relaxed))
		return NULL;
	spin_start(w);
	for (unsigned i = 0;; i++) {
		prt__io_point(w);
		if ((f = pick_local(w, donor))) {
			spin_stop(w, NULL);
			return f;
		}
		if (steal_due(w, w->rt->steal_grace ? now_ns() : 0) &&
		    (f = steal(w, false, &victim))) {
			/* Stolen fibers never wait on a mutex: no proxy. */
			grace_reset(w);
			*donor = f;
			if (prt__unlikely(w->pw.quantum)) {
				prt__rq_lock(w);
				prt__preempt_picked(w, f, f);
				prt__rq_unlock(w);
			}
			spin_stop(w, victim);
			return f;
		}
		if (atomic_load_explicit(&rt->stopping, memory_order_relaxed))
			break;
		if ((i & 15) == 0) {
			long t = now_ns();

			if (fire_busy_timers(w, (uint64_t)t)) {
				w->steal_now = true; /* steal what they woke */
				continue;
			}
			if (!until)
				until = t + PRT_SPIN_NS;
			else if (t >= until)
				break;
		}
		prt__cpu_relax();
	}
	spin_stop(w, NULL);
	return NULL;
}

/*
 * Work on other workers that @w may take but whose steal grace has not
 * run out (steal_due): not pending, or an idle worker would spin for the
 * whole grace (and for good with "never"); @w sleeps until the grace
 * ends instead (w->steal_wake, for park_deadline), or until woken.
 */
static bool steal_pending(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;

	if (!rt->steal_grace || grace_over(w, now_ns()))
		return true;
	w->steal_wake = prt__add_sat((uint64_t)w->steal_seen, rt->steal_grace);
	return false;
}

/* Anything @w must not sleep through? Caller has published sleeping = 1. */
static bool work_pending(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;
	bool found, other = false;

	w->steal_wake = PRT_NO_DEADLINE;
	prt__rq_lock(w);
	found = w->rq.nr != 0;
	prt__rq_release(w);
	for (int i = 0; i < rt->nworkers && !found && !other; i++) {
		struct prt__worker *v = rt->workers[i];

		if (v == w)
			continue;
		prt__rq_lock(v);
		other = reachable(w, v);
		prt__rq_release(v);
	}
	if (other)
		found = steal_pending(w);
	else if (!found)
		grace_reset(w);
	/* A busy worker's timer already due: fire it (find_work), do not sleep. */
	if (!found && rt->nworkers > 1)
		found = prt__busy_next(w) <= prt__now_ns();
	/*
	 * seq_cst: our store of sleeping, then this load; destroy stores
	 * stopping, then wakes every worker (exchange of sleeping): one of
	 * us sees the other.
	 */
	return found || atomic_load_explicit(&rt->stopping, memory_order_seq_cst);
}

/*
 * Protocol 2, W's side: the deadline @w (sleeping = 1 published, no
 * work found) sleeps until, published in park_until. Its own next
 * timer, or a busy worker's if that comes first and no other sleeper
 * wakes for it by then.
 */
static uint64_t park_deadline(struct prt__worker *w)
{
	uint64_t until, busy;

	prt__rq_lock(w);
	until = prt__timers_first(&w->timers);
	if (prt__timers_first(&w->iotimers) < until)
		until = prt__timers_first(&w->iotimers);
	prt__rq_release(w);
	/* relaxed: a hint; the trim reads it again under depot_lock */
	if (atomic_load_explicit(&w->rt->stack_trim_at, memory_order_relaxed) < until)
		until = atomic_load_explicit(&w->rt->stack_trim_at, memory_order_relaxed);
	if (w->rt->nworkers == 1)
		return until;
	if (w->steal_wake < until)
		until = w->steal_wake; /* a steal grace ends (work_pending) */
	for (;;) {
		/* seq_cst: pairs with the loads in prt__timer_watched() */
		atomic_store_explicit(&w->park_until, until, memory_order_seq_cst);
		busy = prt__busy_next(w);
		if (busy >= until || prt__timer_watched(w, busy))
			return until;
		until = busy;
	}
}

/*
 * cfg.timer_lead_ns: the park slept until @until less the lead (or not
 * at all); spin the rest of the way, unless woken meanwhile (a waker
 * clears sleeping before its kick) or the backend has something to
 * service (prt__io_waiting: a completion, the kernel asking to be
 * entered, a command). Requests that only a poll finds (epoll's fd
 * waiters) are polled here, every 64 rounds, without leaving the park:
 * a fiber the poll wakes is queued here, which wakes us as any waker
 * does (a park per poll cost 4.5 us each and took every worker's rq
 * lock). A sleeping CPU in a VM wakes 50-200 us after its timer; a
 * spinning one is there within a few (docs/design.md, section 11).
 */
static void lead_spin(struct prt__worker *w, uint64_t until)
{
	/* relaxed: a hint; worker_park's exchange after us is the one that counts */
	for (unsigned i = 1; atomic_load_explicit(&w->sleeping, memory_order_relaxed) == 1 &&
			     !prt__io_waiting(&w->io) && prt__now_ns() < until;
	     i++) {
		if (w->io.watch.polled && (i & 63) == 0)
			prt__io_service(w, false);
		prt__cpu_relax();
	}
}

/* Sleep until woken. Returns true if it did not sleep: work was pending. */
static bool worker_park(struct prt__worker *w)
{
	struct prt_runtime *rt = w->rt;

	w->was_parked = true;
	/*
	 * seq_cst: the stores of protocol 1 (sched.c), before work_pending's
	 * look; an enqueuer's loads of them pair through the rq lock, the
	 * timer watch's loads (protocol 2) directly.
	 */
	atomic_store_explicit(&w->sleeping, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&rt->nr_idle, 1, memory_order_seq_cst);
	if (work_pending(w)) {
		/* Undo, unless a waker already did (it then also decremented nr_idle). */
		if (atomic_exchange_explicit(&w->sleeping, 0, memory_order_seq_cst) == 1)
			atomic_fetch_sub_explicit(&rt->nr_idle, 1, memory_order_seq_cst);
		return true;
	}
	prt__stat_inc(&w->stats.parks, 1);
	/*
	 * Sleep in the ring (or epoll) until a kick (wake_worker clears
	 * sleeping, then kicks), an I/O completion, or the deadline. Any
	 * return ends the park: the loop looks for work again, and parks
	 * again if there is none; a stale kick costs one round.
	 */
	/* acquire: pairs with the acq_rel exchange in prt__wake_worker() */
	if (atomic_load_explicit(&w->sleeping, memory_order_acquire) == 1) {
		uint64_t until = park_deadline(w);

		if (rt->timer_lead && until != PRT_NO_DEADLINE) {
			/* (prt__io_wait: 0 is no deadline; a lead past the clock's start has none to sleep) */
			if (until > rt->timer_lead)
				prt__io_wait(w, until - rt->timer_lead);
			lead_spin(w, until);
		} else {
			prt__io_wait(w, until == PRT_NO_DEADLINE ? 0 : until);
		}
	}
	/* seq_cst (protocol 2): before left_park's loads, and the reset below */
	if (atomic_exchange_explicit(&w->sleeping, 0, memory_order_seq_cst) == 1)
		atomic_fetch_sub_explicit(&rt->nr_idle, 1, memory_order_seq_cst);
	atomic_store_explicit(&w->park_until, PRT_NO_DEADLINE, memory_order_relaxed);
	prt__io_service(w, true);
	return false;
}

static void idle_init(struct prt__worker *w)
{
	struct prt__fiber *idle = &w->idle;
	pthread_attr_t attr;

	idle->kind = PRT_FK_IDLE;
	idle->rt = w->rt;
	atomic_init(&idle->on_cpu, 1);
	atomic_init(&idle->state, PRT_FS_RUNNING);
	atomic_init(&idle->prio, PRT_PRIO_MIN);
	atomic_init(&idle->aff_all, true);
	snprintf(idle->name, sizeof(idle->name), "idle-%d", w->index);
#if PRT_USE_TSAN
	idle->tsan_fiber = __tsan_get_current_fiber();
#endif
	if (pthread_getattr_np(pthread_self(), &attr) == 0) {
		pthread_attr_getstack(&attr, &idle->stack.base, &idle->stack.size);
		pthread_attr_destroy(&attr);
	}
	PRT_WRITE_ONCE(w->curr, idle);
	PRT_WRITE_ONCE(w->donor, idle);
}

void *prt__worker_main(void *arg)
{
	struct prt__worker *w = arg;
	struct prt_runtime *rt = w->rt;
	char name[16];
	bool pending = false;

	prt__set_cur_worker(w);
	w->errno_p = &errno;
	w->cxa_eh = prt__cxa_globals();
	snprintf(name, sizeof(name), "prt-w%d", w->index);
	pthread_setname_np(pthread_self(), name);
	prt__topo_bind_thread(&rt->topo, w->index);
	prt__io_thread_start(w);
	prt__sigstack_init(w);
	idle_init(w);
	w->pw.start_err = prt__preempt_worker_start(w);
	/* release: pairs with prt_runtime_create's acquire wait for every worker's start */
	atomic_fetch_add_explicit(&rt->started, 1, memory_order_release);
	for (;;) {
		struct prt__fiber *donor, *next;

		if (w->handover) {
			/* A fiber picked for us while its last worker was still leaving it. */
			next = w->handover;
			donor = w->handover_donor;
			w->handover = NULL;
			prt__switch_to(w, &w->idle, next, donor);
			continue;
		}
		prt__io_service(w, true); /* going idle: submit, reap */
		next = find_work(w, &donor, pending);
		pending = false;
		if (next) {
			if (w->was_parked || PRT_READ_ONCE(w->timers.n))
				left_park(w);
			prt__switch_to(w, &w->idle, next, donor);
			continue;
		}
		/* relaxed: worker_park's look (seq_cst) is the one that counts */
		if (atomic_load_explicit(&rt->stopping, memory_order_relaxed))
			break;
		{
			uint64_t now = 0;

			if (prt__stack_trim_due(rt, &now)) {
				/* Stacks a burst left (stack.c, "Decay"): a batch, then look again. */
				prt__stack_trim(w, now, PRT_TRIM_BATCH);
				continue;
			}
		}
		prt__preempt_idle(w);
		pending = worker_park(w);
	}
	prt__preempt_worker_stop(w);
	prt__io_thread_stop(w);
	prt__sigstack_fini(w);
	prt__set_cur_worker(NULL);
	return NULL;
}
