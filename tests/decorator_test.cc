// tests/decorator_test.cc: bcache, fcache, ucache and acache, and the
// configuration they read (config.h). mcache has tests/mcache_test.cc.
//
// Real files in a private directory, real forked processes for the
// cross-process single flight; calls count themselves (in anonymous shared
// memory when processes are involved) so the tests can assert how often the
// wrapped function really ran.

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "support/workers.h"
#include "tcache/decorators.h"
#include "tcache/tcache.h"

namespace {
// A result type whose encoding throws (a user codec with a bug, a value it
// cannot represent).
struct Unencodable {
  int v;
};
}  // namespace

template <>
struct tcache::Codec<Unencodable> {
  static void encode(const Unencodable&, std::string&) {
    throw std::runtime_error("Unencodable cannot be encoded");
  }
  static Unencodable decode(std::string_view& in) { return {Codec<int>::decode(in)}; }
};

namespace {

using namespace std::chrono_literals;
using tcache::Errc;
using tcache::test::error_of;
using tcache::test::message_of;
using tcache::test::Shared;

std::atomic<int> g_calls{0};

double price(const std::string& sym, int day) {
  g_calls.fetch_add(1);
  return static_cast<double>(sym.size()) * 100.0 + day;
}

struct Quote {  // an aggregate: encoded through Boost.PFR
  std::string symbol;
  std::vector<double> history;
  std::map<std::string, int> tags;
  bool operator==(const Quote&) const = default;
};

Quote quote(const std::string& sym, int n) {
  g_calls.fetch_add(1);
  Quote q{sym, {}, {{"n", n}}};
  for (int i = 0; i < n; ++i) q.history.push_back(i * 0.5);
  return q;
}

class DecoratorTest : public tcache::test::TempDirTest {
 protected:
  DecoratorTest() : TempDirTest("tcache-decorator") {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TempDirTest::SetUp());
    g_calls = 0;
    ::unsetenv("TCACHE_DISABLE");
    ::unsetenv("TCACHE_DEFAULT_TTL");
    ::unsetenv("TCACHE_BACKEND");
    ::setenv("TCACHE_DIR", (dir_ / "default").c_str(), 1);
  }
  // Captures warnings instead of printing them.
  tcache::Logger capture() {
    return [this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      log_.emplace_back(line);
    };
  }
  std::vector<std::string> log() {
    std::lock_guard lock(log_mutex_);
    return log_;
  }
  std::mutex log_mutex_;
  std::vector<std::string> log_;
};

// ---------------------------------------------------------------------------
// bcache

TEST_F(DecoratorTest, BcacheHitsMissesAndPersistence) {
  {
    auto f = tcache::bcache(price, {.name = "price", .path = file_});
    EXPECT_EQ(f("AAPL", 3), 403.0);
    EXPECT_EQ(f("AAPL", 3), 403.0);
    EXPECT_EQ(f(std::string("MSFT"), 4), 404.0);
    const tcache::CacheInfo info = f.cache_info();
    EXPECT_EQ(info.hits, 1u);
    EXPECT_EQ(info.misses, 2u);
    EXPECT_EQ(info.currsize, 2u);
    EXPECT_EQ(info.backend, "file");
    EXPECT_EQ(g_calls.load(), 2);
  }
  // Another wrapper (as another process would) finds the values.
  auto g = tcache::bcache(price, {.name = "price", .path = file_});
  EXPECT_EQ(g("AAPL", 3), 403.0);
  EXPECT_EQ(g("MSFT", 4), 404.0);
  EXPECT_EQ(g.cache_info().hits, 2u);
  EXPECT_EQ(g_calls.load(), 2);
}

TEST_F(DecoratorTest, BcacheStoresAggregatesThroughTheCodec) {
  auto f = tcache::bcache(quote, {.name = "quote", .path = file_});
  const Quote q = f("X", 5);
  EXPECT_EQ(f("X", 5), q);
  EXPECT_EQ(q.history.size(), 5u);
  EXPECT_EQ(g_calls.load(), 1);
}

TEST_F(DecoratorTest, BcacheVersionAndNameSeparateEntries) {
  auto v1 = tcache::bcache(price, {.name = "price", .version = "1", .path = file_});
  auto v2 = tcache::bcache(price, {.name = "price", .version = "2", .path = file_});
  auto other = tcache::bcache(price, {.name = "other", .path = file_});
  v1("A", 1);
  v2("A", 1);
  other("A", 1);
  EXPECT_EQ(g_calls.load(), 3);
  v1("A", 1);
  EXPECT_EQ(g_calls.load(), 3);
}

TEST_F(DecoratorTest, BcacheClearAndInvalidateTouchOnlyTheirFunction) {
  auto f = tcache::bcache(price, {.name = "f", .path = file_});
  auto g = tcache::bcache(price, {.name = "g", .path = file_});
  for (int d = 0; d < 10; ++d) {
    f("A", d);
    g("A", d);
  }
  EXPECT_TRUE(f.invalidate("A", 3));
  EXPECT_FALSE(f.invalidate("A", 3));
  EXPECT_EQ(f.cache_info().currsize, 9u);
  f.cache_clear();
  EXPECT_EQ(f.cache_info().currsize, 0u);
  EXPECT_EQ(g.cache_info().currsize, 10u);
  g_calls = 0;
  g("A", 3);
  EXPECT_EQ(g_calls.load(), 0);
  f("A", 3);
  EXPECT_EQ(g_calls.load(), 1);
}

