// backend/two_level_backend.cc: a local file store in front of Redis
// (bcache's `remote` option).
//
// Thread safety: the levels are thread-safe; this adds atomic counters, a
// TierHealth (lock-free) and a warning set under a mutex.
//
// Invariants:
//  1. The local level is always used; its errors propagate (the decorator
//     calls through or skips storing, as for a plain bcache).
//  2. Redis is used while `remote_health_` admits it. An Error from Redis is
//     absorbed: counted in errors_, reported once per cause, and for
//     unavailable it suspends Redis (tier_health.h) so that the following
//     calls run at local speed until one retry finds it back.
//  3. Single flight: the local store's lease first (the processes of this
//     machine wait for each other without touching Redis), then, held by one
//     process per machine, the Redis lease (machines wait for each other).
//     get_or_lease returns false only while the caller holds the local
//     lease, and holds the Redis lease too unless Redis was skipped or failed.
//  4. A value read from Redis fills the local level with the TTL Redis has
//     left for it, so the local copy never outlives the shared one.
//  5. Every local copy (filled from Redis or written through) lives at most
//     local_ttl_ when that is not 0: Redis is the shared truth, and an
//     invalidate() or cache_clear() made on another machine erases only
//     Redis's copy and that machine's file; this bound is how it reaches
//     the files of the other machines.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "backend/redis_backend.h"
#include "backend/tier_health.h"
#include "util/fail.h"

namespace tcache::detail {
namespace {

class TwoLevelBackend final : public Backend {
 public:
  TwoLevelBackend(std::shared_ptr<Backend> local, std::shared_ptr<RedisBackend> remote,
                  Logger logger)
      : local_(std::move(local)),
        remote_(std::move(remote)),
        logger_(std::move(logger)),
        local_ttl_(remote_->local_ttl()) {}

  std::string name() const override {
    return "two-level(" + local_->name() + ">" + remote_->name() + ")";
  }

  bool get(std::string_view key, std::string& value) override {
    if (local_->get(key, value)) return true;
    if (!remote_health_.admit()) return false;
    try {
      const auto asked = std::chrono::steady_clock::now();
      std::chrono::milliseconds left{0};
      const bool found = remote_->get_with_ttl(key, value, left);
      remote_ok();
      if (found) fill(key, value, left, asked);
      return found;
    } catch (const Error& e) {
      remote_failed(e);
      return false;
    }
  }

  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) override {
    std::exception_ptr local_error;
    try {
      local_->put(key, value, local_bound(ttl));
    } catch (const Error&) {
      local_error = std::current_exception();
    }
    if (remote_health_.admit()) {
      try {
        remote_->put(key, value, ttl);
        remote_ok();
      } catch (const Error& e) {
        remote_->release_lease(key);
        remote_failed(e);
      }
    } else {
      remote_->release_lease(key);  // forgets our token; the lease ends by its PX
    }
    if (local_error) std::rethrow_exception(local_error);
  }

  bool erase(std::string_view key) override {
    const bool local = local_->erase(key);
    bool remote = false;
    if (remote_health_.admit()) {
      try {
        remote = remote_->erase(key);
        remote_ok();
      } catch (const Error& e) {
        remote_failed(e);
      }
    }
    return local || remote;
  }

  std::uint64_t erase_prefix(std::string_view prefix) override {
    const std::uint64_t local = local_->erase_prefix(prefix);
    std::uint64_t remote = 0;
    if (remote_health_.admit()) {
      try {
        remote = remote_->erase_prefix(prefix);
        remote_ok();
      } catch (const Error& e) {
        remote_failed(e);
      }
    }
    return std::max(local, remote);
  }

