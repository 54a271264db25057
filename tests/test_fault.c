/* SPDX-License-Identifier: MIT */
/*
 * Error paths under injected faults (lib/fault.h; needs a build with
 * -Dfault_injection=true, else the test skips). For each class of call
 * that can run out -- allocations, stack mmaps, io_uring set-up, hwloc,
 * eventfd/epoll fds, thread creation -- the Nth call is made to fail, for
 * N = 1, 2, ... until the operation under test no longer reaches the Nth
 * call. Each time:
 *
 *   - prt_runtime_create returns the injected error (-ENOMEM, -EMFILE,
 *     -EAGAIN, ...) and leaves nothing behind: no fd, no thread, no
 *     library allocation or stack mapping (counted by the library in
 *     this build), and, under ASan, nothing LeakSanitizer can see; or
 *     it succeeds where the library documents a fallback (io_uring
 *     refused: epoll, with a notice saying why), and the runtime works;
 *   - prt_spawn, from the main thread or from a fiber, fails with
 *     -ENOMEM exactly once, the other fibers of the batch run, the
 *     runtime keeps working and is destroyed cleanly;
 *   - calls that allocate on first use (prt_offload's pool and threads,
 *     a worker's timer heap under prt_sleep_ns, a timed read on epoll,
 *     prt_mutex_timedlock, prt_cond_timedwait) fail cleanly and work
 *     when tried again.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hwloc.h>
#include <proxyrt/proxyrt.h>
#include "test_common.h"
#include "fault.h"
#include "runtime_int.h" /* internal: a fiber's state and run queue */

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#if TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

#if PRT_FAULT_INJECTION

/* A stack size of the tests' own (page multiple), and twice it for non-default stacks. */
#define STK (68u * 1024u)
/* Fibers per batch: more than a chunk of descriptors (64), so a second chunk is needed. */
#define BATCH 70
/* No operation here makes this many calls at one site: a loop that gets there is stuck. */
#define MAX_N 2000

static bool uring_ok; /* io_uring works on this machine (else only epoll is tested) */
static char xml_dir[] = "/tmp/prt-fault-XXXXXX", xml_path[64]; /* a topology as XML */

/* ---- leak accounting --------------------------------------------------------- */

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1; /* no /proc: both sides of the comparison are -1 */
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct snap {
	int fds, tasks;
	long allocs, maps;
};

static struct snap snap_take(void)
{
	return (struct snap){
		.fds = count_dir("/proc/self/fd"),
		.tasks = count_dir("/proc/self/task"),
		.allocs = prt__fault_live(PRT_FAULT_ALLOC),
		.maps = prt__fault_live(PRT_FAULT_MMAP),
	};
}

/* Nothing may be left of what was made since @b was taken. */
static void snap_expect(const struct snap *b, const char *what, unsigned n)
{
	struct snap a = snap_take();

	/*
	 * A joined thread can still be listed for a moment after
	 * pthread_join returns (the kernel reaps it just after waking the
	 * joiner): wait for the count to come down, up to 10 s.
	 */
	for (int i = 0; i < 1000 && a.tasks > b->tasks; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		a.tasks = count_dir("/proc/self/task");
	}
	if (a.fds != b->fds || a.tasks != b->tasks || a.allocs != b->allocs || a.maps != b->maps)
		fprintf(stderr, "  %s, fault at call %u: left fds %d->%d, threads %d->%d, "
			"allocations %ld->%ld, stack mappings %ld->%ld\n", what, n, b->fds, a.fds,
			b->tasks, a.tasks, b->allocs, a.allocs, b->maps, a.maps);
	assert_int_equal(a.fds, b->fds);
	assert_int_equal(a.tasks, b->tasks);
	assert_int_equal(a.allocs, b->allocs);
	assert_int_equal(a.maps, b->maps);
}

/* Under ASan, fail here rather than at exit if anything was leaked so far. */
static void lsan_check(void)
{
#if TEST_ASAN
	assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
#endif
}

/* ---- a working runtime ------------------------------------------------------- */

static void *child(void *arg)
{
	return (void *)((intptr_t)arg + 1);
}

/* Spawn a few children from a fiber and join them. */
static void *spawner(void *arg)
{
	prt_fiber_t f[8];
	void *res;

	(void)arg;
	for (intptr_t i = 0; i < 8; i++)
		FIBER_CHECK(prt_spawn(prt_runtime_self(), &f[i], NULL, child, (void *)i) == 0);
	for (intptr_t i = 0; i < 8; i++) {
		FIBER_CHECK(prt_join(f[i], &res) == 0);
		FIBER_CHECK(res == (void *)(i + 1));
	}
	return NULL;
}

