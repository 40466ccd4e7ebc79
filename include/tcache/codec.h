// tcache/codec.h: a header-only, canonical binary codec for C++ values.
//
// Used to turn typed keys and values into the bytes a Store keeps. Every
// supported type has a tcache::Codec<T> with
//
//   static void encode(const T& v, std::string& out);  // appends v's bytes
//   static T decode(std::string_view& in);              // consumes from the front
//
// and the free helpers tcache::encode(v), tcache::decode<T>(bytes) and
// tcache::encode_args(out, args...) wrap them.
//
// Thread safety: every function here is pure (no shared or static mutable
// state); call them from any number of threads at once. Two threads must not
// decode into or encode from the same object while a third modifies it, as
// for any C++ value.
//
// Errors: decode throws tcache::Error with Errc::decode_error on truncated or
// malformed input, saying what was malformed. It never has undefined
// behaviour on any input, and never reserves more memory than the input's
// size: every length and element count is checked against the bytes that
// remain, and vectors reserve at most as many elements as would fit in that
// many bytes of memory (what decoding then builds is what the input
// describes: a million empty optionals of a large type take memory in
// proportion, and may throw std::bad_alloc; the decorators count that as a
// miss). Encode throws only what
// allocating the output may throw (std::bad_alloc), std::bad_variant_access
// for a valueless variant, and tcache::Error(Errc::invalid_option) if a
// user-specialized Codec encodes an element of a container to zero bytes.
//
// Format (all integers little-endian; "len" is a u64):
//
//   type                               bytes
//   ---------------------------------  ------------------------------------------
//   bool                               1 byte: 0 or 1 (decode rejects others)
//   integers, char types               sizeof(T) bytes, two's complement
//   enum                               its underlying integer type
//   float / double                     IEEE-754 bits as u32 / u64; every NaN is
//                                      written as the quiet NaN 0x7fc00000 /
//                                      0x7ff8000000000000; -0.0 stays distinct
//                                      from 0.0 (they are different values)
//   std::string, string_view, char*    len, then the bytes (string_view and
//                                      char pointers/arrays: encode only); a
//                                      null char pointer: len 2^64-1, no bytes
//   std::vector<T>                     len (element count), then each element
//   std::array<T, N>                   the N elements (no length)
//   std::pair, std::tuple, aggregates  the members in order (no framing)
//   std::optional<T>                   tag byte 0 (empty) or 1, then the value
//   std::variant<Ts...>                index as u32, then the alternative
//   std::map, std::set                 len, then elements in the container's
//                                      order (pairs key, value for maps)
//   std::unordered_map, unordered_set  len, then elements sorted by their
//                                      encoded bytes (memcmp order)
//   std::chrono::duration              count() as its Rep
//   std::chrono::time_point            time_since_epoch() as its duration
//
// Aggregates (plain structs with public members, no base classes and no
// user-declared constructors) are encoded automatically through Boost.PFR,
// member by member. long double, C-array members, raw pointers other than
// const char*, and unions have no codec.
//
// Canonical: on one platform (endianness and sizeof of the types used), the
// same value gives the same bytes in every process, build and run; for
// unordered containers the result does not depend on insertion order or
// hashing. Moreover decode accepts only canonical encodings: for any bytes b
// that decode<T> accepts, encode(decode<T>(b)) == b. It rejects a bool or
// optional tag other than 0/1, a variant index out of range, a non-canonical
// NaN, map/set keys not strictly increasing under the container's comparator,
// unordered elements not strictly increasing by their bytes, and duplicates.
// The encoding is NOT self-describing: the reader must know the type, and
// values of different types may share bytes (int32 1 and float 1.4e-45 do).
// The format is persisted in caches: DO NOT CHANGE it for existing types.
// A time_point of steady_clock is only meaningful within one boot.
//
// Specializing for a user type: define tcache::Codec<T> in namespace tcache
// (before the first use of Codec<T>), built from the codecs of its parts:
//
//   struct Point { Point(int x, int y); int x() const; int y() const; ... };
//   template <>
//   struct tcache::Codec<Point> {
//     static void encode(const Point& p, std::string& out) {
//       Codec<int>::encode(p.x(), out);
//       Codec<int>::encode(p.y(), out);
//     }
//     static Point decode(std::string_view& in) {
//       int x = Codec<int>::decode(in);
//       return Point(x, Codec<int>::decode(in));
//     }
//   };
//
// A specialization may declare `static constexpr std::size_t min_size` (a
// lower bound on its encoded size); without it, 1 is assumed, so every value
// of a user type stored in a container must encode to at least one byte.
// Partial specializations (with the second, Enable parameter) work as well.

