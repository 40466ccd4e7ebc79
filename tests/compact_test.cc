// tests/compact_test.cc: tcache::compact (tcache/compact.h) on real files:
// alone, with other handles open in the same process, while forked
// processes keep writing and reading, and with the compactor killed in each
// of its phases.
//
// Writers own their keys ("w<writer>-<k>") and record in shared memory the
// version of each put (0 for an erase) as soon as the call returned: an
// acknowledged write. While they run, each reads back its own keys and
// requires exactly the last acknowledged version (read-your-writes, also
// across the switch to the new file), and reads the other writer's keys,
// requiring values that are well-formed for their key (see check_value()).
// After the writers stop, the file must hold every key's last acknowledged
// value and nothing for erased keys. Files are large enough that nothing is
// evicted, which the tests assert.
//
// No test sleeps to win a race or asserts a timing: the parent waits for the
// children's progress counters, and kills a compactor only after it said
// (from its progress callback, through a pipe) that it reached the phase.
// One test writes a compaction state into the superblock on purpose
// (lib/format/layout.h), one holds a write section open by hand
// (lib/store/store_impl.h).

#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "format/layout.h"     // one test plants a dead compactor's state
#include "store/store_impl.h"  // one test holds a write open by hand
#include "support/file_surgery.h"
#include "support/test_support.h"
#include "support/workers.h"
#include "tcache/tcache.h"

