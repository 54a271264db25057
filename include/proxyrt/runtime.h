/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_RUNTIME_H
#define PROXYRT_RUNTIME_H

#include <proxyrt/common.h>

PRT_EXTERN_C_BEGIN

/* An M:N runtime: a set of worker threads and the fibers they run. */
typedef struct prt_runtime prt_runtime_t;

/* Flags of prt_runtime_config_t.flags. */
enum {
	/*
	 * Do not bind worker threads to their PUs. They inherit the
	 * creating thread's CPU affinity.
	 */
	PRT_RT_NO_PIN = 1u << 0,
	/* One worker per PU (hardware thread) instead of one per core. */
	PRT_RT_PER_PU = 1u << 1,
	/*
	 * Say on stderr why binding was skipped (synthetic/XML topology),
	 * and which setting a refused configuration (-EINVAL from
	 * prt_runtime_create) has wrong.
	 */
	PRT_RT_VERBOSE = 1u << 2,
	/*
	 * Mutexes of PRT_MUTEX_PROXY_DEFAULT do not use proxy execution in
	 * this runtime's fibers: waiters sleep in priority order instead.
	 */
	PRT_RT_NO_PROXY = 1u << 3,
	/*
	 * Leave io_uring's helper threads (io-wq: they run file calls and
	 * writes the kernel cannot do at once) where the kernel puts them:
	 * on the CPU of the worker that submitted the work. By default each
	 * bound worker's helpers run on the runtime's other CPUs
	 * (IORING_REGISTER_IOWQ_AFF), so that a busy worker does not hold
	 * up its own file I/O: a SCHED_FIFO worker that stays busy would
	 * never let them run, and a SCHED_OTHER one now and then holds them
	 * for a time slice (proxyrt/io.h, "File calls"). The price is a
	 * wake-up on another CPU (tens of microseconds), more where those
	 * CPUs are busy with other processes: there this flag may be the
	 * better choice (README, "Fiber I/O", has figures). Nothing changes
	 * for unbound workers (PRT_RT_NO_PIN, synthetic or XML topologies),
	 * a runtime on one CPU, or the epoll backend.
	 */
	PRT_RT_NO_IOWQ_AFF = 1u << 4,
	/*
	 * Ignore the CPU bandwidth limit of the process's cgroup (cgroup v2
	 * cpu.max, v1 cpu.cfs_quota_us; a container's "--cpus"). By
	 * default, on this machine (not a synthetic or XML topology), a
	 * limit below the core count caps the default worker count
	 * (@nworkers 0) at the limit rounded up, and those workers are not
	 * bound to CPUs unless @cpus names them; and any worker count above
	 * the limit counts as more workers than CPUs (their idle spinning
	 * is curbed, see @nworkers). From Go 1.25's GOMAXPROCS default;
	 * README, "Workers and CPUs".
	 */
	PRT_RT_NO_CPU_LIMIT = 1u << 5,
};

/* How fiber stacks are made (prt_runtime_config_t.stack_kind). */
enum prt_stack_kind {
	/*
	 * Default. Each stack is its own mmap with a PROT_NONE guard page
	 * below it: running off the stack faults at once. Each such stack
	 * costs two entries of vm.max_map_count (65530 by default), so
	 * about 30,000 fibers can be alive at once on default settings.
	 */
	PRT_STACK_GUARD = 0,
	/*
	 * For a million fibers: stacks are carved from large slabs (one
	 * mapping per PRT_STACK_SLAB_COUNT stacks), with no guard page. At
	 * every switch away from the fiber its stack pointer must be above
	 * the lowest 256 bytes of the stack, and the lowest 64 bytes are a
	 * canary that must stay zero, read at a switch while the pointer is
	 * within 4 KiB of the bottom and when the fiber ends (so a parked
	 * fiber keeps only its stack's top page resident: about 4.6 KB in
	 * all, README "Stacks"); an overflow is reported (fiber id, name,
	 * stack size) and the process aborts. Overflow between two checks
	 * is caught late (a fiber that went deep and came back up before
	 * its next switch, when it ends; one that never ends, never), not
	 * prevented, so keep stack use well inside the size: what lies
	 * below (another fiber's stack, another mapping) is overwritten
	 * until then. A fault with the stack pointer below the stack (it ran
	 * into memory that is not mapped) is reported at once, as a guard
	 * page's is. Fibers
	 * spawned from a plain thread, or with a non-default stack size, get
	 * a canary stack of their own mapping instead of a slab slot.
	 */
	PRT_STACK_CANARY = 1,
};

