/* SPDX-License-Identifier: MIT */
/*
 * Blocking-call offload: a small pool of plain threads per runtime runs
 * functions that may block the thread (getaddrinfo, a blocking library)
 * while the calling fiber parks. Threads are started on demand, up to
 * rt->io.offload_max; further calls queue in FIFO order.
 *
 * A job is allocated, not on the caller's stack: a prt_cancel ends the
 * caller's wait while the call still runs (docs/design.md, section 17),
 * and the helper then finishes it, drops its result and frees the job.
 * The caller and the helper each hold a reference (@refs); the last one
 * done with the job frees it.
 */
#include <pthread.h>
#include <string.h>

#include "alloc.h"
#include "fault.h"
#include "offload.h"
#include "runtime_int.h"
#include "wait.h"
#include "worker.h"

struct job {
	struct job *next;
	void *(*fn)(void *);
	void *arg, *ret;
	struct prt__wait done; /* the caller's: woken once @ret is set */
	atomic_uint refs;      /* the caller's and the helper's: the last frees the job */
};

/* One of the caller and the helper is done with @j; the last frees it. */
static void job_put(struct job *j)
{
	/* acq_rel: the other side's accesses to @j come before the free */
	if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1)
		prt__free(j, sizeof(*j));
}

struct prt__offload {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *head, **tail; /* FIFO */
	unsigned nthreads, nidle;
	bool stopping;
	pthread_t threads[];
};

static void *helper_main(void *arg)
{
	struct prt__offload *o = arg;

	pthread_mutex_lock(&o->lock);
	for (;;) {
		struct job *j = o->head;

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
		pthread_mutex_unlock(&o->lock);
		j->ret = j->fn(j->arg);
		prt__wait_wake(&j->done); /* a cancelled caller's wait is over: kept LATE, unread */
		job_put(j);
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

/* Queue @j on @o, starting a helper if none is idle and there is room: 0 or -EAGAIN. */
static int queue_job(struct prt__offload *o, struct prt__worker *w, struct job *j)
{
	int err = 0;

	pthread_mutex_lock(&o->lock);
	if (!o->nidle && o->nthreads < w->rt->io.offload_max) {
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
		*o->tail = j;
		o->tail = &j->next;
		pthread_cond_signal(&o->cond);
	}
	pthread_mutex_unlock(&o->lock);
	return err ? -EAGAIN : 0;
}

PRT_API int prt_offload(void *(*fn)(void *), void *arg, void **result)
{
	struct prt__worker *w = prt__cur_worker();
	struct prt__offload *o;
	struct job *j;
	int err;

	if (!fn)
		return -EINVAL;
	if (!w) {
		void *r = fn(arg);

		if (result)
			*result = r;
		return 0;
	}
	if (prt__cancel_pending(w->curr))
		return -ECANCELED; /* @fn not run */
	if (!(o = pool_of(w->rt)) || !(j = prt__alloc(sizeof(*j))))
		return -ENOMEM;
	*j = (struct job){ .fn = fn, .arg = arg };
	atomic_init(&j->refs, 2);
	prt__wait_init(&j->done, w->curr);
	if ((err = queue_job(o, w, j))) {
		prt__free(j, sizeof(*j));
		return err;
	}
	/* The helper's wake (its acq_rel CAS comes after j->ret), or a cancel. */
	prt__set_wait(w->curr, PRT_WK_OFFLOAD, (const void *)fn, 0);
	err = prt__wait_block_cancel(&j->done, 0);
	if (!err && result)
		*result = j->ret;
	job_put(j);
	return -err;
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
