// mcache_test: tcache::mcache and the MemoryCache under it (detail/memory_cache.h):
// eviction order of every policy (checked against a simple model), TTLs,
// the size bound and shards, cache_info/cache_clear/invalidate, exceptions,
// recursion through the wrapper, the kinds of callables, option checks,
// ScopedConfig{.disable = true}, and many threads at once.

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tcache/config.h"
#include "tcache/decorators.h"
#include "tcache/detail/memory_cache.h"

namespace {

using namespace std::chrono_literals;
using tcache::Policy;
using tcache::detail::MemoryCache;

using IntCache = MemoryCache<int, int>;

bool has(IntCache& c, int key) {
  int v = 0;
  return c.get(key, v);
}

// ---------------------------------------------------------------------------
// Eviction order, on one shard

TEST(MemoryCache, LruEvictsTheLeastRecentlyUsed) {
  IntCache c(3, 0ns, Policy::lru, 1);
  c.put(1, 10);
  c.put(2, 20);
  c.put(3, 30);
  EXPECT_TRUE(has(c, 1));  // order now 1, 3, 2
  c.put(4, 40);            // evicts 2
  EXPECT_EQ(c.size(), 3u);
  EXPECT_FALSE(has(c, 2));
  c.put(3, 33);  // an update is a use: order 3, 4, 1
  c.put(5, 50);  // evicts 1
  EXPECT_FALSE(has(c, 1));
  EXPECT_EQ(c.get(3), std::optional<int>(33));
  EXPECT_TRUE(has(c, 4));
  EXPECT_TRUE(has(c, 5));
  EXPECT_EQ(c.stats().evictions, 2u);
}

TEST(MemoryCache, FifoEvictsTheOldestInsertedWhateverItsUse) {
  IntCache c(3, 0ns, Policy::fifo, 1);
  c.put(1, 10);
  c.put(2, 20);
  c.put(3, 30);
  EXPECT_TRUE(has(c, 1));
  EXPECT_TRUE(has(c, 1));
  c.put(4, 40);  // evicts 1, used or not
  EXPECT_FALSE(has(c, 1));
  c.put(2, 22);  // an update keeps its place
  c.put(5, 50);  // evicts 2
  EXPECT_FALSE(has(c, 2));
  EXPECT_TRUE(has(c, 3));
  EXPECT_TRUE(has(c, 4));
  EXPECT_TRUE(has(c, 5));
}

TEST(MemoryCache, LfuEvictsTheLeastFrequentlyUsed) {
  IntCache c(3, 0ns, Policy::lfu, 1);
  c.put(1, 10);
  c.put(2, 20);
  c.put(3, 30);
  EXPECT_TRUE(has(c, 1));
  EXPECT_TRUE(has(c, 1));
  EXPECT_TRUE(has(c, 3));
  c.put(4, 40);  // uses: 1:3, 2:1, 3:2 -> evicts 2
  EXPECT_FALSE(has(c, 2));
  c.put(5, 50);  // 4 has one use, the fewest -> evicts 4
  EXPECT_FALSE(has(c, 4));
  EXPECT_TRUE(has(c, 1));
  EXPECT_TRUE(has(c, 3));
  EXPECT_TRUE(has(c, 5));
}

TEST(MemoryCache, LfuBreaksTiesByRecency) {
  IntCache c(3, 0ns, Policy::lfu, 1);
  c.put(1, 10);
  c.put(2, 20);
  c.put(3, 30);
  c.put(4, 40);  // all used once: the least recent (1) goes
  EXPECT_FALSE(has(c, 1));
  EXPECT_TRUE(has(c, 2));  // 2 -> two uses
  EXPECT_TRUE(has(c, 3));  // 3 -> two uses, more recent than 2
  c.put(5, 50);            // evicts 4 (one use)
  c.put(6, 60);            // evicts 5 (one use)
  EXPECT_FALSE(has(c, 4));
  EXPECT_FALSE(has(c, 5));
  EXPECT_TRUE(has(c, 2));  // uses: 2:3, 3:2, 6:1
  c.put(7, 70);            // evicts 6
  c.put(8, 80);            // evicts 7
  EXPECT_TRUE(has(c, 3));
  EXPECT_TRUE(has(c, 8));
  EXPECT_FALSE(has(c, 6));
  EXPECT_FALSE(has(c, 7));
}

// A straightforward model of the three policies on one shard: the victim is
// the entry with the smallest (uses, last touch) for lfu, the smallest last
// touch for lru, the smallest insertion time for fifo.
class Model {
 public:
  Model(std::size_t maxsize, Policy policy) : maxsize_(maxsize), policy_(policy) {}

