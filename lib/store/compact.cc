// store/compact.cc: tcache::compact (tcache/compact.h), the compactor's side
// of INVARIANTS.md, invariant 10. The users' side (enter_write,
// check_superseded, Store::follow) is in store.cc.
//
// Outline:
//   1. Open the file like any writer and claim it: CAS Superblock::compaction
//      from 0 to (our pid and start time | copying).
//   2. Create the new file under `<file>.tmp.<pid>.<random>` with the same
//      hash seed (so key hashes and chunk checksums carry over unchanged)
//      and the old geometry or one for the new capacity; its blob files go
//      to `<file>.blobs/` (ids are random, so names never collide).
//   3. Copy pass, in file order: for every chunk in use, find the slot that
//      publishes it, copy it (key, stored value as it is: compressed or
//      not, expiry, checksum) if it is live, and remember what the slot
//      held: the chunk, its version, the key's hash. Users keep reading and
//      writing.
//   4. Switch: CAS copying -> switching; wait until every live process's
//      ProcessEntry::writes is 0. From then on nothing writes to the file
//      (writers wait in Store::follow), except readers unlinking expired
//      entries, which removes nothing live.
//   5. Final pass: every slot whose chunk or chunk version differs from what
//      step 3 remembered names keys that may have changed (the one it held
//      then, found by its hash, and the one it holds now); each such key is
//      looked up in the old file as get() would and copied, or removed from
//      the new file if it is not live there.
//   6. Write the new file to disk, CAS switching -> committed, rename it
//      over the path. Users move at their next operation.
// Any failure before the rename resets the compaction word and deletes the
// new file; a killed compactor is cleaned up by the users (store.cc) and by
// the next writable open (region.cc).
//
// Thread safety: compact() uses its own StoreImpls and no shared state; any
// number of calls may run (one per file at a time: the claim).

#include "tcache/compact.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "format/geometry.h"
#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache {
namespace detail {

namespace {

// Retries of a chunk read that raced a writer before the slot is left for
// the final pass (copy pass) or the compaction gives up (final pass, where
// only readers unlinking expired entries can race it).
constexpr int kCopyRetries = 16;
constexpr int kFinalRetries = 100'000;
constexpr std::uint64_t kProgressEvery = 1u << 16;
constexpr std::size_t kPrefetchDistance = 16;
// The final pass reads a chunk version per slot, scattered over the file.
constexpr std::uint64_t kFinalPrefetchDistance = 48;

// The path names another file than the one we opened: open it again.
struct Replaced {};

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) {
    v = now_unix_ms() * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(::getpid());
  }
  return v;
}

void back_off(std::chrono::microseconds& pause) {
  std::this_thread::sleep_for(pause);
  pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
}

