// Fuzzes the dump stream parser (tcache/dump.h, lib/dump/DUMP_FORMAT.md).
//
// The oracle: verify_dump may throw tcache::Error (and nothing else), but
// never crash, and never allocates for a length the input cannot back.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include "tcache/dump.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  try {
    (void)tcache::verify_dump(in);
  } catch (const tcache::Error&) {
  }
  return 0;
}
