// bench/boost_ipc_system.h: the "Boost.Interprocess map" peer behind the
// benchmark's system interface (see phases.h): a boost::unordered_map of
// interprocess strings living in a managed_mapped_file, guarded by one
// interprocess_mutex in the same file. This is what a C++ programmer gets by
// following the Boost.Interprocess documentation to share a map between
// processes, so it is the baseline a lock-free design has to beat.
//
// Thread safety: every operation takes the file's mutex, so any number of
// threads and processes may use the map; they serialise on that one lock.
//
// Fork: the mapping must not cross fork(); the child opens the file itself.

#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "workload.h"

namespace tcache_bench {

class BoostIpcSystem {
 public:
  static constexpr std::string_view kName = "BoostIPC";

  static BoostIpcSystem create(const std::filesystem::path& file, const DataSetSpec& spec);
  static BoostIpcSystem open(const std::filesystem::path& file, const DataSetSpec& spec);

  BoostIpcSystem(BoostIpcSystem&&) noexcept;
  BoostIpcSystem& operator=(BoostIpcSystem&&) = delete;
  ~BoostIpcSystem();

  // One lock per put, as a shared cache would do it.
  void fill(const KeySequence& keys, const ValuePool& values);
  void put(std::string_view key, std::string_view value);
  bool get(std::string_view key, std::string& value);
  // The whole batch under one lock acquisition.
  void get_batch(std::span<const std::string_view> keys, std::span<std::string> values,
                 std::span<bool> found);
  // Writes dirty pages back (msync of the whole segment).
  void sync();
  // Segment size minus the allocator's free memory.
  std::uint64_t reported_used_bytes() const;

  static std::vector<std::filesystem::path> files(const std::filesystem::path& file) {
    return {file};
  }
  static std::size_t segment_bytes(const DataSetSpec& spec);

 private:
  struct Impl;
  explicit BoostIpcSystem(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tcache_bench
