// tools/cmd_del.cc: `tcache-tool del FILE KEY [--escaped | --hex]`.
//
// Removes one entry. Exit status 1 when there was nothing to remove.

#include <memory>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct DelArgs {
  std::string file;
  std::string key;
  KeyForm key_form;
};

int run_del(const DelArgs& args, const GlobalOptions& global) {
  const std::string key = decode_key(args.key, args.key_form);
  Store store = open_existing(args.file, /*read_only=*/false, global);
  if (!store.erase(key)) {
    print_note(fmt::format("del: no entry for key '{}' in {}", escape_key(key), args.file));
    return kExitMiss;
  }
  store.flush();
  return kExitOk;
}

}  // namespace

Command add_del_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<DelArgs>();
  CLI::App* sub =
      app.add_subcommand("del", "Remove the entry stored under KEY; exit status 1 if it is absent");
  sub->add_option("FILE", args->file, "Path of an existing cache file")->required();
  sub->add_option("KEY", args->key, "The key (see --escaped, --hex)")->required();
  add_key_form_flags(*sub, args->key_form);
  return {sub, [args, &global] { return run_del(*args, global); }};
}

}  // namespace tcache::tool
