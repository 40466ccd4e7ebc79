// store/index.cc: the hash index. Finding a key's entry in its bucket pair
// (find_entry, probe, and the lookups built on them: get, contains,
// get_many), publishing a chunk into the pair (publish, choosing a victim
// slot in a full pair, withdraw_if_rival, dedupe), unpublishing it (unlink,
// unlink_entry, unlink_chunk, retire), finding the slot of a chunk, and
// whether an entry is live or expired.
//
// get, contains and get_many live here, beside probe, so that probe (and
// find_entry, always inlined into it) stays inlined into them: every lookup
// pays for no extra call.
//
// Layer 3 (store_impl.h, "Rooms"): calls the slab (push_chain) and blob
// files (read_blob, release_payload). Every function is safe from any thread
// of any process (doc/INVARIANTS.md, 1-3, 5, 6).

#include <lz4.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"
#include "util/test_hook.h"

namespace tcache::detail {

namespace {

constexpr int kMaxPublishRounds = 256;

}  // namespace

// Not inline: inlined into publish(), it cost more than the call saves
// (callgrind, 100 B puts).
StoreImpl::Slots StoreImpl::slots_for(std::uint64_t h) const noexcept {
  const BucketPair p = bucket_pair(h, bucket_count_);
  return Slots{{index_ + p.first * kSlotsPerBucket, index_ + p.second * kSlotsPerBucket}};
}

// Inlined into probe (every get), so that the Entry lives in registers.
template <bool kCopy>
[[gnu::always_inline]] inline StoreImpl::Find StoreImpl::find_entry(std::string_view key,
                                                                    std::uint64_t h, const Slots& s,
                                                                    std::string* stored,
                                                                    Entry& e) const {
  const std::uint64_t tag = hash_tag(h);
  for (int i = 0; i < kPairSlots; ++i) {
    std::uint64_t& slot = s.at(i);
    const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
    if (w == 0 || slot_tag(w) != tag) continue;
    const std::uint64_t off = slot_offset(w);
    const int cls = chunk_class(off);
    if (cls < 0) continue;  // damaged slot: never followed
    const char* c = chunk(off);
    if constexpr (kCopy) prefetch_chunk(c, class_bytes_[cls]);
    const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
    if ((v1 & 1) != 0) return Find::retry;  // being retired; the slot is changing
    if (!slot_matches(w, v1)) [[unlikely]] {
      // The chunk is another incarnation than the one the word published:
      // the slot has moved on (look again), or it is damaged (never read).
      if (atom<std::uint64_t>(&slot).load(std::memory_order_acquire) != w) return Find::retry;
      continue;
    }
    const std::uint64_t meta =
        atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
    const std::uint32_t vf =
        atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
    const std::uint32_t sum =
        atom<std::uint32_t>(c + kChunkChecksumOffset).load(std::memory_order_relaxed);
    const std::uint32_t klen = meta_key_len(meta);
    const std::uint32_t vlen = vf & kValueLenMask;
    bool same = klen == key.size() && kChunkHeaderBytes + klen + vlen <= class_bytes_[cls] &&
                racy_equal(c + kChunkHeaderBytes, key.data(), klen);
    if (same && kCopy) {
      stored->resize(vlen);
      racy_read(stored->data(), c + kChunkHeaderBytes + klen, vlen);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) return Find::retry;
    if (!same) {
      // Another key, consistently. If the slot moved on meanwhile, this
      // chunk may have been retired and reused after we read the slot, and
      // our key may sit in the slot now: look again rather than miss.
      if (atom<std::uint64_t>(&slot).load(std::memory_order_acquire) != w) return Find::retry;
      continue;
    }
    e = Entry{&slot, w, v1, meta, vf, sum};
    return Find::found;
  }
  return Find::absent;
}

// The compactor reads entries as get() finds them.
template StoreImpl::Find StoreImpl::find_entry<true>(std::string_view, std::uint64_t, const Slots&,
                                                     std::string*, Entry&) const;

template <bool kCopy>
StoreImpl::Probe StoreImpl::probe(std::string_view key, std::uint64_t h, const Slots& s,
                                  std::string* out, Found* found) {
  Entry e;
  switch (find_entry<kCopy>(key, h, s, out, e)) {
    case Find::retry:
      return Probe::retry;
    case Find::absent:
      return Probe::miss;
    case Find::found:
      break;
  }
  std::uint64_t& slot = *e.slot;
  const std::uint64_t w = e.word;
  const std::uint64_t meta = e.meta;
  const std::uint32_t vf = e.vlen_flags;
  const std::uint32_t vlen = vf & kValueLenMask;
  const std::uint64_t expiry = meta_expiry(meta);
  if (expiry != 0 && now_unix_ms() >= expiry) {
    if (region_.read_only()) return Probe::miss;
    test_point(TestPoint::content_unlink, key);
    if (unlink(slot, w)) count(kExpirations);
    return Probe::miss;
  }
  if (found != nullptr) *found = Found{&slot, w, expiry, vf};
  if (!kCopy) return (vf & kFlagLease) != 0 ? Probe::lease : Probe::hit;
  if (value_checksum(out->data(), vlen, h, meta, vf) != e.checksum) {
    count(kChecksumFailures);
    if (region_.read_only()) return Probe::miss;
    test_point(TestPoint::content_unlink, key);
    unlink(slot, w);
    return Probe::miss;
  }
  if ((vf & kFlagLease) != 0) return vlen == sizeof(LeaseRecord) ? Probe::lease : Probe::miss;
  if ((w & kRefBit) == 0 && !region_.read_only()) {
    std::uint64_t expected = w;
    atom<std::uint64_t>(&slot).compare_exchange_strong(expected, w | kRefBit,
                                                       std::memory_order_relaxed);
  }
  if ((vf & kFlagBlob) != 0) {
    BlobRef ref;
    if (vlen != sizeof ref) return Probe::miss;
    std::memcpy(&ref, out->data(), sizeof ref);
    // Blob files together hold at most capacity_bytes: a larger size is
    // damage, refused before anything is allocated for it.
    if (ref.size > sb_->capacity_bytes || !read_blob(h, ref, *out)) return Probe::miss;
  }
  if ((vf & kFlagCompressed) != 0) {
    std::uint32_t raw = 0;
    if (out->size() < 4) return Probe::miss;
    std::memcpy(&raw, out->data(), 4);
    const std::size_t block = out->size() - 4;
    // The raw length is read from the file: check it before allocating for
    // it. put() compresses only values up to kValueLenMask, and an LZ4 block
    // expands at most 255-fold (a length byte of 255 per 255 output bytes).
    if (raw > kValueLenMask || raw > block * 255 + 16 || block > LZ4_MAX_INPUT_SIZE) {
      count(kChecksumFailures);
      return Probe::miss;
    }
    std::string& tmp = scratch();
    tmp.resize(raw);
    const int n = LZ4_decompress_safe(out->data() + 4, tmp.data(), static_cast<int>(block),
                                      static_cast<int>(raw));
    if (n != static_cast<int>(raw)) {
      count(kChecksumFailures);
      return Probe::miss;
    }
    out->swap(tmp);
  }
  return Probe::hit;
}

// lease.cc and walk.cc read entries as get() does.
template StoreImpl::Probe StoreImpl::probe<true>(std::string_view, std::uint64_t, const Slots&,
                                                 std::string*, Found*);

bool StoreImpl::get(std::string_view key, std::string& value) {
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  prefetch(s.b[1]);  // in flight while the first bucket is scanned
  for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
    const Probe p = probe<true>(key, h, s, &value, nullptr);
    if (p == Probe::retry) continue;
    count(p == Probe::hit ? kHits : kMisses);
    return p == Probe::hit;
  }
  count(kMisses);
  return false;
}