  std::optional<int> get(int key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    touch(it->second);
    return it->second.value;
  }
  void put(int key, int value) {
    if (auto it = entries_.find(key); it != entries_.end()) {
      it->second.value = value;
      if (policy_ != Policy::fifo) touch(it->second);
      return;
    }
    if (entries_.size() >= maxsize_) entries_.erase(victim());
    entries_[key] = Entry{value, 1, ++clock_, clock_};
  }
  bool erase(int key) { return entries_.erase(key) != 0; }
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    int value;
    std::uint64_t uses;
    std::uint64_t touched;
    std::uint64_t inserted;
  };
  void touch(Entry& e) {
    ++e.uses;
    e.touched = ++clock_;
  }
  int victim() const {
    auto rank = [this](const Entry& e) {
      switch (policy_) {
        case Policy::lru:
          return std::tuple<std::uint64_t, std::uint64_t>(0, e.touched);
        case Policy::lfu:
          return std::tuple<std::uint64_t, std::uint64_t>(e.uses, e.touched);
        case Policy::fifo:
          break;
      }
      return std::tuple<std::uint64_t, std::uint64_t>(0, e.inserted);
    };
    auto best = entries_.begin();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (rank(it->second) < rank(best->second)) best = it;
    }
    return best->first;
  }

  std::size_t maxsize_;
  Policy policy_;
  std::map<int, Entry> entries_;
  std::uint64_t clock_ = 0;
};

class PolicyTest : public ::testing::TestWithParam<Policy> {};

