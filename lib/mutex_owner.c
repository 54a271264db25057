/* SPDX-License-Identifier: MIT */
/*
 * Mutex owners: plain threads' identities, the count of mutexes each
 * owner holds, what each owner waits on, and the walks along the owner
 * chain: the one that detects deadlocks, and prt_fiber_wait_chain's.
 * The fast-path inlines are in mutex_owner.h.
 *
 * A waiting fiber publishes blocked_on (seq_cst) before it walks the
 * owner chain for a cycle. Two fibers closing a cycle at once each store
 * their blocked_on then load the other's, so at least one sees the cycle
 * and returns EDEADLK (docs/design.md, "Deadlock detection").
 *
 * Owners that end. An owner token is an address: a fiber's descriptor,
 * a thread's struct prt__tself. Both outlive their holder and would be
 * reused, and a token in an owner word must never come to name someone
 * else (who could then unlock, relock, or be proxied or walked through
 * as the owner). So each owner counts the mutexes it holds (nheld: a
 * plain store next to the lock's one CAS, never shared), and one that
 * ends holding any keeps its descriptor or prt__tself for good: the
 * mutexes stay locked by an owner that waits on nothing and never runs.
 * That is POSIX's default robustness (PTHREAD_MUTEX_STALLED: "no special
 * actions are taken if the owner ... is terminated while holding the
 * mutex lock"), which glibc also gives its PI mutexes, rather than
 * robust mutexes: those need a list of what each owner holds (space the
 * pthread-sized prt_mutex_t does not have) and callers that handle
 * EOWNERDEAD. Waiters on such a mutex wait for good (timedlock: until
 * their deadline); deadlock detection sees no cycle through the dead
 * owner; the pick puts their donors to sleep (proxy.c). An rwlock hold
 * counts too (each read hold once): a token in an rwlock's owner word
 * or reader slot (rwlock.c) must never name someone else either.
 */
#include <errno.h>
#include <pthread.h>

#include "alloc.h"
#include "fault.h"
#include "mutex_owner.h"
#include "rwlock_int.h"

/* ---- plain threads' identities -------------------------------------------- */

/*
 * Plain threads' identities. A thread gets one at its first lock (from
 * the free list, else new) and gives it back when it ends holding no
 * mutex (its key's destructor); one that ends holding some keeps it. All
 * are on tself_all, so none is ever unreachable, and none is ever freed.
 */
__thread struct prt__tself *prt__tls_tself __attribute__((tls_model("initial-exec")));
static pthread_once_t tself_once = PTHREAD_ONCE_INIT;
static pthread_key_t tself_key;
static bool tself_key_ok;               /* written once, under tself_once */
static prt__spinlock_t tself_lock;      /* zero: unlocked */
static struct prt__tself *tself_all;    /* tself_lock */
static struct prt__tself *tself_free;   /* tself_lock */

/* The thread ends (key destructor): give its identity back unless a mutex names it. */
static void tself_end(void *arg)
{
	struct prt__tself *t = arg;

	prt__tls_tself = NULL;
	if (atomic_load_explicit(&t->nheld, memory_order_relaxed))
		return; /* kept: see "Owners that end" */
	prt__spin_lock(&tself_lock);
	t->free_next = tself_free;
	tself_free = t;
	prt__spin_unlock(&tself_lock);
}

static void tself_key_create(void)
{
	tself_key_ok = pthread_key_create(&tself_key, tself_end) == 0;
}

prt__cold struct prt__tself *prt__tself_new(void)
{
	struct prt__tself *t;

	if (pthread_once(&tself_once, tself_key_create) != 0 || !tself_key_ok)
		return NULL;
	prt__spin_lock(&tself_lock);
	t = tself_free;
	if (t)
		tself_free = t->free_next;
	prt__spin_unlock(&tself_lock);
	if (!t) {
		if (!(t = prt__zalloc(sizeof(*t))))
			return NULL;
		/* Fault builds count what runtimes hold: this is the process's, never freed. */
		prt__fault_track(PRT_FAULT_ALLOC, -1);
		prt__spin_lock(&tself_lock);
		t->all_next = tself_all;
		tself_all = t;
		prt__spin_unlock(&tself_lock);
	}
	if (pthread_setspecific(tself_key, t) != 0) {
		tself_end(t);
		return NULL;
	}
	prt__tls_tself = t;
	return t;
}

