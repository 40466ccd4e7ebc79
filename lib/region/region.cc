#include "region/region.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <boost/interprocess/detail/os_file_functions.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "util/fail.h"
#include "util/proc.h"

namespace tcache::detail {

namespace bip = boost::interprocess;

// Boost.Interprocess maps any object that yields a mapping handle; this one
// wraps the descriptor we opened and checked ourselves, so the mapping is of
// exactly the file we vetted (no second open by path).
struct FdMappable {
  int fd;
  bip::mapping_handle_t get_mapping_handle() const {
    return bip::ipcdetail::mapping_handle_from_file_handle(fd);
  }
};

struct RegionMapping {
  bip::mapped_region region;
};

namespace {

int retry_eintr_open(const char* path, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::open(path, flags, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// fallocate(2) itself, never glibc's posix_fallocate: where the file system
// lacks fallocate, posix_fallocate emulates it by reading one byte per block
// and writing a zero where it read one, which races with other processes
// writing those bytes through their mappings (an acknowledged value would be
// zeroed). Mode 0 only allocates: it never changes a byte already there, so
// any range may be given to it at any time. Returns 0 or the errno.
int allocate(int fd, std::uint64_t offset, std::uint64_t bytes) {
  if (bytes == 0) return 0;
  while (::fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(bytes)) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

// "nfs", "fuse", ... for the file systems known to lack fallocate(2), else
// the magic number in hex.
std::string file_system_name(int fd) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return "unknown";
  switch (static_cast<unsigned long>(fs.f_type)) {
    case 0x6969:
      return "nfs";
    case 0xff534d42:
      return "cifs";
    case 0xfe534d42:
      return "smb2";
    case 0x65735546:
      return "fuse";
    case 0x01021997:
      return "9p";
    case 0x73717368:
      return "squashfs";
    case 0x794c7630:
      return "overlayfs";
    case 0x5346414f:
      return "afs";
    case 0x4d44:
      return "vfat";
    case 0x2011bab0:
      return "exfat";
    case 0x5346544e:
      return "ntfs";
    case 0x1021994:
      return "tmpfs";
    case 0xef53:
      return "ext2/3/4";
    case 0x58465342:
      return "xfs";
    case 0x9123683e:
      return "btrfs";
    case 0x2fc12fc1:
      return "zfs";
    default:
      break;
  }
  char b[32];
  std::snprintf(b, sizeof b, "type 0x%lx", static_cast<unsigned long>(fs.f_type));
  return b;
}

[[noreturn]] void fail_unsupported(int fd, const std::string& path) {
  fail(Errc::unsupported_file_system,
       "'" + path + "' is on a file system (" + file_system_name(fd) +
           ") without fallocate(2); tcache needs it to give the file disk space without writing "
           "over bytes other processes are writing (a full disk must be an error, not a crash). "
           "Put the cache file on a local file system such as ext4, xfs, btrfs or tmpfs (or "
           "open it read_only)");
}

void check_ownership(int fd, const std::string& path, bool allow_shared) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_errno(errno, "cannot stat", path, "");
  if (!S_ISREG(st.st_mode)) {
    fail(Errc::unsafe_permissions,
         "'" + path + "' is not a regular file; point tcache at a regular cache file");
  }
  if (allow_shared) return;
  if (st.st_uid != ::geteuid()) {
    fail(Errc::unsafe_permissions,
         "'" + path + "' is owned by uid " + std::to_string(st.st_uid) + ", not by you (uid " +
             std::to_string(::geteuid()) +
             "); another user could change what you read. Use your own file, or set "
             "StoreOptions::allow_shared_access if sharing is intended");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    fail(Errc::unsafe_permissions,
         "'" + path + "' has mode " + mode +
             ", writable by group or others; run 'chmod go-w' on it, or set "
             "StoreOptions::allow_shared_access if sharing is intended");
  }
}

// Removes `<name>.tmp.<pid>.<hex>` files left by creators that died before
// linking their new file into place (each is a fully allocated file).
void remove_dead_creators_debris(const std::filesystem::path& path) {
  const std::string prefix = path.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(
           path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && !process_alive(static_cast<pid_t>(pid), 0)) {
      std::filesystem::remove(e.path(), ec);
    }
  }
}

// Creates `final_path` + ".tmp.<pid>.<random>" exclusively (mode `mode`,
// whatever the umask), gives it `bytes` of disk and runs `init` on it.
// Returns its descriptor and name; on failure removes it and throws.
std::pair<int, std::string> create_initialized(const std::string& final_path, std::uint32_t mode,
                                               std::uint64_t bytes,
                                               const Region::Initializer& init) {
  std::uint64_t rnd = 0;
  if (::getrandom(&rnd, sizeof rnd, 0) != sizeof rnd) rnd = static_cast<std::uint64_t>(::getpid());
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, ".tmp.%d.%016llx", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(rnd));
  std::string tmp = final_path + suffix;
  const int fd = retry_eintr_open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                  mode & 0777);
  if (fd < 0) {
    fail_errno(errno, "cannot create cache file", final_path,
               "check that the directory exists and is writable by you");
  }
  try {
    if (::fchmod(fd, mode & 0777) != 0) fail_errno(errno, "cannot chmod", tmp, "");
    if (int err = allocate(fd, 0, bytes); err != 0) {
      if (err == EOPNOTSUPP) fail_unsupported(fd, final_path);
      fail_errno(err, "cannot allocate space for new cache file", final_path,
                 err == ENOSPC ? "free disk space or lower capacity_bytes" : "");
    }
    init(fd);
  } catch (...) {
    ::unlink(tmp.c_str());
    ::close(fd);
    throw;
  }
  return {fd, std::move(tmp)};
}

}  // namespace

