// compact/copier.cc: the copy pass of a compaction (step 3 of protocol.cc's
// outline; doc/INVARIANTS.md, 10): every live entry of the old file into the
// new one while users carry on, remembering what each slot held for the
// final pass (final_pass.cc).
//
// In index order (in one or more threads, by ranges of slots): for every
// slot, copy the entry it publishes (key, stored value as it is:
// compressed or not, expiry, checksum) if it is live -- to the same slot
// of the new index when both have the same geometry -- and remember the
// chunk, its version and the key's hash. New pages are built in memory
// and written with pwrite.
//
// Thread safety: see copier.h.

#include "compact/copier.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <system_error>
#include <thread>

#include "util/fail.h"
#include "util/proc.h"

namespace tcache::detail {

namespace {

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

}  // namespace

unsigned copy_threads(unsigned wanted, std::uint64_t slots) {
  if (wanted == 0) {
    wanted = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
    if (slots < (1u << 18)) wanted = 1;
  }
  return std::clamp<unsigned>(wanted, 1, 64);
}

void run_ranges(unsigned threads, std::uint64_t slots, std::atomic<bool>& stop,
                const std::function<void(unsigned, std::uint64_t, std::uint64_t, bool)>& fn) {
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

Copier::Copier(StoreImpl& from, StoreImpl& to, const CompactOptions& options)
    : Copier(from, to, options, nullptr) {}

Copier::Copier(StoreImpl& from, StoreImpl& to, const CompactOptions& options, Seen* seen)
    : from_(from),
      to_(to),
      options_(options),
      old_(from.geometry()),
      new_(to.geometry()),
      seen_(seen != nullptr ? seen
                            : (zeroed_in_huge_pages(seen_store_, old_.slots), seen_store_.data())) {
}

Copier::SlotRead Copier::read_slot_retrying(std::uint64_t i, EntryCopy& r, int retries) const {
  SlotRead st = SlotRead::unstable;
  for (int attempt = 0; attempt < retries && st == SlotRead::unstable; ++attempt) {
    if (attempt >= kCopyRetries) std::this_thread::yield();
    st = from_.read_slot(i, r);
  }
  return st;
}

bool Copier::live(const EntryCopy& r, std::uint64_t now) const {
  // A lease (single flight) is copied too, so that its waiters go on
  // waiting for its holder's value in the new file; its expiry is its
  // deadline. The checksum is not checked here: a chunk is copied with its
  // checksum, so one that fails it (a miss) fails it in the new file too;
  // import() checks it before it writes a new one.
  if (slot_tag(r.word) != hash_tag(r.h)) return false;  // readers would never find it
  const std::uint64_t expiry = meta_expiry(r.meta);
  return expiry == 0 || now < expiry;
}

void Copier::note_blob(const EntryCopy& r) {
  if ((r.vf & kFlagBlob) == 0 || r.stored.size() != sizeof(BlobRef)) return;
  BlobRef ref;
  std::memcpy(&ref, r.stored.data(), sizeof ref);
  old_blobs_.emplace_back(r.h, ref.id);
}

void Copier::remove_old_blob_names() {
  // The names the compaction met; any other (an entry it never saw) is an
  // orphan for the new file's orphan sweep. A read of the old file that was
  // under way at the rename may then miss such a blob: Store::get asks the
  // new file again after a miss from a replaced file.
  for (const auto& [h, id] : old_blobs_) from_.unlink_blob_name(h, id);
}

Copier::Import Copier::import(const EntryCopy& r, std::uint64_t slot) {
  std::string_view stored = r.stored;
  std::uint32_t vf = r.vf;
  std::uint32_t sum = r.sum;
  BlobRef ref{};
  bool new_blob = false;
  const bool too_big = kChunkHeaderBytes + r.key.size() + stored.size() > new_.page_bytes;
  if (((vf & kFlagBlob) != 0 || too_big) &&
      (value_checksum(stored.data(), stored.size(), r.h, r.meta, vf) != sum ||
       ((vf & kFlagBlob) != 0 && stored.size() != sizeof(BlobRef)))) {
    return Import::damaged;  // a miss in the old file: not made whole by a new checksum
  }
  if ((vf & kFlagBlob) != 0) {
    std::memcpy(&ref, stored.data(), sizeof ref);
    if (!blob_dir_ready_) {
      to_.make_blob_dir();
      blob_dir_ready_ = true;
    }
    if (!to_.link_blob(from_, r.h, ref)) return Import::skipped;  // erased meanwhile
    new_blob = true;
  } else if (too_big) {
    // Smaller pages in the new file: the value moves to a blob file.
    ref = to_.store_blob(r.h, stored);
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
    fresh = new_chunk(to_.class_holding(need));
  } catch (const Error& e) {
    if (new_blob) to_.drop_blob(r.h, ref);
    // A new capacity too small for what the file holds: the entry is left
    // out (counted as evicted). Below the capacity, no_space means the
    // disk cannot hold the new file: the compaction fails.
    if (e.code() != Errc::no_space || to_.pages_used() < new_.max_pages) throw;
    ++no_room_;
    return Import::no_room;
  }
  const std::uint32_t version = StoreImpl::import_chunk(fresh.at, r, stored, vf, sum);
  if (slot != kAnySlot) {
    to_.publish_in_slot(slot, r.h, fresh.off, version);
    return Import::added;
  }
  return to_.publish_entry(r.key, r.h, fresh.off) ? Import::replaced : Import::added;
}

Copier::NewChunk Copier::new_chunk(std::uint32_t cls) {
  if (!appending_) {
    const std::uint64_t off = to_.allocate_chunk(cls);
    return NewChunk{off, to_.chunk_at(off)};
  }
  Cursor& cursor = cursors_[cls];
  const std::uint32_t size = to_.class_size(cls);
  const std::uint64_t page_bytes = new_.page_bytes;
  if (cursor.next + size > cursor.end) {
    if (cursor.bytes != nullptr) to_.write_page(cursor.first, cursor.bytes.get());
    // A page built in memory and written with pwrite costs the kernel a
    // copy; one written through the mapping also costs it a read of the
    // new (unwritten) page and a zero fill. Pages of up to 64 MiB of
    // classes at a time are built in memory.
    constexpr std::uint64_t kBufferBudget = 64u << 20;
    const bool in_memory =
        cursor.bytes != nullptr ||
        (buffered_ && (buffered_bytes_ == 0 || buffered_bytes_ + page_bytes <= kBufferBudget));
    std::uint64_t page = 0;
    std::uint64_t first = 0;
    if (!to_.append_page(cls, !in_memory, page, first)) {
      // Every page of the new capacity is taken (a disk that cannot hold
      // the next page throws no_space in append_page): allocate as every
      // writer does, which may evict, and so reads every page: write the
      // ones built in memory first.
      cursor = Cursor{};
      for (Cursor& c : cursors_) {
        if (c.bytes == nullptr) continue;
        to_.write_page(c.first, c.bytes.get());
        c.bytes.reset();
      }
      buffered_ = false;
      const std::uint64_t off = to_.allocate_chunk(cls);
      return NewChunk{off, to_.chunk_at(off)};
    }
    cursor.page = page;
    cursor.first = first;
    cursor.next = first;
    cursor.end = first + page_bytes / size * size;
    if (in_memory && cursor.bytes == nullptr) {
      cursor.bytes = std::make_unique<char[]>(page_bytes);
      buffered_bytes_ += page_bytes;
    }
    if (cursor.bytes != nullptr) std::memset(cursor.bytes.get(), 0, page_bytes);
    if (options_.sync) {
      // Start writing finished pages to disk now, so that the flush at the
      // end has little left: the pages below every class's current page.
      std::uint64_t open = page;
      for (const Cursor& c : cursors_) {
        if (c.end != 0) open = std::min(open, c.page);
      }
      constexpr std::uint64_t kWritebackBytes = 32u << 20;
      if ((open - writeback_page_) * page_bytes >= kWritebackBytes) {
        to_.start_writeback_pages(writeback_page_, open);
        writeback_page_ = open;
      }
    }
  }
  const std::uint64_t off = cursor.next;
  cursor.next += size;
  char* at =
      cursor.bytes != nullptr ? cursor.bytes.get() + (off - cursor.first) : to_.chunk_at(off);
  return NewChunk{off, at};
}

void Copier::finish_appending() {
  appending_ = false;
  for (std::uint32_t cls = 0; cls < cursors_.size(); ++cls) {
    Cursor& cursor = cursors_[cls];
    if (cursor.bytes != nullptr) to_.write_page(cursor.first, cursor.bytes.get());
    if (cursor.end != 0) to_.free_chunks(cls, cursor.next, cursor.end);
  }
  cursors_.clear();
  buffered_bytes_ = 0;
}

void Copier::copy_range(std::uint64_t begin, std::uint64_t end, std::atomic<std::uint64_t>& done,
                        const std::atomic<bool>& stop, bool report) {
  const bool same_index = new_.bucket_count == old_.bucket_count;
  cursors_.clear();
  cursors_.resize(new_.class_count);
  appending_ = true;
  // Pages are built in memory unless publish() must read the new file's
  // chunks (a key's first copy in another pair of slots).
  buffered_ = same_index;
  constexpr std::uint64_t kChunkAhead = 24;  // slots
  constexpr std::uint64_t kPairAhead = 8;    // slots; the chunk is in cache by then
  std::string key;
  EntryCopy r;
  std::uint64_t now = now_unix_ms();
  std::uint64_t counted = begin;  // slots added to `done`
  for (std::uint64_t i = begin; i < end; ++i) {
    const Tick ticked = tick(i, counted, done, stop, report, CompactPhase::copying);
    if (ticked == Tick::stop) return;
    if (ticked == Tick::counted) now = now_unix_ms();
    // The header, key and the start of the value; the hardware prefetcher
    // follows a longer value.
    if (i + kChunkAhead < end) from_.prefetch_slot_chunk(i + kChunkAhead, 8 * kCacheLine);
    if (!same_index && i + kPairAhead < end) from_.prefetch_key_pairs(i + kPairAhead, to_, key);
    // Unstable: the slot changed while we looked, and shows that in the
    // final pass (seen_[i] stays empty). Damaged: get() skips it too.
    if (read_slot_retrying(i, r, kCopyRetries) != SlotRead::entry) continue;
    seen_[i] = Seen{seen_chunk(r.word, r.version), r.h};
    note_blob(r);
    const int pos = from_.pair_position(i, r.h);
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
    if (!same_index && from_.pair_has_tag(r.h, 0, pos)) {
      queued_.push_back(r.h);
      continue;
    }
    switch (import(r, same_index ? i : kAnySlot)) {
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

void Copier::copy() {
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
  to_.map_index();
  from_.map_pages_for_read();
  const std::uint64_t slots = old_.slots;
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> stop{false};
  unsigned threads = copy_threads(options_.threads, slots);
  if (threads > 1) {
    // Each thread fills pages of its own, so each may leave a page of each
    // size class partly used: up to (threads - 1) pages per class more
    // than one thread would. Never so many that the new file could run out
    // of pages (and evict); by default, only where that is at most 1/64 of
    // the pages copied.
    const std::uint64_t classes = from_.classes_in_use();
    const std::uint64_t used = from_.pages_used();
    const auto extra = [&] { return (threads - 1) * classes; };
    while (threads > 1 &&
           (used + extra() > new_.max_pages || (options_.threads == 0 && extra() * 64 > used))) {
      --threads;
    }
  }
  std::vector<std::unique_ptr<Copier>> copiers;  // one per range but the first
  for (unsigned t = 1; t < threads; ++t) {
    copiers.push_back(std::unique_ptr<Copier>(new Copier(from_, to_, options_, seen_)));
  }
  run_ranges(threads, slots, stop,
             [&](unsigned t, std::uint64_t begin, std::uint64_t end, bool in_caller) {
               Copier& copier = t == 0 ? *this : *copiers[t - 1];
               copier.copy_range(begin, end, done, stop, in_caller);
             });
  for (const auto& copier : copiers) absorb(*copier);
  progress(CompactPhase::copying, slots, slots);
}

void Copier::absorb(Copier& other) {
  queued_.insert(queued_.end(), other.queued_.begin(), other.queued_.end());
  dropped_slots_.insert(dropped_slots_.end(), other.dropped_slots_.begin(),
                        other.dropped_slots_.end());
  old_blobs_.insert(old_blobs_.end(), other.old_blobs_.begin(), other.old_blobs_.end());
  dropped_ += other.dropped_;
  no_room_ += other.no_room_;
}

}  // namespace tcache::detail