/* @rt runs fibers spawned from this thread and from a fiber. */
static void exercise(prt_runtime_t *rt)
{
	prt_fiber_t f[4], s;
	void *res = (void *)1;

	for (intptr_t i = 0; i < 4; i++)
		assert_int_equal(prt_spawn(rt, &f[i], NULL, child, (void *)i), 0);
	assert_int_equal(prt_spawn(rt, &s, NULL, spawner, NULL), 0);
	for (intptr_t i = 0; i < 4; i++) {
		assert_int_equal(prt_join(f[i], &res), 0);
		assert_ptr_equal(res, (void *)(i + 1));
	}
	assert_int_equal(prt_join(s, &res), 0);
	assert_null(res);
}

/* ---- prt_runtime_create --------------------------------------------------------- */

/* Runtime set-ups; io_backend 0 is PRT_IO_AUTO, stack_kind 0 PRT_STACK_GUARD. */
struct rt_case {
	const char *name;
	int nworkers;
	unsigned flags;
	const char *synthetic;
	bool xml; /* the topology of the XML file main() wrote */
	const char *cpus;
	int io_backend;
	int stack_kind;
};

static const struct rt_case cases[] = {
	{ .name = "1 worker", .nworkers = 1 },
	{ .name = "2 workers", .nworkers = 2 },
	{ .name = "2 workers on cpus \"0\", canary stacks", .nworkers = 2, .cpus = "0",
	  .stack_kind = PRT_STACK_CANARY },
	{ .name = "2 workers per PU, unpinned", .nworkers = 2,
	  .flags = PRT_RT_PER_PU | PRT_RT_NO_PIN },
	{ .name = "synthetic, 4 workers", .synthetic = "pack:2 core:2 pu:2" },
	{ .name = "XML, 3 workers", .nworkers = 3, .xml = true },
	{ .name = "2 workers on epoll", .nworkers = 2, .io_backend = PRT_IO_EPOLL },
	{ .name = "2 workers on io_uring", .nworkers = 2, .io_backend = PRT_IO_URING },
};

static int create(const struct rt_case *c, prt_runtime_t **rt)
{
	prt_runtime_config_t cfg;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = c->nworkers;
	cfg.flags = c->flags;
	cfg.topology_synthetic = c->synthetic;
	cfg.topology_xml = c->xml ? xml_path : NULL;
	cfg.cpus = c->cpus;
	cfg.io_backend = c->io_backend;
	cfg.stack_kind = c->stack_kind;
	cfg.stack_size = STK;
	return prt_runtime_create(rt, &cfg);
}

static const char *site_name(enum prt__fault_site site)
{
	static const char *const names[] = { "alloc", "mmap", "io_uring", "hwloc", "thread", "fd" };

	return names[site];
}

/*
 * prt_runtime_create succeeded although call @n at @site failed: only
 * io_uring's probes may be absorbed (the first by PRT_IO_AUTO falling
 * back to epoll, the one of optional set-up flags by going without).
 */
static void check_absorbed(enum prt__fault_site site, int err, const struct rt_case *c,
			   unsigned n, prt_runtime_t *rt)
{
	const char *notice = prt_runtime_notice(rt);

	if (site == PRT_FAULT_URING && prt_runtime_io_backend(rt) == PRT_IO_URING)
		return; /* the probe of optional ring set-up flags failed: rings go without */
	if (site != PRT_FAULT_URING || c->io_backend != PRT_IO_AUTO) {
		fprintf(stderr, "  %s: %s fault at call %u was ignored\n", c->name,
			site_name(site), n);
		fail();
	}
	assert_int_equal(prt_runtime_io_backend(rt), PRT_IO_EPOLL);
	assert_non_null(notice);
	if (!strstr(notice, "io_uring unavailable") || !strstr(notice, strerror(err))) {
		fprintf(stderr, "  %s: notice \"%s\"\n", c->name, notice);
		fail();
	}
}

