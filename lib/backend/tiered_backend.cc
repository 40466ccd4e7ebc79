// backend/tiered_backend.cc: a chain of backends that falls back.
//
// Thread safety: `active_` (the first tier still in use) only moves down
// the chain, by CAS; the warning set is guarded by a mutex. Tiers are
// themselves thread-safe.
//
// Invariants:
//  1. Calls go to tiers_[active_]. A tier that throws tcache::Error for a
//     reason that concerns the tier (io_error, no_space, corrupt_file,
//     unavailable, ...) is abandoned for good: active_ moves past it.
//  2. Errors about one value (value_too_large, key_too_large) send that one
//     call to the next tier without abandoning the current one (releasing
//     the caller's lease on the tier that refused it); lookups that miss in
//     the active tier therefore also look in the tiers below.
//  3. The last tier's errors propagate (memory does not fail for these).
//  4. Each (tier, error code) is reported once through the logger.

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tcache/backend.h"
#include "util/fail.h"

namespace tcache {
namespace {

class TieredBackend final : public Backend {
 public:
  TieredBackend(std::vector<std::shared_ptr<Backend>> tiers, Logger logger)
      : tiers_(std::move(tiers)), logger_(std::move(logger)) {}

  std::string name() const override {
    std::string n = "tiered(";
    for (std::size_t i = active_.load(std::memory_order_relaxed); i < tiers_.size(); ++i) {
      n += tiers_[i]->name();
      if (i + 1 < tiers_.size()) n += ">";
    }
    return n + ")";
  }
  bool get(std::string_view key, std::string& value) override {
    return run([&](Backend& b) { return b.get(key, value); }) || get_below(key, value);
  }
  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) override {
    Backend* first = nullptr;
    run([&](Backend& b) {
      if (first == nullptr) {
        first = &b;
      } else {
        first->release_lease(key);  // the value went on down (invariant 2)
      }
      b.put(key, value, ttl);
    });
  }
  bool erase(std::string_view key) override {
    return run([&](Backend& b) { return b.erase(key); });
  }
  std::uint64_t erase_prefix(std::string_view prefix) override {
    return run([&](Backend& b) { return b.erase_prefix(prefix); });
  }
  std::uint64_t count_prefix(std::string_view prefix) override {
    return run([&](Backend& b) { return b.count_prefix(prefix); });
  }
  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout) override {
    if (run([&](Backend& b) { return b.get_or_lease(key, value, lease_timeout); })) return true;
    if (!get_below(key, value)) return false;
    release_lease(key);
    return true;
  }
  void release_lease(std::string_view key) noexcept override {
    tiers_[active_.load(std::memory_order_acquire)]->release_lease(key);
  }
  std::uint64_t max_entries() const override {
    return tiers_[active_.load(std::memory_order_acquire)]->max_entries();
  }
  std::uint64_t fallbacks() const override { return fallbacks_.load(std::memory_order_relaxed); }

 private:
  // A miss in the active tier may be a value that went on down for being
  // too large for it (invariant 2): look in the tiers below.
  bool get_below(std::string_view key, std::string& value) {
    for (std::size_t i = active_.load(std::memory_order_acquire) + 1; i < tiers_.size(); ++i) {
      try {
        if (tiers_[i]->get(key, value)) return true;
      } catch (const Error&) {  // a failing lower tier is just a miss here
      }
    }
    return false;
  }

  template <class Op>
  auto run(Op&& op) -> decltype(op(std::declval<Backend&>())) {
    std::size_t i = active_.load(std::memory_order_acquire);
    for (;;) {
      if (i + 1 >= tiers_.size()) return op(*tiers_.back());
      try {
        return op(*tiers_[i]);
      } catch (const Error& e) {
        const bool per_value = e.code() == Errc::value_too_large || e.code() == Errc::key_too_large;
        warn_once(i, e, per_value);
        if (!per_value) {
          std::size_t expected = i;
          if (active_.compare_exchange_strong(expected, i + 1, std::memory_order_acq_rel)) {
            fallbacks_.fetch_add(1, std::memory_order_relaxed);
          }
        }
        ++i;
        if (!per_value) i = std::max(i, active_.load(std::memory_order_acquire));
      }
    }
  }

  void warn_once(std::size_t tier, const Error& e, bool per_value) {
    {
      std::lock_guard lock(mutex_);
      if (!warned_.insert({tier, static_cast<std::uint32_t>(e.code())}).second) return;
    }
    const std::string line =
        "tcache: " + tiers_[tier]->name() + " backend failed (" + error_code_name(e.code()) + ": " +
        e.what() + "); " +
        (per_value ? "this value goes to the " + tiers_[tier + 1]->name() + " backend"
                   : "using the " + tiers_[tier + 1]->name() + " backend from now on");
    if (logger_) {
      logger_(line);
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }

  std::vector<std::shared_ptr<Backend>> tiers_;
  Logger logger_;
  std::atomic<std::size_t> active_{0};
  std::atomic<std::uint64_t> fallbacks_{0};
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
