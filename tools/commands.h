// tools/commands.h: the subcommands of tcache-tool, one source file each.
//
// Each add_*_command() registers its subcommand and options on the top-level
// CLI11 app and returns the function that runs it once parsing succeeded.
// REQUIRES: `global` outlives the returned runner.
// A runner returns the exit status (kExitOk or kExitMiss) or throws;
// main() turns any exception into "tcache-tool: <command> failed: <reason>"
// on stderr and kExitError.
//
// Thread safety: single-threaded; the tool runs one command per process.

#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "tcache/tcache.h"

namespace tcache::tool {

// Exit statuses. Documented in tcache-tool.1: DO NOT CHANGE.
inline constexpr int kExitOk = 0;
inline constexpr int kExitMiss = 1;   // get: no such key; del: key was absent; verify: problems
inline constexpr int kExitError = 2;  // any failure, usage errors included

// Flags of the top-level app that every command honours. They may be given
// before or after the command name (the subcommands fall through to them).
struct GlobalOptions {
  // StoreOptions::allow_shared_access: accept a file writable by group or
  // others or owned by another user, and let create make one with --mode.
  bool allow_shared_access = false;
};

struct Command {
  CLI::App* app = nullptr;   // owned by the top-level app
  std::function<int()> run;  // valid after a successful parse of `app`
};

Command add_create_command(CLI::App& app, const GlobalOptions& global);
Command add_put_command(CLI::App& app, const GlobalOptions& global);
Command add_get_command(CLI::App& app, const GlobalOptions& global);
Command add_del_command(CLI::App& app, const GlobalOptions& global);
Command add_stats_command(CLI::App& app, const GlobalOptions& global);
Command add_ls_command(CLI::App& app, const GlobalOptions& global);
Command add_clear_command(CLI::App& app, const GlobalOptions& global);
Command add_purge_command(CLI::App& app, const GlobalOptions& global);
Command add_dump_command(CLI::App& app, const GlobalOptions& global);
Command add_load_command(CLI::App& app, const GlobalOptions& global);
Command add_watch_command(CLI::App& app, const GlobalOptions& global);
Command add_verify_command(CLI::App& app, const GlobalOptions& global);
Command add_compact_command(CLI::App& app, const GlobalOptions& global);

// How a KEY argument is written (get, put, del): as it is (the default),
// with the escapes `ls` prints (--escaped: \\ and \xNN), or as hex
// (--hex: what `ls --json` gives as key_hex). So every key `ls` lists,
// binary ones included, can be typed back.
struct KeyForm {
  bool escaped = false;
  bool hex = false;
};

// Adds --escaped and --hex (mutually exclusive) to `sub`, and a footer
// saying that a KEY or VALUE starting with '-' goes after '--'.
// REQUIRES: `form` outlives `sub`'s parsing.
void add_key_form_flags(CLI::App& sub, KeyForm& form);

// The key bytes that `text` stands for in `form`. Throws
// std::invalid_argument naming the bad escape or hex digit.
std::string decode_key(const std::string& text, const KeyForm& form);

// Opens an existing cache file, never creating one. Inspection commands pass
// read_only = true so that they cannot change the file. Throws tcache::Error;
// a missing file gets a message that says how to create it.
Store open_existing(const std::string& file, bool read_only, const GlobalOptions& global);

// Throws Error(io_error) saying how to create `file` if nothing is there.
void require_existing(const std::string& file);

// Parses "1048576", "64K", "64M", "1G", "1T", also "64MiB" and lower case.
// Units are powers of 1024. Returns nullopt for anything else or overflow.
std::optional<std::uint64_t> parse_size(std::string_view text);

// parse_size(text) for the option `option` (e.g. "--capacity"); throws
// std::invalid_argument saying how to write a size otherwise.
std::uint64_t size_option(std::string_view option, const std::string& text);

}  // namespace tcache::tool
