// Unit tests of tcache::Store in one process: round trips, TTL, eviction,
// limits, compression, options, batched reads and threads.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/stall.h"
#include "support/test_support.h"
#include "tcache/tcache.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

class StoreTest : public tcache::test::TempDirTest {
 protected:
  StoreTest() : TempDirTest("tcache-store-test") {}

  tcache::Store open(tcache::StoreOptions o = {}) {
    if (o.capacity_bytes == (1ull << 30)) o.capacity_bytes = 16ull << 20;
    return tcache::Store::open(file_, o);
  }
};

// A 2 MiB file for entries of about 1 KiB: a few thousand puts overflow it.
tcache::StoreOptions two_mib_options() {
  tcache::StoreOptions o;
  o.capacity_bytes = 2ull << 20;
  o.expected_entry_bytes = 1024;
  return o;
}

std::string value_for(int i, std::size_t n) {
  std::string v(n, '\0');
  std::mt19937 rng(static_cast<unsigned>(i));
  for (auto& ch : v) ch = static_cast<char>(rng());
  return v;
}

template <class F>
tcache::Errc error_of(F&& f) {
  try {
    f();
  } catch (const tcache::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tcache:"), std::string::npos) << e.what();
    return e.code();
  }
  ADD_FAILURE() << "no tcache::Error thrown";
  return tcache::Errc::io_error;
}

TEST_F(StoreTest, PutGetEraseRoundTrip) {
  auto s = open();
  EXPECT_FALSE(s.get("missing").has_value());
  s.put("alpha", "one");
  s.put("beta", std::string("bin\0ary", 7));
  EXPECT_EQ(s.get("alpha"), "one");
  EXPECT_EQ(s.get("beta"), std::string("bin\0ary", 7));
  s.put("alpha", "uno");  // replace
  EXPECT_EQ(s.get("alpha"), "uno");
  std::string buf = "old contents that are longer";
  EXPECT_TRUE(s.get("alpha", buf));
  EXPECT_EQ(buf, "uno");
  EXPECT_TRUE(s.contains("alpha"));
  EXPECT_TRUE(s.erase("alpha"));
  EXPECT_FALSE(s.erase("alpha"));
  EXPECT_FALSE(s.get("alpha").has_value());
  EXPECT_FALSE(s.contains("alpha"));
  s.put("", "empty key");
  s.put("empty value", "");
  EXPECT_EQ(s.get(""), "empty key");
  EXPECT_EQ(s.get("empty value"), "");
}

TEST_F(StoreTest, ManyKeysSurviveReopen) {
  {
    auto s = open();
    for (int i = 0; i < 20000; ++i) s.put("key:" + std::to_string(i), value_for(i, i % 300));
  }
  auto s = open();
  int found = 0;
  for (int i = 0; i < 20000; ++i) {
    auto v = s.get("key:" + std::to_string(i));
    if (v) {
      ++found;
      EXPECT_EQ(*v, value_for(i, i % 300));
    }
  }
  // 16 MiB holds all of them; the index may drop a handful at most.
  EXPECT_GE(found, 19990);
  const auto st = s.stats();
  EXPECT_EQ(st.entries, static_cast<std::uint64_t>(found));
  EXPECT_EQ(st.puts, 20000u);
}

TEST_F(StoreTest, StatsCountHitsMissesAndBytes) {
  auto s = open();
  s.put("a", "1");
  s.put("b", "2");
  (void)s.get("a");
  (void)s.get("a");
  (void)s.get("zzz");
  s.erase("b");
  const auto st = s.stats();
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_EQ(st.puts, 2u);
  EXPECT_EQ(st.erases, 1u);
  EXPECT_EQ(st.entries, 1u);
  EXPECT_GT(st.bytes, 0u);
  EXPECT_EQ(st.capacity_bytes, 16ull << 20);
  EXPECT_EQ(st.file_bytes, fs::file_size(file_));
  EXPECT_EQ(st.attached_processes, 1u);
}

