/* SPDX-License-Identifier: MIT */
/*
 * Read-write lock with proxy execution (proxyrt/rwlock.h; docs/design.md,
 * section 18).
 *
 * The head of an rwlock is a struct prt__mutex (rwlock_int.h): its owner
 * word holds a writer's token or the count of readers, and its waiter
 * list holds both kinds of waiter as mutex waiter records. So a waiting
 * fiber's blocked_on, its record, its place in the run queue and its
 * priority changes are those of a mutex waiter, and the pick's chain
 * walk (proxy.c), deadlock detection (mutex_owner.c) and the dump follow
 * an rwlock as they follow a mutex; what they add is a branch for a word
 * held by readers. What is the rwlock's own is here: who may take the
 * lock, and who gets it when a holder leaves.
 *
 * Fast paths, no lock, one compare-and-swap on the word each:
 *
 *   rdlock   free -> 1 reader; n readers and no waiters -> n + 1
 *   wrlock   free -> the writer's token
 *   unlock   the writer's token -> free; n readers -> n - 1, unless the
 *            last leaves with waiters queued
 *
 * Everything else takes wait_lock. The word is never free while anyone
 * is queued: a waiter queues only after it set PRT_MTX_WAITERS in a held
 * word (under wait_lock), the unlock fast paths fail while the flag is
 * set, and the holder that leaves last hands the lock over under
 * wait_lock. There is no lateral stealing (mutex.c): the fairness rules
 * of proxyrt/rwlock.h need every grant decided under the lock, and the
 * convoy it avoids for mutexes is the price of any fair rwlock.
 *
 * Grants, wait_lock held (grant_readers, grant_writer):
 *
 *   release  a holder leaves (a writer, or the last reader) with waiters
 *            queued: the first waiter gets the lock: a writer alone; a
 *            reader together with every queued reader of the first
 *            queued writer's priority or higher, the writers among them
 *            passed over (a read phase: phase-fair within a level);
 *   join     the lock is held for reading and a queued writer gave up
 *            (timeout, EDEADLK, no memory for its timer): the readers it
 *            held back, those queued ahead of the first writer left (all
 *            of them if none is), join the holders.
 *
 * A grant takes at most RW_BATCH records at once, and wakes them once
 * wait_lock is dropped; a larger read phase is granted in rounds.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <string.h>

#include <proxyrt/rwlock.h>

#include "fault.h"
#include "mutex_owner.h"
#include "objname.h"
#include "proxy_int.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "rwlock_int.h"
#include "wait.h"
#include "worker.h"

_Static_assert(sizeof(struct prt__rwlock) <= PRT_RWLOCK_SIZE, "prt_rwlock_t too small");
_Static_assert(_Alignof(struct prt__rwlock) <= _Alignof(prt_rwlock_t), "prt_rwlock_t alignment");
_Static_assert(PRT_RW_TRACK == PRT_RWLOCK_TRACKED, "PRT_RWLOCK_TRACKED is the slots' count");
_Static_assert(sizeof(((prt_rwlockattr_t *)0)->__reserved) >= sizeof(const char *),
	       "prt_rwlockattr_t cannot hold a name pointer");

/* Records one grant takes and wakes (a larger read phase goes in rounds). */
#define RW_BATCH 16
/* Records a read phase's grant looks at, writers passed over included. */
#define RW_SCAN 256
/* Polls of the optimistic spin (as mutex.c's PRT_MTX_SPIN). */
#define RW_SPIN 512
/* Readers a word can count. */
#define RW_MAX_READERS (UINTPTR_MAX >> PRT_RW_SHIFT)

/* One waiter: a mutex waiter record, and what it waits for. On its stack. */

/* What one grant hands over, woken once wait_lock is dropped. */
struct rw_batch {
	int n;
	/* A read phase of more than RW_BATCH readers: grant again after the wakes. */
	bool more;
	/* @more was set once: counted in rw->granting, which finish_grant gives back. */
	bool counted;
	bool phase;  /* its rounds: a read phase's (else a join's) */
	/* A read phase: the priority its readers reach down to (the first writer's); INT_MIN: any. */
	int min;
	struct prt__handoff h[RW_BATCH];
};

static struct prt__rwlock *rw_of(prt_rwlock_t *u)
{
	return (struct prt__rwlock *)(void *)u;
}


/* ---- tracking readers ------------------------------------------------------ */

/*
 * Tracking readers. Proxy execution needs a reader to run for a writer
 * that waits behind them, and deadlock detection needs to know whom a
 * writer waits for; a count alone says neither. So each read hold puts
 * its owner's token in a free slot of the rwlock (PRT_RW_TRACK of them,
 * one compare-and-swap) after the word counts it, and takes it out
 * before the word lets it go: a token in a slot is always a reader's
 * (rwlock_int.h). A hold that finds no free slot is counted in its
 * owner's rd_untracked instead (prt__fiber, prt__tself: one writer, the
 * owner), and in the lock's @untracked: such an owner may hold for
 * reading any rwlock that has untracked holds, as far as recursion and
 * unlock's EPERM can tell, and the pick and the deadlock walk do not see
 * it. An unlock by a fiber holding nothing of a lock whose holds are all
 * tracked was believed on the strength of the fiber's untracked holds
 * of another lock (a review): it took a real reader's hold, a writer
 * then got the lock while that reader still read, and the reader's own
 * unlock said EPERM. The lock's count closes that: with none, no
 * untracked hold of it exists to give back.
 */

/* rd_untracked of the owner whose token is @tok (the caller, with an identity). */
static atomic_uint *untracked_of(uintptr_t tok)
{
	if (tok & PRT_MTX_THREAD)
		return &((struct prt__tself *)(tok & ~PRT_MTX_FLAGS))->rd_untracked;
	return &((struct prt__fiber *)tok)->rd_untracked;
}

/*
 * Put @tok in a free slot of @rw; false if none is free. seq_cst: the
 * deadlock walk's store-then-load (mutex_owner.c) reaches a reader
 * through its slot: the claim comes before any blocked_on the reader
 * publishes later, in the single order of seq_cst operations.
 */
static bool track(struct prt__rwlock *rw, uintptr_t tok)
{
	for (int i = 0; i < PRT_RW_TRACK; i++) {
		uintptr_t z = 0;

		if (!atomic_load_explicit(&rw->readers[i], memory_order_relaxed) &&
		    atomic_compare_exchange_strong_explicit(&rw->readers[i], &z, tok,
							    memory_order_seq_cst, memory_order_relaxed))
			return true;
	}
	return false;
}

