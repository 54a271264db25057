/* SPDX-License-Identifier: MIT */
/*
 * Fiber mutex: one-CAS fast paths, a priority-ordered waiter list,
 * direct handoff; the waiting side of proxy execution (the pick side is
 * proxy.c). Who owns a mutex, what each owner waits on and deadlock
 * detection are mutex_owner.c ("Owners that end" is there too).
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>

#include "fault.h"
#include "mutex_int.h"
#include "mutex_owner.h"
#include "proxy_int.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "rwlock_int.h"
#include "wait.h"
#include "worker.h"

/* Most polls of an optimistic spin (a pause each: a few microseconds in all). */
#define PRT_MTX_SPIN 512
/*
 * Pauses between two polls of the owner word by a spinning newcomer:
 * each poll pulls the line away from the owner (which often writes data
 * sharing it), so poll about every 50 ns, not every pause.
 */
#define PRT_MTX_SPIN_PAUSES 2

/* ---- waiter list (wait_lock held) ---------------------------------------- */

static void waiters_init(struct prt__mutex *m)
{
	if (!m->waiters.next) /* zero storage: PRT_MUTEX_INITIALIZER */
		prt__list_init(&m->waiters);
}


static void update_top(struct prt__mutex *m)
{
	struct prt__mwaiter *f = prt__mutex_first_waiter(m);

	atomic_store_explicit(&m->top, f ? f->pl.prio + 1 : 0, memory_order_relaxed);
}

static void insert(struct prt__mutex *m, struct prt__mwaiter *r)
{
	r->since = prt__now_ns();
	/*
	 * seq_cst store of blocked_on, then seq_cst load of prio: pairs with
	 * prt_fiber_set_priority's store of prio then prt__waits_reprio's
	 * load of blocked_on. Either the record gets the new priority here,
	 * or the re-sort (which needs wait_lock) finds it on the list.
	 */
	prt__set_waits_on(r->token, m);
	if (r->fiber) {
		r->pl.prio = atomic_load_explicit(&r->fiber->prio, memory_order_seq_cst);
		r->fiber->mwait = r;
	}
	prt__mwaiter_insert(&m->waiters, r);
	update_top(m);
}

/* @r was just unlinked from the list: it waits no more. */
static void forget_waiter(struct prt__mutex *m, struct prt__mwaiter *r)
{
	update_top(m);
	if (r->fiber)
		r->fiber->mwait = NULL;
	prt__set_waits_on(r->token, NULL);
}

static bool handoff_locked(struct prt__mutex *m, uintptr_t o, struct prt__mwaiter *r,
			   bool joining, struct prt__handoff *h);

/*
 * The first waiter changed from @was (it left, or priorities moved). If
 * the lock is released to its waiters (lateral stealing), the new first
 * waiter now owns the claim: one that sleeps cannot come for it, so it
 * is handed the lock (@h, to wake once wait_lock is dropped). A runnable
 * one takes it when it runs. wait_lock held.
 */
static void claim_moved(struct prt__mutex *m, struct prt__mwaiter *was, struct prt__handoff *h)
{
	struct prt__mwaiter *first = prt__mutex_first_waiter(m);
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);

	if (first && first != was && !(o & ~PRT_MTX_FLAGS) && (first->sleeping || first->parker))
		handoff_locked(m, o, first, false, h); /* fails only if taken meanwhile */
}

/*
 * Take @r off the list (it gives up: timeout, deadlock, no memory);
 * keeps the flag honest, and passes on a claim @r had (claim_moved).
 */
