/* SPDX-License-Identifier: MIT */
/*
 * Mutex set-up: the attribute object (type, proxy execution, name), init
 * and destroy. Storage that is all zero (PRT_MUTEX_INITIALIZER) is a
 * ready normal mutex with the runtime's proxy default; init writes just
 * that, plus the attributes (the waiter list is set up at first use,
 * mutex.c's waiters_init()).
 */
#include <errno.h>
#include <string.h>

#include "mutex_int.h"
#include "objname.h"

_Static_assert(sizeof(((prt_mutexattr_t *)0)->__reserved) >= sizeof(const char *),
	       "prt_mutexattr_t cannot hold a name pointer");

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

/* The values the setters accept, and prt_mutex_init checks again. */
static bool type_ok(int type)
{
	return type >= PRT_MUTEX_NORMAL && type <= PRT_MUTEX_RECURSIVE;
}

static bool proxy_ok(int proxy)
{
	return proxy >= PRT_MUTEX_PROXY_DEFAULT && proxy <= PRT_MUTEX_PROXY_OFF;
}

/* A setter's store into its field: EINVAL, changing nothing, unless @ok. */
static int attr_set(int *field, int v, bool ok)
{
	if (!ok)
		return EINVAL;
	*field = v;
	return 0;
}

/* A getter's load from its field into @out (EINVAL if NULL). */
static int attr_get(const int *field, int *out)
{
	if (!out)
		return EINVAL;
	*out = *field;
	return 0;
}

PRT_API int prt_mutexattr_settype(prt_mutexattr_t *a, int type)
{
	return a ? attr_set(&a->type, type, type_ok(type)) : EINVAL;
}

PRT_API int prt_mutexattr_gettype(const prt_mutexattr_t *a, int *type)
{
	return a ? attr_get(&a->type, type) : EINVAL;
}

PRT_API int prt_mutexattr_setproxy(prt_mutexattr_t *a, int proxy)
{
	return a ? attr_set(&a->proxy, proxy, proxy_ok(proxy)) : EINVAL;
}

PRT_API int prt_mutexattr_getproxy(const prt_mutexattr_t *a, int *proxy)
{
	return a ? attr_get(&a->proxy, proxy) : EINVAL;
}

PRT_API int prt_mutexattr_setname(prt_mutexattr_t *a, const char *name)
{
	if (!a || !name)
		return EINVAL;
	prt__attr_set_name(a->__reserved, name);
	return 0;
}

PRT_API int prt_mutexattr_getname(const prt_mutexattr_t *a, const char **name)
{
	if (!a || !name)
		return EINVAL;
	*name = prt__attr_name(a->__reserved);
	return 0;
}

/* ---- init, destroy ---------------------------------------------------------- */

PRT_API int prt_mutex_init(prt_mutex_t *um, const prt_mutexattr_t *a)
{
	struct prt__mutex *m = prt__mutex_of(um);
	const char *name;

	if (!um)
		return EINVAL;
	if (a && (!type_ok(a->type) || !proxy_ok(a->proxy)))
		return EINVAL;
	/* The name first: the only step that can fail (ENOMEM), before @um changes. */
	name = a ? prt__attr_name(a->__reserved) : NULL;
	if (name && *name) {
		if (prt__objname_set(um, PRT_OBJ_MUTEX, name))
			return ENOMEM;
	} else {
		prt__objname_clear(um, PRT_OBJ_MUTEX); /* a name left by a mutex freed without destroy */
	}
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
	/* A condvar waiter seated on it (cond.c): it is in a wait with @m. */
	if (atomic_load_explicit(&m->spin, memory_order_relaxed))
		return EBUSY;
	prt__mark_dead(m->dbg);
	prt__objname_clear(um, PRT_OBJ_MUTEX);
	return 0;
}
