// dump/dump.cc: tcache::dump / load / verify_dump; see doc/DUMP_FORMAT.md.
//
// Thread safety: no shared state; each call works on its own stream and
// reaches the store through its public, thread-safe API.

#include "tcache/dump.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>

#include "dump/stream.h"
#include "util/fail.h"
#include "util/proc.h"

namespace tcache {
namespace {

using detail::kDumpHeaderBytes;
using detail::kDumpMaxTtlMs;
using detail::kDumpMaxValue;
using detail::kDumpRecord;
using detail::kDumpRecordHead;
using detail::kDumpTrailer;
using detail::kDumpVersion;
constexpr std::uint64_t kProgressEvery = 1 << 20;
constexpr std::uint64_t kReadPiece = 1 << 20;  // value bytes read (and allocated) at a time

template <class U>
U get(const char* p) {
  U v;
  std::memcpy(&v, p, sizeof(U));
  return v;
}

std::uint64_t xxh(const void* p, std::size_t n) { return XXH3_64bits(p, n); }

[[noreturn]] void corrupt(std::uint64_t offset, const std::string& what) {
  detail::fail(Errc::corrupt_file, "dump stream damaged at byte " + std::to_string(offset) + ": " +
                                       what + "; nothing after it can be trusted");
}

void write(std::ostream& out, const std::string& bytes) {
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) detail::fail(Errc::io_error, "cannot write the dump stream (disk full?)");
}

// Reads a stream record by record, checking everything doc/DUMP_FORMAT.md says.
class Reader {
 public:
  explicit Reader(std::istream& in) : in_(in) {}

  void header() {
    char h[kDumpHeaderBytes];
    read(h, kDumpHeaderBytes, "the header");
    if (std::memcmp(h, detail::kDumpMagic, 8) != 0) {
      detail::fail(Errc::corrupt_file, "not a tcache dump stream (bad magic)");
    }
    if (get<std::uint64_t>(h + 24) != xxh(h, 24)) corrupt(0, "header checksum mismatch");
    if (get<std::uint32_t>(h + 8) != kDumpVersion) {
      detail::fail(Errc::version_mismatch,
                   "dump stream format version " + std::to_string(get<std::uint32_t>(h + 8)) +
                       ", this tcache reads version " + std::to_string(kDumpVersion) +
                       "; load it with the tcache that wrote it");
    }
    if (get<std::uint32_t>(h + 12) != 0) corrupt(12, "unknown flags");
  }

  // Next record into key/value/ttl; false at a valid trailer (then the
  // stream must end).
  bool next(std::string& key, std::string& value, std::uint64_t& ttl_ms) {
    const std::uint64_t at = offset_;
    char kind;
    read(&kind, 1, "a record");
    if (static_cast<std::uint8_t>(kind) == kDumpTrailer) {
      char t[24];
      read(t, 24, "the trailer");
      std::string whole(1, kind);
      whole.append(t, 16);
      if (get<std::uint64_t>(t + 16) != xxh(whole.data(), whole.size())) {
        corrupt(at, "trailer checksum mismatch");
      }
      if (get<std::uint64_t>(t) != count_) {
        corrupt(at, "trailer says " + std::to_string(get<std::uint64_t>(t)) + " records, " +
                        std::to_string(count_) + " were read");
      }
      if (get<std::uint64_t>(t + 8) != XXH3_64bits_digest(sums_.get())) {
        corrupt(at, "record checksums do not add up to the trailer's");
      }
      if (in_.peek() != std::char_traits<char>::eof()) corrupt(offset_, "bytes after the trailer");
      return false;
    }
    if (static_cast<std::uint8_t>(kind) != kDumpRecord) corrupt(at, "unknown record kind");
    char h[kDumpRecordHead - 1];
    read(h, sizeof h, "a record header");
    const std::uint32_t klen = get<std::uint32_t>(h);
    const std::uint64_t vlen = get<std::uint64_t>(h + 4);
    ttl_ms = get<std::uint64_t>(h + 12);
    if (klen == 0 || klen > Store::kMaxKeyBytes) corrupt(at, "bad key length");
    if (vlen >= kDumpMaxValue) corrupt(at, "bad value length");
    // Store::put takes a signed millisecond count: a larger TTL would pass
    // here and fail the load halfway (dump never writes one).
    if (ttl_ms > kDumpMaxTtlMs)
      corrupt(at, "TTL of " + std::to_string(ttl_ms) + " ms out of range");
    key.resize(klen);
    read(key.data(), klen, "a key");
    // Grown as bytes arrive, so a bogus length in a short stream costs no
    // more memory than the stream itself.
    value.clear();
    for (std::uint64_t left = vlen; left != 0;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left, kReadPiece));
      const std::size_t at = value.size();
      value.resize(at + n);
      read(value.data() + at, n, "a value");
      left -= n;
    }
    char sum[8];
    read(sum, 8, "a record checksum");
    XXH3_state_t st;
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, &kind, 1);
    XXH3_64bits_update(&st, h, sizeof h);
    XXH3_64bits_update(&st, key.data(), key.size());
    XXH3_64bits_update(&st, value.data(), value.size());
    if (get<std::uint64_t>(sum) != XXH3_64bits_digest(&st)) corrupt(at, "record checksum mismatch");
    XXH3_64bits_update(sums_.get(), sum, 8);
    ++count_;
    return true;
  }

  std::uint64_t offset() const { return offset_; }
  std::uint64_t count() const { return count_; }

 private:
  void read(char* p, std::size_t n, const char* what) {
    in_.read(p, static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(in_.gcount()) != n) {
      if (in_.bad()) detail::fail(Errc::io_error, "cannot read the dump stream");
      corrupt(offset_, std::string("stream ends inside ") + what + " (cut short?)");
    }
    offset_ += n;
  }

  struct FreeState {
    void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
  };
  std::istream& in_;
  std::uint64_t offset_ = 0;
  std::uint64_t count_ = 0;
  std::unique_ptr<XXH3_state_t, FreeState> sums_{[] {
    XXH3_state_t* s = XXH3_createState();
    XXH3_64bits_reset(s);
    return s;
  }()};
};

