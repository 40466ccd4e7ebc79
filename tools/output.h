// tools/output.h: everything tcache-tool prints, in one place.
//
// Human output is an aligned two-column table (fmt); machine output is one
// JSON document (nlohmann-json) whose keys are the StoreStats field names.
// Failures go to stderr as "tcache-tool: <command> failed: <reason>", the
// form scripts and tests match.
//
// Thread safety: single-threaded; writes to the C stdio streams.

#pragma once

#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tcache/tcache.h"

namespace tcache::tool {

inline constexpr std::string_view kProgram = "tcache-tool";

struct Row {
  std::string label;
  std::string value;
};

// Prints `rows` as two left-aligned columns, one row per line.
void print_table(std::FILE* out, std::span<const Row> rows);

// "64.0 MiB", "512 B": binary units, one decimal.
std::string human_bytes(std::uint64_t bytes);

// "67108864 (64.0 MiB)", or just "512" below 1 KiB.
std::string bytes_with_unit(std::uint64_t bytes);

// The stats of `file` as a human table (every StoreStats field, plus the
// hit ratio).
void print_stats(std::FILE* out, std::string_view file, const StoreStats& stats);

// Every StoreStats field, keyed by its name in tcache/store.h, in that order.
nlohmann::ordered_json stats_to_json(const StoreStats& stats);

// Size classes that own pages, as a table: chunk bytes, pages, chunks, in
// use, occupancy.
void print_classes(std::FILE* out, const std::vector<ClassStats>& classes);
// The process table: pid, alive or dead, attached since.
void print_processes(std::FILE* out, const std::vector<ProcessInfo>& processes);
// [{chunk_bytes, pages, chunks, entries}, ...] for classes that own pages.
nlohmann::ordered_json classes_to_json(const std::vector<ClassStats>& classes);
// [{pid, alive, attached_unix_ms}, ...]
nlohmann::ordered_json processes_to_json(const std::vector<ProcessInfo>& processes);
// Prometheus text exposition format, clean for `promtool check metrics`:
// every StoreStats field as tcache_<name>{file="..."} with # HELP and
// # TYPE (counters end in _total, gauges never do; pages_total is
// tcache_capacity_pages), and per-class gauges.
std::string prometheus_text(std::string_view file, const StoreStats& stats,
                            const std::vector<ClassStats>& classes);

// {"error": {"code": <Errc value>, "name": "<error_code_name>", "message": ...}}
nlohmann::ordered_json error_to_json(const Error& error);

// Pretty-prints `document` followed by a newline.
void print_json(std::FILE* out, const nlohmann::ordered_json& document);

// Writes `bytes` exactly as they are (binary-safe) and flushes. Throws
// std::runtime_error if the stream refuses them (disk full, closed pipe).
void write_raw(std::FILE* out, std::string_view bytes);

// "<message> (<code name>)": the reason part of a failure line.
std::string describe(const Error& error);

// Prints "tcache-tool: <command> failed: <reason>" on stderr.
void print_failure(std::string_view command, std::string_view reason);

// Prints "tcache-tool: <message>" on stderr (notes such as a miss).
void print_note(std::string_view message);

// `text` as a Prometheus label value: backslash, double quote and newline
// escaped as the exposition format requires, and every byte that is not
// part of valid UTF-8 (a file name is any bytes) replaced by U+FFFD.
std::string prometheus_label_value(std::string_view text);

// A key as one printable line: printable ASCII as it is, backslash as \\,
// every other byte as \xNN.
std::string escape_key(std::string_view key);

// Lowercase hex of `bytes`.
std::string hex(std::string_view bytes);

// Wall-clock Unix milliseconds.
std::uint64_t unix_now_ms();

// A progress bar on stderr, drawn only when stderr is a terminal, redrawn
// at most a few times a second.
class ProgressBar {
 public:
  // What update() counts: bytes (shown as "1.5 MiB") or items (plain).
  enum class Unit { bytes, items };
  explicit ProgressBar(std::string label, Unit unit = Unit::bytes);
  // `total` 0 = unknown (shows the count only).
  void update(std::uint64_t done, std::uint64_t total);
  // Shows `label` from the next update on (a new phase of the operation).
  void set_label(std::string label);
  // Clears the bar's line.
  void done();

 private:
  std::string label_;
  Unit unit_;
  bool enabled_;
  std::uint64_t last_draw_ms_ = 0;
  bool drawn_ = false;
};

}  // namespace tcache::tool
