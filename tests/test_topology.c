/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of lib/topology.c: worker placement, CPU lists, steal order
 * and binding, mostly on synthetic hwloc topologies so that the results
 * do not depend on the machine running the tests. hwloc is used directly
 * only to write an XML topology file.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hwloc.h>

#include "topology.h"

/* 2 packages x 2 NUMA nodes x 8 cores x 2 PUs: 32 cores, 64 PUs. */
#define BIG "pack:2 numa:2 core:8 pu:2"
/* 8 single-PU cores; pairs share an L2, fours share an L3. */
#define CACHES "pack:1 l3:2 l2:2 core:2 pu:1"

/* Classes as lib/topology.c orders them. */
enum { SAME_CORE, SAME_L2, SAME_L3, SAME_NUMA, SAME_PACKAGE, FAR, NCLASSES };

static prt_runtime_config_t config(const char *synthetic, unsigned flags)
{
	prt_runtime_config_t cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = sizeof(cfg);
	cfg.flags = flags;
	cfg.topology_synthetic = synthetic;
	return cfg;
}

static void assert_zeroed(const struct prt__topo *t)
{
	struct prt__topo zero;

	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(t, &zero, sizeof(zero));
}

static int init_err(const prt_runtime_config_t *cfg)
{
	struct prt__topo t;
	int err = prt__topo_init(&t, cfg);

	if (err)
		assert_zeroed(&t);
	else
		prt__topo_fini(&t);
	return err;
}

/* The calling thread's CPU affinity. */
static cpu_set_t affinity(void)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof(set), &set), 0);
	return set;
}

/* Class of two workers from their public fields, for topologies without caches. */
static int class_of(const struct prt__topo_worker *a, const struct prt__topo_worker *b)
{
	if (a->core_index == b->core_index)
		return SAME_CORE;
	if (a->numa_index == b->numa_index)
		return SAME_NUMA;
	if (a->package_index == b->package_index)
		return SAME_PACKAGE;
	return FAR;
}

/* Class of two workers of CACHES, from their indexes. */
static int cache_class(int i, int j)
{
	if (i / 2 == j / 2)
		return SAME_L2;
	if (i / 4 == j / 4)
		return SAME_L3;
	return SAME_NUMA;
}

/*
 * Check worker @i's steal order against @classify: it holds every other
 * worker once, sorted by (class, (j - i + n) % n), and has @want[c]
 * entries of class c.
 */
static void check_order(const struct prt__topo *t, int i, int (*classify)(const struct prt__topo *, int, int),
			const int want[NCLASSES])
{
	int n = t->nworkers, count[NCLASSES] = { 0 };
	char *seen = calloc((size_t)n, 1);
	const int *order = t->w[i].steal_order;

	assert_non_null(seen);
	assert_non_null(order);
	for (int k = 0; k < n - 1; k++) {
		int j = order[k], c = classify(t, i, j);

		assert_true(j >= 0 && j < n && j != i && !seen[j]);
		seen[j] = 1;
		count[c]++;
		if (k > 0) {
			int pj = order[k - 1], pc = classify(t, i, pj);

			assert_true(pc <= c);
			if (pc == c)
				assert_true((pj - i + n) % n < (j - i + n) % n);
		}
	}
	for (int c = 0; c < NCLASSES; c++)
		assert_int_equal(count[c], want[c]);
	free(seen);
}

static int classify_fields(const struct prt__topo *t, int i, int j)
{
	return class_of(&t->w[i], &t->w[j]);
}

static int classify_caches(const struct prt__topo *t, int i, int j)
{
	(void)t;
	return cache_class(i, j);
}

