/* SPDX-License-Identifier: MIT */
#ifndef PRT_FAULT_H
#define PRT_FAULT_H

/*
 * Fault injection for the error-path tests (tests/test_fault.c). Only a
 * build configured with -Dfault_injection=true has it: elsewhere
 * prt__fault() is the constant 0 and prt__fault_track() does nothing, so
 * every check below compiles away.
 *
 * The library calls prt__fault(site) just before each call that asks
 * the system for a resource that can run out; a non-zero result is the
 * errno that call must be taken to have failed with. The calls are
 * counted per site, so a test can make "the Nth allocation from now"
 * fail and walk N up until an operation no longer hits the failure.
 * Counting happens inside the library rather than in a wrapper around
 * malloc/mmap/liburing/hwloc because a wrapper cannot interpose on
 * jemalloc's mallocx nor coexist with ASan's own malloc.
 */

#include <stdint.h>
#include <stdbool.h>

enum prt__fault_site {
	PRT_FAULT_ALLOC,  /* prt__alloc*, topology's malloc/calloc */
	PRT_FAULT_MMAP,   /* fiber stack and slab mmaps, the guard page mprotect */
	PRT_FAULT_URING,  /* io_uring_queue_init (probes and worker rings) */
	PRT_FAULT_HWLOC,  /* hwloc topology init/set/load and bitmap allocations */
	PRT_FAULT_THREAD, /* pthread_create (workers, offload helpers) */
	PRT_FAULT_FD,     /* eventfd, epoll_create1 */
	PRT_FAULT_KICK,   /* a worker's MSG_RING kick (sent to no ring, it fails as a real one can) */
	PRT_FAULT_WATCH,  /* a stream's end watch (a poll of no fd, it fails) */
	/*
	 * The probe of each io_uring file opcode (io_uring.c, file_ops[], in
	 * order; one call per runtime created): that opcode is taken as
	 * missing, and its call goes to the offload pool.
	 */
	PRT_FAULT_OPCODE,
	PRT_FAULT_IOWQ,   /* a worker's IORING_REGISTER_IOWQ_AFF (the errno is recorded) */
	/* The cancel of a timed file call given up on is not queued (as with a full SQ). */
	PRT_FAULT_CANCEL,
	/*
	 * A call on the ring ends with -ECANCELED unasked, without being
	 * made, as the kernel ends a call queued for its helper threads when
	 * it cannot start the first one (io_uring.c, kernel_dropped).
	 */
	PRT_FAULT_IOWQ_DROP,
	PRT_FAULT_NSITES,
};

/*
 * Pause points: where a race's window is a few instructions wide, a
 * test can make the library stop there (call its hook) to open the
 * window wide and show which side touches what (tests/test_lifetime).
 */
