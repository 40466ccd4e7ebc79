// store/door.cc: the compactor's door (store_impl.h, "The compactor's
// door"): what lib/compact/ may do to a StoreImpl, the old file it reads
// and the new file it builds (doc/INVARIANTS.md, 10).
//
// Thread safety: as each member's comment in store_impl.h says. Reads
// follow the seqlock protocol (doc/INVARIANTS.md, 2): a chunk is copied between
// two loads of its version and the copy is kept only if both are the same
// even version; writes to the new file publish after write (1).

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/racy.h"

namespace tcache::detail {

namespace {

// Unpublishing a key from the new file (remove_key): attempts per slot
// whose chunk changes under us (only the compactor's threads write it).
constexpr int kRemoveRetries = 16;

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) {
    v = now_unix_ms() * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(::getpid());
  }
  return v;
}

}  // namespace

// --- Geometry and bookkeeping ---

StoreImpl::Geometry StoreImpl::geometry() const noexcept {
  return Geometry{sb_->capacity_bytes, bucket_count_, bucket_count_ * kSlotsPerBucket,
                  max_pages_,          hash_seed_,    page_bytes_,
                  class_count_};
}

std::uint64_t StoreImpl::pages_used() const noexcept {
  return std::min(atom<std::uint64_t>(&sb_->next_page).load(std::memory_order_acquire), max_pages_);
}

std::uint32_t StoreImpl::classes_in_use() const noexcept {
  std::uint32_t n = 0;
  for (std::uint32_t c = 0; c < class_count_; ++c) {
    n += atom<std::uint64_t>(&classes_[c].pages).load() != 0;
  }
  return n;
}

std::uint64_t StoreImpl::evictions() const noexcept {
  return atom<std::uint64_t>(&counters_[kEvictions]).load();
}

std::uint64_t StoreImpl::published_slots() const noexcept {
  std::uint64_t n = 0;
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  for (std::uint64_t i = 0; i < slots; ++i) {
    n += atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed) != 0;
  }
  return n;
}

void StoreImpl::add_counters_of(const StoreImpl& old) noexcept {
  for (std::uint32_t c = 0; c < kCounterCount; ++c) {
    std::uint64_t sum = atom<std::uint64_t>(&old.sb_->totals[c]).load();
    for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
      if (atom<std::uint64_t>(&old.procs_[i].owner).load() == 0) continue;
      sum += atom<std::uint64_t>(&old.procs_[i].counters[c]).load(std::memory_order_relaxed);
    }
    atom<std::uint64_t>(&sb_->totals[c]).fetch_add(sum);
  }
}

// --- Reading the old file ---

StoreImpl::SlotRead StoreImpl::read_slot(std::uint64_t i, EntryCopy& r) const {
  const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire);
  if (w == 0) return SlotRead::empty;
  r.word = w & ~kRefBit;
  r.version = 0;
  r.h = 0;
  const std::uint64_t off = slot_offset(w);
  const int cls = chunk_class(off);
  if (cls < 0) return SlotRead::damaged;  // readers never follow it either
  const char* c = chunk(off);
  const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
  if ((v1 & 1) != 0) return SlotRead::unstable;
  if (!slot_matches(w, v1)) {  // another incarnation than the word's: moved on, or damaged
    return atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire) != w ? SlotRead::unstable
                                                                                : SlotRead::damaged;
  }
  r.meta = atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
  r.vf = atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
  r.sum = atom<std::uint32_t>(c + kChunkChecksumOffset).load(std::memory_order_relaxed);
  const std::uint32_t klen = meta_key_len(r.meta);
  const std::uint32_t vlen = r.vf & kValueLenMask;
  const bool fits = kChunkHeaderBytes + std::uint64_t{klen} + vlen <= class_bytes_[cls];
  if (fits) {
    r.key.resize(klen);
    racy_read(r.key.data(), c + kChunkHeaderBytes, klen);
    r.stored.resize(vlen);
    racy_read(r.stored.data(), c + kChunkHeaderBytes + klen, vlen);
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) return SlotRead::unstable;
  r.version = v1;
  if (!fits) return SlotRead::damaged;
  r.h = hash(r.key);
  return SlotRead::entry;
}

std::uint64_t StoreImpl::slot_word(std::uint64_t i) const noexcept {
  return atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire) & ~kRefBit;
}

std::uint32_t StoreImpl::chunk_version(std::uint64_t word) const noexcept {
  const std::uint64_t off = slot_offset(word);
  if (chunk_class(off) < 0) return 0;
  return atom<std::uint32_t>(chunk(off)).load(std::memory_order_acquire);
}

