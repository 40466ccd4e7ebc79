// A user's program against an installed tcache: a Store (open, put, get,
// stats), the decorators (mcache, and bcache, whose inline templates call the
// library's detail:: functions: with a shared libtcache those must be
// exported), and the Redis tier as this build has it (an error that crosses
// the library boundary either way). Exit status 0 on success; prints what
// went wrong otherwise.

#include <cstdio>
#include <string>

#include <tcache/tcache.h>

static_assert(TCACHE_WITH_REDIS == CONSUMER_EXPECTS_REDIS,
              "tcache/version.h's TCACHE_WITH_REDIS disagrees with tcacheConfig.cmake's "
              "tcache_WITH_REDIS");

namespace {

int fail(const char* what) {
  std::fprintf(stderr, "consumer: %s\n", what);
  return 1;
}

int square(int x) { return x * x; }

// The Errc of what `call` throws; Errc{} if it throws nothing.
template <class Call>
tcache::Errc error_of(Call call, std::string& message) {
  try {
    call();
  } catch (const tcache::Error& e) {
    message = e.what();
    return e.code();
  }
  return tcache::Errc{};
}

int check_store(const std::string& file) {
  tcache::StoreOptions options;
  options.capacity_bytes = 8u << 20;
  tcache::Store store = tcache::Store::open(file, options);
  const std::string value(1000, 'v');
  store.put("consumer-key", value);
  const auto got = store.get("consumer-key");
  if (!got || *got != value) return fail("get did not return the value put");
  if (store.get("absent-key")) return fail("get found a key that was never put");
  const tcache::StoreStats stats = store.stats();
  if (stats.entries != 1 || stats.puts != 1) {
    std::fprintf(stderr, "consumer: stats say %llu entries, %llu puts; expected 1 and 1\n",
                 static_cast<unsigned long long>(stats.entries),
                 static_cast<unsigned long long>(stats.puts));
    return 1;
  }
  return 0;
}

int check_decorators(const std::string& file) {
  auto m = tcache::mcache(square, {.maxsize = 16});
  if (m(7) != 49 || m(7) != 49 || m.cache_info().hits != 1) return fail("mcache did not hit");
  auto b = tcache::bcache(square, {.name = "square", .path = file});
  if (b(9) != 81 || b(9) != 81 || b.cache_info().hits != 1) return fail("bcache did not hit");
  return 0;
}

int check_redis() {
  std::string message;
#if TCACHE_WITH_REDIS
  // A malformed URI is refused before any connection is tried.
  if (error_of([] { tcache::make_redis_backend("redis://127.0.0.1:notaport/0"); }, message) !=
      tcache::Errc::invalid_option) {
    return fail("make_redis_backend took a malformed URI");
  }
#else
  if (error_of([] { tcache::make_redis_backend("redis://127.0.0.1:6379/0"); }, message) !=
          tcache::Errc::invalid_option ||
      message.find("-DTCACHE_WITH_REDIS=ON") == std::string::npos) {
    return fail("make_redis_backend of a build without Redis did not say to rebuild with it");
  }
  if (error_of(
          [] {
            tcache::bcache(square,
                           {.name = "r", .path = "unused", .remote = "redis://127.0.0.1:6379/0"});
          },
          message) != tcache::Errc::invalid_option ||
      message.find("option 'remote'") == std::string::npos) {
    return fail("bcache's remote in a build without Redis was not refused naming the option");
  }
#endif
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE\n", argv[0]);
    return 2;
  }
  try {
    if (int rc = check_store(argv[1])) return rc;
    if (int rc = check_decorators(std::string(argv[1]) + ".bcache")) return rc;
    if (int rc = check_redis()) return rc;
    std::printf("consumer: tcache %s works from an install (Redis tier: %s)\n",
                tcache::kVersionString, TCACHE_WITH_REDIS ? "yes" : "no");
  } catch (const tcache::Error& e) {
    std::fprintf(stderr, "consumer: %s (%s)\n", e.what(), tcache::error_code_name(e.code()));
    return 1;
  }
  return 0;
}
