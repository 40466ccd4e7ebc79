// tests/tool_test.cc: tcache-tool as a user runs it. Each test runs the built
// binary (TCACHE_TOOL_PATH) on real files in a fresh temporary directory and
// checks its exit status, its output and the files it leaves.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "dump/stream.h"           // crafted dump streams (internal on purpose)
#include "support/file_surgery.h"  // verify tests damage files in known ways
#include "support/test_support.h"
#include "support/workers.h"
#include "tcache/tcache.h"

#ifndef TCACHE_TOOL_PATH
#error "TCACHE_TOOL_PATH must name the tcache-tool binary (set in tests/CMakeLists.txt)"
#endif

namespace {

namespace fs = std::filesystem;
using tcache::test::read_file;
using tcache::test::TempDirTest;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct Result {
  int status = -1;  // exit status, or -1 if the tool died by a signal
  std::string out;
  std::string err;
};

void write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

class ToolTest : public TempDirTest {
 protected:
  ToolTest() : TempDirTest("tcache-tool-test") {}

  // Runs tcache-tool with `args`, feeding `input` on stdin; stdout and stderr
  // go to files so that binary output and large output are captured whole.
  // `in_child` runs in the child before the exec (a umask, a limit).
  Result run(const std::vector<std::string>& args, const std::string& input = {},
             const std::function<void()>& in_child = {}) {
    const fs::path in_path = dir_ / "stdin";
    const fs::path out_path = dir_ / "stdout";
    const fs::path err_path = dir_ / "stderr";
    write_file(in_path, input);
    std::vector<std::string> argv_storage = {TCACHE_TOOL_PATH};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& arg : argv_storage) argv.push_back(arg.data());
    argv.push_back(nullptr);

    const pid_t pid = ::fork();
    if (pid == 0) {
      if (in_child) in_child();
      const int in = ::open(in_path.c_str(), O_RDONLY);
      const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (in < 0 || out < 0 || err < 0) ::_exit(127);
      ::dup2(in, STDIN_FILENO);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(err, STDERR_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    Result result;
    if (pid < 0) {
      ADD_FAILURE() << "fork failed: " << std::strerror(errno);
      return result;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = read_file(out_path);
    result.err = read_file(err_path);
    return result;
  }

  // Creates file_ with a small capacity, asserting success.
  void create() {
    const Result r = run({"create", file_, "--capacity", "8M"});
    ASSERT_EQ(r.status, 0) << r.err;
  }

  // Puts `value` under `key` through stdin ("-") and gets it back: the same
  // bytes.
  void expect_stdin_put_round_trips(const std::string& key, const std::string& value) {
    Result r = run({"put", file_, key, "-"}, value);
    ASSERT_EQ(r.status, 0) << r.err;
    r = run({"get", file_, key});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, value);
  }
};

// Every byte value, NUL and newline included, plus a long tail.
std::string binary_value() {
  std::string value;
  for (int round = 0; round < 3; ++round) {
    for (int b = 0; b < 256; ++b) value.push_back(static_cast<char>(b));
  }
  value += std::string("\0\n\r\xff", 4);
  return value;
}

mode_t file_mode(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << std::strerror(errno);
  return st.st_mode & 07777;
}

TEST_F(ToolTest, HelpAndVersion) {
  Result r = run({"--help"});
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* command : {"create", "put", "get", "del", "stats"}) {
    EXPECT_THAT(r.out, HasSubstr(command));
  }
  r = run({"--version"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(tcache::kVersionString));
  r = run({"put", "--help"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("--ttl"));
}

TEST_F(ToolTest, UsageErrorsExitTwoAndPointToHelp) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {}, {"frobnicate"}, {"get", file_}, {"put", file_, "k", "v", "--ttl", "soon"}}) {
    const Result r = run(args);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_THAT(r.err, StartsWith("tcache-tool: "));
    EXPECT_THAT(r.err, HasSubstr("--help"));
  }
}

TEST_F(ToolTest, CreateMakesAnOwnerOnlyFileWhateverTheUmask) {
  const Result r = run({"create", file_}, {}, [] { ::umask(0); });
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(file_.string()));
  ASSERT_TRUE(fs::is_regular_file(file_));
  EXPECT_EQ(file_mode(file_), 0600u);
}

TEST_F(ToolTest, CreateAppliesModeAndCapacity) {
  const Result r =
      run({"create", file_, "--capacity", "64M", "--mode", "0640"}, {}, [] { ::umask(077); });
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(file_mode(file_), 0640u);
  const Result stats = run({"stats", file_, "--json"});
  ASSERT_EQ(stats.status, 0) << stats.err;
  EXPECT_EQ(nlohmann::json::parse(stats.out).at("capacity_bytes").get<std::uint64_t>(),
            64ull << 20);
}

TEST_F(ToolTest, CreateAcceptsSizeSpellings) {
  const std::pair<const char*, std::uint64_t> cases[] = {
      {"1048576", 1ull << 20}, {"2M", 2ull << 20}, {"3MiB", 3ull << 20},
      {"4096k", 4ull << 20},   {"1G", 1ull << 30},
  };
  int i = 0;
  for (const auto& [text, bytes] : cases) {
    const std::string file = (dir_ / ("size" + std::to_string(i++) + ".tcache")).string();
    const Result r = run({"create", file, "--capacity", text});
    ASSERT_EQ(r.status, 0) << text << ": " << r.err;
    const Result stats = run({"stats", file, "--json"});
    ASSERT_EQ(stats.status, 0) << stats.err;
    EXPECT_EQ(nlohmann::json::parse(stats.out).at("capacity_bytes").get<std::uint64_t>(), bytes)
        << text;
  }
}

TEST_F(ToolTest, CreateRejectsBadSizeAndModeClearly) {
  for (const char* size : {"64Q", "abc", "", "-1", "1.5G", "64MB", "99999999999999999999"}) {
    const Result r = run({"create", file_, "--capacity", size});
    EXPECT_EQ(r.status, 2) << size;
    EXPECT_THAT(r.err, StartsWith("tcache-tool: create failed: invalid --capacity")) << size;
    EXPECT_THAT(r.err, HasSubstr("e.g. 64M")) << size;
    EXPECT_FALSE(fs::exists(file_)) << size;
  }
  for (const char* mode : {"0999", "rw", "7777", ""}) {
    const Result r = run({"create", file_, "--mode", mode});
    EXPECT_EQ(r.status, 2) << mode;
    EXPECT_THAT(r.err, StartsWith("tcache-tool: create failed: invalid --mode")) << mode;
    EXPECT_FALSE(fs::exists(file_)) << mode;
  }
}

