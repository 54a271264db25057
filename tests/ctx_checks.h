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

struct ctx_check {
	const char *name;
	int (*fn)(void);
};

__attribute__((unused)) static const struct ctx_check ctx_checks[] = {
	{ "ping_pong", ctx_check_ping_pong },
	{ "callee_saved", ctx_check_callee_saved },
	{ "fp_control", ctx_check_fp_control },
	{ "stack_alignment", ctx_check_stack_alignment },
};

#define CTX_NCHECKS (sizeof(ctx_checks) / sizeof(ctx_checks[0]))

#endif
