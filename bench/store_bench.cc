// bench/store_bench.cc: tcache-bench, one program that runs the same workload
// against tcache, LMDB and a Boost.Interprocess map in one run on one machine
// and prints ops/s and ratios (see bench/README.md for how to read them).
//
// Systems run one after another, never at the same time, so that each has the
// machine to itself; every system's files are created fresh in a private
// temporary directory, which is removed at the end.

#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <lmdb.h>
#include <boost/version.hpp>

#include "boost_ipc_system.h"
#include "lmdb_system.h"
#include "phases.h"
#include "pointer_chase.h"
#include "report.h"
#include "results.h"
#include "tcache_system.h"
#include "workload.h"

namespace tcache_bench {
namespace {

namespace fs = std::filesystem;

struct Options {
  std::uint64_t keys = 1'000'000;
  std::size_t value_bytes = 100;
  std::uint64_t big_keys = 100'000;
  std::size_t big_value_bytes = 4096;
  std::uint64_t gets = 2'000'000;
  std::optional<std::uint64_t> mix_ops;  // default: as many as gets
  unsigned put_percent = 10;
  std::size_t batch = 32;
  unsigned processes = 2;
  std::uint64_t chase_loads = 5'000'000;
  std::uint64_t verify_samples = 10'000;
  std::uint64_t seed = 42;
  std::optional<std::uint32_t> tcache_compress_threshold;
  bool json = false;
  bool quiet = false;
  std::string dir;
  std::vector<SystemId> systems = {kAllSystems.begin(), kAllSystems.end()};
};

constexpr std::string_view kUsage = R"(usage: tcache-bench [options]

Runs one workload against tcache, LMDB and a Boost.Interprocess map, in this
process and in forked ones, and prints ops/s per system and the ratios.

data sets (a count of 0 skips that data set):
  --keys=N              keys of the small-value set          (default 1000000)
  --value-bytes=B       value size of the small-value set    (default 100)
  --big-keys=N          keys of the large-value set          (default 100000)
  --big-value-bytes=B   value size of the large-value set    (default 4096)
phases:
  --gets=N              random gets per get phase and process (default 2000000)
  --mix-ops=N           operations of the get/put mix        (default: --gets)
  --put-percent=P       puts in the mix, percent             (default 10)
  --batch=N             keys per batched get                 (default 32)
  --procs=N             processes of the concurrent get phase (default 2)
  --chase-loads=N       dependent loads of the latency reference (default 5000000)
  --verify-samples=N    values compared byte for byte after each fill (default 10000)
other:
  --systems=LIST        comma-separated subset of tcache,lmdb,boost (default all)
  --dir=DIR             parent of the temporary directory (default $TMPDIR or /tmp)
    --seed=N              workload seed (default 42)
  --tcache-compress-threshold=B   tcache's StoreOptions::compress_threshold
                        (default: the library's; values are random, so LZ4
                        only costs time; 0 turns it off)
  --json                print JSON instead of tables
  --quiet               no progress lines on stderr
  --help                this text
)";

std::uint64_t parse_count(std::string_view name, std::string_view text) {
  std::uint64_t v = 0;
  if (text.empty()) throw std::invalid_argument(fmt::format("{} needs a number", name));
  for (char c : text) {
    if (c == '_' || c == ',') continue;  // allow 1_000_000 and 1,000,000
    if (c < '0' || c > '9')
      throw std::invalid_argument(fmt::format("{}: not a number: {}", name, text));
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::string_view value;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg != "--json" && arg != "--quiet" && arg != "--help" && i + 1 < argc) {
      value = argv[++i];  // "--keys 1000" as well as "--keys=1000"
    }
    auto count = [&] { return parse_count(name, value); };
    if (name == "--help" || name == "-h") {
      fmt::print("{}", kUsage);
      std::exit(0);
    } else if (name == "--keys") {
      o.keys = count();
    } else if (name == "--value-bytes") {
      o.value_bytes = count();
    } else if (name == "--big-keys") {
      o.big_keys = count();
    } else if (name == "--big-value-bytes") {
      o.big_value_bytes = count();
    } else if (name == "--gets") {
      o.gets = count();
    } else if (name == "--mix-ops") {
      o.mix_ops = count();
    } else if (name == "--put-percent") {
      o.put_percent = static_cast<unsigned>(count());
    } else if (name == "--batch") {
      o.batch = count();
    } else if (name == "--procs") {
      o.processes = static_cast<unsigned>(count());
    } else if (name == "--chase-loads") {
      o.chase_loads = count();
    } else if (name == "--verify-samples") {
      o.verify_samples = count();
    } else if (name == "--seed") {
      o.seed = count();
    } else if (name == "--tcache-compress-threshold") {
      o.tcache_compress_threshold = static_cast<std::uint32_t>(count());
    } else if (name == "--dir") {
      o.dir = std::string(value);
    } else if (name == "--json") {
      o.json = true;
    } else if (name == "--quiet") {
      o.quiet = true;
    } else if (name == "--systems") {
      o.systems.clear();
      std::string_view rest = value;
      while (!rest.empty()) {
        auto comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        if (item == "tcache") {
          o.systems.push_back(SystemId::tcache);
        } else if (item == "lmdb") {
          o.systems.push_back(SystemId::lmdb);
        } else if (item == "boost") {
          o.systems.push_back(SystemId::boost_ipc);
        } else {
          throw std::invalid_argument(fmt::format("--systems: unknown system '{}'", item));
        }
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
    } else {
      throw std::invalid_argument(fmt::format("unknown option '{}' (try --help)", arg));
    }
  }
  if (o.batch == 0) throw std::invalid_argument("--batch must be at least 1");
  if (o.processes == 0) throw std::invalid_argument("--procs must be at least 1");
  if (o.put_percent > 100) throw std::invalid_argument("--put-percent must be 0..100");
  if (o.value_bytes == 0 || o.big_value_bytes == 0) {
    throw std::invalid_argument("value sizes must be at least 1 byte");
  }
  return o;
}

bool selected(const Options& o, SystemId id) {
  for (SystemId s : o.systems) {
    if (s == id) return true;
  }
  return false;
}

// A private directory for the run's files, removed with everything in it when
// the run ends, however it ends (short of a signal).
class TempDir {
 public:
  explicit TempDir(const std::string& parent) {
    std::string base = parent;
    if (base.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
    std::string pattern = (fs::path(base) / "tcache-bench-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw std::runtime_error(
          fmt::format("cannot create a directory in {}: {}", base, std::strerror(errno)));
    }
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string filesystem_type(const fs::path& dir) {
  struct statfs s;
  if (::statfs(dir.c_str(), &s) != 0) return "unknown";
  switch (static_cast<unsigned long>(s.f_type)) {
    case 0xEF53:
      return "ext4";
    case 0x01021994:
      return "tmpfs";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x794C7630:
      return "overlayfs";
    default:
      return fmt::format("f_type 0x{:x}", static_cast<unsigned long>(s.f_type));
  }
}

// The first three fields of /proc/loadavg, or "unknown".
std::string load_average() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return "unknown";
  double one = 0, five = 0, fifteen = 0;
  const int n = std::fscanf(f, "%lf %lf %lf", &one, &five, &fifteen);
  std::fclose(f);
  return n == 3 ? fmt::format("{:.2f} {:.2f} {:.2f}", one, five, fifteen) : "unknown";
}

FileUsage measure_file(const fs::path& file, std::uint64_t reported_used) {
  struct stat st;
  if (::stat(file.c_str(), &st) != 0) {
    throw std::runtime_error(fmt::format("stat {}: {}", file.string(), std::strerror(errno)));
  }
  FileUsage u;
  u.measured = true;
  u.st_size = static_cast<std::uint64_t>(st.st_size);
  u.allocated = static_cast<std::uint64_t>(st.st_blocks) * 512;
  u.reported_used = reported_used;
  return u;
}

class Progress {
 public:
  explicit Progress(bool quiet) : quiet_(quiet) {}
  template <class... Args>
  void operator()(fmt::format_string<Args...> format, Args&&... args) const {
    if (quiet_) return;
    fmt::print(stderr, "tcache-bench: {}\n", fmt::format(format, std::forward<Args>(args)...));
    std::fflush(stderr);
  }

