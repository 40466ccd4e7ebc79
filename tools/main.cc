// tools/main.cc: tcache-tool's entry point. Parses the command line with
// CLI11, runs the one subcommand given, and maps failures to exit statuses
// (see commands.h and tcache-tool.1).

#include <cctype>
#include <csignal>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <limits>
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

void require_existing(const std::string& file) {
  std::error_code ec;
  // symlink_status: a dangling symlink is not "missing"; open() refuses it.
  const auto status = std::filesystem::symlink_status(file, ec);
  if (status.type() == std::filesystem::file_type::not_found) {
    throw Error(
        Errc::io_error,
        fmt::format("{} does not exist; create it with 'tcache-tool create {}'", file, file));
  }
}

Store open_existing(const std::string& file, bool read_only, const GlobalOptions& global) {
  require_existing(file);
  StoreOptions options;
  options.read_only = read_only;
  options.create_if_missing = false;
  options.allow_shared_access = global.allow_shared_access;
  return Store::open(file, options);
}

// Parses "1048576", "64K", "64M", "1G", "1T", also "64MiB" and lower case.
// Units are powers of 1024. Returns nullopt for anything else or overflow.
std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::size_t digits = 0;
  std::uint64_t number = 0;
  for (; digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])); ++digits) {
    const std::uint64_t digit = static_cast<std::uint64_t>(text[digits] - '0');
    if (number > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) return std::nullopt;
    number = number * 10 + digit;
  }
  if (digits == 0) return std::nullopt;
  std::string_view suffix = text.substr(digits);
  if (suffix.empty()) return number;
  unsigned shift = 0;
  switch (std::toupper(static_cast<unsigned char>(suffix[0]))) {
    case 'K':
      shift = 10;
      break;
    case 'M':
      shift = 20;
      break;
    case 'G':
      shift = 30;
      break;
    case 'T':
      shift = 40;
      break;
    default:
      return std::nullopt;
  }
  suffix.remove_prefix(1);
  if (!suffix.empty() && suffix != "iB") return std::nullopt;
  if (number > (std::numeric_limits<std::uint64_t>::max() >> shift)) return std::nullopt;
  return number << shift;
}

std::uint64_t size_option(std::string_view option, const std::string& text) {
  const auto size = parse_size(text);
  if (!size) {
    throw std::invalid_argument(fmt::format(
        "invalid {} '{}': give a number of bytes with an optional K, M, G or T suffix (powers of "
        "1024), e.g. 64M or 1G",
        option, text));
  }
  return *size;
}

void add_key_form_flags(CLI::App& sub, KeyForm& form) {
  auto* escaped = sub.add_flag("--escaped", form.escaped,
                               "KEY is written as 'ls' prints it: \\\\ for a backslash, \\xNN "
                               "for any byte (e.g. 'line1\\x0aline2')");
  sub.add_flag("--hex", form.hex, "KEY is hex, as 'ls --json' prints it in key_hex")
      ->excludes(escaped);
  sub.footer(
      fmt::format("A KEY or VALUE that starts with '-' goes after '--', e.g. "
                  "'tcache-tool {} FILE -- -k{}'.",
                  sub.get_name(), sub.get_name() == "put" ? " v" : ""));
}

std::string decode_key(const std::string& text, const KeyForm& form) {
  const auto digit = [&](char c, std::size_t at) -> unsigned {
    if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<unsigned>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<unsigned>(c - 'A' + 10);
    throw std::invalid_argument(
        fmt::format("'{}' at offset {} of the key is not a hex digit", c, at));
  };
  std::string key;
  if (form.hex) {
    if (text.size() % 2 != 0) {
      throw std::invalid_argument(
          "a --hex key needs two hex digits per byte; this one has an odd count");
    }
    for (std::size_t i = 0; i < text.size(); i += 2) {
      key.push_back(static_cast<char>(digit(text[i], i) << 4 | digit(text[i + 1], i + 1)));
    }
    return key;
  }
  if (!form.escaped) return text;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      key.push_back(text[i]);
    } else if (i + 1 < text.size() && text[i + 1] == '\\') {
      key.push_back('\\');
      ++i;
    } else if (i + 3 < text.size() && text[i + 1] == 'x') {
      key.push_back(static_cast<char>(digit(text[i + 2], i + 2) << 4 | digit(text[i + 3], i + 3)));
      i += 3;
    } else {
      throw std::invalid_argument(fmt::format(
          "bad escape at offset {} of the --escaped key: write \\\\ for a backslash and \\xNN "
          "(two hex digits) for any byte",
          i));
    }
  }
  return key;
}