static void dequeue(struct prt__mutex *m, struct prt__mwaiter *r, struct prt__handoff *h)
{
	struct prt__mwaiter *was = prt__mutex_first_waiter(m);
	uintptr_t o;

	prt__mwaiter_del(&m->waiters, r);
	forget_waiter(m, r);
	if (prt__mutex_first_waiter(m)) {
		claim_moved(m, was, h);
		return;
	}
	o = atomic_load_explicit(&m->owner, memory_order_relaxed);
	/*
	 * relaxed: this changes the flag alone and publishes nothing (the
	 * list is under wait_lock). A locker whose acquire CAS reads the
	 * word we leave still synchronizes with the release that last
	 * unlocked it: a read-modify-write continues its release sequence.
	 */
	while ((o & PRT_MTX_WAITERS) &&
	       !atomic_compare_exchange_weak_explicit(&m->owner, &o, o & ~PRT_MTX_WAITERS,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/*
 * Handoff and lateral stealing.
 *
 * Strict FIFO handoff between fibers of equal priority turns a busy lock
 * into a convoy: the lock goes to a waiter that is not running, and
 * every fiber that comes for it meanwhile must queue too (2 M ops/s on
 * W3, against Go's 7.5 M). So unlock hands over only when it must:
 *
 *   - to the donor this worker serves, if it waits here (proxy chain);
 *   - to the first waiter if it outranks the unlocking fiber, sleeps off
 *     the run queues (proxy off, thread owner, condvar, plain thread), or
 *     has waited PRT_MTX_STARVE_NS (as Go's starvation mode);
 *
 * otherwise (the first waiter is a queued donor of the unlocker's own
 * priority) the mutex is released with PRT_MTX_WAITERS still set: the
 * donor is runnable already and retries when picked, and meanwhile a
 * fiber of at least the first waiter's priority that comes for the lock
 * takes it (a lateral steal, as rt_mutex lets SCHED_OTHER tasks do). A
 * queued waiter takes a released lock only if it is first (FIFO within
 * a level); anyone else that finds it released while a waiter outranks
 * them hands it to that waiter. So no fiber ever takes the lock ahead of
 * a higher-priority waiter, and waiters are served in order.
 */
#define PRT_MTX_STARVE_NS 1000000


/*
 * A waiter handed the lock from outside its runtime (a plain thread, a
 * fiber of another runtime) may run and end, and its runtime be
 * destroyed, before the wake that follows is done with it: take a
 * reference first, while it still waits (so it has not ended).
 */
static struct prt_runtime *handoff_ref(struct prt__mwaiter *r)
{
	struct prt_runtime *rt;

	if (!r->fiber)
		return NULL;
	rt = r->fiber->rt;
	if (prt__worker_of(rt, prt__cur_worker()))
		return NULL;
	prt__rt_pin(rt);
	return rt;
}

/*
 * Hand the mutex to waiter @r: word @o (held by the caller, or released)
 * becomes @r's token, with PRT_MTX_WAITERS if anyone waits once @r is
 * off the list: another record, or (@joining) the caller's, which it
 * queues before it drops wait_lock (acquire_locked). Without the flag
 * the new owner's unlock takes the fast path and never wakes a record
 * queued after the handoff: it sleeps for good (a plain thread's lock,
 * a condvar waiter requeued by a signal). Returns false if the word
 * changed (a released lock taken meanwhile). wait_lock held; wake with
 * handoff_wake() after it.
 */
static bool handoff_locked(struct prt__mutex *m, uintptr_t o, struct prt__mwaiter *r,
			   bool joining, struct prt__handoff *h)
{
	struct prt_runtime *ref = handoff_ref(r);
	/* Others wait once @r is off the list: it is not the only record, or one joins. */
	bool others = joining || m->waiters.next != &r->pl.node || r->pl.node.next != &m->waiters;
	uintptr_t n = r->token | (others ? PRT_MTX_WAITERS : 0);

	prt__assert(!h->done); /* one handoff per record: its wake drops the reference */
	/* release: pairs with the waiter's acquire of granted / the next lock */
	if (!atomic_compare_exchange_strong_explicit(&m->owner, &o, n, memory_order_release,
						     memory_order_relaxed)) {
		if (ref)
			prt__rt_put(ref);
		return false;
	}
	prt__mwaiter_del(&m->waiters, r);
	forget_waiter(m, r);
	h->ref = ref;
	h->fiber = r->fiber;
	h->wait = r->sleeping || r->parker ? &r->wait : NULL;
	h->done = true;
	/* From here a record that does not sleep (on its fiber's stack) may vanish. */
	atomic_store_explicit(&r->granted, PRT_GRANTED, memory_order_release);
	return true;
}

/*
 * A waiter handed the mutex with its wait (@h->wait) is asleep, or is a
 * condvar waiter (parker) not asleep yet. Such a one, woken by its own
 * timeout and then moved here by a signal before it ran (cond.c: the
 * signal won), is queued with blocked_on set, and a pick may attach it
 * to the sleeping owner at the end of its chain, as a donor (proxy.c).
 * Waking its wait then only keeps the wake (LATE): take it off that
 * owner's donor list, as a donor's handoff does (prt__detach_donor),
 * else it owns the mutex there until that owner wakes. True if it was
 * attached: the caller queues it, after the wake of its wait.
 */
static bool handoff_unattach(struct prt__handoff *h)
{
	return h->fiber && prt__unattach(h->fiber);
}

/*
 * After a handoff, wait_lock dropped (wakeups never under it, docs/design.md).
 * @w: the worker, when called from unlock: it may switch to the new owner.
 */
static void handoff_wake(struct prt__worker *w, struct prt__handoff *h)
{
	struct prt__fiber *f = h->fiber;

	if (!h->done)
		return;
	h->done = false;
	if (w)
		prt__stat_inc(&w->stats.handoffs, 1);
	else if (prt__cur_worker())
		prt__stat_inc(&prt__cur_worker()->stats.handoffs, 1);
	if (h->wait) {
		/* Before the wake: once woken, it may return and wait anew (see handoff_unattach). */
		bool back = handoff_unattach(h);

		prt__wait_wake(h->wait); /* asleep, or about to: its wait absorbs an early wake */
		if (back)
			prt__wake(f);
	} else if (!prt__detach_donor(f)) {
		/* Queued as a donor: runnable now. Send it home if queued away. */
		prt__migrate_queued(f, false);
	}
	if (h->ref) {
		prt__rt_put(h->ref);
		h->ref = NULL;
	}
	if (w && w->unlock_defer)
		w->unlock_defer->to = f; /* a condvar wait's: prt__unlock_deferred */
	else if (w)
		prt__after_handoff(w, f);
}

/* A slice owed at an unlock (prt__held_drop): switch now, or record it for a condvar wait. */
static void unlock_slice_owed(struct prt__worker *w)
{
	if (w && w->unlock_defer)
		w->unlock_defer->slice = true;
	else
		prt__preempt_slice_owed();
}

void prt__unlock_deferred(struct prt__worker *w, struct prt__unlock_defer *d)
{
	if (d->to)
		prt__after_handoff(w, d->to); /* reads type-stable fields of @d->to */
	if (d->slice)
		prt__preempt_slice_owed();
	d->to = NULL;
	d->slice = false;
}

/*
 * handoff_wake for the timer path (mutex_timeout), w's rq lock
 * held (by w, or by an idle worker firing w's timers): the new owner,
 * asleep, is queued on w; its pick sends it home if it may not run
 * there. Counted on the worker that fires (stats are their own).
 */
static void handoff_wake_here(struct prt__worker *w, struct prt__handoff *h)
{
	bool back;

	if (!h->done)
		return;
	h->done = false;
	/* A prt_cancel from a plain thread runs this too: no worker of its own to count on. */
	if (prt__cur_worker())
		prt__stat_inc(&prt__cur_worker()->stats.handoffs, 1);
	/* A timeout's dequeue hands a claim on to a sleeping first waiter or a parker alone. */
	prt__assert(h->wait);
	back = handoff_unattach(h); /* before the wake, as in handoff_wake */
	prt__wait_wake_here(h->wait, w);
	if (back)
		prt__wake_here_locked(w, h->fiber);
	if (h->ref) {
		prt__rt_put(h->ref); /* only for a mutex shared with another runtime */
		h->ref = NULL;
	}
}

/*
 * Take the mutex for @r (queued or not) if it is free and @r may, else
 * make sure the waiters flag is set so the owner's unlock comes to the
 * slow path. A released mutex that @r may not take goes to the first
 * waiter (@h, to wake), flagged for @r too if @r is not queued yet: the
 * caller queues it next, under this wait_lock hold (or gives up, and
 * the flag only sends that owner's unlock to the slow path). Returns
 * true if taken. wait_lock held.
 */
static bool acquire_locked(struct prt__mutex *m, struct prt__mwaiter *r, bool queued,
			   struct prt__handoff *h)
{
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);

	/* A queued record is kept current (prt__waits_reprio); read a new one's now. */
	if (!queued && r->fiber)
		r->pl.prio = atomic_load_explicit(&r->fiber->prio, memory_order_relaxed);
	for (;;) {
		struct prt__mwaiter *first = prt__mutex_first_waiter(m);

		if (!(o & ~PRT_MTX_FLAGS)) {
			bool others = first && !(queued && first == r &&
						 m->waiters.next->next == &m->waiters);
			uintptr_t n = r->token | (others ? PRT_MTX_WAITERS : 0);

			if (first && (queued ? first != r : first->pl.prio > r->pl.prio)) {
				if (handoff_locked(m, o, first, !queued, h))
					return false;
				o = atomic_load_explicit(&m->owner, memory_order_relaxed);
				continue;
			}
			/* acquire: pairs with the release of the previous unlock */
			if (atomic_compare_exchange_weak_explicit(&m->owner, &o, n, memory_order_acq_rel,
								  memory_order_relaxed)) {
				if (queued) {
					prt__mwaiter_del(&m->waiters, r);
					forget_waiter(m, r);
				}
				return true;
			}
			continue;
		}
		if (o & PRT_MTX_WAITERS)
			return false;
		/*
		 * relaxed: setting the flag only makes the owner's unlock CAS
		 * fail into unlock_slow(), which takes wait_lock and so sees
		 * our record; the two CASes on the word are ordered by the
		 * word itself. Our record is published by wait_lock.
		 */
		if (atomic_compare_exchange_weak_explicit(&m->owner, &o, o | PRT_MTX_WAITERS,
							  memory_order_relaxed, memory_order_relaxed))
			return false;
	}
}

static bool use_proxy(struct prt__mutex *m, struct prt__fiber *self)
{
	if (m->proxy == PRT_MUTEX_PROXY_DEFAULT)
		return !(self->rt->flags & PRT_RT_NO_PROXY);
	return m->proxy == PRT_MUTEX_PROXY_ON;
}

/* ---- lock ---------------------------------------------------------------- */

/*
 * A newcomer of priority @prio may take a free or released word @o
 * without wait_lock if no waiter outranks it.
 */
static inline bool may_steal(struct prt__mutex *m, uintptr_t o, int prio)
{
	return !(o & PRT_MTX_WAITERS) || atomic_load_explicit(&m->top, memory_order_relaxed) <= prio + 1;
}

/*
 * Optimistic spinning (kernel mutex.c's mutex_optimistic_spin): while
 * the owner is a fiber running on a CPU, or about to (prt__owner_runs_soon),
 * it will likely unlock soon; waiting a few hundred ns here beats
 * queueing, migrating and a handoff. Stops when the owner stops
 * running, or the lock is handed over or released to a waiter that
 * outranks us. Returns true if taken.
 */
static bool spin_acquire(struct prt__mutex *m, struct prt__fiber *self)
{
	uintptr_t tok = (uintptr_t)self;

	for (int i = 0; i < PRT_MTX_SPIN; i++) {
		uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);
		struct prt__fiber *f;

		if (!(o & ~PRT_MTX_FLAGS)) {
			if (!may_steal(m, o, atomic_load_explicit(&self->prio, memory_order_relaxed)))
				return false;
			/* acquire: pairs with the release of the unlock */
			if (atomic_compare_exchange_weak_explicit(&m->owner, &o, tok | (o & PRT_MTX_WAITERS),
								  memory_order_acq_rel,
								  memory_order_relaxed))
				return true;
			continue;
		}
		f = prt__owner_fiber(o);
		/* Descriptors are type-stable: reading a stale owner's state is safe. */
		if (!f || !prt__owner_runs_soon(f, self))
			return false;
		for (int k = 0; k < PRT_MTX_SPIN_PAUSES; k++)
			prt__cpu_relax();
	}
	return false;
}

/*
 * A queued waiter spins on its record while the owner runs on a CPU
 * (or is about to: prt__owner_runs_soon):
 * the handoff then finds it running and it goes on at once, with no
 * switch or migration. Returns 1 if granted, 2 if the lock was released
 * (look again under wait_lock), 0 to stop spinning.
 */
static int spin_queued(struct prt__mutex *m, struct prt__mwaiter *rec)
{
	for (int i = 0; i < PRT_MTX_SPIN; i++) {
		uintptr_t o;
		struct prt__fiber *f;

		/* acquire: pairs with the release in handoff_locked() */
		if (atomic_load_explicit(&rec->granted, memory_order_acquire))
			return 1;
		o = atomic_load_explicit(&m->owner, memory_order_relaxed);
		if (!(o & ~PRT_MTX_FLAGS))
			return 2;
		f = prt__owner_fiber(o);
		if (!f || !prt__owner_runs_soon(f, rec->fiber))
			return 0;
		prt__cpu_relax();
	}
	return 0;
}

/*
 * The calling fiber's mutex wait is over (blocked_on is clear). A
 * prt__waits_reprio that read blocked_on under our lock may still be
 * busy with the mutex: let it finish before we return and our caller
 * may free the mutex (a timed-out or EDEADLK caller does not own it).
 */
static void wait_end(struct prt__fiber *self)
{
	prt__spin_lock(&self->lock);
	prt__spin_unlock(&self->lock);
}

static prt__timer_fn mutex_timer_fire; /* ends a timed wait: see the pick-path helpers */

/*
 * A fiber's contended lock (lock_fiber), cut into steps as the kernel's
 * __mutex_lock_common is: the optimistic spin before queueing
 * (spin_acquire), then, under wait_lock, a loop that takes the mutex or
 * queues our record and waits for it to come to us.
 *
 * The rule every step keeps: wait_lock is dropped in five places (to
 * wake a waiter we handed a released lock, to spin on our record, to
 * arm our timer, to sleep, and at the end), and while it is dropped
 * anything may happen to our record: a handoff (rec.granted), or our
 * timer, which an idle worker may fire while we still run (rec.timedout,
 * taken off the list; nobody is woken since we are not asleep). So we
 * go to sleep only if we saw both clear under wait_lock and held it
 * ever since (@looked; wait_sleep asserts it): whoever grants or times
 * us out afterwards needs wait_lock, and finds us asleep or queued.
 *
 *   waiter (lock_fiber, worker A)      idle worker B (fire_busy_timers)
 *   -----------------------------      --------------------------------
 *   spin_on_record: drop wait_lock,
 *     spin_queued() while owner runs   mutex_timeout(): take wait_lock,
 *                                        rec.timedout, dequeue; we run,
 *                                        so it wakes nobody
 *     take wait_lock, wait_over():
 *     ETIMEDOUT -> return              (without that look: wait_sleep,
 *                                        and nothing left to wake us)
 *
 * The fields are the waiting fiber's own (on its stack); only @rec is
 * shared, under wait_lock.
 */
struct fiber_wait {
	struct prt__mutex *m;
	struct prt__worker *w;      /* the worker we run on (changes across a sleep) */
	struct prt__fiber *self;
	struct prt__mwaiter rec;    /* our record: on m->waiters while queued (wait_lock) */
	struct prt__handoff h;           /* a waiter we handed the lock: wake it without wait_lock */
	uint64_t deadline;          /* CLOCK_MONOTONIC ns; 0: none */
	bool proxy;                 /* wait as a queued donor; else asleep off the run queues */
	bool queued;                /* rec inserted (a handoff or our timer may have taken it off since) */
	bool armed;                 /* our timer is armed: cancel it at the end */
	bool looked;                /* wait_over() saw the wait go on, wait_lock held since */
	bool cancel;                /* prt_cancel ends the wait (not a condvar's retake) */
	bool spun;                  /* spun on our record since we last slept */
};

/* wait_over(): the wait is not over. */
#define WAIT_ON (-1)

/*
 * wait_lock held. Did the wait end while wait_lock was dropped? 0: the
 * mutex was handed to us; ETIMEDOUT: our timer took us off the list
 * (mutex_timeout); WAIT_ON: neither, and until wait_lock is dropped
 * neither can happen (both need it).
 */
static int wait_over(struct fiber_wait *fw)
{
	/* acquire: pairs with the release in handoff_locked() */
	if (fw->queued && atomic_load_explicit(&fw->rec.granted, memory_order_acquire))
		return 0;
	if (fw->rec.timedout)
		return ETIMEDOUT;
	fw->looked = true;
	return WAIT_ON;
}

/* Drop wait_lock: from here wait_over() must look again before we sleep. */
static void wait_unlock(struct fiber_wait *fw)
{
	fw->looked = false;
	prt__spin_unlock(&fw->m->wait_lock);
}

/* wait_lock held. Has our deadline passed? (The timer may not have fired yet.) */
static bool past_deadline(struct fiber_wait *fw)
{
	return fw->deadline && prt__now_ns() >= fw->deadline;
}

/*
 * wait_lock held, not queued yet: put our record on m->waiters (by
 * priority, blocked_on published), for handoffs, the pick's chain walk
 * and the deadlock check to find. From here the wait ends through a
 * handoff, our timer, or dequeue() on one of our exits.
 */
static void queue_record(struct fiber_wait *fw)
{
	insert(fw->m, &fw->rec);
	fw->queued = true;
}

/*
 * acquire_locked() handed a released lock to the first waiter, which we
 * may not pass: wake it (never under wait_lock, docs/design.md). Entered and
 * left with wait_lock held, dropped in between: the caller looks again.
 */
static void wake_handed(struct fiber_wait *fw)
{
	wait_unlock(fw);
	handoff_wake(NULL, &fw->h);
	prt__spin_lock(&fw->m->wait_lock);
}

/*
 * Queued, with more than one worker: spin on our record while the owner
 * runs on a CPU (spin_queued), once per sleep (@spun). Entered and left
 * with wait_lock held, dropped while spinning; the caller then looks
 * again, as after every drop of wait_lock: we may have been granted, our
 * timer may have fired (an idle worker fires a busy worker's due
 * timers), or the lock may have been released, to us as the first
 * waiter, by an unlock that found us awake (choose(): a waiter of the
 * unlocker's priority that is not asleep competes), and so woke nobody.
 * Going to sleep on wait_over() alone, as this once did, slept on that
 * released lock for good (proxy off: nothing picks a sleeper).
 */
static void spin_on_record(struct fiber_wait *fw)
{
	int s;

	fw->spun = true;
	wait_unlock(fw);
	s = spin_queued(fw->m, &fw->rec);
	if (s != 1)
		prt__fault_pause(PRT_PAUSE_MUTEX_SPUN); /* test builds: a timer or unlock may come here */
	prt__spin_lock(&fw->m->wait_lock);
}

/*
 * Timed wait, queued, timer not armed: arm it (mutex_timer_fire ends the
 * wait at the deadline). Entered and left with wait_lock held; dropped
 * to arm, since the lock order is rq lock -> wait_lock. Returns WAIT_ON
 * once armed (the caller looks again: we may have been handed the lock
 * meanwhile); else the wait is over: ENOMEM (no room for the timer; our
 * record dequeued), or 0 if the lock was handed to us meanwhile.
 */
static int arm_timeout(struct fiber_wait *fw)
{
	int err;

	wait_unlock(fw);
	if (!prt__timer_arm(fw->w, fw->deadline, mutex_timer_fire, false)) {
		fw->armed = true;
		prt__spin_lock(&fw->m->wait_lock);
		return WAIT_ON;
	}
	prt__spin_lock(&fw->m->wait_lock);
	err = wait_over(fw);
	if (err == WAIT_ON) {
		dequeue(fw->m, &fw->rec, &fw->h);
		return ENOMEM;
	}
	return err == 0 ? 0 : ENOMEM;
}

/*
 * Wait for the mutex to come to us. Entered with wait_lock held, queued,
 * and (@looked) neither granted nor timed out as wait_lock has been held
 * since we looked: so whoever grants us or times us out comes after we
 * are asleep or queued, and wakes or picks us. With proxy execution we
 * stay queued as a donor (blocked_on set): when picked, the owner runs
 * in our place. Without, we sleep off the run queues (rec.sleeping, on
 * rec.wait) until a handoff or our timer wakes us; the pick may also put
 * us to sleep so as a donor (proxy.c, sleep_donor). Returns with
 * wait_lock held again once we run: granted, timed out, or without the
 * lock (released, or the chain changed): the caller looks again.
 */
static void wait_sleep(struct fiber_wait *fw)
{
	prt__assert(fw->looked && fw->queued);
	if (!fw->proxy) {
		fw->rec.sleeping = true;
		prt__set_wait(fw->self, PRT_WK_MUTEX, fw->m, 0);
	}
	wait_unlock(fw);
	if (fw->proxy)
		prt__schedule_mutex_wait(fw->w);
	else
		prt__wait_block(&fw->rec.wait, 0); /* an early wake ends it at once */
	fw->w = prt__cur_worker();
	prt__spin_lock(&fw->m->wait_lock);
	/* Running, without the lock: not asleep now. A new wait for the next sleep. */
	fw->rec.sleeping = false;
	prt__wait_init(&fw->rec.wait, fw->self);
}

/*
 * The wait is over (taken, granted, or given up), wait_lock dropped: wake
 * a waiter we handed the lock to, cancel our timer, and let a
 * prt__waits_reprio still busy with our record finish (wait_end).
 */
static void wait_finish(struct fiber_wait *fw)
{
	handoff_wake(NULL, &fw->h);
	if (fw->armed)
		prt__timer_cancel(fw->self);
	if (fw->queued)
		wait_end(fw->self);
}

/*
 * Contended lock of a fiber: 0, or ETIMEDOUT (past @deadline), EDEADLK
 * (waiting would close a cycle), ENOMEM (no room for the timer), or with
 * @cancel ECANCELED (prt_cancel: pending, or it ended our wait as our
 * timer would: mutex_timeout). The record is never on the list when we
 * return.
 */
static int lock_fiber(struct prt__mutex *m, struct prt__worker *w, uint64_t deadline, bool cancel)
{
	struct fiber_wait fw = {
		.m = m,
		.w = w,
		.self = w->curr,
		/* prio: acquire_locked */
		.rec = { .fiber = w->curr, .token = (uintptr_t)w->curr, .wait.fiber = w->curr,
			 .nocancel = !cancel },
		.deadline = deadline,
		.proxy = use_proxy(m, w->curr),
		.cancel = cancel,
	};
	int err;

	if (cancel && prt__cancel_pending(fw.self))
		return ECANCELED;

	if (w->rt->nworkers > 1 && spin_acquire(m, fw.self))
		return 0; /* nothing queued, nothing armed */
	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	for (;;) {
		/* wait_lock held. Granted or timed out while it was dropped? */
		if ((err = wait_over(&fw)) != WAIT_ON)
			goto out;
		/* Free, and no waiter ahead of us? (Else the flag makes unlock come here.) */
		if (acquire_locked(m, &fw.rec, fw.queued, &fw.h))
			goto acquired;
		if (past_deadline(&fw)) {
			err = ETIMEDOUT;
			goto give_up;
		}
		if (!fw.queued)
			queue_record(&fw);
		if (prt__closes_cycle(m, fw.rec.token)) {
			err = EDEADLK;
			goto give_up;
		}
		/* Drops wait_lock: look again. */
		if (fw.h.done) {
			wake_handed(&fw);
			continue;
		}
		/* Drops wait_lock: look again (once per sleep). */
		if (fw.w->rt->nworkers > 1 && !fw.spun) {
			spin_on_record(&fw);
			continue;
		}
		/* Drops wait_lock: look again (armed once), and spin again with it armed. */
		if (deadline && !fw.armed) {
			if ((err = arm_timeout(&fw)) != WAIT_ON)
				goto out;
			fw.spun = false;
			continue;
		}
		/*
		 * A cancel pending? Our blocked_on (seq_cst, in insert) is
		 * stored, then this load: prt_cancel stores the flag, then
		 * loads blocked_on (prt__mutex_cancel). So it is seen here, or
		 * the canceller waits for wait_lock and ends our wait as our
		 * timer would.
		 */
		if (fw.cancel && atomic_load_explicit(&fw.self->cancel, memory_order_seq_cst)) {
			err = ECANCELED;
			goto give_up;
		}
		/* Nothing changed since wait_over(): sleep, or stay queued as a donor. */
		wait_sleep(&fw);
		fw.spun = false; /* woken without the lock: the owner may run now, spin again */
	}
give_up:
	/* Timed out or deadlocked while not granted: leave the list. */
	if (fw.queued)
		dequeue(m, &fw.rec, &fw.h);
	goto out;
acquired:
	err = 0;
out:
	prt__spin_unlock(&m->wait_lock);
	wait_finish(&fw);
	/* Taken off the list before our deadline (or with none): a cancel did it. */
	if (err == ETIMEDOUT && cancel && (!deadline || prt__now_ns() < deadline))
		err = ECANCELED;
	return err;
}

/*
 * A plain thread's first look, wait_lock held: 0 if it took the mutex,
 * WAIT_ON if @rec is queued (sleep on rec.granted), else ETIMEDOUT
 * (@deadline passed) or EDEADLK (waiting would close a cycle), not
 * queued. A released lock it may not take may be handed to the first
 * waiter (@h, to wake once wait_lock is dropped).
 */
static int thread_take_or_queue(struct prt__mutex *m, struct prt__mwaiter *rec,
				uint64_t deadline, struct prt__handoff *h)
{
	if (acquire_locked(m, rec, false, h))
		return 0;
	if (deadline && prt__now_ns() >= deadline)
		return ETIMEDOUT;
	insert(m, rec);
	if (prt__closes_cycle(m, rec->token)) {
		dequeue(m, rec, h);
		return EDEADLK;
	}
	return WAIT_ON;
}

/*
 * A plain thread's wait for @rec timed out, wait_lock not held: leave the
 * list (ETIMEDOUT), unless the mutex was handed to us just before (0:
 * then wait until the granter is done with @rec).
 */
static int thread_timed_out(struct prt__mutex *m, struct prt__mwaiter *rec)
{
	struct prt__handoff h = { 0 };
	int err = 0;

	prt__spin_lock(&m->wait_lock);
	/* acquire: pairs with the release in handoff_locked() */
	if (!atomic_load_explicit(&rec->granted, memory_order_acquire)) {
		dequeue(m, rec, &h);
		err = ETIMEDOUT;
	}
	prt__spin_unlock(&m->wait_lock);
	handoff_wake(NULL, &h);
	if (!err) {
		/* Handed over just as we timed out: its wake comes (or came, LATE). */
		prt__wait_rearm(&rec->wait);
		prt__wait_block(&rec->wait, 0);
	}
	return err;
}

/* Contended lock of a plain thread: as lock_fiber's, sleeping on a futex. */
static int lock_thread(struct prt__mutex *m, uintptr_t tok, uint64_t deadline)
{
	struct prt__mwaiter rec = { .token = tok, .pl.prio = PRT_PRIO_DEFAULT, .sleeping = true };
	/* (rec.wait: zeroed, a thread's wait, IDLE) */
	struct prt__handoff h = { 0 };
	int err;

	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	err = thread_take_or_queue(m, &rec, deadline, &h);
	prt__spin_unlock(&m->wait_lock);
	handoff_wake(NULL, &h);
	if (err != WAIT_ON)
		return err;
	if (!prt__wait_block(&rec.wait, deadline))
		return 0; /* woken: only a handoff wakes us */
	return thread_timed_out(m, &rec);
}

/*
 * A lock of @m by its owner @tok: 0 (a recursive mutex's count taken),
 * EAGAIN (that count would overflow), EDEADLK (the other types); -1 if
 * @tok does not own @m.
 */
static int relock_own(struct prt__mutex *m, uintptr_t tok)
{
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);
	unsigned c;

	if ((o & ~PRT_MTX_WAITERS) != tok)
		return -1;
	c = atomic_load_explicit(&m->count, memory_order_relaxed);
	if (m->type != PRT_MUTEX_RECURSIVE)
		return EDEADLK;
	if (c == UINT_MAX)
		return EAGAIN;
	atomic_store_explicit(&m->count, c + 1, memory_order_relaxed);
	return 0;
}