#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <boost/pfr.hpp>

#include "tcache/error.h"

namespace tcache {

// The codec of T. The primary template handles aggregates through
// Boost.PFR; every other supported type has a specialization below.
template <class T, class Enable = void>
struct Codec;

namespace detail {

static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "tcache/codec.h: mixed-endian platforms are not supported");

[[noreturn]] inline void decode_fail(const std::string& what) {
  throw Error(Errc::decode_error, "tcache: decode: " + what);
}

inline void need(const std::string_view& in, std::size_t n, const char* what) {
  if (in.size() < n) {
    decode_fail(std::string("truncated input: ") + what + " needs " + std::to_string(n) +
                " bytes, " + std::to_string(in.size()) + " left");
  }
}

template <class U>
inline U byteswap_if_big(U v) noexcept {
  static_assert(std::is_unsigned_v<U>);
  if constexpr (std::endian::native == std::endian::big && sizeof(U) > 1) {
    U r = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      r = static_cast<U>((r << 8) | (v & 0xff));
      v = static_cast<U>(v >> 8);
    }
    return r;
  }
  return v;
}

template <class U>
inline void put_uint(U v, std::string& out) {
  v = byteswap_if_big(v);
  char buf[sizeof(U)];
  std::memcpy(buf, &v, sizeof(U));
  out.append(buf, sizeof(U));
}

template <class U>
inline U get_uint(std::string_view& in, const char* what) {
  need(in, sizeof(U), what);
  U v;
  std::memcpy(&v, in.data(), sizeof(U));
  in.remove_prefix(sizeof(U));
  return byteswap_if_big(v);
}

inline void put_len(std::size_t n, std::string& out) { put_uint<std::uint64_t>(n, out); }

// Reads an element count and checks that the remaining input can hold that
// many elements of at least min_size bytes each, so nothing is allocated for
// a bogus count.
inline std::size_t get_count(std::string_view& in, std::size_t min_size, const char* what) {
  const std::uint64_t n = get_uint<std::uint64_t>(in, what);
  if (n > in.size() / min_size) {
    decode_fail(std::string(what) + " claims " + std::to_string(n) + " elements but only " +
                std::to_string(in.size()) + " bytes remain");
  }
  return static_cast<std::size_t>(n);
}

// A lower bound on the encoded size of a T: Codec<T>::min_size, or 1.
template <class T, class = void>
struct min_size_of : std::integral_constant<std::size_t, 1> {};
template <class T>
struct min_size_of<T, std::void_t<decltype(Codec<T>::min_size)>>
    : std::integral_constant<std::size_t, Codec<T>::min_size> {};
template <class T>
inline constexpr std::size_t min_size_v = min_size_of<T>::value;

template <class T>
inline constexpr bool is_pfr_aggregate_v =
    std::is_class_v<T>&& std::is_aggregate_v<T> && !std::is_polymorphic_v<T>;

template <class T>
constexpr std::size_t aggregate_min_size() {
  if constexpr (is_pfr_aggregate_v<T>) {
    return []<std::size_t... I>(std::index_sequence<I...>) {
      return (std::size_t{0} + ... +
              min_size_v<std::remove_cv_t<boost::pfr::tuple_element_t<I, T>>>);
    }
    (std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
  } else {
    return 1;  // not an aggregate: no codec (the primary template refuses to encode)
  }
}

// Encodes one element of a variable-length container; refuses an empty
// encoding, which the count check in get_count() could not decode.
inline void require_progress(std::size_t before, const std::string& out) {
  if (out.size() == before) {
    throw Error(Errc::invalid_option,
                "tcache: encode: a container element encoded to zero bytes; a Codec "
                "specialization must write at least one byte per value");
  }
}

template <class T, class V>
inline void encode_element(const V& v, std::string& out) {
  const std::size_t before = out.size();
  Codec<T>::encode(v, out);
  require_progress(before, out);
}

template <class T>
inline constexpr void check_element() {
  static_assert(
      min_size_v<T> >= 1,
      "tcache/codec.h: containers of types whose encoding may be empty are not supported");
}

// Encodes each element to its own string, sorts them bytewise and appends
// them after the count: the canonical form of an unordered container.
template <class T, class C>
inline void encode_sorted(const C& c, std::string& out) {
  std::vector<std::string> parts;
  parts.reserve(c.size());
  for (const auto& e : c) {
    std::string s;
    encode_element<T>(e, s);
    parts.push_back(std::move(s));
  }
  std::sort(parts.begin(), parts.end());
  put_len(parts.size(), out);
  for (const auto& p : parts) out += p;
}

// Decodes count elements of an unordered container, checking that their
// bytes are strictly increasing and that the container accepts each one.
template <class T, class C>
inline C decode_sorted(std::string_view& in, const char* what) {
  const std::size_t n = get_count(in, min_size_v<T>, what);
  C c;
  std::string_view prev;
  for (std::size_t i = 0; i < n; ++i) {
    const char* start = in.data();
    T e = Codec<T>::decode(in);
    const std::string_view bytes(start, static_cast<std::size_t>(in.data() - start));
    if (i > 0 && !(prev < bytes)) {
      decode_fail(std::string(what) + " elements are not in strictly increasing byte order");
    }
    prev = bytes;
    if (!c.insert(std::move(e)).second) decode_fail(std::string(what) + " has a duplicate element");
  }
  return c;
}

}  // namespace detail