/*
 * Take one slot naming @tok out of @rw; false if none does. relaxed: a
 * slot naming us changes only here; the word's release, after it,
 * orders it for whoever then finds the reader gone.
 */
static bool untrack(struct prt__rwlock *rw, uintptr_t tok)
{
	for (int i = 0; i < PRT_RW_TRACK; i++) {
		if (atomic_load_explicit(&rw->readers[i], memory_order_relaxed) == tok) {
			atomic_store_explicit(&rw->readers[i], 0, memory_order_relaxed);
			return true;
		}
	}
	return false;
}

/* The caller (@me) now holds one more read lock of @rw (@tracked: a granter gave it a slot). */
static void read_held(struct prt__rwlock *rw, const struct prt__owner *me, bool tracked)
{
	if (!tracked && !track(rw, me->tok)) {
		prt__held_add(untracked_of(me->tok), 1);
		atomic_fetch_add_explicit(&rw->untracked, 1, memory_order_relaxed);
	}
	prt__held_add(me->nheld, 1);
}

/*
 * The caller (@tok) lets one read hold of @rw go, before the word does:
 * its slot, else an untracked hold. False if it has neither (EPERM).
 */
static bool read_release(struct prt__rwlock *rw, uintptr_t tok)
{
	atomic_uint *u;
	unsigned n;

	if (untrack(rw, tok))
		return true;
	u = untracked_of(tok);
	if (!atomic_load_explicit(u, memory_order_relaxed))
		return false;
	/*
	 * relaxed: a count; the word's release orders the unlock. Never
	 * below 0: a caller believed wrongly (its untracked holds are of
	 * other locks, and this one has another owner's) takes that
	 * owner's count, as it takes its hold in the word.
	 */
	n = atomic_load_explicit(&rw->untracked, memory_order_relaxed);
	do {
		if (!n)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&rw->untracked, &n, n - 1,
							memory_order_relaxed, memory_order_relaxed));
	prt__held_add(u, -1u);
	return true;
}

/* Does the caller (@tok) hold @rw for reading, as far as can be known? */
static bool maybe_reader(struct prt__rwlock *rw, uintptr_t tok)
{
	return prt__rw_has_reader(&rw->m, tok) ||
	       (atomic_load_explicit(untracked_of(tok), memory_order_relaxed) &&
		atomic_load_explicit(&rw->untracked, memory_order_relaxed));
}

/* ---- fast paths ------------------------------------------------------------ */

/* Take @rw for reading if it is free, or held for reading with nobody queued. */
static inline bool read_take_fast(struct prt__rwlock *rw)
{
	uintptr_t o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);

	for (;;) {
		uintptr_t n;

		if (!o)
			n = PRT_RW_RD | PRT_RW_ONE;
		else if ((o & (PRT_MTX_READERS | PRT_MTX_WAITERS)) == PRT_MTX_READERS &&
			 prt__rw_count(o) < RW_MAX_READERS)
			n = o + PRT_RW_ONE;
		else
			return false;
		/* acquire: pairs with the release of the writer's unlock or handoff that left @o */
		if (atomic_compare_exchange_weak_explicit(&rw->m.owner, &o, n, memory_order_acquire,
							  memory_order_relaxed))
			return true;
	}
}

/*
 * Take @rw for writing if it is free. acquire: pairs with the release of
 * the last unlock (the readers' unlocks are read-modify-writes, so the
 * last one continues the release sequence of the others). release:
 * publishes the owner to the chain walks, as mutex.c's take_free.
 */
static inline bool write_take_fast(struct prt__rwlock *rw, uintptr_t tok)
{
	uintptr_t zero = 0;

	return atomic_compare_exchange_strong_explicit(&rw->m.owner, &zero, tok,
						       memory_order_acq_rel, memory_order_relaxed);
}

/*
 * Optimistic spin (mutex.c's spin_acquire): while a writer holds @rw and
 * runs on a CPU, poll the word for a moment, and take it by the fast
 * rules. Not once anyone is queued (the lock goes to them), nor behind
 * readers (whether they run would cost a walk of the slots).
 */
static bool spin_take(struct prt__rwlock *rw, struct prt__fiber *self, bool reader)
{
	for (int i = 0; i < RW_SPIN; i++) {
		uintptr_t o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
		struct prt__fiber *f;

		if (o & PRT_MTX_WAITERS)
			return false;
		if (!o || (reader && (o & PRT_MTX_READERS))) {
			if (reader ? read_take_fast(rw) : write_take_fast(rw, (uintptr_t)self))
				return true;
			continue;
		}
		if (o & PRT_MTX_READERS)
			return false;
		f = prt__owner_fiber(o);
		/* Descriptors are type-stable: reading a stale owner's state is safe. */
		if (!f || !prt__owner_runs_soon(f, self))
			return false;
		prt__cpu_relax();
		prt__cpu_relax();
	}
	return false;
}

/* ---- waiter list (wait_lock held) ------------------------------------------- */

/*
 * Set up the list at first use (zero storage: PRT_RWLOCK_INITIALIZER)
 * and mark the head as an rwlock's for the dump. The mark is written
 * once, before any waiter publishes a blocked_on naming @rw (insert(),
 * seq_cst), which is how the walks reach it.
 */
static void waiters_init(struct prt__rwlock *rw)
{
	if (!rw->m.waiters.next)
		prt__list_init(&rw->m.waiters);
	if (rw->m.type != PRT__MTX_RWLOCK)
		rw->m.type = PRT__MTX_RWLOCK;
}

static bool no_waiters(struct prt__rwlock *rw)
{
	return prt__list_empty(&rw->m.waiters);
}

static void update_top(struct prt__rwlock *rw)
{
	struct prt__mwaiter *f = prt__mutex_first_waiter(&rw->m);

	atomic_store_explicit(&rw->m.top, f ? f->pl.prio + 1 : 0, memory_order_relaxed);
}