std::filesystem::path absolute_path(const std::filesystem::path& path) {
  if (path.is_absolute()) return path;
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  if (ec) {
    fail(Errc::io_error, "cannot resolve '" + path.string() + "' against the current directory (" +
                             ec.message() + "); pass an absolute path");
  }
  return abs;
}

Region Region::open(const std::filesystem::path& relative_or_absolute, const Options& options,
                    std::uint64_t initial_bytes, const Initializer& init) {
  const std::filesystem::path path = absolute_path(relative_or_absolute);
  Region r;
  r.path_ = path;
  r.read_only_ = options.read_only;
  const std::string p = path.string();
  // O_NONBLOCK: a read-only open of a FIFO would otherwise wait for a
  // writer forever; check_ownership() refuses anything but a regular file on
  // the descriptor, and the flag is cleared after (it means nothing for a
  // regular file, but nothing should inherit it).
  const int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;

  for (int attempt = 0; attempt < 8; ++attempt) {
    r.fd_ = retry_eintr_open(p.c_str(), flags, 0);
    if (r.fd_ >= 0) break;
    const int err = errno;
    if (err == ELOOP) {
      fail(Errc::unsafe_permissions,
           "'" + p +
               "' is a symbolic link; tcache opens cache files only directly (O_NOFOLLOW). "
               "Pass the link's target instead");
    }
    if (err != ENOENT || !options.create_if_missing || options.read_only) {
      if (err == ENOENT) {
        fail_errno(err, "cannot open cache file", p,
                   "create it first (tcache-tool create) or allow creation");
      }
      fail_errno(err, "cannot open cache file", p,
                 err == EACCES ? "check the file's and directory's permissions" : "");
    }
    // Create under a temporary name, initialise, then link into place.
    const auto [tfd, tmp] = create_initialized(p, options.mode, initial_bytes, init);
    try {
      if (::link(tmp.c_str(), p.c_str()) != 0) {
        const int lerr = errno;
        if (lerr != EEXIST) fail_errno(lerr, "cannot link new cache file into place", p, "");
        // Another process created it first: use theirs.
        ::unlink(tmp.c_str());
        ::close(tfd);
        continue;
      }
    } catch (...) {
      ::unlink(tmp.c_str());
      ::close(tfd);
      throw;
    }
    ::unlink(tmp.c_str());
    r.fd_ = tfd;
    break;
  }
  if (r.fd_ < 0) fail(Errc::io_error, "cannot open or create '" + p + "': it keeps changing");
  check_ownership(r.fd_, p, options.allow_shared_access);
  if (const int fl = ::fcntl(r.fd_, F_GETFL); fl >= 0) ::fcntl(r.fd_, F_SETFL, fl & ~O_NONBLOCK);
  r.remember_identity();
  if (!options.read_only) remove_dead_creators_debris(path);
  return r;
}

Region Region::create_temporary(const std::filesystem::path& final_path, const Options& options,
                                std::uint64_t initial_bytes, const Initializer& init) {
  auto [fd, tmp] = create_initialized(final_path.string(), options.mode, initial_bytes, init);
  Region r;
  r.fd_ = fd;
  r.path_ = tmp;
  r.read_only_ = false;
  try {
    r.remember_identity();
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;  // r's destructor closes fd
  }
  return r;
}

void Region::remember_identity() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail_errno(errno, "cannot stat", path_.string(), "");
  device_ = static_cast<std::uint64_t>(st.st_dev);
  inode_ = static_cast<std::uint64_t>(st.st_ino);
}

PathNames path_names(const std::filesystem::path& path, std::uint64_t device,
                     std::uint64_t inode) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return PathNames::nothing;
  return static_cast<std::uint64_t>(st.st_dev) == device &&
                 static_cast<std::uint64_t>(st.st_ino) == inode
             ? PathNames::same_file
             : PathNames::other_file;
}

Region::Region(Region&& o) noexcept { *this = std::move(o); }

Region& Region::operator=(Region&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    device_ = o.device_;
    inode_ = o.inode_;
    fd_ = o.fd_;
    read_only_ = o.read_only_;
    base_ = o.base_;
    mapped_bytes_ = o.mapped_bytes_;
    mapping_ = std::move(o.mapping_);
    o.fd_ = -1;
    o.base_ = nullptr;
  }
  return *this;
}

Region::~Region() { close(); }

