/* SPDX-License-Identifier: MIT */
/* Condition variables: fibers and threads, broadcast requeue order, sleeping owners. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include "test_common.h"
#include "runtime_int.h" /* internal: blocked_on */
#include "worker.h"      /* internal: the worker a fiber runs on */

/* ---- bounded queue: producers and consumers across workers ---- */

#define QN 8
#define ITEMS 20000
static prt_mutex_t q_m = PRT_MUTEX_INITIALIZER;
static prt_cond_t q_nonempty = PRT_COND_INITIALIZER, q_nonfull = PRT_COND_INITIALIZER;
static int q_buf[QN], q_head, q_len;
static long q_sum;

static void *producer(void *arg)
{
	(void)arg;
	for (int i = 1; i <= ITEMS; i++) {
		FIBER_CHECK(prt_mutex_lock(&q_m) == 0);
		while (q_len == QN)
			FIBER_CHECK(prt_cond_wait(&q_nonfull, &q_m) == 0);
		q_buf[(q_head + q_len++) % QN] = i;
		FIBER_CHECK(prt_cond_signal(&q_nonempty) == 0);
		FIBER_CHECK(prt_mutex_unlock(&q_m) == 0);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ITEMS; i++) {
		FIBER_CHECK(prt_mutex_lock(&q_m) == 0);
		while (q_len == 0)
			FIBER_CHECK(prt_cond_wait(&q_nonempty, &q_m) == 0);
		q_sum += q_buf[q_head];
		q_head = (q_head + 1) % QN;
		q_len--;
		FIBER_CHECK(prt_cond_signal(&q_nonfull) == 0);
		FIBER_CHECK(prt_mutex_unlock(&q_m) == 0);
	}
	return NULL;
}

static void queue_run(bool threads)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t f[4];
	pthread_t t[2];
	void *res;

	q_head = q_len = 0;
	q_sum = 0;
	assert_int_equal(prt_cond_init(&q_nonempty), 0); /* the previous run destroyed it */
	/* 2 producers, 2 consumers; with @threads one of each is a plain thread. */
	f[0] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, producer, NULL);
	f[1] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, consumer, NULL);
	if (threads) {
		assert_int_equal(pthread_create(&t[0], NULL, producer, NULL), 0);
		assert_int_equal(pthread_create(&t[1], NULL, consumer, NULL), 0);
	} else {
		f[2] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, producer, NULL);
		f[3] = test_spawn(rt, PRT_PRIO_DEFAULT, -1, consumer, NULL);
	}
	for (int i = 0; i < (threads ? 2 : 4); i++) {
		assert_int_equal(prt_join(f[i], &res), 0);
		assert_null(res);
	}
	if (threads)
		for (int i = 0; i < 2; i++) {
			assert_int_equal(pthread_join(t[i], &res), 0);
			assert_null(res);
		}
	assert_int_equal(q_sum, 2L * ITEMS * (ITEMS + 1) / 2);
	assert_int_equal(q_len, 0);
	assert_int_equal(prt_cond_destroy(&q_nonempty), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

static void test_queue_fibers(void **state)
{
	(void)state;
	queue_run(false);
}

static void test_queue_fibers_and_threads(void **state)
{
	(void)state;
	queue_run(true);
}

/* ---- broadcast: requeued, handed the mutex in priority order ---- */

static prt_mutex_t b_m = PRT_MUTEX_INITIALIZER;
static prt_cond_t b_c = PRT_COND_INITIALIZER;
static int b_go, b_log[8], b_n;
static atomic_int b_waiting; /* read by b_main without b_m */

static void *b_waiter(void *arg)
{
	FIBER_CHECK(prt_mutex_lock(&b_m) == 0);
	atomic_fetch_add(&b_waiting, 1);
	while (!b_go)
		FIBER_CHECK(prt_cond_wait(&b_c, &b_m) == 0);
	b_log[b_n++] = (int)(intptr_t)arg;
	FIBER_CHECK(prt_mutex_unlock(&b_m) == 0);
	return NULL;
}

static void *b_main(void *arg)
{
	static const int prio[] = { 3, 9, 3, 12, 9 };
	prt_runtime_t *rt = prt_runtime_self();
	prt_fiber_t f[5];

	(void)arg;
	b_go = b_n = 0;
	atomic_store(&b_waiting, 0);
	for (int i = 0; i < 5; i++) {
		f[i] = test_spawn(rt, prio[i], -1, b_waiter, (void *)(intptr_t)i);
		while (atomic_load(&b_waiting) <= i)
			prt_sleep_ns(100000);
	}
	FIBER_CHECK(prt_mutex_lock(&b_m) == 0);
	b_go = 1;
	FIBER_CHECK(prt_cond_broadcast(&b_c) == 0);
	/* All five now wait on the mutex, not on the condvar. */
	for (int i = 0; i < 5; i++)
		FIBER_CHECK(atomic_load(&f[i].p->blocked_on) != NULL);
	FIBER_CHECK(prt_cond_destroy(&b_c) == 0);
	FIBER_CHECK(prt_mutex_unlock(&b_m) == 0);
	for (int i = 0; i < 5; i++)
		FIBER_CHECK(prt_join(f[i], NULL) == 0);
	return NULL;
}

/*
 * Two workers without the wait spin: every waiter sleeps, so the
 * broadcast finds them all on the list. (A fiber still spinning when
 * it comes would retake the mutex itself: cond.c, "Spinning waiters";
 * tests/test_wait_spin.c.)
 */
static prt_runtime_t *sleepers_rt_flags(unsigned flags)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	cfg.flags = flags;
	cfg.wait_spin_ns = 0;
	unsetenv("PRT_WAIT_SPIN_NS"); /* it would replace the field */
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	return rt;
}

