// bench/decorator_bench.cc: Google Benchmark loops of one decorated call,
// each beside what a user would write by hand instead, so that the cost of
// a decorator reads as a ratio (run with --benchmark_filter=<section>).
//
// Sections (each a block of BM_<decorator>_* / BM_<alternative>_* functions
// and their BENCHMARK registrations; add new sections the same way):
//
//   mcache   hits of tcache::mcache on int(int) vs a hand-written
//            std::unordered_map<int, int> + std::mutex memo over the same
//            keys; misses (every key new) vs calling the function itself;
//            one thread and two.
//   bcache   hits of tcache::bcache on int(int) vs a hand-written memo over
//            a raw Store (the int's bytes as key, Store::get + memcpy);
//            misses (lease, compute, encode, put) vs Store::get + put.
//
// Multi-threaded variants share one cache between the threads (as a
// program would) and report real time per call; every key sequence is
// fixed before timing, so both sides of a pair do the same work.
//
// Single-threaded process vs threaded process. Until a process starts its
// first thread, glibc takes and releases std::mutex without atomic
// instructions (__libc_single_threaded), so a mutex costs almost nothing;
// once any thread has existed, each lock and unlock is an atomic
// read-modify-write. Benchmarks run in registration order: the plain
// single-thread ones below run first, in a single-threaded process; the
// *_threaded_process ones start (and join) a thread first, as any program
// with threads has; the ->Threads(2) ones come last.

#include <stdlib.h>  // mkdtemp

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <benchmark/benchmark.h>

#include "tcache/decorators.h"
#include "tcache/store.h"

