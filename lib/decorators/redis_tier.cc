// decorators/redis_tier.cc: the decorators' Redis tier (redis_tier.h), in a
// build with TCACHE_WITH_REDIS=ON.

#include "decorators/redis_tier.h"

#include "backend/redis_backend.h"
#include "backend/redis_uri.h"

namespace tcache::detail {
namespace {

// Rethrows a Redis backend's error with the decorator and option it
// concerns: "tcache: ucache 'price': option 'backend': <what>".
[[noreturn]] void rethrow_for(const std::string& kind, const std::string& name, const char* option,
                              const Error& e) {
  std::string what = e.what();
  if (what.starts_with("tcache: ")) what.erase(0, 8);
  throw Error(e.code(), "tcache: " + kind + " '" + name + "': option '" + option + "': " + what);
}

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

void check_redis_uri(const std::string& kind, const std::string& name, const char* option,
                     const std::string& uri) {
  try {
    RedisOptions scratch;
    parse_redis_uri(uri, scratch);
  } catch (const Error& e) {
    rethrow_for(kind, name, option, e);
  }
}

std::shared_ptr<Backend> open_redis_tier(const std::string& kind, const ByteSetup& s,
                                         const std::string& version, const char* option,
                                         const std::string& uri, const Logger& logger) {
  return open_redis_for(kind, s, version, option, uri, logger);
}

std::shared_ptr<Backend> make_two_level_tier(std::shared_ptr<Backend> local,
                                             const std::string& kind, const ByteSetup& s,
                                             const std::string& version, const char* option,
                                             const std::string& uri, const Logger& logger) {
  return make_two_level_backend(std::move(local),
                                open_redis_for(kind, s, version, option, uri, logger), logger);
}

}  // namespace tcache::detail
