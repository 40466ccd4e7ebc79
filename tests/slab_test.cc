// tests/slab_test.cc: the slab allocator's primitives alone (lib/store/slab.h):
// size classes, carving a page into linked free chunks, and a free list with
// its 16-byte (first chunk, ABA tag) head, pushed and popped by many threads.
//
// Includes private headers from lib/ on purpose (store/slab.h,
// format/geometry.h): these are the invariants of INVARIANTS.md, 4, checked
// on a plain buffer instead of through a whole store.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "format/geometry.h"
#include "format/layout.h"
#include "store/slab.h"
#include "util/atomic128.h"
#include "util/racy.h"

namespace d = tcache::detail;
namespace slab = tcache::detail::slab;

namespace {

// A stand-in for a mapped file: `n` chunks of `size` bytes carved from
// offset `first` (never 0: offset 0 ends a list), and a list head.
class Page {
 public:
  Page(std::uint32_t size, std::uint32_t n, std::uint64_t first = 4096)
      : size_(size), n_(n), first_(first), bytes_(first + std::uint64_t{size} * n) {
    mem_.reset(static_cast<char*>(std::aligned_alloc(64, (bytes_ + 63) / 64 * 64)));
    std::fill_n(mem_.get(), bytes_, '\0');
  }
  char* base() { return mem_.get(); }
  std::uint64_t* head() { return head_; }
  std::uint64_t first() const { return first_; }
  std::uint64_t at(std::uint32_t i) const { return first_ + std::uint64_t{i} * size_; }
  std::uint32_t n() const { return n_; }
  bool is_chunk(std::uint64_t off) const {
    return off >= first_ && off < bytes_ && (off - first_) % size_ == 0;
  }
  std::uint32_t version(std::uint64_t off) {
    return d::atom<std::uint32_t>(base() + off).load(std::memory_order_relaxed);
  }
  std::uint64_t meta(std::uint64_t off) {
    return d::atom<std::uint64_t>(base() + off + d::kChunkMetaOffset)
        .load(std::memory_order_relaxed);
  }
  d::WordPair head_pair() { return d::load128(head_); }
  // Carves every chunk and pushes them: the list is at(0), at(1), ...
  void carve() {
    const std::uint64_t last = slab::link_free_chunks(base(), first_, size_, n_);
    slab::push_chain(head_, base(), first_, last);
  }
  slab::Pop pop(std::uint64_t* off) {
    return slab::pop_free(
        head_, base(), [this](std::uint64_t o) { return is_chunk(o); }, off);
  }

