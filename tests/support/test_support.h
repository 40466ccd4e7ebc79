// tests/support/test_support.h: helpers shared by tcache's test programs.
// Header-only; everything is in namespace tcache::test.
//
// Temporary directories
//   TempDirTest      GoogleTest fixture base: a fresh private directory per
//                    test (dir_), a cache file path in it (file_, not
//                    created), and everything removed after the test.
//   read_file        a whole file's bytes.
//
// Run time
//   kSlowdown        loop counts are divided by it under sanitizers (2 for
//                    AddressSanitizer/MemorySanitizer, 6 for ThreadSanitizer).
//
// Self-checking values (multiprocess_test, crash_test)
//   make_value       "<key>:<version>:<kind>:<n>:<filler>", with an n-byte
//                    filler that is a pure function of key, version and kind
//                    (Fill::text compresses, Fill::random does not).
//   check_value      the version a value encodes if it is exactly what
//                    make_value() gives for its key; nullopt for anything
//                    torn, truncated, stale or another key's.
//   key_name         "<prefix>-<i>", some padded long (for chunk classes).
//   pick_size        a random value kind and size for a test's Sizes profile.
//   mix64, fnv1a     the hashes behind the fillers (and seed_for()).
//   KeyBatch         random keys plus the buffers for one Store::get_many().
//
// Child processes (multiprocess_test, crash_test)
//   Shared<T>        a T in anonymous shared memory: children write, the
//                    parent reads after they are gone.
//   spawn            runs a body in a fork()ed child that exits with the
//                    body's result (an exception becomes kExitTcacheError or
//                    kExitException); the child dies with the test.
//   kExit*, report   children's exit statuses; report() says why on stderr.
//   preview, bad_value   a printable start of a value; the report for one
//                    that is not well-formed.
//   wait_for, describe_status   waitpid() without EINTR; a status in words.
//   expect_exited_zero, expect_child_exits_zero   wait for children and
//                    expect each to have exited 0.
//   run_threads      runs a body on several threads, first non-zero result.
//   seed_for         a per-process, per-thread RNG seed that also follows
//                    --gtest_random_seed.
//   expect_consistent   the StoreStats invariants that hold at any time.

#ifndef TCACHE_TESTS_SUPPORT_TEST_SUPPORT_H_
#define TCACHE_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
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

