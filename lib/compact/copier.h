// compact/copier.h: the copier, between the compaction protocol
// (protocol.cc: claim, drain, switch, rename) and the copy itself
// (copier.cc: copy pass; final_pass.cc: final pass). doc/INVARIANTS.md, 10.
//
// The protocol opens the old file, creates the new one, and calls, in
// order: copy() while users carry on (step 3), then, after the switch and
// the drain, copy_changes() (step 5); after its rename,
// remove_old_blob_names(). The copier touches both StoreImpls only through
// their door (store_impl.h, "The compactor's door").
//
// Thread safety: one Copier per compaction, used by the protocol's thread.
// copy() and copy_changes() run threads of their own (copy_threads()),
// each over a disjoint range of index slots: in the copy pass each thread
// is a Copier of its own (its own pages of the new file, its own lists),
// sharing only `seen_` (disjoint ranges) and atomic counters, and is
// joined before copy() returns.

#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "store/store_impl.h"
#include "tcache/compact.h"

namespace tcache::detail {

// Retries of a chunk read that raced a writer before the slot is left for
// the final pass (copy pass) or the compaction gives up (final pass, where
// only readers unlinking expired entries can race it).
inline constexpr int kCopyRetries = 16;
inline constexpr int kFinalRetries = 100'000;
inline constexpr std::uint64_t kProgressEvery = 1u << 16;

// Copies the live entries of `from` into `to`. REQUIRES: both files have
// the same hash seed; nobody but this Copier (and its threads) writes to
// `to`.
class Copier {
 public:
  Copier(StoreImpl& from, StoreImpl& to, const CompactOptions& options);

  // Step 3: every live entry of `from`, in index order, remembering what
  // each slot held (`seen_`). Users may write `from` meanwhile. Rethrows
  // the first error of any copying thread.
  void copy();
  // Step 5 (final_pass.cc): every key whose slots changed since copy() saw
  // them is made to hold in `to` what get() finds in `from`. REQUIRES: the
  // switch and the drain are done (only expiry unlinks change `from`).
  // Returns the number of keys copied again or removed.
  std::uint64_t copy_changes();
  // After the rename: unlinks the old file's blob file names the copy met
  // (the new file has its own links to the contents it kept).
  void remove_old_blob_names();

  // Entries left out as expired, unreachable or damaged.
  std::uint64_t dropped() const { return dropped_; }
  // Entries the new file had no room for (a capacity too small).
  std::uint64_t evicted() const { return no_room_ + to_.evictions() - evictions_at_start_; }

 private:
  using EntryCopy = StoreImpl::EntryCopy;
  using SlotRead = StoreImpl::SlotRead;

  // What the copy pass saw in each slot of `from` (S[i] in doc/INVARIANTS.md,
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

  // A copier of one range of the copy pass, sharing `seen`.
  Copier(StoreImpl& from, StoreImpl& to, const CompactOptions& options, Seen* seen);

  // Every live entry published in slots [begin, end), remembering what
  // each slot held; adds the slots done to `done`. Returns early when
  // `stop` is set. Only the Copier with `report` calls the progress
  // callback.
  void copy_range(std::uint64_t begin, std::uint64_t end, std::atomic<std::uint64_t>& done,
                  const std::atomic<bool>& stop, bool report);
  // Takes over what another Copier's copy_range() left for the final pass
  // and its counts.
  void absorb(Copier& other);
  // The hashes of the keys whose slots in [begin, end) changed since the
  // copy pass saw them, into `todo`; see copy_range() for the rest.
  void find_changes(std::uint64_t begin, std::uint64_t end, std::vector<std::uint64_t>& todo,
                    std::atomic<std::uint64_t>& done, const std::atomic<bool>& stop,
                    bool report) const;

  SlotRead read_slot_retrying(std::uint64_t i, EntryCopy& r, int retries) const;
  // Worth copying: unexpired, and where get() finds it (a value or a
  // lease; the checksum is not checked, see the definition).
  bool live(const EntryCopy& r, std::uint64_t now) const;
  // `key`'s entry in `from` as get() finds it, into `r`: true if it is
  // live (to be copied), false if the new file must not hold the key.
  bool resolve(const std::string& key, std::uint64_t h, EntryCopy& r);
  // Remembers the old file's blob file name of an entry, for
  // remove_old_blob_names().
  void note_blob(const EntryCopy& r);

