/* SPDX-License-Identifier: MIT */
/*
 * Counting semaphore (proxyrt/sem.h): units counted and handed over,
 * fibers and plain threads as waiters and posters, priority order of
 * wakeups, timed waits (and their race with posts: no unit lost, none
 * invented), bad input, destroy while waited on.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "test_common.h"
#include "fault.h"
#include "fiber_int.h" /* internal: a fiber's state (blocked yet?) */
#if PRT_FAULT_INJECTION
#include "gone_after_wake.h"
#endif
#include <proxyrt/sem.h>

static void sleep_ms(int ms)
{
	struct timespec ts = { 0, ms * 1000000L };

	nanosleep(&ts, NULL);
}

static void test_counting(void **state)
{
	prt_sem_t s = PRT_SEM_INITIALIZER;
	int v;

	(void)state;
	assert_int_equal(prt_sem_getvalue(&s, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(prt_sem_trywait(&s), EAGAIN);
	assert_int_equal(prt_sem_init(&s, 3), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(prt_sem_wait(&s), 0); /* a plain thread, no waiting */
	assert_int_equal(prt_sem_trywait(&s), EAGAIN);
	assert_int_equal(prt_sem_post(&s), 0);
	assert_int_equal(prt_sem_getvalue(&s, &v), 0);
	assert_int_equal(v, 1);
	assert_int_equal(prt_sem_trywait(&s), 0);
	/* Timed waits that find nothing: past, zero, short. */
	struct timespec past = { 0, 0 };
	assert_int_equal(prt_sem_timedwait(&s, &past), ETIMEDOUT);
	assert_int_equal(prt_sem_timedwait_ns(&s, 0), ETIMEDOUT);
	assert_int_equal(prt_sem_timedwait_ns(&s, 2000000), ETIMEDOUT);
	assert_int_equal(prt_sem_destroy(&s), 0);
}

static void test_bad_input(void **state)
{
	prt_sem_t s;
	struct timespec bad = { 0, 1000000000 }, neg = { 0, -1 };
	int v;

	(void)state;
	assert_int_equal(prt_sem_init(NULL, 0), EINVAL);
	assert_int_equal(prt_sem_init(&s, PRT_SEM_VALUE_MAX + 1u), EINVAL);
	assert_int_equal(prt_sem_init(&s, PRT_SEM_VALUE_MAX), 0);
	assert_int_equal(prt_sem_post(&s), EOVERFLOW); /* nothing changed */
	assert_int_equal(prt_sem_getvalue(&s, &v), 0);
	assert_int_equal(v, (int)PRT_SEM_VALUE_MAX);
	assert_int_equal(prt_sem_wait(NULL), EINVAL);
	assert_int_equal(prt_sem_trywait(NULL), EINVAL);
	assert_int_equal(prt_sem_post(NULL), EINVAL);
	assert_int_equal(prt_sem_getvalue(NULL, &v), EINVAL);
	assert_int_equal(prt_sem_getvalue(&s, NULL), EINVAL);
	assert_int_equal(prt_sem_timedwait(&s, NULL), EINVAL);
	assert_int_equal(prt_sem_timedwait(&s, &bad), EINVAL);
	assert_int_equal(prt_sem_timedwait(&s, &neg), EINVAL);
	assert_int_equal(prt_sem_timedwait_ns(NULL, 1), EINVAL);
	assert_int_equal(prt_sem_destroy(NULL), EINVAL);
	assert_int_equal(prt_sem_destroy(&s), 0);
}

/* ---- waiting fibers and threads ------------------------------------------ */

struct waiter_arg {
	prt_sem_t *s;
	atomic_int *order; /* next slot in @log */
	int *log;
	int id;
	atomic_int *queued;
};

static void *fiber_wait_log(void *arg)
{
	struct waiter_arg *a = arg;

	atomic_fetch_add(a->queued, 1);
	FIBER_CHECK(prt_sem_wait(a->s) == 0);
	a->log[atomic_fetch_add(a->order, 1)] = a->id;
	return NULL;
}

/*
 * One worker: waiters of priorities 2, 9, 5, 9, 2 queue in that order;
 * posts wake them highest first, FIFO within a level.
 */
static void test_priority_order(void **state)
{
	static const int prio[5] = { 2, 9, 5, 9, 2 }, expect[5] = { 1, 3, 2, 0, 4 };
	prt_runtime_t *rt = test_rt(1);
	prt_sem_t s = PRT_SEM_INITIALIZER;
	struct waiter_arg a[5];
	prt_fiber_t f[5];
	atomic_int order = 0, queued = 0;
	int log[5];

	(void)state;
	for (int i = 0; i < 5; i++) {
		a[i] = (struct waiter_arg){ &s, &order, log, i, &queued };
		f[i] = test_spawn(rt, prio[i], -1, fiber_wait_log, &a[i]);
		/* Let it queue before the next (they spawn in this order, one worker). */
		while (atomic_load(&queued) <= i)
			sched_yield();
		while (atomic_load_explicit(&f[i].p->state, memory_order_acquire) != PRT_FS_BLOCKED)
			sched_yield();
	}
	assert_int_equal(prt_sem_destroy(&s), EBUSY); /* waited on */
	for (int i = 0; i < 5; i++) {
		assert_int_equal(prt_sem_post(&s), 0); /* from a plain thread */
		while (atomic_load(&order) <= i)
			sched_yield(); /* one at a time: the log is the order units were handed */
	}
	for (int i = 0; i < 5; i++)
		assert_int_equal(prt_join(f[i], NULL), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(log[i], expect[i]);
	assert_int_equal(prt_sem_destroy(&s), 0);
	prt_runtime_destroy(rt);
}

/* ---- producers and consumers, mixed, with timeouts ----------------------- */

/*
 * Fewer under valgrind, which runs one thread at a time, and races fewer
 * under TSan, where each race's thread costs ~9 ms of CPU (3000: 28 s).
 */
static int ITEMS = 20000, RACES = 3000;
#define CONSUMERS 6

struct pc {
	prt_sem_t s;
	atomic_long posted, taken, timeouts;
	atomic_int stop;
};

static void *producer(void *arg)
{
	struct pc *p = arg;

	for (int i = 0; i < ITEMS; i++) {
		if (prt_sem_post(&p->s) != 0)
			abort();
		atomic_fetch_add(&p->posted, 1);
		if (i % 64 == 0) {
			if (prt_self().p)
				prt_yield();
			else
				sched_yield();
		}
	}
	return NULL;
}

static void *consumer(void *arg)
{
	struct pc *p = arg;
	unsigned seed = (unsigned)(uintptr_t)&seed;

	while (!atomic_load(&p->stop)) {
		int e;

		switch (rand_r(&seed) % 3) {
		case 0:
			e = prt_sem_trywait(&p->s);
			if (e == EAGAIN)
				continue;
			break;
		case 1:
			e = prt_sem_timedwait_ns(&p->s, (uint64_t)(rand_r(&seed) % 50) * 1000);
			if (e == ETIMEDOUT) {
				atomic_fetch_add(&p->timeouts, 1);
				continue;
			}
			break;
		default:
			/* Untimed only while units are sure to come; near the end, time out. */
			e = prt_sem_timedwait_ns(&p->s, 5000000);
			if (e == ETIMEDOUT)
				continue;
			break;
		}
		if (e != 0)
			abort();
		atomic_fetch_add(&p->taken, 1);
	}
	return NULL;
}

/*
 * Fibers on two workers and plain threads post and take (try, short
 * timeouts racing the posts, longer ones); at the end every unit posted
 * was taken exactly once or is still in the value.
 */
static void test_mixed_conservation(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	struct pc p = { .s = PRT_SEM_INITIALIZER };
	prt_fiber_t fp, fc[CONSUMERS];
	pthread_t tp, tc[2];
	int v;

	(void)state;
	for (int i = 0; i < CONSUMERS; i++)
		fc[i] = test_spawn(rt, i % 2 ? PRT_PRIO_DEFAULT : PRT_PRIO_DEFAULT + 4, -1, consumer, &p);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&tc[i], NULL, consumer, &p), 0);
	fp = test_spawn(rt, PRT_PRIO_DEFAULT, -1, producer, &p);
	assert_int_equal(pthread_create(&tp, NULL, producer, &p), 0);
	assert_int_equal(prt_join(fp, NULL), 0);
	pthread_join(tp, NULL);
	/* Let them drain what is left, then stop. */
	for (int i = 0; i < 2000 && atomic_load(&p.taken) < 2 * ITEMS; i++)
		sleep_ms(1);
	atomic_store(&p.stop, 1);
	for (int i = 0; i < CONSUMERS; i++)
		assert_int_equal(prt_join(fc[i], NULL), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(tc[i], NULL);
	assert_int_equal(prt_sem_getvalue(&p.s, &v), 0);
	assert_int_equal(atomic_load(&p.posted), 2 * ITEMS);
	assert_int_equal(atomic_load(&p.taken) + v, 2 * ITEMS);
	fprintf(stderr, "# %ld taken, %d left, %ld short timeouts\n", atomic_load(&p.taken), v,
		atomic_load(&p.timeouts));
	assert_int_equal(prt_sem_destroy(&p.s), 0);
	prt_runtime_destroy(rt);
}

/* A fiber's and a thread's timed waits that nothing posts: they time out, nothing left queued. */
static void *fiber_times_out(void *arg)
{
	prt_sem_t *s = arg;
	uint64_t t0 = test_mono_ns();

	FIBER_CHECK(prt_sem_timedwait_ns(s, 3000000) == ETIMEDOUT);
	FIBER_CHECK(test_mono_ns() - t0 >= 3000000);
	return NULL;
}

static void test_timeouts(void **state)
{
	prt_runtime_t *rt = test_rt(1);
	prt_sem_t s = PRT_SEM_INITIALIZER;
	prt_fiber_t f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, fiber_times_out, &s);
	uint64_t t0 = test_mono_ns();

	(void)state;
	assert_int_equal(prt_sem_timedwait_ns(&s, 3000000), ETIMEDOUT);
	assert_true(test_mono_ns() - t0 >= 3000000);
	assert_int_equal(prt_join(f, NULL), 0);
	assert_int_equal(prt_sem_destroy(&s), 0); /* nobody left on the list */
	prt_runtime_destroy(rt);
}

/* ---- a timeout racing a post -------------------------------------------- */

struct race {
	prt_sem_t s;
	atomic_int go;
	unsigned spin;
	uint64_t tmo;
	int err;
};

static void *race_poster(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->go))
		test_spin_pause();
	for (volatile unsigned i = 0; i < r->spin; i++)
		;
	if (prt_sem_post(&r->s) != 0)
		abort();
	return NULL;
}

