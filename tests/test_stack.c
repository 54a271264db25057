/* SPDX-License-Identifier: MIT */
/*
 * Fiber stacks (lib/stack.c): sizes, the per-worker pools and the depot,
 * guard pages, canary stacks carved from slabs, and that destroy gives
 * every stack back to the system and unmaps nothing else (pages of the
 * test's own placed right below the stacks must survive it).
 *
 * Faults and aborts are provoked in forked children, forked while this
 * process has no runtime (so no other thread), with the default signal
 * dispositions restored: cmocka (and ASan) catch SIGSEGV otherwise.
 *
 * The descriptor (struct prt__fiber, lib/fiber_int.h) is read for the stack
 * range of a live fiber; the pools (lib/stack.h) are read only once all
 * the runtime's fibers are joined and its workers idle.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <alloca.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <proxyrt/proxyrt.h>
#include "test_common.h"
#include "runtime_int.h"

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

static prt_runtime_t *make_rt_decay(int nworkers, int kind, size_t stack_size, unsigned pool_max,
				     uint64_t decay)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = NULL;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.stack_kind = kind;
	cfg.stack_size = stack_size;
	cfg.stack_pool_max = pool_max;
	cfg.stack_decay_ns = decay;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	assert_non_null(rt);
	return rt;
}

static prt_runtime_t *make_rt(int nworkers, int kind, size_t stack_size, unsigned pool_max)
{
	return make_rt_decay(nworkers, kind, stack_size, pool_max, PRT_STACK_DECAY_DEFAULT);
}

/* What a fiber saw of its own stack. */
struct stk {
	void *base;
	size_t size;
	unsigned flags;
	void *frame;
	void *ctx; /* the test's, for the fiber */
	uint64_t seen; /* mark_body: the word at base + 64 when it began */
};

static void *rec_stack(void *arg)
{
	struct stk *s = arg;
	struct prt__fiber *self = prt_self().p;

	FIBER_CHECK(self != NULL);
	s->base = self->stack.base;
	s->size = self->stack.size;
	s->flags = self->stack.flags;
	s->frame = __builtin_frame_address(0);
	return NULL;
}

/* Wait for a unit of the semaphore @sem. */
static void *wait_sem_body(void *sem)
{
	FIBER_CHECK(prt_sem_wait(sem) == 0);
	return NULL;
}

static int in_stack(const struct stk *s, const void *p)
{
	return (const char *)p >= (const char *)s->base &&
	       (const char *)p < (const char *)s->base + s->size;
}

/* 1 if the page holding @p is mapped (with any protection). */
static int page_mapped(const void *p)
{
	unsigned char v;
	void *pg = (void *)((uintptr_t)p & ~(uintptr_t)(page() - 1));

	return mincore(pg, page(), &v) == 0;
}

static int maps_lines(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int c, n = 0;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* ---- pool reuse ---------------------------------------------------------- */

struct reuse {
	prt_runtime_t *rt;
	struct stk a, b;
};

static void *reuse_driver(void *arg)
{
	struct reuse *r = arg;
	prt_fiber_t f;

	FIBER_CHECK(prt_spawn(r->rt, &f, NULL, rec_stack, &r->a) == 0);
	FIBER_CHECK(prt_join(f, NULL) == 0);
	FIBER_CHECK(prt_spawn(r->rt, &f, NULL, rec_stack, &r->b) == 0);
	FIBER_CHECK(prt_join(f, NULL) == 0);
	return NULL;
}

/* A dead fiber's stack is the next one a spawn on that worker gets (LIFO, no mmap). */
static void test_pool_reuse_lifo(void **state)
{
	prt_runtime_t *rt = make_rt(1, PRT_STACK_GUARD, 0, 0);
	struct reuse r = { .rt = rt };

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, reuse_driver, &r));
	assert_non_null(r.a.base);
	assert_ptr_equal(r.a.base, r.b.base);
	assert_int_equal(r.a.size, PRT_STACK_SIZE_DEFAULT);
	assert_int_equal(r.b.size, PRT_STACK_SIZE_DEFAULT);
	assert_true(in_stack(&r.a, r.a.frame));
	assert_true(in_stack(&r.b, r.b.frame));
	assert_true(r.a.flags & PRT_STK_POOLED);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

#define BATCH 1000
#define NBATCH 3

struct many {
	prt_runtime_t *rt;
	struct stk s[NBATCH * BATCH];
	prt_fiber_t f[BATCH];
};

static void *many_driver(void *arg)
{
	struct many *m = arg;

	for (int b = 0; b < NBATCH; b++) {
		/* All BATCH alive at once: no time slice may run (and end) one meanwhile. */
		FIBER_CHECK(prt_preempt_disable() == 0);
		for (int i = 0; i < BATCH; i++)
			FIBER_CHECK(prt_spawn(m->rt, &m->f[i], NULL, rec_stack, &m->s[b * BATCH + i]) == 0);
		FIBER_CHECK(prt_preempt_enable() == 0);
		for (int i = 0; i < BATCH; i++)
			FIBER_CHECK(prt_join(m->f[i], NULL) == 0);
	}
	return NULL;
}

static int cmp_ptr(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* 3000 fibers, 1000 alive at a time: at most ~1000 stacks ever made. */
static void test_pool_reuse_many(void **state)
{
	prt_runtime_t *rt = make_rt(1, PRT_STACK_GUARD, 0, 0);
	struct many *m = calloc(1, sizeof(*m));
	void **bases = calloc(NBATCH * BATCH, sizeof(*bases));
	int distinct = 0;

	(void)state;
	assert_non_null(m);
	assert_non_null(bases);
	m->rt = rt;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, many_driver, m));
	for (int i = 0; i < NBATCH * BATCH; i++) {
		assert_non_null(m->s[i].base);
		assert_true(in_stack(&m->s[i], m->s[i].frame));
		bases[i] = m->s[i].base;
	}
	qsort(bases, NBATCH * BATCH, sizeof(*bases), cmp_ptr);
	for (int i = 0; i < NBATCH * BATCH; i++)
		distinct += i == 0 || bases[i] != bases[i - 1];
	assert_true(distinct >= BATCH); /* 1000 alive at once */
	assert_true(distinct <= BATCH + 16);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(bases);
	free(m);
}

/* ---- sizes --------------------------------------------------------------- */

static struct stk spawn_rec(prt_runtime_t *rt, size_t stack_size)
{
	prt_fiber_attr_t a;
	prt_fiber_t f;
	struct stk s = { 0 };
	void *res = (void *)1;

	prt_fiber_attr_init(&a);
	a.stack_size = stack_size;
	assert_int_equal(prt_spawn(rt, &f, &a, rec_stack, &s), 0);
	assert_int_equal(prt_join(f, &res), 0);
	assert_null(res);
	assert_non_null(s.base);
	assert_true(in_stack(&s, s.frame));
	assert_int_equal((uintptr_t)s.base % page(), 0);
	assert_int_equal(s.size % page(), 0);
	return s;
}

