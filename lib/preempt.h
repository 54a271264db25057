/* SPDX-License-Identifier: MIT */
#ifndef PRT_PREEMPT_H
#define PRT_PREEMPT_H

/*
 * Preemption (preempt.c; docs/design.md, "Preemption"): a worker's
 * running fiber is interrupted by a signal aimed at the worker thread,
 * from its own POSIX timers (time slices, the timer watch, a deferred
 * preemption's retry) or from another thread (a wakeup of a fiber that
 * outranks what it runs). The handler (preempt_sig.c, which says why it
 * is compiled apart) runs no scheduler code: if the
 * fiber may be stopped where it is, it makes it call preempt.c's
 * preempt_eval() on its own stack (arch/ctx.h, prt__ctx_interrupt),
 * which decides under the rq lock; else it defers. Off (quantum 0), none of this exists: no
 * handler, no timers, and the scheduler's hooks are one compare.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct prt_runtime;
struct prt__worker;
struct prt__fiber;

/* Per-worker state (prt__worker.pw). */
struct prt__wpreempt {
	/* Set before the worker runs fibers (creation, its thread's start), then read-only. */
	uint64_t quantum;       /* time slice, ns; 0: the runtime is cooperative */
	int sig;                /* the preemption signal */
	pid_t tid;              /* the worker thread, which the timers aim at */
	/*
	 * Signals 1-64 the worker thread blocks at its scheduling points
	 * (read at its start, and again at a pick after an interrupt found
	 * another mask: mask_stale). An interrupt that finds another mask in
	 * the interrupted context is deferred: the fiber runs an
	 * application's signal handler (the kernel blocked that signal for
	 * it; a switch there would run other fibers on top of the handler's
	 * frame, and the handler's caller may be the library's own code),
	 * or it blocked signals itself, which a switch would hand to the
	 * next fiber on this thread.
	 */
	uint64_t base_mask;
	atomic_bool mask_stale; /* set by the handler, cleared by a pick that reads the mask again */
	bool timers_ok;         /* the three timers exist */
	/*
	 * @tick counts the worker thread's CPU time (CLOCK_THREAD_CPUTIME_ID),
	 * not the monotonic clock: a quantum of one kernel tick or more
	 * (preempt.c, tick_clock()).
	 */
	bool tick_cpu;
	int start_err;          /* prt__preempt_worker_start's result, for prt_runtime_create */
	/* preempt.c, "the timers": kernel timer ids (timer_create(2) itself, not libc's timer_t). */
	int watch, tick, retry;
	/* Under the worker's rq.lock (and rq.serve_prio, the priority served, is there). */
	uint8_t ticking;        /* @tick runs: PRT_TICK_CPU or PRT_TICK_MONO; 0: it does not */
	/*
	 * stats.switches at the previous tick: written under rq.lock and by
	 * the worker's own handler (a tick that finds switches since needs
	 * no look), so an atomic that this one thread writes.
	 */
	_Atomic uint64_t tick_snap;
	/*
	 * The fiber a fiber above the contention preempted (preempt_switch
	 * with no slice's end), and tick_snap then: when the worker comes
	 * back to it (prt__preempt_picked) with no tick in between, the
	 * switches to and from the fiber above do not count, and its slice
	 * goes on (SCHED_RR's rule: a preempted thread completes the
	 * unexpired portion of its quantum). Counted, a fiber above woken
	 * more often than the quantum kept the fibers of one priority below
	 * it from ever sharing the worker. Under rq.lock.
	 */
	struct prt__fiber *exc_fiber;
	/*
	 * Fibers stopped here by an interrupt that have not run since
	 * (fiber.preempted; they resume on this worker): fibers that compute
	 * without calling the runtime. A fiber that parks on I/O while one
	 * waits here has its request made at once (prt__io_park_req): the
	 * batch would otherwise wait for that fiber's slice to end, and a
	 * call the kernel completes at once (an accept with a connection
	 * waiting, a recv with data there) cost its fiber a slice of the
	 * other's each. This thread's.
	 */
	unsigned nr_stopped;
	uint64_t exc_snap;
	/*
	 * Where the handler last stopped the fiber (its pc), and the seq of
	 * the table of ranges it judged by (prt__ranges.seq): preempt_eval
	 * judges the pc again when the table changed since, whoever made it
	 * again (this worker, another, an idle one, a new runtime). This
	 * thread's.
	 */
	uintptr_t stop_pc;
	unsigned stop_seq;
	int exc_prio; /* exc_fiber's priority then (the fiber itself may be queued elsewhere since) */
	/*
	 * A monotonic tick stopped while a fiber above the contention ran
	 * (prt__preempt_picked): what was left of its period, in ns, for
	 * the pick back down to exc_fiber (0: none). Under rq.lock.
	 */
	uint64_t tick_left;
	/*
	 * Ticks received (the handler counts them; this thread's), and its
	 * value when a slice was last extended (preempt.c, "Time-slice
	 * extension"): a later tick ends an extended slice at the next
	 * runtime call too, not only in the fiber's own code.
	 */
	_Atomic unsigned tick_seq;
	unsigned ext_seq;
	/*
	 * 1 + the switch count (stats.switches) when a slice was last
	 * extended: equal to 1 + the count now while the fiber extended
	 * then still runs (its one extension used). Not the owed bit in
	 * nheld, which the handler also sets (preempt_sig.c, mark_owed).
	 */
	uint64_t ext_sw;
	uint64_t watch_at;      /* @watch fires then (ns: a deadline plus the slack), PRT_NEVER if not armed */
	/*
	 * PRT_PEV_* bits, one word so that a pick looks at them with one load.
	 * Set by anyone, cleared at the worker's next pick: PRT_PEV_KICKED, a
	 * thread signalled it for a wakeup (one signal in flight is enough);
	 * PRT_PEV_PENDING, the PRT_PSRC_* bits of interrupts that could not
	 * stop the fiber where it was (the next scheduling point,
	 * prt_preempt_enable() or the retry honours them). Set by the handler:
	 * PRT_PEV_WATCH_FIRED, @watch fired; whoever arms it next, under
	 * rq.lock, learns so.
	 */
	atomic_uint events;
	/* @retry is armed (the worker thread's own: its handler, or a fiber on it). */
	atomic_uint retry_armed;
	/*
	 * Retries deferred again in a row since a pick or an interrupt last
	 * honoured what was deferred: each waits twice as long as the one
	 * before (preempt_sig.c, retry_backoff). The worker thread's own
	 * (its handler counts, its picks reset).
	 */
	atomic_uint retry_streak;
	/*
	 * How long past its deadline @watch fires (ns): 0, or, while watch
	 * interrupts keep landing where the fiber cannot be stopped (the
	 * library, libc: a fiber that calls the runtime, whose scheduling
	 * points run the timers anyway), doubled from
	 * PRT_PREEMPT_WATCH_SLACK_NS up to PRT_PREEMPT_WATCH_SLACK_MAX_NS
	 * from the second such interrupt in a row (@watch_deferred: reset by
	 * one that stops the fiber and when the worker goes idle); halved by
	 * each that stops the fiber, 0 below the first step (a hog's sleepers
	 * are woken on time again within a few rounds). One alone is no
	 * pattern: a signal that lands in a switch, or in the settime of a
	 * pick, is deferred as well, and a slack turns the watch's lead off
	 * (W4's H woke 100-170 us late after each). The worker thread's own:
	 * its handler writes them, watch_arm reads @watch_slack.
	 */
	_Atomic uint64_t watch_slack;
	atomic_uint watch_deferred;
	/*
	 * The watch's lead (preempt.c, watch_arm: the busy side of
	 * cfg.timer_lead_ns): how late its signals come here (ns, a max
	 * that decays by an eighth per sample, measured at each watch
	 * interrupt that stopped the fiber); @watch_early, the watch armed
	 * now fires that much before the deadline (for a sleeper that
	 * outranks what runs), and the look spins the rest of the way. The
	 * worker thread's own, under rq.lock.
	 */
	uint64_t watch_late;
	bool watch_early;
};

