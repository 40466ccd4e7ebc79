// tcache/store.h: a persistent, memory-mapped cache shared by processes.
//
// Thread safety: a Store may be used by any number of threads at once; every
// member function below is safe to call concurrently with every other,
// except the move operations and the destructor, which need exclusive access.
//
// Process safety: any number of processes may open the same file at once and
// call get/put/erase/clear/stats concurrently. The data path takes no lock:
// every change is one compare-and-swap on one 64-bit word, so a process
// killed at any instruction leaves either a complete, published entry or a
// leaked chunk that the next exclusive open reclaims, or repair() (`tcache-tool
// verify --repair`) at once while others use the file. See doc/FORMAT.md for the layout and
// doc/INVARIANTS.md for the concurrency protocol.
//
// Compaction (tcache/compact.h) may replace the file under a Store at any
// time: the Store then moves to the new file at its next operation (reads
// of the old file in progress finish there; writes wait for the short
// final phase of the compaction, then go to the new file). The files a
// Store has moved away from stay open and mapped, and so keep their disk
// space, until the Store is destroyed; a long-lived process that outlives
// many compactions may reopen its Store now and then to let them go. A
// Store resolves a relative path once, at open: a later chdir() changes
// neither its file, nor its blob files, nor the file it follows. Open the
// file by one path in every process: a compaction refuses while a process
// uses it through a hard link or a bind mount (it would not follow the
// rename), and a write through a name made during a compaction's final
// phase throws Errc::file_replaced.
//
// Caveat, fork(): a Store cannot be used across fork(). In the child, every
// operation on a Store inherited from the parent throws Errc::forked, and
// destroying it leaves the parent's attachment alone (the parent's Store
// stays valid); the child opens its own Store.
//
// Exceptions: functions that may throw say so; they throw only tcache::Error.
// A miss is not an error.

#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tcache/error.h"
#include "tcache/export.h"

