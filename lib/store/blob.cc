// store/blob.cc: values larger than a slab page, kept in files beside the
// cache file (doc/FORMAT.md, "Blob files").
//
// Thread and process safety: a blob file is written under a unique
// temporary name and renamed into place before the chunk that refers to it
// is published, so a reader that finds the chunk finds the whole file. The
// process that retires the chunk (doc/INVARIANTS.md, 3) unlinks the file; a
// reader that opened it first still reads the complete old value, and its
// content hash is checked on every read. blob_bytes is an approximate shared
// counter (added after writing, subtracted at release); recovery recounts it.

#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <unordered_set>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "store/store_impl.h"
#include "util/checksum.h"
#include "util/fail.h"
#include "util/private_dir.h"
#include "util/proc.h"
#include "util/racy.h"

namespace tcache::detail {

namespace {

bool parse_blob_name(const char* name, std::uint64_t* h, std::uint64_t* id, bool* tmp) {
  unsigned long long a = 0, b = 0;
  int used = 0;
  if (std::sscanf(name, "%16llx-%16llx%n", &a, &b, &used) != 2 || used != 33) return false;
  *tmp = std::strcmp(name + used, ".tmp") == 0;
  if (!*tmp && name[used] != '\0') return false;
  *h = a;
  *id = b;
  return true;
}

std::uint64_t file_age_ms(const struct stat& st) {
  const std::uint64_t mtime = static_cast<std::uint64_t>(st.st_mtim.tv_sec) * 1000u +
                              static_cast<std::uint64_t>(st.st_mtim.tv_nsec) / 1000000u;
  const std::uint64_t now = now_unix_ms();
  return now > mtime ? now - mtime : 0;
}

}  // namespace

std::string StoreImpl::blob_path(std::uint64_t h, std::uint64_t id, bool tmp) const {
  char name[48];
  std::snprintf(name, sizeof name, "/%016llx-%016llx%s", static_cast<unsigned long long>(h),
                static_cast<unsigned long long>(id), tmp ? ".tmp" : "");
  return blob_dir_.string() + name;
}

std::uint32_t StoreImpl::ensure_blob_dir() {
  // The directory and its files follow the cache file's sharing as it is
  // now (its mode and group, not the mode this opener asked for): whoever
  // may read the cache file may read blob files, whoever may write it may
  // add and remove them. A group-writable directory is setgid, so that
  // every user's blob files get the cache file's group.
  struct stat st {};
  if (::fstat(region_.fd(), &st) != 0)
    fail_errno(errno, "cannot stat", region_.path().string(), "");
  const std::uint32_t file_mode = st.st_mode & 0666;
  const std::uint32_t mode = 0700 | ((file_mode & 0040) ? 0050 : 0) |
                             ((file_mode & 0020) ? (0020 | S_ISGID) : 0) |
                             ((file_mode & 0004) ? 0005 : 0) | ((file_mode & 0002) ? 0002 : 0);
  const bool shared = (file_mode & 0066) != 0;
  // Checked on every use, like the cache file itself.
  ensure_private_dir(blob_dir_, mode, options_.allow_shared_access, false, "blob directory",
                     shared ? std::optional<gid_t>(st.st_gid) : std::nullopt);
  return file_mode;
}

BlobRef StoreImpl::new_blob_ref(std::uint64_t h, std::string_view stored) const {
  BlobRef ref{};
  if (::getrandom(&ref.id, sizeof ref.id, 0) != sizeof ref.id) {
    ref.id =
        XXH3_64bits_withSeed(&h, sizeof h, now_unix_ms() ^ static_cast<std::uint64_t>(::getpid()));
  }
  ref.size = stored.size();
  ref.content_hash = checksum64(stored.data(), stored.size(), 0);
  return ref;
}

int StoreImpl::write_blob_file(std::uint64_t h, std::string_view stored, const BlobRef& ref,
                               std::uint32_t file_mode) {
  const std::string tmp = blob_path(h, ref.id, true);
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, file_mode);
  if (fd < 0) {
    fail_errno(errno, "cannot create blob file", tmp,
               errno == EACCES ? "the blob directory must be writable by every user of a "
                                 "shared cache file: check its permissions"
                               : "");
  }
  ::fchmod(fd, file_mode);  // umask does not apply
  std::size_t done = 0;
  int err = 0;
  while (done < stored.size()) {
    const ssize_t n = ::write(fd, stored.data() + done, stored.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = n < 0 ? errno : ENOSPC;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (err == 0 && ::rename(tmp.c_str(), blob_path(h, ref.id, false).c_str()) != 0) err = errno;
  if (err == 0) {
    atom<std::uint64_t>(&sb_->blob_bytes).fetch_add(ref.size);
    return 0;
  }
  ::unlink(tmp.c_str());
  if (err == ENOSPC || err == EDQUOT || err == EFBIG) return err;
  fail_errno(err, "cannot write blob file", tmp, "");
}

bool StoreImpl::read_blob(std::uint64_t h, const BlobRef& ref, std::string& out) {
  const std::string path = blob_path(h, ref.id, false);
  // O_NONBLOCK: opening a FIFO (or a device) someone put there must not
  // wait for a writer; its type is then refused on the descriptor. Reads of
  // a regular file ignore the flag.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;  // erased or evicted meanwhile: a miss
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<std::uint64_t>(st.st_size) == ref.size;
  if (ok) {
    out.resize(ref.size);
    std::size_t done = 0;
    while (ok && done < ref.size) {
      const ssize_t n = ::pread(fd, out.data() + done, ref.size - done, static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) done += static_cast<std::size_t>(n);
    }
  }
  ::close(fd);
  if (ok && checksum64(out.data(), out.size(), 0) == ref.content_hash) return true;
  count(kChecksumFailures);
  return false;
}

void StoreImpl::release_payload(std::uint64_t off) {
  const char* c = chunk(off);
  const std::uint32_t vf =
      atom<std::uint32_t>(c + kChunkVlenOffset).load(std::memory_order_relaxed);
  if ((vf & kFlagBlob) == 0 || (vf & kValueLenMask) != sizeof(BlobRef)) return;
  const std::uint64_t meta =
      atom<std::uint64_t>(c + kChunkMetaOffset).load(std::memory_order_relaxed);
  const std::uint32_t klen = meta_key_len(meta);
  const int cls = chunk_class(off);
  if (cls < 0 || kChunkHeaderBytes + klen + sizeof(BlobRef) > class_bytes_[cls]) return;
  BlobRef ref;
  racy_read(&ref, c + kChunkHeaderBytes + klen, sizeof ref);
  const std::uint64_t h = hash(std::string_view(c + kChunkHeaderBytes, klen));
  const std::string path = blob_path(h, ref.id, false);
  if (::unlink(path.c_str()) == 0) {
    atom<std::uint64_t>(&sb_->blob_bytes)
        .fetch_sub(std::min(ref.size, atom<std::uint64_t>(&sb_->blob_bytes).load()));
  } else if (errno != ENOENT) {
    // The entry is gone; its file stays until recovery sweeps it.
    log("cannot remove blob file " + path + " (" + std::strerror(errno) +
        "); check the blob directory's permissions");
  }
}

std::vector<StoreImpl::BlobFile> StoreImpl::blob_files_oldest_first() const {
  std::vector<BlobFile> files;
  DIR* dir = ::opendir(blob_dir_.c_str());
  if (dir == nullptr) return files;
  while (const dirent* e = ::readdir(dir)) {
    std::uint64_t h = 0, id = 0;
    bool tmp = false;
    if (!parse_blob_name(e->d_name, &h, &id, &tmp)) continue;
    struct stat st {};
    if (::fstatat(::dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (tmp) {
      // A writer died mid-write long ago.
      if (file_age_ms(st) > kOrphanBlobAgeMs) ::unlinkat(::dirfd(dir), e->d_name, 0);
      continue;
    }
    files.push_back({file_age_ms(st), h, id});
  }
  ::closedir(dir);
  std::sort(files.begin(), files.end(),
            [](const BlobFile& a, const BlobFile& b) { return a.age_ms > b.age_ms; });
  return files;
}

bool StoreImpl::may_delete_unknown_blobs() const {
  // While a compaction runs, the blob directory also holds the new file's
  // blobs, which this file's index does not know (doc/INVARIANTS.md, 10).
  if (compaction_target_) return false;
  const std::uint64_t w = atom<std::uint64_t>(&sb_->compaction).load();
  if (w == 0) return true;
  if (compaction_phase(w) != kCompactionCopying) return false;
  return !process_alive(static_cast<pid_t>(compactor_pid(w)), compactor_start(w),
                        kCompactorStartMask);
}

void StoreImpl::sweep_blobs(const std::vector<std::uint64_t>& live_ids, std::uint64_t live_bytes) {
  atom<std::uint64_t>(&sb_->blob_bytes).store(live_bytes);
  DIR* dir = ::opendir(blob_dir_.c_str());
  if (dir == nullptr) return;
  const std::unordered_set<std::uint64_t> live(live_ids.begin(), live_ids.end());
  while (const dirent* e = ::readdir(dir)) {
    std::uint64_t h = 0, id = 0;
    bool tmp = false;
    if (!parse_blob_name(e->d_name, &h, &id, &tmp)) continue;
    if (tmp || live.count(id) == 0) ::unlinkat(::dirfd(dir), e->d_name, 0);
  }
  ::closedir(dir);
}

}  // namespace tcache::detail
