// tools/cmd_ls.cc: `tcache-tool ls FILE [--prefix P] [--limit N] [--long] [--json]`.
//
// Lists live entries (Store::for_each) in index order. Keys are printed as
// they are when printable, with C-style escapes (\xNN, \\) otherwise, so
// binary keys (the decorators' hashed keys) stay on one line. Opens the file
// read-only.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct LsArgs {
  std::string file;
  std::string prefix;
  std::uint64_t limit = 0;
  bool long_format = false;
  bool json = false;
};

std::string ttl_text(std::uint64_t expires_at_ms, std::uint64_t now) {
  if (expires_at_ms == 0) return "-";
  const std::uint64_t left = expires_at_ms > now ? expires_at_ms - now : 0;
  if (left >= 3'600'000) return fmt::format("{:.1f}h", left / 3'600'000.0);
  if (left >= 60'000) return fmt::format("{:.1f}m", left / 60'000.0);
  return fmt::format("{:.1f}s", left / 1000.0);
}

int run_ls(const LsArgs& args, const GlobalOptions& global) {
  Store store = open_existing(args.file, /*read_only=*/true, global);
  const std::uint64_t now = unix_now_ms();
  nlohmann::ordered_json entries = nlohmann::ordered_json::array();
  std::vector<Row> rows;
  std::uint64_t n = 0;
  store.for_each(args.prefix, [&](const EntryInfo& e, std::string_view) {
    const std::string key = escape_key(e.key);
    if (args.json) {
      nlohmann::ordered_json j;
      j["key"] = key;
      j["key_hex"] = hex(e.key);
      j["value_bytes"] = e.value_bytes;
      j["stored_bytes"] = e.stored_bytes;
      j["compressed"] = e.compressed;
      j["blob"] = e.blob;
      if (e.expires_at_ms == 0) {
        j["ttl_ms"] = nullptr;
      } else {
        j["ttl_ms"] = e.expires_at_ms > now ? e.expires_at_ms - now : 0;
      }
      entries.push_back(std::move(j));
    } else if (args.long_format) {
      std::string flags = e.compressed ? "lz4" : "";
      if (e.blob) flags += flags.empty() ? "blob" : ",blob";
      fmt::print("{:>10}  {:>10}  {:<8}  {:>7}  {}\n", e.value_bytes, e.stored_bytes,
                 flags.empty() ? "-" : flags, ttl_text(e.expires_at_ms, now), key);
    } else {
      fmt::print("{}\n", key);
    }
    ++n;
    return args.limit == 0 || n < args.limit;
  });
  if (args.json) print_json(stdout, entries);
  return kExitOk;
}

}  // namespace

Command add_ls_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<LsArgs>();
  CLI::App* sub = app.add_subcommand("ls",
                                     "List the keys of live entries (with --long: sizes, "
                                     "compression and TTL left)");
  sub->add_option("FILE", args->file, "Path of an existing cache file (opened read-only)")
      ->required();
  sub->add_option("--prefix", args->prefix, "Only keys that start with this");
  sub->add_option("--limit", args->limit, "List at most N entries (0 = all)");
  sub->add_flag("--long,-l", args->long_format,
                "Columns: value bytes, stored bytes, compression/blob, TTL left, key");
  sub->add_flag("--json", args->json,
                "One JSON array of {key, key_hex, value_bytes, stored_bytes, compressed, blob, "
                "ttl_ms}");
  return {sub, [args, &global] { return run_ls(*args, global); }};
}

}  // namespace tcache::tool