/* Fail call 1, 2, ... at @site with @err while creating @c; returns how many failed. */
static unsigned create_faults(enum prt__fault_site site, int err, const struct rt_case *c)
{
	unsigned n, fired_count = 0;
	char what[128];

	snprintf(what, sizeof(what), "create, %s, %s fault", c->name, site_name(site));
	for (n = 1;; n++) {
		struct snap before = snap_take();
		prt_runtime_t *rt = NULL;
		bool fired;
		int rc;

		assert_true(n < MAX_N);
		prt__fault_arm(site, n, err);
		rc = create(c, &rt);
		fired = prt__fault_fired(site);
		prt__fault_arm(site, 0, 0);
		if (rc != 0) {
			if (!fired || rc != -err)
				fprintf(stderr, "  %s at call %u (%s): create returned %d (%s)\n",
					what, n, fired ? "fired" : "not reached", rc,
					prt_strerror(rc));
			assert_true(fired);
			assert_int_equal(rc, -err);
			assert_null(rt);
		} else {
			/* io_uring's first call is the probe: failing, it means epoll. */
			if (site == PRT_FAULT_URING && n == 1 && uring_ok &&
			    c->io_backend == PRT_IO_AUTO) {
				assert_true(fired);
				assert_int_equal(prt_runtime_io_backend(rt), PRT_IO_EPOLL);
			}
			if (fired)
				check_absorbed(site, err, c, n, rt);
			exercise(rt);
			assert_int_equal(prt_runtime_destroy(rt), 0);
		}
		snap_expect(&before, what, n);
		if (!fired)
			break;
		fired_count++;
	}
	lsan_check();
	return fired_count;
}

static void create_all(enum prt__fault_site site, int err)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct rt_case *c = &cases[i];
		unsigned fired;

		if (c->io_backend == PRT_IO_URING && !uring_ok)
			continue;
		fired = create_faults(site, err, c);
		/* Each site but io_uring on epoll is reached, else this would pass vacuously. */
		if (!(site == PRT_FAULT_URING && c->io_backend == PRT_IO_EPOLL))
			assert_true(fired > 0);
	}
}

static void test_create_alloc(void **state)
{
	(void)state;
	create_all(PRT_FAULT_ALLOC, ENOMEM);
}

static void test_create_hwloc(void **state)
{
	(void)state;
	create_all(PRT_FAULT_HWLOC, ENOMEM);
}

static void test_create_uring(void **state)
{
	(void)state;
	create_all(PRT_FAULT_URING, ENOMEM);
	/* As a seccomp profile or kernel.io_uring_disabled would refuse it. */
	create_all(PRT_FAULT_URING, EPERM);
}

static void test_create_fd(void **state)
{
	(void)state;
	create_all(PRT_FAULT_FD, EMFILE);
}

static void test_create_thread(void **state)
{
	(void)state;
	create_all(PRT_FAULT_THREAD, EAGAIN);
}

/* ---- prt_spawn ------------------------------------------------------------------- */

struct batch {
	prt_runtime_t *rt;
	enum prt__fault_site site;
	unsigned n;
	bool fired;
	int nfail, bad;
};

/*
 * Spawn BATCH fibers, every eighth with a non-default stack, with call
 * @b->n at @b->site failing; join those that started.
 */
static void *spawn_batch(void *arg)
{
	struct batch *b = arg;
	prt_fiber_t f[BATCH];
	bool ok[BATCH];
	void *res;

	prt__fault_arm(b->site, b->n, ENOMEM);
	for (intptr_t i = 0; i < BATCH; i++) {
		prt_fiber_attr_t a;
		int rc;

		prt_fiber_attr_init(&a);
		a.stack_size = i % 8 == 7 ? 2 * STK : 0;
		rc = prt_spawn(b->rt, &f[i], &a, child, (void *)i);
		ok[i] = rc == 0;
		if (rc == -ENOMEM)
			b->nfail++;
		else if (rc)
			b->bad = rc;
	}
	b->fired = prt__fault_fired(b->site);
	prt__fault_arm(b->site, 0, 0);
	for (intptr_t i = 0; i < BATCH; i++) {
		if (!ok[i])
			continue;
		FIBER_CHECK(prt_join(f[i], &res) == 0);
		FIBER_CHECK(res == (void *)(i + 1));
	}
	return NULL;
}

