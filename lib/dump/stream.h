// dump/stream.h: the byte layout of a dump stream (doc/DUMP_FORMAT.md), its
// constants, and the encoder that writes it. dump() writes every stream
// with it; the dump fuzzer and the tests build crafted streams with it (any
// field value, checksums recomputed), so that they reach past the checksums
// into the checks behind them.
//
// Thread safety: StreamEncoder is a plain value; one per stream.

#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

namespace tcache::detail {

inline constexpr char kDumpMagic[8] = {'t', 'c', 'd', 'u', 'm', 'p', '\0', '\n'};
inline constexpr std::uint32_t kDumpVersion = 1;
inline constexpr std::size_t kDumpHeaderBytes = 32;
inline constexpr std::uint8_t kDumpRecord = 1;
inline constexpr std::uint8_t kDumpTrailer = 0xff;
inline constexpr std::size_t kDumpRecordHead = 1 + 4 + 8 + 8;  // kind, key and value lengths, TTL
inline constexpr std::size_t kDumpTrailerBytes = 1 + 8 + 8 + 8;
inline constexpr std::uint64_t kDumpMaxValue = 1ull << 40;  // value lengths are below this
// TTLs are at most this: Store::put takes a signed millisecond count.
inline constexpr std::uint64_t kDumpMaxTtlMs = std::numeric_limits<std::int64_t>::max();

// Appends `v` little-endian (the hosts tcache supports are; see codec.h).
template <class U>
void append_le(std::string& out, U v) {
  char b[sizeof(U)];
  std::memcpy(b, &v, sizeof(U));
  out.append(b, sizeof(U));
}

class StreamEncoder {
 public:
  StreamEncoder() { XXH3_64bits_reset(&sums_); }

  // Appends the header. The defaults are what dump() writes.
  static void header(std::string& out, std::uint64_t unix_ms, std::uint32_t version = kDumpVersion,
                     std::uint32_t flags = 0) {
    const std::size_t at = out.size();
    out.append(kDumpMagic, sizeof kDumpMagic);
    append_le<std::uint32_t>(out, version);
    append_le<std::uint32_t>(out, flags);
    append_le<std::uint64_t>(out, unix_ms);
    append_le<std::uint64_t>(out, XXH3_64bits(out.data() + at, out.size() - at));
  }

  // Appends a record of `key` and `value` with its checksum.
  void record(std::string& out, std::string_view key, std::string_view value,
              std::uint64_t ttl_ms) {
    const std::size_t at = out.size();
    out.push_back(static_cast<char>(kDumpRecord));
    append_le<std::uint32_t>(out, static_cast<std::uint32_t>(key.size()));
    append_le<std::uint64_t>(out, value.size());
    append_le<std::uint64_t>(out, ttl_ms);
    out.append(key);
    out.append(value);
    seal(out, at);
  }

  // Appends a crafted record: the fields as given (they may disagree with
  // `body`, the bytes after the record head), and a checksum that matches.
  void crafted_record(std::string& out, std::uint8_t kind, std::uint32_t key_length,
                      std::uint64_t value_length, std::uint64_t ttl_ms, std::string_view body) {
    const std::size_t at = out.size();
    out.push_back(static_cast<char>(kind));
    append_le<std::uint32_t>(out, key_length);
    append_le<std::uint64_t>(out, value_length);
    append_le<std::uint64_t>(out, ttl_ms);
    out.append(body);
    seal(out, at);
  }

  // Appends the trailer: the record count (or `count` for a crafted one)
  // and the hash of the records' checksums.
  void trailer(std::string& out) { trailer(out, records_); }
  void trailer(std::string& out, std::uint64_t count) {
    const std::size_t at = out.size();
    out.push_back(static_cast<char>(kDumpTrailer));
    append_le<std::uint64_t>(out, count);
    append_le<std::uint64_t>(out, XXH3_64bits_digest(&sums_));
    append_le<std::uint64_t>(out, XXH3_64bits(out.data() + at, out.size() - at));
  }

  std::uint64_t records() const { return records_; }

 private:
  // Appends the checksum of out[at..] and adds it to the trailer's sum.
  void seal(std::string& out, std::size_t at) {
    const std::uint64_t sum = XXH3_64bits(out.data() + at, out.size() - at);
    append_le<std::uint64_t>(out, sum);
    XXH3_64bits_update(&sums_, &sum, sizeof sum);
    ++records_;
  }

  XXH3_state_t sums_;
  std::uint64_t records_ = 0;
};

}  // namespace tcache::detail
