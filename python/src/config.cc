// _tcache.push_config / pop_config / current_config: the C++ ScopedConfig
// and config() (tcache/config.h) for Python's `with tcache.config(...)`.
// TCACHE_DIR, TCACHE_DISABLE, TCACHE_DEFAULT_TTL and TCACHE_BACKEND are read
// by C++, as for C++ decorators.
//
// Thread safety: called with the GIL held, which guards the table of live
// scopes; scopes are process-wide and pop in reverse order of push.

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>

#include "bindings.h"
#include "convert.h"
#include "tcache/config.h"

namespace pyb = pybind11;

namespace tcache::py {
namespace {

// The live scopes by token. Leaked on purpose (never destroyed at exit): a
// scope left open by a program ends with the process.
std::map<std::uint64_t, std::unique_ptr<ScopedConfig>>& scopes() {
  static auto* s = new std::map<std::uint64_t, std::unique_ptr<ScopedConfig>>;
  return *s;
}
std::uint64_t g_next_token = 1;

}  // namespace
}  // namespace tcache::py

void bind_config(pybind11::module_& m) {
  using namespace tcache;
  using namespace tcache::py;
  using pyb::arg;
  m.def(
      "push_config",
      [](std::optional<std::filesystem::path> dir, pyb::object default_ttl,
         std::optional<bool> disable, std::optional<std::string> backend) {
        ConfigOverride o;
        o.dir = std::move(dir);
        if (!default_ttl.is_none()) o.default_ttl = to_ms(default_ttl, "default_ttl");
        o.disable = disable;
        o.backend = std::move(backend);
        auto scope = std::make_unique<ScopedConfig>(std::move(o));
        const std::uint64_t token = g_next_token++;
        scopes().emplace(token, std::move(scope));
        return token;
      },
      pyb::kw_only(), arg("dir") = pyb::none(), arg("default_ttl") = pyb::none(),
      arg("disable") = pyb::none(), arg("backend") = pyb::none(),
      "Starts a C++ ScopedConfig overriding the fields given; returns its token for "
      "pop_config. Raises ConfigurationError for a negative default_ttl or an empty dir.");
  m.def(
      "pop_config",
      [](std::uint64_t token) {
        auto it = scopes().find(token);
        if (it == scopes().end()) {
          throw pyb::key_error("tcache: pop_config: no live config scope " + std::to_string(token));
        }
        scopes().erase(it);
      },
      arg("token"), "Ends the scope push_config returned (scopes end in reverse order).");
  m.def(
      "current_config",
      [] {
        const Config c = config();
        pyb::dict d;
        d["dir"] = c.dir.string();
        d["disable"] = c.disable;
        d["default_ttl"] = to_seconds(c.default_ttl);
        d["backend"] = c.backend;
        return d;
      },
      "The configuration in effect: {dir, disable, default_ttl (seconds), backend}; "
      "dir is '' when no directory can be found.");
}
