#!/usr/bin/env bash
# setup.sh: install what tcache needs, build it, and run the demo or the tests.
#
#   ./setup.sh demo   build (Release, build/), run tcache-demo on a fresh file,
#                     then a Python process (tools/demo.py) memoizing the same
#                     function on it, then show it with `tcache-tool stats`
#   ./setup.sh test   build and run the test suite (build/), then again under
#                     ASan+UBSan (build-asan/) and TSan (build-tsan/), then run
#                     every fuzz target briefly on its seed corpus (build-fuzz/)
#
# Missing Debian packages are installed first (as root, or through sudo).
# Both install the Python package built in build/ into /usr/local, so that
# /usr/bin/python3 imports tcache afterwards (as root, or through sudo).
# Exits non-zero if anything fails; the last line is the summary.
# Environment: JOBS (default: nproc), FUZZ_SECONDS (per target, default 20).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
root=$(pwd)

packages=(
  cmake g++ clang libclang-rt-14-dev libboost1.81-dev libxxhash-dev liblz4-dev libfmt-dev
  libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libbenchmark-dev liblmdb-dev
  libhiredis-dev redis-server pkg-config
  pybind11-dev python3-pybind11 python3-dev python3-pytest python3-pytest-asyncio python3-numpy
  python3-setuptools python3-wheel python3-pip  # the Python package (python/) and its tests
  prometheus  # promtool: tool_test checks stats --prometheus with Prometheus's own linter
  python3-lmdb python3-diskcache python3-cachetools python3-joblib  # bench/python's peers
)
jobs=${JOBS:-$(nproc)}
fuzz_seconds=${FUZZ_SECONDS:-20}

log() { printf '\n=== setup.sh: %s\n' "$*"; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

usage() {
  cat >&2 <<'USAGE'
usage: ./setup.sh demo|test
  demo  build tcache, run tcache-demo (two processes share one cache file),
        then print `tcache-tool stats` for that file
  test  build and run the tests, then the ASan+UBSan and TSan builds' tests,
        then the fuzz targets (clang) for FUZZ_SECONDS (default 20) each
USAGE
}

install_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]} == 0)); then
    log "all ${#packages[@]} Debian packages are installed"
    return
  fi
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null \
      || die "missing packages: ${missing[*]}; run this script as root (or install sudo) so it can install them"
    sudo=(sudo)
  fi
  log "installing missing packages: ${missing[*]}"
  "${sudo[@]}" apt-get update \
    || die "apt-get update failed; check the network and /etc/apt/sources.list, then rerun"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${missing[@]}" \
    || die "apt-get install failed for: ${missing[*]}; see apt's message above, fix it, then rerun"
}

# configure DIR [cmake args...]
configure() {
  local dir=$1
  shift
  cmake -S "$root" -B "$root/$dir" -DTCACHE_BUILD_BENCH=OFF "$@"
}