void advise_huge_pages(void* p, std::size_t bytes) {
  // Whole 2 MiB pages inside the block only; best effort.
  constexpr std::uintptr_t kHuge = 2u << 20;
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// Copies entries from one open file to another (both StoreImpls; friend of
// StoreImpl). REQUIRES: both files have the same hash seed; nobody but this
// Compactor writes to `to`.
class Compactor {
 public:
  Compactor(StoreImpl& from, StoreImpl& to, const CompactOptions& options)
      : from_(from), to_(to), options_(options) {}

  // Step 3: every live entry, remembering what each slot held.
  void copy_all();
  // Step 5. REQUIRES: the switch is done (only expiry unlinks change
  // `from`). Returns the number of keys copied again or removed.
  std::uint64_t copy_changes();
  // Adds the counters of the old file (totals and attached processes) to
  // the new file's totals, so that its statistics carry on.
  void carry_counters();
  // After the rename: unlinks the old file's blob file names (the new file
  // has its own links to the contents it kept).
  void remove_old_blob_names();

  // Steps 1 to 6 on the file at `file`, once. Throws Replaced if another
  // compaction replaced the file after we opened it.
  static CompactResult compact_once(const std::filesystem::path& file,
                                    const CompactOptions& options);

  std::uint64_t dropped() const { return dropped_; }
  // Slots of the new file in use (a walk of its index).
  std::uint64_t entries_in_new_file() const {
    std::uint64_t n = 0;
    const std::uint64_t slots = to_.bucket_count_ * kSlotsPerBucket;
    for (std::uint64_t i = 0; i < slots; ++i) {
      n += atom<std::uint64_t>(&to_.index_[i]).load(std::memory_order_relaxed) != 0;
    }
    return n;
  }
  std::uint64_t evicted() const {
    return no_room_ + atom<std::uint64_t>(&to_.counters_[kEvictions]).load() - evictions_at_start_;
  }

 private:
  // A consistent copy of one chunk of `from`.
  struct Raw {
    std::uint64_t word = 0;     // its slot's word, without the reference bit
    std::uint32_t version = 0;  // the chunk's version when copied
    std::uint64_t h = 0;        // hash of its key
    std::uint64_t meta = 0;
    std::uint32_t vf = 0;
    std::uint32_t sum = 0;
    std::string key;
    std::string stored;
  };
  enum class Read { empty, entry, damaged, unstable };
  Read read_slot(std::uint64_t i, Raw& r);
  // The chunk at `off` (of a class of `size` bytes) and the slot that
  // publishes it (`slot`, at position `pos` of its key's pair), read
  // consistently; empty if it is free or no slot points at it.
  Read read_chunk(std::uint64_t off, std::uint32_t size, Raw& r, std::uint64_t*& slot, int& pos);
  // S[i] = what the copy pass saw in slot i (see seen_).
  void record(std::uint64_t i, const Raw& r);
  // Remembers the old file's blob file name of an entry, for
  // remove_old_blob_names().
  void note_blob(const Raw& r);
  Read read_slot_retrying(std::uint64_t i, Raw& r, int retries);
  // The version the final pass compares: the chunk's, or 0 for a slot that
  // points at no chunk.
  std::uint32_t chunk_version(std::uint64_t word) const;
  // Worth copying: unexpired, and where get() finds it (a value or a
  // lease; the checksum is not checked, see the definition).
  bool live(const Raw& r, std::uint64_t now) const;

  // `key`'s entry in `from` as get() finds it (the first copy in pair order).
  enum class Lookup { live, absent, unstable };
  Lookup lookup(std::string_view key, std::uint64_t h, Raw& r);

  // skipped: the blob file went meanwhile (the entry was erased); no_room:
  // the new file had no chunk for it (counted in evicted()).
  // damaged: its checksum failed where a new one would have been written.
  enum class Import { added, replaced, skipped, no_room, damaged };
  Import import(const Raw& r);
  void remove(std::string_view key, std::uint64_t h);
  // Adds to `out` every key of `s` whose hash is h (not already in it).
  void keys_with_hash(StoreImpl& s, std::uint64_t h, std::vector<std::string>& out);
  // Makes `to` hold what `from` holds for `key`.
  void sync_key(const std::string& key, std::uint64_t h);
  // Step 1: claims the file for compactor `id` (pid and start time).
  static void claim(std::uint64_t* word, std::uint64_t id, const std::string& path,
                    std::uint64_t device, std::uint64_t inode);
  // Step 4: waits until no live process has a write in flight on the file.
  static void drain(ProcessEntry* procs, std::uint64_t* word, std::uint64_t switching,
                    const std::string& path);
  void progress(CompactPhase phase, std::uint64_t done, std::uint64_t total) const {
    if (options_.progress) options_.progress(CompactProgress{phase, done, total});
  }

  StoreImpl& from_;
  StoreImpl& to_;
  const CompactOptions& options_;
  // What the copy pass saw in each slot of `from` (S[i] in INVARIANTS.md,
  // 16 bytes per slot): the chunk it pointed at, with the chunk's version,
  // and its key's hash (which gives the slot's tag). chunk 0 = nothing, or
  // nothing known: the final pass looks at whatever the slot holds then.
  struct Seen {
    std::uint64_t chunk = 0;  // see seen_chunk()
    std::uint64_t h = 0;
  };
  // Chunk offset / 8 (37 bits) and the low 27 bits of its version.
  static std::uint64_t seen_chunk(std::uint64_t word, std::uint32_t version) {
    return (slot_offset(word) / kChunkAlign) | (std::uint64_t{version & ((1u << 27) - 1)} << 37);
  }
  std::vector<Seen> seen_;
  // Hashes of keys whose copy was not clean (a second copy of a key, a blob
  // gone meanwhile): the final pass syncs them whatever their slots show.
  std::vector<std::uint64_t> queued_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> old_blobs_;  // (key hash, id)
  std::uint64_t dropped_ = 0;
  std::uint64_t no_room_ = 0;
  bool blob_dir_ready_ = false;
  std::uint64_t evictions_at_start_ = atom<std::uint64_t>(&to_.counters_[kEvictions]).load();
};

Compactor::Read Compactor::read_slot(std::uint64_t i, Raw& r) {
  const std::uint64_t w = atom<std::uint64_t>(&from_.index_[i]).load(std::memory_order_acquire);
  if (w == 0) return Read::empty;
  r.word = w & ~kRefBit;
  r.version = 0;
  r.h = 0;
  const std::uint64_t off = slot_offset(w);
  const int cls = from_.chunk_class(off);
  if (cls < 0) return Read::damaged;  // readers never follow it either
  const char* c = from_.chunk(off);
  const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
  if ((v1 & 1) != 0) return Read::unstable;
  r.meta = atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
  r.vf = atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
  r.sum = atom<std::uint32_t>(c + kChunkChecksumOffset).load(std::memory_order_relaxed);
  const std::uint32_t klen = meta_key_len(r.meta);
  const std::uint32_t vlen = r.vf & kValueLenMask;
  const bool fits = kChunkHeaderBytes + std::uint64_t{klen} + vlen <= from_.class_bytes_[cls];
  if (fits) {
    r.key.resize(klen);
    racy_read(r.key.data(), c + kChunkHeaderBytes, klen);
    r.stored.resize(vlen);
    racy_read(r.stored.data(), c + kChunkHeaderBytes + klen, vlen);
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) return Read::unstable;
  r.version = v1;
  if (!fits) return Read::damaged;
  r.h = from_.hash(r.key);
  return Read::entry;
}

Compactor::Read Compactor::read_slot_retrying(std::uint64_t i, Raw& r, int retries) {
  Read st = Read::unstable;
  for (int attempt = 0; attempt < retries && st == Read::unstable; ++attempt) {
    if (attempt >= kCopyRetries) std::this_thread::yield();
    st = read_slot(i, r);
  }
  return st;
}

std::uint32_t Compactor::chunk_version(std::uint64_t word) const {
  const std::uint64_t off = slot_offset(word);
  if (from_.chunk_class(off) < 0) return 0;
  return atom<std::uint32_t>(from_.chunk(off)).load(std::memory_order_acquire);
}

bool Compactor::live(const Raw& r, std::uint64_t now) const {
  // A lease (single flight) is copied too, so that its waiters go on
  // waiting for its holder's value in the new file; its expiry is its
  // deadline. The checksum is not checked here: a chunk is copied with its
  // checksum, so one that fails it (a miss) fails it in the new file too;
  // import() checks it before it writes a new one.
  if (slot_tag(r.word) != hash_tag(r.h)) return false;  // readers would never find it
  const std::uint64_t expiry = meta_expiry(r.meta);
  return expiry == 0 || now < expiry;
}

Compactor::Lookup Compactor::lookup(std::string_view key, std::uint64_t h, Raw& r) {
  const StoreImpl::Slots s = from_.slots_for(h);
  const std::uint64_t tag = hash_tag(h);
  for (int i = 0; i < StoreImpl::kPairSlots; ++i) {
    std::uint64_t& slot = s.at(i);
    const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
    if (w == 0 || slot_tag(w) != tag) continue;
    const std::uint64_t off = slot_offset(w);
    const int cls = from_.chunk_class(off);
    if (cls < 0) continue;
    const char* c = from_.chunk(off);
    const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
    if ((v1 & 1) != 0) return Lookup::unstable;
    const std::uint64_t meta =
        atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
    const std::uint32_t vf =
        atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
    const std::uint32_t sum =
        atom<std::uint32_t>(c + kChunkChecksumOffset).load(std::memory_order_relaxed);
    const std::uint32_t klen = meta_key_len(meta);
    const std::uint32_t vlen = vf & kValueLenMask;
    const bool same = klen == key.size() &&
                      kChunkHeaderBytes + std::uint64_t{klen} + vlen <= from_.class_bytes_[cls] &&
                      racy_equal(c + kChunkHeaderBytes, key.data(), klen);
    if (same) {
      r.stored.resize(vlen);
      racy_read(r.stored.data(), c + kChunkHeaderBytes + klen, vlen);
    }
    std::atomic_thread_fence(std::memory_order_acquire);
    if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) return Lookup::unstable;
    if (!same) {
      if (atom<std::uint64_t>(&slot).load(std::memory_order_acquire) != w) return Lookup::unstable;
      continue;
    }
    r.word = w & ~kRefBit;
    r.version = v1;
    r.h = h;
    r.meta = meta;
    r.vf = vf;
    r.sum = sum;
    r.key.assign(key);
    // get() answers from the first copy of the key; so do we.
    return live(r, now_unix_ms()) ? Lookup::live : Lookup::absent;
  }
  return Lookup::absent;
}

