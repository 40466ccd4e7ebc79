// tcache/detail/byte_state.h: the state behind bcache, fcache and ucache: a
// callable whose results are kept, encoded, in a byte-level Backend.
//
// Thread safety: call/info/clear/invalidate may run on many threads at once;
// counters are relaxed atomics, and the backend is thread-safe. Scratch
// buffers are thread_local and used only before the wrapped callable runs
// or after it returns, so a recursive call through the wrapper is safe.

#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "tcache/backend.h"
#include "tcache/codec.h"
#include "tcache/config.h"
#include "tcache/detail/callable.h"
#include "tcache/error.h"
#include "tcache/export.h"

namespace tcache {

struct BcacheOptions;
struct FcacheOptions;
struct UcacheOptions;

namespace detail {

inline constexpr std::size_t kKeyBytes = 24;  // 8-byte name prefix + xxh3-128

// Reports each cause once through a logger (default: a line on stderr).
class TCACHE_API Warner {
 public:
  explicit Warner(Logger logger) : logger_(std::move(logger)) {}
  // Thread-safe. `cause` groups warnings: the first of each cause is shown.
  void warn(std::uint32_t cause, const std::string& line);

 private:
  Logger logger_;
  std::mutex mutex_;
  std::set<std::uint32_t> seen_;
};

// What a decorator's options resolve to (backend opened, defaults applied).
struct ByteSetup {
  std::string kind;  // "bcache", "fcache", "ucache", "acache": for messages
  std::string name;
  std::shared_ptr<Backend> backend;
  std::uint64_t key_seed = 0;  // xxh3-64 of the length-prefixed name and version
  std::string prefix;          // first 8 bytes of every key: xxh3-64 of the name
  std::chrono::milliseconds ttl{0};
  std::chrono::milliseconds lease_timeout{60'000};
  int compression = 0;  // 0 none, 1 LZ4, 2 LZ4HC: done by the decorator (framed values)
  bool disabled = false;
  std::uint64_t fallbacks = 0;  // backends given up on while setting up
  std::shared_ptr<Warner> warner;
};

// Each throws Error(invalid_option) naming a bad option; bcache_setup and
// fcache_setup also throw what opening the file throws.
TCACHE_API ByteSetup bcache_setup(const BcacheOptions& options);
TCACHE_API ByteSetup fcache_setup(const FcacheOptions& options);
TCACHE_API ByteSetup ucache_setup(const UcacheOptions& options);

// Writes the key of a call whose arguments encode to `args`: the name's
// 8-byte prefix, then xxh3-128 of `args` seeded with key_seed (which hashes
// the name and version), so that name, version and arguments all decide it.
TCACHE_API void make_key(const ByteSetup& setup, std::string_view args, char (&out)[kKeyBytes]);

// The value frame: every value bcache, fcache, ucache and acache store is
//
//   u8  frame version, kValueFrameVersion (a reader refuses any other: room
//       for later frames, e.g. encrypted ones)
//   u8  method: 0 = the body is the codec's bytes of the value; 1 = LZ4,
//       2 = LZ4HC of them (fcache, ucache with large values); others refused
//   u64 type_fingerprint<R>() of the result type R (codec.h)
//   method 1, 2: u64 length of the codec's bytes, then the compressed bytes
//   method 0:    the codec's bytes
//
// (integers little-endian). A value whose frame or fingerprint does not
// match is a decode error, so a changed result type is a miss, never
// garbage.
inline constexpr unsigned char kValueFrameVersion = 1;
inline constexpr std::size_t kValueFrameHeader = 10;

// Sets `out` to the header of a method-0 frame; append the codec's bytes.
TCACHE_API void begin_value_frame(std::uint64_t fingerprint, std::string& out);
// Sets `out` to a frame of `raw` (the codec's bytes), compressed with
// `compression` (0 none, 1 LZ4, 2 LZ4HC) unless that does not make it
// smaller or raw is too large for LZ4 (then method 0).
TCACHE_API void pack_value(int compression, std::uint64_t fingerprint, std::string_view raw,
                           std::string& out);
// Returns the codec's bytes of the value framed in `stored` (a view into
// stored, or into `scratch` when decompressed). Throws Error(decode_error)
// for a malformed frame, another frame version or method, or a fingerprint
// other than `fingerprint`.
TCACHE_API std::string_view open_value_frame(std::string_view stored, std::uint64_t fingerprint,
                                             std::string& scratch);

template <class F, class Sig, class KeyFn>
class ByteState;

template <class F, class R, class... A, class KeyFn>
class ByteState<F, R(A...), KeyFn> {
 public:
  using value_type = std::remove_cvref_t<R>;
  using result_type = value_type;
  static_assert(!std::is_void_v<R>, "tcache: a cached function must return a value");

  ByteState(F f, ByteSetup setup, KeyFn key_fn)
      : f_(std::move(f)), setup_(std::move(setup)), key_fn_(std::move(key_fn)) {}