static prt__noinline int lock_slow(struct prt__mutex *m, struct prt__worker *w, uintptr_t tok,
				   uint64_t deadline, bool cancel)
{
	int err = relock_own(m, tok);

	if (err >= 0)
		return err;
	err = w ? lock_fiber(m, w, deadline, cancel) : lock_thread(m, tok, deadline);
	if (!err)
		prt__mutex_held(tok, m);
	return err;
}

/*
 * The fast path of every lock call: take @m if it is unlocked, and count
 * it held. acquire: pairs with the release in unlock. release: publishes
 * the owner (its descriptor or a thread's struct prt__tself) to the
 * chain walks that load m->owner and read it. Every CAS that takes the
 * lock does both; on x86 it is the same instruction.
 */
static inline __attribute__((always_inline)) bool take_free(struct prt__mutex *m,
							     const struct prt__owner *me)
{
	uintptr_t zero = 0;

	if (!atomic_compare_exchange_strong_explicit(&m->owner, &zero, me->tok,
						     memory_order_acq_rel, memory_order_relaxed))
		return false;
	prt__held_add(me->nheld, 1);
	*me->last = m; /* a signal's proof that we hold it (prt__fiber.last_held) */
	return true;
}

PRT_API int prt_mutex_lock(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	struct prt__owner me;

	if (prt__unlikely(!um))
		return EINVAL;
	prt__check_live(m->dbg, "prt_mutex_lock", um);
	w = prt__cur_worker();
	if (prt__unlikely(!prt__owner_self(w, &me)))
		return ENOMEM;
	if (prt__likely(take_free(m, &me)))
		return 0;
	return lock_slow(m, w, me.tok, 0, true);
}

