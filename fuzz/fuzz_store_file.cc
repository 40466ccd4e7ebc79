// Fuzzes opening and using a damaged or crafted cache file.
//
// Structure-aware: the input is a list of edits to a valid, populated cache
// file (made once, kept in memory, rewritten each run), each naming a field
// of the format rather than a byte offset, so that the fuzzer explores what
// the checks after the header checksum do with every field:
//
//   opcode % 7 == 0  header field   [field u8][how u8][value u64]
//                    a superblock field (immutable geometry or mutable
//                    counter); how % 3: 0 set, 1 add, 2 xor
//   opcode % 7 == 1  page table     [page u16][byte u8]
//   opcode % 7 == 2  index slot     [slot u32][how u8][value u64]
//   opcode % 7 == 3  chunk field    [page u16][chunk u16][field u8][how u8][value u64]
//                    version, checksum, meta or vlen_flags of a chunk of
//                    that page's class, or a byte of its key
//   opcode % 7 == 4  class table    [class u8][word u8][how u8][value u64]
//   opcode % 7 == 5  raw patch      [offset u32][length u8][bytes]
//   opcode % 7 == 6  keep the header checksum as it is (else it is
//                    recomputed after all edits, so the header is accepted
//                    and the geometry checks themselves are exercised)
//
// The oracle: opening may throw tcache::Error, but nothing may crash, hang
// or allocate without bound, and a value read must be exactly the value that
// was put under that key. The store is then used (gets, puts, an erase),
// verified, repaired and opened again (recovery).
//
// This target reaches the file format on purpose (format/layout.h) to know
// where the fields are.

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "format/layout.h"
#include "tcache/tcache.h"

