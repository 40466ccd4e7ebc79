// bench/compact_bench.cc: tcache-compact-bench. Compaction, dump and load of
// one large cache file, against `cp` of the same file, in one run on one
// machine (README "tcache-tool"; the target is compaction within 3x of cp).
//
// It fills a file to --file-bytes with --value-bytes random values (so LZ4
// gains nothing and is not tried), erases --erase-percent of the entries
// (what compaction is for: it then has less to copy than cp), closes the
// file, and then times, each on a fresh byte copy of that file made with
// `cp` beforehand (untimed), so that every operation starts from the same
// bytes in the page cache (read once after the copy):
//
//   cp                `cp FILE COPY` (the coreutils binary, forked)
//   cp + fsync        the same, then fsync(COPY): what compaction with
//                     sync (the default) does on top of copying
//   compact           tcache::compact, sync = true (the default)
//   compact, no sync  tcache::compact, sync = false
//   dump              tcache::dump to a file
//   load              tcache::load of that dump into a new file
//
// Caches are warm (the file was just written); nothing drops them, since
// that would disturb everything else on the machine. Uses the public API
// only.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "tcache/tcache.h"

namespace {

namespace fs = std::filesystem;

struct Args {
  std::uint64_t file_bytes = 1ull << 30;
  std::uint32_t value_bytes = 256;
  int erase_percent = 25;
  std::string dir;
  bool keep = false;
  int repeat = 3;
};

[[noreturn]] void usage(int status) {
  std::fprintf(status == 0 ? stdout : stderr,
               "usage: tcache-compact-bench [options]\n"
               "\n"
               "Times compaction, dump and load of one cache file against cp of it.\n"
               "\n"
               "  --file-bytes=N      size to fill the file to (default 1073741824 = 1 GiB)\n"
               "  --value-bytes=B     value size, random bytes (default 256); keys are 12 B\n"
               "  --erase-percent=P   entries erased after the fill (default 25)\n"
               "  --dir=DIR           parent of the work directory (default $TMPDIR or /tmp)\n"
               "  --keep              leave the work directory in place\n"
               "  --repeat=N          time cp and compact N times, report the median (default 3)\n"
               "  --help              this text\n");
  std::exit(status);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&](std::string_view name) -> const char* {
      if (arg.substr(0, name.size()) == name && arg.size() > name.size() &&
          arg[name.size()] == '=') {
        return argv[i] + name.size() + 1;
      }
      return nullptr;
    };
    if (arg == "--help") usage(0);
    if (arg == "--keep") {
      a.keep = true;
    } else if (const char* v = value("--file-bytes")) {
      a.file_bytes = std::strtoull(v, nullptr, 10);
    } else if (const char* v = value("--value-bytes")) {
      a.value_bytes = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (const char* v = value("--erase-percent")) {
      a.erase_percent = std::atoi(v);
    } else if (const char* v = value("--dir")) {
      a.dir = v;
    } else if (const char* v = value("--repeat")) {
      a.repeat = std::atoi(v);
    } else {
      std::fprintf(stderr, "tcache-compact-bench: unknown option '%s'\n", argv[i]);
      usage(2);
    }
  }
  if (a.file_bytes < (16ull << 20) || a.value_bytes == 0 || a.erase_percent < 0 ||
      a.erase_percent > 99 || a.repeat < 1) {
    std::fprintf(stderr, "tcache-compact-bench: out-of-range option\n");
    usage(2);
  }
  return a;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Runs `cp from to` (the system's cp); exits on failure.
void run_cp(const fs::path& from, const fs::path& to) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execlp("cp", "cp", from.c_str(), to.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "tcache-compact-bench: cp %s %s failed\n", from.c_str(), to.c_str());
    std::exit(1);
  }
}

void fsync_file(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    std::fprintf(stderr, "tcache-compact-bench: fsync %s: %s\n", file.c_str(),
                 std::strerror(errno));
    std::exit(1);
  }
  ::close(fd);
}

std::uint64_t size_of(const fs::path& file) { return fs::file_size(file); }

// Reads the whole file once, so that it is in the page cache like the
// original (cp may copy inside the kernel without caching the copy).
void warm(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<char> buf(1 << 20);
  while (fd >= 0 && ::read(fd, buf.data(), buf.size()) > 0) {
  }
  if (fd >= 0) ::close(fd);
}

