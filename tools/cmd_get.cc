// tools/cmd_get.cc: `tcache-tool get FILE KEY [--escaped | --hex]`.
//
// Writes the value, exactly as stored, to standard output. Opens the file
// read-only. Exit status 1 (and nothing on stdout) when the key is absent.

#include <memory>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct GetArgs {
  std::string file;
  std::string key;
  KeyForm key_form;
};

int run_get(const GetArgs& args, const GlobalOptions& global) {
  const std::string key = decode_key(args.key, args.key_form);
  Store store = open_existing(args.file, /*read_only=*/true, global);
  std::string value;
  if (!store.get(key, value)) {
    print_note(fmt::format("get: no entry for key '{}' in {}", escape_key(key), args.file));
    return kExitMiss;
  }
  write_raw(stdout, value);
  return kExitOk;
}

}  // namespace

Command add_get_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<GetArgs>();
  CLI::App* sub = app.add_subcommand(
      "get", "Print the value stored under KEY (raw bytes); exit status 1 if it is absent");
  sub->add_option("FILE", args->file, "Path of an existing cache file (opened read-only)")
      ->required();
  sub->add_option("KEY", args->key, "The key (see --escaped, --hex)")->required();
  add_key_form_flags(*sub, args->key_form);
  return {sub, [args, &global] { return run_get(*args, global); }};
}

}  // namespace tcache::tool
