// decorators/setup.cc: what the persistent decorators resolve at creation
// (options checked, default paths, backends opened or fallen back from) and
// the per-call helpers they share (keys, value frames, warnings).
//
// Backends by decorator: bcache = file, or two-level(file>redis) with
// `remote`; fcache = file; ucache/acache = memory, or tiered(file>memory),
// or tiered(redis>file>memory) for a Redis URI. A Redis backend gets the
// decorator's name and version (its keys are "tcache:{<name>}:<version>:
// <hex>", backend/redis_backend.h) and does not need the server to be up
// at creation: it reconnects with backoff, and the tiers below answer
// meanwhile.
//
// Thread safety: the setup functions are safe from any thread (they open
// stores, which is safe concurrently); make_key, pack_value and
// unpack_value are pure; Warner is guarded by its mutex.

#include <lz4.h>
#include <lz4hc.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "backend/redis_backend.h"
#include "backend/redis_uri.h"
#include "tcache/decorators.h"
#include "util/fail.h"
#include "util/private_dir.h"

namespace tcache::detail {
namespace {

constexpr std::uint64_t kLargeValueBytes = 64 * 1024;  // ucache: fcache-style past this

void put_u64(std::string& out, std::uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);  // little-endian hosts only; see codec.h
  out.append(b, 8);
}

// Checks the options every persistent decorator shares.
void check_common(const std::string& kind, const std::string& name, bool name_required,
                  std::chrono::milliseconds ttl, std::chrono::milliseconds lease_timeout) {
  if (name_required && name.empty()) {
    fail(Errc::invalid_option,
         kind +
             ": option 'name' is required for a persistent cache (function addresses differ "
             "between processes); give the function a stable name");
  }
  if (ttl.count() < 0) fail(Errc::invalid_option, kind + ": option 'ttl' must not be negative");
  if (lease_timeout.count() <= 0) {
    fail(Errc::invalid_option, kind + ": option 'lease_timeout' must be positive");
  }
}

void check_capacity(const std::string& kind, std::uint64_t capacity) {
  if (capacity < (1ull << 20) || capacity > (1ull << 40)) {
    fail(Errc::invalid_option,
         kind + ": option 'capacity_bytes' must be between 1 MiB and 1 TiB, not " +
             std::to_string(capacity));
  }
}

// A file name for a cache name: safe characters kept, the rest replaced; a
// hash suffix keeps different names apart after replacement.
std::string file_stem(const std::string& name) {
  std::string stem;
  bool changed = false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    stem += ok ? c : '_';
    changed = changed || !ok;
  }
  if (stem.empty() || stem[0] == '.') {
    stem = "_" + stem;
    changed = true;
  }
  if (changed || stem.size() > 100) {
    char h[24];
    std::snprintf(h, sizeof h, "-%016llx",
                  static_cast<unsigned long long>(XXH3_64bits(name.data(), name.size())));
    stem = stem.substr(0, 100) + h;
  }
  return stem;
}

// The path of a decorator's file: the given one, or <dir>/<name><ext> in
// the configured directory (created 0700 if missing).
std::filesystem::path resolve_path(const std::filesystem::path& given, const Config& cfg,
                                   const std::string& name, const char* ext) {
  if (!given.empty()) return given;
  if (cfg.dir.empty()) {
    fail(Errc::invalid_option,
         "no cache directory for '" + name +
             "': set TCACHE_DIR (or XDG_CACHE_HOME or HOME), or give the decorator a path");
  }
  ensure_private_dir(cfg.dir, 0700, false, true, "cache directory");
  return cfg.dir / (file_stem(name) + ext);
}

