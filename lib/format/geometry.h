// format/geometry.h: computing a new file's layout and checking an existing
// file's superblock before anything in it is trusted.
//
// Thread safety: pure functions; safe from any thread.

#pragma once

#include <cstdint>
#include <string>

#include "format/layout.h"

namespace tcache::detail {

struct GeometryRequest {
  std::uint64_t capacity_bytes;
  std::uint32_t expected_entry_bytes;
  std::uint32_t page_bytes;  // 0 = automatic
};

// Fills the immutable part of `sb` (including header_checksum) for a new
// file, with a fresh random hash seed. Throws Error(invalid_option) naming
// the option that makes the geometry impossible.
void make_superblock(const GeometryRequest& request, Superblock* sb);

// Bytes a new file starts with: metadata and index, no slab pages.
std::uint64_t initial_file_bytes(const Superblock& sb);

// Checks a superblock read from `path` whose file is `file_size` bytes long.
// Throws Error: not_a_cache_file, version_mismatch, corrupt_file.
void validate_superblock(const Superblock& sb, std::uint64_t file_size, const std::string& path);

// XXH3-64 of the immutable part.
std::uint64_t superblock_checksum(const Superblock& sb);

}  // namespace tcache::detail
