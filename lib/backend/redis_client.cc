// backend/redis_client.cc: the connection pool (see redis_client.h for its
// thread safety and invariants).

#include "backend/redis_client.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "util/fail.h"

namespace tcache::detail {
namespace {

using Clock = std::chrono::steady_clock;

// Bumped in a child after fork(): connections made before belong to the
// parent (invariant "Process safety" in the header).
std::atomic<std::uint64_t> g_fork_generation{0};

// shared(): one client per endpoint and options in this process. The map
// is never destroyed (a backend may outlive static destruction); it holds
// weak pointers, so clients themselves go with their last backend.
std::mutex g_registry_mutex;
std::map<std::string, std::weak_ptr<RedisClient>>* g_registry = nullptr;

void install_fork_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    // The registry's mutex is held across fork() so that a child never
    // inherits it locked by a thread that does not exist there.
    ::pthread_atfork([] { g_registry_mutex.lock(); }, [] { g_registry_mutex.unlock(); },
                     [] {
                       g_fork_generation.fetch_add(1, std::memory_order_relaxed);
                       g_registry_mutex.unlock();
                     });
  });
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string ms_text(std::chrono::milliseconds ms) { return std::to_string(ms.count()) + " ms"; }

// Why an I/O step failed, in words; `retryable` if the server closed a
// connection that may simply have been stale (restart, idle timeout).
struct IoFailure {
  std::string why;
  bool retryable = false;
};

// Waits until `fd` is ready for `events` or `deadline` passes; false on
// the deadline. A socket in error is "ready": the I/O that follows says why.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return false;
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(ms, 1 << 30)));
    if (r > 0 || (r < 0 && errno != EINTR)) return true;
  }
}

// Writes `bytes` by `deadline`, however slowly the peer takes them.
bool send_all(int fd, std::string_view bytes, Clock::time_point deadline,
              std::chrono::milliseconds timeout, IoFailure& f) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = n < 0 ? errno : EPIPE;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      if (wait_ready(fd, POLLOUT, deadline)) continue;
      f.why = "could not write a command within " + ms_text(timeout);
    } else {
      f.why = std::string("writing a command failed: ") + std::strerror(err);
      f.retryable = err == EPIPE || err == ECONNRESET;
    }
    return false;
  }
  return true;
}

// Sends `commands` and reads their replies, all by `deadline`: a server
// that answers byte by byte cannot stretch a command past it (each read
// waits only for what is left of the deadline). On failure, says why; the
// connection must then be closed (invariant 4).
bool run(redisContext* ctx, const RespBuffer& commands, std::vector<RedisReply>& replies,
         Clock::time_point deadline, std::chrono::milliseconds timeout, IoFailure& f) {
  replies.resize(commands.count());
  if (!send_all(ctx->fd, commands.bytes(), deadline, timeout, f)) return false;
  for (std::size_t i = 0; i < commands.count(); ++i) {
    void* r = nullptr;
    for (;;) {
      if (redisGetReplyFromReader(ctx, &r) != REDIS_OK) {
        f.why = ctx->err != 0 ? std::string(ctx->errstr) : std::string("a malformed reply");
        return false;
      }
      if (r != nullptr) break;
      if (!wait_ready(ctx->fd, POLLIN, deadline)) {
        f.why = "no answer within " + ms_text(timeout);
        return false;
      }
      errno = 0;
      if (redisBufferRead(ctx) != REDIS_OK) {
        const int err = errno;
        f.why = ctx->err != 0 ? std::string(ctx->errstr) : std::string("no reply");
        f.retryable = ctx->err == REDIS_ERR_EOF ||
                      (ctx->err == REDIS_ERR_IO && (err == ECONNRESET || err == EPIPE));
        return false;
      }
    }
    replies[i].reset(static_cast<redisReply*>(r));
  }
  return true;
}

