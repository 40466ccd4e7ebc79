// store/store_impl.h: the lock-free store behind tcache::Store.
//
// Thread safety: every public member may be called by many threads of many
// processes at once, except recover(), which requires that no other process
// has the file open (the caller holds the exclusive flock) and that no other
// thread uses this StoreImpl.
//
// Rooms (one job per file), lowest layer first. A room calls only rooms
// earlier in this list and the inline helpers of this header; StoreImpl's
// members are declared under the same headings.
//   0. store_impl.h  inline helpers every room uses: chunk addressing
//                    (chunk, chunk_class), hash and bucket pair (hash,
//                    slots_for), counters, log.
//   1. slab.cc       size classes, free lists (16-byte head with ABA tag),
//                    page claims, carving a page into chunks.
//   2. blob.cc       blob files for values larger than a page: naming,
//                    writing, reading, releasing, listing, sweeping.
//   3. index.cc      bucket pair lookups (find_entry, probe, get, contains,
//                    get_many), publish / withdraw / dedupe, unlink and
//                    retire, the slot of a chunk, an entry's liveness.
//   4. evict.cc      making room: allocate, CLOCK, moving a page between
//                    classes; write_blob and evict_blobs (room for a blob
//                    file within the capacity).
//   5. write.cc      put, erase, clear.
//   6. lease.cc      single flight: lease_step, release_lease.
//   7. walk.cc       for_each and the prefix walks, statistics, class
//                    statistics, folding a process's counters.
//   8. verify.cc     checking and repairing (verify, dead_owners_chunks).
//   9. recovery.cc   rebuilding free lists and the index (uses verify.cc's
//                    slot_problem).
//  10. attach.cc     opening, the process table, recovery hand-off,
//                    open_store_impl.
//  11. follow.cc     a user's side of compaction: enter/leave_write,
//                    check_superseded (the public "Compaction" block below),
//                    Store::follow.
//  12. door.cc       the compactor's door: the public block of members
//                    that lib/compact/ (protocol.cc, copier.cc,
//                    final_pass.cc) uses, on top of all the above; the
//                    compactor has no other way in (no friendship).
//  13. store.cc      the public tcache::Store facade over StoreImpl.
//
// Invariants (the full argument is in doc/INVARIANTS.md):
//  1. Publish after write: a chunk's contents are complete and its version
//     even (release) before the slot CAS that makes it reachable.
//  2. Optimistic reads: a reader validates every copy with the chunk's
//     version (acquire fence, re-read); a changed version, a version of
//     another generation than the slot word's, another key or a failed
//     bounds check is a retry, then a miss.
//  3. Retire after unpublish, by the unpublisher: only the thread whose CAS
//     removed a chunk from its slot bumps the chunk's version to odd and
//     pushes it on its class's free list (or reuses it). A slot word carries
//     its chunk's generation (version bits 1..12), and every unlink decided
//     from a chunk's content (expiry, checksum, key, lease) CASes the exact
//     word it judged (unlink, unlink_entry): it never removes a newer
//     incarnation of the chunk in the same slot (up to 2^12 reuses).
//  4. One CAS per transition: slot CAS, free-list head CAS (16 bytes: the
//     first chunk and a 64-bit ABA tag, util/atomic128.h),
//     next-page CAS. A process killed anywhere leaves published, complete
//     entries and at most a few leaked chunks (found by recover()).
//  5. Lossy index: a full bucket pair evicts its coldest slot; a class with
//     no free chunk and no room to grow evicts by CLOCK over its chunks.
//  6. Duplicate keys converge: after publishing into slot p, a writer clears
//     any slot with the same key above p, and withdraws its own if one
//     exists below p.
//  7. Never SIGBUS: pages are touched only below next_page, which advances
//     only after posix_fallocate has covered the page.
//  10. Compaction: every write runs between enter_write() (which raises
//     this attachment's ProcessEntry::writes and then checks
//     Superblock::compaction, both seq_cst) and leave_write(); a compactor
//     sets the switching phase (seq_cst) and then waits for every live
//     process's `writes` to reach 0, so after that wait no write reaches
//     this file. Readers only look at the phase (one relaxed load).

#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "format/layout.h"
#include "region/region.h"
#include "store/index.h"
#include "tcache/store.h"
#include "util/checksum.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

