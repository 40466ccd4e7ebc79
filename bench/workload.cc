#include "workload.h"

#include <stdexcept>

namespace tcache_bench {

namespace {

// 4 MiB of random bytes: larger than the L2 of most machines, so values cut
// from it are not all cache-hot when a put copies them in.
constexpr std::size_t kPoolBytes = 4u << 20;

std::uint64_t mix64(std::uint64_t x) {
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

void format_key(std::uint64_t index, char* out) {
  // By hand rather than snprintf: this runs tens of millions of times while
  // the sequences are built, and it must produce exactly kKeyBytes bytes.
  out[0] = 'k';
  out[1] = 'e';
  out[2] = 'y';
  out[3] = ':';
  for (int i = 11; i >= 4; --i) {
    out[i] = static_cast<char>('0' + index % 10);
    index /= 10;
  }
}

KeySequence KeySequence::in_order(std::uint64_t count) {
  KeySequence seq;
  seq.bytes_.resize(count * kKeyBytes);
  for (std::uint64_t i = 0; i < count; ++i) format_key(i, seq.bytes_.data() + i * kKeyBytes);
  return seq;
}

KeySequence KeySequence::uniform(std::uint64_t count, std::uint64_t key_space, Rng& rng) {
  if (key_space == 0 || key_space > kMaxKeys) throw std::invalid_argument("bad key space");
  KeySequence seq;
  seq.bytes_.resize(count * kKeyBytes);
  const auto bound = static_cast<std::uint32_t>(key_space);
  for (std::uint64_t i = 0; i < count; ++i) {
    format_key(rng.below(bound), seq.bytes_.data() + i * kKeyBytes);
  }
  return seq;
}

ValuePool::ValuePool(std::size_t value_bytes, Rng& rng) : value_bytes_(value_bytes) {
  bytes_.resize(kPoolBytes + value_bytes);
  for (std::size_t i = 0; i < bytes_.size(); i += 8) {
    std::uint64_t r = rng.next();
    for (std::size_t j = 0; j < 8 && i + j < bytes_.size(); ++j) {
      bytes_[i + j] = static_cast<char>(r >> (8 * j));
    }
  }
}

std::string_view ValuePool::slice(std::uint64_t n) const {
  const std::size_t offset = mix64(n + 1) % (bytes_.size() - value_bytes_ + 1);
  return {bytes_.data() + offset, value_bytes_};
}

DataSet::DataSet(const DataSetSpec& s, std::uint64_t seed)
    : spec(s), values([&] {
        Rng rng(seed);
        return ValuePool(s.value_bytes, rng);
      }()) {
  if (spec.keys == 0 || spec.keys > kMaxKeys) {
    throw std::invalid_argument("the number of keys must be in 1 .. 100000000");
  }
  // Each sequence gets its own stream so that changing one phase's length
  // does not change the keys another phase sees.
  ordered = KeySequence::in_order(spec.keys);
  Rng get_rng(seed ^ 0x1111);
  random_gets = KeySequence::uniform(spec.gets, spec.keys, get_rng);
  for (unsigned p = 0; p < spec.processes; ++p) {
    Rng proc_rng(seed ^ (0x2222 + p));
    proc_gets.push_back(KeySequence::uniform(spec.gets, spec.keys, proc_rng));
  }
  Rng mix_rng(seed ^ 0x3333);
  mix_keys = KeySequence::uniform(spec.mix_ops, spec.keys, mix_rng);
  mix_is_put.resize(spec.mix_ops);
  for (auto& op : mix_is_put) op = mix_rng.below(100) < spec.put_percent ? 1 : 0;
}

}  // namespace tcache_bench
