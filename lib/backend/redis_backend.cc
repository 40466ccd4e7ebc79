// backend/redis_backend.cc: the "redis" Backend (key and value layout in
// redis_backend.h; connections in redis_client.h).
//
// Single flight across machines. A miss runs kAcquireScript, which in one
// step either returns the value (someone put it meanwhile), sets the lease
// key with SET NX PX lease_timeout to a token naming this holder (host id,
// pid, process start time, and a sequence number for this acquisition), or
// returns the current holder's token. Waiters run it again with backoff (1
// ms doubling to 50 ms) until the value appears or the lease goes: the
// holder's put() deletes it (pipelined with the SET), release_lease()
// deletes it after a failure, and PX deletes it when the holder died or
// overran lease_timeout. A holder on this host, in this pid namespace, whose
// process is gone is taken over at once; the host id is the hostname, the
// boot id and the pid namespace's inode, so a holder in a container that
// shares the hostname is never judged by this namespace's /proc (it ends by
// its PX if it dies). Deletion is always compare-and-delete on the token
// (kReleaseScript), so a holder that overran its lease never removes the
// lease of the caller that took over.
//
// Invariants:
//  1. leases_ holds this process's tokens by Redis key and holder (the
//     thread, or the detail::LeaseHolder it acts for: detail/lease_holder.h),
//     from the acquisition until put() or release_lease() by that holder
//     takes it out (or, for tokens abandoned by a failing caller, until it is
//     purged after its expiry). A token is sent to Redis for deletion only by
//     the holder that acquired it, or from orphans_ (3).
//  2. A token is never reused: a repeated acquisition (a retried command
//     whose first reply was lost) finds its own token and counts as taken.
//  3. A token that may hold a lease no caller holds is an orphan: the token
//     is chosen before its acquisition is sent, and if the command fails
//     (its reply may come after command_timeout, the lease set all the
//     same), or a put or release carrying a token fails, or a holder
//     acquires a key again over its own unreleased token, the token goes to
//     orphans_ (until its lease's PX would have run out). Every later
//     put, release_lease or acquisition of this backend, any key, sends a
//     compare-and-delete of (up to 64) orphans first, in its own pipeline;
//     if that command fails too they stay orphans. So a lost reply costs no
//     caller a lease_timeout, this process's callers included.

#include "backend/redis_backend.h"

#include <lz4.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "backend/redis_uri.h"
#include "tcache/detail/lease_holder.h"
#include "util/fail.h"
#include "util/proc.h"

namespace tcache::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kMagic[4] = {'t', 'c', 'R', '\x01'};
constexpr std::size_t kHeaderBytes = 20;
constexpr std::uint8_t kFlagLz4 = 1;
// Redis's default proto-max-bulk-len: larger strings are refused.
constexpr std::size_t kMaxStoredBytes = 512ull << 20;
constexpr std::size_t kScanCount = 1000;
constexpr std::string_view kLeaseSuffix = ":lease";
constexpr auto kMaxTtl = std::chrono::milliseconds(100ll * 365 * 24 * 3600 * 1000);

// KEYS[1] value, KEYS[2] lease; ARGV[1] token, ARGV[2] lease PX.
// Returns {1, value, pttl} | {0} (the caller holds the lease) | {2, holder}.
constexpr std::string_view kAcquireScript = R"lua(
local v = redis.call('GET', KEYS[1])
if v then return {1, v, redis.call('PTTL', KEYS[1])} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local holder = redis.call('GET', KEYS[2])
if holder == ARGV[1] then return {0} end
return {2, holder or ''}
)lua";

// KEYS[1] lease; ARGV[1] token. Deletes the lease only if the token holds it.
constexpr std::string_view kReleaseScript = R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua";

constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, std::string_view bytes) {
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
}

