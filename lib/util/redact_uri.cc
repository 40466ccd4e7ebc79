// util/redact_uri.cc: see redact_uri.h.

#include "util/redact_uri.h"

namespace tcache::detail {

std::string redact_uri(std::string_view uri) {
  const std::size_t at = uri.rfind('@');
  if (at == std::string_view::npos) return std::string(uri);
  const std::size_t scheme = uri.find("://");
  const std::size_t start = scheme == std::string_view::npos || scheme > at ? 0 : scheme + 3;
  return std::string(uri.substr(0, start)) + "***" + std::string(uri.substr(at));
}

}  // namespace tcache::detail
