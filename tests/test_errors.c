/* SPDX-License-Identifier: MIT */
/*
 * One error story (proxyrt/common.h, "Errors"): prt_strerror() gives a
 * real message for every value a call documents, in either convention
 * (-errno from the runtime, fiber and I/O calls; errno from the
 * pthread-shaped ones), the same text for both signs, from a constant
 * string. Checked two ways: a table of each call's documented returns,
 * and every errno name the installed headers mention.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "test_common.h"

/* A message that says nothing about the code: the fallback, or libc's own. */
static bool generic(const char *s)
{
	return !s || !*s || !strcmp(s, prt_strerror(INT_MIN)) ||
	       !strcmp(s, prt_strerror(INT_MAX)) || !strncmp(s, "Unknown error", 13);
}

/* @e (> 0) has a real message, the same (the very same string) for -@e and @e. */
static void check_code(const char *what, int e)
{
	const char *neg = prt_strerror(-e), *pos = prt_strerror(e);

	if (generic(neg) || generic(pos) || neg != pos || strcmp(neg, pos))
		fail_msg("%s: code %d: prt_strerror(-%d) = \"%s\", prt_strerror(%d) = \"%s\"", what,
			 e, e, neg ? neg : "(null)", e, pos ? pos : "(null)");
	/* Constant: asking again gives the same string, not a buffer refilled. */
	assert_ptr_equal(prt_strerror(-e), neg);
}

/* What each call documents in its header (positive: the pthread-shaped calls). */
struct call_errors {
	const char *call;
	int codes[20];
};

static const struct call_errors documented[] = {
	/* common.h */
	{ "prt_workerset_add/del", { -EINVAL } },
	/* fiber.h */
	{ "prt_spawn", { -EINVAL, -ENOMEM, -ESHUTDOWN } },
	{ "prt_join", { -EDEADLK, -EINVAL, -ESRCH, -ECANCELED } },
	{ "prt_detach", { -EINVAL, -ESRCH } },
	{ "prt_yield", { -EPERM } },
	{ "prt_fiber_name", { -EINVAL, -ESRCH } },
	{ "prt_fiber_set/get_priority", { -EINVAL, -ESRCH } },
	{ "prt_fiber_set/get_affinity", { -EINVAL, -ESRCH } },
	{ "prt_park", { -EPERM, -ECANCELED } },
	{ "prt_cancel/cancelled/cancel_clear", { -ESRCH, -EPERM } },
	{ "prt_unpark", { -ESRCH } },
	{ "prt_sleep_until/ns", { -EPERM, -ENOMEM, -ECANCELED } },
	/* runtime.h */
	{ "prt_runtime_create", { -EINVAL, -ENOMEM, -EMFILE, -EAGAIN, -ENOSYS, -EPERM } },
	{ "prt_runtime_destroy", { -EINVAL, -EDEADLK } },
	{ "prt_run/run_ex", { -EINVAL, -ENOMEM } },
	{ "prt_runtime_nworkers/worker_info/steal_order", { -EINVAL } },
	{ "prt_worker_stats/stats_reset", { -EINVAL } },
	{ "prt_runtime_dump", { -EINVAL, -EPIPE, -EBADF, -EIO } },
	{ "prt_worker_index", { -EPERM } },
	/* io.h */
	{ "prt_runtime_io_backend", { -EINVAL } },
	{ "prt_read/write/.../close",
	  { -EBADF, -EINVAL, -EFAULT, -ETIMEDOUT, -ECANCELED, -EPIPE, -ECONNRESET, -EINTR,
	    -ENOMEM, -ENOSPC, -EAGAIN, -ENOTCONN, -ECONNREFUSED, -EMFILE, -EISDIR, -ENOTSOCK } },
	{ "prt_stream_*",
	  { -EINVAL, -EBADF, -EPERM, -ENOMEM, -EBUSY, -ECONNRESET, -ETIMEDOUT, -ECANCELED } },
	{ "prt_offload", { -EINVAL, -ENOMEM, -EAGAIN, -ECANCELED } },
	{ "prt_openat/fsync/fdatasync/fallocate/statx/renameat/unlinkat/socket",
	  { -EFAULT, -EBADF, -ETIMEDOUT, -ENOMEM, -EAGAIN, -ENAMETOOLONG, -ENOENT, -EEXIST,
	    -EACCES, -ENOSPC, -EINTR, -ECANCELED } },
	/* mutex.h: pthreads' convention */
	{ "prt_mutexattr_*", { EINVAL } },
	{ "prt_mutex_init/destroy", { EINVAL, EBUSY, ENOMEM } },
	{ "prt_condattr_*", { EINVAL } },
	{ "prt_mutex_lock", { EDEADLK, EAGAIN, EINVAL, ENOMEM, ECANCELED } },
	{ "prt_mutex_trylock", { EBUSY, EAGAIN, EINVAL, ENOMEM } },
	{ "prt_mutex_timedlock(_ns)", { ETIMEDOUT, EINVAL, EDEADLK, EAGAIN, ENOMEM, ECANCELED } },
	{ "prt_mutex_unlock", { EPERM, EINVAL } },
	{ "prt_cond_*", { EINVAL, EBUSY, EPERM, ETIMEDOUT, ENOMEM, EDEADLK, ECANCELED } },
	/* sem.h: pthreads' convention too */
	{ "prt_sem_*", { EINVAL, EBUSY, EAGAIN, ETIMEDOUT, ENOMEM, EOVERFLOW, ECANCELED } },
	/* waitgroup.h: pthreads' convention (prt_waitgroup_spawn: prt_spawn's) */
	{ "prt_waitgroup_*", { EINVAL, EBUSY, EOVERFLOW, ETIMEDOUT, ENOMEM, ECANCELED } },
	/* rwlock.h: pthreads' convention */
	{ "prt_rwlockattr_*", { EINVAL } },
	{ "prt_rwlock_init/destroy", { EINVAL, EBUSY, ENOMEM } },
	{ "prt_rwlock_rdlock/wrlock", { EDEADLK, EAGAIN, EINVAL, ENOMEM, ECANCELED } },
	{ "prt_rwlock_tryrdlock/trywrlock", { EBUSY, EAGAIN, EINVAL, ENOMEM } },
	{ "prt_rwlock_timed*lock(_ns)", { ETIMEDOUT, EINVAL, EDEADLK, EAGAIN, ENOMEM, ECANCELED } },
	{ "prt_rwlock_unlock", { EPERM, EINVAL } },
	{ "prt_fiber_wait_chain", { -EINVAL, -ESRCH } },
};