StoreImpl::KeyRead StoreImpl::find_copy(std::string_view key, std::uint64_t h, EntryCopy& r) const {
  // find_entry is the first half of probe(), the half that only reads; the
  // second half (what get() makes of the entry) unlinks, sets the reference
  // bit and decodes, none of which a copy may do.
  Entry e;
  switch (find_entry<true>(key, h, slots_for(h), &r.stored, e)) {
    case Find::retry:
      return KeyRead::unstable;
    case Find::absent:
      return KeyRead::absent;
    case Find::found:
      break;
  }
  r.word = e.word & ~kRefBit;
  r.version = e.version;
  r.h = h;
  r.meta = e.meta;
  r.vf = e.vlen_flags;
  r.sum = e.checksum;
  r.key.assign(key);
  return KeyRead::entry;
}

void StoreImpl::keys_with_hash(std::uint64_t h, int retries, std::vector<std::string>& out) const {
  const Slots slots = slots_for(h);
  std::string key;
  for (int i = 0; i < kPairSlots; ++i) {
    for (int attempt = 0; attempt < retries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slots.at(i)).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(h)) break;
      const std::uint64_t off = slot_offset(w);
      const int cls = chunk_class(off);
      if (cls < 0) break;
      const char* c = chunk(off);
      const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
      if ((v1 & 1) == 0) {
        const std::uint32_t klen =
            meta_key_len(atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed));
        if (kChunkHeaderBytes + klen > class_bytes_[cls]) break;
        key.resize(klen);
        racy_read(key.data(), c + kChunkHeaderBytes, klen);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) == v1) {
          if (hash(key) == h && std::find(out.begin(), out.end(), key) == out.end()) {
            out.push_back(key);
          }
          break;
        }
      }
      std::this_thread::yield();
    }
  }
}

int StoreImpl::pair_position(std::uint64_t i, std::uint64_t h) const noexcept {
  const Slots pair = slots_for(h);
  const std::uint64_t* slot = index_ + i;
  for (int b = 0; b < 2; ++b) {
    if (slot >= pair.b[b] && slot < pair.b[b] + kSlotsPerBucket) {
      return b * static_cast<int>(kSlotsPerBucket) + static_cast<int>(slot - pair.b[b]);
    }
  }
  return -1;
}

bool StoreImpl::pair_has_tag(std::uint64_t h, int begin, int end) const noexcept {
  const Slots s = slots_for(h);
  const std::uint64_t tag = hash_tag(h);
  for (int p = begin; p < end; ++p) {
    const std::uint64_t w = atom<std::uint64_t>(&s.at(p)).load(std::memory_order_relaxed);
    if (w != 0 && slot_tag(w) == tag) return true;
  }
  return false;
}

void StoreImpl::prefetch_slot_chunk(std::uint64_t i, std::uint32_t limit) const noexcept {
  const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed);
  if (w == 0) return;
  const std::uint64_t off = slot_offset(w);
  const int cls = chunk_class(off);
  if (cls >= 0) prefetch_chunk(chunk(off), class_bytes_[cls], limit);
}

void StoreImpl::prefetch_key_pairs(std::uint64_t i, const StoreImpl& other,
                                   std::string& scratch) const {
  const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed);
  if (w == 0) return;
  const std::uint64_t off = slot_offset(w);
  const int cls = chunk_class(off);
  if (cls < 0) return;
  const char* c = chunk(off);
  const std::uint32_t klen =
      meta_key_len(atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed));
  if (kChunkHeaderBytes + klen > class_bytes_[cls]) return;
  scratch.resize(klen);
  racy_read(scratch.data(), c + kChunkHeaderBytes, klen);
  const std::uint64_t h = hash(scratch);
  const Slots a = slots_for(h);
  const Slots b = other.slots_for(h);
  __builtin_prefetch(a.b[0], 0, 3);
  __builtin_prefetch(a.b[1], 0, 3);
  __builtin_prefetch(b.b[0], 1, 3);
  __builtin_prefetch(b.b[1], 1, 3);
}

void StoreImpl::map_index() noexcept {
  region_.populate(static_cast<std::uint64_t>(reinterpret_cast<char*>(index_) - base_),
                   bucket_count_ * kBucketBytes);
}

void StoreImpl::map_pages_for_read() noexcept {
  region_.populate_read(pages_offset_, pages_used() * page_bytes_);
}

// --- Building the new file ---

bool StoreImpl::append_page(std::uint32_t cls, bool map, std::uint64_t& page,
                            std::uint64_t& first) {
  Claim claim = Claim::raced;
  while (claim == Claim::raced) claim = claim_page(page);  // another copying thread
  if (claim != Claim::claimed) return false;
  first = pages_offset_ + page * page_bytes_;
  if (map) region_.populate(first, page_bytes_);  // one call, not a fault per 4 KiB
  atom<std::uint8_t>(&page_table_[page])
      .store(static_cast<std::uint8_t>(cls), std::memory_order_release);
  atom<std::uint64_t>(&classes_[cls].pages).fetch_add(1, std::memory_order_relaxed);
  return true;
}

