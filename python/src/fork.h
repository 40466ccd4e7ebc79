// Fork handling of the extension: a child process reopens what its parent
// opened. The C++ Store refuses to be used across fork() (Errc::forked), and
// a Redis connection must not be shared with the parent, so every Python
// Store and Function remembers the generation it opened at and reopens when
// fork_generation() has moved on.
//
// Thread safety: fork_generation() may be read from any thread;
// at_fork_child() runs in the child right after fork, with one thread.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>

namespace tcache::py {

inline std::atomic<std::uint64_t> g_fork_generation{0};

// Bumped in every child of os.fork() (os.register_at_fork), also by
// multiprocessing's fork start method.
inline std::uint64_t fork_generation() noexcept {
  return g_fork_generation.load(std::memory_order_relaxed);
}

// Defines _tcache.at_fork_child and registers it with
// os.register_at_fork(after_in_child=...). Called once, at import.
void install_fork_handler(pybind11::module_& m);

}  // namespace tcache::py