// Reads all of `in` with `reader`, calling apply for each record.
template <class Apply>
std::uint64_t read_all(std::istream& in, const Progress& progress, std::uint64_t total,
                       Apply&& apply) {
  Reader reader(in);
  reader.header();
  std::string key;
  std::string value;
  std::uint64_t ttl = 0;
  std::uint64_t reported = 0;
  while (reader.next(key, value, ttl)) {
    apply(key, value, ttl);
    if (progress && reader.offset() - reported >= kProgressEvery) {
      reported = reader.offset();
      progress(reported, total);
    }
  }
  if (progress) progress(reader.offset(), total);
  return reader.offset();
}

}  // namespace

DumpResult dump(Store& store, std::ostream& out, const Progress& progress) {
  std::string buf;
  detail::StreamEncoder encoder;
  encoder.header(buf, detail::now_unix_ms());
  write(out, buf);
  DumpResult r;
  r.bytes = buf.size();
  const std::uint64_t total = store.stats().bytes;
  std::uint64_t reported = 0;
  store.for_each({}, [&](const EntryInfo& e, std::string_view value) {
    const std::uint64_t now = detail::now_unix_ms();
    if (e.expires_at_ms != 0 && e.expires_at_ms <= now) return true;  // expired meanwhile
    buf.clear();
    encoder.record(buf, e.key, value,
                   e.expires_at_ms == 0 ? 0 : std::min(e.expires_at_ms - now, kDumpMaxTtlMs));
    write(out, buf);
    ++r.entries;
    r.bytes += buf.size();
    if (progress && r.bytes - reported >= kProgressEvery) {
      reported = r.bytes;
      progress(reported, total);
    }
    return true;
  });
  buf.clear();
  encoder.trailer(buf);
  write(out, buf);
  out.flush();
  if (!out) detail::fail(Errc::io_error, "cannot write the dump stream (disk full?)");
  r.bytes += buf.size();
  if (progress) progress(r.bytes, r.bytes);
  return r;
}

std::uint64_t verify_dump(std::istream& in) {
  std::uint64_t n = 0;
  read_all(in, {}, 0, [&](const std::string&, const std::string&, std::uint64_t) { ++n; });
  return n;
}

DumpResult load(Store& store, std::istream& in, const LoadOptions& options) {
  DumpResult r;
  auto apply = [&](const std::string& key, const std::string& value, std::uint64_t ttl) {
    store.put(key, value, std::chrono::milliseconds(ttl));
    ++r.entries;
  };
  if (options.partial) {
    r.bytes = read_all(in, options.progress, 0, apply);
    return r;
  }
  // Check all of it first, then load: a damaged stream loads nothing.
  std::istream* src = &in;
  std::fstream spool;
  if (in.tellg() == std::streampos(-1)) {
    // A pipe: copy it to an unnamed temporary file, to read it twice.
    std::string name = (std::filesystem::temp_directory_path() / "tcache-load.XXXXXX").string();
    const int fd = ::mkstemp(name.data());
    if (fd < 0) {
      detail::fail_errno(errno, "cannot create a temporary file", name,
                         "set TMPDIR to a writable directory, or load from a file");
    }
    ::close(fd);
    spool.open(name, std::ios::in | std::ios::out | std::ios::binary | std::ios::trunc);
    ::unlink(name.c_str());  // gone when closed
    spool << in.rdbuf();
    if (in.bad() || !spool) {
      detail::fail(Errc::io_error, "cannot copy the dump stream to a temporary file (disk full?)");
    }
    spool.seekg(0);
    src = &spool;
  }
  const std::streampos from = src->tellg();
  src->seekg(0, std::ios::end);
  const auto total = static_cast<std::uint64_t>(src->tellg() - from);
  src->seekg(from);
  // The first pass also checks what the store would refuse, so that no
  // record fails halfway through the load.
  const std::size_t max_value = store.max_value_bytes();
  read_all(*src, {}, 0, [&](const std::string& key, const std::string& value, std::uint64_t) {
    if (value.size() > max_value) {
      detail::fail(Errc::value_too_large,
                   "the dump holds a value of " + std::to_string(value.size()) + " bytes (key of " +
                       std::to_string(key.size()) + " bytes), more than this cache file's " +
                       std::to_string(max_value) +
                       "-byte limit; nothing was loaded: load into a file with a larger "
                       "capacity, or load with partial (tcache-tool load --partial) for the "
                       "entries before it");
    }
  });
  src->clear();
  src->seekg(from);
  r.bytes = read_all(*src, options.progress, total, apply);
  return r;
}

}  // namespace tcache