TEST_F(DecoratorTest, BcacheDefaultPathIsPrivateUnderTheConfiguredDirectory) {
  auto f = tcache::bcache(price, {.name = "ns::price/v1"});
  f("A", 1);
  const auto dir = dir_ / "default";
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    ++files;
    EXPECT_EQ(e.path().extension(), ".tcache");
    EXPECT_EQ(e.path().filename().string().find('/'), std::string::npos);
    ASSERT_EQ(::stat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  EXPECT_EQ(files, 1);
}

TEST_F(DecoratorTest, BcacheExceptionsPropagateAndAreNotCached) {
  int calls = 0;
  auto f = tcache::bcache(
      [&](int x) -> int {
        ++calls;
        if (calls == 1) throw std::runtime_error("first call fails");
        return x * 2;
      },
      {.name = "flaky", .path = file_, .lease_timeout = 1h});
  EXPECT_THROW(f(1), std::runtime_error);
  EXPECT_EQ(f(1), 2);  // computed again at once: the failed call left no lease
  EXPECT_EQ(f(1), 2);
  EXPECT_EQ(calls, 2);
}

std::function<long(int)> g_fib;
long fib_impl(int n) { return n < 2 ? n : g_fib(n - 1) + g_fib(n - 2); }

TEST_F(DecoratorTest, BcacheRecursionThroughItsOwnWrapper) {
  auto fib = tcache::bcache(fib_impl, {.name = "fib", .path = file_});
  g_fib = fib;
  EXPECT_EQ(fib(60), 1548008755920L);
  EXPECT_EQ(fib.cache_info().misses, 61u);
  g_fib = nullptr;
}

struct Pricer {
  double base = 10;
  double price(int day) const {
    g_calls.fetch_add(1);
    return base + day;
  }
};

TEST_F(DecoratorTest, MemberFunctionWithAKeyFunction) {
  auto f = tcache::bcache(&Pricer::price, {.name = "pricer", .path = file_},
                          [](const Pricer& p, int day) { return std::pair(p.base, day); });
  Pricer p;
  EXPECT_EQ(f(p, 2), 12.0);
  EXPECT_EQ(f(p, 2), 12.0);
  Pricer q{20};
  EXPECT_EQ(f(q, 2), 22.0);
  EXPECT_EQ(g_calls.load(), 2);
}

TEST_F(DecoratorTest, FunctionObjectsAndLambdas) {
  struct Square {
    int operator()(int x) const { return x * x; }
  };
  auto f = tcache::bcache(Square{}, {.name = "square", .path = file_});
  EXPECT_EQ(f(7), 49);
  auto g = tcache::bcache([](const std::vector<int>& v) { return v.size(); },
                          {.name = "size", .path = file_});
  EXPECT_EQ(g({1, 2, 3}), 3u);
  EXPECT_EQ(g({1, 2, 3}), 3u);
  EXPECT_EQ(g.cache_info().hits, 1u);
}

TEST_F(DecoratorTest, UndecodableValuesAreCountedMisses) {
  // Same name and version, other return type: the bytes do not decode.
  auto as_string =
      tcache::bcache([](int) { return std::string("abc"); }, {.name = "changed", .path = file_});
  as_string(1);
  auto as_quote = tcache::bcache(
      [](int) {
        return Quote{"q", {1.0}, {}};
      },
      {.name = "changed", .path = file_});
  EXPECT_EQ(as_quote(1).symbol, "q");
  EXPECT_EQ(as_quote.cache_info().decode_errors, 1u);
  EXPECT_EQ(as_quote.cache_info().misses, 1u);
  EXPECT_EQ(as_quote(1).symbol, "q");  // recomputed and stored: now a hit
  EXPECT_EQ(as_quote.cache_info().hits, 1u);
}

TEST_F(DecoratorTest, BcacheTtl) {
  auto f = tcache::bcache(price, {.name = "ttl", .path = file_, .ttl = 30ms});
  const auto start = std::chrono::steady_clock::now();
  f("A", 1);
  f("A", 1);
  const int calls = g_calls.load();
  if (tcache::test::before_expiry(start, 30ms)) {  // else too slow to tell
    EXPECT_EQ(calls, 1);
  }
  std::this_thread::sleep_for(60ms);  // past the TTL
  f("A", 1);
  EXPECT_EQ(g_calls.load(), calls + 1);
}

TEST_F(DecoratorTest, DefaultTtlFromTheEnvironment) {
  ::setenv("TCACHE_DEFAULT_TTL", "30ms", 1);
  auto f = tcache::bcache(price, {.name = "envttl", .path = file_});
  f("A", 1);
  std::this_thread::sleep_for(60ms);
  f("A", 1);
  EXPECT_EQ(g_calls.load(), 2);
}

TEST_F(DecoratorTest, OptionsAreValidated) {
  EXPECT_EQ(error_of([&] { tcache::bcache(price, {.path = file_}); }), Errc::invalid_option);
  EXPECT_NE(message_of([&] { tcache::bcache(price, {.path = file_}); }).find("'name'"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { tcache::bcache(price, {.name = "n", .path = file_, .ttl = -1s}); }),
            Errc::invalid_option);
  EXPECT_EQ(
      error_of([&] { tcache::bcache(price, {.name = "n", .path = file_, .capacity_bytes = 10}); }),
      Errc::invalid_option);
  EXPECT_EQ(
      error_of([&] { tcache::bcache(price, {.name = "n", .path = file_, .lease_timeout = 0ms}); }),
      Errc::invalid_option);
  EXPECT_EQ(error_of([&] { tcache::fcache(price, {.version = "1"}); }), Errc::invalid_option);
  EXPECT_EQ(error_of([&] { tcache::ucache(price, {.name = "n", .backend = "carrier-pigeon"}); }),
            Errc::invalid_option);
  EXPECT_NE(
      message_of([&] { tcache::ucache(price, {.name = "n", .backend = "bogus"}); }).find("bogus"),
      std::string::npos);
  EXPECT_EQ(error_of([&] { tcache::ucache(price, {.backend = "file"}); }), Errc::invalid_option);
  EXPECT_EQ(error_of([&] { tcache::ucache(price, {.name = "n", .maxsize = 0}); }),
            Errc::invalid_option);
  EXPECT_EQ(error_of([&] { tcache::acache(price, {.maxsize = 0}); }), Errc::invalid_option);
  ::setenv("TCACHE_DEFAULT_TTL", "soon", 1);
  EXPECT_NE(message_of([&] {
              tcache::bcache(price, {.name = "n", .path = file_});
            }).find("TCACHE_DEFAULT_TTL"),
            std::string::npos);
}

TEST_F(DecoratorTest, BcacheRefusesAnUnsafeFile) {
  { tcache::Store::open(file_); }
  ASSERT_EQ(::chmod(file_.c_str(), 0666), 0);
  EXPECT_EQ(error_of([&] { tcache::bcache(price, {.name = "p", .path = file_}); }),
            Errc::unsafe_permissions);
}

TEST_F(DecoratorTest, DisabledByEnvironmentAndByScope) {
  ::setenv("TCACHE_DISABLE", "1", 1);
  auto f = tcache::bcache(price, {.name = "off", .path = file_});
  f("A", 1);
  f("A", 1);
  EXPECT_EQ(g_calls.load(), 2);
  EXPECT_FALSE(std::filesystem::exists(file_));  // never even opened
  ::unsetenv("TCACHE_DISABLE");

  auto g = tcache::bcache(price, {.name = "on", .path = file_});
  g("A", 1);
  {
    tcache::ScopedConfig off({.disable = true});
    g("A", 1);
    g("A", 1);
  }
  g("A", 1);
  EXPECT_EQ(g_calls.load(), 2 + 3);
  EXPECT_EQ(g.cache_info().hits, 1u);
}

TEST_F(DecoratorTest, ScopedConfigSetsDefaultsForABlockAndNests) {
  const auto a = dir_ / "a";
  const auto b = dir_ / "b";
  {
    tcache::ScopedConfig outer({.dir = a, .default_ttl = 5s});
    EXPECT_EQ(tcache::config().dir, a);
    EXPECT_EQ(tcache::config().default_ttl, 5s);
    {
      tcache::ScopedConfig inner({.dir = b});
      EXPECT_EQ(tcache::config().dir, b);
      EXPECT_EQ(tcache::config().default_ttl, 5s);
      tcache::bcache(price, {.name = "inner"})("A", 1);
    }
    EXPECT_EQ(tcache::config().dir, a);
  }
  EXPECT_EQ(tcache::config().dir, dir_ / "default");
  EXPECT_TRUE(std::filesystem::exists(b / "inner.tcache"));
  EXPECT_EQ(error_of([] { tcache::ScopedConfig bad({.default_ttl = -1s}); }), Errc::invalid_option);
}

TEST_F(DecoratorTest, AnInnerScopeThatEnablesCachingWinsOverAnOuterDisable) {
  auto made_before = tcache::bcache(price, {.name = "before", .path = file_});
  tcache::ScopedConfig off({.disable = true});
  made_before("A", 1);
  made_before("A", 1);
  EXPECT_EQ(g_calls.load(), 2);  // the outer scope disables it
  {
    tcache::ScopedConfig on({.disable = false});
    EXPECT_FALSE(tcache::config().disable);
    auto made_inside = tcache::mcache(price);
    made_inside("B", 1);
    made_inside("B", 1);
    EXPECT_EQ(g_calls.load(), 3);  // the inner one enables caching again
    made_before("A", 1);
    made_before("A", 1);
    EXPECT_EQ(g_calls.load(), 4);
  }
  made_before("A", 1);
  EXPECT_EQ(g_calls.load(), 5);  // the outer one rules again
}

TEST_F(DecoratorTest, ANamelessAcacheIgnoresTcacheBackendAndErrorsNameAcache) {
  ::setenv("TCACHE_BACKEND", "file", 1);
  auto f = tcache::acache([](int x) { return x; });  // threw naming ucache before
  EXPECT_EQ(f(2).get(), 2);
  EXPECT_EQ(f.cache_info().backend, "memory");
  auto named = tcache::acache([](int x) { return x; }, {.name = "an"});
  EXPECT_EQ(named.cache_info().backend, "tiered(file>memory)");
  ::unsetenv("TCACHE_BACKEND");
  const std::string m =
      message_of([&] { tcache::acache([](int x) { return x; }, {.path = file_}); });
  EXPECT_NE(m.find("acache"), std::string::npos) << m;
  EXPECT_EQ(m.find("ucache"), std::string::npos) << m;
}

TEST_F(DecoratorTest, DefaultTtlOutOfRangeIsRefused) {
  ::setenv("TCACHE_DEFAULT_TTL", "2562047h", 1);  // about 292 years: the longest
  EXPECT_EQ(tcache::config().default_ttl, 2562047h);
  for (const char* text : {"2562048h", "5124095576031h", "3000000000000h", "9223372036854776ms",
                           "99999999999999999999999999"}) {
    ::setenv("TCACHE_DEFAULT_TTL", text, 1);
    const std::string m = message_of([] { tcache::config(); });
    EXPECT_NE(m.find("out of range"), std::string::npos) << text << ": " << m;
    EXPECT_EQ(error_of([] { tcache::config(); }), Errc::invalid_option) << text;
  }
}

TEST_F(DecoratorTest, EnvironmentParsing) {
  ::setenv("TCACHE_DEFAULT_TTL", "90", 1);
  EXPECT_EQ(tcache::config().default_ttl, 90s);
  ::setenv("TCACHE_DEFAULT_TTL", "1500ms", 1);
  EXPECT_EQ(tcache::config().default_ttl, 1500ms);
  ::setenv("TCACHE_DEFAULT_TTL", "2h", 1);
  EXPECT_EQ(tcache::config().default_ttl, 2h);
  ::setenv("TCACHE_DEFAULT_TTL", "-5", 1);
  EXPECT_EQ(error_of([] { tcache::config(); }), Errc::invalid_option);
  ::unsetenv("TCACHE_DEFAULT_TTL");
  ::setenv("TCACHE_DISABLE", "maybe", 1);
  EXPECT_EQ(error_of([] { tcache::config(); }), Errc::invalid_option);
  ::setenv("TCACHE_DISABLE", "true", 1);
  EXPECT_TRUE(tcache::config().disable);
  ::unsetenv("TCACHE_DISABLE");
  ::unsetenv("TCACHE_DIR");
  ::setenv("XDG_CACHE_HOME", (dir_ / "xdg").c_str(), 1);
  EXPECT_EQ(tcache::config().dir, dir_ / "xdg" / "tcache");
  ::unsetenv("XDG_CACHE_HOME");
  ::setenv("HOME", dir_.c_str(), 1);
  EXPECT_EQ(tcache::config().dir, dir_ / ".cache" / "tcache");
}

// ---------------------------------------------------------------------------
// Single flight across processes and threads

TEST_F(DecoratorTest, ForkedProcessesComputeEachArgumentOnce) {
  struct Counts {
    std::atomic<int> calls[16];
  };
  Shared<Counts> counts;
  constexpr int kProcs = 4;
  constexpr int kArgs = 16;
  tcache::test::run_workers(kProcs, 1, {}, [&](const tcache::test::Worker& me) {
    const int p = me.process;
    auto slow = tcache::bcache(
        [&](int x) {
          counts->calls[x].fetch_add(1);
          std::this_thread::sleep_for(3ms);  // slow, so that processes overlap
          return x * 10;
        },
        {.name = "slow", .path = file_});
    for (int i = 0; i < 3 * kArgs; ++i) {
      const int x = (i * 5 + p) % kArgs;
      if (slow(x) != x * 10) return tcache::test::report(1, "wrong value");
    }
    return 0;
  }).wait();
  for (int x = 0; x < kArgs; ++x) EXPECT_EQ(counts->calls[x].load(), 1) << "argument " << x;
}

TEST_F(DecoratorTest, AKilledComputationIsTakenOverByTheNextCaller) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t stuck = tcache::test::spawn([&] {
    auto f = tcache::bcache(
        [&](int) {
          const char c = 'x';
          if (::write(ready[1], &c, 1) != 1) return -1;
          ::pause();  // computing forever, until killed
          return 0;
        },
        {.name = "stuck", .path = file_, .lease_timeout = 1h});
    f(1);
    return 0;
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  ::kill(stuck, SIGKILL);
  tcache::test::wait_for(stuck);
  auto f = tcache::bcache([](int x) { return x + 1; },
                          {.name = "stuck", .path = file_, .lease_timeout = 1h});
  EXPECT_EQ(f(1), 2);  // not an hour's wait
}

TEST_F(DecoratorTest, ThreadsComputeEachArgumentOnce) {
  std::atomic<int> calls{0};
  auto f = tcache::bcache(
      [&](int x) {
        calls.fetch_add(1);
        std::this_thread::sleep_for(2ms);
        return x;
      },
      {.name = "threads", .path = file_});
  EXPECT_EQ(tcache::test::run_threads(6,
                                      [&](int t) {
                                        for (int i = 0; i < 20; ++i) {
                                          if (f((i + t) % 10) != (i + t) % 10) return 1;
                                        }
                                        return 0;
                                      }),
            0);
  EXPECT_EQ(calls.load(), 10);
}

// ---------------------------------------------------------------------------
// fcache

std::vector<double> matrix(int n) {
  g_calls.fetch_add(1);
  std::vector<double> m(static_cast<std::size_t>(n) * n);
  for (std::size_t i = 0; i < m.size(); ++i) m[i] = static_cast<double>(i % 97);
  return m;
}

TEST_F(DecoratorTest, FcacheLargeValuesCompressed) {
  for (auto [compress, method] :
       {std::pair(true, tcache::Compression::lz4), std::pair(true, tcache::Compression::lz4hc),
        std::pair(false, tcache::Compression::lz4)}) {
    g_calls = 0;
    const std::string name =
        "matrix-" + std::to_string(compress) + std::to_string(static_cast<int>(method));
    auto f = tcache::fcache(matrix, {.name = name, .compress = compress, .compression = method});
    const auto m = f(1000);  // 8 MB
    EXPECT_EQ(f(1000), m);
    EXPECT_EQ(g_calls.load(), 1);
    EXPECT_EQ(f.cache_info().hits, 1u);
    const auto file = dir_ / "default" / (name + ".fcache");
    ASSERT_TRUE(std::filesystem::exists(file));
    const auto st = tcache::Store::open(file).stats();
    if (compress) {
      EXPECT_LT(st.blob_bytes + st.bytes, m.size() * sizeof(double) / 4);  // it compresses well
    } else {
      EXPECT_GE(st.blob_bytes, m.size() * sizeof(double));
    }
  }
}

TEST_F(DecoratorTest, FcacheTreatsABadFrameAsADecodeError) {
  auto f = tcache::fcache(matrix, {.name = "m", .path = file_});
  f(10);
  // A different return type under the same name: a decode error, recomputed.
  auto g =
      tcache::fcache([](int) { return std::string("now a string"); }, {.name = "m", .path = file_});
  EXPECT_EQ(g(10), "now a string");
  EXPECT_EQ(g.cache_info().decode_errors, 1u);
  // Frames themselves are checked before LZ4 sees them.
  const std::uint64_t fp = tcache::type_fingerprint<std::vector<double>>();
  auto frame = [fp](char version, char method, std::string_view rest) {
    std::string f{version, method};
    f.append(reinterpret_cast<const char*>(&fp), 8);
    f += rest;
    return f;
  };
  auto u64 = [](std::uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); };
  std::string out;
  for (const std::string& bad :
       {frame(1, 1, u64(0x7fffffff) + "xyz"),  // longer than LZ4 can expand "xyz"
        frame(1, 9, u64(1) + "x"),             // unknown method
        frame(2, 0, ""),                       // unknown frame version
        frame(1, 1, "abc"),                    // no length
        std::string("\x01", 1)}) {
    EXPECT_EQ(error_of([&] { tcache::detail::open_value_frame(bad, fp, out); }),
              Errc::decode_error);
  }
  // Lengths are 64-bit: one past 4 GiB never wraps to a small length that
  // would decompress (a value over 4 GiB was recomputed forever with u32).
  const std::string raw(4096, 'a');
  std::string packed;
  tcache::detail::pack_value(1, fp, raw, packed);
  ASSERT_EQ(packed[1], 1);  // compressed
  EXPECT_EQ(tcache::detail::open_value_frame(packed, fp, out), raw);
  const std::uint64_t wrapped = (std::uint64_t{1} << 32) + raw.size();
  std::memcpy(packed.data() + tcache::detail::kValueFrameHeader, &wrapped, 8);
  EXPECT_EQ(error_of([&] { tcache::detail::open_value_frame(packed, fp, out); }),
            Errc::decode_error);
  EXPECT_EQ(error_of([&] { tcache::detail::open_value_frame(packed, fp + 1, out); }),
            Errc::decode_error);  // another type's fingerprint
}

// ---------------------------------------------------------------------------
// ucache

TEST_F(DecoratorTest, UcacheDefaultsToTheFileStore) {
  auto f = tcache::ucache(price, {.name = "u"});
  f("A", 1);
  f("A", 1);
  EXPECT_EQ(g_calls.load(), 1);
  EXPECT_EQ(f.cache_info().backend, "tiered(file>memory)");
  EXPECT_TRUE(std::filesystem::exists(dir_ / "default" / "u.tcache"));
}

TEST_F(DecoratorTest, UcacheBackendChoices) {
  auto m = tcache::ucache(price, {.backend = "memory:"});
  m("A", 1);
  m("A", 1);
  EXPECT_EQ(m.cache_info().backend, "memory");
  EXPECT_EQ(g_calls.load(), 1);

  const auto uri_file = dir_ / "uri.tcache";
  auto u = tcache::ucache(price, {.name = "u", .backend = "file://" + uri_file.string()});
  u("A", 2);
  EXPECT_TRUE(std::filesystem::exists(uri_file));

  ::setenv("TCACHE_BACKEND", "memory", 1);
  auto e = tcache::ucache(price, {.name = "env"});
  EXPECT_EQ(e.cache_info().backend, "memory");
}

TEST_F(DecoratorTest, UcacheFallsBackWhenTheDirectoryCannotBeCreated) {
  std::ofstream(dir_ / "not-a-dir") << "x";
  tcache::ScopedConfig scope({.dir = dir_ / "not-a-dir" / "cache"});
  auto f = tcache::ucache(price, {.name = "u", .logger = capture()});
  EXPECT_EQ(f("A", 1), 101.0);
  EXPECT_EQ(f("A", 1), 101.0);
  EXPECT_EQ(g_calls.load(), 1);  // memory caches it
  const auto info = f.cache_info();
  EXPECT_EQ(info.backend, "memory");
  EXPECT_EQ(info.fallbacks, 1u);
  ASSERT_EQ(log().size(), 1u);
  EXPECT_NE(log()[0].find("falling back to memory"), std::string::npos);
  EXPECT_NE(log()[0].find("io_error"), std::string::npos);
}

TEST_F(DecoratorTest, UcacheFallsBackFromAnUnsafeDirectory) {
  const auto loose = dir_ / "loose";
  std::filesystem::create_directory(loose);
  ASSERT_EQ(::chmod(loose.c_str(), 0777), 0);
  tcache::ScopedConfig scope({.dir = loose});
  auto f = tcache::ucache(price, {.name = "u", .logger = capture()});
  EXPECT_EQ(f("A", 1), 101.0);
  EXPECT_EQ(f.cache_info().backend, "memory");
  ASSERT_EQ(log().size(), 1u);
  EXPECT_NE(log()[0].find("unsafe_permissions"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(loose / "u.tcache"));
}

TEST_F(DecoratorTest, UcacheFallsBackFromACorruptFile) {
  std::ofstream(file_) << std::string(8192, 'j');
  ::chmod(file_.c_str(), 0600);
  auto f = tcache::ucache(price, {.name = "u", .path = file_, .logger = capture()});
  EXPECT_EQ(f("A", 1), 101.0);
  EXPECT_EQ(f.cache_info().backend, "memory");
  ASSERT_EQ(log().size(), 1u);
  EXPECT_NE(log()[0].find("not_a_cache_file"), std::string::npos);
  EXPECT_EQ(std::filesystem::file_size(file_), 8192u);  // the user's file is left alone
}

TEST_F(DecoratorTest, UcacheKeepsValuesTooLargeForTheFileInMemory) {
  auto f = tcache::ucache(
      [](int n) { return std::string(static_cast<std::size_t>(n), 'v'); },
      {.name = "big", .path = file_, .capacity_bytes = 1 << 20, .logger = capture()});
  EXPECT_EQ(f(2 << 20).size(), 2u << 20);  // over the file's whole capacity
  EXPECT_EQ(f(2 << 20).size(), 2u << 20);
  EXPECT_EQ(f.cache_info().hits, 1u);  // from the memory tier
  EXPECT_EQ(f(10), "vvvvvvvvvv");      // small values still go to the file
  EXPECT_EQ(f.cache_info().backend, "tiered(file>memory)");
  ASSERT_EQ(log().size(), 1u);  // once per cause
  EXPECT_NE(log()[0].find("value_too_large"), std::string::npos);
}

TEST_F(DecoratorTest, UcacheLargeValueHintUsesACompressedFile) {
  auto f = tcache::ucache(matrix, {.name = "lm", .value_bytes = 1 << 20});
  const auto m = f(300);
  EXPECT_EQ(f(300), m);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "default" / "lm.fcache"));
}