Compactor::Import Compactor::import(const Raw& r) {
  std::string_view stored = r.stored;
  std::uint32_t vf = r.vf;
  std::uint32_t sum = r.sum;
  BlobRef ref{};
  bool new_blob = false;
  const bool rewrite =
      (vf & kFlagBlob) != 0 || kChunkHeaderBytes + r.key.size() + stored.size() > to_.page_bytes_;
  if (rewrite && (value_checksum(stored.data(), stored.size(), r.h, r.meta, vf) != sum ||
                  ((vf & kFlagBlob) != 0 && stored.size() != sizeof(BlobRef)))) {
    return Import::damaged;  // a miss in the old file: not made whole by a new checksum
  }
  if ((vf & kFlagBlob) != 0) {
    // Link the old blob file under a name of the new file's own: the old
    // file's users may still unlink theirs (on erase) until the switch.
    std::memcpy(&ref, stored.data(), sizeof ref);
    if (!blob_dir_ready_) {
      to_.ensure_blob_dir();
      blob_dir_ready_ = true;
    }
    if (atom<std::uint64_t>(&to_.sb_->blob_bytes).load() + ref.size > to_.sb_->capacity_bytes) {
      to_.evict_blobs(ref.size);
    }
    const std::string src = from_.blob_path(r.h, ref.id, false);
    for (;;) {
      const std::uint64_t id = random_u64();
      if (::link(src.c_str(), to_.blob_path(r.h, id, false).c_str()) == 0) {
        ref.id = id;
        break;
      }
      if (errno == EEXIST) continue;
      if (errno == ENOENT) return Import::skipped;  // erased meanwhile: the slot changed
      fail_errno(errno, "cannot link blob file", src, "");
    }
    atom<std::uint64_t>(&to_.sb_->blob_bytes).fetch_add(ref.size);
    new_blob = true;
  } else if (kChunkHeaderBytes + r.key.size() + stored.size() > to_.page_bytes_) {
    // Smaller pages in the new file: the value moves to a blob file.
    ref = to_.write_blob(r.h, stored);
    vf = (vf & ~kValueLenMask) | kFlagBlob | static_cast<std::uint32_t>(sizeof ref);
    new_blob = true;
  }
  if (new_blob) {
    stored = std::string_view(reinterpret_cast<const char*>(&ref), sizeof ref);
    sum = value_checksum(stored.data(), stored.size(), r.h, r.meta, vf);
  }
  const std::uint64_t need = kChunkHeaderBytes + r.key.size() + stored.size();
  std::uint64_t off;
  try {
    off = to_.allocate(to_.class_for(need));
  } catch (const Error& e) {
    if (new_blob) {
      ::unlink(to_.blob_path(r.h, ref.id, false).c_str());
      atom<std::uint64_t>(&to_.sb_->blob_bytes).fetch_sub(ref.size);
    }
    if (e.code() != Errc::no_space) throw;
    ++no_room_;  // a new capacity too small for what the file holds
    return Import::no_room;
  }
  // As StoreImpl::store_entry: the chunk is ours, its version odd.
  std::atomic_thread_fence(std::memory_order_release);
  char* c = to_.chunk(off);
  racy_write(c + kChunkHeaderBytes, r.key.data(), r.key.size());
  racy_write(c + kChunkHeaderBytes + r.key.size(), stored.data(), stored.size());
  atom<std::uint64_t>(c + kChunkMetaOffset).store(r.meta, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkVlenOffset).store(vf, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkChecksumOffset).store(sum, std::memory_order_relaxed);
  auto version = atom<std::uint32_t>(c);
  version.store((version.load(std::memory_order_relaxed) | 1) + 1, std::memory_order_release);
  bool replaced = false;
  to_.publish(r.key, r.h, off, StoreImpl::Publish::upsert, &replaced);
  return replaced ? Import::replaced : Import::added;
}

