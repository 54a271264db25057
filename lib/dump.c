/* SPDX-License-Identifier: MIT */
/*
 * prt_runtime_dump(): every worker, every fiber and every mutex wait
 * chain of a runtime, as text, for people, watchdogs and tests.
 *
 * Nothing is stopped. Each value is read once, atomically where it is
 * shared, so a line is a snapshot of that fiber at the moment it was
 * written; a fiber that moves while the dump runs may look inconsistent
 * between lines, never crash the dump. Descriptors are type-stable (they
 * live as long as the runtime), so following an owner pointer to a fiber
 * that has since ended reads a free or reused descriptor: its id tells.
 *
 * The format is one record per line, "key=value" after a leading word,
 * so that tests and scripts can parse it:
 *
 *   proxyrt dump: runtime=0x... workers=2 fibers=4
 *   worker 0: running=9 donor=3 runq=1 idle=0
 *   fiber 9 "logger" state=running worker=0 prio=1 eff_prio=28 for=3
 *   fiber 3 "rt" state=runnable worker=0 prio=28 wait=mutex:0x55f0 name="log" owner=9
 *   fiber 12 "high" state=runnable worker=0 prio=10 wait=mutex:0x55d0 name="db" owner=7
 *   fiber 7 "low" state=blocked worker=1 prio=0 wait=io:read:fd=5
 *   chain: 3 "rt" -> mutex "log" 0x55f0 -> 9 "logger" [running]
 *   chain: 12 "high" -> mutex "db" 0x55d0 -> 7 "low" [io:read:fd=5]
 *   fiber 14 "writer" state=runnable worker=1 prio=20 wait=rwlock:0x5600 name="cfg" owner=readers:2 readers=15,thread
 *   chain: 14 "writer" -> rwlock "cfg" 0x5600 -> readers:2 15 "reader" [running]
 *
 * An rwlock (proxyrt/rwlock.h) shows as "rwlock"; held for writing its
 * owner is the writer, held for reading "readers:N" (N counted), with
 * the readers its slots name; a chain goes on through one of them (the
 * first blocked on a lock, else the first fiber).
 *
 * "prio" is the fiber's own priority. A fiber that a worker runs in a
 * donor's place (proxy execution: the worker's curr, not its donor) also
 * gets "eff_prio", the priority it runs at (its donor's), and "for", the
 * donor's id; without them its effective priority is its own. A mutex or
 * condvar named at init (prt_mutexattr_setname, prt_condattr_setname)
 * shows its name, with '"', newlines and control characters as '?'.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault.h"
#include "fiber_desc.h"
#include "mutex_int.h"
#include "objname.h"
#include "rt_ref.h"
#include "runtime_int.h"
#include "rwlock_int.h"

/* Links of a chain printed before giving up (as the pick path's cap). */
#define DUMP_CHAIN_MAX 64

struct out {
	int fd;
	int err;
	size_t n;
	char buf[4096];
};

static void out_flush(struct out *o)
{
	size_t off = 0;

	while (off < o->n && !o->err) {
		/* On a socket without SIGPIPE, from any thread (as prt_write: io.c) */
		ssize_t k = send(o->fd, o->buf + off, o->n - off, MSG_NOSIGNAL);

		if (k < 0 && errno == ENOTSOCK)
			k = write(o->fd, o->buf + off, o->n - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			o->err = k < 0 ? -errno : -EIO;
		else
			off += (size_t)k;
	}
	o->n = 0;
}

__attribute__((format(printf, 2, 3))) static void outf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int k;

	if (sizeof(o->buf) - o->n < 512)
		out_flush(o);
	va_start(ap, fmt);
	k = vsnprintf(o->buf + o->n, sizeof(o->buf) - o->n, fmt, ap);
	va_end(ap);
	if (k > 0)
		o->n += (size_t)k < sizeof(o->buf) - o->n ? (size_t)k : sizeof(o->buf) - o->n - 1;
}

/* A name's character as the dump prints it between quotes. */
static char printable(char c)
{
	/* unsigned: UTF-8's bytes (0x80 and up) are printed as they are */
	return (c == '"' || c == '\n' || (c && (unsigned char)c < ' ') || c == 0x7f) ? '?' : c;
}

/* Bytes of the valid UTF-8 character at @s (RFC 3629: no overlong form, no surrogate), or 0. */
static int utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
	unsigned char lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
	unsigned char hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;

	if (!n || s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

/*
 * A name as the dump prints it between quotes, in place: a quote, a
 * control character and a byte of no valid UTF-8 character become '?'
 * (a name is any bytes; the dump stays text: a review's invalid name
 * made grep call the dump binary).
 */
static void printable_name(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p;) {
		int n = *p < 0x80 ? 1 : utf8_len(p);

		if (n <= 1) {
			*p = (unsigned char)(n ? printable((char)*p) : '?');
			p++;
		} else {
			p += n;
		}
	}
}