// Aggregates, through Boost.PFR: the members in declaration order.
// For any other T, using encode or decode fails to compile (has_codec_v<T>
// says so without failing).
template <class T, class Enable>
struct Codec {
  // Marks the primary template (detail::Shape tells user specializations
  // apart by its absence).
  static constexpr bool tcache_primary_codec = true;
  static constexpr std::size_t min_size = detail::aggregate_min_size<T>();

  static void encode(const T& v, std::string& out) {
    static_assert(detail::is_pfr_aggregate_v<T>,
                  "tcache::Codec: no codec for this type; specialize tcache::Codec<T> (see "
                  "tcache/codec.h)");
    boost::pfr::for_each_field(
        v, [&out](const auto& f) { Codec<std::remove_cvref_t<decltype(f)>>::encode(f, out); });
  }
  static T decode(std::string_view& in) {
    static_assert(detail::is_pfr_aggregate_v<T>,
                  "tcache::Codec: no codec for this type; specialize tcache::Codec<T> (see "
                  "tcache/codec.h)");
    return decode_fields(in, std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
  }

 private:
  template <std::size_t... I>
  static T decode_fields(std::string_view& in, std::index_sequence<I...>) {
    // Braced initialization evaluates its elements left to right.
    return T{Codec<std::remove_cv_t<boost::pfr::tuple_element_t<I, T>>>::decode(in)...};
  }
};

template <>
struct Codec<bool> {
  static constexpr std::size_t min_size = 1;
  static void encode(bool v, std::string& out) { out.push_back(v ? '\1' : '\0'); }
  static bool decode(std::string_view& in) {
    const auto b = detail::get_uint<std::uint8_t>(in, "bool");
    if (b > 1) detail::decode_fail("bool byte is " + std::to_string(b) + ", not 0 or 1");
    return b == 1;
  }
};

// Integers and character types (not bool): fixed width, little-endian.
template <class T>
struct Codec<T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>>> {
  using U = std::make_unsigned_t<T>;
  static constexpr std::size_t min_size = sizeof(T);
  static void encode(T v, std::string& out) { detail::put_uint<U>(static_cast<U>(v), out); }
  static T decode(std::string_view& in) {
    return static_cast<T>(detail::get_uint<U>(in, "integer"));
  }
};

template <class T>
struct Codec<T, std::enable_if_t<std::is_enum_v<T>>> {
  using Under = std::underlying_type_t<T>;
  static constexpr std::size_t min_size = sizeof(Under);
  static void encode(T v, std::string& out) { Codec<Under>::encode(static_cast<Under>(v), out); }
  static T decode(std::string_view& in) { return static_cast<T>(Codec<Under>::decode(in)); }
};

// float and double: the IEEE-754 bits, with every NaN canonicalised.
template <class T>
struct Codec<T, std::enable_if_t<std::is_same_v<T, float> || std::is_same_v<T, double>>> {
  static_assert(std::numeric_limits<T>::is_iec559, "tcache/codec.h needs IEEE-754 floats");
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(U) == sizeof(T));
  static constexpr U kCanonicalNaN =
      sizeof(T) == 4 ? U{0x7fc00000u} : static_cast<U>(0x7ff8000000000000ull);
  static constexpr std::size_t min_size = sizeof(T);

