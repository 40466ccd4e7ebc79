// Fault injection: a disk that fills up under the store.
//
// A file-size limit (RLIMIT_FSIZE) makes posix_fallocate and write fail
// with EFBIG exactly as a full disk fails them with ENOSPC, without needing
// a real small file system. Each case runs in a forked child, so the limit
// and the ignored SIGXFSZ stay there.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "support/file_surgery.h"
#include "support/test_support.h"
#include "tcache/tcache.h"

namespace fs = std::filesystem;

namespace {

class FaultTest : public tcache::test::TempDirTest {
 protected:
  FaultTest() : TempDirTest("tcache-fault-test") {}

  // Runs `body` in a child whose files may not grow past `limit` bytes.
  // The child's exit status is body's return value (0 = pass); a message
  // for a failure goes to stderr.
  static int with_file_limit(std::uint64_t limit, const std::function<int()>& body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::signal(SIGXFSZ, SIG_IGN);
      struct rlimit rl {
        limit, limit
      };
      if (::setrlimit(RLIMIT_FSIZE, &rl) != 0) ::_exit(90);
      int rc = 0;
      try {
        rc = body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child threw: %s\n", e.what());
        rc = 91;
      }
      ::_exit(rc);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
};

#define CHILD_EXPECT(cond)                                                    \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #cond); \
      return __LINE__ % 80 + 1;                                               \
    }                                                                         \
  } while (0)

TEST_F(FaultTest, FullDiskTurnsGrowthIntoEvictionNotSigbus) {
  const std::string path = file_.string();
  const int rc = with_file_limit(3u << 20, [&] {
    std::vector<std::string> log;
    tcache::StoreOptions o;
    o.capacity_bytes = 64ull << 20;  // far more than the "disk" allows
    o.page_bytes = 64u << 10;
    o.expected_entry_bytes = 2048;
    o.logger = [&](std::string_view line) { log.emplace_back(line); };
    auto s = tcache::Store::open(path, o);
    const std::string v(1000, 'v');
    for (int i = 0; i < 20000; ++i) s.put("k" + std::to_string(i), v);  // 20 MB into ~3 MB
    const auto st = s.stats();
    CHILD_EXPECT(st.grow_failures > 0);
    CHILD_EXPECT(st.evictions > 0);
    CHILD_EXPECT(st.file_bytes <= (3u << 20));
    CHILD_EXPECT(s.get("k19999") == v);
    for (int i = 0; i < 20000; ++i) {
      auto got = s.get("k" + std::to_string(i));
      CHILD_EXPECT(!got || *got == v);
    }
    // One warning per cause, saying what to do.
    CHILD_EXPECT(log.size() == 1);
    CHILD_EXPECT(log[0].find("cannot grow") != std::string::npos);
    CHILD_EXPECT(log[0].find("Free disk space") != std::string::npos);
    return 0;
  });
  EXPECT_EQ(rc, 0);
  // The file is intact for a process without the limit.
  auto s = tcache::Store::open(file_);
  EXPECT_EQ(s.get("k19999"), std::string(1000, 'v'));
}

TEST_F(FaultTest, NoRoomToCreateGivesAClearError) {
  const std::string path = file_.string();
  const int rc = with_file_limit(64u << 10, [&] {
    tcache::StoreOptions o;
    o.capacity_bytes = 256ull << 20;  // its index alone exceeds 64 KiB
    try {
      tcache::Store::open(path, o);
    } catch (const tcache::Error& e) {
      CHILD_EXPECT(e.code() == tcache::Errc::io_error);
      CHILD_EXPECT(std::string(e.what()).find("cannot allocate") != std::string::npos);
      return 0;
    }
    return 50;
  });
  EXPECT_EQ(rc, 0);
  // Nothing half-made is left under the name or beside it.
  EXPECT_TRUE(fs::is_empty(dir_));
}

TEST_F(FaultTest, FullDiskForABlobIsNoSpaceAndLosesNothing) {
  const std::string path = file_.string();
  {
    auto s = tcache::Store::open(file_, {.capacity_bytes = 16ull << 20});
    s.put("small", "kept");
  }
  const int rc = with_file_limit(1u << 20, [&] {
    auto s = tcache::Store::open(path, {.capacity_bytes = 16ull << 20});
    std::string big(4u << 20, '\0');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 2654435761u >> 13);
    try {
      s.put("big", big);
    } catch (const tcache::Error& e) {
      CHILD_EXPECT(e.code() == tcache::Errc::no_space);
      CHILD_EXPECT(std::string(e.what()).find("free disk space") != std::string::npos);
      CHILD_EXPECT(!s.get("big").has_value());
      CHILD_EXPECT(s.get("small") == "kept");
      return 0;
    }
    return 60;
  });
  EXPECT_EQ(rc, 0);
  auto s = tcache::Store::open(file_);
  EXPECT_EQ(s.get("small"), "kept");
  fs::path blobs = file_;
  blobs += ".blobs";
  // No partial blob file survives.
  if (fs::exists(blobs)) {
    EXPECT_TRUE(fs::is_empty(blobs));
  }
}

TEST_F(FaultTest, CompactionWithoutDiskSpaceFailsAndLosesNothing) {
  constexpr int kKeys = 20000;
  const auto key = [](int i) { return "k" + std::to_string(i); };
  const auto value = [&](int i) {  // ~900 bytes that LZ4 cannot shrink
    return tcache::test::make_value(key(i), 1, tcache::test::Fill::random, 880);
  };
  {
    auto s = tcache::Store::open(file_, {.capacity_bytes = 64ull << 20});
    for (int i = 0; i < kKeys; ++i) s.put(key(i), value(i));
  }
  // Room for the new file's index and 4 MiB of its ~18 MB of entries.
  const std::uint64_t limit =
      tcache::test::FileSurgery(file_).superblock().pages_offset + (4u << 20);
  ASSERT_GT(fs::file_size(file_), limit);
  const std::string path = file_.string();
  const int rc = with_file_limit(limit, [&] {
    try {
      tcache::compact(path);
    } catch (const tcache::Error& e) {
      CHILD_EXPECT(e.code() == tcache::Errc::no_space);
      CHILD_EXPECT(std::string(e.what()).find("free disk space") != std::string::npos);
      CHILD_EXPECT(std::string(e.what()).find("unchanged") != std::string::npos);
      return 0;
    }
    return 70;  // compacted (evicting) where it should have failed
  });
  ASSERT_EQ(rc, 0);
  // Only the cache file is left, with every entry.
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_EQ(entry.path(), file_) << "left behind: " << entry.path();
  }
  {
    auto s = tcache::Store::open(file_);
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_EQ(s.get(key(i)), value(i)) << key(i);
    }
    EXPECT_TRUE(s.verify().clean());
  }
  // With the space back, the same compaction keeps them all.
  const tcache::CompactResult r = tcache::compact(file_);
  EXPECT_EQ(r.entries, std::uint64_t{kKeys});
  EXPECT_EQ(r.evicted, 0u);
}

}  // namespace
