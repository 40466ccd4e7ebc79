// tests/lease_test.cc: single flight in the store (Store::get_or_lease,
// release_lease, get_or_compute) across threads and forked processes, and
// the prefix operations the decorators build cache_clear() on.
//
// The computations count themselves in anonymous shared memory, so the
// tests can assert that a value was computed exactly once however the
// callers interleave.

#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "support/stall.h"
#include "support/test_support.h"
#include "support/workers.h"
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
  tcache::test::run_workers(kProcs, 1, {}, [&](const tcache::test::Worker& me) {
    const int p = me.process;
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
  }).wait();
  EXPECT_EQ(computed->load(), kKeys);
}

// Leaves a lease on `key` whose holder was killed.
void leave_dead_lease(const std::function<Store()>& open, const std::string& key) {
  const pid_t holder = tcache::test::spawn_ready([&](const auto& hold) {
    Store s = open();
    std::string v;
    if (s.get_or_lease(key, v, 1h)) return 1;
    hold();  // holding the lease until killed
    return 0;
  });
  ASSERT_GT(holder, 0);
  ASSERT_EQ(::kill(holder, SIGKILL), 0);
  const int status = tcache::test::wait_for(holder);
  ASSERT_TRUE(WIFSIGNALED(status))
      << "the holder did not take the lease: " << tcache::test::describe_status(status);
}