namespace {

// ---------------------------------------------------------------------------
// Shared helpers

// The cached function: cheap, and opaque to the optimizer, so that a miss
// costs what the cache adds plus one real call.
[[gnu::noinline]] int work(int x) {
  benchmark::ClobberMemory();
  return static_cast<int>(static_cast<std::uint32_t>(x) * 2654435761u >> 3);
}

// Keys 0..n-1 in a fixed pseudo-random order (a sequential walk would be
// kinder to some hash tables than real traffic).
std::vector<int> shuffled_keys(int n) {
  std::vector<int> keys(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) keys[static_cast<std::size_t>(i)] = i;
  std::uint64_t s = 0x9e3779b97f4a7c15ull;
  for (std::size_t i = keys.size(); i > 1; --i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    std::swap(keys[i - 1], keys[s % i]);
  }
  return keys;
}

// Where thread t starts in a shared key sequence: far from the others.
std::size_t start_of(const benchmark::State& state, std::size_t size) {
  return static_cast<std::size_t>(state.thread_index()) * size / 2 % size;
}

// Makes this a process that has had a thread (see the top of the file).
void ensure_threaded_process() {
  static const bool done = [] {
    std::thread([] {}).join();
    return true;
  }();
  (void)done;
}

// ---------------------------------------------------------------------------
// mcache: hits

constexpr int kWorkingSet = 1024;  // keys; every one is cached before timing
constexpr std::uint64_t kHitMaxsize = 4096;

const std::vector<int>& hit_keys() {
  static const std::vector<int> keys = shuffled_keys(kWorkingSet);
  return keys;
}

// What a user would write without tcache.
class HandwrittenMemo {
 public:
  int operator()(int x) {
    {
      std::lock_guard lock(mutex_);
      if (auto it = map_.find(x); it != map_.end()) return it->second;
    }
    const int r = work(x);
    std::lock_guard lock(mutex_);
    map_.emplace(x, r);
    return r;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<int, int> map_;
};

template <class Memo>
void warm(Memo& memo) {
  for (const int k : hit_keys()) memo(k);
}

auto& mcache_hit_memo() {
  static auto memo = [] {
    auto m = tcache::mcache(work, {.maxsize = kHitMaxsize});
    warm(m);
    return m;
  }();
  return memo;
}

HandwrittenMemo& handwritten_hit_memo() {
  static HandwrittenMemo memo;
  static const bool warmed = (warm(memo), true);
  (void)warmed;
  return memo;
}

template <class Memo>
void run_hits(benchmark::State& state, Memo& memo) {
  const std::vector<int>& keys = hit_keys();
  std::size_t i = start_of(state, keys.size());
  for (auto _ : state) {
    benchmark::DoNotOptimize(memo(keys[i]));
    if (++i == keys.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_mcache_hit_int(benchmark::State& state) { run_hits(state, mcache_hit_memo()); }
void BM_handwritten_memo_hit_int(benchmark::State& state) {
  run_hits(state, handwritten_hit_memo());
}
void BM_mcache_hit_int_threaded_process(benchmark::State& state) {
  ensure_threaded_process();
  run_hits(state, mcache_hit_memo());
}
void BM_handwritten_memo_hit_int_threaded_process(benchmark::State& state) {
  ensure_threaded_process();
  run_hits(state, handwritten_hit_memo());
}

// mcache hits on double(double): keys that are not integers, enums or
// std::string are kept as their canonical bytes (mcache_state.h), so this
// times the encode + byte-hash + memcmp path beside BM_mcache_hit_int.
double work_double(double x) { return x * 1.5; }

auto& mcache_hit_double_memo() {
  static auto memo = [] {
    auto m = tcache::mcache(work_double, {.maxsize = kHitMaxsize});
    for (const int k : hit_keys()) m(static_cast<double>(k));
    return m;
  }();
  return memo;
}

void BM_mcache_hit_double(benchmark::State& state) {
  const std::vector<int>& keys = hit_keys();
  std::vector<double> dkeys(keys.begin(), keys.end());
  auto& memo = mcache_hit_double_memo();
  std::size_t i = start_of(state, dkeys.size());
  for (auto _ : state) {
    benchmark::DoNotOptimize(memo(dkeys[i]));
    if (++i == dkeys.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

// ---------------------------------------------------------------------------
// mcache: misses (every call a new key: lookup, call, insert, evict)

constexpr std::uint64_t kMissMaxsize = 1024;

auto& mcache_miss_memo() {
  static auto memo = tcache::mcache(work, {.maxsize = kMissMaxsize});
  return memo;
}

// Keys never seen before: each run of each thread counts up in its own
// range of 2^24 keys.
std::atomic<std::uint32_t> g_next_range{0};

template <class Call>
void run_misses(benchmark::State& state, Call call) {
  std::uint32_t key = g_next_range.fetch_add(1) << 24;
  for (auto _ : state) {
    benchmark::DoNotOptimize(call(static_cast<int>(key)));
    ++key;
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_mcache_miss_int(benchmark::State& state) {
  run_misses(state, [](int k) { return mcache_miss_memo()(k); });
}
void BM_direct_call_int(benchmark::State& state) {
  run_misses(state, [](int k) { return work(k); });
}
void BM_mcache_miss_int_threaded_process(benchmark::State& state) {
  ensure_threaded_process();
  run_misses(state, [](int k) { return mcache_miss_memo()(k); });
}

// ---------------------------------------------------------------------------
// mcache: registrations, in the order described at the top

BENCHMARK(BM_mcache_hit_int);
BENCHMARK(BM_mcache_hit_double);
BENCHMARK(BM_handwritten_memo_hit_int);
BENCHMARK(BM_mcache_miss_int);
BENCHMARK(BM_direct_call_int);
BENCHMARK(BM_mcache_hit_int_threaded_process);
BENCHMARK(BM_handwritten_memo_hit_int_threaded_process);
BENCHMARK(BM_mcache_miss_int_threaded_process);
BENCHMARK(BM_mcache_hit_int)->Threads(2)->UseRealTime();
BENCHMARK(BM_handwritten_memo_hit_int)->Threads(2)->UseRealTime();
BENCHMARK(BM_mcache_miss_int)->Threads(2)->UseRealTime();
BENCHMARK(BM_direct_call_int)->Threads(2)->UseRealTime();

// ---------------------------------------------------------------------------
// bcache: hits and misses vs the raw Store calls a user would write

// A private temporary directory for the bench's files, removed at exit.
const std::filesystem::path& bench_dir() {
  static const struct Dir {
    std::filesystem::path path;
    Dir() {
      std::string pattern =
          (std::filesystem::temp_directory_path() / "tcache-decorator-bench.XXXXXX").string();
      if (::mkdtemp(pattern.data()) == nullptr) std::abort();
      path = pattern;
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  } dir;
  return dir.path;
}

auto& bcache_hit_memo() {
  static auto memo = [] {
    auto m = tcache::bcache(work, {.name = "bench.work",
                                   .path = bench_dir() / "bcache.tcache",
                                   .capacity_bytes = 64ull << 20});
    warm(m);
    return m;
  }();
  return memo;
}

// By hand: the int's bytes as the key, the result's bytes as the value.
struct RawStoreMemo {
  tcache::Store store;
  std::string value;
  int operator()(int x) {
    const std::string_view key(reinterpret_cast<const char*>(&x), sizeof x);
    if (store.get(key, value) && value.size() == sizeof(int)) {
      int r;
      std::memcpy(&r, value.data(), sizeof r);
      return r;
    }
    const int r = work(x);
    store.put(key, std::string_view(reinterpret_cast<const char*>(&r), sizeof r));
    return r;
  }
};

RawStoreMemo& raw_store_memo() {
  static RawStoreMemo memo = [] {
    tcache::StoreOptions o;
    o.capacity_bytes = 64ull << 20;
    RawStoreMemo m{tcache::Store::open(bench_dir() / "raw.tcache", o), {}};
    warm(m);
    return m;
  }();
  return memo;
}

void BM_bcache_hit_int(benchmark::State& state) { run_hits(state, bcache_hit_memo()); }
void BM_store_get_hit_int(benchmark::State& state) { run_hits(state, raw_store_memo()); }

// Misses: every call a new key (the files are large enough that nothing is
// evicted during a run).
void BM_bcache_miss_int(benchmark::State& state) {
  static auto memo = tcache::bcache(
      work,
      {.name = "bench.miss", .path = bench_dir() / "miss.tcache", .capacity_bytes = 1ull << 30});
  static int next = 0;
  for (auto _ : state) benchmark::DoNotOptimize(memo(next++));
  state.SetItemsProcessed(state.iterations());
}
void BM_store_get_put_miss_int(benchmark::State& state) {
  static RawStoreMemo memo = [] {
    tcache::StoreOptions o;
    o.capacity_bytes = 1ull << 30;
    return RawStoreMemo{tcache::Store::open(bench_dir() / "rawmiss.tcache", o), {}};
  }();
  static int next = 0;
  for (auto _ : state) benchmark::DoNotOptimize(memo(next++));
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_bcache_hit_int);
BENCHMARK(BM_store_get_hit_int);
BENCHMARK(BM_bcache_miss_int);
BENCHMARK(BM_store_get_put_miss_int);

}  // namespace

BENCHMARK_MAIN();