static void test_stack_sizes(void **state)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = make_rt(2, PRT_STACK_GUARD, 0, 0), *bad = NULL;
	prt_fiber_attr_t a;
	prt_fiber_t f;
	struct stk s;

	(void)state;
	s = spawn_rec(rt, 0);
	assert_int_equal(s.size, PRT_STACK_SIZE_DEFAULT);
	s = spawn_rec(rt, PRT_STACK_SIZE_DEFAULT);
	assert_int_equal(s.size, PRT_STACK_SIZE_DEFAULT);
	s = spawn_rec(rt, 100000);
	assert_true(s.size >= 100000 && s.size < 100000 + page());
	s = spawn_rec(rt, PRT_STACK_SIZE_MIN);
	assert_int_equal(s.size, PRT_STACK_SIZE_MIN);
	s = spawn_rec(rt, 1u << 20);
	assert_int_equal(s.size, 1u << 20);

	prt_fiber_attr_init(&a);
	a.stack_size = PRT_STACK_SIZE_MIN - 1;
	f.p = (void *)0x1;
	assert_int_equal(prt_spawn(rt, &f, &a, rec_stack, &s), -EINVAL);
	a.stack_size = 1;
	assert_int_equal(prt_spawn(rt, &f, &a, rec_stack, &s), -EINVAL);
	/* Nothing was created: destroy does not wait for a phantom fiber. */
	assert_int_equal(prt_runtime_destroy(rt), 0);

	prt_runtime_config_init(&cfg);
	cfg.stack_size = PRT_STACK_SIZE_MIN - 1;
	assert_int_equal(prt_runtime_create(&bad, &cfg), -EINVAL);
	assert_null(bad);
	cfg.stack_size = 4096;
	assert_int_equal(prt_runtime_create(&bad, &cfg), -EINVAL);
	assert_null(bad);

	/* A runtime default that is not a page multiple is rounded up. */
	rt = make_rt(1, PRT_STACK_GUARD, 100000, 0);
	s = spawn_rec(rt, 0);
	assert_true(s.size >= 100000 && s.size < 100000 + page());
	assert_int_equal(s.size, rt->stack_size);
	assert_int_equal(prt_runtime_destroy(rt), 0);

	rt = make_rt(1, PRT_STACK_CANARY, PRT_STACK_SIZE_MIN, 0);
	s = spawn_rec(rt, 0);
	assert_int_equal(s.size, PRT_STACK_SIZE_MIN);
	assert_true(s.flags & PRT_STK_CANARY);
	s = spawn_rec(rt, 100000);
	assert_true(s.size >= 100000 && s.size < 100000 + page());
	assert_true(s.flags & PRT_STK_CANARY);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- children that must die ---------------------------------------------- */

static void child_setup(void)
{
	struct rlimit no_core = { 0, 0 };

	setrlimit(RLIMIT_CORE, &no_core);
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGILL, SIG_DFL);
	signal(SIGFPE, SIG_DFL);
	signal(SIGABRT, SIG_DFL);
}

/*
 * Fork; the child runs @fn(@arg) and, should it survive, exits 0. Returns
 * the child's wait status. With @err, the child's stderr is read into it.
 */
static int run_child(void (*fn)(void *), void *arg, char *err, size_t errlen)
{
	int pfd[2] = { -1, -1 }, status = 0;
	size_t got = 0;
	pid_t pid;

	if (err) {
		assert_int_equal(pipe(pfd), 0);
		err[0] = '\0';
	}
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_setup();
		if (err) {
			dup2(pfd[1], STDERR_FILENO);
			close(pfd[0]);
			close(pfd[1]);
		}
		fn(arg);
		_exit(0);
	}
	if (err) {
		char sink[256];
		ssize_t n;

		close(pfd[1]);
		while (got < errlen - 1 && (n = read(pfd[0], err + got, errlen - 1 - got)) > 0)
			got += (size_t)n;
		err[got] = '\0';
		while (read(pfd[0], sink, sizeof(sink)) > 0) /* drain: the child must not block */
			;
		close(pfd[0]);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void die_unless(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "child: %s failed\n", what);
		_exit(3);
	}
}

/* Run one fiber of @fn in a new runtime of the child; returns only if it ended. */
static void child_run_fiber(int kind, void *(*fn)(void *), const char *name)
{
	prt_runtime_t *rt = NULL;
	prt_runtime_config_t cfg;
	prt_fiber_attr_t a;
	prt_fiber_t f;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.stack_kind = kind;
	die_unless(prt_runtime_create(&rt, &cfg) == 0, "prt_runtime_create");
	prt_fiber_attr_init(&a);
	a.name = name;
	die_unless(prt_spawn(rt, &f, &a, fn, NULL) == 0, "prt_spawn");
	die_unless(prt_join(f, NULL) == 0, "prt_join");
	prt_runtime_destroy(rt);
}

static void *poke_below_base(void *arg)
{
	volatile char *p = (char *)prt_self().p->stack.base - 1;

	(void)arg;
	*p = 1;
	return NULL;
}

static void child_guard_poke(void *arg)
{
	(void)arg;
	child_run_fiber(PRT_STACK_GUARD, poke_below_base, "poke");
}

/*
 * The child died of SIGABRT after the overflow report naming fiber @id
 * "@name" and its @size-byte stack.
 */
static void assert_overflow_report(int st, const char *err, unsigned long long id,
				   const char *name, size_t size, const char *how)
{
	char want[256];

	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
		fprintf(stderr, "child status %#x, stderr:\n%s\n", st, err);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGABRT);
	snprintf(want, sizeof(want), "proxyrt: fiber %llu \"%s\" overflowed its %zu-byte stack (%s",
		 id, name, size, how);
	if (!strstr(err, want))
		fprintf(stderr, "want \"%s\" in:\n%s\n", want, err);
	assert_non_null(strstr(err, want));
}

static void test_guard_page_faults(void **state)
{
	char err[4096];
	int st;

	(void)state;
	st = run_child(child_guard_poke, NULL, err, sizeof(err));
	assert_overflow_report(st, err, 1, "poke", PRT_STACK_SIZE_DEFAULT, "guard page hit");
}

static volatile char *inaccessible_page;

/*
 * A store to a page of the test's own, mapped PROT_NONE: a well-defined
 * SIGSEGV (a NULL dereference would be undefined behaviour, which UBSan
 * with halt_on_error=1 stops before it faults).
 */
static void *bad_store(void *arg)
{
	(void)arg;
	*inaccessible_page = 1;
	return NULL;
}

static void child_bad_store(void *arg)
{
	void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)arg;
	die_unless(p != MAP_FAILED, "mmap");
	inaccessible_page = p;
	child_run_fiber(PRT_STACK_GUARD, bad_store, "badstore");
}

/* A fault that is no overflow goes to the disposition before (here the default). */
static void test_other_fault_not_overflow(void **state)
{
	char err[4096];
	int st;

	(void)state;
	st = run_child(child_bad_store, NULL, err, sizeof(err));
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGSEGV);
	assert_null(strstr(err, "overflowed"));
}

/* Never reached; keeps the recursion formally bounded (-Winfinite-recursion). */
static volatile int recurse_limit = INT_MAX;

__attribute__((noinline)) static int recurse(volatile char *prev, int depth)
{
	volatile char buf[1024];

	buf[0] = (char)(prev[0] + 1);
	buf[sizeof(buf) - 1] = buf[0];
	if (depth >= recurse_limit)
		return buf[0];
	/* @buf is passed down: the frame stays, no tail call. */
	return recurse(buf, depth + 1) + buf[sizeof(buf) - 1];
}

static void *recurse_forever(void *arg)
{
	volatile char seed = 0;

	(void)arg;
	return (void *)(intptr_t)recurse(&seed, 0);
}

static void child_guard_recurse(void *arg)
{
	(void)arg;
	child_run_fiber(PRT_STACK_GUARD, recurse_forever, "recurse");
}

static void test_guard_overflow_faults(void **state)
{
	char err[4096];
	int st;

	(void)state;
	st = run_child(child_guard_recurse, NULL, err, sizeof(err));
	assert_overflow_report(st, err, 1, "recurse", PRT_STACK_SIZE_DEFAULT, "guard page hit");
}

static void *buddy_noop(void *arg)
{
	return arg;
}

/* A stack size of the fiber's own is the one reported. */
static void child_guard_recurse_big(void *arg)
{
	prt_runtime_t *rt = NULL;
	prt_runtime_config_t cfg;
	prt_fiber_attr_t a;
	prt_fiber_t f;

	(void)arg;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 2;
	die_unless(prt_runtime_create(&rt, &cfg) == 0, "prt_runtime_create");
	prt_fiber_attr_init(&a);
	a.name = "deep";
	a.stack_size = 256 * 1024;
	/* A first fiber, so that the one that overflows is not id 1. */
	die_unless(prt_spawn(rt, &f, NULL, buddy_noop, NULL) == 0, "prt_spawn");
	die_unless(prt_join(f, NULL) == 0, "prt_join");
	die_unless(prt_spawn(rt, &f, &a, recurse_forever, NULL) == 0, "prt_spawn");
	die_unless(prt_join(f, NULL) == 0, "prt_join");
}