/* ---- counts held ------------------------------------------------------------ */

/* The count of the owner whose token is @tok (the caller). */
static atomic_uint *nheld_of(uintptr_t tok)
{
	if (tok & PRT_MTX_THREAD)
		return &((struct prt__tself *)(tok & ~PRT_MTX_FLAGS))->nheld;
	return &((struct prt__fiber *)tok)->nheld;
}

void prt__mutex_held(uintptr_t token, struct prt__mutex *m)
{
	prt__held_add(nheld_of(token), 1);
	if (token & PRT_MTX_THREAD)
		((struct prt__tself *)(token & ~PRT_MTX_FLAGS))->last_held = m;
	else
		((struct prt__fiber *)token)->last_held = m;
}

/* ---- what owners wait on; deadlock detection -------------------------------- */

/* The blocked_on and wait_gen of the owner with token @tok. */
static _Atomic(struct prt__mutex *) *blocked_on_of(uintptr_t tok)
{
	if (tok & PRT_MTX_THREAD)
		return &((struct prt__tself *)(tok & ~PRT_MTX_FLAGS))->blocked_on;
	return &((struct prt__fiber *)tok)->blocked_on;
}

static atomic_uint *wait_gen_of(uintptr_t tok)
{
	if (tok & PRT_MTX_THREAD)
		return &((struct prt__tself *)(tok & ~PRT_MTX_FLAGS))->wait_gen;
	return &((struct prt__fiber *)tok)->wait_gen;
}

/*
 * Called when a waiter is queued (mutex.c's insert()) or leaves the list
 * (forget_waiter()). seq_cst, as each of these stores is the first half
 * of a store-then-load:
 *  - setting it, with the deadlock walk's loads (waits_on(), the owner
 *    word in prt__closes_cycle()) by a waiter closing the same cycle, and
 *    with prt_fiber_set_priority (store prio, then load blocked_on)
 *    against insert()'s load of prio;
 *  - clearing it on a handoff or a timeout, with proxy.c's attach()
 *    (store attached_to, then load blocked_on) against our later read of
 *    attached_to (prt__detach_donor(), prt__unattach()). The pick's
 *    acquire loads of blocked_on (proxy.c) pair with it as a release.
 * A wait that begins counts in wait_gen first (seq_cst, before the
 * store: the deadlock walk's second look, below).
 */
void prt__set_waits_on(uintptr_t tok, struct prt__mutex *m)
{
	if (m)
		atomic_fetch_add_explicit(wait_gen_of(tok), 1, memory_order_seq_cst);
	atomic_store_explicit(blocked_on_of(tok), m, memory_order_seq_cst);
}

/* Links a deadlock walk follows in all; rwlocks held by readers it branches at, nested. */
#define CYCLE_LINKS 4096
#define CYCLE_BRANCHES 4
/* Walks that find a cycle the one before did not see the same way, before the lock gives up looking. */
#define CYCLE_LOOKS 8

/*
 * One walk: links left, and (@mix: a walk that checks a cycle seen) a
 * digest of what it read along the path that came back to the caller
 * (every owner word and reader slot, and each owner's wait: its
 * wait_gen, blocked_on, wait_gen again). The first walk, which nearly
 * always finds no cycle, reads no wait_gen and mixes nothing.
 */
struct walk {
	uintptr_t tok;
	int links;
	bool mix;
	uint64_t digest;
};