namespace tcache {

namespace detail {
class StoreImpl;
struct StoreHandle;
}  // namespace detail

// Options read when a file is opened. Geometry options (capacity_bytes,
// expected_entry_bytes, page_bytes) take effect only when open() creates the
// file; an existing file keeps the geometry it was created with.
struct StoreOptions {
  // Hard ceiling of the cache file's size in bytes. The file starts small and
  // grows page by page up to this; past it, puts evict. Range 1 MiB .. 1 TiB.
  std::uint64_t capacity_bytes = 1ull << 30;
  // TTL used by put() when it is given none; 0 = entries never expire.
  std::chrono::milliseconds default_ttl{0};
  // Permissions of a newly created file (umask is not applied). Must not
  // grant write to group/other unless allow_shared_access is set.
  std::uint32_t mode = 0600;
  // Open for reading only: put/erase/clear throw Errc::read_only. Stats
  // counters of a read-only process are kept in memory, not in the file.
  bool read_only = false;
  // Accept a file owned by another user or writable by group/other (by
  // default such a file is refused with Errc::unsafe_permissions). The blob
  // directory and blob files then follow the cache file's mode and group,
  // so that every user who may write the file may write and erase large
  // values (README, "Sharing a file between users").
  bool allow_shared_access = false;
  // Create the file if it does not exist (else Errc::io_error, ENOENT).
  bool create_if_missing = true;
  // Typical key + value size; sizes the hash index at creation so that
  // capacity_bytes / expected_entry_bytes entries fit. Range 16 .. 1 MiB.
  std::uint32_t expected_entry_bytes = 256;
  // Slab page size in bytes at creation, a power of two from 64 KiB to
  // 16 MiB; 0 = chosen from capacity_bytes (1 MiB for large files).
  std::uint32_t page_bytes = 0;
  // Values of at least this many bytes are LZ4-compressed when that saves
  // space; 0 = never compress.
  std::uint32_t compress_threshold = 4096;
  // Receives one-line diagnostics (e.g. "disk full, evicting instead of
  // growing"). Called from the thread that noticed; must be thread-safe.
  // Empty = silent. The library never prints on its own.
  std::function<void(std::string_view)> logger{};
};

// A point-in-time summary. Counters are summed over every process that has
// used the file (live processes' own lines plus the totals of those gone).
struct StoreStats {
  std::uint64_t entries = 0;         // live index slots (expired ones until swept)
  std::uint64_t bytes = 0;           // bytes of the chunks those entries occupy
  std::uint64_t blob_bytes = 0;      // bytes in blob files (values larger than a page)
  std::uint64_t capacity_bytes = 0;  // the file's ceiling
  std::uint64_t file_bytes = 0;      // current size of the file
  std::uint64_t index_slots = 0;     // slots in the hash index
  std::uint64_t page_bytes = 0;      // slab page size
  std::uint64_t pages_total = 0;     // pages the file may hold at capacity
  std::uint64_t pages_used = 0;      // pages carved into size classes
  std::uint64_t hits = 0;
  std::uint64_t misses = 0;
  std::uint64_t puts = 0;
  std::uint64_t erases = 0;
  std::uint64_t evictions = 0;           // entries removed to make room
  std::uint64_t expirations = 0;         // entries found expired and removed
  std::uint64_t checksum_failures = 0;   // entries whose checksum did not match (a miss)
  std::uint64_t grow_failures = 0;       // times the file could not grow (disk full, limit)
  std::uint64_t recoveries = 0;          // times a crashed user's leftovers were reclaimed
  std::uint64_t attached_processes = 0;  // processes with the file open now
};

// One slab size class, as Store::class_stats reports it.
struct ClassStats {
  std::uint32_t chunk_bytes = 0;  // every chunk of the class has this size
  std::uint64_t pages = 0;        // pages carved into this class
  std::uint64_t chunks = 0;       // chunks in those pages
  std::uint64_t entries = 0;      // chunks the index reaches (in use)
};

// A process in the file's process table.
struct ProcessInfo {
  std::uint32_t pid = 0;
  bool alive = false;  // false: it died without detaching
  std::uint64_t attached_unix_ms = 0;
};

// What Store::verify found.
struct VerifyReport {
  std::uint64_t entries = 0;            // index slots checked
  std::uint64_t damaged_entries = 0;    // bad pointer, torn, overrun, wrong bucket, checksum, blob
  std::uint64_t duplicate_entries = 0;  // a key present twice
  std::uint64_t broken_free_lists = 0;  // size classes whose free list is damaged
  // Chunks nothing reaches (a process died mid-write). While other
  // processes write (concurrent), only the chunks dead writers held.
  std::uint64_t leaked_chunks = 0;
  std::uint64_t uncarved_pages = 0;    // pages claimed but never carved
  std::uint64_t dead_processes = 0;    // processes that died without detaching
  std::uint64_t repaired = 0;          // slots repair() unpublished
  std::uint64_t reclaimed_chunks = 0;  // leaked chunks repair() returned to free lists
  // Other processes were using the file: free lists and pages change under
  // the walk and were not judged; of the leaks, only chunks that dead
  // writers held were.
  bool concurrent = false;
  std::vector<std::string> problems;  // one line each, at most 100
  bool clean() const {
    return damaged_entries + duplicate_entries + broken_free_lists + leaked_chunks +
               uncarved_pages + dead_processes ==
           0;
  }
};

// One entry, as Store::for_each reports it.
struct EntryInfo {
  std::string_view key;
  std::uint64_t value_bytes = 0;    // the value's size, as get() returns it
  std::uint64_t stored_bytes = 0;   // what it takes in its chunk (compressed, or a blob ref)
  bool compressed = false;          // stored LZ4-compressed
  bool blob = false;                // stored in a blob file beside the cache file
  std::uint64_t expires_at_ms = 0;  // Unix ms; 0 = never
};

class TCACHE_API Store {
 public:
  using Visitor = std::function<bool(const EntryInfo& info, std::string_view value)>;

  // Largest key accepted by put (longer: Errc::key_too_large).
  static constexpr std::size_t kMaxKeyBytes = 16 * 1024;