 private:
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::uint32_t size_;
  std::uint32_t n_;
  std::uint64_t first_;
  std::uint64_t bytes_;
  std::unique_ptr<char, Free> mem_;
  alignas(16) std::uint64_t head_[2] = {0, 0};
};

TEST(SlabTest, SizeClassesOfARealGeometryHoldWhatTheyAreChosenFor) {
  d::Superblock sb;
  d::make_superblock({64u << 20, 200, 0}, &sb);
  ASSERT_GE(sb.class_count, 2u);
  for (std::uint32_t c = 1; c < sb.class_count; ++c) {
    EXPECT_LT(sb.class_bytes[c - 1], sb.class_bytes[c]) << "classes ascend";
  }
  for (std::uint64_t bytes = 1; bytes <= sb.class_bytes[sb.class_count - 1]; bytes += 7) {
    const std::uint32_t c = slab::class_for(sb.class_bytes, sb.class_count, bytes);
    ASSERT_LT(c, sb.class_count);
    EXPECT_GE(sb.class_bytes[c], bytes) << "class " << c << " holds " << bytes << " bytes";
    if (c > 0) {
      EXPECT_LT(sb.class_bytes[c - 1], bytes) << "the smallest class that holds it";
    }
  }
  EXPECT_EQ(slab::class_for(sb.class_bytes, sb.class_count, sb.class_bytes[0]), 0u);
  EXPECT_EQ(slab::class_for(sb.class_bytes, sb.class_count, sb.class_bytes[sb.class_count - 1] + 1),
            sb.class_count)
      << "larger than every class: none";
}

TEST(SlabTest, CarvingLinksEveryChunkInOrderAsFree) {
  Page p(96, 40);
  // A stale version in one spot: carving moves it on, odd.
  d::atom<std::uint32_t>(p.base() + p.at(5)).store(6);
  const std::uint64_t last = slab::link_free_chunks(p.base(), p.first(), 96, p.n());
  EXPECT_EQ(last, p.at(p.n() - 1));
  for (std::uint32_t i = 0; i < p.n(); ++i) {
    EXPECT_EQ(p.version(p.at(i)) & 1, 1u) << "free chunks have odd versions";
    const std::uint64_t next = i + 1 < p.n() ? p.at(i + 1) / d::kChunkAlign : 0;
    EXPECT_EQ(p.meta(p.at(i)), next) << "chunk " << i << " links the next";
  }
  EXPECT_EQ(p.version(p.at(5)), 9u) << "one past any version a stale reader holds";
  EXPECT_EQ(p.version(p.at(0)), 3u);

  slab::push_chain(p.head(), p.base(), p.first(), last);
  for (std::uint32_t i = 0; i < p.n(); ++i) {
    std::uint64_t off = 0;
    ASSERT_EQ(p.pop(&off), slab::Pop::popped);
    EXPECT_EQ(off, p.at(i)) << "popped in carving order";
  }
  std::uint64_t off = 0;
  EXPECT_EQ(p.pop(&off), slab::Pop::empty);
}

TEST(SlabTest, EveryChangeOfTheHeadAdvancesItsTagByOne) {
  Page p(64, 8);
  EXPECT_EQ(p.head_pair().hi, 0u);
  p.carve();
  EXPECT_EQ(p.head_pair().hi, 1u) << "one push of the whole chain";
  std::uint64_t a = 0, b = 0;
  ASSERT_EQ(p.pop(&a), slab::Pop::popped);
  ASSERT_EQ(p.pop(&b), slab::Pop::popped);
  EXPECT_EQ(p.head_pair().hi, 3u);
  slab::push_chain(p.head(), p.base(), a, a);
  EXPECT_EQ(p.head_pair().hi, 4u);
  EXPECT_EQ(d::head_offset(p.head_pair().lo), a);
  EXPECT_EQ(slab::take_all(p.head()), a) << "take_all returns the first chunk";
  EXPECT_EQ(p.head_pair().lo, 0u);
  EXPECT_EQ(p.head_pair().hi, 5u);
  std::uint64_t off = 0;
  EXPECT_EQ(p.pop(&off), slab::Pop::empty);
  EXPECT_EQ(p.head_pair().hi, 5u) << "a pop of an empty list changes nothing";
}

// The ABA case the tag exists for: between a reader's load of the head and
// its CAS, A is popped, B is popped and A is pushed back. The head links A
// again, but the CAS built on the stale pair must fail (it would install
// B's old link, a chunk in use).
TEST(SlabTest, AStaleHeadFailsItsCasAfterPopPopPush) {
  Page p(64, 4);
  p.carve();
  const d::WordPair stale = p.head_pair();
  std::uint64_t a = 0, b = 0;
  ASSERT_EQ(p.pop(&a), slab::Pop::popped);
  ASSERT_EQ(p.pop(&b), slab::Pop::popped);
  slab::push_chain(p.head(), p.base(), a, a);
  const d::WordPair now = p.head_pair();
  ASSERT_EQ(now.lo, stale.lo) << "the same first chunk: the ABA shape";
  d::WordPair expected = stale;
  EXPECT_FALSE(d::cas128(p.head(), expected, d::WordPair{d::head_link(b), stale.hi + 1}));
  EXPECT_EQ(expected.hi, now.hi) << "the failed CAS hands back the real pair";
  std::uint64_t off = 0;
  ASSERT_EQ(p.pop(&off), slab::Pop::popped);
  EXPECT_EQ(off, a);
  ASSERT_EQ(p.pop(&off), slab::Pop::popped);
  EXPECT_EQ(off, p.at(2)) << "B (in use) never came back on the list";
}

TEST(SlabTest, ADamagedListIsDroppedNotFollowed) {
  {
    Page p(64, 4);
    p.carve();
    // The first chunk links outside the page.
    d::atom<std::uint64_t>(p.base() + p.at(0) + d::kChunkMetaOffset).store(1);
    std::uint64_t off = 0;
    ASSERT_EQ(p.pop(&off), slab::Pop::popped);
    EXPECT_EQ(off, p.at(0));
    EXPECT_EQ(p.pop(&off), slab::Pop::damaged) << "a head outside the class";
    EXPECT_EQ(p.head_pair().lo, 0u) << "dropped";
    EXPECT_EQ(p.pop(&off), slab::Pop::empty);
  }
  {
    Page p(64, 4);
    p.carve();
    // A chunk in use (even version) at the head, and the head unchanged.
    d::atom<std::uint32_t>(p.base() + p.at(0)).store(8);
    std::uint64_t off = 0;
    EXPECT_EQ(p.pop(&off), slab::Pop::damaged) << "a live chunk at the head";
    EXPECT_EQ(p.head_pair().lo, 0u);
  }
}

// Threads pop a chunk, own it alone for a moment, and push it back. No chunk
// is ever owned by two threads at once, none is lost or duplicated, and the
// tag counts every successful change of the head.
TEST(SlabTest, PushAndPopAcrossThreadsKeepEveryChunkOnce) {
  constexpr std::uint32_t kChunks = 16;
  constexpr int kThreads = 4;
  constexpr int kRounds = 20000;
  Page p(64, kChunks);
  p.carve();
  std::vector<std::atomic<int>> owner(kChunks);
  std::atomic<std::uint64_t> changes{1};  // the carve's push
  std::atomic<int> shared_owner{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::uint64_t mine = 0;
      std::vector<std::uint64_t> held;
      for (int r = 0; r < kRounds; ++r) {
        std::uint64_t off = 0;
        const slab::Pop got = p.pop(&off);
        if (got == slab::Pop::damaged) {
          shared_owner.fetch_add(1000);
          return;
        }
        if (got == slab::Pop::empty) continue;
        ++mine;
        const auto i = static_cast<std::uint32_t>((off - p.first()) / 64);
        if (owner[i].exchange(t + 1) != 0) shared_owner.fetch_add(1);
        held.push_back(off);
        // Hold up to two chunks, so that the list's head keeps moving
        // under other threads' reads.
        if (held.size() == 2 || r % 3 == 0) {
          for (std::uint64_t h : held) {
            owner[(h - p.first()) / 64].store(0);
            slab::push_chain(p.head(), p.base(), h, h);
            ++mine;
          }
          held.clear();
        }
      }
      for (std::uint64_t h : held) {
        owner[(h - p.first()) / 64].store(0);
        slab::push_chain(p.head(), p.base(), h, h);
        ++mine;
      }
      changes.fetch_add(mine);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(shared_owner.load(), 0) << "a chunk was owned twice, or the list looked damaged";
  EXPECT_EQ(p.head_pair().hi, changes.load()) << "one tag step per successful push or pop";
  std::set<std::uint64_t> seen;
  std::uint64_t off = 0;
  while (p.pop(&off) == slab::Pop::popped) {
    EXPECT_TRUE(p.is_chunk(off));
    EXPECT_TRUE(seen.insert(off).second) << "chunk " << off << " twice on the list";
    ASSERT_LE(seen.size(), kChunks);
  }
  EXPECT_EQ(seen.size(), kChunks) << "every chunk is back on the list";
}

}  // namespace