std::string registry_key(const RedisEndpoint& ep, const RedisOptions& o) {
  std::string k;
  const auto add = [&k](std::string_view s) {
    k += std::to_string(s.size());
    k += ':';
    k += s;
  };
  add(ep.unix_socket ? ep.path : ep.host);
  add(std::to_string(ep.port));
  add(ep.user);
  add(ep.has_password ? "p" + ep.password : "-");
  add(std::to_string(ep.db));
  add(std::to_string(o.connect_timeout.count()));
  add(std::to_string(o.command_timeout.count()));
  add(std::to_string(o.pool_size));
  add(std::to_string(o.retry_min.count()));
  add(std::to_string(o.retry_max.count()));
  add(std::to_string(g_fork_generation.load(std::memory_order_relaxed)));
  return k;
}

}  // namespace

std::string_view reply_error(const redisReply* r) noexcept {
  if (r == nullptr || r->type != REDIS_REPLY_ERROR) return {};
  return {r->str, r->len};
}

void RespBuffer::command(std::initializer_list<std::string_view> args) {
  begin(args.size());
  for (const std::string_view a : args) arg(a);
}

void RespBuffer::begin(std::size_t argc) {
  bytes_ += '*';
  bytes_ += std::to_string(argc);
  bytes_ += "\r\n";
  ++count_;
}

void RespBuffer::arg(std::string_view a) {
  char head[32];
  const int n = std::snprintf(head, sizeof head, "$%zu\r\n", a.size());
  bytes_.append(head, static_cast<std::size_t>(n));
  bytes_.append(a);
  bytes_ += "\r\n";
}

std::shared_ptr<RedisClient> RedisClient::shared(const RedisEndpoint& endpoint,
                                                 const RedisOptions& options) {
  install_fork_handlers();
  std::lock_guard lock(g_registry_mutex);
  if (g_registry == nullptr) g_registry = new std::map<std::string, std::weak_ptr<RedisClient>>();
  const std::string key = registry_key(endpoint, options);
  if (auto it = g_registry->find(key); it != g_registry->end()) {
    if (auto client = it->second.lock()) return client;
  }
  for (auto it = g_registry->begin(); it != g_registry->end();) {
    it = it->second.expired() ? g_registry->erase(it) : std::next(it);
  }
  auto client = std::make_shared<RedisClient>(endpoint, options);
  (*g_registry)[key] = client;
  return client;
}

RedisClient::RedisClient(RedisEndpoint endpoint, const RedisOptions& o)
    : endpoint_(std::move(endpoint)),
      connect_timeout_(o.connect_timeout),
      command_timeout_(o.command_timeout),
      pool_size_(o.pool_size),
      retry_min_(o.retry_min),
      retry_max_(o.retry_max),
      fork_generation_(g_fork_generation.load(std::memory_order_relaxed)) {
  install_fork_handlers();
}

RedisClient::~RedisClient() {
  std::lock_guard lock(mutex_);
  drop_idle_locked();
}

