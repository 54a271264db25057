/* SPDX-License-Identifier: MIT */
#ifndef PRT_COND_INT_H
#define PRT_COND_INT_H

/* cond.c: what the rest of the runtime calls. */

#include <proxyrt/fiber.h>
#include <proxyrt/mutex.h>

/*
 * Priority changes (prt_fiber_set_priority; cond.c). Re-sort every waiter list
 * @h's fiber is on after its priority changed: the condvar's and the
 * mutex's (with the top-waiter cache), handing a mutex released to its
 * waiters to a new first waiter that sleeps. Context: any thread.
 */
void prt__waits_reprio(prt_fiber_t h);

/*
 * The tag of @c among the condvars whose spinners a mutex seats (cond.c,
 * "Spinning waiters"): two that share a mutex may have the same. For
 * tests. Context: any thread.
 */
unsigned prt__cond_tag(const prt_cond_t *c);

/* The mutex @c's waiters use (c->m, racy), NULL before the first wait. For tests. */
const void *prt__cond_mutex(const prt_cond_t *c);

#endif
