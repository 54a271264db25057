/* SPDX-License-Identifier: MIT */
#ifndef PRT_PLATFORM_H
#define PRT_PLATFORM_H

/* Compiler helpers, a spinlock, futex calls and intrusive lists. */

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define prt__likely(x) __builtin_expect(!!(x), 1)
#define prt__unlikely(x) __builtin_expect(!!(x), 0)
#define prt__noinline __attribute__((noinline))
#define prt__cold __attribute__((cold, noinline))
#define prt__cacheline_aligned __attribute__((aligned(64)))

/*
 * A plain field that other threads read without its lock (a hint, a
 * counter, a snapshot for a dump): every access that can race is a
 * relaxed atomic one. Same code as plain accesses; TSan sees them.
 */
#define PRT_READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define PRT_WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

#define prt__container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Always-on invariant: a broken one means memory is corrupt; stop loudly. */
#define prt__assert(cond) \
	do { if (prt__unlikely(!(cond))) prt__assert_fail(#cond, __FILE__, __LINE__); } while (0)
__attribute__((noreturn, cold)) void prt__assert_fail(const char *what, const char *file, int line);

/*
 * Debug builds (PRT_DEBUG): a mutex or condvar that was destroyed is
 * marked (PRT_DEAD_MAGIC in a spare field; init and zero storage clear
 * it), and using it again aborts with prt__misuse(). Release builds do
 * not look: zero storage is a valid object there.
 */
#define PRT_DEAD_MAGIC 0xdead
__attribute__((noreturn, cold)) void prt__misuse(const char *call, const void *obj);
#if PRT_DEBUG
#define prt__check_live(dbg, call, obj) \
	do { if (prt__unlikely((dbg) == PRT_DEAD_MAGIC)) prt__misuse(call, obj); } while (0)
#define prt__mark_dead(dbg) ((dbg) = PRT_DEAD_MAGIC)
#else
#define prt__check_live(dbg, call, obj) ((void)0)
#define prt__mark_dead(dbg) ((void)0)
#endif

static inline void prt__cpu_relax(void)
{
#if defined(__x86_64__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/*
 * Full barrier after an atomic read-modify-write, for a store-then-load
 * pair whose store is not seq_cst (the kernel's smp_mb__after_atomic()):
 * the plain stores before the RMW are visible before the seq_cst loads
 * after it. On x86 the RMW's lock prefix already is a full barrier, so
 * only the compiler is held back; elsewhere (AArch64) it is C11's
 * seq_cst fence, a DMB ISH.
 */
static inline void prt__mb_after_atomic(void)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}

/*
 * Test-and-test-and-set spinlock. Held only for a few dozen instructions
 * (queue edits), never across a switch or a syscall, but for a run
 * queue's lock its worker thread keeps after a yield (sched_priv.h,
 * "The yield's lock bias"), which the run-queue calls take (prt__rq_lock).
 */
typedef struct { atomic_uint v; } prt__spinlock_t;

static inline void prt__spin_init(prt__spinlock_t *l)
{
	atomic_init(&l->v, 0);
}

static inline bool prt__spin_trylock(prt__spinlock_t *l)
{
	/* acquire: pairs with the release in prt__spin_unlock */
	return atomic_load_explicit(&l->v, memory_order_relaxed) == 0 &&
	       atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0;
}

/* Contended: spin, and yield the CPU now and then (see platform.c). */
void prt__spin_lock_slow(prt__spinlock_t *l);

static inline void prt__spin_lock(prt__spinlock_t *l)
{
	/* acquire: pairs with the release in prt__spin_unlock */
	if (prt__likely(atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0))
		return;
	prt__spin_lock_slow(l);
}

static inline void prt__spin_unlock(prt__spinlock_t *l)
{
	atomic_store_explicit(&l->v, 0, memory_order_release);
}

/*
 * membarrier(2), MEMBARRIER_CMD_PRIVATE_EXPEDITED: a full memory barrier
 * on every CPU that runs a thread of this process, before it returns
 * (the asymmetric fence of the run queues' lock bias, sched_priv.h).
 * prt__membarrier_ready registers the process for it, once (a property
 * of the process, kept by the kernel: shared by every runtime in it);
 * false if the kernel lacks it or refuses (seccomp), and the bias is
 * then not used. prt__membarrier only after ready said true.
 */
bool prt__membarrier_ready(void);
void prt__membarrier(void);

/*
 * errno, read and written out of line (platform.c): __errno_location()
 * is a const function, and a compiler that sees it called twice in one
 * function may keep the first address, which is another thread's after
 * a switch in between (the fiber moved). Every errno access of the
 * library's in code that may switch goes through these.
 */
int prt__errno_get(void);
void prt__errno_set(int e);
/*
 * The result of a system call made for a caller, with the caller's errno
 * put back (@saved, prt__errno_get() before the call): the library never
 * sets errno (README, "Errors"), which is each fiber's own (switch.h).
 * @r as the call returned it; returns @r, or -errno if @r < 0.
 */
long prt__sys_ret(long r, int saved);

static inline int prt__futex_wait(atomic_uint *addr, unsigned val)
{
	int saved = prt__errno_get();

	return (int)prt__sys_ret(syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0),
				 saved);
}

/* Like prt__futex_wait, giving up after @ns nanoseconds (-ETIMEDOUT). */
static inline int prt__futex_wait_ns(atomic_uint *addr, unsigned val, uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
	int saved = prt__errno_get();

	return (int)prt__sys_ret(syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, &ts, NULL, 0),
				 saved);
}

/*
 * @n rounded up to a multiple of @page (a power of two), saturating at
 * the largest multiple: a size never wraps to a small one. A size that
 * big then fails where it is mapped (-ENOMEM).
 */
static inline size_t prt__page_round_sat(size_t n, size_t page)
{
	if (n > SIZE_MAX - (page - 1))
		return SIZE_MAX & ~(page - 1);
	return (n + page - 1) & ~(page - 1);
}

static inline void prt__futex_wake(atomic_uint *addr, int n)
{
	int saved = prt__errno_get();

	prt__sys_ret(syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0), saved);
}

/* Doubly linked circular list with a sentinel head (libuv queue.h style). */
struct prt__list {
	struct prt__list *next, *prev;
};

static inline void prt__list_init(struct prt__list *h)
{
	h->next = h->prev = h;
}

static inline bool prt__list_empty(const struct prt__list *h)
{
	return h->next == h;
}

static inline void prt__list_add_tail(struct prt__list *h, struct prt__list *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void prt__list_add_head(struct prt__list *h, struct prt__list *n)
{
	n->next = h->next;
	n->prev = h;
	h->next->prev = n;
	h->next = n;
}

static inline void prt__list_del(struct prt__list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->next = n->prev = n;
}

/*
 * The environment variable @name as a count (ns, bytes): true and *@out
 * if it is set to decimal digits only that fit in 64 bits. Anything
 * else (empty, a sign, spaces, hex, an exponent, an overflow) is
 * ignored: false, and the caller keeps its configured value.
 */
bool prt__env_u64(const char *name, uint64_t *out);

/*
 * How many bytes of string @s to keep in at most @max (a name cut to its
 * buffer): strnlen(@s, @max), moved back to a UTF-8 character boundary
 * when the cut falls inside a character (a review: names cut mid-character).
 */
static inline size_t prt__utf8_cut(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (s[n])
		while (n && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	return n;
}

#endif