bool prt__mutex_take_free(struct prt__mutex *m)
{
	struct prt__owner me;

	return prt__owner_self(prt__cur_worker(), &me) && take_free(m, &me);
}

int prt__mutex_lock_nocancel(struct prt__mutex *m)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__owner me;

	if (!prt__owner_self(w, &me))
		return ENOMEM;
	if (take_free(m, &me))
		return 0;
	return lock_slow(m, w, me.tok, 0, false);
}

PRT_API int prt_mutex_timedlock(prt_mutex_t *um, const struct timespec *abstime)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	struct prt__owner me;
	uint64_t deadline;

	if (!um)
		return EINVAL;
	prt__check_live(m->dbg, "prt_mutex_timedlock", um);
	w = prt__cur_worker();
	if (!prt__owner_self(w, &me))
		return ENOMEM;
	/*
	 * As glibc: the deadline is not looked at if the mutex is free, or
	 * held by the caller (EDEADLK, or a recursive mutex's count taken;
	 * POSIX ties EINVAL to a call that would block).
	 */
	if (take_free(m, &me))
		return 0;
	if (!prt__abstime_to_mono(abstime, &deadline)) {
		int err = relock_own(m, me.tok);

		return err >= 0 ? err : EINVAL;
	}
	return lock_slow(m, w, me.tok, deadline, true);
}

