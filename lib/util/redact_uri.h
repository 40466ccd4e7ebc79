// util/redact_uri.h: a URI as error messages and warnings may show it.
//
// Thread safety: a pure function; safe from any thread.

#pragma once

#include <string>
#include <string_view>

namespace tcache::detail {

// `uri` as messages may show it: never its user information. Everything
// from the scheme's "://" to the last '@' becomes "***@" (a password with an
// unencoded '@' or '/' included); a URI without '@' is shown as it is.
std::string redact_uri(std::string_view uri);

}  // namespace tcache::detail