TEST_F(ToolTest, CreateOutOfRangeCapacityIsTheLibrarysInvalidOption) {
  const Result r = run({"create", file_, "--capacity", "4K"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: create failed: "));
  EXPECT_THAT(r.err, HasSubstr("(invalid_option)"));
}

TEST_F(ToolTest, GroupWritableFilesNeedAllowSharedAccess) {
  Result r = run({"create", file_, "--capacity", "8M", "--mode", "0660"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: create failed: "));
  EXPECT_FALSE(fs::exists(file_));

  r = run({"create", file_, "--capacity", "8M", "--mode", "0660", "--allow-shared-access"}, {},
          [] { ::umask(077); });
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(file_mode(file_), 0660u);

  r = run({"stats", file_});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("(unsafe_permissions)"));
  // The flag works before the command name as well as after it.
  r = run({"--allow-shared-access", "put", file_, "k", "shared"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = run({"get", file_, "k", "--allow-shared-access"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "shared");
}

TEST_F(ToolTest, CreateRefusesAnExistingPath) {
  write_file(file_, "precious");
  const Result r = run({"create", file_});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: create failed: "));
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  EXPECT_EQ(read_file(file_), "precious");
}

TEST_F(ToolTest, PutThenGetRoundTrips) {
  create();
  Result r = run({"put", file_, "greeting", "hello world"});
  ASSERT_EQ(r.status, 0) << r.err;
  r = run({"get", file_, "greeting"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "hello world");  // raw: no newline added

  r = run({"put", file_, "greeting", "replaced", "--ttl", "3600"});
  ASSERT_EQ(r.status, 0) << r.err;
  r = run({"get", file_, "greeting"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "replaced");
}

TEST_F(ToolTest, PutReadsABinaryValueFromStdin) {
  create();
  expect_stdin_put_round_trips("blob", binary_value());
}

TEST_F(ToolTest, PutReadsALargeCompressibleValueFromStdin) {
  create();
  std::string value;
  while (value.size() < 200'000) value += "a fairly repetitive line of text\n";
  expect_stdin_put_round_trips("big", value);
}

TEST_F(ToolTest, ValuesWrittenByTheToolAreTheLibrarysValues) {
  create();
  ASSERT_EQ(run({"put", file_, "shared", "from the tool"}).status, 0);
  tcache::StoreOptions options;
  options.create_if_missing = false;
  {
    tcache::Store store = tcache::Store::open(file_, options);
    EXPECT_EQ(store.get("shared"), "from the tool");
    store.put("other", "from the library");
  }
  const Result r = run({"get", file_, "other"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "from the library");
}

TEST_F(ToolTest, GetMissExitsOneWithEmptyStdout) {
  create();
  const Result r = run({"get", file_, "absent"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_THAT(r.err, HasSubstr("absent"));
}

TEST_F(ToolTest, DelRemovesAndExitsOneWhenAbsent) {
  create();
  ASSERT_EQ(run({"put", file_, "k", "v"}).status, 0);
  Result r = run({"del", file_, "k"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = run({"del", file_, "k"});
  EXPECT_EQ(r.status, 1) << r.err;
  r = run({"get", file_, "k"});
  EXPECT_EQ(r.status, 1) << r.err;
}

TEST_F(ToolTest, MissingFileIsAnErrorThatSaysHowToCreateIt) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"get", file_, "k"}, {"put", file_, "k", "v"}, {"del", file_, "k"}, {"stats", file_}}) {
    const Result r = run(args);
    EXPECT_EQ(r.status, 2) << args[0];
    EXPECT_THAT(r.err, StartsWith("tcache-tool: " + args[0] + " failed: ")) << args[0];
    EXPECT_THAT(r.err, HasSubstr("tcache-tool create " + file_.string())) << args[0];
    EXPECT_FALSE(fs::exists(file_)) << args[0] << " created the file";
  }
}

TEST_F(ToolTest, NotACacheFileIsRefused) {
  write_file(file_, std::string(64 * 1024, 'x'));
  ::chmod(file_.c_str(), 0600);
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"get", file_, "k"}, {"put", file_, "k", "v"}, {"stats", file_}}) {
    const Result r = run(args);
    EXPECT_EQ(r.status, 2) << args[0];
    EXPECT_THAT(r.err, StartsWith("tcache-tool: " + args[0] + " failed: ")) << args[0];
    EXPECT_THAT(r.err, HasSubstr("(not_a_cache_file)")) << r.err;
    // One line, ending in a newline.
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }
  EXPECT_EQ(read_file(file_), std::string(64 * 1024, 'x'));
}

TEST_F(ToolTest, LibraryErrorsAreReportedWithTheirCode) {
  create();
  const Result r = run({"put", file_, std::string(tcache::Store::kMaxKeyBytes + 1, 'k'), "v"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: put failed: "));
  EXPECT_THAT(r.err, HasSubstr("(key_too_large)"));
}

TEST_F(ToolTest, StatsJsonHasEveryStoreStatsField) {
  create();
  for (int i = 0; i < 10; ++i) {
    ASSERT_EQ(run({"put", file_, "key" + std::to_string(i), std::string(100, 'v')}).status, 0);
  }
  const Result r = run({"stats", file_, "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json stats = nlohmann::json::parse(r.out);
  ASSERT_TRUE(stats.is_object());
  const std::set<std::string> expected = {"entries",
                                          "bytes",
                                          "blob_bytes",
                                          "capacity_bytes",
                                          "file_bytes",
                                          "index_slots",
                                          "page_bytes",
                                          "pages_total",
                                          "pages_used",
                                          "hits",
                                          "misses",
                                          "puts",
                                          "erases",
                                          "evictions",
                                          "expirations",
                                          "checksum_failures",
                                          "grow_failures",
                                          "recoveries",
                                          "attached_processes"};
  std::set<std::string> keys;
  for (const auto& [key, value] : stats.items()) {
    if (key == "classes" || key == "processes") {
      EXPECT_TRUE(value.is_array()) << key;
      continue;
    }
    keys.insert(key);
    EXPECT_TRUE(value.is_number_unsigned()) << key;
  }
  EXPECT_EQ(keys, expected);
  ASSERT_EQ(stats.at("classes").size(), 1u);  // ten 100-byte values share one class
  EXPECT_EQ(stats.at("classes")[0].at("entries").get<std::uint64_t>(), 10u);
  EXPECT_TRUE(stats.at("processes").empty());  // the tool detached (read-only: never listed)
  EXPECT_EQ(stats.at("entries").get<std::uint64_t>(), 10u);
  EXPECT_EQ(stats.at("puts").get<std::uint64_t>(), 10u);
  EXPECT_EQ(stats.at("capacity_bytes").get<std::uint64_t>(), 8ull << 20);
  EXPECT_GT(stats.at("file_bytes").get<std::uint64_t>(), 0u);
}

TEST_F(ToolTest, StatsPrometheusAndProcesses) {
  create();
  tcache::Store held = tcache::Store::open(file_);  // an attached process: this one
  held.put("k", "v");
  held.get("k");
  Result r = run({"stats", file_, "--prometheus"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("# TYPE tcache_hits_total counter\n"));
  EXPECT_THAT(r.out, HasSubstr("tcache_hits_total{file=\"" + file_.string() + "\"} 1\n"));
  EXPECT_THAT(r.out, HasSubstr("# TYPE tcache_entries gauge\n"));
  EXPECT_THAT(r.out, HasSubstr("tcache_class_entries{"));
  r = run({"stats", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("pid " + std::to_string(::getpid())));
  EXPECT_THAT(r.out, HasSubstr("alive"));
  EXPECT_THAT(r.out, HasSubstr("chunk_bytes"));
  r = run({"stats", file_, "--json"});
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.at("processes").size(), 1u);
  EXPECT_EQ(j.at("processes")[0].at("pid").get<int>(), ::getpid());
  EXPECT_TRUE(j.at("processes")[0].at("alive").get<bool>());
  EXPECT_EQ(run({"stats", file_, "--json", "--prometheus"}).status, 2);
}

TEST_F(ToolTest, StatsHumanOutputIsATable) {
  create();
  const Result r = run({"stats", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("entries"));
  EXPECT_THAT(r.out, HasSubstr("capacity_bytes"));
  EXPECT_THAT(r.out, HasSubstr("8.0 MiB"));
}

TEST_F(ToolTest, StatsJsonReportsErrorsAsJsonToo) {
  write_file(file_, std::string(64 * 1024, 'x'));
  ::chmod(file_.c_str(), 0600);
  const Result r = run({"stats", file_, "--json"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: stats failed: "));
  const nlohmann::json error = nlohmann::json::parse(r.out).at("error");
  EXPECT_EQ(error.at("name"), "not_a_cache_file");
  EXPECT_EQ(error.at("code").get<std::uint32_t>(),
            static_cast<std::uint32_t>(tcache::Errc::not_a_cache_file));
  EXPECT_FALSE(error.at("message").get<std::string>().empty());
}

TEST_F(ToolTest, InspectionLeavesTheFileUntouched) {
  create();
  ASSERT_EQ(run({"put", file_, "k", "v"}).status, 0);
  const std::string before = read_file(file_);
  EXPECT_EQ(run({"get", file_, "k"}).status, 0);
  EXPECT_EQ(run({"get", file_, "absent"}).status, 1);
  EXPECT_EQ(run({"stats", file_}).status, 0);
  EXPECT_EQ(run({"stats", file_, "--json"}).status, 0);
  EXPECT_TRUE(read_file(file_) == before) << "get/stats changed the file";
}

TEST_F(ToolTest, InspectionWorksOnAFileWithoutWritePermission) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores file permissions";
  create();
  ASSERT_EQ(run({"put", file_, "k", "v"}).status, 0);
  ASSERT_EQ(::chmod(file_.c_str(), 0400), 0);
  Result r = run({"get", file_, "k"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "v");
  r = run({"stats", file_, "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = run({"put", file_, "k", "w"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: put failed: "));
}

}  // namespace

// ---------------------------------------------------------------------------
// ls, clear, purge, dump, load

namespace tool_more {

std::uint64_t unix_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

TEST_F(ToolTest, LsListsKeysEscapedWithSizesAndTtl) {
  create();
  {
    tcache::Store s = tcache::Store::open(file_);
    s.put("plain", "12345");
    s.put(std::string("bin\x01\xff", 5), "v", std::chrono::hours(2));
    s.put("other/x", std::string(10000, 'z'));  // LZ4-compressed
  }
  Result r = run({"ls", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("plain\n"));
  EXPECT_THAT(r.out, HasSubstr("bin\\x01\\xff\n"));
  r = run({"ls", file_, "--prefix", "other/", "--long"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("10000"));
  EXPECT_THAT(r.out, HasSubstr("lz4"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  r = run({"ls", file_, "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  int with_ttl = 0;
  for (const auto& e : j) {
    if (e["key_hex"] == "62696e01ff") {
      EXPECT_GT(e["ttl_ms"].get<std::uint64_t>(), 3'600'000u);
      ++with_ttl;
    } else {
      EXPECT_TRUE(e["ttl_ms"].is_null());
    }
  }
  EXPECT_EQ(with_ttl, 1);
  r = run({"ls", file_, "--limit", "2"});
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 2);
}

TEST_F(ToolTest, ClearNeedsYesWithoutATerminal) {
  create();
  { tcache::Store::open(file_).put("k", "v"); }
  Result r = run({"clear", file_});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("--yes"));
  EXPECT_TRUE(tcache::Store::open(file_).get("k").has_value());
  r = run({"clear", file_, "--yes"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(tcache::Store::open(file_).get("k").has_value());
}

TEST_F(ToolTest, PurgeRemovesExpiredEntries) {
  create();
  {
    tcache::Store s = tcache::Store::open(file_);
    s.put("old", "v", std::chrono::milliseconds(1));
    s.put("new", "v");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let "old" expire
  const Result r = run({"purge", file_, "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["purged"], 1);
  EXPECT_EQ(tcache::Store::open(file_).stats().entries, 1u);
}

TEST_F(ToolTest, DumpAndLoadRoundTripEveryEntry) {
  create();
  std::map<std::string, std::string> want;
  {
    tcache::Store s = tcache::Store::open(file_);
    for (int i = 0; i < 500; ++i) {
      std::string key = "key-" + std::to_string(i);
      std::string value = i % 3 == 0 ? std::string(5000 + i, 'c') : binary_value() + key;
      s.put(key, value, i % 2 == 0 ? std::chrono::hours(1) : std::chrono::milliseconds(0));
      want[key] = value;
    }
    s.put("big", std::string(3 << 20, 'b'));  // a blob file
    want["big"] = std::string(3 << 20, 'b');
  }
  const fs::path stream = dir_ / "cache.dump";
  Result r = run({"dump", file_, "-o", stream});
  ASSERT_EQ(r.status, 0) << r.err;
  struct stat st {};
  ASSERT_EQ(::stat(stream.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const fs::path copy = dir_ / "copy.tcache";
  r = run({"load", copy, "-i", stream});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("loaded 501 entries"));
  tcache::Store s = tcache::Store::open(copy);
  for (const auto& [key, value] : want) EXPECT_EQ(s.get(key), value) << key;
  int with_ttl = 0;
  s.for_each("key-", [&](const tcache::EntryInfo& e, std::string_view) {
    if (e.expires_at_ms != 0) {
      ++with_ttl;
      const auto left = e.expires_at_ms - unix_ms();
      EXPECT_GT(left, 3'500'000u);  // about an hour left, as when dumped
      EXPECT_LE(left, 3'600'000u);
    }
    return true;
  });
  EXPECT_EQ(with_ttl, 250);
  // Through a pipe too (stdin is then copied to a temporary file).
  r = run({"dump", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  const fs::path piped = dir_ / "piped.tcache";
  r = run({"load", piped}, r.out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tcache::Store::open(piped).get("big"), want["big"]);
}

TEST_F(ToolTest, DumpAndLoadReportFilesTheyCannotUse) {
  create();
  Result r = run({"dump", file_, "-o", dir_ / "no-such-dir" / "out.dump"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("dump failed: cannot create"));
  r = run({"load", file_, "-i", dir_ / "no-such.dump"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("load failed: cannot open"));
}

TEST_F(ToolTest, LoadOfADamagedStreamSaysWhereAndLoadsNothing) {
  create();
  {
    tcache::Store s = tcache::Store::open(file_);
    for (int i = 0; i < 100; ++i) s.put("key-" + std::to_string(i), "value " + std::to_string(i));
  }
  Result r = run({"dump", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string damaged = r.out;
  damaged[damaged.size() / 2] ^= 0x40;
  const fs::path target = dir_ / "target.tcache";
  r = run({"load", target}, damaged);
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("damaged at byte"));
  EXPECT_THAT(r.err, HasSubstr("corrupt_file"));
  EXPECT_EQ(tcache::Store::open(target).stats().entries, 0u);
  r = run({"load", target, "--partial"}, damaged);
  EXPECT_EQ(r.status, 2);
  const auto loaded = tcache::Store::open(target).stats().entries;
  EXPECT_GT(loaded, 0u);
  EXPECT_LT(loaded, 100u);
  // Cut short, or not a dump at all.
  r = run({"load", target}, r.out.substr(0, 10));
  EXPECT_EQ(r.status, 2);
  r = run({"load", target}, "definitely not a dump stream, though long enough for a header");
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("not a tcache dump stream"));
}

TEST_F(ToolTest, WatchPrintsOneLinePerSampleWithoutATerminal) {
  create();
  { tcache::Store::open(file_).put("k", "v"); }
  const Result r = run({"watch", file_, "--interval", "0.05", "--count", "3"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3);
  EXPECT_THAT(r.out, HasSubstr("entries=1"));
  EXPECT_THAT(r.out, HasSubstr("hits/s="));
  EXPECT_EQ(run({"watch", file_, "--interval", "0"}).status, 2);
}

TEST_F(ToolTest, CompactShrinksTheFileKeepsEveryEntryAndReports) {
  create();
  std::map<std::string, std::string> want;
  {
    tcache::Store s = tcache::Store::open(file_);
    for (int i = 0; i < 3000; ++i) {
      const std::string key = "key-" + std::to_string(i);
      const std::string value(100 + i % 900, static_cast<char>('a' + i % 26));
      s.put(key, value, i % 2 == 0 ? std::chrono::hours(1) : std::chrono::milliseconds(0));
      if (i % 4 == 0) want[key] = value;
    }
    for (int i = 0; i < 3000; ++i) {
      if (i % 4 != 0) s.erase("key-" + std::to_string(i));
    }
  }
  const std::uint64_t before = fs::file_size(file_);
  Result r = run({"compact", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("compacted"));
  EXPECT_THAT(r.out, HasSubstr("750"));
  EXPECT_TRUE(r.err.empty()) << r.err;  // no progress bar without a terminal
  EXPECT_LT(fs::file_size(file_), before);
  EXPECT_EQ(file_mode(file_), 0600u);
  {
    tcache::Store s = tcache::Store::open(file_);
    EXPECT_EQ(s.stats().entries, want.size());
    for (const auto& [key, value] : want) EXPECT_EQ(s.get(key), value) << key;
  }

  r = run({"compact", file_, "--capacity", "16M", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("entries").get<std::uint64_t>(), want.size());
  EXPECT_EQ(j.at("capacity_bytes_after").get<std::uint64_t>(), 16u << 20);
  EXPECT_EQ(j.at("evicted").get<std::uint64_t>(), 0u);
  r = run({"stats", file_, "--json"});
  EXPECT_EQ(nlohmann::json::parse(r.out).at("capacity_bytes").get<std::uint64_t>(), 16u << 20);

  r = run({"compact", dir_ / "missing.tcache"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, StartsWith("tcache-tool: compact failed: "));
  EXPECT_THAT(r.err, HasSubstr("does not exist"));
  EXPECT_FALSE(fs::exists(dir_ / "missing.tcache"));
  r = run({"compact", file_, "--capacity", "12Q"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("invalid --capacity"));
  r = run({"compact", file_, "--capacity", "1K"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("(invalid_option)"));
  r = run({"compact", file_, "--threads", "100"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("--threads"));
  r = run({"compact", file_, "--threads", "2", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("entries").get<std::uint64_t>(), want.size());
  EXPECT_EQ(tcache::Store::open(file_).stats().entries, want.size());
  r = run({"--help"});
  EXPECT_THAT(r.out, HasSubstr("compact"));
}

// A disk that cannot hold the compacted copy (here a file-size limit, which
// fails writes with EFBIG as a full disk fails them with ENOSPC): compact
// fails with no_space, leaves nothing behind, and the file keeps every entry.
TEST_F(ToolTest, CompactWithoutDiskSpaceFailsAndKeepsTheFile) {
  create();
  const auto value = [](int i) {
    return tcache::test::make_value("key-" + std::to_string(i), 1, tcache::test::Fill::random, 900);
  };
  {
    tcache::Store s = tcache::Store::open(file_);
    for (int i = 0; i < 4000; ++i) s.put("key-" + std::to_string(i), value(i));
  }
  const std::uint64_t limit =
      tcache::test::FileSurgery(file_).superblock().pages_offset + (1u << 20);
  ASSERT_GT(fs::file_size(file_), limit);
  const Result r = run({"compact", file_}, {}, [limit] {
    const struct rlimit rl { limit, limit };
    ::setrlimit(RLIMIT_FSIZE, &rl);
  });
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_THAT(r.err, StartsWith("tcache-tool: compact failed: "));
  EXPECT_THAT(r.err, HasSubstr("free disk space"));
  EXPECT_THAT(r.err, HasSubstr("(no_space)"));
  for (const auto& entry : fs::directory_iterator(dir_)) {
    EXPECT_THAT(entry.path().filename().string(), Not(HasSubstr(".tmp"))) << entry.path();
  }
  tcache::Store s = tcache::Store::open(file_);
  for (int i = 0; i < 4000; ++i) ASSERT_EQ(s.get("key-" + std::to_string(i)), value(i)) << i;
}

// Two forked processes keep writing and reading (each checks that it reads
// back what it last put) while the tool compacts the file twice, the second
// time into another capacity: the file shrinks, nobody fails, and every key
// holds the last value put under it.
TEST_F(ToolTest, CompactWhileTwoProcessesWriteAndReadLosesNothing) {
  ASSERT_EQ(run({"create", file_, "--capacity", "32M"}).status, 0);
  {
    // Bloat: space that erased entries leave behind, for compact to give back.
    tcache::Store s = tcache::Store::open(file_);
    const std::string filler(1000, 'f');
    for (int i = 0; i < 12000; ++i) s.put("bloat-" + std::to_string(i), filler);
    s.erase_prefix("bloat-");
  }
  constexpr int kWriters = 2;
  constexpr std::uint64_t kKeys = 2000;  // per writer
  struct State {
    std::atomic<std::uint64_t> acknowledged[kWriters]{};
    std::atomic<bool> stop{false};
  };
  tcache::test::Shared<State> st;
  const auto key = [](int w, std::uint64_t i) {
    return "w" + std::to_string(w) + "-" + std::to_string(i % kKeys);
  };
  tcache::test::Workers writers = tcache::test::run_workers(
      kWriters, 1, {"writer", file_, {}}, [&](tcache::Store& s, const tcache::test::Worker& me) {
        const int w = me.process;
        for (std::uint64_t i = 0; !st->stop.load(); ++i) {
          s.put(key(w, i), std::to_string(i));
          st->acknowledged[w].store(i + 1);
          if (s.get(key(w, i)) != std::to_string(i)) return 1;
          // And the other writer's keys hold some value of theirs, or nothing.
          const auto other = s.get(key(1 - w, i));
          if (other && other->find_first_not_of("0123456789") != std::string::npos) return 2;
        }
        return 0;
      });
  // Waits until each writer acknowledged `more` puts beyond now; false if
  // one exited (failed) first.
  const auto progress = [&](std::uint64_t more) {
    std::uint64_t target[kWriters];
    for (int w = 0; w < kWriters; ++w) target[w] = st->acknowledged[w].load() + more;
    for (int w = 0; w < kWriters; ++w) {
      while (st->acknowledged[w].load() < target[w]) {
        if (writers.any_exited()) return false;
        std::this_thread::yield();
      }
    }
    return true;
  };
  ASSERT_TRUE(progress(kKeys));
  const std::uint64_t before = fs::file_size(file_);
  Result r = run({"compact", file_, "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_LT(fs::file_size(file_), before) << "the file did not shrink";
  EXPECT_TRUE(progress(1000)) << "a writer stopped";
  r = run({"compact", file_, "--capacity", "16M"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(progress(1000)) << "a writer stopped";
  st->stop.store(true);
  writers.wait();
  tcache::Store s = tcache::Store::open(file_);
  EXPECT_EQ(s.stats().capacity_bytes, 16u << 20);
  EXPECT_EQ(s.stats().evictions, 0u);
  for (int w = 0; w < kWriters; ++w) {
    const std::uint64_t n = st->acknowledged[w].load();
    ASSERT_GE(n, kKeys);
    for (std::uint64_t i = n - kKeys; i < n; ++i) {
      ASSERT_EQ(s.get(key(w, i)), std::to_string(i)) << "writer " << w << ": " << i << " of " << n;
    }
  }
}

// A file of 300 entries, closed, for verify to check.
class VerifyTest : public ToolTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ToolTest::SetUp());
    create();
    tcache::Store s = tcache::Store::open(file_);
    for (int i = 0; i < 300; ++i) s.put(key(i), value(i));
  }
  static std::string key(int i) { return "key-" + std::to_string(i); }
  static std::string value(int i) { return std::string(40 + i % 50, 'a' + i % 26); }
  tcache::detail::Superblock superblock() { return tcache::test::FileSurgery(file_).superblock(); }
  void write_at(std::uint64_t off, const void* data, std::size_t n) {
    tcache::test::FileSurgery(file_).write_at(off, data, n);
  }
  template <class T>
  T read_at(std::uint64_t off) {
    return tcache::test::FileSurgery(file_).read_at<T>(off);
  }
  // Index slots in use, as (file offset of the slot, slot word).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> used_slots() {
    const auto sb = superblock();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
    for (std::uint64_t i = 0; i < sb.bucket_count * tcache::detail::kSlotsPerBucket; ++i) {
      const std::uint64_t at = sb.index_offset + i * 8;
      const auto w = read_at<std::uint64_t>(at);
      if (w != 0) out.emplace_back(at, w);
    }
    return out;
  }
  // verify, then verify --repair, then verify: problems, fixed, clean.
  void expect_found_and_repaired(const std::string& what) {
    Result r = run({"verify", file_});
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr(what));
    r = run({"verify", file_, "--repair"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("after repair: "));
    r = run({"verify", file_, "--json"});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_TRUE(nlohmann::json::parse(r.out).at("clean").get<bool>());
  }
  // Every key still present holds its value, and the file takes new puts.
  int check_values() {
    tcache::Store s = tcache::Store::open(file_);
    int found = 0;
    for (int i = 0; i < 300; ++i) {
      if (auto v = s.get(key(i))) {
        ++found;
        EXPECT_EQ(*v, value(i));
      }
    }
    for (int i = 0; i < 100; ++i) s.put("after-" + std::to_string(i), value(i));
    for (int i = 0; i < 100; ++i) EXPECT_EQ(s.get("after-" + std::to_string(i)), value(i));
    return found;
  }
};

TEST_F(VerifyTest, ACleanFileIsClean) {
  Result r = run({"verify", file_});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("300 entries checked, no problems"));
  r = run({"verify", file_, "--json"});
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j.at("clean").get<bool>());
  EXPECT_EQ(j.at("entries").get<int>(), 300);
  EXPECT_EQ(run({"verify", dir_ / "missing.tcache"}).status, 2);
}

TEST_F(VerifyTest, ADamagedHeaderIsAProblemAndAForeignFileCannotBeChecked) {
  auto sb = superblock();
  sb.page_bytes ^= 1;  // the immutable header no longer matches its checksum
  write_at(0, &sb, sizeof sb);
  Result r = run({"verify", file_});
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("PROBLEMS FOUND"));
  r = run({"verify", file_, "--json"});
  EXPECT_FALSE(nlohmann::json::parse(r.out).at("clean").get<bool>());
  write_file(file_, std::string(8192, 'x'));
  r = run({"verify", file_});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("verify failed"));
  EXPECT_THAT(r.err, HasSubstr("not_a_cache_file"));
}

TEST_F(VerifyTest, FlippedValueBitsAreFoundAndRepaired) {
  const auto slots = used_slots();
  ASSERT_EQ(slots.size(), 300u);
  // Flip a byte of the value of three entries.
  for (int k = 0; k < 3; ++k) {
    const std::uint64_t chunk = tcache::detail::slot_offset(slots[k * 50].second);
    const auto meta = read_at<std::uint64_t>(chunk + tcache::detail::kChunkMetaOffset);
    const std::uint64_t at =
        chunk + tcache::detail::kChunkHeaderBytes + tcache::detail::meta_key_len(meta) + 3;
    auto b = read_at<unsigned char>(at);
    b ^= 0x20;
    write_at(at, &b, 1);
  }
  expect_found_and_repaired("value checksum mismatch");
  EXPECT_EQ(check_values(), 297);
}

TEST_F(VerifyTest, ABrokenFreeListIsFoundAndRepaired) {
  const auto sb = superblock();
  for (std::uint32_t c = 0; c < sb.class_count; ++c) {
    const std::uint64_t head = tcache::detail::head_link(64);  // into the superblock
    write_at(sb.class_table_offset + c * sizeof(tcache::detail::ClassState), &head, sizeof head);
  }
  expect_found_and_repaired("free list");
  EXPECT_EQ(check_values(), 300);
}

TEST_F(VerifyTest, ALeakedChunkIsFoundAndReclaimed) {
  const auto slots = used_slots();
  const std::uint64_t zero = 0;
  write_at(slots[7].first, &zero, 8);  // its chunk is now reachable from nowhere
  Result r = run({"verify", file_, "--json"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(nlohmann::json::parse(r.out).at("leaked_chunks").get<int>(), 1);
  expect_found_and_repaired("leaked");
  EXPECT_EQ(check_values(), 299);
}

// The state a writer killed between taking a chunk and publishing it
// leaves: the chunk is odd (being written), reachable from nowhere, and its
// owner mark names the dead writer. Repair returns it to its free list while
// another process keeps the file open (so no recovery can run).
TEST_F(VerifyTest, AChunkAKilledWriterHeldIsReclaimedWhileOthersUseTheFile) {
  const pid_t gone = tcache::test::spawn([] { return 0; });
  ASSERT_EQ(tcache::test::wait_for(gone), 0);
  const auto slots = used_slots();
  const std::uint64_t zero = 0;
  const std::uint64_t chunk = tcache::detail::slot_offset(slots[11].second);
  write_at(slots[11].first, &zero, 8);
  const auto version = read_at<std::uint32_t>(chunk) | 1;
  write_at(chunk, &version, 4);
  const std::uint64_t mark = tcache::detail::owner_mark(static_cast<std::uint32_t>(gone), 12345);
  write_at(chunk + tcache::detail::kChunkMetaOffset, &mark, 8);

  tcache::Store held = tcache::Store::open(file_);  // this process keeps it open
  Result r = run({"verify", file_, "--json"});
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j.at("concurrent").get<bool>());
  EXPECT_EQ(j.at("leaked_chunks").get<int>(), 1);
  r = run({"verify", file_, "--repair", "--json"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("reclaimed_chunks").get<int>(), 1);
  EXPECT_TRUE(j.at("after_repair").at("clean").get<bool>());
  EXPECT_TRUE(j.at("after_repair").at("concurrent").get<bool>());
  r = run({"verify", file_, "--repair"});  // nothing left to do
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  for (int i = 0; i < 100; ++i) held.put("after-" + std::to_string(i), value(i));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(held.get("after-" + std::to_string(i)), value(i));
  { tcache::Store closing = std::move(held); }
  // Alone and read-only (no recovery runs): the chunk is on a free list or
  // in use again, not leaked.
  r = run({"verify", file_, "--json"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_FALSE(j.at("concurrent").get<bool>());
  EXPECT_EQ(j.at("leaked_chunks").get<int>(), 0);
  EXPECT_EQ(check_values(), 299);
}

TEST_F(VerifyTest, AKilledProcessIsFoundAndCleanedUp) {
  const pid_t child = tcache::test::spawn_ready([&](const auto& hold) {
    tcache::Store s = tcache::Store::open(file_);
    s.put("child", "was here");
    hold();  // the file open until killed
    return 0;
  });
  ASSERT_GT(child, 0);
  // Alive: its process is using the file, so leaks are not judged.
  Result r = run({"verify", file_, "--json"});
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(nlohmann::json::parse(r.out).at("concurrent").get<bool>());
  ::kill(child, SIGKILL);
  tcache::test::wait_for(child);
  expect_found_and_repaired("died without detaching");
  EXPECT_EQ(check_values(), 300);
}

TEST_F(VerifyTest, RepairWhileAnotherProcessUsesTheFileIsSafe) {
  const auto slots = used_slots();
  const std::uint64_t chunk = tcache::detail::slot_offset(slots[0].second);
  const auto meta = read_at<std::uint64_t>(chunk + tcache::detail::kChunkMetaOffset);
  const std::uint64_t at =
      chunk + tcache::detail::kChunkHeaderBytes + tcache::detail::meta_key_len(meta);
  auto b = read_at<unsigned char>(at);
  b ^= 1;
  write_at(at, &b, 1);
  tcache::Store held = tcache::Store::open(file_);  // this process keeps it open
  const Result r = run({"verify", file_, "--repair"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("unpublished 1 damaged"));
  int found = 0;
  for (int i = 0; i < 300; ++i) {
    if (auto v = held.get(key(i))) {
      ++found;
      EXPECT_EQ(*v, value(i));
    }
  }
  EXPECT_EQ(found, 299);
}

}  // namespace tool_more

// ---------------------------------------------------------------------------
// --version, --prometheus, dump -o, crafted streams, escaped keys

namespace tool_hardening {

std::uint32_t header_format_version(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char bytes[12] = {};
  in.read(bytes, sizeof bytes);
  EXPECT_EQ(in.gcount(), 12) << file;
  std::uint32_t version = 0;
  std::memcpy(&version, bytes + 8, sizeof version);  // format_version (doc/FORMAT.md)
  return version;
}

TEST_F(ToolTest, VersionPrintsTheFormatOfTheFilesTheLibraryCreates) {
  { tcache::Store s = tcache::Store::open(file_); }
  const std::uint32_t format = header_format_version(file_);
  const Result r = run({"--version"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("cache file format " + std::to_string(format) + ")"));
  EXPECT_THAT(r.out, HasSubstr(tcache::kVersionString));
  EXPECT_EQ(tcache::kFormatVersion, format);
}

std::optional<std::string> find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = (fs::path(dir.empty() ? "." : dir) / program).string();
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// `promtool check metrics` on `metrics`: its exit status and what it said.
std::pair<int, std::string> promtool_check(const std::string& promtool, const fs::path& metrics) {
  const std::string command = promtool + " check metrics < '" + metrics.string() + "' 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {-1, std::strerror(errno)};
  std::string said;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) said.append(buffer, n);
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, said};
}

TEST_F(ToolTest, PrometheusOutputPassesPromtool) {
  const std::optional<std::string> promtool = find_on_path("promtool");
  if (!promtool) {
    GTEST_SKIP() << "promtool is not on PATH: install the Debian package 'prometheus' "
                    "(setup.sh does) to check stats --prometheus with Prometheus's own linter";
  }
  // A plain name, and one with a double quote, a backslash, a newline and
  // bytes that are not UTF-8 (\xff; \xc3 followed by an ASCII byte).
  const fs::path odd = dir_ / std::string("we\"ird\\\nname\xff\xc3(.tcache");
  for (const fs::path& file : {file_, odd}) {
    SCOPED_TRACE(file.string());
    {
      tcache::Store s = tcache::Store::open(file);
      s.put("a", "1");
      s.put("b", std::string(5000, 'b'));
      s.get("a");
      s.get("absent");
    }
    const Result r = run({"stats", file, "--prometheus"});
    ASSERT_EQ(r.status, 0) << r.err;
    const fs::path metrics = dir_ / "metrics.txt";
    write_file(metrics, r.out);
    const auto [status, said] = promtool_check(*promtool, metrics);
    EXPECT_EQ(status, 0) << said << "\n" << r.out;
    EXPECT_EQ(said, "") << r.out;
    EXPECT_THAT(r.out, HasSubstr("# TYPE tcache_capacity_pages gauge\n"));
    EXPECT_THAT(r.out, HasSubstr("# TYPE tcache_hits_total counter\ntcache_hits_total{"));
    EXPECT_THAT(r.out, Not(HasSubstr("tcache_pages_total")));
  }
  const Result r = run({"stats", odd, "--prometheus"});
  EXPECT_THAT(r.out, HasSubstr("we\\\"ird\\\\\\nname\xef\xbf\xbd\xef\xbf\xbd(.tcache\"}"));
}

TEST_F(ToolTest, DumpNeverWritesThroughASymlinkOrIntoAnythingButARegularFile) {
  create();
  ASSERT_EQ(run({"put", file_, "k", "v"}).status, 0);
  const fs::path victim = dir_ / "victim";
  write_file(victim, "precious");
  ASSERT_EQ(::chmod(victim.c_str(), 0644), 0);
  fs::create_symlink(victim, dir_ / "link");
  Result r = run({"dump", file_, "-o", dir_ / "link"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("symbolic link"));
  EXPECT_EQ(read_file(victim), "precious");
  EXPECT_EQ(file_mode(victim), 0644u);
  EXPECT_TRUE(fs::is_symlink(dir_ / "link"));

  // A device node: never written, never chmod'ed (as root, -o /dev/null
  // used to make /dev/null 0600 for everyone). Our own node, so that the
  // old behaviour cannot harm the machine.
  const fs::path device = dir_ / "null";
  if (::mknod(device.c_str(), S_IFCHR | 0666, ::makedev(1, 3)) == 0) {
    ASSERT_EQ(::chmod(device.c_str(), 0666), 0);
    r = run({"dump", file_, "-o", device});
    EXPECT_EQ(r.status, 2);
    EXPECT_THAT(r.err, HasSubstr("not a regular file"));
    EXPECT_EQ(file_mode(device), 0666u);
    EXPECT_TRUE(fs::is_character_file(device));
  }
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  r = run({"dump", file_, "-o", dir_ / "fifo"});  // used to block for a reader
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("not a regular file"));
  r = run({"dump", file_, "-o", dir_});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("not a regular file"));
}

TEST_F(ToolTest, DumpRefusesToOverwriteTheCacheFileUnderAnyName) {
  create();
  ASSERT_EQ(run({"put", file_, "k", "v"}).status, 0);
  const fs::path alias = dir_ / "alias.tcache";
  fs::create_hard_link(file_, alias);
  for (const fs::path& out : {file_, dir_ / "." / file_.filename(), alias}) {
    const Result r = run({"dump", file_, "-o", out});
    EXPECT_EQ(r.status, 2) << out;
    EXPECT_THAT(r.err, HasSubstr("is the cache file")) << out;
  }
  Result r = run({"get", file_, "k"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "v");
  r = run({"verify", file_});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
}

TEST_F(ToolTest, DumpReplacesTheOutputWholeOwnerOnlyAndLeavesNoTemporary) {
  create();
  {
    tcache::Store s = tcache::Store::open(file_);
    for (int i = 0; i < 50; ++i) s.put("key-" + std::to_string(i), std::to_string(i));
  }
  const fs::path out = dir_ / "out.dump";
  write_file(out, "an older dump, longer than nothing");
  ASSERT_EQ(::chmod(out.c_str(), 0644), 0);
  Result r = run({"dump", file_, "-o", out});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(file_mode(out), 0600u);
  const fs::path target = dir_ / "target.tcache";
  r = run({"load", target, "-i", out});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tcache::Store::open(target).stats().entries, 50u);
  // A dump that fails midway (a file size limit) leaves OUT as it was and
  // no temporary behind.
  const std::string before = read_file(out);
  r = run({"dump", file_, "-o", out}, {}, [] {
    const rlimit limit{256, 256};
    ::setrlimit(RLIMIT_FSIZE, &limit);
  });
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(read_file(out), before);
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_THAT(e.path().filename().string(), Not(HasSubstr(".tmp-"))) << "a temporary was left";
  }
}

// A stream whose checksums all match (built with dump/stream.h) holding a
// valid record followed by `second`'s fields.
std::string stream_with(std::string_view second_key, std::string_view second_value,
                        std::uint64_t second_ttl_ms) {
  std::string stream;
  tcache::detail::StreamEncoder encoder;
  encoder.header(stream, 0);
  encoder.record(stream, "first", "loaded before the bad record, if anything is", 0);
  encoder.record(stream, second_key, second_value, second_ttl_ms);
  encoder.trailer(stream);
  return stream;
}

TEST_F(ToolTest, ARecordTtlOutOfRangeLoadsNothing) {
  const std::string stream = stream_with("second", "v", std::uint64_t{1} << 63);
  {
    tcache::Store s = tcache::Store::open(file_);
    std::istringstream in(stream);
    try {
      tcache::load(s, in);
      ADD_FAILURE() << "a TTL of 2^63 ms was loaded";
    } catch (const tcache::Error& e) {
      EXPECT_EQ(e.code(), tcache::Errc::corrupt_file) << e.what();
      EXPECT_THAT(e.what(), HasSubstr("TTL"));
    }
    EXPECT_EQ(s.stats().entries, 0u) << "a refused stream loaded entries";
    std::istringstream again(stream);
    EXPECT_THROW(tcache::verify_dump(again), tcache::Error);
  }
  const fs::path target = dir_ / "target.tcache";
  Result r = run({"load", target}, stream);
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("corrupt_file"));
  EXPECT_EQ(tcache::Store::open(target).stats().entries, 0u);
  // The largest TTL the format allows loads.
  r = run({"load", target}, stream_with("second", "v", (std::uint64_t{1} << 63) - 1));
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tcache::Store::open(target).stats().entries, 2u);
}

TEST_F(ToolTest, AValueTooLargeForTheTargetLoadsNothing) {
  tcache::StoreOptions small;
  small.capacity_bytes = 1ull << 20;
  tcache::Store s = tcache::Store::open(file_, small);
  std::istringstream in(stream_with("second", std::string(s.max_value_bytes() + 1, 'x'), 0));
  try {
    tcache::load(s, in);
    ADD_FAILURE() << "a value larger than the store's limit was loaded";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), tcache::Errc::value_too_large) << e.what();
    EXPECT_THAT(e.what(), HasSubstr("nothing was loaded"));
  }
  EXPECT_EQ(s.stats().entries, 0u) << "a refused stream loaded entries";
}

TEST_F(ToolTest, KeysThatLsEscapesCanBeTypedBack) {
  create();
  const std::string key("line1\nline2\\\0\xff", 14);
  { tcache::Store::open(file_).put(key, "value"); }
  Result r = run({"ls", file_});
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.out, "line1\\x0aline2\\\\\\x00\\xff\n");
  const std::string escaped = r.out.substr(0, r.out.size() - 1);
  r = run({"get", file_, "--escaped", escaped});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "value");
  r = run({"ls", file_, "--json"});
  const std::string key_hex = nlohmann::json::parse(r.out)[0]["key_hex"];
  r = run({"get", file_, "--hex", key_hex});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "value");
  r = run({"put", file_, "--escaped", "new\\x01key", "v2"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tcache::Store::open(file_).get(std::string("new\x01key")), "v2");
  r = run({"del", file_, "--escaped", escaped});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(tcache::Store::open(file_).get(key).has_value());
  r = run({"del", file_, "--hex", key_hex});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("line1\\x0aline2"));  // the miss note names the key escaped

  r = run({"get", file_, "--escaped", "bad\\q"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("bad escape at offset 3"));
  r = run({"get", file_, "--escaped", "cut\\x4"});
  EXPECT_EQ(r.status, 2);
  r = run({"get", file_, "--hex", "abc"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("two hex digits"));
  r = run({"get", file_, "--hex", "zz"});
  EXPECT_EQ(r.status, 2);
  r = run({"get", file_, "--hex", "--escaped", "00"});
  EXPECT_EQ(r.status, 2);
}

TEST_F(ToolTest, AKeyThatLooksLikeAnOptionGoesAfterADoubleDash) {
  create();
  Result r = run({"put", file_, "-k", "v"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("goes after '--'"));
  r = run({"put", file_, "--", "-k", "v"});
  EXPECT_EQ(r.status, 0) << r.err;
  r = run({"get", file_, "--", "-k"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "v");
  r = run({"put", "--help"});
  EXPECT_THAT(r.out, HasSubstr("goes after '--'"));
  EXPECT_THAT(r.out, HasSubstr("--escaped"));
}

}  // namespace tool_hardening
