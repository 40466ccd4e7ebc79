// region/region.h: a cache file opened safely and mapped into memory.
//
// Thread safety: a Region is immutable after open() except grow(), which is
// safe to call from many threads and processes at once (fallocate(2) of
// overlapping ranges is idempotent and never changes a byte). Destruction
// needs exclusive access.
//
// What this layer guarantees:
//  1. A file is opened with O_NOFOLLOW and checked on the descriptor (fstat),
//     never by path, so a swapped symlink cannot redirect it.
//  2. A new file is created under a temporary name with O_EXCL, initialised,
//     given its mode with fchmod (umask does not apply), and linked into
//     place with link(2), which fails rather than replace a file another
//     process created first. A reader therefore never sees a half-made file.
//  3. The mapping reserves `map_bytes` of address space at once; only bytes
//     below the size reached by fallocate(2) are ever touched, so a full
//     disk is an error return from grow(), never SIGBUS. fallocate(2) is
//     called itself, never glibc's posix_fallocate, whose emulation (where
//     the file system lacks fallocate) writes zeros over bytes that other
//     processes may be writing; such file systems are refused
//     (unsupported_file_system). A writable map() first allocates any hole
//     below the file's end (a sparse copy of the file), or refuses the file
//     (no_space) when the disk has no room for them.
//  4. Every process holding the file open holds a shared flock on it; an
//     exclusive flock therefore proves no other process has it open.

#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>

namespace tcache::detail {

class Region {
 public:
  struct Options {
    bool read_only = false;
    bool create_if_missing = true;
    bool allow_shared_access = false;
    std::uint32_t mode = 0600;
  };
  // Called on a brand-new file descriptor (already sized to initial_bytes
  // with fallocate) before the file becomes visible under its name.
  using Initializer = std::function<void(int fd)>;

  // Opens `path`, creating it with `initial_bytes` and `init` when missing
  // and allowed. Throws Error: unsafe_permissions, io_error,
  // not_a_cache_file (too small to hold a superblock),
  // unsupported_file_system (creating on a file system without fallocate).
  static Region open(const std::filesystem::path& path, const Options& options,
                     std::uint64_t initial_bytes, const Initializer& init);

  // Creates a new file beside `final_path` under the temporary name
  // `<final_path>.tmp.<pid>.<16 hex digits>` (O_EXCL, options.mode applied
  // with fchmod), sized to `initial_bytes` and initialised by `init`, and
  // opens it (path() is the temporary name). The caller renames it into
  // place or unlinks it; if the process dies first, the next writable open
  // of `final_path` removes it (guarantee 2). Throws Error: io_error.
  static Region create_temporary(const std::filesystem::path& final_path, const Options& options,
                                 std::uint64_t initial_bytes, const Initializer& init);

  Region(Region&&) noexcept;
  Region& operator=(Region&&) noexcept;
  ~Region();

  // Maps `map_bytes` bytes from offset 0 (may exceed the file's size).
  // Unless read-only, first allocates every hole below the file's end
  // (guarantee 3). Throws Error: io_error, no_space (holes the disk has no
  // room for), unsupported_file_system (no fallocate(2)).
  void map(std::uint64_t map_bytes);

  // Tries to become the only process with the file open (non-blocking).
  // Returns true and holds an exclusive lock on success; then
  // downgrade_lock() must follow. Otherwise waits for a shared lock.
  bool lock_exclusive_or_shared();
  void downgrade_lock();

  // Extends the file's allocated size to at least `bytes` with fallocate(2)
  // of the range past the file's end. Returns 0 or the errno (ENOSPC,
  // EFBIG, EOPNOTSUPP, ...).
  int grow(std::uint64_t bytes);

  // Asks the kernel to map [offset, offset + bytes) for writing now, in one
  // call. Best effort: without kernel support the pages fault in as used.
  void populate(std::uint64_t offset, std::uint64_t bytes) noexcept;
  // The same for reading (MADV_POPULATE_READ): maps pages already in the
  // file, in one call rather than one fault per 4 KiB. Best effort.
  void populate_read(std::uint64_t offset, std::uint64_t bytes) noexcept;
  // Starts writing the dirty pages of [offset, offset + bytes) to disk
  // without waiting (sync_file_range), so that a later flush() has less
  // left to do. Best effort: it promises nothing about durability.
  void start_writeback(std::uint64_t offset, std::uint64_t bytes) noexcept;

  // Writes dirty pages back (msync). Throws Error: io_error.
  void flush();

  std::uint64_t file_size() const;  // fstat now
  // The device and inode of the open file, from fstat at open.
  std::uint64_t device() const noexcept { return device_; }
  std::uint64_t inode() const noexcept { return inode_; }
  char* base() const noexcept { return base_; }
  std::uint64_t mapped_bytes() const noexcept { return mapped_bytes_; }
  int fd() const noexcept { return fd_; }
  bool read_only() const noexcept { return read_only_; }
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  Region() = default;
  void close() noexcept;
  void remember_identity();
  // Allocates every hole below the file's end (SEEK_HOLE/SEEK_DATA and
  // fallocate), after checking that the file system has fallocate(2).
  // Throws Error: no_space, unsupported_file_system, io_error.
  void allocate_holes();

  std::filesystem::path path_;
  std::uint64_t device_ = 0;
  std::uint64_t inode_ = 0;
  int fd_ = -1;
  bool read_only_ = false;
  char* base_ = nullptr;
  std::uint64_t mapped_bytes_ = 0;
  std::unique_ptr<struct RegionMapping> mapping_;
};

// `path` made absolute against the current directory, now (lexically: no
// symbolic link is resolved). A Store resolves its path once, at open, so
// that a later chdir() does not move its blob files or the file it follows
// after a compaction. Throws Error: io_error (the current directory is gone).
std::filesystem::path absolute_path(const std::filesystem::path& path);

// What `path` names now, compared with an open file (lstat: a symbolic link
// is never the file).
enum class PathNames { same_file, other_file, nothing };
PathNames path_names(const std::filesystem::path& path, std::uint64_t device,
                     std::uint64_t inode) noexcept;

}  // namespace tcache::detail