/* Queue @r by priority, FIFO within a level, and publish blocked_on (as mutex.c's insert()). */
static void insert(struct prt__rwlock *rw, struct prt__mwaiter *r)
{
	r->since = prt__now_ns();
	/*
	 * seq_cst store of blocked_on, then seq_cst load of prio: pairs with
	 * prt_fiber_set_priority's store of prio then prt__waits_reprio's
	 * load of blocked_on (mutex.c, insert()).
	 */
	prt__set_waits_on(r->token, &rw->m);
	if (r->fiber) {
		r->pl.prio = atomic_load_explicit(&r->fiber->prio, memory_order_seq_cst);
		r->fiber->mwait = r;
	}
	prt__mwaiter_insert(&rw->m.waiters, r);
	update_top(rw);
}

/* Take @r off the list: it waits no more. */
static void unlink_waiter(struct prt__rwlock *rw, struct prt__mwaiter *r)
{
	prt__mwaiter_del(&rw->m.waiters, r);
	update_top(rw);
	if (r->fiber)
		r->fiber->mwait = NULL;
	prt__set_waits_on(r->token, NULL);
}

/*
 * @r gives up (timeout, deadlock, no memory): off the list, and the flag
 * cleared with the last waiter so that the fast paths work again.
 * relaxed: as mutex.c's dequeue(), the flag alone changes.
 */
static void dequeue(struct prt__rwlock *rw, struct prt__mwaiter *r)
{
	uintptr_t o;

	unlink_waiter(rw, r);
	if (!no_waiters(rw))
		return;
	o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
	while ((o & PRT_MTX_WAITERS) &&
	       !atomic_compare_exchange_weak_explicit(&rw->m.owner, &o, o & ~PRT_MTX_WAITERS,
						      memory_order_relaxed, memory_order_relaxed))
		;
}

/*
 * May newcomer @t take @rw now? A writer if it is free (nobody is queued
 * then: see the top). A reader if it is free, or held for reading and
 * no waiter of its priority or higher is queued, or it reads @rw already
 * (a recursive read lock never waits: writer preference would deadlock
 * it). Takes it if so; else, with @flag, sets PRT_MTX_WAITERS so that
 * the holders' unlock comes to the slow path. wait_lock held.
 */
static bool take_locked(struct prt__rwlock *rw, struct prt__rw_waiter *t, bool flag)
{
	uintptr_t o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);

	if (t->rec.fiber)
		t->rec.pl.prio = atomic_load_explicit(&t->rec.fiber->prio, memory_order_relaxed);
	for (;;) {
		uintptr_t n;

		if (!o) {
			n = t->reader ? PRT_RW_RD | PRT_RW_ONE : t->rec.token;
		} else if (t->reader && (o & PRT_MTX_READERS) && prt__rw_count(o) < RW_MAX_READERS &&
			   (atomic_load_explicit(&rw->m.top, memory_order_relaxed) <= t->rec.pl.prio ||
			    maybe_reader(rw, t->rec.token))) {
			n = o + PRT_RW_ONE;
		} else {
			if (!flag || (o & PRT_MTX_WAITERS))
				return false;
			/* relaxed: as mutex.c's acquire_locked(); the list is published by wait_lock */
			if (atomic_compare_exchange_weak_explicit(&rw->m.owner, &o, o | PRT_MTX_WAITERS,
								  memory_order_relaxed, memory_order_relaxed))
				return false;
			continue;
		}
		/* acq_rel: as the fast paths (acquire the last unlock; publish a writer) */
		if (atomic_compare_exchange_weak_explicit(&rw->m.owner, &o, n, memory_order_acq_rel,
							  memory_order_relaxed))
			return true;
	}
}

/* ---- grants (wait_lock held) ------------------------------------------------- */

/*
 * A waiter handed the lock from outside its runtime may run, end and see
 * its runtime destroyed before the wake is done with it: take a
 * reference first, while it still waits (mutex.c's handoff_ref).
 */