static void test_guard_overflow_own_size(void **state)
{
	char err[4096];
	int st;

	(void)state;
	st = run_child(child_guard_recurse_big, NULL, err, sizeof(err));
	assert_overflow_report(st, err, 2, "deep", 256 * 1024, "guard page hit");
}

/* ---- canary stacks -------------------------------------------------------- */

static void *canary_worker(void *arg)
{
	struct stk *s = arg;
	void *r = rec_stack(s);

	FIBER_CHECK(r == NULL);
	for (int i = 0; i < 10; i++)
		prt_yield();
	FIBER_CHECK(prt_self().p->stack.base == s->base);
	return arg;
}

struct canary_run {
	prt_runtime_t *rt;
	struct stk s[64];
};

static void *canary_driver(void *arg)
{
	struct canary_run *c = arg;
	prt_fiber_t f[64];
	void *res;

	for (int i = 0; i < 64; i++)
		FIBER_CHECK(prt_spawn(c->rt, &f[i], NULL, canary_worker, &c->s[i]) == 0);
	for (int i = 0; i < 64; i++) {
		FIBER_CHECK(prt_join(f[i], &res) == 0);
		FIBER_CHECK(res == &c->s[i]);
	}
	return NULL;
}

static void test_canary_run_join(void **state)
{
	prt_runtime_t *rt = make_rt(2, PRT_STACK_CANARY, 0, 0);
	struct canary_run *c = calloc(1, sizeof(*c));
	prt_fiber_t f[64];
	void *res;

	(void)state;
	assert_non_null(c);
	c->rt = rt;
	/* From a plain thread. */
	for (int i = 0; i < 64; i++)
		assert_int_equal(prt_spawn(rt, &f[i], NULL, canary_worker, &c->s[i]), 0);
	for (int i = 0; i < 64; i++) {
		assert_int_equal(prt_join(f[i], &res), 0);
		assert_ptr_equal(res, &c->s[i]);
		assert_true(c->s[i].flags & PRT_STK_CANARY);
		assert_int_equal(c->s[i].size, PRT_STACK_SIZE_DEFAULT);
		assert_true(in_stack(&c->s[i], c->s[i].frame));
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);

	/* From a fiber of a fresh runtime (empty pools): carved from the worker's slabs. */
	rt = make_rt(2, PRT_STACK_CANARY, 0, 0);
	c->rt = rt;
	memset(c->s, 0, sizeof(c->s));
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, canary_driver, c));
	for (int i = 0; i < 64; i++) {
		assert_true(c->s[i].flags & PRT_STK_CANARY);
		assert_true(c->s[i].flags & PRT_STK_SLAB);
		assert_int_equal(c->s[i].size, PRT_STACK_SIZE_DEFAULT);
		assert_true(in_stack(&c->s[i], c->s[i].frame));
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(c);
}

#define VICTIM "canary-victim-42"

static void *buddy(void *arg)
{
	(void)arg;
	for (int i = 0; i < 100; i++)
		prt_yield();
	return NULL;
}

/*
 * Spawn a fiber behind us (so that a yield really switches away) into
 * @b, then overwrite our own canary. False if the spawn failed.
 */
static bool smash_own_canary(prt_fiber_t *b)
{
	volatile unsigned char *base = prt_self().p->stack.base;

	if (prt_spawn(prt_runtime_self(), b, NULL, buddy, NULL) != 0)
		return false;
	for (int i = 0; i < PRT_CANARY_BYTES; i++)
		base[i] = 0xa5;
	return true;
}

static void *smash_canary(void *arg)
{
	prt_fiber_t b;

	(void)arg;
	if (!smash_own_canary(&b))
		return NULL;
	prt_yield();
	prt_join(b, NULL);
	return NULL;
}

static void child_canary_smash(void *arg)
{
	(void)arg;
	child_run_fiber(PRT_STACK_CANARY, smash_canary, VICTIM);
}

/*
 * The canary is read at a switch while the fiber runs near its stack's
 * bottom (PRT_CANARY_READ_SPAN), and at its end. Deep: smash it, take
 * the stack pointer to 3.9 KB above the bottom and yield there: the yield
 * must report it (the fiber exits the process with status 3 if it
 * comes back). The smash at a shallow depth above is reported when
 * that fiber ends (its yield does not read the canary's page).
 */
static __attribute__((noinline)) void yield_here(void)
{
	prt_yield();
	fprintf(stderr, "canary smash not reported at a deep switch\n");
	_exit(3);
}

static void *smash_canary_deep(void *arg)
{
	unsigned char here;
	size_t above = (size_t)(&here - (unsigned char *)prt_self().p->stack.base);
	prt_fiber_t b;

	(void)arg;
	if (!smash_own_canary(&b))
		return NULL;
	{
		/*
		 * Down to ~3.9 KB above the bottom: the yield's own frames (large
		 * in an unoptimised ASan build) must still fit above the bottom.
		 */
		volatile char *pad = alloca(above - 3900);

		pad[0] = 1;
		yield_here();
	}
	return NULL;
}

static void child_canary_smash_deep(void *arg)
{
	(void)arg;
	child_run_fiber(PRT_STACK_CANARY, smash_canary_deep, VICTIM);
}

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifndef TEST_ASAN
#define TEST_ASAN 0
#endif

/* Recurses until its frame is a little below @bottom, then switches away. */
__attribute__((noinline)) static int recurse_below(volatile char *prev, uintptr_t bottom)
{
	volatile char buf[1024];

	buf[0] = (char)(prev[0] + 1);
	buf[sizeof(buf) - 1] = buf[0];
	/* The real frame: under ASan @buf may live on a fake stack (heap). */
	if ((uintptr_t)__builtin_frame_address(0) + 256 < bottom) {
		prt_sleep_ns(2 * 1000 * 1000); /* a switch (a yield need not): its check; not reached if the frame faulted */
		return buf[0];
	}
	return recurse_below(buf, bottom) + buf[sizeof(buf) - 1];
}

static void *recurse_past_bottom(void *arg)
{
	volatile char seed = 0;

	(void)arg;
	return (void *)(intptr_t)recurse_below(&seed, (uintptr_t)prt_self().p->stack.base);
}

static prt_sem_t below_go;

/*
 * The recursing fiber on the second stack of a slab: the first, right
 * below it, holds a parked fiber's frames at its top, which the
 * recursion overwrites. What lies below a stack mapped alone is
 * whatever the process mapped next; under TSan that may be its own
 * state for the fiber, and the recursion then crashed TSan instead (a
 * SIGSEGV with no report, 1 run in 30).
 */
static void *recurse_above_neighbour(void *arg)
{
	prt_fiber_attr_t a;
	prt_fiber_t b, f;

	(void)arg;
	FIBER_CHECK(prt_sem_init(&below_go, 0) == 0);
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &b, NULL, wait_sem_body, &below_go) == 0);
	prt_fiber_attr_init(&a);
	a.name = "recurse";
	FIBER_CHECK(prt_spawn(prt_runtime_self(), &f, &a, recurse_past_bottom, NULL) == 0);
	FIBER_CHECK((char *)f.p->stack.base == (char *)b.p->stack.base + b.p->stack.size);
	FIBER_CHECK(prt_join(f, NULL) == 0);
	return NULL;
}

static void child_canary_recurse(void *arg)
{
	(void)arg;
	if (PRT_TEST_TSAN)
		child_run_fiber(PRT_STACK_CANARY, recurse_above_neighbour, "driver");
	else
		child_run_fiber(PRT_STACK_CANARY, recurse_past_bottom, "recurse");
}

/*
 * A canary fiber that recurses past its bottom (a frame or so: further
 * down, into a mapping of something else, it would corrupt that, which
 * a canary stack cannot prevent): reported at the fault when nothing is
 * mapped below (its stack pointer is below the stack), or at the switch
 * when something is. It was a bare SIGSEGV (a review).
 */
