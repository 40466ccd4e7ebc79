// util/racy.h: loads and stores of bytes that other threads or processes may
// change at the same time (seqlock-protected chunk contents).
//
// Thread safety: these are the primitives that make racing safe. A reader
// copies bytes out with racy_read() and then validates them with the chunk's
// version (see doc/INVARIANTS.md); bytes that changed underneath are
// discarded. Under ThreadSanitizer they become relaxed atomic byte operations
// so that the benign races of the seqlock are not reported; otherwise they are
// memcpy/memcmp.
//
// Atomic access to 32- and 64-bit words in the mapping goes through
// std::atomic_ref (the words are naturally aligned, and lock-free atomics
// work across processes on the same mapping).

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SANITIZE_THREAD__)
#define TCACHE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TCACHE_TSAN 1
#endif
#endif

namespace tcache::detail {

inline void racy_read(void* dst, const void* src, std::size_t n) noexcept {
#ifdef TCACHE_TSAN
  auto* d = static_cast<unsigned char*>(dst);
  auto* s = static_cast<const unsigned char*>(src);
  for (std::size_t i = 0; i < n; ++i) d[i] = __atomic_load_n(s + i, __ATOMIC_RELAXED);
#else
  std::memcpy(dst, src, n);
#endif
}

inline void racy_write(void* dst, const void* src, std::size_t n) noexcept {
#ifdef TCACHE_TSAN
  auto* d = static_cast<unsigned char*>(dst);
  auto* s = static_cast<const unsigned char*>(src);
  for (std::size_t i = 0; i < n; ++i) __atomic_store_n(d + i, s[i], __ATOMIC_RELAXED);
#else
  std::memcpy(dst, src, n);
#endif
}

inline bool racy_equal(const void* shared, const void* mine, std::size_t n) noexcept {
#ifdef TCACHE_TSAN
  auto* a = static_cast<const unsigned char*>(shared);
  auto* b = static_cast<const unsigned char*>(mine);
  for (std::size_t i = 0; i < n; ++i) {
    if (__atomic_load_n(a + i, __ATOMIC_RELAXED) != b[i]) return false;
  }
  return true;
#else
  return std::memcmp(shared, mine, n) == 0;
#endif
}

template <class T>
inline std::atomic_ref<T> atom(void* p) noexcept {
  return std::atomic_ref<T>(*static_cast<T*>(p));
}
template <class T>
inline std::atomic_ref<T> atom(const void* p) noexcept {
  return std::atomic_ref<T>(*static_cast<T*>(const_cast<void*>(p)));
}

}  // namespace tcache::detail
