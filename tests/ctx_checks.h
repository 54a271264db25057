/* SPDX-License-Identifier: MIT */
#ifndef PRT_TESTS_CTX_CHECKS_H
#define PRT_TESTS_CTX_CHECKS_H

/*
 * Checks of the raw context switch (lib/arch/<arch>/switch.S and
 * ctx_init.c), shared by the cmocka test (tests/test_ctx.c) and the
 * plain selftest (tests/ctx_selftest_main.c) that scripts/check-aarch64.sh
 * cross-builds and runs under qemu-user. Each check returns 0 on success
 * and nonzero on failure, after saying why on stderr.
 *
 * A context's entry must never return, so every context here ends parked
 * in a switch back to main and its stack is freed while it is suspended
 * there; nothing ever resumes it.
 *
 * Needs no libm: rounding modes are set through the control registers
 * (with <fenv.h>'s FE_* bit values), the way libc's fesetround does.
 */

#include <fenv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/ctx.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "ctx_checks.h: no register checks for this architecture"
#endif

#define CTXC_STACK_SIZE	(64 * 1024)
#define CTXC_GUARD	64		/* bytes above the stack that must stay intact */
#define CTXC_ROUNDS	1000
#define CTXC_MAX_MSGS	8		/* failures printed per check */

#define CTXC_FAIL(st, ...)						\
	do {								\
		if ((st)->fails++ < CTXC_MAX_MSGS) {			\
			fprintf(stderr, "ctx check %s: ", __func__);	\
			fprintf(stderr, __VA_ARGS__);			\
			fputc('\n', stderr);				\
		}							\
	} while (0)

struct ctxc_stack {
	unsigned char *base;
	void *top;
};

/* A 64 KiB stack whose top is @skew bytes below the end of the block. */
static int ctxc_stack_alloc(struct ctxc_stack *s, size_t skew)
{
	s->top = NULL;
	s->base = aligned_alloc(64, CTXC_STACK_SIZE + CTXC_GUARD);
	if (!s->base) {
		fprintf(stderr, "ctx check: cannot allocate a stack\n");
		return -1;
	}
	memset(s->base, 0, CTXC_STACK_SIZE);
	memset(s->base + CTXC_STACK_SIZE, 0xa5, CTXC_GUARD);
	s->top = s->base + CTXC_STACK_SIZE - skew;
	return 0;
}

/* Frees the stack; nonzero if anything wrote above its end. */
static int ctxc_stack_free(struct ctxc_stack *s)
{
	int bad = 0;

	for (size_t i = 0; i < CTXC_GUARD; i++)
		bad |= s->base[CTXC_STACK_SIZE + i] != 0xa5;
	if (bad)
		fprintf(stderr, "ctx check: a context wrote above its stack top\n");
	free(s->base);
	s->base = NULL;
	return bad;
}

/* prt__ctx_init() must hand back a stack pointer inside the stack. */
static int ctxc_sp_in_stack(const struct ctxc_stack *s, void *sp)
{
	uintptr_t p = (uintptr_t)sp;

	if (p >= (uintptr_t)s->base + 1024 && p < (uintptr_t)s->top)
		return 0;
	fprintf(stderr, "ctx check: prt__ctx_init returned %p outside [%p, %p)\n",
		sp, (void *)s->base, s->top);
	return 1;
}

/*
 * The end of every context here: hand control back to main for good.
 * Deliberately not noreturn, not even as the optimiser can infer it:
 * under ASan a call to a noreturn function on a stack ASan does not know
 * makes __asan_handle_no_return warn of possible false positives. Should
 * a parked context ever be resumed, its entry returns into the
 * trampoline's trap.
 */
static volatile int ctxc_parked = 1;

static void ctxc_park(void **save_sp, void **main_sp)
{
	while (ctxc_parked)
		prt__ctx_switch(save_sp, *main_sp, NULL);
}

/* ------------------------------------------------------------------ */
/* Ping-pong: values travel both ways through @arg, 1000 round trips. */

struct ctxc_pp {
	void *main_sp, *ctx_sp;
	unsigned long fails;
	unsigned entered;
	unsigned received;
};

static struct ctxc_pp ctxc_pp;
static int ctxc_pp_data;

static void *ctxc_pp_to_ctx(unsigned i)
{
	return (void *)(uintptr_t)(UINT64_C(0x5a5a00000000f000) + i);
}

static void *ctxc_pp_to_main(unsigned i)
{
	return (void *)(uintptr_t)(UINT64_C(0xc3c3000000000000) ^ ((uint64_t)i << 4));
}

static void ctxc_pp_entry(void *from, void *data)
{
	struct ctxc_pp *pp = &ctxc_pp;
	void *v = from;

	pp->entered++;
	if (from != ctxc_pp_to_ctx(0))
		CTXC_FAIL(pp, "entry got from=%p, want %p", from, ctxc_pp_to_ctx(0));
	if (data != &ctxc_pp_data)
		CTXC_FAIL(pp, "entry got data=%p, want %p", data, (void *)&ctxc_pp_data);
	for (unsigned i = 0; i < CTXC_ROUNDS; i++) {
		if (v != ctxc_pp_to_ctx(i))
			CTXC_FAIL(pp, "round %u: context got %p, want %p",
				  i, v, ctxc_pp_to_ctx(i));
		pp->received++;
		v = prt__ctx_switch(&pp->ctx_sp, pp->main_sp, ctxc_pp_to_main(i));
	}
	CTXC_FAIL(pp, "context resumed after the last round");
	ctxc_park(&pp->ctx_sp, &pp->main_sp);
}

static int ctx_check_ping_pong(void)
{
	struct ctxc_pp *pp = &ctxc_pp;
	struct ctxc_stack st;

	memset(pp, 0, sizeof(*pp));
	if (ctxc_stack_alloc(&st, 0))
		return 1;
	pp->ctx_sp = prt__ctx_init(st.top, ctxc_pp_entry, &ctxc_pp_data);
	if (ctxc_sp_in_stack(&st, pp->ctx_sp)) {
		ctxc_stack_free(&st);
		return 1;
	}
	for (unsigned i = 0; i < CTXC_ROUNDS; i++) {
		void *r = prt__ctx_switch(&pp->main_sp, pp->ctx_sp, ctxc_pp_to_ctx(i));

		if (r != ctxc_pp_to_main(i))
			CTXC_FAIL(pp, "round %u: main got %p, want %p",
				  i, r, ctxc_pp_to_main(i));
	}
	if (pp->entered != 1)
		CTXC_FAIL(pp, "entry ran %u times, want 1", pp->entered);
	if (pp->received != CTXC_ROUNDS)
		CTXC_FAIL(pp, "context saw %u rounds, want %u", pp->received, CTXC_ROUNDS);
	if (ctxc_stack_free(&st))
		pp->fails++;
	return pp->fails != 0;
}

/* ------------------------------------------------------------------ */
/*
 * Callee-saved registers. ctxc_regs_switch() loads a pattern into every
 * callee-saved register, calls prt__ctx_switch() itself from inside one
 * asm statement, and stores what the registers hold once it is resumed.
 * Main and the other context both switch through it, each with its own
 * pattern, so whichever side is resumed must find its own pattern and not
 * the other's.
 *
 * The asm saves and restores every callee-saved register it loads
 * (including the frame pointer, which cannot be named as a clobber), so
 * the compiler's own values survive at any optimisation level; it names
 * the caller-saved registers as clobbers because a call happens.
 */

#if defined(__x86_64__)
#define CTXC_NREGS	6	/* rbx rbp r12 r13 r14 r15 */
#else
#define CTXC_NREGS	19	/* x19-x28 x29, d8-d15 */
#endif

struct ctxc_regs_blk {
	void **save_sp;			/* 0 */
	void *load_sp;			/* 8 */
	void *arg;			/* 16 */
	void *ret;			/* 24 */
	uint64_t pattern[20];		/* 32 */
	uint64_t got[20];		/* 192 */
};

_Static_assert(sizeof(void *) == 8, "the asm below assumes LP64");
_Static_assert(__builtin_offsetof(struct ctxc_regs_blk, ret) == 24 &&
	       __builtin_offsetof(struct ctxc_regs_blk, pattern) == 32 &&
	       __builtin_offsetof(struct ctxc_regs_blk, got) == 192,
	       "offsets are hard-coded in ctxc_regs_switch()");