static void test_canary_recurse_reported(void **state)
{
	char err[4096];
	int st;

	(void)state;
	/*
	 * Not under ASan (its fake stacks move the frames' locals to the
	 * heap: the real stack may pass over the canary without touching
	 * it, and the fault come from its own code) or valgrind (which
	 * follows stack pointer moves itself).
	 */
	if (TEST_ASAN || test_under_valgrind())
		skip();
	st = run_child(child_canary_recurse, NULL, err, sizeof(err));
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
		fprintf(stderr, "child status %#x, its stderr:\n%s\n", st, err);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGABRT);
	assert_non_null(strstr(err, "\"recurse\" overflowed its"));
}

static void test_canary_overflow_aborts(void **state)
{
	char err[4096];
	int st;

	(void)state;
	st = run_child(child_canary_smash, NULL, err, sizeof(err));
	assert_overflow_report(st, err, 1, VICTIM, PRT_STACK_SIZE_DEFAULT,
			       "canary stack, found at a switch");
	st = run_child(child_canary_smash_deep, NULL, err, sizeof(err));
	assert_overflow_report(st, err, 1, VICTIM, PRT_STACK_SIZE_DEFAULT,
			       "canary stack, found at a switch");
}

/*
 * A parked canary fiber keeps its stack's top page and nothing below:
 * its switches do not read the canary at the bottom (which, on a kernel
 * that maps no shared zero page for anonymous read faults, such as this
 * project's VM, made that page resident too: 8.6 KB a parked fiber
 * instead of 4.6). mincore() says a page is in core also when a read
 * mapped the zero page, so this holds on every kernel (but with huge
 * pages "always", which may fault a whole stack in at once). Fresh
 * stacks: spawned from this plain thread, each has a mapping of its
 * own, and none came back from an ended fiber (whose last check reads
 * the canary).
 */
static atomic_int shallow_parked, shallow_go;

static void *park_shallow(void *arg)
{
	(void)arg;
	atomic_fetch_add(&shallow_parked, 1);
	while (!atomic_load(&shallow_go))
		prt_park();
	return NULL;
}

/* Transparent huge pages "always": a fault may fill a whole stack at once (then no check). */
static bool thp_always(void)
{
	char buf[128] = "";
	FILE *fp = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (!fp)
		return false;
	if (!fgets(buf, sizeof(buf), fp))
		buf[0] = 0;
	fclose(fp);
	return strstr(buf, "[always]") != NULL;
}

static void test_canary_parked_top_page_only(void **state)
{
	enum { N = 64 };
	prt_runtime_t *rt = test_rt_with(1, 0, PRT_STACK_CANARY, PRT_IO_AUTO);
	long ps = sysconf(_SC_PAGESIZE);
	prt_fiber_t f[N];
	int bottom_in_core = 0;

	(void)state;
	atomic_store(&shallow_parked, 0);
	atomic_store(&shallow_go, 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(prt_spawn(rt, &f[i], NULL, park_shallow, NULL), 0);
	while (atomic_load(&shallow_parked) < N)
		usleep(1000);
	for (int i = 0; i < N; i++) {
		struct prt__fiber *p = f[i].p;
		unsigned char v;

		/* Parked for good: BLOCKED, and switched out (its last switch is done). */
		while (atomic_load(&p->state) != PRT_FS_BLOCKED || atomic_load(&p->on_cpu))
			usleep(1000);
		assert_int_equal(mincore(p->stack.base, (size_t)ps, &v), 0);
		bottom_in_core += v & 1;
	}
	atomic_store(&shallow_go, 1);
	for (int i = 0; i < N; i++)
		assert_int_equal(prt_unpark(f[i]), 0);
	for (int i = 0; i < N; i++)
		assert_int_equal(prt_join(f[i], NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	if (thp_always())
		fprintf(stderr, "test_stack: transparent huge pages always: page check skipped\n");
	else if (!test_under_valgrind())
		assert_int_equal(bottom_in_core, 0);
}

/* ---- canary stacks scale ------------------------------------------------- */

/*
 * Parked canary fibers at once: 100000, or 20000 under valgrind (each
 * costs it 1.4-2.3 ms there: 135-230 s for 100000). 20000 stacks fill 79
 * slabs, and a mapping per stack (20000 lines) would still be far over
 * both bounds below (~1080 more, 5000 in all).
 */
static int nscale(void)
{
	return test_under_valgrind() ? 20000 : 100000;
}

static atomic_int scale_parked, scale_go;

static void *park_until_go(void *arg)
{
	atomic_fetch_add(&scale_parked, 1);
	while (!atomic_load(&scale_go))
		prt_park();
	return arg;
}

struct spawner {
	prt_runtime_t *rt;
	prt_fiber_t *f;
	int n;
	struct stk *s; /* optional: stacks of the first @ns fibers */
	int ns;
};

#define DECAY_MAGIC 0xdeca7deca7deca7ull

/* Mark a guard stack the running fiber recorded in @s (a canary stack's bottom must stay zero). */
static void mark_guard_stack(const struct stk *s)
{
	if (!(s->flags & PRT_STK_CANARY))
		*(volatile uint64_t *)((char *)s->base + 64) = DECAY_MAGIC;
}

/*
 * Whether the guard stack at @base is still the one a fiber of the test
 * marked: mapped, readable, and the mark there. Its address may have
 * been mapped again by anything since it was unmapped (a sanitizer's
 * allocator does), so being mapped is not enough; process_vm_readv
 * reads without faulting on a page mapped PROT_NONE.
 */
static int guard_stack_intact(const void *base)
{
	uint64_t v = 0;
	struct iovec local = { &v, sizeof(v) };
	struct iovec remote = { (char *)base + 64, sizeof(v) };

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)sizeof(v) &&
	       v == DECAY_MAGIC;
}

static void *rec_then_park(void *arg)
{
	FIBER_CHECK(rec_stack(arg) == NULL);
	mark_guard_stack(arg);
	return park_until_go(arg);
}

static void *spawn_parkers(void *arg)
{
	struct spawner *sp = arg;

	for (int i = 0; i < sp->n; i++) {
		if (i < sp->ns)
			FIBER_CHECK(prt_spawn(sp->rt, &sp->f[i], NULL, rec_then_park, &sp->s[i]) == 0);
		else
			FIBER_CHECK(prt_spawn(sp->rt, &sp->f[i], NULL, park_until_go, NULL) == 0);
	}
	return NULL;
}

static void wait_parked(int n)
{
	while (atomic_load(&scale_parked) < n)
		usleep(1000);
}

static void release_and_join(struct spawner *sp)
{
	atomic_store(&scale_go, 1);
	for (int i = 0; i < sp->n; i++)
		assert_int_equal(prt_unpark(sp->f[i]), 0);
	for (int i = 0; i < sp->n; i++)
		assert_int_equal(prt_join(sp->f[i], NULL), 0);
}

static void test_canary_scale(void **state)
{
	int before = maps_lines(), during;
	prt_runtime_t *rt;
	int n = nscale();
	struct spawner sp = { .n = n };

	(void)state;
	/*
	 * TSan: each fiber is a TSan thread while it lives (it dies past
	 * 8128 at once), and TSan maps about three areas of its own for each
	 * (6000 fibers: 20100 more lines, from 8505): the count would be
	 * TSan's, not the slabs'.
	 */
	if (before < 0 || PRT_TEST_TSAN)
		skip(); /* no /proc, or TSan */
	rt = make_rt(2, PRT_STACK_CANARY, 16384, 0);
	sp.rt = rt;
	atomic_store(&scale_parked, 0);
	atomic_store(&scale_go, 0);
	sp.f = calloc((size_t)n, sizeof(*sp.f));
	assert_non_null(sp.f);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, spawn_parkers, &sp));
	wait_parked(n);
	during = maps_lines();
	/* One mapping per PRT_STACK_SLAB_COUNT stacks, not one (or two) per stack. */
	assert_true(during - before < n / PRT_STACK_SLAB_COUNT + 1000);
	assert_true(during < 5000);
	release_and_join(&sp);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(sp.f);
}

