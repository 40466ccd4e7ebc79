// tcache/backend.h: the byte-level interface between decorators and stores.
//
// A decorator (decorators.h) turns a call into a key and a value of bytes
// and keeps them in a Backend. Backends here: "memory" (in this process),
// "file" (a tcache::Store), "redis" (a Redis server shared by machines) and
// "tiered" (a chain that falls back from one to the next). The decorators
// also build a two-level backend (a local file answering first, Redis
// behind it) from BcacheOptions::remote.
//
// Thread safety: every Backend member may be called by many threads at once.
// Process safety: the "file" backend is shared by every process that opens
// the same file; "memory" is private to its process; "redis" is shared by
// every process and machine that uses the same server, database and keys.
// A child process after fork() makes its own backends (see tcache.h).
//
// Errors: members throw tcache::Error when the backend cannot do its job
// (io_error, no_space, corrupt_file, unavailable, ...). A miss is not an
// error. The tiered backend catches them and moves to its next tier.

#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tcache/error.h"
#include "tcache/export.h"
#include "tcache/store.h"

namespace tcache {

// Receives one-line warnings (for example "falling back to memory"). Empty =
// the default: one line on stderr. Must be thread-safe.
using Logger = std::function<void(std::string_view)>;

// Cache replacement policies of in-memory caches.
enum class Policy { lru, lfu, fifo };

class TCACHE_API Backend {
 public:
  virtual ~Backend() = default;

  // A short, stable name: "memory", "file", "redis", "tiered(file>memory)".
  virtual std::string name() const = 0;

  // True and the value if `key` is present and not expired.
  virtual bool get(std::string_view key, std::string& value) = 0;

  // Stores `value` under `key`; ttl 0 = the backend's default (often none).
  // Releases the caller's lease on `key`, if it holds one.
  virtual void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) = 0;

  // Removes `key`; true if it was present.
  virtual bool erase(std::string_view key) = 0;

  // Removes every entry whose key starts with `prefix`; returns how many.
  virtual std::uint64_t erase_prefix(std::string_view prefix) = 0;

  // Counts entries whose key starts with `prefix` (may scan the backend).
  virtual std::uint64_t count_prefix(std::string_view prefix) = 0;

  // Single flight. Returns true with the value if `key` is present, after
  // waiting (up to about lease_timeout) while another caller, in this or
  // another process, holds the key's lease and computes it. Returns false
  // when the caller now holds the lease: it must compute the value and put()
  // it, or release_lease() (on failure). A lease expires after lease_timeout
  // and a lease whose holder died is taken over, so waiting always ends.
  virtual bool get_or_lease(std::string_view key, std::string& value,
                            std::chrono::milliseconds lease_timeout) = 0;

  // Gives up a lease taken by get_or_lease without a value. Never throws.
  virtual void release_lease(std::string_view key) noexcept = 0;

  // The most entries the backend keeps (0 = bounded by bytes, not count).
  virtual std::uint64_t max_entries() const = 0;

  // Times this backend gave up on a failing part and used the next one
  // (tiered backends); 0 for the others.
  virtual std::uint64_t fallbacks() const { return 0; }

  // Operations whose failure in a part of this backend (a tier, the remote
  // level) it absorbed, answering them another way (from the next tier, as
  // a miss, or by not storing). Backends without parts throw instead of
  // absorbing: 0. Safe from any thread.
  virtual std::uint64_t errors() const { return 0; }
};

// In-process memory, holding up to max_entries entries (evicting by
// `policy`), shared by whoever holds the pointer.
TCACHE_API std::shared_ptr<Backend> make_memory_backend(std::uint64_t max_entries = 100'000,
                                                        Policy policy = Policy::lru);

// The persistent store at `file` (see Store::open for the errors it throws).
TCACHE_API std::shared_ptr<Backend> make_file_backend(const std::filesystem::path& file,
                                                      const StoreOptions& options = {});

