// tools/output.cc: tables, JSON and failure lines for tcache-tool.

#include "output.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <vector>

#include <fmt/core.h>

namespace tcache::tool {
namespace {

enum class Metric { gauge, counter };

struct StatsField {
  const char* name;  // the field's name in StoreStats, used as the JSON key
  std::uint64_t StoreStats::*member;
  bool is_bytes;       // shown with a human unit beside the exact number
  Metric kind;         // its Prometheus type
  const char* metric;  // its Prometheus name after "tcache_" (counters end in _total)
  const char* help;    // its Prometheus # HELP text
};

// The Prometheus names are product (dashboards use them): DO NOT CHANGE;
// README.md lists them.
constexpr StatsField kStatsFields[] = {
    {"entries", &StoreStats::entries, false, Metric::gauge, "entries",
     "Live entries in the index (expired ones until swept)"},
    {"bytes", &StoreStats::bytes, true, Metric::gauge, "bytes",
     "Bytes of the chunks the entries occupy"},
    {"blob_bytes", &StoreStats::blob_bytes, true, Metric::gauge, "blob_bytes",
     "Bytes in blob files (values larger than a page)"},
    {"capacity_bytes", &StoreStats::capacity_bytes, true, Metric::gauge, "capacity_bytes",
     "The cache file's size ceiling in bytes"},
    {"file_bytes", &StoreStats::file_bytes, true, Metric::gauge, "file_bytes",
     "Current size of the cache file in bytes"},
    {"index_slots", &StoreStats::index_slots, false, Metric::gauge, "index_slots",
     "Slots in the hash index"},
    {"page_bytes", &StoreStats::page_bytes, true, Metric::gauge, "page_bytes",
     "Slab page size in bytes"},
    {"pages_total", &StoreStats::pages_total, false, Metric::gauge, "capacity_pages",
     "Slab pages the file may hold at its capacity"},
    {"pages_used", &StoreStats::pages_used, false, Metric::gauge, "pages_used",
     "Slab pages carved into size classes"},
    {"hits", &StoreStats::hits, false, Metric::counter, "hits_total",
     "Lookups that found a live entry"},
    {"misses", &StoreStats::misses, false, Metric::counter, "misses_total",
     "Lookups that found no live entry"},
    {"puts", &StoreStats::puts, false, Metric::counter, "puts_total", "Values stored"},
    {"erases", &StoreStats::erases, false, Metric::counter, "erases_total", "Entries erased"},
    {"evictions", &StoreStats::evictions, false, Metric::counter, "evictions_total",
     "Entries removed to make room"},
    {"expirations", &StoreStats::expirations, false, Metric::counter, "expirations_total",
     "Entries found expired and removed"},
    {"checksum_failures", &StoreStats::checksum_failures, false, Metric::counter,
     "checksum_failures_total", "Entries whose checksum did not match (counted as misses)"},
    {"grow_failures", &StoreStats::grow_failures, false, Metric::counter, "grow_failures_total",
     "Times the file could not grow (disk full, file size limit)"},
    {"recoveries", &StoreStats::recoveries, false, Metric::counter, "recoveries_total",
     "Times a crashed user's leftovers were reclaimed"},
    {"attached_processes", &StoreStats::attached_processes, false, Metric::gauge,
     "attached_processes", "Processes with the file open now"},
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

std::string escape_key(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", u);
    }
  }
  return out;
}

std::string hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) out += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return out;
}

std::uint64_t unix_now_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

ProgressBar::ProgressBar(std::string label, Unit unit)
    : label_(std::move(label)), unit_(unit), enabled_(::isatty(STDERR_FILENO) != 0) {}

void ProgressBar::set_label(std::string label) {
  label_ = std::move(label);
  drawn_ = false;  // draw the new label at once
}

void ProgressBar::update(std::uint64_t done, std::uint64_t total) {
  if (!enabled_) return;
  const std::uint64_t now = unix_now_ms();
  if (drawn_ && now - last_draw_ms_ < 100) return;
  last_draw_ms_ = now;
  drawn_ = true;
  const std::string count = unit_ == Unit::bytes ? human_bytes(done) : std::to_string(done);
  if (total == 0) {
    fmt::print(stderr, "\r{}{}{}\x1b[K", label_, done != 0 ? ": " : "", done != 0 ? count : "");
  } else {
    constexpr int kWidth = 30;
    const double f = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
    const int filled = static_cast<int>(f * kWidth);
    fmt::print(stderr, "\r{}: [{}{}] {:3.0f}% {}\x1b[K", label_, std::string(filled, '='),
               std::string(kWidth - filled, ' '), f * 100, count);
  }
  std::fflush(stderr);
}

