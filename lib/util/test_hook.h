// util/test_hook.h: points inside the store's lock-free windows where a test
// may stall the calling thread, so that a race that a stress test would hit
// only now and then happens every time (tests/store_test.cc,
// tests/lease_test.cc).
//
// Production code never installs a hook. Each point costs one relaxed load
// and a branch that is not taken, and the points sit on cold paths only (an
// expired or damaged entry being unlinked, a lease being taken over,
// released or waited for), never on a hit or a put.
//
// Thread safety: set_test_hook() may be called at any time; a point calls
// whatever hook it loads (a hook must be safe to call from any thread). A
// hook installed before fork() is installed in the child too.

#pragma once

#include <atomic>
#include <string_view>

namespace tcache::detail {

enum class TestPoint {
  // An unlink decided from a chunk's content (an expired entry, a checksum
  // failure, purge_expired) is about to CAS the slot word it read.
  content_unlink,
  // get_or_lease found the key's lease dead or past its deadline (after
  // reading /proc) and is about to unlink it.
  lease_takeover,
  // release_lease found the caller's lease and is about to unlink it.
  lease_release,
  // get_or_lease found another live holder's lease and is about to wait.
  lease_wait,
};

using TestHook = void (*)(TestPoint point, std::string_view key);

inline std::atomic<TestHook> g_test_hook{nullptr};

// Installs `hook` (nullptr removes it). For tests only.
inline void set_test_hook(TestHook hook) noexcept {
  g_test_hook.store(hook, std::memory_order_release);
}

inline void test_point(TestPoint point, std::string_view key) {
  if (const TestHook hook = g_test_hook.load(std::memory_order_relaxed)) [[unlikely]] {
    hook(point, key);
  }
}

}  // namespace tcache::detail
