/* SPDX-License-Identifier: MIT */
/*
 * Fiber mutex: one-CAS fast paths, a priority-ordered waiter list,
 * direct handoff, deadlock detection; the waiting side of proxy
 * execution (the pick side is proxy.c).
 *
 * A waiting fiber publishes blocked_on (seq_cst) before it walks the
 * owner chain for a cycle. Two fibers closing a cycle at once each store
 * their blocked_on then load the other's, so at least one sees the cycle
 * and returns EDEADLK (DESIGN.md, "Deadlock detection").
 */
#include <limits.h>
#include <string.h>

#include "mutex_int.h"
#include "runtime.h"

/* Most polls of an optimistic spin (a pause each: a few microseconds in all). */
#define PRT_MTX_SPIN 512

static __thread struct prt__tself tls_tself __attribute__((tls_model("initial-exec")));

/* Only called on plain threads, which never switch: the address is stable. */
static prt__noinline struct prt__tself *tself(void)
{
	return &tls_tself;
}

static inline uintptr_t token_of(struct prt__worker *w)
{
	return w ? (uintptr_t)w->curr : ((uintptr_t)tself() | PRT_MTX_THREAD);
}

static struct prt__mutex *waits_on(uintptr_t tok)
{
	if (tok & PRT_MTX_THREAD)
		return atomic_load(&((struct prt__tself *)(tok & ~PRT_MTX_FLAGS))->blocked_on);
	return atomic_load(&((struct prt__fiber *)tok)->blocked_on);
}

static void set_waits_on(uintptr_t tok, struct prt__mutex *m)
{
	if (tok & PRT_MTX_THREAD)
		atomic_store(&((struct prt__tself *)(tok & ~PRT_MTX_FLAGS))->blocked_on, m);
	else
		atomic_store(&((struct prt__fiber *)tok)->blocked_on, m);
}

/* Walk owner -> what it waits on -> owner ...; true if it comes back to @tok. */
static bool closes_cycle(struct prt__mutex *m, uintptr_t tok)
{
	for (int i = 0; m && i < 4096; i++) {
		uintptr_t o = atomic_load(&m->owner) & ~PRT_MTX_WAITERS;

		if (!o)
			return false;
		if (o == tok)
			return true;
		m = waits_on(o);
	}
	return false;
}

/* ---- waiter list (wait_lock held) ---------------------------------------- */

static void waiters_init(struct prt__mutex *m)
{
	if (!m->waiters.next) /* zero storage: PRT_MUTEX_INITIALIZER */
		prt__list_init(&m->waiters);
}

static void insert(struct prt__mutex *m, struct prt__mwaiter *r)
{
	prt__mwaiter_insert(&m->waiters, r);
	if (r->fiber)
		r->fiber->mwait = r;
	set_waits_on(r->token, m);
}

static void clear_waiters_flag(struct prt__mutex *m)
{
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);

	while ((o & PRT_MTX_WAITERS) &&
	       !atomic_compare_exchange_weak(&m->owner, &o, o & ~PRT_MTX_WAITERS))
		;
}

/* Take @r off the list without handing it the lock (deadlock, timeout). */
static void dequeue(struct prt__mutex *m, struct prt__mwaiter *r)
{
	prt__list_del(&r->node);
	if (r->fiber)
		r->fiber->mwait = NULL;
	set_waits_on(r->token, NULL);
	if (prt__list_empty(&m->waiters))
		clear_waiters_flag(m);
}

/*
 * Take the mutex if it is free, else make sure the waiters flag is set
 * (so the owner's unlock comes to the slow path). Returns true if taken.
 */
static bool acquire_or_flag(struct prt__mutex *m, uintptr_t tok)
{
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);

	for (;;) {
		if (!(o & ~PRT_MTX_FLAGS)) {
			uintptr_t n = tok | (prt__list_empty(&m->waiters) ? 0 : PRT_MTX_WAITERS);

			/* acquire: pairs with the release of the previous unlock */
			if (atomic_compare_exchange_weak_explicit(&m->owner, &o, n, memory_order_acquire,
								  memory_order_relaxed))
				return true;
			continue;
		}
		if (o & PRT_MTX_WAITERS)
			return false;
		if (atomic_compare_exchange_weak(&m->owner, &o, o | PRT_MTX_WAITERS))
			return false;
	}
}

