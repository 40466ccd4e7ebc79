// bench/lmdb_system.h: LMDB behind the benchmark's system interface (see
// phases.h), configured the way an LMDB user tuning for speed would.
//
// Thread safety: one LmdbSystem per process and thread. It keeps one read
// transaction that every get renews and resets, so the reader-table slot is
// taken once, not per get; LMDB ties that slot to the opening thread.
//
// Fork: an LmdbSystem must not cross fork(); the child opens its own (LMDB's
// own caveat). The benchmark closes the parent's before forking.

#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <lmdb.h>

#include "workload.h"

namespace tcache_bench {

class LmdbSystem {
 public:
  static constexpr std::string_view kName = "LMDB";
  // No fsync per commit (NOSYNC, NOMETASYNC) and writes through the shared
  // mapping (WRITEMAP): LMDB's fastest settings, the closest to a cache that
  // does not promise durability. NOSUBDIR keeps the data in one file.
  static constexpr unsigned kEnvFlags = MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOMETASYNC | MDB_WRITEMAP;
  static constexpr std::string_view kEnvFlagNames =
      "MDB_NOSUBDIR|MDB_NOSYNC|MDB_NOMETASYNC|MDB_WRITEMAP";
  // Puts per write transaction in the batched fill.
  static constexpr std::size_t kFillBatch = 1000;

  // A fresh database. `fill_txn_puts` is how many puts fill() commits per
  // write transaction (kFillBatch, or 1 for the one-transaction-per-put
  // variant).
  static LmdbSystem create(const std::filesystem::path& file, const DataSetSpec& spec,
                           std::size_t fill_txn_puts = kFillBatch);
  static LmdbSystem open(const std::filesystem::path& file, const DataSetSpec& spec);

  LmdbSystem(LmdbSystem&& other) noexcept;
  LmdbSystem& operator=(LmdbSystem&&) = delete;
  LmdbSystem(const LmdbSystem&) = delete;
  LmdbSystem& operator=(const LmdbSystem&) = delete;
  ~LmdbSystem();

  void fill(const KeySequence& keys, const ValuePool& values);
  // One write transaction per put: a cache's put stands alone, and a mix of
  // gets and puts cannot hold a write transaction open across the gets.
  void put(std::string_view key, std::string_view value);
  bool get(std::string_view key, std::string& value);
  // The whole batch under one read transaction: LMDB's natural batched read.
  void get_batch(std::span<const std::string_view> keys, std::span<std::string> values,
                 std::span<bool> found);
  // Writes dirty pages back (mdb_env_sync with force).
  void sync();
  // Pages in use (last page number + 1) times the page size.
  std::uint64_t reported_used_bytes() const;

  // The data file and the lock file LMDB keeps beside it; only the data file
  // counts toward bytes per entry (the lock file is a fixed-size reader table).
  static std::vector<std::filesystem::path> files(const std::filesystem::path& file);
  static std::size_t map_bytes(const DataSetSpec& spec);

 private:
  LmdbSystem(const std::filesystem::path& file, const DataSetSpec& spec, bool create,
             std::size_t fill_txn_puts);

  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* read_txn_ = nullptr;  // reset between gets, renewed by each
  std::size_t fill_txn_puts_ = kFillBatch;
};

}  // namespace tcache_bench
