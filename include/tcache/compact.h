// tcache/compact.h: rewriting a cache file with only its live entries, and
// swapping it in under the running programs (the library side of
// `tcache-tool compact`).
//
// What compact() does: it creates a new file beside the old one (under a
// temporary name), copies every live entry into it (key, value, expiry:
// the remaining TTL is kept), copies again whatever changed meanwhile,
// renames the new file over the old one, and every tcache::Store that has
// the old file open moves to the new one at its next operation. Expired
// entries, entries that get() would never find, and the space that erased
// and evicted entries left are not copied, so the new file is as small as
// its live entries allow. Entries are copied byte for byte (compressed or
// not), checksum included: one that fails its checksum is a miss in both
// files. Single-flight leases are copied (their waiters go on waiting for
// the holder's value). Optionally the new file gets another capacity.
//
// Thread and process safety: compact() may run while any number of threads
// and processes use the file through tcache::Store, and needs nothing from
// them. It may start threads of its own (CompactOptions::threads), which
// it joins before it returns or throws: `progress` is called from the
// calling thread, `logger` from any of them, one call at a time. They go on reading and writing
// during the copy. For the final phase (copying what changed since, then the rename) their writes
// wait and their reads go on from the old file; then each Store moves to the new file. Every entry
// the old file holds when the final phase starts is in the new one, with its value and expiry,
// unless the new file had to evict it (CompactResult::evicted; only when the new capacity is too
// small; a disk too full for the new file fails the compaction with no_space instead, and the old
// file stays in use as it was): nothing acknowledged before or during the compaction is lost. The
// old file is never truncated; a process keeps its mapping of it (and so its disk space) until it
// closes its Store. One compaction of a file runs at a time: another compact() of it fails with
// Errc::busy. The argument is in doc/INVARIANTS.md, invariant 10.
//
// A compactor killed (or failing) at any point leaves the old file in use
// and intact: its users carry on with it (writers that were waiting see
// that the compactor died and clear its state), and the unfinished new
// file is deleted by the next process that opens the path for writing. A
// compactor that is stopped (SIGSTOP, a debugger) in its final phase is
// broken off by the first writer that notices (a compactor that is merely
// slow, after 30 seconds), and fails with Errc::busy. A writer stopped in
// the middle of a write ends the final phase's wait at once, and one that
// is slow to finish ends it after CompactOptions::drain_timeout: the
// compaction fails with Errc::busy naming the process and leaves the file
// as it was, and the waiting writers go on with it. No write waits without
// bound.
//
// Names: the rename replaces one name, so every process must use the file
// by the same path (the same directory, however reached, and the same file
// name): compact() refuses with Errc::busy, naming the process, while a
// process uses it through a hard link or a bind mount (docker -v of the
// file or of another directory holding it), and while the file has more
// than one hard link. A process that opens it by another name during the
// final phase gets Errc::file_replaced from its next write (its reads go on
// from the old file). A relative path is resolved once, when a Store is
// opened (and when compact() starts), so a later chdir() changes nothing.
//
// Processes that found the file's process table full (256 processes) and
// work without an entry make compact() fail with Errc::busy while they
// live; once they are dead (killed too) they block nothing.
//
// Cost: it reads every index slot of the old file and the entry it
// publishes (in index order, so the entries are read at random, fetched a
// few slots ahead), writes the new file page by page with pwrite, and
// needs 16 bytes of memory per index slot of the old file (about 70 MB for
// a 1 GiB file sized for 256-byte entries), plus the disk space of both
// files until the last process that has the old one open closes it. With
// more than one thread (CompactOptions::threads) the copy and the final
// pass's scan are split by ranges of slots.
//
// Exceptions: compact() throws tcache::Error: busy (another compaction, the
// process table is full, a live process without a table entry, a user on
// another name or a second hard link, a writer stopped mid-write or slower
// than drain_timeout, or writers broke the final phase off), file_replaced
// (`file` is another name of a file that was compacted under its own name),
// io_error,
// no_space (the disk, a quota or RLIMIT_FSIZE cannot hold the new file: the cache file is
// unchanged and the new file deleted; free disk space and compact again), invalid_option (a
// capacity out of range or too small for the file's geometry, a drain_timeout that is not
// positive), and what Store::open throws for the
// file (unsafe_permissions, not_a_cache_file, version_mismatch, corrupt_file).

#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>

#include "tcache/error.h"
#include "tcache/export.h"

namespace tcache {

enum class CompactPhase {
  copying,     // every entry, while the file is used as usual (done/total: index slots)
  switching,   // writers now wait; draining writes in flight (no counts)
  final_copy,  // what changed during copying (done/total: index slots)
  syncing,     // writing the new file to disk, renaming it into place (no counts)
};

struct CompactProgress {
  CompactPhase phase = CompactPhase::copying;
  std::uint64_t done = 0;
  std::uint64_t total = 0;  // 0 when the phase has no count
};

struct CompactOptions {
  // Capacity of the new file (StoreOptions::capacity_bytes); 0 = the old
  // file's. With the same capacity the new file keeps the old geometry
  // (page size, index size); with another one the index is scaled with the
  // capacity and the page size is chosen for it unless the old file's page
  // size was set by hand.
  std::uint64_t capacity_bytes = 0;
  // StoreOptions::allow_shared_access, for opening the file.
  bool allow_shared_access = false;
  // Write the new file to disk (msync, fsync) before renaming it over the
  // old one, and fsync the directory after, so that a power failure leaves
  // one complete file under the name. false is faster and still safe
  // against killed processes.
  bool sync = true;
  // Threads that copy entries and look for changes (the calling thread
  // and threads it starts and joins); 0 = one per core, at most 4, for a
  // large file. Each copying thread fills pages of its own, so each may
  // leave a page per size class partly used: fewer threads copy where
  // that could make the new file run out of pages (and evict), and with 0
  // more than one copies only where that is at most 1/64 of the file.
  unsigned threads = 0;
  // How long the final phase waits for writes in flight to finish (each is
  // one put, erase, ...; other writers wait meanwhile) before it gives up
  // with Errc::busy, leaving the file as it was. A writer found stopped
  // (SIGSTOP, a debugger) in the middle of a write ends the wait at once.
  // Must be positive.
  std::chrono::milliseconds drain_timeout{10'000};
  // Called now and then from the calling thread; for progress bars.
  std::function<void(const CompactProgress&)> progress{};
  // One-line diagnostics (StoreOptions::logger), from any of the copying
  // threads, one call at a time.
  std::function<void(std::string_view)> logger{};
};

struct CompactResult {
  std::uint64_t entries = 0;   // live entries in the new file
  std::uint64_t recopied = 0;  // keys copied again (or removed) because they changed meanwhile
  std::uint64_t dropped = 0;   // expired (or unreachable, or damaged blob) entries left behind
  std::uint64_t evicted = 0;   // live entries the new file had no room for
  std::uint64_t file_bytes_before = 0;  // size of the old file
  std::uint64_t file_bytes_after = 0;   // size of the new file
  std::uint64_t capacity_bytes_before = 0;
  std::uint64_t capacity_bytes_after = 0;
  // How long the final phase kept writers waiting (from the switch to the
  // rename).
  std::chrono::milliseconds writers_paused{0};
};

// Compacts the cache file at `file` (see the top of this header). Safe to
// call from any thread and process while others use the file.
TCACHE_API CompactResult compact(const std::filesystem::path& file,
                                 const CompactOptions& options = {});

}  // namespace tcache