static void spawn_faults(enum prt__fault_site site, int stack_kind, int nworkers, bool from_fiber)
{
	const struct rt_case c = { .name = "spawn", .nworkers = nworkers,
				   .stack_kind = stack_kind };
	char what[128];
	unsigned n;
	int failed = 0;

	snprintf(what, sizeof(what), "spawn from %s, %s stacks, %d workers, %s fault",
		 from_fiber ? "a fiber" : "main",
		 stack_kind == PRT_STACK_GUARD ? "guard" : "canary", nworkers, site_name(site));

	for (n = 1;; n++) {
		struct snap before = snap_take();
		struct batch b = { .site = site, .n = n };
		prt_runtime_t *rt;
		prt_fiber_t f;
		void *res = NULL;

		assert_true(n < MAX_N);
		assert_int_equal(create(&c, &rt), 0);
		b.rt = rt;
		if (from_fiber) {
			assert_int_equal(prt_spawn(rt, &f, NULL, spawn_batch, &b), 0);
			assert_int_equal(prt_join(f, &res), 0);
		} else {
			res = spawn_batch(&b);
		}
		if (b.bad || b.nfail > (b.fired ? 1 : 0) || res)
			fprintf(stderr, "  %s at call %u (%s): %d spawns failed with -ENOMEM, "
				"other error %d, fiber check line %d\n", what, n,
				b.fired ? "fired" : "not reached", b.nfail, b.bad,
				(int)(intptr_t)res);
		assert_null(res);
		assert_int_equal(b.bad, 0);
		/*
		 * A fault fails one spawn, or none where the library has a way
		 * around it: an array of kept stacks that cannot grow (the stack
		 * goes back instead), a mapping that fails while the decay keeps
		 * stacks (they go back, and it is tried again; stack.c).
		 */
		assert_true(b.nfail <= (b.fired ? 1 : 0));
		failed += b.nfail;
		/* The runtime is still whole. */
		exercise(rt);
		assert_int_equal(prt_runtime_destroy(rt), 0);
		snap_expect(&before, what, n);
		if (!b.fired)
			break;
	}
	/* The hook was reached at least once, and some fault did fail a spawn. */
	assert_true(n > 1);
	assert_true(failed > 0);
	lsan_check();
}

static void spawn_all(enum prt__fault_site site)
{
	for (int kind = PRT_STACK_GUARD; kind <= PRT_STACK_CANARY; kind++) {
		for (int nw = 1; nw <= 2; nw++) {
			spawn_faults(site, kind, nw, false);
			spawn_faults(site, kind, nw, true);
		}
	}
}

static void test_spawn_alloc(void **state)
{
	(void)state;
	spawn_all(PRT_FAULT_ALLOC);
}

static void test_spawn_mmap(void **state)
{
	(void)state;
	spawn_all(PRT_FAULT_MMAP);
}

/* ---- other calls that allocate on demand ------------------------------------------ */

static void *offload_fn(void *arg)
{
	return arg;
}

static void *offload_fiber(void *arg)
{
	void *res = NULL;

	(void)arg;
	/* The pool is made on first use... */
	prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
	FIBER_CHECK(prt_offload(offload_fn, (void *)1, &res) == -ENOMEM);
	FIBER_CHECK(prt__fault_fired(PRT_FAULT_ALLOC));
	/* ...and its first thread on the first call. */
	prt__fault_arm(PRT_FAULT_THREAD, 1, EAGAIN);
	FIBER_CHECK(prt_offload(offload_fn, (void *)2, &res) == -EAGAIN);
	FIBER_CHECK(prt__fault_fired(PRT_FAULT_THREAD));
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	prt__fault_arm(PRT_FAULT_THREAD, 0, 0);
	FIBER_CHECK(prt_offload(offload_fn, (void *)3, &res) == 0);
	FIBER_CHECK(res == (void *)3);
	return NULL;
}

static void test_offload(void **state)
{
	struct snap before = snap_take();
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, offload_fiber, NULL));
	exercise(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	snap_expect(&before, "offload", 1);
	lsan_check();
}

static void *sleep_fiber(void *arg)
{
	(void)arg;
	/*
	 * The worker's timer heap is allocated by the first sleep. 50 ms, not
	 * less: a deadline already past when the sleep looks (an ASan build on
	 * a loaded machine passed 1 us there once) is a plain yield, which
	 * allocates nothing. The failed sleep returns at once.
	 */
	prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
	FIBER_CHECK(prt_sleep_ns(50ull * 1000 * 1000) == -ENOMEM);
	FIBER_CHECK(prt__fault_fired(PRT_FAULT_ALLOC));
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	FIBER_CHECK(prt_sleep_ns(1000) == 0);
	return NULL;
}

static void test_sleep(void **state)
{
	struct snap before = snap_take();
	prt_runtime_t *rt = test_rt(1);

	(void)state;
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, sleep_fiber, NULL));
	exercise(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	snap_expect(&before, "sleep", 1);
	lsan_check();
}

