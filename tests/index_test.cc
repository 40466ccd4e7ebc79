// tests/index_test.cc: the hash index (lib/store/index.cc, index.h): the
// bucket pair of a key, lookups in the pair, a full pair evicting its
// coldest slot, and concurrent publishes of one key leaving one winner
// (INVARIANTS.md, 5 and 6).
//
// Includes private headers from lib/ on purpose (store/index.h,
// format/layout.h, util/checksum.h): the tests look into the file's index
// to count the slots that hold a key, which no public call shows.

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "format/layout.h"
#include "store/index.h"
#include "support/file_surgery.h"
#include "support/test_support.h"
#include "tcache/tcache.h"
#include "util/checksum.h"

namespace d = tcache::detail;

namespace {

TEST(BucketPairTest, TwoDistinctBucketsInRangeWithTheFirstFromTheHash) {
  for (const std::uint64_t count : {2ull, 3ull, 7ull, 1024ull, 1000003ull}) {
    std::uint64_t coincided = 0;
    for (std::uint64_t i = 0; i < 200000; ++i) {
      const std::uint64_t h = tcache::test::mix64(i);
      const d::BucketPair p = d::bucket_pair(h, count);
      ASSERT_LT(p.first, count);
      ASSERT_LT(p.second, count);
      ASSERT_NE(p.first, p.second) << "a pair always has two buckets' slots";
      EXPECT_EQ(p.first, d::bucket_of(h, count));
      if (d::bucket_of(d::second_hash(h), count) == p.first) {
        ++coincided;
        EXPECT_EQ(p.second, (p.first + 1) % count) << "the next bucket, wrapping";
      } else {
        EXPECT_EQ(p.second, d::bucket_of(d::second_hash(h), count));
      }
    }
    if (count == 2) {
      EXPECT_GT(coincided, 0u) << "the wrap-around case was exercised";
    }
  }
}

// Keys of one length: "pair:000000042".
std::string pair_key(std::uint64_t i) {
  std::string digits = std::to_string(i);
  return "pair:" + std::string(9 - std::min<std::size_t>(9, digits.size()), '0') + digits;
}

class IndexTest : public tcache::test::TempDirTest {
 protected:
  IndexTest() : TempDirTest("tcache-index-test") {}

  // The slots of `key`'s bucket pair whose chunk holds `key`, read from the
  // file (pread sees what the mapping holds; the file may be open).
  std::vector<std::uint64_t> slots_holding(const std::string& key) const {
    tcache::test::FileSurgery f(file_);
    const d::Superblock sb = f.superblock();
    const std::uint64_t h = d::checksum64(key.data(), key.size(), sb.hash_seed);
    const d::BucketPair p = d::bucket_pair(h, sb.bucket_count);
    std::vector<std::uint64_t> found;
    for (const std::uint64_t bucket : {p.first, p.second}) {
      for (std::uint32_t i = 0; i < d::kSlotsPerBucket; ++i) {
        const std::uint64_t at = sb.index_offset + bucket * d::kBucketBytes + i * 8;
        const auto w = f.read_at<std::uint64_t>(at);
        if (w == 0 || d::slot_tag(w) != d::hash_tag(h)) continue;
        const std::uint64_t off = d::slot_offset(w);
        const auto meta = f.read_at<std::uint64_t>(off + d::kChunkMetaOffset);
        if (d::meta_key_len(meta) != key.size()) continue;
        std::string k(key.size(), '\0');
        for (std::size_t j = 0; j < k.size(); ++j) {
          k[j] = f.read_at<char>(off + d::kChunkHeaderBytes + j);
        }
        if (k == key) found.push_back(at);
      }
    }
    return found;
  }

  // `n` keys of one length that all hash to the same bucket pair (in either
  // order) of the file's index.
  std::vector<std::string> keys_of_one_pair(std::size_t n) const {
    const d::Superblock sb = tcache::test::FileSurgery(file_).superblock();
    const auto pair_of = [&](const std::string& k) {
      const d::BucketPair p =
          d::bucket_pair(d::checksum64(k.data(), k.size(), sb.hash_seed), sb.bucket_count);
      return std::pair<std::uint64_t, std::uint64_t>(std::min(p.first, p.second),
                                                     std::max(p.first, p.second));
    };
    const auto want = pair_of(pair_key(0));
    std::vector<std::string> keys{pair_key(0)};
    for (std::uint64_t i = 1; keys.size() < n && i < 100'000'000; ++i) {
      std::string k = pair_key(i);
      if (pair_of(k) == want) keys.push_back(std::move(k));
    }
    return keys;
  }
};

TEST_F(IndexTest, EveryEntryIsInItsKeysBucketPairOnce) {
  {
    auto s = tcache::Store::open(file_);
    for (int i = 0; i < 2000; ++i) s.put(tcache::test::key_name("k", i), "v" + std::to_string(i));
    for (int i = 0; i < 2000; i += 3) s.put(tcache::test::key_name("k", i), "w");  // replaced
  }
  for (int i = 0; i < 2000; ++i) {
    EXPECT_EQ(slots_holding(tcache::test::key_name("k", i)).size(), 1u) << i;
  }
  auto s = tcache::Store::open(file_);
  EXPECT_EQ(s.get(tcache::test::key_name("k", 3)), "w");
  EXPECT_EQ(s.get(tcache::test::key_name("k", 4)), "v4");
}

// A pair holds 2 * kSlotsPerBucket entries. One more evicts the coldest:
// the only one never read since it was written (CLOCK within the pair).
TEST_F(IndexTest, AFullBucketPairEvictsItsColdestEntry) {
  tcache::StoreOptions options;
  options.capacity_bytes = 4u << 20;
  options.expected_entry_bytes = 16u << 10;  // few buckets: pairs are easy to fill
  auto s = tcache::Store::open(file_, options);
  constexpr std::size_t kPair = 2 * d::kSlotsPerBucket;
  const std::vector<std::string> keys = keys_of_one_pair(kPair + 1);
  ASSERT_EQ(keys.size(), kPair + 1) << "no " << kPair + 1 << " keys of one pair found";
  for (std::size_t i = 0; i < kPair; ++i) s.put(keys[i], "value " + keys[i]);
  const std::size_t cold = 5;
  for (std::size_t i = 0; i < kPair; ++i) {
    if (i != cold) {
      EXPECT_EQ(s.get(keys[i]), "value " + keys[i]);
    }
  }
  const std::uint64_t evictions = s.stats().evictions;
  s.put(keys[kPair], "value " + keys[kPair]);
  EXPECT_EQ(s.stats().evictions, evictions + 1);
  EXPECT_FALSE(s.get(keys[cold]).has_value()) << "the entry never read went";
  EXPECT_TRUE(slots_holding(keys[cold]).empty());
  for (std::size_t i = 0; i <= kPair; ++i) {
    if (i != cold) {
      EXPECT_EQ(s.get(keys[i]), "value " + keys[i]) << keys[i];
    }
  }
}

// Runs `rounds` rounds. In each, `before(r)` runs on this thread, then
// `body(t, r)` on each of `threads` threads at once, then `after(r)` on this
// thread, when every body has returned.
template <class Before, class Body, class After>
void in_rounds(int threads, int rounds, Before before, Body body, After after) {
  std::barrier sync(threads + 1);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int r = 0; r < rounds; ++r) {
        sync.arrive_and_wait();  // before(r) is done
        body(t, r);
        sync.arrive_and_wait();
      }
    });
  }
  for (int r = 0; r < rounds; ++r) {
    before(r);
    sync.arrive_and_wait();
    sync.arrive_and_wait();  // every body(t, r) has returned
    after(r);
  }
  for (auto& w : workers) w.join();
}

