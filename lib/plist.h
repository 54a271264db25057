/* SPDX-License-Identifier: MIT */
/*
 * A priority-sorted list (the Linux kernel's plist.h): every element on
 * one list, highest priority first, FIFO within a level, plus a second
 * ring linking only the first element of each level. An insert walks
 * the levels, not the elements: at most PRT_PRIO_LEVELS steps however
 * many wait. Removal is O(1).
 *
 * Waiter lists use it (mutex, condvar, semaphore): their records live on
 * the waiters' stacks, so a walk is a cache miss per record, made with
 * the list's spinlock held. A walk past every waiter made each lock cost
 * O(waiters): a crowd of thousands on one mutex (tests/stress_mixed)
 * made every newcomer walk it, the other workers spun on wait_lock
 * meanwhile, and the slower handoffs let the crowd grow (a convoy
 * collapse: 40x fewer operations, starved fibers).
 *
 * The head is a plain struct prt__list (the first element is
 * head->next). An element's @level is self-linked unless it heads a
 * level and there is more than one level: the ring has no sentinel, it
 * starts at the list's first element, which always heads its level.
 * Everything is under the lock of the list.
 */
#ifndef PRT_PLIST_H
#define PRT_PLIST_H

#include "platform.h"

struct prt__plnode {
	struct prt__list node;  /* in the list: every element, in order */
	struct prt__list level; /* the ring of level heads, or self-linked */
	int prio;               /* the order: higher first */
};

static inline struct prt__plnode *prt__plnode_of(struct prt__list *n)
{
	return prt__container_of(n, struct prt__plnode, node);
}

/* Insert @n (n->prio set) after every element of its priority or higher. */
static inline void prt__plist_add(struct prt__list *head, struct prt__plnode *n)
{
	struct prt__list *before = head; /* n goes just before this in the list */
	struct prt__plnode *first, *it, *prev = NULL;

	prt__list_init(&n->level);
	if (prt__list_empty(head)) {
		prt__list_add_tail(head, &n->node);
		return;
	}
	first = it = prt__plnode_of(head->next);
	do {
		if (it->prio < n->prio) {
			before = &it->node;
			break;
		}
		prev = it;
		it = prt__container_of(it->level.next, struct prt__plnode, level);
	} while (it != first);
	/* A new level: n heads it, in the ring before @it (its successor level). */
	if (!prev || prev->prio != n->prio)
		prt__list_add_tail(&it->level, &n->level);
	prt__list_add_tail(before, &n->node);
}

/* Take @n off the list; the next element of its level heads the level then. */
static inline void prt__plist_del(struct prt__list *head, struct prt__plnode *n)
{
	if (!prt__list_empty(&n->level)) {
		if (n->node.next != head) {
			struct prt__plnode *next = prt__plnode_of(n->node.next);

			if (prt__list_empty(&next->level)) /* same level: it heads it now */
				prt__list_add_head(&n->level, &next->level);
		}
		prt__list_del(&n->level);
	}
	prt__list_del(&n->node);
}

#endif