#define PRT_STACK_SLAB_COUNT 256
/* Default fiber stack size: 64 KiB, guard page not included. */
#define PRT_STACK_SIZE_DEFAULT (64u * 1024u)
/* Smallest stack size accepted. */
#define PRT_STACK_SIZE_MIN (8u * 1024u)
/* Default bound of each worker's pool of free stacks. */
#define PRT_STACK_POOL_DEFAULT 1024u

/*
 * Runtime configuration. Initialise with prt_runtime_config_init(), then
 * set the fields you need; more fields may be added at the end (the
 * @size field lets the library tell which ones a caller knows).
 */
typedef struct prt_runtime_config {
	/* sizeof(prt_runtime_config_t) as the caller was compiled; set by _init. */
	unsigned size;
	/* PRT_RT_* flags. */
	unsigned flags;
	/*
	 * Number of workers. 0 = one per core (or per PU with
	 * PRT_RT_PER_PU) of the allowed CPUs, at most PRT_MAX_WORKERS (256:
	 * a machine with more gets 256; prt_runtime_nworkers() says how
	 * many), and at most the cgroup's CPU limit rounded up (a
	 * container's "--cpus=1.5" gives 2; see PRT_RT_NO_CPU_LIMIT). More workers than cores is
	 * allowed: they are then spread round-robin over the cores. An idle
	 * worker spins briefly for new work before it sleeps; with more
	 * workers than the CPUs they run on (bound: their PUs; unbound:
	 * those of the creating thread, whose affinity they inherit), at
	 * most half of the busy workers spin, so as not to take CPU time
	 * from the others.
	 */
	int nworkers;
	/*
	 * The CPUs (OS indexes, e.g. "0-3,8") workers may use; NULL = the
	 * process's CPU affinity mask at creation.
	 */
	const char *cpus;
	/*
	 * Describe a machine instead of discovering this one: an hwloc
	 * synthetic description ("pack:2 numa:2 core:8 pu:2") or the path of
	 * an hwloc XML file. At most one may be set. With either, workers
	 * are placed on the described machine and binding is skipped (with a
	 * notice from prt_runtime_notice()), since its PUs are not this
	 * machine's.
	 */
	const char *topology_synthetic;
	const char *topology_xml;
	/*
	 * Default fiber stack size in bytes, rounded up to pages; 0 =
	 * PRT_STACK_SIZE_DEFAULT. One that cannot be mapped makes spawns fail
	 * with -ENOMEM. A fiber starts up to 960 bytes below the top (448
	 * under 16 KiB), a different amount per stack: the tops of stacks of
	 * one size would otherwise all share the same cache sets.
	 */
	size_t stack_size;
	/* enum prt_stack_kind. */
	int stack_kind;
	/* Bound of each worker's pool of free stacks; 0 = PRT_STACK_POOL_DEFAULT. */
	unsigned stack_pool_max;
	/*
	 * enum prt_io_backend (proxyrt/io.h): PRT_IO_AUTO by default. The
	 * environment variable PRT_IO_BACKEND ("epoll", "io_uring" (or
	 * "uring") or "auto", in any case) replaces it; an empty value is as
	 * none; another value is ignored, and prt_runtime_notice() says so.
	 */
	int io_backend;
	/*
	 * Submission queue entries of each worker's io_uring; 0 =
	 * PRT_IO_ENTRIES_DEFAULT; at most 32768 (io_uring's limit; more is
	 * -EINVAL).
	 */
	unsigned io_entries;
	/* Helper threads of prt_offload(); 0 = PRT_OFFLOAD_THREADS_DEFAULT. */
	unsigned offload_threads;
	/*
	 * A signal (e.g. SIGQUIT) that makes the runtime write
	 * prt_runtime_dump() to stderr and go on, as Java's thread dump;
	 * 0 = none (the default). The handler is installed when the first
	 * runtime asking for that signal is created and the previous
	 * disposition put back when the last one is destroyed. Synchronous
	 * fault signals (SEGV, BUS, ILL, FPE), SIGKILL, SIGSTOP, and the
	 * signals from 32 below SIGRTMIN that the C library keeps for itself
	 * (glibc: thread cancellation, setxid) are refused with -EINVAL.
	 * A signal that another live runtime preempts with (its
	 * preempt_signal) is refused with -EBUSY: one handler per signal.
	 */
	int dump_signal;
	/*
	 * Preemption (README, "Preemption"): the time slice, in ns, of a
	 * fiber while another fiber of its priority waits for its worker;
	 * with it, a fiber that becomes runnable on a worker running a fiber
	 * of lower priority interrupts that fiber at once, even one that
	 * never calls the runtime. prt_runtime_config_init() sets
	 * PRT_PREEMPT_QUANTUM_DEFAULT (4 ms). 0 = cooperative: a fiber runs
	 * until it reaches a scheduling point, and nothing is installed (a
	 * caller compiled before this field existed gets 0). A time slice that
	 * ends while the fiber holds a fiber mutex or rwlock is extended until
	 * its last unlock, for at most one more quantum (as Linux's rseq
	 * time-slice extension). A slice of one kernel tick or more (clock_getres() of
	 * CLOCK_MONOTONIC_COARSE: 4 ms at CONFIG_HZ=250) is counted in the
	 * worker thread's CPU time and ends at the first kernel tick at or
	 * after it (its timer rides on that tick: no interrupt of its own,
	 * and no EINTR for a worker blocked in a system call); a shorter one
	 * on the monotonic clock, exactly. Below PRT_PREEMPT_QUANTUM_MIN is
	 * -EINVAL. The environment variable PRT_PREEMPT_QUANTUM_NS, when
	 * set to a plain decimal number that is 0 or a valid slice,
	 * replaces it, a bad configured value too (0 turns preemption off);
	 * anything else in it (a sign or spaces included, or a slice below
	 * the minimum) is ignored, and prt_runtime_notice() says so. Under
	 * valgrind, with the ThreadSanitizer or ASan runtime linked into
	 * the program itself (clang's default; gcc's shared libtsan and
	 * libasan preempt), or where timer_create(2) is refused (a
	 * seccomp profile), the runtime stays cooperative and
	 * prt_runtime_notice() says why.
	 */
	uint64_t preempt_quantum_ns;
	/*
	 * The signal preemption uses; 0 = SIGRTMAX - 3. Its handler is
	 * installed (SA_SIGINFO | SA_ONSTACK | SA_RESTART) when the first
	 * preemptive runtime that uses it is created, and the previous
	 * disposition put back when the last one is destroyed; instances
	 * not sent by the runtime go to the previous handler (dropped if it
	 * was SIG_DFL or SIG_IGN). Only worker threads ever receive it.
	 * Refused (-EINVAL) as dump_signal is, and equal to dump_signal
	 * when the runtime is configured preemptive (its quantum, the
	 * environment's included, is not 0: also where valgrind or a
	 * sanitizer then keeps it cooperative, so that a configuration
	 * means the same everywhere; a quantum of 0 takes no signal for
	 * preemption); -EBUSY if another live runtime uses it as its
	 * dump_signal.
	 */
	int preempt_signal;
	/*
	 * The steal grace, in ns: how long an idle worker lets another
	 * worker keep the fibers queued on it before it takes some. A
	 * worker that queues a fiber and then blocks (a spawner about to
	 * join, a waker about to wait) usually runs it soon, on warm caches;
	 * a fiber taken at once by an idle worker runs on the other CPU after
	 * its descriptor, stack and data cross over, which costs more than a
	 * short fiber's whole run (docs/design.md, section 5; Linux leaves
	 * cache-hot tasks where they are, Go leaves a running P's next
	 * goroutine to it for ~3 us). prt_runtime_config_init() sets
	 * PRT_STEAL_GRACE_DEFAULT; a caller compiled before this field
	 * existed gets the default too. 0 = steal at once; UINT64_MAX =
	 * never steal (fibers still go where they are woken, and idle
	 * workers sleep; a sleeper whose timer is due on a busy worker
	 * waits for that worker). Below UINT64_MAX, a fiber woken by a
	 * timer that an idle worker fired for a busy one is taken at once. Counted per idle worker from when it first sees
	 * such work, across its own short runs; it sleeps until the grace
	 * ends rather than spin. The environment variable
	 * PRT_STEAL_GRACE_NS, when set to a plain decimal number, replaces
	 * it (anything else in it is ignored).
	 * It delays only stealing: a fiber that outranks what its worker
	 * runs preempts it (in a preemptive runtime) without waiting.
	 */
	uint64_t steal_grace_ns;
	/*
	 * The timer lead, in ns: an idle worker that sleeps until a deadline
	 * (a fiber's sleep or timeout, a steal grace) wakes this long before
	 * it and spins the rest of the way (and, preemptive, a busy worker's
	 * interrupt for a sleeper that outranks what it runs fires early by
	 * the lateness measured of such interrupts, at most this, and the
	 * worker spins to the deadline), so that the fiber runs within a
	 * few us of its deadline instead of when the CPU comes out of its
	 * idle sleep (50-200 us in a VM, docs/design.md section 11; Linux
	 * guests' cpuidle-haltpoll and Seastar's idle poll spin for the same
	 * reason). Costs up to this much CPU time per such wakeup: for
	 * latency-sensitive programs (the W4 bench sets 200 us). A kick, an
	 * I/O completion or anything else that ends a sleep ends the spin
	 * too (with epoll, fds that fibers wait on are polled every 64 spin
	 * rounds). 0 = sleep until the deadline (the default; a caller
	 * compiled before this field existed gets 0). Off under valgrind,
	 * and with more workers than CPUs (a spinning worker would take the
	 * CPU from one with work). The
	 * environment variable PRT_TIMER_LEAD_NS, when set to a plain
	 * decimal number, replaces it.
	 */
	uint64_t timer_lead_ns;
	/*
	 * The wait spin, in ns: a fiber about to sleep for an event that
	 * another worker or thread brings (a semaphore unit, a join, a
	 * condvar's signal and mutex, a wait group, an offload job; not its
	 * own I/O or a stream's data, which its own worker collects) spins
	 * for it this long first, when that may pay and costs nobody: more
	 * than one worker, none of them sharing a CPU, another worker busy,
	 * and nothing else for its own worker to do. An event that comes
	 * meanwhile ends the wait with no switch and no cross-CPU wakeup
	 * (W5, two fibers on two workers passing a turn through two
	 * semaphores: 1.7-2.4 us a round trip sleeping, 0.46-0.7 us
	 * spinning, about a bare cache-line ping-pong's time). The spin ends
	 * at once when a fiber is queued on the spinner's worker, when that
	 * worker's I/O or timers need it, at the wait's deadline, and at a
	 * cancel. One fiber at a time spins for a given semaphore (a second
	 * waiter queues, and the spinner then queues behind it), so posts
	 * still go in priority order to the waiters that queued. Costs up to
	 * this much CPU time per wait that ends up sleeping; values above a
	 * few tens of us rarely pay. Go's sync.Mutex and the kernel's
	 * mutexes spin on like terms. Default PRT_WAIT_SPIN_DEFAULT; 0 =
	 * sleep at once (a caller compiled before this field existed gets
	 * the default). Off under valgrind. The environment variable
	 * PRT_WAIT_SPIN_NS, when set to a plain decimal number, replaces it.
	 */
	uint64_t wait_spin_ns;
	/*
	 * The stack decay, in ns: how long free stacks beyond the pools are
	 * kept for the next fibers before they go back to the system. Each
	 * worker keeps up to stack_pool_max free stacks of the default size,
	 * and the runtime's depot as many again per worker, for good. When
	 * more fibers than that end at once, the depot keeps the rest too,
	 * mapped and with their pages; those that no spawn took for a whole
	 * decay period are unmapped (canary slab stacks: their pages given
	 * back) within two periods, by a worker that hands stacks to the
	 * depot or takes them from it, or by an idle worker, which wakes for
	 * it (while every worker stays busy and no stack moves to or from
	 * the depot, they wait for the next of those). Stacks of other sizes
	 * (attr.stack_size) wait likewise for a spawn of the same size, each
	 * until a period after it was freed, at most as many and as many
	 * bytes as the depot keeps for good. A stack that cannot be mapped
	 * (-ENOMEM: RLIMIT_AS, vm.max_map_count) first makes the runtime
	 * give back all that the decay keeps, and is then tried again.
	 * Without it, each spawn beyond the pools, of another size, or from
	 * a plain thread (which takes from the depot) mapped a stack and
	 * each fiber end unmapped one, a few system calls each: with 2500
	 * fibers alive at once on one worker, a spawn and join took 2.4 us
	 * instead of 0.12; with a 128 KiB attr.stack_size, 9.8 us instead of
	 * 0.13 (docs/design.md, section 14, "Stack decay"). jemalloc's
	 * dirty-page decay and glibc's cache of thread stacks work the same
	 * way. prt_runtime_config_init() sets PRT_STACK_DECAY_DEFAULT; a
	 * caller compiled before this field existed gets the default too. 0
	 * = keep nothing beyond the pools: a stack freed past them goes back
	 * at once. UINT64_MAX = keep them until prt_runtime_destroy().
	 */
	uint64_t stack_decay_ns;
} prt_runtime_config_t;

