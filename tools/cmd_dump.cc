// tools/cmd_dump.cc: `tcache-tool dump FILE [-o OUT]` and
// `tcache-tool load FILE [-i IN] [--partial]`: the tool side of
// tcache::dump / tcache::load (tcache/dump.h; stream layout in
// doc/DUMP_FORMAT.md). dump opens the file read-only and writes OUT
// through a temporary file renamed into place, refusing symlinks, anything
// but regular files, and the cache file itself; load creates FILE if
// missing. Both show a progress bar when stderr is a terminal.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <ostream>
#include <streambuf>
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

// A std::streambuf that writes to a file descriptor it does not own.
class FdWriteBuf : public std::streambuf {
 public:
  explicit FdWriteBuf(int fd) : fd_(fd) { setp(buffer_, buffer_ + sizeof buffer_); }
  ~FdWriteBuf() override { sync(); }

 protected:
  int_type overflow(int_type c) override {
    if (sync() != 0) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  int sync() override {
    for (char* p = pbase(); p < pptr();) {
      const ssize_t n = ::write(fd_, p, static_cast<std::size_t>(pptr() - p));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return -1;
      p += n;
    }
    setp(buffer_, buffer_ + sizeof buffer_);
    return 0;
  }

 private:
  int fd_;
  char buffer_[1 << 16];
};

// Refuses an output path that dump must not write through: a symlink (it
// may point anywhere, /dev/null included), anything but a regular file (a
// device, a FIFO, a directory), and the cache file itself under any name
// (a hard link, "./FILE"): dumping into it would truncate the live file.
void check_output(const std::string& out, const std::string& cache_file) {
  struct stat target {};
  if (::lstat(out.c_str(), &target) != 0) {
    if (errno == ENOENT) return;  // a new file
    throw Error(Errc::io_error,
                fmt::format("cannot use {} as the output: {}", out, std::strerror(errno)));
  }
  if (S_ISLNK(target.st_mode)) {
    throw Error(Errc::invalid_option,
                fmt::format("{} is a symbolic link; dump does not write through links: name "
                            "the file it points to, or use '-o -' (or no -o) for stdout",
                            out));
  }
  if (!S_ISREG(target.st_mode)) {
    throw Error(Errc::invalid_option,
                fmt::format("{} is not a regular file; dump writes (or replaces) regular files "
                            "only: use '-o -' (or no -o) to write to stdout and redirect that",
                            out));
  }
  struct stat cache {};
  if (::stat(cache_file.c_str(), &cache) == 0 && cache.st_dev == target.st_dev &&
      cache.st_ino == target.st_ino) {
    throw Error(
        Errc::invalid_option,
        fmt::format("{} is the cache file {} itself; dump it to another file", out, cache_file));
  }
}

// Dumps `store` into `out`: into a temporary file beside it, owner-only
// (umask cannot widen it), synced, then renamed over `out`, so that `out`
// is either what it was or the whole new stream, never a partial one.
DumpResult dump_to_file(Store& store, const std::string& out, const std::string& cache_file,
                        const Progress& progress) {
  check_output(out, cache_file);
  const std::filesystem::path path(out);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : ".";
  std::string temp = (dir / ("." + path.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);  // O_EXCL, mode 0600
  if (fd < 0) {
    throw Error(Errc::io_error,
                fmt::format("cannot create a temporary file in {} for {}: {}; dump needs write "
                            "permission in the output's directory",
                            dir.string(), out, std::strerror(errno)));
  }
  // Closes and removes the temporary unless it was renamed into place.
  struct Temporary {
    std::string path;
    int fd;
    bool renamed = false;
    ~Temporary() {
      if (fd >= 0) ::close(fd);
      if (!renamed) ::unlink(path.c_str());
    }
  } temporary{temp, fd};
  DumpResult r;
  {
    FdWriteBuf buf(fd);
    std::ostream stream(&buf);
    r = dump(store, stream, progress);
  }
  const auto failed = [&](const std::string& what) {
    return Error(Errc::io_error, fmt::format("{}: {}", what, std::strerror(errno)));
  };
  if (::fsync(fd) != 0) throw failed("cannot write " + temp + " (disk full?)");
  temporary.fd = -1;
  if (::close(fd) != 0) throw failed("cannot write " + temp + " (disk full?)");
  if (::rename(temp.c_str(), out.c_str()) != 0) {
    throw failed("cannot rename " + temp + " to " + out);
  }
  temporary.renamed = true;
  return r;
}

int run_dump(const DumpArgs& args, const GlobalOptions& global) {
  Store store = open_existing(args.file, /*read_only=*/true, global);
  ProgressBar bar("dump");
  const auto progress = [&](std::uint64_t done, std::uint64_t total) { bar.update(done, total); };
  DumpResult r;
  if (args.out.empty() || args.out == "-") {
    std::ios::sync_with_stdio(false);
    r = dump(store, std::cout, progress);
  } else {
    r = dump_to_file(store, args.out, args.file, progress);
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
  sub->add_option("-o,--output", args->out,
                  "Write the stream to this regular file (replaced whole, mode 0600; never a "
                  "symlink, a device or FILE itself); '-' or none: stdout");
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
