// store/lease.cc: single flight. One step of Store::get_or_lease (a hit,
// becoming the holder by an if_absent publish of a lease record, waiting for
// a live holder, or taking over a dead or expired one) and release_lease.
//
// Layer 6 (store_impl.h, "Rooms"): calls write.cc (store_entry) and the
// index (probe, unlink_entry). Safe from any thread of any process
// (doc/INVARIANTS.md, 9).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/test_hook.h"

namespace tcache::detail {

namespace {

// This process's identity for lease records (pid and start time). Computed
// once per pid, so a child after fork() gets its own.
LeaseRecord self_lease(std::uint64_t deadline_ms) {
  static std::atomic<std::uint64_t> cached_pid{0};
  static std::atomic<std::uint64_t> cached_start{0};
  const pid_t pid = ::getpid();
  std::uint64_t start = cached_start.load(std::memory_order_acquire);
  if (cached_pid.load(std::memory_order_acquire) != static_cast<std::uint64_t>(pid)) {
    start = process_start_time(pid);
    cached_start.store(start, std::memory_order_release);
    cached_pid.store(static_cast<std::uint64_t>(pid), std::memory_order_release);
  }
  return LeaseRecord{static_cast<std::uint32_t>(pid), 0, start, deadline_ms};
}

}  // namespace

StoreImpl::LeaseStep StoreImpl::lease_step(std::string_view key, std::string& value,
                                           std::chrono::milliseconds lease_timeout) {
  if (lease_timeout.count() <= 0) fail(Errc::invalid_option, "lease_timeout must be positive");
  if (key.size() > Store::kMaxKeyBytes) {
    fail(Errc::key_too_large, "key of " + std::to_string(key.size()) + " bytes exceeds the " +
                                  std::to_string(Store::kMaxKeyBytes) + "-byte limit");
  }
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  Probe p = Probe::retry;
  Found f;
  for (int attempt = 0; attempt < kMaxProbeRetries && p == Probe::retry; ++attempt) {
    p = probe<true>(key, h, s, &value, &f);
  }
  if (p == Probe::hit) {
    count(kHits);
    return LeaseStep::hit;
  }
  if (region_.read_only()) {  // cannot lease: the caller computes
    count(kMisses);
    return LeaseStep::holder;
  }
  if (p == Probe::lease) {
    LeaseRecord rec;
    std::memcpy(&rec, value.data(), sizeof rec);
    const bool dead = !process_alive(static_cast<pid_t>(rec.pid), rec.start_time);
    if (dead || now_unix_ms() >= rec.deadline_ms) {
      // Take it over: unlink exactly the lease we judged (its word names
      // the chunk's incarnation), never a newer one that took its chunk and
      // slot while we read /proc (doc/INVARIANTS.md, 9).
      test_point(TestPoint::lease_takeover, key);
      unlink_entry(*f.slot, f.word);
      return LeaseStep::again;
    }
    test_point(TestPoint::lease_wait, key);
    return LeaseStep::wait;
  }
  if (p == Probe::retry) return LeaseStep::again;
  // A miss: try to become the holder.
  const std::uint64_t deadline = std::min<std::uint64_t>(
      now_unix_ms() + static_cast<std::uint64_t>(lease_timeout.count()), kMaxExpiryMs);
  const LeaseRecord rec = self_lease(deadline);
  const std::string_view bytes(reinterpret_cast<const char*>(&rec), sizeof rec);
  if (store_entry(key, h, bytes, kFlagLease, deadline, Publish::if_absent)) {
    count(kMisses);
    return LeaseStep::holder;
  }
  return LeaseStep::again;
}

void StoreImpl::release_lease(std::string_view key) noexcept {
  if (region_.read_only() || key.size() > Store::kMaxKeyBytes) return;
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  std::string bytes;
  for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
    Found f;
    const Probe p = probe<true>(key, h, s, &bytes, &f);
    if (p == Probe::retry) continue;
    if (p != Probe::lease) return;
    LeaseRecord rec;
    std::memcpy(&rec, bytes.data(), sizeof rec);
    if (rec.pid == static_cast<std::uint32_t>(::getpid())) {
      test_point(TestPoint::lease_release, key);
      unlink_entry(*f.slot, f.word);  // ours, not a lease taken since
    }
    return;
  }
}

}  // namespace tcache::detail
