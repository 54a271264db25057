/* SPDX-License-Identifier: MIT */
/*
 * main() for a fuzz target built without libFuzzer (gcc, or any build):
 * run LLVMFuzzerTestOneInput() once on every file named on the command
 * line, and on every file in every directory named, in name order. The
 * target abort()s on a finding; so a corpus replays as a regression test.
 *
 * Finding no input at all is a failure: a test pointed at the wrong
 * directory must not pass by checking nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Run the target on file @path. Returns 0, or -1 if it cannot be read. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len;
	int ret = -1;

	if (!f) {
		fprintf(stderr, "fuzz replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		goto out;
	/* Exactly @len bytes, as libFuzzer passes them: ASan sees a read past the end. */
	buf = malloc(len ? (size_t)len : 1);
	if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len)
		goto out;
	LLVMFuzzerTestOneInput(buf, (size_t)len);
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "fuzz replay: %s: cannot read\n", path);
	free(buf);
	fclose(f);
	return ret;
}

/* Run the target on every regular, non-hidden file in @dir. Returns the count or -1. */
static int run_dir(const char *dir)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort), count = 0;

	if (n < 0) {
		fprintf(stderr, "fuzz replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		struct stat st;

		if (ents[i]->d_name[0] != '.' &&
		    snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name) <
			    (int)sizeof(path) &&
		    !stat(path, &st) && S_ISREG(st.st_mode)) {
			if (run_file(path))
				count = -1;
			else if (count >= 0)
				count++;
		}
		free(ents[i]);
	}
	free(ents);
	return count;
}

int main(int argc, char **argv)
{
	int total = 0, bad = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat st;
		int n;

		if (stat(argv[i], &st)) {
			fprintf(stderr, "fuzz replay: %s: %s\n", argv[i], strerror(errno));
			bad = 1;
			continue;
		}
		n = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]) ? -1 : 1;
		if (n < 0)
			bad = 1;
		else
			total += n;
	}
	printf("fuzz replay: %d inputs\n", total);
	return bad || !total;
}