/*
 * Canary stacks of fibers spawned on one worker and ending on another
 * come back to the spawner. Slab stacks freed past the pools went to
 * the freeing worker's cold list only, and only that worker carved from
 * it: an acceptor on worker 0 spawning fibers that end on worker 1
 * mapped new slabs for every burst (a review: +1.15 GB of address space
 * a round of 20,000, then -ENOMEM with almost nothing alive). Now the
 * runtime's slab count stops growing after the first burst.
 */
#define XW_N 2000
#define XW_ROUNDS 6

static prt_sem_t xw_go;

/* All XW_N alive at once on worker 1, then all end there. */
static void *xw_spawner(void *arg)
{
	prt_runtime_t *rt = arg;
	static prt_fiber_t f[XW_N];

	for (int i = 0; i < XW_N; i++)
		f[i] = test_spawn(rt, PRT_PRIO_DEFAULT, 1, wait_sem_body, &xw_go);
	for (int i = 0; i < XW_N; i++)
		FIBER_CHECK(prt_sem_post(&xw_go) == 0);
	for (int i = 0; i < XW_N; i++)
		FIBER_CHECK(prt_join(f[i], NULL) == 0);
	return NULL;
}

static int count_slabs(prt_runtime_t *rt)
{
	int n = 0;

	prt__spin_lock(&rt->slab_lock);
	for (struct prt__slab *sl = rt->slabs; sl; sl = sl->next)
		n++;
	prt__spin_unlock(&rt->slab_lock);
	return n;
}

static void test_canary_stacks_cross_workers(void **state)
{
	prt_runtime_t *rt = make_rt(2, PRT_STACK_CANARY, 16384, 4);
	int first = 0, last = 0;

	(void)state;
	assert_int_equal(prt_sem_init(&xw_go, 0), 0);
	for (int r = 0; r < XW_ROUNDS; r++) {
		prt_fiber_t sp = test_spawn(rt, PRT_PRIO_DEFAULT, 0, xw_spawner, rt);

		assert_int_equal(prt_join(sp, NULL), 0);
		last = count_slabs(rt);
		if (r == 0)
			first = last;
	}
	/*
	 * Each burst has XW_N fibers alive at once (XW_N / 256 slabs, rounded
	 * up), and the freeing worker's lists keep fewer than a slab's worth:
	 * one more slab at most. Without the reuse, each round added about
	 * XW_N / 256 (6 rounds: 47).
	 */
	if (last > XW_N / PRT_STACK_SLAB_COUNT + 2)
		fprintf(stderr, "slabs: %d after the first burst, %d after %d\n", first, last,
			XW_ROUNDS);
	assert_true(last <= XW_N / PRT_STACK_SLAB_COUNT + 2);
	assert_int_equal(prt_sem_destroy(&xw_go), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* ---- pool bound ---------------------------------------------------------- */

/* With no decay (cfg.stack_decay_ns 0), a stack freed past the pools is unmapped at once. */
static void test_pool_bound(void **state)
{
	enum { N = 64 };
	prt_runtime_t *rt = make_rt_decay(1, PRT_STACK_GUARD, 0, 4, 0);
	struct spawner sp = { .rt = rt, .n = N };
	struct stk s[N];
	struct prt__stack_pool *pool = &rt->workers[0]->stacks;
	int still = 0;

	(void)state;
	memset(s, 0, sizeof(s));
	sp.s = s;
	sp.ns = N;
	atomic_store(&scale_parked, 0);
	atomic_store(&scale_go, 0);
	sp.f = calloc(N, sizeof(*sp.f));
	assert_non_null(sp.f);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, spawn_parkers, &sp));
	wait_parked(N);
	release_and_join(&sp);
	/* Every fiber is joined, so every stack has been put back (before on_cpu went 0). */
	assert_int_equal(pool->max, 4);
	assert_true(pool->nwarm <= 4);
	assert_int_equal(rt->maxdepot, 4 * 1);
	assert_true(rt->ndepot <= rt->maxdepot);
	/* The rest went back to the system. */
	for (int i = 0; i < N; i++)
		still += guard_stack_intact(s[i].base); /* (its address may be mapped again since) */
	assert_true(still <= (int)(pool->nwarm + rt->ndepot));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(sp.f);
}

/* ---- decay: stacks past the pools ------------------------------------------ */

#define DECAY_N 64
#define DECAY_ROUNDS 3

struct decay_run {
	prt_runtime_t *rt;
	int rounds;
	struct stk s[DECAY_ROUNDS][DECAY_N];
	struct stk drv; /* the driver's own stack, the last time */
	prt_fiber_t f[DECAY_N];
	prt_sem_t go;
};

/* Alive until all of the round are: another worker may run it at once. */
static void *rec_then_wait(void *arg)
{
	struct stk *s = arg;
	struct decay_run *d = s->ctx;

	FIBER_CHECK(rec_stack(s) == NULL);
	mark_guard_stack(s);
	FIBER_CHECK(prt_sem_wait(&d->go) == 0);
	return NULL;
}


/* @rounds times: DECAY_N fibers alive at once, then all joined. */
static void *decay_driver(void *arg)
{
	struct decay_run *d = arg;

	FIBER_CHECK(rec_stack(&d->drv) == NULL);
	FIBER_CHECK(prt_sem_init(&d->go, 0) == 0);
	for (int r = 0; r < d->rounds; r++) {
		for (int i = 0; i < DECAY_N; i++) {
			d->s[r][i].ctx = d;
			FIBER_CHECK(prt_spawn(d->rt, &d->f[i], NULL, rec_then_wait, &d->s[r][i]) == 0);
		}
		for (int i = 0; i < DECAY_N; i++)
			FIBER_CHECK(prt_sem_post(&d->go) == 0);
		for (int i = 0; i < DECAY_N; i++)
			FIBER_CHECK(prt_join(d->f[i], NULL) == 0);
	}
	FIBER_CHECK(prt_sem_destroy(&d->go) == 0);
	return NULL;
}

static unsigned depot_count(prt_runtime_t *rt, unsigned *maxdepot)
{
	unsigned n;

	prt__spin_lock(&rt->depot_lock);
	n = rt->ndepot;
	*maxdepot = rt->maxdepot;
	prt__spin_unlock(&rt->depot_lock);
	return n;
}

/*
 * A burst of fibers past the pools (4 per worker, and 4 in the depot)
 * leaves its stacks mapped for the next one: the second and third
 * rounds of 64 reuse the first's stacks and map none. Before the decay,
 * 56 of the 64 were unmapped as their fibers ended (test_pool_bound).
 */
static void test_decay_keeps_burst(void **state)
{
	prt_runtime_t *rt = make_rt_decay(1, PRT_STACK_GUARD, 0, 4, UINT64_MAX);
	struct decay_run *d = calloc(1, sizeof(*d));
	struct stk first[DECAY_N + 1]; /* the first run's fibers, and its driver */
	unsigned maxdepot;

	(void)state;
	assert_non_null(d);
	d->rt = rt;
	d->rounds = 1;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, decay_driver, d));
	for (int i = 0; i < DECAY_N; i++)
		assert_true(page_mapped((char *)d->s[0][i].base + d->s[0][i].size - 1));
	/* The worker's pool keeps 2-4 of them, the depot the rest (and the driver's). */
	assert_true(depot_count(rt, &maxdepot) >= DECAY_N - 4);
	assert_int_equal(maxdepot, 4);
	memcpy(first, d->s[0], sizeof(d->s[0]));
	first[DECAY_N] = d->drv;
	d->rounds = DECAY_ROUNDS;
	memset(d->s, 0, sizeof(d->s));
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, decay_driver, d));
	/* Every stack of every round is one of the first run's. */
	for (int r = 0; r < DECAY_ROUNDS; r++)
		for (int i = 0; i < DECAY_N; i++) {
			int found = 0;

			for (int k = 0; k <= DECAY_N && !found; k++)
				found = d->s[r][i].base == first[k].base;
			assert_true(found);
		}
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(d);
}

