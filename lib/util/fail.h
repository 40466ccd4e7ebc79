// util/fail.h: helpers that build tcache::Error messages.
//
// Thread safety: pure functions; safe from any thread.

#pragma once

#include <string>

#include "tcache/error.h"

namespace tcache::detail {

// Throws Error(code, message).
[[noreturn]] void fail(Errc code, const std::string& message);
// Throws Error(io_error, "<what> '<path>': <strerror(err)>; <advice>").
[[noreturn]] void fail_errno(int err, const std::string& what, const std::string& path,
                             const std::string& advice);

}  // namespace tcache::detail
