// tests/support/stall.h: makes a race deterministic by stalling one thread
// at a point inside a lock-free window of the store (lib/util/test_hook.h)
// until the test has done what the race needs meanwhile.
//
//   StallAt stall(TestPoint::content_unlink);   // installs the hook
//   std::thread t([&] { stall.arm(); s.get("k"); });  // t stops at the point
//   stall.wait_inside();   // ... race against t here ...
//   stall.release();       // t goes on
//
// Also: `waiting()` is set when any thread of this process reaches
// TestPoint::lease_wait (get_or_lease is about to wait for a live holder).
//
// Thread safety: one StallAt at a time per process; arm() from the thread to
// be stalled, the rest from the test's thread.

#pragma once

#include <atomic>
#include <string_view>
#include <thread>

#include "util/test_hook.h"

namespace tcache::test {

class StallAt {
 public:
  explicit StallAt(detail::TestPoint point) {
    state().point = point;
    detail::set_test_hook(&hook);
  }
  ~StallAt() {
    release();
    detail::set_test_hook(nullptr);
    state().armed.store(false);
    state().inside.store(false);
    state().go.store(false);
    state().waiting.store(false);
  }
  StallAt(const StallAt&) = delete;
  StallAt& operator=(const StallAt&) = delete;

  // The calling thread stops the next time it reaches the point.
  void arm() {
    state().who = std::this_thread::get_id();
    state().armed.store(true, std::memory_order_release);
  }
  void wait_inside() {
    while (!state().inside.load(std::memory_order_acquire)) state().inside.wait(false);
  }
  void release() {
    state().go.store(true, std::memory_order_release);
    state().go.notify_all();
  }
  bool waiting() const { return state().waiting.load(std::memory_order_acquire); }

 private:
  struct State {
    detail::TestPoint point{};
    std::thread::id who;
    std::atomic<bool> armed{false};
    std::atomic<bool> inside{false};
    std::atomic<bool> go{false};
    std::atomic<bool> waiting{false};
  };
  static State& state() {
    static State s;
    return s;
  }
  static void hook(detail::TestPoint point, std::string_view) {
    State& s = state();
    if (point == detail::TestPoint::lease_wait) {
      s.waiting.store(true, std::memory_order_release);
      s.waiting.notify_all();
    }
    if (point != s.point || !s.armed.load(std::memory_order_acquire) ||
        std::this_thread::get_id() != s.who || !s.armed.exchange(false)) {
      return;
    }
    s.inside.store(true, std::memory_order_release);
    s.inside.notify_all();
    while (!s.go.load(std::memory_order_acquire)) s.go.wait(false);
  }
};

}  // namespace tcache::test
