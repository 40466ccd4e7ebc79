// Damages real cache files in known ways and reopens them: every case must
// end in a typed error or in correct behaviour (a value returned is the value
// that was put), never in a crash or a wrong value.
//
// This test reaches the file format on purpose (format/layout.h) to know
// where to aim the damage.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "format/geometry.h"
#include "format/layout.h"
#include "support/file_surgery.h"
#include "support/test_support.h"
#include "tcache/tcache.h"
#include "util/checksum.h"

namespace fs = std::filesystem;
namespace d = tcache::detail;

// The largest single allocation by operator new in this test program, so
// that a test can tell that reading a crafted length allocated nothing
// sized by it.
std::atomic<std::size_t> g_largest_new{0};

void* operator new(std::size_t n) {
  std::size_t seen = g_largest_new.load(std::memory_order_relaxed);
  while (n > seen && !g_largest_new.compare_exchange_weak(seen, n, std::memory_order_relaxed)) {
  }
  if (void* p = std::malloc(n != 0 ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

class CorruptionTest : public tcache::test::TempDirTest {
 protected:
  static constexpr int kKeys = 2000;

  CorruptionTest() : TempDirTest("tcache-corrupt-test") {}
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(TempDirTest::SetUp());
    tcache::StoreOptions o;
    o.capacity_bytes = 8ull << 20;
    o.expected_entry_bytes = 128;
    auto s = tcache::Store::open(file_, o);
    for (int i = 0; i < kKeys; ++i) s.put(key(i), value(i));
  }

  static std::string key(int i) { return "key:" + std::to_string(i); }
  static std::string value(int i) {
    return std::string(static_cast<std::size_t>(50 + i % 100), static_cast<char>('a' + i % 26)) +
           std::to_string(i);
  }

  d::Superblock superblock() { return tcache::test::FileSurgery(file_).superblock(); }
  void write_at(std::uint64_t off, const void* data, std::size_t n) {
    tcache::test::FileSurgery(file_).write_at(off, data, n);
  }
  void write_superblock(d::Superblock sb, bool fix_checksum) {
    if (fix_checksum) sb.header_checksum = d::superblock_checksum(sb);
    write_at(0, &sb, sizeof sb);
  }
  tcache::Errc open_error() {
    try {
      tcache::Store::open(file_);
    } catch (const tcache::Error& e) {
      EXPECT_NE(std::string(e.what()).find(file_.string()), std::string::npos) << e.what();
      return e.code();
    }
    ADD_FAILURE() << "opened a damaged file without error";
    return tcache::Errc::io_error;
  }
  // Opens, checks every value read is the one that was put, and that the
  // store still takes new entries. Returns how many keys were found.
  int check_usable() {
    auto s = tcache::Store::open(file_);
    int found = 0;
    for (int i = 0; i < kKeys; ++i) {
      if (auto v = s.get(key(i))) {
        ++found;
        EXPECT_EQ(*v, value(i)) << key(i);
      }
    }
    for (int i = 0; i < 200; ++i) s.put("new" + std::to_string(i), value(i));
    for (int i = 0; i < 200; ++i) EXPECT_EQ(s.get("new" + std::to_string(i)), value(i));
    (void)s.stats();
    return found;
  }
};

TEST_F(CorruptionTest, EmptyAndShortFilesAreNotCacheFiles) {
  fs::resize_file(file_, 0);
  EXPECT_EQ(open_error(), tcache::Errc::not_a_cache_file);
  fs::resize_file(file_, 100);
  EXPECT_EQ(open_error(), tcache::Errc::not_a_cache_file);
}

TEST_F(CorruptionTest, ForeignFileIsNotACacheFile) {
  const std::string text = "#!/bin/sh\necho this is not a cache\n";
  write_at(0, text.data(), text.size());
  EXPECT_EQ(open_error(), tcache::Errc::not_a_cache_file);
}

TEST_F(CorruptionTest, TruncatedFileIsCorrupt) {
  const auto sb = superblock();
  fs::resize_file(file_, sb.pages_offset + sb.page_bytes / 2);
  EXPECT_EQ(open_error(), tcache::Errc::corrupt_file);
}

TEST_F(CorruptionTest, OtherFormatVersionIsRefused) {
  auto sb = superblock();
  sb.format_version = d::kFileFormatVersion + 1;
  write_superblock(sb, true);
  EXPECT_EQ(open_error(), tcache::Errc::version_mismatch);
}

TEST_F(CorruptionTest, OtherByteOrderIsRefused) {
  auto sb = superblock();
  sb.endian_check = 0x04030201u;
  write_superblock(sb, true);
  EXPECT_EQ(open_error(), tcache::Errc::version_mismatch);
}

TEST_F(CorruptionTest, IncompatibleBuildLayoutIsRefused) {
  auto sb = superblock();
  sb.layout_hash ^= 1;
  write_superblock(sb, true);
  EXPECT_EQ(open_error(), tcache::Errc::version_mismatch);
}

TEST_F(CorruptionTest, DamagedHeaderIsCorrupt) {
  auto sb = superblock();
  sb.bucket_count += 1;  // checksum no longer matches
  write_superblock(sb, false);
  EXPECT_EQ(open_error(), tcache::Errc::corrupt_file);
}

TEST_F(CorruptionTest, ImpossibleGeometryWithValidChecksumIsCorrupt) {
  auto sb = superblock();
  sb.class_bytes[3] = sb.class_bytes[2];  // not ascending
  write_superblock(sb, true);
  EXPECT_EQ(open_error(), tcache::Errc::corrupt_file);
  sb = superblock();
  sb.class_bytes[3] = superblock().class_bytes[3];
  sb.pages_offset = sb.capacity_bytes * 2;
  write_superblock(sb, true);
  EXPECT_EQ(open_error(), tcache::Errc::corrupt_file);
}

// Offsets near 2^64 whose sums wrap around to small, plausible numbers: the
// header checksum is valid, so only checked arithmetic refuses them (before,
// index_offset + bucket_count * 64 wrapped and open followed the index
// pointer far outside the mapping: SIGSEGV).
TEST_F(CorruptionTest, WrappingOffsetsWithValidChecksumAreCorrupt) {
  const auto pristine = superblock();
  const auto refused = [&](const char* what, const std::function<void(d::Superblock&)>& craft) {
    SCOPED_TRACE(what);
    auto sb = pristine;
    craft(sb);
    write_superblock(sb, true);
    // In a child, so that the old crash is reported as a failure, not a
    // lost test binary.
    tcache::test::expect_child_exits_zero(what, [&] {
      try {
        auto s = tcache::Store::open(file_);
        (void)s.get(key(1));
        (void)s.verify();
      } catch (const tcache::Error& e) {
        if (e.code() != tcache::Errc::corrupt_file ||
            std::string(e.what()).find("impossible geometry") == std::string::npos) {
          return tcache::test::report(1, std::string("wrong error: ") + e.what());
        }
        return 0;
      }
      return tcache::test::report(2, "opened a header whose offsets wrap around");
    });
  };
  const std::uint64_t index_bytes = pristine.bucket_count * d::kBucketBytes;
  refused("index_offset + index bytes wraps", [&](d::Superblock& sb) {
    // 4 KiB aligned, >= 2^64 - index_bytes: the sum wraps to < 4096.
    sb.index_offset = 0 - index_bytes / 4096 * 4096;
  });
  refused("index_offset far beyond the file", [&](d::Superblock& sb) {
    sb.index_offset = 1ull << 62;
    sb.pages_offset = sb.index_offset + index_bytes / 4096 * 4096 + 4096;
  });
  refused("pages_offset + max_pages * page_bytes wraps",
          [&](d::Superblock& sb) { sb.max_pages = ~std::uint64_t{0} / sb.page_bytes + 1; });
  // The untouched header still opens.
  write_superblock(pristine, false);
  EXPECT_EQ(check_usable(), kKeys);
}

// A FIFO where a blob file should be (put there by mistake or by another
// user of a shared directory): get and verify must not wait for a writer.
// The reads run in a child bounded by alarm(), so that the old behaviour,
// blocking in open(2) forever, fails the test instead of hanging it.
TEST_F(CorruptionTest, FifoInTheBlobDirectoryIsAMissNotAHang) {
  // Larger than a page and incompressible: a blob file.
  const std::string big =
      tcache::test::make_value("big", 1, tcache::test::Fill::random, 300u << 10);
  {
    auto s = tcache::Store::open(file_);
    s.put("big", big);
  }
  fs::path blobs = file_;
  blobs += ".blobs";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(blobs)) files.push_back(e.path());
  ASSERT_EQ(files.size(), 1u);
  fs::remove(files[0]);
  ASSERT_EQ(::mkfifo(files[0].c_str(), 0600), 0) << std::strerror(errno);
  tcache::test::expect_child_exits_zero("reader", [&] {
    ::alarm(120);  // a bound for the failure case only; a pass returns at once
    auto s = tcache::Store::open(file_);
    if (s.get("big").has_value()) return tcache::test::report(1, "a FIFO read as a value");
    if (s.stats().checksum_failures == 0) return tcache::test::report(2, "not counted");
    const tcache::VerifyReport r = s.verify();
    if (r.clean() || r.damaged_entries != 1) return tcache::test::report(3, "verify missed it");
    if (s.get(key(7)) != value(7)) return tcache::test::report(4, "other entries lost");
    return 0;
  });
}

// verify (and recovery, which shares its chunk marks) of a file with many
// carved pages: the marks used to be a bitmap of 1/64 of the carved area
// (16 GiB each for a full 1 TiB file, two of them in verify). Here a sparse
// 8 GiB file claims every page carved in the smallest class (2^28 chunks,
// read as leaked): its marks would take 256 MiB; under a data limit of
// 192 MiB verify must still run, in windows, and find exactly the real
// entries and the fake chunks. Read-only, so the holes stay holes.
TEST_F(CorruptionTest, VerifyOfAHugeFileNeedsNoMemoryInProportion) {
  constexpr std::uint64_t kCapacity = 8ull << 30;
  fs::remove(file_);
  {
    tcache::StoreOptions o;
    o.capacity_bytes = kCapacity;
    o.expected_entry_bytes = 1u << 20;  // a small index: the file is mostly pages
    auto s = tcache::Store::open(file_, o);
    for (int i = 0; i < kKeys; ++i) s.put(key(i), value(i));
  }
  auto sb = superblock();
  const std::uint64_t carved = sb.next_page;
  const std::uint64_t fake_pages = sb.max_pages - carved;
  const std::string classes(fake_pages, '\0');  // class 0: the smallest chunks
  write_at(sb.page_table_offset + carved, classes.data(), classes.size());
  write_at(offsetof(d::Superblock, next_page), &sb.max_pages, sizeof sb.max_pages);
  fs::resize_file(file_, sb.pages_offset + sb.max_pages * sb.page_bytes);
  const std::uint64_t fake_chunks = fake_pages * (sb.page_bytes / sb.class_bytes[0]);
  ASSERT_GT(fake_chunks, std::uint64_t{1} << 27);  // two windows at least
  tcache::test::expect_child_exits_zero("verifier", [&] {
    struct rlimit rl {
      192ull << 20, 192ull << 20
    };
    // A sanitizer's shadow memory counts against RLIMIT_DATA: there the
    // windows are still checked, without the limit.
    if (tcache::test::kSlowdown == 1 && ::setrlimit(RLIMIT_DATA, &rl) != 0) return 90;
    tcache::StoreOptions ro;
    ro.read_only = true;
    auto s = tcache::Store::open(file_, ro);
    const tcache::VerifyReport r = s.verify();  // threw std::bad_alloc before
    if (r.entries != static_cast<std::uint64_t>(kKeys) || r.damaged_entries != 0 ||
        r.duplicate_entries != 0 || r.broken_free_lists != 0 || r.uncarved_pages != 0) {
      return tcache::test::report(1, "wrong report: " + std::to_string(r.entries) + " entries, " +
                                         std::to_string(r.damaged_entries) + " damaged");
    }
    if (r.leaked_chunks != fake_chunks) {
      return tcache::test::report(
          2, std::to_string(r.leaked_chunks) + " leaked, expected " + std::to_string(fake_chunks));
    }
    return 0;
  });
}

TEST_F(CorruptionTest, PageCounterBeyondFileIsCorrupt) {
  auto sb = superblock();
  const std::uint64_t pages = sb.max_pages;
  write_at(offsetof(d::Superblock, next_page), &pages, sizeof pages);
  EXPECT_EQ(open_error(), tcache::Errc::corrupt_file);
}

TEST_F(CorruptionTest, FlippedValueBitsAreCountedMisses) {
  const auto sb = superblock();
  // Flip one byte in the middle of every 997th byte range of the slab pages.
  const std::uint64_t end = sb.pages_offset + sb.next_page * sb.page_bytes;
  std::mt19937_64 rng(7);
  int flips = 0;
  for (std::uint64_t off = sb.pages_offset + 500; off < end; off += 997 + rng() % 64) {
    const int fd = ::open(file_.c_str(), O_RDWR);
    unsigned char b = 0;
    ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(off)), 1);
    b ^= 0x10;
    ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(off)), 1);
    ::close(fd);
    ++flips;
  }
  ASSERT_GT(flips, 10);
  const int found = check_usable();
  EXPECT_LT(found, kKeys);
  auto s = tcache::Store::open(file_);
  for (int i = 0; i < kKeys; ++i) (void)s.get(key(i));
  EXPECT_GT(s.stats().checksum_failures, 0u);
}

