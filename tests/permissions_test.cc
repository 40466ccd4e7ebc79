// tests/permissions_test.cc: the security defaults a user relies on when a
// cache file lives next to other users' files. Every test works on real files
// in a fresh temporary directory: new files get exactly the requested mode
// whatever the umask, loose or foreign files and symbolic links are refused
// (unless sharing is asked for), and read-only handles never write.

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/test_support.h"
#include "tcache/tcache.h"

namespace {

namespace fs = std::filesystem;
using tcache::Errc;
using tcache::Store;
using tcache::StoreOptions;
using tcache::test::read_file;
using tcache::test::TempDirTest;
using ::testing::AnyOf;
using ::testing::HasSubstr;

// uid/gid of "nobody" on Debian-like systems; any uid other than ours works.
constexpr uid_t kOtherUid = 65534;
constexpr gid_t kOtherGid = 65534;

// Sets the process umask for one scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

// The error a call threw, or nullopt (with a test failure) if it threw none.
struct Thrown {
  Errc code;
  std::string message;
};
std::optional<Thrown> error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const tcache::Error& e) {
    return Thrown{e.code(), e.what()};
  }
  ADD_FAILURE() << "expected a tcache::Error, nothing was thrown";
  return std::nullopt;
}

// The error Store::open(file, o) threw (see error_of()).
std::optional<Thrown> open_error(const fs::path& file, const StoreOptions& o) {
  return error_of([&] { Store::open(file, o); });
}

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p << ": " << std::strerror(errno);
  return st.st_mode & 07777;
}

std::string octal(mode_t m) {
  char b[16];
  std::snprintf(b, sizeof b, "%04o", static_cast<unsigned>(m));
  return b;
}

std::vector<std::string> entries_of(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  return names;
}

StoreOptions small_options() {
  StoreOptions o;
  o.capacity_bytes = 4ull << 20;
  return o;
}

StoreOptions read_only_options() {
  StoreOptions o = small_options();
  o.read_only = true;
  return o;
}

StoreOptions shared_options() {
  StoreOptions o = small_options();
  o.allow_shared_access = true;
  return o;
}

// Creates `file` with options `o` under umask `mask` and puts "k" = "v".
void create_under_umask(const fs::path& file, const StoreOptions& o, mode_t mask) {
  ScopedUmask scoped(mask);
  Store s = Store::open(file, o);
  s.put("k", "v");
}

// Opening `file` without allow_shared_access, read-write and read-only,
// throws unsafe_permissions with a message that contains each of `mentions`.
void expect_open_refused_as_unsafe(const fs::path& file, const std::vector<std::string>& mentions) {
  for (const bool read_only : {false, true}) {
    SCOPED_TRACE(read_only ? "read_only" : "read-write");
    StoreOptions o = small_options();
    o.read_only = read_only;
    const auto e = open_error(file, o);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, Errc::unsafe_permissions) << e->message;
    for (const std::string& m : mentions) EXPECT_THAT(e->message, HasSubstr(m));
  }
}

class PermissionsTest : public TempDirTest {
 protected:
  PermissionsTest() : TempDirTest("tcache-permissions-test") {}
  void TearDown() override {
    // A test may have made a directory unwritable; make it removable again.
    ::chmod(dir_.c_str(), 0700);
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator(dir_, ec)) {
      if (e.is_directory()) ::chmod(e.path().c_str(), 0700);
    }
    TempDirTest::TearDown();
  }

  // Creates the cache file with one entry in it and closes it.
  void create_with_entry(StoreOptions o = small_options()) {
    Store s = Store::open(file_, o);
    s.put("greeting", "hello");
  }
};

TEST_F(PermissionsTest, NewFileIsExactly0600WhateverTheUmask) {
  for (const mode_t mask : {mode_t{0}, mode_t{022}, mode_t{077}, mode_t{0777}}) {
    SCOPED_TRACE("umask " + octal(mask));
    const fs::path file = dir_ / ("umask-" + octal(mask) + ".tcache");
    create_under_umask(file, small_options(), mask);
    EXPECT_EQ(octal(mode_of(file)), "0600");
    // The file is ours and reopens without complaint.
    Store again = Store::open(file, small_options());
    EXPECT_EQ(again.get("k"), "v");
  }
  // Creation goes through a temporary name; nothing of it may be left over.
  EXPECT_EQ(entries_of(dir_).size(), 4u) << ::testing::PrintToString(entries_of(dir_));
}

