// memory_backend_test: the "memory" Backend (make_memory_backend): get, put,
// erase, TTLs, the entry bound, prefix operations, and single flight among
// threads (one computation per key, a released lease passes to a waiter, an
// expired lease is taken over, a lease taken as a detail::LeaseHolder is
// completed on another thread acting as it).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tcache/backend.h"
#include "tcache/detail/lease_holder.h"

namespace {

using namespace std::chrono_literals;

TEST(MemoryBackend, GetPutErase) {
  auto b = tcache::make_memory_backend(100);
  EXPECT_EQ(b->name(), "memory");
  EXPECT_EQ(b->max_entries(), 100u);
  std::string v = "left alone on a miss";
  EXPECT_FALSE(b->get("k", v));
  EXPECT_EQ(v, "left alone on a miss");
  b->put("k", "one", 0ms);
  ASSERT_TRUE(b->get("k", v));
  EXPECT_EQ(v, "one");
  b->put("k", std::string(1000, 'x'), 0ms);  // replaces
  ASSERT_TRUE(b->get("k", v));
  EXPECT_EQ(v, std::string(1000, 'x'));
  b->put(std::string_view("\0bin\0", 5), std::string_view("\0\1", 2), 0ms);
  ASSERT_TRUE(b->get(std::string_view("\0bin\0", 5), v));
  EXPECT_EQ(v, std::string_view("\0\1", 2));
  EXPECT_TRUE(b->erase("k"));
  EXPECT_FALSE(b->erase("k"));
  EXPECT_FALSE(b->get("k", v));
}

TEST(MemoryBackend, TtlExpiresEntries) {
  auto b = tcache::make_memory_backend(100);
  b->put("short", "v", 1ms);
  b->put("long", "v", 1h);
  b->put("forever", "v", 0ms);
  std::this_thread::sleep_for(20ms);
  std::string v;
  EXPECT_FALSE(b->get("short", v));
  EXPECT_TRUE(b->get("long", v));
  EXPECT_TRUE(b->get("forever", v));
  EXPECT_EQ(b->count_prefix(""), 2u);
}

TEST(MemoryBackend, KeepsAtMostMaxEntries) {
  for (const tcache::Policy p : {tcache::Policy::lru, tcache::Policy::lfu, tcache::Policy::fifo}) {
    auto b = tcache::make_memory_backend(50, p);
    for (int i = 0; i < 1000; ++i) b->put("key-" + std::to_string(i), "v", 0ms);
    EXPECT_LE(b->count_prefix(""), 50u);
    std::string v;
    EXPECT_TRUE(b->get("key-999", v));  // the newest stays under every policy
  }
}

TEST(MemoryBackend, PrefixOperations) {
  auto b = tcache::make_memory_backend(1000);
  for (int i = 0; i < 10; ++i) b->put("a:" + std::to_string(i), "v", 0ms);
  for (int i = 0; i < 5; ++i) b->put("b:" + std::to_string(i), "v", 0ms);
  b->put("a", "not under a:", 0ms);
  EXPECT_EQ(b->count_prefix("a:"), 10u);
  EXPECT_EQ(b->count_prefix("b:"), 5u);
  EXPECT_EQ(b->count_prefix(""), 16u);
  EXPECT_EQ(b->count_prefix("c:"), 0u);
  EXPECT_EQ(b->erase_prefix("a:"), 10u);
  EXPECT_EQ(b->count_prefix("a:"), 0u);
  EXPECT_EQ(b->count_prefix(""), 6u);
  std::string v;
  EXPECT_TRUE(b->get("a", v));
  EXPECT_EQ(b->erase_prefix(""), 6u);
  EXPECT_EQ(b->count_prefix(""), 0u);
}

TEST(MemoryBackend, RejectsZeroEntries) {
  try {
    tcache::make_memory_backend(0);
    ADD_FAILURE() << "max_entries 0 accepted";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::invalid_option);
  }
}

TEST(MemoryBackend, GetOrLeaseReturnsAPresentValue) {
  auto b = tcache::make_memory_backend(10);
  b->put("k", "v", 0ms);
  std::string v;
  EXPECT_TRUE(b->get_or_lease("k", v, 60s));
  EXPECT_EQ(v, "v");
}