/* Whether the runtime holds a free stack at @base: a worker's pool or the depot. */
static int rt_holds(prt_runtime_t *rt, const void *base)
{
	int held = 0;

	for (int w = 0; w < rt->nworkers; w++)
		for (unsigned i = 0; i < rt->workers[w]->stacks.nwarm; i++)
			held |= rt->workers[w]->stacks.warm[i].base == base;
	prt__spin_lock(&rt->depot_lock);
	for (unsigned i = 0; i < rt->ndepot; i++)
		held |= rt->stack_depot[i].base == base;
	prt__spin_unlock(&rt->depot_lock);
	return held;
}

/* Stacks of @d's rounds that the runtime no longer holds but are not gone yet; *@gone: those gone. */
static int decay_left(const struct decay_run *d, int kind, int *gone)
{
	int left = 0;

	*gone = 0;
	for (int r = 0; r < DECAY_ROUNDS; r++)
		for (int i = 0; i < DECAY_N; i++) {
			char *top = (char *)d->s[r][i].base + d->s[r][i].size - 1;
			void *pg = (void *)((uintptr_t)top & ~(uintptr_t)(page() - 1));
			unsigned char v = 0;
			int intact;

			if (rt_holds(d->rt, d->s[r][i].base))
				continue;
			if (kind == PRT_STACK_GUARD)
				intact = guard_stack_intact(d->s[r][i].base);
			else
				intact = mincore(pg, page(), &v) != 0 || (v & 1);
			left += intact;
			*gone += !intact;
		}
	return left;
}

/*
 * With a decay of 20 ms, a burst's stacks past the pools go back to the
 * system by themselves: the idle workers wake for it (no fiber runs,
 * nothing else happens). Guard stacks are unmapped; canary slab stacks
 * give their pages back. What the pools and the depot keep for good
 * stays. On two workers, so that both trim and spill at once.
 */
static void decay_trims(int kind)
{
	prt_runtime_t *rt = make_rt_decay(2, kind, kind == PRT_STACK_CANARY ? 16384 : 0, 4,
					  20 * 1000 * 1000);
	struct decay_run *d = calloc(1, sizeof(*d));
	unsigned n, maxdepot;
	int gone = 0;

	assert_non_null(d);
	d->rt = rt;
	d->rounds = DECAY_ROUNDS;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, decay_driver, d));
	/*
	 * The trim must come by itself. A worker unmaps a batch after it
	 * took it from the depot: look until all is done, 20 s at most.
	 */
	for (int tries = 0; tries < 20000; tries++) {
		n = depot_count(rt, &maxdepot);
		if (n <= maxdepot && decay_left(d, kind, &gone) == 0)
			break;
		usleep(1000);
	}
	assert_int_equal(maxdepot, 2 * 4);
	assert_true(n <= maxdepot);
	/*
	 * Every fiber is joined, so the workers' pools are still (the trim
	 * touches only the depot). A stack of the burst that the runtime no
	 * longer holds is gone: unmapped, or (canary) its pages given back.
	 */
	assert_int_equal(decay_left(d, kind, &gone), 0);
	assert_true(gone > 0);
	/* And the runtime still works: a burst again, its stacks fine. */
	d->rounds = 1;
	memset(d->s, 0, sizeof(d->s));
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, decay_driver, d));
	for (int i = 0; i < DECAY_N; i++)
		assert_true(in_stack(&d->s[0][i], d->s[0][i].frame));
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(d);
}

static void test_decay_trims_guard(void **state)
{
	(void)state;
	decay_trims(PRT_STACK_GUARD);
}

static void test_decay_trims_canary(void **state)
{
	(void)state;
	decay_trims(PRT_STACK_CANARY);
}

/* ---- stacks of other sizes, and spawns from plain threads --------------------- */

/*
 * Record the stack, what lies at base + 64 (DECAY_MAGIC if an earlier
 * fiber of the test had this stack), mark it, then wait on @ctx's
 * semaphore if any: alive until then.
 */
static void *mark_body(void *arg)
{
	struct stk *s = arg;

	FIBER_CHECK(rec_stack(s) == NULL);
	s->seen = *(volatile uint64_t *)((char *)s->base + 64);
	*(volatile uint64_t *)((char *)s->base + 64) = DECAY_MAGIC;
	if (s->ctx)
		FIBER_CHECK(prt_sem_wait(s->ctx) == 0);
	return NULL;
}

struct burst {
	prt_runtime_t *rt;
	size_t size; /* attr.stack_size */
	int n;
	struct stk s[DECAY_N];
	prt_fiber_t f[DECAY_N];
	prt_sem_t go;
};

/* @b->n fibers of @b->size alive at once, then all joined; from a fiber or a plain thread. */
static void *burst(void *arg)
{
	struct burst *b = arg;
	prt_fiber_attr_t a;

	prt_fiber_attr_init(&a);
	a.stack_size = b->size;
	memset(b->s, 0, sizeof(b->s));
	FIBER_CHECK(prt_sem_init(&b->go, 0) == 0);
	for (int i = 0; i < b->n; i++) {
		b->s[i].ctx = &b->go;
		FIBER_CHECK(prt_spawn(b->rt, &b->f[i], &a, mark_body, &b->s[i]) == 0);
	}
	for (int i = 0; i < b->n; i++)
		FIBER_CHECK(prt_sem_post(&b->go) == 0);
	for (int i = 0; i < b->n; i++)
		FIBER_CHECK(prt_join(b->f[i], NULL) == 0);
	FIBER_CHECK(prt_sem_destroy(&b->go) == 0);
	return NULL;
}

static int burst_reused(const struct burst *b)
{
	int n = 0;

	for (int i = 0; i < b->n; i++)
		n += b->s[i].seen == DECAY_MAGIC;
	return n;
}

/*
 * A stack of a size other than the default is kept for the next spawn
 * of that size (it was unmapped as its fiber ended, and mapped again at
 * the next spawn: ~10 us each); a spawn of another size does not get it.
 */
static void test_odd_size_reused(void **state)
{
	/* Never trimmed: a test thread that stalls (load, valgrind) must not change the outcome. */
	prt_runtime_t *rt = make_rt_decay(1, PRT_STACK_GUARD, 0, 0, UINT64_MAX);
	struct burst *b = calloc(1, sizeof(*b));

	(void)state;
	assert_non_null(b);
	b->rt = rt;
	b->n = 8;
	b->size = 128 * 1024;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst, b));
	assert_int_equal(burst_reused(b), 0);
	for (int i = 0; i < b->n; i++)
		assert_int_equal(b->s[i].size, 128 * 1024);
	/* Another size: new stacks. */
	b->size = 192 * 1024;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst, b));
	assert_int_equal(burst_reused(b), 0);
	/* 128 KiB again (asked as 126 KiB, the same in pages): the first burst's stacks. */
	b->size = 126 * 1024;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst, b));
	assert_int_equal(burst_reused(b), b->n);
	for (int i = 0; i < b->n; i++)
		assert_int_equal(b->s[i].size, 128 * 1024);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(b);
}

/*
 * A plain thread has no pool: its spawns take default-size stacks from
 * the depot (before, each mapped a new one). The worker's pool keeps
 * up to @pool_max of a burst's 16 stacks; the depot the rest. A pool
 * of 1 moves its stacks through the depot too (half of 1, rounded up;
 * with max / 2 it moved none).
 */
static void thread_spawn_reuses(unsigned pool_max)
{
	prt_runtime_t *rt = make_rt_decay(1, PRT_STACK_GUARD, 0, pool_max, UINT64_MAX);
	struct burst *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->rt = rt;
	b->n = 16;
	assert_null(burst(b));
	assert_int_equal(burst_reused(b), 0);
	assert_null(burst(b));
	assert_true(burst_reused(b) >= b->n - (int)pool_max);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(b);
}

