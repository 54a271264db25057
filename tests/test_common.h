/* SPDX-License-Identifier: MIT */
/* Shared helpers of the cmocka tests. */
#ifndef PRT_TEST_COMMON_H
#define PRT_TEST_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <proxyrt/proxyrt.h>

/*
 * $PRT_TEST_FILTER: run only the tests whose names match it (cmocka's
 * pattern, '*' and '?'), for running one test of a binary many times.
 */
__attribute__((constructor)) static void test_filter_from_env(void)
{
	const char *f = getenv("PRT_TEST_FILTER");

	if (f && *f)
		cmocka_set_test_filter(f);
}

/* ThreadSanitizer build? (Each fiber then costs TSan ~300 KiB of state.) */
#if defined(__SANITIZE_THREAD__)
#define PRT_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PRT_TEST_TSAN 1
#endif
#endif
#ifndef PRT_TEST_TSAN
#define PRT_TEST_TSAN 0
#endif

/*
 * prt_runtime_create(@rt, @cfg) with $PRT_PREEMPT_QUANTUM_NS (which
 * overrides cfg.preempt_quantum_ns) unset for the call, for a test that
 * sets its own quantum; put back after it, so that the binary's later
 * tests still run with the quantum of the suite's lane (scripts/test.sh).
 */
static inline int test_create_own_quantum(prt_runtime_t **rt, const prt_runtime_config_t *cfg)
{
	const char *v = getenv("PRT_PREEMPT_QUANTUM_NS");
	char *saved = v ? strdup(v) : NULL;
	int err;

	unsetenv("PRT_PREEMPT_QUANTUM_NS");
	err = prt_runtime_create(rt, cfg);
	if (saved) {
		setenv("PRT_PREEMPT_QUANTUM_NS", saved, 1);
		free(saved);
	}
	return err;
}

/* A runtime of @nworkers with @flags, stacks of @stack_kind, I/O on @io_backend; asserts. */
static inline prt_runtime_t *test_rt_with(int nworkers, unsigned flags, int stack_kind,
					  int io_backend)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.flags = flags;
	cfg.stack_kind = stack_kind;
	cfg.io_backend = io_backend;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	return rt;
}

static inline prt_runtime_t *test_rt_flags(int nworkers, unsigned flags)
{
	return test_rt_with(nworkers, flags, PRT_STACK_GUARD, PRT_IO_AUTO);
}

static inline prt_runtime_t *test_rt(int nworkers)
{
	return test_rt_flags(nworkers, 0);
}

/*
 * A public type keeps the size and the 8-byte alignment of the ABI of
 * libproxyrt.so.0 (a program built against earlier headers lays its
 * structs out so): also as a member after a char.
 */
