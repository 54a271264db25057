/* SPDX-License-Identifier: MIT */
/*
 * x86-64 System V context switch.
 *
 * Frame saved on the stack of the context being left (lowest address
 * first, the address stored in *save_sp):
 *
 *   0: MXCSR (4 bytes)   4: x87 control word (2 bytes)   8: padding
 *  16: r15  24: r14  32: r13  40: r12  48: rbx  56: rbp  64: return address
 *
 * ctx_init.c builds the same frame for a new context, with the return
 * address pointing at prt__ctx_trampoline, r12 = entry, r13 = data.
 */
	.text
	.globl	prt__ctx_switch
	.hidden	prt__ctx_switch
	.type	prt__ctx_switch, @function
	.p2align 4
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
	subq	$16, %rsp
	.cfi_adjust_cfa_offset 16
	movq	$0, (%rsp)		/* padding must be zero: compared below */
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)

	movq	%rsp, (%rdi)		/* *save_sp = rsp */
	/*
	 * Our MXCSR (low) and x87 CW (bits 32-47) in rcx, read back each
	 * with the width it was stored: one 8-byte load across the three
	 * stores above cannot be forwarded from them, and waited for them
	 * to reach the cache (most of the switch's time on an Intel Xeon).
	 */
	movl	(%rsp), %ecx
	movzwl	4(%rsp), %eax
	shlq	$32, %rax
	orq	%rax, %rcx
	movq	%rsi, %rsp		/* switch stacks */

	/*
	 * Loading MXCSR and the x87 CW is slow; skip it when the resumed
	 * context's words equal ours (nearly always), as glibc's fesetenv
	 * does. Bits 48-63 of the word pair are padding, always zero.
	 */
	cmpq	(%rsp), %rcx
	je	1f
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
1:
	addq	$16, %rsp
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
