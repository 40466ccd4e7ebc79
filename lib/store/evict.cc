// store/evict.cc: making room. allocate() hands a writer a chunk of its
// class: from the free list, from a newly carved page, by CLOCK over the
// class's chunks, by moving a page from the class with the most pages, or
// by borrowing a chunk of a larger class.
//
// write_blob() makes room for a value larger than a page the same way
// within the blob files' budget (the capacity): the oldest blob files'
// entries are evicted first.
//
// Layer 4 (store_impl.h, "Rooms"): calls the slab (pop_free, carve_page,
// carve_owned_page, push_chain), the index (slot_of_chunk, unlink_chunk,
// unlink) and blob files (release_payload, new_blob_ref, write_blob_file,
// blob_files_oldest_first). Safe from any thread of any process
// (doc/INVARIANTS.md, 3-5).

#include <algorithm>
#include <cstring>
#include <string>

#include "store/slab.h"
#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

// An owner mark (layout.h) is never a key length.
static_assert(Store::kMaxKeyBytes < kOwnerMarkKeyLen);

std::uint64_t StoreImpl::allocate(std::uint32_t cls) {
  const std::uint64_t off = take_chunk(cls);
  // Same cache line as the header the caller writes next: one more store.
  atom<std::uint64_t>(chunk(off) + kChunkMetaOffset).store(owner_mark_, std::memory_order_relaxed);
  return off;
}

std::uint64_t StoreImpl::take_chunk(std::uint32_t cls) {
  for (int round = 0; round < 8; ++round) {
    if (const std::uint64_t off = pop_free(cls); off != 0) return off;
    if (carve_page(cls)) continue;
    // A full file: a class that owns no page takes one from the largest
    // class (evicting that page's entries) rather than borrow oversized
    // chunks for ever.
    if (atom<std::uint64_t>(&classes_[cls].pages).load(std::memory_order_relaxed) == 0) {
      if (steal_page(cls)) continue;
      break;
    }
    if (const std::uint64_t off = clock_evict(cls); off != 0) return off;
  }
  // Nothing evictable in this class right now (or no page could be taken):
  // borrow a chunk from the next larger class that has pages. It wastes the
  // difference but keeps the put working.
  for (std::uint32_t c = cls + 1; c < class_count_; ++c) {
    if (atom<std::uint64_t>(&classes_[c].pages).load(std::memory_order_relaxed) == 0) continue;
    if (const std::uint64_t off = pop_free(c); off != 0) return off;
    if (const std::uint64_t off = clock_evict(c); off != 0) return off;
  }
  const bool full = atom<std::uint64_t>(&sb_->next_page).load() >= max_pages_;
  fail(Errc::no_space,
       "no room for a " + std::to_string(class_bytes_[cls]) + "-byte chunk in '" +
           region_.path().string() + "': " +
           (full ? "every page of the full file belongs to smaller size classes; raise "
                   "capacity_bytes or recreate the file"
                 : "the file cannot grow (disk full?); free disk space"));
}

