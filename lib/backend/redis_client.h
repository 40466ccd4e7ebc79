// backend/redis_client.h: a small pool of hiredis connections to one Redis
// server, with timeouts and reconnection with backoff.
//
// Commands are written by tcache (RESP, send() with MSG_NOSIGNAL, so a
// server that went away never raises SIGPIPE in the user's process) and
// replies are parsed by hiredis's reader from what tcache reads. Several
// commands in one exec() are one pipeline: one write, then their replies in
// order. Every exec() has one deadline, now + command_timeout, for its write
// and all its replies (poll() waits only for what is left of it), and every
// new connection one deadline, connect_timeout, for its connection and
// handshake: no server, however it trickles bytes, holds a call longer.
//
// Thread safety: a RedisClient may be used by any number of threads at
// once; each connection is used by one thread at a time (checked out of
// the pool under `mutex_`, which is never held during I/O). RespBuffer is
// a plain value (one per thread).
//
// Process safety: connections are not shared with a child after fork():
// a child that uses a client made before fork() drops the inherited
// connections and connects anew (pthread_atfork bumps a generation), and
// shared() hands a child new clients.
//
// Invariants:
//  1. open_ counts the connections that exist: idle ones, checked-out ones
//     and those being connected; it never exceeds pool_size.
//  2. While down_, no connection is checked out except by the one caller
//     that sets probing_ after retry_at_ (the probe); every other caller
//     throws Errc::unavailable at once, without I/O. The probe's success
//     ends down_ and resets the backoff; its failure doubles the backoff
//     (up to retry_max) and sets a new retry_at_. probing_ is cleared on
//     every path out of the probe.
//  3. Going down bumps generation_ and closes the idle connections; a
//     checked-out connection of an older generation is closed when it is
//     checked in. So after an outage every connection is a new one.
//  4. A connection whose command failed in any way (I/O error, timeout,
//     protocol error) is closed, never returned to the pool: its stream may
//     hold a late reply.

#pragma once

#include <hiredis/hiredis.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "backend/redis_uri.h"
#include "tcache/backend.h"

namespace tcache::detail {

struct RedisReplyDeleter {
  void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

// The text of an error reply ("" if `r` is not an error).
std::string_view reply_error(const redisReply* r) noexcept;

// Commands in the Redis protocol (RESP arrays of bulk strings), ready to
// send. Binary-safe.
class RespBuffer {
 public:
  void clear() noexcept {
    bytes_.clear();
    count_ = 0;
  }
  // Appends one command.
  void command(std::initializer_list<std::string_view> args);
  // Appends one command of `argc` arguments, given by as many arg() calls.
  void begin(std::size_t argc);
  void arg(std::string_view a);
  // Appends the commands of `other`.
  void append(const RespBuffer& other) {
    bytes_ += other.bytes_;
    count_ += other.count_;
  }

  const std::string& bytes() const noexcept { return bytes_; }
  std::size_t count() const noexcept { return count_; }

 private:
  std::string bytes_;
  std::size_t count_ = 0;
};

class RedisClient {
 public:
  // The client of this process for `endpoint` with these connection
  // options: backends that name the same server, credentials, database and
  // options share one pool. Never connects.
  static std::shared_ptr<RedisClient> shared(const RedisEndpoint& endpoint,
                                             const RedisOptions& options);

  RedisClient(RedisEndpoint endpoint, const RedisOptions& options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Runs one command (INFO cluster) on a pooled or new connection, so that
  // a new one goes through the handshake. Throws
  // Error(invalid_option) if the server refuses the credentials or the
  // database, or is a Redis Cluster node; Error(unavailable) if it cannot be
  // reached (the client is then down, as after any failure).
  void check();

  // Sends `commands` in one write and reads one reply per command into
  // `replies` (resized). Error replies are returned, not thrown. Throws
  // Error(unavailable) when the server cannot be reached, times out, closes
  // the connection, or is down (in backoff); a pooled connection found
  // closed by the server is replaced once without failing the call.
  void exec(const RespBuffer& commands, std::vector<RedisReply>& replies);

  // "redis://host:port/db" with any password masked: for messages.
  const std::string& display() const noexcept { return endpoint_.display; }

 private:
  struct Conn {
    redisContext* ctx = nullptr;
    std::uint64_t generation = 0;
  };
  using Clock = std::chrono::steady_clock;

  redisContext* connect();
  // exec(); config_errors: refused credentials or database stay
  // invalid_option (construction) instead of becoming unavailable.
  void run_commands(const RespBuffer& commands, std::vector<RedisReply>& replies,
                    bool config_errors);
  Conn checkout(bool& prober, bool& reused);
  void checkin(Conn c, bool healthy) noexcept;
  void note_success(bool prober) noexcept;
  void note_failure(const std::string& why, bool prober) noexcept;
  void drop_idle_locked() noexcept;
  void reset_after_fork_locked() noexcept;
  [[noreturn]] void fail_down_locked(Clock::time_point now) const;

  const RedisEndpoint endpoint_;
  const std::chrono::milliseconds connect_timeout_;
  const std::chrono::milliseconds command_timeout_;
  const std::size_t pool_size_;
  const std::chrono::milliseconds retry_min_;
  const std::chrono::milliseconds retry_max_;

  std::mutex mutex_;
  std::condition_variable returned_;  // a connection was checked in or closed
  std::vector<Conn> idle_;
  std::size_t open_ = 0;
  std::uint64_t generation_ = 0;
  bool down_ = false;
  bool probing_ = false;
  Clock::time_point retry_at_{};
  std::chrono::milliseconds backoff_{0};
  std::uint64_t failed_attempts_ = 0;  // probes failed in this outage
  std::string last_error_;
  std::uint64_t fork_generation_;
};

}  // namespace tcache::detail