bool all_hex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// A name or version inside a Redis key: letters, digits and "._-/" kept,
// every other byte %XX, so that it holds no ':' (the separator), no brace
// (hash tags) and no glob character.
std::string key_part(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-' || c == '/';
    if (keep) {
      out += c;
    } else {
      const auto b = static_cast<unsigned char>(c);
      out += '%';
      out += "0123456789ABCDEF"[b >> 4];
      out += "0123456789ABCDEF"[b & 15];
    }
  }
  return out;
}

std::string glob_escape(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::uint64_t value_seed(std::string_view rkey, std::uint8_t flags, std::uint32_t raw_len) {
  return XXH3_64bits(rkey.data(), rkey.size()) ^
         ((static_cast<std::uint64_t>(raw_len) << 8) | flags);
}

void seal(std::string_view rkey, std::string_view value, std::uint32_t threshold,
          std::string& out) {
  out.resize(kHeaderBytes);
  std::uint8_t flags = 0;
  if (threshold != 0 && value.size() >= threshold &&
      value.size() <= static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) {
    const int bound = LZ4_compressBound(static_cast<int>(value.size()));
    out.resize(kHeaderBytes + static_cast<std::size_t>(bound));
    const int m = LZ4_compress_default(value.data(), out.data() + kHeaderBytes,
                                       static_cast<int>(value.size()), bound);
    if (m > 0 && static_cast<std::size_t>(m) < value.size()) {
      out.resize(kHeaderBytes + static_cast<std::size_t>(m));
      flags = kFlagLz4;
    } else {
      out.resize(kHeaderBytes);
    }
  }
  if (flags == 0) out.append(value);
  const auto raw_len = static_cast<std::uint32_t>(value.size());
  const std::uint64_t sum = XXH3_64bits_withSeed(
      out.data() + kHeaderBytes, out.size() - kHeaderBytes, value_seed(rkey, flags, raw_len));
  std::memcpy(out.data(), kMagic, 4);
  out[4] = static_cast<char>(flags);
  out[5] = out[6] = out[7] = 0;
  std::memcpy(out.data() + 8, &raw_len, 4);
  std::memcpy(out.data() + 12, &sum, 8);
}

// False for anything that is not a value this layout wrote for `rkey`.
bool unseal(std::string_view rkey, std::string_view stored, std::string& out) {
  if (stored.size() < kHeaderBytes || std::memcmp(stored.data(), kMagic, 4) != 0) return false;
  const auto flags = static_cast<std::uint8_t>(stored[4]);
  if ((flags & ~kFlagLz4) != 0 || stored[5] != 0 || stored[6] != 0 || stored[7] != 0) return false;
  std::uint32_t raw_len = 0;
  std::uint64_t sum = 0;
  std::memcpy(&raw_len, stored.data() + 8, 4);
  std::memcpy(&sum, stored.data() + 12, 8);
  const std::string_view body = stored.substr(kHeaderBytes);
  if (XXH3_64bits_withSeed(body.data(), body.size(), value_seed(rkey, flags, raw_len)) != sum) {
    return false;
  }
  if ((flags & kFlagLz4) == 0) {
    if (body.size() != raw_len) return false;
    out.assign(body);
    return true;
  }
  if (raw_len > static_cast<std::uint32_t>(LZ4_MAX_INPUT_SIZE) ||
      raw_len > 255 * body.size() + 16) {
    return false;
  }
  out.resize(raw_len);
  return LZ4_decompress_safe(body.data(), out.data(), static_cast<int>(body.size()),
                             static_cast<int>(raw_len)) == static_cast<int>(raw_len);
}

// What names this host and pid namespace in lease tokens:
// "<hostname>/<boot id>/<pid namespace inode>" (':' left out). A hostname
// alone does not do: containers that share the host's network share its
// name, not its pids. "" if /proc cannot tell (no boot id, no namespace
// link, or a /proc mounted for another pid namespace than ours): holders are
// then never judged dead from here, only by their lease's PX. Per thread
// and pid: a child after fork() may be in another namespace.
std::string read_host_id() {
  char name[256] = {};
  std::string host = ::gethostname(name, sizeof name - 1) == 0 ? name : "unknown-host";
  std::string boot;
  if (std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f) != nullptr) boot = buf;
    std::fclose(f);
  }
  while (!boot.empty() && (boot.back() == '\n' || boot.back() == ' ')) boot.pop_back();
  char link[64] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", link, sizeof link - 1);
  std::string ns;
  for (ssize_t i = 0; i < n; ++i) {
    if (link[i] >= '0' && link[i] <= '9') ns += link[i];
  }
  // /proc/self names this process by its pid in the namespace /proc was
  // mounted for: another number means /proc shows another namespace's pids.
  char self[32] = {};
  const ssize_t m = ::readlink("/proc/self", self, sizeof self - 1);
  const bool own_proc =
      m > 0 && std::string_view(self, static_cast<std::size_t>(m)) == std::to_string(::getpid());
  if (boot.empty() || ns.empty() || !own_proc) return {};
  std::string id = host + "/" + boot + "/" + ns;
  std::replace(id.begin(), id.end(), ':', '_');
  return id;
}

