// util/private_dir.h: directories that hold cache files.
//
// Thread safety: safe from any thread; concurrent creators of one directory
// all succeed (EEXIST is fine).

#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <sys/types.h>

namespace tcache::detail {

// Makes sure `dir` exists as a real directory (not a symbolic link), creating
// it with exactly `mode` (umask does not apply) if it is missing; with
// `parents`, missing parents are created 0700 too. Unless `allow_shared`,
// refuses a directory owned by another user or writable by group/others.
// `what` names it in messages ("blob directory", "cache directory").
// With `group`, a directory it creates is given that group (best effort:
// chown needs membership), and an existing one owned by the caller is given
// exactly `mode` (so that a directory made before its file was shared
// follows the file's sharing). `mode` may hold S_ISGID.
// Throws Error: io_error (with errno's text), unsafe_permissions.
void ensure_private_dir(const std::filesystem::path& dir, std::uint32_t mode, bool allow_shared,
                        bool parents, const std::string& what,
                        std::optional<gid_t> group = std::nullopt);

}  // namespace tcache::detail