static void test_broadcast_requeue_order(void **state)
{
	static const int want[] = { 3, 1, 4, 0, 2 };
	prt_runtime_t *rt = sleepers_rt_flags(0);

	(void)state;
	assert_null(test_run_in(rt, 1, b_main, NULL));
	for (int i = 0; i < 5; i++)
		assert_int_equal(b_log[i], want[i]);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- fiber <-> plain thread ping-pong: no lost wakeups ---- */

#define PP 5000
static prt_mutex_t pp_m = PRT_MUTEX_INITIALIZER;
static prt_cond_t pp_c = PRT_COND_INITIALIZER;
static int pp_turn;

static void *pp_side(void *arg)
{
	int me = (int)(intptr_t)arg;

	for (int i = 0; i < PP; i++) {
		FIBER_CHECK(prt_mutex_lock(&pp_m) == 0);
		while (pp_turn != me)
			FIBER_CHECK(prt_cond_wait(&pp_c, &pp_m) == 0);
		pp_turn = !me;
		FIBER_CHECK(prt_cond_signal(&pp_c) == 0);
		FIBER_CHECK(prt_mutex_unlock(&pp_m) == 0);
	}
	return NULL;
}

static void test_pingpong_fiber_thread(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_fiber_t f;
	pthread_t t;
	void *res;

	(void)state;
	pp_turn = 0;
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, pp_side, (void *)0);
	assert_int_equal(pthread_create(&t, NULL, pp_side, (void *)1), 0);
	assert_int_equal(prt_join(f, &res), 0);
	assert_null(res);
	assert_int_equal(pthread_join(t, &res), 0);
	assert_null(res);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- errors ---- */

static prt_cond_t e_c = PRT_COND_INITIALIZER;
static prt_mutex_t e_m1 = PRT_MUTEX_INITIALIZER, e_m2 = PRT_MUTEX_INITIALIZER;
static atomic_int e_stage;

static void *e_waiter(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&e_m1) == 0);
	e_stage = 1;
	while (e_stage != 2)
		FIBER_CHECK(prt_cond_wait(&e_c, &e_m1) == 0);
	FIBER_CHECK(prt_mutex_unlock(&e_m1) == 0);
	return NULL;
}

