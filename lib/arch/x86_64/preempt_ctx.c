/* SPDX-License-Identifier: MIT */
/*
 * x86-64: interrupting a context from a signal handler (arch/ctx.h,
 * "Interrupting a context"); the trampoline is preempt.S.
 */
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

#include "../ctx.h"

void prt__preempt_tramp(void);

/*
 * Read by preempt.S: bytes of the extended-state area and whether it is
 * an xsave area (else an fxsave one). Written once, before the first
 * interrupt (prt__ctx_interrupt_init, under the caller's lock; the
 * signal that leads to the trampoline is sent after it returns).
 */
uint32_t prt__xstate_size = 512;
uint8_t prt__xstate_xsave;
uint8_t prt__xstate_avx;               /* the OS enabled AVX: vzeroupper before the call */
uint32_t prt__mxcsr_default = 0x1f80;  /* all exceptions masked, round to nearest */

/* The red zone, then fn, arg and the return address (preempt.S). */
#define RED_ZONE 128
#define SLOTS 24
/* rflags and 15 general registers. */
#define GPR_AREA 128

void prt__ctx_interrupt_init(void)
{
	unsigned a, b, c, d;

	/*
	 * xsave only if the OS enabled it (OSXSAVE) and says how large the
	 * area for the components it enabled in XCR0 is: CPUID leaf 0xD,
	 * subleaf 0, EBX (Intel SDM vol. 1, 13.2). Else fxsave: x87 and SSE.
	 */
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || __get_cpuid_max(0, NULL) < 0xd)
		return;
	__cpuid_count(0xd, 0, a, b, c, d);
	if (b < 576) /* legacy area and header at least */
		return;
	prt__xstate_size = (b + 63) & ~63u;
	prt__xstate_xsave = 1;
	{
		unsigned lo, hi;

		__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
		(void)hi;
		prt__xstate_avx = (lo & 6) == 6; /* SSE and AVX state enabled */
	}
}

size_t prt__ctx_interrupt_frame(void)
{
	return RED_ZONE + SLOTS + GPR_AREA + prt__xstate_size + 63;
}

bool prt__ctx_interrupt(void *ucv, void (*fn)(void *), void *arg, uintptr_t stack_lo)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	uintptr_t sp = (uintptr_t)g[REG_RSP];
	uint64_t *slot;

	/* Compiled code keeps rsp 8-byte aligned; anything else is no place to stop. */
	if ((sp & 7) || sp < stack_lo || sp - stack_lo < prt__ctx_interrupt_frame())
		return false;
	slot = (uint64_t *)(sp - RED_ZONE - SLOTS);
	slot[0] = (uint64_t)(uintptr_t)fn;
	slot[1] = (uint64_t)(uintptr_t)arg;
	slot[2] = (uint64_t)g[REG_RIP];
	g[REG_RSP] = (greg_t)(uintptr_t)slot;
	g[REG_RIP] = (greg_t)(uintptr_t)prt__preempt_tramp;
	return true;
}
