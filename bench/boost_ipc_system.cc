#include "boost_ipc_system.h"

#include <functional>
#include <mutex>
#include <stdexcept>

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/managed_mapped_file.hpp>
#include <boost/interprocess/sync/interprocess_mutex.hpp>
#include <boost/interprocess/sync/scoped_lock.hpp>
#include <boost/unordered_map.hpp>

namespace tcache_bench {

namespace bip = boost::interprocess;

namespace {

using SegmentManager = bip::managed_mapped_file::segment_manager;
using CharAllocator = bip::allocator<char, SegmentManager>;
using IpcString = bip::basic_string<char, std::char_traits<char>, CharAllocator>;

std::string_view view(const IpcString& s) { return {s.data(), s.size()}; }
std::string_view view(std::string_view s) { return s; }

// Transparent hash and equality let find() take a std::string_view. Without
// them every lookup would have to build an IpcString, which allocates inside
// the shared segment: a cost no real user would accept for a get.
struct Hash {
  using is_transparent = void;
  template <class S>
  std::size_t operator()(const S& s) const {
    return std::hash<std::string_view>{}(view(s));
  }
};
struct Equal {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return view(a) == view(b);
  }
};

using Entry = std::pair<const IpcString, IpcString>;
using Map =
    boost::unordered_map<IpcString, IpcString, Hash, Equal, bip::allocator<Entry, SegmentManager>>;

// The one object in the segment: the map and the lock that guards it.
struct Shared {
  explicit Shared(SegmentManager* segment, std::size_t buckets)
      : map(buckets, Hash{}, Equal{}, Map::allocator_type(segment)) {}
  bip::interprocess_mutex mutex;
  Map map;
};

constexpr const char* kObjectName = "tcache-bench-map";

}  // namespace

struct BoostIpcSystem::Impl {
  bip::managed_mapped_file segment;
  Shared* shared = nullptr;
};

std::size_t BoostIpcSystem::segment_bytes(const DataSetSpec& spec) {
  // Per entry: a hash node, a bucket, two strings (the key fits in the
  // string's inline buffer, the value does not) and the allocator's headers;
  // 192 bytes covers these, 50% headroom covers fragmentation. The segment
  // cannot grow while other processes map it, so it is sized up front; the
  // file is sparse, so unused space costs address space, not disk.
  const std::size_t bytes = spec.keys * (spec.entry_bytes() + 192) * 3 / 2 + (64u << 20);
  return (bytes + 4095) / 4096 * 4096;
}

BoostIpcSystem::BoostIpcSystem(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BoostIpcSystem::BoostIpcSystem(BoostIpcSystem&&) noexcept = default;
BoostIpcSystem::~BoostIpcSystem() = default;

BoostIpcSystem BoostIpcSystem::create(const std::filesystem::path& file, const DataSetSpec& spec) {
  std::filesystem::remove(file);
  auto impl = std::make_unique<Impl>();
  impl->segment = bip::managed_mapped_file(bip::create_only, file.c_str(), segment_bytes(spec));
  // Buckets for every key up front, so the fill does not measure rehashing
  // (tcache sizes its index at creation too).
  impl->shared = impl->segment.construct<Shared>(kObjectName)(impl->segment.get_segment_manager(),
                                                              static_cast<std::size_t>(spec.keys));
  return BoostIpcSystem(std::move(impl));
}

BoostIpcSystem BoostIpcSystem::open(const std::filesystem::path& file, const DataSetSpec&) {
  auto impl = std::make_unique<Impl>();
  impl->segment = bip::managed_mapped_file(bip::open_only, file.c_str());
  impl->shared = impl->segment.find<Shared>(kObjectName).first;
  if (impl->shared == nullptr) throw std::runtime_error("boost: map not found in " + file.string());
  return BoostIpcSystem(std::move(impl));
}

void BoostIpcSystem::fill(const KeySequence& keys, const ValuePool& values) {
  for (std::size_t i = 0; i < keys.size(); ++i) put(keys[i], values.for_key(i));
}

void BoostIpcSystem::put(std::string_view key, std::string_view value) {
  Shared& s = *impl_->shared;
  bip::scoped_lock<bip::interprocess_mutex> lock(s.mutex);
  auto it = s.map.find(key);
  if (it != s.map.end()) {
    // Same-size replacement reuses the string's buffer: no allocation.
    it->second.assign(value.data(), value.size());
    return;
  }
  CharAllocator alloc(impl_->segment.get_segment_manager());
  s.map.emplace(IpcString(key.data(), key.size(), alloc),
                IpcString(value.data(), value.size(), alloc));
}

bool BoostIpcSystem::get(std::string_view key, std::string& value) {
  Shared& s = *impl_->shared;
  bip::scoped_lock<bip::interprocess_mutex> lock(s.mutex);
  auto it = s.map.find(key);
  if (it == s.map.end()) return false;
  value.assign(it->second.data(), it->second.size());
  return true;
}

void BoostIpcSystem::get_batch(std::span<const std::string_view> keys,
                               std::span<std::string> values, std::span<bool> found) {
  Shared& s = *impl_->shared;
  bip::scoped_lock<bip::interprocess_mutex> lock(s.mutex);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto it = s.map.find(keys[i]);
    found[i] = it != s.map.end();
    if (found[i]) values[i].assign(it->second.data(), it->second.size());
  }
}

void BoostIpcSystem::sync() {
  if (!impl_->segment.flush()) throw std::runtime_error("boost: flush of the segment failed");
}

std::uint64_t BoostIpcSystem::reported_used_bytes() const {
  return impl_->segment.get_size() - impl_->segment.get_free_memory();
}

}  // namespace tcache_bench
