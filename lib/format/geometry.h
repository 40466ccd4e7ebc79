// format/geometry.h: computing a new file's layout and checking an existing
// file's superblock before anything in it is trusted.
//
// Thread safety: pure functions; safe from any thread.

#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "format/layout.h"

namespace tcache::detail {

struct GeometryRequest {
  std::uint64_t capacity_bytes;
  std::uint32_t expected_entry_bytes;
  std::uint32_t page_bytes;  // 0 = automatic
  // Compaction: 0 = size the index from expected_entry_bytes, else exactly
  // this many buckets (clamped to what the capacity allows).
  std::uint64_t bucket_count = 0;
  // Compaction keeps the file's hash seed, so that key hashes (and with them
  // chunk checksums) are the same in both files; empty = a fresh random one.
  std::optional<std::uint64_t> hash_seed{};
};

// Fills the immutable part of `sb` (including header_checksum) for a new
// file, with a fresh random hash seed unless the request names one. Throws Error(invalid_option)
// naming the option that makes the geometry impossible.
void make_superblock(const GeometryRequest& request, Superblock* sb);

// The page size make_superblock() picks for `capacity_bytes` when the
// request leaves it at 0.
std::uint32_t automatic_page_bytes(std::uint64_t capacity_bytes);

// Bytes a new file starts with: metadata and index, no slab pages.
std::uint64_t initial_file_bytes(const Superblock& sb);

// Checks a superblock read from `path` whose file is `file_size` bytes long.
// Throws Error: not_a_cache_file, version_mismatch, corrupt_file.
void validate_superblock(const Superblock& sb, std::uint64_t file_size, const std::string& path);

// XXH3-64 of the immutable part.
std::uint64_t superblock_checksum(const Superblock& sb);

}  // namespace tcache::detail
