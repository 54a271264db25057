/* SPDX-License-Identifier: MIT */
#include <proxyrt/version.h>

PRT_API int prt_version(void)
{
	return PRT_VERSION_NUMBER;
}

PRT_API int prt_version_check(int major, int minor)
{
	return major == PRT_VERSION_MAJOR && minor <= PRT_VERSION_MINOR;
}
