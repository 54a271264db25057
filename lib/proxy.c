/* SPDX-License-Identifier: MIT */
/*
 * Proxy execution: the pick-time chain walk (docs/design.md, "The pick
 * path"). The worker pops its highest entry D. If D waits on a mutex,
 * the owner of that mutex should run in D's place, with D's priority (D
 * is the "donor", the owner is "curr"), but only where the owner's own
 * affinity allows:
 *
 *   owner gone (lock released)         -> run D, it retries the lock
 *   a lock further down released to    -> run its first waiter, which
 *     its waiters (mutex.c)               takes it when it runs
 *   owner waits on another mutex       -> follow the chain (capped)
 *   owner queued here (or stealable    -> take it off its queue, run it
 *     from a queue it may leave)
 *   owner running elsewhere, queued    -> move D to the owner's worker
 *     where we cannot take it, or         (donor migration); that worker
 *     not allowed here                    picks D at its next scheduling
 *                                         point and proxies there
 *   owner sleeping (park, join, ...)   -> attach D to the owner; D is
 *                                         queued with it when it wakes
 *   owner a plain thread, dead, or a   -> D sleeps until handed the lock
 *     fiber of another runtime
 *   an rwlock held by readers          -> one tracked reader, as the
 *                                         owner above (pick_reader);
 *                                         none can run: D sleeps
 *
 * Lock order: rq lock -> mutex wait_lock -> fiber lock; never two rq
 * locks except by trylock. Each decision is re-validated under the lock
 * that makes it true: an owner taken off our queue is not running and
 * so cannot unlock meanwhile; an attach checks under the owner's lock
 * that it still sleeps; a migrated donor is re-examined by the pick of
 * the worker it lands on.
 *
 * This file and sched.c call each other, as one concern (the pick path):
 * the pick calls prt__proxy_pick, and what follows a handoff or a
 * donor's timeout calls back into the scheduler's primitives
 * (sched_priv.h). The chain walk itself calls nothing in sched.c
 * (docs/design.md, section 2, "The two pairs").
 */
#include "mutex_int.h"
#include "proxy_int.h"
#include "runtime_int.h"
#include "rwlock_int.h"
#include "sched_priv.h"
#include "worker.h"

/* Longest owner chain followed; past it the donor runs and retries. */
#define PRT_CHAIN_MAX 64

/*
 * Donor @d, picked, waits on a mutex whose owner cannot run for it (a
 * plain thread, or a fiber that ended holding it): put d to sleep as a
 * waiter the unlock hands the lock to. False if d must run instead (the
 * mutex was released, or d's wait ended). The pick's rq lock held.
 */
static bool sleep_donor(struct prt__fiber *d)
{
	/*
	 * relaxed: only tells which wait_lock to take; read again under it.
	 * The pick read it (acquire) just before, and d, off the queues in
	 * our hands, cannot start another wait: so this reads that mutex
	 * or NULL (handed over or timed out since).
	 */
	struct prt__mutex *m = atomic_load_explicit(&d->blocked_on, memory_order_relaxed);
	bool ok = false;

	if (!m)
		return false;
	prt__spin_lock(&m->wait_lock);
	/*
	 * Still held (by a thread or a dead fiber): its unlock, which needs
	 * wait_lock since we wait, will see us asleep and hand over. If it
	 * was released meanwhile, d must run and retry instead. A condvar
	 * waiter requeued here before it got to park (parker) is no donor:
	 * it runs on to park, by its own protocol.
	 */
	/*
	 * relaxed, both: under wait_lock. Every store of blocked_on naming @m
	 * or clearing it from @m is made under it (insert, forget_waiter),
	 * and while d waits here PRT_MTX_WAITERS is set, so the word goes
	 * from held to released only under it too (unlock_slow, dequeue);
	 * a lateral steal (released to held) needs no lock, but then @m is
	 * held, which is what we look for.
	 */
	struct prt__mwaiter *r = prt__mwait_on(d, m);

	if (r && !r->parker && (atomic_load_explicit(&m->owner, memory_order_relaxed) & ~PRT_MTX_FLAGS)) {
		r->sleeping = true;
		prt__set_wait(d, PRT_WK_MUTEX, m, 0);
		/* Asleep on its record's wait, as if it had slept there itself: its waker ends it. */
		prt__wait_slept(&r->wait);
		atomic_store_explicit(&d->state, PRT_FS_BLOCKED, memory_order_relaxed);
		ok = true;
	}
	prt__spin_unlock(&m->wait_lock);
	return ok;
}

