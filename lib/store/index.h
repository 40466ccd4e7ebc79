// store/index.h: the hash index's addressing, on numbers alone: the two
// buckets that may hold a key (two-choice hashing; doc/FORMAT.md, "Index").
// StoreImpl::slots_for (store_impl.h) and the tests use it.
//
// Thread safety: pure functions; safe from any thread.

#pragma once

#include <cstdint>

#include "format/layout.h"

namespace tcache::detail {

struct BucketPair {
  std::uint64_t first;
  std::uint64_t second;
};

// The bucket pair of key hash `h` in an index of `bucket_count` buckets:
// bucket_of(h) and bucket_of(second_hash(h)), or, where those coincide, the
// bucket after the first (wrapping), so that a pair always has
// 2 * kSlotsPerBucket slots. REQUIRES: bucket_count >= 2 (a validated
// superblock's).
inline BucketPair bucket_pair(std::uint64_t h, std::uint64_t bucket_count) noexcept {
  const std::uint64_t b1 = bucket_of(h, bucket_count);
  std::uint64_t b2 = bucket_of(second_hash(h), bucket_count);
  if (b2 == b1) b2 = b1 + 1 == bucket_count ? 0 : b1 + 1;
  return BucketPair{b1, b2};
}

}  // namespace tcache::detail
