// bench/results.h: plain records of what one benchmark run measured, filled
// in by store_bench.cc and printed by report.cc (as a table or as JSON).
//
// Thread safety: plain values; no sharing.

#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tcache/store.h"
#include "workload.h"

namespace tcache_bench {

// One timed loop.
struct PhaseResult {
  std::uint64_t ops = 0;    // operations in the timed loop
  double seconds = 0;       // steady_clock time of the loop
  double cpu_seconds = 0;   // CPU time the measuring processes got meanwhile
  unsigned processes = 1;   // processes that ran the loop at once
  std::uint64_t gets = 0;   // of ops, how many were gets
  std::uint64_t hits = 0;   // gets that found their key
  std::uint64_t wrong = 0;  // hits whose value had the wrong length (should be 0)
  std::string error;        // set when the loop could not run

  double ops_per_sec() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  double hit_rate() const { return gets > 0 ? static_cast<double>(hits) / gets : 0; }
  // Below 1 when other work on the machine took CPU from the measured
  // processes (or they slept in the kernel): the rate is then understated.
  double cpu_share() const { return seconds > 0 ? cpu_seconds / (seconds * processes) : 0; }
};

// Table rows, in the order they are printed. DO NOT reorder without checking
// report.cc's labels and JSON names.
enum class Phase {
  fill,              // key order; LMDB commits kFillBatch puts per transaction
  fill_txn_per_put,  // key order; LMDB commits every put (tcache's fill repeated)
  get,               // uniform random gets, one process
  get_batch,         // the same sequence in batches (tcache: get_many)
  mix,               // 90/10 get/put
  get_forked,        // uniform random gets by one forked process (scaling baseline)
  get_procs,         // uniform random gets by several processes at once
};

enum class SystemId { tcache = 0, lmdb = 1, boost_ipc = 2 };
inline constexpr std::array<SystemId, 3> kAllSystems = {SystemId::tcache, SystemId::lmdb,
                                                        SystemId::boost_ipc};

// Bytes of one system's data file after the fill.
struct FileUsage {
  bool measured = false;
  std::uint64_t st_size = 0;        // apparent size (may be preallocated, sparse)
  std::uint64_t allocated = 0;      // st_blocks * 512: what the disk holds
  std::uint64_t reported_used = 0;  // the system's own count of bytes in use
};

struct SystemResult {
  bool ran = false;
  std::map<Phase, PhaseResult> phases;
  FileUsage file;
  std::uint64_t verify_samples = 0;  // values compared byte for byte after the fill
  std::uint64_t verify_missing = 0;  // of those, not found (evicted: allowed for a cache)
  std::uint64_t verify_wrong = 0;    // of those, found with different bytes (a bug)
  std::string error;                 // the first failure; later phases were skipped
};

// The reference: a chain of dependent loads over a buffer of `region_bytes`.
struct ChaseResult {
  std::string region_source;  // what the region's size was taken from
  std::uint64_t region_bytes = 0;
  std::uint64_t loads = 0;
  double ns_per_load = 0;
};

struct DataSetResult {
  DataSetSpec spec;
  std::array<SystemResult, 3> systems;  // indexed by SystemId
  std::optional<ChaseResult> chase;
  std::optional<tcache::StoreStats> tcache_stats;  // right after the fill
  std::string tcache_settings;
  std::uint64_t lmdb_map_bytes = 0;
  std::uint64_t boost_segment_bytes = 0;

  SystemResult& of(SystemId id) { return systems[static_cast<int>(id)]; }
  const SystemResult& of(SystemId id) const { return systems[static_cast<int>(id)]; }
};

struct RunResult {
  std::string directory;   // where the files lived (removed afterwards)
  std::string filesystem;  // its file system type, e.g. "ext4" or "tmpfs"
  std::uint64_t seed = 0;
  unsigned cpus = 0;
  std::string load_before;  // /proc/loadavg's 1/5/15-minute averages at the start
  std::string load_after;   // and at the end of the run
  std::string compiler;
  std::string lmdb_version;
  std::string boost_version;
  std::vector<DataSetResult> data_sets;
};

std::string_view system_name(SystemId id);
std::string_view phase_json_name(Phase phase);

}  // namespace tcache_bench