namespace {

namespace fs = std::filesystem;
using namespace tcache::test;  // values, child processes, TempDirTest
using tcache::CompactOptions;
using tcache::CompactPhase;
using tcache::CompactProgress;
using tcache::CompactResult;
using tcache::Errc;
using tcache::Store;
using tcache::StoreOptions;

constexpr int kWriters = 2;
constexpr int kKeys = 1500;  // per writer

// The value of `key` at `version`; its size and kind are a function of both.
std::string value_for(const std::string& key, std::uint64_t version, Sizes sizes) {
  std::mt19937_64 rng(mix64(fnv1a(key) ^ mix64(version)));
  const auto [kind, n] = pick_size(rng, sizes);
  return make_value(key, version, kind, n);
}

std::string writer_key(int writer, int k) {
  return key_name("w" + std::to_string(writer), static_cast<std::uint64_t>(k));
}

// What the writers acknowledged, in shared memory.
struct WriterState {
  Sizes sizes = Sizes::mixed;                        // of the values (set before the writers start)
  int keys = kKeys;                                  // keys per writer, at most kKeys
  std::atomic<std::uint64_t> last[kWriters][kKeys];  // last acknowledged version, 0 = none/erased
  std::atomic<std::uint64_t> ops[kWriters];
  std::atomic<bool> stop{false};
};

// A writer (see the top of the file). At the end, if `capacity_at_end` is
// not 0, its Store must be on a file of that capacity: it moved.
int run_writer(const fs::path& file, WriterState& st, int w, std::uint64_t capacity_at_end) {
  StoreOptions opt;
  opt.create_if_missing = false;
  Store s = Store::open(file, opt);
  std::mt19937_64 rng(seed_for(w));
  std::string got;
  KeyBatch batch(8);
  const int other = (w + 1) % kWriters;
  for (std::uint64_t i = 1; !st.stop.load(); ++i) {
    const int k = static_cast<int>(rng() % static_cast<unsigned>(st.keys));
    const std::string key = writer_key(w, k);
    const unsigned roll = static_cast<unsigned>(rng() % 100);
    if (roll < 50) {
      s.put(key, value_for(key, i, st.sizes));
      st.last[w][k].store(i);
    } else if (roll < 58) {
      s.erase(key);
      st.last[w][k].store(0);
    } else if (roll < 85) {
      const std::uint64_t want = st.last[w][k].load();
      const bool hit = s.get(key, got);
      if (want == 0 && hit) {
        return report(kExitWrongState, "erased key '" + key + "' is back: " + preview(got));
      }
      if (want != 0) {
        if (!hit) return report(kExitWrongState, "own key '" + key + "' is missing");
        const auto v = check_value(key, got);
        if (!v) return bad_value(key, got);
        if (*v != want) {
          return report(kExitWrongState, "own key '" + key + "' has version " + std::to_string(*v) +
                                             ", not " + std::to_string(want));
        }
      }
    } else {
      // The other writer's keys: anything well-formed.
      batch.pick(rng, "w" + std::to_string(other), static_cast<std::uint64_t>(st.keys));
      batch.get(s);
      for (std::size_t j = 0; j < batch.size(); ++j) {
        if (batch.found[j] && !check_value(batch.keys[j], batch.values[j])) {
          return bad_value(batch.keys[j], batch.values[j]);
        }
      }
    }
    st.ops[w].fetch_add(1);
  }
  if (capacity_at_end != 0 && s.stats().capacity_bytes != capacity_at_end) {
    return report(kExitWrongState, "the writer's store did not move to the compacted file");
  }
  return 0;
}

// Waits until every writer has done `more` operations beyond `from`. False
// if a writer exited first (it failed: the caller collects its status).
bool wait_for_writers(const WriterState& st, const Workers& writers,
                      const std::uint64_t (&from)[kWriters], std::uint64_t more) {
  for (;;) {
    bool all = true;
    for (int w = 0; w < kWriters; ++w) all = all && st.ops[w].load() >= from[w] + more;
    if (all) return true;
    if (writers.any_exited()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling progress, not a race
  }
}

void snapshot_ops(const WriterState& st, std::uint64_t (&out)[kWriters]) {
  for (int w = 0; w < kWriters; ++w) out[w] = st.ops[w].load();
}

// Every writer key holds its last acknowledged version; erased ones nothing.
void expect_acknowledged_values(Store& s, const WriterState& st) {
  std::string got;
  int present = 0;
  for (int w = 0; w < kWriters; ++w) {
    for (int k = 0; k < kKeys; ++k) {
      const std::string key = writer_key(w, k);
      const std::uint64_t want = st.last[w][k].load();
      const bool hit = s.get(key, got);
      if (want == 0) {
        EXPECT_FALSE(hit) << key << " was erased but holds " << preview(got);
        continue;
      }
      ++present;
      ASSERT_TRUE(hit) << key << ": acknowledged version " << want << " lost";
      EXPECT_EQ(check_value(key, got), want) << key << ": " << preview(got);
    }
  }
  EXPECT_GT(present, 0);
}

// Files named "<cache file>.tmp.*" in the directory (unfinished new files).
std::vector<std::string> temporary_files(const fs::path& file) {
  std::vector<std::string> out;
  const std::string prefix = file.filename().string() + ".tmp.";
  for (const auto& e : fs::directory_iterator(file.parent_path())) {
    const std::string name = e.path().filename().string();
    if (name.compare(0, prefix.size(), prefix) == 0) out.push_back(name);
  }
  return out;
}

std::uint64_t inode_of(const fs::path& file) {
  struct stat st {};
  EXPECT_EQ(::stat(file.c_str(), &st), 0);
  return static_cast<std::uint64_t>(st.st_ino);
}

class CompactTest : public TempDirTest {
 protected:
  CompactTest() : TempDirTest("tcache-compact-test") {}

  // A file of `capacity` bytes grown to about `bloat` bytes by entries that
  // are then erased: compaction must give that space back.
  void make_bloated_file(std::uint64_t capacity, std::uint64_t bloat) {
    StoreOptions opt;
    opt.capacity_bytes = capacity;
    Store s = Store::open(file_, opt);
    std::mt19937_64 rng(seed_for(99));
    for (std::uint64_t i = 0; s.stats().file_bytes < bloat; ++i) {
      for (int j = 0; j < 256; ++j, ++i) {
        const std::string key = key_name("bloat", i);
        const auto [kind, n] = pick_size(rng, Sizes::mixed);
        s.put(key, make_value(key, 1, kind, n));
      }
    }
    s.erase_prefix("bloat");
  }

  // Runs the writers, calls between(writers, state) while they run (after
  // each has done some work), lets them do some more, stops them and checks
  // them and the file.
  // `sizes`, `keys`, `ops`: the writers' values, keys each, and operations
  // each before and after between().
  void with_writers(std::uint64_t capacity_at_end,
                    const std::function<void(const Workers&, WriterState&)>& between,
                    Sizes sizes = Sizes::mixed, int keys = kKeys, std::uint64_t ops = 3000) {
    Shared<WriterState> st;
    st->sizes = sizes;
    st->keys = keys;
    Workers writers = run_workers(kWriters, 1, {.who = "writer"}, [&](const Worker& me) {
      return run_writer(file_, *st, me.process, capacity_at_end);
    });
    std::uint64_t from[kWriters] = {};
    ops = std::max<std::uint64_t>(ops / kSlowdown, 1);
    if (wait_for_writers(*st, writers, from, ops)) {
      between(writers, *st);
      snapshot_ops(*st, from);
      // They carry on (and, after a switch, on the new file).
      EXPECT_TRUE(wait_for_writers(*st, writers, from, ops)) << "a writer stopped";
    } else {
      ADD_FAILURE() << "a writer stopped before the compaction";
    }
    st->stop.store(true);
    writers.wait();
    Store s = Store::open(file_);
    const tcache::StoreStats stats = s.stats();
    EXPECT_EQ(stats.evictions, 0u) << "the test's file is too small: evictions void its checks";
    EXPECT_EQ(stats.checksum_failures, 0u);
    expect_acknowledged_values(s, *st);
  }
};

// ---------------------------------------------------------------------------

TEST_F(CompactTest, KeepsEveryLiveEntryAndDropsTheRest) {
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;  // pages of 1 MiB: values above are blob files
  std::map<std::string, std::string> live;
  std::map<std::string, std::uint64_t> expiry;
  {
    Store s = Store::open(file_, opt);
    std::mt19937_64 rng(seed_for(1));
    for (int i = 0; i < 20000; ++i) {
      const std::string key = key_name("k", static_cast<std::uint64_t>(i));
      const auto [kind, n] = pick_size(rng, Sizes::mixed);
      const std::string value = make_value(key, 1, kind, n);
      s.put(key, value, i % 3 == 0 ? std::chrono::hours(1) : std::chrono::milliseconds(0));
      if (i % 2 == 0) live[key] = value;
    }
    for (int i = 1; i < 20000; i += 2) s.erase(key_name("k", static_cast<std::uint64_t>(i)));
    // Large values: blob files (the text one compresses into a page).
    for (const Fill kind : {Fill::random, Fill::text}) {
      for (int i = 0; i < 3; ++i) {
        const std::string key = std::string("large-") + static_cast<char>(kind) + std::to_string(i);
        live[key] = make_value(key, 1, kind, (3u << 20) + i);
        s.put(key, live[key]);
      }
    }
    s.erase("large-r2");
    live.erase("large-r2");
    // Expired entries (and one expired blob) are not copied.
    s.put("expired-blob", make_value("expired-blob", 1, Fill::random, 2u << 20),
          std::chrono::milliseconds(1));
    for (int i = 0; i < 100; ++i)
      s.put("expired-" + std::to_string(i), "x", std::chrono::milliseconds(1));
    while (s.contains("expired-99") || s.contains("expired-blob")) std::this_thread::yield();
    s.for_each("", [&](const tcache::EntryInfo& e, std::string_view) {
      if (e.expires_at_ms != 0) expiry[std::string(e.key)] = e.expires_at_ms;
      return true;
    });
  }
  const std::uint64_t inode = inode_of(file_);

  const CompactResult r = tcache::compact(file_);
  EXPECT_EQ(r.entries, live.size());
  EXPECT_GE(r.dropped, 99u);  // contains() already removed expired-99
  EXPECT_EQ(r.evicted, 0u);
  EXPECT_LT(r.file_bytes_after, r.file_bytes_before);
  EXPECT_EQ(r.capacity_bytes_after, r.capacity_bytes_before);
  EXPECT_NE(inode_of(file_), inode) << "the new file was renamed over the old one";
  EXPECT_TRUE(temporary_files(file_).empty());

  Store s = Store::open(file_);
  const tcache::StoreStats st = s.stats();
  EXPECT_EQ(st.entries, live.size());
  EXPECT_EQ(st.file_bytes, r.file_bytes_after);
  EXPECT_TRUE(s.verify().clean());
  for (const auto& [key, value] : live) EXPECT_EQ(s.get(key), value) << key;
  EXPECT_FALSE(s.contains("k-1"));
  EXPECT_FALSE(s.contains("expired-0"));
  // Expiry is kept to the millisecond (it is an absolute time).
  int with_ttl = 0;
  s.for_each("", [&](const tcache::EntryInfo& e, std::string_view) {
    const auto it = expiry.find(std::string(e.key));
    EXPECT_EQ(e.expires_at_ms, it == expiry.end() ? 0 : it->second) << e.key;
    with_ttl += e.expires_at_ms != 0;
    return true;
  });
  EXPECT_EQ(with_ttl, static_cast<int>(expiry.size()));
  EXPECT_GT(with_ttl, 3000);
  // The blob directory holds the live blobs' files, nothing else.
  int blobs = 0;
  s.for_each("", [&](const tcache::EntryInfo& e, std::string_view) {
    blobs += e.blob;
    return true;
  });
  EXPECT_EQ(blobs, 2);
  int blob_files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file_.string() + ".blobs")) {
    ++blob_files;
  }
  EXPECT_EQ(blob_files, blobs);
}

