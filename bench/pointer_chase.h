// bench/pointer_chase.h: the hardware's price of one dependent memory load
// over a region as large as a cache file, measured in the same run as the
// stores so that "tcache get = k dependent loads" is a statement about this
// machine at this moment, not about a data sheet.
//
// Thread safety: measure_dependent_load() uses only its own memory.

#pragma once

#include <cstdint>

#include "results.h"

namespace tcache_bench {

// Builds a random cyclic permutation of 64-byte slots over a fresh buffer of
// `region_bytes` (writing every slot, so every page is touched before timing),
// follows it for `loads` dependent loads after an untimed warm-up, and
// returns the mean time per load.
// REQUIRES: region_bytes >= 64 * 2.
ChaseResult measure_dependent_load(std::uint64_t region_bytes, std::uint64_t loads,
                                   std::uint64_t seed);

}  // namespace tcache_bench
