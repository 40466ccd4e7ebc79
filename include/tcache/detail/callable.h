// tcache/detail/callable.h: what the decorators share: the wrapped
// callable's signature, the wrapper object users hold, and key functions.
//
// Thread safety: Decorated is a handle to shared state; copies share one
// cache, and any number of threads may call any member of any copy at once.

#pragma once

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "tcache/codec.h"

namespace tcache {

// What cache_info() reports, after Python's functools CacheInfo.
struct CacheInfo {
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t maxsize = 0;        // entries the cache may hold (0 = bounded by bytes)
  std::uint64_t currsize = 0;       // entries it holds now (persistent: this function's)
  std::string backend;              // "memory", "file", "tiered(file>memory)", ...
  std::uint64_t decode_errors = 0;  // stored values that failed to decode (also misses)
  std::uint64_t fallbacks = 0;      // times a backend failed and the next one took over
  // Backend operations that failed (a Redis server down, stalled or
  // restarting; a full disk, ...) and were answered another way: by the next
  // tier, the local level, as a miss, or by calling the function through.
  std::uint64_t backend_errors = 0;
};

namespace detail {

// signature<F>::type is R(Args...) for free functions, function pointers,
// function objects and lambdas with one non-template operator(), and
// R(C&, Args...) / R(const C&, Args...) for pointers to member functions
// (the object comes first, as std::invoke takes it).
template <class F, class = void>
struct signature {
  static_assert(sizeof(F) == 0,
                "tcache: cannot deduce the call signature of this callable (a generic lambda or "
                "an overloaded operator()?); wrap it in a lambda with concrete parameter types");
};
template <class R, class... A>
struct signature<R (*)(A...)> {
  using type = R(A...);
};
template <class R, class... A>
struct signature<R (*)(A...) noexcept> {
  using type = R(A...);
};
template <class R, class... A>
struct signature<R(A...)> {
  using type = R(A...);
};
#define TCACHE_DETAIL_MEMBER_SIGNATURE(QUAL, OBJ)  \
  template <class R, class C, class... A>          \
  struct signature<R (C::*)(A...) QUAL> {          \
    using type = R(OBJ, A...);                     \
  };                                               \
  template <class R, class C, class... A>          \
  struct signature<R (C::*)(A...) QUAL noexcept> { \
    using type = R(OBJ, A...);                     \
  };
TCACHE_DETAIL_MEMBER_SIGNATURE(, C&)
TCACHE_DETAIL_MEMBER_SIGNATURE(&, C&)
TCACHE_DETAIL_MEMBER_SIGNATURE(const, const C&)
TCACHE_DETAIL_MEMBER_SIGNATURE(const&, const C&)
#undef TCACHE_DETAIL_MEMBER_SIGNATURE

// The signature of a call operator, as a member pointer, without the object.
template <class M>
struct call_operator_signature;
#define TCACHE_DETAIL_CALL_OPERATOR(QUAL)                        \
  template <class R, class C, class... A>                        \
  struct call_operator_signature<R (C::*)(A...) QUAL> {          \
    using type = R(A...);                                        \
  };                                                             \
  template <class R, class C, class... A>                        \
  struct call_operator_signature<R (C::*)(A...) QUAL noexcept> { \
    using type = R(A...);                                        \
  };
TCACHE_DETAIL_CALL_OPERATOR()
TCACHE_DETAIL_CALL_OPERATOR(&)
TCACHE_DETAIL_CALL_OPERATOR(const)
TCACHE_DETAIL_CALL_OPERATOR(const&)
#undef TCACHE_DETAIL_CALL_OPERATOR

template <class F>
struct signature<F, std::void_t<decltype(&F::operator())>> {
  using type = typename call_operator_signature<decltype(&F::operator())>::type;
};

template <class F>
using signature_t = typename signature<std::remove_cvref_t<F>>::type;

template <class Sig>
struct sig_parts;
template <class R, class... A>
struct sig_parts<R(A...)> {
  using result = R;
  using args = std::tuple<A...>;
  // The key of a call when no key function is given: the decayed arguments.
  using key_tuple = std::tuple<std::remove_cvref_t<A>...>;
};

// The default key function: the arguments themselves, as a tuple of values.
struct ArgsKey {
  template <class... A>
  auto operator()(const A&... a) const {
    return std::tuple<std::remove_cvref_t<A>...>(a...);
  }
};

// The canonical bytes of a key function's result (persistent keys).
template <class KeyFn, class... A>
void encode_key(const KeyFn& key_fn, std::string& out, const A&... a) {
  if constexpr (std::is_same_v<KeyFn, ArgsKey>) {
    encode_args(out, a...);
  } else {
    const auto k = std::invoke(key_fn, a...);
    Codec<std::remove_cvref_t<decltype(k)>>::encode(k, out);
  }
}

// The object users hold. State provides:
//   using result_type;                       what operator() returns
//   result_type call(Args...);               the cached call
//   CacheInfo info(); void clear(); bool invalidate(Args...);
template <class State, class Sig>
class Decorated;

template <class State, class R, class... A>
class Decorated<State, R(A...)> {
 public:
  using result_type = typename State::result_type;

  explicit Decorated(std::shared_ptr<State> state) : state_(std::move(state)) {}

  // The cached call: same parameters as the wrapped callable.
  result_type operator()(A... a) const { return state_->call(std::forward<A>(a)...); }

  // Hits, misses, sizes and backend of this cache.
  CacheInfo cache_info() const { return state_->info(); }

  // Drops every entry of this cache (for persistent caches: this function's
  // entries in the shared file, in every process).
  void cache_clear() const { state_->clear(); }

  // Drops the entry for these arguments; true if there was one.
  bool invalidate(A... a) const { return state_->invalidate(std::forward<A>(a)...); }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace detail
}  // namespace tcache
