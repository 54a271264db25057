/* SPDX-License-Identifier: MIT */
/*
 * Condition variable. A waiter's record is a mutex waiter record
 * (struct prt__mwaiter): it sits on the condvar's list until signalled,
 * then moves to the mutex's list (requeue, like FUTEX_CMP_REQUEUE), and
 * wakes only when the mutex is handed to it. So broadcast wakes nobody
 * to fight over the mutex, and waiters get it in priority order.
 *
 * Lost wakeups: the waiter joins the condvar list while it still holds
 * the mutex, so a signaller that takes the mutex first cannot miss it;
 * the grant may then come before the waiter sleeps, which its record's
 * wait (wait.h) absorbs: the waiter sleeps on rec.wait, and whoever
 * hands it the mutex (the requeue, a later unlock) wakes rec.wait.
 *
 * Timeout against signal. POSIX lets a thread broadcast, destroy the
 * condvar and reuse its memory while the waiters it woke still wait
 * for the mutex; their deadlines may pass meanwhile. So a waiter whose
 * wait ended without the mutex (timeout, no timer memory) must find out
 * from its own record whether a signal already moved it, never by
 * locking the condvar. One compare-and-swap on rec.cwait decides:
 *
 *   signaller (wake(), c->lock held)     timed-out waiter (no lock)
 *   --------------------------------     --------------------------
 *   CAS cwait ONCOND -> MOVED            CAS cwait ONCOND -> LEAVING
 *   won:  unlink, requeue on the mutex   won:  lock c, unlink itself,
 *   lost: skip it, it unlinks itself           lock the mutex: ETIMEDOUT
 *                                        lost: a signal moved it; wait
 *                                              for the grant (re-arm
 *                                              rec.wait: a grant that
 *                                              came after the timeout
 *                                              is kept there): 0, and
 *                                              never touch c again
 *
 * A LEAVING record stays on the list until its waiter unlinks it under
 * c->lock; prt_cond_destroy waits for that (a few instructions), so the
 * condvar outlives every waiter that may still touch it.
 *
 * Spinning waiters (the wait spin, docs/design.md section 6). A fiber
 * that may spin (prt__wait_spin_ns) waits at first without a record:
 * under c->lock it takes a free slot of c->slot[] (SPIN) and counts
 * itself in c->spinners, then releases the mutex and polls its slot; a
 * signal or broadcast that finds spinners marks their slots WOKEN
 * (under c->lock), and each spinner retakes the mutex itself. So a wake
 * between two workers that both run moves the condvar's line, not the
 * waiter's record, its descriptor and the mutex's waiter list too (a
 * requeue and a handoff): `proxyrt_bench xcore pinned` went from
 * 2.6-3.3 to about 1 us a round trip on this VM, about 2x a bare
 * cache-line ping-pong (docs/design.md, section 6, "A condvar's
 * spinners"). Lost wakeups: the spinner took its slot holding the
 * mutex, so a signaller that changed the predicate under it comes later
 * and finds it. A spinner whose spin ends unwoken (its length, its
 * deadline, a cancel, work on its worker) looks at its slot again under
 * c->lock: WOKEN, it was woken; else it joins the list there as any
 * waiter, and sleeps; either way it frees the slot there. With every
 * slot taken, a waiter queues at once. A signal wakes the spinners
 * (all of them: they are not told apart) unless a sleeper ranks at
 * least as high as the highest of them (c->spin_prio), and else takes
 * that sleeper as always; so the highest-priority waiter goes, and
 * spinners that go with it find their predicate false and wait again,
 * a spurious wakeup as POSIX allows. A broadcast wakes the spinners and
 * requeues the sleepers. The spinners then take the mutex by its own
 * rules: never ahead of a higher-priority waiter queued on it; but a
 * lower-priority sleeper requeued by the same broadcast may be handed
 * the mutex before a spinner asks for it, and the spinner then waits
 * on the mutex as any late comer does (priority inheritance bounds
 * it). At most one fiber per worker spins, so that is no thundering
 * herd.
 *
 * A woken spinner's slot stays WOKEN until it is freed, after the
 * spinner's last access to the condvar; prt_cond_destroy says EBUSY
 * while a slot is SPIN and waits while one is WOKEN (POSIX lets a
 * broadcast be followed by the destroy at once). A woken spinner that
 * takes the mutex free does not free its slot there: any write of the
 * condvar's line on the wake's path costs a cache-line transfer (an
 * atomic count of woken spinners, decremented before the retake, cost
 * xcore pinned 15-20% in the slow placement; a plain store after the
 * retake took the line from the other side in the middle of its own
 * wait, 15% in the fast one). It owes the slot (prt__fiber.owed_slot)
 * and frees it at its next unlock or condvar call, holding the mutex
 * meanwhile. Destroy must not wait for that (the owner may be waiting
 * for the destroyer): it frees an owed slot itself, finding its owner
 * through the mutex's owner word (slot_takeover; a compare-and-swap of
 * the owner's owed_slot to NULL decides who frees it). So each woken
 * slot is freed within a few instructions of the spinner's wake, or is
 * owed by the mutex's owner. A wait that rebinds the condvar to
 * another mutex settles the woken slots first, so that c->m names the
 * mutex of every owed slot. A spinner that finds the mutex taken frees
 * its slot before it may block for it (its holder may be destroying
 * the condvar).
 *
 * Priority changes: a waiting fiber publishes its record (wait_cond,
 * cwait, under its own lock) before it reads its priority for the list,
 * so prt_fiber_set_priority either changes it before that read or finds
 * the record and re-sorts it (prt__cond_reprio). The record and the
 * condvar stay valid while wait_cond is set: whoever unlinks the record
 * from the condvar (the signaller moving it, or the waiter leaving on a
 * timeout) clears it, under c->lock and then the fiber's lock, so a
 * condvar destroyed after a broadcast is never reached through it.
 */