TEST_F(StoreTest, TtlExpiresEntries) {
  auto s = open();
  const auto start = std::chrono::steady_clock::now();
  s.put("short", "v", 30ms);
  s.put("long", "v", 1h);
  s.put("forever", "v");
  const std::optional<std::string> short_now = s.get("short");
  if (tcache::test::before_expiry(start, 30ms)) {  // else too slow to tell
    EXPECT_EQ(short_now, "v");
  }
  std::this_thread::sleep_for(60ms);  // waits out a TTL; no race involved
  EXPECT_FALSE(s.get("short").has_value());
  EXPECT_EQ(s.get("long"), "v");
  EXPECT_EQ(s.get("forever"), "v");
  EXPECT_EQ(s.stats().expirations, 1u);
}

TEST_F(StoreTest, DefaultTtlApplies) {
  tcache::StoreOptions o;
  o.default_ttl = 30ms;
  auto s = open(o);
  s.put("k", "v");
  s.put("kept", "v", 1h);
  std::this_thread::sleep_for(60ms);
  EXPECT_FALSE(s.get("k").has_value());
  EXPECT_EQ(s.get("kept"), "v");
}

TEST_F(StoreTest, EvictsAtCapacityAndKeepsWorking) {
  const tcache::StoreOptions o = two_mib_options();
  auto s = open(o);
  const std::string v(1000, 'x');
  for (int i = 0; i < 10000; ++i) s.put("k" + std::to_string(i), v);  // ~10 MB into 2 MiB
  const auto st = s.stats();
  EXPECT_GT(st.evictions, 0u);
  EXPECT_LE(st.file_bytes, o.capacity_bytes);
  EXPECT_EQ(fs::file_size(file_), st.file_bytes);
  EXPECT_LE(st.entries * 1000, o.capacity_bytes);
  // The newest entries are there; whatever is present is intact.
  EXPECT_EQ(s.get("k9999"), v);
  int present = 0;
  for (int i = 0; i < 10000; ++i) {
    if (auto got = s.get("k" + std::to_string(i))) {
      ++present;
      EXPECT_EQ(*got, v);
    }
  }
  EXPECT_EQ(static_cast<std::uint64_t>(present), s.stats().entries);
}

TEST_F(StoreTest, RecentlyReadEntriesSurviveEviction) {
  auto s = open(two_mib_options());
  const std::string v(1000, 'h');
  s.put("hot", v);
  for (int i = 0; i < 5000; ++i) {
    s.put("cold" + std::to_string(i), v);
    ASSERT_TRUE(s.get("hot").has_value()) << "hot entry evicted after " << i << " puts";
  }
}

TEST_F(StoreTest, PagesMoveToTheSizesInUse) {
  // A full file whose pages all hold small entries must still take large
  // ones (and then small ones again): pages move between size classes.
  tcache::StoreOptions o;
  o.capacity_bytes = 2ull << 20;
  o.expected_entry_bytes = 128;
  auto s = open(o);
  const std::string small(100, 's');
  for (int i = 0; i < 40000; ++i) s.put("small" + std::to_string(i), small);
  EXPECT_GT(s.stats().evictions, 0u);
  const std::string large(20000, 'L');
  for (int i = 0; i < 50; ++i) {
    const std::string key = "large" + std::to_string(i);
    s.put(key, large);
    EXPECT_EQ(s.get(key), large) << key;
  }
  const std::string medium(3000, 'm');
  for (int i = 0; i < 200; ++i) s.put("medium" + std::to_string(i), medium);
  EXPECT_EQ(s.get("medium199"), medium);
  for (int i = 0; i < 40000; ++i) s.put("again" + std::to_string(i), small);
  EXPECT_EQ(s.get("again39999"), small);
  const auto st = s.stats();
  EXPECT_LE(st.file_bytes, o.capacity_bytes);
  EXPECT_EQ(st.checksum_failures, 0u);
}

TEST_F(StoreTest, OversizeKeyAndValueAreRejected) {
  auto s = open();
  const std::string big_key(tcache::Store::kMaxKeyBytes + 1, 'k');
  EXPECT_EQ(error_of([&] { s.put(big_key, "v"); }), tcache::Errc::key_too_large);
  const std::string max_key(tcache::Store::kMaxKeyBytes, 'k');
  s.put(max_key, "v");
  EXPECT_EQ(s.get(max_key), "v");

  EXPECT_EQ(s.max_value_bytes(), 16ull << 20);
  const std::string huge(s.max_value_bytes() + 1, 'x');
  EXPECT_EQ(error_of([&] { s.put("huge", huge); }), tcache::Errc::value_too_large);
}