/*
 * The first waiter of @m, if @m is released to its waiters (lateral
 * stealing, mutex.c) and that waiter is queued as a donor: it can run
 * for the chain and take the lock. NULL otherwise.
 */
static struct prt__fiber *next_owner(struct prt__mutex *m)
{
	struct prt__fiber *f = NULL;
	struct prt__mwaiter *first;

	prt__spin_lock(&m->wait_lock);
	first = m->waiters.next ? prt__mutex_first_waiter(m) : NULL;
	/*
	 * Only a runnable first waiter (queued as a donor) can be run for the
	 * chain; one asleep is handed a released lock (dequeue, unlock), so
	 * finding one here is a moment's state: the caller restarts.
	 */
	if (first && !first->sleeping && !first->parker &&
	    !(atomic_load_explicit(&m->owner, memory_order_relaxed) & ~PRT_MTX_FLAGS))
		f = first->fiber;
	prt__spin_unlock(&m->wait_lock);
	return f;
}

static enum prt__pick_act run(struct prt__pick *p, struct prt__fiber *f, struct prt__fiber *d)
{
	p->run = f;
	p->donor = d;
	return PRT_PICK_RUN;
}

static enum prt__pick_act move(struct prt__pick *p, struct prt__fiber *d, struct prt__worker *to)
{
	p->move = d;
	p->to = to;
	return PRT_PICK_MOVE;
}

/* A fiber that does not wait: run it if allowed here, else send it home. */
static enum prt__pick_act run_plain(struct prt__worker *w, struct prt__pick *p,
				    struct prt__fiber *d)
{
	/* A preempted fiber resumes here, allowed or not (docs/design.md, section 16). */
	if (prt__likely(prt__fiber_allowed(d, w->index)) || d->preempted)
		return run(p, d, d);
	/* Return migration (invariant 2): it got its lock while queued away. */
	return move(p, d, prt__select_worker(d));
}

/*
 * Does @o hold @m: own a mutex, write an rwlock, or (a word held by
 * readers) read it in a tracked slot? seq_cst: as the owner's unlock
 * CAS, which it pairs with. Asked under o->lock about an @o that
 * sleeps: o went to sleep under that lock after any unlock it did (and
 * a reader clears its slot before its unlock), so if it sleeps and
 * still holds @m, it sleeps holding it.
 */
static bool holds(struct prt__mutex *m, struct prt__fiber *o)
{
	uintptr_t ow = atomic_load_explicit(&m->owner, memory_order_seq_cst);

	if (ow & PRT_MTX_READERS)
		return prt__rw_has_reader(m, (uintptr_t)o);
	return (ow & ~PRT_MTX_WAITERS) == (uintptr_t)o;
}

/*
 * Attach donor @d to owner @o of @m, asleep. False if @o woke or let go
 * of @m meanwhile, or
 * if @d was handed its lock meanwhile:
 *
 *   attach (here, o->lock held)        handoff (mutex.c)
 *   ---------------------------        -----------------
 *   d->attached_to = o                 d->blocked_on = NULL
 *   if d->blocked_on == NULL: undo     prt__detach_donor(d): reads attached_to
 *
 * Both sides store then load (seq_cst), so at least one sees the other;
 * if both do, detach waits for o->lock and finds attached_to cleared.
 */
static bool attach(struct prt__fiber *d, struct prt__fiber *o, struct prt__mutex *m)
{
	bool ok;

	prt__spin_lock(&o->lock);
	/* If o sleeps holding m (holds()), its wake re-queues d. */
	ok = atomic_load_explicit(&o->state, memory_order_relaxed) == PRT_FS_BLOCKED &&
	     !atomic_load_explicit(&o->blocked_on, memory_order_relaxed) && holds(m, o);
	if (ok) {
		prt__list_add_tail(&o->donors, &d->rq_node);
		/* seq_cst: store then load, against the handoff's (see above) */
		atomic_store_explicit(&d->attached_to, o, memory_order_seq_cst);
		if (!atomic_load_explicit(&d->blocked_on, memory_order_seq_cst)) {
			prt__list_del(&d->rq_node);
			/* relaxed: o->lock held, which detach takes before it reads */
			atomic_store_explicit(&d->attached_to, NULL, memory_order_relaxed);
			ok = false;
		}
	}
	prt__spin_unlock(&o->lock);
	return ok;
}

