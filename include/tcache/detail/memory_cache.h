// tcache/detail/memory_cache.h: a bounded, sharded, thread-safe in-process cache of
// typed values: the engine of tcache::mcache and of the "memory" Backend.
//
//   detail::MemoryCache<int, double> c(/*maxsize=*/10'000, /*default_ttl=*/0s, Policy::lru);
//   c.put(7, 2.5);
//   double v;
//   if (c.get(7, v)) use(v);
//
// Thread safety: every member may be called by any number of threads at
// once, except construction and destruction. The cache is split into a
// power-of-two number of shards, each a boost::unordered_flat_set of slot
// numbers plus a slot vector, guarded by its own ShardLock (test-and-set with backoff); a call on
// one key locks only the shard that (middle) bits of the key's hash pick. clear(), erase_if(),
// count_if(), size() and stats() visit the shards one after another, so they do not see one instant
// of the whole cache. Under a shard's lock run only Hash, Eq, the constructors and assignments of K
// and V, and the predicates of erase_if/count_if: none of them may call back into the same cache
// (that would deadlock). Process safety: private to its process.
//
// Exceptions: get/put/erase throw only what Hash, Eq, K, V and allocation
// throw; after an exception the cache is still consistent (an entry being
// inserted may be missing, and an eviction made for it stays made).
//
// Bounds and policies. maxsize is split across the shards (shard i may hold
// maxsize / shards entries, plus one for the first maxsize % shards shards),
// so the cache never holds more than maxsize entries. When a shard is full,
// a put of a new key evicts one entry of that shard:
//   lru   the least recently used (get or put) entry; exact within a shard.
//   lfu   the least frequently used entry (gets and puts count); ties go to
//         the one least recently moved to its frequency. O(1) per operation.
//   fifo  the oldest inserted entry; gets and updates do not move it.
// lru and fifo keep one doubly linked list of slot numbers per shard; lfu
// a list per frequency. Links are 32-bit indices into the shard's slot
// vector, so a hit allocates nothing.
// With one shard these orders are exact for the whole cache; with several,
// each shard keeps its own order, so the victim is the policy's choice among
// the entries of the key's shard.
//
// Expiry. Each entry has an optional steady_clock deadline, set by put (its
// ttl, or default_ttl). An expired entry is never returned: get, erase,
// erase_if and count_if treat it as absent and drop it when they meet it.
// Expired entries that nobody looks at stay (counted by size()) until
// evicted, erased or met.
//
// Invariants (of each shard, whenever its mutex is free):
//  1. `index` holds exactly the numbers of the live slots (entry engaged),
//     each under hash_of(its key); no two live slots hold equal keys.
//  2. Free slots (entry empty) form the singly linked list `free` through
//     `next`.
//  3. lru/fifo: every live slot is on `list` exactly once (head = most
//     recently used / inserted).
//  4. lfu: every live slot is on the entry list of exactly one frequency
//     bucket, named by its `bucket`; the buckets in use form the list from
//     `lowest` in strictly increasing `freq`; none of them is empty; unused
//     buckets form the list `free_bucket`; buckets in use <= live slots.
//  5. Room is reserved (buckets.capacity() > live) before a slot is linked,
//     so linking and marking a use never allocate.
//  6. live == number of live slots <= bound; the bounds of all shards add
//     up to maxsize (at most 2^30 per shard).
//  7. hits, misses, evictions, expirations and live are written only with
//     the mutex held (plain load + store); readers may load them any time.

#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <boost/container_hash/hash.hpp>
#include <boost/unordered/unordered_flat_set.hpp>

#include "tcache/backend.h"

