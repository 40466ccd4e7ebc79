// backend/redis_backend.h: the "redis" Backend, and the two-level backend
// (a local file in front of Redis) that the decorators build.
//
// Key layout. A backend maps each byte key to a Redis key through its
// RedisKeyspace: ns + hex(key without `strip`). The public factory uses
// ns = scope = RedisOptions::key_prefix and strips nothing. A decorator's
// backend strips the 8-byte name hash that starts every decorator key and
// names the function instead:
//
//   value   <key_prefix>{<name>}:<version>:<32 hex digits of the xxh3-128>
//   lease   <value key>:lease
//
// (key_prefix "tcache:" by default; name and version percent-encoded so
// that they hold no ':', '{', '}' or glob character). The braces are a
// Redis Cluster hash tag: all of one function's keys fall in one slot.
// erase_prefix / count_prefix of the name hash (cache_clear, cache_info)
// SCAN "<key_prefix>{<name>}:*", every version of the function, as the
// file store does; lease keys are never counted or removed by them.
//
// Value layout (little-endian):
//
//   0   4  magic 't' 'c' 'R' 0x01 (the last byte is the format version)
//   4   1  flags: bit 0 = the body is an LZ4 block; other bits 0
//   5   3  zero
//   8   4  raw length: bytes of the value (after decompression)
//   12  8  xxh3-64 of the body, seeded with xxh3-64 of the Redis key mixed
//          with flags and raw length (a value copied to another key fails)
//   20  .. body
//
// Anything else under a key (a foreign value, another type, a damaged or
// truncated one) is a miss, never an error or garbage.
//
// Thread safety: every member may be called by many threads at once; the
// lease table and the orphaned tokens are guarded by `leases_mutex_`, never
// held during I/O.
// Process safety: backends of any number of processes and machines may
// share a server; single flight across them goes through lease keys.

#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "backend/redis_client.h"
#include "tcache/backend.h"

namespace tcache::detail {

struct RedisKeyspace {
  std::string scope;  // pattern root (+ "*") for prefixes no longer than `strip`
  std::string ns;     // what every value key starts with
  std::string strip;  // bytes every byte key starts with, left out of the Redis key
};

// How a decorator names its entries (see the key layout above).
struct RedisNaming {
  std::string name;
  std::string version;
  std::string name_hash;  // the 8 bytes that start every key of the decorator
};

class RedisBackend final : public Backend {
 public:
  RedisBackend(std::shared_ptr<RedisClient> client, const RedisOptions& options,
               RedisKeyspace keyspace);

  std::string name() const override { return "redis"; }
  bool get(std::string_view key, std::string& value) override;
  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) override;
  bool erase(std::string_view key) override;
  std::uint64_t erase_prefix(std::string_view prefix) override;
  std::uint64_t count_prefix(std::string_view prefix) override;
  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout) override;
  void release_lease(std::string_view key) noexcept override;
  std::uint64_t max_entries() const override { return 0; }

  // As get / get_or_lease, also saying how long the value has left
  // (`left` 0 = it does not expire): for filling a local level.
  bool get_with_ttl(std::string_view key, std::string& value, std::chrono::milliseconds& left);
  bool get_or_lease_with_ttl(std::string_view key, std::string& value,
                             std::chrono::milliseconds lease_timeout,
                             std::chrono::milliseconds* left);

  const std::string& display() const noexcept { return client_->display(); }
  // RedisOptions::local_ttl: how long a two-level backend keeps a local copy.
  std::chrono::milliseconds local_ttl() const noexcept { return local_ttl_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Lease {
    std::string token;
    Clock::time_point expires;
  };

  void redis_key(std::string_view key, std::string& out) const;
  // A SCAN pattern for byte keys starting with `prefix`; false if no key
  // of this backend can start with it.
  bool pattern_for(std::string_view prefix, std::string& out) const;
  // True for a value key of this backend (not a lease, not another layout).
  bool owns(std::string_view rkey) const;
  bool open_value(std::string_view rkey, const redisReply* r, std::string& value);
  std::uint64_t scan(std::string_view prefix, bool unlink);
  std::string lease_table_key(std::string_view rkey) const;
  void remember_lease(const std::string& rkey, std::string token,
                      std::chrono::milliseconds timeout);
  Lease take_lease(const std::string& rkey);  // token "" if none
  // Tokens that may hold a lease on the server while no caller of this
  // process holds them: an acquisition whose reply was lost (a timeout), a
  // put or release that failed, a lease its thread acquired again.
  struct Orphan {
    std::string lkey;
    std::string token;
    Clock::time_point expires;  // its PX has surely run out by then
  };
  void orphan(std::string lkey, std::string token, Clock::time_point expires);
  void restore_orphans(std::vector<Orphan>& orphans);
  // client_->exec(cmds), preceded in the same pipeline by a compare-and-
  // delete of (at most 64) orphaned tokens. Returns the index of the first
  // reply to `cmds`. If it throws, the orphans stay orphans.
  std::size_t exec(const RespBuffer& cmds, std::vector<RedisReply>& replies);
  void warn_once(int cause, const std::string& line);

  std::shared_ptr<RedisClient> client_;
  const RedisKeyspace keyspace_;
  const std::uint32_t compress_threshold_;
  const std::chrono::milliseconds default_ttl_;
  const std::chrono::milliseconds local_ttl_;
  const Logger logger_;

  std::mutex leases_mutex_;
  std::unordered_map<std::string, Lease> leases_;  // ours, by Redis key and thread
  std::vector<Orphan> orphans_;                    // by lease key
  std::atomic<bool> has_orphans_{false};           // !orphans_.empty(), read without the lock
  std::mutex warn_mutex_;
  unsigned warned_ = 0;  // bit per cause
};

// Parses `uri`, applies its query options, and opens a backend: the
// decorator layout for `naming`, else key_prefix + hex(key). Throws what
// make_redis_backend throws.
std::shared_ptr<RedisBackend> open_redis_backend(const std::string& uri, RedisOptions options,
                                                 const RedisNaming* naming);

// The two-level backend: `local` (a file store) answers first; on a miss
// `remote` is asked and a value found there fills `local` with its
// remaining TTL; puts write both. Local copies live at most
// remote->local_ttl() (0 = no bound). Single flight: the local store's lease
// among this machine's processes, then the Redis lease among machines.
// Redis failures are absorbed (counted in errors(), warned once per cause
// through `logger`, empty = stderr): the local level keeps working, and
// Redis is retried after a backoff (tier_health.h) until it answers.
std::shared_ptr<Backend> make_two_level_backend(std::shared_ptr<Backend> local,
                                                std::shared_ptr<RedisBackend> remote,
                                                Logger logger);

}  // namespace tcache::detail