  static void encode(T v, std::string& out) {
    detail::put_uint<U>(v != v ? kCanonicalNaN : std::bit_cast<U>(v), out);
  }
  static T decode(std::string_view& in) {
    const U bits = detail::get_uint<U>(in, "floating-point number");
    const T v = std::bit_cast<T>(bits);
    if (v != v && bits != kCanonicalNaN) detail::decode_fail("NaN is not in canonical form");
    return v;
  }
};

template <class Traits, class Alloc>
struct Codec<std::basic_string<char, Traits, Alloc>> {
  using S = std::basic_string<char, Traits, Alloc>;
  static constexpr std::size_t min_size = 8;
  static void encode(const S& s, std::string& out) {
    detail::put_len(s.size(), out);
    out.append(s.data(), s.size());
  }
  static S decode(std::string_view& in) {
    const std::uint64_t n = detail::get_uint<std::uint64_t>(in, "string length");
    if (n > in.size()) {
      detail::decode_fail("string claims " + std::to_string(n) + " bytes but only " +
                          std::to_string(in.size()) + " remain");
    }
    S s(in.data(), static_cast<std::size_t>(n));
    in.remove_prefix(static_cast<std::size_t>(n));
    return s;
  }
};

// Encode-only views of character strings; they encode like std::string.
template <class Traits>
struct Codec<std::basic_string_view<char, Traits>> {
  static constexpr std::size_t min_size = 8;
  static void encode(std::basic_string_view<char, Traits> s, std::string& out) {
    detail::put_len(s.size(), out);
    out.append(s.data(), s.size());
  }
};

// REQUIRES: s points to a NUL-terminated string.
// A null pointer encodes as the length kNullCharPointer and no bytes, which
// no string can have: a null argument is a key of its own (as the plain call
// sees it), never a crash. Otherwise REQUIRES: s points to a NUL-terminated
// string.
template <>
struct Codec<const char*> {
  static constexpr std::size_t min_size = 8;
  static constexpr std::uint64_t kNullCharPointer = ~std::uint64_t{0};
  static void encode(const char* s, std::string& out) {
    if (s == nullptr) {
      detail::put_uint<std::uint64_t>(kNullCharPointer, out);
      return;
    }
    Codec<std::string_view>::encode(std::string_view(s), out);
  }
};
template <>
struct Codec<char*> : Codec<const char*> {};

// A char array (a string literal): the characters before the first NUL.
template <std::size_t N>
struct Codec<char[N]> {
  static constexpr std::size_t min_size = 8;
  static void encode(const char (&s)[N], std::string& out) {
    std::size_t n = 0;
    while (n < N && s[n] != '\0') ++n;
    Codec<std::string_view>::encode(std::string_view(s, n), out);
  }
};

namespace detail {
// Numbers whose encoding is their memory image on this host (integers and
// floats other than bool on a little-endian machine), so a vector of them
// is copied in one memcpy each way: the same bytes as element by element.
template <class T>
inline constexpr bool bulk_number_v =
    std::endian::native == std::endian::little && !std::is_same_v<T, bool> &&
    (std::is_integral_v<T> || std::is_same_v<T, float> || std::is_same_v<T, double>);
}  // namespace detail

template <class T, class Alloc>
struct Codec<std::vector<T, Alloc>> {
  static constexpr std::size_t min_size = 8;
  static void encode(const std::vector<T, Alloc>& v, std::string& out) {
    detail::check_element<T>();
    detail::put_len(v.size(), out);
    if constexpr (detail::bulk_number_v<T>) {
      const std::size_t at = out.size();
      out.resize(at + v.size() * sizeof(T));
      if (!v.empty()) std::memcpy(out.data() + at, v.data(), v.size() * sizeof(T));
      if constexpr (std::is_floating_point_v<T>) {
        for (std::size_t i = 0; i < v.size(); ++i) {
          if (v[i] != v[i]) {  // canonical NaN, as Codec<T> writes it
            const auto nan = Codec<T>::kCanonicalNaN;
            std::memcpy(out.data() + at + i * sizeof(T), &nan, sizeof(T));
          }
        }
      }
      return;
    }
    for (const auto& e : v) detail::encode_element<T>(static_cast<const T&>(e), out);
  }
  static std::vector<T, Alloc> decode(std::string_view& in) {
    detail::check_element<T>();
    const std::size_t n = detail::get_count(in, detail::min_size_v<T>, "vector");
    if constexpr (detail::bulk_number_v<T>) {
      std::vector<T, Alloc> v(n);  // get_count checked n * sizeof(T) <= in.size()
      if (n != 0) std::memcpy(v.data(), in.data(), n * sizeof(T));
      if constexpr (std::is_floating_point_v<T>) {
        for (std::size_t i = 0; i < n; ++i) {
          if (v[i] != v[i]) {
            typename Codec<T>::U bits;
            std::memcpy(&bits, in.data() + i * sizeof(T), sizeof(T));
            if (bits != Codec<T>::kCanonicalNaN) {
              detail::decode_fail("NaN is not in canonical form");
            }
          }
        }
      }
      in.remove_prefix(n * sizeof(T));
      return v;
    }
    // n elements fit in the input (n * min_size bytes), but a T may be far
    // larger in memory than encoded (an empty optional of a big array takes
    // one byte): reserve no more than the input's size in memory, and let a
    // longer vector grow as its elements actually decode.
    std::vector<T, Alloc> v;
    v.reserve(std::min<std::size_t>(n, in.size() / sizeof(T)));
    for (std::size_t i = 0; i < n; ++i) v.push_back(Codec<T>::decode(in));
    return v;
  }
};

