#include <fcntl.h>
#include <lz4.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "format/geometry.h"
#include "store/store_impl.h"
#include "util/atomic128.h"
#include "util/checksum.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"
#include "util/test_hook.h"

namespace tcache {
namespace detail {

namespace {

constexpr int kMaxProbeRetries = 16;
constexpr int kMaxPublishRounds = 256;
constexpr std::uint64_t kGrowRetryMs = 1000;
constexpr std::uint64_t kOwnerLive = 1ull << 32;
constexpr std::uint64_t kOwnerFolding = 1ull << 33;
// An owner mark (layout.h) is never a key length.
static_assert(Store::kMaxKeyBytes < kOwnerMarkKeyLen);

// Compressing the first KiB says cheaply whether the whole value will
// compress: random or already-compressed data is stored as it is without
// paying LZ4 over all of it (a put of 4 KiB of random bytes spent most of its
// time in LZ4 before).
bool worth_compressing(std::string_view value) {
  constexpr int kSample = 1024;
  if (value.size() < 2 * kSample) return true;
  char out[LZ4_COMPRESSBOUND(kSample)];
  const int n = LZ4_compress_default(value.data(), out, kSample, sizeof out);
  return n > 0 && n < kSample - kSample / 16;
}

// Scratch space for compression, one per thread.
std::string& scratch() {
  thread_local std::string s;
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------
// Opening and attaching

StoreImpl::StoreImpl(Region region, const StoreOptions& options,
                     const std::filesystem::path* final_path)
    : region_(std::move(region)), options_(options) {
  counters_ = local_counters_;
  writes_ = &local_writes_;
  watch_forks();
  fork_gen_ = fork_generation();
  const std::filesystem::path& name = final_path != nullptr ? *final_path : region_.path();
  blob_dir_ = name;
  blob_dir_ += ".blobs";
  // How we name the file (ProcessEntry::name_dir_device): the directory we
  // resolve the name in, and the name in it. Users that agree on both see
  // the same rename (INVARIANTS.md, 10).
  struct stat dir {};
  if (::stat(name.parent_path().c_str(), &dir) == 0) {
    name_dir_device_ = static_cast<std::uint64_t>(dir.st_dev);
    name_dir_inode_ = static_cast<std::uint64_t>(dir.st_ino);
  }
  const std::string base = name.filename().string();
  name_hash_ = XXH3_64bits(base.data(), base.size());
  compaction_target_ = final_path != nullptr;
  Superblock sb;
  if (::pread(region_.fd(), &sb, sizeof sb, 0) != static_cast<ssize_t>(sizeof sb)) {
    fail(Errc::not_a_cache_file, "'" + region_.path().string() +
                                     "' is too short to be a tcache file; check the path, or "
                                     "delete the file");
  }
  const std::uint64_t file_size = region_.file_size();
  validate_superblock(sb, file_size, region_.path().string());
  region_.map(sb.capacity_bytes);
  base_ = region_.base();
  sb_ = reinterpret_cast<Superblock*>(base_);
  classes_ = reinterpret_cast<ClassState*>(base_ + sb.class_table_offset);
  procs_ = reinterpret_cast<ProcessEntry*>(base_ + sb.process_table_offset);
  page_table_ = reinterpret_cast<std::uint8_t*>(base_ + sb.page_table_offset);
  index_ = reinterpret_cast<std::uint64_t*>(base_ + sb.index_offset);
  bucket_count_ = sb.bucket_count;
  pages_offset_ = sb.pages_offset;
  max_pages_ = sb.max_pages;
  hash_seed_ = sb.hash_seed;
  page_bytes_ = sb.page_bytes;
  page_shift_ = std::countr_zero(sb.page_bytes);
  class_count_ = sb.class_count;
  std::copy_n(sb.class_bytes, kMaxClasses, class_bytes_);
  for (std::uint32_t c = 0; c < class_count_; ++c)
    class_magic_[c] = ~std::uint64_t{0} / class_bytes_[c] + 1;
  if (!region_.read_only()) {
    // Never trust a recorded size the file does not have (pages beyond the
    // real end would fault); growing again is harmless.
    auto fb = atom<std::uint64_t>(&sb_->file_bytes);
    std::uint64_t recorded = fb.load();
    while (recorded > file_size && !fb.compare_exchange_weak(recorded, file_size)) {
    }
  }
  open_attach();
}

StoreImpl::~StoreImpl() {
  // A child that inherited us through fork() must not detach its parent
  // (getpid(), not forked(): a fork by a raw system call runs no handler).
  if (::getpid() == attach_pid_) detach_process();
}

void StoreImpl::open_attach() {
  const bool exclusive = region_.lock_exclusive_or_shared();
  if (region_.read_only()) {
    if (exclusive) region_.downgrade_lock();
    return;
  }
  if (exclusive) {
    // We hold the only descriptor with a lock. Entries of live processes can
    // still appear while another opener converts its exclusive lock to a
    // shared one (flock conversion is not atomic); then we are not alone.
    bool anyone = false;
    bool live = false;
    for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
      const std::uint64_t owner = atom<std::uint64_t>(&procs_[i].owner).load();
      if (owner == 0) continue;
      anyone = true;
      const std::uint64_t start = atom<std::uint64_t>(&procs_[i].start_time).load();
      if (process_alive(static_cast<pid_t>(owner & 0xffffffffu), start)) live = true;
    }
    if (!live && (anyone || atom<std::uint64_t>(&sb_->needs_recovery).load() != 0)) recover();
    if (!live) reset_compaction_alone();
    attach_process();
    region_.downgrade_lock();
    return;
  }
  reclaim_dead_processes();
  attach_process();
}

void StoreImpl::attach_process() {
  const pid_t pid = ::getpid();
  attach_pid_ = pid;
  const std::uint64_t start = process_start_time(pid);
  owner_mark_ = owner_mark(static_cast<std::uint32_t>(pid), start);
  const std::uint64_t me = kOwnerLive | static_cast<std::uint32_t>(pid);
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    std::uint64_t expected = 0;
    if (atom<std::uint64_t>(&procs_[i].owner).compare_exchange_strong(expected, me)) {
      ProcessEntry& e = procs_[i];
      atom<std::uint64_t>(&e.start_time).store(start);
      atom<std::uint64_t>(&e.attached_unix_ms).store(now_unix_ms());
      for (auto& c : e.counters) atom<std::uint64_t>(&c).store(0);
      atom<std::uint64_t>(&e.writes).store(0);
      atom<std::uint64_t>(&e.name_dir_device).store(name_dir_device_);
      atom<std::uint64_t>(&e.name_dir_inode).store(name_dir_inode_);
      atom<std::uint64_t>(&e.name_hash).store(name_hash_);
      proc_slot_ = static_cast<int>(i);
      counters_ = e.counters;
      writes_ = &e.writes;
      return;
    }
  }
  // Table full: work untracked, and have the next exclusive opener sweep.
  // Our writes cannot be drained by a compactor, which therefore refuses to
  // switch while we are counted here (seq_cst: INVARIANTS.md, 10). The
  // shared lock, taken before we are counted and held until we are not,
  // tells a compactor whether anyone counted is still alive.
  untracked_locked_ = lock_untracked_byte(F_RDLCK, /*wait=*/true);
  untracked_ = true;
  atom<std::uint64_t>(&sb_->untracked_processes).fetch_add(1, std::memory_order_seq_cst);
  atom<std::uint64_t>(&sb_->needs_recovery).store(1);
  log("process table full (" + std::to_string(kMaxProcesses) +
      " processes); this process's statistics stay private");
}

void StoreImpl::fold_counters(ProcessEntry& e) {
  for (std::uint32_t c = 0; c < kCounterCount; ++c) {
    const std::uint64_t v = atom<std::uint64_t>(&e.counters[c]).exchange(0);
    if (v != 0) atom<std::uint64_t>(&sb_->totals[c]).fetch_add(v);
  }
}

void StoreImpl::detach_process() noexcept {
  if (untracked_ && sb_ != nullptr) {
    auto n = atom<std::uint64_t>(&sb_->untracked_processes);
    std::uint64_t v = n.load();
    while (v != 0 && !n.compare_exchange_weak(v, v - 1)) {
    }
    untracked_ = false;
    if (untracked_locked_) lock_untracked_byte(F_UNLCK, false);
    untracked_locked_ = false;
  }
  if (proc_slot_ < 0 || sb_ == nullptr) return;
  ProcessEntry& e = procs_[proc_slot_];
  fold_counters(e);
  atom<std::uint64_t>(&e.writes).store(0);
  atom<std::uint64_t>(&e.start_time).store(0);
  atom<std::uint64_t>(&e.owner).store(0, std::memory_order_release);
  proc_slot_ = -1;
  counters_ = local_counters_;
}

bool StoreImpl::lock_untracked_byte(short type, bool wait) noexcept {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = kUntrackedLockByte;
  fl.l_len = 1;
  for (;;) {
    if (::fcntl(region_.fd(), wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return true;
    if (errno != EINTR) return false;
  }
}

bool StoreImpl::untracked_all_dead() {
  auto n = atom<std::uint64_t>(&sb_->untracked_processes);
  const std::uint64_t counted = n.load(std::memory_order_seq_cst);
  if (counted == 0) return true;
  // Every live counted process holds a shared lock on the byte from before
  // it raised the count until after it lowered it, and an untracked opener
  // waits for our exclusive lock before it raises it: holding the lock, the
  // count is of the dead only (INVARIANTS.md, 10).
  if (!lock_untracked_byte(F_WRLCK, /*wait=*/false)) return false;
  n.store(0, std::memory_order_seq_cst);
  lock_untracked_byte(F_UNLCK, false);
  log(std::to_string(counted) +
      " process(es) counted as working without a process table entry died; reset the count");
  return true;
}

void StoreImpl::reclaim_dead_processes() {
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    ProcessEntry& e = procs_[i];
    std::uint64_t owner = atom<std::uint64_t>(&e.owner).load();
    if (owner == 0 || (owner & kOwnerFolding) != 0) continue;
    const std::uint64_t start = atom<std::uint64_t>(&e.start_time).load();
    if (process_alive(static_cast<pid_t>(owner & 0xffffffffu), start)) continue;
    if (!atom<std::uint64_t>(&e.owner).compare_exchange_strong(owner, owner | kOwnerFolding)) {
      continue;
    }
    // It died attached: it may have leaked a chunk it was writing.
    atom<std::uint64_t>(&sb_->needs_recovery).store(1);
    fold_counters(e);
    atom<std::uint64_t>(&e.writes).store(0);
    atom<std::uint64_t>(&e.start_time).store(0);
    atom<std::uint64_t>(&e.owner).store(0, std::memory_order_release);
  }
}

// ---------------------------------------------------------------------------
// Compaction: the user side (INVARIANTS.md, 10; the compactor is compact.cc)

namespace {

// Whether the compactor named by a compaction word still runs (same pid,
// same start time modulo 2^38, as stored), and whether it is stopped.
ProcState compactor_state(std::uint64_t w) {
  return process_state(static_cast<pid_t>(compactor_pid(w)), compactor_start(w),
                       kCompactorStartMask);
}

}  // namespace

bool StoreImpl::enter_write() noexcept {
  // Raise, then look (both seq_cst): either the compactor's drain sees our
  // count, or we see its switching phase (INVARIANTS.md, 10).
  atom<std::uint64_t>(writes_).fetch_add(1, std::memory_order_seq_cst);
  if (compaction_superseded(atom<std::uint64_t>(&sb_->compaction).load(std::memory_order_seq_cst)))
      [[unlikely]] {
    atom<std::uint64_t>(writes_).fetch_sub(1, std::memory_order_release);
    return false;
  }
  return true;
}

void StoreImpl::leave_write() noexcept {
  // Release: the compactor that reads 0 (acquire) sees everything we wrote.
  atom<std::uint64_t>(writes_).fetch_sub(1, std::memory_order_release);
}

StoreImpl::Superseded StoreImpl::check_superseded(bool writer, std::uint64_t waited_ms) {
  auto word = atom<std::uint64_t>(&sb_->compaction);
  for (;;) {
    std::uint64_t w = word.load(std::memory_order_seq_cst);
    if (!compaction_superseded(w)) return Superseded::no;
    const auto path_moved = [&] {
      return path_names(region_.path(), region_.device(), region_.inode()) != PathNames::same_file;
    };
    // A reader reads on from this file until the path names another: what
    // it reads is the file's state at the switch.
    if (!writer || region_.read_only()) return path_moved() ? Superseded::moved : Superseded::no;
    // Liveness first: a compactor found dead renames nothing afterwards, so
    // the path check below is then final.
    const ProcState compactor = compactor_state(w);
    if (path_moved()) return Superseded::moved;
    if ((w & kCompactionRenamed) != 0) {
      // Renamed over another name than ours (a hard link or a bind mount
      // made after the compactor checked its users): our name keeps the
      // replaced file, and a write here would be lost.
      fail(Errc::file_replaced,
           "'" + region_.path().string() + "' was compacted by process " +
               std::to_string(compactor_pid(w)) +
               " under another name (this name is a hard link or a bind mount of the old file); "
               "writes here would be lost. Open the cache file by the name it was compacted "
               "under, and remove or recreate this name");
    }
    if (compactor == ProcState::gone) {
      // It died before renaming its file over ours: carry on with ours.
      if (word.compare_exchange_strong(w, 0, std::memory_order_seq_cst)) {
        log("the compaction by process " + std::to_string(compactor_pid(w)) +
            " ended without replacing the file (the compactor died); using the file as it is");
      }
      continue;
    }
    if (compaction_phase(w) == kCompactionSwitching &&
        (compactor == ProcState::stopped || waited_ms >= kMaxSwitchWaitMs)) {
      // A compactor stopped (SIGSTOP, a debugger) or stuck before
      // committing: writers may not wait for ever. It sees the phase gone
      // and gives up.
      if (word.compare_exchange_strong(w, 0, std::memory_order_seq_cst)) {
        log("writers waited " + std::to_string(waited_ms) + " ms for the compaction by process " +
            std::to_string(compactor_pid(w)) +
            (compactor == ProcState::stopped ? ", which is stopped" : "") +
            "; broke it off (it will fail and leave the file as it is)");
      }
      continue;
    }
    return Superseded::wait;
  }
}

void StoreImpl::reset_compaction_alone() {
  // No other process has the file open (we hold the exclusive lock), so no
  // compactor is working on it (a compactor keeps it open to the end) and
  // nobody works untracked.
  atom<std::uint64_t>(&sb_->untracked_processes).store(0);
  auto word = atom<std::uint64_t>(&sb_->compaction);
  const std::uint64_t w = word.load();
  if (w == 0) return;
  // A committed compaction may have renamed its file over ours after we
  // opened the path (or over another name of this file): then this file is
  // superseded for good, and the first operation moves to the path's file
  // (or fails with file_replaced).
  if (compaction_phase(w) == kCompactionCommitted &&
      ((w & kCompactionRenamed) != 0 ||
       path_names(region_.path(), region_.device(), region_.inode()) != PathNames::same_file)) {
    return;
  }
  word.store(0);
}

void StoreImpl::log(const std::string& line) const {
  if (!options_.logger) return;
  std::lock_guard<std::mutex> lock(log_mutex_);
  options_.logger("tcache: " + region_.path().string() + ": " + line);
}

// ---------------------------------------------------------------------------
// Addressing

std::uint64_t StoreImpl::hash(std::string_view key) const noexcept {
  return XXH3_64bits_withSeed(key.data(), key.size(), hash_seed_);
}

StoreImpl::Slots StoreImpl::slots_for(std::uint64_t h) const noexcept {
  std::uint64_t b1 = bucket_of(h, bucket_count_);
  std::uint64_t b2 = bucket_of(second_hash(h), bucket_count_);
  if (b2 == b1) b2 = b1 + 1 == bucket_count_ ? 0 : b1 + 1;
  return Slots{{index_ + b1 * kSlotsPerBucket, index_ + b2 * kSlotsPerBucket}};
}

std::uint32_t StoreImpl::class_for(std::uint64_t bytes) const noexcept {
  const auto* end = class_bytes_ + class_count_;
  return static_cast<std::uint32_t>(std::lower_bound(class_bytes_, end, bytes) - class_bytes_);
}

std::size_t StoreImpl::max_value_bytes() const noexcept { return sb_->capacity_bytes; }

// ---------------------------------------------------------------------------
// Reading

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

// ---------------------------------------------------------------------------
// Chunk allocation

// Free-list heads are (link, tag) pairs changed by one 16-byte CAS
// (util/atomic128.h); a read of the pair may tear, and then the CAS fails
// and hands back the real pair. The tag is bumped on every change and never
// wraps (64 bits), so a CAS that succeeds proves the head did not change
// since the pair was read (INVARIANTS.md, 4).
std::uint64_t StoreImpl::pop_free(std::uint32_t cls) {
  std::uint64_t* const head = &classes_[cls].free_head;
  WordPair h = load128(head);
  for (;;) {
    const std::uint64_t off = head_offset(h.lo);
    if (off == 0) return 0;
    bool damaged = chunk_class(off) != static_cast<int>(cls);
    if (!damaged && (atom<std::uint32_t>(chunk(off)).load(std::memory_order_acquire) & 1) == 0) {
      // Free chunks have odd versions. An even one at the head is either
      // being reused by whoever popped it after we read the head (then the
      // head moved on) or a link into live chunks: a damaged list.
      const WordPair again = load128(head);
      if (again.lo != h.lo || again.hi != h.hi) {
        h = again;
        continue;
      }
      damaged = true;
    }
    if (damaged) {
      // Drop the list; its chunks leak until recovery rebuilds it.
      if (cas128(head, h, WordPair{0, h.hi + 1})) {
        atom<std::uint64_t>(&sb_->needs_recovery).store(1);
        log("free list of size class " + std::to_string(cls) + " was damaged; dropped it");
        return 0;
      }
      continue;
    }
    // The chunk may be popped and reused by someone else between these two
    // loads; then `next` is garbage, but the tag makes the CAS fail.
    const std::uint64_t next =
        atom<std::uint64_t>(chunk(off) + kChunkMetaOffset).load(std::memory_order_relaxed);
    if (cas128(head, h, WordPair{next & kAddrMask, h.hi + 1})) return off;
  }
}

void StoreImpl::push_chain(std::uint32_t cls, std::uint64_t first, std::uint64_t last) {
  std::uint64_t* const head = &classes_[cls].free_head;
  WordPair h = load128(head);
  for (;;) {
    atom<std::uint64_t>(chunk(last) + kChunkMetaOffset)
        .store(h.lo & kAddrMask, std::memory_order_relaxed);
    if (cas128(head, h, WordPair{head_link(first), h.hi + 1})) return;
  }
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
  for (std::uint32_t i = 0; i < n; ++i) {
    char* c = chunk(first + std::uint64_t{i} * size);
    // Odd, and one past any version a stale reader may hold for this spot.
    auto version = atom<std::uint32_t>(c);
    version.store((version.load(std::memory_order_relaxed) | 1) + 2, std::memory_order_relaxed);
    const std::uint64_t next = i + 1 < n ? (first + std::uint64_t{i + 1} * size) / kChunkAlign : 0;
    atom<std::uint64_t>(c + kChunkMetaOffset).store(next, std::memory_order_relaxed);
  }
  return first + std::uint64_t{n - 1} * size;
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
    std::uint64_t* const head = &classes_[victim].free_head;
    WordPair h = load128(head);
    while (!cas128(head, h, WordPair{0, h.hi + 1})) {
    }
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
    std::uint64_t off = head_offset(h.lo);
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

// ---------------------------------------------------------------------------
// Writing

void StoreImpl::put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to write");
  }
  if (key.size() > Store::kMaxKeyBytes) {
    fail(Errc::key_too_large, "key of " + std::to_string(key.size()) + " bytes exceeds the " +
                                  std::to_string(Store::kMaxKeyBytes) +
                                  "-byte limit; hash long keys before storing them");
  }
  if (value.size() > max_value_bytes()) {
    fail(Errc::value_too_large,
         "value of " + std::to_string(value.size()) + " bytes exceeds the " +
             std::to_string(max_value_bytes()) + "-byte limit of '" + region_.path().string() +
             "' (its capacity_bytes); store it elsewhere or raise capacity_bytes");
  }
  if (ttl.count() < 0) fail(Errc::invalid_option, "ttl must not be negative");
  if (ttl.count() == 0) ttl = options_.default_ttl;
  std::uint64_t expiry = 0;
  if (ttl.count() > 0) {
    expiry = std::min<std::uint64_t>(now_unix_ms() + static_cast<std::uint64_t>(ttl.count()),
                                     kMaxExpiryMs);
  }

  std::string_view stored = value;
  std::uint32_t flags = 0;
  if (options_.compress_threshold != 0 && value.size() >= options_.compress_threshold &&
      value.size() <= static_cast<std::size_t>(LZ4_MAX_INPUT_SIZE) && worth_compressing(value)) {
    std::string& buf = scratch();
    const int bound = LZ4_compressBound(static_cast<int>(value.size()));
    buf.resize(4 + static_cast<std::size_t>(bound));
    const auto raw = static_cast<std::uint32_t>(value.size());
    std::memcpy(buf.data(), &raw, 4);
    const int n =
        LZ4_compress_default(value.data(), buf.data() + 4, static_cast<int>(value.size()), bound);
    if (n > 0 && static_cast<std::size_t>(n) + 4 < value.size() && raw <= kValueLenMask) {
      stored = std::string_view(buf.data(), static_cast<std::size_t>(n) + 4);
      flags = kFlagCompressed;
    }
  }
  const std::uint64_t h = hash(key);
  {
    // The bucket pair is needed at publish; fetch it while the chunk is
    // allocated and written.
    const Slots s = slots_for(h);
    prefetch(s.b[0]);
    prefetch(s.b[1]);
  }
  store_entry(key, h, stored, flags, expiry, Publish::upsert);
  count(kPuts);
}

bool StoreImpl::store_entry(std::string_view key, std::uint64_t h, std::string_view stored,
                            std::uint32_t flags, std::uint64_t expiry, Publish mode) {
  BlobRef ref{};
  if (kChunkHeaderBytes + key.size() + stored.size() > page_bytes_) {
    ref = write_blob(h, stored);
    stored = std::string_view(reinterpret_cast<const char*>(&ref), sizeof ref);
    flags |= kFlagBlob;
  }
  const std::uint64_t need = kChunkHeaderBytes + key.size() + stored.size();
  const std::uint32_t cls = class_for(need);
  std::uint64_t off;
  try {
    off = allocate(cls);
  } catch (...) {
    if ((flags & kFlagBlob) != 0) {
      ::unlink(blob_path(h, ref.id, false).c_str());
      atom<std::uint64_t>(&sb_->blob_bytes).fetch_sub(ref.size);
    }
    throw;
  }

  // The chunk is ours alone (its version is odd). The release fence orders
  // the odd version that whoever freed it wrote before our writes, for any
  // reader still holding the old address (seqlock writer protocol).
  std::atomic_thread_fence(std::memory_order_release);
  char* c = chunk(off);
  const std::uint64_t meta = meta_pack(expiry, static_cast<std::uint32_t>(key.size()));
  const std::uint32_t vf = static_cast<std::uint32_t>(stored.size()) | flags;
  racy_write(c + kChunkHeaderBytes, key.data(), key.size());
  racy_write(c + kChunkHeaderBytes + key.size(), stored.data(), stored.size());
  atom<std::uint64_t>(c + kChunkMetaOffset).store(meta, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkVlenOffset).store(vf, std::memory_order_relaxed);
  atom<std::uint32_t>(c + kChunkChecksumOffset)
      .store(value_checksum(stored.data(), stored.size(), h, meta, vf), std::memory_order_relaxed);
  auto version = atom<std::uint32_t>(c);
  version.store((version.load(std::memory_order_relaxed) | 1) + 1, std::memory_order_release);

  return publish(key, h, off, mode);
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

bool StoreImpl::erase(std::string_view key) {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to erase");
  }
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  bool erased = false;
  for (int i = 0; i < kPairSlots; ++i) {
    std::uint64_t& slot = s.at(i);
    for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
      if (w == 0 || slot_tag(w) != hash_tag(h)) break;
      const int has = chunk_has_key(slot, w, key);
      if (has == 0) break;
      if (has == 1 && unlink(slot, w)) {
        erased = true;
        break;
      }
    }
  }
  if (erased) count(kErases);
  return erased;
}

void StoreImpl::clear() {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to clear");
  }
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  std::uint64_t n = 0;
  for (std::uint64_t i = 0; i < slots; ++i) {
    std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire);
    while (w != 0) {
      if (unlink(index_[i], w)) {
        ++n;
        break;
      }
      w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_acquire);
    }
  }
  count(kErases, n);
  atom<std::uint64_t>(&sb_->generation).fetch_add(1);
}

