/* SPDX-License-Identifier: MIT */
/*
 * The checks of ctx_checks.h as a plain program, for targets without
 * cmocka: scripts/check-aarch64.sh cross-builds it with only the arch
 * files and runs it under qemu-user. Exits 0 iff every check passed.
 */
#include <stdio.h>

#include "ctx_checks.h"

int main(void)
{
	unsigned passed = 0, failed = 0;

	for (size_t i = 0; i < CTX_NCHECKS; i++) {
		if (ctx_checks[i].fn() == 0) {
			passed++;
		} else {
			failed++;
			fprintf(stderr, "ctx selftest: %s FAILED\n", ctx_checks[i].name);
		}
	}
	printf("ctx selftest: %u passed, %u failed\n", passed, failed);
	return failed != 0;
}