void Compactor::remove(std::string_view key, std::uint64_t h) {
  const StoreImpl::Slots s = to_.slots_for(h);
  for (int i = 0; i < StoreImpl::kPairSlots; ++i) {
    std::uint64_t& slot = s.at(i);
    for (int attempt = 0; attempt < kCopyRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(h)) break;
      const int has = to_.chunk_has_key(slot, w, key);
      if (has == 0) break;
      if (has == 1 && to_.unlink(slot, w)) break;
    }
  }
}

void Compactor::keys_with_hash(StoreImpl& s, std::uint64_t h, std::vector<std::string>& out) {
  const StoreImpl::Slots slots = s.slots_for(h);
  std::string key;
  for (int i = 0; i < StoreImpl::kPairSlots; ++i) {
    for (int attempt = 0; attempt < kFinalRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slots.at(i)).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(h)) break;
      const std::uint64_t off = slot_offset(w);
      const int cls = s.chunk_class(off);
      if (cls < 0) break;
      const char* c = s.chunk(off);
      const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
      if ((v1 & 1) == 0) {
        const std::uint32_t klen =
            meta_key_len(atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed));
        if (kChunkHeaderBytes + klen > s.class_bytes_[cls]) break;
        key.resize(klen);
        racy_read(key.data(), c + kChunkHeaderBytes, klen);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) == v1) {
          if (s.hash(key) == h && std::find(out.begin(), out.end(), key) == out.end()) {
            out.push_back(key);
          }
          break;
        }
      }
      std::this_thread::yield();
    }
  }
}

void Compactor::sync_key(const std::string& key, std::uint64_t h) {
  Raw r;
  Lookup l = Lookup::unstable;
  for (int attempt = 0; attempt < kFinalRetries && l == Lookup::unstable; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    l = lookup(key, h, r);
  }
  if (l == Lookup::unstable) {
    fail(Errc::busy, "an entry of '" + from_.path().string() +
                         "' kept changing after writers were stopped; compaction abandoned");
  }
  if (l != Lookup::unstable) note_blob(r);
  if (l == Lookup::live) {
    import(r);
  } else {
    remove(key, h);
  }
}