static void test_synthetic_per_core(void **state)
{
	prt_runtime_config_t cfg = config(BIG, 0);
	struct prt__topo t;
	cpu_set_t before = affinity(), after;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 32);
	for (int k = 0; k < 32; k++) {
		assert_int_equal(t.w[k].pu_os_index, 2 * k);
		assert_int_equal(t.w[k].core_index, k);
		assert_int_equal(t.w[k].numa_index, k / 8);
		assert_int_equal(t.w[k].package_index, k / 16);
		assert_non_null(t.w[k].cpuset);
		assert_non_null(t.w[k].nodeset);
	}
	assert_int_equal(t.is_this_system, 0);
	assert_int_equal(t.pin, 0);
	assert_int_equal(t.can_membind, 0);
	assert_non_null(strstr(t.notice, "synthetic"));
	assert_non_null(strstr(t.notice, BIG));
	assert_non_null(strstr(t.notice, "not bound"));

	/* Binding is skipped: success, and the thread's affinity is untouched. */
	assert_int_equal(prt__topo_bind_thread(&t, 0), 0);
	assert_int_equal(prt__topo_bind_thread(&t, 31), 0);
	after = affinity();
	assert_true(CPU_EQUAL(&before, &after));
	assert_int_equal(prt__topo_bind_thread(&t, -1), -EINVAL);
	assert_int_equal(prt__topo_bind_thread(&t, 32), -EINVAL);
	assert_int_equal(prt__topo_membind(&t, 0, &cfg, sizeof(cfg)), 0);
	assert_int_equal(prt__topo_membind(&t, 32, &cfg, sizeof(cfg)), -EINVAL);
	prt__topo_fini(&t);
	assert_zeroed(&t);
}

static void test_synthetic_per_pu(void **state)
{
	prt_runtime_config_t cfg = config(BIG, PRT_RT_PER_PU);
	struct prt__topo t;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 64);
	for (int k = 0; k < 64; k++) {
		assert_int_equal(t.w[k].pu_os_index, k);
		assert_int_equal(t.w[k].core_index, k / 2);
		assert_int_equal(t.w[k].numa_index, k / 16);
		assert_int_equal(t.w[k].package_index, k / 32);
	}
	prt__topo_fini(&t);
}

/* A topology without core objects: each PU is its own unit. */
static void test_no_cores(void **state)
{
	prt_runtime_config_t cfg = config("pu:4", 0);
	struct prt__topo t;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 4);
	for (int k = 0; k < 4; k++) {
		assert_int_equal(t.w[k].pu_os_index, k);
		assert_int_equal(t.w[k].core_index, k);
		assert_int_equal(t.w[k].numa_index, 0);
		assert_int_equal(t.w[k].package_index, 0);
	}
	prt__topo_fini(&t);
}

static void test_steal_order_numa(void **state)
{
	prt_runtime_config_t cfg = config(BIG, PRT_RT_PER_PU);
	/* SMT sibling, 14 PUs of the node, 16 of the other node, 32 far. */
	static const int want[NCLASSES] = { 1, 0, 0, 14, 16, 32 };
	static const int want_core[NCLASSES] = { 0, 0, 0, 7, 8, 16 };
	struct prt__topo t;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.w[0].steal_order[0], 1);
	assert_int_equal(t.w[1].steal_order[0], 0);
	/* Rotation: worker 2's first node-mate after its sibling is 4, not 0. */
	assert_int_equal(t.w[2].steal_order[0], 3);
	assert_int_equal(t.w[2].steal_order[1], 4);
	for (int i = 0; i < t.nworkers; i++)
		check_order(&t, i, classify_fields, want);
	prt__topo_fini(&t);

	cfg = config(BIG, 0);
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	for (int i = 0; i < t.nworkers; i++)
		check_order(&t, i, classify_fields, want_core);
	prt__topo_fini(&t);
}

static void test_steal_order_caches(void **state)
{
	prt_runtime_config_t cfg = config(CACHES, 0);
	static const int want[NCLASSES] = { 0, 1, 2, 4, 0, 0 };
	static const int order5[] = { 4, 6, 7, 0, 1, 2, 3 };
	struct prt__topo t;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 8);
	for (int i = 0; i < t.nworkers; i++) {
		assert_int_equal(t.w[i].pu_os_index, i);
		check_order(&t, i, classify_caches, want);
	}
	assert_memory_equal(t.w[5].steal_order, order5, sizeof(order5));
	prt__topo_fini(&t);
}

