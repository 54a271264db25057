/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <proxyrt/common.h>
#include "platform.h"

void prt__assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "proxyrt: internal invariant broken: %s (%s:%d)\n", what, file, line);
	abort();
}

void prt__misuse(const char *call, const void *obj)
{
	fprintf(stderr, "proxyrt: %s(%p) on a destroyed object (debug build check): aborting\n",
		call, obj);
	abort();
}

/*
 * libc's description of errno value @e (1..4095), or NULL if it has
 * none. strerrordesc_np (glibc 2.32) returns the table's own string: no
 * buffer, no locale, safe from any thread or fiber. Elsewhere strerror,
 * whose known values are constant strings in musl and older glibc.
 */
static const char *libc_desc(int e)
{
	const char *s;

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	s = strerrordesc_np(e);
#else
	s = strerror(e);
	if (s && !strncmp(s, "Unknown error", 13))
		s = NULL;
#endif
	return s;
}

/*
 * One message per error code, whatever its sign: the runtime, fiber and
 * I/O calls return -errno, the pthread-shaped mutex and condvar calls
 * errno, and both mean the same error. The text is libc's, except for
 * the two codes proxyrt gives a meaning libc's words would hide (their
 * text keeps libc's words, for the I/O calls that pass the kernel's on).
 */
PRT_API const char *prt_strerror(int err)
{
	unsigned e = err < 0 ? 0u - (unsigned)err : (unsigned)err; /* INT_MIN too */
	const char *s;

	if (err == 0)
		return "Success";
	switch (e) {
	case ESRCH:
		return "No such process (proxyrt: no such fiber, a stale handle: joined, "
		       "or its runtime destroyed)";
	case ESHUTDOWN:
		return "Cannot send after transport endpoint shutdown (proxyrt: the runtime "
		       "is being destroyed)";
	}
	s = e < 4096 ? libc_desc((int)e) : NULL;
	return s ? s : "Not an error code (proxyrt returns 0 or a value, -errno, or errno "
		       "from the pthread-shaped calls)";
}
