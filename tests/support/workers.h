// tests/support/workers.h: run_workers(), the scaffold of the tests that
// share a cache among forked processes and their threads. Header-only;
// everything is in namespace tcache::test.
//
//   Worker          who a body runs as: its process, its thread in that
//                   process, its index among all the workers, and a seed.
//   SharedArray     one T per worker in anonymous shared memory, for what
//                   the workers count (their tallies): each writes its own,
//                   the parent reads them all once the children are gone.
//   WorkerOptions   what every child shares: the name failures give it, and
//                   the cache file (with its StoreOptions) each child opens.
//   run_workers     forks `processes` children that each run a body on
//                   `threads` threads, and returns them as Workers.
//   Workers         those children: wait() waits for every one and expects
//                   each to have exited 0; any_exited() tells, while the test
//                   waits for their progress, whether one stopped early.
//
// A child exits with the first non-zero result of its threads (an exception
// becomes kExitTcacheError or kExitException, see spawn()); what the workers
// count goes to the parent through a SharedArray (or a Shared<T>) the test
// owns, indexed by the Worker.
//
// Thread safety: run_workers() and Workers are for the test's main thread.
// A body runs on `threads` threads at once in each child: what it shares
// across threads it must synchronize (atomics in the Shared<T>, the Store).

#ifndef TCACHE_TESTS_SUPPORT_WORKERS_H_
#define TCACHE_TESTS_SUPPORT_WORKERS_H_

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <new>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "support/test_support.h"
#include "tcache/tcache.h"

namespace tcache::test {

// Who a body runs as.
struct Worker {
  int process = 0;  // 0 .. processes - 1
  int thread = 0;   // 0 .. threads - 1, within its process
  int index = 0;    // process * threads + thread: unique among all workers

  // An RNG seed of this worker's own (seed_for(base + process, thread)):
  // workers of one test that pass different bases draw different numbers.
  std::uint64_t seed(int base = 0) const { return seed_for(base + process, thread); }
};

// `size` value-initialized objects of type T in anonymous shared memory,
// which forked children write and the parent reads after they are gone.
// T must be usable from several processes at once without a lock (atomics,
// or one writer per element); the parent destroys them.
template <class T>
class SharedArray {
 public:
  explicit SharedArray(std::size_t size) : size_(size) {
    void* p = ::mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    data_ = static_cast<T*>(p);
    for (std::size_t i = 0; i < size_; ++i) new (data_ + i) T();
  }
  ~SharedArray() {
    for (std::size_t i = 0; i < size_; ++i) data_[i].~T();
    ::munmap(data_, bytes());
  }
  SharedArray(const SharedArray&) = delete;
  SharedArray& operator=(const SharedArray&) = delete;

  T& operator[](std::size_t i) const { return data_[i]; }
  T& operator[](const Worker& w) const { return data_[static_cast<std::size_t>(w.index)]; }
  T* begin() const { return data_; }
  T* end() const { return data_ + size_; }
  std::size_t size() const { return size_; }

 private:
  std::size_t bytes() const { return size_ == 0 ? 1 : size_ * sizeof(T); }

  std::size_t size_;
  T* data_;
};

struct WorkerOptions {
  // Names a child in failure messages: "<who> #<process> (pid N) exited 12".
  std::string who = "worker";
  // For a body that takes a Store&: the cache file every child opens (once,
  // after fork(), shared by its threads) with `store`.
  std::filesystem::path file;
  StoreOptions store;
};

// Children started by run_workers(). wait() waits for them; a Workers
// destroyed without wait() (a test that returned early) kills its children
// and reaps them, so that none outlives its test.
class Workers {
 public:
  Workers(std::string who, std::vector<pid_t> pids)
      : who_(std::move(who)), pids_(std::move(pids)) {}
  Workers(Workers&& other) noexcept
      : who_(std::move(other.who_)), pids_(std::exchange(other.pids_, {})) {}
  Workers& operator=(Workers&&) = delete;
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;
  ~Workers() {
    for (const pid_t pid : pids_) {
      if (pid > 0) ::kill(pid, SIGKILL);
    }
    for (const pid_t pid : pids_) {
      if (pid > 0) wait_for(pid);
    }
  }

  // Waits for every child and expects each to have exited 0 (a test
  // failure names the child and says how it ended). Call it once.
  void wait() {
    expect_exited_zero(pids_, who_);
    pids_.clear();
  }

  // The children's pids, one per process, until wait().
  const std::vector<pid_t>& pids() const { return pids_; }

  // True once a child has exited (without reaping it: wait() still reports
  // how). A test polling the workers' progress stops waiting then.
  bool any_exited() const {
    for (const pid_t pid : pids_) {
      siginfo_t info{};
      if (pid > 0 &&
          ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid) {
        return true;
      }
    }
    return false;
  }

 private:
  std::string who_;
  std::vector<pid_t> pids_;
};

// Forks `processes` children. Each runs body(worker) on `threads` threads
// (on its own main thread when `threads` is 1) and exits with the first
// non-zero result. A body that takes (Store&, const Worker&) gets the
// child's own Store, opened on options.file with options.store after fork()
// (never the parent's handle). Returns at once; call wait() on the result.
template <class Body>
Workers run_workers(int processes, int threads, const WorkerOptions& options, Body&& body) {
  constexpr bool kWithStore = std::is_invocable_r_v<int, Body&, Store&, const Worker&>;
  static_assert(kWithStore || std::is_invocable_r_v<int, Body&, const Worker&>,
                "a worker body is int(const Worker&) or int(Store&, const Worker&)");
  std::vector<pid_t> pids;
  for (int p = 0; p < processes; ++p) {
    pids.push_back(spawn([&, p]() -> int {
      const auto run = [&](auto&&... store) {
        if (threads == 1) return body(store..., Worker{p, 0, p});
        return run_threads(threads, [&](int t) {
          return body(store..., Worker{p, t, p * threads + t});
        });
      };
      if constexpr (kWithStore) {
        Store store = Store::open(options.file, options.store);
        return run(store);
      } else {
        return run();
      }
    }));
  }
  return Workers(options.who, std::move(pids));
}

}  // namespace tcache::test

#endif  // TCACHE_TESTS_SUPPORT_WORKERS_H_
