// store/slab.cc: the slab allocator's lowest layer. Size classes, the
// classes' free lists (one 16-byte CAS on a (first chunk, ABA tag) head:
// the primitives are in slab.h), claiming the next uncarved page (growing
// the file to cover it) and carving a page into a class's chunks. Nothing
// here reads the index or evicts: making room when a class is empty is
// evict.cc's job.
//
// Layer 1 (store_impl.h, "Rooms"): calls nothing above it. Every function is
// safe from any thread of any process (doc/INVARIANTS.md, 4 and 7), except
// link_free_chunks and carve_owned_page, whose chunks the caller owns.

#include <cstring>
#include <mutex>
#include <string>

#include "store/slab.h"
#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

namespace {

constexpr std::uint64_t kGrowRetryMs = 1000;

}  // namespace

std::uint32_t StoreImpl::class_for(std::uint64_t bytes) const noexcept {
  return slab::class_for(class_bytes_, class_count_, bytes);
}

std::uint64_t StoreImpl::pop_free(std::uint32_t cls) {
  std::uint64_t off = 0;
  const auto is_class = [this, cls](std::uint64_t o) {
    return chunk_class(o) == static_cast<int>(cls);
  };
  switch (slab::pop_free(&classes_[cls].free_head, base_, is_class, &off)) {
    case slab::Pop::popped:
      return off;
    case slab::Pop::empty:
      return 0;
    case slab::Pop::damaged:
      break;
  }
  atom<std::uint64_t>(&sb_->needs_recovery).store(1);
  log("free list of size class " + std::to_string(cls) + " was damaged; dropped it");
  return 0;
}

void StoreImpl::push_chain(std::uint32_t cls, std::uint64_t first, std::uint64_t last) {
  slab::push_chain(&classes_[cls].free_head, base_, first, last);
}

StoreImpl::Claim StoreImpl::claim_page(std::uint64_t& page) {
  auto next_page = atom<std::uint64_t>(&sb_->next_page);
  const std::uint64_t np = next_page.load(std::memory_order_acquire);
  if (np >= max_pages_) return Claim::none;
  const std::uint64_t need = pages_offset_ + (np + 1) * page_bytes_;
  auto file_bytes = atom<std::uint64_t>(&sb_->file_bytes);
  std::uint64_t have = file_bytes.load(std::memory_order_acquire);
  if (have < need) {
    const std::uint64_t now = now_unix_ms();
    if (now < grow_retry_after_ms_.load(std::memory_order_relaxed) && !compaction_target_) {
      return Claim::none;
    }
    // Grow by exactly the page: one fallocate per page carved is cheap next
    // to filling the page, and the file never holds space it does not use.
    const std::uint64_t target = need;
    const int err = region_.grow(target);
    if (err != 0) {
      count(kGrowFailures);
      if (compaction_target_) {
        fail(Errc::no_space, "cannot grow the compacted copy '" + region_.path().string() +
                                 "' to " + std::to_string(target) + " bytes (" +
                                 std::strerror(err) +
                                 "); the cache file is unchanged: free disk space (a compaction "
                                 "needs room for a second copy of the live entries), then "
                                 "compact again");
      }
      grow_retry_after_ms_.store(now + kGrowRetryMs, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(log_mutex_);
      if (logged_grow_errno_ != err && options_.logger) {
        logged_grow_errno_ = err;
        options_.logger("tcache: " + region_.path().string() + ": cannot grow the file to " +
                        std::to_string(target) + " bytes (" + std::strerror(err) +
                        "); evicting instead. Free disk space or lower capacity_bytes");
      }
      return Claim::none;
    }
    while (have < target &&
           !file_bytes.compare_exchange_weak(have, target, std::memory_order_acq_rel)) {
    }
  }
  std::uint64_t expected = np;
  if (!next_page.compare_exchange_strong(expected, np + 1, std::memory_order_acq_rel)) {
    return Claim::raced;
  }
  page = np;
  return Claim::claimed;
}

bool StoreImpl::carve_page(std::uint32_t cls) {
  std::uint64_t page = 0;
  switch (claim_page(page)) {
    case Claim::none:
      return false;
    case Claim::raced:
      return true;  // someone else carved a page; look at the free list again
    case Claim::claimed:
      break;
  }
  carve_owned_page(page, cls);
  return true;
}

std::uint64_t StoreImpl::link_free_chunks(std::uint64_t first, std::uint32_t size,
                                          std::uint32_t n) {
  return slab::link_free_chunks(base_, first, size, n);
}

void StoreImpl::carve_owned_page(std::uint64_t page, std::uint32_t cls) {
  // Map the page in one call rather than one fault per 4 KiB
  // (MADV_POPULATE_WRITE, Linux 5.14; older kernels fault as usual), then
  // thread its chunks into a chain and publish the chain.
  const std::uint64_t first = pages_offset_ + page * page_bytes_;
  region_.populate(first, page_bytes_);
  const std::uint32_t size = class_bytes_[cls];
  const std::uint64_t last = link_free_chunks(first, size, page_bytes_ / size);
  atom<std::uint8_t>(&page_table_[page])
      .store(static_cast<std::uint8_t>(cls), std::memory_order_release);
  atom<std::uint64_t>(&classes_[cls].pages).fetch_add(1, std::memory_order_relaxed);
  push_chain(cls, first, last);
}

}  // namespace tcache::detail
