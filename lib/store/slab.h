// store/slab.h: the slab allocator's primitives on the mapped bytes alone,
// without a StoreImpl: size classes, a class's free list, and linking a
// carved page's chunks. StoreImpl's slab members (slab.cc) wrap these with
// the file's geometry, its damage reporting and its page claims.
//
// A free list is a singly linked list of free chunks. Its head is a pair of
// words (ClassState::free_head, 16-byte aligned): `lo` links the first
// chunk (head_link: chunk offset / kChunkAlign), `hi` is an ABA tag. A
// chunk links the next one through its meta word (kChunkMetaOffset).
//
// Thread safety: push_chain, pop_free and take_all may run in any number of
// threads of any number of processes on the same list at once. link_free_chunks
// REQUIRES: the caller owns the chunks (no other thread can reach them).
//
// Invariants (doc/INVARIANTS.md, 4):
//  1. Every change of a head is one 16-byte CAS (util/atomic128.h) that
//     also adds 1 to the tag, which never wraps (64 bits): a CAS that
//     succeeds proves that the head did not change since the pair was read,
//     so a chunk popped and pushed back meanwhile (the ABA case) fails it.
//  2. A read of the pair may tear; the CAS then fails and hands back the
//     real pair.
//  3. A free chunk's version is odd; a chunk with an even version at the
//     head is either being reused by whoever popped it after we read the
//     head (then the head has moved on) or a link into live chunks: damage.

#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "format/layout.h"
#include "util/atomic128.h"
#include "util/racy.h"

namespace tcache::detail::slab {

// The smallest class whose chunks hold `bytes`, or `class_count` if none
// does. `class_bytes` is ascending.
inline std::uint32_t class_for(const std::uint32_t* class_bytes, std::uint32_t class_count,
                               std::uint64_t bytes) noexcept {
  const std::uint32_t* end = class_bytes + class_count;
  return static_cast<std::uint32_t>(std::lower_bound(class_bytes, end, bytes) - class_bytes);
}

// Pushes the chain `first`..`last` (already linked, `last` the end) on the
// list at `head`.
inline void push_chain(std::uint64_t* head, char* base, std::uint64_t first,
                       std::uint64_t last) noexcept {
  WordPair h = load128(head);
  for (;;) {
    atom<std::uint64_t>(base + last + kChunkMetaOffset)
        .store(h.lo & kAddrMask, std::memory_order_relaxed);
    if (cas128(head, h, WordPair{head_link(first), h.hi + 1})) return;
  }
}

enum class Pop { popped, empty, damaged };

// Pops the list's first chunk into *off. `is_class(off)` says whether `off`
// is a whole chunk of the list's class (a bounds check against the file).
// A list found damaged (a link outside the class, or a chunk in use at the
// head: invariant 3) is dropped (its chunks leak until recovery rebuilds
// the list) and reported as damaged.
template <class IsClass>
inline Pop pop_free(std::uint64_t* head, char* base, IsClass&& is_class,
                    std::uint64_t* off) noexcept {
  WordPair h = load128(head);
  for (;;) {
    const std::uint64_t first = head_offset(h.lo);
    if (first == 0) return Pop::empty;
    bool damaged = !is_class(first);
    if (!damaged && (atom<std::uint32_t>(base + first).load(std::memory_order_acquire) & 1) == 0) {
      const WordPair again = load128(head);
      if (again.lo != h.lo || again.hi != h.hi) {
        h = again;
        continue;
      }
      damaged = true;
    }
    if (damaged) {
      if (cas128(head, h, WordPair{0, h.hi + 1})) return Pop::damaged;
      continue;
    }
    // The chunk may be popped and reused by someone else between these two
    // loads; then `next` is garbage, but the tag makes the CAS fail.
    const std::uint64_t next =
        atom<std::uint64_t>(base + first + kChunkMetaOffset).load(std::memory_order_relaxed);
    if (cas128(head, h, WordPair{next & kAddrMask, h.hi + 1})) {
      *off = first;
      return Pop::popped;
    }
  }
}

// Detaches the whole list at `head` and returns its first chunk (0 if it
// was empty): nobody else can pop its chunks afterwards (a pop that read
// the old head fails its CAS).
inline std::uint64_t take_all(std::uint64_t* head) noexcept {
  WordPair h = load128(head);
  while (!cas128(head, h, WordPair{0, h.hi + 1})) {
  }
  return head_offset(h.lo);
}

// Makes the `n` (>= 1) chunks of `size` bytes from `first` free chunks (odd
// versions), linked in order; returns the last one's offset.
inline std::uint64_t link_free_chunks(char* base, std::uint64_t first, std::uint32_t size,
                                      std::uint32_t n) noexcept {
  for (std::uint32_t i = 0; i < n; ++i) {
    char* c = base + first + std::uint64_t{i} * size;
    // Odd, and one past any version a stale reader may hold for this spot.
    auto version = atom<std::uint32_t>(c);
    version.store((version.load(std::memory_order_relaxed) | 1) + 2, std::memory_order_relaxed);
    const std::uint64_t next = i + 1 < n ? (first + std::uint64_t{i + 1} * size) / kChunkAlign : 0;
    atom<std::uint64_t>(c + kChunkMetaOffset).store(next, std::memory_order_relaxed);
  }
  return first + std::uint64_t{n - 1} * size;
}

}  // namespace tcache::detail::slab