/* A snapshot of a fiber's name: it is rewritten when the descriptor is reused. */
static void name_of(const struct prt__fiber *f, char *buf)
{
	for (int i = 0; i < PRT_NAME_MAX; i++)
		buf[i] = __atomic_load_n(&f->name[i], __ATOMIC_RELAXED);
	buf[PRT_NAME_MAX - 1] = '\0';
	printable_name(buf);
}

/*
 * The name given to the mutex or condvar at @obj, as @fmt's %s (with
 * its quotes), in @buf; "" if it has none.
 */
static const char *objname_of(const void *obj, enum prt__objkind kind, const char *fmt,
			      char *buf, size_t len)
{
	char name[PRT_NAME_MAX];

	if (!obj || !prt__objname_get(obj, kind, name))
		return "";
	printable_name(name);
	snprintf(buf, len, fmt, name);
	return buf;
}

static const char *state_name(int st)
{
	switch (st) {
	case PRT_FS_RUNNABLE: return "runnable";
	case PRT_FS_RUNNING: return "running";
	case PRT_FS_BLOCKED: return "blocked";
	case PRT_FS_DEAD: return "dead";
	default: return "free";
	}
}

static int worker_index_of(struct prt__worker *w)
{
	return w ? w->index : -1;
}

static uint64_t fiber_id(const struct prt__fiber *f)
{
	return f ? atomic_load_explicit(&f->id, memory_order_relaxed) : 0;
}

/* What a blocked fiber waits for, as "kind[:detail]". */
static void wait_of(struct prt__fiber *f, char *buf, size_t len)
{
	const void *obj = atomic_load_explicit(&f->wait_obj, memory_order_relaxed);
	int64_t arg = atomic_load_explicit(&f->wait_arg, memory_order_relaxed);
	uint64_t now = prt__now_ns();
	char nbuf[PRT_NAME_MAX + 16];

	switch (atomic_load_explicit(&f->wait_kind, memory_order_relaxed)) {
	case PRT_WK_JOIN:
		snprintf(buf, len, "join:%llu", (unsigned long long)fiber_id(obj));
		break;
	case PRT_WK_PARK:
		snprintf(buf, len, "park");
		break;
	case PRT_WK_SLEEP:
		if ((uint64_t)arg == PRT_NEVER)
			snprintf(buf, len, "sleep:never");
		else
			snprintf(buf, len, "sleep:%lluus", (unsigned long long)((uint64_t)arg > now ?
							       ((uint64_t)arg - now) / 1000 : 0));
		break;
	case PRT_WK_MUTEX:
		snprintf(buf, len, "mutex:%p%s", obj,
			 objname_of(obj, PRT_OBJ_MUTEX, " name=\"%s\"", nbuf, sizeof(nbuf)));
		break;
	case PRT_WK_COND:
		snprintf(buf, len, "cond:%p%s", obj,
			 objname_of(obj, PRT_OBJ_COND, " name=\"%s\"", nbuf, sizeof(nbuf)));
		break;
	case PRT_WK_IO:
		snprintf(buf, len, "io:%s:fd=%lld", obj ? (const char *)obj : "?", (long long)arg);
		break;
	case PRT_WK_OFFLOAD:
		snprintf(buf, len, "offload:%p", obj);
		break;
	case PRT_WK_SEM:
		snprintf(buf, len, "sem:%p", obj);
		break;
	case PRT_WK_WAITGROUP:
		snprintf(buf, len, "waitgroup:%p", obj);
		break;
	default:
		snprintf(buf, len, "?");
		break;
	}
}

struct dump {
	struct prt_runtime *rt;
	struct out *o;
	int pass; /* 0: count, 1: fibers, 2: chains */
	unsigned nfibers;
};

/* Is @m the head of an rwlock (rwlock_int.h)? Written before any waiter names it. */
static bool is_rwlock(const struct prt__mutex *m)
{
	return m->type == PRT__MTX_RWLOCK;
}

/* "mutex" or "rwlock", and the kind its name is kept under. */
static const char *lock_word(const struct prt__mutex *m, enum prt__objkind *kind)
{
	*kind = is_rwlock(m) ? PRT_OBJ_RWLOCK : PRT_OBJ_MUTEX;
	return is_rwlock(m) ? "rwlock" : "mutex";
}

/*
 * The owner of the mutex or rwlock @m a fiber waits on, as "ID" /
 * "thread" / "none", or "readers:N" for an rwlock held by N readers;
 * *@of: the fiber a chain goes on through (for readers, the one
 * prt__rw_chain_reader chooses), or NULL. Returns true for readers.
 */