std::string round_value(int r) { return "round " + std::to_string(r); }

// Two slots of a pair holding one key (what two writers that publish it at
// once leave for a moment) converge on a put of the key: the writer
// publishes into the first and dedupe clears the other (INVARIANTS.md, 6).
// The duplicate is made by rewriting another entry of the pair into one of
// the key: its key bytes, checksum and slot tag.
TEST_F(IndexTest, APutOfADuplicatedKeyLeavesOneSlot) {
  tcache::StoreOptions options;
  options.capacity_bytes = 4u << 20;
  options.expected_entry_bytes = 16u << 10;
  std::vector<std::string> keys;
  {
    auto s = tcache::Store::open(file_, options);
    keys = keys_of_one_pair(2);
    ASSERT_EQ(keys.size(), 2u);
    s.put(keys[0], "the key's value");
    s.put(keys[1], "another key's value");
  }
  const std::string& key = keys[0];
  {
    tcache::test::FileSurgery f(file_);
    const d::Superblock sb = f.superblock();
    const std::vector<std::uint64_t> other = slots_holding(keys[1]);
    ASSERT_EQ(other.size(), 1u);
    const auto w = f.read_at<std::uint64_t>(other[0]);
    const std::uint64_t off = d::slot_offset(w);
    const std::uint64_t h = d::checksum64(key.data(), key.size(), sb.hash_seed);
    const auto meta = f.read_at<std::uint64_t>(off + d::kChunkMetaOffset);
    const auto vf = f.read_at<std::uint32_t>(off + d::kChunkVlenOffset);
    std::string stored(vf & d::kValueLenMask, '\0');
    for (std::size_t j = 0; j < stored.size(); ++j) {
      stored[j] = f.read_at<char>(off + d::kChunkHeaderBytes + key.size() + j);
    }
    const auto sum = static_cast<std::uint32_t>(
        d::checksum64(stored.data(), stored.size(), h ^ meta ^ (std::uint64_t{vf} << 32)));
    f.write_at(off + d::kChunkHeaderBytes, key.data(), key.size());
    f.write_at(off + d::kChunkChecksumOffset, &sum, sizeof sum);
    const std::uint64_t dup = d::slot_make(d::hash_tag(h), off, f.read_at<std::uint32_t>(off));
    f.write_at(other[0], &dup, sizeof dup);
  }
  ASSERT_EQ(slots_holding(key).size(), 2u) << "the duplicate was made";
  auto s = tcache::Store::open(file_, options);
  s.put(key, "written once more");
  EXPECT_EQ(slots_holding(key).size(), 1u);
  EXPECT_EQ(s.get(key), "written once more");
  EXPECT_FALSE(s.get(keys[1]).has_value());
}

// get_or_lease publishes if absent: of threads that miss at once, exactly
// one becomes the holder (withdraw_if_rival), the others get its value. A
// stress test: how often two publishes overlap depends on the machine.
TEST_F(IndexTest, ConcurrentInsertsIfAbsentHaveOneWinner) {
  auto s = tcache::Store::open(file_);
  const std::string key = "single";
  std::atomic<int> holders{0};
  std::atomic<int> wrong_values{0};
  in_rounds(
      4, 200,
      [&](int) {
        s.erase(key);
        holders.store(0);
      },
      [&](int, int r) {
        std::string v;
        if (!s.get_or_lease(key, v, std::chrono::minutes(10))) {
          holders.fetch_add(1);
          s.put(key, round_value(r));
        } else if (v != round_value(r)) {
          wrong_values.fetch_add(1);
        }
      },
      [&](int r) {
        EXPECT_EQ(holders.load(), 1) << "round " << r;
        EXPECT_EQ(slots_holding(key).size(), 1u) << "round " << r;
      });
  EXPECT_EQ(wrong_values.load(), 0);
}

}  // namespace
