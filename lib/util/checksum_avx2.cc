// Compiled with -mavx2 (lib/CMakeLists.txt). Keep this file to XXH3 alone:
// any inline function it instantiated could be picked by the linker for
// code that runs on CPUs without AVX2.
#include "util/checksum.h"

#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

namespace tcache::detail {

std::uint64_t checksum64_avx2(const void* data, std::size_t n, std::uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(data, n, seed);
}

}  // namespace tcache::detail