// ---------------------------------------------------------------------------
// Single flight

namespace {

// This process's identity for lease records (pid and start time). Computed
// once per pid, so a child after fork() gets its own.
LeaseRecord self_lease(std::uint64_t deadline_ms) {
  static std::atomic<std::uint64_t> cached_pid{0};
  static std::atomic<std::uint64_t> cached_start{0};
  const pid_t pid = ::getpid();
  std::uint64_t start = cached_start.load(std::memory_order_acquire);
  if (cached_pid.load(std::memory_order_acquire) != static_cast<std::uint64_t>(pid)) {
    start = process_start_time(pid);
    cached_start.store(start, std::memory_order_release);
    cached_pid.store(static_cast<std::uint64_t>(pid), std::memory_order_release);
  }
  return LeaseRecord{static_cast<std::uint32_t>(pid), 0, start, deadline_ms};
}

}  // namespace

StoreImpl::LeaseStep StoreImpl::lease_step(std::string_view key, std::string& value,
                                           std::chrono::milliseconds lease_timeout) {
  if (lease_timeout.count() <= 0) fail(Errc::invalid_option, "lease_timeout must be positive");
  if (key.size() > Store::kMaxKeyBytes) {
    fail(Errc::key_too_large, "key of " + std::to_string(key.size()) + " bytes exceeds the " +
                                  std::to_string(Store::kMaxKeyBytes) + "-byte limit");
  }
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  Probe p = Probe::retry;
  Found f;
  for (int attempt = 0; attempt < kMaxProbeRetries && p == Probe::retry; ++attempt) {
    p = probe<true>(key, h, s, &value, &f);
  }
  if (p == Probe::hit) {
    count(kHits);
    return LeaseStep::hit;
  }
  if (region_.read_only()) {  // cannot lease: the caller computes
    count(kMisses);
    return LeaseStep::holder;
  }
  if (p == Probe::lease) {
    LeaseRecord rec;
    std::memcpy(&rec, value.data(), sizeof rec);
    const bool dead = !process_alive(static_cast<pid_t>(rec.pid), rec.start_time);
    if (dead || now_unix_ms() >= rec.deadline_ms) {
      // Take it over: unlink exactly the lease we judged (its word names
      // the chunk's incarnation), never a newer one that took its chunk and
      // slot while we read /proc (INVARIANTS.md, 9).
      test_point(TestPoint::lease_takeover, key);
      unlink_entry(*f.slot, f.word);
      return LeaseStep::again;
    }
    test_point(TestPoint::lease_wait, key);
    return LeaseStep::wait;
  }
  if (p == Probe::retry) return LeaseStep::again;
  // A miss: try to become the holder.
  const std::uint64_t deadline = std::min<std::uint64_t>(
      now_unix_ms() + static_cast<std::uint64_t>(lease_timeout.count()), kMaxExpiryMs);
  const LeaseRecord rec = self_lease(deadline);
  const std::string_view bytes(reinterpret_cast<const char*>(&rec), sizeof rec);
  if (store_entry(key, h, bytes, kFlagLease, deadline, Publish::if_absent)) {
    count(kMisses);
    return LeaseStep::holder;
  }
  return LeaseStep::again;
}