/*
 * The default time slice, chosen from measurements (docs/design.md,
 * section 16): 4 ms, one kernel tick at CONFIG_HZ=250, so that the tick
 * rides on the kernel's own (CPU-time clock: no timer interrupt of its
 * own, which costs ~45 us in a VM, and no EINTR from slices); W1, W3
 * and W6 within 2% of cooperative. Go's is 10 ms; Linux's EEVDF base
 * slice 0.75-3 ms.
 */
#define PRT_PREEMPT_QUANTUM_DEFAULT 4000000u
/*
 * Shortest time slice cfg.preempt_quantum_ns accepts: 50 us. A timer
 * signal costs 30-50 us in a VM (docs/design.md, section 16); with
 * shorter slices a worker mostly takes ticks, and a review measured a
 * semaphore round trip at 3-6 ms with 10 us slices, against 0.5-1 us
 * with 100 us (it was 10 us until then).
 */
#define PRT_PREEMPT_QUANTUM_MIN 50000u

#define PRT_IO_ENTRIES_DEFAULT 256u
#define PRT_OFFLOAD_THREADS_DEFAULT 4u
/*
 * The default steal grace (cfg.steal_grace_ns): 20 us, from measurements
 * (docs/design.md, section 5).
 */
#define PRT_STEAL_GRACE_DEFAULT 20000u
/* cfg.wait_spin_ns's default: 4 us (docs/design.md, section 6, "The wait spin"). */
#define PRT_WAIT_SPIN_DEFAULT 4000u
/* cfg.stack_decay_ns's default: 1 s (a freed stack past the pools is unmapped 1-2 s after its last use). */
#define PRT_STACK_DECAY_DEFAULT 1000000000u

