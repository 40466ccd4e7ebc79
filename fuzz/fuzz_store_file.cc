// Fuzzes opening and using a damaged cache file.
//
// The input is a list of patches applied to a valid, populated cache file
// (kept in memory and rewritten each run): [u32 offset][u8 length][bytes].
// Patching a real file reaches far deeper than random bytes would, since the
// header checksum rejects nearly all of those. The oracle: opening may throw
// tcache::Error, but nothing may crash, and a value read must be exactly the
// value that was put under that key.

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tcache/tcache.h"

namespace {

constexpr int kKeys = 300;
std::string key(int i) { return "k" + std::to_string(i); }
std::string value(int i) {
  return std::string(static_cast<std::size_t>(i % 200), 'v') + std::to_string(i);
}

const std::string& path() {
  static const std::string p = [] {
    char tmpl[] = "/tmp/tcache-fuzz-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    return std::string(tmpl) + "/cache.tc";
  }();
  return p;
}

const std::string& pristine() {
  static const std::string bytes = [] {
    tcache::StoreOptions o;
    o.capacity_bytes = 1u << 20;
    o.expected_entry_bytes = 128;
    {
      auto s = tcache::Store::open(path(), o);
      for (int i = 0; i < kKeys; ++i) s.put(key(i), value(i), std::chrono::hours(i % 3));
    }
    std::string b(1u << 20, '\0');
    const int fd = ::open(path().c_str(), O_RDONLY);
    const ssize_t n = ::pread(fd, b.data(), b.size(), 0);
    ::close(fd);
    b.resize(static_cast<std::size_t>(n));
    return b;
  }();
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string file = pristine();
  for (std::size_t i = 0; i + 5 <= size;) {
    std::uint32_t off;
    std::memcpy(&off, data + i, 4);
    const std::size_t len = data[i + 4];
    i += 5;
    const std::size_t n = std::min({len, size - i, file.size()});
    off %= static_cast<std::uint32_t>(file.size() - n + 1);
    std::memcpy(file.data() + off, data + i, n);
    i += n;
  }
  const int fd = ::open(path().c_str(), O_WRONLY | O_TRUNC);
  if (fd < 0 || ::write(fd, file.data(), file.size()) != static_cast<ssize_t>(file.size())) {
    std::abort();
  }
  ::close(fd);
  try {
    auto s = tcache::Store::open(path());
    std::string v;
    for (int i = 0; i < kKeys; i += 7) {
      if (s.get(key(i), v) && v != value(i)) std::abort();  // a wrong value: the one real bug
    }
    for (int i = 0; i < 20; ++i) s.put("n" + std::to_string(i), value(i));
    for (int i = 0; i < 20; ++i) {
      if (s.get("n" + std::to_string(i), v) && v != value(i)) std::abort();
    }
    s.erase(key(1));
    (void)s.stats();
  } catch (const tcache::Error&) {
    // A typed error is a correct answer to a damaged file.
  }
  return 0;
}
