// tools/output.cc: tables, JSON and failure lines for tcache-tool.

#include "output.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <vector>

#include <fmt/core.h>

namespace tcache::tool {
namespace {

struct StatsField {
  const char* name;  // the field's name in StoreStats, used as the JSON key
  std::uint64_t StoreStats::*member;
  bool is_bytes;  // shown with a human unit beside the exact number
};

constexpr StatsField kStatsFields[] = {
    {"entries", &StoreStats::entries, false},
    {"bytes", &StoreStats::bytes, true},
    {"blob_bytes", &StoreStats::blob_bytes, true},
    {"capacity_bytes", &StoreStats::capacity_bytes, true},
    {"file_bytes", &StoreStats::file_bytes, true},
    {"index_slots", &StoreStats::index_slots, false},
    {"page_bytes", &StoreStats::page_bytes, true},
    {"pages_total", &StoreStats::pages_total, false},
    {"pages_used", &StoreStats::pages_used, false},
    {"hits", &StoreStats::hits, false},
    {"misses", &StoreStats::misses, false},
    {"puts", &StoreStats::puts, false},
    {"erases", &StoreStats::erases, false},
    {"evictions", &StoreStats::evictions, false},
    {"expirations", &StoreStats::expirations, false},
    {"checksum_failures", &StoreStats::checksum_failures, false},
    {"grow_failures", &StoreStats::grow_failures, false},
    {"recoveries", &StoreStats::recoveries, false},
    {"attached_processes", &StoreStats::attached_processes, false},
};

// A new StoreStats field must be added above, or the tool would hide it.
static_assert(sizeof(StoreStats) == std::size(kStatsFields) * sizeof(std::uint64_t),
              "StoreStats changed: list every field in kStatsFields");

}  // namespace

void print_table(std::FILE* out, std::span<const Row> rows) {
  std::size_t width = 0;
  for (const Row& row : rows) width = std::max(width, row.label.size());
  for (const Row& row : rows) fmt::print(out, "{:<{}}  {}\n", row.label, width, row.value);
}

std::string human_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kUnits[unit]);
}

std::string bytes_with_unit(std::uint64_t bytes) {
  return bytes < 1024 ? fmt::format("{}", bytes)
                      : fmt::format("{} ({})", bytes, human_bytes(bytes));
}

void print_stats(std::FILE* out, std::string_view file, const StoreStats& stats) {
  std::vector<Row> rows;
  rows.push_back({"file", std::string(file)});
  for (const StatsField& field : kStatsFields) {
    const std::uint64_t value = stats.*field.member;
    rows.push_back(
        {field.name, field.is_bytes ? bytes_with_unit(value) : fmt::format("{}", value)});
  }
  const std::uint64_t lookups = stats.hits + stats.misses;
  rows.push_back({"hit_ratio",
                  lookups == 0
                      ? std::string("-")
                      : fmt::format("{:.1f}%", 100.0 * stats.hits / static_cast<double>(lookups))});
  print_table(out, rows);
}

nlohmann::ordered_json stats_to_json(const StoreStats& stats) {
  nlohmann::ordered_json document = nlohmann::ordered_json::object();
  for (const StatsField& field : kStatsFields) document[field.name] = stats.*field.member;
  return document;
}

nlohmann::ordered_json error_to_json(const Error& error) {
  return {{"error",
           {{"code", static_cast<std::uint32_t>(error.code())},
            {"name", error_code_name(error.code())},
            {"message", error.what()}}}};
}

void print_json(std::FILE* out, const nlohmann::ordered_json& document) {
  // Replace invalid UTF-8 (a message quoting a binary key) rather than throw.
  write_raw(out,
            document.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

void write_raw(std::FILE* out, std::string_view bytes) {
  if (std::fwrite(bytes.data(), 1, bytes.size(), out) != bytes.size() || std::fflush(out) != 0) {
    throw std::runtime_error(
        fmt::format("cannot write to the output: {}; check that the disk has room and the pipe "
                    "reader is still running",
                    std::strerror(errno)));
  }
}

std::string describe(const Error& error) {
  return fmt::format("{} ({})", error.what(), error_code_name(error.code()));
}

void print_failure(std::string_view command, std::string_view reason) {
  fmt::print(stderr, "{}: {} failed: {}\n", kProgram, command, reason);
}

void print_note(std::string_view message) { fmt::print(stderr, "{}: {}\n", kProgram, message); }

}  // namespace tcache::tool
