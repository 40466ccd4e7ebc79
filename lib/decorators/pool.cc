// decorators/pool.cc: the small thread pool acache runs computations on.
//
// Thread safety: submit_to_pool may be called from any thread. The pool is
// made on first use and never destroyed (its threads would otherwise race
// static destruction at exit); after fork() the child, which has no copies
// of the parent's threads, makes a pool of its own on first use.

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "tcache/detail/async_state.h"

namespace tcache::detail {
namespace {

thread_local bool t_on_pool = false;

class Pool {
 public:
  explicit Pool(unsigned threads) {
    for (unsigned i = 0; i < threads; ++i) {
      std::thread([this] { run(); }).detach();
    }
  }

  void submit(std::function<void()> task) {
    {
      std::lock_guard lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
  }

 private:
  void run() {
    t_on_pool = true;
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [this] { return !tasks_.empty(); });
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();  // tasks catch their own exceptions (async_state.h)
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
};

std::mutex g_pool_mutex;
Pool* g_pool = nullptr;
pid_t g_pool_pid = 0;

}  // namespace

void submit_to_pool(std::function<void()> task) {
  Pool* pool;
  {
    std::lock_guard lock(g_pool_mutex);
    if (g_pool == nullptr || g_pool_pid != ::getpid()) {
      // A parent's pool (if any) is leaked in the child: its mutex may have
      // been held by a thread that does not exist here.
      const unsigned n = std::clamp(std::thread::hardware_concurrency(), 2u, 8u);
      g_pool = new Pool(n);
      g_pool_pid = ::getpid();
    }
    pool = g_pool;
  }
  pool->submit(std::move(task));
}

bool on_pool_thread() noexcept { return t_on_pool; }

namespace {
std::atomic<std::uint64_t> g_fork_generation{0};
void count_fork_in_child() noexcept { g_fork_generation.fetch_add(1, std::memory_order_relaxed); }
// Registered when this file's statics are initialised: before any state
// that atfork_generation() guards can exist (it lives in the same library).
const int g_atfork_registered = ::pthread_atfork(nullptr, nullptr, &count_fork_in_child);
}  // namespace

std::uint64_t atfork_generation() noexcept {
  (void)g_atfork_registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

}  // namespace tcache::detail
