// store/recovery.cc: reclaiming what crashed processes left behind.
//
// A process killed at any instant leaves the file consistent for readers
// (doc/INVARIANTS.md) but may leak: a chunk popped from a free list and never
// published, a chunk unpublished but not yet pushed back, a page claimed but
// not carved. recover() runs when the opener holds the exclusive flock (no
// other process has the file open) and rebuilds the allocator's state from
// the one thing that is always authoritative, the index:
//
//   1. every slot is checked (bounds, class, chunk alignment, even version,
//      key hash agrees with tag and bucket, checksum); bad ones are cleared;
//   2. a chunk reachable from two slots, or a key present twice in its
//      bucket pair, keeps only its first slot;
//   3. every chunk of every carved page that no slot reaches goes back on
//      its class's free list; pages claimed but never carved are given to
//      the class with the most pages;
//   4. blob files no live chunk refers to are deleted, blob_bytes recounted;
//   5. dead processes' counters fold into the totals, the table is emptied.
//
// It is O(index + file) and runs only after a crash. Steps 1 to 3 mark
// chunks in ChunkMarks windows (chunk_marks.h): a file of more than 2^27
// chunks takes one pass over the index per window instead of a bitmap of
// 1/64 of its size.

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "store/chunk_marks.h"
#include "store/store_impl.h"
#include "util/checksum.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

void StoreImpl::recover() {
  const std::uint64_t pages = std::min(atom<std::uint64_t>(&sb_->next_page).load(), max_pages_);
  const std::uint64_t now = now_unix_ms();

  // Give never-carved pages (a claimer died before writing the page table)
  // to the class that has the most pages.
  std::vector<std::uint64_t> pages_per_class(class_count_, 0);
  for (std::uint64_t p = 0; p < pages; ++p) {
    if (page_table_[p] < class_count_) ++pages_per_class[page_table_[p]];
  }
  const auto busiest = static_cast<std::uint8_t>(
      std::max_element(pages_per_class.begin(), pages_per_class.end()) - pages_per_class.begin());
  std::vector<bool> uncarved(pages, false);
  for (std::uint64_t p = 0; p < pages; ++p) {
    if (page_table_[p] >= class_count_) {
      page_table_[p] = busiest;
      uncarved[p] = true;
      ++pages_per_class[busiest];
    }
  }

  ChunkMarks live(pages_offset_, page_shift_,
                  [&](std::uint64_t p) { return class_bytes_[page_table_[p]]; });
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  std::string key;
  std::vector<std::uint64_t> blob_ids;
  std::uint64_t blob_bytes = 0;
  std::vector<std::uint64_t> heads(class_count_, 0);
  // At least one pass, which also clears the slots that point nowhere valid.
  for (std::uint64_t first = 0, end = 0;; first = end) {
    end = live.start(first, pages);
    // 1 and 2: validate the slots that point into this window (or nowhere
    // valid: cleared in the first pass), drop duplicates.
    for (std::uint64_t i = 0; i < slots; ++i) {
      const std::uint64_t w = index_[i];
      if (w == 0) continue;
      const std::uint64_t off = slot_offset(w);
      const int cls = chunk_class(off);
      if (cls >= 0 && !live.covers(off)) continue;  // another window's
      bool ok = cls >= 0 && !uncarved[(off - pages_offset_) >> page_shift_] &&
                slot_problem(i, w, key) == nullptr;
      if (ok) {
        const char* c = chunk(off);
        const std::uint64_t meta = atom<std::uint64_t>(c + kChunkMetaOffset).load();
        const std::uint32_t vf = atom<std::uint32_t>(c + kChunkVlenOffset).load();
        const bool fresh = meta_expiry(meta) == 0 || now < meta_expiry(meta);
        ok = fresh && !live.test(off);
        // Keep only the first slot (in pair order) holding this key.
        const Slots s = slots_for(hash(key));
        for (int j = 0; j < kPairSlots && ok && &s.at(j) != &index_[i]; ++j) {
          const std::uint64_t o = s.at(j);
          if (o != 0 && slot_tag(o) == slot_tag(w) && chunk_has_key(s.at(j), o, key) == 1) {
            ok = false;
          }
        }
        if (ok) {
          live.set(off);
          if ((vf & kFlagBlob) != 0 && (vf & kValueLenMask) == sizeof(BlobRef)) {
            BlobRef ref;
            std::memcpy(&ref, c + kChunkHeaderBytes + meta_key_len(meta), sizeof ref);
            blob_ids.push_back(ref.id);
            blob_bytes += ref.size;
          }
        }
      }
      if (!ok) index_[i] = 0;
    }

    // 3: rebuild every class's free list from the chunks nothing reaches.
    for (std::uint64_t p = first; p < end; ++p) {
      const std::uint32_t cls = page_table_[p];
      const std::uint32_t size = class_bytes_[cls];
      const std::uint64_t page_start = pages_offset_ + p * page_bytes_;
      for (std::uint64_t off = page_start; off + size <= page_start + page_bytes_; off += size) {
        if (live.test(off)) continue;
        char* c = chunk(off);
        auto version = atom<std::uint32_t>(c);
        if ((version.load() & 1) == 0) version.fetch_add(1);
        atom<std::uint64_t>(c + kChunkMetaOffset).store(heads[cls] / kChunkAlign);
        heads[cls] = off;
      }
    }
    if (end >= pages) break;
  }
  for (std::uint32_t cls = 0; cls < kMaxClasses; ++cls) {
    // Exclusive: nobody else changes the head; plain atomic stores suffice.
    atom<std::uint64_t>(&classes_[cls].free_aba).fetch_add(1);
    atom<std::uint64_t>(&classes_[cls].free_head)
        .store(head_link(cls < class_count_ ? heads[cls] : 0));
    atom<std::uint64_t>(&classes_[cls].clock_hand).store(0);
    atom<std::uint64_t>(&classes_[cls].pages).store(cls < class_count_ ? pages_per_class[cls] : 0);
  }

  sweep_blobs(blob_ids, blob_bytes);

  // 5: fold the dead processes' counters and empty the table.
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    fold_counters(procs_[i]);
    atom<std::uint64_t>(&procs_[i].writes).store(0);
    atom<std::uint64_t>(&procs_[i].start_time).store(0);
    atom<std::uint64_t>(&procs_[i].owner).store(0);
  }
  // Counted before the flag is cleared: a recovery killed in between is
  // simply run again by the next opener.
  atom<std::uint64_t>(&sb_->recoveries).fetch_add(1);
  atom<std::uint64_t>(&sb_->needs_recovery).store(0);
  atom<std::uint64_t>(&sb_->generation).fetch_add(1);
  log("reclaimed what exited processes left behind");
}

}  // namespace tcache::detail