  // Opens (or creates, per options) the cache file at `file`.
  // Throws Error: invalid_option, unsafe_permissions, not_a_cache_file,
  // version_mismatch, corrupt_file, io_error; unless read_only also
  // unsupported_file_system (no fallocate(2) there) and no_space (a sparse
  // copy whose holes the disk has no room for). Safe to call from any thread
  // and process at the same time as others open the same file: creation is
  // atomic (a fully initialised file is renamed into place).
  static Store open(const std::filesystem::path& file, const StoreOptions& options = {});

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Detaches this process from the file (its stats fold into the totals).
  // In a child of fork() that inherited the Store, detaches nothing.
  ~Store();

  // Looks `key` up. Returns the value, or std::nullopt on a miss (absent,
  // expired, or failing its checksum). Throws only std::bad_alloc.
  std::optional<std::string> get(std::string_view key);
  // As above, writing into `value` (its buffer is reused); false on a miss,
  // in which case `value` is unspecified.
  bool get(std::string_view key, std::string& value);
  // Batched lookup: values[i] / found[i] for keys[i]. Overlaps the memory
  // misses of many keys. The three spans must have the same size (else
  // Error(invalid_option)); `found` takes a bool array, not vector<bool>.
  void get_many(std::span<const std::string_view> keys, std::span<std::string> values,
                std::span<bool> found);
  // True if `key` is present and unexpired (no value copy, no hit counted).
  bool contains(std::string_view key);

  // Stores `value` under `key`, replacing any previous value. `ttl` of zero
  // means options.default_ttl. When the file is full, older entries are
  // evicted (CLOCK). Throws Error: read_only, key_too_large, value_too_large,
  // no_space (no room in this size class even after eviction), corrupt_file.
  void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl = {});
  // Removes `key`. Returns whether it was present. Throws Error: read_only.
  bool erase(std::string_view key);
  // Removes every entry. Concurrent puts may survive it. Throws Error: read_only.
  void clear();
  // Every call that writes (put, erase, clear, erase_prefix, purge_expired,
  // repair, get_or_lease) may also throw what open() throws if the file was
  // compacted and the new file at path() cannot be opened (e.g. it was
  // deleted and create_if_missing is false), or Errc::file_replaced if it
  // was compacted under another name than path() (a hard link made during
  // the compaction: open the file by the name it was compacted under);
  // nothing was written then. Every call except the move operations,
  // path() and max_value_bytes() throws Errc::forked in a child process that
  // inherited this Store through fork() (release_lease() ignores it), also
  // those documented as never throwing.

  // Removes every entry whose key starts with `prefix` (walks the index:
  // O(index size)). Returns how many live entries it removed. Entries put
  // concurrently may survive it. Live leases stay (a computation in flight:
  // its waiters keep waiting for its value). Throws Error: read_only.
  std::uint64_t erase_prefix(std::string_view prefix);
  // Counts live entries whose key starts with `prefix` (walks the index).
  // Never throws.
  std::uint64_t count_prefix(std::string_view prefix);

  // Removes every expired entry now (they are otherwise removed lazily,
  // when looked up or when their slot is needed). Returns how many.
  // Walks the index. Throws Error: read_only.
  std::uint64_t purge_expired();

  // Calls visit(info, value) for each live entry (not expired, not a lease)
  // whose key starts with `prefix`, in index order, until visit returns
  // false. Values are read as get() reads them (decompressed, checksum
  // checked) but count as neither hits nor misses. Entries put or erased
  // during the walk may or may not be seen; each one seen is complete.
  // `info.key` and `value` are valid during the call only. Walks the index;
  // throws only what visit throws (and std::bad_alloc).
  void for_each(std::string_view prefix, const Visitor& visit);

