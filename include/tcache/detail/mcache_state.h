// tcache/detail/mcache_state.h: the state behind tcache::mcache: a callable
// whose results are kept, as typed values, in a MemoryCache.
//
// Included by decorators.h (after McacheOptions is defined); not on its own.
//
// Thread safety: call/info/clear/invalidate may run on many threads at once.
// The cache locks one shard per call and never holds it while the wrapped
// callable runs, so the callable may call its own wrapper (recursion) and
// its exceptions propagate without being cached. Hit and miss counters live
// in the cache's shards, written under the shard's lock, so threads hitting
// different shards share no counter.
//
// Keys. The default key is the decayed arguments, or a key function's
// result. When these are integers, bool, enums and std::string only, they
// are the key as they are: with one argument, the argument itself (no
// 1-tuple); with several, a std::tuple of them, looked up through a tuple of
// references so a hit copies no argument; hashed with boost::hash. Any other
// key the codec can encode (floating point, views, char pointers, null
// ones included, containers, aggregates, ...) is kept as its canonical bytes
// (codec.h), the rule every decorator follows: it owns its bytes, and
// equal bytes mean equal keys. A key the codec cannot encode is kept as it
// is, hashed with boost::hash (hash_value found by ADL), compared with ==.
// A lone float or double argument is keyed by its canonical bits (the same
// equality, no encoding).

#pragma once

#include <bit>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include <boost/container_hash/hash.hpp>

#include "tcache/backend.h"
#include "tcache/config.h"
#include "tcache/detail/callable.h"
#include "tcache/detail/memory_cache.h"
#include "tcache/error.h"