__attribute__((noinline)) static void ctxc_regs_switch(struct ctxc_regs_blk *b)
{
#if defined(__x86_64__)
	/*
	 * Step over the red zone (this may be a leaf function as far as the
	 * compiler knows) and realign, keeping the old rsp and b on the
	 * stack: the switch preserves rsp, nothing else survives the call.
	 */
	__asm__ volatile(
		"movq	%0, %%rax\n\t"
		"movq	%%rsp, %%rcx\n\t"
		"subq	$128, %%rsp\n\t"
		"andq	$-16, %%rsp\n\t"
		"pushq	%%rcx\n\t"
		"pushq	%%rax\n\t"
		"pushq	%%rbx\n\t"
		"pushq	%%rbp\n\t"
		"pushq	%%r12\n\t"
		"pushq	%%r13\n\t"
		"pushq	%%r14\n\t"
		"pushq	%%r15\n\t"
		"movq	32(%%rax), %%rbx\n\t"
		"movq	40(%%rax), %%rbp\n\t"
		"movq	48(%%rax), %%r12\n\t"
		"movq	56(%%rax), %%r13\n\t"
		"movq	64(%%rax), %%r14\n\t"
		"movq	72(%%rax), %%r15\n\t"
		"movq	0(%%rax), %%rdi\n\t"
		"movq	8(%%rax), %%rsi\n\t"
		"movq	16(%%rax), %%rdx\n\t"
		"call	prt__ctx_switch\n\t"
		"movq	48(%%rsp), %%rdi\n\t"
		"movq	%%rax, 24(%%rdi)\n\t"
		"movq	%%rbx, 192(%%rdi)\n\t"
		"movq	%%rbp, 200(%%rdi)\n\t"
		"movq	%%r12, 208(%%rdi)\n\t"
		"movq	%%r13, 216(%%rdi)\n\t"
		"movq	%%r14, 224(%%rdi)\n\t"
		"movq	%%r15, 232(%%rdi)\n\t"
		"popq	%%r15\n\t"
		"popq	%%r14\n\t"
		"popq	%%r13\n\t"
		"popq	%%r12\n\t"
		"popq	%%rbp\n\t"
		"popq	%%rbx\n\t"
		"popq	%%rax\n\t"
		"popq	%%rsp\n\t"
		:
		: "r"(b)
		: "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		  "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
		  "xmm15",
#ifdef __AVX512F__
		  "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22",
		  "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
		  "xmm30", "xmm31",
#endif
		  "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)",
		  "st(7)", "memory", "cc");
#else
	/*
	 * Save area (176 bytes, keeps sp 16-byte aligned): x29/x30 at 0,
	 * x19-x28 at 16, d8-d15 at 96, b at 160. v8-v15 are also named as
	 * clobbers because only their low halves are callee-saved.
	 */
	__asm__ volatile(
		"mov	x9, %x0\n\t"
		"stp	x29, x30, [sp, #-176]!\n\t"
		"stp	x19, x20, [sp, #16]\n\t"
		"stp	x21, x22, [sp, #32]\n\t"
		"stp	x23, x24, [sp, #48]\n\t"
		"stp	x25, x26, [sp, #64]\n\t"
		"stp	x27, x28, [sp, #80]\n\t"
		"stp	d8, d9, [sp, #96]\n\t"
		"stp	d10, d11, [sp, #112]\n\t"
		"stp	d12, d13, [sp, #128]\n\t"
		"stp	d14, d15, [sp, #144]\n\t"
		"str	x9, [sp, #160]\n\t"
		"ldp	x19, x20, [x9, #32]\n\t"
		"ldp	x21, x22, [x9, #48]\n\t"
		"ldp	x23, x24, [x9, #64]\n\t"
		"ldp	x25, x26, [x9, #80]\n\t"
		"ldp	x27, x28, [x9, #96]\n\t"
		"ldr	x29, [x9, #112]\n\t"
		"ldp	d8, d9, [x9, #120]\n\t"
		"ldp	d10, d11, [x9, #136]\n\t"
		"ldp	d12, d13, [x9, #152]\n\t"
		"ldp	d14, d15, [x9, #168]\n\t"
		"ldp	x0, x1, [x9, #0]\n\t"
		"ldr	x2, [x9, #16]\n\t"
		"bl	prt__ctx_switch\n\t"
		"ldr	x9, [sp, #160]\n\t"
		"str	x0, [x9, #24]\n\t"
		"stp	x19, x20, [x9, #192]\n\t"
		"stp	x21, x22, [x9, #208]\n\t"
		"stp	x23, x24, [x9, #224]\n\t"
		"stp	x25, x26, [x9, #240]\n\t"
		"stp	x27, x28, [x9, #256]\n\t"
		"str	x29, [x9, #272]\n\t"
		"stp	d8, d9, [x9, #280]\n\t"
		"stp	d10, d11, [x9, #296]\n\t"
		"stp	d12, d13, [x9, #312]\n\t"
		"stp	d14, d15, [x9, #328]\n\t"
		"ldp	d14, d15, [sp, #144]\n\t"
		"ldp	d12, d13, [sp, #128]\n\t"
		"ldp	d10, d11, [sp, #112]\n\t"
		"ldp	d8, d9, [sp, #96]\n\t"
		"ldp	x27, x28, [sp, #80]\n\t"
		"ldp	x25, x26, [sp, #64]\n\t"
		"ldp	x23, x24, [sp, #48]\n\t"
		"ldp	x21, x22, [sp, #32]\n\t"
		"ldp	x19, x20, [sp, #16]\n\t"
		"ldp	x29, x30, [sp], #176\n\t"
		:
		: "r"(b)
		: "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9",
		  "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", "x18",
		  "x30",
		  "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9",
		  "v10", "v11", "v12", "v13", "v14", "v15", "v16", "v17", "v18",
		  "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27",
		  "v28", "v29", "v30", "v31", "memory", "cc");
#endif
}

static const char *const ctxc_reg_names[CTXC_NREGS] = {
#if defined(__x86_64__)
	"rbx", "rbp", "r12", "r13", "r14", "r15",
#else
	"x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
	"x29", "d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15",
#endif
};

struct ctxc_rg {
	void *main_sp, *ctx_sp;
	unsigned long fails;
	unsigned checked;	/* rounds the context verified */
};

static struct ctxc_rg ctxc_rg;

