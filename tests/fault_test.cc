// Fault injection: a disk that fills up under the store, a file system
// without fallocate(2), a sparse copy of a cache file on a full disk.
//
// A file-size limit (RLIMIT_FSIZE) makes posix_fallocate and write fail
// with EFBIG exactly as a full disk fails them with ENOSPC, without needing
// a real small file system. Each case runs in a forked child, so the limit
// and the ignored SIGXFSZ stay there.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

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

// Makes fallocate(2) fail with EOPNOTSUPP in this process and its children,
// as on a file system without it (NFSv3, many FUSE file systems): glibc's
// posix_fallocate then falls back to its emulation, which writes a zero
// into every block where it reads one. Returns false if seccomp is refused.
bool without_fallocate() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_fallocate, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EOPNOTSUPP & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog {
    static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter
  };
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// Several processes put and read back their own keys on a file system
// without fallocate. Growing the file by posix_fallocate's emulation zeroed
// bytes that other processes were writing through their mappings (each
// growth rescanned the whole file): acknowledged values came back as
// checksum failures. Now such a file system is refused at open with a
// typed error naming it, and a file is never created there; with the filter
// lifted the same file works, nothing lost.
TEST_F(FaultTest, FileSystemWithoutFallocateIsRefusedNeverZeroed) {
  constexpr int kWriters = 3;
  constexpr int kKeys = 4000;
  const auto key = [](int w, int i) { return "w" + std::to_string(w) + "-" + std::to_string(i); };
  const auto value = [&](int w, int i) {
    return tcache::test::make_value(key(w, i), 1, tcache::test::Fill::random, 200 + i % 400);
  };
  const std::string path = file_.string();
  tcache::StoreOptions o;
  o.capacity_bytes = 64ull << 20;
  o.page_bytes = 64u << 10;
  {
    auto s = tcache::Store::open(path, o);  // made where fallocate works
    s.put("before", "kept");
  }
  tcache::test::expect_child_exits_zero("no-fallocate parent", [&] {
    if (!without_fallocate()) return 77;
    std::vector<pid_t> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.push_back(tcache::test::spawn([&, w] {
        try {
          auto s = tcache::Store::open(path, o);
          for (int i = 0; i < kKeys; ++i) s.put(key(w, i), value(w, i));
          int lost = 0;
          for (int i = 0; i < kKeys; ++i) lost += s.get(key(w, i)) != value(w, i);
          return tcache::test::report(lost == 0 ? 20 : 21, "opened; " + std::to_string(lost) +
                                                               " of " + std::to_string(kKeys) +
                                                               " acknowledged puts lost");
        } catch (const tcache::Error& e) {
          const std::string m = e.what();
          if (e.code() != tcache::Errc::unsupported_file_system ||
              m.find("fallocate") == std::string::npos || m.find(path) == std::string::npos) {
            return tcache::test::report(22, "wrong error: " + m);
          }
          return 0;
        }
      }));
    }
    int failed = 0;
    for (const pid_t pid : writers) {
      const int status = tcache::test::wait_for(pid);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    if (failed != 0) return 30;
    // Nor is a new file created there (nothing is left behind either).
    const std::string other = path + ".new";
    try {
      tcache::Store::open(other, o);
      return tcache::test::report(31, "created a file without fallocate");
    } catch (const tcache::Error& e) {
      if (e.code() != tcache::Errc::unsupported_file_system) return 32;
    }
    if (::access(other.c_str(), F_OK) == 0) return 33;
    // Reading needs no growth: a read-only open works there.
    tcache::StoreOptions ro = o;
    ro.read_only = true;
    return tcache::Store::open(path, ro).get("before") == "kept" ? 0 : 34;
  });
  auto s = tcache::Store::open(file_, o);
  EXPECT_EQ(s.get("before"), "kept");
  EXPECT_TRUE(s.verify().clean());
}