namespace tcache {

struct McacheOptions;

namespace detail {

// Whether a key type can be hashed by boost::hash and compared with ==,
// looking inside tuples, pairs, optionals, variants and ranges (boost::hash
// accepts those whatever their elements, and fails late on a bad element).
namespace mcache_key_check {

using boost::hash_value;

template <class T>
concept has_hash_value = requires(const T& t) {
  { hash_value(t) } -> std::convertible_to<std::size_t>;
};
template <class T>
concept has_equal = requires(const T& a, const T& b) {
  { a == b } -> std::convertible_to<bool>;
};

template <class T>
struct parts {
  static constexpr bool composite = false;
};
template <class... T>
struct parts<std::tuple<T...>> {
  static constexpr bool composite = true;
  template <template <class> class Pred>
  static constexpr bool all = (Pred<std::remove_cvref_t<T>>::value && ...);
};
template <class A, class B>
struct parts<std::pair<A, B>> : parts<std::tuple<A, B>> {};
template <class T>
struct parts<std::optional<T>> : parts<std::tuple<T>> {};
template <class... T>
struct parts<std::variant<T...>> : parts<std::tuple<T...>> {};

template <class T>
struct usable;

template <class T>
constexpr bool usable_v() {
  if constexpr (parts<T>::composite) {
    return parts<T>::template all<usable>;
  } else if constexpr (std::ranges::range<const T>) {
    return has_hash_value<T> && has_equal<T> &&
           usable<std::remove_cvref_t<std::ranges::range_value_t<const T>>>::value;
  } else {
    return has_hash_value<T> && has_equal<T>;
  }
}

template <class T>
struct usable : std::bool_constant<usable_v<T>()> {};

}  // namespace mcache_key_check

// Hash of a tuple, equal for std::tuple<T...> and std::tuple<const T&...>
// (the same as boost::hash of the tuple of values).
struct TupleKeyHash {
  using is_transparent = void;
  template <class... T>
  std::size_t operator()(const std::tuple<T...>& t) const {
    std::size_t seed = 0;
    std::apply([&seed](const auto&... e) { (boost::hash_combine(seed, e), ...); }, t);
    return seed;
  }
};

// Key types whose own == and boost::hash agree with "the same canonical
// bytes" (codec.h): integers, bool, enums and std::string. Keys made only
// of these are kept as they are (the fast path); every other key the codec
// can encode is kept as its canonical bytes, so that all decorators agree
// on equality (-0.0 and 0.0 are two keys, every NaN is one) and a key never
// points into the caller's memory (a const char* or string_view argument).
template <class T>
inline constexpr bool plain_key_v =
    std::is_integral_v<T> || std::is_enum_v<T> || std::is_same_v<T, std::string>;

// Hashes canonical bytes; std::string keys are looked up by a string_view.
struct BytesHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// Keys kept as canonical bytes.
struct BytesKey {
  static constexpr bool kByArgs = false;
  static constexpr bool kBytes = true;
  using type = std::string;
  using hash = BytesHash;
  using equal = std::equal_to<>;
};

// How McacheState keys a call of A... with KeyFn: as the key function's
// result (kByArgs false), the arguments (kByArgs), or canonical bytes
// (kBytes) of either. Types the codec cannot encode (a user type with only a
// hash_value and ==) are kept as they are, hashed with boost::hash.
template <class R, bool Plain = plain_key_v<R> || !has_codec_v<R>>
struct McacheFnKey : BytesKey {};
template <class R>
struct McacheFnKey<R, true> {
  static constexpr bool kByArgs = false;
  static constexpr bool kBytes = false;
  using type = R;
  using hash = boost::hash<type>;
  using equal = std::equal_to<type>;
};

template <class KeyFn, class... A>
struct McacheKey : McacheFnKey<std::remove_cvref_t<
                       std::invoke_result_t<const KeyFn&, const std::remove_cvref_t<A>&...>>> {};

template <bool Plain, class... A>
struct McacheArgsKey : BytesKey {};
template <class A0>
struct McacheArgsKey<true, A0> {
  // One argument: the argument itself.
  static constexpr bool kByArgs = true;
  static constexpr bool kBytes = false;
  using type = std::remove_cvref_t<A0>;
  using hash = boost::hash<type>;
  using equal = std::equal_to<type>;
  static const type& probe(const type& a) { return a; }
};
template <class... A>
struct McacheArgsKey<true, A...> {
  // Several (or no) arguments: a tuple, probed by a tuple of references.
  static constexpr bool kByArgs = true;
  static constexpr bool kBytes = false;
  using type = std::tuple<std::remove_cvref_t<A>...>;
  using hash = TupleKeyHash;
  using equal = std::equal_to<>;
  static std::tuple<const std::remove_cvref_t<A>&...> probe(const std::remove_cvref_t<A>&... a) {
    return std::tuple<const std::remove_cvref_t<A>&...>(a...);
  }
};

// One float or double argument: its canonical bits (codec.h: every NaN one
// pattern, -0.0 apart from 0.0) as an integer key, the same equality as its
// bytes without encoding them.
template <class A0>
requires std::is_same_v < std::remove_cvref_t<A0>,
float > || std::is_same_v<std::remove_cvref_t<A0>, double> struct McacheKey<ArgsKey, A0> {
  static constexpr bool kByArgs = true;
  static constexpr bool kBytes = false;
  using number = std::remove_cvref_t<A0>;
  using type = typename Codec<number>::U;
  using hash = boost::hash<type>;
  using equal = std::equal_to<type>;
  static type probe(number a) {
    return a != a ? Codec<number>::kCanonicalNaN : std::bit_cast<type>(a);
  }
};

template <class... A>
struct McacheKey<ArgsKey, A...> : McacheArgsKey<(plain_key_v<std::remove_cvref_t<A>> && ...) ||
                                                    !(has_codec_v<std::remove_cvref_t<A>> && ...),
                                                A...> {};

// What McacheOptions and the configuration resolve to.
struct McacheSettings {
  std::uint64_t maxsize = 0;
  std::chrono::nanoseconds ttl{0};  // 0 = none
  Policy policy = Policy::lru;
  std::uint32_t shards = 0;
  bool disabled = false;
};

// Checks the options (throws Error(invalid_option) naming a bad one) and
// applies the configuration's defaults. O is McacheOptions (a template only
// so that this header needs no more than its declaration).
template <class O>
McacheSettings mcache_settings(const O& o) {
  if (o.maxsize == 0) {
    throw Error(Errc::invalid_option,
                "mcache: maxsize must be > 0 (the most entries the cache keeps); got 0");
  }
  if (o.ttl.count() < 0) {
    throw Error(Errc::invalid_option,
                "mcache: ttl must be >= 0 (0 = TCACHE_DEFAULT_TTL, else none); got " +
                    std::to_string(o.ttl.count()) + " ms");
  }
  if (o.policy != Policy::lru && o.policy != Policy::lfu && o.policy != Policy::fifo) {
    throw Error(Errc::invalid_option,
                "mcache: policy must be Policy::lru, Policy::lfu or Policy::fifo; got " +
                    std::to_string(static_cast<int>(o.policy)));
  }
  const Config cfg = config();
  McacheSettings s;
  s.maxsize = o.maxsize;
  const std::chrono::milliseconds ttl = o.ttl.count() > 0 ? o.ttl : cfg.default_ttl;
  // Saturate: a ttl of more than ~292 years does not fit in nanoseconds.
  constexpr auto kMaxMs = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max()));
  s.ttl = ttl > kMaxMs ? std::chrono::nanoseconds(std::numeric_limits<std::int64_t>::max())
                       : std::chrono::nanoseconds(ttl);
  s.policy = o.policy;
  s.shards = o.shards;
  s.disabled = cfg.disable;
  return s;
}

template <class F, class Sig, class KeyFn>
class McacheState;

template <class F, class R, class... A, class KeyFn>
class McacheState<F, R(A...), KeyFn> {
  using Key = McacheKey<KeyFn, A...>;

