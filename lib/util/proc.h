// util/proc.h: identifying processes across pid reuse.
//
// Thread safety: pure functions of /proc; safe from any thread.

#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>

namespace tcache::detail {

// The process's start time in clock ticks since boot (field 22 of
// /proc/<pid>/stat), or 0 if the process does not exist or /proc is absent.
std::uint64_t process_start_time(pid_t pid);

// True if `pid` names a running process that started at `start_time` (a
// start_time of 0 matches any). A pid reused by a newer process is not alive.
// Identities that keep only the low bits of the start time pass those bits
// and their mask (2^n - 1). Without /proc, a pid that exists is alive.
bool process_alive(pid_t pid, std::uint64_t start_time,
                   std::uint64_t start_mask = ~std::uint64_t{0});

// What `pid` (with `start_time`, as for process_alive) is doing: gone
// (exited, or the pid was reused), running (or sleeping), or stopped
// (SIGSTOP, job control, a debugger: state 'T' or 't' in /proc/<pid>/stat).
enum class ProcState { gone, running, stopped };
ProcState process_state(pid_t pid, std::uint64_t start_time,
                        std::uint64_t start_mask = ~std::uint64_t{0});

// fork() detection without a system call on the hot path: the count of
// fork()s this process descends from since watch_forks() was first called
// (a pthread_atfork child handler raises it). An object that records
// fork_generation() at creation is in a forked child when it differs.
// watch_forks() is idempotent and thread-safe.
void watch_forks();
extern std::atomic<std::uint64_t> g_forks_seen;
inline std::uint64_t fork_generation() noexcept {
  return g_forks_seen.load(std::memory_order_relaxed);
}

// Wall-clock milliseconds since the Unix epoch (CLOCK_REALTIME).
std::uint64_t now_unix_ms();

}  // namespace tcache::detail