/* Try to take runnable owner @o off another worker's queue to run it here. */
static bool take_remote(struct prt__worker *w, struct prt__fiber *o, struct prt__worker *x)
{
	bool ok = false;

	if (!prt__rq_trylock_revoke(w, x))
		return false;
	/* Not a preempted owner: it resumes on its own worker (donor migration then). */
	if (atomic_load_explicit(&o->rq_worker, memory_order_relaxed) == x &&
	    !atomic_load_explicit(&o->blocked_on, memory_order_relaxed) && !o->preempted) {
		prt__rq_del(x, o);
		ok = true;
	}
	prt__rq_release(x);
	return ok;
}

/*
 * Nothing of ours can run for @d (the owner is a plain thread, or a
 * fiber of another runtime): d sleeps until handed its lock, or runs
 * and retries if it was released meanwhile.
 */
static enum prt__pick_act sleep_or_run(struct prt__worker *w, struct prt__pick *p,
				       struct prt__fiber *d)
{
	if (sleep_donor(d))
		return PRT_PICK_AGAIN;
	return run_plain(w, p, d);
}

/* The owner at the end of @d's chain is @o, not blocked on a mutex. */
static enum prt__pick_act proxy_owner(struct prt__worker *w, struct prt__pick *p,
				      struct prt__fiber *d, struct prt__fiber *o,
				      struct prt__mutex *m)
{
	int st = atomic_load_explicit(&o->state, memory_order_relaxed);
	struct prt__worker *x = atomic_load_explicit(&o->rq_worker, memory_order_relaxed);
	/* A preempted owner queued here runs here, its affinity changed or not. */
	bool here_ok = prt__fiber_allowed(o, w->index) || (x == w && o->preempted);

	/*
	 * An owner of another runtime (a lock shared between runtimes) is
	 * not ours to run, and its workers are not d's to move to: as a
	 * plain thread owner. (Descriptors are type-stable: @rt of a stale
	 * one is some runtime's, and sleep_donor checks the lock again.)
	 */
	if (prt__unlikely(o->rt != w->rt))
		return sleep_or_run(w, p, d);
	if (st == PRT_FS_RUNNABLE && x == w && here_ok) {
		prt__rq_del(w, o);
		prt__stat_inc(&w->stats.proxy_picks, 1);
		return run(p, o, d);
	}
	if (st == PRT_FS_RUNNABLE && x && x != w && here_ok && take_remote(w, o, x)) {
		prt__stat_inc(&w->stats.proxy_picks, 1);
		return run(p, o, d);
	}
	if (st == PRT_FS_BLOCKED) {
		if (attach(d, o, m)) {
			prt__stat_inc(&w->stats.attachments, 1);
			return PRT_PICK_AGAIN;
		}
		prt__rq_add(w, d, true); /* it woke, or d got its lock: look again */
		return PRT_PICK_AGAIN;
	}
	if (st == PRT_FS_DEAD || st == PRT_FS_FREE) {
		/*
		 * The owner ended holding the lock, which stays locked for good
		 * (mutex_owner.c, "Owners that end"; its descriptor is never reused):
		 * nothing can run for d. FREE: it let go and ended meanwhile, so
		 * sleep_donor finds the lock released or held anew and decides.
		 */
		return sleep_or_run(w, p, d);
	}
	/* Running elsewhere, queued where we cannot take it, or not allowed here. */
	if (!x)
		x = PRT_READ_ONCE(o->last_worker);
	if (!x || x == w)
		x = prt__select_worker(o);
	if (x == w)
		return run_plain(w, p, d); /* in transit to us: d retries */
	prt__stat_inc(&w->stats.migrations, 1);
	return move(p, d, x);
}

/*
 * How well reader @f of an rwlock can run for a donor picked on @w, as
 * proxy_owner() would treat it: 5 runnable here; 4 runnable on another
 * worker, takeable; 3 blocked on a lock (its chain is followed); 2
 * running elsewhere, or not takeable (the donor migrates); 1 asleep (the
 * donor attaches); 0 ended (nothing to run). Racy reads: proxy_owner
 * decides again.
 */