void StoreImpl::release_lease(std::string_view key) noexcept {
  if (region_.read_only() || key.size() > Store::kMaxKeyBytes) return;
  const std::uint64_t h = hash(key);
  const Slots s = slots_for(h);
  std::string bytes;
  for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
    Found f;
    const Probe p = probe<true>(key, h, s, &bytes, &f);
    if (p == Probe::retry) continue;
    if (p != Probe::lease) return;
    LeaseRecord rec;
    std::memcpy(&rec, bytes.data(), sizeof rec);
    if (rec.pid == static_cast<std::uint32_t>(::getpid())) {
      test_point(TestPoint::lease_release, key);
      unlink_entry(*f.slot, f.word);  // ours, not a lease taken since
    }
    return;
  }
}

template <class Fn>
void StoreImpl::for_each_entry(Fn&& fn) {
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  std::string key;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const std::uint64_t now = now_unix_ms();
    std::uint64_t& slot = index_[i];
    for (int attempt = 0; attempt < kMaxProbeRetries; ++attempt) {
      const std::uint64_t w = atom<std::uint64_t>(&slot).load(std::memory_order_acquire);
      if (w == 0) break;
      const std::uint64_t off = slot_offset(w);
      const int cls = chunk_class(off);
      if (cls < 0) break;
      const char* c = chunk(off);
      const std::uint32_t v1 = atom<std::uint32_t>(c).load(std::memory_order_acquire);
      if ((v1 & 1) != 0) continue;
      if (!slot_matches(w, v1)) {  // moved on (look again) or damaged (skip)
        if (atom<std::uint64_t>(&slot).load(std::memory_order_acquire) != w) continue;
        break;
      }
      const std::uint64_t meta =
          atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
      const std::uint32_t vf =
          atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
      const std::uint32_t klen = meta_key_len(meta);
      if (kChunkHeaderBytes + klen > class_bytes_[cls]) break;
      key.resize(klen);
      racy_read(key.data(), c + kChunkHeaderBytes, klen);
      std::atomic_thread_fence(std::memory_order_acquire);
      if (atom<std::uint32_t>(c).load(std::memory_order_relaxed) != v1) continue;
      fn(slot, w, std::string_view(key), meta, vf, now);
      break;
    }
  }
}