struct Row {
  std::string what;
  double seconds = 0;
  std::uint64_t bytes_in = 0;   // bytes of the file it started from
  std::uint64_t bytes_out = 0;  // bytes of what it wrote
};

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  fs::path parent = args.dir;
  if (parent.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    parent = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::string pattern = (parent / "tcache-compact-bench.XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "tcache-compact-bench: mkdtemp in %s: %s\n", parent.c_str(),
                 std::strerror(errno));
    return 1;
  }
  const fs::path dir = pattern;
  const fs::path original = dir / "original.tcache";
  const fs::path work = dir / "work.tcache";

  // Fill: capacity a quarter above the target, so that the fill never evicts.
  tcache::StoreOptions opt;
  opt.capacity_bytes = args.file_bytes + args.file_bytes / 4;
  opt.expected_entry_bytes = 12 + args.value_bytes;
  std::uint64_t entries = 0;
  std::uint64_t erased = 0;
  double fill_seconds = 0;
  {
    tcache::Store s = tcache::Store::open(original, opt);
    std::mt19937_64 rng(42);
    std::string value(args.value_bytes, '\0');
    char key[32];
    const auto start = std::chrono::steady_clock::now();
    while (s.stats().file_bytes < args.file_bytes) {
      for (int i = 0; i < 65536; ++i, ++entries) {
        for (std::size_t j = 0; j < value.size(); j += 8) {
          const std::uint64_t r = rng();
          std::memcpy(value.data() + j, &r, std::min<std::size_t>(8, value.size() - j));
        }
        std::snprintf(key, sizeof key, "key:%08" PRIu64, entries);
        s.put(key, value);
      }
    }
    fill_seconds = seconds_since(start);
    for (std::uint64_t i = 0; i < entries; ++i) {
      if (static_cast<int>(rng() % 100) >= args.erase_percent) continue;
      std::snprintf(key, sizeof key, "key:%08" PRIu64, i);
      erased += s.erase(key) ? 1 : 0;
    }
    const tcache::StoreStats st = s.stats();
    std::printf("tcache-compact-bench: %s, %" PRIu64 " entries of 12 + %u B put in %.1f s, %" PRIu64
                " erased; file %" PRIu64 " B (capacity %" PRIu64 " B, %" PRIu64 " live entries)\n",
                original.c_str(), entries, args.value_bytes, fill_seconds, erased, st.file_bytes,
                st.capacity_bytes, st.entries);
  }
  const std::uint64_t original_bytes = size_of(original);

  std::vector<Row> rows;
  const auto fresh_copy = [&] {
    fs::remove(work);
    run_cp(original, work);
    warm(work);
  };
  {
    std::vector<double> plain, synced;
    for (int rep = 0; rep < args.repeat; ++rep) {
      fs::remove(work);
      auto start = std::chrono::steady_clock::now();
      run_cp(original, work);
      plain.push_back(seconds_since(start));
      fs::remove(work);
      start = std::chrono::steady_clock::now();
      run_cp(original, work);
      fsync_file(work);
      synced.push_back(seconds_since(start));
    }
    rows.push_back({"cp", median(plain), original_bytes, size_of(work)});
    rows.push_back({"cp + fsync", median(synced), original_bytes, size_of(work)});
  }
  warm(original);
  for (const bool sync : {true, false}) {
    std::vector<double> times, releases;
    tcache::CompactResult r;
    for (int rep = 0; rep < args.repeat; ++rep) {
      fresh_copy();
      // Another user of the file, as when a cache in use is compacted: the
      // old file is deleted (its page cache and blocks freed) when its last
      // user closes it, here after the timing, and timed on its own.
      std::optional<tcache::Store> user{tcache::Store::open(work, tcache::StoreOptions{})};
      tcache::CompactOptions co;
      co.sync = sync;
      const auto start = std::chrono::steady_clock::now();
      // When each phase began (the copy at `start`).
      double phase_at[4] = {0, 0, 0, 0};
      co.progress = [&](const tcache::CompactProgress& p) {
        double& at = phase_at[static_cast<int>(p.phase)];
        if (at == 0) at = seconds_since(start);
      };
      r = tcache::compact(work, co);
      const double secs = seconds_since(start);
      times.push_back(secs);
      const auto release_start = std::chrono::steady_clock::now();
      user.reset();
      releases.push_back(seconds_since(release_start));
      std::printf(
          "  compact%s phases: copy %.3f s, drain %.3f s, final copy %.3f s, sync + rename "
          "%.3f s; old file released by its last user in %.3f s\n",
          sync ? "" : " (no sync)", phase_at[1] - phase_at[0], phase_at[2] - phase_at[1],
          phase_at[3] - phase_at[2], secs - phase_at[3], releases.back());
    }
    rows.push_back({sync ? "compact" : "compact, no sync", median(times), r.file_bytes_before,
                    r.file_bytes_after});
    std::printf("  compact%s: %" PRIu64 " entries, %" PRIu64 " dropped, %" PRIu64
                " evicted, writers paused %lld ms\n",
                sync ? "" : " (no sync)", r.entries, r.dropped, r.evicted,
                static_cast<long long>(r.writers_paused.count()));
  }
  const fs::path dump_file = dir / "dump.tcdump";
  {
    fresh_copy();
    tcache::StoreOptions ro;
    ro.read_only = true;
    tcache::Store s = tcache::Store::open(work, ro);
    const auto start = std::chrono::steady_clock::now();
    {
      std::ofstream out(dump_file, std::ios::binary | std::ios::trunc);
      tcache::dump(s, out);
    }
    rows.push_back({"dump", seconds_since(start), original_bytes, size_of(dump_file)});
  }
  {
    const fs::path loaded = dir / "loaded.tcache";
    tcache::StoreOptions lo;
    lo.capacity_bytes = opt.capacity_bytes;
    lo.expected_entry_bytes = opt.expected_entry_bytes;
    tcache::Store s = tcache::Store::open(loaded, lo);
    const auto start = std::chrono::steady_clock::now();
    {
      std::ifstream in(dump_file, std::ios::binary);
      tcache::load(s, in);
    }
    rows.push_back({"load", seconds_since(start), size_of(dump_file), s.stats().file_bytes});
  }

  const double cp = rows[0].seconds;
  std::printf("\n%-18s %10s %12s %12s %10s %10s\n", "operation", "seconds", "MiB in", "MiB out",
              "MiB/s in", "x cp");
  for (const Row& r : rows) {
    std::printf("%-18s %10.3f %12.1f %12.1f %10.1f %9.2fx\n", r.what.c_str(), r.seconds,
                static_cast<double>(r.bytes_in) / (1 << 20),
                static_cast<double>(r.bytes_out) / (1 << 20),
                static_cast<double>(r.bytes_in) / (1 << 20) / r.seconds, r.seconds / cp);
  }
  std::printf(
      "\n(x cp: time relative to cp of the same file in this run; caches warm; cp and compact: "
      "median of %d)\n",
      args.repeat);
  if (!args.keep) fs::remove_all(dir);
  return 0;
}