bool StoreImpl::contains(std::string_view key) {
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
    const Probe p = probe<false>(key, h, s, nullptr, nullptr);
    if (p != Probe::retry) return p == Probe::hit;
  }
  return false;
}

void StoreImpl::get_many(std::span<const std::string_view> keys, std::span<std::string> values,
                         std::span<bool> found) {
  if (values.size() != keys.size() || found.size() != keys.size()) {
    fail(Errc::invalid_option, "get_many: keys, values and found must have the same size");
  }
  // Three passes over groups of keys, so that the memory misses of a group
  // overlap: hash and prefetch both buckets; find each key's candidate chunk
  // by tag and prefetch it; then read every key with the lines in cache.
  constexpr std::size_t kGroup = 16;
  std::uint64_t hs[kGroup];
  Slots ss[kGroup];
  for (std::size_t base = 0; base < keys.size(); base += kGroup) {
    const std::size_t n = std::min(kGroup, keys.size() - base);
    for (std::size_t i = 0; i < n; ++i) {
      hs[i] = hash(keys[base + i]);
      ss[i] = slots_for(hs[i]);
      prefetch(ss[i].b[0]);
      prefetch(ss[i].b[1]);
    }
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t tag = hash_tag(hs[i]);
      for (int j = 0; j < kPairSlots; ++j) {
        const std::uint64_t w = atom<std::uint64_t>(&ss[i].at(j)).load(std::memory_order_relaxed);
        if (w != 0 && slot_tag(w) == tag) {
          const std::uint64_t off = slot_offset(w);
          if (const int cls = chunk_class(off); cls >= 0)
            prefetch_chunk(chunk(off), class_bytes_[cls]);
          break;
        }
      }
    }
    for (std::size_t i = 0; i < n; ++i) {
      Probe p = Probe::retry;
      for (int attempt = 0; attempt < kMaxProbeRetries && p == Probe::retry; ++attempt) {
        p = probe<true>(keys[base + i], hs[i], ss[i], &values[base + i], nullptr);
      }
      found[base + i] = p == Probe::hit;
      count(p == Probe::hit ? kHits : kMisses);
    }
  }
}

