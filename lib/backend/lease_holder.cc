// backend/lease_holder.cc: the numbering of lease holders and each thread's
// acting holder (include/tcache/detail/lease_holder.h).

#include "tcache/detail/lease_holder.h"

#include <atomic>

namespace tcache::detail {
namespace {

// The holder this thread's lease calls act for (0 = its own).
thread_local LeaseHolder t_acting_lease_holder = 0;

}  // namespace

LeaseHolder new_lease_holder() noexcept {
  static std::atomic<LeaseHolder> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

LeaseHolder current_lease_holder() noexcept {
  if (t_acting_lease_holder != 0) return t_acting_lease_holder;
  thread_local const LeaseHolder own = new_lease_holder();
  return own;
}

ActAsLeaseHolder::ActAsLeaseHolder(LeaseHolder holder) noexcept : outer_(t_acting_lease_holder) {
  t_acting_lease_holder = holder;
}

ActAsLeaseHolder::~ActAsLeaseHolder() { t_acting_lease_holder = outer_; }

}  // namespace tcache::detail