/*
 * A queued waiter spins on its record while the owner runs on a CPU:
 * the handoff then finds it running and it goes on at once, with no
 * switch or migration. Without this, each handoff goes to a fiber that
 * is not running, every later locker queues behind it, and the lock
 * turns into a convoy. The order of handoff is unchanged.
 */
static bool spin_granted(struct prt__mutex *m, struct prt__mwaiter *rec)
{
	for (int i = 0; i < PRT_MTX_SPIN; i++) {
		struct prt__fiber *f;

		/* acquire: pairs with the release in unlock_slow */
		if (atomic_load_explicit(&rec->granted, memory_order_acquire))
			return true;
		f = prt__owner_fiber(atomic_load_explicit(&m->owner, memory_order_relaxed));
		if (!f || atomic_load_explicit(&f->state, memory_order_relaxed) != PRT_FS_RUNNING)
			return false;
		prt__cpu_relax();
	}
	return false;
}

static bool use_proxy(struct prt__mutex *m, struct prt__fiber *self)
{
	if (m->proxy == PRT_MUTEX_PROXY_DEFAULT)
		return !(self->rt->flags & PRT_RT_NO_PROXY);
	return m->proxy == PRT_MUTEX_PROXY_ON;
}

/* ---- lock ---------------------------------------------------------------- */


/*
 * Optimistic spinning (kernel mutex.c's mutex_optimistic_spin): while
 * the owner is a fiber running on a CPU and nobody is queued, it will
 * likely unlock soon; waiting a few hundred ns here beats queueing,
 * migrating and a handoff. Stops when a waiter queues (the lock is then
 * handed over, never freed, so spinning is futile) or the owner stops
 * running. Returns true if the lock was taken.
 */
static bool spin_acquire(struct prt__mutex *m, uintptr_t tok)
{
	for (int i = 0; i < PRT_MTX_SPIN; i++) {
		uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);
		struct prt__fiber *f;

		if (!o) {
			/* acquire: pairs with the release of the unlock */
			if (atomic_compare_exchange_weak_explicit(&m->owner, &o, tok,
								  memory_order_acquire,
								  memory_order_relaxed))
				return true;
			continue;
		}
		f = prt__owner_fiber(o);
		/* Descriptors are type-stable: reading a stale owner's state is safe. */
		if ((o & PRT_MTX_WAITERS) || !f ||
		    atomic_load_explicit(&f->state, memory_order_relaxed) != PRT_FS_RUNNING)
			return false;
		prt__cpu_relax();
	}
	return false;
}

static int lock_fiber(struct prt__mutex *m, struct prt__worker *w)
{
	struct prt__fiber *self = w->curr;
	struct prt__mwaiter rec = {
		.fiber = self,
		.token = (uintptr_t)self,
		.prio = atomic_load_explicit(&self->prio, memory_order_relaxed),
	};
	bool proxy = use_proxy(m, self), queued = false;
	int err = 0;

	if (w->rt->nworkers > 1 && spin_acquire(m, rec.token))
		return 0;
	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	for (;;) {
		if (queued && !(atomic_load(&m->owner) & ~PRT_MTX_FLAGS)) {
			dequeue(m, &rec); /* free with us queued: cannot happen, but be safe */
			queued = false;
		}
		if (!queued && acquire_or_flag(m, rec.token))
			break;
		if (!queued) {
			insert(m, &rec);
			queued = true;
		}
		if (closes_cycle(m, rec.token)) {
			dequeue(m, &rec);
			err = EDEADLK;
			break;
		}
		if (w->rt->nworkers > 1) {
			prt__spin_unlock(&m->wait_lock);
			if (spin_granted(m, &rec))
				return 0;
			prt__spin_lock(&m->wait_lock);
			if (atomic_load_explicit(&rec.granted, memory_order_acquire))
				break;
		}
		if (!proxy) {
			rec.sleeping = true;
			atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
		}
		prt__spin_unlock(&m->wait_lock);
		if (proxy)
			prt__schedule_mutex_wait(w);
		else
			prt__schedule_blocked(w);
		w = prt__cur_worker();
		/* acquire: pairs with the release in handoff() */
		if (atomic_load_explicit(&rec.granted, memory_order_acquire))
			return 0;
		/* Run without the lock (released mid-walk, chain in flux): look again. */
		prt__spin_lock(&m->wait_lock);
		if (atomic_load_explicit(&rec.granted, memory_order_acquire))
			break;
	}
	prt__spin_unlock(&m->wait_lock);
	return err;
}