static struct prt_runtime *grant_ref(struct prt__mwaiter *r)
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
 * Hand @t what the word now says is its (a reader counted, or a writer
 * named): note its wake in @b, take it off the list, track a reader.
 * From the store of granted on, a record that does not sleep (on its
 * fiber's stack) may vanish; one that sleeps stays until woken.
 */
static void grant(struct prt__rwlock *rw, struct prt__rw_waiter *t, struct rw_batch *b)
{
	struct prt__mwaiter *r = &t->rec;
	struct prt__handoff *h = &b->h[b->n++];

	h->ref = grant_ref(r);
	h->fiber = r->fiber;
	h->wait = r->sleeping || r->parker ? &r->wait : NULL;
	h->done = true;
	if (t->reader)
		t->tracked = track(rw, r->token);
	unlink_waiter(rw, r);
	/* release: pairs with the waiter's acquire of granted (and of its wait's state) */
	atomic_store_explicit(&r->granted, PRT_GRANTED, memory_order_release);
}

/*
 * The holder that leaves owns the word @o: nobody else may change it
 * (the flag stops the fast paths, the rest needs wait_lock). release:
 * pairs with the acquire of the new holders (granted, or the next lock)
 * and publishes a writer's token to the chain walks.
 */
static void word_set(struct prt__rwlock *rw, uintptr_t o, uintptr_t n)
{
	bool ok = atomic_compare_exchange_strong_explicit(&rw->m.owner, &o, n, memory_order_release,
							  memory_order_relaxed);

	prt__assert(ok);
}

/* Hand the lock, released from word @o, to writer @t alone. */
static void grant_writer(struct prt__rwlock *rw, uintptr_t o, struct prt__rw_waiter *t,
			 struct rw_batch *b)
{
	struct prt__mwaiter *r = &t->rec;
	bool others = rw->m.waiters.next != &r->pl.node || r->pl.node.next != &rw->m.waiters;

	word_set(rw, o, r->token | (others ? PRT_MTX_WAITERS : 0));
	grant(rw, t, b);
}

/*
 * The readers a grant takes, in list order, at most RW_BATCH into @out.
 * A read phase (b->phase): every reader of priority b->min or higher,
 * b->min being the first writer's priority (set when one is met), the
 * writers among them passed over, at most RW_SCAN records looked at. A
 * join: the readers ahead of the first writer. Returns how many;
 * *@rest: whether records stay queued.
 */
static int collect_readers(struct prt__rwlock *rw, struct rw_batch *b, struct prt__rw_waiter **out,
			   bool *rest)
{
	struct prt__list *head = &rw->m.waiters;
	int k = 0, seen = 0;

	*rest = false;
	for (struct prt__list *it = head->next; it != head; it = it->next) {
		struct prt__rw_waiter *t = prt__rw_waiter_of(prt__container_of(it, struct prt__mwaiter, pl.node));

		if (t->rec.pl.prio < b->min || k == RW_BATCH || ++seen > RW_SCAN) {
			*rest = true;
			b->more = k == RW_BATCH;
			if (b->more && !b->counted) {
				/* relaxed: published by wait_lock, which any grant of the rest takes */
				atomic_fetch_add_explicit(&rw->granting, 1, memory_order_relaxed);
				b->counted = true;
			}
			break;
		}
		if (!t->reader) {
			*rest = true;
			if (!b->phase)
				break;
			if (b->min == INT_MIN)
				b->min = t->rec.pl.prio;
			continue;
		}
		out[k++] = t;
	}
	return k;
}

/*
 * Grant the readers collect_readers() takes: the word @o is the leaving
 * holder's (@release: their count replaces it) or held for reading (they
 * join the holders). Returns how many.
 */
static int grant_readers(struct prt__rwlock *rw, uintptr_t o, bool release, struct rw_batch *b)
{
	struct prt__rw_waiter *t[RW_BATCH];
	bool rest;
	int k = collect_readers(rw, b, t, &rest);
	uintptr_t add = (uintptr_t)k * PRT_RW_ONE, flag = rest ? PRT_MTX_WAITERS : 0;

	if (!k)
		return 0;
	if (release) {
		word_set(rw, o, PRT_RW_RD | add | flag);
	} else {
		/*
		 * Holders other than the last may leave meanwhile (the last
		 * needs wait_lock, since the flag is set). release: as
		 * word_set().
		 */
		o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
		while (!atomic_compare_exchange_weak_explicit(&rw->m.owner, &o,
							      ((o & ~PRT_MTX_WAITERS) + add) | flag,
							      memory_order_release, memory_order_relaxed))
			;
	}
	for (int i = 0; i < k; i++)
		grant(rw, t[i], b);
	return k;
}

/*
 * The holder with word @o leaves, waiters queued: hand the lock to the
 * first waiter (a release grant). Unlike mutex.c's choose(), the donor
 * this worker serves gets no precedence over a waiter of its priority
 * queued ahead of it: that order is what the fairness rules promise
 * (a reader donor would pass a writer of its level). A donor that
 * outranks every other waiter is first anyway.
 */
static void release_locked(struct prt__rwlock *rw, uintptr_t o, struct rw_batch *b)
{
	struct prt__rw_waiter *first = prt__rw_waiter_of(prt__mutex_first_waiter(&rw->m));

	b->phase = true;
	b->min = INT_MIN;
	if (first->reader)
		grant_readers(rw, o, true, b); /* its read phase: it is first, so never empty */
	else
		grant_writer(rw, o, first, b);
}

/* ---- waking what was granted ----------------------------------------------------- */

/*
 * Wake what a grant left in @b (wait_lock dropped: wakeups never happen
 * under it), and say which new holder the unlocker should yield to: the
 * donor it serves if granted, else the first granted (the highest
 * priority), kept in *@next.
 */
static void batch_wake(struct prt__worker *w, struct rw_batch *b, struct prt__fiber **next,
		       bool *any)
{
	for (int i = 0; i < b->n; i++) {
		struct prt__fiber *f = b->h[i].fiber;

		if (!*any || (w && f && f == w->donor))
			*next = f;
		*any = true;
		prt__handoff_wake(&b->h[i]);
	}
	b->n = 0;
}

/*
 * After a grant (no lock held): wake it, grant the rest of a read phase
 * larger than a batch, round by round, then, from an unlock on worker
 * @w, yield to a new holder that should run first (prt__after_handoff:
 * it may switch, so it comes last).
 */
static void finish_grant(struct prt__rwlock *rw, struct prt__worker *w, struct rw_batch *b)
{
	struct prt__fiber *next = NULL;
	bool any = false;

	batch_wake(w, b, &next, &any);
	while (b->more) {
		uintptr_t o;

		b->more = false;
		prt__fault_pause(PRT_PAUSE_RW_ROUND); /* test builds: the rest may be granted and leave here */
		prt__spin_lock(&rw->m.wait_lock);
		o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
		if ((o & PRT_MTX_READERS) && !no_waiters(rw))
			grant_readers(rw, o, false, b);
		prt__spin_unlock(&rw->m.wait_lock);
		batch_wake(w, b, &next, &any);
	}
	/*
	 * Our last access to @rw: once this is 0 it may be destroyed and
	 * freed (release: pairs with the acquire in prt_rwlock_destroy).
	 */
	if (b->counted)
		atomic_fetch_sub_explicit(&rw->granting, 1, memory_order_release);
	if (w && any)
		prt__after_handoff(w, next);
}

static void batch_init(struct rw_batch *b, bool phase)
{
	b->n = 0;
	b->more = false;
	b->counted = false;
	b->phase = phase;
	b->min = INT_MIN;
}

/*
 * A queued writer gave up, no lock held: the readers it held back join
 * the holders if the lock is held for reading (a join grant).
 */
static void writer_left(struct prt__rwlock *rw)
{
	struct rw_batch b;
	uintptr_t o;

	batch_init(&b, false);
	prt__spin_lock(&rw->m.wait_lock);
	o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
	if ((o & PRT_MTX_READERS) && !no_waiters(rw))
		grant_readers(rw, o, false, &b);
	prt__spin_unlock(&rw->m.wait_lock);
	finish_grant(rw, NULL, &b);
}

void prt__rwlock_join_resorted(struct prt__mutex *m)
{
	struct prt__rwlock *rw = prt__rwlock_of_mutex(m);

	writer_left(rw); /* a join grant: the readers ahead of the first writer */
	/* Our last access to @rw (release: pairs with the acquire in prt_rwlock_destroy). */
	atomic_fetch_sub_explicit(&rw->granting, 1, memory_order_release);
}

/* ---- a fiber's wait ------------------------------------------------------------- */

/*
 * A fiber's contended lock (lock_fiber): mutex.c's lock_fiber, with its
 * rule. wait_lock is dropped to arm the timer and to sleep, and while it
 * is dropped our record may be granted (rec.granted) or taken off by our
 * timer (rec.timedout); so we go to sleep only if we saw both clear
 * under wait_lock and held it since (@looked). Whoever grants us or
 * times us out afterwards needs wait_lock, and finds us asleep or
 * queued. A queued waiter never takes the lock itself: it is granted
 * (the word is never free while it is queued: see the top).
 */
struct fiber_wait {
	struct prt__rwlock *rw;
	struct prt__worker *w;      /* the worker we run on (changes across a sleep) */
	struct prt__fiber *self;
	struct prt__rw_waiter wr;   /* our record: on the list while queued (wait_lock) */
	uint64_t deadline;          /* CLOCK_MONOTONIC ns; 0: none */
	bool proxy;                 /* wait as a queued donor; else asleep off the run queues */
	bool queued;                /* wr inserted (a grant or our timer may have taken it off since) */
	bool armed;                 /* our timer is armed: cancel it at the end */
	bool looked;                /* wait_over() saw the wait go on, wait_lock held since */
};

/* wait_over(): the wait is not over. */
#define WAIT_ON (-1)

static prt__timer_fn rw_timer_fire;

/* wait_lock held. 0: granted; ETIMEDOUT: our timer took us off; WAIT_ON: neither (as mutex.c). */
static int wait_over(struct fiber_wait *fw)
{
	/* acquire: pairs with the release in grant() */
	if (fw->queued && atomic_load_explicit(&fw->wr.rec.granted, memory_order_acquire))
		return 0;
	if (fw->wr.rec.timedout)
		return ETIMEDOUT;
	fw->looked = true;
	return WAIT_ON;
}

static void wait_unlock(struct fiber_wait *fw)
{
	fw->looked = false;
	prt__spin_unlock(&fw->rw->m.wait_lock);
}

static bool use_proxy(struct prt__rwlock *rw, struct prt__fiber *self)
{
	if (rw->m.proxy == PRT_RWLOCK_PROXY_DEFAULT)
		return !(self->rt->flags & PRT_RT_NO_PROXY);
	return rw->m.proxy == PRT_RWLOCK_PROXY_ON;
}

/*
 * Timed wait, queued, timer not armed: arm it, wait_lock dropped meanwhile
 * (the lock order is rq lock -> wait_lock). WAIT_ON once armed (look
 * again); else ENOMEM (no room for the timer; dequeued) or 0 (granted
 * meanwhile). As mutex.c's arm_timeout().
 */
static int arm_timeout(struct fiber_wait *fw)
{
	int err;

	wait_unlock(fw);
	if (!prt__timer_arm(fw->w, fw->deadline, rw_timer_fire, false)) {
		fw->armed = true;
		prt__spin_lock(&fw->rw->m.wait_lock);
		return WAIT_ON;
	}
	prt__spin_lock(&fw->rw->m.wait_lock);
	err = wait_over(fw);
	if (err == WAIT_ON) {
		dequeue(fw->rw, &fw->wr.rec);
		return ENOMEM;
	}
	return err == 0 ? 0 : ENOMEM;
}

/*
 * Wait for a grant, as mutex.c's wait_sleep(): queued as a donor with
 * proxy execution (the pick runs a holder in our place), else asleep off
 * the run queues until a grant or our timer wakes us. Entered and left
 * with wait_lock held; the caller looks again.
 */
static void wait_sleep(struct fiber_wait *fw)
{
	prt__assert(fw->looked && fw->queued);
	if (!fw->proxy) {
		fw->wr.rec.sleeping = true;
		prt__set_wait(fw->self, PRT_WK_MUTEX, &fw->rw->m, 0);
	}
	wait_unlock(fw);
	if (fw->proxy)
		prt__schedule_mutex_wait(fw->w);
	else
		prt__wait_block(&fw->wr.rec.wait, 0);
	fw->w = prt__cur_worker();
	prt__spin_lock(&fw->rw->m.wait_lock);
	fw->wr.rec.sleeping = false;
	prt__wait_init(&fw->wr.rec.wait, fw->self);
}

/*
 * The wait is over, wait_lock dropped: cancel our timer, and let a
 * priority change still busy with our record finish before our caller
 * may free the rwlock (mutex.c's wait_end).
 */
static void wait_finish(struct fiber_wait *fw)
{
	if (fw->armed)
		prt__timer_cancel(fw->self);
	if (fw->queued) {
		prt__spin_lock(&fw->self->lock);
		prt__spin_unlock(&fw->self->lock);
	}
}

/*
 * Contended lock of a fiber: 0 (*@tracked: a granter tracked our read
 * hold), ETIMEDOUT (past @deadline), EDEADLK (waiting would close a
 * cycle), ENOMEM (no room for the timer), ECANCELED (prt_cancel: pending
 * when it would wait, or it ended our wait as our timer would). Our
 * record is never on the list when we return.
 */
static int lock_fiber(struct prt__rwlock *rw, struct prt__worker *w, bool reader,
		      uint64_t deadline, bool *tracked)
{
	struct fiber_wait fw = {
		.rw = rw,
		.w = w,
		.self = w->curr,
		.wr = { .rec = { .fiber = w->curr, .token = (uintptr_t)w->curr,
				 .wait.fiber = w->curr },
			.reader = reader },
		.deadline = deadline,
		.proxy = use_proxy(rw, w->curr),
	};
	bool cancelled;
	int err;

	/*
	 * A cancel pending: a lock take_locked() grants at once is taken (a
	 * recursive or outranking reader never waits: proxyrt/rwlock.h),
	 * else ECANCELED, neither queued nor the flag set; no spin, which is
	 * a wait. A cancel that comes later is seen before we sleep (below).
	 */
	cancelled = prt__cancel_pending(fw.self);
	*tracked = false;
	if (!cancelled && w->rt->nworkers > 1 && spin_take(rw, fw.self, reader))
		return 0;
	prt__spin_lock(&rw->m.wait_lock);
	waiters_init(rw);
	for (;;) {
		/* wait_lock held. Granted or timed out while it was dropped? */
		if ((err = wait_over(&fw)) != WAIT_ON)
			goto out;
		if (!fw.queued && take_locked(rw, &fw.wr, !cancelled)) {
			err = 0;
			goto out;
		}
		if (cancelled) {
			err = ECANCELED; /* the first round: never queued */
			goto out;
		}
		if (fw.deadline && prt__now_ns() >= fw.deadline) {
			err = ETIMEDOUT;
			goto give_up;
		}
		if (!fw.queued) {
			insert(rw, &fw.wr.rec);
			fw.queued = true;
		}
		if (prt__closes_cycle(&rw->m, fw.wr.rec.token)) {
			err = EDEADLK;
			goto give_up;
		}
		/* Drops wait_lock: look again (armed once). */
		if (deadline && !fw.armed) {
			if ((err = arm_timeout(&fw)) != WAIT_ON)
				goto out;
			continue;
		}
		/*
		 * A cancel pending? Our blocked_on (seq_cst, in insert) is
		 * stored, then this load: prt_cancel stores the flag, then
		 * loads blocked_on. So it is seen here, or the canceller waits
		 * for wait_lock and ends our wait as our timer would (as in
		 * mutex.c's lock_fiber).
		 */
		if (atomic_load_explicit(&fw.self->cancel, memory_order_seq_cst)) {
			err = ECANCELED;
			goto give_up;
		}
		wait_sleep(&fw);
	}
give_up:
	if (fw.queued)
		dequeue(rw, &fw.wr.rec);
out:
	prt__spin_unlock(&rw->m.wait_lock);
	wait_finish(&fw);
	/* Taken off the list before our deadline (or with none): a cancel did it. */
	if (err == ETIMEDOUT && (!deadline || prt__now_ns() < deadline))
		err = ECANCELED;
	if (err && !reader && fw.queued)
		writer_left(rw);
	*tracked = fw.wr.tracked;
	return err;
}

/*
 * The timer of a fiber's timed wait, in @w's heap (w's rq lock held, by
 * w or an idle worker): end the wait if it still waits (off the list,
 * rec.timedout), queue the fiber if it slept, bring it back if attached
 * to a sleeping holder. As mutex.c's mutex_timeout(); what a writer
 * that gave up held back is granted by the fiber itself (writer_left),
 * not here under the rq lock. False if the wait went on without us.
 */
static bool rw_timeout_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m);