static void test_cpus(void **state)
{
	prt_runtime_config_t cfg = config(BIG, PRT_RT_PER_PU);
	struct prt__topo t;

	(void)state;
	cfg.cpus = "0-3";
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 4);
	for (int k = 0; k < 4; k++)
		assert_int_equal(t.w[k].pu_os_index, k);
	prt__topo_fini(&t);

	/* Per core: one worker per core, on the core's first allowed PU. */
	cfg.flags = 0;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 2);
	assert_int_equal(t.w[0].pu_os_index, 0);
	assert_int_equal(t.w[1].pu_os_index, 2);
	prt__topo_fini(&t);

	cfg.cpus = "1,3,40";
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 3);
	assert_int_equal(t.w[0].pu_os_index, 1);
	assert_int_equal(t.w[1].pu_os_index, 3);
	assert_int_equal(t.w[2].pu_os_index, 40);
	assert_int_equal(t.w[2].package_index, 1);
	prt__topo_fini(&t);

	/* PUs the topology lacks are ignored. */
	cfg.cpus = "62-100";
	cfg.flags = PRT_RT_PER_PU;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 2);
	assert_int_equal(t.w[0].pu_os_index, 62);
	assert_int_equal(t.w[1].pu_os_index, 63);
	prt__topo_fini(&t);
}

static void test_cpus_bad(void **state)
{
	static const char *bad[] = {
		"abc", "", "5-2", "1-3x", "3-", "-1", "1,,2", ",", "1,", "0x3", " 1", "1 ",
		"99999999999", "0-1,abc", "64", "100-200",
	};
	prt_runtime_config_t cfg = config(BIG, 0);

	(void)state;
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		cfg.cpus = bad[k];
		if (init_err(&cfg) != -EINVAL)
			fail_msg("cpus \"%s\" was accepted", bad[k]);
	}
}

static void test_bad_config(void **state)
{
	prt_runtime_config_t cfg = config(BIG, 0);

	(void)state;
	cfg.topology_xml = "/nonexistent.xml";
	assert_int_equal(init_err(&cfg), -EINVAL);
	cfg = config("not a topology", 0);
	assert_int_equal(init_err(&cfg), -EINVAL);
	cfg = config(BIG, 0);
	cfg.nworkers = -1;
	assert_int_equal(init_err(&cfg), -EINVAL);
	cfg.nworkers = PRT_MAX_WORKERS + 1;
	assert_int_equal(init_err(&cfg), -EINVAL);
}

static void test_nworkers(void **state)
{
	prt_runtime_config_t cfg = config(BIG, PRT_RT_PER_PU);
	static const int order4[] = { 0, 1, 2, 3 };
	struct prt__topo t;

	(void)state;
	/* More workers than units wrap round-robin. */
	cfg.cpus = "0-3";
	cfg.nworkers = 5;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 5);
	for (int k = 0; k < 5; k++)
		assert_int_equal(t.w[k].pu_os_index, k % 4);
	/* Worker 4 shares PU 0 with worker 0: same class as its SMT sibling. */
	assert_memory_equal(t.w[4].steal_order, order4, sizeof(order4));
	assert_int_equal(t.w[0].steal_order[0], 1);
	assert_int_equal(t.w[0].steal_order[1], 4);
	prt__topo_fini(&t);

	/* Fewer workers than units: the first units in logical order. */
	cfg.cpus = NULL;
	cfg.flags = 0;
	cfg.nworkers = 3;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 3);
	for (int k = 0; k < 3; k++)
		assert_int_equal(t.w[k].pu_os_index, 2 * k);
	prt__topo_fini(&t);

	cfg.nworkers = 1;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 1);
	assert_null(t.w[0].steal_order);
	prt__topo_fini(&t);

	cfg.nworkers = PRT_MAX_WORKERS;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, PRT_MAX_WORKERS);
	assert_int_equal(t.w[PRT_MAX_WORKERS - 1].core_index, (PRT_MAX_WORKERS - 1) % 32);
	prt__topo_fini(&t);
}