static int lock_thread(struct prt__mutex *m, uintptr_t tok)
{
	struct prt__mwaiter rec = { .token = tok, .prio = PRT_PRIO_DEFAULT, .sleeping = true };

	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	if (acquire_or_flag(m, tok)) {
		prt__spin_unlock(&m->wait_lock);
		return 0;
	}
	insert(m, &rec);
	if (closes_cycle(m, tok)) {
		dequeue(m, &rec);
		prt__spin_unlock(&m->wait_lock);
		return EDEADLK;
	}
	prt__spin_unlock(&m->wait_lock);
	/* acquire: pairs with the release in handoff() */
	while (!atomic_load_explicit(&rec.granted, memory_order_acquire))
		prt__futex_wait(&rec.granted, 0);
	return 0;
}

static prt__noinline int lock_slow(struct prt__mutex *m, struct prt__worker *w, uintptr_t tok)
{
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_relaxed);

	if ((o & ~PRT_MTX_WAITERS) == tok) {
		unsigned c = atomic_load_explicit(&m->count, memory_order_relaxed);

		if (m->type != PRT_MUTEX_RECURSIVE)
			return EDEADLK;
		if (c == UINT_MAX)
			return EAGAIN;
		atomic_store_explicit(&m->count, c + 1, memory_order_relaxed);
		return 0;
	}
	return w ? lock_fiber(m, w) : lock_thread(m, tok);
}

PRT_API int prt_mutex_lock(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	uintptr_t tok, zero = 0;

	if (prt__unlikely(!um))
		return EINVAL;
	w = prt__cur_worker();
	tok = token_of(w);
	/* acquire: pairs with the release in unlock */
	if (prt__likely(atomic_compare_exchange_strong_explicit(&m->owner, &zero, tok,
								 memory_order_acquire,
								 memory_order_relaxed)))
		return 0;
	return lock_slow(m, w, tok);
}

PRT_API int prt_mutex_trylock(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);
	uintptr_t tok, o = 0;

	if (!um)
		return EINVAL;
	tok = token_of(prt__cur_worker());
	if (atomic_compare_exchange_strong_explicit(&m->owner, &o, tok, memory_order_acquire,
						    memory_order_relaxed))
		return 0;
	if ((o & ~PRT_MTX_WAITERS) == tok && m->type == PRT_MUTEX_RECURSIVE) {
		unsigned c = atomic_load_explicit(&m->count, memory_order_relaxed);

		if (c == UINT_MAX)
			return EAGAIN;
		atomic_store_explicit(&m->count, c + 1, memory_order_relaxed);
		return 0;
	}
	return EBUSY;
}

/* ---- unlock and handoff -------------------------------------------------- */

/* Wake a parker-protocol waiter (see prt__mwaiter.parker) once granted. */
static void wake_parker(struct prt__fiber *f)
{
	prt__spin_lock(&f->lock);
	if (f->parked) {
		f->parked = false;
		prt__spin_unlock(&f->lock);
		prt__wake(f);
		return;
	}
	/* Not parked yet: it re-checks granted under f->lock before parking. */
	prt__spin_unlock(&f->lock);
}

/*
 * The waiter to hand over to: the donor this worker serves if it waits
 * here and no waiter outranks it, else the first (highest priority,
 * longest waiting).
 */
