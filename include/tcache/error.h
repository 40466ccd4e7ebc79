// tcache/error.h: the one exception type tcache throws, with a stable code.
//
// Thread safety: Error is an immutable value; copies may be used from any
// thread. error_code_name() is pure and may be called from any thread.
//
// A miss is never an error: Store::get() returns std::nullopt / false.
// Errors are thrown only for real failures, and every message says what
// happened and what the user can do about it.

#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "tcache/export.h"
namespace tcache {

// Stable error codes. The numeric values are part of the ABI and appear in
// tcache-tool's JSON output: DO NOT CHANGE existing values, only append.
enum class Errc : std::uint32_t {
  corrupt_file = 1,        // the file's structures fail a check; verify/repair or delete it
  version_mismatch = 2,    // file written by another format version or an incompatible build
  unsafe_permissions = 3,  // group/other-writable or foreign-owned file or directory
  invalid_option = 4,      // an option (or argument) is out of range
  key_too_large = 5,       // key longer than Store::kMaxKeyBytes
  value_too_large = 6,     // value longer than Store::max_value_bytes()
  no_space = 7,            // no room even after eviction (disk full, size class starved)
  io_error = 8,            // a system call failed (see message for errno text)
  read_only = 9,           // a write through a store opened read_only
  not_a_cache_file = 10,   // the file does not start with tcache's magic
  decode_error = 11,       // bytes given to tcache::decode are truncated or malformed
  unavailable = 12,        // a server (Redis) cannot be reached, timed out or refused to serve
  busy = 13,               // another process holds what the call needs (a compaction in progress)
  forked = 14,             // a Store used in a child process after fork(); open one in the child
  file_replaced = 15,      // compacted under another name than this Store's; open it by that name
  unsupported_file_system = 16,  // the file system lacks fallocate(2); move the file elsewhere
};

// Returns the code's stable name, e.g. "corrupt_file". Never null.
TCACHE_API const char* error_code_name(Errc code) noexcept;

// The exception thrown by every tcache function that can fail.
class TCACHE_API Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Errc code() const noexcept { return code_; }

 private:
  Errc code_;
};

}  // namespace tcache
