// tools/cmd_watch.cc: `tcache-tool watch FILE [--interval S] [--count N]`.
//
// A live view of a cache file's counters: every interval, the totals and
// their rates per second since the previous sample. On a terminal the view
// is redrawn in place; otherwise (a log, a pipe) each sample is one line.
// Runs until interrupted (Ctrl-C exits 0) or --count samples were shown.
// Opens the file read-only.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct WatchArgs {
  std::string file;
  double interval = 1.0;
  std::uint64_t count = 0;  // 0 = until interrupted
};

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true); }

// The counters shown with a rate.
struct Rated {
  const char* name;
  std::uint64_t StoreStats::*member;
};
constexpr Rated kRated[] = {
    {"hits", &StoreStats::hits},           {"misses", &StoreStats::misses},
    {"puts", &StoreStats::puts},           {"erases", &StoreStats::erases},
    {"evictions", &StoreStats::evictions}, {"expirations", &StoreStats::expirations},
};

int run_watch(const WatchArgs& args, const GlobalOptions& global) {
  if (!(args.interval >= 0.01 && args.interval <= 3600)) {
    throw Error(Errc::invalid_option, "--interval must be between 0.01 and 3600 seconds");
  }
  const Store store = open_existing(args.file, /*read_only=*/true, global);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const bool terminal = ::isatty(STDOUT_FILENO) != 0;
  StoreStats prev = store.stats();
  auto prev_time = std::chrono::steady_clock::now();
  const auto period = std::chrono::duration<double>(args.interval);
  for (std::uint64_t n = 0; !g_stop.load() && (args.count == 0 || n < args.count); ++n) {
    // Sleep in small steps so that Ctrl-C ends the view promptly.
    const auto wake = prev_time + std::chrono::duration_cast<std::chrono::nanoseconds>(period);
    while (!g_stop.load() && std::chrono::steady_clock::now() < wake) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const StoreStats now = store.stats();
    const auto t = std::chrono::steady_clock::now();
    const double secs = std::chrono::duration<double>(t - prev_time).count();
    const std::uint64_t lookups = now.hits + now.misses;
    const double ratio = lookups ? 100.0 * now.hits / static_cast<double>(lookups) : 0.0;
    if (terminal) {
      std::string view = fmt::format("\x1b[H\x1b[2J{} — every {:.2g} s, Ctrl-C to stop\n\n",
                                     args.file, args.interval);
      view += fmt::format("{:<12} {:>14} {:>12}\n", "counter", "total", "per second");
      for (const Rated& r : kRated) {
        view += fmt::format("{:<12} {:>14} {:>12.1f}\n", r.name, now.*r.member,
                            (now.*r.member - prev.*r.member) / secs);
      }
      view += fmt::format("\nentries {}   bytes {}   file {}   hit ratio {:.1f}%   processes {}\n",
                          now.entries, human_bytes(now.bytes), human_bytes(now.file_bytes), ratio,
                          now.attached_processes);
      write_raw(stdout, view);
    } else {
      std::string line = fmt::format("entries={} hit_ratio={:.1f}%", now.entries, ratio);
      for (const Rated& r : kRated) {
        line += fmt::format(" {}/s={:.1f}", r.name, (now.*r.member - prev.*r.member) / secs);
      }
      write_raw(stdout, line + "\n");
    }
    prev = now;
    prev_time = t;
  }
  return kExitOk;
}

}  // namespace

Command add_watch_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<WatchArgs>();
  CLI::App* sub = app.add_subcommand(
      "watch", "Show the counters and their rates per second, live, until interrupted");
  sub->add_option("FILE", args->file, "Path of an existing cache file (opened read-only)")
      ->required();
  sub->add_option("--interval,-n", args->interval, "Seconds between samples (default 1)");
  sub->add_option("--count", args->count, "Stop after N samples (default: until Ctrl-C)");
  return {sub, [args, &global] { return run_watch(*args, global); }};
}

}  // namespace tcache::tool
