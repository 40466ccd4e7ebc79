// tcache/dump.h: a portable, versioned, checksummed stream of a cache's
// live entries, to move a cache between machines, builds or geometries
// (the library side of `tcache-tool dump` and `load`). The byte layout is
// doc/DUMP_FORMAT.md.
//
// Thread safety: dump() and load() may run while other threads and
// processes use the store; they see (dump) or add to (load) the store like
// any other caller. Each call uses its stream alone.
//
// Errors: tcache::Error. A damaged or foreign stream is Errc::corrupt_file
// with the byte offset and what was wrong; a stream of another format
// version is Errc::version_mismatch; stream I/O failures are Errc::io_error.

#pragma once

#include <cstdint>
#include <functional>
#include <istream>
#include <ostream>

#include "tcache/export.h"
#include "tcache/store.h"

namespace tcache {

struct DumpResult {
  std::uint64_t entries = 0;  // entries written or loaded
  std::uint64_t bytes = 0;    // stream bytes written or read
};

// Called now and then with (bytes done, bytes in all); all may be 0 when
// unknown. For progress bars; may be empty.
using Progress = std::function<void(std::uint64_t done, std::uint64_t total)>;

// Writes every live entry of `store` (key, value, remaining TTL) to `out`.
// Entries put or erased meanwhile may or may not be included; each one
// included is complete. Throws Error(io_error) if `out` fails.
TCACHE_API DumpResult dump(Store& store, std::ostream& out, const Progress& progress = {});

struct LoadOptions {
  // false: the whole stream is checked first and nothing is loaded if any
  // of it is damaged. true: entries are loaded as they are read, up to the
  // first damaged record (the error still says where that was).
  bool partial = false;
  Progress progress{};
};

// Puts every entry of a stream written by dump() into `store`, each with
// the TTL it had left when dumped. A stream that cannot be read twice
// (a pipe) is first copied to an unnamed temporary file. Unless
// options.partial, the whole stream is checked before anything is put:
// every field of every record, and that each value fits `store`
// (Errc::value_too_large otherwise), so a refused stream loads nothing.
// Throws Error: corrupt_file (offset and cause), version_mismatch,
// value_too_large, io_error, and what Store::put throws.
TCACHE_API DumpResult load(Store& store, std::istream& in, const LoadOptions& options = {});

// Checks a stream without loading it: what load() checks first. Returns
// the number of entries; throws as load() does.
TCACHE_API std::uint64_t verify_dump(std::istream& in);

}  // namespace tcache
