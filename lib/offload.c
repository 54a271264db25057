/* SPDX-License-Identifier: MIT */
/*
 * Blocking-call offload: a small pool of plain threads per runtime runs
 * functions that may block the thread (getaddrinfo, a blocking library)
 * while the calling fiber parks. Threads are started on demand, up to
 * rt->io.offload_max; further calls queue in FIFO order. A job the
 * caller may give up on (a timed file call, prt_offload under
 * prt_cancel) is allocated and detached: the caller and the helper each
 * hold a reference, the last one done frees it. A file call's job that
 * no helper has taken yet when its caller gives up is not run at all
 * (droppable); a prt_offload job, once queued, runs to its end, as its
 * caller was told. Others live on the caller's stack.
 */
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "fault.h"
#include "offload.h"
#include "runtime_int.h"
#include "wait.h"
#include "worker.h"

struct prt__offload {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct prt__offjob *head, **tail; /* FIFO */
	/*
	 * @njobs: jobs on the FIFO. An idle helper that was signalled stays
	 * counted in @nidle until it wakes: only nidle - njobs of them are
	 * free for a new job (a review: two FIFO opens queued at once both
	 * went to one woken helper, which the reader's open then blocked).
	 */
	unsigned nthreads, nidle, njobs;
	bool stopping;
	pthread_t threads[];
};

/*
 * A helper ran @j: hand the result to its caller. A detached job whose
 * caller gave up (its wait timed out: the wake finds it over) is the
 * helper's to dispose of.
 */
static void job_done(struct prt__offjob *j)
{
	if (!j->detached) {
		prt__wait_wake(&j->done); /* @j may be gone after this */
		return;
	}
	if (!prt__wait_wake(&j->done) && j->orphan)
		j->orphan(j);
	prt__offjob_put(j);
}