TEST_F(DecoratorTest, TieredBackendAbandonsATierThatFailsAtRunTime) {
  { tcache::Store::open(file_); }
  tcache::StoreOptions ro;
  ro.read_only = true;  // every write to this tier fails with read_only
  auto tiered = tcache::make_tiered_backend(
      {tcache::make_file_backend(file_, ro), tcache::make_memory_backend(100)}, capture());
  EXPECT_EQ(tiered->name(), "tiered(file>memory)");
  std::string v;
  EXPECT_FALSE(tiered->get_or_lease("k", v, 1h));
  tiered->put("k", "v", {});
  EXPECT_EQ(tiered->name(), "tiered(memory)");
  EXPECT_EQ(tiered->fallbacks(), 1u);
  ASSERT_TRUE(tiered->get("k", v));
  EXPECT_EQ(v, "v");
  tiered->put("k2", "v2", {});
  ASSERT_EQ(log().size(), 1u);
  EXPECT_NE(log()[0].find("read_only"), std::string::npos);
  EXPECT_NE(log()[0].find("from now on"), std::string::npos);
  EXPECT_EQ(error_of([] { tcache::make_tiered_backend({}); }), Errc::invalid_option);
}

// ---------------------------------------------------------------------------
// acache

TEST_F(DecoratorTest, AcacheReturnsFuturesAndCoalescesConcurrentCalls) {
  std::promise<void> gate;
  std::shared_future<void> open_gate = gate.get_future().share();
  std::atomic<int> calls{0};
  auto f = tcache::acache([&](int x) {
    calls.fetch_add(1);
    open_gate.wait();
    return x * 3;
  });
  std::vector<std::shared_future<int>> futures;
  for (int i = 0; i < 10; ++i) futures.push_back(f(7));
  gate.set_value();
  for (auto& fu : futures) EXPECT_EQ(fu.get(), 21);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(f(7).get(), 21);  // now a hit in the backend
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(f.cache_info().backend, "memory");
  EXPECT_EQ(f.cache_info().hits + f.cache_info().misses, 11u);
}

