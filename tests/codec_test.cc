// Tests tcache/codec.h: round trips of every supported type, the exact bytes
// of the fixed parts of the format, canonical-ness, and rejection of every
// kind of malformed input with Errc::decode_error.

#include "tcache/codec.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace {

using tcache::Errc;

enum class Color : std::uint8_t { red = 1, green = 2, blue = 200 };
enum Plain { kA = -3, kB = 70000 };

struct Inner {
  int a;
  std::string b;
  bool operator==(const Inner&) const = default;
};

struct Outer {
  Inner inner;
  std::vector<Inner> list;
  std::optional<double> maybe;
  std::array<std::uint16_t, 3> arr;
  Color color;
  std::map<std::string, std::vector<double>> table;
  bool operator==(const Outer&) const = default;
};

// A non-aggregate user type with its own codec.
class Point {
 public:
  Point(int x, std::string label) : x_(x), label_(std::move(label)) {}
  int x() const { return x_; }
  const std::string& label() const { return label_; }
  bool operator==(const Point&) const = default;

 private:
  int x_;
  std::string label_;
};

}  // namespace

template <>
struct tcache::Codec<Point> {
  static void encode(const Point& p, std::string& out) {
    Codec<int>::encode(p.x(), out);
    Codec<std::string>::encode(p.label(), out);
  }
  static Point decode(std::string_view& in) {
    int x = Codec<int>::decode(in);
    return Point(x, Codec<std::string>::decode(in));
  }
};

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

std::string u64le(std::uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return s;
}

// Returns the code of the tcache::Error that f throws, or nullopt.
template <class F>
std::optional<Errc> error_of(F&& f) {
  try {
    f();
  } catch (const tcache::Error& e) {
    return e.code();
  }
  return std::nullopt;
}

template <class T>
std::optional<Errc> decode_error_of(const std::string& b) {
  return error_of([&] { (void)tcache::decode<T>(b); });
}

// Round-trips v, checks the re-encoding is identical, and checks that every
// proper prefix of its encoding and the encoding plus a byte are rejected.
template <class T>
void check(const T& v) {
  const std::string enc = tcache::encode(v);
  const T back = tcache::decode<T>(enc);
  EXPECT_TRUE(back == v);
  EXPECT_EQ(tcache::encode(back), enc);
  for (std::size_t n = 0; n < enc.size(); ++n) {
    EXPECT_EQ(decode_error_of<T>(enc.substr(0, n)), Errc::decode_error)
        << "prefix of " << n << " of " << enc.size() << " bytes";
  }
  EXPECT_EQ(decode_error_of<T>(enc + 'x'), Errc::decode_error) << "trailing byte";
}

TEST(CodecTest, Integers) {
  check(std::int8_t{-128});
  check(std::uint8_t{255});
  check(std::int16_t{-12345});
  check(std::uint16_t{65535});
  check(std::int32_t{std::numeric_limits<std::int32_t>::min()});
  check(std::uint32_t{0xdeadbeef});
  check(std::int64_t{std::numeric_limits<std::int64_t>::min()});
  check(std::uint64_t{std::numeric_limits<std::uint64_t>::max()});
  check('z');
  check(char32_t{0x1F600});
  EXPECT_EQ(tcache::encode(std::uint32_t{0x01020304}), bytes({4, 3, 2, 1}));
  EXPECT_EQ(tcache::encode(std::int16_t{-2}), bytes({0xfe, 0xff}));
}

TEST(CodecTest, BoolAndEnums) {
  check(true);
  check(false);
  EXPECT_EQ(tcache::encode(true), bytes({1}));
  EXPECT_EQ(decode_error_of<bool>(bytes({7})), Errc::decode_error);
  EXPECT_EQ(decode_error_of<bool>(bytes({2})), Errc::decode_error);
  check(Color::blue);
  check(kA);
  check(kB);
  EXPECT_EQ(tcache::encode(Color::blue), bytes({200}));
  EXPECT_EQ(tcache::encode(Color::green), tcache::encode(std::uint8_t{2}));
}