static void test_errors(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_mutexattr_t a;
	prt_mutex_t r;
	prt_fiber_t f;

	(void)state;
	assert_int_equal(prt_cond_wait(&e_c, &e_m1), EPERM); /* not held */
	assert_int_equal(prt_cond_wait(NULL, &e_m1), EINVAL);
	assert_int_equal(prt_cond_wait(&e_c, NULL), EINVAL);
	assert_int_equal(prt_cond_signal(NULL), EINVAL);
	assert_int_equal(prt_cond_init(NULL), EINVAL);
	assert_int_equal(prt_cond_signal(&e_c), 0); /* nobody waits: nothing happens */
	e_stage = 0;
	f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, e_waiter, NULL);
	while (!atomic_load(&e_stage) || !atomic_load(&f.p->state) ||
	       atomic_load(&f.p->state) != 3 /* PRT_FS_BLOCKED */)
		sched_yield();
	assert_int_equal(prt_cond_destroy(&e_c), EBUSY);
	assert_int_equal(prt_mutex_lock(&e_m2), 0);
	assert_int_equal(prt_cond_wait(&e_c, &e_m2), EINVAL); /* another mutex */
	assert_int_equal(prt_mutex_unlock(&e_m2), 0);
	assert_int_equal(prt_mutex_lock(&e_m1), 0);
	e_stage = 2;
	assert_int_equal(prt_cond_broadcast(&e_c), 0);
	assert_int_equal(prt_mutex_unlock(&e_m1), 0);
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(prt_cond_destroy(&e_c), 0);
	assert_int_equal(prt_cond_init(&e_c), 0); /* used again below */

	/* A recursive mutex is released fully and its count restored. */
	prt_mutexattr_init(&a);
	prt_mutexattr_settype(&a, PRT_MUTEX_RECURSIVE);
	prt_mutex_init(&r, &a);
	assert_int_equal(prt_mutex_lock(&r), 0);
	assert_int_equal(prt_mutex_lock(&r), 0);
	assert_int_equal(prt_cond_signal(&e_c), 0);
	assert_int_equal(prt_mutex_unlock(&r), 0);
	assert_int_equal(prt_mutex_unlock(&r), 0);
	assert_int_equal(prt_mutex_unlock(&r), EPERM);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- owner sleeping on a condvar while holding a mutex: proxy attaches ---- */

static prt_mutex_t so_lock = PRT_MUTEX_INITIALIZER, so_cm = PRT_MUTEX_INITIALIZER;
static prt_cond_t so_c = PRT_COND_INITIALIZER;
static atomic_int so_go, so_sleeping;
static atomic_int so_h_done;

static void *so_owner(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&so_lock) == 0);
	FIBER_CHECK(prt_mutex_lock(&so_cm) == 0);
	so_sleeping = 1;
	while (!so_go)
		FIBER_CHECK(prt_cond_wait(&so_c, &so_cm) == 0);
	FIBER_CHECK(prt_mutex_unlock(&so_cm) == 0);
	FIBER_CHECK(atomic_load(&so_h_done) == 0); /* still ours until we unlock */
	FIBER_CHECK(prt_mutex_unlock(&so_lock) == 0);
	return NULL;
}

static void *so_high(void *arg)
{
	(void)arg;
	FIBER_CHECK(prt_mutex_lock(&so_lock) == 0);
	atomic_store(&so_h_done, 1);
	FIBER_CHECK(prt_mutex_unlock(&so_lock) == 0);
	return NULL;
}

