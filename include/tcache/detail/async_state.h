// tcache/detail/async_state.h: the state behind acache.
//
// A call returns a std::shared_future of the result. Calls with equal
// arguments made while a computation is in flight get the same future
// (in-process single flight); a finished value is kept in the backend
// chosen as for ucache (memory unless a backend or path is given), so later
// calls are hits.
//
// Thread safety: call/info/clear/invalidate may run on many threads at once.
// The in-flight table is guarded by one mutex, never held while the
// callable runs or a task is submitted.
//
// Invariants:
//  1. A key is in `inflight_` from the first call that starts its
//     computation until that computation has stored its value (or failed),
//     and every call that finds it there shares its future. It leaves
//     before the future is fulfilled: a later call then finds the value in
//     the backend (or, after a failure, computes again).
//  2. A call made on one of tcache's own pool threads (a recursive call from
//     a computation) runs inline instead of waiting on the pool, so a
//     recursion deeper than the pool cannot deadlock.

#pragma once

#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "tcache/detail/byte_state.h"

namespace tcache {

struct AcacheOptions;

namespace detail {

struct AsyncSetup {
  ByteSetup bytes;
  std::function<void(std::function<void()>)> executor;  // empty = the shared pool
};

AsyncSetup acache_setup(const AcacheOptions& options);

// Runs `task` on tcache's shared pool (2..8 threads, started on first use;
// a child process after fork() gets a pool of its own). Thread-safe.
void submit_to_pool(std::function<void()> task);
// True on one of the shared pool's threads.
bool on_pool_thread() noexcept;

template <class F, class Sig, class KeyFn>
class AsyncState;

// Decorated holds the state in a shared_ptr; tasks hold a weak one.
template <class F, class R, class... A, class KeyFn>
class AsyncState<F, R(A...), KeyFn>
    : public std::enable_shared_from_this<AsyncState<F, R(A...), KeyFn>> {
  using Inner = ByteState<F, R(A...), KeyFn>;

 public:
  using value_type = typename Inner::value_type;
  using result_type = std::shared_future<value_type>;

  AsyncState(F f, AsyncSetup setup, KeyFn key_fn)
      : executor_(std::move(setup.executor)),
        inner_(std::make_shared<Inner>(std::move(f), std::move(setup.bytes), key_fn)),
        key_fn_(std::move(key_fn)) {}

  result_type call(A... a) {
    if (!executor_ && on_pool_thread()) {  // invariant 2
      std::promise<value_type> p;
      try {
        p.set_value(inner_->call(std::forward<A>(a)...));
      } catch (...) {
        p.set_exception(std::current_exception());
      }
      return p.get_future().share();
    }
    std::string key = key_of(a...);
    auto promise = std::make_shared<std::promise<value_type>>();
    result_type future = promise->get_future().share();
    {
      std::lock_guard lock(mutex_);
      if (auto it = inflight_.find(key); it != inflight_.end()) {
        ++coalesced_;
        return it->second;
      }
      inflight_.emplace(key, future);
    }
    // The task owns copies of the arguments: the caller's may be gone. It
    // leaves inflight_ before it fulfils the promise (invariant 1), so a
    // caller woken by a failed future never finds that future again.
    auto task = [inner = inner_, promise, key, self = this->weak_from_this(),
                 args = std::make_tuple(std::remove_cvref_t<A>(a)...)]() mutable {
      std::optional<value_type> value;
      std::exception_ptr error;
      try {
        value.emplace(
            std::apply([&](auto&... xs) { return inner->call(std::forward<A>(xs)...); }, args));
      } catch (...) {
        error = std::current_exception();
      }
      if (auto s = self.lock()) s->finish(key);
      if (error) {
        promise->set_exception(error);
      } else {
        promise->set_value(std::move(*value));
      }
    };
    try {
      if (executor_) {
        executor_(std::move(task));
      } else {
        submit_to_pool(std::move(task));
      }
    } catch (...) {
      finish(key);
      throw;
    }
    return future;
  }

  CacheInfo info() const {
    CacheInfo i = inner_->info();
    std::lock_guard lock(mutex_);
    i.hits += coalesced_;
    return i;
  }
  void clear() { inner_->clear(); }
  bool invalidate(A... a) { return inner_->invalidate(std::forward<A>(a)...); }

  std::string key_of(const std::remove_cvref_t<A>&... a) const {
    std::string k;
    encode_key(key_fn_, k, a...);
    return k;
  }

  void finish(const std::string& key) {
    std::lock_guard lock(mutex_);
    inflight_.erase(key);
  }

  std::function<void(std::function<void()>)> executor_;
  std::shared_ptr<Inner> inner_;
  KeyFn key_fn_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, result_type> inflight_;
  std::uint64_t coalesced_ = 0;
};

}  // namespace detail
}  // namespace tcache
