#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what is missing, then build and run the whole test suite in
# three configurations: gcc, clang, and gcc with ASan+UBSan (libc
# allocator, so ASan sees every allocation). Stops at the first failure.
# PRT_TEST_QUICK=1 runs only the gcc build.
source "$(dirname "$0")/common.sh"
prt_install_deps
prt_install_cross_deps

passed=0 failed=0 skipped=0
run_suite() {
	local name=$1 dir=$2 rc=0 out
	shift 2
	echo "=== $name ==="
	prt_build "$dir" "$@"
	out=$(mktemp)
	meson test -C "$dir" --print-errorlogs --num-processes 1 | tee "$out" || rc=$?
	passed=$((passed + $(awk '/^Ok:/{print $2}' "$out")))
	failed=$((failed + $(awk '/^Fail:/{f=$2} /^Timeout:/{t=$2} END{print f+t}' "$out")))
	skipped=$((skipped + $(awk '/^Skipped:/{print $2}' "$out")))
	rm -f "$out"
	if [ "$rc" -ne 0 ]; then
		echo "proxyrt: $passed passed, $((failed > 0 ? failed : 1)) failed, $skipped skipped"
		exit "$rc"
	fi
}

run_suite gcc "$ROOT/build-test-gcc" --buildtype=debugoptimized
if [ "${PRT_TEST_QUICK:-0}" != 1 ]; then
	CC=clang run_suite clang "$ROOT/build-test-clang" --buildtype=debugoptimized
	run_suite asan+ubsan "$ROOT/build-test-asan" --buildtype=debug \
		-Db_sanitize=address,undefined -Db_lundef=false -Dallocator=libc
fi
echo "proxyrt: $passed passed, $failed failed, $skipped skipped"
