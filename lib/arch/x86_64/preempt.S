/* SPDX-License-Identifier: MIT */
/*
 * x86-64: the trampoline an interrupted context enters (preemption).
 *
 * A signal handler that decided to interrupt a context calls
 * prt__ctx_interrupt() (preempt_ctx.c), which rewrites the interrupted
 * context so that, on return from the signal, it runs this code with
 * three words pushed below its red zone (the 128 bytes below rsp that
 * leaf code may use without moving rsp, System V ABI 3.2.2):
 *
 *   rsp + 0:   fn      the C function to call, fn(arg)
 *   rsp + 8:   arg
 *   rsp + 16:  rip     where the context was interrupted
 *   rsp + 24:  the interrupted context's red zone (128 bytes, untouched)
 *   rsp + 152: the interrupted rsp
 *
 * Every other register holds what it held when the context was
 * interrupted (the kernel restored it on return from the handler). The
 * trampoline saves rflags and the 15 general registers, then the whole
 * extended state with xsave64 (x87, SSE, AVX, AVX-512, everything XCR0
 * enables; fxsave64 where the OS has no xsave) in an area of
 * prt__xstate_size bytes, 64-byte aligned, clears DF as the ABI wants
 * for the call, and gives fn what the ABI promises a called function:
 * an empty x87 stack (fninit: the interrupted code may have values on
 * it, which would overflow the stack of whatever runs next), the default
 * x87 control word and MXCSR, and, with AVX, clean upper halves
 * (vzeroupper, as Go does on darwin). Then it calls fn(arg), and restores
 * all of it in reverse. The
 * final `ret $128` pops rip and skips the red zone, so rsp is again the
 * interrupted rsp. Go's asyncPreempt (runtime/preempt_amd64.s) does the
 * same for Go code, which has no red zone and uses no vector state but
 * X0-X15; C code may hold anything in any register.
 *
 * Stack use below the interrupted rsp: 152 + 128 + prt__xstate_size + 63
 * bytes, plus whatever fn uses (prt__ctx_interrupt_frame()).
 */
	.text
	.globl	prt__preempt_tramp
	.hidden	prt__preempt_tramp
	.type	prt__preempt_tramp, @function
	.p2align 4
prt__preempt_tramp:
	.cfi_startproc
	/*
	 * Not a call: the return address is the interrupted instruction
	 * itself (unwinders must not look up rip - 1), and the caller's
	 * rsp (the CFA) is 152 bytes up.
	 */
	.cfi_signal_frame
	.cfi_def_cfa_offset 152
	.cfi_offset rip, -136
	pushfq
	.cfi_adjust_cfa_offset 8
	pushq	%rax
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rax, 0
	pushq	%rcx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rcx, 0
	pushq	%rdx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rdx, 0
	pushq	%rbx
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rbx, 0
	pushq	%rbp
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rbp, 0
	pushq	%rsi
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rsi, 0
	pushq	%rdi
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset rdi, 0
	pushq	%r8
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r8, 0
	pushq	%r9
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r9, 0
	pushq	%r10
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r10, 0
	pushq	%r11
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r11, 0
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r12, 0
	pushq	%r13
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r13, 0
	pushq	%r14
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r14, 0
	pushq	%r15
	.cfi_adjust_cfa_offset 8
	.cfi_rel_offset r15, 0
	/* rbx (callee-saved, so it survives the call) marks the frame: rbx + 128 = fn's slot. */
	movq	%rsp, %rbx
	.cfi_def_cfa_register rbx
	movl	prt__xstate_size(%rip), %eax
	subq	%rax, %rsp
	andq	$-64, %rsp
	cld
	cmpb	$0, prt__xstate_xsave(%rip)
	je	1f
	/*
	 * xsave writes only XSTATE_BV of the 64-byte header at 512; xrstor
	 * of the standard form faults unless XCOMP_BV and the reserved
	 * bytes after it are zero, and this is stack garbage: zero it.
	 */
	xorl	%eax, %eax
	movq	%rax, 512(%rsp)
	movq	%rax, 520(%rsp)
	movq	%rax, 528(%rsp)
	movq	%rax, 536(%rsp)
	movq	%rax, 544(%rsp)
	movq	%rax, 552(%rsp)
	movq	%rax, 560(%rsp)
	movq	%rax, 568(%rsp)
	movl	$-1, %eax		/* every component XCR0 enables */
	movl	$-1, %edx
	xsave64	(%rsp)
	jmp	2f