struct Identity {
  pid_t pid = 0;
  std::string host;   // read_host_id()
  std::string owner;  // "<host>:<pid>:<start time>"
};

const Identity& identity() {
  thread_local Identity id;
  const pid_t now = ::getpid();
  if (now != id.pid) {
    id.pid = now;
    id.host = read_host_id();
    // A host that cannot be told apart gets a name no other holder matches.
    const std::string host = id.host.empty() ? "unidentified-host" : id.host;
    id.owner = host + ":" + std::to_string(now) + ":" + std::to_string(process_start_time(now));
  }
  return id;
}

std::string new_token() {
  static std::atomic<std::uint64_t> seq{0};
  return identity().owner + ":" + std::to_string(seq.fetch_add(1, std::memory_order_relaxed));
}

// True if `token` names a holder on this host, in this pid namespace,
// whose process is gone.
bool holder_dead(std::string_view token) {
  const std::size_t p3 = token.rfind(':');
  if (p3 == std::string_view::npos || p3 == 0) return false;
  const std::size_t p2 = token.rfind(':', p3 - 1);
  if (p2 == std::string_view::npos || p2 == 0) return false;
  const std::size_t p1 = token.rfind(':', p2 - 1);
  if (p1 == std::string_view::npos) return false;
  const std::string& host = identity().host;
  if (host.empty() || token.substr(0, p1) != host) return false;
  pid_t pid = 0;
  std::uint64_t start = 0;
  const std::string_view pid_s = token.substr(p1 + 1, p2 - p1 - 1);
  const std::string_view start_s = token.substr(p2 + 1, p3 - p2 - 1);
  if (std::from_chars(pid_s.data(), pid_s.data() + pid_s.size(), pid).ec != std::errc() ||
      std::from_chars(start_s.data(), start_s.data() + start_s.size(), start).ec != std::errc() ||
      pid <= 0) {
    return false;
  }
  return !process_alive(pid, start);
}

std::chrono::milliseconds left_of(long long pttl) {
  if (pttl == -1) return std::chrono::milliseconds(0);             // no expiry
  return std::chrono::milliseconds(std::max<long long>(pttl, 1));  // -2: expired just now
}

[[noreturn]] void unexpected(const RedisClient& c, const redisReply* r, const char* command) {
  const std::string_view e = reply_error(r);
  fail(Errc::unavailable, "redis at " + c.display() + " answered " + command +
                              (e.empty() ? std::string(" with a reply of an unexpected type")
                                         : " with an error: " + std::string(e)));
}

}  // namespace

RedisBackend::RedisBackend(std::shared_ptr<RedisClient> client, const RedisOptions& options,
                           RedisKeyspace keyspace)
    : client_(std::move(client)),
      keyspace_(std::move(keyspace)),
      compress_threshold_(options.compress_threshold),
      default_ttl_(options.default_ttl),
      local_ttl_(options.local_ttl),
      logger_(options.logger) {}

