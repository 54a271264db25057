/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <string.h>

#include "../ctx.h"

void prt__ctx_trampoline(void);

/* Matches the frame documented in switch.S. */
struct x86_64_frame {
	uint32_t mxcsr;
	uint16_t fpucw;
	uint16_t pad0;
	uint64_t r15, r14, r13, r12, rbx, rbp;
	uint64_t ret;
};
_Static_assert(sizeof(struct x86_64_frame) == 64, "a new context's frame is one cache line");

void *prt__ctx_init(void *stack_top, prt__ctx_entry_fn entry, void *data)
{
	/*
	 * The frame on one cache line, the highest below @stack_top: a
	 * spawn writes one line of the new stack and the first switch to
	 * it reads one. After the switch's final `ret` pops the return
	 * address, rsp (the line's end) is 16-byte aligned, so the
	 * trampoline's `call` enters @entry with rsp % 16 == 8, as the ABI
	 * requires. Frame-pointer backtraces end at the trampoline's rbp 0,
	 * DWARF ones at its undefined return address (switch.S).
	 */
	struct x86_64_frame *f =
		(struct x86_64_frame *)(((uintptr_t)stack_top - sizeof(*f)) & ~(uintptr_t)63);

	/* Plain stores, not memset: gcc turns a memset of this size into
	 * `rep stos`, whose start-up cost was most of a spawn here. */
	*f = (struct x86_64_frame){ 0 };
	f->mxcsr = 0x1f80;	/* all exceptions masked, round to nearest */
	f->fpucw = 0x037f;	/* x87 default: extended precision, masked */
	f->r12 = (uint64_t)(uintptr_t)entry;
	f->r13 = (uint64_t)(uintptr_t)data;
	f->ret = (uint64_t)(uintptr_t)prt__ctx_trampoline;
	return f;
}