TEST(MemoryBackend, TheHolderMayAskAgain) {
  auto b = tcache::make_memory_backend(10);
  std::string v;
  EXPECT_FALSE(b->get_or_lease("k", v, 60s));
  EXPECT_FALSE(b->get_or_lease("k", v, 60s));  // still ours: no waiting on ourselves
  b->put("k", "v", 0ms);
  EXPECT_TRUE(b->get_or_lease("k", v, 60s));
}

// Many threads miss one key at once: exactly one computes, every thread
// gets its value.
TEST(MemoryBackend, SingleFlightComputesOnce) {
  auto b = tcache::make_memory_backend(100);
  constexpr int kThreads = 8;
  for (int round = 0; round < 20; ++round) {
    const std::string key = "key-" + std::to_string(round);
    std::atomic<int> computations{0};
    std::latch start(kThreads);
    const int r = tcache::test::run_threads(kThreads, [&](int) {
      start.arrive_and_wait();
      std::string v;
      if (!b->get_or_lease(key, v, 60s)) {
        ++computations;
        v = "value of " + key;
        b->put(key, v, 0ms);
      }
      return v == "value of " + key ? 0 : 1;
    });
    EXPECT_EQ(r, 0);
    EXPECT_EQ(computations.load(), 1) << key;
  }
}

// The first holder fails and releases its lease: exactly one other thread
// takes it and computes; everyone else gets that value.
TEST(MemoryBackend, ReleasedLeasePassesToAnotherCaller) {
  auto b = tcache::make_memory_backend(100);
  constexpr int kThreads = 6;
  std::atomic<int> leases{0};
  std::latch start(kThreads);
  const int r = tcache::test::run_threads(kThreads, [&](int) {
    start.arrive_and_wait();
    std::string v;
    for (;;) {
      if (b->get_or_lease("k", v, 60s)) return v == "computed" ? 0 : 1;
      if (leases.fetch_add(1) == 0) {
        b->release_lease("k");  // the first computation fails
        continue;               // (and this caller asks again, like a retry)
      }
      b->put("k", "computed", 0ms);
      return 0;
    }
  });
  EXPECT_EQ(r, 0);
  EXPECT_EQ(leases.load(), 2);
}

// A holder that never puts: once its lease_timeout passes, a waiter takes
// the lease over; the old holder's late release does not end the new lease.
TEST(MemoryBackend, ExpiredLeaseIsTakenOver) {
  auto b = tcache::make_memory_backend(100);
  std::string v;
  ASSERT_FALSE(b->get_or_lease("k", v, 50ms));  // this thread holds it, and stalls

  // `other` stays alive to the end, so that no later thread gets its id.
  std::atomic<bool> took_over{false};
  std::latch taken(1);
  std::latch done(1);
  std::thread other([&] {
    std::string w;
    took_over = !b->get_or_lease("k", w, 60s);  // waits ~50 ms, then holds the lease
    taken.count_down();
    done.wait();
  });
  taken.wait();
  EXPECT_TRUE(took_over.load());

  b->release_lease("k");  // stale: no longer ours
  bool got = false;
  std::thread third([&] {
    std::string w;
    // The new holder's lease (60 s) stands, so this waits for the put below
    // (or finds the value if the put came first).
    got = b->get_or_lease("k", w, 60s) && w == "late";
  });
  b->put("k", "late", 0ms);  // anyone's put ends the flight with a value
  third.join();
  EXPECT_TRUE(got);
  done.count_down();
  other.join();
}

TEST(MemoryBackend, PutWakesAllWaiters) {
  auto b = tcache::make_memory_backend(100);
  std::string v;
  ASSERT_FALSE(b->get_or_lease("k", v, 60s));
  constexpr int kWaiters = 4;
  std::atomic<int> ok{0};
  std::vector<std::thread> waiters;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.emplace_back([&] {
      std::string w;
      if (b->get_or_lease("k", w, 60s) && w == "done") ++ok;
    });
  }
  b->put("k", "done", 0ms);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(ok.load(), kWaiters);
}

// True if a new thread's get_or_lease of `key` (lease_timeout an hour)
// takes the lease. A put after a backstop of minutes ends a wait that a
// lease nobody completes would make last the hour, and fails.
bool another_thread_takes_the_lease(tcache::Backend& b, const std::string& key) {
  std::promise<bool> taken;
  std::future<bool> result = taken.get_future();
  std::thread caller([&] {
    std::string v;
    taken.set_value(!b.get_or_lease(key, v, std::chrono::hours(1)));
  });
  if (result.wait_for(std::chrono::minutes(5)) != std::future_status::ready) {
    ADD_FAILURE() << "still waiting for the lease of " << key << " after 5 minutes";
    b.put(key, "backstop", 0ms);
  }
  caller.join();
  return result.get();
}

