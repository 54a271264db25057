/* SPDX-License-Identifier: MIT */
/*
 * Built against the installed headers and library only, as C and as C++
 * (scripts/check-install.sh): the public API must stand alone.
 */
#include <proxyrt/proxyrt.h>
#include <stdio.h>

static void *hello(void *arg)
{
	return arg;
}

int main(void)
{
	void *res = NULL;
	int err;

	if (!prt_version_check(PRT_VERSION_MAJOR, PRT_VERSION_MINOR)) {
		fprintf(stderr, "consumer: header/library version mismatch\n");
		return 1;
	}
	err = prt_run(NULL, hello, (void *)"ok", &res);
	if (err) {
		fprintf(stderr, "consumer: %s\n", prt_strerror(err));
		return 1;
	}
	printf("consumer: %s (proxyrt %s)\n", (const char *)res, PRT_VERSION_STRING);
	return 0;
}