// REQUIRES (decode): T is default-constructible and move-assignable.
template <class T, std::size_t N>
struct Codec<std::array<T, N>> {
  static constexpr std::size_t min_size = N * detail::min_size_v<T>;
  static void encode(const std::array<T, N>& a, std::string& out) {
    for (const auto& e : a) Codec<T>::encode(e, out);
  }
  static std::array<T, N> decode(std::string_view& in) {
    std::array<T, N> a{};
    for (auto& e : a) e = Codec<T>::decode(in);
    return a;
  }
};

template <class A, class B>
struct Codec<std::pair<A, B>> {
  static constexpr std::size_t min_size = detail::min_size_v<A> + detail::min_size_v<B>;
  static void encode(const std::pair<A, B>& p, std::string& out) {
    Codec<A>::encode(p.first, out);
    Codec<B>::encode(p.second, out);
  }
  static std::pair<A, B> decode(std::string_view& in) {
    A a = Codec<A>::decode(in);
    return std::pair<A, B>(std::move(a), Codec<B>::decode(in));
  }
};

template <class... Ts>
struct Codec<std::tuple<Ts...>> {
  static constexpr std::size_t min_size = (std::size_t{0} + ... + detail::min_size_v<Ts>);
  static void encode(const std::tuple<Ts...>& t, std::string& out) {
    std::apply([&](const Ts&... e) { (Codec<Ts>::encode(e, out), ...); }, t);
  }
  static std::tuple<Ts...> decode(std::string_view& in) {
    // Braced initialization evaluates its elements left to right.
    return std::tuple<Ts...>{Codec<Ts>::decode(in)...};
  }
};

template <class T>
struct Codec<std::optional<T>> {
  static constexpr std::size_t min_size = 1;
  static void encode(const std::optional<T>& o, std::string& out) {
    out.push_back(o ? '\1' : '\0');
    if (o) Codec<T>::encode(*o, out);
  }
  static std::optional<T> decode(std::string_view& in) {
    const auto tag = detail::get_uint<std::uint8_t>(in, "optional tag");
    if (tag > 1) detail::decode_fail("optional tag is " + std::to_string(tag) + ", not 0 or 1");
    if (tag == 0) return std::nullopt;
    return std::optional<T>(Codec<T>::decode(in));
  }
};

// Throws std::bad_variant_access when encoding a valueless variant.
template <class... Ts>
struct Codec<std::variant<Ts...>> {
  using V = std::variant<Ts...>;
  static_assert(sizeof...(Ts) > 0);
  static constexpr std::size_t min_size = 4;
  static void encode(const V& v, std::string& out) {
    if (v.valueless_by_exception()) throw std::bad_variant_access();
    detail::put_uint<std::uint32_t>(static_cast<std::uint32_t>(v.index()), out);
    std::visit([&out](const auto& x) { Codec<std::remove_cvref_t<decltype(x)>>::encode(x, out); },
               v);
  }
  static V decode(std::string_view& in) {
    const auto index = detail::get_uint<std::uint32_t>(in, "variant index");
    if (index >= sizeof...(Ts)) {
      detail::decode_fail("variant index " + std::to_string(index) + " is out of range (" +
                          std::to_string(sizeof...(Ts)) + " alternatives)");
    }
    return kDecoders<>[index](in);
  }

