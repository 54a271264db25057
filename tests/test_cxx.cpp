// SPDX-License-Identifier: MIT
//
// C++ in fibers: the C++ runtime keeps its exception state per thread
// (the stack of caught exceptions, the count of exceptions in flight),
// and fibers share worker threads. Each fiber must see its own: a catch
// block it is switched out of (blocked, yielding, preempted, moved to
// another worker) is still its catch block when it runs again, and no
// other fiber sees its exception. Before the switch carried that state
// with the fiber (lib/switch.h, prt__cxa_switch), the first fiber to
// end its catch freed the other's exception (a use after free under
// ASan) and `throw;` rethrew the other's.
#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <array>
#include <atomic>
#include <exception>
#include <initializer_list>
#include <utility>

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

extern "C" {
#include <cmocka.h>
}

#include <proxyrt/proxyrt.h>

namespace {

struct Obj {
	int id, round;
	char pad[48]; // a heap block of its own size: a freed one is noticed
};

// Which exception is current? `throw;` in a nested try says, as a
// handler would find it: the fiber's id and round, or -1 if none.
int current_id()
{
	if (!std::current_exception())
		return -1;
	try {
		throw;
	} catch (Obj &o) {
		return o.id * 100000 + o.round;
	} catch (...) {
		return -2;
	}
}

prt_runtime_t *make_rt(int nworkers, uint64_t quantum)
{
	prt_runtime_config_t cfg;
	prt_runtime_t *rt = nullptr;

	prt_runtime_config_init(&cfg);
	cfg.nworkers = nworkers;
	cfg.preempt_quantum_ns = quantum;
	assert_int_equal(prt_runtime_create(&rt, &cfg), 0);
	return rt;
}

prt_fiber_t spawn(prt_runtime_t *rt, int prio, int worker, void *(*fn)(void *), void *arg)
{
	prt_fiber_attr_t a;
	prt_fiber_t f;

	prt_fiber_attr_init(&a);
	a.priority = prio;
	if (worker >= 0) {
		prt_workerset_zero(&a.affinity);
		prt_workerset_add(&a.affinity, worker);
		a.has_affinity = true;
	}
	assert_int_equal(prt_spawn(rt, &f, &a, fn, arg), 0);
	return f;
}

void join(prt_fiber_t f)
{
	assert_int_equal(prt_join(f, nullptr), 0);
}

// ---- two fibers in their catch blocks at once, switching at yields ----

constexpr int ROUNDS = 200;

struct Pair {
	std::atomic<int> wrong{ 0 };
	std::atomic<int> others_seen{ 0 }; // a fiber with no exception saw one
};

struct Yielder {
	Pair *p;
	int id;
};

void *yield_in_catch(void *arg)
{
	auto *y = static_cast<Yielder *>(arg);

	for (int r = 0; r < ROUNDS; r++) {
		try {
			throw Obj{ y->id, r, {} };
		} catch (Obj &e) {
			// The other fiber runs here, inside its own catch block.
			prt_yield();
			if (e.id != y->id || e.round != r || current_id() != y->id * 100000 + r)
				y->p->wrong++;
			prt_yield();
		}
		// Out of the catch: nothing is current for this fiber.
		if (current_id() != -1)
			y->p->others_seen++;
		prt_yield();
	}
	return nullptr;
}

// Two fibers of one worker in catch blocks that interleave: each keeps
// its own exception, and ending one catch frees nothing of the other's.
void test_catch_blocks_interleave(void **)
{
	prt_runtime_t *rt = make_rt(1, 0);
	Pair p;
	Yielder a{ &p, 1 }, b{ &p, 2 };
	prt_fiber_t fa = spawn(rt, 16, 0, yield_in_catch, &a);
	prt_fiber_t fb = spawn(rt, 16, 0, yield_in_catch, &b);

	join(fa);
	join(fb);
	assert_int_equal(p.wrong.load(), 0);
	assert_int_equal(p.others_seen.load(), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

// ---- a fiber moved to another worker inside its catch block ----

struct Mover {
	int wrong = 0, rethrown = 0;
	std::atomic<int> seen_elsewhere{ 0 };
};

void *move_in_catch(void *arg)
{
	auto *m = static_cast<Mover *>(arg);
	prt_workerset_t to;

	for (int r = 0; r < 50; r++) {
		try {
			throw Obj{ 7, r, {} };
		} catch (Obj &) {
			prt_workerset_zero(&to);
			prt_workerset_add(&to, (r + 1) % 2);
			assert_int_equal(prt_fiber_set_affinity(prt_self(), &to), 0);
			prt_yield(); // moves
			assert_int_equal(prt_worker_index(), (r + 1) % 2);
			try {
				throw; // the fiber's own, on the worker it moved to
			} catch (Obj &o) {
				if (o.id != 7 || o.round != r)
					m->wrong++;
				m->rethrown++;
			}
		}
	}
	return nullptr;
}

// Fibers that run on the workers meanwhile: none has an exception.
void *watch_none(void *arg)
{
	auto *m = static_cast<Mover *>(arg);

	for (int i = 0; i < 400; i++) {
		if (current_id() != -1 || std::uncaught_exceptions() != 0)
			m->seen_elsewhere++;
		prt_yield();
	}
	return nullptr;
}

void test_catch_block_moves(void **)
{
	prt_runtime_t *rt = make_rt(2, 0);
	Mover m;
	prt_fiber_t w0 = spawn(rt, 16, 0, watch_none, &m);
	prt_fiber_t w1 = spawn(rt, 16, 1, watch_none, &m);
	prt_fiber_t f = spawn(rt, 16, 0, move_in_catch, &m);

	join(f);
	join(w0);
	join(w1);
	assert_int_equal(m.wrong, 0);
	assert_int_equal(m.rethrown, 50);
	assert_int_equal(m.seen_elsewhere.load(), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

// ---- an exception in flight: a destructor that blocks while unwinding ----

struct Flight {
	std::atomic<int> in_flight_seen{ 0 }; // by the other fiber
	int own = -1;
	std::atomic<bool> unwinding{ false }, done{ false };
};

struct Blocker {
	Flight *f;
	~Blocker()
	{
		f->unwinding = true;
		prt_sleep_ns(2 * 1000 * 1000); // the other fiber runs meanwhile
		f->own = std::uncaught_exceptions();
	}
};

void *unwind_and_block(void *arg)
{
	auto *f = static_cast<Flight *>(arg);

	try {
		Blocker b{ f };
		throw Obj{ 3, 0, {} };
	} catch (Obj &) {
	}
	f->done = true;
	return nullptr;
}

void *count_in_flight(void *arg)
{
	auto *f = static_cast<Flight *>(arg);

	while (!f->done) {
		if (f->unwinding && std::uncaught_exceptions() != 0)
			f->in_flight_seen++;
		prt_yield();
	}
	return nullptr;
}

// std::uncaught_exceptions() is the fiber's own: 1 in the destructor
// that runs while its exception unwinds, 0 in the other fiber meanwhile.
void test_uncaught_count_is_the_fibers(void **)
{
	prt_runtime_t *rt = make_rt(1, 0);
	Flight fl;
	prt_fiber_t a = spawn(rt, 16, 0, unwind_and_block, &fl);
	prt_fiber_t b = spawn(rt, 16, 0, count_in_flight, &fl);

	join(a);
	join(b);
	assert_int_equal(fl.own, 1);
	assert_int_equal(fl.in_flight_seen.load(), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

// ---- preempted inside a catch block ----

struct Hog {
	Pair *p;
	int id;
	std::atomic<int> *done;
};

void *hog_in_catch(void *arg)
{
	auto *h = static_cast<Hog *>(arg);
	volatile uint64_t x = 1;

	for (int r = 0; r < 300; r++) {
		try {
			throw Obj{ h->id, r, {} };
		} catch (Obj &e) {
			// ~0.2 ms of plain computing: time slices end in here.
			for (int i = 0; i < 200000; i++)
				x = x * 6364136223846793005ull + 1;
			if (e.id != h->id || e.round != r || current_id() != h->id * 100000 + r)
				h->p->wrong++;
		}
		if (current_id() != -1)
			h->p->others_seen++;
	}
	(*h->done)++;
	return nullptr;
}

// Two fibers of one priority on one worker, in 50 us time slices, each
// mostly inside a catch block that never calls the runtime.
void test_preempted_in_catch(void **)
{
	prt_runtime_t *rt = make_rt(1, 50 * 1000);
	prt_worker_stats_t st;
	Pair p;
	std::atomic<int> done{ 0 };
	Hog a{ &p, 1, &done }, b{ &p, 2, &done };

	if (prt_runtime_preemptive(rt, nullptr) != 1) {
		fprintf(stderr, "test_cxx: no preemption here (%s): skipped\n",
			prt_runtime_notice(rt) ? prt_runtime_notice(rt) : "?");
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
	prt_fiber_t fa = spawn(rt, 16, 0, hog_in_catch, &a);
	prt_fiber_t fb = spawn(rt, 16, 0, hog_in_catch, &b);

	join(fa);
	join(fb);
	assert_int_equal(done.load(), 2);
	assert_int_equal(p.wrong.load(), 0);
	assert_int_equal(p.others_seen.load(), 0);
	assert_int_equal(prt_worker_stats(rt, 0, &st), 0);
	assert_true(st.time_slices > 0); // the case this is about
	assert_int_equal(prt_runtime_destroy(rt), 0);
}


// ---- function-local statics whose initializer a fiber is switched out of ----
//
// While one fiber runs a static's initializer, another that reaches it
// must wait as a fiber: the C++ runtime's own wait blocks the worker
// thread in the kernel, and a fiber of that worker inside the
// initializer (blocked in it, or preempted in it) then never runs again
// to finish it (lib/cxa_guard.c). Each test waits for its fibers with a
// deadline and reports a hang as a failure.

std::atomic<int> inits_blocking{ 0 }, inits_computing{ 0 }, inits_many[8];
std::atomic<int> arrived{ 0 };

// Is the C++ runtime's one-time construction call proxyrt's, in the
// object that holds proxyrt (this program or libproxyrt.so)? TSan
// intercepts it.
bool guard_is_proxyrts()
{
	Dl_info g, p;
	void *sym = dlsym(RTLD_DEFAULT, "__cxa_guard_acquire");

	return sym && dladdr(sym, &g) && dladdr(reinterpret_cast<void *>(&prt_yield), &p) &&
	       g.dli_fbase == p.dli_fbase;
}

bool skip_unless_ours()
{
	if (guard_is_proxyrts())
		return false;
	fprintf(stderr, "test_cxx: __cxa_guard_acquire is not proxyrt's here (a sanitizer's"
			"): skipped\n");
	return true;
}

// Wait for @wg, at most 60 s; a hang is a failure (the runtime cannot be destroyed then).
void wait_or_fail(prt_waitgroup_t *wg, const char *what)
{
	int rc = prt_waitgroup_timedwait_ns(wg, 60ull * 1000 * 1000 * 1000);

	if (rc == ETIMEDOUT) {
		fprintf(stderr, "test_cxx: %s: the fibers hung (a worker waits for a static's "
				"initializer that one of its own fibers runs)\n", what);
		_exit(1);
	}
	assert_int_equal(rc, 0);
}

// An initializer that blocks (sleeps: any scheduling point does).
int blocking_value()
{
	static int v = [] {
		inits_blocking++;
		for (int i = 0; i < 5; i++)
			prt_sleep_ns(200 * 1000);
		return 42;
	}();
	return v;
}

struct StaticUse {
	std::atomic<int> wrong{ 0 };
};

void *use_blocking(void *arg)
{
	auto *u = static_cast<StaticUse *>(arg);

	if (blocking_value() != 42)
		u->wrong++;
	return nullptr;
}

// Cooperative, one worker: the first fiber sleeps inside the
// initializer, the others reach it meanwhile.
void test_static_init_blocked_in(void **)
{
	if (skip_unless_ours())
		skip();
	prt_runtime_t *rt = make_rt(1, 0);
	prt_waitgroup_t wg;
	prt_fiber_t fib[16];
	int n = 0;
	StaticUse u;

	assert_int_equal(prt_waitgroup_init(&wg), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(prt_waitgroup_spawn(&wg, rt, &fib[n++], nullptr, use_blocking, &u), 0);
	wait_or_fail(&wg, "initializer that sleeps");
	while (n > 0)
		join(fib[--n]);
	assert_int_equal(inits_blocking.load(), 1);
	assert_int_equal(u.wrong.load(), 0);
	assert_int_equal(prt_waitgroup_destroy(&wg), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

// An initializer that computes, without runtime calls, until another
// fiber has come to it (only preemption lets that fiber run), or for a
// bounded count of rounds.
int computing_value()
{
	static int v = [] {
		volatile uint64_t x = 1;

		inits_computing++;
		for (long i = 0; i < 4000L * 1000 * 1000 && !arrived.load(); i++)
			x = x * 6364136223846793005ull + 1;
		return arrived.load() ? 7 : 8;
	}();
	return v;
}

void *use_computing(void *arg)
{
	auto *u = static_cast<StaticUse *>(arg);

	arrived++;
	if (computing_value() != 7)
		u->wrong++;
	return nullptr;
}

void *first_computing(void *arg)
{
	auto *u = static_cast<StaticUse *>(arg);

	if (computing_value() != 7)
		u->wrong++;
	return nullptr;
}

// One worker, 50 us slices: the first fiber is preempted inside the
// initializer, and the second, of its priority, reaches it.
void test_static_init_preempted_in(void **)
{
	if (skip_unless_ours())
		skip();
	prt_runtime_t *rt = make_rt(1, 50 * 1000);
	prt_waitgroup_t wg;
	prt_fiber_t fib[16];
	int n = 0;
	StaticUse u;

	if (prt_runtime_preemptive(rt, nullptr) != 1) {
		fprintf(stderr, "test_cxx: no preemption here (%s): skipped\n",
			prt_runtime_notice(rt) ? prt_runtime_notice(rt) : "?");
		assert_int_equal(prt_runtime_destroy(rt), 0);
		skip();
	}
	assert_int_equal(prt_waitgroup_init(&wg), 0);
	assert_int_equal(prt_waitgroup_spawn(&wg, rt, &fib[n++], nullptr, first_computing, &u), 0);
	assert_int_equal(prt_waitgroup_spawn(&wg, rt, &fib[n++], nullptr, use_computing, &u), 0);
	wait_or_fail(&wg, "initializer preempted");
	while (n > 0)
		join(fib[--n]);
	assert_int_equal(inits_computing.load(), 1);
	assert_int_equal(arrived.load(), 1);
	assert_int_equal(u.wrong.load(), 0);
	assert_int_equal(prt_waitgroup_destroy(&wg), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

// Four statics, each computing a while; 16 fibers on 2 workers in
// 50 us slices (preemptive) or yielding inside (cooperative) reach them
// in turn.
template <int K> int many_value()
{
	static int v = [] {
		volatile uint64_t x = 1;

		inits_many[K]++;
		for (int r = 0; r < 20; r++) {
			for (int i = 0; i < 20000; i++)
				x = x * 6364136223846793005ull + 1;
			if (!prt_runtime_preemptive(prt_runtime_self(), nullptr))
				prt_yield();
		}
		return 100 + K;
	}();
	return v;
}

// Pass 0 uses statics 0-3, pass 1 statics 4-7 (each initializes once a process).
template <int P> void *use_many(void *arg)
{
	auto *u = static_cast<StaticUse *>(arg);
	int sum = many_value<4 * P>() + many_value<4 * P + 1>() + many_value<4 * P + 2>() +
		  many_value<4 * P + 3>();

	if (sum != 400 + 16 * P + 6)
		u->wrong++;
	return nullptr;
}

void test_static_init_many(void **)
{
	if (skip_unless_ours())
		skip();
	for (int pass = 0; pass < 2; pass++) {
		uint64_t q = pass ? 0 : 50 * 1000;
		prt_runtime_t *rt = make_rt(2, q);
		prt_waitgroup_t wg;
		prt_fiber_t fib[16];
		int n = 0;
		StaticUse u;

		assert_int_equal(prt_waitgroup_init(&wg), 0);
		for (int i = 0; i < 16; i++)
			assert_int_equal(prt_waitgroup_spawn(&wg, rt, &fib[n++], nullptr,
							     pass ? use_many<1> : use_many<0>, &u),
					 0);
		wait_or_fail(&wg, q ? "four initializers, preemptive" : "four initializers, cooperative");
		while (n > 0)
			join(fib[--n]);
		for (int k = 4 * pass; k < 4 * pass + 4; k++)
			assert_int_equal(inits_many[k].load(), 1);
		assert_int_equal(u.wrong.load(), 0);
		assert_int_equal(prt_waitgroup_destroy(&wg), 0);
		assert_int_equal(prt_runtime_destroy(rt), 0);
	}
}

// Two fibers pinned to two workers reach each of RACE_N fresh statics at
// once; the initializer needs a helper fiber pinned to worker 1. A fiber
// that looked (the guard free) and then lost it to the other went into
// the C++ runtime's acquire and waited there, as worker 1's thread, and
// the helper never ran (a review: hung 10/10, within the first 25
// statics): fibers now take turns at that call (lib/cxa_guard.c).
constexpr int RACE_N = 300;
prt_sem_t race_req, race_resp;
std::atomic<int> race_bar{ 0 }, race_inits{ 0 };
std::atomic<bool> race_stop{ false };

template <int K> int race_get()
{
	static int v = [] {
		race_inits++;
		prt_sem_post(&race_req);
		prt_sem_wait(&race_resp);
		return K;
	}();
	return v;
}

typedef int (*race_getter)();
template <size_t... I> constexpr std::array<race_getter, RACE_N> race_table(std::index_sequence<I...>)
{
	return { race_get<I>... };
}
const std::array<race_getter, RACE_N> race_tbl = race_table(std::make_index_sequence<RACE_N>{});

void *racer(void *arg)
{
	auto *u = static_cast<StaticUse *>(arg);

	for (int k = 0; k < RACE_N; k++) {
		race_bar++;
		while (race_bar.load() < 2 * (k + 1))
			sched_yield(); // both at the same static at once (the OS's yield: valgrind runs one thread at a time)
		if (race_tbl[k]() != k)
			u->wrong++;
	}
	return nullptr;
}

void *race_helper(void *)
{
	while (prt_sem_wait(&race_req) == 0 && !race_stop)
		prt_sem_post(&race_resp);
	return nullptr;
}

void test_static_init_race_across_workers(void **)
{
	if (skip_unless_ours())
		skip();
	prt_runtime_t *rt = make_rt(2, 0);
	prt_waitgroup_t wg;
	prt_fiber_t fib[2], help;
	StaticUse u;

	assert_int_equal(prt_sem_init(&race_req, 0), 0);
	assert_int_equal(prt_sem_init(&race_resp, 0), 0);
	assert_int_equal(prt_waitgroup_init(&wg), 0);
	help = spawn(rt, 16, 1, race_helper, nullptr);
	for (int i = 0; i < 2; i++) {
		prt_fiber_attr_t a;

		prt_fiber_attr_init(&a);
		prt_workerset_zero(&a.affinity);
		prt_workerset_add(&a.affinity, i);
		a.has_affinity = true;
		assert_int_equal(prt_waitgroup_spawn(&wg, rt, &fib[i], &a, racer, &u), 0);
	}
	wait_or_fail(&wg, "two workers at one static, the initializer needing worker 1");
	join(fib[0]);
	join(fib[1]);
	race_stop = true;
	assert_int_equal(prt_sem_post(&race_req), 0);
	join(help);
	assert_int_equal(race_inits.load(), RACE_N);
	assert_int_equal(u.wrong.load(), 0);
	assert_int_equal(prt_waitgroup_destroy(&wg), 0);
	assert_int_equal(prt_runtime_destroy(rt), 0);
}

} // namespace

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catch_blocks_interleave),
		cmocka_unit_test(test_catch_block_moves),
		cmocka_unit_test(test_uncaught_count_is_the_fibers),
		cmocka_unit_test(test_preempted_in_catch),
		cmocka_unit_test(test_static_init_blocked_in),
		cmocka_unit_test(test_static_init_preempted_in),
		cmocka_unit_test(test_static_init_many),
		cmocka_unit_test(test_static_init_race_across_workers),
	};

	// The tests choose their time slices: not the environment's.
	unsetenv("PRT_PREEMPT_QUANTUM_NS");
	if (argc > 1)
		cmocka_set_test_filter(argv[1]); // a test's name, or a pattern with '*'
	return cmocka_run_group_tests(tests, nullptr, nullptr);
}
