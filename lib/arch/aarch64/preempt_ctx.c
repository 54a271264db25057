/* SPDX-License-Identifier: MIT */
/*
 * AArch64: interrupting a context from a signal handler (arch/ctx.h,
 * "Interrupting a context"); the trampoline is preempt.S, which says why
 * the kernel's own signal frame is used here.
 */
#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

#include "../ctx.h"

void prt__preempt_tramp(void);

/*
 * What rt_sigreturn reads at sp (the kernel's struct rt_sigframe,
 * arch/arm64/kernel/signal.c): a siginfo, then the ucontext, whose
 * layout glibc's ucontext_t matches.
 */
struct rt_frame {
	siginfo_t info;
	ucontext_t uc;
};

_Static_assert(sizeof(siginfo_t) == 128, "siginfo as the kernel lays it out");

/* Record headers in uc_mcontext.__reserved (the kernel's struct _aarch64_ctx). */
struct rec {
	uint32_t magic, size;
};

/* Records that hold an address or a token, so a copy would not be returned from as is. */
#define PRT_EXTRA_MAGIC 0x45585401u /* extra_context: the rest of the records, elsewhere */
#define PRT_GCS_MAGIC 0x47435300u   /* guarded control stack: sigreturn pops a token */

void prt__ctx_interrupt_init(void)
{
}

size_t prt__ctx_interrupt_frame(void)
{
	return sizeof(struct rt_frame) + 15;
}

/* May the frame @uc be copied and returned from elsewhere? Every record must be self-contained. */
static bool frame_movable(const ucontext_t *uc)
{
	const unsigned char *p = (const unsigned char *)uc->uc_mcontext.__reserved;
	size_t off = 0, n = sizeof(uc->uc_mcontext.__reserved);

	while (n - off >= sizeof(struct rec)) {
		/* Records are 16-byte aligned in __reserved, itself 16-byte aligned. */
		struct rec r = *(const struct rec *)(const void *)(p + off);

		if (r.magic == 0)
			return r.size == 0; /* the terminator */
		if (r.magic == PRT_EXTRA_MAGIC || r.magic == PRT_GCS_MAGIC || r.size < sizeof(r) ||
		    r.size > n - off || (r.size & 15))
			return false;
		off += r.size;
	}
	return false;
}

/*
 * Word by word through a volatile pointer, so that no compiler makes it
 * a call to memcpy or memset: the signal handler runs this, and a
 * sanitizer intercepts those (lib/preempt_sig.c).
 */
static void copy_words(void *dst, const void *src, size_t n)
{
	volatile uint64_t *d = dst;
	const uint64_t *s = src;

	for (size_t i = 0; i < n / 8; i++)
		d[i] = s ? s[i] : 0;
}

_Static_assert(sizeof(siginfo_t) % 8 == 0 && sizeof(ucontext_t) % 8 == 0, "copied in words");

bool prt__ctx_interrupt(void *ucv, void (*fn)(void *), void *arg, uintptr_t stack_lo)
{
	ucontext_t *uc = ucv;
	uintptr_t sp = (uintptr_t)uc->uc_mcontext.sp;
	struct rt_frame *f;

	/* sp is 16-byte aligned whenever it is used (SCTLR_EL1.SA0): anything else, leave it. */
	if ((sp & 15) || sp < stack_lo || sp - stack_lo < prt__ctx_interrupt_frame() ||
	    !frame_movable(uc))
		return false;
	f = (struct rt_frame *)((sp - sizeof(*f)) & ~(uintptr_t)15);
	copy_words(&f->info, NULL, sizeof(f->info));
	copy_words(&f->uc, uc, sizeof(*uc));
	uc->uc_mcontext.sp = (uintptr_t)f;
	uc->uc_mcontext.pc = (uintptr_t)prt__preempt_tramp;
	uc->uc_mcontext.regs[0] = (uintptr_t)arg;
	uc->uc_mcontext.regs[1] = (uintptr_t)fn;
	return true;
}