std::uint64_t StoreImpl::erase_prefix(std::string_view prefix) {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to erase");
  }
  std::uint64_t n = 0;
  for_each_entry([&](std::uint64_t& slot, std::uint64_t w, std::string_view key, std::uint64_t meta,
                     std::uint32_t vf, std::uint64_t now) {
    // A live lease stays: its holder's computation is in flight, and
    // erasing it would make its waiters compute the value again.
    const bool live_lease =
        (vf & kFlagLease) != 0 && (meta_expiry(meta) == 0 || now < meta_expiry(meta));
    if (key.starts_with(prefix) && !live_lease && unlink(slot, w) && entry_live(meta, vf, now)) {
      ++n;
    }
  });
  count(kErases, n);
  return n;
}

std::uint64_t StoreImpl::count_prefix(std::string_view prefix) {
  std::uint64_t n = 0;
  for_each_entry([&](std::uint64_t&, std::uint64_t, std::string_view key, std::uint64_t meta,
                     std::uint32_t vf, std::uint64_t now) {
    if (entry_live(meta, vf, now) && key.starts_with(prefix)) ++n;
  });
  return n;
}

std::uint64_t StoreImpl::purge_expired() {
  if (region_.read_only()) {
    fail(Errc::read_only,
         "'" + region_.path().string() + "' is open read-only; open it without read_only to purge");
  }
  std::uint64_t n = 0;
  for_each_entry([&](std::uint64_t& slot, std::uint64_t w, std::string_view key, std::uint64_t meta,
                     std::uint32_t, std::uint64_t now) {
    if (meta_expiry(meta) == 0 || now < meta_expiry(meta)) return;
    test_point(TestPoint::content_unlink, key);
    if (unlink(slot, w)) ++n;
  });
  count(kExpirations, n);
  return n;
}

