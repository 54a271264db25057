/* SPDX-License-Identifier: MIT */
/*
 * Topology: which PUs get workers, thread and memory binding, and each
 * worker's steal order, all through hwloc. This is the only file that
 * includes <hwloc.h>; everything it learns is copied into struct
 * prt__topo, so the rest of the library never sees an hwloc type.
 *
 * Placement. The units are the cores (or, with PRT_RT_PER_PU, the PUs)
 * that have at least one allowed PU, in hwloc's logical order; a core's
 * worker goes on its first allowed PU. Worker k gets unit k % nunits:
 * with fewer workers than units that is the first nworkers units (so
 * they fill one package before the next, which keeps them close; it is
 * predictable rather than spread out), with more workers than units the
 * extra ones wrap round-robin and share PUs.
 *
 * Steal order. For worker i the other workers are sorted by the key
 * (distance class, (j - i + n) % n): nearest class first, and inside a
 * class starting just after i, so that neighbours do not all try the same
 * victim first.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>

#include "fault.h"
#include "topology.h"

/* Largest OS index accepted in a CPU list (bounds the bitmap's size). */
#define PRT__TOPO_MAX_OS_INDEX ((1u << 20) - 1)

/* Distance classes between two workers, nearest first. */
enum {
	PRT__TOPO_SAME_CORE,	/* same PU (wrapped workers) or SMT siblings */
	PRT__TOPO_SAME_L2,
	PRT__TOPO_SAME_L3,
	PRT__TOPO_SAME_NUMA,
	PRT__TOPO_SAME_PACKAGE,
	PRT__TOPO_FAR,
	PRT__TOPO_NCLASSES,
};

/* Where a worker sits; only lives during prt__topo_init. NULL = none. */
struct prt__topo_place {
	hwloc_obj_t pu, core, l2, l3, package;
	int numa; /* logical index of the first node of the PU's nodeset */
};

/* The error of the hwloc call that just failed, or -@fallback. */
static int neg_errno(int fallback)
{
	return errno > 0 ? -errno : -fallback;
}

/*
 * Test builds (fault.h): true if the next hwloc call must fail, with
 * errno set as hwloc would; always false elsewhere.
 */
static bool hw_fault(void)
{
	int err = prt__fault(PRT_FAULT_HWLOC);

	if (err)
		errno = err;
	return err != 0;
}

/* calloc, or NULL when a test build injects a failure (fault.h). */
static void *topo_calloc(size_t n, size_t size)
{
	return prt__fault(PRT_FAULT_ALLOC) ? NULL : calloc(n, size);
}

/* One decimal number at *@p, advancing *@p past it. */
static int parse_num(const char **p, unsigned *out)
{
	const char *s = *p;
	unsigned v = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (unsigned)(*s++ - '0');
		if (v > PRT__TOPO_MAX_OS_INDEX)
			return -EINVAL;
	}
	*p = s;
	*out = v;
	return 0;
}

/*
 * Parse "0-3,8" into @set. Strict on purpose: hwloc_bitmap_list_sscanf()
 * accepts "1-3x" as 1-3, "3-" as everything from 3, "5-2" and "" as the
 * empty set, and "0x3" as 3; a typo in a CPU list should be an error.
 */
static int parse_cpulist(const char *s, hwloc_bitmap_t set)
{
	do {
		unsigned lo, hi;

		if (parse_num(&s, &lo))
			return -EINVAL;
		hi = lo;
		if (*s == '-') {
			s++;
			if (parse_num(&s, &hi) || hi < lo)
				return -EINVAL;
		}
		if (hw_fault() || hwloc_bitmap_set_range(set, lo, (int)hi) < 0)
			return -ENOMEM;
	} while (*s++ == ',');
	return s[-1] == '\0' ? 0 : -EINVAL;
}

/* Create and load the hwloc topology that @cfg describes. */
static int topo_load(struct prt__topo *t, const prt_runtime_config_t *cfg)
{
	hwloc_topology_t topo;

	if (hw_fault() || hwloc_topology_init(&topo) < 0)
		return neg_errno(ENOMEM);
	t->topology = topo;
	/* EINVAL for a bad description, ENOMEM when hwloc could not allocate. */
	if (cfg->topology_synthetic &&
	    (hw_fault() || hwloc_topology_set_synthetic(topo, cfg->topology_synthetic) < 0))
		return neg_errno(EINVAL);
	if (cfg->topology_xml &&
	    (hw_fault() || hwloc_topology_set_xml(topo, cfg->topology_xml) < 0))
		return neg_errno(EINVAL);
	if (hw_fault() || hwloc_topology_load(topo) < 0)
		return neg_errno(EINVAL);
	/*
	 * hwloc also honours HWLOC_XMLFILE and HWLOC_SYNTHETIC in the
	 * environment, hence the question even without cfg's sources.
	 */
	t->is_this_system = !cfg->topology_synthetic && !cfg->topology_xml &&
			    hwloc_topology_is_thissystem(topo);
	t->pin = t->is_this_system && !(cfg->flags & PRT_RT_NO_PIN);
	return 0;
}

