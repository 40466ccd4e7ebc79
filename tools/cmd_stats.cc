// tools/cmd_stats.cc: `tcache-tool stats FILE [--json]`.
//
// Prints the file's geometry and the counters summed over every process that
// has used it. Opens the file read-only. With --json, the output is one JSON
// object keyed by StoreStats field names; a failure is reported on stderr as
// usual and, for scripts, as {"error": {...}} on stdout.

#include <memory>
#include <string>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct StatsArgs {
  std::string file;
  bool json = false;
};

int run_stats(const StatsArgs& args, const GlobalOptions& global) {
  StoreStats stats;
  try {
    stats = open_existing(args.file, /*read_only=*/true, global).stats();
  } catch (const Error& e) {
    if (args.json) print_json(stdout, error_to_json(e));
    throw;
  }
  if (args.json) {
    print_json(stdout, stats_to_json(stats));
  } else {
    print_stats(stdout, args.file, stats);
  }
  return kExitOk;
}

}  // namespace

Command add_stats_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<StatsArgs>();
  CLI::App* sub = app.add_subcommand("stats", "Show a cache file's size, entries and counters");
  sub->add_option("FILE", args->file, "Path of an existing cache file (opened read-only)")
      ->required();
  sub->add_flag("--json", args->json, "Print one JSON object keyed by StoreStats field names");
  return {sub, [args, &global] { return run_stats(*args, global); }};
}

}  // namespace tcache::tool