/* splitmix64: distinct, nonzero-looking patterns per side, round and reg. */
static uint64_t ctxc_pattern(unsigned side, unsigned round, unsigned reg)
{
	uint64_t z = ((uint64_t)side << 40 | (uint64_t)round << 8 | reg) +
		     UINT64_C(0x9e3779b97f4a7c15);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void ctxc_regs_fill(struct ctxc_regs_blk *b, unsigned side, unsigned round)
{
	memset(b->got, 0, sizeof(b->got));
	for (unsigned r = 0; r < CTXC_NREGS; r++)
		b->pattern[r] = ctxc_pattern(side, round, r);
}

static void ctxc_regs_verify(struct ctxc_rg *rg, const struct ctxc_regs_blk *b,
			     const char *who, unsigned round)
{
	for (unsigned r = 0; r < CTXC_NREGS; r++)
		if (b->got[r] != b->pattern[r])
			CTXC_FAIL(rg, "%s round %u: %s = %#llx, want %#llx", who,
				  round, ctxc_reg_names[r],
				  (unsigned long long)b->got[r],
				  (unsigned long long)b->pattern[r]);
}

static void ctxc_rg_entry(void *from, void *data)
{
	struct ctxc_rg *rg = &ctxc_rg;

	if (from != (void *)(uintptr_t)0x2000 || data != rg)
		CTXC_FAIL(rg, "entry got from=%p data=%p", from, data);
	for (unsigned round = 0;; round++) {
		struct ctxc_regs_blk b = {
			.save_sp = &rg->ctx_sp,
			.load_sp = rg->main_sp,
			.arg = (void *)(uintptr_t)(0x1000 + round),
		};

		ctxc_regs_fill(&b, 1, round);
		ctxc_regs_switch(&b);
		ctxc_regs_verify(rg, &b, "context", round);
		if (b.ret != (void *)(uintptr_t)(0x2000 + round + 1))
			CTXC_FAIL(rg, "context round %u: got arg %p", round, b.ret);
		rg->checked++;
	}
}

static int ctx_check_callee_saved(void)
{
	struct ctxc_rg *rg = &ctxc_rg;
	struct ctxc_stack st;

	memset(rg, 0, sizeof(*rg));
	if (ctxc_stack_alloc(&st, 0))
		return 1;
	rg->ctx_sp = prt__ctx_init(st.top, ctxc_rg_entry, rg);
	for (unsigned round = 0; round < CTXC_ROUNDS; round++) {
		struct ctxc_regs_blk b = {
			.save_sp = &rg->main_sp,
			.load_sp = rg->ctx_sp,
			.arg = (void *)(uintptr_t)(0x2000 + round),
		};

		ctxc_regs_fill(&b, 0, round);
		ctxc_regs_switch(&b);
		ctxc_regs_verify(rg, &b, "main", round);
		if (b.ret != (void *)(uintptr_t)(0x1000 + round))
			CTXC_FAIL(rg, "main round %u: got arg %p", round, b.ret);
	}
	if (rg->checked != CTXC_ROUNDS - 1)
		CTXC_FAIL(rg, "context verified %u rounds, want %u",
			  rg->checked, CTXC_ROUNDS - 1);
	if (ctxc_stack_free(&st))
		rg->fails++;
	return rg->fails != 0;
}

/* ------------------------------------------------------------------ */
/*
 * Floating-point control words are per context. New contexts start with
 * the defaults (round to nearest, exceptions masked, no flush-to-zero,
 * x87 extended precision); a mode set in one context neither leaks into
 * another nor is lost across switches.
 */

struct ctxc_fpctl {
	uint64_t a;	/* x86-64: MXCSR without status flags; aarch64: FPCR */
	uint64_t b;	/* x86-64: x87 control word; aarch64: 0 */
};

#if defined(__x86_64__)
#define CTXC_MXCSR_DAZ	0x0040u
#define CTXC_MXCSR_FTZ	0x8000u

static unsigned ctxc_get_mxcsr(void)
{
	unsigned v;

	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static void ctxc_set_mxcsr(unsigned v)
{
	__asm__ volatile("ldmxcsr %0" : : "m"(v));
}

static unsigned ctxc_get_x87cw(void)
{
	unsigned short v;

	__asm__ volatile("fnstcw %0" : "=m"(v));
	return v;
}

static void ctxc_set_x87cw(unsigned v)
{
	unsigned short cw = (unsigned short)v;

	__asm__ volatile("fldcw %0" : : "m"(cw));
}

static const struct ctxc_fpctl ctxc_fp_default = { 0x1f80, 0x037f };

static struct ctxc_fpctl ctxc_fp_get(void)
{
	return (struct ctxc_fpctl){ ctxc_get_mxcsr() & ~0x3fu, ctxc_get_x87cw() };
}

/* Like glibc's fegetround: the x87 RC bits. */
static int ctxc_fp_round(void)
{
	return (int)(ctxc_get_x87cw() & 0xc00);
}

/*
 * Like glibc's fesetround (both the x87 and the MXCSR RC bits), plus
 * what only a full save keeps: x87 precision control @pc (0 single,
 * 2 double) and extra MXCSR bits @mx.
 */
static void ctxc_fp_set(int mode, unsigned pc, unsigned mx)
{
	ctxc_set_x87cw((ctxc_get_x87cw() & ~0xf00u) | (unsigned)mode | pc << 8);
	ctxc_set_mxcsr((ctxc_get_mxcsr() & ~0x6000u) | (unsigned)mode << 3 | mx);
}
#else
#define CTXC_FPCR_FZ	(1u << 24)
#define CTXC_FPCR_DN	(1u << 25)

static uint64_t ctxc_get_fpcr(void)
{
	uint64_t v;

	__asm__ volatile("mrs %0, fpcr" : "=r"(v));
	return v;
}

static void ctxc_set_fpcr(uint64_t v)
{
	__asm__ volatile("msr fpcr, %0" : : "r"(v));
}

static const struct ctxc_fpctl ctxc_fp_default = { 0, 0 };

static struct ctxc_fpctl ctxc_fp_get(void)
{
	return (struct ctxc_fpctl){ ctxc_get_fpcr(), 0 };
}

static int ctxc_fp_round(void)
{
	return (int)(ctxc_get_fpcr() & 0xc00000);
}

/* Like glibc's fesetround, plus FPCR bits @bits; @pc is x86-only. */
static void ctxc_fp_set(int mode, unsigned pc, unsigned bits)
{
	(void)pc;
	ctxc_set_fpcr((ctxc_get_fpcr() & ~UINT64_C(0xc00000)) | (unsigned)mode | bits);
}
#endif

static int ctxc_fp_eq(struct ctxc_fpctl x, struct ctxc_fpctl y)
{
	return x.a == y.a && x.b == y.b;
}

/* 1/3 in the current rounding mode, in double and in long double. */
static double ctxc_third(long double *ld)
{
	volatile double one = 1.0, three = 3.0;
	volatile long double lone = 1.0L, lthree = 3.0L;

	*ld = lone / lthree;
	return one / three;
}

struct ctxc_fp {
	void *main_sp, *a_sp, *b_sp;
	unsigned long fails;
	struct ctxc_fpctl a_ctl, b_ctl;
	double a_third, b_third;
	long double a_lthird, b_lthird;
	unsigned steps;
};

static struct ctxc_fp ctxc_fp;

static void ctxc_fp_check(struct ctxc_fp *fp, const char *who, int mode,
			  struct ctxc_fpctl want)
{
	struct ctxc_fpctl got = ctxc_fp_get();

	if (ctxc_fp_round() != mode)
		CTXC_FAIL(fp, "%s: rounding mode %#x, want %#x", who,
			  (unsigned)ctxc_fp_round(), (unsigned)mode);
	if (!ctxc_fp_eq(got, want))
		CTXC_FAIL(fp, "%s: control words %#llx/%#llx, want %#llx/%#llx",
			  who, (unsigned long long)got.a, (unsigned long long)got.b,
			  (unsigned long long)want.a, (unsigned long long)want.b);
}

static void ctxc_fp_a(void *from, void *data)
{
	struct ctxc_fp *fp = data;

	(void)from;
	fp->steps++;
	ctxc_fp_set(FE_UPWARD, 2, 0);
#if defined(__x86_64__)
	ctxc_set_mxcsr(ctxc_get_mxcsr() | CTXC_MXCSR_FTZ);
#else
	ctxc_set_fpcr(ctxc_get_fpcr() | CTXC_FPCR_FZ);
#endif
	fp->a_ctl = ctxc_fp_get();
	fp->a_third = ctxc_third(&fp->a_lthird);
	prt__ctx_switch(&fp->a_sp, fp->b_sp, NULL);	/* first run of B */

	fp->steps++;
	ctxc_fp_check(fp, "A after B", FE_UPWARD, fp->a_ctl);
	{
		long double l;
		double d = ctxc_third(&l);

		if (d != fp->a_third || l != fp->a_lthird)
			CTXC_FAIL(fp, "A after B: 1/3 rounds differently");
	}
	prt__ctx_switch(&fp->a_sp, fp->b_sp, NULL);
	ctxc_park(&fp->a_sp, &fp->main_sp);
}

static void ctxc_fp_b(void *from, void *data)
{
	struct ctxc_fp *fp = data;

	(void)from;
	fp->steps++;
	ctxc_fp_check(fp, "new context B", FE_TONEAREST, ctxc_fp_default);
	ctxc_fp_set(FE_DOWNWARD, 0, 0);
#if defined(__x86_64__)
	ctxc_set_mxcsr(ctxc_get_mxcsr() | CTXC_MXCSR_DAZ);
#else
	ctxc_set_fpcr(ctxc_get_fpcr() | CTXC_FPCR_DN);
#endif
	fp->b_ctl = ctxc_fp_get();
	fp->b_third = ctxc_third(&fp->b_lthird);
	if (!(fp->b_third < fp->a_third) || !(fp->b_lthird < fp->a_lthird))
		CTXC_FAIL(fp, "1/3 rounded down (%a, %La) is not below 1/3 rounded up (%a, %La)",
			  fp->b_third, fp->b_lthird, fp->a_third, fp->a_lthird);
	prt__ctx_switch(&fp->b_sp, fp->a_sp, NULL);

	fp->steps++;
	ctxc_fp_check(fp, "B after A", FE_DOWNWARD, fp->b_ctl);
	prt__ctx_switch(&fp->b_sp, fp->main_sp, NULL);
	ctxc_park(&fp->b_sp, &fp->main_sp);
}

static int ctx_check_fp_control(void)
{
	struct ctxc_fp *fp = &ctxc_fp;
	struct ctxc_stack sa, sb;
	struct ctxc_fpctl main_ctl = ctxc_fp_get();
	int main_mode = ctxc_fp_round();
	int rc;

	memset(fp, 0, sizeof(*fp));
	if (ctxc_stack_alloc(&sa, 0))
		return 1;
	if (ctxc_stack_alloc(&sb, 0)) {
		ctxc_stack_free(&sa);
		return 1;
	}
	fp->a_sp = prt__ctx_init(sa.top, ctxc_fp_a, fp);
	fp->b_sp = prt__ctx_init(sb.top, ctxc_fp_b, fp);
	prt__ctx_switch(&fp->main_sp, fp->a_sp, NULL);	/* A, B, A, B, main */

	if (fp->steps != 4)
		CTXC_FAIL(fp, "ran %u context steps, want 4", fp->steps);
	ctxc_fp_check(fp, "main after A and B", main_mode, main_ctl);
	/* Put main's mode back even if the switch lost it. */
#if defined(__x86_64__)
	ctxc_set_x87cw((unsigned)main_ctl.b);
	ctxc_set_mxcsr((ctxc_get_mxcsr() & 0x3fu) | (unsigned)main_ctl.a);
#else
	ctxc_set_fpcr(main_ctl.a);
#endif
	rc = ctxc_stack_free(&sa) | ctxc_stack_free(&sb);
	return fp->fails != 0 || rc;
}

/* ------------------------------------------------------------------ */
/*
 * Stack alignment: entry, and a function it calls, run on a 16-byte
 * aligned stack, whether or not the stack top handed to prt__ctx_init()
 * was aligned. A 16-aligned local is only aligned if the incoming sp was
 * (the compiler trusts the ABI), and glibc's x86-64 printf of a double
 * spills SSE registers with aligned stores, so misalignment also crashes.
 */

struct ctxc_al {
	void *main_sp, *ctx_sp;
	unsigned long fails;
	unsigned probes;
	/* The first misalignment, printed by main: printf might crash here. */
	const char *bad_where;
	uintptr_t bad_local, bad_sp;
	size_t skew;
};

static struct ctxc_al ctxc_al;

static void ctxc_al_check(struct ctxc_al *al, const char *where,
			  uintptr_t local, uintptr_t sp)
{
	al->probes++;
	if (((local | sp) & 15) && !al->bad_where) {
		al->bad_where = where;
		al->bad_local = local;
		al->bad_sp = sp;
	}
}

/*
 * A macro, so that the local and the frame are those of the function it
 * is used in. On x86-64 the frame pointer (which __builtin_frame_address
 * forces) is CFA - 16, so it is 16-aligned iff the call was made with an
 * aligned rsp; on aarch64 sp itself must always be 16-aligned.
 */
#if defined(__x86_64__)
#define CTXC_SP() ((uintptr_t)__builtin_frame_address(0))
#else
#define CTXC_SP() ({ uintptr_t sp_; __asm__ volatile("mov %0, sp" : "=r"(sp_)); sp_; })
#endif
#define CTXC_AL_PROBE(al, where)					\
	do {								\
		_Alignas(16) volatile unsigned char buf_[16];		\
									\
		buf_[0] = 1;						\
		ctxc_al_check((al), (where), (uintptr_t)buf_, CTXC_SP());	\
	} while (0)

__attribute__((noinline)) static void ctxc_al_callee(struct ctxc_al *al)
{
	volatile double x = 1.25;
	char s[32];

	CTXC_AL_PROBE(al, "function called from entry");
	if (al->bad_where)
		return;		/* report it rather than crash in printf */
	snprintf(s, sizeof(s), "%.3f %g", x, x * 2);
	if (strcmp(s, "1.250 2.5") != 0)
		CTXC_FAIL(al, "snprintf on the context stack gave \"%s\"", s);
}

static void ctxc_al_entry(void *from, void *data)
{
	struct ctxc_al *al = data;

	(void)from;
	CTXC_AL_PROBE(al, "entry");
	ctxc_al_callee(al);
	ctxc_park(&al->ctx_sp, &al->main_sp);
}

static int ctx_check_stack_alignment(void)
{
	static const size_t skews[] = { 0, 8, 4, 1, 24 };
	const size_t n = sizeof(skews) / sizeof(skews[0]);
	struct ctxc_al *al = &ctxc_al;
	int rc = 0;

	memset(al, 0, sizeof(*al));
	for (size_t i = 0; i < n && !al->bad_where; i++) {
		struct ctxc_stack st;

		if (ctxc_stack_alloc(&st, skews[i]))
			return 1;
		al->skew = skews[i];
		al->ctx_sp = prt__ctx_init(st.top, ctxc_al_entry, al);
		prt__ctx_switch(&al->main_sp, al->ctx_sp, NULL);
		rc |= ctxc_stack_free(&st);
	}
	if (al->bad_where)
		CTXC_FAIL(al, "stack top end-%zu: %s: 16-aligned local at %#llx, "
			  "frame/stack pointer %#llx", al->skew, al->bad_where,
			  (unsigned long long)al->bad_local,
			  (unsigned long long)al->bad_sp);
	else if (al->probes != 2 * n)
		CTXC_FAIL(al, "ran %u probes, want %zu", al->probes, 2 * n);
	return al->fails != 0 || rc;
}

/* ------------------------------------------------------------------ */
/*
 * Interrupting a context (preemption's mechanism, arch/ctx.h): a timer
 * signal lands in a loop that holds a known value in every register the
 * architecture has (general registers, flags, the FP/SIMD registers to
 * their full width, the FP control and status words, the x87 stack, the
 * x86-64 red zone below rsp); the handler has prt__ctx_interrupt() make
 * the loop call a function that overwrites all of them (and checks it
 * was entered with the stack aligned and, on x86-64, DF clear). After
 * CTXI_HITS such calls, the loop stores every register and each must
 * hold what it held before.
 */
#include <signal.h>
#include <sys/time.h>
#include <ucontext.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#define CTXI_HITS 200

#if defined(__x86_64__)
struct ctxi_state {
	uint64_t gpr[15]; /* rax rbx rcx rdx rsi rdi rbp r8-r15 */
	uint64_t flags;
	uint64_t rsp;
	uint32_t mxcsr;
	uint16_t fcw;
	uint16_t pad;
	unsigned char st0[16]; /* an 80-bit x87 value */
	uint64_t k[8];
	unsigned char rz[128]; /* the red zone, lowest address first; its last 8 bytes are flags */
	unsigned char pad2[32];
	unsigned char vec[32][64];
} __attribute__((aligned(64)));
_Static_assert(__builtin_offsetof(struct ctxi_state, k) == 160 &&
	       __builtin_offsetof(struct ctxi_state, rz) == 224 &&
	       __builtin_offsetof(struct ctxi_state, vec) == 384, "layout used by the asm");
#define CTXI_PC(uc) ((uc)->uc_mcontext.gregs[REG_RIP])
/* CF PF AF ZF SF DF OF (bit 1 reads as 1): AC would trap unaligned accesses. */
#define CTXI_FLAGS 0xcd5u
#else
struct ctxi_state {
	uint64_t x[31];
	uint64_t nzcv, fpsr, fpcr, sp, pad;
	unsigned char q[32][16];
} __attribute__((aligned(16)));
_Static_assert(__builtin_offsetof(struct ctxi_state, nzcv) == 248 &&
	       __builtin_offsetof(struct ctxi_state, q) == 288 &&
	       sizeof(struct ctxi_state) == 800, "layout used by the asm");
#define CTXI_PC(uc) ((uc)->uc_mcontext.pc)
#endif

/* Used by the asm below; it reads and writes them through their own names. */
static struct ctxi_state ctxi_in __asm__("ctxi_in") __attribute__((used));
static struct ctxi_state ctxi_out __asm__("ctxi_out") __attribute__((used));
static uint64_t ctxi_entry_arg __asm__("ctxi_entry_arg") __attribute__((used));
static volatile uint32_t ctxi_clobbers __asm__("ctxi_clobbers") __attribute__((used));
#if defined(__x86_64__)
static uint64_t ctxi_saved_rsp __asm__("ctxi_saved_rsp") __attribute__((used));
static uint32_t ctxi_saved_mxcsr __asm__("ctxi_saved_mxcsr") __attribute__((used));
static uint16_t ctxi_saved_fcw __asm__("ctxi_saved_fcw") __attribute__((used));
static uint8_t ctxi_level __asm__("ctxi_level") __attribute__((used)); /* 0 SSE, 1 AVX, 2 AVX-512 */
static uint64_t ctxi_entry_flags __asm__("ctxi_entry_flags") __attribute__((used));
static uint64_t ctxi_entry_rsp __asm__("ctxi_entry_rsp") __attribute__((used));
static uint32_t ctxi_clobber_mxcsr __asm__("ctxi_clobber_mxcsr") __attribute__((used)) = 0x5f80;
/* What the called function found: MXCSR, and the x87 environment (fnstenv: control, status, tags). */
static uint32_t ctxi_entry_mxcsr __asm__("ctxi_entry_mxcsr") __attribute__((used));
static uint16_t ctxi_entry_fenv[14] __asm__("ctxi_entry_fenv") __attribute__((used));
#else
static uint64_t ctxi_saved_sp[2] __asm__("ctxi_saved_sp") __attribute__((used)); /* sp, fpcr */
static uint64_t ctxi_entry_sp __asm__("ctxi_entry_sp") __attribute__((used));
static uint64_t ctxi_entry_fpcr __asm__("ctxi_entry_fpcr") __attribute__((used));
#endif

/*
 * (Global and hidden: a GOT entry against a local asm label would lose
 * its offset on aarch64.) ctxi_run(): load ctxi_in into the registers, spin in ctxi_loop until
 * the handler moves the pc to ctxi_exit, store the registers in
 * ctxi_out, return. ctxi_clobber(arg): what the interrupted loop calls;
 * overwrites every register it may (on aarch64 the callee-saved ones
 * too: rt_sigreturn restores them).
 */
void ctxi_run(void) __asm__("ctxi_run") __attribute__((visibility("hidden")));
void ctxi_clobber(void *arg) __asm__("ctxi_clobber") __attribute__((visibility("hidden")));
extern char ctxi_loop[] __asm__("ctxi_loop") __attribute__((visibility("hidden")));
extern char ctxi_loop_end[] __asm__("ctxi_loop_end") __attribute__((visibility("hidden")));
extern char ctxi_exit[] __asm__("ctxi_exit") __attribute__((visibility("hidden")));

#if defined(__x86_64__)
__asm__(
	"\t.pushsection .text\n"
	"\t.p2align 4\n"
	"\t.globl\tctxi_run\n"
	"\t.hidden\tctxi_run\n"
	"ctxi_run:\n"
	"\tpushq\t%rbp\n"
	"\tpushq\t%rbx\n"
	"\tpushq\t%r12\n"
	"\tpushq\t%r13\n"
	"\tpushq\t%r14\n"
	"\tpushq\t%r15\n"
	"\tmovq\t%rsp, ctxi_saved_rsp(%rip)\n"
	"\tstmxcsr\tctxi_saved_mxcsr(%rip)\n"
	"\tfnstcw\tctxi_saved_fcw(%rip)\n"
	"\tleaq\tctxi_in(%rip), %rsi\n"
	"\tmovzbl\tctxi_level(%rip), %eax\n"
	"\tcmpl\t$2, %eax\n"
	"\tje\t2f\n"
	"\tcmpl\t$1, %eax\n"
	"\tje\t1f\n"
	"\tmovdqu\t384(%rsi), %xmm0\n"
	"\tmovdqu\t448(%rsi), %xmm1\n"
	"\tmovdqu\t512(%rsi), %xmm2\n"
	"\tmovdqu\t576(%rsi), %xmm3\n"
	"\tmovdqu\t640(%rsi), %xmm4\n"
	"\tmovdqu\t704(%rsi), %xmm5\n"
	"\tmovdqu\t768(%rsi), %xmm6\n"
	"\tmovdqu\t832(%rsi), %xmm7\n"
	"\tmovdqu\t896(%rsi), %xmm8\n"
	"\tmovdqu\t960(%rsi), %xmm9\n"
	"\tmovdqu\t1024(%rsi), %xmm10\n"
	"\tmovdqu\t1088(%rsi), %xmm11\n"
	"\tmovdqu\t1152(%rsi), %xmm12\n"
	"\tmovdqu\t1216(%rsi), %xmm13\n"
	"\tmovdqu\t1280(%rsi), %xmm14\n"
	"\tmovdqu\t1344(%rsi), %xmm15\n"
	"\tjmp\t3f\n"
	"1:\n"
	"\tvmovdqu\t384(%rsi), %ymm0\n"
	"\tvmovdqu\t448(%rsi), %ymm1\n"
	"\tvmovdqu\t512(%rsi), %ymm2\n"
	"\tvmovdqu\t576(%rsi), %ymm3\n"
	"\tvmovdqu\t640(%rsi), %ymm4\n"
	"\tvmovdqu\t704(%rsi), %ymm5\n"
	"\tvmovdqu\t768(%rsi), %ymm6\n"
	"\tvmovdqu\t832(%rsi), %ymm7\n"
	"\tvmovdqu\t896(%rsi), %ymm8\n"
	"\tvmovdqu\t960(%rsi), %ymm9\n"
	"\tvmovdqu\t1024(%rsi), %ymm10\n"
	"\tvmovdqu\t1088(%rsi), %ymm11\n"
	"\tvmovdqu\t1152(%rsi), %ymm12\n"
	"\tvmovdqu\t1216(%rsi), %ymm13\n"
	"\tvmovdqu\t1280(%rsi), %ymm14\n"
	"\tvmovdqu\t1344(%rsi), %ymm15\n"
	"\tjmp\t3f\n"
	"2:\n"
	"\tvmovdqu64\t384(%rsi), %zmm0\n"
	"\tvmovdqu64\t448(%rsi), %zmm1\n"
	"\tvmovdqu64\t512(%rsi), %zmm2\n"
	"\tvmovdqu64\t576(%rsi), %zmm3\n"
	"\tvmovdqu64\t640(%rsi), %zmm4\n"
	"\tvmovdqu64\t704(%rsi), %zmm5\n"
	"\tvmovdqu64\t768(%rsi), %zmm6\n"
	"\tvmovdqu64\t832(%rsi), %zmm7\n"
	"\tvmovdqu64\t896(%rsi), %zmm8\n"
	"\tvmovdqu64\t960(%rsi), %zmm9\n"
	"\tvmovdqu64\t1024(%rsi), %zmm10\n"
	"\tvmovdqu64\t1088(%rsi), %zmm11\n"
	"\tvmovdqu64\t1152(%rsi), %zmm12\n"
	"\tvmovdqu64\t1216(%rsi), %zmm13\n"
	"\tvmovdqu64\t1280(%rsi), %zmm14\n"
	"\tvmovdqu64\t1344(%rsi), %zmm15\n"
	"\tvmovdqu64\t1408(%rsi), %zmm16\n"
	"\tvmovdqu64\t1472(%rsi), %zmm17\n"
	"\tvmovdqu64\t1536(%rsi), %zmm18\n"
	"\tvmovdqu64\t1600(%rsi), %zmm19\n"
	"\tvmovdqu64\t1664(%rsi), %zmm20\n"
	"\tvmovdqu64\t1728(%rsi), %zmm21\n"
	"\tvmovdqu64\t1792(%rsi), %zmm22\n"
	"\tvmovdqu64\t1856(%rsi), %zmm23\n"
	"\tvmovdqu64\t1920(%rsi), %zmm24\n"
	"\tvmovdqu64\t1984(%rsi), %zmm25\n"
	"\tvmovdqu64\t2048(%rsi), %zmm26\n"
	"\tvmovdqu64\t2112(%rsi), %zmm27\n"
	"\tvmovdqu64\t2176(%rsi), %zmm28\n"
	"\tvmovdqu64\t2240(%rsi), %zmm29\n"
	"\tvmovdqu64\t2304(%rsi), %zmm30\n"
	"\tvmovdqu64\t2368(%rsi), %zmm31\n"
	"\tkmovq\t160(%rsi), %k0\n"
	"\tkmovq\t168(%rsi), %k1\n"
	"\tkmovq\t176(%rsi), %k2\n"
	"\tkmovq\t184(%rsi), %k3\n"
	"\tkmovq\t192(%rsi), %k4\n"
	"\tkmovq\t200(%rsi), %k5\n"
	"\tkmovq\t208(%rsi), %k6\n"
	"\tkmovq\t216(%rsi), %k7\n"
	"3:\n"
	"\tldmxcsr\t136(%rsi)\n"
	"\tfldcw\t140(%rsi)\n"
	"\tfldt\t144(%rsi)\n"
	"\tleaq\t-128(%rsp), %rdi\n"
	"\taddq\t$224, %rsi\n"
	"\tmovl\t$128, %ecx\n"
	"\tcld\n"
	"\trep movsb\n"
	"\tpushq\tctxi_in+120(%rip)\n"
	"\tpopfq\n"
	"\tmovq\tctxi_in+0(%rip), %rax\n"
	"\tmovq\tctxi_in+8(%rip), %rbx\n"
	"\tmovq\tctxi_in+16(%rip), %rcx\n"
	"\tmovq\tctxi_in+24(%rip), %rdx\n"
	"\tmovq\tctxi_in+32(%rip), %rsi\n"
	"\tmovq\tctxi_in+40(%rip), %rdi\n"
	"\tmovq\tctxi_in+48(%rip), %rbp\n"
	"\tmovq\tctxi_in+56(%rip), %r8\n"
	"\tmovq\tctxi_in+64(%rip), %r9\n"
	"\tmovq\tctxi_in+72(%rip), %r10\n"
	"\tmovq\tctxi_in+80(%rip), %r11\n"
	"\tmovq\tctxi_in+88(%rip), %r12\n"
	"\tmovq\tctxi_in+96(%rip), %r13\n"
	"\tmovq\tctxi_in+104(%rip), %r14\n"
	"\tmovq\tctxi_in+112(%rip), %r15\n"
	"\t.globl\tctxi_loop\n"
	"\t.hidden\tctxi_loop\n"
	"ctxi_loop:\n"
	"\tnop\n"
	"\tnop\n"
	"\txchgq\t%rax, %rax\n"
	"\tnop\n"
	"\tjmp\tctxi_loop\n"
	"\t.globl\tctxi_loop_end\n"
	"\t.hidden\tctxi_loop_end\n"
	"ctxi_loop_end:\n"
	"\t.globl\tctxi_exit\n"
	"\t.hidden\tctxi_exit\n"
	"ctxi_exit:\n"
	"\tmovq\t%rax, ctxi_out+0(%rip)\n"
	"\tmovq\t%rbx, ctxi_out+8(%rip)\n"
	"\tmovq\t%rcx, ctxi_out+16(%rip)\n"
	"\tmovq\t%rdx, ctxi_out+24(%rip)\n"
	"\tmovq\t%rsi, ctxi_out+32(%rip)\n"
	"\tmovq\t%rdi, ctxi_out+40(%rip)\n"
	"\tmovq\t%rbp, ctxi_out+48(%rip)\n"
	"\tmovq\t%r8, ctxi_out+56(%rip)\n"
	"\tmovq\t%r9, ctxi_out+64(%rip)\n"
	"\tmovq\t%r10, ctxi_out+72(%rip)\n"
	"\tmovq\t%r11, ctxi_out+80(%rip)\n"
	"\tmovq\t%r12, ctxi_out+88(%rip)\n"
	"\tmovq\t%r13, ctxi_out+96(%rip)\n"
	"\tmovq\t%r14, ctxi_out+104(%rip)\n"
	"\tmovq\t%r15, ctxi_out+112(%rip)\n"
	"\tpushfq\n"
	"\tpopq\tctxi_out+120(%rip)\n"
	"\tmovq\t%rsp, ctxi_out+128(%rip)\n"
	"\tcld\n"
	"\tleaq\t-128(%rsp), %rsi\n"
	"\tleaq\tctxi_out+224(%rip), %rdi\n"
	"\tmovl\t$128, %ecx\n"
	"\trep movsb\n"
	"\tleaq\tctxi_out(%rip), %rdi\n"
	"\tstmxcsr\t136(%rdi)\n"
	"\tfnstcw\t140(%rdi)\n"
	"\tfstpt\t144(%rdi)\n"
	"\tmovzbl\tctxi_level(%rip), %eax\n"
	"\tcmpl\t$2, %eax\n"
	"\tje\t2f\n"
	"\tcmpl\t$1, %eax\n"
	"\tje\t1f\n"
	"\tmovdqu\t%xmm0, 384(%rdi)\n"
	"\tmovdqu\t%xmm1, 448(%rdi)\n"
	"\tmovdqu\t%xmm2, 512(%rdi)\n"
	"\tmovdqu\t%xmm3, 576(%rdi)\n"
	"\tmovdqu\t%xmm4, 640(%rdi)\n"
	"\tmovdqu\t%xmm5, 704(%rdi)\n"
	"\tmovdqu\t%xmm6, 768(%rdi)\n"
	"\tmovdqu\t%xmm7, 832(%rdi)\n"
	"\tmovdqu\t%xmm8, 896(%rdi)\n"
	"\tmovdqu\t%xmm9, 960(%rdi)\n"
	"\tmovdqu\t%xmm10, 1024(%rdi)\n"
	"\tmovdqu\t%xmm11, 1088(%rdi)\n"
	"\tmovdqu\t%xmm12, 1152(%rdi)\n"
	"\tmovdqu\t%xmm13, 1216(%rdi)\n"
	"\tmovdqu\t%xmm14, 1280(%rdi)\n"
	"\tmovdqu\t%xmm15, 1344(%rdi)\n"
	"\tjmp\t3f\n"
	"1:\n"
	"\tvmovdqu\t%ymm0, 384(%rdi)\n"
	"\tvmovdqu\t%ymm1, 448(%rdi)\n"
	"\tvmovdqu\t%ymm2, 512(%rdi)\n"
	"\tvmovdqu\t%ymm3, 576(%rdi)\n"
	"\tvmovdqu\t%ymm4, 640(%rdi)\n"
	"\tvmovdqu\t%ymm5, 704(%rdi)\n"
	"\tvmovdqu\t%ymm6, 768(%rdi)\n"
	"\tvmovdqu\t%ymm7, 832(%rdi)\n"
	"\tvmovdqu\t%ymm8, 896(%rdi)\n"
	"\tvmovdqu\t%ymm9, 960(%rdi)\n"
	"\tvmovdqu\t%ymm10, 1024(%rdi)\n"
	"\tvmovdqu\t%ymm11, 1088(%rdi)\n"
	"\tvmovdqu\t%ymm12, 1152(%rdi)\n"
	"\tvmovdqu\t%ymm13, 1216(%rdi)\n"
	"\tvmovdqu\t%ymm14, 1280(%rdi)\n"
	"\tvmovdqu\t%ymm15, 1344(%rdi)\n"
	"\tvzeroupper\n"
	"\tjmp\t3f\n"
	"2:\n"
	"\tvmovdqu64\t%zmm0, 384(%rdi)\n"
	"\tvmovdqu64\t%zmm1, 448(%rdi)\n"
	"\tvmovdqu64\t%zmm2, 512(%rdi)\n"
	"\tvmovdqu64\t%zmm3, 576(%rdi)\n"
	"\tvmovdqu64\t%zmm4, 640(%rdi)\n"
	"\tvmovdqu64\t%zmm5, 704(%rdi)\n"
	"\tvmovdqu64\t%zmm6, 768(%rdi)\n"
	"\tvmovdqu64\t%zmm7, 832(%rdi)\n"
	"\tvmovdqu64\t%zmm8, 896(%rdi)\n"
	"\tvmovdqu64\t%zmm9, 960(%rdi)\n"
	"\tvmovdqu64\t%zmm10, 1024(%rdi)\n"
	"\tvmovdqu64\t%zmm11, 1088(%rdi)\n"
	"\tvmovdqu64\t%zmm12, 1152(%rdi)\n"
	"\tvmovdqu64\t%zmm13, 1216(%rdi)\n"
	"\tvmovdqu64\t%zmm14, 1280(%rdi)\n"
	"\tvmovdqu64\t%zmm15, 1344(%rdi)\n"
	"\tvmovdqu64\t%zmm16, 1408(%rdi)\n"
	"\tvmovdqu64\t%zmm17, 1472(%rdi)\n"
	"\tvmovdqu64\t%zmm18, 1536(%rdi)\n"
	"\tvmovdqu64\t%zmm19, 1600(%rdi)\n"
	"\tvmovdqu64\t%zmm20, 1664(%rdi)\n"
	"\tvmovdqu64\t%zmm21, 1728(%rdi)\n"
	"\tvmovdqu64\t%zmm22, 1792(%rdi)\n"
	"\tvmovdqu64\t%zmm23, 1856(%rdi)\n"
	"\tvmovdqu64\t%zmm24, 1920(%rdi)\n"
	"\tvmovdqu64\t%zmm25, 1984(%rdi)\n"
	"\tvmovdqu64\t%zmm26, 2048(%rdi)\n"
	"\tvmovdqu64\t%zmm27, 2112(%rdi)\n"
	"\tvmovdqu64\t%zmm28, 2176(%rdi)\n"
	"\tvmovdqu64\t%zmm29, 2240(%rdi)\n"
	"\tvmovdqu64\t%zmm30, 2304(%rdi)\n"
	"\tvmovdqu64\t%zmm31, 2368(%rdi)\n"
	"\tkmovq\t%k0, 160(%rdi)\n"
	"\tkmovq\t%k1, 168(%rdi)\n"
	"\tkmovq\t%k2, 176(%rdi)\n"
	"\tkmovq\t%k3, 184(%rdi)\n"
	"\tkmovq\t%k4, 192(%rdi)\n"
	"\tkmovq\t%k5, 200(%rdi)\n"
	"\tkmovq\t%k6, 208(%rdi)\n"
	"\tkmovq\t%k7, 216(%rdi)\n"
	"\tvzeroupper\n"
	"3:\n"
	"\tldmxcsr\tctxi_saved_mxcsr(%rip)\n"
	"\tfldcw\tctxi_saved_fcw(%rip)\n"
	"\tmovq\tctxi_saved_rsp(%rip), %rsp\n"
	"\tpopq\t%r15\n"
	"\tpopq\t%r14\n"
	"\tpopq\t%r13\n"
	"\tpopq\t%r12\n"
	"\tpopq\t%rbx\n"
	"\tpopq\t%rbp\n"
	"\tret\n"
	"\t.p2align 4\n"
	"\t.globl\tctxi_clobber\n"
	"\t.hidden\tctxi_clobber\n"
	"ctxi_clobber:\n"
	"\tpushfq\n"
	"\tpopq\tctxi_entry_flags(%rip)\n"
	"\tmovq\t%rsp, ctxi_entry_rsp(%rip)\n"
	"\tincl\tctxi_clobbers(%rip)\n"
	"\tmovq\t%rdi, ctxi_entry_arg(%rip)\n"
	"\tstmxcsr\tctxi_entry_mxcsr(%rip)\n"
	"\tfnstenv\tctxi_entry_fenv(%rip)\n"
	"\tfninit\n"
	"\tldmxcsr\tctxi_clobber_mxcsr(%rip)\n"
	"\tmovzbl\tctxi_level(%rip), %eax\n"
	"\tcmpl\t$2, %eax\n"
	"\tje\t2f\n"
	"\tcmpl\t$1, %eax\n"
	"\tje\t1f\n"
	"\tpcmpeqd\t%xmm0, %xmm0\n"
	"\tpcmpeqd\t%xmm1, %xmm1\n"
	"\tpcmpeqd\t%xmm2, %xmm2\n"
	"\tpcmpeqd\t%xmm3, %xmm3\n"
	"\tpcmpeqd\t%xmm4, %xmm4\n"
	"\tpcmpeqd\t%xmm5, %xmm5\n"
	"\tpcmpeqd\t%xmm6, %xmm6\n"
	"\tpcmpeqd\t%xmm7, %xmm7\n"
	"\tpcmpeqd\t%xmm8, %xmm8\n"
	"\tpcmpeqd\t%xmm9, %xmm9\n"
	"\tpcmpeqd\t%xmm10, %xmm10\n"
	"\tpcmpeqd\t%xmm11, %xmm11\n"
	"\tpcmpeqd\t%xmm12, %xmm12\n"
	"\tpcmpeqd\t%xmm13, %xmm13\n"
	"\tpcmpeqd\t%xmm14, %xmm14\n"
	"\tpcmpeqd\t%xmm15, %xmm15\n"
	"\tjmp\t3f\n"
	"1:\n"
	"\tvpcmpeqd\t%ymm0, %ymm0, %ymm0\n"
	"\tvpcmpeqd\t%ymm1, %ymm1, %ymm1\n"
	"\tvpcmpeqd\t%ymm2, %ymm2, %ymm2\n"
	"\tvpcmpeqd\t%ymm3, %ymm3, %ymm3\n"
	"\tvpcmpeqd\t%ymm4, %ymm4, %ymm4\n"
	"\tvpcmpeqd\t%ymm5, %ymm5, %ymm5\n"
	"\tvpcmpeqd\t%ymm6, %ymm6, %ymm6\n"
	"\tvpcmpeqd\t%ymm7, %ymm7, %ymm7\n"
	"\tvpcmpeqd\t%ymm8, %ymm8, %ymm8\n"
	"\tvpcmpeqd\t%ymm9, %ymm9, %ymm9\n"
	"\tvpcmpeqd\t%ymm10, %ymm10, %ymm10\n"
	"\tvpcmpeqd\t%ymm11, %ymm11, %ymm11\n"
	"\tvpcmpeqd\t%ymm12, %ymm12, %ymm12\n"
	"\tvpcmpeqd\t%ymm13, %ymm13, %ymm13\n"
	"\tvpcmpeqd\t%ymm14, %ymm14, %ymm14\n"
	"\tvpcmpeqd\t%ymm15, %ymm15, %ymm15\n"
	"\tjmp\t3f\n"
	"2:\n"
	"\tvpternlogd\t$0xff, %zmm0, %zmm0, %zmm0\n"
	"\tvpternlogd\t$0xff, %zmm1, %zmm1, %zmm1\n"
	"\tvpternlogd\t$0xff, %zmm2, %zmm2, %zmm2\n"
	"\tvpternlogd\t$0xff, %zmm3, %zmm3, %zmm3\n"
	"\tvpternlogd\t$0xff, %zmm4, %zmm4, %zmm4\n"
	"\tvpternlogd\t$0xff, %zmm5, %zmm5, %zmm5\n"
	"\tvpternlogd\t$0xff, %zmm6, %zmm6, %zmm6\n"
	"\tvpternlogd\t$0xff, %zmm7, %zmm7, %zmm7\n"
	"\tvpternlogd\t$0xff, %zmm8, %zmm8, %zmm8\n"
	"\tvpternlogd\t$0xff, %zmm9, %zmm9, %zmm9\n"
	"\tvpternlogd\t$0xff, %zmm10, %zmm10, %zmm10\n"
	"\tvpternlogd\t$0xff, %zmm11, %zmm11, %zmm11\n"
	"\tvpternlogd\t$0xff, %zmm12, %zmm12, %zmm12\n"
	"\tvpternlogd\t$0xff, %zmm13, %zmm13, %zmm13\n"
	"\tvpternlogd\t$0xff, %zmm14, %zmm14, %zmm14\n"
	"\tvpternlogd\t$0xff, %zmm15, %zmm15, %zmm15\n"
	"\tvpternlogd\t$0xff, %zmm16, %zmm16, %zmm16\n"
	"\tvpternlogd\t$0xff, %zmm17, %zmm17, %zmm17\n"
	"\tvpternlogd\t$0xff, %zmm18, %zmm18, %zmm18\n"
	"\tvpternlogd\t$0xff, %zmm19, %zmm19, %zmm19\n"
	"\tvpternlogd\t$0xff, %zmm20, %zmm20, %zmm20\n"
	"\tvpternlogd\t$0xff, %zmm21, %zmm21, %zmm21\n"
	"\tvpternlogd\t$0xff, %zmm22, %zmm22, %zmm22\n"
	"\tvpternlogd\t$0xff, %zmm23, %zmm23, %zmm23\n"
	"\tvpternlogd\t$0xff, %zmm24, %zmm24, %zmm24\n"
	"\tvpternlogd\t$0xff, %zmm25, %zmm25, %zmm25\n"
	"\tvpternlogd\t$0xff, %zmm26, %zmm26, %zmm26\n"
	"\tvpternlogd\t$0xff, %zmm27, %zmm27, %zmm27\n"
	"\tvpternlogd\t$0xff, %zmm28, %zmm28, %zmm28\n"
	"\tvpternlogd\t$0xff, %zmm29, %zmm29, %zmm29\n"
	"\tvpternlogd\t$0xff, %zmm30, %zmm30, %zmm30\n"
	"\tvpternlogd\t$0xff, %zmm31, %zmm31, %zmm31\n"
	"\tkxnorq\t%k0, %k0, %k0\n"
	"\tkxnorq\t%k1, %k1, %k1\n"
	"\tkxnorq\t%k2, %k2, %k2\n"
	"\tkxnorq\t%k3, %k3, %k3\n"
	"\tkxnorq\t%k4, %k4, %k4\n"
	"\tkxnorq\t%k5, %k5, %k5\n"
	"\tkxnorq\t%k6, %k6, %k6\n"
	"\tkxnorq\t%k7, %k7, %k7\n"
	"3:\n"
	"\tmovq\t$-1, %rax\n"
	"\tmovq\t$-1, %rcx\n"
	"\tmovq\t$-1, %rdx\n"
	"\tmovq\t$-1, %rsi\n"
	"\tmovq\t$-1, %rdi\n"
	"\tmovq\t$-1, %r8\n"
	"\tmovq\t$-1, %r9\n"
	"\tmovq\t$-1, %r10\n"
	"\tmovq\t$-1, %r11\n"
	"\ttestq\t%rax, %rax\n"
	"\tret\n"
	"\t.popsection\n");
#else
__asm__(
	"\t.pushsection .text\n"
	"\t.p2align 4\n"
	"\t.globl\tctxi_run\n"
	"\t.hidden\tctxi_run\n"
	"ctxi_run:\n"
	"\tstp\tx29, x30, [sp, #-160]!\n"
	"\tmov\tx29, sp\n"
	"\tstp\tx19, x20, [sp, #16]\n"
	"\tstp\tx21, x22, [sp, #32]\n"
	"\tstp\tx23, x24, [sp, #48]\n"
	"\tstp\tx25, x26, [sp, #64]\n"
	"\tstp\tx27, x28, [sp, #80]\n"
	"\tstp\td8, d9, [sp, #96]\n"
	"\tstp\td10, d11, [sp, #112]\n"
	"\tstp\td12, d13, [sp, #128]\n"
	"\tstp\td14, d15, [sp, #144]\n"
	"\tadrp\tx0, ctxi_saved_sp\n"
	"\tadd\tx0, x0, :lo12:ctxi_saved_sp\n"
	"\tmov\tx1, sp\n"
	"\tstr\tx1, [x0]\n"
	"\tmrs\tx1, fpcr\n"
	"\tstr\tx1, [x0, #8]\n"
	"\tadrp\tx0, ctxi_in\n"
	"\tadd\tx0, x0, :lo12:ctxi_in\n"
	"\tldp\tq0, q1, [x0, #288]\n"
	"\tldp\tq2, q3, [x0, #320]\n"
	"\tldp\tq4, q5, [x0, #352]\n"
	"\tldp\tq6, q7, [x0, #384]\n"
	"\tldp\tq8, q9, [x0, #416]\n"
	"\tldp\tq10, q11, [x0, #448]\n"
	"\tldp\tq12, q13, [x0, #480]\n"
	"\tldp\tq14, q15, [x0, #512]\n"
	"\tldp\tq16, q17, [x0, #544]\n"
	"\tldp\tq18, q19, [x0, #576]\n"
	"\tldp\tq20, q21, [x0, #608]\n"
	"\tldp\tq22, q23, [x0, #640]\n"
	"\tldp\tq24, q25, [x0, #672]\n"
	"\tldp\tq26, q27, [x0, #704]\n"
	"\tldp\tq28, q29, [x0, #736]\n"
	"\tldp\tq30, q31, [x0, #768]\n"
	"\tldr\tx1, [x0, #264]\n"
	"\tmsr\tfpcr, x1\n"
	"\tldr\tx1, [x0, #256]\n"
	"\tmsr\tfpsr, x1\n"
	"\tldr\tx1, [x0, #248]\n"
	"\tmsr\tnzcv, x1\n"
	"\tldp\tx1, x2, [x0, #8]\n"
	"\tldp\tx3, x4, [x0, #24]\n"
	"\tldp\tx5, x6, [x0, #40]\n"
	"\tldp\tx7, x8, [x0, #56]\n"
	"\tldp\tx9, x10, [x0, #72]\n"
	"\tldp\tx11, x12, [x0, #88]\n"
	"\tldp\tx13, x14, [x0, #104]\n"
	"\tldp\tx15, x16, [x0, #120]\n"
	"\tldp\tx17, x18, [x0, #136]\n"
	"\tldp\tx19, x20, [x0, #152]\n"
	"\tldp\tx21, x22, [x0, #168]\n"
	"\tldp\tx23, x24, [x0, #184]\n"
	"\tldp\tx25, x26, [x0, #200]\n"
	"\tldp\tx27, x28, [x0, #216]\n"
	"\tldp\tx29, x30, [x0, #232]\n"
	"\tldr\tx0, [x0]\n"
	"\t.globl\tctxi_loop\n"
	"\t.hidden\tctxi_loop\n"
	"ctxi_loop:\n"
	"\tnop\n"
	"\tnop\n"
	"\tnop\n"
	"\tb\tctxi_loop\n"
	"\t.globl\tctxi_loop_end\n"
	"\t.hidden\tctxi_loop_end\n"
	"ctxi_loop_end:\n"
	"\t.globl\tctxi_exit\n"
	"\t.hidden\tctxi_exit\n"
	"ctxi_exit:\n"
	"\tsub\tsp, sp, #800\n"
	"\tstp\tx0, x1, [sp, #0]\n"
	"\tstp\tx2, x3, [sp, #16]\n"
	"\tstp\tx4, x5, [sp, #32]\n"
	"\tstp\tx6, x7, [sp, #48]\n"
	"\tstp\tx8, x9, [sp, #64]\n"
	"\tstp\tx10, x11, [sp, #80]\n"
	"\tstp\tx12, x13, [sp, #96]\n"
	"\tstp\tx14, x15, [sp, #112]\n"
	"\tstp\tx16, x17, [sp, #128]\n"
	"\tstp\tx18, x19, [sp, #144]\n"
	"\tstp\tx20, x21, [sp, #160]\n"
	"\tstp\tx22, x23, [sp, #176]\n"
	"\tstp\tx24, x25, [sp, #192]\n"
	"\tstp\tx26, x27, [sp, #208]\n"
	"\tstp\tx28, x29, [sp, #224]\n"
	"\tstr\tx30, [sp, #240]\n"
	"\tmrs\tx0, nzcv\n"
	"\tstr\tx0, [sp, #248]\n"
	"\tmrs\tx0, fpsr\n"
	"\tstr\tx0, [sp, #256]\n"
	"\tmrs\tx0, fpcr\n"
	"\tstr\tx0, [sp, #264]\n"
	"\tadd\tx0, sp, #800\n"
	"\tstr\tx0, [sp, #272]\n"
	"\tstp\tq0, q1, [sp, #288]\n"
	"\tstp\tq2, q3, [sp, #320]\n"
	"\tstp\tq4, q5, [sp, #352]\n"
	"\tstp\tq6, q7, [sp, #384]\n"
	"\tstp\tq8, q9, [sp, #416]\n"
	"\tstp\tq10, q11, [sp, #448]\n"
	"\tstp\tq12, q13, [sp, #480]\n"
	"\tstp\tq14, q15, [sp, #512]\n"
	"\tstp\tq16, q17, [sp, #544]\n"
	"\tstp\tq18, q19, [sp, #576]\n"
	"\tstp\tq20, q21, [sp, #608]\n"
	"\tstp\tq22, q23, [sp, #640]\n"
	"\tstp\tq24, q25, [sp, #672]\n"
	"\tstp\tq26, q27, [sp, #704]\n"
	"\tstp\tq28, q29, [sp, #736]\n"
	"\tstp\tq30, q31, [sp, #768]\n"
	"\tadrp\tx1, ctxi_out\n"
	"\tadd\tx1, x1, :lo12:ctxi_out\n"
	"\tmov\tx2, #0\n"
	"1:\n"
	"\tldr\tx3, [sp, x2]\n"
	"\tstr\tx3, [x1, x2]\n"
	"\tadd\tx2, x2, #8\n"
	"\tcmp\tx2, #800\n"
	"\tb.lo\t1b\n"
	"\tadd\tsp, sp, #800\n"
	"\tadrp\tx0, ctxi_saved_sp\n"
	"\tadd\tx0, x0, :lo12:ctxi_saved_sp\n"
	"\tldr\tx1, [x0, #8]\n"
	"\tmsr\tfpcr, x1\n"
	"\tldp\td8, d9, [sp, #96]\n"
	"\tldp\td10, d11, [sp, #112]\n"
	"\tldp\td12, d13, [sp, #128]\n"
	"\tldp\td14, d15, [sp, #144]\n"
	"\tldp\tx19, x20, [sp, #16]\n"
	"\tldp\tx21, x22, [sp, #32]\n"
	"\tldp\tx23, x24, [sp, #48]\n"
	"\tldp\tx25, x26, [sp, #64]\n"
	"\tldp\tx27, x28, [sp, #80]\n"
	"\tldp\tx29, x30, [sp], #160\n"
	"\tret\n"
	"\t.p2align 4\n"
	"\t.globl\tctxi_clobber\n"
	"\t.hidden\tctxi_clobber\n"
	"ctxi_clobber:\n"
	"\tadrp\tx9, ctxi_entry_sp\n"
	"\tadd\tx9, x9, :lo12:ctxi_entry_sp\n"
	"\tmov\tx10, sp\n"
	"\tstr\tx10, [x9]\n"
	"\tadrp\tx9, ctxi_clobbers\n"
	"\tadd\tx9, x9, :lo12:ctxi_clobbers\n"
	"\tldr\tw10, [x9]\n"
	"\tadd\tw10, w10, #1\n"
	"\tstr\tw10, [x9]\n"
	"\tadrp\tx9, ctxi_entry_arg\n"
	"\tadd\tx9, x9, :lo12:ctxi_entry_arg\n"
	"\tstr\tx0, [x9]\n"
	"\tadrp\tx9, ctxi_entry_fpcr\n"
	"\tadd\tx9, x9, :lo12:ctxi_entry_fpcr\n"
	"\tmrs\tx10, fpcr\n"
	"\tstr\tx10, [x9]\n"
	"\tmovi\tv0.16b, #0xff\n"
	"\tmovi\tv1.16b, #0xff\n"
	"\tmovi\tv2.16b, #0xff\n"
	"\tmovi\tv3.16b, #0xff\n"
	"\tmovi\tv4.16b, #0xff\n"
	"\tmovi\tv5.16b, #0xff\n"
	"\tmovi\tv6.16b, #0xff\n"
	"\tmovi\tv7.16b, #0xff\n"
	"\tmovi\tv8.16b, #0xff\n"
	"\tmovi\tv9.16b, #0xff\n"
	"\tmovi\tv10.16b, #0xff\n"
	"\tmovi\tv11.16b, #0xff\n"
	"\tmovi\tv12.16b, #0xff\n"
	"\tmovi\tv13.16b, #0xff\n"
	"\tmovi\tv14.16b, #0xff\n"
	"\tmovi\tv15.16b, #0xff\n"
	"\tmovi\tv16.16b, #0xff\n"
	"\tmovi\tv17.16b, #0xff\n"
	"\tmovi\tv18.16b, #0xff\n"
	"\tmovi\tv19.16b, #0xff\n"
	"\tmovi\tv20.16b, #0xff\n"
	"\tmovi\tv21.16b, #0xff\n"
	"\tmovi\tv22.16b, #0xff\n"
	"\tmovi\tv23.16b, #0xff\n"
	"\tmovi\tv24.16b, #0xff\n"
	"\tmovi\tv25.16b, #0xff\n"
	"\tmovi\tv26.16b, #0xff\n"
	"\tmovi\tv27.16b, #0xff\n"
	"\tmovi\tv28.16b, #0xff\n"
	"\tmovi\tv29.16b, #0xff\n"
	"\tmovi\tv30.16b, #0xff\n"
	"\tmovi\tv31.16b, #0xff\n"
	"\tmov\tx9, #0x800000\n"
	"\tmsr\tfpcr, x9\n"
	"\tmsr\tfpsr, xzr\n"
	"\tmsr\tnzcv, xzr\n"
	"\tmov\tx0, #-1\n"
	"\tmov\tx1, #-1\n"
	"\tmov\tx2, #-1\n"
	"\tmov\tx3, #-1\n"
	"\tmov\tx4, #-1\n"
	"\tmov\tx5, #-1\n"
	"\tmov\tx6, #-1\n"
	"\tmov\tx7, #-1\n"
	"\tmov\tx8, #-1\n"
	"\tmov\tx9, #-1\n"
	"\tmov\tx10, #-1\n"
	"\tmov\tx11, #-1\n"
	"\tmov\tx12, #-1\n"
	"\tmov\tx13, #-1\n"
	"\tmov\tx14, #-1\n"
	"\tmov\tx15, #-1\n"
	"\tmov\tx16, #-1\n"
	"\tmov\tx17, #-1\n"
	"\tmov\tx19, #-1\n"
	"\tmov\tx20, #-1\n"
	"\tmov\tx21, #-1\n"
	"\tmov\tx22, #-1\n"
	"\tmov\tx23, #-1\n"
	"\tmov\tx24, #-1\n"
	"\tmov\tx25, #-1\n"
	"\tmov\tx26, #-1\n"
	"\tmov\tx27, #-1\n"
	"\tmov\tx28, #-1\n"
	"\tret\n"
	"\t.popsection\n");
#endif

static volatile sig_atomic_t ctxi_hits, ctxi_signals, ctxi_refused;
static int ctxi_arg_obj;

static void ctxi_handler(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	uintptr_t pc = (uintptr_t)CTXI_PC(uc);

	(void)sig;
	(void)si;
	ctxi_signals++;
	if (pc < (uintptr_t)ctxi_loop || pc >= (uintptr_t)ctxi_loop_end)
		return; /* in the trampoline or the clobber: let it finish */
	if (ctxi_hits >= CTXI_HITS || ctxi_signals > 100 * CTXI_HITS) {
		CTXI_PC(uc) = (uintptr_t)ctxi_exit;
		return;
	}
	if (prt__ctx_interrupt(uc, ctxi_clobber, &ctxi_arg_obj, 0))
		ctxi_hits++;
	else
		ctxi_refused++;
}

static uint64_t ctxi_pattern(unsigned i)
{
	uint64_t z = UINT64_C(0x9e3779b97f4a7c15) * (i + 1);

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static void ctxi_fill(void *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = ctxi_pattern(seed + (unsigned)i);

		memcpy((char *)p + i, &v, n - i < 8 ? n - i : 8);
	}
}

struct ctxi_res {
	unsigned fails;
};

static void ctxi_cmp(struct ctxi_res *r, const char *what, unsigned idx, const void *got,
		     const void *want, size_t n)
{
	if (!memcmp(got, want, n))
		return;
	if (r->fails++ < CTXC_MAX_MSGS) {
		fprintf(stderr, "ctx check ctx_check_interrupt: %s[%u] changed:", what, idx);
		for (size_t i = n; i-- > 0;)
			fprintf(stderr, "%s%02x", i % 8 == 7 ? " " : "", ((const unsigned char *)got)[i]);
		fprintf(stderr, " want");
		for (size_t i = n; i-- > 0;)
			fprintf(stderr, "%s%02x", i % 8 == 7 ? " " : "", ((const unsigned char *)want)[i]);
		fputc('\n', stderr);
	}
}

#if defined(__x86_64__)
static uint8_t ctxi_x86_level(void)
{
	unsigned a, b, c, d, lo, hi;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX))
		return 0;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	(void)hi;
	if ((lo & 6) != 6)
		return 0;
	if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & bit_AVX512F) && (b & bit_AVX512BW) &&
	    (lo & 0xe6) == 0xe6)
		return 2;
	return 1;
}