namespace tcache::detail {

// Counters of a MemoryCache since it was made.
struct MemoryCacheStats {
  std::uint64_t hits = 0;         // get() returned a value
  std::uint64_t misses = 0;       // get() found nothing (or an expired entry)
  std::uint64_t evictions = 0;    // entries the policy dropped to make room
  std::uint64_t expirations = 0;  // expired entries dropped when met
};

// A hash or equality that accepts other types than the key (heterogeneous
// lookup, as in the standard containers).
template <class F>
concept transparent_functor = requires {
  typename F::is_transparent;
};

// A shard's lock: test-and-test-and-set with backoff. Uncontended, lock is
// one atomic exchange and unlock one plain release store, with no call into
// the C library (std::mutex's pthread path cost about as much as the rest
// of a hit). Contended (rare: 64 shards), a waiter spins briefly, then
// yields, then sleeps in growing steps (1 us .. 64 us), so a long critical
// section (copying a large value) does not burn the waiters' CPU; unlock
// needs no wake-up because waiters poll. Not recursive.
class ShardLock {
 public:
  void lock() noexcept {
    if (!held_.exchange(true, std::memory_order_acquire)) return;
    for (int round = 0;; ++round) {
      if (!held_.load(std::memory_order_relaxed) &&
          !held_.exchange(true, std::memory_order_acquire)) {
        return;
      }
      if (round < 64) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
      } else if (round < 72) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(1 << std::min(round - 72, 6)));
      }
    }
  }
  void unlock() noexcept { held_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> held_{false};
};

template <class K, class V, class Hash = boost::hash<K>, class Eq = std::equal_to<K>>
class MemoryCache {
  // Lookups may use any Q that Hash and Eq accept when both are transparent
  // (e.g. std::string_view for std::string keys); otherwise a Q that is not
  // K is converted to K first.
  static constexpr bool kTransparent = transparent_functor<Hash> && transparent_functor<Eq>;
  template <class Q>
  static constexpr bool kDirect = std::is_same_v<std::remove_cvref_t<Q>, K> || kTransparent;
  // Whether put can replace the value of an entry in place.
  template <class W>
  static constexpr bool kUpdatable = std::is_assignable_v<V&, W&&> ||
                                     (std::is_copy_constructible_v<K> &&
                                      std::is_nothrow_move_constructible_v<V> &&
                                      std::is_nothrow_move_constructible_v<K>);

 public:
  using key_type = K;
  using mapped_type = V;

  static constexpr std::uint32_t kMaxShards = 256;
  static constexpr std::uint64_t kMaxShardEntries = 1u << 30;  // slot numbers are 32-bit

  // maxsize: the most entries held (REQUIRES: > 0; 0 is taken as 1).
  // default_ttl: lifetime of entries put without a ttl; <= 0 = no expiry.
  // shards: 0 = 64, or fewer so that each holds >= 64 entries (1 for caches
  // of < 128); else rounded up to a power of two, at most kMaxShards and at
  // most maxsize.
  MemoryCache(std::uint64_t maxsize, std::chrono::nanoseconds default_ttl, Policy policy,
              std::uint32_t shards = 0, Hash hash = Hash(), Eq eq = Eq())
      : hash_(std::move(hash)),
        eq_(std::move(eq)),
        maxsize_(std::max<std::uint64_t>(maxsize, 1)),
        default_ttl_(default_ttl.count() > 0 ? default_ttl : std::chrono::nanoseconds(0)),
        policy_(policy) {
    const std::uint32_t n = shard_count_for(maxsize_, shards);
    shards_ = std::make_unique<Shard[]>(n);
    shard_mask_ = n - 1;
    for (std::uint32_t i = 0; i < n; ++i) {
      Shard& s = shards_[i];
      s.cache = this;
      s.policy = policy_;
      const std::uint64_t bound = maxsize_ / n + (i < maxsize_ % n ? 1 : 0);
      s.bound = std::min<std::uint64_t>(bound, kMaxShardEntries);
    }
  }

  MemoryCache(const MemoryCache&) = delete;
  MemoryCache& operator=(const MemoryCache&) = delete;

  // The hash every *_hashed call takes: compute it once per key and pass it
  // to get_hashed and put_hashed (a miss then a put hashes once).
  template <class Q>
  std::size_t hash_of(const Q& key) const {
    if constexpr (kDirect<Q>) {
      return mix(static_cast<std::size_t>(hash_(key)));
    } else {
      return mix(static_cast<std::size_t>(hash_(K(key))));
    }
  }

