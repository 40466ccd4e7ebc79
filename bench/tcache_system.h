// bench/tcache_system.h: tcache::Store behind the benchmark's system interface
// (see phases.h for what every system provides).
//
// Thread safety: as tcache::Store; the benchmark uses one instance per process.

#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "tcache/tcache.h"
#include "workload.h"

namespace tcache_bench {

class TcacheSystem {
 public:
  static constexpr std::string_view kName = "tcache";

  // Sizing as the benchmark's brief asks: room for every entry with 64 bytes
  // of slack each and 30% headroom, so that a correct store never has to
  // evict during the benchmark; any eviction shows up as a hit rate below
  // 100%, not as a silently smaller working set.
  static tcache::StoreOptions options_for(const DataSetSpec& spec) {
    tcache::StoreOptions options;
    const double want =
        static_cast<double>(spec.keys) * static_cast<double>(spec.entry_bytes() + 64) * 1.3;
    options.capacity_bytes =
        std::clamp<std::uint64_t>(static_cast<std::uint64_t>(want), 1ull << 20, 1ull << 40);
    options.expected_entry_bytes = std::clamp<std::uint32_t>(
        static_cast<std::uint32_t>(spec.entry_bytes() + 24), 16, 1u << 20);
    if (spec.tcache_compress_threshold) {
      options.compress_threshold = *spec.tcache_compress_threshold;
    }
    return options;
  }

  static std::string describe(const DataSetSpec& spec) {
    const auto o = options_for(spec);
    return fmt::format(
        "capacity_bytes={} expected_entry_bytes={} page_bytes={}{} compress_threshold={} "
        "default_ttl=0",
        o.capacity_bytes, o.expected_entry_bytes, o.page_bytes,
        o.page_bytes == 0 ? " (library's choice)" : "", o.compress_threshold);
  }

  static TcacheSystem create(const std::filesystem::path& file, const DataSetSpec& spec) {
    std::filesystem::remove(file);
    return TcacheSystem(tcache::Store::open(file, options_for(spec)));
  }
  static TcacheSystem open(const std::filesystem::path& file, const DataSetSpec& spec) {
    auto options = options_for(spec);
    options.create_if_missing = false;
    return TcacheSystem(tcache::Store::open(file, options));
  }

  // tcache has no bulk-load path: a fill is one put per key.
  void fill(const KeySequence& keys, const ValuePool& values) {
    for (std::size_t i = 0; i < keys.size(); ++i) store_.put(keys[i], values.for_key(i));
  }
  void put(std::string_view key, std::string_view value) { store_.put(key, value); }
  bool get(std::string_view key, std::string& value) { return store_.get(key, value); }
  // Arrays of bool, not std::vector<bool>: get_many wants a span<bool>.
  void get_batch(std::span<const std::string_view> keys, std::span<std::string> values,
                 std::span<bool> found) {
    store_.get_many(keys, values, found);
  }
  // Writes dirty pages back (untimed; see run_system in store_bench.cc).
  void sync() { store_.flush(); }
  // tcache's own idea of how many bytes its entries occupy (chunk bytes).
  std::uint64_t reported_used_bytes() const { return store_.stats().bytes; }
  tcache::StoreStats stats() const { return store_.stats(); }

  static std::vector<std::filesystem::path> files(const std::filesystem::path& file) {
    return {file};
  }

 private:
  explicit TcacheSystem(tcache::Store store) : store_(std::move(store)) {}
  tcache::Store store_;
};

}  // namespace tcache_bench
