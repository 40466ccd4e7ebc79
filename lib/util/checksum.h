// util/checksum.h: XXH3-64 of a buffer, using the widest vector unit the CPU
// has for long inputs (AVX2 when present, chosen once at start-up; the
// result is the same on every CPU, as XXH3 defines it).
//
// Thread safety: pure function; safe from any thread.

#pragma once

#include <cstddef>
#include <cstdint>

namespace tcache::detail {

std::uint64_t checksum64(const void* data, std::size_t n, std::uint64_t seed) noexcept;

// The AVX2 build of XXH3 (util/checksum_avx2.cc); call only if the CPU has AVX2.
std::uint64_t checksum64_avx2(const void* data, std::size_t n, std::uint64_t seed) noexcept;

}  // namespace tcache::detail
