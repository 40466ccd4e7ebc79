// decorators/no_redis_tier.cc: the decorators' Redis tier (redis_tier.h) in a
// build configured with -DTCACHE_WITH_REDIS=OFF: a Redis URI in `remote`,
// `backend` or TCACHE_BACKEND is refused when the decorator is made.

#include "backend/no_redis.h"
#include "decorators/redis_tier.h"

namespace tcache::detail {
namespace {

[[noreturn]] void refuse(const std::string& kind, const std::string& name, const char* option) {
  fail_no_redis(kind + " '" + name + "': option '" + option + "'");
}

}  // namespace

void check_redis_uri(const std::string& kind, const std::string& name, const char* option,
                     const std::string&) {
  refuse(kind, name, option);
}

std::shared_ptr<Backend> open_redis_tier(const std::string& kind, const ByteSetup& s,
                                         const std::string&, const char* option, const std::string&,
                                         const Logger&) {
  refuse(kind, s.name, option);
}

std::shared_ptr<Backend> make_two_level_tier(std::shared_ptr<Backend>, const std::string& kind,
                                             const ByteSetup& s, const std::string&,
                                             const char* option, const std::string&,
                                             const Logger&) {
  refuse(kind, s.name, option);
}

}  // namespace tcache::detail