TEST_F(CompactTest, CapacityOptionChangesTheGeometry) {
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;
  std::map<std::string, std::string> want;
  {
    Store s = Store::open(file_, opt);
    std::mt19937_64 rng(seed_for(2));
    for (int i = 0; i < 2000; ++i) {
      const std::string key = key_name("g", static_cast<std::uint64_t>(i));
      const auto [kind, n] = pick_size(rng, Sizes::mixed);
      want[key] = make_value(key, 1, kind, n);
      s.put(key, want[key]);
    }
    // Fits a 1 MiB page, not the 64 KiB pages of a 4 MiB file: it becomes a
    // blob file there.
    want["wide"] = make_value("wide", 1, Fill::random, 200u << 10);
    s.put("wide", want["wide"]);
  }
  const tcache::StoreStats before = Store::open(file_).stats();

  CompactOptions bigger;
  bigger.capacity_bytes = 256ull << 20;
  CompactResult r = tcache::compact(file_, bigger);
  EXPECT_EQ(r.capacity_bytes_after, 256ull << 20);
  {
    Store s = Store::open(file_);
    const tcache::StoreStats st = s.stats();
    EXPECT_EQ(st.capacity_bytes, 256ull << 20);
    EXPECT_NEAR(static_cast<double>(st.index_slots), 4.0 * before.index_slots,
                0.01 * before.index_slots);
    for (const auto& [key, value] : want) EXPECT_EQ(s.get(key), value) << key;
  }

  CompactOptions smaller;
  smaller.capacity_bytes = 4ull << 20;
  r = tcache::compact(file_, smaller);
  EXPECT_EQ(r.evicted, 0u);
  Store s = Store::open(file_);
  const tcache::StoreStats st = s.stats();
  EXPECT_EQ(st.capacity_bytes, 4ull << 20);
  EXPECT_LT(st.page_bytes, before.page_bytes);
  EXPECT_GT(st.blob_bytes, 0u);
  for (const auto& [key, value] : want) EXPECT_EQ(s.get(key), value) << key;
  EXPECT_TRUE(s.verify().clean());

  CompactOptions impossible;
  impossible.capacity_bytes = 1000;
  try {
    tcache::compact(file_, impossible);
    ADD_FAILURE() << "a 1000-byte capacity was accepted";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_option) << e.what();
  }
  EXPECT_TRUE(temporary_files(file_).empty());
  EXPECT_EQ(Store::open(file_).get("wide"), want["wide"]);
}

