// tests/redis_test.cc: the Redis tier (make_redis_backend, ucache with a
// redis:// backend, bcache's two levels) against real redis-server
// processes that each test starts on a free loopback port, without
// persistence, and stops by its pid (tests/support/redis_server.h). Nothing
// is mocked: faults are real (kill -9 and a restart on the same port,
// SIGSTOP), and so are other machines, played by wrappers with their own
// local files or by forked processes. Calls count themselves (in shared
// memory across processes) so that tests can assert how often the wrapped
// function really ran. No test asserts a timing; waiting is for a TTL to
// pass or a backoff to end (eventually()), never to win a race.

#include <sched.h>
#include <sys/mount.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include <gtest/gtest.h>

#include "support/redis_server.h"
#include "support/test_support.h"
#include "support/workers.h"
#include "tcache/decorators.h"
#include "tcache/tcache.h"

namespace {

using namespace std::chrono_literals;
using tcache::Errc;
using tcache::test::error_of;
using tcache::test::hex;
using tcache::test::message_of;
using tcache::test::RawRedis;
using tcache::test::RedisServer;
using tcache::test::Shared;
using tcache::test::TcpProxy;

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// Runs call() on a thread of its own and waits for it to return. One that
// has not returned after a minute hangs: the test fails, and unstick() (which
// must make it return, e.g. by closing the proxy it waits on) lets the
// thread be joined. Not a timing assertion: a call of any speed passes, as
// long as it returns at all.
template <class Call, class Unstick>
void expect_returns(const std::string& what, Call&& call, Unstick&& unstick) {
  std::promise<void> done;
  std::future<void> returned = done.get_future();
  std::thread t([&] {
    call();
    done.set_value();
  });
  if (returned.wait_for(60s) != std::future_status::ready) {
    ADD_FAILURE() << what << " has not returned after a minute: it hangs";
    unstick();
  }
  t.join();
}

// The tcache::Error that fn() throws, as code and message (a test failure
// if it throws none).
template <class Fn>
std::pair<Errc, std::string> thrown_by(Fn&& fn) {
  try {
    fn();
  } catch (const tcache::Error& e) {
    return {e.code(), e.what()};
  }
  ADD_FAILURE() << "no tcache::Error thrown";
  return {Errc{}, ""};
}

struct Quote {  // an aggregate: encoded through Boost.PFR
  std::string symbol;
  std::vector<double> history;
  std::map<std::string, int> tags;
  bool operator==(const Quote&) const = default;
};

enum class Side : std::uint8_t { buy = 1, sell = 2 };

class RedisTest : public tcache::test::TempDirTest {
 protected:
  RedisTest() : TempDirTest("tcache-redis") {}

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TempDirTest::SetUp());
    ::unsetenv("TCACHE_DISABLE");
    ::unsetenv("TCACHE_DEFAULT_TTL");
    ::unsetenv("TCACHE_BACKEND");
    ::setenv("TCACHE_DIR", (dir_ / "default").c_str(), 1);
    if (tcache::test::find_redis_server().empty()) GTEST_FAIL() << tcache::test::kNoRedisServer;
    try {
      server_ = std::make_unique<RedisServer>(dir_, server_options());
    } catch (const std::exception& e) {
      GTEST_FAIL() << e.what();
    }
  }
  void TearDown() override {
    server_.reset();
    TempDirTest::TearDown();
  }
  virtual RedisServer::Options server_options() const { return {.unix_socket = true}; }

  // Captures warnings instead of printing them.
  tcache::Logger capture() {
    return [this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      log_.emplace_back(line);
    };
  }
  int log_lines_with(std::string_view part) {
    std::lock_guard lock(log_mutex_);
    return static_cast<int>(
        std::count_if(log_.begin(), log_.end(), [&](const auto& l) { return contains(l, part); }));
  }
  std::string log_text() {
    std::lock_guard lock(log_mutex_);
    std::string all;
    for (const auto& l : log_) all += l + "\n";
    return all;
  }

  // Polls `done` every 20 ms until it holds or a minute passes: for waiting
  // out a TTL or a reconnection backoff.
  template <class Fn>
  static bool eventually(Fn&& done) {
    const auto limit = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < limit) {
      if (done()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  std::vector<std::string> keys(const std::string& pattern) { return server_->raw().keys(pattern); }

  std::unique_ptr<RedisServer> server_;
  std::mutex log_mutex_;
  std::vector<std::string> log_;
};

// ---------------------------------------------------------------------------
// Round trips

class RoundTrip : public RedisTest {
 protected:
  // `value` through ucache (redis > file > memory), then through a second
  // ucache with its own file (another machine), then through bcache's two
  // levels: the function runs once, and every wrapper returns `value`.
  template <class T>
  void check(const std::string& name, const T& value) {
    SCOPED_TRACE(name);
    int calls = 0;
    const auto fn = [&](int) {
      ++calls;
      return value;
    };
    auto f = tcache::ucache(fn, {.name = name,
                                 .backend = server_->uri(),
                                 .path = dir_ / (name + "-a.tcache"),
                                 .logger = capture()});
    EXPECT_EQ(f(1), value);
    EXPECT_EQ(f(1), value);
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(f.cache_info().backend, "tiered(redis>file>memory)");
    auto g = tcache::ucache(fn, {.name = name,
                                 .backend = server_->uri(),
                                 .path = dir_ / (name + "-b.tcache"),
                                 .logger = capture()});
    EXPECT_EQ(g(1), value);
    auto h = tcache::bcache(fn, {.name = name,
                                 .path = dir_ / (name + "-c.tcache"),
                                 .remote = server_->uri(),
                                 .logger = capture()});
    EXPECT_EQ(h(1), value);
    EXPECT_EQ(h(1), value);  // now from h's own file
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(keys("tcache:{" + name + "}:*").size(), 1u);
    EXPECT_EQ(f.cache_info().backend_errors + h.cache_info().backend_errors, 0u);
  }
};

TEST_F(RoundTrip, EveryCodecTypeThroughUcacheAndTwoLevelBcache) {
  check("int", 42);
  check("negative", -7LL);
  check("double", 3.25);
  check("bool", true);
  check("char", 'x');
  check("enum", Side::sell);
  check("empty_string", std::string());
  check("binary_string", std::string("a\0b\r\n$3\r\n\xff", 11));  // RESP-like bytes, NULs
  check("long_text", std::string(200'000, 'q') + "end");          // LZ4 in the value header
  check("vector", std::vector<double>{1.5, -2.0, 1e300});
  check("strings", std::vector<std::string>{"a", "", "ccc"});
  check("array", std::array<int, 3>{1, 2, 3});
  check("pair", std::pair<std::string, int>("p", 2));
  check("tuple", std::tuple<int, std::string, bool>(1, "t", false));
  check("optional_empty", std::optional<int>());
  check("optional", std::optional<std::string>("here"));
  check("variant", std::variant<int, std::string>(std::string("alt")));
  check("map", std::map<std::string, int>{{"a", 1}, {"b", 2}});
  check("set", std::set<int>{3, 1, 2});
  check("unordered", std::unordered_map<int, std::string>{{1, "x"}, {2, "y"}});
  check("duration", std::chrono::milliseconds(1500));
  check("aggregate", Quote{"AAPL", {1.0, 2.5}, {{"n", 2}}});
}

// ---------------------------------------------------------------------------
// The public backend: value header, prefixes, leases

TEST_F(RedisTest, ValuesCarryAHeaderAndAChecksumSoForeignOrDamagedOnesAreMisses) {
  tcache::RedisOptions o;
  o.key_prefix = "t:";
  auto b = tcache::make_redis_backend(server_->uri(), o);
  EXPECT_EQ(b->name(), "redis");
  RawRedis raw = server_->raw();
  std::string v;

  b->put("k1", "small", 0ms);
  const std::string k1 = "t:" + hex("k1");
  const auto stored = raw.string({"GET", k1});
  ASSERT_TRUE(stored.has_value());
  ASSERT_EQ(stored->size(), 20u + 5u);
  EXPECT_EQ(stored->substr(0, 4), std::string("tcR\x01", 4));
  EXPECT_EQ((*stored)[4], 0);  // not compressed
  ASSERT_TRUE(b->get("k1", v));
  EXPECT_EQ(v, "small");

  const std::string big = std::string(100'000, 'z') + "tail";
  b->put("k2", big, 0ms);
  const auto packed = raw.string({"GET", "t:" + hex("k2")});
  ASSERT_TRUE(packed.has_value());
  EXPECT_EQ((*packed)[4], 1);  // LZ4
  EXPECT_LT(packed->size(), big.size() / 10);
  ASSERT_TRUE(b->get("k2", v));
  EXPECT_EQ(v, big);

  // A flipped byte, a value another program wrote, another type: misses.
  raw.command({"SETRANGE", k1, "22", "Z"});
  EXPECT_FALSE(b->get("k1", v));
  raw.command({"SET", k1, "hello, not tcache's"});
  EXPECT_FALSE(b->get("k1", v));
  raw.command({"DEL", k1});
  raw.command({"LPUSH", k1, "a list"});
  EXPECT_FALSE(b->get("k1", v));
  EXPECT_FALSE(b->get_or_lease("k1", v, 1s));  // computes; put replaces it
  b->put("k1", "again", 0ms);
  ASSERT_TRUE(b->get("k1", v));
  EXPECT_EQ(v, "again");
  // The same bytes under another key fail the key-bound checksum.
  raw.command({"SET", "t:" + hex("k3"), *stored});
  EXPECT_FALSE(b->get("k3", v));
}

TEST_F(RedisTest, PrefixesLeasesAndForeignKeys) {
  tcache::RedisOptions o;
  o.key_prefix = "app:";
  auto b = tcache::make_redis_backend(server_->uri(), o);
  RawRedis raw = server_->raw();
  b->put(std::string("a\0\x01", 3), "1", 0ms);  // binary keys
  b->put("a2", "2", 0ms);
  b->put("b1", "3", 0ms);
  std::string v;
  ASSERT_FALSE(b->get_or_lease("a3", v, 10s));  // a lease key, not an entry
  raw.command({"SET", "app:zz-not-hex", "x"});
  raw.command({"SET", "other:1", "x"});
  EXPECT_EQ(b->count_prefix("a"), 2u);
  EXPECT_EQ(b->count_prefix(""), 3u);
  EXPECT_EQ(b->erase_prefix("a"), 2u);
  EXPECT_EQ(b->count_prefix(""), 1u);
  ASSERT_TRUE(b->get("b1", v));
  EXPECT_EQ(raw.integer({"EXISTS", "app:" + hex("a3") + ":lease"}), 1);
  b->release_lease("a3");
  EXPECT_EQ(raw.integer({"EXISTS", "app:" + hex("a3") + ":lease"}), 0);
  EXPECT_TRUE(b->erase("b1"));
  EXPECT_FALSE(b->erase("b1"));
  EXPECT_EQ(raw.integer({"EXISTS", "app:zz-not-hex"}), 1);
  EXPECT_EQ(raw.integer({"EXISTS", "other:1"}), 1);
}

TEST_F(RedisTest, ALeaseHeldByAnotherCallerMakesGetOrLeaseWaitForItsValue) {
  auto holder = tcache::make_redis_backend(server_->uri());
  auto waiter = tcache::make_redis_backend(server_->uri());
  std::string v;
  ASSERT_FALSE(holder->get_or_lease("k", v, 1h));
  std::atomic<bool> got{false};
  std::thread t([&] {
    std::string w;
    got = waiter->get_or_lease("k", w, 1h) && w == "computed";
  });
  holder->put("k", "computed", 0ms);  // ends the lease, in the same round trip
  t.join();
  EXPECT_TRUE(got.load());
  EXPECT_TRUE(server_->raw().keys("tcache:*:lease").empty());
}

// ---------------------------------------------------------------------------
// Decorators

TEST_F(RedisTest, TtlBecomesPxAndExpires) {
  int calls = 0;
  auto f = tcache::ucache(
      [&](int x) {
        ++calls;
        return x;
      },
      {.name = "ttl", .backend = server_->uri(), .path = file_, .ttl = 300ms});
  const auto start = std::chrono::steady_clock::now();
  f(1);
  f(1);
  const int calls_then = calls;
  const auto k = keys("tcache:{ttl}:*");
  RawRedis raw = server_->raw();
  const long long pttl = k.size() == 1 ? raw.integer({"PTTL", k[0]}) : -2;
  if (tcache::test::before_expiry(start, 300ms)) {  // else too slow to tell
    EXPECT_EQ(calls_then, 1);
    ASSERT_EQ(k.size(), 1u);
    EXPECT_GT(pttl, 0);
    EXPECT_LE(pttl, 300);
  }
  EXPECT_TRUE(eventually([&] { return keys("tcache:{ttl}:*").empty(); }));
  f(1);
  EXPECT_EQ(calls, calls_then + 1);
}

TEST_F(RedisTest, NamesAndVersionsAreSeparateNamespaces) {
  int calls = 0;
  const auto fn = [&](int x) {
    ++calls;
    return x;
  };
  const auto make = [&](std::string name, std::string version) {
    return tcache::ucache(fn, {.name = std::move(name),
                               .version = std::move(version),
                               .backend = server_->uri(),
                               .path = file_});
  };
  auto a = make("a", "");
  auto b = make("b", "");
  auto a2 = make("a", "2");
  auto odd = make("ns::f{x}*?", "v:1");
  auto tricky = make("a}:x", "");  // must not fall under a's keys
  for (int round = 0; round < 2; ++round) {
    a(1);
    b(1);
    a2(1);
    odd(1);
    tricky(1);
    EXPECT_EQ(calls, 5);
  }
  EXPECT_EQ(keys("tcache:{a}::*").size(), 1u);
  EXPECT_EQ(keys("tcache:{a}:2:*").size(), 1u);
  EXPECT_EQ(keys("tcache:{b}::*").size(), 1u);
  EXPECT_EQ(keys("tcache:{ns%3A%3Af%7Bx%7D%2A%3F}:v%3A1:*").size(), 1u);
  EXPECT_EQ(keys("tcache:{a%7D%3Ax}::*").size(), 1u);
  EXPECT_EQ(keys("tcache:*").size(), 5u);
  a.cache_clear();
  EXPECT_EQ(keys("tcache:*").size(), 3u);  // both versions of "a" went, nothing else
  EXPECT_EQ(tricky.cache_info().currsize, 1u);
}

TEST_F(RedisTest, ClearRemovesOnlyItsOwnKeysInBatches) {
  int calls = 0;
  const auto fn = [&](int x) {
    ++calls;
    return x * 2;
  };
  const auto uri = server_->uri(0, "pool_size=2");
  auto f = tcache::ucache(fn, {.name = "f", .backend = uri, .path = file_});
  auto f2 = tcache::ucache(fn, {.name = "f", .version = "2", .backend = uri, .path = file_});
  auto g = tcache::ucache(fn, {.name = "g", .backend = uri, .path = file_});
  auto fo = tcache::ucache(fn, {.name = "fo", .backend = uri, .path = file_});
  const int n = 2500 / tcache::test::kSlowdown;  // several SCAN pages and UNLINK batches
  for (int i = 0; i < n; ++i) f(i);
  for (int i = 0; i < 5; ++i) f2(i);
  for (int i = 0; i < 10; ++i) g(i);
  for (int i = 0; i < 3; ++i) fo(i);
  RawRedis raw = server_->raw();
  const std::string lease = keys("tcache:{f}::*").front() + ":lease";
  raw.command({"SET", lease, "someone:1:2:3", "PX", "60000"});
  raw.command({"SET", "tcache:{f}:no-hex-here", "x"});
  raw.command({"SET", "other:key", "x"});
  EXPECT_EQ(f.cache_info().currsize, static_cast<std::uint64_t>(n + 5));  // every version
  EXPECT_TRUE(f.invalidate(1));
  EXPECT_FALSE(f.invalidate(1));
  f.cache_clear();
  EXPECT_EQ(f.cache_info().currsize, 0u);
  EXPECT_EQ(f2.cache_info().currsize, 0u);
  EXPECT_EQ(g.cache_info().currsize, 10u);
  EXPECT_EQ(fo.cache_info().currsize, 3u);
  EXPECT_EQ(raw.integer({"EXISTS", lease}), 1);  // another caller's lease stays
  EXPECT_EQ(raw.integer({"EXISTS", "tcache:{f}:no-hex-here"}), 1);
  EXPECT_EQ(raw.integer({"EXISTS", "other:key"}), 1);
  calls = 0;
  g(3);
  EXPECT_EQ(calls, 0);
  f(3);
  EXPECT_EQ(calls, 1);
}

TEST_F(RedisTest, TwoLevelFillsTheLocalFileAndWritesThrough) {
  int calls = 0;
  const auto fn = [&](int x) {
    ++calls;
    return x * 3;
  };
  auto a = tcache::bcache(fn, {.name = "two",
                               .path = dir_ / "a.tcache",
                               .remote = server_->uri(),
                               .ttl = 1h,
                               .logger = capture()});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a(i), i * 3);
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(keys("tcache:{two}:*").size(), 5u);  // written through
  EXPECT_EQ(a.cache_info().currsize, 5u);        // and kept locally
  EXPECT_EQ(a.cache_info().backend, "two-level(file>redis)");

  // Another machine: its own file, the same Redis.
  auto b = tcache::bcache(fn, {.name = "two",
                               .path = dir_ / "b.tcache",
                               .remote = server_->uri(),
                               .ttl = 1h,
                               .logger = capture()});
  EXPECT_EQ(b(2), 6);
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(b.cache_info().hits, 1u);
  EXPECT_EQ(b.cache_info().currsize, 1u);  // filled from Redis

  // Local hits never leave the machine: no Redis, no error.
  server_->stop();
  EXPECT_EQ(b(2), 6);
  EXPECT_EQ(a(4), 12);
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(a.cache_info().backend_errors + b.cache_info().backend_errors, 0u);
  EXPECT_EQ(log_text(), "");
}

TEST_F(RedisTest, TwoLevelFillKeepsTheTtlRedisHasLeft) {
  int calls = 0;
  const auto fn = [&](int x) {
    ++calls;
    return x;
  };
  auto a = tcache::bcache(
      fn, {.name = "rt", .path = dir_ / "a.tcache", .remote = server_->uri(), .ttl = 500ms});
  auto b = tcache::bcache(
      fn, {.name = "rt", .path = dir_ / "b.tcache", .remote = server_->uri(), .ttl = 1h});
  const auto start = std::chrono::steady_clock::now();
  a(1);
  b(1);
  const auto k = keys("tcache:{rt}:*");
  if (!tcache::test::before_expiry(start, 500ms)) {
    GTEST_SKIP() << "the machine took more than the 500 ms TTL to put and fetch one value; "
                    "b's copy may not have come from Redis, so there is nothing to check";
  }
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(k.size(), 1u);
  RawRedis raw = server_->raw();
  EXPECT_TRUE(eventually([&] { return raw.integer({"EXISTS", k[0]}) == 0; }));
  // b's local copy expired with Redis's (not after b's own hour).
  b(1);
  EXPECT_EQ(calls, 2);
}

// Two machines (two local files, one Redis): an invalidate() or
// cache_clear() on one reaches the other's local copies within local_ttl,
// copies from Redis and written-through values alike.
TEST_F(RedisTest, TwoLevelLocalCopiesEndWithinLocalTtlSoErasuresElsewhereReachThem) {
  std::atomic<int> calls{0};
  const auto fn = [&](int x) {
    calls.fetch_add(1);
    return x * 4;
  };
  const std::string uri = server_->uri(0, "local_ttl=300ms");
  auto a = tcache::bcache(fn, {.name = "lt", .path = dir_ / "a.tcache", .remote = uri});
  auto b = tcache::bcache(fn, {.name = "lt", .path = dir_ / "b.tcache", .remote = uri});
  EXPECT_EQ(a(1), 4);
  EXPECT_EQ(b(1), 4);  // copied from Redis into b's file
  EXPECT_EQ(calls.load(), 1);

  a.invalidate(1);  // Redis's copy and a's
  EXPECT_TRUE(eventually([&] { return b(1) == 4 && calls.load() == 2; }))
      << "b's copy outlived the shared value";
  // b computed it again and wrote it through: its own copy is bounded too.
  a.cache_clear();
  EXPECT_TRUE(eventually([&] { return b(1) == 4 && calls.load() == 3; }))
      << "b's written-through value outlived the shared value";
}

TEST_F(RedisTest, TwoLevelLocalCopiesHaveADefaultBound) {
  const auto fn = [](int x) { return x; };
  auto a = tcache::bcache(fn, {.name = "ld", .path = dir_ / "a.tcache", .remote = server_->uri()});
  auto b = tcache::bcache(fn, {.name = "ld", .path = dir_ / "b.tcache", .remote = server_->uri()});
  a(1);  // written through
  b(1);  // copied
  const std::uint64_t now_ms =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  for (const char* file : {"a.tcache", "b.tcache"}) {
    SCOPED_TRACE(file);
    tcache::StoreOptions ro;
    ro.read_only = true;
    ro.create_if_missing = false;
    int seen = 0;
    tcache::Store::open(dir_ / file, ro)
        .for_each("", [&](const tcache::EntryInfo& info, std::string_view) {
          ++seen;
          EXPECT_NE(info.expires_at_ms, 0u) << "a local copy without a bound";
          EXPECT_LE(info.expires_at_ms, now_ms + 60'000)
              << "longer than the default local_ttl (60 s)";
          return true;
        });
    EXPECT_EQ(seen, 1);
  }
  // 0 turns the bound off.
  const std::string unbounded = server_->uri(0, "local_ttl=0");
  auto c = tcache::bcache(fn, {.name = "ld", .path = dir_ / "c.tcache", .remote = unbounded});
  c(1);
  tcache::StoreOptions ro;
  ro.read_only = true;
  tcache::Store::open(dir_ / "c.tcache", ro)
      .for_each("", [&](const tcache::EntryInfo& info, std::string_view) {
        EXPECT_EQ(info.expires_at_ms, 0u);
        return true;
      });
}

// ---------------------------------------------------------------------------
// Single flight across processes

TEST_F(RedisTest, ForkedProcessesComputeEachArgumentOnceThroughTheRedisLease) {
  struct Counts {
    std::atomic<int> calls[2][16];
  };
  Shared<Counts> counts;
  constexpr int kProcs = 4;
  constexpr int kArgs = 16;
  const std::string uri = server_->uri();
  tcache::test::run_workers(kProcs, 1, {}, [&](const tcache::test::Worker& me) {
    const int p = me.process;
    // Each process is a machine of its own: its own local file.
    const auto slow = [&](int which) {
      return [&, which](int x) {
        counts->calls[which][x].fetch_add(1);
        std::this_thread::sleep_for(5ms);  // slow, so that processes overlap
        return x * 10;
      };
    };
    auto u = tcache::ucache(slow(0), {.name = "sf-u",
                                      .backend = uri,
                                      .path = dir_ / ("u" + std::to_string(p) + ".tcache"),
                                      .logger = [](std::string_view) {}});
    auto t = tcache::bcache(slow(1), {.name = "sf-t",
                                      .path = dir_ / ("t" + std::to_string(p) + ".tcache"),
                                      .remote = uri,
                                      .logger = [](std::string_view) {}});
    for (int i = 0; i < 3 * kArgs; ++i) {
      const int x = (i * 5 + p) % kArgs;
      if (u(x) != x * 10 || t(x) != x * 10) return tcache::test::report(1, "wrong value");
    }
    if (u.cache_info().backend_errors + t.cache_info().backend_errors != 0) {
      return tcache::test::report(2, "backend errors");
    }
    return 0;
  }).wait();
  for (int which = 0; which < 2; ++which) {
    for (int x = 0; x < kArgs; ++x) {
      EXPECT_EQ(counts->calls[which][x].load(), 1)
          << (which == 0 ? "ucache" : "two-level bcache") << ", argument " << x;
    }
  }
}

TEST_F(RedisTest, ALeaseWhoseHolderDiedOnThisHostIsTakenOverAtOnce) {
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const std::string uri = server_->uri();
  const pid_t stuck = tcache::test::spawn([&] {
    auto f = tcache::ucache(
        [&](int) {
          const char c = 'x';
          if (::write(ready[1], &c, 1) != 1) return -1;
          ::pause();  // computing forever, until killed
          return 0;
        },
        {.name = "stuck", .backend = uri, .path = dir_ / "child.tcache", .lease_timeout = 1h});
    f(1);
    return 0;
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  EXPECT_EQ(keys("tcache:{stuck}:*:lease").size(), 1u);
  ::kill(stuck, SIGKILL);
  tcache::test::wait_for(stuck);
  auto f = tcache::ucache([](int x) { return x + 1; },
                          {.name = "stuck", .backend = uri, .path = file_, .lease_timeout = 1h});
  EXPECT_EQ(f(1), 2);  // not an hour's wait
}

// A holder in another pid namespace on this host (a container that shares
// the host's network, hence its hostname, with a /proc of its own) is alive
// whatever this namespace's /proc says about its pid: never taken over.
TEST_F(RedisTest, ALeaseHolderInAnotherPidNamespaceOfThisHostIsNotTakenOver) {
  int ready[2];
  int go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const std::string uri = server_->uri();
  std::fflush(nullptr);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(ready[0]);
    ::close(go[1]);
    const auto say = [&](char c) { return ::write(ready[1], &c, 1) == 1; };
    if (::unshare(CLONE_NEWPID | CLONE_NEWNS) != 0) ::_exit(say('S') ? 0 : 1);
    const pid_t inner = ::fork();  // pid 1 of the new namespace
    if (inner == 0) {
      if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
          ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        ::_exit(say('S') ? 0 : 1);
      }
      try {
        auto b = tcache::make_redis_backend(uri);
        std::string v;
        if (b->get_or_lease("k", v, 1h)) {
          say('E');
          ::_exit(2);
        }
        say('L');
        char c;
        if (::read(go[0], &c, 1) != 1) ::_exit(3);
        b->put("k", "from-the-namespace", 0ms);
        ::_exit(0);
      } catch (...) {
        say('E');
        ::_exit(4);
      }
    }
    int status = 0;
    while (::waitpid(inner, &status, 0) < 0 && errno == EINTR) {
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 5);
  }
  ::close(ready[1]);
  ::close(go[0]);
  char c = 0;
  const bool heard = ::read(ready[0], &c, 1) == 1;
  ::close(ready[0]);
  if (heard && c == 'S') {
    ::close(go[1]);
    tcache::test::wait_for(child);
    GTEST_SKIP() << "cannot make a pid namespace with its own /proc here (unshare(CLONE_NEWPID | "
                    "CLONE_NEWNS) and mounting proc need root or CAP_SYS_ADMIN)";
  }
  ASSERT_TRUE(heard && c == 'L') << "the holder in the namespace failed ('" << c << "')";
  RawRedis raw = server_->raw();
  const std::string lease = "tcache:" + hex("k") + ":lease";
  const auto holder = raw.string({"GET", lease});
  ASSERT_TRUE(holder.has_value());

  // This caller waits for the holder up to its own lease_timeout, then
  // computes without a lease; the holder's lease stays the holder's.
  auto waiter = tcache::make_redis_backend(uri);
  std::string v;
  EXPECT_FALSE(waiter->get_or_lease("k", v, 300ms));
  EXPECT_EQ(raw.string({"GET", lease}), holder) << "a live holder's lease was taken over";

  ASSERT_EQ(::write(go[1], "g", 1), 1);
  ::close(go[1]);
  tcache::test::expect_exited_zero({child}, "the holder in another pid namespace");
  ASSERT_TRUE(waiter->get("k", v));
  EXPECT_EQ(v, "from-the-namespace");
}

// cache_clear() from another process of this machine while a value is being
// computed keeps the computation's lease (in the file, and in Redis): the
// callers that come after wait for that value instead of computing it again.
TEST_F(RedisTest, CacheClearKeepsTheLeaseOfAComputationInFlight) {
  struct Counts {
    std::atomic<int> calls;
  };
  for (const bool two_level : {false, true}) {
    SCOPED_TRACE(two_level ? "two-level bcache" : "bcache");
    Shared<Counts> counts;
    const std::filesystem::path path = dir_ / (two_level ? "clear2.tcache" : "clear1.tcache");
    const tcache::BcacheOptions options{.name = "clear",
                                        .path = path,
                                        .remote = two_level ? server_->uri() : "",
                                        .lease_timeout = 1h};
    int started[2];
    int go[2];
    ASSERT_EQ(::pipe(started), 0);
    ASSERT_EQ(::pipe(go), 0);
    const pid_t holder = tcache::test::spawn([&] {
      ::close(started[0]);
      ::close(go[1]);
      auto f = tcache::bcache(
          [&](int x) {
            counts->calls.fetch_add(1);
            char c = 's';
            if (::write(started[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) return -1;
            return x * 2;
          },
          options);
      return f(1) == 2 ? 0 : tcache::test::report(1, "wrong value");
    });
    ::close(started[1]);
    ::close(go[0]);
    char c;
    ASSERT_EQ(::read(started[0], &c, 1), 1);  // the holder computes, its lease set
    ::close(started[0]);

    auto g = tcache::bcache(
        [&](int x) {
          counts->calls.fetch_add(1);
          return x * 2;
        },
        options);
    g.cache_clear();
    {
      tcache::StoreOptions ro;
      ro.read_only = true;
      ro.create_if_missing = false;
      EXPECT_EQ(tcache::Store::open(path, ro).stats().entries, 1u)
          << "the lease of the computation in flight was erased";
    }
    int got = 0;
    std::thread waiter([&] { got = g(1); });  // waits for the holder's value
    ASSERT_EQ(::write(go[1], "g", 1), 1);
    ::close(go[1]);
    waiter.join();
    tcache::test::expect_exited_zero({holder}, "the holder");
    EXPECT_EQ(got, 2);
    EXPECT_EQ(counts->calls.load(), 1);
  }
}

TEST_F(RedisTest, ThreadsShareASmallPoolAndTheLease) {
  std::atomic<int> calls{0};
  auto f = tcache::ucache(
      [&](int x) {
        calls.fetch_add(1);
        std::this_thread::sleep_for(2ms);
        return x;
      },
      {.name = "threads", .backend = server_->uri(0, "pool_size=2"), .path = file_});
  EXPECT_EQ(tcache::test::run_threads(8,
                                      [&](int t) {
                                        for (int i = 0; i < 40; ++i) {
                                          if (f((i + t) % 10) != (i + t) % 10) return 1;
                                        }
                                        return 0;
                                      }),
            0);
  EXPECT_EQ(calls.load(), 10);
  EXPECT_EQ(f.cache_info().backend_errors, 0u);
}

// ---------------------------------------------------------------------------
// Faults

TEST_F(RedisTest, AServerKilledAndRestartedMidRunNeverFailsACallAndIsUsedAgain) {
  std::atomic<int> calls{0};
  const auto fn = [&](int x) {
    calls.fetch_add(1);
    return x * 7;
  };
  const std::string uri = server_->uri(0, "connect_timeout=200ms&command_timeout=200ms");
  auto f =
      tcache::ucache(fn, {.name = "restart", .backend = uri, .path = file_, .logger = capture()});
  auto t = tcache::bcache(
      fn, {.name = "restart2", .path = dir_ / "t.tcache", .remote = uri, .logger = capture()});
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(f(i), i * 7);
    ASSERT_EQ(t(i), i * 7);
  }
  EXPECT_EQ(f.cache_info().backend_errors, 0u);

  server_->kill();  // kill -9: connections die mid-pool
  for (int i = 0; i < 40; ++i) {
    ASSERT_EQ(f(i), i * 7);
    ASSERT_EQ(t(i), i * 7);
  }
  EXPECT_GT(f.cache_info().backend_errors, 0u);
  EXPECT_GE(f.cache_info().fallbacks, 1u);
  EXPECT_GT(t.cache_info().backend_errors, 0u);
  EXPECT_EQ(f.cache_info().backend, "tiered(redis>file>memory)");  // suspended, not given up
  // Once per cause, however many calls failed.
  EXPECT_EQ(log_lines_with("redis backend failed (unavailable"), 1) << log_text();
  EXPECT_EQ(log_lines_with("two-level cache: redis failed (unavailable"), 1) << log_text();

  server_->start();  // the same port, empty
  RawRedis raw = server_->raw();
  int next = 1000;
  EXPECT_TRUE(eventually([&] {
    f(next++);
    return !raw.keys("tcache:{restart}:*").empty();
  })) << log_text();
  EXPECT_TRUE(eventually([&] {
    t(next++);
    return !raw.keys("tcache:{restart2}:*").empty();
  })) << log_text();
  EXPECT_GE(log_lines_with("answers again"), 2) << log_text();

  // Redis serves again: another machine gets the value without computing.
  f(5000);
  const int before = calls.load();
  auto g = tcache::ucache(fn, {.name = "restart", .backend = uri, .path = dir_ / "g.tcache"});
  EXPECT_EQ(g(5000), 35000);
  EXPECT_EQ(calls.load(), before);
}

TEST_F(RedisTest, AStalledServerMakesCallsFallBackAfterTheCommandTimeout) {
  std::atomic<int> calls{0};
  const auto fn = [&](int x) {
    calls.fetch_add(1);
    return x * 11;
  };
  const std::string uri = server_->uri(0, "connect_timeout=100ms&command_timeout=100ms");
  auto f =
      tcache::ucache(fn, {.name = "stall", .backend = uri, .path = file_, .logger = capture()});
  auto t = tcache::bcache(
      fn, {.name = "stall2", .path = dir_ / "t.tcache", .remote = uri, .logger = capture()});
  EXPECT_EQ(f(1), 11);
  EXPECT_EQ(t(1), 11);
  EXPECT_EQ(calls.load(), 2);

  server_->pause();  // SIGSTOP: connections stay open, nothing answers
  EXPECT_EQ(f(2), 22);
  EXPECT_EQ(f(3), 33);
  EXPECT_EQ(f(2), 22);  // kept by the file tier meanwhile
  EXPECT_EQ(t(1), 11);  // a local hit
  EXPECT_EQ(t(2), 22);
  EXPECT_EQ(calls.load(), 5);
  EXPECT_GT(f.cache_info().backend_errors, 0u);
  EXPECT_GT(t.cache_info().backend_errors, 0u);
  EXPECT_GE(log_lines_with("no answer within 100 ms"), 1) << log_text();

  server_->resume();
  RawRedis raw = server_->raw();
  const std::size_t had = raw.keys("tcache:{stall}:*").size();
  int next = 100;
  EXPECT_TRUE(eventually([&] {
    f(next++);
    return raw.keys("tcache:{stall}:*").size() > had;
  })) << log_text();
}

TEST_F(RedisTest, AnUnreachableServerIsAnErrorForTheBackendButNotForUcache) {
  const std::string uri = server_->uri(0, "connect_timeout=200ms");
  server_->stop();
  EXPECT_EQ(error_of([&] { tcache::make_redis_backend(uri); }), Errc::unavailable);
  EXPECT_TRUE(contains(message_of([&] { tcache::make_redis_backend(uri); }), "cannot connect"));

  tcache::RedisOptions lazy;
  lazy.fail_if_unreachable = false;
  auto b = tcache::make_redis_backend(uri, lazy);
  std::string v;
  EXPECT_EQ(error_of([&] { b->get("k", v); }), Errc::unavailable);

  int calls = 0;
  auto f = tcache::ucache(
      [&](int x) {
        ++calls;
        return x;
      },
      {.name = "down", .backend = uri, .path = file_, .logger = capture()});
  EXPECT_EQ(f(1), 1);
  EXPECT_EQ(f(1), 1);
  EXPECT_EQ(calls, 1);  // the file tier keeps it
  EXPECT_GE(f.cache_info().backend_errors, 1u);
  EXPECT_EQ(log_lines_with("unavailable"), 1) << log_text();
}

TEST_F(RedisTest, TieredBackendComesBackToARecoveredTier) {
  tcache::RedisOptions o;
  o.fail_if_unreachable = false;
  o.command_timeout = 200ms;
  auto redis = tcache::make_redis_backend(server_->uri(), o);
  auto tiered = tcache::make_tiered_backend({redis, tcache::make_memory_backend(100)}, capture());
  tiered->put("k1", "v1", 0ms);
  RawRedis before = server_->raw();
  EXPECT_EQ(before.integer({"EXISTS", "tcache:" + hex("k1")}), 1);

  server_->kill();
  tiered->put("k2", "v2", 0ms);  // Redis fails: memory takes it
  EXPECT_EQ(tiered->fallbacks(), 1u);
  EXPECT_GE(tiered->errors(), 1u);
  EXPECT_EQ(tiered->name(), "tiered(redis>memory)");
  std::string v;
  ASSERT_TRUE(tiered->get("k2", v));
  EXPECT_EQ(v, "v2");

  server_->start();
  RawRedis raw = server_->raw();
  EXPECT_TRUE(eventually([&] {
    tiered->put("k3", "v3", 0ms);
    return raw.integer({"EXISTS", "tcache:" + hex("k3")}) == 1;
  })) << log_text();
  ASSERT_TRUE(tiered->get("k2", v));  // still found below
  EXPECT_EQ(v, "v2");
  EXPECT_TRUE(tiered->erase("k2"));  // erases reach every tier
  EXPECT_FALSE(tiered->get("k2", v));
}

// ---------------------------------------------------------------------------
// Slow and lossy servers (a proxy written in the test: tests/support)

TEST_F(RedisTest, ACommandHasOneDeadlineHoweverSlowlyTheServerTrickles) {
  TcpProxy proxy(server_->port());
  // Generous deadlines (the proxy may be slow on a busy machine): the
  // trickle goes on for ever, so any deadline is reached.
  const std::string query = "command_timeout=1s&retry_min=1ms&retry_max=10ms";
  std::atomic<int> calls{0};
  const auto fn = [&](int x) {
    calls.fetch_add(1);
    return x * 5;
  };
  auto f = tcache::bcache(
      fn, {.name = "trickle", .path = file_, .remote = proxy.uri(0, query), .logger = capture()});
  EXPECT_EQ(f(1), 5);
  tcache::RedisOptions o;
  o.command_timeout = 1s;
  auto b = tcache::make_redis_backend(proxy.uri(), o);

  // From now on every reply is endless, one byte every 10 ms: each read
  // gets a byte long before command_timeout, the command never completes.
  proxy.set_mode(TcpProxy::Mode::trickle);
  std::pair<Errc, std::string> error;
  int value = 0;
  expect_returns(
      "calls to a trickling server",
      [&] {
        std::string v;
        error = thrown_by([&] { b->get("k", v); });
        value = f(2);  // a local miss: Redis is asked, fails, the call computes
      },
      [&] { proxy.stop(); });
  EXPECT_EQ(error.first, Errc::unavailable);
  EXPECT_TRUE(contains(error.second, "no answer within 1000 ms")) << error.second;
  EXPECT_EQ(value, 10);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_GE(f.cache_info().backend_errors, 1u);
  EXPECT_GE(log_lines_with("two-level cache: redis failed (unavailable"), 1) << log_text();
}

TEST_F(RedisTest, AConnectionAndItsHandshakeHaveOneDeadline) {
  TcpProxy proxy(server_->port());
  proxy.set_mode(TcpProxy::Mode::trickle);  // the handshake's replies trickle forever
  tcache::RedisOptions o;
  o.connect_timeout = 200ms;
  std::pair<Errc, std::string> error;
  expect_returns(
      "make_redis_backend through a trickling server",
      [&] { error = thrown_by([&] { tcache::make_redis_backend(proxy.uri(), o); }); },
      [&] { proxy.stop(); });
  EXPECT_EQ(error.first, Errc::unavailable);
  EXPECT_TRUE(contains(error.second, "did not complete the handshake")) << error.second;
}

// The server runs the lease script, its reply is lost (the proxy swallows
// it): the lease is set, with a token the caller saw no reply for.
class LostLeaseReply : public RedisTest {
 protected:
  void lose_a_lease_reply() {
    proxy_ = std::make_unique<TcpProxy>(server_->port());
    tcache::RedisOptions o;
    o.command_timeout = 1s;  // generous: the swallowed reply never comes
    o.retry_min = 1ms;
    o.retry_max = 10ms;
    backend_ = tcache::make_redis_backend(proxy_->uri(), o);
    proxy_->set_mode(TcpProxy::Mode::swallow, "KEYS[2]");  // only the acquisition script
    std::string v;
    EXPECT_EQ(error_of([&] { backend_->get_or_lease("k", v, 1h); }), Errc::unavailable);
    raw_ = std::make_unique<RawRedis>(server_->port());
    ASSERT_EQ(raw_->integer({"EXISTS", lease_}), 1) << "the server did not set the lease";
    proxy_->set_mode(TcpProxy::Mode::forward);
  }
  void TearDown() override {
    backend_.reset();
    proxy_.reset();
    RedisTest::TearDown();
  }

  const std::string lease_ = "tcache:" + hex("k") + ":lease";
  std::unique_ptr<RawRedis> raw_;
  std::unique_ptr<TcpProxy> proxy_;
  std::shared_ptr<tcache::Backend> backend_;
};

TEST_F(LostLeaseReply, IsReleasedByTheCallersRelease) {
  ASSERT_NO_FATAL_FAILURE(lose_a_lease_reply());
  // What a decorator does after a failed acquisition: release_lease(). It
  // reaches the server once the client's reconnection backoff is over.
  EXPECT_TRUE(eventually([&] {
    backend_->release_lease("k");
    return raw_->integer({"EXISTS", lease_}) == 0;
  })) << "the lease stays set until its PX (an hour): every caller waits";
}

TEST_F(LostLeaseReply, IsRecoveredByTheNextAcquisitionOfTheProcess) {
  ASSERT_NO_FATAL_FAILURE(lose_a_lease_reply());
  bool leased = false;
  expect_returns(
      "the next get_or_lease of the same process",
      [&] {
        std::string v;
        EXPECT_TRUE(eventually([&] {
          try {
            leased = !backend_->get_or_lease("k", v, 1h);
            return true;
          } catch (const tcache::Error&) {  // the reconnection backoff
            return false;
          }
        }));
        if (leased) backend_->put("k", "computed", 0ms);  // by the lease's thread
      },
      [&] {
        RawRedis(server_->port()).command({"DEL", lease_});
      });
  EXPECT_TRUE(leased);
  EXPECT_EQ(raw_->integer({"EXISTS", lease_}), 0);
  auto other = tcache::make_redis_backend(server_->uri());
  std::string v;
  ASSERT_TRUE(other->get_or_lease("k", v, 1h));
  EXPECT_EQ(v, "computed");
}

// ---------------------------------------------------------------------------
// Addresses, credentials, malformed URIs

TEST_F(RedisTest, UnixSocketsAndDatabaseNumbers) {
  int calls = 0;
  const auto fn = [&](int x) {
    ++calls;
    return x;
  };
  auto u = tcache::ucache(fn, {.name = "sock",
                               .backend = "redis+unix://" + server_->socket_path() + "?db=3",
                               .path = file_});
  u(1);
  u(1);
  EXPECT_EQ(calls, 1);
  auto d = tcache::ucache(fn, {.name = "db5", .backend = server_->uri(5), .path = file_});
  d(1);
  RawRedis raw = server_->raw();
  EXPECT_TRUE(raw.keys("tcache:*").empty());  // nothing in db 0
  raw.command({"SELECT", "3"});
  EXPECT_EQ(raw.keys("tcache:{sock}:*").size(), 1u);
  raw.command({"SELECT", "5"});
  EXPECT_EQ(raw.keys("tcache:{db5}:*").size(), 1u);
  const std::string msg = message_of([&] { tcache::make_redis_backend(server_->uri(99)); });
  EXPECT_TRUE(contains(msg, "cannot select database 99")) << msg;
  EXPECT_EQ(error_of([&] { tcache::make_redis_backend(server_->uri(99)); }), Errc::invalid_option);
}

TEST_F(RedisTest, MalformedUrisAreClearErrorsAtConstruction) {
  const std::string port = std::to_string(server_->port());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"redis://", "no host"},
      {"http://127.0.0.1:" + port, "must start with redis://"},
      {"rediss://127.0.0.1:" + port, "TLS"},
      {"redis://127.0.0.1:notaport/0", "port"},
      {"redis://127.0.0.1:70000/0", "port"},
      {"redis://127.0.0.1:" + port + "/zero", "database number"},
      {"redis://user@127.0.0.1:" + port, "has no password"},
      {"redis://[::1", "IPv6"},
      {"redis://127.0.0.1:" + port + "?bogus=1", "unknown query parameter 'bogus'"},
      {"redis://127.0.0.1:" + port + "?command_timeout=fast", "command_timeout"},
      {"redis://127.0.0.1:" + port + "?pool_size=0", "pool_size"},
      {"redis://127.0.0.1:" + port + "/1?db=2", "different databases"},
      {"redis+unix://relative/sock", "absolute"},
      {"redis+unix://", "absolute"},
      {"redis://:p%zz@127.0.0.1:" + port, "%-escape"},
  };
  for (const auto& [uri, why] : bad) {
    SCOPED_TRACE(uri);
    EXPECT_EQ(error_of([&] { tcache::make_redis_backend(uri); }), Errc::invalid_option);
    const std::string msg = message_of([&] { tcache::make_redis_backend(uri); });
    EXPECT_TRUE(contains(msg, why)) << msg;
    EXPECT_EQ(
        error_of([&] { tcache::ucache([](int x) { return x; }, {.name = "m", .backend = uri}); }),
        Errc::invalid_option);
  }
  // The decorators name the option.
  const std::string bad_port = "redis://127.0.0.1:0/0";
  EXPECT_TRUE(contains(message_of([&] {
                         tcache::ucache([](int x) { return x; },
                                        {.name = "m", .backend = bad_port});
                       }),
                       "option 'backend'"));
  EXPECT_TRUE(contains(message_of([&] {
                         tcache::bcache([](int x) { return x; },
                                        {.name = "m", .path = file_, .remote = bad_port});
                       }),
                       "option 'remote'"));
  EXPECT_EQ(error_of([&] {
              tcache::bcache([](int x) { return x; },
                             {.name = "m", .path = file_, .remote = "file:///tmp/x"});
            }),
            Errc::invalid_option);
  // Checked even when caching is disabled.
  ::setenv("TCACHE_DISABLE", "1", 1);
  EXPECT_EQ(error_of([&] {
              tcache::ucache([](int x) { return x; }, {.name = "m", .backend = bad_port});
            }),
            Errc::invalid_option);
  ::unsetenv("TCACHE_DISABLE");
}

// Passwords with an unencoded '@', '/', '?' or '#': whatever the parser
// could not place may be a piece of the password, and no message shows it.
TEST_F(RedisTest, NoMessageShowsAPasswordTheParserCouldNotPlace) {
  const std::string port = std::to_string(server_->port());
  // Password pieces: QWE, RTY, UIO (and a password taken for a user).
  const std::vector<std::string> uris = {
      "redis://:QWE/RTY@127.0.0.1:" + port + "/0", "redis://us:QWE/RTY@127.0.0.1:" + port + "/0",
      "redis://:QWE@RTY@127.0.0.1:notaport/0",     "redis://:QWE?RTY@127.0.0.1:" + port + "/0",
      "redis://:QWE#RTY@127.0.0.1:" + port + "/0", "redis://:QWE/RTY@127.0.0.1:" + port + "/0?db=x",
      "redis+unix://:QWE@RTY@/tmp/redis.sock",     "redis://UIO@127.0.0.1:" + port + "/0",
      "rediss://:QWE/RTY@127.0.0.1:" + port,
  };
  const auto expect_no_password = [](const std::string& msg) {
    EXPECT_FALSE(msg.empty());
    for (const std::string_view piece : {"QWE", "RTY", "UIO"}) {
      EXPECT_FALSE(contains(msg, piece)) << "a piece of the password in: " << msg;
    }
  };
  for (const std::string& uri : uris) {
    SCOPED_TRACE(uri);
    expect_no_password(message_of([&] { tcache::make_redis_backend(uri); }));
    EXPECT_EQ(error_of([&] { tcache::make_redis_backend(uri); }), Errc::invalid_option);
    expect_no_password(message_of([&] {
      tcache::bcache([](int x) { return x; }, {.name = "m", .path = file_, .remote = uri});
    }));
  }
  // Not a Redis URI at all: the decorators' messages redact it as well.
  expect_no_password(message_of([&] {
    tcache::bcache([](int x) { return x; },
                   {.name = "m", .path = file_, .remote = "http://:QWE/RTY@127.0.0.1:1/0"});
  }));
  expect_no_password(message_of([&] {
    tcache::ucache([](int x) { return x; }, {.name = "m", .backend = "rdis://:QWE/RTY@127.0.0.1"});
  }));

  // A password with an unencoded '@' still works; messages show "***@".
  std::filesystem::create_directories(dir_ / "secured");
  RedisServer secured(dir_ / "secured", {.password = "QWE@RTY/UIO"});
  const std::string at_uri =
      "redis://:QWE@RTY%2FUIO@127.0.0.1:" + std::to_string(secured.port()) + "/0";
  auto b = tcache::make_redis_backend(at_uri);
  b->put("k", "v", 0ms);
  secured.stop();
  std::string v;
  const std::string down = message_of([&] { b->get("k", v); });
  EXPECT_TRUE(contains(down, "redis://***@127.0.0.1:")) << down;
  expect_no_password(down);
}

class RedisAuthTest : public RedisTest {
 protected:
  RedisServer::Options server_options() const override { return {.password = "s3cret-pw"}; }
};

TEST_F(RedisAuthTest, WrongOrMissingPasswordsAreClearErrorsAtConstruction) {
  const std::string host = "127.0.0.1:" + std::to_string(server_->port()) + "/0";
  const std::string wrong = "redis://:not-it@" + host;
  EXPECT_EQ(error_of([&] { tcache::make_redis_backend(wrong); }), Errc::invalid_option);
  const std::string msg = message_of([&] { tcache::make_redis_backend(wrong); });
  EXPECT_TRUE(contains(msg, "refused the credentials")) << msg;
  EXPECT_FALSE(contains(msg, "not-it")) << "a password in a message: " << msg;
  const std::string none = message_of([&] { tcache::make_redis_backend("redis://" + host); });
  EXPECT_TRUE(contains(none, "requires a password")) << none;

  EXPECT_EQ(
      error_of([&] { tcache::ucache([](int x) { return x; }, {.name = "p", .backend = wrong}); }),
      Errc::invalid_option);
  const std::string remote = message_of([&] {
    tcache::bcache([](int x) { return x; }, {.name = "p", .path = file_, .remote = wrong});
  });
  EXPECT_TRUE(contains(remote, "option 'remote'")) << remote;
  EXPECT_TRUE(contains(remote, "refused the credentials")) << remote;

  int calls = 0;
  const auto fn = [&](int x) {
    ++calls;
    return x;
  };
  auto f = tcache::ucache(fn, {.name = "p", .backend = server_->uri(), .path = file_});
  auto acl = tcache::ucache(
      fn, {.name = "p", .backend = "redis://default:s3cret-pw@" + host, .path = dir_ / "b.tcache"});
  f(1);
  acl(1);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(f.cache_info().backend_errors, 0u);
}

}  // namespace
