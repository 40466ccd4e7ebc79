// tests/lease_test.cc: single flight in the store (Store::get_or_lease,
// release_lease, get_or_compute) across threads and forked processes, and
// the prefix operations the decorators build cache_clear() on.
//
// The computations count themselves in anonymous shared memory, so the
// tests can assert that a value was computed exactly once however the
// callers interleave.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tcache/tcache.h"

namespace {

using namespace std::chrono_literals;
using tcache::Store;
using tcache::test::Shared;

class LeaseTest : public tcache::test::TempDirTest {
 protected:
  LeaseTest() : TempDirTest("tcache-lease") {}
  Store open() {
    tcache::StoreOptions o;
    o.capacity_bytes = 16 << 20;
    return Store::open(file_, o);
  }
};

TEST_F(LeaseTest, AMissTakesTheLeaseAndReadersSeeAMiss) {
  Store s = open();
  std::string v;
  EXPECT_FALSE(s.get_or_lease("k", v, 10s));  // ours now
  EXPECT_FALSE(s.get("k").has_value());
  EXPECT_FALSE(s.contains("k"));
  EXPECT_EQ(s.count_prefix("k"), 0u);  // a lease is not an entry
  s.put("k", "value");                 // replaces the lease
  ASSERT_TRUE(s.get_or_lease("k", v, 10s));
  EXPECT_EQ(v, "value");
}

TEST_F(LeaseTest, ReleaseLetsTheNextCallerTakeTheLease) {
  Store s = open();
  std::string v;
  ASSERT_FALSE(s.get_or_lease("k", v, 10min));
  s.release_lease("k");
  EXPECT_FALSE(s.get_or_lease("k", v, 10min));  // would wait 10 min if still held
  s.release_lease("k");
  s.release_lease("never-leased");  // harmless
  s.put("k", "v");
  s.release_lease("k");  // a value is not a lease: it stays
  EXPECT_EQ(s.get("k"), "v");
}

TEST_F(LeaseTest, ThreadsComputeOnce) {
  Store s = open();
  std::atomic<int> computed{0};
  constexpr int kThreads = 8;
  constexpr int kKeys = 20;
  const int rc = tcache::test::run_threads(kThreads, [&](int t) {
    for (int i = 0; i < kKeys; ++i) {
      const std::string key = "key-" + std::to_string((i + t) % kKeys);
      const std::string v = s.get_or_compute(key, [&] {
        computed.fetch_add(1);
        std::this_thread::sleep_for(1ms);  // a slow function, so callers overlap
        return "value of " + key;
      });
      if (v != "value of " + key) return tcache::test::report(1, "wrong value " + v);
    }
    return 0;
  });
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(computed.load(), kKeys);
}

TEST_F(LeaseTest, ProcessesComputeOnce) {
  { Store s = open(); }
  Shared<std::atomic<int>> computed;
  constexpr int kProcs = 4;
  constexpr int kKeys = 30;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pids.push_back(tcache::test::spawn([&, p] {
      Store s = open();
      for (int i = 0; i < kKeys; ++i) {
        const std::string key = "key-" + std::to_string((i * 7 + p) % kKeys);
        const std::string v = s.get_or_compute(key, [&] {
          computed->fetch_add(1);
          std::this_thread::sleep_for(2ms);
          return "value of " + key;
        });
        if (v != "value of " + key) return tcache::test::report(1, "wrong value " + v);
      }
      return 0;
    }));
  }
  tcache::test::expect_exited_zero(pids, "worker");
  EXPECT_EQ(computed->load(), kKeys);
}

