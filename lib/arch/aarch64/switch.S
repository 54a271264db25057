/* SPDX-License-Identifier: MIT */
/*
 * AArch64 (AAPCS64) context switch.
 *
 * Frame saved on the stack of the context being left (lowest address
 * first, the address stored in *save_sp; 176 bytes, so sp stays 16-byte
 * aligned as the hardware requires):
 *
 *   0: x29 (fp)   8: x30 (lr, the return address)
 *  16: x19  24: x20  32: x21  40: x22  48: x23  56: x24  64: x25  72: x26
 *  80: x27  88: x28
 *  96: d8  104: d9  112: d10  120: d11  128: d12  136: d13  144: d14
 * 152: d15
 * 160: FPCR (8 bytes)   168: padding
 *
 * Only the low 64 bits of v8-v15 are callee-saved (AAPCS64 6.1.2). FPSR
 * holds sticky status, not control, so it is left alone, as x86-64
 * leaves the MXCSR flags to whoever reads them.
 *
 * ctx_init.c builds the same frame for a new context, with x30 pointing
 * at prt__ctx_trampoline, x19 = entry, x20 = data, x29 = 0, FPCR = 0.
 */
	.text
	.globl	prt__ctx_switch
	.hidden	prt__ctx_switch
	.type	prt__ctx_switch, %function
	.p2align 4
prt__ctx_switch:
	.cfi_startproc
	stp	x29, x30, [sp, #-176]!
	.cfi_def_cfa_offset 176
	.cfi_offset x29, -176
	.cfi_offset x30, -168
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	stp	x23, x24, [sp, #48]
	stp	x25, x26, [sp, #64]
	stp	x27, x28, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	.cfi_offset x19, -160
	.cfi_offset x20, -152
	.cfi_offset x21, -144
	.cfi_offset x22, -136
	.cfi_offset x23, -128
	.cfi_offset x24, -120
	.cfi_offset x25, -112
	.cfi_offset x26, -104
	.cfi_offset x27, -96
	.cfi_offset x28, -88
	.cfi_offset d8, -80
	.cfi_offset d9, -72
	.cfi_offset d10, -64
	.cfi_offset d11, -56
	.cfi_offset d12, -48
	.cfi_offset d13, -40
	.cfi_offset d14, -32
	.cfi_offset d15, -24
	mrs	x9, fpcr
	str	x9, [sp, #160]

	mov	x10, sp
	str	x10, [x0]		/* *save_sp = sp */
	mov	sp, x1			/* switch stacks */

	/*
	 * Writing FPCR may synchronise the FP pipeline on some cores, so
	 * skip it when both contexts use the same control word (the common
	 * case), as glibc's fesetenv does.
	 */
	ldr	x9, [sp, #160]
	mrs	x10, fpcr
	cmp	x9, x10
	b.eq	1f
	msr	fpcr, x9
1:
	ldp	d14, d15, [sp, #144]
	ldp	d12, d13, [sp, #128]
	ldp	d10, d11, [sp, #112]
	ldp	d8, d9, [sp, #96]
	ldp	x27, x28, [sp, #80]
	ldp	x25, x26, [sp, #64]
	ldp	x23, x24, [sp, #48]
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #176
	.cfi_def_cfa_offset 0
	.cfi_restore x29
	.cfi_restore x30
	.cfi_restore x19
	.cfi_restore x20
	.cfi_restore x21
	.cfi_restore x22
	.cfi_restore x23
	.cfi_restore x24
	.cfi_restore x25
	.cfi_restore x26
	.cfi_restore x27
	.cfi_restore x28
	.cfi_restore d8
	.cfi_restore d9
	.cfi_restore d10
	.cfi_restore d11
	.cfi_restore d12
	.cfi_restore d13
	.cfi_restore d14
	.cfi_restore d15
	mov	x0, x2			/* return arg in the resumed context */
	ret
	.cfi_endproc
	.size	prt__ctx_switch, .-prt__ctx_switch

/*
 * First code run on a new stack, reached by the switch's `ret`: x0 holds
 * the switcher's arg. Calls entry(arg, data); entry never returns. x29 is
 * 0 from the initial frame, which ends frame-pointer backtraces here; the
 * CFI marks the outermost frame (no return address) for DWARF unwinders.
 */
	.globl	prt__ctx_trampoline
	.hidden	prt__ctx_trampoline
	.type	prt__ctx_trampoline, %function
	.p2align 4
prt__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined x30
	mov	x1, x20
	blr	x19
	brk	#0
	.cfi_endproc
	.size	prt__ctx_trampoline, .-prt__ctx_trampoline

	.section .note.GNU-stack,"",%progbits