static bool rw_timeout(struct prt__worker *w, struct prt__fiber *f)
{
	/* relaxed: only tells which wait_lock to take; read again under it (mutex.c) */
	struct prt__mutex *m = atomic_load_explicit(&f->blocked_on, memory_order_relaxed);

	if (!m)
		return false;
	prt__spin_lock(&m->wait_lock);
	return rw_timeout_locked(w, f, m);
}

/* rw_timeout with @m's wait_lock taken (dropped here). */
static bool rw_timeout_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m)
{
	struct prt__mwaiter *r = prt__mwait_on(f, m);
	bool sleeping;

	if (!r) {
		prt__spin_unlock(&m->wait_lock);
		return false;
	}
	r->timedout = true;
	sleeping = r->sleeping;
	dequeue(prt__rwlock_of_mutex(m), r);
	prt__spin_unlock(&m->wait_lock);
	prt__chain_wait_ended(w, f);
	if (sleeping) {
		prt__wait_wake_here(&r->wait, w);
		return true;
	}
	if (!prt__unattach(f))
		return false;
	prt__wake_here_locked(w, f);
	return true;
}

static void rw_timer_fire(struct prt__timer *t, void *ctx)
{
	struct prt__fiber *f = prt__container_of(t, struct prt__fiber, timer);

	if (!rw_timeout(ctx, f))
		prt__timed_out_donor(ctx, f);
}