void StoreImpl::for_each(std::string_view prefix, const Store::Visitor& visit) {
  std::string value;
  bool go_on = true;
  for_each_entry([&](std::uint64_t&, std::uint64_t, std::string_view key, std::uint64_t meta,
                     std::uint32_t vf, std::uint64_t now) {
    if (!go_on || !entry_live(meta, vf, now) || !key.starts_with(prefix)) return;
    // A consistent copy of the value (decompressed, blob read, checksum
    // checked) through the same path as get(), counted as neither hit nor
    // miss. The entry may have changed since the scan: report what is there.
    const std::uint64_t h = hash(key);
    const Slots s = slots_for(h);
    Found f;
    Probe p = Probe::retry;
    for (int attempt = 0; attempt < kMaxProbeRetries && p == Probe::retry; ++attempt) {
      p = probe<true>(key, h, s, &value, &f);
    }
    if (p != Probe::hit) return;
    EntryInfo info;
    info.key = key;
    info.value_bytes = value.size();
    info.stored_bytes = f.vlen_flags & kValueLenMask;
    info.compressed = (f.vlen_flags & kFlagCompressed) != 0;
    info.blob = (f.vlen_flags & kFlagBlob) != 0;
    info.expires_at_ms = f.expiry;
    go_on = visit(info, value);
  });
}

