/* SPDX-License-Identifier: MIT */
#ifndef PRT_OBJNAME_H
#define PRT_OBJNAME_H

/*
 * objname.c: the names of synchronisation objects (prt_mutexattr_setname,
 * prt_condattr_setname, prt_rwlockattr_setname), kept in one
 * process-wide table keyed by the object's address and kind, for
 * prt_runtime_dump(). See docs/design.md, section 14, "Object names",
 * for why it is global.
 */

#include <stdbool.h>
#include <string.h>

#include <proxyrt/fiber.h> /* PRT_NAME_MAX */

/*
 * The kind of object a name belongs to: part of the key, so an object
 * that embeds another at its start (an rwlock, whose head is a struct
 * prt__mutex: rwlock_int.h) keeps a name of its own.
 */
enum prt__objkind {
	PRT_OBJ_MUTEX = 1,
	PRT_OBJ_COND,
	PRT_OBJ_RWLOCK,
};

/*
 * Name the object at @obj: a copy of at most PRT_NAME_MAX - 1 bytes of
 * @name, replacing any name it had. Returns 0 or ENOMEM (the table could
 * not grow; nothing changed). Context: any thread, never switches.
 */
int prt__objname_set(const void *obj, enum prt__objkind kind, const char *name);
/*
 * Forget the name of @obj, if it has one (its init without a name, its
 * destroy). One load when no object in the process is named.
 */
void prt__objname_clear(const void *obj, enum prt__objkind kind);
/*
 * Copy the name of @obj into @buf (PRT_NAME_MAX bytes, NUL-terminated);
 * false, @buf untouched, if it has none.
 */
bool prt__objname_get(const void *obj, enum prt__objkind kind, char buf[PRT_NAME_MAX]);

/*
 * The name an attribute object holds: the caller's pointer, kept with
 * memcpy in the attribute's reserved storage @field (at least a pointer's
 * size, any alignment), so that 32- and 64-bit builds share the code.
 */
static inline const char *prt__attr_name(const void *field)
{
	const char *name;

	memcpy(&name, field, sizeof(name));
	return name;
}

static inline void prt__attr_set_name(void *field, const char *name)
{
	memcpy(field, &name, sizeof(name));
}

#endif
