// tools/demo.cc: tcache-demo, the README's "main job" in one program.
//
// Creates a cache file (in a fresh temporary directory, or at the path given),
// then forks two worker processes that open the same file and, at the same
// time, put, get and erase entries from a shared key space. Every value is a
// pure function of its key, so whichever process wrote it, a reader knows
// exactly what it must see: each worker checks every value it reads and
// reports its puts, gets, hits and wrong values. Finally the parent re-reads
// every key. Exit status 0 only if no process saw a wrong value or an error.
//
// Usage: tcache-demo [FILE]
//
// Thread safety: single-threaded processes; the sharing is between processes.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/core.h>

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
               "Two processes share the cache FILE (default: a new temporary directory's "
               "demo.tcache),\nputting and getting values at the same time and checking every "
               "value read.\n");
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
  fmt::print("starting {} workers, {} operations each on {} keys\n", kWorkers, kOpsPerWorker,
             kKeys);
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
  fmt::print("{}\ninspect it with: tcache-tool stats {}\n",
             ok ? "demo passed: every value read was the one written" : "demo FAILED",
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
