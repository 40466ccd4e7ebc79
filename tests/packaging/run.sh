#!/usr/bin/env bash
# tests/packaging/run.sh: checks that an installed tcache works with
# find_package(tcache). Installs the build tree to a temporary prefix, then
# configures, builds and runs tests/packaging/consumer against that prefix
# only. Run by ctest (test "packaging_find_package").
#
# usage: run.sh CMAKE BUILD_DIR CONSUMER_SOURCE_DIR CXX_COMPILER [CONFIG]
set -euo pipefail

if [[ $# -lt 4 ]]; then
  echo "usage: $0 CMAKE BUILD_DIR CONSUMER_SOURCE_DIR CXX_COMPILER [CONFIG]" >&2
  exit 2
fi
cmake_bin=$1
build_dir=$2
consumer_dir=$3
cxx=$4
config=${5:-Release}
[[ -n $config ]] || config=Release

work=$(mktemp -d "${TMPDIR:-/tmp}/tcache-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT

step() { echo "packaging: $*"; }

step "installing $build_dir to $work/prefix"
"$cmake_bin" --install "$build_dir" --prefix "$work/prefix" --config "$config" >"$work/install.log" \
  || { cat "$work/install.log" >&2; echo "packaging: cmake --install failed (log above)" >&2; exit 1; }

for f in include/tcache/tcache.h include/tcache/store.h; do
  [[ -f $work/prefix/$f ]] || { echo "packaging: $f was not installed; check install() rules in CMakeLists.txt" >&2; exit 1; }
done
config_file=$(find "$work/prefix" -name tcacheConfig.cmake -print -quit)
[[ -n $config_file ]] || { echo "packaging: no tcacheConfig.cmake under the prefix; check install(EXPORT) and configure_package_config_file" >&2; exit 1; }
step "found $config_file"

step "configuring the consumer with CMAKE_PREFIX_PATH=$work/prefix"
"$cmake_bin" -S "$consumer_dir" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE="$config" >"$work/configure.log" 2>&1 \
  || { cat "$work/configure.log" >&2; echo "packaging: configuring the consumer failed (log above): find_package(tcache) does not work from an install" >&2; exit 1; }

step "building the consumer"
"$cmake_bin" --build "$work/build" --config "$config" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log" >&2; echo "packaging: building the consumer failed (log above): the installed headers or exported link interface are incomplete" >&2; exit 1; }

step "running the consumer"
consumer=$(find "$work/build" -type f -name tcache_consumer -perm -u+x -print -quit)
[[ -n $consumer ]] || { echo "packaging: the consumer executable was not built" >&2; exit 1; }
"$consumer" "$work/consumer.tcache"
step "ok"