TEST_F(CompactTest, OpenStoresMoveToTheNewFile) {
  StoreOptions opt;
  opt.capacity_bytes = 16ull << 20;
  Store writer = Store::open(file_, opt);
  StoreOptions ro;
  ro.read_only = true;
  for (int i = 0; i < 500; ++i) writer.put("k" + std::to_string(i), "v" + std::to_string(i));
  Store reader = Store::open(file_, ro);
  const std::uint64_t old_inode = inode_of(file_);

  CompactOptions bigger;
  bigger.capacity_bytes = 32ull << 20;
  tcache::compact(file_, bigger);
  ASSERT_NE(inode_of(file_), old_inode);

  // The next operation of each handle moves it.
  EXPECT_EQ(reader.get("k7"), "v7");
  EXPECT_EQ(reader.stats().capacity_bytes, 32ull << 20);
  writer.put("after", "compaction");
  EXPECT_EQ(writer.stats().capacity_bytes, 32ull << 20);
  EXPECT_EQ(reader.get("after"), "compaction");
  EXPECT_EQ(Store::open(file_).get("after"), "compaction");
  EXPECT_TRUE(writer.erase("k1"));
  EXPECT_FALSE(Store::open(file_).contains("k1"));
  EXPECT_EQ(writer.path(), file_);
  // Single flight follows the file too.
  std::string v;
  EXPECT_FALSE(writer.get_or_lease("computed", v));
  writer.put("computed", "42");
  EXPECT_EQ(reader.get("computed"), "42");

  // Threads of one process move together.
  tcache::compact(file_);
  EXPECT_EQ(run_threads(4,
                        [&](int t) {
                          for (int i = 0; i < 200; ++i) {
                            const std::string key =
                                "t" + std::to_string(t) + "-" + std::to_string(i);
                            writer.put(key, key);
                            if (writer.get(key) != key) return 1;
                            if (reader.get("k7") != "v7") return 2;
                          }
                          return 0;
                        }),
            0);
}

TEST_F(CompactTest, CompactsWhileTwoProcessesWriteAndRead) {
  make_bloated_file(96ull << 20, 48ull << 20);
  with_writers(128ull << 20, [&](const Workers& writers, WriterState& st) {
    const CompactResult first = tcache::compact(file_);
    EXPECT_LT(first.file_bytes_after, first.file_bytes_before) << "the file did not shrink";
    EXPECT_EQ(first.evicted, 0u);
    std::uint64_t from[kWriters];
    snapshot_ops(st, from);
    ASSERT_TRUE(wait_for_writers(st, writers, from, 500 / kSlowdown)) << "a writer stopped";
    // Again, into a larger file, which the writers check they ended up on.
    CompactOptions bigger;
    bigger.capacity_bytes = 128ull << 20;
    const CompactResult second = tcache::compact(file_, bigger);
    EXPECT_EQ(second.evicted, 0u);
    snapshot_ops(st, from);
    ASSERT_TRUE(wait_for_writers(st, writers, from, 500 / kSlowdown)) << "a writer stopped";
    // And with three copying threads (files this small use one by default).
    CompactOptions threads;
    threads.threads = 3;
    EXPECT_EQ(tcache::compact(file_, threads).evicted, 0u);
  });
  EXPECT_TRUE(temporary_files(file_).empty());
}

// Several threads copy disjoint ranges of the index, each into pages of its
// own: every entry arrives once, in the slot get() finds it in.
TEST_F(CompactTest, SeveralCopyingThreadsKeepEveryEntry) {
  // Room for the pages the threads leave partly used (else fewer copy).
  make_bloated_file(512ull << 20, 24ull << 20);
  std::map<std::string, std::string> live;
  {
    Store s = Store::open(file_);
    std::mt19937_64 rng(seed_for(7));
    for (int i = 0; i < 30000; ++i) {
      const std::string key = key_name("t", static_cast<std::uint64_t>(i));
      const auto [kind, n] = pick_size(rng, Sizes::mixed);
      live[key] = make_value(key, 1, kind, n);
      s.put(key, live[key]);
    }
  }
  for (const unsigned threads : {2u, 4u}) {
    CompactOptions opt;
    opt.threads = threads;
    std::uint64_t last = 0;
    bool monotonic = true;
    opt.progress = [&](const CompactProgress& p) {
      if (p.phase == CompactPhase::copying) {
        monotonic = monotonic && p.done >= last && p.done <= p.total;
        last = p.done;
      }
    };
    const CompactResult r = tcache::compact(file_, opt);
    EXPECT_TRUE(monotonic) << "copy progress went back or past its total";
    EXPECT_EQ(r.entries, live.size()) << threads << " threads";
    EXPECT_EQ(r.evicted, 0u);
    Store s = Store::open(file_);
    EXPECT_TRUE(s.verify().clean());
    EXPECT_EQ(s.stats().entries, live.size());
    for (const auto& [key, value] : live) ASSERT_EQ(s.get(key), value) << key;
  }
}

// Blob files (values larger than a page) written, replaced and erased while
// the compactor links them into the new file under new names.
TEST_F(CompactTest, CompactsBlobValuesWhileTheyChange) {
  StoreOptions opt;
  opt.capacity_bytes = 64ull << 20;
  opt.page_bytes = 64u << 10;  // values above 64 KiB are blob files
  { Store::open(file_, opt); }
  with_writers(
      0,
      [&](const Workers&, WriterState&) {
        for (int i = 0; i < 3; ++i) EXPECT_EQ(tcache::compact(file_).evicted, 0u);
      },
      Sizes::huge, 24, 300);
  // Every blob file belongs to a live entry of the file (the old file's
  // names were removed after each switch).
  Store s = Store::open(file_);
  EXPECT_TRUE(s.verify().clean());
  std::uint64_t blobs = 0;
  s.for_each("", [&](const tcache::EntryInfo& e, std::string_view) {
    blobs += e.blob;
    return true;
  });
  std::uint64_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(file_.string() + ".blobs")) ++files;
  EXPECT_GT(blobs, 0u);
  EXPECT_EQ(files, blobs);
}