static void test_xml(void **state)
{
	char dir[] = "/tmp/prt-topo-XXXXXX", path[64];
	prt_runtime_config_t cfg = config(NULL, 0);
	hwloc_topology_t topo;
	struct prt__topo t;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/topo.xml", dir);
	assert_int_equal(hwloc_topology_init(&topo), 0);
	assert_int_equal(hwloc_topology_set_synthetic(topo, "pack:1 core:4 pu:2"), 0);
	assert_int_equal(hwloc_topology_load(topo), 0);
	assert_int_equal(hwloc_topology_export_xml(topo, path, 0), 0);
	hwloc_topology_destroy(topo);

	cfg.topology_xml = path;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 4);
	assert_int_equal(t.is_this_system, 0);
	assert_int_equal(t.pin, 0);
	assert_non_null(strstr(t.notice, "XML"));
	assert_non_null(strstr(t.notice, path));
	assert_int_equal(prt__topo_bind_thread(&t, 0), 0);
	prt__topo_fini(&t);
	cfg.flags = PRT_RT_PER_PU;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 8);
	prt__topo_fini(&t);

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	assert_true(init_err(&cfg) < 0);
}

/* Run init with stderr sent to a file; return what was printed. */
static void init_capturing_stderr(const prt_runtime_config_t *cfg, char *out, size_t size)
{
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	struct prt__topo t;
	size_t n;

	assert_non_null(f);
	assert_true(saved >= 0);
	fflush(stderr);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	assert_int_equal(prt__topo_init(&t, cfg), 0);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	rewind(f);
	n = fread(out, 1, size - 1, f);
	out[n] = '\0';
	fclose(f);
	prt__topo_fini(&t);
}

static void test_verbose(void **state)
{
	prt_runtime_config_t cfg = config(BIG, 0);
	char buf[512];

	(void)state;
	init_capturing_stderr(&cfg, buf, sizeof(buf));
	assert_string_equal(buf, "");
	cfg.flags = PRT_RT_VERBOSE;
	init_capturing_stderr(&cfg, buf, sizeof(buf));
	assert_non_null(strstr(buf, "synthetic"));
	assert_non_null(strstr(buf, "not bound"));
}

static void test_real_machine(void **state)
{
	prt_runtime_config_t cfg = config(NULL, PRT_RT_NO_CPU_LIMIT);
	cpu_set_t before = affinity(), after;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct prt__topo t;
	char cpus[16];
	void *mem;
	int pu;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_true(t.nworkers >= 1);
	assert_int_equal(t.is_this_system, 1);
	assert_int_equal(t.pin, 1);
	assert_string_equal(t.notice, "");
	for (int k = 0; k < t.nworkers; k++)
		assert_true(CPU_ISSET(t.w[k].pu_os_index, &before));

	assert_int_equal(prt__topo_bind_thread(&t, 0), 0);
	after = affinity();
	assert_int_equal(CPU_COUNT(&after), 1);
	assert_true(CPU_ISSET(t.w[0].pu_os_index, &after));
	assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof(before), &before), 0);

	mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	assert_int_equal(prt__topo_membind(&t, 0, mem, 4 * page), 0);
	munmap(mem, 4 * page);
	pu = t.w[0].pu_os_index;
	prt__topo_fini(&t);

	/* A CPU list on the real machine: just the first worker's PU. */
	snprintf(cpus, sizeof(cpus), "%d", pu);
	cfg.cpus = cpus;
	cfg.flags = PRT_RT_PER_PU | PRT_RT_NO_CPU_LIMIT;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 1);
	assert_int_equal(t.w[0].pu_os_index, pu);
	prt__topo_fini(&t);
}

static void test_real_no_pin(void **state)
{
	prt_runtime_config_t cfg = config(NULL, PRT_RT_NO_PIN | PRT_RT_NO_CPU_LIMIT);
	cpu_set_t before = affinity(), after;
	struct prt__topo t;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.is_this_system, 1);
	assert_int_equal(t.pin, 0);
	assert_int_equal(t.can_membind, 0);
	assert_non_null(strstr(t.notice, "PRT_RT_NO_PIN"));
	assert_int_equal(prt__topo_bind_thread(&t, 0), 0);
	after = affinity();
	assert_true(CPU_EQUAL(&before, &after));
	prt__topo_fini(&t);
}

/*
 * t.ncpus, the CPUs the workers run on: bound workers count their
 * distinct PUs, whatever the creating thread's binding (a worker of
 * another runtime is bound to one CPU); unbound ones inherit the
 * creating thread's affinity, so count that.
 */