# build DIR [targets...]
build() {
  local dir=$1
  shift
  local targets=()
  (($# > 0)) && targets=(--target "$@")
  cmake --build "$root/$dir" -j"$jobs" "${targets[@]}"
}

# install_python_package: puts the Python package built in build/ where
# /usr/bin/python3 imports it with no setting (cmake --install of the python
# component into /usr/local: /usr/local/lib/python3/dist-packages/tcache and a
# tcache.pth in /usr/local/lib/python3.X/dist-packages), so that
# `/usr/bin/python3 -c "import tcache"` works after either command. As root
# (or through sudo); otherwise it says how to use the build tree instead.
install_python_package() {
  local sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null || ! sudo -n true 2>/dev/null; then
      log "not root: the Python package stays in build/python; use it with PYTHONPATH=$root/build/python"
      return
    fi
    sudo=(sudo)
  fi
  log "installing the Python package for /usr/bin/python3 into /usr/local"
  "${sudo[@]}" cmake --install "$root/build" --component python --prefix /usr/local
  (cd / && /usr/bin/python3 -c "import tcache") \
    || die "/usr/bin/python3 cannot import the installed tcache package; see the install lines above"
}

run_demo() {
  install_packages
  log "building (Release, build/)"
  configure build -DCMAKE_BUILD_TYPE=Release -DTCACHE_BUILD_TOOLS=ON
  build build tcache-demo tcache-tool _tcache
  install_python_package
  local dir
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tcache-demo.XXXXXX")
  log "running tcache-demo on $dir/demo.tcache"
  "$root/build/tools/tcache-demo" "$dir/demo.tcache"
  log "a Python process memoizes the same function on $dir/demo.tcache"
  PYTHONPATH="$root/build/python" /usr/bin/python3 "$root/tools/demo.py" "$dir/demo.tcache"
  log "tcache-tool stats $dir/demo.tcache"
  "$root/build/tools/tcache-tool" stats "$dir/demo.tcache"
  printf '\nsetup.sh demo: PASSED (the cache file stays at %s)\n' "$dir/demo.tcache"
}

# --- test mode -------------------------------------------------------------
# Each stage runs in a subshell with `set -e`, so the first failing command
# ends that stage; later stages still run, and the summary lists them all.

results=()        # "stage: PASSED/FAILED/SKIPPED (detail)"
tests_passed=0    # summed over every ctest run and fuzz target
tests_failed=0

# run_ctest DIR LOG [wrapper...]: ctest in DIR, output to the terminal and LOG.
run_ctest() {
  local dir=$1 log_file=$2
  shift 2
  (cd "$root/$dir" && "$@" ctest -j"$jobs" --output-on-failure --no-tests=error --timeout 900) 2>&1 \
    | tee "$log_file"
  return "${PIPESTATUS[0]}"
}

# count_ctest LOG: adds ctest's "N tests failed out of M" to the totals.
count_ctest() {
  local line total failed
  line=$(grep -E 'tests? passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -n 1 || true)
  [[ -n $line ]] || return 0
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
  total=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
  tests_passed=$((tests_passed + total - failed))
  tests_failed=$((tests_failed + failed))
}

# stage NAME FUNCTION: runs FUNCTION in a subshell and records the outcome.
stage() {
  local name=$1 fn=$2 status=0
  log "stage $name"
  # Not `(...) || status=$?`: bash ignores set -e inside a || list.
  set +e
  (
    set -euo pipefail
    "$fn"
  )
  status=$?
  set -e
  if [[ -f $root/build-logs/$name.ctest ]]; then count_ctest "$root/build-logs/$name.ctest"; fi
  if [[ -f $root/build-logs/$name.fuzz ]]; then
    local passed failed
    read -r passed failed <"$root/build-logs/$name.fuzz"
    tests_passed=$((tests_passed + passed))
    tests_failed=$((tests_failed + failed))
  fi
  if ((status == 0)); then
    results+=("$name: PASSED")
  elif ((status == 3)); then
    results+=("$name: SKIPPED ($(cat "$root/build-logs/$name.skip"))")
  else
    results+=("$name: FAILED (exit status $status; see its output above)")
    # A stage that failed before ctest reported anything still counts once.
    if [[ ! -f $root/build-logs/$name.ctest && ! -f $root/build-logs/$name.fuzz ]]; then
      tests_failed=$((tests_failed + 1))
    fi
  fi
}

stage_unit() {
  configure build -DCMAKE_BUILD_TYPE=Release -DTCACHE_BUILD_TOOLS=ON -DTCACHE_BUILD_TESTS=ON \
    -DTCACHE_SANITIZE=
  build build
  install_python_package
  run_ctest build "$root/build-logs/unit.ctest"
}

# Sanitizer builds: -O1 with line tables only (-g1) compiles in half the
# time of -O2 -g and still gives file:line in every report.
sanitizer_flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1")

stage_asan() {
  configure build-asan "${sanitizer_flags[@]}" -DTCACHE_SANITIZE=address,undefined \
    -DTCACHE_BUILD_TOOLS=ON -DTCACHE_BUILD_TESTS=ON
  build build-asan
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    run_ctest build-asan "$root/build-logs/asan.ctest"
}

stage_tsan() {
  # The tool is single-threaded: TSan has nothing to find there, so skip it.
  configure build-tsan "${sanitizer_flags[@]}" -DTCACHE_SANITIZE=thread \
    -DTCACHE_BUILD_TOOLS=OFF -DTCACHE_BUILD_TESTS=ON
  build build-tsan
  # TSan's runtime needs its fixed shadow-memory layout; on kernels with a high
  # mmap randomisation (vm.mmap_rnd_bits > 28) it aborts with "unexpected
  # memory mapping" unless ASLR is off for the test processes.
  local wrapper=()
  if setarch "$(uname -m)" -R true 2>/dev/null; then
    wrapper=(setarch "$(uname -m)" -R)
  fi
  if ! (cd "$root/build-tsan" && "${wrapper[@]}" ctest -N) | grep -qE 'Total Tests: [1-9]'; then
    echo "no test other than the tool's is built yet" >"$root/build-logs/tsan.skip"
    return 3
  fi
  TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1} \
    run_ctest build-tsan "$root/build-logs/tsan.ctest" "${wrapper[@]}"
}

stage_fuzz() {
  if [[ ! -f $root/fuzz/CMakeLists.txt ]]; then
    echo "fuzz/CMakeLists.txt does not exist yet" >"$root/build-logs/fuzz.skip"
    return 3
  fi
  configure build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
    -DTCACHE_BUILD_FUZZ=ON -DTCACHE_BUILD_TOOLS=OFF -DTCACHE_BUILD_TESTS=OFF -DTCACHE_SANITIZE= \
    -DTCACHE_BUILD_PYTHON=OFF
  build build-fuzz
  local targets=() target
  mapfile -t targets < <(cmake --build "$root/build-fuzz" --target help \
    | sed -nE 's/^\.\.\. (fuzz_[A-Za-z0-9_]+)( .*)?$/\1/p' | sort -u)
  if ((${#targets[@]} == 0)); then
    echo "fuzz/CMakeLists.txt defines no fuzz_* target" >"$root/build-logs/fuzz.skip"
    return 3
  fi
  local passed=0 failed=0
  for target in "${targets[@]}"; do
    local exe seeds work args
    exe=$(find "$root/build-fuzz" -type f -perm -u+x -name "$target" -print -quit)
    if [[ -z $exe ]]; then
      echo "fuzz: $target was not built" >&2
      failed=$((failed + 1))
      continue
    fi
    # New inputs go to a scratch corpus (listed first), never into the seeds.
    work="$root/build-fuzz/corpus-work/$target"
    mkdir -p "$work" "$root/build-fuzz/artifacts/$target"
    args=(-max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
      -artifact_prefix="$root/build-fuzz/artifacts/$target/" "$work")
    seeds="$root/fuzz/corpus/$target"
    if [[ -d $seeds ]]; then
      args+=("$seeds")
    else
      echo "fuzz: no seed corpus at fuzz/corpus/$target; starting from an empty corpus"
    fi
    [[ -f $root/fuzz/$target.dict ]] && args+=(-dict="$root/fuzz/$target.dict")
    log "fuzzing $target for ${fuzz_seconds}s"
    if "$exe" "${args[@]}"; then
      passed=$((passed + 1))
    else
      echo "fuzz: $target FAILED; the crashing input is in build-fuzz/artifacts/$target/" >&2
      failed=$((failed + 1))
    fi
  done
  echo "$passed $failed" >"$root/build-logs/fuzz.fuzz"
  echo "fuzz: $passed of ${#targets[@]} targets ran clean"
  ((failed == 0))
}

run_tests() {
  install_packages
  rm -rf "$root/build-logs"
  mkdir -p "$root/build-logs"
  local start=$SECONDS
  stage unit stage_unit
  stage asan stage_asan
  stage tsan stage_tsan
  stage fuzz stage_fuzz
  log "summary ($(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s)"
  local r verdict=PASSED
  for r in "${results[@]}"; do
    echo "  $r"
    if [[ $r == *": FAILED"* ]]; then verdict=FAILED; fi
  done
  echo "setup.sh test: ${verdict}"
  echo "summary: ${tests_passed} passed, ${tests_failed} failed"
  [[ $verdict == PASSED ]]
}

case ${1:-} in
  demo) run_demo ;;
  test) run_tests ;;
  -h | --help) usage ;;
  *)
    usage
    exit 2
    ;;
esac