static bool owner_of(struct prt__mutex *m, char *buf, size_t len, struct prt__fiber **of)
{
	/* acquire: pairs with the release half of the CAS that took @m (publishes the owner) */
	uintptr_t o = atomic_load_explicit(&m->owner, memory_order_acquire);

	*of = NULL;
	if (o & PRT_MTX_READERS) {
		uintptr_t r = prt__rw_chain_reader(m);

		snprintf(buf, len, "readers:%llu", (unsigned long long)prt__rw_count(o));
		*of = prt__owner_fiber(r);
		return true;
	}
	if (!(o & ~PRT_MTX_FLAGS))
		snprintf(buf, len, "none");
	else if (o & PRT_MTX_THREAD)
		snprintf(buf, len, "thread");
	else
		snprintf(buf, len, "%llu", (unsigned long long)fiber_id(*of = prt__owner_fiber(o)));
	return false;
}

/* An rwlock's tracked readers, as " readers=ID,thread,..." (nothing if none is tracked). */
static void readers_of(struct out *o, struct prt__mutex *m)
{
	const char *sep = " readers=";

	/* acquire: as owner_of() */
	if (!(atomic_load_explicit(&m->owner, memory_order_acquire) & PRT_MTX_READERS))
		return;
	for (int i = 0; i < PRT_RW_TRACK; i++) {
		uintptr_t r = prt__rw_slot(m, i);

		if (!r)
			continue;
		if (r & PRT_MTX_THREAD)
			outf(o, "%sthread", sep);
		else
			outf(o, "%s%llu", sep, (unsigned long long)fiber_id((struct prt__fiber *)r));
		sep = ",";
	}
}

/*
 * The chain from @f, which waits on @m (its blocked_on as the caller
 * read it). The first hop is @m, not blocked_on read again: @f may have
 * stopped waiting since (a timed lock timed out, it was handed the
 * lock), and the line would then be a chain of no lock for a fiber the
 * dump listed as waiting (test_chain_keeps_first_lock).
 */
static void dump_chain(struct dump *d, struct prt__fiber *f, uint64_t id, struct prt__mutex *m)
{
	struct prt__fiber *start = f;
	char name[PRT_NAME_MAX], mname[PRT_NAME_MAX + 8], wait[96], owner[32];
	enum prt__objkind kind;
	const char *word;
	bool readers;
	int n = 0;

	name_of(f, name);
	outf(d->o, "chain: %llu \"%s\"", (unsigned long long)id, name);
	for (;;) {
		struct prt__fiber *of;

		if (!m) {
			/* The end of the chain: what it does or waits for. */
			int st = atomic_load_explicit(&f->state, memory_order_relaxed);

			if (st == PRT_FS_BLOCKED) {
				wait_of(f, wait, sizeof(wait));
				outf(d->o, " [%s]\n", wait);
			} else {
				outf(d->o, " [%s]\n", state_name(st));
			}
			return;
		}
		readers = owner_of(m, owner, sizeof(owner), &of);
		word = lock_word(m, &kind);
		outf(d->o, " -> %s %s%p ->", word,
		     objname_of(m, kind, "\"%s\" ", mname, sizeof(mname)), (void *)m);
		if (!of) {
			outf(d->o, " %s\n", owner);
			return;
		}
		name_of(of, name);
		if (readers) /* readers:N, then the reader the chain goes on through */
			outf(d->o, " %s %llu \"%s\"", owner, (unsigned long long)fiber_id(of), name);
		else
			outf(d->o, " %s \"%s\"", owner, name);
		if (of == start) {
			outf(d->o, " (cycle)\n");
			return;
		}
		if (++n == DUMP_CHAIN_MAX) {
			outf(d->o, " ...\n");
			return;
		}
		f = of;
		/* acquire: as the pick's walk (proxy.c); pairs with the store in mutex.c's insert() */
		m = atomic_load_explicit(&f->blocked_on, memory_order_acquire);
	}
}

/*
 * Running @f in a donor's place (proxy execution)? Then the priority it
 * runs at, its donor's, and that donor. The worker's curr and donor are
 * two words: curr read again after donor tells that the pair is one
 * pick's (short of the worker switching away and back in between).
 */
static void dump_served(struct dump *d, struct prt__fiber *f)
{
	for (int i = 0; i < d->rt->nworkers; i++) {
		struct prt__worker *w = d->rt->workers[i];
		struct prt__fiber *dn;

		if (PRT_READ_ONCE(w->curr) != f)
			continue;
		dn = PRT_READ_ONCE(w->donor);
		if (dn && dn != f && dn != &w->idle && PRT_READ_ONCE(w->curr) == f)
			outf(d->o, " eff_prio=%d for=%llu",
			     atomic_load_explicit(&dn->prio, memory_order_relaxed),
			     (unsigned long long)fiber_id(dn));
		return;
	}
}

