// decorators/config.cc: tcache::config() and ScopedConfig.
//
// Thread safety: the override stack is guarded by one mutex; whether the
// innermost scope disables caching is an atomic flag, so that every cached
// call can read it cheaply.

#include "tcache/config.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "tcache/error.h"
#include "util/fail.h"

namespace tcache {

namespace detail {
std::atomic<bool> g_disabled_by_scope{false};
}  // namespace detail

namespace {

struct Live {
  std::uint64_t id;
  ConfigOverride fields;
};

std::mutex g_mutex;
std::vector<Live> g_overrides;  // innermost last
std::uint64_t g_next_id = 1;

// Publishes what the innermost live override that sets `disable` says
// (false if none does). REQUIRES: g_mutex held.
void publish_scope_disable() {
  bool disabled = false;
  for (auto it = g_overrides.rbegin(); it != g_overrides.rend(); ++it) {
    if (it->fields.disable) {
      disabled = *it->fields.disable;
      break;
    }
  }
  detail::g_disabled_by_scope.store(disabled, std::memory_order_relaxed);
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

bool parse_bool(const std::string& text) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t.empty() || t == "0" || t == "false" || t == "no" || t == "off") return false;
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  detail::fail(Errc::invalid_option,
               "TCACHE_DISABLE='" + text + "' is not a boolean; use 1 or 0 (true/false)");
}

// The longest default TTL: what fits in int64 nanoseconds (about 292 years),
// so that adding it to a clock reading never overflows.
constexpr std::uint64_t kMaxTtlMs =
    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / 1'000'000;

std::chrono::milliseconds parse_ttl(const std::string& text) {
  auto bad = [&]() {
    detail::fail(Errc::invalid_option,
                 "TCACHE_DEFAULT_TTL='" + text +
                     "' is not a duration; use a non-negative number with an optional unit: "
                     "90, 90s, 1500ms, 5m, 2h");
  };
  auto too_long = [&]() {
    detail::fail(Errc::invalid_option,
                 "TCACHE_DEFAULT_TTL='" + text + "' is out of range; the longest is " +
                     std::to_string(kMaxTtlMs) + "ms (about 292 years), or use 0 for none");
  };
  std::size_t i = 0;
  std::uint64_t n = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) {
    const auto digit = static_cast<std::uint64_t>(text[i] - '0');
    if (n > (kMaxTtlMs - digit) / 10) too_long();
    n = n * 10 + digit;
    ++i;
  }
  if (i == 0) bad();
  const std::string_view unit = std::string_view(text).substr(i);
  std::uint64_t scale = 1000;
  if (unit.empty() || unit == "s") {
    scale = 1000;
  } else if (unit == "ms") {
    scale = 1;
  } else if (unit == "m") {
    scale = 60'000;
  } else if (unit == "h") {
    scale = 3'600'000;
  } else {
    bad();
  }
  if (n > kMaxTtlMs / scale) too_long();
  return std::chrono::milliseconds(static_cast<std::int64_t>(n * scale));
}

std::filesystem::path default_dir() {
  if (std::string d = env("TCACHE_DIR"); !d.empty()) return d;
  if (std::string x = env("XDG_CACHE_HOME"); !x.empty()) return std::filesystem::path(x) / "tcache";
  if (std::string h = env("HOME"); !h.empty()) {
    return std::filesystem::path(h) / ".cache" / "tcache";
  }
  return {};  // none: resolve_path() (decorators/setup.cc) says so if one is needed
}

}  // namespace

Config config() {
  Config c;
  std::vector<Live> overrides;
  {
    std::lock_guard lock(g_mutex);
    overrides = g_overrides;
  }
  bool have_dir = false;
  for (const Live& o : overrides) have_dir = have_dir || o.fields.dir.has_value();
  if (!have_dir) c.dir = default_dir();
  c.disable = parse_bool(env("TCACHE_DISABLE"));
  if (std::string t = env("TCACHE_DEFAULT_TTL"); !t.empty()) c.default_ttl = parse_ttl(t);
  c.backend = env("TCACHE_BACKEND");
  for (const Live& o : overrides) {
    if (o.fields.dir) c.dir = *o.fields.dir;
    if (o.fields.disable) c.disable = *o.fields.disable;
    if (o.fields.default_ttl) c.default_ttl = *o.fields.default_ttl;
    if (o.fields.backend) c.backend = *o.fields.backend;
  }
  return c;
}

ScopedConfig::ScopedConfig(ConfigOverride override) {
  if (override.default_ttl && override.default_ttl->count() < 0) {
    detail::fail(Errc::invalid_option, "ScopedConfig: default_ttl must not be negative");
  }
  if (override.dir && override.dir->empty()) {
    detail::fail(Errc::invalid_option, "ScopedConfig: dir must not be empty");
  }
  std::lock_guard lock(g_mutex);
  id_ = g_next_id++;
  g_overrides.push_back(Live{id_, std::move(override)});
  publish_scope_disable();
}

ScopedConfig::~ScopedConfig() {
  std::lock_guard lock(g_mutex);
  for (auto it = g_overrides.begin(); it != g_overrides.end(); ++it) {
    if (it->id == id_) {
      g_overrides.erase(it);
      publish_scope_disable();
      break;
    }
  }
}

}  // namespace tcache
