#!/usr/bin/env bash
# The install test (ctest install_consumers): installs a build to a temporary
# prefix with `cmake --install --prefix`, moves the prefix elsewhere, and
# builds and runs two consumers of consumer.c against the moved copy: one
# through pkg-config (eplb.pc), one through find_package(eplb). An install
# that names its configure-time prefix anywhere a consumer reads fails here.
# usage: run.sh BUILD_DIR LIBDIR GENERATOR C_COMPILER CONFIGURED_PREFIX
# Exit 0 when both pass, 77 (skip) when pkg-config is missing after the
# find_package consumer passed, 1 on a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1 libdir=$2 generator=$3 cc=$4 configured_prefix=$5
work=$(mktemp -d "${TMPDIR:-/tmp}/eplb-install-XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "install test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/staged" >"$work/install.log" \
  || { cat "$work/install.log" >&2; fail "cmake --install failed"; }
# Moved after the install: only what finds its place at run time still works.
mv "$work/staged" "$work/moved"
prefix="$work/moved"
pc="$prefix/$libdir/pkgconfig/eplb.pc"
[ -f "$pc" ] || fail "no $pc"
[ -f "$prefix/$libdir/cmake/eplb/eplbConfig.cmake" ] || fail "no eplbConfig.cmake"
if grep -n -F -e "$configured_prefix/" -e "$work/staged" "$pc"; then
  fail "$pc names a fixed prefix ($configured_prefix or the install's)"
fi

echo "== find_package(eplb) consumer"
cmake -S "$here" -B "$work/cmake-consumer" -G "$generator" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF >"$work/cmake.log" 2>&1 \
  || { cat "$work/cmake.log" >&2; fail "configuring the find_package consumer failed"; }
found=$(sed -n 's/^eplb_DIR:PATH=//p' "$work/cmake-consumer/CMakeCache.txt")
[ "$(realpath "$found")" = "$(realpath "$prefix/$libdir/cmake/eplb")" ] \
  || fail "find_package found eplb at $found, not in $prefix"
cmake --build "$work/cmake-consumer" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; fail "building the find_package consumer failed"; }
"$work/cmake-consumer/consumer" || fail "the find_package consumer failed"

echo "== pkg-config consumer"
if ! command -v pkg-config >/dev/null; then
  echo "install test: pkg-config not found: the pkg-config consumer is skipped" >&2
  exit 77
fi
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
pc_libdir=$(pkg-config --variable=libdir eplb)
pc_includedir=$(pkg-config --variable=includedir eplb)
[ "$(realpath "$pc_libdir")" = "$(realpath "$prefix/$libdir")" ] \
  || fail "eplb.pc's libdir is $pc_libdir, not in $prefix"
[ -f "$pc_includedir/eplb/eplb.h" ] || fail "eplb.pc's includedir $pc_includedir has no eplb/eplb.h"
# shellcheck disable=SC2046 # the flags are words
"$cc" "$here/consumer.c" -o "$work/pkg-config-consumer" $(pkg-config --cflags --libs eplb) \
  -Wl,-rpath,"$pc_libdir" || fail "building the pkg-config consumer failed"
"$work/pkg-config-consumer" || fail "the pkg-config consumer failed"

if [ -e "$prefix/bin/eplb" ]; then
  echo "== the installed eplb tool"
  "$prefix/bin/eplb" --version || fail "the installed eplb does not run"
fi
echo "install test: passed"