PRT_API int prt_mutex_timedlock_ns(prt_mutex_t *um, uint64_t timeout_ns)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	struct prt__owner me;

	if (!um)
		return EINVAL;
	prt__check_live(m->dbg, "prt_mutex_timedlock_ns", um);
	w = prt__cur_worker();
	if (!prt__owner_self(w, &me))
		return ENOMEM;
	if (take_free(m, &me))
		return 0;
	/* Saturates at PRT_NEVER; never 0 (no deadline), the clock being past boot. */
	return lock_slow(m, w, me.tok, prt__deadline_in(timeout_ns), true);
}

static int self_prio(struct prt__worker *w)
{
	return w ? atomic_load_explicit(&w->curr->prio, memory_order_relaxed) : PRT_PRIO_DEFAULT;
}

PRT_API int prt_mutex_trylock(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	struct prt__owner me;
	uintptr_t o;

	if (!um)
		return EINVAL;
	prt__check_live(m->dbg, "prt_mutex_trylock", um);
	w = prt__cur_worker();
	if (!prt__owner_self(w, &me))
		return ENOMEM;
	if (take_free(m, &me))
		return 0;
	o = atomic_load_explicit(&m->owner, memory_order_relaxed);
	/* Released with waiters: take it if no waiter outranks us. */
	while (!(o & ~PRT_MTX_FLAGS) && may_steal(m, o, self_prio(w)))
		if (atomic_compare_exchange_weak_explicit(&m->owner, &o,
							  me.tok | (o & PRT_MTX_WAITERS),
							  memory_order_acq_rel, memory_order_relaxed)) {
			prt__held_add(me.nheld, 1);
			*me.last = m;
			return 0;
		}
	if ((o & ~PRT_MTX_WAITERS) == me.tok && m->type == PRT_MUTEX_RECURSIVE) {
		unsigned c = atomic_load_explicit(&m->count, memory_order_relaxed);

		if (c == UINT_MAX)
			return EAGAIN;
		atomic_store_explicit(&m->count, c + 1, memory_order_relaxed);
		return 0;
	}
	return EBUSY;
}

