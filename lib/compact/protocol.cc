// compact/protocol.cc: tcache::compact (tcache/compact.h), the compactor's
// side of doc/INVARIANTS.md, invariant 10: the multi-process handshake (claim,
// drain, switch, rename). The copy itself is the copier's (copier.h); the
// users' side (enter_write, check_superseded, Store::follow) is the
// store's.
//
// Outline:
//   1. Open the file like any writer and claim it: CAS Superblock::compaction
//      from 0 to (our pid and start time | copying).
//   2. Create the new file under `<file>.tmp.<pid>.<random>` with the same
//      hash seed (so key hashes and chunk checksums carry over unchanged)
//      and the old geometry or one for the new capacity; its blob files go
//      to `<file>.blobs/` (ids are random, so names never collide).
//   3. Copy pass (copier.cc): every live entry, remembering what each slot
//      held. Users keep reading and writing.
//   4. Switch: CAS copying -> switching; wait until every live process's
//      ProcessEntry::writes is 0. From then on nothing writes to the file
//      (writers wait in Store::follow), except readers unlinking expired
//      entries, which removes nothing live.
//   5. Final pass (final_pass.cc): every key whose slots changed since
//      step 3 is made to hold in the new file what get() finds in the old.
//   6. Write the new file to disk, CAS switching -> committed, rename it
//      over the path. Users move at their next operation.
// Any failure before the rename resets the compaction word and deletes the
// new file; a killed compactor is cleaned up by the users (the store) and by
// the next writable open (region.cc).
//
// Thread safety: compact() uses its own StoreImpls and no shared state; any
// number of calls may run (one per file at a time: the claim). Within one,
// the copier's threads are its own (copier.h).