  // Single flight. Returns true with the value if `key` is present. On a
  // miss, either takes the key's lease and returns false (the caller must
  // now compute the value and put() it, which replaces the lease, or call
  // release_lease() if it cannot), or, while another thread or process
  // holds the lease, waits for its value. A lease lasts at most
  // lease_timeout; one whose holder died (killed, crashed) or whose deadline
  // passed is taken over, so waiting always ends. Readers (get, contains)
  // see a lease as a miss. Leases of a store opened read_only are never
  // taken: the call returns false at once on a miss.
  // Throws Error: invalid_option (lease_timeout <= 0), key_too_large, and
  // what put() throws while writing the lease (no_space, corrupt_file).
  bool get_or_lease(std::string_view key, std::string& value,
                    std::chrono::milliseconds lease_timeout = std::chrono::seconds(60));
  // Removes this process's lease on `key`, if it holds one. Never throws.
  void release_lease(std::string_view key) noexcept;

  // get_or_lease + compute + put: the value of `key`, computed by
  // compute() (returning something convertible to std::string_view) in at
  // most one caller at a time across threads and processes. If compute
  // throws, the lease is released and the exception propagates.
  template <class Compute>
  std::string get_or_compute(std::string_view key, Compute&& compute,
                             std::chrono::milliseconds ttl = {},
                             std::chrono::milliseconds lease_timeout = std::chrono::seconds(60)) {
    std::string value;
    if (get_or_lease(key, value, lease_timeout)) return value;
    try {
      value = std::string(compute());
    } catch (...) {
      release_lease(key);
      throw;
    }
    try {
      put(key, value, ttl);
    } catch (...) {
      release_lease(key);
      throw;
    }
    return value;
  }

  // Occupancy of every size class, smallest first (walks the index).
  // Never throws except std::bad_alloc.
  std::vector<ClassStats> class_stats() const;
  // The processes the file's process table lists now. Never throws except
  // std::bad_alloc.
  std::vector<ProcessInfo> processes() const;

  // Walks every structure of the file (index, chunks, checksums, blob
  // files, free lists, pages, process table) and reports what is wrong,
  // changing nothing. O(file). Safe alongside other processes; while they
  // write, free lists and leaks are not judged (report.concurrent).
  // Never throws except std::bad_alloc.
  VerifyReport verify() const;
  // verify(), and unpublishes the damaged and duplicate entries it finds
  // and returns the chunks that processes killed mid-write held to their
  // free lists (safe alongside other processes: one CAS per slot or chunk;
  // report.reclaimed_chunks). Other leaked chunks (a writer killed in the
  // instant between taking a chunk and marking it, or damage), broken free
  // lists, uncarved pages and dead processes are then rebuilt by the next
  // process that opens the file alone (it sets the file's needs-recovery
  // flag); close the store and open it again to do that now (tcache-tool
  // verify --repair does). Throws Error: read_only.
  VerifyReport repair();

  // Sums counters and walks the index (O(index size)). Never throws.
  StoreStats stats() const;
  // Writes dirty pages to disk (msync). Throws Error: io_error.
  void flush();

  // The file this store was opened from, made absolute at open (after a
  // compaction, the path names the new file, which this store uses from
  // its next operation).
  const std::filesystem::path& path() const noexcept;

  // Largest value put accepts (longer: Errc::value_too_large). Values that
  // do not fit in one slab page live in blob files beside the cache file
  // (`<file>.blobs/`), which together may hold up to capacity_bytes.
  std::size_t max_value_bytes() const noexcept;

 private:
  explicit Store(std::unique_ptr<detail::StoreHandle> handle);
  // The file to read now: impl_, or the file a compaction replaced it with.
  detail::StoreImpl* reader() const;
  // After `seen` was found superseded: the file to use now (see lib/store/follow.cc).
  // A writer may wait there while a compaction switches files.
  detail::StoreImpl* follow(detail::StoreImpl* seen, bool writer) const;
  // Runs op(file) as a write that a compaction drains or redirects.
  template <class Op>
  auto write(Op&& op);

  // The file in use; swapped (never freed) when a compaction replaces it.
  mutable std::atomic<detail::StoreImpl*> impl_{nullptr};
  std::unique_ptr<detail::StoreHandle> handle_;  // owns every file impl_ was
};

}  // namespace tcache