 private:
  bool quiet_;
};

// Runs every phase for one system on a fresh file, in this order: fill, file
// size, untimed verification, sync, warm-up, random gets, batched gets, mix,
// sync, and (after closing this process's handle) the forked gets, first by
// one process and then by several. A failure marks the phase that failed and
// skips the rest for this system only.
//
// The syncs are untimed and there so that the kernel's writeback of pages
// dirtied by one phase does not land in the next one: writeback write-protects
// the dirty pages of a shared mapping and so costs page faults and TLB
// flushes to whichever phase happens to be running when it starts.
template <class S>
void run_system(SystemId id, const fs::path& file, const DataSet& data, const Options& options,
                DataSetResult& out, const Progress& progress,
                const std::function<void(S&)>& after_fill = {}) {
  SystemResult& result = out.of(id);
  result.ran = true;
  const std::string_view name = system_name(id);
  Phase phase = Phase::fill;
  try {
    {
      progress("[{}] {}: fill", data.spec.name, name);
      S system = S::create(file, data.spec);
      result.phases[phase] = time_fill(system, data);
      result.file = measure_file(file, system.reported_used_bytes());
      if (after_fill) after_fill(system);
      verify_fill(system, data, options.verify_samples, result);
      system.sync();
      warm_up(system, data);

      progress("[{}] {}: random gets", data.spec.name, name);
      phase = Phase::get;
      result.phases[phase] = time_gets(system, data.random_gets, data.spec.value_bytes);
      phase = Phase::get_batch;
      result.phases[phase] =
          time_get_batches(system, data.random_gets, data.spec.batch, data.spec.value_bytes);
      progress("[{}] {}: get/put mix", data.spec.name, name);
      phase = Phase::mix;
      result.phases[phase] = time_mix(system, data);
      system.sync();
    }  // closed here: no handle may cross the forks below

    // The scaling baseline runs under the same conditions as the concurrent
    // phase (a forked child that opened the file itself, after the mix), so
    // their ratio shows concurrency alone.
    std::fflush(stdout);
    std::fflush(stderr);
    progress("[{}] {}: 1 forked process", data.spec.name, name);
    phase = Phase::get_forked;
    result.phases[phase] = time_forked_gets<S>(file, data, 1);
    if (data.spec.processes > 1) {
      progress("[{}] {}: {} processes", data.spec.name, name, data.spec.processes);
      phase = Phase::get_procs;
      result.phases[phase] = time_forked_gets<S>(file, data, data.spec.processes);
    }
  } catch (const std::exception& e) {
    result.phases[phase].error = e.what();
    result.error = fmt::format("{} failed: {}", phase_json_name(phase), e.what());
  }
  for (const auto& f : S::files(file)) {
    std::error_code ignored;
    fs::remove(f, ignored);
  }
}

DataSetResult run_data_set(const DataSetSpec& spec, const Options& options, const fs::path& dir,
                           const Progress& progress) {
  progress("[{}] generating keys, values and sequences", spec.name);
  const DataSet data(spec, options.seed);
  DataSetResult out;
  out.spec = spec;
  out.tcache_settings = TcacheSystem::describe(spec);
  out.lmdb_map_bytes = LmdbSystem::map_bytes(spec);
  out.boost_segment_bytes = BoostIpcSystem::segment_bytes(spec);

  // The pointer chase is sized after the tcache file, the region its gets
  // actually roam; without tcache, after the data itself.
  std::uint64_t chase_bytes = spec.keys * spec.entry_bytes();
  std::string chase_source = "keys x (key + value), no tcache file";
  if (selected(options, SystemId::tcache)) {
    run_system<TcacheSystem>(SystemId::tcache, dir / "tcache.tc", data, options, out, progress,
                             [&](TcacheSystem& s) { out.tcache_stats = s.stats(); });
    const FileUsage& file = out.of(SystemId::tcache).file;
    if (file.measured && file.st_size > 0) {
      chase_bytes = file.st_size;
      chase_source = "the tcache file's st_size";
    }
  }
  if (selected(options, SystemId::lmdb)) {
    run_system<LmdbSystem>(SystemId::lmdb, dir / "lmdb.mdb", data, options, out, progress);
    // The unbatched fill on a file of its own: the comparison the issue asks
    // for ("tcache fill vs LMDB with one transaction per put").
    progress("[{}] LMDB: fill, one transaction per put", spec.name);
    const fs::path file = dir / "lmdb-txn-per-put.mdb";
    PhaseResult& r = out.of(SystemId::lmdb).phases[Phase::fill_txn_per_put];
    try {
      LmdbSystem system = LmdbSystem::create(file, spec, 1);
      r = time_fill(system, data);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    for (const auto& f : LmdbSystem::files(file)) {
      std::error_code ignored;
      fs::remove(f, ignored);
    }
  }
  if (selected(options, SystemId::boost_ipc)) {
    run_system<BoostIpcSystem>(SystemId::boost_ipc, dir / "boost.ipc", data, options, out,
                               progress);
  }

  if (options.chase_loads > 0) {
    progress("[{}] dependent-load reference over {} bytes", spec.name, chase_bytes);
    try {
      out.chase = measure_dependent_load(chase_bytes, options.chase_loads, options.seed);
      out.chase->region_source = chase_source;
    } catch (const std::exception& e) {
      progress("[{}] dependent-load reference failed: {}", spec.name, e.what());
    }
  }
  return out;
}

int run(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  const Progress progress(options.quiet);
  TempDir dir(options.dir);

  RunResult run;
  run.directory = dir.path().string();
  run.filesystem = filesystem_type(dir.path());
  run.seed = options.seed;
  run.cpus = static_cast<unsigned>(::sysconf(_SC_NPROCESSORS_ONLN));
#if defined(__clang__)
  run.compiler = fmt::format("clang {}", __clang_version__);
#elif defined(__GNUC__)
  run.compiler = fmt::format("gcc {}", __VERSION__);
#else
  run.compiler = "unknown compiler";
#endif
#ifdef NDEBUG
  run.compiler += ", NDEBUG";
#else
  run.compiler += ", assertions on (not a release build?)";
#endif
  run.lmdb_version = mdb_version(nullptr, nullptr, nullptr);
  run.boost_version = BOOST_LIB_VERSION;
  run.load_before = load_average();

  auto make_spec = [&](std::string name, std::uint64_t keys, std::size_t value_bytes) {
    DataSetSpec spec;
    spec.name = std::move(name);
    spec.keys = keys;
    spec.value_bytes = value_bytes;
    spec.gets = options.gets;
    spec.mix_ops = options.mix_ops.value_or(options.gets);
    spec.put_percent = options.put_percent;
    spec.batch = options.batch;
    spec.processes = options.processes;
    spec.tcache_compress_threshold = options.tcache_compress_threshold;
    return spec;
  };
  auto size_name = [](std::size_t bytes) {
    return bytes % 1024 == 0 ? fmt::format("{}KiB", bytes / 1024) : fmt::format("{}B", bytes);
  };
  if (options.keys > 0) {
    run.data_sets.push_back(
        run_data_set(make_spec(size_name(options.value_bytes), options.keys, options.value_bytes),
                     options, dir.path(), progress));
  }
  if (options.big_keys > 0) {
    run.data_sets.push_back(run_data_set(
        make_spec(size_name(options.big_value_bytes), options.big_keys, options.big_value_bytes),
        options, dir.path(), progress));
  }

  run.load_after = load_average();
  if (options.json) {
    print_json(run);
  } else {
    print_tables(run);
  }
  return 0;
}

}  // namespace
}  // namespace tcache_bench

int main(int argc, char** argv) {
  try {
    return tcache_bench::run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "tcache-bench: {}\n", e.what());
    return 1;
  }
}