/* ---- unlock and handoff -------------------------------------------------- */

/*
 * The waiter to hand over to: the donor this worker serves if it waits
 * here and no waiter outranks it, else the first (highest priority,
 * longest waiting). NULL if the first may as well compete (see
 * "Handoff and lateral stealing").
 */
static struct prt__mwaiter *choose(struct prt__mutex *m, struct prt__worker *w)
{
	struct prt__mwaiter *first = prt__mutex_first_waiter(m), *r;
	int me;

	if (!first)
		return NULL;
	if (w && w->donor != w->curr && (r = prt__mwait_on(w->donor, m)) &&
	    r->pl.prio >= first->pl.prio)
		return r;
	/* Serving a donor: the chain may run through any waiter here. */
	if (w && w->donor != w->curr)
		return first;
	me = self_prio(w);
	if (first->pl.prio > me || first->sleeping || first->parker)
		return first;
	if (first->pl.prio == me && prt__now_ns() - first->since < PRT_MTX_STARVE_NS)
		return NULL; /* release: it is runnable, and competes */
	return first;
}

static prt__noinline int unlock_slow(struct prt__mutex *m, struct prt__worker *w)
{
	struct prt__mwaiter *r;
	struct prt__handoff h = { 0 };

	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	r = choose(m, w);
	if (!r) {
		/* release: pairs with the acquire of the next lock */
		atomic_store_explicit(&m->owner, prt__list_empty(&m->waiters) ? 0 : PRT_MTX_WAITERS,
				      memory_order_release);
		prt__spin_unlock(&m->wait_lock);
		return 0;
	}
	/* We hold the word: nobody else may change it, so this cannot fail. */
	handoff_locked(m, atomic_load_explicit(&m->owner, memory_order_relaxed), r, false, &h);
	prt__spin_unlock(&m->wait_lock);
	handoff_wake(w, &h);
	return 0;
}