std::uint64_t StoreImpl::clock_evict(std::uint32_t cls) {
  const std::uint64_t pages = atom<std::uint64_t>(&sb_->next_page).load(std::memory_order_acquire);
  const std::uint32_t size = class_bytes_[cls];
  const std::uint64_t per_page = page_bytes_ / size;
  const std::uint64_t total = pages * per_page;
  if (total == 0) return 0;
  auto hand = atom<std::uint64_t>(&classes_[cls].clock_hand);
  std::string key;
  // Two sweeps over the class clear every reference bit and then find a
  // victim, unless other threads keep setting them.
  const std::uint64_t budget = 2 * total + 2 * per_page;
  for (std::uint64_t step = 0; step < budget; ++step) {
    const std::uint64_t pos = hand.fetch_add(1, std::memory_order_relaxed) % total;
    const std::uint64_t page = pos / per_page;
    if (atom<std::uint8_t>(&page_table_[page]).load(std::memory_order_acquire) != cls) {
      // Skip the rest of a page of another class.
      const std::uint64_t skip = per_page - 1 - pos % per_page;
      hand.fetch_add(skip, std::memory_order_relaxed);
      step += skip;
      continue;
    }
    const std::uint64_t off = pages_offset_ + page * page_bytes_ + (pos % per_page) * size;
    std::uint64_t meta = 0;
    std::uint64_t* const found = slot_of_chunk(off, size, key, &meta);
    if (found == nullptr) continue;  // free, being written, or moving
    std::uint64_t& slot = *found;
    std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
    if (w == 0 || slot_offset(w) != off) continue;
    if ((w & kRefBit) != 0) {  // a second chance
      atom<std::uint64_t>(&slot).compare_exchange_strong(w, w & ~kRefBit,
                                                         std::memory_order_relaxed);
      continue;
    }
    if (atom<std::uint64_t>(&slot).compare_exchange_strong(w, 0, std::memory_order_acq_rel)) {
      // Unpublished by us: the chunk is ours to reuse (not to free).
      release_payload(off);
      atom<std::uint32_t>(chunk(off)).fetch_add(1, std::memory_order_acq_rel);
      const std::uint64_t expiry = meta_expiry(meta);
      count(expiry != 0 && now_unix_ms() >= expiry ? kExpirations : kEvictions);
      return off;
    }
  }
  return 0;
}

bool StoreImpl::steal_page(std::uint32_t cls) {
  // Victim: the class with the most pages, if it can spare one.
  std::uint32_t victim = 0;
  std::uint64_t most = 0;
  for (std::uint32_t c = 0; c < class_count_; ++c) {
    const std::uint64_t n = atom<std::uint64_t>(&classes_[c].pages).load(std::memory_order_relaxed);
    if (c != cls && n > most) {
      most = n;
      victim = c;
    }
  }
  if (most < 2) return false;
  const std::uint64_t pages = atom<std::uint64_t>(&sb_->next_page).load(std::memory_order_acquire);
  const std::uint64_t start = atom<std::uint64_t>(&classes_[victim].clock_hand).load() /
                              std::max<std::uint64_t>(1, page_bytes_ / class_bytes_[victim]);
  const std::uint32_t size = class_bytes_[victim];
  const std::uint64_t per_page = page_bytes_ / size;
  std::string key;
  for (std::uint64_t k = 0; k < pages; ++k) {
    const std::uint64_t page = (start + k) % pages;
    if (atom<std::uint8_t>(&page_table_[page]).load(std::memory_order_acquire) != victim) continue;
    const std::uint64_t first = pages_offset_ + page * page_bytes_;
    // 0. Decide before evicting: a chunk that a writer has taken (odd, with
    //    its owner mark: in flight, or leaked by a killed writer until
    //    repair() reclaims it) keeps the page where it is, so its entries
    //    stay and the next page is tried. Without this, a page holding a
    //    leaked chunk lost all its entries on every put that got here.
    bool taken = false;
    for (std::uint64_t i = 0; i < per_page && !taken; ++i) {
      const char* c = chunk(first + i * size);
      taken =
          (atom<std::uint32_t>(c).load(std::memory_order_acquire) & 1) != 0 &&
          is_owner_mark(atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed));
    }
    if (taken) continue;
    // 1. Unpublish every entry of the page; retiring puts each chunk back
    //    on the victim's free list.
    for (std::uint64_t i = 0; i < per_page; ++i) {
      const std::uint64_t off = first + i * size;
      std::uint64_t meta = 0;
      if (std::uint64_t* slot = slot_of_chunk(off, size, key, &meta);
          slot != nullptr && unlink_chunk(*slot, off)) {
        count(kEvictions);
      }
    }
    // 2. Take the victim's whole free list. Chunks on it are free: nobody
    //    owns them, nothing points at them, and with the list detached
    //    nobody can pop them (a pop that read the old head fails its CAS).
    std::uint64_t off = slab::take_all(&classes_[victim].free_head);
    // Split it into the page's chunks and the rest, each kept in order.
    struct Chain {
      std::uint64_t first = 0, last = 0, length = 0;
    } page_chunks, rest;
    const auto append = [this](Chain& chain, std::uint64_t off) {
      atom<std::uint64_t>(chunk(off) + kChunkMetaOffset).store(0, std::memory_order_relaxed);
      if (chain.length++ == 0) {
        chain.first = off;
      } else {
        atom<std::uint64_t>(chunk(chain.last) + kChunkMetaOffset)
            .store(off / kChunkAlign, std::memory_order_relaxed);
      }
      chain.last = off;
    };
    const std::uint64_t limit = pages * per_page + 1;  // a damaged list may loop
    for (std::uint64_t n = 0; off != 0 && n < limit; ++n) {
      if (chunk_class(off) != static_cast<int>(victim)) {
        atom<std::uint64_t>(&sb_->needs_recovery).store(1);  // damaged: drop the rest
        break;
      }
      const std::uint64_t next =
          (atom<std::uint64_t>(chunk(off) + kChunkMetaOffset).load() & kAddrMask) * kChunkAlign;
      append(off >= first && off < first + page_bytes_ ? page_chunks : rest, off);
      off = next;
    }
    if (rest.length != 0) push_chain(victim, rest.first, rest.last);
    if (page_chunks.length != per_page) {
      // Some chunk of the page is owned by a writer about to publish it:
      // give the page's free chunks back and let the caller borrow instead.
      if (page_chunks.length != 0) push_chain(victim, page_chunks.first, page_chunks.last);
      return false;
    }
    // 3. The page is ours: give it to `cls`.
    atom<std::uint64_t>(&classes_[victim].pages).fetch_sub(1, std::memory_order_relaxed);
    carve_owned_page(page, cls);
    return true;
  }
  return false;
}

