// tools/cmd_create.cc: `tcache-tool create FILE [--capacity SIZE] [--mode OCTAL]`.
//
// Creates a new, empty cache file. Refuses to touch a path that already
// exists, so that a typo cannot silently reuse (or shadow) another file.

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

// Parses permission bits written in octal ("600", "0640"), at most 0777.
std::optional<std::uint32_t> parse_mode(std::string_view text) {
  if (text.empty() || text.size() > 4) return std::nullopt;
  std::uint32_t mode = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    mode = mode * 8 + static_cast<std::uint32_t>(c - '0');
  }
  if (mode > 0777) return std::nullopt;
  return mode;
}

struct CreateArgs {
  std::string file;
  std::string capacity;
  std::string mode;
  const CLI::Option* capacity_option = nullptr;  // ->count() tells whether given
  const CLI::Option* mode_option = nullptr;
};

int run_create(const CreateArgs& args, const GlobalOptions& global) {
  StoreOptions options;
  options.create_if_missing = true;
  options.allow_shared_access = global.allow_shared_access;
  if (args.capacity_option->count() > 0) {
    options.capacity_bytes = size_option("--capacity", args.capacity);
  }
  if (args.mode_option->count() > 0) {
    const auto mode = parse_mode(args.mode);
    if (!mode) {
      throw std::invalid_argument(
          fmt::format("invalid --mode '{}': give permission bits in octal, at most 0777, e.g. "
                      "0600 (owner only) or 0640 (group may read)",
                      args.mode));
    }
    options.mode = *mode;
  }

  std::error_code ec;
  const auto status = std::filesystem::symlink_status(args.file, ec);
  if (status.type() != std::filesystem::file_type::not_found) {
    if (ec) {
      throw std::runtime_error(
          fmt::format("cannot check {}: {}; check that its directory exists and is searchable",
                      args.file, ec.message()));
    }
    throw std::runtime_error(fmt::format(
        "{} already exists; delete it first to start afresh, or use it as it is", args.file));
  }

  Store store = Store::open(args.file, options);
  store.flush();
  const StoreStats stats = store.stats();
  const Row rows[] = {
      {"created", args.file},
      {"capacity_bytes", bytes_with_unit(stats.capacity_bytes)},
      {"file_bytes", bytes_with_unit(stats.file_bytes)},
      {"mode", fmt::format("{:04o}", options.mode)},
  };
  print_table(stdout, rows);
  return kExitOk;
}

}  // namespace

Command add_create_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<CreateArgs>();
  CLI::App* sub = app.add_subcommand("create", "Create a new, empty cache file");
  sub->add_option("FILE", args->file, "Path of the cache file to create (must not exist)")
      ->required();
  args->capacity_option =
      sub->add_option("--capacity", args->capacity,
                      "Largest size the file may grow to: bytes, or with a K, M, G or T suffix "
                      "(e.g. 64M, 1G); from 1M to 1T (default 1G)")
          ->type_name("SIZE");
  args->mode_option =
      sub->add_option("--mode", args->mode,
                      "Permission bits of the new file in octal, applied whatever the umask "
                      "(default 0600)")
          ->type_name("OCTAL");
  return {sub, [args, &global] { return run_create(*args, global); }};
}

}  // namespace tcache::tool
