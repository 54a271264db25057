#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the build with `meson install --destdir` into a scratch
# directory, then build tests/consumer.c against the installed headers
# and pkg-config file only, and run each program:
#   - shared, as C and as C++: pkg-config --cflags --libs proxyrt;
#   - static: libproxyrt.a with pkg-config --static --libs proxyrt (the
#     private dependencies' own private libraries too: hwloc's -ludev
#     needs Debian's libudev-dev), system libraries shared;
#   - static proxyrt with only its direct dependencies, shared.
# The staged tree is read through PKG_CONFIG_SYSROOT_DIR, the standard
# way to use a .pc file installed under a destdir: its prefix stays the
# real one (here $prefix), and pkg-config puts the sysroot in front of
# every -I and -L path. Args: source root, build dir.
set -euo pipefail
src=$1 build=$2
opt() {
	meson introspect "$build" --buildoptions |
		python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]==sys.argv[1]][0])' "$1"
}
fail() {
	echo "install check: $*" >&2
	exit 1
}
# A sanitized library needs a sanitized consumer: this check is for plain builds.
if [ "$(opt b_sanitize)" != none ]; then
	echo "skip: sanitizer build ($(opt b_sanitize))"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
meson install -C "$build" --no-rebuild --destdir "$tmp" >/dev/null
prefix=$(opt prefix)
pc=$(find "$tmp" -name proxyrt.pc | head -n1)
[ -n "$pc" ] || fail "no proxyrt.pc under the destdir"
# The .pc names the real prefix, not the staging directory.
grep -qx "prefix=$prefix" "$pc" || fail "$pc: prefix is not $prefix: $(grep '^prefix=' "$pc")"
export PKG_CONFIG_SYSROOT_DIR=$tmp PKG_CONFIG_PATH=$(dirname "$pc")
cflags=$(pkg-config --cflags proxyrt)
libs=$(pkg-config --libs proxyrt)
static_libs=$(pkg-config --static --libs proxyrt)
# Every path pkg-config gives for proxyrt is inside the staged tree.
case " $cflags " in *" -I$tmp$prefix/include "*) ;; *) fail "cflags outside $tmp: $cflags" ;; esac
case " $libs " in *" -L$tmp$prefix/"*) ;; *) fail "libs outside $tmp: $libs" ;; esac
# pkgconf puts the sysroot in front of variables too; pkg-config 0.29 does not.
libdir=$(pkg-config --variable=libdir proxyrt)
case $libdir in "$tmp"*) ;; *) libdir=$tmp$libdir ;; esac
[ -f "$libdir/libproxyrt.a" ] || fail "no $libdir/libproxyrt.a"

cc -std=c11 -Wall -Wextra -Werror $cflags "$src/tests/consumer.c" $libs \
	-Wl,-rpath,"$libdir" -o "$tmp/consumer_c"
"$tmp/consumer_c"
if command -v c++ >/dev/null; then
	c++ -std=c++11 -Wall -Wextra -Werror -x c++ $cflags "$src/tests/consumer.c" -x none \
		$libs -Wl,-rpath,"$libdir" -o "$tmp/consumer_cxx"
	"$tmp/consumer_cxx"
fi
# Every function the library exports is declared by the installed
# headers, and with C linkage when they are read as C++ (sem.h had no
# extern "C": a C++ caller's prt_sem_init was an undefined, mangled
# symbol): a program that takes each one's address links as C and as C++.
so=$(find "$libdir" -name 'libproxyrt.so.*' -type f | head -n1)
[ -n "$so" ] || fail "no libproxyrt.so.* under $libdir"
syms=$(nm -D --defined-only "$so" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u)
[ -n "$syms" ] || fail "no functions exported by $so"
{
	echo '#include <proxyrt/proxyrt.h>'
	echo 'typedef void (*prt_any_fn)(void);'
	echo 'static const prt_any_fn prt_exported[] = {'
	for s in $syms; do echo "	(prt_any_fn)$s,"; done
	echo '};'
	echo 'int main(void) { return prt_exported[0] == 0; }'
} >"$tmp/exported.c"
cc -std=c11 -Wall -Werror $cflags "$tmp/exported.c" $libs -Wl,-rpath,"$libdir" \
	-o "$tmp/exported_c" || fail "an exported function is not declared by the headers"
"$tmp/exported_c"
if command -v c++ >/dev/null; then
	c++ -std=c++11 -Wall -Werror -x c++ $cflags "$tmp/exported.c" -x none $libs \
		-Wl,-rpath,"$libdir" -o "$tmp/exported_cxx" ||
		fail "an exported function is not declared with C linkage for C++"
	"$tmp/exported_cxx"
fi
# Static proxyrt through pkg-config --static (-l:libproxyrt.a: the archive, not the .so).
cc -std=c11 $cflags "$src/tests/consumer.c" ${static_libs//-lproxyrt/-l:libproxyrt.a} \
	-o "$tmp/consumer_static" ||
	fail "static link failed (pkg-config --static --libs proxyrt: $static_libs; on Debian, hwloc's -ludev needs libudev-dev)"
readelf -d "$tmp/consumer_static" | grep -q 'NEEDED.*libproxyrt' &&
	fail "consumer_static needs libproxyrt.so: the archive was not linked"
"$tmp/consumer_static"
# Static proxyrt, its direct dependencies shared (needs no further -dev package).
cc -std=c11 $cflags "$src/tests/consumer.c" "$libdir/libproxyrt.a" \
	$(pkg-config --libs $(pkg-config --print-requires-private proxyrt)) -pthread \
	-o "$tmp/consumer_static_direct"
"$tmp/consumer_static_direct"
echo "install check: prefix $prefix, destdir + PKG_CONFIG_SYSROOT_DIR: C, C++, static (pkg-config --static) and static (direct deps) consumers passed; $(echo "$syms" | wc -l) exported functions declared, with C linkage in C++"