TEST_F(LeaseTest, ALeaseOfAKilledProcessIsTakenOver) {
  { Store s = open(); }
  ASSERT_NO_FATAL_FAILURE(leave_dead_lease([this] { return open(); }, "k"));
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

// ---------------------------------------------------------------------------
// At most one live holder per key, always (issue 11, item 2). A takeover or
// release decides from a lease's content (its holder is dead; it is ours)
// and then unlinks; meanwhile the lease may have gone and a new holder's
// lease taken the same chunk and slot (LIFO free lists). The tests hold one
// thread between the decision and the unlink (tests/support/stall.h).

using tcache::detail::TestPoint;
using tcache::test::StallAt;

TEST_F(LeaseTest, ALateTakeoverLeavesTheNewHoldersLease) {
  ASSERT_NO_FATAL_FAILURE(leave_dead_lease([this] { return open(); }, "k"));
  Store s = open();
  StallAt stall(TestPoint::lease_takeover);
  std::atomic<int> late{-1};  // the stalled waiter: 1 = it held the lease, 0 = it got the value
  std::string late_value;
  std::thread waiter([&] {
    stall.arm();
    late = s.get_or_lease("k", late_value, 1h) ? 0 : 1;
  });
  stall.wait_inside();  // it found the holder dead and is about to unlink
  std::string v;
  ASSERT_FALSE(s.get_or_lease("k", v, 1h));  // we take the lease over first
  stall.release();
  // The waiter must now wait for us, a live holder: it either waits (the
  // hook says so) or, wrongly, returns as a second holder.
  while (late.load() < 0 && !stall.waiting()) std::this_thread::yield();
  EXPECT_EQ(late.load(), -1) << "two live holders of one lease";
  s.put("k", "computed once");
  waiter.join();
  EXPECT_EQ(late.load(), 0);
  EXPECT_EQ(late_value, "computed once");
}

TEST_F(LeaseTest, ALateReleaseLeavesTheNextHoldersLease) {
  Store s = open();
  std::string v;
  ASSERT_FALSE(s.get_or_lease("k", v, 1h));  // this process holds the lease
  int holds[2], stop[2], said[2];
  ASSERT_EQ(::pipe(holds), 0);
  ASSERT_EQ(::pipe(stop), 0);
  ASSERT_EQ(::pipe(said), 0);
  // B waits for the lease, tells us when it holds it, and puts the value
  // when we say so.
  const pid_t b = tcache::test::spawn([&] {
    Store s2 = open();
    std::string got;
    if (s2.get_or_lease("k", got, 1h)) return tcache::test::report(1, "B got a value");
    char c = 'b';
    if (::write(holds[1], &c, 1) != 1 || ::read(stop[0], &c, 1) != 1) {
      return tcache::test::kExitPipe;
    }
    s2.put("k", "from B");
    return 0;
  });
  // Two threads of ours release at once: the stalled one read our lease
  // and is about to unlink it when the other one has already done so and B
  // has taken the lease (into the same chunk and slot).
  StallAt stall(TestPoint::lease_release);
  std::thread late([&] {
    stall.arm();
    s.release_lease("k");
  });
  stall.wait_inside();
  s.release_lease("k");
  char c;
  ASSERT_EQ(::read(holds[0], &c, 1), 1);  // B holds the lease now
  stall.release();
  late.join();
  // C asks for the key: it must wait for B (it says 'w' through the
  // lease_wait hook), not become a second holder ('H').
  const pid_t checker = tcache::test::spawn([&] {
    static int out = -1;
    out = said[1];
    tcache::detail::set_test_hook([](TestPoint point, std::string_view) {
      static bool once = false;
      const char w = 'w';
      if (point == TestPoint::lease_wait && !once) once = ::write(out, &w, 1) == 1;
    });
    Store s3 = open();
    std::string got;
    const char r = s3.get_or_lease("k", got, 1h) ? (got == "from B" ? 'h' : '?') : 'H';
    return ::write(out, &r, 1) == 1 ? 0 : tcache::test::kExitPipe;
  });
  ASSERT_EQ(::read(said[0], &c, 1), 1);
  EXPECT_EQ(c, 'w') << "a second live holder of the lease";
  const char go = 'g';
  ASSERT_EQ(::write(stop[1], &go, 1), 1);
  if (c == 'w') {
    ASSERT_EQ(::read(said[0], &c, 1), 1);
    EXPECT_EQ(c, 'h');  // B's value, computed once
  }
  tcache::test::expect_exited_zero({b, checker}, "holder or checker");
  for (int fd : {holds[0], holds[1], stop[0], stop[1], said[0], said[1]}) ::close(fd);
}

// Processes race to take over dead holders' leases and to lease anew; each
// holder counts itself in shared memory while it holds. A waiter that found
// a dead holder is held before its unlink until someone has become a holder
// meanwhile (the hook), then goes on: it must not unlink that holder's lease.
struct Holders {
  std::atomic<int> now{0};                  // live holders of the key at this moment
  std::atomic<int> most{0};                 // the most ever seen at once
  std::atomic<std::uint64_t> taken{0};      // leases taken so far
  std::atomic<std::uint64_t> takeovers{0};  // takeover unlinks held in the window
};
Holders* g_holders = nullptr;

void hold_takeover(TestPoint point, std::string_view) {
  if (point != TestPoint::lease_takeover) return;
  ++g_holders->takeovers;
  const std::uint64_t seen = g_holders->taken.load();
  for (int i = 0; i < 2000 && g_holders->taken.load() == seen; ++i) sched_yield();
}

// Counts the caller in as a holder, holds for a while (until someone else
// takes the lease, which must not happen, or a few hundred yields), and
// counts it out.
void hold(Holders& h) {
  const int n = h.now.fetch_add(1) + 1;
  int most = h.most.load();
  while (n > most && !h.most.compare_exchange_weak(most, n)) {
  }
  const std::uint64_t seen = h.taken.fetch_add(1) + 1;
  for (int i = 0; i < 300 && h.taken.load() == seen; ++i) sched_yield();
  h.now.fetch_sub(1);
}

TEST_F(LeaseTest, NeverTwoLiveHoldersWhileDeadHoldersAreTakenOver) {
  { Store s = open(); }
  tcache::test::Shared<Holders> h;
  g_holders = &*h;
  constexpr int kProcs = 4;
  const int rounds = 60 / tcache::test::kSlowdown + 4;
  tcache::test::run_workers(kProcs, 1, {.who = "contender"}, [&](const tcache::test::Worker& me) {
    const int p = me.process;
    tcache::detail::set_test_hook(&hold_takeover);
    for (int i = 0; i < rounds; ++i) {
      if ((i + p) % 2 == 0) {
        // A holder that dies holding: its lease is left for the others
        // to take over (it counts itself out first: it is not live).
        const pid_t mortal = tcache::test::spawn([&] {
          Store s = open();
          std::string v;
          if (s.get_or_lease("k", v, 1h)) return tcache::test::report(1, "a value appeared");
          hold(*h);
          std::_Exit(0);
        });
        if (tcache::test::wait_for(mortal) != 0) return 1;
      } else {
        Store s = open();
        std::string v;
        if (s.get_or_lease("k", v, 1h)) return tcache::test::report(1, "a value appeared");
        hold(*h);
        s.release_lease("k");
      }
    }
    return 0;
  }).wait();
  EXPECT_EQ(h->most.load(), 1) << "live holders of one lease at once (" << h->takeovers.load()
                               << " takeovers)";
  EXPECT_GT(h->takeovers.load(), 0u) << "no dead holder was taken over";
}

}  // namespace
