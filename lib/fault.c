/* SPDX-License-Identifier: MIT */
/* Fault injection for tests (see fault.h); built only with -Dfault_injection=true. */
#include <stdatomic.h>
#include <stddef.h>

#include "fault.h"

struct site {
	atomic_uint calls;
	atomic_uint nth;   /* 0: disarmed */
	atomic_int err;
	atomic_bool fired;
	atomic_long live;
};

static struct site sites[PRT_FAULT_NSITES];

struct pause {
	void (*_Atomic fn)(void *);
	void *_Atomic arg;
};

static struct pause pauses[PRT_PAUSE_NSITES];

void prt__fault_pause(enum prt__pause_site site)
{
	void (*fn)(void *) = atomic_load(&pauses[site].fn);

	if (fn)
		fn(atomic_load(&pauses[site].arg));
}

void prt__fault_set_pause(enum prt__pause_site site, void (*fn)(void *), void *arg)
{
	atomic_store(&pauses[site].fn, NULL);
	atomic_store(&pauses[site].arg, arg);
	atomic_store(&pauses[site].fn, fn);
}

int prt__fault(enum prt__fault_site site)
{
	struct site *s = &sites[site];
	unsigned n = atomic_fetch_add(&s->calls, 1) + 1;

	/* Exactly one caller sees n == nth: the failure is handed out once. */
	if (n != atomic_load(&s->nth))
		return 0;
	atomic_store(&s->fired, true);
	return atomic_load(&s->err);
}

void prt__fault_arm(enum prt__fault_site site, unsigned nth, int err)
{
	struct site *s = &sites[site];

	atomic_store(&s->nth, 0);
	atomic_store(&s->fired, false);
	atomic_store(&s->calls, 0);
	atomic_store(&s->err, err);
	atomic_store(&s->nth, nth);
}

unsigned prt__fault_calls(enum prt__fault_site site)
{
	return atomic_load(&sites[site].calls);
}

bool prt__fault_fired(enum prt__fault_site site)
{
	return atomic_load(&sites[site].fired);
}

void prt__fault_track(enum prt__fault_site site, long delta)
{
	atomic_fetch_add_explicit(&sites[site].live, delta, memory_order_relaxed);
}

long prt__fault_live(enum prt__fault_site site)
{
	return atomic_load(&sites[site].live);
}