/*
 * Timed mutex and condvar waits arm a timer on the worker's heap, which
 * the first one allocates. Without memory for it the wait ends at once
 * with ENOMEM, leaving no waiter behind (prt_mutex_destroy would see
 * it), and the condvar wait returns with the mutex held again.
 */
static prt_mutex_t tm_mutex;
static prt_cond_t tm_cond;

struct timed {
	unsigned n;
	bool fired;
	int rc;
};

/* A deadline that only ends a wait nobody will end otherwise. */
static struct timespec soon(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 50 * 1000 * 1000;
	if (ts.tv_nsec >= 1000 * 1000 * 1000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000 * 1000 * 1000;
	}
	return ts;
}

static void *timedlock_fiber(void *arg)
{
	struct timed *t = arg;
	struct timespec ts = soon();

	prt__fault_arm(PRT_FAULT_ALLOC, t->n, ENOMEM);
	t->rc = prt_mutex_timedlock(&tm_mutex, &ts); /* held by the main thread */
	t->fired = prt__fault_fired(PRT_FAULT_ALLOC);
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	FIBER_CHECK(t->rc == (t->fired ? ENOMEM : ETIMEDOUT));
	FIBER_CHECK(prt_mutex_trylock(&tm_mutex) == EBUSY);
	return NULL;
}

static void *cond_fiber(void *arg)
{
	struct timed *t = arg;
	struct timespec ts = soon();

	FIBER_CHECK(prt_mutex_lock(&tm_mutex) == 0);
	prt__fault_arm(PRT_FAULT_ALLOC, t->n, ENOMEM);
	t->rc = prt_cond_timedwait(&tm_cond, &tm_mutex, &ts);
	t->fired = prt__fault_fired(PRT_FAULT_ALLOC);
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	FIBER_CHECK(t->rc == (t->fired ? ENOMEM : ETIMEDOUT));
	FIBER_CHECK(prt_mutex_unlock(&tm_mutex) == 0); /* held again either way */
	return NULL;
}

static void timed_faults(int proxy, bool cond)
{
	prt_mutexattr_t a;
	unsigned n;

	prt_mutexattr_init(&a);
	prt_mutexattr_setproxy(&a, proxy);
	for (n = 1;; n++) {
		struct snap before = snap_take();
		struct timed t = { .n = n };
		prt_runtime_t *rt;

		assert_true(n < MAX_N);
		assert_int_equal(prt_mutex_init(&tm_mutex, &a), 0);
		assert_int_equal(prt_cond_init(&tm_cond), 0);
		/* A fresh runtime each time: its workers have no timer heap yet. */
		rt = test_rt(2);
		if (!cond)
			assert_int_equal(prt_mutex_lock(&tm_mutex), 0);
		assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, cond ? cond_fiber : timedlock_fiber,
					&t));
		if (!cond)
			assert_int_equal(prt_mutex_unlock(&tm_mutex), 0);
		exercise(rt);
		assert_int_equal(prt_runtime_destroy(rt), 0);
		/* No waiter was left on either. */
		assert_int_equal(prt_cond_destroy(&tm_cond), 0);
		assert_int_equal(prt_mutex_destroy(&tm_mutex), 0);
		snap_expect(&before, cond ? "cond timedwait" : "mutex timedlock", n);
		if (!t.fired)
			break;
	}
	assert_true(n > 1);
	lsan_check();
}

static void test_timed_waits(void **state)
{
	(void)state;
	timed_faults(PRT_MUTEX_PROXY_ON, false);
	timed_faults(PRT_MUTEX_PROXY_OFF, false);
	timed_faults(PRT_MUTEX_PROXY_ON, true);
	timed_faults(PRT_MUTEX_PROXY_OFF, true);
}

/*
 * A worker's MSG_RING kick that fails (sent to no ring here; a real one
 * can fail too) comes back as a CQE of the sender, which then kicks the
 * sleeping worker through its eventfd: the fiber woken onto that worker
 * runs. Without that the worker would sleep for good: the waker cleared
 * its sleeping flag, so no later wake kicks it again.
 */
struct kick {
	prt_fiber_t sleeper;
	_Atomic int done;
	bool fired;
};

static void *kick_sleeper(void *arg)
{
	struct kick *k = arg;

	prt_park();
	atomic_store(&k->done, 1);
	return NULL;
}