/* Fill @cfg with the defaults. Context: any thread, never switches. */
PRT_API void prt_runtime_config_init(prt_runtime_config_t *cfg);

/*
 * Create a runtime and start its workers (they park until there is
 * work). @cfg may be NULL for the defaults.
 *
 * Returns 0 and sets *@out, or -EINVAL (bad configuration: a @size this
 * library does not know, unknown PRT_RT_* bits in @flags, bad CPU list,
 * both topologies set, a stack size below PRT_STACK_SIZE_MIN, a
 * @stack_kind or @io_backend outside its enum, @io_entries above
 * io_uring's 32768, a negative @nworkers or more than PRT_MAX_WORKERS,
 * no allowed CPU, a refused @dump_signal or @preempt_signal, a quantum
 * below PRT_PREEMPT_QUANTUM_MIN), -ENOMEM, or the error of
 * hwloc, of a worker's eventfd, epoll or io_uring set-up (-EMFILE,
 * -ENOMEM, ...) or of thread creation (-EAGAIN; also -EAGAIN when 64
 * runtimes with a dump signal live at once, the process's dump slots),
 * -EBUSY (a dump_signal or preempt_signal that another live runtime
 * uses in the other role); nothing is left behind
 * on failure. With PRT_IO_AUTO, io_uring refused outright (its probe
 * fails) is no error: I/O runs on epoll and prt_runtime_notice() says
 * why; a worker's ring that cannot be set up after the probe succeeded
 * is one.
 * Context: any thread; a fiber may create another runtime.
 */
