// compact/final_pass.cc: the final pass of a compaction (step 5 of
// protocol.cc's outline; doc/INVARIANTS.md, 10, "Final pass"), after the switch
// and the drain: every slot whose chunk or chunk version differs from what
// the copy pass (copier.cc) remembered names keys that may have changed
// (the one it held then, found by its hash, and the one it holds now);
// each such key is looked up in the old file as get() would and copied, or
// removed from the new file if it is not live there.
//
// Thread safety: see copier.h. Only readers unlinking expired entries
// change the old file meanwhile.

#include <algorithm>
#include <thread>

#include "compact/copier.h"
#include "util/fail.h"
#include "util/proc.h"

namespace tcache::detail {

namespace {

// The final pass reads a chunk version per slot, scattered over the file.
constexpr std::uint64_t kFinalPrefetchDistance = 48;

}  // namespace

bool Copier::resolve(const std::string& key, std::uint64_t h, EntryCopy& r) {
  // The index's lookup (the read-only half of StoreImpl::probe, which
  // itself would unlink, set reference bits and decode: see find_copy).
  // get() answers from the first copy of the key; so do we.
  r = EntryCopy{};
  StoreImpl::KeyRead l = StoreImpl::KeyRead::unstable;
  for (int attempt = 0; attempt < kFinalRetries && l == StoreImpl::KeyRead::unstable; ++attempt) {
    if (attempt > 0) std::this_thread::yield();
    l = from_.find_copy(key, h, r);
  }
  if (l == StoreImpl::KeyRead::unstable) {
    fail(Errc::busy, "an entry of '" + from_.path().string() +
                         "' kept changing after writers were stopped; compaction abandoned");
  }
  note_blob(r);
  return l == StoreImpl::KeyRead::entry && live(r, now_unix_ms());
}

void Copier::find_changes(std::uint64_t begin, std::uint64_t end, std::vector<std::uint64_t>& todo,
                          std::atomic<std::uint64_t>& done, const std::atomic<bool>& stop,
                          bool report) const {
  std::uint64_t counted = begin;  // slots added to `done`
  EntryCopy r;
  for (std::uint64_t i = begin; i < end; ++i) {
    if (tick(i, counted, done, stop, report, CompactPhase::final_copy) == Tick::stop) return;
    // The chunk's first line: its version.
    if (i + kFinalPrefetchDistance < end) from_.prefetch_slot_chunk(i + kFinalPrefetchDistance, 1);
    const std::uint64_t w = from_.slot_word(i);
    const Seen& seen = seen_[i];
    if (w == 0 && seen.chunk == 0) continue;
    if (w != 0 && seen.chunk != 0 && slot_tag(w) == hash_tag(seen.h) &&
        slot_offset(w) / kChunkAlign == (seen.chunk & kAddrMask) &&
        seen_chunk(w, from_.chunk_version(w)) == seen.chunk) {
      continue;
    }
    // Changed since the copy pass: the key it held then (found through its
    // hash) and the key it holds now.
    if (seen.chunk != 0) todo.push_back(seen.h);
    if (w != 0) {
      const SlotRead st = read_slot_retrying(i, r, kFinalRetries);
      if (st == SlotRead::unstable) {
        fail(Errc::busy, "an index slot of '" + from_.path().string() +
                             "' kept changing after writers were stopped; compaction abandoned");
      }
      if (st == SlotRead::entry) todo.push_back(r.h);
    }
  }
  done.fetch_add(end - counted);
}

std::uint64_t Copier::copy_changes() {
  // The slots are compared in copy_threads() threads; the keys that
  // changed (few) are synced in this one.
  const std::uint64_t n = old_.slots;
  const unsigned threads = copy_threads(options_.threads, n);
  std::vector<std::vector<std::uint64_t>> found(threads);
  std::atomic<std::uint64_t> done{0};
  std::atomic<bool> stop{false};
  run_ranges(threads, n, stop,
             [&](unsigned t, std::uint64_t begin, std::uint64_t end, bool in_caller) {
               find_changes(begin, end, found[t], done, stop, in_caller);
             });
  std::vector<std::uint64_t> todo;
  for (const std::vector<std::uint64_t>& f : found) todo.insert(todo.end(), f.begin(), f.end());
  // A dropped expired entry whose pair holds its key's tag in another slot
  // may have hidden a copy of the key that the new file would now show.
  for (const std::uint64_t i : dropped_slots_) {
    const std::uint64_t h = seen_[i].h;
    const int pos = from_.pair_position(i, h);
    if (from_.pair_has_tag(h, 0, pos) ||
        from_.pair_has_tag(h, pos + 1, StoreImpl::kPairPositions)) {
      todo.push_back(h);
    }
  }
  EntryCopy r;
  todo.insert(todo.end(), queued_.begin(), queued_.end());
  std::sort(todo.begin(), todo.end());
  todo.erase(std::unique(todo.begin(), todo.end()), todo.end());
  // Every key of those hashes, in either file, is made to hold in the new
  // file what get() finds in the old one: removals first, so that the
  // copies find the room the removed entries leave in their pairs.
  std::uint64_t synced = 0;
  std::vector<std::string> keys;
  std::vector<EntryCopy> copies;
  for (const std::uint64_t h : todo) {
    keys.clear();
    from_.keys_with_hash(h, kFinalRetries, keys);
    to_.keys_with_hash(h, kFinalRetries, keys);
    for (const std::string& key : keys) {
      if (resolve(key, h, r)) {
        copies.push_back(std::move(r));
      } else {
        to_.remove_key(key, h);
      }
      ++synced;
    }
  }
  for (const EntryCopy& copy : copies) import(copy, kAnySlot);
  progress(CompactPhase::final_copy, n, n);
  return synced;
}

}  // namespace tcache::detail