#define TEST_ABI_LAYOUT(type, size)                                                  \
	do {                                                                         \
		struct abi_after_char {                                              \
			char c;                                                      \
			type o;                                                      \
		};                                                                   \
		assert_int_equal(sizeof(type), (size));                              \
		assert_int_equal(_Alignof(type), _Alignof(uint64_t));                \
		assert_int_equal(offsetof(struct abi_after_char, o), _Alignof(uint64_t)); \
	} while (0)

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t test_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The CLOCK_REALTIME deadline @ns from now (timedlock and timedwait take those). */
static inline struct timespec test_realtime_in(long ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += ns;
	while (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/*
 * Does ASan give each stack a fake stack (ASAN_OPTIONS=
 * detect_stack_use_after_return=1)? Each live fiber then maps one of
 * its own: tests that keep thousands alive keep fewer.
 */
extern int __asan_option_detect_stack_use_after_return __attribute__((weak));
static inline int test_fake_stacks(void)
{
	return &__asan_option_detect_stack_use_after_return &&
	       __asan_option_detect_stack_use_after_return;
}

/* Running under valgrind? (Only known where its header is installed.) */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define PRT_TEST_HAVE_VALGRIND_H 1
#endif
#endif
static inline int test_under_valgrind(void)
{
#ifdef PRT_TEST_HAVE_VALGRIND_H
	return RUNNING_ON_VALGRIND != 0;
#else
	return 0;
#endif
}

/*
 * One round of a plain thread's busy loop (a wait for a flag, or calls
 * that hammer a runtime): nothing natively, sched_yield under valgrind.
 * Valgrind runs one thread at a time: a thread spinning without a system
 * call keeps the others from running for its whole time slice, and with
 * valgrind's default unfair hand-over for minutes (test_sem took
 * 10-187 s, test_lifetime 28-420 s).
 */
static inline void test_spin_pause(void)
{
	if (test_under_valgrind())
		sched_yield();
}

/*
 * One round of a fiber's busy wait for another thread or fiber:
 * prt_yield (its worker stays busy), and under valgrind a sched_yield
 * too. Valgrind runs one thread at a time and switches every 100000
 * basic blocks of the running one. A loop of prt_yield alone has a fixed
 * length in blocks and holds its run queue's lock in part of each round,
 * so it can be stopped inside that lock at every switch: a thread that
 * must take the lock (a spawn or a wakeup onto that worker) then never
 * gets it (test_rwlock's spawn next to such a loop hung 17+ minutes,
 * twice). The system call hands valgrind's lock over with the run queue
 * free.
 */
static inline void test_yield_wait(void)
{
	prt_yield();
	if (test_under_valgrind())
		sched_yield();
}

/*
 * A plain thread's (or a pause hook's) wait for another thread to set
 * @flag: sched_yield until it is set or @ns have passed. Returns whether
 * it was set.
 */
static inline bool test_await_flag(atomic_int *flag, uint64_t ns)
{
	uint64_t cap = test_mono_ns() + ns;

	while (!atomic_load(flag) && test_mono_ns() < cap)
		sched_yield();
	return atomic_load(flag);
}

/*
 * Whether @prog's io_uring group runs: io_uring is allowed here and we
 * are not under valgrind (3.19 keeps its big lock across io_uring_enter,
 * so nothing else would run). Says which on stderr.
 */
static inline int test_uring_usable(const char *prog)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.io_backend = PRT_IO_URING;
	if (test_under_valgrind()) {
		fprintf(stderr, "%s: under valgrind: epoll backend only\n", prog);
		return 0;
	}
	if (prt_runtime_create(&rt, &cfg) != 0) {
		fprintf(stderr, "%s: io_uring refused here: epoll backend only\n", prog);
		return 0;
	}
	prt_runtime_destroy(rt);
	fprintf(stderr, "%s: io_uring backend\n", prog);
	return 1;
}

/* Fiber attributes: priority @prio, kept on @worker (-1: anywhere). */
static inline prt_fiber_attr_t test_attr(int prio, int worker)
{
	prt_fiber_attr_t a;

	prt_fiber_attr_init(&a);
	a.priority = prio;
	if (worker >= 0) {
		a.has_affinity = 1;
		prt_workerset_zero(&a.affinity);
		prt_workerset_add(&a.affinity, worker);
	}
	return a;
}

/* Spawn @fn(@arg) with priority @prio, kept on @worker (-1: anywhere); aborts on failure. */
static inline prt_fiber_t test_spawn(prt_runtime_t *rt, int prio, int worker, void *(*fn)(void *),
				     void *arg)
{
	prt_fiber_attr_t a = test_attr(prio, worker);
	prt_fiber_t f;

	if (prt_spawn(rt, &f, &a, fn, arg) != 0)
		abort();
	return f;
}

/* A fiber body that returns its argument. */
static inline void *test_noop(void *arg)
{
	return arg;
}

/* Run @fn(@arg) as a fiber of @rt with priority @prio and wait for it. */
static inline void *test_run_in(prt_runtime_t *rt, int prio, void *(*fn)(void *), void *arg)
{
	prt_fiber_attr_t a;
	prt_fiber_t f;
	void *res = NULL;

	prt_fiber_attr_init(&a);
	a.priority = prio;
	assert_int_equal(prt_spawn(rt, &f, &a, fn, arg), 0);
	assert_int_equal(prt_join(f, &res), 0);
	return res;
}

/* cmocka's assert_* inside fibers longjmp across stacks: check, then report outside. */
#define FIBER_CHECK(cond)                                                              \
	do {                                                                           \
		if (!(cond)) {                                                         \
			fprintf(stderr, "%s:%d: fiber check failed: %s\n", __FILE__,   \
				__LINE__, #cond);                                      \
			return (void *)(intptr_t)__LINE__;                             \
		}                                                                      \
	} while (0)

/*
 * After a stress run, before destroying @rt: print whether it preempted
 * and how often (stderr). With PRT_STRESS_REQUIRE_PREEMPT=1 in the
 * environment (scripts/test.sh sets it where it forces a quantum), the
 * runtime must be preemptive and its handler must have taken interrupts;
 * with @must_preempt, at least one must have stopped a fiber (a run long
 * enough that one surely does: under ThreadSanitizer nearly every
 * interrupt finds the fiber in the library or the sanitizer's runtime,
 * and is deferred).
 */
static inline void test_stress_preempt_report(prt_runtime_t *rt, const char *label,
					      int must_preempt)
{
	const char *req = getenv("PRT_STRESS_REQUIRE_PREEMPT");
	uint64_t q = 0, n = 0, deferred = 0;
	int on = prt_runtime_preemptive(rt, &q);

	for (int i = 0; i < prt_runtime_nworkers(rt); i++) {
		prt_worker_stats_t st;

		assert_int_equal(prt_worker_stats(rt, i, &st), 0);
		n += st.preemptions;
		deferred += st.preempt_deferred;
	}
	fprintf(stderr, "%s: preemptive=%d quantum_ns=%llu preemptions=%llu deferred=%llu\n", label,
		on, (unsigned long long)q, (unsigned long long)n, (unsigned long long)deferred);
	if (req && !strcmp(req, "1")) {
		assert_int_equal(on, 1);
		assert_true(n + deferred > 0);
		if (must_preempt)
			assert_true(n > 0);
	}
}

/*
 * Read and write errno afresh: __errno_location() is a const function,
 * and the compiler may keep its result across a call, after which a
 * fiber may run on another thread (README, "Errors").
 */
static __attribute__((noinline, unused)) int test_errno_get(void)
{
	__asm__ __volatile__("" ::: "memory");
	return errno;
}

static __attribute__((noinline, unused)) void test_errno_set(int e)
{
	__asm__ __volatile__("" ::: "memory");
	errno = e;
}

#endif