 public:
  using value_type = std::remove_cvref_t<R>;
  using result_type = value_type;  // a copy of the cached value, never a reference into it
  using key_type = typename Key::type;

  static_assert(!std::is_void_v<R>,
                "tcache::mcache: the wrapped callable returns void; there is no result to cache");
  static_assert(std::is_void_v<R> || std::is_copy_constructible_v<value_type>,
                "tcache::mcache: the result type must be copy-constructible (each call returns a "
                "copy of the cached value)");
  static_assert(
      Key::kBytes || mcache_key_check::usable<key_type>::value,
      "tcache::mcache: the cache key (the decayed arguments, or what the key function returns) "
      "must be encodable by tcache::Codec (codec.h: numbers, strings, containers, aggregates, "
      "types with a Codec specialization), or else hashable by boost::hash (a "
      "hash_value(const T&) found by ADL) and comparable with ==. A pointer to a member "
      "function takes its object as the first argument, so by default the object is part of "
      "the key: give it a codec, or pass a key function that leaves it out, e.g. "
      "tcache::mcache(&C::f, {}, [](const C&, int x) { return x; })");
  static_assert(
      std::is_copy_constructible_v<key_type>,
      "tcache::mcache: the cache key must be copy-constructible (the cache keeps a copy)");

  McacheState(F f, McacheOptions options, KeyFn key_fn)
      : McacheState(std::move(f), mcache_settings(options), std::move(key_fn)) {}

  McacheState(F f, const McacheSettings& s, KeyFn key_fn)
      : f_(std::move(f)),
        key_fn_(std::move(key_fn)),
        disabled_(s.disabled),
        cache_(s.maxsize, s.ttl, s.policy, s.shards) {}

  value_type call(A... a) {
    if (disabled_ || disabled_by_scope()) [[unlikely]] {
      return std::invoke(f_, std::forward<A>(a)...);
    }
    if constexpr (Key::kBytes) {
      std::string& bytes = key_buffer();
      bytes.clear();
      encode_key(key_fn_, bytes, a...);
      const std::string_view probe(bytes);
      const std::size_t h = cache_.hash_of(probe);
      if (std::optional<value_type> v = cache_.get_hashed(probe, h)) return std::move(*v);
      // Copy the key now: the callable may call back and reuse the buffer.
      key_type key(probe);
      value_type r = std::invoke(f_, std::forward<A>(a)...);
      cache_.put_hashed(std::move(key), h, std::as_const(r));
      return r;
    } else if constexpr (Key::kByArgs) {
      const auto& probe = Key::probe(a...);
      const std::size_t h = cache_.hash_of(probe);
      if (std::optional<value_type> v = cache_.get_hashed(probe, h)) return std::move(*v);
      // Copy the key now: the call below may move the arguments away.
      key_type key(probe);
      value_type r = std::invoke(f_, std::forward<A>(a)...);
      cache_.put_hashed(std::move(key), h, std::as_const(r));
      return r;
    } else {
      key_type key = std::invoke(key_fn_, std::as_const(a)...);
      const std::size_t h = cache_.hash_of(key);
      if (std::optional<value_type> v = cache_.get_hashed(key, h)) return std::move(*v);
      value_type r = std::invoke(f_, std::forward<A>(a)...);
      cache_.put_hashed(std::move(key), h, std::as_const(r));
      return r;
    }
  }

  CacheInfo info() const {
    const MemoryCacheStats st = cache_.stats();
    CacheInfo i;
    i.hits = st.hits;
    i.misses = st.misses;
    i.maxsize = cache_.maxsize();
    i.currsize = cache_.size();
    i.backend = "memory";
    return i;
  }

  // Drops every entry; the hit and miss counts are kept (as bcache's).
  void clear() { cache_.clear(); }

  bool invalidate(A... a) {
    if constexpr (Key::kBytes) {
      std::string& bytes = key_buffer();
      bytes.clear();
      encode_key(key_fn_, bytes, a...);
      return cache_.erase(std::string_view(bytes));
    } else if constexpr (Key::kByArgs) {
      return cache_.erase(Key::probe(a...));
    } else {
      return cache_.erase(std::invoke(key_fn_, std::as_const(a)...));
    }
  }

  // The cache itself (tests, benchmarks).
  const MemoryCache<key_type, value_type, typename Key::hash, typename Key::equal>& cache()
      const noexcept {
    return cache_;
  }

 private:
  // Scratch for the canonical bytes of a key, used before the callable runs.
  static std::string& key_buffer() {
    static thread_local std::string buffer;
    return buffer;
  }

  F f_;
  [[no_unique_address]] KeyFn key_fn_;
  const bool disabled_;
  MemoryCache<key_type, value_type, typename Key::hash, typename Key::equal> cache_;
};

}  // namespace detail
}  // namespace tcache