int StoreImpl::chunk_has_key(const std::uint64_t& slot, std::uint64_t w,
                             std::string_view key) const noexcept {
  const std::uint64_t off = slot_offset(w);
  const int cls = chunk_class(off);
  if (cls < 0) return 0;
  const char* c = chunk(off);
  const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
  if ((v1 & 1) != 0) return -1;
  const std::uint64_t meta =
      atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
  const std::uint32_t klen = meta_key_len(meta);
  // Another incarnation of the chunk than `w` published holds no key of `w`.
  const bool same = slot_matches(w, v1) && klen == key.size() &&
                    kChunkHeaderBytes + klen <= class_bytes_[cls] &&
                    racy_equal(c + kChunkHeaderBytes, key.data(), klen);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) return -1;
  // "Not this key" is only an answer while the slot still points here.
  if (!same && atom<std::uint64_t>(&slot).load(std::memory_order_acquire) != w) return -1;
  return same ? 1 : 0;
}

bool StoreImpl::unlink_entry(std::uint64_t& slot, std::uint64_t w) {
  // Only the reference bit may have changed since `w` was read: the rest of
  // the word (chunk and generation) names the incarnation decided on.
  for (;;) {
    const std::uint64_t now = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
    if ((now & ~kRefBit) != (w & ~kRefBit)) return false;
    if (unlink(slot, now)) return true;
  }
}

bool StoreImpl::unlink(std::uint64_t& slot, std::uint64_t w) {
  std::uint64_t expected = w;
  if (!atom<std::uint64_t>(&slot).compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) {
    return false;
  }
  retire(slot_offset(w));
  return true;
}

void StoreImpl::retire(std::uint64_t off) {
  const int cls = chunk_class(off);
  if (cls < 0) return;
  release_payload(off);
  // Odd version first: a reader still holding this address sees the change.
  auto version = atom<std::uint32_t>(chunk(off));
  if ((version.fetch_add(1, std::memory_order_acq_rel) & 1) != 0) {
    version.fetch_add(1, std::memory_order_acq_rel);  // was odd (damaged): keep it odd
  }
  push_chain(static_cast<std::uint32_t>(cls), off, off);
}