void RedisBackend::redis_key(std::string_view key, std::string& out) const {
  if (!key.starts_with(keyspace_.strip)) {
    fail(Errc::invalid_option,
         "redis backend: a key does not start with its decorator's name hash");
  }
  out.assign(keyspace_.ns);
  append_hex(out, key.substr(keyspace_.strip.size()));
}

bool RedisBackend::pattern_for(std::string_view prefix, std::string& out) const {
  const std::string& strip = keyspace_.strip;
  if (prefix.size() <= strip.size()) {
    if (!std::string_view(strip).starts_with(prefix)) return false;
    out = glob_escape(keyspace_.scope) + "*";
    return true;
  }
  if (!prefix.starts_with(strip)) return false;
  out = glob_escape(keyspace_.ns);
  append_hex(out, prefix.substr(strip.size()));
  out += '*';
  return true;
}

void RedisBackend::warn_once(int cause, const std::string& line) {
  if (!logger_) return;
  {
    std::lock_guard lock(warn_mutex_);
    if ((warned_ & (1u << cause)) != 0) return;
    warned_ |= 1u << cause;
  }
  logger_(line);
}

bool RedisBackend::open_value(std::string_view rkey, const redisReply* r, std::string& value) {
  if (r->type == REDIS_REPLY_NIL) return false;
  if (r->type == REDIS_REPLY_STRING) {
    if (unseal(rkey, std::string_view(r->str, r->len), value)) return true;
    warn_once(0, "tcache: redis at " + client_->display() + ": the value under '" +
                     std::string(rkey) +
                     "' is damaged or was not written by tcache; treated as a miss");
    return false;
  }
  if (reply_error(r).starts_with("WRONGTYPE")) return false;  // another application's key
  unexpected(*client_, r, "GET");
}

bool RedisBackend::get(std::string_view key, std::string& value) {
  thread_local std::string rkey;
  thread_local RespBuffer cmds;
  thread_local std::vector<RedisReply> replies;
  redis_key(key, rkey);
  cmds.clear();
  cmds.command({"GET", rkey});
  client_->exec(cmds, replies);
  return open_value(rkey, replies[0].get(), value);
}

bool RedisBackend::get_with_ttl(std::string_view key, std::string& value,
                                std::chrono::milliseconds& left) {
  thread_local std::string rkey;
  thread_local RespBuffer cmds;
  thread_local std::vector<RedisReply> replies;
  redis_key(key, rkey);
  cmds.clear();
  cmds.command({"GET", rkey});
  cmds.command({"PTTL", rkey});
  client_->exec(cmds, replies);
  if (!open_value(rkey, replies[0].get(), value)) return false;
  if (replies[1]->type != REDIS_REPLY_INTEGER) unexpected(*client_, replies[1].get(), "PTTL");
  left = left_of(replies[1]->integer);
  return true;
}

void RedisBackend::put(std::string_view key, std::string_view value,
                       std::chrono::milliseconds ttl) {
  if (value.size() > 0xffffffffu) {
    fail(Errc::value_too_large, "redis backend: a value of " + std::to_string(value.size()) +
                                    " bytes is over the 4 GiB a value header can describe");
  }
  thread_local std::string rkey;
  thread_local std::string sealed;
  thread_local RespBuffer cmds;
  thread_local std::vector<RedisReply> replies;
  redis_key(key, rkey);
  seal(rkey, value, compress_threshold_, sealed);
  if (sealed.size() > kMaxStoredBytes) {
    fail(Errc::value_too_large, "redis backend: a value of " + std::to_string(sealed.size()) +
                                    " bytes is over Redis's 512 MiB limit for a string");
  }
  const auto t = std::min(ttl.count() > 0 ? ttl : default_ttl_, kMaxTtl);
  cmds.clear();
  if (t.count() > 0) {
    cmds.command({"SET", rkey, sealed, "PX", std::to_string(t.count())});
  } else {
    cmds.command({"SET", rkey, sealed});
  }
  // The lease ends with the value, in the same round trip.
  std::string lkey = rkey + std::string(kLeaseSuffix);
  Lease lease = take_lease(rkey);
  if (!lease.token.empty()) cmds.command({"EVAL", kReleaseScript, "1", lkey, lease.token});
  std::size_t first = 0;
  try {
    first = exec(cmds, replies);
  } catch (const Error&) {  // invariant 3: the lease may still be set
    if (!lease.token.empty()) orphan(std::move(lkey), std::move(lease.token), lease.expires);
    throw;
  }
  if (replies[first]->type != REDIS_REPLY_STATUS) {
    unexpected(*client_, replies[first].get(), "SET");
  }
}