  // This machine's entries: cheap, and what cache_info() means by currsize
  // here (counting Redis would SCAN its whole database).
  std::uint64_t count_prefix(std::string_view prefix) override {
    return local_->count_prefix(prefix);
  }

  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout) override {
    if (local_->get_or_lease(key, value, lease_timeout)) return true;
    // This process holds the local lease (invariant 3).
    if (!remote_health_.admit()) return false;
    try {
      const auto asked = std::chrono::steady_clock::now();
      std::chrono::milliseconds left{0};
      const bool found = remote_->get_or_lease_with_ttl(key, value, lease_timeout, &left);
      remote_ok();
      if (!found) return false;  // both leases held
      fill(key, value, left, asked);
      return true;
    } catch (const Error& e) {
      remote_failed(e);
      return false;
    }
  }

  void release_lease(std::string_view key) noexcept override {
    remote_->release_lease(key);
    local_->release_lease(key);
  }

  std::uint64_t max_entries() const override { return local_->max_entries(); }
  std::uint64_t fallbacks() const override { return fallbacks_.load(std::memory_order_relaxed); }
  std::uint64_t errors() const override { return errors_.load(std::memory_order_relaxed); }

 private:
  // Invariant 4. `left` was measured by Redis after `asked`; the time since
  // is taken off, so the local deadline is never after Redis's. Replaces
  // the caller's local lease, if it holds one.
  void fill(std::string_view key, const std::string& value, std::chrono::milliseconds left,
            std::chrono::steady_clock::time_point asked) {
    if (left.count() > 0) {
      left -= std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - asked) +
              std::chrono::milliseconds(1);
      if (left.count() <= 0) {  // expiring now: not worth a copy
        local_->release_lease(key);
        return;
      }
    }
    try {
      local_->put(key, value, local_bound(left));
    } catch (const Error& e) {
      local_->release_lease(key);
      warn(1000 + static_cast<std::uint32_t>(e.code()),
           "tcache: two-level cache: could not copy a value from redis into the " + local_->name() +
               " backend (" + error_code_name(e.code()) + ": " + e.what() + ")");
    }
  }

  // Invariant 5: `ttl` (0 = none) bounded by local_ttl_.
  std::chrono::milliseconds local_bound(std::chrono::milliseconds ttl) const noexcept {
    if (local_ttl_.count() == 0) return ttl;
    return ttl.count() == 0 ? local_ttl_ : std::min(ttl, local_ttl_);
  }

  void remote_ok() noexcept {
    if (remote_health_.succeeded()) {
      warn(2000, "tcache: two-level cache: redis at " + remote_->display() +
                     " answers again; using it again");
    }
  }

  void remote_failed(const Error& e) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    std::string then = "this call goes on without it";
    if (e.code() == Errc::unavailable) {
      if (remote_health_.failed()) fallbacks_.fetch_add(1, std::memory_order_relaxed);
      then = "the local level answers alone until redis is back (retried with backoff)";
    }
    warn(static_cast<std::uint32_t>(e.code()), "tcache: two-level cache: redis failed (" +
                                                   std::string(error_code_name(e.code())) + ": " +
                                                   e.what() + "); " + then);
  }

  void warn(std::uint32_t cause, const std::string& line) {
    {
      std::lock_guard lock(mutex_);
      if (!warned_.insert(cause).second) return;
    }
    if (logger_) {
      logger_(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

  std::shared_ptr<Backend> local_;
  std::shared_ptr<RedisBackend> remote_;
  Logger logger_;
  const std::chrono::milliseconds local_ttl_;
  TierHealth remote_health_;
  std::atomic<std::uint64_t> errors_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
  std::mutex mutex_;
  std::set<std::uint32_t> warned_;
};

}  // namespace

std::shared_ptr<Backend> make_two_level_backend(std::shared_ptr<Backend> local,
                                                std::shared_ptr<RedisBackend> remote,
                                                Logger logger) {
  if (!local || !remote) fail(Errc::invalid_option, "make_two_level_backend: a level is null");
  return std::make_shared<TwoLevelBackend>(std::move(local), std::move(remote), std::move(logger));
}

}  // namespace tcache::detail