// A compactor killed (SIGKILL) in `phase`: the others carry on with the old
// file, which stays where it was, and a later compaction works.
class KilledCompactorTest : public CompactTest,
                            public ::testing::WithParamInterface<CompactPhase> {};

TEST_P(KilledCompactorTest, LeavesAWorkingFileAndOthersCarryOn) {
  const CompactPhase phase = GetParam();
  // Bloated well beyond the one page per size class that the live entries
  // need, so that the later compaction must shrink it.
  make_bloated_file(96ull << 20, 48ull << 20);
  const std::uint64_t inode = inode_of(file_);
  with_writers(0, [&](const Workers& writers, WriterState&) {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    const pid_t compactor = spawn([&] {
      ::close(ready[0]);
      CompactOptions o;
      o.progress = [&](const CompactProgress& p) {
        if (p.phase != phase || (phase == CompactPhase::copying && p.done == 0)) return;
        const char c = 'x';
        if (::write(ready[1], &c, 1) != 1) ::_exit(kExitPipe);
        for (;;) ::pause();  // until killed
      };
      tcache::compact(file_, o);
      return report(kExitWrongState, "the compaction finished; it should have been killed");
    });
    ::close(ready[1]);
    char c;
    ASSERT_EQ(::read(ready[0], &c, 1), 1) << "the compactor never reached the phase";
    ::close(ready[0]);
    ::kill(compactor, SIGKILL);
    const int status = wait_for(compactor);
    EXPECT_TRUE(WIFSIGNALED(status)) << describe_status(status);
    EXPECT_FALSE(writers.any_exited());
  });
  EXPECT_EQ(inode_of(file_), inode) << "a killed compactor replaced the file";
  {
    // The first writable open deletes the unfinished file; alone, it also
    // reclaims what the dead compactor left in the process table.
    Store s = Store::open(file_);
    EXPECT_TRUE(temporary_files(file_).empty());
    EXPECT_TRUE(s.verify().clean());
  }
  const CompactResult r = tcache::compact(file_);
  EXPECT_LT(r.file_bytes_after, r.file_bytes_before);
  EXPECT_TRUE(Store::open(file_).verify().clean());
}

INSTANTIATE_TEST_SUITE_P(EachPhase, KilledCompactorTest,
                         ::testing::Values(CompactPhase::copying, CompactPhase::switching,
                                           CompactPhase::final_copy, CompactPhase::syncing),
                         [](const ::testing::TestParamInfo<CompactPhase>& info) {
                           switch (info.param) {
                             case CompactPhase::copying:
                               return "Copying";
                             case CompactPhase::switching:
                               return "Switching";
                             case CompactPhase::final_copy:
                               return "FinalCopy";
                             case CompactPhase::syncing:
                               return "Syncing";
                           }
                           return "Unknown";
                         });

