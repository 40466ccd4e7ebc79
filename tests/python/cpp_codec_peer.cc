// cpp_codec_peer: prints tcache::encode<T>(value) and type_fingerprint<T>()
// for a table of C++ types and values, one line each:
//
//   <case name> <hex of the bytes> <fingerprint as 16 hex digits>
//
// tests/python/test_codec.py holds the same table as (Python value, type
// spec) and checks that _tcache.cpp_encode / cpp_fingerprint give these
// bytes and numbers exactly, and that cpp_decode reads them back.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "tcache/codec.h"

namespace {

void print(const char* name, const std::string& bytes, std::uint64_t fingerprint) {
  std::printf("%s ", name);
  for (const unsigned char c : bytes) std::printf("%02x", c);
  std::printf("%s %016llx\n", bytes.empty() ? "-" : "",
              static_cast<unsigned long long>(fingerprint));
}

template <class T>
void row(const char* name, const T& value) {
  print(name, tcache::encode(value), tcache::type_fingerprint<T>());
}

}  // namespace

int main() {
  using std::int64_t;
  using std::map;
  using std::optional;
  using std::string;
  using std::tuple;
  using std::vector;
  using Bytes = vector<std::uint8_t>;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  row<int64_t>("int64_zero", 0);
  row<int64_t>("int64_negative", -5);
  row<int64_t>("int64_max", std::numeric_limits<int64_t>::max());
  row<int64_t>("int64_min", std::numeric_limits<int64_t>::min());
  row<double>("double", 1.5);
  row<double>("double_nan", -nan);
  row<double>("double_negative_zero", -0.0);
  row<double>("double_inf", -inf);
  row<bool>("bool_true", true);
  row<bool>("bool_false", false);
  row<string>("string_empty", "");
  row<string>("string_utf8", "h\xc3\xa9llo");
  row<Bytes>("bytes", Bytes{0, 1, 255});
  row<optional<int64_t>>("optional_none", std::nullopt);
  row<optional<string>>("optional_string", "x");
  row<vector<int64_t>>("vector_int64", {1, 2, -3});
  row<vector<double>>("vector_double", {0.5, nan});
  row<vector<string>>("vector_string", {"a", "bc"});
  row<vector<bool>>("vector_bool_empty", {});
  row<tuple<int64_t, string, double>>("tuple", {7, "q", 2.5});
  row<tuple<>>("tuple_empty", {});
  row<map<string, int64_t>>("map_string_int64",
                            {{"b", 1}, {"a", 2}, {"\xc3\xa9", 3}, {"z", 4}, {"", 5}});
  row<map<int64_t, vector<int64_t>>>("map_int64_vector", {{3, {}}, {-1, {4, 5}}, {0, {6}}});
  row<map<double, string>>("map_double_string", {{2.0, "b"}, {-0.5, "a"}, {-inf, "c"}});
  row<map<optional<int64_t>, bool>>("map_optional_bool",
                                    {{std::nullopt, true}, {-3, false}, {2, true}});
  row<map<tuple<int64_t, string>, int64_t>>("map_tuple_int64",
                                            {{{1, "b"}, 1}, {{1, "a"}, 2}, {{0, "z"}, 3}});
  row<map<vector<int64_t>, int64_t>>("map_vector_int64",
                                     {{{1, 2}, 1}, {{1}, 2}, {{}, 3}, {{0, 9}, 4}});
  row<map<Bytes, int64_t>>("map_bytes_int64", {{Bytes{255}, 1}, {Bytes{1, 0}, 2}, {Bytes{1}, 3}});
  row<map<bool, string>>("map_bool_string", {{true, "t"}, {false, "f"}});
  row<vector<optional<map<string, vector<double>>>>>(
      "nested", {std::nullopt, map<string, vector<double>>{{"k", {1.0, -2.0}}, {"a", {}}}});
  row<map<string, map<int64_t, string>>>("map_of_maps", {{"x", {{2, "b"}, {1, "a"}}}, {"w", {}}});

  // The argument bytes of a call f(5, "x", 1.0) as the decorators hash them.
  std::string args;
  tcache::encode_args(args, int64_t{5}, string("x"), 1.0);
  print("args", args, tcache::type_fingerprint<tuple<int64_t, string, double>>());
  return 0;
}
