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
// meanwhile. The Redis tier is reached through redis_tier.h only (a build
// without it swaps that seam's implementation).
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

#include "decorators/redis_tier.h"
#include "tcache/decorators.h"
#include "util/fail.h"
#include "util/private_dir.h"
#include "util/redact_uri.h"

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

void begin_value_frame(std::uint64_t fingerprint, std::string& out) {
  out.clear();
  out.push_back(static_cast<char>(kValueFrameVersion));
  out.push_back(0);
  put_u64(out, fingerprint);
}

void pack_value(int compression, std::uint64_t fingerprint, std::string_view raw,
                std::string& out) {
  begin_value_frame(fingerprint, out);
  if (compression == 0 || raw.size() > static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE)) {
    out.append(raw);  // method 0: no length field, so no size limit of its own
    return;
  }
  out[1] = static_cast<char>(compression);
  put_u64(out, raw.size());
  constexpr std::size_t kHeader = kValueFrameHeader + 8;
  const int bound = LZ4_compressBound(static_cast<int>(raw.size()));
  out.resize(kHeader + static_cast<std::size_t>(bound));
  const int m = compression == 2
                    ? LZ4_compress_HC(raw.data(), out.data() + kHeader,
                                      static_cast<int>(raw.size()), bound, LZ4HC_CLEVEL_DEFAULT)
                    : LZ4_compress_default(raw.data(), out.data() + kHeader,
                                           static_cast<int>(raw.size()), bound);
  if (m <= 0 || static_cast<std::size_t>(m) + 8 >= raw.size()) {  // incompressible: keep it raw
    pack_value(0, fingerprint, raw, out);
    return;
  }
  out.resize(kHeader + static_cast<std::size_t>(m));
}

std::string_view open_value_frame(std::string_view stored, std::uint64_t fingerprint,
                                  std::string& scratch) {
  if (stored.size() < kValueFrameHeader) {
    fail(Errc::decode_error, "stored value frame shorter than its header");
  }
  if (static_cast<unsigned char>(stored[0]) != kValueFrameVersion) {
    fail(Errc::decode_error, "stored value frame has version " +
                                 std::to_string(static_cast<unsigned char>(stored[0])) + ", not " +
                                 std::to_string(kValueFrameVersion));
  }
  const auto method = static_cast<unsigned char>(stored[1]);
  std::uint64_t stored_fingerprint = 0;
  std::memcpy(&stored_fingerprint, stored.data() + 2, 8);
  if (stored_fingerprint != fingerprint) {
    fail(Errc::decode_error,
         "stored value is of another type (its type fingerprint differs from the result "
         "type's): recomputed");
  }
  std::string_view body = stored.substr(kValueFrameHeader);
  if (method == 0) return body;
  if (method > 2 || body.size() < 8) {
    fail(Errc::decode_error, "stored value frame has an unknown method or no length");
  }
  std::uint64_t n = 0;
  std::memcpy(&n, body.data(), 8);
  body.remove_prefix(8);
  if (n > static_cast<std::uint64_t>(LZ4_MAX_INPUT_SIZE) ||
      n > 255 * static_cast<std::uint64_t>(body.size()) + 16 ||
      body.size() > static_cast<std::size_t>(
                        LZ4_compressBound(LZ4_MAX_INPUT_SIZE))) {  // LZ4 expands at most ~255x
    fail(Errc::decode_error, "stored value frame has a bad length");
  }
  scratch.resize(static_cast<std::size_t>(n));
  const int got = LZ4_decompress_safe(body.data(), scratch.data(), static_cast<int>(body.size()),
                                      static_cast<int>(n));
  if (got != static_cast<int>(n)) fail(Errc::decode_error, "stored value fails to decompress");
  return scratch;
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
  s.backend =
      make_two_level_tier(std::move(local), "bcache", s, o.version, "remote", o.remote, o.logger);
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

namespace {

// ucache's setup, its messages naming `kind` (ucache, or acache for whose
// backend it is used).
ByteSetup ucache_setup_as(const std::string& kind, const UcacheOptions& o) {
  if (o.maxsize == 0) fail(Errc::invalid_option, kind + ": option 'maxsize' must be > 0");
  check_capacity(kind, o.capacity_bytes);
  const Config cfg_checked = config();
  const std::string spec = !o.backend.empty() ? o.backend : cfg_checked.backend;
  const BackendChoice choice = parse_backend(kind, spec, o.path);
  check_common(kind, o.name, !choice.memory, o.ttl, o.lease_timeout);
  if (!choice.redis.empty()) check_redis_uri(kind, o.name, "backend", choice.redis);
  ByteSetup s = base_setup(kind, o.name, o.version, o.ttl, o.lease_timeout, cfg_checked, o.logger);
  const bool large = o.value_bytes >= kLargeValueBytes;
  s.compression = large ? 1 : 0;
  auto memory = make_memory_backend(o.maxsize, Policy::lru);
  if (s.disabled || choice.memory) {
    s.backend = memory;
    return s;
  }
  std::vector<std::shared_ptr<Backend>> tiers;
  if (!choice.redis.empty()) {
    tiers.push_back(open_redis_tier(kind, s, o.version, "backend", choice.redis, o.logger));
  }
  try {
    const auto file = resolve_path(choice.path, cfg_checked, o.name, large ? ".fcache" : ".tcache");
    tiers.push_back(make_file_backend(file, file_options(o.capacity_bytes, large)));
  } catch (const Error& e) {
    s.warner->warn(static_cast<std::uint32_t>(e.code()),
                   "tcache: " + kind + " '" + o.name + "': cannot use the file store (" +
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

}  // namespace

ByteSetup ucache_setup(const UcacheOptions& o) { return ucache_setup_as("ucache", o); }

AsyncSetup acache_setup(const AcacheOptions& o) {
  if (o.maxsize == 0) fail(Errc::invalid_option, "acache: option 'maxsize' must be > 0");
  UcacheOptions u;
  u.name = o.name;
  u.version = o.version;
  u.backend = o.backend;
  // TCACHE_BACKEND is the default of an acache that names itself; a nameless
  // one (which a persistent backend could not tell apart) keeps to memory.
  if (u.backend.empty() && !o.name.empty()) u.backend = config().backend;
  if (u.backend.empty() && o.path.empty()) u.backend = "memory";
  u.path = o.path;
  u.maxsize = o.maxsize;
  u.ttl = o.ttl;
  u.lease_timeout = o.lease_timeout;
  u.logger = o.logger;
  AsyncSetup a;
  a.bytes = ucache_setup_as("acache", u);
  a.executor = o.executor;
  return a;
}

}  // namespace tcache::detail