TEST_F(PermissionsTest, ModeOptionIsHonouredWhateverTheUmask) {
  for (const mode_t mask : {mode_t{0}, mode_t{077}}) {
    for (const mode_t mode : {mode_t{0640}, mode_t{0644}, mode_t{0604}, mode_t{0700}}) {
      SCOPED_TRACE("umask " + octal(mask) + ", mode " + octal(mode));
      const fs::path file = dir_ / ("m" + octal(mode) + "-u" + octal(mask) + ".tcache");
      StoreOptions o = small_options();
      o.mode = mode;
      create_under_umask(file, o, mask);
      EXPECT_EQ(octal(mode_of(file)), octal(mode));
      // Readable by the group is not writable by it: reopening with default
      // options is fine.
      Store again = Store::open(file, small_options());
      EXPECT_EQ(again.get("k"), "v");
    }
  }
}

TEST_F(PermissionsTest, SharedModeWithAllowSharedAccessIsHonoured) {
  for (const mode_t mode : {mode_t{0660}, mode_t{0666}}) {
    SCOPED_TRACE("mode " + octal(mode));
    const fs::path file = dir_ / ("shared-" + octal(mode) + ".tcache");
    StoreOptions o = small_options();
    o.mode = mode;
    o.allow_shared_access = true;
    create_under_umask(file, o, 077);
    EXPECT_EQ(octal(mode_of(file)), octal(mode));
    Store again = Store::open(file, o);
    EXPECT_EQ(again.get("k"), "v");
  }
}

TEST_F(PermissionsTest, GroupOrWorldWritableFileIsRefused) {
  create_with_entry();
  for (const mode_t mode : {mode_t{0666}, mode_t{0620}, mode_t{0602}, mode_t{0660}}) {
    SCOPED_TRACE("mode " + octal(mode));
    ASSERT_EQ(::chmod(file_.c_str(), mode), 0) << std::strerror(errno);
    // The message names the file and says what to do about it.
    ASSERT_NO_FATAL_FAILURE(
        expect_open_refused_as_unsafe(file_, {file_.string(), "chmod", "allow_shared_access"}));
    // Refusing must not have "fixed" the file behind the user's back.
    EXPECT_EQ(octal(mode_of(file_)), octal(mode));

    Store s = Store::open(file_, shared_options());
    EXPECT_EQ(s.get("greeting"), "hello");
    s.put("greeting", "hi");
    EXPECT_EQ(s.get("greeting"), "hi");
    s.put("greeting", "hello");
  }
}

TEST_F(PermissionsTest, SymbolicLinkIsRefused) {
  create_with_entry();
  const fs::path link = dir_ / "link.tcache";
  fs::create_symlink(file_, link);
  for (const bool read_only : {false, true}) {
    for (const bool shared : {false, true}) {
      SCOPED_TRACE(std::string(read_only ? "read_only" : "read-write") +
                   (shared ? ", allow_shared_access" : ""));
      StoreOptions o = small_options();
      o.read_only = read_only;
      o.allow_shared_access = shared;
      const auto e = open_error(link, o);
      ASSERT_TRUE(e.has_value());
      EXPECT_EQ(e->code, Errc::unsafe_permissions) << e->message;
      EXPECT_THAT(e->message, HasSubstr(link.string()));
    }
  }
  // The target is intact and still opens directly.
  Store s = Store::open(file_, small_options());
  EXPECT_EQ(s.get("greeting"), "hello");
}

TEST_F(PermissionsTest, DanglingSymbolicLinkIsRefusedNotFollowedToCreate) {
  const fs::path target = dir_ / "target.tcache";
  const fs::path link = dir_ / "dangling.tcache";
  fs::create_symlink(target, link);
  const auto e = open_error(link, small_options());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, Errc::unsafe_permissions) << e->message;
  EXPECT_FALSE(fs::exists(fs::symlink_status(target))) << "open created the link's target";
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
}