  // Copies the value of `key` into `out` and returns true if it is present
  // and not expired; else false (out untouched). Counts a hit or a miss;
  // marks the entry used (lru, lfu).
  template <class Q>
  bool get(const Q& key, V& out) {
    return get_hashed(key, hash_of(key), out);
  }
  template <class Q>
  std::optional<V> get(const Q& key) {
    return get_hashed(key, hash_of(key));
  }
  // As get; REQUIRES: hash == hash_of(key).
  template <class Q>
  bool get_hashed(const Q& key, std::size_t hash, V& out) {
    return visit(key, hash, [&out](const V& v) { out = v; });
  }
  template <class Q>
  std::optional<V> get_hashed(const Q& key, std::size_t hash) {
    std::optional<V> out;
    visit(key, hash, [&out](const V& v) { out.emplace(v); });
    return out;
  }

  // Inserts or replaces the entry of `key`. ttl > 0: it expires that long
  // from now; else after default_ttl (or never). A new key in a full shard
  // evicts one entry first (see the policies above). Replacing marks the
  // entry used (lru, lfu), not inserted (fifo).
  template <class Q, class W>
  void put(Q&& key, W&& value, std::chrono::nanoseconds ttl = std::chrono::nanoseconds(0)) {
    const std::size_t hash = hash_of(key);
    put_hashed(std::forward<Q>(key), hash, std::forward<W>(value), ttl);
  }
  // As put; REQUIRES: hash == hash_of(key).
  template <class Q, class W>
  void put_hashed(Q&& key, std::size_t hash, W&& value,
                  std::chrono::nanoseconds ttl = std::chrono::nanoseconds(0)) {
    if constexpr (!kDirect<Q>) {
      put_hashed(K(std::forward<Q>(key)), hash, std::forward<W>(value), ttl);
    } else {
      const std::int64_t deadline = deadline_after(ttl.count() > 0 ? ttl : default_ttl_);
      Shard& s = shard_of(hash);
      std::lock_guard lock(s.mutex);
      if (auto it = s.index.find(KeyProbe<std::remove_cvref_t<Q>>{&key, hash});
          it != s.index.end()) {
        const std::uint32_t i = *it;
        if constexpr (kUpdatable<W>) {
          Slot& slot = s.slots[i];
          if constexpr (std::is_assignable_v<V&, W&&>) {
            slot.entry->value = std::forward<W>(value);
          } else {  // V cannot be assigned: rebuild the entry in place (keeps its rank)
            Entry fresh(std::as_const(slot.entry->key), std::forward<W>(value));
            slot.entry.reset();
            slot.entry.emplace(std::move(fresh));
          }
          slot.deadline = deadline;
          if (policy_ != Policy::fifo) s.touch(i);
          return;
        } else {  // replace the entry (it then ranks as new)
          s.index.erase(it);
          s.drop(i);
        }
      }
      if (s.live.load(std::memory_order_relaxed) >= s.bound) {
        const std::uint32_t victim = s.victim();
        s.index.erase(SlotProbe{victim, hash_of(s.slots[victim].entry->key)});
        s.drop(victim);
        bump(s.evictions);
      }
      s.reserve_link();                     // may throw: nothing changed
      const std::uint32_t i = s.acquire();  // may throw: nothing changed
      Slot& slot = s.slots[i];
      try {
        slot.entry.emplace(std::forward<Q>(key), std::forward<W>(value));
        slot.deadline = deadline;
        s.index.insert(i);
      } catch (...) {
        slot.entry.reset();
        s.release(i);
        throw;
      }
      s.link_new(i);
      s.live.store(s.live.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }
  }

  // Removes `key`; true if it was present and not expired.
  template <class Q>
  bool erase(const Q& key) {
    if constexpr (!kDirect<Q>) {
      return erase(K(key));
    } else {
      const std::size_t hash = hash_of(key);
      Shard& s = shard_of(hash);
      std::lock_guard lock(s.mutex);
      const auto it = s.index.find(KeyProbe<Q>{&key, hash});
      if (it == s.index.end()) return false;
      const std::uint32_t i = *it;
      const bool expired = s.slots[i].expired(now_ns());
      s.index.erase(it);
      s.drop(i);
      if (expired) bump(s.expirations);
      return !expired;
    }
  }

  // Removes every entry (counters are kept) and frees the memory of the
  // slots.
  void clear() {
    for (std::uint32_t n = 0; n <= shard_mask_; ++n) {
      Shard& s = shards_[n];
      std::vector<Slot> old;  // destroyed after the lock is released
      {
        std::lock_guard lock(s.mutex);
        s.index.clear();
        old.swap(s.slots);
        s.buckets.clear();
        s.free = kNil;
        s.free_bucket = kNil;
        s.lowest = kNil;
        s.list = List{};
        s.live.store(0, std::memory_order_relaxed);
      }
    }
  }

  // Removes the live entries whose key satisfies pred(const K&) (expired
  // ones met on the way are dropped, uncounted); returns how many.
  template <class Pred>
  std::uint64_t erase_if(Pred pred) {
    std::uint64_t removed = 0;
    for (std::uint32_t n = 0; n <= shard_mask_; ++n) {
      Shard& s = shards_[n];
      std::lock_guard lock(s.mutex);
      const std::int64_t now = now_ns();
      for (std::uint32_t i = 0; i < s.slots.size(); ++i) {
        Slot& slot = s.slots[i];
        if (!slot.entry) continue;
        const bool expired = slot.expired(now);
        if (!expired && !pred(std::as_const(slot.entry->key))) continue;
        s.index.erase(SlotProbe{i, hash_of(std::as_const(slot.entry->key))});
        s.drop(i);
        if (expired) {
          bump(s.expirations);
        } else {
          ++removed;
        }
      }
    }
    return removed;
  }

  // Counts the live, unexpired entries whose key satisfies pred(const K&).
  template <class Pred>
  std::uint64_t count_if(Pred pred) const {
    std::uint64_t count = 0;
    for (std::uint32_t n = 0; n <= shard_mask_; ++n) {
      const Shard& s = shards_[n];
      std::lock_guard lock(s.mutex);
      const std::int64_t now = now_ns();
      for (const Slot& slot : s.slots) {
        if (slot.entry && !slot.expired(now) && pred(std::as_const(slot.entry->key))) ++count;
      }
    }
    return count;
  }

  // Entries held, including expired ones not yet dropped. Takes no lock.
  std::uint64_t size() const noexcept {
    std::uint64_t n = 0;
    for (std::uint32_t i = 0; i <= shard_mask_; ++i) {
      n += shards_[i].live.load(std::memory_order_relaxed);
    }
    return n;
  }

  std::uint64_t maxsize() const noexcept { return maxsize_; }
  std::uint32_t shard_count() const noexcept { return shard_mask_ + 1; }
  Policy policy() const noexcept { return policy_; }

  // Sums of the shards' counters. Takes no lock.
  MemoryCacheStats stats() const noexcept {
    MemoryCacheStats st;
    for (std::uint32_t i = 0; i <= shard_mask_; ++i) {
      const Shard& s = shards_[i];
      st.hits += s.hits.load(std::memory_order_relaxed);
      st.misses += s.misses.load(std::memory_order_relaxed);
      st.evictions += s.evictions.load(std::memory_order_relaxed);
      st.expirations += s.expirations.load(std::memory_order_relaxed);
    }
    return st;
  }

 private:
  static constexpr std::uint32_t kNil = 0xffffffffu;

  struct Entry {
    template <class Q, class W>
    Entry(Q&& k, W&& v) : key(std::forward<Q>(k)), value(std::forward<W>(v)) {}
    K key;
    V value;
  };

  struct SlotFields {
    std::int64_t deadline = 0;    // steady_clock nanoseconds; 0 = never
    std::uint32_t prev = kNil;    // toward its list's head
    std::uint32_t next = kNil;    // toward the tail; free slots: the free list
    std::uint32_t bucket = kNil;  // lfu: its frequency bucket
    std::optional<Entry> entry;   // empty = free slot

    bool expired(std::int64_t now) const noexcept { return deadline != 0 && deadline <= now; }
  };
  // Slots of up to 32 bytes (an int -> int cache's) are aligned so that
  // none straddles two cache lines; larger ones keep their natural size.
  static constexpr std::size_t kSlotAlign = sizeof(SlotFields) <= 32 ? 32 : alignof(SlotFields);
  struct alignas(kSlotAlign) Slot : SlotFields {};

  struct List {
    std::uint32_t head = kNil;
    std::uint32_t tail = kNil;
  };

  struct Bucket {
    std::uint64_t freq = 0;
    std::uint32_t prev = kNil;  // lower frequency
    std::uint32_t next = kNil;  // higher frequency; the free list's link
    List entries;               // head = most recently moved here
  };

  // What the index is searched with: a key (to find its slot) or a slot
  // number (to find the index element of a known slot, when dropping it).
  template <class Q>
  struct KeyProbe {
    const Q* key;
    std::size_t hash;
  };
  struct SlotProbe {
    std::uint32_t slot;
    std::size_t hash;
  };

  struct Shard;

  // The index stores slot numbers; it hashes and compares them through the
  // shard's slots, so each key is stored once (in its slot). Probes carry
  // their hash; a slot's is computed again from its key (when the index
  // grows, and when a known slot is dropped).
  struct SlotHash {
    using is_transparent = void;
    using is_avalanching = void;  // hash_of() mixes already
    const Shard* shard;
    std::size_t operator()(std::uint32_t i) const {
      return shard->cache->hash_of(std::as_const(shard->slots[i].entry->key));
    }
    template <class P>
    std::size_t operator()(const P& probe) const noexcept {
      return probe.hash;
    }
  };
  struct SlotEq {
    using is_transparent = void;
    const Shard* shard;
    bool operator()(std::uint32_t a, std::uint32_t b) const noexcept { return a == b; }
    bool operator()(const SlotProbe& p, std::uint32_t i) const noexcept { return p.slot == i; }
    template <class Q>
    bool operator()(const KeyProbe<Q>& p, std::uint32_t i) const {
      return shard->cache->eq_(shard->slots[i].entry->key, *p.key);
    }
  };

  struct alignas(64) Shard {
    Shard() : index(0, SlotHash{this}, SlotEq{this}) {}

    // What a hit writes shares the mutex's cache line: mutex, list, hits.
    mutable ShardLock mutex;
    List list;  // lru, fifo
    std::atomic<std::uint64_t> hits{0};
    Policy policy = Policy::lru;
    std::uint32_t free = kNil;
    // Read by a hit, written only by puts and removals.
    boost::unordered_flat_set<std::uint32_t, SlotHash, SlotEq> index;
    std::vector<Slot> slots;
    const MemoryCache* cache = nullptr;
    std::uint64_t bound = 0;
    std::atomic<std::uint64_t> live{0};
    std::atomic<std::uint64_t> misses{0};
    std::atomic<std::uint64_t> evictions{0};
    std::atomic<std::uint64_t> expirations{0};
    std::vector<Bucket> buckets;       // lfu
    std::uint32_t lowest = kNil;       // lfu: bucket of the lowest frequency
    std::uint32_t free_bucket = kNil;  // lfu

    std::uint64_t live_count() const noexcept { return live.load(std::memory_order_relaxed); }

    // A free slot (entry empty), from the free list or a new one.
    std::uint32_t acquire() {
      if (free != kNil) {
        const std::uint32_t i = free;
        free = slots[i].next;
        return i;
      }
      slots.emplace_back();
      return static_cast<std::uint32_t>(slots.size() - 1);
    }
    // Returns a slot whose entry is empty to the free list.
    void release(std::uint32_t i) noexcept {
      slots[i].next = free;
      free = i;
    }
    // Unlinks live slot i (already out of the index) and frees it.
    void drop(std::uint32_t i) noexcept {
      if (policy == Policy::lfu) {
        unlink_lfu(i);
      } else {
        remove(list, i);
      }
      slots[i].entry.reset();
      release(i);
      live.store(live_count() - 1, std::memory_order_relaxed);
    }

    // Room to link one more slot without allocating (invariant 5).
    void reserve_link() {
      if (policy == Policy::lfu && buckets.capacity() < live_count() + 1) {
        buckets.reserve(std::max<std::size_t>(2 * buckets.capacity(), 16));
      }
    }
    // Links a new live slot as the policy's newest. REQUIRES: reserve_link().
    void link_new(std::uint32_t i) noexcept {
      if (policy != Policy::lfu) {
        push_front(list, i);
        return;
      }
      std::uint32_t b = lowest;
      if (b == kNil || buckets[b].freq != 1) b = new_bucket(1, kNil, lowest);
      push_front(buckets[b].entries, i);
      slots[i].bucket = b;
    }
    // Marks slot i used: lru moves it to the front, lfu counts one more use.
    void touch(std::uint32_t i) noexcept {
      if (policy == Policy::lru) {
        if (list.head != i) {  // then it has a predecessor
          Slot& s = slots[i];
          slots[s.prev].next = s.next;
          if (s.next != kNil) {
            slots[s.next].prev = s.prev;
          } else {
            list.tail = s.prev;
          }
          s.prev = kNil;
          s.next = list.head;
          slots[list.head].prev = i;
          list.head = i;
        }
      } else if (policy == Policy::lfu) {
        promote(i);
      }
    }
    // The entry the policy evicts next. REQUIRES: live > 0.
    std::uint32_t victim() const noexcept {
      return policy == Policy::lfu ? buckets[lowest].entries.tail : list.tail;
    }

    void push_front(List& l, std::uint32_t i) noexcept {
      Slot& s = slots[i];
      s.prev = kNil;
      s.next = l.head;
      if (l.head != kNil) {
        slots[l.head].prev = i;
      } else {
        l.tail = i;
      }
      l.head = i;
    }
    void remove(List& l, std::uint32_t i) noexcept {
      const Slot& s = slots[i];
      if (s.prev != kNil) {
        slots[s.prev].next = s.next;
      } else {
        l.head = s.next;
      }
      if (s.next != kNil) {
        slots[s.next].prev = s.prev;
      } else {
        l.tail = s.prev;
      }
    }

    // lfu: frequency buckets, each a list of slots (invariant 4).
    // A bucket of frequency `freq` linked between buckets prev and next.
    std::uint32_t new_bucket(std::uint64_t freq, std::uint32_t prev, std::uint32_t next) noexcept {
      std::uint32_t b = free_bucket;
      if (b != kNil) {
        free_bucket = buckets[b].next;
      } else {
        b = static_cast<std::uint32_t>(buckets.size());
        buckets.emplace_back();  // within capacity (invariant 5): does not allocate
      }
      buckets[b] = Bucket{freq, prev, next, List{}};
      if (prev != kNil) {
        buckets[prev].next = b;
      } else {
        lowest = b;
      }
      if (next != kNil) buckets[next].prev = b;
      return b;
    }
    void drop_bucket_if_empty(std::uint32_t b) noexcept {
      Bucket& k = buckets[b];
      if (k.entries.head != kNil) return;
      if (k.prev != kNil) {
        buckets[k.prev].next = k.next;
      } else {
        lowest = k.next;
      }
      if (k.next != kNil) buckets[k.next].prev = k.prev;
      k.next = free_bucket;
      free_bucket = b;
    }
    void unlink_lfu(std::uint32_t i) noexcept {
      const std::uint32_t b = slots[i].bucket;
      remove(buckets[b].entries, i);
      drop_bucket_if_empty(b);
    }
    // Moves slot i to the bucket of one more use.
    void promote(std::uint32_t i) noexcept {
      const std::uint32_t b = slots[i].bucket;
      const std::uint64_t f = buckets[b].freq;
      if (f == std::numeric_limits<std::uint64_t>::max()) return;
      std::uint32_t up = buckets[b].next;
      const bool up_fits = up != kNil && buckets[up].freq == f + 1;
      if (!up_fits && buckets[b].entries.head == i && buckets[b].entries.tail == i) {
        ++buckets[b].freq;  // alone in its bucket: the bucket moves up with it
        return;
      }
      // A new bucket here keeps buckets in use <= live: b keeps an entry.
      if (!up_fits) up = new_bucket(f + 1, b, up);
      remove(buckets[b].entries, i);
      push_front(buckets[up].entries, i);
      slots[i].bucket = up;
      drop_bucket_if_empty(b);
    }
  };

  template <class Q, class OnHit>
  bool visit(const Q& key, std::size_t hash, OnHit on_hit) {
    if constexpr (!kDirect<Q>) {
      return visit(K(key), hash, on_hit);
    } else {
      Shard& s = shard_of(hash);
      std::lock_guard lock(s.mutex);
      const auto it = s.index.find(KeyProbe<Q>{&key, hash});
      if (it == s.index.end()) {
        bump(s.misses);
        return false;
      }
      const std::uint32_t i = *it;
      Slot& slot = s.slots[i];
      if (slot.deadline != 0 && slot.deadline <= now_ns()) {
        s.index.erase(it);
        s.drop(i);
        bump(s.expirations);
        bump(s.misses);
        return false;
      }
      s.touch(i);
      on_hit(std::as_const(slot.entry->value));
      bump(s.hits);
      return true;
    }
  }

  // Bits 8.. of the hash: the index of a shard uses the top bits (position)
  // and the low byte (tag), which must not be the same for all the keys of
  // a shard.
  Shard& shard_of(std::size_t hash) const noexcept {
    return shards_[static_cast<std::uint32_t>(hash >> 8) & shard_mask_];
  }

  // Single writer (the shard's lock holder): no read-modify-write needed.
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // Spreads any hash (boost::hash of an integer is the integer) over all 64
  // bits with one multiplication (the high and low halves of the 128-bit
  // product, xored). The index takes it as it is (SlotHash is marked
  // avalanching): its position from the top bits, its tag from the low
  // byte; the shard comes from the bits above that byte (see shard_of).
  static std::size_t mix(std::size_t h) noexcept {
    __extension__ typedef unsigned __int128 U128;  // GCC and Clang, 64-bit targets
    const U128 p = static_cast<U128>(static_cast<std::uint64_t>(h)) * 0x9e3779b97f4a7c15ull;
    return static_cast<std::size_t>(static_cast<std::uint64_t>(p) ^
                                    static_cast<std::uint64_t>(p >> 64));
  }

  static std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  // The deadline of an entry put now with `ttl` (0 = none), saturating.
  static std::int64_t deadline_after(std::chrono::nanoseconds ttl) noexcept {
    if (ttl.count() <= 0) return 0;
    const std::int64_t now = now_ns();
    const std::int64_t max = std::numeric_limits<std::int64_t>::max();
    return ttl.count() > max - now ? max : std::max<std::int64_t>(now + ttl.count(), 1);
  }

  static std::uint32_t shard_count_for(std::uint64_t maxsize, std::uint32_t requested) {
    std::uint64_t n;
    if (requested == 0) {
      // Many shards: a lock sleeps in the kernel when two threads meet on
      // it for long, which costs far more than the lock, so collisions must
      // be rare whatever the number of threads; but each shard keeps a
      // useful share (>= 64 entries) of the bound, and its own exact order.
      n = 64;
      while (n > 1 && maxsize / n < 64) n /= 2;
    } else {
      n = std::bit_ceil(std::min<std::uint64_t>(requested, kMaxShards));
      while (n > 1 && n > maxsize) n /= 2;
    }
    return static_cast<std::uint32_t>(n);
  }

  Hash hash_;
  Eq eq_;
  std::uint64_t maxsize_;
  std::chrono::nanoseconds default_ttl_;
  Policy policy_;
  std::unique_ptr<Shard[]> shards_;
  std::uint32_t shard_mask_ = 0;
};

}  // namespace tcache::detail