Compactor::Read Compactor::read_chunk(std::uint64_t off, std::uint32_t size, Raw& r,
                                      std::uint64_t*& slot, int& pos) {
  const char* c = from_.chunk(off);
  const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
  if ((v1 & 1) != 0) return Read::empty;  // free, or being written
  r.meta = atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
  r.vf = atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
  r.sum = atom<std::uint32_t>(c + kChunkChecksumOffset).load(std::memory_order_relaxed);
  const std::uint32_t klen = meta_key_len(r.meta);
  const std::uint32_t vlen = r.vf & kValueLenMask;
  // Lengths that overrun the chunk: torn, or a chunk get() never matches.
  if (kChunkHeaderBytes + std::uint64_t{klen} + vlen > size) return Read::damaged;
  r.key.resize(klen);
  racy_read(r.key.data(), c + kChunkHeaderBytes, klen);
  r.stored.resize(vlen);
  racy_read(r.stored.data(), c + kChunkHeaderBytes + klen, vlen);
  const std::uint64_t h = from_.hash(r.key);
  // The slot that publishes it (in its key's pair, where get() looks).
  const StoreImpl::Slots pair = from_.slots_for(h);
  slot = nullptr;
  std::uint64_t w = 0;
  for (pos = 0; pos < StoreImpl::kPairSlots; ++pos) {
    w = atom<std::uint64_t>(&pair.at(pos)).load(std::memory_order_acquire);
    if (w != 0 && slot_offset(w) == off) {
      slot = &pair.at(pos);
      break;
    }
  }
  // Same version after the slot was read: the slot pointed at this chunk
  // while it held exactly what we copied (a published chunk never changes).
  std::atomic_thread_fence(std::memory_order_acquire);
  if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) return Read::unstable;
  if (slot == nullptr) return Read::empty;  // not published (or a slot get() never follows)
  r.word = w & ~kRefBit;
  r.version = v1;
  r.h = h;
  return Read::entry;
}

void Compactor::record(std::uint64_t i, const Raw& r) {
  // A slot seen twice (its entry was replaced by another one, in a chunk
  // further on): the first key's change must reach the final pass.
  Seen& seen = seen_[i];
  const std::uint64_t chunk = seen_chunk(r.word, r.version);
  if (seen.chunk != 0 && (seen.chunk != chunk || seen.h != r.h)) queued_.push_back(seen.h);
  seen = Seen{chunk, r.h};
}

void Compactor::copy_all() {
  // In file order, page by page, like a copy of the file: the old file is
  // read sequentially; only the two index lines of each key are random
  // accesses, and they are fetched a few chunks ahead.
  const std::uint64_t n = from_.bucket_count_ * kSlotsPerBucket;
  seen_.assign(n, Seen{});
  // seen_ and both indexes are accessed at random: huge pages for seen_
  // (fewer TLB misses), and the new index mapped in one call rather than
  // by one fault per 4 KiB page on first use.
  advise_huge_pages(seen_.data(), seen_.size() * sizeof(Seen));
  to_.region_.populate(static_cast<std::uint64_t>(reinterpret_cast<char*>(to_.index_) - to_.base_),
                       to_.bucket_count_ * kBucketBytes);
  const std::uint64_t pages = std::min(
      atom<std::uint64_t>(&from_.sb_->next_page).load(std::memory_order_acquire), from_.max_pages_);
  std::vector<std::uint64_t> chunks;  // offsets of the chunks in use on the page
  std::string key;
  Raw r;
  for (std::uint64_t page = 0; page < pages; ++page) {
    progress(CompactPhase::copying, page, pages);
    const std::uint64_t now = now_unix_ms();
    const std::uint32_t cls =
        atom<std::uint8_t>(&from_.page_table_[page]).load(std::memory_order_acquire);
    if (cls >= from_.class_count_) continue;  // never carved
    // A page re-carved for another class meanwhile is read at the old
    // boundaries: every chunk is then checked against the slot that
    // publishes it, and one that no slot points at is skipped.
    const std::uint32_t size = from_.class_bytes_[cls];
    const std::uint64_t first = from_.pages_offset_ + page * from_.page_bytes_;
    // Map the whole page at once (a fresh mapping would fault every 4 KiB).
    from_.region_.populate_read(first, from_.page_bytes_);
    chunks.clear();
    for (std::uint64_t off = first; off + size <= first + from_.page_bytes_; off += size) {
      if ((atom<std::uint32_t>(from_.chunk(off)).load(std::memory_order_relaxed) & 1) == 0) {
        chunks.push_back(off);
      }
    }
    const auto prefetch_pairs = [&](std::uint64_t off) {
      const char* c = from_.chunk(off);
      const std::uint32_t klen =
          meta_key_len(atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed));
      if (kChunkHeaderBytes + klen > size) return;
      key.resize(klen);
      racy_read(key.data(), c + kChunkHeaderBytes, klen);
      const std::uint64_t h = from_.hash(key);
      const StoreImpl::Slots a = from_.slots_for(h);
      const StoreImpl::Slots b = to_.slots_for(h);
      __builtin_prefetch(a.b[0], 0, 3);
      __builtin_prefetch(a.b[1], 0, 3);
      __builtin_prefetch(b.b[0], 1, 3);
      __builtin_prefetch(b.b[1], 1, 3);
      // And where record() will write: the pair's entries of seen_.
      for (const std::uint64_t* bucket : a.b) {
        const Seen* at = &seen_[static_cast<std::size_t>(bucket - from_.index_)];
        __builtin_prefetch(at, 1, 3);
        __builtin_prefetch(at + kSlotsPerBucket - 1, 1, 3);
      }
    };
    for (std::size_t k = 0; k < chunks.size() && k < kPrefetchDistance; ++k) {
      prefetch_pairs(chunks[k]);
    }
    for (std::size_t k = 0; k < chunks.size(); ++k) {
      if (k + kPrefetchDistance < chunks.size()) prefetch_pairs(chunks[k + kPrefetchDistance]);
      std::uint64_t* slot = nullptr;
      int pos = 0;
      Read st = Read::unstable;
      for (int attempt = 0; attempt < kCopyRetries && st == Read::unstable; ++attempt) {
        st = read_chunk(chunks[k], size, r, slot, pos);
      }
      // Unstable: its slot changed while we looked, and shows that in the
      // final pass. Damaged or unpublished: get() does not find it either.
      if (st != Read::entry) continue;
      record(static_cast<std::uint64_t>(slot - from_.index_), r);
      note_blob(r);
      if (!live(r, now)) {
        ++dropped_;
        continue;
      }
      // get() answers from the first slot of the pair that holds the key. If
      // a slot before this one has the key's tag, this may be a second copy
      // (a killed writer's, or the key is moving): the final pass decides.
      const StoreImpl::Slots pair = from_.slots_for(r.h);
      bool earlier = false;
      for (int p = 0; p < pos && !earlier; ++p) {
        const std::uint64_t o = atom<std::uint64_t>(&pair.at(p)).load(std::memory_order_relaxed);
        earlier = o != 0 && slot_tag(o) == hash_tag(r.h);
      }
      if (earlier) {
        queued_.push_back(r.h);
        continue;
      }
      switch (import(r)) {
        case Import::added:
        case Import::no_room:
          break;
        case Import::damaged:
          ++dropped_;
          break;
        case Import::skipped:
        case Import::replaced:
          // Copied before from another chunk (it moved), or its blob went
          // (erased meanwhile): the final pass settles the key.
          queued_.push_back(r.h);
          break;
      }
    }
  }
  progress(CompactPhase::copying, pages, pages);
}