void prt__rwlock_cancel_locked(struct prt__worker *w, struct prt__fiber *f, struct prt__mutex *m)
{
	/* prt_cancel ends the wait as its timer would; lock_fiber says ECANCELED. */
	if (!rw_timeout_locked(w, f, m))
		prt__timed_out_donor(w, f);
}

/* ---- a plain thread's wait -------------------------------------------------------- */

/*
 * A plain thread's wait for @wr timed out, wait_lock not held: leave the
 * list (ETIMEDOUT), unless we were granted just before (0: then wait for
 * that grant's wake, kept if it came already).
 */
static int thread_timed_out(struct prt__rwlock *rw, struct prt__rw_waiter *wr)
{
	int err = 0;

	prt__spin_lock(&rw->m.wait_lock);
	/* acquire: pairs with the release in grant() */
	if (!atomic_load_explicit(&wr->rec.granted, memory_order_acquire)) {
		dequeue(rw, &wr->rec);
		err = ETIMEDOUT;
	}
	prt__spin_unlock(&rw->m.wait_lock);
	if (err) {
		if (!wr->reader)
			writer_left(rw);
		return err;
	}
	prt__wait_rearm(&wr->rec.wait);
	prt__wait_block(&wr->rec.wait, 0);
	return 0;
}

/* Contended lock of a plain thread: as lock_fiber, asleep on a futex at the default priority. */
static int lock_thread(struct prt__rwlock *rw, uintptr_t tok, bool reader, uint64_t deadline,
		       bool *tracked)
{
	struct prt__rw_waiter wr = {
		.rec = { .token = tok, .pl.prio = PRT_PRIO_DEFAULT, .sleeping = true },
		.reader = reader,
	};
	int err = WAIT_ON;

	prt__spin_lock(&rw->m.wait_lock);
	waiters_init(rw);
	if (take_locked(rw, &wr, true)) {
		err = 0;
	} else if (deadline && prt__now_ns() >= deadline) {
		err = ETIMEDOUT;
	} else {
		insert(rw, &wr.rec);
		if (prt__closes_cycle(&rw->m, tok)) {
			dequeue(rw, &wr.rec);
			err = EDEADLK;
		}
	}
	prt__spin_unlock(&rw->m.wait_lock);
	if (err == EDEADLK && !reader)
		writer_left(rw);
	if (err == WAIT_ON)
		err = prt__wait_block(&wr.rec.wait, deadline) ? thread_timed_out(rw, &wr) : 0;
	*tracked = wr.tracked;
	return err;
}

/* ---- lock calls -------------------------------------------------------------------- */

/*
 * The contended lock of the caller @me (@w: its worker, NULL for a plain
 * thread): the cases that never wait, then the wait; the hold counted.
 */
static prt__noinline int lock_slow(struct prt__rwlock *rw, struct prt__worker *w,
				   const struct prt__owner *me, bool reader, uint64_t deadline)
{
	/* relaxed: only our own lock puts our token in the word, or a slot */
	uintptr_t o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
	bool tracked = false;
	int err;

	if ((o & ~PRT_MTX_WAITERS) == me->tok)
		return EDEADLK; /* its writer */
	if ((o & PRT_MTX_READERS) && !reader && prt__rw_has_reader(&rw->m, me->tok))
		return EDEADLK; /* an upgrade: never granted while we read */
	if ((o & PRT_MTX_READERS) && reader && prt__rw_count(o) >= RW_MAX_READERS)
		return EAGAIN;
	err = w ? lock_fiber(rw, w, reader, deadline, &tracked)
		: lock_thread(rw, me->tok, reader, deadline, &tracked);
	if (err)
		return err;
	if (reader)
		read_held(rw, me, tracked);
	else
		prt__held_add(me->nheld, 1);
	return 0;
}