TEST(CodecTest, Floats) {
  check(1.5);
  check(-0.0);
  check(std::numeric_limits<double>::infinity());
  check(std::numeric_limits<double>::denorm_min());
  check(3.25f);
  check(-std::numeric_limits<float>::infinity());
  EXPECT_EQ(tcache::encode(1.0), bytes({0, 0, 0, 0, 0, 0, 0xf0, 0x3f}));
  // -0.0 is a value of its own.
  EXPECT_NE(tcache::encode(-0.0), tcache::encode(0.0));
  EXPECT_TRUE(std::signbit(tcache::decode<double>(tcache::encode(-0.0))));
}

TEST(CodecTest, NaNIsCanonical) {
  const double nans[] = {std::numeric_limits<double>::quiet_NaN(), -std::nan(""), std::nan("123"),
                         std::numeric_limits<double>::signaling_NaN()};
  for (double n : nans) {
    EXPECT_EQ(tcache::encode(n), bytes({0, 0, 0, 0, 0, 0, 0xf8, 0x7f}));
    EXPECT_TRUE(std::isnan(tcache::decode<double>(tcache::encode(n))));
  }
  EXPECT_EQ(tcache::encode(-std::nanf("7")), bytes({0, 0, 0xc0, 0x7f}));
  // Other NaN bit patterns are not canonical encodings.
  EXPECT_EQ(decode_error_of<double>(bytes({1, 0, 0, 0, 0, 0, 0xf8, 0x7f})), Errc::decode_error);
  EXPECT_EQ(decode_error_of<double>(bytes({0, 0, 0, 0, 0, 0, 0xf8, 0xff})), Errc::decode_error);
  EXPECT_EQ(decode_error_of<float>(bytes({0, 0, 0xc0, 0xff})), Errc::decode_error);
  // Containers of NaNs are canonical too.
  EXPECT_EQ(tcache::encode(std::vector<double>{std::nan("1"), -std::nan("2")}),
            tcache::encode(std::vector<double>{std::nan(""), std::nan("")}));
}

// Vectors of numbers are copied in bulk; the bytes must be exactly those of
// element-by-element encoding, and decoding must check the same things.
TEST(CodecTest, VectorsOfNumbersMatchElementwiseEncoding) {
  const std::vector<std::int32_t> ints = {1, -2, 0x7fffffff, -0x7fffffff - 1};
  std::string elementwise;
  tcache::encode_args(elementwise, std::uint64_t{4}, ints[0], ints[1], ints[2], ints[3]);
  EXPECT_EQ(tcache::encode(ints), elementwise);
  check(ints);
  check(std::vector<double>{0.5, -0.0, 1e300, std::numeric_limits<double>::infinity()});
  check(std::vector<std::uint8_t>{});
  check(std::vector<float>{1.5f, -3.25f});
  std::string bad = tcache::encode(std::vector<double>{1.0, std::nan("")});
  bad[8 + 8] = 1;  // the NaN's low byte: a NaN, but not the canonical one
  EXPECT_EQ(decode_error_of<std::vector<double>>(bad), Errc::decode_error);
}

TEST(CodecTest, Strings) {
  check(std::string());
  check(std::string("hello"));
  check(std::string("with\0nul\xff", 9));
  check(std::string(100000, 'q'));
  EXPECT_EQ(tcache::encode(std::string("ab")), u64le(2) + "ab");
  // Encode-only string views and C strings encode like std::string.
  EXPECT_EQ(tcache::encode(std::string_view("ab")), u64le(2) + "ab");
  const char* c = "ab";
  EXPECT_EQ(tcache::encode(c), u64le(2) + "ab");
  EXPECT_EQ(tcache::encode("ab"), u64le(2) + "ab");
}

TEST(CodecTest, Sequences) {
  check(std::vector<int>{});
  check(std::vector<int>{1, -2, 3});
  check(std::vector<bool>{true, false, true});
  check(std::vector<std::string>{"", "a", "bc"});
  check(std::array<std::int32_t, 3>{7, 8, 9});
  check(std::array<std::string, 0>{});
  EXPECT_EQ(tcache::encode(std::array<std::uint8_t, 2>{5, 6}), bytes({5, 6}));
  EXPECT_EQ(tcache::encode(std::vector<std::uint8_t>{5, 6}), u64le(2) + bytes({5, 6}));
}

