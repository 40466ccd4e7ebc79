// store/attach.cc: opening a file and being one of its users. Mapping and
// validating it (the constructor), the exclusive opener's hand-off to
// recovery, the process table (attach, detach, reclaiming dead processes'
// entries, working untracked when it is full), and open_store_impl, which
// Store::open and Store::follow share.
//
// Layer 9 (store_impl.h, "Rooms"): calls recovery (recover) and walk.cc
// (fold_counters). The constructor and open_attach run before the StoreImpl
// is shared; the rest is safe from any thread of any process.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "format/geometry.h"
#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"

namespace tcache::detail {

namespace {

constexpr std::uint64_t kOwnerLive = 1ull << 32;
constexpr std::uint64_t kOwnerFolding = 1ull << 33;

}  // namespace

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
  // the same rename (doc/INVARIANTS.md, 10).
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
  // switch while we are counted here (seq_cst: doc/INVARIANTS.md, 10). The
  // shared lock, taken before we are counted and held until we are not,
  // tells a compactor whether anyone counted is still alive.
  untracked_locked_ = lock_untracked_byte(F_RDLCK, /*wait=*/true);
  untracked_ = true;
  atom<std::uint64_t>(&sb_->untracked_processes).fetch_add(1, std::memory_order_seq_cst);
  atom<std::uint64_t>(&sb_->needs_recovery).store(1);
  log("process table full (" + std::to_string(kMaxProcesses) +
      " processes); this process's statistics stay private");
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
  // count is of the dead only (doc/INVARIANTS.md, 10).
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

}  // namespace tcache::detail
