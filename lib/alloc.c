/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "fault.h"

/* Test builds only (fault.h): a failure to inject, and the count of live objects. */
static inline bool alloc_fault(void)
{
	return prt__fault(PRT_FAULT_ALLOC) != 0;
}

static inline void *counted(void *p)
{
	if (p)
		prt__fault_track(PRT_FAULT_ALLOC, 1);
	return p;
}

#if PRT_USE_JEMALLOC
#include <jemalloc/jemalloc.h>

void *prt__alloc(size_t size)
{
	return alloc_fault() ? NULL : counted(mallocx(size, 0));
}

void *prt__zalloc(size_t size)
{
	return alloc_fault() ? NULL : counted(mallocx(size, MALLOCX_ZERO));
}

void *prt__alloc_aligned(size_t size, size_t align)
{
	return alloc_fault() ? NULL : counted(mallocx(size, MALLOCX_ALIGN(align)));
}

void prt__free(void *p, size_t size)
{
	if (p) {
		prt__fault_track(PRT_FAULT_ALLOC, -1);
		sdallocx(p, size, 0);
	}
}

#else

void *prt__alloc(size_t size)
{
	return alloc_fault() ? NULL : counted(malloc(size));
}

void *prt__zalloc(size_t size)
{
	return alloc_fault() ? NULL : counted(calloc(1, size));
}

void *prt__alloc_aligned(size_t size, size_t align)
{
	void *p = NULL;

	if (alloc_fault() || posix_memalign(&p, align, size) != 0)
		return NULL;
	return counted(p);
}

void prt__free(void *p, size_t size)
{
	(void)size;
	if (p)
		prt__fault_track(PRT_FAULT_ALLOC, -1);
	free(p);
}
#endif