#include <sched.h>
#include <string.h>

#include "cond_int.h"
#include "fiber_desc.h"
#include "mutex_int.h"
#include "mutex_owner.h"
#include "objname.h"
#include "runtime_int.h"
#include "rwlock_int.h"
#include "wait.h"
#include "worker.h"

/* Spinners at once on one condvar; more waiters queue at once. */
#define PRT_COND_SPIN_SLOTS 8
/* A spinner's slot (prt__cond.slot[]). */
enum {
	PRT_CSLOT_FREE,  /* nobody's */
	PRT_CSLOT_SPIN,  /* its spinner waits (counted in spinners) */
	PRT_CSLOT_WOKEN, /* woken by a signal or broadcast: its spinner frees it as it leaves */
};

_Static_assert(PRT_CSLOT_FREE == 0, "prt__fiber_slot_settle stores 0");

struct prt__cond {
	/*
	 * What a signal and a spinning wait touch come first, within 16
	 * bytes (on one cache line unless the condvar, 8-byte aligned,
	 * starts 8 bytes before a line's end): the lock and the spinners'
	 * slots ("Spinning waiters" above). @spinners counts the slots in
	 * PRT_CSLOT_SPIN (under @lock); each spinner polls its own slot byte
	 * (without @lock), and frees a woken one as its last access to the
	 * condvar; @spin_prio is the highest priority among the spinners
	 * (kept until none is left). The rest under @lock.
	 */
	prt__spinlock_t lock;
	unsigned spinners;
	atomic_uchar slot[PRT_COND_SPIN_SLOTS];
	int spin_prio;
	unsigned dbg;              /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	/* prt__mwaiter.pl (a plist, plist.h), PRT_CW_ONCOND or _LEAVING; {NULL, NULL} = empty; lock */
	struct prt__list waiters;
	struct prt__mutex *m;      /* the mutex of the current waiters and spinners; lock */
};

_Static_assert(sizeof(struct prt__cond) <= PRT_COND_SIZE, "prt_cond_t too small");
_Static_assert(offsetof(struct prt__cond, slot) + PRT_COND_SPIN_SLOTS <= 16,
	       "a condvar's hot words first");

static struct prt__cond *cond_of(prt_cond_t *c)
{
	return (struct prt__cond *)(void *)c;
}