/* Check @u and learn the caller (@w, @me): 0, EINVAL or ENOMEM. */
static int enter(prt_rwlock_t *u, const char *call, struct prt__worker **w, struct prt__owner *me)
{
	(void)call; /* debug builds only */
	if (prt__unlikely(!u))
		return EINVAL;
	prt__check_live(rw_of(u)->m.dbg, call, u);
	*w = prt__cur_worker();
	return prt__likely(prt__owner_self(*w, me)) ? 0 : ENOMEM;
}

/* The fast path of a lock call: taken, and counted. */
static inline bool take_fast(struct prt__rwlock *rw, const struct prt__owner *me, bool reader)
{
	if (reader) {
		if (!read_take_fast(rw))
			return false;
		read_held(rw, me, false);
		return true;
	}
	if (!write_take_fast(rw, me->tok))
		return false;
	prt__held_add(me->nheld, 1);
	return true;
}

static int lock(prt_rwlock_t *u, bool reader, const char *call)
{
	struct prt__worker *w;
	struct prt__owner me;
	int err;

	if ((err = enter(u, call, &w, &me)))
		return err;
	if (prt__likely(take_fast(rw_of(u), &me, reader)))
		return 0;
	return lock_slow(rw_of(u), w, &me, reader, 0);
}

PRT_API int prt_rwlock_rdlock(prt_rwlock_t *u)
{
	return lock(u, true, "prt_rwlock_rdlock");
}

PRT_API int prt_rwlock_wrlock(prt_rwlock_t *u)
{
	return lock(u, false, "prt_rwlock_wrlock");
}

/* The timed calls: @abstime (CLOCK_REALTIME), or @ns from now when @abstime is NULL and @rel. */
static int timed(prt_rwlock_t *u, bool reader, const struct timespec *abstime, bool rel,
		 uint64_t ns, const char *call)
{
	struct prt__worker *w;
	struct prt__owner me;
	uint64_t deadline;
	int err;

	if ((err = enter(u, call, &w, &me)))
		return err;
	/* As pthreads: the deadline is not looked at if the lock is taken at once. */
	if (take_fast(rw_of(u), &me, reader))
		return 0;
	if (rel)
		deadline = prt__deadline_in(ns); /* saturates at PRT_NEVER; never 0 */
	else if (!prt__abstime_to_mono(abstime, &deadline))
		return EINVAL;
	return lock_slow(rw_of(u), w, &me, reader, deadline);
}

PRT_API int prt_rwlock_timedrdlock(prt_rwlock_t *u, const struct timespec *abstime)
{
	return timed(u, true, abstime, false, 0, "prt_rwlock_timedrdlock");
}

PRT_API int prt_rwlock_timedwrlock(prt_rwlock_t *u, const struct timespec *abstime)
{
	return timed(u, false, abstime, false, 0, "prt_rwlock_timedwrlock");
}

PRT_API int prt_rwlock_timedrdlock_ns(prt_rwlock_t *u, uint64_t timeout_ns)
{
	return timed(u, true, NULL, true, timeout_ns, "prt_rwlock_timedrdlock_ns");
}

PRT_API int prt_rwlock_timedwrlock_ns(prt_rwlock_t *u, uint64_t timeout_ns)
{
	return timed(u, false, NULL, true, timeout_ns, "prt_rwlock_timedwrlock_ns");
}

PRT_API int prt_rwlock_tryrdlock(prt_rwlock_t *u)
{
	struct prt__rwlock *rw = rw_of(u);
	struct prt__worker *w;
	struct prt__owner me;
	struct prt__rw_waiter wr = { .reader = true };
	bool taken;
	int err;

	if ((err = enter(u, "prt_rwlock_tryrdlock", &w, &me)))
		return err;
	if (take_fast(rw, &me, true))
		return 0;
	/* relaxed: a look; the decision is take_locked's, under wait_lock */
	if (!(atomic_load_explicit(&rw->m.owner, memory_order_relaxed) & PRT_MTX_READERS))
		return EBUSY;
	/* Waiters queued: join only ahead of them all, or as a recursive reader. */
	wr.rec.fiber = w ? w->curr : NULL;
	wr.rec.token = me.tok;
	wr.rec.pl.prio = PRT_PRIO_DEFAULT;
	prt__spin_lock(&rw->m.wait_lock);
	waiters_init(rw);
	taken = take_locked(rw, &wr, false);
	prt__spin_unlock(&rw->m.wait_lock);
	if (!taken)
		return EBUSY;
	read_held(rw, &me, false);
	return 0;
}

PRT_API int prt_rwlock_trywrlock(prt_rwlock_t *u)
{
	struct prt__worker *w;
	struct prt__owner me;
	int err;

	if ((err = enter(u, "prt_rwlock_trywrlock", &w, &me)))
		return err;
	return take_fast(rw_of(u), &me, false) ? 0 : EBUSY;
}

/* ---- unlock ------------------------------------------------------------------------ */

static prt__noinline int unlock_write_slow(struct prt__rwlock *rw, struct prt__worker *w)
{
	struct rw_batch b;

	batch_init(&b, true);
	prt__spin_lock(&rw->m.wait_lock);
	waiters_init(rw);
	if (no_waiters(rw)) /* the flag outlived its waiters; release: as the fast path */
		atomic_store_explicit(&rw->m.owner, 0, memory_order_release);
	else
		release_locked(rw, atomic_load_explicit(&rw->m.owner, memory_order_relaxed), &b);
	prt__spin_unlock(&rw->m.wait_lock);
	finish_grant(rw, w, &b);
	return 0;
}

/*
 * The last reader (as it looked) leaves with waiters queued. Under
 * wait_lock others may have joined meanwhile (recursive or outranking
 * readers): then it just leaves; and without waiters (they gave up) the
 * lock goes free.
 */
