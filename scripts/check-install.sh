#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install the build into a scratch prefix, then build tests/consumer.c
# against the installed headers and pkg-config file only, as C (shared
# and static) and as C++, and run each. Args: source root, build dir.
set -euo pipefail
src=$1 build=$2
opt() {
	meson introspect "$build" --buildoptions |
		python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]==sys.argv[1]][0])' "$1"
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
pcdir=$(dirname "$(find "$tmp" -name proxyrt.pc | head -n1)")
export PKG_CONFIG_SYSROOT_DIR=$tmp PKG_CONFIG_PATH=$pcdir
cflags=$(pkg-config --cflags proxyrt)
libs=$(pkg-config --libs proxyrt)
# pkgconf already prefixes the sysroot to variables
libdir=$(pkg-config --variable=libdir proxyrt)
case $libdir in "$tmp"*) ;; *) libdir=$tmp$libdir ;; esac
cc -std=c11 -Wall -Wextra -Werror $cflags "$src/tests/consumer.c" $libs \
	-Wl,-rpath,"$libdir" -o "$tmp/consumer_c"
"$tmp/consumer_c"
if command -v c++ >/dev/null; then
	c++ -std=c++11 -Wall -Wextra -Werror -x c++ $cflags "$src/tests/consumer.c" -x none \
		$libs -Wl,-rpath,"$libdir" -o "$tmp/consumer_cxx"
	"$tmp/consumer_cxx"
fi
# Static proxyrt, shared dependencies (their own static closures need more -dev packages).
cc -std=c11 $cflags "$src/tests/consumer.c" "$libdir/libproxyrt.a" \
	$(pkg-config --libs $(pkg-config --print-requires-private proxyrt)) -pthread \
	-o "$tmp/consumer_static"
"$tmp/consumer_static"
echo "install check: prefix $prefix: C, C++ and static consumers passed"
