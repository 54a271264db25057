/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_COMMON_H
#define PROXYRT_COMMON_H

/*
 * Conventions shared by every proxyrt header.
 *
 * Errors come back by value, in one of two conventions:
 * - the runtime, fiber and I/O calls (runtime.h, fiber.h, io.h, the
 *   worker sets below, prt_fiber_wait_chain) return 0 or a non-negative
 *   value on success and a negative errno value (-EINVAL) on failure, as
 *   liburing and libuv do;
 * - the pthread-shaped calls (prt_mutex_*, prt_mutexattr_*, prt_cond_*
 *   in mutex.h) return 0 or a positive errno value (EBUSY), as the
 *   pthread calls they replace do, so code moved from pthreads keeps its
 *   checks.
 * prt_strerror() describes either sign. errno is never set by the
 * library's calls: after a fiber migrates between workers a cached
 * &errno would point at another thread's copy. errno is each fiber's
 * own, as each thread's is (pthreads): a fiber starts with 0 and keeps
 * its value across every scheduling point, on the thread it resumes
 * on; read it afresh there (the compiler may keep &errno across a call;
 * README, "Errors"). A call that fails has no
 * side effects. Each call's comment lists what it returns; the I/O calls
 * also pass on the errors of the syscalls they make.
 *
 * Context lines in the function comments say whether the call may switch
 * fibers (it is then a scheduling point) and whether a plain thread, one
 * that is not running a proxyrt fiber, may call it.
 */

#include <errno.h> /* the codes the calls return: ECANCELED, ETIMEDOUT, ... */
#include <stddef.h>
#include <stdint.h>

#if defined(PRT_BUILDING_LIBRARY) && defined(__GNUC__)
#define PRT_API __attribute__((visibility("default")))
#else
#define PRT_API
#endif

#if defined(__GNUC__)
#define PRT_NORETURN __attribute__((noreturn))
#define PRT_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define PRT_NORETURN
#define PRT_WARN_UNUSED
#endif

#ifdef __cplusplus
#define PRT_EXTERN_C_BEGIN extern "C" {
#define PRT_EXTERN_C_END }
#else
#define PRT_EXTERN_C_BEGIN
#define PRT_EXTERN_C_END
#endif

/* The largest number of workers one runtime can have. */
#define PRT_MAX_WORKERS 256

/*
 * A set of worker indexes (0 .. PRT_MAX_WORKERS-1), used for fiber
 * affinity. Fixed size and layout: it is part of the ABI.
 */
typedef struct prt_workerset {
	uint64_t bits[PRT_MAX_WORKERS / 64];
} prt_workerset_t;

PRT_EXTERN_C_BEGIN

/* Empty the set. Context: any thread, never switches. */
PRT_API void prt_workerset_zero(prt_workerset_t *set);
/* Put every worker index in the set. Context: any thread, never switches. */
PRT_API void prt_workerset_fill(prt_workerset_t *set);
/* Add worker @index. Returns 0, or -EINVAL if @index is out of range. */
PRT_API int prt_workerset_add(prt_workerset_t *set, int index);
/* Remove worker @index. Returns 0, or -EINVAL if @index is out of range. */
PRT_API int prt_workerset_del(prt_workerset_t *set, int index);
/* 1 if @index is in the set, 0 if not or out of range. */
PRT_API int prt_workerset_has(const prt_workerset_t *set, int index);
/* Number of indexes in the set. */
PRT_API int prt_workerset_count(const prt_workerset_t *set);

/*
 * A description of error code @err, either sign: prt_strerror(-ETIMEDOUT)
 * and prt_strerror(ETIMEDOUT) give the same text, libc's ("Connection
 * timed out", as strerrordesc_np), except that ESRCH and ESHUTDOWN also
 * say what they mean from proxyrt's calls (a stale fiber handle; a
 * runtime being destroyed). 0 gives "Success"; a value that is no errno
 * value (libc has no text for it) a sentence saying so. The string is constant
 * and static: never freed or overwritten, the same for every thread and
 * fiber, untranslated.
 * Context: any thread, never switches.
 */
PRT_API const char *prt_strerror(int err);

PRT_EXTERN_C_END

#endif