static void *race_waiter(void *arg)
{
	struct race *r = arg;

	atomic_store(&r->go, 1);
	r->err = prt_sem_timedwait_ns(&r->s, r->tmo);
	return NULL;
}

/*
 * A timed wait and a post race, the waiter a fiber or a plain thread:
 * whichever wins, the unit is either the waiter's (0) or in the value
 * (ETIMEDOUT), never both and never neither.
 */
static void test_timeout_vs_post(void **state)
{
	prt_runtime_t *rt = test_rt(2);
	int got = 0, missed = 0;

	(void)state;
	for (int i = 0; i < RACES; i++) {
		struct race r = { .s = PRT_SEM_INITIALIZER, .spin = (unsigned)(rand() % 30000),
				  .tmo = (uint64_t)(rand() % 30) * 1000 + 1 };
		pthread_t t;
		int v;

		assert_int_equal(pthread_create(&t, NULL, race_poster, &r), 0);
		if (i % 2) {
			prt_fiber_t f = test_spawn(rt, PRT_PRIO_DEFAULT, i % 4 / 2, race_waiter, &r);

			assert_int_equal(prt_join(f, NULL), 0);
		} else {
			race_waiter(&r);
		}
		pthread_join(t, NULL);
		assert_int_equal(prt_sem_getvalue(&r.s, &v), 0);
		if (r.err == 0) {
			assert_int_equal(v, 0);
			got++;
		} else {
			assert_int_equal(r.err, ETIMEDOUT);
			assert_int_equal(v, 1);
			missed++;
		}
		assert_int_equal(prt_sem_destroy(&r.s), 0); /* nobody left queued */
	}
	fprintf(stderr, "# %d waits got the unit, %d timed out first\n", got, missed);
	prt_runtime_destroy(rt);
}