static struct prt__mwaiter *choose(struct prt__mutex *m, struct prt__worker *w)
{
	struct prt__mwaiter *first;

	if (prt__list_empty(&m->waiters))
		return NULL;
	first = prt__container_of(m->waiters.next, struct prt__mwaiter, node);
	if (w && w->donor != w->curr &&
	    atomic_load_explicit(&w->donor->blocked_on, memory_order_relaxed) == m &&
	    w->donor->mwait && w->donor->mwait->prio >= first->prio)
		return w->donor->mwait;
	return first;
}

static int unlock_slow(struct prt__mutex *m, struct prt__worker *w, uintptr_t tok)
{
	struct prt__mwaiter *r;
	struct prt__fiber *f;
	atomic_uint *futex;
	bool sleeping, parker;

	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	r = choose(m, w);
	if (!r) {
		/* release: pairs with the acquire of the next lock */
		atomic_store_explicit(&m->owner, 0, memory_order_release);
		prt__spin_unlock(&m->wait_lock);
		return 0;
	}
	prt__list_del(&r->node);
	f = r->fiber;
	sleeping = r->sleeping;
	parker = r->parker;
	futex = &r->granted;
	/* release: pairs with the waiter's acquire of granted / the next lock */
	atomic_store_explicit(&m->owner,
			      r->token | (prt__list_empty(&m->waiters) ? 0 : PRT_MTX_WAITERS),
			      memory_order_release);
	if (f)
		f->mwait = NULL;
	set_waits_on(r->token, NULL);
	/* From here the record (on the waiter's stack) may vanish. */
	atomic_store_explicit(&r->granted, 1, memory_order_release);
	prt__spin_unlock(&m->wait_lock);
	(void)tok;
	if (w)
		prt__stat_inc(&w->stats.handoffs, 1);
	/* Wakeups only after wait_lock is dropped (DESIGN.md). */
	if (!f) {
		prt__futex_wake(futex, 1); /* harmless if the thread already left */
	} else if (sleeping && parker) {
		wake_parker(f);
	} else if (sleeping) {
		prt__wake(f);
	} else if (!prt__detach_donor(f)) {
		/* Queued as a donor: runnable now. Send it home if queued away. */
		prt__migrate_queued(f);
	}
	if (w)
		prt__after_handoff(w, f);
	return 0;
}

PRT_API int prt_mutex_unlock(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);
	struct prt__worker *w;
	uintptr_t tok, o;

	if (prt__unlikely(!um))
		return EINVAL;
	w = prt__cur_worker();
	tok = token_of(w);
	o = tok;
	if (prt__unlikely(atomic_load_explicit(&m->count, memory_order_relaxed)) &&
	    (atomic_load_explicit(&m->owner, memory_order_relaxed) & ~PRT_MTX_WAITERS) == tok) {
		atomic_store_explicit(&m->count, m->count - 1, memory_order_relaxed);
		return 0;
	}
	/* release: pairs with the acquire of the next lock */
	if (prt__likely(atomic_compare_exchange_strong_explicit(&m->owner, &o, 0,
								 memory_order_release,
								 memory_order_relaxed)))
		return 0;
	if ((o & ~PRT_MTX_WAITERS) != tok)
		return EPERM;
	return unlock_slow(m, w, tok);
}

/* ---- condvar side ---------------------------------------------------------- */

uintptr_t prt__mutex_self_token(void)
{
	return token_of(prt__cur_worker());
}

/*
 * Release @m fully for a condvar wait: returns 0 or EPERM if the caller
 * does not hold it; *@count gets the recursion count to restore.
 */
int prt__mutex_release_all(struct prt__mutex *m, unsigned *count)
{
	uintptr_t tok = prt__mutex_self_token();

	if ((atomic_load(&m->owner) & ~PRT_MTX_WAITERS) != tok)
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
	struct prt__fiber *f = r->fiber;
	atomic_uint *futex = &r->granted;

	prt__spin_lock(&m->wait_lock);
	waiters_init(m);
	if (!acquire_or_flag(m, r->token)) {
		insert(m, r);
		prt__spin_unlock(&m->wait_lock);
		return;
	}
	/* From here the record may vanish. */
	atomic_store_explicit(&r->granted, 1, memory_order_release);
	prt__spin_unlock(&m->wait_lock);
	if (f)
		wake_parker(f);
	else
		prt__futex_wake(futex, 1);
}

