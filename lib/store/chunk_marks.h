// store/chunk_marks.h: one mark bit per carved chunk, for recovery and
// verify, a window of pages at a time.
//
// Recovery and verify must know, for every carved chunk, whether a slot (or
// a free list) reaches it. A bit per 8-byte unit of the whole carved area
// cost 1/64 of the file (16 GiB for a full 1 TiB file, allocated inside
// open). Instead the carved pages are cut into windows of at most
// kMaxChunks chunks (and kMaxPages pages), numbered chunk by chunk in their
// pages' classes; callers make one pass per window, looking only at what
// falls inside it. A file of up to kMaxChunks chunks (8 GiB of 64-byte
// chunks) is one window, so the common case is a single pass as before;
// memory stays below 32 MiB per ChunkMarks whatever the file's size.
//
// Thread safety: none; one instance per call of recover() or verify().

#pragma once

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

namespace tcache::detail {

class ChunkMarks {
 public:
  static constexpr std::uint64_t kMaxChunks = std::uint64_t{1} << 27;  // 16 MiB of bits
  static constexpr std::uint64_t kMaxPages = std::uint64_t{1} << 20;   // 4 MiB of bases

  // `chunk_bytes(p)` is the chunk size of page p's class, or 0 for a page
  // without chunks (never carved).
  ChunkMarks(std::uint64_t pages_offset, int page_shift,
             std::function<std::uint32_t(std::uint64_t)> chunk_bytes)
      : pages_offset_(pages_offset),
        page_shift_(page_shift),
        chunk_bytes_(std::move(chunk_bytes)) {}

  // Makes [first, end) the window, with every mark clear: from `first`, as
  // many pages as fit the limits (at least one). Returns the window's end.
  std::uint64_t start(std::uint64_t first, std::uint64_t pages) {
    first_ = first;
    base_.clear();
    size_.clear();
    std::uint64_t chunks = 0;
    std::uint64_t p = first;
    for (; p < pages && p - first < kMaxPages; ++p) {
      const std::uint32_t size = chunk_bytes_(p);
      const std::uint64_t n = size == 0 ? 0 : (std::uint64_t{1} << page_shift_) / size;
      if (p > first && chunks + n > kMaxChunks) break;
      base_.push_back(chunks);
      size_.push_back(size);
      chunks += n;
    }
    end_ = p;
    bits_.assign((chunks + 63) / 64, 0);
    return end_;
  }

  // Whether the chunk at file offset `off` lies in the window, in a page
  // that had chunks of its class when start() looked (a page carved or
  // given to another class since is not covered).
  bool covers(std::uint64_t off) const noexcept {
    if (off < pages_offset_) return false;
    const std::uint64_t p = page_of(off);
    if (p < first_ || p >= end_) return false;
    const std::uint32_t size = size_[p - first_];
    const std::uint64_t page_bytes = std::uint64_t{1} << page_shift_;
    return size != 0 && in_page(off) % size == 0 && in_page(off) + size <= page_bytes;
  }
  // REQUIRES: covers(off).
  bool test(std::uint64_t off) const noexcept {
    const std::uint64_t b = bit(off);
    return ((bits_[b / 64] >> (b % 64)) & 1) != 0;
  }
  void set(std::uint64_t off) noexcept {
    const std::uint64_t b = bit(off);
    bits_[b / 64] |= std::uint64_t{1} << (b % 64);
  }

 private:
  std::uint64_t page_of(std::uint64_t off) const noexcept {
    return (off - pages_offset_) >> page_shift_;
  }
  std::uint64_t in_page(std::uint64_t off) const noexcept {
    return (off - pages_offset_) & ((std::uint64_t{1} << page_shift_) - 1);
  }
  std::uint64_t bit(std::uint64_t off) const noexcept {
    const std::uint64_t p = page_of(off) - first_;
    return base_[p] + in_page(off) / size_[p];
  }

  std::uint64_t pages_offset_;
  int page_shift_;
  std::function<std::uint32_t(std::uint64_t)> chunk_bytes_;
  std::uint64_t first_ = 0;
  std::uint64_t end_ = 0;
  std::vector<std::uint64_t> base_;  // first bit of each page of the window
  std::vector<std::uint32_t> size_;  // its chunk size then (0: no chunks)
  std::vector<std::uint64_t> bits_;
};

}  // namespace tcache::detail