PRT_API int prt_runtime_create(prt_runtime_t **out, const prt_runtime_config_t *cfg);

/*
 * Wait until every fiber of @rt has finished (detached ones included),
 * then stop the workers and free everything, including fibers that
 * finished but were never joined.
 *
 * Calls from outside @rt (plain threads, fibers of other runtimes) may
 * race it: destroy first refuses new outside spawns (-ESHUTDOWN) and
 * waits for every fiber, including those of outside spawns that returned
 * 0, to end; then it refuses every other outside call (as for a
 * destroyed runtime: -EINVAL, or -ESRCH for a fiber handle) and waits
 * for those still in progress (a join, an unlock waking one of its
 * fibers, a dump) to finish before it stops the workers and frees
 * anything. No call ever touches a freed runtime.
 *
 * Returns 0, -EINVAL if @rt is NULL or not a live runtime (destroyed
 * already, or being destroyed by another call), or -EDEADLK if called
 * from one of @rt's own fibers (it would wait for itself). Every call
 * given a destroyed runtime returns -EINVAL (NULL for
 * prt_runtime_notice), unless a new runtime has since been created at
 * the same address; fiber handles of a destroyed runtime are stale
 * (-ESRCH), whatever has been created since.
 * Context: a plain thread or a fiber of another runtime; blocks the
 * calling thread.
 */