static void walk_mix(struct walk *wk, uint64_t v)
{
	uint64_t z;

	if (!wk->mix)
		return;
	/* splitmix64's finalizer over the running digest */
	z = (wk->digest ^ v) + 0x9e3779b97f4a7c15ull;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	wk->digest = z ^ (z >> 31);
}

/*
 * What the owner with token @o waits on, mixed into the digest with its
 * wait_gen read before and after. seq_cst: the load half of the walk's
 * store-then-load (see the top of the file); pairs with the seq_cst
 * store in prt__set_waits_on() by another waiter closing the same cycle.
 */
static struct prt__mutex *waits_on(struct walk *wk, uintptr_t o)
{
	unsigned g0, g1;
	struct prt__mutex *m;

	if (!wk->mix)
		return atomic_load_explicit(blocked_on_of(o), memory_order_seq_cst);
	g0 = atomic_load_explicit(wait_gen_of(o), memory_order_seq_cst);
	m = atomic_load_explicit(blocked_on_of(o), memory_order_seq_cst);
	g1 = atomic_load_explicit(wait_gen_of(o), memory_order_seq_cst);
	walk_mix(wk, ((uint64_t)g0 << 32) | g1);
	walk_mix(wk, (uintptr_t)m);
	return m;
}

static bool closes_from(struct prt__mutex *m, struct walk *wk, int depth);

/*
 * @m is an rwlock held by readers: does the walk come back to the
 * caller through one of its tracked readers? Each one's wait is walked
 * in turn (a branch), at most CYCLE_BRANCHES rwlocks deep; a branch
 * that does not come back leaves nothing in the digest. Readers no slot
 * names are not seen (rwlock.c, "Tracking readers").
 */
static bool readers_close(struct prt__mutex *m, struct walk *wk, int depth)
{
	if (depth >= CYCLE_BRANCHES)
		return false;
	for (int i = 0; i < PRT_RW_TRACK; i++) {
		/* seq_cst: as waits_on(); pairs with the claim of the slot (rwlock.c, track()) */
		uintptr_t r = prt__rw_slot(m, i);
		uint64_t before = wk->digest;

		if (!r)
			continue;
		walk_mix(wk, ((uint64_t)i << 56) ^ r);
		if (r == wk->tok || closes_from(waits_on(wk, r), wk, depth + 1))
			return true;
		wk->digest = before;
	}
	return false;
}

static bool closes_from(struct prt__mutex *m, struct walk *wk, int depth)
{
	for (; m && wk->links-- > 0;) {
		/*
		 * seq_cst: read after our seq_cst store of blocked_on, like
		 * waits_on() (the deadlock walk's store-then-load); as an
		 * acquire it pairs with the release half of the CAS that took
		 * @m, which publishes the owner we then read.
		 */
		uintptr_t o = atomic_load_explicit(&m->owner, memory_order_seq_cst) & ~PRT_MTX_WAITERS;

		walk_mix(wk, (uintptr_t)m);
		if (!o)
			return false;
		/* Read-held: the reader it goes on through counts, not how many read (they come and go). */
		if (o & PRT_MTX_READERS) {
			walk_mix(wk, PRT_MTX_READERS);
			return readers_close(m, wk, depth);
		}
		walk_mix(wk, o);
		if (o == wk->tok)
			return true;
		prt__fault_pause(PRT_PAUSE_CYCLE_LINK);
		m = waits_on(wk, o);
	}
	return false;
}

