/* SPDX-License-Identifier: MIT */
#ifndef PRT_RT_REF_H
#define PRT_RT_REF_H

/* rt_ref.c: the live-runtime list and outside callers' references. */

#include <stdbool.h>

#include "platform.h"
#include "runtime_int.h" /* struct prt_runtime: prt__rt_pin reads it */

/*
 * Outside callers (runtime.c, "Outside callers"): a plain thread or a
 * fiber of another runtime using @rt holds a reference on it for as long
 * as it touches it, which prt_runtime_destroy waits for before it stops
 * the workers and frees anything. A runtime's own fibers take none.
 */
#define PRT_RT_DYING 1u

/*
 * A call given @rt by its caller: may it use @rt? True for @rt's own
 * fibers (*@ref false), or with a reference taken (*@ref true: drop it
 * with prt__rt_put) if @rt is live and destroy is not yet draining;
 * false for anything else (destroyed, never created, being torn down).
 */
bool prt__rt_enter(const struct prt_runtime *rt, bool *ref);
/*
 * Take a reference on @rt, whose memory the caller knows is valid (it
 * holds the lock of one of its fiber descriptors with a current id).
 * False once destroy drains: every fiber has then ended.
 */
bool prt__rt_tryget(struct prt_runtime *rt);
/* Drop a reference. @rt may be freed as soon as this returns. */
void prt__rt_put(const struct prt_runtime *rt);

/*
 * Take a reference on @rt knowing destroy cannot be draining: the
 * caller is about to make runnable a fiber of @rt that has not ended
 * (destroy drains only once every fiber has ended).
 */
static inline void prt__rt_pin(struct prt_runtime *rt)
{
	/*
	 * relaxed: it only has to come before destroy's fetch_or of
	 * PRT_RT_DYING in the order of this word, and it does: that fetch_or
	 * follows (acquire) the end of the fiber we are about to wake.
	 */
	unsigned old = atomic_fetch_add_explicit(&rt->ext_refs, 2, memory_order_relaxed);

	prt__assert(!(old & PRT_RT_DYING));
	(void)old;
}

/*
 * A spawn from outside @rt: count it spawned and take a reference, or
 * -EINVAL (not a live runtime), -ESHUTDOWN (being destroyed). End it
 * with prt__rt_spawn_end(), @failed if nothing was queued.
 */
int prt__rt_spawn_begin(struct prt_runtime *rt);
void prt__rt_spawn_end(struct prt_runtime *rt, bool failed);
/* A new runtime joins the live list (rt_ref.c; prt_runtime_create). */
void prt__rt_live_add(struct prt_runtime *rt);
/* Claim @rt for destruction: false if it is not live or already claimed. */
bool prt__rt_live_claim(struct prt_runtime *rt);
/* Every fiber of @rt ended: refuse new references, wait for the held ones to go. */
void prt__rt_drain_refs(struct prt_runtime *rt);
/* Take @rt off the live list (destroy, after draining). */
void prt__rt_live_del(struct prt_runtime *rt);

#endif
