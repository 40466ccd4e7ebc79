#include "pointer_chase.h"

#include <sys/mman.h>

#include <chrono>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include "workload.h"

namespace tcache_bench {

namespace {

constexpr std::uint64_t kSlotBytes = 64;  // one cache line per slot

// Where the chase's last pointer goes, so the compiler must keep the loop.
void* volatile chase_sink = nullptr;

// An anonymous mapping that unmaps itself.
class Region {
 public:
  explicit Region(std::uint64_t bytes) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<char*>(p);
#ifdef MADV_NOHUGEPAGE
    // A cache file is mapped through the page cache in 4 KiB pages; a buffer
    // on 2 MiB transparent huge pages would take far fewer TLB misses and
    // make the reference look cheaper than the loads tcache really does.
    ::madvise(base_, bytes, MADV_NOHUGEPAGE);
#endif
  }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;
  ~Region() { ::munmap(base_, bytes_); }
  char* base() const { return base_; }

 private:
  std::uint64_t bytes_;
  char* base_ = nullptr;
};

}  // namespace

ChaseResult measure_dependent_load(std::uint64_t region_bytes, std::uint64_t loads,
                                   std::uint64_t seed) {
  const std::uint64_t slots = region_bytes / kSlotBytes;
  if (slots < 2 || slots > (1ull << 32)) throw std::invalid_argument("pointer chase: bad region");
  Region region(slots * kSlotBytes);

  // Sattolo's shuffle yields a permutation that is one single cycle, so the
  // chase visits every slot before repeating and no short loop stays cached.
  std::vector<std::uint32_t> next(slots);
  for (std::uint64_t i = 0; i < slots; ++i) next[i] = static_cast<std::uint32_t>(i);
  Rng rng(seed);
  for (std::uint64_t i = slots - 1; i > 0; --i) {
    std::swap(next[i], next[rng.below(static_cast<std::uint32_t>(i))]);
  }
  // Writing a pointer into every slot also touches every page, so the timed
  // chase takes no page faults.
  char* base = region.base();
  for (std::uint64_t i = 0; i < slots; ++i) {
    *reinterpret_cast<void**>(base + i * kSlotBytes) = base + next[i] * kSlotBytes;
  }
  std::vector<std::uint32_t>().swap(next);

  void* p = base;
  // Untimed warm-up: fills the TLB and caches to their steady state.
  for (std::uint64_t i = 0; i < loads / 4; ++i) p = *static_cast<void**>(p);
  const auto t0 = std::chrono::steady_clock::now();
  // Each load's address is the previous load's result: the CPU cannot
  // overlap them, so the time per iteration is the latency of one load.
  for (std::uint64_t i = 0; i < loads; ++i) p = *static_cast<void**>(p);
  const auto t1 = std::chrono::steady_clock::now();
  chase_sink = p;

  ChaseResult r;
  r.region_bytes = slots * kSlotBytes;
  r.loads = loads;
  r.ns_per_load =
      std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(loads);
  return r;
}

}  // namespace tcache_bench
