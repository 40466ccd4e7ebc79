// backend/no_redis.cc: make_redis_backend in a build configured with
// -DTCACHE_WITH_REDIS=OFF (no_redis.h). Compiled instead of redis_*.cc and
// two_level_backend.cc; the library then needs no hiredis.

#include "backend/no_redis.h"

#include "tcache/backend.h"
#include "util/fail.h"

namespace tcache {

namespace detail {

void fail_no_redis(const std::string& who) {
  fail(Errc::invalid_option,
       "tcache: " + who +
           ": this build of tcache has no Redis tier (it was configured with "
           "-DTCACHE_WITH_REDIS=OFF, and TCACHE_WITH_REDIS is 0 in tcache/version.h); rebuild "
           "tcache with -DTCACHE_WITH_REDIS=ON (it needs hiredis, Debian's libhiredis-dev) to use "
           "redis:// URIs, or use the memory or file backend");
}

}  // namespace detail

std::shared_ptr<Backend> make_redis_backend(const std::string&, const RedisOptions&) {
  detail::fail_no_redis("make_redis_backend");
}

}  // namespace tcache
