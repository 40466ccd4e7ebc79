#!/usr/bin/env bash
# tests/packaging/run.sh: checks that an installed tcache works with
# find_package(tcache). Installs a build tree to a temporary prefix, then
# configures, builds and runs tests/packaging/consumer against that prefix
# only. Run by ctest (tests "packaging_*", tests/CMakeLists.txt).
#
# usage: run.sh [options] CMAKE BUILD_DIR CONSUMER_SOURCE_DIR CXX_COMPILER [CONFIG]
#
#   --configure SOURCE_DIR  first configure tcache from SOURCE_DIR in BUILD_DIR
#                           (kept between runs, so a rerun rebuilds only what
#                           changed) without tests and tools, and build the
#                           library target only (through ccache if it is
#                           installed), unoptimised: this checks packaging,
#                           not speed
#   -D VAR=VALUE            a cache entry for that configure (repeatable)
#   -G GENERATOR            the CMake generator of that configure
#   --expect-shared         libtcache must be installed as a shared library
#                           with its SONAME symlinks, export tcache's API and
#                           hide its internals, and the consumer must run
#                           against the installed .so
#   --expect-no-hiredis     neither libtcache nor the consumer may need
#                           libhiredis, and configuring the consumer must not
#                           look for it (a Store-only package)
set -euo pipefail

usage() {
  echo "usage: $0 [--configure SOURCE_DIR] [-D VAR=VALUE]... [-G GENERATOR] [--expect-shared]" \
    "[--expect-no-hiredis] CMAKE BUILD_DIR CONSUMER_SOURCE_DIR CXX_COMPILER [CONFIG]" >&2
  exit 2
}

source_dir=
defines=()
generator=()
expect_shared=0
expect_no_hiredis=0
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in
    --configure) source_dir=${2:?}; shift 2 ;;
    -D) defines+=("-D${2:?}"); shift 2 ;;
    -G) generator=(-G "${2:?}"); shift 2 ;;
    --expect-shared) expect_shared=1; shift ;;
    --expect-no-hiredis) expect_no_hiredis=1; shift ;;
    *) usage ;;
  esac