enum prt__pause_site {
	/* A plain thread waiting (mutex, condvar, join) was granted; its FUTEX_WAKE is next. */
	PRT_PAUSE_GRANT_WAKE,
	/* prt__enqueue queued a fiber and let go of the run queue; kicking a worker is next. */
	PRT_PAUSE_ENQUEUED,
	/* A fiber in a mutex wait spun on its record, wait_lock dropped; retaking it is next. */
	PRT_PAUSE_MUTEX_SPUN,
	/* An offload helper took a job off the queue; running it is next. */
	PRT_PAUSE_OFFLOAD_RUN,
	/* An rwlock unlock granting a read phase in rounds woke one; retaking wait_lock is next. */
	PRT_PAUSE_RW_ROUND,
	/* A dump chose a fiber waiting on a lock for its chains (dump.c); its chain line is next. */
	PRT_PAUSE_DUMP_CHAIN,
	/* A fiber ended (DEAD, its joiner woken); its switch away is next. */
	PRT_PAUSE_FIBER_ENDED,
	/* prt__rq_add loaded the fiber's priority and affinity flag (rq lock held); publishing rq_worker is next. */
	PRT_PAUSE_RQ_ADD,
	/* A priority or affinity change found its fiber queued nowhere; waiting out the queuers is next. */
	PRT_PAUSE_REQUEUE_SETTLE,
	/* A semaphore waiter's spin ended without a unit, its spinner bit kept; queueing is next. */
	PRT_PAUSE_SEM_SPUN,
	/* A semaphore waiter found the value 0 under s->lock; counting itself (one CAS on the word) is next. */
	PRT_PAUSE_SEM_COUNT,
	/* A semaphore post took a waiter's record off the list, s->lock released; its wake is next. */
	PRT_PAUSE_SEM_HANDED,
	/* A semaphore waiter's wait ended without a wake (deadline, cancel); leaving the semaphore is next. */
	PRT_PAUSE_SEM_GIVE_UP,
	/* That waiter claimed its record (LEAVING), still on the list; s->lock is next. */
	PRT_PAUSE_SEM_LEAVING,
	/* A wait group's add took its waiters off the list at 0, g->lock released; their wakes are next. */
	PRT_PAUSE_WG_TAKEN,
	/* A wait group waiter's wait ended without a wake (deadline, cancel); leaving the group is next. */
	PRT_PAUSE_WG_GIVE_UP,
	/* A condvar waiter's spin ended (woken or not), still seated; its look at its seat is next. */
	PRT_PAUSE_COND_SPUN,
	/* A condvar waiter, holding its mutex, found itself referenced and c->m its mutex; its seat is next. */
	PRT_PAUSE_COND_SEAT,
	/* A condvar waiter's wait ended without the mutex and it claimed its record (LEAVING); c->lock is next. */
	PRT_PAUSE_COND_LEAVING,
	/* prt__rq_claim marked in_cs; its look at kept is next. */
	PRT_PAUSE_RQ_CLAIM,
	/* prt__rq_claim found its worker's lock kept: inside the critical section. */
	PRT_PAUSE_RQ_BIASED,
	/*
	 * The timer watch fired early (its lead): the look is about to spin
	 * until the deadline. (Every pause hook runs with the fiber's preempt
	 * count raised, fault.c: it is test code inside the library's.)
	 */
	PRT_PAUSE_WATCH_SPIN,
	/* An interrupted fiber's look (preempt_eval) is about to check the table of code ranges. */
	PRT_PAUSE_EVAL_RANGES,
	/* The deadlock walk read an owner word naming another owner; that owner's wait is next. */
	PRT_PAUSE_CYCLE_LINK,
	/* An affinity store wrote its first word of several; the others and aff_all are next. */
	PRT_PAUSE_AFFINITY_WORDS,
	/* prt__wake from outside the runtime chose the worker to queue its fiber on; f->lock is next. */
	PRT_PAUSE_WAKE_CHOSEN,
	PRT_PAUSE_NSITES,
};

#if PRT_FAULT_INJECTION
/* Call the hook of @site, if a test set one. */
void prt__fault_pause(enum prt__pause_site site);
/* Set (NULL: clear) the hook of @site; @arg is passed to it. Any thread. */
void prt__fault_set_pause(enum prt__pause_site site, void (*fn)(void *), void *arg);
/* 0, or the errno the caller's next call at @site must fail with. */
int prt__fault(enum prt__fault_site site);
/*
 * Count @site's calls from 0 again and make call number @nth (from 1)
 * fail with @err (a positive errno); @nth == 0 disarms. Any thread.
 */
void prt__fault_arm(enum prt__fault_site site, unsigned nth, int err);
/* Calls at @site since it was last armed. */
unsigned prt__fault_calls(enum prt__fault_site site);
/* Whether @site's armed failure has been handed out. */
bool prt__fault_fired(enum prt__fault_site site);
/*
 * Live resources the library holds: @delta is +1 when one is obtained,
 * -1 when it is given back. Kept for PRT_FAULT_ALLOC (prt__alloc*) and
 * PRT_FAULT_MMAP (stack and slab mappings), the leaks that neither
 * /proc/self/fd nor (for mappings, or with jemalloc) LeakSanitizer sees.
 */
void prt__fault_track(enum prt__fault_site site, long delta);
long prt__fault_live(enum prt__fault_site site);
/*
 * The address of a routine of the compiler's support library (libgcc)
 * that this code references, as the library's own code does for some
 * operations (x86-64: __popcountdi2; aarch64: __aarch64_cas4_acq_rel,
 * its outline atomics); 0 where there is none to name. It must lie in
 * the library's own marked code (meson.build, proxyrt_text).
 */
uintptr_t prt__fault_libgcc_routine(void);
#else
static inline void prt__fault_pause(enum prt__pause_site site)
{
	(void)site;
}

static inline int prt__fault(enum prt__fault_site site)
{
	(void)site;
	return 0;
}

static inline void prt__fault_track(enum prt__fault_site site, long delta)
{
	(void)site;
	(void)delta;
}
#endif

#endif