TEST_F(PermissionsTest, ModeGrantingGroupOrOtherWriteNeedsAllowSharedAccess) {
  for (const mode_t mode :
       {mode_t{0660}, mode_t{0606}, mode_t{0666}, mode_t{0620}, mode_t{0602}, mode_t{0622}}) {
    SCOPED_TRACE("mode " + octal(mode));
    StoreOptions o = small_options();
    o.mode = mode;
    const auto e = open_error(file_, o);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, Errc::invalid_option) << e->message;
    EXPECT_THAT(e->message, HasSubstr("allow_shared_access"));
    EXPECT_TRUE(entries_of(dir_).empty())
        << "an invalid option still created " << ::testing::PrintToString(entries_of(dir_));
  }
}

TEST_F(PermissionsTest, ModeOptionMustBePermissionBitsThatLetTheOwnerWrite) {
  for (const std::uint32_t mode : {04600u, 02600u, 01600u, 0400u, 0200u, 0000u, 0100000u}) {
    SCOPED_TRACE("mode " + octal(static_cast<mode_t>(mode)));
    StoreOptions o = small_options();
    o.mode = mode;
    const auto e = open_error(file_, o);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, Errc::invalid_option) << e->message;
    EXPECT_TRUE(entries_of(dir_).empty());
  }
}

TEST_F(PermissionsTest, ReadOnlyOfMissingFileIsAnErrorNotACreation) {
  const auto e = open_error(file_, read_only_options());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, Errc::io_error) << e->message;
  EXPECT_THAT(e->message, HasSubstr(file_.string()));
  EXPECT_TRUE(entries_of(dir_).empty())
      << "read_only open created " << ::testing::PrintToString(entries_of(dir_));

  // create_if_missing = false is the same, for a read-write open.
  StoreOptions no_create = small_options();
  no_create.create_if_missing = false;
  const auto e2 = open_error(file_, no_create);
  ASSERT_TRUE(e2.has_value());
  EXPECT_EQ(e2->code, Errc::io_error) << e2->message;
  EXPECT_TRUE(entries_of(dir_).empty());
}

TEST_F(PermissionsTest, ReadOnlyStoreReadsButNeverWrites) {
  {
    Store w = Store::open(file_, small_options());
    w.put("greeting", "hello");
    w.put("big", std::string(20000, 'z'));  // compressed on disk
    w.put("doomed", "bye");
  }
  const std::string bytes_before = read_file(file_);

  Store r = Store::open(file_, read_only_options());
  EXPECT_EQ(r.get("greeting"), "hello");
  EXPECT_EQ(r.get("big"), std::string(20000, 'z'));
  std::string buf;
  EXPECT_TRUE(r.get("doomed", buf));
  EXPECT_EQ(buf, "bye");
  EXPECT_FALSE(r.get("absent").has_value());
  EXPECT_TRUE(r.contains("greeting"));

  const auto put = error_of([&] { r.put("greeting", "changed"); });
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(put->code, Errc::read_only) << put->message;
  const auto erase = error_of([&] { r.erase("doomed"); });
  ASSERT_TRUE(erase.has_value());
  EXPECT_EQ(erase->code, Errc::read_only) << erase->message;
  const auto clear = error_of([&] { r.clear(); });
  ASSERT_TRUE(clear.has_value());
  EXPECT_EQ(clear->code, Errc::read_only) << clear->message;
  EXPECT_NO_THROW(r.flush());

  // Nothing changed: every entry is still there, for this handle and others.
  EXPECT_EQ(r.get("greeting"), "hello");
  EXPECT_EQ(r.get("doomed"), "bye");
  const tcache::StoreStats st = r.stats();
  EXPECT_EQ(st.entries, 3u);
  EXPECT_GE(st.hits, 5u);  // this process's reads count, even kept private
  EXPECT_TRUE(read_file(file_) == bytes_before) << "a read-only handle changed the file";
  Store w = Store::open(file_, small_options());
  EXPECT_EQ(w.get("greeting"), "hello");
  EXPECT_EQ(w.get("doomed"), "bye");
  // A writer's changes are visible through the read-only handle.
  w.put("greeting", "hi");
  EXPECT_EQ(r.get("greeting"), "hi");
  EXPECT_EQ(octal(mode_of(file_)), "0600");
}