TEST_F(DecoratorTest, AcacheExceptionsReachTheFutureAndAreNotCached) {
  std::atomic<int> calls{0};
  auto f = tcache::acache([&](int x) -> int {
    if (calls.fetch_add(1) == 0) throw std::invalid_argument("first");
    return x;
  });
  EXPECT_THROW(f(1).get(), std::invalid_argument);
  EXPECT_EQ(f(1).get(), 1);
  EXPECT_EQ(calls.load(), 2);
}

std::function<std::shared_future<long>(int)> g_afib;
long afib_impl(int n) { return n < 2 ? n : g_afib(n - 1).get() + g_afib(n - 2).get(); }

TEST_F(DecoratorTest, AcacheRecursionDeeperThanThePool) {
  auto fib = tcache::acache(afib_impl);
  g_afib = fib;
  EXPECT_EQ(fib(40).get(), 102334155L);
  g_afib = nullptr;
}

TEST_F(DecoratorTest, AcacheUsesTheGivenExecutorAndPersistsWithAPath) {
  std::atomic<int> submitted{0};
  auto f = tcache::acache(
      price, {.name = "ap", .path = file_, .executor = [&](std::function<void()> task) {
                submitted.fetch_add(1);
                std::thread(std::move(task)).detach();
              }});
  EXPECT_EQ(f("A", 1).get(), 101.0);
  EXPECT_EQ(submitted.load(), 1);
  auto g = tcache::bcache(price, {.name = "ap", .path = file_});
  g("A", 1);
  EXPECT_EQ(g_calls.load(), 1);  // acache's value is in the file
}

