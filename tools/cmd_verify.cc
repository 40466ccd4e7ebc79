// tools/cmd_verify.cc: `tcache-tool verify FILE [--repair] [--json]`.
//
// Calls Store::verify (read-only) and prints what it found. With --repair
// and problems found: Store::repair on a writable handle (unpublishes
// damaged and duplicate entries and reclaims the chunks of processes killed
// mid-write, safe while others use the file), then a reopen, which rebuilds
// free lists and reclaims any other leaks if no other process has the file
// open, then a second verify to report the result.
//
// Exit status: 0 the file is clean (after repair, with --repair), 1 problems
// found (or left: another process kept the file open), 2 could not run.

#include <memory>
#include <string>

#include <fmt/core.h>

#include "commands.h"
#include "output.h"

namespace tcache::tool {
namespace {

struct VerifyArgs {
  std::string file;
  bool repair = false;
  bool json = false;
};

nlohmann::ordered_json report_to_json(const VerifyReport& r) {
  return {{"clean", r.clean()},
          {"entries", r.entries},
          {"damaged_entries", r.damaged_entries},
          {"duplicate_entries", r.duplicate_entries},
          {"broken_free_lists", r.broken_free_lists},
          {"leaked_chunks", r.leaked_chunks},
          {"uncarved_pages", r.uncarved_pages},
          {"dead_processes", r.dead_processes},
          {"repaired", r.repaired},
          {"reclaimed_chunks", r.reclaimed_chunks},
          {"concurrent", r.concurrent},
          {"problems", r.problems}};
}

void print_report(const VerifyReport& r, std::string_view file, std::string_view when) {
  fmt::print("{}{}: {} entries checked, {}\n", file, when, r.entries,
             r.clean() ? "no problems" : "PROBLEMS FOUND");
  for (const std::string& p : r.problems) fmt::print("  {}\n", p);
  if (r.concurrent) {
    fmt::print(
        "  (other processes are using the file: free lists were not judged, and of the leaks "
        "only chunks held by processes that died)\n");
  }
}

int run_verify(const VerifyArgs& args, const GlobalOptions& global) {
  VerifyReport before;
  try {
    before = open_existing(args.file, /*read_only=*/true, global).verify();
  } catch (const Error& e) {
    if (e.code() != Errc::corrupt_file) throw;  // could not run: exit 2
    if (args.json) {
      print_json(stdout, {{"clean", false}, {"problems", {std::string(e.what())}}});
    } else {
      fmt::print("{}: PROBLEMS FOUND\n  {}\n", args.file, e.what());
    }
    return kExitMiss;
  }
  if (!args.repair || before.clean()) {
    if (args.json) {
      print_json(stdout, report_to_json(before));
    } else {
      print_report(before, args.file, "");
    }
    return before.clean() ? kExitOk : kExitMiss;
  }
  VerifyReport repaired;
  {
    Store store = open_existing(args.file, /*read_only=*/false, global);
    repaired = store.repair();
  }
  // Opening the file alone runs the recovery that repair() asked for.
  { open_existing(args.file, /*read_only=*/false, global); }
  const VerifyReport after = open_existing(args.file, /*read_only=*/true, global).verify();
  if (args.json) {
    nlohmann::ordered_json j = report_to_json(before);
    j["repaired"] = repaired.repaired;
    j["reclaimed_chunks"] = repaired.reclaimed_chunks;
    j["after_repair"] = report_to_json(after);
    print_json(stdout, j);
  } else {
    print_report(before, args.file, "");
    fmt::print(
        "repair: unpublished {} damaged or duplicate entries; reclaimed {} chunks held by "
        "processes that died; rebuilt free lists and reclaimed other leaks {}\n",
        repaired.repaired, repaired.reclaimed_chunks,
        after.concurrent ? "later (another process has the file open; the next process "
                           "to open it alone does it)"
                         : "now");
    print_report(after, args.file, " after repair");
  }
  return after.clean() ? kExitOk : kExitMiss;
}

}  // namespace

Command add_verify_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<VerifyArgs>();
  CLI::App* sub = app.add_subcommand(
      "verify", "Check every structure of a cache file; exit 0 clean, 1 problems, 2 error");
  sub->add_option("FILE", args->file, "Path of an existing cache file")->required();
  sub->add_flag("--repair", args->repair,
                "Drop damaged entries, rebuild free lists and reclaim leaked chunks (safe while "
                "other processes use the file)");
  sub->add_flag("--json", args->json, "Print the report as one JSON object");
  return {sub, [args, &global] { return run_verify(*args, global); }};
}

}  // namespace tcache::tool
