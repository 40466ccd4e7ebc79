// tools/cmd_put.cc: `tcache-tool put FILE KEY VALUE [--ttl SECONDS] [--escaped | --hex]`.
//
// Stores one value. VALUE "-" reads the value from standard input, byte for
// byte, so binary data and values too large for the command line work.

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

// The longest TTL accepted: 100 years, far from overflowing milliseconds.
constexpr std::uint64_t kMaxTtlSeconds = 100ull * 366 * 24 * 3600;

std::string read_stdin() {
  std::string data;
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
    if (n > 0) {
      data.append(buffer, static_cast<std::size_t>(n));
    } else if (n == 0) {
      return data;
    } else if (errno != EINTR) {
      throw std::runtime_error(
          fmt::format("cannot read the value from standard input: {}; pipe or redirect the value "
                      "into the command, or pass it as an argument",
                      std::strerror(errno)));
    }
  }
}

struct PutArgs {
  std::string file;
  std::string key;
  KeyForm key_form;
  std::string value;
  std::uint64_t ttl_seconds = 0;
};

int run_put(const PutArgs& args, const GlobalOptions& global) {
  const std::string key = decode_key(args.key, args.key_form);
  Store store = open_existing(args.file, /*read_only=*/false, global);
  const std::string value = args.value == "-" ? read_stdin() : args.value;
  store.put(key, value, std::chrono::seconds(args.ttl_seconds));
  store.flush();
  return kExitOk;
}

}  // namespace

Command add_put_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<PutArgs>();
  CLI::App* sub = app.add_subcommand("put", "Store VALUE under KEY, replacing any previous value");
  sub->add_option("FILE", args->file, "Path of an existing cache file")->required();
  sub->add_option("KEY", args->key, "The key (see --escaped, --hex)")->required();
  add_key_form_flags(*sub, args->key_form);
  sub->add_option("VALUE", args->value, "The value; '-' reads it from standard input")->required();
  sub->add_option("--ttl", args->ttl_seconds,
                  "Seconds until the entry expires; 0 (the default) never expires")
      ->type_name("SECONDS")
      ->check(CLI::Range(std::uint64_t{0}, kMaxTtlSeconds));
  return {sub, [args, &global] { return run_put(*args, global); }};
}

}  // namespace tcache::tool