TEST_F(CompactTest, ASecondCompactionOfTheFileIsBusy) {
  make_bloated_file(32ull << 20, 8ull << 20);
  int ready[2];
  int go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t compactor = spawn([&] {
    ::close(ready[0]);
    ::close(go[1]);
    CompactOptions o;
    bool told = false;
    o.progress = [&](const CompactProgress& p) {
      if (told || p.phase != CompactPhase::copying) return;
      told = true;
      char c = 'x';
      if (::write(ready[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(kExitPipe);
    };
    tcache::compact(file_, o);
    return 0;
  });
  ::close(ready[1]);
  ::close(go[0]);
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  try {
    tcache::compact(file_);
    ADD_FAILURE() << "two compactions of one file ran at once";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), Errc::busy) << e.what();
    EXPECT_NE(std::string(e.what()).find("is compacting"), std::string::npos) << e.what();
  }
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  ::close(go[1]);
  ::close(ready[0]);
  expect_exited_zero({compactor}, "compactor");
  EXPECT_TRUE(Store::open(file_).verify().clean());
}

TEST_F(CompactTest, ADeadCompactorsStateIsClearedByTheNextWriter) {
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  const pid_t gone = spawn([] { return 0; });
  wait_for(gone);                     // reaped: its pid names no process now
  Store holder = Store::open(file_);  // so that the next open is not alone (no reset at open)
  // The state a compactor leaves when killed between committing and renaming.
  const std::uint64_t word = tcache::detail::compaction_word(
      static_cast<std::uint64_t>(gone), 12345, tcache::detail::kCompactionCommitted);
  FileSurgery(file_).write_at(offsetof(tcache::detail::Superblock, compaction), &word, sizeof word);
  Store s = Store::open(file_);
  s.put("k2", "v2");  // sees the switch, finds the compactor dead, clears it
  EXPECT_EQ(
      FileSurgery(file_).read_at<std::uint64_t>(offsetof(tcache::detail::Superblock, compaction)),
      0u);
  EXPECT_EQ(holder.get("k2"), "v2");
  EXPECT_EQ(holder.get("k"), "v");
  const CompactResult r = tcache::compact(file_);
  EXPECT_EQ(r.entries, 2u);
}

// The drain: a write in flight when the compactor switches holds up the
// final pass until it is done, and so lands in the new file. (Uses the
// store's internal write section on purpose: store/store_impl.h.)
TEST_F(CompactTest, TheFinalPassWaitsForWritesInFlight) {
  {
    Store s = Store::open(file_);
    s.put("k0", "v0");
  }
  std::unique_ptr<tcache::detail::StoreImpl> impl =
      tcache::detail::open_store_impl(file_, StoreOptions{});
  ASSERT_TRUE(impl->enter_write());  // a put that has begun
  std::atomic<bool> switched{false};
  std::atomic<bool> left{false};
  std::atomic<bool> ordered{true};
  std::thread compactor([&] {
    CompactOptions o;
    o.progress = [&](const CompactProgress& p) {
      if (p.phase == CompactPhase::switching) switched = true;
      if (p.phase == CompactPhase::final_copy && p.done == 0 && !left) ordered = false;
    };
    tcache::compact(file_, o);
  });
  while (!switched) std::this_thread::yield();
  impl->put("in-flight", "written during the switch", std::chrono::milliseconds(0));
  left = true;
  impl->leave_write();
  compactor.join();
  EXPECT_TRUE(ordered) << "the final pass began while a write was in flight";
  EXPECT_FALSE(impl->enter_write()) << "a write began on the replaced file";
  impl.reset();
  Store s = Store::open(file_);
  EXPECT_EQ(s.get("in-flight"), "written during the switch");
  EXPECT_EQ(s.get("k0"), "v0");
}

TEST_F(CompactTest, ALeaseCarriesOverSoItsWaitersGetTheHoldersValue) {
  Store holder = Store::open(file_);
  std::string v;
  ASSERT_FALSE(holder.get_or_lease("slow", v, std::chrono::hours(1)));  // we compute it
  EXPECT_EQ(tcache::compact(file_).entries, 1u);                        // the lease
  int started[2];
  ASSERT_EQ(::pipe(started), 0);
  const pid_t waiter = spawn([&] {
    ::close(started[0]);
    Store s = Store::open(file_);
    const char c = 'x';
    if (::write(started[1], &c, 1) != 1) return kExitPipe;
    std::string got;
    if (!s.get_or_lease("slow", got, std::chrono::hours(1))) {
      return report(kExitWrongState, "the waiter took the lease: it was lost in the compaction");
    }
    return got == "computed once" ? 0 : report(kExitWrongState, "got " + preview(got));
  });
  ::close(started[1]);
  char c;
  ASSERT_EQ(::read(started[0], &c, 1), 1);
  ::close(started[0]);
  holder.put("slow", "computed once");  // replaces the lease, in the new file
  expect_exited_zero({waiter}, "waiter");
}

TEST_F(CompactTest, ErrorsLeaveTheFileAlone) {
  try {
    tcache::compact(dir_ / "missing.tcache");
    ADD_FAILURE() << "compacted a missing file";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), Errc::io_error) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_ / "missing.tcache"));
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  CompactOptions o;
  o.progress = [](const CompactProgress& p) {
    if (p.phase == CompactPhase::final_copy) throw std::runtime_error("stop here");
  };
  EXPECT_THROW(tcache::compact(file_, o), std::runtime_error);
  EXPECT_TRUE(temporary_files(file_).empty());
  Store s = Store::open(file_);
  s.put("k2", "v2");  // not waiting for a compaction that gave up
  EXPECT_EQ(s.get("k"), "v");
  EXPECT_EQ(tcache::compact(file_).entries, 2u);
}

// ---------------------------------------------------------------------------
// The edges (issue 11: paths, other names, untracked, stopped writers).

// Children that open a Store each and hold it: each writes a byte to
// `ready` once open, then waits for a byte on `go` (one byte releases one
// holder), then puts "<tag>-<pid>" and exits 0.
class Holders {
 public:
  Holders() {
    EXPECT_EQ(::pipe(ready_), 0);
    EXPECT_EQ(::pipe(go_), 0);
  }
  ~Holders() {
    release(static_cast<int>(pids_.size()));
    expect_exited_zero(pids_, "holder");
    for (int fd : {ready_[0], ready_[1], go_[0], go_[1]}) ::close(fd);
  }
  // Starts one holder of `path` (run `before` in it first) and waits until
  // it has the file open.
  pid_t add(const fs::path& path, const std::function<bool()>& before = {}) {
    const pid_t pid = spawn([this, path, before] {
      if (before && !before()) return report(kExitPipe, "the holder's setup failed");
      StoreOptions opt;
      opt.create_if_missing = false;
      Store s = Store::open(path, opt);
      char c = 'r';
      if (::write(ready_[1], &c, 1) != 1 || ::read(go_[0], &c, 1) != 1) return kExitPipe;
      s.put("held-" + std::to_string(::getpid()), "v");  // not waiting: nothing is compacting
      return 0;
    });
    pids_.push_back(pid);
    char c;
    EXPECT_EQ(::read(ready_[0], &c, 1), 1) << "a holder did not open the file";
    return pid;
  }
  // Lets `n` holders (any) finish; returns the pids reaped.
  void release(int n) {
    for (int i = 0; i < n; ++i) {
      const char c = 'g';
      EXPECT_EQ(::write(go_[1], &c, 1), 1);
    }
  }
  // Releases one holder and reaps it.
  void release_one() {
    release(1);
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe_status(status);
    pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end());
  }

 private:
  int ready_[2] = {-1, -1};
  int go_[2] = {-1, -1};
  std::vector<pid_t> pids_;
};

std::uint64_t compaction_word_of(const fs::path& file) {
  return FileSurgery(file).read_at<std::uint64_t>(offsetof(tcache::detail::Superblock, compaction));
}