TEST_P(PolicyTest, MatchesTheModelOnRandomOperations) {
  for (const std::size_t maxsize : {1u, 2u, 7u, 32u}) {
    IntCache c(maxsize, 0ns, GetParam(), 1);
    Model m(maxsize, GetParam());
    std::mt19937_64 rng(tcache::test::seed_for(static_cast<int>(maxsize)));
    const int keys = static_cast<int>(maxsize) * 3;
    for (int op = 0; op < 20000; ++op) {
      const int key = static_cast<int>(rng() % static_cast<std::uint64_t>(keys));
      const unsigned roll = static_cast<unsigned>(rng() % 10);
      if (roll < 5) {
        ASSERT_EQ(c.get(key), m.get(key)) << "op " << op << " get " << key;
      } else if (roll < 9) {
        c.put(key, op);
        m.put(key, op);
      } else {
        ASSERT_EQ(c.erase(key), m.erase(key)) << "op " << op << " erase " << key;
      }
      ASSERT_EQ(c.size(), m.size()) << "op " << op;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllPolicies, PolicyTest,
                         ::testing::Values(Policy::lru, Policy::lfu, Policy::fifo),
                         [](const auto& info) {
                           switch (info.param) {
                             case Policy::lru:
                               return std::string("lru");
                             case Policy::lfu:
                               return std::string("lfu");
                             case Policy::fifo:
                               break;
                           }
                           return std::string("fifo");
                         });

// ---------------------------------------------------------------------------
// Expiry, bounds, shards, keys and values

TEST(MemoryCache, ExpiredEntriesAreMisses) {
  IntCache c(100, 0ns, Policy::lru);
  c.put(1, 10, 1h);
  c.put(2, 20, 1ms);
  c.put(3, 30);  // no ttl, no default: never expires
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(has(c, 1));
  EXPECT_FALSE(has(c, 2));
  EXPECT_TRUE(has(c, 3));
  EXPECT_EQ(c.size(), 2u);  // the expired one was dropped when met
  EXPECT_EQ(c.stats().expirations, 1u);
}

TEST(MemoryCache, DefaultTtlAppliesToPutsWithoutOne) {
  IntCache c(100, 1ms, Policy::lru);
  c.put(1, 10);
  c.put(2, 20, 1h);
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(has(c, 1));
  EXPECT_TRUE(has(c, 2));
  EXPECT_EQ(c.count_if([](int) { return true; }), 1u);
}

TEST(MemoryCache, ShardCountIsAPowerOfTwoWithinTheBound) {
  EXPECT_EQ(IntCache(10, 0ns, Policy::lru).shard_count(), 1u);  // small: one shard
  EXPECT_EQ(IntCache(1'000'000, 0ns, Policy::lru, 3).shard_count(), 4u);
  EXPECT_EQ(IntCache(1'000'000, 0ns, Policy::lru, 100000).shard_count(), IntCache::kMaxShards);
  EXPECT_EQ(IntCache(5, 0ns, Policy::lru, 64).shard_count(), 4u);  // at most maxsize
  const std::uint32_t automatic = IntCache(1'000'000, 0ns, Policy::lru).shard_count();
  EXPECT_GE(automatic, 1u);
  EXPECT_LE(automatic, 64u);
  EXPECT_EQ(automatic & (automatic - 1), 0u);
}

TEST(MemoryCache, NeverHoldsMoreThanMaxsize) {
  for (const Policy p : {Policy::lru, Policy::lfu, Policy::fifo}) {
    for (const std::uint32_t shards : {1u, 4u, 16u}) {
      IntCache c(1000, 0ns, p, shards);
      for (int i = 0; i < 20000; ++i) {
        c.put(i, i);
        ASSERT_LE(c.size(), 1000u);
        if (i % 3 == 0) has(c, i / 2);
      }
      // Every shard saw far more keys than it holds, so each is full.
      EXPECT_EQ(c.size(), 1000u) << "shards " << shards;
      EXPECT_EQ(c.maxsize(), 1000u);
    }
  }
}

TEST(MemoryCache, EraseIfAndCountIfSeeEveryShard) {
  IntCache c(10000, 0ns, Policy::lru, 8);
  for (int i = 0; i < 1000; ++i) c.put(i, i);
  EXPECT_EQ(c.count_if([](int k) { return k % 2 == 0; }), 500u);
  EXPECT_EQ(c.erase_if([](int k) { return k % 2 == 0; }), 500u);
  EXPECT_EQ(c.size(), 500u);
  EXPECT_FALSE(has(c, 4));
  EXPECT_TRUE(has(c, 5));
  c.clear();
  EXPECT_EQ(c.size(), 0u);
  EXPECT_FALSE(has(c, 5));
  c.put(5, 55);  // usable after clear
  EXPECT_EQ(c.get(5), std::optional<int>(55));
}

struct ViewHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

TEST(MemoryCache, StringKeysLookUpByStringView) {
  MemoryCache<std::string, std::string, ViewHash, std::equal_to<>> c(10, 0ns, Policy::lru);
  c.put(std::string_view("alpha"), std::string_view("1"));
  std::string out;
  EXPECT_TRUE(c.get(std::string_view("alpha"), out));
  EXPECT_EQ(out, "1");
  EXPECT_FALSE(c.get(std::string_view("beta"), out));
  EXPECT_TRUE(c.erase(std::string_view("alpha")));
  EXPECT_FALSE(c.erase(std::string_view("alpha")));
}

// A value that can be copied but not assigned, and has no default.
struct Fixed {
  explicit Fixed(int x) : v(x) {}
  const int v;
};

TEST(MemoryCache, ValuesNeedOnlyBeCopyable) {
  MemoryCache<int, Fixed> c(2, 0ns, Policy::lfu, 1);
  c.put(1, Fixed(10));
  c.put(1, Fixed(11));  // replaced, not assigned
  c.put(2, Fixed(20));
  c.put(3, Fixed(30));
  EXPECT_EQ(c.size(), 2u);
  ASSERT_TRUE(c.get(1).has_value());
  EXPECT_EQ(c.get(1)->v, 11);  // used more often than 2
  EXPECT_FALSE(c.get(2).has_value());
}

TEST(MemoryCache, ManyThreadsKeepTheBound) {
  IntCache c(500, 0ns, Policy::lru, 4);
  const int per_thread = 50000 / tcache::test::kSlowdown;
  const int r = tcache::test::run_threads(4, [&](int t) {
    std::mt19937_64 rng(tcache::test::seed_for(t));
    for (int i = 0; i < per_thread; ++i) {
      const int key = static_cast<int>(rng() % 2000);
      int v = -1;
      if (c.get(key, v)) {
        if (v != key * 7) return 1;
      } else {
        c.put(key, key * 7);
      }
      if (c.size() > 500) return 2;
      if (i % 1000 == 0) c.erase(key);
    }
    return 0;
  });
  EXPECT_EQ(r, 0);
  EXPECT_LE(c.size(), 500u);
  const auto st = c.stats();
  EXPECT_EQ(st.hits + st.misses, 4u * static_cast<std::uint64_t>(per_thread));
}

// ---------------------------------------------------------------------------
// mcache

// Each test starts from a neutral configuration, whatever TCACHE_DISABLE,
// TCACHE_DEFAULT_TTL or HOME say in the environment that runs it (mcache
// reads config() when it is made; it never uses the directory).
class Mcache : public ::testing::Test {
 protected:
  tcache::ScopedConfig neutral_{{.dir = std::filesystem::temp_directory_path(),
                                 .disable = false,
                                 .default_ttl = std::chrono::milliseconds(0)}};
};

std::atomic<int> g_square_calls{0};
int square(int x) {
  ++g_square_calls;
  return x * x;
}

TEST_F(Mcache, FreeFunctionHitsAndMisses) {
  g_square_calls = 0;
  auto f = tcache::mcache(square);
  EXPECT_EQ(f(3), 9);
  EXPECT_EQ(f(3), 9);
  EXPECT_EQ(f(4), 16);
  EXPECT_EQ(g_square_calls.load(), 2);
  const tcache::CacheInfo info = f.cache_info();
  EXPECT_EQ(info.hits, 1u);
  EXPECT_EQ(info.misses, 2u);
  EXPECT_EQ(info.maxsize, 4096u);
  EXPECT_EQ(info.currsize, 2u);
  EXPECT_EQ(info.backend, "memory");
}

TEST_F(Mcache, LambdaWithSeveralArguments) {
  int calls = 0;
  auto f = tcache::mcache([&calls](const std::string& s, int n, double d) {
    ++calls;
    return s + ":" + std::to_string(n) + ":" + std::to_string(static_cast<int>(d));
  });
  EXPECT_EQ(f("a", 1, 2.0), "a:1:2");
  EXPECT_EQ(f("a", 1, 2.0), "a:1:2");
  EXPECT_EQ(f("a", 2, 2.0), "a:2:2");
  EXPECT_EQ(f("b", 1, 2.0), "b:1:2");
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(f.cache_info().hits, 1u);
}

TEST_F(Mcache, FunctionObject) {
  struct Times {
    int k;
    int* calls;
    int operator()(int x) const {
      ++*calls;
      return x * k;
    }
  };
  int calls = 0;
  auto f = tcache::mcache(Times{5, &calls});
  EXPECT_EQ(f(2), 10);
  EXPECT_EQ(f(2), 10);
  EXPECT_EQ(calls, 1);
}

TEST_F(Mcache, NoArguments) {
  int calls = 0;
  auto f = tcache::mcache([&calls] { return ++calls; });
  EXPECT_EQ(f(), 1);
  EXPECT_EQ(f(), 1);
  EXPECT_TRUE(f.invalidate());
  EXPECT_EQ(f(), 2);
}

TEST_F(Mcache, ArgumentsTakenByValueMayBeMovedByTheCallable) {
  int calls = 0;
  auto f = tcache::mcache([&calls](std::string s) {
    ++calls;
    std::string mine = std::move(s);  // the key must have been copied before
    return mine + "!";
  });
  EXPECT_EQ(f(std::string("long enough not to fit in the small buffer")),
            "long enough not to fit in the small buffer!");
  EXPECT_EQ(f(std::string("long enough not to fit in the small buffer")),
            "long enough not to fit in the small buffer!");
  EXPECT_EQ(calls, 1);
}

struct Pricer {
  int base = 100;
  int calls = 0;
  double price(int day) {
    ++calls;
    return base + day * 0.5;
  }
  double quote(int day) const { return base + day; }
};

TEST_F(Mcache, MemberFunctionWithAKeyFunction) {
  auto price = tcache::mcache(&Pricer::price, {}, [](const Pricer&, int day) { return day; });
  Pricer a;
  Pricer b;
  b.base = 200;
  EXPECT_EQ(price(a, 2), 101.0);
  EXPECT_EQ(price(a, 2), 101.0);
  EXPECT_EQ(price(b, 2), 101.0);  // the object is not part of the key
  EXPECT_EQ(a.calls, 1);
  EXPECT_EQ(b.calls, 0);
  EXPECT_TRUE(price.invalidate(b, 2));
  EXPECT_EQ(price(b, 2), 201.0);
  EXPECT_EQ(b.calls, 1);

  auto quote = tcache::mcache(&Pricer::quote, {.maxsize = 8},
                              [](const Pricer& p, int day) { return std::pair(p.base, day); });
  EXPECT_EQ(quote(a, 1), 101.0);
  EXPECT_EQ(quote(b, 1), 201.0);  // the key function kept the base
  EXPECT_EQ(quote.cache_info().misses, 2u);
}

TEST_F(Mcache, ExceptionsPropagateAndAreNotCached) {
  int calls = 0;
  auto f = tcache::mcache([&calls](int x) {
    if (++calls == 1) throw std::runtime_error("first call fails");
    return x + 1;
  });
  EXPECT_THROW(f(1), std::runtime_error);
  EXPECT_EQ(f.cache_info().currsize, 0u);
  EXPECT_EQ(f(1), 2);
  EXPECT_EQ(f(1), 2);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(f.cache_info().misses, 2u);
  EXPECT_EQ(f.cache_info().hits, 1u);
}

TEST_F(Mcache, RecursionThroughItsOwnWrapper) {
  int calls = 0;
  std::function<std::uint64_t(int)> self;
  auto fib = tcache::mcache([&](int n) -> std::uint64_t {
    ++calls;
    return n < 2 ? static_cast<std::uint64_t>(n) : self(n - 1) + self(n - 2);
  });
  self = fib;
  EXPECT_EQ(fib(90), 2880067194370816120ull);
  EXPECT_EQ(calls, 91);  // each n once
  EXPECT_EQ(fib(90), 2880067194370816120ull);
  EXPECT_EQ(calls, 91);
}

TEST_F(Mcache, EvictsByItsPolicy) {
  int calls = 0;
  auto f = tcache::mcache(
      [&calls](int x) {
        ++calls;
        return x;
      },
      {.maxsize = 2, .policy = Policy::fifo});
  f(1);
  f(2);
  f(1);  // a hit; fifo does not care
  f(3);  // evicts 1
  EXPECT_EQ(calls, 3);
  f(2);
  EXPECT_EQ(calls, 3);
  f(1);
  EXPECT_EQ(calls, 4);
  EXPECT_EQ(f.cache_info().currsize, 2u);
  EXPECT_EQ(f.cache_info().maxsize, 2u);
}

TEST_F(Mcache, TtlExpiresEntries) {
  int calls = 0;
  auto f = tcache::mcache(
      [&calls](int x) {
        ++calls;
        return x;
      },
      {.ttl = 10ms});
  f(1);
  std::this_thread::sleep_for(30ms);
  f(1);
  EXPECT_EQ(calls, 2);

  auto g = tcache::mcache(
      [&calls](int x) {
        ++calls;
        return x;
      },
      {.ttl = 1h});
  g(1);
  g(1);
  EXPECT_EQ(calls, 3);
}

TEST_F(Mcache, TtlZeroTakesTheConfiguredDefault) {
  int calls = 0;
  auto count = [&calls](int x) {
    ++calls;
    return x;
  };
  tcache::ScopedConfig scope({.default_ttl = 10ms});
  auto f = tcache::mcache(count);
  f(1);
  std::this_thread::sleep_for(30ms);
  f(1);
  EXPECT_EQ(calls, 2);
}

TEST_F(Mcache, ClearAndInvalidate) {
  int calls = 0;
  auto f = tcache::mcache([&calls](int x) {
    ++calls;
    return -x;
  });
  f(1);
  f(2);
  EXPECT_EQ(f.cache_info().currsize, 2u);
  EXPECT_TRUE(f.invalidate(1));
  EXPECT_FALSE(f.invalidate(1));
  EXPECT_FALSE(f.invalidate(3));
  f(1);
  EXPECT_EQ(calls, 3);
  f.cache_clear();
  EXPECT_EQ(f.cache_info().currsize, 0u);
  f(2);
  EXPECT_EQ(calls, 4);
}

TEST_F(Mcache, CopiesShareOneCache) {
  int calls = 0;
  auto f = tcache::mcache([&calls](int x) {
    ++calls;
    return x;
  });
  auto g = f;
  f(1);
  g(1);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(g.cache_info().hits, 1u);
}

TEST_F(Mcache, RejectsBadOptions) {
  auto id = [](int x) { return x; };
  try {
    tcache::mcache(id, {.maxsize = 0});
    ADD_FAILURE() << "maxsize 0 accepted";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::invalid_option);
    EXPECT_NE(std::string(e.what()).find("maxsize"), std::string::npos) << e.what();
  }
  try {
    tcache::mcache(id, {.ttl = -1ms});
    ADD_FAILURE() << "negative ttl accepted";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::invalid_option);
    EXPECT_NE(std::string(e.what()).find("ttl"), std::string::npos) << e.what();
  }
  try {
    tcache::mcache(id, {.policy = static_cast<Policy>(42)});
    ADD_FAILURE() << "policy 42 accepted";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::invalid_option);
    EXPECT_NE(std::string(e.what()).find("policy"), std::string::npos) << e.what();
  }
}

