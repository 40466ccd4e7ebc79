// tcache/decorators.h: memoize a C++ callable in one line.
//
//   double price(const std::string& sym, int day);
//
//   auto a = tcache::mcache(price, {.maxsize = 10'000, .ttl = 60s});
//   auto b = tcache::bcache(price, {.name = "price", .path = "prices.tcache"});
//   auto c = tcache::fcache(load_matrix, {.name = "matrix", .compress = true});
//   auto d = tcache::acache(price, {.name = "price"});  // d(sym, day) -> shared_future<double>
//   auto e = tcache::ucache(price, {.name = "price"});  // picks a backend, always works
//   auto r = tcache::ucache(price, {.name = "price", .backend = "redis://127.0.0.1:6379/0"});
//   auto t = tcache::bcache(price, {.name = "price", .path = "prices.tcache",
//                                   .remote = "redis://cache.internal:6379/2"});  // two levels
//
//   a("AAPL", 3);  a.cache_info();  a.cache_clear();  a.invalidate("AAPL", 3);
//
// Every wrapper keeps the wrapped callable's parameters (free functions,
// lambdas, function objects, and pointers to member functions, which take
// the object as their first argument) and adds cache_info(), cache_clear()
// and invalidate(args...). Copies of a wrapper share one cache.
//
//   mcache  in-process, typed values (no serialization), sharded; the fastest.
//   bcache  the persistent, shared Store file; values through tcache::Codec.
//   fcache  like bcache for large values: LZ4 (or LZ4HC) in the decorator,
//           blob files, bulk copies of arrays of trivially copyable numbers.
//   acache  asynchronous: returns std::shared_future<R>; concurrent calls
//           with equal arguments share one computation.
//   ucache  chooses a backend from its options and falls back (Redis ->
//           file store -> memory) when one cannot be used, warning once per
//           cause, and comes back to Redis when it answers again.
//
// Keys. Persistent keys are 24 bytes: 8 bytes of xxh3-64 of the name (so
// cache_clear() finds this function's entries in a shared file) and the
// xxh3-128 of the canonical encoding (codec.h) of the arguments, seeded with
// xxh3-64 of the length-prefixed name and version: equal arguments give
// equal keys in every process and build on one platform. A key function, passed as a third
// argument, replaces the arguments by what it returns (for example to leave out an object or a
// logger):  tcache::bcache(&Pricer::price, {.name = "p"},
//                          [](const Pricer&, int day) { return day; });
// mcache keys are the (decayed) arguments or the key function's result:
// as they are when made of integers, bool, enums and std::string, else as
// their canonical encoding (so equality is the codec's for every decorator:
// -0.0 is not 0.0, all NaNs are one, a const char* or string_view key owns
// its bytes); types without a codec fall back to boost::hash and ==.
// acache's tasks own their arguments (views and char pointers copied into
// strings). A null const char* is a key of its own everywhere.
//
// Semantics shared by all five:
// - Exceptions from the callable propagate to the caller and are not cached.
// - The callable runs without any lock of the cache held, so it may call its
//   own wrapper (recursion, e.g. fib) without deadlock; for acache, a call
//   made while one of its tasks runs on the thread runs inline, on any
//   executor.
// - Stored values are framed with a version byte, the compression method
//   and type_fingerprint<R>() of the result type (byte_state.h). A value
//   that does not decode (another result type, a damaged frame, hostile
//   bytes, std::bad_alloc while decoding) is a miss, counted in
//   decode_errors. A result that cannot be encoded is returned, not kept.
// - acache: a task the executor destroys unrun fails its future with
//   Error(unavailable); a child after fork() computes afresh what its parent
//   had in flight.
// - Options are checked when the wrapper is made: a bad one throws
//   tcache::Error(Errc::invalid_option) naming it.
// - config.h: TCACHE_DISABLE / ScopedConfig{.disable = true} make wrappers
//   call through; TCACHE_DIR, TCACHE_DEFAULT_TTL, TCACHE_BACKEND set defaults.
//
// Single flight: bcache, fcache and ucache (file store) take a lease in the
// store on a miss, so when many threads or processes miss one key at once,
// one computes and the rest wait for its value; a lease whose holder died or
// ran past lease_timeout is taken over. acache coalesces in-process. With
// Redis (ucache's redis:// backend, bcache's remote), the lease is a Redis
// key as well, so one machine computes and the others wait.
//
// Redis (see backend.h, make_redis_backend, for URIs and the key layout):
// a Redis that is down, stalls or restarts never makes a call fail: the
// call is answered by the next tier (ucache) or the local file (bcache's
// remote), counted in cache_info().backend_errors, warned once per cause,
// and Redis is used again once it answers. A malformed URI, or credentials
// or a database number that a reachable server refuses, throw
// Error(invalid_option) when the wrapper is made. So does any Redis URI
// (bcache's `remote`, a redis:// backend or TCACHE_BACKEND) in a tcache
// built without the Redis tier (TCACHE_WITH_REDIS is 0 in tcache/version.h).
//
// Thread safety: a wrapper (and its copies) may be called from any number of
// threads at once. Process safety: bcache/fcache/ucache files are shared by
// processes like any Store (see store.h, and the Caveats in tcache.h: a
// child process after fork() makes its own wrappers).

#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <string>

#include "tcache/backend.h"
#include "tcache/config.h"
#include "tcache/detail/callable.h"

