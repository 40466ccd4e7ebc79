// tests/multiprocess_test.cc: many processes (fork) and threads sharing one
// cache file, as users run tcache.
//
// Every child opens its own Store after fork() (never the parent's handle),
// does its work, closes the store and reports through its exit status (0 =
// every check passed; a failing child prints why on stderr). The parent
// waitpid()s every child and asserts it exited 0, then checks the file.
//
// Values prove themselves: a value is "<key>:<version>:<kind>:<n>:<filler>"
// where the n-byte filler is a pure function of key, version and kind, so a
// reader recomputes the whole value from what it holds and any torn, mixed,
// stale-chunk or foreign value is caught. What each child did (puts, gets,
// hits, ...) goes to the parent through anonymous shared memory, so that the
// file's statistics can be checked to add up exactly.
//
// No test sleeps to win a race or asserts a timing; loop counts shrink under
// sanitizers.

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tcache/tcache.h"

// Sanitizers make every operation slower (ThreadSanitizer much more so):
// loop counts are divided by kSlowdown to keep the run time in bounds.
#if defined(__SANITIZE_THREAD__)
#define TCACHE_TEST_SLOWDOWN 6
#elif defined(__SANITIZE_ADDRESS__)
#define TCACHE_TEST_SLOWDOWN 2
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TCACHE_TEST_SLOWDOWN 6
#elif __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define TCACHE_TEST_SLOWDOWN 2
#endif
#endif
#ifndef TCACHE_TEST_SLOWDOWN
#define TCACHE_TEST_SLOWDOWN 1
#endif

namespace {

namespace fs = std::filesystem;
using tcache::Errc;
using tcache::Store;
using tcache::StoreOptions;
using tcache::StoreStats;

constexpr int kSlowdown = TCACHE_TEST_SLOWDOWN;

// ---------------------------------------------------------------------------
// Self-checking values

std::uint64_t mix64(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// 't': text that LZ4 shrinks a lot; 'r': random bytes LZ4 cannot shrink.
enum class Fill : char { text = 't', random = 'r' };

void append_filler(std::string& out, std::string_view key, std::uint64_t version, Fill kind,
                   std::size_t n) {
  std::uint64_t s = mix64(fnv1a(key) ^ mix64(version));
  if (kind == Fill::random) {
    for (std::size_t i = 0; i < n;) {
      s = mix64(s);
      for (int b = 0; b < 8 && i < n; ++b, ++i) out.push_back(static_cast<char>(s >> (8 * b)));
    }
    return;
  }
  // A 32-byte phrase picked by the seed, repeated, with a digit of the
  // version every 997 bytes so that two versions differ all along.
  char phrase[32];
  for (int i = 0; i < 32; ++i) phrase[i] = static_cast<char>('a' + mix64(s + i) % 26);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(i % 997 == 996 ? static_cast<char>('0' + (version + i / 997) % 10)
                                 : phrase[i % 32]);
  }
}

std::string make_value(std::string_view key, std::uint64_t version, Fill kind, std::size_t n) {
  std::string v;
  v.reserve(key.size() + 48 + n);
  v.append(key);
  v += ':';
  v += std::to_string(version);
  v += ':';
  v += static_cast<char>(kind);
  v += ':';
  v += std::to_string(n);
  v += ':';
  append_filler(v, key, version, kind, n);
  return v;
}

// The version `value` encodes if it is exactly what make_value() gives for
// `key`; nullopt for anything else (torn, truncated, another key's, ...).
std::optional<std::uint64_t> check_value(std::string_view key, std::string_view value) {
  if (value.size() <= key.size() || value.substr(0, key.size()) != key ||
      value[key.size()] != ':') {
    return std::nullopt;
  }
  const char* p = value.data() + key.size() + 1;
  const char* end = value.data() + value.size();
  std::uint64_t version = 0;
  auto r = std::from_chars(p, end, version);
  if (r.ec != std::errc() || r.ptr + 3 > end || r.ptr[0] != ':' || r.ptr[2] != ':') {
    return std::nullopt;
  }
  const char kind = r.ptr[1];
  if (kind != 't' && kind != 'r') return std::nullopt;
  std::size_t n = 0;
  r = std::from_chars(r.ptr + 3, end, n);
  if (r.ec != std::errc() || r.ptr >= end || r.ptr[0] != ':') return std::nullopt;
  if (static_cast<std::size_t>(end - (r.ptr + 1)) != n) return std::nullopt;
  if (make_value(key, version, static_cast<Fill>(kind), n) != value) return std::nullopt;
  return version;
}

// Keys of several lengths (some long enough to matter for chunk classes).
std::string key_name(std::string_view prefix, std::uint64_t i) {
  std::string k(prefix);
  k += '-';
  k += std::to_string(i);
  if (i % 7 == 3) k.append(40 + i % 90, static_cast<char>('a' + i % 26));
  return k;
}

// How big values are, by test.
enum class Sizes {
  mixed,      // small, medium, compressible > 4 KiB, some incompressible > 4 KiB
  evicting,   // small, medium and > 4 KiB, in a few size classes only
  any,        // anything from 0 to 20000 bytes: every size class
  huge,       // a few hundred KiB, half compressible
  huge_raw,   // 300..330 KiB incompressible (one or two size classes)
  one_class,  // 100..110 bytes: every chunk of one size class, reused at once
};

std::pair<Fill, std::size_t> pick_size(std::mt19937_64& rng, Sizes sizes) {
  const auto in = [&rng](std::size_t lo, std::size_t hi) {
    return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
  };
  const unsigned roll = static_cast<unsigned>(rng() % 100);
  const Fill kind = rng() % 2 == 0 ? Fill::text : Fill::random;
  switch (sizes) {
    case Sizes::mixed:
      if (roll < 65) return {kind, in(0, 300)};
      if (roll < 88) return {kind, in(300, 4000)};
      if (roll < 97) return {Fill::text, in(4200, 60000)};
      return {Fill::random, in(4200, 20000)};
    case Sizes::evicting:
      if (roll < 70) return {kind, in(100, 160)};
      if (roll < 85) return {kind, in(1500, 1650)};
      if (roll < 95) return {Fill::text, in(8000, 8200)};
      return {Fill::random, in(6000, 6400)};
    case Sizes::any:
      return {kind, in(0, 20000)};
    case Sizes::huge:
      if (roll < 50) return {Fill::random, in(100 << 10, 450 << 10)};
      return {Fill::text, in(4200, 600 << 10)};
    case Sizes::huge_raw:
      return {Fill::random, in(300 << 10, 330 << 10)};
    case Sizes::one_class:
      return {kind, in(100, 110)};
  }
  return {kind, 0};
}

// ---------------------------------------------------------------------------
// Processes

// What one process (or thread) did; reported to the parent through shared
// memory and compared with the file's statistics.
struct Tally {
  std::atomic<std::uint64_t> puts{0};
  std::atomic<std::uint64_t> gets{0};  // keys looked up by get() or get_many()
  std::atomic<std::uint64_t> hits{0};
  std::atomic<std::uint64_t> misses{0};
  std::atomic<std::uint64_t> erased{0};   // erase() calls that returned true
  std::atomic<std::uint64_t> checked{0};  // values verified well-formed