static int reader_rank(struct prt__worker *w, struct prt__fiber *f)
{
	int st = atomic_load_explicit(&f->state, memory_order_relaxed);
	struct prt__worker *x = atomic_load_explicit(&f->rq_worker, memory_order_relaxed);
	bool preempted = PRT_READ_ONCE(f->preempted);

	if (atomic_load_explicit(&f->blocked_on, memory_order_relaxed))
		return 3;
	if (st == PRT_FS_RUNNABLE && x == w && (prt__fiber_allowed(f, w->index) || preempted))
		return 5;
	if (st == PRT_FS_RUNNABLE && x && x != w && prt__fiber_allowed(f, w->index) && !preempted)
		return 4;
	if (st == PRT_FS_BLOCKED)
		return 1;
	if (st == PRT_FS_DEAD || st == PRT_FS_FREE)
		return 0;
	return 2;
}

/*
 * @m is an rwlock held by readers (docs/design.md, section 18): the
 * reader to run for donor @d, the best ranked (reader_rank), the highest
 * priority among equals, the first slot among those. A runnable reader
 * first, so that the donor's priority goes to work that can be done
 * here and now: all of them must finish before a writer can go, so
 * which runs first changes nothing else, and the highest priority is
 * the one the scheduler would run first anyway. NULL if no tracked
 * reader can run for d (plain threads, fibers of another runtime,
 * untracked or ended readers).
 */
static struct prt__fiber *pick_reader(struct prt__worker *w, struct prt__mutex *m,
				      struct prt__fiber *d)
{
	struct prt__fiber *best = NULL;
	int best_rank = 0, best_prio = -1;

	for (int i = 0; i < PRT_RW_TRACK; i++) {
		uintptr_t tok = prt__rw_slot(m, i);
		struct prt__fiber *f = (struct prt__fiber *)tok;
		int rank, prio;

		if (!tok || (tok & PRT_MTX_THREAD) || f == d || f->rt != w->rt)
			continue;
		/* Descriptors are type-stable: a reader that just left is read safely. */
		rank = reader_rank(w, f);
		prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
		if (rank > best_rank || (rank == best_rank && rank && prio > best_prio)) {
			best = f;
			best_rank = rank;
			best_prio = prio;
		}
	}
	return best;
}

enum prt__pick_act prt__proxy_pick(struct prt__worker *w, struct prt__pick *p)
{
	struct prt__fiber *d, *f;

	if (!w->rq.bitmap)
		return PRT_PICK_IDLE;
	d = prt__rq_pop(w);
	if (prt__likely(!atomic_load_explicit(&d->blocked_on, memory_order_acquire)))
		return run_plain(w, p, d);
	f = d;
	for (int depth = 0; depth < PRT_CHAIN_MAX; depth++) {
		struct prt__mutex *m = atomic_load_explicit(&f->blocked_on, memory_order_acquire);
		struct prt__fiber *o;
		uintptr_t ow;

		if (!m) {
			if (f == d)
				return run_plain(w, p, d); /* handed the lock meanwhile */
			f = d;                             /* the chain moved: restart */
			continue;
		}
		ow = atomic_load_explicit(&m->owner, memory_order_acquire);
		if (!(ow & ~PRT_MTX_FLAGS)) {
			if (f == d || !(ow & PRT_MTX_WAITERS))
				return run_plain(w, p, d); /* released mid-walk: d retries */
			/*
			 * Released to its waiters mid-chain (lateral stealing):
			 * its first waiter takes it when it runs, so run that
			 * one for d.
			 */
			o = next_owner(m);
			if (!o) {
				f = d; /* held again, or a thread is next: restart */
				continue;
			}
			return proxy_owner(w, p, d, o, m);
		}
		if (ow & PRT_MTX_READERS) {
			/* An rwlock held by readers: run one of them for d. */
			o = pick_reader(w, m, d);
			if (!o) {
				/* None can run (threads, untracked, ended): d sleeps until granted. */
				if (!sleep_donor(d))
					return run_plain(w, p, d);
				return PRT_PICK_AGAIN;
			}
			if (atomic_load_explicit(&o->blocked_on, memory_order_acquire)) {
				f = o; /* chain: the reader waits on another lock */
				continue;
			}
			return proxy_owner(w, p, d, o, m);
		}
		o = prt__owner_fiber(ow);
		if (!o || o == d) {
			/* A thread owner cannot be proxied; a cycle is d's to report. */
			if (o == d || !sleep_donor(d))
				return run_plain(w, p, d);
			return PRT_PICK_AGAIN;
		}
		if (atomic_load_explicit(&o->blocked_on, memory_order_acquire)) {
			f = o; /* chain: the owner waits on another mutex */
			continue;
		}
		return proxy_owner(w, p, d, o, m);
	}
	return run_plain(w, p, d);
}