TEST_F(Mcache, ScopedDisableCallsThrough) {
  int calls = 0;
  auto count = [&calls](int x) {
    ++calls;
    return x;
  };
  auto before = tcache::mcache(count);
  before(1);
  {
    tcache::ScopedConfig scope({.disable = true});
    auto inside = tcache::mcache(count);
    before(1);
    before(1);
    inside(1);
    inside(1);
    EXPECT_EQ(calls, 5);  // nothing cached while the scope lives
    const tcache::CacheInfo info = before.cache_info();
    EXPECT_EQ(info.hits, 0u);  // and nothing counted
    EXPECT_EQ(info.misses, 1u);
    EXPECT_EQ(inside.cache_info().currsize, 0u);
  }
  before(1);  // caches again
  EXPECT_EQ(calls, 5);
  EXPECT_EQ(before.cache_info().hits, 1u);
}

TEST_F(Mcache, ManyThreadsShareTheCache) {
  std::atomic<int> calls{0};
  auto f = tcache::mcache(
      [&calls](int x) {
        ++calls;
        return x * 3;
      },
      {.maxsize = 256});
  const int per_thread = 40000 / tcache::test::kSlowdown;
  const int r = tcache::test::run_threads(4, [&](int t) {
    std::mt19937_64 rng(tcache::test::seed_for(t));
    for (int i = 0; i < per_thread; ++i) {
      const int x = static_cast<int>(rng() % 512);
      if (f(x) != x * 3) return 1;
    }
    return 0;
  });
  EXPECT_EQ(r, 0);
  const tcache::CacheInfo info = f.cache_info();
  EXPECT_EQ(info.hits + info.misses, 4u * static_cast<std::uint64_t>(per_thread));
  EXPECT_EQ(info.misses, static_cast<std::uint64_t>(calls.load()));
  EXPECT_LE(info.currsize, 256u);
}