// A cache file copied sparsely (cp --sparse, rsync -S, a restored backup)
// onto a full file system: writing into one of its holes through the
// mapping needs a block the file system does not have, and the kernel kills
// the writer with SIGBUS. Opening must allocate the holes or refuse the
// file (no_space); with room again, it allocates them and the copy works.
// The full file system is a small tmpfs mounted in a private mount
// namespace of a child (needs root, else skipped).
TEST_F(FaultTest, SparseCopyOnAFullDiskIsRefusedNotSigbus) {
  constexpr int kKeys = 3000;
  const auto key = [](int i) { return "k" + std::to_string(i); };
  const auto value = [&](int i) {
    return tcache::test::make_value(key(i), 1, tcache::test::Fill::random, 100 + i % 300);
  };
  tcache::StoreOptions o;
  o.capacity_bytes = 16ull << 20;
  o.page_bytes = 64u << 10;
  o.expected_entry_bytes = 64;  // a large index, mostly zeros: holes in a sparse copy
  {
    auto s = tcache::Store::open(file_, o);
    for (int i = 0; i < kKeys; ++i) s.put(key(i), value(i));
  }
  const std::string original = tcache::test::read_file(file_);
  ASSERT_FALSE(original.empty());
  const fs::path mnt = dir_ / "small-disk";
  fs::create_directory(mnt);
  const fs::path copy = mnt / "cache.tcache";
  const std::string copy_path = copy.string();
  const pid_t pid = tcache::test::spawn([&] {
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tcache-test", mnt.c_str(), "tmpfs", 0, "size=8m") != 0) {
      return 77;  // no private mounts here
    }
    // The sparse copy: only blocks that are not all zeros are written.
    {
      const int fd = ::open(copy_path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
      if (fd < 0) return 40;
      for (std::size_t at = 0; at < original.size(); at += 4096) {
        const std::size_t n = std::min<std::size_t>(4096, original.size() - at);
        if (original.find_first_not_of('\0', at) >= at + n) continue;
        if (::pwrite(fd, original.data() + at, n, static_cast<off_t>(at)) !=
            static_cast<ssize_t>(n)) {
          return 41;
        }
      }
      if (::ftruncate(fd, static_cast<off_t>(original.size())) != 0) return 42;
      if (::lseek(fd, 0, SEEK_HOLE) >= static_cast<off_t>(original.size())) {
        return tcache::test::report(43, "the copy has no holes");
      }
      ::close(fd);
    }
    // Fill the disk.
    const std::string filler_path = (mnt / "filler").string();
    {
      const int fd = ::open(filler_path.c_str(), O_WRONLY | O_CREAT, 0600);
      const std::string block(1u << 16, 'x');
      while (::write(fd, block.data(), block.size()) > 0) {
      }
      ::close(fd);
    }
    try {
      auto s = tcache::Store::open(copy_path, o);
      // Before: open succeeded and these puts died of SIGBUS.
      for (int i = 0; i < kKeys; ++i) s.put("new" + std::to_string(i), value(i));
      return tcache::test::report(44, "a sparse copy on a full disk was opened for writing");
    } catch (const tcache::Error& e) {
      const std::string m = e.what();
      if (e.code() != tcache::Errc::no_space || m.find("holes") == std::string::npos ||
          m.find(copy_path) == std::string::npos) {
        return tcache::test::report(45, "wrong error: " + m);
      }
    }
    // Read-only needs no disk space and reads every entry.
    {
      tcache::StoreOptions ro = o;
      ro.read_only = true;
      auto s = tcache::Store::open(copy_path, ro);
      for (int i = 0; i < kKeys; i += 7) {
        if (s.get(key(i)) != value(i)) return tcache::test::report(46, "read-only lost " + key(i));
      }
    }
    // With room again, open fills the holes and the copy is a working cache.
    ::unlink(filler_path.c_str());
    auto s = tcache::Store::open(copy_path, o);
    {
      // Every block has disk space (SEEK_HOLE cannot tell: allocated but
      // unwritten blocks count as holes there).
      struct stat st {};
      if (::stat(copy_path.c_str(), &st) != 0 ||
          static_cast<std::uint64_t>(st.st_blocks) * 512 < original.size()) {
        return tcache::test::report(47, "holes left after open");
      }
    }
    for (int i = 0; i < kKeys; ++i) {
      if (s.get(key(i)) != value(i)) return tcache::test::report(48, "lost " + key(i));
    }
    for (int i = 0; i < kKeys; ++i) s.put("new" + std::to_string(i), value(i));
    return s.verify().clean() ? 0 : 49;
  });
  const int status = tcache::test::wait_for(pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
    GTEST_SKIP() << "cannot mount a private tmpfs here (needs root and unshare(CLONE_NEWNS))";
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child " << tcache::test::describe_status(status);
}

}  // namespace