static void test_thread_spawn_reuses(void **state)
{
	(void)state;
	thread_spawn_reuses(2);
}

static void test_pool_of_one_uses_depot(void **state)
{
	(void)state;
	thread_spawn_reuses(1);
}

/*
 * Stacks of other sizes go back after a decay period by themselves (an
 * idle runtime); and no more than the depot's count wait at once.
 */
static void test_odd_size_decay(void **state)
{
	prt_runtime_t *rt = make_rt_decay(1, PRT_STACK_GUARD, 0, 4, 20 * 1000 * 1000);
	struct burst *b = calloc(1, sizeof(*b));
	int intact = 0;

	(void)state;
	assert_non_null(b);
	b->rt = rt;
	b->n = 16;
	b->size = 128 * 1024;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst, b));
	/* Gone by themselves: 20 s at most. */
	for (int tries = 0; tries < 20000; tries++) {
		intact = 0;
		for (int i = 0; i < b->n; i++)
			intact += guard_stack_intact(b->s[i].base);
		if (!intact)
			break;
		usleep(1000);
	}
	assert_int_equal(intact, 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);

	/* Kept for good otherwise, but only the bytes the depot keeps: 4 x 64 KiB, two of 128. */
	rt = make_rt_decay(1, PRT_STACK_GUARD, 0, 4, UINT64_MAX);
	b->rt = rt;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst, b));
	intact = 0;
	for (int i = 0; i < b->n; i++)
		intact += guard_stack_intact(b->s[i].base);
	assert_int_equal(intact, 2);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, burst, b));
	assert_int_equal(burst_reused(b), 2);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(b);
}

#define MIX_ROUNDS 30

/* Bursts of mixed sizes, each burst's stacks checked distinct. */
static void *mixed_bursts(void *arg)
{
	struct burst *b = arg;
	static const size_t sizes[] = { 0, 96 * 1024, 128 * 1024, 0, 192 * 1024 };

	for (int r = 0; r < MIX_ROUNDS; r++) {
		b->size = sizes[r % 5];
		b->n = 1 + (r * 7) % DECAY_N;
		FIBER_CHECK(burst(b) == NULL);
		for (int i = 0; i < b->n; i++)
			for (int k = 0; k < i; k++)
				FIBER_CHECK(b->s[i].base != b->s[k].base);
		if (r % 10 != 9)
			continue;
		/* A period or more: trims come. */
		if (prt_self().p)
			FIBER_CHECK(prt_sleep_ns(300 * 1000) == 0);
		else
			usleep(300);
	}
	return NULL;
}

static void *mixed_driver(void *arg)
{
	return mixed_bursts(arg);
}

/*
 * Two workers, tiny pools and a 100 us decay: fibers on both workers
 * and a plain thread spawn bursts of mixed sizes at once, so that the
 * depot and the other sizes' list grow, are taken from, and are trimmed
 * concurrently (by idle workers and at spills) while spawns use them.
 * TSan found a plain store there (a review).
 */
