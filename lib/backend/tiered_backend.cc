// backend/tiered_backend.cc: a chain of backends that falls back, and
// comes back to a tier that recovers.
//
// Thread safety: each tier's state is atomic (an `abandoned` flag that only
// goes from false to true, and a lock-free TierHealth); the warning set is
// guarded by a mutex. Tiers are themselves thread-safe.
//
// Invariants:
//  1. A call goes to the first tier that is neither abandoned nor
//     suspended (or, when a suspended tier's retry is due, to that tier:
//     one call per interval, tier_health.h). The last tier is always
//     usable, and its errors propagate (memory does not fail for these).
//  2. A tier that throws Errc::unavailable (a server down, stalled or
//     restarting) is suspended, not given up: the call goes on to the next
//     tier, and the tier is retried after a backoff (50 ms doubling to 2 s).
//     A success ends the suspension. So a server that comes back is used
//     again, and while it is away calls cost no time-out.
//  3. A tier that throws any other error that concerns the tier (io_error,
//     no_space, corrupt_file, read_only, invalid_option, ...) is abandoned
//     for good: it will not get better by waiting.
//  4. Errors about one value (value_too_large, key_too_large) send that one
//     call to the next tier without suspending or abandoning the current
//     one (put releases the caller's lease in every other tier);
//     lookups that miss in the tier used therefore also look in the tiers
//     below, which may hold such values or values stored while a tier above
//     was suspended.
//  5. erase and erase_prefix go to every usable tier, so that no tier keeps
//     an entry that invalidate() or cache_clear() meant to remove (a tier
//     suspended meanwhile keeps its copy until its TTL: see README).
//  6. Each (tier, error code) is reported once through the logger, and the
//     first recovery of each tier once.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "backend/tier_health.h"
#include "tcache/backend.h"
#include "util/fail.h"

namespace tcache {
namespace {

constexpr std::uint32_t kRecoveredCause = 0xffffffffu;

class TieredBackend final : public Backend {
 public:
  TieredBackend(std::vector<std::shared_ptr<Backend>> tiers, Logger logger)
      : tiers_(std::move(tiers)), states_(tiers_.size()), logger_(std::move(logger)) {}

  // The tiers not abandoned (suspended ones included: they come back).
  std::string name() const override {
    std::string n;
    for (std::size_t i = 0; i < tiers_.size(); ++i) {
      if (abandoned(i)) continue;
      if (!n.empty()) n += ">";
      n += tiers_[i]->name();
    }
    return "tiered(" + n + ")";
  }

  bool get(std::string_view key, std::string& value) override {
    std::size_t used = 0;
    return run(used, [&](Backend& b) { return b.get(key, value); }) || get_below(used, key, value);
  }

  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) override {
    std::size_t used = 0;
    run(used, [&](Backend& b) { b.put(key, value, ttl); });
    // The caller's lease may be in another tier: one that refused this
    // value (invariant 4), or one used while a tier above was suspended.
    for (std::size_t i = 0; i < tiers_.size(); ++i) {
      if (i != used && !abandoned(i)) tiers_[i]->release_lease(key);
    }
  }

  bool erase(std::string_view key) override {
    bool any = false;
    each_usable([&](Backend& b) { any = b.erase(key) || any; });
    return any;
  }

  std::uint64_t erase_prefix(std::string_view prefix) override {
    std::uint64_t most = 0;
    each_usable([&](Backend& b) { most = std::max(most, b.erase_prefix(prefix)); });
    return most;
  }

  std::uint64_t count_prefix(std::string_view prefix) override {
    std::size_t used = 0;
    return run(used, [&](Backend& b) { return b.count_prefix(prefix); });
  }

  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout) override {
    std::size_t used = 0;
    if (run(used, [&](Backend& b) { return b.get_or_lease(key, value, lease_timeout); })) {
      return true;
    }
    if (!get_below(used, key, value)) return false;
    tiers_[used]->release_lease(key);
    return true;
  }

  // The lease may be in any tier (a tier may have been suspended since it
  // was taken): each releases only what this caller holds.
  void release_lease(std::string_view key) noexcept override {
    for (std::size_t i = 0; i < tiers_.size(); ++i) {
      if (!abandoned(i)) tiers_[i]->release_lease(key);
    }
  }

  std::uint64_t max_entries() const override {
    for (std::size_t i = 0; i + 1 < tiers_.size(); ++i) {
      if (!abandoned(i) && !states_[i].health.suspended()) return tiers_[i]->max_entries();
    }
    return tiers_.back()->max_entries();
  }

  std::uint64_t fallbacks() const override { return fallbacks_.load(std::memory_order_relaxed); }
  std::uint64_t errors() const override { return errors_.load(std::memory_order_relaxed); }

