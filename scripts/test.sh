#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what is missing, then build and run the whole test suite in
# three configurations: gcc, clang, and gcc with ASan+UBSan (libc
# allocator, so ASan sees every allocation). Stops at the first failure.
# PRT_TEST_QUICK=1 runs only the gcc build.
source "$(dirname "$0")/common.sh"
prt_install_deps
prt_install_cross_deps

run_suite() {
	local name=$1 dir=$2
	shift 2
	echo "=== $name ==="
	prt_build "$dir" "$@"
	meson test -C "$dir" --print-errorlogs --num-processes 1
}

run_suite gcc "$ROOT/build-test-gcc" --buildtype=debugoptimized
if [ "${PRT_TEST_QUICK:-0}" != 1 ]; then
	CC=clang run_suite clang "$ROOT/build-test-clang" --buildtype=debugoptimized
	run_suite asan+ubsan "$ROOT/build-test-asan" --buildtype=debug \
		-Db_sanitize=address,undefined -Db_lundef=false -Dallocator=libc
fi
echo "proxyrt: all test configurations passed"
