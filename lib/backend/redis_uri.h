// backend/redis_uri.h: where a Redis backend connects, parsed from its URI.
//
//   redis://[[user]:password@]host[:port][/db][?option=value&...]
//   redis+unix://[[user]:password@]/path/to/socket[?db=N&option=value...]
//
// Query options: db, connect_timeout, command_timeout, pool_size,
// retry_min, retry_max, compress_threshold, default_ttl, local_ttl, prefix
// (the key prefix). Durations are milliseconds ("250") or carry a unit ("250ms",
// "2s", "1m"). User, password, path and values are percent-decoded.
//
// Thread safety: pure functions; safe from any thread.

#pragma once

#include <string>
#include <string_view>

#include "tcache/backend.h"
#include "util/redact_uri.h"

namespace tcache::detail {

struct RedisEndpoint {
  bool unix_socket = false;
  std::string host;  // TCP: a name, an IPv4 address or an IPv6 one (without brackets)
  int port = 6379;
  std::string path;  // unix socket
  std::string user;  // "" = the default user (AUTH password only)
  std::string password;
  bool has_password = false;
  int db = 0;
  // For messages, rebuilt from the parts above with any user information
  // as "***@" ("redis://***@host:6379/0"): never print a password.
  std::string display;
};

// Parses `uri` and applies its query options to `options`. Throws
// Error(invalid_option) saying what is malformed; its message never quotes
// the user information, nor any part of a URI whose '@' the parser could
// not place (see redact_uri).
RedisEndpoint parse_redis_uri(const std::string& uri, RedisOptions& options);

// Throws Error(invalid_option) naming the first option out of range.
void check_redis_options(const RedisOptions& options, const std::string& display);

}  // namespace tcache::detail