// Item 3: a Store opened by a relative path keeps its file (and blob
// files, and the file it follows after a compaction) where the path named
// it at open, whatever chdir() does later.
TEST_F(CompactTest, ARelativePathIsResolvedOnceAtOpen) {
  const fs::path a = dir_ / "a";
  const fs::path b = dir_ / "b";
  fs::create_directory(a);
  fs::create_directory(b);
  const std::string big = make_value("big", 1, Fill::random, 300 << 10);  // > a page: a blob file
  expect_child_exits_zero("chdir user", [&] {  // chdir is process-wide: in a child
    if (::chdir(a.c_str()) != 0) return kExitPipe;
    StoreOptions opt;
    opt.capacity_bytes = 32ull << 20;
    opt.page_bytes = 64 << 10;
    Store s = Store::open("cache.tcache", opt);
    if (::chdir(b.c_str()) != 0) return kExitPipe;
    s.put("big", big);
    tcache::compact("../a/cache.tcache");
    s.put("after", "the compaction");  // follows the file it opened, not ./cache.tcache
    std::string got;
    if (!s.get("big", got) || got != big) return report(kExitWrongState, "lost the blob value");
    return 0;
  });
  EXPECT_TRUE(fs::is_empty(b)) << "files were made under the new current directory";
  EXPECT_TRUE(fs::exists(a / "cache.tcache.blobs"));
  Store s = Store::open(a / "cache.tcache");
  EXPECT_EQ(s.get("big"), big);
  EXPECT_EQ(s.get("after"), "the compaction");
}

// Item 4: a user that opened the file by another name (a hard link) would
// not follow the compacted file: the compaction refuses, naming it, and
// the user's writes never wait for it.
TEST_F(CompactTest, AUserOnAnotherNameMakesCompactionRefuse) {
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  const fs::path link = dir_ / "link.tcache";
  fs::create_hard_link(file_, link);
  {
    Holders holders;
    const pid_t other = holders.add(link);
    Store mine = Store::open(file_);
    const std::string message = message_of([&] { tcache::compact(file_); });
    EXPECT_NE(message.find("process " + std::to_string(other)), std::string::npos) << message;
    EXPECT_NE(message.find("another name"), std::string::npos) << message;
    EXPECT_EQ(error_of([&] { tcache::compact(file_); }), Errc::busy);
    EXPECT_EQ(compaction_word_of(file_), 0u);
    EXPECT_TRUE(temporary_files(file_).empty());
    mine.put("k2", "v2");
  }  // the holder writes through the link and exits
  // Nobody uses the link now, but the next opener by that name would keep
  // the old file: refused too.
  const std::string message = message_of([&] { tcache::compact(file_); });
  EXPECT_NE(message.find("2 hard links"), std::string::npos) << message;
  fs::remove(link);
  const CompactResult r = tcache::compact(file_);
  EXPECT_GE(r.entries, 3u);
}

// Item 4, a single file bind-mounted elsewhere (docker -v file:file), in a
// private mount namespace where we may make one.
TEST_F(CompactTest, AUserOfABindMountedFileMakesCompactionRefuse) {
  if (::geteuid() != 0) GTEST_SKIP() << "bind mounts need root";
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  const fs::path mnt = dir_ / "container";
  fs::create_directory(mnt);
  const fs::path target = mnt / "cache.tcache";
  { std::ofstream(target.string()).put('\0'); }
  Holders holders;
  // An unprivileged container may not let even root unshare: the child
  // then fails its setup, and the test is skipped.
  Shared<std::atomic<int>> mounted;
  const pid_t other = holders.add(target, [&] {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount(file_.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      mounted->store(-1);
      return false;
    }
    mounted->store(1);
    return true;
  });
  if (mounted->load() != 1) GTEST_SKIP() << "cannot unshare the mount namespace here";
  const std::string message = message_of([&] { tcache::compact(file_); });
  EXPECT_NE(message.find("process " + std::to_string(other)), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { tcache::compact(file_); }), Errc::busy);
  EXPECT_EQ(compaction_word_of(file_), 0u);
}

