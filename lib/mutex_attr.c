/* SPDX-License-Identifier: MIT */
/*
 * Mutex set-up: the attribute object (type, proxy execution), init and
 * destroy. Storage that is all zero (PRT_MUTEX_INITIALIZER) is a
 * ready normal mutex with the runtime's proxy default; init writes just
 * that, plus the attributes (the waiter list is set up at first use,
 * mutex.c's waiters_init()).
 */
#include <errno.h>
#include <string.h>

#include "mutex_int.h"

/* ---- attributes ------------------------------------------------------------- */

PRT_API int prt_mutexattr_init(prt_mutexattr_t *a)
{
	if (!a)
		return EINVAL;
	memset(a, 0, sizeof(*a));
	return 0;
}

PRT_API int prt_mutexattr_destroy(prt_mutexattr_t *a)
{
	return a ? 0 : EINVAL;
}

PRT_API int prt_mutexattr_settype(prt_mutexattr_t *a, int type)
{
	if (!a || type < PRT_MUTEX_NORMAL || type > PRT_MUTEX_RECURSIVE)
		return EINVAL;
	a->type = type;
	return 0;
}

PRT_API int prt_mutexattr_gettype(const prt_mutexattr_t *a, int *type)
{
	if (!a || !type)
		return EINVAL;
	*type = a->type;
	return 0;
}

PRT_API int prt_mutexattr_setproxy(prt_mutexattr_t *a, int proxy)
{
	if (!a || proxy < PRT_MUTEX_PROXY_DEFAULT || proxy > PRT_MUTEX_PROXY_OFF)
		return EINVAL;
	a->proxy = proxy;
	return 0;
}

PRT_API int prt_mutexattr_getproxy(const prt_mutexattr_t *a, int *proxy)
{
	if (!a || !proxy)
		return EINVAL;
	*proxy = a->proxy;
	return 0;
}

/* ---- init, destroy ---------------------------------------------------------- */

PRT_API int prt_mutex_init(prt_mutex_t *um, const prt_mutexattr_t *a)
{
	struct prt__mutex *m = prt__mutex_of(um);

	if (!um)
		return EINVAL;
	if (a && (a->type < PRT_MUTEX_NORMAL || a->type > PRT_MUTEX_RECURSIVE ||
		  a->proxy < PRT_MUTEX_PROXY_DEFAULT || a->proxy > PRT_MUTEX_PROXY_OFF))
		return EINVAL;
	memset(um, 0, sizeof(*um));
	if (a) {
		m->type = (uint8_t)a->type;
		m->proxy = (uint8_t)a->proxy;
	}
	return 0;
}

PRT_API int prt_mutex_destroy(prt_mutex_t *um)
{
	struct prt__mutex *m = prt__mutex_of(um);

	if (!um)
		return EINVAL;
	prt__check_live(m->dbg, "prt_mutex_destroy", um);
	/*
	 * acquire: pairs with the release of the last unlock, so the caller's
	 * reuse of the storage comes after that unlock's accesses to it.
	 */
	if (atomic_load_explicit(&m->owner, memory_order_acquire))
		return EBUSY;
	prt__mark_dead(m->dbg);
	return 0;
}