  void add(const Tally& o) {
    puts += o.puts.load();
    gets += o.gets.load();
    hits += o.hits.load();
    misses += o.misses.load();
    erased += o.erased.load();
    checked += o.checked.load();
  }
};

// An object in anonymous shared memory: children write, the parent reads.
template <class T>
class Shared {
 public:
  Shared() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    obj_ = new (p) T();
  }
  ~Shared() {
    obj_->~T();
    ::munmap(obj_, sizeof(T));
  }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  T* operator->() const { return obj_; }
  T& operator*() const { return *obj_; }

 private:
  T* obj_;
};

// Exit statuses of children.
constexpr int kExitBadValue = 10;     // a value was not well-formed for its key
constexpr int kExitWrongState = 11;   // a value was well-formed but not what must be there
constexpr int kExitTcacheError = 12;  // tcache threw
constexpr int kExitException = 13;    // something else threw
constexpr int kExitPipe = 14;         // the test's own plumbing failed

int report(int code, const std::string& what) {
  std::fprintf(stderr, "[child %d] %s\n", static_cast<int>(::getpid()), what.c_str());
  return code;
}

std::string preview(std::string_view v) {
  std::string p(v.substr(0, 80));
  for (char& c : p) {
    if (c < 32 || c > 126) c = '?';
  }
  return "'" + p + "'" + (v.size() > 80 ? "... (" + std::to_string(v.size()) + " bytes)" : "");
}

int bad_value(std::string_view key, std::string_view value) {
  return report(kExitBadValue,
                "value for key '" + std::string(key) + "' is not well-formed: " + preview(value));
}

// Runs body() in a child process and returns its pid. The child never
// returns into GoogleTest: it exits with body()'s result.
pid_t spawn(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ADD_FAILURE() << "fork: " << std::strerror(errno);
    return pid;
  }
  if (pid > 0) return pid;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
  int code = kExitException;
  try {
    code = body();
  } catch (const tcache::Error& e) {
    code = report(kExitTcacheError,
                  std::string("tcache::Error ") + error_code_name(e.code()) + ": " + e.what());
  } catch (const std::exception& e) {
    code = report(kExitException, std::string("exception: ") + e.what());
  }
  std::fflush(nullptr);
  ::_exit(code);
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) {
    switch (WEXITSTATUS(status)) {
      case 0:
        return "exited 0";
      case kExitBadValue:
        return "exited 10: read a value that is not well-formed for its key";
      case kExitWrongState:
        return "exited 11: read a well-formed value that must not be there";
      case kExitTcacheError:
        return "exited 12: tcache threw";
      case kExitException:
        return "exited 13: an exception";
      default:
        return "exited " + std::to_string(WEXITSTATUS(status));
    }
  }
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           strsignal(WTERMSIG(status)) + ")";
  }
  return "status " + std::to_string(status);
}

int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      ADD_FAILURE() << "waitpid(" << pid << "): " << std::strerror(errno);
      return -1;
    }
  }
  return status;
}