// ---------------------------------------------------------------------------
// Statistics

StoreStats StoreImpl::stats() const {
  StoreStats st;
  std::uint64_t sum[kCounterCount] = {};
  for (std::uint32_t c = 0; c < kCounterCount; ++c) {
    sum[c] = atom<std::uint64_t>(&sb_->totals[c]).load(std::memory_order_relaxed);
  }
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    const std::uint64_t owner = atom<std::uint64_t>(&procs_[i].owner).load();
    if (owner == 0) continue;
    const std::uint64_t start = atom<std::uint64_t>(&procs_[i].start_time).load();
    if (process_alive(static_cast<pid_t>(owner & 0xffffffffu), start)) {
      ++st.attached_processes;
    }
    for (std::uint32_t c = 0; c < kCounterCount; ++c) {
      sum[c] += atom<std::uint64_t>(&procs_[i].counters[c]).load(std::memory_order_relaxed);
    }
  }
  if (proc_slot_ < 0) {  // read-only or untracked: our own counters are private
    for (std::uint32_t c = 0; c < kCounterCount; ++c) {
      sum[c] += atom<std::uint64_t>(&local_counters_[c]).load(std::memory_order_relaxed);
    }
  }
  st.hits = sum[kHits];
  st.misses = sum[kMisses];
  st.puts = sum[kPuts];
  st.erases = sum[kErases];
  st.evictions = sum[kEvictions];
  st.expirations = sum[kExpirations];
  st.checksum_failures = sum[kChecksumFailures];
  st.grow_failures = sum[kGrowFailures];
  st.recoveries = atom<std::uint64_t>(&sb_->recoveries).load();
  st.blob_bytes = atom<std::uint64_t>(&sb_->blob_bytes).load();

  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed);
    if (w == 0) continue;
    const int cls = chunk_class(slot_offset(w));
    if (cls < 0) continue;
    ++st.entries;
    st.bytes += class_bytes_[cls];
  }
  st.capacity_bytes = sb_->capacity_bytes;
  st.file_bytes = region_.file_size();
  st.index_slots = slots;
  st.page_bytes = page_bytes_;
  st.pages_total = max_pages_;
  st.pages_used = atom<std::uint64_t>(&sb_->next_page).load();
  return st;
}