bool RedisBackend::erase(std::string_view key) {
  std::string rkey;
  redis_key(key, rkey);
  RespBuffer cmds;
  cmds.command({"UNLINK", rkey});
  std::vector<RedisReply> replies;
  client_->exec(cmds, replies);
  if (replies[0]->type != REDIS_REPLY_INTEGER) unexpected(*client_, replies[0].get(), "UNLINK");
  return replies[0]->integer > 0;
}

// Walks the keys matching `prefix` with SCAN. unlink: removes them, each
// page's UNLINK pipelined with the next page's SCAN; returns how many went.
// Otherwise counts them. Lease keys and keys of other layouts are skipped.
std::uint64_t RedisBackend::scan(std::string_view prefix, bool unlink) {
  std::string pattern;
  if (!pattern_for(prefix, pattern)) return 0;
  std::string cursor = "0";
  std::uint64_t total = 0;
  std::vector<std::string> pending;  // to UNLINK with the next command
  RespBuffer cmds;
  std::vector<RedisReply> replies;
  const auto add_unlink = [&] {
    cmds.begin(1 + pending.size());
    cmds.arg("UNLINK");
    for (const auto& k : pending) cmds.arg(k);
  };
  const auto count_unlinked = [&](const redisReply* r) {
    if (r->type != REDIS_REPLY_INTEGER) unexpected(*client_, r, "UNLINK");
    total += static_cast<std::uint64_t>(r->integer);
    pending.clear();
  };
  do {
    cmds.clear();
    const bool had_pending = !pending.empty();
    if (had_pending) add_unlink();
    cmds.command({"SCAN", cursor, "MATCH", pattern, "COUNT", std::to_string(kScanCount)});
    client_->exec(cmds, replies);
    if (had_pending) count_unlinked(replies[0].get());
    const redisReply* r = replies.back().get();
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
      unexpected(*client_, r, "SCAN");
    }
    cursor.assign(r->element[0]->str, r->element[0]->len);
    const redisReply* keys = r->element[1];
    for (std::size_t i = 0; i < keys->elements; ++i) {
      const redisReply* k = keys->element[i];
      if (k->type != REDIS_REPLY_STRING) continue;
      const std::string_view name(k->str, k->len);
      if (!owns(name)) continue;
      if (unlink) {
        pending.emplace_back(name);
      } else {
        ++total;
      }
    }
  } while (cursor != "0");
  if (!pending.empty()) {
    cmds.clear();
    add_unlink();
    client_->exec(cmds, replies);
    count_unlinked(replies[0].get());
  }
  return total;
}

std::uint64_t RedisBackend::erase_prefix(std::string_view prefix) { return scan(prefix, true); }

std::uint64_t RedisBackend::count_prefix(std::string_view prefix) { return scan(prefix, false); }

bool RedisBackend::owns(std::string_view rkey) const {
  if (keyspace_.strip.empty()) {
    return rkey.starts_with(keyspace_.ns) && all_hex(rkey.substr(keyspace_.ns.size()));
  }
  // <scope><version>:<hex>, the version without ':' (key_part).
  if (!rkey.starts_with(keyspace_.scope)) return false;
  const std::string_view rest = rkey.substr(keyspace_.scope.size());
  const std::size_t colon = rest.find(':');
  return colon != std::string_view::npos && all_hex(rest.substr(colon + 1));
}