// ---------------------------------------------------------------------------
// Arguments, values and leases at the edges (issue 12)

std::string quote_of(std::string_view sym) { return std::string(sym) + "-quote"; }

// A user executor that keeps tasks until the test runs them.
struct HeldTasks {
  std::vector<std::function<void()>> tasks;
  std::function<void(std::function<void()>)> executor() {
    return [this](std::function<void()> t) { tasks.push_back(std::move(t)); };
  }
  void run_all() {
    auto ts = std::move(tasks);
    tasks.clear();
    for (auto& t : ts) t();
  }
};

TEST_F(DecoratorTest, AcacheTasksOwnTheirViewArguments) {
  HeldTasks held;
  auto by_view =
      tcache::acache([](std::string_view s) { return quote_of(s); }, {.executor = held.executor()});
  auto by_pointer =
      tcache::acache([](const char* s) { return quote_of(s); }, {.executor = held.executor()});
  auto buffer = std::make_unique<std::string>("AAPL");
  auto a = by_view(std::string_view(*buffer));
  auto b = by_pointer(buffer->c_str());
  *buffer = "MSFT";  // the caller reuses its buffer before the tasks run
  held.run_all();
  EXPECT_EQ(a.get(), "AAPL-quote");
  EXPECT_EQ(b.get(), "AAPL-quote");
  buffer = std::make_unique<std::string>("GOOG");
  auto c = by_view(std::string_view(*buffer));
  buffer.reset();  // and frees it (ASan: a use after free on the old code)
  held.run_all();
  EXPECT_EQ(c.get(), "GOOG-quote");
}