static void ctxi_setup(void)
{
	static const unsigned char pi80[10] = { 0x35, 0xc2, 0x68, 0x21, 0xa2,
						0xda, 0x0f, 0xc9, 0x00, 0x40 };

	ctxi_level = ctxi_x86_level();
	ctxi_fill(&ctxi_in, sizeof(ctxi_in), 1);
	ctxi_in.flags = CTXI_FLAGS | 2;
	ctxi_in.mxcsr = 0xffc3;  /* toward zero, FTZ, DAZ, two sticky flags */
	ctxi_in.fcw = 0x0e7f;    /* toward zero, double precision */
	memset(ctxi_in.st0, 0, sizeof(ctxi_in.st0));
	memcpy(ctxi_in.st0, pi80, sizeof(pi80));
	memcpy(ctxi_in.rz + 120, &ctxi_in.flags, 8);
}

static void ctxi_verify(struct ctxi_res *r)
{
	static const size_t vlen[3] = { 16, 32, 64 };
	unsigned nvec = ctxi_level == 2 ? 32 : 16;
	uint64_t fl = ctxi_out.flags & CTXI_FLAGS, want_fl = ctxi_in.flags & CTXI_FLAGS;

	for (unsigned i = 0; i < 15; i++)
		ctxi_cmp(r, "gpr", i, &ctxi_out.gpr[i], &ctxi_in.gpr[i], 8);
	ctxi_cmp(r, "rflags", 0, &fl, &want_fl, 8);
	ctxi_cmp(r, "rsp", 0, &ctxi_out.rsp, &ctxi_saved_rsp, 8);
	ctxi_cmp(r, "mxcsr", 0, &ctxi_out.mxcsr, &ctxi_in.mxcsr, 4);
	ctxi_cmp(r, "x87cw", 0, &ctxi_out.fcw, &ctxi_in.fcw, 2);
	ctxi_cmp(r, "st0", 0, ctxi_out.st0, ctxi_in.st0, 10);
	ctxi_cmp(r, "redzone", 0, ctxi_out.rz, ctxi_in.rz, 120);
	for (unsigned i = 0; i < nvec; i++)
		ctxi_cmp(r, "vec", i, ctxi_out.vec[i], ctxi_in.vec[i], vlen[ctxi_level]);
	for (unsigned i = 0; ctxi_level == 2 && i < 8; i++)
		ctxi_cmp(r, "k", i, &ctxi_out.k[i], &ctxi_in.k[i], 8);
	if (ctxi_entry_flags & 0x400)
		ctxi_cmp(r, "DF clear at the call", 0, &ctxi_entry_flags, &(uint64_t){ 0 }, 8);
	if ((ctxi_entry_rsp + 8) % 16)
		ctxi_cmp(r, "rsp+8 16-aligned at the call", 0, &ctxi_entry_rsp, &(uint64_t){ 0 }, 8);
	/* The ABI's state at a call: default MXCSR and x87 control word, an empty x87 stack. */
	ctxi_cmp(r, "MXCSR at the call", 0, &ctxi_entry_mxcsr, &(uint32_t){ 0x1f80 }, 4);
	ctxi_cmp(r, "x87 CW at the call", 0, &ctxi_entry_fenv[0], &(uint16_t){ 0x037f }, 2);
	ctxi_cmp(r, "x87 tags at the call", 0, &ctxi_entry_fenv[4], &(uint16_t){ 0xffff }, 2);
}
#else
static void ctxi_setup(void)
{
	ctxi_fill(&ctxi_in, sizeof(ctxi_in), 1);
	ctxi_in.nzcv = 0xa0000000u;           /* N and C */
	ctxi_in.fpsr = 0x0800001fu;           /* QC and the cumulative flags */
	ctxi_in.fpcr = (3u << 22) | (1u << 24) | (1u << 25); /* toward zero, FZ, DN */
}

