/* SPDX-License-Identifier: MIT */
/*
 * The cgroup's CPU bandwidth limit (cgroup.h). Where the process's
 * cgroup is comes from /proc/self/cgroup ("0::/path" for v2,
 * "N:cpu,cpuacct:/path" for v1's cpu controller); where that hierarchy
 * is mounted from /proc/self/mountinfo (a mount's root inside the
 * hierarchy, its mount point, its type, and for v1 the controllers in
 * its super options). In a container with its own cgroup namespace the
 * path is "/" and the mount's root "/"; without one (Docker on v1) the
 * path is "/docker/ID" and the mount's root the same. The directory is
 * the mount point plus what the path has past the mount's root; from
 * there we read each level up to the mount point and keep the tightest
 * limit, since the kernel enforces all of them (Go 1.25 reads only the
 * leaf: golang/go#81180). A path outside the mount's root cannot be
 * seen from here and gives no limit. Mount points are unescaped as the
 * kernel writes them (octal \040 for a space, and so on).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgroup.h"

#define CG_PATH_MAX 4096

enum cg_version { CG_V1, CG_V2 };

/* Read a small file into @buf (NUL-terminated, trailing newline kept); 0 or -1. */
static int read_small(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -1;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	return n ? 0 : -1;
}

/* Parse an unsigned decimal of at most 19 digits ending at a space, newline or NUL; false if none. */
static bool parse_u64(const char *s, uint64_t *out, const char **end)
{
	uint64_t v = 0;
	int n = 0;

	while (*s >= '0' && *s <= '9') {
		if (++n > 19)
			return false;
		v = v * 10 + (uint64_t)(*s++ - '0');
	}
	if (!n || (*s && *s != ' ' && *s != '\n'))
		return false;
	*out = v;
	if (end)
		*end = s;
	return true;
}

/*
 * The limit one directory sets: true with @q and @p (both > 0) if it
 * sets one. v2: cpu.max, "max PERIOD" or "QUOTA PERIOD". v1:
 * cpu.cfs_quota_us (-1: none) and cpu.cfs_period_us.
 */
static bool dir_limit(enum cg_version v, const char *dir, uint64_t *q, uint64_t *p)
{
	char path[CG_PATH_MAX + 32], buf[64];
	const char *s;

	if (v == CG_V2) {
		snprintf(path, sizeof(path), "%s/cpu.max", dir);
		if (read_small(path, buf, sizeof(buf)) < 0 || !parse_u64(buf, q, &s) || *s != ' ')
			return false; /* "max ...", missing, or not understood */
		return parse_u64(s + 1, p, NULL) && *q && *p;
	}
	snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", dir);
	if (read_small(path, buf, sizeof(buf)) < 0 || !parse_u64(buf, q, NULL))
		return false; /* "-1", missing, or not understood */
	snprintf(path, sizeof(path), "%s/cpu.cfs_period_us", dir);
	if (read_small(path, buf, sizeof(buf)) < 0 || !parse_u64(buf, p, NULL))
		return false;
	return *q && *p;
}

/* q1/p1 < q2/p2, without overflow (each below 2^64). */
static bool tighter(uint64_t q1, uint64_t p1, uint64_t q2, uint64_t p2)
{
	return (unsigned __int128)q1 * p2 < (unsigned __int128)q2 * p1;
}

/*
 * Keep in @out the tightest limit of @dir and its parents up to @top
 * (a prefix of @dir, the mount point). @dir is changed in place.
 */
static void walk_up(enum cg_version v, char *dir, size_t top, struct prt__cpu_limit *out,
		    bool *found)
{
	for (;;) {
		uint64_t q, p;
		char *slash;

		if (dir_limit(v, dir, &q, &p) &&
		    (!*found || tighter(q, p, out->quota_us, out->period_us))) {
			*found = true;
			out->quota_us = q;
			out->period_us = p;
			snprintf(out->where, sizeof(out->where), "%s/%s", dir,
				 v == CG_V2 ? "cpu.max" : "cpu.cfs_quota_us");
		}
		if (strlen(dir) <= top)
			return;
		slash = strrchr(dir, '/');
		if (!slash || (size_t)(slash - dir) < top)
			return;
		*slash = '\0';
	}
}

/* Undo the kernel's octal escapes (\040 space, \011 tab, \012 newline, \134 backslash) in place. */
static void unescape(char *s)
{
	char *d = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*d++ = *s++;
		}
	}
	*d = '\0';
}

/* Is @name one of the comma-separated words of @list? */
static bool has_word(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *s = list; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL) {
		if (!strncmp(s, name, n) && (s[n] == ',' || s[n] == '\0' || s[n] == '\n'))
			return true;
	}
	return false;
}

/*
 * The cgroup paths of the process in /proc/self/cgroup: v1's for the
 * cpu controller and v2's ("0::"). Each "" when absent. Lines of other
 * v1 controllers are skipped.
 */