// A lease taken on one thread as a LeaseHolder (as the Python acache takes
// it on tcache's pool) is released on another thread acting as that holder:
// the flight ends there, and the next caller takes the lease at once.
TEST(MemoryBackend, AHandedOverLeaseIsReleasedOnAnotherThread) {
  auto b = tcache::make_memory_backend(16);
  const tcache::detail::LeaseHolder holder = tcache::detail::new_lease_holder();
  std::thread([&] {
    tcache::detail::ActAsLeaseHolder as(holder);
    std::string v;
    EXPECT_FALSE(b->get_or_lease("k", v, std::chrono::hours(1)));
  }).join();
  b->release_lease("k");  // this thread as itself: not the holder, ignored
  {
    tcache::detail::ActAsLeaseHolder as(holder);
    b->release_lease("k");
  }
  EXPECT_TRUE(another_thread_takes_the_lease(*b, "k"));
  b->put("k", "v", 0ms);
}

// The same holder asking again finds the lease its own, on any thread.
TEST(MemoryBackend, AHolderMayAskAgainOnAnotherThread) {
  auto b = tcache::make_memory_backend(16);
  const tcache::detail::LeaseHolder holder = tcache::detail::new_lease_holder();
  std::string v;
  {
    tcache::detail::ActAsLeaseHolder as(holder);
    ASSERT_FALSE(b->get_or_lease("k", v, std::chrono::hours(1)));
  }
  std::thread([&] {
    tcache::detail::ActAsLeaseHolder as(holder);
    std::string w;
    EXPECT_FALSE(b->get_or_lease("k", w, std::chrono::hours(1)));
    b->put("k", "v", 0ms);
  }).join();
  ASSERT_TRUE(b->get_or_lease("k", v, std::chrono::hours(1)));
  EXPECT_EQ(v, "v");
}

// A holder whose lease expired and was taken over by another holder is
// stale: its release (on any thread, acting as it) leaves the new holder's
// flight alone, which that holder's release then ends.
TEST(MemoryBackend, AStaleHoldersReleaseLeavesTheNewHoldersLease) {
  auto b = tcache::make_memory_backend(16);
  const tcache::detail::LeaseHolder stale = tcache::detail::new_lease_holder();
  const tcache::detail::LeaseHolder fresh = tcache::detail::new_lease_holder();
  std::string v;
  {
    tcache::detail::ActAsLeaseHolder as(stale);
    ASSERT_FALSE(b->get_or_lease("k", v, 0ms));  // expires at once
  }
  {
    tcache::detail::ActAsLeaseHolder as(fresh);
    ASSERT_FALSE(b->get_or_lease("k", v, std::chrono::hours(1)));  // takes it over
  }
  {
    tcache::detail::ActAsLeaseHolder as(stale);
    b->release_lease("k");  // ignored
    // Still fresh's for the hour: the stale holder asking again waits for
    // fresh's put (made below, on another thread).
    std::thread putter([&] {
      tcache::detail::ActAsLeaseHolder as_fresh(fresh);
      b->put("k", "fresh", 0ms);
    });
    EXPECT_TRUE(b->get_or_lease("k", v, std::chrono::hours(1)));
    EXPECT_EQ(v, "fresh");
    putter.join();
  }
}

TEST(MemoryBackend, AForkedChildTakesOverItsParentsLeases) {
  auto b = tcache::make_memory_backend(16, tcache::Policy::lru);
  std::string v;
  // Another thread of the parent holds the lease (the child has no copy of
  // that thread, so nobody in the child would ever put the value).
  std::thread([&] { EXPECT_FALSE(b->get_or_lease("k", v, std::chrono::hours(1))); }).join();
  tcache::test::expect_child_exits_zero("child", [&] {
    if (b->get_or_lease("k", v, std::chrono::hours(1))) return 1;  // waited an hour before
    b->put("k", "child", {});
    return b->get("k", v) && v == "child" ? 0 : 2;
  });
  b->put("k", "parent", {});
  ASSERT_TRUE(b->get("k", v));
  EXPECT_EQ(v, "parent");
}

}  // namespace