static void dump_fiber(struct prt__fiber *f, void *arg)
{
	struct dump *d = arg;
	uint64_t id = fiber_id(f);
	int st = atomic_load_explicit(&f->state, memory_order_relaxed);
	struct prt__mutex *m;
	struct prt__worker *w;
	struct prt__fiber *att;
	unsigned held;
	char name[PRT_NAME_MAX], mname[PRT_NAME_MAX + 16], wait[96], owner[32];

	if (!id || st == PRT_FS_FREE || f->kind != PRT_FK_FIBER)
		return;
	if (d->pass == 0) {
		d->nfibers++;
		return;
	}
	/* acquire: pairs with the store in mutex.c's insert(); owner_of() reads @m after it */
	m = atomic_load_explicit(&f->blocked_on, memory_order_acquire);
	if (d->pass == 2) {
		if (m) {
			prt__fault_pause(PRT_PAUSE_DUMP_CHAIN); /* test builds: @f may stop waiting here */
			dump_chain(d, f, id, m);
		}
		return;
	}
	name_of(f, name);
	if (st == PRT_FS_RUNNABLE)
		w = atomic_load_explicit(&f->rq_worker, memory_order_relaxed);
	else
		w = PRT_READ_ONCE(f->last_worker);
	outf(d->o, "fiber %llu \"%s\" state=%s worker=%d prio=%d", (unsigned long long)id, name,
	     state_name(st), worker_index_of(w),
	     atomic_load_explicit(&f->prio, memory_order_relaxed));
	if (st == PRT_FS_RUNNING)
		dump_served(d, f);
	/* Ended holding mutexes: they stay locked by it for good (mutex_owner.c, "Owners that end"). */
	held = PRT_HELD_COUNT(atomic_load_explicit(&f->nheld, memory_order_relaxed));
	if (st == PRT_FS_DEAD && held)
		outf(d->o, " holding=%u", held);
	/* Queued by a preemption (preempt.c): it resumes on that worker only. */
	if (st == PRT_FS_RUNNABLE && PRT_READ_ONCE(f->preempted))
		outf(d->o, " preempted");
	if (m) {
		struct prt__fiber *of;
		enum prt__objkind kind;
		const char *word = lock_word(m, &kind);

		owner_of(m, owner, sizeof(owner), &of);
		outf(d->o, " wait=%s:%p%s owner=%s", word, (void *)m,
		     objname_of(m, kind, " name=\"%s\"", mname, sizeof(mname)), owner);
		readers_of(d->o, m);
	} else if (st == PRT_FS_BLOCKED) {
		wait_of(f, wait, sizeof(wait));
		outf(d->o, " wait=%s", wait);
	}
	/*
	 * relaxed: a snapshot of a type-stable descriptor. Each field is read
	 * once, and printed as read: a second read could disagree with what
	 * the first decided (attached_to=0 for a donor just detached).
	 */
	att = atomic_load_explicit(&f->attached_to, memory_order_relaxed);
	if (att)
		outf(d->o, " attached_to=%llu", (unsigned long long)fiber_id(att));
	outf(d->o, "\n");
}

static int dump(struct prt_runtime *rt, int fd)
{
	struct out o = { .fd = fd };
	struct dump d = { .rt = rt, .o = &o };

	prt__fiber_each(rt, dump_fiber, &d);
	outf(&o, "proxyrt dump: runtime=%p workers=%d fibers=%u\n", (void *)rt, rt->nworkers,
	     d.nfibers);
	for (int i = 0; i < rt->nworkers; i++) {
		struct prt__worker *w = rt->workers[i];
		struct prt__fiber *c = PRT_READ_ONCE(w->curr);
		struct prt__fiber *dn = PRT_READ_ONCE(w->donor);

		outf(&o, "worker %d: running=%llu donor=%llu runq=%u idle=%u\n", i,
		     (unsigned long long)(c && c != &w->idle ? fiber_id(c) : 0),
		     (unsigned long long)(dn && dn != c && dn != &w->idle ? fiber_id(dn) : 0),
		     atomic_load_explicit(&w->rq.nr, memory_order_relaxed),
		     atomic_load_explicit(&w->sleeping, memory_order_relaxed));
	}
	d.pass = 1;
	prt__fiber_each(rt, dump_fiber, &d);
	d.pass = 2;
	prt__fiber_each(rt, dump_fiber, &d);
	outf(&o, "proxyrt dump end\n");
	out_flush(&o);
	return o.err;
}

PRT_API int prt_runtime_dump(prt_runtime_t *rt, int fd)
{
	bool ref;
	int err, saved = prt__errno_get(); /* its writes' (send first: ENOTSOCK) are not the caller's */

	if (fd < 0 || !prt__rt_enter(rt, &ref))
		return -EINVAL;
	err = dump(rt, fd);
	if (ref)
		prt__rt_put(rt);
	prt__errno_set(saved);
	return err;
}
