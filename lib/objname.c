/* SPDX-License-Identifier: MIT */
/*
 * Names of synchronisation objects, for the dump (docs/design.md,
 * section 14, "Object names").
 *
 * A prt_mutex_t has no room for a name (its 40 bytes are struct
 * prt__mutex, and PRT_MUTEX_SIZE is ABI), so names live here: an open
 * addressing hash table (linear probing, deletion by backward shift),
 * keyed by the object's address and kind, holding a copy of each name.
 * One lock guards it; it is taken only by init and destroy of an object
 * named now or before at that address, and by dumps. @nnames, read
 * without the lock, lets everyone else skip it: a process that names
 * nothing pays one load per init and destroy, and nothing on lock,
 * unlock, wait or signal.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>

#include "alloc.h"
#include "fork.h"
#include "objname.h"
#include "platform.h"

struct slot {
	const void *obj; /* NULL: free slot */
	unsigned kind;   /* enum prt__objkind */
	char name[PRT_NAME_MAX];
};

/* The smallest table; it doubles at half full and is freed when empty. */
#define TABLE_MIN 16

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct prt__fork_hook objname_fork_hook;
static struct slot *table; /* table_lock */
static size_t table_cap;   /* a power of two, or 0 with no table; table_lock */
/*
 * Names in the table. Written under table_lock (release); read without
 * it (acquire) to skip the lock when nothing is named: pairs with the
 * store in set(), so an object named before (and whose memory reached
 * the reader through free/malloc or a handoff, which orders it) is
 * seen as named.
 */
static atomic_size_t nnames;

static size_t home(const void *obj, unsigned kind, size_t cap)
{
	uint64_t h = ((uint64_t)(uintptr_t)obj >> 3) ^ kind;

	return (size_t)((h * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

/* The slot of (@obj, @kind), or of the free slot where it would go. table_lock, table_cap > 0. */
static struct slot *find(const void *obj, unsigned kind)
{
	size_t i = home(obj, kind, table_cap);

	while (table[i].obj && (table[i].obj != obj || table[i].kind != kind))
		i = (i + 1) & (table_cap - 1);
	return &table[i];
}

/* Rehash into a table of @cap slots. ENOMEM leaves the old one. table_lock. */
static int resize(size_t cap)
{
	struct slot *old = table;
	size_t old_cap = table_cap;

	table = prt__zalloc(cap * sizeof(*table));
	if (!table) {
		table = old;
		return ENOMEM;
	}
	table_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].obj)
			*find(old[i].obj, old[i].kind) = old[i];
	prt__free(old, old_cap * sizeof(*old));
	return 0;
}

static void set_count(size_t n)
{
	/* release: pairs with the acquire in named() */
	atomic_store_explicit(&nnames, n, memory_order_release);
}

static size_t named(void)
{
	/* acquire: pairs with the release in set_count() */
	return atomic_load_explicit(&nnames, memory_order_acquire);
}

static void copy_name(char *dst, const char *src)
{
	size_t n = prt__utf8_cut(src, PRT_NAME_MAX - 1);

	memcpy(dst, src, n);
	memset(dst + n, 0, PRT_NAME_MAX - n);
}

int prt__objname_set(const void *obj, enum prt__objkind kind, const char *name)
{
	struct slot *s = NULL;
	size_t n;
	int err = 0;

	prt__fork_hook_add(&objname_fork_hook);
	pthread_mutex_lock(&table_lock);
	n = atomic_load_explicit(&nnames, memory_order_relaxed); /* table_lock */
	if (table_cap && (s = find(obj, kind))->obj) {
		copy_name(s->name, name); /* renamed: no new slot */
	} else {
		/* At most half full, so that a probe always ends at a free slot. */
		if ((n + 1) * 2 > table_cap)
			err = resize(table_cap ? table_cap * 2 : TABLE_MIN);
		if (!err) {
			s = find(obj, kind);
			s->obj = obj;
			s->kind = kind;
			copy_name(s->name, name);
			set_count(n + 1);
		}
	}
	pthread_mutex_unlock(&table_lock);
	return err;
}

/* Remove @s, then move back the entries of its probe run that it separated from home. */
static void remove_slot(struct slot *s)
{
	size_t mask = table_cap - 1, i = (size_t)(s - table), j = i;

	for (;;) {
		size_t k;

		j = (j + 1) & mask;
		if (!table[j].obj)
			break;
		k = home(table[j].obj, table[j].kind, table_cap);
		/* Entry j may move to i if its home is not cyclically within (i, j]. */
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			table[i] = table[j];
			i = j;
		}
	}
	table[i].obj = NULL;
}

void prt__objname_clear(const void *obj, enum prt__objkind kind)
{
	struct slot *s;
	size_t n;

	if (!named())
		return;
	pthread_mutex_lock(&table_lock);
	n = atomic_load_explicit(&nnames, memory_order_relaxed); /* table_lock */
	if (n && (s = find(obj, kind))->obj) {
		remove_slot(s);
		set_count(--n);
		if (!n) {
			/* Nothing named any more: give the memory back (leak checkers see none). */
			prt__free(table, table_cap * sizeof(*table));
			table = NULL;
			table_cap = 0;
		}
	}
	pthread_mutex_unlock(&table_lock);
}

bool prt__objname_get(const void *obj, enum prt__objkind kind, char buf[PRT_NAME_MAX])
{
	struct slot *s;
	bool found = false;

	if (!named())
		return false;
	pthread_mutex_lock(&table_lock);
	if (table_cap && (s = find(obj, kind))->obj) {
		memcpy(buf, s->name, PRT_NAME_MAX);
		found = true;
	}
	pthread_mutex_unlock(&table_lock);
	return found;
}

/* fork.h: the names stay in a child, as the objects do. */
static struct prt__fork_hook objname_fork_hook = { .lock = &table_lock };