// ---------------------------------------------------------------------------
// Keys: the codec's canonical bytes decide equality (issues 11 and 12)

struct Adder {  // an aggregate without hash_value: the codec handles it
  int base;
  int add(int x) const { return base + x; }
};

TEST_F(Mcache, AnyKeyTheCodecEncodesIsAKey) {
  auto add = tcache::mcache(&Adder::add, {.maxsize = 10});
  EXPECT_EQ(add(Adder{1}, 1), 2);
  EXPECT_EQ(add(Adder{2}, 1), 3);
  EXPECT_EQ(add(Adder{1}, 1), 2);
  EXPECT_EQ(add.cache_info().hits, 1u);
  EXPECT_TRUE(add.invalidate(Adder{2}, 1));
  EXPECT_FALSE(add.invalidate(Adder{2}, 1));
  std::atomic<int> calls{0};
  auto sum = tcache::mcache(
      [&](const std::map<std::string, std::vector<int>>& m, std::optional<std::chrono::seconds> t) {
        calls.fetch_add(1);
        return static_cast<int>(m.size()) + static_cast<int>(t ? t->count() : 0);
      });
  EXPECT_EQ(sum({{"a", {1}}}, 5s), 6);
  EXPECT_EQ(sum({{"a", {1}}}, 5s), 6);
  EXPECT_EQ(sum({{"a", {2}}}, 5s), 6);
  EXPECT_EQ(calls.load(), 2);
}