int length_or_minus_one(const char* s) {
  g_calls.fetch_add(1);
  return s == nullptr ? -1 : static_cast<int>(std::strlen(s));
}

TEST_F(DecoratorTest, ANullCharPointerIsAKeyOfItsOwn) {
  auto b = tcache::bcache(length_or_minus_one, {.name = "len", .path = file_});
  auto u = tcache::ucache(length_or_minus_one, {.name = "ulen"});
  auto a = tcache::acache(length_or_minus_one);
  auto m = tcache::mcache(length_or_minus_one);
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(b(nullptr), -1);
    EXPECT_EQ(b(""), 0);
    EXPECT_EQ(u(nullptr), -1);
    EXPECT_EQ(u(""), 0);
    EXPECT_EQ(a(nullptr).get(), -1);
    EXPECT_EQ(a("").get(), 0);
    EXPECT_EQ(m(nullptr), -1);
    EXPECT_EQ(m(""), 0);
  }
  EXPECT_EQ(g_calls.load(), 8);  // each wrapper computed each argument once
  EXPECT_TRUE(b.invalidate(nullptr));
  EXPECT_FALSE(b.invalidate(nullptr));
}

TEST_F(DecoratorTest, AChangedResultTypeIsACountedMissNotGarbage) {
  auto as_double = tcache::bcache([](int) { return 2.5; }, {.name = "t", .path = file_});
  EXPECT_EQ(as_double(1), 2.5);
  auto as_int64 = tcache::bcache([](int) { return std::int64_t{7}; }, {.name = "t", .path = file_});
  EXPECT_EQ(as_int64(1), 7);
  EXPECT_EQ(as_int64.cache_info().decode_errors, 1u);
  EXPECT_EQ(as_int64(1), 7);  // now stored as an int64
  EXPECT_EQ(as_int64.cache_info().hits, 1u);

  auto as_int = tcache::bcache([](int) { return -1; }, {.name = "s", .path = file_});
  EXPECT_EQ(as_int(1), -1);
  auto as_unsigned = tcache::bcache([](int) { return 7u; }, {.name = "s", .path = file_});
  EXPECT_EQ(as_unsigned(1), 7u);
  EXPECT_EQ(as_unsigned.cache_info().decode_errors, 1u);
}