std::size_t blob_files(const fs::path& cache) {
  fs::path dir = cache;
  dir += ".blobs";
  if (!fs::exists(dir)) return 0;
  std::size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

TEST_F(StoreTest, ValuesLargerThanAPageLiveInBlobFiles) {
  auto s = open();
  const std::string big = value_for(7, 3u << 20);  // random: does not compress
  s.put("big", big);
  EXPECT_EQ(s.get("big"), big);
  EXPECT_EQ(blob_files(file_), 1u);
  EXPECT_GE(s.stats().blob_bytes, big.size());
  fs::path dir = file_;
  dir += ".blobs";
  EXPECT_EQ(fs::status(dir).permissions() & fs::perms::all, fs::perms::owner_all);

  const std::string big2 = value_for(8, 2u << 20);
  s.put("big", big2);  // replacing removes the old file
  EXPECT_EQ(s.get("big"), big2);
  EXPECT_EQ(blob_files(file_), 1u);

  std::string text;
  while (text.size() < (4u << 20))
    text += "compressible line " + std::to_string(text.size() % 97) + "\n";
  s.put("text", text);
  EXPECT_EQ(s.get("text"), text);
  EXPECT_LT(s.stats().blob_bytes, big2.size() + text.size() / 4);

  EXPECT_TRUE(s.erase("big"));
  EXPECT_FALSE(s.get("big").has_value());
  s.clear();
  EXPECT_EQ(blob_files(file_), 0u);
  EXPECT_EQ(s.stats().blob_bytes, 0u);
}

TEST_F(StoreTest, LooseBlobDirectoryIsRefused) {
  auto s = open();
  s.put("big", value_for(3, 2u << 20));  // creates the blob directory
  fs::path dir = file_;
  dir += ".blobs";
  fs::permissions(dir, fs::perms::all);  // 0777: anyone could swap the files
  tcache::Errc code = tcache::Errc::io_error;
  try {
    s.put("big2", value_for(4, 2u << 20));
    ADD_FAILURE() << "a world-writable blob directory was used";
  } catch (const tcache::Error& e) {
    code = e.code();
    EXPECT_NE(std::string(e.what()).find("chmod 700"), std::string::npos) << e.what();
  }
  EXPECT_EQ(code, tcache::Errc::unsafe_permissions);
  EXPECT_FALSE(s.get("big2").has_value());
  EXPECT_EQ(s.get("big"), value_for(3, 2u << 20));  // reading an existing entry still works
}

TEST_F(StoreTest, BlobFilesAreEvictedPastCapacity) {
  tcache::StoreOptions o;
  o.capacity_bytes = 4ull << 20;
  auto s = open(o);
  for (int i = 0; i < 12; ++i) s.put("b" + std::to_string(i), value_for(i, 1u << 20));
  EXPECT_LE(s.stats().blob_bytes, o.capacity_bytes);
  EXPECT_LE(blob_files(file_), 4u);
  EXPECT_EQ(s.get("b11"), value_for(11, 1u << 20));
  EXPECT_GT(s.stats().evictions, 0u);
}

TEST_F(StoreTest, DamagedBlobFileIsAMiss) {
  auto s = open();
  s.put("big", value_for(1, 2u << 20));
  fs::path dir = file_;
  dir += ".blobs";
  for (const auto& e : fs::directory_iterator(dir)) {
    std::FILE* f = std::fopen(e.path().c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 1000, SEEK_SET);
    std::fputc('!', f);
    std::fclose(f);
  }
  EXPECT_FALSE(s.get("big").has_value());
  EXPECT_EQ(s.stats().checksum_failures, 1u);
}

TEST_F(StoreTest, CompressibleValuesAreCompressedAndRoundTrip) {
  auto s = open();
  std::string v;
  for (int i = 0; i < 20000; ++i) v += "line " + std::to_string(i % 50) + "\n";
  s.put("text", v);
  EXPECT_EQ(s.get("text"), v);
  // Stored compressed: far less than the raw size is occupied.
  EXPECT_LT(s.stats().bytes, v.size() / 4);

  tcache::StoreOptions o;
  o.compress_threshold = 0;
  fs::remove(file_);
  auto raw = open(o);
  raw.put("text", v);
  EXPECT_EQ(raw.get("text"), v);
  EXPECT_GE(raw.stats().bytes, v.size());
}

TEST_F(StoreTest, GetManyMatchesGet) {
  auto s = open();
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back("key:" + std::to_string(i));
    if (i % 3 != 0) s.put(keys.back(), value_for(i, 100 + i % 50));
  }
  std::vector<std::string_view> views(keys.begin(), keys.end());
  std::vector<std::string> values(keys.size());
  std::unique_ptr<bool[]> found(new bool[keys.size()]);
  s.get_many(views, values, std::span<bool>(found.get(), keys.size()));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(found[i], i % 3 != 0) << i;
    if (found[i]) {
      EXPECT_EQ(values[i], value_for(static_cast<int>(i), 100 + i % 50));
    }
  }
  std::vector<std::string> short_values(3);
  EXPECT_EQ(
      error_of([&] { s.get_many(views, short_values, std::span<bool>(found.get(), keys.size())); }),
      tcache::Errc::invalid_option);
}