namespace {

int run(int argc, char** argv) {
  // Past a file-size limit (ulimit -f), writes fail with EFBIG and the
  // command reports it as a full disk, rather than the kernel killing the
  // tool with SIGXFSZ halfway through a file.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"Inspect and edit tcache cache files.", std::string(kProgram)};
  app.set_version_flag("--version", fmt::format("{} {} (cache file format {})", kProgram,
                                                kVersionString, kFormatVersion));
  app.require_subcommand(1);
  app.fallthrough();  // global flags may follow the command name
  GlobalOptions global;
  app.add_flag("--allow-shared-access", global.allow_shared_access,
               "Accept a cache file writable by group or others or owned by another user "
               "(refused by default), and let create --mode make one");
  app.footer(
      "Exit status: 0 success, 1 key not found (get, del), 2 error.\n"
      "Run 'tcache-tool COMMAND --help' for a command's options; see tcache-tool(1).");

  std::vector<Command> commands = {add_create_command(app, global), add_stats_command(app, global),
                                   add_ls_command(app, global),     add_get_command(app, global),
                                   add_put_command(app, global),    add_del_command(app, global),
                                   add_clear_command(app, global),  add_purge_command(app, global),
                                   add_dump_command(app, global),   add_load_command(app, global),
                                   add_watch_command(app, global),  add_verify_command(app, global),
                                   add_compact_command(app, global)};

  // CLI11 would call an unknown command "A subcommand is required".
  const auto command_names = [&] {
    std::string names;
    for (const Command& command : commands) {
      names += (names.empty() ? "" : ", ") + command.app->get_name();
    }
    return names;
  };
  const auto is_command = [&](std::string_view word) {
    for (const Command& command : commands) {
      if (command.app->get_name() == word) return true;
    }
    return false;
  };
  if (argc < 2) {
    print_note("no command given; run 'tcache-tool --help' for usage\n");
    fmt::print(stderr, "{}", app.help());
    return kExitError;
  }
  // The first word that is not a flag names the command (the top-level
  // options are all flags, so none takes a value).
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    if (!is_command(argv[i])) {
      print_note(fmt::format("unknown command '{}'; the commands are {} (see 'tcache-tool --help')",
                             argv[i], command_names()));
      return kExitError;
    }
    break;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string help = "tcache-tool --help";
    std::string hint;
    for (const CLI::App* sub : app.get_subcommands()) {
      help = fmt::format("tcache-tool {} --help", sub->get_name());
      // `put FILE -k v`: a key or value that looks like an option.
      const std::string command = sub->get_name();
      const bool takes_key = command == "get" || command == "put" || command == "del";
      for (int i = 1; i < argc && takes_key && hint.empty(); ++i) {
        const std::string word(argv[i]);
        if (word.size() < 2 || word[0] != '-' || word == "--") continue;
        const std::string name = word.substr(0, word.find('='));
        if (sub->get_option_no_throw(name) == nullptr && app.get_option_no_throw(name) == nullptr) {
          hint = fmt::format(
              "A KEY or VALUE that starts with '-' goes after '--', e.g. 'tcache-tool {} FILE -- "
              "{}'.\n",
              sub->get_name(), word);
        }
      }
    }
    fmt::print(stderr, "{}: {}\n{}Run '{}' for usage.\n", kProgram, e.what(), hint, help);
    return kExitError;
  }

  for (const Command& command : commands) {
    if (!command.app->parsed()) continue;
    const std::string name = command.app->get_name();
    try {
      return command.run();
    } catch (const Error& e) {
      print_failure(name, describe(e));
    } catch (const std::exception& e) {
      print_failure(name, e.what());
    }
    return kExitError;
  }
  // Only flags were given (parse() requires a command otherwise).
  print_note("no command given; run 'tcache-tool --help' for the list");
  return kExitError;
}

}  // namespace
}  // namespace tcache::tool

int main(int argc, char** argv) { return tcache::tool::run(argc, argv); }