void expect_exited_zero(const std::vector<pid_t>& pids, const std::string& who) {
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (pids[i] <= 0) continue;
    const int status = wait_for(pids[i]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << who << " #" << i << " (pid " << pids[i] << ") " << describe_status(status);
  }
}

// Runs fn(thread index) on `threads` threads; returns the first non-zero
// result (a thread's exception becomes a result too).
int run_threads(int threads, const std::function<int(int)>& fn) {
  std::vector<int> results(static_cast<std::size_t>(threads), 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        results[static_cast<std::size_t>(t)] = fn(t);
      } catch (const tcache::Error& e) {
        results[static_cast<std::size_t>(t)] =
            report(kExitTcacheError,
                   std::string("tcache::Error ") + error_code_name(e.code()) + ": " + e.what());
      } catch (const std::exception& e) {
        results[static_cast<std::size_t>(t)] =
            report(kExitException, std::string("exception: ") + e.what());
      }
    });
  }
  for (auto& th : pool) th.join();
  for (const int r : results) {
    if (r != 0) return r;
  }
  return 0;
}

// One looked-up value: counted, and checked if found. Returns an exit code.
int check_get(Tally& t, std::string_view key, bool found, std::string_view value) {
  ++t.gets;
  if (!found) {
    ++t.misses;
    return 0;
  }
  ++t.hits;
  if (!check_value(key, value)) return bad_value(key, value);
  ++t.checked;
  return 0;
}

std::uint64_t seed_for(int a, int b = 0) {
  return mix64((static_cast<std::uint64_t>(::getpid()) << 32) ^
               (static_cast<std::uint64_t>(a) << 16) ^ static_cast<std::uint64_t>(b) ^
               ::testing::UnitTest::GetInstance()->random_seed());
}

// The invariants of a StoreStats that hold at any time.
void expect_consistent(const StoreStats& st) {
  EXPECT_LE(st.entries, st.index_slots);
  EXPECT_LE(st.file_bytes, st.capacity_bytes);
  EXPECT_LE(st.pages_used, st.pages_total);
  EXPECT_LE(st.bytes, st.pages_used * st.page_bytes);
  EXPECT_EQ(st.checksum_failures, 0u);
}

class MultiprocessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "tcache-multiprocess-test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    file_ = dir_ / "cache.tcache";
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path dir_;
  fs::path file_;
};

// ---------------------------------------------------------------------------

// Several processes put the same keys at once (and race to create the file);
// readers check every value they see. At the end each key holds the last
// value one of the writers put for it, once (no duplicate slots), and the
// counters add up to what the children did.
TEST_F(MultiprocessTest, ConcurrentPutsOfSameKeysFromManyProcesses) {
  constexpr int kKeys = 256;
  constexpr int kWriters = 4;
  constexpr int kReaders = 2;
  const int puts_per_writer = 60000 / kSlowdown;
  struct State {
    Tally tally[kWriters + kReaders];
    std::atomic<std::uint64_t> last[kWriters][kKeys];  // version each writer put last, 0 = none
    std::atomic<bool> writers_done{false};
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;

  // Nobody creates the file beforehand: the children race to create it.
  std::vector<pid_t> writers;
  std::vector<pid_t> readers;
  for (int w = 0; w < kWriters; ++w) {
    writers.push_back(spawn([&, w] {
      Store store = Store::open(file_, opt);
      std::mt19937_64 rng(seed_for(w));
      Tally& t = shm->tally[w];
      std::string got;
      for (int i = 0; i < puts_per_writer; ++i) {
        const int k = static_cast<int>(rng() % kKeys);
        const std::string key = key_name("same", static_cast<std::uint64_t>(k));
        // Versions are unique across writers: v % kWriters names the writer.
        const std::uint64_t version = static_cast<std::uint64_t>(i + 1) * kWriters + w;
        const auto [kind, n] = pick_size(rng, Sizes::mixed);
        store.put(key, make_value(key, version, kind, n));
        ++t.puts;
        shm->last[w][k].store(version);
        if (i % 2 == 0) {
          const bool found = store.get(key, got);
          if (!found) return report(kExitWrongState, "own put of '" + key + "' not found");
          if (const int r = check_get(t, key, found, got)) return r;
        }
      }
      return 0;
    }));
  }
  for (int r = 0; r < kReaders; ++r) {
    readers.push_back(spawn([&, r] {
      // Open (or create) as soon as the writers do.
      Store store = Store::open(file_, opt);
      std::mt19937_64 rng(seed_for(100 + r));
      Tally& t = shm->tally[kWriters + r];
      std::string got;
      std::vector<std::string> keys(8);
      std::vector<std::string_view> views(8);
      std::vector<std::string> values(8);
      bool found[8];
      for (long i = 0; i < 2000 / kSlowdown || !shm->writers_done.load(); ++i) {
        if (i % 16 == 15) {
          for (std::size_t j = 0; j < keys.size(); ++j) {
            keys[j] = key_name("same", rng() % kKeys);
            views[j] = keys[j];
          }
          store.get_many(views, values, std::span<bool>(found, 8));
          for (std::size_t j = 0; j < keys.size(); ++j) {
            if (const int rc = check_get(t, keys[j], found[j], values[j])) return rc;
          }
          continue;
        }
        const std::string key = key_name("same", rng() % kKeys);
        if (i % 2 == 0) {
          const bool hit = store.get(key, got);
          if (const int rc = check_get(t, key, hit, got)) return rc;
        } else {
          const std::optional<std::string> v = store.get(key);
          if (const int rc = check_get(t, key, v.has_value(), v ? *v : std::string())) return rc;
        }
      }
      return 0;
    }));
  }
  expect_exited_zero(writers, "writer");
  shm->writers_done.store(true);
  expect_exited_zero(readers, "reader");
  if (HasFailure()) return;

  Tally total;
  for (const Tally& t : shm->tally) total.add(t);
  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_EQ(st.puts, total.puts.load());
  EXPECT_EQ(st.hits, total.hits.load());
  EXPECT_EQ(st.misses, total.misses.load());
  EXPECT_EQ(st.hits + st.misses, total.gets.load());
  EXPECT_EQ(st.erases, 0u);
  EXPECT_EQ(st.evictions, 0u) << "64 MiB holds every key: nothing may be evicted";
  EXPECT_EQ(st.attached_processes, 1u) << "every child detached when it exited";
  EXPECT_GT(total.checked.load(), 0u);

  std::uint64_t keys_put = 0;
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = key_name("same", static_cast<std::uint64_t>(k));
    std::vector<std::uint64_t> lasts;
    for (int w = 0; w < kWriters; ++w) {
      if (const std::uint64_t v = shm->last[w][k].load(); v != 0) lasts.push_back(v);
    }
    const std::optional<std::string> v = store.get(key);
    if (lasts.empty()) {
      EXPECT_FALSE(v.has_value()) << key << " was never put";
      continue;
    }
    ++keys_put;
    ASSERT_TRUE(v.has_value()) << key << " was put and never erased or evicted, yet is missing";
    const std::optional<std::uint64_t> version = check_value(key, *v);
    ASSERT_TRUE(version.has_value()) << key << ": " << preview(*v);
    // The last put to land is some writer's last put of this key.
    EXPECT_NE(std::find(lasts.begin(), lasts.end(), *version), lasts.end())
        << key << " holds version " << *version << " (writer " << *version % kWriters
        << "), which is no writer's last put of it";
  }
  // One slot per key: concurrent inserts of one key converged.
  EXPECT_EQ(store.stats().entries, keys_put);
}