static void test_documented_calls(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(documented) / sizeof(documented[0]); i++)
		for (int k = 0; k < 20 && documented[i].codes[k]; k++) {
			int c = documented[i].codes[k];

			check_code(documented[i].call, c < 0 ? -c : c);
		}
}

/* The examples: the text of the code, not "negative errno value" or "not an error code". */
static void test_both_signs(void **state)
{
	static const int codes[] = { ETIMEDOUT, ECANCELED, EBUSY, EPIPE, ECONNRESET,
				     EBADF, EMFILE, EINTR, EDEADLK, EPERM };

	(void)state;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		check_code("example", codes[i]);
		/* libc's text, not our own words */
		assert_non_null(strstr(prt_strerror(codes[i]), strerrordesc_np(codes[i])));
	}
	assert_string_equal(prt_strerror(-ETIMEDOUT), "Connection timed out");
	assert_string_equal(prt_strerror(EBUSY), "Device or resource busy");
	/* The two whose proxyrt meaning libc's words would hide say it too. */
	assert_non_null(strstr(prt_strerror(-ESRCH), "fiber"));
	assert_non_null(strstr(prt_strerror(-ESHUTDOWN), "runtime"));
	/* Distinct codes, distinct messages. */
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		for (size_t j = i + 1; j < sizeof(codes) / sizeof(codes[0]); j++)
			assert_string_not_equal(prt_strerror(codes[i]), prt_strerror(codes[j]));
}

/* 0, and values that are no errno value at all: a sentence, never NULL or a crash. */
static void test_not_errors(void **state)
{
	static const int odd[] = { INT_MIN, INT_MIN + 1, INT_MAX, 4096, -4096, 100000, -100000 };

	(void)state;
	assert_string_equal(prt_strerror(0), "Success");
	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		const char *s = prt_strerror(odd[i]);

		assert_non_null(s);
		assert_non_null(strstr(s, "Not an error code"));
	}
}

/*
 * Every errno name the public headers mention (EINVAL in "-EINVAL",
 * "EBUSY", "(ETIMEDOUT") has a real message, both signs: what a header
 * documents, prt_strerror describes, including codes added later.
 */
static int errno_of_name(const char *name)
{
	for (int e = 1; e < 4096; e++) {
		const char *n = strerrorname_np(e);

		if (n && !strcmp(n, name))
			return e;
	}
	return 0;
}

static int scan_header(const char *file, bool *seen_etimedout, bool *seen_ebusy)
{
	char path[512], tok[32];
	int found = 0, c;
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/../include/proxyrt/%s", PRT_TEST_SRCDIR, file);
	f = fopen(path, "r");
	assert_non_null(f);
	do {
		c = fgetc(f);
		if (c != EOF && (c == '_' || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				 (c >= 'a' && c <= 'z'))) {
			if (n < sizeof(tok) - 1)
				tok[n++] = (char)c;
			continue;
		}
		tok[n] = '\0';
		if (n >= 3 && tok[0] == 'E') {
			int e = errno_of_name(tok);

			if (e) {
				check_code(tok, e);
				found++;
				*seen_etimedout |= e == ETIMEDOUT;
				*seen_ebusy |= e == EBUSY;
			}
		}
		n = 0;
	} while (c != EOF);
	fclose(f);
	return found;
}

static void test_header_names(void **state)
{
	static const char *const headers[] = { "common.h", "fiber.h", "io.h", "mutex.h",
					       "proxyrt.h", "runtime.h", "rwlock.h", "sem.h", "version.h" };
	bool etimedout = false, ebusy = false;
	int found = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
		found += scan_header(headers[i], &etimedout, &ebusy);
	/* The scan really reads the documentation. */
	assert_true(found >= 50);
	assert_true(etimedout && ebusy);
}

/* Any thread, at the same time: the same constant strings. */
static void *strerror_thread(void *arg)
{
	const char **out = arg;

	for (int i = 0; i < 10000; i++)
		if (prt_strerror(-ETIMEDOUT) != out[0] || prt_strerror(EBUSY) != out[1])
			return (void *)1;
	return NULL;
}

static void test_threads(void **state)
{
	const char *want[2] = { prt_strerror(ETIMEDOUT), prt_strerror(-EBUSY) };
	pthread_t t[4];
	void *r;

	(void)state;
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, strerror_thread, want), 0);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], &r), 0);
		assert_null(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_documented_calls),
		cmocka_unit_test(test_both_signs),
		cmocka_unit_test(test_not_errors),
		cmocka_unit_test(test_header_names),
		cmocka_unit_test(test_threads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
