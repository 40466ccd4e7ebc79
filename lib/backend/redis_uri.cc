// backend/redis_uri.cc: parsing Redis URIs (see redis_uri.h).
//
// Thread safety: pure functions; safe from any thread.

#include "backend/redis_uri.h"

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/fail.h"

namespace tcache::detail {
namespace {

constexpr std::string_view kTcpScheme = "redis://";
constexpr std::string_view kUnixScheme = "redis+unix://";

// A URI as messages may show it: redacted (redact_uri), and whether its
// parts may be quoted. They may not when an '@' stands where the parser will
// not take it for the end of the user information (a password with an
// unencoded '@', '/', '?' or '#'): a part cut from such a URI may hold a
// piece of the password.
struct Shown {
  std::string text;
  bool parts = true;

  explicit Shown(std::string_view uri) : text(redact_uri(uri)) {
    const std::size_t scheme = uri.find("://");
    const std::size_t start = scheme == std::string_view::npos ? 0 : scheme + 3;
    const std::size_t at = uri.find('@');
    if (at == std::string_view::npos) return;
    const std::size_t delim = uri.find_first_of("/?#", start);
    parts = at >= start && uri.find('@', at + 1) == std::string_view::npos &&
            (delim == std::string_view::npos || at < delim);
  }
  // 'part', or a mention that it is not shown.
  std::string quote(std::string_view part) const {
    if (!parts) return "(not shown)";
    std::string q(1, '\'');
    q.append(part);
    q += '\'';
    return q;
  }
};

[[noreturn]] void bad(const Shown& shown, const std::string& why) {
  fail(Errc::invalid_option,
       "redis backend: malformed URI '" + shown.text + "': " + why +
           (shown.parts ? ""
                        : "; percent-encode '@', '/', '?' and '#' in a password (%40, %2F, %3F, "
                          "%23)") +
           " (expected redis://[[user]:password@]host[:port][/db] or "
           "redis+unix://[[user]:password@]/path/to/socket[?db=N])");
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s, const Shown& shown, const char* what) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 2 < s.size() ? hex_digit(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? hex_digit(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) bad(shown, std::string("bad %-escape in the ") + what);
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// A non-negative decimal integer of at most `max`; false if it is not one.
bool parse_uint(std::string_view s, std::uint64_t max, std::uint64_t& out) {
  if (s.empty()) return false;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return r.ec == std::errc() && r.ptr == s.data() + s.size() && out <= max;
}

// "250", "250ms", "2s", "1m" -> milliseconds; false if malformed.
bool parse_duration(std::string_view s, std::chrono::milliseconds& out) {
  std::size_t digits = 0;
  while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
  std::uint64_t n = 0;
  if (!parse_uint(s.substr(0, digits), 1ull << 40, n)) return false;
  const std::string_view unit = s.substr(digits);
  if (unit.empty() || unit == "ms") {
    out = std::chrono::milliseconds(n);
  } else if (unit == "s") {
    out = std::chrono::seconds(n);
  } else if (unit == "m") {
    out = std::chrono::minutes(n);
  } else {
    return false;
  }
  return true;
}

void apply_query(std::string_view query, const Shown& shown, RedisOptions& o, bool& db_set,
                 int& db) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos)
      bad(shown, "query parameter " + shown.quote(pair) + " has no value");
    const std::string name(pair.substr(0, eq));
    const std::string value = percent_decode(pair.substr(eq + 1), shown, "query");
    std::chrono::milliseconds d{};
    std::uint64_t n = 0;
    const auto need = [&](bool ok, const char* what) {
      if (!ok)
        bad(shown, "query parameter " + shown.quote(name + "=" + value) + " must be " + what);
    };
    if (name == "db") {
      need(parse_uint(value, 1u << 30, n), "a database number");
      db_set = true;
      db = static_cast<int>(n);
    } else if (name == "connect_timeout") {
      need(parse_duration(value, d), "a duration (250, 250ms, 2s)");
      o.connect_timeout = d;
    } else if (name == "command_timeout") {
      need(parse_duration(value, d), "a duration (250, 250ms, 2s)");
      o.command_timeout = d;
    } else if (name == "retry_min") {
      need(parse_duration(value, d), "a duration (250, 250ms, 2s)");
      o.retry_min = d;
    } else if (name == "retry_max") {
      need(parse_duration(value, d), "a duration (250, 250ms, 2s)");
      o.retry_max = d;
    } else if (name == "default_ttl") {
      need(parse_duration(value, d), "a duration (250, 250ms, 2s)");
      o.default_ttl = d;
    } else if (name == "local_ttl") {
      need(parse_duration(value, d), "a duration (250, 250ms, 2s; 0 = no bound)");
      o.local_ttl = d;
    } else if (name == "pool_size") {
      need(parse_uint(value, 1u << 20, n), "a number");
      o.pool_size = static_cast<std::size_t>(n);
    } else if (name == "compress_threshold") {
      need(parse_uint(value, 0xffffffffu, n), "a number of bytes");
      o.compress_threshold = static_cast<std::uint32_t>(n);
    } else if (name == "prefix") {
      o.key_prefix = value;
    } else {
      bad(shown, "unknown query parameter " + shown.quote(name) +
                     " (known: db, connect_timeout, command_timeout, pool_size, retry_min, "
                     "retry_max, compress_threshold, default_ttl, local_ttl, prefix)");
    }
  }
}

