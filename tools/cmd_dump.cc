// tools/cmd_dump.cc: `tcache-tool dump FILE [-o OUT]` and
// `tcache-tool load FILE [-i IN] [--partial]`: the tool side of
// tcache::dump / tcache::load (tcache/dump.h; stream layout in
// lib/dump/DUMP_FORMAT.md). dump opens the file read-only; load creates it
// if missing. Both show a progress bar when stderr is a terminal.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct DumpArgs {
  std::string file;
  std::string out;  // "" or "-" = stdout
};

struct LoadArgs {
  std::string file;
  std::string in;  // "" or "-" = stdin
  bool partial = false;
};

int run_dump(const DumpArgs& args, const GlobalOptions& global) {
  Store store = open_existing(args.file, /*read_only=*/true, global);
  ProgressBar bar("dump");
  const auto progress = [&](std::uint64_t done, std::uint64_t total) { bar.update(done, total); };
  DumpResult r;
  if (args.out.empty() || args.out == "-") {
    std::ios::sync_with_stdio(false);
    r = dump(store, std::cout, progress);
  } else {
    // Owner-only, like the cache file it copies (umask does not widen it).
    const int fd = ::open(args.out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
      throw Error(Errc::io_error,
                  fmt::format("cannot create {}: {}", args.out, std::strerror(errno)));
    }
    ::fchmod(fd, 0600);
    ::close(fd);
    std::ofstream out(args.out, std::ios::binary | std::ios::trunc);
    if (!out) throw Error(Errc::io_error, fmt::format("cannot create {}", args.out));
    r = dump(store, out, progress);
  }
  bar.done();
  print_note(fmt::format("dumped {} entries ({})", r.entries, human_bytes(r.bytes)));
  return kExitOk;
}

int run_load(const LoadArgs& args, const GlobalOptions& global) {
  StoreOptions options;
  options.allow_shared_access = global.allow_shared_access;
  Store store = Store::open(args.file, options);
  ProgressBar bar("load");
  LoadOptions lo;
  lo.partial = args.partial;
  lo.progress = [&](std::uint64_t done, std::uint64_t total) { bar.update(done, total); };
  DumpResult r;
  if (args.in.empty() || args.in == "-") {
    r = load(store, std::cin, lo);
  } else {
    std::ifstream in(args.in, std::ios::binary);
    if (!in) throw Error(Errc::io_error, fmt::format("cannot open {}", args.in));
    r = load(store, in, lo);
  }
  bar.done();
  store.flush();
  print_note(fmt::format("loaded {} entries ({})", r.entries, human_bytes(r.bytes)));
  return kExitOk;
}

}  // namespace

Command add_dump_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<DumpArgs>();
  CLI::App* sub = app.add_subcommand(
      "dump", "Write every live entry (key, value, TTL left) as a portable, checksummed stream");
  sub->add_option("FILE", args->file, "Path of an existing cache file (opened read-only)")
      ->required();
  sub->add_option("-o,--output", args->out, "Write the stream here (default: stdout)");
  return {sub, [args, &global] { return run_dump(*args, global); }};
}

Command add_load_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<LoadArgs>();
  CLI::App* sub = app.add_subcommand(
      "load",
      "Put every entry of a dump stream into FILE (created if missing); a damaged "
      "stream loads nothing unless --partial");
  sub->add_option("FILE", args->file, "Path of the cache file to load into")->required();
  sub->add_option("-i,--input", args->in, "Read the stream from here (default: stdin)");
  sub->add_flag("--partial", args->partial,
                "Load the entries before the first damaged record instead of nothing");
  return {sub, [args, &global] { return run_load(*args, global); }};
}

}  // namespace tcache::tool