static void own_paths(const char *root, char *v1, char *v2, size_t len)
{
	char path[CG_PATH_MAX], *line = NULL;
	size_t cap = 0;
	FILE *f;

	v1[0] = v2[0] = '\0';
	snprintf(path, sizeof(path), "%s/proc/self/cgroup", root);
	f = fopen(path, "re");
	if (!f)
		return;
	while (getline(&line, &cap, f) > 0) {
		char *ctl = strchr(line, ':'), *p = ctl ? strchr(ctl + 1, ':') : NULL;
		char *nl;

		if (!p || p[1] != '/')
			continue;
		*p++ = '\0';
		*ctl++ = '\0'; /* line: the id; ctl: the controllers; p: the path */
		nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		if (strlen(p) >= len || strstr(p, "/..") != NULL)
			continue; /* too long, or outside our cgroup namespace's root ("/../x"): not visible */
		if (!strncmp(line, "0", 2) && !*ctl)
			strcpy(v2, p);
		else if (has_word(ctl, "cpu"))
			strcpy(v1, p);
	}
	free(line);
	fclose(f);
}

/*
 * One line of mountinfo: if it mounts the hierarchy of @v (v1: one
 * whose super options name the cpu controller) at a root that @cg is
 * inside, put the directory of @cg under @root into @dir, the length
 * of its mount point part into @top, and return true.
 */
static bool mount_dir(char *line, enum cg_version v, const char *root, const char *cg, char *dir,
		      size_t *top)
{
	char *f[6], *save = NULL, *dash, *type, *super, *tok;
	size_t rl;
	const char *rest;
	int n = 0;

	dash = strstr(line, " - ");
	if (!dash)
		return false;
	*dash = '\0';
	type = strtok_r(dash + 3, " \n", &save);
	(void)strtok_r(NULL, " \n", &save); /* the source */
	super = strtok_r(NULL, " \n", &save);
	if (!type || (v == CG_V2 ? strcmp(type, "cgroup2") != 0
				 : strcmp(type, "cgroup") != 0 || !super || !has_word(super, "cpu")))
		return false;
	save = NULL;
	for (tok = strtok_r(line, " ", &save); tok && n < 6; tok = strtok_r(NULL, " ", &save))
		f[n++] = tok;
	if (n < 5)
		return false;
	/* f[3]: the mount's root in the hierarchy; f[4]: its mount point */
	unescape(f[3]);
	unescape(f[4]);
	rl = strlen(f[3]);
	if (!strcmp(f[3], "/"))
		rest = cg;
	else if (!strncmp(cg, f[3], rl) && (cg[rl] == '/' || cg[rl] == '\0'))
		rest = cg + rl;
	else
		return false; /* our cgroup is not under this mount */
	if (!strcmp(rest, "/"))
		rest = "";
	if ((size_t)snprintf(dir, CG_PATH_MAX, "%s%s", root, f[4]) >= CG_PATH_MAX)
		return false;
	*top = strlen(dir);
	while (*top > 1 && dir[*top - 1] == '/')
		dir[--*top] = '\0'; /* a mount point "/" under a root "" */
	return (size_t)snprintf(dir + *top, CG_PATH_MAX - *top, "%s", rest) < CG_PATH_MAX - *top;
}

int prt__cgroup_cpu_limit(const char *root, struct prt__cpu_limit *out)
{
	char v1[CG_PATH_MAX], v2[CG_PATH_MAX], path[CG_PATH_MAX], dir[CG_PATH_MAX];
	char *line = NULL;
	bool found = false, seen[2] = {false, false};
	size_t cap = 0, top;
	FILE *f;

	memset(out, 0, sizeof(*out));
	if (!root)
		root = "";
	if (strlen(root) > CG_PATH_MAX / 2)
		return -ENAMETOOLONG;
	own_paths(root, v1, v2, sizeof(v1));
	if (!v1[0] && !v2[0])
		return 0;
	snprintf(path, sizeof(path), "%s/proc/self/mountinfo", root);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0) {
		for (int v = CG_V1; v <= CG_V2; v++) {
			const char *cg = v == CG_V1 ? v1 : v2;
			char copy[CG_PATH_MAX];

			if (!cg[0] || seen[v] || strlen(line) >= sizeof(copy))
				continue;
			strcpy(copy, line); /* mount_dir cuts the line up */
			if (mount_dir(copy, (enum cg_version)v, root, cg, dir, &top)) {
				seen[v] = true; /* the first mount of a hierarchy is enough */
				walk_up((enum cg_version)v, dir, top, out, &found);
			}
		}
	}
	free(line);
	fclose(f);
	if (!found)
		return 0;
	/* rounded up, without wrapping for a quota near 2^64 */
	{
		uint64_t c = out->quota_us / out->period_us + (out->quota_us % out->period_us != 0);

		out->cpus = c > 65535 ? 65535u : (unsigned)c;
	}
	return 1;
}