void Region::close() noexcept {
  mapping_.reset();
  base_ = nullptr;
  if (fd_ >= 0) ::close(fd_);  // also drops our flock
  fd_ = -1;
}

void Region::allocate_holes() {
  const std::string p = path_.string();
  const std::uint64_t size = file_size();
  // Even a file without holes must be on a file system that can grow it
  // safely: ask once, for a range that is already allocated (a no-op there).
  if (const int err = allocate(fd_, 0, std::min<std::uint64_t>(size, 4096)); err == EOPNOTSUPP) {
    fail_unsupported(fd_, p);
  }
  for (std::uint64_t at = 0; at < size;) {
    const off_t hole = ::lseek(fd_, static_cast<off_t>(at), SEEK_HOLE);
    if (hole < 0 || static_cast<std::uint64_t>(hole) >= size) break;  // none (or no SEEK_HOLE)
    off_t data = ::lseek(fd_, hole, SEEK_DATA);
    if (data < 0 || static_cast<std::uint64_t>(data) > size) data = static_cast<off_t>(size);
    const std::uint64_t from = static_cast<std::uint64_t>(hole);
    const std::uint64_t to = static_cast<std::uint64_t>(data);
    if (const int err = allocate(fd_, from, to - from); err != 0) {
      if (err == EOPNOTSUPP) fail_unsupported(fd_, p);
      if (err == ENOSPC || err == EDQUOT) {
        fail(Errc::no_space,
             "'" + p +
                 "' has holes below its end (a sparse copy: cp --sparse, rsync -S, a "
                 "restored backup) and the disk has no room to fill them (" +
                 std::strerror(err) +
                 "); writing into a hole would kill the process with SIGBUS. Free disk space, "
                 "or delete the file (it is only a cache)");
      }
      fail_errno(err, "cannot allocate the holes of", p, "");
    }
    at = to;
  }
}

void Region::map(std::uint64_t map_bytes) {
  // Every byte below the end must have disk space before anything writes
  // through the mapping (guarantee 3).
  if (!read_only_) allocate_holes();
  try {
    auto m = std::make_unique<RegionMapping>();
    m->region = bip::mapped_region(FdMappable{fd_}, read_only_ ? bip::read_only : bip::read_write,
                                   0, static_cast<std::size_t>(map_bytes));
    base_ = static_cast<char*>(m->region.get_address());
    mapped_bytes_ = map_bytes;
    mapping_ = std::move(m);
  } catch (const bip::interprocess_exception& e) {
    fail(Errc::io_error, "cannot map '" + path_.string() + "' (" + std::to_string(map_bytes) +
                             " bytes): " + e.what() +
                             "; check 'ulimit -v' or lower capacity_bytes");
  }
}

bool Region::lock_exclusive_or_shared() {
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return true;
  while (::flock(fd_, LOCK_SH) != 0) {
    if (errno != EINTR) fail_errno(errno, "cannot lock", path_.string(), "");
  }
  return false;
}

void Region::downgrade_lock() {
  while (::flock(fd_, LOCK_SH) != 0) {
    if (errno != EINTR) fail_errno(errno, "cannot lock", path_.string(), "");
  }
}

int Region::grow(std::uint64_t bytes) {
  if (bytes > mapped_bytes_) return EFBIG;
  // Everything below the file's end is allocated already (at creation, by an
  // earlier grow, or by allocate_holes() at open): allocate from there on.
  // Racing growers are harmless, fallocate never changes a byte.
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return errno;
  const std::uint64_t from = std::min(static_cast<std::uint64_t>(st.st_size), bytes);
  return allocate(fd_, from, bytes - from);
}

void Region::populate(std::uint64_t offset, std::uint64_t bytes) noexcept {
#ifdef MADV_POPULATE_WRITE
  if (!read_only_ && offset + bytes <= mapped_bytes_) {
    ::madvise(base_ + offset, bytes, MADV_POPULATE_WRITE);
  }
#else
  (void)offset;
  (void)bytes;
#endif
}

void Region::populate_read(std::uint64_t offset, std::uint64_t bytes) noexcept {
#ifdef MADV_POPULATE_READ
  if (offset + bytes <= mapped_bytes_) ::madvise(base_ + offset, bytes, MADV_POPULATE_READ);
#else
  (void)offset;
  (void)bytes;
#endif
}

void Region::start_writeback(std::uint64_t offset, std::uint64_t bytes) noexcept {
  if (read_only_) return;
  ::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(bytes),
                    SYNC_FILE_RANGE_WRITE);
}

void Region::flush() {
  if (mapping_ == nullptr || read_only_) return;
  const std::uint64_t size = std::min<std::uint64_t>(file_size(), mapped_bytes_);
  if (!mapping_->region.flush(0, static_cast<std::size_t>(size), false)) {
    fail_errno(errno, "cannot flush", path_.string(), "");
  }
}

std::uint64_t Region::file_size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail_errno(errno, "cannot stat", path_.string(), "");
  return static_cast<std::uint64_t>(st.st_size);
}

}  // namespace tcache::detail