PRT_API int prt_runtime_destroy(prt_runtime_t *rt);

/*
 * Convenience: create a runtime with @cfg (NULL = defaults), run
 * @main_fn(@arg) as a fiber of default attributes (named "main" in
 * dumps), wait for it, store
 * its result in *@result (if not NULL), wait for the fibers it left and
 * destroy the runtime. Returns 0, -EINVAL (NULL @main_fn), the error of
 * prt_runtime_create, or -ENOMEM if the main fiber could not be spawned
 * (the runtime is destroyed again). prt_run_ex(@cfg, @main_fn, @arg,
 * @result, NULL, NULL).
 * Context: a plain thread; blocks it.
 */
PRT_API int prt_run(const prt_runtime_config_t *cfg, void *(*main_fn)(void *), void *arg,
		    void **result);

/*
 * As prt_run, but hand the runtime to @on_exit(@rt, @exit_arg) before
 * destroying it, so that its counters (prt_worker_stats), its dump or
 * anything else about it can still be read: @on_exit runs on the
 * calling thread once the main fiber has been joined and every fiber
 * it left has ended, also if spawning the main fiber failed (then
 * before any fiber ran); not if the runtime could not be created. @rt
 * is live during the call and destroyed right after it: do not keep it.
 * @on_exit may spawn fibers (they are waited for by the destroy) but
 * must not destroy @rt. NULL @on_exit: as prt_run. Returns as prt_run.
 * Context: a plain thread; blocks it.
 */
PRT_API int prt_run_ex(const prt_runtime_config_t *cfg, void *(*main_fn)(void *), void *arg,
		       void **result, void (*on_exit)(prt_runtime_t *rt, void *exit_arg),
		       void *exit_arg);

/*
 * Number of workers of @rt, or -EINVAL (not live, or being torn down by
 * prt_runtime_destroy). Context: any thread, never switches.
 */
PRT_API int prt_runtime_nworkers(const prt_runtime_t *rt);

