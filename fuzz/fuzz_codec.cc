// Fuzzes tcache/codec.h decoding of arbitrary bytes as a few nested types,
// and fcache's value frames (LZ4 / LZ4HC / raw) in front of a codec.
//
// The oracle: decode may throw tcache::Error (and nothing else), but never
// crash. When it succeeds, the input was a canonical encoding, so encoding
// the value gives back exactly the input; decoding that again gives a value
// that encodes to the same bytes (values are compared through their
// encodings, since NaN != NaN).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <variant>
#include <vector>

#include "tcache/codec.h"
#include "tcache/decorators.h"

namespace {

using Deep = std::map<std::string,
                      std::vector<std::optional<std::variant<std::int64_t, double, std::string>>>>;
using Flat = std::unordered_map<std::int32_t, std::pair<bool, std::vector<float>>>;

template <class T>
void round_trip(std::string_view bytes) {
  T value;
  try {
    value = tcache::decode<T>(bytes);
  } catch (const tcache::Error& e) {
    if (e.code() != tcache::Errc::decode_error) std::abort();
    return;
  }
  const std::string enc = tcache::encode(value);
  if (enc != bytes) std::abort();  // decode accepts only canonical encodings
  const T again = tcache::decode<T>(enc);
  if (tcache::encode(again) != enc) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the type.
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      round_trip<Deep>(bytes);
      break;
    case 1:
      round_trip<Flat>(bytes);
      break;
    case 2:
      round_trip<std::set<std::tuple<std::uint8_t, std::string>>>(bytes);
      break;
    default: {
      std::string raw;
      try {
        std::string scratch;
        raw = tcache::detail::open_value_frame(  // an fcache frame
            bytes, tcache::type_fingerprint<std::vector<double>>(), scratch);
      } catch (const tcache::Error& e) {
        if (e.code() != tcache::Errc::decode_error) std::abort();
        return 0;
      }
      round_trip<std::vector<double>>(raw);
      break;
    }
  }
  return 0;
}