static void test_owner_sleeps_on_condvar(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	prt_worker_stats_t s;
	uint64_t att = 0;
	prt_fiber_t o, h;

	(void)state;
	atomic_store(&so_go, 0);
	atomic_store(&so_sleeping, 0);
	atomic_store(&so_h_done, 0);
	o = test_spawn(rt, 4, -1, so_owner, NULL);
	while (!atomic_load(&so_sleeping) || atomic_load(&o.p->state) != 3)
		sched_yield();
	h = test_spawn(rt, 25, -1, so_high, NULL);
	while (att == 0) {
		att = 0;
		for (int i = 0; i < 2; i++) {
			assert_int_equal(prt_worker_stats(rt, i, &s), 0);
			att += s.attachments;
		}
		usleep(100);
	}
	/* H waits, attached to the sleeping owner; wake the owner. */
	assert_int_equal(prt_mutex_lock(&so_cm), 0);
	so_go = 1;
	assert_int_equal(prt_cond_signal(&so_c), 0);
	assert_int_equal(prt_mutex_unlock(&so_cm), 0);
	assert_int_equal(prt_join(h, NULL), 0);
	assert_int_equal(prt_join(o, NULL), 0);
	assert_int_equal(atomic_load(&so_h_done), 1);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- a waiter's priority changes while it waits: signal order follows ---- */

static prt_mutex_t pc_m = PRT_MUTEX_INITIALIZER;
static prt_cond_t pc_c = PRT_COND_INITIALIZER;
static int pc_waiting, pc_go, pc_log[2], pc_n;

enum { PC_WAIT = 0, PC_TIMED = 0x100 };

static void *pc_waiter(void *arg)
{
	struct timespec far = test_realtime_in(60L * 1000000000L);
	int id = (int)(intptr_t)arg & 0xff;

	FIBER_CHECK(prt_mutex_lock(&pc_m) == 0);
	pc_waiting++;
	while (pc_go <= pc_n) {
		if ((intptr_t)arg & PC_TIMED)
			FIBER_CHECK(prt_cond_timedwait(&pc_c, &pc_m, &far) == 0);
		else
			FIBER_CHECK(prt_cond_wait(&pc_c, &pc_m) == 0);
	}
	pc_log[pc_n++] = id;
	FIBER_CHECK(prt_mutex_unlock(&pc_m) == 0);
	return NULL;
}

/* When the priority changes: while on the condvar, or once moved to the mutex. */
enum { PC_SIGNAL, PC_BROADCAST, PC_AFTER_BROADCAST };

/*
 * a (@pa) and b (@pb) wait on pc_c; a's priority becomes @to;
 * then signal twice (one at a time), or broadcast (before or after the
 * change). Returns who (0: a, 1: b) got pc_m first. A plain thread
 * drives it.
 */
static int cond_prio_change(unsigned flags, int pa, int pb, int to, int timed, int how)
{
	/* Sleepers only: the re-sort of requeued records is what is checked. */
	prt_runtime_t *rt = sleepers_rt_flags(flags);
	prt_fiber_t f[2];
	void *res;

	pc_waiting = pc_go = pc_n = 0;
	f[0] = test_spawn(rt, pa, -1, pc_waiter, (void *)(intptr_t)(0 | timed));
	f[1] = test_spawn(rt, pb, -1, pc_waiter, (void *)(intptr_t)1);
	/* Both on the condvar once both counted: each waits without letting go in between. */
	assert_int_equal(prt_mutex_lock(&pc_m), 0);
	while (pc_waiting < 2) {
		assert_int_equal(prt_mutex_unlock(&pc_m), 0);
		usleep(100);
		assert_int_equal(prt_mutex_lock(&pc_m), 0);
	}
	assert_int_equal(prt_mutex_unlock(&pc_m), 0);
	if (how != PC_AFTER_BROADCAST)
		assert_int_equal(prt_fiber_set_priority(f[0], to), 0);
	assert_int_equal(prt_mutex_lock(&pc_m), 0);
	if (how == PC_SIGNAL) {
		pc_go = 1;
		assert_int_equal(prt_cond_signal(&pc_c), 0);
		assert_int_equal(prt_mutex_unlock(&pc_m), 0);
		/* The one signalled logs and lets go; then the other. */
		assert_int_equal(prt_mutex_lock(&pc_m), 0);
		while (pc_n < 1) {
			assert_int_equal(prt_mutex_unlock(&pc_m), 0);
			usleep(100);
			assert_int_equal(prt_mutex_lock(&pc_m), 0);
		}
		pc_go = 2;
		assert_int_equal(prt_cond_signal(&pc_c), 0);
	} else {
		pc_go = 2;
		assert_int_equal(prt_cond_broadcast(&pc_c), 0);
		if (how == PC_AFTER_BROADCAST) /* both wait on the mutex now */
			assert_int_equal(prt_fiber_set_priority(f[0], to), 0);
	}
	assert_int_equal(prt_mutex_unlock(&pc_m), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(prt_join(f[i], &res), 0);
		assert_null(res);
	}
	assert_int_equal(pc_n, 2);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	return pc_log[0];
}

static void test_prio_change_cond(void **state)
{
	static const unsigned flags[] = { 0, PRT_RT_NO_PROXY };
	static const char *const hows[] = { "signal", "broadcast", "change after broadcast" };
	int bad = 0;

	(void)state;
	for (int i = 0; i < 2; i++)
		for (int timed = 0; timed <= PC_TIMED; timed += PC_TIMED)
			for (int how = PC_SIGNAL; how <= PC_AFTER_BROADCAST; how++)
				for (int up = 0; up < 2; up++) {
					int first = up ? cond_prio_change(flags[i], 10, 20, 25, timed, how)
						       : cond_prio_change(flags[i], 20, 10, 5, timed, how);

					if (first != !up) {
						fprintf(stderr, "flags=%u timed=%d %s %s: %c first\n",
							flags[i], !!timed, hows[how],
							up ? "a 10->25 over b 20" : "a 20->5 under b 10",
							first ? 'b' : 'a');
						bad++;
					}
				}
	assert_int_equal(bad, 0);
}

/*
 * The public type's size and alignment are the ABI of libproxyrt.so.0:
 * a program built against earlier headers lays its structs out so. (A
 * 16-byte alignment, tried to keep the condvar's hot words on one cache
 * line, moved members of such structs, and clang compiled the library's
 * zeroing of the object as 16-byte aligned stores, which crashed on an
 * object an old program placed 8 bytes off: a review.)
 */
static void test_layout(void **state)
{
	(void)state;
	TEST_ABI_LAYOUT(prt_cond_t, 48);
}

/*
 * A condvar wait whose release of the mutex switches the fiber out, and
 * the fiber then resumes on another worker: its spin must watch that
 * worker, not the one it entered on. F runs in D's place (proxy
 * execution: D, higher, waits for the mutex F holds); F's wait releases
 * the mutex to D, which runs itself at once (prt__after_handoff), and
 * F, queued behind it, is stolen by the other worker, whose fiber B
 * just stopped. The wait spin's worker was read before the release: a
 * review's ThreadSanitizer run saw it read the first worker's io ring
 * from the second. Debug builds check the spinner's worker as each wait
 * spin starts (prt__assert_own_worker); this failed there before the fix.
 */
static struct {
	prt_mutex_t m;
	prt_cond_t c;
	prt_fiber_t d;
	atomic_int stage;  /* 1: F holds m; 2: B may stop; 3: D done */
	atomic_int moved;  /* rounds in which F came back on worker 1 */
	prt_sem_t b_go, d_go;
} sw;

static void *sw_b(void *arg)
{
	long rounds = (long)arg;

	for (long i = 0; i < rounds; i++) {
		FIBER_CHECK(prt_sem_wait(&sw.b_go) == 0);
		while (atomic_load(&sw.stage) < 2)
			; /* busy: worker 1 counts as running, so F's wait may spin */
	}
	return NULL;
}

static void *sw_d(void *arg)
{
	long rounds = (long)arg;

	for (long i = 0; i < rounds; i++) {
		uint64_t until;

		FIBER_CHECK(prt_sem_wait(&sw.d_go) == 0);
		FIBER_CHECK(prt_mutex_lock(&sw.m) == 0); /* F holds it: F runs in our place */
		FIBER_CHECK(prt_mutex_unlock(&sw.m) == 0);
		/* Keep worker 0 busy a while: worker 1, idle now, takes F. */
		until = test_mono_ns() + 2000000;
		while (test_mono_ns() < until)
			;
		atomic_store(&sw.stage, 3);
	}
	return NULL;
}

static void *sw_f(void *arg)
{
	long rounds = (long)arg;
	prt_workerset_t any;

	prt_workerset_zero(&any);
	prt_workerset_add(&any, 0);
	prt_workerset_add(&any, 1);
	FIBER_CHECK(prt_fiber_set_affinity(prt_self(), &any) == 0);
	for (long i = 0; i < rounds; i++) {
		struct timespec ts;
		int e;

		atomic_store(&sw.stage, 0);
		FIBER_CHECK(prt_mutex_lock(&sw.m) == 0);
		atomic_store(&sw.stage, 1);
		FIBER_CHECK(prt_sem_post(&sw.b_go) == 0);
		FIBER_CHECK(prt_sem_post(&sw.d_go) == 0);
		/* Let D run and wait for m: its pick then runs us in its place. */
		while (!atomic_load(&sw.d.p->blocked_on))
			prt_yield();
		atomic_store(&sw.stage, 2); /* B stops: worker 1 goes looking for work */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 5000000; /* 5 ms: nobody signals */
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		e = prt_cond_timedwait(&sw.c, &sw.m, &ts);
		FIBER_CHECK(e == ETIMEDOUT);
		if (prt__cur_worker()->index == 1)
			atomic_fetch_add(&sw.moved, 1);
		FIBER_CHECK(prt_mutex_unlock(&sw.m) == 0);
		while (atomic_load(&sw.stage) != 3)
			prt_yield();
	}
	return NULL;
}

static void test_spin_after_switch(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	const long rounds = 20;
	prt_fiber_t b, f;
	void *res;

	(void)state;
	memset(&sw, 0, sizeof(sw));
	/* F and D start on worker 0, D kept there; B kept on worker 1. */
	sw.d = test_spawn(rt, PRT_PRIO_DEFAULT + 8, 0, sw_d, (void *)rounds);
	b = test_spawn(rt, PRT_PRIO_DEFAULT, 1, sw_b, (void *)rounds);
	f = test_spawn(rt, PRT_PRIO_DEFAULT, 0, sw_f, (void *)rounds); /* then free to move */
	assert_int_equal(prt_join(f, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(sw.d, &res), 0);
	assert_null(res);
	assert_int_equal(prt_join(b, &res), 0);
	assert_null(res);
	print_message("F came back on worker 1 in %d of %ld rounds\n", atomic_load(&sw.moved), rounds);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * prt_cond_timedwait_ns (a review: condvars had no monotonic wait, the
 * port of pthread_condattr_setclock(CLOCK_MONOTONIC)): a timeout with
 * the mutex held again, a signal before it, 0 at once, UINT64_MAX never
 * expiring; from a fiber and from a plain thread.
 */
struct tn {
	prt_mutex_t m;
	prt_cond_t c;
	int flag;
};

static void *tn_signaller(void *arg)
{
	struct tn *t = arg;

	usleep(20 * 1000);
	assert_int_equal(prt_mutex_lock(&t->m), 0);
	t->flag = 1;
	assert_int_equal(prt_cond_signal(&t->c), 0);
	assert_int_equal(prt_mutex_unlock(&t->m), 0);
	return NULL;
}

static void tn_check(struct tn *t, int *ok)
{
	pthread_t th;
	int r;

	t->flag = 0;
	*ok &= prt_cond_timedwait_ns(NULL, &t->m, 1) == EINVAL;
	*ok &= prt_cond_timedwait_ns(&t->c, &t->m, 1000) == EPERM; /* not held */
	*ok &= prt_mutex_lock(&t->m) == 0;
	*ok &= prt_cond_timedwait_ns(&t->c, &t->m, 0) == ETIMEDOUT;
	*ok &= prt_cond_timedwait_ns(&t->c, &t->m, 2000000) == ETIMEDOUT; /* 2 ms, unsignalled */
	*ok &= prt_mutex_trylock(&t->m) == EBUSY || prt_mutex_trylock(&t->m) == EDEADLK; /* held again */
	*ok &= pthread_create(&th, NULL, tn_signaller, t) == 0;
	while (!t->flag && (r = prt_cond_timedwait_ns(&t->c, &t->m, UINT64_MAX)) == 0)
		;
	*ok &= t->flag == 1;
	*ok &= prt_mutex_unlock(&t->m) == 0;
	*ok &= pthread_join(th, NULL) == 0;
}

static void *tn_fiber(void *arg)
{
	int ok = 1;

	tn_check(arg, &ok);
	return ok ? NULL : (void *)1;
}

static void test_timedwait_ns(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	struct tn t;
	int ok = 1;

	(void)state;
	assert_int_equal(prt_mutex_init(&t.m, NULL), 0);
	assert_int_equal(prt_cond_init(&t.c), 0);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, tn_fiber, &t));
	tn_check(&t, &ok); /* a plain thread */
	assert_true(ok);
	assert_int_equal(prt_cond_destroy(&t.c), 0);
	assert_int_equal(prt_mutex_destroy(&t.m), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spin_after_switch),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_timedwait_ns),
		cmocka_unit_test(test_queue_fibers),
		cmocka_unit_test(test_queue_fibers_and_threads),
		cmocka_unit_test(test_broadcast_requeue_order),
		cmocka_unit_test(test_pingpong_fiber_thread),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_owner_sleeps_on_condvar),
		cmocka_unit_test(test_prio_change_cond),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