static void ctxi_verify(struct ctxi_res *r)
{
	for (unsigned i = 0; i < 31; i++)
		ctxi_cmp(r, "x", i, &ctxi_out.x[i], &ctxi_in.x[i], 8);
	ctxi_cmp(r, "nzcv", 0, &ctxi_out.nzcv, &ctxi_in.nzcv, 8);
	ctxi_cmp(r, "fpsr", 0, &ctxi_out.fpsr, &ctxi_in.fpsr, 8);
	ctxi_cmp(r, "fpcr", 0, &ctxi_out.fpcr, &ctxi_in.fpcr, 8);
	ctxi_cmp(r, "sp", 0, &ctxi_out.sp, &ctxi_saved_sp[0], 8);
	for (unsigned i = 0; i < 32; i++)
		ctxi_cmp(r, "q", i, ctxi_out.q[i], ctxi_in.q[i], 16);
	if (ctxi_entry_sp % 16)
		ctxi_cmp(r, "sp 16-aligned at the call", 0, &ctxi_entry_sp, &(uint64_t){ 0 }, 8);
	ctxi_cmp(r, "FPCR at the call", 0, &ctxi_entry_fpcr, &(uint64_t){ 0 }, 8);
}
#endif

static int ctx_check_interrupt(void)
{
	struct itimerval on = { { 0, 200 }, { 0, 200 } }, off = { { 0, 0 }, { 0, 0 } };
	struct sigaction sa, old;
	struct ctxi_res r = { 0 };
	stack_t ss, old_ss;
	void *alt = malloc(64 * 1024);

	if (!alt)
		return 1;
	prt__ctx_interrupt_init();
	ctxi_setup();
	ctxi_hits = ctxi_signals = ctxi_refused = 0;
	ctxi_clobbers = 0;
	/* The handler must not run on the interrupted stack (arch/ctx.h). */
	ss.ss_sp = alt;
	ss.ss_size = 64 * 1024;
	ss.ss_flags = 0;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = ctxi_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaltstack(&ss, &old_ss) || sigaction(SIGALRM, &sa, &old) ||
	    setitimer(ITIMER_REAL, &on, NULL)) {
		fprintf(stderr, "ctx check: cannot set up the timer signal\n");
		free(alt);
		return 1;
	}
	ctxi_run();
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	sigaltstack(&old_ss, NULL);
	free(alt);
	ctxi_verify(&r);
	if (ctxi_hits < CTXI_HITS || ctxi_clobbers != (uint32_t)ctxi_hits) {
		fprintf(stderr, "ctx check ctx_check_interrupt: %d interrupts (%d refused, %u calls) "
			"of %d signals, want %d\n", (int)ctxi_hits, (int)ctxi_refused,
			(unsigned)ctxi_clobbers, (int)ctxi_signals, CTXI_HITS);
		r.fails++;
	}
	if (ctxi_entry_arg != (uint64_t)(uintptr_t)&ctxi_arg_obj) {
		fprintf(stderr, "ctx check ctx_check_interrupt: the call got arg %#llx\n",
			(unsigned long long)ctxi_entry_arg);
		r.fails++;
	}
	return r.fails != 0;
}

/* ------------------------------------------------------------------ */

struct ctx_check {
	const char *name;
	int (*fn)(void);
};

__attribute__((unused)) static const struct ctx_check ctx_checks[] = {
	{ "ping_pong", ctx_check_ping_pong },
	{ "callee_saved", ctx_check_callee_saved },
	{ "fp_control", ctx_check_fp_control },
	{ "stack_alignment", ctx_check_stack_alignment },
	{ "interrupt", ctx_check_interrupt },
};

#define CTX_NCHECKS (sizeof(ctx_checks) / sizeof(ctx_checks[0]))

#endif