static void test_decay_concurrent(void **state)
{
	prt_runtime_t *rt = make_rt_decay(2, PRT_STACK_GUARD, 0, 2, 100 * 1000);
	struct burst *b = calloc(3, sizeof(*b));
	prt_fiber_t d[2];

	(void)state;
	assert_non_null(b);
	for (int i = 0; i < 3; i++)
		b[i].rt = rt;
	for (int i = 0; i < 2; i++)
		assert_int_equal(prt_spawn(rt, &d[i], NULL, mixed_driver, &b[i]), 0);
	assert_null(mixed_bursts(&b[2]));
	for (int i = 0; i < 2; i++)
		assert_int_equal(prt_join(d[i], NULL), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	free(b);
}

/* VmSize of this process, in bytes (0 if unknown). */
static size_t vm_size(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	size_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

struct hold {
	prt_runtime_t *rt;
	prt_fiber_t *f;
	int n, spawned, err;
	size_t size;
	prt_sem_t go;
};

/* @h->n fibers of @h->size alive at once (or as many as can be), then all joined. */
static void *hold_burst(void *arg)
{
	struct hold *h = arg;
	prt_fiber_attr_t a;

	prt_fiber_attr_init(&a);
	a.stack_size = h->size;
	h->err = 0;
	FIBER_CHECK(prt_sem_init(&h->go, 0) == 0);
	for (h->spawned = 0; h->spawned < h->n; h->spawned++)
		if ((h->err = prt_spawn(h->rt, &h->f[h->spawned], &a, wait_sem_body, &h->go)))
			break;
	for (int i = 0; i < h->spawned; i++)
		FIBER_CHECK(prt_sem_post(&h->go) == 0);
	for (int i = 0; i < h->spawned; i++)
		FIBER_CHECK(prt_join(h->f[i], NULL) == 0);
	FIBER_CHECK(prt_sem_destroy(&h->go) == 0);
	return NULL;
}

/*
 * Out of address space, a spawn gives back what the decay keeps and
 * tries again. 4000 default-size stacks (272 MiB with their guard
 * pages) stay in the depot after a burst (no decay end); then, with
 * RLIMIT_AS 100 MiB above what the process has, 8 fibers of 32 MiB
 * must all spawn: they fit only once the depot's excess is unmapped.
 * Before, the kept stacks made the spawns fail with -ENOMEM (a review).
 */
static void child_enomem_flush(void *arg)
{
	struct hold h = { .n = 4000 };
	prt_runtime_config_t cfg;
	struct rlimit lim;

	(void)arg;
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.stack_pool_max = 2;
	cfg.stack_decay_ns = UINT64_MAX;
	die_unless(prt_runtime_create(&h.rt, &cfg) == 0, "prt_runtime_create");
	h.f = calloc((size_t)h.n, sizeof(*h.f));
	die_unless(h.f != NULL, "calloc");
	die_unless(test_run_in(h.rt, PRT_PRIO_DEFAULT, hold_burst, &h) == NULL && h.err == 0,
		   "the first burst");
	lim.rlim_cur = lim.rlim_max = vm_size() + 100u * 1024 * 1024;
	die_unless(vm_size() != 0 && setrlimit(RLIMIT_AS, &lim) == 0, "setrlimit");
	h.n = 8;
	h.size = 32u * 1024 * 1024;
	die_unless(test_run_in(h.rt, PRT_PRIO_DEFAULT, hold_burst, &h) == NULL, "the second burst");
	if (h.err)
		fprintf(stderr, "child: %d of 8 spawned, then %s\n", h.spawned, prt_strerror(h.err));
	die_unless(h.err == 0, "every spawn of the second burst");
	die_unless(prt_runtime_destroy(h.rt) == 0, "prt_runtime_destroy");
	free(h.f);
}

static void test_decay_gives_back_on_enomem(void **state)
{
	char err[4096];
	int st;

	(void)state;
	/* The sanitizers reserve terabytes of shadow; valgrind has its own address space. */
	if (TEST_ASAN || PRT_TEST_TSAN || test_under_valgrind())
		skip();
	st = run_child(child_enomem_flush, NULL, err, sizeof(err));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "child status %#x, its stderr:\n%s\n", st, err);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* ---- destroy unmaps its stacks, and nothing else ----------------------------- */

struct unmap_case {
	int kind;
	int from_fiber;
};

#define NSEQ 8
#define NPAR 8
#define NSTK (NSEQ + NPAR + 1)
#define SENTINEL_MAGIC 0x5e9713e1u

struct unmap_run {
	prt_runtime_t *rt;
	struct stk s[NSTK];
	prt_fiber_t f[NPAR];
	unsigned *sentinel[NSTK]; /* pages of ours next to the stacks */
	int nsentinel;
	struct prt__stack depot[NSTK]; /* the depot's stacks just before destroy */
	unsigned ndepot;
};

/*
 * Pages of our own right below the runtime's stacks (below the guard page
 * of guard stacks), wherever that address is free: a stack unmapped with
 * a wrong range at destroy would take them along.
 */
static void map_sentinels(struct unmap_run *u, int n, int kind)
{
	for (int i = 0; i < n; i++) {
		char *at = (char *)u->s[i].base - (kind == PRT_STACK_GUARD ? 2 : 1) * page();
		unsigned *p = mmap(at, page(), PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

		if (p == MAP_FAILED)
			continue; /* in use, by a neighbour stack for example */
		if ((char *)p != at) { /* a kernel without MAP_FIXED_NOREPLACE */
			munmap(p, page());
			continue;
		}
		*p = SENTINEL_MAGIC;
		u->sentinel[u->nsentinel++] = p;
	}
}

/* NSEQ fibers one after the other, then NPAR alive at once. */
static void *unmap_body(void *arg)
{
	struct unmap_run *u = arg;
	prt_fiber_t f;

	for (int i = 0; i < NSEQ; i++) {
		FIBER_CHECK(prt_spawn(u->rt, &f, NULL, rec_stack, &u->s[i]) == 0);
		FIBER_CHECK(prt_join(f, NULL) == 0);
	}
	for (int i = 0; i < NPAR; i++) {
		FIBER_CHECK(prt_spawn(u->rt, &u->f[i], NULL, rec_then_park, &u->s[NSEQ + i]) == 0);
	}
	while (atomic_load(&scale_parked) < NPAR) {
		if (prt_self().p)
			test_yield_wait();
		else
			usleep(1000);
	}
	atomic_store(&scale_go, 1);
	for (int i = 0; i < NPAR; i++)
		FIBER_CHECK(prt_unpark(u->f[i]) == 0);
	for (int i = 0; i < NPAR; i++)
		FIBER_CHECK(prt_join(u->f[i], NULL) == 0);
	return NULL;
}

static void *unmap_driver(void *arg)
{
	struct unmap_run *u = arg;

	FIBER_CHECK(rec_stack(&u->s[NSEQ + NPAR]) == NULL);
	return unmap_body(u);
}

static int is_sentinel(const struct unmap_run *u, const void *p)
{
	for (int i = 0; i < u->nsentinel; i++)
		if ((const void *)u->sentinel[i] == p)
			return 1;
	return 0;
}

static void child_unmap(void *arg)
{
	const struct unmap_case *c = arg;
	struct unmap_run *u = calloc(1, sizeof(*u));
	prt_runtime_config_t cfg;
	int n = c->from_fiber ? NSTK : NSTK - 1, bad = 0;

	die_unless(u != NULL, "calloc");
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.stack_kind = c->kind;
	/* A tiny pool: stacks also go through the depot and back to the system. */
	cfg.stack_pool_max = 2;
	die_unless(prt_runtime_create(&u->rt, &cfg) == 0, "prt_runtime_create");
	if (c->from_fiber) {
		prt_fiber_t f;
		void *res = (void *)1;

		die_unless(prt_spawn(u->rt, &f, NULL, unmap_driver, u) == 0, "prt_spawn");
		die_unless(prt_join(f, &res) == 0 && res == NULL, "driver");
	} else {
		die_unless(unmap_body(u) == NULL, "unmap_body");
	}
	/* Past its 2 for good too (the decay keeps the rest for a while): destroy unmaps them all. */
	die_unless(u->rt->ndepot > 0 && u->rt->ndepot <= NSTK, "some stacks in the depot at destroy");
	u->ndepot = u->rt->ndepot;
	memcpy(u->depot, u->rt->stack_depot, sizeof(u->depot[0]) * u->ndepot);
	map_sentinels(u, n, c->kind);
	die_unless(prt_runtime_destroy(u->rt) == 0, "prt_runtime_destroy");
	for (int i = 0; i < u->nsentinel; i++) {
		char *above = (char *)u->sentinel[i] + (c->kind == PRT_STACK_GUARD ? 2 : 1) * page();

		if (page_mapped(u->sentinel[i]) && *u->sentinel[i] == SENTINEL_MAGIC)
			continue;
		fprintf(stderr, "child: prt_runtime_destroy unmapped (or wrote) page %p, which is "
			"not the runtime's but lies just below its stack at %p\n",
			(void *)u->sentinel[i], (void *)above);
		for (unsigned k = 0; k < u->ndepot; k++)
			if (u->depot[k].base == above)
				fprintf(stderr, "child:   that stack (size %zu, flags %#x) was in the "
					"runtime's stack depot at destroy\n", u->depot[k].size,
					u->depot[k].flags);
		bad++;
	}
	for (int i = 0; i < n; i++) {
		char *lo = (char *)u->s[i].base - (c->kind == PRT_STACK_GUARD ? page() : 0);
		char *hi = (char *)u->s[i].base + u->s[i].size;

		die_unless(u->s[i].base != NULL, "stack recorded");
		for (char *p = lo; p < hi; p += page()) {
			if (page_mapped(p) && !is_sentinel(u, p)) {
				fprintf(stderr, "child: after destroy, page %p of stack %d [%p, %p) "
					"(flags %#x) is still mapped\n", (void *)p, i,
					u->s[i].base, (void *)hi, u->s[i].flags);
				bad++;
			}
		}
	}
	_exit(bad ? 1 : 0);
}

static void check_unmapped(int kind, int from_fiber)
{
	struct unmap_case c = { kind, from_fiber };
	int st;

	/* TSan: a child of a multithreaded process dies when it starts threads (die_after_fork). */
	if (PRT_TEST_TSAN)
		skip();
	atomic_store(&scale_parked, 0);
	atomic_store(&scale_go, 0);
	st = run_child(child_unmap, &c, NULL, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "  %s stacks spawned from a %s: child status %#x\n",
			kind == PRT_STACK_GUARD ? "guard" : "canary",
			from_fiber ? "fiber" : "plain thread", st);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_destroy_unmaps_guard_fiber(void **state)
{
	(void)state;
	check_unmapped(PRT_STACK_GUARD, 1);
}

static void test_destroy_unmaps_guard_thread(void **state)
{
	(void)state;
	check_unmapped(PRT_STACK_GUARD, 0);
}

static void test_destroy_unmaps_canary_fiber(void **state)
{
	(void)state;
	check_unmapped(PRT_STACK_CANARY, 1);
}

static void test_destroy_unmaps_canary_thread(void **state)
{
	(void)state;
	check_unmapped(PRT_STACK_CANARY, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard_page_faults),
		cmocka_unit_test(test_guard_overflow_faults),
		cmocka_unit_test(test_guard_overflow_own_size),
		cmocka_unit_test(test_other_fault_not_overflow),
		cmocka_unit_test(test_canary_overflow_aborts),
		cmocka_unit_test(test_canary_recurse_reported),
		cmocka_unit_test(test_canary_parked_top_page_only),
		cmocka_unit_test(test_pool_reuse_lifo),
		cmocka_unit_test(test_pool_reuse_many),
		cmocka_unit_test(test_stack_sizes),
		cmocka_unit_test(test_canary_run_join),
		cmocka_unit_test(test_canary_scale),
		cmocka_unit_test(test_pool_bound),
		cmocka_unit_test(test_decay_keeps_burst),
		cmocka_unit_test(test_decay_trims_guard),
		cmocka_unit_test(test_decay_trims_canary),
		cmocka_unit_test(test_odd_size_reused),
		cmocka_unit_test(test_thread_spawn_reuses),
		cmocka_unit_test(test_odd_size_decay),
		cmocka_unit_test(test_pool_of_one_uses_depot),
		cmocka_unit_test(test_decay_concurrent),
		cmocka_unit_test(test_decay_gives_back_on_enomem),
		cmocka_unit_test(test_destroy_unmaps_guard_fiber),
		cmocka_unit_test(test_destroy_unmaps_guard_thread),
		cmocka_unit_test(test_destroy_unmaps_canary_fiber),
		cmocka_unit_test(test_destroy_unmaps_canary_thread),
		/* Last: its 12,000 fibers move the fiber ids the overflow reports above name. */
		cmocka_unit_test(test_canary_stacks_cross_workers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