#if PRT_FAULT_INJECTION
/*
 * A post needs no lock while nobody is queued, and a post that lands
 * between a waiter's last look at the value and its queueing is the
 * waiter's. The pause point PRT_PAUSE_SEM_COUNT holds the waiter there
 * (inside s->lock, the value 0, not yet counted) while this thread
 * posts: the post returns at once, the waiter's count fails, and it
 * takes the unit instead of sleeping (queued, it would sleep with the
 * unit in the value: its 2 s wait would time out). Once with a plain
 * thread, once with a fiber.
 */
static struct {
	prt_sem_t s;
	atomic_int in_window, posted, saw_post;
	int err;
} pc_;

static void pc_pause(void *arg)
{
	(void)arg;
	atomic_store(&pc_.in_window, 1);
	atomic_store(&pc_.saw_post, test_await_flag(&pc_.posted, 5000000000ull));
}

static void *pc_wait(void *arg)
{
	(void)arg;
	pc_.err = prt_sem_timedwait_ns(&pc_.s, 2000000000); /* 2 s */
	return NULL;
}

static void post_while_counting(prt_runtime_t *rt)
{
	prt_fiber_t f = { 0 };
	pthread_t t;
	int v;

	memset(&pc_, 0, sizeof(pc_));
	assert_int_equal(prt_sem_init(&pc_.s, 0), 0);
	prt__fault_set_pause(PRT_PAUSE_SEM_COUNT, pc_pause, NULL);
	if (rt)
		f = test_spawn(rt, PRT_PRIO_DEFAULT, -1, pc_wait, NULL);
	else
		assert_int_equal(pthread_create(&t, NULL, pc_wait, NULL), 0);
	assert_true(test_await_flag(&pc_.in_window, 5000000000ull));
	assert_int_equal(prt_sem_post(&pc_.s), 0); /* the waiter holds s->lock: no lock here */
	atomic_store(&pc_.posted, 1);
	if (rt)
		assert_int_equal(prt_join(f, NULL), 0);
	else
		pthread_join(t, NULL);
	prt__fault_set_pause(PRT_PAUSE_SEM_COUNT, NULL, NULL);
	assert_true(atomic_load(&pc_.saw_post)); /* posted inside the window */
	assert_int_equal(pc_.err, 0);            /* the unit was the waiter's */
	assert_int_equal(prt_sem_getvalue(&pc_.s, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(prt_sem_destroy(&pc_.s), 0); /* nobody counted as waiting */
}

static void test_post_while_counting(void **state)
{
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	post_while_counting(NULL);
	post_while_counting(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A waiter whose wait ends (its deadline) after a post took its record
 * off the list has the post's unit, its wake on the way, and never
 * touches the semaphore again: the poster may destroy it (0: nobody
 * waits on it any more) and unmap it once its post is done. The pause
 * points hold the poster between its unlock and its wake
 * (PRT_PAUSE_SEM_HANDED) and the waiter, timed out, before it leaves
 * (PRT_PAUSE_SEM_GIVE_UP); the poster destroys the semaphore and takes
 * its page away (PROT_NONE) in between. Before, the waiter took the
 * semaphore's lock to find out whether it was still queued, on a
 * destroyed semaphore (a review), and here died of SIGSEGV.
 */
static int gs_init(void *o)
{
	return prt_sem_init(o, 0);
}

static int gs_wait(void *o)
{
	return prt_sem_timedwait_ns(o, 20000000);
}

static int gs_post(void *o)
{
	return prt_sem_post(o);
}

static int gs_destroy(void *o)
{
	return prt_sem_destroy(o);
}

static void test_timeout_after_handoff(void **state)
{
	static const struct gone_ops ops = { gs_init, gs_wait, gs_post, gs_destroy };
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	gone_after_wake(rt, &ops, PRT_PAUSE_SEM_HANDED, PRT_PAUSE_SEM_GIVE_UP);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A waiter whose wait ended (its deadline) and that claimed its record
 * is passed over: a post then, with nobody else queued, adds its unit to
 * the value (it must not hand it to the leaving waiter, which returns
 * ETIMEDOUT without it, nor lose it), and a destroy says EBUSY until the
 * waiter is off the list. PRT_PAUSE_SEM_LEAVING holds the waiter between
 * its claim and its taking the record off.
 */
static struct {
	prt_sem_t s;
	atomic_int leaving, go;
	int err;
} lv;

static void lv_leaving(void *arg)
{
	(void)arg;
	atomic_store(&lv.leaving, 1);
	test_await_flag(&lv.go, 5000000000ull);
}

static void *lv_wait(void *arg)
{
	(void)arg;
	lv.err = prt_sem_timedwait_ns(&lv.s, 5000000); /* 5 ms */
	return NULL;
}

static void test_post_to_leaving_waiter(void **state)
{
	pthread_t t;
	int v;

	(void)state;
	memset(&lv, 0, sizeof(lv));
	assert_int_equal(prt_sem_init(&lv.s, 0), 0);
	prt__fault_set_pause(PRT_PAUSE_SEM_LEAVING, lv_leaving, NULL);
	assert_int_equal(pthread_create(&t, NULL, lv_wait, NULL), 0);
	assert_true(test_await_flag(&lv.leaving, 5000000000ull));
	assert_int_equal(prt_sem_post(&lv.s), 0);     /* nobody to hand it to */
	assert_int_equal(prt_sem_destroy(&lv.s), EBUSY); /* the leaver is still on the list */
	atomic_store(&lv.go, 1);
	pthread_join(t, NULL);
	prt__fault_set_pause(PRT_PAUSE_SEM_LEAVING, NULL, NULL);
	assert_int_equal(lv.err, ETIMEDOUT);
	assert_int_equal(prt_sem_getvalue(&lv.s, &v), 0);
	assert_int_equal(v, 1); /* the post's unit */
	assert_int_equal(prt_sem_trywait(&lv.s), 0);
	assert_int_equal(prt_sem_destroy(&lv.s), 0);
}
#endif

/*
 * The public type's size and alignment are the ABI of libproxyrt.so.0:
 * a program built against earlier headers lays its structs out so. (A
 * 16-byte alignment, tried to keep the semaphore's hot words on one cache
 * line, moved members of such structs, and clang compiled the library's
 * zeroing of the object as 16-byte aligned stores, which crashed on an
 * object an old program placed 8 bytes off: a review.)
 */
static void test_layout(void **state)
{
	(void)state;
	TEST_ABI_LAYOUT(prt_sem_t, 32);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_counting),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_priority_order),
		cmocka_unit_test(test_mixed_conservation),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_timeout_vs_post),
#if PRT_FAULT_INJECTION
		cmocka_unit_test(test_post_while_counting),
		cmocka_unit_test(test_timeout_after_handoff),
		cmocka_unit_test(test_post_to_leaving_waiter),
#endif
	};

	if (test_under_valgrind())
		ITEMS = 2000, RACES = 300;
	else if (PRT_TEST_TSAN)
		RACES = 1000;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
