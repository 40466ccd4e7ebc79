#include <cstring>

#include "format/layout.h"
#include "tcache/error.h"
#include "tcache/version.h"
#include "util/fail.h"

namespace tcache {

// The public constant is generated from layout.h by CMake (version.h.in);
// this catches a stale build tree or a changed spelling in layout.h.
static_assert(kFormatVersion == detail::kFileFormatVersion,
              "tcache/version.h disagrees with lib/format/layout.h: re-run cmake");

const char* error_code_name(Errc code) noexcept {
  switch (code) {
    case Errc::corrupt_file:
      return "corrupt_file";
    case Errc::version_mismatch:
      return "version_mismatch";
    case Errc::unsafe_permissions:
      return "unsafe_permissions";
    case Errc::invalid_option:
      return "invalid_option";
    case Errc::key_too_large:
      return "key_too_large";
    case Errc::value_too_large:
      return "value_too_large";
    case Errc::no_space:
      return "no_space";
    case Errc::io_error:
      return "io_error";
    case Errc::read_only:
      return "read_only";
    case Errc::not_a_cache_file:
      return "not_a_cache_file";
    case Errc::decode_error:
      return "decode_error";
    case Errc::unavailable:
      return "unavailable";
    case Errc::busy:
      return "busy";
    case Errc::forked:
      return "forked";
    case Errc::file_replaced:
      return "file_replaced";
    case Errc::unsupported_file_system:
      return "unsupported_file_system";
  }
  return "unknown";
}

namespace detail {

void fail(Errc code, const std::string& message) { throw Error(code, "tcache: " + message); }

void fail_errno(int err, const std::string& what, const std::string& path,
                const std::string& advice) {
  std::string msg = what + " '" + path + "': " + std::strerror(err);
  if (!advice.empty()) msg += "; " + advice;
  fail(Errc::io_error, msg);
}

}  // namespace detail
}  // namespace tcache
