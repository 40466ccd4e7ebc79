// tools/demo.cc: tcache-demo, the README's "main job" in one program.
//
// Creates a cache file (in a fresh temporary directory, or at the path given)
// and runs two parts on it:
//
// 1. Memoization: four worker processes call one slow function, memoized
//    with tcache::bcache, on overlapping arguments at the same time. The
//    function counts its runs in shared memory; the demo prints the speed-up
//    over running it uncached, the hit ratio, and that it ran exactly once
//    per distinct argument across all processes (single flight).
// 2. The store: two worker processes put, get and erase entries of a shared
//    key space at the same time. Every value is a pure function of its key,
//    so a reader knows exactly what it must see: each worker checks every
//    value it reads. Finally the parent re-reads every key.
//
// Exit status 0 only if no process saw a wrong value or an error and every
// argument was computed once.
//
// Usage: tcache-demo [FILE]
//
// Thread safety: single-threaded processes; the sharing is between processes.

#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "tcache/decorators.h"
#include "tcache/tcache.h"

namespace {

constexpr int kWorkers = 2;
constexpr int kOpsPerWorker = 200'000;
constexpr std::uint64_t kKeys = 8'000;
// Values average ~3 KiB, so 8000 keys (~24 MiB) overflow the 16 MiB file:
// the workers also exercise eviction, not just the happy path.
constexpr std::uint64_t kCapacityBytes = 16ull << 20;
constexpr std::size_t kMaxValueBytes = 6'000;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::string key_for(std::uint64_t k) { return fmt::format("demo-key-{:05}", k); }

// The one correct value of key k. Even keys get repetitive text (large ones
// are LZ4-compressed by the store), odd keys random binary bytes, NULs
// included.
std::string value_for(std::uint64_t k) {
  const std::size_t length = 16 + splitmix64(k) % (kMaxValueBytes - 16);
  std::string value;
  value.reserve(length);
  if (k % 2 == 0) {
    const std::string unit = fmt::format("value of {}; ", key_for(k));
    while (value.size() < length) value += unit;
    value.resize(length);
  } else {
    std::uint64_t state = k;
    while (value.size() < length) {
      state = splitmix64(state);
      for (int i = 0; i < 8 && value.size() < length; ++i) {
        value.push_back(static_cast<char>(state >> (8 * i)));
      }
    }
  }
  return value;
}

// ---------------------------------------------------------------------------
// Part 1: a slow function memoized with bcache, shared by processes

constexpr int kMemoWorkers = 4;
constexpr int kMemoArgs = 24;
constexpr int kMemoCallsPerWorker = 2 * kMemoArgs;  // every argument twice
constexpr std::chrono::milliseconds kMemoCost{25};

// In anonymous shared memory: what the workers report to the parent.
struct MemoShared {
  std::atomic<int> runs[kMemoArgs];
  std::atomic<std::uint64_t> hits;
  std::atomic<std::uint64_t> misses;
  std::atomic<std::uint64_t> wrong;
};

// std::int64_t and double: the types Python's int and float map to, so the
// Python process of `./setup.sh demo` (tools/demo.py) shares these entries.
double slow_answer(std::int64_t x) { return static_cast<double>(x * x) + 0.5; }

int run_memo_worker(int id, const std::filesystem::path& file, MemoShared* shared) {
  auto slow = tcache::bcache(
      [shared](std::int64_t x) {
        shared->runs[x].fetch_add(1);
        std::this_thread::sleep_for(kMemoCost);  // the expensive part
        return slow_answer(x);
      },
      {.name = "demo.slow_answer", .path = file});
  for (int i = 0; i < kMemoCallsPerWorker; ++i) {
    const std::int64_t x = (i * 7 + id * 5) % kMemoArgs;  // each worker its own order
    if (slow(x) != slow_answer(x)) shared->wrong.fetch_add(1);
  }
  const tcache::CacheInfo info = slow.cache_info();
  shared->hits.fetch_add(info.hits);
  shared->misses.fetch_add(info.misses);
  return 0;
}

bool run_memo_demo(const std::filesystem::path& file) {
  void* mem = ::mmap(nullptr, sizeof(MemoShared), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::runtime_error("mmap of shared counters failed");
  auto* shared = new (mem) MemoShared();
  fmt::print(
      "part 1: {} processes call a {} ms function, memoized with tcache::bcache, {} times "
      "each on {} distinct arguments\n",
      kMemoWorkers, kMemoCost.count(), kMemoCallsPerWorker, kMemoArgs);
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> workers;
  for (int id = 0; id < kMemoWorkers; ++id) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error(std::string("fork failed: ") + std::strerror(errno));
    if (pid == 0) {
      int status = 2;
      try {
        status = run_memo_worker(id, file, shared);
      } catch (const std::exception& e) {
        fmt::print(stderr, "memo worker {}: {}\n", id, e.what());
      }
      std::fflush(nullptr);
      ::_exit(status);
    }
    workers.push_back(pid);
  }
  bool ok = true;
  for (const pid_t pid : workers) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  const std::chrono::duration<double> cached = std::chrono::steady_clock::now() - start;
  const double uncached = kMemoCallsPerWorker * std::chrono::duration<double>(kMemoCost).count();
  int total_runs = 0;
  int once = 0;
  for (const auto& r : shared->runs) {
    total_runs += r.load();
    once += r.load() == 1 ? 1 : 0;
  }
  const double calls = static_cast<double>(shared->hits + shared->misses);
  fmt::print(
      "  {} calls in {:.2f} s; uncached, the processes would need {:.2f} s: {:.1f}x faster\n",
      kMemoWorkers * kMemoCallsPerWorker, cached.count(), uncached, uncached / cached.count());
  fmt::print("  hit ratio {:.1f}% ({} hits, {} misses)\n",
             calls > 0 ? 100.0 * static_cast<double>(shared->hits) / calls : 0.0,
             shared->hits.load(), shared->misses.load());
  fmt::print(
      "  the function ran {} times for {} distinct arguments: {} across all processes "
      "(single flight)\n",
      total_runs, kMemoArgs, once == kMemoArgs ? "once per argument" : "NOT once per argument");
  if (shared->wrong != 0) fmt::print(stderr, "  {} wrong results\n", shared->wrong.load());
  ok = ok && once == kMemoArgs && shared->wrong == 0;
  shared->~MemoShared();
  ::munmap(mem, sizeof(MemoShared));
  return ok;
}

// ---------------------------------------------------------------------------
// Part 2: raw puts and gets from two processes

struct Counts {
  std::uint64_t gets = 0;
  std::uint64_t hits = 0;
  std::uint64_t puts = 0;
  std::uint64_t erases = 0;
  std::uint64_t wrong = 0;
  std::uint64_t errors = 0;
};

// One worker process: a random mix of 60% get, 35% put, 5% erase.
int run_worker(int id, const std::filesystem::path& file) {
  Counts counts;
  const auto start = std::chrono::steady_clock::now();
  try {
    tcache::StoreOptions options;
    options.create_if_missing = false;
    tcache::Store store = tcache::Store::open(file, options);
    std::mt19937_64 random(static_cast<std::uint64_t>(id) * 7919 + 1);
    std::uniform_int_distribution<std::uint64_t> pick_key(0, kKeys - 1);
    std::uniform_int_distribution<int> pick_op(0, 99);
    std::string value;
    for (int op = 0; op < kOpsPerWorker; ++op) {
      const std::uint64_t k = pick_key(random);
      const std::string key = key_for(k);
      const int dice = pick_op(random);
      try {
        if (dice < 60) {
          ++counts.gets;
          if (store.get(key, value)) {
            ++counts.hits;
            if (value != value_for(k)) {
              if (++counts.wrong <= 5) {
                fmt::print(stderr, "worker {}: WRONG value for {}: {} bytes, expected {}\n", id,
                           key, value.size(), value_for(k).size());
              }
            }
          }
        } else if (dice < 95) {
          // Every tenth put carries a TTL (an hour: nothing expires mid-demo).
          store.put(key, value_for(k),
                    dice % 10 == 0 ? std::chrono::hours(1) : std::chrono::milliseconds(0));
          ++counts.puts;
        } else {
          store.erase(key);
          ++counts.erases;
        }
      } catch (const tcache::Error& e) {
        if (++counts.errors <= 5) {
          fmt::print(stderr, "worker {}: {} failed: {} ({})\n", id, key, e.what(),
                     tcache::error_code_name(e.code()));
        }
      }
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "worker {}: cannot use {}: {}\n", id, file.string(), e.what());
    return 2;
  }
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  fmt::print(
      "worker {} (pid {}): {} gets, {} hits ({:.1f}%), {} puts, {} erases, {} wrong values, "
      "{} errors, {:.2f} s\n",
      id, ::getpid(), counts.gets, counts.hits,
      counts.gets ? 100.0 * counts.hits / static_cast<double>(counts.gets) : 0.0, counts.puts,
      counts.erases, counts.wrong, counts.errors, elapsed.count());
  std::fflush(stdout);
  return counts.wrong || counts.errors ? 1 : 0;
}

// After the workers: every key still present must hold its one value.
int check_all(const std::filesystem::path& file) {
  tcache::StoreOptions options;
  options.read_only = true;
  options.create_if_missing = false;
  tcache::Store store = tcache::Store::open(file, options);
  std::uint64_t present = 0;
  std::uint64_t wrong = 0;
  std::string value;
  for (std::uint64_t k = 0; k < kKeys; ++k) {
    if (!store.get(key_for(k), value)) continue;
    ++present;
    if (value != value_for(k)) ++wrong;
  }
  fmt::print("final check: {} of {} keys present, {} wrong values\n", present, kKeys, wrong);
  return wrong ? 1 : 0;
}

std::filesystem::path make_temp_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "tcache-demo.XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error(
        fmt::format("cannot create a temporary directory from {}: {}; set "
                    "TMPDIR to a writable directory or pass FILE",
                    pattern, std::strerror(errno)));
  }
  return pattern;
}