/*
 * The walk reads each owner word and each owner's blocked_on without
 * locks, at different moments, so one walk can string together links
 * that never held at once: an owner read as holding M2 unlocks it and
 * then waits on a lock the caller holds, and the walk, reading it next,
 * comes back to the caller (a review: a false EDEADLK in 1 of 2 long
 * stress runs without any cycle). So a cycle is believed only when a
 * second walk, after the first, reads the same path: the same owner
 * words and slots, and each owner on it still in the same wait (the
 * same blocked_on and wait_gen, read before and after it in each walk).
 * Then each owner on the path waited without a break from its read in
 * the first walk to its read in the second; a waiting owner neither
 * takes nor releases anything but the lock it waits for, so the second
 * walk's owner words held for the whole time between the walks' reads,
 * and at any moment between the end of the first walk and the start of
 * the second every link of the cycle held at once: a real deadlock,
 * which then lasts. A wait that ended and began again on the same lock
 * has a new wait_gen. (The first walk, which finds a cycle, is a plain
 * one; the two compared come after it.) Looks that keep reading something new
 * (CYCLE_LOOKS) give up and report no cycle: a real one reads the same
 * path every time (a branch that does not come back leaves nothing in
 * the digest), unless an earlier branch keeps coming back falsely in
 * between, each time anew. A fiber walks again at each wakeup; a plain
 * thread walks once, when it queues. (The kernel's rt_mutex walk locks
 * each link instead.)
 */
bool prt__closes_cycle(struct prt__mutex *m, uintptr_t tok)
{
	struct walk prev = { .tok = tok, .links = CYCLE_LINKS };

	if (!closes_from(m, &prev, 0))
		return false;
	prev = (struct walk){ .tok = tok, .links = CYCLE_LINKS, .mix = true };
	if (!closes_from(m, &prev, 0))
		return false;
	for (int i = 0; i < CYCLE_LOOKS; i++) {
		struct walk wk = { .tok = tok, .links = CYCLE_LINKS, .mix = true };

		if (!closes_from(m, &wk, 0))
			return false;
		/*
		 * The digest only: links also counts branches that did not
		 * come back (readers of an rwlock on the path waiting on
		 * other locks), which may change while the cycle stays (a
		 * review's reading).
		 */
		if (wk.digest == prev.digest)
			return true;
		prev = wk;
	}
	return false;
}

/* ---- introspection: the wait chain ------------------------------------------ */

PRT_API int prt_fiber_wait_chain(prt_fiber_t h, prt_wait_link_t *out, int max)
{
	struct prt__fiber *f = h.p;
	int n = 0;

	if (max < 0 || (max > 0 && !out))
		return -EINVAL;
	/* Descriptors are type-stable: reading a stale one is safe, the id tells. */
	/* relaxed: a handle check, as fiber.c's (the id is all it compares) */
	if (!f || !h.id || atomic_load_explicit(&f->id, memory_order_relaxed) != h.id ||
	    atomic_load_explicit(&f->kept, memory_order_relaxed))
		return -ESRCH;
	while (n < max) {
		/*
		 * acquire, both, as the pick's chain walk (proxy.c): each link
		 * is read after the one that led to it. blocked_on pairs with
		 * the store in prt__set_waits_on() (a release), the owner word
		 * with the release half of the CAS that took @m (publishes the
		 * owner).
		 */
		struct prt__mutex *m = atomic_load_explicit(&f->blocked_on, memory_order_acquire);
		uintptr_t o;
		struct prt__fiber *of;

		if (!m)
			break;
		o = atomic_load_explicit(&m->owner, memory_order_acquire);
		out[n].mutex = (prt_mutex_t *)(void *)m;
		out[n].kind = m->type == PRT__MTX_RWLOCK ? PRT_WAIT_LINK_RWLOCK_WR : PRT_WAIT_LINK_MUTEX;
		if (o & PRT_MTX_READERS) {
			out[n].kind = PRT_WAIT_LINK_RWLOCK_RD;
			o = prt__rw_chain_reader(m);
		}
		of = prt__owner_fiber(o);
		out[n].owner_is_thread = !!(o & PRT_MTX_THREAD);
		out[n].owner.p = (o & ~PRT_MTX_FLAGS) ? of : NULL;
		/* relaxed: descriptors are type-stable; a snapshot */
		out[n].owner.id = out[n].owner.p ? atomic_load_explicit(&of->id, memory_order_relaxed)
						 : 0;
		n++;
		if (!out[n - 1].owner.p || of == h.p)
			break;
		f = of;
	}
	return n;
}
