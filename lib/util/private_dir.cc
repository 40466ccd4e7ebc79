// util/private_dir.cc: see private_dir.h.

#include "util/private_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "util/fail.h"

namespace tcache::detail {

void ensure_private_dir(const std::filesystem::path& dir, std::uint32_t mode, bool allow_shared,
                        bool parents, const std::string& what, std::optional<gid_t> group) {
  if (parents && dir.has_parent_path() && dir.parent_path() != dir) {
    struct stat pst {};
    if (::stat(dir.parent_path().c_str(), &pst) != 0 && errno == ENOENT) {
      ensure_private_dir(dir.parent_path(), 0700, true, true, "parent directory");
    }
  }
  if (::mkdir(dir.c_str(), mode & 0777) == 0) {
    // chown before chmod: chown may clear S_ISGID.
    if (group) (void)::chown(dir.c_str(), static_cast<uid_t>(-1), *group);
    ::chmod(dir.c_str(), mode);  // umask does not apply
  } else if (errno != EEXIST) {
    fail_errno(errno, "cannot create " + what, dir.string(),
               errno == EACCES || errno == EROFS
                   ? "make its parent directory writable, or choose another directory"
                   : "");
  }
  // Checked on the descriptor, so that a swap after the check cannot fool it.
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    fail_errno(
        errno, "cannot open " + what, dir.string(),
        errno == ELOOP || errno == ENOTDIR ? "it must be a directory, not a symbolic link" : "");
  }
  struct stat st {};
  int rc = ::fstat(fd, &st);
  if (rc == 0 && group && st.st_uid == ::geteuid() && (st.st_mode & 07777) != mode &&
      ::fchmod(fd, mode) == 0) {
    rc = ::fstat(fd, &st);
  }
  ::close(fd);
  if (rc != 0) fail_errno(errno, "cannot stat", dir.string(), "");
  if (!allow_shared && (st.st_uid != ::geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)) {
    fail(Errc::unsafe_permissions,
         what + " '" + dir.string() +
             "' is not owned by you or is writable by group/others; fix its permissions "
             "(chmod 700) or remove it, or allow shared access explicitly");
  }
}

}  // namespace tcache::detail