std::uint64_t Compactor::copy_changes() {
  const std::uint64_t n = from_.bucket_count_ * kSlotsPerBucket;
  std::vector<std::uint64_t> todo;
  Raw r;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (i % kProgressEvery == 0) progress(CompactPhase::final_copy, i, n);
    if (i + kFinalPrefetchDistance < n) {
      const std::uint64_t ahead = atom<std::uint64_t>(&from_.index_[i + kFinalPrefetchDistance])
                                      .load(std::memory_order_relaxed);
      if (ahead != 0 && from_.chunk_class(slot_offset(ahead)) >= 0) {
        __builtin_prefetch(from_.chunk(slot_offset(ahead)), 0, 0);
      }
    }
    const std::uint64_t w =
        atom<std::uint64_t>(&from_.index_[i]).load(std::memory_order_acquire) & ~kRefBit;
    const Seen& seen = seen_[i];
    if (w == 0 && seen.chunk == 0) continue;
    if (w != 0 && seen.chunk != 0 && slot_tag(w) == hash_tag(seen.h) &&
        slot_offset(w) / kChunkAlign == (seen.chunk & kAddrMask) &&
        seen_chunk(w, chunk_version(w)) == seen.chunk) {
      continue;
    }
    // Changed since the copy pass: the key it held then (found through its
    // hash) and the key it holds now.
    if (seen.chunk != 0) todo.push_back(seen.h);
    if (w != 0) {
      const Read st = read_slot_retrying(i, r, kFinalRetries);
      if (st == Read::unstable) {
        fail(Errc::busy, "an index slot of '" + from_.path().string() +
                             "' kept changing after writers were stopped; compaction abandoned");
      }
      if (st == Read::entry) todo.push_back(r.h);
    }
  }
  todo.insert(todo.end(), queued_.begin(), queued_.end());
  std::sort(todo.begin(), todo.end());
  todo.erase(std::unique(todo.begin(), todo.end()), todo.end());
  std::uint64_t synced = 0;
  std::vector<std::string> keys;
  for (const std::uint64_t h : todo) {
    keys.clear();
    keys_with_hash(from_, h, keys);
    keys_with_hash(to_, h, keys);
    for (const std::string& key : keys) {
      sync_key(key, h);
      ++synced;
    }
  }
  progress(CompactPhase::final_copy, n, n);
  return synced;
}

void Compactor::carry_counters() {
  for (std::uint32_t c = 0; c < kCounterCount; ++c) {
    std::uint64_t sum = atom<std::uint64_t>(&from_.sb_->totals[c]).load();
    for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
      if (atom<std::uint64_t>(&from_.procs_[i].owner).load() == 0) continue;
      sum += atom<std::uint64_t>(&from_.procs_[i].counters[c]).load(std::memory_order_relaxed);
    }
    atom<std::uint64_t>(&to_.sb_->totals[c]).fetch_add(sum);
  }
}