// A chunk's checksum word: low 32 bits of XXH3-64 of its stored value, seeded
// with the key hash and the header words (doc/FORMAT.md, "Chunks").
inline std::uint32_t value_checksum(const char* value, std::size_t n, std::uint64_t key_hash,
                                    std::uint64_t meta, std::uint32_t vlen_flags) {
  const std::uint64_t seed = key_hash ^ meta ^ (std::uint64_t{vlen_flags} << 32);
  return static_cast<std::uint32_t>(checksum64(value, n, seed));
}

// How often a lookup looks again at a bucket pair or a slot that changed
// while it looked, before it answers a miss (or gives up on a slot).
inline constexpr int kMaxProbeRetries = 16;

// Scratch space for compressing (put) and decompressing (probe) a value,
// one per thread.
inline std::string& scratch() {
  thread_local std::string s;
  return s;
}

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

// A chunk spans several cache lines; fetch them together (up to `limit`
// bytes) rather than one after another as a copy reaches them.
inline void prefetch_chunk(const char* c, std::uint32_t bytes, std::uint32_t limit = 256) {
  const auto at = reinterpret_cast<std::uintptr_t>(c);
  const std::uintptr_t end = at + std::min(bytes, limit);
  for (std::uintptr_t line = at & ~std::uintptr_t{63}; line < end; line += 64) {
    prefetch(reinterpret_cast<const void*>(line));
  }
}

class StoreImpl {
 public:
  // --- attach.cc ---
  // `final_path`: the compactor's new file, opened under a temporary name,
  // keeps its blob files where its final name puts them, never deletes
  // blob files that it does not know (they are the old file's), and throws
  // no_space where the disk cannot hold a page or blob file (see
  // compaction_target_).
  StoreImpl(Region region, const StoreOptions& options,
            const std::filesystem::path* final_path = nullptr);
  ~StoreImpl();
  StoreImpl(const StoreImpl&) = delete;
  StoreImpl& operator=(const StoreImpl&) = delete;
  void flush() { region_.flush(); }
  const std::filesystem::path& path() const noexcept { return region_.path(); }
  bool read_only() const noexcept { return region_.read_only(); }
  std::size_t max_value_bytes() const noexcept;  // inline, below

  // --- index.cc ---
  bool get(std::string_view key, std::string& value);
  void get_many(std::span<const std::string_view> keys, std::span<std::string> values,
                std::span<bool> found);
  bool contains(std::string_view key);