 private:
  struct TierState {
    std::atomic<bool> abandoned{false};
    detail::TierHealth health;
  };

  bool abandoned(std::size_t i) const noexcept {
    return states_[i].abandoned.load(std::memory_order_acquire);
  }

  // A miss in tier `used` may be a value kept below it (invariant 4).
  bool get_below(std::size_t used, std::string_view key, std::string& value) {
    for (std::size_t i = used + 1; i < tiers_.size(); ++i) {
      if (abandoned(i) || states_[i].health.suspended()) continue;
      try {
        if (tiers_[i]->get(key, value)) return true;
      } catch (const Error&) {  // a failing lower tier is just a miss here
      }
    }
    return false;
  }

  // Runs `op` on the first tier that takes it (invariant 1); `used` says
  // which did.
  template <class Op>
  auto run(std::size_t& used, Op&& op) -> decltype(op(std::declval<Backend&>())) {
    for (std::size_t i = 0;; ++i) {
      if (i + 1 >= tiers_.size()) {
        used = tiers_.size() - 1;
        return op(*tiers_.back());
      }
      if (abandoned(i) || !states_[i].health.admit()) continue;
      try {
        used = i;
        auto done = [&] {
          if (states_[i].health.succeeded()) recovered(i);
        };
        if constexpr (std::is_void_v<decltype(op(*tiers_[i]))>) {
          op(*tiers_[i]);
          done();
          return;
        } else {
          auto r = op(*tiers_[i]);
          done();
          return r;
        }
      } catch (const Error& e) {
        failed(i, e);
      }
    }
  }

  // Runs `op` on every usable tier; errors of all but the last are handled
  // as run() handles them (invariant 5).
  template <class Op>
  void each_usable(Op&& op) {
    for (std::size_t i = 0; i < tiers_.size(); ++i) {
      if (i + 1 == tiers_.size()) {
        op(*tiers_[i]);
        return;
      }
      if (abandoned(i) || !states_[i].health.admit()) continue;
      try {
        op(*tiers_[i]);
        if (states_[i].health.succeeded()) recovered(i);
      } catch (const Error& e) {
        failed(i, e);
      }
    }
  }

  void failed(std::size_t i, const Error& e) {
    const bool per_value = e.code() == Errc::value_too_large || e.code() == Errc::key_too_large;
    if (per_value) {
      warn_once(i, e, "this value goes to the " + tiers_[i + 1]->name() + " backend");
      return;
    }
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (e.code() == Errc::unavailable) {  // invariant 2
      if (states_[i].health.failed()) fallbacks_.fetch_add(1, std::memory_order_relaxed);
      warn_once(i, e,
                "using the " + tiers_[i + 1]->name() +
                    " backend until it answers again (retried with backoff)");
      return;
    }
    if (!states_[i].abandoned.exchange(true, std::memory_order_acq_rel)) {  // invariant 3
      fallbacks_.fetch_add(1, std::memory_order_relaxed);
    }
    warn_once(i, e, "using the " + tiers_[i + 1]->name() + " backend from now on");
  }

  void recovered(std::size_t i) {
    log_once(i, kRecoveredCause,
             "tcache: " + tiers_[i]->name() + " backend answers again; using it again");
  }

  void warn_once(std::size_t tier, const Error& e, const std::string& then) {
    log_once(tier, static_cast<std::uint32_t>(e.code()),
             "tcache: " + tiers_[tier]->name() + " backend failed (" + error_code_name(e.code()) +
                 ": " + e.what() + "); " + then);
  }

  void log_once(std::size_t tier, std::uint32_t cause, const std::string& line) {
    {
      std::lock_guard lock(mutex_);
      if (!warned_.insert({tier, cause}).second) return;
    }
    if (logger_) {
      logger_(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

  std::vector<std::shared_ptr<Backend>> tiers_;
  std::vector<TierState> states_;
  Logger logger_;
  std::atomic<std::uint64_t> fallbacks_{0};
  std::atomic<std::uint64_t> errors_{0};
  std::mutex mutex_;
  std::set<std::pair<std::size_t, std::uint32_t>> warned_;
};

}  // namespace

std::shared_ptr<Backend> make_tiered_backend(std::vector<std::shared_ptr<Backend>> tiers,
                                             Logger logger) {
  if (tiers.empty()) detail::fail(Errc::invalid_option, "make_tiered_backend: no tiers given");
  for (const auto& t : tiers) {
    if (!t) detail::fail(Errc::invalid_option, "make_tiered_backend: a tier is null");
  }
  return std::make_shared<TieredBackend>(std::move(tiers), std::move(logger));
}

}  // namespace tcache