static void *helper_main(void *arg)
{
	struct prt__offload *o = arg;

	pthread_mutex_lock(&o->lock);
	for (;;) {
		struct prt__offjob *j = o->head;

		if (!j) {
			if (o->stopping)
				break;
			o->nidle++;
			pthread_cond_wait(&o->cond, &o->lock);
			o->nidle--;
			continue;
		}
		o->head = j->next;
		if (!o->head)
			o->tail = &o->head;
		o->njobs--;
		j->queued = false;
		pthread_mutex_unlock(&o->lock);
		prt__fault_pause(PRT_PAUSE_OFFLOAD_RUN); /* test builds: the caller may give up here */
		j->ret = j->fn(j->arg);
		job_done(j);
		pthread_mutex_lock(&o->lock);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

/* The runtime's pool, created on first use; NULL if out of memory. */
static struct prt__offload *pool_of(struct prt_runtime *rt)
{
	struct prt__offload *o = __atomic_load_n(&rt->io.offload, __ATOMIC_ACQUIRE), *n;
	size_t sz = sizeof(*o) + sizeof(pthread_t) * rt->io.offload_max;

	if (o)
		return o;
	n = prt__zalloc(sz);
	if (!n)
		return NULL;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	n->tail = &n->head;
	if (!__atomic_compare_exchange_n(&rt->io.offload, &o, n, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		pthread_cond_destroy(&n->cond);
		pthread_mutex_destroy(&n->lock);
		prt__free(n, sz);
		return o;
	}
	return n;
}

/*
 * Queue @j on @w's runtime's pool, starting a helper thread if no idle
 * one is free for it (@njobs) and the pool has room for one. 0, -ENOMEM (no pool), -EAGAIN (no
 * helper thread at all).
 */
static int job_queue(struct prt__worker *w, struct prt__offjob *j)
{
	struct prt__offload *o = pool_of(w->rt);
	int err = 0;

	if (!o)
		return -ENOMEM;
	pthread_mutex_lock(&o->lock);
	if (o->nidle <= o->njobs && o->nthreads < w->rt->io.offload_max) {
		pthread_attr_t a;

		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 256 * 1024);
		/*
		 * On any of the runtime's CPUs: created here, it would
		 * inherit this worker's binding to one.
		 */
		if (CPU_COUNT(&w->rt->topo.cpus))
			pthread_attr_setaffinity_np(&a, sizeof(w->rt->topo.cpus), &w->rt->topo.cpus);
		err = -prt__fault(PRT_FAULT_THREAD);
		if (!err)
			err = -pthread_create(&o->threads[o->nthreads], &a, helper_main, o);
		pthread_attr_destroy(&a);
		if (!err)
			o->nthreads++;
		else if (o->nthreads)
			err = 0; /* the running ones will get to it */
	}
	if (!err) {
		j->next = NULL;
		j->queued = true;
		*o->tail = j;
		o->tail = &j->next;
		o->njobs++;
		pthread_cond_signal(&o->cond);
	}
	pthread_mutex_unlock(&o->lock);
	return err ? -EAGAIN : 0;
}

/* Take @j off the pool's FIFO if no helper has taken it yet; true if it was there. */
static bool job_unqueue(struct prt_runtime *rt, struct prt__offjob *j)
{
	/* acquire: pairs with pool_of()'s release CAS (the pool exists: @j was queued) */
	struct prt__offload *o = __atomic_load_n(&rt->io.offload, __ATOMIC_ACQUIRE);
	struct prt__offjob **pp;
	bool was = false;

	pthread_mutex_lock(&o->lock);
	for (pp = &o->head; *pp; pp = &(*pp)->next) {
		if (*pp != j)
			continue;
		*pp = j->next;
		if (o->tail == &j->next)
			o->tail = pp;
		o->njobs--;
		j->queued = false;
		was = true;
		break;
	}
	pthread_mutex_unlock(&o->lock);
	return was;
}

int prt__offload_run(struct prt__worker *w, struct prt__offjob *j, uint64_t deadline)
{
	struct prt_runtime *rt = w->rt;
	int err;

	prt__assert(!deadline || j->detached);
	/* A cancelled fiber's job is not run (docs/design.md, section 17): the caller's reference alone. */
	if (j->detached && prt__cancel_pending(w->curr)) {
		atomic_store_explicit(&j->refs, 1, memory_order_relaxed);
		return -ECANCELED;
	}
	prt__wait_init(&j->done, w->curr);
	if (j->detached)
		atomic_store_explicit(&j->refs, 2, memory_order_relaxed); /* published by the queue's lock */
	if ((err = job_queue(w, j))) {
		if (j->detached)
			atomic_store_explicit(&j->refs, 1, memory_order_relaxed);
		return err;
	}
	/*
	 * Only the helper's wake ends it (its acq_rel CAS comes after
	 * j->ret), or @deadline, or (a detached job: the caller may leave
	 * it to the helper) a prt_cancel.
	 */
	err = j->detached ? prt__wait_block_cancel(&j->done, deadline)
			  : prt__wait_block(&j->done, deadline);
	if (!err)
		return 0;
	/*
	 * Given up (ETIMEDOUT, ECANCELED, or ENOMEM: no timer): a droppable
	 * job no helper took is not run at all; another stays queued, and
	 * its helper disposes of it.
	 */
	if (j->droppable && job_unqueue(rt, j))
		prt__offjob_put(j); /* the pool's reference */
	return err == ETIMEDOUT ? -ETIMEDOUT : -err;
}

void prt__offjob_put(struct prt__offjob *j)
{
	/* acq_rel: the last one frees @j after every access of the other holder */
	if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1)
		prt__free(j, j->size);
}

PRT_API int prt_offload(void *(*fn)(void *), void *arg, void **result)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__offjob *j;
	int err;

	if (!fn)
		return -EINVAL;
	if (!w) {
		void *r = fn(arg);

		if (result)
			*result = r;
		return 0;
	}
	/*
	 * Allocated, not on our stack: a prt_cancel ends our wait while the
	 * helper may still run @fn, which then finishes it, drops its result
	 * and frees the job (docs/design.md, section 17).
	 */
	if (!(j = prt__alloc(sizeof(*j))))
		return -ENOMEM;
	*j = (struct prt__offjob){ .fn = fn, .arg = arg, .detached = true, .size = sizeof(*j) };
	prt__set_wait(w->curr, PRT_WK_OFFLOAD, (const void *)fn, 0);
	err = prt__offload_run(w, j, 0);
	if (!err && result)
		*result = j->ret;
	prt__offjob_put(j);
	return err;
}

void prt__offload_fini(struct prt_runtime *rt)
{
	struct prt__offload *o = rt->io.offload;

	if (!o)
		return;
	pthread_mutex_lock(&o->lock);
	o->stopping = true;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	for (unsigned i = 0; i < o->nthreads; i++)
		pthread_join(o->threads[i], NULL);
	pthread_cond_destroy(&o->cond);
	pthread_mutex_destroy(&o->lock);
	prt__free(o, sizeof(*o) + sizeof(pthread_t) * rt->io.offload_max);
	rt->io.offload = NULL;
}