/*
 * A notice about how the runtime was set up (for example why workers
 * are not bound), or NULL if there is nothing to say (or @rt is not
 * live). The string lives as long as @rt. Context: any thread, never
 * switches.
 */
PRT_API const char *prt_runtime_notice(const prt_runtime_t *rt);

/*
 * Write a text snapshot of @rt to @fd: one line per worker (the fiber it
 * runs, the donor it serves, its run-queue length, whether it sleeps),
 * one per fiber that exists (id, name, state, worker, priority, what it
 * waits for: a mutex and its owner, a condvar, a join, a sleep, an fd
 * and op, park, offload; "state=dead holding=N" for one that ended
 * holding N mutexes, which stay locked; "preempted" for a runnable fiber
 * a preemption switched out), then one per mutex wait chain, from each
 * waiting fiber through mutex and owner to the fiber that can run:
 *
 *   proxyrt dump: runtime=0x55d0c0a0 workers=2 fibers=4
 *   worker 0: running=9 donor=4 runq=1 idle=0
 *   fiber 9 "logger" state=running worker=0 prio=1 eff_prio=28 for=4
 *   fiber 4 "rt" state=runnable worker=0 prio=28 wait=mutex:0x55d0c200 name="log" owner=9
 *   fiber 7 "high" state=runnable worker=1 prio=10 wait=mutex:0x55d0c1c0 owner=3
 *   fiber 3 "low" state=blocked worker=1 prio=0 wait=io:read:fd=5
 *   chain: 4 "rt" -> mutex "log" 0x55d0c200 -> 9 "logger" [running]
 *   chain: 7 "high" -> mutex 0x55d0c1c0 -> 3 "low" [io:read:fd=5]
 *   proxyrt dump end
 *
 * "prio" is the fiber's own priority. A fiber a worker runs in a donor's
 * place (proxy execution: "logger" above runs for "rt", which waits for
 * the mutex it holds) also shows "eff_prio", the priority it runs at
 * (its donor's), and "for", the donor's id; without them a fiber's
 * effective priority is its own. Mutexes and condvars named at init
 * (prt_mutexattr_setname, prt_condattr_setname) show name="..." after
 * their address on the lines of their waiters, and before it in chains;
 * '"', newlines and control characters in names are printed as '?'.
 *
 * Nothing is stopped: each line is a snapshot of its fiber as the dump
 * passed it. Also available on a signal: see cfg.dump_signal.
 * Returns 0, -EINVAL (NULL or not live @rt, negative @fd) or the -errno
 * of write(2). A prt_runtime_destroy racing it waits for it to finish
 * (or it returns -EINVAL if destroy got there first).
 * Context: any thread, including @rt's own fibers (it blocks in write(2)).
 */
PRT_API int prt_runtime_dump(prt_runtime_t *rt, int fd);

/* Placement of one worker, from prt_runtime_worker_info(). */
typedef struct prt_worker_info {
	/* OS index of the PU the worker is placed on. */
	int pu_os_index;
	/* Logical index of the core holding that PU. */
	int core_index;
	/* Logical index of the NUMA node holding it (0 if none). */
	int numa_index;
	/* Logical index of the package holding it (0 if none). */
	int package_index;
	/* 1 if the worker thread is bound to its PU. */
	int pinned;
} prt_worker_info_t;

/*
 * Where worker @index is placed. Returns 0, or -EINVAL for a bad @rt,
 * @index or @out. Context: any thread, never switches.
 */
PRT_API int prt_runtime_worker_info(const prt_runtime_t *rt, int index, prt_worker_info_t *out);

/*
 * The order in which worker @index looks at the others when it steals:
 * nearest first (SMT sibling, shared L2, shared L3, same NUMA node,
 * same package, the rest). Writes up to @max indexes to @order and
 * returns how many workers the order has (nworkers - 1), or -EINVAL.
 * Context: any thread, never switches.
 */
PRT_API int prt_runtime_steal_order(const prt_runtime_t *rt, int index, int *order, int max);

