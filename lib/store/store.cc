// store/store.cc: tcache::Store, the public handle. Each member picks the
// file to use (reader(), or write() for a write: doc/INVARIANTS.md, 10) and
// forwards to StoreImpl; the work is done in the rooms listed at the top of
// store_impl.h.

#include <algorithm>
#include <chrono>
#include <thread>

#include "store/store_impl.h"
#include "util/fail.h"
#include "util/proc.h"

namespace tcache {

//
// A Store is a handle on a path. impl_ is the file it uses now; when a
// compaction replaces the file (doc/INVARIANTS.md, 10), the first operation that
// notices opens the path again and swaps impl_. Files moved away from stay
// open (and mapped) until the Store is destroyed: a thread may still be
// reading one, and the hot path keeps no count of readers.

namespace {

// A Store used in the child of a fork(): its process table entry is the
// parent's, so the child's writes would not be drained by a compaction.
[[gnu::cold, gnu::noinline, noreturn]] void fail_forked(const std::filesystem::path& path) {
  detail::fail(Errc::forked, "this Store of '" + path.string() +
                                 "' was opened by the parent process before fork(); a Store "
                                 "cannot be used across fork(): open a new one in the child");
}

// Leaves the write started by StoreImpl::enter_write(), also on a throw.
struct WriteScope {
  detail::StoreImpl* impl;
  ~WriteScope() { impl->leave_write(); }
};

}  // namespace

Store::Store(std::unique_ptr<detail::StoreHandle> handle)
    : impl_(handle->files.back().get()), handle_(std::move(handle)) {}
Store::Store(Store&& o) noexcept
    : impl_(o.impl_.exchange(nullptr)), handle_(std::move(o.handle_)) {}
Store& Store::operator=(Store&& o) noexcept {
  if (this != &o) {
    impl_.store(o.impl_.exchange(nullptr));
    handle_ = std::move(o.handle_);
  }
  return *this;
}
Store::~Store() = default;

Store Store::open(const std::filesystem::path& file, const StoreOptions& options) {
  auto handle = std::make_unique<detail::StoreHandle>();
  // Resolved once: a later chdir() must not change the file we follow.
  handle->path = detail::absolute_path(file);
  handle->options = options;
  handle->files.push_back(detail::open_store_impl(handle->path, options));
  return Store(std::move(handle));
}

// Hot: every read starts here. Inlined into each caller, so that a get pays
// only the load of the compaction word and a branch (follow() is cold).
[[gnu::always_inline]] inline detail::StoreImpl* Store::reader() const {
  detail::StoreImpl* impl = impl_.load(std::memory_order_acquire);
  if (impl->forked()) [[unlikely]]
    fail_forked(handle_->path);
  if (impl->superseded()) [[unlikely]]
    impl = follow(impl, /*writer=*/false);
  return impl;
}

template <class Op>
auto Store::write(Op&& op) {
  detail::StoreImpl* impl = impl_.load(std::memory_order_acquire);
  if (impl->forked()) [[unlikely]]
    fail_forked(handle_->path);
  // A read-only store writes nothing (the operation throws read_only, or
  // only reads): it follows the path as a reader.
  if (impl->read_only()) return op(*reader());
  for (;;) {
    if (impl->enter_write()) {
      WriteScope scope{impl};
      return op(*impl);
    }
    impl = follow(impl, /*writer=*/true);
  }
}

std::optional<std::string> Store::get(std::string_view key) {
  std::string v;
  if (!get(key, v)) return std::nullopt;
  return v;
}
bool Store::get(std::string_view key, std::string& value) {
  detail::StoreImpl* impl = reader();
  if (impl->get(key, value)) return true;
  // A miss from a file that a compaction replaced while we read it may be a
  // blob file whose old name the compactor removed after the switch: ask the
  // new file (only misses pay for this check).
  if (impl->superseded()) [[unlikely]] {
    if (detail::StoreImpl* next = follow(impl, /*writer=*/false); next != impl) {
      return next->get(key, value);
    }
  }
  return false;
}
void Store::get_many(std::span<const std::string_view> keys, std::span<std::string> values,
                     std::span<bool> found) {
  detail::StoreImpl* impl = reader();
  impl->get_many(keys, values, found);
  if (impl->superseded()) [[unlikely]] {  // as in get(): ask the new file
    if (detail::StoreImpl* next = follow(impl, /*writer=*/false); next != impl) {
      next->get_many(keys, values, found);
    }
  }
}
bool Store::contains(std::string_view key) { return reader()->contains(key); }
void Store::put(std::string_view key, std::string_view value, std::chrono::milliseconds ttl) {
  write([&](detail::StoreImpl& s) { s.put(key, value, ttl); });
}
bool Store::erase(std::string_view key) {
  return write([&](detail::StoreImpl& s) { return s.erase(key); });
}
void Store::clear() {
  write([&](detail::StoreImpl& s) { s.clear(); });
}
StoreStats Store::stats() const { return reader()->stats(); }
bool Store::get_or_lease(std::string_view key, std::string& value,
                         std::chrono::milliseconds lease_timeout) {
  using Step = detail::StoreImpl::LeaseStep;
  // Waiting polls: a lease is held while a (slow) value is computed, so a
  // few milliseconds of extra latency do not matter, and polling needs no
  // wake-up channel that a killed holder could leave in a bad state. Each
  // step is a write of its own, so that a compaction never waits for a
  // waiter (whose holder's put would be waiting for the compaction).
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    const Step step =
        write([&](detail::StoreImpl& s) { return s.lease_step(key, value, lease_timeout); });
    switch (step) {
      case Step::hit:
        return true;
      case Step::holder:
        return false;
      case Step::wait:
        std::this_thread::sleep_for(pause);
        pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(5));
        break;
      case Step::again:
        break;
    }
  }
}
void Store::release_lease(std::string_view key) noexcept {
  try {
    write([&](detail::StoreImpl& s) { s.release_lease(key); });
  } catch (...) {
    // The file was compacted and the new one cannot be opened: the lease
    // went with the old file.
  }
}
std::uint64_t Store::erase_prefix(std::string_view prefix) {
  return write([&](detail::StoreImpl& s) { return s.erase_prefix(prefix); });
}
std::uint64_t Store::count_prefix(std::string_view prefix) {
  return reader()->count_prefix(prefix);
}
std::uint64_t Store::purge_expired() {
  return write([&](detail::StoreImpl& s) { return s.purge_expired(); });
}
std::vector<ClassStats> Store::class_stats() const { return reader()->class_stats(); }
VerifyReport Store::verify() const { return reader()->verify(false); }
VerifyReport Store::repair() {
  return write([&](detail::StoreImpl& s) {
    if (s.read_only()) {
      detail::fail(Errc::read_only, "'" + path().string() +
                                        "' is open read-only; open it without read_only to repair");
    }
    return s.verify(true);
  });
}
std::vector<ProcessInfo> Store::processes() const { return reader()->processes(); }
void Store::for_each(std::string_view prefix, const Visitor& visit) {
  reader()->for_each(prefix, visit);
}
void Store::flush() { reader()->flush(); }
const std::filesystem::path& Store::path() const noexcept { return handle_->path; }
std::size_t Store::max_value_bytes() const noexcept {
  return impl_.load(std::memory_order_acquire)->max_value_bytes();
}

}  // namespace tcache