std::string RedisBackend::lease_table_key(std::string_view rkey) const {
  std::string k(rkey);
  k += '\0';
  k += std::to_string(detail::current_lease_holder());
  return k;
}

void RedisBackend::remember_lease(const std::string& rkey, std::string token,
                                  std::chrono::milliseconds timeout) {
  const auto now = Clock::now();
  std::string k = lease_table_key(rkey);
  Lease old;
  {
    std::lock_guard lock(leases_mutex_);
    if (leases_.size() >= 4096) {  // invariant 1: drop abandoned, expired tokens
      std::erase_if(leases_, [now](const auto& e) { return e.second.expires < now; });
    }
    Lease& l = leases_[std::move(k)];
    old = std::move(l);
    l = Lease{std::move(token), now + timeout};
  }
  // This holder acquired the key again without a put or release of its
  // previous lease: that one is nobody's now.
  if (!old.token.empty() && old.expires > now) {
    orphan(rkey + std::string(kLeaseSuffix), std::move(old.token), old.expires);
  }
}

void RedisBackend::orphan(std::string lkey, std::string token, Clock::time_point expires) {
  const auto now = Clock::now();
  std::lock_guard lock(leases_mutex_);
  if (orphans_.size() >= 4096) {
    std::erase_if(orphans_, [now](const Orphan& o) { return o.expires < now; });
    if (orphans_.size() >= 4096) return;  // its PX ends it
  }
  orphans_.push_back(Orphan{std::move(lkey), std::move(token), expires});
  has_orphans_.store(true, std::memory_order_relaxed);
}

void RedisBackend::restore_orphans(std::vector<Orphan>& orphans) {
  if (orphans.empty()) return;
  std::lock_guard lock(leases_mutex_);
  for (Orphan& o : orphans) orphans_.push_back(std::move(o));
  has_orphans_.store(true, std::memory_order_relaxed);
}

std::size_t RedisBackend::exec(const RespBuffer& cmds, std::vector<RedisReply>& replies) {
  if (!has_orphans_.load(std::memory_order_relaxed)) {
    client_->exec(cmds, replies);
    return 0;
  }
  std::vector<Orphan> released;
  {
    const auto now = Clock::now();
    std::lock_guard lock(leases_mutex_);
    std::erase_if(orphans_, [now](const Orphan& o) { return o.expires < now; });
    while (!orphans_.empty() && released.size() < 64) {
      released.push_back(std::move(orphans_.back()));
      orphans_.pop_back();
    }
    has_orphans_.store(!orphans_.empty(), std::memory_order_relaxed);
  }
  RespBuffer all;
  for (const Orphan& o : released) all.command({"EVAL", kReleaseScript, "1", o.lkey, o.token});
  all.append(cmds);
  if (all.count() == 0) return 0;
  try {
    client_->exec(all, replies);
  } catch (const Error&) {
    restore_orphans(released);
    throw;
  }
  return released.size();
}

RedisBackend::Lease RedisBackend::take_lease(const std::string& rkey) {
  std::lock_guard lock(leases_mutex_);
  if (leases_.empty()) return {};
  const auto it = leases_.find(lease_table_key(rkey));
  if (it == leases_.end()) return {};
  Lease lease = std::move(it->second);
  leases_.erase(it);
  return lease;
}

bool RedisBackend::get_or_lease(std::string_view key, std::string& value,
                                std::chrono::milliseconds lease_timeout) {
  return get_or_lease_with_ttl(key, value, lease_timeout, nullptr);
}

