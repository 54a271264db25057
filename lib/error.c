/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

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

PRT_API const char *prt_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case -EINVAL: return "-EINVAL: invalid argument";
	case -ENOMEM: return "-ENOMEM: out of memory or memory mappings";
	case -EPERM: return "-EPERM: not allowed from this context (not a fiber?)";
	case -EDEADLK: return "-EDEADLK: the call would wait for itself";
	case -ESRCH: return "-ESRCH: no such fiber (stale handle: joined or finished)";
	case -ESHUTDOWN: return "-ESHUTDOWN: the runtime is being destroyed";
	case -EAGAIN: return "-EAGAIN: resource temporarily unavailable";
	case -ENOENT: return "-ENOENT: no such file";
	case -ENOSYS: return "-ENOSYS: not supported";
	default: return err < 0 ? "negative errno value (see errno.h)" : "not an error code";
	}
}
