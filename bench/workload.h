// bench/workload.h: the keys, values and operation sequences that every
// system under test is fed, generated once before any timing starts.
//
// Thread safety: a DataSet is built once and then only read; reading it from
// any number of threads, or from forked children (which see a copy-on-write
// snapshot), is safe.
//
// Everything a timed loop touches is laid out so that the loop reads it
// sequentially: keys are stored back to back at a fixed width in the order
// the loop will use them. A loop that formatted keys or indexed a key table at
// random would add its own cache misses to every system's numbers and shrink
// the differences we are trying to measure.

#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tcache_bench {

// Keys are `key:%08d`, so every key is exactly this long for up to 10^8 keys.
inline constexpr std::size_t kKeyBytes = 12;
inline constexpr std::uint64_t kMaxKeys = 100'000'000;

// What one data set looks like and how much of each phase to run on it.
struct DataSetSpec {
  std::string name;             // e.g. "100B"; used in tables and JSON
  std::uint64_t keys = 0;       // N
  std::size_t value_bytes = 0;  // every value has exactly this size
  std::uint64_t gets = 0;       // random gets per get phase (and per process)
  std::uint64_t mix_ops = 0;    // operations of the get/put mix
  unsigned put_percent = 10;    // share of puts in the mix
  std::size_t batch = 32;       // keys per batched get
  unsigned processes = 2;       // processes of the concurrent get phase
  // StoreOptions::compress_threshold for tcache; unset = the library default.
  std::optional<std::uint32_t> tcache_compress_threshold;

  std::size_t entry_bytes() const { return kKeyBytes + value_bytes; }
};

// splitmix64: tiny, fast and identical on every platform, so a seed names the
// same workload everywhere (std:: distributions differ between libraries).
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) by multiply-shift; the bias is below 2^-32 for the
  // bounds used here, far under anything a timing can show.
  std::uint32_t below(std::uint32_t bound) {
    return static_cast<std::uint32_t>(((next() >> 32) * bound) >> 32);
  }

 private:
  std::uint64_t state_;
};

// Writes `key:%08d` for `index` into out[0..kKeyBytes).
// REQUIRES: index < kMaxKeys.
void format_key(std::uint64_t index, char* out);

// Fixed-width keys stored back to back, in the order a loop consumes them.
class KeySequence {
 public:
  KeySequence() = default;
  // Key order: key 0, 1, ..., count-1.
  static KeySequence in_order(std::uint64_t count);
  // `count` keys drawn uniformly (with repetition) from [0, key_space).
  static KeySequence uniform(std::uint64_t count, std::uint64_t key_space, Rng& rng);

  std::size_t size() const { return bytes_.size() / kKeyBytes; }
  std::string_view operator[](std::size_t i) const {
    return {bytes_.data() + i * kKeyBytes, kKeyBytes};
  }

 private:
  std::string bytes_;
};

// A block of random bytes from which every value is cut. Values are random so
// that no system gains from compressing them; they are slices of one pool so
// that producing a value in a timed loop costs a pointer addition.
class ValuePool {
 public:
  ValuePool(std::size_t value_bytes, Rng& rng);
  // The value that the fill phase stores under key `index`.
  std::string_view for_key(std::uint64_t index) const { return slice(index * 2 + 0); }
  // The value written by the `op`-th put of the mix; differs from for_key().
  std::string_view for_update(std::uint64_t op) const { return slice(op * 2 + 1); }
  std::size_t value_bytes() const { return value_bytes_; }

 private:
  std::string_view slice(std::uint64_t n) const;
  std::size_t value_bytes_;
  std::string bytes_;
};

// All inputs of one data set, generated before any system runs so that every
// system sees byte-identical keys, values and sequences.
struct DataSet {
  DataSet(const DataSetSpec& spec, std::uint64_t seed);

  DataSetSpec spec;
  ValuePool values;
  KeySequence ordered;                   // fill and warm-up order
  KeySequence random_gets;               // the single-process get phases
  std::vector<KeySequence> proc_gets;    // one independent sequence per process
  KeySequence mix_keys;                  // keys of the get/put mix
  std::vector<std::uint8_t> mix_is_put;  // 1 = put, 0 = get, per mix op
};

}  // namespace tcache_bench
