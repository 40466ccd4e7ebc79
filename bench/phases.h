// bench/phases.h: the timed phases, written once and instantiated for every
// system so that all of them run literally the same loop.
//
// A "system" is a class with these members (see tcache_system.h,
// lmdb_system.h, boost_ipc_system.h):
//
//   static S create(path, const DataSetSpec&);   // a fresh, empty store
//   static S open(path, const DataSetSpec&);     // an existing one
//   void fill(const KeySequence&, const ValuePool&);   // key i -> for_key(i)
//   void put(std::string_view key, std::string_view value);
//   bool get(std::string_view key, std::string& value);  // copies the value out
//   void get_batch(span<const string_view>, span<string>, span<bool>);
//   void sync();                                 // dirty pages to disk
//
// Templates rather than a virtual interface: an indirect call per operation
// would add the same few nanoseconds to every system and pull all ratios
// toward 1, and it would keep the compiler from inlining the adapters (and
// Boost's header-only map) into the loops. The harness should cost nothing.
//
// Measurement rules, kept by every function here:
// - Time is std::chrono::steady_clock, read once before and once after a
//   loop of a fixed number of operations; nothing inside the loop reads it.
// - Warm-up (faulting the mapping into this process's page tables, warming
//   caches) happens before the first clock read and is never counted.
// - Every value read is checked for length and counted, so the work cannot be
//   optimised away and a wrong answer is visible, but no content comparison
//   runs inside a timed loop (verify_fill() does that, untimed).
//
// Thread safety: none needed; every phase runs on one thread of one process.

#pragma once

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <limits>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "results.h"
#include "workload.h"

namespace tcache_bench {

using Clock = std::chrono::steady_clock;

// CPU time of this process (user + system), to tell afterwards whether the
// process had a core to itself while the wall clock ran.
inline double process_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Wall time from construction to stop(), and the CPU time around it. The CPU
// clock is read outside the wall-clock window (it is a system call), so the
// window holds nothing but the loop.
class Stopwatch {
 public:
  Stopwatch() : cpu_start_(process_cpu_seconds()), start_(Clock::now()) {}
  void stop(PhaseResult& r) const {
    const auto end = Clock::now();
    r.seconds = std::chrono::duration<double>(end - start_).count();
    r.cpu_seconds = process_cpu_seconds() - cpu_start_;
  }

 private:
  double cpu_start_;
  Clock::time_point start_;
};

template <class S>
PhaseResult time_fill(S& system, const DataSet& data) {
  PhaseResult r;
  Stopwatch watch;
  system.fill(data.ordered, data.values);
  watch.stop(r);
  r.ops = data.ordered.size();
  return r;
}

// Reads every key once in key order. This touches every page of the data, so
// the timed phases that follow do not pay first-touch page faults, which a
// process that has just mapped a file would otherwise pay and a long-running
// one would not.
template <class S>
void warm_up(S& system, const DataSet& data) {
  std::string value;
  for (std::size_t i = 0; i < data.ordered.size(); ++i) system.get(data.ordered[i], value);
}

// Untimed: compares `samples` randomly chosen stored values byte for byte
// with what the fill wrote, counting misses and wrong values apart (a miss
// may be an eviction; a wrong value is a bug).
template <class S>
void verify_fill(S& system, const DataSet& data, std::uint64_t samples, SystemResult& out) {
  Rng rng(0xC0FFEE);
  std::string value;
  out.verify_samples = samples;
  for (std::uint64_t n = 0; n < samples; ++n) {
    const std::uint32_t i = rng.below(static_cast<std::uint32_t>(data.ordered.size()));
    if (!system.get(data.ordered[i], value)) {
      ++out.verify_missing;
    } else if (value != data.values.for_key(i)) {
      ++out.verify_wrong;
    }
  }
}

// Uniform random gets, each copying the value into one reused std::string.
template <class S>
PhaseResult time_gets(S& system, const KeySequence& keys, std::size_t value_bytes) {
  PhaseResult r;
  std::string value;
  value.reserve(value_bytes);
  std::uint64_t hits = 0;
  std::uint64_t wrong = 0;
  Stopwatch watch;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (system.get(keys[i], value)) {
      ++hits;
      wrong += value.size() != value_bytes;
    }
  }
  watch.stop(r);
  r.ops = keys.size();
  r.gets = keys.size();
  r.hits = hits;
  r.wrong = wrong;
  return r;
}

// The same key sequence as time_gets, handed over `batch` keys at a time.
template <class S>
PhaseResult time_get_batches(S& system, const KeySequence& keys, std::size_t batch,
                             std::size_t value_bytes) {
  PhaseResult r;
  std::vector<std::string_view> batch_keys(batch);
  std::vector<std::string> values(batch);
  for (auto& v : values) v.reserve(value_bytes);
  // A plain array: get_many takes std::span<bool>, which std::vector<bool>
  // cannot provide.
  std::unique_ptr<bool[]> found(new bool[batch]);
  std::uint64_t hits = 0;
  std::uint64_t wrong = 0;
  Stopwatch watch;
  for (std::size_t i = 0; i < keys.size(); i += batch) {
    const std::size_t n = std::min(batch, keys.size() - i);
    for (std::size_t j = 0; j < n; ++j) batch_keys[j] = keys[i + j];
    system.get_batch(std::span<const std::string_view>(batch_keys.data(), n),
                     std::span<std::string>(values.data(), n), std::span<bool>(found.get(), n));
    for (std::size_t j = 0; j < n; ++j) {
      if (found[j]) {
        ++hits;
        wrong += values[j].size() != value_bytes;
      }
    }
  }
  watch.stop(r);
  r.ops = keys.size();
  r.gets = keys.size();
  r.hits = hits;
  r.wrong = wrong;
  return r;
}