 private:
  template <std::size_t I>
  static V decode_alternative(std::string_view& in) {
    return V(std::in_place_index<I>, Codec<std::variant_alternative_t<I, V>>::decode(in));
  }
  template <class Seq = std::index_sequence_for<Ts...>>
  static constexpr auto kDecoders = []<std::size_t... I>(std::index_sequence<I...>) {
    return std::array<V (*)(std::string_view&), sizeof...(Ts)>{&decode_alternative<I>...};
  }
  (Seq{});
};

template <class K, class V, class Cmp, class Alloc>
struct Codec<std::map<K, V, Cmp, Alloc>> {
  using M = std::map<K, V, Cmp, Alloc>;
  static constexpr std::size_t min_size = 8;
  static void encode(const M& m, std::string& out) {
    detail::check_element<std::pair<K, V>>();
    detail::put_len(m.size(), out);
    for (const auto& [k, v] : m) {
      const std::size_t before = out.size();
      Codec<K>::encode(k, out);
      Codec<V>::encode(v, out);
      detail::require_progress(before, out);
    }
  }
  static M decode(std::string_view& in) {
    detail::check_element<std::pair<K, V>>();
    const std::size_t n = detail::get_count(in, detail::min_size_v<std::pair<K, V>>, "map");
    M m;
    for (std::size_t i = 0; i < n; ++i) {
      K k = Codec<K>::decode(in);
      if (!m.empty() && !m.key_comp()(std::prev(m.end())->first, k)) {
        detail::decode_fail("map keys are not strictly increasing");
      }
      V v = Codec<V>::decode(in);
      m.emplace_hint(m.end(), std::move(k), std::move(v));
    }
    return m;
  }
};

template <class K, class Cmp, class Alloc>
struct Codec<std::set<K, Cmp, Alloc>> {
  using S = std::set<K, Cmp, Alloc>;
  static constexpr std::size_t min_size = 8;
  static void encode(const S& s, std::string& out) {
    detail::check_element<K>();
    detail::put_len(s.size(), out);
    for (const auto& k : s) detail::encode_element<K>(k, out);
  }
  static S decode(std::string_view& in) {
    detail::check_element<K>();
    const std::size_t n = detail::get_count(in, detail::min_size_v<K>, "set");
    S s;
    for (std::size_t i = 0; i < n; ++i) {
      K k = Codec<K>::decode(in);
      if (!s.empty() && !s.key_comp()(*std::prev(s.end()), k)) {
        detail::decode_fail("set elements are not strictly increasing");
      }
      s.emplace_hint(s.end(), std::move(k));
    }
    return s;
  }
};

template <class K, class V, class Hash, class Eq, class Alloc>
struct Codec<std::unordered_map<K, V, Hash, Eq, Alloc>> {
  using M = std::unordered_map<K, V, Hash, Eq, Alloc>;
  static constexpr std::size_t min_size = 8;
  static void encode(const M& m, std::string& out) {
    detail::check_element<std::pair<K, V>>();
    detail::encode_sorted<std::pair<K, V>>(m, out);
  }
  static M decode(std::string_view& in) {
    detail::check_element<std::pair<K, V>>();
    return detail::decode_sorted<std::pair<K, V>, M>(in, "unordered_map");
  }
};

template <class K, class Hash, class Eq, class Alloc>
struct Codec<std::unordered_set<K, Hash, Eq, Alloc>> {
  using S = std::unordered_set<K, Hash, Eq, Alloc>;
  static constexpr std::size_t min_size = 8;
  static void encode(const S& s, std::string& out) {
    detail::check_element<K>();
    detail::encode_sorted<K>(s, out);
  }
  static S decode(std::string_view& in) {
    detail::check_element<K>();
    return detail::decode_sorted<K, S>(in, "unordered_set");
  }
};

template <class Rep, class Period>
struct Codec<std::chrono::duration<Rep, Period>> {
  using D = std::chrono::duration<Rep, Period>;
  static constexpr std::size_t min_size = detail::min_size_v<Rep>;
  static void encode(const D& d, std::string& out) { Codec<Rep>::encode(d.count(), out); }
  static D decode(std::string_view& in) { return D(Codec<Rep>::decode(in)); }
};

template <class Clock, class Dur>
struct Codec<std::chrono::time_point<Clock, Dur>> {
  using TP = std::chrono::time_point<Clock, Dur>;
  static constexpr std::size_t min_size = detail::min_size_v<Dur>;
  static void encode(const TP& t, std::string& out) {
    Codec<Dur>::encode(t.time_since_epoch(), out);
  }
  static TP decode(std::string_view& in) { return TP(Codec<Dur>::decode(in)); }
};