// Splits "user:password" (either part may be empty; no ':' = a user alone).
void parse_userinfo(std::string_view info, const Shown& shown, RedisEndpoint& ep) {
  const std::size_t colon = info.find(':');
  if (colon == std::string_view::npos) {  // never quoted: it may be a password
    bad(shown,
        "the user information before '@' has no ':', so the user has no password; write "
        "redis://:password@host or redis://user:password@host");
  }
  ep.user = percent_decode(info.substr(0, colon), shown, "user");
  ep.password = percent_decode(info.substr(colon + 1), shown, "password");
  ep.has_password = true;
  if (ep.password.empty()) bad(shown, "the password after ':' is empty");
}

}  // namespace

RedisEndpoint parse_redis_uri(const std::string& uri, RedisOptions& options) {
  RedisEndpoint ep;
  const Shown shown(uri);
  std::string_view rest(uri);
  if (rest.starts_with("rediss://")) {
    fail(Errc::invalid_option,
         "redis backend: '" + shown.text +
             "': TLS (rediss://) is not supported (Debian's hiredis 0.14 has no TLS); reach the "
             "server through a TLS tunnel and use redis://");
  }
  if (rest.starts_with(kTcpScheme)) {
    rest.remove_prefix(kTcpScheme.size());
  } else if (rest.starts_with(kUnixScheme)) {
    rest.remove_prefix(kUnixScheme.size());
    ep.unix_socket = true;
  } else {
    bad(shown, "it must start with redis:// or redis+unix://");
  }
  if (rest.find('#') != std::string_view::npos) bad(shown, "a URI fragment ('#') is not allowed");
  std::string_view query;
  if (const std::size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  bool db_set = false;
  int query_db = 0;
  apply_query(query, shown, options, db_set, query_db);

  if (ep.unix_socket) {
    if (!rest.starts_with('/')) {
      const std::size_t at = rest.find('@');
      if (at == std::string_view::npos)
        bad(shown, "the socket path must be absolute (redis+unix:///path)");
      parse_userinfo(rest.substr(0, at), shown, ep);
      rest.remove_prefix(at + 1);
      if (!rest.starts_with('/'))
        bad(shown, "the socket path must be absolute (redis+unix:///path)");
    }
    ep.path = percent_decode(rest, shown, "socket path");
    if (ep.path.size() <= 1) bad(shown, "it names no socket path");
    ep.db = query_db;
    ep.display = std::string(kUnixScheme) + (ep.has_password ? "***@" : "") + ep.path +
                 (ep.db != 0 ? "?db=" + std::to_string(ep.db) : "");
    check_redis_options(options, ep.display);
    return ep;
  }

  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  const std::string_view path =
      slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
    parse_userinfo(authority.substr(0, at), shown, ep);
    authority.remove_prefix(at + 1);
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) bad(shown, "an IPv6 address has no closing ']'");
    ep.host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) bad(shown, "unexpected text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) bad(shown, "the port after ':' is empty");
    }
  } else {
    const std::size_t colon = authority.find(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) bad(shown, "the port after ':' is empty");
    }
  }
  if (ep.host.empty()) bad(shown, "it names no host");
  for (const char c : ep.host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '-' || c == '_' || c == ':';
    if (!ok)
      bad(shown, "the host " + shown.quote(ep.host) + " has a character that no host name has");
  }
  if (!port.empty()) {
    std::uint64_t p = 0;
    if (!parse_uint(port, 65535, p) || p == 0) {
      bad(shown, "the port " + shown.quote(port) + " is not a number from 1 to 65535");
    }
    ep.port = static_cast<int>(p);
  }
  if (!path.empty()) {
    std::uint64_t db = 0;
    if (!parse_uint(path, 1u << 30, db)) {
      bad(shown, "the path " + shown.quote("/" + std::string(path)) +
                     " must be a database number, as in /0");
    }
    if (db_set && static_cast<int>(db) != query_db)
      bad(shown, "the path and ?db= name different databases");
    ep.db = static_cast<int>(db);
  } else {
    ep.db = query_db;
  }
  const bool v6 = ep.host.find(':') != std::string::npos;
  ep.display = std::string(kTcpScheme) + (ep.has_password ? "***@" : "") + (v6 ? "[" : "") +
               ep.host + (v6 ? "]" : "") + ":" + std::to_string(ep.port) + "/" +
               std::to_string(ep.db);
  check_redis_options(options, ep.display);
  return ep;
}

void check_redis_options(const RedisOptions& o, const std::string& display) {
  const auto bad_option = [&](const std::string& what) {
    fail(Errc::invalid_option, "redis backend '" + display + "': option " + what);
  };
  constexpr auto kHour = std::chrono::milliseconds(3'600'000);
  if (o.connect_timeout.count() <= 0 || o.connect_timeout > kHour) {
    bad_option("'connect_timeout' must be between 1 ms and 1 hour");
  }
  if (o.command_timeout.count() <= 0 || o.command_timeout > kHour) {
    bad_option("'command_timeout' must be between 1 ms and 1 hour");
  }
  if (o.pool_size < 1 || o.pool_size > 256) bad_option("'pool_size' must be between 1 and 256");
  if (o.retry_min.count() <= 0 || o.retry_max < o.retry_min || o.retry_max > kHour) {
    bad_option("'retry_min' must be positive and at most 'retry_max' (at most 1 hour)");
  }
  if (o.default_ttl.count() < 0) bad_option("'default_ttl' must not be negative");
  if (o.local_ttl.count() < 0) bad_option("'local_ttl' must not be negative");
  if (o.key_prefix.empty()) bad_option("'key_prefix' must not be empty");
}

}  // namespace tcache::detail