#include "tcache/compact.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "compact/copier.h"
#include "format/geometry.h"
#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache {
namespace detail {

namespace {

// The path names another file than the one we opened: open it again.
struct Replaced {};

void back_off(std::chrono::microseconds& pause) {
  std::this_thread::sleep_for(pause);
  pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
}

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

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

// Step 1: claims the file for compactor `id` (pid and start time). Throws
// Replaced if a dead compactor renamed another file over the path.
void claim(std::uint64_t* word, std::uint64_t id, const std::string& path, std::uint64_t device,
           std::uint64_t inode) {
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

// Step 4: waits until no live process has a write in flight on the file.
// Throws busy when a process with a write in flight is stopped, or after
// `timeout`.
void drain(std::span<ProcessEntry> procs, std::uint64_t* word, std::uint64_t switching,
           const std::string& path, std::chrono::milliseconds timeout) {
  const std::int64_t deadline = steady_ms() + timeout.count();
  for (ProcessEntry& e : procs) {
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

// Throws busy unless every live user of `from` named the file as we did
// (StoreImpl::named_alike) and the file has one link: only then does every
// user follow our rename (doc/INVARIANTS.md, 10).
void check_names(const StoreImpl& from, const std::string& path) {
  const std::span<ProcessEntry> procs = from.process_table();
  for (std::uint32_t i = 0; i < procs.size(); ++i) {
    if (static_cast<int>(i) == from.process_slot()) continue;
    const ProcessEntry& e = procs[i];
    const std::uint64_t owner = atom<std::uint64_t>(&e.owner).load(std::memory_order_acquire);
    if (owner == 0) continue;
    const auto pid = static_cast<pid_t>(owner & 0xffffffffu);
    if (from.named_alike(e)) continue;
    if (!process_alive(pid, atom<std::uint64_t>(&e.start_time).load())) continue;
    fail(Errc::busy,
         "process " + std::to_string(pid) + " opened '" + path +
             "' by another name (a hard link, or a bind mount of the file or its directory "
             "such as docker -v) and would not follow the compacted "
             "file; nothing was changed. Compact when it has closed the file, or "
             "have every process open it by the same path");
  }
  struct stat st {};
  if (::fstat(from.region().fd(), &st) != 0) fail_errno(errno, "cannot stat", path, "");
  if (st.st_nlink != 1) {
    fail(Errc::busy,
         "'" + path + "' has " + std::to_string(st.st_nlink) +
             " hard links; a compaction replaces one name only, and whoever uses "
             "another would keep the old file. Remove the other links (find -samefile), "
             "then compact again");
  }
}

// Throws busy if processes without a process table entry (Superblock::
// untracked_processes) are alive; `when`: what they did, for the message.
void check_untracked(StoreImpl& from, const std::string& path, const char* when) {
  if (from.untracked_all_dead()) return;
  fail(Errc::busy, "'" + path + "' is used by processes that " + when +
                       " (its process table was full), whose writes a compaction cannot "
                       "drain; compact it when they have closed it");
}

// Steps 1 to 6 on the file at `file`, once. Throws Replaced if another
// compaction replaced the file after we opened it.
CompactResult compact_once(const std::filesystem::path& file, const CompactOptions& options) {
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
  if (from->process_slot() < 0) {
    fail(Errc::busy, "'" + path + "' has 256 processes attached (its process table is full); " +
                         "compact it when fewer use it");
  }
  check_untracked(*from, path, "found its process table full");
  struct stat st {};
  if (::fstat(from->region().fd(), &st) != 0) fail_errno(errno, "cannot stat", path, "");
  const std::uint32_t mode = st.st_mode & 0777;
  const std::uint64_t device = from->region().device();
  const std::uint64_t inode = from->region().inode();

  std::uint64_t* const word = from->compaction_word();
  const auto pid = static_cast<std::uint64_t>(::getpid());
  const std::uint64_t id = compaction_word(pid, process_start_time(static_cast<pid_t>(pid)), 0);
  claim(word, id, path, device, inode);

  CompactResult result;
  std::unique_ptr<StoreImpl> to;
  std::string tmp;
  try {
    check_names(*from, path);
    // Step 2: the new file.
    const StoreImpl::Geometry old = from->geometry();
    const std::uint64_t capacity =
        options.capacity_bytes != 0 ? options.capacity_bytes : old.capacity_bytes;
    std::uint32_t page = old.page_bytes;
    std::uint64_t buckets = old.bucket_count;
    if (capacity != old.capacity_bytes) {
      if (page == automatic_page_bytes(old.capacity_bytes)) page = 0;
      __extension__ using u128 = unsigned __int128;
      buckets =
          static_cast<std::uint64_t>(static_cast<u128>(buckets) * capacity / old.capacity_bytes);
    }
    Superblock sb;
    make_superblock({capacity, 256, page, std::max<std::uint64_t>(buckets, 2), old.hash_seed}, &sb);
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
    result.capacity_bytes_before = old.capacity_bytes;
    result.capacity_bytes_after = capacity;
    result.file_bytes_before = from->region().file_size();

    // Step 3: copy while users carry on; write the bulk to disk meanwhile.
    Copier copier(*from, *to, options);
    copier.copy();
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
    drain(from->process_table(), word, switching, path, options.drain_timeout);
    // Users that attached since the first check: from now on, one that
    // attaches finds the file superseded before it writes.
    check_names(*from, path);

    // Step 5: what changed.
    result.recopied = copier.copy_changes();
    to->add_counters_of(*from);

    // Step 6: to disk, commit, rename.
    if (options.progress) options.progress(CompactProgress{CompactPhase::syncing, 0, 0});
    if (options.sync) {
      to->flush();
      fsync_or_fail(to->region().fd(), tmp);
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

    result.dropped = copier.dropped();
    result.evicted = copier.evicted();
    result.file_bytes_after = to->region().file_size();
    result.entries = to->published_slots();
    copier.remove_old_blob_names();
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

}  // namespace

}  // namespace detail

CompactResult compact(const std::filesystem::path& file_as_given, const CompactOptions& options) {
  if (options.drain_timeout.count() <= 0) {
    detail::fail(Errc::invalid_option, "CompactOptions::drain_timeout must be positive");
  }
  const std::filesystem::path file = detail::absolute_path(file_as_given);
  for (int attempt = 0;; ++attempt) {
    try {
      return detail::compact_once(file, options);
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