  // --- write.cc ---
  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl);
  bool erase(std::string_view key);
  void clear();

  // --- lease.cc ---
  // One step of Store::get_or_lease: hit (value filled), holder (the caller
  // took the lease, or cannot take one: read-only), wait (another holds it;
  // sleep, then step again) or again (step again now).
  enum class LeaseStep { hit, holder, wait, again };
  LeaseStep lease_step(std::string_view key, std::string& value,
                       std::chrono::milliseconds lease_timeout);
  void release_lease(std::string_view key) noexcept;

  // --- walk.cc ---
  StoreStats stats() const;
  std::vector<ClassStats> class_stats() const;
  std::vector<ProcessInfo> processes() const;
  std::uint64_t erase_prefix(std::string_view prefix);
  std::uint64_t count_prefix(std::string_view prefix);
  std::uint64_t purge_expired();
  void for_each(std::string_view prefix, const Store::Visitor& visit);

  // --- verify.cc, recovery.cc ---
  // See verify.cc. With repair, unpublishes damaged and duplicate slots and
  // sets needs_recovery when anything was wrong.
  VerifyReport verify(bool repair);

  // Rebuilds free lists from what the index reaches, drops invalid and
  // duplicate slots, folds dead processes' counters. REQUIRES: exclusive.
  void recover();

  // --- Compaction (doc/INVARIANTS.md, 10) ---
  // True once a compactor has entered its switching phase: this file is
  // being (or has been) replaced. One relaxed load; every operation's start.
  bool superseded() const noexcept {
    return compaction_superseded(
        atom<std::uint64_t>(&sb_->compaction).load(std::memory_order_relaxed));
  }
  // Starts a write: false (and nothing started) if the file is superseded.
  // Safe from any thread; every true must be matched by leave_write().
  bool enter_write() noexcept;
  void leave_write() noexcept;
  // What a user of a superseded file does next. `writer`: it wants to write
  // (it may then have to wait; a reader never waits); `waited_ms`: how long
  // it has waited so far (a switching phase that keeps writers waiting past
  // kMaxSwitchWaitMs is broken off). Clears the state of a compactor that
  // died before renaming (never from a read-only store).
  enum class Superseded { no, moved, wait };
  Superseded check_superseded(bool writer, std::uint64_t waited_ms);
  static constexpr std::uint64_t kMaxSwitchWaitMs = 30'000;
  // True in a child process that inherited this StoreImpl through fork():
  // it must not be used there, and is not detached (the parent's process
  // table entry stays the parent's).
  bool forked() const noexcept { return fork_gen_ != fork_generation(); }
  // True if Superblock::untracked_processes is 0, or every process it counts
  // is dead (nobody holds a shared lock on kUntrackedLockByte), in which case
  // it is reset to 0 (doc/INVARIANTS.md, 10).
  bool untracked_all_dead();

  // ===========================================================================
  // The compactor's door (lib/compact/; doc/INVARIANTS.md, 10).
  //
  // The compactor uses a StoreImpl only through these members and the public
  // ones above; they are defined in door.cc. Below, the *old* file is the
  // one being compacted (its users keep reading and writing it until the
  // switch) and the *new* file the compactor's target (opened with a
  // final_path; nobody but the compactor's threads uses it until the
  // rename). Unless a member says otherwise it is safe from any thread of
  // any process on either file: reads follow the seqlock protocol
  // (doc/INVARIANTS.md, 2) and writes the store's own CASes (1, 3, 4). None of
  // them checks superseded() or calls enter_write(): the compactor is the
  // one process that may touch a file while it is superseded.

  // --- Geometry and bookkeeping ---
  // The file's fixed geometry, copied out of the validated superblock.
  struct Geometry {
    std::uint64_t capacity_bytes;
    std::uint64_t bucket_count;
    std::uint64_t slots;  // bucket_count * kSlotsPerBucket: index slots
    std::uint64_t max_pages;
    std::uint64_t hash_seed;
    std::uint32_t page_bytes;
    std::uint32_t class_count;
  };
  Geometry geometry() const noexcept;
  // Pages carved so far (Superblock::next_page, at most max_pages).
  std::uint64_t pages_used() const noexcept;
  // Size classes that own at least one page.
  std::uint32_t classes_in_use() const noexcept;
  std::uint32_t class_size(std::uint32_t cls) const noexcept { return class_bytes_[cls]; }
  // The smallest class whose chunks hold `bytes` (header included).
  std::uint32_t class_holding(std::uint64_t bytes) const noexcept { return class_for(bytes); }
  // This attachment's count of evictions (the new file's, during a copy).
  std::uint64_t evictions() const noexcept;
  // Index slots in use (a walk of the whole index). REQUIRES: nobody
  // writes the file (the new file after the final pass).
  std::uint64_t published_slots() const noexcept;
  // Adds every counter of `old` (its totals and its attached processes')
  // to this file's totals, so that statistics carry on across a
  // compaction. REQUIRES: the old file's writers are drained.
  void add_counters_of(const StoreImpl& old) noexcept;

  // --- Reading the old file ---
  // A consistent copy of one entry, in its stored form (compressed or a
  // BlobRef, as the chunk holds it) with the chunk's header words.
  struct EntryCopy {
    std::uint64_t word = 0;     // its slot's word, without the reference bit
    std::uint32_t version = 0;  // the chunk's version when copied
    std::uint64_t h = 0;        // hash of its key
    std::uint64_t meta = 0;
    std::uint32_t vf = 0;  // vlen_flags
    std::uint32_t sum = 0;
    std::string key;
    std::string stored;
  };
  // Read a slot: the entry index slot `i` publishes. empty; entry (`r`
  // filled); damaged (a word or chunk that get() never follows, or that
  // does not fit its chunk); unstable (it changed while we read: again).
  enum class SlotRead { empty, entry, damaged, unstable };
  SlotRead read_slot(std::uint64_t i, EntryCopy& r) const;
  // The word index slot `i` holds now (acquire), without the reference bit.
  std::uint64_t slot_word(std::uint64_t i) const noexcept;
  // Read a chunk: the version of the chunk `word` points at now, or 0 if
  // it points at none (a damaged word).
  std::uint32_t chunk_version(std::uint64_t word) const noexcept;
  // The index's lookup: `key`'s first entry in its pair as get() finds it
  // (find_entry), copied into `r` in its stored form. Unlike probe() it
  // has no side effects (no expiry unlink, no checksum unlink, no
  // reference bit, no blob read, no decompression) and judges neither
  // expiry nor checksum: the caller decides what a copy keeps. entry (`r`
  // filled), absent, or unstable (a chunk or slot changed: again).
  enum class KeyRead { entry, absent, unstable };
  KeyRead find_copy(std::string_view key, std::uint64_t h, EntryCopy& r) const;
  // Adds to `out` every key (not already in it) of the pair of hash `h`
  // whose hash is `h`, retrying a chunk that changes while read up to
  // `retries` times (then skipping it).
  void keys_with_hash(std::uint64_t h, int retries, std::vector<std::string>& out) const;
  // Position of index slot `i` in the pair of hash `h` (below kPairPositions),
  // or -1 if it is in neither bucket (get() never looks there).
  int pair_position(std::uint64_t i, std::uint64_t h) const noexcept;
  // Whether a slot at a position in [begin, end) of the pair of hash `h`
  // holds that hash's tag (relaxed loads: a hint fixed by the final pass).
  bool pair_has_tag(std::uint64_t h, int begin, int end) const noexcept;
  static constexpr int kPairPositions = 2 * static_cast<int>(kSlotsPerBucket);
  // Prefetches (hints only, racy reads): up to `limit` bytes of the chunk
  // slot `i` points at; the pairs of the key slot `i` holds, here (to
  // read) and in `other` (to write).
  void prefetch_slot_chunk(std::uint64_t i, std::uint32_t limit) const noexcept;
  void prefetch_key_pairs(std::uint64_t i, const StoreImpl& other, std::string& scratch) const;
  // Maps (populates) the index, to be written, or the carved pages, to be
  // read, in a few calls rather than a fault per 4 KiB.
  void map_index() noexcept;
  void map_pages_for_read() noexcept;

  // --- Building the new file (REQUIRES for all: this is the new file) ---
  // Append a page: claims the next uncarved page for class `cls` (the page
  // table names it, the class counts it) and sets `page` and `first` (its
  // offset); with `map`, populates its mapping (a page the caller builds in
  // memory and writes with write_page() is not mapped). False if every page
  // is taken; throws no_space if the disk cannot hold the page. Its chunks
  // are the caller's, zero (never versioned) until it writes them, and
  // unreachable until it publishes them or gives them to free_chunks().
  bool append_page(std::uint32_t cls, bool map, std::uint64_t& page, std::uint64_t& first);
  // Writes the page at offset `first` from `bytes` (page_bytes) with
  // pwrite. Throws no_space (disk full) or io.
  void write_page(std::uint64_t first, const char* bytes) const;
  // Starts writing pages [begin, end) back to disk (no wait).
  void start_writeback_pages(std::uint64_t begin, std::uint64_t end) noexcept;
  // The free chunks [first, end) of class `cls` of a page from
  // append_page() go onto the class's free list.
  void free_chunks(std::uint32_t cls, std::uint64_t first, std::uint64_t end);
  // A chunk as every writer gets one (allocate()): pops, carves or evicts.
  std::uint64_t allocate_chunk(std::uint32_t cls) { return allocate(cls); }
  char* chunk_at(std::uint64_t off) const noexcept { return chunk(off); }
  // Import a chunk: writes entry `r` with `stored`, `vf` and `sum` (which
  // may differ from r's when its value moved to a blob file) into the
  // chunk at `at` (in the mapping, or in a page being built in memory) and
  // makes its version even (release). Returns that version. REQUIRES: the
  // caller owns the chunk (odd or zero version, unreachable).
  static std::uint32_t import_chunk(char* at, const EntryCopy& r, std::string_view stored,
                                    std::uint32_t vf, std::uint32_t sum) noexcept;
  // Publishes the chunk at `off` (of key hash `h`, version `version`):
  // in index slot `i`, which is empty and in the key's pair (release store:
  // same geometry, copy pass); or with publish_entry, wherever publish()
  // puts it, replacing the key's entry (true if it had one).
  void publish_in_slot(std::uint64_t i, std::uint64_t h, std::uint64_t off,
                       std::uint32_t version) noexcept;
  bool publish_entry(std::string_view key, std::uint64_t h, std::uint64_t off);
  // Unpublishes every entry of `key` (hash `h`); the winner retires each.
  void remove_key(std::string_view key, std::uint64_t h);
  // Blob files. make_blob_dir: checks (or creates) the blob directory,
  // once before the first link_blob. link_blob: gives the new file its own
  // name (a new id, set in `ref`) for the old file's blob file of `ref`,
  // making room within the capacity first; false if the old name is gone
  // (the entry was erased). drop_blob undoes it, or a store_blob
  // (write_blob()). They throw what the file system makes them (io).
  void make_blob_dir() { ensure_blob_dir(); }
  bool link_blob(const StoreImpl& old, std::uint64_t h, BlobRef& ref);
  void drop_blob(std::uint64_t h, const BlobRef& ref);
  BlobRef store_blob(std::uint64_t h, std::string_view stored) { return write_blob(h, stored); }
  // Removes the name of blob file `id` (key hash `h`) of this file.
  void unlink_blob_name(std::uint64_t h, std::uint64_t id) const;

  // --- The compaction protocol (the old file) ---
  // The compaction word (Superblock::compaction), for atom<> CASes.
  std::uint64_t* compaction_word() const noexcept { return &sb_->compaction; }
  // The process table, and this attachment's slot in it (-1: untracked).
  std::span<ProcessEntry> process_table() const noexcept { return {procs_, kMaxProcesses}; }
  int process_slot() const noexcept { return proc_slot_; }
  // Whether process entry `e` named the file as this attachment did (same
  // directory, same name: ProcessEntry::name_dir_device, ...).
  bool named_alike(const ProcessEntry& e) const noexcept;
  // The mapped file: its descriptor, identity and size.
  const Region& region() const noexcept { return region_; }
  // ===========================================================================

 private:
  // --- store_impl.h (inline, below the class) ---
  static constexpr int kPairSlots = 2 * static_cast<int>(kSlotsPerBucket);
  struct Slots {
    std::uint64_t* b[2];
    std::uint64_t& at(int i) const { return b[i >> 3][i & 7]; }
  };
  std::uint64_t hash(std::string_view key) const noexcept;
  Slots slots_for(std::uint64_t h) const noexcept;
  // Returns the chunk's class, or -1 if `off` is not inside a carved page
  // with room for a whole chunk of that class.
  int chunk_class(std::uint64_t off) const noexcept;
  char* chunk(std::uint64_t off) const noexcept { return base_ + off; }
  void count(Counter c, std::uint64_t n = 1) noexcept {
    atom<std::uint64_t>(&counters_[c]).fetch_add(n, std::memory_order_relaxed);
  }
  void log(const std::string& line) const;

  // --- slab.cc ---
  std::uint32_t class_for(std::uint64_t bytes) const noexcept;
  std::uint64_t pop_free(std::uint32_t cls);
  void push_chain(std::uint32_t cls, std::uint64_t first, std::uint64_t last);
  // Takes the next uncarved page (growing the file to cover it) for the
  // caller alone: claimed (`page` set), raced (another thread or process
  // took it; look again), or none (the file is full or cannot grow). On a
  // compaction target a file that cannot grow throws no_space instead.
  enum class Claim { claimed, raced, none };
  Claim claim_page(std::uint64_t& page);
  bool carve_page(std::uint32_t cls);
  // Makes the `n` chunks of `size` bytes from `first` free chunks (odd
  // versions), linked in order; returns the last one's offset. REQUIRES:
  // the caller owns them.
  std::uint64_t link_free_chunks(std::uint64_t first, std::uint32_t size, std::uint32_t n);
  // Threads a page we exclusively own into chunks of `cls` and publishes them.
  void carve_owned_page(std::uint64_t page, std::uint32_t cls);

  // --- blob.cc: blob files (values larger than a page); see doc/FORMAT.md ---
  std::string blob_path(std::uint64_t h, std::uint64_t id, bool tmp) const;
  // A new blob file's reference for `stored` (a random id, its size and
  // content hash).
  BlobRef new_blob_ref(std::uint64_t h, std::string_view stored) const;
  // Writes `stored` as blob file `ref` (a temporary name, then a rename)
  // and adds it to blob_bytes: 0, or the errno of a full disk (ENOSPC,
  // EDQUOT, EFBIG; nothing is left behind). Throws Error for other errors.
  int write_blob_file(std::uint64_t h, std::string_view stored, const BlobRef& ref,
                      std::uint32_t file_mode);
  bool read_blob(std::uint64_t h, const BlobRef& ref, std::string& out);
  // Unreferenced blob files older than this are debris of a dead writer.
  static constexpr std::uint64_t kOrphanBlobAgeMs = 60'000;
  // This file's blob files, oldest first (a directory scan; temporary files
  // older than kOrphanBlobAgeMs are deleted on the way).
  struct BlobFile {
    std::uint64_t age_ms, h, id;
  };
  std::vector<BlobFile> blob_files_oldest_first() const;
  // False while blob files this file does not know may be another file's
  // (a compaction in progress, or this is the compactor's new file).
  bool may_delete_unknown_blobs() const;
  std::uint32_t ensure_blob_dir();  // returns the mode for blob files
  // Deletes blob files no live chunk refers to; recounts blob_bytes.
  // REQUIRES: exclusive (recovery).
  void sweep_blobs(const std::vector<std::uint64_t>& live_ids, std::uint64_t live_bytes);
  // Frees what a chunk owns outside the file (its blob). REQUIRES: the
  // caller unpublished the chunk and has not yet bumped its version.
  void release_payload(std::uint64_t off);

  // --- index.cc ---
  // lease: the key's entry is a lease (out holds its LeaseRecord); a miss
  // for every reader but get_or_lease.
  enum class Probe { hit, miss, retry, lease };
  // Where probe() found the key: the slot and the word it held.
  struct Found {
    std::uint64_t* slot = nullptr;
    std::uint64_t word = 0;
    std::uint64_t expiry = 0;      // the entry's expiry, Unix ms (0 = never)
    std::uint32_t vlen_flags = 0;  // its chunk's vlen_flags word
  };
  // A consistent copy (seqlock read: doc/INVARIANTS.md, 2) of the first entry
  // of `key` in pair `s`, as get() finds it: the slot, the word it held,
  // and its chunk's header words; with kCopy, its stored bytes in *stored.
  // found; absent (no chunk of the pair holds the key); or retry (a chunk
  // or slot changed while looking).
  struct Entry {
    std::uint64_t* slot;
    std::uint64_t word;
    std::uint32_t version;
    std::uint64_t meta;
    std::uint32_t vlen_flags;
    std::uint32_t checksum;
  };
  enum class Find { found, absent, retry };
  template <bool kCopy>
  Find find_entry(std::string_view key, std::uint64_t h, const Slots& s, std::string* stored,
                  Entry& e) const;
  // find_entry, then what get() makes of the entry: expiry (unlinking an
  // expired one), checksum, lease, reference bit, blob, LZ4.
  template <bool kCopy>
  Probe probe(std::string_view key, std::uint64_t h, const Slots& s, std::string* out,
              Found* found);
  // 1 = the chunk `w` (read from `slot`) holds `key`, 0 = it does not and
  // the slot still holds `w`, -1 = something changed while looking.
  int chunk_has_key(const std::uint64_t& slot, std::uint64_t w,
                    std::string_view key) const noexcept;
  // Unpublishes `slot` if it still holds exactly `w`; the winner retires
  // the chunk (doc/INVARIANTS.md, 3).
  bool unlink(std::uint64_t& slot, std::uint64_t w);
  // unlink() of the incarnation `w` names, whatever its reference bit is
  // now: for every unlink decided from a chunk's content (a key, a lease).
  bool unlink_entry(std::uint64_t& slot, std::uint64_t w);
  // Unlinks whatever word in `slot` still points at chunk `off`, of any
  // incarnation (eviction of a page's entries).
  bool unlink_chunk(std::uint64_t& slot, std::uint64_t off);
  void retire(std::uint64_t off);
  // upsert: replace the key's entry or add one. if_absent: add one only if
  // the key has no live entry (an expired one is replaced).
  enum class Publish { upsert, if_absent };
  // `replaced` (upsert only): set to whether the key had an entry (replaced).
  bool publish(std::string_view key, std::uint64_t h, std::uint64_t off, Publish mode,
               bool* replaced = nullptr);
  int choose_victim(const Slots& s, int start, std::uint64_t* word, bool* expired);
  // After an if_absent publish into slot `mine`: if another slot holds the
  // key, unpublishes ours and returns true.
  bool withdraw_if_rival(std::string_view key, const Slots& s, int mine, std::uint64_t my_word);
  void dedupe(std::string_view key, const Slots& s, int mine, std::uint64_t my_word);
  // The slot that publishes chunk `off` (of a class of `size` bytes), found
  // through the chunk's own key (copied into `key`; its meta word into
  // `meta`), or nullptr if the chunk is free or no slot points at it now.
  std::uint64_t* slot_of_chunk(std::uint64_t off, std::uint32_t size, std::string& key,
                               std::uint64_t* meta);
  bool entry_expired(std::uint64_t w) const noexcept;
  static bool entry_live(std::uint64_t meta, std::uint32_t vf, std::uint64_t now) noexcept;

  // --- evict.cc ---
  // A chunk of class `cls` for the caller alone (odd version), its meta word
  // set to this process's owner mark (layout.h) until the caller writes the
  // entry's. Pops, carves a page, or evicts. Throws Error: no_space.
  std::uint64_t allocate(std::uint32_t cls);
  std::uint64_t take_chunk(std::uint32_t cls);  // allocate() without the mark
  std::uint64_t clock_evict(std::uint32_t cls);
  // In a full file, takes a page from the class with the most pages (after
  // unpublishing its entries) and gives it to `cls`. False if none could be
  // taken now.
  bool steal_page(std::uint32_t cls);
  // A blob file for `stored` (a value larger than a page), after evicting
  // the entries of the oldest blob files while the blob files would exceed
  // the capacity, and once more if the disk is full. Throws Error: no_space,
  // io.
  BlobRef write_blob(std::uint64_t h, std::string_view stored);
  void evict_blobs(std::uint64_t need);

  // --- write.cc ---
  // Writes a chunk for (key, stored) and publishes it. False (and the chunk
  // freed) if `mode` is if_absent and the key has a live entry.
  bool store_entry(std::string_view key, std::uint64_t h, std::string_view stored,
                   std::uint32_t flags, std::uint64_t expiry, Publish mode);

  // --- walk.cc ---
  // Calls fn(slot, word, key, meta, vlen_flags, now) for each published
  // entry, with a consistent copy of its key and header.
  template <class Fn>
  void for_each_entry(Fn&& fn);
  void fold_counters(ProcessEntry& e);

  // --- verify.cc ---
  // Chunks whose owner mark names a dead process (leaked: see layout.h),
  // counted, and with `reclaim` returned to their free lists (a CAS on the
  // mark each, so safe alongside other processes and other repairers).
  // O(carved chunks).
  std::uint64_t dead_owners_chunks(bool reclaim);
  // What is wrong with slot i holding w, or nullptr; copies its key.
  const char* slot_problem(std::uint64_t i, std::uint64_t w, std::string& key);

  // --- attach.cc ---
  void open_attach();
  // In the exclusive open: resets a compaction state and untracked count
  // that no live user of the file can own (doc/INVARIANTS.md, 10).
  void reset_compaction_alone();
  void attach_process();
  void detach_process() noexcept;
  // The shared (F_RDLCK) or exclusive (F_WRLCK) lock on kUntrackedLockByte,
  // or its release (F_UNLCK); `wait`: block until granted. False if not
  // granted (or OFD locks are unsupported).
  bool lock_untracked_byte(short type, bool wait) noexcept;
  void reclaim_dead_processes();

  Region region_;
  StoreOptions options_;
  char* base_ = nullptr;
  Superblock* sb_ = nullptr;
  ClassState* classes_ = nullptr;
  ProcessEntry* procs_ = nullptr;
  std::uint8_t* page_table_ = nullptr;
  std::uint64_t* index_ = nullptr;
  // Immutable geometry, copied out of the validated superblock.
  std::uint64_t bucket_count_ = 0;
  std::uint64_t pages_offset_ = 0;
  std::uint64_t max_pages_ = 0;
  std::uint64_t hash_seed_ = 0;
  std::uint32_t page_bytes_ = 0;
  int page_shift_ = 0;
  std::uint32_t class_count_ = 0;
  std::uint32_t class_bytes_[kMaxClasses] = {};
  std::uint64_t class_magic_[kMaxClasses] = {};  // divisibility test constants

  std::uint64_t* counters_ = nullptr;  // our ProcessEntry's, or local_counters_
  std::uint64_t local_counters_[8] = {};
  std::uint64_t* writes_ = nullptr;  // our ProcessEntry's `writes`, or local_writes_
  std::uint64_t local_writes_ = 0;
  bool untracked_ = false;         // counted in Superblock::untracked_processes
  bool untracked_locked_ = false;  // holds the shared lock on kUntrackedLockByte
  // fork_generation() at construction: see forked().
  std::uint64_t fork_gen_ = 0;
  pid_t attach_pid_ = 0;
  // How this process named the file (ProcessEntry::name_dir_device, ...).
  std::uint64_t name_dir_device_ = 0;
  std::uint64_t name_dir_inode_ = 0;
  std::uint64_t name_hash_ = 0;
  // A compactor's new file (constructed with a final_path): it keeps blob
  // files its index does not know yet, and a page or blob file the disk
  // cannot hold fails with no_space rather than evicting entries it has
  // already been given.
  bool compaction_target_ = false;
  int proc_slot_ = -1;
  std::uint64_t owner_mark_ = 0;  // owner_mark(our pid, start time): see allocate()
  std::atomic<std::uint64_t> grow_retry_after_ms_{0};
  std::filesystem::path blob_dir_;
  mutable std::mutex log_mutex_;
  mutable int logged_grow_errno_ = 0;
};