namespace detail {

// FNV-1a over the parts of a type's shape: the fingerprint of type_fingerprint().
inline constexpr std::uint64_t kShapeBasis = 0xcbf29ce484222325ull;
constexpr std::uint64_t shape_mix(std::uint64_t h, std::string_view part) noexcept {
  for (const char c : part) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  h ^= 0xff;  // an end mark: ("ab", "c") and ("a", "bc") differ
  return h * 0x100000001b3ull;
}
constexpr std::uint64_t shape_mix(std::uint64_t h, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}

// The compiler's spelling of T (GCC and Clang name the type in
// __PRETTY_FUNCTION__); only for user specializations without type_name.
template <class T>
std::string_view compiler_type_name() noexcept {
  return __PRETTY_FUNCTION__;
}

template <class T>
concept user_type_name = requires {
  { Codec<T>::type_name } -> std::convertible_to<std::string_view>;
};

// Shape<T>: whether Codec<T> can encode a T (`encodable`), and a fingerprint
// of how its bytes are laid out (`fingerprint()`): the kind of each part,
// integer widths and signedness, float widths, chrono periods, element and
// member shapes in order. Two types share a fingerprint only if their
// encodings have the same shape.
template <class T, class = void>
struct Shape {
  static constexpr bool primary = [] {
    if constexpr (std::is_abstract_v<T> || std::is_array_v<T> || std::is_void_v<T> ||
                  std::is_function_v<T>) {
      return true;  // no codec, and Codec<T> must not be instantiated
    } else {
      return requires { Codec<T>::tcache_primary_codec; };
    }
  }();
  static constexpr bool encodable = [] {
    if constexpr (!primary) {
      return true;  // a specialization (ours for the leaves, or the user's)
    } else if constexpr (is_pfr_aggregate_v<T>) {
      return []<std::size_t... I>(std::index_sequence<I...>) {
        return (true && ... &&
                Shape<std::remove_cv_t<boost::pfr::tuple_element_t<I, T>>>::encodable);
      }
      (std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
    } else {
      return false;
    }
  }();
  static std::uint64_t fingerprint() noexcept {
    if constexpr (user_type_name<T>) {
      return shape_mix(shape_mix(kShapeBasis, "user"), std::string_view(Codec<T>::type_name));
    } else if constexpr (std::is_same_v<T, bool>) {
      return shape_mix(kShapeBasis, "bool");
    } else if constexpr (std::is_integral_v<T>) {
      return shape_mix(shape_mix(shape_mix(kShapeBasis, "int"), sizeof(T)),
                       std::uint64_t{std::is_signed_v<T>});
    } else if constexpr (std::is_enum_v<T>) {
      return shape_mix(shape_mix(kShapeBasis, "enum"),
                       Shape<std::underlying_type_t<T>>::fingerprint());
    } else if constexpr (std::is_floating_point_v<T>) {
      return shape_mix(shape_mix(kShapeBasis, "float"), sizeof(T));
    } else if constexpr (std::is_same_v<T, const char*> || std::is_same_v<T, char*>) {
      return shape_mix(kShapeBasis, "string");
    } else if constexpr (!primary) {
      return shape_mix(shape_mix(kShapeBasis, "user"), compiler_type_name<T>());
    } else if constexpr (is_pfr_aggregate_v<T>) {
      return []<std::size_t... I>(std::index_sequence<I...>) {
        // As CompositeShape::of("product"): the same shape as a tuple.
        std::uint64_t h =
            shape_mix(shape_mix(shape_mix(kShapeBasis, "product"), std::uint64_t{0}), sizeof...(I));
        ((h = shape_mix(h,
                        Shape<std::remove_cv_t<boost::pfr::tuple_element_t<I, T>>>::fingerprint())),
         ...);
        return h;
      }
      (std::make_index_sequence<boost::pfr::tuple_size_v<T>>{});
    } else {
      return 0;
    }
  }
};

// A shape made of a kind and the shapes of some parts.
template <bool Encodable, class... Parts>
struct CompositeShape {
  static constexpr bool encodable = Encodable && (true && ... && Shape<Parts>::encodable);
  static std::uint64_t of(std::string_view kind, std::uint64_t extra = 0) noexcept {
    std::uint64_t h = shape_mix(shape_mix(shape_mix(kShapeBasis, kind), extra), sizeof...(Parts));
    ((h = shape_mix(h, Shape<Parts>::fingerprint())), ...);
    return h;
  }
};

template <class Traits, class Alloc>
struct Shape<std::basic_string<char, Traits, Alloc>> : CompositeShape<true> {
  static std::uint64_t fingerprint() noexcept { return of("string"); }
};
template <class Traits>
struct Shape<std::basic_string_view<char, Traits>> : CompositeShape<true> {
  static std::uint64_t fingerprint() noexcept { return of("string"); }
};
template <std::size_t N>
struct Shape<char[N]> : CompositeShape<true> {
  static std::uint64_t fingerprint() noexcept { return of("string"); }
};
template <class T, class Alloc>
struct Shape<std::vector<T, Alloc>> : CompositeShape<true, T> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("vector"); }
};
template <class T, std::size_t N>
struct Shape<std::array<T, N>> : CompositeShape<true, T> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("array", N); }
};
template <class A, class B>
struct Shape<std::pair<A, B>> : CompositeShape<true, A, B> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("product"); }
};
template <class... Ts>
struct Shape<std::tuple<Ts...>> : CompositeShape<true, Ts...> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("product"); }
};
template <class T>
struct Shape<std::optional<T>> : CompositeShape<true, T> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("optional"); }
};
template <class... Ts>
struct Shape<std::variant<Ts...>> : CompositeShape<true, Ts...> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("variant"); }
};
template <class K, class V, class Cmp, class Alloc>
struct Shape<std::map<K, V, Cmp, Alloc>> : CompositeShape<true, K, V> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("map"); }
};
template <class K, class Cmp, class Alloc>
struct Shape<std::set<K, Cmp, Alloc>> : CompositeShape<true, K> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("set"); }
};
template <class K, class V, class Hash, class Eq, class Alloc>
struct Shape<std::unordered_map<K, V, Hash, Eq, Alloc>> : CompositeShape<true, K, V> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("unordered_map"); }
};
template <class K, class Hash, class Eq, class Alloc>
struct Shape<std::unordered_set<K, Hash, Eq, Alloc>> : CompositeShape<true, K> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("unordered_set"); }
};
template <class Rep, class Period>
struct Shape<std::chrono::duration<Rep, Period>> : CompositeShape<true, Rep> {
  static std::uint64_t fingerprint() noexcept {
    return shape_mix(Shape::of("duration", static_cast<std::uint64_t>(Period::num)),
                     static_cast<std::uint64_t>(Period::den));
  }
};
template <class Clock, class Dur>
struct Shape<std::chrono::time_point<Clock, Dur>> : CompositeShape<true, Dur> {
  static std::uint64_t fingerprint() noexcept { return Shape::of("time_point"); }
};

}  // namespace detail

