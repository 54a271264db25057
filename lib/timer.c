/* SPDX-License-Identifier: MIT */
/*
 * Timers: a binary min-heap of deadlines, each entry pointing at a timer
 * that carries its own callback (timer.h). Each timer knows its index in
 * the heap, so disarming is O(log n) without a search.
 */
#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "platform.h"
#include "timer.h"

void prt__timers_init(struct prt__timers *h)
{
	h->heap = NULL;
	h->n = h->cap = 0;
	atomic_init(&h->next, PRT_NO_DEADLINE);
}

void prt__timers_fini(struct prt__timers *h)
{
	prt__free(h->heap, sizeof(*h->heap) * h->cap);
	h->heap = NULL;
	h->n = h->cap = 0;
	atomic_store_explicit(&h->next, PRT_NO_DEADLINE, memory_order_relaxed);
}

static void heap_set(struct prt__timer_ent *heap, unsigned i, struct prt__timer_ent e)
{
	heap[i] = e;
	e.t->pos = i + 1;
}

static void heap_swap(struct prt__timer_ent *heap, unsigned a, unsigned b)
{
	struct prt__timer_ent e = heap[a];

	heap_set(heap, a, heap[b]);
	heap_set(heap, b, e);
}

static void sift_up(struct prt__timers *h, unsigned i)
{
	for (; i && h->heap[(i - 1) / 2].deadline > h->heap[i].deadline; i = (i - 1) / 2)
		heap_swap(h->heap, i, (i - 1) / 2);
}

static void sift_down(struct prt__timers *h, unsigned i)
{
	for (;;) {
		unsigned l = 2 * i + 1, r = l + 1, m = i;

		if (l < h->n && h->heap[l].deadline < h->heap[m].deadline)
			m = l;
		if (r < h->n && h->heap[r].deadline < h->heap[m].deadline)
			m = r;
		if (m == i)
			break;
		heap_swap(h->heap, i, m);
		i = m;
	}
}

/* Room for one more entry: 0 or -ENOMEM. */
static int heap_grow(struct prt__timers *h)
{
	unsigned cap = h->cap ? h->cap * 2 : 64;
	struct prt__timer_ent *heap;

	if (h->cap > UINT32_MAX / 2 / sizeof(*heap))
		return -ENOMEM;
	heap = prt__alloc(sizeof(*heap) * cap);
	if (!heap)
		return -ENOMEM;
	if (h->heap) {
		memcpy(heap, h->heap, sizeof(*heap) * h->n);
		prt__free(h->heap, sizeof(*heap) * h->cap);
	}
	h->heap = heap;
	h->cap = cap;
	return 0;
}

int prt__timer_add(struct prt__timers *h, struct prt__timer *t, uint64_t deadline,
		   prt__timer_fn *fn)
{
	if (h->n == h->cap && heap_grow(h))
		return -ENOMEM;
	t->fn = fn;
	heap_set(h->heap, h->n, (struct prt__timer_ent){ deadline, t });
	PRT_WRITE_ONCE(h->n, h->n + 1); /* read racily by the idle loop */
	sift_up(h, h->n - 1);
	if (t->pos != 1)
		return 0;
	/* seq_cst: pairs with the timer watch's loads (sched.c, busy_next()) */
	atomic_store_explicit(&h->next, deadline, memory_order_seq_cst);
	return 1;
}

/* Take entry @i (0-based) off the heap. The earliest deadline can only grow. */
static struct prt__timer *heap_del(struct prt__timers *h, unsigned i)
{
	struct prt__timer *t = h->heap[i].t;

	t->pos = 0;
	PRT_WRITE_ONCE(h->n, h->n - 1);
	if (i != h->n) {
		heap_set(h->heap, i, h->heap[h->n]);
		sift_down(h, i);
		sift_up(h, i);
	}
	/* relaxed: a later deadline; the watch only ever wakes too early for it */
	atomic_store_explicit(&h->next, prt__timers_first(h), memory_order_relaxed);
	return t;
}

void prt__timer_del(struct prt__timers *h, struct prt__timer *t)
{
	heap_del(h, t->pos - 1);
}

unsigned prt__timers_run(struct prt__timers *h, uint64_t now, void *ctx)
{
	unsigned n = 0;

	for (; h->n && h->heap[0].deadline <= now; n++) {
		struct prt__timer *t = heap_del(h, 0);

		t->fn(t, ctx);
	}
	return n;
}