static void list_lazy_init(struct prt__cond *c)
{
	if (!c->waiters.next)
		prt__list_init(&c->waiters);
}

_Static_assert(sizeof(((prt_condattr_t *)0)->__reserved) >= sizeof(const char *),
	       "prt_condattr_t cannot hold a name pointer");

PRT_API int prt_condattr_init(prt_condattr_t *a)
{
	if (!a)
		return EINVAL;
	memset(a, 0, sizeof(*a));
	return 0;
}

PRT_API int prt_condattr_destroy(prt_condattr_t *a)
{
	return a ? 0 : EINVAL;
}

PRT_API int prt_condattr_setname(prt_condattr_t *a, const char *name)
{
	if (!a || !name)
		return EINVAL;
	prt__attr_set_name(a->__reserved, name);
	return 0;
}

PRT_API int prt_condattr_getname(const prt_condattr_t *a, const char **name)
{
	if (!a || !name)
		return EINVAL;
	*name = prt__attr_name(a->__reserved);
	return 0;
}

PRT_API int prt_cond_init_attr(prt_cond_t *c, const prt_condattr_t *a)
{
	const char *name = a ? prt__attr_name(a->__reserved) : NULL;

	if (!c)
		return EINVAL;
	/* The name first: the only step that can fail (ENOMEM), before @c changes. */
	if (name && *name) {
		if (prt__objname_set(c, PRT_OBJ_COND, name))
			return ENOMEM;
	} else {
		prt__objname_clear(c, PRT_OBJ_COND); /* left by a condvar freed without destroy */
	}
	memset(c, 0, sizeof(*c));
	return 0;
}

PRT_API int prt_cond_init(prt_cond_t *c)
{
	return prt_cond_init_attr(c, NULL);
}

/*
 * The first waiter still waiting (not leaving on its timeout), not
 * claimed: take_waiter's choice, unless it begins to leave meanwhile.
 * c->lock held.
 */
static struct prt__mwaiter *first_waiting(struct prt__cond *c)
{
	struct prt__list *it;

	if (!c->waiters.next)
		return NULL;
	for (it = c->waiters.next; it != &c->waiters; it = it->next) {
		struct prt__mwaiter *r = prt__container_of(it, struct prt__mwaiter, pl.node);

		if (atomic_load_explicit(&r->cwait, memory_order_relaxed) == PRT_CW_ONCOND)
			return r;
	}
	return NULL;
}

/*
 * Woken slot @i of @c: free it for its spinner if that spinner owes it
 * (took the mutex and has not freed it yet), which it then cannot do
 * any more (the compare-and-swap on its prt__fiber.owed_slot). It holds
 * the mutex meanwhile, so its owner word names it; descriptors are
 * type-stable (a stale owner's word is safe to read), and one that
 * ended owing a slot held the mutex, so is kept. True if freed. c->lock.
 */
static bool slot_takeover(struct prt__cond *c, int i)
{
	uintptr_t o = atomic_load_explicit(&c->m->owner, memory_order_acquire);
	struct prt__fiber *f = prt__owner_fiber(o);
	atomic_uchar *want = &c->slot[i];

	/* acquire: pairs with the owner's release of owed_slot, after its reads of @c */
	if (!f || atomic_load_explicit(&f->owed_slot, memory_order_acquire) != want ||
	    !atomic_compare_exchange_strong_explicit(&f->owed_slot, &want, NULL,
						     memory_order_acquire, memory_order_relaxed))
		return false;
	atomic_store_explicit(&c->slot[i], PRT_CSLOT_FREE, memory_order_relaxed);
	return true;
}

/*
 * Settle the woken slots of @c: free those their spinners owe (slot_takeover).
 * True if none is left woken: the rest, spinners between their wake
 * and their try of the mutex, free theirs in a few instructions, never
 * blocking first. c->lock.
 */
static bool slots_settle(struct prt__cond *c)
{
	bool settled = true;

	for (int i = 0; i < PRT_COND_SPIN_SLOTS; i++)
		/* acquire: pairs with a woken spinner's release of its slot (slot_free) */
		if (atomic_load_explicit(&c->slot[i], memory_order_acquire) == PRT_CSLOT_WOKEN &&
		    !slot_takeover(c, i))
			settled = false;
	return settled;
}