1:
	fxsave64 (%rsp)
2:
	fninit				/* x87: empty stack, default control word */
	ldmxcsr	prt__mxcsr_default(%rip)
	cmpb	$0, prt__xstate_avx(%rip)
	je	5f
	vzeroupper
5:
	movq	136(%rbx), %rdi		/* arg */
	callq	*128(%rbx)		/* fn(arg); rsp is 64-byte aligned here */
	cmpb	$0, prt__xstate_xsave(%rip)
	je	3f
	movl	$-1, %eax
	movl	$-1, %edx
	xrstor64 (%rsp)
	jmp	4f
3:
	fxrstor64 (%rsp)
4:
	movq	%rbx, %rsp
	.cfi_def_cfa rsp, 280
	popq	%r15
	.cfi_adjust_cfa_offset -8
	.cfi_restore r15
	popq	%r14
	.cfi_adjust_cfa_offset -8
	.cfi_restore r14
	popq	%r13
	.cfi_adjust_cfa_offset -8
	.cfi_restore r13
	popq	%r12
	.cfi_adjust_cfa_offset -8
	.cfi_restore r12
	popq	%r11
	.cfi_adjust_cfa_offset -8
	.cfi_restore r11
	popq	%r10
	.cfi_adjust_cfa_offset -8
	.cfi_restore r10
	popq	%r9
	.cfi_adjust_cfa_offset -8
	.cfi_restore r9
	popq	%r8
	.cfi_adjust_cfa_offset -8
	.cfi_restore r8
	popq	%rdi
	.cfi_adjust_cfa_offset -8
	.cfi_restore rdi
	popq	%rsi
	.cfi_adjust_cfa_offset -8
	.cfi_restore rsi
	popq	%rbp
	.cfi_adjust_cfa_offset -8
	.cfi_restore rbp
	popq	%rbx
	.cfi_adjust_cfa_offset -8
	.cfi_restore rbx
	popq	%rdx
	.cfi_adjust_cfa_offset -8
	.cfi_restore rdx
	popq	%rcx
	.cfi_adjust_cfa_offset -8
	.cfi_restore rcx
	popq	%rax
	.cfi_adjust_cfa_offset -8
	.cfi_restore rax
	popfq				/* DF and the arithmetic flags as they were */
	.cfi_adjust_cfa_offset -8
	leaq	16(%rsp), %rsp		/* drop fn and arg; lea leaves the flags alone */
	.cfi_adjust_cfa_offset -16
	ret	$128			/* to rip; then skip the red zone: rsp as interrupted */
	.cfi_endproc
	.size	prt__preempt_tramp, .-prt__preempt_tramp

/*
 * The restorer of a handler installed with the rt_sigaction system call
 * itself (lib/sigact.c): an x86-64 handler returns here, which returns
 * from the signal. The same two instructions as libc's __restore_rt, and
 * like it no unwind table entry: unwinders (libgcc's, gdb's) recognise
 * a signal frame by these bytes. The nop: an unwinder looks up the
 * address before a return address.
 */
	.globl	prt__sig_restorer
	.hidden	prt__sig_restorer
	.type	prt__sig_restorer, @function
	.p2align 4
	nop
prt__sig_restorer:
	movq	$15, %rax		/* __NR_rt_sigreturn */
	syscall
	hlt				/* not reached */
	.size	prt__sig_restorer, .-prt__sig_restorer

	.section .note.GNU-stack,"",@progbits