static prt__noinline int unlock_read_slow(struct prt__rwlock *rw, struct prt__worker *w)
{
	struct rw_batch b;
	uintptr_t o;

	batch_init(&b, true);
	prt__spin_lock(&rw->m.wait_lock);
	waiters_init(rw);
	o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
	for (;;) {
		uintptr_t n = prt__rw_count(o) > 1 ? o - PRT_RW_ONE : 0;

		if (prt__rw_count(o) == 1 && !no_waiters(rw)) {
			release_locked(rw, o, &b);
			break;
		}
		/* release: pairs with the acquire of the next writer's lock */
		if (atomic_compare_exchange_weak_explicit(&rw->m.owner, &o, n, memory_order_release,
							  memory_order_relaxed))
			break;
	}
	prt__spin_unlock(&rw->m.wait_lock);
	finish_grant(rw, w, &b);
	return 0;
}

/* One read hold of the caller (@me, @o: the word as it looked) goes. */
static int unlock_read(struct prt__rwlock *rw, struct prt__worker *w, const struct prt__owner *me,
		       uintptr_t o, bool *owed)
{
	if (!me->nheld || !read_release(rw, me->tok))
		return EPERM;
	*owed = prt__held_drop(me->nheld);
	for (;;) {
		uintptr_t n;

		if (prt__rw_count(o) == 1 && (o & PRT_MTX_WAITERS))
			return unlock_read_slow(rw, w);
		n = prt__rw_count(o) == 1 ? 0 : o - PRT_RW_ONE;
		/*
		 * release: pairs with the acquire of the next writer's lock
		 * (the unlocks of the other readers are read-modify-writes:
		 * they continue this one's release sequence).
		 */
		if (atomic_compare_exchange_weak_explicit(&rw->m.owner, &o, n, memory_order_release,
							  memory_order_relaxed))
			return 0;
	}
}

PRT_API int prt_rwlock_unlock(prt_rwlock_t *u)
{
	struct prt__rwlock *rw = rw_of(u);
	struct prt__worker *w;
	struct prt__owner me;
	uintptr_t o, t;
	bool owed = false;
	int err = 0;

	if (prt__unlikely(!u))
		return EINVAL;
	prt__check_live(rw->m.dbg, "prt_rwlock_unlock", u);
	w = prt__cur_worker();
	prt__owner_peek(w, &me);
	/* relaxed: only our own lock (or a grant we read with acquire) puts our token there */
	o = atomic_load_explicit(&rw->m.owner, memory_order_relaxed);
	if (o & PRT_MTX_READERS) {
		err = unlock_read(rw, w, &me, o, &owed);
		goto out;
	}
	if ((o & ~PRT_MTX_WAITERS) != me.tok)
		return EPERM;
	owed = prt__held_drop(me.nheld);
	t = me.tok;
	/* release: pairs with the acquire of the next lock; fails while waiters are queued */
	if (!atomic_compare_exchange_strong_explicit(&rw->m.owner, &t, 0, memory_order_release,
						     memory_order_relaxed))
		err = unlock_write_slow(rw, w);
out:
	/* Our last hold went and our time slice waited for it (preempt.c). */
	if (owed)
		prt__preempt_slice_owed();
	return err;
}

/* ---- attributes, init, destroy ----------------------------------------------------- */

static bool proxy_ok(int proxy)
{
	return proxy >= PRT_RWLOCK_PROXY_DEFAULT && proxy <= PRT_RWLOCK_PROXY_OFF;
}

PRT_API int prt_rwlockattr_init(prt_rwlockattr_t *a)
{
	if (!a)
		return EINVAL;
	memset(a, 0, sizeof(*a));
	return 0;
}

PRT_API int prt_rwlockattr_destroy(prt_rwlockattr_t *a)
{
	return a ? 0 : EINVAL;
}

PRT_API int prt_rwlockattr_setproxy(prt_rwlockattr_t *a, int proxy)
{
	if (!a || !proxy_ok(proxy))
		return EINVAL;
	a->proxy = proxy;
	return 0;
}

PRT_API int prt_rwlockattr_getproxy(const prt_rwlockattr_t *a, int *proxy)
{
	if (!a || !proxy)
		return EINVAL;
	*proxy = a->proxy;
	return 0;
}

PRT_API int prt_rwlockattr_setname(prt_rwlockattr_t *a, const char *name)
{
	if (!a || !name)
		return EINVAL;
	prt__attr_set_name(a->__reserved, name);
	return 0;
}

PRT_API int prt_rwlockattr_getname(const prt_rwlockattr_t *a, const char **name)
{
	if (!a || !name)
		return EINVAL;
	*name = prt__attr_name(a->__reserved);
	return 0;
}

PRT_API int prt_rwlock_init(prt_rwlock_t *u, const prt_rwlockattr_t *a)
{
	struct prt__rwlock *rw = rw_of(u);
	const char *name;

	if (!u || (a && !proxy_ok(a->proxy)))
		return EINVAL;
	/* The name first: the only step that can fail (ENOMEM), before @u changes. */
	name = a ? prt__attr_name(a->__reserved) : NULL;
	if (name && *name) {
		if (prt__objname_set(u, PRT_OBJ_RWLOCK, name))
			return ENOMEM;
	} else {
		prt__objname_clear(u, PRT_OBJ_RWLOCK); /* left by an rwlock freed without destroy */
	}
	memset(u, 0, sizeof(*u));
	rw->m.type = PRT__MTX_RWLOCK;
	if (a)
		rw->m.proxy = (uint8_t)a->proxy;
	return 0;
}

PRT_API int prt_rwlock_destroy(prt_rwlock_t *u)
{
	struct prt__rwlock *rw = rw_of(u);

	if (!u)
		return EINVAL;
	prt__check_live(rw->m.dbg, "prt_rwlock_destroy", u);
	/*
	 * acquire: pairs with the release of the last unlock, so the caller's
	 * reuse of the storage comes after it. Waiters are queued only while
	 * it is held: a word of 0 means none.
	 */
	if (atomic_load_explicit(&rw->m.owner, memory_order_acquire))
		return EBUSY;
	/*
	 * An unlock that granted a large read phase in rounds may still be
	 * about to retake wait_lock, with every reader of it gone (struct
	 * prt__rwlock, granting): it does not block, so wait. acquire: pairs
	 * with its release.
	 */
	for (unsigned n = 1; atomic_load_explicit(&rw->granting, memory_order_acquire); n++) {
		if (n % 64 == 0)
			sched_yield();
		else
			prt__cpu_relax();
	}
	prt__mark_dead(rw->m.dbg);
	prt__objname_clear(u, PRT_OBJ_RWLOCK);
	return 0;
}
