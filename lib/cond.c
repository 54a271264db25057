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
 * that may spin (prt__wait_spin_ns) waits at first without a record,
 * in a seat on the mutex's line: m->spin (mutex_int.h) has
 * PRT_SPIN_SEATS seats of two bits (FREE, SPIN, WOKEN, MOVING) and a
 * 10-bit tag of the condvar seated (one condvar's spinners at a time;
 * tags of condvars sharing a mutex may collide, which only wakes the
 * other's spinners too: a spurious
 * wakeup). Holding the mutex, the waiter takes a free seat (SPIN) with
 * one compare-and-swap, releases the mutex and polls its seat. A signal
 * from a fiber that holds the mutex (its last_held names it, so the
 * mutex is alive) and finds the condvar's list empty marks every SPIN
 * seat WOKEN with one compare-and-swap on that line, and writes
 * nothing of the condvar: a round trip between two workers that both
 * run moves the mutex's line and the caller's own data, not the
 * condvar's (docs/design.md, section 6, "Where xcore pinned's time
 * goes"). A woken spinner leaves its seat and takes the mutex; it never
 * touches the condvar again, so a broadcast may be followed by the
 * condvar's destroy at once.
 *
 * Lost wakeups: the spinner took its seat holding the mutex, so a
 * signaller that changed the predicate under it comes later and finds
 * it. A spinner whose spin ends unwoken for its length (or work on its
 * worker) moves to the list under c->lock: SPIN -> MOVING, queue its
 * record, MOVING -> FREE; a signal that finds a MOVING seat takes
 * c->lock, after the record is queued. A signaller reads the seats
 * first and the list after (the seat's compare-and-swap orders the
 * queueing before it). A spin that ends by its deadline or a cancel
 * leaves its seat: SPIN, it returns ETIMEDOUT or ECANCELED; WOKEN, 0.
 *
 * Finding spinners without the mutex. A signaller that does not hold
 * the mutex (POSIX allows it), and destroy, must not read the mutex:
 * once nobody waits it may be destroyed and freed. So each spinner
 * says in its own descriptor what it spins on (prt__fiber.cspin: the
 * condvar, and its seat), and the condvar keeps two sticky references
 * to fibers that spun on it (c->ref[]; written by a fiber's first spin
 * on it, under c->lock; descriptors are type-stable, so a stale one is
 * safe to read). A spinner spins only while it is one of them. Under
 * c->lock, such a caller pins a referenced fiber that spins here
 * (PRT_CSPIN_PIN, a compare-and-swap on its cspin): the fiber cannot
 * clear its cspin, so cannot return from its wait, so its mutex lives
 * until the pin is dropped; meanwhile the caller reads and changes the
 * seats as a holder would. A spinner clears its cspin (waiting out a
 * pin) before it leaves its seat. Publishing and checking are
 * store-then-load on both sides: a spinner stores its cspin, takes its
 * seat (a full barrier) and then checks that it is still referenced
 * and that c->m is still its mutex; a caller that replaces a reference
 * (or rebinds c->m) stores first, then reads the replaced fiber's cspin
 * (or every reference's), and undoes its change if that fiber spins
 * here. So at least one of the two sees the other, and every seated
 * spinner of the condvar is referenced, and its mutex is c->m, by the
 * time anyone takes c->lock after it.
 *
 * Which waiter a signal takes: the spinners (all of them: they are not
 * told apart) unless a sleeper ranks at least as high as the highest of
 * them, and else that sleeper as always; so the highest-priority waiter
 * goes, and spinners that go with it find their predicate false and
 * wait again, a spurious wakeup as POSIX allows. The spinners' rank is
 * that of the referenced fibers seated for this condvar, as they are
 * now (seated_prio; a colliding tag's seats do not count). A broadcast
 * wakes the spinners and
 * requeues the sleepers. The spinners then take the mutex by its own
 * rules: never ahead of a higher-priority waiter queued on it; but a
 * lower-priority sleeper requeued by the same broadcast may be handed
 * the mutex before a spinner asks for it, and the spinner then waits on
 * the mutex as any late comer does (priority inheritance bounds it). At
 * most one fiber per worker spins, so that is no thundering herd.
 *
 * prt_cond_destroy says EBUSY while a referenced fiber is seated for
 * this condvar and not woken (or about to be seated: its seat still
 * FREE), and waits while one is woken and has not cleared its cspin (a
 * few instructions). A wait with another mutex says EINVAL on the same
 * terms. A spinner's unlock does not switch it out while it is seated
 * (prt__unlock_deferred): a destroy on its worker would wait for it.
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

/* The seats of a mutex (m->spin): two bits each, then the tag. */
#define PRT_SPIN_SEATS 3
enum {
	PRT_SEAT_FREE,   /* nobody's */
	PRT_SEAT_SPIN,   /* its spinner waits */
	PRT_SEAT_WOKEN,  /* woken: its spinner leaves it, then takes the mutex */
	PRT_SEAT_MOVING, /* its spinner is queueing its record (under c->lock) */
};
#define SEATS_MASK 0x3fu
#define SPIN_TAG_SHIFT 6
#define SPIN_TAG_MASK 0x3ffu
/* prt__fiber.cspin: the condvar | (seat + 1) << 1 | PRT_CSPIN_PIN. */
#define PRT_CSPIN_PIN ((uintptr_t)1)
#define CSPIN_COND(v) ((v) & ~(uintptr_t)7)
#define CSPIN_SEAT(v) ((int)((v) >> 1 & 3) - 1)

struct prt__cond {
	/*
	 * What a signal reads comes first, written only when it changes:
	 * the list's state and the mutex, and the references (a spinner
	 * reads them at each wait). Read without @lock, written under it.
	 */
	prt__spinlock_t lock;
	atomic_uchar queued;       /* @waiters is not empty; lock */
	uint8_t pad;
	uint16_t dbg;              /* PRT_DEAD_MAGIC once destroyed (debug builds) */
	_Atomic(struct prt__mutex *) m; /* the mutex of the current waiters and spinners; lock */
	_Atomic(struct prt__fiber *) ref[2]; /* fibers that spun here ("Finding spinners"); lock */
	/* prt__mwaiter.pl (a plist, plist.h), PRT_CW_ONCOND or _LEAVING; {NULL, NULL} = empty; lock */
	struct prt__list waiters;
};

_Static_assert(sizeof(struct prt__cond) <= PRT_COND_SIZE, "prt_cond_t too small");
_Static_assert(_Alignof(prt_cond_t) >= 8, "prt__fiber.cspin keeps 3 bits below a condvar's address");

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

/* Queue @r on @c's list, and off it; c->lock. @queued follows the list. */
static void list_add(struct prt__cond *c, struct prt__mwaiter *r)
{
	prt__mwaiter_insert(&c->waiters, r);
	atomic_store_explicit(&c->queued, 1, memory_order_relaxed);
}

static void list_del(struct prt__cond *c, struct prt__mwaiter *r)
{
	prt__mwaiter_del(&c->waiters, r);
	if (prt__list_empty(&c->waiters))
		atomic_store_explicit(&c->queued, 0, memory_order_relaxed);
}

/* ---- Seats (m->spin) ---- */

static unsigned seat_of(unsigned s, int i)
{
	return s >> (2 * i) & 3u;
}

static unsigned cond_tag(const struct prt__cond *c)
{
	uintptr_t a = (uintptr_t)c;

	return (unsigned)(a >> 3 ^ a >> 13 ^ a >> 23 ^ a >> 33) & SPIN_TAG_MASK;
}

unsigned prt__cond_tag(const prt_cond_t *c)
{
	return cond_tag((const struct prt__cond *)(const void *)c);
}

const void *prt__cond_mutex(const prt_cond_t *c)
{
	return atomic_load_explicit(&((const struct prt__cond *)(const void *)c)->m,
				    memory_order_relaxed);
}

static bool seats_tagged(unsigned s, const struct prt__cond *c)
{
	return (s & SEATS_MASK) && s >> SPIN_TAG_SHIFT == cond_tag(c);
}

static bool seats_any(unsigned s, unsigned st)
{
	for (int i = 0; i < PRT_SPIN_SEATS; i++)
		if (seat_of(s, i) == st)
			return true;
	return false;
}

/* @s with every SPIN seat WOKEN. */
static unsigned seats_woken(unsigned s)
{
	for (int i = 0; i < PRT_SPIN_SEATS; i++)
		if (seat_of(s, i) == PRT_SEAT_SPIN)
			s += (PRT_SEAT_WOKEN - PRT_SEAT_SPIN) << (2 * i);
	return s;
}

/*
 * Set seat @i of @m to @to (FREE: leave it, the word 0 once no seat is
 * taken). Returns the seat's state before. acq_rel: a spinner's
 * acquire pairs with the release of its wake; MOVING -> FREE releases
 * the record queued meanwhile to a signaller that reads the seats.
 */
static unsigned seat_set(struct prt__mutex *m, int i, unsigned to)
{
	uint16_t s = atomic_load_explicit(&m->spin, memory_order_relaxed), n;

	do {
		n = (uint16_t)((s & ~(3u << (2 * i))) | to << (2 * i));
		if (!(n & SEATS_MASK))
			n = 0;
	} while (!atomic_compare_exchange_weak_explicit(&m->spin, &s, n, memory_order_acq_rel,
							memory_order_relaxed));
	return seat_of(s, i);
}

/* SPIN -> MOVING for seat @i; its state before (WOKEN: left as it is). */
static unsigned seat_moving(struct prt__mutex *m, int i)
{
	uint16_t s = atomic_load_explicit(&m->spin, memory_order_relaxed), n;

	do {
		if (seat_of(s, i) != PRT_SEAT_SPIN)
			return seat_of(s, i);
		n = (uint16_t)(s + ((PRT_SEAT_MOVING - PRT_SEAT_SPIN) << (2 * i)));
	} while (!atomic_compare_exchange_weak_explicit(&m->spin, &s, n, memory_order_acq_rel,
							memory_order_acquire));
	return PRT_SEAT_SPIN;
}

/*
 * Our cspin from @from to @to, waiting out a pin (a signal or a destroy
 * under c->lock reads our mutex meanwhile). release: our reads of the
 * condvar come before a destroy that finds it clear.
 */
static void cspin_move(struct prt__fiber *f, uintptr_t from, uintptr_t to)
{
	uintptr_t v = from;

	while (!atomic_compare_exchange_weak_explicit(&f->cspin, &v, to, memory_order_release,
						      memory_order_relaxed)) {
		prt__assert(v == from || v == (from | PRT_CSPIN_PIN));
		v = from;
		prt__cpu_relax();
	}
}

/*
 * Seat @f, spinning on @c, on @m, which it holds: publish its cspin,
 * then take a free seat. Returns the seat, or -1 (every seat taken, or
 * taken by another condvar's spinners). The loads the caller makes next
 * (seq_cst) must come after the cspin store: the seat's compare-and-swap
 * is followed by prt__mb_after_atomic(), a seq_cst fence as C11 asks
 * (a DMB on AArch64; on x86 the locked compare-and-swap already is one,
 * so the hot path pays no mfence).
 */
static int seat_take(struct prt__cond *c, struct prt__mutex *m, struct prt__fiber *f)
{
	uint16_t s = atomic_load_explicit(&m->spin, memory_order_relaxed), n;
	uintptr_t v = 0;
	int i;

	atomic_store_explicit(&f->cspin_m, m, memory_order_relaxed); /* published by cspin's release */
	for (;;) {
		uintptr_t nv;

		if ((s & SEATS_MASK) && !seats_tagged(s, c))
			break;
		for (i = 0; i < PRT_SPIN_SEATS && seat_of(s, i) != PRT_SEAT_FREE; i++)
			;
		if (i == PRT_SPIN_SEATS)
			break;
		n = (uint16_t)((s & SEATS_MASK) | PRT_SEAT_SPIN << (2 * i) |
			       cond_tag(c) << SPIN_TAG_SHIFT);
		nv = (uintptr_t)c | (uintptr_t)(i + 1) << 1;
		if (!v)
			atomic_store_explicit(&f->cspin, nv, memory_order_release);
		else if (v != nv)
			cspin_move(f, v, nv);
		v = nv;
		if (atomic_compare_exchange_strong_explicit(&m->spin, &s, n, memory_order_seq_cst,
							    memory_order_relaxed)) {
			prt__mb_after_atomic(); /* cspin before the caller's loads */
			return i;
		}
	}
	if (v)
		cspin_move(f, v, 0);
	return -1;
}

/* Is @f one of @c's references? seq_cst: the load half of "Finding spinners". */
static bool is_ref(struct prt__cond *c, struct prt__fiber *f)
{
	return atomic_load_explicit(&c->ref[0], memory_order_seq_cst) == f ||
	       atomic_load_explicit(&c->ref[1], memory_order_seq_cst) == f;
}

/*
 * A spinner leaves seat @i of @m after all (never woken, or woken: its
 * state before is returned): its cspin first, then the seat.
 */
static unsigned seat_leave(struct prt__fiber *f, struct prt__mutex *m, int i)
{
	cspin_move(f, atomic_load_explicit(&f->cspin, memory_order_relaxed) & ~PRT_CSPIN_PIN, 0);
	return seat_set(m, i, PRT_SEAT_FREE);
}

/*
 * The lock-free seating of a waiter on @c with @m held (the hot path):
 * the seat, or -1 (then c->lock decides: not referenced yet, another
 * mutex, no seat). After the seat's barrier, still referenced and @m
 * still c->m, or it gives the seat back ("Finding spinners").
 */
static int seat_fast(struct prt__cond *c, struct prt__mutex *m, struct prt__fiber *f)
{
	int i;

	if (atomic_load_explicit(&c->m, memory_order_relaxed) != m ||
	    (atomic_load_explicit(&c->ref[0], memory_order_relaxed) != f &&
	     atomic_load_explicit(&c->ref[1], memory_order_relaxed) != f))
		return -1;
	prt__fault_pause(PRT_PAUSE_COND_SEAT); /* test builds: a rebinding wait may come here */
	if ((i = seat_take(c, m, f)) < 0)
		return -1;
	if (atomic_load_explicit(&c->m, memory_order_seq_cst) == m && is_ref(c, f))
		return i;
	seat_leave(f, m, i); /* woken meanwhile: nobody waited yet, we hold @m */
	return -1;
}

/*
 * Make @f one of @c's references, c->lock held. False if both name
 * fibers that spin here now. Store, then load the replaced fiber's
 * cspin (seq_cst): a fiber that seated itself meanwhile either sees the
 * change (seat_fast gives its seat back) or is seen here (kept).
 */
static bool ref_install(struct prt__cond *c, struct prt__fiber *f)
{
	if (is_ref(c, f))
		return true;
	for (int j = 0; j < 2; j++)
		if (!atomic_load_explicit(&c->ref[j], memory_order_relaxed)) {
			atomic_store_explicit(&c->ref[j], f, memory_order_relaxed); /* nobody to check */
			return true;
		}
	for (int j = 0; j < 2; j++) {
		struct prt__fiber *old = atomic_load_explicit(&c->ref[j], memory_order_relaxed);

		if (old && CSPIN_COND(atomic_load_explicit(&old->cspin, memory_order_seq_cst)) ==
				   (uintptr_t)c)
			continue;
		atomic_store_explicit(&c->ref[j], f, memory_order_seq_cst);
		if (old && CSPIN_COND(atomic_load_explicit(&old->cspin, memory_order_seq_cst)) ==
				   (uintptr_t)c) {
			atomic_store_explicit(&c->ref[j], old, memory_order_relaxed);
			continue;
		}
		return true;
	}
	return false;
}

/*
 * Pin @c's referenced fiber @j if it spins here (its seat published):
 * its cspin value, with the pin (unpin: store it back without), or 0.
 * c->lock held (every pin is taken and dropped under it).
 */
static uintptr_t ref_pin(struct prt__cond *c, int j)
{
	struct prt__fiber *f = atomic_load_explicit(&c->ref[j], memory_order_relaxed);
	uintptr_t v;

	if (!f)
		return 0;
	/* seq_cst: the load half of a rebinding's check ("Finding spinners") */
	v = atomic_load_explicit(&f->cspin, memory_order_seq_cst);
	do {
		if (CSPIN_COND(v) != (uintptr_t)c || CSPIN_SEAT(v) < 0)
			return 0;
		prt__assert(!(v & PRT_CSPIN_PIN));
		/* acquire: pairs with its release of cspin, after it wrote cspin_m */
	} while (!atomic_compare_exchange_weak_explicit(&f->cspin, &v, v | PRT_CSPIN_PIN,
							memory_order_acquire, memory_order_acquire));
	return v | PRT_CSPIN_PIN;
}

static void ref_unpin(struct prt__cond *c, int j, uintptr_t v)
{
	struct prt__fiber *f = atomic_load_explicit(&c->ref[j], memory_order_relaxed);

	atomic_store_explicit(&f->cspin, v & ~PRT_CSPIN_PIN, memory_order_release);
}

/*
 * The state of @c's referenced fiber @j: 0 not a spinner here, 1 woken
 * and leaving (a few instructions), 2 waiting (seated, or being seated
 * holding its mutex). c->lock held.
 */
static int ref_state(struct prt__cond *c, int j)
{
	uintptr_t v = ref_pin(c, j);
	struct prt__fiber *f;
	unsigned st;

	if (!v)
		return 0;
	f = atomic_load_explicit(&c->ref[j], memory_order_relaxed);
	/* Pinned: it is still in its wait, so its mutex is alive. */
	st = seat_of(atomic_load_explicit(&atomic_load_explicit(&f->cspin_m, memory_order_relaxed)->spin,
					  memory_order_acquire),
		     CSPIN_SEAT(v));
	ref_unpin(c, j, v);
	return st == PRT_SEAT_WOKEN ? 1 : 2;
}

/*
 * Who waits: 0 nobody, 1 only waiters leaving (timed out and unlinking
 * themselves, or woken spinners), 2 a waiter still waiting. c->lock.
 */
static int list_state(struct prt__cond *c)
{
	int st = 0;

	for (int j = 0; j < 2 && st < 2; j++) {
		int r = ref_state(c, j);

		if (r > st)
			st = r;
	}
	if (st == 2 || !c->waiters.next || prt__list_empty(&c->waiters))
		return st;
	return first_waiting(c) ? 2 : 1;
}

PRT_API int prt_cond_destroy(prt_cond_t *uc)
{
	struct prt__cond *c = cond_of(uc);
	int st;

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_destroy", uc);
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
		/* Timed-out waiters unlinking themselves, woken spinners: a few instructions. */
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
	list_del(c, rec);
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
	list_add(c, r);
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

/*
 * Pauses before the first poll of a seat (1 << PRT_SEAT_POLL_SHIFT:
 * 2); before each later one, 1 to 4 at random (prt__spin_pauses, 2.5 on
 * average: prt__spin_keep counts them as 2). A poll pulls the mutex's
 * line back to the spinner; just after the spinner's own release, the
 * other side is taking the mutex and then signals and unlocks it, each
 * a locked write to that line, and each write after such a poll waits
 * for the line again. A pause is ~25 ns on the EPYC host. Polling after
 * every pause made `xcore pinned` 3.5-4.9x the ping-pong in the fast
 * placement (60-70 ns); after every second pause, medians of 1.58-1.83x
 * (a few runs in ten over 2x, up to 3.7x), and ~1.5x in the slow one
 * (320-350 ns, from ~1.7-1.85x). The first poll is what matters: one
 * after a single pause, the rest after two, was 2.4-4.2x again; a first
 * after two, the rest after every pause, 1.55-1.97x. Three pauses suit
 * the slow placement better and the fast one worse (about 2x). Later,
 * in the slow placement (400 ns), a fixed pace settled runs into one of
 * a few speeds (1.2x to 2.8x the ping-pong, sessions 42-43); the random
 * pace of the later polls keeps them at 1.3-1.9x. Measured on that host
 * only: where a pause is longer, two may be too many. docs/design.md,
 * section 6, "How soon a spinner looks".
 */
#define PRT_SEAT_POLL_SHIFT 1 /* 1 << it pauses before the first poll: 2 */

/*
 * A spinner's wait ("Spinning waiters" above) in seat @i of @m, the
 * mutex released: poll the seat while prt__spin_keep allows. Returns 0
 * if woken, ETIMEDOUT or ECANCELED (the seat left: retake the mutex),
 * or WAIT_ON once @rec is on the list (sleep on it).
 */
static int spin_wait(struct prt__cond *c, struct prt__mutex *m, struct prt__mwaiter *rec,
		     struct prt__worker *w, int i, uint64_t spin, uint64_t deadline)
{
	struct prt__fiber *self = rec->fiber;
	struct prt__spin sp = { .spin = spin, .deadline = deadline, .pause_shift = PRT_SEAT_POLL_SHIFT };
	unsigned st;

	prt__assert_own_worker(w);
	for (unsigned k = 1u << PRT_SEAT_POLL_SHIFT;; k = prt__spin_pauses(w)) {
		while (k--)
			prt__cpu_relax();
		if (seat_of(atomic_load_explicit(&m->spin, memory_order_relaxed), i) != PRT_SEAT_SPIN ||
		    prt__cancel_pending(self) || !prt__spin_keep(w, &sp))
			break;
	}
	prt__fault_pause(PRT_PAUSE_COND_SPUN); /* test builds: a destroy may come here */
	/* Woken, or a deadline or cancel: leave the seat, never touching @c again. */
	if (seat_of(atomic_load_explicit(&m->spin, memory_order_relaxed), i) == PRT_SEAT_WOKEN ||
	    prt__cancel_pending(self) || (deadline && prt__now_ns() >= deadline)) {
		if (seat_leave(self, m, i) == PRT_SEAT_WOKEN)
			return 0;
		return prt__cancel_pending(self) ? ECANCELED : ETIMEDOUT;
	}
	/* The spin's length, or work on our worker: queue, then sleep. */
	prt__spin_lock(&c->lock);
	cspin_move(self, atomic_load_explicit(&self->cspin, memory_order_relaxed), 0);
	if ((st = seat_moving(m, i)) == PRT_SEAT_SPIN) {
		wait_begin(c, rec);
		seat_set(m, i, PRT_SEAT_FREE); /* release: the record is queued */
	} else {
		seat_set(m, i, PRT_SEAT_FREE); /* woken since our look */
	}
	prt__spin_unlock(&c->lock); /* our last access to @c, unless we queued */
	return st == PRT_SEAT_SPIN ? WAIT_ON : 0;
}

/* Some waiter of @c other than leaving ones, seated on its old mutex: ref_state 2. c->lock. */
static bool spinner_waits(struct prt__cond *c)
{
	return ref_state(c, 0) == 2 || ref_state(c, 1) == 2;
}

/*
 * A wait's slow start, under c->lock: check and (re)bind the mutex,
 * then seat @rec's fiber (*@spin: it may spin; *@seat gets the seat)
 * or queue @rec (*@spin = 0). 0, or EINVAL: another mutex's waiters.
 */
static int wait_locked(struct prt__cond *c, struct prt__mutex *m, struct prt__mwaiter *rec,
		       uint64_t *spin, int *seat)
{
	struct prt__mutex *cm;

	prt__spin_lock(&c->lock);
	list_lazy_init(c);
	cm = atomic_load_explicit(&c->m, memory_order_relaxed);
	if (cm != m) {
		/*
		 * Another mutex: EINVAL while a waiter still waits with it.
		 * Not for records leaving on their timeout (first_waiting skips
		 * them) or woken spinners: they retake their own mutex, never
		 * c->m. Store, then look at the spinners again: one seating
		 * itself with the old mutex meanwhile sees the new one, or is
		 * seen ("Finding spinners" above).
		 */
		if (cm && (first_waiting(c) || spinner_waits(c))) {
			prt__spin_unlock(&c->lock);
			return EINVAL;
		}
		atomic_store_explicit(&c->m, m, memory_order_seq_cst);
		if (cm && spinner_waits(c)) {
			atomic_store_explicit(&c->m, cm, memory_order_relaxed);
			prt__spin_unlock(&c->lock);
			return EINVAL;
		}
	}
	/* Under c->lock the references and c->m stay as they are: no check after. */
	if (!*spin || !ref_install(c, rec->fiber) || (*seat = seat_take(c, m, rec->fiber)) < 0) {
		*spin = 0;
		wait_begin(c, rec);
	}
	prt__spin_unlock(&c->lock);
	return 0;
}

/* The caller holds @m, as its last mutex taken (prt__fiber.last_held): so @m is alive. */
static bool caller_holds(struct prt__worker *w, struct prt__mutex *m)
{
	struct prt__owner me;

	prt__owner_peek(w, &me);
	return me.last && *me.last == m;
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
	unsigned count;
	int err, e, seat = -1;

	if (!uc || !um)
		return EINVAL;
	prt__check_live(c->dbg, "prt_cond_wait", uc);
	if (abstime && !prt__abstime_to_mono(abstime, &deadline))
		return EINVAL;
	if (timeout_ns)
		deadline = prt__deadline_in(*timeout_ns); /* never 0; PRT_NEVER if it does not fit */
	m = prt__mutex_of(um);
	rec.fiber = w ? w->curr : NULL;
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
	if (!spin || (seat = seat_fast(c, m, rec.fiber)) < 0)
		if ((err = wait_locked(c, m, &rec, &spin, &seat)))
			return err;

	/*
	 * A spinner's unlock does not switch (to a new owner that outranks
	 * us, a slice owed): switched out in a seat, a signal could mark it
	 * woken, and a destroy on this worker would then wait for a spinner
	 * that only we can move, never letting us run. Those switches come
	 * once the seat is left (prt__unlock_deferred). Else the unlock
	 * may switch us out, and we may run on another worker after it.
	 */
	if (spin)
		w->unlock_defer = &ud;
	err = prt__mutex_release_all(m, &count);
	prt__assert(err == 0); /* ownership was checked above */
	if (spin)
		w->unlock_defer = NULL;
	w = prt__cur_worker();
	if (spin) {
		err = spin_wait(c, m, &rec, w, seat, spin, deadline);
		prt__unlock_deferred(w, &ud); /* seat left */
		if (err != WAIT_ON)
			goto retake; /* never queued: nothing to unpublish */
	}
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
		prt__mutex_held(rec.token, m); /* handed to us: we own it again */
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
			list_del(c, r);
			wait_end(r); /* the condvar may be destroyed once we are done */
			return r;
		}
	}
	return NULL;
}

/*
 * The highest priority among @c's spinners seated SPIN on @m in @s, or
 * -1 if none is surely @c's: the referenced fibers that spin here on
 * @m (a tag alone may be another condvar's; their priorities now, not
 * when they sat down). @s is checked again by the caller's
 * compare-and-swap, which a spinner leaving or sitting down changes.
 * c->lock.
 */
static int seated_prio(struct prt__cond *c, struct prt__mutex *m, unsigned s)
{
	int top = -1;

	for (int j = 0; j < 2; j++) {
		struct prt__fiber *f = atomic_load_explicit(&c->ref[j], memory_order_relaxed);
		uintptr_t v;
		int p;

		if (!f)
			continue;
		/* acquire: its cspin_m, written before */
		v = atomic_load_explicit(&f->cspin, memory_order_acquire);
		if (CSPIN_COND(v) != (uintptr_t)c || CSPIN_SEAT(v) < 0 ||
		    atomic_load_explicit(&f->cspin_m, memory_order_relaxed) != m ||
		    seat_of(s, CSPIN_SEAT(v)) != PRT_SEAT_SPIN)
			continue;
		if ((p = atomic_load_explicit(&f->prio, memory_order_relaxed)) > top)
			top = p;
	}
	return top;
}

/*
 * Wake @c's spinners on @m (alive: held, or a spinner of it pinned),
 * unless a signal (!@all) finds a sleeper that ranks at least as high
 * as the highest of them (seated_prio: none is surely @c's, -1): that
 * sleeper goes then. True if woken. c->lock.
 */
static bool wake_seats(struct prt__cond *c, struct prt__mutex *m, bool all)
{
	uint16_t s = atomic_load_explicit(&m->spin, memory_order_acquire);

	for (;;) {
		struct prt__mwaiter *sl;

		if (!seats_tagged(s, c) || !seats_any(s, PRT_SEAT_SPIN))
			return false;
		if (!all && (sl = first_waiting(c)) && sl->pl.prio >= seated_prio(c, m, s))
			return false;
		/* release: what we wrote before the signal, for the spinner that retakes the mutex */
		if (atomic_compare_exchange_weak_explicit(&m->spin, &s, (uint16_t)seats_woken(s),
							  memory_order_release, memory_order_acquire))
			return true;
	}
}

/*
 * The signal of a caller that holds @m, c->m, with nobody queued on the
 * condvar: wake its spinners with one compare-and-swap on @m's line,
 * writing nothing of the condvar. False: take c->lock (a waiter queued,
 * or queueing itself from a seat: MOVING).
 */
static bool wake_fast(struct prt__cond *c, struct prt__mutex *m)
{
	uint16_t s = atomic_load_explicit(&m->spin, memory_order_acquire);

	for (;;) {
		/* After the seats: a record queued by a spinner that left its seat since is seen. */
		if (atomic_load_explicit(&c->queued, memory_order_acquire))
			return false;
		if (!seats_tagged(s, c))
			return true; /* nobody waits: a waiter queues or sits holding @m */
		if (seats_any(s, PRT_SEAT_MOVING))
			return false;
		if (!seats_any(s, PRT_SEAT_SPIN))
			return true; /* woken already */
		if (atomic_compare_exchange_weak_explicit(&m->spin, &s, (uint16_t)seats_woken(s),
							  memory_order_release, memory_order_acquire))
			return true;
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
	struct prt__mutex *m, *held;
	bool all = n > 1, mok;
	uintptr_t pin = 0;
	int pj = -1;

	if (!uc)
		return EINVAL;
	prt__check_live(c->dbg, n == 1 ? "prt_cond_signal" : "prt_cond_broadcast", uc);
	/* Nobody ever waited, or (held) nobody waits but spinners: no lock. */
	if (!(held = atomic_load_explicit(&c->m, memory_order_acquire)))
		return 0;
	if (!caller_holds(prt__cur_worker(), held))
		held = NULL;
	else if (wake_fast(c, held))
		return 0;

	prt__spin_lock(&c->lock);
	m = atomic_load_explicit(&c->m, memory_order_relaxed);
	/*
	 * Seats are read only on a live mutex: held, or a pinned spinner's
	 * (c->m: one woken before a rebinding may still be seated on the
	 * old mutex, which its pin keeps, not c->m).
	 */
	mok = m == held;
	for (int j = 0; !mok && j < 2; j++)
		if ((pin = ref_pin(c, j))) {
			if (atomic_load_explicit(&atomic_load_explicit(&c->ref[j],
								       memory_order_relaxed)->cspin_m,
						 memory_order_relaxed) == m) {
				pj = j;
				mok = true;
			} else {
				ref_unpin(c, j, pin);
			}
		}
	for (bool first = true; n-- > 0; first = false) {
		struct prt__mwaiter *r;

		if (first && mok && wake_seats(c, m, all) && !all)
			break;
		if (!(r = take_waiter(c))) {
			/* A signal's sleeper left on its timeout meanwhile (leave()): the spinners then. */
			if (first && mok && !all)
				wake_seats(c, m, true);
			break;
		}
		/*
		 * Requeue under the condvar lock: the waiter's record stays valid
		 * until it is granted the mutex, which only the requeue or a later
		 * unlock can do.
		 */
		prt__mutex_requeue(m, r);
	}
	if (pj >= 0)
		ref_unpin(c, pj, pin);
	prt__spin_unlock(&c->lock);
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