static void *wait_pipe(void *arg)
{
	char c;

	return (void *)(intptr_t)read(*(int *)arg, &c, 1);
}

static void test_ncpus(void **state)
{
	cpu_set_t before = affinity(), one;
	prt_runtime_config_t cfg = config(NULL, PRT_RT_NO_CPU_LIMIT);
	struct prt__topo t;
	pthread_t other;
	int first = -1, p[2];

	(void)state;
	for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
		if (CPU_ISSET(c, &before))
			first = c;
	CPU_ZERO(&one);
	CPU_SET(first, &one);
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.ncpus, t.nworkers); /* one per core, each its own PU */
	assert_true(CPU_EQUAL(&t.cpus, &before)); /* other threads: all the allowed CPUs */
	prt__topo_fini(&t);

	cfg.nworkers = 3 * CPU_COUNT(&before); /* placement wraps: as many CPUs, no more */
	if (cfg.nworkers > PRT_MAX_WORKERS)
		cfg.nworkers = PRT_MAX_WORKERS;
	cfg.flags = PRT_RT_PER_PU | PRT_RT_NO_CPU_LIMIT;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_true(t.ncpus <= CPU_COUNT(&before) && t.ncpus < t.nworkers);
	prt__topo_fini(&t);

	/*
	 * Created from a thread bound to one CPU while another thread of the
	 * process may run on all of them (as a worker of another runtime).
	 */
	assert_int_equal(pipe(p), 0);
	assert_int_equal(pthread_create(&other, NULL, wait_pipe, &p[0]), 0);
	assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof(one), &one), 0);
	cfg = config(NULL, PRT_RT_PER_PU | PRT_RT_NO_CPU_LIMIT);
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, CPU_COUNT(&before)); /* the process's CPUs */
	assert_int_equal(t.ncpus, t.nworkers); /* bound: their PUs, not this thread's one */
	assert_true(CPU_EQUAL(&t.cpus, &before));
	prt__topo_fini(&t);
	cfg = config(NULL, PRT_RT_PER_PU | PRT_RT_NO_PIN | PRT_RT_NO_CPU_LIMIT);
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.ncpus, 1); /* unbound: they inherit the one CPU */
	assert_true(CPU_EQUAL(&t.cpus, &one));
	prt__topo_fini(&t);
	cfg = config("pack:1 core:8 pu:1", 0);
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	assert_int_equal(t.nworkers, 8);
	assert_int_equal(t.ncpus, 1); /* synthetic: never bound */
	prt__topo_fini(&t);
	assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof(before), &before), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(pthread_join(other, NULL), 0);
	close(p[0]);
	close(p[1]);
}

/* Write @text to @root/@rel, making the directories on the way. */
static void put(const char *root, const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *s = path + strlen(root) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
		*s = '/';
	}
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void rm_tree(const char *dir)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* prt__cgroup_cpu_limit over a made-up /proc and cgroup tree under a fresh @root. */
static int limit_in(char *root, const char *cgroup, const char *mountinfo,
		    struct prt__cpu_limit *out)
{
	put(root, "proc/self/cgroup", cgroup);
	put(root, "proc/self/mountinfo", mountinfo);
	return prt__cgroup_cpu_limit(root, out);
}

#define V2_MOUNT "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"

/*
 * The CPU limit as a container sets it, read from the files only
 * (cgroup.c): v2 and v1, the tightest level of the visible ones, a
 * cgroup outside the mount's root, escaped mount points, files that
 * say nothing or nonsense, and the rounding.
 */