// Whether tcache::Codec<T> can encode a T (cv-qualifiers ignored): the types
// in the table above, aggregates of them, and user specializations.
template <class T>
inline constexpr bool has_codec_v = detail::Shape<std::remove_cv_t<T>>::encodable;

// A fingerprint of the shape of T's encoding (see detail::Shape): the
// decorators store it with each value and treat a value stored under another
// fingerprint as a miss, so a changed result type is never decoded as the old
// one. Stable across processes and builds on one platform, except for user
// specializations without a `static constexpr std::string_view type_name`
// member, which are fingerprinted by the compiler's spelling of T (give
// type_name to keep their values across compilers). Aggregates with the same
// member types in the same order share a fingerprint, as do std::pair and
// std::tuple of the same types. REQUIRES: has_codec_v<T>.
template <class T>
std::uint64_t type_fingerprint() noexcept {
  static_assert(has_codec_v<T>, "tcache::type_fingerprint: T has no codec");
  return detail::Shape<std::remove_cv_t<T>>::fingerprint();
}

// Returns the encoding of v.
template <class T>
std::string encode(const T& v) {
  std::string out;
  Codec<std::remove_cv_t<T>>::encode(v, out);
  return out;
}

// Decodes a T that must occupy all of bytes. Throws Error(decode_error) on
// malformed input or if bytes remain after the value.
template <class T>
T decode(std::string_view bytes) {
  T v = Codec<T>::decode(bytes);
  if (!bytes.empty()) {
    detail::decode_fail(std::to_string(bytes.size()) + " trailing bytes after the value");
  }
  return v;
}

// Appends the encodings of args in order: the same bytes as encoding
// std::tuple<Args...>(args...) (with string literals as std::string).
template <class... Args>
void encode_args(std::string& out, const Args&... args) {
  (Codec<std::remove_cv_t<Args>>::encode(args, out), ...);
}

}  // namespace tcache