/* Waiting side: sleep until @r was handed the mutex. */
void prt__mutex_wait_granted(struct prt__mwaiter *r)
{
	struct prt__fiber *self = r->fiber;

	if (!self) {
		/* acquire: pairs with the release of the grant */
		while (!atomic_load_explicit(&r->granted, memory_order_acquire))
			prt__futex_wait(&r->granted, 0);
		return;
	}
	for (;;) {
		prt__spin_lock(&self->lock);
		if (atomic_load_explicit(&r->granted, memory_order_acquire)) {
			prt__spin_unlock(&self->lock);
			return;
		}
		self->parked = true;
		atomic_store_explicit(&self->state, PRT_FS_BLOCKED, memory_order_relaxed);
		prt__spin_unlock(&self->lock);
		prt__schedule_blocked(prt__cur_worker());
	}
}

/* ---- pick-path helper ---------------------------------------------------- */

bool prt__mutex_sleep_donor(struct prt__fiber *d)
{
	struct prt__mutex *m = atomic_load(&d->blocked_on);
	bool ok = false;

	if (!m)
		return false;
	prt__spin_lock(&m->wait_lock);
	if (atomic_load(&d->blocked_on) == m && d->mwait) {
		d->mwait->sleeping = true;
		atomic_store_explicit(&d->state, PRT_FS_BLOCKED, memory_order_relaxed);
		ok = true;
	}
	prt__spin_unlock(&m->wait_lock);
	return ok;
}

/* ---- init, destroy, attributes -------------------------------------------- */

PRT_API int prt_mutexattr_init(prt_mutexattr_t *a)
{
	if (!a)
		return EINVAL;
	memset(a, 0, sizeof(*a));
	return 0;
}

PRT_API int prt_mutexattr_destroy(prt_mutexattr_t *a)
{
	return a ? 0 : EINVAL;
}

PRT_API int prt_mutexattr_settype(prt_mutexattr_t *a, int type)
{
	if (!a || type < PRT_MUTEX_NORMAL || type > PRT_MUTEX_RECURSIVE)
		return EINVAL;
	a->type = type;
	return 0;
}

PRT_API int prt_mutexattr_gettype(const prt_mutexattr_t *a, int *type)
{
	if (!a || !type)
		return EINVAL;
	*type = a->type;
	return 0;
}

PRT_API int prt_mutexattr_setproxy(prt_mutexattr_t *a, int proxy)
{
	if (!a || proxy < PRT_MUTEX_PROXY_DEFAULT || proxy > PRT_MUTEX_PROXY_OFF)
		return EINVAL;
	a->proxy = proxy;
	return 0;
}

PRT_API int prt_mutexattr_getproxy(const prt_mutexattr_t *a, int *proxy)
{
	if (!a || !proxy)
		return EINVAL;
	*proxy = a->proxy;
	return 0;
}

PRT_API int prt_mutex_init(prt_mutex_t *um, const prt_mutexattr_t *a)
{
	struct prt__mutex *m = prt__mutex_of(um);

	if (!um)
		return EINVAL;
	if (a && (a->type < PRT_MUTEX_NORMAL || a->type > PRT_MUTEX_RECURSIVE ||
		  a->proxy < PRT_MUTEX_PROXY_DEFAULT || a->proxy > PRT_MUTEX_PROXY_OFF))
		return EINVAL;
	memset(um, 0, sizeof(*um));
	if (a) {
		m->type = (uint8_t)a->type;
		m->proxy = (uint8_t)a->proxy;
	}
	return 0;
}

PRT_API int prt_mutex_destroy(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);

	if (!um)
		return EINVAL;
	if (atomic_load(&m->owner))
		return EBUSY;
	return 0;
}