int StoreImpl::choose_victim(const Slots& s, int start, std::uint64_t* word, bool* expired) {
  // Expired entries go first, then the first slot whose reference bit is
  // clear (clearing the bits passed over: CLOCK within the bucket pair).
  const std::uint64_t now = now_unix_ms();
  for (int i = 0; i < kPairSlots; ++i) {
    const std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_acquire);
    if (w == 0) {
      *word = 0;
      *expired = false;
      return i;
    }
    if (chunk_class(slot_offset(w)) < 0) {  // damaged slot: replace it
      *word = w;
      *expired = true;
      return i;
    }
    const std::uint64_t meta = atom<std::uint64_t>(chunk(slot_offset(w)) + kChunkMetaOffset)
                                   .load(std::memory_order_relaxed);
    if (meta_expiry(meta) != 0 && now >= meta_expiry(meta)) {
      *word = w;
      *expired = true;
      return i;
    }
  }
  // The sweep starts where the inserting key's hash says, so that no slot
  // is everyone's first victim.
  for (int pass = 0; pass < 2; ++pass) {
    for (int k = 0; k < kPairSlots; ++k) {
      const int i = (start + k) % kPairSlots;
      std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_acquire);
      if ((w & kRefBit) == 0) {
        *word = w;
        *expired = false;
        return i;
      }
      atom<std::uint64_t>(&s.at(i)).compare_exchange_strong(w, w & ~kRefBit,
                                                            std::memory_order_relaxed);
    }
  }
  *word = atom<std::uint64_t>(&s.at(start)).load(std::memory_order_acquire);
  *expired = false;
  return start;
}

bool StoreImpl::publish(std::string_view key, std::uint64_t h, std::uint64_t off, Publish mode,
                        bool* replaced) {
  // New entries start unreferenced: one that is never read again is the
  // first to go (scan resistance); a read gives it a second chance.
  // The chunk is ours and its (even) version final: the word names this
  // incarnation.
  const std::uint64_t nw =
      slot_make(hash_tag(h), off, atom<std::uint32_t>(chunk(off)).load(std::memory_order_relaxed));
  const Slots s = slots_for(h);
  for (int round = 0;; ++round) {
    // Empty slots of each bucket; a new key goes to the emptier bucket
    // (two-choice hashing keeps the fullest bucket near the mean).
    int empty[2] = {-1, -1};
    int used[2] = {0, 0};
    int match = -1;
    std::uint64_t mw = 0;
    bool unstable = false;
    for (int i = 0; i < kPairSlots; ++i) {
      const std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_acquire);
      const int b = i >> 3;
      if (w == 0) {
        if (empty[b] < 0) empty[b] = i;
        continue;
      }
      ++used[b];
      if (slot_tag(w) != hash_tag(h)) continue;
      const int has = chunk_has_key(s.at(i), w, key);
      if (has == 1) {
        match = i;
        mw = w;
        break;
      }
      if (has < 0) unstable = true;
    }
    const int empty_slot =
        empty[1] >= 0 && (empty[0] < 0 || used[1] < used[0]) ? empty[1] : empty[0];
    if (unstable && match < 0 && round < kMaxPublishRounds) continue;  // look again
    int at;
    std::uint64_t old;
    bool expired = false;
    if (match >= 0) {
      if (mode == Publish::if_absent && !entry_expired(mw)) {
        retire(off);  // never published: ours to free
        return false;
      }
      at = match;
      old = mw;
      expired = mode == Publish::if_absent;
    } else if (empty_slot >= 0) {
      at = empty_slot;
      old = 0;
    } else {
      at = choose_victim(s, static_cast<int>((h >> 32) % kPairSlots), &old, &expired);
    }
    std::uint64_t expected = old;
    if (!atom<std::uint64_t>(&s.at(at)).compare_exchange_strong(expected, nw,
                                                                std::memory_order_seq_cst)) {
      continue;
    }
    if (old != 0) {
      retire(slot_offset(old));
      if (match < 0 || mode == Publish::if_absent) count(expired ? kExpirations : kEvictions);
    }
    if (mode == Publish::if_absent) return !withdraw_if_rival(key, s, at, nw);
    if (replaced != nullptr) *replaced = match >= 0;
    dedupe(key, s, at, nw);
    return true;
  }
}