done
[[ $# -ge 4 ]] || usage
cmake_bin=$1
build_dir=$2
consumer_dir=$3
cxx=$4
config=${5:-Release}
[[ -n $config ]] || config=Release

work=$(mktemp -d "${TMPDIR:-/tmp}/tcache-packaging.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

step() { echo "packaging: $*"; }
die() { echo "packaging: $*" >&2; exit 1; }
# run LOG WHAT COMMAND...: runs COMMAND with its output in LOG; on failure
# shows LOG and says that WHAT failed.
run() {
  local log=$1 what=$2
  shift 2
  "$@" >"$log" 2>&1 || { cat "$log" >&2; die "$what failed (log above)"; }
}

if [[ -n $source_dir ]]; then
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
  step "configuring $source_dir in $build_dir with ${defines[*]}"
  run "$work/tcache-configure.log" "configuring tcache with ${defines[*]}" \
    "$cmake_bin" -S "$source_dir" -B "$build_dir" "${generator[@]}" "${launcher[@]}" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 \
    -DTCACHE_BUILD_TESTS=OFF -DTCACHE_BUILD_TOOLS=OFF -DTCACHE_BUILD_BENCH=OFF \
    -DTCACHE_BUILD_FUZZ=OFF -DTCACHE_BUILD_PYTHON=OFF -DTCACHE_SANITIZE= "${defines[@]}"
  step "building the library"
  run "$work/tcache-build.log" "building tcache with ${defines[*]}" \
    "$cmake_bin" --build "$build_dir" --target tcache
fi

# The nested build above is a Debug one (-O0); the consumer is built with
# CONFIG and uses the only configuration the package has.
install_config=$config
[[ -z $source_dir ]] || install_config=Debug
step "installing $build_dir to $prefix"
run "$work/install.log" "cmake --install" \
  "$cmake_bin" --install "$build_dir" --prefix "$prefix" --config "$install_config"

for f in include/tcache/tcache.h include/tcache/store.h include/tcache/version.h \
  include/tcache/export.h include/tcache/detail/memory_cache.h; do
  [[ -f $prefix/$f ]] || die "$f was not installed; check install() rules in CMakeLists.txt"
done
[[ ! -e $prefix/include/tcache/memory_cache.h ]] \
  || die "include/tcache/memory_cache.h was installed; it lives in include/tcache/detail/"
config_file=$(find "$prefix" -name tcacheConfig.cmake -print -quit)
[[ -n $config_file ]] || die "no tcacheConfig.cmake under the prefix; check install(EXPORT) and configure_package_config_file"
step "found $config_file"

library=
if ((expect_shared)); then
  # libtcache.so -> libtcache.so.SOVERSION -> libtcache.so.VERSION (the file).
  link=$(find "$prefix" -name libtcache.so -print -quit)
  [[ -n $link && -L $link ]] || die "no libtcache.so symlink under the prefix (a shared build installs one)"
  libdir=$(dirname "$link")
  soname=$(readelf -d "$link" | sed -nE 's/.*\(SONAME\).*\[(.*)\]/\1/p')
  [[ $soname =~ ^libtcache\.so\.[0-9]+$ ]] || die "libtcache.so has SONAME '$soname', expected libtcache.so.N"
  [[ -L $libdir/$soname ]] || die "no $soname symlink beside libtcache.so"
  library=$(readlink -f "$link")
  [[ $(basename "$library") =~ ^libtcache\.so\.[0-9]+\.[0-9]+\.[0-9]+$ ]] \
    || die "libtcache.so resolves to $(basename "$library"), expected libtcache.so.MAJOR.MINOR.PATCH"
  [[ $(readlink -f "$libdir/$soname") == "$library" ]] || die "$soname does not resolve to $library"
  step "installed $(basename "$library") with SONAME $soname and both symlinks"
  # Hidden visibility: the public API is exported, the store's internals not.
  exported=$(nm -DC --defined-only "$library")
  for symbol in 'tcache::Store::open(' 'tcache::compact(' 'tcache::detail::bcache_setup(' \
    'tcache::detail::make_key(' 'typeinfo for tcache::Error'; do
    grep -qF "$symbol" <<<"$exported" || die "libtcache does not export $symbol: mark it TCACHE_API"
  done
  if grep -qF 'tcache::detail::StoreImpl::' <<<"$exported"; then
    die "libtcache exports tcache::detail::StoreImpl's members: internals must stay hidden (CXX_VISIBILITY_PRESET hidden)"
  fi
  step "exports $(grep -c . <<<"$exported") dynamic symbols; internals hidden"
elif find "$prefix" -name 'libtcache.so*' | grep -q .; then
  die "a shared libtcache was installed; this build should be static (BUILD_SHARED_LIBS off by default)"
fi

step "configuring the consumer with CMAKE_PREFIX_PATH=$prefix"
run "$work/configure.log" "configuring the consumer (find_package(tcache) from an install)" \
  "$cmake_bin" -S "$consumer_dir" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE="$config"

step "building the consumer"
run "$work/build.log" "building the consumer (the installed headers or exported link interface are incomplete)" \
  "$cmake_bin" --build "$work/build" --config "$config"

consumer=$(find "$work/build" -type f -name tcache_consumer -perm -u+x -print -quit)
[[ -n $consumer ]] || die "the consumer executable was not built"

if ((expect_shared)); then
  ldd "$consumer" | grep -qF "=> $library" || ldd "$consumer" | grep -q "=> $libdir/$soname" \
    || { ldd "$consumer" >&2; die "the consumer does not load libtcache from $libdir (ldd above)"; }
  step "the consumer loads $soname from the prefix"
fi

if ((expect_no_hiredis)); then
  for f in "$consumer" $library; do
    if readelf -d "$f" | grep -q 'NEEDED.*hiredis' || ldd "$f" | grep -q hiredis; then
      die "$(basename "$f") needs libhiredis, though tcache was built with TCACHE_WITH_REDIS=OFF"
    fi
  done
  if grep -qi hiredis "$work/configure.log" "$work/build/CMakeCache.txt"; then
    grep -i hiredis "$work/configure.log" "$work/build/CMakeCache.txt" >&2
    die "configuring the consumer looked for hiredis (above): tcacheConfig.cmake must not when tcache_WITH_REDIS is OFF"
  fi
  grep -qF 'tcache_WITH_REDIS=OFF' "$work/configure.log" \
    || die "the consumer did not see tcache_WITH_REDIS=OFF from tcacheConfig.cmake"
  step "neither libtcache nor the consumer needs hiredis, and the consumer's configure did not look for it"
fi

step "running the consumer"
"$consumer" "$work/consumer.tcache"
step "ok"