static void test_cgroup_limit_files(void **state)
{
	struct prt__cpu_limit l;
	char root[] = "/tmp/prt-cg-XXXXXX";
	char longroot[3000];

	(void)state;
	assert_non_null(mkdtemp(root));
	/* v2 in a cgroup namespace (the container's own cgroup is "/") */
	put(root, "sys/fs/cgroup/cpu.max", "150000 100000\n");
	assert_int_equal(limit_in(root, "0::/\n", V2_MOUNT, &l), 1);
	assert_int_equal(l.cpus, 2); /* 1.5 CPUs, rounded up */
	assert_true(l.quota_us == 150000 && l.period_us == 100000);
	assert_non_null(strstr(l.where, "/sys/fs/cgroup/cpu.max"));
	put(root, "sys/fs/cgroup/cpu.max", "max 100000\n");
	assert_int_equal(limit_in(root, "0::/\n", V2_MOUNT, &l), 0);
	assert_int_equal(l.cpus, 0);

	/* nested: the parent's limit holds where the leaf has none, the tighter wins */
	put(root, "sys/fs/cgroup/a/cpu.max", "200000 100000\n");
	put(root, "sys/fs/cgroup/a/b/cpu.max", "max 100000\n");
	assert_int_equal(limit_in(root, "0::/a/b\n", V2_MOUNT, &l), 1);
	assert_int_equal(l.cpus, 2);
	assert_non_null(strstr(l.where, "/sys/fs/cgroup/a/cpu.max"));
	put(root, "sys/fs/cgroup/a/b/cpu.max", "50000 100000\n");
	assert_int_equal(limit_in(root, "0::/a/b\n", V2_MOUNT, &l), 1);
	assert_int_equal(l.cpus, 1);
	assert_non_null(strstr(l.where, "/a/b/cpu.max"));
	put(root, "sys/fs/cgroup/cpu.max", "10000 100000\n"); /* the mount point's own level counts too */
	assert_int_equal(limit_in(root, "0::/a/b\n", V2_MOUNT, &l), 1);
	assert_true(l.quota_us == 10000 && l.cpus == 1);
	assert_int_equal(strstr(l.where, "/a/") == NULL, 1);
	put(root, "sys/fs/cgroup/cpu.max", "max 100000\n");

	/* rounding and saturation */
	static const struct {
		const char *max;
		unsigned cpus;
	} rounded[] = {{"100001 100000\n", 2}, {"100000 100000\n", 1}, {"1 100000\n", 1},
		       {"9999999999999999999 1\n", 65535}};
	put(root, "sys/fs/cgroup/a/cpu.max", "max 100000\n");
	for (size_t i = 0; i < sizeof(rounded) / sizeof(rounded[0]); i++) {
		put(root, "sys/fs/cgroup/a/b/cpu.max", rounded[i].max);
		assert_int_equal(limit_in(root, "0::/a/b\n", V2_MOUNT, &l), 1);
		assert_int_equal(l.cpus, rounded[i].cpus);
	}

	/* nonsense is no limit */
	static const char *const bad[] = {"abc def\n", "100000\n", "", "-5 100000\n",
					  "99999999999999999999 100000\n", "0 100000\n",
					  "100000 0\n", "100000 abc\n", "100000x 100000\n"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put(root, "sys/fs/cgroup/a/b/cpu.max", bad[i]);
		assert_int_equal(limit_in(root, "0::/a/b\n", V2_MOUNT, &l), 0);
	}
	/* no cgroup2 mount, a cgroup outside the mount's root, no /proc files */
	assert_int_equal(limit_in(root, "0::/a/b\n",
				  "41 31 0:38 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n", &l), 0);
	put(root, "sys/fs/cgroup/a/b/cpu.max", "50000 100000\n");
	assert_int_equal(limit_in(root, "0::/x/y\n",
				  "41 31 0:38 /a /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", &l), 0);
	put(root, "sys/fs/x/cpu.max", "50000 100000\n"); /* what "/../x" would name */
	assert_int_equal(limit_in(root, "0::/../x\n", V2_MOUNT, &l), 0);
	assert_int_equal(limit_in(root, "0::/ab\n",
				  "41 31 0:38 /a /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", &l), 0);
	/* the mount's root is the cgroup: its files are at the mount point */
	put(root, "sys/fs/cgroup/cpu.max", "300000 100000\n");
	assert_int_equal(limit_in(root, "0::/a/b\n",
				  "41 31 0:38 /a/b /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", &l), 1);
	assert_int_equal(l.cpus, 3);
	rm_tree(root);
	assert_non_null(mkdtemp(strcpy(root, "/tmp/prt-cg-XXXXXX")));
	assert_int_equal(prt__cgroup_cpu_limit(root, &l), 0);
	assert_int_equal(prt__cgroup_cpu_limit("/nonexistent/prt", &l), 0);
	memset(longroot, 'a', sizeof(longroot) - 1);
	longroot[0] = '/';
	longroot[sizeof(longroot) - 1] = '\0';
	assert_int_equal(prt__cgroup_cpu_limit(longroot, &l), -ENAMETOOLONG);

	/* v1 as Docker sets it up without a cgroup namespace; cpuset is not cpu */
	put(root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n");
	put(root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
	put(root, "sys/fs/cgroup/cpuset/cpu.cfs_quota_us", "100000\n");
	put(root, "sys/fs/cgroup/cpuset/cpu.cfs_period_us", "100000\n");
	static const char v1_mounts[] =
		"34 31 0:31 /docker/abc /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n"
		"32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
	static const char v1_cgroup[] = "12:cpuset:/docker/abc\n11:cpu,cpuacct:/docker/abc\n"
					"10:memory:/docker/abc\n0::/\n";
	assert_int_equal(limit_in(root, v1_cgroup, v1_mounts, &l), 1);
	assert_int_equal(l.cpus, 3);
	assert_non_null(strstr(l.where, "cpu,cpuacct/cpu.cfs_quota_us"));
	put(root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
	assert_int_equal(limit_in(root, v1_cgroup, v1_mounts, &l), 0);
	/* v1 and v2 both: the tighter */
	put(root, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "250000\n");
	put(root, "sys/fs/cgroup/unified/cpu.max", "120000 100000\n");
	assert_int_equal(limit_in(root, v1_cgroup,
				  "32 31 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
				  "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n", &l), 1);
	assert_int_equal(l.cpus, 2);
	assert_non_null(strstr(l.where, "unified/cpu.max"));
	/* a mount point with a space, escaped as the kernel writes it */
	put(root, "sys/fs/my cg/cpu.max", "40000 100000\n");
	assert_int_equal(limit_in(root, "0::/\n",
				  "41 31 0:38 / /sys/fs/my\\040cg rw - cgroup2 cgroup2 rw\n", &l), 1);
	assert_int_equal(l.cpus, 1);
	assert_non_null(strstr(l.where, "my cg/cpu.max"));
	rm_tree(root);
}

/*
 * Where this machine lets us (root, cgroup v1's cpu controller, or v2
 * with cpu enabled for our cgroup's children): a child process in a
 * cgroup of its own limited to one CPU gets one worker, not bound; with
 * PRT_RT_NO_CPU_LIMIT one per core again; with CPUs named, bound to them.
 */
static void test_cgroup_limit_real(void **state)
{
	char dir[800], path[900], line[1024], own[400] = "", mnt[300] = "";
	bool v2 = false;
	FILE *f;
	pid_t pid;
	int st, units;
	prt_runtime_config_t cfg = config(NULL, PRT_RT_NO_CPU_LIMIT);
	struct prt__topo t;

	(void)state;
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	units = t.nworkers;
	prt__topo_fini(&t);
	if (geteuid() != 0 || units < 2)
		skip();
	/* our cgroup in the v1 cpu hierarchy, else in v2 */
	f = fopen("/proc/self/cgroup", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;

		if (!b)
			continue;
		*b = '\0';
		b[strcspn(b + 1, "\n") + 1] = '\0';
		if ((strstr(a, ":cpu,") || !strcmp(a, ":cpu") || strstr(a, ",cpu,") ||
		     (strlen(a) > 4 && !strcmp(a + strlen(a) - 4, ",cpu"))) && strlen(b + 1) < sizeof(own))
			strcpy(own, b + 1);
		else if (!strcmp(line, "0") && !strcmp(a, ":") && !own[0] && strlen(b + 1) < sizeof(own)) {
			strcpy(own, b + 1);
			v2 = true;
		}
	}
	fclose(f);
	f = fopen("/proc/self/mountinfo", "r");
	assert_non_null(f);
	while (!mnt[0] && fgets(line, sizeof(line), f)) {
		char r[300], m[300], type[32], super[200];

		if (sscanf(line, "%*s %*s %*s %299s %299s %*[^-]- %31s %*s %199s", r, m, type,
			   super) == 4 && !strcmp(r, "/") &&
		    (v2 ? !strcmp(type, "cgroup2")
			: !strcmp(type, "cgroup") && (strstr(super, ",cpu,") || strstr(super, ",cpu\0") ||
						      !strcmp(super + strlen(super) - 4, ",cpu"))))
			strcpy(mnt, m);
	}
	fclose(f);
	snprintf(dir, sizeof(dir), "%s%s/prt_test_%d", mnt, strcmp(own, "/") ? own : "", (int)getpid());
	if (!mnt[0] || !own[0] || mkdir(dir, 0755) < 0)
		skip();
	snprintf(path, sizeof(path), "%s/%s", dir, v2 ? "cpu.max" : "cpu.cfs_quota_us");
	f = fopen(path, "w");
	if (!f || fprintf(f, v2 ? "100000 100000\n" : "100000\n") < 0 || fclose(f) != 0) {
		rmdir(dir);
		skip(); /* v2 without the cpu controller for our children */
	}
	if (!v2) {
		snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir);
		f = fopen(path, "w");
		assert_non_null(f);
		fprintf(f, "100000\n");
		assert_int_equal(fclose(f), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char cpus[16];
		int ok = 1;

		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		f = fopen(path, "w");
		if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0)
			_exit(3);
		cfg = config(NULL, 0);
		if (prt__topo_init(&t, &cfg))
			_exit(4);
		ok &= t.nworkers == 1 && t.limited == units && t.pin == 0 && t.ncpus == 1 &&
		      t.limit.cpus == 1 && strstr(t.notice, "CPU limit") != NULL;
		prt__topo_fini(&t);
		cfg = config(NULL, PRT_RT_NO_CPU_LIMIT);
		if (prt__topo_init(&t, &cfg))
			_exit(4);
		ok &= t.nworkers == units && t.limited == 0 && t.pin == 1 && t.limit.cpus == 0;
		snprintf(cpus, sizeof(cpus), "%d,%d", t.w[0].pu_os_index, t.w[1].pu_os_index);
		prt__topo_fini(&t);
		cfg = config(NULL, 0);
		cfg.cpus = cpus;
		if (prt__topo_init(&t, &cfg))
			_exit(4);
		ok &= t.nworkers == 1 && t.pin == 1 && strstr(t.notice, "bound to the CPUs named");
		prt__topo_fini(&t);
		cfg = config(NULL, 0);
		cfg.nworkers = 2; /* asked for: kept, but more than the CPU time's worth */
		if (prt__topo_init(&t, &cfg))
			_exit(4);
		ok &= t.nworkers == 2 && t.limited == 0 && t.ncpus == 1 && t.pin == 1;
		prt__topo_fini(&t);
		_exit(ok ? 0 : 5);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_int_equal(rmdir(dir), 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_fini(void **state)
{
	prt_runtime_config_t cfg = config("pack:1 core:2 pu:1", 0);
	struct prt__topo t;

	(void)state;
	memset(&t, 0, sizeof(t));
	prt__topo_fini(&t);
	prt__topo_fini(&t);
	assert_zeroed(&t);
	assert_int_equal(prt__topo_init(&t, &cfg), 0);
	prt__topo_fini(&t);
	assert_zeroed(&t);
	prt__topo_fini(&t);
	assert_zeroed(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_synthetic_per_core),
		cmocka_unit_test(test_synthetic_per_pu),
		cmocka_unit_test(test_no_cores),
		cmocka_unit_test(test_steal_order_numa),
		cmocka_unit_test(test_steal_order_caches),
		cmocka_unit_test(test_cpus),
		cmocka_unit_test(test_cpus_bad),
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_nworkers),
		cmocka_unit_test(test_xml),
		cmocka_unit_test(test_verbose),
		cmocka_unit_test(test_ncpus),
		cmocka_unit_test(test_real_machine),
		cmocka_unit_test(test_real_no_pin),
		cmocka_unit_test(test_cgroup_limit_files),
		cmocka_unit_test(test_cgroup_limit_real),
		cmocka_unit_test(test_fini),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