/*
 * The caller's owed slot (prt__fiber.owed_slot), as it begins a call on
 * @c: true if it is one of @c's, for settle_own() once c->lock is held
 * (its store then finds the line ours; before the lock, it took the
 * line from a spinner polling its slot there, which took it back before
 * our lock: 10-15% of xcore pinned in the fast placement). Any other is
 * freed now. Context: the caller's own fiber @f (NULL: a plain thread).
 */
static bool owes_here(struct prt__cond *c, struct prt__fiber *f)
{
	atomic_uchar *p;

	if (!f || prt__likely(!(p = atomic_load_explicit(&f->owed_slot, memory_order_relaxed))))
		return false;
	/* As integers: @p may point into another condvar. */
	if ((uintptr_t)p - (uintptr_t)&c->slot[0] < PRT_COND_SPIN_SLOTS)
		return true;
	prt__fiber_slot_settle(f);
	return false;
}

/*
 * Free the caller's owed slot of @c (owes_here), c->lock held: no
 * takeover can race with us then (slot_takeover holds it), so plain
 * stores do; one may have come before our lock.
 */
static void settle_own(struct prt__fiber *f)
{
	atomic_uchar *p = atomic_load_explicit(&f->owed_slot, memory_order_relaxed);

	if (!p)
		return; /* a takeover's, between our look and our lock */
	atomic_store_explicit(&f->owed_slot, NULL, memory_order_relaxed);
	atomic_store_explicit(p, PRT_CSLOT_FREE, memory_order_relaxed);
}

/*
 * Who waits: 0 nobody, 1 only waiters leaving (timed out and unlinking
 * themselves, or woken spinners), 2 a waiter still waiting. c->lock.
 */
static int list_state(struct prt__cond *c)
{
	if (c->spinners)
		return 2;
	if (!slots_settle(c))
		return 1;
	if (!c->waiters.next || prt__list_empty(&c->waiters))
		return 0;
	return first_waiting(c) ? 2 : 1;
}

PRT_API int prt_cond_destroy(prt_cond_t *uc)
{
	struct prt__cond *c = cond_of(uc);
	int st;

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_destroy", uc);
	if (prt__cur_worker())
		prt__fiber_slot_settle(prt__cur_worker()->curr);
	for (;;) {
		prt__spin_lock(&c->lock);
		st = list_state(c);
		if (!st)
			prt__mark_dead(c->dbg);
		prt__spin_unlock(&c->lock);
		if (!st)
			prt__objname_clear(uc, PRT_OBJ_COND);
		if (st != 1)
			return st ? EBUSY : 0;
		/* Timed-out waiters unlinking themselves, woken spinners: they need c->lock once more. */
		sched_yield();
	}
}

/*
 * The wait of @rec ended without the mutex: leave @c, unless a signal
 * moved @rec first. Returns true if we left (@c touched), false if the
 * signal won (@c not touched: it may be gone).
 */
static void wait_end(struct prt__mwaiter *r);

static bool leave(struct prt__cond *c, struct prt__mwaiter *rec)
{
	unsigned st = PRT_CW_ONCOND;

	/* acq_rel: pairs with the signaller's CAS in take_waiter() */
	if (!atomic_compare_exchange_strong_explicit(&rec->cwait, &st, PRT_CW_LEAVING,
						     memory_order_acq_rel, memory_order_acquire))
		return false;
	prt__fault_pause(PRT_PAUSE_COND_LEAVING); /* test builds: a rebinding wait may come here */
	/* Still linked: @c cannot be destroyed until we unlink (prt_cond_destroy). */
	prt__spin_lock(&c->lock);
	prt__mwaiter_del(&c->waiters, rec);
	wait_end(rec);
	prt__spin_unlock(&c->lock); /* our last access to @c */
	return true;
}