void Compactor::note_blob(const Raw& r) {
  if ((r.vf & kFlagBlob) == 0 || r.stored.size() != sizeof(BlobRef)) return;
  BlobRef ref;
  std::memcpy(&ref, r.stored.data(), sizeof ref);
  old_blobs_.emplace_back(r.h, ref.id);
}

void Compactor::remove_old_blob_names() {
  // The names the compaction met; any other (an entry it never saw) is an
  // orphan for the new file's orphan sweep. A read of the old file that was
  // under way at the rename may then miss such a blob: Store::get asks the
  // new file again after a miss from a replaced file.
  for (const auto& [h, id] : old_blobs_) ::unlink(from_.blob_path(h, id, false).c_str());
}

namespace {

void fsync_or_fail(int fd, const std::string& what) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) fail_errno(errno, "cannot write to disk", what, "");
  }
}

void fsync_directory_of(const std::filesystem::path& file) {
  const std::filesystem::path dir = file.parent_path().empty() ? "." : file.parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the rename itself is done
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void Compactor::claim(std::uint64_t* word, std::uint64_t id, const std::string& path,
                      std::uint64_t device, std::uint64_t inode) {
  auto w = atom<std::uint64_t>(word);
  for (;;) {
    std::uint64_t cur = w.load(std::memory_order_seq_cst);
    if (cur != 0) {
      const auto pid = static_cast<pid_t>(compactor_pid(cur));
      const bool alive = process_alive(pid, 0) &&
                         (process_start_time(pid) & kCompactorStartMask) == compactor_start(cur);
      if (alive) {
        fail(Errc::busy, "process " + std::to_string(pid) + " is compacting '" + path +
                             "' already; wait for it to finish");
      }
      // A dead compactor's state. If it renamed its file over ours first,
      // ours is not the file at the path any more.
      if (compaction_phase(cur) == kCompactionCommitted &&
          path_names(path, device, inode) != PathNames::same_file) {
        throw Replaced{};
      }
    }
    if (w.compare_exchange_strong(cur, id | kCompactionCopying, std::memory_order_seq_cst)) return;
  }
}

void Compactor::drain(ProcessEntry* procs, std::uint64_t* word, std::uint64_t switching,
                      const std::string& path) {
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    ProcessEntry& e = procs[i];
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      // `writes` first (seq_cst, after our switching CAS): a write whose
      // increment comes later in its order sees the switching phase.
      if (atom<std::uint64_t>(&e.writes).load(std::memory_order_seq_cst) == 0) break;
      const std::uint64_t owner = atom<std::uint64_t>(&e.owner).load();
      if (owner == 0) break;
      if (!process_alive(static_cast<pid_t>(owner & 0xffffffffu),
                         atom<std::uint64_t>(&e.start_time).load())) {
        break;  // died mid-write: nothing more comes from it
      }
      if (atom<std::uint64_t>(word).load() != switching) {
        fail(Errc::busy, "writers of '" + path +
                             "' waited too long for the compaction and broke it off; try again");
      }
      back_off(pause);
    }
  }
}