  value_type call(A... a) {
    if (setup_.disabled || disabled_by_scope()) return std::invoke(f_, std::forward<A>(a)...);
    char key[kKeyBytes];
    key_of(key, a...);
    const std::string_view k(key, kKeyBytes);
    static thread_local std::string stored;
    for (int attempt = 0; attempt < 2; ++attempt) {
      bool have = false;
      try {
        have = setup_.backend->get_or_lease(k, stored, setup_.lease_timeout);
      } catch (const Error& e) {
        // The backend cannot serve this call: compute without caching.
        errors_.fetch_add(1, std::memory_order_relaxed);
        setup_.warner->warn(static_cast<std::uint32_t>(e.code()),
                            "tcache: " + setup_.kind + " '" + setup_.name +
                                "': lookup failed, calling through: " + e.what());
        misses_.fetch_add(1, std::memory_order_relaxed);
        return std::invoke(f_, std::forward<A>(a)...);
      }
      if (have) {
        try {
          value_type v = decode_stored(stored);
          hits_.fetch_add(1, std::memory_order_relaxed);
          return v;
        } catch (...) {
          // Any failure to decode (a malformed frame or value, another
          // type's fingerprint, std::bad_alloc for hostile sizes) is a miss.
          decode_errors_.fetch_add(1, std::memory_order_relaxed);
          erase_quietly(k);
          continue;  // look again: take the lease and recompute
        }
      }
      misses_.fetch_add(1, std::memory_order_relaxed);
      // We hold the key's lease: it ends with the put of the value, or is
      // released on every other way out (the callable or the encoding
      // throws, the backend cannot store the value).
      LeaseGuard lease(setup_.backend.get(), k);
      value_type v = std::invoke(f_, std::forward<A>(a)...);
      store(k, v, lease);
      return v;
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    return std::invoke(f_, std::forward<A>(a)...);
  }

  CacheInfo info() const {
    CacheInfo i;
    i.hits = hits_.load(std::memory_order_relaxed);
    i.misses = misses_.load(std::memory_order_relaxed);
    i.decode_errors = decode_errors_.load(std::memory_order_relaxed);
    i.maxsize = setup_.backend->max_entries();
    i.currsize = setup_.backend->count_prefix(setup_.prefix);
    i.backend = setup_.backend->name();
    i.fallbacks = setup_.fallbacks + setup_.backend->fallbacks();
    i.backend_errors = errors_.load(std::memory_order_relaxed) + setup_.backend->errors();
    return i;
  }

  void clear() { setup_.backend->erase_prefix(setup_.prefix); }

  bool invalidate(A... a) {
    char key[kKeyBytes];
    key_of(key, a...);
    return setup_.backend->erase(std::string_view(key, kKeyBytes));
  }

  const ByteSetup& setup() const noexcept { return setup_; }

 private:
  void key_of(char (&key)[kKeyBytes], const std::remove_cvref_t<A>&... a) const {
    static thread_local std::string buf;
    buf.clear();
    encode_key(key_fn_, buf, a...);
    make_key(setup_, buf, key);
  }

  // Releases a lease unless disarmed (by a put that stored the value).
  struct LeaseGuard {
    Backend* backend;
    std::string_view key;
    bool held = true;
    LeaseGuard(Backend* b, std::string_view k) : backend(b), key(k) {}
    LeaseGuard(const LeaseGuard&) = delete;
    LeaseGuard& operator=(const LeaseGuard&) = delete;
    ~LeaseGuard() {
      if (held) backend->release_lease(key);
    }
  };

  static std::uint64_t fingerprint() noexcept {
    static const std::uint64_t fp = type_fingerprint<value_type>();
    return fp;
  }

  value_type decode_stored(const std::string& stored) const {
    static thread_local std::string raw;
    return decode<value_type>(open_value_frame(stored, fingerprint(), raw));
  }

  void store(std::string_view k, const value_type& v, LeaseGuard& lease) {
    std::string bytes;
    try {
      if (setup_.compression == 0) {
        begin_value_frame(fingerprint(), bytes);
        Codec<value_type>::encode(v, bytes);
      } else {
        pack_value(setup_.compression, fingerprint(), encode(v), bytes);
      }
    } catch (const std::exception& e) {
      // A value that cannot be encoded (a user codec that throws, a
      // valueless variant) is returned all the same, and not kept.
      setup_.warner->warn(kEncodeFailure,
                          "tcache: " + setup_.kind + " '" + setup_.name +
                              "': could not encode a value, not caching it: " + e.what());
      return;
    }
    try {
      setup_.backend->put(k, bytes, setup_.ttl);
      lease.held = false;  // the put replaced the lease
    } catch (const Error& e) {
      // The value is returned all the same; the cache just does not keep it.
      errors_.fetch_add(1, std::memory_order_relaxed);
      setup_.warner->warn(static_cast<std::uint32_t>(e.code()),
                          "tcache: " + setup_.kind + " '" + setup_.name +
                              "': could not store a value (" + error_code_name(e.code()) +
                              "): " + e.what());
    }
  }

  // A warning cause of its own (the others are Errc values).
  static constexpr std::uint32_t kEncodeFailure = 0x10000;

  void erase_quietly(std::string_view k) noexcept {
    try {
      setup_.backend->erase(k);
    } catch (...) {  // a failing backend shows up on the next call
    }
  }

  F f_;
  ByteSetup setup_;
  KeyFn key_fn_;
  std::atomic<std::uint64_t> hits_{0};
  std::atomic<std::uint64_t> misses_{0};
  std::atomic<std::uint64_t> decode_errors_{0};
  std::atomic<std::uint64_t> errors_{0};  // backend failures absorbed here
};

}  // namespace detail
}  // namespace tcache