namespace {

namespace d = tcache::detail;

constexpr int kKeys = 300;
std::string key(int i) { return "k" + std::to_string(i); }
std::string value(int i) {
  return std::string(static_cast<std::size_t>(i % 200), 'v') + std::to_string(i);
}

const std::string& path() {
  static const std::string p = [] {
    char tmpl[] = "/tmp/tcache-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    return std::string(tmpl) + "/cache.tc";
  }();
  return p;
}

const std::string& pristine() {
  static const std::string bytes = [] {
    tcache::StoreOptions o;
    o.capacity_bytes = 1u << 20;
    o.expected_entry_bytes = 128;
    {
      auto s = tcache::Store::open(path(), o);
      for (int i = 0; i < kKeys; ++i) s.put(key(i), value(i), std::chrono::hours(i % 3));
    }
    std::string b(1u << 20, '\0');
    const int fd = ::open(path().c_str(), O_RDONLY);
    const ssize_t n = ::pread(fd, b.data(), b.size(), 0);
    ::close(fd);
    b.resize(static_cast<std::size_t>(n));
    return b;
  }();
  return bytes;
}

// Superblock fields: offset and width. Not `compaction`: a crafted word
// naming a live process in its switching phase makes writers wait for it
// (bounded, but longer than a fuzzer's timeout), which is compact_test's
// business.
struct Field {
  std::size_t offset, width;
};
constexpr Field kHeaderFields[] = {
    {offsetof(d::Superblock, format_version), 4},
    {offsetof(d::Superblock, endian_check), 4},
    {offsetof(d::Superblock, page_bytes), 4},
    {offsetof(d::Superblock, capacity_bytes), 8},
    {offsetof(d::Superblock, hash_seed), 8},
    {offsetof(d::Superblock, bucket_count), 8},
    {offsetof(d::Superblock, class_table_offset), 8},
    {offsetof(d::Superblock, process_table_offset), 8},
    {offsetof(d::Superblock, page_table_offset), 8},
    {offsetof(d::Superblock, index_offset), 8},
    {offsetof(d::Superblock, pages_offset), 8},
    {offsetof(d::Superblock, max_pages), 8},
    {offsetof(d::Superblock, class_count), 4},
    {offsetof(d::Superblock, next_page), 8},
    {offsetof(d::Superblock, file_bytes), 8},
    {offsetof(d::Superblock, needs_recovery), 8},
    {offsetof(d::Superblock, blob_bytes), 8},
    {offsetof(d::Superblock, untracked_processes), 8},
};
constexpr std::size_t kNamedFields = sizeof kHeaderFields / sizeof kHeaderFields[0];

// Reads the input front to back; past its end every read is 0.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  bool more() const { return p_ < end_; }
  template <class T>
  T take() {
    T v{};
    const std::size_t n = std::min<std::size_t>(sizeof v, static_cast<std::size_t>(end_ - p_));
    std::memcpy(&v, p_, n);
    p_ += n;
    return v;
  }
  std::size_t left() const { return static_cast<std::size_t>(end_ - p_); }
  const std::uint8_t* here() const { return p_; }
  void skip(std::size_t n) { p_ += std::min(n, left()); }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

// Applies set/add/xor of `value` to the `width`-byte field at `off`.
void edit(std::string& file, std::size_t off, std::size_t width, std::uint8_t how,
          std::uint64_t value) {
  if (off + width > file.size()) return;
  std::uint64_t v = 0;
  std::memcpy(&v, file.data() + off, width);
  switch (how % 3) {
    case 0:
      v = value;
      break;
    case 1:
      v += value;
      break;
    default:
      v ^= value;
      break;
  }
  std::memcpy(file.data() + off, &v, width);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string file = pristine();
  d::Superblock sb;  // the pristine geometry, to aim edits at real structures
  std::memcpy(&sb, file.data(), sizeof sb);
  const std::uint64_t slots = sb.bucket_count * d::kSlotsPerBucket;
  const std::uint64_t pages = sb.next_page;
  bool recompute = true;
  Input in(data, size);
  for (int ops = 0; in.more() && ops < 64; ++ops) {
    switch (in.take<std::uint8_t>() % 7) {
      case 0: {
        const auto f = in.take<std::uint8_t>();
        const auto how = in.take<std::uint8_t>();
        const auto v = in.take<std::uint64_t>();
        if (f < kNamedFields) {
          edit(file, kHeaderFields[f].offset, kHeaderFields[f].width, how, v);
        } else {
          const std::size_t c = (f - kNamedFields) % d::kMaxClasses;
          edit(file, offsetof(d::Superblock, class_bytes) + 4 * c, 4, how, v);
        }
        break;
      }
      case 1: {
        const auto page = in.take<std::uint16_t>();
        const auto byte = in.take<std::uint8_t>();
        if (pages != 0) file[sb.page_table_offset + page % pages] = static_cast<char>(byte);
        break;
      }
      case 2: {
        const auto slot = in.take<std::uint32_t>();
        const auto how = in.take<std::uint8_t>();
        const auto v = in.take<std::uint64_t>();
        edit(file, sb.index_offset + (slot % slots) * 8, 8, how, v);
        break;
      }
      case 3: {
        const auto page = in.take<std::uint16_t>();
        const auto index = in.take<std::uint16_t>();
        const auto field = in.take<std::uint8_t>();
        const auto how = in.take<std::uint8_t>();
        const auto v = in.take<std::uint64_t>();
        if (pages == 0) break;
        const std::uint64_t p = page % pages;
        const auto cls = static_cast<std::uint8_t>(pristine()[sb.page_table_offset + p]);
        const std::uint64_t size = cls < sb.class_count ? sb.class_bytes[cls] : sb.page_bytes;
        const std::uint64_t chunk =
            sb.pages_offset + p * sb.page_bytes + (index % (sb.page_bytes / size)) * size;
        static constexpr Field kChunkFields[] = {{0, 4}, {4, 4}, {8, 8}, {16, 4}};
        if (field % 5 < 4) {
          edit(file, chunk + kChunkFields[field % 5].offset, kChunkFields[field % 5].width, how, v);
        } else {
          edit(file, chunk + d::kChunkHeaderBytes + (field / 5) % 16, 1, how, v);
        }
        break;
      }
      case 4: {
        const auto cls = in.take<std::uint8_t>();
        const auto word = in.take<std::uint8_t>();
        const auto how = in.take<std::uint8_t>();
        const auto v = in.take<std::uint64_t>();
        edit(
            file,
            sb.class_table_offset + (cls % d::kMaxClasses) * sizeof(d::ClassState) + (word % 3) * 8,
            8, how, v);
        break;
      }
      case 5: {
        std::uint32_t off = in.take<std::uint32_t>();
        const std::size_t n = std::min({std::size_t{in.take<std::uint8_t>()}, in.left()});
        off %= static_cast<std::uint32_t>(file.size() - n + 1);
        std::memcpy(file.data() + off, in.here(), n);
        in.skip(n);
        break;
      }
      default:
        recompute = false;
        break;
    }
  }
  if (recompute) {
    const std::uint64_t sum = XXH3_64bits(file.data(), offsetof(d::Superblock, header_checksum));
    std::memcpy(file.data() + offsetof(d::Superblock, header_checksum), &sum, sizeof sum);
  }
  const int fd = ::open(path().c_str(), O_WRONLY | O_TRUNC);
  if (fd < 0 || ::write(fd, file.data(), file.size()) != static_cast<ssize_t>(file.size())) {
    std::abort();
  }
  ::close(fd);
  for (int round = 0; round < 2; ++round) {
    try {
      auto s = tcache::Store::open(path());
      std::string v;
      for (int i = 0; i < kKeys; i += 7) {
        if (s.get(key(i), v) && v != value(i)) std::abort();  // a wrong value: the one real bug
      }
      for (int i = 0; i < 20; ++i) s.put("n" + std::to_string(i), value(i));
      for (int i = 0; i < 20; ++i) {
        if (s.get("n" + std::to_string(i), v) && v != value(i)) std::abort();
      }
      s.erase(key(1));
      (void)s.stats();
      (void)s.verify();
      if (round == 0) (void)s.repair();  // then reopened alone: recovery
    } catch (const tcache::Error&) {
      // A typed error is a correct answer to a damaged file.
    }
  }
  return 0;
}