TEST_F(StoreTest, ClearRemovesEverything) {
  auto s = open();
  for (int i = 0; i < 1000; ++i) s.put(std::to_string(i), "v");
  s.clear();
  EXPECT_EQ(s.stats().entries, 0u);
  EXPECT_FALSE(s.get("5").has_value());
  s.put("after", "clear");
  EXPECT_EQ(s.get("after"), "clear");
}

TEST_F(StoreTest, InvalidOptionsAreRejected) {
  const auto with = [&](auto edit) {
    tcache::StoreOptions o;
    edit(o);
    return error_of([&] { tcache::Store::open(file_, o); });
  };
  EXPECT_EQ(with([](auto& o) { o.capacity_bytes = 1000; }), tcache::Errc::invalid_option);
  EXPECT_EQ(with([](auto& o) { o.capacity_bytes = 1ull << 50; }), tcache::Errc::invalid_option);
  EXPECT_EQ(with([](auto& o) { o.page_bytes = 12345; }), tcache::Errc::invalid_option);
  EXPECT_EQ(with([](auto& o) { o.expected_entry_bytes = 1; }), tcache::Errc::invalid_option);
  EXPECT_EQ(with([](auto& o) { o.default_ttl = -1ms; }), tcache::Errc::invalid_option);
  EXPECT_EQ(with([](auto& o) { o.mode = 0400; }), tcache::Errc::invalid_option);
  EXPECT_EQ(with([](auto& o) { o.mode = 0666; }), tcache::Errc::invalid_option);
  EXPECT_FALSE(fs::exists(file_));
  auto s = open();
  EXPECT_EQ(error_of([&] { s.put("k", "v", -5ms); }), tcache::Errc::invalid_option);
}

TEST_F(StoreTest, ExistingFileKeepsItsGeometry) {
  tcache::StoreOptions o;
  o.capacity_bytes = 8ull << 20;
  { auto s = tcache::Store::open(file_, o); }
  o.capacity_bytes = 64ull << 20;
  auto s = tcache::Store::open(file_, o);
  EXPECT_EQ(s.stats().capacity_bytes, 8ull << 20);
}

TEST_F(StoreTest, ConcurrentCreationYieldsOneFile) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      auto s = open();
      s.put("t" + std::to_string(t), "v");
      ok.fetch_add(1);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  auto s = open();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(s.get("t" + std::to_string(t)), "v");
  for (const auto& e : fs::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().filename(), file_.filename()) << "left behind: " << e.path();
  }
}