TEST(CodecTest, ProductsAndSums) {
  check(std::pair<int, std::string>{4, "four"});
  check(std::tuple<>{});
  check(std::tuple<int, double, std::string, bool>{1, 2.5, "x", true});
  check(std::optional<int>{});
  check(std::optional<int>{42});
  check(std::optional<std::optional<std::string>>{std::optional<std::string>{}});
  check(std::variant<int, std::string>{7});
  check(std::variant<int, std::string>{"seven"});
  check(std::variant<int, int>{std::in_place_index<1>, 3});
  EXPECT_EQ(tcache::encode(std::optional<std::uint8_t>{9}), bytes({1, 9}));
  EXPECT_EQ(tcache::encode(std::optional<std::uint8_t>{}), bytes({0}));
  EXPECT_EQ(tcache::encode(std::variant<std::uint8_t, std::string>{std::uint8_t{9}}),
            bytes({0, 0, 0, 0, 9}));
  EXPECT_EQ(decode_error_of<std::optional<int>>(bytes({2, 0, 0, 0, 0})), Errc::decode_error);
}

TEST(CodecTest, VariantIndexOutOfRange) {
  using V = std::variant<int, std::string>;
  EXPECT_EQ(decode_error_of<V>(bytes({2, 0, 0, 0, 1, 0, 0, 0})), Errc::decode_error);
  EXPECT_EQ(decode_error_of<V>(bytes({0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0})), Errc::decode_error);
}

TEST(CodecTest, Nested) {
  check(std::vector<std::optional<std::pair<std::string, int>>>{
      std::nullopt, std::pair<std::string, int>{"a", 1}, std::pair<std::string, int>{"", -1}});
  check(std::map<std::string, std::vector<double>>{{"a", {1.0, 2.0}}, {"b", {}}, {"c", {-0.0}}});
  check(std::map<int, std::map<int, std::variant<int, std::string>>>{{1, {{2, "x"}, {3, 4}}}});
}

TEST(CodecTest, AssociativeContainers) {
  check(std::map<int, std::string>{});
  check(std::map<int, std::string>{{3, "c"}, {1, "a"}, {2, "b"}});
  check(std::map<int, int, std::greater<int>>{{1, 1}, {2, 2}});
  check(std::set<std::string>{"z", "a", "m"});
  check(std::unordered_map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 3}});
  check(std::unordered_set<int>{5, -1, 300, 0});
  check(std::unordered_map<int, std::unordered_set<std::string>>{{1, {"x", "y"}}, {2, {}}});
}

TEST(CodecTest, UnorderedContainersAreCanonical) {
  std::unordered_map<std::string, int> a;
  std::unordered_map<std::string, int> b;
  b.reserve(1000);  // a different bucket count, so a different iteration order
  for (int i = 0; i < 200; ++i) a.emplace("k" + std::to_string(i), i);
  for (int i = 199; i >= 0; --i) b.emplace("k" + std::to_string(i), i);
  EXPECT_EQ(a, b);
  EXPECT_EQ(tcache::encode(a), tcache::encode(b));

  std::unordered_set<std::int64_t> s1;
  std::unordered_set<std::int64_t> s2;
  for (int i = 0; i < 100; ++i) s1.insert(i * 7919);
  for (int i = 99; i >= 0; --i) s2.insert(i * 7919);
  s2.rehash(4096);
  EXPECT_EQ(tcache::encode(s1), tcache::encode(s2));

  // Elements appear sorted by their encoded bytes.
  EXPECT_EQ(tcache::encode(std::unordered_set<std::uint16_t>{0x0102, 0x0201}),
            u64le(2) + bytes({0x01, 0x02, 0x02, 0x01}));
}