bool prt__proxy_serves(struct prt__fiber *d, struct prt__fiber *self)
{
	struct prt__fiber *f = d;

	for (int depth = 0; depth < PRT_CHAIN_MAX && f != self; depth++) {
		struct prt__mutex *m = atomic_load_explicit(&f->blocked_on, memory_order_acquire);
		uintptr_t ow;

		if (!m)
			return false; /* f waits no more: it runs itself, or for d */
		ow = atomic_load_explicit(&m->owner, memory_order_acquire);
		if (ow & PRT_MTX_READERS)
			return true; /* readers: the pick chose one; an unlock re-picks */
		f = prt__owner_fiber(ow);
		if (!f)
			return true; /* released, or a thread's: the unlock's own path re-picks */
	}
	return true;
}

/* ---- donors after the pick: detach, time out, handoff preemption -------- */

bool prt__unattach(struct prt__fiber *d)
{
	for (;;) {
		/*
		 * seq_cst: the load half of the handoff's store-then-load (its
		 * seq_cst clear of d->blocked_on, then this), against attach()'s
		 * store of attached_to then load of blocked_on: one of the two
		 * sees the other. Relaxed, a weak CPU may move it before the
		 * clear, and a donor attached meanwhile would be missed.
		 */
		struct prt__fiber *o = atomic_load_explicit(&d->attached_to, memory_order_seq_cst);

		if (!o)
			return false;
		prt__spin_lock(&o->lock);
		if (atomic_load_explicit(&d->attached_to, memory_order_relaxed) == o) {
			prt__list_del(&d->rq_node);
			atomic_store_explicit(&d->attached_to, NULL, memory_order_relaxed);
			prt__spin_unlock(&o->lock);
			return true;
		}
		prt__spin_unlock(&o->lock);
	}
}

bool prt__detach_donor(struct prt__fiber *d)
{
	if (!prt__unattach(d))
		return false;
	prt__wake(d);
	return true;
}

/*
 * @f's timed mutex wait ended while it was queued as a donor (w's rq
 * lock held): count it where it is queued as the fiber thieves may take
 * that it now is. On another worker only if that rq lock is free or
 * kept by its thread (revoked: prt__rq_trylock_revoke; never wait for a
 * second lock held for an edit); else it is counted as a donor until
 * that worker picks it, which runs it.
 */
void prt__timed_out_donor(struct prt__worker *w, struct prt__fiber *f)
{
	struct prt__worker *x = atomic_load_explicit(&f->rq_worker, memory_order_relaxed);

	if (x == w) {
		if (prt__rq_recount(w, f))
			prt__announce_locked(w, f);
		return;
	}
	/* Not queued: a worker may run its owner in its place still; it must stop (preempt.c). */
	if (!x && w->pw.quantum)
		prt__preempt_served_changed(f, w, true);
	if (!x || !prt__rq_trylock_revoke(w, x))
		return;
	if (atomic_load_explicit(&f->rq_worker, memory_order_relaxed) == x && prt__rq_recount(x, f))
		prt__announce_locked(x, f);
	prt__rq_unlock(x);
}

void prt__after_handoff(struct prt__worker *w, struct prt__fiber *new_owner)
{
	struct prt__fiber *self = w->curr;
	bool proxying = w->donor != self;

	if (!proxying && (!new_owner ||
			  atomic_load_explicit(&new_owner->rq_worker, memory_order_relaxed) != w ||
			  atomic_load_explicit(&new_owner->prio, memory_order_relaxed) <=
				  prt__served_prio(w)))
		return;
	prt__rq_lock(w);
	/* We were interrupted, not yielding: back at the head of our level. */
	if (proxying && new_owner == w->donor) {
		/*
		 * We ran only for the donor, and it now holds what it waited
		 * for: it runs itself, ahead of us (as the kernel does).
		 */
		prt__rq_add(w, self, true);
		prt__put_donor(w, false);
	} else {
		prt__put_donor(w, false);
		prt__rq_add(w, self, true);
	}
	prt__announce_locked(w, self); /* queued while this worker runs another */
	prt__reschedule(w, self);
}
