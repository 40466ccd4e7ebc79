// A user's program against an installed tcache: open, put, get, check.
// Exit status 0 on success; prints what went wrong otherwise.

#include <cstdio>
#include <string>

#include <tcache/tcache.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s FILE\n", argv[0]);
    return 2;
  }
  try {
    tcache::StoreOptions options;
    options.capacity_bytes = 8u << 20;
    tcache::Store store = tcache::Store::open(argv[1], options);
    const std::string value(1000, 'v');
    store.put("consumer-key", value);
    const auto got = store.get("consumer-key");
    if (!got || *got != value) {
      std::fprintf(stderr, "consumer: get did not return the value put\n");
      return 1;
    }
    if (store.get("absent-key")) {
      std::fprintf(stderr, "consumer: get found a key that was never put\n");
      return 1;
    }
    const tcache::StoreStats stats = store.stats();
    if (stats.entries != 1 || stats.puts != 1) {
      std::fprintf(stderr, "consumer: stats say %llu entries, %llu puts; expected 1 and 1\n",
                   static_cast<unsigned long long>(stats.entries),
                   static_cast<unsigned long long>(stats.puts));
      return 1;
    }
    std::printf("consumer: tcache %s works from an install\n", tcache::kVersionString);
  } catch (const tcache::Error& e) {
    std::fprintf(stderr, "consumer: %s (%s)\n", e.what(), tcache::error_code_name(e.code()));
    return 1;
  }
  return 0;
}
