#include "util/checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace tcache::detail {

namespace {

// Inputs up to 240 bytes take XXH3's scalar path whatever the build.
constexpr std::size_t kShortInput = 240;

using LongHash = std::uint64_t (*)(const void*, std::size_t, std::uint64_t) noexcept;

std::uint64_t checksum64_baseline(const void* data, std::size_t n, std::uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(data, n, seed);
}

const LongHash kLongHash = __builtin_cpu_supports("avx2") ? checksum64_avx2 : checksum64_baseline;

}  // namespace

std::uint64_t checksum64(const void* data, std::size_t n, std::uint64_t seed) noexcept {
  if (n <= kShortInput) return XXH3_64bits_withSeed(data, n, seed);
  return kLongHash(data, n, seed);
}

}  // namespace tcache::detail
