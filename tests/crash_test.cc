// tests/crash_test.cc: writers killed with SIGKILL at random instants, then
// the file is reopened and checked, over many rounds on one file.
//
// Each round forks a few writer processes that put and erase (some entries
// with TTLs) in a tight loop on their own Store, and kills them at a random
// instant: some while still opening (possibly while recovering what the last
// round left), most at a random delay of a microsecond to tens of
// milliseconds after they reported themselves attached. The parent, which
// does not hold the file open meanwhile, then opens it and checks that it
// opens, that every entry is exactly a value some writer put for its key,
// that the statistics add up and record a recovery, and that a fresh process
// can keep writing and reading (filling the file until it evicts). Variants
// keep a reader process attached while writers die, and check that nothing
// acknowledged is ever lost.
//
// Values are "<key>:<version>:<kind>:<n>:<filler>" with the filler a pure
// function of key, version and kind (see check_value() in
// support/test_support.h); a version also names the round, the writer and
// the TTL it was put with. Choosing the kill instant with a delay is the
// point of the test, not a race to win; no assertion depends on timing.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tcache/tcache.h"

namespace {

namespace fs = std::filesystem;
using namespace tcache::test;  // values, child processes, TempDirTest
using tcache::Store;
using tcache::StoreOptions;
using tcache::StoreStats;

// pipe(2), or the end of the test program: a test that cannot make pipes
// cannot stop the children it already started any other way.
void make_pipe(int fd[2]) {
  if (::pipe(fd) != 0) {
    std::fprintf(stderr, "pipe: %s\n", std::strerror(errno));
    std::abort();  // children die with us (PR_SET_PDEATHSIG)
  }
}

// Runs body(ready_fd) in a child (see spawn()) that writes a byte to
// ready_fd once it is ready; the parent reads it from *ready, the other end
// of the pipe, which it must close.
pid_t spawn_with_ready_pipe(const std::function<int(int ready_fd)>& body, int* ready) {
  int fd[2];
  make_pipe(fd);
  const pid_t pid = spawn([&] {
    ::close(fd[0]);
    return body(fd[1]);
  });
  ::close(fd[1]);
  *ready = fd[0];
  return pid;
}

// Waits for a child's ready byte (or for the child to be gone).
void await_ready(int ready) {
  char c;
  while (::read(ready, &c, 1) < 0 && errno == EINTR) {
  }
}

// Waits until `progressed()` holds, polling a counter the child `pid`
// advances in shared memory, or until the child has exited (its status then
// says why). This waits for an event, however slow the machine: a test that
// needs killed writers to have worked waits for the work, never for time.
bool await_progress(pid_t pid, const std::function<bool()>& progressed) {
  for (;;) {
    if (progressed()) return true;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      return progressed();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // polling, not a race
  }
}

// ---------------------------------------------------------------------------
// Versions: round | writer | sequence | TTL kind, so that the parent knows
// who put a value, when, and whether it may have expired since.

constexpr std::uint64_t kTtlNone = 0;
constexpr std::uint64_t kTtlShort = 1;  // 1..30 ms: may be gone by the next look
constexpr std::uint64_t kTtlLong = 2;   // one hour: outlives the test

std::uint64_t make_version(std::uint64_t round, std::uint64_t writer, std::uint64_t seq,
                           std::uint64_t ttl) {
  return (round << 40) | (writer << 36) | (seq << 2) | ttl;
}
std::uint64_t round_of(std::uint64_t v) { return v >> 40; }
std::uint64_t writer_of(std::uint64_t v) { return (v >> 36) & 15; }
std::uint64_t ttl_of(std::uint64_t v) { return v & 3; }

std::uint64_t pick_ttl_kind(std::mt19937_64& rng) {
  const unsigned roll = static_cast<unsigned>(rng() % 100);
  return roll < 15 ? kTtlShort : roll < 20 ? kTtlLong : kTtlNone;
}

std::chrono::milliseconds ttl_duration(std::uint64_t kind, std::mt19937_64& rng) {
  if (kind == kTtlShort) return std::chrono::milliseconds(1 + rng() % 30);
  if (kind == kTtlLong) return std::chrono::hours(1);
  return std::chrono::milliseconds(0);  // default_ttl: never expires
}

// A kill delay between 1 us and `max_us`, log-uniform, so that instants
// inside one operation and between many are both common.
std::chrono::microseconds kill_delay(std::mt19937_64& rng, double max_us) {
  std::uniform_real_distribution<double> d(0.0, std::log(max_us));
  return std::chrono::microseconds(static_cast<long>(std::exp(d(rng))));
}

// A writer child: opens the store, reports itself attached, then puts (60%),
// erases (20%) and gets (20%, checking the value) until it is killed, on
// `threads` threads. It never exits on its own unless a check fails.
int writer_loop(const fs::path& file, const StoreOptions& opt, std::string_view prefix, int keys,
                std::uint64_t round, std::uint64_t writer, int threads, std::atomic<int>* attached,
                std::atomic<std::uint64_t>* ops, int ready_fd) {
  Store store = Store::open(file, opt);
  attached->store(1);
  if (ready_fd >= 0) {
    if (::write(ready_fd, "a", 1) != 1) return report(kExitPipe, "cannot report attached");
    ::close(ready_fd);
  }
  return run_threads(threads, [&](int th) {
    std::mt19937_64 rng(seed_for(static_cast<int>(writer), th));
    std::string got;
    for (std::uint64_t seq = 1;; ++seq) {
      const std::string key = key_name(prefix, rng() % static_cast<std::uint64_t>(keys));
      const unsigned roll = static_cast<unsigned>(rng() % 100);
      if (roll < 60) {
        const std::uint64_t ttl = pick_ttl_kind(rng);
        const std::uint64_t version =
            make_version(round, writer, (seq << 3) | static_cast<std::uint64_t>(th), ttl);
        const auto [kind, n] = pick_size(rng, Sizes::evicting);
        store.put(key, make_value(key, version, kind, n), ttl_duration(ttl, rng));
      } else if (roll < 80) {
        store.erase(key);
      } else if (store.get(key, got)) {
        const std::optional<std::uint64_t> v = check_value(key, got);
        if (!v) return bad_value(key, got);
        if (round_of(*v) > round) return report(kExitWrongState, "version from the future");
      }
      ops->fetch_add(1, std::memory_order_relaxed);
    }
  });
}

// A long-lived reader child: checks random keys until *stop.
int reader_loop(const fs::path& file, const StoreOptions& opt, std::string_view prefix, int keys,
                std::atomic<bool>* stop, std::atomic<std::uint64_t>* reads, int ready_fd) {
  Store store = Store::open(file, opt);
  if (::write(ready_fd, "r", 1) != 1) return report(kExitPipe, "cannot report attached");
  ::close(ready_fd);
  std::mt19937_64 rng(seed_for(1000));
  std::string got;
  KeyBatch batch(16);
  while (!stop->load()) {
    batch.pick(rng, prefix, static_cast<std::uint64_t>(keys));
    batch.get(store);
    for (std::size_t j = 0; j < batch.size(); ++j) {
      const std::string& key = batch.keys[j];
      if (batch.found[j] && !check_value(key, batch.values[j])) {
        return bad_value(key, batch.values[j]);
      }
      if (store.get(key, got) && !check_value(key, got)) return bad_value(key, got);
      ++*reads;
    }
  }
  return 0;
}

// A fresh process after recovery: every put is read back exactly at once,
// and it keeps putting until the file has evicted `evictions` more entries.
int fill_until_eviction(const fs::path& file, const StoreOptions& opt, std::uint64_t evictions) {
  Store store = Store::open(file, opt);
  const std::uint64_t before = store.stats().evictions;
  std::mt19937_64 rng(seed_for(2000));
  std::string got;
  const std::uint64_t limit = 2'000'000;
  std::uint64_t i = 0;
  for (; i < limit; ++i) {
    const std::string key = key_name("fill", i);
    const auto [kind, n] = pick_size(rng, Sizes::evicting);
    const std::string value = make_value(key, i, kind, n);
    store.put(key, value);
    if (!store.get(key, got)) return report(kExitWrongState, "fresh put of '" + key + "' missing");
    if (got != value) return bad_value(key, got);
    if (i % 512 == 511 && store.stats().evictions >= before + evictions) break;
  }
  if (i == limit) return report(kExitWrongState, "the file never evicted");
  for (std::uint64_t j = 0; j <= i; ++j) {
    const std::string key = key_name("fill", j);
    if (store.get(key, got) && check_value(key, got) != j) return bad_value(key, got);
  }
  return 0;
}

class CrashTest : public TempDirTest {
 protected:
  CrashTest() : TempDirTest("tcache-crash-test") {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TempDirTest::SetUp());
    rng_.seed(std::random_device{}());
  }

