// tcache/config.h: process-wide defaults of the decorators.
//
// Defaults come from the environment, read when a decorator is made:
//
//   TCACHE_DIR          directory of default cache files (else
//                       $XDG_CACHE_HOME/tcache, else ~/.cache/tcache)
//   TCACHE_DISABLE=1    decorators call through and cache nothing
//   TCACHE_DEFAULT_TTL  TTL of entries whose decorator sets none: a number
//                       with an optional unit, "90", "90s", "1500ms", "5m", "2h"
//   TCACHE_BACKEND      ucache's and acache's backend when their options name
//                       none: "memory", "file" or a URI ("file:///path",
//                       "redis://host:6379/0", "redis+unix:///path")
//
// A ScopedConfig overrides them for a block (the C++ form of the Python
// original's context manager):
//
//   {
//     tcache::ScopedConfig scope({.dir = "/tmp/t", .default_ttl = 5s});
//     auto f = tcache::bcache(g, {.name = "g"});   // file under /tmp/t
//   }
//
// Thread safety: config() and ScopedConfig may be used from any thread.
// Overrides are process-wide (not per thread) and nest: the innermost live
// override of each field wins. Destroy them in reverse order of creation
// (as scopes do). Process safety: each process has its own configuration.

#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "tcache/export.h"

namespace tcache {

struct Config {
  std::filesystem::path dir;                 // default directory of cache files
  bool disable = false;                      // call through, cache nothing
  std::chrono::milliseconds default_ttl{0};  // 0 = entries do not expire
  std::string backend;                       // "" = each decorator's own default
};

// The fields a ScopedConfig overrides; unset fields keep their value.
struct ConfigOverride {
  std::optional<std::filesystem::path> dir;
  std::optional<bool> disable;
  std::optional<std::chrono::milliseconds> default_ttl;
  std::optional<std::string> backend;
};

// The configuration in effect now: environment, then live overrides.
// `dir` is empty when none of TCACHE_DIR, XDG_CACHE_HOME and HOME is set;
// the decorators that need a directory then throw Error(invalid_option)
// saying so (mcache never needs one). Throws Error(invalid_option) naming
// the variable if TCACHE_DEFAULT_TTL or TCACHE_DISABLE cannot be parsed.
TCACHE_API Config config();

// Overrides configuration fields until destroyed. Decorators made while it
// lives use its defaults; `disable = true` also makes decorators made
// earlier call through while it lives, unless a ScopedConfig made after it
// sets `disable = false` (the innermost one that sets `disable` wins). A
// decorator made while caching is disabled calls through for good (it opened
// no file). Throws Error(invalid_option) for a
// negative default_ttl or an empty dir.
class TCACHE_API ScopedConfig {
 public:
  explicit ScopedConfig(ConfigOverride override);
  ~ScopedConfig();
  ScopedConfig(const ScopedConfig&) = delete;
  ScopedConfig& operator=(const ScopedConfig&) = delete;

 private:
  std::uint64_t id_;
};

namespace detail {
// What the innermost live ScopedConfig that sets `disable` says (config.cc).
extern TCACHE_API std::atomic<bool> g_disabled_by_scope;
// True while the innermost live ScopedConfig that sets `disable` sets it
// true. One relaxed load: it is on every cached call's path.
inline bool disabled_by_scope() noexcept {
  return g_disabled_by_scope.load(std::memory_order_relaxed);
}
}  // namespace detail

}  // namespace tcache