TEST_F(PermissionsTest, ReadOnlyOpenWorksOnAFileWithoutWritePermission) {
  create_with_entry();
  ASSERT_EQ(::chmod(file_.c_str(), 0400), 0);
  Store r = Store::open(file_, read_only_options());
  EXPECT_EQ(r.get("greeting"), "hello");
  const auto put = error_of([&] { r.put("greeting", "changed"); });
  ASSERT_TRUE(put.has_value());
  EXPECT_EQ(put->code, Errc::read_only);
}

TEST_F(PermissionsTest, DirectoryPathGivesAClearError) {
  const fs::path sub = dir_ / "subdir";
  ASSERT_TRUE(fs::create_directory(sub));
  for (const bool read_only : {false, true}) {
    SCOPED_TRACE(read_only ? "read_only" : "read-write");
    StoreOptions o = small_options();
    o.read_only = read_only;
    const auto e = open_error(sub, o);
    ASSERT_TRUE(e.has_value());
    EXPECT_THAT(e->code, AnyOf(Errc::io_error, Errc::unsafe_permissions, Errc::not_a_cache_file))
        << e->message;
    EXPECT_THAT(e->message, HasSubstr(sub.string()));
  }
  // The directory is left as it was: nothing created inside or beside it.
  EXPECT_TRUE(fs::is_empty(sub));
  EXPECT_EQ(entries_of(dir_), std::vector<std::string>{"subdir"});
}

TEST_F(PermissionsTest, FileOwnedByAnotherUserIsRefused) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give a file to another user (chown)";
  }
  create_with_entry();
  ASSERT_EQ(::chown(file_.c_str(), kOtherUid, kOtherGid), 0) << std::strerror(errno);
  ASSERT_EQ(octal(mode_of(file_)), "0600");
  ASSERT_NO_FATAL_FAILURE(
      expect_open_refused_as_unsafe(file_, {file_.string(), "allow_shared_access"}));
  Store s = Store::open(file_, shared_options());
  EXPECT_EQ(s.get("greeting"), "hello");
  s.put("greeting", "hi");
  EXPECT_EQ(s.get("greeting"), "hi");
  // Opening did not take the file over.
  struct stat st {};
  ASSERT_EQ(::stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kOtherUid);
}

TEST_F(PermissionsTest, UnwritableDirectoryGivesIoErrorForANewFile) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root: directory permissions do not stop root from creating "
                    "files (CAP_DAC_OVERRIDE), so the refusal cannot be observed";
  }
  const fs::path sub = dir_ / "locked";
  ASSERT_TRUE(fs::create_directory(sub));
  ASSERT_EQ(::chmod(sub.c_str(), 0500), 0);
  const auto e = open_error(sub / "cache.tcache", small_options());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, Errc::io_error) << e->message;
  EXPECT_THAT(e->message, HasSubstr((sub / "cache.tcache").string()));
  ::chmod(sub.c_str(), 0700);
  EXPECT_TRUE(fs::is_empty(sub));
}