CompactResult Compactor::compact_once(const std::filesystem::path& file,
                                      const CompactOptions& options) {
  StoreOptions open_options;
  open_options.create_if_missing = false;
  open_options.allow_shared_access = options.allow_shared_access;
  open_options.logger = options.logger;
  std::unique_ptr<StoreImpl> from = open_store_impl(file, open_options);
  const std::string path = file.string();
  if (from->proc_slot_ < 0) {
    fail(Errc::busy, "'" + path + "' has 256 processes attached (its process table is full); " +
                         "compact it when fewer use it");
  }
  if (atom<std::uint64_t>(&from->sb_->untracked_processes).load() != 0) {
    fail(Errc::busy, "'" + path +
                         "' is used by processes that found its process table full; compact it "
                         "when they have closed it");
  }
  struct stat st {};
  if (::fstat(from->region_.fd(), &st) != 0) fail_errno(errno, "cannot stat", path, "");
  const std::uint32_t mode = st.st_mode & 0777;
  const std::uint64_t device = from->region_.device();
  const std::uint64_t inode = from->region_.inode();

  std::uint64_t* const word = &from->sb_->compaction;
  const auto pid = static_cast<std::uint64_t>(::getpid());
  const std::uint64_t id = compaction_word(pid, process_start_time(static_cast<pid_t>(pid)), 0);
  claim(word, id, path, device, inode);

  CompactResult result;
  std::unique_ptr<StoreImpl> to;
  std::string tmp;
  try {
    // Step 2: the new file.
    const Superblock& old_sb = *from->sb_;
    const std::uint64_t capacity =
        options.capacity_bytes != 0 ? options.capacity_bytes : old_sb.capacity_bytes;
    std::uint32_t page = from->page_bytes_;
    std::uint64_t buckets = from->bucket_count_;
    if (capacity != old_sb.capacity_bytes) {
      if (page == automatic_page_bytes(old_sb.capacity_bytes)) page = 0;
      __extension__ using u128 = unsigned __int128;
      buckets =
          static_cast<std::uint64_t>(static_cast<u128>(buckets) * capacity / old_sb.capacity_bytes);
    }
    Superblock sb;
    make_superblock({capacity, 256, page, std::max<std::uint64_t>(buckets, 2), from->hash_seed_},
                    &sb);
    Region region = Region::create_temporary(
        file, Region::Options{false, true, options.allow_shared_access, mode},
        initial_file_bytes(sb), superblock_writer(sb));
    tmp = region.path().string();
    if (st.st_uid != ::geteuid() || st.st_gid != ::getegid()) {
      // Keep the owner and group, or the file's users could not open it.
      if (::fchown(region.fd(), st.st_uid, st.st_gid) != 0 && st.st_uid != ::geteuid()) {
        fail_errno(errno, "cannot give the compacted file the owner of", path,
                   "compact it as its owner");
      }
    }
    StoreOptions new_options;
    new_options.mode = mode;
    new_options.allow_shared_access = options.allow_shared_access;
    new_options.logger = options.logger;
    to = std::make_unique<StoreImpl>(std::move(region), new_options, &file);
    result.capacity_bytes_before = old_sb.capacity_bytes;
    result.capacity_bytes_after = capacity;
    result.file_bytes_before = from->region_.file_size();

    // Step 3: copy while users carry on; write the bulk to disk meanwhile.
    Compactor compactor(*from, *to, options);
    compactor.copy_all();
    if (options.sync) to->flush();

    // Step 4: switch, drain.
    const std::uint64_t switching = id | kCompactionSwitching;
    std::uint64_t expected = id | kCompactionCopying;
    if (!atom<std::uint64_t>(word).compare_exchange_strong(expected, switching,
                                                           std::memory_order_seq_cst)) {
      fail(Errc::busy, "another process took over the compaction of '" + path + "'");
    }
    const std::int64_t switched_ms = steady_ms();
    if (options.progress) options.progress(CompactProgress{CompactPhase::switching, 0, 0});
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (atom<std::uint64_t>(&from->sb_->untracked_processes).load(std::memory_order_seq_cst) != 0) {
      fail(Errc::busy, "a process that found the process table of '" + path +
                           "' full opened it during the compaction; try again later");
    }
    drain(from->procs_, word, switching, path);

    // Step 5: what changed.
    result.recopied = compactor.copy_changes();
    compactor.carry_counters();

    // Step 6: to disk, commit, rename.
    if (options.progress) options.progress(CompactProgress{CompactPhase::syncing, 0, 0});
    if (options.sync) {
      to->flush();
      fsync_or_fail(to->region_.fd(), tmp);
    }
    expected = switching;
    if (!atom<std::uint64_t>(word).compare_exchange_strong(expected, id | kCompactionCommitted,
                                                           std::memory_order_seq_cst)) {
      fail(Errc::busy, "writers of '" + path +
                           "' waited too long for the compaction and broke it off; try again");
    }
    if (path_names(file, device, inode) != PathNames::same_file) {
      fail(Errc::busy, "'" + path + "' was replaced during the compaction; nothing was changed");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      fail_errno(errno, "cannot rename the compacted file over", path, "");
    }
    tmp.clear();
    result.writers_paused = std::chrono::milliseconds(steady_ms() - switched_ms);
    if (options.sync) fsync_directory_of(file);

    result.dropped = compactor.dropped();
    result.evicted = compactor.evicted();
    result.file_bytes_after = to->region_.file_size();
    result.entries = compactor.entries_in_new_file();
    compactor.remove_old_blob_names();
    return result;
  } catch (...) {
    // Nothing was renamed: hand the file back to its users first (writers
    // may be waiting), then delete what we made.
    auto w = atom<std::uint64_t>(word);
    std::uint64_t cur = w.load();
    while ((cur & ~kCompactionPhaseMask) == id && cur != 0 && !w.compare_exchange_weak(cur, 0)) {
    }
    if (to != nullptr) {
      try {
        to->clear();  // unlinks the new file's blob files
      } catch (...) {
      }
      to.reset();
    }
    if (!tmp.empty()) ::unlink(tmp.c_str());
    throw;
  }
}

}  // namespace detail

CompactResult compact(const std::filesystem::path& file, const CompactOptions& options) {
  for (int attempt = 0;; ++attempt) {
    try {
      return detail::Compactor::compact_once(file, options);
    } catch (const detail::Replaced&) {
      // Another compaction replaced the file after we opened it: compact
      // the new one.
      if (attempt == 3) {
        detail::fail(Errc::busy, "'" + file.string() +
                                     "' keeps being replaced by other compactions; try again");
      }
    }
  }
}

}  // namespace tcache