TEST(CodecTest, NonCanonicalOrderIsRejected) {
  const std::string two_b = tcache::encode(std::string("b"));
  const std::string two_a = tcache::encode(std::string("a"));
  const std::string one = tcache::encode(1);
  // map keys decreasing, then equal.
  EXPECT_EQ((decode_error_of<std::map<std::string, int>>(u64le(2) + two_b + one + two_a + one)),
            Errc::decode_error);
  EXPECT_EQ((decode_error_of<std::map<std::string, int>>(u64le(2) + two_a + one + two_a + one)),
            Errc::decode_error);
  EXPECT_EQ(decode_error_of<std::set<std::string>>(u64le(2) + two_b + two_a), Errc::decode_error);
  EXPECT_EQ(decode_error_of<std::unordered_set<std::string>>(u64le(2) + two_b + two_a),
            Errc::decode_error);
  EXPECT_EQ(decode_error_of<std::unordered_set<std::string>>(u64le(2) + two_a + two_a),
            Errc::decode_error);
  // 0.0 and -0.0 are in byte order but equal as keys: a duplicate.
  EXPECT_EQ(decode_error_of<std::unordered_set<double>>(u64le(2) + tcache::encode(0.0) +
                                                        tcache::encode(-0.0)),
            Errc::decode_error);
  // The same bytes in the right order decode.
  EXPECT_EQ(tcache::decode<std::set<std::string>>(u64le(2) + two_a + two_b).size(), 2u);
}

TEST(CodecTest, HugeLengthsThrowWithoutAllocating) {
  const std::string huge = u64le(std::uint64_t{1} << 60);
  const std::string max = u64le(std::numeric_limits<std::uint64_t>::max());
  for (const std::string& len : {huge, max}) {
    EXPECT_EQ(decode_error_of<std::string>(len + "abc"), Errc::decode_error);
    EXPECT_EQ(decode_error_of<std::vector<std::uint8_t>>(len + "abc"), Errc::decode_error);
    EXPECT_EQ(decode_error_of<std::vector<std::vector<int>>>(len + "abc"), Errc::decode_error);
    EXPECT_EQ((decode_error_of<std::map<std::string, int>>(len + "abc")), Errc::decode_error);
    EXPECT_EQ(decode_error_of<std::set<int>>(len + "abc"), Errc::decode_error);
    EXPECT_EQ((decode_error_of<std::unordered_map<int, int>>(len + "abc")), Errc::decode_error);
    EXPECT_EQ(decode_error_of<std::unordered_set<int>>(len + "abc"), Errc::decode_error);
  }
  // A count that fits the bytes left only at one byte per element, for
  // elements of at least 8 bytes, is rejected before any allocation too.
  EXPECT_EQ(decode_error_of<std::vector<std::uint64_t>>(u64le(3) + std::string(16, 'a')),
            Errc::decode_error);
}

TEST(CodecTest, TrailingBytesAreRejected) {
  EXPECT_EQ(decode_error_of<std::int32_t>(bytes({1, 0, 0, 0, 0})), Errc::decode_error);
  EXPECT_EQ(decode_error_of<std::string>(u64le(1) + "ab"), Errc::decode_error);
  std::string_view in = "\x01\x02";
  EXPECT_EQ(tcache::Codec<std::uint8_t>::decode(in), 1);  // Codec::decode leaves the rest
  EXPECT_EQ(in.size(), 1u);
}

TEST(CodecTest, Chrono) {
  check(std::chrono::milliseconds(-1234));
  check(std::chrono::duration<double>(1.25));
  check(std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456)));
  EXPECT_EQ(tcache::encode(std::chrono::seconds(5)), tcache::encode(std::int64_t{5}));
}

TEST(CodecTest, Aggregates) {
  Outer o{{1, "one"},    {{2, "two"}, {3, ""}}, 2.5,
          {1, 2, 65535}, Color::green,          {{"k", {1.0, -0.0}}, {"e", {}}}};
  check(o);
  check(Outer{});
  check(std::vector<Inner>{{1, "a"}, {2, "b"}});
  // Members in order, no framing.
  EXPECT_EQ(tcache::encode(Inner{7, "x"}), tcache::encode(std::tuple<int, std::string>{7, "x"}));
}

TEST(CodecTest, UserSpecialization) {
  check(Point(3, "three"));
  check(std::vector<Point>{Point(1, "a"), Point(-1, "")});
  check(std::map<std::string, Point>{{"p", Point(9, "nine")}});
}

TEST(CodecTest, EncodeArgs) {
  std::string out = "prefix";
  tcache::encode_args(out, 1, std::string("s"), "lit", 2.5, std::optional<int>{});
  EXPECT_EQ(
      out, "prefix" +
               tcache::encode(std::tuple<int, std::string, std::string, double, std::optional<int>>{
                   1, "s", "lit", 2.5, std::nullopt}));
  std::string empty;
  tcache::encode_args(empty);
  EXPECT_EQ(empty, "");
}

