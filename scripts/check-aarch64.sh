#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# Cross-builds the aarch64 context switch (lib/arch/aarch64/) with the
# checks of tests/ctx_checks.h (tests/ctx_selftest_main.c) at -O0 and -O2,
# and runs both under qemu-user. Exits 77 (Meson's skip) when the cross
# compiler or qemu is missing, otherwise with the first failing status.
#
# Usage: check-aarch64.sh SOURCE_ROOT
# Environment: AARCH64_CC (default aarch64-linux-gnu-gcc), QEMU_AARCH64
# (default qemu-aarch64), AARCH64_SYSROOT (default /usr/aarch64-linux-gnu,
# used only if a static link fails).
set -euo pipefail

src=${1:?usage: check-aarch64.sh SOURCE_ROOT}
cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}

if ! command -v "$cc" >/dev/null 2>&1 || ! command -v "$qemu" >/dev/null 2>&1; then
	echo "skip: aarch64 cross compiler or qemu-user missing"
	exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cflags=(-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -g
	-I"$src/lib" -I"$src/include")
sources=("$src"/lib/arch/aarch64/*.S "$src"/lib/arch/aarch64/*.c
	 "$src/tests/ctx_selftest_main.c")

for opt in -O0 -O2; do
	exe="$tmp/ctx_selftest$opt"
	run=("$qemu" "$exe")
	if ! "$cc" "${cflags[@]}" "$opt" -static "${sources[@]}" -o "$exe" \
		2>"$tmp/static.log"; then
		echo "note: static link failed, linking against $sysroot:"
		sed 's/^/  /' "$tmp/static.log"
		"$cc" "${cflags[@]}" "$opt" "${sources[@]}" -o "$exe"
		run=("$qemu" -L "$sysroot" "$exe")
	fi
	echo "aarch64 $opt:"
	rc=0
	"${run[@]}" || rc=$?
	if [ "$rc" -ne 0 ]; then
		echo "FAIL: aarch64 ctx selftest ($opt) exited with status $rc"
		# 77 would read as a skip to Meson; a failure must not.
		[ "$rc" -eq 77 ] && rc=1
		exit "$rc"
	fi
done

# The whole library, bench and examples, cross-built with meson (compile
# and link only: the runtime itself is not run here). qemu-user does run
# multi-threaded programs with the cross file's `-L /` (it said so wrongly
# before: a mismatched ld.so and libc hung them). Under qemu 7.2, with
# PRT_IO_BACKEND=epoll (no io_uring there) and libcmocka-dev:arm64, a
# build with tests passes test_mutex (preemptive, 17 s) and test_preempt
# but for test_deny_object_at_reused_address, whose case never arises
# there (qemu's mmap never puts the second library where the first one
# was: places == 0; nothing was stopped inside); test_sched's 16-worker test needs more POSIX
# timers than qemu's 32, and fork crashes qemu. Not run here yet. Needs the arm64 multiarch -dev packages of
# hwloc and liburing (scripts/common.sh installs them); skipped if absent.
if pkg-config --exists --with-path=/usr/lib/aarch64-linux-gnu/pkgconfig hwloc 2>/dev/null &&
	[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/liburing.pc ] &&
	[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/hwloc.pc ] && command -v meson >/dev/null; then
	meson setup "$tmp/cross" "$src" --cross-file "$src/scripts/cross/aarch64-linux-gnu.ini" \
		-Dallocator=libc -Dtests=false >"$tmp/cross.log" 2>&1 &&
		ninja -C "$tmp/cross" >>"$tmp/cross.log" 2>&1 || {
		echo "FAIL: aarch64 cross build of the library"
		tail -n 30 "$tmp/cross.log"
		exit 1
	}
	file "$tmp/cross/bench/proxyrt_bench" | grep -q aarch64 || {
		echo "FAIL: cross build did not produce an aarch64 binary"
		exit 1
	}
	echo "aarch64 cross build of the library, bench and examples: ok"
else
	echo "note: arm64 hwloc/liburing -dev packages missing: library cross build skipped"
fi

