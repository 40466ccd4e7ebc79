// backend/no_redis.h: the Redis tier of a build configured with
// -DTCACHE_WITH_REDIS=OFF (no hiredis): every way in throws one error.
//
// Thread safety: a pure function; safe from any thread.

#pragma once

#include <string>

namespace tcache::detail {

// Throws Error(invalid_option): "<who>: this build of tcache has no Redis
// tier ...; rebuild tcache with -DTCACHE_WITH_REDIS=ON ...".
[[noreturn]] void fail_no_redis(const std::string& who);

}  // namespace tcache::detail
