/* SPDX-License-Identifier: MIT */
/*
 * Runtime references: the process's list of live runtimes, and the
 * references outside callers hold on a runtime while they touch it,
 * which prt_runtime_destroy (runtime.c) drains before it frees anything.
 */
#include <limits.h>

#include "fork.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "worker.h"

/*
 * Design note (process-wide state). The list of live runtimes: the one
 * way to tell a destroyed runtime's stale pointer (prt_spawn, destroy,
 * the introspection calls on it return -EINVAL) from a live one without
 * reading freed memory. Calls from a runtime's own fibers skip it. A new
 * runtime allocated at a destroyed one's address makes the stale pointer
 * valid again; that is as far as a cheap check goes.
 */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct prt_runtime *live_head; /* live_lock */

/*
 * Outside callers. A runtime's own fibers can never see it freed: destroy
 * waits for every one of them to end and joins the workers first. Anyone
 * else can: a plain thread, a fiber of another runtime, one of our own
 * helper threads (offload, dump). Each of those holds a reference on the
 * runtime (rt->ext_refs, 2 per caller) while it touches it, in the
 * spirit of the kernel's percpu_ref (no new users once dying, wait for
 * the current ones):
 *
 *   outside caller                        prt_runtime_destroy
 *   --------------                        -------------------
 *   take a reference, one of:             claim (live_lock): outside
 *     enter: on the live list, not          spawns fail with -ESHUTDOWN
 *       DYING (live_lock)                 wait until every fiber ended
 *     tryget: not DYING (a fiber's lock   fetch_or PRT_RT_DYING: enter
 *       held, with its id current)          and tryget fail from here
 *     pin: waking a fiber not ended       wait until ext_refs == DYING
 *   use rt, its workers, its fibers         (acquire)
 *   put (release)                         stop workers, free
 *
 * Outside spawns also count themselves spawned (ext_spawned) under
 * live_lock before destroy can claim, so its wait for the fibers to end
 * includes theirs: a spawn that returned 0 has run when destroy returns.
 * A pin never fails: the fiber it is about to wake keeps destroy from
 * reaching DYING. Fibers calling into their own runtime take nothing:
 * the fast paths (spawn, wake, unlock) gain no shared atomic.
 */
static atomic_uint ref_seq; /* futex: bumped when a dying runtime's last reference goes */

static bool live_find(const struct prt_runtime *rt)
{
	const struct prt_runtime *r;

	for (r = live_head; r && r != rt; r = r->live_next)
		;
	return r != NULL;
}

bool prt__rt_tryget(struct prt_runtime *rt)
{
	unsigned v = atomic_load_explicit(&rt->ext_refs, memory_order_relaxed);

	do {
		if (v & PRT_RT_DYING)
			return false;
		/* relaxed: ordered against destroy's fetch_or by this word's modification order */
	} while (!atomic_compare_exchange_weak_explicit(&rt->ext_refs, &v, v + 2,
							memory_order_relaxed,
							memory_order_relaxed));
	return true;
}

bool prt__rt_enter(const struct prt_runtime *rt, bool *ref)
{
	struct prt__worker *w = prt__cur_worker();
	bool ok;

	*ref = false;
	if (!rt)
		return false;
	if (w && w->rt == rt)
		return true;
	pthread_mutex_lock(&live_lock);
	ok = live_find(rt) && prt__rt_tryget((struct prt_runtime *)rt);
	pthread_mutex_unlock(&live_lock);
	return *ref = ok;
}

void prt__rt_put(const struct prt_runtime *rt)
{
	struct prt_runtime *r = (struct prt_runtime *)rt;

	/* release: pairs with the acquire in drain_refs(), before destroy frees @rt */
	if (atomic_fetch_sub_explicit(&r->ext_refs, 2, memory_order_release) != (2 | PRT_RT_DYING))
		return;
	/* The last one of a dying runtime: @rt may be gone now; wake on a process-wide word. */
	atomic_fetch_add_explicit(&ref_seq, 1, memory_order_seq_cst);
	prt__futex_wake(&ref_seq, INT_MAX);
}

int prt__rt_spawn_begin(struct prt_runtime *rt)
{
	int err = 0;

	pthread_mutex_lock(&live_lock);
	if (!live_find(rt))
		err = -EINVAL; /* destroyed, or not a runtime */
	else if (rt->destroy_claimed)
		err = -ESHUTDOWN;
	if (!err) {
		/* Under live_lock: destroy, which claims under it, then sees these. */
		atomic_fetch_add_explicit(&rt->ext_spawned, 1, memory_order_relaxed);
		prt__rt_pin(rt);
	}
	pthread_mutex_unlock(&live_lock);
	return err;
}

void prt__rt_spawn_end(struct prt_runtime *rt, bool failed)
{
	if (failed) {
		/* release: pairs with the acquire in all_exited() */
		atomic_fetch_sub_explicit(&rt->ext_spawned, 1, memory_order_release);
		/* Destroy may wait for this count: look again (our reference keeps @rt). */
		atomic_fetch_add_explicit(&rt->destroy_seq, 1, memory_order_seq_cst);
		prt__futex_wake(&rt->destroy_seq, INT_MAX);
	}
	prt__rt_put(rt);
}

void prt__rt_live_add(struct prt_runtime *rt)
{
	pthread_mutex_lock(&live_lock);
	rt->live_next = live_head;
	live_head = rt;
	pthread_mutex_unlock(&live_lock);
}

bool prt__rt_live_claim(struct prt_runtime *rt)
{
	bool ok = false;

	pthread_mutex_lock(&live_lock);
	if (live_find(rt) && !rt->destroy_claimed) {
		ok = rt->destroy_claimed = true;
		/* Fibers that end from here bump destroy_seq (one that misses it: the wait's timeout). */
		atomic_store_explicit(&rt->destroying, true, memory_order_seq_cst);
	}
	pthread_mutex_unlock(&live_lock);
	return ok;
}

void prt__rt_live_del(struct prt_runtime *rt)
{
	struct prt_runtime **pp;

	pthread_mutex_lock(&live_lock);
	for (pp = &live_head; *pp && *pp != rt; pp = &(*pp)->live_next)
		;
	if (*pp)
		*pp = rt->live_next;
	pthread_mutex_unlock(&live_lock);
}

void prt__rt_drain_refs(struct prt_runtime *rt)
{
	atomic_fetch_or_explicit(&rt->ext_refs, PRT_RT_DYING, memory_order_seq_cst);
	for (;;) {
		unsigned seq = atomic_load_explicit(&ref_seq, memory_order_seq_cst);

		/* acquire: pairs with the release in prt__rt_put() */
		if (atomic_load_explicit(&rt->ext_refs, memory_order_acquire) == PRT_RT_DYING)
			return;
		/* prt__rt_put bumps ref_seq; the timeout is a safety net. */
		prt__futex_wait_ns(&ref_seq, seq, 10 * 1000 * 1000);
	}
}

/* fork.h: in a forked child, the parent's runtimes have no workers. */
static void live_child(void)
{
	live_head = NULL;
}

struct prt__fork_hook prt__rt_ref_fork_hook = { .lock = &live_lock, .child = live_child };