TEST_F(DecoratorTest, HostileStoredBytesAreACountedMiss) {
  // A string of 1 MiB under the name: read as a vector of optional 64 KiB
  // arrays, its length claims a million elements (64 GiB in memory).
  auto writer = tcache::bcache([](int) { return std::string(1 << 20, '\x01'); },
                               {.name = "h", .path = file_, .capacity_bytes = 64ull << 20});
  writer(1);
  using Big = std::vector<std::optional<std::array<char, 65536>>>;
  auto reader = tcache::bcache([](int) { return Big(2); },
                               {.name = "h", .path = file_, .capacity_bytes = 64ull << 20});
  EXPECT_EQ(reader(1).size(), 2u);
  EXPECT_EQ(reader.cache_info().decode_errors, 1u);
}

TEST_F(DecoratorTest, AResultThatCannotBeEncodedReleasesTheLease) {
  std::atomic<int> calls{0};
  auto f = tcache::bcache(
      [&](int x) {
        calls.fetch_add(1);
        return Unencodable{x};
      },
      {.name = "u", .path = file_, .lease_timeout = 1h, .logger = capture()});
  EXPECT_EQ(f(3).v, 3);  // returned all the same, not cached
  ASSERT_EQ(log().size(), 1u);
  EXPECT_NE(log()[0].find("could not encode"), std::string::npos) << log()[0];
  // No lease is left behind in the file (the next caller would wait an hour).
  EXPECT_EQ(tcache::Store::open(file_).stats().entries, 0u);
  EXPECT_EQ(f(3).v, 3);
  EXPECT_EQ(calls.load(), 2);
}

