# SPDX-License-Identifier: MIT
# Shared by scripts/demo.sh and scripts/test.sh: install what is missing,
# then configure and build into a build directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian 12 packages the build, the tests and the cross check need.
# libudev-dev: the install check's static link (pkg-config --static pulls
# in hwloc's private -ludev; see the README's "Install").
PRT_PACKAGES=(gcc g++ clang make pkg-config meson ninja-build
	liburing-dev libjemalloc-dev libhwloc-dev libcmocka-dev valgrind libclang-rt-dev
	libudev-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)

prt_install_deps() {
	local missing=() p sudo=""
	for p in "${PRT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || {
			echo "proxyrt: need root or sudo to install: ${missing[*]}" >&2
			exit 1
		}
		sudo="sudo"
	fi
	echo "proxyrt: installing ${missing[*]}" >&2
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >&2
}

# arm64 multiarch -dev packages for the aarch64 cross build of the whole
# library (scripts/check-aarch64.sh). Best effort: the check skips that
# part if they cannot be installed. (jemalloc's -dev package is not
# multiarch-safe: the cross build uses the libc allocator.)
prt_install_cross_deps() {
	local sudo=""
	[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/hwloc.pc ] &&
		[ -f /usr/lib/aarch64-linux-gnu/pkgconfig/liburing.pc ] && return 0
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	{
		$sudo dpkg --add-architecture arm64 &&
			$sudo apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-remove \
				--no-install-recommends libhwloc-dev:arm64 liburing-dev:arm64
	} >&2 || echo "proxyrt: arm64 -dev packages not installed; cross build will be skipped" >&2
}

# prt_build DIR [meson options...]: configure (or reconfigure) and build.
prt_build() {
	local dir=$1
	shift
	if [ -f "$dir/build.ninja" ]; then
		# A build directory from before an option was added cannot be
		# configured with it: set it up again then.
		meson configure "$dir" "$@" >/dev/null 2>&1 ||
			meson setup --reconfigure "$dir" "$ROOT" "$@" >/dev/null
	else
		meson setup "$dir" "$ROOT" "$@" >/dev/null
	fi
	ninja -C "$dir" >&2
}