// Gets and puts interleaved as data.mix_is_put says; puts write values of the
// same size as the fill did, so the data set's size does not change.
template <class S>
PhaseResult time_mix(S& system, const DataSet& data) {
  PhaseResult r;
  const std::size_t value_bytes = data.spec.value_bytes;
  std::string value;
  value.reserve(value_bytes);
  std::uint64_t gets = 0;
  std::uint64_t hits = 0;
  std::uint64_t wrong = 0;
  Stopwatch watch;
  for (std::size_t i = 0; i < data.mix_keys.size(); ++i) {
    if (data.mix_is_put[i]) {
      system.put(data.mix_keys[i], data.values.for_update(i));
    } else {
      ++gets;
      if (system.get(data.mix_keys[i], value)) {
        ++hits;
        wrong += value.size() != value_bytes;
      }
    }
  }
  watch.stop(r);
  r.ops = data.mix_keys.size();
  r.gets = gets;
  r.hits = hits;
  r.wrong = wrong;
  return r;
}

namespace detail {

// What a child sends back through its pipe: a fixed-size record, smaller than
// PIPE_BUF, so one write() delivers it whole.
struct ChildReport {
  int ok = 0;
  std::uint64_t ops = 0;
  std::uint64_t hits = 0;
  std::uint64_t wrong = 0;
  double cpu_seconds = 0;
  std::int64_t start_ns = 0;  // steady_clock, which is CLOCK_MONOTONIC on
  std::int64_t end_ns = 0;    // Linux: one clock for all processes
  char error[200] = {};
};
static_assert(sizeof(ChildReport) < 512);

inline void write_all(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n <= 0) return;  // the reader is gone; nothing useful left to do
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

inline bool read_all(int fd, void* data, std::size_t size) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace detail

// The random-get phase run by `procs` forked processes at once.
// Each child opens the file itself (no handle crosses fork), warms up, and
// waits at a barrier; the parent releases all of them together by closing the
// "go" pipe. The aggregate rate is all children's operations divided by the
// span from the earliest start to the latest end, so a straggler counts.
//
// REQUIRES: the caller holds no open handle of this system's file (LMDB and
// Boost forbid using a handle across fork) and has flushed stdio (a child
// leaves with _exit, which flushes nothing twice).
// REQUIRES: procs <= data.proc_gets.size().
template <class S>
PhaseResult time_forked_gets(const std::filesystem::path& file, const DataSet& data,
                             unsigned procs) {
  int ready[2];
  int go[2];
  if (::pipe(ready) != 0 || ::pipe(go) != 0) throw std::runtime_error("pipe failed");
  std::vector<pid_t> pids;
  std::vector<int> report_fds;
  for (unsigned p = 0; p < procs; ++p) {
    int report[2];
    if (::pipe(report) != 0) throw std::runtime_error("pipe failed");
    const pid_t pid = ::fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      ::close(ready[0]);
      ::close(go[1]);
      ::close(report[0]);
      detail::ChildReport out;
      char byte = 1;
      try {
        S system = S::open(file, data.spec);
        warm_up(system, data);
        detail::write_all(ready[1], &byte, 1);
        // Returns 0 (end of file) when the parent closes the pipe: the release.
        [[maybe_unused]] ssize_t released = ::read(go[0], &byte, 1);
        const auto t0 = Clock::now();
        PhaseResult r = time_gets(system, data.proc_gets[p], data.spec.value_bytes);
        const auto t1 = Clock::now();
        out.ok = 1;
        out.ops = r.ops;
        out.hits = r.hits;
        out.wrong = r.wrong;
        out.cpu_seconds = r.cpu_seconds;
        out.start_ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(t0.time_since_epoch()).count();
        out.end_ns =
            std::chrono::duration_cast<std::chrono::nanoseconds>(t1.time_since_epoch()).count();
      } catch (const std::exception& e) {
        std::snprintf(out.error, sizeof out.error, "%s", e.what());
        detail::write_all(ready[1], &byte, 1);  // do not leave the parent waiting
      }
      detail::write_all(report[1], &out, sizeof out);
      // _exit: no atexit handlers or static destructors of the parent's state.
      ::_exit(0);
    }
    ::close(report[1]);
    pids.push_back(pid);
    report_fds.push_back(report[0]);
  }
  ::close(ready[1]);
  ::close(go[0]);
  for (unsigned p = 0; p < procs; ++p) {
    char byte;
    if (!detail::read_all(ready[0], &byte, 1)) break;
  }
  ::close(go[1]);  // the barrier: every child's read() returns at once
  ::close(ready[0]);

  PhaseResult r;
  r.processes = procs;
  std::int64_t first_start = std::numeric_limits<std::int64_t>::max();
  std::int64_t last_end = std::numeric_limits<std::int64_t>::min();
  for (unsigned p = 0; p < procs; ++p) {
    detail::ChildReport in;
    if (!detail::read_all(report_fds[p], &in, sizeof in)) {
      r.error = "a child process died without reporting";
    } else if (!in.ok) {
      r.error = in.error;
    } else {
      r.ops += in.ops;
      r.gets += in.ops;
      r.hits += in.hits;
      r.wrong += in.wrong;
      r.cpu_seconds += in.cpu_seconds;
      first_start = std::min(first_start, in.start_ns);
      last_end = std::max(last_end, in.end_ns);
    }
    ::close(report_fds[p]);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
  if (!r.error.empty()) throw std::runtime_error(r.error);
  r.seconds = static_cast<double>(last_end - first_start) * 1e-9;
  return r;
}

}  // namespace tcache_bench
