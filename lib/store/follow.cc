// store/follow.cc: a user's side of compaction (doc/INVARIANTS.md, 10; the
// compactor is lib/compact/). Writes announce themselves (enter_write,
// leave_write) so that a compactor can drain them; a user that finds its
// file superseded decides what to do (check_superseded) and Store::follow
// moves the handle to the file now at the path.
//
// Layer 10 (store_impl.h, "Rooms"): calls attach.cc (open_store_impl).
// Safe from any thread of any process.

#include <algorithm>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"

namespace tcache {
namespace detail {

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
  // count, or we see its switching phase (doc/INVARIANTS.md, 10).
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
      // Appended, not one sum of temporaries: GCC 12 at -O3 warns
      // (-Wrestrict, a false positive) about the sum here.
      std::string what = "'";
      what += region_.path().string();
      what += "' was compacted by process ";
      what += std::to_string(compactor_pid(w));
      what +=
          " under another name (this name is a hard link or a bind mount of the old file); "
          "writes here would be lost. Open the cache file by the name it was compacted "
          "under, and remove or recreate this name";
      fail(Errc::file_replaced, what);
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

}  // namespace detail

namespace {

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

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

}  // namespace tcache