bool StoreImpl::entry_live(std::uint64_t meta, std::uint32_t vf, std::uint64_t now) noexcept {
  return (vf & kFlagLease) == 0 && (meta_expiry(meta) == 0 || now < meta_expiry(meta));
}

bool StoreImpl::entry_expired(std::uint64_t w) const noexcept {
  const std::uint64_t off = slot_offset(w);
  if (chunk_class(off) < 0) return true;
  const std::uint64_t meta =
      atom<std::uint64_t>(chunk(off) + kChunkMetaOffset).load(std::memory_order_relaxed);
  return meta_expiry(meta) != 0 && now_unix_ms() >= meta_expiry(meta);
}

bool StoreImpl::withdraw_if_rival(std::string_view key, const Slots& s, int mine,
                                  std::uint64_t my_word) {
  // Insert-if-absent must have one winner. Every contender publishes first
  // (a seq_cst CAS) and then looks (seq_cst loads): of two contenders, the
  // later to publish sees the other, so at most one sees no rival. One that
  // sees a rival withdraws; both may withdraw, and then both retry.
  const std::uint64_t tag = slot_tag(my_word);
  for (int i = 0; i < kPairSlots; ++i) {
    if (i == mine) continue;
    for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_seq_cst);
      if (w == 0 || slot_tag(w) != tag) break;
      const int has = chunk_has_key(s.at(i), w, key);
      if (has < 0) continue;
      if (has == 0) break;
      unlink_entry(s.at(mine), my_word);
      return true;
    }
  }
  return false;
}

void StoreImpl::dedupe(std::string_view key, const Slots& s, int mine, std::uint64_t my_word) {
  const std::uint64_t tag = slot_tag(my_word);
  for (int i = 0; i < kPairSlots; ++i) {
    if (i == mine) continue;
    for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != tag) break;
      const int has = chunk_has_key(s.at(i), w, key);
      if (has < 0) continue;
      if (has == 0) break;
      if (i < mine) {
        // A concurrent insert of the same key landed lower: it wins.
        unlink_entry(s.at(mine), my_word);
        return;
      }
      unlink_entry(s.at(i), w);
      break;
    }
  }
}

bool StoreImpl::unlink_chunk(std::uint64_t& slot, std::uint64_t off) {
  // The word may differ from what we last saw only in its reference bit.
  for (;;) {
    const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
    if (w == 0 || slot_offset(w) != off) return false;
    if (unlink(slot, w)) return true;
  }
}

std::uint64_t* StoreImpl::slot_of_chunk(std::uint64_t off, std::uint32_t size, std::string& key,
                                        std::uint64_t* meta) {
  const char* c = chunk(off);
  const std::uint32_t version = atom<std::uint32_t>(c).load(std::memory_order_acquire);
  if ((version & 1) != 0) return nullptr;
  *meta = atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
  const std::uint32_t klen = meta_key_len(*meta);
  if (kChunkHeaderBytes + klen > size) return nullptr;
  key.resize(klen);
  racy_read(key.data(), c + kChunkHeaderBytes, klen);
  // A torn key hashes elsewhere and finds no slot: the caller skips it.
  const Slots s = slots_for(hash(key));
  for (int i = 0; i < kPairSlots; ++i) {
    const std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_acquire);
    if (w != 0 && slot_offset(w) == off && slot_matches(w, version)) return &s.at(i);
  }
  return nullptr;
}

}  // namespace tcache::detail