// Processes with several threads each mix puts, erases, gets, batched gets
// and contains on one key set; every value read is checked.
TEST_F(MultiprocessTest, MixedPutsErasesAndGetsFromProcessesAndThreads) {
  constexpr int kProcesses = 3;
  constexpr int kThreads = 3;
  constexpr int kKeys = 400;
  const int ops_per_thread = 8000 / kSlowdown;
  struct State {
    Tally tally[kProcesses][kThreads];
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;
  { Store create = Store::open(file_, opt); }

  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    pids.push_back(spawn([&, p] {
      Store store = Store::open(file_, opt);
      return run_threads(kThreads, [&](int th) {
        std::mt19937_64 rng(seed_for(p, th));
        Tally& t = shm->tally[p][th];
        std::string got;
        std::vector<std::string> keys(12);
        std::vector<std::string_view> views(12);
        std::vector<std::string> values(12);
        bool found[12];
        for (int i = 0; i < ops_per_thread; ++i) {
          const std::string key = key_name("mixed", rng() % kKeys);
          const unsigned roll = static_cast<unsigned>(rng() % 100);
          if (roll < 45) {
            const std::uint64_t version = (static_cast<std::uint64_t>(p * kThreads + th) << 32) | i;
            const auto [kind, n] = pick_size(rng, Sizes::mixed);
            store.put(key, make_value(key, version, kind, n));
            ++t.puts;
          } else if (roll < 55) {
            if (store.erase(key)) ++t.erased;
          } else if (roll < 85) {
            const bool hit = store.get(key, got);
            if (const int rc = check_get(t, key, hit, got)) return rc;
          } else if (roll < 95) {
            for (std::size_t j = 0; j < keys.size(); ++j) {
              keys[j] = key_name("mixed", rng() % kKeys);
              views[j] = keys[j];
            }
            store.get_many(views, values, std::span<bool>(found, keys.size()));
            for (std::size_t j = 0; j < keys.size(); ++j) {
              if (const int rc = check_get(t, keys[j], found[j], values[j])) return rc;
            }
          } else {
            store.contains(key);  // not counted as a get
          }
        }
        return 0;
      });
    }));
  }
  expect_exited_zero(pids, "process");
  if (HasFailure()) return;

  Tally total;
  for (auto& per_process : shm->tally) {
    for (const Tally& t : per_process) total.add(t);
  }
  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_EQ(st.puts, total.puts.load());
  EXPECT_EQ(st.erases, total.erased.load());
  EXPECT_EQ(st.hits, total.hits.load());
  EXPECT_EQ(st.misses, total.misses.load());
  EXPECT_EQ(st.hits + st.misses, total.gets.load());
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_GT(total.erased.load(), 0u);
  EXPECT_GT(total.checked.load(), 0u);
  EXPECT_LE(st.entries, static_cast<std::uint64_t>(kKeys));

  std::uint64_t present = 0;
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = key_name("mixed", static_cast<std::uint64_t>(k));
    const std::optional<std::string> v = store.get(key);
    if (!v) continue;
    ++present;
    EXPECT_TRUE(check_value(key, *v).has_value()) << key << ": " << preview(*v);
  }
  EXPECT_EQ(st.entries, present) << "one slot per present key";
}

