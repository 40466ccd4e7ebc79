// Fuzzes the dump stream reader (tcache/dump.h, doc/DUMP_FORMAT.md).
//
// Structure-aware: random bytes would almost never get past the stream's
// checksums, so an input that does not start like a stream ('t', as in
// "tcdump") is a recipe: FuzzedDataProvider turns it into a header, records
// and a trailer with any field values (lengths that lie, huge TTLs, unknown
// kinds, wrong counts), written with lib/dump/stream.h so that every
// checksum matches, then optionally damaged (a flipped byte, a cut, extra
// bytes). Inputs that start with 't' are read as a stream as they are.
//
// The oracle: verify_dump and load may throw tcache::Error (and nothing
// else), never crash, and never allocate for a length the input cannot back;
// a stream that verify_dump refuses loads nothing, and one it accepts loads
// (unless a value is too large for the store, which also loads nothing).

#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "dump/stream.h"
#include "tcache/dump.h"
#include "tcache/store.h"

namespace {

std::uint64_t pick_ttl(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0:
      return 0;
    case 1:
      return in.ConsumeIntegralInRange<std::uint64_t>(1, 1u << 30);
    case 2:
      return tcache::detail::kDumpMaxTtlMs;
    case 3:
      return tcache::detail::kDumpMaxTtlMs + 1;
    default:
      return in.ConsumeIntegral<std::uint64_t>();
  }
}

std::string recipe_stream(FuzzedDataProvider& in) {
  using namespace tcache::detail;
  std::string out;
  StreamEncoder encoder;
  const std::uint32_t version =
      in.ConsumeBool() ? kDumpVersion : in.ConsumeIntegral<std::uint32_t>();
  const std::uint32_t flags =
      in.ConsumeProbability<float>() < 0.9f ? 0 : in.ConsumeIntegral<std::uint32_t>();
  encoder.header(out, in.ConsumeIntegral<std::uint64_t>(), version, flags);
  const int records = in.ConsumeIntegralInRange<int>(0, 6);
  for (int r = 0; r < records; ++r) {
    const std::string key = in.ConsumeRandomLengthString(in.ConsumeBool() ? 32 : 20000);
    const std::string value = in.ConsumeRandomLengthString(4096);
    const std::uint64_t ttl = pick_ttl(in);
    if (in.ConsumeProbability<float>() < 0.8f) {
      encoder.record(out, key, value, ttl);
      continue;
    }
    // Crafted: any kind and declared lengths, with a matching checksum.
    const auto kind = in.ConsumeBool() ? kDumpRecord : in.ConsumeIntegral<std::uint8_t>();
    const auto klen = in.ConsumeBool() ? static_cast<std::uint32_t>(key.size())
                                       : in.ConsumeIntegral<std::uint32_t>();
    const std::uint64_t vlen =
        in.ConsumeBool() ? value.size() : in.ConsumeIntegral<std::uint64_t>();
    encoder.crafted_record(out, kind, klen, vlen, ttl, key + value);
  }
  if (in.ConsumeProbability<float>() < 0.9f) {
    encoder.trailer(out);
  } else {
    encoder.trailer(out, in.ConsumeIntegral<std::uint64_t>());
  }
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:  // flip a byte (the checksums no longer match)
      if (!out.empty()) {
        out[in.ConsumeIntegralInRange<std::size_t>(0, out.size() - 1)] ^=
            static_cast<char>(in.ConsumeIntegralInRange<int>(1, 255));
      }
      break;
    case 1:  // cut
      out.resize(in.ConsumeIntegralInRange<std::size_t>(0, out.size()));
      break;
    case 2:  // bytes after the trailer
      out += in.ConsumeRandomLengthString(16);
      break;
    default:
      break;
  }
  return out;
}

// One store for the whole run, in a private temporary directory removed
// at exit.
char g_dir[] = "/tmp/fuzz_dump.XXXXXX";

void remove_dir() { std::filesystem::remove_all(g_dir); }

tcache::Store& store() {
  static tcache::Store* s = [] {
    if (::mkdtemp(g_dir) == nullptr) std::abort();
    std::atexit(remove_dir);
    tcache::StoreOptions options;
    options.capacity_bytes = 1ull << 20;  // the smallest: clear() walks less
    return new tcache::Store(tcache::Store::open(std::string(g_dir) + "/load.tcache", options));
  }();
  return *s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string stream;
  if (size > 0 && data[0] == 't') {
    stream.assign(reinterpret_cast<const char*>(data), size);
  } else {
    FuzzedDataProvider in(data, size);
    stream = recipe_stream(in);
  }
  bool verified = false;
  {
    std::istringstream src(stream);
    try {
      (void)tcache::verify_dump(src);
      verified = true;
    } catch (const tcache::Error&) {
    }
  }
  tcache::Store& s = store();
  std::istringstream src(stream);
  try {
    (void)tcache::load(s, src);
    s.clear();
    if (!verified) {
      std::fprintf(stderr, "load accepted a stream that verify_dump refused\n");
      std::abort();
    }
  } catch (const tcache::Error& e) {
    if (s.stats().entries != 0) {
      std::fprintf(stderr, "a refused stream loaded entries: %s\n", e.what());
      std::abort();
    }
    if (verified && e.code() != tcache::Errc::value_too_large) {
      std::fprintf(stderr, "load refused a stream that verify_dump accepted: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
