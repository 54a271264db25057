/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include <proxyrt/common.h>

PRT_API void prt_workerset_zero(prt_workerset_t *set)
{
	memset(set, 0, sizeof(*set));
}

PRT_API void prt_workerset_fill(prt_workerset_t *set)
{
	memset(set, 0xff, sizeof(*set));
}

PRT_API int prt_workerset_add(prt_workerset_t *set, int index)
{
	if (!set || index < 0 || index >= PRT_MAX_WORKERS)
		return -EINVAL;
	set->bits[index / 64] |= UINT64_C(1) << (index % 64);
	return 0;
}

PRT_API int prt_workerset_del(prt_workerset_t *set, int index)
{
	if (!set || index < 0 || index >= PRT_MAX_WORKERS)
		return -EINVAL;
	set->bits[index / 64] &= ~(UINT64_C(1) << (index % 64));
	return 0;
}

PRT_API int prt_workerset_has(const prt_workerset_t *set, int index)
{
	if (!set || index < 0 || index >= PRT_MAX_WORKERS)
		return 0;
	return (set->bits[index / 64] >> (index % 64)) & 1;
}

PRT_API int prt_workerset_count(const prt_workerset_t *set)
{
	int n = 0;

	for (size_t i = 0; i < PRT_MAX_WORKERS / 64; i++)
		n += __builtin_popcountll(set->bits[i]);
	return n;
}