/* Put waiter @r on @c's list, c->lock held (lock order: condvar -> fiber). */
static void wait_begin(struct prt__cond *c, struct prt__mwaiter *r)
{
	struct prt__fiber *f = r->fiber;

	if (f) {
		prt__spin_lock(&f->lock);
		f->wait_cond = c;
		f->cwait = r;
		prt__spin_unlock(&f->lock);
		/* After publishing: a later change re-sorts us, an earlier one is read here. */
		r->pl.prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	}
	atomic_store_explicit(&r->cwait, PRT_CW_ONCOND, memory_order_relaxed);
	prt__mwaiter_insert(&c->waiters, r);
}

/*
 * @r is off the condvar: unpublish it, after a prt__cond_reprio holding
 * the fiber's lock is done. Called under c->lock by whoever unlinks @r
 * (take_waiter, leave), so the fiber's wait_cond never names a condvar
 * that may be destroyed; again by the waiter at the end (idempotent).
 */
static void wait_end(struct prt__mwaiter *r)
{
	struct prt__fiber *f = r->fiber;

	if (!f)
		return;
	prt__spin_lock(&f->lock);
	f->wait_cond = NULL;
	f->cwait = NULL;
	prt__spin_unlock(&f->lock);
}

/*
 * With @f->lock held: re-sort @f's record on the condvar it waits on,
 * if any. False if that condvar's lock was busy (the lock order is
 * condvar -> fiber): drop @f->lock and retry.
 */
static bool cond_reprio(struct prt__fiber *f)
{
	struct prt__cond *c = f->wait_cond;
	struct prt__mwaiter *r = f->cwait;
	int prio;

	if (!c)
		return true;
	if (!prt__spin_trylock(&c->lock))
		return false;
	prio = atomic_load_explicit(&f->prio, memory_order_relaxed);
	/*
	 * wait_cond set under f->lock, which we hold: @r is still linked here
	 * (ONCOND, or LEAVING until its waiter unlinks it); once moved to the
	 * mutex, prt__waits_reprio's mutex side has it.
	 */
	if (atomic_load_explicit(&r->cwait, memory_order_relaxed) != PRT_CW_MOVED &&
	    r->pl.prio != prio) {
		prt__mwaiter_del(&c->waiters, r);
		r->pl.prio = prio; /* to the tail of its new level */
		prt__mwaiter_insert(&c->waiters, r);
	}
	prt__spin_unlock(&c->lock);
	return true;
}

/* spin_wait(): the wait goes on, queued (sleep on rec.wait). */
#define WAIT_ON (-1)
/* spin_wait(): woken, the slot still ours: free it (slot_free) once the mutex is tried. */
#define WOKEN_IN_SLOT (-2)

/*
 * A woken spinner's last access to @c: free its slot @i. release: our
 * reads of @c come before a destroy that sees the slot free (list_state).
 */
static void slot_free(struct prt__cond *c, int i)
{
	atomic_store_explicit(&c->slot[i], PRT_CSLOT_FREE, memory_order_release);
}

/*
 * A spinner's wait ("Spinning waiters" above) in slot @i, the mutex
 * released: poll the slot while prt__spin_keep allows. Returns
 * WOKEN_IN_SLOT if a signal came (the caller retakes the mutex and frees
 * the slot), ETIMEDOUT or ECANCELED (slot freed: retake the mutex too),
 * 0 if woken after all when the spin ended (slot freed: retake it), or
 * WAIT_ON once @rec is on the list (slot freed: sleep on it).
 */
