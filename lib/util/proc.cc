#include "util/proc.h"

#include <pthread.h>
#include <signal.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tcache::detail {

namespace {

// Reads the state (field 3) and start time (field 22) of /proc/<pid>/stat.
bool read_stat(pid_t pid, char* state, std::uint64_t* start_time) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr) return false;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  // The command name (field 2) may contain spaces and ')'; fields resume
  // after the last ')'. Field 3 follows; start time is field 22.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] != ' ') return false;
  *state = p[2];
  ++p;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p + 1, ' ');
    if (p == nullptr) return false;
  }
  *start_time = std::strtoull(p + 1, nullptr, 10);
  return true;
}

}  // namespace

std::uint64_t process_start_time(pid_t pid) {
  char state = 0;
  std::uint64_t start = 0;
  return read_stat(pid, &state, &start) ? start : 0;
}

ProcState process_state(pid_t pid, std::uint64_t start_time, std::uint64_t start_mask) {
  if (pid <= 0) return ProcState::gone;
  if (::kill(pid, 0) != 0 && errno != EPERM) return ProcState::gone;
  char state = 0;
  std::uint64_t now_start = 0;
  if (!read_stat(pid, &state, &now_start)) return ProcState::running;  // no /proc: trust kill()
  if (state == 'Z' || state == 'X') return ProcState::gone;            // exited, not yet reaped
  if (start_time != 0 && (now_start & start_mask) != start_time) return ProcState::gone;
  return state == 'T' || state == 't' ? ProcState::stopped : ProcState::running;
}

bool process_alive(pid_t pid, std::uint64_t start_time, std::uint64_t start_mask) {
  return process_state(pid, start_time, start_mask) != ProcState::gone;
}

std::atomic<std::uint64_t> g_forks_seen{0};

void watch_forks() {
  static const int registered = ::pthread_atfork(
      nullptr, nullptr, [] { g_forks_seen.fetch_add(1, std::memory_order_relaxed); });
  (void)registered;
}

std::uint64_t now_unix_ms() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000u +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000000u;
}

}  // namespace tcache::detail
