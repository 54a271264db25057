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

#include <stddef.h>

/*
 * Save the current context on the current stack, store its stack
 * pointer in *@save_sp, and resume the context whose stack pointer is
 * @load_sp. Returns, in the resumed context, the @arg passed by whoever
 * switched to it (the kernel's "prev" of finish_task_switch).
 */
void *prt__ctx_switch(void **save_sp, void *load_sp, void *arg);

/*
 * Build the initial frame of a new context on the stack ending at
 * @stack_top (rounded down to 16 bytes), so that the first prt__ctx_switch() to the returned stack
 * pointer calls @entry(arg_of_that_switch, @data). @entry must never
 * return. Written in C per architecture in lib/arch/<arch>/ctx_init.c.
 */
typedef void (*prt__ctx_entry_fn)(void *from, void *data);
void *prt__ctx_init(void *stack_top, prt__ctx_entry_fn entry, void *data);

#endif