PRT_API int prt_mutex_unlock(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	struct prt__owner me;
	uintptr_t o;
	bool owed;

	if (prt__unlikely(!um))
		return EINVAL;
	prt__check_live(m->dbg, "prt_mutex_unlock", um);
	w = prt__cur_worker();
	prt__owner_peek(w, &me);
	o = me.tok;
	if (prt__unlikely(atomic_load_explicit(&m->count, memory_order_relaxed)) &&
	    (atomic_load_explicit(&m->owner, memory_order_relaxed) & ~PRT_MTX_WAITERS) == me.tok) {
		atomic_store_explicit(&m->count,
				      atomic_load_explicit(&m->count, memory_order_relaxed) - 1,
				      memory_order_relaxed);
		return 0;
	}
	/* release: pairs with the acquire of the next lock */
	if (prt__likely(atomic_compare_exchange_strong_explicit(&m->owner, &o, 0,
								 memory_order_release,
								 memory_order_relaxed))) {
		/* we owned it: not NULL */
		if (*me.last == m)
			*me.last = NULL; /* prt__fiber.last_held names only mutexes held */
		if (prt__held_drop(me.nheld))
			unlock_slice_owed(w);
		return 0;
	}
	if ((o & ~PRT_MTX_WAITERS) != me.tok)
		return EPERM;
	if (*me.last == m)
		*me.last = NULL;
	owed = prt__held_drop(me.nheld);
	unlock_slow(m, w); /* cannot fail */
	/*
	 * The handoff may have switched us to the new owner (after_handoff),
	 * and we may run on another worker since: look at the one we are on.
	 * The stale one's unlock_defer belongs to whatever runs there now (a
	 * condvar spinner between setting and clearing it: TSan's stress run
	 * saw the read race with that write).
	 */
	if (owed)
		unlock_slice_owed(prt__cur_worker());
	return 0;
}

/* ---- condvar side ---------------------------------------------------------- */

uintptr_t prt__mutex_self_token(void)
{
	struct prt__owner me;

	prt__owner_peek(prt__cur_worker(), &me);
	return me.tok;
}

/*
 * Release @m fully for a condvar wait: returns 0 or EPERM if the caller
 * does not hold it; *@count gets the recursion count to restore.
 */
int prt__mutex_release_all(struct prt__mutex *m, unsigned *count)
{
	uintptr_t tok = prt__mutex_self_token();

	/*
	 * relaxed, as in prt_mutex_unlock: only our own lock (or a handoff
	 * to us, whose grant we read with acquire) puts our token there, and
	 * only our own unlock takes it away.
	 */
	if ((atomic_load_explicit(&m->owner, memory_order_relaxed) & ~PRT_MTX_WAITERS) != tok)
		return EPERM;
	*count = atomic_load_explicit(&m->count, memory_order_relaxed);
	atomic_store_explicit(&m->count, 0, memory_order_relaxed);
	return prt_mutex_unlock((prt_mutex_t *)(void *)m);
}

/*
 * Signal side: give @r the mutex if it is free, else queue it as a
 * sleeping (parker) waiter to be handed the mutex later.
 */
void prt__mutex_requeue(struct prt__mutex *m, struct prt__mwaiter *r)
{
	struct prt__handoff h = { 0 };

	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	if (!acquire_locked(m, r, false, &h)) {
		insert(m, r);
		prt__spin_unlock(&m->wait_lock);
		handoff_wake(NULL, &h);
		return;
	}
	atomic_store_explicit(&r->granted, PRT_GRANTED, memory_order_release);
	prt__spin_unlock(&m->wait_lock);
	/* @r stays until its wait is woken: the waiter returns only then. */
	prt__wait_wake(&r->wait);
}

/*
 * A timed mutex wait of @f on @m ended by its timer or by prt_cancel (w's
 * rq lock held, by w, an idle worker or the canceller; wait_lock held,
 * and dropped here): end the wait if it still waits, and queue @f on @w
 * if it slept. Returns false if the wait went on without us (granted, or
 * a donor still queued: prt__timed_out_donor).
 */