  // A chunk of class `cls` in the new file: its offset, and where to write
  // its bytes. During the copy pass chunks are handed out in file order
  // from whole pages (nobody else uses the new file), which are built in
  // memory and written with pwrite when `buffered_` (see copy_range);
  // afterwards, and when every page of the new capacity is taken, from
  // the door's allocate_chunk. Throws no_space when the disk cannot hold
  // the next page (StoreImpl::compaction_target_).
  struct NewChunk {
    std::uint64_t off;
    char* at;
  };
  NewChunk new_chunk(std::uint32_t cls);
  // Ends the copy pass's page-at-a-time allocation: the rest of each page
  // becomes free chunks of its class.
  void finish_appending();

  // skipped: the blob file went meanwhile (the entry was erased); no_room:
  // the new file had no chunk for it (counted in evicted()).
  // damaged: its checksum failed where a new one would have been written.
  enum class Import { added, replaced, skipped, no_room, damaged };
  // Copies `r` into the new file and publishes it there: in index slot
  // `slot` of the new file (a copy-pass slot at the same position; the
  // slot is empty) or, with kAnySlot, wherever publish() puts it
  // (replacing the key's copy).
  static constexpr std::uint64_t kAnySlot = ~std::uint64_t{0};
  Import import(const EntryCopy& r, std::uint64_t slot);

  void progress(CompactPhase phase, std::uint64_t done, std::uint64_t total) const {
    if (options_.progress) options_.progress(CompactProgress{phase, done, total});
  }
  // At slot `i` of a range of a pass (`phase`): every kProgressEvery slots,
  // adds them to the pass's `done` (`counted`: the range's slots added so
  // far) and, for the range with `report`, calls the progress callback.
  // counted: it did; stop: it did and `stop` is set (end the range).
  enum class Tick { none, counted, stop };
  Tick tick(std::uint64_t i, std::uint64_t& counted, std::atomic<std::uint64_t>& done,
            const std::atomic<bool>& stop, bool report, CompactPhase phase) const {
    if (i - counted != kProgressEvery) return Tick::none;
    counted = i;
    const std::uint64_t sum = done.fetch_add(kProgressEvery) + kProgressEvery;
    if (report) progress(phase, sum, old_.slots);
    return stop.load(std::memory_order_relaxed) ? Tick::stop : Tick::counted;
  }

  StoreImpl& from_;
  StoreImpl& to_;
  const CompactOptions& options_;
  const StoreImpl::Geometry old_;  // from_'s geometry
  const StoreImpl::Geometry new_;  // to_'s geometry
  std::vector<Seen> seen_store_;   // the first Copier's: a Seen per slot of from_
  Seen* const seen_;
  // Hashes of keys whose copy was not clean (a second copy of a key, a blob
  // gone meanwhile): the final pass syncs them whatever their slots show.
  std::vector<std::uint64_t> queued_;
  // Slots whose entry the copy pass dropped as expired.
  std::vector<std::uint64_t> dropped_slots_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> old_blobs_;  // (key hash, id)
  // Page-at-a-time allocation in the new file during the copy pass.
  struct Cursor {
    std::uint64_t page = 0;         // the class's current page (its number)
    std::uint64_t first = 0;        // its offset
    std::uint64_t next = 0;         // its next free chunk
    std::uint64_t end = 0;          // the end of its last whole chunk
    std::unique_ptr<char[]> bytes;  // the page, when built in memory
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
  std::uint64_t evictions_at_start_ = to_.evictions();
};

// Threads for the copy pass and the final pass's scan: `wanted`, or with 0
// one per core up to 4; one for a small file (a thread costs more than it
// saves there).
unsigned copy_threads(unsigned wanted, std::uint64_t slots);

// Runs fn(t, begin, end, in_caller) for `threads` ranges of whole buckets
// that cover slots [0, slots): range 0, and any range whose thread could
// not be started, in the calling thread (in_caller), the others in threads
// of their own, joined before it returns. Sets `stop` when a range throws,
// and rethrows the first error.
void run_ranges(unsigned threads, std::uint64_t slots, std::atomic<bool>& stop,
                const std::function<void(unsigned, std::uint64_t, std::uint64_t, bool)>& fn);

}  // namespace tcache::detail