// Tries tiers in order; the last one should be memory, which does not fail.
// When a tier throws tcache::Error, the call goes on to the next tier and
// `logger` hears it once per (tier, cause). Then:
// - Errc::unavailable (a server down, slow or restarting): the tier is
//   suspended and retried by one call after a backoff (50 ms doubling to
//   2 s); when that call succeeds the tier is used again.
// - value_too_large, key_too_large: only that value goes to the next tier.
// - anything else (io_error, read_only, corrupt_file, ...): the tier is
//   abandoned for good.
// fallbacks() counts suspensions and abandonments; errors() the failed
// operations. Erases go to every tier that is in use, so that an entry
// kept below (during an outage, or too large) cannot outlive invalidate().
// Throws Error(invalid_option) if tiers is empty or holds a null.
TCACHE_API std::shared_ptr<Backend> make_tiered_backend(std::vector<std::shared_ptr<Backend>> tiers,
                                                        Logger logger = {});

// Options of make_redis_backend. Every field may also be set by a query
// parameter of the URI ("?command_timeout=100ms&pool_size=4"), which wins.
struct RedisOptions {
  // Bound of one connection attempt (TCP connect, or the unix socket's)
  // and its handshake together, from the first byte to the last. > 0.
  std::chrono::milliseconds connect_timeout{1000};
  // Bound of each command, its write and its whole reply (a deadline, not a
  // bound per read: a server that answers byte by byte cannot stretch it).
  // A server slower than that makes the call throw Errc::unavailable. > 0.
  std::chrono::milliseconds command_timeout{250};
  // Connections kept open at most, shared by the backends of this process
  // that name the same server with the same options. 1..256.
  std::size_t pool_size = 8;
  // After a failure, connecting is retried after retry_min, doubling up to
  // retry_max; until then calls throw Errc::unavailable at once.
  std::chrono::milliseconds retry_min{50};
  std::chrono::milliseconds retry_max{2000};
  // Values of at least this many bytes are LZ4-compressed when that saves
  // space; 0 = never.
  std::uint32_t compress_threshold = 4096;
  // TTL of a put() given none; 0 = keys do not expire.
  std::chrono::milliseconds default_ttl{0};
  // bcache's two levels only (query parameter of `remote`): a value in the
  // local file, copied from Redis or written through, lives at most this
  // long (and never past its Redis TTL), so that invalidate() and
  // cache_clear() on another machine reach this one within local_ttl.
  // 0 = no bound: copies then live as long as Redis's TTL, forever for a
  // function without ttl, whatever other machines erase.
  std::chrono::milliseconds local_ttl{60000};
  // Every Redis key of this backend starts with this (then the hex of the
  // byte key). Give each application its own.
  std::string key_prefix = "tcache:";
  // true: make_redis_backend throws Errc::unavailable when the server cannot
  // be reached now. false: it returns a backend whose calls throw
  // unavailable until the server answers (the decorators use false).
  bool fail_if_unreachable = true;
  // Hears, once, of a value that is damaged or was not written by tcache
  // (it is a miss). Empty = silent. Must be thread-safe. (Outages are
  // reported by the tiered and two-level backends, through their loggers.)
  Logger logger{};
};

// A Backend on a Redis server:
//   redis://[[user]:password@]host[:port][/db][?option=value&...]
//   redis+unix://[[user]:password@]/path/to/socket[?db=N&option=value...]
// (port 6379 and db 0 by default; IPv6 hosts in brackets; user, password
// and path percent-decoded). Connects once at construction to check the
// address, the credentials (AUTH) and the database (SELECT).
// Redis keys are key_prefix + hex(key); values carry a 20-byte header
// (magic, flags, raw length, xxh3 checksum bound to the key) so that a
// foreign or damaged value is a miss. TTLs are SET ... PX. Leases (single
// flight across machines) are keys "<key>:lease" set with SET NX PX and
// removed by a compare-and-delete script. erase_prefix and count_prefix
// walk the database with SCAN (never KEYS): O(keys in the database).
// Throws Error: invalid_option (malformed URI or option, the server refused
// the credentials or the database number), unavailable (cannot connect, if
// fail_if_unreachable). Its members throw unavailable when the server is
// down, stalls past command_timeout, or restarts; the pool reconnects with
// backoff. Thread-safe; its connections are not shared with a child after
// fork() (the child connects anew).
// A tcache built without the Redis tier (-DTCACHE_WITH_REDIS=OFF:
// TCACHE_WITH_REDIS is 0 in tcache/version.h) has this function too, and it
// always throws Error(invalid_option) saying to rebuild with
// -DTCACHE_WITH_REDIS=ON.
TCACHE_API std::shared_ptr<Backend> make_redis_backend(const std::string& uri,
                                                       const RedisOptions& options = {});

}  // namespace tcache
