// tcache/backend.h: the byte-level interface between decorators and stores.
//
// A decorator (decorators.h) turns a call into a key and a value of bytes
// and keeps them in a Backend. Backends here: "memory" (in this process),
// "file" (a tcache::Store), and "tiered" (a chain that falls back from one
// to the next); a network backend (Redis) implements the same interface,
// reporting connection failures and timeouts as Errc::unavailable.
//
// Thread safety: every Backend member may be called by many threads at once.
// Process safety: the "file" backend is shared by every process that opens
// the same file; "memory" is private to its process.
//
// Errors: members throw tcache::Error when the backend cannot do its job
// (io_error, no_space, corrupt_file, unavailable, ...). A miss is not an
// error. The tiered backend catches them and moves to its next tier.

#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tcache/error.h"
#include "tcache/store.h"

namespace tcache {

// Receives one-line warnings (for example "falling back to memory"). Empty =
// the default: one line on stderr. Must be thread-safe.
using Logger = std::function<void(std::string_view)>;

// Cache replacement policies of in-memory caches.
enum class Policy { lru, lfu, fifo };

class Backend {
 public:
  virtual ~Backend() = default;

  // A short, stable name: "memory", "file", "redis", "tiered(file>memory)".
  virtual std::string name() const = 0;

  // True and the value if `key` is present and not expired.
  virtual bool get(std::string_view key, std::string& value) = 0;

  // Stores `value` under `key`; ttl 0 = the backend's default (often none).
  // Releases the caller's lease on `key`, if it holds one.
  virtual void put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) = 0;

  // Removes `key`; true if it was present.
  virtual bool erase(std::string_view key) = 0;

  // Removes every entry whose key starts with `prefix`; returns how many.
  virtual std::uint64_t erase_prefix(std::string_view prefix) = 0;

  // Counts entries whose key starts with `prefix` (may scan the backend).
  virtual std::uint64_t count_prefix(std::string_view prefix) = 0;

  // Single flight. Returns true with the value if `key` is present, after
  // waiting (up to about lease_timeout) while another caller, in this or
  // another process, holds the key's lease and computes it. Returns false
  // when the caller now holds the lease: it must compute the value and put()
  // it, or release_lease() (on failure). A lease expires after lease_timeout
  // and a lease whose holder died is taken over, so waiting always ends.
  virtual bool get_or_lease(std::string_view key, std::string& value,
                            std::chrono::milliseconds lease_timeout) = 0;

  // Gives up a lease taken by get_or_lease without a value. Never throws.
  virtual void release_lease(std::string_view key) noexcept = 0;

  // The most entries the backend keeps (0 = bounded by bytes, not count).
  virtual std::uint64_t max_entries() const = 0;

  // Times this backend gave up on a failing part and used the next one
  // (tiered backends); 0 for the others.
  virtual std::uint64_t fallbacks() const { return 0; }
};

// In-process memory, holding up to max_entries entries (evicting by
// `policy`), shared by whoever holds the pointer.
std::shared_ptr<Backend> make_memory_backend(std::uint64_t max_entries = 100'000,
                                             Policy policy = Policy::lru);

// The persistent store at `file` (see Store::open for the errors it throws).
std::shared_ptr<Backend> make_file_backend(const std::filesystem::path& file,
                                           const StoreOptions& options = {});

// Tries tiers in order. When a tier throws tcache::Error, warns once per
// (tier, cause) through `logger`, and uses the next tier from then on; the
// last tier should be memory, which does not fail. REQUIRES: tiers non-empty.
std::shared_ptr<Backend> make_tiered_backend(std::vector<std::shared_ptr<Backend>> tiers,
                                             Logger logger = {});

}  // namespace tcache