namespace tcache {

using namespace std::chrono_literals;

struct McacheOptions {
  std::uint64_t maxsize = 4096;      // entries; > 0
  std::chrono::milliseconds ttl{0};  // 0 = TCACHE_DEFAULT_TTL, else none; >= 0
  Policy policy = Policy::lru;       // which entry goes when full
  std::uint32_t shards = 0;          // lock shards; 0 = chosen from maxsize
};

struct BcacheOptions {
  std::string name;            // required: identifies the function's entries
  std::string version;         // change it when the function's meaning changes
  std::filesystem::path path;  // "" = <config().dir>/<name>.tcache
  // "" = one level. A Redis URI (redis://..., redis+unix://...; see
  // make_redis_backend): two levels, the file answering first and Redis
  // behind it, shared by machines; Redis faults leave the file working.
  // Local copies live at most the URI's local_ttl (RedisOptions::local_ttl).
  std::string remote;
  std::chrono::milliseconds ttl{0};                 // 0 = TCACHE_DEFAULT_TTL, else none
  std::uint64_t capacity_bytes = 256ull << 20;      // of a file it creates
  std::chrono::milliseconds lease_timeout{60'000};  // single-flight wait bound
  Logger logger{};                                  // warnings; empty = stderr
};

// How fcache compresses.
enum class Compression { none, lz4, lz4hc };

struct FcacheOptions {
  std::string name;  // required
  std::string version;
  std::filesystem::path path;  // "" = <config().dir>/<name>.fcache
  std::chrono::milliseconds ttl{0};
  bool compress = true;                        // false = store values as they are
  Compression compression = Compression::lz4;  // used when compress; lz4hc: smaller, slower
  std::uint64_t capacity_bytes = 4ull << 30;
  std::chrono::milliseconds lease_timeout{60'000};
  Logger logger{};
};

struct UcacheOptions {
  std::string name;  // required unless the backend is memory
  std::string version;
  // "" = TCACHE_BACKEND, else "file"; or "memory", "file", "memory:",
  // "file:///abs/path", "file:relative/path", or a Redis URI
  // ("redis://host:port/db", "redis+unix:///path"): tiers redis > file >
  // memory.
  std::string backend;
  std::filesystem::path path;       // file backend's (or tier's) file ("" = default)
  std::uint64_t maxsize = 100'000;  // memory tier's entries
  std::chrono::milliseconds ttl{0};
  std::uint64_t value_bytes = 0;  // typical value size; >= 64 KiB: fcache-style file
  std::uint64_t capacity_bytes = 256ull << 20;
  std::chrono::milliseconds lease_timeout{60'000};
  Logger logger{};
};

struct AcacheOptions {
  std::string name;  // required unless the backend is memory
  std::string version;
  std::string backend;  // as UcacheOptions; "" = TCACHE_BACKEND, else memory
  std::filesystem::path path;
  std::uint64_t maxsize = 4096;
  std::chrono::milliseconds ttl{0};
  // Runs a task; empty = a small pool owned by tcache (2..8 threads).
  std::function<void(std::function<void()>)> executor{};
  std::chrono::milliseconds lease_timeout{60'000};
  Logger logger{};
};

}  // namespace tcache

#include "tcache/detail/async_state.h"
#include "tcache/detail/byte_state.h"
#include "tcache/detail/mcache_state.h"

namespace tcache {

namespace detail {
// The wrapper around state State<F, Sig, KeyFn> built from (f, setup, key_fn).
template <template <class, class, class> class State, class F, class Setup, class KeyFn>
auto decorate(F f, Setup&& setup, KeyFn key_fn) {
  using Sig = signature_t<F>;
  using S = State<std::decay_t<F>, Sig, KeyFn>;
  return Decorated<S, Sig>(
      std::make_shared<S>(std::move(f), std::forward<Setup>(setup), std::move(key_fn)));
}
}  // namespace detail

// Throws Error(invalid_option) for a bad option. Safe from any thread.
template <class F, class KeyFn = detail::ArgsKey>
auto mcache(F f, McacheOptions options = {}, KeyFn key_fn = {}) {
  return detail::decorate<detail::McacheState>(std::move(f), std::move(options), std::move(key_fn));
}

// Throws Error(invalid_option) for a bad option, and what Store::open
// throws (unsafe_permissions, corrupt_file, io_error, ...) if the file
// cannot be used; ucache is the one that falls back instead.
template <class F, class KeyFn = detail::ArgsKey>
auto bcache(F f, BcacheOptions options, KeyFn key_fn = {}) {
  return detail::decorate<detail::ByteState>(std::move(f), detail::bcache_setup(options),
                                             std::move(key_fn));
}

// As bcache, for large values.
template <class F, class KeyFn = detail::ArgsKey>
auto fcache(F f, FcacheOptions options, KeyFn key_fn = {}) {
  return detail::decorate<detail::ByteState>(std::move(f), detail::fcache_setup(options),
                                             std::move(key_fn));
}

// Throws Error(invalid_option) for a bad option only: a backend that cannot
// be opened is replaced by the next one down (warning once).
template <class F, class KeyFn = detail::ArgsKey>
auto ucache(F f, UcacheOptions options, KeyFn key_fn = {}) {
  return detail::decorate<detail::ByteState>(std::move(f), detail::ucache_setup(options),
                                             std::move(key_fn));
}

// Returns a wrapper whose call returns std::shared_future<R>. Throws
// Error(invalid_option) for a bad option.
template <class F, class KeyFn = detail::ArgsKey>
auto acache(F f, AcacheOptions options = {}, KeyFn key_fn = {}) {
  return detail::decorate<detail::AsyncState>(std::move(f), detail::acache_setup(options),
                                              std::move(key_fn));
}

}  // namespace tcache