  // SIGKILLs each of `pids` at its own random instant, up to `max_delay_us`
  // from now (see kill_delay()).
  void kill_at_random_instants(const std::vector<pid_t>& pids, double max_delay_us) {
    std::vector<std::pair<std::chrono::microseconds, std::size_t>> plan;
    for (std::size_t w = 0; w < pids.size(); ++w)
      plan.emplace_back(kill_delay(rng_, max_delay_us), w);
    std::sort(plan.begin(), plan.end());
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& [delay, w] : plan) {
      std::this_thread::sleep_until(t0 + delay);  // choosing the kill instant
      ::kill(pids[w], SIGKILL);
    }
  }

  // Forks `writers` writer children for `round` and SIGKILLs each at a
  // random instant. Writer 0 is killed only after it completed an operation
  // (so every round adds to ops_done_ whatever the machine's speed); the
  // others after they attached (most) or possibly while opening. Returns how
  // many of them died attached.
  int run_killed_round(const StoreOptions& opt, std::string_view prefix, int keys,
                       std::uint64_t round, int writers, int threads, double max_delay_us) {
    struct State {
      std::atomic<int> attached[8];
      std::atomic<std::uint64_t> ops[8];
    };
    Shared<State> shm;
    std::vector<pid_t> pids;
    std::vector<int> ready;
    std::vector<bool> wait_attached;
    for (int w = 0; w < writers; ++w) {
      int fd;
      pids.push_back(spawn_with_ready_pipe(
          [&, w](int ready_fd) {
            return writer_loop(file_, opt, prefix, keys, round, static_cast<std::uint64_t>(w),
                               threads, &shm->attached[w], &shm->ops[w], ready_fd);
          },
          &fd));
      ready.push_back(fd);
      // Most writers are killed at work; the others possibly while opening
      // (and recovering what the previous round left).
      wait_attached.push_back(w == 0 || rng_() % 10 < 7);
    }
    for (std::size_t w = 0; w < pids.size(); ++w) {
      if (wait_attached[w]) await_ready(ready[w]);
    }
    EXPECT_TRUE(await_progress(pids[0], [&] { return shm->ops[0].load() > 0; }))
        << "round " << round << ": writer 0 exited before completing an operation";
    kill_at_random_instants(pids, max_delay_us);
    int died_attached = 0;
    for (std::size_t w = 0; w < pids.size(); ++w) {
      const int status = wait_for(pids[w]);
      EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
          << "round " << round << " writer " << w << " (pid " << pids[w] << ") "
          << describe_status(status);
      if (shm->attached[w].load() != 0) ++died_attached;
      ops_done_ += shm->ops[w].load();
      ::close(ready[w]);
    }
    return died_attached;
  }

  // Opens the file as a fresh user after writers died and checks it: every
  // entry present is exactly a value put for its key in a round <= `round`,
  // at most one entry per key (`all_keys`: how many keys were ever used in
  // the file), and the statistics add up. Returns the recovery count.
  std::uint64_t check_file(const StoreOptions& opt, std::string_view prefix, int keys,
                           std::uint64_t round, std::uint64_t writers, std::uint64_t all_keys = 0) {
    if (all_keys == 0) all_keys = static_cast<std::uint64_t>(keys);
    std::optional<Store> store;
    try {
      store.emplace(Store::open(file_, opt));
    } catch (const tcache::Error& e) {
      ADD_FAILURE() << "round " << round << ": reopening after the kills threw "
                    << error_code_name(e.code()) << ": " << e.what();
      return 0;
    }
    const StoreStats before = store->stats();
    expect_consistent(before);
    EXPECT_EQ(before.attached_processes, 1u) << "round " << round;
    EXPECT_LE(before.entries, all_keys)
        << "round " << round << ": more index entries than keys (duplicates survived recovery)";

    std::uint64_t gets = 0;
    std::vector<std::string> names;
    std::vector<std::optional<std::string>> seen;
    for (int k = 0; k < keys; ++k) {
      names.push_back(key_name(prefix, static_cast<std::uint64_t>(k)));
      seen.push_back(store->get(names.back()));
      ++gets;
      const auto& v = seen.back();
      if (!v) continue;
      const std::optional<std::uint64_t> version = check_value(names.back(), *v);
      EXPECT_TRUE(version.has_value())
          << "round " << round << ": '" << names.back() << "' holds " << preview(*v);
      if (version) {
        EXPECT_LE(round_of(*version), round) << names.back();
        EXPECT_LT(writer_of(*version), writers) << names.back();
      }
    }
    // get_many agrees with get (nothing else runs now; only a short-TTL
    // entry may have expired in between).
    std::vector<std::string_view> views(names.begin(), names.end());
    std::vector<std::string> values(names.size());
    std::unique_ptr<bool[]> found(new bool[names.size()]);
    store->get_many(views, values, std::span<bool>(found.get(), names.size()));
    gets += names.size();
    for (std::size_t k = 0; k < names.size(); ++k) {
      if (found[k]) {
        EXPECT_TRUE(seen[k].has_value() && *seen[k] == values[k])
            << "round " << round << ": get_many found '" << names[k] << "' as "
            << preview(values[k]) << ", get did not";
      } else if (seen[k]) {
        EXPECT_EQ(ttl_of(*check_value(names[k], *seen[k])), kTtlShort)
            << "round " << round << ": '" << names[k] << "' vanished between get and get_many";
      }
    }
    const StoreStats after = store->stats();
    expect_consistent(after);
    EXPECT_EQ((after.hits + after.misses) - (before.hits + before.misses), gets)
        << "round " << round << ": hits + misses must grow by the gets done";
    EXPECT_EQ(after.puts, before.puts);
    return after.recoveries;
  }

  std::mt19937_64 rng_;
  std::uint64_t ops_done_ = 0;  // operations the killed writers completed, all rounds
};