static void *kick_waker(void *arg)
{
	struct kick *k = arg;
	struct prt__fiber *f = k->sleeper.p;
	struct prt__worker *w1 = prt_runtime_self()->workers[1];

	/* Until the sleeper is parked and its worker sleeps in its ring. */
	while (atomic_load(&f->state) != PRT_FS_BLOCKED || !atomic_load(&w1->sleeping))
		sched_yield();
	prt__fault_arm(PRT_FAULT_KICK, 1, EBADF);
	FIBER_CHECK(prt_unpark(k->sleeper) == 0);
	k->fired = prt__fault_fired(PRT_FAULT_KICK);
	prt__fault_arm(PRT_FAULT_KICK, 0, 0);
	return NULL;
}

static void test_kick(void **state)
{
	prt_runtime_t *rt;

	(void)state;
	if (!uring_ok)
		skip();
	rt = test_rt_with(2, 0, PRT_STACK_GUARD, PRT_IO_URING);
	if (!rt->io.msg_ring) {
		prt_runtime_destroy(rt);
		skip(); /* kicks are eventfd writes only (Linux < 5.18) */
	}
	for (int round = 0; round < 5; round++) {
		struct kick k = { 0 };
		prt_fiber_t waker;
		uint64_t t0 = test_mono_ns();
		void *res;

		k.sleeper = test_spawn(rt, PRT_PRIO_DEFAULT, 1, kick_sleeper, &k);
		waker = test_spawn(rt, PRT_PRIO_DEFAULT, 0, kick_waker, &k);
		assert_int_equal(prt_join(waker, &res), 0);
		assert_null(res);
		assert_true(k.fired);
		/* Bounded only so that a lost kick fails here instead of hanging the join. */
		while (!atomic_load(&k.done) && test_mono_ns() - t0 < 10ull * 1000 * 1000 * 1000)
			usleep(1000);
		assert_int_equal(atomic_load(&k.done), 1);
		assert_int_equal(prt_join(k.sleeper, &res), 0);
	}
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/*
 * A stream whose end watch fails stops trusting its receive: it cancels
 * it and reads plainly. Here the plain read waits, and its fiber is
 * moved to the other worker meanwhile: prt_stream_recv must still cancel
 * its own timer (it cancelled that of whatever ran on the worker it
 * started on), and the bytes and the end come in order.
 */
static int wt_fd[2];

static void *watch_reader(void *arg)
{
	struct prt__fiber *self = prt_self().p;
	char buf[16];
	prt_stream_t *s;

	(void)arg;
	FIBER_CHECK(prt_stream_open(&s, wt_fd[0]) == 0);
	prt__fault_arm(PRT_FAULT_WATCH, 1, EBADF);
	FIBER_CHECK(prt_stream_recv(s, buf, sizeof(buf), 10ull * 1000 * 1000 * 1000) == 5);
	FIBER_CHECK(prt__fault_fired(PRT_FAULT_WATCH));
	prt__fault_arm(PRT_FAULT_WATCH, 0, 0);
	FIBER_CHECK(memcmp(buf, "hello", 5) == 0);
	/* Moved while it waited, and no timer of its own left on either worker. */
	FIBER_CHECK(self->last_worker == prt_runtime_self()->workers[1]);
	FIBER_CHECK(!prt__timer_armed(&self->timer));
	FIBER_CHECK(prt_stream_recv(s, buf, sizeof(buf), 10ull * 1000 * 1000 * 1000) == 0);
	FIBER_CHECK(prt_stream_recv(s, buf, sizeof(buf), 0) == 0);
	FIBER_CHECK(prt_stream_close(s) == 0);
	return NULL;
}

static void test_stream_watch_fails(void **state)
{
	prt_workerset_t one;
	prt_runtime_t *rt;
	prt_fiber_t r;
	struct prt__fiber *f;
	void *res;

	(void)state;
	if (!uring_ok)
		skip();
	rt = test_rt_with(2, 0, PRT_STACK_GUARD, PRT_IO_URING);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, wt_fd), 0);
	r = test_spawn(rt, PRT_PRIO_DEFAULT, 0, watch_reader, NULL);
	f = r.p;
	/* Until it waits in the plain read (the receive was cancelled: the watch failed). */
	for (;;) {
		const char *what = atomic_load(&f->wait_obj);

		if (atomic_load(&f->state) == PRT_FS_BLOCKED &&
		    atomic_load(&f->wait_kind) == PRT_WK_IO && what && !strcmp(what, "recv"))
			break;
		sched_yield();
	}
	prt_workerset_zero(&one);
	prt_workerset_add(&one, 1);
	assert_int_equal(prt_fiber_set_affinity(r, &one), 0);
	assert_int_equal(send(wt_fd[1], "hello", 5, 0), 5);
	assert_int_equal(shutdown(wt_fd[1], SHUT_WR), 0);
	assert_int_equal(prt_join(r, &res), 0);
	assert_null(res);
	close(wt_fd[0]);
	close(wt_fd[1]);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

