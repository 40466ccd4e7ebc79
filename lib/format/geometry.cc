#include "format/geometry.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

namespace {

constexpr std::uint64_t kMinCapacity = 1ull << 20;
constexpr std::uint32_t kMinPageBytes = 64u << 10;
constexpr std::uint32_t kMaxPageBytes = 16u << 20;
constexpr std::uint32_t kAutoMaxPageBytes = 1u << 20;
constexpr std::uint32_t kSmallestClass = 32;
constexpr std::uint32_t kLinearClassLimit = 256;  // 8-byte steps below this
// Index slots per expected entry: 2-choice buckets of 8 stay below one
// overflow in thousands at 90% load.
constexpr double kIndexLoad = 0.9;

constexpr std::uint64_t round_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

// Size classes: every multiple of 8 from 32 to 256, then 12.5% apart, and
// one class of a whole page. A small file cannot give every class a page, so
// there the classes are spread geometrically over fewer steps (at most one
// class per two pages): a value then always finds a class with pages, at the
// cost of more rounding waste.
std::uint32_t fill_classes(std::uint32_t page_bytes, std::uint64_t max_pages, std::uint32_t* out) {
  std::uint32_t n = 0;
  for (std::uint32_t s = kSmallestClass; s <= kLinearClassLimit; s += 8) out[n++] = s;
  std::uint64_t s = kLinearClassLimit;
  while (n < kMaxClasses - 1) {
    s = round_up(s + s / 8, kChunkAlign);
    if (s >= page_bytes) break;
    out[n++] = static_cast<std::uint32_t>(s);
  }
  out[n++] = page_bytes;
  const auto limit =
      static_cast<std::uint32_t>(std::clamp<std::uint64_t>(max_pages / 2, 4, kMaxClasses));
  if (n <= limit) return n;
  const double factor =
      std::pow(static_cast<double>(page_bytes) / kSmallestClass, 1.0 / (limit - 1));
  n = 0;
  double x = kSmallestClass;
  while (n + 1 < limit) {
    const auto c = static_cast<std::uint32_t>(round_up(static_cast<std::uint64_t>(x), kChunkAlign));
    if (c >= page_bytes) break;
    if (n == 0 || c > out[n - 1]) out[n++] = c;
    x *= factor;
  }
  out[n++] = page_bytes;
  return n;
}

// *end = offset + count * size; false if that wraps around 2^64.
bool checked_extent(std::uint64_t offset, std::uint64_t count, std::uint64_t size,
                    std::uint64_t* end) {
  std::uint64_t bytes = 0;
  return !__builtin_mul_overflow(count, size, &bytes) &&
         !__builtin_add_overflow(offset, bytes, end);
}

std::string dec(std::uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "%llu", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

std::uint32_t layout_descriptor_hash() {
  // Sizes and offsets that another build must agree on to share a file.
  const std::uint64_t d[] = {sizeof(Superblock),
                             offsetof(Superblock, class_bytes),
                             offsetof(Superblock, header_checksum),
                             offsetof(Superblock, next_page),
                             offsetof(Superblock, totals),
                             offsetof(Superblock, compaction),
                             offsetof(Superblock, untracked_processes),
                             sizeof(ClassState),
                             offsetof(ClassState, free_aba),
                             offsetof(ClassState, pages),
                             sizeof(ProcessEntry),
                             offsetof(ProcessEntry, counters),
                             offsetof(ProcessEntry, writes),
                             offsetof(ProcessEntry, name_dir_device),
                             offsetof(ProcessEntry, name_hash),
                             kChunkHeaderBytes,
                             kChunkMetaOffset,
                             kChunkVlenOffset,
                             kMaxClasses,
                             kMaxProcesses,
                             kSlotsPerBucket,
                             static_cast<std::uint64_t>(kAddrBits),
                             static_cast<std::uint64_t>(kTagShift),
                             static_cast<std::uint64_t>(kGenShift),
                             kChunkAlign,
                             sizeof(void*),
                             kCounterCount};
  return static_cast<std::uint32_t>(XXH3_64bits(d, sizeof d));
}

std::uint64_t superblock_checksum(const Superblock& sb) {
  return XXH3_64bits(&sb, offsetof(Superblock, header_checksum));
}

void make_superblock(const GeometryRequest& req, Superblock* sb) {
  if (req.capacity_bytes < kMinCapacity || req.capacity_bytes > kMaxFileBytes) {
    fail(Errc::invalid_option, "capacity_bytes = " + dec(req.capacity_bytes) +
                                   " is out of range; use 1 MiB (1048576) to 1 TiB");
  }
  if (req.expected_entry_bytes < 16 || req.expected_entry_bytes > (1u << 20)) {
    fail(Errc::invalid_option, "expected_entry_bytes = " + dec(req.expected_entry_bytes) +
                                   " is out of range; use 16 to 1048576");
  }
  std::uint32_t page = req.page_bytes;
  if (page == 0) {
    page = automatic_page_bytes(req.capacity_bytes);
  } else if (!std::has_single_bit(page) || page < kMinPageBytes || page > kMaxPageBytes) {
    fail(Errc::invalid_option,
         "page_bytes = " + dec(page) + " must be a power of two from 65536 to 16777216, or 0");
  }

  std::memset(sb, 0, sizeof *sb);
  std::memcpy(sb->magic, kMagic, sizeof kMagic);
  sb->format_version = kFileFormatVersion;
  sb->endian_check = kEndianCheck;
  sb->layout_hash = layout_descriptor_hash();
  sb->page_bytes = page;
  sb->capacity_bytes = req.capacity_bytes;
  sb->created_unix_ms = now_unix_ms();
  if (req.hash_seed) {
    sb->hash_seed = *req.hash_seed;
  } else if (::getrandom(&sb->hash_seed, sizeof sb->hash_seed, 0) != sizeof sb->hash_seed) {
    sb->hash_seed = XXH3_64bits(&sb->created_unix_ms, 8) ^ static_cast<std::uint64_t>(::getpid());
  }

  if (req.bucket_count != 0) {
    sb->bucket_count =
        std::clamp<std::uint64_t>(req.bucket_count, 2, req.capacity_bytes / 4 / kBucketBytes);
  } else {
    const std::uint64_t entries =
        req.capacity_bytes / (std::uint64_t{req.expected_entry_bytes} + kChunkHeaderBytes);
    const auto slots = static_cast<std::uint64_t>(static_cast<double>(entries) / kIndexLoad) + 1;
    sb->bucket_count = std::max<std::uint64_t>(2, (slots + kSlotsPerBucket - 1) / kSlotsPerBucket);
  }

  sb->class_table_offset = kSuperblockBytes;
  sb->process_table_offset = sb->class_table_offset + kMaxClasses * sizeof(ClassState);
  sb->page_table_offset = sb->process_table_offset + kMaxProcesses * sizeof(ProcessEntry);
  const std::uint64_t page_table_bytes = round_up(req.capacity_bytes / page, 4096);
  sb->index_offset = sb->page_table_offset + page_table_bytes;
  sb->pages_offset = round_up(sb->index_offset + sb->bucket_count * kBucketBytes, 4096);
  if (sb->pages_offset + page > req.capacity_bytes) {
    fail(Errc::invalid_option, "capacity_bytes = " + dec(req.capacity_bytes) +
                                   " leaves no room for a single " + dec(page) +
                                   "-byte page after the " + dec(sb->pages_offset) +
                                   "-byte index; raise capacity_bytes or expected_entry_bytes");
  }
  sb->max_pages = (req.capacity_bytes - sb->pages_offset) / page;
  sb->class_count = fill_classes(page, sb->max_pages, sb->class_bytes);
  sb->header_checksum = superblock_checksum(*sb);
  sb->file_bytes = initial_file_bytes(*sb);  // mutable part: not checksummed
}

std::uint32_t automatic_page_bytes(std::uint64_t capacity_bytes) {
  const std::uint64_t want = std::bit_floor(capacity_bytes / 64);
  return static_cast<std::uint32_t>(
      std::clamp<std::uint64_t>(want, kMinPageBytes, kAutoMaxPageBytes));
}

std::uint64_t initial_file_bytes(const Superblock& sb) { return sb.pages_offset; }

void validate_superblock(const Superblock& sb, std::uint64_t file_size, const std::string& path) {
  const std::string where = "'" + path + "'";
  if (std::memcmp(sb.magic, kMagic, sizeof kMagic) != 0) {
    fail(Errc::not_a_cache_file,
         where + " is not a tcache file (bad magic); check the path, or delete the file");
  }
  if (sb.endian_check != kEndianCheck) {
    fail(Errc::version_mismatch, where +
                                     " was written on a machine of another byte order; "
                                     "move caches between machines with tcache-tool dump/load");
  }
  if (sb.format_version != kFileFormatVersion) {
    fail(Errc::version_mismatch,
         where + " has format version " + std::to_string(sb.format_version) +
             ", this tcache reads version " + std::to_string(kFileFormatVersion) +
             "; recreate it (delete the file: it is only a cache), or keep its entries by "
             "dumping it with the tcache-tool of the build that wrote it (tcache-tool dump) "
             "and loading the dump with this build's (tcache-tool load)");
  }
  if (sb.header_checksum != superblock_checksum(sb)) {
    fail(Errc::corrupt_file, where +
                                 " has a damaged header (checksum mismatch); delete the file "
                                 "(it is only a cache) and let tcache create it anew");
  }
  if (sb.layout_hash != layout_descriptor_hash()) {
    fail(Errc::version_mismatch,
         where +
             " was created by a tcache build with a different in-file layout; open it with "
             "the same build, or delete it");
  }
  const auto bad = [&](const char* what) {
    fail(Errc::corrupt_file, where + " has an impossible geometry (" + what +
                                 "); delete the file (it is only a cache)");
  };
  if (!std::has_single_bit(sb.page_bytes) || sb.page_bytes < kMinPageBytes ||
      sb.page_bytes > kMaxPageBytes) {
    bad("page size");
  }
  if (sb.capacity_bytes < kMinCapacity || sb.capacity_bytes > kMaxFileBytes) bad("capacity");
  if (sb.class_count == 0 || sb.class_count > kMaxClasses) bad("class count");
  for (std::uint32_t i = 0; i < sb.class_count; ++i) {
    const std::uint32_t c = sb.class_bytes[i];
    if (c < kSmallestClass || c > sb.page_bytes || c % kChunkAlign != 0 ||
        (i > 0 && c <= sb.class_bytes[i - 1])) {
      bad("size classes");
    }
  }
  // Every offset, size and count below comes from the file: each sum and
  // product is checked for wrapping before it is compared, so that a header
  // with a valid checksum but a huge field cannot pass as a small one.
  // index_end is where the index ends, pages_end where max_pages pages end.
  std::uint64_t index_end = 0;
  std::uint64_t pages_end = 0;
  if (sb.class_table_offset != kSuperblockBytes ||
      sb.process_table_offset != sb.class_table_offset + kMaxClasses * sizeof(ClassState) ||
      sb.page_table_offset != sb.process_table_offset + kMaxProcesses * sizeof(ProcessEntry) ||
      sb.index_offset > sb.capacity_bytes ||
      sb.index_offset < sb.page_table_offset + sb.capacity_bytes / sb.page_bytes ||
      sb.index_offset % 4096 != 0 || sb.bucket_count < 2 ||
      sb.bucket_count > sb.capacity_bytes / kBucketBytes ||
      !checked_extent(sb.index_offset, sb.bucket_count, kBucketBytes, &index_end) ||
      sb.pages_offset < index_end || sb.pages_offset % 4096 != 0 ||
      sb.pages_offset > sb.capacity_bytes ||
      sb.max_pages != (sb.capacity_bytes - sb.pages_offset) / sb.page_bytes ||
      !checked_extent(sb.pages_offset, sb.max_pages, sb.page_bytes, &pages_end) ||
      pages_end > sb.capacity_bytes) {
    bad("region offsets");
  }
  const std::uint64_t next_page = atom<std::uint64_t>(&sb.next_page).load();
  if (next_page > sb.max_pages) bad("page counter beyond capacity");
  std::uint64_t needed = 0;
  if (!checked_extent(sb.pages_offset, next_page, sb.page_bytes, &needed)) bad("page counter");
  if (file_size < needed) {
    fail(Errc::corrupt_file, where + " is " + std::to_string(file_size) +
                                 " bytes but its header needs " + std::to_string(needed) +
                                 " (truncated?); delete the file (it is only a cache)");
  }
}

}  // namespace tcache::detail
