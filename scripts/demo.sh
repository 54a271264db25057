#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install what is missing, build, and run the main demo.
source "$(dirname "$0")/common.sh"
prt_install_deps
prt_build "$ROOT/build" --buildtype=release
exec "$ROOT/build/examples/inversion_demo" "$@"