// A 4 MiB file under constant eviction: processes and threads put far more
// than fits, erase and read; every value read is still exactly a value put
// for its key, and the counters add up. Value sizes fall in a few size
// classes (small, medium, compressible and incompressible > 4 KiB), so that
// every class has pages; ManyValueSizesInASmallFileKeepAcceptingPuts covers
// the other case.
TEST_F(MultiprocessTest, ConstantEvictionInASmallFile) {
  constexpr int kProcesses = 3;
  constexpr int kThreads = 2;
  constexpr int kKeys = 20000;
  const int ops_per_thread = 15000 / kSlowdown;
  struct State {
    Tally tally[kProcesses][kThreads];
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 4ull << 20;
  { Store create = Store::open(file_, opt); }

  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    pids.push_back(spawn([&, p] {
      Store store = Store::open(file_, opt);
      return run_threads(kThreads, [&](int th) {
        std::mt19937_64 rng(seed_for(p, th));
        Tally& t = shm->tally[p][th];
        std::string got;
        for (int i = 0; i < ops_per_thread; ++i) {
          const std::string key = key_name("evict", rng() % kKeys);
          const unsigned roll = static_cast<unsigned>(rng() % 100);
          if (roll < 65) {
            const std::uint64_t version = (static_cast<std::uint64_t>(p * kThreads + th) << 32) | i;
            const auto [kind, n] = pick_size(rng, Sizes::evicting);
            const std::string value = make_value(key, version, kind, n);
            store.put(key, value);
            ++t.puts;
          } else if (roll < 70) {
            if (store.erase(key)) ++t.erased;
          } else {
            const bool hit = store.get(key, got);
            if (const int rc = check_get(t, key, hit, got)) return rc;
          }
        }
        return 0;
      });
    }));
  }
  expect_exited_zero(pids, "process");
  if (HasFailure()) return;

  Tally total;
  for (auto& per_process : shm->tally) {
    for (const Tally& t : per_process) total.add(t);
  }
  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_EQ(st.capacity_bytes, 4ull << 20);
  EXPECT_GT(st.evictions, 0u) << "the test meant to overflow a 4 MiB file";
  EXPECT_EQ(st.puts, total.puts.load());
  EXPECT_EQ(st.erases, total.erased.load());
  EXPECT_EQ(st.hits, total.hits.load());
  EXPECT_EQ(st.misses, total.misses.load());
  EXPECT_EQ(st.hits + st.misses, total.gets.load());
  EXPECT_GT(total.checked.load(), 0u);

  std::uint64_t present = 0;
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = key_name("evict", static_cast<std::uint64_t>(k));
    const std::optional<std::string> v = store.get(key);
    if (!v) continue;
    ++present;
    EXPECT_TRUE(check_value(key, *v).has_value()) << key << ": " << preview(*v);
  }
  EXPECT_EQ(st.entries, present) << "one slot per present key";
}