redisContext* RedisClient::connect() {
  // One deadline for the connection and its handshake.
  const auto deadline = Clock::now() + connect_timeout_;
  const timeval tv = to_timeval(connect_timeout_);
  redisContext* ctx = endpoint_.unix_socket
                          ? redisConnectUnixWithTimeout(endpoint_.path.c_str(), tv)
                          : redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port, tv);
  if (ctx == nullptr) fail(Errc::unavailable, "redis at " + display() + ": out of memory");
  if (ctx->err != 0) {
    const std::string why = ctx->errstr;
    redisFree(ctx);
    fail(Errc::unavailable, "cannot connect to redis at " + display() + ": " + why);
  }
  struct Guard {
    redisContext* ctx;
    ~Guard() {
      if (ctx != nullptr) redisFree(ctx);
    }
  } guard{ctx};
  // Deadlines bound the handshake (connect_timeout) and each command
  // (command_timeout); the socket timeouts are a backstop for one read.
  if (redisSetTimeout(ctx, tv) != REDIS_OK) {
    fail(Errc::unavailable, "redis at " + display() + ": cannot set socket timeouts");
  }
  if (!endpoint_.unix_socket) redisEnableKeepAlive(ctx);
  RespBuffer hello;
  if (endpoint_.has_password) {
    if (endpoint_.user.empty()) {
      hello.command({"AUTH", endpoint_.password});
    } else {
      hello.command({"AUTH", endpoint_.user, endpoint_.password});
    }
  }
  if (endpoint_.db != 0) hello.command({"SELECT", std::to_string(endpoint_.db)});
  hello.command({"PING"});
  std::vector<RedisReply> replies;
  IoFailure f;
  if (!run(ctx, hello, replies, deadline, connect_timeout_, f)) {
    fail(Errc::unavailable, "redis at " + display() + " did not complete the handshake: " + f.why);
  }
  std::size_t i = 0;
  if (endpoint_.has_password) {
    if (const auto e = reply_error(replies[i++].get()); !e.empty()) {
      fail(Errc::invalid_option, "redis at " + display() + " refused the credentials (" +
                                     std::string(e) +
                                     "); check the user and password in the URI "
                                     "(redis://[user]:password@host)");
    }
  }
  if (endpoint_.db != 0) {
    if (const auto e = reply_error(replies[i++].get()); !e.empty()) {
      if (e.starts_with("NOAUTH")) {
        fail(Errc::invalid_option, "redis at " + display() +
                                       " requires a password (NOAUTH); put it in the URI: "
                                       "redis://:password@host:port/db");
      }
      fail(Errc::invalid_option, "redis at " + display() + " cannot select database " +
                                     std::to_string(endpoint_.db) + " (" + std::string(e) + ")");
    }
  }
  if (const auto e = reply_error(replies[i].get()); !e.empty()) {
    if (e.starts_with("NOAUTH")) {
      fail(Errc::invalid_option, "redis at " + display() +
                                     " requires a password (NOAUTH); put it in the URI: "
                                     "redis://:password@host:port/db");
    }
    fail(Errc::unavailable, "redis at " + display() + " is not ready: " + std::string(e));
  }
  if (redisSetTimeout(ctx, to_timeval(command_timeout_)) != REDIS_OK) {
    fail(Errc::unavailable, "redis at " + display() + ": cannot set socket timeouts");
  }
  guard.ctx = nullptr;
  return ctx;
}

void RedisClient::check() {
  // A Redis Cluster node answers MOVED for most keys: refuse it now, with a
  // clear message, rather than fail call after call.
  RespBuffer info;
  info.command({"INFO", "cluster"});
  std::vector<RedisReply> replies;
  run_commands(info, replies, /*config_errors=*/true);
  const redisReply* r = replies[0].get();
  const bool cluster =
      r->type == REDIS_REPLY_STRING &&
      std::string_view(r->str, r->len).find("cluster_enabled:1") != std::string_view::npos;
  if (cluster) {
    fail(Errc::invalid_option, "redis at " + display() +
                                   " is a Redis Cluster node, which tcache does not support yet; "
                                   "point the URI at a standalone server (see README, Redis tier)");
  }
}

void RedisClient::reset_after_fork_locked() noexcept {
  const std::uint64_t g = g_fork_generation.load(std::memory_order_relaxed);
  if (g == fork_generation_) return;
  // The parent's connections: closing our copies of their sockets does not
  // disturb the parent. Checked-out ones belonged to threads that do not
  // exist here; forget them.
  drop_idle_locked();
  open_ = 0;
  ++generation_;
  down_ = false;
  probing_ = false;
  fork_generation_ = g;
}

void RedisClient::drop_idle_locked() noexcept {
  for (const Conn& c : idle_) redisFree(c.ctx);
  open_ -= idle_.size();
  idle_.clear();
}

void RedisClient::fail_down_locked(Clock::time_point now) const {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now);
  fail(Errc::unavailable,
       "redis at " + display() + " is unavailable (" + last_error_ + "); " +
           (probing_
                ? std::string("a reconnection is in progress")
                : "next reconnection in " + ms_text(std::max(left, std::chrono::milliseconds(0)))));
}