/* Per-worker counters, from prt_worker_stats(). */
typedef struct prt_worker_stats {
	uint64_t switches;   /* context switches made by the worker */
	uint64_t steals;     /* fibers this worker took from other workers */
	uint64_t parks;      /* times the worker went to sleep for lack of work */
	uint64_t fibers_run; /* fibers started (first switch into them) here */
	uint64_t proxy_picks;    /* picks that ran a mutex owner in a waiter's place */
	uint64_t migrations;     /* waiters (donors) moved to their owner's worker */
	uint64_t attachments;    /* donors attached to a sleeping owner */
	/*
	 * Unlocks on this worker that handed a mutex or rwlock to a waiter
	 * (a plain thread's unlocks are counted on no worker)
	 */
	uint64_t handoffs;
	uint64_t io_submits;     /* io_uring_enter calls that submitted requests */
	uint64_t io_ops;         /* I/O requests completed on this worker (epoll: calls) */
	uint64_t preemptions;    /* fibers switched out by preemption (interrupted) */
	/*
	 * Interrupts that could not stop the fiber where it was (runtime,
	 * libc or other denied code, prt_preempt_disable(), too little
	 * stack): the preemption happened later
	 */
	uint64_t preempt_deferred;
	uint64_t time_slices;    /* preemptions because a time slice ended */
	/*
	 * Time slices that ended while the fiber held a fiber mutex or rwlock
	 * and were extended until its last unlock, for at most one more
	 * quantum (see "Preemption" in the README)
	 */
	uint64_t slice_extensions;
	/*
	 * Times another thread took back this worker's run-queue lock, which
	 * a yield keeps where no other thread wanted it for a while (with
	 * membarrier(2); see "Scheduling" in the README); 0 where the bias
	 * is off ($PRT_YIELD_BIAS=0, ThreadSanitizer, valgrind)
	 */
	uint64_t bias_revocations;
} prt_worker_stats_t;

/*
 * Read worker @index's counters: the counts since the runtime was
 * created or since the last prt_worker_stats_reset() of that worker (a
 * racy but tear-free snapshot while the runtime runs; each counter is
 * read on its own). Returns 0 or -EINVAL (bad @rt, @index or NULL
 * @out). Context: any thread, never switches.
 */
PRT_API int prt_worker_stats(const prt_runtime_t *rt, int index, prt_worker_stats_t *out);

/*
 * Reset every counter of prt_worker_stats_t of worker @index to 0, or
 * of every worker if @index is -1; if @before is not NULL, store in it
 * the counts up to the reset (their sum over workers for -1), as
 * prt_worker_stats would have returned them: a read and a reset in one,
 * so a monitor that calls it periodically counts every event in exactly
 * one period. The workers go on counting while it runs (their counters
 * are relaxed atomics only they write, and a reset never writes them: it
 * records their values as the new zero), so an event counted during the
 * call lands on one side of the reset or the other, never lost or
 * counted twice. Two resets of one worker at once are not ordered
 * against each other: a count may then be reported by both, and a
 * reader may see either zero (never a value that wrapped: differences
 * saturate at 0). Returns 0, or -EINVAL (bad @rt,
 * @index below -1 or not a worker; nothing reset).
 * Context: any thread, never switches.
 */
PRT_API int prt_worker_stats_reset(prt_runtime_t *rt, int index, prt_worker_stats_t *before);

/*
 * Is @rt preemptive? Returns 1 (and the time slice in *@quantum_ns, if
 * not NULL), 0 if it is cooperative (cfg.preempt_quantum_ns 0, or
 * preemption unavailable: see prt_runtime_notice()), or -EINVAL.
 * Context: any thread, never switches.
 */
PRT_API int prt_runtime_preemptive(const prt_runtime_t *rt, uint64_t *quantum_ns);

/*
 * Index of the worker running the calling fiber, or -EPERM from a plain
 * thread. The value can change at any scheduling point.
 * Context: any thread, never switches.
 */
PRT_API int prt_worker_index(void);

/* The runtime of the calling fiber, or NULL from a plain thread. */
PRT_API prt_runtime_t *prt_runtime_self(void);

PRT_EXTERN_C_END

#endif