/* Fill t->notice with why workers are not bound, if they are not. */
static void set_notice(struct prt__topo *t, const prt_runtime_config_t *cfg)
{
	static const char tail[] = "not this machine's: workers are not bound to CPUs";
	size_t n = sizeof(t->notice);

	if (cfg->topology_synthetic)
		snprintf(t->notice, n, "proxyrt: topology is synthetic (\"%.100s\"), %s",
			 cfg->topology_synthetic, tail);
	else if (cfg->topology_xml)
		snprintf(t->notice, n, "proxyrt: topology is read from XML file \"%.100s\", %s",
			 cfg->topology_xml, tail);
	else if (!t->is_this_system)
		snprintf(t->notice, n, "proxyrt: hwloc's topology (HWLOC_XMLFILE or "
			 "HWLOC_SYNTHETIC set?) is %s", tail);
	else if (t->limited)
		snprintf(t->notice, n,
			 "proxyrt: %d worker(s), not %d: the cgroup's CPU limit is %" PRIu64
			 "/%" PRIu64 " us (%.120s); %s (PRT_RT_NO_CPU_LIMIT ignores it)",
			 t->nworkers, t->limited, t->limit.quota_us, t->limit.period_us,
			 t->limit.where, t->pin ? "bound to the CPUs named" : "not bound to CPUs");
	else if (!t->pin)
		snprintf(t->notice, n, "proxyrt: binding disabled by PRT_RT_NO_PIN: "
			 "workers are not bound to CPUs");
}

/*
 * The PUs workers may use: cfg->cpus, else (on this machine) the
 * process's binding, else all of them; always within the topology.
 */
static int allowed_pus(struct prt__topo *t, const prt_runtime_config_t *cfg, hwloc_bitmap_t set)
{
	hwloc_topology_t topo = t->topology;
	hwloc_const_cpuset_t all = hwloc_topology_get_allowed_cpuset(topo);
	int err;

	if (cfg->cpus) {
		err = parse_cpulist(cfg->cpus, set);
		if (err)
			return err;
	} else if (!t->is_this_system || hwloc_get_cpubind(topo, set, HWLOC_CPUBIND_PROCESS) < 0 ||
		   !hwloc_bitmap_intersects(set, all)) {
		if (hw_fault() || hwloc_bitmap_copy(set, all) < 0)
			return -ENOMEM;
	}
	if (hw_fault() || hwloc_bitmap_and(set, set, all) < 0)
		return -ENOMEM;
	return hwloc_bitmap_iszero(set) ? -EINVAL : 0;
}

/*
 * Store in @units the PUs that get workers, in logical order, and return
 * how many: every allowed PU with @per_pu, else the first allowed PU of
 * each core. The PUs of a core have consecutive logical indexes, so it is
 * enough to compare with the core of the previous unit. A PU without a
 * core object is its own unit.
 */
static int collect_units(hwloc_topology_t topo, hwloc_const_cpuset_t allowed, int per_pu,
			 hwloc_obj_t *units)
{
	hwloc_obj_t pu = NULL, last_core = NULL;
	int n = 0;

	while ((pu = hwloc_get_next_obj_by_type(topo, HWLOC_OBJ_PU, pu))) {
		hwloc_obj_t core = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, pu);

		if (!hwloc_bitmap_isset(allowed, pu->os_index))
			continue;
		if (!per_pu && core && core == last_core)
			continue;
		last_core = core;
		units[n++] = pu;
	}
	return n;
}

/* Place worker @i on @pu: fill t->w[i] (but its steal order) and @pl. */
static int place_worker(struct prt__topo *t, int i, hwloc_obj_t pu, struct prt__topo_place *pl)
{
	hwloc_topology_t topo = t->topology;
	struct prt__topo_worker *w = &t->w[i];
	int node = pu->nodeset ? hwloc_bitmap_first(pu->nodeset) : -1;
	hwloc_obj_t numa = node >= 0 ? hwloc_get_numanode_obj_by_os_index(topo, (unsigned)node) : NULL;

	pl->pu = pu;
	pl->core = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_CORE, pu);
	pl->l2 = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_L2CACHE, pu);
	pl->l3 = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_L3CACHE, pu);
	pl->package = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, pu);
	pl->numa = numa ? (int)numa->logical_index : 0;

	w->pu_os_index = (int)pu->os_index;
	w->core_index = (int)(pl->core ? pl->core : pu)->logical_index;
	w->numa_index = pl->numa;
	w->package_index = pl->package ? (int)pl->package->logical_index : 0;
	w->cpuset = hw_fault() ? NULL : hwloc_bitmap_dup(pu->cpuset);
	if (!hw_fault())
		w->nodeset = pu->nodeset ? hwloc_bitmap_dup(pu->nodeset) : hwloc_bitmap_alloc();
	return w->cpuset && w->nodeset ? 0 : -ENOMEM;
}

