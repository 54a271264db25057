/* SPDX-License-Identifier: MIT */
#ifndef PRT_TOPOLOGY_H
#define PRT_TOPOLOGY_H

/*
 * Topology: which PUs get workers, binding, steal order by distance and
 * NUMA-local memory, all through hwloc. The only file that includes
 * <hwloc.h> is topology.c; the rest of the library sees this header.
 */

#include <sched.h>
#include <stddef.h>
#include <proxyrt/runtime.h>

#include "cgroup.h"

struct prt__topo_worker {
	int pu_os_index;   /* OS index of the PU the worker is placed on */
	int core_index;    /* logical index of its core */
	int numa_index;    /* logical index of its NUMA node, 0 if none */
	int package_index; /* logical index of its package, 0 if none */
	int *steal_order;  /* the other workers, nearest first (nworkers-1 entries) */
	void *cpuset;      /* hwloc_bitmap_t: the PU, for binding */
	void *nodeset;     /* hwloc_bitmap_t: its NUMA node(s), for memory binding */
};

struct prt__topo {
	void *topology;     /* hwloc_topology_t */
	int is_this_system; /* 0 for synthetic/XML topologies: never bind */
	int pin;            /* bind worker threads: is_this_system and no PRT_RT_NO_PIN */
	int can_membind;    /* binding memory to a node works and matters (>1 node) */
	int nworkers;
	int ncpus;          /* CPUs the workers run on (see worker_cpus() in topology.c) */
	struct prt__cpu_limit limit; /* the cgroup's CPU limit (limit.cpus 0: none, or ignored) */
	int limited;        /* the default worker count was cut to limit.cpus from this many, or 0 */
	cpu_set_t cpus;     /* the CPUs for the runtime's other threads (worker_cpus()) */
	struct prt__topo_worker *w; /* nworkers entries */
	char notice[256];   /* why binding was skipped, or "" */
};

/*
 * Load the topology described by @cfg (the real machine, a synthetic
 * description or an XML file), choose the workers' PUs and compute the
 * steal orders. Returns 0 or -EINVAL (bad cpu list, both topology
 * sources set, too many workers, no usable PU), -ENOMEM, or another
 * -errno; on failure nothing is left allocated.
 */
int prt__topo_init(struct prt__topo *t, const prt_runtime_config_t *cfg);
void prt__topo_fini(struct prt__topo *t);

/* Bind the calling thread to worker @index's PU. 0 or -errno. */
int prt__topo_bind_thread(struct prt__topo *t, int index);

/*
 * Bind the pages of [addr, addr+len) to worker @index's NUMA node when
 * t->can_membind, else do nothing. 0 or -errno (callers may ignore it:
 * memory placement is an optimisation).
 */
int prt__topo_membind(struct prt__topo *t, int index, void *addr, size_t len);

#endif