BlobRef StoreImpl::write_blob(std::uint64_t h, std::string_view stored) {
  const std::uint32_t file_mode = ensure_blob_dir();
  const std::uint64_t budget = sb_->capacity_bytes;
  if (atom<std::uint64_t>(&sb_->blob_bytes).load() + stored.size() > budget) {
    evict_blobs(stored.size());
  }
  const BlobRef ref = new_blob_ref(h, stored);
  for (int attempt = 0;; ++attempt) {
    const int err = write_blob_file(h, stored, ref, file_mode);
    if (err == 0) return ref;
    if (attempt == 0 && !compaction_target_) {  // a full disk: make room once
      count(kGrowFailures);
      evict_blobs(stored.size());
      continue;
    }
    fail(Errc::no_space, "no disk space for a " + std::to_string(stored.size()) +
                             "-byte blob in '" + blob_dir_.string() + "' (" + std::strerror(err) +
                             "); free disk space");
  }
}

void StoreImpl::evict_blobs(std::uint64_t need) {
  const std::uint64_t budget = sb_->capacity_bytes;
  for (const BlobFile& f : blob_files_oldest_first()) {
    if (atom<std::uint64_t>(&sb_->blob_bytes).load() + need <= budget) return;
    const Slots s = slots_for(f.h);
    bool referenced = false;
    for (int i = 0; i < kPairSlots && !referenced; ++i) {
      const std::uint64_t w = atom<std::uint64_t>(&s.at(i)).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(f.h)) continue;
      const std::uint64_t off = slot_offset(w);
      const int cls = chunk_class(off);
      if (cls < 0) continue;
      const char* c = chunk(off);
      const std::uint32_t vf =
          atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
      const std::uint32_t klen =
          meta_key_len(atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed));
      if ((vf & kFlagBlob) == 0 || kChunkHeaderBytes + klen + sizeof(BlobRef) > class_bytes_[cls])
        continue;
      BlobRef ref;
      racy_read(&ref, c + kChunkHeaderBytes + klen, sizeof ref);
      if (ref.id != f.id) continue;
      referenced = true;
      if (unlink(s.at(i), w)) count(kEvictions);
    }
    if (!referenced && f.age_ms > kOrphanBlobAgeMs && may_delete_unknown_blobs()) {
      // Debris of a writer that died between writing and publishing.
      ::unlink(blob_path(f.h, f.id, false).c_str());
    }
  }
}

}  // namespace tcache::detail