TEST_F(Mcache, NegativeZeroIsNotZeroAndEveryNaNIsOneKey) {
  std::atomic<int> calls{0};
  auto inv = tcache::mcache([&](double x) {
    calls.fetch_add(1);
    return 1.0 / x;
  });
  EXPECT_EQ(inv(0.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(inv(-0.0), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(calls.load(), 2);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(std::isnan(inv(nan)));
  EXPECT_TRUE(std::isnan(inv(-nan)));  // as bcache: one canonical NaN
  EXPECT_EQ(calls.load(), 3);
}

TEST_F(Mcache, ViewAndPointerKeysOwnTheirBytes) {
  std::atomic<int> calls{0};
  auto by_pointer = tcache::mcache([&](const char* s) {
    calls.fetch_add(1);
    return std::string(s) + "!";
  });
  auto by_view = tcache::mcache([&](std::string_view s) {
    calls.fetch_add(1);
    return std::string(s) + "?";
  });
  char buffer[16] = "line-A";
  EXPECT_EQ(by_pointer(buffer), "line-A!");
  std::memcpy(buffer, "line-B", 7);  // same address, other string
  EXPECT_EQ(by_pointer(buffer), "line-B!");
  EXPECT_EQ(calls.load(), 2);
  auto heap = std::make_unique<std::string>("quote-1");
  EXPECT_EQ(by_view(*heap), "quote-1?");
  heap.reset();  // the key must not point here (ASan: use after free before)
  for (int i = 0; i < 100; ++i) by_view(std::to_string(i));  // grow, rehash
  EXPECT_EQ(by_view(std::string("quote-1")), "quote-1?");
  EXPECT_EQ(calls.load(), 2 + 1 + 100);
}

}  // namespace