TEST_F(CorruptionTest, GarbageIndexSlotsAreNeverFollowed) {
  const auto sb = superblock();
  std::mt19937_64 rng(11);
  std::vector<std::uint64_t> junk(sb.bucket_count * d::kSlotsPerBucket / 3);
  for (auto& w : junk) w = rng();
  write_at(sb.index_offset + sb.bucket_count * d::kBucketBytes / 3, junk.data(),
           junk.size() * sizeof junk[0]);
  check_usable();
}

TEST_F(CorruptionTest, BrokenFreeListIsDroppedAndRebuilt) {
  const auto sb = superblock();
  // Point every class's free-list head into the superblock.
  for (std::uint32_t c = 0; c < sb.class_count; ++c) {
    const std::uint64_t head = d::head_link(64);
    write_at(sb.class_table_offset + c * sizeof(d::ClassState), &head, sizeof head);
  }
  check_usable();
}

TEST_F(CorruptionTest, GarbagePageTableIsSurvived) {
  const auto sb = superblock();
  std::vector<unsigned char> junk(sb.max_pages);
  std::mt19937 rng(3);
  for (auto& b : junk) b = static_cast<unsigned char>(rng());
  write_at(sb.page_table_offset, junk.data(), junk.size());
  check_usable();
}

TEST_F(CorruptionTest, RandomDamageAnywhereAfterTheHeader) {
  const auto pristine = [&] {
    std::string bytes(fs::file_size(file_), '\0');
    const int fd = ::open(file_.c_str(), O_RDONLY);
    EXPECT_EQ(::pread(fd, bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return bytes;
  }();
  const auto sb = superblock();
  std::mt19937_64 rng(99);
  for (int round = 0; round < 20; ++round) {
    write_at(0, pristine.data(), pristine.size());
    for (int i = 0; i < 200; ++i) {
      const std::uint64_t off =
          d::kSuperblockBytes + rng() % (pristine.size() - d::kSuperblockBytes);
      const std::uint64_t junk = rng();
      write_at(off, &junk, 1 + rng() % 8);
    }
    // The mutable counters may now be anything; the damage must not crash
    // or produce a wrong value, and the page counter may refuse the file.
    try {
      check_usable();
    } catch (const tcache::Error& e) {
      EXPECT_TRUE(e.code() == tcache::Errc::corrupt_file || e.code() == tcache::Errc::no_space)
          << e.what();
    }
  }
  (void)sb;
}

// Format 3 gave slot words a generation (issue 11, item 1). A file of
// format 2 is refused, with the way to keep its entries.
TEST_F(CorruptionTest, AVersion2FileIsRefusedWithHowToKeepItsEntries) {
  auto sb = superblock();
  sb.format_version = 2;
  write_superblock(sb, true);
  EXPECT_EQ(open_error(), tcache::Errc::version_mismatch);
  const std::string m = tcache::test::message_of([&] { tcache::Store::open(file_); });
  EXPECT_NE(m.find("format version 2, this tcache reads version 3"), std::string::npos) << m;
  EXPECT_NE(m.find("recreate"), std::string::npos) << m;
  EXPECT_NE(m.find("tcache-tool dump"), std::string::npos) << m;
  EXPECT_NE(m.find("tcache-tool load"), std::string::npos) << m;
}

// The chunk of `k` in a closed file, found through the index as get() does.
std::uint64_t chunk_of(const tcache::test::FileSurgery& f, const d::Superblock& sb,
                       const std::string& k) {
  const std::uint64_t h = d::checksum64(k.data(), k.size(), sb.hash_seed);
  std::uint64_t b[2] = {d::bucket_of(h, sb.bucket_count),
                        d::bucket_of(d::second_hash(h), sb.bucket_count)};
  if (b[1] == b[0]) b[1] = b[0] + 1 == sb.bucket_count ? 0 : b[0] + 1;
  for (std::uint64_t bucket : b) {
    for (std::uint32_t i = 0; i < d::kSlotsPerBucket; ++i) {
      const auto w = f.read_at<std::uint64_t>(sb.index_offset + bucket * d::kBucketBytes + i * 8);
      if (w != 0 && d::slot_tag(w) == d::hash_tag(h)) return d::slot_offset(w);
    }
  }
  ADD_FAILURE() << "no slot for " << k;
  return 0;
}

// A crafted chunk whose LZ4 raw length says 4 GiB, with a valid checksum:
// get() is a miss and allocates nothing of that size (issue 11, item 13).
TEST_F(CorruptionTest, AHugeStoredLengthIsAMissWithoutAllocatingIt) {
  const auto sb = superblock();
  tcache::test::FileSurgery f(file_);
  const std::string k = key(7);
  const std::uint64_t off = chunk_of(f, sb, k);
  ASSERT_NE(off, 0u);
  const auto meta = f.read_at<std::uint64_t>(off + d::kChunkMetaOffset);
  const auto vf = f.read_at<std::uint32_t>(off + d::kChunkVlenOffset);
  const std::uint32_t vlen = vf & d::kValueLenMask;
  ASSERT_GE(vlen, 8u);
  std::string stored(vlen, 'x');
  const std::uint32_t raw = 0xfffffff0u;
  std::memcpy(stored.data(), &raw, 4);
  const std::uint32_t nvf = vf | d::kFlagCompressed;
  const std::uint64_t h = d::checksum64(k.data(), k.size(), sb.hash_seed);
  const auto sum = static_cast<std::uint32_t>(
      d::checksum64(stored.data(), stored.size(), h ^ meta ^ (std::uint64_t{nvf} << 32)));
  f.write_at(off + d::kChunkHeaderBytes + k.size(), stored.data(), stored.size());
  f.write_at(off + d::kChunkVlenOffset, &nvf, sizeof nvf);
  f.write_at(off + d::kChunkChecksumOffset, &sum, sizeof sum);

  auto s = tcache::Store::open(file_);
  std::string v;
  g_largest_new = 0;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(s.get(k, v));
  EXPECT_LT(g_largest_new.load(), std::size_t{1} << 20) << "an allocation sized by the file";
  EXPECT_EQ(s.get(key(8)), value(8));  // the rest of the file reads as before
}

// A page that holds a chunk a writer took and never published (its owner
// mark: a killed writer's leak, until repair()) cannot change class. A put
// that wants a page for a class without one must not evict that page's
// entries first, over and over (issue 11, item 13).
TEST_F(CorruptionTest, APageWithALeakedChunkKeepsItsEntriesWhenAPageIsWanted) {
  fs::remove(file_);
  tcache::StoreOptions o;
  o.capacity_bytes = 1ull << 20;
  o.page_bytes = 64 << 10;
  {
    auto s = tcache::Store::open(file_, o);
    // Fill every page with one class (about 300 bytes a chunk).
    for (int i = 0; s.stats().pages_used < s.stats().pages_total || i < 4000; ++i) {
      s.put("a" + std::to_string(i), std::string(250, 'a'));
    }
  }
  // A leaked chunk in every page: odd version, the owner mark of a dead
  // process (a child that has exited).
  const pid_t gone = tcache::test::spawn([] { return 0; });
  tcache::test::wait_for(gone);
  const auto sb = superblock();
  for (std::uint64_t p = 0; p < sb.next_page; ++p) {
    const std::uint64_t c = sb.pages_offset + p * sb.page_bytes;
    tcache::test::FileSurgery f(file_);
    const std::uint32_t version = f.read_at<std::uint32_t>(c) | 1;
    const std::uint64_t mark = d::owner_mark(static_cast<std::uint32_t>(gone), 0);
    f.write_at(c, &version, sizeof version);
    f.write_at(c + d::kChunkMetaOffset, &mark, sizeof mark);
  }
  auto s = tcache::Store::open(file_, o);
  const std::uint64_t before = s.stats().evictions + s.stats().expirations;
  constexpr int kPuts = 20;
  for (int i = 0; i < kPuts; ++i) s.put("b" + std::to_string(i), "1");  // a class with no page
  for (int i = 0; i < kPuts; ++i) EXPECT_EQ(s.get("b" + std::to_string(i)), "1");
  // Each put may evict one entry to borrow its chunk, not a page of them.
  EXPECT_LE(s.stats().evictions + s.stats().expirations - before, std::uint64_t{kPuts});
}

}  // namespace
