// tcache/detail/lease_holder.h: who holds a lease, for the backends whose
// leases belong to one caller inside this process (the memory backend's
// flights; the Redis backend's tokens). The file store's leases belong to
// the process (its pid) and do not use this.
//
// By default a caller is its thread: a thread that takes a lease is the one
// whose put() or release_lease() ends it, and a lease it asks for again is
// its own. A caller that takes a lease on behalf of another, or that leaves
// it to be completed on another thread (the Python acache takes it on
// tcache's pool and completes it on the event loop's thread), gives the
// lease a holder of its own with new_lease_holder() and makes every call
// about it (get_or_lease, put, release_lease) under an ActAsLeaseHolder of
// that holder, on whatever thread.
//
// Thread safety: every function may be called from any thread; an
// ActAsLeaseHolder affects only the thread it lives on.
// Process safety: a holder names a caller within one process. A child after
// fork() goes on numbering from its parent's count, so a number may name a
// holder in each; the backends tell a parent's leases apart by the fork
// generation (memory) or the pid in the token (Redis).

#pragma once

#include <cstdint>

#include "tcache/export.h"

namespace tcache::detail {

// Names a lease holder: never 0, never reused within the process.
using LeaseHolder = std::uint64_t;

// A holder no thread or earlier call has been given.
// (Out of line, as are the two below: the counter and the thread's acting
// holder must be one object in the library and in every module that uses it,
// which inline variables are not in a shared build with hidden visibility.)
TCACHE_API LeaseHolder new_lease_holder() noexcept;

// The holder of the leases this thread takes, puts and releases now: the
// innermost ActAsLeaseHolder's on this thread, else the thread's own.
TCACHE_API LeaseHolder current_lease_holder() noexcept;

// While alive, this thread's lease calls act for `holder` (scopes nest).
class TCACHE_API ActAsLeaseHolder {
 public:
  explicit ActAsLeaseHolder(LeaseHolder holder) noexcept;
  ~ActAsLeaseHolder();
  ActAsLeaseHolder(const ActAsLeaseHolder&) = delete;
  ActAsLeaseHolder& operator=(const ActAsLeaseHolder&) = delete;

 private:
  LeaseHolder outer_;
};

}  // namespace tcache::detail