/* How far apart two workers are: PRT__TOPO_SAME_CORE .. PRT__TOPO_FAR. */
static int distance_class(const struct prt__topo_place *a, const struct prt__topo_place *b)
{
	if (a->pu == b->pu || (a->core && a->core == b->core))
		return PRT__TOPO_SAME_CORE;
	if (a->l2 && a->l2 == b->l2)
		return PRT__TOPO_SAME_L2;
	if (a->l3 && a->l3 == b->l3)
		return PRT__TOPO_SAME_L3;
	if (a->numa == b->numa)
		return PRT__TOPO_SAME_NUMA;
	if (a->package && a->package == b->package)
		return PRT__TOPO_SAME_PACKAGE;
	return PRT__TOPO_FAR;
}

/*
 * Worker @i's steal order, sorted by (class, (j - i + n) % n): one pass
 * per class over the others in rotated order is that sort, and stable.
 */
static int build_steal_order(struct prt__topo *t, int i, const struct prt__topo_place *pl)
{
	int n = t->nworkers, k = 0;
	int *order;

	if (n == 1)
		return 0;
	order = topo_calloc((size_t)(n - 1), sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (int c = 0; c < PRT__TOPO_NCLASSES; c++) {
		for (int r = 1; r < n; r++) {
			int j = (i + r) % n;

			if (distance_class(&pl[i], &pl[j]) == c)
				order[k++] = j;
		}
	}
	t->w[i].steal_order = order;
	return 0;
}

/* Memory binding only pays when threads stay on their node's PUs. */
static int membind_useful(const struct prt__topo *t)
{
	const struct hwloc_topology_support *s = hwloc_topology_get_support(t->topology);

	return t->pin && hwloc_get_nbobjs_by_type(t->topology, HWLOC_OBJ_NUMANODE) > 1 &&
	       s->membind->set_area_membind && s->membind->bind_membind;
}

/*
 * Choose the workers' PUs among the allowed ones and fill t->w. With
 * nworkers == 0 there is one worker per unit, at most PRT_MAX_WORKERS
 * (the first ones, on a machine with more units than that).
 */
static int place_workers(struct prt__topo *t, const prt_runtime_config_t *cfg,
			 hwloc_const_cpuset_t allowed)
{
	hwloc_topology_t topo = t->topology;
	int npus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
	hwloc_obj_t *units = topo_calloc(npus > 0 ? (size_t)npus : 1, sizeof(*units));
	struct prt__topo_place *pl = NULL;
	int nunits, n, err = -ENOMEM;

	if (!units)
		return -ENOMEM;
	nunits = collect_units(topo, allowed, !!(cfg->flags & PRT_RT_PER_PU), units);
	n = cfg->nworkers ? cfg->nworkers : nunits;
	if (n > PRT_MAX_WORKERS)
		n = PRT_MAX_WORKERS;
	if (!cfg->nworkers && t->limit.cpus && (unsigned)n > t->limit.cpus) {
		/*
		 * A cgroup's CPU limit is time, not CPUs: workers bound to the
		 * first units would put every such process of a machine on
		 * the same few CPUs. Bound only to CPUs the caller named.
		 */
		t->limited = n;
		n = (int)t->limit.cpus;
		if (!cfg->cpus)
			t->pin = 0;
	}
	if (nunits == 0) {
		err = -EINVAL;
		goto out;
	}
	t->w = topo_calloc((size_t)n, sizeof(*t->w));
	pl = topo_calloc((size_t)n, sizeof(*pl));
	if (!t->w || !pl)
		goto out;
	t->nworkers = n;
	for (int i = 0; i < n; i++) {
		err = place_worker(t, i, units[i % nunits], &pl[i]);
		if (err)
			goto out;
	}
	for (int i = 0; i < n && !err; i++)
		err = build_steal_order(t, i, pl);
out:
	free(pl);
	free(units);
	return err;
}

/*
 * How many CPUs the workers run on, and into t->cpus the CPUs for the
 * runtime's other threads (prt_offload's helpers). Bound workers: the
 * distinct PUs they are bound to, and @allowed (the CPUs the runtime was
 * given, not only the PUs that got a worker). Unbound ones inherit the
 * creating thread's affinity, so that for both; not the process's, which
 * differs when a runtime is created from a pinned thread (a worker of
 * another runtime, say). A PU beyond cpu_set_t is counted, not stored.
 */
static int worker_cpus(struct prt__topo *t, hwloc_const_cpuset_t allowed)
{
	cpu_set_t seen;
	unsigned pu;
	int n = 0;

	CPU_ZERO(&t->cpus);
	if (!t->pin) {
		if (sched_getaffinity(0, sizeof(t->cpus), &t->cpus) == 0)
			return CPU_COUNT(&t->cpus);
		CPU_ZERO(&t->cpus);
		return t->nworkers;
	}
	hwloc_bitmap_foreach_begin(pu, allowed)
	{
		if (pu < CPU_SETSIZE)
			CPU_SET(pu, &t->cpus);
	}
	hwloc_bitmap_foreach_end();
	CPU_ZERO(&seen);
	for (int i = 0; i < t->nworkers; i++) {
		int w = t->w[i].pu_os_index;

		if (w < 0 || w >= CPU_SETSIZE)
			n++; /* not tracked: counts twice a PU two workers share */
		else if (!CPU_ISSET(w, &seen)) {
			CPU_SET(w, &seen);
			n++;
		}
	}
	return n;
}

static int init_checks(const prt_runtime_config_t *cfg)
{
	if (cfg->topology_synthetic && cfg->topology_xml)
		return -EINVAL;
	if (cfg->nworkers < 0 || cfg->nworkers > PRT_MAX_WORKERS)
		return -EINVAL;
	return 0;
}

int prt__topo_init(struct prt__topo *t, const prt_runtime_config_t *cfg)
{
	static const prt_runtime_config_t defaults;
	hwloc_bitmap_t allowed = NULL;
	int err;

	memset(t, 0, sizeof(*t));
	if (!cfg)
		cfg = &defaults;
	err = init_checks(cfg);
	if (!err)
		err = topo_load(t, cfg);
	if (!err && (hw_fault() || !(allowed = hwloc_bitmap_alloc())))
		err = -ENOMEM;
	if (!err && t->is_this_system && !(cfg->flags & PRT_RT_NO_CPU_LIMIT) &&
	    prt__cgroup_cpu_limit("", &t->limit) <= 0)
		t->limit.cpus = 0;
	if (!err)
		err = allowed_pus(t, cfg, allowed);
	if (!err)
		err = place_workers(t, cfg, allowed);
	if (!err)
		t->ncpus = worker_cpus(t, allowed);
	if (!err && t->limit.cpus && (unsigned)t->ncpus > t->limit.cpus)
		t->ncpus = (int)t->limit.cpus; /* the CPU time they get is that many CPUs' */
	hwloc_bitmap_free(allowed);
	if (err) {
		prt__topo_fini(t);
		return err;
	}
	t->can_membind = membind_useful(t);
	set_notice(t, cfg);
	if (t->notice[0] && (cfg->flags & PRT_RT_VERBOSE))
		fprintf(stderr, "%s\n", t->notice);
	return 0;
}

void prt__topo_fini(struct prt__topo *t)
{
	for (int i = 0; t->w && i < t->nworkers; i++) {
		free(t->w[i].steal_order);
		hwloc_bitmap_free(t->w[i].cpuset);
		hwloc_bitmap_free(t->w[i].nodeset);
	}
	free(t->w);
	if (t->topology)
		hwloc_topology_destroy(t->topology);
	memset(t, 0, sizeof(*t));
}

int prt__topo_bind_thread(struct prt__topo *t, int index)
{
	if (index < 0 || index >= t->nworkers)
		return -EINVAL;
	if (!t->pin)
		return 0;
	if (hwloc_set_cpubind(t->topology, t->w[index].cpuset, HWLOC_CPUBIND_THREAD) < 0)
		return neg_errno(EINVAL);
	return 0;
}

int prt__topo_membind(struct prt__topo *t, int index, void *addr, size_t len)
{
	if (index < 0 || index >= t->nworkers)
		return -EINVAL;
	if (!t->can_membind || len == 0)
		return 0;
	if (hwloc_set_area_membind(t->topology, addr, len, t->w[index].nodeset, HWLOC_MEMBIND_BIND,
				   HWLOC_MEMBIND_BYNODESET) < 0)
		return neg_errno(EINVAL);
	return 0;
}