bool RedisBackend::get_or_lease_with_ttl(std::string_view key, std::string& value,
                                         std::chrono::milliseconds lease_timeout,
                                         std::chrono::milliseconds* left) {
  if (lease_timeout.count() <= 0) {
    fail(Errc::invalid_option, "redis backend: lease_timeout must be positive");
  }
  // A hit costs what a get costs: one GET (and PTTL when asked).
  if (left != nullptr ? get_with_ttl(key, value, *left) : get(key, value)) return true;
  std::string rkey;
  redis_key(key, rkey);
  const std::string lkey = rkey + std::string(kLeaseSuffix);
  const std::string token = new_token();
  const auto timeout = std::min(lease_timeout, kMaxTtl);
  const std::string px = std::to_string(timeout.count());
  const auto give_up = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  RespBuffer cmds;
  std::vector<RedisReply> replies;
  for (;;) {
    cmds.clear();
    cmds.command({"EVAL", kAcquireScript, "2", rkey, lkey, token, px});
    std::size_t first = 0;
    try {
      first = exec(cmds, replies);
    } catch (const Error&) {
      // Invariant 3: the server may have set the lease and its reply be
      // lost (a timeout). The token is remembered, so that the next command
      // of this backend deletes the lease if it holds it.
      orphan(lkey, token, Clock::now() + timeout);
      throw;
    }
    const redisReply* r = replies[first].get();
    if (reply_error(r).find("WRONGTYPE") != std::string_view::npos) {
      return false;  // a foreign key: compute, and put() replaces it
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
      unexpected(*client_, r, "the lease script");
    }
    const long long state = r->element[0]->integer;
    if (state == 1 && r->elements == 3 && r->element[2]->type == REDIS_REPLY_INTEGER) {
      // Present after all. A damaged value: compute without a lease (the
      // put replaces it).
      if (!open_value(rkey, r->element[1], value)) return false;
      if (left != nullptr) *left = left_of(r->element[2]->integer);
      return true;
    }
    if (state == 0) {
      remember_lease(rkey, token, timeout);
      return false;
    }
    if (state != 2 || r->elements != 2 || r->element[1]->type != REDIS_REPLY_STRING) {
      unexpected(*client_, r, "the lease script");
    }
    const std::string holder(r->element[1]->str, r->element[1]->len);
    if (holder_dead(holder)) {  // its process on this host is gone: take over
      cmds.clear();
      cmds.command({"EVAL", kReleaseScript, "1", lkey, holder});
      client_->exec(cmds, replies);
      continue;
    }
    if (Clock::now() >= give_up) return false;  // waited long enough: compute, unleased
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void RedisBackend::release_lease(std::string_view key) noexcept {
  try {
    std::string rkey;
    redis_key(key, rkey);
    Lease lease = take_lease(rkey);
    if (lease.token.empty() && !has_orphans_.load(std::memory_order_relaxed)) return;
    std::string lkey = rkey + std::string(kLeaseSuffix);
    RespBuffer cmds;
    if (!lease.token.empty()) cmds.command({"EVAL", kReleaseScript, "1", lkey, lease.token});
    std::vector<RedisReply> replies;
    try {
      exec(cmds, replies);
    } catch (const Error&) {  // invariant 3: deleted by a later command, or by its PX
      if (!lease.token.empty()) orphan(std::move(lkey), std::move(lease.token), lease.expires);
    }
  } catch (...) {
  }
}

std::shared_ptr<RedisBackend> open_redis_backend(const std::string& uri, RedisOptions options,
                                                 const RedisNaming* naming) {
  const RedisEndpoint endpoint = parse_redis_uri(uri, options);
  RedisKeyspace ks;
  if (naming != nullptr) {
    ks.scope = options.key_prefix + "{" + key_part(naming->name) + "}:";
    ks.ns = ks.scope + key_part(naming->version) + ":";
    ks.strip = naming->name_hash;
  } else {
    ks.scope = ks.ns = options.key_prefix;
  }
  auto client = RedisClient::shared(endpoint, options);
  try {
    client->check();
  } catch (const Error& e) {
    if (e.code() != Errc::unavailable || options.fail_if_unreachable) throw;
  }
  return std::make_shared<RedisBackend>(std::move(client), options, std::move(ks));
}

}  // namespace tcache::detail

namespace tcache {

std::shared_ptr<Backend> make_redis_backend(const std::string& uri, const RedisOptions& options) {
  return detail::open_redis_backend(uri, options, nullptr);
}

}  // namespace tcache