static int spin_wait(struct prt__cond *c, struct prt__mwaiter *rec, struct prt__worker *w,
		     int i, uint64_t spin, uint64_t deadline)
{
	struct prt__fiber *self = rec->fiber;
	struct prt__spin sp = { .spin = spin, .deadline = deadline };
	int err = WAIT_ON;

	prt__assert_own_worker(w);
	do
		prt__cpu_relax();
	while (atomic_load_explicit(&c->slot[i], memory_order_relaxed) == PRT_CSLOT_SPIN &&
	       !prt__cancel_pending(self) && prt__spin_keep(w, &sp));
	prt__fault_pause(PRT_PAUSE_COND_SPUN); /* test builds: a destroy may come here */
	/* Woken: the slot stays ours until we free it, so the condvar stays. */
	if (atomic_load_explicit(&c->slot[i], memory_order_relaxed) == PRT_CSLOT_WOKEN)
		return WOKEN_IN_SLOT;
	prt__spin_lock(&c->lock);
	if (atomic_load_explicit(&c->slot[i], memory_order_relaxed) == PRT_CSLOT_WOKEN) {
		err = 0; /* woken since our look */
	} else {
		c->spinners--; /* never woken: still counted there */
		if (prt__cancel_pending(self))
			err = ECANCELED;
		else if (deadline && prt__now_ns() >= deadline)
			err = ETIMEDOUT;
		else
			wait_begin(c, rec);
	}
	atomic_store_explicit(&c->slot[i], PRT_CSLOT_FREE, memory_order_relaxed);
	prt__spin_unlock(&c->lock); /* our last access to @c, unless we queued */
	return err;
}