TEST_F(DecoratorTest, AcacheTaskDroppedByTheExecutorFailsItsFutureAndIsRecomputed) {
  std::atomic<bool> drop{true};
  auto f =
      tcache::acache([](int x) { return x * 2; }, {.executor = [&](std::function<void()> task) {
                       if (!drop.load()) task();  // else dropped unrun
                     }});
  auto lost = f(4);
  try {
    lost.get();
    ADD_FAILURE() << "a dropped task's future has a value";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), Errc::unavailable);
    EXPECT_NE(std::string(e.what()).find("executor"), std::string::npos) << e.what();
  }
  drop = false;
  EXPECT_EQ(f(4).get(), 8);  // not the broken future again
}

// A bounded user executor: one worker thread.
class OneThreadExecutor {
 public:
  OneThreadExecutor() : worker_([this] { run(); }) {}
  ~OneThreadExecutor() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_one();
    worker_.join();
  }
  void submit(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.erase(tasks_.begin());
      }
      task();
    }
  }
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<std::function<void()>> tasks_;
  bool stop_ = false;
  std::thread worker_;
};

TEST_F(DecoratorTest, AcacheRecursionWithAOneThreadExecutor) {
  OneThreadExecutor pool;
  auto fib = tcache::acache(
      afib_impl, {.executor = [&](std::function<void()> t) { pool.submit(std::move(t)); }});
  g_afib = fib;
  EXPECT_EQ(fib(30).get(), 832040L);  // deadlocked on the old code
  g_afib = nullptr;
}

TEST_F(DecoratorTest, AcacheInAForkedChildComputesWhatItsParentHasInFlight) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads in the child of a multi-threaded fork";
#endif
  std::promise<void> gate;
  std::shared_future<void> open_gate = gate.get_future().share();
  const pid_t parent = ::getpid();
  std::atomic<bool> started{false};
  auto f = tcache::acache([&](int x) {
    if (::getpid() == parent) {
      started = true;
      started.notify_all();
      open_gate.wait();  // in flight in the parent while the child runs
    }
    return x + 1;
  });
  auto in_parent = f(1);
  started.wait(false);
  tcache::test::expect_child_exits_zero("child", [&] {
    return f(1).get() == 2 ? 0 : 1;  // never ready on the old code
  });
  gate.set_value();
  EXPECT_EQ(in_parent.get(), 2);
}

}  // namespace