/* A test that failed half-way leaves no armed fault to the next one. */
static int disarm_all(void **state)
{
	(void)state;
	for (int s = 0; s < PRT_FAULT_NSITES; s++)
		prt__fault_arm((enum prt__fault_site)s, 0, 0);
	return 0;
}

/*
 * On epoll a timed read that would block waits for its fd with a timer
 * on the worker's heap, allocated by the first timed wait.
 */
static void *read_timeout_fiber(void *arg)
{
	struct prt__fiber *self = prt_self().p;
	int *p = arg;
	char c = 0;

	prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
	FIBER_CHECK(prt_read_timeout(p[0], &c, 1, 10ull * 1000 * 1000 * 1000) == -ENOMEM);
	FIBER_CHECK(prt__fault_fired(PRT_FAULT_ALLOC));
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	/* The failed wait must not have queued this fiber, still running, to run again. */
	FIBER_CHECK(atomic_load(&self->state) == PRT_FS_RUNNING);
	FIBER_CHECK(atomic_load(&self->rq_worker) == NULL);
	for (int i = 0; i < 100; i++)
		FIBER_CHECK(prt_yield() == 0);
	FIBER_CHECK(prt_write(p[1], "x", 1) == 1);
	FIBER_CHECK(prt_read_timeout(p[0], &c, 1, 10ull * 1000 * 1000 * 1000) == 1);
	FIBER_CHECK(c == 'x');
	FIBER_CHECK(prt_read_timeout(p[0], &c, 1, 1000 * 1000) == -ETIMEDOUT);
	return NULL;
}

static void test_read_timeout_epoll(void **state)
{
	struct snap before;
	prt_runtime_t *rt;
	int p[2];

	(void)state;
	assert_int_equal(pipe(p), 0);
	before = snap_take();
	rt = test_rt_with(2, 0, PRT_STACK_GUARD, PRT_IO_EPOLL);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, read_timeout_fiber, p));
	exercise(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	snap_expect(&before, "read timeout on epoll", 1);
	close(p[0]);
	close(p[1]);
	lsan_check();
}

/*
 * The worker's stream buffers cannot be mapped: the read goes through
 * prt_recv and still delivers; the next read maps them and goes
 * multishot (io_uring) from then on.
 */
static void *stream_fiber(void *arg)
{
	int *p = arg;
	prt_stream_t *s;
	char c = 0;

	FIBER_CHECK(prt_stream_open(&s, p[0]) == 0);
	FIBER_CHECK(prt_write(p[1], "ab", 2) == 2);
	prt__fault_arm(PRT_FAULT_MMAP, 1, ENOMEM);
	FIBER_CHECK(prt_stream_recv(s, &c, 1, 0) == 1 && c == 'a');
	FIBER_CHECK(!uring_ok || prt__fault_fired(PRT_FAULT_MMAP));
	prt__fault_arm(PRT_FAULT_MMAP, 0, 0);
	FIBER_CHECK(prt_stream_recv(s, &c, 1, 0) == 1 && c == 'b');
	FIBER_CHECK(prt_write(p[1], "c", 1) == 1);
	FIBER_CHECK(prt_stream_recv(s, &c, 1, 0) == 1 && c == 'c');
	FIBER_CHECK(prt_stream_multishot(s) == (uring_ok ? 1 : 0));
	FIBER_CHECK(prt_stream_close(s) == 0);
	return NULL;
}

/*
 * Naming a mutex or condvar needs room in the process-wide name table
 * (lib/objname.c): without memory, init fails with ENOMEM and touches
 * neither the object nor the table; with it, destroy gives it all back.
 */