int run(int argc, char** argv) {
  if (argc > 2 ||
      (argc == 2 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h"))) {
    fmt::print(stderr,
               "usage: tcache-demo [FILE]\n"
               "Processes share the cache FILE (default: a new temporary directory's "
               "demo.tcache):\nfirst four call one bcache-memoized slow function, then two put "
               "and get values\nat the same time, checking every value read.\n");
    return argc > 2 ? 2 : 0;
  }
  const std::filesystem::path file =
      argc == 2 ? std::filesystem::path(argv[1]) : make_temp_dir() / "demo.tcache";

  {
    // Create the file before forking; the parent's handle is closed before
    // fork() so that each worker opens its own (see the fork caveat).
    tcache::StoreOptions options;
    options.capacity_bytes = kCapacityBytes;
    tcache::Store store = tcache::Store::open(file, options);
    fmt::print("cache file: {} ({} MiB capacity)\n", file.string(), kCapacityBytes >> 20);
  }
  const bool memo_ok = run_memo_demo(file);
  fmt::print("part 2: {} processes, {} store operations each on {} keys, checking every value\n",
             kWorkers, kOpsPerWorker, kKeys);
  std::fflush(stdout);

  std::vector<pid_t> workers;
  for (int id = 1; id <= kWorkers; ++id) {
    const pid_t pid = ::fork();
    if (pid < 0) {
      fmt::print(stderr, "tcache-demo: fork failed: {}\n", std::strerror(errno));
      return 2;
    }
    if (pid == 0) {
      const int status = run_worker(id, file);
      std::fflush(nullptr);
      ::_exit(status);
    }
    workers.push_back(pid);
  }

  bool ok = true;
  for (std::size_t i = 0; i < workers.size(); ++i) {
    int status = 0;
    while (::waitpid(workers[i], &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ok = false;
      if (WIFSIGNALED(status)) {
        fmt::print(stderr, "worker {} was killed by signal {}\n", i + 1, WTERMSIG(status));
      } else {
        fmt::print(stderr, "worker {} failed (exit status {})\n", i + 1, WEXITSTATUS(status));
      }
    }
  }
  if (check_all(file) != 0) ok = false;
  ok = ok && memo_ok;
  fmt::print("{}\ninspect it with: tcache-tool stats {}\n",
             ok ? "demo passed: every argument computed once, every value read was the one written"
                : "demo FAILED",
             file.string());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const tcache::Error& e) {
    fmt::print(stderr, "tcache-demo: failed: {} ({})\n", e.what(),
               tcache::error_code_name(e.code()));
  } catch (const std::exception& e) {
    fmt::print(stderr, "tcache-demo: failed: {}\n", e.what());
  }
  return 2;
}