/*
 * What a preemption signal of worker w carries (si_value.sival_ptr is
 * (char *)w + one of these): which of its timers sent it, or a kick.
 */
enum {
	PRT_PSRC_WATCH = 0,
	PRT_PSRC_TICK = 1,
	PRT_PSRC_RETRY = 2,
	PRT_PSRC_KICK = 3,
	PRT_PSRC_MAX = PRT_PSRC_KICK,
};

/* struct prt__wpreempt.ticking: which clock @tick counts (tick_cpu) */
#define PRT_TICK_CPU 1u
#define PRT_TICK_MONO 2u

/*
 * prt__worker.pick_slow: what makes a pick of a preemptive runtime take
 * the hook's slow half (the inline half reads them with ntimers and
 * deferred in one load). Under rq.lock.
 */
#define PRT_PSLOW_WATCH 1u /* @watch is armed (watch_at) */
#define PRT_PSLOW_EXC 2u   /* a slice waits to go on (exc_fiber) */
#define PRT_PSLOW_TICK 4u  /* @ticking is not PRT_TICK_CPU: the tick may have to start or pause */

/* struct prt__wpreempt.events */
#define PRT_PEV_PENDING(src) (1u << (src))
#define PRT_PEV_PENDING_ALL 0xfu /* WATCH ... KICK */
#define PRT_PEV_KICKED 0x10u
#define PRT_PEV_WATCH_FIRED 0x20u
/* the handler found the thread's alternate stack changed (preempt_sig.c, altstack_as_base) */
#define PRT_PEV_ALTSTACK 0x40u