static void test_object_names(void **state)
{
	struct snap before = snap_take();
	prt_mutexattr_t ma;
	prt_condattr_t ca;
	prt_mutex_t m;
	prt_cond_t c;

	(void)state;
	assert_int_equal(prt_mutexattr_init(&ma), 0);
	assert_int_equal(prt_mutexattr_setname(&ma, "named"), 0);
	assert_int_equal(prt_condattr_init(&ca), 0);
	assert_int_equal(prt_condattr_setname(&ca, "named"), 0);
	memset(&m, 0xab, sizeof(m));
	memset(&c, 0xab, sizeof(c));
	prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(prt_mutex_init(&m, &ma), ENOMEM);
	assert_true(prt__fault_fired(PRT_FAULT_ALLOC));
	prt__fault_arm(PRT_FAULT_ALLOC, 1, ENOMEM);
	assert_int_equal(prt_cond_init_attr(&c, &ca), ENOMEM);
	assert_true(prt__fault_fired(PRT_FAULT_ALLOC));
	prt__fault_arm(PRT_FAULT_ALLOC, 0, 0);
	for (size_t i = 0; i < sizeof(m); i++)
		assert_int_equal((unsigned char)m.__size[i], 0xab);
	for (size_t i = 0; i < sizeof(c); i++)
		assert_int_equal((unsigned char)c.__size[i], 0xab);
	snap_expect(&before, "object names", 1);
	/* Without the fault: named, then forgotten, nothing left. */
	assert_int_equal(prt_mutex_init(&m, &ma), 0);
	assert_int_equal(prt_cond_init_attr(&c, &ca), 0);
	assert_int_equal(prt_mutex_destroy(&m), 0);
	assert_int_equal(prt_cond_destroy(&c), 0);
	snap_expect(&before, "object names", 0);
	lsan_check();
}

static void test_stream_bufs(void **state)
{
	struct snap before;
	prt_runtime_t *rt;
	int p[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p), 0);
	before = snap_take();
	rt = test_rt(1);
	assert_null(test_run_in(rt, PRT_PRIO_DEFAULT, stream_fiber, p));
	exercise(rt);
	assert_int_equal(prt_runtime_destroy(rt), 0);
	snap_expect(&before, "stream buffers", 1);
	close(p[0]);
	close(p[1]);
	lsan_check();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_create_alloc, disarm_all),
		cmocka_unit_test_setup(test_create_hwloc, disarm_all),
		cmocka_unit_test_setup(test_create_uring, disarm_all),
		cmocka_unit_test_setup(test_create_fd, disarm_all),
		cmocka_unit_test_setup(test_create_thread, disarm_all),
		cmocka_unit_test_setup(test_spawn_alloc, disarm_all),
		cmocka_unit_test_setup(test_spawn_mmap, disarm_all),
		cmocka_unit_test_setup(test_offload, disarm_all),
		cmocka_unit_test_setup(test_sleep, disarm_all),
		cmocka_unit_test_setup(test_read_timeout_epoll, disarm_all),
		cmocka_unit_test_setup(test_timed_waits, disarm_all),
		cmocka_unit_test_setup(test_stream_bufs, disarm_all),
		cmocka_unit_test_setup(test_object_names, disarm_all),
		cmocka_unit_test_setup(test_kick, disarm_all),
		cmocka_unit_test_setup(test_stream_watch_fails, disarm_all),
	};
	prt_runtime_config_t cfg;
	hwloc_topology_t topo;
	prt_runtime_t *rt;
	int rc;

	/* A machine to read from XML (hwloc_topology_set_xml's fault path). */
	if (!mkdtemp(xml_dir))
		return 1;
	snprintf(xml_path, sizeof(xml_path), "%s/topo.xml", xml_dir);
	if (hwloc_topology_init(&topo) < 0 ||
	    hwloc_topology_set_synthetic(topo, "pack:1 core:4 pu:2") < 0 ||
	    hwloc_topology_load(topo) < 0 || hwloc_topology_export_xml(topo, xml_path, 0) < 0)
		return 1;
	hwloc_topology_destroy(topo);

	/* PRT_IO_AUTO means io_uring where the kernel allows it, whatever the environment. */
	unsetenv("PRT_IO_BACKEND");
	/* io_uring may be refused (seccomp, kernel.io_uring_disabled): then test epoll only. */
	prt_runtime_config_init(&cfg);
	cfg.nworkers = 1;
	cfg.io_backend = PRT_IO_URING;
	uring_ok = prt_runtime_create(&rt, &cfg) == 0;
	if (uring_ok)
		prt_runtime_destroy(rt);
	else
		fprintf(stderr, "io_uring unavailable: its fault paths are tested on epoll only\n");
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(xml_path);
	rmdir(xml_dir);
	return rc;
}

#else

int main(void)
{
	fprintf(stderr, "test_fault: built without -Dfault_injection=true, skipping\n");
	return 77;
}

#endif