// ---------------------------------------------------------------------------

// Rounds of writers (two threads each) killed at random instants on a 4 MiB
// file that also evicts. The parent checks the file after most rounds and
// leaves it to the next round's writers after the others, so that writers
// also recover (and are killed while recovering).
TEST_F(CrashTest, KilledWritersNeverLeaveABadEntry) {
  constexpr int kKeys = 5000;
  constexpr std::uint64_t kWriters = 3;
  const int rounds = std::max(16, 100 / kSlowdown);
  StoreOptions opt;
  opt.capacity_bytes = 4ull << 20;
  { Store create = Store::open(file_, opt); }

  std::uint64_t recoveries = 0;
  int died_attached_since_check = 0;
  for (int round = 1; round <= rounds && !HasFailure(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    died_attached_since_check += run_killed_round(
        opt, "crash", kKeys, static_cast<std::uint64_t>(round), kWriters, 2, 20000.0);
    if (round % 4 == 2 && round != rounds) continue;  // the next round's writers recover
    const std::uint64_t now =
        check_file(opt, "crash", kKeys, static_cast<std::uint64_t>(round), kWriters);
    if (died_attached_since_check > 0) {
      EXPECT_GT(now, recoveries) << died_attached_since_check
                                 << " writer(s) died attached, yet no recovery was recorded";
    }
    recoveries = now;
    died_attached_since_check = 0;
  }
  if (HasFailure()) return;
  EXPECT_GE(ops_done_, static_cast<std::uint64_t>(rounds))
      << "every round waits for an operation of writer 0";
  // Both writers and the parent leave the file usable: a fresh process fills it.
  expect_child_exits_zero("filler", [&] { return fill_until_eviction(file_, opt, 2000); });
  const std::uint64_t after_fill =
      check_file(opt, "fill", 4000, 1u << 20, 16, std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(after_fill, recoveries) << "a clean exit needs no recovery";
}

// The same with the kill instants close to the start of the writers' work,
// where opening, attaching and the first allocations (page carving, file
// growth) happen, on a file that starts empty every few rounds.
TEST_F(CrashTest, KilledWhileOpeningAndGrowingTheFile) {
  constexpr int kKeys = 2000;
  constexpr std::uint64_t kWriters = 3;
  const int rounds = std::max(12, 60 / kSlowdown);
  StoreOptions opt;
  opt.capacity_bytes = 16ull << 20;
  for (int round = 1; round <= rounds && !HasFailure(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    if (round % 10 == 1) fs::remove(file_);  // the writers race to create it
    const int died = run_killed_round(opt, "grow", kKeys, static_cast<std::uint64_t>(round),
                                      kWriters, 1, 3000.0);
    if (!fs::exists(file_)) continue;  // every writer died before creating it
    std::uint64_t before = 0;
    {
      // A read-only look first: it must not recover, and must read intact
      // entries even with the dead writers' leftovers in place.
      StoreOptions ro = opt;
      ro.read_only = true;
      Store peek = Store::open(file_, ro);
      before = peek.stats().recoveries;
      std::string got;
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = key_name("grow", static_cast<std::uint64_t>(k));
        if (peek.get(key, got)) {
          ASSERT_TRUE(check_value(key, got).has_value()) << key << ": " << preview(got);
        }
      }
    }
    const std::uint64_t now =
        check_file(opt, "grow", kKeys, static_cast<std::uint64_t>(round), kWriters);
    if (died > 0) {
      EXPECT_GT(now, before) << died << " writer(s) died attached";
    }
  }
  if (HasFailure()) return;
  EXPECT_GE(ops_done_, static_cast<std::uint64_t>(rounds))
      << "every round waits for an operation of writer 0";
  expect_child_exits_zero("filler", [&] { return fill_until_eviction(file_, opt, 2000); });
}

// A process killed while creating the file (it is built under a temporary
// name and linked into place) must not leave that temporary behind for
// good: the header promises that a kill leaks at most a chunk, and a
// temporary is as large as the file's index. After rounds of creators killed
// at random instants, one more open (which creates or opens the file) must
// leave the directory holding the cache file only.
TEST_F(CrashTest, KilledCreatorsLeaveNoTemporaryFilesBehind) {
  const int rounds = std::max(100, 300 / kSlowdown);
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;
  for (int round = 0; round < rounds; ++round) {
    std::error_code ec;
    fs::remove(file_, ec);
    const pid_t pid = spawn([&] {
      Store s = Store::open(file_, opt);
      ::pause();  // keep it open until killed
      return 0;
    });
    std::this_thread::sleep_for(kill_delay(rng_, 2000.0 * kSlowdown));  // choosing the kill instant
    ::kill(pid, SIGKILL);
    const int status = wait_for(pid);
    EXPECT_TRUE(WIFSIGNALED(status)) << describe_status(status);
  }
  { Store s = Store::open(file_, opt); }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path() != file_) left.push_back(e.path().filename().string());
  }
  EXPECT_TRUE(left.empty()) << left.size() << " file(s) left beside the cache file by killed "
                            << "creators, e.g. '" << (left.empty() ? "" : left.front()) << "'";
}

