/* SPDX-License-Identifier: MIT */
#ifndef PROXYRT_VERSION_H
#define PROXYRT_VERSION_H

#include <proxyrt/common.h>

#define PRT_VERSION_MAJOR 0
#define PRT_VERSION_MINOR 1
#define PRT_VERSION_PATCH 0
#define PRT_VERSION_STRING "0.1.0"
#define PRT_VERSION_NUMBER (PRT_VERSION_MAJOR * 10000 + PRT_VERSION_MINOR * 100 + PRT_VERSION_PATCH)

PRT_EXTERN_C_BEGIN

/*
 * The version of the library actually linked, as PRT_VERSION_NUMBER.
 * Compare with the header's PRT_VERSION_NUMBER to detect a mismatch.
 * Context: any thread, never switches.
 */
PRT_API int prt_version(void);

/*
 * 1 if the linked library is ABI-compatible with headers of version
 * @major.@minor (same major, linked minor >= @minor), else 0.
 */
PRT_API int prt_version_check(int major, int minor);

PRT_EXTERN_C_END

#endif
