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
	uint64_t pad1;
	uint64_t r15, r14, r13, r12, rbx, rbp;
	uint64_t ret;
};

void *prt__ctx_init(void *stack_top, prt__ctx_entry_fn entry, void *data)
{
	uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
	/*
	 * After the switch's final `ret` pops the return address, rsp must
	 * be 16-byte aligned so that the trampoline's `call` enters @entry
	 * with rsp % 16 == 8, as the ABI requires. The two words above the
	 * return address are a zeroed end-of-stack marker.
	 */
	struct x86_64_frame *f = (struct x86_64_frame *)(top - 16 - sizeof(*f));

	/* Plain stores, not memset: gcc turns a memset of this size into
	 * `rep stos`, whose start-up cost was most of a spawn here. */
	*f = (struct x86_64_frame){ 0 };
	((uint64_t *)(f + 1))[0] = 0;
	((uint64_t *)(f + 1))[1] = 0;
	f->mxcsr = 0x1f80;	/* all exceptions masked, round to nearest */
	f->fpucw = 0x037f;	/* x87 default: extended precision, masked */
	f->r12 = (uint64_t)(uintptr_t)entry;
	f->r13 = (uint64_t)(uintptr_t)data;
	f->ret = (uint64_t)(uintptr_t)prt__ctx_trampoline;
	return f;
}