// Two readers (one read-write, one read_only) keep the file open and check
// every value while rounds of writers are killed; no recovery can run
// meanwhile (the file is never exclusively open), so the dead writers'
// leftovers pile up under the readers' eyes, until repair() returns the
// chunks the dead writers held. When the readers are done, the next opener
// recovers.
TEST_F(CrashTest, ReadersKeepTheFileOpenWhileWritersAreKilled) {
  constexpr int kKeys = 3000;
  constexpr std::uint64_t kWriters = 3;
  const int rounds = std::max(10, 40 / kSlowdown);
  StoreOptions opt;
  opt.capacity_bytes = 4ull << 20;
  { Store create = Store::open(file_, opt); }
  const std::uint64_t recoveries_before = [&] {
    Store s = Store::open(file_, opt);
    return s.stats().recoveries;
  }();

  struct State {
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> reads[2];
  };
  Shared<State> shm;
  std::vector<pid_t> readers;
  for (int r = 0; r < 2; ++r) {
    StoreOptions ropt = opt;
    ropt.read_only = r == 1;
    int ready;
    readers.push_back(spawn_with_ready_pipe(
        [&, r, ropt](int ready_fd) {
          return reader_loop(file_, ropt, "keep", kKeys, &shm->stop, &shm->reads[r], ready_fd);
        },
        &ready));
    char c = 0;
    EXPECT_EQ(::read(ready, &c, 1), 1) << "reader " << r << " did not start";
    ::close(ready);
  }
  if (HasFailure()) {  // stop whatever started, then report
    shm->stop.store(true);
    expect_exited_zero(readers, "reader");
    return;
  }

  int died_attached = 0;
  for (int round = 1; round <= rounds && !HasFailure(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    died_attached += run_killed_round(opt, "keep", kKeys, static_cast<std::uint64_t>(round),
                                      kWriters, 1, 20000.0);
  }
  // One more round whose writers surely die attached.
  {
    struct Flag {
      std::atomic<int> attached{0};
      std::atomic<std::uint64_t> ops{0};
    };
    Shared<Flag> flag;
    int ready;
    const pid_t w = spawn_with_ready_pipe(
        [&](int ready_fd) {
          return writer_loop(file_, opt, "keep", kKeys, static_cast<std::uint64_t>(rounds + 1), 0,
                             2, &flag->attached, &flag->ops, ready_fd);
        },
        &ready);
    char c = 0;
    EXPECT_EQ(::read(ready, &c, 1), 1);
    ::close(ready);
    std::this_thread::sleep_for(kill_delay(rng_, 5000.0));  // choosing the kill instant
    ::kill(w, SIGKILL);
    const int status = wait_for(w);
    EXPECT_TRUE(WIFSIGNALED(status)) << describe_status(status);
    ++died_attached;
  }
  // While the readers hold the file (so no recovery can run), repair returns
  // the chunks that killed writers held to the free lists; the readers keep
  // checking every value meanwhile.
  {
    Store s = Store::open(file_, opt);
    const tcache::VerifyReport repaired = s.repair();
    EXPECT_TRUE(repaired.concurrent);
    EXPECT_EQ(repaired.reclaimed_chunks, repaired.leaked_chunks);
    const tcache::VerifyReport after = s.verify();
    EXPECT_EQ(after.leaked_chunks, 0u);
    EXPECT_EQ(after.damaged_entries, 0u);
    RecordProperty("reclaimed_chunks", static_cast<int>(repaired.reclaimed_chunks));
  }
  shm->stop.store(true);
  expect_exited_zero(readers, "reader");
  EXPECT_GT(shm->reads[0].load(), 0u);
  EXPECT_GT(shm->reads[1].load(), 0u);
  EXPECT_GE(ops_done_, static_cast<std::uint64_t>(rounds))
      << "every round waits for an operation of writer 0";
  if (HasFailure()) return;

  const std::uint64_t now =
      check_file(opt, "keep", kKeys, static_cast<std::uint64_t>(rounds + 1), kWriters);
  EXPECT_GT(now, recoveries_before) << died_attached << " writers died attached while readers held "
                                    << "the file; the first exclusive open must recover";
  expect_child_exits_zero("filler", [&] { return fill_until_eviction(file_, opt, 2000); });
}

// ---------------------------------------------------------------------------
// Nothing acknowledged is lost.
//
// Each writer owns its keys and logs every operation to shared memory: the
// intent before it starts, "done" once put()/erase() returned. After the
// kill the parent knows, per key, the last acknowledged state and at most
// one operation that may or may not have happened. The file is large enough
// that nothing is evicted (checked), so every key must hold exactly its
// last acknowledged state or the in-flight one.

struct LogRecord {
  std::uint32_t key;
  std::uint32_t op;  // 1 = put, 2 = erase
  std::uint64_t version;
  std::atomic<std::uint32_t> done;
};

constexpr std::size_t kLogRecords = 1 << 16;

struct WriterLog {
  std::atomic<std::uint32_t> count{0};
  std::atomic<int> attached{0};
  LogRecord records[kLogRecords];
};

// What the parent knows about one key.
struct KeyModel {
  bool present = false;
  std::uint64_t version = 0;
};

std::string owned_key(std::uint64_t writer, std::uint64_t k) {
  return key_name("acked-" + std::to_string(writer), k);
}

int logging_writer(const fs::path& file, const StoreOptions& opt, std::uint64_t round,
                   std::uint64_t writer, int keys, WriterLog* log, int ready_fd) {
  Store store = Store::open(file, opt);
  log->attached.store(1);
  if (::write(ready_fd, "a", 1) != 1) return report(kExitPipe, "cannot report attached");
  ::close(ready_fd);
  // Learn the current state of our keys (nobody else writes them).
  std::vector<KeyModel> model(static_cast<std::size_t>(keys));
  std::string got;
  for (int k = 0; k < keys; ++k) {
    const std::string key = owned_key(writer, static_cast<std::uint64_t>(k));
    if (!store.get(key, got)) continue;
    const std::optional<std::uint64_t> v = check_value(key, got);
    if (!v) return bad_value(key, got);
    model[static_cast<std::size_t>(k)] = {true, *v};
  }
  std::mt19937_64 rng(seed_for(static_cast<int>(writer)));
  for (std::uint64_t seq = 1;; ++seq) {
    const std::uint32_t n = log->count.load(std::memory_order_relaxed);
    if (n == kLogRecords) return 0;  // log full: stop writing, wait to be killed
    const auto k = static_cast<std::uint32_t>(rng() % static_cast<std::uint64_t>(keys));
    const std::string key = owned_key(writer, k);
    KeyModel& m = model[k];
    const unsigned roll = static_cast<unsigned>(rng() % 100);
    if (roll < 10) {  // read our own writes
      const bool hit = store.get(key, got);
      if (hit && !check_value(key, got)) return bad_value(key, got);
      const bool may_expire = m.present && ttl_of(m.version) == kTtlShort;
      if (hit != m.present && !(may_expire && !hit)) {
        return report(kExitWrongState, "'" + key + "' is " + (hit ? "present" : "absent") +
                                           " but this writer last made it " +
                                           (m.present ? "present" : "absent"));
      }
      if (hit && check_value(key, got) != m.version) {
        return report(kExitWrongState, "'" + key + "' is not at the version this writer put");
      }
      if (!hit) m.present = false;
      continue;
    }
    LogRecord& rec = log->records[n];
    rec.key = k;
    rec.done.store(0, std::memory_order_relaxed);
    if (roll < 75) {
      const std::uint64_t ttl = pick_ttl_kind(rng);
      rec.op = 1;
      rec.version = make_version(round, writer, seq, ttl);
      log->count.store(n + 1, std::memory_order_release);
      const auto [kind, size] = pick_size(rng, Sizes::evicting);
      store.put(key, make_value(key, rec.version, kind, size), ttl_duration(ttl, rng));
      m = {true, rec.version};
    } else {
      rec.op = 2;
      rec.version = 0;
      log->count.store(n + 1, std::memory_order_release);
      store.erase(key);
      m = {false, 0};
    }
    rec.done.store(1, std::memory_order_release);  // acknowledged
  }
}

TEST_F(CrashTest, NothingAcknowledgedIsLost) {
  constexpr int kKeys = 200;  // per writer
  constexpr std::uint64_t kWriters = 3;
  const int rounds = std::max(12, 60 / kSlowdown);
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;  // holds every key many times over: nothing is evicted
  { Store create = Store::open(file_, opt); }

  std::vector<std::vector<KeyModel>> model(kWriters, std::vector<KeyModel>(kKeys));
  std::uint64_t acked_puts = 0;
  std::uint64_t unsure_puts = 0;
  std::uint64_t recoveries = 0;
  std::uint64_t lost = 0;
  for (int round = 1; round <= rounds && !HasFailure(); ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Shared<WriterLog> logs[kWriters];
    std::vector<pid_t> pids;
    std::vector<int> ready;
    for (std::uint64_t w = 0; w < kWriters; ++w) {
      WriterLog* log = &*logs[w];
      int fd;
      pids.push_back(spawn_with_ready_pipe(
          [&, w, log](int ready_fd) {
            return logging_writer(file_, opt, static_cast<std::uint64_t>(round), w, kKeys, log,
                                  ready_fd);
          },
          &fd));
      ready.push_back(fd);
    }
    // Kill each at a random instant after it attached and started writing;
    // writer 0 once it has an acknowledged put (so every round acknowledges
    // one, whatever the machine's speed).
    for (std::size_t w = 0; w < pids.size(); ++w) {
      await_ready(ready[w]);
      ::close(ready[w]);
    }
    EXPECT_TRUE(await_progress(pids[0], [&] {
      const std::uint32_t n = logs[0]->count.load(std::memory_order_acquire);
      for (std::uint32_t i = 0; i < n; ++i) {
        const LogRecord& rec = logs[0]->records[i];
        if (rec.op == 1 && rec.done.load(std::memory_order_acquire) != 0) return true;
      }
      return false;
    })) << "writer 0 exited before acknowledging a put";
    kill_at_random_instants(pids, 20000.0);
    int died_attached = 0;
    for (std::size_t w = 0; w < pids.size(); ++w) {
      const int status = wait_for(pids[w]);
      EXPECT_TRUE((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
                  (WIFEXITED(status) && WEXITSTATUS(status) == 0))
          << "writer " << w << " " << describe_status(status);
      if (logs[w]->attached.load() != 0) ++died_attached;
    }
    if (HasFailure()) return;

    // What each key may hold now: its last acknowledged state, or the
    // result of the one operation that was in flight.
    struct Pending {
      bool any = false;
      bool put = false;
      std::uint64_t version = 0;
    };
    std::vector<std::vector<Pending>> pending(kWriters, std::vector<Pending>(kKeys));
    for (std::uint64_t w = 0; w < kWriters; ++w) {
      const std::uint32_t n = logs[w]->count.load(std::memory_order_acquire);
      for (std::uint32_t i = 0; i < n; ++i) {
        const LogRecord& rec = logs[w]->records[i];
        if (rec.done.load(std::memory_order_acquire) == 0) {
          EXPECT_EQ(i + 1, n) << "only the last operation can be unacknowledged";
          pending[w][rec.key] = {true, rec.op == 1, rec.version};
          if (rec.op == 1) ++unsure_puts;
          continue;
        }
        if (rec.op == 1) {
          model[w][rec.key] = {true, rec.version};
          ++acked_puts;
        } else {
          model[w][rec.key] = {false, 0};
        }
      }
    }

    Store store = Store::open(file_, opt);
    const StoreStats st = store.stats();
    expect_consistent(st);
    EXPECT_EQ(st.evictions, 0u) << "the premise (nothing evicted) does not hold";
    if (died_attached > 0) {
      EXPECT_GT(st.recoveries, recoveries) << died_attached << " writer(s) died attached";
    }
    recoveries = st.recoveries;
    EXPECT_GE(st.puts, acked_puts) << "acknowledged puts missing from the statistics";
    EXPECT_LE(st.puts, acked_puts + unsure_puts);
    std::string got;
    for (std::uint64_t w = 0; w < kWriters; ++w) {
      for (int k = 0; k < kKeys; ++k) {
        const std::string key = owned_key(w, static_cast<std::uint64_t>(k));
        KeyModel& m = model[w][static_cast<std::size_t>(k)];
        const Pending& p = pending[w][static_cast<std::size_t>(k)];
        const bool hit = store.get(key, got);
        std::uint64_t v = 0;  // the version found, if hit
        if (hit) {
          const std::optional<std::uint64_t> parsed = check_value(key, got);
          if (!parsed) {
            ADD_FAILURE() << "'" << key << "' holds " << preview(got);
            continue;
          }
          v = *parsed;
        }
        const bool is_acked = hit ? (m.present && v == m.version) : !m.present;
        const bool is_pending =
            p.any && (hit ? (p.put && v == p.version) : (!p.put || ttl_of(p.version) == kTtlShort));
        const bool expired = !hit && m.present && ttl_of(m.version) == kTtlShort;
        if (!is_acked && !is_pending && !expired) {
          ++lost;
          ADD_FAILURE() << "'" << key << "' is "
                        << (hit ? "at version " + std::to_string(v) : "absent")
                        << "; acknowledged: "
                        << (m.present ? "version " + std::to_string(m.version) : "erased")
                        << (p.any ? (p.put ? ", in flight: put of version " +
                                                 std::to_string(p.version)
                                           : ", in flight: erase")
                                  : ", nothing in flight");
        }
        // From now on the file's state is the acknowledged one.
        m = hit ? KeyModel{true, v} : KeyModel{false, 0};
      }
    }
    if (lost > 0) return;  // one round of losses says enough
  }
  EXPECT_GE(acked_puts, static_cast<std::uint64_t>(rounds))
      << "every round waits for an acknowledged put of writer 0";
}

}  // namespace