TEST(CodecTest, ErrorsNameTheProblem) {
  try {
    (void)tcache::decode<bool>(bytes({7}));
    FAIL() << "no throw";
  } catch (const tcache::Error& e) {
    EXPECT_EQ(e.code(), Errc::decode_error);
    EXPECT_NE(std::string(e.what()).find("bool"), std::string::npos) << e.what();
    EXPECT_STREQ(tcache::error_code_name(e.code()), "decode_error");
  }
}

TEST(CodecTest, ANullCharPointerEncodesDistinctly) {
  const char* null = nullptr;
  EXPECT_EQ(tcache::encode(null), u64le(~std::uint64_t{0}));
  EXPECT_NE(tcache::encode(null), tcache::encode(static_cast<const char*>("")));
  std::string args;
  tcache::encode_args(args, null, 1);
  EXPECT_EQ(args, u64le(~std::uint64_t{0}) + tcache::encode(1));
}

TEST(CodecTest, HostileCountsReserveNoMoreThanTheInput) {
  // A million elements of at least one byte each fit in the input, but each
  // is 64 KiB in memory: reserving them all would ask for 64 GiB.
  using Big = std::vector<std::optional<std::array<char, 65536>>>;
  const std::string hostile = u64le(1'000'000) + std::string(1'000'000, '\xff');
  EXPECT_EQ(decode_error_of<Big>(hostile), Errc::decode_error);
  using Strings = std::vector<std::vector<std::string>>;  // 24-32 bytes in memory, 8 encoded
  EXPECT_EQ(decode_error_of<Strings>(u64le(1 << 17) + std::string(1 << 20, '\x7f')),
            Errc::decode_error);
}

struct Shaped {
  int a;
  double b;
};
struct SameShape {
  int x;
  double y;
};
struct NoCodec {
  explicit NoCodec(int) {}
};

TEST(CodecTest, TypeFingerprintsTellEncodingShapesApart) {
  using tcache::type_fingerprint;
  EXPECT_NE(type_fingerprint<double>(), type_fingerprint<std::int64_t>());
  EXPECT_NE(type_fingerprint<int>(), type_fingerprint<unsigned>());
  EXPECT_NE(type_fingerprint<float>(), type_fingerprint<std::int32_t>());
  EXPECT_NE(type_fingerprint<std::chrono::seconds>(),
            type_fingerprint<std::chrono::milliseconds>());
  EXPECT_NE(type_fingerprint<std::vector<int>>(), type_fingerprint<std::set<int>>());
  EXPECT_NE((type_fingerprint<std::map<int, int>>()),
            (type_fingerprint<std::unordered_map<int, int>>()));
  EXPECT_NE(type_fingerprint<std::optional<int>>(), type_fingerprint<std::variant<int>>());
  EXPECT_NE((type_fingerprint<std::tuple<int, int>>()),
            (type_fingerprint<std::tuple<int, unsigned>>()));
  EXPECT_NE(type_fingerprint<std::vector<std::string>>(), type_fingerprint<std::string>());
  // Same shape, same fingerprint; strings however they are passed.
  EXPECT_EQ(type_fingerprint<Shaped>(), type_fingerprint<SameShape>());
  EXPECT_EQ((type_fingerprint<std::pair<int, double>>()), type_fingerprint<Shaped>());
  EXPECT_EQ(type_fingerprint<std::string>(), type_fingerprint<std::string_view>());
  EXPECT_EQ(type_fingerprint<const int>(), type_fingerprint<int>());
  static_assert(tcache::has_codec_v<Shaped>);
  static_assert(tcache::has_codec_v<std::map<std::string, std::vector<Shaped>>>);
  static_assert(tcache::has_codec_v<const char*>);
  static_assert(!tcache::has_codec_v<NoCodec>);
  static_assert(!tcache::has_codec_v<std::vector<NoCodec>>);
  static_assert(!tcache::has_codec_v<std::optional<std::pair<int, NoCodec>>>);
}

}  // namespace