static bool mutex_timeout_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m)
{
	struct prt__mwaiter *r = prt__mwait_on(f, m);
	struct prt__handoff h = { 0 };
	bool sleeping;

	if (!r || r->parker) {
		prt__spin_unlock(&m->wait_lock);
		return false;
	}
	/* Off the list: no handoff can reach it now, so we are its only waker. */
	r->timedout = true;
	sleeping = r->sleeping;
	dequeue(m, r, &h);
	prt__spin_unlock(&m->wait_lock);
	handoff_wake_here(w, &h);
	prt__chain_wait_ended(w, f);
	if (sleeping) {
		/* @r (on f's stack) stays: off the list, f sleeps until this wake. */
		prt__wait_wake_here(&r->wait, w);
		return true;
	}
	/*
	 * A donor: queued (its pick now finds blocked_on clear and runs it),
	 * running, or attached to a sleeping owner. The last must be brought
	 * back: same protocol as a handoff's detach (proxy.c, attach()).
	 */
	if (!prt__unattach(f))
		return false;
	prt__wake_here_locked(w, f);
	return true;
}

/* The end of @f's wait on @m, by its timer or a cancel: wait_lock held, dropped here. */
static void mutex_wait_timeout(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m)
{
	if (!mutex_timeout_locked(w, f, m))
		prt__timed_out_donor(w, f);
}

/* The timer of a timed mutex wait (prt__timer_fn); @ctx: the worker whose heap held it. */
static void mutex_timer_fire(struct prt__timer *t, void *ctx)
{
	struct prt__fiber *f = prt__container_of(t, struct prt__fiber, timer);
	/*
	 * relaxed: only tells which wait_lock to take; read again under it.
	 * f queued on @m before it armed this timer (w's rq lock orders the
	 * two), and cancels the timer before its wait returns: so this reads
	 * @m, or NULL once handed the lock.
	 */
	struct prt__mutex *m = atomic_load_explicit(&f->blocked_on, memory_order_relaxed);

	if (!m) {
		prt__timed_out_donor(ctx, f); /* granted: it runs, and cancels nothing */
		return;
	}
	prt__spin_lock(&m->wait_lock);
	mutex_wait_timeout(ctx, f, m);
}

/*
 * prt_cancel's mutex part. No timer keeps @m alive here, so @m is found
 * as prt__mutex_reprio finds it: under f->lock, which a waiter takes
 * before its lock call returns (wait_end()), with wait_lock only tried
 * (the lock order is wait_lock -> fiber lock). Once we hold wait_lock,
 * f cannot leave its wait (every exit takes it), so @m stays when
 * f->lock is dropped.
 */
struct prt__mutex *prt__mutex_cancel_find(struct prt__fiber *f, uint64_t id)
{
	for (;;) {
		struct prt__mutex *m;

		prt__spin_lock(&f->lock);
		/* seq_cst: as in prt__mutex_cancel */
		m = atomic_load_explicit(&f->blocked_on, memory_order_seq_cst);
		if (!m || atomic_load_explicit(&f->id, memory_order_relaxed) != id) {
			prt__spin_unlock(&f->lock);
			return NULL;
		}
		if (prt__spin_trylock(&m->wait_lock)) {
			prt__spin_unlock(&f->lock);
			return m;
		}
		prt__spin_unlock(&f->lock);
		prt__cpu_relax();
	}
}

void prt__mutex_cancel_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m)
{
	/*
	 * Not cancellable: a condvar waiter moved here by a signal (parker),
	 * or one retaking its mutex after a timeout or a cancel (nocancel;
	 * before, a cancel ended that retake too, and prt_cond_wait returned
	 * without the mutex: a review's reproducer, 5 of 5 runs). If it no
	 * longer waits on @m, mutex_timeout_locked finds so too, and its
	 * next wait sees the cancel (prt_cancel's store-then-load).
	 */
	struct prt__mwaiter *r = prt__mwait_on(f, m);

	if (r && (r->parker || r->nocancel))
		prt__spin_unlock(&m->wait_lock);
	else
		mutex_wait_timeout(w, f, m); /* the timer's path (mutex_timer_fire) */
}

/* ---- priority changes ---------------------------------------------------- */

/*
 * A waiter's priority changed (prt_fiber_set_priority). The kernel's
 * rt_mutex_adjust_prio_chain re-sorts the task's waiter entry, then
 * walks the owner chain, because every owner's boosted priority is a
 * copy of its top waiter's. Proxy execution keeps no such copies: an
 * owner runs for a donor without taking its priority, and the pick
 * reads the donor's priority when it picks. What orders by priority is
 * the donor's own run-queue entry (prt__requeue) and its own waiter
 * record, on one list at a time: a condvar's, then a mutex's, whose
 * first entry m->top caches. Re-sorting that record is the whole walk.
 *
 * The lock order is condvar lock -> wait_lock -> fiber lock, and the
 * record is found from the fiber: so hold f->lock (the wait cannot end
 * meanwhile: wait_end(), cond.c's wait_end) and only trylock the list's
 * lock, dropping f->lock to retry, as adjust_prio_chain does with a
 * task's pi_lock and the lock's wait_lock.
 */
bool prt__mutex_reprio(struct prt__fiber *f, struct prt__handoff *h, struct prt__mutex **rw_join)
{
	/*
	 * seq_cst: the load half of prt_fiber_set_priority's store-then-load
	 * (store prio, load blocked_on); pairs with the seq_cst store in
	 * insert(), which then loads prio.
	 */
	struct prt__mutex *m = atomic_load_explicit(&f->blocked_on, memory_order_seq_cst);
	struct prt__mwaiter *r, *was;
	int prio;

	if (!m)
		return true;
	if (!prt__spin_trylock(&m->wait_lock))
		return false;
	r = f->mwait;
	prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	if (atomic_load_explicit(&f->blocked_on, memory_order_relaxed) == m && r &&
	    r->pl.prio != prio) {
		was = prt__mutex_first_waiter(m);
		prt__mwaiter_del(&m->waiters, r);
		r->pl.prio = prio; /* to the tail of its new level, as the run queue does */
		prt__mwaiter_insert(&m->waiters, r);
		update_top(m);
		claim_moved(m, was, h);
		/*
		 * An rwlock's reader raised above its writers, or a writer
		 * lowered below its readers, during a read phase: the readers
		 * now first join it (they waited for the phase to end: a
		 * review).
		 */
		if (m->type == PRT__MTX_RWLOCK && !*rw_join && prt__rwlock_resorted(m))
			*rw_join = m;
	}
	prt__spin_unlock(&m->wait_lock);
	return true;
}

void prt__handoff_wake(struct prt__handoff *h)
{
	handoff_wake(NULL, h);
}