namespace tcache::test {

inline constexpr int kSlowdown = TCACHE_TEST_SLOWDOWN;

// For a check that something put with `ttl` at (or after) `start` has not
// expired yet: true while less than `ttl`, less a millisecond of rounding
// (expiry times are whole milliseconds), has passed since `start`. Call it
// after the check's own reads; when a busy machine took longer, the caller
// skips the check instead of failing it. Checks that something HAS expired
// need no such care: sleeping past a TTL is never too short.
inline bool before_expiry(std::chrono::steady_clock::time_point start,
                          std::chrono::milliseconds ttl) {
  return std::chrono::steady_clock::now() - start < ttl - std::chrono::milliseconds(1);
}

// ---------------------------------------------------------------------------
// Errors

// The code of the tcache::Error fn() throws; a test failure if it throws none.
template <class Fn>
tcache::Errc error_of(Fn&& fn) {
  try {
    fn();
  } catch (const tcache::Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no tcache::Error thrown";
  return tcache::Errc{};
}

// The message of the tcache::Error fn() throws, or "" if it throws none.
template <class Fn>
std::string message_of(Fn&& fn) {
  try {
    fn();
  } catch (const tcache::Error& e) {
    return e.what();
  }
  return "";
}

// Lowercase hex of `bytes`.
inline std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out += kHex[static_cast<unsigned char>(c) >> 4];
    out += kHex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// ---------------------------------------------------------------------------
// Temporary directories

// A fixture whose every test gets a fresh directory of its own (mode 0700,
// from mkdtemp) under the system's temporary directory, removed with all it
// holds after the test. `name` tells whose it is: "<tmp>/<name>.XXXXXX".
// A fixture that overrides SetUp() calls TempDirTest::SetUp() first (under
// ASSERT_NO_FATAL_FAILURE if it goes on to use the directory).
class TempDirTest : public ::testing::Test {
 protected:
  explicit TempDirTest(std::string name) : name_(std::move(name)) {}

  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / (name_ + ".XXXXXX")).string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
    file_ = dir_ / "cache.tcache";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::filesystem::path dir_;
  std::filesystem::path file_;  // dir_ / "cache.tcache"; no test has made it yet

 private:
  std::string name_;
};

// The whole contents of a file ("" if it cannot be read).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// ---------------------------------------------------------------------------
// Self-checking values

inline std::uint64_t mix64(std::uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// 't': text that LZ4 shrinks a lot; 'r': random bytes LZ4 cannot shrink.
enum class Fill : char { text = 't', random = 'r' };

inline void append_filler(std::string& out, std::string_view key, std::uint64_t version, Fill kind,
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

inline std::string make_value(std::string_view key, std::uint64_t version, Fill kind,
                              std::size_t n) {
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
inline std::optional<std::uint64_t> check_value(std::string_view key, std::string_view value) {
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
inline std::string key_name(std::string_view prefix, std::uint64_t i) {
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

inline std::pair<Fill, std::size_t> pick_size(std::mt19937_64& rng, Sizes sizes) {
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

// `size` keys for one Store::get_many() and the buffers it fills: pick()
// draws random keys "<prefix>-<0..key_count-1>", get() looks them all up.
struct KeyBatch {
  explicit KeyBatch(std::size_t size)
      : keys(size), views(size), values(size), found(std::make_unique<bool[]>(size)) {}

  std::size_t size() const { return keys.size(); }
  void pick(std::mt19937_64& rng, std::string_view prefix, std::uint64_t key_count) {
    for (std::size_t j = 0; j < keys.size(); ++j) {
      keys[j] = key_name(prefix, rng() % key_count);
      views[j] = keys[j];
    }
  }
  void get(Store& store) {
    store.get_many(views, values, std::span<bool>(found.get(), keys.size()));
  }

  std::vector<std::string> keys;
  std::vector<std::string_view> views;  // into keys
  std::vector<std::string> values;
  std::unique_ptr<bool[]> found;
};

// ---------------------------------------------------------------------------
// Child processes

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
inline constexpr int kExitBadValue = 10;     // a value was not well-formed for its key
inline constexpr int kExitWrongState = 11;   // a value was well-formed but not what must be there
inline constexpr int kExitTcacheError = 12;  // tcache threw
inline constexpr int kExitException = 13;    // something else threw
inline constexpr int kExitPipe = 14;         // the test's own plumbing failed

inline int report(int code, const std::string& what) {
  std::fprintf(stderr, "[child %d] %s\n", static_cast<int>(::getpid()), what.c_str());
  return code;
}

inline std::string preview(std::string_view v) {
  std::string p(v.substr(0, 80));
  for (char& c : p) {
    if (c < 32 || c > 126) c = '?';
  }
  return "'" + p + "'" + (v.size() > 80 ? "... (" + std::to_string(v.size()) + " bytes)" : "");
}

inline int bad_value(std::string_view key, std::string_view value) {
  return report(kExitBadValue,
                "value for key '" + std::string(key) + "' is not well-formed: " + preview(value));
}

// Runs body() in a child process and returns its pid. The child never
// returns into GoogleTest: it exits with body()'s result.
inline pid_t spawn(const std::function<int()>& body) {
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

// Runs body(hold) in a child process. body calls hold() once it has what
// the test needs (a Store open, a lease taken): hold() tells the parent and
// then waits, never returning, until the child is killed. Returns the
// child's pid once it holds, or once it exited without holding (body
// returned: wait_for() then reports its exit code).
inline pid_t spawn_ready(const std::function<int(const std::function<void()>& hold)>& body) {
  int ready[2];
  if (::pipe(ready) != 0) {
    ADD_FAILURE() << "pipe: " << std::strerror(errno);
    return -1;
  }
  const pid_t pid = spawn([&] {
    ::close(ready[0]);
    return body([&] {
      const char c = 'x';
      if (::write(ready[1], &c, 1) != 1) ::_exit(kExitPipe);
      for (;;) ::pause();  // until killed
    });
  });
  ::close(ready[1]);
  char c;
  while (::read(ready[0], &c, 1) < 0 && errno == EINTR) {
  }
  ::close(ready[0]);
  return pid;
}

inline std::string describe_status(int status) {
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

inline int wait_for(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      ADD_FAILURE() << "waitpid(" << pid << "): " << std::strerror(errno);
      return -1;
    }
  }
  return status;
}

inline void expect_exited_zero(const std::vector<pid_t>& pids, const std::string& who) {
  for (std::size_t i = 0; i < pids.size(); ++i) {
    if (pids[i] <= 0) continue;
    const int status = wait_for(pids[i]);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << who << " #" << i << " (pid " << pids[i] << ") " << describe_status(status);
  }
}

// Runs body() in one child process, waits for it and expects it to exit 0.
inline void expect_child_exits_zero(const std::string& who, const std::function<int()>& body) {
  expect_exited_zero({spawn(body)}, who);
}

// Runs fn(thread index) on `threads` threads; returns the first non-zero
// result (a thread's exception becomes a result too).
inline int run_threads(int threads, const std::function<int(int)>& fn) {
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

inline std::uint64_t seed_for(int a, int b = 0) {
  return mix64((static_cast<std::uint64_t>(::getpid()) << 32) ^
               (static_cast<std::uint64_t>(a) << 16) ^ static_cast<std::uint64_t>(b) ^
               ::testing::UnitTest::GetInstance()->random_seed());
}

// The invariants of a StoreStats that hold at any time.
inline void expect_consistent(const StoreStats& st) {
  EXPECT_LE(st.entries, st.index_slots);
  EXPECT_LE(st.file_bytes, st.capacity_bytes);
  EXPECT_LE(st.pages_used, st.pages_total);
  EXPECT_LE(st.bytes, st.pages_used * st.page_bytes);
  EXPECT_EQ(st.checksum_failures, 0u);
}

}  // namespace tcache::test

#endif  // TCACHE_TESTS_SUPPORT_TEST_SUPPORT_H_
