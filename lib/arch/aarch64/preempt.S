/* SPDX-License-Identifier: MIT */
/*
 * AArch64: the trampoline an interrupted context enters (preemption).
 *
 * On AArch64 an arbitrary instruction cannot be resumed from user code
 * with every register intact: the only indirect branches take their
 * target in a register (br, ret), and any register may be live at the
 * interrupted instruction (x16/x17 included: compilers use them between
 * calls). So prt__ctx_interrupt() (preempt_ctx.c) copies the kernel's
 * signal frame (struct rt_sigframe: siginfo, then the ucontext with the
 * fpsimd, SVE and other records) onto the interrupted stack, below its
 * stack pointer, and returns from the signal to this code with sp at
 * that copy, x0 = arg and x1 = fn. We call fn(arg), and then return
 * from the copied frame with rt_sigreturn, which reads it at sp and puts
 * back every register, pc, sp, pstate (NZCV), the FP/SIMD registers,
 * FPSR and FPCR and, where the records hold them, the SVE registers, as
 * the kernel saved them when the signal came. One syscall per
 * interrupt; interrupts are rare (at most one per time slice).
 */
	.text
	.globl	prt__preempt_tramp
	.hidden	prt__preempt_tramp
	.type	prt__preempt_tramp, %function
	.p2align 4
prt__preempt_tramp:
	.cfi_startproc
	/* The caller's registers are in the copied frame, not described here: stop unwinding. */
	.cfi_undefined x30
	hint	#34			/* bti c (a nop where BTI is absent) */
	msr	fpcr, xzr		/* fn runs in the default FP mode; the frame has ours */
	blr	x1			/* fn(arg); sp (the copy) is 16-byte aligned */
	mov	x8, #139		/* __NR_rt_sigreturn: the frame at sp */
	svc	#0
	brk	#0			/* not reached */
	.cfi_endproc
	.size	prt__preempt_tramp, .-prt__preempt_tramp

	.section .note.GNU-stack,"",%progbits