ByteSetup base_setup(const std::string& kind, const std::string& name, const std::string& version,
                     std::chrono::milliseconds ttl, std::chrono::milliseconds lease_timeout,
                     const Config& cfg, Logger logger) {
  ByteSetup s;
  s.kind = kind;
  s.name = name;
  std::string header;
  put_u64(header, name.size());
  header += name;
  put_u64(header, version.size());
  header += version;
  s.key_seed = XXH3_64bits(header.data(), header.size());
  const std::uint64_t prefix = XXH3_64bits(name.data(), name.size());
  s.prefix.assign(reinterpret_cast<const char*>(&prefix), 8);
  s.ttl = ttl.count() > 0 ? ttl : cfg.default_ttl;
  s.lease_timeout = lease_timeout;
  s.disabled = cfg.disable;
  s.warner = std::make_shared<Warner>(std::move(logger));
  return s;
}

StoreOptions file_options(std::uint64_t capacity, bool compressed_by_decorator) {
  StoreOptions o;
  o.capacity_bytes = capacity;
  if (compressed_by_decorator) {
    o.compress_threshold = 0;  // values arrive compressed
    o.expected_entry_bytes = 64 * 1024;
  }
  return o;
}

// A disabled decorator never opens its file; cache_info() and friends
// work on an empty memory backend.
ByteSetup disabled(ByteSetup s) {
  s.backend = make_memory_backend(1, Policy::lru);
  return s;
}

int compression_code(bool compress, Compression c) {
  if (!compress || c == Compression::none) return 0;
  return c == Compression::lz4hc ? 2 : 1;
}

bool is_redis_uri(const std::string& spec) {
  return spec.starts_with("redis://") || spec.starts_with("redis+unix://") ||
         spec.starts_with("rediss://");
}

// Rethrows a Redis backend's error with the decorator and option it
// concerns: "tcache: ucache 'price': option 'backend': <what>".
[[noreturn]] void rethrow_for(const std::string& kind, const std::string& name, const char* option,
                              const Error& e) {
  std::string what = e.what();
  if (what.starts_with("tcache: ")) what.erase(0, 8);
  throw Error(e.code(), "tcache: " + kind + " '" + name + "': option '" + option + "': " + what);
}

// Checks a Redis URI and its query options without connecting.
void check_redis_uri(const std::string& kind, const std::string& name, const char* option,
                     const std::string& uri) {
  try {
    RedisOptions scratch;
    parse_redis_uri(uri, scratch);
  } catch (const Error& e) {
    rethrow_for(kind, name, option, e);
  }
}

// The Redis backend of a decorator: its keys under "tcache:{<name>}:<version>:"
// (redis_backend.h). A server that cannot be reached now is no error (the
// backend reconnects with backoff); refused credentials or database are.
std::shared_ptr<RedisBackend> open_redis_for(const std::string& kind, const ByteSetup& s,
                                             const std::string& version, const char* option,
                                             const std::string& uri, const Logger& logger) {
  RedisOptions ro;
  ro.fail_if_unreachable = false;
  ro.logger = logger;
  const RedisNaming naming{s.name, version, s.prefix};
  try {
    return open_redis_backend(uri, ro, &naming);
  } catch (const Error& e) {
    rethrow_for(kind, s.name, option, e);
  }
}

}  // namespace