TEST_F(LeaseTest, ALeaseOfAKilledProcessIsTakenOver) {
  { Store s = open(); }
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t holder = tcache::test::spawn([&] {
    Store s = open();
    std::string v;
    if (s.get_or_lease("k", v, 1h)) return 1;
    const char c = 'x';
    if (::write(ready[1], &c, 1) != 1) return tcache::test::kExitPipe;
    ::pause();  // holding the lease until killed
    return 0;
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  ASSERT_EQ(::kill(holder, SIGKILL), 0);
  tcache::test::wait_for(holder);

  Store s = open();
  std::string v;
  // The lease has an hour left, but its holder is gone: taken over at once.
  EXPECT_FALSE(s.get_or_lease("k", v, 1h));
  s.put("k", "computed again");
  EXPECT_EQ(s.get("k"), "computed again");
}

TEST_F(LeaseTest, ALeaseOfALiveButStuckHolderEndsAtItsDeadline) {
  Store s = open();
  std::string v;
  // The lease's deadline is wall-clock time in whole milliseconds (it is in
  // the file); no other caller may take the lease before it, whatever the
  // scheduling.
  const auto deadline =
      std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now()) +
      50ms;
  ASSERT_FALSE(s.get_or_lease("k", v, 50ms));  // this thread holds it and never puts
  std::thread other([&] {
    Store s2 = open();
    std::string v2;
    EXPECT_FALSE(s2.get_or_lease("k", v2, 10s));  // takes over, at the deadline
    EXPECT_GE(std::chrono::system_clock::now(), deadline);
  });
  other.join();
}

TEST_F(LeaseTest, AWaiterGetsTheHoldersValue) {
  Store s = open();
  std::string v;
  ASSERT_FALSE(s.get_or_lease("k", v, 1h));
  std::thread waiter([&] {
    Store s2 = open();
    std::string v2;
    EXPECT_TRUE(s2.get_or_lease("k", v2, 1h));
    EXPECT_EQ(v2, "the value");
  });
  s.put("k", "the value");
  waiter.join();
}

TEST_F(LeaseTest, ComputeThatThrowsReleasesTheLease) {
  Store s = open();
  EXPECT_THROW(s.get_or_compute(
                   "k", []() -> std::string { throw std::runtime_error("boom"); }, {}, 1h),
               std::runtime_error);
  // Not left holding an hour-long lease: the next call computes at once.
  EXPECT_EQ(s.get_or_compute(
                "k", [] { return std::string("ok"); }, {}, 1h),
            "ok");
}

TEST_F(LeaseTest, InvalidArguments) {
  Store s = open();
  std::string v;
  try {
    s.get_or_lease("k", v, 0ms);
    ADD_FAILURE() << "no error";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::invalid_option);
  }
  const std::string huge(Store::kMaxKeyBytes + 1, 'k');
  try {
    s.get_or_lease(huge, v, 1s);
    ADD_FAILURE() << "no error";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::key_too_large);
  }
}

TEST_F(LeaseTest, ReadOnlyStoresNeverLease) {
  { open().put("present", "v"); }
  tcache::StoreOptions o;
  o.read_only = true;
  Store s = Store::open(file_, o);
  std::string v;
  EXPECT_FALSE(s.get_or_lease("absent", v, 1h));
  EXPECT_FALSE(s.get_or_lease("absent", v, 1h));  // no lease was left to wait on
  EXPECT_TRUE(s.get_or_lease("present", v, 1h));
}

TEST_F(LeaseTest, PrefixOperations) {
  Store s = open();
  for (int i = 0; i < 100; ++i) s.put("a/" + std::to_string(i), "v");
  for (int i = 0; i < 50; ++i) s.put("b/" + std::to_string(i), "v");
  s.put("a-expired", "v", 1ms);
  std::string v;
  ASSERT_FALSE(s.get_or_lease("a/leased", v, 1h));
  std::this_thread::sleep_for(5ms);  // let "a-expired" expire
  EXPECT_EQ(s.count_prefix("a/"), 100u);
  EXPECT_EQ(s.count_prefix("b/"), 50u);
  EXPECT_EQ(s.count_prefix(""), 150u);
  EXPECT_EQ(s.erase_prefix("a/"), 100u);
  EXPECT_EQ(s.count_prefix("a/"), 0u);
  EXPECT_EQ(s.count_prefix("b/"), 50u);
  EXPECT_TRUE(s.get("b/7").has_value());
  EXPECT_FALSE(s.get("a/7").has_value());
}

}  // namespace
