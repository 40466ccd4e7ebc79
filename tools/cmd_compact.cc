// tools/cmd_compact.cc: `tcache-tool compact FILE [--capacity SIZE]
// [--no-sync] [--threads N] [--json]`.
//
// Calls tcache::compact (tcache/compact.h): writes a new file with only the
// live entries of FILE (with another capacity if asked), renames it over
// FILE, and processes that have FILE open move to the new file at their
// next operation; nothing they wrote is lost. Safe while other processes
// use the file. Shows the phases on a progress bar when stderr is a
// terminal.
//
// Exit status: 0 compacted; 2 not compacted (FILE is then as it was), e.g.
// another compaction of it is running (busy).

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct CompactArgs {
  std::string file;
  std::string capacity;
  const CLI::Option* capacity_option = nullptr;
  bool no_sync = false;
  bool json = false;
  unsigned threads = 0;
};

const char* phase_label(CompactPhase phase) {
  switch (phase) {
    case CompactPhase::copying:
      return "compact: copying";
    case CompactPhase::switching:
      return "compact: waiting for writes in flight";
    case CompactPhase::final_copy:
      return "compact: copying what changed";
    case CompactPhase::syncing:
      return "compact: writing to disk";
  }
  return "compact";
}

int run_compact(const CompactArgs& args, const GlobalOptions& global) {
  CompactOptions options;
  if (args.capacity_option->count() > 0) {
    options.capacity_bytes = size_option("--capacity", args.capacity);
  }
  options.allow_shared_access = global.allow_shared_access;
  options.sync = !args.no_sync;
  options.threads = args.threads;
  require_existing(args.file);

  ProgressBar bar("compact", ProgressBar::Unit::items);
  CompactPhase shown = CompactPhase::copying;
  std::mutex bar_mutex;  // the logger may be called from a copying thread
  options.progress = [&](const CompactProgress& p) {
    const std::lock_guard<std::mutex> lock(bar_mutex);
    if (p.phase != shown) {
      shown = p.phase;
      bar.set_label(phase_label(p.phase));
    }
    bar.update(p.done, p.total);
  };
  bar.set_label(phase_label(CompactPhase::copying));
  options.logger = [&](std::string_view line) {
    const std::lock_guard<std::mutex> lock(bar_mutex);
    bar.done();
    fmt::print(stderr, "{}\n", line);
  };
  const CompactResult r = compact(args.file, options);
  bar.done();

  if (args.json) {
    print_json(stdout, {{"file", args.file},
                        {"entries", r.entries},
                        {"recopied", r.recopied},
                        {"dropped", r.dropped},
                        {"evicted", r.evicted},
                        {"file_bytes_before", r.file_bytes_before},
                        {"file_bytes_after", r.file_bytes_after},
                        {"capacity_bytes_before", r.capacity_bytes_before},
                        {"capacity_bytes_after", r.capacity_bytes_after},
                        {"writers_paused_ms", r.writers_paused.count()}});
  } else {
    std::vector<Row> rows = {
        {"compacted", args.file},
        {"entries", std::to_string(r.entries)},
        {"file_bytes", fmt::format("{} -> {}", bytes_with_unit(r.file_bytes_before),
                                   bytes_with_unit(r.file_bytes_after))},
    };
    if (r.capacity_bytes_after != r.capacity_bytes_before) {
      rows.push_back(
          {"capacity_bytes", fmt::format("{} -> {}", human_bytes(r.capacity_bytes_before),
                                         human_bytes(r.capacity_bytes_after))});
    }
    rows.push_back({"dropped", fmt::format("{} (expired or unreachable)", r.dropped)});
    rows.push_back({"recopied", fmt::format("{} (changed during the compaction)", r.recopied)});
    rows.push_back({"evicted", std::to_string(r.evicted)});
    rows.push_back({"writers_paused", fmt::format("{} ms", r.writers_paused.count())});
    print_table(stdout, rows);
  }
  if (r.evicted != 0) {
    print_note(fmt::format(
        "the new capacity had no room for {} live entries, which were left out; give a larger "
        "--capacity to keep everything",
        r.evicted));
  }
  return kExitOk;
}

}  // namespace

Command add_compact_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<CompactArgs>();
  CLI::App* sub = app.add_subcommand(
      "compact",
      "Rewrite a cache file with only its live entries and swap it in; processes using it "
      "move to the new file (safe while they run)");
  sub->add_option("FILE", args->file, "Path of an existing cache file")->required();
  args->capacity_option =
      sub->add_option("--capacity", args->capacity,
                      "Capacity of the new file: bytes, or with a K, M, G or T suffix (e.g. "
                      "64M, 1G); default: the file's own")
          ->type_name("SIZE");
  sub->add_flag("--no-sync", args->no_sync,
                "Do not write the new file to disk before renaming it into place (faster; a "
                "power failure may then leave a damaged file)");
  sub->add_option("--threads", args->threads,
                  "Threads that copy (0, the default: one per core, at most 4, for a large "
                  "file)")
      ->check(CLI::Range(0u, 64u))
      ->type_name("N");
  sub->add_flag("--json", args->json, "Print the result as one JSON object");
  return {sub, [args, &global] { return run_compact(*args, global); }};
}

}  // namespace tcache::tool