void Warner::warn(std::uint32_t cause, const std::string& line) {
  {
    std::lock_guard lock(mutex_);
    if (!seen_.insert(cause).second) return;
  }
  if (logger_) {
    logger_(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void make_key(const ByteSetup& setup, std::string_view args, char (&out)[kKeyBytes]) {
  std::memcpy(out, setup.prefix.data(), 8);
  const XXH128_hash_t h = XXH3_128bits_withSeed(args.data(), args.size(), setup.key_seed);
  std::memcpy(out + 8, &h.low64, 8);
  std::memcpy(out + 16, &h.high64, 8);
}

void pack_value(int compression, std::string_view raw, std::string& out) {
  out.clear();
  const auto n = static_cast<std::uint32_t>(raw.size());
  if (compression == 0 || raw.size() > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) {
    out.push_back(0);
    out.append(reinterpret_cast<const char*>(&n), 4);
    out.append(raw);
    return;
  }
  const int bound = LZ4_compressBound(static_cast<int>(raw.size()));
  out.resize(5 + static_cast<std::size_t>(bound));
  const int m =
      compression == 2
          ? LZ4_compress_HC(raw.data(), out.data() + 5, static_cast<int>(raw.size()), bound,
                            LZ4HC_CLEVEL_DEFAULT)
          : LZ4_compress_default(raw.data(), out.data() + 5, static_cast<int>(raw.size()), bound);
  if (m <= 0 || static_cast<std::size_t>(m) >= raw.size()) {  // incompressible: keep it raw
    pack_value(0, raw, out);
    return;
  }
  out[0] = static_cast<char>(compression);
  std::memcpy(out.data() + 1, &n, 4);
  out.resize(5 + static_cast<std::size_t>(m));
}

void unpack_value(std::string_view stored, std::string& out) {
  if (stored.size() < 5) fail(Errc::decode_error, "stored value frame shorter than its header");
  const auto method = static_cast<unsigned char>(stored[0]);
  std::uint32_t n = 0;
  std::memcpy(&n, stored.data() + 1, 4);
  const std::string_view body = stored.substr(5);
  if (method == 0) {
    if (body.size() != n) fail(Errc::decode_error, "stored value frame has the wrong length");
    out.assign(body);
    return;
  }
  if (method > 2 || n > static_cast<std::uint32_t>(LZ4_MAX_INPUT_SIZE) ||
      n > 255 * body.size() + 16) {  // LZ4 expands at most ~255x
    fail(Errc::decode_error, "stored value frame has a bad method or length");
  }
  out.resize(n);
  const int got = LZ4_decompress_safe(body.data(), out.data(), static_cast<int>(body.size()),
                                      static_cast<int>(n));
  if (got != static_cast<int>(n)) fail(Errc::decode_error, "stored value fails to decompress");
}

ByteSetup bcache_setup(const BcacheOptions& o) {
  check_common("bcache", o.name, true, o.ttl, o.lease_timeout);
  check_capacity("bcache", o.capacity_bytes);
  if (!o.remote.empty()) {
    if (!is_redis_uri(o.remote)) {
      fail(Errc::invalid_option, "bcache '" + o.name + "': option 'remote' must be a Redis URI " +
                                     "(redis://host:port/db or redis+unix:///path), not '" +
                                     redact_uri(o.remote) + "'");
    }
    check_redis_uri("bcache", o.name, "remote", o.remote);
  }
  const Config cfg = config();
  ByteSetup s = base_setup("bcache", o.name, o.version, o.ttl, o.lease_timeout, cfg, o.logger);
  if (s.disabled) return disabled(std::move(s));
  auto local = make_file_backend(resolve_path(o.path, cfg, o.name, ".tcache"),
                                 file_options(o.capacity_bytes, false));
  if (o.remote.empty()) {
    s.backend = std::move(local);
    return s;
  }
  s.backend = make_two_level_backend(
      std::move(local), open_redis_for("bcache", s, o.version, "remote", o.remote, o.logger),
      o.logger);
  return s;
}

ByteSetup fcache_setup(const FcacheOptions& o) {
  check_common("fcache", o.name, true, o.ttl, o.lease_timeout);
  check_capacity("fcache", o.capacity_bytes);
  const Config cfg = config();
  ByteSetup s = base_setup("fcache", o.name, o.version, o.ttl, o.lease_timeout, cfg, o.logger);
  s.compression = compression_code(o.compress, o.compression);
  if (s.disabled) return disabled(std::move(s));
  s.backend = make_file_backend(resolve_path(o.path, cfg, o.name, ".fcache"),
                                file_options(o.capacity_bytes, true));
  return s;
}

namespace {

// What a backend option names.
struct BackendChoice {
  bool memory = false;
  std::string redis;           // a Redis URI: tiers redis > file > memory
  std::filesystem::path path;  // file backend; "" = default
};

BackendChoice parse_backend(const std::string& kind, const std::string& spec,
                            const std::filesystem::path& path) {
  BackendChoice c;
  if (spec == "memory" || spec == "memory:") {
    c.memory = true;
  } else if (is_redis_uri(spec)) {
    c.redis = spec;
    c.path = path;
  } else if (spec == "file" || spec.empty()) {
    c.path = path;
  } else if (spec.starts_with("file://")) {
    c.path = spec.substr(7);
    if (c.path.empty() || !c.path.is_absolute()) {
      fail(Errc::invalid_option, kind + ": option 'backend' URI '" + spec +
                                     "' needs an absolute path (file:///abs/path) or use "
                                     "file:relative/path");
    }
  } else if (spec.starts_with("file:")) {
    c.path = spec.substr(5);
    if (c.path.empty()) {
      fail(Errc::invalid_option, kind + ": option 'backend' URI '" + spec + "' has no path");
    }
  } else {
    fail(Errc::invalid_option, kind + ": unknown backend '" + redact_uri(spec) +
                                   "' in option 'backend' (or TCACHE_BACKEND); use memory, "
                                   "file, memory:, file:///path, file:path, "
                                   "redis://host:port/db or redis+unix:///path");
  }
  if (!c.memory && !path.empty() && spec.starts_with("file:") && c.path != path) {
    fail(Errc::invalid_option,
         kind + ": options 'backend' and 'path' name different files; give one of them");
  }
  return c;
}

}  // namespace

ByteSetup ucache_setup(const UcacheOptions& o) {
  if (o.maxsize == 0) fail(Errc::invalid_option, "ucache: option 'maxsize' must be > 0");
  check_capacity("ucache", o.capacity_bytes);
  const Config cfg_checked = config();
  const std::string spec = !o.backend.empty() ? o.backend : cfg_checked.backend;
  const BackendChoice choice = parse_backend("ucache", spec, o.path);
  check_common("ucache", o.name, !choice.memory, o.ttl, o.lease_timeout);
  if (!choice.redis.empty()) check_redis_uri("ucache", o.name, "backend", choice.redis);
  ByteSetup s =
      base_setup("ucache", o.name, o.version, o.ttl, o.lease_timeout, cfg_checked, o.logger);
  const bool large = o.value_bytes >= kLargeValueBytes;
  s.compression = large ? 1 : 0;
  auto memory = make_memory_backend(o.maxsize, Policy::lru);
  if (s.disabled || choice.memory) {
    s.backend = memory;
    return s;
  }
  std::vector<std::shared_ptr<Backend>> tiers;
  if (!choice.redis.empty()) {
    tiers.push_back(open_redis_for("ucache", s, o.version, "backend", choice.redis, o.logger));
  }
  try {
    const auto file = resolve_path(choice.path, cfg_checked, o.name, large ? ".fcache" : ".tcache");
    tiers.push_back(make_file_backend(file, file_options(o.capacity_bytes, large)));
  } catch (const Error& e) {
    s.warner->warn(static_cast<std::uint32_t>(e.code()),
                   "tcache: ucache '" + o.name + "': cannot use the file store (" +
                       error_code_name(e.code()) + ": " + e.what() + "); falling back to " +
                       (tiers.empty() ? "memory" : "redis, then memory"));
    s.fallbacks = 1;
  }
  if (tiers.empty()) {
    s.backend = memory;
    return s;
  }
  tiers.push_back(memory);
  s.backend = make_tiered_backend(std::move(tiers), o.logger);
  return s;
}

AsyncSetup acache_setup(const AcacheOptions& o) {
  if (o.maxsize == 0) fail(Errc::invalid_option, "acache: option 'maxsize' must be > 0");
  UcacheOptions u;
  u.name = o.name;
  u.version = o.version;
  u.backend = !o.backend.empty() ? o.backend : config().backend;
  if (u.backend.empty() && o.path.empty()) u.backend = "memory";
  u.path = o.path;
  u.maxsize = o.maxsize;
  u.ttl = o.ttl;
  u.lease_timeout = o.lease_timeout;
  u.logger = o.logger;
  AsyncSetup a;
  a.bytes = ucache_setup(u);
  a.bytes.kind = "acache";
  a.executor = o.executor;
  return a;
}

}  // namespace tcache::detail