// Item 4: a user that named the file otherwise only after the compactor
// checked (here: a hard link made during the final phase) finds, after the
// rename, that its name still names the replaced file: its writes fail
// with file_replaced instead of waiting or being lost.
TEST_F(CompactTest, AWriterOnANameMadeDuringTheCompactionGetsFileReplaced) {
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  const fs::path link = dir_ / "late-link.tcache";
  int ready[2];
  int go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t compactor = spawn([&] {
    CompactOptions o;
    o.progress = [&](const CompactProgress& p) {
      if (p.phase != CompactPhase::syncing) return;
      fs::create_hard_link(file_, link);
      char c = 'x';
      if (::write(ready[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(kExitPipe);
    };
    tcache::compact(file_, o);
    return 0;
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  Store late = Store::open(link);
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  expect_exited_zero({compactor}, "compactor");  // it renamed and exited
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  EXPECT_EQ(error_of([&] { late.put("lost?", "v"); }), Errc::file_replaced);
  EXPECT_EQ(late.get("k"), "v");  // reads go on from the old file
  EXPECT_EQ(error_of([&] { tcache::compact(link); }), Errc::file_replaced);
  Store s = Store::open(file_);
  EXPECT_EQ(s.get("k"), "v");
  s.put("k2", "v2");
}

// Item 8: with the process table full, a process works untracked; killed,
// it must not block compaction for good (a live one still does).
TEST_F(CompactTest, AKilledUntrackedProcessDoesNotBlockCompaction) {
  StoreOptions opt;
  opt.capacity_bytes = 4ull << 20;
  {
    Store s = Store::open(file_, opt);
    s.put("k", "v");
  }
  Holders holders;
  for (std::uint32_t i = 0; i < tcache::detail::kMaxProcesses; ++i) holders.add(file_);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t untracked = spawn([&] {
    Store s = Store::open(file_);  // the table is full
    const char c = 'u';
    if (::write(ready[1], &c, 1) != 1) return kExitPipe;
    for (;;) ::pause();
  });
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ::close(ready[0]);
  ::close(ready[1]);
  holders.release_one();  // room for the compactor's own entry
  const std::string message = message_of([&] { tcache::compact(file_); });
  EXPECT_NE(message.find("process table was full"), std::string::npos)
      << "a live untracked process must still block: " << message;
  ::kill(untracked, SIGKILL);
  const int status = wait_for(untracked);
  EXPECT_TRUE(WIFSIGNALED(status)) << describe_status(status);
  const CompactResult r = tcache::compact(file_);  // the dead one blocks nothing
  EXPECT_GE(r.entries, 2u);
  EXPECT_EQ(Store::open(file_).get("k"), "v");
}

// Item 12: a writer stopped (SIGSTOP) in the middle of a write ends the
// final phase's wait at once: the compaction fails with busy naming it,
// leaving the file as it was, and other processes write on.
TEST_F(CompactTest, AStoppedWriterMakesTheCompactionGiveUp) {
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  const pid_t writer = spawn([&] {
    auto impl = tcache::detail::open_store_impl(file_, StoreOptions{});
    if (!impl->enter_write()) return report(kExitWrongState, "the file was superseded");
    ::raise(SIGSTOP);  // in the middle of a write
    impl->put("late", "written after SIGCONT", std::chrono::milliseconds(0));
    impl->leave_write();
    return 0;
  });
  int status = 0;
  ASSERT_EQ(::waitpid(writer, &status, WUNTRACED), writer);
  ASSERT_TRUE(WIFSTOPPED(status)) << describe_status(status);
  const std::string message = message_of([&] { tcache::compact(file_); });
  EXPECT_NE(message.find("process " + std::to_string(writer) + " is stopped"), std::string::npos)
      << message;
  EXPECT_EQ(compaction_word_of(file_), 0u);
  EXPECT_TRUE(temporary_files(file_).empty());
  expect_child_exits_zero("another writer", [&] {
    Store s = Store::open(file_);
    s.put("other", "v");
    return 0;
  });
  ::kill(writer, SIGCONT);
  expect_exited_zero({writer}, "stopped writer");
  Store s = Store::open(file_);
  EXPECT_EQ(s.get("late"), "written after SIGCONT");
  EXPECT_EQ(s.get("other"), "v");
}

// Item 12: a write kept in flight (not stopped) holds the final phase for
// at most CompactOptions::drain_timeout.
TEST_F(CompactTest, TheDrainIsBoundedByItsTimeout) {
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  int held[2];
  int go[2];
  ASSERT_EQ(::pipe(held), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t writer = spawn([&] {
    auto impl = tcache::detail::open_store_impl(file_, StoreOptions{});
    if (!impl->enter_write()) return report(kExitWrongState, "the file was superseded");
    char c = 'w';
    if (::write(held[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) return kExitPipe;
    impl->leave_write();
    return 0;
  });
  char c;
  ASSERT_EQ(::read(held[0], &c, 1), 1);
  CompactOptions o;
  o.drain_timeout = std::chrono::milliseconds(100);
  const std::string message = message_of([&] { tcache::compact(file_, o); });
  EXPECT_NE(message.find("drain timeout"), std::string::npos) << message;
  EXPECT_EQ(compaction_word_of(file_), 0u);
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  expect_exited_zero({writer}, "writer");
  for (int fd : {held[0], held[1], go[0], go[1]}) ::close(fd);
  o.drain_timeout = std::chrono::milliseconds(0);
  EXPECT_EQ(error_of([&] { tcache::compact(file_, o); }), Errc::invalid_option);
  EXPECT_EQ(tcache::compact(file_).entries, 1u);
}

// A compactor stopped (SIGSTOP) in its final phase: writers break it off
// at once instead of waiting 30 s.
TEST_F(CompactTest, WritersBreakOffAStoppedCompactorAtOnce) {
  {
    Store s = Store::open(file_);
    s.put("k", "v");
  }
  const pid_t compactor = spawn([&] {
    CompactOptions o;
    o.progress = [](const CompactProgress& p) {
      if (p.phase == CompactPhase::switching) ::raise(SIGSTOP);
    };
    try {
      tcache::compact(file_, o);
    } catch (const tcache::Error& e) {
      return e.code() == Errc::busy ? 0 : report(kExitWrongState, e.what());
    }
    return report(kExitWrongState, "the broken-off compaction succeeded");
  });
  int status = 0;
  ASSERT_EQ(::waitpid(compactor, &status, WUNTRACED), compactor);
  ASSERT_TRUE(WIFSTOPPED(status)) << describe_status(status);
  std::vector<std::string> lines;
  StoreOptions opt;
  opt.logger = [&](std::string_view line) { lines.emplace_back(line); };
  Store s = Store::open(file_, opt);
  s.put("k2", "v2");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("which is stopped"), std::string::npos) << lines[0];
  ::kill(compactor, SIGCONT);
  expect_exited_zero({compactor}, "compactor");
  EXPECT_EQ(s.get("k"), "v");
  EXPECT_EQ(s.get("k2"), "v2");
}

}  // namespace
