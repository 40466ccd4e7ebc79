// util/proc.h: identifying processes across pid reuse.
//
// Thread safety: pure functions of /proc; safe from any thread.

#pragma once

#include <sys/types.h>

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

// Wall-clock milliseconds since the Unix epoch (CLOCK_REALTIME).
std::uint64_t now_unix_ms();

}  // namespace tcache::detail