// A full file evicts to make room: "when the file is full, older entries are
// evicted" (store.h). Here two processes put values of every size from 0 to
// 20000 bytes into a 4 MiB file, which has fewer slab pages (about 60) than
// such values have size classes; a put must still succeed by evicting, not
// throw Errc::no_space because every page went to other classes first.
TEST_F(MultiprocessTest, ManyValueSizesInASmallFileKeepAcceptingPuts) {
  constexpr int kProcesses = 2;
  const int puts_per_process = 6000 / kSlowdown;
  struct State {
    Tally tally[kProcesses];
    std::atomic<std::uint64_t> no_space[kProcesses];
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 4ull << 20;
  { Store create = Store::open(file_, opt); }

  std::vector<pid_t> pids;
  for (int p = 0; p < kProcesses; ++p) {
    pids.push_back(spawn([&, p] {
      Store store = Store::open(file_, opt);
      std::mt19937_64 rng(seed_for(p));
      Tally& t = shm->tally[p];
      std::string got;
      std::string first_error;
      for (int i = 0; i < puts_per_process; ++i) {
        const std::string key = key_name("sizes", rng() % 5000);
        const auto [kind, n] = pick_size(rng, Sizes::any);
        const std::string value = make_value(key, static_cast<std::uint64_t>(i), kind, n);
        try {
          store.put(key, value);
        } catch (const tcache::Error& e) {
          if (e.code() != Errc::no_space) throw;
          if (shm->no_space[p]++ == 0) {
            first_error = "put #" + std::to_string(i) + " of a " + std::to_string(value.size()) +
                          "-byte value: " + e.what();
          }
          continue;
        }
        ++t.puts;
        // In a file this small, the other process's puts evict constantly,
        // and a new entry that has not been read yet is the first candidate:
        // a miss right after our own put is a legitimate eviction here. What
        // is read must still be right.
        const bool hit = store.get(key, got);
        if (const int rc = check_get(t, key, hit, got)) return rc;
      }
      if (shm->no_space[p] != 0) {
        return report(kExitTcacheError, std::to_string(shm->no_space[p].load()) + " of " +
                                            std::to_string(puts_per_process) +
                                            " puts threw no_space; first: " + first_error);
      }
      return 0;
    }));
  }
  expect_exited_zero(pids, "process");

  Tally total;
  for (const Tally& t : shm->tally) total.add(t);
  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_GT(st.evictions, 0u);
  EXPECT_EQ(st.puts, total.puts.load());
  EXPECT_EQ(st.hits + st.misses, total.gets.load());
}

// Values of a few hundred KiB (half compressible) written and read by
// several processes and threads at once.
TEST_F(MultiprocessTest, ValuesOfAFewHundredKiB) {
  constexpr int kWriterProcesses = 2;
  constexpr int kThreads = 2;
  constexpr int kReaders = 1;
  constexpr int kKeys = 40;
  const int puts_per_thread = 150 / kSlowdown;
  struct State {
    Tally tally[kWriterProcesses + kReaders][kThreads];
    std::atomic<bool> writers_done{false};
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;
  opt.page_bytes = 1u << 20;
  {
    Store create = Store::open(file_, opt);
    ASSERT_GE(create.max_value_bytes(), std::size_t{601} << 10);
  }

  std::vector<pid_t> writers;
  std::vector<pid_t> readers;
  for (int p = 0; p < kWriterProcesses; ++p) {
    writers.push_back(spawn([&, p] {
      Store store = Store::open(file_, opt);
      return run_threads(kThreads, [&](int th) {
        std::mt19937_64 rng(seed_for(p, th));
        Tally& t = shm->tally[p][th];
        std::string got;
        for (int i = 0; i < puts_per_thread; ++i) {
          const std::string key = key_name("huge", rng() % kKeys);
          const std::uint64_t version = (static_cast<std::uint64_t>(p * kThreads + th) << 32) | i;
          const auto [kind, n] = pick_size(rng, Sizes::huge);
          store.put(key, make_value(key, version, kind, n));
          ++t.puts;
          const bool hit = store.get(key, got);
          if (const int rc = check_get(t, key, hit, got)) return rc;
        }
        return 0;
      });
    }));
  }
  for (int r = 0; r < kReaders; ++r) {
    readers.push_back(spawn([&, r] {
      Store store = Store::open(file_, opt);
      return run_threads(kThreads, [&](int th) {
        std::mt19937_64 rng(seed_for(100 + r, th));
        Tally& t = shm->tally[kWriterProcesses + r][th];
        std::string got;
        for (long i = 0; i < 100 / kSlowdown || !shm->writers_done.load(); ++i) {
          const std::string key = key_name("huge", rng() % kKeys);
          const bool hit = store.get(key, got);
          if (const int rc = check_get(t, key, hit, got)) return rc;
        }
        return 0;
      });
    }));
  }
  expect_exited_zero(writers, "writer");
  shm->writers_done.store(true);
  expect_exited_zero(readers, "reader");
  if (HasFailure()) return;

  Tally total;
  for (auto& per_process : shm->tally) {
    for (const Tally& t : per_process) total.add(t);
  }
  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_EQ(st.puts, total.puts.load());
  EXPECT_EQ(st.hits, total.hits.load());
  EXPECT_EQ(st.misses, total.misses.load());
  EXPECT_EQ(st.hits + st.misses, total.gets.load());
  EXPECT_GT(total.checked.load(), 0u);
  for (int k = 0; k < kKeys; ++k) {
    const std::string key = key_name("huge", static_cast<std::uint64_t>(k));
    const std::optional<std::string> v = store.get(key);
    if (v) {
      EXPECT_TRUE(check_value(key, *v).has_value()) << key << ": " << preview(*v);
    }
  }
}

// Values of ~300 KiB that cannot be compressed, in an 8 MiB file of 1 MiB
// pages: only a couple of dozen fit, so nearly every put evicts while
// other processes read.
TEST_F(MultiprocessTest, LargeValuesEvictConstantly) {
  constexpr int kWriterProcesses = 2;
  constexpr int kThreads = 2;
  constexpr int kKeys = 64;
  const int puts_per_thread = 120 / kSlowdown;
  struct State {
    Tally tally[kWriterProcesses + 1][kThreads];
    std::atomic<bool> writers_done{false};
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 8ull << 20;
  opt.page_bytes = 1u << 20;
  { Store create = Store::open(file_, opt); }

  std::vector<pid_t> writers;
  for (int p = 0; p < kWriterProcesses; ++p) {
    writers.push_back(spawn([&, p] {
      Store store = Store::open(file_, opt);
      return run_threads(kThreads, [&](int th) {
        std::mt19937_64 rng(seed_for(p, th));
        Tally& t = shm->tally[p][th];
        std::string got;
        for (int i = 0; i < puts_per_thread; ++i) {
          const std::string key = key_name("raw", rng() % kKeys);
          const std::uint64_t version = (static_cast<std::uint64_t>(p * kThreads + th) << 32) | i;
          const auto [kind, n] = pick_size(rng, Sizes::huge_raw);
          store.put(key, make_value(key, version, kind, n));
          ++t.puts;
          const bool hit = store.get(key, got);
          if (const int rc = check_get(t, key, hit, got)) return rc;
        }
        return 0;
      });
    }));
  }
  const pid_t reader = spawn([&] {
    Store store = Store::open(file_, opt);
    return run_threads(kThreads, [&](int th) {
      std::mt19937_64 rng(seed_for(100, th));
      Tally& t = shm->tally[kWriterProcesses][th];
      std::string got;
      for (long i = 0; i < 100 / kSlowdown || !shm->writers_done.load(); ++i) {
        const std::string key = key_name("raw", rng() % kKeys);
        const bool hit = store.get(key, got);
        if (const int rc = check_get(t, key, hit, got)) return rc;
      }
      return 0;
    });
  });
  expect_exited_zero(writers, "writer");
  shm->writers_done.store(true);
  expect_exited_zero({reader}, "reader");
  if (HasFailure()) return;

  Tally total;
  for (auto& per_process : shm->tally) {
    for (const Tally& t : per_process) total.add(t);
  }
  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_GT(st.evictions, 0u);
  EXPECT_EQ(st.puts, total.puts.load());
  EXPECT_EQ(st.hits, total.hits.load());
  EXPECT_EQ(st.misses, total.misses.load());
  EXPECT_EQ(st.hits + st.misses, total.gets.load());
  EXPECT_LE(st.entries * (300u << 10), st.file_bytes);
}

// A value put by one process that has exited is read by the next, exactly;
// an erase by one is seen by the next; the parent, which kept its own handle
// open all along, sees all of it too.
TEST_F(MultiprocessTest, HandOffBetweenProcessesInSequence) {
  constexpr int kKeys = 500;
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;
  Store parent = Store::open(file_, opt);  // held across every fork; never used by a child

  const auto value_of = [](std::uint64_t k, std::uint64_t version) {
    const std::string key = key_name("hand", k);
    const Fill kind = k % 3 == 0 ? Fill::random : Fill::text;
    const std::size_t n = k % 10 == 0 ? 5000 + k * 40 : k * 3;  // some > 4096
    return make_value(key, version, kind, n);
  };
  // 1: put every key at version 7.
  expect_exited_zero({spawn([&] {
                       Store s = Store::open(file_, opt);
                       for (std::uint64_t k = 0; k < kKeys; ++k) {
                         s.put(key_name("hand", k), value_of(k, 7));
                       }
                       return 0;
                     })},
                     "putter");
  // 2: another process reads every one back exactly.
  expect_exited_zero({spawn([&] {
                       Store s = Store::open(file_, opt);
                       std::string got;
                       for (std::uint64_t k = 0; k < kKeys; ++k) {
                         const std::string key = key_name("hand", k);
                         if (!s.get(key, got)) {
                           return report(kExitWrongState, "missing '" + key + "'");
                         }
                         if (got != value_of(k, 7)) return bad_value(key, got);
                       }
                       return 0;
                     })},
                     "reader 1");
  // 3: erase even keys, rewrite odd ones at version 8.
  expect_exited_zero({spawn([&] {
                       Store s = Store::open(file_, opt);
                       for (std::uint64_t k = 0; k < kKeys; ++k) {
                         const std::string key = key_name("hand", k);
                         if (k % 2 == 0) {
                           if (!s.erase(key)) {
                             return report(kExitWrongState, "erase of '" + key + "' found nothing");
                           }
                         } else {
                           s.put(key, value_of(k, 8));
                         }
                       }
                       return 0;
                     })},
                     "rewriter");
  // 4: a fourth process sees exactly that.
  expect_exited_zero({spawn([&] {
                       Store s = Store::open(file_, opt);
                       std::string got;
                       for (std::uint64_t k = 0; k < kKeys; ++k) {
                         const std::string key = key_name("hand", k);
                         const bool found = s.get(key, got);
                         if (k % 2 == 0 && found) {
                           return report(kExitWrongState, "erased '" + key + "' is back");
                         }
                         if (k % 2 == 1 && (!found || got != value_of(k, 8))) {
                           return report(kExitWrongState, "'" + key + "' is not at version 8");
                         }
                       }
                       return 0;
                     })},
                     "reader 2");
  if (HasFailure()) return;

  for (std::uint64_t k = 0; k < kKeys; ++k) {
    const std::optional<std::string> v = parent.get(key_name("hand", k));
    if (k % 2 == 0) {
      EXPECT_FALSE(v.has_value()) << k;
    } else {
      EXPECT_EQ(v, value_of(k, 8)) << k;
    }
  }
  const StoreStats st = parent.stats();
  expect_consistent(st);
  EXPECT_EQ(st.puts, kKeys + kKeys / 2);
  EXPECT_EQ(st.erases, kKeys / 2);
  EXPECT_EQ(st.hits, kKeys + kKeys / 2 + kKeys / 2);  // reader 1, reader 2, parent
  EXPECT_EQ(st.misses, kKeys / 2 + kKeys / 2);        // reader 2, parent
  EXPECT_EQ(st.entries, kKeys / 2);
  EXPECT_EQ(st.attached_processes, 1u);
}

// Compressible values of 100..200 KiB put by one process are stored
// LZ4-compressed (the file holds far fewer bytes than were put) and read
// back exactly by another process.
TEST_F(MultiprocessTest, CompressedValuesCrossProcesses) {
  constexpr std::uint64_t kKeys = 20;
  StoreOptions opt;
  opt.capacity_bytes = 16ull << 20;
  const auto value_of = [](std::uint64_t k) {
    return make_value(key_name("lz4", k), k + 1, Fill::text, (100u << 10) + k * 5000);
  };
  std::uint64_t raw_bytes = 0;
  for (std::uint64_t k = 0; k < kKeys; ++k) raw_bytes += value_of(k).size();
  expect_exited_zero({spawn([&] {
                       Store s = Store::open(file_, opt);
                       for (std::uint64_t k = 0; k < kKeys; ++k)
                         s.put(key_name("lz4", k), value_of(k));
                       return 0;
                     })},
                     "putter");
  {
    Store s = Store::open(file_, opt);
    const StoreStats st = s.stats();
    EXPECT_EQ(st.entries, kKeys);
    EXPECT_LT(st.bytes * 4, raw_bytes)
        << "values of " << raw_bytes << " bytes of repeated text were stored uncompressed";
  }
  expect_exited_zero({spawn([&] {
                       Store s = Store::open(file_, opt);
                       std::string got;
                       for (std::uint64_t k = 0; k < kKeys; ++k) {
                         const std::string key = key_name("lz4", k);
                         if (!s.get(key, got)) return report(kExitWrongState, "missing " + key);
                         if (got != value_of(k)) return bad_value(key, got);
                       }
                       return 0;
                     })},
                     "reader");
}

// While a writer keeps raising the versions of its keys, readers in other
// processes learn (through a pipe) of each put the moment it returned and
// must then read that version or a newer one: an acknowledged put is
// visible to every process at once.
TEST_F(MultiprocessTest, AcknowledgedPutIsVisibleToOtherProcessesAtOnce) {
  constexpr int kKeys = 50;
  constexpr int kReaders = 2;
  const std::uint64_t puts = 6000 / kSlowdown;
  struct Ack {
    std::uint64_t key;
    std::uint64_t version;
  };
  struct State {
    Tally tally[kReaders];
  };
  Shared<State> shm;
  StoreOptions opt;
  opt.capacity_bytes = 16ull << 20;
  { Store create = Store::open(file_, opt); }

  int fds[kReaders][2];
  for (auto& fd : fds) ASSERT_EQ(::pipe(fd), 0) << std::strerror(errno);
  std::vector<pid_t> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.push_back(spawn([&, r] {
      for (int o = 0; o < kReaders; ++o) {
        ::close(fds[o][1]);
        if (o != r) ::close(fds[o][0]);
      }
      Store store = Store::open(file_, opt);
      Tally& t = shm->tally[r];
      std::string got;
      Ack ack{};
      for (;;) {
        const ssize_t n = ::read(fds[r][0], &ack, sizeof ack);
        if (n == 0) return 0;  // the writer is done
        if (n < 0 && errno == EINTR) continue;
        if (n != static_cast<ssize_t>(sizeof ack)) return report(kExitPipe, "short read");
        const std::string key = key_name("ack", ack.key);
        const bool hit = store.get(key, got);
        if (const int rc = check_get(t, key, hit, got)) return rc;
        if (!hit) {
          return report(kExitWrongState, "acknowledged put of '" + key + "' version " +
                                             std::to_string(ack.version) + " is not visible");
        }
        const std::uint64_t seen = *check_value(key, got);
        if (seen < ack.version) {
          return report(kExitWrongState, "'" + key + "': read version " + std::to_string(seen) +
                                             " after version " + std::to_string(ack.version) +
                                             " was acknowledged");
        }
      }
    }));
  }
  const pid_t writer = spawn([&] {
    for (auto& fd : fds) ::close(fd[0]);
    Store store = Store::open(file_, opt);
    std::mt19937_64 rng(seed_for(7));
    for (std::uint64_t i = 1; i <= puts; ++i) {
      const Ack ack{rng() % kKeys, i};
      const std::string key = key_name("ack", ack.key);
      const auto [kind, n] = pick_size(rng, ack.key % 2 == 0 ? Sizes::one_class : Sizes::mixed);
      store.put(key, make_value(key, ack.version, kind, n));
      for (auto& fd : fds) {
        if (::write(fd[1], &ack, sizeof ack) != static_cast<ssize_t>(sizeof ack)) {
          return report(kExitPipe, std::string("write: ") + std::strerror(errno));
        }
      }
    }
    return 0;
  });
  for (auto& fd : fds) {
    ::close(fd[0]);
    ::close(fd[1]);
  }
  expect_exited_zero({writer}, "writer");
  expect_exited_zero(readers, "reader");
  if (HasFailure()) return;

  Store store = Store::open(file_, opt);
  const StoreStats st = store.stats();
  expect_consistent(st);
  EXPECT_EQ(st.puts, puts);
  EXPECT_EQ(st.hits, kReaders * puts);
  EXPECT_EQ(st.misses, 0u);
}

}  // namespace