void StoreImpl::write_page(std::uint64_t first, const char* bytes) const {
  std::uint64_t done = 0;
  while (done < page_bytes_) {
    const ssize_t n =
        ::pwrite(region_.fd(), bytes + done, page_bytes_ - done, static_cast<off_t>(first + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      if (err == ENOSPC || err == EDQUOT || err == EFBIG) {
        fail(Errc::no_space, "cannot write the compacted copy '" + path().string() + "' (" +
                                 std::strerror(err) +
                                 "); the cache file is unchanged: free disk space, then "
                                 "compact again");
      }
      fail_errno(err, "cannot write the compacted file", path().string(), "check the file system");
    }
    done += static_cast<std::uint64_t>(n);
  }
}

void StoreImpl::start_writeback_pages(std::uint64_t begin, std::uint64_t end) noexcept {
  region_.start_writeback(pages_offset_ + begin * page_bytes_, (end - begin) * page_bytes_);
}

void StoreImpl::free_chunks(std::uint32_t cls, std::uint64_t first, std::uint64_t end) {
  const std::uint32_t size = class_bytes_[cls];
  if (first + size > end) return;
  const auto n = static_cast<std::uint32_t>((end - first) / size);
  push_chain(cls, first, link_free_chunks(first, size, n));
}

std::uint32_t StoreImpl::import_chunk(char* at, const EntryCopy& r, std::string_view stored,
                                      std::uint32_t vf, std::uint32_t sum) noexcept {
  // As store_entry: the chunk is ours, its version odd (or zero).
  std::atomic_thread_fence(std::memory_order_release);
  racy_write(at + kChunkHeaderBytes, r.key.data(), r.key.size());
  racy_write(at + kChunkHeaderBytes + r.key.size(), stored.data(), stored.size());
  atom<std::uint64_t>(at + kChunkMetaOffset).store(r.meta, std::memory_order_relaxed);
  atom<std::uint32_t>(at + kChunkVlenOffset).store(vf, std::memory_order_relaxed);
  atom<std::uint32_t>(at + kChunkChecksumOffset).store(sum, std::memory_order_relaxed);
  auto version = atom<std::uint32_t>(at);
  version.store((version.load(std::memory_order_relaxed) | 1) + 1, std::memory_order_release);
  return version.load();
}

void StoreImpl::publish_in_slot(std::uint64_t i, std::uint64_t h, std::uint64_t off,
                                std::uint32_t version) noexcept {
  atom<std::uint64_t>(&index_[i])
      .store(slot_make(hash_tag(h), off, version), std::memory_order_release);
}

bool StoreImpl::publish_entry(std::string_view key, std::uint64_t h, std::uint64_t off) {
  bool replaced = false;
  publish(key, h, off, Publish::upsert, &replaced);
  return replaced;
}

void StoreImpl::remove_key(std::string_view key, std::uint64_t h) {
  const Slots s = slots_for(h);
  for (int i = 0; i < kPairSlots; ++i) {
    std::uint64_t& slot = s.at(i);
    for (int attempt = 0; attempt < kRemoveRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(h)) break;
      const int has = chunk_has_key(slot, w, key);
      if (has == 0) break;
      if (has == 1 && unlink(slot, w)) break;
    }
  }
}

bool StoreImpl::link_blob(const StoreImpl& old, std::uint64_t h, BlobRef& ref) {
  // Under a name of the new file's own: the old file's users may still
  // unlink theirs (on erase) until the switch.
  if (atom<std::uint64_t>(&sb_->blob_bytes).load() + ref.size > sb_->capacity_bytes) {
    evict_blobs(ref.size);
  }
  const std::string src = old.blob_path(h, ref.id, false);
  for (;;) {
    const std::uint64_t id = random_u64();
    if (::link(src.c_str(), blob_path(h, id, false).c_str()) == 0) {
      ref.id = id;
      break;
    }
    if (errno == EEXIST) continue;
    if (errno == ENOENT) return false;  // erased meanwhile: the slot changed
    fail_errno(errno, "cannot link blob file", src, "");
  }
  atom<std::uint64_t>(&sb_->blob_bytes).fetch_add(ref.size);
  return true;
}

void StoreImpl::drop_blob(std::uint64_t h, const BlobRef& ref) {
  ::unlink(blob_path(h, ref.id, false).c_str());
  atom<std::uint64_t>(&sb_->blob_bytes).fetch_sub(ref.size);
}

void StoreImpl::unlink_blob_name(std::uint64_t h, std::uint64_t id) const {
  ::unlink(blob_path(h, id, false).c_str());
}

// --- The compaction protocol ---

bool StoreImpl::named_alike(const ProcessEntry& e) const noexcept {
  return atom<std::uint64_t>(&e.name_dir_device).load() == name_dir_device_ &&
         atom<std::uint64_t>(&e.name_dir_inode).load() == name_dir_inode_ &&
         atom<std::uint64_t>(&e.name_hash).load() == name_hash_;
}

}  // namespace tcache::detail
