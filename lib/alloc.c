/* SPDX-License-Identifier: MIT */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

#if PRT_USE_JEMALLOC
#include <jemalloc/jemalloc.h>

void *prt__alloc(size_t size)
{
	return mallocx(size, 0);
}

void *prt__zalloc(size_t size)
{
	return mallocx(size, MALLOCX_ZERO);
}

void *prt__alloc_aligned(size_t size, size_t align)
{
	return mallocx(size, MALLOCX_ALIGN(align));
}

void prt__free(void *p, size_t size)
{
	if (p)
		sdallocx(p, size, 0);
}

#else

void *prt__alloc(size_t size)
{
	return malloc(size);
}

void *prt__zalloc(size_t size)
{
	return calloc(1, size);
}

void *prt__alloc_aligned(size_t size, size_t align)
{
	void *p = NULL;

	if (posix_memalign(&p, align, size) != 0)
		return NULL;
	return p;
}

void prt__free(void *p, size_t size)
{
	(void)size;
	free(p);
}
#endif
