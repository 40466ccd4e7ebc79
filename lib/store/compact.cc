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
//   3. Copy pass, in index order (in one or more threads, by ranges of
//      slots): for every slot, copy the entry it publishes (key, stored
//      value as it is: compressed or not, expiry, checksum) if it is live
//      -- to the same slot of the new index when both have the same
//      geometry -- and remember what the slot held: the chunk, its
//      version, the key's hash. New pages are built in memory and written
//      with pwrite. Users keep reading and writing.
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
// number of calls may run (one per file at a time: the claim). Within one,
// the copying threads share only `seen_` (disjoint ranges), the new file
// (StoreImpl's own thread safety; each thread fills pages of its own) and
// atomic counters.

#include "tcache/compact.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
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

// v = n value-initialized elements, in transparent huge pages where the
// kernel has them (fewer TLB misses): advised before the pages are first
// touched.
template <class T>
void zeroed_in_huge_pages(std::vector<T>& v, std::size_t n) {
  v = std::vector<T>();
  v.reserve(n);
  constexpr std::uintptr_t kHuge = 2u << 20;
  const auto p = reinterpret_cast<std::uintptr_t>(v.data());
  const std::uintptr_t begin = (p + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t end = (p + n * sizeof(T)) & ~(kHuge - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  v.resize(n);
}

// Threads for the copy pass and the final pass's scan: `wanted`, or with 0
// one per core up to 4; one for a small file (a thread costs more than it
// saves there).
unsigned copy_threads(unsigned wanted, std::uint64_t slots) {
  if (wanted == 0) {
    wanted = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
    if (slots < (1u << 18)) wanted = 1;
  }
  return std::clamp<unsigned>(wanted, 1, 64);
}

// Runs fn(t, begin, end, in_caller) for `threads` ranges of whole buckets
// that cover slots [0, slots): range 0, and any range whose thread could
// not be started, in the calling thread (in_caller), the others in threads
// of their own, joined before it returns. Sets `stop` when a range throws,
// and rethrows the first error.
template <class Fn>
void run_ranges(unsigned threads, std::uint64_t slots, std::atomic<bool>& stop, Fn fn) {
  const std::uint64_t buckets = slots / kSlotsPerBucket;
  const auto begin = [&](unsigned t) { return buckets * t / threads * kSlotsPerBucket; };
  std::vector<std::exception_ptr> errors(threads);
  const auto run = [&](unsigned t, bool in_caller) {
    try {
      fn(t, begin(t), t + 1 == threads ? slots : begin(t + 1), in_caller);
    } catch (...) {
      errors[t] = std::current_exception();
      stop = true;
    }
  };
  std::vector<std::thread> running;
  unsigned t = 1;
  for (; t < threads; ++t) {
    try {
      running.emplace_back(run, t, false);
    } catch (const std::system_error&) {
      break;  // no more threads: this one runs the rest
    }
  }
  run(0, true);
  for (; t < threads; ++t) run(t, true);
  for (std::thread& thread : running) thread.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
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
  // What the copy pass saw in each slot of `from` (S[i] in INVARIANTS.md,
  // 16 bytes per slot): the chunk it pointed at, with the chunk's version,
  // and its key's hash (which gives the slot's tag). chunk 0 = nothing, or
  // nothing known: the final pass looks at whatever the slot holds then.
  struct Seen {
    std::uint64_t chunk = 0;  // see seen_chunk()
    std::uint64_t h = 0;
  };

  // `seen` has a Seen per index slot of `from`, shared by every Compactor
  // of this compaction (each copies its own range of slots).
  Compactor(StoreImpl& from, StoreImpl& to, const CompactOptions& options, Seen* seen)
      : from_(from), to_(to), options_(options), seen_(seen) {}

  // Step 3, in one or more threads: prepare_copy() once, then copy_range()
  // for disjoint ranges of index slots that together cover them all, each
  // range by its own Compactor, then absorb() the others into the first.
  void prepare_copy();
  // Every live entry published in slots [begin, end), remembering what
  // each slot held; adds the slots done to `done`. Stops early (leaving
  // the rest to the final pass... no: throws nothing, just returns) when
  // `stop` is set. Only the Compactor with `report` calls the progress
  // callback.
  void copy_range(std::uint64_t begin, std::uint64_t end, std::atomic<std::uint64_t>& done,
                  const std::atomic<bool>& stop, bool report);
  // Takes over what another Compactor's copy_range() left for the final
  // pass and its counts.
  void absorb(Compactor& other);
  // Step 3: prepare_copy(), then copy_range() in copy_threads() threads
  // (this one and more), then absorb(). Rethrows the first error.
  void copy(std::uint64_t slots);
  // Step 5. REQUIRES: the switch is done (only expiry unlinks change
  // `from`). Returns the number of keys copied again or removed.
  std::uint64_t copy_changes();
  // The hashes of the keys whose slots in [begin, end) changed since the
  // copy pass saw them, into `todo`; see copy_range() for the rest.
  void find_changes(std::uint64_t begin, std::uint64_t end, std::vector<std::uint64_t>& todo,
                    std::atomic<std::uint64_t>& done, const std::atomic<bool>& stop,
                    bool report) const;
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
  Read read_slot(std::uint64_t i, Raw& r) const;
  // Position of index slot `i` of `from` in the pair of hash `h`, or -1 if
  // it is in neither bucket (get() never looks there).
  int pair_position(std::uint64_t i, std::uint64_t h) const;
  // Whether a slot of `s` at a pair position in [begin, end) holds tag `tag`.
  static bool tag_in(const StoreImpl::Slots& s, int begin, int end, std::uint64_t tag);
  // The chunk slot `i` of `from` points at (its class's size in `size`), or
  // nullptr for an empty or damaged slot.
  const char* published(std::uint64_t i, std::uint32_t& size) const;
  // Fetches the chunk published by slot `i` of `from` into the cache.
  void prefetch_entry(std::uint64_t i) const;
  // Fetches the pairs of the key published by slot `i` (in both files).
  void prefetch_pairs(std::uint64_t i, std::string& key) const;
  // A chunk of class `cls` in the new file: its offset, and where to write
  // its bytes. During the copy pass chunks are handed out in file order
  // from whole pages (nobody else uses the new file), which are built in
  // memory and written with pwrite when `buffered_` (see copy_all);
  // afterwards, and when every page of the new capacity is taken, from
  // StoreImpl::allocate. Throws no_space when the disk cannot hold the
  // next page (StoreImpl::compaction_target_).
  struct NewChunk {
    std::uint64_t off;
    char* at;
  };
  NewChunk new_chunk(std::uint32_t cls);
  // Writes the page a cursor built in memory to the file.
  void write_page(std::uint64_t first, const char* bytes);
  // Ends the copy pass's page-at-a-time allocation: the rest of each page
  // becomes free chunks of its class.
  void finish_appending();
  // Remembers the old file's blob file name of an entry, for
  // remove_old_blob_names().
  void note_blob(const Raw& r);
  Read read_slot_retrying(std::uint64_t i, Raw& r, int retries) const;
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
  // Copies `r` into the new file and publishes it there: in `slot` of the
  // new index (a copy-pass slot at the same position; the slot is empty) or,
  // with nullptr, wherever publish() puts it (replacing the key's copy).
  Import import(const Raw& r, std::uint64_t* slot);
  void remove(std::string_view key, std::uint64_t h);
  // Adds to `out` every key of `s` whose hash is h (not already in it).
  void keys_with_hash(StoreImpl& s, std::uint64_t h, std::vector<std::string>& out);
  // `key`'s entry in `from` as get() finds it, into `r`: true if it is
  // live (to be copied), false if the new file must not hold the key.
  bool resolve(const std::string& key, std::uint64_t h, Raw& r);
  // Step 1: claims the file for compactor `id` (pid and start time).
  static void claim(std::uint64_t* word, std::uint64_t id, const std::string& path,
                    std::uint64_t device, std::uint64_t inode);
  // Step 4: waits until no live process has a write in flight on the file.
  // Throws busy when a process with a write in flight is stopped, or after
  // `timeout`.
  static void drain(ProcessEntry* procs, std::uint64_t* word, std::uint64_t switching,
                    const std::string& path, std::chrono::milliseconds timeout);
  // Throws busy unless every live user of `from` named the file as we did
  // (ProcessEntry::name_dir_device ...) and the file has one link: only
  // then does every user follow our rename (INVARIANTS.md, 10).
  static void check_names(const StoreImpl& from, const std::string& path);
  // Throws busy if processes without a process table entry (Superblock::
  // untracked_processes) are alive; `when`: what they did, for the message.
  static void check_untracked(StoreImpl& from, const std::string& path, const char* when);
  void progress(CompactPhase phase, std::uint64_t done, std::uint64_t total) const {
    if (options_.progress) options_.progress(CompactProgress{phase, done, total});
  }

  StoreImpl& from_;
  StoreImpl& to_;
  const CompactOptions& options_;
  // Chunk offset / 8 (37 bits) and the low 27 bits of its version.
  static std::uint64_t seen_chunk(std::uint64_t word, std::uint32_t version) {
    return (slot_offset(word) / kChunkAlign) | (std::uint64_t{version & ((1u << 27) - 1)} << 37);
  }
  Seen* const seen_;
  // Hashes of keys whose copy was not clean (a second copy of a key, a blob
  // gone meanwhile): the final pass syncs them whatever their slots show.
  std::vector<std::uint64_t> queued_;
  // Slots whose entry the copy pass dropped as expired.
  std::vector<std::uint64_t> dropped_slots_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> old_blobs_;  // (key hash, id)
  // Page-at-a-time allocation in the new file during the copy pass.
  struct Cursor {
    std::uint64_t first = 0;       // the class's current page
    std::uint64_t next = 0;        // its next free chunk
    std::uint64_t end = 0;         // the end of its last whole chunk
    std::unique_ptr<char[]> page;  // its bytes, when built in memory
  };
  std::vector<Cursor> cursors_;
  bool appending_ = false;
  bool buffered_ = false;
  std::uint64_t buffered_bytes_ = 0;  // of all cursors' pages
  // Pages of the new file below this one have been handed to writeback.
  std::uint64_t writeback_page_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t no_room_ = 0;
  bool blob_dir_ready_ = false;
  std::uint64_t evictions_at_start_ = atom<std::uint64_t>(&to_.counters_[kEvictions]).load();
};

Compactor::Read Compactor::read_slot(std::uint64_t i, Raw& r) const {
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
  if (!slot_matches(w, v1)) {  // another incarnation than the word's: moved on, or damaged
    return atom<std::uint64_t>(&from_.index_[i]).load(std::memory_order_acquire) != w
               ? Read::unstable
               : Read::damaged;
  }
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

Compactor::Read Compactor::read_slot_retrying(std::uint64_t i, Raw& r, int retries) const {
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
  StoreImpl::Entry e;
  switch (from_.find_entry<true>(key, h, from_.slots_for(h), &r.stored, e)) {
    case StoreImpl::Find::retry:
      return Lookup::unstable;
    case StoreImpl::Find::absent:
      return Lookup::absent;
    case StoreImpl::Find::found:
      break;
  }
  r.word = e.word & ~kRefBit;
  r.version = e.version;
  r.h = h;
  r.meta = e.meta;
  r.vf = e.vlen_flags;
  r.sum = e.checksum;
  r.key.assign(key);
  // get() answers from the first copy of the key; so do we.
  return live(r, now_unix_ms()) ? Lookup::live : Lookup::absent;
}

Compactor::Import Compactor::import(const Raw& r, std::uint64_t* slot) {
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
  NewChunk fresh{};
  try {
    fresh = new_chunk(to_.class_for(need));
  } catch (const Error& e) {
    if (new_blob) {
      ::unlink(to_.blob_path(r.h, ref.id, false).c_str());
      atom<std::uint64_t>(&to_.sb_->blob_bytes).fetch_sub(ref.size);
    }
    // A new capacity too small for what the file holds: the entry is left
    // out (counted as evicted). Below the capacity, no_space means the
    // disk cannot hold the new file: the compaction fails.
    if (e.code() != Errc::no_space ||
        atom<std::uint64_t>(&to_.sb_->next_page).load() < to_.max_pages_) {
      throw;
    }
    ++no_room_;
    return Import::no_room;
  }
  // As StoreImpl::store_entry: the chunk is ours, its version odd.
  std::atomic_thread_fence(std::memory_order_release);
  const std::uint64_t off = fresh.off;
  char* c = fresh.at;
  racy_write(c + kChunkHeaderBytes, r.key.data(), r.key.size());
  racy_write(c + kChunkHeaderBytes + r.key.size(), stored.data(), stored.size());
  atom<std::uint64_t>(c + kChunkMetaOffset).store(r.meta, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkVlenOffset).store(vf, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkChecksumOffset).store(sum, std::memory_order_relaxed);
  auto version = atom<std::uint32_t>(c);
  version.store((version.load(std::memory_order_relaxed) | 1) + 1, std::memory_order_release);
  if (slot != nullptr) {
    atom<std::uint64_t>(slot).store(slot_make(hash_tag(r.h), off, version.load()),
                                    std::memory_order_release);
    return Import::added;
  }
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

bool Compactor::resolve(const std::string& key, std::uint64_t h, Raw& r) {
  r = Raw{};
  Lookup l = Lookup::unstable;
  for (int attempt = 0; attempt < kFinalRetries && l == Lookup::unstable; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    l = lookup(key, h, r);
  }
  if (l == Lookup::unstable) {
    fail(Errc::busy, "an entry of '" + from_.path().string() +
                         "' kept changing after writers were stopped; compaction abandoned");
  }
  note_blob(r);
  return l == Lookup::live;
}

int Compactor::pair_position(std::uint64_t i, std::uint64_t h) const {
  const StoreImpl::Slots pair = from_.slots_for(h);
  const std::uint64_t* slot = from_.index_ + i;
  for (int b = 0; b < 2; ++b) {
    if (slot >= pair.b[b] && slot < pair.b[b] + kSlotsPerBucket) {
      return b * static_cast<int>(kSlotsPerBucket) + static_cast<int>(slot - pair.b[b]);
    }
  }
  return -1;
}

bool Compactor::tag_in(const StoreImpl::Slots& s, int begin, int end, std::uint64_t tag) {
  for (int p = begin; p < end; ++p) {
    const std::uint64_t w = atom<std::uint64_t>(&s.at(p)).load(std::memory_order_relaxed);
    if (w != 0 && slot_tag(w) == tag) return true;
  }
  return false;
}

const char* Compactor::published(std::uint64_t i, std::uint32_t& size) const {
  const std::uint64_t w = atom<std::uint64_t>(&from_.index_[i]).load(std::memory_order_relaxed);
  if (w == 0) return nullptr;
  const std::uint64_t off = slot_offset(w);
  const int cls = from_.chunk_class(off);
  if (cls < 0) return nullptr;
  size = from_.class_bytes_[cls];
  return from_.chunk(off);
}

void Compactor::prefetch_entry(std::uint64_t i) const {
  std::uint32_t size = 0;
  // The header, key and the start of the value; the hardware prefetcher
  // follows a longer value.
  if (const char* c = published(i, size)) prefetch_chunk(c, size, 8 * kCacheLine);
}

void Compactor::prefetch_pairs(std::uint64_t i, std::string& key) const {
  std::uint32_t size = 0;
  const char* c = published(i, size);
  if (c == nullptr) return;
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
}

Compactor::NewChunk Compactor::new_chunk(std::uint32_t cls) {
  if (!appending_) {
    const std::uint64_t off = to_.allocate(cls);
    return NewChunk{off, to_.chunk(off)};
  }
  Cursor& cursor = cursors_[cls];
  const std::uint32_t size = to_.class_bytes_[cls];
  const std::uint64_t page_bytes = to_.page_bytes_;
  if (cursor.next + size > cursor.end) {
    if (cursor.page != nullptr) write_page(cursor.first, cursor.page.get());
    std::uint64_t page = 0;
    StoreImpl::Claim claim = StoreImpl::Claim::raced;
    while (claim == StoreImpl::Claim::raced) claim = to_.claim_page(page);  // another copier
    if (claim != StoreImpl::Claim::claimed) {
      // Every page of the new capacity is taken (a disk that cannot hold
      // the next page throws no_space in claim_page): allocate as every
      // writer does, which may evict, and so reads every page: write the
      // ones built in memory first.
      cursor = Cursor{};
      for (Cursor& c : cursors_) {
        if (c.page == nullptr) continue;
        write_page(c.first, c.page.get());
        c.page.reset();
      }
      buffered_ = false;
      const std::uint64_t off = to_.allocate(cls);
      return NewChunk{off, to_.chunk(off)};
    }
    cursor.first = to_.pages_offset_ + page * page_bytes;
    cursor.next = cursor.first;
    cursor.end = cursor.first + page_bytes / size * size;
    // A page built in memory and written with pwrite costs the kernel a
    // copy; one written through the mapping also costs it a read of the
    // new (unwritten) page and a zero fill. Pages of up to 64 MiB of
    // classes at a time are built in memory.
    constexpr std::uint64_t kBufferBudget = 64u << 20;
    if (buffered_ && cursor.page == nullptr &&
        (buffered_bytes_ == 0 || buffered_bytes_ + page_bytes <= kBufferBudget)) {
      cursor.page = std::make_unique<char[]>(page_bytes);
      buffered_bytes_ += page_bytes;
    }
    if (cursor.page != nullptr) {
      std::memset(cursor.page.get(), 0, page_bytes);
    } else {
      to_.region_.populate(cursor.first, page_bytes);  // one call, not a fault per 4 KiB
    }
    atom<std::uint8_t>(&to_.page_table_[page])
        .store(static_cast<std::uint8_t>(cls), std::memory_order_release);
    atom<std::uint64_t>(&to_.classes_[cls].pages).fetch_add(1, std::memory_order_relaxed);
    if (options_.sync) {
      // Start writing finished pages to disk now, so that the flush at the
      // end has little left: the pages below every class's current page.
      std::uint64_t open = page;
      for (const Cursor& c : cursors_) {
        if (c.end != 0) open = std::min(open, (c.first - to_.pages_offset_) / page_bytes);
      }
      constexpr std::uint64_t kWritebackBytes = 32u << 20;
      if ((open - writeback_page_) * page_bytes >= kWritebackBytes) {
        to_.region_.start_writeback(to_.pages_offset_ + writeback_page_ * page_bytes,
                                    (open - writeback_page_) * page_bytes);
        writeback_page_ = open;
      }
    }
  }
  const std::uint64_t off = cursor.next;
  cursor.next += size;
  char* at = cursor.page != nullptr ? cursor.page.get() + (off - cursor.first) : to_.chunk(off);
  return NewChunk{off, at};
}

void Compactor::write_page(std::uint64_t first, const char* bytes) {
  std::uint64_t done = 0;
  while (done < to_.page_bytes_) {
    const ssize_t n = ::pwrite(to_.region_.fd(), bytes + done, to_.page_bytes_ - done,
                               static_cast<off_t>(first + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
        fail(Errc::no_space, "cannot write the compacted copy '" + to_.path().string() + "' (" +
                                 std::strerror(err) +
                                 "); the cache file is unchanged: free disk space, then "
                                 "compact again");
      }
      fail_errno(err, "cannot write the compacted file", to_.path().string(),
                 "check the file system");
    }
    done += static_cast<std::uint64_t>(n);
  }
}

void Compactor::finish_appending() {
  appending_ = false;
  for (std::uint32_t cls = 0; cls < cursors_.size(); ++cls) {
    Cursor& cursor = cursors_[cls];
    if (cursor.page != nullptr) write_page(cursor.first, cursor.page.get());
    const std::uint32_t size = to_.class_bytes_[cls];
    if (cursor.end != 0 && cursor.next + size <= cursor.end) {
      const auto n = static_cast<std::uint32_t>((cursor.end - cursor.next) / size);
      to_.push_chain(cls, cursor.next, to_.link_free_chunks(cursor.next, size, n));
    }
  }
  cursors_.clear();
  buffered_bytes_ = 0;
}

void Compactor::prepare_copy() {
  // In index order: the old and the new index, and seen_, are read and
  // written sequentially; the old file's chunks are the only random
  // accesses, and they are fetched a few slots ahead. With the same number
  // of buckets (and the same hash seed) every key's pair is the same in
  // both files, so an entry goes to the same slot of the new index: the
  // new index is a copy of the old one, less what is not live.
  //
  // Map the pages of both indexes, and of the old file's chunks, in a few
  // calls rather than one fault per 4 KiB (a prefetch of an unmapped page
  // is dropped).
  to_.region_.populate(static_cast<std::uint64_t>(reinterpret_cast<char*>(to_.index_) - to_.base_),
                       to_.bucket_count_ * kBucketBytes);
  const std::uint64_t pages = std::min(
      atom<std::uint64_t>(&from_.sb_->next_page).load(std::memory_order_acquire), from_.max_pages_);
  from_.region_.populate_read(from_.pages_offset_, pages * from_.page_bytes_);
}

void Compactor::copy_range(std::uint64_t begin, std::uint64_t end, std::atomic<std::uint64_t>& done,
                           const std::atomic<bool>& stop, bool report) {
  const std::uint64_t n = from_.bucket_count_ * kSlotsPerBucket;
  const bool same_index = to_.bucket_count_ == from_.bucket_count_;
  cursors_.clear();
  cursors_.resize(to_.class_count_);
  appending_ = true;
  // Pages are built in memory unless publish() must read the new file's
  // chunks (a key's first copy in another pair of slots).
  buffered_ = same_index;
  constexpr std::uint64_t kChunkAhead = 24;  // slots
  constexpr std::uint64_t kPairAhead = 8;    // slots; the chunk is in cache by then
  std::string key;
  Raw r;
  std::uint64_t now = now_unix_ms();
  std::uint64_t counted = begin;  // slots added to `done`
  for (std::uint64_t i = begin; i < end; ++i) {
    if (i - counted == kProgressEvery) {
      counted = i;
      const std::uint64_t sum = done.fetch_add(kProgressEvery) + kProgressEvery;
      if (report) progress(CompactPhase::copying, sum, n);
      if (stop.load(std::memory_order_relaxed)) return;
      now = now_unix_ms();
    }
    if (i + kChunkAhead < end) prefetch_entry(i + kChunkAhead);
    if (!same_index && i + kPairAhead < end) prefetch_pairs(i + kPairAhead, key);
    // Unstable: the slot changed while we looked, and shows that in the
    // final pass (seen_[i] stays empty). Damaged: get() skips it too.
    if (read_slot_retrying(i, r, kCopyRetries) != Read::entry) continue;
    seen_[i] = Seen{seen_chunk(r.word, r.version), r.h};
    note_blob(r);
    const int pos = pair_position(i, r.h);
    if (pos < 0 || !live(r, now)) {
      ++dropped_;
      // An expired first copy hides any later copy of its key (get()
      // answers from the first): dropping it must not uncover one. Whether
      // its pair holds another copy is decided when nothing changes any
      // more (copy_changes()).
      if (pos >= 0) dropped_slots_.push_back(i);
      continue;
    }
    // get() answers from the first slot of the pair that holds the key. In
    // the same index position that stays so; elsewhere, a slot before this
    // one with the key's tag may hold an earlier copy (a killed writer's,
    // or the key is moving): the final pass decides.
    if (!same_index && tag_in(from_.slots_for(r.h), 0, pos, hash_tag(r.h))) {
      queued_.push_back(r.h);
      continue;
    }
    switch (import(r, same_index ? &to_.index_[i] : nullptr)) {
      case Import::added:
      case Import::no_room:
        break;
      case Import::damaged:
        ++dropped_;
        break;
      case Import::skipped:
      case Import::replaced:
        // Copied before from another slot (it moved), or its blob went
        // (erased meanwhile): the final pass settles the key.
        queued_.push_back(r.h);
        break;
    }
  }
  finish_appending();
  done.fetch_add(end - counted);
}

void Compactor::copy(std::uint64_t slots) {
  prepare_copy();
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> stop{false};
  unsigned threads = copy_threads(options_.threads, slots);
  if (threads > 1) {
    // Each thread fills pages of its own, so each may leave a page of each
    // size class partly used: up to (threads - 1) pages per class more
    // than one thread would. Never so many that the new file could run out
    // of pages (and evict); by default, only where that is at most 1/64 of
    // the pages copied.
    std::uint64_t classes = 0;
    for (std::uint32_t c = 0; c < from_.class_count_; ++c) {
      classes += atom<std::uint64_t>(&from_.classes_[c].pages).load() != 0;
    }
    const std::uint64_t used =
        std::min(atom<std::uint64_t>(&from_.sb_->next_page).load(std::memory_order_acquire),
                 from_.max_pages_);
    const auto extra = [&] { return (threads - 1) * classes; };
    while (threads > 1 &&
           (used + extra() > to_.max_pages_ || (options_.threads == 0 && extra() * 64 > used))) {
      --threads;
    }
  }
  std::vector<std::unique_ptr<Compactor>> copiers;  // one per range but the first
  for (unsigned t = 1; t < threads; ++t) {
    copiers.push_back(std::make_unique<Compactor>(from_, to_, options_, seen_));
  }
  run_ranges(threads, slots, stop,
             [&](unsigned t, std::uint64_t begin, std::uint64_t end, bool in_caller) {
               Compactor& copier = t == 0 ? *this : *copiers[t - 1];
               copier.copy_range(begin, end, done, stop, in_caller);
             });
  for (const auto& copier : copiers) absorb(*copier);
  progress(CompactPhase::copying, slots, slots);
}

void Compactor::absorb(Compactor& other) {
  queued_.insert(queued_.end(), other.queued_.begin(), other.queued_.end());
  dropped_slots_.insert(dropped_slots_.end(), other.dropped_slots_.begin(),
                        other.dropped_slots_.end());
  old_blobs_.insert(old_blobs_.end(), other.old_blobs_.begin(), other.old_blobs_.end());
  dropped_ += other.dropped_;
  no_room_ += other.no_room_;
}

void Compactor::find_changes(std::uint64_t begin, std::uint64_t end,
                             std::vector<std::uint64_t>& todo, std::atomic<std::uint64_t>& done,
                             const std::atomic<bool>& stop, bool report) const {
  const std::uint64_t n = from_.bucket_count_ * kSlotsPerBucket;
  std::uint64_t counted = begin;  // slots added to `done`
  Raw r;
  for (std::uint64_t i = begin; i < end; ++i) {
    if (i - counted == kProgressEvery) {
      counted = i;
      const std::uint64_t sum = done.fetch_add(kProgressEvery) + kProgressEvery;
      if (report) progress(CompactPhase::final_copy, sum, n);
      if (stop.load(std::memory_order_relaxed)) return;
    }
    if (i + kFinalPrefetchDistance < end) {
      const std::uint64_t ahead = atom<std::uint64_t>(&from_.index_[i + kFinalPrefetchDistance])
                                      .load(std::memory_order_relaxed);
      if (ahead != 0 && from_.chunk_class(slot_offset(ahead)) >= 0) {
        __builtin_prefetch(from_.chunk(slot_offset(ahead)), 0, 3);
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
  done.fetch_add(end - counted);
}

std::uint64_t Compactor::copy_changes() {
  // The slots are compared in copy_threads() threads; the keys that
  // changed (few) are synced in this one.
  const std::uint64_t n = from_.bucket_count_ * kSlotsPerBucket;
  const unsigned threads = copy_threads(options_.threads, n);
  std::vector<std::vector<std::uint64_t>> found(threads);
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> stop{false};
  run_ranges(threads, n, stop,
             [&](unsigned t, std::uint64_t begin, std::uint64_t end, bool in_caller) {
               find_changes(begin, end, found[t], done, stop, in_caller);
             });
  std::vector<std::uint64_t> todo;
  for (const std::vector<std::uint64_t>& f : found) todo.insert(todo.end(), f.begin(), f.end());
  // A dropped expired entry whose pair holds its key's tag in another slot
  // may have hidden a copy of the key that the new file would now show.
  for (const std::uint64_t i : dropped_slots_) {
    const std::uint64_t h = seen_[i].h;
    const StoreImpl::Slots pair = from_.slots_for(h);
    const int pos = pair_position(i, h);
    if (tag_in(pair, 0, pos, hash_tag(h)) ||
        tag_in(pair, pos + 1, StoreImpl::kPairSlots, hash_tag(h))) {
      todo.push_back(h);
    }
  }
  Raw r;
  todo.insert(todo.end(), queued_.begin(), queued_.end());
  std::sort(todo.begin(), todo.end());
  todo.erase(std::unique(todo.begin(), todo.end()), todo.end());
  // Every key of those hashes, in either file, is made to hold in the new
  // file what get() finds in the old one: removals first, so that the
  // copies find the room the removed entries leave in their pairs.
  std::uint64_t synced = 0;
  std::vector<std::string> keys;
  std::vector<Raw> copies;
  for (const std::uint64_t h : todo) {
    keys.clear();
    keys_with_hash(from_, h, keys);
    keys_with_hash(to_, h, keys);
    for (const std::string& key : keys) {
      if (resolve(key, h, r)) {
        copies.push_back(std::move(r));
      } else {
        remove(key, h);
      }
      ++synced;
    }
  }
  for (const Raw& copy : copies) import(copy, nullptr);
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
      if (process_alive(pid, compactor_start(cur), kCompactorStartMask)) {
        fail(Errc::busy, "process " + std::to_string(pid) + " is compacting '" + path +
                             "' already; wait for it to finish");
      }
      // A dead compactor's state. If it renamed its file over ours first,
      // ours is not the file at the path any more.
      if (compaction_phase(cur) == kCompactionCommitted &&
          path_names(path, device, inode) != PathNames::same_file) {
        throw Replaced{};
      }
      if (compaction_phase(cur) == kCompactionCommitted && (cur & kCompactionRenamed) != 0) {
        fail(Errc::file_replaced,
             "'" + path +
                 "' names a cache file that was compacted under another name (this name is a "
                 "hard link or bind mount of the old file); compact the file by its other name, "
                 "and remove or recreate this one");
      }
    }
    if (w.compare_exchange_strong(cur, id | kCompactionCopying, std::memory_order_seq_cst)) return;
  }
}

void Compactor::drain(ProcessEntry* procs, std::uint64_t* word, std::uint64_t switching,
                      const std::string& path, std::chrono::milliseconds timeout) {
  const std::int64_t deadline = steady_ms() + timeout.count();
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    ProcessEntry& e = procs[i];
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      // `writes` first (seq_cst, after our switching CAS): a write whose
      // increment comes later in its order sees the switching phase.
      if (atom<std::uint64_t>(&e.writes).load(std::memory_order_seq_cst) == 0) break;
      const std::uint64_t owner = atom<std::uint64_t>(&e.owner).load();
      if (owner == 0) break;
      const auto pid = static_cast<pid_t>(owner & 0xffffffffu);
      const ProcState state = process_state(pid, atom<std::uint64_t>(&e.start_time).load());
      if (state == ProcState::gone) break;  // died mid-write: nothing more comes from it
      if (state == ProcState::stopped) {
        // Stopped (SIGSTOP, a debugger) in the middle of a write: it may
        // stay so for ever, and every other writer waits meanwhile.
        fail(Errc::busy, "process " + std::to_string(pid) +
                             " is stopped in the middle of a write to '" + path +
                             "' (SIGSTOP or a debugger); nothing was changed. Let it continue "
                             "(kill -CONT " +
                             std::to_string(pid) + ") or end it, then compact again");
      }
      if (atom<std::uint64_t>(word).load() != switching) {
        fail(Errc::busy, "writers of '" + path +
                             "' waited too long for the compaction and broke it off; try again");
      }
      if (steady_ms() >= deadline) {
        fail(Errc::busy, "process " + std::to_string(pid) + " kept a write to '" + path +
                             "' in flight for longer than the drain timeout (" +
                             std::to_string(timeout.count()) +
                             " ms); nothing was changed. Compact again when it is less busy, or "
                             "raise CompactOptions::drain_timeout");
      }
      back_off(pause);
    }
  }
}

void Compactor::check_names(const StoreImpl& from, const std::string& path) {
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    if (static_cast<int>(i) == from.proc_slot_) continue;
    const ProcessEntry& e = from.procs_[i];
    const std::uint64_t owner = atom<std::uint64_t>(&e.owner).load(std::memory_order_acquire);
    if (owner == 0) continue;
    const auto pid = static_cast<pid_t>(owner & 0xffffffffu);
    if (atom<std::uint64_t>(&e.name_dir_device).load() == from.name_dir_device_ &&
        atom<std::uint64_t>(&e.name_dir_inode).load() == from.name_dir_inode_ &&
        atom<std::uint64_t>(&e.name_hash).load() == from.name_hash_) {
      continue;
    }
    if (!process_alive(pid, atom<std::uint64_t>(&e.start_time).load())) continue;
    fail(Errc::busy,
         "process " + std::to_string(pid) + " opened '" + path +
             "' by another name (a hard link, or a bind mount of the file or its directory "
             "such as docker -v) and would not follow the compacted "
             "file; nothing was changed. Compact when it has closed the file, or "
             "have every process open it by the same path");
  }
  struct stat st {};
  if (::fstat(from.region_.fd(), &st) != 0) fail_errno(errno, "cannot stat", path, "");
  if (st.st_nlink != 1) {
    fail(Errc::busy,
         "'" + path + "' has " + std::to_string(st.st_nlink) +
             " hard links; a compaction replaces one name only, and whoever uses "
             "another would keep the old file. Remove the other links (find -samefile), "
             "then compact again");
  }
}

void Compactor::check_untracked(StoreImpl& from, const std::string& path, const char* when) {
  if (from.untracked_all_dead()) return;
  fail(Errc::busy, "'" + path + "' is used by processes that " + when +
                       " (its process table was full), whose writes a compaction cannot "
                       "drain; compact it when they have closed it");
}

CompactResult Compactor::compact_once(const std::filesystem::path& file,
                                      const CompactOptions& options) {
  StoreOptions open_options;
  open_options.create_if_missing = false;
  open_options.allow_shared_access = options.allow_shared_access;
  // Both files' diagnostics, from any copying thread, one at a time.
  std::function<void(std::string_view)> logger;
  if (options.logger) {
    logger = [&options, mutex = std::make_shared<std::mutex>()](std::string_view line) {
      const std::lock_guard<std::mutex> lock(*mutex);
      options.logger(line);
    };
  }
  open_options.logger = logger;
  std::unique_ptr<StoreImpl> from = open_store_impl(file, open_options);
  const std::string path = file.string();
  if (from->proc_slot_ < 0) {
    fail(Errc::busy, "'" + path + "' has 256 processes attached (its process table is full); " +
                         "compact it when fewer use it");
  }
  check_untracked(*from, path, "found its process table full");
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
    check_names(*from, path);
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
    new_options.logger = logger;
    to = std::make_unique<StoreImpl>(std::move(region), new_options, &file);
    result.capacity_bytes_before = old_sb.capacity_bytes;
    result.capacity_bytes_after = capacity;
    result.file_bytes_before = from->region_.file_size();

    // Step 3: copy while users carry on; write the bulk to disk meanwhile.
    const std::uint64_t slots = from->bucket_count_ * kSlotsPerBucket;
    std::vector<Seen> seen;
    zeroed_in_huge_pages(seen, slots);
    Compactor compactor(*from, *to, options, seen.data());
    compactor.copy(slots);
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
    check_untracked(*from, path, "opened it during the compaction");
    drain(from->procs_, word, switching, path, options.drain_timeout);
    // Users that attached since the first check: from now on, one that
    // attaches finds the file superseded before it writes.
    check_names(*from, path);

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
    // For users that named the file otherwise after check_names: their
    // name keeps this file, which they must not write (file_replaced).
    atom<std::uint64_t>(word).fetch_or(kCompactionRenamed, std::memory_order_seq_cst);
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
    // (After the rename, tmp is empty, the word carries kCompactionRenamed
    // and the new file is in use: both stay.)
    if (tmp.empty() && to != nullptr) throw;
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

CompactResult compact(const std::filesystem::path& file_as_given, const CompactOptions& options) {
  if (options.drain_timeout.count() <= 0) {
    detail::fail(Errc::invalid_option, "CompactOptions::drain_timeout must be positive");
  }
  const std::filesystem::path file = detail::absolute_path(file_as_given);
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