TEST_F(StoreTest, ThreadsSeeOnlyCompleteValues) {
  auto s = open();
  constexpr int kKeys = 64;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr int kOps = 3000;
#else
  constexpr int kOps = 30000;
#endif
  // value = key + '/' + version, repeated to a length that depends on both.
  const auto make = [](int k, int ver) {
    const std::string unit = std::to_string(k) + "/" + std::to_string(ver) + ";";
    std::string v;
    while (v.size() < static_cast<std::size_t>(20 + (k * 7 + ver) % 400)) v += unit;
    return v;
  };
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::string got;
      for (int i = 0; i < kOps; ++i) {
        const int k = static_cast<int>(rng() % kKeys);
        const std::string key = "k" + std::to_string(k);
        switch (rng() % 4) {
          case 0:
            s.put(key, make(k, i));
            break;
          case 1:
            s.erase(key);
            break;
          default:
            if (s.get(key, got)) {
              const auto slash = got.find('/');
              const auto semi = got.find(';');
              if (slash == std::string::npos || semi == std::string::npos ||
                  got.substr(0, slash) != std::to_string(k) ||
                  got != make(k, std::stoi(got.substr(slash + 1, semi - slash - 1)))) {
                bad.fetch_add(1);
              }
            }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(s.stats().checksum_failures, 0u);
}

TEST_F(StoreTest, LoggerHearsAboutTroubleOnly) {
  std::vector<std::string> lines;
  tcache::StoreOptions o;
  o.logger = [&](std::string_view l) { lines.emplace_back(l); };
  auto s = open(o);
  s.put("k", "v");
  (void)s.get("k");
  EXPECT_TRUE(lines.empty());
}

TEST(ErrorTest, CodesHaveStableNames) {
  EXPECT_STREQ(tcache::error_code_name(tcache::Errc::corrupt_file), "corrupt_file");
  EXPECT_STREQ(tcache::error_code_name(tcache::Errc::version_mismatch), "version_mismatch");
  EXPECT_STREQ(tcache::error_code_name(tcache::Errc::no_space), "no_space");
  EXPECT_EQ(static_cast<int>(tcache::Errc::corrupt_file), 1);
  EXPECT_EQ(static_cast<int>(tcache::Errc::not_a_cache_file), 10);
}

// An unlink decided from what a chunk holds (here: expired) must remove that
// entry and nothing newer. With LIFO free lists, the put of the same key
// right after the expired entry went takes the same chunk into the same
// slot, so a slot word alone cannot tell the two apart (issue 11, item 1).
// The reader is stalled between reading the word and its CAS (lib/ is on
// the include path for the test hook, util/test_hook.h).
TEST_F(StoreTest, ALateExpiryUnlinkKeepsTheNewEntryInTheSameChunk) {
  tcache::Store s = open();
  s.put("k", "old", 1ms);
  std::this_thread::sleep_for(5ms);  // a TTL to run out, not a race to win
  tcache::test::StallAt stall(tcache::detail::TestPoint::content_unlink);
  std::thread reader([&] {
    stall.arm();
    EXPECT_FALSE(s.get("k").has_value());  // expired: a miss, then the unlink
  });
  stall.wait_inside();
  EXPECT_EQ(s.purge_expired(), 1u);  // the expired entry goes ...
  s.put("k", "new");                 // ... and its chunk and slot are reused
  stall.release();
  reader.join();
  EXPECT_EQ(s.get("k"), "new");  // acknowledged: the late unlink left it alone
  EXPECT_EQ(s.stats().expirations, 1u);
}

// A value that compresses, but not below a page, is an LZ4 block in a blob
// file; get() decompressed it with the chunk's length (the 24-byte blob
// reference) instead of the file's and missed every time.
TEST_F(StoreTest, ACompressedValueInABlobFileReadsBack) {
  auto s = open();  // 16 MiB: 256 KiB pages
  std::mt19937_64 rng(5);
  std::string pool(8192 * 64, '\0');
  for (auto& c : pool) c = static_cast<char>(rng());
  std::string v(4096, '\0');  // a compressible start: worth compressing
  while (v.size() < (2u << 20)) v.append(pool, (rng() % 8192) * 64, 64);
  s.put("k", v);
  ASSERT_EQ(blob_files(file_), 1u);
  EXPECT_LT(s.stats().blob_bytes, v.size());  // stored compressed
  EXPECT_EQ(s.get("k"), v);
}

}  // namespace
