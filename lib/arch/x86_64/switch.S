/* SPDX-License-Identifier: MIT */
/*
 * x86-64 System V context switch.
 *
 * Frame saved on the stack of the context being left (lowest address
 * first, the address stored in *save_sp):
 *
 *   0: MXCSR (4 bytes)   4: x87 control word (2 bytes)   6: unused
 *   8: r15  16: r14  24: r13  32: r12  40: rbx  48: rbp  56: return address
 *
 * 64 bytes: ctx_init.c builds the same frame for a new context, with
 * the return address pointing at prt__ctx_trampoline, r12 = entry,
 * r13 = data, on one cache line (with 72 it took two; W2, one worker,
 * callgrind's cache model: 1.4 fewer last-level misses a spawn+join).
 */
	.text
	.globl	prt__ctx_switch
	.hidden	prt__ctx_switch
	.type	prt__ctx_switch, @function
	/* a cache line's start: every switch runs it (sched.c, prt_yield, says why) */
	.p2align 6
prt__ctx_switch:
	.cfi_startproc
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	subq	$8, %rsp
	.cfi_adjust_cfa_offset 8
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)		/* *save_sp = rsp */
	movq	%rsi, %rsp		/* switch stacks */
	/*
	 * The resumed context's MXCSR and x87 control word, loaded always,
	 * as Boost.Context's jump_fcontext does. An earlier version compared
	 * them with ours first (glibc's fesetenv skips equal words) and
	 * skipped the loads, which were slow on an Intel Xeon; reading back
	 * what stmxcsr and fnstcw had just stored waited for those stores on
	 * the AMD EPYC host measured since: W1 19.1-19.9 ns a yield with the
	 * compare, 16.9-17.5 without, in 8 interleaved rounds.
	 */
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	movq	%rdx, %rax		/* return arg in the resumed context */
	ret
	.cfi_endproc
	.size	prt__ctx_switch, .-prt__ctx_switch

/*
 * First code run on a new stack: rax holds the switcher's arg. Calls
 * entry(arg, data); entry never returns. rbp is 0 from the initial frame,
 * which ends frame-pointer backtraces here; the CFI marks the outermost
 * frame for DWARF unwinders (gdb, valgrind).
 */
	.globl	prt__ctx_trampoline
	.hidden	prt__ctx_trampoline
	.type	prt__ctx_trampoline, @function
	.p2align 4
prt__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	movq	%rax, %rdi
	movq	%r13, %rsi
	callq	*%r12
	ud2
	.cfi_endproc
	.size	prt__ctx_trampoline, .-prt__ctx_trampoline

	.section .note.GNU-stack,"",@progbits