// Two users sharing a cache file through a group (mode 0660,
// allow_shared_access), each in its own process with its own uid: the
// second user's large values (blob files) must work like the first's, and
// its erases must remove the first user's blob files. The blob directory
// follows the cache file's sharing: group-writable and setgid, its files
// 0660 in the cache file's group. (Before, the directory was created 0750:
// the second user's large puts failed with "Permission denied", and its
// erases reported success but left the blob file behind.)
TEST_F(PermissionsTest, GroupSharedFileSharesItsBlobFiles) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run processes as two other users";
  constexpr uid_t kAlice = 64101;
  constexpr uid_t kBob = 64102;
  constexpr gid_t kTeam = 64100;
  // Both may reach the shared directory; nobody else may write in it.
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  const fs::path shared = dir_ / "shared";
  ASSERT_TRUE(fs::create_directory(shared));
  ASSERT_EQ(::chown(shared.c_str(), 0, kTeam), 0) << std::strerror(errno);
  ASSERT_EQ(::chmod(shared.c_str(), 02770), 0);
  const fs::path file = shared / "cache.tcache";
  fs::path blobs = file;
  blobs += ".blobs";
  const auto big = [](const std::string& who) {  // larger than a page, incompressible
    return tcache::test::make_value(who, 1, tcache::test::Fill::random, 600u << 10);
  };
  // Runs body as `uid` in group kTeam (a umask that would take group write
  // away, as most users have).
  const auto as_user = [&](uid_t uid, const std::function<int(Store&)>& body) {
    tcache::test::expect_child_exits_zero("uid " + std::to_string(uid), [&] {
      const gid_t groups[] = {kTeam};
      if (::setgroups(1, groups) != 0 || ::setgid(kTeam) != 0 || ::setuid(uid) != 0) return 90;
      ::umask(022);
      StoreOptions o = shared_options();
      o.mode = 0660;
      Store s = Store::open(file, o);
      return body(s);
    });
  };
  as_user(kAlice, [&](Store& s) {
    s.put("alice-big", big("alice"));
    s.put("alice-small", "a");
    return 0;
  });
  as_user(kBob, [&](Store& s) {
    if (s.get("alice-big") != big("alice")) return tcache::test::report(1, "cannot read alice's");
    s.put("bob-big", big("bob"));  // threw io_error (Permission denied) before
    if (s.get("bob-big") != big("bob")) return tcache::test::report(2, "lost bob's");
    if (!s.erase("alice-big")) return tcache::test::report(3, "erase found nothing");
    return 0;
  });
  ASSERT_FALSE(HasFailure());
  // Alice's blob file is gone with her entry; Bob's is shared like the file.
  struct stat dst {};
  ASSERT_EQ(::stat(blobs.c_str(), &dst), 0);
  EXPECT_EQ(dst.st_gid, kTeam);
  EXPECT_EQ(octal(dst.st_mode & 07777), "2770");
  const std::vector<std::string> names = entries_of(blobs);
  ASSERT_EQ(names.size(), 1u);
  struct stat fst {};
  ASSERT_EQ(::stat((blobs / names[0]).c_str(), &fst), 0);
  EXPECT_EQ(fst.st_uid, kBob);
  EXPECT_EQ(fst.st_gid, kTeam);
  EXPECT_EQ(octal(fst.st_mode & 07777), "0660");
  as_user(kAlice, [&](Store& s) {
    if (s.get("bob-big") != big("bob")) return tcache::test::report(4, "cannot read bob's");
    if (!s.erase("bob-big")) return tcache::test::report(5, "erase found nothing");
    return s.get("alice-small") == "a" ? 0 : 6;
  });
  EXPECT_TRUE(fs::is_empty(blobs));
}

// A FIFO under the cache file's name: a read-only open (O_RDONLY) of a FIFO
// waits for a writer forever unless it is non-blocking. Refused at once as
// not a regular file; the open runs in a child bounded by alarm() so that
// the old hang fails the test rather than stalling it.
TEST_F(PermissionsTest, FifoPathIsRefusedNotWaitedOn) {
  ASSERT_EQ(::mkfifo(file_.c_str(), 0600), 0) << std::strerror(errno);
  for (const bool read_only : {true, false}) {
    SCOPED_TRACE(read_only ? "read_only" : "read-write");
    tcache::test::expect_child_exits_zero("opener", [&] {
      ::alarm(120);  // bounds the failure case only
      StoreOptions o = small_options();
      o.read_only = read_only;
      try {
        Store::open(file_, o);
      } catch (const tcache::Error& e) {
        return e.code() == Errc::unsafe_permissions &&
                       std::string(e.what()).find("not a regular file") != std::string::npos
                   ? 0
                   : 1;
      }
      return 2;
    });
  }
}

}  // namespace