// Opens (or creates, per options) the file at `file`: Store::open without the
// handle. Throws what Store::open throws.
std::unique_ptr<StoreImpl> open_store_impl(const std::filesystem::path& file,
                                           const StoreOptions& options);

// Writes a new file's superblock and page table (Region::Initializer).
Region::Initializer superblock_writer(const Superblock& sb);

// What a tcache::Store owns: the path and options it was opened with, and
// every file it has used. files.back() is the current one (Store::impl_);
// the others were replaced by compactions and stay open until the Store is
// destroyed, because threads may still be reading them.
struct StoreHandle {
  std::filesystem::path path;
  StoreOptions options;
  std::mutex mutex;  // serialises moving to a new file (Store::follow)
  std::vector<std::unique_ptr<StoreImpl>> files;
};

// Hot: every lookup calls it, so it lives in the header to be inlined.
inline int StoreImpl::chunk_class(std::uint64_t off) const noexcept {
  if (off < pages_offset_) return -1;
  const std::uint64_t page = (off - pages_offset_) >> page_shift_;
  if (page >= atom<std::uint64_t>(&sb_->next_page).load(std::memory_order_acquire)) return -1;
  const std::uint32_t cls = atom<std::uint8_t>(&page_table_[page]).load(std::memory_order_acquire);
  if (cls >= class_count_) return -1;
  const std::uint64_t in_page = (off - pages_offset_) & (page_bytes_ - 1);
  // In the page, on a chunk boundary (Lemire's divisibility test: one
  // multiply instead of a division).
  if (in_page + class_bytes_[cls] > page_bytes_ ||
      in_page * class_magic_[cls] > class_magic_[cls] - 1) {
    return -1;
  }
  return static_cast<int>(cls);
}

// Hot: every lookup and every write hashes its key, in several rooms, so it
// lives here to be inlined (slots_for, in index.cc, is better called).
inline std::uint64_t StoreImpl::hash(std::string_view key) const noexcept {
  return XXH3_64bits_withSeed(key.data(), key.size(), hash_seed_);
}

inline std::size_t StoreImpl::max_value_bytes() const noexcept { return sb_->capacity_bytes; }

inline void StoreImpl::log(const std::string& line) const {
  if (!options_.logger) return;
  std::lock_guard<std::mutex> lock(log_mutex_);
  options_.logger("tcache: " + region_.path().string() + ": " + line);
}

}  // namespace tcache::detail
