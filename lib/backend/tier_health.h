// backend/tier_health.h: when to try a part of a backend again after it
// failed with Errc::unavailable (a server down, stalled or restarting).
//
// Thread safety: lock-free; any number of threads may call any member at
// once.
//
// Invariants:
//  1. retry_at_ is 0 while the part is healthy; otherwise the steady-clock
//     time (ns) from which one call may try it again.
//  2. A suspended part is tried by exactly one call per interval: the call
//     that moves retry_at_ from a past time to now + interval by CAS. Every
//     other call skips the part without touching it.
//  3. A success clears the suspension and resets the interval to kMin; a
//     failure suspends the part for the current interval and doubles it, up
//     to kMax.

#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace tcache::detail {

class TierHealth {
 public:
  static constexpr std::int64_t kMinNs = 50'000'000;     // 50 ms
  static constexpr std::int64_t kMaxNs = 2'000'000'000;  // 2 s

  // True if a call should use the part now: it is healthy, or this call is
  // the one try of this interval (invariant 2).
  bool admit() noexcept {
    std::int64_t at = retry_at_.load(std::memory_order_acquire);
    if (at == 0) return true;
    const std::int64_t now = now_ns();
    if (now < at) return false;
    const std::int64_t next = now + interval_.load(std::memory_order_relaxed);
    return retry_at_.compare_exchange_strong(at, next, std::memory_order_acq_rel);
  }

  // The part answered. True if that ended a suspension.
  bool succeeded() noexcept {
    if (retry_at_.load(std::memory_order_relaxed) == 0) return false;
    interval_.store(kMinNs, std::memory_order_relaxed);
    return retry_at_.exchange(0, std::memory_order_acq_rel) != 0;
  }

  // The part failed with unavailable. True if it was healthy until now.
  bool failed() noexcept {
    const std::int64_t interval = interval_.load(std::memory_order_relaxed);
    interval_.store(std::min(interval * 2, kMaxNs), std::memory_order_relaxed);
    return retry_at_.exchange(std::max<std::int64_t>(now_ns() + interval, 1),
                              std::memory_order_acq_rel) == 0;
  }

  bool suspended() const noexcept { return retry_at_.load(std::memory_order_relaxed) != 0; }

 private:
  static std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  std::atomic<std::int64_t> retry_at_{0};
  std::atomic<std::int64_t> interval_{kMinNs};
};

}  // namespace tcache::detail