RedisClient::Conn RedisClient::checkout(bool& prober, bool& reused) {
  std::unique_lock lock(mutex_);
  reset_after_fork_locked();
  const auto deadline = Clock::now() + connect_timeout_ + command_timeout_;
  for (;;) {
    if (down_ && !prober) {
      const auto now = Clock::now();
      if (probing_ || now < retry_at_) fail_down_locked(now);
      probing_ = true;  // invariant 2: this caller is the probe
      prober = true;
    }
    if (!idle_.empty()) {
      const Conn c = idle_.back();
      idle_.pop_back();
      reused = true;
      return c;
    }
    if (open_ < pool_size_) {
      ++open_;
      const std::uint64_t generation = generation_;
      lock.unlock();
      try {
        redisContext* ctx = connect();
        reused = false;
        return Conn{ctx, generation};
      } catch (const Error& e) {
        lock.lock();
        --open_;
        returned_.notify_one();
        lock.unlock();
        note_failure(e.what(), prober);
        throw;
      }
    }
    if (returned_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= pool_size_) {
      if (prober) probing_ = false;
      fail(Errc::unavailable, "redis at " + display() + ": all " + std::to_string(pool_size_) +
                                  " connections stayed busy for " +
                                  ms_text(connect_timeout_ + command_timeout_));
    }
  }
}

void RedisClient::checkin(Conn c, bool healthy) noexcept {
  std::lock_guard lock(mutex_);
  if (fork_generation_ != g_fork_generation.load(std::memory_order_relaxed)) {
    redisFree(c.ctx);  // made before a fork: not ours to pool
  } else if (healthy && c.generation == generation_) {
    idle_.push_back(c);
  } else {
    redisFree(c.ctx);  // invariants 3 and 4
    --open_;
  }
  returned_.notify_one();
}

void RedisClient::note_success(bool prober) noexcept {
  if (!prober) return;
  std::lock_guard lock(mutex_);
  down_ = false;
  probing_ = false;
  backoff_ = std::chrono::milliseconds(0);
  failed_attempts_ = 0;
}

void RedisClient::note_failure(const std::string& why, bool prober) noexcept {
  std::lock_guard lock(mutex_);
  last_error_ = why;
  const auto now = Clock::now();
  if (prober) {  // invariant 2: the probe failed: wait longer
    probing_ = false;
    ++failed_attempts_;
    backoff_ = std::min(std::max(backoff_ * 2, retry_min_), retry_max_);
    retry_at_ = now + backoff_;
    down_ = true;
    return;
  }
  if (down_) return;
  down_ = true;
  backoff_ = retry_min_;
  retry_at_ = now + backoff_;
  failed_attempts_ = 0;
  ++generation_;  // invariant 3
  drop_idle_locked();
}

void RedisClient::exec(const RespBuffer& commands, std::vector<RedisReply>& replies) {
  run_commands(commands, replies, /*config_errors=*/false);
}

void RedisClient::run_commands(const RespBuffer& commands, std::vector<RedisReply>& replies,
                               bool config_errors) {
  for (int attempt = 0;; ++attempt) {
    bool prober = false;
    bool reused = false;
    Conn c;
    try {
      c = checkout(prober, reused);
    } catch (const Error& e) {
      // Refused credentials at a reconnection are an outage to wait out
      // (the server may be being reconfigured), not a reason to give the
      // server up: check() reports them as invalid_option at construction.
      if (e.code() == Errc::unavailable || config_errors) throw;
      throw Error(Errc::unavailable, e.what());
    }
    IoFailure f;
    if (run(c.ctx, commands, replies, Clock::now() + command_timeout_, command_timeout_, f)) {
      checkin(c, true);
      note_success(prober);
      return;
    }
    checkin(c, false);
    if (reused && f.retryable && attempt == 0 && !prober) {
      // The server closed a pooled connection (it restarted, or dropped
      // idle clients): the other idle ones are likely closed too. Retry
      // once on a new connection; every command tcache sends may be
      // repeated (leases are identified by their token).
      std::lock_guard lock(mutex_);
      ++generation_;
      drop_idle_locked();
      continue;
    }
    note_failure(f.why, prober);
    fail(Errc::unavailable, "redis at " + display() + ": " + f.why);
  }
}

}  // namespace tcache::detail
