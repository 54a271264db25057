/* SPDX-License-Identifier: MIT */
#ifndef PRT_ARCH_CTX_H
#define PRT_ARCH_CTX_H

/*
 * The context switch, written in assembly per architecture
 * (lib/arch/<arch>/switch.S). Only what the ABI says a callee must
 * preserve is saved: callee-saved general registers, the stack pointer,
 * and the floating-point control words (x86-64: MXCSR and x87 CW;
 * aarch64: d8-d15 and FPCR). Everything else is caller-saved, so the C
 * compiler has already spilled what it needs around the call.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Save the current context on the current stack, store its stack
 * pointer in *@save_sp, and resume the context whose stack pointer is
 * @load_sp. Returns, in the resumed context, the @arg passed by whoever
 * switched to it (the kernel's "prev" of finish_task_switch).
 */
void *prt__ctx_switch(void **save_sp, void *load_sp, void *arg);

/*
 * Build the initial frame of a new context on the stack ending at
 * @stack_top (below it, aligned as the architecture's frame wants: 16
 * bytes, or a cache line on x86-64), so that the first prt__ctx_switch() to the returned stack
 * pointer calls @entry(arg_of_that_switch, @data). @entry must never
 * return. Written in C per architecture in lib/arch/<arch>/ctx_init.c.
 */
typedef void (*prt__ctx_entry_fn)(void *from, void *data);
void *prt__ctx_init(void *stack_top, prt__ctx_entry_fn entry, void *data);

/*
 * Interrupting a context (preemption): lib/arch/<arch>/preempt.S and
 * preempt_ctx.c.
 *
 * prt__ctx_interrupt(), called from a signal handler with the context
 * the signal interrupted (@uc, the handler's third argument), rewrites
 * that context so that, once the handler returns, it calls @fn(@arg) on
 * its own stack, below the interrupted stack pointer, and then resumes
 * where it was interrupted with every register exactly as it was: the
 * general registers, the flags, and the whole FP/SIMD state with its
 * control words (x86-64: saved with xsave by the trampoline; aarch64:
 * the kernel's signal frame, copied onto the stack and returned through
 * rt_sigreturn once @fn returns). @fn runs as if called from the
 * interrupted instruction: it may switch to other contexts and come
 * back. The interrupted context's signal mask is in effect.
 *
 * Returns false, with nothing changed, if the frame would reach below
 * @stack_lo (pass the lowest address @fn itself may not use) or the
 * context cannot be interrupted there (a misaligned stack pointer; on
 * aarch64, state the kernel kept outside the frame). The handler must
 * run on another stack than the interrupted one (SA_ONSTACK): the frame
 * is written below the interrupted stack pointer, where a handler on the
 * same stack would be running.
 *
 * prt__ctx_interrupt_init() must be called once before the first
 * interrupt (it learns the size of the CPU's extended state);
 * prt__ctx_interrupt_frame() is the most the frame takes below the
 * interrupted stack pointer, @fn's own use not counted.
 */
void prt__ctx_interrupt_init(void);
size_t prt__ctx_interrupt_frame(void);
bool prt__ctx_interrupt(void *uc, void (*fn)(void *), void *arg, uintptr_t stack_lo);

#endif
