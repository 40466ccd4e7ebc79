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
//  2. A call made while an acache task runs on this thread (a recursive
//     call from a computation, on tcache's pool or on any user executor)
//     runs inline instead of waiting on the executor, so a recursion deeper
//     than the pool or a bounded executor cannot deadlock.
//  3. inflight_ belongs to one process: a child after fork() (whose
//     inherited futures would be fulfilled only in the parent) finds a new
//     atfork_generation() and starts with an empty table.
//  4. Every task submitted ends its flight exactly once: by running, or,
//     if every copy of it is destroyed unrun, by its Completion, which
//     also fails the future with Error(unavailable).

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
#include "tcache/export.h"

namespace tcache {

struct AcacheOptions;

namespace detail {

struct AsyncSetup {
  ByteSetup bytes;
  std::function<void(std::function<void()>)> executor;  // empty = the shared pool
};

TCACHE_API AsyncSetup acache_setup(const AcacheOptions& options);

// Runs `task` on tcache's shared pool (2..8 threads, started on first use;
// a child process after fork() gets a pool of its own). Thread-safe.
TCACHE_API void submit_to_pool(std::function<void()> task);
// True on one of the shared pool's threads.
TCACHE_API bool on_pool_thread() noexcept;
// How many times this process's ancestors and itself were forked into
// being: 0 in the process that started, incremented in a child by fork()
// (pthread_atfork). Lets state inherited from a parent be recognised.
TCACHE_API std::uint64_t atfork_generation() noexcept;

// True while this thread runs an acache task (on any executor): a call made
// then runs inline (invariant 2).
TCACHE_API inline thread_local bool t_in_acache_task = false;

// What a deferred call keeps of an argument of type A: a value that owns its
// bytes. Views (std::string_view, const char*) become std::string (a null
// char pointer an empty optional), so the caller's buffer may change or die
// before the task runs; pass() gives the callable back the parameter type.
template <class A, class D = std::remove_cvref_t<A>>
struct DeferredArg {
  using type = D;
  static type own(const D& a) { return a; }
  static decltype(auto) pass(type& x) { return std::forward<A>(x); }
};
template <class A, class Traits>
struct DeferredArg<A, std::basic_string_view<char, Traits>> {
  using type = std::basic_string<char, Traits>;
  static type own(std::basic_string_view<char, Traits> a) { return type(a); }
  static std::basic_string_view<char, Traits> pass(const type& x) { return x; }
};
template <class A, class C>
requires std::is_same_v<C, const char*> || std::is_same_v<C, char*>
struct DeferredArg<A, C> {
  using type = std::optional<std::string>;
  static type own(C a) { return a == nullptr ? type() : type(std::string(a)); }
  static C pass(type& x) { return x ? x->data() : nullptr; }
};

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
    if (t_in_acache_task || (!executor_ && on_pool_thread())) {  // invariant 2
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
      if (const std::uint64_t g = atfork_generation(); g != generation_) {  // invariant 3
        inflight_.clear();
        generation_ = g;
      }
      if (auto it = inflight_.find(key); it != inflight_.end()) {
        ++coalesced_;
        return it->second;
      }
      inflight_.emplace(key, future);
    }
    // The task owns copies of the arguments (views copied into strings):
    // the caller's may be gone. It leaves inflight_ before it fulfils the
    // promise (invariant 1), so a caller woken by a failed future never
    // finds that future again. If the executor destroys it unrun, its
    // Completion does both (invariant 4).
    auto done = std::make_shared<Completion>(this->weak_from_this(), key, promise);
    auto task = [inner = inner_, done,
                 args = std::make_tuple(DeferredArg<A>::own(a)...)]() mutable {
      done->started = true;
      std::optional<value_type> value;
      std::exception_ptr error;
      {
        const bool outer = t_in_acache_task;
        t_in_acache_task = true;
        try {
          value.emplace(std::apply(
              [&](auto&... xs) { return inner->call(DeferredArg<A>::pass(xs)...); }, args));
        } catch (...) {
          error = std::current_exception();
        }
        t_in_acache_task = outer;
      }
      done->finish();
      if (error) {
        done->promise->set_exception(error);
      } else {
        done->promise->set_value(std::move(*value));
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

  // Shared by the copies of one task: ends its flight, and, if the last copy
  // dies without having run (an executor dropped it), fails its future.
  struct Completion {
    std::weak_ptr<AsyncState> state;
    std::string key;
    std::shared_ptr<std::promise<value_type>> promise;
    bool started = false;

    Completion(std::weak_ptr<AsyncState> s, std::string k,
               std::shared_ptr<std::promise<value_type>> p)
        : state(std::move(s)), key(std::move(k)), promise(std::move(p)) {}
    Completion(const Completion&) = delete;
    Completion& operator=(const Completion&) = delete;

    void finish() {
      if (auto s = state.lock()) s->finish(key);
    }
    ~Completion() {
      if (started) return;
      try {
        finish();
        promise->set_exception(std::make_exception_ptr(
            Error(Errc::unavailable,
                  "tcache: acache: the executor destroyed the task without running it, so this "
                  "call was not computed; a later call with these arguments computes again")));
      } catch (...) {  // a destructor must not throw
      }
    }
  };

  std::function<void(std::function<void()>)> executor_;
  std::shared_ptr<Inner> inner_;
  KeyFn key_fn_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, result_type> inflight_;
  std::uint64_t generation_ = atfork_generation();  // of the process inflight_ belongs to
  std::uint64_t coalesced_ = 0;
};

}  // namespace detail
}  // namespace tcache