static int cond_wait(prt_cond_t *uc, prt_mutex_t *um, const struct timespec *abstime,
		     const uint64_t *timeout_ns)
{
	struct prt__cond *c = cond_of(uc);
	struct prt__mutex *m;
	struct prt__worker *w = prt__cur_worker();
	struct prt__mwaiter rec = { .sleeping = true, .parker = true };
	uint64_t deadline = 0, spin = 0;
	struct prt__unlock_defer ud = { 0 };
	bool owed;
	unsigned count;
	int err, e, slot = -1;

	if (!uc || !um)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_wait", uc);
	if (abstime && !prt__abstime_to_mono(abstime, &deadline))
		return EINVAL;
	if (timeout_ns)
		deadline = prt__deadline_in(*timeout_ns); /* never 0; PRT_NEVER if it does not fit */
	m = prt__mutex_of(um);
	rec.fiber = w ? w->curr : NULL;
	owed = owes_here(c, rec.fiber);
	prt__wait_init(&rec.wait, rec.fiber);
	rec.token = prt__mutex_self_token();
	rec.pl.prio = PRT_PRIO_DEFAULT; /* a fiber's: read in wait_begin */
	/*
	 * relaxed, as prt_mutex_unlock's check: only our own lock (or a
	 * handoff whose grant we read with acquire) puts our token there.
	 */
	if ((atomic_load_explicit(&m->owner, memory_order_relaxed) & ~PRT_MTX_WAITERS) != rec.token)
		return EPERM;
	/* Cancelled: return at once, the mutex still held (nothing changed). */
	if (rec.fiber && prt__cancel_pending(rec.fiber))
		return ECANCELED;
	/*
	 * Not while we run in a donor's place (proxy execution): the unlock
	 * hands the mutex to it, which then runs at once (prt__after_handoff).
	 */
	if (rec.fiber && w->donor == rec.fiber)
		spin = prt__wait_spin_ns(w);
again:
	prt__spin_lock(&c->lock);
	if (owed) {
		settle_own(rec.fiber);
		owed = false;
	}
	list_lazy_init(c);
	/*
	 * Another mutex: EINVAL while a waiter still waits with ours. Not
	 * for records leaving on their timeout (first_waiting skips them):
	 * their waiters unlink themselves and retake their own mutex, never
	 * c->m.
	 */
	if ((first_waiting(c) || c->spinners) && c->m != m) {
		prt__spin_unlock(&c->lock);
		return EINVAL;
	}
	if (c->m != m) {
		/*
		 * Rebound: the woken spinners of the old mutex settled first
		 * (slots_settle finds them through c->m). One between its wake
		 * and its try of the mutex may want c->lock: retry without it.
		 */
		if (!slots_settle(c)) {
			prt__spin_unlock(&c->lock);
			sched_yield(); /* as destroy: that spinner's thread may need our CPU */
			goto again;
		}
		c->m = m;
	}
	/* A free slot to spin in (all taken: queue at once). */
	for (int i = 0; spin && i < PRT_COND_SPIN_SLOTS && slot < 0; i++)
		if (atomic_load_explicit(&c->slot[i], memory_order_relaxed) == PRT_CSLOT_FREE)
			slot = i;
	if (slot >= 0) {
		int prio = atomic_load_explicit(&rec.fiber->prio, memory_order_relaxed);

		if (!c->spinners || prio > c->spin_prio)
			c->spin_prio = prio;
		c->spinners++;
		atomic_store_explicit(&c->slot[slot], PRT_CSLOT_SPIN, memory_order_relaxed);
	} else {
		spin = 0;
		wait_begin(c, &rec);
	}
	prt__spin_unlock(&c->lock);

	/*
	 * A spinner's unlock does not switch (to a new owner that outranks
	 * us, a slice owed): switched out holding a slot, a signal could mark
	 * it woken, and a destroy on this worker would then wait for a slot
	 * that only we can free, never letting us run. Those switches come
	 * once the slot is settled (prt__unlock_deferred). Else the unlock
	 * may switch us out, and we may run on another worker after it.
	 */
	if (spin)
		w->unlock_defer = &ud;
	err = prt__mutex_release_all(m, &count);
	prt__assert(err == 0); /* ownership was checked above */
	if (spin)
		w->unlock_defer = NULL;
	w = prt__cur_worker();
	if (spin && (err = spin_wait(c, &rec, w, slot, spin, deadline)) != WAIT_ON) {
		if (err == WOKEN_IN_SLOT) {
			/*
			 * Taken free: we owe the slot ("A woken spinner's slot"
			 * above), our next unlock or condvar call frees it. Else
			 * free it now, before we may block for the mutex: its
			 * holder may be destroying the condvar, which waits for
			 * the slot.
			 */
			err = 0;
			if (prt__mutex_take_free(m)) {
				/* release: our reads of @c come before a takeover (slot_takeover) */
				atomic_store_explicit(&rec.fiber->owed_slot, &c->slot[slot],
						      memory_order_release);
				prt__unlock_deferred(w, &ud); /* owed: a destroy takes it over */
				goto held;
			}
			slot_free(c, slot);
		}
		prt__unlock_deferred(w, &ud); /* slot freed */
		goto retake; /* never queued: nothing to unpublish */
	}
	if (spin)
		prt__unlock_deferred(w, &ud); /* slot freed, queued: sleeping switches anyway */
	if (rec.fiber)
		prt__set_wait(rec.fiber, PRT_WK_COND, c, 0);
	/* A cancel ends it as the deadline does (ECANCELED): leave, retake the mutex. */
	err = spin ? prt__wait_block_nospin(&rec.wait, deadline, true)
		   : prt__wait_block_cancel(&rec.wait, deadline);
	if (err && !leave(c, &rec)) {
		/* A signal moved us first: it won (see the top of the file). */
		prt__wait_rearm(&rec.wait);
		err = prt__wait_block(&rec.wait, 0);
	}
	if (!err) {
		prt__mutex_held(rec.token); /* handed to us: we own it again */
		wait_end(&rec);
		goto held;
	}
	wait_end(&rec);
retake:
	/* Take it back, as pthreads does, cancelled or not; counts itself in nheld. */
	if ((e = prt__mutex_lock_nocancel(m)))
		return e; /* EDEADLK: a cycle through another mutex we hold */
held:
	/* We hold the mutex again (handed over, or taken back after a wake, timeout or cancel). */
	atomic_store_explicit(&m->count, count, memory_order_relaxed);
	return err;
}

PRT_API int prt_cond_wait(prt_cond_t *uc, prt_mutex_t *um)
{
	return cond_wait(uc, um, NULL, NULL);
}

PRT_API int prt_cond_timedwait(prt_cond_t *uc, prt_mutex_t *um, const struct timespec *abstime)
{
	if (!abstime)
		return EINVAL;
	return cond_wait(uc, um, abstime, NULL);
}

PRT_API int prt_cond_timedwait_ns(prt_cond_t *uc, prt_mutex_t *um, uint64_t timeout_ns)
{
	return cond_wait(uc, um, NULL, &timeout_ns);
}

/*
 * The first waiter still waiting, claimed for a signal and unlinked, or
 * NULL. Waiters leaving on a timeout are skipped: they unlink themselves.
 * c->lock held.
 */