/*
 * A deferred preemption is tried again after this long (ns); a retry
 * deferred again waits twice as long, up to PRT_PREEMPT_RETRY_MAX_NS.
 */
#define PRT_PREEMPT_RETRY_NS 50000u
#define PRT_PREEMPT_RETRY_MAX_NS 800000u
/* The timer watch's slack (struct prt__wpreempt.watch_slack): first step and bound, ns. */
#define PRT_PREEMPT_WATCH_SLACK_NS 10000u
#define PRT_PREEMPT_WATCH_SLACK_MAX_NS 1000000u
/*
 * Stack the preemption path may use below the interrupt frame: a fiber
 * interrupted with less than this (plus the frame) left is not
 * preempted there, as Go's asyncPreemptStack.
 */
#if PRT_USE_ASAN
#define PRT_PREEMPT_STACK_RESERVE (32u * 1024u)
#else
#define PRT_PREEMPT_STACK_RESERVE (8u * 1024u)
#endif

/*
 * The time slice a runtime configured with @q ns uses: the environment's
 * PRT_PREEMPT_QUANTUM_NS if it is set to 0 or a valid slice, else @q
 * (0: cooperative; valgrind and the sanitizers may still turn it off).
 */
uint64_t prt__preempt_quantum_env(uint64_t q);

/*
 * Runtime creation: decide whether @rt preempts (cfg and the
 * PRT_PREEMPT_QUANTUM_NS environment; never under valgrind or with a
 * sanitizer runtime linked into the program: a notice says so in
 * @notice), and if so take the signal handler and learn the code
 * ranges. 0 or -errno; nothing to undo on failure.
 */
int prt__preempt_rt_init(struct prt_runtime *rt, uint64_t quantum, int sig, char *notice,
			 size_t notice_len);
/* Runtime destroy (its workers have stopped): give the handler back. */
void prt__preempt_rt_fini(struct prt_runtime *rt);
/* Worker thread, before it runs fibers: its timers, the signal unblocked. 0 or -errno. */
int prt__preempt_worker_start(struct prt__worker *w);
void prt__preempt_worker_stop(struct prt__worker *w);

/* The slow halves of sched_int.h's hooks (quantum != 0 only). */
void prt__preempt_picked_slow(struct prt__worker *w, struct prt__fiber *next,
			      struct prt__fiber *donor);
bool prt__preempt_queued_slow(struct prt__worker *t, struct prt__fiber *f);
void prt__preempt_kick(struct prt__worker *t);
/*
 * @f's priority changed, or its mutex wait ended (@wait_ended), while a
 * worker of its runtime may serve it (run it, or run an owner in its
 * place): that worker is interrupted if it must now run something else.
 * @held: the worker whose rq lock the caller holds (others are only
 * tried, and kicked when busy), or NULL. Preemptive runtimes only.
 */
/* An interrupt deferred is honoured at a runtime call that never switches otherwise (deadline.c). */
void prt__preempt_safe_point_slow(struct prt__worker *w);
void prt__preempt_served_changed(struct prt__fiber *f, struct prt__worker *held, bool wait_ended);
/*
 * The calling fiber's unlock released its last lock after its time
 * slice was extended for it (PRT_HELD_SLICE_OWED, prt__held_drop): the
 * slice ends now. A scheduling point (it may switch); cold.
 */
void prt__preempt_slice_owed(void);
/*
 * The idle loop, before it sleeps: pick up code ranges of libraries
 * loaded since, and disarm the watch (a sleeping worker wakes for its
 * own timers).
 */
void prt__preempt_idle(struct prt__worker *w);

#endif
