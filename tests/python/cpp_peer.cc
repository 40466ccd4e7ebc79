// cpp_peer: C++ decorators on a cache file, for the Python tests that check
// that C++ and Python share entries (tests/python/conftest.py, fixture
// cpp_peer). Each function below is a C++ bcache named and versioned as the
// Python tests name theirs; one call prints one JSON line:
//
//   {"result": <the function's result>, "computed": <true if it ran>}
//
// usage: cpp_peer FILE price SYM DAY        (std::string, int64) -> double
//        cpp_peer FILE summary X,Y,... TWICE (vector<int64>, bool) -> map<string, int64>
//        cpp_peer FILE label [N]             (optional<int64>) -> tuple<string, vector<uint8>>
//        cpp_peer FILE price-held SYM DAY    as price, but once computing it prints
//                                            {"computing": true} and waits for a line on
//                                            stdin before returning (single-flight tests)
//
// All are bcache(name = <function>, version = "1", path = FILE). Exit status
// 2 for bad usage, 1 for a tcache::Error (its message on stderr).

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tcache/decorators.h"
#include "tcache/error.h"

namespace {

bool g_computed = false;
bool g_hold = false;

double price(const std::string& sym, std::int64_t day) {
  g_computed = true;
  if (g_hold) {
    std::cout << nlohmann::json{{"computing", true}}.dump() << std::endl;
    std::string line;
    std::getline(std::cin, line);
  }
  return static_cast<double>(day) + 0.25 * static_cast<double>(sym.size());
}

std::map<std::string, std::int64_t> summary(const std::vector<std::int64_t>& xs, bool twice) {
  g_computed = true;
  std::int64_t sum = 0;
  for (std::int64_t x : xs) sum += x;
  return {{"n", static_cast<std::int64_t>(xs.size())}, {"sum", twice ? 2 * sum : sum}};
}

std::tuple<std::string, std::vector<std::uint8_t>> label(std::optional<std::int64_t> n) {
  g_computed = true;
  if (!n) return {"none", {}};
  return {"n=" + std::to_string(*n), {1, 2, static_cast<std::uint8_t>(*n & 0xff)}};
}

std::vector<std::int64_t> parse_list(const std::string& text) {
  std::vector<std::int64_t> xs;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) xs.push_back(std::stoll(item));
  }
  return xs;
}

tcache::BcacheOptions options(const std::string& file, const std::string& name) {
  return {.name = name, .version = "1", .path = file};
}

int usage() {
  std::cerr << "usage: cpp_peer FILE price SYM DAY | summary X,Y,... 0|1 | label [N] | "
               "price-held SYM DAY\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage();
  const std::string file = argv[1];
  const std::string fn = argv[2];
  nlohmann::json out;
  try {
    if ((fn == "price" || fn == "price-held") && argc == 5) {
      g_hold = fn == "price-held";
      auto f = tcache::bcache(price, options(file, "price"));
      out["result"] = f(argv[3], std::stoll(argv[4]));
    } else if (fn == "summary" && argc == 5) {
      auto f = tcache::bcache(summary, options(file, "summary"));
      out["result"] = f(parse_list(argv[3]), std::string(argv[4]) == "1");
    } else if (fn == "label" && (argc == 3 || argc == 4)) {
      auto f = tcache::bcache(label, options(file, "label"));
      const auto [text, bytes] =
          f(argc == 4 ? std::optional<std::int64_t>(std::stoll(argv[3])) : std::nullopt);
      out["result"] = nlohmann::json::array({text, bytes});
    } else {
      return usage();
    }
  } catch (const tcache::Error& e) {
    std::cerr << "cpp_peer: " << e.what() << "\n";
    return 1;
  }
  out["computed"] = g_computed;
  std::cout << out.dump() << std::endl;
  return 0;
}