void ProgressBar::done() {
  if (enabled_ && drawn_) {
    fmt::print(stderr, "\r\x1b[K");
    std::fflush(stderr);
  }
}

void print_classes(std::FILE* out, const std::vector<ClassStats>& classes) {
  fmt::print(out, "\n{:>11}  {:>7}  {:>10}  {:>10}  {:>6}\n", "chunk_bytes", "pages", "chunks",
             "in_use", "used");
  for (const ClassStats& c : classes) {
    if (c.pages == 0) continue;
    fmt::print(out, "{:>11}  {:>7}  {:>10}  {:>10}  {:>5.1f}%\n", c.chunk_bytes, c.pages, c.chunks,
               c.entries, c.chunks ? 100.0 * c.entries / static_cast<double>(c.chunks) : 0.0);
  }
}

void print_processes(std::FILE* out, const std::vector<ProcessInfo>& processes) {
  fmt::print(out, "\nprocesses:{}\n", processes.empty() ? " none attached" : "");
  const std::uint64_t now = unix_now_ms();
  for (const ProcessInfo& p : processes) {
    fmt::print(out, "  pid {:<8} {:<5}  attached {:.0f} s ago\n", p.pid, p.alive ? "alive" : "DEAD",
               p.attached_unix_ms <= now ? (now - p.attached_unix_ms) / 1000.0 : 0.0);
  }
}

nlohmann::ordered_json classes_to_json(const std::vector<ClassStats>& classes) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const ClassStats& c : classes) {
    if (c.pages == 0) continue;
    a.push_back({{"chunk_bytes", c.chunk_bytes},
                 {"pages", c.pages},
                 {"chunks", c.chunks},
                 {"entries", c.entries}});
  }
  return a;
}

nlohmann::ordered_json processes_to_json(const std::vector<ProcessInfo>& processes) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const ProcessInfo& p : processes) {
    a.push_back({{"pid", p.pid}, {"alive", p.alive}, {"attached_unix_ms", p.attached_unix_ms}});
  }
  return a;
}

std::string prometheus_label_value(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x80) {
      if (b == '\\') {
        out += "\\\\";
      } else if (b == '"') {
        out += "\\\"";
      } else if (b == '\n') {
        out += "\\n";
      } else {
        out += static_cast<char>(b);
      }
      ++i;
      continue;
    }
    // A UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, nothing
    // past U+10FFFF) is copied whole; anything else becomes one U+FFFD per
    // byte that cannot start or continue one.
    const std::size_t length = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    bool valid = length != 0 && b <= 0xf4 && b != 0xc0 && b != 0xc1 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) {
      valid = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
    }
    if (valid && length >= 3) {
      const auto second = static_cast<unsigned char>(text[i + 1]);
      if (b == 0xe0) valid = second >= 0xa0;  // overlong
      if (b == 0xed) valid = second < 0xa0;   // surrogate
      if (b == 0xf0) valid = second >= 0x90;  // overlong
      if (b == 0xf4) valid = second < 0x90;   // past U+10FFFF
    }
    if (valid) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

std::string prometheus_text(std::string_view file, const StoreStats& stats,
                            const std::vector<ClassStats>& classes) {
  const std::string label = prometheus_label_value(file);
  std::string text;
  for (const StatsField& field : kStatsFields) {
    const std::string name = fmt::format("tcache_{}", field.metric);
    text += fmt::format("# HELP {} {}\n# TYPE {} {}\n{}{{file=\"{}\"}} {}\n", name, field.help,
                        name, field.kind == Metric::counter ? "counter" : "gauge", name, label,
                        stats.*field.member);
  }
  struct ClassMetric {
    const char* name;
    const char* help;
    std::uint64_t ClassStats::*member;
  };
  static constexpr ClassMetric kClassMetrics[] = {
      {"tcache_class_chunks", "Chunks in the pages of a size class", &ClassStats::chunks},
      {"tcache_class_entries", "Chunks of a size class in use by entries", &ClassStats::entries},
  };
  for (const ClassMetric& metric : kClassMetrics) {
    text += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", metric.name, metric.help, metric.name);
    for (const ClassStats& c : classes) {
      if (c.pages == 0) continue;
      text += fmt::format("{}{{file=\"{}\",chunk_bytes=\"{}\"}} {}\n", metric.name, label,
                          c.chunk_bytes, c.*metric.member);
    }
  }
  return text;
}

}  // namespace tcache::tool