std::vector<ClassStats> StoreImpl::class_stats() const {
  std::vector<ClassStats> out(class_count_);
  for (std::uint32_t c = 0; c < class_count_; ++c) {
    out[c].chunk_bytes = class_bytes_[c];
    out[c].pages = atom<std::uint64_t>(&classes_[c].pages).load();
    out[c].chunks = out[c].pages * (page_bytes_ / class_bytes_[c]);
  }
  const std::uint64_t slots = bucket_count_ * kSlotsPerBucket;
  for (std::uint64_t i = 0; i < slots; ++i) {
    const std::uint64_t w = atom<std::uint64_t>(&index_[i]).load(std::memory_order_relaxed);
    if (w == 0) continue;
    const int cls = chunk_class(slot_offset(w));
    if (cls >= 0) ++out[static_cast<std::size_t>(cls)].entries;
  }
  return out;
}

std::vector<ProcessInfo> StoreImpl::processes() const {
  std::vector<ProcessInfo> out;
  for (std::uint32_t i = 0; i < kMaxProcesses; ++i) {
    const std::uint64_t owner = atom<std::uint64_t>(&procs_[i].owner).load();
    if (owner == 0) continue;
    ProcessInfo p;
    p.pid = static_cast<std::uint32_t>(owner & 0xffffffffu);
    p.alive =
        process_alive(static_cast<pid_t>(p.pid), atom<std::uint64_t>(&procs_[i].start_time).load());
    p.attached_unix_ms = atom<std::uint64_t>(&procs_[i].attached_unix_ms).load();
    out.push_back(p);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Opening (shared by Store::open and by a Store that follows its path to a
// compacted file)

std::unique_ptr<StoreImpl> open_store_impl(const std::filesystem::path& file,
                                           const StoreOptions& options) {
  if (options.default_ttl.count() < 0)
    fail(Errc::invalid_option, "default_ttl must not be negative");
  if ((options.mode & ~0777u) != 0) {
    fail(Errc::invalid_option,
         "mode must be permission bits (e.g. 0600), not " + std::to_string(options.mode));
  }
  if ((options.mode & 0600u) != 0600u) {
    fail(Errc::invalid_option, "mode must let the owner read and write (0600 or more)");
  }
  if ((options.mode & 0022u) != 0 && !options.allow_shared_access) {
    fail(Errc::invalid_option,
         "mode grants write access to group or others; set allow_shared_access to "
         "share a cache file deliberately");
  }
  Superblock sb;
  make_superblock({options.capacity_bytes, options.expected_entry_bytes, options.page_bytes}, &sb);
  Region::Options ro{options.read_only, options.create_if_missing, options.allow_shared_access,
                     options.mode};
  auto region = Region::open(file, ro, initial_file_bytes(sb), superblock_writer(sb));
  return std::make_unique<StoreImpl>(std::move(region), options);
}

Region::Initializer superblock_writer(const Superblock& sb) {
  return [sb](int fd) {
    if (::pwrite(fd, &sb, sizeof sb, 0) != static_cast<ssize_t>(sizeof sb)) {
      fail_errno(errno, "cannot write header of new cache file", "", "");
    }
    // Every page starts unassigned.
    std::string unassigned(sb.index_offset - sb.page_table_offset,
                           static_cast<char>(kPageUnassigned));
    if (::pwrite(fd, unassigned.data(), unassigned.size(),
                 static_cast<off_t>(sb.page_table_offset)) !=
        static_cast<ssize_t>(unassigned.size())) {
      fail_errno(errno, "cannot write page table of new cache file", "", "");
    }
  };
}

}  // namespace detail

// ---------------------------------------------------------------------------
// tcache::Store
//
// A Store is a handle on a path. impl_ is the file it uses now; when a
// compaction replaces the file (INVARIANTS.md, 10), the first operation that
// notices opens the path again and swaps impl_. Files moved away from stay
// open (and mapped) until the Store is destroyed: a thread may still be
// reading one, and the hot path keeps no count of readers.

namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// A Store used in the child of a fork(): its process table entry is the
// parent's, so the child's writes would not be drained by a compaction.
[[gnu::cold, gnu::noinline, noreturn]] void fail_forked(const std::filesystem::path& path) {
  detail::fail(Errc::forked, "this Store of '" + path.string() +
                                 "' was opened by the parent process before fork(); a Store "
                                 "cannot be used across fork(): open a new one in the child");
}

// Leaves the write started by StoreImpl::enter_write(), also on a throw.
struct WriteScope {
  detail::StoreImpl* impl;
  ~WriteScope() { impl->leave_write(); }
};

}  // namespace

Store::Store(std::unique_ptr<detail::StoreHandle> handle)
    : impl_(handle->files.back().get()), handle_(std::move(handle)) {}
Store::Store(Store&& o) noexcept
    : impl_(o.impl_.exchange(nullptr)), handle_(std::move(o.handle_)) {}
Store& Store::operator=(Store&& o) noexcept {
  if (this != &o) {
    impl_.store(o.impl_.exchange(nullptr));
    handle_ = std::move(o.handle_);
  }
  return *this;
}
Store::~Store() = default;

Store Store::open(const std::filesystem::path& file, const StoreOptions& options) {
  auto handle = std::make_unique<detail::StoreHandle>();
  // Resolved once: a later chdir() must not change the file we follow.
  handle->path = detail::absolute_path(file);
  handle->options = options;
  handle->files.push_back(detail::open_store_impl(handle->path, options));
  return Store(std::move(handle));
}

// Hot: every read starts here. Inlined into each caller, so that a get pays
// only the load of the compaction word and a branch (follow() is cold).
[[gnu::always_inline]] inline detail::StoreImpl* Store::reader() const {
  detail::StoreImpl* impl = impl_.load(std::memory_order_acquire);
  if (impl->forked()) [[unlikely]]
    fail_forked(handle_->path);
  if (impl->superseded()) [[unlikely]]
    impl = follow(impl, /*writer=*/false);
  return impl;
}

[[gnu::cold, gnu::noinline]] detail::StoreImpl* Store::follow(detail::StoreImpl* seen,
                                                              bool writer) const {
  using Superseded = detail::StoreImpl::Superseded;
  const std::int64_t start = steady_ns();
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    // Another thread may have moved already.
    if (detail::StoreImpl* current = impl_.load(std::memory_order_acquire); current != seen) {
      return current;
    }
    // Every check looks at the path again (lstat): a read that starts after
    // the rename must not be answered from the old file.
    const auto waited_ms = static_cast<std::uint64_t>((steady_ns() - start) / 1'000'000);
    switch (seen->check_superseded(writer, waited_ms)) {
      case Superseded::no:
        return seen;
      case Superseded::moved: {
        std::lock_guard<std::mutex> lock(handle_->mutex);
        if (detail::StoreImpl* current = impl_.load(std::memory_order_acquire); current != seen) {
          return current;
        }
        std::unique_ptr<detail::StoreImpl> next;
        try {
          next = detail::open_store_impl(handle_->path, handle_->options);
        } catch (...) {
          if (writer) throw;  // a write cannot go to the replaced file
          return seen;        // a read may: the replaced file is complete
        }
        detail::StoreImpl* n = next.get();
        handle_->files.push_back(std::move(next));
        impl_.store(n, std::memory_order_release);
        return n;
      }
      case Superseded::wait:
        break;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
  }
}

template <class Op>
auto Store::write(Op&& op) {
  detail::StoreImpl* impl = impl_.load(std::memory_order_acquire);
  if (impl->forked()) [[unlikely]]
    fail_forked(handle_->path);
  // A read-only store writes nothing (the operation throws read_only, or
  // only reads): it follows the path as a reader.
  if (impl->read_only()) return op(*reader());
  for (;;) {
    if (impl->enter_write()) {
      WriteScope scope{impl};
      return op(*impl);
    }
    impl = follow(impl, /*writer=*/true);
  }
}

std::optional<std::string> Store::get(std::string_view key) {
  std::string v;
  if (!get(key, v)) return std::nullopt;
  return v;
}
bool Store::get(std::string_view key, std::string& value) {
  detail::StoreImpl* impl = reader();
  if (impl->get(key, value)) return true;
  // A miss from a file that a compaction replaced while we read it may be a
  // blob file whose old name the compactor removed after the switch: ask the
  // new file (only misses pay for this check).
  if (impl->superseded()) [[unlikely]] {
    if (detail::StoreImpl* next = follow(impl, /*writer=*/false); next != impl) {
      return next->get(key, value);
    }
  }
  return false;
}
void Store::get_many(std::span<const std::string_view> keys, std::span<std::string> values,
                     std::span<bool> found) {
  detail::StoreImpl* impl = reader();
  impl->get_many(keys, values, found);
  if (impl->superseded()) [[unlikely]] {  // as in get(): ask the new file
    if (detail::StoreImpl* next = follow(impl, /*writer=*/false); next != impl) {
      next->get_many(keys, values, found);
    }
  }
}
bool Store::contains(std::string_view key) { return reader()->contains(key); }
void Store::put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  write([&](detail::StoreImpl& s) { s.put(key, value, ttl); });
}
bool Store::erase(std::string_view key) {
  return write([&](detail::StoreImpl& s) { return s.erase(key); });
}
void Store::clear() {
  write([&](detail::StoreImpl& s) { s.clear(); });
}
StoreStats Store::stats() const { return reader()->stats(); }
bool Store::get_or_lease(std::string_view key, std::string& value,
                         std::chrono::milliseconds lease_timeout) {
  using Step = detail::StoreImpl::LeaseStep;
  // Waiting polls: a lease is held while a (slow) value is computed, so a
  // few milliseconds of extra latency do not matter, and polling needs no
  // wake-up channel that a killed holder could leave in a bad state. Each
  // step is a write of its own, so that a compaction never waits for a
  // waiter (whose holder's put would be waiting for the compaction).
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    const Step step =
        write([&](detail::StoreImpl& s) { return s.lease_step(key, value, lease_timeout); });
    switch (step) {
      case Step::hit:
        return true;
      case Step::holder:
        return false;
      case Step::wait:
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
        break;
      case Step::again:
        break;
    }
  }
}
void Store::release_lease(std::string_view key) noexcept {
  try {
    write([&](detail::StoreImpl& s) { s.release_lease(key); });
  } catch (...) {
    // The file was compacted and the new one cannot be opened: the lease
    // went with the old file.
  }
}
std::uint64_t Store::erase_prefix(std::string_view prefix) {
  return write([&](detail::StoreImpl& s) { return s.erase_prefix(prefix); });
}
std::uint64_t Store::count_prefix(std::string_view prefix) {
  return reader()->count_prefix(prefix);
}
std::uint64_t Store::purge_expired() {
  return write([&](detail::StoreImpl& s) { return s.purge_expired(); });
}
std::vector<ClassStats> Store::class_stats() const { return reader()->class_stats(); }
VerifyReport Store::verify() const { return reader()->verify(false); }
VerifyReport Store::repair() {
  return write([&](detail::StoreImpl& s) {
    if (s.read_only()) {
      detail::fail(Errc::read_only, "'" + path().string() +
                                        "' is open read-only; open it without read_only to repair");
    }
    return s.verify(true);
  });
}
std::vector<ProcessInfo> Store::processes() const { return reader()->processes(); }
void Store::for_each(std::string_view prefix, const Visitor& visit) {
  reader()->for_each(prefix, visit);
}
void Store::flush() { reader()->flush(); }
const std::filesystem::path& Store::path() const noexcept { return handle_->path; }
std::size_t Store::max_value_bytes() const noexcept {
  return impl_.load(std::memory_order_acquire)->max_value_bytes();
}

}  // namespace tcache
