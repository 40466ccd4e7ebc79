#include "report.h"

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmdb_system.h"

namespace tcache_bench {

std::string_view system_name(SystemId id) {
  switch (id) {
    case SystemId::tcache:
      return "tcache";
    case SystemId::lmdb:
      return "LMDB";
    case SystemId::boost_ipc:
      return "BoostIPC";
  }
  return "?";
}

std::string_view phase_json_name(Phase phase) {
  switch (phase) {
    case Phase::fill:
      return "fill";
    case Phase::fill_txn_per_put:
      return "fill_one_txn_per_put";
    case Phase::get:
      return "get";
    case Phase::get_batch:
      return "get_batch";
    case Phase::mix:
      return "get_put_mix";
    case Phase::get_forked:
      return "get_forked_1proc";
    case Phase::get_procs:
      return "get_multiprocess";
  }
  return "?";
}

namespace {

constexpr std::array<Phase, 7> kRows = {
    Phase::fill, Phase::fill_txn_per_put, Phase::get,      Phase::get_batch,
    Phase::mix,  Phase::get_forked,       Phase::get_procs};
constexpr std::array<Phase, 5> kGetRows = {Phase::get, Phase::get_batch, Phase::mix,
                                           Phase::get_forked, Phase::get_procs};

std::string row_label(Phase phase, const DataSetSpec& spec) {
  switch (phase) {
    case Phase::fill:
      return "fill, key order";
    case Phase::fill_txn_per_put:
      return "fill vs LMDB 1 txn/put";
    case Phase::get:
      return "random get";
    case Phase::get_batch:
      return fmt::format("random get, batches of {}", spec.batch);
    case Phase::mix:
      return fmt::format("{}/{} get/put mix", 100 - spec.put_percent, spec.put_percent);
    case Phase::get_forked:
      return "random get, 1 forked proc";
    case Phase::get_procs:
      return fmt::format("random get, {} procs (sum)", spec.processes);
  }
  return "?";
}

// The measurement shown in `phase`'s row for `system`, or null for "-". The
// one-transaction-per-put row compares tcache's only fill with LMDB's
// unbatched one; Boost has no such variant.
const PhaseResult* cell(const DataSetResult& d, SystemId system, Phase phase) {
  const SystemResult& s = d.of(system);
  if (!s.ran) return nullptr;
  if (phase == Phase::fill_txn_per_put) {
    if (system == SystemId::tcache) phase = Phase::fill;
    if (system == SystemId::boost_ipc) return nullptr;
  }
  auto it = s.phases.find(phase);
  return it == s.phases.end() ? nullptr : &it->second;
}

bool usable(const PhaseResult* r) { return r != nullptr && r->error.empty() && r->seconds > 0; }

std::optional<double> ratio(const DataSetResult& d, Phase phase, SystemId peer) {
  const PhaseResult* a = cell(d, SystemId::tcache, phase);
  const PhaseResult* b = cell(d, peer, phase);
  if (!usable(a) || !usable(b)) return std::nullopt;
  return a->ops_per_sec() / b->ops_per_sec();
}

std::optional<double> scaling(const DataSetResult& d, SystemId system) {
  const PhaseResult* one = cell(d, system, Phase::get_forked);
  const PhaseResult* many = cell(d, system, Phase::get_procs);
  if (!usable(one) || !usable(many)) return std::nullopt;
  return many->ops_per_sec() / one->ops_per_sec();
}

// 1234567 -> "1,234,567".
std::string grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string ops_cell(const PhaseResult* r) {
  if (r == nullptr) return "-";
  if (!r->error.empty()) return "error";
  return grouped(static_cast<std::uint64_t>(std::llround(r->ops_per_sec())));
}

std::string ratio_cell(std::optional<double> x) {
  return x ? fmt::format("{:.2f}x", *x) : std::string("-");
}

std::string hit_cell(const PhaseResult* r) {
  if (r == nullptr || !r->error.empty() || r->gets == 0) return "-";
  return fmt::format("{:.2f}%", 100.0 * r->hit_rate());
}

std::string per_entry(std::uint64_t bytes, std::uint64_t keys) {
  return fmt::format("{:.1f}", static_cast<double>(bytes) / static_cast<double>(keys));
}

std::optional<double> tcache_get_ns(const DataSetResult& d) {
  const PhaseResult* r = cell(d, SystemId::tcache, Phase::get);
  if (!usable(r)) return std::nullopt;
  return 1e9 / r->ops_per_sec();
}

void print_data_set(const DataSetResult& d) {
  const DataSetSpec& spec = d.spec;
  fmt::print("\n== data set {}: {} keys x {} B values (keys `key:%08d`, {} B) ==\n", spec.name,
             grouped(spec.keys), spec.value_bytes, kKeyBytes);
  fmt::print("   {} random gets per get phase (per process in the {}-process phase), {} mix ops\n",
             grouped(spec.gets), spec.processes, grouped(spec.mix_ops));
  if (d.of(SystemId::tcache).ran) fmt::print("   tcache:   {}\n", d.tcache_settings);
  if (d.of(SystemId::lmdb).ran) {
    fmt::print(
        "   LMDB:     {}, map size {}; fill commits {} puts per txn (plus a 1 txn/put "
        "variant);\n             a mix put is 1 txn; each get renews/resets one reused read txn; "
        "a batch shares one\n",
        LmdbSystem::kEnvFlagNames, d.lmdb_map_bytes, LmdbSystem::kFillBatch);
  }
  if (d.of(SystemId::boost_ipc).ran) {
    fmt::print(
        "   BoostIPC: managed_mapped_file of {} B holding boost::unordered_map<ipc string, ipc "
        "string>\n             under one interprocess_mutex; one lock per op, one per batch\n",
        d.boost_segment_bytes);
  }

  fmt::print("\n{:<34}{:>14}{:>14}{:>14}{:>13}{:>17}\n", "phase (ops/s)", "tcache", "LMDB",
             "BoostIPC", "tcache/LMDB", "tcache/BoostIPC");
  for (Phase phase : kRows) {
    fmt::print("{:<34}{:>14}{:>14}{:>14}{:>13}{:>17}\n", row_label(phase, spec),
               ops_cell(cell(d, SystemId::tcache, phase)), ops_cell(cell(d, SystemId::lmdb, phase)),
               ops_cell(cell(d, SystemId::boost_ipc, phase)),
               ratio_cell(ratio(d, phase, SystemId::lmdb)),
               ratio_cell(ratio(d, phase, SystemId::boost_ipc)));
  }
  fmt::print("{:<34}{:>14}{:>14}{:>14}{:>13}{:>17}\n",
             fmt::format("{}-proc / 1-proc get", spec.processes),
             ratio_cell(scaling(d, SystemId::tcache)), ratio_cell(scaling(d, SystemId::lmdb)),
             ratio_cell(scaling(d, SystemId::boost_ipc)), "", "");

  fmt::print("\n{:<34}{:>14}{:>14}{:>14}\n", "hit rate", "tcache", "LMDB", "BoostIPC");
  for (Phase phase : kGetRows) {
    fmt::print("{:<34}{:>14}{:>14}{:>14}\n", row_label(phase, spec),
               hit_cell(cell(d, SystemId::tcache, phase)), hit_cell(cell(d, SystemId::lmdb, phase)),
               hit_cell(cell(d, SystemId::boost_ipc, phase)));
  }
  if (d.tcache_stats) {
    fmt::print(
        "   tcache is a lossy cache: a get may miss because the entry was evicted. After the "
        "fill:\n   entries={} evictions={} grow_failures={} file_bytes={} index_slots={} "
        "page_bytes={} pages_used={}/{}\n",
        d.tcache_stats->entries, d.tcache_stats->evictions, d.tcache_stats->grow_failures,
        d.tcache_stats->file_bytes, d.tcache_stats->index_slots, d.tcache_stats->page_bytes,
        d.tcache_stats->pages_used, d.tcache_stats->pages_total);
  }
  for (SystemId id : kAllSystems) {
    const SystemResult& s = d.of(id);
    if (s.ran && s.verify_samples > 0) {
      fmt::print("   {}: of {} values sampled after the fill, {} missing (evicted), {} wrong{}\n",
                 system_name(id), s.verify_samples, s.verify_missing, s.verify_wrong,
                 s.verify_wrong > 0 ? "  <-- BUG" : "");
    }
    for (const auto& [phase, r] : s.phases) {
      if (r.wrong > 0) {
        fmt::print("   {}: {} values of the wrong length in '{}'  <-- CHECK\n", system_name(id),
                   r.wrong, row_label(phase, spec));
      }
    }
  }

  // CPU share: whether the measured processes had their cores to themselves.
  bool disturbed = false;
  fmt::print("\n{:<34}{:>14}{:>14}{:>14}\n", "CPU share (cpu / (wall x procs))", "tcache", "LMDB",
             "BoostIPC");
  for (Phase phase : kRows) {
    if (phase == Phase::fill_txn_per_put) continue;
    std::array<std::string, 3> cells = {"-", "-", "-"};
    for (SystemId id : kAllSystems) {
      const PhaseResult* r = cell(d, id, phase);
      if (!usable(r)) continue;
      cells[static_cast<int>(id)] = fmt::format("{:.0f}%", 100 * r->cpu_share());
      disturbed = disturbed || r->cpu_share() < 0.9;
    }
    fmt::print("{:<34}{:>14}{:>14}{:>14}\n", row_label(phase, spec), cells[0], cells[1], cells[2]);
  }
  if (disturbed) {
    fmt::print(
        "   below 90% somewhere: a measured process waited (for a CPU taken by other load, for\n"
        "   page faults or I/O, or asleep on a lock); those rates are lower than on an idle "
        "machine.\n");
  }

  // Bytes per entry; "over k+v" subtracts the key and value bytes themselves.
  fmt::print("\nfile, bytes per entry (key+value = {} B)\n", spec.entry_bytes());
  fmt::print("{:<12}{:>12}{:>14}{:>18}{:>20}{:>16}\n", "", "st_size", "st_blocks*512",
             "over k+v (size)", "over k+v (blocks)", "self-reported");
  for (SystemId id : kAllSystems) {
    const SystemResult& s = d.of(id);
    if (!s.ran || !s.file.measured) continue;
    const auto keys = static_cast<double>(spec.keys);
    const auto kv = static_cast<double>(spec.entry_bytes());
    fmt::print("{:<12}{:>12}{:>14}{:>18.1f}{:>20.1f}{:>16}\n", system_name(id),
               per_entry(s.file.st_size, spec.keys), per_entry(s.file.allocated, spec.keys),
               static_cast<double>(s.file.st_size) / keys - kv,
               static_cast<double>(s.file.allocated) / keys - kv,
               per_entry(s.file.reported_used, spec.keys));
  }
  fmt::print(
      "   st_size of LMDB (WRITEMAP) and BoostIPC is their preallocated, sparse map size; "
      "st_blocks is what\n   the disk holds. Self-reported: tcache stats().bytes (entry "
      "chunks), LMDB used pages, Boost\n   segment minus free memory.\n");

  if (d.chase) {
    fmt::print(
        "\nlatency reference: one dependent load over {:.1f} MiB ({}), 64 B slots in random "
        "cyclic order, 4 KiB pages: {:.1f} ns (mean of {} loads)\n",
        static_cast<double>(d.chase->region_bytes) / (1 << 20), d.chase->region_source,
        d.chase->ns_per_load, grouped(d.chase->loads));
    if (auto ns = tcache_get_ns(d)) {
      fmt::print("tcache random get: {:.1f} ns = {:.2f} x (2 dependent loads)\n", *ns,
                 *ns / (2 * d.chase->ns_per_load));
    }
  }

  for (SystemId id : kAllSystems) {
    const SystemResult& s = d.of(id);
    if (!s.error.empty()) fmt::print("!! {}: {}\n", system_name(id), s.error);
  }
}

nlohmann::json phase_json(const PhaseResult& r) {
  nlohmann::json j = {{"ops", r.ops},
                      {"seconds", r.seconds},
                      {"ops_per_sec", r.ops_per_sec()},
                      {"cpu_seconds", r.cpu_seconds},
                      {"processes", r.processes},
                      {"cpu_share", r.cpu_share()},
                      {"gets", r.gets},
                      {"hits", r.hits},
                      {"wrong_length", r.wrong}};
  if (r.gets > 0) j["hit_rate"] = r.hit_rate();
  if (!r.error.empty()) j["error"] = r.error;
  return j;
}

nlohmann::json optional_json(std::optional<double> x) {
  return x ? nlohmann::json(*x) : nlohmann::json(nullptr);
}

nlohmann::json data_set_json(const DataSetResult& d) {
  const DataSetSpec& spec = d.spec;
  nlohmann::json j;
  j["name"] = spec.name;
  j["keys"] = spec.keys;
  j["key_bytes"] = kKeyBytes;
  j["value_bytes"] = spec.value_bytes;
  j["gets"] = spec.gets;
  j["mix_ops"] = spec.mix_ops;
  j["put_percent"] = spec.put_percent;
  j["batch"] = spec.batch;
  j["processes"] = spec.processes;
  j["settings"] = {{"tcache", d.tcache_settings},
                   {"lmdb",
                    {{"env_flags", LmdbSystem::kEnvFlagNames},
                     {"map_bytes", d.lmdb_map_bytes},
                     {"fill_puts_per_txn", LmdbSystem::kFillBatch}}},
                   {"boost_ipc", {{"segment_bytes", d.boost_segment_bytes}}}};
  for (SystemId id : kAllSystems) {
    const SystemResult& s = d.of(id);
    if (!s.ran) continue;
    nlohmann::json sj;
    for (const auto& [phase, r] : s.phases) sj["phases"][phase_json_name(phase)] = phase_json(r);
    if (s.file.measured) {
      sj["file"] = {{"st_size", s.file.st_size},
                    {"allocated_bytes", s.file.allocated},
                    {"reported_used_bytes", s.file.reported_used},
                    {"st_size_per_entry", static_cast<double>(s.file.st_size) / spec.keys},
                    {"allocated_per_entry", static_cast<double>(s.file.allocated) / spec.keys},
                    {"overhead_per_entry",
                     static_cast<double>(s.file.allocated) / spec.keys - spec.entry_bytes()}};
    }
    sj["verify"] = {
        {"samples", s.verify_samples}, {"missing", s.verify_missing}, {"wrong", s.verify_wrong}};
    sj["scaling_multi_over_single_process"] = optional_json(scaling(d, id));
    if (!s.error.empty()) sj["error"] = s.error;
    j["systems"][system_name(id)] = sj;
  }
  for (Phase phase : kRows) {
    j["ratios"][phase_json_name(phase)] = {
        {"tcache_over_lmdb", optional_json(ratio(d, phase, SystemId::lmdb))},
        {"tcache_over_boost_ipc", optional_json(ratio(d, phase, SystemId::boost_ipc))}};
  }
  if (d.chase) {
    j["pointer_chase"] = {{"region_bytes", d.chase->region_bytes},
                          {"region_source", d.chase->region_source},
                          {"loads", d.chase->loads},
                          {"ns_per_load", d.chase->ns_per_load}};
    if (auto ns = tcache_get_ns(d)) {
      j["tcache_get_ns"] = *ns;
      j["tcache_get_over_two_dependent_loads"] = *ns / (2 * d.chase->ns_per_load);
    }
  }
  if (d.tcache_stats) {
    const tcache::StoreStats& t = *d.tcache_stats;
    j["tcache_stats_after_fill"] = {{"entries", t.entries},
                                    {"bytes", t.bytes},
                                    {"capacity_bytes", t.capacity_bytes},
                                    {"file_bytes", t.file_bytes},
                                    {"index_slots", t.index_slots},
                                    {"page_bytes", t.page_bytes},
                                    {"pages_total", t.pages_total},
                                    {"pages_used", t.pages_used},
                                    {"evictions", t.evictions},
                                    {"grow_failures", t.grow_failures}};
  }
  return j;
}

}  // namespace

void print_tables(const RunResult& run) {
  fmt::print("tcache-bench: one run, one machine ({} CPUs), files in {} ({})\n", run.cpus,
             run.directory, run.filesystem);
  fmt::print("built with {}; {}; Boost {}; seed {}\n", run.compiler, run.lmdb_version,
             run.boost_version, run.seed);
  fmt::print(
      "ops/s from steady_clock over a fixed number of ops; warm-up (one get of every key) "
      "not counted;\nevery get copies the value into a reused std::string. Ratios > 1 favour "
      "tcache.\n");
  for (const auto& d : run.data_sets) print_data_set(d);
  fmt::print(
      "\nload average before: {}; after: {} (of which this run's own processes are a part)\n",
      run.load_before, run.load_after);
}

void print_json(const RunResult& run) {
  nlohmann::json j;
  j["machine"] = {{"cpus", run.cpus},
                  {"load_average_before", run.load_before},
                  {"load_average_after", run.load_after},
                  {"directory", run.directory},
                  {"filesystem", run.filesystem},
                  {"compiler", run.compiler},
                  {"lmdb_version", run.lmdb_version},
                  {"boost_version", run.boost_version},
                  {"seed", run.seed}};
  j["data_sets"] = nlohmann::json::array();
  for (const auto& d : run.data_sets) j["data_sets"].push_back(data_set_json(d));
  fmt::print("{}\n", j.dump(2));
}

}  // namespace tcache_bench
