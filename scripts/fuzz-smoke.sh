#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# fuzz-smoke.sh FUZZER CORPUS DICT ARTIFACTS SECONDS: run libFuzzer target
# FUZZER for SECONDS on a temporary copy of seed directory CORPUS (the
# fuzzer adds what it finds to its first corpus directory; the source tree
# stays as it is), with dictionary DICT. A crash, leak, timeout or OOM
# fails, its reproducer saved in ARTIFACTS. One job, one process.
set -euo pipefail

[ $# -eq 5 ] || { echo "usage: $0 FUZZER CORPUS DICT ARTIFACTS SECONDS" >&2; exit 2; }
fuzzer=$1 corpus=$2 dict=$3 artifacts=$4 secs=$5

[ -d "$corpus" ] || { echo "fuzz-smoke: no corpus directory $corpus" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp -- "$corpus"/* "$work"/
mkdir -p "$artifacts"

# libFuzzer's default exit code for a finding is 77, which meson reads as
# "skipped": ask for 1.
rc=0
"$fuzzer" "$work" -dict="$dict" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
	-error_exitcode=1 -timeout_exitcode=1 -artifact_prefix="$artifacts/" \
	-print_final_stats=1 || rc=$?
if [ "$rc" -ne 0 ]; then
	echo "fuzz-smoke: $fuzzer failed ($rc); reproducer(s) in $artifacts:" >&2
	ls -l "$artifacts" >&2
	echo "replay one with: $fuzzer FILE" >&2
	exit 1
fi
