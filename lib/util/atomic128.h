// util/atomic128.h: a 16-byte compare-and-swap on a word pair in the shared
// mapping (the free-list heads: format/layout.h, ClassState).
//
// It must be one hardware instruction (or an LL/SC loop), never a lock: the
// pair is shared by processes, and a lock in one process's memory would not
// exclude the others. So on x86-64 it is `lock cmpxchg16b` written out (every
// x86-64 CPU since 2006 has it; GCC's __atomic on 16 bytes calls libatomic,
// and ThreadSanitizer emulates 16-byte atomics under a lock of its own),
// elsewhere GCC's __sync builtin where the target has a native 16-byte CAS
// (AArch64), and no build at all without one.
//
// Thread safety: cas128 is atomic across threads and processes; it is a full
// barrier. Reading the pair takes two 64-bit atomic loads, which may tear:
// callers treat what they read as a guess that the CAS confirms or corrects.

#pragma once

#include <cstdint>

#include "util/racy.h"

#if defined(TCACHE_TSAN)
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace tcache::detail {

struct WordPair {
  std::uint64_t lo;
  std::uint64_t hi;
};

// If the 16 bytes at `p` (16-byte aligned) equal `expected`, stores `desired`
// and returns true; otherwise stores what they hold in `expected` and returns
// false.
inline bool cas128(std::uint64_t* p, WordPair& expected, WordPair desired) noexcept {
#if defined(TCACHE_TSAN)
  // ThreadSanitizer does not see the instruction: tell it what it orders.
  __tsan_release(p);
#endif
#if defined(__x86_64__)
  __extension__ using u128 = unsigned __int128;
  bool ok;
  __asm__ __volatile__("lock cmpxchg16b %1"
                       : "=@ccz"(ok), "+m"(*reinterpret_cast<volatile u128*>(p)), "+a"(expected.lo),
                         "+d"(expected.hi)
                       : "b"(desired.lo), "c"(desired.hi)
                       : "memory");
#elif defined(__GCC_HAVE_SYNC_COMPARE_AND_SWAP_16)
  __extension__ using u128 = unsigned __int128;
  const u128 want = (u128{expected.hi} << 64) | expected.lo;
  const u128 got = __sync_val_compare_and_swap(reinterpret_cast<u128*>(p), want,
                                               (u128{desired.hi} << 64) | desired.lo);
  const bool ok = got == want;
  expected = WordPair{static_cast<std::uint64_t>(got), static_cast<std::uint64_t>(got >> 64)};
#else
#error "tcache needs a native 16-byte compare-and-swap (x86-64, or AArch64 with GCC/Clang)"
#endif
#if defined(TCACHE_TSAN)
  __tsan_acquire(p);
#endif
  return ok;
}

// The pair at `p`, as two acquire loads (`hi` first): possibly torn.
inline WordPair load128(std::uint64_t* p) noexcept {
  WordPair w;
  w.hi = atom<std::uint64_t>(p + 1).load(std::memory_order_acquire);
  w.lo = atom<std::uint64_t>(p).load(std::memory_order_acquire);
#if defined(TCACHE_TSAN)
  __tsan_acquire(p);
#endif
  return w;
}

}  // namespace tcache::detail
