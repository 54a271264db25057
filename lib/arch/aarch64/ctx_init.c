/* SPDX-License-Identifier: MIT */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "../ctx.h"

void prt__ctx_trampoline(void);

/* Matches the frame documented in switch.S. */
struct aarch64_frame {
	uint64_t x29, x30;
	uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
	uint64_t d8, d9, d10, d11, d12, d13, d14, d15;
	uint64_t fpcr;
	uint64_t pad;
};

_Static_assert(sizeof(struct aarch64_frame) == 176,
	       "frame size must match switch.S");
_Static_assert(offsetof(struct aarch64_frame, x19) == 16 &&
	       offsetof(struct aarch64_frame, d8) == 96 &&
	       offsetof(struct aarch64_frame, fpcr) == 160,
	       "frame layout must match switch.S");

void *prt__ctx_init(void *stack_top, prt__ctx_entry_fn entry, void *data)
{
	uintptr_t top = (uintptr_t)stack_top & ~(uintptr_t)15;
	/*
	 * The frame size is a multiple of 16, so the trampoline runs, and
	 * calls @entry, with sp 16-byte aligned. The 16 bytes above the
	 * frame are a zeroed end-of-stack marker, as on x86-64.
	 */
	struct aarch64_frame *f = (struct aarch64_frame *)(top - 16 - sizeof(*f));

	/*
	 * Zero also gives x29 = 0 (ends frame-pointer backtraces) and
	 * FPCR = 0: round to nearest, no traps, no flush-to-zero, IEEE NaNs,
	 * the AAPCS64 default a new thread starts with.
	 */
	memset(f, 0, sizeof(*f) + 16);
	f->x19 = (uint64_t)(uintptr_t)entry;
	f->x20 = (uint64_t)(uintptr_t)data;
	f->x30 = (uint64_t)(uintptr_t)prt__ctx_trampoline;
	return f;
}
