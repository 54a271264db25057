/* SPDX-License-Identifier: MIT */
#ifndef PRT_STACK_H
#define PRT_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct prt_runtime;
struct prt__worker;

/* Bytes at the bottom of a canary stack that must stay zero. */
#define PRT_CANARY_BYTES 64
/* Lowest the saved stack pointer may go above the canary. */
#define PRT_CANARY_SP_MARGIN 256

/* prt__stack.flags */
enum {
	PRT_STK_CANARY = 1u << 0, /* canary-checked, no guard page */
	PRT_STK_SLAB = 1u << 1,   /* carved from a slab: never unmapped alone */
	PRT_STK_POOLED = 1u << 2, /* default size: may go back to a pool */
};

/* One fiber stack. The usable range is [base, base + size). */
struct prt__stack {
	void *base;
	size_t size;
	unsigned flags;
	unsigned vg_id; /* valgrind stack id, 0 if none */
};

/* A free stack of a size other than the runtime's default, and when it was freed (ns). */
struct prt__odd_stack {
	struct prt__stack s;
	uint64_t freed;
};

/*
 * A worker's free stacks of the runtime's default size. Owned by the
 * worker thread: only it takes and returns, so no lock. @warm holds up
 * to @max stacks ready for reuse; for canary stacks, which live in
 * slabs and cannot be unmapped one by one, the rest go to @cold after
 * their pages are returned to the kernel (MADV_DONTNEED).
 */
struct prt__stack_pool {
	struct prt__stack *warm;
	unsigned nwarm, max;
	struct prt__stack *cold;
	unsigned ncold, capcold;
	char *slab_next;      /* canary: next uncarved stack of the current slab */
	unsigned slab_left;
};

/* Runtime-wide slab list for canary stacks (freed at destroy). */
struct prt__slab {
	struct prt__slab *next;
	void *map;
	size_t len;
};

int prt__stack_pool_init(struct prt__stack_pool *p, unsigned max);
void prt__stack_pool_fini(struct prt_runtime *rt, struct prt__stack_pool *p);

/*
 * Get a stack of @size bytes (0 = the runtime default) for a fiber that
 * will be homed on worker @home. @w is the calling worker (its pool is
 * used) or NULL from a plain thread. Returns 0 or -ENOMEM.
 */
int prt__stack_get(struct prt_runtime *rt, struct prt__worker *w, int home, size_t size,
		   struct prt__stack *out);
/* Give a dead fiber's stack back, on worker @w (never NULL). */
void prt__stack_put(struct prt_runtime *rt, struct prt__worker *w, struct prt__stack *s);
/*
 * prt__stack_put's common case, which switch.c runs inline: a stack of
 * the default size back on the warm list @p, which has room. False,
 * with nothing done, otherwise. (ASan: prt__stack_put unpoisons first.)
 */
static inline bool prt__stack_put_warm(struct prt__stack_pool *p, const struct prt__stack *s)
{
	if (!(s->flags & PRT_STK_POOLED) || p->nwarm >= p->max)
		return false;
	p->warm[p->nwarm++] = *s;
	return true;
}
/* The runtime's depot of free stacks shared between pools in batches. */
int prt__stack_depot_init(struct prt_runtime *rt);
void prt__stack_depot_fini(struct prt_runtime *rt);
/*
 * The depot's decay period has ended (stack.c, "Decay"): true if so.
 * *@now: the time, read if 0 and needed.
 */
bool prt__stack_trim_due(struct prt_runtime *rt, uint64_t *now);
/*
 * At a period's end (@now): give back up to @max (at most
 * PRT_TRIM_BATCH) of what stayed unused in the depot, or of other
 * sizes, on worker @w.
 */
#define PRT_TRIM_BATCH 64u
void prt__stack_trim(struct prt__worker *w, uint64_t now, unsigned max);
/* Unmap everything of the runtime's slabs (destroy). */
void prt__stack_slabs_free(struct prt_runtime *rt);

/*
 * The canary words are read only while the saved stack pointer is this
 * close to the bottom (so the page holding them is in use already), or
 * once the fiber has ended. Reading a page a fiber never touched makes
 * it resident on a kernel that maps no shared zero page for anonymous
 * read faults, as this project's VM does (6.18): every parked fiber
 * then kept its stack's bottom page as well as its top one (8.6 KB
 * each instead of 4.6; docs/design.md, "What a parked fiber costs").
 * 4096: within the smallest page, whatever the page size.
 */
#define PRT_CANARY_READ_SPAN 4096

/*
 * True if @sp is above the margin and the canary of @s is intact, as
 * far as it is read: while @sp is within PRT_CANARY_READ_SPAN of the
 * bottom, or always with @ended (the fiber ended: its stack's last
 * check, before reuse).
 */
__attribute__((no_sanitize_address)) static inline bool prt__stack_canary_ok(const struct prt__stack *s, const void *sp,
									     bool ended)
{
	const uint64_t *c = (const uint64_t *)s->base;
	uint64_t acc = 0;

	if ((const char *)sp < (const char *)s->base + PRT_CANARY_SP_MARGIN)
		return false;
	if (!ended && (uintptr_t)sp - (uintptr_t)s->base >= PRT_CANARY_READ_SPAN)
		return true;
	for (int i = 0; i < PRT_CANARY_BYTES / 8; i++)
		acc |= c[i];
	return acc == 0;
}

#endif