static struct prt__mwaiter *take_waiter(struct prt__cond *c)
{
	struct prt__mwaiter *r;

	/* A failed claim is a waiter that began to leave: first_waiting() passes it next. */
	while ((r = first_waiting(c))) {
		unsigned st = PRT_CW_ONCOND;

		/* acq_rel: pairs with the waiter's CAS in leave() */
		if (atomic_compare_exchange_strong_explicit(&r->cwait, &st, PRT_CW_MOVED,
							    memory_order_acq_rel,
							    memory_order_relaxed)) {
			prt__mwaiter_del(&c->waiters, r);
			wait_end(r); /* the condvar may be destroyed once we are done */
			return r;
		}
	}
	return NULL;
}

/* Wake every spinner of @c: each leaves on its own once it sees its slot woken. c->lock. */
static void wake_spinners(struct prt__cond *c)
{
	for (int i = 0; c->spinners && i < PRT_COND_SPIN_SLOTS; i++)
		if (atomic_load_explicit(&c->slot[i], memory_order_relaxed) == PRT_CSLOT_SPIN) {
			c->spinners--;
			/* release: what we wrote before the signal, for the spinner that retakes the mutex */
			atomic_store_explicit(&c->slot[i], PRT_CSLOT_WOKEN, memory_order_release);
		}
}

/*
 * Take up to @n waiters off the condvar and requeue them on the mutex;
 * a broadcast wakes the spinners too, a signal either the spinners
 * (when no sleeper ranks as high as the highest of them) or the first
 * sleeper (see the top of the file).
 */
static int wake(prt_cond_t *uc, int n)
{
	struct prt__cond *c = cond_of(uc);
	struct prt__worker *w = prt__cur_worker();
	struct prt__fiber *self = w ? w->curr : NULL;
	bool all = n > 1, owed;

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, n == 1 ? "prt_cond_signal" : "prt_cond_broadcast", uc);
	owed = owes_here(c, self);

	for (bool first = true; n-- > 0; first = false) {
		struct prt__mwaiter *r, *s;
		struct prt__mutex *m;

		prt__spin_lock(&c->lock);
		if (owed) {
			settle_own(self);
			owed = false;
		}
		if (first && c->spinners &&
		    (all || !(s = first_waiting(c)) || s->pl.prio < c->spin_prio)) {
			wake_spinners(c);
			if (!all) {
				prt__spin_unlock(&c->lock);
				break;
			}
		}
		if (!(r = take_waiter(c))) {
			/* A signal's sleeper left on its timeout meanwhile (leave()): the spinners then. */
			if (first && c->spinners)
				wake_spinners(c);
			prt__spin_unlock(&c->lock);
			break;
		}
		m = c->m;
		/*
		 * Requeue under the condvar lock: the waiter's record stays valid
		 * until it is granted the mutex, which only the requeue or a later
		 * unlock can do.
		 */
		prt__mutex_requeue(m, r);
		prt__spin_unlock(&c->lock);
	}
	return 0;
}

PRT_API int prt_cond_signal(prt_cond_t *c)
{
	return wake(c, 1);
}

PRT_API int prt_cond_broadcast(prt_cond_t *c)
{
	return wake(c, 0x7fffffff);
}

/*
 * A fiber's priority changed: re-sort its records, the condvar's and
 * then the mutex's, as the kernel's rt_mutex_adjust_prio_chain does
 * (mutex.c, "Priority changes"). Here, above both, so that neither
 * calls up into the other.
 */
void prt__waits_reprio(prt_fiber_t fh)
{
	struct prt__handoff h = { 0 };
	struct prt__mutex *rw_join = NULL;

	for (;;) {
		struct prt__fiber *f = prt__fiber_lock_handle(fh);
		bool done;

		if (!f)
			break; /* it ended: it waits on nothing */
		done = cond_reprio(f) && prt__mutex_reprio(f, &h, &rw_join);
		prt__spin_unlock(&f->lock);
		if (done)
			break;
		prt__cpu_relax();
	}
	prt__handoff_wake(&h);
	if (rw_join)
		prt__rwlock_join_resorted(rw_join);
}
