// backend/memory_backend.cc: the "memory" Backend: a MemoryCache of byte
// strings, plus single flight among the threads of this process.
//
// Thread safety: the cache is sharded and locked per shard; the table of
// leases (`flights_`) is guarded by `flights_mutex_`, which is never held
// while a caller computes. Lock order: flights_mutex_, then a cache shard's
// mutex (get_or_lease looks in the cache under flights_mutex_; nothing
// takes them the other way round).
//
// Invariants:
//  1. A key is in flights_ exactly while a caller holds its lease: from the
//     get_or_lease that returned false until a put of the key (by anyone:
//     the value is then there for the waiters) or a release_lease by the
//     holder. flight_count_ is the size of flights_. The holder is
//     detail::current_lease_holder() of the caller that took the lease:
//     its thread, or the holder it acts for (detail/lease_holder.h), so a
//     lease taken on one thread can be released on another.
//  2. put stores the value before it ends the flight, and get_or_lease
//     looks in the cache under flights_mutex_ before it takes a lease; so a
//     waiter that finds no flight either finds the value or computes it.
//  3. A flight whose lease has expired (holder slower than its
//     lease_timeout) is taken over by the next caller that finds it so:
//     that caller becomes the holder; the old holder's release_lease is
//     then ignored (it no longer holds the lease), its put still stores.
//     So is a flight inherited from a parent process across fork(): its
//     holder runs only in the parent (Flight::generation).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/unordered/unordered_flat_map.hpp>

#include "tcache/backend.h"
#include "tcache/detail/lease_holder.h"
#include "tcache/detail/memory_cache.h"
#include "util/fail.h"

namespace tcache {
namespace detail {
TCACHE_API std::uint64_t atfork_generation() noexcept;  // decorators/pool.cc
}  // namespace detail
namespace {

using Clock = std::chrono::steady_clock;

// Hashes std::string and std::string_view alike, so lookups by a view
// allocate no string.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// A duration that can be added to now() without overflow (100 years at most).
template <class D>
D clamp_duration(D d) {
  constexpr auto kMax = std::chrono::duration_cast<D>(std::chrono::hours(24 * 365 * 100));
  return std::min(d, kMax);
}

class MemoryBackend final : public Backend {
 public:
  MemoryBackend(std::uint64_t max_entries, Policy policy)
      : cache_(max_entries, std::chrono::nanoseconds(0), policy) {}

  std::string name() const override { return "memory"; }

  bool get(std::string_view key, std::string& value) override { return cache_.get(key, value); }

  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) override {
    struct EndFlight {  // the caller's lease ends whether or not the value could be kept
      MemoryBackend* self;
      std::string_view key;
      ~EndFlight() { self->end_flight(key, /*holder_only=*/false); }
    } end{this, key};
    cache_.put(key, value, clamp_duration(std::max(ttl, std::chrono::milliseconds(0))));
  }

  bool erase(std::string_view key) override { return cache_.erase(key); }

  std::uint64_t erase_prefix(std::string_view prefix) override {
    return cache_.erase_if([prefix](const std::string& k) { return k.starts_with(prefix); });
  }

  std::uint64_t count_prefix(std::string_view prefix) override {
    return cache_.count_if([prefix](const std::string& k) { return k.starts_with(prefix); });
  }

  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout) override {
    if (cache_.get(key, value)) return true;
    const auto timeout = clamp_duration(std::max(lease_timeout, std::chrono::milliseconds(0)));
    std::unique_lock lock(flights_mutex_);
    for (;;) {
      if (cache_.get(key, value)) return true;  // invariant 2
      const auto now = Clock::now();
      const auto it = flights_.find(key);
      if (it == flights_.end()) {
        auto flight = std::make_shared<Flight>();
        flight->holder = detail::current_lease_holder();
        flight->expires = now + timeout;
        flight->generation = detail::atfork_generation();
        flights_.emplace(std::string(key), std::move(flight));
        flight_count_.store(flights_.size(), std::memory_order_relaxed);
        return false;
      }
      const std::shared_ptr<Flight> flight = it->second;
      const std::uint64_t generation = detail::atfork_generation();
      const detail::LeaseHolder holder = detail::current_lease_holder();
      if (flight->holder == holder || now >= flight->expires || flight->generation != generation) {
        // Ours already (asked again before putting), expired, or a parent
        // process's: invariant 3.
        flight->holder = holder;
        flight->expires = now + timeout;
        flight->generation = generation;
        return false;
      }
      // Wakes at the end of the flight or at its expiry (which a takeover
      // may have pushed back: the loop then waits again).
      flight->ended.wait_until(lock, flight->expires);
    }
  }

  void release_lease(std::string_view key) noexcept override {
    end_flight(key, /*holder_only=*/true);
  }

  std::uint64_t max_entries() const override { return cache_.maxsize(); }

 private:
  struct Flight {
    std::condition_variable ended;
    detail::LeaseHolder holder = 0;  // detail::current_lease_holder() of the taker
    Clock::time_point expires;
    std::uint64_t generation = 0;  // detail::atfork_generation() of the holder's process
  };

  // Ends the flight of `key` (if holder_only, only when the caller holds its
  // lease: a holder that was taken over holds it no more) and wakes its
  // waiters.
  void end_flight(std::string_view key, bool holder_only) noexcept {
    // Relaxed is enough: a holder reads its own increment (or, on another
    // thread, one the lease's hand-over synchronised it with); another
    // thread that reads 0 had no flight of its own to end (the holder will).
    if (flight_count_.load(std::memory_order_relaxed) == 0) return;
    std::lock_guard lock(flights_mutex_);
    const auto it = flights_.find(key);
    if (it == flights_.end()) return;
    if (holder_only && it->second->holder != detail::current_lease_holder()) return;
    it->second->ended.notify_all();
    flights_.erase(it);
    flight_count_.store(flights_.size(), std::memory_order_relaxed);
  }

  detail::MemoryCache<std::string, std::string, StringHash, std::equal_to<>> cache_;
  std::mutex flights_mutex_;
  boost::unordered_flat_map<std::string, std::shared_ptr<Flight>, StringHash, std::equal_to<>>
      flights_;
  std::atomic<std::size_t> flight_count_{0};
};

}  // namespace

std::shared_ptr<Backend> make_memory_backend(std::uint64_t max_entries, Policy policy) {
  if (max_entries == 0) {
    detail::fail(Errc::invalid_option,
                 "memory backend: max_entries must be > 0 (the most entries it keeps); got 0");
  }
  if (policy != Policy::lru && policy != Policy::lfu && policy != Policy::fifo) {
    detail::fail(Errc::invalid_option,
                 "memory backend: policy must be Policy::lru, Policy::lfu or Policy::fifo");
  }
  return std::make_shared<MemoryBackend>(max_entries, policy);
}

}  // namespace tcache
