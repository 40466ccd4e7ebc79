// tcache/version.h: library and file-format versions.
//
// Thread safety: constants only.

#pragma once

#define TCACHE_VERSION_MAJOR 0
#define TCACHE_VERSION_MINOR 1
#define TCACHE_VERSION_PATCH 0

namespace tcache {

// The library's version, "MAJOR.MINOR.PATCH".
inline constexpr const char* kVersionString = "0.1.0";
// The cache-file format this build reads and writes (lib/format/FORMAT.md).
// Files of another format version are refused with Errc::version_mismatch.
inline constexpr unsigned kFormatVersion = 3;

}  // namespace tcache
