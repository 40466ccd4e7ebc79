// decorators/redis_tier.h: what the decorators need of the Redis tier, behind
// one seam, so that a build without it swaps one file: redis_tier.cc when
// TCACHE_WITH_REDIS is ON, no_redis_tier.cc (every function throws
// Error(invalid_option) saying the build has no Redis tier) when it is OFF.
//
// Each function's errors name the decorator (`kind`), its name and the
// option the URI came from: "tcache: ucache 'price': option 'backend': ...".
//
// Thread safety: safe from any thread (they only open backends).

#pragma once

#include <memory>
#include <string>

#include "tcache/backend.h"
#include "tcache/detail/byte_state.h"

namespace tcache::detail {

// Checks a Redis URI and its query options without connecting. Throws
// Error(invalid_option).
void check_redis_uri(const std::string& kind, const std::string& name, const char* option,
                     const std::string& uri);

// The Redis backend of a decorator: its keys under "tcache:{<name>}:<version>:"
// (backend/redis_backend.h). A server that cannot be reached now is no error
// (the backend reconnects with backoff); refused credentials or database are
// (invalid_option).
std::shared_ptr<Backend> open_redis_tier(const std::string& kind, const ByteSetup& s,
                                         const std::string& version, const char* option,
                                         const std::string& uri, const Logger& logger);

// bcache's two levels: `local` answering first, the Redis backend of `uri`
// (as open_redis_tier) behind it (backend/redis_backend.h,
// make_two_level_backend).
std::shared_ptr<Backend> make_two_level_tier(std::shared_ptr<Backend> local,
                                             const std::string& kind, const ByteSetup& s,
                                             const std::string& version, const char* option,
                                             const std::string& uri, const Logger& logger);

}  // namespace tcache::detail
