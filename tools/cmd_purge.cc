// tools/cmd_purge.cc: `tcache-tool purge FILE` removes expired entries now.

#include <memory>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct PurgeArgs {
  std::string file;
  bool json = false;
};

int run_purge(const PurgeArgs& args, const GlobalOptions& global) {
  Store store = open_existing(args.file, /*read_only=*/false, global);
  const std::uint64_t n = store.purge_expired();
  store.flush();
  if (args.json) {
    print_json(stdout, {{"purged", n}});
  } else {
    fmt::print("purged {} expired entries from {}\n", n, args.file);
  }
  return kExitOk;
}

}  // namespace

Command add_purge_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<PurgeArgs>();
  CLI::App* sub = app.add_subcommand("purge", "Remove expired entries now");
  sub->add_option("FILE", args->file, "Path of an existing cache file")->required();
  sub->add_flag("--json", args->json, "Print {\"purged\": N}");
  return {sub, [args, &global] { return run_purge(*args, global); }};
}

}  // namespace tcache::tool
