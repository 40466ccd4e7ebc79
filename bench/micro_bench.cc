// bench/micro_bench.cc: Google Benchmark loops for single tcache operations,
// for profiling one call in isolation. Comparisons with other systems live in
// tcache-bench (store_bench.cc), which runs them side by side.
//
// The store is created once per benchmark in a private temporary directory
// and filled before timing; each iteration is one call.

#include <stdlib.h>  // mkdtemp

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "tcache/tcache.h"

namespace {

constexpr std::uint64_t kKeys = 100'000;

std::string key_of(std::uint64_t i) { return fmt::format("key:{:08d}", i); }

// A filled store in its own temporary directory, removed afterwards.
class Fixture {
 public:
  explicit Fixture(std::size_t value_bytes) : value_(value_bytes, 'v') {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/tcache-micro-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    tcache::StoreOptions options;
    options.capacity_bytes = kKeys * (12 + value_bytes + 64) * 13 / 10 + (1u << 20);
    options.expected_entry_bytes = static_cast<std::uint32_t>(12 + value_bytes + 24);
    store_ = std::make_unique<tcache::Store>(tcache::Store::open(dir_ / "micro.tc", options));
    for (std::uint64_t i = 0; i < kKeys; ++i) keys_.push_back(key_of(i));
    for (const auto& k : keys_) store_->put(k, value_);
  }
  ~Fixture() {
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  tcache::Store& store() { return *store_; }
  const std::string& key(std::uint64_t i) const { return keys_[i % kKeys]; }
  const std::string& value() const { return value_; }

 private:
  std::filesystem::path dir_;
  std::string value_;
  std::vector<std::string> keys_;
  std::unique_ptr<tcache::Store> store_;
};

// A fixed stride through the keys instead of a random generator, so the
// loop costs nothing but the call; 7919 is prime, so every key is visited.
constexpr std::uint64_t kStride = 7919;

void BM_GetInto(benchmark::State& state) {
  Fixture f(static_cast<std::size_t>(state.range(0)));
  std::string value;
  std::uint64_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(f.store().get(f.key(i += kStride), value));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetInto)->Arg(100)->Arg(4096);

void BM_GetOptional(benchmark::State& state) {
  Fixture f(static_cast<std::size_t>(state.range(0)));
  std::uint64_t i = 0;
  for (auto _ : state) {
    auto v = f.store().get(f.key(i += kStride));
    benchmark::DoNotOptimize(v);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GetOptional)->Arg(100);

void BM_PutReplace(benchmark::State& state) {
  Fixture f(static_cast<std::size_t>(state.range(0)));
  std::uint64_t i = 0;
  for (auto _ : state) f.store().put(f.key(i += kStride), f.value());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PutReplace)->Arg(100)->Arg(4096);

}  // namespace

BENCHMARK_MAIN();
