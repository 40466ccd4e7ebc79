// tools/cmd_clear.cc: `tcache-tool clear FILE [--yes]` removes every entry.
//
// On a terminal it asks first; without one (a script) --yes is required, so
// a pipeline cannot empty a cache by accident.

#include <unistd.h>

#include <iostream>
#include <memory>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct ClearArgs {
  std::string file;
  bool yes = false;
};

int run_clear(const ClearArgs& args, const GlobalOptions& global) {
  if (!args.yes) {
    if (::isatty(STDIN_FILENO) == 0) {
      throw Error(Errc::invalid_option,
                  "refusing to clear without a terminal to confirm on; pass --yes");
    }
    fmt::print(stderr, "Remove every entry of {}? [y/N] ", args.file);
    std::fflush(stderr);
    std::string answer;
    std::getline(std::cin, answer);
    if (answer != "y" && answer != "Y" && answer != "yes") {
      print_note("clear: not confirmed; nothing removed");
      return kExitError;
    }
  }
  Store store = open_existing(args.file, /*read_only=*/false, global);
  const std::uint64_t before = store.stats().entries;
  store.clear();
  store.flush();
  fmt::print("cleared {} ({} entries)\n", args.file, before);
  return kExitOk;
}

}  // namespace

Command add_clear_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<ClearArgs>();
  CLI::App* sub = app.add_subcommand(
      "clear", "Remove every entry (asks on a terminal; --yes is required otherwise)");
  sub->add_option("FILE", args->file, "Path of an existing cache file")->required();
  sub->add_flag("--yes,-y", args->yes, "Do not ask");
  return {sub, [args, &global] { return run_clear(*args, global); }};
}

}  // namespace tcache::tool
