// tools/cmd_stats.cc: `tcache-tool stats FILE [--json]`.
//
// Prints the file's geometry, the counters summed over every process that
// has used it, each size class's occupancy and the attached processes. Opens
// the file read-only. With --json, the output is one JSON object keyed by
// StoreStats field names plus "classes" and "processes" arrays; a failure is
// reported on stderr as usual and, for scripts, as {"error": {...}} on
// stdout. With --prometheus, the text exposition format.

#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct StatsArgs {
  std::string file;
  bool json = false;
  bool prometheus = false;
};

int run_stats(const StatsArgs& args, const GlobalOptions& global) {
  StoreStats stats;
  std::vector<ClassStats> classes;
  std::vector<ProcessInfo> processes;
  try {
    const Store store = open_existing(args.file, /*read_only=*/true, global);
    stats = store.stats();
    classes = store.class_stats();
    processes = store.processes();
  } catch (const Error& e) {
    if (args.json) print_json(stdout, error_to_json(e));
    throw;
  }
  if (args.json) {
    nlohmann::ordered_json j = stats_to_json(stats);
    j["classes"] = classes_to_json(classes);
    j["processes"] = processes_to_json(processes);
    print_json(stdout, j);
  } else if (args.prometheus) {
    write_raw(stdout, prometheus_text(args.file, stats, classes));
  } else {
    print_stats(stdout, args.file, stats);
    print_classes(stdout, classes);
    print_processes(stdout, processes);
  }
  return kExitOk;
}

}  // namespace

Command add_stats_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<StatsArgs>();
  CLI::App* sub = app.add_subcommand("stats", "Show a cache file's size, entries and counters");
  sub->add_option("FILE", args->file, "Path of an existing cache file (opened read-only)")
      ->required();
  auto* json = sub->add_flag(
      "--json", args->json,
      "Print one JSON object keyed by StoreStats field names, plus classes and processes");
  sub->add_flag("--prometheus", args->prometheus,
                "Print the Prometheus text exposition format (tcache_* metrics)")
      ->excludes(json);
  return {sub, [args, &global] { return run_stats(*args, global); }};
}

}  // namespace tcache::tool
